namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// Tapered off-policy REINFORCE (Le Roux et al. 2025): with A_i = R_i − c (c the baseline) and the sequence ratio
/// ρ_i = π(y_i) / μ(y_i) of the trained policy π to the sampling policy μ, samples with A_i ≥ 0 get the plain SFT-like
/// gradient A_i ∇ log π(y_i) and samples with A_i &lt; 0 get sg(clip(ρ_i, 0, 1)) A_i ∇ log π(y_i);
/// L = −(1/B) Σ_i w_i Σ_t log π(y_it | s_it). Binary rewards are mapped to the paper's ±1 (<see cref="SignedRewards"/>).
/// </summary>
public sealed class Topr : IPolicyObjective
{
    /// <inheritdoc/>
    public string Name => "topr";
    /// <summary>The baseline c subtracted from every reward (it sets the effective mix of positive and negative weight).</summary>
    public double Baseline { get; init; }
    /// <summary>Map rewards r to 2r − 1 first (0/1 exact-match rewards become ±1).</summary>
    public bool SignedRewards { get; init; } = true;

    /// <summary>
    /// The share of the total weight Σ|w| that goes to positive samples on-policy, with ±1 rewards, baseline c and a raw
    /// positive fraction p: p(1 − c) / (1 + (1 − 2p) c).
    /// </summary>
    public static double PositiveWeightFraction(double p, double c) => p * (1 - c) / (1 + (1 - 2 * p) * c);

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The baseline is not finite.</exception>
    public Tensor Loss(PolicyBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        batch.Validate();
        if (!double.IsFinite(Baseline)) throw new ArgumentException($"topr: the baseline must be finite, got {Baseline}", nameof(Baseline));
        var r = SignedRewards ? batch.Rewards * 2 - 1 : batch.Rewards;
        var a = r - Baseline;
        var ratio = ((batch.LogProbs - batch.OldLogProbs) * batch.Mask).Sum(1).Detach().Exp().Clamp(0, 1);
        var weights = Tensor.Where(a >= 0, a, ratio * a);
        return Surrogates.ScoreFunction(batch, weights);
    }
}
