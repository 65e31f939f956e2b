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
