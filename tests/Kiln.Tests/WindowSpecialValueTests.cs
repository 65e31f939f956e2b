using Kiln.Ops;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// NaN and infinities through convolution, pooling and resampling on every device: the special-value pass of each
/// definition of those families (planted specials against the float64 reference) and small cases worked by hand
/// from PyTorch's semantics (an infinity times a zero weight is NaN, max pooling propagates NaN, a sum of +Inf and -Inf
/// is NaN).
/// </summary>
public class WindowSpecialValueTests
{
    public static IEnumerable<object[]> Cases =>
        from op in OpCatalog.All
        where op.Family is "conv" or "pool" or "resample"
        from d in Devices.All
        from dt in op.DTypes
        select new object[] { op.Name, d.ToString(), dt };

    [Theory, MemberData(nameof(Cases))]
    public void Special_value_pass_covers_nan_and_infinities_and_passes(string name, string device, DType dtype)
    {
        var op = OpCatalog.Get(name);
        var results = op.CheckSpecials(Devices.Parse(device), dtype);
        foreach (var s in results)
            Assert.True(s.Pass, $"{name} {dtype} on {device}, {s.Class} inputs: {string.Join("; ", s.Mismatches)}");
        Assert.Contains(results, s => s.Class == "nan" && s.Count > 0);
        Assert.Contains(results, s => s.Class == "inf" && s.Count > 0);
    }

    public static IEnumerable<object[]> DeviceDtype => from d in Devices.All from dt in new[] { DType.Float32, DType.Float64 } select new object[] { d.ToString(), dt };

    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));

    static void Same(double[] expected, Tensor actual, string what) =>
        Assert.True(expected.SequenceEqual(actual.ToDoubleArray()), $"{what}: got [{string.Join(", ", actual.ToDoubleArray())}], expected [{string.Join(", ", expected)}]");

    [Theory, MemberData(nameof(DeviceDtype))]
    public void Worked_cases_follow_PyTorch(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        Tensor On(Tensor t) => t.To(dtype).To(dev);
        double inf = double.PositiveInfinity, nan = double.NaN;

        // conv1d of [inf, 1, 2] by [0, 1]: 0 * inf + 1 = NaN, then 0 + 2; by [1, 0]: inf + 0, then 1 + 0.
        var x = On(T([inf, 1, 2], 1, 1, 3));
        Same([nan, 2], Tensor.Conv1d(x, On(T([0, 1], 1, 1, 2))), "conv1d with a zero weight on inf");
        Same([inf, 1], Tensor.Conv1d(x, On(T([1, 0], 1, 1, 2))), "conv1d with a one weight on inf");

        // max pooling propagates NaN; an all -inf window gives -inf; average pooling of inf and of inf with -inf.
        Same([nan, 3, double.NegativeInfinity], On(T([1, nan, 3, 2, double.NegativeInfinity, double.NegativeInfinity], 1, 1, 6)).MaxPool1d(2), "max_pool1d");
        Same([inf, nan, -inf], On(T([inf, 1, -inf, inf, -inf, -2], 1, 1, 6)).AvgPool([2]), "avg_pool1d");

        // Linear resize 3 -> 5 with align_corners reads both taps of each output even where one weight is 0:
        // out[0] = 1 x0 + 0 x1 = NaN with x1 = inf; out[4] reads x2 twice.
        Same([nan, inf, inf, inf, 2], On(T([1, inf, 2], 1, 1, 3)).Interpolate([5], null, InterpolateMode.Linear, alignCorners: true), "linear interpolate");
        // Nearest copies the special itself.
        Same([1, 1, nan, nan], On(T([1, nan], 1, 1, 2)).Interpolate([4], null, InterpolateMode.Nearest), "nearest interpolate");
    }
}
