using System.Numerics;
using System.Runtime.CompilerServices;
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
        if (typeof(T) == typeof(float) && TryRowsF((float[])(object)x, xOff, (float[]?)(object?)w, wOff, (float[]?)(object?)b, bOff, (float)(object)eps, rows, len, (float[])(object)y))
            return;
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
        long work = (long)rows * len * 3;
        // A decoding step's few short rows run here without making a closure.
        if (Strided.Inline(rows, work)) RmsRange(0, rows, x, xOff, w, wOff, eps, len, y);
        else RmsParallel(rows, work, x, xOff, w, wOff, eps, len, y);
    }

    static void RmsParallel<T>(int rows, long work, T[] x, int xOff, T[]? w, int wOff, T eps, int len, T[] y) where T : unmanaged, IFloatingPointIeee754<T> =>
        Strided.Parallel(rows, work, (s, e) => RmsRange(s, e, x, xOff, w, wOff, eps, len, y));

    static void RmsRange<T>(int s, int e, T[] x, int xOff, T[]? w, int wOff, T eps, int len, T[] y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int r = s; r < e; r++)
        {
            var xr = new ReadOnlySpan<T>(x, xOff + r * len, len);
            var yr = new Span<T>(y, r * len, len);
            T ms = TP.SumOfSquares(xr) / T.CreateTruncating(len);
            T scale = T.One / T.Sqrt(ms + eps);
            if (w is null) TP.Multiply(xr, scale, yr);
            else ScaleTimes(xr, scale, new ReadOnlySpan<T>(w, wOff, len), yr);
        }
    }

    // y = (x * s) * w in one pass, each product rounded as two separate multiplications would round it.
    static void ScaleTimes<T>(ReadOnlySpan<T> x, T s, ReadOnlySpan<T> w, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && Vector<T>.IsSupported)
        {
            var vs = new Vector<T>(s);
            for (; i + Vector<T>.Count <= x.Length; i += Vector<T>.Count)
                (new Vector<T>(x[i..]) * vs * new Vector<T>(w[i..])).CopyTo(y[i..]);
        }
        for (; i < x.Length; i++) y[i] = x[i] * s * w[i];
    }

    static bool TryRowsF(float[] x, int xOff, float[]? w, int wOff, float[]? b, int bOff, float eps, int rows, int len, float[] y)
    {
        if (FloatLanes.Has512) RowsF<Lanes512F>(x, xOff, w, wOff, b, bOff, eps, rows, len, y);
        else if (FloatLanes.Has256) RowsF<Lanes256F>(x, xOff, w, wOff, b, bOff, eps, rows, len, y);
        else return false;
        return true;
    }

    // Float32 in three passes over a row that stays in L1 or L2 after the first: the sum, the centred sum of squares
    // (four accumulators each, so the adds overlap), then (x - mean) * rstd * w + b with one rounding for the last two,
    // fetching a row a few KiB ahead on the way (CacheFetch.RowsAhead).
    static void RowsF<TV>(float[] x, int xOff, float[]? w, int wOff, float[]? b, int bOff, float eps, int rows, int len, float[] y) where TV : struct, IFloatLanes<TV>
    {
        bool stream = Streaming.Pays((long)rows * len * sizeof(float));
        Strided.Parallel(rows, (long)rows * len * 4, (s, e) =>
        {
            if (stream) RangeF<TV, Streamed>(x, xOff, w, wOff, b, bOff, eps, len, y, s, e);
            else RangeF<TV, Cached>(x, xOff, w, wOff, b, bOff, eps, len, y, s, e);
        });
    }

    static unsafe void RangeF<TV, TSink>(float[] x, int xOff, float[]? w, int wOff, float[]? b, int bOff, float eps, int len, float[] y, int s, int e)
        where TV : struct, IFloatLanes<TV> where TSink : struct, ISink
    {
        var ws = w is null ? default : new ReadOnlySpan<float>(w, wOff, len);
        var bs = b is null ? default : new ReadOnlySpan<float>(b, bOff, len);
        int ahead = CacheFetch.RowsAhead(len * sizeof(float));
        fixed (float* py = y, px = x)
        {
            for (int r = s; r < e; r++)
                RowF<TV, TSink>(new ReadOnlySpan<float>(x, xOff + r * len, len), ws, bs, eps, new Span<float>(y, r * len, len),
                    typeof(TSink) == typeof(Streamed) ? Streaming.Head(py + (long)r * len, len, TV.Count) : 0,
                    r + ahead < e ? px + xOff + (long)(r + ahead) * len : null);
            if (typeof(TSink) == typeof(Streamed)) Streaming.Fence();
        }
    }

    /// <summary>One row; the output's first <paramref name="head"/> elements are written one by one (a streamed row's
    /// part before its first vector-aligned address), by the same arithmetic as the vectors. The last pass fetches the
    /// row at <paramref name="ahead"/> (when not null) into L2.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static unsafe void RowF<TV, TSink>(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, float eps, Span<float> y, int head, float* ahead)
        where TV : struct, IFloatLanes<TV> where TSink : struct, ISink
    {
        int n = x.Length, c = TV.Count, i = 0;
        TV a0 = TV.Splat(0f), a1 = a0, a2 = a0, a3 = a0;
        for (; i + 4 * c <= n; i += 4 * c)
        {
            a0 += TV.Load(x, i); a1 += TV.Load(x, i + c); a2 += TV.Load(x, i + 2 * c); a3 += TV.Load(x, i + 3 * c);
        }
        for (; i + c <= n; i += c) a0 += TV.Load(x, i);
        float sum = TV.Sum(a0 + a1 + (a2 + a3));
        for (; i < n; i++) sum += x[i];
        float mean = sum / n;

        var vm = TV.Splat(mean);
        a0 = TV.Splat(0f); a1 = a0; a2 = a0; a3 = a0;
        for (i = 0; i + 4 * c <= n; i += 4 * c)
        {
            var d0 = TV.Load(x, i) - vm; var d1 = TV.Load(x, i + c) - vm; var d2 = TV.Load(x, i + 2 * c) - vm; var d3 = TV.Load(x, i + 3 * c) - vm;
            a0 = TV.Fma(d0, d0, a0); a1 = TV.Fma(d1, d1, a1); a2 = TV.Fma(d2, d2, a2); a3 = TV.Fma(d3, d3, a3);
        }
        for (; i + c <= n; i += c) { var d = TV.Load(x, i) - vm; a0 = TV.Fma(d, d, a0); }
        float ss = TV.Sum(a0 + a1 + (a2 + a3));
        for (; i < n; i++) { float d = x[i] - mean; ss = MathF.FusedMultiplyAdd(d, d, ss); }
        float rstd = 1f / MathF.Sqrt(ss / n + eps);

        var vr = TV.Splat(rstd);
        bool hasW = !w.IsEmpty, hasB = !b.IsEmpty;
        for (i = 0; i < head; i++) y[i] = One(x, w, b, mean, rstd, i);
        for (; i + c <= n; i += c)
        {
            if (ahead != null) CacheFetch.L2(ahead + i);
            var v = (TV.Load(x, i) - vm) * vr;
            if (hasW) v = hasB ? TV.Fma(v, TV.Load(w, i), TV.Load(b, i)) : v * TV.Load(w, i);
            else if (hasB) v += TV.Load(b, i);
            TSink.Put(v, y, i);
        }
        for (; i < n; i++) y[i] = One(x, w, b, mean, rstd, i);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float One(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, float mean, float rstd, int i)
    {
        float v = (x[i] - mean) * rstd;
        return !w.IsEmpty ? (!b.IsEmpty ? MathF.FusedMultiplyAdd(v, w[i], b[i]) : v * w[i]) : !b.IsEmpty ? v + b[i] : v;
    }
}
