namespace Kiln.Methods.PolicyOptimization;

/// <summary>Which baseline the entropy-discriminator clip subtracts from each token's discriminator S*.</summary>
public enum DiscriminatorCentering
{
    /// <summary>Clip_B: the mean of S* over the batch's completion tokens.</summary>
    Batch,
    /// <summary>Clip_V: the token's own policy-weighted baseline E_p[S*] = Σ_k p_k² (H + log p_k), the exact first-order term of a GRPO step.</summary>
    Vocabulary,
}

/// <summary>
/// Entropy-discriminator clipping (Wang et al., "On the Entropy Dynamics in Reinforcement Fine-Tuning of Large Language
/// Models", 2026): GRPO whose update skips the tokens predicted to shrink the entropy most. A GRPO step changes token
/// t's entropy by about −η A (S*_t − baseline) with S* = p_y (H + log p_y); the score c_t = A (S*_t − baseline) is
/// standardised over the batch's completion tokens and tokens with c_t − mean(c) &gt; <see cref="Threshold"/> · std(c)
/// are masked out of the surrogate (they still count in the normaliser, as PPO-clipped tokens do).
/// </summary>
public sealed class EntropyClip : TokenWeightedGrpo
{
    /// <inheritdoc/>
    public override string Name => "entropy-clip";
    /// <summary>The baseline subtracted from S* (default <see cref="DiscriminatorCentering.Batch"/>).</summary>
    public DiscriminatorCentering Centering { get; init; } = DiscriminatorCentering.Batch;
    /// <summary>Tokens whose score exceeds the batch mean by more than this many standard deviations are dropped (default 2).</summary>
    public double Threshold { get; init; } = 2;

    /// <summary>1 on the tokens the update keeps and 0 on those clipped for their predicted entropy drop, [B, T], no gradient.</summary>
    /// <exception cref="ArgumentException">The batch has no <see cref="PolicyBatch.Logits"/> or a bad threshold.</exception>
    public Tensor KeepMask(PolicyBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        batch.Validate();
        if (batch.Logits is null) throw new ArgumentException("entropy-clip: the batch needs Logits (the discriminator reads the whole next-token distribution)", nameof(batch));
        if (!(Threshold >= 0)) throw new ArgumentException($"entropy-clip: Threshold must be ≥ 0, got {Threshold}", nameof(Threshold));
        var logits = batch.Logits.Detach();
        var lp = batch.LogProbs.Detach();
        var s = TokenTerms.EntropyDiscriminator(lp, TokenTerms.Entropy(logits));
        var mask = batch.Mask;
        var n = mask.Sum().Clamp(min: 1);
        var centred = Centering == DiscriminatorCentering.Vocabulary
            ? s - TokenTerms.DiscriminatorBaseline(logits)
            : s - (s * mask).Sum() / n;
        var c = centred * PolicyMath.GroupAdvantages(batch.Rewards, batch.GroupSize).Unsqueeze(1);
        var dev = c - (c * mask).Sum() / n;
        var std = ((dev * dev * mask).Sum() / n).Sqrt();
        return (dev <= std * Threshold).To(lp.DType);
    }

    /// <inheritdoc/>
    public override Tensor Loss(PolicyBatch batch)
    {
        return Surrogate(batch, KeepMask(batch));
    }
}
