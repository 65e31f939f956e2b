using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Fused scaled-dot-product attention, forward and backward, blocked with an online softmax (FlashAttention-2's
/// schedule): only a <see cref="Block"/> x <see cref="Block"/> tile of scores exists at a time, never the T x T matrix.
/// Causal attention lets query i see keys j &lt;= i (top-left aligned, as PyTorch) and skips the blocks above the diagonal.
/// With AVX-512 the forward runs its own register tiles (<see cref="ForwardTiled{T}"/>); otherwise the tile products run on
/// the packed <see cref="Gemm"/>. Reference: <see cref="Reference.Attention"/>.
/// </summary>
public static unsafe class Attention
{
    /// <summary>Rows of queries and keys per tile.</summary>
    public const int Block = 64;

    /// <summary>
    /// y = softmax(scale q k^T (masked)) v for <paramref name="batch"/> heads; q [batch, tq, d], k [batch, tk, d],
    /// v [batch, tk, dv], y [batch, tq, dv] contiguous from their offsets; lse [batch, tq] receives each row's
    /// log-sum-exp of the scaled, masked scores (the backward recomputes probabilities from it). With no keys, y is 0
    /// and lse is -inf. Up to <see cref="FewRows"/> query rows per head run row by row; otherwise <c>kernel</c> Vector512
    /// (what Auto picks with AVX-512) runs the register-tiled forward, another kernel tiles of <see cref="Gemm"/> products
    /// with that micro-kernel.
    /// </summary>
    /// <exception cref="NotSupportedException">The kernel is not hardware-accelerated here.</exception>
    /// <exception cref="ArgumentException">k or v is batch-strided (<c>kBatchStride</c>, <c>vBatchStride</c>: the distance
    /// between heads' [tk, width] matrices, default dense) with more than <see cref="FewRows"/> query rows.</exception>
    public static void Forward<T>(int batch, int tq, int tk, int d, int dv, T[] q, int qOff, T[] k, int kOff, T[] v, int vOff,
        bool causal, T scale, T[] y, int yOff, T[] lse, int lseOff, GemmKernel kernel = GemmKernel.Auto, int kBatchStride = -1, int vBatchStride = -1)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (kernel == GemmKernel.Auto) kernel = Gemm.Best;
        if (kernel == GemmKernel.Vector512 && !Vector512.IsHardwareAccelerated)
            throw new NotSupportedException("attention: the Vector512 kernel is not hardware-accelerated on this machine");
        int kbs = kBatchStride < 0 ? tk * d : kBatchStride, vbs = vBatchStride < 0 ? tk * dv : vBatchStride;
        if (tq <= FewRows)
        {
            ForwardRows(batch, tq, tk, d, dv, q, qOff, k, kOff, kbs, v, vOff, vbs, causal, scale, y, yOff, lse, lseOff);
            return;
        }
        if (batch > 1 && (kbs != tk * d || vbs != tk * dv))
            throw new ArgumentException($"attention: keys and values {kbs} and {vbs} elements apart per head need at most {FewRows} query rows, got {tq}", nameof(kBatchStride));
        if (kernel == GemmKernel.Vector512 && (typeof(T) == typeof(float) || typeof(T) == typeof(double)))
        {
            ForwardTiled(batch, tq, tk, d, dv, q, qOff, k, kOff, v, vOff, causal, scale, y, yOff, lse, lseOff);
            return;
        }
        int qBlocks = (tq + Block - 1) / Block;
        long work = 2L * batch * tq * tk * (d + dv);
        Strided.Parallel(batch * qBlocks, work, (s, e) =>
        {
            var sc = Strided.Rent<T>(Block * Block);
            var m = new T[Block]; var l = new T[Block];
            for (int task = s; task < e; task++)
            {
                int b = task / qBlocks, i0 = task % qBlocks * Block, br = Math.Min(Block, tq - i0);
                int qi = qOff + (b * tq + i0) * d, yi = yOff + (b * tq + i0) * dv;
                new Span<T>(y, yi, br * dv).Clear();
                Array.Fill(m, T.NegativeInfinity); Array.Clear(l);
                int jEnd = causal ? Math.Min(tk, i0 + br) : tk;
                for (int j0 = 0; j0 < jEnd; j0 += Block)
                {
                    int bc = Math.Min(Block, jEnd - j0);
                    // Scores of this tile: scale Q_i K_j^T (K read transposed through its strides).
                    Gemm.Run(br, bc, d, scale, q, qi, d, 1, k, kOff + (b * tk + j0) * d, 1, d, T.Zero, sc, 0, bc, kernel, threads: 1);
                    for (int r = 0; r < br; r++)
                    {
                        var row = sc.AsSpan(r * bc, bc);
                        int valid = causal ? Math.Clamp(i0 + r - j0 + 1, 0, bc) : bc;
                        row[valid..].Clear();
                        if (valid == 0) continue;
                        var live = row[..valid];
                        T mNew = T.Max(m[r], TP.Max<T>(live));
                        TP.Subtract(live, mNew, live);
                        Elementwise.Unary(UnaryOp.Exp, live, live);
                        T corr = T.Exp(m[r] - mNew);
                        l[r] = l[r] * corr + TP.Sum<T>(live);
                        m[r] = mNew;
                        if (corr != T.One)
                        {
                            var yr = y.AsSpan(yi + r * dv, dv);
                            TP.Multiply(yr, corr, yr);
                        }
                    }
                    // Y_i += P V_j.
                    Gemm.Run(br, dv, bc, T.One, sc, 0, bc, 1, v, vOff + (b * tk + j0) * dv, dv, 1, T.One, y, yi, dv, kernel, threads: 1);
                }
                for (int r = 0; r < br; r++)
                {
                    lse[lseOff + b * tq + i0 + r] = l[r] == T.Zero ? T.NegativeInfinity : m[r] + T.Log(l[r]);
                    if (l[r] != T.Zero)
                    {
                        var yr = y.AsSpan(yi + r * dv, dv);
                        TP.Multiply(yr, T.One / l[r], yr);
                    }
                }
            }
            Strided.Return(sc);
        });
    }


    /// <summary>Query rows per head up to which the forward takes each row alone (<see cref="ForwardRows{T}"/>).</summary>
    public const int FewRows = 8;

    // A decoding step's few query rows per head: a tile of 64 query rows would be mostly padding, and its copies of Q
    // and V cost more than the rows' work. Each row's scores against its keys (dot products read in place), their
    // softmax, and the probability-weighted sum of V rows, which is exact in the same sense as the tiles' online one.
    static void ForwardRows<T>(int batch, int tq, int tk, int d, int dv, T[] q, int qOff, T[] k, int kOff, int kbs, T[] v, int vOff, int vbs,
        bool causal, T scale, T[] y, int yOff, T[] lse, int lseOff) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int rows = batch * tq;
        long work = 2L * rows * tk * (d + dv);
        // A decoding step's few rows stay here, without a closure (the call is a few hundred nanoseconds of work).
        if (Strided.Inline(rows, work)) RowRange(0, rows, tq, tk, d, dv, q, qOff, k, kOff, kbs, v, vOff, vbs, causal, scale, y, yOff, lse, lseOff);
        else RowsParallel(rows, work, tq, tk, d, dv, q, qOff, k, kOff, kbs, v, vOff, vbs, causal, scale, y, yOff, lse, lseOff);
    }

    // Apart from ForwardRows, whose parameters its lambda would otherwise capture in a closure made on every call.
    static void RowsParallel<T>(int rows, long work, int tq, int tk, int d, int dv, T[] q, int qOff, T[] k, int kOff, int kbs, T[] v, int vOff, int vbs,
        bool causal, T scale, T[] y, int yOff, T[] lse, int lseOff) where T : unmanaged, IFloatingPointIeee754<T> =>
        Strided.Parallel(rows, work, (s, e) => RowRange(s, e, tq, tk, d, dv, q, qOff, k, kOff, kbs, v, vOff, vbs, causal, scale, y, yOff, lse, lseOff));

    // Rows [s, e) of ForwardRows; the scores in a stack buffer up to 2048 keys (with room for the lanes past them that
    // Scores4 and ExpSum write).
    [SkipLocalsInit]
    static void RowRange<T>(int s, int e, int tq, int tk, int d, int dv, T[] q, int qOff, T[] k, int kOff, int kbs, T[] v, int vOff, int vbs,
        bool causal, T scale, T[] y, int yOff, T[] lse, int lseOff) where T : unmanaged, IFloatingPointIeee754<T>
    {
        const int Spare = 16;
        T[]? rented = tk > 2048 ? Strided.Rent<T>(tk + Spare) : null;
        Span<T> scores = rented is null ? stackalloc T[tk + Spare] : rented;
        bool four = typeof(T) == typeof(float) && Avx.IsSupported && d % 8 == 0, fused = typeof(T) == typeof(float) && Vector512.IsHardwareAccelerated;
        fixed (T* pq = q, pk = k, pv = v, py = y, ps = scores)
            for (int row = s; row < e; row++)
            {
                int b = row / tq, i = row % tq, n = causal ? Math.Min(tk, i + 1) : tk;
                T* qr = pq + qOff + (long)row * d, yr = py + yOff + (long)row * dv, kb = pk + kOff + (long)b * kbs, vb = pv + vOff + (long)b * vbs;
                if (n == 0) { new Span<T>(yr, dv).Clear(); lse[lseOff + row] = T.NegativeInfinity; continue; }
                T m = T.NegativeInfinity;
                if (four)
                {
                    float mf = Scores4((float*)qr, (float*)kb, n, d, Unsafe.As<T, float>(ref scale), (float*)ps);
                    m = Unsafe.As<float, T>(ref mf);
                }
                else
                    for (int j = 0; j < n; j++) m = T.Max(m, ps[j] = scale * Dot(qr, kb + (long)j * d, d));
                T l;
                if (fused)
                {
                    float lf = ExpSum((float*)ps, n, Unsafe.As<T, float>(ref m));
                    l = Unsafe.As<float, T>(ref lf);
                }
                else
                {
                    var live = new Span<T>(ps, n);
                    TP.Subtract(live, m, live);
                    Elementwise.Unary(UnaryOp.Exp, live, live);
                    l = TP.Sum<T>(live);
                }
                WeightedRows(ps, vb, n, dv, T.One / l, yr);
                lse[lseOff + row] = m + T.Log(l);
            }
        if (rented is not null) Strided.Return(rented);
    }

    // s[j] = scale dot(q, K row j) for the n rows of K (width d, a multiple of 8), and their maximum. Keys go four at a
    // time, each with its own accumulator, summed together by a tree of horizontal adds: one key's dot product alone is a
    // chain of dependent adds and a horizontal sum (a decoding step's 32-wide heads: 4.4 -> 1.5 ns a key on Zen 5). A
    // last partial block repeats the last key in its spare lanes (written to s[n .. n + 2], past the scores), so every
    // score is the same sum whatever n is.
    static float Scores4(float* q, float* k, int n, int d, float scale, float* s)
    {
        var mx = Vector128.Create(float.NegativeInfinity);
        for (int j = 0; j < n; j += 4)
        {
            float* k0 = k + (long)j * d, k1 = k + (long)Math.Min(j + 1, n - 1) * d, k2 = k + (long)Math.Min(j + 2, n - 1) * d, k3 = k + (long)Math.Min(j + 3, n - 1) * d;
            Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
            for (int p = 0; p < d; p += 8)
            {
                var qp = Vector256.Load(q + p);
                a0 = Vector256.FusedMultiplyAdd(qp, Vector256.Load(k0 + p), a0);
                a1 = Vector256.FusedMultiplyAdd(qp, Vector256.Load(k1 + p), a1);
                a2 = Vector256.FusedMultiplyAdd(qp, Vector256.Load(k2 + p), a2);
                a3 = Vector256.FusedMultiplyAdd(qp, Vector256.Load(k3 + p), a3);
            }
            // Lane c of the lower half holds key c's lanes {0-3}, of the upper half its lanes {4-7}.
            var h = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
            var s4 = (h.GetLower() + h.GetUpper()) * scale;
            s4.Store(s + j);
            mx = Vector128.Max(mx, s4);
        }
        return float.Max(float.Max(mx[0], mx[1]), float.Max(mx[2], mx[3]));
    }

    // s[j] = e^(s[j] - m) for j < n with the tiles' Exp, in place, and their sum; the lanes of a last partial vector past
    // n are set to 0 (s has room for them). One pass, where three span calls a row (subtract, exp, sum) cost a decoding
    // step's few keys more than their work.
    static float ExpSum(float* s, int n, float m)
    {
        var mv = Vector512.Create(m);
        var acc = Vector512<float>.Zero;
        for (int j = 0; j < n; j += 16)
        {
            var x = Vector512.Load(s + j) - mv;
            if (n - j < 16) x = Vector512.ConditionalSelect(Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(n - j)).AsSingle(), x, Vector512.Create(float.NegativeInfinity));
            var p = Exp(x);
            p.Store(s + j);
            acc += p;
        }
        return Vector512.Sum(acc);
    }

    // sum_p a[p] b[p] over whole vectors, then the tail.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static T Dot<T>(T* a, T* b, int d) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int p = 0, w = Vector256<T>.Count;
        T s = T.Zero;
        if (Vector256.IsHardwareAccelerated && d >= w)
        {
            var acc = Vector256<T>.Zero;
            for (; p + w <= d; p += w) acc = Lanes256<T, T>.Fma(Vector256.Load(a + p), Vector256.Load(b + p), acc);
            s = Vector256.Sum(acc);
        }
        for (; p < d; p++) s += a[p] * b[p];
        return s;
    }

    // y = inv sum_j p[j] V[j, :] for the n rows of V (width dv), a column block of vectors at a time held in registers
    // (four where dv allows: each block's sums are a chain of n dependent adds).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void WeightedRows<T>(T* p, T* v, int n, int dv, T inv, T* y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int c = 0, w = Vector256<T>.Count;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; c + 4 * w <= dv; c += 4 * w)
            {
                Vector256<T> a0 = Vector256<T>.Zero, a1 = a0, a2 = a0, a3 = a0;
                for (int j = 0; j < n; j++)
                {
                    var pj = Vector256.Create(p[j]);
                    T* vr = v + (long)j * dv + c;
                    a0 = Lanes256<T, T>.Fma(pj, Vector256.Load(vr), a0);
                    a1 = Lanes256<T, T>.Fma(pj, Vector256.Load(vr + w), a1);
                    a2 = Lanes256<T, T>.Fma(pj, Vector256.Load(vr + 2 * w), a2);
                    a3 = Lanes256<T, T>.Fma(pj, Vector256.Load(vr + 3 * w), a3);
                }
                var s = Vector256.Create(inv);
                (a0 * s).Store(y + c); (a1 * s).Store(y + c + w); (a2 * s).Store(y + c + 2 * w); (a3 * s).Store(y + c + 3 * w);
            }
            for (; c + 2 * w <= dv; c += 2 * w)
            {
                Vector256<T> a0 = Vector256<T>.Zero, a1 = Vector256<T>.Zero;
                for (int j = 0; j < n; j++)
                {
                    var pj = Vector256.Create(p[j]);
                    T* vr = v + (long)j * dv + c;
                    a0 = Lanes256<T, T>.Fma(pj, Vector256.Load(vr), a0);
                    a1 = Lanes256<T, T>.Fma(pj, Vector256.Load(vr + w), a1);
                }
                var s = Vector256.Create(inv);
                (a0 * s).Store(y + c); (a1 * s).Store(y + c + w);
            }
            for (; c + w <= dv; c += w)
            {
                var a0 = Vector256<T>.Zero;
                for (int j = 0; j < n; j++) a0 = Lanes256<T, T>.Fma(Vector256.Create(p[j]), Vector256.Load(v + (long)j * dv + c), a0);
                (a0 * Vector256.Create(inv)).Store(y + c);
            }
        }
        for (; c < dv; c++)
        {
            T a = T.Zero;
            for (int j = 0; j < n; j++) a += p[j] * v[(long)j * dv + c];
            y[c] = a * inv;
        }
    }

    // Keys per tile of the register-tiled forward (a multiple of TileRows).
    const int TileKeys = 64;
    const int TileRows = 4;

    /// <summary>
    /// The forward on AVX-512 register tiles, per head and block of NQ = 4 vector widths of queries (64 float32): the
    /// scores are computed transposed, S^T = K_j Q_i^T (keys down, queries across), so the online softmax's maximum,
    /// exponentials and sums run down the columns on whole vectors; P V accumulates in a scratch block whose rows are
    /// rescaled by the micro-kernel as it adds (its per-row beta is the softmax correction). Q_i^T is packed once per
    /// block; K and V rows are read in place (V through a zero-padded copy when dv is not a multiple of NQ).
    /// </summary>
    static void ForwardTiled<T>(int batch, int tq, int tk, int d, int dv, T[] q, int qOff, T[] k, int kOff, T[] v, int vOff,
        bool causal, T scale, T[] y, int yOff, T[] lse, int lseOff) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector512<T>.Count, nq = 4 * w;
        int qBlocks = (tq + nq - 1) / nq, dvp = (dv + nq - 1) / nq * nq, tasks = batch * qBlocks;
        long work = 2L * batch * tq * tk * (d + dv);
        // V copied once, 64-byte aligned with rows padded to dvp: the P V tiles then load whole aligned vectors
        // (unaligned rows of the caller's array would split every load across two cache lines).
        var vRent = Strided.Rent<T>(checked(batch * tk * dvp + w));
        fixed (T* pq = q, pk = k, pv = v, py = y, pl = lse, pvr = vRent)
        {
            T* vAll = (T*)(((nint)pvr + 63) & ~(nint)63);
            T* vSrc = pv + vOff, qAll = pq + qOff, kAll = pk + kOff, yAll = py + yOff, lAll = pl + lseOff;
            Strided.Parallel(batch * tk, (long)batch * tk * dvp, (s, e) =>
            {
                for (int r = s; r < e; r++)
                {
                    new ReadOnlySpan<T>(vSrc + (long)r * dv, dv).CopyTo(new Span<T>(vAll + (long)r * dvp, dv));
                    new Span<T>(vAll + (long)r * dvp + dv, dvp - dv).Clear();
                }
            });
            [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
            void Task(int t)
            {
                // Largest causal blocks first, so the last tasks handed out are the short ones.
                int b = t % batch, i0 = (qBlocks - 1 - t / batch) * nq, br = Math.Min(nq, tq - i0);
                int jEnd = causal ? Math.Min(tk, i0 + br) : tk;
                var buf = TileScratch<T>.Get(d * nq + TileKeys * nq + nq * dvp + 3 * nq + w);
                fixed (T* pb = buf)
                {
                    T* qt = (T*)(((nint)pb + 63) & ~(nint)63), st = qt + d * nq, o = st + TileKeys * nq;
                    T* mm = o + nq * dvp, ll = mm + nq, corr = ll + nq;
                    T* qh = qAll + ((long)b * tq + i0) * d, kh = kAll + (long)b * tk * d, vh = vAll + (long)b * tk * dvp;
                    for (int c = 0; c < nq; c++)
                        if (c < br) for (int p = 0; p < d; p++) qt[p * nq + c] = qh[(long)c * d + p];
                        else for (int p = 0; p < d; p++) qt[p * nq + c] = T.Zero;
                    new Span<T>(o, nq * dvp).Clear();
                    new Span<T>(mm, nq).Fill(T.NegativeInfinity);
                    new Span<T>(ll, nq).Clear();
                    for (int j0 = 0; j0 < jEnd; j0 += TileKeys)
                    {
                        int bk = Math.Min(TileKeys, jEnd - j0);
                        for (int r0 = 0; r0 < bk; r0 += TileRows)
                            Tile(d, kh + (long)(j0 + r0) * d, d, 1, Math.Min(TileRows, bk - r0), qt, nq, st + r0 * nq, nq, scale, null);
                        // Key j0 + r sees queries i0 + c with c >= j0 + r - i0: mask the lanes below.
                        if (causal && j0 + bk - 1 > i0)
                            for (int r = Math.Max(0, i0 + 1 - j0); r < bk; r++) MaskBelow(st + r * nq, nq, j0 + r - i0);
                        Softmax(st, bk, nq, mm, ll, corr);
                        // O = diag(corr) O + P V_j, P^T = st: query c's probabilities run down column c.
                        for (int j = 0; j < dvp; j += nq)
                            for (int c0 = 0; c0 < br; c0 += TileRows)
                                Tile(bk, st + c0, 1, nq, TileRows, vh + (long)j0 * dvp + j, dvp, o + c0 * dvp + j, dvp, T.One, corr + c0);
                    }
                    T* yh = yAll + ((long)b * tq + i0) * dv;
                    for (int c = 0; c < br; c++)
                    {
                        T l = ll[c], inv = l == T.Zero ? T.Zero : T.One / l;
                        lAll[(long)b * tq + i0 + c] = l == T.Zero ? T.NegativeInfinity : mm[c] + T.Log(l);
                        TP.Multiply(new ReadOnlySpan<T>(o + c * dvp, dv), inv, new Span<T>(yh + (long)c * dv, dv));
                    }
                }
            }
            if (work < Strided.ParallelThreshold || tasks == 1)
                for (int t = 0; t < tasks; t++) Task(t);
            else
                WorkerTeam.For(tasks, Task);
        }
        Strided.Return(vRent);
    }

    /// <summary>
    /// C[rows x 4 vectors] = alpha sum_p A[., p] (x) B[p, .] + diag(beta) C, on <see cref="TileRows"/> rows: A's element (r, p)
    /// at a[r ars + p acs] (strided, so neither operand is packed), B's row p at b + p ldb; beta null: C is only written,
    /// or added to when <paramref name="add"/>. Rows past <paramref name="rows"/> repeat the last real row and are not stored.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Tile<T>(int kc, T* a, nint ars, nint acs, int rows, T* b, nint ldb, T* c, nint ldc, T alpha, T* beta, bool add = false) where T : unmanaged, INumber<T>
    {
        int w = Vector512<T>.Count;
        T* a0 = a, a1 = a + (rows > 1 ? ars : 0), a2 = a + (rows > 2 ? 2 * ars : 0), a3 = a + (rows > 3 ? 3 * ars : 0);
        Vector512<T> c00 = default, c01 = default, c02 = default, c03 = default, c10 = default, c11 = default, c12 = default, c13 = default,
            c20 = default, c21 = default, c22 = default, c23 = default, c30 = default, c31 = default, c32 = default, c33 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b); var b1 = Vector512.Load(b + w); var b2 = Vector512.Load(b + 2 * w); var b3 = Vector512.Load(b + 3 * w);
            var x = Vector512.Create(*a0); c00 = GemmMicro.Fma(x, b0, c00); c01 = GemmMicro.Fma(x, b1, c01); c02 = GemmMicro.Fma(x, b2, c02); c03 = GemmMicro.Fma(x, b3, c03);
            x = Vector512.Create(*a1); c10 = GemmMicro.Fma(x, b0, c10); c11 = GemmMicro.Fma(x, b1, c11); c12 = GemmMicro.Fma(x, b2, c12); c13 = GemmMicro.Fma(x, b3, c13);
            x = Vector512.Create(*a2); c20 = GemmMicro.Fma(x, b0, c20); c21 = GemmMicro.Fma(x, b1, c21); c22 = GemmMicro.Fma(x, b2, c22); c23 = GemmMicro.Fma(x, b3, c23);
            x = Vector512.Create(*a3); c30 = GemmMicro.Fma(x, b0, c30); c31 = GemmMicro.Fma(x, b1, c31); c32 = GemmMicro.Fma(x, b2, c32); c33 = GemmMicro.Fma(x, b3, c33);
            a0 += acs; a1 += acs; a2 += acs; a3 += acs; b += ldb;
        }
        var va = Vector512.Create(alpha);
        Put(c, w, c00, c01, c02, c03, va, beta, add);
        if (rows > 1) Put(c + ldc, w, c10, c11, c12, c13, va, beta == null ? null : beta + 1, add);
        if (rows > 2) Put(c + 2 * ldc, w, c20, c21, c22, c23, va, beta == null ? null : beta + 2, add);
        if (rows > 3) Put(c + 3 * ldc, w, c30, c31, c32, c33, va, beta == null ? null : beta + 3, add);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Put<T>(T* c, int w, Vector512<T> x0, Vector512<T> x1, Vector512<T> x2, Vector512<T> x3, Vector512<T> va, T* beta, bool add) where T : unmanaged, INumber<T>
    {
        if (add)
        {
            Vector512.Store(GemmMicro.Fma(x0, va, Vector512.Load(c)), c); Vector512.Store(GemmMicro.Fma(x1, va, Vector512.Load(c + w)), c + w);
            Vector512.Store(GemmMicro.Fma(x2, va, Vector512.Load(c + 2 * w)), c + 2 * w); Vector512.Store(GemmMicro.Fma(x3, va, Vector512.Load(c + 3 * w)), c + 3 * w);
            return;
        }
        if (beta == null)
        {
            Vector512.Store(x0 * va, c); Vector512.Store(x1 * va, c + w); Vector512.Store(x2 * va, c + 2 * w); Vector512.Store(x3 * va, c + 3 * w);
            return;
        }
        var vb = Vector512.Create(*beta);
        Vector512.Store(GemmMicro.Fma(x0, va, Vector512.Load(c) * vb), c); Vector512.Store(GemmMicro.Fma(x1, va, Vector512.Load(c + w) * vb), c + w);
        Vector512.Store(GemmMicro.Fma(x2, va, Vector512.Load(c + 2 * w) * vb), c + 2 * w); Vector512.Store(GemmMicro.Fma(x3, va, Vector512.Load(c + 3 * w) * vb), c + 3 * w);
    }

    // Per-thread pinned scratch of the tiled kernels.
    static class TileScratch<T> where T : unmanaged
    {
        [ThreadStatic] static T[]? _buf;
        public static T[] Get(int length) => _buf is { } x && x.Length >= length ? x : _buf = GC.AllocateUninitializedArray<T>(length, pinned: true);
    }

    // e^x on a vector, exactly 0 at -inf and below float32's normal range.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<T> Exp<T>(Vector512<T> x) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
            return FloatLanes.Exp(new Lanes512F(Vector512.Max(x.AsSingle(), Vector512.Create(-88f)))).Value.As<float, T>();
        return Vector512.Exp(x.AsDouble()).As<double, T>();
    }

    // Lanes c < cut of one NQ-wide row of S^T to -inf.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void MaskBelow<T>(T* row, int nq, int cut) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector512<T>.Count;
        var lane = Vector512<T>.Indices;
        for (int c = 0; c < nq && c < cut; c += w)
        {
            var keep = Vector512.GreaterThanOrEqual(lane + Vector512.Create(T.CreateTruncating(c)), Vector512.Create(T.CreateTruncating(cut)));
            Vector512.Store(Vector512.ConditionalSelect(keep, Vector512.Load(row + c), Vector512.Create(T.NegativeInfinity)), row + c);
        }
    }

    // One key block of the online softmax, down the columns of S^T [bk, 4 vectors]: new running maxima m, P = e^(S - m)
    // in place, l = l corr + column sums, corr = e^(m_old - m) (0 where m_old is -inf; a column with no live key yet
    // keeps m = -inf and gets P = 0).
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Softmax<T>(T* st, int bk, int nq, T* m, T* l, T* corr) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector512<T>.Count;
        var x0 = Vector512.Load(m); var x1 = Vector512.Load(m + w); var x2 = Vector512.Load(m + 2 * w); var x3 = Vector512.Load(m + 3 * w);
        var o0 = x0; var o1 = x1; var o2 = x2; var o3 = x3;
        for (int r = 0; r < bk; r++)
        {
            T* s = st + r * nq;
            x0 = Vector512.Max(x0, Vector512.Load(s)); x1 = Vector512.Max(x1, Vector512.Load(s + w));
            x2 = Vector512.Max(x2, Vector512.Load(s + 2 * w)); x3 = Vector512.Max(x3, Vector512.Load(s + 3 * w));
        }
        // Columns whose maximum is still -inf subtract 0 instead (-inf - -inf would be NaN).
        Vector512.Store(x0, m); Vector512.Store(x1, m + w); Vector512.Store(x2, m + 2 * w); Vector512.Store(x3, m + 3 * w);
        var ninf = Vector512.Create(T.NegativeInfinity);
        x0 = Vector512.ConditionalSelect(Vector512.Equals(x0, ninf), Vector512<T>.Zero, x0);
        x1 = Vector512.ConditionalSelect(Vector512.Equals(x1, ninf), Vector512<T>.Zero, x1);
        x2 = Vector512.ConditionalSelect(Vector512.Equals(x2, ninf), Vector512<T>.Zero, x2);
        x3 = Vector512.ConditionalSelect(Vector512.Equals(x3, ninf), Vector512<T>.Zero, x3);
        var c0 = Exp(o0 - x0); var c1 = Exp(o1 - x1); var c2 = Exp(o2 - x2); var c3 = Exp(o3 - x3);
        Vector512.Store(c0, corr); Vector512.Store(c1, corr + w); Vector512.Store(c2, corr + 2 * w); Vector512.Store(c3, corr + 3 * w);
        Vector512<T> s0 = default, s1 = default, s2 = default, s3 = default;
        for (int r = 0; r < bk; r++)
        {
            T* s = st + r * nq;
            var p0 = Exp(Vector512.Load(s) - x0); var p1 = Exp(Vector512.Load(s + w) - x1);
            var p2 = Exp(Vector512.Load(s + 2 * w) - x2); var p3 = Exp(Vector512.Load(s + 3 * w) - x3);
            Vector512.Store(p0, s); Vector512.Store(p1, s + w); Vector512.Store(p2, s + 2 * w); Vector512.Store(p3, s + 3 * w);
            s0 += p0; s1 += p1; s2 += p2; s3 += p3;
        }
        Vector512.Store(Vector512.Load(l) * c0 + s0, l); Vector512.Store(Vector512.Load(l + w) * c1 + s1, l + w);
        Vector512.Store(Vector512.Load(l + 2 * w) * c2 + s2, l + 2 * w); Vector512.Store(Vector512.Load(l + 3 * w) * c3 + s3, l + 3 * w);
    }

    /// <summary>
    /// Gradients of <see cref="Forward{T}"/>: given y, its gradient gy and lse, writes gq [batch, tq, d], gk [batch, tk, d] and
    /// gv [batch, tk, dv] (contiguous from their offsets, overwritten). Probabilities are recomputed tile by tile from lse:
    /// P = exp(S - lse), dV += P^T dY, dS = P (dY V^T - rowsum(dY y)), dQ += scale dS K, dK += scale dS^T Q.
    /// Heads run in parallel; each head's tiles in a fixed order, so results do not depend on the thread count.
    /// </summary>
    public static void Backward<T>(int batch, int tq, int tk, int d, int dv, T[] q, int qOff, T[] k, int kOff, T[] v, int vOff,
        T[] y, int yOff, T[] gy, int gyOff, T[] lse, int lseOff, bool causal, T scale, T[] gq, int gqOff, T[] gk, int gkOff, T[] gv, int gvOff,
        GemmKernel kernel = GemmKernel.Auto) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (kernel == GemmKernel.Auto) kernel = Gemm.Best;
        if (kernel == GemmKernel.Vector512 && (typeof(T) == typeof(float) || typeof(T) == typeof(double)))
        {
            if (!Vector512.IsHardwareAccelerated) throw new NotSupportedException("attention: the Vector512 kernel is not hardware-accelerated on this machine");
            BackwardTiled(batch, tq, tk, d, dv, q, qOff, k, kOff, v, vOff, y, yOff, gy, gyOff, lse, lseOff, causal, scale, gq, gqOff, gk, gkOff, gv, gvOff);
            return;
        }
        long work = 4L * batch * tq * tk * (d + dv);
        Strided.Parallel(batch, work, (s, e) =>
        {
            var p = Strided.Rent<T>(Block * Block); var dp = Strided.Rent<T>(Block * Block);
            var rowDot = Strided.Rent<T>(tq);
            for (int b = s; b < e; b++)
            {
                int qh = qOff + b * tq * d, kh = kOff + b * tk * d, vh = vOff + b * tk * dv, yh = yOff + b * tq * dv, gyh = gyOff + b * tq * dv;
                int gqh = gqOff + b * tq * d, gkh = gkOff + b * tk * d, gvh = gvOff + b * tk * dv, lh = lseOff + b * tq;
                new Span<T>(gq, gqh, tq * d).Clear(); new Span<T>(gk, gkh, tk * d).Clear(); new Span<T>(gv, gvh, tk * dv).Clear();
                for (int i = 0; i < tq; i++) rowDot[i] = TP.Dot<T>(y.AsSpan(yh + i * dv, dv), gy.AsSpan(gyh + i * dv, dv));
                for (int j0 = 0; j0 < tk; j0 += Block)
                {
                    int bc = Math.Min(Block, tk - j0);
                    for (int i0 = causal ? j0 / Block * Block : 0; i0 < tq; i0 += Block)
                    {
                        int br = Math.Min(Block, tq - i0);
                        Gemm.Run(br, bc, d, scale, q, qh + i0 * d, d, 1, k, kh + j0 * d, 1, d, T.Zero, p, 0, bc, kernel, threads: 1);
                        for (int r = 0; r < br; r++)
                        {
                            var row = p.AsSpan(r * bc, bc);
                            int valid = causal ? Math.Clamp(i0 + r - j0 + 1, 0, bc) : bc;
                            TP.Subtract(row[..valid], lse[lh + i0 + r], row[..valid]);
                            Elementwise.Unary(UnaryOp.Exp, row[..valid], row[..valid]);
                            row[valid..].Clear();
                        }
                        // dV_j += P^T dY_i; dP = dY_i V_j^T.
                        Gemm.Run(bc, dv, br, T.One, p, 0, 1, bc, gy, gyh + i0 * dv, dv, 1, T.One, gv, gvh + j0 * dv, dv, kernel, threads: 1);
                        Gemm.Run(br, bc, dv, T.One, gy, gyh + i0 * dv, dv, 1, v, vh + j0 * dv, 1, dv, T.Zero, dp, 0, bc, kernel, threads: 1);
                        for (int r = 0; r < br; r++)
                        {
                            var pr = p.AsSpan(r * bc, bc); var dr = dp.AsSpan(r * bc, bc);
                            TP.Subtract(dr, rowDot[i0 + r], dr);
                            TP.Multiply(pr, dr, pr);
                        }
                        // dQ_i += scale dS K_j; dK_j += scale dS^T Q_i.
                        Gemm.Run(br, d, bc, scale, p, 0, bc, 1, k, kh + j0 * d, d, 1, T.One, gq, gqh + i0 * d, d, kernel, threads: 1);
                        Gemm.Run(bc, d, br, scale, p, 0, 1, bc, q, qh + i0 * d, d, 1, T.One, gk, gkh + j0 * d, d, kernel, threads: 1);
                    }
                }
            }
            Strided.Return(p); Strided.Return(dp); Strided.Return(rowDot);
        });
    }

    /// <summary>
    /// The backward on AVX-512 register tiles (FlashAttention-2's order: key blocks outer, dK_j and dV_j held in scratch),
    /// transposed as the forward: S^T = K_j Q_i^T and dP^T = V_j dY_i^T (keys down, queries across), P^T = e^(S^T - lse) and
    /// dS^T = P^T (dP^T - D) down the columns, then dV_j += P^T dY_i, dK_j += scale dS^T Q_i and dQ_i += scale dS K_j on the
    /// same micro-kernel. Per head, Q, dY, K (zero-padded to whole panels) and the query blocks of Q^T and dY^T are copied
    /// once into aligned scratch; dQ accumulates there and is copied out at the end.
    /// </summary>
    static void BackwardTiled<T>(int batch, int tq, int tk, int d, int dv, T[] q, int qOff, T[] k, int kOff, T[] v, int vOff,
        T[] y, int yOff, T[] gy, int gyOff, T[] lse, int lseOff, bool causal, T scale, T[] gq, int gqOff, T[] gk, int gkOff, T[] gv, int gvOff)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector512<T>.Count, nq = 4 * w;
        int qBlocks = (tq + nq - 1) / nq, tqp = qBlocks * nq, dp = (d + nq - 1) / nq * nq, dvp = (dv + nq - 1) / nq * nq;
        // Scratch of one head: padded Q, dY, K, dQ; Q^T and dY^T by query block; lse and D = rowsum(dY y) padded with 0;
        // S^T, dP^T, dK_j, dV_j of one key block.
        long size = (long)tqp * dp * 2 + (long)tqp * dvp + (long)tk * dp + (long)tqp * (d + dv) + 2L * tqp
            + 2L * TileKeys * nq + (long)TileKeys * (dp + dvp) + w;
        long work = 4L * batch * tq * tk * (d + dv);
        Strided.Parallel(batch, work, (s, e) =>
        {
            var rent = Strided.Rent<T>(checked((int)size));
            fixed (T* pr = rent, pq = q, pk = k, pv = v, py = y, pgy = gy, pl = lse, pgq = gq, pgk = gk, pgv = gv)
            {
                T* qp = (T*)(((nint)pr + 63) & ~(nint)63), gyp = qp + (long)tqp * dp, kp = gyp + (long)tqp * dvp, dq = kp + (long)tk * dp;
                T* qt = dq + (long)tqp * dp, gyt = qt + (long)tqp * d, lv = gyt + (long)tqp * dv, dd = lv + tqp;
                T* st = dd + tqp, dpt = st + TileKeys * nq, dk = dpt + TileKeys * nq, dvs = dk + TileKeys * dp;
                for (int b = s; b < e; b++)
                    Head(b, tq, tk, d, dv, pq + qOff + (long)b * tq * d, pk + kOff + (long)b * tk * d, pv + vOff + (long)b * tk * dv,
                        py + yOff + (long)b * tq * dv, pgy + gyOff + (long)b * tq * dv, pl + lseOff + (long)b * tq, causal, scale,
                        pgq + gqOff + (long)b * tq * d, pgk + gkOff + (long)b * tk * d, pgv + gvOff + (long)b * tk * dv,
                        qp, gyp, kp, dq, qt, gyt, lv, dd, st, dpt, dk, dvs);
            }
            Strided.Return(rent);
        });
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Head<T>(int b, int tq, int tk, int d, int dv, T* q, T* k, T* v, T* y, T* gy, T* lse, bool causal, T scale, T* gq, T* gk, T* gv,
        T* qp, T* gyp, T* kp, T* dq, T* qt, T* gyt, T* lv, T* dd, T* st, T* dpt, T* dk, T* dvs) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector512<T>.Count, nq = 4 * w;
        int qBlocks = (tq + nq - 1) / nq, tqp = qBlocks * nq, dp = (d + nq - 1) / nq * nq, dvp = (dv + nq - 1) / nq * nq;
        PadRows(q, tq, d, qp, tqp, dp); PadRows(gy, tq, dv, gyp, tqp, dvp); PadRows(k, tk, d, kp, tk, dp);
        new Span<T>(dq, tqp * dp).Clear();
        for (int i = 0; i < tqp; i++)
        {
            bool live = i < tq;
            // Padded queries: lse 0 and D 0 over zero rows of Q and dY, so their P is finite and their dS and dV terms are 0.
            lv[i] = live ? lse[i] : T.Zero;
            dd[i] = live ? TP.Dot(new ReadOnlySpan<T>(y + (long)i * dv, dv), new ReadOnlySpan<T>(gy + (long)i * dv, dv)) : T.Zero;
            T* qtb = qt + (long)(i / nq) * nq * d + i % nq, gytb = gyt + (long)(i / nq) * nq * dv + i % nq;
            for (int p = 0; p < d; p++) qtb[p * nq] = qp[(long)i * dp + p];
            for (int p = 0; p < dv; p++) gytb[p * nq] = gyp[(long)i * dvp + p];
        }
        for (int j0 = 0; j0 < tk; j0 += TileKeys)
        {
            int bk = Math.Min(TileKeys, tk - j0);
            new Span<T>(dk, TileKeys * dp).Clear(); new Span<T>(dvs, TileKeys * dvp).Clear();
            for (int i0 = causal ? j0 / nq * nq : 0; i0 < tq; i0 += nq)
            {
                int br = Math.Min(nq, tq - i0);
                T* qtb = qt + (long)i0 * d, gytb = gyt + (long)i0 * dv;
                for (int r0 = 0; r0 < bk; r0 += TileRows)
                {
                    int rows = Math.Min(TileRows, bk - r0);
                    Tile(d, k + (long)(j0 + r0) * d, d, 1, rows, qtb, nq, st + r0 * nq, nq, scale, null);
                    Tile(dv, v + (long)(j0 + r0) * dv, dv, 1, rows, gytb, nq, dpt + r0 * nq, nq, T.One, null);
                }
                if (causal && j0 + bk - 1 > i0)
                    for (int r = Math.Max(0, i0 + 1 - j0); r < bk; r++) MaskBelow(st + r * nq, nq, j0 + r - i0);
                ProbabilitiesAndScoreGradients(st, dpt, bk, nq, lv + i0, dd + i0);
                for (int r0 = 0; r0 < bk; r0 += TileRows)
                {
                    int rows = Math.Min(TileRows, bk - r0);
                    for (int j = 0; j < dvp; j += nq)
                        Tile(br, st + r0 * nq, nq, 1, rows, gyp + (long)i0 * dvp + j, dvp, dvs + r0 * dvp + j, dvp, T.One, null, add: true);
                    for (int j = 0; j < dp; j += nq)
                        Tile(br, dpt + r0 * nq, nq, 1, rows, qp + (long)i0 * dp + j, dp, dk + r0 * dp + j, dp, scale, null, add: true);
                }
                for (int j = 0; j < dp; j += nq)
                    for (int c0 = 0; c0 < br; c0 += TileRows)
                        Tile(bk, dpt + c0, 1, nq, TileRows, kp + (long)j0 * dp + j, dp, dq + (long)(i0 + c0) * dp + j, dp, scale, null, add: true);
            }
            for (int r = 0; r < bk; r++)
            {
                new ReadOnlySpan<T>(dk + r * dp, d).CopyTo(new Span<T>(gk + (long)(j0 + r) * d, d));
                new ReadOnlySpan<T>(dvs + r * dvp, dv).CopyTo(new Span<T>(gv + (long)(j0 + r) * dv, dv));
            }
        }
        for (int i = 0; i < tq; i++) new ReadOnlySpan<T>(dq + (long)i * dp, d).CopyTo(new Span<T>(gq + (long)i * d, d));
    }

    // rows x cols of src into dst [dstRows, ld], zero beyond.
    static void PadRows<T>(T* src, int rows, int cols, T* dst, int dstRows, int ld) where T : unmanaged
    {
        for (int r = 0; r < dstRows; r++)
        {
            var row = new Span<T>(dst + (long)r * ld, ld);
            if (r < rows) { new ReadOnlySpan<T>(src + (long)r * cols, cols).CopyTo(row); row[cols..].Clear(); }
            else row.Clear();
        }
    }

    // Down the columns of one key block: P^T = e^(S^T - lse) in st (masked scores give 0), dS^T = P^T (dP^T - D) in dpt.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void ProbabilitiesAndScoreGradients<T>(T* st, T* dpt, int bk, int nq, T* lse, T* dd) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector512<T>.Count;
        var l0 = Vector512.Load(lse); var l1 = Vector512.Load(lse + w); var l2 = Vector512.Load(lse + 2 * w); var l3 = Vector512.Load(lse + 3 * w);
        var d0 = Vector512.Load(dd); var d1 = Vector512.Load(dd + w); var d2 = Vector512.Load(dd + 2 * w); var d3 = Vector512.Load(dd + 3 * w);
        for (int r = 0; r < bk; r++)
        {
            T* s = st + r * nq, g = dpt + r * nq;
            var p0 = Exp(Vector512.Load(s) - l0); var p1 = Exp(Vector512.Load(s + w) - l1);
            var p2 = Exp(Vector512.Load(s + 2 * w) - l2); var p3 = Exp(Vector512.Load(s + 3 * w) - l3);
            Vector512.Store(p0, s); Vector512.Store(p1, s + w); Vector512.Store(p2, s + 2 * w); Vector512.Store(p3, s + 3 * w);
            Vector512.Store(p0 * (Vector512.Load(g) - d0), g); Vector512.Store(p1 * (Vector512.Load(g + w) - d1), g + w);
            Vector512.Store(p2 * (Vector512.Load(g + 2 * w) - d2), g + 2 * w); Vector512.Store(p3 * (Vector512.Load(g + 3 * w) - d3), g + 3 * w);
        }
    }
}
