namespace Kiln.Methods.Sketching;

/// <summary>
/// ReTaSA (Kim, Zhang, Zhao and Tian, "ReTaSA: A Nonparametric Functional Estimation Approach for Addressing
/// Continuous Target Shift", ICLR 2024). Under target shift p_t(x | y) = p_s(x | y), the label density ratio
/// ω(y) = p_t(y)/p_s(y) solves the integral equation E_s[ω(Y) | X = x] = η(x) := p_t(x)/p_s(x). On the n source pairs
/// (xᵢ, yᵢ) the conditional expectation is the Nadaraya-Watson smoother K [n, n] (Kᵢⱼ ∝ exp(−‖xᵢ − xⱼ‖²/2h²), rows
/// summing to 1), and ω at the source labels is the Tikhonov-regularized solution ω = argmin ‖Kω − η‖² + α‖ω‖²
/// (the equation is ill-posed). The weighted source risk mean(ωᵢ ℓᵢ) then estimates the target risk.
/// </summary>
public static class TargetShift
{
    /// <summary>The Nadaraya-Watson smoother Kᵢⱼ = exp(−‖xᵢ − xⱼ‖²/2h²) / Σₗ exp(−‖xᵢ − xₗ‖²/2h²), [n, n].</summary>
    /// <param name="x">Source features, [n, p].</param>
    /// <param name="bandwidth">h, positive.</param>
    /// <exception cref="ArgumentOutOfRangeException">h is not positive and finite.</exception>
    public static Tensor Smoother(Tensor x, double bandwidth)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Rank != 2) throw new ShapeMismatchException("TargetShift", nameof(x), $"x has shape {x.Shape}; it must be [n, p]");
        if (!(bandwidth > 0) || double.IsInfinity(bandwidth)) throw new ArgumentOutOfRangeException(nameof(bandwidth), bandwidth, "TargetShift: the bandwidth must be positive and finite");
        var d2 = (x.Unsqueeze(1) - x.Unsqueeze(0)).Pow(2).Sum(-1);
        // Row-wise softmax of −d²/2h²: the same normalized kernel, without underflow for far points.
        return (d2 * (-0.5 / (bandwidth * bandwidth))).Softmax(1);
    }

    /// <summary>ω at the source labels, [n]: the solution of (KᵀK + αI)ω = Kᵀη.</summary>
    /// <param name="x">Source features, [n, p].</param>
    /// <param name="featureRatio">η(xᵢ) = p_t(xᵢ)/p_s(xᵢ) at the source points (known, or from a source-vs-target classifier), [n].</param>
    /// <param name="bandwidth">h of the smoother.</param>
    /// <param name="regularization">α, positive.</param>
    /// <exception cref="ArgumentOutOfRangeException">α is not positive and finite.</exception>
    /// <exception cref="ShapeMismatchException">η does not have one entry per source point.</exception>
    public static Tensor DensityRatio(Tensor x, Tensor featureRatio, double bandwidth, double regularization)
    {
        ArgumentNullException.ThrowIfNull(featureRatio);
        if (!(regularization > 0) || double.IsInfinity(regularization)) throw new ArgumentOutOfRangeException(nameof(regularization), regularization, "TargetShift: the regularization α must be positive and finite");
        var k = Smoother(x, bandwidth);
        int n = k.Shape[0];
        if (featureRatio.Shape != new Shape(n)) throw new ShapeMismatchException("TargetShift", nameof(featureRatio), $"featureRatio has shape {featureRatio.Shape}; it must be [{n}]");
        var a = Tensor.Concat([k, Tensor.Eye(n, dtype: k.DType, device: k.Device) * Math.Sqrt(regularization)], 0);
        return LeastSquares.Solve(a, Tensor.Concat([featureRatio, Tensor.Zeros(new Shape(n), featureRatio.DType, featureRatio.Device)], 0));
    }

    /// <summary>The weighted source risk mean(ωᵢ ℓᵢ), the estimate of the target risk.</summary>
    /// <param name="losses">ℓᵢ on the source sample, [n].</param>
    /// <param name="weights">ωᵢ, [n].</param>
    public static Tensor WeightedRisk(Tensor losses, Tensor weights)
    {
        ArgumentNullException.ThrowIfNull(losses);
        ArgumentNullException.ThrowIfNull(weights);
        if (losses.Rank != 1 || losses.Shape != weights.Shape) throw new ShapeMismatchException("TargetShift", nameof(weights), $"losses {losses.Shape} and weights {weights.Shape} must be vectors of one length");
        return (losses * weights).Mean();
    }
}
