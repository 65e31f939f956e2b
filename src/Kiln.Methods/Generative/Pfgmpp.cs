using Kiln.Methods.Smoothing;

namespace Kiln.Methods.Generative;

/// <summary>
/// PFGM++ (Xu et al.): data y ∈ ℝᴺ augmented with D extra dimensions; the perturbation kernel at augmented radius r is
/// p_r(x | y) = Γ((N+D)/2) / (π^{N/2} Γ(D/2)) · r^D / (‖x − y‖² + r²)^{(N+D)/2}. It is sampled as x = y + R u with
/// u uniform on the unit sphere and R² = r² R₁/(1 − R₁), R₁ ~ Beta(N/2, D/2). With r = σ√D it tends to the Gaussian
/// N(y, σ² I) as D → ∞ (the diffusion/EDM case), and D = 1 is the original PFGM.
/// </summary>
public static class Pfgmpp
{
    /// <summary>The radius r = σ√D that aligns PFGM++ with a diffusion noise level σ.</summary>
    /// <exception cref="ArgumentOutOfRangeException">σ or D is not positive and finite.</exception>
    public static double Radius(double sigma, double augmentedDims)
    {
        Args.Positive(sigma, nameof(sigma), "pfgmpp_radius");
        Args.Positive(augmentedDims, nameof(augmentedDims), "pfgmpp_radius");
        return sigma * Math.Sqrt(augmentedDims);
    }

    /// <summary>log p_r(x | y) of each row of <paramref name="x"/> [n, N] given the row of <paramref name="y"/> [n, N]: [n]. Differentiable in x and y.</summary>
    /// <exception cref="ShapeMismatchException">x and y are not matrices of the same shape.</exception>
    /// <exception cref="ArgumentOutOfRangeException">r or D is not positive and finite.</exception>
    public static Tensor LogKernel(Tensor x, Tensor y, double radius, double augmentedDims)
    {
        const string op = "pfgmpp_log_kernel";
        if (x.Rank != 2) throw new ShapeMismatchException(op, nameof(x), $"x must be [n, N], got {x.Shape}");
        if (y.Shape != x.Shape) throw new ShapeMismatchException(op, nameof(y), x.Shape, y.Shape);
        Args.Positive(radius, nameof(radius), op);
        Args.Positive(augmentedDims, nameof(augmentedDims), op);
        double n = x.Shape[1], half = (n + augmentedDims) / 2;
        double logNorm = MonteCarloSmoothing.LogGamma(half) - n / 2 * Math.Log(Math.PI) - MonteCarloSmoothing.LogGamma(augmentedDims / 2)
            + augmentedDims * Math.Log(radius);
        return logNorm - half * ((x - y).Pow(2).Sum([1]) + radius * radius).Log();
    }

    /// <summary>
    /// Draws x ~ p_r(· | y) for each row of <paramref name="y"/> [n, N]: x = y + r g / ‖h‖ with g ~ N(0, I_N) and
    /// h ~ N(0, I_D) independent, which is R u with R₁ = ‖g‖²/(‖g‖² + ‖h‖²) ~ Beta(N/2, D/2) (cost O(D) per row).
    /// </summary>
    /// <exception cref="ShapeMismatchException">y is not a matrix.</exception>
    /// <exception cref="ArgumentOutOfRangeException">r is not positive and finite, or D is below 1.</exception>
    public static Tensor Perturb(Tensor y, double radius, int augmentedDims, Generator generator)
    {
        const string op = "pfgmpp_perturb";
        ArgumentNullException.ThrowIfNull(generator);
        if (y.Rank != 2) throw new ShapeMismatchException(op, nameof(y), $"y must be [n, N], got {y.Shape}");
        Args.Positive(radius, nameof(radius), op);
        if (augmentedDims < 1) throw new ArgumentOutOfRangeException(nameof(augmentedDims), augmentedDims, $"{op}: D must be at least 1");
        var g = Tensor.Randn(y.Shape, generator, dtype: y.DType, device: y.Device);
        var h = Tensor.Randn(new Shape(y.Shape[0], augmentedDims), generator, dtype: y.DType, device: y.Device);
        return y + radius * g / h.Norm(2, [1], keepDim: true);
    }
}
