using System.Numerics;
using System.Runtime.CompilerServices;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace Kiln.Kernels.Cpu;

/// <summary>Row softmax and log-softmax, fused: max, exp-and-sum, scale in three vector passes per row. Float32 takes
/// e^(x - max) and its running sum in one pass (<see cref="FloatLanes.Exp{TV}"/>, under 1 ulp) where 256-bit lanes with
/// fused multiply-add exist; float64 (and float32 elsewhere) takes exp through <see cref="Elementwise.Unary{T}"/>, whose
/// float64 exp is the scalar one that gives the same bits on every run. Reference: <see cref="Reference.Softmax"/>.</summary>
public static class Softmax
{
    /// <summary>Softmax (or log-softmax) of each row of a contiguous [rows, len] block.</summary>
    public static void Rows<T>(T[] x, int xOff, int rows, int len, bool log, T[] y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (len == 0) return;
        if (typeof(T) == typeof(float) && TryRowsF((float[])(object)x, xOff, rows, len, log, (float[])(object)y)) return;
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

    static bool TryRowsF(float[] x, int xOff, int rows, int len, bool log, float[] y)
    {
        if (FloatLanes.Has512) RowsF<Lanes512F>(x, xOff, rows, len, log, y);
        else if (FloatLanes.Has256) RowsF<Lanes256F>(x, xOff, rows, len, log, y);
        else return false;
        return true;
    }

    static unsafe void RowsF<TV>(float[] x, int xOff, int rows, int len, bool log, float[] y) where TV : struct, IFloatLanes<TV>
    {
        // Past the last-level cache the terms go to a scratch row and the scaled ones stream out: written in place,
        // each output line would be read from memory first.
        bool stream = !log && Streaming.Pays((long)rows * len * sizeof(float));
        Strided.Parallel(rows, (long)rows * len * 4, (s, e) =>
        {
            if (stream) { StreamedF<TV>(x, xOff, len, y, s, e); return; }
            for (int r = s; r < e; r++)
            {
                var xr = new ReadOnlySpan<float>(x, xOff + r * len, len);
                var yr = new Span<float>(y, r * len, len);
                if (!Max<TV>(xr, yr, out float m)) continue;
                if (log)
                {
                    float lse = MathF.Log(ExpSum<TV>(xr, m, default));
                    TP.Subtract(xr, m, yr);
                    TP.Subtract(yr, lse, yr);
                }
                else TP.Multiply(yr, 1f / ExpSum<TV>(xr, m, yr), yr);
            }
        });
    }

    /// <summary>The row's maximum to subtract; false (the row filled with NaN) where the sum would be NaN.</summary>
    static bool Max<TV>(ReadOnlySpan<float> x, Span<float> y, out float m) where TV : struct, IFloatLanes<TV>
    {
        // The hardware's max, with x * 0 summed beside it to tell a row of finite values (sum 0) from one with a NaN or
        // an infinity (sum NaN), which takes TensorPrimitives' max and its NaN rule (that one tests every vector for NaN:
        // 26% of a cached 4096-wide row's softmax on a Zen 5 core, where this loop is 19%).
        if (FiniteMax<TV>(x) is { } finite) { m = finite; return true; }
        m = TP.Max(x);
        // NaN anywhere, or +inf (inf - inf), makes the sum and so every output NaN, as in the reference.
        if (float.IsNaN(m) || m == float.PositiveInfinity) { y.Fill(float.NaN); return false; }
        if (m == float.NegativeInfinity) m = 0;
        return true;
    }

    // The maximum of x when every element is finite (and x is not empty), else null.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float? FiniteMax<TV>(ReadOnlySpan<float> x) where TV : struct, IFloatLanes<TV>
    {
        int w = TV.Count, i = 0;
        if (x.Length < 2 * w) return null;
        TV m0 = TV.Load(x, 0), m1 = TV.Load(x, w), zero = TV.Splat(0f), bad0 = zero, bad1 = zero;
        for (; i + 2 * w <= x.Length; i += 2 * w)
        {
            TV v0 = TV.Load(x, i), v1 = TV.Load(x, i + w);
            m0 = TV.Max(m0, v0); m1 = TV.Max(m1, v1);
            bad0 = TV.Fma(v0, zero, bad0); bad1 = TV.Fma(v1, zero, bad1);
        }
        // The rest as the last two whole vectors, overlapping ones already seen.
        if (i < x.Length)
        {
            TV v0 = TV.Load(x, x.Length - 2 * w), v1 = TV.Load(x, x.Length - w);
            m0 = TV.Max(m0, v0); m1 = TV.Max(m1, v1);
            bad0 = TV.Fma(v0, zero, bad0); bad1 = TV.Fma(v1, zero, bad1);
        }
        if (float.IsNaN(TV.Sum(bad0 + bad1))) return null;
        Span<float> lanes = stackalloc float[w];
        TV.Max(m0, m1).Store(lanes, 0);
        float m = lanes[0];
        for (int l = 1; l < w; l++) m = MathF.Max(m, lanes[l]);
        return m;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static unsafe void StreamedF<TV>(float[] x, int xOff, int len, float[] y, int s, int e) where TV : struct, IFloatLanes<TV>
    {
        var t = Strided.Rent<float>(len);
        var terms = t.AsSpan(0, len);
        int ahead = CacheFetch.RowsAhead(len * sizeof(float));
        fixed (float* py = y, px = x)
        {
            for (int r = s; r < e; r++)
            {
                var xr = new ReadOnlySpan<float>(x, xOff + r * len, len);
                var yr = new Span<float>(y, r * len, len);
                if (!Max<TV>(xr, yr, out float m)) continue;
                // The products TP.Multiply(y, 1 / sum, y) forms, the head and tail one by one.
                float inv = 1f / ExpSum<TV>(xr, m, terms, r + ahead < e ? px + xOff + (long)(r + ahead) * len : null);
                int head = Streaming.Head(py + (long)r * len, len, TV.Count), i = 0;
                for (; i < head; i++) yr[i] = terms[i] * inv;
                var vi = TV.Splat(inv);
                for (; i + TV.Count <= len; i += TV.Count) Streamed.Put(TV.Load(terms, i) * vi, yr, i);
                for (; i < len; i++) yr[i] = terms[i] * inv;
            }
            Streaming.Fence();
        }
        Strided.Return(t);
    }

    /// <summary>Sum of e^(x - m) over the row (m finite, at least every x), storing each term in y unless y is empty,
    /// and fetching the row at <paramref name="next"/> (when not null; <see cref="CacheFetch.RowsAhead"/>) into L2 on the
    /// way: a row past the caches otherwise arrives at memory latency when its max pass starts (streamed 4096 x 4096 on
    /// a Zen 5, interleaved: 2 cores 32.6 -> 36.9 GB/s, one 18.3 -> 22.6).</summary>
    static unsafe float ExpSum<TV>(ReadOnlySpan<float> x, float m, Span<float> y, float* next = null) where TV : struct, IFloatLanes<TV>
    {
        var vm = TV.Splat(m);
        int w = TV.Count, i = x.Length / w * w;
        bool store = !y.IsEmpty;
        if (store && y.Length < x.Length) throw new ArgumentException($"softmax: {y.Length} terms for a row of {x.Length}", nameof(y));
        var a0 = ExpSumVectors(x, vm, y, store, next, out var a1);
        if (i < x.Length)
        {
            // The tail padded with -inf, whose terms are 0.
            Span<float> pad = stackalloc float[w];
            pad.Fill(float.NegativeInfinity);
            x[i..].CopyTo(pad);
            var e0 = ExpBelowZero(TV.Load(pad, 0) - vm);
            a0 += e0;
            if (store) { e0.Store(pad, 0); pad[..(x.Length - i)].CopyTo(y[i..]); }
        }
        return TV.Sum(a0 + a1);
    }

    // ExpSum over x's whole vectors, in two sums (the second as a1). Out of line: with the tail's calls in the same
    // method the JIT kept a1 on the stack, storing and reloading it on every pass, a store-to-load wait in its add
    // chain (with Max's loop above, cached 4096-wide rows on one Zen 5 core: 2.64-2.71 -> 3.28-3.31 G elements/s).
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static unsafe TV ExpSumVectors<TV>(ReadOnlySpan<float> x, TV vm, Span<float> y, bool store, float* next, out TV a1) where TV : struct, IFloatLanes<TV>
    {
        TV a0 = TV.Splat(0f), b1 = a0;
        int w = TV.Count, i = 0;
        // Two accumulators so consecutive vectors' exps overlap instead of waiting on one add chain.
        for (; i + 2 * w <= x.Length; i += 2 * w)
        {
            if (next != null)
            {
                CacheFetch.L2(next + i);
                if (2 * w * sizeof(float) > 64) CacheFetch.L2(next + i + w);
            }
            var e0 = ExpBelowZero(TV.Load(x, i) - vm);
            var e1 = ExpBelowZero(TV.Load(x, i + w) - vm);
            if (store) { e0.Store(y, i); e1.Store(y, i + w); }
            a0 += e0; b1 += e1;
        }
        for (; i + w <= x.Length; i += w)
        {
            var e0 = ExpBelowZero(TV.Load(x, i) - vm);
            if (store) e0.Store(y, i);
            a0 += e0;
        }
        a1 = b1;
        return a0;
    }

    // e^d for d <= 0 (not NaN): 0 below -87, where e^d is no longer a normal float32 and weighs nothing beside the
    // maximum's term 1.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static TV ExpBelowZero<TV>(TV d) where TV : struct, IFloatLanes<TV>
    {
        var tiny = TV.Less(d, TV.Splat(-87f));
        return TV.Select(tiny, TV.Splat(0f), FloatLanes.Exp(TV.Max(d, TV.Splat(-87f))));
    }
}
