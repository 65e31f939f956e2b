namespace Kiln.Methods.Generative;

/// <summary>
/// A Gaussian mixture with diagonal covariances, p(x) = Σ_k w_k N(x; μ_k, diag v_k), whose log-density and score are
/// exact. Under a <see cref="LinearDiffusion"/> it stays a mixture (μ_k → α μ_k, v_k → α² v_k + σ²), which gives the
/// exact score ∇ log q_t of every noise level: the analytic stand-in for a learned score network.
/// </summary>
public sealed class GaussianMixture
{
    /// <summary>The mixture weights w [K], normalized to sum to 1.</summary>
    public Tensor Weights { get; }

    /// <summary>The component means μ [K, d].</summary>
    public Tensor Means { get; }

    /// <summary>The component variances v [K, d] (diagonal covariances).</summary>
    public Tensor Variances { get; }

    /// <summary>The number of components K.</summary>
    public int Components => Means.Shape[0];

    /// <summary>The dimension d.</summary>
    public int Dims => Means.Shape[1];

    /// <summary>A mixture of the given weights [K] (positive; normalized here), means [K, d] and variances [K, d] (positive).</summary>
    /// <exception cref="ShapeMismatchException">The shapes do not agree, or K or d is 0.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A weight or variance is not positive and finite, or a mean is not finite.</exception>
    public GaussianMixture(Tensor weights, Tensor means, Tensor variances)
    {
        const string op = "gaussian_mixture";
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(means);
        ArgumentNullException.ThrowIfNull(variances);
        if (means.Rank != 2 || means.Shape[0] == 0 || means.Shape[1] == 0)
            throw new ShapeMismatchException(op, nameof(means), $"means must be [K, d] with K, d ≥ 1, got {means.Shape}");
        if (weights.Shape != new Shape(means.Shape[0])) throw new ShapeMismatchException(op, nameof(weights), new Shape(means.Shape[0]), weights.Shape);
        if (variances.Shape != means.Shape) throw new ShapeMismatchException(op, nameof(variances), means.Shape, variances.Shape);
        CheckEntries(weights, nameof(weights), positive: true);
        CheckEntries(means, nameof(means), positive: false);
        CheckEntries(variances, nameof(variances), positive: true);
        Weights = weights / weights.Sum();
        Means = means;
        Variances = variances;
    }

    // The diffused marginal of a validated mixture: no host read-back on every score evaluation.
    GaussianMixture(Tensor normalizedWeights, Tensor means, Tensor variances, bool _)
    {
        Weights = normalizedWeights;
        Means = means;
        Variances = variances;
    }

    static void CheckEntries(Tensor t, string name, bool positive)
    {
        foreach (double v in t.To(DType.Float64).ToArray<double>())
            if (!double.IsFinite(v) || (positive && !(v > 0)))
                throw new ArgumentOutOfRangeException(name, v, $"gaussian_mixture: every entry of {name} must be {(positive ? "positive and " : "")}finite, got {v}");
    }

    /// <summary>The marginal at time t of the mixture taken as the data distribution of <paramref name="process"/>: means α(t) μ_k, variances α(t)² v_k + σ(t)².</summary>
    /// <exception cref="ArgumentOutOfRangeException">t is outside [0, 1].</exception>
    public GaussianMixture Diffused(LinearDiffusion process, double t)
    {
        ArgumentNullException.ThrowIfNull(process);
        if (!(t >= 0 && t <= 1)) throw new ArgumentOutOfRangeException(nameof(t), t, "gaussian_mixture_diffused: t must be in [0, 1]");
        double a = process.Alpha(t), s = process.Sigma(t);
        return new GaussianMixture(Weights, a * Means, a * a * Variances + s * s, true);
    }

    /// <summary>log w_k + log N(x; μ_k, diag v_k) for each row of <paramref name="x"/> [n, d]: [n, K].</summary>
    /// <exception cref="ShapeMismatchException">x is not [n, d].</exception>
    public Tensor ComponentLogProb(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Rank != 2 || x.Shape[1] != Dims) throw new ShapeMismatchException("gaussian_mixture_log_prob", nameof(x), $"x must be [n, {Dims}], got {x.Shape}");
        var diff = x.Unsqueeze(1) - Means.Unsqueeze(0);
        var quad = (diff.Square() / Variances.Unsqueeze(0) + (2 * Math.PI * Variances.Unsqueeze(0)).Log()).Sum(2);
        return Weights.Log().Unsqueeze(0) - 0.5 * quad;
    }

    /// <summary>log p(x) for each row of <paramref name="x"/> [n, d]: [n].</summary>
    /// <exception cref="ShapeMismatchException">x is not [n, d].</exception>
    public Tensor LogProb(Tensor x) => ComponentLogProb(x).LogSumExp(1);

    /// <summary>The score ∇ₓ log p(x) = Σ_k r_k(x) (μ_k − x)/v_k, r the component posteriors, for each row of <paramref name="x"/> [n, d]: [n, d].</summary>
    /// <exception cref="ShapeMismatchException">x is not [n, d].</exception>
    public Tensor Score(Tensor x)
    {
        var r = ComponentLogProb(x).Softmax(1).Unsqueeze(2);
        return (r * (Means.Unsqueeze(0) - x.Unsqueeze(1)) / Variances.Unsqueeze(0)).Sum(1);
    }

    /// <summary>The exact score of the diffused marginal, (x, t) ↦ ∇ₓ log q_t(x), as a sampler's score function.</summary>
    public Func<Tensor, double, Tensor> DiffusedScore(LinearDiffusion process)
    {
        ArgumentNullException.ThrowIfNull(process);
        return (x, t) => Diffused(process, t).Score(x);
    }

    /// <summary><paramref name="n"/> draws [n, d]: a component by its weight, then its Gaussian.</summary>
    /// <exception cref="ArgumentOutOfRangeException">n is negative.</exception>
    public Tensor Sample(int n, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(generator);
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), n, "gaussian_mixture_sample: n must be non-negative");
        var k = FeynmanKacCorrector.Resample(Weights.Log(), n, ResamplingScheme.Multinomial, generator);
        var eps = Tensor.Randn(new Shape(n, Dims), generator, dtype: Means.DType, device: Means.Device);
        return Means.IndexSelect(0, k) + Variances.IndexSelect(0, k).Sqrt() * eps;
    }
}
