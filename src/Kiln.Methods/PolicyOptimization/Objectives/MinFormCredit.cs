namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// PURE ("Stop Summation: Min-Form Credit Assignment"): the value of step t is the worst process reward still ahead,
/// min_{t' ≥ t} r_t', instead of a discounted sum, so a policy cannot raise its return by adding high-reward steps; the
/// token advantage adds the outcome reward and subtracts the group's mean total (<see cref="ProcessReturns.TokenAdvantages"/>).
/// </summary>
public sealed class MinFormCredit : AdvantageObjective
{
    readonly double temperature = 0.1;

    /// <inheritdoc/>
    public override string Name => "pure";

    /// <summary>The soft-min temperature τ ≥ 0 (0.1, the authors' implementation); 0 is the exact min.</summary>
    /// <exception cref="ArgumentOutOfRangeException">τ is negative or not finite.</exception>
    public double Temperature { get => temperature; init => temperature = GroupHost.InRange(value, 0, double.MaxValue, nameof(Temperature)); }

    /// <summary>Min-form token advantages from <see cref="PolicyBatch.TokenRewards"/>, [B, T].</summary>
    /// <exception cref="ArgumentException">The batch has no process rewards.</exception>
    protected override Tensor ComputeAdvantages(PolicyBatch batch)
    {
        var returns = ProcessReturns.MinForm(ProcessReturns.Required(batch, Name), batch.Mask, Temperature);
        return ProcessReturns.TokenAdvantages(returns, batch.Rewards.Detach(), batch.Mask, batch.GroupSize);
    }
}
