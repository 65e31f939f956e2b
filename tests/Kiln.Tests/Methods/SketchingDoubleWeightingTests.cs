using Kiln.Methods.Sketching;
using Kiln.Tests.TestKit;
using Xunit;
using Xunit.Abstractions;

namespace Kiln.Tests.Methods;

/// <summary>
/// Double-weighting covariate shift adaptation (Segovia-Martín, Mazuelas and Liu, ICML 2023): the quadratic program's
/// solution is feasible and satisfies its KKT conditions (gradient written out here from the kernel), D = 1 is kernel
/// mean matching (α = 1 and Huang et al.'s KKT conditions), identical samples give uniform weights and the unweighted
/// logistic regression, the classifier's objective against its transcription (and GradCheck), and the double-weighted
/// classifier beats the unweighted one on a simulated covariate shift.
/// </summary>
public class SketchingDoubleWeightingTests(ITestOutputHelper output)
{
    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));
    static double[] H(Tensor t) => t.To(DType.Float64).Contiguous().ToArray<double>();

    static double Gaussian(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    static double[] Points(Random r, int n, int p, double shift, double scale) =>
        Enumerable.Range(0, n * p).Select(_ => shift + scale * Gaussian(r)).ToArray();

    static double Kernel(double[] x, int i, double[] z, int j, int p, double sigma)
    {
        double s = 0;
        for (int c = 0; c < p; c++) s += (x[i * p + c] - z[j * p + c]) * (x[i * p + c] - z[j * p + c]);
        return Math.Exp(-s / (2 * sigma * sigma));
    }

    // ∇ of ‖(1/n)Σβφ − (1/t)Σαφ′‖² and its value, written out per kernel entry.
    static (double[] Grad, double Value) Discrepancy(double[] xs, double[] xt, double[] beta, double[] alpha, int p, double sigma)
    {
        int n = beta.Length, t = alpha.Length;
        var pts = xs.Concat(xt).ToArray();
        var c = beta.Select(b => b / n).Concat(alpha.Select(a => -a / t)).ToArray();
        var kc = new double[n + t];
        for (int i = 0; i < n + t; i++)
            for (int j = 0; j < n + t; j++) kc[i] += Kernel(pts, i, pts, j, p, sigma) * c[j];
        var g = kc.Select((v, i) => 2 * v * (i < n ? 1.0 / n : -1.0 / t)).ToArray();
        return (g, c.Select((v, i) => v * kc[i]).Sum());
    }

    // KKT for min over {0 ≤ z ≤ u, Σz = s}: some ν has gᵢ = ν where 0 < zᵢ < u, gᵢ ≥ ν at 0 and gᵢ ≤ ν at u (tolerance tol).
    static void AssertKkt(double[] g, double[] z, double upper, double tol, string what)
    {
        double lo = double.MinValue, hi = double.MaxValue;
        for (int i = 0; i < z.Length; i++)
        {
            bool atLower = z[i] <= 1e-12, atUpper = z[i] >= upper - 1e-12;
            if (!atLower) lo = Math.Max(lo, g[i] - tol);   // zᵢ > 0 needs gᵢ ≤ ν (+ tol)
            if (!atUpper) hi = Math.Min(hi, g[i] + tol);   // zᵢ < u needs gᵢ ≥ ν (− tol)
        }
        Assert.True(lo <= hi, $"{what}: no multiplier fits, [{lo}, {hi}]");
    }

    [Fact]
    public void Weights_are_feasible_and_satisfy_the_kkt_conditions()
    {
        var rng = new Random(1);
        foreach (var (n, t, bound, d) in new[] { (30, 25, 1000.0, 1.0), (24, 30, 5.0, 4.0), (35, 20, 2.0, 2.0), (20, 20, 1.5, 9.0) })
        {
            int p = 2;
            double sigma = 1;
            var xs = Points(rng, n, p, 0, 1);
            var xt = Points(rng, t, p, 0.8, 0.6);
            var w = DoubleWeighting.Weights(T(xs, n, p), T(xt, t, p), sigma, bound, d);
            var beta = H(w.Train);
            var alpha = H(w.Test);
            double cap = bound / Math.Sqrt(d);
            Assert.All(beta, b => Assert.InRange(b, 0, cap));
            Assert.All(alpha, a => Assert.InRange(a, 0, 1));
            Assert.Equal(n / Math.Sqrt(d), beta.Sum(), 1e-10);
            Assert.Equal(t / Math.Sqrt(d), alpha.Sum(), 1e-10);
            var (g, value) = Discrepancy(xs, xt, beta, alpha, p, sigma);
            Assert.Equal(value, w.Discrepancy, 1e-12);
            double scale = g.Max(Math.Abs);
            AssertKkt(g[..n], beta, cap, 1e-8 * scale, $"β (n={n} t={t} B={bound} D={d})");
            AssertKkt(g[n..], alpha, 1, 1e-8 * scale, $"α (n={n} t={t} B={bound} D={d})");
            Assert.True(w.KktResidual <= 1e-8 * scale, $"residual {w.KktResidual}");
            // Convexity: no feasible point does better (random points of the two capped simplices).
            for (int i = 0; i < 20; i++)
            {
                var b2 = CappedSimplex.Project(Dense.Uniform(rng, n, 0, 2 * cap), cap, n / Math.Sqrt(d));
                var a2 = CappedSimplex.Project(Dense.Uniform(rng, t, 0, 2), 1, t / Math.Sqrt(d));
                Assert.True(Discrepancy(xs, xt, b2, a2, p, sigma).Value >= value - 1e-12);
            }
        }
    }

    [Fact]
    public void D_equal_one_is_kernel_mean_matching()
    {
        var rng = new Random(2);
        int n = 30, t = 40, p = 1;
        double sigma = 0.7, bound = 3;
        var xs = Points(rng, n, p, 0, 1);
        var xt = Points(rng, t, p, 1, 0.5);
        var w = DoubleWeighting.Weights(T(xs, n, p), T(xt, t, p), sigma, bound, d: 1);
        Assert.All(H(w.Test), a => Assert.Equal(1, a, 1e-12));
        // Huang et al.'s KMM: min ½βᵀKβ − κᵀβ, κᵢ = (n/t)Σⱼ k(xᵢ, x′ⱼ), 0 ≤ β ≤ B, Σβ = n.
        var beta = H(w.Train);
        var g = new double[n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++) g[i] += Kernel(xs, i, xs, j, p, sigma) * beta[j];
            for (int j = 0; j < t; j++) g[i] -= (double)n / t * Kernel(xs, i, xt, j, p, sigma);
        }
        AssertKkt(g, beta, bound, 1e-8 * g.Max(Math.Abs), "KMM β");
        Assert.Contains(beta, b => b == bound);   // the cap binds for this shift: a real constrained problem
        Assert.Contains(beta, b => b == 0);
    }

    [Fact]
    public void Identical_samples_give_uniform_weights_and_the_unweighted_logistic_regression()
    {
        var rng = new Random(3);
        int n = 40, p = 2, classes = 3;
        var x = Points(rng, n, p, 0, 1);
        var y = Enumerable.Range(0, n).Select(i => (long)((x[i * p] + 0.5 * Gaussian(rng) > 0 ? 1 : 0) + (x[i * p + 1] > 0.8 ? 1 : 0))).ToArray();
        foreach (double d in new[] { 1.0, 4.0 })
        {
            var w = DoubleWeighting.Weights(T(x, n, p), T(x, n, p), 1.0, 10, d);
            Assert.All(H(w.Train), b => Assert.Equal(1 / Math.Sqrt(d), b, 1e-10));
            Assert.All(H(w.Test), a => Assert.Equal(1 / Math.Sqrt(d), a, 1e-10));
            Assert.True(w.Discrepancy < 1e-20);
        }
        var uniform = DoubleWeighting.Weights(T(x, n, p), T(x, n, p), 1.0, 10, 1);
        // Logistic regression's mean negative log-likelihood, written out.
        double Nll(double[] mu)
        {
            double s = 0;
            for (int i = 0; i < n; i++)
            {
                var logits = Enumerable.Range(0, classes).Select(c => mu[c * (p + 1)] + Enumerable.Range(0, p).Sum(q => mu[c * (p + 1) + 1 + q] * x[i * p + q])).ToArray();
                double mx = logits.Max();
                s += mx + Math.Log(logits.Sum(l => Math.Exp(l - mx))) - logits[y[i]];
            }
            return s / n;
        }
        Tensor tx = T(x, n, p), ty = Tensor.FromArray(y, new Shape(n));
        for (int i = 0; i < 5; i++)
        {
            var mu = Dense.Uniform(rng, classes * (p + 1));
            Assert.Equal(Nll(mu), DoubleWeighting.Objective(T(mu, classes, p + 1), tx, ty, tx, uniform.Train, uniform.Test).Item(), 1e-12);
        }
        // The fit is the minimizer of NLL + λ‖μ‖₁: a fixed point of the proximal step on the transcribed gradient.
        double lambda = 0.01;
        var fit = H(DoubleWeighting.Fit(tx, ty, tx, uniform, classes, lambda, steps: 2500));
        var grad = new double[fit.Length];
        for (int j = 0; j < fit.Length; j++)
        {
            var up = (double[])fit.Clone(); up[j] += 1e-6;
            var down = (double[])fit.Clone(); down[j] -= 1e-6;
            grad[j] = (Nll(up) - Nll(down)) / 2e-6;
        }
        for (int j = 0; j < fit.Length; j++)
        {
            // Subgradient optimality of the lasso: |g| ≤ λ at 0, g = −λ sign(μ) elsewhere.
            if (fit[j] == 0) Assert.True(Math.Abs(grad[j]) <= lambda + 1e-6, $"μ[{j}] = 0 with |g| = {Math.Abs(grad[j])}");
            else Assert.Equal(-lambda * Math.Sign(fit[j]), grad[j], 1e-6);
        }
    }

    [Fact]
    public void Objective_matches_its_transcription_and_passes_gradcheck()
    {
        var rng = new Random(4);
        int n = 7, t = 5, p = 2, classes = 3;
        var xs = Points(rng, n, p, 0, 1);
        var xt = Points(rng, t, p, 1, 1);
        var ys = Enumerable.Range(0, n).Select(_ => (long)rng.Next(classes)).ToArray();
        var beta = Dense.Uniform(rng, n, 0, 2);
        var alpha = Dense.Uniform(rng, t, 0, 1);
        var mu = Dense.Uniform(rng, classes * (p + 1));
        double Score(double[] x, int i, int c) => mu[c * (p + 1)] + Enumerable.Range(0, p).Sum(q => mu[c * (p + 1) + 1 + q] * x[i * p + q]);
        double expected = -Enumerable.Range(0, n).Sum(i => beta[i] * Score(xs, i, (int)ys[i])) / n
            + Enumerable.Range(0, t).Sum(j => Math.Log(Enumerable.Range(0, classes).Sum(c => Math.Exp(alpha[j] * Score(xt, j, c))))) / t;
        Tensor txs = T(xs, n, p), tys = Tensor.FromArray(ys, new Shape(n)), txt = T(xt, t, p), tb = T(beta, n), ta = T(alpha, t);
        Assert.Equal(expected, DoubleWeighting.Objective(T(mu, classes, p + 1), txs, tys, txt, tb, ta).Item(), 1e-12);
        var res = GradCheck.Run(v => DoubleWeighting.Objective(v[0], txs, tys, txt, tb, ta), [T(mu, classes, p + 1)]);
        Assert.True(res.Passed, res.ToString());
    }

    // Two classes split by the parabola x₂ = x₁² − 1: a linear classifier fits it only locally, so where it is trained matters.
    static (double[] X, long[] Y) Parabola(Random r, int n, double center, double spread)
    {
        var x = new double[2 * n];
        var y = new long[n];
        for (int i = 0; i < n; i++)
        {
            x[2 * i] = center + spread * Gaussian(r);
            x[2 * i + 1] = 1.5 * Gaussian(r);
            y[i] = x[2 * i + 1] > x[2 * i] * x[2 * i] - 1 + 0.3 * Gaussian(r) ? 1 : 0;
        }
        return (x, y);
    }

    [Fact]
    public void Double_weighting_beats_the_unweighted_classifier_under_covariate_shift()
    {
        int wins = 0, seeds = 5;
        double dwTotal = 0, plainTotal = 0;
        for (int seed = 0; seed < seeds; seed++)
        {
            var rng = new Random(100 + seed);
            int n = 80, t = 80;
            var (xs, ys) = Parabola(rng, n, -0.5, 1.0);
            var (xt, yt) = Parabola(rng, t, 1.2, 0.4);
            Tensor txs = T(xs, n, 2), tys = Tensor.FromArray(ys, new Shape(n)), txt = T(xt, t, 2);
            double Error(DoubleWeights w)
            {
                var pred = DoubleWeighting.Predict(DoubleWeighting.Fit(txs, tys, txt, w, 2, 1e-3, 600), txt).ToArray<long>();
                return pred.Where((v, i) => v != yt[i]).Count() / (double)t;
            }
            double dw = Error(DoubleWeighting.Weights(txs, txt, 1.0, bound: 1000, d: 2));
            double plain = Error(DoubleWeights.Uniform(n, t));
            dwTotal += dw;
            plainTotal += plain;
            if (dw < plain) wins++;
        }
        output.WriteLine($"double weighting won {wins}/{seeds}, mean test error {dwTotal / seeds:F3} vs unweighted {plainTotal / seeds:F3}");
        Assert.True(wins >= 4 && dwTotal < 0.8 * plainTotal, $"double weighting won {wins}/{seeds}, mean error {dwTotal / seeds} vs unweighted {plainTotal / seeds}");
    }

    [Fact]
    public void Bad_input_is_named()
    {
        var x = Tensor.Ones(new Shape(4, 2), DType.Float64);
        Assert.Equal("bound", Assert.Throws<ArgumentOutOfRangeException>(() => DoubleWeighting.Weights(x, x, 1, bound: 0.5)).ParamName);
        Assert.Equal("d", Assert.Throws<ArgumentOutOfRangeException>(() => DoubleWeighting.Weights(x, x, 1, d: 0.9)).ParamName);
        Assert.Equal("bandwidth", Assert.Throws<ArgumentOutOfRangeException>(() => DoubleWeighting.Weights(x, x, 0)).ParamName);
        Assert.Equal("testFeatures", Assert.Throws<ShapeMismatchException>(() => DoubleWeighting.Weights(x, Tensor.Ones(new Shape(3, 3), DType.Float64), 1)).ParamName);
        var labels = Tensor.FromArray(new long[] { 0, 1, 2, 1 }, new Shape(4));
        var ex = Assert.Throws<ArgumentException>(() => DoubleWeighting.Fit(x, labels, x, DoubleWeights.Uniform(4, 4), 2));
        Assert.Equal("trainLabels", ex.ParamName);
        Assert.Contains("trainLabels[2] = 2", ex.Message);
        var neg = new DoubleWeights(T([1, -1, 1, 1], 4), Tensor.Ones(new Shape(4), DType.Float64), 0, 0, 0);
        Assert.Contains("trainWeights[1] = -1", Assert.Throws<ArgumentException>(() => DoubleWeighting.Fit(x, Tensor.Zeros(new Shape(4), DType.Int64), x, neg, 2)).Message);
        Assert.Equal("testWeights", Assert.Throws<ShapeMismatchException>(() => DoubleWeighting.Fit(x, Tensor.Zeros(new Shape(4), DType.Int64), x, DoubleWeights.Uniform(4, 3), 2)).ParamName);
        Assert.Equal("classes", Assert.Throws<ArgumentOutOfRangeException>(() => DoubleWeighting.Fit(x, Tensor.Zeros(new Shape(4), DType.Int64), x, DoubleWeights.Uniform(4, 4), 1)).ParamName);
    }
}
