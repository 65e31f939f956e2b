namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// LENS ("Don't Waste Mistakes"): GRPO whose incorrect completions are penalised by their confidence c = π(y)
/// (length-normalised, exp of the mean token log-likelihood under the sampling policy): r ← r − λ c / (1 − c). The
/// penalty is the policy-gradient form of the likelihood objective log(1 − π(y)) on mistakes,
/// E_{y∼π}[∇ log(1 − π(y))] = E_{y∼π}[−π(y)/(1 − π(y)) ∇ log π(y)], so all-incorrect groups, which GRPO wastes,
/// still teach whenever their confidences differ.
/// </summary>
public sealed class ConfidenceReweighting : AdvantageObjective
{
    readonly double strength = 1, maxConfidence = 0.99, threshold = 0.5;

    /// <inheritdoc/>
    public override string Name => "lens";

    /// <summary>The penalty scale λ (1); non-negative; 0 is GRPO.</summary>
    /// <exception cref="ArgumentOutOfRangeException">λ is negative or not finite.</exception>
    public double Strength { get => strength; init => strength = GroupHost.InRange(value, 0, double.MaxValue, nameof(Strength)); }

    /// <summary>The confidence cap (0.99) that keeps c / (1 − c) finite; in (0, 1).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The cap is outside (0, 1).</exception>
    public double MaxConfidence
    {
        get => maxConfidence;
        init => maxConfidence = value < 1 ? GroupHost.InRange(value, 0, 1, nameof(MaxConfidence), loOpen: true)
            : throw new ArgumentOutOfRangeException(nameof(MaxConfidence), value, "MaxConfidence must lie in (0, 1)");
    }

    /// <summary>Rewards below this are mistakes (0.5, for 0/1 rewards); finite.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The threshold is not finite.</exception>
    public double Threshold { get => threshold; init => threshold = GroupHost.InRange(value, double.MinValue, double.MaxValue, nameof(Threshold)); }

    /// <summary>
    /// The length-normalised confidence exp((1/|y|) Σ_t m_t log π(y_t)) of each completion, [B] (1 for an empty one);
    /// clamped to 1, which float32 log-probs rounded just above 0 would otherwise exceed.
    /// </summary>
    public static Tensor Confidence(Tensor logProbs, Tensor mask) => ResponseMetrics.MeanLogLikelihood(logProbs, mask).Exp().Clamp(max: 1);

    /// <summary>The reshaped rewards: r_i − λ min(c_i, cap) / (1 − min(c_i, cap)) where r_i &lt; threshold, else r_i, [B].</summary>
    /// <exception cref="ArgumentException">The shapes differ or a confidence lies outside [0, 1].</exception>
    public Tensor Rewards(Tensor rewards, Tensor confidence)
    {
        ArgumentNullException.ThrowIfNull(rewards); ArgumentNullException.ThrowIfNull(confidence);
        if (rewards.Rank != 1 || rewards.Shape != confidence.Shape)
            throw new ArgumentException($"lens: rewards {rewards.Shape} and confidence {confidence.Shape} must be the same [B]", nameof(confidence));
        var r = rewards.ToDoubleArray(); var c = confidence.ToDoubleArray();
        int bad = Array.FindIndex(c, x => !(x >= 0 && x <= 1));
        if (bad >= 0) throw new ArgumentException($"lens: confidence[{bad}] = {c[bad]} must lie in [0, 1]", nameof(confidence));
        var shaped = r.Select((x, i) =>
        {
            double ci = Math.Min(c[i], MaxConfidence);
            return x < Threshold ? x - Strength * ci / (1 - ci) : x;
        }).ToArray();
        return GroupHost.ToTensor(shaped, rewards, r.Length);
    }

    /// <summary>GRPO's advantages of the confidence-penalised rewards, [B].</summary>
    protected override Tensor ComputeAdvantages(PolicyBatch batch)
    {
        var shaped = Rewards(batch.Rewards.Detach(), Confidence(batch.OldLogProbs, batch.Mask));
        return PolicyMath.GroupAdvantages(shaped, batch.GroupSize);
    }
}
