using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// Pooling beyond its definitions (pool.* in OpCatalog, run on every device by OpConformanceTests): values worked out by
/// hand with PyTorch's rules, gradients against finite differences in float64, and argument errors.
/// </summary>
public class PoolTests
{
    const DType F64 = DType.Float64;

    static Tensor Arange(int n, params int[] shape) => Tensor.Arange(0, n, 1, F64).Reshape(shape);
    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));
    static Tensor R(int[] shape, ulong seed, double lo = -1, double hi = 1) => Tensor.Rand(new Shape(shape), new Generator(seed), lo, hi, F64);

    static void Values(double[] expected, Tensor actual, string what) => Close.Check(expected, actual.ToDoubleArray(), 1e-15, 1e-15, what);

    public static IEnumerable<object[]> DeviceData => Devices.Data;

    [Theory, MemberData(nameof(DeviceData))]
    public void Max_pool_values_and_indices_match_worked_examples(string device)
    {
        var dev = Devices.Parse(device);
        var (y, idx) = Arange(16, 1, 1, 4, 4).To(dev).MaxPoolWithIndices([2, 2]);
        Values([5, 7, 13, 15], y, "2x2 windows");
        Assert.Equal([5L, 7, 13, 15], idx.ToArray<long>());
        // Padding never wins: with zero padding the top-left window of -x would be 0 from the padding, not x[0].
        (y, idx) = (-Arange(16, 1, 1, 4, 4)).To(dev).MaxPoolWithIndices([3, 3], [2], [1]);
        Values([0, -1, -4, -5], y, "padded windows");
        Assert.Equal([0L, 1, 4, 5], idx.ToArray<long>());
        // Dilation 2 pairs x[i] and x[i + 2]; of equal values the first wins.
        (y, idx) = T([3, 1, 4, 1, 5], 1, 1, 5).To(dev).MaxPoolWithIndices([2], [1], null, [2]);
        Values([4, 1, 5], y, "dilated");
        Assert.Equal([2L, 1, 4], idx.ToArray<long>());
        // Dilation 2 with padding 1 on one element: the window's positions -1 and 1 miss the input.
        (y, idx) = T([7], 1, 1, 1).To(dev).MaxPoolWithIndices([2], [1], [1], [2]);
        Values([double.NegativeInfinity], y, "window of padding only");
        Assert.Equal([-1L], idx.ToArray<long>());
        // A NaN wins its window.
        (y, idx) = T([1, double.NaN, 2, 0, 1, 2], 1, 1, 6).To(dev).MaxPoolWithIndices([3]);
        Assert.True(double.IsNaN(y.ToDoubleArray()[0]));
        Assert.Equal([1L, 5], idx.ToArray<long>());
    }

    [Theory, MemberData(nameof(DeviceData))]
    public void Avg_pool_divisors_match_worked_examples(string device)
    {
        var dev = Devices.Parse(device);
        var x = Arange(16, 1, 1, 4, 4).To(dev);
        // Windows of 3 at stride 2 with padding 1: sums 10, 24, 51, 90 over 4, 6, 6 and 9 inputs.
        Values([10 / 9.0, 24 / 9.0, 51 / 9.0, 10], x.AvgPool2d(3, 2, 1), "count_include_pad");
        Values([2.5, 4, 8.5, 10], x.AvgPool2d(3, 2, 1, countIncludePad: false), "count inputs only");
        Values([10 / 7.0, 24 / 7.0, 51 / 7.0, 90 / 7.0], x.AvgPool2d(3, 2, 1, divisorOverride: 7), "divisor override");
        var v = T([0, 1, 2, 3, 4], 1, 1, 5).To(dev);
        // Ceil mode, padding 1: a fourth window would start at 5 = input + left padding, so there are three; the first
        // holds one input and one padded position.
        Values([0, 1.5, 3.5], v.AvgPool1d(2, 2, 1, ceilMode: true), "ceil mode with padding");
        // Ceil mode without padding: the last window is clipped to the input and divides by 1.
        Values([0.5, 2.5, 4], v.AvgPool1d(2, 2, ceilMode: true), "ceil mode clipped window");
        Values([0.5, 2.5], v.AvgPool1d(2, 2), "floor mode");
    }

    [Fact]
    public void Output_size_follows_the_ceil_mode_rule()
    {
        Assert.Equal(3, Tensor.PoolOutputSize(5, 2, 2, 1, 1, ceilMode: true));   // ceil gives 4; the 4th would start in the right padding
        Assert.Equal(3, Tensor.PoolOutputSize(5, 2, 2, 0, 1, ceilMode: true));
        Assert.Equal(2, Tensor.PoolOutputSize(5, 2, 2, 0, 1, ceilMode: false));
        Assert.Equal(3, Tensor.PoolOutputSize(7, 3, 1, 0, 2, ceilMode: false));  // dilated span 5
        Assert.Equal(4, Tensor.PoolOutputSize(6, 3, 2, 1, 1, ceilMode: true));
    }

    [Theory, MemberData(nameof(DeviceData))]
    public void Adaptive_and_global_pooling_use_pytorch_windows(string device)
    {
        var dev = Devices.Parse(device);
        var v = T([0, 1, 2, 3, 4], 1, 1, 5).To(dev);
        // 5 -> 3: windows [0, 2), [1, 4), [3, 5).
        Values([0.5, 2, 3.5], v.AdaptiveAvgPool1d(3), "adaptive average");
        var (y, idx) = v.AdaptiveMaxPoolWithIndices([3]);
        Values([1, 3, 4], y, "adaptive max");
        Assert.Equal([1L, 3, 4], idx.ToArray<long>());
        // More outputs than inputs repeat windows: 2 -> 3 gives [0, 1), [0, 2), [1, 2).
        Values([0, 0.5, 1], T([0, 1], 1, 1, 2).To(dev).AdaptiveAvgPool1d(3), "adaptive upsampling");
        var x = Arange(24, 2, 3, 2, 2).To(dev);
        Assert.Equal(new Shape(2, 3, 1, 1), x.GlobalAvgPool().Shape);
        Values([1.5, 5.5, 9.5, 13.5, 17.5, 21.5], x.GlobalAvgPool(), "global average");
        Values([3, 7, 11, 15, 19, 23], x.GlobalMaxPool(), "global max");
    }

    [Fact]
    public void Lp_pool_is_the_p_norm_of_each_window()
    {
        Values([5, 13], T([3, 4, 5, 12], 1, 1, 4).LpPool1d(2, 2), "p = 2");
        var x = R([2, 3, 5, 4], 3, 0.5, 2);
        var y = x.LpPool2d(3, 2).ToDoubleArray();
        var xs = x.ToDoubleArray();
        int k = 0;
        for (int p = 0; p < 6; p++)
            for (int oh = 0; oh < 2; oh++)
                for (int ow = 0; ow < 2; ow++)
                {
                    double s = 0;
                    for (int i = 0; i < 2; i++) for (int j = 0; j < 2; j++) s += Math.Pow(xs[p * 20 + (oh * 2 + i) * 4 + ow * 2 + j], 3);
                    Assert.Equal(Math.Cbrt(s), y[k++], 1e-12);
                }
    }

    [Theory, MemberData(nameof(DeviceData))]
    public void Max_unpool_puts_each_maximum_back_at_its_index(string device)
    {
        var dev = Devices.Parse(device);
        var x = Arange(32, 2, 1, 4, 4).To(dev);
        var (y, idx) = x.MaxPoolWithIndices([2, 2]);
        var u = y.MaxUnpool2d(idx, 2);
        Assert.Equal(x.Shape, u.Shape);
        var expected = new double[32];
        foreach (int i in new[] { 5, 7, 13, 15, 21, 23, 29, 31 }) expected[i] = i;
        Values(expected, u, "unpooled");
        var (y1, i1) = T([3, 1, 4, 1, 5, 9], 1, 1, 6).To(dev).MaxPoolWithIndices([3]);
        Values([0, 0, 4, 0, 0, 9], y1.MaxUnpool1d(i1, 3), "1d");
        var (y3, i3) = Tensor.Arange(0, 8, 1, F64).Reshape(1, 1, 2, 2, 2).To(dev).MaxPoolWithIndices([2, 2, 2]);
        Values([0, 0, 0, 0, 0, 0, 0, 7], y3.MaxUnpool3d(i3, 2), "3d");
        // An output size one larger than the default pads the plane.
        Assert.Equal(new Shape(2, 1, 5, 5), y.MaxUnpool(idx, [2, 2], outputSize: [5, 5]).Shape);
    }

    [Fact]
    public void Empty_batches_and_unbatched_inputs_keep_their_leading_dims()
    {
        var e = Tensor.Zeros(new Shape(0, 3, 5, 5), F64).RequiresGrad_();
        var y = e.MaxPool2d(2);
        Assert.Equal(new Shape(0, 3, 2, 2), y.Shape);
        y.Sum().Backward();
        Assert.Equal(e.Shape, e.Grad!.Shape);
        Assert.Equal(new Shape(0, 2, 3), Tensor.Zeros(new Shape(0, 2, 7), F64).AvgPool1d(3, 2).Shape);
        var u = Arange(16, 1, 4, 4);
        Values([5, 7, 13, 15], u.MaxPool2d(2), "unbatched [C, H, W]");
        Assert.Equal(new Shape(1, 2, 2), u.AdaptiveAvgPool2d(2).Shape);
    }

    public static IEnumerable<object[]> Gradients => new (string, Func<Tensor, Tensor>, int[])[]
    {
        ("max_pool1d dilated, ceil", x => x.MaxPool1d(2, 2, 1, 2, ceilMode: true), [2, 2, 7]),
        ("max_pool2d padded", x => x.MaxPool2d(3, 2, 1), [1, 2, 5, 6]),
        ("max_pool3d", x => x.MaxPool([2, 2, 2], [1, 2, 1]), [1, 2, 3, 3, 4]),
        ("avg_pool1d ceil", x => x.AvgPool1d(3, 2, 1, ceilMode: true), [2, 2, 8]),
        ("avg_pool2d no pad count", x => x.AvgPool([3, 2], [2, 1], [1, 1], countIncludePad: false), [1, 3, 5, 4]),
        ("avg_pool3d divisor", x => x.AvgPool3d(2, 1, 1, divisorOverride: 3), [1, 1, 2, 3, 3]),
        ("adaptive_avg_pool2d", x => x.AdaptiveAvgPool2d(3, 2), [2, 2, 5, 3]),
        ("adaptive_max_pool3d", x => x.AdaptiveMaxPool([2, 3, 2]), [1, 2, 3, 4, 3]),
        ("lp_pool2d", x => (x.Abs() + 0.5).LpPool2d(3, 2, 1), [1, 2, 4, 4]),
        ("max_unpool", x => { var (y, i) = x.MaxPoolWithIndices([2, 2]); return (y * 2).MaxUnpool2d(i, 2); }, [1, 2, 4, 6]),
    }.Select(c => new object[] { c.Item1, c.Item2, c.Item3 });

    [Theory, MemberData(nameof(Gradients))]
    public void Gradients_match_finite_differences(string what, Func<Tensor, Tensor> f, int[] shape)
    {
        // Distinct values far apart (a shuffled ramp), so no window's maximum changes under the finite difference.
        int n = shape.Aggregate(1, (a, b) => a * b);
        var perm = Tensor.Rand(new Shape(n), new Generator(7), 0, 1, F64).Sort(0).Indices;
        var x = (perm.To(F64) * (2.0 / n) - 1).Reshape(shape);
        var r = GradCheck.Run(xs => f(xs[0]), [x]);
        Assert.True(r.Passed, $"{what}: {r}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Backward_passes_differentiate_again(bool avg)
    {
        var x = R([1, 2, 5, 5], 11);
        Func<Tensor, Tensor> pool = avg ? t => t.AvgPool2d(3, 2, 1) : t => t.MaxPool2d(3, 2, 1);
        var v = R([1, 2, 3, 3], 12).RequiresGrad_();
        var u = R([1, 2, 5, 5], 13);
        // d <J^T v, u> / dv = J u: the backward pass's own backward is the pooling's linearization applied to u.
        var vjp = Autograd.Vjp(pool, x, v, createGraph: true);
        var got = Autograd.Grad((vjp * u).Sum(), v);
        var idx = x.MaxPoolWithIndices([3, 3], [2], [1]).Indices;
        var expected = avg ? u.AvgPool2d(3, 2, 1) : u.Reshape(2, 25).Gather(1, idx.Reshape(2, 9)).Reshape(1, 2, 3, 3);
        Close.Check(expected, got, 1e-13, 1e-14, avg ? "avg" : "max");
    }

    [Fact]
    public void Bad_arguments_throw_argument_exceptions_naming_the_values()
    {
        var x = Tensor.Zeros(new Shape(1, 2, 5, 5), F64);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => x.MaxPool2d(3, padding: -1));
        Assert.Equal("padding", e.ParamName);
        Assert.Contains("-1", e.Message);
        var big = Assert.Throws<ArgumentException>(() => x.AvgPool2d(8, padding: 1));
        Assert.Contains("kernel size 8", big.Message);
        Assert.Contains("5 + 2 * 1", big.Message);
        Assert.Contains("larger than the padded input", Assert.Throws<ArgumentException>(() => x.MaxPool2d(3, dilation: 3)).Message);
        Assert.Contains("more than half", Assert.Throws<ArgumentException>(() => x.MaxPool2d(2, padding: 2)).Message);
        Assert.Equal("stride", Assert.Throws<ArgumentOutOfRangeException>(() => x.MaxPool2d(2, stride: 0)).ParamName);
        Assert.Equal("kernelSize", Assert.Throws<ArgumentOutOfRangeException>(() => x.AvgPool2d(0)).ParamName);
        Assert.Equal("outputSize", Assert.Throws<ArgumentOutOfRangeException>(() => x.AdaptiveAvgPool2d(0)).ParamName);
        Assert.Equal("divisorOverride", Assert.Throws<ArgumentOutOfRangeException>(() => x.AvgPool2d(2, divisorOverride: 0)).ParamName);
        Assert.Throws<ShapeMismatchException>(() => Tensor.Zeros(new Shape(5, 5), F64).MaxPool2d(2));
        Assert.Throws<ShapeMismatchException>(() => Tensor.Zeros(new Shape(1, 2, 0, 5), F64).MaxPool2d(2));
        Assert.Throws<NotSupportedException>(() => Tensor.Zeros(new Shape(1, 2, 4, 4), DType.Int32).MaxPool2d(2));
        var (y, idx) = x.MaxPoolWithIndices([2, 2]);
        var unpool = Assert.Throws<ArgumentException>(() => y.MaxUnpool(idx, [2, 2], outputSize: [7, 7]));
        Assert.Contains("output size 7", unpool.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => y.MaxUnpool((idx + 100).Detach(), [2, 2]));
    }
}
