namespace Kiln.Methods.Sketching;

/// <summary>
/// Fast regression with an ℓ∞ guarantee (Song, Ye, Yin and Zhang, "A Nearly-Optimal Bound for Fast Regression with ℓ∞
/// Guarantee", ICML 2023): for a dense sketch S with m = Õ(ε⁻² d) rows, the sketch-and-solve solution x' = (SA)⁺Sb
/// satisfies, with high probability, ‖x' - x*‖∞ ≤ (ε/√d) · ‖A x* - b‖₂ · ‖A⁺‖₂ (every coordinate, not only the
/// ℓ₂ norm, is ε/√d-accurate), while sparse sketches (CountSketch) cannot give it. For a Gaussian S the error
/// x' - x* = (SA)⁺ S r (r = b - A x* ⊥ range A) has the closed-form covariance ‖r‖² (AᵀA)⁻¹ / (m - d - 1).
/// </summary>
public static class LInfRegression
{
    /// <summary>The guarantee's right-hand side (ε/√d) ‖A x* - b‖₂ ‖A⁺‖₂, with x* the exact solution and ‖A⁺‖₂ = 1/σ_min(A).</summary>
    /// <param name="a">The design, [n, d] of full column rank.</param>
    /// <param name="b">The targets, [n].</param>
    /// <param name="epsilon">The accuracy ε, positive.</param>
    /// <exception cref="ArgumentOutOfRangeException">ε is not positive and finite.</exception>
    /// <exception cref="ArgumentException">A is rank deficient (‖A⁺‖ would be that of a smaller problem).</exception>
    public static double Bound(Tensor a, Tensor b, double epsilon)
    {
        if (!(epsilon > 0) || double.IsInfinity(epsilon)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "LInfRegression.Bound: epsilon must be positive and finite");
        var x = LeastSquares.Solve(a, b);
        double residual = LeastSquares.Residual(a, b, x);
        var s = a.Detach().Svd().S.To(DType.Float64).ToArray<double>();
        double smin = s.Length == 0 ? 0 : s[^1];
        if (!(smin > s[0] * 1e-12)) throw new ArgumentException($"LInfRegression.Bound: A {a.Shape} is rank deficient (σ_min = {smin:G4}, σ_max = {s[0]:G4})", nameof(a));
        return epsilon / Math.Sqrt(a.Shape[1]) * residual / smin;
    }

    /// <summary>The exact error covariance of Gaussian sketch-and-solve, E[(x' - x*)(x' - x*)ᵀ] = ‖r‖² (AᵀA)⁻¹ / (m - d - 1), [d, d].</summary>
    /// <param name="a">The design, [n, d] of full column rank.</param>
    /// <param name="b">The targets, [n].</param>
    /// <param name="m">The Gaussian sketch's rows, at least d + 2 (the inverse-Wishart mean exists).</param>
    /// <exception cref="ArgumentOutOfRangeException">m ≤ d + 1.</exception>
    public static Tensor GaussianErrorCovariance(Tensor a, Tensor b, int m)
    {
        int d = a.Shape[^1];
        if (m <= d + 1) throw new ArgumentOutOfRangeException(nameof(m), m, $"LInfRegression.GaussianErrorCovariance: m must exceed d + 1 = {d + 1}");
        double residual = LeastSquares.Residual(a, b, LeastSquares.Solve(a, b));
        return a.T.MatMul(a).Inverse() * (residual * residual / (m - d - 1));
    }

    /// <summary>‖x - y‖∞ of two solutions.</summary>
    /// <param name="x">A solution, [d].</param>
    /// <param name="y">Another, [d].</param>
    public static double Error(Tensor x, Tensor y) => x.Numel == 0 ? 0 : (x - y).Abs().Amax().To(DType.Float64).Item();
}
