using FsCheck.Fluent;
using Kiln.Methods.SelfSupervised;
using Kiln.NN;
using Kiln.Tests.TestKit;
using Xunit;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests.Methods;

/// <summary>VICReg, E2MC, GradCache and COD against direct float64 transcriptions of their papers' equations.</summary>
public class SelfSupervisedTests
{
    static double[,] Rand(Random r, int n, int d, double scale = 1)
    {
        var a = new double[n, d];
        for (int i = 0; i < n; i++) for (int j = 0; j < d; j++) a[i, j] = scale * (r.NextDouble() * 2 - 1 + 0.3 * Math.Sin(i * 1.7 + j));
        return a;
    }

    static Tensor T(double[,] a) => Tensor.FromArray(a);

    static double[] Column(double[,] z, int j) => Enumerable.Range(0, z.GetLength(0)).Select(i => z[i, j]).ToArray();

    // Sample covariance with Bessel's correction, d x d.
    static double[,] Cov(double[,] z)
    {
        int n = z.GetLength(0), d = z.GetLength(1);
        var mean = Enumerable.Range(0, d).Select(j => Column(z, j).Average()).ToArray();
        var c = new double[d, d];
        for (int a = 0; a < d; a++) for (int b = 0; b < d; b++)
        {
            double s = 0;
            for (int i = 0; i < n; i++) s += (z[i, a] - mean[a]) * (z[i, b] - mean[b]);
            c[a, b] = s / (n - 1);
        }
        return c;
    }

    static double RefVariance(double[,] z, double gamma, double eps)
    {
        int d = z.GetLength(1);
        var c = Cov(z);
        return Enumerable.Range(0, d).Sum(j => Math.Max(0, gamma - Math.Sqrt(c[j, j] + eps))) / d;
    }

    static double RefCovariance(double[,] z)
    {
        int d = z.GetLength(1);
        var c = Cov(z);
        double s = 0;
        for (int a = 0; a < d; a++) for (int b = 0; b < d; b++) if (a != b) s += c[a, b] * c[a, b];
        return s / d;
    }

    static void Near(double expected, double actual, double tol, string what) =>
        Assert.True(Math.Abs(expected - actual) <= tol * (1 + Math.Abs(expected)), $"{what}: expected {expected:R}, got {actual:R}");

    // ---------------- VICReg ----------------

    [Fact]
    public void Vicreg_terms_match_the_papers_equations()
    {
        Props.Check(G.Choose(2, 12).Zip(G.Choose(1, 7)).Zip(TensorGen.Seed), c =>
        {
            var ((n, d), seed) = c;
            var r = new Random(seed);
            var z1 = Rand(r, n, d, 0.2 + 2 * r.NextDouble());
            var z2 = Rand(r, n, d, 0.2 + 2 * r.NextDouble());
            double gamma = 0.5 + r.NextDouble(), eps = 1e-4;
            double s = 0;
            for (int i = 0; i < n; i++) for (int j = 0; j < d; j++) s += (z1[i, j] - z2[i, j]) * (z1[i, j] - z2[i, j]);
            s /= n * d;
            Near(s, SelfSupervisedLosses.VicRegInvariance(T(z1), T(z2)).Item(), 1e-12, "invariance");
            Near(RefVariance(z1, gamma, eps), SelfSupervisedLosses.VicRegVariance(T(z1), gamma, eps).Item(), 1e-12, "variance");
            Near(RefCovariance(z2), SelfSupervisedLosses.VicRegCovariance(T(z2)).Item(), 1e-12, "covariance");
            double total = 25 * s + 20 * (RefVariance(z1, gamma, eps) + RefVariance(z2, gamma, eps)) + 3 * (RefCovariance(z1) + RefCovariance(z2));
            Near(total, SelfSupervisedLosses.VicReg(T(z1), T(z2), 25, 20, 3, gamma, eps).Item(), 1e-12, "loss");
        }, 40);
    }

    [Fact]
    public void Vicreg_variance_is_zero_when_every_std_reaches_gamma_and_covariance_is_zero_for_a_whitened_batch()
    {
        int n = 9, d = 4;
        // Helmert columns: orthonormal and centred, so √(n-1)·Q has identity sample covariance.
        var z = new double[n, d];
        for (int j = 1; j <= d; j++)
        {
            double s = Math.Sqrt(n - 1) / Math.Sqrt(j * (j + 1.0));
            for (int i = 0; i < j; i++) z[i, j - 1] = s;
            z[j, j - 1] = -j * s;
        }
        var zt = T(z);
        Assert.Equal(0.0, SelfSupervisedLosses.VicRegVariance(zt, gamma: 1).Item());
        Assert.True(SelfSupervisedLosses.VicRegCovariance(zt).Item() < 1e-28);
        Assert.True(SelfSupervisedLosses.VicRegVariance(zt * 0.5, gamma: 1).Item() > 0.4);
        var spread = T(Rand(new Random(3), 20, 5, 10));
        Assert.Equal(0.0, SelfSupervisedLosses.VicRegVariance(spread, gamma: 1).Item());
        // Identical views: no invariance penalty.
        Assert.Equal(0.0, SelfSupervisedLosses.VicRegInvariance(spread, spread).Item());
    }

    [Fact]
    public void Vicreg_gradients_match_finite_differences()
    {
        var r = new Random(11);
        // Stds well below gamma in one view and well above in the other, so no hinge sits at its kink.
        var z1 = T(Rand(r, 7, 4, 0.4));
        var z2 = T(Rand(r, 7, 4, 4));
        var res = GradCheck.Run(x => SelfSupervisedLosses.VicReg(x[0], x[1]), [z1, z2]);
        Assert.True(res.Passed, res.ToString());
    }

    [Fact]
    public void Vicreg_rejects_bad_input_naming_it()
    {
        var a = Tensor.Zeros(new Shape(4, 3), DType.Float64);
        var e = Assert.Throws<ShapeMismatchException>(() => SelfSupervisedLosses.VicReg(a, Tensor.Zeros(new Shape(4, 2), DType.Float64)));
        Assert.Contains("z2", e.Message);
        var one = Assert.Throws<ArgumentException>(() => SelfSupervisedLosses.VicRegVariance(Tensor.Zeros(new Shape(1, 3), DType.Float64)));
        Assert.Contains("1 rows", one.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => SelfSupervisedLosses.VicRegVariance(a, eps: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => SelfSupervisedLosses.VicReg(a, a, invarianceWeight: double.NaN));
        Assert.Throws<ShapeMismatchException>(() => SelfSupervisedLosses.VicRegCovariance(Tensor.Zeros(new Shape(4), DType.Float64)));
    }

    // ---------------- E2MC ----------------

    static double RefMSpacing(double[] col, int m, double delta)
    {
        int n = col.Length;
        var s = col.Order().ToArray();
        double h = 0;
        for (int i = 0; i + m < n; i++) h += Math.Log((n + 1.0) / m * (s[i + m] - s[i]) + delta);
        return h / (n - m);
    }

    [Fact]
    public void M_spacing_entropy_matches_its_formula()
    {
        Props.Check(G.Choose(2, 40).Zip(G.Choose(1, 5)).Zip(TensorGen.Seed), c =>
        {
            var ((n, d), seed) = c;
            var r = new Random(seed);
            var u = Rand(r, n, d);
            int m = 1 + r.Next(n - 1);
            var got = SelfSupervisedLosses.MSpacingEntropy(T(u), m).ToArray<double>();
            var dflt = SelfSupervisedLosses.MSpacingEntropy(T(u)).ToArray<double>();
            int mDefault = Math.Max(1, (int)Math.Round(Math.Sqrt(n), MidpointRounding.ToEven));
            for (int j = 0; j < d; j++)
            {
                Near(RefMSpacing(Column(u, j), m, 1e-7), got[j], 1e-12, $"column {j}, m {m}");
                Near(RefMSpacing(Column(u, j), mDefault, 1e-7), dflt[j], 1e-12, $"column {j}, default m");
            }
        }, 40);
    }

    // Embeddings whose transformed coordinates are i.i.d. uniform on [0, 1]: the inverse of the transform applied to uniforms.
    static Tensor UniformAfter(EntropyTransform t, int n, int d, Generator g)
    {
        var u = Tensor.Rand(new Shape(n, d), g, 1e-6, 1 - 1e-6, DType.Float64);
        return t == EntropyTransform.Sigmoid ? (u / (1.0 - u)).Log() : (u * 2.0 - 1.0).Erfinv() * Math.Sqrt(2);
    }

    [Theory]
    [InlineData(EntropyTransform.Sigmoid)]
    [InlineData(EntropyTransform.GaussianCdf)]
    public void E2mc_is_best_for_independent_uniform_transformed_coordinates(EntropyTransform transform)
    {
        int n = 512, d = 4;
        var g = new Generator(7);
        double Loss(Tensor z) => SelfSupervisedLosses.E2mc(z, 1, 1, transform).Item();
        var best = UniformAfter(transform, n, d, g);
        var (h, c) = SelfSupervisedLosses.EffectiveEntropy(best, transform);
        // The uniform on [0, 1] has entropy 0, the maximum there; the m-spacing estimate is within its small bias.
        Assert.InRange(h.Item(), -0.06, 0.01);
        Assert.True(c.Item() < 1e-3, $"covariance {c.Item()}");
        double lBest = Loss(best);
        // Uniform on the sphere (scaled to unit variance per coordinate) is not the optimum.
        var gs = Tensor.Randn(new Shape(n, d), g, dtype: DType.Float64);
        var sphere = gs / gs.Square().Sum(1, keepDim: true).Sqrt() * Math.Sqrt(d);
        Assert.True(Loss(sphere) > lBest + 0.02, $"sphere {Loss(sphere)} vs uniform {lBest}");
        // Collapse (all embeddings nearly equal) and strong correlation (every coordinate a copy of the first) are worse.
        var collapsed = Tensor.Randn(new Shape(n, d), g, std: 1e-3, dtype: DType.Float64) + 0.3;
        Assert.True(Loss(collapsed) > lBest + 1, $"collapsed {Loss(collapsed)} vs uniform {lBest}");
        var first = best.Narrow(1, 0, 1);
        var correlated = first.Expand(n, d) + Tensor.Randn(new Shape(n, d), g, std: 0.05, dtype: DType.Float64);
        Assert.True(Loss(correlated) > lBest + 0.02, $"correlated {Loss(correlated)} vs uniform {lBest}");
        // Too narrow or too wide Gaussians make non-uniform marginals.
        Assert.True(Loss(Tensor.Randn(new Shape(n, d), g, std: 0.3, dtype: DType.Float64)) > lBest + 0.1);
        Assert.True(Loss(Tensor.Randn(new Shape(n, d), g, std: 5, dtype: DType.Float64)) > lBest + 0.1);
    }

    [Fact]
    public void E2mc_gradients_match_finite_differences()
    {
        var z = T(Rand(new Random(5), 9, 3, 1.5));
        foreach (var t in new[] { EntropyTransform.Sigmoid, EntropyTransform.GaussianCdf })
        {
            var res = GradCheck.Run(x => SelfSupervisedLosses.E2mc(x[0], 0.7, 2.0, t, m: 2), [z]);
            Assert.True(res.Passed, $"{t}: {res}");
        }
    }

    [Fact]
    public void E2mc_rejects_bad_input_naming_it()
    {
        var z = Tensor.Zeros(new Shape(5, 2), DType.Float64);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => SelfSupervisedLosses.MSpacingEntropy(z, m: 5));
        Assert.Contains("[1, 4]", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => SelfSupervisedLosses.E2mc(z, entropyWeight: double.PositiveInfinity));
        Assert.Throws<ArgumentException>(() => SelfSupervisedLosses.EffectiveEntropy(Tensor.Zeros(new Shape(1, 2), DType.Float64)));
        Assert.Throws<ArgumentException>(() => SelfSupervisedLosses.MSpacingEntropy(Tensor.Zeros(new Shape(5, 2), DType.Int64)));
    }

    // ---------------- GradCache ----------------

    static Tensor InfoNce(Tensor[] r) => Losses.CrossEntropy(r[0].MatMul(r[1].T) * 2.0, Tensor.Arange(r[0].Shape[0]));

    static double[][] Grads(IEnumerable<Parameter> ps) => ps.Select(p => p.Grad!.ToArray<double>()).ToArray();

    [Fact]
    public void Grad_cache_gradients_equal_full_batch_backprop_for_any_chunking()
    {
        Props.Check(G.Choose(1, 12).Zip(G.Choose(1, 14)).Zip(TensorGen.Seed), c =>
        {
            var ((n, chunk), seed) = c;
            var g = new Generator((ulong)seed);
            var fq = new MLP([5, 8, 4], ActivationKind.Gelu, generator: g, dtype: DType.Float64);
            var fp = new MLP([6, 7, 4], ActivationKind.Tanh, generator: g, dtype: DType.Float64);
            var q = Tensor.Randn(new Shape(n, 5), g, dtype: DType.Float64);
            var p = Tensor.Randn(new Shape(n, 6), g, dtype: DType.Float64);
            var ps = fq.Parameters().Concat(fp.Parameters()).ToArray();

            var full = InfoNce([fq.Call(q), fp.Call(p)]);
            full.Backward();
            var expected = Grads(ps);
            foreach (var x in ps) x.Grad = null;

            var l = GradCache.Backward([fq.Call, fp.Call], [q, p], InfoNce, chunk);
            Near(full.Item(), l.Item(), 1e-13, "loss");
            var got = Grads(ps);
            for (int k = 0; k < ps.Length; k++)
                Assert.True(Dense.MaxDiff(expected[k], got[k]) <= 1e-12 * (1 + Dense.MaxAbs(expected[k])),
                    $"n {n}, chunk {chunk}, parameter {k}: max diff {Dense.MaxDiff(expected[k], got[k]):G3}");
        }, 30);
    }

    [Fact]
    public void Grad_cache_replays_dropout_draws_and_records_graphs_of_one_chunk_at_a_time()
    {
        int n = 10, chunk = 3;
        var g = new Generator(21);
        var enc = new MLP([5, 16, 16, 4], dropout: 0.3, generator: g, dtype: DType.Float64);
        var x = Tensor.Randn(new Shape(n, 5), g, dtype: DType.Float64);
        Tensor Loss(Tensor[] r) => SelfSupervisedLosses.VicReg(r[0], r[1]);
        var y = x.Flip(0);
        ulong start = g.Counter;

        // Reference: the same chunked forward (the same dropout masks), recorded as one graph.
        Tensor Chunked(Tensor input) => Tensor.Concat(Enumerable.Range(0, (n + chunk - 1) / chunk)
            .Select(i => enc.Call(input.Narrow(0, i * chunk, Math.Min(chunk, n - i * chunk)))).ToArray(), 0);
        var full = Loss([Chunked(x), Chunked(y)]);
        full.Backward();
        ulong end = g.Counter;
        var expected = Grads(enc.Parameters());
        enc.ZeroGrad();
        foreach (var p in enc.Parameters()) p.Grad = null;

        g.Counter = start;
        int maxGraphRows = 0;
        Tensor Watched(Tensor input)
        {
            if (Autograd.IsEnabled) maxGraphRows = Math.Max(maxGraphRows, input.Shape[0]);
            return enc.Call(input);
        }
        var l = GradCache.Backward([Watched, Watched], [x, y], Loss, chunk, [g]);
        Near(full.Item(), l.Item(), 1e-13, "loss");
        Assert.Equal(end, g.Counter);
        Assert.Equal(chunk, maxGraphRows);
        var got = Grads(enc.Parameters());
        for (int k = 0; k < got.Length; k++) Assert.True(Dense.MaxDiff(expected[k], got[k]) <= 1e-12 * (1 + Dense.MaxAbs(expected[k])), $"parameter {k}");

        // Without the replay the second encoding draws new masks, and the gradient is not the loss's.
        foreach (var p in enc.Parameters()) p.Grad = null;
        g.Counter = start;
        GradCache.Backward([enc.Call, enc.Call], [x, y], Loss, chunk);
        Assert.Contains(Grads(enc.Parameters()).Zip(expected), t => Dense.MaxDiff(t.First, t.Second) > 1e-6);
    }

    [Fact]
    public void Grad_cache_rejects_bad_input_naming_it()
    {
        var x = Tensor.Zeros(new Shape(4, 2), DType.Float64);
        Func<Tensor, Tensor> id = t => t;
        Assert.Throws<ArgumentOutOfRangeException>(() => GradCache.Backward([id], [x], r => r[0].Sum(), 0));
        var e = Assert.Throws<ArgumentException>(() => GradCache.Backward([id, id], [x], r => r[0].Sum(), 2));
        Assert.Contains("2 encoders for 1 input groups", e.Message);
        Assert.Throws<ArgumentException>(() => GradCache.Backward([t => t.Sum(1).Narrow(0, 0, 1)], [x], r => r[0].Sum(), 2));
        Assert.Throws<ArgumentException>(() => GradCache.Backward([id], [x], r => r[0], 2));
        Assert.Throws<ArgumentException>(() => GradCache.Backward([id], [Tensor.Zeros(new Shape(0, 2), DType.Float64)], r => r[0].Sum(), 2));
    }

    // ---------------- COD ----------------

    static double[] Flat(double[,] a) => a.Cast<double>().ToArray();

    // (1/n) Σ (a_i - ā)(b_i - b̄)ᵀ, p x q.
    static double[] CenteredCross(double[,] a, double[,] b)
    {
        int n = a.GetLength(0), p = a.GetLength(1), q = b.GetLength(1);
        var ma = Enumerable.Range(0, p).Select(j => Column(a, j).Average()).ToArray();
        var mb = Enumerable.Range(0, q).Select(j => Column(b, j).Average()).ToArray();
        var c = new double[p * q];
        for (int i = 0; i < n; i++) for (int x = 0; x < p; x++) for (int y = 0; y < q; y++) c[x * q + y] += (a[i, x] - ma[x]) * (b[i, y] - mb[y]) / n;
        return c;
    }

    // Explicit feature-space COD for the linear kernel: U = XᵀY (YᵀY + nεI)⁻¹ and C_XX|Y = C_XX - C_XY (C_YY + εI)⁻¹ C_YX.
    static (double Cmmd, double Ckb) RefCodLinear(double[,] xs, double[,] ys, double[,] xt, double[,] yt, double eps)
    {
        int p = xs.GetLength(1), q = ys.GetLength(1);
        double[] U(double[,] x, double[,] y)
        {
            int n = x.GetLength(0);
            var yty = Dense.Add(Dense.Mul(Dense.T(Flat(y), n, q), Flat(y), q, n, q), Dense.Scale(Dense.Eye(q), n * eps));
            return Dense.Mul(Dense.Mul(Dense.T(Flat(x), n, p), Flat(y), p, n, q), Dense.SymFunction(yty, q, w => 1 / w), p, q, q);
        }
        double[] Ccond(double[,] x, double[,] y)
        {
            var cxy = CenteredCross(x, y);
            var cyy = Dense.Add(CenteredCross(y, y), Dense.Scale(Dense.Eye(q), eps));
            var explained = Dense.Mul(Dense.Mul(cxy, Dense.SymFunction(cyy, q, w => 1 / w), p, q, q), Dense.T(cxy, p, q), p, q, p);
            return Dense.Add(CenteredCross(x, x), explained, -1);
        }
        var du = Dense.Add(U(xs, ys), U(xt, yt), -1);
        double cmmd = du.Sum(v => v * v);
        var a = Ccond(xs, ys); var b = Ccond(xt, yt);
        var ra = Dense.SymFunction(a, p, w => Math.Sqrt(Math.Max(w, 0)));
        var inner = Dense.Mul(Dense.Mul(ra, b, p, p, p), ra, p, p, p);
        // Eigenvalues at rounding level are the rank deficiency's exact zeros (their square roots would add ~1e-8).
        var w = Dense.Eigh(inner, p).W;
        double fidelity = w.Where(x => x > 1e-13 * Math.Max(w.Max(), 1e-300)).Sum(Math.Sqrt);
        double tr(double[] m) => Enumerable.Range(0, p).Sum(i => m[i * p + i]);
        return (cmmd, tr(a) + tr(b) - 2 * fidelity);
    }

    [Fact]
    public void Cod_equals_the_explicit_feature_space_computation_for_a_linear_kernel()
    {
        Props.Check(G.Choose(2, 10).Zip(G.Choose(2, 10)).Zip(G.Choose(1, 4).Zip(G.Choose(1, 3))).Zip(TensorGen.Seed), c =>
        {
            var (((ns, nt), (p, q)), seed) = c;
            var r = new Random(seed);
            var xs = Rand(r, ns, p); var ys = Rand(r, ns, q); var xt = Rand(r, nt, p, 1.5); var yt = Rand(r, nt, q);
            double eps = r.Next(2) == 0 ? 0.05 : 0.7;
            var (cmmd, ckb) = RefCodLinear(xs, ys, xt, yt, eps);
            var (gotCmmd, gotCkb) = ConditionalOperatorDiscrepancy.Terms(T(xs), T(ys), T(xt), T(yt), eps);
            Near(cmmd, gotCmmd.Item(), 1e-9, "cmmd");
            Near(ckb, gotCkb.Item(), 1e-9, "ckb");
        }, 40);
    }

    // x = (sin 2y, y²) + noise, y uniform on [lo, hi]; shift moves p(x | y).
    static (Tensor X, Tensor Y) Domain(int n, double lo, double hi, double shift, Generator g)
    {
        var y = Tensor.Rand(new Shape(n, 1), g, lo, hi, DType.Float64);
        var x = Tensor.Concat([(y * 2.0).Sin(), y.Square() + shift], 1) + Tensor.Randn(new Shape(n, 2), g, std: 0.05, dtype: DType.Float64);
        return (x, y);
    }

    [Fact]
    public void Cod_is_nonnegative_and_shrinks_with_the_sample_size_when_the_conditionals_agree()
    {
        var kx = CodKernels.Gaussian(0.5);
        var ky = CodKernels.Gaussian(0.5);
        double Cod(int n, double shift, int s)
        {
            var g = new Generator((ulong)(100 * n + s));
            // Labels uniform on [-1, 1] in the source and skewed towards 1 in the target; the same p(x | y) unless shifted.
            var (xs, ys) = Domain(n, -1, 1, 0, g);
            var (xt, yt) = Skewed(n, shift, g);
            double v = ConditionalOperatorDiscrepancy.Compute(xs, ys, xt, yt, 0.05, kx, ky).Item();
            Assert.True(v >= -1e-12, $"COD {v} is negative");
            return v;
        }
        double Mean(int n) => Enumerable.Range(0, 3).Average(s => Cod(n, 0, s));
        double small = Mean(16), mid = Mean(48), large = Mean(144);
        // Finite-sample bias shrinks with n; the regularization bias (the label marginals differ) stays.
        Assert.True(small > mid && mid > large, $"COD {small}, {mid}, {large} for n = 16, 48, 144");
        Assert.InRange(large, 1e-3, 0.3);
        double shifted = Cod(144, 0.5, 0);
        Assert.True(shifted > 5 * large, $"shifted conditionals: {shifted} against {large}");
    }

    static (Tensor X, Tensor Y) Skewed(int n, double shift, Generator g)
    {
        var u = Tensor.Rand(new Shape(n, 1), g, 0, 1, DType.Float64);
        var y = 1.0 - u.Square() * 2.0;
        var x = Tensor.Concat([(y * 2.0).Sin(), y.Square() + shift], 1) + Tensor.Randn(new Shape(n, 2), g, std: 0.05, dtype: DType.Float64);
        return (x, y);
    }

    [Fact]
    public void Cod_gradients_match_finite_differences()
    {
        var r = new Random(17);
        var res = GradCheck.Run(x => ConditionalOperatorDiscrepancy.Compute(x[0], x[1], x[2], x[3], 0.1, CodKernels.Gaussian(1.0), CodKernels.Gaussian(0.7)),
            [T(Rand(r, 5, 2)), T(Rand(r, 5, 1)), T(Rand(r, 4, 2)), T(Rand(r, 4, 1))]);
        Assert.True(res.Passed, res.ToString());
    }

    [Fact]
    public void Cod_rejects_bad_input_naming_it()
    {
        var x = Tensor.Zeros(new Shape(4, 2), DType.Float64);
        var y = Tensor.Zeros(new Shape(4), DType.Float64);
        var e = Assert.Throws<ShapeMismatchException>(() => ConditionalOperatorDiscrepancy.Compute(x, Tensor.Zeros(new Shape(3), DType.Float64), x, y));
        Assert.Contains("ys", e.Message);
        Assert.Throws<ShapeMismatchException>(() => ConditionalOperatorDiscrepancy.Compute(x, y, Tensor.Zeros(new Shape(4, 3), DType.Float64), y));
        Assert.Throws<ArgumentException>(() => ConditionalOperatorDiscrepancy.Compute(x.Narrow(0, 0, 1), y.Narrow(0, 0, 1), x, y));
        Assert.Throws<ArgumentOutOfRangeException>(() => ConditionalOperatorDiscrepancy.Compute(x, y, x, y, epsilon: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => CodKernels.Gaussian(-1));
    }
}

/// <summary>`kiln ssl` end to end with tiny settings (it swaps the console, so it runs alone).</summary>
[Collection(nameof(SerialCollection))]
public class SslVerbTests
{
    [Fact]
    public void Ssl_verb_writes_one_json_object_with_the_table()
    {
        var j = CliRun.JsonObject(Kiln.Cli.SslVerb.Build(), ["ssl", "--steps", "4", "--continue-steps", "2", "--batch", "32", "--probe-steps", "5", "--eval-every", "2", "--json"]);
        var rows = j.GetProperty("rows").EnumerateArray().ToArray();
        Assert.Equal(["pixels", "random encoder", "vicreg", "vicreg continued", "vicreg + e2mc"], rows.Select(r => r.GetProperty("method").GetString()));
        Assert.Equal([0, 0, 4, 6, 6], rows.Select(r => r.GetProperty("steps").GetInt32()));
        foreach (var r in rows) Assert.InRange(r.GetProperty("test_accuracy").GetDouble(), 0, 1);
        Assert.Equal([0, 2, 4, 6], rows[4].GetProperty("curve").EnumerateArray().Select(c => c.GetProperty("step").GetInt32()));
        Assert.Equal(1797, j.GetProperty("train").GetInt32() + j.GetProperty("test").GetInt32());
        // A bad setting is bad usage (exit 2), before any training.
        Assert.Equal(2, CliRun.Capture(Kiln.Cli.SslVerb.Build(), ["ssl", "--batch", "2", "--json"]).Code);
    }
}
