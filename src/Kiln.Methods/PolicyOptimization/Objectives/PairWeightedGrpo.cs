namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// "Beyond Variance": positive–negative prompt pairing with Weighted GRPO. Each update pairs a hard-but-solvable prompt
/// (low success rate) with an easy-but-brittle one (high, not perfect; <see cref="Pair"/>); the batch holds the pair as
/// consecutive groups. Binary outcomes are standardised per group (population std), then the rare events are
/// amplified: successes on the pair's harder prompt by <see cref="PositiveWeight"/>, failures on its easier prompt by
/// <see cref="NegativeWeight"/>. The weights act after the standardisation because a per-group reweighting of binary
/// outcomes before it is affine in r and would cancel; weights 1 are GRPO.
/// </summary>
public sealed class PairWeightedGrpo : AdvantageObjective
{
    readonly double positiveWeight = 1.5, negativeWeight = 1.5, eps = 1e-6;

    /// <inheritdoc/>
    public override string Name => "pair-weighted-grpo";

    /// <summary>The weight of a success on the pair's harder prompt (1.5); positive.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The weight is not positive and finite.</exception>
    public double PositiveWeight { get => positiveWeight; init => positiveWeight = Weight(value, nameof(PositiveWeight)); }

    /// <summary>The weight of a failure on the pair's easier prompt (1.5); positive.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The weight is not positive and finite.</exception>
    public double NegativeWeight { get => negativeWeight; init => negativeWeight = Weight(value, nameof(NegativeWeight)); }

    /// <summary>The std's stabiliser (1e-6); non-negative.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Eps is negative or not finite.</exception>
    public double Eps { get => eps; init => eps = GroupHost.InRange(value, 0, double.MaxValue, nameof(Eps)); }

    static double Weight(double value, string name) => GroupHost.InRange(value, 0, double.MaxValue, name, loOpen: true);

    /// <summary>
    /// Pairs prompts for an update from their empirical success rates: prompts with 0 &lt; p &lt; 1, sorted by p, the
    /// hardest with the easiest, the second hardest with the second easiest, and so on (a middle one left over is unused).
    /// </summary>
    /// <exception cref="ArgumentException">A rate lies outside [0, 1].</exception>
    public static IReadOnlyList<(int Hard, int Easy)> Pair(IReadOnlyList<double> successRates)
    {
        ArgumentNullException.ThrowIfNull(successRates);
        for (int i = 0; i < successRates.Count; i++)
            if (!(successRates[i] >= 0 && successRates[i] <= 1))
                throw new ArgumentException($"pairing: successRates[{i}] = {successRates[i]} must lie in [0, 1]", nameof(successRates));
        var open = Enumerable.Range(0, successRates.Count).Where(i => successRates[i] > 0 && successRates[i] < 1)
            .OrderBy(i => successRates[i]).ThenBy(i => i).ToArray();
        return [.. Enumerable.Range(0, open.Length / 2).Select(k => (open[k], open[^(k + 1)]))];
    }

    /// <summary>
    /// The weighted standardised advantages, [B]: groups 2k and 2k + 1 form a pair (a last unpaired group keeps weight 1);
    /// a reward above 1/2 is a success.
    /// </summary>
    /// <exception cref="ArgumentException">The rewards are not [B] with B a multiple of the group size.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A weight is not positive or eps is negative.</exception>
    public static Tensor Advantages(Tensor rewards, int groupSize, double positiveWeight, double negativeWeight, double eps)
    {
        Weight(positiveWeight, nameof(positiveWeight)); Weight(negativeWeight, nameof(negativeWeight));
        GroupHost.InRange(eps, 0, double.MaxValue, nameof(eps));
        var r = GroupHost.Rows(rewards, groupSize, nameof(rewards));
        var a = PolicyMath.GroupAdvantages(rewards.Detach(), groupSize, eps: eps).ToDoubleArray();
        double Rate(int group) => r.AsSpan(group * groupSize, groupSize).ToArray().Count(x => x > 0.5) / (double)groupSize;
        for (int first = 0; first + 1 < r.Length / groupSize; first += 2)
        {
            int hard = Rate(first + 1) < Rate(first) ? first + 1 : first, easy = 2 * first + 1 - hard;
            for (int i = hard * groupSize; i < (hard + 1) * groupSize; i++) if (r[i] > 0.5) a[i] *= positiveWeight;
            for (int i = easy * groupSize; i < (easy + 1) * groupSize; i++) if (r[i] <= 0.5) a[i] *= negativeWeight;
        }
        return GroupHost.ToTensor(a, rewards, r.Length);
    }

    /// <inheritdoc/>
    protected override Tensor ComputeAdvantages(PolicyBatch batch)
    {
        return Advantages(batch.Rewards, batch.GroupSize, PositiveWeight, NegativeWeight, Eps);
    }
}
