using ILGPU;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// Max and average pooling (fixed or adaptive windows, 1d to 3d as [D, H, W] planes), one thread per output element,
/// and their input gradients, one thread per input element that sums the outputs whose window holds it (no atomics, so
/// the result is deterministic and equals the CPU's order of summation).
/// Reference: <see cref="Reference.Pool"/>, <see cref="Reference.PoolBackward"/>.
/// </summary>
public static class Pool
{
    // Window of output o along one dim: positions Start + j * Step for j in [0, Count).
    static int Lo(int o, int inSize, int outSize) => (int)((long)o * inSize / outSize);
    static int Hi(int o, int inSize, int outSize) => (int)(((long)(o + 1) * inSize + outSize - 1) / outSize);
    static int Start(int o, int inSize, int outSize, int s, int p, int adaptive) => adaptive != 0 ? Lo(o, inSize, outSize) : o * s - p;
    static int Count(int o, int inSize, int outSize, int k, int adaptive) => adaptive != 0 ? Hi(o, inSize, outSize) - Lo(o, inSize, outSize) : k;
    static int Step(int dil, int adaptive) => adaptive != 0 ? 1 : dil;
    // The count_include_pad size of a fixed window: clipped to the padded input.
    static int Padded(int start, int inSize, int k, int p) => Min(start + k, inSize + p) - start;
    static int Inside(int start, int count, int size) => Max(0, Min(start + count, size) - Max(start, 0));
    static int Min(int a, int b) => a < b ? a : b;
    static int Max(int a, int b) => a > b ? a : b;

    /// <summary>y[q] (and idx[q], the flat input index of the maximum, when Avg is 0) for output q of [Planes, OD, OH, OW].</summary>
    public static void Forward<T, TF>(Index1D q, ArrayView<T> x, ArrayView<T> y, ArrayView<long> idx, PoolArgs a)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int ow = q % a.OW, oh = q / a.OW % a.OH, od = q / (a.OW * a.OH) % a.OD, plane = q / (a.OD * a.OH * a.OW);
        int sd = Start(od, a.ID, a.OD, a.SD, a.PD, a.Adaptive), sh = Start(oh, a.IH, a.OH, a.SH, a.PH, a.Adaptive), sw = Start(ow, a.IW, a.OW, a.SW, a.PW, a.Adaptive);
        int cd = Count(od, a.ID, a.OD, a.KD, a.Adaptive), ch = Count(oh, a.IH, a.OH, a.KH, a.Adaptive), cw = Count(ow, a.IW, a.OW, a.KW, a.Adaptive);
        int td = Step(a.DD, a.Adaptive), th = Step(a.DH, a.Adaptive), tw = Step(a.DW, a.Adaptive);
        int b = a.XOff + plane * a.ID * a.IH * a.IW, valid = 0;
        T best = f.FromDouble(double.NegativeInfinity), sum = f.Zero;
        long at = -1;
        for (int jd = 0; jd < cd; jd++)
        {
            int d = sd + jd * td;
            if (d < 0 || d >= a.ID) continue;
            for (int jh = 0; jh < ch; jh++)
            {
                int h = sh + jh * th;
                if (h < 0 || h >= a.IH) continue;
                for (int jw = 0; jw < cw; jw++)
                {
                    int w = sw + jw * tw;
                    if (w < 0 || w >= a.IW) continue;
                    int flat = (d * a.IH + h) * a.IW + w;
                    T v = x[b + flat];
                    if (at < 0) at = flat;
                    // PyTorch's rule: a NaN wins, and a later NaN replaces an earlier one.
                    if (f.Lt(best, v) || f.IsNaN(v)) { best = v; at = flat; }
                    sum = f.Add(sum, v);
                    valid++;
                }
            }
        }
        if (a.Avg == 0) { y[q] = best; idx[q] = at; return; }
        long divisor = a.Divisor > 0 ? a.Divisor
            : a.CountIncludePad != 0 && a.Adaptive == 0 ? (long)Padded(sd, a.ID, a.KD, a.PD) * Padded(sh, a.IH, a.KH, a.PH) * Padded(sw, a.IW, a.KW, a.PW)
            : valid;
        y[q] = f.Div(sum, f.FromLong(divisor));
    }

    // How many candidate outputs along one dim may hold input i, and the j-th of them (or -1 when it does not hold i).
    static int Candidates(int i, int inSize, int outSize, int k, int adaptive) =>
        adaptive != 0 ? (int)(((long)(i + 1) * outSize + inSize - 1) / inSize) - (int)((long)i * outSize / inSize) : k;

    static int Candidate(int i, int j, int inSize, int outSize, int s, int p, int dil, int adaptive)
    {
        if (adaptive != 0)
        {
            int o = (int)((long)i * outSize / inSize) + j;
            return o < outSize ? o : -1;
        }
        int num = i + p - j * dil;
        if (num < 0 || num % s != 0) return -1;
        return num / s < outSize ? num / s : -1;
    }

    static long Divisor(PoolArgs a, int od, int oh, int ow)
    {
        if (a.Divisor > 0) return a.Divisor;
        int sd = Start(od, a.ID, a.OD, a.SD, a.PD, a.Adaptive), sh = Start(oh, a.IH, a.OH, a.SH, a.PH, a.Adaptive), sw = Start(ow, a.IW, a.OW, a.SW, a.PW, a.Adaptive);
        if (a.CountIncludePad != 0 && a.Adaptive == 0) return (long)Padded(sd, a.ID, a.KD, a.PD) * Padded(sh, a.IH, a.KH, a.PH) * Padded(sw, a.IW, a.KW, a.PW);
        return (long)Inside(sd, Count(od, a.ID, a.OD, a.KD, a.Adaptive), a.ID) * Inside(sh, Count(oh, a.IH, a.OH, a.KH, a.Adaptive), a.IH)
            * Inside(sw, Count(ow, a.IW, a.OW, a.KW, a.Adaptive), a.IW);
    }

    /// <summary>dx[i] = the sum of g over the outputs whose window holds input i: those whose index is i (max) or each divided by its divisor (average).</summary>
    public static void Backward<T, TF>(Index1D i, ArrayView<T> g, ArrayView<long> idx, ArrayView<T> dx, PoolArgs a)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int inPlane = a.ID * a.IH * a.IW;
        int iw = i % a.IW, ih = i / a.IW % a.IH, id = i / (a.IW * a.IH) % a.ID, plane = i / inPlane;
        int flat = i - plane * inPlane, ob = plane * a.OD * a.OH * a.OW;
        int nd = Candidates(id, a.ID, a.OD, a.KD, a.Adaptive), nh = Candidates(ih, a.IH, a.OH, a.KH, a.Adaptive), nw = Candidates(iw, a.IW, a.OW, a.KW, a.Adaptive);
        T acc = f.Zero;
        for (int jd = 0; jd < nd; jd++)
        {
            int od = Candidate(id, jd, a.ID, a.OD, a.SD, a.PD, a.DD, a.Adaptive);
            if (od < 0) continue;
            for (int jh = 0; jh < nh; jh++)
            {
                int oh = Candidate(ih, jh, a.IH, a.OH, a.SH, a.PH, a.DH, a.Adaptive);
                if (oh < 0) continue;
                for (int jw = 0; jw < nw; jw++)
                {
                    int ow = Candidate(iw, jw, a.IW, a.OW, a.SW, a.PW, a.DW, a.Adaptive);
                    if (ow < 0) continue;
                    int q = ob + (od * a.OH + oh) * a.OW + ow;
                    if (a.Avg == 0) { if (idx[q] == flat) acc = f.Add(acc, g[q]); }
                    else acc = f.Add(acc, f.Div(g[q], f.FromLong(Divisor(a, od, oh, ow))));
                }
            }
        }
        dx[i] = acc;
    }
}

/// <summary>The typed kernels of <see cref="Pool"/> for one floating dtype.</summary>
public static class PoolKernels<T, TF> where T : unmanaged where TF : struct, IFloat<T>
{
    /// <summary>pool.forward: max (with indices) or average pooling, one thread per output.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<T>, ArrayView<long>, PoolArgs> Forward = new($"pool.forward.{Dt.Of<TF>()}", Pool.Forward<T, TF>);
    /// <summary>pool.backward: the input gradient of pooling, one thread per input.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<long>, ArrayView<T>, PoolArgs> Backward = new($"pool.backward.{Dt.Of<TF>()}", Pool.Backward<T, TF>);
}

/// <summary>Every kernel of the pool family, for <see cref="KernelCatalog"/>.</summary>
public static class PoolKernels
{
    /// <summary>The forward and backward kernels in float32 and float64.</summary>
    public static IReadOnlyList<GpuKernel> All { get; } =
        [PoolKernels<float, F32>.Forward, PoolKernels<float, F32>.Backward, PoolKernels<double, F64>.Forward, PoolKernels<double, F64>.Backward];
}
