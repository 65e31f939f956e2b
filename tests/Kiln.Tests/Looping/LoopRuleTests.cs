using Kiln.Methods.Looping;
using Kiln.NN.Decoder;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests.Looping;

/// <summary>The loop rules on layers whose exact iterates are known: linear residual layers g(x) = x + A x, fixed points,
/// K = 1, and the bookkeeping of which layer runs how often and which sub-step writes the cache.</summary>
public class LoopRuleTests
{
    const int D = 5, Rows = 3;

    /// <summary>g(x) = x + x A^T on rows of x, i.e. (I + A) applied to each row; in float64.</summary>
    sealed class LinearResidual(double[,] a) : ILayer
    {
        readonly Tensor _at = Tensor.FromArray(a).To(DType.Float64).T.Contiguous();
        public Tensor Forward(Tensor x, SequenceContext ctx, bool write) => x + x.MatMul(_at);
    }

    /// <summary>g(x) = x + silu((x - c) W): nonlinear, with the fixed point x = c (silu(0) is exactly 0).</summary>
    sealed class SiluResidual(Tensor w, Tensor c) : ILayer
    {
        public Tensor Forward(Tensor x, SequenceContext ctx, bool write) => x + (x - c).MatMul(w).Silu();
    }

    /// <summary>Records each call (layer index, write flag) into a shared log, and adds a constant.</summary>
    sealed class Recording(int index, List<(int Layer, bool Write)> log) : ILayer
    {
        public Tensor Forward(Tensor x, SequenceContext ctx, bool write) { log.Add((index, write)); return x + (index + 1); }
    }

    static double[,] RandomMatrix(int seed, double scale)
    {
        var r = new Random(seed);
        var m = new double[D, D];
        for (int i = 0; i < D; i++) for (int j = 0; j < D; j++) m[i, j] = (r.NextDouble() * 2 - 1) * scale;
        return m;
    }

    static double[,] RandomRows(int seed)
    {
        var r = new Random(seed);
        var m = new double[Rows, D];
        for (int i = 0; i < Rows; i++) for (int j = 0; j < D; j++) m[i, j] = r.NextDouble() * 2 - 1;
        return m;
    }

    static double[,] Mul(double[,] a, double[,] b)
    {
        int n = a.GetLength(0), k = a.GetLength(1), m = b.GetLength(1);
        var c = new double[n, m];
        for (int i = 0; i < n; i++) for (int j = 0; j < m; j++) { double s = 0; for (int p = 0; p < k; p++) s += a[i, p] * b[p, j]; c[i, j] = s; }
        return c;
    }

    static double[,] Identity() { var m = new double[D, D]; for (int i = 0; i < D; i++) m[i, i] = 1; return m; }

    static double[,] Affine(double[,] a, double s) // I + s A
    {
        var m = Identity();
        for (int i = 0; i < D; i++) for (int j = 0; j < D; j++) m[i, j] += s * a[i, j];
        return m;
    }

    static double[,] Power(double[,] m, int k) { var r = Identity(); for (int i = 0; i < k; i++) r = Mul(r, m); return r; }

    /// <summary>expm by scaling and squaring of a 30-term Taylor series (A is small, so this is exact to float64).</summary>
    static double[,] Expm(double[,] a)
    {
        const int squarings = 10;
        var s = Affine(a, 0); var term = Identity();
        var scaled = new double[D, D];
        for (int i = 0; i < D; i++) for (int j = 0; j < D; j++) scaled[i, j] = a[i, j] / (1 << squarings);
        for (int n = 1; n < 30; n++)
        {
            term = Mul(term, scaled);
            for (int i = 0; i < D; i++) for (int j = 0; j < D; j++) { term[i, j] /= n; s[i, j] += term[i, j]; }
        }
        for (int q = 0; q < squarings; q++) s = Mul(s, s);
        return s;
    }

    // Rows of x0 transformed by M: x0 M^T.
    static double[] Rowwise(double[,] x0, double[,] m)
    {
        var mt = new double[D, D];
        for (int i = 0; i < D; i++) for (int j = 0; j < D; j++) mt[i, j] = m[j, i];
        return Flat(Mul(x0, mt));
    }

    static double[] Flat(double[,] m) => m.Cast<double>().ToArray();

    static Tensor X(double[,] x0) => Tensor.FromArray(x0).To(DType.Float64);

    static Tensor Run(ILayer[] layers, Tensor x, LoopOptions? o) => Looper.RunStack(layers, x, SequenceContext.Stateless, o);

    [Theory]
    [InlineData(1)] [InlineData(2)] [InlineData(3)] [InlineData(7)]
    public void Damped_on_a_linear_residual_is_the_K_step_Euler_power(int k)
    {
        var a = RandomMatrix(1, 0.6); var x0 = RandomRows(2);
        var y = Run([new LinearResidual(a)], X(x0), new LoopOptions(0, 0, k, LoopRule.Damped));
        Close.Check(Rowwise(x0, Power(Affine(a, 1.0 / k), k)), y.ToDoubleArray(), 1e-12, 1e-13, $"damped K={k}");
    }

    [Theory]
    [InlineData(1)] [InlineData(2)] [InlineData(5)]
    public void Naive_on_a_linear_residual_is_the_K_th_power(int k)
    {
        var a = RandomMatrix(3, 0.6); var x0 = RandomRows(4);
        var y = Run([new LinearResidual(a)], X(x0), new LoopOptions(0, 0, k, LoopRule.Naive));
        Close.Check(Rowwise(x0, Power(Affine(a, 1), k)), y.ToDoubleArray(), 1e-12, 1e-13, $"naive K={k}");
    }

    [Fact]
    public void Damped_converges_to_the_matrix_exponential_at_rate_one_over_K()
    {
        var a = RandomMatrix(5, 0.8); var x0 = RandomRows(6);
        var exact = Rowwise(x0, Expm(a));
        double prev = double.PositiveInfinity;
        foreach (int k in new[] { 2, 4, 8, 16, 32, 64 })
        {
            var y = Run([new LinearResidual(a)], X(x0), new LoopOptions(0, 0, k)).ToDoubleArray();
            double err = Math.Sqrt(y.Zip(exact, (p, q) => (p - q) * (p - q)).Sum());
            Assert.True(err < prev, $"K={k}: error {err} did not shrink from {prev}");
            // Forward Euler is first order: doubling K halves the error asymptotically.
            if (k >= 16) Assert.InRange(prev / err, 1.8, 2.2);
            prev = err;
        }
        Assert.True(prev < 0.05, $"K=64 is still {prev} from expm(A) x0");
    }

    [Fact]
    public void Alpha_scales_the_horizon()
    {
        var a = RandomMatrix(7, 0.5); var x0 = RandomRows(8);
        var y = Run([new LinearResidual(a)], X(x0), new LoopOptions(0, 0, 4) { Alpha = 2 });
        Close.Check(Rowwise(x0, Power(Affine(a, 0.5), 4)), y.ToDoubleArray(), 1e-12, 1e-13, "alpha=2");
    }

    [Fact]
    public void Block_mode_iterates_the_window_as_one_map()
    {
        var a1 = RandomMatrix(9, 0.5); var a2 = RandomMatrix(10, 0.5); var x0 = RandomRows(11);
        ILayer[] stack = [new LinearResidual(a1), new LinearResidual(a2)];
        var g = Mul(Affine(a2, 1), Affine(a1, 1)); // rows: x -> (I + A2)(I + A1) x
        var gMinusI = Mul(g, Identity()); for (int i = 0; i < D; i++) gMinusI[i, i] -= 1;
        var y = Run(stack, X(x0), new LoopOptions(0, 1, 3) { Mode = LoopMode.Block });
        Close.Check(Rowwise(x0, Power(Affine(gMinusI, 1.0 / 3), 3)), y.ToDoubleArray(), 1e-12, 1e-13, "block damped");
        var naive = Run(stack, X(x0), new LoopOptions(0, 1, 3, LoopRule.Naive) { Mode = LoopMode.Block });
        Close.Check(Rowwise(x0, Power(g, 3)), naive.ToDoubleArray(), 1e-12, 1e-13, "block naive");
    }

    [Fact]
    public void Layer_mode_applies_the_rule_to_each_layer_in_order()
    {
        var a1 = RandomMatrix(12, 0.5); var a2 = RandomMatrix(13, 0.5); var x0 = RandomRows(14);
        ILayer[] stack = [new LinearResidual(a1), new LinearResidual(a2)];
        var y = Run(stack, X(x0), new LoopOptions(0, 1, 4) { Mode = LoopMode.Layer });
        // Layer 1 first, then layer 2: the matrices do not commute, so the order is visible.
        var expected = Mul(Power(Affine(a2, 0.25), 4), Power(Affine(a1, 0.25), 4));
        Close.Check(Rowwise(x0, expected), y.ToDoubleArray(), 1e-12, 1e-13, "layer damped");
        var swapped = Rowwise(x0, Mul(Power(Affine(a1, 0.25), 4), Power(Affine(a2, 0.25), 4)));
        Assert.True(swapped.Zip(y.ToDoubleArray(), (p, q) => Math.Abs(p - q)).Max() > 1e-6, "the two orders agree, so this test cannot see the order");
    }

    [Theory]
    [InlineData(0.0)] [InlineData(0.3)] [InlineData(1.0)]
    public void RK_anchor_blends_the_baseline_and_damped(double beta)
    {
        var a = RandomMatrix(15, 0.6); var x0 = RandomRows(16);
        var y = Run([new LinearResidual(a)], X(x0), new LoopOptions(0, 0, 3, LoopRule.RK) { Beta = beta }).ToDoubleArray();
        var damped = Rowwise(x0, Power(Affine(a, 1.0 / 3), 3));
        var baseline = Rowwise(x0, Affine(a, 1));
        Close.Check(damped.Zip(baseline, (d, b) => beta * b + (1 - beta) * d).ToArray(), y, 1e-12, 1e-13, $"rk beta={beta}");
    }

    [Fact]
    public void RK_ends_are_exactly_damped_and_baseline()
    {
        var (stack, x0) = Nonlinear(4);
        var damped = Run(stack, x0, new LoopOptions(1, 2, 3)).ToArray<float>();
        var baseline = Run(stack, x0, null).ToArray<float>();
        Assert.Equal(damped, Run(stack, x0, new LoopOptions(1, 2, 3, LoopRule.RK) { Beta = 0 }).ToArray<float>());
        Assert.Equal(baseline, Run(stack, x0, new LoopOptions(1, 2, 3, LoopRule.RK) { Beta = 1 }).ToArray<float>());
    }

    static (ILayer[] Stack, Tensor X0) Nonlinear(int layers, Tensor? c = null)
    {
        var g = new Generator(42);
        var cc = c ?? Tensor.Zeros([D]);
        var stack = Enumerable.Range(0, layers).Select(_ => (ILayer)new SiluResidual(Tensor.Randn([D, D], g) * 0.5, cc)).ToArray();
        return (stack, Tensor.Randn([2, Rows, D], g));
    }

    public static IEnumerable<object[]> AllRulesAndModes =>
        from r in Enum.GetValues<LoopRule>() from m in Enum.GetValues<LoopMode>() select new object[] { r, m };

    [Theory, MemberData(nameof(AllRulesAndModes))]
    public void K_equal_1_is_bit_identical_to_the_baseline(LoopRule rule, LoopMode mode)
    {
        var (stack, x0) = Nonlinear(5);
        var baseline = Run(stack, x0, null).ToArray<float>();
        var looped = Run(stack, x0, new LoopOptions(1, 3, 1, rule) { Mode = mode, Beta = 0.3 }).ToArray<float>();
        Assert.Equal(baseline, looped);
    }

    [Theory, MemberData(nameof(AllRulesAndModes))]
    public void Fixed_points_stay_fixed(LoopRule rule, LoopMode mode)
    {
        var c = Tensor.FromArray(new float[] { 0.5f, -1, 0.25f, 2, -0.75f });
        var (stack, _) = Nonlinear(3, c);
        var x0 = c.Reshape(1, 1, D).Expand(2, Rows, D).Contiguous();
        var y = Run(stack, x0, new LoopOptions(0, 2, 6, rule) { Mode = mode });
        Assert.Equal(x0.ToArray<float>(), y.ToArray<float>());
    }

    [Theory]
    [InlineData(LoopMode.Block, LoopCache.First)] [InlineData(LoopMode.Block, LoopCache.Last)] [InlineData(LoopMode.Block, LoopCache.None)]
    [InlineData(LoopMode.Layer, LoopCache.First)] [InlineData(LoopMode.Layer, LoopCache.Last)] [InlineData(LoopMode.Layer, LoopCache.None)]
    public void Each_layer_outside_the_window_runs_once_and_the_window_writes_once(LoopMode mode, LoopCache cache)
    {
        var log = new List<(int Layer, bool Write)>();
        var stack = Enumerable.Range(0, 6).Select(i => (ILayer)new Recording(i, log)).ToArray();
        const int k = 3;
        Run(stack, Tensor.Zeros([1, 1, 1]), new LoopOptions(2, 3, k, LoopRule.Naive) { Mode = mode, Cache = cache });
        var order = log.Select(e => e.Layer).ToArray();
        int[] expected = mode == LoopMode.Block ? [0, 1, 2, 3, 2, 3, 2, 3, 4, 5] : [0, 1, 2, 2, 2, 3, 3, 3, 4, 5];
        Assert.Equal(expected, order);
        foreach (int outside in new[] { 0, 1, 4, 5 }) Assert.Equal([(outside, true)], log.Where(e => e.Layer == outside));
        foreach (int inside in new[] { 2, 3 })
        {
            var writes = log.Where(e => e.Layer == inside).Select(e => e.Write).ToArray();
            Assert.Equal(k, writes.Length);
            var want = new bool[k];
            if (cache == LoopCache.First) want[0] = true;
            if (cache == LoopCache.Last) want[^1] = true;
            Assert.Equal(want, writes);
        }
    }

    [Fact]
    public void Options_reject_bad_windows_and_K()
    {
        Assert.Throws<ArgumentOutOfRangeException>("k", () => new LoopOptions(0, 1, 0));
        Assert.Throws<ArgumentOutOfRangeException>("end", () => new LoopOptions(3, 2, 2));
        Assert.Throws<ArgumentOutOfRangeException>("start", () => new LoopOptions(-1, 2, 2));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Run(Nonlinear(3).Stack, Tensor.Zeros([1, 1, D]), new LoopOptions(1, 3, 2)));
        Assert.Contains("[1, 3]", e.Message);
        Assert.Throws<ArgumentException>("text", () => LoopOptions.ParseWindow("3-5"));
        Assert.Equal((15, 18), LoopOptions.ParseWindow("15:18"));
    }

    [Theory]
    [InlineData(36, 16, 19)] [InlineData(10, 4, 7)] [InlineData(8, 3, 6)] [InlineData(3, 0, 2)] [InlineData(1, 0, 0)]
    public void Default_window_is_width_4_at_47_percent_of_depth(int layers, int a, int b) =>
        Assert.Equal((a, b), LoopOptions.DefaultWindow(layers));
}
