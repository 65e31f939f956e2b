using System.Diagnostics;
using Kiln.Kernels;
using Kiln.Methods.Generative;
using Xunit;
using Xunit.Abstractions;

namespace Kiln.Tests.Methods;

/// <summary>
/// Constrained efficient global optimisation: the Gaussian-process algebra against a direct float64 transcription
/// (Gaussian elimination, no inverse), EI and probability of feasibility against closed forms and Monte Carlo, and
/// regret and constraint violation of CONFIG and constrained EI on standard constrained test problems.
/// </summary>
public class GenerativeConstrainedEgoTests(ITestOutputHelper output)
{
    // ------------------------------------------------------------------ float64 transcription

    static double K(double[] a, double[] b, double[] ell, double s2, GpKernel kernel)
    {
        double r2 = 0;
        for (int k = 0; k < a.Length; k++) r2 += (a[k] - b[k]) * (a[k] - b[k]) / (ell[k] * ell[k]);
        double r = Math.Sqrt(r2);
        return kernel == GpKernel.SquaredExponential
            ? s2 * Math.Exp(-0.5 * r2)
            : s2 * (1 + Math.Sqrt(5) * r + 5 * r2 / 3) * Math.Exp(-Math.Sqrt(5) * r);
    }

    // Gaussian elimination with partial pivoting: returns A⁻¹ b and log |det A|.
    static (double[] X, double LogDet) Solve(double[,] a0, double[] b0)
    {
        int n = b0.Length;
        var a = (double[,])a0.Clone();
        var b = (double[])b0.Clone();
        double logDet = 0;
        for (int c = 0; c < n; c++)
        {
            int p = c;
            for (int i = c + 1; i < n; i++) if (Math.Abs(a[i, c]) > Math.Abs(a[p, c])) p = i;
            for (int j = 0; j < n; j++) (a[c, j], a[p, j]) = (a[p, j], a[c, j]);
            (b[c], b[p]) = (b[p], b[c]);
            logDet += Math.Log(Math.Abs(a[c, c]));
            for (int i = c + 1; i < n; i++)
            {
                double f = a[i, c] / a[c, c];
                for (int j = c; j < n; j++) a[i, j] -= f * a[c, j];
                b[i] -= f * b[c];
            }
        }
        var x = new double[n];
        for (int i = n - 1; i >= 0; i--)
        {
            double s = b[i];
            for (int j = i + 1; j < n; j++) s -= a[i, j] * x[j];
            x[i] = s / a[i, i];
        }
        return (x, logDet);
    }

    static double[,] Gram(double[][] x, double[] ell, double s2, double noise, GpKernel kernel)
    {
        int n = x.Length;
        var k = new double[n, n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) k[i, j] = K(x[i], x[j], ell, s2, kernel) + (i == j ? noise : 0);
        return k;
    }

    static double Dot(double[] a, double[] b) => a.Select((v, i) => v * b[i]).Sum();

    sealed record Case(double[][] X, double[] Y, GpHyperparameters H, double Mean, GpKernel Kernel)
    {
        public Tensor XT => Tensor.FromArray(X.SelectMany(r => r).ToArray(), new Shape(X.Length, X[0].Length));
        public Tensor Theta => Tensor.FromArray([.. H.LengthScales.Select(v => Math.Log(v)), Math.Log(H.SignalVariance), Math.Log(H.NoiseVariance)]);
    }

    static Case RandomCase(Random rng, int n, int d, GpKernel kernel, double noise)
    {
        var x = Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, d).Select(_ => rng.NextDouble() * 4 - 2).ToArray()).ToArray();
        var y = x.Select(r => Math.Sin(2 * r[0]) + r.Sum() * 0.3 + 0.1 * rng.NextDouble()).ToArray();
        var h = new GpHyperparameters([.. Enumerable.Range(0, d).Select(_ => 0.4 + 1.5 * rng.NextDouble())], 0.5 + 2 * rng.NextDouble(), noise);
        return new Case(x, y, h, rng.NextDouble() - 0.5, kernel);
    }

    // ------------------------------------------------------------------ GP algebra

    [Fact]
    public void Posterior_mean_and_variance_match_the_transcription()
    {
        var rng = new Random(5);
        for (int t = 0; t < 12; t++)
        {
            int n = 1 + rng.Next(12), d = 1 + rng.Next(3);
            var c = RandomCase(rng, n, d, t % 2 == 0 ? GpKernel.SquaredExponential : GpKernel.Matern52, 1e-4 + 0.1 * rng.NextDouble());
            var gp = new GaussianProcess(c.XT, Tensor.FromArray(c.Y), c.Kernel, c.H, c.Mean);
            var q = Enumerable.Range(0, 7).Select(_ => Enumerable.Range(0, d).Select(_ => rng.NextDouble() * 5 - 2.5).ToArray()).ToArray();
            var (mean, variance) = gp.Predict(Tensor.FromArray(q.SelectMany(r => r).ToArray(), new Shape(q.Length, d)));
            var gotM = mean.ToArray<double>();
            var gotV = variance.ToArray<double>();
            var kk = Gram(c.X, c.H.LengthScales, c.H.SignalVariance, c.H.NoiseVariance, c.Kernel);
            var resid = c.Y.Select(v => v - c.Mean).ToArray();
            var alpha = Solve(kk, resid).X;
            for (int i = 0; i < q.Length; i++)
            {
                var ks = c.X.Select(xi => K(xi, q[i], c.H.LengthScales, c.H.SignalVariance, c.Kernel)).ToArray();
                var kinvKs = Solve(kk, ks).X;
                // The mean both ways: k*ᵀ (K⁻¹ r) and (K⁻¹ k*)ᵀ r.
                Assert.Equal(c.Mean + Dot(ks, alpha), gotM[i], 1e-9);
                Assert.Equal(c.Mean + Dot(kinvKs, resid), gotM[i], 1e-9);
                Assert.Equal(Math.Max(c.H.SignalVariance - Dot(ks, kinvKs), 0), gotV[i], 1e-9);
                Assert.InRange(gotV[i], 0, c.H.SignalVariance);
            }
        }
    }

    [Fact]
    public void Posterior_interpolates_noise_free_data_with_zero_variance_there()
    {
        var rng = new Random(9);
        foreach (var kernel in new[] { GpKernel.SquaredExponential, GpKernel.Matern52 })
        {
            var c = RandomCase(rng, 10, 2, kernel, 1e-10);
            var gp = new GaussianProcess(c.XT, Tensor.FromArray(c.Y), kernel, c.H, c.Mean);
            var (mean, variance) = gp.Predict(c.XT);
            var m = mean.ToArray<double>();
            for (int i = 0; i < c.Y.Length; i++) Assert.Equal(c.Y[i], m[i], 1e-5);
            Assert.All(variance.ToArray<double>(), v => Assert.InRange(v, 0, 1e-6));
            // Away from the data the variance is positive, at most s², and approaches s² far away.
            var far = gp.Predict(Tensor.Rand(new Shape(50, 2), new Generator(2), -3, 3, DType.Float64)).Variance.ToArray<double>();
            Assert.All(far, v => Assert.InRange(v, 0, c.H.SignalVariance));
            Assert.Equal(c.H.SignalVariance, gp.Predict(Tensor.Full(new Shape(1, 2), 100.0, DType.Float64)).Variance.Item(), 1e-9);
        }
    }

    [Fact]
    public void Log_marginal_likelihood_matches_the_transcription_and_finite_differences()
    {
        var rng = new Random(13);
        for (int t = 0; t < 8; t++)
        {
            int n = 1 + rng.Next(9), d = 1 + rng.Next(3);
            var c = RandomCase(rng, n, d, t % 2 == 0 ? GpKernel.SquaredExponential : GpKernel.Matern52, 0.01 + 0.2 * rng.NextDouble());
            var resid = c.Y.Select(v => v - c.Mean).ToArray();
            var (a, logDet) = Solve(Gram(c.X, c.H.LengthScales, c.H.SignalVariance, c.H.NoiseVariance, c.Kernel), resid);
            double want = -0.5 * Dot(resid, a) - 0.5 * logDet - 0.5 * n * Math.Log(2 * Math.PI);
            var y = Tensor.FromArray(c.Y);
            Assert.Equal(want, GaussianProcess.LogMarginalLikelihood(c.XT, y, c.Theta, c.Mean, c.Kernel).Item(), 1e-9);
            var gc = GradCheck.Run(th => GaussianProcess.LogMarginalLikelihood(c.XT, y, th[0], c.Mean, c.Kernel), [c.Theta]);
            Assert.True(gc.Passed, gc.ToString());
            // The fit's plain-float64 value and analytic gradient (prior mean 0) equal the tensor form and its autodiff gradient.
            var th0 = c.Theta.RequiresGrad_();
            var lml = GaussianProcess.LogMarginalLikelihood(c.XT, y, th0, 0, c.Kernel);
            var (value, grad) = GaussianProcess.LogMarginalLikelihoodAndGradient(c.X.SelectMany(r => r).ToArray(), n, d, c.Y, c.Theta.ToArray<double>(), c.Kernel);
            Assert.Equal(lml.Item(), value, 1e-9);
            var auto = Autograd.Grad(lml, th0).ToArray<double>();
            for (int k = 0; k < d + 2; k++) Assert.Equal(auto[k], grad[k], 1e-8);
        }
        // The predictive mean is differentiable in the query point too (the acquisition's gradient).
        var cx = RandomCase(rng, 6, 2, GpKernel.Matern52, 0.01);
        var model = new GaussianProcess(cx.XT, Tensor.FromArray(cx.Y), GpKernel.Matern52, cx.H, cx.Mean);
        var gq = GradCheck.Run(q => model.Predict(q[0]).Mean + model.Predict(q[0]).Variance, [Tensor.Rand(new Shape(4, 2), new Generator(3), -1, 1, DType.Float64)]);
        Assert.True(gq.Passed, gq.ToString());
    }

    [Fact]
    public void Fit_raises_the_marginal_likelihood_over_its_start()
    {
        var rng = new Random(17);
        var x = Enumerable.Range(0, 15).Select(_ => new[] { rng.NextDouble(), rng.NextDouble() }).ToArray();
        // f varies fast along x₀ and slowly along x₁: ARD should give ℓ₀ < ℓ₁.
        var y = x.Select(r => 3 + 2 * Math.Sin(9 * r[0]) + 0.3 * r[1]).ToArray();
        var xt = Tensor.FromArray(x.SelectMany(r => r).ToArray(), new Shape(15, 2));
        var yt = Tensor.FromArray(y);
        var gp = GaussianProcess.Fit(xt, yt, GpKernel.SquaredExponential, new Generator(1), restarts: 3, steps: 80);
        var h = gp.Hyperparameters;
        double Lml(GpHyperparameters p, double mean) => GaussianProcess.LogMarginalLikelihood(xt, yt,
            Tensor.FromArray([.. p.LengthScales.Select(v => Math.Log(v)), Math.Log(p.SignalVariance), Math.Log(p.NoiseVariance)]), mean, GpKernel.SquaredExponential).Item();
        double mu = y.Average(), var = y.Select(v => (v - mu) * (v - mu)).Average();
        double start = Lml(new GpHyperparameters([0.3, 0.3], var, 1e-3 * var), mu);
        double fitted = Lml(h, mu);
        output.WriteLine($"ℓ = [{string.Join(", ", h.LengthScales)}], s² = {h.SignalVariance}, σ² = {h.NoiseVariance}; LML {start} → {fitted}");
        Assert.Equal(mu, gp.Mean, 1e-12);
        Assert.True(fitted > start + 1, $"fit LML {fitted} vs start {start}");
        Assert.True(h.LengthScales[0] < h.LengthScales[1], $"ℓ = [{string.Join(", ", h.LengthScales)}]");
    }

    // ------------------------------------------------------------------ acquisitions

    [Fact]
    public void Expected_improvement_and_feasibility_match_closed_forms_and_monte_carlo()
    {
        var rng = new Random(21);
        var g = new Generator(8);
        for (int t = 0; t < 6; t++)
        {
            double mu = 4 * rng.NextDouble() - 2, sd = 0.1 + 2 * rng.NextDouble(), best = 4 * rng.NextDouble() - 2;
            var m = Tensor.FromArray(new[] { mu });
            var v = Tensor.FromArray(new[] { sd * sd });
            double z = (best - mu) / sd;
            double ei = (best - mu) * Reference.NormalCdf(z) + sd * Math.Exp(-z * z / 2) / Math.Sqrt(2 * Math.PI);
            double got = ConstrainedEgo.ExpectedImprovement(m, v, best).Item();
            Assert.Equal(ei, got, 1e-12);
            Assert.Equal(Reference.NormalCdf(-mu / sd), ConstrainedEgo.ProbabilityOfFeasibility(m, v).Item(), 1e-12);
            // Monte Carlo: E[max(f* − f, 0)] and P(f ≤ 0) for f ~ N(μ, σ²), within 4 standard errors.
            const int draws = 200_000;
            var f = Tensor.Randn(new Shape(draws), g, mu, sd, DType.Float64).ToArray<double>();
            var gain = f.Select(s => Math.Max(best - s, 0)).ToArray();
            double mean = gain.Average(), se = Math.Sqrt(gain.Select(s => (s - mean) * (s - mean)).Average() / draws);
            Assert.InRange(got, mean - 4 * se - 1e-12, mean + 4 * se + 1e-12);
            double p = f.Count(s => s <= 0) / (double)draws, pse = Math.Sqrt(p * (1 - p) / draws);
            Assert.InRange(Reference.NormalCdf(-mu / sd), p - 4 * pse - 1e-12, p + 4 * pse + 1e-12);
        }
        // σ → 0: EI tends to max(f* − μ, 0) and P(c ≤ 0) to the indicator of μ ≤ 0.
        var mm = Tensor.FromArray(new[] { -1.0, 0.5 });
        var zero = Tensor.Zeros(new Shape(2), DType.Float64);
        Assert.Equal([1.0, 0.0], ConstrainedEgo.ExpectedImprovement(mm, zero, 0).ToArray<double>());
        Assert.Equal([1.0, 0.0], ConstrainedEgo.ProbabilityOfFeasibility(mm, zero).ToArray<double>());
        var gc = GradCheck.Run(xs => ConstrainedEgo.ExpectedImprovement(xs[0], xs[1], 0.3) * ConstrainedEgo.ProbabilityOfFeasibility(xs[0], xs[1]),
            [Tensor.FromArray(new[] { -0.5, 0.2, 1.1 }), Tensor.FromArray(new[] { 0.3, 1.5, 0.8 })]);
        Assert.True(gc.Passed, gc.ToString());
    }

    // ------------------------------------------------------------------ regret and violation

    // Branin on [−5, 10] × [0, 15] with the disc constraint (x₁ − 2.5)² + (x₂ − 7.5)² ≤ 50 (Gelbart et al. 2014);
    // the constrained minimum is the unconstrained one at (π, 2.275), f* = 0.397887.
    static double Branin(double[] x)
    {
        double a = x[1] - 5.1 / (4 * Math.PI * Math.PI) * x[0] * x[0] + 5 / Math.PI * x[0] - 6;
        return a * a + 10 * (1 - 1 / (8 * Math.PI)) * Math.Cos(x[0]) + 10;
    }

    static double Disc(double[] x) => (x[0] - 2.5) * (x[0] - 2.5) + (x[1] - 7.5) * (x[1] - 7.5) - 50;

    // Gramacy et al. (2016)'s toy problem on [0, 1]²: min x₁ + x₂ with two constraints, both active near (0.1954, 0.4044), f* ≈ 0.5998.
    static double Linear(double[] x) => x[0] + x[1];
    static double Sinusoid(double[] x) => 1.5 - x[0] - 2 * x[1] - 0.5 * Math.Sin(2 * Math.PI * (x[0] * x[0] - 2 * x[1]));
    static double Circle(double[] x) => x[0] * x[0] + x[1] * x[1] - 1.5;

    // The smallest per-query loss of uniform random search with the same budget.
    static double RandomSearch(Func<double[], double> f, Func<double[], double>[] c, (double, double)[] box, int budget, int seed, Func<double, double, double> loss)
    {
        var rng = new Random(seed);
        double best = double.PositiveInfinity;
        for (int i = 0; i < budget; i++)
        {
            var x = box.Select(b => b.Item1 + rng.NextDouble() * (b.Item2 - b.Item1)).ToArray();
            best = Math.Min(best, loss(f(x), c.Sum(g => Math.Max(g(x), 0))));
        }
        return best;
    }

    [Fact]
    public void Gramacy_problem_optimum_is_where_the_tests_assume()
    {
        // A dense grid over the box, refined around its best feasible node, confirms f* ≈ 0.5998.
        double best = double.PositiveInfinity;
        for (int i = 0; i <= 1000; i++)
            for (int j = 0; j <= 1000; j++)
            {
                double[] x = [i / 1000.0, j / 1000.0];
                if (Sinusoid(x) <= 0 && Circle(x) <= 0) best = Math.Min(best, Linear(x));
            }
        Assert.Equal(0.5998, best, 1e-3);
        double branin = double.PositiveInfinity;
        for (int i = 0; i <= 600; i++)
            for (int j = 0; j <= 600; j++)
            {
                double[] x = [-5 + 15 * i / 600.0, 15 * j / 600.0];
                if (Disc(x) <= 0) branin = Math.Min(branin, Branin(x));
            }
        Assert.Equal(0.397887, branin, 1e-3);
    }

    [Theory]
    [InlineData(EgoAcquisition.Config, 0)]
    [InlineData(EgoAcquisition.Config, 1)]
    [InlineData(EgoAcquisition.ExpectedImprovement, 0)]
    [InlineData(EgoAcquisition.ExpectedImprovement, 1)]
    public void Finds_the_constrained_optimum_and_beats_random_search(EgoAcquisition acquisition, int problem)
    {
        var sw = Stopwatch.StartNew();
        var p = new (string Name, Func<double[], double> F, Func<double[], double>[] C, (double, double)[] Box, double Optimum, double Gap)[]
        {
            ("Branin + disc", Branin, [Disc], [(-5, 10), (0, 15)], 0.397887, 0.05),
            ("Gramacy", Linear, [Sinusoid, Circle], [(0, 1), (0, 1)], 0.5998, 0.05),
        }[problem];
        const int budget = 40;
        // The paper's per-query loss: regret [f(x_t) − f*]⁺ plus violation Σ_j [c_j(x_t)]⁺.
        double Loss(double f, double violation) => Math.Max(f - p.Optimum, 0) + violation;
        double ego = 0, random = 0, lossInit = 0, lossLast = 0;
        var seeds = new[] { 1, 2, 3 };
        foreach (int seed in seeds)
        {
            var r = ConstrainedEgo.Run(p.F, p.C, p.Box, budget, (ulong)seed, new ConstrainedEgoOptions { Acquisition = acquisition, Candidates = 300 });
            Assert.Equal(budget, r.History.Count);
            Assert.False(r.InfeasibilityDeclared);
            var losses = r.History.Select(e => Loss(e.Objective, e.Violation)).ToArray();
            double best = losses.Min(), init = losses.Take(r.InitialPoints).Average(), last = losses.Skip(budget - 10).Average();
            double rs = RandomSearch(p.F, p.C, p.Box, budget, seed, Loss);
            output.WriteLine($"{acquisition} {p.Name} seed {seed}: best feasible {r.Best?.Objective:F4}, min regret + violation {best:F5} " +
                $"(random search {rs:F5}); mean regret + violation initial {init:F4}, last 10 {last:F5}");
            Assert.True(best < p.Gap, $"{p.Name} seed {seed}: regret + violation {best}");
            // The best-feasible trace is the running minimum over feasible points; constrained EI, which weighs
            // improvement by the probability of feasibility, also lands within the gap strictly inside the feasible set.
            Assert.Equal(r.Best?.Objective ?? double.PositiveInfinity, r.History[^1].BestFeasible);
            if (acquisition == EgoAcquisition.ExpectedImprovement)
                Assert.True(r.Best!.Objective - p.Optimum < p.Gap, $"{p.Name} seed {seed}: best feasible {r.Best.Objective} vs optimum {p.Optimum}");
            ego += best / seeds.Length;
            random += rs / seeds.Length;
            lossInit += init / seeds.Length;
            lossLast += last / seeds.Length;
        }
        Assert.True(ego < random, $"{p.Name}: EGO {ego} vs random {random}");
        // CONFIG's regret and violation are sublinear: its last ten queries lose far less than the space-filling design.
        // (EI has no such guarantee: once its improvement is exhausted near f* it explores elsewhere.)
        if (acquisition == EgoAcquisition.Config)
            Assert.True(lossLast < 0.25 * lossInit, $"{p.Name}: regret + violation {lossLast} vs initial {lossInit}");
        output.WriteLine($"{sw.Elapsed.TotalSeconds:F1} s");
    }

    [Fact]
    public void Config_declares_an_infeasible_problem_and_bad_input_is_named()
    {
        // c(x) ≥ 1 everywhere: once the constraint's GP is confident, no optimistic candidate is feasible.
        var r = ConstrainedEgo.Run(x => x[0], [x => 1 + x[0] * x[0]], [(-1, 1)], 30, 4);
        Assert.True(r.InfeasibilityDeclared);
        Assert.True(r.History.Count < 30);
        Assert.Null(r.Best);
        Assert.All(r.History, e => Assert.Equal(double.PositiveInfinity, e.BestFeasible));
        // Unconstrained, CONFIG is GP-LCB: a 1-d quadratic's minimum is found.
        var u = ConstrainedEgo.Run(x => (x[0] - 0.3) * (x[0] - 0.3), [], [(-2, 2)], 12, 5);
        Assert.Equal(0, u.Best!.Objective, 1e-4);

        Func<double[], double> f = x => x[0];
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => ConstrainedEgo.Run(f, [], [(1, 1)], 5, 0));
        Assert.Equal("bounds", ex.ParamName);
        Assert.Contains("(1, 1)", ex.Message);
        Assert.Equal("budget", Assert.Throws<ArgumentOutOfRangeException>(() => ConstrainedEgo.Run(f, [], [(0, 1)], 0, 0)).ParamName);
        Assert.Equal("bounds", Assert.Throws<ArgumentOutOfRangeException>(() => ConstrainedEgo.Run(f, [], [], 5, 0)).ParamName);
        Assert.Equal("options", Assert.Throws<ArgumentOutOfRangeException>(() => ConstrainedEgo.Run(f, [], [(0, 1)], 5, 0, new ConstrainedEgoOptions { Candidates = 0 })).ParamName);
        var nan = Assert.Throws<ArgumentOutOfRangeException>(() => ConstrainedEgo.Run(x => double.NaN, [], [(0, 1)], 5, 0));
        Assert.Contains("NaN", nan.Message);

        var x2 = Tensor.Zeros(new Shape(3, 2), DType.Float64);
        var h = new GpHyperparameters([1.0, 1.0], 1, 0.1);
        Assert.Equal("y", Assert.Throws<ShapeMismatchException>(() => new GaussianProcess(x2, Tensor.Zeros(new Shape(4), DType.Float64), GpKernel.Matern52, h, 0)).ParamName);
        Assert.Equal("hyperparameters", Assert.Throws<ArgumentOutOfRangeException>(() => new GaussianProcess(x2, Tensor.Zeros(new Shape(3), DType.Float64), GpKernel.Matern52, h with { LengthScales = [1.0] }, 0)).ParamName);
        Assert.Equal("NoiseVariance", Assert.Throws<ArgumentOutOfRangeException>(() => new GaussianProcess(x2, Tensor.Zeros(new Shape(3), DType.Float64), GpKernel.Matern52, h with { NoiseVariance = 0 }, 0)).ParamName);
        Assert.Equal("logHyperparameters", Assert.Throws<ShapeMismatchException>(() => GaussianProcess.Covariance(x2, x2, Tensor.Zeros(new Shape(3), DType.Float64), GpKernel.Matern52)).ParamName);
        Assert.Equal("variance", Assert.Throws<ShapeMismatchException>(() => ConstrainedEgo.ExpectedImprovement(Tensor.Zeros(new Shape(2), DType.Float64), Tensor.Zeros(new Shape(3), DType.Float64), 0)).ParamName);
        Assert.Equal("warmStart", Assert.Throws<ArgumentOutOfRangeException>(() => GaussianProcess.Fit(x2, Tensor.Zeros(new Shape(3), DType.Float64), GpKernel.Matern52, new Generator(0), warmStart: h with { LengthScales = [1.0] })).ParamName);
        Assert.Equal("restarts", Assert.Throws<ArgumentOutOfRangeException>(() => GaussianProcess.Fit(x2, Tensor.Zeros(new Shape(3), DType.Float64), GpKernel.Matern52, new Generator(0), restarts: 0)).ParamName);
    }
}
