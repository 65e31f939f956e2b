namespace Kiln.Methods.Sketching;

/// <summary>
/// Weighting vectors and magnitude of a finite metric space (Bunch et al., "Weighting vectors
/// for machine learning: numerical harmonic analysis applied to boundary detection", 2021). For points x₁..x_n and
/// scale t, the similarity matrix Z_ij = exp(-t ‖xᵢ - xⱼ‖) (positive definite for Euclidean points) defines the
/// weighting vector w by Z w = 1 and the magnitude |tX| = Σ wᵢ. Points on the boundary of the data get large weights
/// and interior points small ones, which is the paper's boundary (and outlier) detector. Up to scale, w is the
/// minimizer of vᵀ Z v subject to Σ vᵢ = 1, the quadratic program of an SVM-style dual without the sign constraint.
/// </summary>
public static class Magnitude
{
    /// <summary>Z_ij = exp(-t ‖xᵢ - xⱼ‖) for points [n, dim]: [n, n].</summary>
    /// <param name="points">The points, [n, dim].</param>
    /// <param name="scale">t, positive.</param>
    /// <exception cref="ArgumentException">Points is not a floating [n, dim] matrix.</exception>
    /// <exception cref="ArgumentOutOfRangeException">t is not positive and finite.</exception>
    public static Tensor Similarity(Tensor points, double scale)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (points.Rank != 2 || !points.DType.IsFloating())
            throw new ArgumentException($"Magnitude: points must be a floating [n, dim] matrix, got {points.DType} of shape {points.Shape}", nameof(points));
        if (!(scale > 0) || double.IsInfinity(scale)) throw new ArgumentOutOfRangeException(nameof(scale), scale, "Magnitude: the scale t must be positive and finite");
        var diff = points.Unsqueeze(1) - points.Unsqueeze(0);
        return (diff.Pow(2).Sum(-1).Sqrt() * -scale).Exp();
    }

    /// <summary>The weighting vector w with Z w = 1, [n].</summary>
    /// <param name="points">The points, [n, dim] (distinct, so Z is non-singular).</param>
    /// <param name="scale">t, positive.</param>
    public static Tensor WeightingVector(Tensor points, double scale)
    {
        var z = Similarity(points, scale);
        return z.Solve(Tensor.Ones(new Shape(z.Shape[0]), z.DType, z.Device));
    }

    /// <summary>The magnitude Σ wᵢ of the points at scale t.</summary>
    /// <param name="points">The points, [n, dim].</param>
    /// <param name="scale">t, positive.</param>
    public static double Of(Tensor points, double scale) => WeightingVector(points, scale).To(DType.Float64).Sum().Item();
}
