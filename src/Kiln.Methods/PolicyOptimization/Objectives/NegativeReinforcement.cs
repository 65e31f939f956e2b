namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// Positive and negative sample reinforcement (Zhu et al. 2025, "The Surprising Effectiveness of Negative Reinforcement
/// in LLM Reasoning") with rewards ±1: L_PSR = −Σ_t log π(y_t | s_t) on correct samples, L_NSR = +Σ_t log π(y_t | s_t) on
/// incorrect ones, L = (1/B) Σ_i [λ_PSR 1[correct_i] L_PSR,i + λ_NSR 1[incorrect_i] L_NSR,i]; a sample is correct when its
/// reward is positive.
/// </summary>
public static class SampleReinforcement
{
    /// <summary>The loss with weights <paramref name="positive"/> (λ_PSR) and <paramref name="negative"/> (λ_NSR).</summary>
    /// <exception cref="ArgumentException">A weight is negative or not finite.</exception>
    public static Tensor Loss(PolicyBatch batch, double positive, double negative)
    {
        ArgumentNullException.ThrowIfNull(batch);
        batch.Validate();
        if (!(positive >= 0) || !(negative >= 0) || double.IsInfinity(positive) || double.IsInfinity(negative))
            throw new ArgumentException($"sample reinforcement: weights must be finite and non-negative, got PSR {positive}, NSR {negative}", nameof(positive));
        var c = Surrogates.Correct(batch.Rewards);
        return Surrogates.ScoreFunction(batch, c * positive - (1 - c) * negative);
    }
}

/// <summary>PSR: reinforce correct samples only, −Σ_t log π on each correct sample (pass@1 up, diversity down).</summary>
public sealed class Psr : IPolicyObjective
{
    /// <inheritdoc/>
    public string Name => "psr";
    /// <inheritdoc/>
    public Tensor Loss(PolicyBatch batch) => SampleReinforcement.Loss(batch, 1, 0);
}

/// <summary>
/// NSR: penalise incorrect samples only, +Σ_t log π on each. For p = softmax(z) and one incorrect token y₋ the gradient
/// on the logits is e_{y₋} − p, so a descent step lowers y₋ and raises every other token in proportion to p.
/// </summary>
public sealed class Nsr : IPolicyObjective
{
    /// <inheritdoc/>
    public string Name => "nsr";
    /// <inheritdoc/>
    public Tensor Loss(PolicyBatch batch) => SampleReinforcement.Loss(batch, 0, 1);
}

/// <summary>W-REINFORCE: λ L_PSR + L_NSR with the paper's λ = 0.1; λ = 1 is REINFORCE with ±1 rewards and no baseline.</summary>
public sealed class WReinforce : IPolicyObjective
{
    /// <inheritdoc/>
    public string Name => "w-reinforce";
    /// <summary>Weight λ of the positive samples.</summary>
    public double Lambda { get; init; } = 0.1;
    /// <inheritdoc/>
    public Tensor Loss(PolicyBatch batch) => SampleReinforcement.Loss(batch, Lambda, 1);
}
