namespace Kiln.Methods.PolicyOptimization;

/// <summary>The per-completion metric CANON splits a group by.</summary>
public enum CanonMetric
{
    /// <summary>Mean token entropy (<see cref="ResponseMetrics.MeanEntropy"/>).</summary>
    Entropy,
    /// <summary>Completion length (<see cref="ResponseMetrics.Length"/>).</summary>
    Length,
}

/// <summary>
/// Conditional Advantage Estimation (CANON): a prompt's G completions are sorted by a metric and split into a lower
/// half (the ⌊G/2⌋ smallest) and an upper half; completion i in half C, with C' the other half, gets the inter-group
/// advantage r_i − mean(C') and the intra-group advantage r_i − mean(C), mixed as λ·inter + (1 − λ)·intra and divided
/// by a constant scale (no std normalisation).
/// </summary>
public sealed class Canon : AdvantageObjective
{
    readonly double lambda = 0.8, scale = 1;

    /// <inheritdoc/>
    public override string Name => "canon";

    /// <summary>The metric the groups are split by (entropy by default).</summary>
    public CanonMetric Metric { get; init; } = CanonMetric.Entropy;

    /// <summary>The inter-group weight λ ∈ [0, 1] (0.8: leaning on the metric trend; for even G, λ = 1/2 is Dr. GRPO).</summary>
    /// <exception cref="ArgumentOutOfRangeException">λ is outside [0, 1].</exception>
    public double Lambda { get => lambda; init => lambda = GroupHost.InRange(value, 0, 1, nameof(Lambda)); }

    /// <summary>The constant the advantages are divided by (the authors' code uses e.g. the maximum length); positive.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The scale is not positive and finite.</exception>
    public double Scale { get => scale; init => scale = GroupHost.InRange(value, 0, double.MaxValue, nameof(Scale), loOpen: true); }

    /// <summary>
    /// The inter- and intra-group advantages of each row, [B] each. <paramref name="metric"/> [B] orders each group
    /// (ties by row order); groups need at least two completions so both halves are non-empty.
    /// </summary>
    /// <exception cref="ArgumentException">Shapes disagree or the group size is below 2.</exception>
    public static (Tensor Inter, Tensor Intra) Split(Tensor rewards, Tensor metric, int groupSize)
    {
        if (groupSize < 2) throw new ArgumentException($"canon: groupSize {groupSize} must be at least 2 to split a group in halves", nameof(groupSize));
        var r = GroupHost.Rows(rewards, groupSize, nameof(rewards));
        var key = GroupHost.Rows(metric, groupSize, nameof(metric));
        if (key.Length != r.Length) throw new ArgumentException($"canon: metric {metric.Shape} and rewards {rewards.Shape} differ", nameof(metric));
        var ranks = GroupHost.Ranks(key, groupSize);
        int lowerSize = groupSize / 2;
        var inter = new double[r.Length]; var intra = new double[r.Length];
        for (int g = 0; g < r.Length; g += groupSize)
        {
            double lowerSum = 0, upperSum = 0;
            for (int i = g; i < g + groupSize; i++)
                if (ranks[i] < lowerSize) lowerSum += r[i]; else upperSum += r[i];
            double lowerMean = lowerSum / lowerSize, upperMean = upperSum / (groupSize - lowerSize);
            for (int i = g; i < g + groupSize; i++)
            {
                bool lower = ranks[i] < lowerSize;
                inter[i] = r[i] - (lower ? upperMean : lowerMean);
                intra[i] = r[i] - (lower ? lowerMean : upperMean);
            }
        }
        return (GroupHost.ToTensor(inter, rewards, r.Length), GroupHost.ToTensor(intra, rewards, r.Length));
    }

    /// <summary>(λ·inter + (1 − λ)·intra) / scale per completion, split by <see cref="Metric"/>, [B].</summary>
    protected override Tensor ComputeAdvantages(PolicyBatch batch)
    {
        var metric = Metric == CanonMetric.Entropy ? ResponseMetrics.MeanEntropy(batch) : ResponseMetrics.Length(batch.Mask);
        var (inter, intra) = Split(batch.Rewards.Detach(), metric, batch.GroupSize);
        return (inter * Lambda + intra * (1 - Lambda)) / Scale;
    }
}
