namespace Kiln.Methods.Probabilistic;

/// <summary>
/// A least-squares regression tree (CART): every split minimizes the summed squared error of its two children and
/// every leaf predicts the mean target of its training rows (optionally weighted). The weak learner of NGBoost and of
/// multicalibration boosting. Features and targets are read to the host once; prediction returns a Float64 tensor.
/// </summary>
public sealed class RegressionTree
{
    // Node k: feature (-1 for a leaf), threshold (go left when x <= threshold), children, leaf value.
    readonly List<(int Feature, double Threshold, int Left, int Right, double Value)> _nodes = [];

    RegressionTree(int features) => Features = features;

    /// <summary>The number of input features.</summary>
    public int Features { get; }

    /// <summary>The number of leaves.</summary>
    public int Leaves => _nodes.Count(n => n.Feature < 0);

    /// <summary>
    /// Fits a tree of depth at most <paramref name="maxDepth"/> (0: one leaf, the mean) to <paramref name="target"/> ([n])
    /// from <paramref name="x"/> ([n, d]), with at least <paramref name="minLeaf"/> rows per leaf and optional non-negative
    /// row weights ([n]).
    /// </summary>
    /// <exception cref="ArgumentException">The shapes disagree, there are no rows, or a weight is negative or all are zero.</exception>
    /// <exception cref="ArgumentOutOfRangeException">maxDepth is negative or minLeaf is below 1.</exception>
    public static RegressionTree Fit(Tensor x, Tensor target, int maxDepth = 3, int minLeaf = 5, Tensor? weight = null)
    {
        ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(target);
        if (x.Rank != 2 || target.Rank != 1 || target.Shape[0] != x.Shape[0]) throw new ArgumentException($"regression tree: x must be [n, d] with target [n], got {x.Shape} and {target.Shape}", nameof(target));
        if (x.Shape[0] == 0) throw new ArgumentException("regression tree: no rows to fit", nameof(x));
        ArgumentOutOfRangeException.ThrowIfNegative(maxDepth);
        ArgumentOutOfRangeException.ThrowIfLessThan(minLeaf, 1);
        int n = x.Shape[0], d = x.Shape[1];
        var xs = x.To(DType.Float64).Contiguous().ToArray<double>();
        var ys = target.To(DType.Float64).ToArray<double>();
        double[] ws;
        if (weight is null) ws = Enumerable.Repeat(1.0, n).ToArray();
        else
        {
            if (weight.Rank != 1 || weight.Shape[0] != n) throw new ArgumentException($"regression tree: weight must be [{n}], got {weight.Shape}", nameof(weight));
            ws = weight.To(DType.Float64).ToArray<double>();
            if (ws.Any(w => !(w >= 0) || double.IsInfinity(w)) || ws.Sum() <= 0) throw new ArgumentException("regression tree: weights must be finite, non-negative and not all zero", nameof(weight));
        }
        var tree = new RegressionTree(d);
        tree.Grow(xs, ys, ws, d, Enumerable.Range(0, n).ToArray(), maxDepth, minLeaf);
        return tree;
    }

    int Grow(double[] x, double[] y, double[] w, int d, int[] rows, int depth, int minLeaf)
    {
        double sw = 0, swy = 0;
        foreach (int r in rows) { sw += w[r]; swy += w[r] * y[r]; }
        int me = _nodes.Count;
        _nodes.Add((-1, 0, -1, -1, sw > 0 ? swy / sw : 0));
        if (depth == 0 || rows.Length < 2 * minLeaf || sw <= 0) return me;
        // Best split: maximal reduction of the weighted SSE, i.e. maximal sum over children of (sum w y)^2 / sum w.
        double best = swy * swy / sw + 1e-12 * Math.Max(1, Math.Abs(swy * swy / sw));
        int bestFeature = -1; double bestThreshold = 0;
        var order = new int[rows.Length];
        for (int f = 0; f < d; f++)
        {
            rows.CopyTo(order, 0);
            Array.Sort(order, (a, b) => x[a * d + f].CompareTo(x[b * d + f]));
            double lw = 0, lwy = 0;
            for (int i = 0; i + 1 < order.Length; i++)
            {
                int r = order[i];
                lw += w[r]; lwy += w[r] * y[r];
                double here = x[r * d + f], next = x[order[i + 1] * d + f];
                if (i + 1 < minLeaf || order.Length - i - 1 < minLeaf || here == next) continue;
                double rw = sw - lw, rwy = swy - lwy;
                if (lw <= 0 || rw <= 0) continue;
                double gain = lwy * lwy / lw + rwy * rwy / rw;
                if (gain > best) { best = gain; bestFeature = f; bestThreshold = 0.5 * (here + next); }
            }
        }
        if (bestFeature < 0) return me;
        var left = rows.Where(r => x[r * d + bestFeature] <= bestThreshold).ToArray();
        var right = rows.Where(r => x[r * d + bestFeature] > bestThreshold).ToArray();
        int l = Grow(x, y, w, d, left, depth - 1, minLeaf);
        int rr = Grow(x, y, w, d, right, depth - 1, minLeaf);
        _nodes[me] = (bestFeature, bestThreshold, l, rr, _nodes[me].Value);
        return me;
    }

    /// <summary>The tree's prediction for each row of <paramref name="x"/> ([n, d]): Float64 [n] on x's device.</summary>
    /// <exception cref="ArgumentException">x does not have the tree's feature count.</exception>
    public Tensor Predict(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Rank != 2 || x.Shape[1] != Features) throw new ArgumentException($"regression tree: x must be [n, {Features}], got {x.Shape}", nameof(x));
        int n = x.Shape[0], d = Features;
        var xs = x.To(DType.Float64).Contiguous().ToArray<double>();
        var result = new double[n];
        for (int i = 0; i < n; i++)
        {
            int k = 0;
            while (_nodes[k].Feature >= 0) k = xs[i * d + _nodes[k].Feature] <= _nodes[k].Threshold ? _nodes[k].Left : _nodes[k].Right;
            result[i] = _nodes[k].Value;
        }
        return Tensor.FromArray(result, new Shape(n)).To(x.Device);
    }
}
