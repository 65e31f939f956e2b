namespace Kiln.Methods.Variational;

/// <summary>
/// Black-box proper losses for discrete generative models (Kimpara, Frongillo and Waggoner, "Proper Losses for Discrete
/// Generative Models", ICML 2023): the model p and the target q are known only through i.i.d. draws. A loss is proper when
/// its expectation is minimised at p = q; such losses are polynomials in (p, q) whose degree the draw counts must exceed,
/// which rules out a fixed-draw cross entropy, and a random (Poisson) number of draws restores it.
/// </summary>
public static class ProperLosses
{
    /// <summary>
    /// The degree-2 loss 1[x = x'] - 2·1[x = y] + 1[y = y'] per row, from two model draws x, x' and two target draws y, y'
    /// (Int64 [N] outcomes, or [N, L] sequences compared as whole rows). Its expectation is ‖p - q‖² = Σ_v (p_v - q_v)²,
    /// so it is proper and zero in expectation exactly when p = q. Returns Float64 [N].
    /// </summary>
    /// <exception cref="ArgumentException">A draw tensor is not Int64 or has rank other than 1 or 2.</exception>
    /// <exception cref="ShapeMismatchException">The four draw tensors differ in shape.</exception>
    public static Tensor SquaredDistance(Tensor model1, Tensor model2, Tensor target1, Tensor target2)
    {
        foreach (var (t, name) in new[] { (model1, nameof(model1)), (model2, nameof(model2)), (target1, nameof(target1)), (target2, nameof(target2)) })
        {
            ArgumentNullException.ThrowIfNull(t, name);
            if (t.DType != DType.Int64) throw new ArgumentException($"proper_squared_distance: {name} must hold Int64 outcomes, not {t.DType}", name);
            if (t.Rank is not (1 or 2)) throw new ArgumentException($"proper_squared_distance: {name} {t.Shape} must be [N] outcomes or [N, L] sequences", name);
            if (t.Shape != model1.Shape) throw new ShapeMismatchException("proper_squared_distance", name, model1.Shape, t.Shape, "all draws must share a shape");
        }
        Tensor Same(Tensor a, Tensor b)
        {
            var eq = a.Eq(b);
            return (a.Rank == 2 ? eq.All([1]) : eq).To(DType.Float64);
        }
        return Same(model1, model2) - Same(model1, target1) * 2 + Same(target1, target2);
    }

    /// <summary>
    /// Unbiased estimate of -log p(y) from a Poisson(<paramref name="rate"/>) number n of i.i.d. model draws
    /// (n = <paramref name="modelDraws"/>.Length): Σ_{k=1}^{n} (1/k)·1[x_1..x_k ≠ y] / P(N ≥ k). Since
    /// E[1[x_1..x_k ≠ y]] = (1 - p(y))^k and -log p = Σ_k (1 - p)^k / k, averaging over target draws y ~ q gives the cross
    /// entropy -Σ q log p, proper and minimised at p = q. Where p(y) = 0 every estimate is finite but their expectation
    /// is +∞.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The rate is not positive and finite.</exception>
    public static double PoissonLogLoss(ReadOnlySpan<long> modelDraws, long target, double rate)
    {
        if (!(rate > 0) || double.IsInfinity(rate)) throw new ArgumentOutOfRangeException(nameof(rate), rate, "proper_poisson_log_loss: rate must be positive and finite");
        double sum = 0;
        for (int k = 1; k <= modelDraws.Length && modelDraws[k - 1] != target; k++) sum += 1.0 / (k * PoissonTail(k, rate));
        return sum;
    }

    /// <summary>P(N ≥ k) for N ~ Poisson(rate), summed from the side that does not cancel.</summary>
    internal static double PoissonTail(int k, double rate)
    {
        if (k <= 0) return 1;
        double LogPmf(int j) => -rate + j * Math.Log(rate) - LogFactorial(j);
        double s = 0;
        if (k <= rate)
        {
            for (int j = 0; j < k; j++) s += Math.Exp(LogPmf(j));
            return 1 - s;
        }
        // Terms fall by rate / j < 1 past k, geometrically; stop once they no longer change the sum.
        for (int j = k; ; j++)
        {
            double t = Math.Exp(LogPmf(j));
            s += t;
            if (t <= s * 1e-17) return s;
        }
    }

    static double LogFactorial(int n)
    {
        double s = 0;
        for (int i = 2; i <= n; i++) s += Math.Log(i);
        return s;
    }
}
