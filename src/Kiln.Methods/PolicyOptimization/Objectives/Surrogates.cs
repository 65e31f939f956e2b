namespace Kiln.Methods.PolicyOptimization;

/// <summary>The surrogate losses the objectives are built from: score-function (REINFORCE) and PPO's clipped ratio.</summary>
public static class Surrogates
{
    /// <summary>Σ_t log π(y_t | s_t) of each row over the mask, [B].</summary>
    public static Tensor SequenceLogProbs(PolicyBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return (batch.LogProbs * batch.Mask).Sum(1);
    }

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
        return -(weights.Detach() * SequenceLogProbs(batch)).Mean();
    }

    /// <summary>
    /// PPO's clipped token loss −min(ρ_t A, clip(ρ_t, 1 − <paramref name="clipLow"/>, 1 + <paramref name="clipHigh"/>) A) with
    /// ρ_t = exp(log π − log π_old) and the sequence advantage A = <paramref name="advantages"/>[i] (detached), [B, T], zero off the mask.
    /// </summary>
    /// <exception cref="ArgumentException">The advantages are not [B], or a clip range is negative.</exception>
    public static Tensor ClippedTokens(PolicyBatch batch, Tensor advantages, double clipLow, double clipHigh)
    {
        ArgumentNullException.ThrowIfNull(batch); ArgumentNullException.ThrowIfNull(advantages);
        if (advantages.Rank != 1 || advantages.Shape[0] != batch.Rows)
            throw new ArgumentException($"clipped surrogate: advantages must be [{batch.Rows}], got {advantages.Shape}", nameof(advantages));
        if (!(clipLow >= 0 && clipLow <= 1) || !(clipHigh >= 0) || double.IsInfinity(clipHigh))
            throw new ArgumentException($"clipped surrogate: clip range ({clipLow}, {clipHigh}) must have 0 ≤ low ≤ 1 and a finite high ≥ 0", nameof(clipLow));
        var a = advantages.Detach().Unsqueeze(1);
        var ratio = ((batch.LogProbs - batch.OldLogProbs.Detach()) * batch.Mask).Exp();
        var loss = -Tensor.Minimum(ratio * a, ratio.Clamp(1 - clipLow, 1 + clipHigh) * a);
        return loss * batch.Mask;
    }

    /// <summary>1 where a reward counts as correct (r &gt; 0), else 0, [B]: the binary split of positive and negative samples.</summary>
    public static Tensor Correct(Tensor rewards)
    {
        ArgumentNullException.ThrowIfNull(rewards);
        return (rewards > 0).To(rewards.DType);
    }
}
