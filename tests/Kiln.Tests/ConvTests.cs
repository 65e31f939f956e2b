using Kiln.Kernels;
using Kiln.Ops;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>
/// Convolutions (1-3 d, transposed, grouped and depthwise, strided, dilated, padded) against the float64 reference on
/// every device, their gradients (kernels against the reference, rules against finite differences), and their argument checks.
/// </summary>
public class ConvTests
{
    public static IEnumerable<object[]> Cases =>
        from d in Devices.All from dt in new[] { DType.Float32, DType.Float64 } select new object[] { d.ToString(), dt };

    // [N, C, spatial...]: empty batches, odd extents, and (on the SIMD CPU) extents that cross the GEMM's 64-wide panels.
    static FsCheck.Gen<int[]> InputShape(Device device) =>
        from dims in G.Choose(1, 3)
        from n in G.Frequency((1, G.Constant(0)), (2, G.Constant(1)), (3, G.Choose(2, 3)))
        from c in G.Frequency((2, G.Constant(1)), (4, G.Choose(2, 6)), (1, G.Elements(8, 12)))
        from spatial in G.ArrayOf(device == Device.Cpu && dims < 3 ? G.Frequency((1, G.Constant(1)), (6, G.Choose(2, 9)), (2, G.Choose(10, 40))) : G.Choose(1, 7), dims)
        select (int[])[n, c, .. spatial];

    static (double Rtol, double Atol) Budget(DType dtype, int terms) => Close.For(dtype, 4.0 * Math.Max(terms, 1));

    [Theory, MemberData(nameof(Cases))]
    public void Convolutions_match_the_float64_reference(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        var gen = from shape in InputShape(dev) from transposed in G.Elements(false, true) from view in TensorGen.View from seed in TensorGen.Seed
                  select (shape, transposed, view, seed);
        Props.Check(dev, gen, c =>
        {
            var (shape, transposed, view, seed) = c;
            var p = ConvProblem.Sample(shape, (ulong)seed, transposed);
            var x = TensorGen.Make(shape, view, seed, dtype, dev, -1, 1);
            var w = TensorGen.Make(p.WeightShape, TensorGen.ViewKind.Contiguous, seed + 1, dtype, dev, -1, 1);
            var b = p.Bias ? TensorGen.Make([p.OutChannels], TensorGen.ViewKind.Contiguous, seed + 2, dtype, dev, -1, 1) : null;
            var y = p.Run(x, w, b);
            Assert.Equal(p.OutputShape(), y.Shape.Dims.ToArray());
            var (rtol, atol) = Budget(dtype, p.Terms);
            Close.Check(p.Reference(x.ToDoubleArray(), w.ToDoubleArray(), b?.ToDoubleArray()), y.ToDoubleArray(), rtol, atol, $"{p}");
        });
    }

    [Theory, MemberData(nameof(Cases))]
    public void Input_weight_and_bias_gradients_match_the_float64_reference(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        var gen = from shape in InputShape(dev) from seed in TensorGen.Seed select (shape, seed);
        Props.Check(dev, gen, c =>
        {
            var (shape, seed) = c;
            var p = ConvProblem.Sample(shape, (ulong)seed, false) with { Bias = true };
            var g = p.Geometry();
            var x = TensorGen.Make(shape, TensorGen.ViewKind.Contiguous, seed, dtype, dev, -1, 1).RequiresGrad_();
            var w = TensorGen.Make(p.WeightShape, TensorGen.ViewKind.Contiguous, seed + 1, dtype, dev, -1, 1).RequiresGrad_();
            var b = TensorGen.Make([p.OutChannels], TensorGen.ViewKind.Contiguous, seed + 2, dtype, dev, -1, 1).RequiresGrad_();
            var gy = TensorGen.Make(p.OutputShape(), TensorGen.ViewKind.Contiguous, seed + 3, dtype, dev, -1, 1);
            p.Run(x, w, b).Backward(gy);
            var (xs, ws, gys) = (x.ToDoubleArray(), w.ToDoubleArray(), gy.ToDoubleArray());
            var (rtol, atol) = Budget(dtype, g.Og * g.KVol);
            Close.Check(Reference.ConvBackwardData(g, gys, ws), x.Grad!.ToDoubleArray(), rtol, atol, $"input gradient of {p}");
            (rtol, atol) = Budget(dtype, g.N * g.OutVol);
            Close.Check(Reference.ConvBackwardWeight(g, xs, gys), w.Grad!.ToDoubleArray(), rtol, atol, $"weight gradient of {p}");
            var gb = Enumerable.Range(0, g.O).Select(o => Enumerable.Range(0, g.N).Sum(n => gys.AsSpan((n * g.O + o) * g.OutVol, g.OutVol).ToArray().Sum())).ToArray();
            Close.Check(gb, b.Grad!.ToDoubleArray(), rtol, atol, $"bias gradient of {p}");
        });
    }

    public static IEnumerable<object[]> LargeProblems =>
    [
        // K = 130 * 9 is two KC slices, 40 x 27 outputs (one GEMM per image) cross many panels, and K x positions exceeds one weight-gradient chunk.
        [new ConvProblem(false, [2, 130, 40, 27], 7, 1, [3, 3], [1, 1], [1, 1], [1, 1], [0, 0], true)],
        // Strided: the input gradient's patch buffer holds three of the four images (two chunks).
        [new ConvProblem(false, [4, 130, 40, 27], 8, 1, [3, 3], [2, 2], [1, 1], [1, 1], [0, 0], true)],
    ];

    [Theory, MemberData(nameof(LargeProblems))]
    public void Large_products_cross_gemm_blocks_threads_and_chunks(ConvProblem p)
    {
        var g = p.Geometry();
        var gen = new Generator(3);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var x = Tensor.Rand(new Shape(p.Input), gen, -1, 1, dtype).RequiresGrad_();
            var w = Tensor.Rand(new Shape(p.WeightShape), gen, -1, 1, dtype).RequiresGrad_();
            var b = Tensor.Rand(new Shape(p.OutChannels), gen, -1, 1, dtype);
            var gy = Tensor.Rand(new Shape(p.OutputShape()), gen, -1, 1, dtype);
            var y = p.Run(x, w, b);
            y.Backward(gy);
            var (xs, ws, gys) = (x.ToDoubleArray(), w.ToDoubleArray(), gy.ToDoubleArray());
            var (rtol, atol) = Budget(dtype, p.Terms);
            Close.Check(p.Reference(xs, ws, b.ToDoubleArray()), y.ToDoubleArray(), rtol, atol, "forward");
            Close.Check(Reference.ConvBackwardData(g, gys, ws), x.Grad!.ToDoubleArray(), rtol, atol, "input gradient");
            (rtol, atol) = Budget(dtype, g.N * g.OutVol);
            Close.Check(Reference.ConvBackwardWeight(g, xs, gys), w.Grad!.ToDoubleArray(), rtol, atol, "weight gradient");
        }
    }

    [Theory, MemberData(nameof(Cases))]
    public void A_kernel_larger_than_the_input_reads_padding_outside_it(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        var gen = new Generator(4);
        foreach (var p in new[]
        {
            new ConvProblem(false, [2, 3, 2, 3], 4, 1, [5, 4], [1, 2], [2, 3], [1, 1], [0, 0], true),
            new ConvProblem(true, [2, 3, 2, 1], 2, 1, [5, 4], [2, 1], [1, 1], [1, 1], [1, 0], true),
        })
        {
            var x = Tensor.Rand(new Shape(p.Input), gen, -1, 1, DType.Float64).To(dtype).To(dev);
            var w = Tensor.Rand(new Shape(p.WeightShape), gen, -1, 1, DType.Float64).To(dtype).To(dev);
            var b = Tensor.Rand(new Shape(p.OutChannels), gen, -1, 1, DType.Float64).To(dtype).To(dev);
            var (rtol, atol) = Budget(dtype, p.Terms);
            Close.Check(p.Reference(x.ToDoubleArray(), w.ToDoubleArray(), b.ToDoubleArray()), p.Run(x, w, b).ToDoubleArray(), rtol, atol, $"{p}");
        }
    }

    public static IEnumerable<object[]> GradProblems =>
    [
        [new ConvProblem(false, [2, 4, 7], 6, 2, [3], [2], [1], [2], [0], true)],
        [new ConvProblem(false, [1, 3, 5, 6], 4, 1, [3, 2], [1, 2], [1, 0], [1, 1], [0, 0], true)],
        [new ConvProblem(false, [2, 4, 5, 5], 4, 4, [3, 3], [2, 1], [1, 2], [1, 2], [0, 0], true)],
        [new ConvProblem(false, [1, 2, 2, 3], 2, 1, [4, 4], [1, 1], [2, 2], [1, 1], [0, 0], true)],
        [new ConvProblem(false, [1, 2, 3, 4, 3], 2, 1, [2, 2, 2], [1, 2, 1], [1, 0, 1], [1, 1, 2], [0, 0, 0], true)],
        [new ConvProblem(true, [2, 4, 3], 2, 2, [3], [2], [1], [1], [1], true)],
        [new ConvProblem(true, [1, 3, 3, 4], 4, 1, [3, 2], [2, 1], [1, 0], [1, 2], [1, 1], true)],
        [new ConvProblem(true, [1, 2, 2, 3, 2], 2, 2, [2, 2, 2], [2, 1, 2], [0, 1, 0], [1, 1, 1], [1, 0, 0], true)],
    ];

    [Theory, MemberData(nameof(GradProblems))]
    public void Gradients_match_finite_differences(ConvProblem p)
    {
        var gen = new Generator(5);
        var x = Tensor.Rand(new Shape(p.Input), gen, -1, 1, DType.Float64);
        var w = Tensor.Rand(new Shape(p.WeightShape), gen, -1, 1, DType.Float64);
        var b = Tensor.Rand(new Shape(p.OutChannels), gen, -1, 1, DType.Float64);
        var r = GradCheck.Run(t => p.Run(t[0], t[1], t[2]), [x, w, b]);
        Assert.True(r.Passed, $"{p}: {r}");
    }

    [Fact]
    public void Second_order_gradients_match_finite_differences()
    {
        // F(x, w) = |d/dx L|^2 + |d/dw L|^2 for L = sum(u * conv(x, w)): its gradient runs the gradients of the
        // transposed and weight-gradient ops. Central differences of F (each F built with its own graph) check it.
        var gen = new Generator(8);
        var x0 = Tensor.Rand(new Shape(1, 2, 5, 4), gen, -1, 1, DType.Float64);
        var w0 = Tensor.Rand(new Shape(3, 2, 2, 3), gen, -1, 1, DType.Float64);
        var u = Tensor.Rand(new Shape(1, 3, 2, 2), gen, -1, 1, DType.Float64);
        Tensor F(Tensor x, Tensor w)
        {
            var y = Tensor.Conv2d(x, w, stride: (2, 1));
            var grads = Autograd.Grad([(y * u).Sum()], [x, w], createGraph: true);
            return grads[0].Square().Sum() + grads[1].Square().Sum();
        }
        var (xs, ws) = (x0.Clone().RequiresGrad_(), w0.Clone().RequiresGrad_());
        var analytic = Autograd.Grad([F(xs, ws)], [xs, ws]);
        for (int input = 0; input < 2; input++)
        {
            var values = (input == 0 ? x0 : w0).ToArray<double>();
            var a = analytic[input].ToArray<double>();
            for (int e = 0; e < values.Length; e++)
            {
                double At(double v)
                {
                    var vals = (double[])values.Clone(); vals[e] = v;
                    var t = Tensor.FromArray(vals, (input == 0 ? x0 : w0).Shape).RequiresGrad_();
                    return (input == 0 ? F(t, w0.Clone().RequiresGrad_()) : F(x0.Clone().RequiresGrad_(), t)).Item();
                }
                double numeric = (At(values[e] + 1e-6) - At(values[e] - 1e-6)) / 2e-6;
                Assert.True(Math.Abs(a[e] - numeric) <= 1e-5 + 1e-4 * Math.Abs(numeric), $"input {input} element {e}: analytic {a[e]}, numeric {numeric}");
            }
        }
        Assert.Contains(analytic[0].ToArray<double>(), v => Math.Abs(v) > 1e-3);
    }

    [Theory]
    [InlineData(4, 1)]
    [InlineData(3, 2)]
    [InlineData(2, 3)]
    public void Same_padding_keeps_the_extent_and_pads_an_odd_total_at_the_end(int k, int dilation)
    {
        var gen = new Generator(11);
        var x = Tensor.Rand(new Shape(2, 3, 9), gen, -1, 1, DType.Float64);
        var w = Tensor.Rand(new Shape(5, 3, k), gen, -1, 1, DType.Float64);
        int total = dilation * (k - 1);
        var y = Tensor.Conv1d(x, w, padding: "same", dilation: dilation);
        var expected = Tensor.Conv1d(x.Pad([total / 2, total - total / 2]), w, dilation: dilation);
        Assert.Equal(new Shape(2, 5, 9), y.Shape);
        Close.Check(expected, y, 1e-13, 1e-14, "same padding");
        Close.Check(Tensor.Conv1d(x, w, dilation: dilation), Tensor.Conv1d(x, w, padding: "valid", dilation: dilation), 0, 0, "valid padding");
    }

    [Fact]
    public void Unbatched_input_is_the_batched_result_without_its_batch_axis()
    {
        var gen = new Generator(12);
        var x = Tensor.Rand(new Shape(3, 6, 5), gen, -1, 1, DType.Float64);
        var w = Tensor.Rand(new Shape(4, 3, 2, 2), gen, -1, 1, DType.Float64);
        Close.Check(Tensor.Conv2d(x.Unsqueeze(0), w, padding: 1).Squeeze(0), Tensor.Conv2d(x, w, padding: 1), 0, 0, "conv2d");
        var wt = Tensor.Rand(new Shape(3, 2, 3, 3), gen, -1, 1, DType.Float64);
        Close.Check(Tensor.ConvTranspose2d(x.Unsqueeze(0), wt, stride: 2).Squeeze(0), Tensor.ConvTranspose2d(x, wt, stride: 2), 0, 0, "conv_transpose2d");
    }

    [Fact]
    public void Bad_arguments_throw_naming_the_argument_and_values()
    {
        var x = Tensor.Zeros(new Shape(1, 4, 5, 5));
        var w = Tensor.Zeros(new Shape(6, 2, 3, 3));
        void Throws<TE>(Func<Tensor> f, string param, string fragment) where TE : ArgumentException
        {
            var e = Assert.Throws<TE>(() => f());
            Assert.Equal(param, e.ParamName);
            Assert.Contains(fragment, e.Message);
        }
        Throws<ArgumentException>(() => Tensor.Conv2d(x, w, padding: -1, groups: 2), "padding", "(-1)");
        Throws<ArgumentException>(() => Tensor.Conv2d(x, Tensor.Zeros(new Shape(6, 4, 3, 3)), groups: 3), "groups", "groups 3 does not divide the input channels 4");
        Throws<ArgumentException>(() => Tensor.Conv2d(x, Tensor.Zeros(new Shape(5, 2, 3, 3)), groups: 2), "groups", "output channels 5");
        Throws<ArgumentException>(() => Tensor.Conv2d(x, Tensor.Zeros(new Shape(6, 2, 7, 3)), groups: 2), "input", "output extent -1 < 1");
        Throws<ArgumentException>(() => Tensor.Conv2d(x, w, stride: 0, groups: 2), "stride", "(0, 0)");
        Throws<ArgumentException>(() => Tensor.Conv2d(x, w, dilation: (1, 0), groups: 2), "dilation", "(1, 0)");
        Throws<ArgumentException>(() => Tensor.Conv2d(x, w, stride: 2, padding: "same", groups: 2), "padding", "stride 1");
        Throws<ArgumentException>(() => Tensor.Conv2d(x, w, stride: new[] { 1, 1, 1 }, groups: 2), "stride", "3 values");
        Throws<ArgumentException>(() => Tensor.Conv2d(x, w, groups: 0), "groups", "at least 1");
        Throws<ShapeMismatchException>(() => Tensor.Conv2d(x, w), "weight", "C / groups = 4");
        Throws<ShapeMismatchException>(() => Tensor.Conv2d(x, w, Tensor.Zeros(new Shape(5)), groups: 2), "bias", "[5]");
        Throws<ShapeMismatchException>(() => Tensor.Conv1d(x, w), "input", "[1, 4, 5, 5]");
        Throws<ArgumentException>(() => Tensor.Conv2d(x, w, padding: "full", groups: 2), "mode", "'full'");
        var wt = Tensor.Zeros(new Shape(4, 3, 3, 3));
        Throws<ArgumentException>(() => Tensor.ConvTranspose2d(x, wt, stride: 2, outputPadding: 2), "outputPadding", "output padding 2");
        Throws<ArgumentException>(() => Tensor.ConvTranspose2d(x, wt, padding: -2), "padding", "(-2)");
        Throws<ArgumentException>(() => Tensor.ConvTranspose2d(Tensor.Zeros(new Shape(1, 4, 1, 1)), wt, padding: 2), "padding", "output extent -1 < 1");
        Throws<ShapeMismatchException>(() => Tensor.ConvTranspose2d(x, Tensor.Zeros(new Shape(3, 3, 3, 3))), "weight", "Cin = 4");
    }
}
