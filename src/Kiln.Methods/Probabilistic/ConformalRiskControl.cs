namespace Kiln.Methods.Probabilistic;

/// <summary>
/// Conformal risk control (Angelopoulos et al., 2024) and its non-exchangeable form (Farinhas et al., 2024). Each
/// calibration point i has a loss curve L_i(lambda) on an ascending grid of lambdas, non-increasing in lambda and bounded
/// by B. With weights w_i in [0, 1] (all 1 for exchangeable data), normalized w~_i = w_i / (1 + sum_j w_j) and
/// w~_{n+1} = 1 / (1 + sum_j w_j), the chosen lambda is the smallest grid value with
/// sum_i w~_i L_i(lambda) + w~_{n+1} B &lt;= alpha; with unit weights that is n/(n+1) R_n(lambda) + B/(n+1) &lt;= alpha.
/// Then E[L_{n+1}(lambda)] &lt;= alpha (exchangeable), or &lt;= alpha + B sum_i w~_i d_TV(Z, Z^i) under drift.
/// </summary>
public static class ConformalRiskControl
{
    /// <summary>
    /// The index into the lambda grid that conformal risk control picks for the losses <paramref name="losses"/>
    /// ([n, m]: L_i(lambda_j), non-increasing along j), with unit weights; m - 1 when no grid value qualifies (the
    /// paper's lambda_max, whose loss it assumes is at most alpha).
    /// </summary>
    /// <exception cref="ArgumentException">The losses are not [n, m] with m &gt;= 1, or exceed B or are negative.</exception>
    /// <exception cref="ArgumentOutOfRangeException">alpha or B is not positive, or alpha exceeds B.</exception>
    public static int Calibrate(Tensor losses, double alpha, double bound = 1) => CalibrateWeighted(losses, null, alpha, bound);

    /// <summary>
    /// Non-exchangeable conformal risk control: as <see cref="Calibrate"/> with weights <paramref name="weights"/>
    /// ([n], each in [0, 1]; null for all 1), e.g. w_i = rho^(n + 1 - i) to favour recent points under drift.
    /// </summary>
    /// <exception cref="ArgumentException">The shapes disagree, a loss is outside [0, B], or a weight is outside [0, 1].</exception>
    /// <exception cref="ArgumentOutOfRangeException">alpha or B is not positive, or alpha exceeds B.</exception>
    public static int CalibrateWeighted(Tensor losses, Tensor? weights, double alpha, double bound = 1)
    {
        var risk = WeightedRisk(losses, weights, bound);
        if (!(alpha > 0) || alpha > bound) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, $"conformal risk control: alpha must be in (0, B = {bound}]");
        for (int j = 0; j < risk.Length; j++) if (risk[j] <= alpha) return j;
        return risk.Length - 1;
    }

    /// <summary>
    /// The inflated empirical risk sum_i w~_i L_i(lambda_j) + w~_{n+1} B at every grid point j, which
    /// <see cref="CalibrateWeighted"/> compares with alpha.
    /// </summary>
    /// <exception cref="ArgumentException">The shapes disagree, a loss is outside [0, B], or a weight is outside [0, 1].</exception>
    public static double[] WeightedRisk(Tensor losses, Tensor? weights, double bound = 1)
    {
        ArgumentNullException.ThrowIfNull(losses);
        if (!(bound > 0) || double.IsInfinity(bound)) throw new ArgumentOutOfRangeException(nameof(bound), bound, "conformal risk control: the loss bound B must be positive and finite");
        if (losses.Rank != 2 || losses.Shape[1] == 0) throw new ArgumentException($"conformal risk control: losses must be [n, m] with m >= 1, got {losses.Shape}", nameof(losses));
        int n = losses.Shape[0];
        var l = losses.To(DType.Float64);
        var lh = l.ToArray<double>();
        if (lh.Any(v => !(v >= 0 && v <= bound))) throw new ArgumentException($"conformal risk control: losses must lie in [0, B = {bound}]", nameof(losses));
        Tensor w;
        if (weights is null) w = Tensor.Ones(new Shape(n), DType.Float64, losses.Device);
        else
        {
            if (weights.Rank != 1 || weights.Shape[0] != n) throw new ArgumentException($"conformal risk control: weights must be [{n}], got {weights.Shape}", nameof(weights));
            w = weights.To(DType.Float64);
            if (w.ToArray<double>().Any(v => !(v >= 0 && v <= 1))) throw new ArgumentException("conformal risk control: weights must lie in [0, 1]", nameof(weights));
        }
        double total = 1 + w.Sum().Item();
        var risk = (w.Unsqueeze(1) * l).Sum(0) / total + bound / total;
        return risk.ToArray<double>();
    }

    /// <summary>
    /// Split conformal's threshold: the ceil((n + 1)(1 - alpha))-th smallest of the <paramref name="scores"/>
    /// (+infinity when that exceeds n). Conformal risk control with the miscoverage loss 1[s_i &gt; lambda] on the grid of
    /// sorted scores picks exactly this value.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">alpha is outside (0, 1).</exception>
    public static double SplitConformalQuantile(IReadOnlyList<double> scores, double alpha)
    {
        ArgumentNullException.ThrowIfNull(scores);
        if (!(alpha > 0 && alpha < 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "split conformal: alpha must be in (0, 1)");
        int n = scores.Count;
        // The 1e-12 keeps an integer (n + 1)(1 - alpha) that rounds up (20 * 0.9 = 18.000000000000004) from skipping a rank.
        int k = (int)Math.Ceiling((n + 1) * (1 - alpha) - 1e-12);
        if (k > n) return double.PositiveInfinity;
        return scores.OrderBy(s => s).ElementAt(k - 1);
    }
}
