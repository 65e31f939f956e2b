namespace Kiln.Methods.Sketching;

/// <summary>
/// The R-learner as inverse-variance weighting (Fisher, "The Connection Between R-Learning and Inverse-Variance
/// Weighting for Estimation of Heterogeneous Treatment Effects", 2023). With outcome y, treatment w, and nuisance fits
/// m̂(x) ≈ E[y|x], ê(x) ≈ E[w|x], the R-loss Σ ((yᵢ - m̂ᵢ) - (wᵢ - êᵢ) τ(xᵢ))² equals
/// Σ (wᵢ - êᵢ)² (ψᵢ - τ(xᵢ))² with the pseudo-outcome ψᵢ = (yᵢ - m̂ᵢ)/(wᵢ - êᵢ): a regression of ψ on x weighted by
/// (w - ê)², the inverse of ψ's conditional variance up to a factor. For a linear τ(x) = xᵀβ both forms are one
/// weighted least-squares solve.
/// </summary>
public static class RLearner
{
    /// <summary>The R-loss mean(((y - m̂) - (w - ê) τ)²) for effect predictions τ [n]; differentiable in every input.</summary>
    /// <param name="tau">Predicted effects τ(xᵢ), [n].</param>
    /// <param name="y">Outcomes, [n].</param>
    /// <param name="w">Treatments (0/1 or continuous), [n].</param>
    /// <param name="m">Outcome-model predictions m̂(xᵢ), [n].</param>
    /// <param name="e">Propensity predictions ê(xᵢ), [n].</param>
    /// <exception cref="ShapeMismatchException">The inputs are not vectors of one length.</exception>
    public static Tensor Loss(Tensor tau, Tensor y, Tensor w, Tensor m, Tensor e)
    {
        CheckVectors(tau, y, w, m, e);
        return ((y - m) - (w - e) * tau).Pow(2).Mean();
    }

    /// <summary>The pseudo-outcomes ψ = (y - m̂)/(w - ê) and their inverse-variance weights (w - ê)², each [n].</summary>
    /// <param name="y">Outcomes, [n].</param>
    /// <param name="w">Treatments, [n].</param>
    /// <param name="m">Outcome-model predictions, [n].</param>
    /// <param name="e">Propensity predictions, [n].</param>
    /// <exception cref="ArgumentException">Some wᵢ equals êᵢ (ψᵢ is undefined; the message names i).</exception>
    public static (Tensor PseudoOutcome, Tensor Weights) PseudoOutcomes(Tensor y, Tensor w, Tensor m, Tensor e)
    {
        CheckVectors(y, y, w, m, e);
        var resid = w - e;
        var r = resid.To(DType.Float64).ToArray<double>();
        int zero = Array.IndexOf(r, 0.0);
        if (zero >= 0) throw new ArgumentException($"RLearner.PseudoOutcomes: w[{zero}] equals ê[{zero}], so the pseudo-outcome (y - m̂)/(w - ê) is undefined there", nameof(w));
        return ((y - m) / resid, resid * resid);
    }

    /// <summary>The linear effect model β = argmin Σ (wᵢ - êᵢ)² (ψᵢ - xᵢᵀβ)², the minimizer of the R-loss over τ(x) = xᵀβ.</summary>
    /// <param name="features">Effect-model features x, [n, p] (include a column of ones for an intercept).</param>
    /// <param name="y">Outcomes, [n].</param>
    /// <param name="w">Treatments, [n].</param>
    /// <param name="m">Outcome-model predictions, [n].</param>
    /// <param name="e">Propensity predictions, [n].</param>
    public static Tensor Fit(Tensor features, Tensor y, Tensor w, Tensor m, Tensor e)
    {
        ArgumentNullException.ThrowIfNull(features);
        var (psi, weights) = PseudoOutcomes(y, w, m, e);
        return LeastSquares.Weighted(features, psi, weights);
    }

    static void CheckVectors(Tensor tau, Tensor y, Tensor w, Tensor m, Tensor e)
    {
        ArgumentNullException.ThrowIfNull(y);
        int n = y.Rank == 1 ? y.Shape[0] : -1;
        var all = new[] { (tau, nameof(tau)), (y, nameof(y)), (w, nameof(w)), (m, nameof(m)), (e, nameof(e)) };
        foreach (var (t, name) in all)
        {
            ArgumentNullException.ThrowIfNull(t, name);
            if (t.Rank != 1 || t.Shape[0] != n)
                throw new ShapeMismatchException("RLearner", name, $"{name} has shape {t.Shape}; every input must be a vector of y's length {y.Shape}");
        }
    }
}
