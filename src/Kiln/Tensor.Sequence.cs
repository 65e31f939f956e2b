namespace Kiln;

public partial class Tensor
{
    /// <summary>
    /// Causal long convolution along the last axis with one kernel per channel, the convolution form of a state-space
    /// layer: y[..., c, t] = sum_{s = 0}^{min(t, K - 1)} kernel[c, s] input[..., c, t - s]. Unlike
    /// <see cref="Conv1d"/>, the kernel may be as long as the sequence (or longer; taps past it are never read) and is not
    /// flipped: tap s weighs the input s steps back. Differentiable in both arguments, to any order.
    /// </summary>
    /// <param name="input">[..., C, L], floating.</param>
    /// <param name="kernel">[C, K], K &gt;= 0, input's dtype and device.</param>
    /// <returns>input's shape.</returns>
    /// <exception cref="ShapeMismatchException">input has rank below 2, kernel is not [C, K], or C differs.</exception>
    /// <exception cref="ArgumentException">The dtypes or devices differ, or input is not floating.</exception>
    public static Tensor CausalConv1d(Tensor input, Tensor kernel)
    {
        const string op = "causal_conv1d";
        ArgumentNullException.ThrowIfNull(input); ArgumentNullException.ThrowIfNull(kernel);
        input.Storage.ThrowIfDisposed(op); kernel.Storage.ThrowIfDisposed(op);
        Check.Floating(input, op, nameof(input));
        Check.SameDType(input, kernel, op, nameof(kernel)); Check.SameDevice(input, kernel, op, nameof(kernel));
        if (input.Rank < 2) throw new ShapeMismatchException(op, nameof(input), $"input must be [..., C, L] (rank 2 or more), got {input.Shape}");
        if (kernel.Rank != 2 || kernel.Shape[0] != input.Shape[^2])
            throw new ShapeMismatchException(op, nameof(kernel), $"kernel must be [C, K] with C = {input.Shape[^2]} (input {input.Shape}), got {kernel.Shape}");
        return CausalConvRaw(input, kernel);
    }

    // The recorded op: the input gradient is the same convolution run backwards in time, the kernel gradient the same
    // convolution with each row of x as the kernel of the reversed output gradient, so every order differentiates.
    static Tensor CausalConvRaw(Tensor x, Tensor k)
    {
        int channels = k.Shape[0], taps = k.Shape[1], len = x.Shape[^1];
        var y = Empty(x.Shape, x.DType, x.Device);
        if (y.Numel > 0) x.Backend.CausalConv(x.Detach().Contiguous(), k.Detach().Contiguous(), y.Numel / len, channels, len, taps, y);
        return Record(y, "causal_conv1d", [x, k], gy =>
            [x.RequiresGrad ? CausalConvRaw(gy.Flip(-1), k).Flip(-1) : null, k.RequiresGrad ? CausalConvKernelGrad(x, gy, channels, taps) : null]);
    }

    // dk[c, s] = sum over rows of channel c of sum_{t >= s} gy[t] x[t - s]: with u = reverse(gy), the per-row causal
    // convolution z = u * x has z[L - 1 - s] = dk's row term at s.
    static Tensor CausalConvKernelGrad(Tensor x, Tensor gy, int channels, int taps)
    {
        int len = x.Shape[^1], rows = len == 0 ? 0 : x.Numel / len;
        if (rows == 0) return Zeros(new Shape(channels, taps), x.DType, x.Device);
        var z = CausalConvRaw(gy.Flip(-1).Reshape(rows, len), x.Reshape(rows, len)).Flip(-1);
        var dk = z.Reshape(rows / channels, channels, len).Sum(0);
        return taps <= len ? dk.Narrow(1, 0, taps) : dk.Pad([0, taps - len]);
    }

    /// <summary>
    /// Causal linear attention, unnormalised: y[b, t] = sum_{s &lt;= t} (q_t . k_s) v_s, computed as the prefix sum
    /// S_t = sum_{s &lt;= t} k_s v_s^T read by q_t (no T x T scores). Normalised linear attention divides by the same op
    /// with v a column of ones. Differentiable in all three arguments, to any order.
    /// </summary>
    /// <param name="q">[B, T, d], floating.</param>
    /// <param name="k">[B, T, d], q's dtype and device.</param>
    /// <param name="v">[B, T, dv], q's dtype and device.</param>
    /// <returns>[B, T, dv].</returns>
    /// <exception cref="ShapeMismatchException">q is not rank 3, k differs from q, or v is not [B, T, dv].</exception>
    /// <exception cref="ArgumentException">The dtypes or devices differ, or q is not floating.</exception>
    public static Tensor CausalLinearAttention(Tensor q, Tensor k, Tensor v)
    {
        const string op = "causal_linear_attention";
        ArgumentNullException.ThrowIfNull(q); ArgumentNullException.ThrowIfNull(k); ArgumentNullException.ThrowIfNull(v);
        q.Storage.ThrowIfDisposed(op); k.Storage.ThrowIfDisposed(op); v.Storage.ThrowIfDisposed(op);
        Check.Floating(q, op, nameof(q));
        Check.SameDType(q, k, op, nameof(k)); Check.SameDevice(q, k, op, nameof(k));
        Check.SameDType(q, v, op, nameof(v)); Check.SameDevice(q, v, op, nameof(v));
        if (q.Rank != 3) throw new ShapeMismatchException(op, nameof(q), $"q must be [B, T, d], got {q.Shape}");
        if (!k.Shape.Equals(q.Shape)) throw new ShapeMismatchException(op, nameof(k), q.Shape, k.Shape, "k must have q's shape");
        if (v.Rank != 3 || v.Shape[0] != q.Shape[0] || v.Shape[1] != q.Shape[1])
            throw new ShapeMismatchException(op, nameof(v), $"v must be [{q.Shape[0]}, {q.Shape[1]}, dv], got {v.Shape}");
        return CausalLinearAttentionRaw(q, k, v);
    }

    // Gradients are the same op: gq = op(gy, v, k); gk and gv run it backwards in time (flip, op, flip).
    static Tensor CausalLinearAttentionRaw(Tensor q, Tensor k, Tensor v)
    {
        var y = Empty(new Shape(q.Shape[0], q.Shape[1], v.Shape[2]), q.DType, q.Device);
        if (y.Numel > 0) q.Backend.CausalLinearAttention(q.Detach().Contiguous(), k.Detach().Contiguous(), v.Detach().Contiguous(), y);
        static Tensor Back(Tensor a, Tensor b, Tensor c) => CausalLinearAttentionRaw(a.Flip(1), b.Flip(1), c.Flip(1)).Flip(1);
        return Record(y, "causal_linear_attention", [q, k, v], gy =>
        [
            q.RequiresGrad ? CausalLinearAttentionRaw(gy, v, k) : null,
            k.RequiresGrad ? Back(v, gy, q) : null,
            v.RequiresGrad ? Back(k, q, gy) : null,
        ]);
    }
}
