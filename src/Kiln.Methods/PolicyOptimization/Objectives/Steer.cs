namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// STEER (Hao et al., "Rethinking Entropy Interventions in RLVR: An Entropy Change Perspective", 2025): GRPO with each
/// token's loss weighted by λ_t = exp(−k |Ω_t|), where Ω_t = −η ρ_t A_t (1 − c_t) p_t (H_t + log p_t) is the first-order
/// entropy change of the token's update (its logit moved by η ρ A; c_t = 1 where PPO's clip stops the gradient), built
/// from the four factors the paper names: clipping state, advantage, token probability and token entropy.
/// </summary>
public sealed class Steer : TokenWeightedGrpo
{
    /// <inheritdoc/>
    public override string Name => "steer";
    /// <summary>The weight's sharpness k ≥ 0 (default 1); 0 gives unweighted GRPO.</summary>
    public double Sharpness { get; init; } = 1;
    /// <summary>The step size η the entropy change is estimated for (default 1: Ω in units of the learning rate).</summary>
    public double StepSize { get; init; } = 1;

    /// <summary>The estimated entropy change Ω of every token, [B, T], no gradient.</summary>
    /// <exception cref="ArgumentException">The batch has no <see cref="PolicyBatch.Logits"/>, or a setting is out of range.</exception>
    public Tensor EntropyChange(PolicyBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        batch.Validate();
        if (batch.Logits is null) throw new ArgumentException("steer: the batch needs Logits (Ω reads each token's entropy)", nameof(batch));
        if (!(StepSize > 0)) throw new ArgumentException($"steer: StepSize must be positive, got {StepSize}", nameof(StepSize));
        var lp = batch.LogProbs.Detach();
        var a = PolicyMath.GroupAdvantages(batch.Rewards, batch.GroupSize);
        var (_, clipped) = TokenTerms.ClippedSurrogate(lp, batch.OldLogProbs, a, ClipLow, ClipHigh);
        var ratio = (lp - batch.OldLogProbs).Exp();
        var s = TokenTerms.EntropyDiscriminator(lp, TokenTerms.Entropy(batch.Logits.Detach()));
        return -StepSize * ratio * a.Unsqueeze(1) * (1 - clipped) * s;
    }

    /// <summary>The token weights exp(−k |Ω|) in (0, 1], [B, T], no gradient.</summary>
    public Tensor Weights(PolicyBatch batch)
    {
        if (!(Sharpness >= 0)) throw new ArgumentException($"steer: Sharpness must be ≥ 0, got {Sharpness}", nameof(Sharpness));
        return (-Sharpness * EntropyChange(batch).Abs()).Exp();
    }

    /// <inheritdoc/>
    public override Tensor Loss(PolicyBatch batch)
    {
        return Surrogate(batch, Weights(batch));
    }
}
