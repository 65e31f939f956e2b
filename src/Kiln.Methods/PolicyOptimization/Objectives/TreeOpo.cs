namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// Tree-OPO ("Tree-OPO: Off-policy Monte Carlo Tree-Guided Advantage Optimization for Multistep
/// Reasoning", 2025): a GRPO group mixes completions started from different prefixes (nodes of a teacher's search
/// tree), so each completion's baseline is the Monte Carlo value of its own prefix, the mean reward of the group's
/// completions started from the same node, and A_i = (r_i − V̂(n_i)) / (std_group(r) + ε). With every completion
/// started from the root this is GRPO's advantage.
/// </summary>
public sealed class TreeOpo : IPolicyObjective
{
    /// <inheritdoc/>
    public string Name => "tree-opo";
    /// <summary>PPO's lower clip ε_low (default 0.2).</summary>
    public double ClipLow { get; init; } = 0.2;
    /// <summary>PPO's upper clip ε_high (default 0.2).</summary>
    public double ClipHigh { get; init; } = 0.2;
    /// <summary>Divide by the group's reward std (default true, as GRPO).</summary>
    public bool ScaleByStd { get; init; } = true;
    /// <summary>How the token losses become a scalar (default GRPO's sequence-then-batch mean).</summary>
    public TokenAggregation Aggregation { get; init; } = TokenAggregation.SequenceMeanTokenMean;

    /// <summary>
    /// The tree-structured advantages [B]: each row's reward minus the mean reward of the rows of its group that
    /// started from the same prefix node, over the group's population std (+ eps) when <paramref name="scaleByStd"/>.
    /// </summary>
    /// <param name="rewards">[B], groups of <paramref name="groupSize"/> contiguous rows.</param>
    /// <param name="groupSize">G ≥ 1 dividing B.</param>
    /// <param name="startNodes">The prefix node each row's completion started from (any ids; equal ids share a baseline), B of them.</param>
    /// <param name="scaleByStd">Divide by the group's std.</param>
    /// <param name="eps">Added to the std.</param>
    /// <exception cref="ArgumentException">Shapes or counts disagree.</exception>
    public static Tensor Advantages(Tensor rewards, int groupSize, IReadOnlyList<int> startNodes, bool scaleByStd = true, double eps = 1e-6)
    {
        ArgumentNullException.ThrowIfNull(rewards); ArgumentNullException.ThrowIfNull(startNodes);
        if (rewards.Rank != 1 || groupSize < 1 || rewards.Shape[0] % groupSize != 0)
            throw new ArgumentException($"tree-opo: rewards {rewards.Shape} must be [B] with B a multiple of the group size {groupSize}", nameof(rewards));
        int b = rewards.Shape[0];
        if (startNodes.Count != b) throw new ArgumentException($"tree-opo: {startNodes.Count} start nodes for {b} rows", nameof(startNodes));
        var r = rewards.ToDoubleArray();
        var adv = new double[b];
        for (int g0 = 0; g0 < b; g0 += groupSize)
        {
            var rows = Enumerable.Range(g0, groupSize).ToArray();
            double mean = rows.Average(i => r[i]);
            double std = Math.Sqrt(rows.Average(i => (r[i] - mean) * (r[i] - mean)));
            foreach (int i in rows)
            {
                double baseline = rows.Where(j => startNodes[j] == startNodes[i]).Average(j => r[j]);
                adv[i] = scaleByStd ? (r[i] - baseline) / (std + eps) : r[i] - baseline;
            }
        }
        return Tensor.FromArray(adv, new Shape(b)).To(rewards.DType).To(rewards.Device);
    }

    /// <summary>The loss with every completion started from the root (GRPO's clipped surrogate).</summary>
    public Tensor Loss(PolicyBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return Loss(batch, new int[batch.Rows]);
    }

    /// <summary>The clipped surrogate with the tree advantages of <paramref name="startNodes"/> (one prefix node per row).</summary>
    public Tensor Loss(PolicyBatch batch, IReadOnlyList<int> startNodes)
    {
        ArgumentNullException.ThrowIfNull(batch);
        batch.Validate();
        var (loss, _) = TokenTerms.ClippedSurrogate(batch.LogProbs, batch.OldLogProbs,
            Advantages(batch.Rewards, batch.GroupSize, startNodes, ScaleByStd), ClipLow, ClipHigh);
        return PolicyMath.Aggregate(loss, batch.Mask, Aggregation);
    }
}
