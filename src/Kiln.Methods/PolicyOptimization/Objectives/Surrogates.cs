namespace Kiln.Methods.PolicyOptimization;

/// <summary>The surrogate losses the objectives are built from: the score function (REINFORCE); PPO's clipped ratio is <see cref="TokenTerms.ClippedSurrogate"/>.</summary>
public static class Surrogates
{
    /// <summary>
    /// The score-function surrogate −(1/B) Σ_i w_i Σ_t log π(y_it | s_it): its gradient is −(1/B) Σ_i w_i ∇ log π(y_i),
    /// the REINFORCE estimate with per-sequence weights <paramref name="weights"/> [B] (detached).
    /// </summary>
    /// <exception cref="ArgumentException">The weights are not [B].</exception>
    public static Tensor ScoreFunction(PolicyBatch batch, Tensor weights)
    {
        ArgumentNullException.ThrowIfNull(batch); ArgumentNullException.ThrowIfNull(weights);
        if (weights.Rank != 1 || weights.Shape[0] != batch.Rows)
            throw new ArgumentException($"score function: weights must be [{batch.Rows}], got {weights.Shape}", nameof(weights));
        return -(weights.Detach() * PolicyMath.MaskedSum(batch.LogProbs, batch.Mask)).Mean();
    }

    /// <summary>1 where a reward counts as correct (r &gt; 0), else 0, [B]: the binary split of positive and negative samples.</summary>
    public static Tensor Correct(Tensor rewards)
    {
        ArgumentNullException.ThrowIfNull(rewards);
        return (rewards > 0).To(rewards.DType);
    }
}
