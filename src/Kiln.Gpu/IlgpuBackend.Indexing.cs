using Kiln.Backends;
using Kiln.Kernels.Gpu;
using G = Kiln.Kernels.Gpu;

namespace Kiln.Gpu;

public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    public void Random(RandomKind kind, ulong seed, ulong counter, double a, double b, Tensor dst) => Locked(() =>
    {
        switch (dst.DType)
        {
            case DType.Float32: RandomT<float, F32>(kind, seed, counter, a, b, dst); break;
            case DType.Float64: RandomT<double, F64>(kind, seed, counter, a, b, dst); break;
            case DType.Int32: RandomT<int, I32>(kind, seed, counter, a, b, dst); break;
            case DType.Int64: RandomT<long, I64>(kind, seed, counter, a, b, dst); break;
            case DType.Bool: RandomT<byte, U8>(kind, seed, counter, a, b, dst); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [], [dst], (_, o) => Random(kind, seed, counter, a, b, o[0]!)); break;
            default: throw Unsupported("random", dst.DType);
        }
    });

    void RandomT<T, TE>(RandomKind kind, ulong seed, ulong counter, double a, double b, Tensor dst) where T : unmanaged where TE : struct, IElement<T> =>
        PhiloxKernels<T, TE>.Fill.Launch(Driver, dst.Numel, V<T>(dst), (int)kind, seed, counter, a, b, dst.DType == DType.Float64 ? 1 : 0);

    static (int Outer, int Axis, int Inner) Split3(Shape s, int axis)
    {
        int outer = 1, inner = 1;
        for (int i = 0; i < axis; i++) outer *= s[i];
        for (int i = axis + 1; i < s.Rank; i++) inner *= s[i];
        return (outer, s.Rank == 0 ? 1 : s[axis], inner);
    }

    /// <inheritdoc/>
    public void Gather(Tensor x, int axis, Tensor index, Tensor y) => Locked(() =>
    {
        var (outer, xAxis, inner) = Split3(x.Shape, axis);
        var d = new G.Indexing.Dims { Outer = outer, Axis = xAxis, Inner = inner, IndexAxis = index.Rank == 0 ? 1 : index.Shape[axis], XOff = Off(x), IOff = Off(index) };
        Driver.Zero(_err, 16);
        switch (x.DType)
        {
            case DType.Float32: GatherT<float>(x, index, y, d); break;
            case DType.Float64: GatherT<double>(x, index, y, d); break;
            case DType.Int32: GatherT<int>(x, index, y, d); break;
            case DType.Int64: GatherT<long>(x, index, y, d); break;
            case DType.Bool: GatherT<byte>(x, index, y, d); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x, index], [y], (i, o) => Gather(i[0]!, axis, i[1]!, o[0]!)); break;
            default: throw Unsupported("gather", x.DType);
        }
        if (ReadErr(out long j)) throw new ArgumentOutOfRangeException("index", j, $"gather: index {j} is out of range for an axis of size {xAxis}");
    });

    void GatherT<T>(Tensor x, Tensor index, Tensor y, G.Indexing.Dims d) where T : unmanaged =>
        IndexingKernels<T>.Gather.Launch(Driver, y.Numel, V<T>(x), V<long>(index), V<T>(y), d, ErrView);

    /// <inheritdoc/>
    public void ScatterAdd(Tensor y, int axis, Tensor index, Tensor src) => ScatterImpl(y, axis, index, src, add: true);
    /// <inheritdoc/>
    public void Scatter(Tensor y, int axis, Tensor index, Tensor src) => ScatterImpl(y, axis, index, src, add: false);

    void ScatterImpl(Tensor y, int axis, Tensor index, Tensor src, bool add) => Locked(() =>
    {
        string op = add ? "scatter_add" : "scatter";
        var (outer, yAxis, inner) = Split3(y.Shape, axis);
        var d = new G.Indexing.Dims { Outer = outer, Axis = yAxis, Inner = inner, IndexAxis = index.Rank == 0 ? 1 : index.Shape[axis], XOff = Off(y), IOff = Off(index), SOff = Off(src) };
        Driver.Zero(_err, 16);
        switch (y.DType)
        {
            case DType.Float32: ScatterT<float, F32>(y, index, src, d, add, outer * inner); break;
            case DType.Float64: ScatterT<double, F64>(y, index, src, d, add, outer * inner); break;
            case DType.Int32: ScatterT<int, I32>(y, index, src, d, add, outer * inner); break;
            case DType.Int64: ScatterT<long, I64>(y, index, src, d, add, outer * inner); break;
            case DType.Bool when !add: ScatterT<byte, U8>(y, index, src, d, add, outer * inner); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [index, src], [y], (i, o) => ScatterImpl(o[0]!, axis, i[0]!, i[1]!, add), readOutputs: true); break;
            default: throw Unsupported(op, y.DType);
        }
        if (ReadErr(out long j)) throw new ArgumentOutOfRangeException("index", j, $"{op}: index {j} is out of range for an axis of size {yAxis}");
    });

    void ScatterT<T, TN>(Tensor y, Tensor index, Tensor src, G.Indexing.Dims d, bool add, int threads) where T : unmanaged where TN : struct, INum<T> =>
        IndexingKernels<T, TN>.Scatter.Launch(Driver, threads, V<T>(y), V<long>(index), V<T>(src), d, add ? 1 : 0, ErrView);

    /// <inheritdoc/>
    public void SearchSorted(Tensor sorted, int seqRows, int seqLen, Tensor values, int valLen, bool right, Tensor y) => Locked(() =>
    {
        switch (sorted.DType)
        {
            case DType.Float32: SearchT<float, F32>(sorted, seqRows, seqLen, values, valLen, right, y); break;
            case DType.Float64: SearchT<double, F64>(sorted, seqRows, seqLen, values, valLen, right, y); break;
            case DType.Int32: SearchT<int, I32>(sorted, seqRows, seqLen, values, valLen, right, y); break;
            case DType.Int64: SearchT<long, I64>(sorted, seqRows, seqLen, values, valLen, right, y); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [sorted, values], [y], (i, o) => SearchSorted(i[0]!, seqRows, seqLen, i[1]!, valLen, right, o[0]!)); break;
            default: throw Unsupported("searchsorted", sorted.DType);
        }
    });

    void SearchT<T, TN>(Tensor sorted, int seqRows, int seqLen, Tensor values, int valLen, bool right, Tensor y) where T : unmanaged where TN : struct, INum<T> =>
        SortKernels<T, TN>.SearchSorted.Launch(Driver, values.Numel, V<T>(sorted), Off(sorted), seqRows, seqLen, V<T>(values), Off(values), valLen, right ? 1 : 0, V<long>(y));

    /// <summary>Rows up to this length are sorted by counting ranks; longer ones by a bitonic network.</summary>
    public const int RankSortMaxLen = 2048;

    /// <inheritdoc/>
    public void SortRows(Tensor x, int rows, int len, bool descending, Tensor values, Tensor indices) => Locked(() =>
    {
        switch (x.DType)
        {
            case DType.Float32: SortT<float, F32>(x, rows, len, descending, values, indices); break;
            case DType.Float64: SortT<double, F64>(x, rows, len, descending, values, indices); break;
            case DType.Int32: SortT<int, I32>(x, rows, len, descending, values, indices); break;
            case DType.Int64: SortT<long, I64>(x, rows, len, descending, values, indices); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x], [values, indices], (i, o) => SortRows(i[0]!, rows, len, descending, o[0]!, o[1]!)); break;
            default: throw Unsupported("sort", x.DType);
        }
    });

    void SortT<T, TN>(Tensor x, int rows, int len, bool descending, Tensor values, Tensor indices) where T : unmanaged where TN : struct, INum<T>
    {
        int desc = descending ? 1 : 0;
        if (len <= RankSortMaxLen)
        {
            SortKernels<T, TN>.RankRows.Launch(Driver, rows * len, V<T>(x), Off(x), len, desc, V<T>(values), V<long>(indices));
            return;
        }
        int pad = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)len);
        using var keys = Tensor.Empty(new Shape(rows * pad), x.DType, Device);
        using var idx = Tensor.Empty(new Shape(rows * pad), DType.Int64, Device);
        SortKernels<T>.BitonicInit.Launch(Driver, rows * pad, V<T>(x), Off(x), len, pad, V<T>(keys), V<long>(idx));
        for (int k = 2; k <= pad; k <<= 1)
            for (int j = k >> 1; j > 0; j >>= 1)
                SortKernels<T, TN>.BitonicStep.Launch(Driver, rows * pad, V<T>(keys), V<long>(idx), len, pad, k, j, desc);
        SortKernels<T>.BitonicFinish.Launch(Driver, rows * len, V<T>(keys), V<long>(idx), len, pad, V<T>(values), V<long>(indices));
    }
}
