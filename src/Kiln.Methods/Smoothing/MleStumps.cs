namespace Kiln.Methods.Smoothing;

/// <summary>Options of <see cref="MleStumps.Train"/>.</summary>
public sealed record MleOptions
{
    /// <summary>Threshold grid step (0.01).</summary>
    public double BinSize { get; init; } = 0.01;
    /// <summary>The grid runs from min - margin to max + margin, margin = GridMargin times the noise scale (2).</summary>
    public double GridMargin { get; init; } = 2;
    /// <summary>Weight each class by the other's size so both have the same total weight (on by default).</summary>
    public bool Balanced { get; init; } = true;
    /// <summary>Stumps whose impurity (minus the weighted entropy) is not above this are dropped (-ln 2: no better than chance).</summary>
    public double MinImpurity { get; init; } = -Math.Log(2);
    /// <summary>Leaf-value discretization D of the resulting ensemble (100).</summary>
    public int Discretization { get; init; } = 100;
}

/// <summary>
/// Independent MLE-optimal stumps (one per feature): for every threshold v on a grid, the soft class counts of each
/// side are the training weights times the probability under noise of landing on that side; the threshold of lowest
/// weighted entropy wins and each leaf value is the soft count of class 1 over the soft count of both, which maximizes
/// the expected log-likelihood of the smoothed stump. Features are trained in parallel; the soft counts of all grid
/// thresholds come from one matrix product of the noise probabilities with the class weights.
/// </summary>
public static class MleStumps
{
    /// <summary>The class-balanced weights: the smaller class's weights are scaled by (larger count / smaller count).</summary>
    public static double[] BalancedWeights(IReadOnlyList<int> y)
    {
        var w = Enumerable.Repeat(1.0, y.Count).ToArray();
        int n1 = y.Count(v => v == 1), n0 = y.Count - n1;
        if (n0 > n1 && n1 > 0) for (int i = 0; i < w.Length; i++) { if (y[i] == 1) w[i] = (double)n0 / n1; }
        else if (n1 > n0 && n0 > 0) for (int i = 0; i < w.Length; i++) { if (y[i] == 0) w[i] = (double)n1 / n0; }
        return w;
    }

    /// <summary>
    /// Trains one stump per feature of <paramref name="x"/> ([n, d]) with 0/1 labels <paramref name="y"/> under
    /// <paramref name="noise"/>, dropping stumps no better than chance. <paramref name="weights"/> replaces the
    /// (balanced) unit weights when given.
    /// </summary>
    /// <exception cref="ArgumentException">Labels are not 0/1, lengths disagree, or weights are negative.</exception>
    public static StumpEnsemble Train(Tensor x, IReadOnlyList<int> y, Noise noise, MleOptions? options = null, IReadOnlyList<double>? weights = null, Action<int>? featureDone = null)
    {
        options ??= new MleOptions();
        var data = TrainingData.From(x, y, weights, options.Balanced);
        var result = new (Stump Stump, double Impurity)[data.Features];
        int done = 0;
        Parallel.For(0, data.Features, j =>
        {
            result[j] = BestSplit(data, j, noise, options);
            featureDone?.Invoke(Interlocked.Increment(ref done));
        });
        return new StumpEnsemble(result.Where(r => r.Impurity > options.MinImpurity).Select(r => r.Stump), options.Discretization);
    }

    /// <summary>The grid v_k = start + k step over [min - margin, max + step + margin) of a feature column (NumPy arange semantics).</summary>
    internal static double[] Grid(ReadOnlySpan<double> column, double lowMargin, double highMargin, double step)
    {
        double min = double.PositiveInfinity, max = double.NegativeInfinity;
        foreach (double v in column) { min = Math.Min(min, v); max = Math.Max(max, v); }
        if (column.Length == 0) return [];
        double start = min - lowMargin, stop = max + step + highMargin;
        int count = (int)Math.Ceiling((stop - start) / step);
        if (count > 10_000_000) throw new ArgumentException($"the threshold grid would have {count} points (range {start:G4} .. {stop:G4}, step {step}); scale the features or raise the bin size");
        var grid = new double[count];
        for (int k = 0; k < count; k++) grid[k] = start + k * step;
        return grid;
    }

    /// <summary>
    /// Per grid threshold, the weighted sums over training points of P[x' &gt;= v] times each column of
    /// <paramref name="weightColumns"/> ([n, c]): Float64 [grid, c]; computed in grid chunks to bound memory.
    /// </summary>
    internal static double[,] UpperSums(double[] column, double[] grid, Noise noise, Tensor weightColumns)
    {
        int n = column.Length, c = weightColumns.Shape[1];
        var sums = new double[grid.Length, c];
        var xs = Tensor.FromArray(column, new Shape(1, n)).To(weightColumns.Device);
        int chunk = Math.Max(1, (1 << 21) / Math.Max(n, 1));
        for (int s = 0; s < grid.Length; s += chunk)
        {
            int m = Math.Min(chunk, grid.Length - s);
            using var scope = Tensor.Scope();
            var v = Tensor.FromArray(grid[s..(s + m)], new Shape(m, 1)).To(weightColumns.Device);
            var part = noise.UpperTail(xs - v).MatMul(weightColumns).ToArray<double>();
            for (int i = 0; i < m; i++) for (int k = 0; k < c; k++) sums[s + i, k] = part[i * c + k];
        }
        return sums;
    }

    static (Stump, double) BestSplit(TrainingData d, int j, Noise noise, MleOptions o)
    {
        var col = d.Column(j);
        double margin = o.GridMargin * noise.Scale;
        var grid = Grid(col, margin, margin, o.BinSize);
        var w = new double[d.Rows * 2];
        for (int i = 0; i < d.Rows; i++) { w[2 * i] = d.Weights[i] * (1 - d.Labels[i]); w[2 * i + 1] = d.Weights[i] * d.Labels[i]; }
        var right = UpperSums(col, grid, noise, Tensor.FromArray(w, new Shape(d.Rows, 2)).To(d.Device));
        double t0 = 0, t1 = 0;
        for (int i = 0; i < d.Rows; i++) { t0 += w[2 * i]; t1 += w[2 * i + 1]; }
        double best = double.NegativeInfinity; int arg = -1;
        for (int k = 0; k < grid.Length; k++)
        {
            double imp = Impurity(t0 - right[k, 0], t1 - right[k, 1], right[k, 0], right[k, 1]);
            if (imp > best) { best = imp; arg = k; }
        }
        if (arg < 0) return (new Stump(j, 0, 0.5, 0.5), double.NegativeInfinity);
        double l0 = t0 - right[arg, 0], l1 = t1 - right[arg, 1], r0 = right[arg, 0], r1 = right[arg, 1];
        return (new Stump(j, grid[arg], Leaf(l0, l1), Leaf(r0, r1)), best);
    }

    /// <summary>The MLE leaf value: the soft count of class 1 over the soft count of both (1/2 for an empty side), clipped to [0, 1].</summary>
    public static double Leaf(double count0, double count1) => count0 + count1 > 0 ? Math.Clamp(count1 / (count0 + count1), 0, 1) : 0.5;

    /// <summary>Minus the weighted entropy of a split with soft counts (left0, left1 | right0, right1); a side with soft count below 1 adds nothing.</summary>
    public static double Impurity(double l0, double l1, double r0, double r1)
    {
        double nl = l0 + l1, nr = r0 + r1, h = 0;
        if (nl >= 1) h += Entropy(l0, l1) * nl;
        if (nr >= 1) h += Entropy(r0, r1) * nr;
        return nl + nr > 0 ? -h / (nl + nr) : double.NegativeInfinity;
    }

    static double Entropy(double a, double b)
    {
        double s = a + b, h = 0;
        if (a > 0) h -= a / s * Math.Log(a / s);
        if (b > 0) h -= b / s * Math.Log(b / s);
        return h;
    }
}

/// <summary>Training inputs on the host: features column-major, 0/1 labels, weights; and the device the inputs came from, where the training's tensor work runs.</summary>
internal sealed class TrainingData
{
    readonly double[] _columns;
    public int Rows { get; }
    public int Features { get; }
    public int[] Labels { get; }
    public double[] Weights { get; }
    public Device Device { get; }

    TrainingData(double[] columns, int rows, int features, int[] labels, double[] weights, Device device)
    {
        _columns = columns; Rows = rows; Features = features; Labels = labels; Weights = weights; Device = device;
    }

    public double[] Column(int j) => _columns.AsSpan(j * Rows, Rows).ToArray();

    public double At(int i, int j) => _columns[j * Rows + i];

    public static TrainingData From(Tensor x, IReadOnlyList<int> y, IReadOnlyList<double>? weights, bool balanced)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (x.Rank != 2) throw new ShapeMismatchException("stump_training", nameof(x), $"training inputs must be [n, features], got shape {x.Shape}");
        int n = x.Shape[0], d = x.Shape[1];
        if (y.Count != n) throw new ArgumentException($"{y.Count} labels for {n} training rows", nameof(y));
        for (int i = 0; i < n; i++) if (y[i] is not (0 or 1)) throw new ArgumentException($"label {i} is {y[i]}; labels must be 0 or 1", nameof(y));
        double[] w;
        if (weights is not null)
        {
            if (weights.Count != n) throw new ArgumentException($"{weights.Count} weights for {n} training rows", nameof(weights));
            w = weights.ToArray();
            for (int i = 0; i < n; i++) if (!(w[i] >= 0) || double.IsInfinity(w[i])) throw new ArgumentException($"weight {i} is {w[i]}; weights must be finite and non-negative", nameof(weights));
        }
        else w = balanced ? MleStumps.BalancedWeights(y) : Enumerable.Repeat(1.0, n).ToArray();
        var cols = x.To(DType.Float64).T.Contiguous().ToArray<double>();
        foreach (double v in cols) if (!double.IsFinite(v)) throw new ArgumentException("training inputs contain NaN or infinity", nameof(x));
        return new TrainingData(cols, n, d, y.ToArray(), w, x.Device);
    }
}
