namespace Kiln.Methods.Smoothing;

/// <summary>Options of <see cref="RobTreeBoost.Train"/>.</summary>
public sealed record TreeBoostOptions
{
    /// <summary>q: each point's target is the q-quantile (1 - q for class 1) of the ensemble's exact smoothed output distribution.</summary>
    public double Quantile { get; init; } = 0.9;
    /// <summary>Boosting rounds after the warm-up (one new stump each).</summary>
    public int Rounds { get; init; } = 40;
    /// <summary>A feature takes a new stump only while it carries at most this many.</summary>
    public int MaxFeatureReuse { get; init; } = 5;
    /// <summary>Class-balanced training weights.</summary>
    public bool Balanced { get; init; } = true;
    /// <summary>Threshold grid step.</summary>
    public double BinSize { get; init; } = 0.01;
    /// <summary>The TreeBoost Newton step is scaled by this before it is mapped to [0, 1].</summary>
    public double LearningRate { get; init; } = 1;
    /// <summary>Leaf-value discretization D.</summary>
    public int Discretization { get; init; } = 100;
}

/// <summary>
/// RobTreeBoost: gradient boosting of a smoothed stump ensemble towards certifiable predictions. After a warm-up of
/// one MLE stump per feature, every round computes for each training point the certifiable prediction of the current
/// ensemble, the q-quantile of its exact output distribution (1 - q for class 1, so the target is what the ensemble
/// keeps with probability q), fits a new stump, possibly on an already used feature, to the pseudo-residuals
/// r = y - prediction by noise-weighted squared error over the regions of the feature's meta-stump, and sets its
/// leaf values by Friedman's TreeBoost Newton step sum(r) / sum(|r|(1 - |r|)), mapped to [0, 1].
/// </summary>
public static class RobTreeBoost
{
    /// <summary>Trains on <paramref name="x"/> ([n, d]) with 0/1 labels; <paramref name="roundDone"/> reports progress (warm-up is round 0).</summary>
    public static StumpEnsemble Train(Tensor x, IReadOnlyList<int> y, Noise noise, TreeBoostOptions? options = null, Action<int>? roundDone = null)
    {
        options ??= new TreeBoostOptions();
        if (!(options.Quantile > 0 && options.Quantile < 1)) throw new ArgumentOutOfRangeException(nameof(options), options.Quantile, "the quantile q must be in (0, 1)");
        ArgumentOutOfRangeException.ThrowIfNegative(options.Rounds);
        var data = TrainingData.From(x, y, null, options.Balanced);
        // Warm-up grid as in the reference code: no margin for Gaussian noise, lambda for uniform noise.
        double warmMargin = noise.Kind == NoiseKind.Uniform ? 1 : 0;
        var ensemble = MleStumps.Train(x, y, noise, new MleOptions { Balanced = options.Balanced, BinSize = options.BinSize, GridMargin = warmMargin, Discretization = options.Discretization });
        roundDone?.Invoke(0);

        double meanW = data.Weights.Average();
        var wn = data.Weights.Select(v => v / meanW).ToArray();
        double ext = noise.Kind == NoiseKind.Uniform ? noise.Scale : 0;
        var grids = Enumerable.Range(0, data.Features).Select(j => MleStumps.Grid(data.Column(j), ext + options.BinSize / 2, ext, options.BinSize)).ToArray();
        var xd = x.To(DType.Float64);
        int n = data.Rows;

        for (int round = 1; round <= options.Rounds; round++)
        {
            var r = Residuals(ensemble, xd, data.Labels, noise, options.Quantile);
            var yc = r.Select(v => v / 2 + 0.5).ToArray();
            double q2 = 0, wTotal = 0;
            for (int i = 0; i < n; i++) { q2 += wn[i] * yc[i] * yc[i]; wTotal += wn[i]; }
            var wcols = new double[n * 2];
            for (int i = 0; i < n; i++) { wcols[2 * i] = wn[i]; wcols[2 * i + 1] = wn[i] * yc[i]; }
            var wt = Tensor.FromArray(wcols, new Shape(n, 2)).To(data.Device);

            var candidates = new (double Impurity, int Feature, double Threshold)[data.Features];
            Parallel.For(0, data.Features, j =>
            {
                candidates[j] = (double.NegativeInfinity, j, 0);
                if (ensemble.Stumps.Count(s => s.Feature == j) > options.MaxFeatureReuse) return;
                var col = data.Column(j);
                var existing = ensemble.Stumps.Where(s => s.Feature == j).Select(s => s.Threshold).Order().ToArray();
                // A(t) = (sum w P[x' >= t], sum w y P[x' >= t]) for the existing thresholds and for the grid.
                var ex = new (double A0, double A1)[existing.Length];
                for (int k = 0; k < existing.Length; k++)
                    for (int i = 0; i < n; i++) { double c = noise.UpperTail(col[i], existing[k]); ex[k].A0 += wn[i] * c; ex[k].A1 += wn[i] * yc[i] * c; }
                var gs = MleStumps.UpperSums(col, grids[j], noise, wt);
                double sumY = 0; for (int i = 0; i < n; i++) sumY += wn[i] * yc[i];
                for (int g = 0; g < grids[j].Length; g++)
                {
                    double v = grids[j][g];
                    // The meta-stump's regions with v inserted: consecutive differences of A over the sorted thresholds.
                    double explained = 0; bool ok = true;
                    double prev0 = wTotal, prev1 = sumY;
                    int k = 0; bool placed = false;
                    while (k < existing.Length || !placed)
                    {
                        double a0, a1;
                        if (!placed && (k == existing.Length || v < existing[k])) { a0 = gs[g, 0]; a1 = gs[g, 1]; placed = true; }
                        else { a0 = ex[k].A0; a1 = ex[k].A1; k++; }
                        double s0 = prev0 - a0, s1 = prev1 - a1;
                        if (!(s0 > 0)) { ok = false; break; }
                        explained += s1 * s1 / s0;
                        prev0 = a0; prev1 = a1;
                    }
                    if (!ok || !(prev0 > 0)) continue;
                    explained += prev1 * prev1 / prev0;
                    double imp = -(q2 - explained) / wTotal;
                    if (imp > candidates[j].Impurity) candidates[j] = (imp, j, v);
                }
            });
            var best = candidates.Aggregate((a, b) => b.Impurity > a.Impurity ? b : a);
            if (double.IsNegativeInfinity(best.Impurity)) break;

            var bc = data.Column(best.Feature);
            double numL = 0, denL = 0, numR = 0, denR = 0;
            for (int i = 0; i < n; i++)
            {
                double pr = noise.UpperTail(bc[i], best.Threshold), pl = 1 - pr, ar = Math.Abs(r[i]);
                double h = (1e-6 + ar * (1 - ar)) * wn[i];
                numL += r[i] * wn[i] * pl; denL += h * pl;
                numR += r[i] * wn[i] * pr; denR += h * pr;
            }
            double left = Math.Clamp(numL / denL * options.LearningRate / 4 + 0.5, 0, 1);
            double right = Math.Clamp(numR / denR * options.LearningRate / 4 + 0.5, 0, 1);
            ensemble = ensemble.Append(new Stump(best.Feature, best.Threshold, double.IsNaN(left) ? 0.5 : left, double.IsNaN(right) ? 0.5 : right));
            roundDone?.Invoke(round);
        }
        return ensemble;
    }

    /// <summary>
    /// r_i = y_i - (certifiable prediction of point i): the prediction is (offset + t) / (M D) where t is the first
    /// index at which the exact CDF of the smoothed output exceeds 1 - q (class 1) or q (class 0).
    /// </summary>
    internal static double[] Residuals(StumpEnsemble e, Tensor x, int[] y, Noise noise, double q)
    {
        int n = y.Length;
        var r = new double[n];
        if (e.Count == 0) { for (int i = 0; i < n; i++) r[i] = y[i] - 0.5; return r; }
        var pdf = ExactSmoothing.Pdf(e, x, noise);
        int w = pdf.Shape[1];
        var p = pdf.ToArray<double>();
        double scale = (double)e.Count * e.Discretization, offset = ExactSmoothing.Offset(e);
        for (int i = 0; i < n; i++)
        {
            double level = y[i] == 1 ? 1 - q : q, cdf = 0;
            int t = 0;
            for (; t < w; t++) { cdf += p[i * w + t]; if (cdf > level) break; }
            if (t == w) t = 0; // numerically never reached: NumPy's argmax of an all-false row
            r[i] = y[i] - (offset + t) / scale;
        }
        return r;
    }
}
