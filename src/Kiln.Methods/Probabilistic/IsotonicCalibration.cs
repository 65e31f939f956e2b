namespace Kiln.Methods.Probabilistic;

/// <summary>
/// Isotonic (non-decreasing) least-squares regression by the pool-adjacent-violators algorithm: the fitted values
/// minimize sum_i w_i (y_i - f_i)^2 over non-decreasing f in the order of x; prediction is the step function of the
/// fitted blocks (a point below the first block gets the first value, and a point between blocks the left block's).
/// </summary>
public sealed class IsotonicRegression
{
    readonly double[] _starts, _values;

    IsotonicRegression(double[] starts, double[] values) { _starts = starts; _values = values; }

    /// <summary>The fitted block values (non-decreasing), one per block.</summary>
    public IReadOnlyList<double> Values => _values;

    /// <summary>Fits to points (x_i, y_i) with optional positive weights.</summary>
    /// <exception cref="ArgumentException">No points, lengths disagree, a value is not finite, or a weight is not positive.</exception>
    public static IsotonicRegression Fit(IReadOnlyList<double> x, IReadOnlyList<double> y, IReadOnlyList<double>? weights = null)
    {
        ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(y);
        int n = x.Count;
        if (n == 0 || y.Count != n || (weights is not null && weights.Count != n)) throw new ArgumentException($"isotonic regression: x, y (and weights) must have the same positive length, got {n}, {y.Count}{(weights is null ? "" : $", {weights.Count}")}", nameof(y));
        if (x.Concat(y).Any(v => !double.IsFinite(v))) throw new ArgumentException("isotonic regression: x and y must be finite", nameof(x));
        if (weights is not null && weights.Any(w => !(w > 0) || double.IsInfinity(w))) throw new ArgumentException("isotonic regression: weights must be positive and finite", nameof(weights));
        // Ties in x are pooled first (one mean per distinct x), then adjacent violators are merged on a stack.
        var order = Enumerable.Range(0, n).OrderBy(i => x[i]).ToArray();
        var blocks = new List<(double Start, double Sum, double Weight)>();
        foreach (int i in order)
        {
            double w = weights?[i] ?? 1;
            if (blocks.Count > 0 && blocks[^1].Start == x[i]) blocks[^1] = (x[i], blocks[^1].Sum + w * y[i], blocks[^1].Weight + w);
            else blocks.Add((x[i], w * y[i], w));
        }
        var stack = new List<(double Start, double Sum, double Weight)>();
        foreach (var b in blocks)
        {
            var cur = b;
            while (stack.Count > 0 && stack[^1].Sum / stack[^1].Weight >= cur.Sum / cur.Weight)
            {
                var top = stack[^1];
                stack.RemoveAt(stack.Count - 1);
                cur = (top.Start, top.Sum + cur.Sum, top.Weight + cur.Weight);
            }
            stack.Add(cur);
        }
        return new IsotonicRegression(stack.Select(s => s.Start).ToArray(), stack.Select(s => s.Sum / s.Weight).ToArray());
    }

    /// <summary>The step-function value at <paramref name="x"/>.</summary>
    public double Predict(double x)
    {
        int i = Array.BinarySearch(_starts, x);
        if (i < 0) i = ~i - 1;
        return _values[Math.Max(0, i)];
    }
}

/// <summary>
/// Causal isotonic calibration (van der Laan, Ulloa-Pérez, Carone and Luedtke, 2023): a CATE predictor tau(x) is
/// calibrated as theta(tau(x)), theta the isotonic regression of doubly robust (AIPW) pseudo-outcomes
/// chi_i = mu1(x_i) - mu0(x_i) + A_i (Y_i - mu1(x_i)) / pi(x_i) - (1 - A_i)(Y_i - mu0(x_i)) / (1 - pi(x_i))
/// on tau(x_i), fitted on a calibration split; E[chi | X] is the true CATE when either the outcome models or the
/// propensity are right.
/// </summary>
public static class CausalIsotonicCalibration
{
    /// <summary>The AIPW pseudo-outcomes chi_i (all inputs of one length; treatment A_i in {0, 1}, propensity in (0, 1)).</summary>
    /// <exception cref="ArgumentException">Lengths disagree, a treatment is not 0/1, or a propensity is outside (0, 1).</exception>
    public static double[] PseudoOutcomes(IReadOnlyList<double> y, IReadOnlyList<int> treatment, IReadOnlyList<double> mu0, IReadOnlyList<double> mu1, IReadOnlyList<double> propensity)
    {
        ArgumentNullException.ThrowIfNull(y); ArgumentNullException.ThrowIfNull(treatment); ArgumentNullException.ThrowIfNull(mu0); ArgumentNullException.ThrowIfNull(mu1); ArgumentNullException.ThrowIfNull(propensity);
        int n = y.Count;
        if (treatment.Count != n || mu0.Count != n || mu1.Count != n || propensity.Count != n) throw new ArgumentException("causal isotonic calibration: y, treatment, mu0, mu1 and propensity must have one length", nameof(treatment));
        if (treatment.Any(a => a is not (0 or 1))) throw new ArgumentException("causal isotonic calibration: treatments must be 0 or 1", nameof(treatment));
        if (propensity.Any(p => !(p > 0 && p < 1))) throw new ArgumentException("causal isotonic calibration: propensities must lie in (0, 1)", nameof(propensity));
        return Enumerable.Range(0, n).Select(i => mu1[i] - mu0[i] + (treatment[i] == 1 ? (y[i] - mu1[i]) / propensity[i] : -(y[i] - mu0[i]) / (1 - propensity[i]))).ToArray();
    }

    /// <summary>The calibrator theta: the isotonic regression of the pseudo-outcomes on the predictions.</summary>
    public static IsotonicRegression Fit(IReadOnlyList<double> predictions, IReadOnlyList<double> pseudoOutcomes) => IsotonicRegression.Fit(predictions, pseudoOutcomes);
}
