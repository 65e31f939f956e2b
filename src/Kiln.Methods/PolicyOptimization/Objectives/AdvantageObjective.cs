namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// The PPO/GRPO clipped surrogate −agg_t min(ρ_t A, clip(ρ_t, 1 − ε, 1 + ε) A) with ρ_t = π_θ / π_old, whose advantage
/// A is the method: the advantage-estimator and reward-shaping papers differ only in <see cref="Advantages"/>.
/// </summary>
public abstract class AdvantageObjective : IPolicyObjective
{
    readonly double clipEpsilon = 0.2;

    /// <inheritdoc/>
    public abstract string Name { get; }

    /// <summary>The ratio clip ε (0.2, GRPO's default); must lie in (0, 1) (the ratio floor 1 − ε stays positive).</summary>
    /// <exception cref="ArgumentOutOfRangeException">ε is not in (0, 1).</exception>
    public double ClipEpsilon
    {
        get => clipEpsilon;
        init => clipEpsilon = value > 0 && value < 1 ? value
            : throw new ArgumentOutOfRangeException(nameof(ClipEpsilon), value, "clip epsilon must lie in (0, 1)");
    }

    /// <summary>How the token surrogate becomes a scalar (GRPO's per-sequence mean by default).</summary>
    public TokenAggregation Aggregation { get; init; } = TokenAggregation.SequenceMeanTokenMean;

    /// <summary>The method's advantages: [B] (one per completion, broadcast over its tokens) or [B, T] (per token); constants, no gradient.</summary>
    /// <exception cref="ArgumentException">The batch's shapes disagree, or it lacks a field the method needs.</exception>
    public Tensor Advantages(PolicyBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        batch.Validate();
        return ComputeAdvantages(batch).Detach();
    }

    /// <summary>The method's advantage rule on a validated batch.</summary>
    protected abstract Tensor ComputeAdvantages(PolicyBatch batch);

    /// <inheritdoc/>
    public Tensor Loss(PolicyBatch batch)
    {
        var (tokens, _) = TokenTerms.ClippedSurrogate(batch.LogProbs, batch.OldLogProbs, Advantages(batch), ClipEpsilon, ClipEpsilon, batch.Mask);
        return PolicyMath.Aggregate(tokens, batch.Mask, Aggregation);
    }
}
