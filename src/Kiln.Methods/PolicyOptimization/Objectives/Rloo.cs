namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// REINFORCE leave-one-out (Kool et al. 2019; Ahmadian et al. 2024, "Back to Basics"): each sample's baseline is the mean
/// reward of the other G − 1 samples of its prompt, A_i = r_i − (1/(G−1)) Σ_{j≠i} r_j = G/(G−1) (r_i − mean_group r);
/// loss −(1/B) Σ_i A_i Σ_t log π(y_it | s_it).
/// </summary>
public sealed class Rloo : IPolicyObjective
{
    /// <inheritdoc/>
    public string Name => "rloo";

    /// <summary>The leave-one-out advantages [B] of <paramref name="rewards"/> in groups of <paramref name="groupSize"/> ≥ 2.</summary>
    /// <exception cref="ArgumentException">The group size is below 2 or does not divide the rows.</exception>
    public static Tensor Advantages(Tensor rewards, int groupSize)
    {
        ArgumentNullException.ThrowIfNull(rewards);
        if (groupSize < 2) throw new ArgumentException($"rloo: the leave-one-out baseline needs a group size of at least 2, got {groupSize}", nameof(groupSize));
        return PolicyMath.GroupAdvantages(rewards, groupSize, scaleByStd: false) * (groupSize / (groupSize - 1.0));
    }

    /// <inheritdoc/>
    public Tensor Loss(PolicyBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        batch.Validate();
        return Surrogates.ScoreFunction(batch, Advantages(batch.Rewards, batch.GroupSize));
    }
}
