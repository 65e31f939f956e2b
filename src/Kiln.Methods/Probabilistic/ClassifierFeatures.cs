namespace Kiln.Methods.Probabilistic;

/// <summary>
/// Variable construction with classifiers as an aid to regression ("Construction de variables à l'aide de
/// classifieurs comme aide à la régression"): the target is cut at thresholds t_1 &lt; .. &lt; t_K (training quantiles),
/// one classifier per threshold is trained independently on the labels 1[y &lt;= t_k], and their predicted
/// probabilities P(y &lt;= t_k | x) are appended to the inputs of any regressor. The classifiers are probability trees
/// (least-squares regression trees on the 0/1 labels, whose leaves are class frequencies); being independent, the
/// probabilities need not be monotone in k, which <see cref="CrossingViolations"/> counts.
/// </summary>
public sealed class ClassifierFeatures
{
    readonly RegressionTree[] _classifiers;

    ClassifierFeatures(double[] thresholds, RegressionTree[] classifiers) { Thresholds = thresholds; _classifiers = classifiers; }

    /// <summary>The thresholds t_k, ascending.</summary>
    public IReadOnlyList<double> Thresholds { get; }

    /// <summary>The labels 1[y_i &lt;= t_k] as Float64 [n, K].</summary>
    public static Tensor Labels(Tensor y, IReadOnlyList<double> thresholds)
    {
        ArgumentNullException.ThrowIfNull(y); ArgumentNullException.ThrowIfNull(thresholds);
        if (y.Rank != 1) throw new ArgumentException($"classifier features: y must be [n], got {y.Shape}", nameof(y));
        var t = Tensor.FromArray(thresholds.ToArray(), new Shape(1, thresholds.Count)).To(y.Device);
        return y.To(DType.Float64).Unsqueeze(1).Le(t).To(DType.Float64);
    }

    /// <summary>
    /// Fits K probability trees on x ([n, d]) and y ([n]) at the thresholds of the training quantiles
    /// k / (K + 1), k = 1 .. K.
    /// </summary>
    /// <exception cref="ArgumentException">Shapes disagree or there are no rows.</exception>
    /// <exception cref="ArgumentOutOfRangeException">K below 1.</exception>
    public static ClassifierFeatures Fit(Tensor x, Tensor y, int thresholds = 9, int maxDepth = 3, int minLeaf = 10)
    {
        ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(y);
        if (x.Rank != 2 || y.Rank != 1 || y.Shape[0] != x.Shape[0] || x.Shape[0] == 0) throw new ArgumentException($"classifier features: x must be [n, d] with y [n], n >= 1, got {x.Shape} and {y.Shape}", nameof(y));
        ArgumentOutOfRangeException.ThrowIfLessThan(thresholds, 1);
        var sorted = y.To(DType.Float64).ToArray<double>().OrderBy(v => v).ToArray();
        var t = Enumerable.Range(1, thresholds).Select(k => sorted[Math.Min(sorted.Length - 1, (int)((long)k * sorted.Length / (thresholds + 1)))]).ToArray();
        var labels = Labels(y, t);
        var trees = Enumerable.Range(0, thresholds).Select(k => RegressionTree.Fit(x, labels.Narrow(1, k, 1).Reshape(-1), maxDepth, minLeaf)).ToArray();
        return new ClassifierFeatures(t, trees);
    }

    /// <summary>The probabilities P(y &lt;= t_k | x) for each row of x ([n, d]): Float64 [n, K].</summary>
    public Tensor Probabilities(Tensor x) => Tensor.Stack(_classifiers.Select(c => c.Predict(x)).ToArray(), 1);

    /// <summary>x with the K probabilities appended: Float64 [n, d + K].</summary>
    public Tensor Augment(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        return Tensor.Concat([x.To(DType.Float64), Probabilities(x)], 1);
    }

    /// <summary>The number of (row, k) pairs with P(y &lt;= t_k | x) &gt; P(y &lt;= t_{k+1} | x): crossings of the independently trained classifiers.</summary>
    public static int CrossingViolations(Tensor probabilities)
    {
        ArgumentNullException.ThrowIfNull(probabilities);
        if (probabilities.Rank != 2) throw new ArgumentException($"crossing violations: probabilities must be [n, K], got {probabilities.Shape}", nameof(probabilities));
        int k = probabilities.Shape[1];
        if (k < 2) return 0;
        var p = probabilities.To(DType.Float64);
        return (int)p.Narrow(1, 0, k - 1).Gt(p.Narrow(1, 1, k - 1)).To(DType.Int64).Sum().Item();
    }
}
