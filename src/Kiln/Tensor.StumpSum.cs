using Kiln.Kernels;

namespace Kiln;

public sealed partial class Tensor
{
    /// <summary>
    /// The exact distribution of a sum of independent discrete variables with integer supports, one per group:
    /// for each row b of <paramref name="probs"/> (Float64 [batch, regions]), group g holds the regions
    /// <c>groupStarts[g] .. groupStarts[g+1]-1</c> and takes the value <c>values[r]</c> (&gt;= 0) with probability
    /// probs[b, r]. Returns Float64 [batch, width] with pdf[b, t] = P[S_b = t], where width = 1 + the sum over groups of
    /// the group's largest value. This is the dynamic program of deterministic smoothing for decision stump ensembles
    /// (each group is a meta-stump). Not differentiable.
    /// </summary>
    /// <exception cref="ShapeMismatchException"><paramref name="probs"/> is not [batch, values.Length].</exception>
    /// <exception cref="ArgumentException">The group layout is malformed or a value is negative.</exception>
    /// <exception cref="NotSupportedException"><paramref name="probs"/> is not Float64, or its device has no kernel.</exception>
    public static Tensor StumpSumPdf(Tensor probs, int[] groupStarts, int[] values)
    {
        int width = CheckStumpSum(probs, groupStarts, values, "stump_sum_pdf");
        var pdf = Empty([probs.Shape[0], width], DType.Float64, probs.Device);
        if (probs.Shape[0] > 0) probs.Backend.StumpSumPdf(probs.Detach().Contiguous(), groupStarts, values, pdf);
        return pdf;
    }

    /// <summary>
    /// tail[b] = P[S_b &gt; cuts[b]] for the sums of <see cref="StumpSumPdf"/>, without materializing the pdf:
    /// exactly 1 where cuts[b] &lt; 0 and exactly 0 where cuts[b] &gt;= width - 1. <paramref name="cuts"/> is Int64 [batch].
    /// Returns Float64 [batch].
    /// </summary>
    /// <exception cref="ShapeMismatchException">A shape does not fit.</exception>
    /// <exception cref="ArgumentException">The group layout is malformed, a value is negative, or cuts is not Int64 on probs' device.</exception>
    /// <exception cref="NotSupportedException"><paramref name="probs"/> is not Float64, or its device has no kernel.</exception>
    public static Tensor StumpSumTail(Tensor probs, int[] groupStarts, int[] values, Tensor cuts)
    {
        CheckStumpSum(probs, groupStarts, values, "stump_sum_tail");
        ArgumentNullException.ThrowIfNull(cuts);
        cuts.Storage.ThrowIfDisposed("stump_sum_tail");
        if (cuts.DType != DType.Int64) throw new ArgumentException($"stump_sum_tail: cuts must be Int64, not {cuts.DType}", nameof(cuts));
        Check.SameDevice(probs, cuts, "stump_sum_tail", nameof(cuts));
        if (cuts.Rank != 1 || cuts.Shape[0] != probs.Shape[0])
            throw new ShapeMismatchException("stump_sum_tail", nameof(cuts), new Shape(probs.Shape[0]), cuts.Shape, "one cut per row of probs");
        var tail = Empty([probs.Shape[0]], DType.Float64, probs.Device);
        if (probs.Shape[0] > 0) probs.Backend.StumpSumTail(probs.Detach().Contiguous(), groupStarts, values, cuts.Contiguous(), tail);
        return tail;
    }

    static int CheckStumpSum(Tensor probs, int[] groupStarts, int[] values, string op)
    {
        ArgumentNullException.ThrowIfNull(probs);
        ArgumentNullException.ThrowIfNull(groupStarts);
        ArgumentNullException.ThrowIfNull(values);
        probs.Storage.ThrowIfDisposed(op);
        if (probs.DType != DType.Float64)
            throw new NotSupportedException($"{op}: probs has dtype {probs.DType}; the distribution is computed in Float64 only (convert with .To(DType.Float64))");
        if (probs.Rank != 2 || probs.Shape[1] != values.Length)
            throw new ShapeMismatchException(op, nameof(probs), new Shape(probs.Rank == 2 ? probs.Shape[0] : 0, values.Length), probs.Shape, "probs must be [batch, regions] with one column per value");
        return Reference.StumpSumWidth(groupStarts, values);
    }
}
