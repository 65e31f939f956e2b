using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// Interpolation and pixel shuffle beyond their definitions (resample.* in OpCatalog, run on every device by
/// OpConformanceTests): values worked out by hand with PyTorch's coordinate rules, gradients against finite differences
/// in float64, and argument errors.
/// </summary>
public class ResampleTests
{
    const DType F64 = DType.Float64;

    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));
    static Tensor R(int[] shape, ulong seed) => Tensor.Rand(new Shape(shape), new Generator(seed), -1, 1, F64);
    static void Values(double[] expected, Tensor actual, string what, double tol = 1e-12) => Close.Check(expected, actual.ToDoubleArray(), tol, tol, what);

    public static IEnumerable<object[]> DeviceData => Devices.Data;

    // out[i][j] = 1 + 2 c[i] + c[j] for x = [[1, 2], [3, 4]] when each row of weights sums to 1 and c is the second weight.
    static double[] Plane(double[] c) => [.. from i in c from j in c select 1 + 2 * i + j];

    [Theory, MemberData(nameof(DeviceData))]
    public void Two_by_two_upsampling_matches_worked_pytorch_values(string device)
    {
        var dev = Devices.Parse(device);
        var x = T([1, 2, 3, 4], 1, 1, 2, 2).To(dev);
        // Bicubic, A = -0.75, no align_corners: source -0.25 gives taps at -2..1 with weights -0.03515625, 0.26171875,
        // 0.87890625, -0.10546875; clamping folds the first three onto index 0. The first output is 0.68359375.
        Values(Plane([-0.10546875, 0.2265625, 0.7734375, 1.10546875]), x.Interpolate([4, 4], mode: InterpolateMode.Bicubic), "bicubic");
        Assert.Equal(0.68359375, x.Interpolate([4, 4], mode: InterpolateMode.Bicubic).ToDoubleArray()[0]);
        // Bilinear: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to the last input).
        Values(Plane([0, 0.25, 0.75, 1]), x.Interpolate([4, 4], mode: InterpolateMode.Bilinear), "bilinear");
        Values(Plane([0, 0.5, 1]), x.Interpolate([3, 3], mode: InterpolateMode.Bilinear, alignCorners: true), "bilinear, align_corners");
        Values(Plane([0, 1 / 3.0, 2 / 3.0, 1]), x.Interpolate([4, 4], mode: InterpolateMode.Bilinear, alignCorners: true), "bilinear, align_corners 2 -> 4");
        Values(Plane([0, 0, 1, 1]), x.Interpolate(null, [2], InterpolateMode.Nearest), "nearest x2");
    }

    [Theory, MemberData(nameof(DeviceData))]
    public void Nearest_modes_and_scale_factors_use_pytorch_source_indices(string device)
    {
        var dev = Devices.Parse(device);
        var v = T([0, 1, 2, 3, 4], 1, 1, 5).To(dev);
        Values([0, 1, 3], v.Interpolate([3]), "nearest 5 -> 3");
        Values([0, 2, 4], v.Interpolate([3], mode: InterpolateMode.NearestExact), "nearest-exact 5 -> 3");
        var u = T([0, 1], 1, 1, 2).To(dev);
        Values([0, 0, 0, 1, 1], u.Interpolate([5]), "nearest 2 -> 5");
        Values([0, 0, 1, 1, 1], u.Interpolate([5], mode: InterpolateMode.NearestExact), "nearest-exact 2 -> 5");
        // A scale factor maps coordinates by 1 / factor, not by in / out: 3 -> 7 at factor 2.5 samples 0.4 (o + 0.5) - 0.5.
        var r = T([0, 1, 2], 1, 1, 3).To(dev);
        Values([0, 0.1, 0.5, 0.9, 1.3, 1.7, 2], r.Interpolate(null, [2.5], InterpolateMode.Linear), "linear by factor");
        Values([0, 1 / 7.0, 4 / 7.0, 1, 10 / 7.0, 13 / 7.0, 2], r.Interpolate([7], mode: InterpolateMode.Linear), "linear by size");
        Values([0, 0, 1, 2, 2, 3], T([0, 1, 2, 3], 1, 1, 4).To(dev).Interpolate(null, [1.5]), "nearest by factor 1.5");
        // Area is adaptive average pooling: 5 -> 3 averages [0, 2), [1, 4), [3, 5).
        Values([0.5, 2, 3.5], v.Interpolate([3], mode: InterpolateMode.Area), "area");
    }

    [Fact]
    public void Trilinear_of_a_linear_function_is_exact_inside_the_input()
    {
        // f(d, h, w) = d + 10 h + 100 w is reproduced at every source coordinate with align_corners (no clamping).
        var x = Tensor.FromArray(Enumerable.Range(0, 2 * 3 * 4).Select(i => (double)(i / 12 + 10 * (i / 4 % 3) + 100 * (i % 4))).ToArray(), new Shape(1, 1, 2, 3, 4));
        var y = x.Interpolate([3, 5, 7], mode: InterpolateMode.Trilinear, alignCorners: true);
        var expected = from d in Enumerable.Range(0, 3) from h in Enumerable.Range(0, 5) from w in Enumerable.Range(0, 7)
                       select d * 0.5 + 10 * h * 0.5 + 100 * w * 0.5;
        Values([.. expected], y, "trilinear", 1e-12);
    }

    [Fact]
    public void Pixel_shuffle_moves_channel_blocks_into_space_and_back()
    {
        var x = Tensor.Arange(0, 2 * 8 * 2 * 3, 1, F64).Reshape(2, 8, 2, 3);
        var y = x.PixelShuffle(2);
        Assert.Equal(new Shape(2, 2, 4, 6), y.Shape);
        var xs = x.ToDoubleArray();
        var ys = y.ToDoubleArray();
        for (int n = 0; n < 2; n++)
            for (int c = 0; c < 2; c++)
                for (int h = 0; h < 2; h++)
                    for (int w = 0; w < 3; w++)
                        for (int i = 0; i < 2; i++)
                            for (int j = 0; j < 2; j++)
                                Assert.Equal(xs[((n * 8 + c * 4 + i * 2 + j) * 2 + h) * 3 + w], ys[((n * 2 + c) * 4 + h * 2 + i) * 6 + w * 2 + j]);
        Close.Check(x, y.PixelUnshuffle(2), 0, 0, "round trip");
        Assert.Equal(new Shape(9, 1, 3), Tensor.Zeros(new Shape(1, 3, 9), F64).PixelUnshuffle(3).Shape);
        var r = GradCheck.Run(t => t[0].PixelShuffle(2) * t[0].PixelShuffle(2), [R([1, 4, 2, 2], 3)]);
        Assert.True(r.Passed, r.ToString());
    }

    public static IEnumerable<object[]> Gradients => new (string, Func<Tensor, Tensor>, int[])[]
    {
        ("nearest 2d", x => x.Interpolate([5, 3]), [1, 2, 3, 4]),
        ("nearest-exact 3d by factor", x => x.Interpolate(null, [1.5, 0.7, 2]), [1, 1, 2, 3, 2]),
        ("linear", x => x.Interpolate([7], mode: InterpolateMode.Linear), [2, 2, 4]),
        ("bilinear down, align", x => x.Interpolate([3, 2], mode: InterpolateMode.Bilinear, alignCorners: true), [1, 2, 5, 4]),
        ("bicubic", x => x.Interpolate([5, 6], mode: InterpolateMode.Bicubic), [1, 2, 3, 4]),
        ("bicubic by factor, align", x => x.Interpolate(null, [1.7, 0.6], InterpolateMode.Bicubic, alignCorners: true), [1, 1, 4, 5]),
        ("trilinear", x => x.Interpolate([3, 2, 4], mode: InterpolateMode.Trilinear), [1, 1, 2, 3, 3]),
    }.Select(c => new object[] { c.Item1, c.Item2, c.Item3 });

    [Theory, MemberData(nameof(Gradients))]
    public void Gradients_match_finite_differences(string what, Func<Tensor, Tensor> f, int[] shape)
    {
        var r = GradCheck.Run(xs => f(xs[0]).Square(), [R(shape, 5)]);
        Assert.True(r.Passed, $"{what}: {r}");
    }

    [Fact]
    public void The_backward_pass_differentiates_again()
    {
        var x = R([1, 2, 3, 4], 7);
        var v = R([1, 2, 5, 6], 8).RequiresGrad_();
        var u = R([1, 2, 3, 4], 9);
        Func<Tensor, Tensor> f = t => t.Interpolate([5, 6], mode: InterpolateMode.Bicubic);
        // d <J^T v, u> / dv = J u, and J is the interpolation itself.
        var got = Autograd.Grad((Autograd.Vjp(f, x, v, createGraph: true) * u).Sum(), v);
        Close.Check(f(u), got, 1e-13, 1e-14, "double backward");
    }

    [Fact]
    public void Bad_arguments_throw_argument_exceptions()
    {
        var x = Tensor.Zeros(new Shape(1, 2, 4, 4), F64);
        Assert.Throws<ArgumentException>(() => x.Interpolate());
        Assert.Throws<ArgumentException>(() => x.Interpolate([2, 2], [2.0]));
        Assert.Equal("size", Assert.Throws<ArgumentOutOfRangeException>(() => x.Interpolate([0, 3])).ParamName);
        Assert.Equal("scaleFactor", Assert.Throws<ArgumentOutOfRangeException>(() => x.Interpolate(null, [-1.0])).ParamName);
        Assert.Contains("floor(4 * 0.2)", Assert.Throws<ArgumentException>(() => x.Interpolate(null, [0.2])).Message);
        Assert.Equal("mode", Assert.Throws<ArgumentException>(() => x.Interpolate([3], mode: InterpolateMode.Trilinear)).ParamName);
        Assert.Equal("alignCorners", Assert.Throws<ArgumentException>(() => x.Interpolate([3, 3], alignCorners: true)).ParamName);
        Assert.Equal("alignCorners", Assert.Throws<ArgumentException>(() => x.Interpolate([3, 3], mode: InterpolateMode.Area, alignCorners: true)).ParamName);
        Assert.Throws<ShapeMismatchException>(() => Tensor.Zeros(new Shape(4, 4), F64).Interpolate([2]));
        Assert.Throws<ShapeMismatchException>(() => Tensor.Zeros(new Shape(1, 1, 0, 4), F64).Interpolate([2, 2]));
        Assert.Throws<ShapeMismatchException>(() => Tensor.Zeros(new Shape(1, 3, 4, 4), F64).PixelShuffle(2));
        Assert.Throws<ShapeMismatchException>(() => Tensor.Zeros(new Shape(1, 3, 4, 5), F64).PixelUnshuffle(2));
        Assert.Equal("upscaleFactor", Assert.Throws<ArgumentOutOfRangeException>(() => x.PixelShuffle(0)).ParamName);
        Assert.Equal(new Shape(0, 2, 8, 8), Tensor.Zeros(new Shape(0, 2, 4, 4), F64).Interpolate(null, [2.0], InterpolateMode.Bilinear).Shape);
    }
}
