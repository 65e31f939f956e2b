namespace Kiln.Methods.Sketching;

/// <summary>
/// Weighted training against interference from data training loops in A/B tests (Si, "Tackling Interference
/// Induced by Data Training Loops in A/B Tests: A Weighted Training Approach", 2023). Both arms' data are pooled (a
/// share p from treatment); with e(x) = P(Z = 1 | x) the chance that a pooled point came from treatment, weighting the
/// pooled sample by e(x)/p reproduces the treatment distribution (p_T(x) = e(x) p_pool(x)/p) and by (1 - e(x))/(1 - p)
/// the control one, so each arm's model trains on all the data without the other arm's feedback-loop shift.
/// </summary>
public static class WeightedTraining
{
    /// <summary>The loss weights (e/p for the treatment model, (1 - e)/(1 - p) for the control model), each [n].</summary>
    /// <param name="propensity">e(xᵢ) of the pooled points, in [0, 1], [n].</param>
    /// <param name="treatedShare">p, the share of pooled points from treatment, in (0, 1).</param>
    /// <exception cref="ArgumentOutOfRangeException">p is not in (0, 1).</exception>
    /// <exception cref="ArgumentException">Some e(xᵢ) is outside [0, 1] (the message names i).</exception>
    public static (Tensor Treatment, Tensor Control) Weights(Tensor propensity, double treatedShare)
    {
        ArgumentNullException.ThrowIfNull(propensity);
        if (!(treatedShare > 0 && treatedShare < 1)) throw new ArgumentOutOfRangeException(nameof(treatedShare), treatedShare, "WeightedTraining: the treated share p must be in (0, 1)");
        var e = propensity.To(DType.Float64).ToArray<double>();
        int bad = Array.FindIndex(e, v => !(v >= 0 && v <= 1));
        if (bad >= 0) throw new ArgumentException($"WeightedTraining: propensity[{bad}] = {e[bad]} is not a probability", nameof(propensity));
        return (propensity / treatedShare, (1.0 - propensity) / (1 - treatedShare));
    }

    /// <summary>Both arms' linear models on the pooled data by weighted least squares with <see cref="Weights"/>: (β_T, β_C), each [d].</summary>
    /// <param name="features">Pooled features, [n, d].</param>
    /// <param name="outcomes">Pooled outcomes, [n].</param>
    /// <param name="propensity">e(xᵢ), [n].</param>
    /// <param name="treatedShare">p.</param>
    public static (Tensor Treatment, Tensor Control) Fit(Tensor features, Tensor outcomes, Tensor propensity, double treatedShare)
    {
        var (wt, wc) = Weights(propensity, treatedShare);
        return (LeastSquares.Weighted(features, outcomes, wt), LeastSquares.Weighted(features, outcomes, wc));
    }
}
