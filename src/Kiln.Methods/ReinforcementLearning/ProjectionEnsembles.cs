namespace Kiln.Methods.ReinforcementLearning;

/// <summary>
/// The projections and distances of diverse projection ensembles for distributional RL (PE-DQN; Zanger, Böhmer and
/// Spaan, 2024). A return distribution is a set of atoms [..., n] with probabilities [..., n] (leading dims batch). The
/// ensemble mixes members with different projections — the categorical projection onto a fixed uniform support (C51)
/// and the quantile projection onto equal-mass atoms (QR-DQN) — and explores by the members' disagreement, measured by
/// the 1-Wasserstein distance. Everything is differentiable in atoms and probabilities.
/// </summary>
public static class ProjectionEnsembles
{
    /// <summary>
    /// The categorical projection onto the support z_j = vMin + jΔ, Δ = (vMax - vMin)/(bins - 1):
    /// p'_j = Σ_i p_i max(0, 1 - |clamp(x_i, vMin, vMax) - z_j|/Δ) [..., bins]. It keeps the mass, keeps the mean of atoms
    /// inside [vMin, vMax], and leaves a distribution already on the support unchanged.
    /// </summary>
    /// <exception cref="ShapeMismatchException">Atoms and probabilities differ in shape, or are scalars.</exception>
    /// <exception cref="ArgumentOutOfRangeException">Fewer than two bins, or vMin ≥ vMax.</exception>
    public static Tensor CategoricalProjection(Tensor atoms, Tensor probs, double vMin, double vMax, int bins)
    {
        CheckDistribution("categorical projection", atoms, probs);
        if (bins < 2) throw new ArgumentOutOfRangeException(nameof(bins), bins, "categorical projection: needs at least two bins");
        if (!(vMin < vMax) || !double.IsFinite(vMin) || !double.IsFinite(vMax))
            throw new ArgumentOutOfRangeException(nameof(vMax), vMax, $"categorical projection: need finite vMin < vMax, got [{vMin}, {vMax}]");
        double delta = (vMax - vMin) / (bins - 1);
        var support = Tensor.Linspace(vMin, vMax, bins, atoms.DType, atoms.Device);
        var hat = (1.0 - (atoms.Clamp(vMin, vMax).Unsqueeze(-1) - support).Abs() * (1 / delta)).Relu(); // [..., n, bins]
        return (probs.Unsqueeze(-1) * hat).Sum(-2);
    }

    /// <summary>
    /// The quantile projection onto <paramref name="quantiles"/> equal-mass atoms: atom k is F⁻¹(τ_k) = min{x : F(x) ≥ τ_k}
    /// at the midpoints τ_k = (2k + 1)/(2m), which is the W1-closest distribution with m equally weighted atoms. Returns the
    /// atoms [..., m] in increasing order (each of mass 1/m).
    /// </summary>
    /// <exception cref="ShapeMismatchException">Atoms and probabilities differ in shape, or are scalars.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The quantile count is not positive, or there are no atoms.</exception>
    public static Tensor QuantileProjection(Tensor atoms, Tensor probs, int quantiles)
    {
        CheckDistribution("quantile projection", atoms, probs);
        if (quantiles < 1) throw new ArgumentOutOfRangeException(nameof(quantiles), quantiles, "quantile projection: needs at least one quantile");
        int n = atoms.Shape[-1];
        if (n == 0) throw new ArgumentOutOfRangeException(nameof(atoms), n, "quantile projection: the distribution has no atoms");
        var (sorted, order) = atoms.Sort(-1);
        var cdf = probs.Gather(-1, order).Cumsum(-1);
        var tau = (Tensor.Arange(quantiles, atoms.DType, atoms.Device) * 2.0 + 1.0) * (1.0 / (2 * quantiles));
        // Atoms whose cumulative mass stays below τ_k come before F⁻¹(τ_k); count them.
        var below = cdf.Detach().Unsqueeze(-1).Lt(tau).To(atoms.DType).Sum(-2); // [..., m]
        return sorted.Gather(-1, below.Clamp(0, n - 1).To(DType.Int64));
    }

    /// <summary>
    /// W1(μ, ν) = ∫ |F_μ(x) - F_ν(x)| dx between two discrete distributions (batched over the leading dims, which must
    /// match), computed over the merged sorted atoms x_(1) ≤ ... ≤ x_(L) as Σ_k |F_μ(x_(k)) - F_ν(x_(k))| (x_(k+1) - x_(k)).
    /// Returns [...].
    /// </summary>
    /// <exception cref="ShapeMismatchException">A distribution's atoms and probabilities differ in shape, or the leading dims differ.</exception>
    public static Tensor Wasserstein1(Tensor atomsA, Tensor probsA, Tensor atomsB, Tensor probsB)
    {
        CheckDistribution("wasserstein-1", atomsA, probsA);
        CheckDistribution("wasserstein-1", atomsB, probsB);
        if (atomsA.Shape.Rank != atomsB.Shape.Rank || !atomsA.Shape.Dims[..^1].SequenceEqual(atomsB.Shape.Dims[..^1]))
            throw new ShapeMismatchException("wasserstein-1", nameof(atomsB), $"batch dims differ: {atomsA.Shape} against {atomsB.Shape}");
        var xs = Tensor.Concat([atomsA, atomsB], -1).Sort(-1).Values; // [..., L]
        int l = xs.Shape[-1];
        if (l < 2) return xs.Sum(-1) * 0.0;
        Tensor Cdf(Tensor atoms, Tensor probs) => (atoms.Unsqueeze(-2).Le(xs.Unsqueeze(-1)).To(atoms.DType) * probs.Unsqueeze(-2)).Sum(-1);
        var gap = (Cdf(atomsA, probsA) - Cdf(atomsB, probsB)).Abs().Narrow(-1, 0, l - 1);
        return (gap * (xs.Narrow(-1, 1, l - 1) - xs.Narrow(-1, 0, l - 1))).Sum(-1);
    }

    /// <summary>
    /// The ensemble's disagreement: the mean over members of W1(member, mixture), where the mixture puts mass p/M on every
    /// member's atoms. PE-DQN adds it as an exploration bonus; it is zero exactly when all members agree.
    /// </summary>
    /// <exception cref="ArgumentException">No members, or the atom and probability lists differ in length.</exception>
    public static Tensor Disagreement(Tensor[] memberAtoms, Tensor[] memberProbs)
    {
        ArgumentNullException.ThrowIfNull(memberAtoms);
        ArgumentNullException.ThrowIfNull(memberProbs);
        if (memberAtoms.Length == 0 || memberAtoms.Length != memberProbs.Length)
            throw new ArgumentException($"disagreement: needs one or more members with atoms and probabilities, got {memberAtoms.Length} and {memberProbs.Length}", nameof(memberProbs));
        int m = memberAtoms.Length;
        var mixAtoms = Tensor.Concat(memberAtoms, -1);
        var mixProbs = Tensor.Concat(memberProbs, -1) * (1.0 / m);
        Tensor total = Wasserstein1(memberAtoms[0], memberProbs[0], mixAtoms, mixProbs);
        for (int k = 1; k < m; k++) total = total + Wasserstein1(memberAtoms[k], memberProbs[k], mixAtoms, mixProbs);
        return total * (1.0 / m);
    }

    /// <summary>The atoms of the distributional Bellman target r + γ(1 - done) Z(s', a') for rewards and dones [B] and next atoms [B, n].</summary>
    /// <exception cref="ShapeMismatchException">The shapes do not line up.</exception>
    /// <exception cref="ArgumentOutOfRangeException">γ is outside [0, 1].</exception>
    public static Tensor BellmanAtoms(Tensor rewards, Tensor dones, Tensor nextAtoms, double gamma)
    {
        ArgumentNullException.ThrowIfNull(rewards);
        ArgumentNullException.ThrowIfNull(dones);
        ArgumentNullException.ThrowIfNull(nextAtoms);
        if (rewards.Rank != 1 || dones.Shape != rewards.Shape || nextAtoms.Rank != 2 || nextAtoms.Shape[0] != rewards.Shape[0])
            throw new ShapeMismatchException("bellman atoms", nameof(nextAtoms), $"rewards {rewards.Shape}, dones {dones.Shape}, next atoms {nextAtoms.Shape} must be [B], [B], [B, n]");
        if (!(gamma >= 0 && gamma <= 1)) throw new ArgumentOutOfRangeException(nameof(gamma), gamma, "bellman atoms: gamma must be in [0, 1]");
        return rewards.Unsqueeze(-1) + (gamma * (1.0 - dones)).Unsqueeze(-1) * nextAtoms;
    }

    static void CheckDistribution(string op, Tensor atoms, Tensor probs)
    {
        ArgumentNullException.ThrowIfNull(atoms);
        ArgumentNullException.ThrowIfNull(probs);
        if (atoms.Rank == 0 || atoms.Shape != probs.Shape)
            throw new ShapeMismatchException(op, nameof(probs), $"atoms {atoms.Shape} and probabilities {probs.Shape} must share one shape [..., n]");
    }
}
