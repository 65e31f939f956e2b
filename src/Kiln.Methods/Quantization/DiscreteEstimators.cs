namespace Kiln.Methods.Quantization;

/// <summary>
/// Gradient estimators for one-hot samples D ~ Categorical(softmax(theta)) over the last axis: the forward returns the
/// sample exactly, and only the backward differs. Each has an overload that takes the sample, so expectations over
/// samples can be enumerated, and one that draws it (Gumbel-max: argmax(theta + Gumbel noise) is an exact draw).
/// </summary>
public static class DiscreteEstimators
{
    /// <summary>One-hot draws from softmax(<paramref name="logits"/>) over the last axis, as the logits' dtype.</summary>
    /// <exception cref="ArgumentException">The logits have rank 0, an empty last axis, or are not floating point.</exception>
    public static Tensor Sample(Tensor logits, Generator generator)
    {
        Check("categorical_sample", logits);
        ArgumentNullException.ThrowIfNull(generator);
        using (Autograd.NoGrad())
        {
            var u = Tensor.Rand(logits.Shape, generator, 0, 1, DType.Float64, logits.Device);
            var gumbel = -(-u.Log()).Log();
            return (logits.Detach().To(DType.Float64) + gumbel).ArgMax(-1).OneHot(logits.Shape[-1], logits.DType);
        }
    }

    /// <summary>
    /// ReinMax (Liu et al., 2023, Algorithm 1, as the authors' reference implementation): forward D; backward
    /// dL/dtheta = 2 J(pi1) g - J(pi0) g / 2 with g = dL/dD, pi0 = softmax(theta), pi1 = (softmax(theta/tau) + D) / 2
    /// and J(p) g = p * g - p (p . g), the softmax Jacobian. A second-order (Heun) estimate of the gradient of
    /// E[f(D)]; with tau = 1 its expectation is exact for quadratic f.
    /// </summary>
    /// <param name="logits">theta [..., K].</param>
    /// <param name="sample">A one-hot sample D of the logits' shape (treated as a constant).</param>
    /// <param name="tau">The temperature of pi1, positive.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="tau"/> is not positive and finite.</exception>
    /// <exception cref="ShapeMismatchException">The sample's shape differs from the logits'.</exception>
    public static Tensor ReinMax(Tensor logits, Tensor sample, double tau = 1)
    {
        CheckSample("reinmax", logits, sample);
        if (!(tau > 0 && double.IsFinite(tau))) throw new ArgumentOutOfRangeException(nameof(tau), tau, "reinmax: tau must be positive and finite");
        var theta = logits.Detach();
        var d = sample.Detach().To(logits.DType).Clone();
        return Tensor.Custom("reinmax", [logits], _ => d, g =>
        {
            var pi0 = theta.Softmax(-1);
            var pi1 = 0.5 * ((theta / tau).Softmax(-1) + d);
            return [2.0 * SoftmaxJvp(pi1, g) - 0.5 * SoftmaxJvp(pi0, g)];
        });
    }

    /// <summary>ReinMax on a sample drawn from softmax(<paramref name="logits"/>) with <paramref name="generator"/>.</summary>
    public static Tensor ReinMax(Tensor logits, double tau, Generator generator) => ReinMax(logits, Sample(logits, generator), tau);

    /// <summary>
    /// The straight-through estimator for categorical samples (Bengio et al., 2013; the baseline ReinMax is compared
    /// against): forward D, backward dL/dtheta = J(softmax(theta)) g, the gradient of D + pi0 - sg[pi0].
    /// </summary>
    /// <exception cref="ShapeMismatchException">The sample's shape differs from the logits'.</exception>
    public static Tensor StraightThrough(Tensor logits, Tensor sample)
    {
        CheckSample("categorical_straight_through", logits, sample);
        var theta = logits.Detach();
        var d = sample.Detach().To(logits.DType).Clone();
        return Tensor.Custom("categorical_straight_through", [logits], _ => d, g => [SoftmaxJvp(theta.Softmax(-1), g)]);
    }

    /// <summary>The straight-through estimator on a sample drawn with <paramref name="generator"/>.</summary>
    public static Tensor StraightThrough(Tensor logits, Generator generator) => StraightThrough(logits, Sample(logits, generator));

    // (diag(p) - p p^T) g over the last axis.
    static Tensor SoftmaxJvp(Tensor p, Tensor g) => p * g - p * (p * g).Sum(-1, keepDim: true);

    static void Check(string op, Tensor logits)
    {
        ArgumentNullException.ThrowIfNull(logits);
        if (logits.Rank == 0 || logits.Shape[-1] == 0) throw new ArgumentException($"{op}: logits have shape {logits.Shape}; they need a non-empty last axis of categories", nameof(logits));
        if (!logits.DType.IsFloating()) throw new ArgumentException($"{op}: logits must be floating point, not {logits.DType}", nameof(logits));
    }

    static void CheckSample(string op, Tensor logits, Tensor sample)
    {
        Check(op, logits);
        ArgumentNullException.ThrowIfNull(sample);
        if (sample.Shape != logits.Shape) throw new ShapeMismatchException(op, nameof(sample), logits.Shape, sample.Shape, "the sample must have the logits' shape");
    }
}
