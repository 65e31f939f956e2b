using FsCheck.Fluent;
using Kiln.Tests.TestKit;
using Xunit;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>
/// searchsorted, bincount, unique and unique_consecutive on every device: against counting oracles (independent of the
/// binary search) on NaN-free data, PyTorch's documented results, and their errors. The reference-checked cases with
/// NaN and infinities run in <c>OpConformanceTests</c>.
/// </summary>
public class SetTests
{
    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Searchsorted_counts_the_elements_below(string device)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, from c in TensorGen.Case(maxRank: 3) where c.Shape.Length > 0
                         from m in G.Choose(0, 12)
                         from batched in G.Elements(true, false)
                         from dtype in G.Elements(DType.Float32, DType.Int64) select (c, m, batched, dtype), t =>
        {
            var (c, m, batched, dtype) = t;
            // Integers in [-4, 4]: ties between the sequence and the values, and among the values.
            var v = (TensorGen.Make(c.Shape, c.View, c.Seed, DType.Float64, dev, -4.5, 4.5)).Apply(Kiln.Kernels.UnaryOp.Floor).To(dtype);
            int[] seqShape = batched ? [.. c.Shape[..^1], m] : [m];
            var raw = TensorGen.Make(seqShape, TensorGen.ViewKind.Contiguous, c.Seed + 1, DType.Float64, dev, -4.5, 4.5).Apply(Kiln.Kernels.UnaryOp.Floor).To(dtype);
            var seq = raw.Sort(-1).Values;
            double[] vd = v.ToDoubleArray(), sd = seq.ToDoubleArray();
            int valLen = c.Shape[^1];
            double[] Row(int k) => batched ? sd[(k / valLen * m)..(k / valLen * m + m)] : sd;
            var left = vd.Select((x, k) => (long)Row(k).Count(e => e < x)).ToArray();
            var right = vd.Select((x, k) => (long)Row(k).Count(e => e <= x)).ToArray();
            Assert.Equal(left, Tensor.SearchSorted(seq, v).ToArray<long>());
            Assert.Equal(right, Tensor.SearchSorted(seq, v, right: true).ToArray<long>());
            Assert.Equal(right.Select(x => (int)x).ToArray(), Tensor.SearchSorted(seq, v, right: true, outInt32: true).ToArray<int>());
            // The sorter gives the same answer for the unsorted sequence.
            Assert.Equal(left, Tensor.SearchSorted(raw, v, sorter: raw.ArgSort(-1)).ToArray<long>());
        });
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Searchsorted_places_nan_and_infinities_as_pytorch(string device)
    {
        var dev = Devices.Parse(device);
        double nan = double.NaN, inf = double.PositiveInfinity;
        var seq = Tensor.FromArray(new double[] { -inf, 1, 2, 2, inf }).To(dev);
        var v = Tensor.FromArray(new double[] { nan, -inf, 2, inf, 5 }).To(dev);
        Assert.Equal(new long[] { 5, 0, 2, 4, 4 }, Tensor.SearchSorted(seq, v).ToArray<long>());
        Assert.Equal(new long[] { 5, 1, 4, 5, 4 }, Tensor.SearchSorted(seq, v, right: true).ToArray<long>());
        // NaNs that a sort put last compare as below every value in PyTorch's search, so a value beyond the finite
        // elements lands past them.
        var withNan = Tensor.FromArray(new double[] { 1, 2, nan }).To(dev);
        Assert.Equal(new long[] { 1, 3, 3 }, Tensor.SearchSorted(withNan, Tensor.FromArray(new double[] { 1.5, 3, nan }).To(dev)).ToArray<long>());
        // A 1-D sequence serves values of any shape; the result has the values' shape.
        var grid = Tensor.SearchSorted(Tensor.FromArray(new double[] { 1, 3, 5 }).To(dev), Tensor.FromArray(new double[,] { { 0, 3 }, { 4, 9 } }).To(dev));
        Assert.Equal(new Shape(2, 2), grid.Shape);
        Assert.Equal(new long[] { 0, 1, 2, 3 }, grid.ToArray<long>());
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Bincount_unique_and_unique_consecutive(string device)
    {
        var dev = Devices.Parse(device);
        var x = Tensor.FromArray(new long[] { 4, 1, 1, 0, 4, 4 }).To(dev);
        Assert.Equal(new long[] { 1, 2, 0, 0, 3 }, x.Bincount().ToArray<long>());
        Assert.Equal(new long[] { 1, 2, 0, 0, 3, 0, 0 }, x.Bincount(minlength: 7).ToArray<long>());
        var w = Tensor.FromArray(new float[] { 0.5f, 1, 2, 3, 0.25f, 0.25f }).To(dev);
        var bw = x.To(DType.Int32).Bincount(w);
        Assert.Equal(DType.Float32, bw.DType);
        Assert.Equal(new float[] { 3, 3, 0, 0, 1 }, bw.ToArray<float>());
        Assert.Equal(DType.Float64, x.Bincount(w.To(DType.Int32)).DType);
        Assert.Equal(new long[] { 0, 0, 0 }, Tensor.FromArray(Array.Empty<long>()).To(dev).Bincount(minlength: 3).ToArray<long>());

        double nan = double.NaN;
        var f = Tensor.FromArray(new double[,] { { 3, 1, nan }, { 1, 3, nan } }).To(dev);
        var (u, inv, cnt) = f.Unique(returnInverse: true, returnCounts: true);
        Assert.Equal(new double[] { 1, 3, nan, nan }, u.ToDoubleArray());
        Assert.Equal(new long[] { 1, 0, 2, 0, 1, 3 }, inv!.ToArray<long>());
        Assert.Equal(new Shape(2, 3), inv.Shape);
        Assert.Equal(new long[] { 2, 2, 1, 1 }, cnt!.ToArray<long>());
        var (cu, ci, cc) = Tensor.FromArray(new long[] { 2, 2, 1, 1, 2, 3, 3 }).To(dev).UniqueConsecutive(returnInverse: true, returnCounts: true);
        Assert.Equal(new long[] { 2, 1, 2, 3 }, cu.ToArray<long>());
        Assert.Equal(new long[] { 0, 0, 1, 1, 2, 3, 3 }, ci!.ToArray<long>());
        Assert.Equal(new long[] { 2, 2, 1, 2 }, cc!.ToArray<long>());
        var (nv, ni, nc) = Tensor.FromArray(new double[] { nan, nan }).To(dev).UniqueConsecutive();
        Assert.Equal(2, nv.Numel);
        Assert.Null(ni);
        Assert.Null(nc);

        // Slices along a dim: rows [1, 2], [0, 5], [1, 2] -> [0, 5], [1, 2] in lexicographic order.
        var m = Tensor.FromArray(new long[,] { { 1, 2 }, { 0, 5 }, { 1, 2 } }).To(dev);
        var (du, di, dc) = m.Unique(returnInverse: true, returnCounts: true, dim: 0);
        Assert.Equal(new long[] { 0, 5, 1, 2 }, du.ToArray<long>());
        Assert.Equal(new long[] { 1, 0, 1 }, di!.ToArray<long>());
        Assert.Equal(new long[] { 1, 2 }, dc!.ToArray<long>());
        var (ku, _, kc) = m.UniqueConsecutive(returnCounts: true, dim: 1);
        Assert.Equal(new Shape(3, 2), ku.Shape);
        Assert.Equal(new long[] { 1, 1 }, kc!.ToArray<long>());
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Unique_inverse_rebuilds_the_input(string device)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, from c in TensorGen.Case(maxRank: 3) from dtype in G.Elements(DType.Float32, DType.Int32) select (c, dtype), t =>
        {
            var (c, dtype) = t;
            var x = TensorGen.Make(c.Shape, c.View, c.Seed, DType.Float64, dev, -3, 3).Apply(Kiln.Kernels.UnaryOp.Floor).To(dtype);
            var (u, inv, cnt) = x.Unique(returnInverse: true, returnCounts: true);
            var ud = u.ToDoubleArray();
            Assert.True(ud.Zip(ud.Skip(1)).All(p => p.First < p.Second), "ascending and distinct");
            Assert.Equal(x.ToDoubleArray(), x.Numel == 0 ? [] : u.Gather(0, inv!.Reshape(-1)).ToDoubleArray());
            Assert.Equal(x.Numel, cnt!.ToArray<long>().Sum());
        });
    }

    static void Says<T>(Action act, params string[] fragments) where T : Exception
    {
        var e = Assert.ThrowsAny<T>(act);
        foreach (var f in fragments) Assert.Contains(f, e.Message);
    }

    [Fact]
    public void Bad_arguments_name_the_argument_and_values()
    {
        var seq = Tensor.FromArray(new double[] { 1, 2, 3 });
        Says<ArgumentException>(() => Tensor.SearchSorted(seq, Tensor.FromArray(new float[] { 1 })), "searchsorted", "values", "Float32", "Float64");
        Says<ShapeMismatchException>(() => Tensor.SearchSorted(Tensor.Zeros([2, 3], DType.Float64), Tensor.Zeros([3, 1], DType.Float64)), "searchsorted", "[2, 3]", "[3, 1]");
        Says<ShapeMismatchException>(() => Tensor.SearchSorted(Tensor.Scalar(1, DType.Float64), seq), "searchsorted", "sortedSequence", "scalar");
        Says<ArgumentException>(() => Tensor.SearchSorted(seq, seq, sorter: Tensor.Zeros([3], DType.Int32)), "sorter", "Int32");
        Says<ArgumentOutOfRangeException>(() => Tensor.SearchSorted(seq, seq, sorter: Tensor.FromArray(new long[] { 0, 3, 1 })), "sorter", "3", "[0, 3)");
        Says<ArgumentException>(() => Tensor.FromArray(new long[] { 2, -1, 0, -7 }).Bincount(), "bincount", "2 negative", "-1 at [1]", "-7 at [3]");
        Says<ShapeMismatchException>(() => Tensor.Zeros([2, 2], DType.Int64).Bincount(), "bincount", "1-D", "[2, 2]");
        Says<NotSupportedException>(() => Tensor.Zeros([2]).Bincount(), "bincount", "Float32");
        Says<ArgumentOutOfRangeException>(() => Tensor.Zeros([2], DType.Int64).Bincount(minlength: -2), "minlength", "-2");
        Says<ShapeMismatchException>(() => Tensor.Zeros([2], DType.Int64).Bincount(Tensor.Zeros(3)), "weights", "[3]");
        Says<ArgumentOutOfRangeException>(() => Tensor.Zeros(2, 3).Unique(dim: 2), "unique", "axis 2");
        Says<ArgumentOutOfRangeException>(() => Tensor.Zeros(2, 3).UniqueConsecutive(dim: -3), "unique_consecutive", "axis -3");
    }
}
