using Kiln.Kernels;
using Kiln.Ops;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>
/// The value predicates (isnan, isinf, isposinf, isneginf, isfinite) and nan_to_num on every device and dtype, and the
/// parametrised unary primitives' PyTorch semantics and argument checks beyond their definitions' conformance cases.
/// </summary>
public class UnaryTests
{
    static readonly DType[] AllDTypes = [DType.Float32, DType.Float64, DType.Int32, DType.Int64, DType.Bool, DType.Float16, DType.BFloat16];

    public static IEnumerable<object[]> DeviceDTypes => from d in Devices.All from dt in AllDTypes select new object[] { d.ToString(), dt };

    // NaN and both infinities at spread positions of floating inputs (OpDefinition.Input mixes a domain's specials in).
    static readonly Domain WithSpecials = new(-3, 3, double.NaN, double.PositiveInfinity, double.NegativeInfinity, double.NaN, 0.0, double.NegativeInfinity);

    static FsCheck.Gen<OpCase> Case =>
        from rank in G.Choose(0, 4)
        from dims in G.ArrayOf(G.Frequency((1, G.Constant(0)), (9, G.Choose(1, 7))), rank)
        from view in G.Elements(Enum.GetValues<InputView>())
        from seed in TensorGen.Seed
        select new OpCase(dims, view, (ulong)seed);

    static double Max(DType dtype) => dtype switch
    {
        DType.Float32 => float.MaxValue,
        DType.Float64 => double.MaxValue,
        DType.Float16 => 65504,
        _ => 3.3895313892515355e38,
    };

    [Theory, MemberData(nameof(DeviceDTypes))]
    public void Predicates_and_nan_to_num_match_the_float64_classification(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        bool floating = dtype.IsFloating();
        Props.Check(dev, Case, c =>
        {
            var x = OpDefinition.Input(c.Shape, c.View, c.Seed, dtype, dev, WithSpecials);
            var v = x.ToDoubleArray();
            void Is(Tensor mask, Func<double, bool> expected, string what)
            {
                Assert.Equal(DType.Bool, mask.DType);
                Assert.Equal(x.Shape, mask.Shape);
                Assert.Equal(v.Select(e => expected(e) ? 1.0 : 0.0).ToArray(), mask.ToDoubleArray());
            }
            Is(x.IsNan(), double.IsNaN, "isnan");
            Is(x.IsInf(), double.IsInfinity, "isinf");
            Is(x.IsPosInf(), double.IsPositiveInfinity, "isposinf");
            Is(x.IsNegInf(), double.IsNegativeInfinity, "isneginf");
            Is(x.IsFinite(), double.IsFinite, "isfinite");

            var y = x.NanToNum();
            Assert.Equal(dtype, y.DType);
            double max = floating ? Max(dtype) : 0;
            Assert.Equal(v.Select(e => double.IsNaN(e) ? 0 : double.IsPositiveInfinity(e) ? max : double.IsNegativeInfinity(e) ? -max : e).ToArray(), y.ToDoubleArray());
            // Replacements are rounded to the dtype: 0.1 as each holds it.
            double tenth = Tensor.Scalar(0.1, DType.Float64).To(dtype).ToDoubleArray()[0];
            var z = x.NanToNum(nan: 0.1, posinf: 7, neginf: -5);
            Assert.Equal(v.Select(e => double.IsNaN(e) ? tenth : double.IsPositiveInfinity(e) ? 7 : double.IsNegativeInfinity(e) ? -5 : e).ToArray(), z.ToDoubleArray());
        }, maxTest: 12);
    }

    [Fact]
    public void Nan_to_num_passes_the_gradient_where_the_value_is_finite()
    {
        var x = Tensor.FromArray(new[] { 1.5, double.NaN, double.PositiveInfinity, -2.0, double.NegativeInfinity }).RequiresGrad_();
        x.NanToNum().Sum().Backward();
        Assert.Equal(new[] { 1.0, 0, 0, 1, 0 }, x.Grad!.ToDoubleArray());
    }

    public static IEnumerable<object[]> DeviceFloats => from d in Devices.All from dt in new[] { DType.Float32, DType.Float64 } select new object[] { d.ToString(), dt };

    [Theory, MemberData(nameof(DeviceFloats))]
    public void Activations_follow_PyTorch_formulas_at_their_edges(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        double inf = double.PositiveInfinity, nan = double.NaN;
        Tensor X(params double[] v) => Tensor.FromArray(v).To(dtype).To(dev);
        // A parameter as the dtype holds it (the kernels compute with that value, as PyTorch's).
        double H(double v) => dtype == DType.Float32 ? (float)v : v;
        // -inf times a zero factor is NaN in PyTorch's formulas (hardswish, mish); softsign is inf / inf there.
        Assert.Equal(new[] { nan, 0, inf, nan }, X(-inf, -4, inf, nan).Hardswish().ToDoubleArray());
        Assert.Equal(new[] { 0, 1, nan, 0.5 }, X(-inf, inf, nan, 0).Hardsigmoid().ToDoubleArray());
        Assert.Equal(new[] { nan, nan, 0 }, X(-inf, inf, 0).Softsign().ToDoubleArray());
        Assert.Equal(new[] { nan, inf }, X(-inf, inf).Mish().ToDoubleArray());
        var selu = X(-inf).Selu().ToDoubleArray()[0];
        Assert.Equal(-Reference.SeluScaleAlpha, selu, dtype == DType.Float32 ? 1e-6 : 1e-15);
        // Non-default parameters change the result where PyTorch's do.
        Assert.Equal(new[] { -0.5, -0.5, 0.25, 2, 2, nan }, X(-inf, -3, 0.25, 2, 5, nan).Hardtanh(-0.5, 2).ToDoubleArray());
        Assert.Equal(new[] { -H(0.3), 1.5 }, X(-inf, 1.5).Elu(0.3).ToDoubleArray());
        Assert.Equal(new[] { -2.5, 1.5 }, X(-inf, 1.5).Celu(2.5).ToDoubleArray());
        Assert.Equal(new[] { -2 * H(0.2), 3, -inf }, X(-2, 3, -inf).LeakyRelu(0.2).ToDoubleArray());
        Assert.Equal(new[] { 0.5, -0.25, nan, 0 }, X(2.5, -3.25, inf, -7).Frac().ToDoubleArray());
    }

    [Fact]
    public void Bad_parameters_name_the_argument_and_value()
    {
        var x = Tensor.FromArray(new[] { 1.0, -1.0 });
        var e = Assert.Throws<ArgumentException>(() => x.Hardtanh(2, 1));
        Assert.Equal("minVal", e.ParamName);
        Assert.Contains("2", e.Message);
        Assert.Equal("maxVal", Assert.Throws<ArgumentOutOfRangeException>(() => x.Hardtanh(0, double.NaN)).ParamName);
        Assert.Equal("alpha", Assert.Throws<ArgumentOutOfRangeException>(() => x.Celu(0)).ParamName);
        Assert.Equal("alpha", Assert.Throws<ArgumentOutOfRangeException>(() => x.Elu(double.NegativeInfinity)).ParamName);
        Assert.Equal("negativeSlope", Assert.Throws<ArgumentOutOfRangeException>(() => x.LeakyRelu(double.NaN)).ParamName);
        Assert.Equal("alpha", Assert.Throws<ArgumentOutOfRangeException>(() => x.Apply_(UnaryOp.Celu, new UnaryParams(0))).ParamName);
        Assert.Throws<NotSupportedException>(() => Tensor.FromArray(new[] { 1, 2 }).Tan());
    }

    [Fact]
    public void In_place_apply_uses_the_parameters()
    {
        var x = Tensor.FromArray(new[] { -3.0, 0.5, 4.0 });
        x.Apply_(UnaryOp.Hardtanh, new UnaryParams(-2, 3));
        Assert.Equal(new[] { -2.0, 0.5, 3.0 }, x.ToDoubleArray());
        x.Apply_(UnaryOp.LeakyRelu);
        Assert.Equal(new[] { -0.02, 0.5, 3.0 }, x.ToDoubleArray());
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Integer_unary_ops_are_exact_and_wrap_at_the_minimum(string device)
    {
        var dev = Devices.Parse(device);
        var i32 = Tensor.FromArray(new[] { int.MinValue, -7, 0, 5, int.MaxValue }).To(dev);
        Assert.Equal(new double[] { int.MinValue, 7, 0, 5, int.MaxValue }, i32.Abs().ToDoubleArray());
        Assert.Equal(new double[] { int.MinValue, 7, 0, -5, -int.MaxValue }, (-i32).ToDoubleArray());
        Assert.Equal(new double[] { -1, -1, 0, 1, 1 }, i32.Sign().ToDoubleArray());
        Assert.Equal(new double[] { 0, 0, 0, 5, int.MaxValue }, i32.Relu().ToDoubleArray());
        Assert.Equal(new double[] { 0, 49, 0, 25, 1 }, i32.Square().ToDoubleArray());   // (2^31)^2 and (2^31 - 1)^2 wrap to 0 and 1
        var i64 = Tensor.FromArray(new[] { long.MinValue, -3L, 4L }).To(dev);
        Assert.Equal(DType.Int64, i64.Abs().DType);
        Assert.Equal(new[] { long.MinValue, 3L, 4L }, i64.Abs().ToArray<long>());
        Assert.Equal(new[] { long.MinValue, 3L, -4L }, i64.Neg().ToArray<long>());
        Assert.Throws<NotSupportedException>(() => i32.Exp());
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Bitwise_operators_follow_PyTorch(string device)
    {
        var dev = Devices.Parse(device);
        var t = Tensor.FromArray(new[] { true, true, false, false }).To(dev);
        var u = Tensor.FromArray(new[] { true, false, true, false }).To(dev);
        Assert.Equal(new[] { true, false, false, false }, (t & u).ToArray<bool>());
        Assert.Equal(new[] { true, true, true, false }, (t | u).ToArray<bool>());
        Assert.Equal(new[] { false, true, true, false }, (t ^ u).ToArray<bool>());
        Assert.Equal(new[] { false, false, true, true }, (~t).ToArray<bool>());
        var a = Tensor.FromArray(new[] { 12, -12, 1, -1, 5 }).To(dev);
        var n = Tensor.FromArray(new[] { 2, 2, 31, 40, -1 }).To(dev);
        Assert.Equal(new[] { 48, -48, int.MinValue, 0, 0 }, (a << n).ToArray<int>());
        Assert.Equal(new[] { 3, -3, 0, -1, 0 }, (a >> n).ToArray<int>());
        Assert.Equal(new[] { -13, 11, -2, 0, -6 }, (~a).ToArray<int>());
        Assert.Equal(new[] { 6, -6, 0, -1, 2 }, (a >> 1).ToArray<int>());
        // Int32 with Int64 promotes to Int64; Bool with an integer to the integer.
        var wide = a.To(DType.Int64) & Tensor.FromArray(new[] { 4L }).To(dev);
        Assert.Equal(new[] { 4L, 4L, 0L, 4L, 4L }, wide.ToArray<long>());
        Assert.Equal(DType.Int32, (a | t.Slice(0, 0, 1)).DType);
        Assert.Throws<NotSupportedException>(() => a.To(DType.Float32) & a);
        Assert.Throws<NotSupportedException>(() => t << u);
        Assert.Throws<NotSupportedException>(() => ~a.To(DType.Float64));
    }
}
