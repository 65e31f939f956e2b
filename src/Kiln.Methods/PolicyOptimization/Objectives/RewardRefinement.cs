namespace Kiln.Methods.PolicyOptimization;

/// <summary>How <see cref="RewardRefinement"/> reshapes process rewards.</summary>
public enum RefinementMode
{
    /// <summary>Clip: r_t ← min(r_t − η, 0), so every step's reward is ≤ 0 and returns are bounded above by 0.</summary>
    Clip,
    /// <summary>Delta: r_t ← r_t − r_{t+1} (the last step keeps r_T), so the return-to-go telescopes to r_t.</summary>
    Delta,
    /// <summary>Clip, then Delta of the clipped rewards.</summary>
    ClipDelta,
}

/// <summary>
/// Reward refinement ("On Designing Effective RL Reward at Training Time for LLM Reasoning"): Clip and Delta reshape
/// PRM rewards so that a sum-form return cannot be inflated by repeating steps; the token advantage is the refined
/// return-to-go plus the outcome reward minus the group's mean total (<see cref="ProcessReturns.TokenAdvantages"/>).
/// </summary>
public sealed class RewardRefinement : AdvantageObjective
{
    readonly double threshold = 0.5;

    /// <inheritdoc/>
    public override string Name => "reward-refinement";

    /// <summary>The refinement (Clip by default).</summary>
    public RefinementMode Mode { get; init; } = RefinementMode.Clip;

    /// <summary>Clip's threshold η (0.5, the midpoint of a PRM's probability scale); finite.</summary>
    /// <exception cref="ArgumentOutOfRangeException">η is not finite.</exception>
    public double Threshold { get => threshold; init => threshold = GroupHost.InRange(value, double.MinValue, double.MaxValue, nameof(Threshold)); }

    /// <summary>The refined process rewards of <paramref name="tokenRewards"/> [B, T] under <paramref name="mask"/>, [B, T].</summary>
    /// <exception cref="ArgumentException">The shapes differ or are not [B, T].</exception>
    /// <exception cref="ArgumentOutOfRangeException">η is not finite or the mode is unknown.</exception>
    public static Tensor Refine(Tensor tokenRewards, Tensor mask, RefinementMode mode, double threshold)
    {
        GroupHost.InRange(threshold, double.MinValue, double.MaxValue, nameof(threshold));
        if (!Enum.IsDefined(mode)) throw new ArgumentOutOfRangeException(nameof(mode), mode, "reward refinement: unknown mode");
        return ProcessReturns.Map(tokenRewards, mask, steps =>
        {
            if (mode != RefinementMode.Delta) steps = [.. steps.Select(x => Math.Min(x - threshold, 0))];
            if (mode == RefinementMode.Clip) return steps;
            return [.. steps.Select((x, k) => k + 1 < steps.Length ? x - steps[k + 1] : x)];
        });
    }

    /// <summary>Token advantages of the refined sum-form returns from <see cref="PolicyBatch.TokenRewards"/>, [B, T].</summary>
    /// <exception cref="ArgumentException">The batch has no process rewards.</exception>
    protected override Tensor ComputeAdvantages(PolicyBatch batch)
    {
        var refined = Refine(ProcessReturns.Required(batch, Name), batch.Mask, Mode, Threshold);
        return ProcessReturns.TokenAdvantages(ProcessReturns.ReturnToGo(refined, batch.Mask), batch.Rewards.Detach(), batch.Mask, batch.GroupSize);
    }
}
