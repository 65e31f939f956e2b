using FsCheck.Fluent;
using Kiln.Kernels;
using Kiln.Tests.TestKit;
using Xunit;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>
/// PyTorch's integer semantics beyond the last-axis cases of <c>OpConformanceTests</c>: sums, products and scans of
/// Bool/Int32/Int64 over any axes give exact Int64, integer matmul is exact (wrapping) for any batch and layout, the
/// mean of integers is refused, and squeeze with several dims. Values sit at the dtype's limits and past 2^53, where
/// a float64 round trip would lose digits; results are compared for equality with 64-bit integer references.
/// </summary>
public class IntegerDTypeTests
{
    static readonly DType[] Ints = [DType.Bool, DType.Int32, DType.Int64];

    // Small values, values at the dtype's limits, (Int64) values just past 2^53, and values anywhere in the range.
    // The values the exact-integer definitions draw: near zero, at the limits, past 2^53.
    static long[] Values(int count, DType dtype, int seed) => Kiln.Ops.RowOps.IntegerValues(count, dtype, (ulong)seed);

    // A tensor of shape laid out as kind (a permuted, sliced or broadcast view of a dense tensor of those values).
    static Tensor Make(int[] shape, TensorGen.ViewKind kind, int seed, DType dtype, Device device)
    {
        Tensor Dense(int[] s) => Tensor.FromArray(Values(Naive.Numel(s), dtype, seed), new Shape(s)).To(dtype).To(device);
        return kind switch
        {
            TensorGen.ViewKind.Permuted when shape.Length >= 2 => Dense([.. shape.Reverse()]).Permute([.. Enumerable.Range(0, shape.Length).Reverse()]),
            TensorGen.ViewKind.Sliced when shape.Length >= 1 => Dense([.. shape[..^1], shape[^1] * 2 + 1]).Slice(-1, 1, null, 2),
            TensorGen.ViewKind.Broadcast when shape.Length >= 1 => Dense([Math.Min(1, shape[0]), .. shape[1..]]).BroadcastTo(new Shape(shape)),
            _ => Dense(shape),
        };
    }

    static long[] Longs(Tensor t) => t.Contiguous().To(DType.Int64).ToArray<long>();

    // fold over the given axes of row-major x, in the reduced shape with the kept axes in order.
    static long[] Reduce(long[] x, int[] shape, int[] axes, long seed, Func<long, long, long> fold)
    {
        var kept = Enumerable.Range(0, shape.Length).Where(i => !axes.Contains(i)).ToArray();
        int[] outShape = [.. kept.Select(i => shape[i])];
        var y = Enumerable.Repeat(seed, Naive.Numel(outShape)).ToArray();
        for (int f = 0; f < x.Length; f++)
        {
            var idx = Naive.Unravel(f, shape);
            int o = Naive.Ravel([.. kept.Select(i => idx[i])], outShape);
            y[o] = fold(y[o], x[f]);
        }
        return y;
    }

    // The running fold along axis of row-major x.
    static long[] Scan(long[] x, int[] shape, int axis, Func<long, long, long> fold)
    {
        var y = new long[x.Length];
        int stride = Naive.Strides(shape)[axis];
        for (int f = 0; f < x.Length; f++)
            y[f] = Naive.Unravel(f, shape)[axis] == 0 ? x[f] : fold(y[f - stride], x[f]);
        return y;
    }

    static FsCheck.Gen<int[]> Axes(int rank) =>
        from mask in G.ArrayOf(G.Elements(true, false), rank)
        select Enumerable.Range(0, rank).Where(i => mask[i]).ToArray();

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Sums_and_products_over_any_axes_are_exact_Int64(string device)
    {
        var dev = Devices.Parse(device);
        var gen = from c in TensorGen.Case(maxRank: 3, maxDim: 6)
                  from axes in Axes(c.Shape.Length)
                  from keepDim in G.Elements(true, false)
                  from dtype in G.Elements(Ints)
                  select (c.Shape, c.View, c.Seed, axes, keepDim, dtype);
        Props.Check(dev, gen, t =>
        {
            var x = Make(t.Shape, t.View, t.Seed, t.dtype, dev);
            var xd = Longs(x);
            int[] all = [.. Enumerable.Range(0, t.Shape.Length)];
            var reduced = t.axes.Length == 0 ? all : t.axes;
            var sum = x.Sum(t.axes, t.keepDim);
            var prod = x.Prod(t.axes, t.keepDim);
            Assert.Equal(DType.Int64, sum.DType);
            Assert.Equal(DType.Int64, prod.DType);
            Assert.Equal(x.Shape.ToArray().Select((d, i) => reduced.Contains(i) ? 1 : d).Where((d, i) => t.keepDim || !reduced.Contains(i)), sum.Shape.ToArray());
            Assert.Equal(Reduce(xd, t.Shape, reduced, 0, (a, b) => unchecked(a + b)), Longs(sum));
            Assert.Equal(Reduce(xd, t.Shape, reduced, 1, (a, b) => unchecked(a * b)), Longs(prod));
        }, maxTest: 30);
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Cumsum_and_cumprod_along_any_axis_are_exact_Int64(string device)
    {
        var dev = Devices.Parse(device);
        var gen = from shape in TensorGen.Shape(maxRank: 3, maxDim: 6).Where(s => s.Length > 0)
                  from view in TensorGen.View
                  from seed in TensorGen.Seed
                  from axis in G.Choose(-shape.Length, shape.Length - 1)
                  from dtype in G.Elements(Ints)
                  select (shape, view, seed, axis, dtype);
        Props.Check(dev, gen, t =>
        {
            var x = Make(t.shape, t.view, t.seed, t.dtype, dev);
            var xd = Longs(x);
            int a = t.axis < 0 ? t.axis + t.shape.Length : t.axis;
            var cumsum = x.Cumsum(t.axis);
            var cumprod = x.Cumprod(t.axis);
            Assert.Equal(DType.Int64, cumsum.DType);
            Assert.Equal(DType.Int64, cumprod.DType);
            Assert.Equal(Scan(xd, t.shape, a, (p, q) => unchecked(p + q)), Longs(cumsum));
            Assert.Equal(Scan(xd, t.shape, a, (p, q) => unchecked(p * q)), Longs(cumprod));
        }, maxTest: 30);
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Integer_matmul_is_exact_for_any_batch_and_layout(string device)
    {
        var dev = Devices.Parse(device);
        var gen = from m in G.Choose(0, 9)
                  from k in G.Choose(0, 9)
                  from n in G.Choose(0, 9)
                  from batchA in G.Elements(0, 1, 3)
                  from batchB in G.Elements(0, 1, 3)
                  from transA in G.Elements(true, false)
                  from transB in G.Elements(true, false)
                  from seed in TensorGen.Seed
                  from dtype in G.Elements(DType.Int32, DType.Int64)
                  select (m, k, n, batchA, batchB, transA, transB, seed, dtype);
        Props.Check(dev, gen, t =>
        {
            // Batch 0 is no batch dim; batch 1 broadcasts against the other operand's 3.
            Tensor Operand(int batch, int r, int c, bool trans, int seed)
            {
                int[] lead = batch == 0 ? [] : [batch];
                var dense = Tensor.FromArray(Values(Math.Max(batch, 1) * r * c, t.dtype, seed), new Shape([.. lead, trans ? c : r, trans ? r : c])).To(t.dtype).To(dev);
                return trans ? dense.Transpose(-2, -1) : dense;
            }
            var a = Operand(t.batchA, t.m, t.k, t.transA, t.seed);
            var b = Operand(t.batchB, t.k, t.n, t.transB, t.seed + 1);
            var y = a.MatMul(b);
            int batch = Math.Max(t.batchA, t.batchB);
            Assert.Equal(t.dtype, y.DType);
            Assert.Equal(batch == 0 ? [t.m, t.n] : new[] { batch, t.m, t.n }, y.Shape.ToArray());
            long[] ad = Longs(a), bd = Longs(b);
            int aStep = t.batchA > 1 ? t.m * t.k : 0, bStep = t.batchB > 1 ? t.k * t.n : 0;
            var expected = Enumerable.Range(0, Math.Max(batch, 1))
                .SelectMany(i => Reference.GemmInt64(t.m, t.n, t.k, ad.AsSpan(i * aStep, t.m * t.k), bd.AsSpan(i * bStep, t.k * t.n)))
                .Select(v => t.dtype == DType.Int32 ? (int)v : v);
            Assert.Equal(expected, Longs(y));
        }, maxTest: 30);
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Integer_matmul_wraps_and_handles_vectors(string device)
    {
        var dev = Devices.Parse(device);
        // 2 (2^31 - 1) + 1 wraps to -1 in Int32, as PyTorch's int32 matmul.
        var a = Tensor.FromArray(new[] { int.MaxValue, 1 }).To(dev);
        var b = Tensor.FromArray(new[] { 2, 1 }).To(dev);
        var dot = a.MatMul(b);
        Assert.Equal(DType.Int32, dot.DType);
        Assert.Empty(dot.Shape.ToArray());
        Assert.Equal(-1, dot.Item<int>());
        // Past 2^53 every digit counts: (2^53 + 1) * 3 + 1 * (-2).
        var la = Tensor.FromArray(new long[,] { { (1L << 53) + 1, 1 } }).To(dev);
        var lb = Tensor.FromArray(new long[] { 3, -2 }).To(dev);
        Assert.Equal(new[] { 3 * ((1L << 53) + 1) - 2 }, la.MatMul(lb).ToArray<long>());
    }

    [Fact]
    public void Einsum_of_Int32_stays_Int32()
    {
        var a = Tensor.FromArray(new[] { int.MaxValue, 1 });
        var y = Tensor.Einsum("i,i->", a, Tensor.FromArray(new[] { 2, 1 }));
        Assert.Equal(DType.Int32, y.DType);
        Assert.Equal(-1, y.Item<int>());
        var rows = Tensor.Einsum("ij->i", Tensor.FromArray(new[,] { { int.MaxValue, 2 }, { 3, 4 } }));
        Assert.Equal(DType.Int32, rows.DType);
        Assert.Equal(new[] { int.MinValue + 1, 7 }, rows.ToArray<int>());
    }

    [Fact]
    public void Mean_of_integers_and_matmul_of_bools_are_refused_naming_the_dtype()
    {
        foreach (var dtype in Ints)
        {
            var e = Assert.Throws<NotSupportedException>(() => Tensor.Zeros([3], dtype).Mean());
            Assert.Contains("mean", e.Message);
            Assert.Contains(dtype.ToString(), e.Message);
        }
        var m = Assert.Throws<NotSupportedException>(() => Tensor.Zeros([2, 2], DType.Bool).MatMul(Tensor.Zeros([2, 2], DType.Bool)));
        Assert.Contains("matmul", m.Message);
        Assert.Contains("Bool", m.Message);
    }

    [Fact]
    public void Extremes_of_Int64_past_2_pow_53_are_exact()
    {
        long big = (1L << 53) + 1;
        var x = Tensor.FromArray(new long[] { big - 1, big, long.MinValue, big - 2 });
        Assert.Equal(big, x.Amax().Item<long>());
        Assert.Equal(long.MinValue, x.Amin().Item<long>());
        Assert.Equal(1L, x.ArgMax().Item<long>());
    }

    [Fact]
    public void Squeeze_drops_only_listed_size_one_dims()
    {
        var x = Tensor.Zeros(1, 3, 1, 1);
        Assert.Equal(new[] { 3, 1 }, x.Squeeze([0, -1]).Shape.ToArray());
        Assert.Equal(new[] { 1, 3, 1 }, x.Squeeze([1, 2]).Shape.ToArray());
        Assert.Equal(new[] { 1, 3, 1, 1 }, x.Squeeze([]).Shape.ToArray());
        // As PyTorch: a dim of another size is kept.
        Assert.Same(x, x.Squeeze(1));
        Assert.Equal(new[] { 3 }, x.Squeeze().Shape.ToArray());
        var rep = Assert.Throws<ArgumentException>(() => x.Squeeze([0, -4]));
        Assert.Contains("squeeze", rep.Message);
        Assert.Equal("axes", rep.ParamName);
        var range = Assert.Throws<ArgumentOutOfRangeException>(() => x.Squeeze([4]));
        Assert.Equal("axes", range.ParamName);
    }

    [Fact]
    public void OneHot_is_Float32_by_default_and_Int64_on_request()
    {
        var labels = Tensor.FromArray(new long[] { 2, 0 });
        Assert.Equal(DType.Float32, labels.OneHot(3).DType);
        var y = labels.OneHot(3, DType.Int64);
        Assert.Equal(DType.Int64, y.DType);
        Assert.Equal(new long[] { 0, 0, 1, 1, 0, 0 }, y.ToArray<long>());
    }
}
