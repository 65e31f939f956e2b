namespace Kiln.Methods.Variational;

/// <summary>
/// The linear-Gaussian latent model of Rainforth et al. (2018, section 4): z ~ N(μ, I_D), x | z ~ N(z, I_D), and the
/// encoder q(z | x) = N(A x + b, (2/3) I_D). log p(x) = log N(x; μ, 2 I) is exact, the posterior is N((μ + x)/2, I/2), so
/// the optimal encoder mean is A = I/2, b = μ/2 (its fixed variance 2/3 keeps every bound strictly below log p(x)).
/// </summary>
public static class LinearGaussian
{
    /// <summary>The encoder's fixed variance.</summary>
    public const double EncoderVariance = 2.0 / 3.0;

    static readonly double Log2Pi = Math.Log(2 * Math.PI);

    /// <summary>Exact log p(x) = log N(x; μ, 2 I) for one x [D] and μ [D] (float64 host math).</summary>
    /// <exception cref="ArgumentException">x and μ differ in length.</exception>
    public static double LogMarginal(double[] x, double[] mu)
    {
        if (x.Length != mu.Length) throw new ArgumentException($"linear_gaussian: x has {x.Length} entries but mu has {mu.Length}", nameof(mu));
        double sq = 0;
        for (int i = 0; i < x.Length; i++) sq += (x[i] - mu[i]) * (x[i] - mu[i]);
        return -0.5 * sq / 2 - 0.5 * x.Length * (Log2Pi + Math.Log(2));
    }

    /// <summary>
    /// Reparameterised log-weights log p(x, z) - log q(z | x) with z = A x + b + sqrt(2/3) ε: x [D], μ [..., D], A [D, D],
    /// b [..., D] and ε [..., M, K, D] (μ and b broadcast over the sample axes) give [..., M, K], differentiable in μ, A and b.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not fit.</exception>
    public static Tensor LogWeights(Tensor x, Tensor mu, Tensor a, Tensor b, Tensor eps)
    {
        int d = x.Shape[^1];
        if (x.Rank != 1 || a.Shape != new Shape(d, d) || mu.Shape[^1] != d || b.Shape[^1] != d || eps.Shape[^1] != d || eps.Rank < 3)
            throw new ShapeMismatchException("linear_gaussian_log_weights", nameof(eps), $"x {x.Shape}, mu {mu.Shape}, A {a.Shape}, b {b.Shape} and eps {eps.Shape} must be [D], [..., D], [D, D], [..., D] and [..., M, K, D]");
        var mean = (a.MatMul(x.Unsqueeze(1)).Squeeze(1) + b).Unsqueeze(-2).Unsqueeze(-2);   // [..., 1, 1, D]
        var z = mean + eps * Math.Sqrt(EncoderVariance);
        var m = mu.Unsqueeze(-2).Unsqueeze(-2);
        double c = -0.5 * d * Log2Pi;
        var logPrior = (z - m).Square().Sum(-1) * -0.5 + c;
        var logLik = (z - x).Square().Sum(-1) * -0.5 + c;
        var logQ = (z - mean).Square().Sum(-1) * (-0.5 / EncoderVariance) + (c - 0.5 * d * Math.Log(EncoderVariance));
        return logPrior + logLik - logQ;
    }
}
