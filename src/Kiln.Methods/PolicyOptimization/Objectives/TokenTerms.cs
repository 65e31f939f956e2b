namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// Token-level terms several objectives of this folder share: the next-token entropy and its first-order change under
/// a logit step (entropy dynamics, STEER, the trainer's entropy, CANON's metric), the PPO/GRPO clipped surrogate (GRPO,
/// DAPO, Dr. GRPO, every <see cref="AdvantageObjective"/>, entropy clipping, STEER, LLDS, Tree-OPO), the
/// pairwise logistic loss (Ra-DPO, the general preference model) and the exponential tilt of logits (AlignDistil's
/// teacher, controlled decoding's sampler).
/// </summary>
public static class TokenTerms
{
    /// <summary>Shannon entropy H(softmax(z)) = −Σ_k p_k log p_k over the last axis: [..., V] → [...].</summary>
    public static Tensor Entropy(Tensor logits)
    {
        ArgumentNullException.ThrowIfNull(logits);
        if (logits.Rank < 1) throw new ArgumentException($"entropy: logits must have a vocabulary axis, got {logits.Shape}", nameof(logits));
        var logp = logits.LogSoftmax(-1);
        return -(logp.Exp() * logp).Sum(-1);
    }

    /// <summary>
    /// The entropy discriminator S* = p_y (H + log p_y) of a sampled token: a step ε on its logit alone changes the
    /// entropy by −ε S* + O(ε²). Shapes broadcast (log p_y and H are typically both [B, T]).
    /// </summary>
    public static Tensor EntropyDiscriminator(Tensor logProbs, Tensor entropy)
    {
        ArgumentNullException.ThrowIfNull(logProbs); ArgumentNullException.ThrowIfNull(entropy);
        return logProbs.Exp() * (entropy + logProbs);
    }

    /// <summary>
    /// The policy-weighted discriminator baseline E_p[S*] = Σ_k p_k² (H + log p_k) over the last axis, [..., V] → [...]:
    /// a policy-gradient step η A (e_y − p) on the logits changes the entropy by −η A (S*_y − E_p[S*]) to first order.
    /// </summary>
    public static Tensor DiscriminatorBaseline(Tensor logits)
    {
        ArgumentNullException.ThrowIfNull(logits);
        var logp = logits.LogSoftmax(-1);
        var p = logp.Exp();
        var h = -(p * logp).Sum(-1, keepDim: true);
        return (p * p * (h + logp)).Sum(-1);
    }

    /// <summary>
    /// First-order entropy change of softmax(z) under a logit step dz: −Σ_k p_k (H + log p_k) dz_k = −Cov_p(log p, dz),
    /// over the last axis ([..., V] and [..., V] → [...]).
    /// </summary>
    /// <exception cref="ArgumentException">The shapes differ.</exception>
    public static Tensor FirstOrderEntropyChange(Tensor logits, Tensor logitStep)
    {
        ArgumentNullException.ThrowIfNull(logits); ArgumentNullException.ThrowIfNull(logitStep);
        if (logits.Shape != logitStep.Shape)
            throw new ArgumentException($"first-order entropy change: logitStep {logitStep.Shape} must have logits' shape {logits.Shape}", nameof(logitStep));
        var logp = logits.LogSoftmax(-1);
        var p = logp.Exp();
        var h = -(p * logp).Sum(-1, keepDim: true);
        return -(p * (h + logp) * logitStep).Sum(-1);
    }

    /// <summary>
    /// The PPO/GRPO clipped surrogate per token, −min(ρ A, clip(ρ, 1 − clipLow, 1 + clipHigh) A) with ρ = exp(log π − log π_old),
    /// and the tokens where the clip is active (gradient zero): A &gt; 0 with ρ &gt; 1 + clipHigh, or A &lt; 0 with ρ &lt; 1 − clipLow.
    /// </summary>
    /// <param name="logProbs">log π_θ(y_t), [B, T], differentiable.</param>
    /// <param name="oldLogProbs">log π_old(y_t), [B, T].</param>
    /// <param name="advantages">[B] (one per sequence) or [B, T] (one per token).</param>
    /// <param name="clipLow">ε_low ≥ 0.</param>
    /// <param name="clipHigh">ε_high ≥ 0.</param>
    /// <param name="mask">Optional [B, T] completion mask: off it the ratio is 1 (so padding with any log-prob stays finite) and loss and indicator are 0.</param>
    /// <returns>The token loss [B, T] and the clipped indicator [B, T] (1 where clipped) in the log-probs' dtype.</returns>
    /// <exception cref="ArgumentException">A clip range is out of range, or the advantages or mask do not fit the log-probs.</exception>
    public static (Tensor Loss, Tensor Clipped) ClippedSurrogate(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, double clipLow, double clipHigh, Tensor? mask = null)
    {
        ArgumentNullException.ThrowIfNull(logProbs); ArgumentNullException.ThrowIfNull(oldLogProbs); ArgumentNullException.ThrowIfNull(advantages);
        if (!(clipLow >= 0) || !(clipHigh >= 0) || clipLow >= 1)
            throw new ArgumentException($"clipped surrogate: need 0 ≤ clipLow < 1 and clipHigh ≥ 0, got clipLow {clipLow}, clipHigh {clipHigh}", nameof(clipLow));
        var a = advantages.Rank == 1 ? advantages.Unsqueeze(1) : advantages;
        if (a.Shape[0] != logProbs.Shape[0] || (a.Rank == 2 && a.Shape[1] != 1 && a.Shape[1] != logProbs.Shape[1]))
            throw new ArgumentException($"clipped surrogate: advantages {advantages.Shape} must be [B] or [B, T] for log-probs {logProbs.Shape}", nameof(advantages));
        if (mask is not null && mask.Shape != logProbs.Shape)
            throw new ArgumentException($"clipped surrogate: mask {mask.Shape} must have the log-probs' shape {logProbs.Shape}", nameof(mask));
        a = a.Detach();
        var logRatio = logProbs - oldLogProbs.Detach();
        var ratio = (mask is null ? logRatio : logRatio * mask).Exp();
        var loss = -Tensor.Minimum(ratio * a, ratio.Clamp(1 - clipLow, 1 + clipHigh) * a);
        var clipped = (((a > 0) & (ratio > 1 + clipHigh)) | ((a < 0) & (ratio < 1 - clipLow))).To(logProbs.DType);
        return mask is null ? (loss, clipped) : (loss * mask, clipped * mask);
    }

    /// <summary>GRPO's clipped-surrogate token loss [B, T] of a batch: <see cref="ClippedSurrogate"/> with the group-normalised advantages.</summary>
    public static Tensor GrpoSurrogate(PolicyBatch batch, double clipLow, double clipHigh)
    {
        ArgumentNullException.ThrowIfNull(batch);
        batch.Validate();
        return ClippedSurrogate(batch.LogProbs, batch.OldLogProbs, PolicyMath.GroupAdvantages(batch.Rewards, batch.GroupSize), clipLow, clipHigh, batch.Mask).Loss;
    }

    /// <summary>The pairwise logistic (Bradley–Terry) loss −log σ(margin) = softplus(−margin), elementwise.</summary>
    public static Tensor PairwiseLogistic(Tensor margin)
    {
        ArgumentNullException.ThrowIfNull(margin);
        return (-margin).Softplus();
    }

    /// <summary>
    /// The exponential tilt of a distribution in logit space: <paramref name="logits"/> + coefficient × <paramref name="direction"/>.
    /// softmax of it is the maximiser of E_q[direction] − (1/coefficient) KL(q ‖ softmax(logits)) over each row.
    /// </summary>
    /// <param name="logits">Base logits [..., V].</param>
    /// <param name="direction">The per-token score to tilt by, broadcastable to the logits.</param>
    /// <param name="coefficient">A scalar or a tensor broadcastable to the logits (one coefficient per position with a trailing 1).</param>
    public static Tensor Tilt(Tensor logits, Tensor direction, Tensor coefficient)
    {
        ArgumentNullException.ThrowIfNull(logits); ArgumentNullException.ThrowIfNull(direction); ArgumentNullException.ThrowIfNull(coefficient);
        return logits + coefficient * direction;
    }
}
