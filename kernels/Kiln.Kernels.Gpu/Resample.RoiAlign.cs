using ILGPU;
using ILGPU.Algorithms;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// ROI align (torchvision's roi_align): one thread per output bin and channel; the input gradient one thread per (batch,
/// channel) plane walking the boxes of its batch entry in order (deterministic, no atomics).
/// Reference: <see cref="Reference.RoiAlign"/>, <see cref="Reference.RoiAlignBackward"/>.
/// </summary>
public static class RoiAlign
{
    // The box's start and bin size along axis 0 (y) or 1 (x), in input pixels.
    static T Start<T, TF>(ArrayView<T> rois, RoiAlignArgs a, int k, int axis) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        return f.Sub(f.Mul(rois[a.ROff + k * 5 + 2 - axis], f.FromDouble(a.SpatialScale)), f.FromDouble(a.Aligned != 0 ? 0.5 : 0));
    }

    static T BinSize<T, TF>(ArrayView<T> rois, RoiAlignArgs a, int k, int axis) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        T end = f.Sub(f.Mul(rois[a.ROff + k * 5 + 4 - axis], f.FromDouble(a.SpatialScale)), f.FromDouble(a.Aligned != 0 ? 0.5 : 0));
        T extent = f.Sub(end, Start<T, TF>(rois, a, k, axis));
        if (a.Aligned == 0 && f.Lt(extent, f.One)) extent = f.One;
        return f.Div(extent, f.FromLong(axis == 0 ? a.PH : a.PW));
    }

    static int Samples<T, TF>(T binSize, int ratio) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        return ratio > 0 ? ratio : (int)XMath.Ceiling(f.ToDouble(binSize));
    }

    // Sample i of n in bin p along an axis.
    static T Sample<T, TF>(T start, T bin, int p, int i, int n) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        return f.Add(f.Add(start, f.Mul(f.FromLong(p), bin)), f.Div(f.Mul(f.Add(f.FromLong(i), f.FromDouble(0.5)), bin), f.FromLong(n)));
    }

    /// <summary>y[q] for q over [K, C, PH, PW]: the average of bilinear samples of the bin.</summary>
    public static void Forward<T, TF>(Index1D q, ArrayView<T> x, ArrayView<T> rois, ArrayView<T> y, RoiAlignArgs a) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int pw = q % a.PW, ph = q / a.PW % a.PH, c = q / (a.PW * a.PH) % a.C, k = q / (a.PW * a.PH * a.C);
        int n = (int)f.ToDouble(rois[a.ROff + k * 5]);
        int plane = a.XOff + (n * a.C + c) * a.H * a.W;
        T sy = Start<T, TF>(rois, a, k, 0), sx = Start<T, TF>(rois, a, k, 1), by = BinSize<T, TF>(rois, a, k, 0), bx = BinSize<T, TF>(rois, a, k, 1);
        int gh = Samples<T, TF>(by, a.SamplingRatio), gw = Samples<T, TF>(bx, a.SamplingRatio);
        T sum = f.Zero;
        for (int iy = 0; iy < gh; iy++)
            for (int ix = 0; ix < gw; ix++)
            {
                T yv = Sample<T, TF>(sy, by, ph, iy, gh), xv = Sample<T, TF>(sx, bx, pw, ix, gw);
                if (f.Lt(yv, f.FromLong(-1)) || f.Lt(f.FromLong(a.H), yv) || f.Lt(xv, f.FromLong(-1)) || f.Lt(f.FromLong(a.W), xv)) continue;
                if (f.Lt(yv, f.Zero)) yv = f.Zero;
                if (f.Lt(xv, f.Zero)) xv = f.Zero;
                int y0 = (int)f.ToDouble(yv), x0 = (int)f.ToDouble(xv), yh = y0 + 1, xh = x0 + 1;
                if (y0 >= a.H - 1) { y0 = yh = a.H - 1; yv = f.FromLong(y0); }
                if (x0 >= a.W - 1) { x0 = xh = a.W - 1; xv = f.FromLong(x0); }
                T ly = f.Sub(yv, f.FromLong(y0)), lx = f.Sub(xv, f.FromLong(x0)), hy = f.Sub(f.One, ly), hx = f.Sub(f.One, lx);
                sum = f.Add(sum, f.Mul(f.Mul(hy, hx), x[plane + y0 * a.W + x0]));
                sum = f.Add(sum, f.Mul(f.Mul(hy, lx), x[plane + y0 * a.W + xh]));
                sum = f.Add(sum, f.Mul(f.Mul(ly, hx), x[plane + yh * a.W + x0]));
                sum = f.Add(sum, f.Mul(f.Mul(ly, lx), x[plane + yh * a.W + xh]));
            }
        int count = gh * gw > 1 ? gh * gw : 1;
        y[q] = f.Div(sum, f.FromLong(count));
    }

    /// <summary>dx for plane nc of [N, C]: the gradients of every bin of every box on batch entry n, spread over their taps.</summary>
    public static void Backward<T, TF>(Index1D nc, ArrayView<T> g, ArrayView<T> rois, ArrayView<T> dx, RoiAlignArgs a) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int n = nc / a.C, c = nc % a.C, plane = nc * a.H * a.W;
        for (int i = 0; i < a.H * a.W; i++) dx[plane + i] = f.Zero;
        for (int k = 0; k < a.K; k++)
        {
            if ((int)f.ToDouble(rois[a.ROff + k * 5]) != n) continue;
            T sy = Start<T, TF>(rois, a, k, 0), sx = Start<T, TF>(rois, a, k, 1), by = BinSize<T, TF>(rois, a, k, 0), bx = BinSize<T, TF>(rois, a, k, 1);
            int gh = Samples<T, TF>(by, a.SamplingRatio), gw = Samples<T, TF>(bx, a.SamplingRatio);
            int count = gh * gw > 1 ? gh * gw : 1;
            for (int ph = 0; ph < a.PH; ph++)
                for (int pw = 0; pw < a.PW; pw++)
                {
                    T gq = f.Div(g[((k * a.C + c) * a.PH + ph) * a.PW + pw], f.FromLong(count));
                    for (int iy = 0; iy < gh; iy++)
                        for (int ix = 0; ix < gw; ix++)
                        {
                            T yv = Sample<T, TF>(sy, by, ph, iy, gh), xv = Sample<T, TF>(sx, bx, pw, ix, gw);
                            if (f.Lt(yv, f.FromLong(-1)) || f.Lt(f.FromLong(a.H), yv) || f.Lt(xv, f.FromLong(-1)) || f.Lt(f.FromLong(a.W), xv)) continue;
                            if (f.Lt(yv, f.Zero)) yv = f.Zero;
                            if (f.Lt(xv, f.Zero)) xv = f.Zero;
                            int y0 = (int)f.ToDouble(yv), x0 = (int)f.ToDouble(xv), yh = y0 + 1, xh = x0 + 1;
                            if (y0 >= a.H - 1) { y0 = yh = a.H - 1; yv = f.FromLong(y0); }
                            if (x0 >= a.W - 1) { x0 = xh = a.W - 1; xv = f.FromLong(x0); }
                            T ly = f.Sub(yv, f.FromLong(y0)), lx = f.Sub(xv, f.FromLong(x0)), hy = f.Sub(f.One, ly), hx = f.Sub(f.One, lx);
                            int t = plane + y0 * a.W + x0;
                            dx[t] = f.Add(dx[t], f.Mul(f.Mul(hy, hx), gq));
                            t = plane + y0 * a.W + xh;
                            dx[t] = f.Add(dx[t], f.Mul(f.Mul(hy, lx), gq));
                            t = plane + yh * a.W + x0;
                            dx[t] = f.Add(dx[t], f.Mul(f.Mul(ly, hx), gq));
                            t = plane + yh * a.W + xh;
                            dx[t] = f.Add(dx[t], f.Mul(f.Mul(ly, lx), gq));
                        }
                }
        }
    }
}

/// <summary>The typed kernels of <see cref="RoiAlign"/> for one floating dtype.</summary>
public static class RoiAlignKernels<T, TF> where T : unmanaged where TF : struct, IFloat<T>
{
    /// <summary>resample.roi_align: one thread per output bin and channel.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<T>, ArrayView<T>, RoiAlignArgs> Forward = new($"resample.roi_align.{Dt.Of<TF>()}", RoiAlign.Forward<T, TF>);
    /// <summary>resample.roi_align_backward: one thread per (batch, channel) plane.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<T>, ArrayView<T>, RoiAlignArgs> Backward = new($"resample.roi_align_backward.{Dt.Of<TF>()}", RoiAlign.Backward<T, TF>);
}
