using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Numerics;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Reductions over rows (the reduced axis innermost) and columns (the reduced axis outermost) of contiguous data.
/// Reference: <see cref="Reference.Reduce"/>.
/// </summary>
public static class Reduce
{
    /// <summary>The identity of <paramref name="op"/> (the result over an empty run).</summary>
    public static T Identity<T>(ReduceOp op) where T : INumber<T>, IMinMaxValue<T> => op switch
    {
        ReduceOp.Sum => T.Zero,
        ReduceOp.Prod => T.One,
        ReduceOp.Max => NegInf<T>(),
        _ => PosInf<T>(),
    };

    static T NegInf<T>() where T : INumber<T>, IMinMaxValue<T> =>
        typeof(T) == typeof(float) ? (T)(object)float.NegativeInfinity : typeof(T) == typeof(double) ? (T)(object)double.NegativeInfinity : T.MinValue;
    static T PosInf<T>() where T : INumber<T>, IMinMaxValue<T> =>
        typeof(T) == typeof(float) ? (T)(object)float.PositiveInfinity : typeof(T) == typeof(double) ? (T)(object)double.PositiveInfinity : T.MaxValue;

    /// <summary><paramref name="op"/> over one contiguous run.</summary>
    public static T Span<T>(ReduceOp op, ReadOnlySpan<T> x) where T : unmanaged, INumber<T>, IMinMaxValue<T>
    {
        if (x.Length == 0) return Identity<T>(op);
        return op switch
        {
            ReduceOp.Sum => typeof(T) == typeof(float) ? (T)(object)SumFloat(System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(x))
                : TP.Sum(x),
            ReduceOp.Prod => Product(x, 1),
            ReduceOp.Max => TP.Max(x),
            _ => TP.Min(x),
        };
    }

    /// <summary>
    /// The product of x[0], x[stride], ... x[(n-1)*stride] as <see cref="Reference.Reduce"/> defines it: for floating types
    /// the running product's binary exponent is kept apart in a long, so no partial product overflows or underflows on
    /// the way (lane-wise partial products can meet as infinity times zero and give NaN for a finite product); only the
    /// result rounds. Integer products wrap, as integer multiplication does.
    /// </summary>
    public static T Product<T>(ReadOnlySpan<T> x, int stride) where T : unmanaged, INumber<T>
    {
        int n = stride == 1 ? x.Length : (x.Length + stride - 1) / stride;
        if (typeof(T) != typeof(float) && typeof(T) != typeof(double))
        {
            if (stride == 1) return TP.Product(x);
            T p = T.One;
            for (int i = 0; i < n; i++) p *= x[i * stride];
            return p;
        }
        double m = 1.0;
        long e = 0;
        for (int i = 0; i < n; i++)
        {
            double v = double.CreateTruncating(x[i * stride]);
            if (v == 0 || !double.IsFinite(v))
            {
                var all = new double[n];
                for (int j = 0; j < n; j++) all[j] = double.CreateTruncating(x[j * stride]);
                return T.CreateTruncating(Reference.SpecialProduct(all));
            }
            int k = Math.ILogB(v);
            m *= Math.ScaleB(v, -k);   // exact: v / 2^k lies in [1, 2), so m stays in [1, 2^33) between renormalisations
            e += k;
            if ((i & 31) == 31) { k = Math.ILogB(m); m = Math.ScaleB(m, -k); e += k; }
        }
        return T.CreateTruncating(Math.ScaleB(m, (int)Math.Clamp(e, -4000, 4000)));
    }

    /// <summary>
    /// Sum of floats with four independent vector accumulators: TensorPrimitives.Sum keeps one, so each add waits for the
    /// last and a long sum runs at half the memory bandwidth. The accumulators combine in a fixed order (deterministic).
    /// Where 512-bit vectors are accelerated, their four accumulators are kept and loaded as 256-bit halves (the same
    /// sums and bits): a managed array is only 8-byte aligned, and on Zen 5 a 512-bit load straddling two cache lines
    /// halves a stream from memory (64 MiB on 2 cores: 64 GB/s, in halves 102, aligned 512-bit 104). The loops fetch
    /// <see cref="CacheFetch.StreamAheadBytes"/> ahead into L1: 16M floats on a 2-core Zen 5, three pairs of alternating
    /// processes, 74.5/71.1/70.2 -> 89.9/84.9/88.5 GB/s.
    /// </summary>
    public static float SumFloat(ReadOnlySpan<float> x)
    {
        const int SumAhead = CacheFetch.StreamAheadBytes / sizeof(float);
        int i = 0;
        float total = 0;
        if (Vector512.IsHardwareAccelerated && x.Length >= 64)
        {
            var z = Vector256<float>.Zero;
            Vector256<float> a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z, a7 = z;
            ref float p = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
            for (; i + 64 <= x.Length; i += 64)
            {
                if (i + SumAhead + 64 <= x.Length)
                    for (int l = 0; l < 64; l += 16) CacheFetch.L1(ref Unsafe.Add(ref p, i + SumAhead + l));
                a0 += Vector256.LoadUnsafe(ref p, (nuint)i);
                a1 += Vector256.LoadUnsafe(ref p, (nuint)(i + 8));
                a2 += Vector256.LoadUnsafe(ref p, (nuint)(i + 16));
                a3 += Vector256.LoadUnsafe(ref p, (nuint)(i + 24));
                a4 += Vector256.LoadUnsafe(ref p, (nuint)(i + 32));
                a5 += Vector256.LoadUnsafe(ref p, (nuint)(i + 40));
                a6 += Vector256.LoadUnsafe(ref p, (nuint)(i + 48));
                a7 += Vector256.LoadUnsafe(ref p, (nuint)(i + 56));
            }
            total = Vector512.Sum((Vector512.Create(a0, a1) + Vector512.Create(a2, a3)) + (Vector512.Create(a4, a5) + Vector512.Create(a6, a7)));
        }
        else if (Vector256.IsHardwareAccelerated && x.Length >= 32)
        {
            var a0 = Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
            ref float p = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
            for (; i + 32 <= x.Length; i += 32)
            {
                if (i + SumAhead + 32 <= x.Length)
                {
                    CacheFetch.L1(ref Unsafe.Add(ref p, i + SumAhead)); CacheFetch.L1(ref Unsafe.Add(ref p, i + SumAhead + 16));
                }
                a0 += Vector256.LoadUnsafe(ref p, (nuint)i);
                a1 += Vector256.LoadUnsafe(ref p, (nuint)(i + 8));
                a2 += Vector256.LoadUnsafe(ref p, (nuint)(i + 16));
                a3 += Vector256.LoadUnsafe(ref p, (nuint)(i + 24));
            }
            total = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        return total + TP.Sum(x[i..]);
    }

    /// <summary>y[r] = op(x[r*len .. r*len+len]) for a contiguous [rows, len] block starting at <paramref name="xOff"/>.</summary>
    public static void Rows<T>(ReduceOp op, T[] x, int xOff, int rows, int len, T[] y, int yOff) where T : unmanaged, INumber<T>, IMinMaxValue<T>
    {
        if (len == 0) { y.AsSpan(yOff, rows).Fill(Identity<T>(op)); return; }   // an empty view's offset may lie past its storage
        if (rows == 1 && op == ReduceOp.Sum && len >= Strided.ParallelThreshold * 4)
        {
            // One long sum: partial sums of a fixed number of chunks, spread over the cores and combined in a fixed
            // order, so the result does not depend on how many cores the machine has.
            const int chunks = 16;
            var partial = new T[chunks];
            Strided.Parallel(chunks, len, (s, e) =>
            {
                for (int c = s; c < e; c++)
                {
                    int a = (int)((long)len * c / chunks), b = (int)((long)len * (c + 1) / chunks);
                    partial[c] = Span(ReduceOp.Sum, new ReadOnlySpan<T>(x, xOff + a, b - a));
                }
            });
            y[yOff] = TP.Sum<T>(partial);
            return;
        }
        Strided.Parallel(rows, (long)rows * len, (s, e) =>
        {
            for (int r = s; r < e; r++) y[yOff + r] = Span(op, new ReadOnlySpan<T>(x, xOff + r * len, len));
        });
    }

    /// <summary>y[c] = op(x[0, c], x[1, c], ...) for a contiguous [len, cols] block: whole rows combined with vector ops.</summary>
    public static void Cols<T>(ReduceOp op, T[] x, int xOff, int len, int cols, T[] y, int yOff) where T : unmanaged, INumber<T>, IMinMaxValue<T>
    {
        Strided.Parallel(Math.Max(1, cols / 256 + (cols % 256 == 0 ? 0 : 1)), (long)len * cols, (s, e) =>
        {
            int c0 = s * 256, c1 = Math.Min(cols, e * 256);
            if (c1 <= c0) return;
            if (op == ReduceOp.Prod)
            {
                for (int c = c0; c < c1; c++) y[yOff + c] = len == 0 ? T.One : Product(new ReadOnlySpan<T>(x, xOff + c, (len - 1) * cols + 1), cols);
                return;
            }
            var acc = new Span<T>(y, yOff + c0, c1 - c0);
            acc.Fill(Identity<T>(op));
            for (int r = 0; r < len; r++)
            {
                var row = new ReadOnlySpan<T>(x, xOff + r * cols + c0, c1 - c0);
                switch (op)
                {
                    case ReduceOp.Sum: TP.Add(acc, row, acc); break;
                    case ReduceOp.Max: TP.Max(acc, row, acc); break;
                    default: TP.Min(acc, row, acc); break;
                }
            }
        });
    }

    /// <summary>Value and index of the first maximum (or minimum) of each row; NaN counts as the extreme.</summary>
    public static void ArgRows<T>(bool max, T[] x, int xOff, int rows, int len, T[] values, long[] indices) where T : unmanaged, INumber<T>
    {
        Strided.Parallel(rows, (long)rows * len, (s, e) =>
        {
            for (int r = s; r < e; r++)
            {
                var row = new ReadOnlySpan<T>(x, xOff + r * len, len);
                int i = max ? TP.IndexOfMax(row) : TP.IndexOfMin(row);
                indices[r] = i;
                values[r] = row[i];
            }
        });
    }

    /// <summary>Inclusive prefix sums of each row (from the end of the row when <paramref name="reverse"/>).</summary>
    public static void CumsumRows<T>(T[] x, int xOff, int rows, int len, bool reverse, T[] y) where T : unmanaged, INumber<T>
    {
        Strided.Parallel(rows, (long)rows * len, (s, e) =>
        {
            for (int r = s; r < e; r++)
            {
                int b = r * len;
                T acc = T.Zero;
                if (reverse) for (int i = len - 1; i >= 0; i--) { acc += x[xOff + b + i]; y[b + i] = acc; }
                else for (int i = 0; i < len; i++) { acc += x[xOff + b + i]; y[b + i] = acc; }
            }
        });
    }

    // One long row is scanned in this many pieces: each piece's total in parallel, the totals in order, then each piece
    // again from its prefix in parallel. A fixed count, so the result does not depend on how many cores run it.
    const int ScanPieces = 16;

    static bool LongRow(int rows, int len) => rows == 1 && len >= Strided.ParallelThreshold * 4;

    /// <summary>
    /// Inclusive scan <paramref name="op"/> (<see cref="ScanOp.Prod"/>, <see cref="ScanOp.Max"/> or <see cref="ScanOp.Min"/>)
    /// of each row, from the end when <paramref name="reverse"/>; for Max and Min, <paramref name="indices"/> gets the
    /// position in the row of the running extreme (the later one on ties, the last NaN once one is seen). Rows run on
    /// all cores, and so do the pieces of one long row.
    /// </summary>
    public static void ScanRows<T>(ScanOp op, T[] x, int xOff, int rows, int len, bool reverse, T[] y, long[]? indices) where T : unmanaged, INumber<T>
    {
        if (LongRow(rows, len))
        {
            var totals = new (T, long)[ScanPieces];
            Strided.Parallel(ScanPieces, len, (s, e) =>
            {
                for (int c = s; c < e; c++) totals[c] = ScanRun(op, x, xOff, 0, len, reverse, Piece(len, c), Piece(len, c + 1), (T.One, -1), null, null);
            });
            var from = new (T, long)[ScanPieces];
            (T, long) run = (T.One, -1);
            for (int c = 0; c < ScanPieces; c++) { from[c] = run; run = Combine(op, run, totals[c]); }
            Strided.Parallel(ScanPieces, len, (s, e) =>
            {
                for (int c = s; c < e; c++) ScanRun(op, x, xOff, 0, len, reverse, Piece(len, c), Piece(len, c + 1), from[c], y, indices);
            });
            return;
        }
        Strided.Parallel(rows, (long)rows * len, (s, e) =>
        {
            for (int r = s; r < e; r++) ScanRun(op, x, xOff, r * len, len, reverse, 0, len, (T.One, -1), y, indices);
        });
    }

    static int Piece(int len, int c) => (int)((long)len * c / ScanPieces);

    // Scans positions k0..k1 (in scan order) of the row at b from state (running value, index of the extreme; index -1:
    // nothing seen yet), writing y and indices where given, and returns the state after them.
    static (T, long) ScanRun<T>(ScanOp op, T[] x, int xOff, int b, int len, bool reverse, int k0, int k1, (T, long) state, T[]? y, long[]? indices)
        where T : unmanaged, INumber<T>
    {
        var (acc, at) = state;
        for (int k = k0; k < k1; k++)
        {
            int i = reverse ? len - 1 - k : k;
            T v = x[xOff + b + i];
            if (op == ScanOp.Prod) acc *= v;
            else if (at < 0 || Replaces(op, acc, v)) { acc = v; at = i; }
            if (y is not null) y[b + i] = acc;
            if (indices is not null) indices[b + i] = at;
        }
        return (acc, at);
    }

    // w after v in scan order replaces it as the running maximum (minimum): a NaN always does, and so does a tie.
    static bool Replaces<T>(ScanOp op, T v, T w) where T : INumber<T> => T.IsNaN(w) || (!T.IsNaN(v) && (op == ScanOp.Max ? w >= v : w <= v));

    // The state after a piece with total b that follows state a.
    static (T, long) Combine<T>(ScanOp op, (T, long) a, (T, long) b) where T : INumber<T> =>
        op == ScanOp.Prod ? (a.Item1 * b.Item1, -1) : b.Item2 < 0 ? a : a.Item2 < 0 || Replaces(op, a.Item1, b.Item1) ? b : a;

    /// <summary>Inclusive log(sum(exp)) of each row (from the end when <paramref name="reverse"/>), one log-add-exp per element; long rows in pieces as <see cref="ScanRows{T}"/>.</summary>
    public static void LogCumSumExpRows<T>(T[] x, int xOff, int rows, int len, bool reverse, T[] y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (LongRow(rows, len))
        {
            var totals = new T[ScanPieces];
            Strided.Parallel(ScanPieces, len * 8L, (s, e) =>
            {
                for (int c = s; c < e; c++) totals[c] = LogRun(x, xOff, 0, len, reverse, Piece(len, c), Piece(len, c + 1), T.NegativeInfinity, null);
            });
            var from = new T[ScanPieces];
            T run = T.NegativeInfinity;
            for (int c = 0; c < ScanPieces; c++) { from[c] = run; run = LogAddExp(run, totals[c]); }
            Strided.Parallel(ScanPieces, len * 8L, (s, e) =>
            {
                for (int c = s; c < e; c++) LogRun(x, xOff, 0, len, reverse, Piece(len, c), Piece(len, c + 1), from[c], y);
            });
            return;
        }
        Strided.Parallel(rows, (long)rows * len * 8, (s, e) =>
        {
            for (int r = s; r < e; r++) LogRun(x, xOff, r * len, len, reverse, 0, len, T.NegativeInfinity, y);
        });
    }

    static T LogRun<T>(T[] x, int xOff, int b, int len, bool reverse, int k0, int k1, T acc, T[]? y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int k = k0; k < k1; k++)
        {
            int i = reverse ? len - 1 - k : k;
            acc = LogAddExp(acc, x[xOff + b + i]);
            if (y is not null) y[b + i] = acc;
        }
        return acc;
    }

    /// <summary>log(exp(a) + exp(b)) as <see cref="Reference.LogAddExp"/>.</summary>
    public static T LogAddExp<T>(T a, T b) where T : IFloatingPointIeee754<T>
    {
        if (T.IsNaN(a) || T.IsNaN(b)) return T.NaN;
        T lo = T.Min(a, b), hi = T.Max(a, b);
        if (lo == hi && T.IsInfinity(lo)) return lo;
        T t = T.Exp(lo - hi), u = T.One + t;
        return hi + (u == T.One ? t : T.Log(u) * t / (u - T.One));
    }

    /// <summary>any (or all) of each row of booleans.</summary>
    public static void AnyAllRows(bool all, bool[] x, int xOff, int rows, int len, bool[] y)
    {
        for (int r = 0; r < rows; r++)
        {
            var row = new ReadOnlySpan<bool>(x, xOff + r * len, len);
            y[r] = all ? !row.Contains(false) : row.Contains(true);
        }
    }
}
