using Kiln.Methods.Generative;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests.Methods;

/// <summary>
/// Monotone deep Boltzmann machines: the parameterised W is monotone, the mean-field fixed point is unique and reached
/// at the splitting's linear rate, it minimises the free energy, and its implicit gradient matches finite differences.
/// </summary>
public class GenerativeMonotoneBoltzmannTests
{
    static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    // A random monotone instance: W = (1 − m) I − AᵀA (+ B − Bᵀ), returned with its float64 transcription.
    static (Tensor A, Tensor? B, Tensor W, double[] Wd) Instance(Random rng, int d, double m, bool skew, double scale = 0.8)
    {
        int r = rng.Next(1, d + 2);
        var ad = Dense.Uniform(rng, r * d, -scale, scale);
        var bd = Dense.Uniform(rng, d * d, -scale, scale);
        var wd = Dense.Add(Dense.Scale(Dense.Eye(d), 1 - m), Dense.Mul(Dense.T(ad, r, d), ad, d, r, d), -1);
        if (skew) wd = Dense.Add(wd, Dense.Add(bd, Dense.T(bd, d, d), -1));
        var a = Tensor.FromArray(ad, new Shape(r, d));
        var b = skew ? Tensor.FromArray(bd, new Shape(d, d)) : null;
        return (a, b, MonotoneBoltzmann.Weight(a, m, b), wd);
    }

    // max over rows and units of |q − σ(W q + b)|, written out.
    static double RefResidual(double[] w, double[] b, double[] q, int n, int d)
    {
        double worst = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < d; j++)
            {
                double pre = b[i * d + j];
                for (int k = 0; k < d; k++) pre += w[j * d + k] * q[i * d + k];
                worst = Math.Max(worst, Math.Abs(q[i * d + j] - Sigmoid(pre)));
            }
        return worst;
    }

    static double SpectralNorm(double[] m, int d) => Math.Sqrt(Dense.Eigh(Dense.Mul(Dense.T(m, d, d), m, d, d, d), d).W.Max());

    static double[] Inverse(double[] m, int d)
    {
        var a = (double[])m.Clone();
        var inv = Dense.Eye(d);
        for (int c = 0; c < d; c++)
        {
            int p = Enumerable.Range(c, d - c).MaxBy(i => Math.Abs(a[i * d + c]));
            for (int k = 0; k < d; k++) { (a[c * d + k], a[p * d + k]) = (a[p * d + k], a[c * d + k]); (inv[c * d + k], inv[p * d + k]) = (inv[p * d + k], inv[c * d + k]); }
            double pivot = a[c * d + c];
            for (int k = 0; k < d; k++) { a[c * d + k] /= pivot; inv[c * d + k] /= pivot; }
            for (int i = 0; i < d; i++)
            {
                if (i == c) continue;
                double f = a[i * d + c];
                for (int k = 0; k < d; k++) { a[i * d + k] -= f * a[c * d + k]; inv[i * d + k] -= f * inv[c * d + k]; }
            }
        }
        return inv;
    }

    [Fact]
    public void MonotoneBoltzmann_weight_is_monotone_with_its_margin()
    {
        var rng = new Random(1);
        for (int trial = 0; trial < 10; trial++)
        {
            int d = rng.Next(1, 9);
            double m = 0.05 + rng.NextDouble();
            var (a, _, w, wd) = Instance(rng, d, m, skew: trial % 2 == 0);
            Assert.True(Dense.MaxDiff(wd, w.ToArray<double>()) < 1e-12);
            // sym(I − W) = m I + AᵀA: every eigenvalue is at least m, and exactly m is reached when A has fewer rows than columns.
            var iw = Dense.Add(Dense.Eye(d), wd, -1);
            double lo = Dense.Eigh(Dense.Scale(Dense.Add(iw, Dense.T(iw, d, d)), 0.5), d).W.Min();
            Assert.True(lo >= m - 1e-12, $"λ_min = {lo} < m = {m}");
            Assert.Equal(lo, MonotoneBoltzmann.MonotonicityMargin(w), 1e-10);
            if (a.Shape[0] < d) Assert.Equal(m, lo, 1e-10);
        }
    }

    [Fact]
    public void MonotoneBoltzmann_fixed_point_is_unique_from_every_start()
    {
        var rng = new Random(2);
        for (int trial = 0; trial < 3; trial++)
        {
            int d = rng.Next(2, 8), n = 3;
            var (_, _, w, wd) = Instance(rng, d, 0.1 + 0.5 * rng.NextDouble(), skew: trial % 2 == 1, scale: 0.4);
            var bd = Dense.Uniform(rng, n * d, -2, 2);
            var bias = Tensor.FromArray(bd, new Shape(n, d));
            double[]? first = null;
            foreach (var splitting in new[] { MeanFieldSplitting.PeacemanRachford, MeanFieldSplitting.ForwardBackward })
                for (int start = 0; start < 5; start++)
                {
                    var init = Tensor.FromArray(Dense.Uniform(rng, n * d, 0.01, 0.99), new Shape(n, d));
                    var sol = MonotoneBoltzmann.Solve(w, bias, splitting, init: init, maxIterations: 5000);
                    Assert.True(sol.Converged, $"{splitting}: residual {sol.Residuals[^1]} after {sol.Iterations}");
                    var q = sol.Q.ToArray<double>();
                    Assert.True(RefResidual(wd, bd, q, n, d) <= 1e-10);
                    first ??= q;
                    Assert.True(Dense.MaxDiff(first, q) < 1e-10, $"{splitting} start {start} reached another point: {Dense.MaxDiff(first, q)}");
                }
        }
    }

    [Fact]
    public void MonotoneBoltzmann_splittings_converge_at_their_linear_rates()
    {
        var rng = new Random(3);
        const int n = 2, steps = 20;
        for (int trial = 0; trial < 2; trial++)
        {
            int d = rng.Next(2, 7);
            double m = 0.2 + 0.5 * rng.NextDouble();
            var (_, _, w, wd) = Instance(rng, d, m, skew: true);
            var bd = Dense.Uniform(rng, n * d, -1.5, 1.5);
            var bias = Tensor.FromArray(bd, new Shape(n, d));
            var z0d = Dense.Uniform(rng, n * d, 0.05, 0.95);
            var z0 = Tensor.FromArray(z0d, new Shape(n, d));
            var star = MonotoneBoltzmann.Solve(w, bias).Q.ToArray<double>();
            var a = Dense.Add(Dense.Eye(d), wd, -1);
            double lipschitz = SpectralNorm(a, d), mu = MonotoneBoltzmann.MonotonicityMargin(w);
            double RowDist(double[] x, double[] y, int i) => Math.Sqrt(Enumerable.Range(0, d).Sum(j => Math.Pow(x[i * d + j] - y[i * d + j], 2)));
            double[] Iterate(MeanFieldSplitting s, int k, double alpha) => MonotoneBoltzmann.Solve(w, bias, s, alpha, z0, tolerance: 1e-300, maxIterations: k).Q.ToArray<double>();

            // Forward–backward with α = m/L²: z ↦ z − α(A z − b) contracts by ‖I − αA‖₂, and the prox of the 3α-strongly
            // convex α f (f″ = 1/(z(1 − z)) − 1 ≥ 3) by 1/(1 + 3α).
            double alphaFb = mu / (lipschitz * lipschitz);
            double rhoFb = SpectralNorm(Dense.Add(Dense.Eye(d), a, -alphaFb), d) / (1 + 3 * alphaFb);
            // Peaceman–Rachford on u (z = prox u): the reflected resolvent (I − αA)(I + αA)⁻¹ contracts, the reflected prox is nonexpansive.
            const double alphaPr = 0.7;
            double rhoPr = SpectralNorm(Dense.Mul(Dense.Add(Dense.Eye(d), a, -alphaPr), Inverse(Dense.Add(Dense.Eye(d), a, alphaPr), d), d, d, d), d);
            Assert.True(rhoFb < 1 && rhoPr < 1, $"rates {rhoFb}, {rhoPr}");
            // u = (1 − α) z + α logit z is the prox preimage of z.
            double[] Pre(double[] z) => z.Select(v => (1 - alphaPr) * v + alphaPr * Math.Log(v / (1 - v))).ToArray();
            double[] u0 = Pre(z0d), uStar = Pre(star);
            for (int k = 1; k <= steps; k++)
            {
                var fb = Iterate(MeanFieldSplitting.ForwardBackward, k, alphaFb);
                var pr = Iterate(MeanFieldSplitting.PeacemanRachford, k, alphaPr);
                for (int i = 0; i < n; i++)
                {
                    Assert.True(RowDist(fb, star, i) <= Math.Pow(rhoFb, k) * RowDist(z0d, star, i) * (1 + 1e-9) + 1e-13, $"FB step {k}");
                    Assert.True(RowDist(pr, star, i) <= Math.Pow(rhoPr, k) * RowDist(u0, uStar, i) * (1 + 1e-9) + 1e-13, $"PR step {k}");
                }
            }
            // The reported residual history falls geometrically too: |r(z)| ≤ (1 + ‖W‖₂/4) ‖z − z*‖ since σ is ¼-Lipschitz.
            var hist = MonotoneBoltzmann.Solve(w, bias, MeanFieldSplitting.PeacemanRachford, alphaPr, z0).Residuals;
            double c = (1 + SpectralNorm(wd, d) / 4) * Enumerable.Range(0, n).Max(i => RowDist(u0, uStar, i));
            for (int k = 0; k < hist.Count; k++) Assert.True(hist[k] <= c * Math.Pow(rhoPr, k) + 1e-13, $"residual {hist[k]} at {k}");
            // The default forward–backward step is m/L².
            var fbDefault = MonotoneBoltzmann.Solve(w, bias, MeanFieldSplitting.ForwardBackward, init: z0, tolerance: 1e-300, maxIterations: 3).Q.ToArray<double>();
            Assert.True(Dense.MaxDiff(Iterate(MeanFieldSplitting.ForwardBackward, 3, alphaFb), fbDefault) < 1e-12);
        }
    }

    [Fact]
    public void MonotoneBoltzmann_fixed_point_minimises_the_free_energy()
    {
        var rng = new Random(4);
        const int n = 3, d = 5;
        var (_, _, w, wd) = Instance(rng, d, 0.3, skew: false);
        var bd = Dense.Uniform(rng, n * d, -2, 2);
        var bias = Tensor.FromArray(bd, new Shape(n, d));
        var q = MonotoneBoltzmann.Solve(w, bias).Q;
        var qd = q.ToArray<double>();
        // Transcription of F(q) = −½ qᵀWq − bᵀq + Σ [q log q + (1 − q) log(1 − q)].
        double[] RefF(double[] x) => Enumerable.Range(0, n).Select(i => Enumerable.Range(0, d).Sum(j =>
            -0.5 * x[i * d + j] * Enumerable.Range(0, d).Sum(k => wd[j * d + k] * x[i * d + k]) - bd[i * d + j] * x[i * d + j]
            + x[i * d + j] * Math.Log(x[i * d + j]) + (1 - x[i * d + j]) * Math.Log(1 - x[i * d + j]))).ToArray();
        var fStar = MonotoneBoltzmann.FreeEnergy(w, bias, q).ToArray<double>();
        Assert.True(Dense.MaxDiff(RefF(qd), fStar) < 1e-12);
        // Stationary: ∇F(q*) = −W q* − b + logit q* = 0; and every other point has higher free energy (strong convexity).
        var qr = q.Detach().RequiresGrad_();
        Assert.True(Dense.MaxAbs(Autograd.Grad(MonotoneBoltzmann.FreeEnergy(w, bias, qr).Sum(), qr).ToArray<double>()) < 1e-8);
        for (int trial = 0; trial < 20; trial++)
        {
            var other = RefF(Dense.Uniform(rng, n * d, 0.001, 0.999));
            for (int i = 0; i < n; i++) Assert.True(other[i] > fStar[i]);
        }
        var gc = GradCheck.Run(xs => MonotoneBoltzmann.FreeEnergy(xs[0], xs[1], xs[2]), [w, bias, q]);
        Assert.True(gc.Passed, gc.ToString());
    }

    [Fact]
    public void MonotoneBoltzmann_implicit_gradient_matches_finite_differences()
    {
        var rng = new Random(5);
        var (a, b, _, _) = Instance(rng, 4, 0.4, skew: true);
        var bias = Tensor.FromArray(Dense.Uniform(rng, 3 * 4, -1, 1), new Shape(3, 4));
        var gc = GradCheck.Run(xs => MonotoneBoltzmann.MeanField(MonotoneBoltzmann.Weight(xs[0], 0.4, xs[1]), xs[2]), [a, b!, bias]);
        Assert.True(gc.Passed, gc.ToString());
    }

    [Fact]
    public void MonotoneBoltzmann_proximal_operator_solves_its_equation()
    {
        var wide = Tensor.FromArray(Dense.Uniform(new Random(6), 40, -30, 30), new Shape(40));
        var sig = MonotoneBoltzmann.Proximal(wide, 1).ToArray<double>();
        Assert.All(wide.ToArray<double>().Zip(sig), p => Assert.Equal(Sigmoid(p.First), p.Second, 1e-15 * Sigmoid(p.First)));
        // Ranges whose solutions stay well inside (0, 1), where logit z is accurate in float64.
        foreach (var (alpha, lo, hi) in new[] { (0.05, -0.5, 1.5), (0.3, -4.0, 4.0), (0.7, -4.0, 4.0), (2.5, -8.0, 8.0), (40, -100.0, 100.0) })
        {
            var v = Tensor.FromArray(Dense.Uniform(new Random(7), 40, lo, hi), new Shape(40));
            var vd = v.ToArray<double>();
            var z = MonotoneBoltzmann.Proximal(v, alpha).ToArray<double>();
            for (int i = 0; i < z.Length; i++)
            {
                Assert.InRange(z[i], 0, 1);
                // Stationarity (1 − α) z + α logit z = v, and z beats its neighbours on ½(z − v)² + α f(z).
                Assert.Equal(vd[i], (1 - alpha) * z[i] + alpha * Math.Log(z[i] / (1 - z[i])), 1e-9 * (1 + Math.Abs(vd[i])));
                double Obj(double x) => 0.5 * (x - vd[i]) * (x - vd[i]) + alpha * (x * Math.Log(x) + (1 - x) * Math.Log(1 - x) - x * x / 2);
                double h = 1e-3 * Math.Min(z[i], 1 - z[i]);
                Assert.True(Obj(z[i]) <= Math.Min(Obj(z[i] - h), Obj(z[i] + h)) + 1e-15);
            }
        }
    }

    [Fact]
    public void MonotoneBoltzmann_non_monotone_weight_can_have_two_fixed_points()
    {
        // A single unit with self-coupling 8 and bias −4: q = σ(8q − 4) is bistable, and I − W = −7 is not monotone.
        var w = Tensor.FromArray(new double[] { 8 }, new Shape(1, 1));
        var b = Tensor.FromArray(new double[] { -4 }, new Shape(1, 1));
        double Root(double lo, double hi)
        {
            for (int k = 0; k < 200; k++) { double mid = (lo + hi) / 2; if (Sigmoid(8 * mid - 4) - mid > 0) lo = mid; else hi = mid; }
            return (lo + hi) / 2;
        }
        double low = Root(1e-9, 0.3), high = Root(0.7, 1 - 1e-9);
        Assert.True(high - low > 0.9);
        foreach (double q in new[] { low, high })
            Assert.True(Math.Abs(MonotoneBoltzmann.Residual(w, b, Tensor.FromArray(new[] { q }, new Shape(1, 1))).Item()) < 1e-14);
        Assert.Equal(-7, MonotoneBoltzmann.MonotonicityMargin(w), 1e-12);
        Assert.Equal("weight", Assert.Throws<ArgumentException>(() => MonotoneBoltzmann.Solve(w, b)).ParamName);
    }

    [Fact]
    public void MonotoneBoltzmann_rejects_bad_input()
    {
        var a = Tensor.Ones(new Shape(2, 3), DType.Float64);
        var w = MonotoneBoltzmann.Weight(a, 0.5);
        var b = Tensor.Zeros(new Shape(4, 3), DType.Float64);
        Assert.Equal("margin", Assert.Throws<ArgumentOutOfRangeException>(() => MonotoneBoltzmann.Weight(a, 0)).ParamName);
        Assert.Equal("skew", Assert.Throws<ShapeMismatchException>(() => MonotoneBoltzmann.Weight(a, 0.5, Tensor.Ones(new Shape(2, 2), DType.Float64))).ParamName);
        Assert.Equal("weight", Assert.Throws<ShapeMismatchException>(() => MonotoneBoltzmann.MonotonicityMargin(a)).ParamName);
        Assert.Equal("bias", Assert.Throws<ShapeMismatchException>(() => MonotoneBoltzmann.Solve(w, Tensor.Zeros(new Shape(4, 2), DType.Float64))).ParamName);
        Assert.Equal("alpha", Assert.Throws<ArgumentOutOfRangeException>(() => MonotoneBoltzmann.Solve(w, b, alpha: -1)).ParamName);
        Assert.Equal("init", Assert.Throws<ArgumentOutOfRangeException>(() => MonotoneBoltzmann.Solve(w, b, init: Tensor.Ones(new Shape(4, 3), DType.Float64))).ParamName);
        Assert.Equal("maxIterations", Assert.Throws<ArgumentException>(() => MonotoneBoltzmann.MeanField(w, b + 3, maxIterations: 1)).ParamName);
        Assert.Equal("q", Assert.Throws<ArgumentOutOfRangeException>(() => MonotoneBoltzmann.FreeEnergy(w, b, b)).ParamName);
        Assert.Equal("alpha", Assert.Throws<ArgumentOutOfRangeException>(() => MonotoneBoltzmann.Proximal(b, double.NaN)).ParamName);
        // Empty batches: nothing to solve.
        var empty = MonotoneBoltzmann.Solve(w, Tensor.Zeros(new Shape(0, 3), DType.Float64));
        Assert.True(empty.Converged);
        Assert.Equal(new Shape(0, 3), empty.Q.Shape);
    }
}
