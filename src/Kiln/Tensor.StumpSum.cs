using Kiln.Kernels;

namespace Kiln;

public sealed partial class Tensor
{
    /// <summary>
    /// The exact distribution of the integer sum S of a decision-stump ensemble's leaf levels under input noise, the
    /// dynamic program of deterministic smoothing: <paramref name="upper"/> (Float64 [batch, thresholds]) holds
    /// P[x' &gt;= threshold] per input; meta-stump g owns the thresholds <c>groupStarts[g] .. groupStarts[g+1]-1</c>
    /// (sorted ascending) and falls in its region k with probability upper[k-1] - upper[k] (1 and 0 at the ends), adding
    /// <c>values[groupStarts[g] + g + k]</c> (&gt;= 0; values holds thresholds + groups entries). Meta-stumps are
    /// independent, so pdf_g[t] = sum_k p_gk pdf_{g-1}[t - values_gk]. Returns Float64 [batch, width] with
    /// pdf[b, t] = P[S_b = t], width = 1 + the sum over groups of the largest region value. Not differentiable.
    /// </summary>
    /// <exception cref="ShapeMismatchException"><paramref name="upper"/> is not [batch, thresholds].</exception>
    /// <exception cref="ArgumentException">The group layout is malformed or a value is negative.</exception>
    /// <exception cref="NotSupportedException"><paramref name="upper"/> is not Float64, or its device has no kernel.</exception>
    public static Tensor StumpSumPdf(Tensor upper, int[] groupStarts, int[] values)
    {
        int width = CheckStumpSum(upper, groupStarts, values, "stump_sum_pdf");
        var pdf = Empty([upper.Shape[0], width], DType.Float64, upper.Device);
        if (upper.Shape[0] > 0) upper.Backend.StumpSumPdf(upper.Detach().Contiguous(), groupStarts, values, pdf);
        return pdf;
    }

    /// <summary>
    /// tail[b] = P[S_b &gt; cuts[b]] for the sums of <see cref="StumpSumPdf"/>, without materializing the pdf:
    /// exactly 1 where cuts[b] &lt; 0 and exactly 0 where cuts[b] &gt;= width - 1. <paramref name="cuts"/> is Int64 [batch].
    /// Returns Float64 [batch].
    /// </summary>
    /// <exception cref="ShapeMismatchException">A shape does not fit.</exception>
    /// <exception cref="ArgumentException">The group layout is malformed, a value is negative, or cuts is not Int64 on upper's device.</exception>
    /// <exception cref="NotSupportedException"><paramref name="upper"/> is not Float64, or its device has no kernel.</exception>
    public static Tensor StumpSumTail(Tensor upper, int[] groupStarts, int[] values, Tensor cuts)
    {
        CheckStumpSum(upper, groupStarts, values, "stump_sum_tail");
        ArgumentNullException.ThrowIfNull(cuts);
        cuts.Storage.ThrowIfDisposed("stump_sum_tail");
        if (cuts.DType != DType.Int64) throw new ArgumentException($"stump_sum_tail: cuts must be Int64, not {cuts.DType}", nameof(cuts));
        Check.SameDevice(upper, cuts, "stump_sum_tail", nameof(cuts));
        if (cuts.Rank != 1 || cuts.Shape[0] != upper.Shape[0])
            throw new ShapeMismatchException("stump_sum_tail", nameof(cuts), new Shape(upper.Shape[0]), cuts.Shape, "one cut per row of upper");
        var tail = Empty([upper.Shape[0]], DType.Float64, upper.Device);
        if (upper.Shape[0] > 0) upper.Backend.StumpSumTail(upper.Detach().Contiguous(), groupStarts, values, cuts.Contiguous(), tail);
        return tail;
    }

    static int CheckStumpSum(Tensor upper, int[] groupStarts, int[] values, string op)
    {
        ArgumentNullException.ThrowIfNull(upper);
        ArgumentNullException.ThrowIfNull(groupStarts);
        ArgumentNullException.ThrowIfNull(values);
        upper.Storage.ThrowIfDisposed(op);
        if (upper.DType != DType.Float64)
            throw new NotSupportedException($"{op}: upper has dtype {upper.DType}; the distribution is computed in Float64 only (convert with .To(DType.Float64))");
        int width = Reference.StumpSumWidth(groupStarts, values);
        int thresholds = groupStarts[^1];
        if (upper.Rank != 2 || upper.Shape[1] != thresholds)
            throw new ShapeMismatchException(op, nameof(upper), new Shape(upper.Rank == 2 ? upper.Shape[0] : 0, thresholds), upper.Shape, "upper must be [batch, thresholds] with one column per threshold");
        return width;
    }
}
