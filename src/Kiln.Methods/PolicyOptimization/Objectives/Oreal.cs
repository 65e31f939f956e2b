namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// OREAL (Lyu et al. 2025, "Exploring the Limit of Outcome Reward for Learning Mathematical Reasoning") with binary
/// outcome rewards: behaviour cloning on a prompt's correct samples plus the reshaped negative term,
/// L = (1/P) Σ_prompts [ −(1/n₊) Σ_{i correct} ℓ̄_i + η (1/n₋) Σ_{i incorrect} ℓ̄_i ],
/// with ℓ̄_i = (1/T_i) Σ_t log π(y_it | s_it) and n₊, n₋ the prompt's correct and incorrect counts (a term with no samples is
/// zero). With p̂ = n₊/G this is the policy gradient with baseline p̂ divided by the Bernoulli variance p̂(1 − p̂): the
/// positives' weight 1/n₊ is BC on the best-of-N positives, and the negatives' reward is reshaped to −1/n₋ so both
/// halves stay consistent with that gradient. The token-level reward model that reweights tokens is not part of this
/// bench (every token has weight 1).
/// </summary>
public sealed class Oreal : IPolicyObjective
{
    /// <inheritdoc/>
    public string Name => "oreal";
    /// <summary>Weight η of the negative term (1: the gradient-consistent weight).</summary>
    public double NegativeWeight { get; init; } = 1;

    /// <summary>
    /// The distribution of the sample kept by best-of-N (the first correct one of N draws from π_ref, given that one is
    /// correct), which behaviour cloning fits: π_ref(y) 1[y correct] / p with p = Σ_correct π_ref, for every N.
    /// </summary>
    /// <exception cref="ArgumentException">The lengths differ, a probability is negative, or no action is correct with positive probability.</exception>
    public static double[] BestOfNTarget(IReadOnlyList<double> referenceProbs, IReadOnlyList<bool> correct)
    {
        ArgumentNullException.ThrowIfNull(referenceProbs); ArgumentNullException.ThrowIfNull(correct);
        if (referenceProbs.Count != correct.Count)
            throw new ArgumentException($"oreal: {referenceProbs.Count} probabilities and {correct.Count} correctness flags differ in length", nameof(correct));
        if (referenceProbs.Any(p => !(p >= 0)))
            throw new ArgumentException($"oreal: probabilities must be non-negative, got [{string.Join(", ", referenceProbs)}]", nameof(referenceProbs));
        double p = referenceProbs.Where((_, i) => correct[i]).Sum();
        if (!(p > 0)) throw new ArgumentException("oreal: no correct action has positive probability, so best-of-N keeps nothing", nameof(correct));
        return [.. referenceProbs.Select((q, i) => correct[i] ? q / p : 0)];
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The negative weight is negative or not finite.</exception>
    public Tensor Loss(PolicyBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        batch.Validate();
        if (!(NegativeWeight >= 0) || double.IsInfinity(NegativeWeight))
            throw new ArgumentException($"oreal: the negative weight must be finite and non-negative, got {NegativeWeight}", nameof(NegativeWeight));
        var c = Surrogates.Correct(batch.Rewards).Reshape(batch.Groups, batch.GroupSize);
        var wrong = 1 - c;
        var weights = c / c.Sum(1, keepDim: true).Clamp(min: 1) - wrong * NegativeWeight / wrong.Sum(1, keepDim: true).Clamp(min: 1);
        var meanLogProbs = PolicyMath.MaskedMean(batch.LogProbs, batch.Mask);
        return -(weights.Reshape(batch.Rows).Detach() * meanLogProbs).Sum() / batch.Groups;
    }
}
