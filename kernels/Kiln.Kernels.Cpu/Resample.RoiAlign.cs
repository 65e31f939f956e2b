using System.Numerics;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// ROI align (torchvision's roi_align) and its input gradient, in the dtype: the forward pass in parallel over boxes, the
/// gradient in parallel over channels, each thread scattering every box's bins into its channel in box order (so the
/// result is deterministic). Reference: <see cref="Reference.RoiAlign"/>, <see cref="Reference.RoiAlignBackward"/>.
/// </summary>
public static class RoiAlign
{
    // Calls tap(row, column, weight) for every bilinear tap of every sample of bin (ph, pw) of box k; returns the divisor.
    static int Bin<T>(T[] rois, RoiAlignArgs a, int k, int ph, int pw, Action<int, int, T> tap) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int r = a.ROff + k * 5;
        T scale = T.CreateTruncating(a.SpatialScale), offset = T.CreateTruncating(a.Aligned != 0 ? 0.5 : 0), half = T.CreateTruncating(0.5);
        T x1 = rois[r + 1] * scale - offset, y1 = rois[r + 2] * scale - offset;
        T rw = rois[r + 3] * scale - offset - x1, rh = rois[r + 4] * scale - offset - y1;
        if (a.Aligned == 0) { rw = T.Max(rw, T.One); rh = T.Max(rh, T.One); }
        T bh = rh / T.CreateTruncating(a.PH), bw = rw / T.CreateTruncating(a.PW);
        int gh = a.SamplingRatio > 0 ? a.SamplingRatio : int.CreateTruncating(T.Ceiling(bh)), gw = a.SamplingRatio > 0 ? a.SamplingRatio : int.CreateTruncating(T.Ceiling(bw));
        T h = T.CreateTruncating(a.H), w = T.CreateTruncating(a.W), minus1 = -T.One;
        for (int iy = 0; iy < gh; iy++)
            for (int ix = 0; ix < gw; ix++)
            {
                T y = y1 + T.CreateTruncating(ph) * bh + (T.CreateTruncating(iy) + half) * bh / T.CreateTruncating(gh);
                T x = x1 + T.CreateTruncating(pw) * bw + (T.CreateTruncating(ix) + half) * bw / T.CreateTruncating(gw);
                if (y < minus1 || y > h || x < minus1 || x > w) continue;
                y = T.Max(y, T.Zero); x = T.Max(x, T.Zero);
                int y0 = int.CreateTruncating(y), x0 = int.CreateTruncating(x), yh, xh;
                if (y0 >= a.H - 1) { y0 = yh = a.H - 1; y = T.CreateTruncating(y0); } else yh = y0 + 1;
                if (x0 >= a.W - 1) { x0 = xh = a.W - 1; x = T.CreateTruncating(x0); } else xh = x0 + 1;
                T ly = y - T.CreateTruncating(y0), lx = x - T.CreateTruncating(x0);
                tap(y0, x0, (T.One - ly) * (T.One - lx));
                tap(y0, xh, (T.One - ly) * lx);
                tap(yh, x0, ly * (T.One - lx));
                tap(yh, xh, ly * lx);
            }
        return Math.Max(gh * gw, 1);
    }

    /// <summary>y [K, C, PH, PW] = the average of bilinear samples of each bin of each box.</summary>
    public static void Forward<T>(T[] x, T[] rois, RoiAlignArgs a, T[] y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Strided.Parallel(a.K, (long)a.K * a.C * a.PH * a.PW * 16, (s, e) =>
        {
            var acc = new T[a.C];
            for (int k = s; k < e; k++)
            {
                int n = int.CreateTruncating(rois[a.ROff + k * 5]);
                for (int ph = 0; ph < a.PH; ph++)
                    for (int pw = 0; pw < a.PW; pw++)
                    {
                        Array.Clear(acc);
                        int count = Bin(rois, a, k, ph, pw, (yy, xx, wt) =>
                        {
                            for (int c = 0; c < a.C; c++) acc[c] += wt * x[a.XOff + ((n * a.C + c) * a.H + yy) * a.W + xx];
                        });
                        for (int c = 0; c < a.C; c++) y[((k * a.C + c) * a.PH + ph) * a.PW + pw] = acc[c] / T.CreateTruncating(count);
                    }
            }
        });
    }

    /// <summary>dx [N, C, H, W] = every bin's gradient spread over its samples' bilinear taps.</summary>
    public static void Backward<T>(T[] g, T[] rois, RoiAlignArgs a, T[] dx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Array.Clear(dx, 0, a.N * a.C * a.H * a.W);
        Strided.Parallel(a.C, (long)a.K * a.C * a.PH * a.PW * 16, (s, e) =>
        {
            for (int k = 0; k < a.K; k++)
            {
                int n = int.CreateTruncating(rois[a.ROff + k * 5]);
                for (int ph = 0; ph < a.PH; ph++)
                    for (int pw = 0; pw < a.PW; pw++)
                    {
                        var taps = new List<(int Y, int X, T W)>();
                        int count = Bin(rois, a, k, ph, pw, (yy, xx, wt) => taps.Add((yy, xx, wt)));
                        for (int c = s; c < e; c++)
                        {
                            T gq = g[((k * a.C + c) * a.PH + ph) * a.PW + pw] / T.CreateTruncating(count);
                            foreach (var (yy, xx, wt) in taps) dx[((n * a.C + c) * a.H + yy) * a.W + xx] += wt * gq;
                        }
                    }
            }
        });
    }
}
