using ILGPU;
using ILGPU.Algorithms;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// Interpolation (nearest, nearest-exact, linear, cubic; 1d to 3d as [D, H, W] planes), one thread per output element,
/// and its input gradient, one thread per input element: each dim's outputs that have a tap on the element form a
/// contiguous range (taps move monotonically with the output index), found by binary search, so the gradient gathers
/// without atomics and is deterministic. Coordinates are computed in the dtype, nearest indices in float32 (PyTorch's).
/// Reference: <see cref="Reference.Resample"/>, <see cref="Reference.ResampleBackward"/>.
/// </summary>
public static class Resample
{
    static int InSize(ResampleArgs a, int dim) => dim == 2 ? a.ID : dim == 1 ? a.IH : a.IW;
    static int OutSize(ResampleArgs a, int dim) => dim == 2 ? a.OD : dim == 1 ? a.OH : a.OW;
    static double Factor(ResampleArgs a, int dim) => dim == 2 ? a.FactorD : dim == 1 ? a.FactorH : a.FactorW;
    static bool Active(ResampleArgs a, int dim) => ((a.Active >> dim) & 1) != 0;

    /// <summary>Taps per output along a dim: 1 (copied dim or nearest), 2 (linear) or 4 (cubic).</summary>
    static int Count(ResampleArgs a, int dim) => !Active(a, dim) ? 1 : a.Mode == (int)ResampleMode.Linear ? 2 : a.Mode == (int)ResampleMode.Cubic ? 4 : 1;

    // The source coordinate of output o (linear and cubic), in the dtype.
    static T Real<T, TF>(ResampleArgs a, int dim, int o) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int inSize = InSize(a, dim), outSize = OutSize(a, dim);
        double factor = Factor(a, dim);
        T scale = a.AlignCorners != 0 ? (outSize > 1 ? f.Div(f.FromLong(inSize - 1), f.FromLong(outSize - 1)) : f.Zero)
            : factor > 0 ? f.FromDouble(1 / factor) : f.Div(f.FromLong(inSize), f.FromLong(outSize));
        T half = f.FromDouble(0.5);
        T real = a.AlignCorners != 0 ? f.Mul(scale, f.FromLong(o)) : f.Sub(f.Mul(scale, f.Add(f.FromLong(o), half)), half);
        return a.Mode == (int)ResampleMode.Linear && f.Lt(real, f.Zero) ? f.Zero : real;
    }

    // floor of the source coordinate, clamped to the input (the nearest index in the nearest modes, o for a copied dim).
    static int Base<T, TF>(ResampleArgs a, int dim, int o) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int inSize = InSize(a, dim), outSize = OutSize(a, dim);
        if (!Active(a, dim)) return o;
        if (a.Mode == (int)ResampleMode.Nearest || a.Mode == (int)ResampleMode.NearestExact)
        {
            if (a.Mode == (int)ResampleMode.Nearest && outSize == inSize) return o;
            if (a.Mode == (int)ResampleMode.Nearest && outSize == 2 * inSize) return o >> 1;
            double factor = Factor(a, dim);
            float s = factor > 0 ? (float)(1.0 / factor) : (float)inSize / outSize;
            float src = a.Mode == (int)ResampleMode.Nearest ? o * s : (float)((o + 0.5) * s);
            int n = (int)XMath.Floor(src);
            return n < inSize - 1 ? n : inSize - 1;
        }
        int i0 = (int)XMath.Floor(f.ToDouble(Real<T, TF>(a, dim, o)));
        return i0 < inSize - 1 ? i0 : inSize - 1;
    }

    static int TapIndex(ResampleArgs a, int dim, int i0, int j)
    {
        int last = InSize(a, dim) - 1;
        if (Count(a, dim) == 2) return j == 0 || i0 >= last ? i0 : i0 + 1;
        if (Count(a, dim) == 4) { int i = i0 - 1 + j; return i < 0 ? 0 : i > last ? last : i; }
        return i0;
    }

    static T TapWeight<T, TF>(ResampleArgs a, int dim, int o, int i0, int j) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int n = Count(a, dim);
        if (n == 1) return f.One;
        T t = f.Sub(Real<T, TF>(a, dim, o), f.FromLong(i0));
        t = f.Lt(t, f.Zero) ? f.Zero : f.Lt(f.One, t) ? f.One : t;
        if (n == 2) return j == 0 ? f.Sub(f.One, t) : t;
        T x = j == 0 ? f.Add(t, f.One) : j == 1 ? t : j == 2 ? f.Sub(f.One, t) : f.Sub(f.FromLong(2), t);
        T A = f.FromDouble(-0.75);
        // Keys' cubic convolution: one polynomial within distance 1, another from 1 to 2.
        if (j == 1 || j == 2) return f.Add(f.Mul(f.Mul(f.Sub(f.Mul(f.Add(A, f.FromLong(2)), x), f.Add(A, f.FromLong(3))), x), x), f.One);
        return f.Sub(f.Mul(f.Add(f.Mul(f.Sub(f.Mul(A, x), f.Mul(f.FromLong(5), A)), x), f.Mul(f.FromLong(8), A)), x), f.Mul(f.FromLong(4), A));
    }

    /// <summary>y[q] = the weighted sum of output q's taps, for q over [Planes, OD, OH, OW].</summary>
    public static void Forward<T, TF>(Index1D q, ArrayView<T> x, ArrayView<T> y, ResampleArgs a) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int ow = q % a.OW, oh = q / a.OW % a.OH, od = q / (a.OW * a.OH) % a.OD, plane = q / (a.OD * a.OH * a.OW);
        int bd = Base<T, TF>(a, 2, od), bh = Base<T, TF>(a, 1, oh), bw = Base<T, TF>(a, 0, ow);
        int nd = Count(a, 2), nh = Count(a, 1), nw = Count(a, 0);
        int b = a.XOff + plane * a.ID * a.IH * a.IW;
        T sum = f.Zero;
        for (int jd = 0; jd < nd; jd++)
        {
            T wd = TapWeight<T, TF>(a, 2, od, bd, jd);
            int d = TapIndex(a, 2, bd, jd);
            for (int jh = 0; jh < nh; jh++)
            {
                T wdh = f.Mul(wd, TapWeight<T, TF>(a, 1, oh, bh, jh));
                int row = b + (d * a.IH + TapIndex(a, 1, bh, jh)) * a.IW;
                for (int jw = 0; jw < nw; jw++)
                    sum = f.Add(sum, f.Mul(f.Mul(wdh, TapWeight<T, TF>(a, 0, ow, bw, jw)), x[row + TapIndex(a, 0, bw, jw)]));
            }
        }
        y[q] = sum;
    }

    // The first output whose last tap reaches input i, and the last output whose first tap is at most i.
    static int First<T, TF>(ResampleArgs a, int dim, int i) where T : unmanaged where TF : struct, IFloat<T>
    {
        int lo = 0, hi = OutSize(a, dim), n = Count(a, dim);
        while (lo < hi)
        {
            int m = (lo + hi) / 2;
            if (TapIndex(a, dim, Base<T, TF>(a, dim, m), n - 1) >= i) hi = m; else lo = m + 1;
        }
        return lo;
    }

    static int Last<T, TF>(ResampleArgs a, int dim, int i) where T : unmanaged where TF : struct, IFloat<T>
    {
        int lo = 0, hi = OutSize(a, dim);
        while (lo < hi)
        {
            int m = (lo + hi) / 2;
            if (TapIndex(a, dim, Base<T, TF>(a, dim, m), 0) > i) hi = m; else lo = m + 1;
        }
        return lo - 1;
    }

    /// <summary>dx[i] = the sum over outputs with a tap on input i of the tap's weight times the output's gradient.</summary>
    public static void Backward<T, TF>(Index1D i, ArrayView<T> g, ArrayView<T> dx, ResampleArgs a) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int iw = i % a.IW, ih = i / a.IW % a.IH, id = i / (a.IW * a.IH) % a.ID, plane = i / (a.ID * a.IH * a.IW);
        int nd = Count(a, 2), nh = Count(a, 1), nw = Count(a, 0);
        int ob = plane * a.OD * a.OH * a.OW;
        int d1 = Last<T, TF>(a, 2, id), h1 = Last<T, TF>(a, 1, ih), w1 = Last<T, TF>(a, 0, iw);
        int h0 = First<T, TF>(a, 1, ih), w0 = First<T, TF>(a, 0, iw);
        T acc = f.Zero;
        for (int od = First<T, TF>(a, 2, id); od <= d1; od++)
        {
            int bd = Base<T, TF>(a, 2, od);
            for (int jd = 0; jd < nd; jd++)
            {
                if (TapIndex(a, 2, bd, jd) != id) continue;
                T wd = TapWeight<T, TF>(a, 2, od, bd, jd);
                for (int oh = h0; oh <= h1; oh++)
                {
                    int bh = Base<T, TF>(a, 1, oh);
                    for (int jh = 0; jh < nh; jh++)
                    {
                        if (TapIndex(a, 1, bh, jh) != ih) continue;
                        T wdh = f.Mul(wd, TapWeight<T, TF>(a, 1, oh, bh, jh));
                        for (int ow = w0; ow <= w1; ow++)
                        {
                            int bw = Base<T, TF>(a, 0, ow);
                            for (int jw = 0; jw < nw; jw++)
                                if (TapIndex(a, 0, bw, jw) == iw)
                                    acc = f.Add(acc, f.Mul(f.Mul(wdh, TapWeight<T, TF>(a, 0, ow, bw, jw)), g[ob + (od * a.OH + oh) * a.OW + ow]));
                        }
                    }
                }
            }
        }
        dx[i] = acc;
    }
}

/// <summary>The typed kernels of <see cref="Resample"/> for one floating dtype.</summary>
public static class ResampleKernels<T, TF> where T : unmanaged where TF : struct, IFloat<T>
{
    /// <summary>resample.forward: interpolation, one thread per output.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<T>, ResampleArgs> Forward = new($"resample.forward.{Dt.Of<TF>()}", Resample.Forward<T, TF>);
    /// <summary>resample.backward: the input gradient of interpolation, one thread per input.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<T>, ResampleArgs> Backward = new($"resample.backward.{Dt.Of<TF>()}", Resample.Backward<T, TF>);
}

/// <summary>Every kernel of the resample family (interpolation, grid sampling, ROI align), for <see cref="KernelCatalog"/>.</summary>
public static class ResampleKernels
{
    /// <summary>The forward and backward kernels in float32 and float64.</summary>
    public static IReadOnlyList<GpuKernel> All { get; } = [.. Of<float, F32>(), .. Of<double, F64>()];

    static GpuKernel[] Of<T, TF>() where T : unmanaged where TF : struct, IFloat<T> =>
        [ResampleKernels<T, TF>.Forward, ResampleKernels<T, TF>.Backward, GridSampleKernels<T, TF>.Forward, GridSampleKernels<T, TF>.BackwardInput, GridSampleKernels<T, TF>.BackwardGrid,
         RoiAlignKernels<T, TF>.Forward, RoiAlignKernels<T, TF>.Backward];
}
