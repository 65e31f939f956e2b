using FsCheck.Fluent;
using Kiln.Kernels;
using Kiln.Tests.TestKit;
using Xunit;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>Gather/scatter, selection, sorting and joining against index arithmetic and <see cref="Reference"/>.</summary>
public class IndexingTests
{
    static FsCheck.Gen<(int[] Shape, int Axis, int Seed, int IndexLen)> AxisCases =>
        from s in TensorGen.NonEmptyShape(3, 7) from axis in G.Choose(0, s.Length - 1) from seed in TensorGen.Seed from n in G.Choose(0, 6)
        select (s, axis, seed, n);

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Gather_matches_reference_and_scatter_add_is_its_adjoint(string device)
    {
        var dev = Devices.Parse(device);
        Props.Check(AxisCases, c =>
        {
            var x = TensorGen.Make(c.Shape, TensorGen.ViewKind.Sliced, c.Seed, DType.Float64, dev);
            var iShape = (int[])c.Shape.Clone(); iShape[c.Axis] = c.IndexLen;
            var index = Tensor.RandInt(new Shape(iShape), 0, c.Shape[c.Axis], new Generator((ulong)c.Seed)).To(dev);
            var y = x.Gather(c.Axis, index);
            int outer = c.Shape.Take(c.Axis).Aggregate(1, (a, b) => a * b), inner = c.Shape.Skip(c.Axis + 1).Aggregate(1, (a, b) => a * b);
            Assert.Equal(Reference.Gather(x.ToDoubleArray(), outer, c.Shape[c.Axis], inner, index.ToArray<long>(), c.IndexLen), y.ToDoubleArray());
            // <gather(x), g> = <x, scatter_add(0, g)>: repeated indices must accumulate.
            var g = TensorGen.Make(iShape, TensorGen.ViewKind.Contiguous, c.Seed + 3, DType.Float64, dev);
            double lhs = (y * g).Sum().Item();
            double rhs = (x * x.ZerosLike().ScatterAdd(c.Axis, index, g)).Sum().Item();
            Assert.Equal(lhs, rhs, 1e-9);
        });
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Index_select_take_scatter_one_hot(string device)
    {
        var dev = Devices.Parse(device);
        var x = Tensor.Arange(0, 12, 1, DType.Float32, dev).Reshape(3, 4);
        var idx = Tensor.FromArray(new long[] { 2, 0, 2 }).To(dev);
        Assert.Equal(new double[] { 8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11 }, x.IndexSelect(0, idx).ToDoubleArray());
        Assert.Equal(new double[] { 2, 0, 2, 6, 4, 6, 10, 8, 10 }, x.IndexSelect(1, idx).ToDoubleArray());
        Assert.Equal(new double[] { 2, 0, 2 }, x.Take(idx).ToDoubleArray());
        var s = Tensor.Zeros(new Shape(2, 3), DType.Float32, dev).Scatter(1, Tensor.FromArray(new long[] { 2, 0 }, [2, 1]).To(dev), Tensor.FromArray(new[] { 5f, 6f }, [2, 1]).To(dev));
        Assert.Equal(new double[] { 0, 0, 5, 6, 0, 0 }, s.ToDoubleArray());
        Assert.Equal(new double[] { 0, 1, 0, 1, 0, 0 }, Tensor.FromArray(new long[] { 1, 0 }).OneHot(3).ToDoubleArray());
        Assert.Equal(new long[] { 0, 1, 1, 0 }, Tensor.FromArray(new[] { 0f, 3f, -1f, 0f }, [2, 2]).Nonzero().ToArray<long>());
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Sort_is_stable_and_topk_takes_the_extremes(string device)
    {
        var dev = Devices.Parse(device);
        Props.Check(from c in TensorGen.Case(3, 9) where c.Shape.Length > 0 from axis in G.Choose(0, c.Shape.Length - 1) from desc in G.Elements(true, false)
                    select (c, axis, desc), t =>
        {
            var (c, axis, desc) = t;
            var x = (TensorGen.Make(c.Shape, c.View, c.Seed, DType.Float32, dev) * 2.0).Apply(UnaryOp.Sign);  // many ties
            var (v, i) = x.Sort(axis, desc);
            var xs = x.ToDoubleArray(); var vs = v.ToDoubleArray(); var iv = i.ToArray<long>();
            var strides = Naive.Strides(c.Shape);
            for (int f = 0; f < xs.Length; f++)
            {
                var ix = Naive.Unravel(f, c.Shape);
                if (ix[axis] != 0) continue;
                var row = Enumerable.Range(0, c.Shape[axis]).Select(k => xs[f + k * strides[axis]]).ToArray();
                var (rv, ri) = Reference.SortRow(row, desc);
                for (int k = 0; k < row.Length; k++)
                {
                    Assert.Equal(rv[k], vs[f + k * strides[axis]]);
                    Assert.Equal(ri[k], iv[f + k * strides[axis]]);
                }
            }
            int kk = c.Shape[axis] / 2;
            var (tv, _) = x.TopK(kk, axis, largest: desc);
            Assert.Equal(v.Narrow(axis, 0, kk).ToDoubleArray(), tv.ToDoubleArray());
        });
    }

    [Fact]
    public void Sort_puts_nan_last()
    {
        var (v, i) = Tensor.FromArray(new[] { 3f, float.NaN, 1f }).Sort();
        Assert.Equal(new double[] { 1, 3, double.NaN }, v.ToDoubleArray());
        Assert.Equal(new long[] { 2, 0, 1 }, i.ToArray<long>());
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Concat_stack_split_chunk_pad_round_trip(string device)
    {
        var dev = Devices.Parse(device);
        Props.Check(from c in TensorGen.Case(3, 7) where c.Shape.Length > 0 from axis in G.Choose(0, c.Shape.Length - 1) from size in G.Choose(1, 4)
                    select (c, axis, size), t =>
        {
            var (c, axis, size) = t;
            var x = TensorGen.Make(c.Shape, c.View, c.Seed, DType.Float32, dev);
            if (c.Shape[axis] > 0)
            {
                var parts = x.Split(size, axis);
                Assert.Equal(x.ToDoubleArray(), Tensor.Concat(parts, axis).ToDoubleArray());
                Assert.Equal(x.ToDoubleArray(), Tensor.Concat(x.Chunk(size, axis), axis).ToDoubleArray());
            }
            var st = Tensor.Stack([x, x * 2.0], axis);
            Assert.Equal(x.ToDoubleArray(), st.Narrow(axis, 0, 1).Squeeze(axis).ToDoubleArray());
            Assert.Equal((x * 2.0).ToDoubleArray(), st.Narrow(axis, 1, 1).Squeeze(axis).ToDoubleArray());
            var p = x.Pad([1, 2], value: -7);
            Assert.Equal(c.Shape[^1] + 3, p.Shape[-1]);
            Assert.Equal(x.ToDoubleArray(), p.Narrow(-1, 1, c.Shape[^1]).ToDoubleArray());
            Assert.All(p.Narrow(-1, 0, 1).ToDoubleArray(), v => Assert.Equal(-7, v));
        });
    }
}
