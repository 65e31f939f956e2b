using System.Numerics;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace Kiln.Kernels.Cpu;

/// <summary>Row softmax and log-softmax, fused: max, exp-and-sum, scale in three vector passes per row (exp through
/// <see cref="Elementwise.Unary{T}"/>, whose float64 exp is the scalar one that gives the same bits on every run).
/// Reference: <see cref="Reference.Softmax"/>.</summary>
public static class Softmax
{
    /// <summary>Softmax (or log-softmax) of each row of a contiguous [rows, len] block.</summary>
    public static void Rows<T>(T[] x, int xOff, int rows, int len, bool log, T[] y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (len == 0) return;
        Strided.Parallel(rows, (long)rows * len * 4, (s, e) =>
        {
            for (int r = s; r < e; r++)
            {
                var xr = new ReadOnlySpan<T>(x, xOff + r * len, len);
                var yr = new Span<T>(y, r * len, len);
                T m = TP.Max(xr);
                if (T.IsInfinity(m)) m = T.IsNegative(m) ? T.Zero : m;
                TP.Subtract(xr, m, yr);
                if (log)
                {
                    // log softmax = (x - m) - log(sum(exp(x - m))); exp goes to a scratch row.
                    var tmp = Strided.Rent<T>(len);
                    Elementwise.Unary(UnaryOp.Exp, yr, tmp.AsSpan(0, len));
                    T lse = T.Log(TP.Sum<T>(tmp.AsSpan(0, len)));
                    Strided.Return(tmp);
                    TP.Subtract(yr, lse, yr);
                }
                else
                {
                    Elementwise.Unary(UnaryOp.Exp, yr, yr);
                    T sum = TP.Sum<T>(yr);
                    TP.Multiply(yr, T.One / sum, yr);
                }
            }
        });
    }
}
