namespace Kiln.Methods.Probabilistic;

/// <summary>
/// A least-squares regression tree (CART): every split minimizes the summed squared error of its two children (summed
/// over the outputs for a multi-output target) and every leaf predicts the mean target of its training rows
/// (optionally weighted). The weak learner of NGBoost, multicalibration boosting and condensed gradient boosting.
/// Features and targets are read to the host once; prediction returns a Float64 tensor.
/// </summary>
public sealed class RegressionTree
{
    // Node k: feature (-1 for a leaf), threshold (go left when x <= threshold), children, leaf value.
    readonly List<(int Feature, double Threshold, int Left, int Right, double[] Value)> _nodes = [];
    readonly bool _vector;

    RegressionTree(int features, int outputs, bool vector) { Features = features; Outputs = outputs; _vector = vector; }

    /// <summary>The number of outputs K (1 for a target [n]).</summary>
    public int Outputs { get; }

    /// <summary>The number of input features.</summary>
    public int Features { get; }

    /// <summary>The number of leaves.</summary>
    public int Leaves => _nodes.Count(n => n.Feature < 0);

    /// <summary>
    /// Fits a tree of depth at most <paramref name="maxDepth"/> (0: one leaf, the mean) to <paramref name="target"/> ([n] or [n, K])
    /// from <paramref name="x"/> ([n, d]), with at least <paramref name="minLeaf"/> rows per leaf and optional non-negative
    /// row weights ([n]).
    /// </summary>
    /// <exception cref="ArgumentException">The shapes disagree, there are no rows, or a weight is negative or all are zero.</exception>
    /// <exception cref="ArgumentOutOfRangeException">maxDepth is negative or minLeaf is below 1.</exception>
    public static RegressionTree Fit(Tensor x, Tensor target, int maxDepth = 3, int minLeaf = 5, Tensor? weight = null)
    {
        ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(target);
        if (x.Rank != 2 || target.Rank is not (1 or 2) || target.Shape[0] != x.Shape[0]) throw new ArgumentException($"regression tree: x must be [n, d] with target [n] or [n, K], got {x.Shape} and {target.Shape}", nameof(target));
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
        int k = target.Rank == 1 ? 1 : target.Shape[1];
        var tree = new RegressionTree(d, k, target.Rank == 2);
        tree.Grow(xs, ys, ws, d, k, Enumerable.Range(0, n).ToArray(), maxDepth, minLeaf);
        return tree;
    }

    int Grow(double[] x, double[] y, double[] w, int d, int k, int[] rows, int depth, int minLeaf)
    {
        double sw = 0;
        var swy = new double[k];
        foreach (int r in rows) { sw += w[r]; for (int j = 0; j < k; j++) swy[j] += w[r] * y[r * k + j]; }
        int me = _nodes.Count;
        _nodes.Add((-1, 0, -1, -1, swy.Select(v => sw > 0 ? v / sw : 0).ToArray()));
        if (depth == 0 || rows.Length < 2 * minLeaf || sw <= 0) return me;
        // Best split: maximal reduction of the weighted SSE summed over outputs, i.e. maximal sum over children and
        // outputs of (sum w y)^2 / sum w.
        double parent = swy.Sum(v => v * v) / sw;
        double best = parent + 1e-12 * Math.Max(1, parent);
        int bestFeature = -1; double bestThreshold = 0;
        var order = new int[rows.Length];
        var lwy = new double[k];
        for (int f = 0; f < d; f++)
        {
            rows.CopyTo(order, 0);
            Array.Sort(order, (a, b) => x[a * d + f].CompareTo(x[b * d + f]));
            double lw = 0;
            Array.Clear(lwy);
            for (int i = 0; i + 1 < order.Length; i++)
            {
                int r = order[i];
                lw += w[r];
                for (int j = 0; j < k; j++) lwy[j] += w[r] * y[r * k + j];
                double here = x[r * d + f], next = x[order[i + 1] * d + f];
                if (i + 1 < minLeaf || order.Length - i - 1 < minLeaf || here == next) continue;
                double rw = sw - lw;
                if (lw <= 0 || rw <= 0) continue;
                double gain = 0;
                for (int j = 0; j < k; j++) gain += lwy[j] * lwy[j] / lw + (swy[j] - lwy[j]) * (swy[j] - lwy[j]) / rw;
                if (gain > best) { best = gain; bestFeature = f; bestThreshold = 0.5 * (here + next); }
            }
        }
        if (bestFeature < 0) return me;
        var left = rows.Where(r => x[r * d + bestFeature] <= bestThreshold).ToArray();
        var right = rows.Where(r => x[r * d + bestFeature] > bestThreshold).ToArray();
        int l = Grow(x, y, w, d, k, left, depth - 1, minLeaf);
        int rr = Grow(x, y, w, d, k, right, depth - 1, minLeaf);
        _nodes[me] = (bestFeature, bestThreshold, l, rr, _nodes[me].Value);
        return me;
    }

    /// <summary>
    /// The tree's prediction for each row of <paramref name="x"/> ([n, d]): Float64 [n] for a target [n], [n, K] for a
    /// target [n, K], on x's device.
    /// </summary>
    /// <exception cref="ArgumentException">x does not have the tree's feature count.</exception>
    public Tensor Predict(Tensor x)
    {
        var leaves = Apply(x);
        int k = Outputs;
        var result = new double[leaves.Length * k];
        for (int i = 0; i < leaves.Length; i++) Array.Copy(_nodes[leaves[i]].Value, 0, result, i * k, k);
        return Tensor.FromArray(result, _vector ? new Shape(leaves.Length, k) : new Shape(leaves.Length)).To(x.Device);
    }

    /// <summary>The leaf (a node id) each row of <paramref name="x"/> ([n, d]) falls in.</summary>
    /// <exception cref="ArgumentException">x does not have the tree's feature count.</exception>
    public int[] Apply(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Rank != 2 || x.Shape[1] != Features) throw new ArgumentException($"regression tree: x must be [n, {Features}], got {x.Shape}", nameof(x));
        int n = x.Shape[0], d = Features;
        var xs = x.To(DType.Float64).Contiguous().ToArray<double>();
        var result = new int[n];
        for (int i = 0; i < n; i++)
        {
            int k = 0;
            while (_nodes[k].Feature >= 0) k = xs[i * d + _nodes[k].Feature] <= _nodes[k].Threshold ? _nodes[k].Left : _nodes[k].Right;
            result[i] = k;
        }
        return result;
    }
}
