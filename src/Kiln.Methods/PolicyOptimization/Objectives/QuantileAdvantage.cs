namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// Quantile Advantage Estimation (QAE): GRPO with the group mean baseline replaced by the group's K-quantile,
/// b = min{v : F̂(v) ≥ K} over the group's rewards (the non-interpolating empirical quantile), A_i = r_i − b, optionally
/// divided by the group's population std. For binary rewards with success rate p this is a two-regime gate: b = 0 when
/// p ≤ 1 − K (only successes move, A = +1) and b = 1 when p &gt; 1 − K (only failures move, A = −1).
/// </summary>
public sealed class QuantileAdvantage : AdvantageObjective
{
    readonly double k = 0.4, eps = 1e-6;

    /// <inheritdoc/>
    public override string Name => "qae";

    /// <summary>The quantile level K ∈ (0, 1] (0.4).</summary>
    /// <exception cref="ArgumentOutOfRangeException">K is outside (0, 1].</exception>
    public double K { get => k; init => k = GroupHost.InRange(value, 0, 1, nameof(K), loOpen: true); }

    /// <summary>Whether r − b is divided by the group's population std + <see cref="Eps"/> (true, as GRPO; it changes no sign or zero).</summary>
    public bool ScaleByStd { get; init; } = true;

    /// <summary>The std's stabiliser (1e-6, as <see cref="PolicyMath.GroupAdvantages"/>); non-negative.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Eps is negative or not finite.</exception>
    public double Eps { get => eps; init => eps = GroupHost.InRange(value, 0, double.MaxValue, nameof(Eps)); }

    /// <summary>Each row's group baseline b = min{v in the group : #(r ≤ v) / G ≥ K}, [B].</summary>
    /// <exception cref="ArgumentException">The rewards are not [B] with B a multiple of the group size.</exception>
    /// <exception cref="ArgumentOutOfRangeException">K is outside (0, 1].</exception>
    public static Tensor Baselines(Tensor rewards, int groupSize, double k)
    {
        GroupHost.InRange(k, 0, 1, nameof(k), loOpen: true);
        var r = GroupHost.Rows(rewards, groupSize, nameof(rewards));
        var b = new double[r.Length];
        for (int g = 0; g < r.Length; g += groupSize)
        {
            var sorted = r.AsSpan(g, groupSize).ToArray();
            Array.Sort(sorted);
            // The smallest j with j / G ≥ K, written as the definition so K·G never rounds past an integer.
            int j = 1;
            while ((double)j / groupSize < k) j++;
            Array.Fill(b, sorted[j - 1], g, groupSize);
        }
        return GroupHost.ToTensor(b, rewards, r.Length);
    }

    /// <summary>(r_i − b) / (std_group + eps) per completion (or r_i − b without <see cref="ScaleByStd"/>), [B].</summary>
    protected override Tensor ComputeAdvantages(PolicyBatch batch)
    {
        var r = batch.Rewards.Detach();
        var a = r - Baselines(r, batch.GroupSize, K);
        if (!ScaleByStd) return a;
        var std = r.Reshape(batch.Groups, batch.GroupSize).Std(1, keepDim: true, correction: 0) + Eps;
        return (a.Reshape(batch.Groups, batch.GroupSize) / std).Reshape(batch.Rows);
    }
}
