using System.Numerics;
using System.Runtime.CompilerServices;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// N-d convolution (NCDHW, groups, stride, padding, dilation) as implicit GEMM on <see cref="Gemm"/>'s packed BLIS
/// kernels: per group, y[n] [O/G, OutVol] = w [O/G, C/G * KVol] x patches(x[n]) [C/G * KVol, OutVol], where the patch
/// matrix is never formed: <see cref="PatchPanels{T}"/> packs its KC x NC slices straight from x into the GEMM's B
/// panels. The input gradient (a transposed convolution) is the same GEMM over patches of gy read backwards
/// (source position (q + pad - k dilation) / stride where that divides), and the weight gradient is a GEMM over chunks
/// of the patch matrix. Reference: <see cref="Reference.ConvForward"/>, <see cref="Reference.ConvBackwardData"/>,
/// <see cref="Reference.ConvBackwardWeight"/>.
/// </summary>
public static unsafe class Conv
{
    // Weight-gradient chunks hold at most this many patch-matrix elements (an L2/L3-sized buffer, reused per thread).
    const int ChunkElements = 1 << 20;

    /// <summary>y [N, O, OutVol] = conv(x [N, C, InVol], w [O, C/G, KVol]) + bias [O] (bias may be null); all contiguous from their offsets.</summary>
    public static void Forward<T>(ConvGeometry g, T[] x, int xOff, T[] w, int wOff, T[]? bias, int biasOff, T[] y, int yOff) where T : unmanaged, INumber<T>
    {
        int m = g.Og, k = g.Cg * g.KVol, n = g.OutVol;
        fixed (T* xp = x)
            for (int grp = 0; grp < g.G; grp++)
            {
                var patches = PatchPanels<T>.Forward(g, xp + xOff + (long)grp * g.Cg * g.InVol);
                Gemm.RunPacked(g.N, m, n, k, T.One, w, wOff + grp * m * k, 0, k, 1, patches, T.Zero, y, yOff + grp * m * n, g.O * n, n);
            }
        if (bias is null || n == 0) return;
        for (int b = 0; b < g.N; b++)
            for (int o = 0; o < g.O; o++)
            {
                var row = y.AsSpan(yOff + (b * g.O + o) * n, n);
                TP.Add(row, bias[biasOff + o], row);
            }
    }

    /// <summary>
    /// gx [N, C, InVol] = the input gradient of <see cref="Forward{T}"/> for gy [N, O, OutVol] (equivalently the transposed
    /// convolution of gy with w); all contiguous from their offsets.
    /// </summary>
    public static void BackwardData<T>(ConvGeometry g, T[] gy, int gyOff, T[] w, int wOff, T[] gx, int gxOff) where T : unmanaged, INumber<T>
    {
        int m = g.Cg, k = g.Og * g.KVol, n = g.InVol;
        // A[grp][c, (o, tap)] = w[grp Og + o, c, tap]: the weight with its two channel axes swapped, per group.
        var wt = GC.AllocateUninitializedArray<T>(g.G * m * k);
        for (int grp = 0; grp < g.G; grp++)
            for (int o = 0; o < g.Og; o++)
                for (int c = 0; c < m; c++)
                    w.AsSpan(wOff + ((grp * g.Og + o) * m + c) * g.KVol, g.KVol).CopyTo(wt.AsSpan(grp * m * k + c * k + o * g.KVol));
        fixed (T* gyp = gy)
            for (int grp = 0; grp < g.G; grp++)
            {
                var patches = PatchPanels<T>.Transposed(g, gyp + gyOff + (long)grp * g.Og * g.OutVol);
                Gemm.RunPacked(g.N, m, n, k, T.One, wt, grp * m * k, 0, k, 1, patches, T.Zero, gx, gxOff + grp * m * n, g.C * n, n);
            }
    }

    /// <summary>
    /// gw [O, C/G, KVol] = the weight gradient of <see cref="Forward{T}"/> for x [N, C, InVol] and gy [N, O, OutVol]:
    /// per group, gw = sum over chunks of (image, position) columns of gy_chunk [O/G, L] x patches_chunk^T [L, C/G KVol],
    /// in a fixed order (results do not depend on the thread count).
    /// </summary>
    public static void BackwardWeight<T>(ConvGeometry g, T[] x, int xOff, T[] gy, int gyOff, T[] gw, int gwOff) where T : unmanaged, INumber<T>
    {
        int m = g.Og, k = g.Cg * g.KVol, p = g.OutVol;
        if (m * k == 0) return;
        if ((long)g.N * p == 0) { gw.AsSpan(gwOff, g.O * k).Clear(); return; }
        // Columns per chunk: whole images while they fit, else parts of one image.
        int len = Math.Max(1, Math.Min(ChunkElements / Math.Max(k, 1), g.N * p));
        int imgs = Math.Max(1, len / p);
        if (p > len) imgs = 1; else len = imgs * p;
        var col = GC.AllocateUninitializedArray<T>(k * len, pinned: true);
        var gyc = GC.AllocateUninitializedArray<T>(m * len);
        fixed (T* xp = x, colp = col)
            for (int grp = 0; grp < g.G; grp++)
            {
                var patches = PatchPanels<T>.Forward(g, xp + xOff + (long)grp * g.Cg * g.InVol);
                bool first = true;
                for (int n0 = 0; n0 < g.N; n0 += imgs)
                    for (int p0 = 0; p0 < p; p0 += len)
                    {
                        int ni = Math.Min(imgs, g.N - n0), cols = p > len ? Math.Min(len, p - p0) : ni * p, w = Math.Min(p - p0, cols);
                        for (int i = 0; i < ni; i++)
                        {
                            patches.Rows(n0 + i, 0, p0, w, w, cols, colp + i * w, 0, k);
                            for (int o = 0; o < m; o++)
                                gy.AsSpan(gyOff + ((n0 + i) * g.O + grp * m + o) * p + p0, w).CopyTo(gyc.AsSpan(o * cols + i * w));
                        }
                        // B = patches^T: element (column, row) of the chunk at col[row * cols + column].
                        Gemm.Run(m, k, cols, T.One, gyc, 0, cols, 1, col, 0, 1, cols, first ? T.Zero : T.One, gw, gwOff + grp * m * k, k);
                        first = false;
                    }
            }
    }
}

/// <summary>
/// The implicit patch matrix of a convolution as GEMM B panels: row r = (channel c, tap kd, kh, kw), column q = a
/// target position (qd, qh, qw); element = src[c, s(qd), s(qh), s(qw)] with s(q) = (q mul + base + tap step) / div
/// along each axis, or 0 when that is outside the source or (div > 1) not a whole number. The forward convolution reads
/// x with (mul, base, step, div) = (stride, -pad, dilation, 1); its input gradient reads gy with (1, pad, -dilation, stride).
/// Runs of positions along the last axis with mul = div = 1 are copied as whole spans.
/// </summary>
public readonly unsafe struct PatchPanels<T> : IPanelSource<T> where T : unmanaged, INumber<T>
{
    readonly T* _src;
    readonly long _batch, _chan;
    readonly int _sd, _sh, _sw, _td, _th, _tw, _kd, _kh, _kw;
    readonly int _mulD, _mulH, _mulW, _baseD, _baseH, _baseW, _stepD, _stepH, _stepW, _divD, _divH, _divW;

    PatchPanels(T* src, long batch, (int D, int H, int W) source, (int D, int H, int W) target, (int D, int H, int W) kernel,
        (int D, int H, int W) mul, (int D, int H, int W) @base, (int D, int H, int W) step, (int D, int H, int W) div)
    {
        _src = src; _batch = batch; _chan = (long)source.D * source.H * source.W;
        (_sd, _sh, _sw) = source; (_td, _th, _tw) = target; (_kd, _kh, _kw) = kernel;
        (_mulD, _mulH, _mulW) = mul; (_baseD, _baseH, _baseW) = @base; (_stepD, _stepH, _stepW) = step; (_divD, _divH, _divW) = div;
    }

    /// <summary>The forward patches of x (src: x's first channel of a group in image 0; product t is image t).</summary>
    public static PatchPanels<T> Forward(ConvGeometry g, T* x) => new(x, (long)g.C * g.InVol, (g.ID, g.IH, g.IW), (g.OD, g.OH, g.OW),
        (g.KD, g.KH, g.KW), (g.SD, g.SH, g.SW), (-g.PD, -g.PH, -g.PW), (g.DD, g.DH, g.DW), (1, 1, 1));

    /// <summary>The input-gradient patches of gy (src: gy's first channel of a group in image 0; product t is image t).</summary>
    public static PatchPanels<T> Transposed(ConvGeometry g, T* gy) => new(gy, (long)g.O * g.OutVol, (g.OD, g.OH, g.OW), (g.ID, g.IH, g.IW),
        (g.KD, g.KH, g.KW), (1, 1, 1), (g.PD, g.PH, g.PW), (-g.DD, -g.DH, -g.DW), (g.SD, g.SH, g.SW));

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Pack(int t, int p0, int kc, int jc, int nc, int nr, int halfNr, T* dst, int r0, int r1)
    {
        for (int q = 0, j0 = 0; j0 < nc; q++, j0 += nr)
        {
            int w = Math.Min(nr, nc - j0);
            T* d = dst + (long)q * nr * kc;
            if (w == nr || halfNr == 0) Rows(t, p0, jc + j0, w, nr, nr, d + (long)r0 * nr, r0, r1);
            else
            {
                Rows(t, p0, jc + j0, Math.Min(w, halfNr), halfNr, halfNr, d + (long)r0 * halfNr, r0, r1);
                if (w > halfNr) Rows(t, p0, jc + j0 + halfNr, w - halfNr, halfNr, halfNr, d + (long)halfNr * kc + (long)r0 * halfNr, r0, r1);
            }
        }
    }

    /// <summary>
    /// Rows p0 + [r0, r1) of image t's patch matrix, columns [col0, col0 + w), into d (row r0 first, rows
    /// <paramref name="stride"/> apart), each row zero-padded to <paramref name="padTo"/> values.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Rows(int t, int p0, int col0, int w, int padTo, int stride, T* d, int r0, int r1)
    {
        T* src = _src + t * _batch;
        int kvol = _kd * _kh * _kw;
        int tw0 = col0 % _tw, th0 = col0 / _tw % _th, td0 = col0 / (_tw * _th);
        for (int r = r0; r < r1; r++, d += stride)
        {
            int row = p0 + r, c = row / kvol, tap = row - c * kvol;
            int kw = tap % _kw, kh = tap / _kw % _kh, kd = tap / (_kw * _kh);
            T* sc = src + c * _chan;
            int offD = _baseD + kd * _stepD, offH = _baseH + kh * _stepH, offW = _baseW + kw * _stepW;
            int jj = 0, tw = tw0, th = th0, td = td0;
            while (jj < w)
            {
                int len = Math.Min(w - jj, _tw - tw);
                int sd = Map(td, _mulD, offD, _divD, _sd), sh = Map(th, _mulH, offH, _divH, _sh);
                if (sd < 0 || sh < 0) new Span<T>(d + jj, len).Clear();
                else RowRun(sc + ((long)sd * _sh + sh) * _sw, tw, len, offW, d + jj);
                jj += len; tw = 0;
                if (++th == _th) { th = 0; td++; }
            }
            if (padTo > w) new Span<T>(d + w, padTo - w).Clear();
        }
    }

    // Source index of target position q along one axis, or -1 when it falls outside or between source positions.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int Map(int q, int mul, int off, int div, int extent)
    {
        int v = q * mul + off;
        if (div != 1)
        {
            if (v < 0 || v % div != 0) return -1;
            v /= div;
        }
        return (uint)v < (uint)extent ? v : -1;
    }

    // len consecutive target positions of one source row, from tw.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    void RowRun(T* row, int tw, int len, int offW, T* d)
    {
        if (_mulW == 1 && _divW == 1)
        {
            int v0 = tw + offW;
            int lo = Math.Clamp(-v0, 0, len), hi = Math.Clamp(_sw - v0, lo, len);
            if (lo > 0) new Span<T>(d, lo).Clear();
            new ReadOnlySpan<T>(row + v0 + lo, hi - lo).CopyTo(new Span<T>(d + lo, hi - lo));
            if (hi < len) new Span<T>(d + hi, len - hi).Clear();
            return;
        }
        for (int i = 0; i < len; i++)
        {
            int v = Map(tw + i, _mulW, offW, _divW, _sw);
            d[i] = v < 0 ? T.Zero : row[v];
        }
    }
}
