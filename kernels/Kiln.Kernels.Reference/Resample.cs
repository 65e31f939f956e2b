namespace Kiln.Kernels;

/// <summary>How <see cref="ResampleArgs"/> maps output coordinates to input taps (PyTorch's interpolate modes).</summary>
public enum ResampleMode
{
    /// <summary>floor(o * scale) (PyTorch's legacy "nearest", computed in float32 as PyTorch does).</summary>
    Nearest,
    /// <summary>floor((o + 0.5) * scale) (PyTorch's "nearest-exact").</summary>
    NearestExact,
    /// <summary>Two taps per dim with linear weights (linear, bilinear, trilinear).</summary>
    Linear,
    /// <summary>Four taps per dim with Keys' cubic convolution weights, A = -0.75 (bicubic).</summary>
    Cubic,
}

/// <summary>
/// Geometry of an interpolation over planes of [D, H, W]: input [Planes, ID, IH, IW] from XOff, output [Planes, OD, OH,
/// OW]. Each dim whose bit is set in <see cref="Active"/> (4: D, 2: H, 1: W) is resampled; the others are copied.
/// FactorX is the user's scale factor of a dim (0 when an output size was given), which PyTorch uses for the
/// coordinate mapping in place of in / out.
/// </summary>
public struct ResampleArgs
{
    /// <summary>Batch times channels.</summary>
    public int Planes;
    /// <summary>Offset of the first input element.</summary>
    public int XOff;
    /// <summary>Input extents.</summary>
    public int ID, IH, IW;
    /// <summary>Output extents.</summary>
    public int OD, OH, OW;
    /// <summary>The <see cref="ResampleMode"/>.</summary>
    public int Mode;
    /// <summary>1 to map corner pixel centres onto each other (align_corners).</summary>
    public int AlignCorners;
    /// <summary>Bit mask of the resampled dims: 4 for D, 2 for H, 1 for W.</summary>
    public int Active;
    /// <summary>The scale factors of the dims, or 0 where the output size was given.</summary>
    public double FactorD, FactorH, FactorW;

    /// <summary>Elements of one input plane.</summary>
    public readonly int InPlane => ID * IH * IW;
    /// <summary>Elements of one output plane.</summary>
    public readonly int OutPlane => OD * OH * OW;
}

public static partial class Reference
{
    /// <summary>Keys' cubic convolution weights of the four taps at offsets -1, 0, 1, 2 from floor(x), for t = x - floor(x), A = -0.75 (PyTorch's).</summary>
    public static double[] CubicWeights(double t)
    {
        const double A = -0.75;
        static double Near(double x) => ((A + 2) * x - (A + 3)) * x * x + 1;               // |x| <= 1
        static double Far(double x) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;           // 1 < |x| < 2
        return [Far(t + 1), Near(t), Near(1 - t), Far(2 - t)];
    }

    /// <summary>
    /// The taps (input index, weight) of output <paramref name="o"/> along one dim, as PyTorch's upsample kernels compute
    /// them: the source coordinate is scale * o with align_corners, else scale * (o + 0.5) - 0.5 (clamped at 0 except for
    /// cubic), where scale is (in - 1) / (out - 1) with align_corners, else 1 / factor when a factor was given, else in / out.
    /// Nearest modes compute in float32, as PyTorch does for every dtype.
    /// </summary>
    public static (int Index, double Weight)[] ResampleTaps(int o, int inSize, int outSize, double factor, ResampleMode mode, bool alignCorners)
    {
        if (mode is ResampleMode.Nearest or ResampleMode.NearestExact)
        {
            if (mode == ResampleMode.Nearest && outSize == inSize) return [(o, 1)];
            if (mode == ResampleMode.Nearest && outSize == 2 * inSize) return [(o >> 1, 1)];
            float s = factor > 0 ? (float)(1.0 / factor) : (float)inSize / outSize;
            float src = mode == ResampleMode.Nearest ? o * s : (float)((o + 0.5) * s);
            return [(Math.Min((int)MathF.Floor(src), inSize - 1), 1)];
        }
        double scale = alignCorners ? (outSize > 1 ? (inSize - 1.0) / (outSize - 1) : 0) : factor > 0 ? 1 / factor : (double)inSize / outSize;
        double real = alignCorners ? scale * o : scale * (o + 0.5) - 0.5;
        if (mode == ResampleMode.Linear && real < 0) real = 0;
        int i0 = Math.Min((int)Math.Floor(real), inSize - 1);
        double t = Math.Clamp(real - i0, 0, 1);
        if (mode == ResampleMode.Linear) return [(i0, 1 - t), (i0 < inSize - 1 ? i0 + 1 : i0, t)];
        var w = CubicWeights(t);
        return [.. Enumerable.Range(0, 4).Select(k => (Math.Clamp(i0 - 1 + k, 0, inSize - 1), w[k]))];
    }

    static (int Index, double Weight)[][] AllTaps(int inSize, int outSize, double factor, ResampleMode mode, bool align, bool active) =>
        [.. Enumerable.Range(0, outSize).Select(o => active ? ResampleTaps(o, inSize, outSize, factor, mode, align) : [(o, 1.0)])];

    /// <summary>Interpolation in float64: each output is the weighted sum of its taps' inputs (the product of the dims' weights).</summary>
    public static double[] Resample(ReadOnlySpan<double> x, ResampleArgs a)
    {
        var (td, th, tw) = Taps(a);
        var y = new double[a.Planes * a.OutPlane];
        for (int p = 0; p < a.Planes; p++)
            for (int od = 0; od < a.OD; od++)
                for (int oh = 0; oh < a.OH; oh++)
                    for (int ow = 0; ow < a.OW; ow++)
                    {
                        double s = 0;
                        foreach (var (d, wd) in td[od])
                            foreach (var (h, wh) in th[oh])
                                foreach (var (w, ww) in tw[ow])
                                    s += wd * wh * ww * x[a.XOff + p * a.InPlane + (d * a.IH + h) * a.IW + w];
                        y[((p * a.OD + od) * a.OH + oh) * a.OW + ow] = s;
                    }
        return y;
    }

    /// <summary>The gradient of <see cref="Resample"/> with respect to its input: every output's gradient spread over its taps by their weights.</summary>
    public static double[] ResampleBackward(ReadOnlySpan<double> g, ResampleArgs a)
    {
        var (td, th, tw) = Taps(a);
        var dx = new double[a.Planes * a.InPlane];
        for (int p = 0; p < a.Planes; p++)
            for (int od = 0; od < a.OD; od++)
                for (int oh = 0; oh < a.OH; oh++)
                    for (int ow = 0; ow < a.OW; ow++)
                    {
                        double gq = g[((p * a.OD + od) * a.OH + oh) * a.OW + ow];
                        foreach (var (d, wd) in td[od])
                            foreach (var (h, wh) in th[oh])
                                foreach (var (w, ww) in tw[ow])
                                    dx[p * a.InPlane + (d * a.IH + h) * a.IW + w] += wd * wh * ww * gq;
                    }
        return dx;
    }

    static ((int, double)[][], (int, double)[][], (int, double)[][]) Taps(ResampleArgs a)
    {
        var mode = (ResampleMode)a.Mode;
        bool align = a.AlignCorners != 0;
        return (AllTaps(a.ID, a.OD, a.FactorD, mode, align, (a.Active & 4) != 0),
                AllTaps(a.IH, a.OH, a.FactorH, mode, align, (a.Active & 2) != 0),
                AllTaps(a.IW, a.OW, a.FactorW, mode, align, (a.Active & 1) != 0));
    }
}
