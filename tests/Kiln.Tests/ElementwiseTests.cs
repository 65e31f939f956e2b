using Kiln.Kernels;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// Elementwise behaviour beyond the op definitions' conformance cases (<see cref="OpConformanceTests"/>): relative
/// accuracy near zero, in-place ops, clamp bounds, integer arithmetic and half-precision storage.
/// </summary>
public class ElementwiseTests
{
    public static IEnumerable<object[]> NearZeroCases =>
        from d in Devices.All
        from op in new[] { UnaryOp.Tanh, UnaryOp.Erf, UnaryOp.Sin, UnaryOp.Expm1, UnaryOp.Log1p, UnaryOp.Silu, UnaryOp.GeluErf, UnaryOp.GeluTanh, UnaryOp.Erfinv,
            UnaryOp.Tan, UnaryOp.Asin, UnaryOp.Atan, UnaryOp.Sinh, UnaryOp.Asinh, UnaryOp.Atanh, UnaryOp.Selu, UnaryOp.Mish, UnaryOp.Softsign }
        from dt in new[] { DType.Float32, DType.Float64 }
        select new object[] { d.ToString(), op, dt };

    [Theory, MemberData(nameof(NearZeroCases))]
    public void Functions_that_vanish_at_zero_keep_relative_accuracy_there(string device, UnaryOp op, DType dtype)
    {
        // Near 0 these are about c x, so an absolute tolerance would hide a result with no correct digits.
        double[] pts = [0, 1e-7, -1e-7, 3e-6, -2e-5, 1e-4, -7e-4, 1e-3, 0.01, -0.03, 0.2, -0.45];
        var xs = Enumerable.Range(0, 50).Select(i => pts[i % pts.Length]).ToArray();
        var x = Tensor.FromArray(xs).To(dtype).To(Devices.Parse(device));
        var got = x.Apply(op).ToDoubleArray();
        var xr = x.ToDoubleArray();
        double rtol = dtype == DType.Float32 ? 4e-6 : 1e-13;
        for (int i = 0; i < xs.Length; i++)
        {
            double e = Reference.Unary(op, xr[i]);
            Assert.True(Math.Abs(got[i] - e) <= rtol * Math.Abs(e), $"{op}({xr[i]:G3}) = {got[i]:R}, expected {e:R}");
        }
    }

    [Theory]
    [InlineData(UnaryOp.Sin)]
    [InlineData(UnaryOp.Cos)]
    [InlineData(UnaryOp.Sinh)]
    [InlineData(UnaryOp.Exp)]
    [InlineData(UnaryOp.Silu)]
    [InlineData(UnaryOp.GeluErf)]
    [InlineData(UnaryOp.Erf)]
    [InlineData(UnaryOp.GeluTanh)]
    public void A_Float32_result_does_not_depend_on_its_neighbours(UnaryOp op)
    {
        // Large arguments (past the trig reduction's exact range) and NaN beside ordinary ones in the same vector: a
        // kernel that sends a whole vector down a slow path for one lane must still give every lane its own-lane bits.
        var rng = new Random(7);
        float[] far = [1e6f, -3e7f, 1e30f, float.NaN, 524289f, float.PositiveInfinity, 88.5f];
        var xs = Enumerable.Range(0, 203).Select(i => i % 5 == 2 ? far[rng.Next(far.Length)] : (float)(rng.NextDouble() * 12 - 6)).ToArray();
        var all = Tensor.FromArray(xs).Apply(op).ToArray<float>();
        for (int i = 0; i < xs.Length; i++)
        {
            float alone = Tensor.FromArray(new[] { xs[i] }).Apply(op).ToArray<float>()[0];
            Assert.True(BitConverter.SingleToInt32Bits(alone) == BitConverter.SingleToInt32Bits(all[i]) || float.IsNaN(alone) && float.IsNaN(all[i]),
                $"{op}({xs[i]:R}) = {all[i]:R} among others, {alone:R} alone");
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(37)]
    [InlineData(1000)]
    public void Float32_gelu_keeps_relative_accuracy_through_the_lower_tail(int length)
    {
        // Past |x| = 3 the CPU kernel takes Phi(-|x|) = e^(-x^2/2) R(|x|) directly; a kernel that takes Phi as (1 + erf) / 2
        // loses every digit below x = -5.7. Down to -13 the result is a normal float32; below it, subnormal, to -0 near -14.2.
        var rng = new Random(length);
        var xs = Enumerable.Range(0, length).Select(_ => (float)(-14.5 + 18 * rng.NextDouble())).ToArray();
        var got = Tensor.FromArray(xs).Gelu().ToArray<float>();
        for (int i = 0; i < xs.Length; i++)
        {
            double e = Reference.Unary(UnaryOp.GeluErf, xs[i]);
            // On [-3, 3] Phi is 1/2 plus a polynomial: absolute accuracy there, as (1 + erf) / 2 gives.
            double tol = 2e-6 * Math.Abs(e) + (xs[i] >= -3 ? 1.5e-7 : Math.ScaleB(1.0, -149));
            Assert.True(Math.Abs(got[i] - e) <= tol, $"gelu({xs[i]:R}) = {got[i]:R}, expected {e:R}");
        }
    }

    [Theory]
    [InlineData(UnaryOp.GeluErf, 0)]
    [InlineData(UnaryOp.Silu, 3)]
    [InlineData(UnaryOp.Erf, 1)]
    public void Float32_outputs_past_the_caches_match_short_rows_bit_for_bit(UnaryOp op, int offset)
    {
        // Outputs of 2^22 floats and more take the non-temporal stores (an unaligned head, aligned vectors, a padded tail).
        int n = (1 << 22) + 37;
        var rng = new Random(offset);
        var xs = new float[n + offset];
        for (int i = 0; i < xs.Length; i++) xs[i] = (float)(rng.NextDouble() * 16 - 8);
        var y = new float[n + offset];
        Kiln.Kernels.Cpu.Elementwise.Unary(op, xs.AsSpan(offset, n), y.AsSpan(offset, n));
        var expected = new float[n];
        for (int s = 0; s < n; s += 1000) Kiln.Kernels.Cpu.Elementwise.Unary(op, xs.AsSpan(offset + s, Math.Min(1000, n - s)), expected.AsSpan(s, Math.Min(1000, n - s)));
        Assert.True(y.AsSpan(offset, n).SequenceEqual(expected), $"{op}: a long output differs from the same values in short rows");
        Kiln.Kernels.Cpu.Elementwise.Unary(op, xs.AsSpan(offset, n), xs.AsSpan(offset, n));
        Assert.True(xs.AsSpan(offset, n).SequenceEqual(expected), $"{op}: in place differs");
    }

    [Fact]
    public void Float32_gelu_special_values()
    {
        float[] xs = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, 0f, -0f, 1e-30f, -1e-30f, 3e38f, -3e38f, -15f, -40f, 3f, -3f, 3.0000002f, -3.0000002f, 5.9f];
        var got = Tensor.FromArray(xs).Gelu().ToArray<float>();
        // PyTorch's x * Phi(x): NaN at -inf (-inf * 0), -0 where Phi underflows, x itself once Phi rounds to 1.
        Assert.True(float.IsNaN(got[0]) && float.IsNaN(got[2]), $"gelu(NaN) = {got[0]}, gelu(-inf) = {got[2]}");
        Assert.Equal(float.PositiveInfinity, got[1]);
        Assert.Equal(3e38f, got[7]);
        foreach (int i in new[] { 3, 4, 8, 9, 10 })
            Assert.True(got[i] == 0 && float.IsNegative(got[i]) == float.IsNegative(xs[i]), $"gelu({xs[i]:R}) = {got[i]:R}");
        foreach (int i in new[] { 5, 6, 11, 12, 13, 14, 15 })
        {
            double e = Reference.Unary(UnaryOp.GeluErf, xs[i]);
            Assert.True(Math.Abs(got[i] - e) <= 1e-6 * Math.Abs(e) + (Math.Abs(xs[i]) == 3 ? 1.5e-7 : 0), $"gelu({xs[i]:R}) = {got[i]:R}, expected {e:R}");
        }
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void In_place_ops_change_only_the_target(string device)
    {
        var dev = Devices.Parse(device);
        var x = Tensor.Arange(0, 12, 1, DType.Float32, dev).Reshape(3, 4);
        var y = x.Clone();
        y.Add_(Tensor.Ones(new Shape(4), DType.Float32, dev));
        Assert.Equal(Enumerable.Range(0, 12).Select(i => (double)i), x.ToDoubleArray());
        Assert.Equal(Enumerable.Range(1, 12).Select(i => (double)i), y.ToDoubleArray());
        var col = y.Slice(1, 1, 2);    // a strided view: in-place writes go through its strides
        col.Mul_(0.0);
        Assert.Equal(new double[] { 1, 0, 3, 4, 5, 0, 7, 8, 9, 0, 11, 12 }, y.ToDoubleArray());
    }

    [Fact]
    public void Clamp_keeps_nan_and_bounds()
    {
        var x = Tensor.FromArray(new[] { -5f, 0.5f, float.NaN, 7f });
        Assert.Equal(new double[] { -1, 0.5, double.NaN, 2 }, x.Clamp(-1, 2).ToDoubleArray());
        Assert.Throws<ArgumentException>(() => x.Clamp(3, 2));
    }

    [Fact]
    public void Integer_arithmetic_and_casts()
    {
        var a = Tensor.FromArray(new long[] { 1, 2, 3, long.MaxValue - 1 });
        var b = a + Tensor.FromArray(new long[] { 1 });
        Assert.Equal(new long[] { 2, 3, 4, long.MaxValue }, b.ToArray<long>());
        Assert.Equal(new[] { 1, 2, 3 }, Tensor.FromArray(new[] { 1.9f, 2.2f, 3.0f }).To(DType.Int32).ToArray<int>());
        Assert.Throws<DivideByZeroException>(() => Tensor.FromArray(new[] { 1 }).Div(Tensor.FromArray(new[] { 0 }), DivRounding.Trunc).ToArray<int>());
        Assert.Equal([float.PositiveInfinity], Tensor.FromArray(new[] { 1 }).Div(Tensor.FromArray(new[] { 0 })).ToArray<float>());   // true division
    }

    [Fact]
    public void Half_precision_storage_converts_on_load()
    {
        var x = Tensor.FromArray(new[] { 1.0f, -2.5f, 3.140625f, 65504f });
        // bfloat16 keeps 8 significant bits: 65504 rounds to 65536; the others are exact.
        Assert.Equal(new double[] { 1, -2.5, 3.140625, 65536 }, x.To(DType.BFloat16).To(DType.Float32).ToDoubleArray());
        Assert.Equal(x.ToDoubleArray(), x.To(DType.Float16).To(DType.Float32).ToDoubleArray());
    }
}
