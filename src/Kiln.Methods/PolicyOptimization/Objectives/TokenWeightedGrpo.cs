namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// The base of the GRPO variants that reweight or mask tokens or add a term: GRPO's clipped surrogate with the
/// group-normalised advantages, each token's loss times a weight the variant computes, aggregated by
/// <see cref="Aggregation"/>.
/// </summary>
public abstract class TokenWeightedGrpo : IPolicyObjective
{
    /// <inheritdoc/>
    public abstract string Name { get; }
    /// <summary>PPO's lower clip ε_low (default 0.2).</summary>
    public double ClipLow { get; init; } = 0.2;
    /// <summary>PPO's upper clip ε_high (default 0.2).</summary>
    public double ClipHigh { get; init; } = 0.2;
    /// <summary>How the token losses become a scalar (default GRPO's sequence-then-batch mean).</summary>
    public TokenAggregation Aggregation { get; init; } = TokenAggregation.SequenceMeanTokenMean;

    /// <inheritdoc/>
    public abstract Tensor Loss(PolicyBatch batch);

    /// <summary>The aggregated GRPO surrogate, each token's loss multiplied by <paramref name="tokenWeights"/> [B, T] when given.</summary>
    protected Tensor Surrogate(PolicyBatch batch, Tensor? tokenWeights = null)
    {
        var loss = TokenTerms.GrpoSurrogate(batch, ClipLow, ClipHigh);
        return PolicyMath.Aggregate(tokenWeights is null ? loss : loss * tokenWeights, batch.Mask, Aggregation);
    }
}
