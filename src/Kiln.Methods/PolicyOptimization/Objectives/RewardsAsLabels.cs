using Kiln.NN;

namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// REAL ("Rewards as Labels"): RLVR as binary classification. Each completion's score is the scaled, length-normalised
/// log-ratio s_i = β (1/|y_i|) Σ_t (log π_θ − log π_old) and its verifiable reward y_i ∈ [0, 1] is the label; the loss is
/// the binary cross-entropy of σ(s_i) against y_i, averaged over completions. Its gradient is
/// Σ_i w_i ∂s_i/∂θ / B with w_i = σ(s_i) − y_i ∈ (−1, 1), increasing in s_i: a completion already pushed far in its
/// label's direction stops pulling, the classification view's built-in trust region.
/// </summary>
public sealed class RewardsAsLabels : IPolicyObjective
{
    readonly double beta = 1;

    /// <inheritdoc/>
    public string Name => "real";

    /// <summary>The score scale β (1); positive.</summary>
    /// <exception cref="ArgumentOutOfRangeException">β is not positive and finite.</exception>
    public double Beta { get => beta; init => beta = GroupHost.InRange(value, 0, double.MaxValue, nameof(Beta), loOpen: true); }

    /// <summary>The scores s_i = β (1/|y_i|) Σ_t m_t (log π_θ − log π_old), [B], differentiable through the batch's log-probs.</summary>
    public static Tensor Scores(PolicyBatch batch, double beta)
    {
        ArgumentNullException.ThrowIfNull(batch);
        batch.Validate();
        GroupHost.InRange(beta, 0, double.MaxValue, nameof(beta), loOpen: true);
        return PolicyMath.MaskedMean(batch.LogProbs - batch.OldLogProbs.Detach(), batch.Mask) * beta;
    }

    /// <summary>The per-completion gradient weights ∂BCE/∂s = σ(s) − y, [B].</summary>
    /// <exception cref="ArgumentException">The shapes differ.</exception>
    public static Tensor GradientWeights(Tensor scores, Tensor labels)
    {
        ArgumentNullException.ThrowIfNull(scores); ArgumentNullException.ThrowIfNull(labels);
        if (scores.Shape != labels.Shape) throw new ArgumentException($"real: scores {scores.Shape} and labels {labels.Shape} differ", nameof(labels));
        return scores.Detach().Sigmoid() - labels.Detach();
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">A reward lies outside [0, 1] (rewards are the labels).</exception>
    public Tensor Loss(PolicyBatch batch)
    {
        var scores = Scores(batch, Beta);
        var labels = batch.Rewards.Detach();
        var r = labels.ToDoubleArray();
        int bad = Array.FindIndex(r, x => !(x >= 0 && x <= 1));
        if (bad >= 0) throw new ArgumentException($"real: rewards are the labels and must lie in [0, 1]; Rewards[{bad}] = {r[bad]}", nameof(batch));
        return Losses.BinaryCrossEntropyWithLogits(scores, labels);
    }
}
