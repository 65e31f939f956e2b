namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// Per-completion statistics the advantage rules condition on (CANON's entropy/length split, the unlikeliness rank,
/// LENS's confidence), read from a <see cref="PolicyBatch"/>'s mask, log-probs and logits. All are detached, [B].
/// </summary>
public static class ResponseMetrics
{
    /// <summary>Completion lengths Σ_t mask_t, [B].</summary>
    public static Tensor Length(Tensor mask)
    {
        ArgumentNullException.ThrowIfNull(mask);
        if (mask.Rank != 2) throw new ArgumentException($"response metrics: mask must be [B, T], got {mask.Shape}", nameof(mask));
        return mask.Detach().Sum(1);
    }

    /// <summary>Length-normalised log-likelihood (1/|y|) Σ_t mask_t log π(y_t), [B]; 0 for an empty completion.</summary>
    public static Tensor MeanLogLikelihood(Tensor logProbs, Tensor mask)
    {
        ArgumentNullException.ThrowIfNull(logProbs);
        var length = Length(mask);
        if (logProbs.Shape != mask.Shape)
            throw new ArgumentException($"response metrics: logProbs {logProbs.Shape} and mask {mask.Shape} differ", nameof(logProbs));
        return PolicyMath.MaskedMean(logProbs.Detach(), mask.Detach());
    }

    /// <summary>
    /// Mean token entropy of each completion, (1/|y|) Σ_t mask_t H(π(· | s_t)), [B]: exact from
    /// <see cref="PolicyBatch.Logits"/> when the batch has them, else its one-sample estimate −(1/|y|) Σ_t log π_old(y_t).
    /// </summary>
    public static Tensor MeanEntropy(PolicyBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        batch.Validate();
        if (batch.Logits is null) return -MeanLogLikelihood(batch.OldLogProbs, batch.Mask);
        return MeanLogLikelihood(TokenTerms.Entropy(batch.Logits.Detach()), batch.Mask);
    }
}

/// <summary>Host-side group arithmetic in float64 for the advantage rules (B is small: one value per completion).</summary>
static class GroupHost
{
    /// <summary>A [B] or [B, T] host array as a tensor of <paramref name="like"/>'s dtype and device.</summary>
    public static Tensor ToTensor(double[] values, Tensor like, params int[] shape) =>
        Tensor.FromArray(values, new Shape(shape)).To(like.DType).To(like.Device);

    /// <summary>Checks a [B] tensor against the group size and returns it on the host.</summary>
    public static double[] Rows(Tensor t, int groupSize, string name)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        if (t.Rank != 1 || groupSize < 1 || t.Shape[0] % groupSize != 0)
            throw new ArgumentException($"{name} {t.Shape} must be [B] with B a multiple of the group size {groupSize}", name);
        return t.ToDoubleArray();
    }

    /// <summary>
    /// The rank of each row inside its group by ascending <paramref name="key"/> (0 = smallest), ties broken by row
    /// order so ranks are a permutation of 0..G−1.
    /// </summary>
    public static int[] Ranks(double[] key, int groupSize)
    {
        var ranks = new int[key.Length];
        for (int g = 0; g < key.Length; g += groupSize)
        {
            var order = Enumerable.Range(g, groupSize).OrderBy(i => key[i]).ThenBy(i => i).ToArray();
            for (int k = 0; k < groupSize; k++) ranks[order[k]] = k;
        }
        return ranks;
    }

    /// <summary>The checked argument value, or an exception naming it and the allowed range.</summary>
    public static double InRange(double value, double lo, double hi, string name, bool loOpen = false) =>
        double.IsFinite(value) && (loOpen ? value > lo : value >= lo) && value <= hi ? value
        : throw new ArgumentOutOfRangeException(name, value, $"{name} must lie in {(loOpen ? "(" : "[")}{lo}, {hi}]");
}
