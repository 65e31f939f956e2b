using System.Numerics;
using Kiln.Kernels;
using Kiln.Kernels.Cpu;

namespace Kiln.Backends;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void Random(RandomKind kind, ulong seed, ulong counter, double a, double b, Tensor dst)
    {
        int n = dst.Numel;
        bool f64 = dst.DType == DType.Float64;
        Func<long, double> sample = kind switch
        {
            RandomKind.Uniform => i => a + (b - a) * (f64 ? Philox.UniformDouble(seed, counter, i) : Philox.UniformFloat(seed, counter, i)),
            RandomKind.Normal => i => a + b * Philox.Normal(seed, counter, i, f64),
            RandomKind.Bernoulli => i => (f64 ? Philox.UniformDouble(seed, counter, i) : Philox.UniformFloat(seed, counter, i)) < a ? 1.0 : 0.0,
            _ => i => Math.Floor(a + (b - a) * Philox.UniformDouble(seed, counter, i)),
        };
        switch (dst.DType)
        {
            case DType.Float32: { var d = A<float>(dst); Strided.Parallel(n, n * 16L, (s, e) => { for (int i = s; i < e; i++) d[i] = (float)sample(i); }); break; }
            case DType.Float64: { var d = A<double>(dst); Strided.Parallel(n, n * 16L, (s, e) => { for (int i = s; i < e; i++) d[i] = sample(i); }); break; }
            case DType.Int32: { var d = A<int>(dst); Strided.Parallel(n, n * 16L, (s, e) => { for (int i = s; i < e; i++) d[i] = (int)sample(i); }); break; }
            case DType.Int64: { var d = A<long>(dst); Strided.Parallel(n, n * 16L, (s, e) => { for (int i = s; i < e; i++) d[i] = (long)sample(i); }); break; }
            case DType.Bool: { var d = A<bool>(dst); for (int i = 0; i < n; i++) d[i] = sample(i) != 0; break; }
            case DType.Float16 or DType.BFloat16: RandomHalf(kind, seed, counter, a, b, dst); break;
            default: throw Unsupported("random", dst.DType);
        }
    }

    static (int Outer, int Axis, int Inner) Split3(Shape s, int axis)
    {
        int outer = 1, inner = 1;
        for (int i = 0; i < axis; i++) outer *= s[i];
        for (int i = axis + 1; i < s.Rank; i++) inner *= s[i];
        return (outer, s.Rank == 0 ? 1 : s[axis], inner);
    }

    /// <inheritdoc/>
    public void Gather(Tensor x, int axis, Tensor index, Tensor y)
    {
        var (outer, xAxis, inner) = Split3(x.Shape, axis);
        int yAxis = index.Rank == 0 ? 1 : index.Shape[axis];
        switch (x.DType)
        {
            case DType.Float32: Indexing.Gather(A<float>(x), O(x), outer, xAxis, inner, A<long>(index), O(index), yAxis, A<float>(y)); break;
            case DType.Float64: Indexing.Gather(A<double>(x), O(x), outer, xAxis, inner, A<long>(index), O(index), yAxis, A<double>(y)); break;
            case DType.Int32: Indexing.Gather(A<int>(x), O(x), outer, xAxis, inner, A<long>(index), O(index), yAxis, A<int>(y)); break;
            case DType.Int64: Indexing.Gather(A<long>(x), O(x), outer, xAxis, inner, A<long>(index), O(index), yAxis, A<long>(y)); break;
            case DType.Bool: Indexing.Gather(A<bool>(x), O(x), outer, xAxis, inner, A<long>(index), O(index), yAxis, A<bool>(y)); break;
            // A gather moves elements: the half bit patterns go as they are.
            case DType.Float16: Indexing.Gather(A<Half>(x), O(x), outer, xAxis, inner, A<long>(index), O(index), yAxis, A<Half>(y)); break;
            case DType.BFloat16: Indexing.Gather(A<ushort>(x), O(x), outer, xAxis, inner, A<long>(index), O(index), yAxis, A<ushort>(y)); break;
            default: throw Unsupported("gather", x.DType);
        }
    }

    /// <inheritdoc/>
    public void ScatterAdd(Tensor y, int axis, Tensor index, Tensor src) => ScatterImpl(y, axis, index, src, add: true);
    /// <inheritdoc/>
    public void Scatter(Tensor y, int axis, Tensor index, Tensor src) => ScatterImpl(y, axis, index, src, add: false);

    static void ScatterImpl(Tensor y, int axis, Tensor index, Tensor src, bool add)
    {
        var (outer, yAxis, inner) = Split3(y.Shape, axis);
        int sAxis = index.Rank == 0 ? 1 : index.Shape[axis];
        switch (y.DType)
        {
            case DType.Float32: Indexing.Scatter(A<float>(y), O(y), outer, yAxis, inner, A<long>(index), O(index), A<float>(src), O(src), sAxis, add ? (p, q) => p + q : null); break;
            case DType.Float64: Indexing.Scatter(A<double>(y), O(y), outer, yAxis, inner, A<long>(index), O(index), A<double>(src), O(src), sAxis, add ? (p, q) => p + q : null); break;
            case DType.Int32: Indexing.Scatter(A<int>(y), O(y), outer, yAxis, inner, A<long>(index), O(index), A<int>(src), O(src), sAxis, add ? (p, q) => p + q : null); break;
            case DType.Int64: Indexing.Scatter(A<long>(y), O(y), outer, yAxis, inner, A<long>(index), O(index), A<long>(src), O(src), sAxis, add ? (p, q) => p + q : null); break;
            case DType.Bool when !add: Indexing.Scatter(A<bool>(y), O(y), outer, yAxis, inner, A<long>(index), O(index), A<bool>(src), O(src), sAxis, null); break;
            case DType.Float16 when !add: Indexing.Scatter(A<Half>(y), O(y), outer, yAxis, inner, A<long>(index), O(index), A<Half>(src), O(src), sAxis, null); break;
            case DType.BFloat16 when !add: Indexing.Scatter(A<ushort>(y), O(y), outer, yAxis, inner, A<long>(index), O(index), A<ushort>(src), O(src), sAxis, null); break;
            // Sums accumulate in Float32 and round once per target element.
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(Instance, [index, src], [y], (i, o) => ScatterImpl(o[0]!, axis, i[0]!, i[1]!, add), readOutputs: true); break;
            default: throw Unsupported(add ? "scatter_add" : "scatter", y.DType);
        }
    }

    /// <inheritdoc/>
    public void SortRows(Tensor x, int rows, int len, bool descending, Tensor values, Tensor indices)
    {
        switch (x.DType)
        {
            case DType.Float32: Sort.Rows(A<float>(x), O(x), rows, len, descending, A<float>(values), A<long>(indices), NanLast); break;
            case DType.Float64: Sort.Rows(A<double>(x), O(x), rows, len, descending, A<double>(values), A<long>(indices), NanLast); break;
            case DType.Int32: Sort.Rows(A<int>(x), O(x), rows, len, descending, A<int>(values), A<long>(indices), (p, q) => p.CompareTo(q)); break;
            case DType.Int64: Sort.Rows(A<long>(x), O(x), rows, len, descending, A<long>(values), A<long>(indices), (p, q) => p.CompareTo(q)); break;
            case DType.Float16 or DType.BFloat16: SortRowsHalf(x, rows, len, descending, values, indices); break;
            default: throw Unsupported("sort", x.DType);
        }
    }

    /// <inheritdoc/>
    public void SearchSorted(Tensor sorted, int seqRows, int seqLen, Tensor values, int valLen, bool right, Tensor y)
    {
        int n = values.Numel;
        switch (sorted.DType)
        {
            case DType.Float32: Sort.SearchSorted(A<float>(sorted), O(sorted), seqRows, seqLen, A<float>(values), O(values), n, valLen, right, A<long>(y)); break;
            case DType.Float64: Sort.SearchSorted(A<double>(sorted), O(sorted), seqRows, seqLen, A<double>(values), O(values), n, valLen, right, A<long>(y)); break;
            case DType.Int32: Sort.SearchSorted(A<int>(sorted), O(sorted), seqRows, seqLen, A<int>(values), O(values), n, valLen, right, A<long>(y)); break;
            case DType.Int64: Sort.SearchSorted(A<long>(sorted), O(sorted), seqRows, seqLen, A<long>(values), O(values), n, valLen, right, A<long>(y)); break;
            case DType.Float16 or DType.BFloat16: SearchSortedHalf(sorted, seqRows, seqLen, values, valLen, right, y); break;
            default: throw Unsupported("searchsorted", sorted.DType);
        }
    }

    // NaN is the largest value, as NumPy sorts it.
    static int NanLast<T>(T p, T q) where T : IFloatingPointIeee754<T> =>
        T.IsNaN(p) ? (T.IsNaN(q) ? 0 : 1) : T.IsNaN(q) ? -1 : p.CompareTo(q);

    void RandomHalf(RandomKind kind, ulong seed, ulong counter, double a, double b, Tensor dst) => HalfCompute.Run(this, [], [dst], (_, o) => Random(kind, seed, counter, a, b, o[0]!));
    void SortRowsHalf(Tensor x, int rows, int len, bool descending, Tensor values, Tensor indices) => HalfCompute.Run(this, [x], [values, indices], (i, o) => SortRows(i[0]!, rows, len, descending, o[0]!, o[1]!));
    void SearchSortedHalf(Tensor sorted, int seqRows, int seqLen, Tensor values, int valLen, bool right, Tensor y) => HalfCompute.Run(this, [sorted, values], [y], (i, o) => SearchSorted(i[0]!, seqRows, seqLen, i[1]!, valLen, right, o[0]!));
}
