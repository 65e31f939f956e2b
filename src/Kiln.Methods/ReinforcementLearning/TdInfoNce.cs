namespace Kiln.Methods.ReinforcementLearning;

/// <summary>
/// Contrastive difference predictive coding (TD InfoNCE; Zheng, Salakhutdinov and Eysenbach, 2024). A critic
/// f(s, a, g) = φ(s, a)ᵀψ(g) is trained so that exp f(s, a, g) ∝ p^π(s₊ = g | s, a)/p(g), the discounted future-state
/// occupancy over the goal marginal, with a temporal-difference version of InfoNCE: the next state s' is the positive of
/// a (1 - γ) term, and random goals g_j, weighted by the critic's own estimate at the next state-action (s', a' ~ π), are
/// the soft positives of a γ term.
/// </summary>
public static class TdInfoNce
{
    /// <summary>The critic logits f[i, j] = φ_iᵀψ_j [N, M] from representations φ [N, d] and ψ [M, d].</summary>
    /// <exception cref="ShapeMismatchException">The representations are not matrices of one width.</exception>
    public static Tensor Critic(Tensor phi, Tensor psi)
    {
        ArgumentNullException.ThrowIfNull(phi);
        ArgumentNullException.ThrowIfNull(psi);
        if (phi.Rank != 2 || psi.Rank != 2 || phi.Shape[1] != psi.Shape[1])
            throw new ShapeMismatchException("td infonce critic", nameof(psi), $"φ {phi.Shape} and ψ {psi.Shape} must be [N, d] and [M, d]");
        return phi.MatMul(psi.Transpose(0, 1));
    }

    /// <summary>
    /// The TD InfoNCE loss over a batch of N transitions (s_i, a_i, s'_i), next actions a'_i ~ π(·|s'_i) and N goals g_j:
    /// L = (1 - γ) mean_i CE(f(s_i, a_i, s'_·), i) + γ mean_i Σ_j w_ij (-log softmax_j f(s_i, a_i, g_j)),
    /// with w_i = softmax_j f(s'_i, a'_i, g_j) held fixed (no gradient): the importance weight
    /// exp f(s', a', g_j)/((1/N) Σ_k exp f(s', a', g_k)), divided by N.
    /// </summary>
    /// <param name="nextLogits">f(s_i, a_i, s'_j) [N, N]; the diagonal holds the positives.</param>
    /// <param name="goalLogits">f(s_i, a_i, g_j) [N, N].</param>
    /// <param name="nextGoalLogits">f(s'_i, a'_i, g_j) [N, N]; only its values are used.</param>
    /// <param name="gamma">The discount γ in [0, 1).</param>
    /// <exception cref="ShapeMismatchException">The logits are not three [N, N] matrices with N ≥ 1.</exception>
    /// <exception cref="ArgumentOutOfRangeException">γ is outside [0, 1).</exception>
    public static Tensor Loss(Tensor nextLogits, Tensor goalLogits, Tensor nextGoalLogits, double gamma)
    {
        ArgumentNullException.ThrowIfNull(nextLogits);
        ArgumentNullException.ThrowIfNull(goalLogits);
        ArgumentNullException.ThrowIfNull(nextGoalLogits);
        if (nextLogits.Rank != 2 || nextLogits.Shape[0] != nextLogits.Shape[1] || goalLogits.Shape != nextLogits.Shape || nextGoalLogits.Shape != nextLogits.Shape)
            throw new ShapeMismatchException("td infonce", nameof(goalLogits), $"logits {nextLogits.Shape}, {goalLogits.Shape}, {nextGoalLogits.Shape} must all be one [N, N]");
        if (!(gamma >= 0 && gamma < 1)) throw new ArgumentOutOfRangeException(nameof(gamma), gamma, "td infonce: gamma must be in [0, 1)");
        int n = nextLogits.Shape[0];
        if (n == 0) throw new ShapeMismatchException("td infonce", nameof(nextLogits), "the batch is empty");
        var eye = Tensor.Eye(n, dtype: nextLogits.DType, device: nextLogits.Device);
        var next = -(eye * nextLogits.LogSoftmax(-1)).Sum(-1).Mean();
        var weights = nextGoalLogits.Detach().Softmax(-1);
        var future = -(weights * goalLogits.LogSoftmax(-1)).Sum(-1).Mean();
        return (1 - gamma) * next + gamma * future;
    }
}
