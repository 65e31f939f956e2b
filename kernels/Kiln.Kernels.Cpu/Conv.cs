using System.Numerics;
using System.Runtime.CompilerServices;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// N-d convolution (NCDHW, groups, stride, padding, dilation) as implicit GEMM on <see cref="Gemm"/>'s packed BLIS
/// kernels: per group, y[n] [O/G, OutVol] = w [O/G, C/G * KVol] x patches(x[n]) [C/G * KVol, OutVol], where the patch
/// matrix is never formed: <see cref="PatchPanels{T}"/> packs its KC x NC slices straight from x into the GEMM's B
/// panels (small images fold the batch into the GEMM's columns). The stride-1 input gradient (a transposed
/// convolution) is the same GEMM over patches of gy read backwards (source position (q + pad - k dilation) / stride);
/// with a stride it is a GEMM into bounded chunks of the patch matrix, scattered back (col2im). The weight gradient is a
/// GEMM over chunks of the patch matrix. One output channel per group (depthwise) skips the GEMM for vectorized
/// multiply-adds of patch rows. Results do not depend on the thread count. Reference: <see cref="Reference.ConvForward"/>,
/// <see cref="Reference.ConvBackwardData"/>, <see cref="Reference.ConvBackwardWeight"/>.
/// </summary>
public static unsafe class Conv
{
    // Chunks of the patch matrix (weight gradient, strided input gradient) hold at most this many elements (4-8 MB).
    const int ChunkElements = 1 << 20;

    // Outputs per image below which a batch runs as one GEMM over all images' positions (then one copy into NCHW
    // order): small images would otherwise be many tiny products that each repack the weight.
    const int FoldBelow = 1024;

    /// <summary>y [N, O, OutVol] = conv(x [N, C, InVol], w [O, C/G, KVol]) + bias [O] (bias may be null); all contiguous from their offsets.</summary>
    public static void Forward<T>(ConvGeometry g, T[] x, int xOff, T[] w, int wOff, T[]? bias, int biasOff, T[] y, int yOff) where T : unmanaged, INumber<T>
    {
        int m = g.Og, k = g.Cg * g.KVol, n = g.OutVol;
        fixed (T* xp = x)
        {
            T* xb = xp + xOff;
            Products(g.N, g.G, m, n, k, w, wOff, k, 1, grp => PatchPanels<T>.Forward(g, xb + (long)grp * g.Cg * g.InVol), y, yOff, bias, biasOff);
        }
    }

    // Per group: out[b, grp m + i, j] = sum_r A[grp][i, r] B_b[r, j] (+ bias), by image or with the batch folded into N.
    static void Products<T>(int batch, int groups, int m, int n, int k, T[] a, int aOff, int aRs, int aCs, Func<int, PatchPanels<T>> patches,
        T[] c, int cOff, T[]? bias, int biasOff) where T : unmanaged, INumber<T>
    {
        int channels = groups * m;
        if (m == 1)
        {
            Direct(batch, groups, n, k, a, aOff, aRs, aCs, patches, c, cOff, bias, biasOff);
            return;
        }
        if (n >= FoldBelow || batch == 1)
        {
            for (int grp = 0; grp < groups; grp++)
                Gemm.RunPacked(batch, m, n, k, T.One, a, aOff + grp * m * aRs, 0, aRs, aCs, patches(grp), T.Zero, c, cOff + grp * m * n, channels * n, n);
            if (bias is not null)
                for (int b = 0; b < batch; b++)
                    for (int o = 0; o < channels; o++)
                    {
                        var row = c.AsSpan(cOff + (b * channels + o) * n, n);
                        TP.Add(row, bias[biasOff + o], row);
                    }
            return;
        }
        int cols = batch * n;
        var tmp = GC.AllocateUninitializedArray<T>(channels * cols);
        for (int grp = 0; grp < groups; grp++)
            Gemm.RunPacked(1, m, cols, k, T.One, a, aOff + grp * m * aRs, 0, aRs, aCs, patches(grp), T.Zero, tmp, grp * m * cols, 0, cols);
        for (int b = 0; b < batch; b++)
            for (int o = 0; o < channels; o++)
            {
                var src = tmp.AsSpan(o * cols + b * n, n);
                var row = c.AsSpan(cOff + (b * channels + o) * n, n);
                if (bias is null) src.CopyTo(row);
                else TP.Add(src, bias[biasOff + o], row);
            }
    }

    // One output row per group (depthwise): a GEMM would fill one row of each 6-row register tile, so each (image,
    // group) row is instead accumulated from the patch rows, one vectorized multiply-add per row.
    static void Direct<T>(int batch, int groups, int n, int k, T[] a, int aOff, int aRs, int aCs, Func<int, PatchPanels<T>> patches,
        T[] c, int cOff, T[]? bias, int biasOff) where T : unmanaged, INumber<T>
    {
        var sources = Enumerable.Range(0, groups).Select(patches).ToArray();
        ForRanges(batch * groups, (long)n * k, (s, e) =>
        {
            var row = GC.AllocateUninitializedArray<T>(n, pinned: true);
            fixed (T* rp = row)
                for (int item = s; item < e; item++)
                {
                    int b = item / groups, grp = item % groups;
                    var y = c.AsSpan(cOff + item * n, n);
                    if (bias is null) y.Clear(); else y.Fill(bias[biasOff + grp]);
                    for (int r = 0; r < k; r++)
                    {
                        sources[grp].Rows(b, r, 0, n, n, n, rp, 0, 1);
                        TP.MultiplyAdd(row, a[aOff + grp * aRs + r * aCs], y, y);
                    }
                }
        });
    }

    // Runs body over [0, count) in one contiguous part per core when the work (per item) is worth it.
    static void ForRanges(int count, long workPerItem, Action<int, int> body)
    {
        int parts = (int)Math.Min(count, Math.Max(1, Math.Min(WorkerTeam.Threads, count * workPerItem / (Gemm.ParallelFlops / 2))));
        if (parts <= 1) { body(0, count); return; }
        WorkerTeam.For(parts, t =>
        {
            int s = (int)((long)count * t / parts), e = (int)((long)count * (t + 1) / parts);
            if (e > s) body(s, e);
        });
    }

    /// <summary>
    /// gx [N, C, InVol] = the input gradient of <see cref="Forward{T}"/> for gy [N, O, OutVol] (equivalently the transposed
    /// convolution of gy with w); all contiguous from their offsets.
    /// </summary>
    public static void BackwardData<T>(ConvGeometry g, T[] gy, int gyOff, T[] w, int wOff, T[] gx, int gxOff) where T : unmanaged, INumber<T>
    {
        if (g.SD > 1 || g.SH > 1 || g.SW > 1) { BackwardDataStrided(g, gy, gyOff, w, wOff, gx, gxOff); return; }
        int m = g.Cg, k = g.Og * g.KVol, n = g.InVol;
        // A[grp][c, (o, tap)] = w[grp Og + o, c, tap]: the weight with its two channel axes swapped, per group.
        var wt = GC.AllocateUninitializedArray<T>(g.G * m * k);
        for (int grp = 0; grp < g.G; grp++)
            for (int o = 0; o < g.Og; o++)
                for (int c = 0; c < m; c++)
                    w.AsSpan(wOff + ((grp * g.Og + o) * m + c) * g.KVol, g.KVol).CopyTo(wt.AsSpan(grp * m * k + c * k + o * g.KVol));
        fixed (T* gyp = gy)
        {
            T* gyb = gyp + gyOff;
            Products(g.N, g.G, m, n, k, wt, 0, k, 1, grp => PatchPanels<T>.Transposed(g, gyb + (long)grp * g.Og * g.OutVol), gx, gxOff, null, 0);
        }
    }

    // With a stride, most patch elements of gy read backwards are zeros (all but one in stride^dims), so the gradient
    // is instead a GEMM per image into the patch matrix, col [C/G KVol, OutVol] = w_grp^T gy[n, grp], scattered back
    // (col2im) onto gx, in chunks of images that bound the patch buffer.
    static void BackwardDataStrided<T>(ConvGeometry g, T[] gy, int gyOff, T[] w, int wOff, T[] gx, int gxOff) where T : unmanaged, INumber<T>
    {
        int k = g.Cg * g.KVol, p = g.OutVol;
        gx.AsSpan(gxOff, g.N * g.C * g.InVol).Clear();
        if ((long)k * p == 0) return;
        int imgs = Math.Clamp(ChunkElements / (k * p), 1, g.N);
        var col = GC.AllocateUninitializedArray<T>(imgs * k * p);
        for (int grp = 0; grp < g.G; grp++)
            for (int n0 = 0; n0 < g.N; n0 += imgs)
            {
                int ni = Math.Min(imgs, g.N - n0);
                // A = w_grp^T: element (r, o) at w[(grp Og + o) k + r]; B = gy[n, grp]: [Og, OutVol].
                Gemm.RunBatched(ni, k, p, g.Og, T.One, w, wOff + grp * g.Og * k, 0, 1, k,
                    gy, gyOff + (n0 * g.O + grp * g.Og) * p, g.O * p, p, 1, T.Zero, col, 0, k * p, p);
                Col2Im(g, col, n0, ni, grp, gx, gxOff);
            }
    }

    // gx[n0 + b, grp Cg + c] += col[b][(c, tap), q] at the input position output q reads through tap (one part per channel).
    static void Col2Im<T>(ConvGeometry g, T[] col, int n0, int imgs, int grp, T[] gx, int gxOff) where T : unmanaged, INumber<T>
    {
        int k = g.Cg * g.KVol, p = g.OutVol;
        ForRanges(imgs * g.Cg, (long)g.KVol * p, (s, e) =>
        {
            for (int item = s; item < e; item++)
            {
                int b = item / g.Cg, c = item % g.Cg;
                var dst = gx.AsSpan(gxOff + ((n0 + b) * g.C + grp * g.Cg + c) * g.InVol, g.InVol);
                for (int tap = 0; tap < g.KVol; tap++)
                {
                    int kw = tap % g.KW, kh = tap / g.KW % g.KH, kd = tap / (g.KW * g.KH);
                    var src = col.AsSpan((b * k + c * g.KVol + tap) * p, p);
                    for (int od = 0; od < g.OD; od++)
                    {
                        int id = od * g.SD - g.PD + kd * g.DD;
                        if ((uint)id >= (uint)g.ID) continue;
                        for (int oh = 0; oh < g.OH; oh++)
                        {
                            int ih = oh * g.SH - g.PH + kh * g.DH;
                            if ((uint)ih >= (uint)g.IH) continue;
                            var drow = dst.Slice((id * g.IH + ih) * g.IW, g.IW);
                            var srow = src.Slice((od * g.OH + oh) * g.OW, g.OW);
                            for (int ow = 0, iw = kw * g.DW - g.PW; ow < srow.Length; ow++, iw += g.SW)
                                if ((uint)iw < (uint)drow.Length) drow[iw] += srow[ow];
                        }
                    }
                }
            }
        });
    }

    /// <summary>
    /// gw [O, C/G, KVol] = the weight gradient of <see cref="Forward{T}"/> for x [N, C, InVol] and gy [N, O, OutVol]:
    /// per group, gw^T = sum over chunks of (image, position) columns of patches_chunk [C/G KVol, L] x gy_chunk^T [L, O/G],
    /// in a fixed order (results do not depend on the thread count).
    /// </summary>
    public static void BackwardWeight<T>(ConvGeometry g, T[] x, int xOff, T[] gy, int gyOff, T[] gw, int gwOff) where T : unmanaged, INumber<T>
    {
        int m = g.Og, k = g.Cg * g.KVol, p = g.OutVol;
        if (m * k == 0) return;
        if ((long)g.N * p == 0) { gw.AsSpan(gwOff, g.O * k).Clear(); return; }
        if (m == 1) { DirectWeight(g, x, xOff, gy, gyOff, gw, gwOff); return; }
        // Columns per chunk: whole images while they fit, else parts of one image.
        int len = Math.Max(1, Math.Min(ChunkElements / Math.Max(k, 1), g.N * p));
        int imgs = Math.Max(1, len / p);
        if (p > len) imgs = 1; else len = imgs * p;
        var col = GC.AllocateUninitializedArray<T>(k * len, pinned: true);
        var gyc = GC.AllocateUninitializedArray<T>(m * len);
        var gwt = GC.AllocateUninitializedArray<T>(k * m);
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
                        // gw^T [k, m] += patches [k, cols] gy^T [cols, m]: the patches pack as A (row-major, fast), and
                        // the transposed operand is the narrow one (m columns gathered instead of k).
                        Gemm.Run(k, m, cols, T.One, col, 0, cols, 1, gyc, 0, 1, cols, first ? T.Zero : T.One, gwt, 0, m);
                        first = false;
                    }
                for (int o = 0; o < m; o++)
                    for (int r = 0; r < k; r++) gw[gwOff + (grp * m + o) * k + r] = gwt[r * m + o];
            }
    }

    // One output channel per group (depthwise): gw[grp, r] = sum over images of gy row . patch row r, in image order.
    static void DirectWeight<T>(ConvGeometry g, T[] x, int xOff, T[] gy, int gyOff, T[] gw, int gwOff) where T : unmanaged, INumber<T>
    {
        int k = g.Cg * g.KVol, p = g.OutVol;
        fixed (T* xp = x)
        {
            T* xb = xp + xOff;
            ForRanges(g.G, (long)g.N * p * k, (s, e) =>
            {
                var row = GC.AllocateUninitializedArray<T>(p, pinned: true);
                fixed (T* rp = row)
                    for (int grp = s; grp < e; grp++)
                    {
                        var patches = PatchPanels<T>.Forward(g, xb + (long)grp * g.Cg * g.InVol);
                        for (int r = 0; r < k; r++)
                        {
                            T acc = T.Zero;
                            for (int b = 0; b < g.N; b++)
                            {
                                patches.Rows(b, r, 0, p, p, p, rp, 0, 1);
                                acc += TP.Dot<T>(row, gy.AsSpan(gyOff + (b * g.O + grp) * p, p));
                            }
                            gw[gwOff + grp * k + r] = acc;
                        }
                    }
            });
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
    public bool ColumnMajor => false;

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
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
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public void Rows(int t, int p0, int col0, int w, int padTo, int stride, T* d, int r0, int r1)
    {
        int kvol = _kd * _kh * _kw, tvol = _td * _th * _tw;
        // Columns past one image's positions continue in the next image (a batch folded into the GEMM's N).
        int n0 = t + col0 / tvol, rest = col0 % tvol;
        int tw0 = rest % _tw, th0 = rest / _tw % _th, td0 = rest / (_tw * _th);
        for (int r = r0; r < r1; r++, d += stride)
        {
            int row = p0 + r, c = row / kvol, tap = row - c * kvol;
            int kw = tap % _kw, kh = tap / _kw % _kh, kd = tap / (_kw * _kh);
            T* sc = _src + n0 * _batch + c * _chan;
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
                if (td == _td) { td = 0; sc += _batch; }
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
        new Span<T>(d, len).Clear();
        if (_divW == 1)
        {
            // Strided forward: position i reads v0 + i mul; only the in-range run is read.
            int v0 = tw * _mulW + offW, mul = _mulW;
            int lo = v0 >= 0 ? 0 : (-v0 + mul - 1) / mul, hi = Math.Min(len, v0 >= _sw ? 0 : (_sw - 1 - v0) / mul + 1);
            for (int i = lo; i < hi; i++) d[i] = row[v0 + i * mul];
            return;
        }
        // Input gradient of a strided convolution: every div-th position reads a source element, the rest stay zero.
        int u0 = tw + offW, div = _divW;
        int first = u0 >= 0 ? (div - u0 % div) % div : -u0;
        for (int i = first; i < len; i += div)
        {
            int v = (u0 + i) / div;
            if (v >= _sw) break;
            d[i] = row[v];
        }
    }
}
