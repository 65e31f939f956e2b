using System.Numerics;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace Kiln.Kernels.Cpu;

/// <summary>Row layer norm and RMS norm, fused: statistics in two vector passes (mean, then centred sum of squares),
/// then one pass of scale and shift. Reference: <see cref="Reference.LayerNorm"/>, <see cref="Reference.RmsNorm"/>.</summary>
public static class LayerNorm
{
    /// <summary>y = (x - mean) / sqrt(var + eps) * w + b per row of a contiguous [rows, len] block; w and b may be null.</summary>
    public static void Rows<T>(T[] x, int xOff, T[]? w, int wOff, T[]? b, int bOff, T eps, int rows, int len, T[] y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (len == 0) return;
        Strided.Parallel(rows, (long)rows * len * 4, (s, e) =>
        {
            for (int r = s; r < e; r++)
            {
                var xr = new ReadOnlySpan<T>(x, xOff + r * len, len);
                var yr = new Span<T>(y, r * len, len);
                T mean = TP.Sum(xr) / T.CreateTruncating(len);
                TP.Subtract(xr, mean, yr);
                T var = TP.SumOfSquares<T>(yr) / T.CreateTruncating(len);
                T rstd = T.One / T.Sqrt(var + eps);
                if (w is null) TP.Multiply(yr, rstd, yr);
                else
                {
                    TP.Multiply(yr, rstd, yr);
                    TP.Multiply(yr, new ReadOnlySpan<T>(w, wOff, len), yr);
                }
                if (b is not null) TP.Add(yr, new ReadOnlySpan<T>(b, bOff, len), yr);
            }
        });
    }

    /// <summary>y = x / sqrt(mean(x^2) + eps) * w per row of a contiguous [rows, len] block; w may be null.</summary>
    public static void RmsRows<T>(T[] x, int xOff, T[]? w, int wOff, T eps, int rows, int len, T[] y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (len == 0) return;
        Strided.Parallel(rows, (long)rows * len * 3, (s, e) =>
        {
            for (int r = s; r < e; r++)
            {
                var xr = new ReadOnlySpan<T>(x, xOff + r * len, len);
                var yr = new Span<T>(y, r * len, len);
                T ms = TP.SumOfSquares(xr) / T.CreateTruncating(len);
                T scale = T.One / T.Sqrt(ms + eps);
                TP.Multiply(xr, scale, yr);
                if (w is not null) TP.Multiply(yr, new ReadOnlySpan<T>(w, wOff, len), yr);
            }
        });
    }
}
