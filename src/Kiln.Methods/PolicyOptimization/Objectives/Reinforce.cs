namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// REINFORCE (Williams 1992) without a baseline: loss −(1/B) Σ_i r_i Σ_t log π(y_it | s_it), whose gradient is the
/// Monte-Carlo policy gradient of E_π[r]. On-policy: one update per sampled batch.
/// </summary>
public sealed class Reinforce : IPolicyObjective
{
    /// <inheritdoc/>
    public string Name => "reinforce";

    /// <inheritdoc/>
    public Tensor Loss(PolicyBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        batch.Validate();
        return Surrogates.ScoreFunction(batch, batch.Rewards);
    }
}
