namespace Kiln.Methods.Generative;

/// <summary>
/// A forward diffusion with a linear drift on t ∈ [0, 1]: dx = f(t) x dt + g(t) dW, whose marginal given the data
/// point x₀ is x_t = α(t) x₀ + σ(t) ε, ε ~ N(0, I). Its reverse-time sampler starts at t = 1 from the prior
/// N(0, <see cref="PriorVariance"/> I).
/// </summary>
public abstract class LinearDiffusion
{
    private protected LinearDiffusion() { }

    /// <summary>The drift coefficient f(t) (the forward drift is f(t) x, so its divergence is f(t) d in d dimensions).</summary>
    public abstract double Drift(double t);

    /// <summary>The squared diffusion coefficient g(t)².</summary>
    public abstract double DiffusionSquared(double t);

    /// <summary>The signal scale α(t) of the marginal x_t = α(t) x₀ + σ(t) ε.</summary>
    public abstract double Alpha(double t);

    /// <summary>The noise scale σ(t) of the marginal x_t = α(t) x₀ + σ(t) ε.</summary>
    public abstract double Sigma(double t);

    /// <summary>The variance per dimension of the prior the reverse sampler starts from at t = 1.</summary>
    public abstract double PriorVariance { get; }

    /// <summary>
    /// The variance-preserving process (DDPM/score-SDE VP): b(t) = b_min + t (b_max − b_min), f = −b/2, g² = b,
    /// α = exp(−½∫₀ᵗ b), σ² = 1 − α², prior N(0, I).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">b_min is negative, or b_max is not above b_min, or either is not finite.</exception>
    public static LinearDiffusion VariancePreserving(double betaMin = 0.1, double betaMax = 20)
    {
        if (!(betaMin >= 0) || !double.IsFinite(betaMin))
            throw new ArgumentOutOfRangeException(nameof(betaMin), betaMin, "variance_preserving: betaMin must be non-negative and finite");
        if (!(betaMax > betaMin) || !double.IsFinite(betaMax))
            throw new ArgumentOutOfRangeException(nameof(betaMax), betaMax, $"variance_preserving: betaMax must be finite and above betaMin = {betaMin}");
        return new VariancePreservingDiffusion(betaMin, betaMax);
    }

    /// <summary>
    /// The variance-exploding process (score-SDE VE): σ(t) = σ_min (σ_max/σ_min)ᵗ, f = 0,
    /// g² = dσ²/dt = 2σ² ln(σ_max/σ_min), α = 1, prior N(0, σ_max² I).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">σ_min is not positive, or σ_max is not above σ_min, or either is not finite.</exception>
    public static LinearDiffusion VarianceExploding(double sigmaMin = 0.01, double sigmaMax = 10)
    {
        if (!(sigmaMin > 0) || !double.IsFinite(sigmaMin))
            throw new ArgumentOutOfRangeException(nameof(sigmaMin), sigmaMin, "variance_exploding: sigmaMin must be positive and finite");
        if (!(sigmaMax > sigmaMin) || !double.IsFinite(sigmaMax))
            throw new ArgumentOutOfRangeException(nameof(sigmaMax), sigmaMax, $"variance_exploding: sigmaMax must be finite and above sigmaMin = {sigmaMin}");
        return new VarianceExplodingDiffusion(sigmaMin, sigmaMax);
    }

    sealed class VariancePreservingDiffusion(double betaMin, double betaMax) : LinearDiffusion
    {
        double B(double t) => betaMin + t * (betaMax - betaMin);
        public override double Drift(double t) => -0.5 * B(t);
        public override double DiffusionSquared(double t) => B(t);
        public override double Alpha(double t) => Math.Exp(-0.5 * (betaMin * t + 0.5 * (betaMax - betaMin) * t * t));
        public override double Sigma(double t) => Math.Sqrt(-double.ExpM1(-(betaMin * t + 0.5 * (betaMax - betaMin) * t * t)));
        public override double PriorVariance => 1;
    }

    sealed class VarianceExplodingDiffusion(double sigmaMin, double sigmaMax) : LinearDiffusion
    {
        public override double Drift(double t) => 0;
        public override double DiffusionSquared(double t) { double s = Sigma(t); return 2 * s * s * Math.Log(sigmaMax / sigmaMin); }
        public override double Alpha(double t) => 1;
        public override double Sigma(double t) => sigmaMin * Math.Pow(sigmaMax / sigmaMin, t);
        public override double PriorVariance => sigmaMax * sigmaMax;
    }
}
