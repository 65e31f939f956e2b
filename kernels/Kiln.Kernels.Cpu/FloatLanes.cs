using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// A float32 vector as the activation kernels use it, so one generic body runs 16 lanes on AVX-512 and 8 on AVX2.
/// Multiply-adds are fused explicitly (the same bits on every JIT tier and every machine with FMA); masks are lanes of
/// all ones or all zeros.
/// </summary>
internal unsafe interface IFloatLanes<TV> where TV : struct, IFloatLanes<TV>
{
    static abstract int Count { get; }
    static abstract TV Splat(float value);
    /// <summary>The vector at x[at]. Unchecked: callers keep at + Count within x (the kernels loop to the span's end;
    /// a checked slice for every vector ran SiLU 14 cycles a vector instead of 12 on Zen 5).</summary>
    static abstract TV Load(ReadOnlySpan<float> x, int at);
    /// <summary>Stores to y[at], unchecked as <see cref="Load"/> is.</summary>
    void Store(Span<float> y, int at);
    /// <summary>A non-temporal store to an address aligned to the vector's width: the line goes to memory without being
    /// read first or kept in the caches.</summary>
    void StoreStream(float* at);
    static abstract TV operator +(TV a, TV b);
    static abstract TV operator -(TV a, TV b);
    static abstract TV operator *(TV a, TV b);
    static abstract TV operator /(TV a, TV b);
    static abstract TV operator -(TV a);
    /// <summary>a b + c, rounded once.</summary>
    static abstract TV Fma(TV a, TV b, TV c);
    static abstract TV Abs(TV a);
    /// <summary>The lesser lane, as the hardware gives it: with a NaN either operand may come back (x86 gives b), so a
    /// caller clamps for range only and carries NaN through some other operation.</summary>
    static abstract TV Min(TV a, TV b);
    /// <summary>The greater lane, as the hardware gives it (see <see cref="Min"/> for NaN).</summary>
    static abstract TV Max(TV a, TV b);
    static abstract TV RoundToEven(TV a);
    static abstract TV Less(TV a, TV b);
    static abstract TV Greater(TV a, TV b);
    /// <summary>mask ? a : b, lane by lane.</summary>
    static abstract TV Select(TV mask, TV a, TV b);
    /// <summary>Whether a lane of a is greater than b's (one compare into a mask register on AVX-512).</summary>
    static abstract bool AnyGreater(TV a, TV b);
    /// <summary>The sum of the lanes.</summary>
    static abstract float Sum(TV a);
    /// <summary>2^k for whole k in [-126, 127].</summary>
    static abstract TV Pow2(TV k);
    /// <summary>p 2^k for whole k in [-126, 127], rounded once (p times <see cref="Pow2"/>, in one instruction where there is one).</summary>
    static abstract TV ScaleB(TV p, TV k);
}

internal readonly unsafe struct Lanes512F(Vector512<float> v) : IFloatLanes<Lanes512F>
{
    readonly Vector512<float> _v = v;
    public Vector512<float> Value => _v;
    public static int Count => Vector512<float>.Count;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512F Splat(float value) => new(Vector512.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512F Load(ReadOnlySpan<float> x, int at) => new(Vector512.LoadUnsafe(ref MemoryMarshal.GetReference(x), (nuint)at));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(Span<float> y, int at) => _v.StoreUnsafe(ref MemoryMarshal.GetReference(y), (nuint)at);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void StoreStream(float* at) => System.Runtime.Intrinsics.X86.Avx512F.StoreAlignedNonTemporal(at, _v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512F operator +(Lanes512F a, Lanes512F b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512F operator -(Lanes512F a, Lanes512F b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512F operator *(Lanes512F a, Lanes512F b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512F operator /(Lanes512F a, Lanes512F b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512F operator -(Lanes512F a) => new(-a._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512F Fma(Lanes512F a, Lanes512F b, Lanes512F c) => new(Vector512.FusedMultiplyAdd(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512F Abs(Lanes512F a) => new(Vector512.Abs(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512F Min(Lanes512F a, Lanes512F b) => new(Vector512.MinNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512F Max(Lanes512F a, Lanes512F b) => new(Vector512.MaxNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512F RoundToEven(Lanes512F a) => new(Vector512.Round(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512F Less(Lanes512F a, Lanes512F b) => new(Vector512.LessThan(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512F Greater(Lanes512F a, Lanes512F b) => new(Vector512.GreaterThan(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512F Select(Lanes512F m, Lanes512F a, Lanes512F b) => new(Vector512.ConditionalSelect(m._v, a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool AnyGreater(Lanes512F a, Lanes512F b) => Vector512.GreaterThanAny(a._v, b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Lanes512F a) => Vector512.Sum(a._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes512F Pow2(Lanes512F k) => new(Vector512.ShiftLeft(Vector512.ConvertToInt32Native(k._v) + Vector512.Create(127), 23).AsSingle());
    // VSCALEFPS: one instruction for the conversion, add, shift and product (exact scaling, so the same bits).
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512F ScaleB(Lanes512F p, Lanes512F k) => new(System.Runtime.Intrinsics.X86.Avx512F.Scale(p._v, k._v));
}

internal readonly unsafe struct Lanes256F(Vector256<float> v) : IFloatLanes<Lanes256F>
{
    readonly Vector256<float> _v = v;
    public static int Count => Vector256<float>.Count;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256F Splat(float value) => new(Vector256.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256F Load(ReadOnlySpan<float> x, int at) => new(Vector256.LoadUnsafe(ref MemoryMarshal.GetReference(x), (nuint)at));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(Span<float> y, int at) => _v.StoreUnsafe(ref MemoryMarshal.GetReference(y), (nuint)at);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void StoreStream(float* at) => System.Runtime.Intrinsics.X86.Avx.StoreAlignedNonTemporal(at, _v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256F operator +(Lanes256F a, Lanes256F b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256F operator -(Lanes256F a, Lanes256F b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256F operator *(Lanes256F a, Lanes256F b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256F operator /(Lanes256F a, Lanes256F b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256F operator -(Lanes256F a) => new(-a._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256F Fma(Lanes256F a, Lanes256F b, Lanes256F c) => new(Vector256.FusedMultiplyAdd(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256F Abs(Lanes256F a) => new(Vector256.Abs(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256F Min(Lanes256F a, Lanes256F b) => new(Vector256.MinNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256F Max(Lanes256F a, Lanes256F b) => new(Vector256.MaxNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256F RoundToEven(Lanes256F a) => new(Vector256.Round(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256F Less(Lanes256F a, Lanes256F b) => new(Vector256.LessThan(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256F Greater(Lanes256F a, Lanes256F b) => new(Vector256.GreaterThan(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256F Select(Lanes256F m, Lanes256F a, Lanes256F b) => new(Vector256.ConditionalSelect(m._v, a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool AnyGreater(Lanes256F a, Lanes256F b) => Vector256.GreaterThanAny(a._v, b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Lanes256F a) => Vector256.Sum(a._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes256F Pow2(Lanes256F k) => new(Vector256.ShiftLeft(Vector256.ConvertToInt32Native(k._v) + Vector256.Create(127), 23).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256F ScaleB(Lanes256F p, Lanes256F k) => new(p._v * Pow2(k)._v);
}

/// <summary>An elementwise function written once for every lane width.</summary>
internal interface ILaneOp
{
    static abstract TV Apply<TV>(TV x) where TV : struct, IFloatLanes<TV>;

    /// <summary>Two vectors per loop trip (measured on Zen 4: SiLU 2.6x and the tanh GELU 1.4x faster so).</summary>
    static virtual bool Pairs => false;

    /// <summary>Whether <see cref="Common"/> is implemented: Apply has a rare out-of-line branch.</summary>
    static virtual bool HasRare => false;

    /// <summary>
    /// Apply without its rare branch, and whether a lane needs it. The loop then calls Apply out of line for those
    /// vectors only, so no vector is live across a call in the loop: the JIT spills such vectors to the stack on every
    /// trip, which ran the exact GELU 2-5x slower depending on where the stack happened to sit.
    /// </summary>
    static virtual TV Common<TV>(TV x, out bool rare) where TV : struct, IFloatLanes<TV> => throw new NotSupportedException();
}

/// <summary>Math on <see cref="IFloatLanes{TV}"/> shared by the activation kernels, and the span driver that runs them.</summary>
internal static class FloatLanes
{
    /// <summary>Whether <see cref="Lanes512F"/> runs in hardware.</summary>
    public static bool Has512 => Vector512.IsHardwareAccelerated;

    /// <summary>Whether <see cref="Lanes256F"/> runs in hardware, fused multiply-add included.</summary>
    public static bool Has256 => Vector256.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Fma.IsSupported;

    /// <summary>
    /// y = op(x) over spans (y may equal x) at the widest lane width here, the tail through the same lanes so a result
    /// does not depend on where its row ends; false (nothing written) without a 256-bit unit with fused multiply-add.
    /// </summary>
    /// <exception cref="ArgumentException">y is shorter than x.</exception>
    public static bool TryMap<TOp>(ReadOnlySpan<float> x, Span<float> y) where TOp : struct, ILaneOp
    {
        if (y.Length < x.Length) throw new ArgumentException($"lane map: output of {y.Length} elements for an input of {x.Length}", nameof(y));
        if (Has512) Map<Lanes512F, TOp>(x, y);
        else if (Has256) Map<Lanes256F, TOp>(x, y);
        else return false;
        return true;
    }

    // The loops in Vectors are their own methods, fully optimized from the first call (a tier-0 body of these generic
    // lane calls runs tens of times slower; inlined here, the lane calls outran the JIT's inline budget).
    static unsafe void Map<TV, TOp>(ReadOnlySpan<float> x, Span<float> y) where TV : struct, IFloatLanes<TV> where TOp : struct, ILaneOp
    {
        int i;
        // A long row comes in one piece per thread. In place, a line is read before it is written anyway: streaming
        // would save nothing.
        if (Streaming.Pays((long)y.Length * sizeof(float) * WorkerTeam.Threads) && !x.Overlaps(y))
            fixed (float* py = y)
            {
                // The head through the padded path (same lanes, same bits).
                int head = Streaming.Head(py, y.Length, TV.Count);
                Padded<TV, TOp>(x[..head], y[..head]);
                i = head + Vectors<TV, TOp, Streamed>(x[head..], y[head..]);
                Streaming.Fence();
            }
        else i = Vectors<TV, TOp, Cached>(x, y);
        Padded<TV, TOp>(x[i..], y[i..]);
    }

    /// <summary>op over the whole vectors of x into y through <typeparamref name="TSink"/>; the number of elements done.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static int Vectors<TV, TOp, TSink>(ReadOnlySpan<float> x, Span<float> y) where TV : struct, IFloatLanes<TV> where TOp : struct, ILaneOp where TSink : struct, ISink
    {
        int i = 0;
        if (TOp.HasRare)
            for (; i + TV.Count <= x.Length; i += TV.Count)
            {
                if (i + 2 * TV.Count <= x.Length)
                {
                    var c0 = TOp.Common(TV.Load(x, i), out bool rare0);
                    var c1 = TOp.Common(TV.Load(x, i + TV.Count), out bool rare1);
                    if (rare0 | rare1)
                    {
                        // Only the vector with a rare lane is redone (a vector reads and writes its own slot only, so
                        // storing its partner first is safe when y is x).
                        if (!rare0) TSink.Put(c0, y, i);
                        if (!rare1) TSink.Put(c1, y, i + TV.Count);
                        Rare<TV, TOp, TSink>(x, y, rare0 ? i : i + TV.Count, rare0 & rare1 ? 2 : 1);
                    }
                    else { TSink.Put(c0, y, i); TSink.Put(c1, y, i + TV.Count); }
                    i += TV.Count;
                    continue;
                }
                var c = TOp.Common(TV.Load(x, i), out bool rare);
                if (rare) Rare<TV, TOp, TSink>(x, y, i, 1); else TSink.Put(c, y, i);
            }
        else if (TOp.Pairs)
            for (; i + 2 * TV.Count <= x.Length; i += 2 * TV.Count)
            {
                // Both loaded before either is stored: y may be x.
                var a = TOp.Apply(TV.Load(x, i));
                var b = TOp.Apply(TV.Load(x, i + TV.Count));
                TSink.Put(a, y, i); TSink.Put(b, y, i + TV.Count);
            }
        for (; i + TV.Count <= x.Length; i += TV.Count) TSink.Put(TOp.Apply(TV.Load(x, i)), y, i);
        return i;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Rare<TV, TOp, TSink>(ReadOnlySpan<float> x, Span<float> y, int i, int vectors) where TV : struct, IFloatLanes<TV> where TOp : struct, ILaneOp where TSink : struct, ISink
    {
        // Through the same sink: one ordinary store among streamed ones ran the exact GELU (a rare vector in 25) 1.5x slower.
        for (int v = 0; v < vectors; v++, i += TV.Count) TSink.Put(TOp.Apply(TV.Load(x, i)), y, i);
    }

    /// <summary>y = op(x) for fewer elements than a vector, through the same lanes, so a result does not depend on where
    /// its row ends.</summary>
    static void Padded<TV, TOp>(ReadOnlySpan<float> x, Span<float> y) where TV : struct, IFloatLanes<TV> where TOp : struct, ILaneOp
    {
        if (x.IsEmpty) return;
        Span<float> tail = stackalloc float[TV.Count];
        tail.Clear();
        x.CopyTo(tail);
        TOp.Apply(TV.Load(tail, 0)).Store(tail, 0);
        tail[..x.Length].CopyTo(y);
    }

    /// <summary>
    /// e^x for x in [-87, 88] (normal results): x = k ln 2 + r with ln 2 in two parts (k ln2hi exact), |r| &lt;= ln 2 / 2,
    /// e^r by a degree-6 polynomial fitted for relative error on that interval (3.6e-9), times 2^k. Under 0.9 ulp against
    /// float64's exp on every seventh float in [-87, 88].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Exp<TV>(TV x) where TV : struct, IFloatLanes<TV>
    {
        var k = Log2eRounded(x);
        return Scaled(k, Reduce(k, x), 0);
    }

    /// <summary>
    /// e^(x + lo) 2^scale for x + lo in [-87, 88] less scale (normal results), lo a correction below 2^-10 (the low part of
    /// an exactly split argument): it joins the reduced argument, so its bits are not lost to the rounding of x + lo.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV ExpSplit<TV>(TV x, TV lo, int scale) where TV : struct, IFloatLanes<TV>
    {
        var k = Log2eRounded(x);
        return Scaled(k, Reduce(k, x) + lo, scale);
    }

    // x log2(e) rounded to a whole number: adding 1.5 * 2^23 in the multiply-add leaves no fraction bits, and taking it
    // away again is exact. One multiply-add and one add instead of a multiply and a round, which share the two FMA
    // pipes with the polynomial on Zen 5.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static TV Log2eRounded<TV>(TV x) where TV : struct, IFloatLanes<TV> =>
        TV.Fma(x, TV.Splat(1.44269504088896341f), TV.Splat(12582912f)) - TV.Splat(12582912f);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static TV Reduce<TV>(TV k, TV x) where TV : struct, IFloatLanes<TV>
    {
        var r = TV.Fma(k, TV.Splat(-0.693145751953125f), x);
        return TV.Fma(k, TV.Splat(-1.428606765330187045e-06f), r);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static TV Scaled<TV>(TV k, TV r, int scale) where TV : struct, IFloatLanes<TV>
    {
        var p = TV.Fma(TV.Splat(0.0013751383f), r, TV.Splat(0.008368923f));
        p = TV.Fma(p, r, TV.Splat(0.041669533f));
        p = TV.Fma(p, r, TV.Splat(0.16666518f));
        p = TV.Fma(p, r, TV.Splat(0.49999988f));
        p = TV.Fma(p, r, TV.Splat(1f));
        p = TV.Fma(p, r, TV.Splat(1f));
        return TV.ScaleB(p, scale == 0 ? k : k + TV.Splat(scale));
    }
}
