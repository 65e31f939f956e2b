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

/// <summary>
/// Causal linear attention by its prefix sum: a running state S = sum_{s &lt;= t} k_s v_s^T [d, dv] per batch, updated
/// and read with one SIMD multiply-add per row of S, so a sequence costs O(T d dv) instead of the T x T scores.
/// Batches run in parallel with a fixed order inside each. Reference: <see cref="Reference.CausalLinearAttention"/>.
/// </summary>
public static class LinearAttentionScan
{
    /// <summary>y[b, t] = q_t^T S_t over contiguous q, k [batch, T, d], v and y [batch, T, dv], from the given offsets.</summary>
    public static void Causal<T>(T[] q, int qOff, T[] k, int kOff, T[] v, int vOff, int batch, int len, int d, int dv, T[] y, int yOff)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Strided.Parallel(batch, (long)batch * len * d * dv * 2, (start, end) =>
        {
            var state = new T[d * dv];
            for (int b = start; b < end; b++)
            {
                Array.Clear(state);
                for (int t = 0; t < len; t++)
                {
                    int row = b * len + t;
                    var vt = v.AsSpan(vOff + row * dv, dv);
                    var yt = y.AsSpan(yOff + row * dv, dv);
                    yt.Clear();
                    for (int i = 0; i < d; i++)
                    {
                        var si = state.AsSpan(i * dv, dv);
                        TP.MultiplyAdd(vt, k[kOff + row * d + i], si, si);
                        TP.MultiplyAdd(si, q[qOff + row * d + i], yt, yt);
                    }
                }
            }
        });
    }
}
