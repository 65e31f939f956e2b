using System.Numerics;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// 2d grid sampling (bilinear or nearest; zeros, border or reflection padding) and its gradients with respect to the
/// input and the grid, in the dtype. The forward pass and the grid gradient run in parallel over batch entries; the
/// input gradient scatters each grid point's weights into its (batch, channel) plane, one plane per thread, so it is
/// deterministic. Reference: <see cref="Reference.GridSample"/>, <see cref="Reference.GridSampleBackward"/>.
/// </summary>
public static class GridSample
{
    /// <summary>The source coordinate of grid value g along a dim of size pixels, and d(source)/d(g).</summary>
    static (T Coord, T Grad) Source<T>(T g, int size, int padding, bool align) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T one = T.One, two = T.CreateTruncating(2), n = T.CreateTruncating(size);
        T c = align ? (g + one) / two * (n - one) : ((g + one) * n - one) / two;
        T grad = align ? (n - one) / two : n / two;
        if (padding == 2)
        {
            T lo = align ? T.Zero : T.CreateTruncating(-0.5), span = align ? n - one : n;
            if (span == T.Zero) return (T.Zero, T.Zero);
            T v = c - lo;
            if (v < T.Zero) { v = -v; grad = -grad; }
            T flips = T.Floor(v / span), extra = v - flips * span;
            if (T.IsEvenInteger(flips)) c = extra + lo;
            else { c = span - extra + lo; grad = -grad; }
        }
        if (padding >= 1)
        {
            if (c <= T.Zero) return (T.Zero, T.Zero);
            if (c >= n - one) return (n - one, T.Zero);
        }
        return (c, grad);
    }

    /// <summary>y [N, C, OH, OW] = x sampled at grid [N, OH, OW, 2].</summary>
    public static void Forward<T>(T[] x, T[] grid, GridSampleArgs a, T[] y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Strided.Parallel(a.N, (long)a.N * a.C * a.OH * a.OW * 4, (s, e) =>
        {
            for (int n = s; n < e; n++)
                for (int p = 0; p < a.OH * a.OW; p++)
                {
                    int gi = a.GOff + (n * a.OH * a.OW + p) * 2;
                    var (ix, _) = Source(grid[gi], a.IW, a.Padding, a.AlignCorners != 0);
                    var (iy, _) = Source(grid[gi + 1], a.IH, a.Padding, a.AlignCorners != 0);
                    for (int c = 0; c < a.C; c++)
                    {
                        int plane = a.XOff + (n * a.C + c) * a.IH * a.IW;
                        T sum = T.Zero;
                        if (a.Mode != 0)
                        {
                            int px = int.CreateTruncating(T.Round(ix, MidpointRounding.ToEven)), py = int.CreateTruncating(T.Round(iy, MidpointRounding.ToEven));
                            if (px >= 0 && px < a.IW && py >= 0 && py < a.IH) sum = x[plane + py * a.IW + px];
                        }
                        else
                        {
                            int x0 = int.CreateTruncating(T.Floor(ix)), y0 = int.CreateTruncating(T.Floor(iy));
                            for (int dy = 0; dy < 2; dy++)
                                for (int dx = 0; dx < 2; dx++)
                                {
                                    int px = x0 + dx, py = y0 + dy;
                                    if (px < 0 || px >= a.IW || py < 0 || py >= a.IH) continue;
                                    T wx = dx == 1 ? ix - T.CreateTruncating(x0) : T.CreateTruncating(x0 + 1) - ix;
                                    T wy = dy == 1 ? iy - T.CreateTruncating(y0) : T.CreateTruncating(y0 + 1) - iy;
                                    sum += wx * wy * x[plane + py * a.IW + px];
                                }
                        }
                        y[((n * a.C + c) * a.OH * a.OW) + p] = sum;
                    }
                }
        });
    }

    /// <summary>
    /// dx [N, C, IH, IW] (when not null) and dgrid [N, OH, OW, 2] (when not null) for output gradient g; the nearest mode's
    /// grid gradient is zero.
    /// </summary>
    public static void Backward<T>(T[] g, T[] x, T[] grid, GridSampleArgs a, T[]? dx, T[]? dgrid) where T : unmanaged, IFloatingPointIeee754<T>
    {
        bool align = a.AlignCorners != 0;
        int pts = a.OH * a.OW, inPlane = a.IH * a.IW;
        if (dx is not null)
            Strided.Parallel(a.N * a.C, (long)a.N * a.C * pts * 4, (s, e) =>
            {
                for (int nc = s; nc < e; nc++)
                {
                    int n = nc / Math.Max(a.C, 1), plane = nc * inPlane;
                    Array.Clear(dx, plane, inPlane);
                    for (int p = 0; p < pts; p++)
                    {
                        int gi = a.GOff + (n * pts + p) * 2;
                        var (ix, _) = Source(grid[gi], a.IW, a.Padding, align);
                        var (iy, _) = Source(grid[gi + 1], a.IH, a.Padding, align);
                        T go = g[nc * pts + p];
                        if (a.Mode != 0)
                        {
                            int px = int.CreateTruncating(T.Round(ix, MidpointRounding.ToEven)), py = int.CreateTruncating(T.Round(iy, MidpointRounding.ToEven));
                            if (px >= 0 && px < a.IW && py >= 0 && py < a.IH) dx[plane + py * a.IW + px] += go;
                            continue;
                        }
                        int x0 = int.CreateTruncating(T.Floor(ix)), y0 = int.CreateTruncating(T.Floor(iy));
                        for (int dy = 0; dy < 2; dy++)
                            for (int dxo = 0; dxo < 2; dxo++)
                            {
                                int px = x0 + dxo, py = y0 + dy;
                                if (px < 0 || px >= a.IW || py < 0 || py >= a.IH) continue;
                                T wx = dxo == 1 ? ix - T.CreateTruncating(x0) : T.CreateTruncating(x0 + 1) - ix;
                                T wy = dy == 1 ? iy - T.CreateTruncating(y0) : T.CreateTruncating(y0 + 1) - iy;
                                dx[plane + py * a.IW + px] += wx * wy * go;
                            }
                    }
                }
            });
        if (dgrid is null) return;
        Strided.Parallel(a.N, (long)a.N * a.C * pts * 8, (s, e) =>
        {
            for (int n = s; n < e; n++)
                for (int p = 0; p < pts; p++)
                {
                    int gi = a.GOff + (n * pts + p) * 2, go = (n * pts + p) * 2;
                    T gx = T.Zero, gy = T.Zero;
                    var (ix, gxm) = Source(grid[gi], a.IW, a.Padding, align);
                    var (iy, gym) = Source(grid[gi + 1], a.IH, a.Padding, align);
                    if (a.Mode == 0)
                    {
                        int x0 = int.CreateTruncating(T.Floor(ix)), y0 = int.CreateTruncating(T.Floor(iy));
                        for (int c = 0; c < a.C; c++)
                        {
                            int plane = a.XOff + (n * a.C + c) * inPlane;
                            T gout = g[(n * a.C + c) * pts + p];
                            for (int dy = 0; dy < 2; dy++)
                                for (int dxo = 0; dxo < 2; dxo++)
                                {
                                    int px = x0 + dxo, py = y0 + dy;
                                    if (px < 0 || px >= a.IW || py < 0 || py >= a.IH) continue;
                                    T v = x[plane + py * a.IW + px] * gout;
                                    T wx = dxo == 1 ? ix - T.CreateTruncating(x0) : T.CreateTruncating(x0 + 1) - ix;
                                    T wy = dy == 1 ? iy - T.CreateTruncating(y0) : T.CreateTruncating(y0 + 1) - iy;
                                    gx += dxo == 1 ? wy * v : -(wy * v);
                                    gy += dy == 1 ? wx * v : -(wx * v);
                                }
                        }
                    }
                    dgrid[go] = gx * gxm;
                    dgrid[go + 1] = gy * gym;
                }
        });
    }
}
