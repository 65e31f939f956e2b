namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// GRPO (Shao et al. 2024, DeepSeekMath): group-normalised advantages A_i = (r_i − mean) / (std + eps), PPO's clipped
/// ratio per token, and β·k3 KL to the reference, aggregated by <see cref="Aggregation"/> (mean over each sequence's
/// tokens, then over sequences):
/// L = agg_t[ −min(ρ_t A_i, clip(ρ_t, 1 − ε_low, 1 + ε_high) A_i) + β k3_t ].
/// </summary>
public class Grpo : IPolicyObjective
{
    /// <summary>GRPO with the paper's settings (ε = 0.2, β = 0.04, std-normalised advantages, sequence-mean token-mean).</summary>
    public Grpo() : this("grpo") { }

    /// <summary>A variant named <paramref name="name"/>; derived objectives set their own defaults.</summary>
    protected Grpo(string name) => Name = name;

    /// <inheritdoc/>
    public string Name { get; }
    /// <summary>Lower clip range ε_low (ratio floor 1 − ε_low).</summary>
    public double ClipLow { get; init; } = 0.2;
    /// <summary>Upper clip range ε_high (ratio ceiling 1 + ε_high).</summary>
    public double ClipHigh { get; init; } = 0.2;
    /// <summary>Weight β of the k3 KL to the reference; 0 needs no reference log-probs.</summary>
    public double Beta { get; init; } = 0.04;
    /// <summary>Divide the centred rewards by the group's std (GRPO) or not (Dr. GRPO).</summary>
    public bool ScaleByStd { get; init; } = true;
    /// <summary>How the token losses become a scalar.</summary>
    public TokenAggregation Aggregation { get; init; } = TokenAggregation.SequenceMeanTokenMean;

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">β &gt; 0 and the batch has no reference log-probs, or β is negative.</exception>
    public Tensor Loss(PolicyBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        batch.Validate();
        if (!(Beta >= 0)) throw new ArgumentException($"{Name}: beta must be non-negative, got {Beta}", nameof(Beta));
        var tokens = TokenTerms.ClippedSurrogate(batch.LogProbs, batch.OldLogProbs,
            PolicyMath.GroupAdvantages(batch.Rewards, batch.GroupSize, ScaleByStd), ClipLow, ClipHigh, batch.Mask).Loss;
        if (Beta > 0)
        {
            var reference = batch.RefLogProbs ?? throw new ArgumentException($"{Name}: beta {Beta} needs the batch's RefLogProbs", nameof(batch));
            tokens = tokens + KlEstimators.Token(KlEstimator.K3, batch.LogProbs, reference, batch.Mask) * Beta;
        }
        return PolicyMath.Aggregate(tokens, batch.Mask, Aggregation);
    }
}

/// <summary>
/// Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training"): GRPO without the two biases: advantages are not
/// divided by the group std, and token losses are summed and divided by a constant (B × T) instead of each sequence's
/// length; no KL term (β = 0), as in the paper.
/// </summary>
public sealed class DrGrpo : Grpo
{
    /// <summary>Dr. GRPO with the paper's settings.</summary>
    public DrGrpo() : base("dr-grpo")
    {
        ScaleByStd = false;
        Aggregation = TokenAggregation.TokenSumConstant;
        Beta = 0;
    }
}
