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

/// <summary>
/// The primitive operations a device must provide. Tensor ops lower to these; the tensor never looks behind them.
/// Arguments are tensors on this backend's device; outputs are preallocated by the caller (contiguous unless the
/// op says otherwise) and may alias inputs only where stated. Broadcast inputs arrive as views with zero strides.
/// </summary>
public interface IBackend : ILinalgBackend
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
    /// <summary>y = op(x); same shape; y may be x (in place).</summary>
    void Unary(UnaryOp op, Tensor x, Tensor y);
    /// <summary>y = op(a, b); a and b are broadcast views of y's shape; y may alias a.</summary>
    void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y);
    /// <summary>y = op(a, b) as booleans; a and b are broadcast views of y's shape.</summary>
    void Compare(CompareOp op, Tensor a, Tensor b, Tensor y);
    /// <summary>y = cond ? a : b; all broadcast views of y's shape.</summary>
    void Where(Tensor cond, Tensor a, Tensor b, Tensor y);
    /// <summary>y = clamp(x, lo, hi) (NaN stays NaN).</summary>
    void Clamp(Tensor x, double lo, double hi, Tensor y);

    /// <summary>Reduces each contiguous row of a contiguous [rows, len] tensor: y[r] = op(x[r, :]).</summary>
    void ReduceRows(ReduceOp op, Tensor x, int rows, int len, Tensor y);
    /// <summary>Reduces the outer axis of a contiguous [len, cols] tensor: y[c] = op(x[:, c]).</summary>
    void ReduceCols(ReduceOp op, Tensor x, int len, int cols, Tensor y);
    /// <summary>Index (Int64) and value of the first maximum (or minimum) of each row of a contiguous [rows, len] tensor.</summary>
    void ArgReduceRows(bool max, Tensor x, int rows, int len, Tensor values, Tensor indices);
    /// <summary>Inclusive prefix sums of each row of a contiguous [rows, len] tensor, from the end when <paramref name="reverse"/>.</summary>
    void CumsumRows(Tensor x, int rows, int len, bool reverse, Tensor y);
    /// <summary>any (or all, when <paramref name="all"/>) of each row of a contiguous Bool [rows, len] tensor.</summary>
    void AnyAllRows(bool all, Tensor x, int rows, int len, Tensor y);

    /// <summary>
    /// Batched C = A B: <paramref name="a"/> is [batch, M, K] and <paramref name="b"/> [batch, K, N] as strided views
    /// (batch strides may be 0 for broadcast; inner strides give transposes), <paramref name="c"/> contiguous [batch, M, N].
    /// </summary>
    void MatMul(Tensor a, Tensor b, Tensor c);

    /// <summary>
    /// Fused scaled-dot-product attention over independent heads. <paramref name="q"/> [batch, Tq, d], <paramref name="k"/>
    /// [batch, Tk, d] and <paramref name="v"/> [batch, Tk, dv] are contiguous; writes y [batch, Tq, dv] =
    /// softmax(scale q k^T) v row by row, where causal masks key j &gt; query i (top-left aligned, as PyTorch), and
    /// lse [batch, Tq] = log sum_j exp(scale q_i . k_j) over the unmasked keys (-inf when Tk is 0, with y 0 there).
    /// Must not materialize the Tq x Tk matrix for long sequences.
    /// </summary>
    void Attention(Tensor q, Tensor k, Tensor v, bool causal, double scale, Tensor y, Tensor lse);
    /// <summary>
    /// Gradients of <see cref="Attention"/> from the forward's inputs, its outputs y and lse, and the output gradient gy
    /// (all contiguous, shapes as there): overwrites gq [batch, Tq, d], gk [batch, Tk, d], gv [batch, Tk, dv].
    /// </summary>
    void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor y, Tensor gy, Tensor lse, bool causal, double scale, Tensor gq, Tensor gk, Tensor gv);

    /// <summary>
    /// A linear layer with its bias and activation fused into the matrix product's write-back: y = act(x w^T + bias).
    /// <paramref name="x"/> is [rows, in] and <paramref name="w"/> [out, in] (strided views), <paramref name="bias"/>
    /// [out] contiguous or null, <paramref name="y"/> contiguous [rows, out]; act is ReLU when <paramref name="relu"/>, else identity.
    /// </summary>
    void Linear(Tensor x, Tensor w, Tensor? bias, bool relu, Tensor y);

    /// <summary>Softmax (or log-softmax) of each row of a contiguous [rows, len] tensor.</summary>
    void SoftmaxRows(Tensor x, int rows, int len, bool log, Tensor y);
    /// <summary>Layer norm of each row: (x - mean) / sqrt(var + eps) * weight + bias; weight and bias [len] or null.</summary>
    void LayerNormRows(Tensor x, Tensor? weight, Tensor? bias, double eps, int rows, int len, Tensor y);
    /// <summary>RMS norm of each row: x / sqrt(mean(x^2) + eps) * weight; weight [len] or null.</summary>
    void RmsNormRows(Tensor x, Tensor? weight, double eps, int rows, int len, Tensor y);

    /// <summary>Fills contiguous <paramref name="dst"/> from Philox 4x32-10 with key <paramref name="seed"/>, starting at block <paramref name="counter"/>.</summary>
    void Random(RandomKind kind, ulong seed, ulong counter, double a, double b, Tensor dst);

    /// <summary>y[..., i, ...] = x[..., index[..., i, ...], ...] along <paramref name="axis"/>; index (Int64) has y's shape.</summary>
    void Gather(Tensor x, int axis, Tensor index, Tensor y);
    /// <summary>y[..., index[..., i, ...], ...] += src[..., i, ...] along <paramref name="axis"/> (y updated in place).</summary>
    void ScatterAdd(Tensor y, int axis, Tensor index, Tensor src);
    /// <summary>y[..., index[..., i, ...], ...] = src[..., i, ...] along <paramref name="axis"/> (y updated in place).</summary>
    void Scatter(Tensor y, int axis, Tensor index, Tensor src);
    /// <summary>Stable ascending (or descending) sort of each row of a contiguous [rows, len] tensor, with the Int64 permutation.</summary>
    void SortRows(Tensor x, int rows, int len, bool descending, Tensor values, Tensor indices);
}
