namespace Kiln.Methods.Probabilistic;

/// <summary>
/// Condensed gradient boosting (Emami and Martínez-Muñoz, 2022) for K-class classification with the softmax loss: each
/// round fits ONE multi-output regression tree to the residuals r_ik = 1[y_i = k] - p_k(x_i) of all classes at once
/// (instead of K trees), and gives leaf L and class k Friedman's one-step Newton value
/// gamma_Lk = (K - 1)/K sum_{i in L} r_ik / sum_{i in L} |r_ik| (1 - |r_ik|); F_k += nu gamma_{leaf(x), k}, F_0 = 0.
/// </summary>
public sealed class CondensedGradientBoosting
{
    readonly List<(RegressionTree Tree, Dictionary<int, double[]> Leaves)> _rounds = [];

    CondensedGradientBoosting(int classes, double shrinkage) { Classes = classes; Shrinkage = shrinkage; }

    /// <summary>The number of classes K.</summary>
    public int Classes { get; }
    /// <summary>The shrinkage nu.</summary>
    public double Shrinkage { get; }
    /// <summary>The training cross entropy before the first round and after each round.</summary>
    public IReadOnlyList<double> TrainLoss { get; private set; } = [];

    /// <summary>
    /// Friedman's multiclass leaf values for residuals r ([n, K]) grouped by leaf: per leaf,
    /// (K - 1)/K sum r_ik / sum |r_ik| (1 - |r_ik|) per class (0 where the denominator is 0).
    /// </summary>
    public static Dictionary<int, double[]> LeafValues(int[] leaves, double[] residuals, int classes)
    {
        ArgumentNullException.ThrowIfNull(leaves); ArgumentNullException.ThrowIfNull(residuals);
        if (residuals.Length != leaves.Length * classes) throw new ArgumentException($"condensed boosting: {residuals.Length} residuals for {leaves.Length} rows and {classes} classes", nameof(residuals));
        var result = new Dictionary<int, double[]>();
        foreach (var g in Enumerable.Range(0, leaves.Length).GroupBy(i => leaves[i]))
        {
            var v = new double[classes];
            for (int k = 0; k < classes; k++)
            {
                double num = 0, den = 0;
                foreach (int i in g) { double r = residuals[i * classes + k]; num += r; den += Math.Abs(r) * (1 - Math.Abs(r)); }
                v[k] = den > 0 ? (classes - 1.0) / classes * num / den : 0;
            }
            result[g.Key] = v;
        }
        return result;
    }

    /// <summary>Fits <paramref name="rounds"/> rounds to inputs x ([n, d]) and Int64 labels y ([n], 0 .. K-1).</summary>
    /// <exception cref="ArgumentException">Shapes disagree, or a label is outside 0 .. K-1.</exception>
    /// <exception cref="ArgumentOutOfRangeException">K below 2, rounds negative, or shrinkage not positive.</exception>
    public static CondensedGradientBoosting Fit(Tensor x, Tensor y, int classes, int rounds = 50, double shrinkage = 0.1, int maxDepth = 3, int minLeaf = 5)
    {
        ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(y);
        if (x.Rank != 2 || y.Rank != 1 || y.Shape[0] != x.Shape[0] || x.Shape[0] == 0) throw new ArgumentException($"condensed boosting: x must be [n, d] with labels [n], n >= 1, got {x.Shape} and {y.Shape}", nameof(y));
        ArgumentOutOfRangeException.ThrowIfLessThan(classes, 2);
        ArgumentOutOfRangeException.ThrowIfNegative(rounds);
        if (!(shrinkage > 0) || double.IsInfinity(shrinkage)) throw new ArgumentOutOfRangeException(nameof(shrinkage), shrinkage, "condensed boosting: the shrinkage must be positive and finite");
        var labels = y.To(DType.Int64).ToArray<long>();
        if (labels.Any(l => l < 0 || l >= classes)) throw new ArgumentException($"condensed boosting: labels must be in 0 .. {classes - 1}", nameof(y));
        int n = labels.Length;
        var model = new CondensedGradientBoosting(classes, shrinkage);
        var f = new double[n * classes];
        var onehot = Tensor.FromArray(labels).OneHot(classes, DType.Float64);
        var losses = new List<double> { CrossEntropy(f, labels, classes) };
        for (int m = 0; m < rounds; m++)
        {
            var residual = onehot - Tensor.FromArray(f, new Shape(n, classes)).Softmax(1);
            var tree = RegressionTree.Fit(x, residual, maxDepth, minLeaf);
            var leaf = tree.Apply(x);
            var values = LeafValues(leaf, residual.ToArray<double>(), classes);
            for (int i = 0; i < n; i++) for (int k = 0; k < classes; k++) f[i * classes + k] += shrinkage * values[leaf[i]][k];
            model._rounds.Add((tree, values));
            losses.Add(CrossEntropy(f, labels, classes));
        }
        model.TrainLoss = losses;
        return model;
    }

    static double CrossEntropy(double[] f, long[] labels, int classes) =>
        labels.Select((l, i) =>
        {
            var row = f.AsSpan(i * classes, classes).ToArray();
            double m = row.Max();
            return m + Math.Log(row.Sum(v => Math.Exp(v - m))) - row[l];
        }).DefaultIfEmpty(0).Average();

    /// <summary>The scores F ([n, K], Float64) of the first <paramref name="rounds"/> rounds (all by default).</summary>
    public Tensor DecisionFunction(Tensor x, int? rounds = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        int r = rounds ?? _rounds.Count;
        if (r < 0 || r > _rounds.Count) throw new ArgumentOutOfRangeException(nameof(rounds), r, $"condensed boosting: rounds must be in 0 .. {_rounds.Count}");
        int n = x.Shape[0];
        var f = new double[n * Classes];
        foreach (var (tree, values) in _rounds.Take(r))
        {
            var leaf = tree.Apply(x);
            for (int i = 0; i < n; i++) for (int k = 0; k < Classes; k++) f[i * Classes + k] += Shrinkage * values[leaf[i]][k];
        }
        return Tensor.FromArray(f, new Shape(n, Classes));
    }

    /// <summary>The predicted class of each row of x ([n, d]): Int64 [n].</summary>
    public Tensor Predict(Tensor x) => DecisionFunction(x).ArgMax(1);
}
