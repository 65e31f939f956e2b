using Kiln.Methods.Generative;
using Kiln.Tests.TestKit;
using Xunit;
using Xunit.Abstractions;

namespace Kiln.Tests.Methods;

/// <summary>
/// Feynman–Kac correctors (Skreta et al., 2025) on Gaussian-mixture diffusions with exact scores: the weights are
/// constant when the target is the base model, the log-weight rate equals the paper's equations and solves the
/// target's Feynman–Kac PDE, and the weighted particles match annealed, product and guided targets computed exactly.
/// </summary>
public class GenerativeFeynmanKacTests(ITestOutputHelper output)
{
    // A diagonal Gaussian mixture in float64 arrays: weights [K], means [K][d], variances [K][d].
    sealed record Mix(double[] W, double[][] M, double[][] V)
    {
        public int K => W.Length;
        public int D => M[0].Length;

        public GaussianMixture ToKiln() => new(Tensor.FromArray(W), Tensor.FromArray(M.SelectMany(r => r).ToArray(), new Shape(K, D)),
            Tensor.FromArray(V.SelectMany(r => r).ToArray(), new Shape(K, D)));

        // The diffused marginal q_t: means α μ, variances α² v + σ².
        public Mix At(LinearDiffusion p, double t)
        {
            double a = p.Alpha(t), s = p.Sigma(t);
            return new(W, [.. M.Select(r => r.Select(m => a * m).ToArray())], [.. V.Select(r => r.Select(v => a * a * v + s * s).ToArray())]);
        }

        public double LogProb(double[] x)
        {
            var terms = Enumerable.Range(0, K).Select(k => Math.Log(W[k] / W.Sum())
                - 0.5 * Enumerable.Range(0, D).Sum(j => Math.Log(2 * Math.PI * V[k][j]) + Math.Pow(x[j] - M[k][j], 2) / V[k][j])).ToArray();
            double mx = terms.Max();
            return mx + Math.Log(terms.Sum(v => Math.Exp(v - mx)));
        }

        // The product of two diagonal mixtures is again one: N_j N_k = N(m_j; m_k, v_j + v_k) N(m_jk, v_jk) per dimension.
        public Mix Times(Mix o)
        {
            var w = new List<double>(); var m = new List<double[]>(); var v = new List<double[]>();
            for (int j = 0; j < K; j++)
                for (int k = 0; k < o.K; k++)
                {
                    double logc = Math.Log(W[j] / W.Sum() * o.W[k] / o.W.Sum());
                    var mj = new double[D]; var vj = new double[D];
                    for (int i = 0; i < D; i++)
                    {
                        double s = V[j][i] + o.V[k][i];
                        logc += -0.5 * (Math.Log(2 * Math.PI * s) + Math.Pow(M[j][i] - o.M[k][i], 2) / s);
                        vj[i] = 1 / (1 / V[j][i] + 1 / o.V[k][i]);
                        mj[i] = vj[i] * (M[j][i] / V[j][i] + o.M[k][i] / o.V[k][i]);
                    }
                    w.Add(Math.Exp(logc)); m.Add(mj); v.Add(vj);
                }
            return new([.. w.Select(x => x / w.Sum())], [.. m], [.. v]);
        }

        public double[] Mean() => Enumerable.Range(0, D).Select(i => Enumerable.Range(0, K).Sum(k => W[k] / W.Sum() * M[k][i])).ToArray();

        // P(x₀ < c): each component's first coordinate is N(m, v).
        public double MassBelow(double c) => Enumerable.Range(0, K).Sum(k => W[k] / W.Sum() * Kiln.Kernels.Reference.NormalCdf((c - M[k][0]) / Math.Sqrt(V[k][0])));
    }

    static readonly Mix Bimodal = new([0.3, 0.7], [[-1.5], [1.2]], [[0.3], [0.4]]);

    // Weighted estimates of E[x₀] and P(x₀ < c) from self-normalized weights, and the ones' iid standard errors.
    static (double Mean, double MeanSe, double Below, double BelowSe) Estimate(FkcResult r, double c)
    {
        var w = r.LogWeights.Exp().ToArray<double>();
        int d = r.Samples.Shape[1];
        var x0 = r.Samples.ToArray<double>().Where((_, i) => i % d == 0).ToArray();
        double mean = w.Select((wi, i) => wi * x0[i]).Sum(), below = w.Select((wi, i) => x0[i] < c ? wi : 0).Sum();
        double Se(Func<int, double> f, double est) => Math.Sqrt(w.Select((wi, i) => wi * wi * Math.Pow(f(i) - est, 2)).Sum());
        return (mean, Se(i => x0[i], mean), below, Se(i => x0[i] < c ? 1 : 0, below));
    }

    // E[x] and P(x < c) of the 1-D density ∝ exp(Σ_i β_i log q_i(x)) by the midpoint rule on [−12, 12].
    static (double Mean, double Below) Quadrature(Mix[] factors, double[] betas, double c)
    {
        const int m = 24000;
        var xs = Enumerable.Range(0, m).Select(k => -12 + (k + 0.5) * 24.0 / m).ToArray();
        var lp = xs.Select(x => factors.Select((f, i) => betas[i] * f.LogProb([x])).Sum()).ToArray();
        double mx = lp.Max();
        var p = lp.Select(v => Math.Exp(v - mx)).ToArray();
        double z = p.Sum();
        return (xs.Select((x, k) => x * p[k]).Sum() / z, xs.Select((x, k) => x < c ? p[k] : 0).Sum() / z);
    }

    // Runs the corrected sampler on 4 seeds (2000 particles each) and the uncorrected one once. The corrected estimates
    // of E[x₀] and P(x₀ < 0) must lie within t₃(0.995) = 5.84 standard errors of the seeds' spread (resampling
    // correlates particles, so the spread across independent runs is the honest error) of the exact target; the
    // uncorrected ones (independent particles, iid errors) must be off by more than 6 of their own standard errors and
    // 6 of the corrected ones' when uncorrectedOff.
    void AssertMatchesTarget(string name, LinearDiffusion proc, Mix[] factors, double[] betas, double mean, double below, ResamplingScheme scheme, bool uncorrectedOff = true)
    {
        var experts = factors.Select((f, i) => new FkcExpert(f.ToKiln().DiffusedScore(proc), betas[i])).ToArray();
        var options = new FkcOptions { Scheme = scheme, EndTime = EndTime };
        var runs = Enumerable.Range(0, 4).Select(seed => Estimate(FeynmanKacCorrector.Sample(proc, experts, 2000, factors[0].D, new Generator((ulong)seed + 10), options), 0)).ToArray();
        var naive = Estimate(FeynmanKacCorrector.Sample(proc, experts, 2000, factors[0].D, new Generator(99), options with { Reweight = false }), 0);
        foreach (var (label, values, target, naiveValue, naiveSe) in new[]
        {
            ("mean", runs.Select(r => r.Mean).ToArray(), mean, naive.Mean, naive.MeanSe),
            ("P(x0 < 0)", runs.Select(r => r.Below).ToArray(), below, naive.Below, naive.BelowSe),
        })
        {
            double avg = values.Average(), se = Math.Sqrt(values.Sum(v => (v - avg) * (v - avg)) / (values.Length - 1) / values.Length);
            output.WriteLine($"{name} {label}: target {target:F4}, corrected {avg:F4} ± {se:F4}, uncorrected {naiveValue:F4} ± {naiveSe:F4}");
            Assert.True(Math.Abs(avg - target) < 5.84 * se, $"{name} {label}: corrected {avg} ± {se} vs target {target}");
            if (uncorrectedOff) Assert.True(Math.Abs(naiveValue - target) > 6 * Math.Max(naiveSe, se), $"{name} {label}: uncorrected {naiveValue} ± {naiveSe} is not off the target {target}");
        }
    }

    const double EndTime = 1e-3;

    [Fact]
    public void Product_of_experts_matches_the_exact_product()
    {
        // A bimodal expert times a Gaussian one leaning right: the product is the mixture Mix.Times gives exactly.
        var factors = new[] { new Mix([0.5, 0.5], [[-2], [2]], [[0.1], [0.1]]), new Mix([1.0], [[1.0]], [[1.0]]) };
        var target = factors[0].At(Vp, EndTime).Times(factors[1].At(Vp, EndTime));
        AssertMatchesTarget("product (VP)", Vp, factors, [1, 1], target.Mean()[0], target.MassBelow(0), ResamplingScheme.Systematic);
    }

    [Fact]
    public void Product_of_experts_in_two_dimensions_matches_the_exact_product()
    {
        var factors = new[] { new Mix([0.5, 0.5], [[-2, 0], [2, 0]], [[0.1, 2], [0.1, 2]]), new Mix([1.0], [[1.5, -1]], [[1.0, 0.5]]) };
        var target = factors[0].At(Ve, EndTime).Times(factors[1].At(Ve, EndTime));
        AssertMatchesTarget("product 2-D (VE)", Ve, factors, [1, 1], target.Mean()[0], target.MassBelow(0), ResamplingScheme.Multinomial);
    }

    [Fact]
    public void Guidance_matches_the_geometric_mixture()
    {
        // Conditional = unconditional bimodal tilted by N(0.5, 4); guidance w = 2 targets q_c² / q_u (β = −1 on q_u), by quadrature.
        var unconditional = new Mix([0.5, 0.5], [[-2], [2]], [[0.1], [0.1]]);
        var factors = new[] { unconditional.Times(new Mix([1.0], [[0.5]], [[4.0]])), unconditional };
        var (mean, below) = Quadrature([.. factors.Select(f => f.At(Vp, EndTime))], [2, -1], 0);
        // Plain guidance happens to land within its error of this target, so only the corrected run is asserted.
        AssertMatchesTarget("guided w = 2 (VP)", Vp, factors, [2, -1], mean, below, ResamplingScheme.Systematic, uncorrectedOff: false);
    }

    [Fact]
    public void Annealing_matches_the_tempered_density()
    {
        // q^½ of a lopsided mixture is not a mixture: its moments by quadrature.
        var factors = new[] { new Mix([0.1, 0.9], [[-2.5], [2.5]], [[0.25], [0.25]]) };
        var (mean, below) = Quadrature([factors[0].At(Vp, EndTime)], [0.5], 0);
        AssertMatchesTarget("annealed β = 1/2 (VP)", Vp, factors, [0.5], mean, below, ResamplingScheme.Systematic);
    }

    static readonly LinearDiffusion Vp = LinearDiffusion.VariancePreserving();
    static readonly LinearDiffusion Ve = LinearDiffusion.VarianceExploding(0.01, 20);

    static Tensor RandScores(Generator g, int n, int d) => 3 * Tensor.Randn(new Shape(n, d), g, dtype: DType.Float64);

    [Fact]
    public void Weights_are_constant_when_the_target_is_the_base()
    {
        var rng = new Random(1);
        var g = new Generator(2);
        foreach (var proc in new[] { Vp, Ve })
            for (int trial = 0; trial < 6; trial++)
            {
                int n = rng.Next(0, 7), d = rng.Next(1, 4);
                double t = rng.NextDouble();
                Tensor s = RandScores(g, n, d), other = RandScores(g, n, d);
                // One factor with β = 1, and guidance weight 1 (β = 1 on the conditional, 0 on the unconditional): exactly 0.
                Assert.All(FeynmanKacCorrector.LogWeightRate([s], [1.0], proc, t).ToArray<double>(), v => Assert.Equal(0.0, v));
                Assert.All(FeynmanKacCorrector.LogWeightRate([s, other], [1.0, 0.0], proc, t).ToArray<double>(), v => Assert.Equal(0.0, v));
                Assert.Equal(n, FeynmanKacCorrector.LogWeightRate([s], [1.0], proc, t).Shape[0]);
            }
        // The whole sampler: uniform weights on every path, no resampling, and the same particles as the uncorrected SDE.
        var q = Bimodal.ToKiln();
        var other2 = new Mix([0.5, 0.5], [[-1], [3]], [[1], [0.5]]).ToKiln();
        foreach (var proc in new[] { Vp, Ve })
            foreach (var experts in new[] { FeynmanKacCorrector.Annealed(q.DiffusedScore(proc), 1), FeynmanKacCorrector.Guided(q.DiffusedScore(proc), other2.DiffusedScore(proc), 1) })
            {
                var options = new FkcOptions { Steps = 30, EssThreshold = 0.99 };
                var fkc = FeynmanKacCorrector.Sample(proc, experts, 300, 1, new Generator(7), options);
                var plain = FeynmanKacCorrector.Sample(proc, experts, 300, 1, new Generator(7), options with { Reweight = false });
                Assert.Equal(plain.Samples.ToArray<double>(), fkc.Samples.ToArray<double>());
                Assert.All(fkc.LogWeights.ToArray<double>(), v => Assert.Equal(-Math.Log(300), v, 1e-12));
                Assert.Equal(0, fkc.Resamplings);
                Assert.Equal(30, fkc.EffectiveSampleSizes.Length);
                Assert.All(fkc.EffectiveSampleSizes, e => Assert.Equal(300, e, 1e-9));
            }
    }

    [Fact]
    public void Log_weight_rate_matches_the_papers_equations()
    {
        var rng = new Random(3);
        var g = new Generator(4);
        static double Dot(double[] a, double[] b, int row, int d) => Enumerable.Range(0, d).Sum(j => a[row * d + j] * b[row * d + j]);
        foreach (var proc in new[] { Vp, Ve })
            for (int trial = 0; trial < 8; trial++)
            {
                int n = rng.Next(1, 6), d = rng.Next(1, 4);
                double t = 0.01 + 0.98 * rng.NextDouble(), beta = -1 + 4 * rng.NextDouble(), f = proc.Drift(t), g2 = proc.DiffusionSquared(t);
                Tensor s1 = RandScores(g, n, d), s2 = RandScores(g, n, d);
                double[] a = s1.ToArray<double>(), b = s2.ToArray<double>();
                // Annealing q^β: (β − 1)(∇·f + β g²/2 ‖∇log q‖²).
                var anneal = FeynmanKacCorrector.LogWeightRate([s1], [beta], proc, t).ToArray<double>();
                // Product q¹q²: ∇·f + g² ⟨∇log q¹, ∇log q²⟩.
                var product = FeynmanKacCorrector.LogWeightRate([s1, s2], [1.0, 1.0], proc, t).ToArray<double>();
                // Guidance q_c^w q_u^{1−w}: w(w − 1) g²/2 ‖∇log q_c − ∇log q_u‖².
                var guided = FeynmanKacCorrector.LogWeightRate([s1, s2], [beta, 1 - beta], proc, t).ToArray<double>();
                for (int i = 0; i < n; i++)
                {
                    double scale = 1 + g2 * (Dot(a, a, i, d) + Dot(b, b, i, d)) * (1 + beta * beta) + Math.Abs(f) * d;
                    Assert.Equal((beta - 1) * (f * d + beta * g2 / 2 * Dot(a, a, i, d)), anneal[i], 1e-12 * scale);
                    Assert.Equal(f * d + g2 * Dot(a, b, i, d), product[i], 1e-12 * scale);
                    var diff = Enumerable.Range(0, d).Select(j => a[i * d + j] - b[i * d + j]).ToArray();
                    Assert.Equal(beta * (beta - 1) * g2 / 2 * Dot(diff, diff, 0, d), guided[i], 1e-12 * scale);
                }
            }
    }

    // The weighted particles solve the target's Feynman–Kac equation: in reverse time s = 1 − t, π ∝ Π q_i^{β_i} obeys
    // ∂_s log π = −∇·v − v·∇log π + σ²/2 (Δlog π + ‖∇log π‖²) + G − E_π[G], v = −f x + (g² + σ²)/2 ∇log π,
    // so the residual without the x-independent E_π[G] is the same at every x. Derivatives by central differences of
    // the test's own float64 mixture densities; G and the scores from the library.
    [Fact]
    public void Log_weight_rate_solves_the_feynman_kac_equation()
    {
        var rng = new Random(5);
        var mixes = new[] { Bimodal, new Mix([0.6, 0.4], [[-0.5], [2.0]], [[1.0], [0.2]]), new Mix([1.0], [[0.8]], [[0.5]]) };
        foreach (var proc in new[] { Vp, Ve })
            for (int trial = 0; trial < 4; trial++)
            {
                var factors = mixes.OrderBy(_ => rng.Next()).Take(rng.Next(1, 3)).ToArray();
                var betas = factors.Select(_ => -0.5 + 3 * rng.NextDouble()).ToArray();
                if (betas.Sum() <= 0.2) betas[0] += 1;
                double t = 0.1 + 0.8 * rng.NextDouble(), eta = rng.NextDouble() * 1.5;
                double f = proc.Drift(t), g2 = proc.DiffusionSquared(t), s2 = eta * eta * g2;
                double LogPi(double x, double tt) => factors.Select((m, i) => betas[i] * m.At(proc, tt).LogProb([x])).Sum();
                var xs = Enumerable.Range(0, 9).Select(k => -3 + 0.75 * k).ToArray();
                var xt = Tensor.FromArray(xs, new Shape(xs.Length, 1));
                var scores = factors.Select(m => m.ToKiln().DiffusedScore(proc)(xt, t)).ToArray();
                var rate = FeynmanKacCorrector.LogWeightRate(scores, betas, proc, t).ToArray<double>();
                var residual = new double[xs.Length];
                var residualWithoutScoreTerm = new double[xs.Length];
                for (int k = 0; k < xs.Length; k++)
                {
                    double x = xs[k], hx = 1e-3, ht = 1e-5;
                    double dsLog = -(LogPi(x, t + ht) - LogPi(x, t - ht)) / (2 * ht);
                    double d1 = (LogPi(x + hx, t) - LogPi(x - hx, t)) / (2 * hx);
                    double d2 = (LogPi(x + hx, t) - 2 * LogPi(x, t) + LogPi(x - hx, t)) / (hx * hx);
                    double a = (g2 + s2) / 2, v = -f * x + a * d1, divV = -f + a * d2;
                    double transport = -divV - v * d1 + s2 / 2 * (d2 + d1 * d1);
                    residual[k] = dsLog - transport - rate[k];
                    residualWithoutScoreTerm[k] = dsLog - transport - (betas.Sum() - 1) * f;
                }
                double scale = 1 + rate.Max(Math.Abs);
                Assert.True(residual.Max() - residual.Min() < 1e-5 * scale, $"{proc} β = [{string.Join(", ", betas)}] t = {t}: residual spread {residual.Max() - residual.Min()} (scale {scale})");
                if (betas.Length > 1 || Math.Abs(betas[0] - 1) > 0.1)
                    Assert.True(residualWithoutScoreTerm.Max() - residualWithoutScoreTerm.Min() > 1e-3 * scale, "the check cannot tell the score term apart");
            }
    }

    [Fact]
    public void Gaussian_mixture_scores_and_samples_are_exact()
    {
        var mix = new Mix([0.2, 0.5, 0.3], [[-1, 2], [0.5, -0.5], [2, 1]], [[0.3, 1.2], [0.8, 0.2], [0.5, 0.5]]);
        var q = mix.ToKiln();
        var x = Tensor.Randn(new Shape(7, 2), new Generator(6), dtype: DType.Float64);
        var xd = x.ToArray<double>();
        foreach (var (proc, t) in new[] { (Vp, 0.0), (Vp, 0.37), (Ve, 0.6) })
        {
            var m = mix.At(proc, t);
            var lp = q.Diffused(proc, t).LogProb(x).ToArray<double>();
            var score = q.DiffusedScore(proc)(x, t).ToArray<double>();
            for (int i = 0; i < 7; i++)
            {
                double[] p = [xd[2 * i], xd[2 * i + 1]];
                Assert.Equal(m.LogProb(p), lp[i], 1e-10);
                for (int j = 0; j < 2; j++)
                {
                    double[] up = [.. p], dn = [.. p];
                    up[j] += 1e-5; dn[j] -= 1e-5;
                    Assert.Equal((m.LogProb(up) - m.LogProb(dn)) / 2e-5, score[2 * i + j], 1e-6);
                }
            }
        }
        // Draws: the mean of each coordinate within 4 standard errors of Σ w μ.
        const int n = 4000;
        var s = q.Sample(n, new Generator(8)).ToArray<double>();
        for (int j = 0; j < 2; j++)
        {
            var col = Enumerable.Range(0, n).Select(i => s[2 * i + j]).ToArray();
            double mean = col.Average(), sd = Math.Sqrt(col.Sum(v => (v - mean) * (v - mean)) / (n - 1));
            Assert.InRange(mean - mix.Mean()[j], -4 * sd / Math.Sqrt(n), 4 * sd / Math.Sqrt(n));
        }
    }

    [Fact]
    public void Resampling_follows_the_weights()
    {
        var rng = new Random(9);
        for (int trial = 0; trial < 6; trial++)
        {
            int m = rng.Next(1, 12), count = rng.Next(1, 60);
            var logw = Enumerable.Range(0, m).Select(_ => rng.NextDouble() < 0.2 ? double.NegativeInfinity : 3 * rng.NextDouble()).ToArray();
            if (logw.All(double.IsNegativeInfinity)) logw[0] = 0;
            double z = logw.Sum(Math.Exp);
            // Systematic: each particle is kept ⌊count w⌋ or ⌈count w⌉ times; zero weights never.
            var idx = FeynmanKacCorrector.Resample(Tensor.FromArray(logw), count, ResamplingScheme.Systematic, new Generator((ulong)trial)).ToArray<long>();
            Assert.Equal(count, idx.Length);
            for (int i = 0; i < m; i++)
            {
                double expected = count * Math.Exp(logw[i]) / z;
                Assert.InRange(idx.Count(v => v == i), Math.Floor(expected - 1e-9), Math.Ceiling(expected + 1e-9));
            }
        }
        // Multinomial: counts within 4 standard errors of n w.
        double[] lw = [0, Math.Log(2), Math.Log(3), double.NegativeInfinity, Math.Log(4)];
        const int draws = 20000;
        var mi = FeynmanKacCorrector.Resample(Tensor.FromArray(lw), draws, ResamplingScheme.Multinomial, new Generator(10)).ToArray<long>();
        for (int i = 0; i < lw.Length; i++)
        {
            double p = Math.Exp(lw[i]) / 10;
            Assert.InRange(mi.Count(v => v == i) - draws * p, -4 * Math.Sqrt(draws * p * (1 - p)) - 1e-9, 4 * Math.Sqrt(draws * p * (1 - p)) + 1e-9);
        }
        Assert.Equal(2.0, FeynmanKacCorrector.EffectiveSampleSize(Tensor.FromArray(new[] { 0.0, 0.0, double.NegativeInfinity })), 1e-12);
    }

    [Fact]
    public void Bad_input_is_named()
    {
        var x = Tensor.Zeros(new Shape(3, 2), DType.Float64);
        var one = Tensor.Ones(new Shape(1), DType.Float64);
        var score = Bimodal.ToKiln().DiffusedScore(Vp);
        Assert.Equal("betaMax", Assert.Throws<ArgumentOutOfRangeException>(() => LinearDiffusion.VariancePreserving(1, 1)).ParamName);
        Assert.Equal("sigmaMin", Assert.Throws<ArgumentOutOfRangeException>(() => LinearDiffusion.VarianceExploding(0, 1)).ParamName);
        Assert.Equal("variances", Assert.Throws<ArgumentOutOfRangeException>(() => new GaussianMixture(one, Tensor.Zeros(new Shape(1, 1), DType.Float64), Tensor.Zeros(new Shape(1, 1), DType.Float64))).ParamName);
        Assert.Equal("weights", Assert.Throws<ShapeMismatchException>(() => new GaussianMixture(Tensor.Ones(new Shape(2), DType.Float64), Tensor.Zeros(new Shape(1, 1), DType.Float64), Tensor.Ones(new Shape(1, 1), DType.Float64))).ParamName);
        Assert.Equal("x", Assert.Throws<ShapeMismatchException>(() => Bimodal.ToKiln().Score(x)).ParamName);
        Assert.Equal("betas", Assert.Throws<ArgumentException>(() => FeynmanKacCorrector.LogWeightRate([x], [1.0, 2.0], Vp, 0.5)).ParamName);
        Assert.Equal("betas", Assert.Throws<ArgumentOutOfRangeException>(() => FeynmanKacCorrector.LogWeightRate([x], [double.NaN], Vp, 0.5)).ParamName);
        Assert.Equal("t", Assert.Throws<ArgumentOutOfRangeException>(() => FeynmanKacCorrector.LogWeightRate([x], [1.0], Vp, 1.5)).ParamName);
        Assert.Equal("scores", Assert.Throws<ShapeMismatchException>(() => FeynmanKacCorrector.LogWeightRate([x, Tensor.Zeros(new Shape(3, 1), DType.Float64)], [1.0, 1.0], Vp, 0.5)).ParamName);
        Assert.Equal("experts", Assert.Throws<ArgumentException>(() => FeynmanKacCorrector.Sample(Vp, [], 10, 1, new Generator(1))).ParamName);
        Assert.Equal("experts", Assert.Throws<ArgumentOutOfRangeException>(() => FeynmanKacCorrector.Sample(Vp, FeynmanKacCorrector.Annealed(score, -1), 10, 1, new Generator(1))).ParamName);
        Assert.Equal("experts", Assert.Throws<ArgumentException>(() => FeynmanKacCorrector.Sample(Vp, FeynmanKacCorrector.Annealed((p, _) => p.Sum(0, keepDim: true), 1), 10, 1, new Generator(1))).ParamName);
        Assert.Equal("particles", Assert.Throws<ArgumentOutOfRangeException>(() => FeynmanKacCorrector.Sample(Vp, FeynmanKacCorrector.Annealed(score, 1), 0, 1, new Generator(1))).ParamName);
        Assert.Equal("options", Assert.Throws<ArgumentOutOfRangeException>(() => FeynmanKacCorrector.Sample(Vp, FeynmanKacCorrector.Annealed(score, 1), 10, 1, new Generator(1), new FkcOptions { EssThreshold = 2 })).ParamName);
        Assert.Equal("options", Assert.Throws<ArgumentOutOfRangeException>(() => FeynmanKacCorrector.Sample(Vp, FeynmanKacCorrector.Annealed(score, 1), 10, 1, new Generator(1), new FkcOptions { Steps = 0 })).ParamName);
        Assert.Equal("logWeights", Assert.Throws<ArgumentOutOfRangeException>(() => FeynmanKacCorrector.Resample(Tensor.FromArray(new[] { 0.0, double.NaN }), 3, ResamplingScheme.Systematic, new Generator(1))).ParamName);
        Assert.Equal("logWeights", Assert.Throws<ArgumentOutOfRangeException>(() => FeynmanKacCorrector.EffectiveSampleSize(Tensor.FromArray(new[] { double.NegativeInfinity }))).ParamName);
        Assert.Equal("logWeights", Assert.Throws<ShapeMismatchException>(() => FeynmanKacCorrector.EffectiveSampleSize(Tensor.Zeros(new Shape(0), DType.Float64))).ParamName);
        Assert.Equal("count", Assert.Throws<ArgumentOutOfRangeException>(() => FeynmanKacCorrector.Resample(one, -1, ResamplingScheme.Multinomial, new Generator(1))).ParamName);
    }
}
