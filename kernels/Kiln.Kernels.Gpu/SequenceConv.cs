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
