namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// Controlled decoding (Mudgal et al., "Controlled Decoding from Language Models", 2024): a prefix scorer V(x, y_&lt;t)
/// estimates the reward of continuing a prefix under the base model p; tokenwise sampling draws from
/// π(z | s) ∝ p(z | s) exp(λ V([s, z])), the maximiser of E_q[V] − (1/λ) KL(q ‖ p); the blockwise variant samples K
/// blocks from p and keeps the one V scores highest. V is learned off-policy by regressing every prefix on the
/// completed sequence's reward (CD-FUDGE).
/// </summary>
public static class ControlledDecoding
{
    /// <summary>log π(z | s) = log softmax(log p(z | s) + λ V([s, z])) over the last axis ([..., V] each).</summary>
    /// <param name="baseLogProbs">The base model's next-token log-probs (or logits), [..., V].</param>
    /// <param name="values">V of each one-token extension, [..., V].</param>
    /// <param name="lambda">The control strength λ (0 is the base model).</param>
    /// <exception cref="ArgumentException">The shapes differ or λ is not finite.</exception>
    public static Tensor TokenwiseLogProbs(Tensor baseLogProbs, Tensor values, double lambda)
    {
        ArgumentNullException.ThrowIfNull(baseLogProbs); ArgumentNullException.ThrowIfNull(values);
        if (values.Shape != baseLogProbs.Shape) throw new ArgumentException($"controlled decoding: values {values.Shape} must match the log-probs {baseLogProbs.Shape}", nameof(values));
        if (!double.IsFinite(lambda)) throw new ArgumentException($"controlled decoding: lambda must be finite, got {lambda}", nameof(lambda));
        return TokenTerms.Tilt(baseLogProbs, values, Tensor.Scalar(lambda, baseLogProbs.DType, baseLogProbs.Device)).LogSoftmax(-1);
    }

    /// <summary>CD's value backup E_p[V([s, z])] over the last axis: the expected reward of a prefix from its extensions', [..., V] → [...].</summary>
    public static Tensor ExpectedValue(Tensor baseLogProbs, Tensor values)
    {
        ArgumentNullException.ThrowIfNull(baseLogProbs); ArgumentNullException.ThrowIfNull(values);
        return (baseLogProbs.Exp() * values).Sum(-1);
    }

    /// <summary>
    /// The soft value backup (1/λ) log E_p[exp(λ V([s, z]))] over the last axis ([..., V] → [...], λ ≠ 0); with it in
    /// place of V the tokenwise sampler's sequence distribution is exactly p(y) exp(λ r(y)) / Z.
    /// </summary>
    /// <exception cref="ArgumentException">λ is zero or not finite.</exception>
    public static Tensor SoftValue(Tensor baseLogProbs, Tensor values, double lambda)
    {
        ArgumentNullException.ThrowIfNull(baseLogProbs); ArgumentNullException.ThrowIfNull(values);
        if (lambda == 0 || !double.IsFinite(lambda)) throw new ArgumentException($"controlled decoding: the soft value needs a finite non-zero lambda, got {lambda}", nameof(lambda));
        return (baseLogProbs + lambda * values).LogSumExp(-1) / lambda;
    }

    /// <summary>The blockwise rule: the index of the highest-scoring of K candidate blocks ([K] prefix-scorer values).</summary>
    /// <exception cref="ArgumentException">The scores are not a non-empty vector.</exception>
    public static int BestOfK(Tensor blockValues)
    {
        ArgumentNullException.ThrowIfNull(blockValues);
        if (blockValues.Rank != 1 || blockValues.Shape[0] == 0) throw new ArgumentException($"controlled decoding: block values must be a non-empty [K], got {blockValues.Shape}", nameof(blockValues));
        var v = blockValues.ToDoubleArray();
        int best = 0;
        for (int k = 1; k < v.Length; k++) if (v[k] > v[best]) best = k;
        return best;
    }

    /// <summary>
    /// CD-FUDGE's prefix-scorer loss: the mean over completion tokens of (V(x, y_≤t) − r(x, y))², every prefix regressed
    /// on its sequence's reward (an unbiased target for E[r | prefix] under the sampling policy). [B, T] values, [B] rewards, [B, T] mask.
    /// </summary>
    /// <exception cref="ArgumentException">The shapes disagree.</exception>
    public static Tensor PrefixScorerLoss(Tensor values, Tensor rewards, Tensor mask)
    {
        ArgumentNullException.ThrowIfNull(values); ArgumentNullException.ThrowIfNull(rewards); ArgumentNullException.ThrowIfNull(mask);
        if (values.Rank != 2 || rewards.Rank != 1 || rewards.Shape[0] != values.Shape[0])
            throw new ArgumentException($"controlled decoding: values {values.Shape} must be [B, T] and rewards {rewards.Shape} [B]", nameof(rewards));
        var err = values - rewards.Unsqueeze(1);
        return PolicyMath.Aggregate(err * err, mask, TokenAggregation.TokenMean);
    }
}
