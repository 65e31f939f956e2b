using ILGPU;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// One implicit-GEMM launch of <see cref="Conv"/>. Mode 0 (forward and input gradient): for grid slice z = (n, group),
/// C[row, col] = sum_r A[row, r] B[r, col], A the weight (A(row, r) = a[AOff + group M K + row ARs + (r / KVol) AC1 + r % KVol])
/// and B the patch matrix of the source image n: B(r, col) = src at channel r / KVol, tap r % KVol and target position
/// col (source position (q mul + base + tap step) / div per axis, zero outside the source or between its positions). Mode 1 (weight gradient): for slice z = group,
/// C[o, j] = sum over (n, p) of gy[n, group M + o, p] times the forward patch element (j, (n, p)).
/// </summary>
public struct ConvArgs
{
    /// <summary>0: weight times patches; 1: weight gradient.</summary>
    public int Mode;
    /// <summary>GEMM extents per slice, and the groups.</summary>
    public int M, N, K, G;
    /// <summary>Kernel taps per channel.</summary>
    public int KVol, KD, KH, KW;
    /// <summary>A's offset and strides (mode 0: weight row stride and channel stride; mode 1: gy's image stride in ABs).</summary>
    public int AOff, ARs, AC1, ABs;
    /// <summary>The source's offset, image stride, channel stride, channels per group, and extents.</summary>
    public int SrcOff, SrcBatch, SrcChan, SrcCg, SD, SH, SW;
    /// <summary>Target (patch column) extents.</summary>
    public int TD, TH, TW;
    /// <summary>Per-axis map of a target position q and tap k to the source position (q mul + base + k step) / div.</summary>
    public int MulD, MulH, MulW, BaseD, BaseH, BaseW, StepD, StepH, StepW, DivD, DivH, DivW;
    /// <summary>C's offset and image stride (mode 0).</summary>
    public int COff, CBatch;
    /// <summary>1 when bias[BiasOff + group M + row] is added (mode 0).</summary>
    public int HasBias, BiasOff;
}

/// <summary>
/// Convolution as a tiled implicit GEMM: the structure of <see cref="Gemm.Tiled{T, TN2}"/> (a (4 gy) x (4 gx) tile of C
/// per group, 4x4 per thread, K in steps of <see cref="Gemm.BK"/> through two shared buffers), with the B tile (and
/// in mode 1 the A tile) gathered from the convolution's source on the fly, so no patch matrix exists in memory.
/// Reference: <see cref="Reference.ConvForward"/>, <see cref="Reference.ConvBackwardData"/>, <see cref="Reference.ConvBackwardWeight"/>.
/// </summary>
public static class Conv
{
    /// <summary>Grid (ceil(N / 4gx), ceil(M / 4gy), slices), group (gx, gy) with gx, gy &lt;= 16.</summary>
    public static void Tiled<T, TN2>(ArrayView<T> a, ArrayView<T> src, ArrayView<T> bias, ArrayView<T> c, ConvArgs g)
        where T : unmanaged where TN2 : struct, INum<T>
    {
        TN2 n = default;
        const int BK = Gemm.BK, MaxTile = Gemm.MaxTile;
        var sa = SharedMemory.Allocate<T>(2 * BK * MaxTile);
        var sb = SharedMemory.Allocate<T>(2 * BK * MaxTile);
        int tx = Group.IdxX, ty = Group.IdxY, gx = Group.DimX, gy = Group.DimY;
        int bm = gy * Gemm.TM, bn = gx * Gemm.TN, row0 = Grid.IdxY * bm, col0 = Grid.IdxX * bn, z = Grid.IdxZ;
        int threads = gx * gy, tid = ty * gx + tx;
        int img = g.Mode == 0 ? z / g.G : 0, grp = g.Mode == 0 ? z % g.G : z;
        int tiles = (g.K + BK - 1) / BK;
        var acc = new Block4x4<T>();
        acc.Clear(n.Zero);
        if (tiles > 0) Load<T, TN2>(a, src, sa, sb, g, 0, 0, img, grp, row0, col0, bm, bn, tid, threads);
        Group.Barrier();
        for (int t = 0; t < tiles; t++)
        {
            int cur = t & 1;
            if (t + 1 < tiles) Load<T, TN2>(a, src, sa, sb, g, t + 1, cur ^ 1, img, grp, row0, col0, bm, bn, tid, threads);
            int ab = cur * BK * MaxTile + ty * Gemm.TM, bb = cur * BK * MaxTile + tx * Gemm.TN;
            for (int kk = 0; kk < BK; kk++)
            {
                int o = kk * MaxTile;
                acc.Fma<TN2>(sa[ab + o], sa[ab + o + 1], sa[ab + o + 2], sa[ab + o + 3], sb[bb + o], sb[bb + o + 1], sb[bb + o + 2], sb[bb + o + 3]);
            }
            Group.Barrier();
        }
        int r0 = row0 + ty * Gemm.TM, c0 = col0 + tx * Gemm.TN;
        int cBase = g.Mode == 0 ? g.COff + img * g.CBatch + grp * g.M * g.N : g.COff + grp * g.M * g.N;
        for (int i = 0; i < Gemm.TM; i++)
            for (int j = 0; j < Gemm.TN; j++)
                if (r0 + i < g.M && c0 + j < g.N)
                {
                    var v = acc.Get(i, j);
                    if (g.HasBias != 0) v = n.Add(v, bias[g.BiasOff + grp * g.M + r0 + i]);
                    c[cBase + (r0 + i) * g.N + c0 + j] = v;
                }
    }

    static void Load<T, TN2>(ArrayView<T> a, ArrayView<T> src, ArrayView<T> sa, ArrayView<T> sb, ConvArgs g, int t, int buf,
        int img, int grp, int row0, int col0, int bm, int bn, int tid, int threads)
        where T : unmanaged where TN2 : struct, INum<T>
    {
        TN2 n = default;
        const int BK = Gemm.BK, MaxTile = Gemm.MaxTile;
        int k0 = t * BK, sOff = buf * BK * MaxTile, p = g.TD * g.TH * g.TW;
        for (int e = tid; e < bm * BK; e += threads)
        {
            int mi = e / BK, kk = e % BK, gi = row0 + mi, gk = k0 + kk;
            var v = n.Zero;
            if (gi < g.M && gk < g.K)
                v = g.Mode == 0
                    ? a[g.AOff + grp * g.M * g.K + gi * g.ARs + gk / g.KVol * g.AC1 + gk % g.KVol]
                    : a[g.AOff + gk / p * g.ABs + (grp * g.M + gi) * p + gk % p];
            sa[sOff + kk * MaxTile + mi] = v;
        }
        for (int e = tid; e < bn * BK; e += threads)
        {
            int kk = e / bn, nj = e % bn, gk = k0 + kk, gj = col0 + nj;
            var v = n.Zero;
            if (gk < g.K && gj < g.N)
                v = g.Mode == 0 ? Patch<T, TN2>(src, g, img, grp, gk / g.KVol, gk % g.KVol, gj)
                    : Patch<T, TN2>(src, g, gk / p, grp, gj / g.KVol, gj % g.KVol, gk % p);
            sb[sOff + kk * MaxTile + nj] = v;
        }
    }

    // The source element of image img, group channel c, tap and target position q; zero outside the source.
    static T Patch<T, TN2>(ArrayView<T> src, ConvArgs g, int img, int grp, int c, int tap, int q)
        where T : unmanaged where TN2 : struct, INum<T>
    {
        TN2 n = default;
        int kw = tap % g.KW, kh = tap / g.KW % g.KH, kd = tap / (g.KW * g.KH);
        int qw = q % g.TW, qh = q / g.TW % g.TH, qd = q / (g.TW * g.TH);
        int sd = Map(qd, g.MulD, g.BaseD + kd * g.StepD, g.DivD, g.SD);
        int sh = Map(qh, g.MulH, g.BaseH + kh * g.StepH, g.DivH, g.SH);
        int sw = Map(qw, g.MulW, g.BaseW + kw * g.StepW, g.DivW, g.SW);
        if (sd < 0 || sh < 0 || sw < 0) return n.Zero;
        return src[g.SrcOff + img * g.SrcBatch + (grp * g.SrcCg + c) * g.SrcChan + (sd * g.SH + sh) * g.SW + sw];
    }

    static int Map(int q, int mul, int off, int div, int extent)
    {
        int v = q * mul + off;
        if (v < 0) return -1;
        int s = v / div;
        return s * div != v || s >= extent ? -1 : s;
    }
}

/// <summary>The typed kernel of <see cref="Conv"/> for one floating dtype.</summary>
public static class ConvKernels<T, TN> where T : unmanaged where TN : struct, INum<T>
{
    /// <summary>conv.tiled: one implicit-GEMM convolution launch (forward, input gradient or weight gradient).</summary>
    public static readonly GroupKernel<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ConvArgs> Tiled = new($"conv.tiled.{Dt.Of<TN>()}", Conv.Tiled<T, TN>);
}
