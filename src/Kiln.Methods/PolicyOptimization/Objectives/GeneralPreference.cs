namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// The general preference model (Zhang et al., "General Preference Modeling with Preference Representations for
/// Aligning Language Models", 2024): each response is a unit vector v ∈ R^{2k}; the preference score is
/// s(i ≻ j) = ⟨R v_i, v_j⟩ with R block-diagonal of 2×2 skew blocks λ_b [[0, −1], [1, 0]] (λ_b ≥ 0, 1 when omitted),
/// and P(i ≻ j) = σ(s). s is antisymmetric, so the model can express intransitive (cyclic) preferences that a scalar
/// Bradley–Terry reward cannot; scoring n responses costs n embeddings (linear query complexity).
/// </summary>
public static class GeneralPreference
{
    /// <summary>Normalises raw representations to unit length over the last axis (of even size 2k): [..., 2k] → [..., 2k].</summary>
    /// <exception cref="ArgumentException">The last axis is empty or odd.</exception>
    public static Tensor Embed(Tensor raw)
    {
        ArgumentNullException.ThrowIfNull(raw);
        CheckEven(raw, nameof(raw));
        return raw / raw.Norm(2, [-1], keepDim: true);
    }

    /// <summary>The score s(i ≻ j) = Σ_b λ_b (v_i[2b] v_j[2b+1] − v_i[2b+1] v_j[2b]) = ⟨R v_i, v_j⟩: [..., 2k] × [..., 2k] → [...].</summary>
    /// <param name="vi">The first responses' embeddings, [..., 2k].</param>
    /// <param name="vj">The second responses' embeddings, same shape.</param>
    /// <param name="blockScales">λ, [..., k] or [k], non-negative (the per-block eigenvalue scales); null for all 1.</param>
    /// <exception cref="ArgumentException">The shapes disagree or the last axis is odd.</exception>
    public static Tensor Score(Tensor vi, Tensor vj, Tensor? blockScales = null)
    {
        ArgumentNullException.ThrowIfNull(vi); ArgumentNullException.ThrowIfNull(vj);
        CheckEven(vi, nameof(vi));
        if (vj.Shape != vi.Shape) throw new ArgumentException($"general preference: vj {vj.Shape} must match vi {vi.Shape}", nameof(vj));
        int k = vi.Shape[-1] / 2;
        var lead = vi.Shape.ToArray()[..^1];
        var a = vi.Reshape([.. lead, k, 2]); var b = vj.Reshape([.. lead, k, 2]);
        var perBlock = a.Narrow(-1, 0, 1) * b.Narrow(-1, 1, 1) - a.Narrow(-1, 1, 1) * b.Narrow(-1, 0, 1);
        perBlock = perBlock.Squeeze(-1);
        if (blockScales is not null)
        {
            if (blockScales.Shape[-1] != k) throw new ArgumentException($"general preference: blockScales {blockScales.Shape} must end in k = {k}", nameof(blockScales));
            perBlock = perBlock * blockScales;
        }
        return perBlock.Sum(-1);
    }

    /// <summary>P(i ≻ j) = σ(s(i ≻ j)); P(i ≻ j) + P(j ≻ i) = 1.</summary>
    public static Tensor Probability(Tensor vi, Tensor vj, Tensor? blockScales = null) => Score(vi, vj, blockScales).Sigmoid();

    /// <summary>The preference log-loss −log σ(s(winner ≻ loser)) per pair, [...].</summary>
    public static Tensor Loss(Tensor winner, Tensor loser, Tensor? blockScales = null) => TokenTerms.PairwiseLogistic(Score(winner, loser, blockScales));

    static void CheckEven(Tensor v, string name)
    {
        if (v.Rank < 1 || v.Shape[-1] == 0 || v.Shape[-1] % 2 != 0)
            throw new ArgumentException($"general preference: {name} must end in an even, non-empty axis 2k, got {v.Shape}", name);
    }
}
