using Kiln.NN;

namespace Kiln.Methods.Probabilistic;

/// <summary>
/// Flexible model aggregation for quantile regression (Fakoor et al., 2023), the quantile-level-dependent form: the
/// aggregate of M models' quantile predictions q^m [n, K] is q_k = sum_m w_mk q^m_k with w_.k = softmax(a_.k) (a
/// convex combination per level), the weights fitted by AdamW on the pinball loss; predictions are then sorted along the
/// levels (rearrangement: by the sorting theorem it never raises the pinball loss summed over levels and removes
/// quantile crossing), and <see cref="ConformalizedInterval"/> calibrates an interval from a pair of levels.
/// </summary>
public sealed class QuantileAggregator
{
    readonly Parameter _logits;

    QuantileAggregator(Parameter logits, double[] quantiles) { _logits = logits; Quantiles = quantiles; }

    /// <summary>The quantile levels tau_1 &lt; .. &lt; tau_K.</summary>
    public IReadOnlyList<double> Quantiles { get; }

    /// <summary>The weights w [M, K] (each column sums to 1).</summary>
    public Tensor Weights => _logits.Detach().Softmax(0);

    /// <summary>Sorts each row of quantile predictions q [n, K] ascending (the rearrangement of Chernozhukov et al.).</summary>
    public static Tensor Rearrange(Tensor q)
    {
        ArgumentNullException.ThrowIfNull(q);
        if (q.Rank != 2) throw new ArgumentException($"rearrange: q must be [n, K], got {q.Shape}", nameof(q));
        return q.Sort(1).Values;
    }

    /// <summary>
    /// Fits the weights to the models' predictions <paramref name="predictions"/> (each [n, K]) and targets
    /// <paramref name="y"/> ([n]) at levels <paramref name="quantiles"/> (ascending in (0, 1)).
    /// </summary>
    /// <exception cref="ArgumentException">No model, shapes disagree, or levels not ascending in (0, 1).</exception>
    public static QuantileAggregator Fit(IReadOnlyList<Tensor> predictions, Tensor y, IReadOnlyList<double> quantiles, int steps = 300, double learningRate = 0.05)
    {
        var stack = Stack(predictions, quantiles);
        ArgumentNullException.ThrowIfNull(y);
        if (y.Rank != 1 || y.Shape[0] != stack.Shape[1]) throw new ArgumentException($"quantile aggregation: y must be [{stack.Shape[1]}], got {y.Shape}", nameof(y));
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        if (!(learningRate > 0) || double.IsInfinity(learningRate)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "quantile aggregation: the learning rate must be positive and finite");
        var logits = new Parameter(Tensor.Zeros(new Shape(stack.Shape[0], stack.Shape[2]), DType.Float64, stack.Device));
        var model = new QuantileAggregator(logits, quantiles.ToArray());
        var opt = new AdamW([logits], learningRate, weightDecay: 0);
        var yd = y.To(DType.Float64);
        for (int s = 0; s < steps; s++)
        {
            opt.ZeroGrad();
            QuantileLosses.Pinball(Combine(stack, logits), yd, model.Quantiles).Backward();
            opt.Step();
        }
        return model;
    }

    /// <summary>The aggregate of the models' predictions (each [n, K]), rearranged: Float64 [n, K].</summary>
    public Tensor Predict(IReadOnlyList<Tensor> predictions)
    {
        var stack = Stack(predictions, Quantiles);
        if (stack.Shape[0] != _logits.Shape[0]) throw new ArgumentException($"quantile aggregation: fitted on {_logits.Shape[0]} models, given {stack.Shape[0]}", nameof(predictions));
        using (Autograd.NoGrad()) return Rearrange(Combine(stack, _logits));
    }

    static Tensor Combine(Tensor stack, Tensor logits) => (stack * logits.Softmax(0).Unsqueeze(1)).Sum(0);

    static Tensor Stack(IReadOnlyList<Tensor> predictions, IReadOnlyList<double> quantiles)
    {
        ArgumentNullException.ThrowIfNull(predictions); ArgumentNullException.ThrowIfNull(quantiles);
        if (predictions.Count == 0) throw new ArgumentException("quantile aggregation: no model", nameof(predictions));
        for (int k = 0; k < quantiles.Count; k++)
            if (!(quantiles[k] > 0 && quantiles[k] < 1) || (k > 0 && !(quantiles[k] > quantiles[k - 1])))
                throw new ArgumentException($"quantile aggregation: levels must be ascending in (0, 1), got [{string.Join(", ", quantiles)}]", nameof(quantiles));
        var first = predictions[0];
        if (predictions.Any(p => p.Rank != 2 || p.Shape != first.Shape || p.Shape[1] != quantiles.Count))
            throw new ArgumentException($"quantile aggregation: every model's predictions must be [n, {quantiles.Count}], got {string.Join(", ", predictions.Select(p => p.Shape.ToString()))}", nameof(predictions));
        return Tensor.Stack(predictions.Select(p => p.To(DType.Float64)).ToArray(), 0);
    }

    /// <summary>
    /// Conformalized quantile regression (Romano et al., 2019), the calibration used after aggregation: scores
    /// E_i = max(lo_i - y_i, y_i - hi_i) on a calibration split, Q their split-conformal quantile at
    /// <paramref name="alpha"/>; the interval [lo - Q, hi + Q] then covers a new y with probability &gt;= 1 - alpha.
    /// Returns Q.
    /// </summary>
    public static double ConformalizedInterval(Tensor lower, Tensor upper, Tensor y, double alpha)
    {
        ArgumentNullException.ThrowIfNull(lower); ArgumentNullException.ThrowIfNull(upper); ArgumentNullException.ThrowIfNull(y);
        if (lower.Rank != 1 || lower.Shape != upper.Shape || lower.Shape != y.Shape) throw new ArgumentException($"cqr: lower, upper and y must all be [n], got {lower.Shape}, {upper.Shape} and {y.Shape}", nameof(y));
        var yd = y.To(DType.Float64);
        var scores = Tensor.Maximum(lower.To(DType.Float64) - yd, yd - upper.To(DType.Float64)).ToArray<double>();
        return ConformalRiskControl.SplitConformalQuantile(scores, alpha);
    }
}
