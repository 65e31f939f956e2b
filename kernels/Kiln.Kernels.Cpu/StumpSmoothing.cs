using System.Buffers;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// The exact distribution of the integer sum of a stump ensemble's leaf levels under noise, the hot loop of
/// deterministic smoothing for decision stump ensembles: each group (a meta-stump with sorted thresholds) adds the
/// value of region k with probability upper[k-1] - upper[k], where upper[b, t] = P[x'_b &gt;= threshold t]. One row of
/// the dynamic program per input; each region is a shifted AXPY over the row (SIMD through TensorPrimitives), inputs
/// are split across cores.
/// Reference: <see cref="Reference.StumpSumPdf"/>, <see cref="Reference.StumpSumTail"/>.
/// </summary>
public static class StumpSmoothing
{
    /// <summary>
    /// pdf[b, t] = P[S_b = t] for t in [0, width) with width = <see cref="Reference.StumpSumWidth"/>; upper is row-major
    /// [batch, thresholds] from <paramref name="upperOffset"/>, pdf row-major [batch, width] from <paramref name="pdfOffset"/>.
    /// </summary>
    public static void SumPdf(int batch, double[] upper, int upperOffset, int[] groupStarts, int[] values, double[] pdf, int pdfOffset)
    {
        int width = Reference.StumpSumWidth(groupStarts, values);
        int thresholds = groupStarts[^1];
        Run(batch, values.Length, width, (b, row) =>
        {
            var src = Distribution(upper.AsSpan(upperOffset + b * thresholds, thresholds), groupStarts, values, width, row);
            src.CopyTo(pdf.AsSpan(pdfOffset + b * width, width));
        });
    }

    /// <summary>
    /// tail[b] = P[S_b &gt; cuts[b]]: exactly 1 when the cut is below 0 and exactly 0 when it is at or above the
    /// largest value (an ensemble that can output only one class gives that class probability 1).
    /// </summary>
    public static void SumTail(int batch, double[] upper, int upperOffset, int[] groupStarts, int[] values, long[] cuts, int cutsOffset, double[] tail, int tailOffset)
    {
        int width = Reference.StumpSumWidth(groupStarts, values);
        int thresholds = groupStarts[^1];
        Run(batch, values.Length, width, (b, row) =>
        {
            long cut = cuts[cutsOffset + b];
            double p;
            if (cut < 0) p = 1.0;
            else if (cut >= width - 1) p = 0.0;
            else
            {
                var src = Distribution(upper.AsSpan(upperOffset + b * thresholds, thresholds), groupStarts, values, width, row);
                p = TP.Sum<double>(src[(int)(cut + 1)..]);
            }
            tail[tailOffset + b] = p;
        });
    }

    // Runs body(b, scratch) for every input, with two pdf rows of scratch per worker.
    static void Run(int batch, int regions, int width, Action<int, double[]> body)
    {
        long work = (long)batch * Math.Max(regions, 1) * width / 2;
        Strided.Parallel(batch, work, (s, e) =>
        {
            var row = ArrayPool<double>.Shared.Rent(2 * width);
            try { for (int b = s; b < e; b++) body(b, row); }
            finally { ArrayPool<double>.Shared.Return(row); }
        });
    }

    // The DP for one input in the two halves of `scratch`; returns the final pdf row (width long).
    static Span<double> Distribution(ReadOnlySpan<double> p, int[] groupStarts, int[] values, int width, double[] scratch)
    {
        var a = scratch.AsSpan(0, width);
        var c = scratch.AsSpan(width, width);
        a[0] = 1.0;
        int used = 1;
        for (int g = 0; g + 1 < groupStarts.Length; g++)
        {
            int first = groupStarts[g], n = groupStarts[g + 1] - first, max = 0;
            for (int k = 0; k <= n; k++) max = Math.Max(max, values[first + g + k]);
            int next = used + max;
            var dst = c[..next];
            dst.Clear();
            var cur = a[..used];
            double hi = 1.0;
            for (int k = 0; k <= n; k++)
            {
                double lo = k == n ? 0.0 : p[first + k];
                double pr = Math.Max(0.0, hi - lo);
                hi = lo;
                if (pr == 0) continue;
                var slot = dst.Slice(values[first + g + k], used);
                TP.MultiplyAdd(cur, pr, slot, slot);
            }
            var t = a; a = c; c = t;
            used = next;
        }
        return a[..used];
    }
}
