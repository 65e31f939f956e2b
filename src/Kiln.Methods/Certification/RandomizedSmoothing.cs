using Kiln.Kernels;
using Kiln.Methods.Smoothing;

namespace Kiln.Methods.Certification;

/// <summary>
/// What <see cref="RandomizedSmoothing.Sample"/> saw around one input: the vote count of each class (argmax of the
/// base logits), and the mean and unbiased variance of each class's score softmax(logits / temperature).
/// </summary>
/// <param name="Votes">Samples whose argmax was each class.</param>
/// <param name="Mean">Per class, the sample mean of the score.</param>
/// <param name="Variance">Per class, the unbiased sample variance of the score (0 with one sample).</param>
/// <param name="Count">The number of noisy samples.</param>
public sealed record SmoothingSamples(long[] Votes, double[] Mean, double[] Variance, int Count);

/// <summary>
/// Randomized smoothing of any classifier given as a logits function x [m, d] -&gt; [m, C], with the noise,
/// certificate and summaries of <see cref="Kiln.Methods.Smoothing"/> (<see cref="Noise"/>, <see cref="Certificate"/>,
/// <see cref="CertificationResult"/>, the Clopper-Pearson bound of <see cref="MonteCarloSmoothing"/>):
/// Cohen et al. (2019)'s vote certificate and the Lipschitz-variance-margin certificate of Delattre et al. (2024), which
/// smooths the base classifier's softmax scores, bounds them with the empirical Bernstein inequality (variance-aware)
/// and certifies the margin between the top class and the runner-up.
/// </summary>
public static class RandomizedSmoothing
{
    /// <summary>
    /// Draws <paramref name="samples"/> noisy copies of the row <paramref name="x"/> ([d]) in batches of
    /// <paramref name="batchSize"/>, and records the votes and the score statistics of softmax(logits / <paramref name="temperature"/>).
    /// </summary>
    /// <exception cref="ArgumentException">x is not one row, or logits returns something other than [m, C].</exception>
    /// <exception cref="ArgumentOutOfRangeException">samples or batchSize is below 1, or the temperature is not positive and finite.</exception>
    public static SmoothingSamples Sample(Func<Tensor, Tensor> logits, Tensor x, Noise noise, int samples, Generator generator, double temperature = 1, int batchSize = 1000)
    {
        ArgumentNullException.ThrowIfNull(logits); ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(generator);
        if (x.Rank != 1) throw new ArgumentException($"randomized smoothing: x must be one input [d], got {x.Shape}", nameof(x));
        ArgumentOutOfRangeException.ThrowIfLessThan(samples, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        if (!(temperature > 0) || double.IsInfinity(temperature)) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "randomized smoothing: the temperature must be positive and finite");
        int d = x.Shape[0];
        var row = x.To(DType.Float64).Reshape(1, d);
        long[]? votes = null; double[]? mean = null, m2 = null;
        int count = 0;
        for (int done = 0; done < samples; done += batchSize)
        {
            int m = Math.Min(batchSize, samples - done);
            using var scope = Tensor.Scope();
            Tensor z;
            using (Autograd.NoGrad()) z = logits(row + noise.Sample(new Shape(m, d), generator, x.Device)).To(DType.Float64);
            if (z.Rank != 2 || z.Shape[0] != m) throw new ArgumentException($"randomized smoothing: logits must map [{m}, {d}] to [{m}, C], got {z.Shape}", nameof(logits));
            int c = z.Shape[1];
            votes ??= new long[c]; mean ??= new double[c]; m2 ??= new double[c];
            foreach (long k in z.ArgMax(1).ToArray<long>()) votes[k]++;
            var p = (z / temperature).Softmax(1);
            var batchMean = p.Mean(0, keepDim: true);
            var bm = batchMean.ToArray<double>(); var bm2 = (p - batchMean).Square().Sum(0).ToArray<double>();
            // Chan et al.'s pairwise merge of (count, mean, M2): no cancellation, so constant scores have variance 0.
            for (int k = 0; k < c; k++)
            {
                double delta = bm[k] - mean[k];
                mean[k] += delta * m / (count + m);
                m2[k] += bm2[k] + delta * delta * count * (double)m / (count + m);
            }
            count += m;
        }
        var variance = m2!.Select(v => samples < 2 ? 0 : v / (samples - 1)).ToArray();
        return new SmoothingSamples(votes!, mean!, variance, samples);
    }

    /// <summary>
    /// Cohen et al.'s CERTIFY for each row of <paramref name="x"/> ([n, d]): the top vote of <paramref name="n0"/>
    /// samples selects class A, <paramref name="n"/> further samples give its Clopper-Pearson lower bound pA at level
    /// <paramref name="alpha"/>, and R = sigma Phi^-1(pA) (l2; 2 lambda (pA - 1/2) in l1 for uniform noise); class -1
    /// (abstain) when pA &lt;= 1/2.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">n0 or n is below 1, or alpha is outside (0, 1).</exception>
    public static Certificate[] Cohen(Func<Tensor, Tensor> logits, Tensor x, Noise noise, int n0 = 100, int n = 1000, double alpha = 0.001, Generator? generator = null, int batchSize = 1000)
    {
        CheckBatch(x, n0, n, alpha);
        var g = generator ?? new Generator(0);
        var xs = x.To(DType.Float64);
        var result = new Certificate[x.Shape[0]];
        for (int i = 0; i < result.Length; i++)
        {
            var row = xs.Narrow(0, i, 1).Reshape(-1);
            int a = ArgMax(Sample(logits, row, noise, n0, g, 1, batchSize).Votes);
            long nA = Sample(logits, row, noise, n, g, 1, batchSize).Votes.ElementAtOrDefault(a);
            double pA = MonteCarloSmoothing.ClopperPearsonLower(nA, n, alpha);
            result[i] = pA <= 0.5 ? new Certificate(-1, pA, 0) : new Certificate(a, pA, noise.Radius(pA));
        }
        return result;
    }

    /// <summary>
    /// The Lipschitz-variance-margin certificate for each row of <paramref name="x"/> ([n, d]) under Gaussian noise.
    /// The base scores are h(x) = softmax(f(x) / <paramref name="temperature"/>) (the temperature trades the margin of
    /// near one-hot scores against their variance); <paramref name="n0"/> samples select A by the largest mean score; with
    /// <paramref name="n"/> further samples, the empirical Bernstein bounds (level alpha/2 for A, alpha / (2 (C-1)) for
    /// each other class) give pA (lower) and pB = min(max over B != A of the upper bounds, 1 - pA), and
    /// R = sigma/2 (Phi^-1(pA) - Phi^-1(pB)) (<see cref="MarginRadius"/>). With the l2 Lipschitz constant
    /// <paramref name="lipschitz"/> of the base score map h, the smoothed scores have it too and R is the larger of that
    /// and (pA - pB) / (sqrt 2 L). Abstains (class -1) when pA &lt;= pB.
    /// </summary>
    /// <exception cref="ArgumentException">The noise is not Gaussian.</exception>
    /// <exception cref="ArgumentOutOfRangeException">n0 or n is below 2, alpha is outside (0, 1), or the Lipschitz constant is not positive.</exception>
    public static Certificate[] LipschitzVarianceMargin(Func<Tensor, Tensor> logits, Tensor x, Noise noise, double temperature = 1, int n0 = 100, int n = 1000, double alpha = 0.001, double? lipschitz = null, Generator? generator = null, int batchSize = 1000)
    {
        CheckBatch(x, n0, n, alpha);
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 2);
        if (noise.Kind != NoiseKind.Gaussian) throw new ArgumentException($"the Lipschitz-variance-margin certificate needs Gaussian noise, got {noise}", nameof(noise));
        if (lipschitz is { } l && (!(l > 0) || double.IsInfinity(l))) throw new ArgumentOutOfRangeException(nameof(lipschitz), l, "the Lipschitz constant must be positive and finite");
        var g = generator ?? new Generator(0);
        var xs = x.To(DType.Float64);
        var result = new Certificate[x.Shape[0]];
        for (int i = 0; i < result.Length; i++)
        {
            var row = xs.Narrow(0, i, 1).Reshape(-1);
            int a = ArgMax(Sample(logits, row, noise, n0, g, temperature, batchSize).Mean);
            var s = Sample(logits, row, noise, n, g, temperature, batchSize);
            int c = s.Mean.Length;
            double pA = EmpiricalBernstein.Lower(s.Mean[a], s.Variance[a], n, alpha / 2);
            double pB = 1 - pA;
            if (c > 1)
                pB = Math.Min(pB, Enumerable.Range(0, c).Where(k => k != a).Max(k => EmpiricalBernstein.Upper(s.Mean[k], s.Variance[k], n, alpha / (2 * (c - 1)))));
            if (pA <= pB) { result[i] = new Certificate(-1, pA, 0); continue; }
            double r = MarginRadius(pA, pB, noise.Scale);
            if (lipschitz is { } lc) r = Math.Max(r, (pA - pB) / (Math.Sqrt(2) * lc));
            result[i] = new Certificate(a, pA, r);
        }
        return result;
    }

    /// <summary>
    /// The margin radius sigma/2 (Phi^-1(pA) - Phi^-1(pB)) of two smoothed scores in [0, 1] (each Phi^-1 of a
    /// Gaussian-smoothed [0, 1] function is 1/sigma-Lipschitz); equals sigma Phi^-1(pA) when pB = 1 - pA. Probabilities
    /// are clamped to [1e-15, 1 - 1e-15].
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A probability is outside [0, 1] or sigma is not positive.</exception>
    public static double MarginRadius(double pA, double pB, double sigma)
    {
        if (!(pA >= 0 && pA <= 1)) throw new ArgumentOutOfRangeException(nameof(pA), pA, "pA must be in [0, 1]");
        if (!(pB >= 0 && pB <= 1)) throw new ArgumentOutOfRangeException(nameof(pB), pB, "pB must be in [0, 1]");
        if (!(sigma > 0) || double.IsInfinity(sigma)) throw new ArgumentOutOfRangeException(nameof(sigma), sigma, "sigma must be positive and finite");
        static double Clip(double p) => Math.Clamp(p, 1e-15, 1 - 1e-15);
        return sigma / 2 * (Reference.NormalIcdf(Clip(pA)) - Reference.NormalIcdf(Clip(pB)));
    }

    /// <summary>
    /// The closed form of a smoothed linear binary classifier f(x) = 1[w.x + b &gt; 0] under N(0, sigma^2 I):
    /// P[f(x + e) = 1] = Phi((w.x + b) / (sigma ||w||)) for each row of <paramref name="x"/> ([n, d]); Float64 [n].
    /// Its certified radius sigma Phi^-1(max(p, 1 - p)) is |w.x + b| / ||w||, the distance to the hyperplane.
    /// </summary>
    /// <exception cref="ArgumentException">w is not [d] for x [n, d], or w is zero.</exception>
    public static Tensor LinearProbability(Tensor w, double b, Tensor x, double sigma)
    {
        ArgumentNullException.ThrowIfNull(w); ArgumentNullException.ThrowIfNull(x);
        if (x.Rank != 2 || w.Rank != 1 || w.Shape[0] != x.Shape[1]) throw new ArgumentException($"smoothed linear classifier: w must be [d] for x [n, d], got w {w.Shape} and x {x.Shape}", nameof(w));
        if (!(sigma > 0) || double.IsInfinity(sigma)) throw new ArgumentOutOfRangeException(nameof(sigma), sigma, "sigma must be positive and finite");
        var wd = w.To(DType.Float64);
        double norm = wd.Norm().Item();
        if (!(norm > 0)) throw new ArgumentException("smoothed linear classifier: w is zero", nameof(w));
        return ((x.To(DType.Float64).MatMul(wd) + b) / (sigma * norm)).NormalCdf();
    }

    static void CheckBatch(Tensor x, int n0, int n, double alpha)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Rank != 2) throw new ArgumentException($"randomized smoothing: x must be [n, d], got {x.Shape}", nameof(x));
        ArgumentOutOfRangeException.ThrowIfLessThan(n0, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        if (!(alpha > 0 && alpha < 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "alpha must be in (0, 1)");
    }

    static int ArgMax(long[] v) { int best = 0; for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i; return best; }
    static int ArgMax(double[] v) { int best = 0; for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i; return best; }
}

/// <summary>
/// The empirical Bernstein bound of Maurer and Pontil (2009, Theorem 4) for the mean of n i.i.d. values in [0, 1]: with
/// probability at least 1 - delta, E X &gt;= mean - sqrt(2 V ln(2/delta) / n) - 7 ln(2/delta) / (3 (n - 1)), V the
/// unbiased sample variance (and symmetrically for the upper bound). Tighter than Hoeffding or Clopper-Pearson when V is small.
/// </summary>
public static class EmpiricalBernstein
{
    /// <summary>The lower bound, clamped to [0, 1].</summary>
    /// <exception cref="ArgumentOutOfRangeException">n is below 2, delta is outside (0, 1), or the variance is negative.</exception>
    public static double Lower(double mean, double variance, long n, double delta) => Math.Clamp(mean - Width(variance, n, delta), 0, 1);

    /// <summary>The upper bound, clamped to [0, 1].</summary>
    /// <exception cref="ArgumentOutOfRangeException">n is below 2, delta is outside (0, 1), or the variance is negative.</exception>
    public static double Upper(double mean, double variance, long n, double delta) => Math.Clamp(mean + Width(variance, n, delta), 0, 1);

    /// <summary>sqrt(2 V ln(2/delta) / n) + 7 ln(2/delta) / (3 (n - 1)).</summary>
    /// <exception cref="ArgumentOutOfRangeException">n is below 2, delta is outside (0, 1), or the variance is negative.</exception>
    public static double Width(double variance, long n, double delta)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 2);
        if (!(delta > 0 && delta < 1)) throw new ArgumentOutOfRangeException(nameof(delta), delta, "delta must be in (0, 1)");
        if (!(variance >= 0)) throw new ArgumentOutOfRangeException(nameof(variance), variance, "the sample variance must be non-negative");
        double l = Math.Log(2 / delta);
        return Math.Sqrt(2 * variance * l / n) + 7 * l / (3.0 * (n - 1));
    }
}
