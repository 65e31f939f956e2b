using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// GEMM register tiles: C[MR x NR] = alpha * sum_p a[p, 0..MR) (x) b[p, 0..NR) + beta * C over packed k-major panels
/// (A panel: MR values per k; B panel: NR values per k). Each accumulator is a named local so the JIT keeps all of them
/// in registers; one A element is broadcast and multiplied into two B vectors per row.
/// Reference: <see cref="Reference.Gemm"/>.
/// </summary>
public static unsafe class GemmMicro
{
    /// <summary>
    /// One full MR x NR tile with the given kernel (see <see cref="GemmKernel"/> for the tile shapes); <paramref name="half"/>:
    /// the MR x NR/2 tile, on a B panel packed half as wide (Vector512 only, see <see cref="HalfWidth"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Tile<T>(GemmKernel kernel, int kc, T* a, T* b, T* c, int ldc, T alpha, T beta, bool half = false) where T : unmanaged, INumber<T>
    {
        switch (kernel)
        {
            case GemmKernel.Vector512 when half: K512Half<T, PackedA>(kc, a, 0, b, c, ldc, alpha, beta); break;
            case GemmKernel.Vector512: K512<T, PackedA>(kc, a, 0, b, c, ldc, alpha, beta); break;
            case GemmKernel.Vector256: K256(kc, a, b, c, ldc, alpha, beta); break;
            default: Scalar(kc, a, b, c, ldc, alpha, beta); break;
        }
    }

    /// <summary>
    /// As <see cref="Tile{T}"/> with the Vector512 kernel, reading A unpacked: row r of the tile is a[r*lda ..], k
    /// contiguous (a row-major A, whose strips then need no pack).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Tile512Rows<T>(int kc, T* a, long lda, T* b, T* c, int ldc, T alpha, T beta, bool half = false) where T : unmanaged, INumber<T>
    {
        if (half) K512Half<T, RowsA>(kc, a, lda, b, c, ldc, alpha, beta);
        else K512<T, RowsA>(kc, a, lda, b, c, ldc, alpha, beta);
    }

    /// <summary>Where a tile's A values are: element (r, p) at a[TA.Step * p + TA.Row(lda, r)].</summary>
    public interface IAPanel
    {
        /// <summary>The offset of row r (0 to 5) from row 0.</summary>
        static abstract long Row(long lda, int r);

        /// <summary>The offset from one k to the next.</summary>
        static abstract int Step { get; }
    }

    /// <summary>A packed MR-tall micro-panel (<see cref="Pack.A{T}"/>): six values per k.</summary>
    public struct PackedA : IAPanel
    {
        /// <inheritdoc/>
        public static long Row(long lda, int r) => r;

        /// <inheritdoc/>
        public static int Step => 6;
    }

    /// <summary>Six rows of a row-major A, lda apart.</summary>
    public struct RowsA : IAPanel
    {
        /// <inheritdoc/>
        public static long Row(long lda, int r) => r * lda;

        /// <inheritdoc/>
        public static int Step => 1;
    }

    /// <summary>
    /// The width of a kernel's half tile (0: none): a product's last B panel, when narrower than a full tile, is packed
    /// and run as half tiles (see <see cref="Pack.B{T}"/>).
    /// </summary>
    public static int HalfWidth<T>(GemmKernel kernel) where T : unmanaged => kernel == GemmKernel.Vector512 ? Vector512<T>.Count * 2 : 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<T> Fma<T>(Vector512<T> x, Vector512<T> y, Vector512<T> acc)
    {
        if (typeof(T) == typeof(float)) return Vector512.FusedMultiplyAdd(x.AsSingle(), y.AsSingle(), acc.AsSingle()).As<float, T>();
        return Vector512.FusedMultiplyAdd(x.AsDouble(), y.AsDouble(), acc.AsDouble()).As<double, T>();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<T> Fma<T>(Vector256<T> x, Vector256<T> y, Vector256<T> acc)
    {
        if (typeof(T) == typeof(float)) return Vector256.FusedMultiplyAdd(x.AsSingle(), y.AsSingle(), acc.AsSingle()).As<float, T>();
        return Vector256.FusedMultiplyAdd(x.AsDouble(), y.AsDouble(), acc.AsDouble()).As<double, T>();
    }

    /// <summary>
    /// 6 x (4 x Vector512): 24 accumulators, 4 B vectors and 1 broadcast A in 29 of the 32 zmm registers. Against the
    /// 6 x 2 tile it loads 10 instead of 16 values per 24 FMAs and sweeps each packed A block half as often. A is a
    /// packed strip or six rows of a row-major A (<typeparamref name="TA"/>, <paramref name="lda"/>).
    /// </summary>
    /// <remarks>
    /// Its 256 KiB B micro-panel streams from L2 on every tile; tiles of 12 x 32 and 8 x 48 stream a half and three
    /// quarters of that, yet in the same loop nest (1024 x 512 x 1024, one Zen 5 core) all three ran 208-210 GFLOP/s,
    /// 96% of the core's FMA peak, so the L2 stream costs nothing measurable.
    /// </remarks>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void K512<T, TA>(int kc, T* a, long lda, T* b, T* c, int ldc, T alpha, T beta) where T : unmanaged, INumber<T> where TA : struct, IAPanel
    {
        long a1 = TA.Row(lda, 1), a2 = TA.Row(lda, 2), a3 = TA.Row(lda, 3), a4 = TA.Row(lda, 4), a5 = TA.Row(lda, 5);
        int w = Vector512<T>.Count;
        PrefetchTile(c, ldc, 4 * w * sizeof(T));
        Vector512<T> c00 = default, c01 = default, c02 = default, c03 = default, c10 = default, c11 = default, c12 = default, c13 = default,
            c20 = default, c21 = default, c22 = default, c23 = default, c30 = default, c31 = default, c32 = default, c33 = default,
            c40 = default, c41 = default, c42 = default, c43 = default, c50 = default, c51 = default, c52 = default, c53 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b); var b1 = Vector512.Load(b + w); var b2 = Vector512.Load(b + 2 * w); var b3 = Vector512.Load(b + 3 * w);
            var x = Vector512.Create(a[0]); c00 = Fma(x, b0, c00); c01 = Fma(x, b1, c01); c02 = Fma(x, b2, c02); c03 = Fma(x, b3, c03);
            x = Vector512.Create(a[a1]); c10 = Fma(x, b0, c10); c11 = Fma(x, b1, c11); c12 = Fma(x, b2, c12); c13 = Fma(x, b3, c13);
            x = Vector512.Create(a[a2]); c20 = Fma(x, b0, c20); c21 = Fma(x, b1, c21); c22 = Fma(x, b2, c22); c23 = Fma(x, b3, c23);
            x = Vector512.Create(a[a3]); c30 = Fma(x, b0, c30); c31 = Fma(x, b1, c31); c32 = Fma(x, b2, c32); c33 = Fma(x, b3, c33);
            x = Vector512.Create(a[a4]); c40 = Fma(x, b0, c40); c41 = Fma(x, b1, c41); c42 = Fma(x, b2, c42); c43 = Fma(x, b3, c43);
            x = Vector512.Create(a[a5]); c50 = Fma(x, b0, c50); c51 = Fma(x, b1, c51); c52 = Fma(x, b2, c52); c53 = Fma(x, b3, c53);
            a += TA.Step; b += 4 * w;
        }
        var va = Vector512.Create(alpha);
        var vb = Vector512.Create(beta);
        Row(c, w, c00, c01, va, vb, beta); Row(c + 2 * w, w, c02, c03, va, vb, beta); c += ldc;
        Row(c, w, c10, c11, va, vb, beta); Row(c + 2 * w, w, c12, c13, va, vb, beta); c += ldc;
        Row(c, w, c20, c21, va, vb, beta); Row(c + 2 * w, w, c22, c23, va, vb, beta); c += ldc;
        Row(c, w, c30, c31, va, vb, beta); Row(c + 2 * w, w, c32, c33, va, vb, beta); c += ldc;
        Row(c, w, c40, c41, va, vb, beta); Row(c + 2 * w, w, c42, c43, va, vb, beta); c += ldc;
        Row(c, w, c50, c51, va, vb, beta); Row(c + 2 * w, w, c52, c53, va, vb, beta);
    }

    /// <summary>6 x (2 x Vector512), the half tile of <see cref="K512"/>: 12 accumulators.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void K512Half<T, TA>(int kc, T* a, long lda, T* b, T* c, int ldc, T alpha, T beta) where T : unmanaged, INumber<T> where TA : struct, IAPanel
    {
        long a1 = TA.Row(lda, 1), a2 = TA.Row(lda, 2), a3 = TA.Row(lda, 3), a4 = TA.Row(lda, 4), a5 = TA.Row(lda, 5);
        int w = Vector512<T>.Count;
        PrefetchTile(c, ldc, 2 * w * sizeof(T));
        Vector512<T> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b); var b1 = Vector512.Load(b + w);
            var x = Vector512.Create(a[0]); c00 = Fma(x, b0, c00); c01 = Fma(x, b1, c01);
            x = Vector512.Create(a[a1]); c10 = Fma(x, b0, c10); c11 = Fma(x, b1, c11);
            x = Vector512.Create(a[a2]); c20 = Fma(x, b0, c20); c21 = Fma(x, b1, c21);
            x = Vector512.Create(a[a3]); c30 = Fma(x, b0, c30); c31 = Fma(x, b1, c31);
            x = Vector512.Create(a[a4]); c40 = Fma(x, b0, c40); c41 = Fma(x, b1, c41);
            x = Vector512.Create(a[a5]); c50 = Fma(x, b0, c50); c51 = Fma(x, b1, c51);
            a += TA.Step; b += 2 * w;
        }
        var va = Vector512.Create(alpha);
        var vb = Vector512.Create(beta);
        Row(c, w, c00, c01, va, vb, beta); c += ldc;
        Row(c, w, c10, c11, va, vb, beta); c += ldc;
        Row(c, w, c20, c21, va, vb, beta); c += ldc;
        Row(c, w, c30, c31, va, vb, beta); c += ldc;
        Row(c, w, c40, c41, va, vb, beta); c += ldc;
        Row(c, w, c50, c51, va, vb, beta);
    }

    // Two vectors of a C row: alpha x (+ beta C, unless beta is zero, so NaNs in C do not propagate).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Row<T>(T* c, int w, Vector512<T> x0, Vector512<T> x1, Vector512<T> va, Vector512<T> vb, T beta) where T : unmanaged, INumber<T>
    {
        if (beta == T.Zero)
        {
            Vector512.Store(x0 * va, c); Vector512.Store(x1 * va, c + w);
        }
        else
        {
            Vector512.Store(Fma(x0, va, Vector512.Load(c) * vb), c); Vector512.Store(Fma(x1, va, Vector512.Load(c + w) * vb), c + w);
        }
    }

    /// <summary>6 x (2 x Vector256): 12 accumulators, 2 B vectors and 1 broadcast A in 15 of the 16 ymm registers.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void K256<T>(int kc, T* a, T* b, T* c, int ldc, T alpha, T beta) where T : unmanaged, INumber<T>
    {
        int w = Vector256<T>.Count;
        PrefetchTile(c, ldc, 2 * w * sizeof(T));
        Vector256<T> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b); var b1 = Vector256.Load(b + w);
            var x = Vector256.Create(a[0]); c00 = Fma(x, b0, c00); c01 = Fma(x, b1, c01);
            x = Vector256.Create(a[1]); c10 = Fma(x, b0, c10); c11 = Fma(x, b1, c11);
            x = Vector256.Create(a[2]); c20 = Fma(x, b0, c20); c21 = Fma(x, b1, c21);
            x = Vector256.Create(a[3]); c30 = Fma(x, b0, c30); c31 = Fma(x, b1, c31);
            x = Vector256.Create(a[4]); c40 = Fma(x, b0, c40); c41 = Fma(x, b1, c41);
            x = Vector256.Create(a[5]); c50 = Fma(x, b0, c50); c51 = Fma(x, b1, c51);
            a += 6; b += 2 * w;
        }
        var va = Vector256.Create(alpha);
        if (beta == T.Zero)
        {
            Vector256.Store(c00 * va, c); Vector256.Store(c01 * va, c + w); c += ldc;
            Vector256.Store(c10 * va, c); Vector256.Store(c11 * va, c + w); c += ldc;
            Vector256.Store(c20 * va, c); Vector256.Store(c21 * va, c + w); c += ldc;
            Vector256.Store(c30 * va, c); Vector256.Store(c31 * va, c + w); c += ldc;
            Vector256.Store(c40 * va, c); Vector256.Store(c41 * va, c + w); c += ldc;
            Vector256.Store(c50 * va, c); Vector256.Store(c51 * va, c + w);
        }
        else
        {
            var vb = Vector256.Create(beta);
            Vector256.Store(Fma(c00, va, Vector256.Load(c) * vb), c); Vector256.Store(Fma(c01, va, Vector256.Load(c + w) * vb), c + w); c += ldc;
            Vector256.Store(Fma(c10, va, Vector256.Load(c) * vb), c); Vector256.Store(Fma(c11, va, Vector256.Load(c + w) * vb), c + w); c += ldc;
            Vector256.Store(Fma(c20, va, Vector256.Load(c) * vb), c); Vector256.Store(Fma(c21, va, Vector256.Load(c + w) * vb), c + w); c += ldc;
            Vector256.Store(Fma(c30, va, Vector256.Load(c) * vb), c); Vector256.Store(Fma(c31, va, Vector256.Load(c + w) * vb), c + w); c += ldc;
            Vector256.Store(Fma(c40, va, Vector256.Load(c) * vb), c); Vector256.Store(Fma(c41, va, Vector256.Load(c + w) * vb), c + w); c += ldc;
            Vector256.Store(Fma(c50, va, Vector256.Load(c) * vb), c); Vector256.Store(Fma(c51, va, Vector256.Load(c + w) * vb), c + w);
        }
    }

    // Pulls the 6-row C tile toward L1 while the k loop runs (C is read or written only after it), hiding the miss
    // that every tile would otherwise take once per KC slice.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void PrefetchTile<T>(T* c, int ldc, int rowBytes) where T : unmanaged
    {
        if (!Sse.IsSupported) return;
        for (int r = 0; r < 6; r++)
        {
            byte* row = (byte*)(c + (long)r * ldc);
            for (int off = 0; off < rowBytes + 63; off += 64) Sse.Prefetch0(row + Math.Min(off, rowBytes - 1));
        }
    }

    /// <summary>4 x 4 scalar tile for machines without SIMD (16 accumulators).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Scalar<T>(int kc, T* a, T* b, T* c, int ldc, T alpha, T beta) where T : unmanaged, INumber<T>
    {
        T c00 = T.Zero, c01 = T.Zero, c02 = T.Zero, c03 = T.Zero, c10 = T.Zero, c11 = T.Zero, c12 = T.Zero, c13 = T.Zero,
          c20 = T.Zero, c21 = T.Zero, c22 = T.Zero, c23 = T.Zero, c30 = T.Zero, c31 = T.Zero, c32 = T.Zero, c33 = T.Zero;
        for (int p = 0; p < kc; p++)
        {
            T b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3], x = a[0];
            c00 += x * b0; c01 += x * b1; c02 += x * b2; c03 += x * b3; x = a[1];
            c10 += x * b0; c11 += x * b1; c12 += x * b2; c13 += x * b3; x = a[2];
            c20 += x * b0; c21 += x * b1; c22 += x * b2; c23 += x * b3; x = a[3];
            c30 += x * b0; c31 += x * b1; c32 += x * b2; c33 += x * b3;
            a += 4; b += 4;
        }
        Put(c, 0, c00, c01, c02, c03, alpha, beta); Put(c + ldc, 0, c10, c11, c12, c13, alpha, beta);
        Put(c + 2 * ldc, 0, c20, c21, c22, c23, alpha, beta); Put(c + 3 * ldc, 0, c30, c31, c32, c33, alpha, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Put<T>(T* c, int j, T v0, T v1, T v2, T v3, T alpha, T beta) where T : unmanaged, INumber<T>
    {
        if (beta == T.Zero) { c[j] = alpha * v0; c[j + 1] = alpha * v1; c[j + 2] = alpha * v2; c[j + 3] = alpha * v3; }
        else { c[j] = alpha * v0 + beta * c[j]; c[j + 1] = alpha * v1 + beta * c[j + 1]; c[j + 2] = alpha * v2 + beta * c[j + 2]; c[j + 3] = alpha * v3 + beta * c[j + 3]; }
    }
}

/// <summary>
/// Packing of GEMM operands into the micro-kernels' k-major panels, zero-padded to whole tiles, from any strides.
/// Reference: <see cref="Reference.Gemm"/>.
/// </summary>
public static unsafe class Pack
{
    /// <summary>
    /// Rows [p0, p1) of B's kc x nc slice (element (p, j) at src[p*rs + j*cs]) into its micro-panels at dst: panel q
    /// holds kc rows of nr values for columns q*nr.. at dst + q*nr*kc; columns past nc are zero. With
    /// <paramref name="halfNr"/> > 0 (a kernel with a half tile), a last panel narrower than nr is packed as one or two
    /// half panels (kc rows of halfNr values each, the second at + halfNr*kc), so a wide tile pads no more columns than
    /// a narrow one.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void B<T>(int kc, int nc, int nr, int halfNr, T* src, long rs, long cs, T* dst, int p0, int p1) where T : unmanaged, INumber<T>
    {
        int rows = p1 - p0;
        if (cs == 1 && rows > 1)
        {
            // Row-major B: each row is read once, front to back, its pieces going to every panel. Panel by panel would
            // jump a row stride every nr values, which the hardware prefetcher does not follow across pages (a B
            // not in cache packed at 13 GB/s that way).
            // A row a few KiB ahead is fetched as the row is packed: rows a stride apart, each row a page or more away,
            // are a stream the hardware prefetchers do not follow (a 2-core Zen 5, 1024^3 with each thread packing
            // half of every row: +2.6%).
            long bytes = (long)nc * sizeof(T);
            int ahead = (int)Math.Clamp(8192 / bytes, 2, 32);
            for (int p = p0; p < p1; p++)
            {
                if (Sse.IsSupported && p + ahead < kc)
                    for (byte* r = (byte*)(src + (p + ahead) * rs), e = r + bytes; r < e; r += 64) Sse.Prefetch0(r);
                B(kc, nc, nr, halfNr, src, rs, cs, dst, p, p + 1);
            }
            return;
        }
        src += p0 * rs;
        for (int q = 0, j0 = 0; j0 < nc; q++, j0 += nr)
        {
            int w = Math.Min(nr, nc - j0);
            T* d = dst + (long)q * nr * kc, col = src + j0 * cs;
            if (w == nr || halfNr == 0) PanelB(rows, w, nr, col, rs, cs, d + (long)p0 * nr);
            else
            {
                PanelB(rows, Math.Min(w, halfNr), halfNr, col, rs, cs, d + (long)p0 * halfNr);
                if (w > halfNr) PanelB(rows, w - halfNr, halfNr, col + halfNr * cs, rs, cs, d + (long)halfNr * kc + (long)p0 * halfNr);
            }
        }
    }

    // One panel: kc rows of w values padded with zeros to nr.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void PanelB<T>(int kc, int w, int nr, T* col, long rs, long cs, T* d) where T : unmanaged, INumber<T>
    {
        if (cs == 1)
        {
            if (w == nr && Vector512.IsHardwareAccelerated && nr % Vector512<T>.Count == 0)
            {
                int vw = Vector512<T>.Count;
                for (int p = 0; p < kc; p++, d += nr)
                {
                    T* r = col + p * rs;
                    // 256-bit halves: B's rows are rarely 64-byte aligned, and a straddling 512-bit load costs Zen 5 twice.
                    for (int j = 0; j < nr; j += vw / 2) Vector256.Store(Vector256.Load(r + j), d + j);
                }
            }
            else
                for (int p = 0; p < kc; p++, d += nr)
                {
                    new ReadOnlySpan<T>(col + p * rs, w).CopyTo(new Span<T>(d, w));
                    new Span<T>(d + w, nr - w).Clear();
                }
        }
        else if (rs == 1 && typeof(T) == typeof(float) && Avx.IsSupported && w >= 8)
            PanelBTransposed(kc, w, nr, (float*)col, cs, (float*)d);
        else
        {
            // Transposed or strided B: the panel is written in order while the w source columns are read as
            // parallel streams (each cache line of a transposed B serves 64 bytes' worth of consecutive p).
            for (int p = 0; p < kc; p++, d += nr)
            {
                T* sp = col + p * rs;
                for (int j = 0; j < w; j++) d[j] = sp[j * cs];
                for (int j = w; j < nr; j++) d[j] = T.Zero;
            }
        }
    }

    // A transposed float32 B (element (p, j) at col[j*cs + p]: a linear layer's weight [out, in]): 8 x 8 blocks are
    // read as eight runs of 8 consecutive p, one per column, and transposed in registers, so each load and store
    // moves 8 values where the strided loop gathered one at a time (1.5x the cost of a row-major product at 256 x 1024 x 1024).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void PanelBTransposed(int kc, int w, int nr, float* col, long cs, float* d)
    {
        int wv = w & ~7, pv = kc & ~7;
        // Eight columns at a time, each read front to back: eight sequential streams the prefetcher follows.
        for (int j = 0; j < wv; j += 8)
            for (int p = 0; p < pv; p += 8)
            {
                float* s = col + j * cs + p;
                Vector256<float> r0 = Avx.LoadVector256(s), r1 = Avx.LoadVector256(s + cs), r2 = Avx.LoadVector256(s + 2 * cs),
                    r3 = Avx.LoadVector256(s + 3 * cs), r4 = Avx.LoadVector256(s + 4 * cs), r5 = Avx.LoadVector256(s + 5 * cs),
                    r6 = Avx.LoadVector256(s + 6 * cs), r7 = Avx.LoadVector256(s + 7 * cs);
                Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1), t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3),
                    t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5), t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
                Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE), u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE),
                    u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE), u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
                float* o = d + (long)p * nr + j;
                Avx.Store(o, Avx.Permute2x128(u0, u4, 0x20));
                Avx.Store(o + nr, Avx.Permute2x128(u1, u5, 0x20));
                Avx.Store(o + 2 * nr, Avx.Permute2x128(u2, u6, 0x20));
                Avx.Store(o + 3 * nr, Avx.Permute2x128(u3, u7, 0x20));
                Avx.Store(o + 4 * nr, Avx.Permute2x128(u0, u4, 0x31));
                Avx.Store(o + 5 * nr, Avx.Permute2x128(u1, u5, 0x31));
                Avx.Store(o + 6 * nr, Avx.Permute2x128(u2, u6, 0x31));
                Avx.Store(o + 7 * nr, Avx.Permute2x128(u3, u7, 0x31));
            }
        // The rows past the last block of 8, then the columns past the last block of 8 and the zero padding.
        for (int q = pv; q < kc; q++)
            for (int j = 0; j < wv; j++) d[(long)q * nr + j] = col[j * cs + q];
        for (int q = 0; q < kc; q++)
        {
            for (int j = wv; j < w; j++) d[(long)q * nr + j] = col[j * cs + q];
            for (int j = w; j < nr; j++) d[(long)q * nr + j] = 0;
        }
    }

    /// <summary>
    /// A's mc x kc block (element (i, p) at src[i*rs + p*cs]) into mr-tall micro-panels: strip i0 holds kc columns of
    /// mr values at dst + i0*kc; rows past mc are zero.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void A<T>(int kc, int mc, int mr, T* src, long rs, long cs, T* dst) where T : unmanaged, INumber<T>
    {
        for (int i0 = 0; i0 < mc; i0 += mr)
        {
            int h = Math.Min(mr, mc - i0);
            T* d = dst + (long)i0 * kc, s = src + i0 * rs;
            if (h == 6 && mr == 6 && cs == 1)
            {
                T* r0 = s, r1 = s + rs, r2 = s + 2 * rs, r3 = s + 3 * rs, r4 = s + 4 * rs, r5 = s + 5 * rs;
                int p = Avx512F.IsSupported && (typeof(T) == typeof(float) || typeof(T) == typeof(double)) ? Interleave6(kc, r0, r1, r2, r3, r4, r5, d) : 0;
                for (d += 6 * p; p < kc; p++, d += 6)
                {
                    d[0] = r0[p]; d[1] = r1[p]; d[2] = r2[p]; d[3] = r3[p]; d[4] = r4[p]; d[5] = r5[p];
                }
            }
            else if (h == 6 && mr == 6 && rs == 1)
                for (int p = 0; p < kc; p++, d += 6)
                {
                    T* sp = s + p * cs;
                    d[0] = sp[0]; d[1] = sp[1]; d[2] = sp[2]; d[3] = sp[3]; d[4] = sp[4]; d[5] = sp[5];
                }
            else
                for (int p = 0; p < kc; p++, d += mr)
                {
                    for (int r = 0; r < h; r++) d[r] = s[r * rs + p * cs];
                    for (int r = h; r < mr; r++) d[r] = T.Zero;
                }
        }
    }

    // Row-major A, the common case: W = Vector256<T>.Count consecutive k of six rows are loaded as three 512-bit pairs
    // [r0|r1], [r2|r3], [r4|r5] and permuted into the panel's k-major order: three full stores per W columns instead
    // of 6W scalar moves (this pack streams all of A once per N block, most of the cost of a narrow-N product).
    // Returns how many k were done (a multiple of W).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int Interleave6<T>(int kc, T* r0, T* r1, T* r2, T* r3, T* r4, T* r5, T* d) where T : unmanaged
    {
        int w = Vector256<T>.Count, p = 0;
        var t = Interleave6Table<T>.Instance;
        var (pair0, pair1, pair2) = (t.Pair[0], t.Pair[1], t.Pair[2]);
        var (third0, third1, third2) = (t.Third[0], t.Third[1], t.Third[2]);
        var (mask0, mask1, mask2) = (t.FromThird[0], t.FromThird[1], t.FromThird[2]);
        for (; p + w <= kc; p += w, d += 6 * w)
        {
            Vector512<T> z0 = Pair(r0 + p, r1 + p), z1 = Pair(r2 + p, r3 + p), z2 = Pair(r4 + p, r5 + p);
            Vector512.Store(Gather(z0, z1, z2, pair0, third0, mask0), d);
            Vector512.Store(Gather(z0, z1, z2, pair1, third1, mask1), d + 2 * w);
            Vector512.Store(Gather(z0, z1, z2, pair2, third2, mask2), d + 4 * w);
        }
        return p;
    }

    // [lo | hi] from two 256-bit loads. Vector512.Create(lo, hi) would insert both halves into a vector kept on the
    // stack across iterations, and the 512-bit reload of two 256-bit stores fails store forwarding on every iteration.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<T> Pair<T>(T* lo, T* hi) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
            return Avx512F.InsertVector256(Vector256.Load((float*)lo).ToVector512Unsafe(), Vector256.Load((float*)hi), 1).As<float, T>();
        return Avx512F.InsertVector256(Vector256.Load((double*)lo).ToVector512Unsafe(), Vector256.Load((double*)hi), 1).As<double, T>();
    }

    // Lane l of the result: (z0:z1)[pair[l]], or z2[third[l]] where fromThird[l] is set.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<T> Gather<T>(Vector512<T> z0, Vector512<T> z1, Vector512<T> z2, Vector512<T> pair, Vector512<T> third, Vector512<T> fromThird) where T : unmanaged
    {
        Vector512<T> from01, from2;
        if (typeof(T) == typeof(float))
        {
            from01 = Avx512F.PermuteVar16x32x2(z0.AsSingle(), pair.AsInt32(), z1.AsSingle()).As<float, T>();
            from2 = Avx512F.PermuteVar16x32(z2.AsSingle(), third.AsInt32()).As<float, T>();
        }
        else
        {
            from01 = Avx512F.PermuteVar8x64x2(z0.AsDouble(), pair.AsInt64(), z1.AsDouble()).As<double, T>();
            from2 = Avx512F.PermuteVar8x64(z2.AsDouble(), third.AsInt64()).As<double, T>();
        }
        return Vector512.ConditionalSelect(fromThird, from2, from01);
    }

    // For output vector j of Interleave6 (panel positions f = 2Wj .. 2Wj + 2W - 1, holding row f % 6 of column f / 6):
    // lane indices into the table pair [r0|r1]:[r2|r3], lane indices into [r4|r5], and a mask of the lanes whose row
    // is 4 or 5.
    sealed class Interleave6Table<T> where T : unmanaged
    {
        public static readonly Interleave6Table<T> Instance = new();
        public readonly Vector512<T>[] Pair = new Vector512<T>[3], Third = new Vector512<T>[3], FromThird = new Vector512<T>[3];

        Interleave6Table()
        {
            int w = Vector256<T>.Count, lanes = 2 * w;
            for (int j = 0; j < 3; j++)
            {
                var pair = new long[lanes]; var third = new long[lanes]; var fromThird = new long[lanes];
                for (int l = 0; l < lanes; l++)
                {
                    int f = j * lanes + l, col = f / 6, row = f % 6;
                    int lane = (row % 2) * w + col;                  // position inside a [ra|rb] pair
                    pair[l] = (row / 2 == 1 ? lanes : 0) + lane;     // the second table's lanes follow the first's
                    third[l] = lane;
                    fromThird[l] = row >= 4 ? -1 : 0;
                }
                (Pair[j], Third[j], FromThird[j]) = typeof(T) == typeof(float)
                    ? (Ints(pair), Ints(third), Ints(fromThird))
                    : (Vector512.Create(pair).As<long, T>(), Vector512.Create(third).As<long, T>(), Vector512.Create(fromThird).As<long, T>());
            }
        }

        static Vector512<T> Ints(long[] v) => Vector512.Create(v.Select(x => (int)x).ToArray()).As<int, T>();
    }
}
