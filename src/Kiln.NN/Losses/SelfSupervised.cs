namespace Kiln.NN;

/// <summary>The map that sends each embedding coordinate into [0, 1] before <see cref="SelfSupervisedLosses.EffectiveEntropy"/> estimates its entropy.</summary>
public enum EntropyTransform
{
    /// <summary>The logistic sigmoid 1 / (1 + e^-z) (the paper's "hypercube" choice).</summary>
    Sigmoid,
    /// <summary>The standard normal CDF Φ(z) = (1 + erf(z / √2)) / 2 (the paper's "hypersphere" choice).</summary>
    GaussianCdf,
}

/// <summary>
/// Self-supervised objectives on batches of embeddings [n, d] (n samples, d dimensions), differentiable in their
/// floating inputs: VICReg (Bardes, Ponce and LeCun, ICLR 2022) and the effective entropy maximization criterion E2MC
/// (Chakraborty, LeCun, Rudner and Learned-Miller, AISTATS 2025). See src/Kiln.Methods/SelfSupervised/README.md.
/// </summary>
public static class SelfSupervisedLosses
{
    static void Embeddings(Tensor z, string op, string name, int minRows = 2)
    {
        ArgumentNullException.ThrowIfNull(z, name);
        if (z.Rank != 2) throw new ShapeMismatchException(op, name, $"embeddings must be [n, d], got {z.Shape}");
        if (z.Shape[0] < minRows) throw new ArgumentException($"{op}: {name} has {z.Shape[0]} rows; the batch statistics need at least {minRows}", name);
        if (!z.DType.IsFloating()) throw new ArgumentException($"{op}: {name} must be floating, not {z.DType}", name);
    }

    static void Finite(double v, string name, string op)
    {
        if (!double.IsFinite(v)) throw new ArgumentOutOfRangeException(name, v, $"{op}: {name} must be finite");
    }

    /// <summary>
    /// VICReg's invariance term s(Z, Z') = mean over the n·d entries of (z - z')², the mean squared error between the
    /// embeddings of two views (the official code's <c>F.mse_loss</c>, which its default weights are tuned for; the
    /// paper's equation writes the per-sample sum, d times larger).
    /// </summary>
    /// <exception cref="ShapeMismatchException">An input is not [n, d] or the shapes differ.</exception>
    /// <exception cref="ArgumentException">An input has no rows or is not floating.</exception>
    public static Tensor VicRegInvariance(Tensor z1, Tensor z2)
    {
        Embeddings(z1, "vicreg_invariance", nameof(z1), 1);
        Embeddings(z2, "vicreg_invariance", nameof(z2), 1);
        if (z1.Shape != z2.Shape) throw new ShapeMismatchException("vicreg_invariance", nameof(z2), z1.Shape, z2.Shape, "the two views' embeddings must have the same shape");
        return (z1 - z2).Square().Mean();
    }

    /// <summary>
    /// VICReg's variance term v(Z) = (1/d) Σ_j max(0, γ - √(Var(z_j) + ε)), a hinge on the standard deviation of each
    /// dimension over the batch (Var with Bessel's correction, as the paper and its code use).
    /// </summary>
    /// <exception cref="ShapeMismatchException"><paramref name="z"/> is not [n, d].</exception>
    /// <exception cref="ArgumentException"><paramref name="z"/> has fewer than 2 rows or is not floating.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="gamma"/> is negative or not finite, or <paramref name="eps"/> is not positive and finite.</exception>
    public static Tensor VicRegVariance(Tensor z, double gamma = 1, double eps = 1e-4)
    {
        Embeddings(z, "vicreg_variance", nameof(z));
        if (!(gamma >= 0 && double.IsFinite(gamma))) throw new ArgumentOutOfRangeException(nameof(gamma), gamma, "vicreg_variance: gamma must be finite and non-negative");
        if (!(eps > 0 && double.IsFinite(eps))) throw new ArgumentOutOfRangeException(nameof(eps), eps, "vicreg_variance: eps must be finite and positive (it keeps the square root's gradient finite)");
        var std = (z.Var(0) + eps).Sqrt();
        return (gamma - std).Relu().Mean();
    }

    /// <summary>
    /// VICReg's covariance term c(Z) = (1/d) Σ_{i≠j} C(Z)_ij², with C(Z) = (1/(n-1)) Σ_k (z_k - z̄)(z_k - z̄)ᵀ the sample
    /// covariance: the squared off-diagonal covariances, scaled by 1/d.
    /// </summary>
    /// <exception cref="ShapeMismatchException"><paramref name="z"/> is not [n, d].</exception>
    /// <exception cref="ArgumentException"><paramref name="z"/> has fewer than 2 rows or is not floating.</exception>
    public static Tensor VicRegCovariance(Tensor z)
    {
        Embeddings(z, "vicreg_covariance", nameof(z));
        return OffDiagonalCovariance(z);
    }

    static Tensor OffDiagonalCovariance(Tensor z)
    {
        int n = z.Shape[0], d = z.Shape[1];
        var zc = z - z.Mean(0, keepDim: true);
        var c = zc.T.MatMul(zc) / (n - 1.0);
        return (c.Square().Sum() - c.Diagonal().Square().Sum()) / d;
    }

    /// <summary>
    /// The VICReg loss ℓ = λ s(Z, Z') + μ [v(Z) + v(Z')] + ν [c(Z) + c(Z')] of the embeddings of two views, with the
    /// paper's defaults λ = μ = 25, ν = 1, γ = 1, ε = 1e-4 (terms: <see cref="VicRegInvariance"/>,
    /// <see cref="VicRegVariance"/>, <see cref="VicRegCovariance"/>).
    /// </summary>
    /// <exception cref="ShapeMismatchException">An input is not [n, d] or the shapes differ.</exception>
    /// <exception cref="ArgumentException">An input has fewer than 2 rows or is not floating.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A weight is not finite, or gamma or eps is out of range.</exception>
    public static Tensor VicReg(Tensor z1, Tensor z2, double invarianceWeight = 25, double varianceWeight = 25, double covarianceWeight = 1,
        double gamma = 1, double eps = 1e-4)
    {
        Finite(invarianceWeight, nameof(invarianceWeight), "vicreg");
        Finite(varianceWeight, nameof(varianceWeight), "vicreg");
        Finite(covarianceWeight, nameof(covarianceWeight), "vicreg");
        Embeddings(z1, "vicreg", nameof(z1));
        var s = VicRegInvariance(z1, z2);
        var v = VicRegVariance(z1, gamma, eps) + VicRegVariance(z2, gamma, eps);
        var c = OffDiagonalCovariance(z1) + OffDiagonalCovariance(z2);
        return s * invarianceWeight + v * varianceWeight + c * covarianceWeight;
    }

    /// <summary>
    /// The m-spacing (Vasicek) estimate of each column's differential entropy:
    /// Ĥ_j = (1/(n-m)) Σ_{i=1}^{n-m} log((n+1)/m · (u_(i+m),j - u_(i),j) + δ), with u_(i),j the order statistics of column
    /// j, the window m = round(√n) by default, and δ = 1e-7 against the log of a zero spacing (as in E2MC's code). Returns
    /// the d estimates [d]; the gradient flows through the sort to the samples.
    /// </summary>
    /// <exception cref="ShapeMismatchException"><paramref name="u"/> is not [n, d].</exception>
    /// <exception cref="ArgumentException"><paramref name="u"/> has fewer than 2 rows or is not floating.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="m"/> is outside [1, n - 1], or <paramref name="delta"/> is negative or not finite.</exception>
    public static Tensor MSpacingEntropy(Tensor u, int? m = null, double delta = 1e-7)
    {
        Embeddings(u, "m_spacing_entropy", nameof(u));
        int n = u.Shape[0];
        int w = m ?? Math.Max(1, (int)Math.Round(Math.Sqrt(n), MidpointRounding.ToEven));
        if (w < 1 || w >= n) throw new ArgumentOutOfRangeException(nameof(m), w, $"m_spacing_entropy: the window must be in [1, {n - 1}] for {n} samples");
        if (!(delta >= 0 && double.IsFinite(delta))) throw new ArgumentOutOfRangeException(nameof(delta), delta, "m_spacing_entropy: delta must be finite and non-negative");
        var sorted = u.Sort(0).Values;
        var spacing = sorted.Narrow(0, w, n - w) - sorted.Narrow(0, 0, n - w);
        return (spacing * ((n + 1.0) / w) + delta).Log().Sum(0) / (n - w);
    }

    /// <summary>
    /// E2MC's two low-dimensional statistics of embeddings <paramref name="z"/> [n, d] mapped into [0, 1]^d by
    /// <paramref name="transform"/> (u = σ(z) or Φ(z)): the mean m-spacing entropy of the d marginals,
    /// (1/d) Σ_j Ĥ(u_j) (<see cref="MSpacingEntropy"/>; at most 0, the entropy of the uniform on [0, 1], up to
    /// estimator error), and the decorrelation penalty c(U) = (1/d) Σ_{i≠j} C(U)_ij² (<see cref="VicRegCovariance"/>).
    /// </summary>
    /// <exception cref="ShapeMismatchException"><paramref name="z"/> is not [n, d].</exception>
    /// <exception cref="ArgumentException"><paramref name="z"/> has fewer than 2 rows or is not floating.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The window <paramref name="m"/> is outside [1, n - 1] or the transform is unknown.</exception>
    public static (Tensor Entropy, Tensor Covariance) EffectiveEntropy(Tensor z, EntropyTransform transform = EntropyTransform.Sigmoid, int? m = null)
    {
        Embeddings(z, "effective_entropy", nameof(z));
        var u = transform switch
        {
            EntropyTransform.Sigmoid => z.Sigmoid(),
            EntropyTransform.GaussianCdf => ((z * (1 / Math.Sqrt(2))).Erf() + 1.0) * 0.5,
            _ => throw new ArgumentOutOfRangeException(nameof(transform), transform, "effective_entropy: unknown transform"),
        };
        return (MSpacingEntropy(u, m).Mean(), OffDiagonalCovariance(u));
    }

    /// <summary>
    /// The E2MC add-on loss -λ_H · (1/d) Σ_j Ĥ(u_j) + λ_C · c(U) of <see cref="EffectiveEntropy"/>: minimizing it makes the
    /// transformed marginals uniform and decorrelated. The paper adds it to an SSL loss (for two views, to each view's
    /// embeddings) for a few epochs of continued pre-training.
    /// </summary>
    /// <exception cref="ShapeMismatchException"><paramref name="z"/> is not [n, d].</exception>
    /// <exception cref="ArgumentException"><paramref name="z"/> has fewer than 2 rows or is not floating.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A weight is not finite, the window is out of range or the transform is unknown.</exception>
    public static Tensor E2mc(Tensor z, double entropyWeight = 1, double covarianceWeight = 1, EntropyTransform transform = EntropyTransform.Sigmoid, int? m = null)
    {
        Finite(entropyWeight, nameof(entropyWeight), "e2mc");
        Finite(covarianceWeight, nameof(covarianceWeight), "e2mc");
        var (h, c) = EffectiveEntropy(z, transform, m);
        return c * covarianceWeight - h * entropyWeight;
    }
}
