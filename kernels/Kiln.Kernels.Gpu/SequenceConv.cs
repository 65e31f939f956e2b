using ILGPU;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// Causal long convolution, the convolution form of a state-space layer: one thread per output element sums its taps
/// in the same order as the CPU kernel (tap 0 first). Reference: <see cref="Reference.CausalConv"/>.
/// </summary>
public static class SequenceConv
{
    /// <summary>
    /// Element i of contiguous y [rows, len]: y[r, t] = sum_{s &lt;= min(t, taps - 1)} k[r mod channels, s] x[r, t - s],
    /// with x and y [rows, len] and k [channels, taps] read from their offsets.
    /// </summary>
    public static void Causal<T, TF>(Index1D i, ArrayView<T> x, int xOff, ArrayView<T> k, int kOff, ArrayView<T> y, int yOff, int channels, int len, int taps)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int r = i / len, t = i - r * len, kr = kOff + r % channels * taps, xr = xOff + r * len;
        int last = t < taps - 1 ? t : taps - 1;
        T acc = f.Zero;
        for (int s = 0; s <= last; s++) acc = f.Add(acc, f.Mul(k[kr + s], x[xr + t - s]));
        y[yOff + i] = acc;
    }
}

/// <summary>The typed kernels of <see cref="SequenceConv"/> for one floating dtype, launched over rows * len outputs.</summary>
public static class SequenceKernels<T, TF> where T : unmanaged where TF : struct, IFloat<T>
{
    /// <summary>sequence.causal_conv: causal long convolution of rows by per-channel taps.</summary>
    public static readonly Kernel<ArrayView<T>, int, ArrayView<T>, int, ArrayView<T>, int, int, int, int> CausalConv =
        new($"sequence.causal_conv.{Dt.Of<TF>()}", SequenceConv.Causal<T, TF>);
}

/// <summary>
/// Causal linear attention: one thread per output element y[b, t, e] = sum_{s &lt;= t} (q_t . k_s) v_s[e], which needs no
/// per-thread state array (ILGPU kernels cannot allocate one). Reference: <see cref="Reference.CausalLinearAttention"/>.
/// </summary>
public static class LinearAttentionScan
{
    /// <summary>Element i of contiguous y [batch, T, dv] from contiguous q, k [batch, T, d] and v [batch, T, dv] read from their offsets.</summary>
    public static void Causal<T, TF>(Index1D i, ArrayView<T> q, int qOff, ArrayView<T> k, int kOff, ArrayView<T> v, int vOff, ArrayView<T> y, int yOff, int len, int d, int dv)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int row = i / dv, e = i - row * dv, b = row / len, t = row - b * len, first = b * len;
        T acc = f.Zero;
        for (int s = 0; s <= t; s++)
        {
            T w = f.Zero;
            for (int j = 0; j < d; j++) w = f.Add(w, f.Mul(q[qOff + row * d + j], k[kOff + (first + s) * d + j]));
            acc = f.Add(acc, f.Mul(w, v[vOff + (first + s) * dv + e]));
        }
        y[yOff + i] = acc;
    }
}

/// <summary>The typed kernel of <see cref="LinearAttentionScan"/> for one floating dtype, launched over batch * T * dv outputs.</summary>
public static class LinearAttentionKernels<T, TF> where T : unmanaged where TF : struct, IFloat<T>
{
    /// <summary>sequence.causal_linear_attention: unnormalised causal linear attention.</summary>
    public static readonly Kernel<ArrayView<T>, int, ArrayView<T>, int, ArrayView<T>, int, ArrayView<T>, int, int, int, int> Causal =
        new($"sequence.causal_linear_attention.{Dt.Of<TF>()}", LinearAttentionScan.Causal<T, TF>);
}
