namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// LLDS (Deng et al., "On GRPO Collapse in Search-R1: The Lazy Likelihood-Displacement Death Spiral", 2025): GRPO plus a
/// likelihood-preserving penalty α Σ_t max(0, log π_old(y_t) − log π_θ(y_t)) that is on only for completions in the
/// preserving set (advantage ≥ 0) whose total log-likelihood fell (Σ_t log π_θ &lt; Σ_t log π_old, the response-level
/// gate), and inside them only on the tokens whose likelihood fell.
/// </summary>
public sealed class Llds : TokenWeightedGrpo
{
    /// <inheritdoc/>
    public override string Name => "llds";
    /// <summary>The penalty's weight α ≥ 0 (default 0.1).</summary>
    public double Alpha { get; init; } = 0.1;

    /// <summary>The likelihood-preserving penalty (without α), averaged over the batch's completion tokens; zero, with zero gradient, when no gated likelihood fell.</summary>
    public static Tensor Penalty(PolicyBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        batch.Validate();
        var drop = batch.OldLogProbs - batch.LogProbs;
        var preserve = PolicyMath.GroupAdvantages(batch.Rewards, batch.GroupSize) >= 0;
        var fell = PolicyMath.MaskedSum(drop.Detach(), batch.Mask) > 0;
        var gate = (preserve & fell).To(batch.LogProbs.DType).Unsqueeze(1);
        return PolicyMath.Aggregate(drop.Relu() * gate, batch.Mask, TokenAggregation.TokenMean);
    }

    /// <inheritdoc/>
    public override Tensor Loss(PolicyBatch batch)
    {
        if (!(Alpha >= 0)) throw new ArgumentException($"llds: Alpha must be ≥ 0, got {Alpha}", nameof(Alpha));
        var penalty = Penalty(batch);
        return Surrogate(batch) + Alpha * penalty;
    }
}
