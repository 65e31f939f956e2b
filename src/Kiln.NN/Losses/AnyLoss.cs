namespace Kiln.NN;

/// <summary>The confusion-matrix metrics that <see cref="AnyLoss"/> turns into losses (1 - metric).</summary>
public enum AnyLossMetric
{
    /// <summary>(TP + TN) / (TP + TN + FP + FN).</summary>
    Accuracy,
    /// <summary>2 TP / (2 TP + FP + FN).</summary>
    F1,
    /// <summary>(1 + beta^2) TP / ((1 + beta^2) TP + beta^2 FN + FP).</summary>
    FBeta,
    /// <summary>sqrt(TP / (TP + FN) * TN / (TN + FP)).</summary>
    GeometricMean,
    /// <summary>(TP / (TP + FN) + TN / (TN + FP)) / 2.</summary>
    BalancedAccuracy,
    /// <summary>Matthews correlation (TP TN - FP FN) / sqrt((TP + FP)(TP + FN)(TN + FP)(TN + FN)).</summary>
    Mcc,
}

/// <summary>The soft confusion matrix of <see cref="AnyLoss.ConfusionMatrix"/>: four scalar tensors.</summary>
/// <param name="TruePositives">sum y A(p).</param>
/// <param name="FalseNegatives">sum y (1 - A(p)).</param>
/// <param name="FalsePositives">sum (1 - y) A(p).</param>
/// <param name="TrueNegatives">sum (1 - y) (1 - A(p)).</param>
public readonly record struct SoftConfusion(Tensor TruePositives, Tensor FalseNegatives, Tensor FalsePositives, Tensor TrueNegatives);

/// <summary>
/// AnyLoss (Han et al. 2024): a binary classifier's probabilities p pass through the approximation function
/// A(p) = sigmoid(L (p - 1/2)), which pushes them towards 0 or 1, and the counts of a differentiable confusion matrix
/// built from A(p) give any confusion-matrix metric as a loss, 1 - metric.
/// </summary>
public static class AnyLoss
{
    /// <summary>
    /// The soft confusion matrix of probabilities p and 0/1 targets y (same shape, any rank): TP = sum y A(p),
    /// FN = sum y (1 - A(p)), FP = sum (1 - y) A(p), TN = sum (1 - y)(1 - A(p)) with A(p) = sigmoid(L (p - 1/2)).
    /// For p != 1/2 the counts tend to the hard counts (of p &gt; 1/2) as L grows; each count is off by at most
    /// n sigmoid(-L |p - 1/2|) over its n elements.
    /// </summary>
    /// <param name="probabilities">p in [0, 1].</param>
    /// <param name="target">y, 0 or 1, the shape of p.</param>
    /// <param name="amplifier">L &gt; 0 (the paper uses 73).</param>
    /// <exception cref="ShapeMismatchException">The shapes differ.</exception>
    /// <exception cref="ArgumentOutOfRangeException">L is not positive and finite.</exception>
    public static SoftConfusion ConfusionMatrix(Tensor probabilities, Tensor target, double amplifier = 73)
    {
        ArgumentNullException.ThrowIfNull(probabilities); ArgumentNullException.ThrowIfNull(target);
        if (target.Shape != probabilities.Shape) throw new ShapeMismatchException("any_loss", nameof(target), probabilities.Shape, target.Shape, "target must have the probabilities' shape");
        if (!(amplifier > 0) || double.IsInfinity(amplifier)) throw new ArgumentOutOfRangeException(nameof(amplifier), amplifier, "any_loss: the amplifier L must be positive and finite");
        var a = ((probabilities - 0.5) * amplifier).Sigmoid();
        var y = target.To(a.DType);
        var tp = (y * a).Sum();
        var fn = (y * (1.0 - a)).Sum();
        var fp = ((1.0 - y) * a).Sum();
        var tn = ((1.0 - y) * (1.0 - a)).Sum();
        return new SoftConfusion(tp, fn, fp, tn);
    }

    /// <summary>1 - metric on the <see cref="ConfusionMatrix"/> of p and y: a scalar, differentiable in p.</summary>
    /// <param name="probabilities">p in [0, 1].</param>
    /// <param name="target">y, 0 or 1, the shape of p.</param>
    /// <param name="metric">The metric to maximise.</param>
    /// <param name="amplifier">L &gt; 0.</param>
    /// <param name="beta">beta &gt; 0 of <see cref="AnyLossMetric.FBeta"/>.</param>
    /// <exception cref="ShapeMismatchException">The shapes differ.</exception>
    /// <exception cref="ArgumentOutOfRangeException">L or beta is not positive and finite, or the metric is unknown.</exception>
    public static Tensor Loss(Tensor probabilities, Tensor target, AnyLossMetric metric, double amplifier = 73, double beta = 1)
    {
        if (!(beta > 0) || double.IsInfinity(beta)) throw new ArgumentOutOfRangeException(nameof(beta), beta, "any_loss: beta must be positive and finite");
        var (tp, fn, fp, tn) = ConfusionMatrix(probabilities, target, amplifier);
        Tensor score = metric switch
        {
            AnyLossMetric.Accuracy => (tp + tn) / (tp + tn + fp + fn),
            AnyLossMetric.F1 => tp * 2.0 / (tp * 2.0 + fp + fn),
            AnyLossMetric.FBeta => tp * (1 + beta * beta) / (tp * (1 + beta * beta) + fn * (beta * beta) + fp),
            AnyLossMetric.GeometricMean => (tp / (tp + fn) * (tn / (tn + fp))).Sqrt(),
            AnyLossMetric.BalancedAccuracy => (tp / (tp + fn) + tn / (tn + fp)) * 0.5,
            AnyLossMetric.Mcc => (tp * tn - fp * fn) / ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)).Sqrt(),
            _ => throw new ArgumentOutOfRangeException(nameof(metric), metric, "any_loss: unknown metric"),
        };
        return 1.0 - score;
    }
}
