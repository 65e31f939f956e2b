namespace Kiln.Kernels;

/// <summary>
/// Geometry of ROI align (torchvision's roi_align): input [N, C, H, W] from XOff, boxes [K, 5] (batch index, x1, y1, x2,
/// y2 in input coordinates times 1 / SpatialScale) from ROff, output [K, C, PH, PW].
/// </summary>
public struct RoiAlignArgs
{
    /// <summary>Input extents.</summary>
    public int N, C, H, W;
    /// <summary>Number of boxes.</summary>
    public int K;
    /// <summary>Output bins per box.</summary>
    public int PH, PW;
    /// <summary>Offsets of the first input and box elements.</summary>
    public int XOff, ROff;
    /// <summary>Samples per bin along each dim; 0 for ceil(box extent / bins).</summary>
    public int SamplingRatio;
    /// <summary>1 to shift box coordinates by half a pixel (torchvision's aligned=True).</summary>
    public int Aligned;
    /// <summary>The scale from box coordinates to input pixels.</summary>
    public double SpatialScale;
}

public static partial class Reference
{
    /// <summary>
    /// The sample points of bin (ph, pw) of box k with their bilinear taps (row, column, weight) in float64, as torchvision
    /// computes them; the bin's value is the sum over its taps divided by the returned count.
    /// </summary>
    public static (List<(int Y, int X, double W)> Taps, int Count) RoiBin(ReadOnlySpan<double> rois, RoiAlignArgs a, int k, int ph, int pw)
    {
        int r = a.ROff + k * 5;
        double offset = a.Aligned != 0 ? 0.5 : 0;
        double x1 = rois[r + 1] * a.SpatialScale - offset, y1 = rois[r + 2] * a.SpatialScale - offset;
        double rw = rois[r + 3] * a.SpatialScale - offset - x1, rh = rois[r + 4] * a.SpatialScale - offset - y1;
        if (a.Aligned == 0) { rw = Math.Max(rw, 1); rh = Math.Max(rh, 1); }
        double bh = rh / a.PH, bw = rw / a.PW;
        int gh = a.SamplingRatio > 0 ? a.SamplingRatio : (int)Math.Ceiling(rh / a.PH), gw = a.SamplingRatio > 0 ? a.SamplingRatio : (int)Math.Ceiling(rw / a.PW);
        var taps = new List<(int, int, double)>();
        for (int iy = 0; iy < gh; iy++)
            for (int ix = 0; ix < gw; ix++)
            {
                double y = y1 + ph * bh + (iy + 0.5) * bh / gh, x = x1 + pw * bw + (ix + 0.5) * bw / gw;
                if (y < -1 || y > a.H || x < -1 || x > a.W) continue;
                y = Math.Max(y, 0); x = Math.Max(x, 0);
                int y0 = (int)y, x0 = (int)x, yh, xh;
                if (y0 >= a.H - 1) { y0 = yh = a.H - 1; y = y0; } else yh = y0 + 1;
                if (x0 >= a.W - 1) { x0 = xh = a.W - 1; x = x0; } else xh = x0 + 1;
                double ly = y - y0, lx = x - x0;
                taps.Add((y0, x0, (1 - ly) * (1 - lx)));
                taps.Add((y0, xh, (1 - ly) * lx));
                taps.Add((yh, x0, ly * (1 - lx)));
                taps.Add((yh, xh, ly * lx));
            }
        return (taps, Math.Max(gh * gw, 1));
    }

    /// <summary>ROI align in float64: each bin averages bilinear samples of its box's input plane.</summary>
    public static double[] RoiAlign(ReadOnlySpan<double> x, ReadOnlySpan<double> rois, RoiAlignArgs a)
    {
        var y = new double[a.K * a.C * a.PH * a.PW];
        for (int k = 0; k < a.K; k++)
            for (int ph = 0; ph < a.PH; ph++)
                for (int pw = 0; pw < a.PW; pw++)
                {
                    var (taps, count) = RoiBin(rois, a, k, ph, pw);
                    int n = (int)rois[a.ROff + k * 5];
                    for (int c = 0; c < a.C; c++)
                    {
                        double s = 0;
                        foreach (var (yy, xx, w) in taps) s += w * x[a.XOff + ((n * a.C + c) * a.H + yy) * a.W + xx];
                        y[((k * a.C + c) * a.PH + ph) * a.PW + pw] = s / count;
                    }
                }
        return y;
    }

    /// <summary>The gradient of <see cref="RoiAlign"/> with respect to its input: each bin's gradient spread over its taps.</summary>
    public static double[] RoiAlignBackward(ReadOnlySpan<double> g, ReadOnlySpan<double> rois, RoiAlignArgs a)
    {
        var dx = new double[a.N * a.C * a.H * a.W];
        for (int k = 0; k < a.K; k++)
            for (int ph = 0; ph < a.PH; ph++)
                for (int pw = 0; pw < a.PW; pw++)
                {
                    var (taps, count) = RoiBin(rois, a, k, ph, pw);
                    int n = (int)rois[a.ROff + k * 5];
                    for (int c = 0; c < a.C; c++)
                        foreach (var (yy, xx, w) in taps)
                            dx[((n * a.C + c) * a.H + yy) * a.W + xx] += w * g[((k * a.C + c) * a.PH + ph) * a.PW + pw] / count;
                }
        return dx;
    }
}
