namespace Kiln.Kernels;

/// <summary>
/// Geometry of a pooling kernel over planes of [D, H, W] (1d and 2d pooling use D = H = 1 or D = 1 with a unit window):
/// the input plane is x[XOff + plane * ID * IH * IW ..], the output [Planes, OD, OH, OW]. A plain struct of ints, so
/// the CPU, GPU and reference kernels take the same arguments. Windows follow PyTorch: output o of a dim covers inputs
/// o * S - P + j * Dil for j in [0, K); adaptive windows cover [floor(o I / O), ceil((o + 1) I / O)).
/// </summary>
public struct PoolArgs
{
    /// <summary>Batch times channels.</summary>
    public int Planes;
    /// <summary>Offset of the first input element.</summary>
    public int XOff;
    /// <summary>Input extents.</summary>
    public int ID, IH, IW;
    /// <summary>Output extents.</summary>
    public int OD, OH, OW;
    /// <summary>Window extents (ignored when adaptive).</summary>
    public int KD, KH, KW;
    /// <summary>Strides (ignored when adaptive).</summary>
    public int SD, SH, SW;
    /// <summary>Implicit padding on both sides (ignored when adaptive).</summary>
    public int PD, PH, PW;
    /// <summary>Dilations (1 for average pooling).</summary>
    public int DD, DH, DW;
    /// <summary>1 for average pooling, 0 for max pooling.</summary>
    public int Avg;
    /// <summary>1 for adaptive windows.</summary>
    public int Adaptive;
    /// <summary>1 when average pooling counts padded positions in the divisor (PyTorch's count_include_pad).</summary>
    public int CountIncludePad;
    /// <summary>Divisor of every average window when positive (PyTorch's divisor_override).</summary>
    public int Divisor;

    /// <summary>Elements of one input plane.</summary>
    public readonly int InPlane => ID * IH * IW;
    /// <summary>Elements of one output plane.</summary>
    public readonly int OutPlane => OD * OH * OW;
}

public static partial class Reference
{
    /// <summary>
    /// Max or average pooling in float64, written as the definition: for every output element, the window's positions in
    /// order (d, h, w), skipping those outside the input. Max takes the first largest value (a NaN wins, the last NaN
    /// counts) and its flat index in the input plane (a window that holds no input, possible with dilation and padding,
    /// gives -infinity at index -1); average divides the sum by the window's size (clipped to the
    /// padded input, or to the input when count_include_pad is off) or by the divisor override.
    /// </summary>
    public static (double[] Values, long[] Indices) Pool(ReadOnlySpan<double> x, PoolArgs a)
    {
        int n = a.Planes * a.OutPlane;
        var y = new double[n];
        var idx = new long[n];
        for (int p = 0; p < a.Planes; p++)
            for (int od = 0; od < a.OD; od++)
                for (int oh = 0; oh < a.OH; oh++)
                    for (int ow = 0; ow < a.OW; ow++)
                    {
                        var wd = Window(od, a.ID, a.OD, a.KD, a.SD, a.PD, a.DD, a.Adaptive != 0);
                        var wh = Window(oh, a.IH, a.OH, a.KH, a.SH, a.PH, a.DH, a.Adaptive != 0);
                        var ww = Window(ow, a.IW, a.OW, a.KW, a.SW, a.PW, a.DW, a.Adaptive != 0);
                        double best = double.NegativeInfinity, sum = 0;
                        long at = -1;
                        int valid = 0;
                        foreach (int d in wd.Positions)
                            foreach (int h in wh.Positions)
                                foreach (int w in ww.Positions)
                                {
                                    if (d < 0 || d >= a.ID || h < 0 || h >= a.IH || w < 0 || w >= a.IW) continue;
                                    long flat = ((long)d * a.IH + h) * a.IW + w;
                                    double v = x[a.XOff + p * a.InPlane + (int)flat];
                                    if (at < 0) at = flat;
                                    if (v > best || double.IsNaN(v)) { best = v; at = flat; }
                                    sum += v;
                                    valid++;
                                }
                        int q = ((p * a.OD + od) * a.OH + oh) * a.OW + ow;
                        if (a.Avg == 0) { y[q] = best; idx[q] = at; continue; }
                        long divisor = a.Divisor > 0 ? a.Divisor
                            : a.CountIncludePad != 0 && a.Adaptive == 0 ? (long)wd.PaddedCount * wh.PaddedCount * ww.PaddedCount : valid;
                        y[q] = sum / divisor;
                    }
        return (y, idx);
    }

    /// <summary>
    /// The gradient of <see cref="Pool"/> with respect to its input: each output's gradient goes to the input at its index
    /// (max) or is spread evenly over its window divided by the same divisor (average).
    /// </summary>
    public static double[] PoolBackward(ReadOnlySpan<double> g, ReadOnlySpan<long> indices, PoolArgs a)
    {
        var dx = new double[a.Planes * a.InPlane];
        for (int p = 0; p < a.Planes; p++)
            for (int od = 0; od < a.OD; od++)
                for (int oh = 0; oh < a.OH; oh++)
                    for (int ow = 0; ow < a.OW; ow++)
                    {
                        int q = ((p * a.OD + od) * a.OH + oh) * a.OW + ow;
                        if (a.Avg == 0)
                        {
                            // A window of padding only (dilation can step over the input) has index -1 and no gradient.
                            if (indices[q] >= 0) dx[p * a.InPlane + (int)indices[q]] += g[q];
                            continue;
                        }
                        var wd = Window(od, a.ID, a.OD, a.KD, a.SD, a.PD, 1, a.Adaptive != 0);
                        var wh = Window(oh, a.IH, a.OH, a.KH, a.SH, a.PH, 1, a.Adaptive != 0);
                        var ww = Window(ow, a.IW, a.OW, a.KW, a.SW, a.PW, 1, a.Adaptive != 0);
                        var inside = (from d in wd.Positions from h in wh.Positions from w in ww.Positions
                                      where d >= 0 && d < a.ID && h >= 0 && h < a.IH && w >= 0 && w < a.IW
                                      select (d * a.IH + h) * a.IW + w).ToArray();
                        long divisor = a.Divisor > 0 ? a.Divisor
                            : a.CountIncludePad != 0 && a.Adaptive == 0 ? (long)wd.PaddedCount * wh.PaddedCount * ww.PaddedCount : inside.Length;
                        foreach (int f in inside) dx[p * a.InPlane + f] += g[q] / divisor;
                    }
        return dx;
    }

    // The input positions of output o along one dim, and (for count_include_pad) how many lie inside the padded input.
    static (int[] Positions, int PaddedCount) Window(int o, int inSize, int outSize, int k, int s, int p, int dil, bool adaptive)
    {
        if (adaptive)
        {
            int lo = (int)Math.Floor((double)o * inSize / outSize), hi = (int)Math.Ceiling((double)(o + 1) * inSize / outSize);
            return (Enumerable.Range(lo, hi - lo).ToArray(), hi - lo);
        }
        int start = o * s - p;
        return (Enumerable.Range(0, k).Select(j => start + j * dil).ToArray(), Math.Min(start + k, inSize + p) - start);
    }
}
