namespace Kiln.Methods.Probabilistic;

/// <summary>Settings of <see cref="MulticalibratedRegressor.Fit"/>.</summary>
public sealed record MulticalibrationOptions
{
    /// <summary>The grid size m: predictions take values in {0, 1/m, .., 1}.</summary>
    public int Levels { get; init; } = 50;
    /// <summary>Stop when the weighted squared-error improvement of a round is at most alpha (at least 1/(4 m^2) keeps the MSE monotone).</summary>
    public double Alpha { get; init; } = 1e-4;
    /// <summary>Depth of the regression trees of the weak learner class H.</summary>
    public int MaxDepth { get; init; } = 2;
    /// <summary>Minimum rows per tree leaf.</summary>
    public int MinLeaf { get; init; } = 10;
    /// <summary>An upper bound on the rounds.</summary>
    public int MaxRounds { get; init; } = 200;
}

/// <summary>
/// Multicalibration as boosting for regression (Globus-Harris et al., 2023, LSBoost): predictions live on the grid
/// {0, 1/m, .., 1} (targets in [0, 1]); every round fits a squared-error regression tree h_v (the weak learner class
/// H) on each level set S_v = {x : f(x) = v}, and if the weighted improvement
/// sum_v P(S_v) (E[(y - v)^2 | S_v] - E[(y - h_v(x))^2 | S_v]) exceeds alpha, sets f(x) = Round(h_v(x)) on S_v.
/// At termination no tree of H improves any level set by more than alpha, which is (approximate) multicalibration
/// with respect to H; in particular sum_v P(S_v) (E[y | S_v] - v)^2 &lt;= alpha. Least-squares leaves make the
/// rounding cost exactly E[(h - Round h)^2] &lt;= 1/(4 m^2), so the training MSE falls every round when alpha &gt;= 1/(4 m^2).
/// </summary>
public sealed class MulticalibratedRegressor
{
    readonly List<Dictionary<int, RegressionTree>> _rounds = [];

    MulticalibratedRegressor(int levels, int initial) { Levels = levels; InitialLevel = initial; }

    /// <summary>The grid size m.</summary>
    public int Levels { get; }
    /// <summary>The grid index of the initial constant prediction Round(mean y).</summary>
    public int InitialLevel { get; }
    /// <summary>The number of update rounds taken.</summary>
    public int Rounds => _rounds.Count;
    /// <summary>Training MSE before the first round and after each round.</summary>
    public IReadOnlyList<double> TrainMse { get; private set; } = [];
    /// <summary>The weighted improvement of each round's trees before rounding, including the final one that stopped (&lt;= alpha) unless MaxRounds ended it.</summary>
    public IReadOnlyList<double> Improvements { get; private set; } = [];

    /// <summary>v rounded to the nearest grid point of {0, 1/m, .., 1}, as its index 0 .. m.</summary>
    public static int RoundToLevel(double v, int levels) => (int)Math.Clamp(Math.Round(v * levels, MidpointRounding.AwayFromZero), 0, levels);

    /// <summary>Fits LSBoost to inputs <paramref name="x"/> ([n, d]) and targets <paramref name="y"/> ([n], in [0, 1]).</summary>
    /// <exception cref="ArgumentException">The shapes disagree, there are no rows, or a target is outside [0, 1].</exception>
    /// <exception cref="ArgumentOutOfRangeException">Levels below 1, alpha not positive, or MaxRounds negative.</exception>
    public static MulticalibratedRegressor Fit(Tensor x, Tensor y, MulticalibrationOptions? options = null)
    {
        var o = options ?? new MulticalibrationOptions();
        ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(y);
        if (x.Rank != 2 || y.Rank != 1 || y.Shape[0] != x.Shape[0] || x.Shape[0] == 0) throw new ArgumentException($"multicalibration: x must be [n, d] with y [n], n >= 1, got {x.Shape} and {y.Shape}", nameof(y));
        ArgumentOutOfRangeException.ThrowIfLessThan(o.Levels, 1, "Levels");
        ArgumentOutOfRangeException.ThrowIfNegative(o.MaxRounds, "MaxRounds");
        if (!(o.Alpha > 0) || double.IsInfinity(o.Alpha)) throw new ArgumentOutOfRangeException("Alpha", o.Alpha, "multicalibration: alpha must be positive and finite");
        var ys = y.To(DType.Float64).ToArray<double>();
        if (ys.Any(v => !(v >= 0 && v <= 1))) throw new ArgumentException("multicalibration: targets must lie in [0, 1] (scale them first)", nameof(y));
        int n = ys.Length, m = o.Levels;
        var model = new MulticalibratedRegressor(m, RoundToLevel(ys.Average(), m));
        var level = Enumerable.Repeat(model.InitialLevel, n).ToArray();
        double Mse() => Enumerable.Range(0, n).Average(i => Math.Pow(ys[i] - level[i] / (double)m, 2));
        var mse = new List<double> { Mse() };
        var improvements = new List<double>();
        var xd = x.To(DType.Float64);
        for (int t = 0; t < o.MaxRounds; t++)
        {
            var trees = new Dictionary<int, RegressionTree>();
            var fitted = new double[n];
            double improvement = 0;
            foreach (var group in Enumerable.Range(0, n).GroupBy(i => level[i]))
            {
                var rows = group.ToArray();
                var idx = Tensor.FromArray(rows.Select(i => (long)i).ToArray()).To(x.Device);
                var tree = RegressionTree.Fit(xd.IndexSelect(0, idx), Tensor.FromArray(rows.Select(i => ys[i]).ToArray()), o.MaxDepth, o.MinLeaf);
                var h = tree.Predict(xd.IndexSelect(0, idx)).ToArray<double>();
                double v = group.Key / (double)m;
                for (int k = 0; k < rows.Length; k++)
                {
                    fitted[rows[k]] = h[k];
                    improvement += (Math.Pow(ys[rows[k]] - v, 2) - Math.Pow(ys[rows[k]] - h[k], 2)) / n;
                }
                trees[group.Key] = tree;
            }
            improvements.Add(improvement);
            if (improvement <= o.Alpha) break;
            for (int i = 0; i < n; i++) level[i] = RoundToLevel(fitted[i], m);
            model._rounds.Add(trees);
            mse.Add(Mse());
        }
        model.TrainMse = mse;
        model.Improvements = improvements;
        return model;
    }

    /// <summary>The grid index (0 .. m) of the prediction for each row of <paramref name="x"/> ([n, d]).</summary>
    public int[] PredictLevels(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Rank != 2) throw new ArgumentException($"multicalibration: x must be [n, d], got {x.Shape}", nameof(x));
        int n = x.Shape[0];
        var level = Enumerable.Repeat(InitialLevel, n).ToArray();
        var xd = x.To(DType.Float64);
        foreach (var trees in _rounds)
        {
            var next = (int[])level.Clone();
            foreach (var group in Enumerable.Range(0, n).GroupBy(i => level[i]))
            {
                // A level set that was empty in training keeps its value (no tree was fitted there).
                if (!trees.TryGetValue(group.Key, out var tree)) continue;
                var rows = group.ToArray();
                var h = tree.Predict(xd.IndexSelect(0, Tensor.FromArray(rows.Select(i => (long)i).ToArray()).To(x.Device))).ToArray<double>();
                for (int k = 0; k < rows.Length; k++) next[rows[k]] = RoundToLevel(h[k], Levels);
            }
            level = next;
        }
        return level;
    }

    /// <summary>The prediction for each row of <paramref name="x"/> ([n, d]): Float64 [n] in {0, 1/m, .., 1}.</summary>
    public Tensor Predict(Tensor x) => Tensor.FromArray(PredictLevels(x).Select(l => l / (double)Levels).ToArray()).To(x.Device);
}
