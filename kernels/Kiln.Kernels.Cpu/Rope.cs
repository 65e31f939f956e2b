using System.Numerics;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Rotary position embedding, rotate-half convention, in one pass over x: each product and the sum rounded once, no
/// fused multiply-add, so the result equals the three ops it replaces (x cos, rotate_half(x) sin, their sum) bit for bit.
/// Reference: <see cref="Reference.Rope"/>.
/// </summary>
public static class Rope
{
    /// <summary>
    /// y [rows, d] = x cos + rotate_half(x) sin, where row r of x (contiguous from xOff) takes row r mod t of the
    /// contiguous tables cos and sin [t, d]; d is even. y may be x.
    /// </summary>
    public static void Run<T>(int rows, int t, int d, T[] x, int xOff, T[] cos, int cOff, T[] sin, int sOff, T[] y, int yOff)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (d % 2 != 0) throw new ArgumentException($"rope: the head width must be even, got {d}", nameof(d));
        if (rows == 0 || d == 0) return;
        // A decoding step's few heads run here without making a closure.
        if (Strided.Inline(rows, (long)rows * d)) Rows(0, rows, t, d, x, xOff, cos, cOff, sin, sOff, y, yOff);
        else RowsParallel(rows, t, d, x, xOff, cos, cOff, sin, sOff, y, yOff);
    }

    static void RowsParallel<T>(int rows, int t, int d, T[] x, int xOff, T[] cos, int cOff, T[] sin, int sOff, T[] y, int yOff) where T : unmanaged, IFloatingPointIeee754<T> =>
        Strided.Parallel(rows, (long)rows * d, (s, e) => Rows(s, e, t, d, x, xOff, cos, cOff, sin, sOff, y, yOff));

    static void Rows<T>(int s, int e, int t, int d, T[] x, int xOff, T[] cos, int cOff, T[] sin, int sOff, T[] y, int yOff) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int r = s; r < e; r++) Row(d, x.AsSpan(xOff + r * d, d), cos.AsSpan(cOff + r % t * d, d), sin.AsSpan(sOff + r % t * d, d), y.AsSpan(yOff + r * d, d));
    }

    // The two halves lane by lane: y1 = x1 c1 - x2 s1, y2 = x2 c2 + x1 s2 (x1 c1 + (-x2) s1 rounds as x1 c1 - x2 s1).
    static void Row<T>(int d, ReadOnlySpan<T> x, ReadOnlySpan<T> c, ReadOnlySpan<T> s, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int h = d / 2, i = 0;
        if (Vector.IsHardwareAccelerated && Vector<T>.IsSupported)
            for (; i + Vector<T>.Count <= h; i += Vector<T>.Count)
            {
                Vector<T> x1 = new(x[i..]), x2 = new(x[(h + i)..]);
                var lo = x1 * new Vector<T>(c[i..]) - x2 * new Vector<T>(s[i..]);
                var hi = x2 * new Vector<T>(c[(h + i)..]) + x1 * new Vector<T>(s[(h + i)..]);
                lo.CopyTo(y[i..]); hi.CopyTo(y[(h + i)..]);
            }
        for (; i < h; i++)
        {
            T x1 = x[i], x2 = x[h + i];
            y[i] = x1 * c[i] - x2 * s[i];
            y[h + i] = x2 * c[h + i] + x1 * s[h + i];
        }
    }
}
