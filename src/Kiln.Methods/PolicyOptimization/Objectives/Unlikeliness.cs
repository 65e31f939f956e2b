namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// The unlikeliness reward ("Rewarding the Unlikely"): within a group, rank completions by length-normalised
/// log-likelihood under the sampling policy (rank 0 = least likely, G − 1 = most likely) and reshape
/// r_i ← r_i (1 − β rank_i / G) before GRPO's normalisation, so correct but unlikely proofs earn more and incorrect
/// (zero-reward) ones stay at zero.
/// </summary>
public sealed class Unlikeliness : AdvantageObjective
{
    readonly double beta = 0.25;

    /// <inheritdoc/>
    public override string Name => "unlikeliness";

    /// <summary>The rank penalty β ∈ [0, 1] (0.25); β = 0 is GRPO.</summary>
    /// <exception cref="ArgumentOutOfRangeException">β is outside [0, 1].</exception>
    public double Beta { get => beta; init => beta = GroupHost.InRange(value, 0, 1, nameof(Beta)); }

    /// <summary>
    /// The reshaped rewards r_i (1 − β rank_i / G), [B], ranking each group by <paramref name="likelihood"/> [B]
    /// ascending (ties by row order).
    /// </summary>
    /// <exception cref="ArgumentException">Shapes disagree with each other or with the group size.</exception>
    /// <exception cref="ArgumentOutOfRangeException">β is outside [0, 1].</exception>
    public static Tensor Rewards(Tensor rewards, Tensor likelihood, int groupSize, double beta)
    {
        GroupHost.InRange(beta, 0, 1, nameof(beta));
        var r = GroupHost.Rows(rewards, groupSize, nameof(rewards));
        var l = GroupHost.Rows(likelihood, groupSize, nameof(likelihood));
        if (l.Length != r.Length) throw new ArgumentException($"unlikeliness: likelihood {likelihood.Shape} and rewards {rewards.Shape} differ", nameof(likelihood));
        var rank = GroupHost.Ranks(l, groupSize);
        return GroupHost.ToTensor([.. r.Select((x, i) => x * (1 - beta * rank[i] / groupSize))], rewards, r.Length);
    }

    /// <summary>GRPO's advantages of the reshaped rewards, ranked by the old policy's mean token log-likelihood, [B].</summary>
    protected override Tensor ComputeAdvantages(PolicyBatch batch)
    {
        var likelihood = ResponseMetrics.MeanLogLikelihood(batch.OldLogProbs, batch.Mask);
        return PolicyMath.GroupAdvantages(Rewards(batch.Rewards.Detach(), likelihood, batch.GroupSize, Beta), batch.GroupSize);
    }
}
