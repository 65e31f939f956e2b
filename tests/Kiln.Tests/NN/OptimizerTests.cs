using Kiln.NN;
using Xunit;

namespace Kiln.Tests.NN;

/// <summary>Optimizers step by step against their updates written out in float64, schedules against closed forms, clipping.</summary>
public class OptimizerTests
{
    const int N = 37, Steps = 5;   // 37 elements: SIMD body plus a scalar tail

    static double[] Rand(ulong seed, double lo = -1, double hi = 1) => Tensor.Rand([N], new Generator(seed), lo, hi, DType.Float64).ToArray<double>();

    /// <summary>Runs <paramref name="make"/>'s optimizer on one parameter with the gradient sequence; returns its values after each step.</summary>
    static List<double[]> Run(Func<Parameter, Optimizer> make, DType dtype, bool tensorOps)
    {
        var p = new Parameter(Tensor.FromArray(Rand(1)).To(dtype));
        var opt = make(p);
        opt.UseTensorOps = tensorOps;
        var trace = new List<double[]>();
        for (int s = 0; s < Steps; s++)
        {
            p.Grad = Tensor.FromArray(Rand(100 + (ulong)s, -2, 2)).To(dtype);
            opt.Step();
            trace.Add(p.Value.ToDoubleArray());
        }
        return trace;
    }

    static void Compare(Func<Parameter, Optimizer> make, Func<double[], double[], int, double[]> reference, string what)
    {
        var p = Rand(1);
        var expected = new List<double[]>();
        for (int s = 0; s < Steps; s++) { p = reference(p, Rand(100 + (ulong)s, -2, 2), s + 1); expected.Add(p); }
        foreach (var tensorOps in new[] { false, true })
        {
            var f64 = Run(make, DType.Float64, tensorOps);
            var f32 = Run(make, DType.Float32, tensorOps);
            for (int s = 0; s < Steps; s++)
            {
                TestKit.Close.Check(expected[s], f64[s], 1e-12, 1e-14, $"{what} float64 step {s + 1} (tensor ops: {tensorOps})");
                TestKit.Close.Check(expected[s], f32[s], 1e-5, 1e-6, $"{what} float32 step {s + 1} (tensor ops: {tensorOps})");
            }
        }
    }

    public static IEnumerable<object[]> SgdCases =>
        from mu in new[] { 0.0, 0.9 } from nest in new[] { false, true } from wd in new[] { 0.0, 0.05 } from damp in new[] { 0.0, 0.3 }
        where !(nest && (mu == 0 || damp != 0))
        select new object[] { mu, nest, wd, damp };

    [Theory, MemberData(nameof(SgdCases))]
    public void SGD_matches_written_out_update(double momentum, bool nesterov, double weightDecay, double dampening)
    {
        const double lr = 0.1;
        double[]? buf = null;
        Compare(p => new SGD([p], lr, momentum, dampening, nesterov, weightDecay), (p, g, t) =>
        {
            var d = p.Select((v, i) => g[i] + weightDecay * v).ToArray();
            if (momentum != 0)
            {
                buf = t == 1 ? (double[])d.Clone() : buf!.Select((b, i) => momentum * b + (1 - dampening) * d[i]).ToArray();
                d = nesterov ? d.Select((v, i) => v + momentum * buf[i]).ToArray() : buf;
            }
            return p.Select((v, i) => v - lr * d[i]).ToArray();
        }, $"sgd mu={momentum} nesterov={nesterov} wd={weightDecay} damp={dampening}");
    }

    [Fact]
    public void Adam_update_of_a_parameter_split_over_the_worker_team_matches_written_out_update()
    {
        // Large enough for the fused update to run in parts on several threads, with a ragged end.
        const int n = 3 * 65536 + 13;
        const double lr = 0.01, b1 = 0.8, b2 = 0.95, eps = 1e-6;
        var g = new Generator(5);
        var p0 = Tensor.Rand([n], g, -1, 1, DType.Float64).ToArray<double>();
        var p = new Parameter(Tensor.FromArray(p0));
        var opt = new Adam([p], lr, b1, b2, eps);
        double[] expected = (double[])p0.Clone(), m = new double[n], v = new double[n];
        for (int t = 1; t <= 2; t++)
        {
            var grad = Tensor.Rand([n], g, -2, 2, DType.Float64);
            p.Grad = grad;
            opt.Step();
            var gs = grad.ToArray<double>();
            for (int i = 0; i < n; i++)
            {
                m[i] = b1 * m[i] + (1 - b1) * gs[i];
                v[i] = b2 * v[i] + (1 - b2) * gs[i] * gs[i];
                expected[i] -= lr * (m[i] / (1 - Math.Pow(b1, t))) / (Math.Sqrt(v[i] / (1 - Math.Pow(b2, t))) + eps);
            }
        }
        TestKit.Close.Check(expected, p.Value.ToArray<double>(), 1e-12, 1e-14, "adam over the worker team");
    }

    public static IEnumerable<object[]> AdamCases =>
        from decoupled in new[] { false, true } from wd in new[] { 0.0, 0.1 } from textbook in new[] { false, true }
        select new object[] { decoupled, wd, textbook };

    [Theory, MemberData(nameof(AdamCases))]
    public void Adam_and_AdamW_match_written_out_update_with_bias_correction(bool decoupled, double weightDecay, bool textbook)
    {
        const double lr = 0.01, b1 = 0.8, b2 = 0.95, eps = 1e-6;
        double[] m = new double[N], v = new double[N];
        Compare(p => decoupled ? new AdamW([p], lr, b1, b2, eps, weightDecay) { Textbook = textbook } : new Adam([p], lr, b1, b2, eps, weightDecay) { Textbook = textbook }, (p, g, t) =>
        {
            var gg = decoupled ? g : g.Select((x, i) => x + weightDecay * p[i]).ToArray();
            var q = decoupled ? p.Select(x => x - lr * weightDecay * x).ToArray() : p;
            for (int i = 0; i < N; i++) { m[i] = b1 * m[i] + (1 - b1) * gg[i]; v[i] = b2 * v[i] + (1 - b2) * gg[i] * gg[i]; }
            return q.Select((x, i) =>
            {
                double mh = m[i] / (1 - Math.Pow(b1, t)), vh = v[i] / (1 - Math.Pow(b2, t));
                return x - lr * mh / (Math.Sqrt(vh) + eps);
            }).ToArray();
        }, (decoupled ? "adamw" : "adam") + (textbook ? " textbook" : ""));
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.1)]
    public void Textbook_Adam_fused_update_equals_its_tensor_ops_bit_for_bit(double weightDecay)
    {
        // What lets LmTrainer reproduce its checkpoints: the fused CPU pass rounds exactly as the tensor-op form.
        Optimizer Make(Parameter p) => new AdamW([p], 3e-3, 0.9, 0.95, 1e-8, weightDecay) { Textbook = true };
        var fused = Run(Make, DType.Float32, tensorOps: false);
        var ops = Run(Make, DType.Float32, tensorOps: true);
        for (int s = 0; s < Steps; s++) Assert.Equal(ops[s], fused[s]);
    }

    [Fact]
    public void Step_skips_parameters_without_gradient_and_counts_their_own_steps()
    {
        var a = new Parameter(Tensor.Ones(3)); var b = new Parameter(Tensor.Ones(3));
        var opt = new Adam([a, b, a], 0.1);
        Assert.Equal(2, opt.Parameters.Count);
        a.Grad = Tensor.Ones(3);
        opt.Step();
        Assert.Equal([1f, 1f, 1f], b.Value.ToArray<float>());
        // b's first update is its own step 1: bias correction makes |update| = lr exactly for a constant gradient.
        b.Grad = Tensor.Ones(3);
        opt.Step();
        Assert.All(b.Value.ToArray<float>(), v => Assert.Equal(0.9f, v, 1e-5));
        opt.ZeroGrad();
        Assert.Null(a.Grad);
        Assert.Throws<ArgumentException>(() => new SGD(Array.Empty<Parameter>(), 0.1));
        Assert.Throws<ArgumentException>(() => new SGD([a], 0.1, nesterov: true));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Adam([a], beta1: 1.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SGD([a], -1));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Parameter_groups_step_as_separate_optimizers_with_their_own_rate_and_decay(bool tensorOps)
    {
        // Two groups in one AdamW (and one SGD) step exactly as two optimizers built with each group's values, on the
        // fused CPU path and through tensor ops.
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            Parameter P() => new(Tensor.FromArray(Rand(1)).To(dtype));
            var (a, b, a2, b2) = (P(), P(), P(), P());
            var together = new AdamW([new ParamGroup([a], learningRate: 0.05, weightDecay: 0.2), new ParamGroup([b])], 0.01, 0.8, 0.95, 1e-6, 0.1) { UseTensorOps = tensorOps };
            var first = new AdamW([a2], 0.05, 0.8, 0.95, 1e-6, 0.2) { UseTensorOps = tensorOps };
            var second = new AdamW([b2], 0.01, 0.8, 0.95, 1e-6, 0.1) { UseTensorOps = tensorOps };
            var (c, d, c2, d2) = (P(), P(), P(), P());
            var sgd = new SGD([new ParamGroup([c], weightDecay: 0.3), new ParamGroup([d], learningRate: 0.2)], 0.1, momentum: 0.9, weightDecay: 0.05) { UseTensorOps = tensorOps };
            var sgdC = new SGD([c2], 0.1, momentum: 0.9, weightDecay: 0.3) { UseTensorOps = tensorOps };
            var sgdD = new SGD([d2], 0.2, momentum: 0.9, weightDecay: 0.05) { UseTensorOps = tensorOps };
            for (int s = 0; s < Steps; s++)
            {
                var g = Tensor.FromArray(Rand(100 + (ulong)s, -2, 2)).To(dtype);
                foreach (var q in new[] { a, b, a2, b2, c, d, c2, d2 }) q.Grad = g;
                foreach (var o in new Optimizer[] { together, first, second, sgd, sgdC, sgdD }) o.Step();
                Assert.Equal(a2.Value.ToDoubleArray(), a.Value.ToDoubleArray());
                Assert.Equal(b2.Value.ToDoubleArray(), b.Value.ToDoubleArray());
                Assert.Equal(c2.Value.ToDoubleArray(), c.Value.ToDoubleArray());
                Assert.Equal(d2.Value.ToDoubleArray(), d.Value.ToDoubleArray());
            }
        }
    }

    [Fact]
    public void Step_with_closure_evaluates_it_once_and_steps()
    {
        var p = new Parameter(Tensor.FromArray(new[] { 1.0, -2.0 }));
        var opt = new SGD([p], 0.1);
        int calls = 0;
        double loss = opt.Step(() =>
        {
            calls++;
            opt.ZeroGrad();
            var l = p.Value.Square().Sum();
            l.Backward();
            return l.Item();
        });
        Assert.Equal(1, calls);
        Assert.Equal(5.0, loss);
        TestKit.Close.Check([0.8, -1.6], p.Value.ToArray<double>(), 1e-15, 0, "one SGD step on |p|²");
        Assert.Equal(1, opt.StepCount);
    }

    [Fact]
    public void Schedules_follow_their_closed_forms()
    {
        const double lr = 0.5, min = 0.05;
        const int warm = 4, total = 24;
        var cos = LrSchedule.Cosine(lr, total, min, warm);
        var lin = LrSchedule.Linear(lr, total, min, warm);
        for (int s = 0; s < 30; s++)
        {
            double q = Math.Min(1, (s - warm) / 20.0);
            double w = lr * (s + 1) / warm;
            Assert.Equal(s < warm ? w : min + (lr - min) * (1 + Math.Cos(Math.PI * q)) / 2, cos.At(s), 1e-14);
            Assert.Equal(s < warm ? w : lr + (min - lr) * q, lin.At(s), 1e-14);
        }
        Assert.Equal(lr, cos.At(warm), 1e-14);
        Assert.Equal((lr + min) / 2, cos.At(warm + 10), 1e-14);
        Assert.Equal(min, cos.At(total), 1e-14);
        Assert.Equal((lr + min) / 2, lin.At(warm + 10), 1e-14);
        Assert.Equal(lr, LrSchedule.Constant(lr).At(100));
        Assert.Equal(lr / 2, LrSchedule.Constant(lr, 2).At(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => LrSchedule.Cosine(lr, 3, warmup: 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => cos.At(-1));

        // The optimizer takes step s's rate from the schedule: SGD on gradient 1 moves by the rate itself.
        var p = new Parameter(Tensor.Zeros([1], DType.Float64));
        var opt = new SGD([p], 1.0) { Schedule = lin };
        double x = 0;
        for (int s = 0; s < 8; s++)
        {
            Assert.Equal(lin.At(s), opt.CurrentLearningRate);
            p.Grad = Tensor.Ones([1], DType.Float64);
            opt.Step();
            x -= lin.At(s);
            Assert.Equal(x, p.Value.Item(), 1e-14);
        }
    }

    [Fact]
    public void ClipGradNorm_scales_to_the_max_norm_and_returns_the_total()
    {
        var a = new Parameter(Tensor.Zeros([2], DType.Float64)); var b = new Parameter(Tensor.Zeros([2], DType.Float64));
        a.Grad = Tensor.FromArray(new[] { 3.0, 0.0 }); b.Grad = Tensor.FromArray(new[] { 0.0, -4.0 });
        Assert.Equal(5, GradClip.ClipGradNorm([a, b], 10), 1e-12);
        Assert.Equal([3.0, 0.0], a.Grad.ToArray<double>());
        Assert.Equal(5, GradClip.ClipGradNorm([a, b], 1), 1e-12);
        Assert.Equal(1, Math.Sqrt(a.Grad!.Square().Sum().Item() + b.Grad!.Square().Sum().Item()), 1e-5);
        Assert.Equal(0.8, GradClip.ClipGradNorm([a, b], 1, double.PositiveInfinity), 1e-5);
        GradClip.ClipGradValue([a, b], 0.1);
        Assert.Equal([0.1, 0.0], a.Grad!.ToArray<double>());
        Assert.Equal([0.0, -0.1], b.Grad!.ToArray<double>());
        Assert.Throws<ArgumentOutOfRangeException>(() => GradClip.ClipGradNorm([a], -1));
    }
}
