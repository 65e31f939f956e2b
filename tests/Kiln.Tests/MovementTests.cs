using FsCheck.Fluent;
using Kiln.Tests.TestKit;
using Xunit;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>Views (reshape, permute, slice, broadcast, squeeze) against index arithmetic; views share memory, copies do not.</summary>
public class MovementTests
{
    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Permute_matches_index_arithmetic(string device)
    {
        var dev = Devices.Parse(device);
        Props.Check(from c in TensorGen.Case() from keys in G.ArrayOf(G.Choose(0, 1000), c.Shape.Length) select (c, keys), t =>
        {
            var (c, keys) = t;
            var perm = Enumerable.Range(0, c.Shape.Length).OrderBy(i => keys[i]).ThenBy(i => i).ToArray();
            var x = TensorGen.Make(c.Shape, c.View, c.Seed, DType.Float32, dev);
            var xs = x.ToDoubleArray();
            var y = x.Permute(perm);
            var yShape = perm.Select(p => c.Shape[p]).ToArray();
            Assert.Equal(new Shape(yShape), y.Shape);
            var ys = y.ToDoubleArray();
            for (int f = 0; f < ys.Length; f++)
            {
                var iy = Naive.Unravel(f, yShape);
                var ix = new int[perm.Length];
                for (int i = 0; i < perm.Length; i++) ix[perm[i]] = iy[i];
                Assert.Equal(xs[Naive.Ravel(ix, c.Shape)], ys[f]);
            }
            // Reshaping a permuted view keeps row-major element order (copying only when it must).
            Assert.Equal(ys, y.Reshape(-1).ToDoubleArray());
            Assert.Equal(ys, y.Contiguous().ToDoubleArray());
        });
    }

    // Copy_ into a window of a larger buffer (a KV cache's slot): every element lands at its index, converted when the
    // dtypes differ, and the buffer around the window keeps its zeros.
    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Copy_into_a_strided_window_matches_index_arithmetic(string device)
    {
        var dev = Devices.Parse(device);
        var dtypes = new[] { (DType.Float32, DType.Float32), (DType.Int64, DType.Int64), (DType.BFloat16, DType.BFloat16), (DType.Float32, DType.Float64) };
        Props.Check(dev, from c in TensorGen.Case(maxRank: 5, maxDim: 6) from axis in G.Choose(0, 4) from pad in G.Choose(1, 3) from at in G.Choose(0, 4)
                         from types in G.Elements(dtypes) select (c, axis, pad, at, types), t =>
        {
            var (c, axis, pad, at, (from, to)) = t;
            int rank = c.Shape.Length, ax = rank == 0 ? -1 : axis % rank, start = Math.Min(at, pad);
            var x = TensorGen.Make(c.Shape, c.View, c.Seed, from, dev, -100, 100);
            var xs = x.ToDoubleArray();
            var outer = c.Shape.Select((d, i) => i == ax ? d + pad : d).ToArray();
            var buffer = Tensor.Zeros(outer, to, dev);
            var window = ax < 0 ? buffer : buffer.Narrow(ax, start, c.Shape[ax]);
            window.Copy_(x);
            var bs = buffer.ToDoubleArray();
            for (int f = 0; f < bs.Length; f++)
            {
                var i = Naive.Unravel(f, outer);
                if (ax >= 0 && (i[ax] < start || i[ax] >= start + c.Shape[ax])) { Assert.Equal(0.0, bs[f]); continue; }
                if (ax >= 0) i[ax] -= start;
                Assert.Equal(xs[Naive.Ravel(i, c.Shape)], bs[f]);
            }
        });
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Slice_with_steps_matches_python_rules(string device)
    {
        var dev = Devices.Parse(device);
        Props.Check(from c in TensorGen.Case() where c.Shape.Length > 0
                    from axis in G.Choose(0, c.Shape.Length - 1)
                    from start in G.Choose(-12, 12) from end in G.Choose(-12, 12) from step in G.Choose(1, 4)
                    select (c, axis, start, end, step), t =>
        {
            var (c, axis, start, end, step) = t;
            var x = TensorGen.Make(c.Shape, c.View, c.Seed, DType.Float64, dev);
            int n = c.Shape[axis];
            int s = start < 0 ? Math.Max(start + n, 0) : Math.Min(start, n), e = end < 0 ? Math.Max(end + n, 0) : Math.Min(end, n);
            var picks = new List<int>();
            for (int i = s; i < e; i += step) picks.Add(i);
            var y = x.Slice(axis, start, end, step);
            var yShape = (int[])c.Shape.Clone(); yShape[axis] = picks.Count;
            Assert.Equal(new Shape(yShape), y.Shape);
            var xs = x.ToDoubleArray(); var ys = y.ToDoubleArray();
            for (int f = 0; f < ys.Length; f++)
            {
                var ix = Naive.Unravel(f, yShape); ix[axis] = picks[ix[axis]];
                Assert.Equal(xs[Naive.Ravel(ix, c.Shape)], ys[f]);
            }
        });
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Broadcast_and_sum_to_are_adjoint(string device)
    {
        var dev = Devices.Parse(device);
        Props.Check(from c in TensorGen.Case(3) from lead in G.Choose(0, 2) from mask in G.ArrayOf(G.Elements(true, false), c.Shape.Length)
                    select (c, lead, mask), t =>
        {
            var (c, lead, mask) = t;
            var small = c.Shape.Select((d, i) => mask[i] ? 1 : d).ToArray();
            var big = Enumerable.Repeat(3, lead).Concat(c.Shape).ToArray();
            var x = TensorGen.Make(small, TensorGen.ViewKind.Contiguous, c.Seed, DType.Float64, dev);
            var y = TensorGen.Make(big, TensorGen.ViewKind.Contiguous, c.Seed + 1, DType.Float64, dev);
            // <broadcast(x), y> = <x, sum_to(y)>
            double lhs = (x.BroadcastTo(new Shape(big)) * y).Sum().Item();
            double rhs = (x * y.SumTo(new Shape(small))).Sum().Item();
            Assert.Equal(lhs, rhs, 1e-9);
        });
    }

    [Fact]
    public void Views_share_memory_and_reshape_copies_only_when_needed()
    {
        var x = Tensor.Arange(0, 24, 1).Reshape(2, 3, 4);
        var v = x.Reshape(6, 4);
        Assert.Same(x.Storage, v.Storage);
        var t = x.Transpose(1, 2);                  // [2, 4, 3], not contiguous
        Assert.False(t.IsContiguous);
        var flat = t.Reshape(2, 12);                // needs a copy
        Assert.NotSame(x.Storage, flat.Storage);
        var merged = t.Reshape(2, 4, 3).Permute(0, 2, 1).Reshape(2, 12);   // back to contiguous order: a view
        Assert.Same(x.Storage, merged.Storage);
        Assert.Throws<InvalidOperationException>(() => t.View(2, 12));
        Assert.Equal(new Shape(2, 1, 3, 4), x.Unsqueeze(1).Shape);
        Assert.Equal(new Shape(2, 3, 4), x.Unsqueeze(-1).Squeeze().Shape);
        Assert.Equal(new Shape(6, 4), x.Flatten(0, 1).Shape);
        Assert.Equal(new Shape(2, 3, 4), x.Expand(2, 3, 4).Shape);
        Assert.Equal(new double[] { 4, 5, 6, 7, 16, 17, 18, 19 }, x.Narrow(1, 1, 1).Reshape(-1).ToDoubleArray());
        Assert.Equal(new double[] { 23 }, new[] { x[1, 2, 3] });
    }

    [Fact]
    public void Creation_ops()
    {
        Assert.Equal(new double[] { 0, 0.5, 1, 1.5 }, Tensor.Arange(0, 2, 0.5).ToDoubleArray());
        Assert.Equal(new double[] { 5, 3, 1 }, Tensor.Arange(5, 0, -2).ToDoubleArray());
        Assert.Empty(Tensor.Arange(3, 3, 1).ToDoubleArray());
        Assert.Equal(new double[] { 0, 0.25, 0.5, 0.75, 1 }, Tensor.Linspace(0, 1, 5).ToDoubleArray());
        Assert.Equal(new double[] { 1, 0, 0, 0, 1, 0 }, Tensor.Eye(2, 3).ToDoubleArray());
        Assert.Equal(new double[] { 7, 7 }, Tensor.Full([2], 7).ToDoubleArray());
        Assert.Equal(DType.Int64, Tensor.Arange(4).DType);
        Assert.Equal(new long[] { 0, 1, 2, 3 }, Tensor.Arange(4).ToArray<long>());
        Assert.Equal(3.5, Tensor.Scalar(3.5, DType.Float64).Item());
    }
}
