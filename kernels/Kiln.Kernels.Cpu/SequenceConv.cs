using System.Numerics;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Causal long convolution, the convolution form of a state-space layer: each tap s adds k[s] times the row shifted by
/// s, one SIMD multiply-add over the whole row, so the inner loop is a streaming axpy rather than a short dot product
/// per output. Rows run in parallel; each row's order of additions is fixed (tap by tap), so results do not depend on
/// the thread count. Reference: <see cref="Reference.CausalConv"/>.
/// </summary>
public static class SequenceConv
{
    /// <summary>
    /// y[r, t] = sum_{s &lt;= min(t, taps - 1)} k[r mod channels, s] x[r, t - s] over contiguous x and y [rows, len] and k
    /// [channels, taps], from the given offsets.
    /// </summary>
    public static void Causal<T>(T[] x, int xOff, T[] k, int kOff, int rows, int channels, int len, int taps, T[] y, int yOff)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int used = Math.Min(taps, len);
        Strided.Parallel(rows, (long)rows * len * Math.Max(used, 1), (start, end) =>
        {
            for (int r = start; r < end; r++)
            {
                var row = x.AsSpan(xOff + r * len, len);
                var dst = y.AsSpan(yOff + r * len, len);
                dst.Clear();
                int kr = kOff + r % channels * taps;
                for (int s = 0; s < used; s++)
                {
                    var d = dst[s..];
                    TP.MultiplyAdd(row[..(len - s)], k[kr + s], d, d);
                }
            }
        });
    }
}
