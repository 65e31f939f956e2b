namespace Kiln.Methods.PolicyOptimization;

/// <summary>The per-token Monte-Carlo estimators of KL(π ‖ π_ref) from samples of π (Schulman, "Approximating KL divergence", 2020).</summary>
public enum KlEstimator
{
    /// <summary>k1 = −log r = log π − log π_ref: unbiased, high variance, can be negative.</summary>
    K1,
    /// <summary>k2 = (log r)² / 2: biased (its mean is an f-divergence that agrees with KL to second order), low variance, non-negative.</summary>
    K2,
    /// <summary>k3 = (r − 1) − log r: unbiased and non-negative (GRPO's KL term).</summary>
    K3,
}

/// <summary>KL estimators over token log-probabilities, with r = π_ref(y_t | s_t) / π(y_t | s_t) for y_t sampled from π.</summary>
public static class KlEstimators
{
    /// <summary>
    /// The estimate <paramref name="kind"/> at every token, [B, T], zero off <paramref name="mask"/>; differentiable
    /// through <paramref name="logProbs"/> (and <paramref name="refLogProbs"/> if it carries a gradient).
    /// </summary>
    /// <exception cref="ArgumentException">The three shapes differ.</exception>
    public static Tensor Token(KlEstimator kind, Tensor logProbs, Tensor refLogProbs, Tensor mask)
    {
        ArgumentNullException.ThrowIfNull(logProbs); ArgumentNullException.ThrowIfNull(refLogProbs); ArgumentNullException.ThrowIfNull(mask);
        if (refLogProbs.Shape != logProbs.Shape || mask.Shape != logProbs.Shape)
            throw new ArgumentException($"kl estimator: logProbs {logProbs.Shape}, refLogProbs {refLogProbs.Shape} and mask {mask.Shape} must have one shape", nameof(refLogProbs));
        // Padding may hold any value; zeroing log r there keeps exp finite.
        var logR = (refLogProbs - logProbs) * mask;
        var k = kind switch
        {
            KlEstimator.K1 => -logR,
            KlEstimator.K2 => logR * logR * 0.5,
            KlEstimator.K3 => logR.Exp() - 1 - logR,
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "kl estimator: unknown kind"),
        };
        return k * mask;
    }

    /// <summary>The estimate of each sequence's KL, Σ_t over the mask, [B].</summary>
    public static Tensor Sequence(KlEstimator kind, Tensor logProbs, Tensor refLogProbs, Tensor mask) => Token(kind, logProbs, refLogProbs, mask).Sum(1);
}
