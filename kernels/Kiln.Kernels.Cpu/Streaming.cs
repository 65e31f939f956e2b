using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Writing outputs around the caches. An output larger than the last-level cache is evicted before anything reads it
/// back, and an ordinary store first reads every line it writes (read for ownership): non-temporal stores skip that
/// read, a third of an out-of-place kernel's memory traffic. Measured on Zen 4 (2 cores, 64 MB output): y = 1.5 x
/// 3.4 -> 2.2 ms, y = a + b 4.8 -> 3.3 ms. A streamed kernel writes the elements before the output's first
/// vector-aligned address the ordinary way, by the same arithmetic, so its results are the same bits.
/// </summary>
internal static unsafe class Streaming
{
    /// <summary>Whether an output of <paramref name="bytes"/> in all is past the last-level cache.</summary>
    public static bool Pays(long bytes) => bytes >= (ForcedMinBytes ?? CpuCaches.L3);

    /// <summary>Tests set this to run the streamed paths at small sizes.</summary>
    internal static long? ForcedMinBytes;

    /// <summary>The number of floats before the first address in y (pinned) aligned to <paramref name="width"/> floats.</summary>
    public static int Head(float* y, int length, int width) => Head(y, length, sizeof(float), width * sizeof(float));

    /// <summary>The number of <paramref name="size"/>-byte elements before the first address in p (pinned) that
    /// <paramref name="alignment"/> bytes divide.</summary>
    static int Head(void* p, int length, int size, int alignment) => Math.Min(length, (int)((uint)-(nint)p % (uint)alignment) / size);

    /// <summary>Orders the streamed stores before the ordinary ones that follow (the team's completion signal).</summary>
    public static void Fence()
    {
        if (Sse.IsSupported) Sse.StoreFence();
    }

    /// <summary>dst = src for a piece of a copy whose whole output is <paramref name="outputBytes"/>; streamed past the
    /// last-level cache where 256-bit vectors exist.</summary>
    public static void Copy<T>(ReadOnlySpan<T> src, Span<T> dst, long outputBytes)
    {
        if (RuntimeHelpers.IsReferenceOrContainsReferences<T>() || !Pays(outputBytes) || !Avx.IsSupported || src.Overlaps(dst))
        {
            src.CopyTo(dst);
            return;
        }
        int size = Unsafe.SizeOf<T>();
        var s = MemoryMarshal.CreateReadOnlySpan(ref Unsafe.As<T, byte>(ref MemoryMarshal.GetReference(src)), src.Length * size);
        var d = MemoryMarshal.CreateSpan(ref Unsafe.As<T, byte>(ref MemoryMarshal.GetReference(dst)), src.Length * size);
        fixed (byte* ps = s, pd = d)
        {
            bool wide = Avx512F.IsSupported;
            int width = wide ? 64 : 32, n = s.Length;
            int head = Head(pd, n, 1, width), i = head;
            s[..head].CopyTo(d);
            if (wide)
                for (; i + 64 <= n; i += 64) Avx512F.StoreAlignedNonTemporal(pd + i, Vector512.Load(ps + i));
            else
                for (; i + 32 <= n; i += 32) Avx.StoreAlignedNonTemporal(pd + i, Vector256.Load(ps + i));
            Fence();
            s[i..].CopyTo(d[i..]);
        }
    }
}

/// <summary>Software prefetch for loops whose streams the hardware prefetcher keeps too few lines of in flight.</summary>
internal static unsafe class CacheFetch
{
    /// <summary>
    /// How many rows of <paramref name="rowBytes"/> ahead a row kernel that reads each row several times fetches its
    /// input into L2 (see <see cref="L2"/>) during its last pass: about 8 KiB, at least one row. The hardware
    /// prefetcher loses the stream where the passes turn back to a row's start; layer norm 8192 x 1024 on a 2-core
    /// Zen 5, interleaved: 52.7 -> 67.2 GB/s two rows (8 KiB) ahead, 62.0 one row ahead, 66.2 four rows ahead.
    /// </summary>
    public static int RowsAhead(int rowBytes) => Math.Max(1, (8192 + rowBytes - 1) / Math.Max(1, rowBytes));

    /// <summary>How far ahead a one-pass stream (the in-place arithmetic, the float sum) fetches into L1: in a plain
    /// x += x loop on a 2-core Zen 5, 16 KiB beat 8 KiB (+31% against +24%) and matched 32 KiB (+33%).</summary>
    public const int StreamAheadBytes = 16384;

    /// <summary>Fetches the line at p into L2 (nothing where p is null or SSE is missing).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void L2(void* p)
    {
        if (p != null && Sse.IsSupported) Sse.Prefetch1(p);
    }

    /// <summary>Fetches the line holding <paramref name="r"/> into L1 (nothing without SSE). r must lie inside its
    /// object: the fetch itself never faults, but a reference past an object's end is not one the GC may see.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void L1<T>(ref T r)
    {
        if (Sse.IsSupported) Sse.Prefetch0(Unsafe.AsPointer(ref r));
    }
}

/// <summary>Where a lane kernel's results go: <see cref="Cached"/> or <see cref="Streamed"/>.</summary>
internal interface ISink
{
    static abstract void Put<TV>(TV v, Span<float> y, int at) where TV : struct, IFloatLanes<TV>;
}

/// <summary>Ordinary stores.</summary>
internal readonly struct Cached : ISink
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Put<TV>(TV v, Span<float> y, int at) where TV : struct, IFloatLanes<TV> => v.Store(y, at);
}

/// <summary>Non-temporal stores: y pinned by the caller and y[at] aligned to the vector's width.</summary>
internal readonly unsafe struct Streamed : ISink
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Put<TV>(TV v, Span<float> y, int at) where TV : struct, IFloatLanes<TV> =>
        v.StoreStream((float*)Unsafe.AsPointer(ref Unsafe.Add(ref MemoryMarshal.GetReference(y), at)));
}
