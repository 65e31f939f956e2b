using ILGPU;
using ILGPU.Algorithms;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// 2d grid sampling (bilinear or nearest; zeros, border or reflection padding): one thread per output element; the
/// input gradient one thread per (batch, channel) plane walking the grid in order (an arbitrary grid can send any point
/// to any pixel, so the plane's owner scatters and the result is deterministic); the grid gradient one thread per grid
/// point. Reference: <see cref="Reference.GridSample"/>, <see cref="Reference.GridSampleBackward"/>.
/// </summary>
public static class GridSample
{
    static T Floor<T, TF>(T v) where T : unmanaged where TF : struct, IFloat<T> { TF f = default; return f.FromDouble(XMath.Floor(f.ToDouble(v))); }

    // The source coordinate of grid value g along a dim of size pixels, or (wantGrad) d(source)/d(g).
    static T Source<T, TF>(T g, int size, int padding, int align, int wantGrad) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        T one = f.One, two = f.FromLong(2), n = f.FromLong(size);
        T c = align != 0 ? f.Mul(f.Div(f.Add(g, one), two), f.Sub(n, one)) : f.Div(f.Sub(f.Mul(f.Add(g, one), n), one), two);
        T grad = align != 0 ? f.Div(f.Sub(n, one), two) : f.Div(n, two);
        if (padding == 2)
        {
            T lo = align != 0 ? f.Zero : f.FromDouble(-0.5), span = align != 0 ? f.Sub(n, one) : n;
            if (!f.Lt(f.Zero, span)) return f.Zero;
            T v = f.Sub(c, lo);
            if (f.Lt(v, f.Zero)) { v = f.Neg(v); grad = f.Neg(grad); }
            T flips = Floor<T, TF>(f.Div(v, span)), extra = f.Sub(v, f.Mul(flips, span));
            if (((long)f.ToDouble(flips) & 1) == 0) c = f.Add(extra, lo);
            else { c = f.Add(f.Sub(span, extra), lo); grad = f.Neg(grad); }
        }
        if (padding >= 1)
        {
            if (!f.Lt(f.Zero, c)) return f.Zero;
            if (!f.Lt(c, f.Sub(n, one))) return wantGrad != 0 ? f.Zero : f.Sub(n, one);
        }
        return wantGrad != 0 ? grad : c;
    }

    static T Weight<T, TF>(T i, int i0, int upper) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        return upper != 0 ? f.Sub(i, f.FromLong(i0)) : f.Sub(f.FromLong(i0 + 1), i);
    }

    /// <summary>y[q] for q over [N, C, OH, OW].</summary>
    public static void Forward<T, TF>(Index1D q, ArrayView<T> x, ArrayView<T> grid, ArrayView<T> y, GridSampleArgs a) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int pts = a.OH * a.OW, p = q % pts, nc = q / pts, n = nc / a.C;
        int gi = a.GOff + (n * pts + p) * 2;
        T ix = Source<T, TF>(grid[gi], a.IW, a.Padding, a.AlignCorners, 0), iy = Source<T, TF>(grid[gi + 1], a.IH, a.Padding, a.AlignCorners, 0);
        int plane = a.XOff + nc * a.IH * a.IW;
        T sum = f.Zero;
        if (a.Mode != 0)
        {
            int px = (int)XMath.RoundToEven(f.ToDouble(ix)), py = (int)XMath.RoundToEven(f.ToDouble(iy));
            if (px >= 0 && px < a.IW && py >= 0 && py < a.IH) sum = x[plane + py * a.IW + px];
        }
        else
        {
            int x0 = (int)XMath.Floor(f.ToDouble(ix)), y0 = (int)XMath.Floor(f.ToDouble(iy));
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++)
                {
                    int px = x0 + dx, py = y0 + dy;
                    if (px < 0 || px >= a.IW || py < 0 || py >= a.IH) continue;
                    sum = f.Add(sum, f.Mul(f.Mul(Weight<T, TF>(ix, x0, dx), Weight<T, TF>(iy, y0, dy)), x[plane + py * a.IW + px]));
                }
        }
        y[q] = sum;
    }

    /// <summary>dx for plane nc of [N, C]: every grid point's weights times its output gradient, in grid order.</summary>
    public static void BackwardInput<T, TF>(Index1D nc, ArrayView<T> g, ArrayView<T> grid, ArrayView<T> dx, GridSampleArgs a) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int pts = a.OH * a.OW, inPlane = a.IH * a.IW, n = nc / a.C, plane = nc * inPlane;
        for (int i = 0; i < inPlane; i++) dx[plane + i] = f.Zero;
        for (int p = 0; p < pts; p++)
        {
            int gi = a.GOff + (n * pts + p) * 2;
            T ix = Source<T, TF>(grid[gi], a.IW, a.Padding, a.AlignCorners, 0), iy = Source<T, TF>(grid[gi + 1], a.IH, a.Padding, a.AlignCorners, 0);
            T go = g[nc * pts + p];
            if (a.Mode != 0)
            {
                int px = (int)XMath.RoundToEven(f.ToDouble(ix)), py = (int)XMath.RoundToEven(f.ToDouble(iy));
                if (px >= 0 && px < a.IW && py >= 0 && py < a.IH) dx[plane + py * a.IW + px] = f.Add(dx[plane + py * a.IW + px], go);
                continue;
            }
            int x0 = (int)XMath.Floor(f.ToDouble(ix)), y0 = (int)XMath.Floor(f.ToDouble(iy));
            for (int dy = 0; dy < 2; dy++)
                for (int dxo = 0; dxo < 2; dxo++)
                {
                    int px = x0 + dxo, py = y0 + dy;
                    if (px < 0 || px >= a.IW || py < 0 || py >= a.IH) continue;
                    int t = plane + py * a.IW + px;
                    dx[t] = f.Add(dx[t], f.Mul(f.Mul(Weight<T, TF>(ix, x0, dxo), Weight<T, TF>(iy, y0, dy)), go));
                }
        }
    }

    /// <summary>dgrid for grid point q of [N, OH, OW]: the bilinear weights' derivatives times the inputs and output gradients, over the channels.</summary>
    public static void BackwardGrid<T, TF>(Index1D q, ArrayView<T> g, ArrayView<T> x, ArrayView<T> grid, ArrayView<T> dgrid, GridSampleArgs a) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int pts = a.OH * a.OW, p = q % pts, n = q / pts, inPlane = a.IH * a.IW;
        int gi = a.GOff + q * 2;
        T ix = Source<T, TF>(grid[gi], a.IW, a.Padding, a.AlignCorners, 0), iy = Source<T, TF>(grid[gi + 1], a.IH, a.Padding, a.AlignCorners, 0);
        T gx = f.Zero, gy = f.Zero;
        if (a.Mode == 0)
        {
            int x0 = (int)XMath.Floor(f.ToDouble(ix)), y0 = (int)XMath.Floor(f.ToDouble(iy));
            for (int c = 0; c < a.C; c++)
            {
                int plane = a.XOff + (n * a.C + c) * inPlane;
                T gout = g[(n * a.C + c) * pts + p];
                for (int dy = 0; dy < 2; dy++)
                    for (int dxo = 0; dxo < 2; dxo++)
                    {
                        int px = x0 + dxo, py = y0 + dy;
                        if (px < 0 || px >= a.IW || py < 0 || py >= a.IH) continue;
                        T v = f.Mul(x[plane + py * a.IW + px], gout);
                        T wy = f.Mul(Weight<T, TF>(iy, y0, dy), v), wx = f.Mul(Weight<T, TF>(ix, x0, dxo), v);
                        gx = dxo == 1 ? f.Add(gx, wy) : f.Sub(gx, wy);
                        gy = dy == 1 ? f.Add(gy, wx) : f.Sub(gy, wx);
                    }
            }
        }
        dgrid[q * 2] = f.Mul(gx, Source<T, TF>(grid[gi], a.IW, a.Padding, a.AlignCorners, 1));
        dgrid[q * 2 + 1] = f.Mul(gy, Source<T, TF>(grid[gi + 1], a.IH, a.Padding, a.AlignCorners, 1));
    }
}

/// <summary>The typed kernels of <see cref="GridSample"/> for one floating dtype.</summary>
public static class GridSampleKernels<T, TF> where T : unmanaged where TF : struct, IFloat<T>
{
    /// <summary>resample.grid_sample: one thread per output.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<T>, ArrayView<T>, GridSampleArgs> Forward = new($"resample.grid_sample.{Dt.Of<TF>()}", GridSample.Forward<T, TF>);
    /// <summary>resample.grid_sample_input_grad: one thread per (batch, channel) plane.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<T>, ArrayView<T>, GridSampleArgs> BackwardInput = new($"resample.grid_sample_input_grad.{Dt.Of<TF>()}", GridSample.BackwardInput<T, TF>);
    /// <summary>resample.grid_sample_grid_grad: one thread per grid point.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, GridSampleArgs> BackwardGrid = new($"resample.grid_sample_grid_grad.{Dt.Of<TF>()}", GridSample.BackwardGrid<T, TF>);
}
