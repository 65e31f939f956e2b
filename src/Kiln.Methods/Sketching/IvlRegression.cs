namespace Kiln.Methods.Sketching;

/// <summary>
/// IV-like (IVL) regression with outcome-invariant data augmentation ("An Analysis of Causal Effect Estimation using
/// Outcome Invariant Data Augmentation", 2025). An augmentation x ← x + g whose parameters g leave the outcome
/// unchanged acts as an instrument: it moves x but not y and is independent of any hidden confounder. With Π_G the
/// projection onto the columns of the augmentation parameters G [n, q], IVL_α minimizes
/// ‖Y − Xβ‖² + α‖Π_G(Y − Xβ)‖², i.e. β_α = (Xᵀ(I + αΠ_G)X)⁻¹ Xᵀ(I + αΠ_G)Y: α = 0 is ordinary least squares on the
/// augmented data (ERM with augmentation) and α → ∞ is two-stage least squares with G as the instrument, unbiased
/// under hidden confounding when G moves every direction of X (q ≥ d).
/// </summary>
public static class IvlRegression
{
    /// <summary>β_α for (augmented) features X [n, d], outcomes Y [n] and augmentation parameters G [n, q]; α = +∞ gives two-stage least squares.</summary>
    /// <param name="x">Features after augmentation, [n, d].</param>
    /// <param name="y">Outcomes (unchanged by the augmentation), [n].</param>
    /// <param name="augmentation">The augmentation parameters per row, [n, q].</param>
    /// <param name="alpha">α ≥ 0, or positive infinity.</param>
    /// <exception cref="ArgumentOutOfRangeException">α is negative or NaN.</exception>
    /// <exception cref="ShapeMismatchException">The row counts differ.</exception>
    public static Tensor Fit(Tensor x, Tensor y, Tensor augmentation, double alpha)
    {
        ArgumentNullException.ThrowIfNull(augmentation);
        if (!(alpha >= 0)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "IvlRegression.Fit: alpha must be non-negative (or +infinity)");
        if (augmentation.Rank != 2 || x.Rank != 2 || augmentation.Shape[0] != x.Shape[0])
            throw new ShapeMismatchException("IvlRegression.Fit", nameof(augmentation), $"augmentation {augmentation.Shape} must be [n, q] with the n = {x.Shape[0]} rows of x {x.Shape}");
        var project = (Tensor v) => augmentation.MatMul(augmentation.Lstsq(v));        // Π_G v
        var ym = y.Rank == 1 ? y.Unsqueeze(-1) : y;
        Tensor beta;
        if (double.IsPositiveInfinity(alpha)) beta = LeastSquares.Solve(project(x), project(ym));
        else
        {
            // (I + αΠ) = R² with R = I + (√(1 + α) − 1)Π, Π a projection: one least-squares solve on R X, R Y.
            double c = Math.Sqrt(1 + alpha) - 1;
            beta = LeastSquares.Solve(x + project(x) * c, ym + project(ym) * c);
        }
        return y.Rank == 1 ? beta.Squeeze(-1) : beta;
    }
}
