using Kiln.Kernels;

namespace Kiln.Backends;

/// <summary>How a Philox stream is turned into elements.</summary>
public enum RandomKind
{
    /// <summary>Uniform on [low, high).</summary>
    Uniform,
    /// <summary>Normal with mean a, standard deviation b (Box-Muller).</summary>
    Normal,
    /// <summary>1 with probability a, else 0.</summary>
    Bernoulli,
    /// <summary>Integers uniform on [a, b).</summary>
    RandInt,
}

/// <summary>Memory of one device: allocation, host transfers, fills and copies (with dtype conversion).</summary>
public interface IMemoryBackend
{
    /// <summary>The device this backend runs on.</summary>
    Device Device { get; }

    /// <summary>Allocates storage with unspecified contents (callers fill or overwrite every element).</summary>
    Storage Allocate(DType dtype, int length);

    /// <summary>Copies a host array (of the dtype's element type) into new storage.</summary>
    Storage Upload(Array host, DType dtype);

    /// <summary>Copies the elements of <paramref name="src"/> (any layout) into a new host array in row-major order.</summary>
    Array Download(Tensor src);

    /// <summary>Sets every element of <paramref name="dst"/> (any layout) to <paramref name="value"/>.</summary>
    void Fill(Tensor dst, double value);

    /// <summary>dst = src elementwise, converting dtype; both have the same shape, any layouts (src may be broadcast).</summary>
    void Copy(Tensor src, Tensor dst);
}

/// <summary>Elementwise primitives over broadcast views of one shape.</summary>
public interface IElementwiseBackend
{
    /// <summary>y = op(x) with the parameters <paramref name="p"/> of a parametrised op; same shape; y may be x (in place).</summary>
    void Unary(UnaryOp op, Tensor x, Tensor y, UnaryParams p = default);

    /// <summary>y = op(a, b); a and b are broadcast views of y's shape; y may alias a.</summary>
    void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y);

    /// <summary>y = op(a, b) on Int32, Int64 or Bool (<see cref="BitwiseOp.Not"/> reads only a); a and b are broadcast views of y's shape in y's dtype.</summary>
    void Bitwise(BitwiseOp op, Tensor a, Tensor b, Tensor y);

    /// <summary>y = op(a, b) as booleans; a and b are broadcast views of y's shape.</summary>
    void Compare(CompareOp op, Tensor a, Tensor b, Tensor y);

    /// <summary>y = cond ? a : b; all broadcast views of y's shape.</summary>
    void Where(Tensor cond, Tensor a, Tensor b, Tensor y);

    /// <summary>y = clamp(x, lo, hi) (NaN stays NaN).</summary>
    void Clamp(Tensor x, double lo, double hi, Tensor y);
}

/// <summary>Reductions and scans over the rows or columns of contiguous tensors.</summary>
public interface IReduceBackend
{
    /// <summary>Reduces each contiguous row of a contiguous [rows, len] tensor: y[r] = op(x[r, :]).</summary>
    void ReduceRows(ReduceOp op, Tensor x, int rows, int len, Tensor y);

    /// <summary>Reduces the outer axis of a contiguous [len, cols] tensor: y[c] = op(x[:, c]).</summary>
    void ReduceCols(ReduceOp op, Tensor x, int len, int cols, Tensor y);

    /// <summary>Index (Int64) and value of the first maximum (or minimum) of each row of a contiguous [rows, len] tensor.</summary>
    void ArgReduceRows(bool max, Tensor x, int rows, int len, Tensor values, Tensor indices);

    /// <summary>Inclusive prefix sums of each row of a contiguous [rows, len] tensor, from the end when <paramref name="reverse"/>.</summary>
    void CumsumRows(Tensor x, int rows, int len, bool reverse, Tensor y);

    /// <summary>
    /// Inclusive scan <paramref name="op"/> of each row of a contiguous [rows, len] tensor into contiguous
    /// <paramref name="y"/>, from the end when <paramref name="reverse"/>. For <see cref="ScanOp.Max"/> and
    /// <see cref="ScanOp.Min"/>, <paramref name="indices"/> (Int64, contiguous) gets the position in the row of the running
    /// extreme (the later one on ties; NaN propagates and the last NaN wins); it is null for the other ops.
    /// <see cref="ScanOp.LogSumExp"/> is for floating dtypes only.
    /// </summary>
    void ScanRows(ScanOp op, Tensor x, int rows, int len, bool reverse, Tensor y, Tensor? indices);

    /// <summary>any (or all, when <paramref name="all"/>) of each row of a contiguous Bool [rows, len] tensor.</summary>
    void AnyAllRows(bool all, Tensor x, int rows, int len, Tensor y);
}

/// <summary>The batched matrix product.</summary>
public interface IMatMulBackend
{
    /// <summary>
    /// Batched C = A B: <paramref name="a"/> is [batch, M, K] and <paramref name="b"/> [batch, K, N] as strided views
    /// (batch strides may be 0 for broadcast; inner strides give transposes), <paramref name="c"/> contiguous [batch, M, N].
    /// </summary>
    void MatMul(Tensor a, Tensor b, Tensor c);
}

/// <summary>Gathers, scatters and sorts along an axis.</summary>
public interface IIndexingBackend
{
    /// <summary>y[..., i, ...] = x[..., index[..., i, ...], ...] along <paramref name="axis"/>; index (Int64) has y's shape.</summary>
    void Gather(Tensor x, int axis, Tensor index, Tensor y);

    /// <summary>y[..., index[..., i, ...], ...] += src[..., i, ...] along <paramref name="axis"/> (y updated in place).</summary>
    void ScatterAdd(Tensor y, int axis, Tensor index, Tensor src);

    /// <summary>y[..., index[..., i, ...], ...] = src[..., i, ...] along <paramref name="axis"/> (y updated in place).</summary>
    void Scatter(Tensor y, int axis, Tensor index, Tensor src);

    /// <summary>Stable ascending (or descending) sort of each row of a contiguous [rows, len] tensor, with the Int64 permutation.</summary>
    void SortRows(Tensor x, int rows, int len, bool descending, Tensor values, Tensor indices);

    /// <summary>
    /// y (Int64, contiguous, values' shape) = the insertion point of each element of contiguous <paramref name="values"/>
    /// (rows of <paramref name="valLen"/>) in the matching row of contiguous ascending <paramref name="sorted"/> [seqRows,
    /// seqLen] (its only row when <paramref name="seqRows"/> is 1), by PyTorch's binary search: the first position whose
    /// element is not below the value (above it when <paramref name="right"/>); a NaN value lands at the end.
    /// </summary>
    void SearchSorted(Tensor sorted, int seqRows, int seqLen, Tensor values, int valLen, bool right, Tensor y);
}

/// <summary>Counter-based random numbers.</summary>
public interface IRandomBackend
{
    /// <summary>Fills contiguous <paramref name="dst"/> from Philox 4x32-10 with key <paramref name="seed"/>, starting at block <paramref name="counter"/>.</summary>
    void Random(RandomKind kind, ulong seed, ulong counter, double a, double b, Tensor dst);
}

/// <summary>
/// The operations a device provides, by family. Tensor ops lower to these; the tensor never looks behind them.
/// Arguments are tensors on this backend's device; outputs are preallocated by the caller (contiguous unless the
/// op says otherwise) and may alias inputs only where stated. Broadcast inputs arrive as views with zero strides.
/// A new backend implements the primitive families (<see cref="IMemoryBackend"/>, <see cref="IElementwiseBackend"/>,
/// <see cref="IReduceBackend"/>, <see cref="IMatMulBackend"/>, <see cref="IIndexingBackend"/>,
/// <see cref="IRandomBackend"/>); the fused ops (<see cref="IFusedBackend"/>) and the decompositions
/// (<see cref="ILinalgBackend"/>) have default bodies composed from those, which it overrides for speed.
/// </summary>
public interface IBackend : IMemoryBackend, IElementwiseBackend, IReduceBackend, IMatMulBackend, IIndexingBackend, IRandomBackend, IFusedBackend, ILinalgBackend, IPoolBackend, IResampleBackend,
    IConvBackend
{
}

/// <summary>A backend that keeps freed device memory for reuse: <see cref="Runtime"/> reports, limits and trims it.</summary>
public interface IMemoryCache
{
    /// <summary>Bytes held for reuse.</summary>
    long CachedBytes { get; }
    /// <summary>The most bytes held for reuse.</summary>
    long CacheLimitBytes { get; set; }
    /// <summary>Frees everything held for reuse.</summary>
    void Trim();
}
