using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace Kiln.Kernels.Cpu;

/// <summary>Which register-blocked micro-kernel a GEMM runs.</summary>
public enum GemmKernel
{
    /// <summary>The widest this machine accelerates: Vector512, else Vector256, else scalar.</summary>
    Auto,
    /// <summary>6 x (4 Vector512) tiles: 6 x 64 floats or 6 x 32 doubles (AVX-512); a last B panel narrower than that runs 6 x (2 Vector512) tiles.</summary>
    Vector512,
    /// <summary>6 x (2 Vector256) tiles: 6 x 16 floats or 6 x 8 doubles (AVX2).</summary>
    Vector256,
    /// <summary>4 x 4 scalar tiles (no SIMD).</summary>
    Scalar,
}

/// <summary>
/// Exact integer matrix multiply C = A B for Int32 and Int64, accumulated in 64-bit integers (wrapping on overflow, as
/// PyTorch's; an Int32 result keeps the low 32 bits, which is what a wrapping Int32 accumulation gives). Each product's
/// B is widened once into a dense k-major Int64 copy; every row of C is then a sum of scaled B rows, a vector
/// multiply-add over a row of 64-bit accumulators. Rows of C run on all cores, each computed by one thread in a fixed
/// order. Reference: <see cref="Reference.GemmInt64"/>.
/// </summary>
public static class IntegerGemm
{
    /// <summary>
    /// <paramref name="batch"/> products C[t] = A[t] B[t]: A's element (t, i, p) is a[aOff + t*aBs + i*aRs + p*aCs], B's
    /// (t, p, j) is b[bOff + t*bBs + p*bRs + j*bCs] (batch stride 0 broadcasts), and C is contiguous [batch, m, n] at cOff.
    /// </summary>
    public static void RunBatched<T>(int batch, int m, int n, int k, T[] a, int aOff, int aBs, int aRs, int aCs,
        T[] b, int bOff, int bBs, int bRs, int bCs, T[] c, int cOff) where T : unmanaged, IBinaryInteger<T>
    {
        if (batch == 0 || m == 0 || n == 0) return;
        var wide = new long[k * n];
        for (int t = 0; t < batch; t++)
        {
            // A broadcast B is widened once for every product.
            if (t == 0 || bBs != 0)
                for (int p = 0; p < k; p++)
                    for (int j = 0; j < n; j++) wide[p * n + j] = long.CreateTruncating(b[bOff + t * bBs + p * bRs + j * bCs]);
            int ta = aOff + t * aBs, tc = cOff + t * m * n;
            Strided.Parallel(m, 2L * m * n * k, (s, e) =>
            {
                var acc = new long[n];
                for (int i = s; i < e; i++)
                {
                    Array.Clear(acc);
                    for (int p = 0; p < k; p++)
                    {
                        long x = long.CreateTruncating(a[ta + i * aRs + p * aCs]);
                        if (x != 0) TP.MultiplyAdd(new ReadOnlySpan<long>(wide, p * n, n), x, acc, acc);
                    }
                    var row = c.AsSpan(tc + i * n, n);
                    for (int j = 0; j < n; j++) row[j] = T.CreateTruncating(acc[j]);
                }
            });
        }
    }
}

/// <summary>
/// General matrix multiply C = alpha A B + beta C for float32 and float64, with arbitrary row/column strides on A and B
/// (so every transpose combination is a stride choice) and a leading dimension on C.
/// The GotoBLAS/BLIS structure: for each NC-wide column block, B's KC-deep slices are packed (a few at a time, as many
/// as fit an L3-sized buffer) into NR-wide k-major micro-panels shared by all threads; the threads then take parts of C
/// (MR-row strips, in parts that shrink as the work runs out), and for each slice pack MC x KC blocks of A into MR-tall
/// micro-panels (a row-major A is read in place by the AVX-512 tiles instead) and sweep MR x NR register tiles over them
/// (<see cref="GemmMicro"/>). Edges are zero-padded in the packs, so the
/// micro-kernel always runs full tiles; partial tiles go through a small buffer and a vectorized row write-back.
/// Each element of C is computed by one thread with the same K blocking, so results do not depend on the thread count.
/// Reference: <see cref="Reference.Gemm"/>.
/// </summary>
public static class Gemm
{
    /// <summary>Floating-point operations (2 m n k) below which a GEMM stays on the calling thread.</summary>
    public const long ParallelFlops = 1L << 21;

    /// <summary>The micro-kernel <see cref="GemmKernel.Auto"/> picks on this machine.</summary>
    public static GemmKernel Best { get; } =
        Vector512.IsHardwareAccelerated ? GemmKernel.Vector512 : Vector256.IsHardwareAccelerated ? GemmKernel.Vector256 : GemmKernel.Scalar;

    /// <summary>
    /// C[m, n] = alpha A[m, k] B[k, n] + beta C (C row-major with leading dimension <paramref name="ldc"/>).
    /// A's element (i, p) is a[aOff + i*aRs + p*aCs]; B's element (p, j) is b[bOff + p*bRs + j*bCs].
    /// When beta is zero C is only written (NaNs in it do not propagate). T is float or double. <c>threads</c> bounds
    /// the workers (0: every core, for large products); <c>kernel</c> picks the micro-kernel (Auto: <see cref="Best"/>).
    /// The optional epilogue runs on each tile while it is in cache: C[i, j] += bias[biasOff + j], then max(C, 0) when
    /// <c>relu</c> (a linear layer's bias and activation, fused).
    /// </summary>
    /// <exception cref="NotSupportedException">T is not float or double, or the kernel is not accelerated here.</exception>
    public static void Run<T>(int m, int n, int k, T alpha, T[] a, int aOff, int aRs, int aCs, T[] b, int bOff, int bRs, int bCs,
        T beta, T[] c, int cOff, int ldc, GemmKernel kernel = GemmKernel.Auto, int threads = 0, T[]? bias = null, int biasOff = 0, bool relu = false)
        where T : unmanaged, INumber<T> =>
        RunBatched(1, m, n, k, alpha, a, aOff, 0, aRs, aCs, b, bOff, 0, bRs, bCs, beta, c, cOff, 0, ldc, kernel, threads, bias, biasOff, relu);

    /// <summary>
    /// <paramref name="batch"/> independent products: matrix t uses A at aOff + t*aBs, B at bOff + t*bBs and C at
    /// cOff + t*cBs (a batch stride of 0 broadcasts an operand). Otherwise as <see cref="Run{T}"/>.
    /// </summary>
    /// <exception cref="NotSupportedException">T is not float or double, or the kernel is not accelerated here.</exception>
    public static unsafe void RunBatched<T>(int batch, int m, int n, int k, T alpha, T[] a, int aOff, int aBs, int aRs, int aCs,
        T[] b, int bOff, int bBs, int bRs, int bCs, T beta, T[] c, int cOff, int cBs, int ldc,
        GemmKernel kernel = GemmKernel.Auto, int threads = 0, T[]? bias = null, int biasOff = 0, bool relu = false) where T : unmanaged, INumber<T>
    {
        fixed (T* bp = b)
            RunPacked(batch, m, n, k, alpha, a, aOff, aBs, aRs, aCs, new StridedPanels<T>(bp + bOff, bBs, bRs, bCs), beta, c, cOff, cBs, ldc, kernel, threads, bias, biasOff, relu);
    }

    /// <summary>
    /// As <see cref="RunBatched{T}"/> in float32 with alpha 1 and beta 0, for a half-precision B (<typeparamref name="TW"/>:
    /// ushort holding bfloat16 bits, or Half) widened to float32 as its panels are packed, so the product runs in the
    /// float32 micro-kernels with float32 accumulation.
    /// </summary>
    /// <exception cref="NotSupportedException"><typeparamref name="TW"/> is not ushort or Half.</exception>
    public static unsafe void RunWidened<TW>(int batch, int m, int n, int k, float[] a, int aOff, int aBs, int aRs, int aCs,
        TW[] b, int bOff, int bBs, int bRs, int bCs, float[] c, int cOff, int cBs, int ldc,
        float[]? bias = null, int biasOff = 0, bool relu = false) where TW : unmanaged
    {
        if (typeof(TW) != typeof(ushort) && typeof(TW) != typeof(Half))
            throw new NotSupportedException($"gemm: no widening kernel for element type {typeof(TW).Name} (ushort (bfloat16) and Half only)");
        fixed (TW* bp = b)
            RunPacked(batch, m, n, k, 1f, a, aOff, aBs, aRs, aCs, new WidenedPanels<TW>(bp + bOff, bBs, bRs, bCs), 0f, c, cOff, cBs, ldc,
                bias: bias, biasOff: biasOff, relu: relu);
    }

    /// <summary>
    /// As <see cref="RunBatched{T}"/>, with B given by a panel source that packs product t's B slices straight into the
    /// micro-kernels' panel format (so an implicit operand, such as a convolution's input patches, is never materialized).
    /// </summary>
    /// <exception cref="NotSupportedException">T is not float or double, or the kernel is not accelerated here.</exception>
    public static void RunPacked<T, TB>(int batch, int m, int n, int k, T alpha, T[] a, int aOff, int aBs, int aRs, int aCs,
        TB b, T beta, T[] c, int cOff, int cBs, int ldc,
        GemmKernel kernel = GemmKernel.Auto, int threads = 0, T[]? bias = null, int biasOff = 0, bool relu = false)
        where T : unmanaged, INumber<T> where TB : struct, IPanelSource<T>
    {
        if (typeof(T) != typeof(float) && typeof(T) != typeof(double))
            throw new NotSupportedException($"gemm: no kernel for element type {typeof(T).Name} (float and double only)");
        if (kernel == GemmKernel.Auto) kernel = Best;
        if (kernel == GemmKernel.Vector512 && !Vector512.IsHardwareAccelerated || kernel == GemmKernel.Vector256 && !Vector256.IsHardwareAccelerated)
            throw new NotSupportedException($"gemm: the {kernel} micro-kernel is not hardware-accelerated on this machine");
        if (batch == 0 || m == 0 || n == 0) return;
        if (k == 0 || alpha == T.Zero)
        {
            for (int t = 0; t < batch; t++)
                for (int i = 0; i < m; i++)
                {
                    var row = c.AsSpan(cOff + t * cBs + i * ldc, n);
                    if (beta == T.Zero) row.Clear();
                    else if (beta != T.One) for (int j = 0; j < n; j++) row[j] *= beta;
                    Epilogue(row, bias is null ? default : bias.AsSpan(biasOff, n), relu);
                }
            return;
        }
        if (threads <= 0) threads = WorkerTeam.Threads;
        long flops = 2L * m * n * k;
        if (flops * batch < ParallelFlops) threads = 1;
        var plan = Plan.For<T>(kernel, m, n, k);
        // Many small products: one thread per product. Otherwise the threads share each product.
        int inner = batch >= 2 * threads && flops < 8 * ParallelFlops ? 1 : threads;
        ForGuided(threads / inner, batch, 1, (s, e) =>
        {
            for (int t = s; t < e; t++)
                Single(plan, m, n, k, alpha, a, aOff + t * aBs, aRs, aCs, b, t, beta, c, cOff + t * cBs, ldc, inner, bias, biasOff, relu);
        });
    }

    // row += bias; row = max(row, 0) when relu.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Epilogue<T>(Span<T> row, ReadOnlySpan<T> bias, bool relu) where T : unmanaged, INumber<T>
    {
        if (!bias.IsEmpty) TP.Add(row, bias, row);
        if (relu) TP.Max(row, T.Zero, row);
    }

    // Cache blocking in bytes (tuned on Zen 4: 32 KiB L1D, 1 MiB L2 per core, 32 MiB L3). KC x NR streams from L2 with
    // the hardware prefetcher; a deeper KC cuts the C traffic per flop. K up to KcBytes runs as one slice (one pass over
    // C: 1024 deep measured 2.5-4% faster than two slices of 512 at n = 1000 and 1024), deeper K in balanced slices of
    // at most KcBytes (2048^3 on a 2-core Zen 5, interleaved in one process: two slices of 1024 +1.9-2.3% against three
    // of 683, which had measured 1.5-2.5% faster than four of 512 on Zen 4). KC stays fixed: it decides each element's
    // summation order, which must not depend on the machine's caches.
    const int KcBytes = 4096;

    // MC x KC of A in 3/8 of L2, KC x NC of B in 1/8 of L3, and packed B slices that share one compute phase in 1/4 of
    // it (the fractions that measured best on Zen 4, where they are 384 KiB, 4 MiB and 8 MiB), from this machine's
    // cache sizes. They only partition the work, so results do not depend on them.
    static readonly int McBytes = (int)Math.Min(1L << 30, CpuCaches.L2 * 3 / 8), NcBytes = (int)Math.Min(1L << 30, CpuCaches.L3 / 8);
    static readonly long BGroupBytes = CpuCaches.L3 / 4;

    // MinStrips: the smallest part of a compute phase, in MR strips (a part reloads each B micro-panel from L3 once).
    const int MinStrips = 2;

    // Rows of a B slice per packing unit: slices are packed in row chunks, so threads share the packing of a narrow B.
    const int PackRows = 32;

    /// <summary>Register tile and cache block sizes for one product; HalfNR: the kernel's half tile width (0: none).</summary>
    internal readonly record struct Plan(GemmKernel Kernel, int MR, int NR, int HalfNR, int KC, int MC, int NC)
    {
        public static Plan For<T>(GemmKernel kernel, int m, int n, int k) where T : unmanaged
        {
            int size = Unsafe.SizeOf<T>();
            var (mr, nr) = kernel switch
            {
                GemmKernel.Vector512 => (6, 4 * 64 / size),
                GemmKernel.Vector256 => (6, 2 * 32 / size),
                _ => (4, 4),
            };
            // MC x KC of A and the KC x NR micro-panel of B swept over it share L2, KC x NC of B is in L3; blocks are
            // balanced so the last one is not a sliver.
            int kc = Balance(k, KcBytes / size);
            int mcMax = Math.Max(mr, McBytes / (kc * size) / mr * mr);
            int mc = Balance(m, mcMax, mr);
            int ncMax = Math.Max(nr, NcBytes / (kc * size) / nr * nr);
            int nc = Balance(n, ncMax, nr);
            return new Plan(kernel, mr, nr, GemmMicro.HalfWidth<T>(kernel), kc, mc, nc);
        }

        // The block size at most `max` (a multiple of `unit`) that splits `total` into equal-as-possible blocks.
        static int Balance(int total, int max, int unit = 1)
        {
            if (total <= max) return total;
            int blocks = (total + max - 1) / max;
            int size = (total + blocks - 1) / blocks;
            return (size + unit - 1) / unit * unit;
        }
    }

    // One product on `threads` threads. With enough micro-panels of B for every thread to take an even share, each
    // takes a contiguous block of them and runs it as a one-thread product of its own: it packs its columns of B into
    // its own buffer and runs all of A's rows against them. Sharing one packed B instead (each thread packing a part,
    // every thread reading all of it) made the pack cost more on two threads than on one, and the compute read half its
    // B from the other core's cache (a 2-core Zen 5, 1024^3: the pack took 480 us on two threads, 285 on one).
    // Interleaved on that machine: 1024^3 +4%, 2048^3 +1%, 256 x 784 x 1024 +23%, 512 x 512 x 2048 +14%, the MLP step
    // +6%, the decoder blocks +7%, 3x3 and 1x1 convolutions of 64 channels +73% and +60%. A thread pays for reading
    // all of A, which is small beside its share of the flops once it has two or more micro-panels. Otherwise (few
    // columns, or shares that would be uneven by more than an eighth) the threads share each packed B.
    // The halves end 0-7% apart on that machine, the slower one at random. A thread done with its own half taking the
    // other's last units (one MC block against one micro-panel, ~60 us at 1024^3) measured neutral (-0.5% to +1.1% on
    // five shapes): the other half ended no sooner, as if the two vCPUs shared one budget.
    static void Single<T, TB>(Plan plan, int m, int n, int k, T alpha, T[] a, int aOff, int aRs, int aCs, TB b, int t,
        T beta, T[] c, int cOff, int ldc, int threads, T[]? bias, int biasOff, bool relu) where T : unmanaged, INumber<T> where TB : struct, IPanelSource<T>
    {
        int panels = (n + plan.NR - 1) / plan.NR, share = (panels + threads - 1) / threads;
        if (threads > 1 && share >= 2 && (long)share * threads * 8 <= 9L * panels)
        {
            WorkerTeam.For(threads, part =>
            {
                int n0 = Math.Min(n, part * share * plan.NR), n1 = Math.Min(n, (part + 1) * share * plan.NR);
                if (n1 > n0) Columns(plan, m, n0, n1, k, alpha, a, aOff, aRs, aCs, b, t, beta, c, cOff, ldc, 1, bias, biasOff, relu);
            });
        }
        else Columns(plan, m, 0, n, k, alpha, a, aOff, aRs, aCs, b, t, beta, c, cOff, ldc, threads, bias, biasOff, relu);
    }

    // Columns [n0, n1) of one product on `threads` threads sharing each packed B slice.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static unsafe void Columns<T, TB>(Plan plan, int m, int n0, int n1, int k, T alpha, T[] a, int aOff, int aRs, int aCs, TB b, int t,
        T beta, T[] c, int cOff, int ldc, int threads, T[]? bias, int biasOff, bool relu) where T : unmanaged, INumber<T> where TB : struct, IPanelSource<T>
    {
        int mr = plan.MR, nr = plan.NR, kc = plan.KC;
        int ncPanels = (plan.NC + nr - 1) / nr;
        // B slices packed together before one compute phase (each KC x NC slice is ncPanels * nr * kc values).
        int slicesPerGroup = Math.Max(1, (int)Math.Min((k + kc - 1) / kc, BGroupBytes / ((long)kc * ncPanels * nr * Unsafe.SizeOf<T>())));
        long sliceSize = (long)ncPanels * nr * kc;
        int chunks = (kc + PackRows - 1) / PackRows;
        bool byPanels = b.ColumnMajor;
        var bBuf = Buffers<T>.B(checked((int)(slicesPerGroup * sliceSize)));
        // Work is split over whole MR-row strips when M has enough of them, else over NR-column micro-panels.
        int mStrips = (m + mr - 1) / mr;
        bool splitM = mStrips >= 4 * threads || mStrips >= (Math.Min(n1 - n0, plan.NC) + nr - 1) / nr;
        fixed (T* ap = a, cp = c)
        fixed (T* bpack = bBuf, biasP = bias)
        {
            T* pa = ap + aOff, pc = cp + cOff, pB = Align(bpack);
            for (int jc = n0; jc < n1; jc += plan.NC)
            {
                int nc = Math.Min(plan.NC, n1 - jc);
                int panels = (nc + nr - 1) / nr, units = byPanels ? panels : chunks;
                T* cBlk = pc + jc, biasBlk = bias is not null ? biasP + biasOff + jc : null;
                for (int g0 = 0; g0 < k; g0 += slicesPerGroup * kc)
                {
                    int slices = Math.Min(slicesPerGroup, (k - g0 + kc - 1) / kc);
                    // Pack the group's B slices in row chunks (a column-major B in whole panels, so each thread reads
                    // whole columns front to back) split into `threads` parts (the caller runs one), then every part of
                    // C runs all of them: two barriers per group instead of two per slice.
                    ForParts(threads, slices * units, (s, e) =>
                    {
                        for (int u = s; u < e;)
                        {
                            int slice = u / units, uEnd = Math.Min(e, (slice + 1) * units), p0 = g0 + slice * kc, kcNow = Math.Min(kc, k - p0);
                            int u0 = u - slice * units, u1 = uEnd - slice * units;
                            T* dst = pB + slice * sliceSize;
                            if (byPanels)
                            {
                                int j0 = u0 * nr, j1 = Math.Min(nc, u1 * nr);
                                b.Pack(t, p0, kcNow, jc + j0, j1 - j0, nr, plan.HalfNR, dst + (long)j0 * kcNow, 0, kcNow);
                            }
                            else
                            {
                                int r0 = u0 * PackRows, r1 = Math.Min(kcNow, u1 * PackRows);
                                if (r1 > r0) b.Pack(t, p0, kcNow, jc, nc, nr, plan.HalfNR, dst, r0, r1);
                            }
                            u = uEnd;
                        }
                    });
                    void Slices(int i0, int i1, int j0, int j1)
                    {
                        for (int slice = 0; slice < slices; slice++)
                        {
                            int p0 = g0 + slice * kc, kcNow = Math.Min(kc, k - p0);
                            // The epilogue runs once, after the last K slice.
                            bool last = p0 + kcNow >= k;
                            Block(plan, i0, i1, j0, j1, kcNow, nc, alpha, pa + (long)p0 * aCs, aRs, aCs, pB + slice * sliceSize,
                                p0 == 0 ? beta : T.One, cBlk, ldc, last ? biasBlk : null, last && relu);
                        }
                    }
                    if (splitM)
                        ForGuided(threads, mStrips, MinStrips, (s, e) => Slices(s * mr, Math.Min(m, e * mr), 0, panels));
                    else
                        ForGuided(threads, panels, 1, (s, e) => Slices(0, m, s, e));
                }
            }
        }
    }

    // Rows [i0, i1) of C against micro-panels [j0, j1) of the packed B, for one KC slice: the ic / jr / ir loops.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static unsafe void Block<T>(Plan plan, int i0, int i1, int j0, int j1, int kc, int nc, T alpha, T* a, int aRs, int aCs, T* bPacked,
        T beta, T* c, int ldc, T* bias, bool relu) where T : unmanaged, INumber<T>
    {
        int mr = plan.MR, nr = plan.NR;
        bool epilogue = bias != null || relu;
        // A row-major A is read in place by the AVX-512 tiles, and only a last strip shorter than MR is packed (zero
        // rows): the pack was 2.5-3% of a 1024 or 2048 product's time, and the six rows' lines serve a tile from L1
        // and L2 as the packed strip's do (interleaved on Zen 5, 2 cores: 1024^3 +2.4%, 2048^3 +1.5%, 256 x 784 x
        // 1024 +1.7%, 257 x 130 x 515 +2.0%; one core 1024^3 +2.0%).
        bool direct = aCs == 1 && plan.Kernel == GemmKernel.Vector512;
        var aBuf = Buffers<T>.A((plan.MC + plan.MR) * plan.KC);
        T* tile = stackalloc T[6 * 64 + 16];
        T* tileAligned = Align(tile);
        fixed (T* abuf = aBuf)
        {
            T* pA = Align(abuf);
            for (int ic = i0; ic < i1; ic += plan.MC)
            {
                int mc = Math.Min(plan.MC, i1 - ic), full = direct ? mc / mr * mr : 0;
                if (mc > full) Pack.A(kc, mc - full, mr, a + (long)(ic + full) * aRs, aRs, aCs, pA + (long)full * kc);
                for (int jr = j0; jr < j1; jr++)
                {
                    int nrNow = Math.Min(nr, nc - jr * nr);
                    T* bPanel = bPacked + (long)jr * nr * kc;
                    // A last panel narrower than a full tile was packed as half panels (see Pack.B).
                    if (nrNow == nr || plan.HalfNR == 0)
                        Tiles(jr * nr, nrNow, nr, false, bPanel);
                    else
                        for (int h = 0; h < nrNow; h += plan.HalfNR)
                            Tiles(jr * nr + h, Math.Min(plan.HalfNR, nrNow - h), plan.HalfNR, true, bPanel + (long)h * kc);
                }

                // The MR x tileNr tiles of C's columns [j, j + w) down the MC block, against one packed B panel.
                [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
                void Tiles(int j, int w, int tileNr, bool half, T* bPanel)
                {
                    for (int ir = 0; ir < mc; ir += mr)
                    {
                        int mrNow = Math.Min(mr, mc - ir);
                        bool rows = ir < full;
                        T* aPanel = rows ? a + (long)(ic + ir) * aRs : pA + (long)ir * kc;
                        T* cTile = c + (long)(ic + ir) * ldc + j;
                        if (mrNow == mr && w == tileNr)
                        {
                            if (rows) GemmMicro.Tile512Rows(kc, aPanel, aRs, bPanel, cTile, ldc, alpha, beta, half);
                            else GemmMicro.Tile(plan.Kernel, kc, aPanel, bPanel, cTile, ldc, alpha, beta, half);
                        }
                        else
                        {
                            if (rows) GemmMicro.Tile512Rows(kc, aPanel, aRs, bPanel, tileAligned, tileNr, T.One, T.Zero, half);
                            else GemmMicro.Tile(plan.Kernel, kc, aPanel, bPanel, tileAligned, tileNr, T.One, T.Zero, half);
                            for (int r = 0; r < mrNow; r++)
                            {
                                var cr = new Span<T>(cTile + (long)r * ldc, w);
                                var tr = new ReadOnlySpan<T>(tileAligned + r * tileNr, w);
                                if (beta == T.Zero) TP.Multiply(tr, alpha, cr);
                                else
                                {
                                    TP.Multiply(cr, beta, cr);
                                    TP.MultiplyAdd(tr, alpha, cr, cr);
                                }
                            }
                        }
                        if (epilogue)
                            for (int r = 0; r < mrNow; r++)
                                Epilogue(new Span<T>(cTile + (long)r * ldc, w), bias == null ? default : new ReadOnlySpan<T>(bias + j, w), relu);
                    }
                }
            }
        }
    }

    // Runs body over [0, count) in `threads` equal contiguous parts (the caller runs one).
    static void ForParts(int threads, int count, Action<int, int> body)
    {
        int parts = Math.Min(count, threads);
        if (parts <= 1) { body(0, count); return; }
        WorkerTeam.For(parts, t =>
        {
            int s = (int)((long)count * t / parts), e = (int)((long)count * (t + 1) / parts);
            if (e > s) body(s, e);
        });
    }

    // Runs body over [0, count) like ForParts, in parts taken first come, first served that shrink as the work runs out
    // (each about 1 / (2 threads) of what is left, at least `min`): large parts keep packed operands in cache, and the
    // last ones are small, so a thread delayed by the OS or a late wake-up leaves little for the others to wait on.
    static void ForGuided(int threads, int count, int min, Action<int, int> body)
    {
        if (threads <= 1 || count <= min) { body(0, count); return; }
        var bounds = new List<int> { 0 };
        for (int pos = 0; pos < count;)
            bounds.Add(pos = Math.Min(count, pos + Math.Max(min, (count - pos + 2 * threads - 1) / (2 * threads))));
        WorkerTeam.For(bounds.Count - 1, t => body(bounds[t], bounds[t + 1]));
    }

    static unsafe T* Align<T>(T* p) where T : unmanaged => (T*)(((nint)p + 63) & ~(nint)63);

    // Pack buffers: pinned, reused per thread (A by every worker, B by each thread that packs a product's B).
    static class Buffers<T> where T : unmanaged
    {
        [ThreadStatic] static T[]? _a, _b;
        static readonly int Pad = 64 / Unsafe.SizeOf<T>();
        public static T[] A(int length) => _a is { } x && x.Length >= length + Pad ? x : _a = GC.AllocateUninitializedArray<T>(length + Pad, pinned: true);
        public static T[] B(int length) => _b is { } x && x.Length >= length + Pad ? x : _b = GC.AllocateUninitializedArray<T>(length + Pad, pinned: true);
    }
}

/// <summary>
/// A GEMM's B operand as a source of packed panels: <see cref="Gemm.RunPacked{T, TB}"/> asks it for row ranges of each
/// KC-deep slice, in <see cref="Pack.B{T}"/>'s format, from several threads at once (so it must not keep state).
/// </summary>
public unsafe interface IPanelSource<T> where T : unmanaged
{
    /// <summary>
    /// Packs rows [r0, r1) of product <paramref name="t"/>'s kc x nc slice of B (B's rows p0 .., columns jc ..) into its
    /// micro-panels at <paramref name="dst"/>, as <see cref="Pack.B{T}"/> does (nr wide, half panels of halfNr for a
    /// narrow last panel when halfNr > 0, zero-padded).
    /// </summary>
    void Pack(int t, int p0, int kc, int jc, int nc, int nr, int halfNr, T* dst, int r0, int r1);

    /// <summary>
    /// True when B's columns, not its rows, are contiguous (a transposed B, such as a linear layer's weight [out, in]):
    /// the product then asks for whole panels (all kc rows of a column range) rather than row ranges.
    /// </summary>
    bool ColumnMajor { get; }
}

/// <summary>A dense B: product t's element (p, j) at b[t*bs + p*rs + j*cs].</summary>
public readonly unsafe struct StridedPanels<T>(T* b, int bs, int rs, int cs) : IPanelSource<T> where T : unmanaged, INumber<T>
{
    /// <inheritdoc/>
    public void Pack(int t, int p0, int kc, int jc, int nc, int nr, int halfNr, T* dst, int r0, int r1) =>
        Cpu.Pack.B(kc, nc, nr, halfNr, b + (long)t * bs + (long)p0 * rs + (long)jc * cs, rs, cs, dst, r0, r1);

    /// <inheritdoc/>
    public bool ColumnMajor => rs < cs;
}

/// <summary>
/// A dense half-precision B (<typeparamref name="TW"/>: ushort holding bfloat16 bits, or Half): product t's element
/// (p, j) at b[t*bs + p*rs + j*cs], widened exactly to float32 as it is packed in <see cref="Pack.B{T}"/>'s format.
/// </summary>
public readonly unsafe struct WidenedPanels<TW>(TW* b, int bs, int rs, int cs) : IPanelSource<float> where TW : unmanaged
{
    /// <inheritdoc/>
    public void Pack(int t, int p0, int kc, int jc, int nc, int nr, int halfNr, float* dst, int r0, int r1)
    {
        TW* src = b + (long)t * bs + (long)p0 * rs + (long)jc * cs;
        for (int q = 0, j0 = 0; j0 < nc; q++, j0 += nr)
        {
            int w = Math.Min(nr, nc - j0);
            float* d = dst + (long)q * nr * kc;
            TW* col = src + (long)j0 * cs;
            if (w == nr || halfNr == 0) Panel(r0, r1, w, nr, col, d);
            else
            {
                Panel(r0, r1, Math.Min(w, halfNr), halfNr, col, d);
                if (w > halfNr) Panel(r0, r1, w - halfNr, halfNr, col + (long)halfNr * cs, d + (long)halfNr * kc);
            }
        }
    }

    /// <inheritdoc/>
    public bool ColumnMajor => rs < cs;

    // Rows [r0, r1) of one panel: w widened values per row, zero-padded to nr.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    void Panel(int r0, int r1, int w, int nr, TW* col, float* d)
    {
        for (int p = r0; p < r1; p++)
        {
            TW* s = col + (long)p * rs;
            float* o = d + (long)p * nr;
            int j = 0;
            if (cs == 1)
                for (; j + 8 <= w; j += 8) Lanes256<float, TW>.LoadW(s + j).Store(o + j);
            for (; j < w; j++) o[j] = Lanes1<float, TW>.LoadW(s + (long)j * cs);
            for (; j < nr; j++) o[j] = 0;
        }
    }
}
