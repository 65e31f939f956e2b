using System.Numerics;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Max and average pooling (fixed or adaptive windows, 1d to 3d as [D, H, W] planes) and their input gradients, in
/// parallel over planes (batch times channels). The backward pass gathers: each input element sums the outputs whose
/// window holds it, so no two threads write one element and the result does not depend on the thread count.
/// Reference: <see cref="Reference.Pool"/>, <see cref="Reference.PoolBackward"/>.
/// </summary>
public static class Pool
{
    /// <summary>y (and, for max pooling, the flat input index of each maximum) for every output of every plane.</summary>
    public static void Forward<T>(T[] x, PoolArgs a, T[] y, long[]? indices) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int outPlane = a.OutPlane;
        Strided.Parallel(a.Planes, (long)a.Planes * outPlane * Math.Max(1, a.KD * a.KH * a.KW), (s, e) =>
        {
            for (int p = s; p < e; p++)
                for (int q = p * outPlane; q < (p + 1) * outPlane; q++)
                {
                    var (value, index) = PoolWindows.One(x, a, q);
                    y[q] = value;
                    if (indices is not null) indices[q] = index;
                }
        });
    }

    /// <summary>dx = the gradient of the pooling with respect to its input, from the output gradient g (and the max indices).</summary>
    public static void Backward<T>(T[] g, long[] indices, PoolArgs a, T[] dx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int inPlane = a.InPlane;
        Strided.Parallel(a.Planes, (long)a.Planes * inPlane * Math.Max(1, a.KD * a.KH * a.KW), (s, e) =>
        {
            for (int p = s; p < e; p++)
                for (int i = p * inPlane; i < (p + 1) * inPlane; i++) dx[i] = PoolWindows.Grad(g, indices, a, i);
        });
    }
}

/// <summary>The window arithmetic of pooling, shared by the forward and backward CPU kernels.</summary>
static class PoolWindows
{
    // Window of output o along one dim: positions start + j * step for j in [0, count); padded is the count_include_pad size.
    static (int Start, int Count, int Step, int Padded) Window(int o, int inSize, int outSize, int k, int s, int p, int dil, bool adaptive)
    {
        if (adaptive)
        {
            int lo = (int)((long)o * inSize / outSize), hi = (int)(((long)(o + 1) * inSize + outSize - 1) / outSize);
            return (lo, hi - lo, 1, hi - lo);
        }
        int start = o * s - p;
        return (start, k, dil, Math.Min(start + k, inSize + p) - start);
    }

    public static (T Value, long Index) One<T>(T[] x, PoolArgs a, int q) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int ow = q % a.OW, oh = q / a.OW % a.OH, od = q / (a.OW * a.OH) % a.OD, plane = q / a.OutPlane;
        bool adaptive = a.Adaptive != 0;
        var wd = Window(od, a.ID, a.OD, a.KD, a.SD, a.PD, a.DD, adaptive);
        var wh = Window(oh, a.IH, a.OH, a.KH, a.SH, a.PH, a.DH, adaptive);
        var ww = Window(ow, a.IW, a.OW, a.KW, a.SW, a.PW, a.DW, adaptive);
        int b = a.XOff + plane * a.InPlane, valid = 0;
        T best = T.NegativeInfinity, sum = T.Zero;
        long at = -1;
        for (int jd = 0, d = wd.Start; jd < wd.Count; jd++, d += wd.Step)
        {
            if ((uint)d >= (uint)a.ID) continue;
            for (int jh = 0, h = wh.Start; jh < wh.Count; jh++, h += wh.Step)
            {
                if ((uint)h >= (uint)a.IH) continue;
                for (int jw = 0, w = ww.Start; jw < ww.Count; jw++, w += ww.Step)
                {
                    if ((uint)w >= (uint)a.IW) continue;
                    int flat = (d * a.IH + h) * a.IW + w;
                    T v = x[b + flat];
                    if (at < 0) at = flat;
                    // PyTorch's rule: a NaN wins, and a later NaN replaces an earlier one.
                    if (v > best || T.IsNaN(v)) { best = v; at = flat; }
                    sum += v;
                    valid++;
                }
            }
        }
        if (a.Avg == 0) return (best, at);
        long divisor = a.Divisor > 0 ? a.Divisor : a.CountIncludePad != 0 && !adaptive ? (long)wd.Padded * wh.Padded * ww.Padded : valid;
        return (sum / T.CreateTruncating(divisor), 0);
    }

    // How many candidate outputs along one dim may hold input i, and the j-th of them (or -1 when it does not hold i).
    static int Candidates(int i, int inSize, int outSize, int k, bool adaptive) =>
        adaptive ? (int)(((long)(i + 1) * outSize + inSize - 1) / inSize) - (int)((long)i * outSize / inSize) : k;

    static int Candidate(int i, int j, int inSize, int outSize, int s, int p, int dil, bool adaptive)
    {
        if (adaptive)
        {
            int o = (int)((long)i * outSize / inSize) + j;
            return o < outSize ? o : -1;
        }
        int num = i + p - j * dil;
        if (num < 0 || num % s != 0) return -1;
        return num / s < outSize ? num / s : -1;
    }

    public static T Grad<T>(T[] g, long[] indices, PoolArgs a, int i) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int iw = i % a.IW, ih = i / a.IW % a.IH, id = i / (a.IW * a.IH) % a.ID, plane = i / a.InPlane;
        int flat = i - plane * a.InPlane, ob = plane * a.OutPlane;
        bool adaptive = a.Adaptive != 0, avg = a.Avg != 0;
        T acc = T.Zero;
        int nd = Candidates(id, a.ID, a.OD, a.KD, adaptive), nh = Candidates(ih, a.IH, a.OH, a.KH, adaptive), nw = Candidates(iw, a.IW, a.OW, a.KW, adaptive);
        for (int jd = 0; jd < nd; jd++)
        {
            int od = Candidate(id, jd, a.ID, a.OD, a.SD, a.PD, a.DD, adaptive);
            if (od < 0) continue;
            for (int jh = 0; jh < nh; jh++)
            {
                int oh = Candidate(ih, jh, a.IH, a.OH, a.SH, a.PH, a.DH, adaptive);
                if (oh < 0) continue;
                for (int jw = 0; jw < nw; jw++)
                {
                    int ow = Candidate(iw, jw, a.IW, a.OW, a.SW, a.PW, a.DW, adaptive);
                    if (ow < 0) continue;
                    int q = ob + (od * a.OH + oh) * a.OW + ow;
                    if (!avg) { if (indices[q] == flat) acc += g[q]; continue; }
                    acc += g[q] / T.CreateTruncating(Divisor(a, od, oh, ow));
                }
            }
        }
        return acc;
    }

    // The divisor of average window (od, oh, ow): the override, the padded size, or the count of inputs inside.
    static long Divisor(PoolArgs a, int od, int oh, int ow)
    {
        if (a.Divisor > 0) return a.Divisor;
        bool adaptive = a.Adaptive != 0;
        var wd = Window(od, a.ID, a.OD, a.KD, a.SD, a.PD, 1, adaptive);
        var wh = Window(oh, a.IH, a.OH, a.KH, a.SH, a.PH, 1, adaptive);
        var ww = Window(ow, a.IW, a.OW, a.KW, a.SW, a.PW, 1, adaptive);
        if (a.CountIncludePad != 0 && !adaptive) return (long)wd.Padded * wh.Padded * ww.Padded;
        return (long)Inside(wd.Start, wd.Count, a.ID) * Inside(wh.Start, wh.Count, a.IH) * Inside(ww.Start, ww.Count, a.IW);
    }

    static int Inside(int start, int count, int size) => Math.Max(0, Math.Min(start + count, size) - Math.Max(start, 0));
}
