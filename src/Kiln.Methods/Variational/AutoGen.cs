namespace Kiln.Methods.Variational;

/// <summary>
/// AutoGen (Mansbridge, Fierimonte, Feige and Barber, "Improving latent variable descriptiveness with AutoGen", 2018): the
/// generative model p(z) p(x | z) is tied to m perfect reconstructions x⁽¹⁾ = … = x⁽ᵐ⁾ = x through the same z, so the
/// objective is log ∫ p(z) p(x | z)^(1+m) dz = log p(x) + log E_{p(z|x)}[p(x | z)^m] (data log-likelihood plus the
/// likelihood of perfect reconstruction). Jensen with q(z | x) gives the VAE bound with a pre-factor on the reconstruction
/// term: (1 + m) E_q[log p(x | z)] - KL(q(z | x) ‖ p(z)); m = 0 is the ELBO.
/// </summary>
public static class AutoGen
{
    /// <summary>
    /// The AutoGen bound (1 + m)·mean_k log p(x | z_k) - KL(q ‖ p(z)) from reconstruction log-likelihoods [..., K] of
    /// z_k ~ q(z | x) (K = 1 with the expectation itself when it is closed form) and the KL [...]; returns [...].
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">m is negative.</exception>
    /// <exception cref="ShapeMismatchException">The KL's shape is not the log-likelihoods' without their last axis.</exception>
    /// <exception cref="ArgumentException">An input is not floating point, or there are no samples.</exception>
    public static Tensor Bound(Tensor reconstructionLogLikelihood, Tensor kl, int m)
    {
        ArgumentNullException.ThrowIfNull(reconstructionLogLikelihood);
        ArgumentNullException.ThrowIfNull(kl);
        if (m < 0) throw new ArgumentOutOfRangeException(nameof(m), m, "autogen: the number of tied reconstructions m must be non-negative");
        var l = reconstructionLogLikelihood;
        if (!l.DType.IsFloating() || !kl.DType.IsFloating()) throw new ArgumentException($"autogen: inputs must be floating point, not {l.DType} and {kl.DType}", nameof(kl));
        if (l.Rank == 0 || l.Shape[^1] == 0) throw new ArgumentException($"autogen: reconstruction log-likelihoods {l.Shape} need a non-empty sample axis [..., K]", nameof(reconstructionLogLikelihood));
        var expected = new Shape([.. Enumerable.Range(0, l.Rank - 1).Select(i => l.Shape[i])]);
        if (kl.Shape != expected) throw new ShapeMismatchException("autogen", nameof(kl), expected, kl.Shape, "KL must have the log-likelihoods' shape without the sample axis");
        return l.Mean(-1) * (1 + m) - kl;
    }

    /// <summary>
    /// Importance log-weights of the tied model, (1 + m) log p(x | z) + log p(z) - log q(z | x), all of one shape; feed
    /// them to <see cref="Kiln.NN.VariationalBounds"/> for a sampled (or importance-weighted) AutoGen bound. They are
    /// constant, equal to the tied log-likelihood, when q is the tied posterior ∝ p(z) p(x | z)^(1+m).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">m is negative.</exception>
    /// <exception cref="ShapeMismatchException">The three inputs differ in shape.</exception>
    public static Tensor LogWeights(Tensor reconstructionLogLikelihood, Tensor logPrior, Tensor logQ, int m)
    {
        ArgumentNullException.ThrowIfNull(reconstructionLogLikelihood);
        ArgumentNullException.ThrowIfNull(logPrior);
        ArgumentNullException.ThrowIfNull(logQ);
        if (m < 0) throw new ArgumentOutOfRangeException(nameof(m), m, "autogen: the number of tied reconstructions m must be non-negative");
        if (logPrior.Shape != reconstructionLogLikelihood.Shape) throw new ShapeMismatchException("autogen_log_weights", nameof(logPrior), reconstructionLogLikelihood.Shape, logPrior.Shape);
        if (logQ.Shape != reconstructionLogLikelihood.Shape) throw new ShapeMismatchException("autogen_log_weights", nameof(logQ), reconstructionLogLikelihood.Shape, logQ.Shape);
        return reconstructionLogLikelihood * (1 + m) + logPrior - logQ;
    }
}
