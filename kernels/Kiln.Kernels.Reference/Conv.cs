namespace Kiln.Kernels;

/// <summary>
/// The geometry of one N-d convolution (1-d and 2-d are 3-d with extent-1 leading axes): input x [N, C, ID, IH, IW],
/// weight [O, C / G, KD, KH, KW], output y [N, O, OD, OH, OW], where output position q along an axis reads input
/// position q * stride - pad + k * dilation for kernel tap k (zero outside the input). A plain struct of ints, so the
/// CPU kernels, the GPU kernels and the reference share it.
/// </summary>
public struct ConvGeometry
{
    /// <summary>Batch, input channels, output channels, groups.</summary>
    public int N, C, O, G;
    /// <summary>Input extents.</summary>
    public int ID, IH, IW;
    /// <summary>Kernel extents.</summary>
    public int KD, KH, KW;
    /// <summary>Output extents.</summary>
    public int OD, OH, OW;
    /// <summary>Strides.</summary>
    public int SD, SH, SW;
    /// <summary>Zero padding before each axis (and after it, as far as the output reaches).</summary>
    public int PD, PH, PW;
    /// <summary>Dilations.</summary>
    public int DD, DH, DW;

    /// <summary>Input channels per group.</summary>
    public readonly int Cg => C / G;
    /// <summary>Output channels per group.</summary>
    public readonly int Og => O / G;
    /// <summary>Kernel taps per channel.</summary>
    public readonly int KVol => KD * KH * KW;
    /// <summary>Input positions per channel.</summary>
    public readonly int InVol => ID * IH * IW;
    /// <summary>Output positions per channel.</summary>
    public readonly int OutVol => OD * OH * OW;

    /// <summary>floor((in + 2 pad - dilation (k - 1) - 1) / stride) + 1, the output extent of one axis (may be below 1).</summary>
    public static int OutExtent(int input, int k, int stride, int pad, int dilation) =>
        (int)Math.Floor((input + 2.0 * pad - dilation * (k - 1.0) - 1) / stride) + 1;
}

public static partial class Reference
{
    /// <summary>y = conv(x, w) + bias in float64, summed in (channel, kd, kh, kw) order; bias [O] or empty.</summary>
    public static double[] ConvForward(ConvGeometry g, ReadOnlySpan<double> x, ReadOnlySpan<double> w, ReadOnlySpan<double> bias)
    {
        var y = new double[g.N * g.O * g.OutVol];
        for (int n = 0; n < g.N; n++)
            for (int o = 0; o < g.O; o++)
            {
                int grp = o / g.Og;
                for (int od = 0; od < g.OD; od++)
                    for (int oh = 0; oh < g.OH; oh++)
                        for (int ow = 0; ow < g.OW; ow++)
                        {
                            double acc = 0;
                            for (int c = 0; c < g.Cg; c++)
                                for (int kd = 0; kd < g.KD; kd++)
                                    for (int kh = 0; kh < g.KH; kh++)
                                        for (int kw = 0; kw < g.KW; kw++)
                                        {
                                            int id = od * g.SD - g.PD + kd * g.DD, ih = oh * g.SH - g.PH + kh * g.DH, iw = ow * g.SW - g.PW + kw * g.DW;
                                            if (id < 0 || id >= g.ID || ih < 0 || ih >= g.IH || iw < 0 || iw >= g.IW) continue;
                                            acc += w[(((o * g.Cg + c) * g.KD + kd) * g.KH + kh) * g.KW + kw]
                                                * x[(((n * g.C + grp * g.Cg + c) * g.ID + id) * g.IH + ih) * g.IW + iw];
                                        }
                            if (!bias.IsEmpty) acc += bias[o];
                            y[(((n * g.O + o) * g.OD + od) * g.OH + oh) * g.OW + ow] = acc;
                        }
            }
        return y;
    }

    /// <summary>
    /// The input gradient of <see cref="ConvForward"/> (the transposed convolution of <paramref name="gy"/> [N, O, OD, OH, OW]):
    /// gx [N, C, ID, IH, IW], gx[x-position] = sum of w * gy over every (output position, tap) that reads it.
    /// </summary>
    public static double[] ConvBackwardData(ConvGeometry g, ReadOnlySpan<double> gy, ReadOnlySpan<double> w)
    {
        var gx = new double[g.N * g.C * g.InVol];
        for (int n = 0; n < g.N; n++)
            for (int o = 0; o < g.O; o++)
            {
                int grp = o / g.Og;
                for (int od = 0; od < g.OD; od++)
                    for (int oh = 0; oh < g.OH; oh++)
                        for (int ow = 0; ow < g.OW; ow++)
                        {
                            double v = gy[(((n * g.O + o) * g.OD + od) * g.OH + oh) * g.OW + ow];
                            for (int c = 0; c < g.Cg; c++)
                                for (int kd = 0; kd < g.KD; kd++)
                                    for (int kh = 0; kh < g.KH; kh++)
                                        for (int kw = 0; kw < g.KW; kw++)
                                        {
                                            int id = od * g.SD - g.PD + kd * g.DD, ih = oh * g.SH - g.PH + kh * g.DH, iw = ow * g.SW - g.PW + kw * g.DW;
                                            if (id < 0 || id >= g.ID || ih < 0 || ih >= g.IH || iw < 0 || iw >= g.IW) continue;
                                            gx[(((n * g.C + grp * g.Cg + c) * g.ID + id) * g.IH + ih) * g.IW + iw] +=
                                                w[(((o * g.Cg + c) * g.KD + kd) * g.KH + kh) * g.KW + kw] * v;
                                        }
                        }
            }
        return gx;
    }

    /// <summary>The weight gradient of <see cref="ConvForward"/>: gw [O, C / G, KD, KH, KW] = sum over n and output positions of gy * x.</summary>
    public static double[] ConvBackwardWeight(ConvGeometry g, ReadOnlySpan<double> x, ReadOnlySpan<double> gy)
    {
        var gw = new double[g.O * g.Cg * g.KVol];
        for (int o = 0; o < g.O; o++)
        {
            int grp = o / g.Og;
            for (int c = 0; c < g.Cg; c++)
                for (int kd = 0; kd < g.KD; kd++)
                    for (int kh = 0; kh < g.KH; kh++)
                        for (int kw = 0; kw < g.KW; kw++)
                        {
                            double acc = 0;
                            for (int n = 0; n < g.N; n++)
                                for (int od = 0; od < g.OD; od++)
                                    for (int oh = 0; oh < g.OH; oh++)
                                        for (int ow = 0; ow < g.OW; ow++)
                                        {
                                            int id = od * g.SD - g.PD + kd * g.DD, ih = oh * g.SH - g.PH + kh * g.DH, iw = ow * g.SW - g.PW + kw * g.DW;
                                            if (id < 0 || id >= g.ID || ih < 0 || ih >= g.IH || iw < 0 || iw >= g.IW) continue;
                                            acc += gy[(((n * g.O + o) * g.OD + od) * g.OH + oh) * g.OW + ow]
                                                * x[(((n * g.C + grp * g.Cg + c) * g.ID + id) * g.IH + ih) * g.IW + iw];
                                        }
                            gw[(((o * g.Cg + c) * g.KD + kd) * g.KH + kh) * g.KW + kw] = acc;
                        }
        }
        return gw;
    }
}
