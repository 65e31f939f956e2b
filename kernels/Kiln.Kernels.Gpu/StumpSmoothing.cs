using ILGPU;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// The stump-sum dynamic program of deterministic smoothing, one meta-stump per launch: every (row, t) of the next pdf
/// gathers sum_k p_k cur[t - v_k] with k ascending, the order in which the reference scatters, so results match it
/// bit for bit. Reference: <see cref="Reference.StumpSumPdf"/>, <see cref="Reference.StumpSumTail"/>.
/// </summary>
public static class StumpSmoothing
{
    /// <summary>One meta-stump of the program.</summary>
    public struct Step
    {
        /// <summary>Columns of upper (all thresholds) and the offset of upper's first element.</summary>
        public int Thresholds, UpperOff;
        /// <summary>The group's first threshold, its threshold count, and its index (values start at First + Group).</summary>
        public int First, Count, Group;
        /// <summary>Row length of the pdf buffers, and the support used before this group.</summary>
        public int Width, Used;
    }

    /// <summary>next[b, t] = sum_k p_bk cur[b, t - values[First + Group + k]] over the live support; one thread per (b, t).</summary>
    public static void PdfStep(Index1D e, ArrayView<double> upper, ArrayView<int> values, ArrayView<double> cur, ArrayView<double> next, Step s)
    {
        int b = e / s.Width, t = e % s.Width, u = s.UpperOff + b * s.Thresholds + s.First;
        double acc = 0;
        for (int k = 0; k <= s.Count; k++)
        {
            int src = t - values[s.First + s.Group + k];
            if (src < 0 || src >= s.Used) continue;
            double hi = k == 0 ? 1.0 : upper[u + k - 1], lo = k == s.Count ? 0.0 : upper[u + k];
            double p = hi - lo > 0 ? hi - lo : 0.0;
            acc += p * cur[b * s.Width + src];
        }
        next[e] = acc;
    }

    /// <summary>pdf[b, :] = delta_0.</summary>
    public static void PdfInit(Index1D e, ArrayView<double> pdf, int width) => pdf[e] = e % width == 0 ? 1.0 : 0.0;

    /// <summary>tail[b] = sum of pdf[b, t] for t &gt; cuts[b] in ascending t (1 when the cut is negative); one thread per row.</summary>
    public static void Tail(Index1D b, ArrayView<double> pdf, int width, ArrayView<long> cuts, int cutOff, ArrayView<double> tail, int tailOff)
    {
        long cut = cuts[cutOff + b];
        double sum = 0;
        if (cut < 0) sum = 1.0;
        else for (long t = cut + 1; t < width; t++) sum += pdf[b * width + (int)t];
        tail[tailOff + b] = sum;
    }
}

/// <summary>The typed kernels of <see cref="StumpSmoothing"/>.</summary>
public static class StumpKernels
{
    /// <summary>stump.pdf_init: the point mass at 0.</summary>
    public static readonly Kernel<ArrayView<double>, int> PdfInit = new("stump.pdf_init.f64", StumpSmoothing.PdfInit);
    /// <summary>stump.pdf_step: one meta-stump.</summary>
    public static readonly Kernel<ArrayView<double>, ArrayView<int>, ArrayView<double>, ArrayView<double>, StumpSmoothing.Step> PdfStep = new("stump.pdf_step.f64", StumpSmoothing.PdfStep);
    /// <summary>stump.tail: P[S &gt; cut].</summary>
    public static readonly Kernel<ArrayView<double>, int, ArrayView<long>, int, ArrayView<double>, int> Tail = new("stump.tail.f64", StumpSmoothing.Tail);
}
