namespace Kiln.Kernels;

/// <summary>
/// Geometry of a 2d grid sample: input [N, C, IH, IW] from XOff, grid [N, OH, OW, 2] (x then y, in [-1, 1]) from GOff,
/// output [N, C, OH, OW]. Mode 0 is bilinear, 1 nearest; Padding 0 is zeros, 1 border, 2 reflection (PyTorch's).
/// </summary>
public struct GridSampleArgs
{
    /// <summary>Batch and channels.</summary>
    public int N, C;
    /// <summary>Input extents.</summary>
    public int IH, IW;
    /// <summary>Output (grid) extents.</summary>
    public int OH, OW;
    /// <summary>Offsets of the first input and grid elements.</summary>
    public int XOff, GOff;
    /// <summary>0 bilinear, 1 nearest.</summary>
    public int Mode;
    /// <summary>0 zeros, 1 border, 2 reflection.</summary>
    public int Padding;
    /// <summary>1 when -1 and 1 are the centres of the corner pixels, 0 when they are the corners' outer edges.</summary>
    public int AlignCorners;
}

public static partial class Reference
{
    /// <summary>
    /// The source pixel coordinate of normalized grid coordinate <paramref name="g"/> along a dim of <paramref name="size"/>
    /// pixels, with d(source)/d(g) (PyTorch's grid_sampler_compute_source_index_set_grad): unnormalize, then clip
    /// (border) or reflect and clip (reflection).
    /// </summary>
    public static (double Coord, double Grad) GridSource(double g, int size, int padding, bool alignCorners)
    {
        double c = alignCorners ? (g + 1) / 2 * (size - 1) : ((g + 1) * size - 1) / 2;
        double grad = alignCorners ? (size - 1) / 2.0 : size / 2.0;
        if (padding == 2)
        {
            double lo = alignCorners ? 0 : -0.5, span = alignCorners ? size - 1 : size;
            if (span == 0) return (0, 0);
            double v = c - lo;
            if (v < 0) { v = -v; grad = -grad; }
            double flips = Math.Floor(v / span), extra = v - flips * span;
            if (flips % 2 == 0) c = extra + lo;
            else { c = span - extra + lo; grad = -grad; }
        }
        if (padding >= 1)
        {
            if (c <= 0) return (0, 0);
            if (c >= size - 1) return (size - 1, 0);
        }
        return (c, grad);
    }

    /// <summary>Grid sampling in float64: bilinear weights of the four neighbours (zero outside the input) or the nearest pixel (ties to even).</summary>
    public static double[] GridSample(ReadOnlySpan<double> x, ReadOnlySpan<double> grid, GridSampleArgs a)
    {
        var y = new double[a.N * a.C * a.OH * a.OW];
        for (int n = 0; n < a.N; n++)
            for (int h = 0; h < a.OH; h++)
                for (int w = 0; w < a.OW; w++)
                {
                    int gi = a.GOff + ((n * a.OH + h) * a.OW + w) * 2;
                    var taps = GridTaps(grid[gi], grid[gi + 1], a);
                    for (int c = 0; c < a.C; c++)
                    {
                        double s = 0;
                        foreach (var (iy, ix, wt) in taps) s += wt * x[a.XOff + ((n * a.C + c) * a.IH + iy) * a.IW + ix];
                        y[((n * a.C + c) * a.OH + h) * a.OW + w] = s;
                    }
                }
        return y;
    }

    /// <summary>The gradients of <see cref="GridSample"/> with respect to its input and its grid, for output gradient g.</summary>
    public static (double[] Dx, double[] Dgrid) GridSampleBackward(ReadOnlySpan<double> g, ReadOnlySpan<double> x, ReadOnlySpan<double> grid, GridSampleArgs a)
    {
        var dx = new double[a.N * a.C * a.IH * a.IW];
        var dgrid = new double[a.N * a.OH * a.OW * 2];
        for (int n = 0; n < a.N; n++)
            for (int h = 0; h < a.OH; h++)
                for (int w = 0; w < a.OW; w++)
                {
                    int gi = a.GOff + ((n * a.OH + h) * a.OW + w) * 2;
                    var (ix, gxm) = GridSource(grid[gi], a.IW, a.Padding, a.AlignCorners != 0);
                    var (iy, gym) = GridSource(grid[gi + 1], a.IH, a.Padding, a.AlignCorners != 0);
                    double gx = 0, gy = 0;
                    int x0 = (int)Math.Floor(ix), y0 = (int)Math.Floor(iy);
                    for (int c = 0; c < a.C; c++)
                    {
                        double go = g[((n * a.C + c) * a.OH + h) * a.OW + w];
                        foreach (var (py, px, wt) in GridTaps(grid[gi], grid[gi + 1], a)) dx[((n * a.C + c) * a.IH + py) * a.IW + px] += wt * go;
                        if (a.Mode != 0) continue;
                        // d/dix and d/diy of the bilinear weights, corner by corner.
                        for (int dy = 0; dy < 2; dy++)
                            for (int dxo = 0; dxo < 2; dxo++)
                            {
                                int px = x0 + dxo, py = y0 + dy;
                                if (px < 0 || px >= a.IW || py < 0 || py >= a.IH) continue;
                                double v = x[a.XOff + ((n * a.C + c) * a.IH + py) * a.IW + px] * go;
                                double wx = dxo == 1 ? ix - x0 : x0 + 1 - ix, wy = dy == 1 ? iy - y0 : y0 + 1 - iy;
                                gx += (dxo == 1 ? 1 : -1) * wy * v;
                                gy += (dy == 1 ? 1 : -1) * wx * v;
                            }
                    }
                    dgrid[((n * a.OH + h) * a.OW + w) * 2] = gx * gxm;
                    dgrid[((n * a.OH + h) * a.OW + w) * 2 + 1] = gy * gym;
                }
        return (dx, dgrid);
    }

    // The (row, column, weight) taps of one grid point inside the input.
    static List<(int Y, int X, double W)> GridTaps(double gx, double gy, GridSampleArgs a)
    {
        var (ix, _) = GridSource(gx, a.IW, a.Padding, a.AlignCorners != 0);
        var (iy, _) = GridSource(gy, a.IH, a.Padding, a.AlignCorners != 0);
        var taps = new List<(int, int, double)>();
        if (a.Mode != 0)
        {
            int px = (int)Math.Round(ix, MidpointRounding.ToEven), py = (int)Math.Round(iy, MidpointRounding.ToEven);
            if (px >= 0 && px < a.IW && py >= 0 && py < a.IH) taps.Add((py, px, 1));
            return taps;
        }
        int x0 = (int)Math.Floor(ix), y0 = (int)Math.Floor(iy);
        for (int dy = 0; dy < 2; dy++)
            for (int dx = 0; dx < 2; dx++)
            {
                int px = x0 + dx, py = y0 + dy;
                if (px < 0 || px >= a.IW || py < 0 || py >= a.IH) continue;
                taps.Add((py, px, (dx == 1 ? ix - x0 : x0 + 1 - ix) * (dy == 1 ? iy - y0 : y0 + 1 - iy)));
            }
        return taps;
    }
}
