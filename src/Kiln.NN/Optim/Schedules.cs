namespace Kiln.NN.Optim;

/// <summary>
/// The refined schedule of Defazio et al. 2023 ("When, Why and How Much? Adaptive Learning Rate Scheduling by
/// Refinement"): from the gradient norms ‖g_1‖ ... ‖g_T‖ of a prior run of T steps, w_t = ‖g_t‖⁻² and
/// η_t = w_t Σ_(p&gt;t) w_p, normalised to a peak of 1 and scaled by the learning rate. The last step's rate is 0 and
/// steps past T keep it; constant norms give exactly linear decay lr (T - 1 - s)/(T - 1) at 0-based step s. Noisy
/// norms are first smoothed by a median filter, as the paper does (its window is a fraction τ of T; here a count).
/// </summary>
public sealed class RefinedSchedule : LrSchedule
{
    readonly double[] _rates;

    /// <summary>Builds the schedule for a new run of as many steps as <paramref name="gradientNorms"/> has.</summary>
    /// <exception cref="ArgumentOutOfRangeException">lr negative or not finite, or the window not a positive odd count.</exception>
    /// <exception cref="ArgumentException">Fewer than 2 norms, or a norm that is not positive and finite.</exception>
    public RefinedSchedule(IReadOnlyList<double> gradientNorms, double lr, int smoothingWindow = 1)
    {
        if (!(lr >= 0) || double.IsInfinity(lr)) throw new ArgumentOutOfRangeException(nameof(lr), lr, "refined schedule: lr must be finite and non-negative");
        var m = Multipliers(gradientNorms, smoothingWindow);
        _rates = [.. m.Select(x => lr * x)];
        LearningRate = lr;
    }

    /// <summary>The peak learning rate.</summary>
    public double LearningRate { get; }

    /// <summary>The rate of each of the T steps (step T - 1 is 0).</summary>
    public IReadOnlyList<double> Rates => _rates;

    /// <inheritdoc/>
    protected override double Rate(int step) => _rates[Math.Min(step, _rates.Length - 1)];

    /// <summary>
    /// The refined multipliers η_t / max η (peak 1): w_t = m_t⁻², η_t = w_t Σ_(p&gt;t) w_p, m the median-filtered norms.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The window is not a positive odd count.</exception>
    /// <exception cref="ArgumentException">Fewer than 2 norms, or a norm that is not positive and finite.</exception>
    public static double[] Multipliers(IReadOnlyList<double> gradientNorms, int smoothingWindow = 1)
    {
        ArgumentNullException.ThrowIfNull(gradientNorms);
        if (gradientNorms.Count < 2) throw new ArgumentException($"refined schedule: needs at least 2 gradient norms (the last step's rate is 0), got {gradientNorms.Count}", nameof(gradientNorms));
        for (int i = 0; i < gradientNorms.Count; i++)
            if (!(gradientNorms[i] > 0) || double.IsInfinity(gradientNorms[i]))
                throw new ArgumentException($"refined schedule: gradient norm {i} is {gradientNorms[i]}, must be positive and finite", nameof(gradientNorms));
        var norms = MedianFilter(gradientNorms, smoothingWindow);
        int n = norms.Length;
        // w_t scaled by min² (cancels in the normalisation): constant norms give w = 1 and integer tails, so the
        // multipliers are exactly (T - 1 - s)/(T - 1), and tiny or huge norms cannot overflow.
        double min = norms.Min();
        var w = norms.Select(g => (min / g) * (min / g)).ToArray();
        var eta = new double[n];
        double tail = 0;
        for (int t = n - 1; t >= 0; t--) { eta[t] = w[t] * tail; tail += w[t]; }
        double peak = eta.Max();
        return [.. eta.Select(e => e / peak)];
    }

    /// <summary>
    /// The running median over a centred window of <paramref name="window"/> values, the window cut at the ends (the
    /// median of the values it covers; the mean of the middle two for an even count). A window of 1 copies.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The window is not a positive odd count.</exception>
    public static double[] MedianFilter(IReadOnlyList<double> values, int window)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (window < 1 || window % 2 == 0) throw new ArgumentOutOfRangeException(nameof(window), window, "median filter: window must be a positive odd count");
        int n = values.Count, h = window / 2;
        var result = new double[n];
        for (int i = 0; i < n; i++)
        {
            int lo = Math.Max(0, i - h), hi = Math.Min(n - 1, i + h);
            var span = Enumerable.Range(lo, hi - lo + 1).Select(j => values[j]).Order().ToArray();
            int c = span.Length;
            result[i] = c % 2 == 1 ? span[c / 2] : (span[c / 2 - 1] + span[c / 2]) / 2;
        }
        return result;
    }
}

/// <summary>
/// The regret-optimal learning rate of online least squares under drift ("Learning Rate Schedules in the Presence of
/// Distribution Shift", Fahrbach et al. 2023). The model: x_t ~ N(0, s² I_d), y_t = x_tᵀθ_t + ε_t with noise
/// variance σ², and the target drifts as a random walk θ_(t+1) = θ_t + ξ_t, ξ_t ~ N(0, γ² I_d). For SGD
/// w_(t+1) = w_t − η_t x_t (x_tᵀw_t − y_t) the expected error e_t = E‖w_t − θ_t‖² obeys exactly
/// e_(t+1) = (1 − 2η s² + (d+2) s⁴ η²) e_t + η² d s² σ² + d γ² (the Gaussian fourth moment), whose minimiser is
/// η_t = e_t / ((d+2) s² e_t + d σ²). The minimum is increasing in e_t, so taking it at every step minimises every
/// later e_t and the cumulative regret Σ s² e_t over all schedules. Without drift the rate decays like 1/t; with
/// drift it settles at <see cref="StationaryRate"/>, which grows with γ: shift calls for more exploration. The paper
/// derives the same schedule from a continuous-time (SDE) limit of this recursion.
/// </summary>
public sealed class DriftSchedule : LrSchedule
{
    readonly List<double> _errors;
    readonly object _gate = new();

    /// <summary>Creates the schedule of a d-dimensional problem.</summary>
    /// <param name="dimension">d ≥ 1.</param>
    /// <param name="noiseVariance">σ², the label noise variance (≥ 0).</param>
    /// <param name="driftVariance">γ², the per-coordinate variance of the target's step each round (≥ 0).</param>
    /// <param name="initialError">e_0 = E‖w_0 − θ_0‖² (&gt; 0).</param>
    /// <param name="featureVariance">s², the per-coordinate variance of the features (&gt; 0).</param>
    /// <exception cref="ArgumentOutOfRangeException">An argument is out of its range or not finite.</exception>
    public DriftSchedule(int dimension, double noiseVariance, double driftVariance, double initialError, double featureVariance = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dimension);
        Check(noiseVariance, nameof(noiseVariance), positive: false); Check(driftVariance, nameof(driftVariance), positive: false);
        Check(initialError, nameof(initialError), positive: true); Check(featureVariance, nameof(featureVariance), positive: true);
        Dimension = dimension; NoiseVariance = noiseVariance; DriftVariance = driftVariance; FeatureVariance = featureVariance;
        _errors = [initialError];
    }

    static void Check(double v, string name, bool positive)
    {
        if (!double.IsFinite(v) || v < 0 || (positive && v == 0))
            throw new ArgumentOutOfRangeException(name, v, $"drift schedule: {name} must be finite and {(positive ? "positive" : "non-negative")}");
    }

    /// <summary>d.</summary>
    public int Dimension { get; }
    /// <summary>σ².</summary>
    public double NoiseVariance { get; }
    /// <summary>γ².</summary>
    public double DriftVariance { get; }
    /// <summary>s².</summary>
    public double FeatureVariance { get; }

    /// <summary>The expected error e_t = E‖w_t − θ_t‖² when every step takes this schedule's rate.</summary>
    public double ExpectedError(int step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        lock (_gate)
        {
            while (_errors.Count <= step)
            {
                double e = _errors[^1];
                _errors.Add(NextError(e, Optimal(e)));
            }
            return _errors[step];
        }
    }

    /// <summary>The limit of the rate as t → ∞: η_∞ = e*/((d+2) s² e* + d σ²) at the fixed point e* of the optimal recursion (0 without drift).</summary>
    public double StationaryRate
    {
        get
        {
            // e*² = d γ² ((d+2) s² e* + d σ²)/s², the positive root.
            double d = Dimension, s2 = FeatureVariance, b = d * DriftVariance * (d + 2), c = d * d * DriftVariance * NoiseVariance / s2;
            double e = (b + Math.Sqrt(b * b + 4 * c)) / 2;
            return e == 0 ? 0 : Optimal(e);
        }
    }

    /// <summary>
    /// The expected cumulative regret Σ_(t&lt;T) E[(x_tᵀ(w_t − θ_t))²] = Σ s² e_t of <paramref name="steps"/> SGD steps
    /// from e_0 with the rate <paramref name="rate"/>(t), by the exact recursion: compares any schedule with this one.
    /// </summary>
    public double ExpectedRegret(Func<int, double> rate, int steps)
    {
        ArgumentNullException.ThrowIfNull(rate);
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        double e, sum = 0;
        lock (_gate) e = _errors[0];
        for (int t = 0; t < steps; t++) { sum += FeatureVariance * e; e = NextError(e, rate(t)); }
        return sum;
    }

    double Optimal(double e) => e / ((Dimension + 2) * FeatureVariance * e + Dimension * NoiseVariance);

    double NextError(double e, double eta)
    {
        double s2 = FeatureVariance, d = Dimension;
        return (1 - 2 * eta * s2 + (d + 2) * s2 * s2 * eta * eta) * e + eta * eta * d * s2 * NoiseVariance + d * DriftVariance;
    }

    /// <inheritdoc/>
    protected override double Rate(int step) => Optimal(ExpectedError(step));
}
