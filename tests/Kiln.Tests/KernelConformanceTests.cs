using Kiln.Kernels;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>
/// The reduction, fused-row, GEMM, indexing, sort and random kernels against the float64 reference on every device in
/// <see cref="Devices.All"/> (the CPU SIMD kernels, ILGPU's CPU accelerator running the GPU kernels, CUDA when present).
/// </summary>
public class KernelConformanceTests
{
    public static IEnumerable<object[]> FloatCases =>
        from d in Devices.All from dt in new[] { DType.Float32, DType.Float64 } select new object[] { d.ToString(), dt };

    public static IEnumerable<object[]> NumericCases =>
        from d in Devices.All from dt in new[] { DType.Float32, DType.Float64, DType.Int32, DType.Int64 } select new object[] { d.ToString(), dt };

    /// <summary>Applies <paramref name="row"/> to every run along <paramref name="axis"/> of row-major data; the result replaces the axis.</summary>
    static double[] Along(double[] x, int[] shape, int axis, Func<double[], double[]> row, out int outLen)
    {
        int outer = 1, inner = 1, len = shape[axis];
        for (int i = 0; i < axis; i++) outer *= shape[i];
        for (int i = axis + 1; i < shape.Length; i++) inner *= shape[i];
        outLen = row(new double[len]).Length;
        var y = new double[outer * outLen * inner];
        var r = new double[len];
        for (int o = 0; o < outer; o++)
            for (int n = 0; n < inner; n++)
            {
                for (int i = 0; i < len; i++) r[i] = x[(o * len + i) * inner + n];
                var v = row(r);
                for (int i = 0; i < v.Length; i++) y[(o * outLen + i) * inner + n] = v[i];
            }
        return y;
    }

    static Gen<(int[] Shape, int Axis, TensorGen.ViewKind View, int Seed)> AxisCase(int maxDim = 9) =>
        from s in TensorGen.NonEmptyShape(3, maxDim) from a in G.Choose(0, s.Length - 1) from v in TensorGen.View from seed in TensorGen.Seed
        select (s, a, v, seed);

    static Tensor Make(int[] shape, TensorGen.ViewKind view, int seed, DType dtype, Device dev) =>
        dtype.IsInteger() ? TensorGen.Make(shape, view, seed, DType.Float64, dev, -20, 20).To(dtype) : TensorGen.Make(shape, view, seed, dtype, dev);

    [Theory, MemberData(nameof(NumericCases))]
    public void Reductions_match_reference(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, AxisCase(), c =>
        {
            var (shape, axis, view, seed) = c;
            var x = Make(shape, view, seed, dtype, dev);
            var xs = x.ToDoubleArray();
            foreach (var op in new[] { ReduceOp.Sum, ReduceOp.Max, ReduceOp.Min, ReduceOp.Prod })
            {
                if (op == ReduceOp.Prod && dtype.IsInteger()) continue;   // integer products overflow; sums cover the kernel
                var y = op switch
                {
                    ReduceOp.Sum => x.Sum([axis]),
                    ReduceOp.Max => x.Amax([axis]),
                    ReduceOp.Min => x.Amin([axis]),
                    _ => x.Prod([axis]),
                };
                var expected = Along(xs, shape, axis, r => [Reference.Reduce(op, r)], out _);
                var (rtol, atol) = dtype.IsInteger() ? (0.0, 0.0) : Close.For(dtype, 4 * shape[axis]);
                Close.Check(expected, y.ToDoubleArray(), rtol, atol, $"{op} {dtype} [{string.Join(",", shape)}] axis {axis} {view}");
            }
            // The first index of the maximum and the minimum, and prefix sums.
            var am = x.ArgMax(axis).ToArray<long>();
            var amExp = Along(xs, shape, axis, r => [Array.IndexOf(r, r.Max())], out _);
            Assert.Equal(amExp.Select(v => (long)v), am);
            var an = x.ArgMin(axis).ToArray<long>();
            Assert.Equal(Along(xs, shape, axis, r => [Array.IndexOf(r, r.Min())], out _).Select(v => (long)v), an);
            var cs = x.Cumsum(axis).ToDoubleArray();
            var csExp = Along(xs, shape, axis, r => { double acc = 0; return r.Select(v => acc += v).ToArray(); }, out _);
            var (rt, at) = dtype.IsInteger() ? (0.0, 0.0) : Close.For(dtype, 4 * shape[axis]);
            Close.Check(csExp, cs, rt, at, $"cumsum {dtype}");
        });
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Any_and_all_match_reference(string device)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, AxisCase(), c =>
        {
            var (shape, axis, view, seed) = c;
            var x = TensorGen.Make(shape, view, seed, DType.Float32, dev) > Tensor.Scalar(1.5, DType.Float32, dev);
            var xs = x.ToDoubleArray();
            Assert.Equal(Along(xs, shape, axis, r => [r.Any(v => v != 0) ? 1 : 0], out _), x.Any([axis]).ToDoubleArray());
            Assert.Equal(Along(xs, shape, axis, r => [r.All(v => v != 0) ? 1 : 0], out _), x.All([axis]).ToDoubleArray());
        });
    }

    [Theory, MemberData(nameof(FloatCases))]
    public void Softmax_and_norms_match_reference(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, AxisCase(), c =>
        {
            var (shape, axis, view, seed) = c;
            var x = TensorGen.Make(shape, view, seed, dtype, dev, -8, 8);
            var xs = x.ToDoubleArray();
            var (rtol, atol) = Close.For(dtype, 8);
            Close.Check(Along(xs, shape, axis, r => Reference.Softmax(r), out _), x.Softmax(axis).ToDoubleArray(), rtol, atol, "softmax");
            Close.Check(Along(xs, shape, axis, r => Reference.Softmax(r, log: true), out _), x.LogSoftmax(axis).ToDoubleArray(), rtol, atol * 10, "log_softmax");
            // Norms of constant rows (broadcast views) only measure rounding noise amplified by 1/sqrt(eps): use strided data.
            x = TensorGen.Make(shape, view == TensorGen.ViewKind.Broadcast ? TensorGen.ViewKind.Sliced : view, seed, dtype, dev, -8, 8);
            xs = x.ToDoubleArray();
            int len = shape[^1];
            var w = TensorGen.Make([len], TensorGen.ViewKind.Sliced, seed + 1, dtype, dev);
            var b = TensorGen.Make([len], TensorGen.ViewKind.Contiguous, seed + 2, dtype, dev);
            double[] ws = w.ToDoubleArray(), bs = b.ToDoubleArray();
            int last = shape.Length - 1;
            Close.Check(Along(xs, shape, last, r => Reference.LayerNorm(r, ws, bs, 1e-5), out _), x.LayerNorm(w, b).ToDoubleArray(), rtol, atol * 10, "layer_norm");
            Close.Check(Along(xs, shape, last, r => Reference.LayerNorm(r, [], [], 1e-5), out _), x.LayerNorm().ToDoubleArray(), rtol, atol * 10, "layer_norm (no affine)");
            Close.Check(Along(xs, shape, last, r => Reference.RmsNorm(r, ws, 1e-6), out _), x.RmsNorm(w).ToDoubleArray(), rtol, atol * 10, "rms_norm");
        });
    }

    [Theory, MemberData(nameof(FloatCases))]
    public void MatMul_matches_reference_with_transposes_and_batch_broadcast(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        var gen = from m in G.Choose(0, 40) from k in G.Choose(0, 40) from n in G.Choose(0, 40) from batch in G.Choose(1, 3)
                  from ta in G.Elements(true, false) from tb in G.Elements(true, false) from bb in G.Elements(true, false) from seed in TensorGen.Seed
                  select (m, k, n, batch, ta, tb, bb, seed);
        Props.Check(dev, gen, c =>
        {
            var (m, k, n, batch, ta, tb, bbroad, seed) = c;
            var a = ta ? TensorGen.Make([batch, k, m], TensorGen.ViewKind.Contiguous, seed, dtype, dev).Transpose(1, 2) : TensorGen.Make([batch, m, k], TensorGen.ViewKind.Contiguous, seed, dtype, dev);
            var b = tb ? TensorGen.Make([n, k], TensorGen.ViewKind.Contiguous, seed + 1, dtype, dev).Transpose(0, 1) : TensorGen.Make([k, n], TensorGen.ViewKind.Sliced, seed + 1, dtype, dev);
            if (!bbroad) b = b.Unsqueeze(0).BroadcastTo(new Shape(batch, k, n)).Contiguous();
            var y = a.MatMul(b);
            Assert.Equal(new Shape(batch, m, n), y.Shape);
            var ad = a.Contiguous().ToDoubleArray();
            var bd = (bbroad ? b.Unsqueeze(0).BroadcastTo(new Shape(batch, k, n)) : b).Contiguous().ToDoubleArray();
            var expected = new List<double>();
            for (int t = 0; t < batch; t++) expected.AddRange(Reference.Gemm(m, n, k, ad.AsSpan(t * m * k, m * k), bd.AsSpan(t * k * n, k * n)));
            var (rtol, atol) = Close.For(dtype, 4 * Math.Max(k, 1));
            Close.Check(expected.ToArray(), y.ToDoubleArray(), rtol, atol * 10, $"matmul {m}x{k}x{n} batch {batch}");
        });
    }

    public static IEnumerable<object[]> PlainCases =>
        from d in Devices.All from dt in new[] { DType.Float32, DType.Float64, DType.Int32, DType.Int64, DType.Bool } select new object[] { d.ToString(), dt };

    [Theory, MemberData(nameof(PlainCases))]
    public void Gather_and_scatter_match_reference(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        var gen = from c in AxisCase() from j in G.Choose(1, 7) select (c, j);
        Props.Check(dev, gen, cc =>
        {
            var ((shape, axis, view, seed), j) = cc;
            var x = dtype == DType.Bool ? TensorGen.Make(shape, view, seed, DType.Float32, dev) > Tensor.Scalar(0, DType.Float32, dev) : Make(shape, view, seed, dtype, dev);
            var ishape = (int[])shape.Clone(); ishape[axis] = j;
            var index = Tensor.RandInt(new Shape(ishape), 0, shape[axis], new Generator((ulong)seed)).To(dev);
            var xs = x.Contiguous().ToDoubleArray(); var ix = index.ToArray<long>();
            int outer = shape.Take(axis).Aggregate(1, (p, q) => p * q), inner = shape.Skip(axis + 1).Aggregate(1, (p, q) => p * q);
            Assert.Equal(Reference.Gather(xs, outer, shape[axis], inner, ix, j), x.Gather(axis, index).ToDoubleArray());
            var src = dtype == DType.Bool ? TensorGen.Make(ishape, TensorGen.ViewKind.Contiguous, seed + 3, DType.Float32, dev) > Tensor.Scalar(0, DType.Float32, dev) : Make(ishape, TensorGen.ViewKind.Contiguous, seed + 3, dtype, dev);
            var ss = src.ToDoubleArray();
            // Sequential scatter in index order: the last write wins, sums accumulate in order.
            var set = (double[])xs.Clone(); var add = (double[])xs.Clone();
            for (int o = 0; o < outer; o++) for (int i = 0; i < j; i++) for (int n = 0; n < inner; n++)
            {
                int q = (o * j + i) * inner + n, d = (o * shape[axis] + (int)ix[q]) * inner + n;
                set[d] = ss[q]; add[d] += ss[q];
            }
            Assert.Equal(set, x.Scatter(axis, index, src).ToDoubleArray());
            if (dtype != DType.Bool)
            {
                var (rtol, atol) = dtype.IsInteger() ? (0.0, 0.0) : Close.For(dtype, 8);
                Close.Check(add, x.ScatterAdd(axis, index, src).ToDoubleArray(), rtol, atol, "scatter_add");
            }
        });
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Out_of_range_indices_and_integer_division_by_zero_throw(string device)
    {
        var dev = Devices.Parse(device);
        var x = Tensor.Arange(0, 6, 1, DType.Float32, dev).Reshape(2, 3);
        var bad = Tensor.FromArray(new long[] { 0, 3, 1, 1, 0, 1 }, [2, 3]).To(dev);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => x.Gather(0, bad));
        Assert.Contains("3", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => x.ScatterAdd(0, bad, x));
        var num = Tensor.FromArray(new[] { 1, 2 }).To(dev);
        Assert.Throws<DivideByZeroException>(() => num.Div(Tensor.FromArray(new[] { 1, 0 }).To(dev), DivRounding.Trunc).ToArray<int>());
    }

    [Theory, MemberData(nameof(NumericCases))]
    public void Sort_is_stable_and_matches_reference(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        var gen = from c in AxisCase() from desc in G.Elements(true, false) select (c, desc);
        Props.Check(dev, gen, cc =>
        {
            var ((shape, axis, view, seed), desc) = cc;
            // Few distinct values, so ties (and their order) matter; floats also get NaNs.
            var x = (TensorGen.Make(shape, view, seed, DType.Float64, dev, -3, 3).Apply(UnaryOp.Sign) * 2.0).To(dtype);
            if (dtype.IsFloating()) x = Tensor.Where(x > Tensor.Scalar(1, dtype, dev), Tensor.Scalar(double.NaN, dtype, dev), x);
            CheckSort(x, shape, axis, desc);
        });
    }

    static void CheckSort(Tensor x, int[] shape, int axis, bool desc)
    {
        var (v, i) = x.Sort(axis, desc);
        var xs = x.ToDoubleArray();
        Assert.Equal(Along(xs, shape, axis, r => Reference.SortRow(r, desc).Values, out _), v.ToDoubleArray());
        Assert.Equal(Along(xs, shape, axis, r => Reference.SortRow(r, desc).Indices.Select(q => (double)q).ToArray(), out _), i.ToDoubleArray());
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Long_rows_sort_through_the_bitonic_network(string device)
    {
        var dev = Devices.Parse(device);
        foreach (int len in new[] { 2049, 3000 })
        {
            var x = Tensor.RandInt(new Shape(2, len), -50, 50, new Generator((ulong)len)).To(DType.Float32).To(dev);
            CheckSort(x, [2, len], 1, desc: false);
            CheckSort(x, [2, len], 1, desc: true);
        }
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Random_streams_equal_the_cpu_streams(string device)
    {
        var dev = Devices.Parse(device);
        foreach (var dt in new[] { DType.Float32, DType.Float64 })
        {
            Shape s = [3, 37];
            Assert.Equal(Tensor.Rand(s, new Generator(7), -2, 5, dt).ToDoubleArray(), Tensor.Rand(s, new Generator(7), -2, 5, dt, dev).ToDoubleArray());
            Assert.Equal(Tensor.Bernoulli(s, 0.3, new Generator(8), dt).ToDoubleArray(), Tensor.Bernoulli(s, 0.3, new Generator(8), dt, dev).ToDoubleArray());
            // Normal samples go through the device's float64 log/sin/cos: equal to the last bit on the CPU accelerator, to an ulp of float64 elsewhere.
            var (rtol, atol) = Close.For(DType.Float64, 100);
            Close.Check(Tensor.Randn(s, new Generator(9), 1, 2, dt).ToDoubleArray(), Tensor.Randn(s, new Generator(9), 1, 2, dt, dev).ToDoubleArray(),
                dt == DType.Float32 ? 1e-7 : rtol, atol, $"randn {dt}");
        }
        foreach (var dt in new[] { DType.Int32, DType.Int64 })
            Assert.Equal(Tensor.RandInt([100], -9, 1000, new Generator(3), dt).ToDoubleArray(), Tensor.RandInt([100], -9, 1000, new Generator(3), dt, dev).ToDoubleArray());
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Conversions_between_all_dtypes_match_the_cpu(string device)
    {
        var dev = Devices.Parse(device);
        var src = Tensor.FromArray(new[] { -3.75, -1, -0.5, 0, 0.3, 1, 2.5, 1e5, 65519, 65521, 3.4e38, double.NaN, 1e-6, 6.2e-5 });
        var all = new[] { DType.Float32, DType.Float64, DType.Int32, DType.Int64, DType.Bool, DType.BFloat16, DType.Float16 };
        foreach (var from in all)
        {
            var x = src.To(from);
            var xd = x.To(dev);
            foreach (var to in all)
                Assert.True(x.To(to).ToDoubleArray().SequenceEqual(xd.To(to).To(Device.Cpu).ToDoubleArray()), $"{from} -> {to} on {dev}");
        }
    }
}
