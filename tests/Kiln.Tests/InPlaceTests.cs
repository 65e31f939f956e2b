using FsCheck.Fluent;
using Kiln.Kernels;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// In-place binary ops (add_, sub_, mul_, div_) against the float64 reference and against the out-of-place op: every
/// operand form (same shape, a row vector, a column, a 0-d tensor, a .NET scalar), strided targets, special values, and
/// operands that share the target's storage.
/// </summary>
public class InPlaceTests
{
    public enum Operand { Same, Row, Column, ZeroD, Scalar }

    static readonly BinaryOp[] Ops = [BinaryOp.Add, BinaryOp.Sub, BinaryOp.Mul, BinaryOp.Div];

    // Ordinary values with the specials mixed in: NaN, infinities, signed zeros, huge (sums and products overflow) and tiny.
    static readonly double[] Specials = [double.NaN, double.PositiveInfinity, double.NegativeInfinity, 0.0, -0.0, 3e38, -2.5e38, 1e-30, -1e-39, 1e300];

    static double[] Values(Random r, int n) =>
        Enumerable.Range(0, n).Select(_ => r.Next(6) == 0 ? Specials[r.Next(Specials.Length)] : r.NextDouble() * 8 - 4).ToArray();

    // A tensor of `shape` laid out contiguous, transposed (a permuted view) or as every other element of a wider row.
    static Tensor Make(int[] shape, int layout, Random r, DType dtype, Device dev)
    {
        int n = shape.Aggregate(1, (p, d) => p * d);
        switch (layout)
        {
            case 1 when shape.Length >= 2:
                var rev = shape.Reverse().ToArray();
                return Tensor.FromArray(Values(r, n)).Reshape(rev).To(dtype).To(dev).Permute(Enumerable.Range(0, shape.Length).Reverse().ToArray());
            case 2 when shape.Length >= 1:
                var wide = (int[])shape.Clone(); wide[^1] = 2 * shape[^1] + 1;
                return Tensor.FromArray(Values(r, wide.Aggregate(1, (p, d) => p * d))).Reshape(wide).To(dtype).To(dev).Slice(-1, 1, null, 2);
            default:
                return Tensor.FromArray(Values(r, n)).Reshape(shape).To(dtype).To(dev);
        }
    }

    static Tensor InPlace(Tensor x, BinaryOp op, Tensor b) => op switch
    {
        BinaryOp.Add => x.Add_(b), BinaryOp.Sub => x.Sub_(b), BinaryOp.Mul => x.Mul_(b), _ => x.Div_(b),
    };

    static Tensor InPlace(Tensor x, BinaryOp op, double s) => op switch
    {
        BinaryOp.Add => x.Add_(s), BinaryOp.Sub => x.Sub_(s), BinaryOp.Mul => x.Mul_(s), _ => x.Div_(s),
    };

    static double Rounded(double v, DType dtype) => dtype == DType.Float32 ? (float)v : v;

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void In_place_binary_ops_match_the_reference_and_the_out_of_place_op(string device)
    {
        var dev = Devices.Parse(device);
        var gen =
            from shape in TensorGen.NonEmptyShape(3, 9)
            from op in Gen.Elements(Ops)
            from operand in Gen.Elements(Operand.Same, Operand.Row, Operand.Column, Operand.ZeroD, Operand.Scalar)
            from layout in Gen.Choose(0, 2)
            from operandLayout in Gen.Choose(0, 2)
            from dtype in Gen.Elements(DType.Float32, DType.Float64)
            from seed in TensorGen.Seed
            select (shape, op, operand, layout, operandLayout, dtype, seed);
        Props.Check(dev, gen, c =>
        {
            var r = new Random(c.seed);
            var x = Make(c.shape, c.layout, r, c.dtype, dev);
            var before = x.Clone();
            double s = Values(r, 1)[0];
            var b = c.operand switch
            {
                Operand.Same => Make(c.shape, c.operandLayout, r, c.dtype, dev),
                Operand.Row => Make([c.shape[^1]], c.operandLayout, r, c.dtype, dev),
                Operand.Column => Make([.. c.shape[..^1], 1], c.operandLayout, r, c.dtype, dev),
                _ => Tensor.Scalar(s, c.dtype, dev),
            };
            var expected = c.operand == Operand.Scalar ? Tensor.Binary(c.op, before, Tensor.Scalar(s, c.dtype, dev)) : Tensor.Binary(c.op, before, b);
            var got = c.operand == Operand.Scalar ? InPlace(x, c.op, s) : InPlace(x, c.op, b);
            Assert.Same(x, got);
            string what = $"{c.op}_ {c.dtype} {string.Join("x", c.shape)} {c.operand} layouts {c.layout}/{c.operandLayout}";
            // Bit for bit the out-of-place op on the same device, which the conformance tests hold to its budget.
            Assert.Equal(expected.ToDoubleArray(), x.ToDoubleArray());
            var xs = before.ToDoubleArray();
            var bs = (c.operand == Operand.Scalar ? Tensor.Scalar(s, c.dtype, dev) : b).BroadcastTo(new Shape(c.shape)).ToDoubleArray();
            var reference = xs.Select((v, i) => Rounded(Reference.Binary(c.op, v, bs[i]), c.dtype)).ToArray();
            var (rtol, atol) = Close.For(c.dtype);
            Close.Check(reference, x.ToDoubleArray(), rtol, atol, what);
        });
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void An_operand_that_overlaps_the_target_is_read_as_it_was_before_the_op(string device)
    {
        var dev = Devices.Parse(device);
        // Long enough on the CPU that the target is split over the cores.
        int n = dev == Device.Cpu ? (1 << 18) + 37 : 257;
        var orig = Enumerable.Range(0, n).Select(i => (double)(i % 1000) - 300.5).ToArray();
        Tensor Fresh() => Tensor.FromArray(orig).To(DType.Float32).To(dev);

        // Shifted by one: x[1:] += x[:-1] sees the old x[:-1], not the values just written.
        var x = Fresh();
        x.Slice(0, 1, null).Add_(x.Slice(0, 0, n - 1));
        Assert.Equal(orig.Select((v, i) => i == 0 ? v : (double)(float)(orig[i] + orig[i - 1])), x.ToDoubleArray());

        x = Fresh();
        x.Slice(0, 0, n - 1).Sub_(x.Slice(0, 1, null));
        Assert.Equal(orig.Select((v, i) => i == n - 1 ? v : (double)(float)(orig[i] - orig[i + 1])), x.ToDoubleArray());

        x = Fresh();
        x.Slice(0, 1, null).Copy_(x.Slice(0, 0, n - 1));
        Assert.Equal(orig.Select((v, i) => orig[Math.Max(i - 1, 0)]), x.ToDoubleArray());

        // A row of the target broadcast over it, and the target's own transpose.
        int rows = 7, cols = 9;
        var m = Tensor.FromArray(orig[..(rows * cols)]).Reshape(rows, cols).To(DType.Float32).To(dev);
        m.Mul_(m.Narrow(0, 2, 1));
        Assert.Equal(Enumerable.Range(0, rows * cols).Select(i => (double)(float)(orig[i] * orig[2 * cols + i % cols])), m.ToDoubleArray());
        var sq = Tensor.FromArray(orig[..36]).Reshape(6, 6).To(DType.Float32).To(dev);
        sq.Sub_(sq.Transpose(0, 1));
        Assert.Equal(Enumerable.Range(0, 36).Select(i => orig[i] - orig[i % 6 * 6 + i / 6]), sq.ToDoubleArray());

        // The same view is no hazard: each element is read before it is written.
        x = Fresh();
        x.Add_(x);
        Assert.Equal(orig.Select(v => 2 * v), x.ToDoubleArray());
    }

    [Fact]
    public void Integer_division_by_a_broadcast_zero_throws()
    {
        var a = Tensor.FromArray(new[] { 1, 2, 3, 4 }).Reshape(2, 2);
        Assert.Throws<DivideByZeroException>(() => a.Div(Tensor.FromArray(new[] { 0 }), DivRounding.Trunc).ToArray<int>());
        Assert.Throws<DivideByZeroException>(() => Tensor.FromArray(new[] { 5 }).Div(a - a, DivRounding.Trunc).ToArray<int>());
    }
}
