namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// REDI stage 2 ("Harnessing Negative Signals: Reinforcement Distillation from Teacher Data for LLM
/// Reasoning", 2025): a reference-free objective over positive and negative traces,
/// L = −mean_{y⁺} log π(y⁺)/|y⁺| + α mean_{y⁻} log π(y⁻)/|y⁻|, with the negatives down-weighted (α &lt; 1) for stability.
/// A row is positive when its reward exceeds <see cref="RewardThreshold"/>; no reference log-probs are read.
/// </summary>
public sealed class Redi : IPolicyObjective
{
    /// <inheritdoc/>
    public string Name => "redi";
    /// <summary>The negative traces' weight α ≥ 0 (default 0.8, the paper's); 0 is SFT on the positives.</summary>
    public double NegativeWeight { get; init; } = 0.8;
    /// <summary>Rows with reward above this are positive traces (default 0.5, for 0/1 rewards).</summary>
    public double RewardThreshold { get; init; } = 0.5;

    /// <inheritdoc/>
    public Tensor Loss(PolicyBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        batch.Validate();
        if (!(NegativeWeight >= 0)) throw new ArgumentException($"redi: NegativeWeight must be ≥ 0, got {NegativeWeight}", nameof(NegativeWeight));
        var meanLogLik = PolicyMath.MaskedMean(batch.LogProbs, batch.Mask);
        var pos = (batch.Rewards > RewardThreshold).To(meanLogLik.DType);
        var neg = 1 - pos;
        return -(meanLogLik * pos).Sum() / pos.Sum().Clamp(min: 1) + NegativeWeight * (meanLogLik * neg).Sum() / neg.Sum().Clamp(min: 1);
    }
}
