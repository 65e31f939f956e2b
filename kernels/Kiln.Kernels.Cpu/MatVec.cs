using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Skinny products Y[m, n] = X[m, k] W[k, n] (+ bias, then ReLU) for m = 1 .. <see cref="MaxRows"/>: matrix-vector
/// products and decoding batches, where the weight W is far larger than X and Y and the product is bound by the memory
/// traffic of W. W is read straight from its storage once, all m rows at a time, never packed: in its row-major [k, n]
/// layout (a matmul's B) the workers take panels of output columns and stream eight W rows at a time across each panel,
/// whose m accumulator rows stay in L1; in the [n, k] layout (a linear layer's [out, in] weight) they take blocks of
/// output columns and stream their W rows, each a dot product against up to four X rows in registers (a single X row
/// takes two rows a pass, a quarter of the block apart, so four streams are in flight);
/// where those rows are short (a small model's k of a few hundred), eight of them at a time against one X row, their
/// lane sums finished together.
/// Half-precision weights (bfloat16 bits in ushort, or Half) are widened to float32 in registers and accumulated in
/// float32. Each element of Y is computed by one thread in a fixed order, so results do not depend on the thread count.
/// Reference: <see cref="Reference.Gemm"/>.
/// </summary>
public static unsafe class MatVec
{
    /// <summary>The most rows of X a call takes (products with more rows go to <see cref="Gemm"/>).</summary>
    public const int MaxRows = 8;

    /// <summary>
    /// Weight bytes below which a product stays on the calling thread. Alone, two threads already win at 128 KB (a 2-core
    /// Zen 4: 2.9 -> 2.2 us); between the other ops of a decoding step they lost (looping-tiny, whose 128 KB products
    /// went to the team: 147 -> 198 us a token), the handoff and the other core's cold caches costing more than the half.
    /// </summary>
    public const long ParallelBytes = 1L << 18;

    // Bytes of the m accumulator rows of a [k, n] panel at most (L1-resident: 3/4 of the L1D, 24 KiB on Zen 4), and of
    // the weight a work part covers at least.
    static readonly int PanelAccBytes = (int)Math.Min(1L << 20, CpuCaches.L1Data * 3 / 4);
    const long PartBytes = 64 * 1024;

    // [n, k] weights with rows of at most GroupK elements take output columns Group at a time (float32 sums, AVX): a
    // lane sum costs about as much as a dot product of a few hundred, and eight of them finish together for the price of
    // two. The bound is in elements, not bytes, so a half weight and its widened float32 copy take the same path.
    const int Group = 8, GroupK = 256;

    // How far ahead of its loads Rows8 prefetches each W row.
    const int PrefetchBytes = 512;

    /// <summary>Whether a W with these strides is one of the two streamed layouts (one unit stride).</summary>
    public static bool Streams(int wRs, int wCs) => wRs == 1 || wCs == 1;

    /// <summary>
    /// Y[i, j] = sum_p X[i, p] W[p, j] (+ bias[biasOff + j]; then max(., 0) when <paramref name="relu"/>) for m &lt;=
    /// <see cref="MaxRows"/>. X's element (i, p) is x[xOff + i*xRs + p*xCs] (any strides); W's element (p, j) is
    /// w[wOff + p*wRs + j*wCs] with wCs = 1 (W row-major [k, n]) or wRs = 1 (W stored [n, k], a linear layer's weight);
    /// Y is row-major with leading dimension <paramref name="ldy"/> and is only written. T is float or double;
    /// <typeparamref name="TW"/> is T, or for float: ushort (bfloat16 bits) or Half, widened to float32.
    /// <c>kernel</c> picks the vector width (Auto: <see cref="Gemm.Best"/>); <c>threads</c> bounds the workers (0: the team).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">m is negative or above <see cref="MaxRows"/>, or n or k is negative.</exception>
    /// <exception cref="ArgumentException">Neither of W's strides is 1.</exception>
    /// <exception cref="NotSupportedException">The element types have no kernel, or the kernel is not accelerated here.</exception>
    public static void Run<T, TW>(int m, int n, int k, T[] x, int xOff, int xRs, int xCs, TW[] w, int wOff, int wRs, int wCs,
        T[] y, int yOff, int ldy, T[]? bias = null, int biasOff = 0, bool relu = false, GemmKernel kernel = GemmKernel.Auto, int threads = 0)
        where T : unmanaged, INumber<T> where TW : unmanaged
    {
        if (!(typeof(T) == typeof(float) && (typeof(TW) == typeof(float) || typeof(TW) == typeof(ushort) || typeof(TW) == typeof(Half))
              || typeof(T) == typeof(double) && typeof(TW) == typeof(double)))
            throw new NotSupportedException($"matvec: no kernel for {typeof(T).Name} rows times {typeof(TW).Name} weights (float with float, ushort (bfloat16) or Half; double with double)");
        if (m < 0 || m > MaxRows) throw new ArgumentOutOfRangeException(nameof(m), m, $"matvec takes 0 to {MaxRows} rows");
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        if (!Streams(wRs, wCs)) throw new ArgumentException($"matvec: W needs a unit stride along k or n, got strides ({wRs}, {wCs})", nameof(w));
        if (kernel == GemmKernel.Auto) kernel = Gemm.Best;
        if (kernel == GemmKernel.Vector512 && !Vector512.IsHardwareAccelerated || kernel == GemmKernel.Vector256 && !Vector256.IsHardwareAccelerated)
            throw new NotSupportedException($"matvec: the {kernel} kernel is not hardware-accelerated on this machine");
        if (m == 0 || n == 0) return;
        if ((long)n * k * sizeof(TW) < ParallelBytes) threads = 1;
        else if (threads <= 0) threads = WorkerTeam.Threads;

        // X is tiny next to W: a contiguous [m, k] copy lets the inner loops take whole vectors of a row.
        T[] xs = x;
        int xo = xOff;
        if (xCs != 1 || xRs != k && m > 1)
        {
            xs = Scratch<T, XCopy>.Get(m * k);
            xo = 0;
            for (int i = 0; i < m; i++)
                for (int p = 0; p < k; p++) xs[i * k + p] = x[xOff + i * xRs + p * xCs];
        }
        bool kn = wCs == 1 && !(wRs == 1 && n == 1);
        int lanes = kernel switch { GemmKernel.Vector512 => Vector512<T>.Count, GemmKernel.Vector256 => Vector256<T>.Count, _ => 1 };
        var pairs = !kn && typeof(TW) != typeof(T) && Grouped<T>(lanes, k) ? SplitPairs(m, k, xs, xo, 2 * lanes) : null;
        var args = new Args<T, TW>(m, n, k, xs, xo, pairs, w, wOff, wCs == 1 ? wRs : wCs, y, yOff, ldy, bias, biasOff, relu);
        switch (kernel)
        {
            case GemmKernel.Vector512: Dispatch<Vector512<T>, Lanes512<T, TW>, T, TW>(args, kn, threads); break;
            case GemmKernel.Vector256: Dispatch<Vector256<T>, Lanes256<T, TW>, T, TW>(args, kn, threads); break;
            default: Dispatch<T, Lanes1<T, TW>, T, TW>(args, kn, threads); break;
        }
    }

    // X's m contiguous rows of k with each whole chunk of `chunk` elements split into its even then its odd elements
    // (the layout Cols8 reads against half weights); the tail stays as it is.
    // T is float (Grouped); the permutes are Fold512's and Pair256's.
    static T[] SplitPairs<T>(int m, int k, T[] x, int xOff, int chunk) where T : unmanaged
    {
        var dst = Scratch<T, SplitX>.Get(m * k);
        int whole = k / chunk * chunk;
        fixed (T* xp = x, dp = dst)
            for (int i = 0; i < m; i++)
            {
                float* r = (float*)xp + xOff + i * k, o = (float*)dp + i * k;
                for (int c = 0; c < whole; c += chunk)
                    if (chunk == 32)
                    {
                        var (lo, hi) = (Vector512.Load(r + c), Vector512.Load(r + c + 16));
                        Avx512F.PermuteVar16x32x2(lo, EvenLanes, hi).Store(o + c);
                        Avx512F.PermuteVar16x32x2(lo, EvenLanes + Vector512<int>.One, hi).Store(o + c + 16);
                    }
                    else
                    {
                        var (lo, hi) = (Vector256.Load(r + c), Vector256.Load(r + c + 8));
                        Avx2.Permute4x64(Avx.Shuffle(lo, hi, 0x88).AsDouble(), 0xD8).AsSingle().Store(o + c);
                        Avx2.Permute4x64(Avx.Shuffle(lo, hi, 0xDD).AsDouble(), 0xD8).AsSingle().Store(o + c + 8);
                    }
                new ReadOnlySpan<float>(r + whole, k - whole).CopyTo(new Span<float>(o + whole, k - whole));
            }
        return dst;
    }

    // XPairs: X's rows split for Cols8 against half weights (SplitPairs), or null.
    readonly record struct Args<T, TW>(int M, int N, int K, T[] X, int XOff, T[]? XPairs, TW[] W, int WOff, int Ldw, T[] Y, int YOff, int Ldy,
        T[]? Bias, int BiasOff, bool Relu);

    static void Dispatch<TV, TL, T, TW>(Args<T, TW> a, bool kn, int threads)
        where TV : struct where TL : struct, ILanes<TV, T, TW> where T : unmanaged, INumber<T> where TW : unmanaged
    {
        if (kn)
        {
            // Panels of whole vectors, as few as a multiple of the threads allows with accumulators of at most
            // PanelAccBytes: the fewer the panels, the longer the runs each W row is read in (on Zen 4, [4096, 11008]
            // f32 on 2 threads: one panel of 5504 columns per thread 32-35 GB/s, two of 2752 28-31).
            int unit = Math.Max(64, TL.Count);
            long accBytes = (long)a.M * a.N * sizeof(T), perRound = (long)threads * PanelAccBytes;
            int panels = threads * (int)Math.Max(1, (accBytes + perRound - 1) / perRound);
            int nb = Math.Max(unit, ((a.N + panels - 1) / panels + unit - 1) / unit * unit);
            panels = (a.N + nb - 1) / nb;
            int parts = Parts(threads, panels, (long)nb * a.K * sizeof(TW));
            if (parts > 1) PanelsParallel<TV, TL, T, TW>(a, nb, panels, parts);
            else Panels<TV, TL, T, TW>(a, nb, 0, panels);
        }
        else
        {
            // Blocks of output columns (rows of the stored W); a part covers about PartBytes of W at least. Grouped columns
            // are split on group boundaries, so each column's summation order does not depend on the thread count.
            bool grouped = Grouped<T>(TL.Count, a.K);
            int unit = grouped ? Group : 1, units = (a.N + unit - 1) / unit, parts = Parts(threads, units, (long)a.K * sizeof(TW) * unit);
            if (parts > 1) ColumnsParallel<TV, TL, T, TW>(a, unit, units, parts, grouped);
            else ColumnsNK<TV, TL, T, TW>(a, 0, a.N, grouped);
        }
    }

    static void Panels<TV, TL, T, TW>(Args<T, TW> a, int nb, int q0, int q1)
        where TV : struct where TL : struct, ILanes<TV, T, TW> where T : unmanaged, INumber<T> where TW : unmanaged
    {
        var acc = Scratch<T, Acc>.Get(a.M * nb);
        for (int q = q0; q < q1; q++) PanelKN<TV, TL, T, TW>(a, q * nb, Math.Min(nb, a.N - q * nb), acc);
    }

    static void PanelsParallel<TV, TL, T, TW>(Args<T, TW> a, int nb, int panels, int parts)
        where TV : struct where TL : struct, ILanes<TV, T, TW> where T : unmanaged, INumber<T> where TW : unmanaged =>
        RunParts(parts, panels, (s, e) => Panels<TV, TL, T, TW>(a, nb, s, e));

    static void ColumnsParallel<TV, TL, T, TW>(Args<T, TW> a, int unit, int units, int parts, bool grouped)
        where TV : struct where TL : struct, ILanes<TV, T, TW> where T : unmanaged, INumber<T> where TW : unmanaged =>
        RunParts(parts, units, (s, e) => ColumnsNK<TV, TL, T, TW>(a, s * unit, Math.Min(e * unit, a.N), grouped));

    // Work over [0, count) goes in contiguous parts, a few per thread dealt in home blocks (the weights a thread read
    // last call are the ones it reads again, which a decoding step's caches may hold), so a thread the OS delays leaves
    // little for the others to wait on, and none smaller than PartBytes of weight. 1: run it here.
    static int Parts(int threads, int count, long bytesPerItem) =>
        threads <= 1 ? 1 : (int)Math.Min(Math.Min(count, 4L * threads), Math.Max(1, bytesPerItem * count / PartBytes));

    static void RunParts(int parts, int count, Action<int, int> body) =>
        WorkerTeam.For(parts, t =>
        {
            int s = (int)((long)count * t / parts), e = (int)((long)count * (t + 1) / parts);
            if (e > s) body(s, e);
        }, homeBlocks: true);

    // Columns [j0, j0 + nb) of Y, W row-major [k, n]: W's rows stream through eight at a time (p unrolled so each
    // accumulator is loaded and stored once per eight rows), each W vector widened once and used by all m rows.
    // Like every kernel loop here, never inlined: inlined into a caller whose inline budget then runs out (a tier-1
    // lambda or backend method), its lane helpers stayed calls (bf16 [4096, 4096] after other bench workloads: 0.6 ->
    // 5 ms; one core 1.2 -> 10.9 ms).
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void PanelKN<TV, TL, T, TW>(Args<T, TW> a, int j0, int nb, T[] accArr)
        where TV : struct where TL : struct, ILanes<TV, T, TW> where T : unmanaged, INumber<T> where TW : unmanaged
    {
        int m = a.M, k = a.K, nv = nb / TL.Count * TL.Count;
        long ldw = a.Ldw;
        fixed (T* xp = a.X, acc = accArr)
        fixed (TW* wp = a.W)
        {
            new Span<T>(acc, m * nb).Clear();
            T* x = xp + a.XOff;
            TW* w = wp + a.WOff + j0;
            int p = 0;
            for (; p + 8 <= k; p += 8)
            {
                TW* w0 = w + p * ldw;
                Rows8<TV, TL, T, TW>(m, k, x + p, w0, ldw, 0, nv, acc, nb);
                if (nv < nb) Rows8<T, Lanes1<T, TW>, T, TW>(m, k, x + p, w0, ldw, nv, nb, acc, nb);
            }
            for (; p < k; p++)
            {
                TW* w0 = w + p * ldw;
                Row1<TV, TL, T, TW>(m, k, x + p, w0, 0, nv, acc, nb);
                if (nv < nb) Row1<T, Lanes1<T, TW>, T, TW>(m, k, x + p, w0, nv, nb, acc, nb);
            }
        }
        Write(a, accArr, nb, j0, nb);
    }

    // Eight W rows per pass: eight streams in flight (measured on Zen 4, [4096, 11008] f32 on 2 threads: 8 rows at a
    // time 35 GB/s, 4 at a time 32); the last k % 8 rows go one at a time (the same order of multiply-adds). Each row is
    // prefetched PrefetchBytes ahead: the hardware prefetchers keep too few of eight interleaved streams running (a Zen
    // 5, interleaved in one process: [4096, 4096] f32 on one core +21%, bf16 +11%; on two f32 +6%, bf16 -5%; [4096,
    // 11008] on two, f32 and bf16 +27%; 256 bytes ahead or an L2 prefetch 1-2 KB ahead did less).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Rows8<TV, TL, T, TW>(int m, int k, T* x, TW* w0, long ldw, int from, int to, T* acc, int nb)
        where TV : struct where TL : struct, ILanes<TV, T, TW> where T : unmanaged, INumber<T> where TW : unmanaged
    {
        TW* w1 = w0 + ldw, w2 = w1 + ldw, w3 = w2 + ldw, w4 = w3 + ldw, w5 = w4 + ldw, w6 = w5 + ldw, w7 = w6 + ldw;
        for (int v = from; v < to; v += TL.Count)
        {
            if (Sse.IsSupported && typeof(TV) != typeof(T))
            {
                int d = v + PrefetchBytes / sizeof(TW);
                Sse.Prefetch0(w0 + d); Sse.Prefetch0(w1 + d); Sse.Prefetch0(w2 + d); Sse.Prefetch0(w3 + d);
                Sse.Prefetch0(w4 + d); Sse.Prefetch0(w5 + d); Sse.Prefetch0(w6 + d); Sse.Prefetch0(w7 + d);
            }
            TV b0 = TL.LoadW(w0 + v), b1 = TL.LoadW(w1 + v), b2 = TL.LoadW(w2 + v), b3 = TL.LoadW(w3 + v);
            TV b4 = TL.LoadW(w4 + v), b5 = TL.LoadW(w5 + v), b6 = TL.LoadW(w6 + v), b7 = TL.LoadW(w7 + v);
            T* xi = x, ai = acc + v;
            for (int i = 0; i < m; i++, xi += k, ai += nb)
            {
                TV s = TL.Load(ai);
                s = TL.Fma(b0, TL.Splat(xi[0]), s);
                s = TL.Fma(b1, TL.Splat(xi[1]), s);
                s = TL.Fma(b2, TL.Splat(xi[2]), s);
                s = TL.Fma(b3, TL.Splat(xi[3]), s);
                s = TL.Fma(b4, TL.Splat(xi[4]), s);
                s = TL.Fma(b5, TL.Splat(xi[5]), s);
                s = TL.Fma(b6, TL.Splat(xi[6]), s);
                s = TL.Fma(b7, TL.Splat(xi[7]), s);
                TL.Store(s, ai);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Row1<TV, TL, T, TW>(int m, int k, T* x, TW* w0, int from, int to, T* acc, int nb)
        where TV : struct where TL : struct, ILanes<TV, T, TW> where T : unmanaged, INumber<T> where TW : unmanaged
    {
        for (int v = from; v < to; v += TL.Count)
        {
            TV b0 = TL.LoadW(w0 + v);
            T* xi = x, ai = acc + v;
            for (int i = 0; i < m; i++, xi += k, ai += nb) TL.Store(TL.Fma(b0, TL.Splat(xi[0]), TL.Load(ai)), ai);
        }
    }

    static bool Grouped<T>(int lanes, int k) => typeof(T) == typeof(float) && lanes > 1 && Avx2.IsSupported && k <= GroupK;

    // Columns [j0, j1) of Y, W stored [n, k]: each W row streams once against up to four X rows at a time, with four
    // independent accumulators per X row. Adjacent rows are not read side by side (measured on a Zen 4 core, rows of
    // 1024 floats read in pairs streamed at 10-14 GB/s, one at a time at 23-24); a single X row takes rows a quarter of
    // the block apart instead, far-apart streams that the prefetchers run together. Short rows (`grouped`, j0 a
    // multiple of Group) go eight at a time, the last n % Group columns as the long ones.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void ColumnsNK<TV, TL, T, TW>(Args<T, TW> a, int j0, int j1, bool grouped)
        where TV : struct where TL : struct, ILanes<TV, T, TW> where T : unmanaged, INumber<T> where TW : unmanaged
    {
        int m = a.M, k = a.K, cols = j1 - j0;
        // One row without a bias or ReLU is written straight into Y; otherwise into scratch, then Write.
        bool direct = m == 1 && a.Bias is null && !a.Relu;
        var outArr = direct ? a.Y : Scratch<T, Acc>.Get(m * cols);
        fixed (T* xp = a.X, ob = outArr, pp = a.XPairs)
        fixed (TW* wp = a.W)
        {
            T* x = xp + a.XOff, xg = pp is null ? x : pp, o = direct ? ob + a.YOff + j0 : ob;
            T* s = stackalloc T[Group];
            int j = j0;
            if (grouped && m == 1)
            {
                int groups = (j1 - j) / Group;
                TW* w = wp + a.WOff + (long)j * a.Ldw;
                if (groups > 0) Cols8<TV, TW>(k, (float*)xg, w, a.Ldw, (float*)o, groups, w + (groups - 1) * Group * a.Ldw);
                j += groups * Group;
            }
            if (grouped)
                for (; j + Group <= j1; j += Group)
                {
                    TW* w = wp + a.WOff + (long)j * a.Ldw, next = j + 2 * Group <= j1 ? w + Group * a.Ldw : w;
                    for (int i = 0; i < m; i++) Cols8<TV, TW>(k, (float*)xg + (long)i * k, w, a.Ldw, (float*)(o + i * cols + j - j0), 1, i == 0 ? next : w);
                }
            if (m == 1)
            {
                // W rows a quarter of the block apart, two per pass, each with the accumulators it has alone (the
                // same bits): four streams in flight rather than one (measured on Zen 4, the 111M bf16 decoder's 57
                // products on 2 threads: 5.3-6.8 -> 4.4-5.2 ms; one pair a half apart 4.6-5.0, four in one loop no better).
                int q = (j1 - j) / 4;
                long qs = (long)q * a.Ldw;
                for (int c = 0; c < q; c++, j++)
                {
                    TW* w = wp + a.WOff + (long)j * a.Ldw;
                    if (typeof(TV) == typeof(Vector512<T>) && typeof(TW) == typeof(T))
                    {
                        Dots2WHalves(k, x, (T*)w, (T*)(w + qs), s);
                        Dots2WHalves(k, x, (T*)(w + 2 * qs), (T*)(w + 3 * qs), s + 2);
                    }
                    else
                    {
                        Dots2W<TV, TL, T, TW>(k, x, w, w + qs, s);
                        Dots2W<TV, TL, T, TW>(k, x, w + 2 * qs, w + 3 * qs, s + 2);
                    }
                    o[j - j0] = s[0]; o[j + q - j0] = s[1]; o[j + 2 * q - j0] = s[2]; o[j + 3 * q - j0] = s[3];
                }
                j += 3 * q;
            }
            for (; j < j1; j++)
            {
                TW* w = wp + a.WOff + (long)j * a.Ldw;
                for (int i = 0; i < m; i += 4)
                {
                    T* xi = x + (long)i * k;
                    int rows = Math.Min(4, m - i);
                    switch (rows)
                    {
                        case 1: Dots<TV, TL, T, TW, R1>(k, xi, w, s); break;
                        case 2: Dots<TV, TL, T, TW, R2>(k, xi, w, s); break;
                        case 3: Dots<TV, TL, T, TW, R3>(k, xi, w, s); break;
                        default: Dots<TV, TL, T, TW, R4>(k, xi, w, s); break;
                    }
                    for (int r = 0; r < rows; r++) o[(i + r) * cols + j - j0] = s[r];
                }
            }
        }
        if (!direct) Write(a, outArr, cols, j0, cols);
    }

    // s[r] = dot(X row r, W row) for the TR.N rows at x (stride k): four register accumulators per X row (named locals,
    // which the JIT keeps in registers) over blocks of four vectors, then single vectors into the first, their lane
    // sums and the scalar tail.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Dots<TV, TL, T, TW, TR>(int k, T* x, TW* w, T* s)
        where TV : struct where TL : struct, ILanes<TV, T, TW> where T : unmanaged, INumber<T> where TW : unmanaged where TR : struct, IRowCount
    {
        TV z = TL.Zero, a0 = z, a1 = z, a2 = z, a3 = z, b0 = z, b1 = z, b2 = z, b3 = z, c0 = z, c1 = z, c2 = z, c3 = z, d0 = z, d1 = z, d2 = z, d3 = z;
        int p = 0, l = TL.Count;
        T* x1 = x + k, x2 = x1 + k, x3 = x2 + k;
        for (; p + 4 * l <= k; p += 4 * l)
        {
            TV u0 = TL.LoadW(w + p), u1 = TL.LoadW(w + p + l), u2 = TL.LoadW(w + p + 2 * l), u3 = TL.LoadW(w + p + 3 * l);
            a0 = TL.Fma(TL.Load(x + p), u0, a0); a1 = TL.Fma(TL.Load(x + p + l), u1, a1); a2 = TL.Fma(TL.Load(x + p + 2 * l), u2, a2); a3 = TL.Fma(TL.Load(x + p + 3 * l), u3, a3);
            if (TR.N > 1) { b0 = TL.Fma(TL.Load(x1 + p), u0, b0); b1 = TL.Fma(TL.Load(x1 + p + l), u1, b1); b2 = TL.Fma(TL.Load(x1 + p + 2 * l), u2, b2); b3 = TL.Fma(TL.Load(x1 + p + 3 * l), u3, b3); }
            if (TR.N > 2) { c0 = TL.Fma(TL.Load(x2 + p), u0, c0); c1 = TL.Fma(TL.Load(x2 + p + l), u1, c1); c2 = TL.Fma(TL.Load(x2 + p + 2 * l), u2, c2); c3 = TL.Fma(TL.Load(x2 + p + 3 * l), u3, c3); }
            if (TR.N > 3) { d0 = TL.Fma(TL.Load(x3 + p), u0, d0); d1 = TL.Fma(TL.Load(x3 + p + l), u1, d1); d2 = TL.Fma(TL.Load(x3 + p + 2 * l), u2, d2); d3 = TL.Fma(TL.Load(x3 + p + 3 * l), u3, d3); }
        }
        for (; p + l <= k; p += l)
        {
            TV u = TL.LoadW(w + p);
            a0 = TL.Fma(TL.Load(x + p), u, a0);
            if (TR.N > 1) b0 = TL.Fma(TL.Load(x1 + p), u, b0);
            if (TR.N > 2) c0 = TL.Fma(TL.Load(x2 + p), u, c0);
            if (TR.N > 3) d0 = TL.Fma(TL.Load(x3 + p), u, d0);
        }
        Finish<TV, TL, T, TW, TR>(k, p, x, w, s, a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, d0, d1, d2, d3);
    }

    // s[0], s[1] = dot(X row, W rows w and v), each summed as Dots sums it alone.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Dots2W<TV, TL, T, TW>(int k, T* x, TW* w, TW* v, T* s)
        where TV : struct where TL : struct, ILanes<TV, T, TW> where T : unmanaged, INumber<T> where TW : unmanaged
    {
        TV z = TL.Zero, a0 = z, a1 = z, a2 = z, a3 = z, b0 = z, b1 = z, b2 = z, b3 = z;
        int p = 0, l = TL.Count;
        for (; p + 4 * l <= k; p += 4 * l)
        {
            TV x0 = TL.Load(x + p), x1 = TL.Load(x + p + l), x2 = TL.Load(x + p + 2 * l), x3 = TL.Load(x + p + 3 * l);
            a0 = TL.Fma(x0, TL.LoadW(w + p), a0); a1 = TL.Fma(x1, TL.LoadW(w + p + l), a1);
            a2 = TL.Fma(x2, TL.LoadW(w + p + 2 * l), a2); a3 = TL.Fma(x3, TL.LoadW(w + p + 3 * l), a3);
            b0 = TL.Fma(x0, TL.LoadW(v + p), b0); b1 = TL.Fma(x1, TL.LoadW(v + p + l), b1);
            b2 = TL.Fma(x2, TL.LoadW(v + p + 2 * l), b2); b3 = TL.Fma(x3, TL.LoadW(v + p + 3 * l), b3);
        }
        for (; p + l <= k; p += l)
        {
            TV xv = TL.Load(x + p);
            a0 = TL.Fma(xv, TL.LoadW(w + p), a0);
            b0 = TL.Fma(xv, TL.LoadW(v + p), b0);
        }
        Finish<TV, TL, T, TW, R1>(k, p, x, w, s, a0, a1, a2, a3, z, z, z, z, z, z, z, z, z, z, z, z);
        Finish<TV, TL, T, TW, R1>(k, p, x, v, s + 1, b0, b1, b2, b3, z, z, z, z, z, z, z, z, z, z, z, z);
    }

    // Dots2W of the 512-bit lanes (the same classes, sums and bits) with its weights, X and arithmetic in 256-bit
    // halves: on Zen 5 a 512-bit load that straddles two cache lines halves the weight stream, and a managed array is
    // only 8-byte aligned, so W's rows are straddled unless lucky, while a 256-bit load straddles every other line at
    // most, at no cost (a 2-core Zen 5, f32 [16384, 4096] from memory: 44 GB/s -> 66; [4096, 4096] 54 -> 75). Half
    // weights widen from 256-bit loads already and keep Dots2W.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Dots2WHalves<T>(int k, T* x, T* w, T* v, T* s) where T : unmanaged, INumber<T>
    {
        var z = Vector256<T>.Zero;
        Vector256<T> a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z, a7 = z, b0 = z, b1 = z, b2 = z, b3 = z, b4 = z, b5 = z, b6 = z, b7 = z;
        int p = 0, h = Vector256<T>.Count, l = 2 * h;
        for (; p + 4 * l <= k; p += 4 * l)
        {
            Vector256<T> x0 = Vector256.Load(x + p), x1 = Vector256.Load(x + p + h), x2 = Vector256.Load(x + p + 2 * h), x3 = Vector256.Load(x + p + 3 * h);
            a0 = Lanes256<T, T>.Fma(x0, Vector256.Load(w + p), a0); a1 = Lanes256<T, T>.Fma(x1, Vector256.Load(w + p + h), a1);
            a2 = Lanes256<T, T>.Fma(x2, Vector256.Load(w + p + 2 * h), a2); a3 = Lanes256<T, T>.Fma(x3, Vector256.Load(w + p + 3 * h), a3);
            b0 = Lanes256<T, T>.Fma(x0, Vector256.Load(v + p), b0); b1 = Lanes256<T, T>.Fma(x1, Vector256.Load(v + p + h), b1);
            b2 = Lanes256<T, T>.Fma(x2, Vector256.Load(v + p + 2 * h), b2); b3 = Lanes256<T, T>.Fma(x3, Vector256.Load(v + p + 3 * h), b3);
            Vector256<T> x4 = Vector256.Load(x + p + 4 * h), x5 = Vector256.Load(x + p + 5 * h), x6 = Vector256.Load(x + p + 6 * h), x7 = Vector256.Load(x + p + 7 * h);
            a4 = Lanes256<T, T>.Fma(x4, Vector256.Load(w + p + 4 * h), a4); a5 = Lanes256<T, T>.Fma(x5, Vector256.Load(w + p + 5 * h), a5);
            a6 = Lanes256<T, T>.Fma(x6, Vector256.Load(w + p + 6 * h), a6); a7 = Lanes256<T, T>.Fma(x7, Vector256.Load(w + p + 7 * h), a7);
            b4 = Lanes256<T, T>.Fma(x4, Vector256.Load(v + p + 4 * h), b4); b5 = Lanes256<T, T>.Fma(x5, Vector256.Load(v + p + 5 * h), b5);
            b6 = Lanes256<T, T>.Fma(x6, Vector256.Load(v + p + 6 * h), b6); b7 = Lanes256<T, T>.Fma(x7, Vector256.Load(v + p + 7 * h), b7);
        }
        for (; p + l <= k; p += l)
        {
            Vector256<T> x0 = Vector256.Load(x + p), x1 = Vector256.Load(x + p + h);
            a0 = Lanes256<T, T>.Fma(x0, Vector256.Load(w + p), a0); a1 = Lanes256<T, T>.Fma(x1, Vector256.Load(w + p + h), a1);
            b0 = Lanes256<T, T>.Fma(x0, Vector256.Load(v + p), b0); b1 = Lanes256<T, T>.Fma(x1, Vector256.Load(v + p + h), b1);
        }
        // Lanes512's first vector sums 0..l in a0 (low) and a1 (high) here; its second, a2 and a3; and so on.
        var zz = Vector512<T>.Zero;
        Finish<Vector512<T>, Lanes512<T, T>, T, T, R1>(k, p, x, w, s, Vector512.Create(a0, a1), Vector512.Create(a2, a3), Vector512.Create(a4, a5),
            Vector512.Create(a6, a7), zz, zz, zz, zz, zz, zz, zz, zz, zz, zz, zz, zz);
        Finish<Vector512<T>, Lanes512<T, T>, T, T, R1>(k, p, x, v, s + 1, Vector512.Create(b0, b1), Vector512.Create(b2, b3), Vector512.Create(b4, b5),
            Vector512.Create(b6, b7), zz, zz, zz, zz, zz, zz, zz, zz, zz, zz, zz, zz);
    }

    // s[c] = dot(X row, W row c) for the eight W rows at w (stride ldw), float32 sums. Each column keeps two
    // accumulators over chunks of 2L elements (L lanes), which between them hold the chunk's 2L residue classes, each
    // summed in order. A half weight widens from 32-bit pairs by a shift and a mask, without a shuffle (the shuffle that
    // widening in order takes bounded this kernel), so its accumulators hold the even and the odd elements, against X
    // split likewise (SplitPairs); a float32 weight takes the chunk's halves against X as it is and is permuted into the
    // even/odd layout once at the end. The class sums and the tree after them are the same, so half weights give the
    // bits of their widened float32 copy. Then the pair added and folded to 256 bits, and a tree of horizontal adds that
    // leaves column c's sum in lane c, then the scalar tail. `groups` groups of eight rows run in one loop, so that one
    // group's sums overlap the next one's loads (looping-tiny's products on a Zen 5 core, interleaved: 6-11% faster in
    // L3, 14% hot in L2; the sums through 512-bit shuffles instead were no faster). Each pass prefetches a line of each
    // of the next group's eight rows (`last` for the last group's): a decoding step's weights come from L3, and the
    // stream prefetchers do not run ahead across short rows (looping-tiny's 32 products of k = 128 on a Zen 4 core,
    // weights in L3: 51 -> 45 us; hot in L2 8% slower; a second line per f32 row or an L2 prefetch further ahead lost;
    // on Zen 5 two or three groups ahead 2-5% slower, the first group prefetched whole no faster). The prefetches are
    // non-temporal: the weights come from L3 on every token anyway, and so they do not push the step's activations, KV
    // rows and norm weights out of L2 (Zen 5, interleaved in one process: looping-tiny's token 2-4% faster, its products
    // alone 4%, and no slower with the weights of one or two layers hot in L2).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Cols8<TV, TW>(int k, float* x, TW* w, long ldw, float* s, int groups, TW* last) where TW : unmanaged
    {
        for (int g = 0; g < groups; g++, w += Group * ldw, s += Group)
        {
            TW* next = g + 1 < groups ? w + Group * ldw : last;
            TW* w1 = w + ldw, w2 = w1 + ldw, w3 = w2 + ldw, w4 = w3 + ldw, w5 = w4 + ldw, w6 = w5 + ldw, w7 = w6 + ldw;
            int p;
            Vector256<float> f0, f1, f2, f3, f4, f5, f6, f7;
            if (typeof(TV) == typeof(Vector512<float>))
            {
                var z = Vector512<float>.Zero;
                Vector512<float> e0 = z, e1 = z, e2 = z, e3 = z, e4 = z, e5 = z, e6 = z, e7 = z, o0 = z, o1 = z, o2 = z, o3 = z, o4 = z, o5 = z, o6 = z, o7 = z;
                // Rows through two base pointers and the byte strides l1 and l3, so that the loop keeps them in registers.
                byte* r0 = (byte*)w, r4 = (byte*)w4, n0 = (byte*)next, n4 = (byte*)(next + 4 * ldw);
                long l1 = ldw * sizeof(TW), l3 = 3 * l1, step = 32 * sizeof(TW);
                for (p = 0; p + 32 <= k; p += 32, r0 += step, r4 += step, n0 += step, n4 += step)
                {
                    var (xe, xo) = (Vector512.Load(x + p), Vector512.Load(x + p + 16));
                    Sse.PrefetchNonTemporal(n0); Sse.PrefetchNonTemporal(n0 + l1); Sse.PrefetchNonTemporal(n0 + 2 * l1); Sse.PrefetchNonTemporal(n0 + l3);
                    Sse.PrefetchNonTemporal(n4); Sse.PrefetchNonTemporal(n4 + l1); Sse.PrefetchNonTemporal(n4 + 2 * l1); Sse.PrefetchNonTemporal(n4 + l3);
                    // One load of a half row's 64 bytes feeds both of its accumulators.
                    TW* v0 = (TW*)r0, v1 = (TW*)(r0 + l1), v2 = (TW*)(r0 + 2 * l1), v3 = (TW*)(r0 + l3);
                    Vector512<uint> u0 = Load512(v0), u1 = Load512(v1), u2 = Load512(v2), u3 = Load512(v3);
                    e0 = Even512(v0, u0, xe, e0); o0 = Odd512(v0, u0, xo, o0); e1 = Even512(v1, u1, xe, e1); o1 = Odd512(v1, u1, xo, o1);
                    e2 = Even512(v2, u2, xe, e2); o2 = Odd512(v2, u2, xo, o2); e3 = Even512(v3, u3, xe, e3); o3 = Odd512(v3, u3, xo, o3);
                    TW* v4 = (TW*)r4, v5 = (TW*)(r4 + l1), v6 = (TW*)(r4 + 2 * l1), v7 = (TW*)(r4 + l3);
                    Vector512<uint> u4 = Load512(v4), u5 = Load512(v5), u6 = Load512(v6), u7 = Load512(v7);
                    e4 = Even512(v4, u4, xe, e4); o4 = Odd512(v4, u4, xo, o4); e5 = Even512(v5, u5, xe, e5); o5 = Odd512(v5, u5, xo, o5);
                    e6 = Even512(v6, u6, xe, e6); o6 = Odd512(v6, u6, xo, o6); e7 = Even512(v7, u7, xe, e7); o7 = Odd512(v7, u7, xo, o7);
                }
                (f0, f1, f2, f3) = (Fold512<TW>(e0, o0), Fold512<TW>(e1, o1), Fold512<TW>(e2, o2), Fold512<TW>(e3, o3));
                (f4, f5, f6, f7) = (Fold512<TW>(e4, o4), Fold512<TW>(e5, o5), Fold512<TW>(e6, o6), Fold512<TW>(e7, o7));
            }
            else
            {
                var z = Vector256<float>.Zero;
                Vector256<float> e0 = z, e1 = z, e2 = z, e3 = z, e4 = z, e5 = z, e6 = z, e7 = z, o0 = z, o1 = z, o2 = z, o3 = z, o4 = z, o5 = z, o6 = z, o7 = z;
                for (p = 0; p + 16 <= k; p += 16)
                {
                    var (xe, xo) = (Vector256.Load(x + p), Vector256.Load(x + p + 8));
                    if (sizeof(TW) == 4 || (p & 16) == 0)   // a line of a half row every other pass
                        for (int c = 0; c < Group; c++) Sse.PrefetchNonTemporal(next + c * ldw + p);
                    e0 = Even256(w + p, xe, e0); o0 = Odd256(w + p, xo, o0); e1 = Even256(w1 + p, xe, e1); o1 = Odd256(w1 + p, xo, o1);
                    e2 = Even256(w2 + p, xe, e2); o2 = Odd256(w2 + p, xo, o2); e3 = Even256(w3 + p, xe, e3); o3 = Odd256(w3 + p, xo, o3);
                    e4 = Even256(w4 + p, xe, e4); o4 = Odd256(w4 + p, xo, o4); e5 = Even256(w5 + p, xe, e5); o5 = Odd256(w5 + p, xo, o5);
                    e6 = Even256(w6 + p, xe, e6); o6 = Odd256(w6 + p, xo, o6); e7 = Even256(w7 + p, xe, e7); o7 = Odd256(w7 + p, xo, o7);
                }
                (f0, f1, f2, f3) = (Pair256<TW>(e0, o0), Pair256<TW>(e1, o1), Pair256<TW>(e2, o2), Pair256<TW>(e3, o3));
                (f4, f5, f6, f7) = (Pair256<TW>(e4, o4), Pair256<TW>(e5, o5), Pair256<TW>(e6, o6), Pair256<TW>(e7, o7));
            }
            var h01 = Avx.HorizontalAdd(f0, f1); var h23 = Avx.HorizontalAdd(f2, f3);
            var h45 = Avx.HorizontalAdd(f4, f5); var h67 = Avx.HorizontalAdd(f6, f7);
            // Lanes 0-3 of q0123 hold columns 0-3's sums of their vector lanes {0-3, 8-11}, lanes 4-7 of {4-7, 12-15}.
            var q0123 = Avx.HorizontalAdd(h01, h23); var q4567 = Avx.HorizontalAdd(h45, h67);
            var sum = Avx.Permute2x128(q0123, q4567, 0x20) + Avx.Permute2x128(q0123, q4567, 0x31);
            sum.Store(s);
            if (p < k) Tail8(k, p, x, w, ldw, s);
        }
    }

    // Cols8's scalar terms p .. k, out of line so that its loop keeps the row pointers in registers.
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void Tail8<TW>(int k, int p, float* x, TW* w, long ldw, float* s) where TW : unmanaged
    {
        for (; p < k; p++)
            for (int c = 0; c < Group; c++) s[c] += x[p] * Lanes1<float, TW>.LoadW(w + c * ldw + p);
    }

    // A half row's 32 weights at w as 16 pairs (a float32 row loads its own halves in Even512 and Odd512).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<uint> Load512<TW>(TW* w) where TW : unmanaged => typeof(TW) == typeof(float) ? default : Vector512.Load((uint*)w);

    // acc + (the even elements of the 32 weights at w, pairs u) * xe; a float32 weight's first 16 instead.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Even512<TW>(TW* w, Vector512<uint> u, Vector512<float> xe, Vector512<float> acc) where TW : unmanaged
    {
        if (typeof(TW) == typeof(float)) return Vector512.FusedMultiplyAdd(Vector512.Load((float*)w), xe, acc);
        var v = typeof(TW) == typeof(ushort) ? Vector512.ShiftLeft(u, 16).AsSingle() : HalfWiden.F16(u & Vector512.Create(0xFFFFu));
        return Vector512.FusedMultiplyAdd(v, xe, acc);
    }

    // acc + (the odd elements of the 32 weights at w, pairs u) * xo; a float32 weight's last 16 instead.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Odd512<TW>(TW* w, Vector512<uint> u, Vector512<float> xo, Vector512<float> acc) where TW : unmanaged
    {
        if (typeof(TW) == typeof(float)) return Vector512.FusedMultiplyAdd(Vector512.Load((float*)w + 16), xo, acc);
        var v = typeof(TW) == typeof(ushort) ? (u & Vector512.Create(0xFFFF0000u)).AsSingle() : HalfWiden.F16(Vector512.ShiftRightLogical(u, 16));
        return Vector512.FusedMultiplyAdd(v, xo, acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Even256<TW>(TW* w, Vector256<float> xe, Vector256<float> acc) where TW : unmanaged
    {
        if (typeof(TW) == typeof(float)) return Vector256.FusedMultiplyAdd(Vector256.Load((float*)w), xe, acc);
        var u = Vector256.Load((uint*)w);
        var v = typeof(TW) == typeof(ushort) ? Vector256.ShiftLeft(u, 16).AsSingle() : HalfWiden.F16(u & Vector256.Create(0xFFFFu));
        return Vector256.FusedMultiplyAdd(v, xe, acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Odd256<TW>(TW* w, Vector256<float> xo, Vector256<float> acc) where TW : unmanaged
    {
        if (typeof(TW) == typeof(float)) return Vector256.FusedMultiplyAdd(Vector256.Load((float*)w + 8), xo, acc);
        var u = Vector256.Load((uint*)w);
        var v = typeof(TW) == typeof(ushort) ? (u & Vector256.Create(0xFFFF0000u)).AsSingle() : HalfWiden.F16(Vector256.ShiftRightLogical(u, 16));
        return Vector256.FusedMultiplyAdd(v, xo, acc);
    }

    // The even/odd accumulators (a float32 weight's first/second halves permuted into that layout) added, and their
    // halves added: lane i holds classes 2i, 2i + 1, 2i + 16 and 2i + 17.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Fold512<TW>(Vector512<float> e, Vector512<float> o) where TW : unmanaged
    {
        if (typeof(TW) == typeof(float))
            (e, o) = (Avx512F.PermuteVar16x32x2(e, EvenLanes, o), Avx512F.PermuteVar16x32x2(e, EvenLanes + Vector512<int>.One, o));
        var v = e + o;
        return v.GetLower() + v.GetUpper();
    }

    static Vector512<int> EvenLanes => Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);

    // The same at 256 bits: lane i holds classes 2i and 2i + 1.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Pair256<TW>(Vector256<float> e, Vector256<float> o) where TW : unmanaged
    {
        if (typeof(TW) == typeof(float))
        {
            // Shuffle takes lanes (0, 2 of e, 0, 2 of o) per 128-bit half; the 64-bit permute puts the halves in order.
            var even = Avx2.Permute4x64(Avx.Shuffle(e, o, 0x88).AsDouble(), 0xD8).AsSingle();
            var odd = Avx2.Permute4x64(Avx.Shuffle(e, o, 0xDD).AsDouble(), 0xD8).AsSingle();
            (e, o) = (even, odd);
        }
        return e + o;
    }

    // s[r] = the lane sum of row r's four accumulators, plus its scalar terms p .. k.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Finish<TV, TL, T, TW, TR>(int k, int p, T* x, TW* w, T* s, TV a0, TV a1, TV a2, TV a3, TV b0, TV b1, TV b2, TV b3,
        TV c0, TV c1, TV c2, TV c3, TV d0, TV d1, TV d2, TV d3)
        where TV : struct where TL : struct, ILanes<TV, T, TW> where T : unmanaged, INumber<T> where TW : unmanaged where TR : struct, IRowCount
    {
        s[0] = TL.Sum(TL.Add(TL.Add(a0, a1), TL.Add(a2, a3)));
        if (TR.N > 1) s[1] = TL.Sum(TL.Add(TL.Add(b0, b1), TL.Add(b2, b3)));
        if (TR.N > 2) s[2] = TL.Sum(TL.Add(TL.Add(c0, c1), TL.Add(c2, c3)));
        if (TR.N > 3) s[3] = TL.Sum(TL.Add(TL.Add(d0, d1), TL.Add(d2, d3)));
        for (; p < k; p++)
        {
            T u = Lanes1<T, TW>.LoadW(w + p);
            for (int r = 0; r < TR.N; r++) s[r] += x[r * k + p] * u;
        }
    }

    // Y[i, j0 .. j0 + cols) = acc[i*ld ..] + bias, then ReLU.
    static void Write<T, TW>(Args<T, TW> a, T[] acc, int ld, int j0, int cols) where T : unmanaged, INumber<T> where TW : unmanaged
    {
        for (int i = 0; i < a.M; i++)
        {
            var src = new ReadOnlySpan<T>(acc, i * ld, cols);
            var dst = a.Y.AsSpan(a.YOff + i * a.Ldy + j0, cols);
            if (a.Bias is { } b) System.Numerics.Tensors.TensorPrimitives.Add(src, new ReadOnlySpan<T>(b, a.BiasOff + j0, cols), dst);
            else src.CopyTo(dst);
            if (a.Relu) System.Numerics.Tensors.TensorPrimitives.Max(dst, T.Zero, dst);
        }
    }

    // Per-thread scratch, pinned, one array per use (TUse): the accumulators of a panel or block (Acc), the caller's
    // contiguous copy of X (XCopy) and its even/odd split (SplitX).
    static class Scratch<T, TUse> where T : unmanaged
    {
        [ThreadStatic] static T[]? _buf;
        public static T[] Get(int length) => _buf is { } b && b.Length >= length ? b : _buf = GC.AllocateUninitializedArray<T>(length, pinned: true);
    }

    struct Acc;
    struct XCopy;
    struct SplitX;

    interface IRowCount { static abstract int N { get; } }
    readonly struct R1 : IRowCount { public static int N => 1; }
    readonly struct R2 : IRowCount { public static int N => 2; }
    readonly struct R3 : IRowCount { public static int N => 3; }
    readonly struct R4 : IRowCount { public static int N => 4; }
}

/// <summary>
/// The lane operations of one vector width (<typeparamref name="TV"/>: a vector of T, or T itself for the scalar
/// kernel) over accumulators of T, with weights of <typeparamref name="TW"/> widened on load.
/// </summary>
internal unsafe interface ILanes<TV, T, TW> where TV : struct where T : unmanaged where TW : unmanaged
{
    static abstract int Count { get; }
    static abstract TV Zero { get; }
    static abstract TV Splat(T value);
    static abstract TV Load(T* p);
    static abstract TV LoadW(TW* p);
    static abstract void Store(TV v, T* p);
    static abstract TV Fma(TV a, TV b, TV c);
    static abstract TV Add(TV a, TV b);
    static abstract T Sum(TV v);
}

/// <summary>Widening of half-precision weights to float32 lanes, exact for every value (NaN payloads, infinities and subnormals included).</summary>
internal static class HalfWiden
{
    // A float16's exponent and mantissa shifted into float32's place read as a float 2^-112 times the value
    // (subnormals included), and 2^112 rescales it exactly; infinities and NaNs land at 2^16 and above, where the
    // exponent is set to all ones (keeping a NaN's payload).
    const uint Magic = 0x77800000;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> F16(Vector512<uint> h)
    {
        var em = Vector512.ShiftLeft(h & Vector512.Create(0x7FFFu), 13);
        var f = em.AsSingle() * Vector512.Create(Magic).AsSingle();
        var special = Vector512.GreaterThanOrEqual(f, Vector512.Create(65536f)).AsUInt32() & Vector512.Create(0x7F800000u);
        return (f.AsUInt32() | special | Vector512.ShiftLeft(h & Vector512.Create(0x8000u), 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> F16(Vector256<uint> h)
    {
        var em = Vector256.ShiftLeft(h & Vector256.Create(0x7FFFu), 13);
        var f = em.AsSingle() * Vector256.Create(Magic).AsSingle();
        var special = Vector256.GreaterThanOrEqual(f, Vector256.Create(65536f)).AsUInt32() & Vector256.Create(0x7F800000u);
        return (f.AsUInt32() | special | Vector256.ShiftLeft(h & Vector256.Create(0x8000u), 16)).AsSingle();
    }
}

internal readonly unsafe struct Lanes512<T, TW> : ILanes<Vector512<T>, T, TW> where T : unmanaged, INumber<T> where TW : unmanaged
{
    public static int Count => Vector512<T>.Count;
    public static Vector512<T> Zero => Vector512<T>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> Splat(T value) => Vector512.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> Load(T* p) => Vector512.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector512<T> v, T* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T Sum(Vector512<T> v) => Vector512.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> Add(Vector512<T> a, Vector512<T> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> LoadW(TW* p)
    {
        if (typeof(TW) == typeof(T)) return Vector512.Load((T*)p);
        var h = Vector512.WidenLower(Vector256.Load((ushort*)p).ToVector512Unsafe());
        if (typeof(TW) == typeof(ushort)) return Vector512.ShiftLeft(h, 16).As<uint, T>();
        return HalfWiden.F16(h).As<float, T>();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Fma(Vector512<T> a, Vector512<T> b, Vector512<T> c)
    {
        if (typeof(T) == typeof(float)) return Vector512.FusedMultiplyAdd(a.AsSingle(), b.AsSingle(), c.AsSingle()).As<float, T>();
        return Vector512.FusedMultiplyAdd(a.AsDouble(), b.AsDouble(), c.AsDouble()).As<double, T>();
    }
}

internal readonly unsafe struct Lanes256<T, TW> : ILanes<Vector256<T>, T, TW> where T : unmanaged, INumber<T> where TW : unmanaged
{
    public static int Count => Vector256<T>.Count;
    public static Vector256<T> Zero => Vector256<T>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Splat(T value) => Vector256.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Load(T* p) => Vector256.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<T> v, T* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T Sum(Vector256<T> v) => Vector256.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Add(Vector256<T> a, Vector256<T> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> LoadW(TW* p)
    {
        if (typeof(TW) == typeof(T)) return Vector256.Load((T*)p);
        var h = Vector256.WidenLower(Vector128.Load((ushort*)p).ToVector256Unsafe());
        if (typeof(TW) == typeof(ushort)) return Vector256.ShiftLeft(h, 16).As<uint, T>();
        return HalfWiden.F16(h).As<float, T>();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Fma(Vector256<T> a, Vector256<T> b, Vector256<T> c)
    {
        if (typeof(T) == typeof(float)) return Vector256.FusedMultiplyAdd(a.AsSingle(), b.AsSingle(), c.AsSingle()).As<float, T>();
        return Vector256.FusedMultiplyAdd(a.AsDouble(), b.AsDouble(), c.AsDouble()).As<double, T>();
    }
}

internal readonly unsafe struct Lanes1<T, TW> : ILanes<T, T, TW> where T : unmanaged, INumber<T> where TW : unmanaged
{
    public static int Count => 1;
    public static T Zero => T.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T Splat(T value) => value;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T Load(T* p) => *p;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(T v, T* p) => *p = v;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T Sum(T v) => v;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T Fma(T a, T b, T c) => a * b + c;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T Add(T a, T b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T LoadW(TW* p)
    {
        if (typeof(TW) == typeof(T)) return *(T*)p;
        float f = typeof(TW) == typeof(ushort) ? BitConverter.Int32BitsToSingle(*(ushort*)p << 16) : (float)*(Half*)p;
        return T.CreateTruncating(f);
    }
}
