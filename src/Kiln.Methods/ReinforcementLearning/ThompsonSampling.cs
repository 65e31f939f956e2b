namespace Kiln.Methods.ReinforcementLearning;

/// <summary>
/// The Normal-Gamma posterior of a Gaussian arm with unknown mean μ and precision τ = 1/σ²:
/// τ ~ Gamma(<see cref="Alpha"/>, rate <see cref="Beta"/>), μ | τ ~ N(<see cref="Mean"/>, 1/(<see cref="Kappa"/> τ)).
/// </summary>
/// <param name="Mean">μ₀, the posterior mean of μ.</param>
/// <param name="Kappa">κ, the pseudo-count of the mean.</param>
/// <param name="Alpha">α, the Gamma shape of the precision.</param>
/// <param name="Beta">β, the Gamma rate of the precision.</param>
public readonly record struct NormalGamma(double Mean, double Kappa, double Alpha, double Beta)
{
    /// <summary>Checks that κ, α, β are positive and finite and μ₀ finite.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A parameter is out of range.</exception>
    public NormalGamma Validated()
    {
        if (!double.IsFinite(Mean)) throw new ArgumentOutOfRangeException(nameof(Mean), Mean, "normal-gamma: the mean must be finite");
        if (!(Kappa > 0) || double.IsInfinity(Kappa)) throw new ArgumentOutOfRangeException(nameof(Kappa), Kappa, "normal-gamma: kappa must be positive and finite");
        if (!(Alpha > 0) || double.IsInfinity(Alpha)) throw new ArgumentOutOfRangeException(nameof(Alpha), Alpha, "normal-gamma: alpha must be positive and finite");
        if (!(Beta > 0) || double.IsInfinity(Beta)) throw new ArgumentOutOfRangeException(nameof(Beta), Beta, "normal-gamma: beta must be positive and finite");
        return this;
    }

    /// <summary>
    /// The conjugate update by one reward x: κ' = κ+1, μ' = (κμ + x)/(κ+1), α' = α + 1/2, β' = β + κ(x-μ)²/(2(κ+1)).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">x is not finite.</exception>
    public NormalGamma Update(double x)
    {
        if (!double.IsFinite(x)) throw new ArgumentOutOfRangeException(nameof(x), x, "normal-gamma: the reward must be finite");
        double d = x - Mean;
        return new(Mean + d / (Kappa + 1), Kappa + 1, Alpha + 0.5, Beta + Kappa * d * d / (2 * (Kappa + 1)));
    }

    /// <summary>E[σ²] = β/(α-1) (infinite while α ≤ 1).</summary>
    public double ExpectedVariance => Alpha > 1 ? Beta / (Alpha - 1) : double.PositiveInfinity;

    /// <summary>One posterior draw (μ, τ): τ ~ Gamma(α, β), then μ ~ N(μ₀, 1/(κτ)).</summary>
    public (double Mean, double Precision) Sample(Random rng)
    {
        double tau = Sampling.Gamma(rng, Alpha, Beta);
        return (Mean + Sampling.Normal(rng) / Math.Sqrt(Kappa * tau), tau);
    }
}

/// <summary>A K-armed bandit policy: picks an arm, then sees its reward.</summary>
public interface IBanditPolicy
{
    /// <summary>The arm to pull next.</summary>
    int Select(Random rng);

    /// <summary>Records the reward of <paramref name="arm"/>.</summary>
    void Observe(int arm, double reward);
}

/// <summary>
/// Variance-adaptive Thompson sampling (Saha and Kveton, "Only Pay for What Is Uncertain", 2023): every arm keeps a
/// Normal-Gamma posterior over its unknown mean and variance; each round draws (μ_k, τ_k) from every posterior and pulls
/// argmax μ_k, so arms whose rewards turn out to have low variance are resolved after few pulls.
/// </summary>
public sealed class VarianceAdaptiveThompsonSampling : IBanditPolicy
{
    readonly NormalGamma[] _posteriors;

    /// <summary>Starts every one of <paramref name="arms"/> arms at <paramref name="prior"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Fewer than one arm, or an invalid prior.</exception>
    public VarianceAdaptiveThompsonSampling(int arms, NormalGamma prior)
    {
        if (arms < 1) throw new ArgumentOutOfRangeException(nameof(arms), arms, "variance-adaptive TS: needs at least one arm");
        _posteriors = Enumerable.Repeat(prior.Validated(), arms).ToArray();
    }

    /// <summary>The current posteriors, one per arm.</summary>
    public IReadOnlyList<NormalGamma> Posteriors => _posteriors;

    /// <inheritdoc/>
    public int Select(Random rng)
    {
        var draws = new double[_posteriors.Length];
        for (int k = 0; k < draws.Length; k++) draws[k] = _posteriors[k].Sample(rng).Mean;
        return Sampling.ArgMax(draws);
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">The arm is out of range.</exception>
    public void Observe(int arm, double reward)
    {
        if ((uint)arm >= (uint)_posteriors.Length) throw new ArgumentOutOfRangeException(nameof(arm), arm, $"variance-adaptive TS: arm must be in [0, {_posteriors.Length})");
        _posteriors[arm] = _posteriors[arm].Update(reward);
    }
}

/// <summary>
/// Gaussian Thompson sampling with known reward variances σ_k²: prior μ_k ~ N(m₀, v₀), posterior precision
/// 1/v₀ + n_k/σ_k² and mean (m₀/v₀ + Σx/σ_k²)/precision. The baseline variance-adaptive TS is compared with, run with the
/// true variances (oracle) or a common upper bound (the usual conservative choice).
/// </summary>
public sealed class KnownVarianceThompsonSampling : IBanditPolicy
{
    readonly double[] _variances, _precision, _weightedSum;

    /// <summary>Creates the policy for arms with reward variances <paramref name="variances"/>.</summary>
    /// <exception cref="ArgumentException">No arms, or a variance (or the prior variance) is not positive and finite.</exception>
    public KnownVarianceThompsonSampling(double[] variances, double priorMean, double priorVariance)
    {
        ArgumentNullException.ThrowIfNull(variances);
        if (variances.Length == 0) throw new ArgumentException("known-variance TS: needs at least one arm", nameof(variances));
        foreach (var v in variances)
            if (!(v > 0) || double.IsInfinity(v)) throw new ArgumentException($"known-variance TS: variance {v} must be positive and finite", nameof(variances));
        if (!(priorVariance > 0) || double.IsInfinity(priorVariance)) throw new ArgumentOutOfRangeException(nameof(priorVariance), priorVariance, "known-variance TS: the prior variance must be positive and finite");
        if (!double.IsFinite(priorMean)) throw new ArgumentOutOfRangeException(nameof(priorMean), priorMean, "known-variance TS: the prior mean must be finite");
        _variances = (double[])variances.Clone();
        _precision = Enumerable.Repeat(1 / priorVariance, variances.Length).ToArray();
        _weightedSum = Enumerable.Repeat(priorMean / priorVariance, variances.Length).ToArray();
    }

    /// <summary>The posterior mean and variance of arm <paramref name="arm"/>.</summary>
    public (double Mean, double Variance) Posterior(int arm) => (_weightedSum[arm] / _precision[arm], 1 / _precision[arm]);

    /// <inheritdoc/>
    public int Select(Random rng)
    {
        var draws = new double[_variances.Length];
        for (int k = 0; k < draws.Length; k++) draws[k] = _weightedSum[k] / _precision[k] + Sampling.Normal(rng) / Math.Sqrt(_precision[k]);
        return Sampling.ArgMax(draws);
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">The arm is out of range, or the reward is not finite.</exception>
    public void Observe(int arm, double reward)
    {
        if ((uint)arm >= (uint)_variances.Length) throw new ArgumentOutOfRangeException(nameof(arm), arm, $"known-variance TS: arm must be in [0, {_variances.Length})");
        if (!double.IsFinite(reward)) throw new ArgumentOutOfRangeException(nameof(reward), reward, "known-variance TS: the reward must be finite");
        _precision[arm] += 1 / _variances[arm];
        _weightedSum[arm] += reward / _variances[arm];
    }
}

/// <summary>Runs bandit policies on Gaussian arms.</summary>
public static class GaussianBandit
{
    /// <summary>
    /// Pulls <paramref name="horizon"/> arms chosen by <paramref name="policy"/> on arms with rewards N(means_k, stds_k²) and
    /// returns the cumulative pseudo-regret Σ_t (max_k means_k - means_{A_t}) after each round.
    /// </summary>
    /// <exception cref="ArgumentException">The arrays are empty or differ in length, a std is negative, or the horizon is negative.</exception>
    public static double[] CumulativeRegret(double[] means, double[] stds, IBanditPolicy policy, int horizon, Random rng)
    {
        ArgumentNullException.ThrowIfNull(means);
        ArgumentNullException.ThrowIfNull(stds);
        ArgumentNullException.ThrowIfNull(policy);
        if (means.Length == 0 || means.Length != stds.Length)
            throw new ArgumentException($"gaussian bandit: means ({means.Length}) and stds ({stds.Length}) must be non-empty and of one length", nameof(stds));
        if (stds.Any(s => !(s >= 0))) throw new ArgumentException($"gaussian bandit: stds [{string.Join(", ", stds)}] must be non-negative", nameof(stds));
        if (horizon < 0) throw new ArgumentOutOfRangeException(nameof(horizon), horizon, "gaussian bandit: the horizon must be non-negative");
        double best = means.Max(), total = 0;
        var regret = new double[horizon];
        for (int t = 0; t < horizon; t++)
        {
            int a = policy.Select(rng);
            policy.Observe(a, means[a] + stds[a] * Sampling.Normal(rng));
            total += best - means[a];
            regret[t] = total;
        }
        return regret;
    }
}
