using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// Grid sampling and affine grids beyond their definitions (resample.grid_sample* in OpCatalog, run on every device by
/// OpConformanceTests): values worked out by hand with PyTorch's rules, gradients against finite differences in
/// float64, and argument errors.
/// </summary>
public class GridSampleTests
{
    const DType F64 = DType.Float64;

    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));
    static Tensor R(int[] shape, ulong seed, double lo = -1, double hi = 1) => Tensor.Rand(new Shape(shape), new Generator(seed), lo, hi, F64);

    public static IEnumerable<object[]> DeviceData => Devices.Data;

    [Theory, MemberData(nameof(DeviceData))]
    public void Samples_match_worked_values_for_each_padding_and_alignment(string device)
    {
        var dev = Devices.Parse(device);
        var x = T([1, 2, 3, 4], 1, 1, 2, 2).To(dev);
        double At(double gx, double gy, GridSampleMode mode, GridSamplePadding pad, bool align) =>
            x.GridSample(T([gx, gy], 1, 1, 1, 2).To(dev), mode, pad, align).ToDoubleArray()[0];
        Assert.Equal(2.5, At(0, 0, GridSampleMode.Bilinear, GridSamplePadding.Zeros, false), 1e-12);
        Assert.Equal(1, At(-1, -1, GridSampleMode.Bilinear, GridSamplePadding.Zeros, true), 1e-12);
        // Without align_corners (-1, -1) is the outer corner, source (-0.5, -0.5): a quarter of x[0, 0] and zeros.
        Assert.Equal(0.25, At(-1, -1, GridSampleMode.Bilinear, GridSamplePadding.Zeros, false), 1e-12);
        Assert.Equal(1, At(-1, -1, GridSampleMode.Bilinear, GridSamplePadding.Border, false), 1e-12);
        Assert.Equal(1, At(-1, -1, GridSampleMode.Bilinear, GridSamplePadding.Reflection, false), 1e-12);
        // x = 1.5 with align_corners is source column 1.25: 3/4 of column 1 (zeros), column 1 (border), column 0.75 (reflection).
        Assert.Equal(2.25, At(1.5, 0, GridSampleMode.Bilinear, GridSamplePadding.Zeros, true), 1e-12);
        Assert.Equal(3, At(1.5, 0, GridSampleMode.Bilinear, GridSamplePadding.Border, true), 1e-12);
        Assert.Equal(2.75, At(1.5, 0, GridSampleMode.Bilinear, GridSamplePadding.Reflection, true), 1e-12);
        Assert.Equal(4, At(0.1, 0.6, GridSampleMode.Nearest, GridSamplePadding.Zeros, true));
        // Source (0.5, 0.5) rounds half to even, to pixel (0, 0).
        Assert.Equal(1, At(0, 0, GridSampleMode.Nearest, GridSamplePadding.Zeros, true));
        Assert.Equal(2, At(1.5, 0, GridSampleMode.Nearest, GridSamplePadding.Zeros, true));   // source column 1.25 rounds to 1
        Assert.Equal(0, At(2.2, 0, GridSampleMode.Nearest, GridSamplePadding.Zeros, true));   // 1.6 rounds to 2, outside
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_identity_affine_grid_reproduces_the_input(bool align)
    {
        var x = R([2, 3, 4, 5], 1);
        var theta = Tensor.FromArray(new double[] { 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0 }, new Shape(2, 2, 3));
        var grid = Tensor.AffineGrid(theta, [2, 3, 4, 5], align);
        Assert.Equal(new Shape(2, 4, 5, 2), grid.Shape);
        Close.Check(x, x.GridSample(grid, alignCorners: align), 1e-12, 1e-14, "bilinear");
        Close.Check(x, x.GridSample(grid, GridSampleMode.Nearest, alignCorners: align), 0, 0, "nearest");
    }

    [Fact]
    public void Affine_grid_places_pixel_centres_as_pytorch()
    {
        var theta = T([2, 0, 0.5, 0, 1, -1], 1, 2, 3);
        var g = Tensor.AffineGrid(theta, [1, 1, 2, 3]).ToDoubleArray();
        // x runs over -2/3, 0, 2/3 and y over -1/2, 1/2; then x' = 2 x + 0.5 and y' = y - 1.
        double[] expected = [-5 / 6.0, -1.5, 0.5, -1.5, 11 / 6.0, -1.5, -5 / 6.0, -0.5, 0.5, -0.5, 11 / 6.0, -0.5];
        Close.Check(expected, g, 1e-14, 1e-15, "affine grid");
        Close.Check([0, 0], Tensor.AffineGrid(T([1, 0, 0, 0, 1, 0], 1, 2, 3), [1, 1, 1, 1], alignCorners: true).ToDoubleArray(), 0, 0, "one pixel");
    }

    public static IEnumerable<object[]> Paddings => Enum.GetValues<GridSamplePadding>().SelectMany(p => new[] { new object[] { p, false }, [p, true] });

    [Theory, MemberData(nameof(Paddings))]
    public void Gradients_in_input_and_grid_match_finite_differences(GridSamplePadding padding, bool align)
    {
        var x = R([2, 2, 3, 4], 3);
        var grid = R([2, 3, 2, 2], 4, -1.2, 1.2);
        var r = GradCheck.Run(t => t[0].GridSample(t[1], GridSampleMode.Bilinear, padding, align).Square(), [x, grid]);
        Assert.True(r.Passed, r.ToString());
        r = GradCheck.Run(t => t[0].GridSample(grid, GridSampleMode.Nearest, padding, align), [x]);
        Assert.True(r.Passed, "nearest: " + r);
    }

    [Fact]
    public void Affine_grid_and_the_input_gradient_differentiate()
    {
        var x = R([1, 2, 4, 4], 5);
        var r = GradCheck.Run(t => x.GridSample(Tensor.AffineGrid(t[0], [1, 2, 3, 3]), paddingMode: GridSamplePadding.Border), [T([0.9, 0.1, 0.05, -0.2, 1.1, 0.1], 1, 2, 3)]);
        Assert.True(r.Passed, r.ToString());
        var grid = R([1, 3, 3, 2], 6);
        var v = R([1, 2, 3, 3], 7).RequiresGrad_();
        var u = R([1, 2, 4, 4], 8);
        Func<Tensor, Tensor> f = t => t.GridSample(grid);
        var got = Autograd.Grad((Autograd.Vjp(f, x, v, createGraph: true) * u).Sum(), v);
        Close.Check(f(u), got, 1e-13, 1e-14, "double backward in the input");
        // Through the grid, a second derivative is refused rather than silently zero.
        var gr = grid.Detach().RequiresGrad_();
        var dgrid = Autograd.Grad([x.GridSample(gr).Square().Sum()], [gr], createGraph: true)[0];
        Assert.Throws<NotSupportedException>(() => Autograd.Grad([dgrid.Sum()], [gr]));
    }

    [Fact]
    public void Bad_arguments_throw_argument_exceptions()
    {
        var x = Tensor.Zeros(new Shape(2, 3, 4, 4), F64);
        Assert.Throws<ShapeMismatchException>(() => x.GridSample(Tensor.Zeros(new Shape(1, 2, 2, 2), F64)));
        Assert.Throws<ShapeMismatchException>(() => x.GridSample(Tensor.Zeros(new Shape(2, 2, 2, 3), F64)));
        Assert.Throws<ShapeMismatchException>(() => Tensor.Zeros(new Shape(2, 3, 0, 4), F64).GridSample(Tensor.Zeros(new Shape(2, 2, 2, 2), F64)));
        Assert.Throws<ArgumentException>(() => x.GridSample(Tensor.Zeros(new Shape(2, 2, 2, 2))));
        Assert.Equal("size", Assert.Throws<ArgumentException>(() => Tensor.AffineGrid(Tensor.Zeros(new Shape(1, 2, 3), F64), [1, 1, 0, 2])).ParamName);
        Assert.Throws<ShapeMismatchException>(() => Tensor.AffineGrid(Tensor.Zeros(new Shape(1, 3, 3), F64), [1, 1, 2, 2]));
    }
}

/// <summary>ROI align beyond its definitions (resample.roi_align*): worked values with torchvision's rules, gradients, argument errors.</summary>
public class RoiAlignTests
{
    const DType F64 = DType.Float64;

    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));

    public static IEnumerable<object[]> DeviceData => Devices.Data;

    [Theory, MemberData(nameof(DeviceData))]
    public void Bins_average_bilinear_samples_as_torchvision(string device)
    {
        var dev = Devices.Parse(device);
        // x[h, w] = 10 h + w on a 4 x 5 plane: bilinear sampling inside the plane reproduces 10 y + x exactly.
        var x = Tensor.FromArray(Enumerable.Range(0, 20).Select(i => 10.0 * (i / 5) + i % 5).ToArray(), new Shape(1, 1, 4, 5)).To(dev);
        var box = T([0, 1, 1, 3, 3], 1, 5).To(dev);
        // aligned: the box spans pixels 0.5..2.5, bins of 1 with one sample each at their centres 1 and 2.
        Close.Check([11, 12, 21, 22], x.RoiAlign(box, [2, 2], samplingRatio: 1, aligned: true).ToDoubleArray(), 1e-12, 1e-12, "aligned");
        // not aligned: 1..3, samples at 1.5 and 2.5.
        Close.Check([16.5, 17.5, 26.5, 27.5], x.RoiAlign(box, [2, 2], samplingRatio: 1).ToDoubleArray(), 1e-12, 1e-12, "not aligned");
        // Adaptive sampling of one bin of size 2: 2 x 2 samples at 1.5 and 2.5 average to the centre 2.
        Close.Check([22], x.RoiAlign(box, [1, 1]).ToDoubleArray(), 1e-12, 1e-12, "adaptive");
        // spatialScale 0.5 halves the box to the point (1, 1), shifted to (0.5, 0.5); a sample more than one pixel outside reads zero.
        Close.Check([5.5], x.RoiAlign(T([0, 2, 2, 2, 2], 1, 5).To(dev), [1, 1], 0.5, 1, aligned: true).ToDoubleArray(), 1e-12, 1e-12, "scaled point box");
        Close.Check([0], x.RoiAlign(T([0, -3, -3, -2.5, -2.5], 1, 5).To(dev), [1, 1], 1, 1, aligned: true).ToDoubleArray(), 0, 0, "outside");
    }

    [Fact]
    public void The_input_gradient_matches_finite_differences()
    {
        var x = Tensor.Rand(new Shape(2, 2, 5, 6), new Generator(3), -1, 1, F64);
        var boxes = T([1, 0.3, 0.7, 4.1, 3.3, 0, -0.6, 1.2, 2.7, 5.4, 1, 2.2, 0.1, 5.7, 4.9], 3, 5);
        foreach (bool aligned in new[] { false, true })
        {
            var r = GradCheck.Run(t => t[0].RoiAlign(boxes, [2, 3], 1, 0, aligned).Square(), [x]);
            Assert.True(r.Passed, $"aligned {aligned}: {r}");
        }
        var v = Tensor.Rand(new Shape(3, 2, 2, 3), new Generator(4), -1, 1, F64).RequiresGrad_();
        var u = Tensor.Rand(x.Shape, new Generator(5), -1, 1, F64);
        Func<Tensor, Tensor> f = t => t.RoiAlign(boxes, [2, 3], 0.8, 2);
        Close.Check(f(u), Autograd.Grad((Autograd.Vjp(f, x, v, createGraph: true) * u).Sum(), v), 1e-13, 1e-14, "double backward");
    }

    [Fact]
    public void Bad_arguments_throw_argument_exceptions()
    {
        var x = Tensor.Zeros(new Shape(2, 3, 4, 4), F64);
        var box = T([0, 0, 0, 2, 2], 1, 5);
        Assert.Contains("batch index 2", Assert.Throws<ArgumentOutOfRangeException>(() => x.RoiAlign(T([2, 0, 0, 2, 2], 1, 5), [2, 2])).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => x.RoiAlign(T([0.5, 0, 0, 2, 2], 1, 5), [2, 2]));
        Assert.Equal("outputSize", Assert.Throws<ArgumentOutOfRangeException>(() => x.RoiAlign(box, [0, 2])).ParamName);
        Assert.Equal("spatialScale", Assert.Throws<ArgumentOutOfRangeException>(() => x.RoiAlign(box, [2, 2], -1)).ParamName);
        Assert.Throws<ShapeMismatchException>(() => x.RoiAlign(T([0, 0, 0, 2], 1, 4), [2, 2]));
        Assert.Throws<ShapeMismatchException>(() => Tensor.Zeros(new Shape(3, 4, 4), F64).RoiAlign(box, [2, 2]));
    }
}
