namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// A batch of sampled completions in token form, the one input every policy objective reads. B = prompts × group size
/// rows, grouped contiguously (row i answers prompt i / <see cref="GroupSize"/>); T is the longest completion, padded,
/// with <see cref="Mask"/> marking the real completion tokens.
/// </summary>
public sealed record PolicyBatch
{
    /// <summary>log π_θ(y_t | s_t) of the policy being trained, [B, T], differentiable.</summary>
    public required Tensor LogProbs { get; init; }
    /// <summary>log π_old(y_t | s_t) of the policy that sampled the batch, [B, T], no gradient (equal to LogProbs' values on-policy).</summary>
    public required Tensor OldLogProbs { get; init; }
    /// <summary>log π_ref(y_t | s_t) of the frozen reference policy, [B, T]; null when the objective needs none.</summary>
    public Tensor? RefLogProbs { get; init; }
    /// <summary>The outcome reward of each completion, [B].</summary>
    public required Tensor Rewards { get; init; }
    /// <summary>1 on completion tokens and 0 on padding, [B, T], in the dtype of <see cref="LogProbs"/>.</summary>
    public required Tensor Mask { get; init; }
    /// <summary>Completions sampled per prompt (G ≥ 1); B must be a multiple of it.</summary>
    public required int GroupSize { get; init; }
    /// <summary>The policy's logits [B, T, V] (differentiable) for objectives that read the whole next-token distribution (entropy, distillation); null otherwise.</summary>
    public Tensor? Logits { get; init; }
    /// <summary>Per-step (process) rewards [B, T], zero off the mask; null when the task gives only outcome rewards.</summary>
    public Tensor? TokenRewards { get; init; }

    /// <summary>Rows B.</summary>
    public int Rows => LogProbs.Shape[0];
    /// <summary>Prompts B / G.</summary>
    public int Groups => Rows / GroupSize;

    /// <summary>Checks the shapes against each other; every objective calls it first.</summary>
    /// <exception cref="ArgumentException">A shape disagrees, naming the field and both shapes.</exception>
    public void Validate()
    {
        if (LogProbs.Rank != 2) throw new ArgumentException($"policy batch: LogProbs must be [B, T], got {LogProbs.Shape}", nameof(LogProbs));
        if (GroupSize < 1 || Rows % GroupSize != 0)
            throw new ArgumentException($"policy batch: GroupSize {GroupSize} must be positive and divide the {Rows} rows", nameof(GroupSize));
        Same(OldLogProbs, nameof(OldLogProbs)); Same(Mask, nameof(Mask));
        if (RefLogProbs is not null) Same(RefLogProbs, nameof(RefLogProbs));
        if (TokenRewards is not null) Same(TokenRewards, nameof(TokenRewards));
        if (Rewards.Rank != 1 || Rewards.Shape[0] != Rows)
            throw new ArgumentException($"policy batch: Rewards must be [{Rows}], got {Rewards.Shape}", nameof(Rewards));
        if (Logits is not null && (Logits.Rank != 3 || Logits.Shape[0] != Rows || Logits.Shape[1] != LogProbs.Shape[1]))
            throw new ArgumentException($"policy batch: Logits must be [{Rows}, {LogProbs.Shape[1]}, V], got {Logits.Shape}", nameof(Logits));
    }

    void Same(Tensor t, string name)
    {
        if (t.Shape != LogProbs.Shape)
            throw new ArgumentException($"policy batch: {name} must have LogProbs' shape {LogProbs.Shape}, got {t.Shape}", name);
    }
}

/// <summary>A policy objective: a scalar loss over a <see cref="PolicyBatch"/> whose gradient is the method's update direction.</summary>
/// <remarks>Implementations with a public parameterless constructor (the paper's default settings) are found by
/// <see cref="PolicyObjectives"/> and so by <c>kiln rl train --objective NAME</c>.</remarks>
public interface IPolicyObjective
{
    /// <summary>The objective's name on the command line (lower case, e.g. "grpo").</summary>
    string Name { get; }
    /// <summary>The loss to minimise (a scalar, differentiable through <see cref="PolicyBatch.LogProbs"/> and <see cref="PolicyBatch.Logits"/>).</summary>
    Tensor Loss(PolicyBatch batch);
}

/// <summary>The objectives of this assembly by name: every <see cref="IPolicyObjective"/> with a public parameterless constructor.</summary>
public static class PolicyObjectives
{
    static readonly Lazy<Dictionary<string, Func<IPolicyObjective>>> registry = new(() =>
    {
        var map = new Dictionary<string, Func<IPolicyObjective>>(StringComparer.OrdinalIgnoreCase);
        foreach (var type in typeof(IPolicyObjective).Assembly.GetTypes())
        {
            if (type.IsAbstract || !typeof(IPolicyObjective).IsAssignableFrom(type) || type.GetConstructor(Type.EmptyTypes) is null) continue;
            Func<IPolicyObjective> make = () => (IPolicyObjective)Activator.CreateInstance(type)!;
            var name = make().Name;
            if (!map.TryAdd(name, make)) throw new InvalidOperationException($"policy objectives: two objectives are named '{name}'");
        }
        return map;
    });

    /// <summary>The registered names, sorted.</summary>
    public static IReadOnlyList<string> Names => [.. registry.Value.Keys.Order(StringComparer.Ordinal)];

    /// <summary>A new instance of the objective named <paramref name="name"/> with its default settings.</summary>
    /// <exception cref="ArgumentException">No objective has that name; the message lists the names.</exception>
    public static IPolicyObjective Create(string name) =>
        registry.Value.TryGetValue(name, out var make) ? make()
        : throw new ArgumentException($"unknown objective '{name}'; known: {string.Join(", ", Names)}", nameof(name));
}

/// <summary>How a [B, T] token loss becomes a scalar (the normalisations that distinguish GRPO, DAPO and Dr. GRPO).</summary>
public enum TokenAggregation
{
    /// <summary>Mean over each sequence's tokens, then over sequences (GRPO).</summary>
    SequenceMeanTokenMean,
    /// <summary>Sum over all tokens divided by the number of tokens in the batch (DAPO's token-level mean).</summary>
    TokenMean,
    /// <summary>Sum over all tokens divided by B × T, a constant (Dr. GRPO: no length bias).</summary>
    TokenSumConstant,
}

/// <summary>Group statistics and token aggregation shared by the objectives.</summary>
public static class PolicyMath
{
    /// <summary>
    /// GRPO's group-relative advantage of each row: (r_i − mean_group(r)) / (std_group(r) + eps) when
    /// <paramref name="scaleByStd"/>, else r_i − mean_group(r) (Dr. GRPO). The std is the population std (correction 0). [B] → [B].
    /// </summary>
    public static Tensor GroupAdvantages(Tensor rewards, int groupSize, bool scaleByStd = true, double eps = 1e-6)
    {
        ArgumentNullException.ThrowIfNull(rewards);
        if (rewards.Rank != 1 || groupSize < 1 || rewards.Shape[0] % groupSize != 0)
            throw new ArgumentException($"group advantages: rewards {rewards.Shape} must be [B] with B a multiple of the group size {groupSize}", nameof(rewards));
        var r = rewards.Reshape(rewards.Shape[0] / groupSize, groupSize);
        var centred = r - r.Mean(1, keepDim: true);
        if (scaleByStd) centred = centred / (r.Std(1, keepDim: true, correction: 0) + eps);
        return centred.Reshape(rewards.Shape[0]);
    }

    /// <summary>Σ_t mask_t x_t over the last axis ([B, T] → [B]): a sequence's total under its mask.</summary>
    /// <exception cref="ArgumentException">The shapes differ.</exception>
    public static Tensor MaskedSum(Tensor x, Tensor mask)
    {
        ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(mask);
        if (x.Shape != mask.Shape) throw new ArgumentException($"masked sum: x {x.Shape} and mask {mask.Shape} differ", nameof(mask));
        return (x * mask).Sum(-1);
    }

    /// <summary>(Σ_t mask_t x_t) / max(1, Σ_t mask_t) over the last axis ([B, T] → [B]): a sequence's mean under its mask, 0 for an empty one.</summary>
    /// <exception cref="ArgumentException">The shapes differ.</exception>
    public static Tensor MaskedMean(Tensor x, Tensor mask) => MaskedSum(x, mask) / mask.Sum(-1).Clamp(min: 1);

    /// <summary>Reduces a [B, T] token loss under <paramref name="mask"/> to a scalar by <paramref name="mode"/>.</summary>
    public static Tensor Aggregate(Tensor tokenLoss, Tensor mask, TokenAggregation mode)
    {
        ArgumentNullException.ThrowIfNull(tokenLoss); ArgumentNullException.ThrowIfNull(mask);
        if (tokenLoss.Shape != mask.Shape)
            throw new ArgumentException($"aggregate: tokenLoss {tokenLoss.Shape} and mask {mask.Shape} differ", nameof(mask));
        var masked = tokenLoss * mask;
        return mode switch
        {
            TokenAggregation.SequenceMeanTokenMean => MaskedMean(tokenLoss, mask).Mean(),
            TokenAggregation.TokenMean => masked.Sum() / mask.Sum().Clamp(min: 1),
            TokenAggregation.TokenSumConstant => masked.Sum() / (double)Math.Max(1, mask.Shape.Numel),
            _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, "aggregate: unknown mode"),
        };
    }
}
