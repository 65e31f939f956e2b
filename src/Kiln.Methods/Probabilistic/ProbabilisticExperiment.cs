using Kiln.IO;
using Kiln.Methods.Smoothing;
using Kiln.NN;

namespace Kiln.Methods.Probabilistic;

/// <summary>Settings of <see cref="ProbabilisticExperiment.Run"/>.</summary>
public sealed record ProbabilisticOptions
{
    /// <summary>The miscoverage level alpha of every interval.</summary>
    public double Alpha { get; init; } = 0.1;
    /// <summary>NGBoost rounds.</summary>
    public int Rounds { get; init; } = 200;
    /// <summary>NGBoost learning rate.</summary>
    public double LearningRate { get; init; } = 0.02;
    /// <summary>Grid size m of the multicalibrated predictor.</summary>
    public int Levels { get; init; } = 50;
    /// <summary>AdamW steps of the linear quantile regression and of the aggregation weights.</summary>
    public int Steps { get; init; } = 300;
    /// <summary>Random splits (train 60% / calibration 20% / test 20%) averaged over.</summary>
    public int Splits { get; init; } = 3;
}

/// <summary>One data set and method: mean test coverage and interval width (target units) over the splits.</summary>
public sealed record IntervalRow(string Dataset, string Method, double Coverage, double Width, double CoverageStd);

/// <summary>The experiment's rows and each data set's size.</summary>
public sealed record ProbabilisticResult(ProbabilisticOptions Options, IReadOnlyDictionary<string, int> Sizes, IReadOnlyList<IntervalRow> Rows);

/// <summary>
/// Prediction intervals on regression tasks built from the embedded UCI tables: "pima-glucose" (plasma glucose from the
/// other Pima diabetes columns, rows with the missing-value code 0 dropped) and "wdbc-area" (log mean area of the
/// Wisconsin diagnostic breast-cancer nuclei from the 21 non-size features). Methods at level 1 - alpha: NGBoost's
/// normal interval, NGBoost rescaled by conformal risk control (miscoverage loss), the multicalibrated LSBoost
/// predictor with a split-conformal band, and the aggregate of NGBoost and linear quantile regression with and without
/// conformalized calibration.
/// </summary>
public static class ProbabilisticExperiment
{
    /// <summary>The data set names.</summary>
    public static IReadOnlyList<string> Datasets { get; } = ["pima-glucose", "wdbc-area"];

    /// <summary>A data set's inputs (Float64 [n, d]) and target (Float64 [n]).</summary>
    /// <exception cref="ArgumentException">Unknown name.</exception>
    public static (Tensor X, Tensor Y) Load(string name)
    {
        switch (name)
        {
            case "pima-glucose":
                {
                    var d = SmoothingData.Diabetes();
                    var all = Tensor.Concat([d.XTrain, d.XTest], 0).ToArray<double>();
                    int cols = d.Columns.Length, g = Array.IndexOf(d.Columns, "Glucose");
                    var labels = d.YTrain.Concat(d.YTest).ToArray();
                    // The inputs keep the outcome label as a feature; the scaled target 0 is the missing code.
                    var rows = Enumerable.Range(0, labels.Length).Where(i => all[i * cols + g] > 0).ToArray();
                    var x = rows.SelectMany(i => Enumerable.Range(0, cols).Where(c => c != g).Select(c => all[i * cols + c]).Append(labels[i])).ToArray();
                    return (Tensor.FromArray(x, new Shape(rows.Length, cols)), Tensor.FromArray(rows.Select(i => all[i * cols + g]).ToArray()));
                }
            case "wdbc-area":
                {
                    var (f, _) = Kiln.IO.Datasets.BreastCancer();
                    var v = f.To(DType.Float64).ToArray<double>();
                    int n = f.Shape[0];
                    // Size features (radius, perimeter, area as mean, error and worst) would give the target away.
                    int[] size = [0, 2, 3, 10, 12, 13, 20, 22, 23];
                    var keep = Enumerable.Range(0, 30).Except(size).ToArray();
                    var x = Enumerable.Range(0, n).SelectMany(i => keep.Select(c => v[i * 30 + c])).ToArray();
                    return (Standardize(Tensor.FromArray(x, new Shape(n, keep.Length))), Tensor.FromArray(Enumerable.Range(0, n).Select(i => Math.Log(v[i * 30 + 3])).ToArray()));
                }
            default:
                throw new ArgumentException($"unknown data set '{name}'; known: {string.Join(", ", Datasets)}", nameof(name));
        }
    }

    static Tensor Standardize(Tensor x) => (x - x.Mean(0, keepDim: true)) / (x.Std(0, keepDim: true) + 1e-12);

    /// <summary>Runs every data set and method; <paramref name="progress"/> gets (splits done, total).</summary>
    /// <exception cref="ArgumentOutOfRangeException">alpha outside (0, 1), or a count or rate not positive.</exception>
    public static ProbabilisticResult Run(ProbabilisticOptions options, Action<int, int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!(options.Alpha > 0 && options.Alpha < 1)) throw new ArgumentOutOfRangeException("Alpha", options.Alpha, "calibrate: alpha must be in (0, 1)");
        foreach (var (v, name) in new[] { (options.Rounds, "Rounds"), (options.Levels, "Levels"), (options.Steps, "Steps"), (options.Splits, "Splits") })
            ArgumentOutOfRangeException.ThrowIfLessThan(v, 1, name);
        if (!(options.LearningRate > 0) || double.IsInfinity(options.LearningRate)) throw new ArgumentOutOfRangeException("LearningRate", options.LearningRate, "calibrate: the learning rate must be positive and finite");
        var rows = new List<IntervalRow>();
        var sizes = new Dictionary<string, int>();
        int total = Datasets.Count * options.Splits, done = 0;
        foreach (var name in Datasets)
        {
            var (x, y) = Load(name);
            sizes[name] = x.Shape[0];
            var results = new Dictionary<string, List<(double Coverage, double Width)>>();
            for (int s = 0; s < options.Splits; s++)
            {
                foreach (var (method, cov, width) in OneSplit(x, y, options, (ulong)s))
                {
                    if (!results.TryGetValue(method, out var list)) results[method] = list = [];
                    list.Add((cov, width));
                }
                progress?.Invoke(++done, total);
            }
            foreach (var (method, list) in results)
            {
                double mc = list.Average(r => r.Coverage);
                double sd = list.Count < 2 ? 0 : Math.Sqrt(list.Sum(r => (r.Coverage - mc) * (r.Coverage - mc)) / (list.Count - 1));
                rows.Add(new IntervalRow(name, method, mc, list.Average(r => r.Width), sd));
            }
        }
        return new ProbabilisticResult(options, sizes, rows);
    }

    static IEnumerable<(string Method, double Coverage, double Width)> OneSplit(Tensor x, Tensor y, ProbabilisticOptions o, ulong seed)
    {
        double alpha = o.Alpha;
        var ((xa, ya), (xTest, yTest)) = Kiln.IO.Datasets.TrainTestSplit(x, y, 0.2, seed);
        var ((xTrain, yTrain), (xCal, yCal)) = Kiln.IO.Datasets.TrainTestSplit(xa, ya, 0.25, seed + 100);
        // Targets scaled to [0, 1] with the training split's range (LSBoost's grid); widths are reported unscaled.
        double lo = yTrain.Min().Item(), range = yTrain.Max().Item() - lo;
        Tensor Scale(Tensor t) => (t - lo) / range;
        (yTrain, yCal, yTest) = (Scale(yTrain), Scale(yCal), Scale(yTest));
        var yt = yTest.ToArray<double>();
        (double, double) Score(Tensor lower, Tensor upper)
        {
            var l = lower.ToArray<double>(); var u = upper.ToArray<double>();
            return (Enumerable.Range(0, yt.Length).Average(i => yt[i] >= l[i] && yt[i] <= u[i] ? 1.0 : 0.0), Enumerable.Range(0, yt.Length).Average(i => u[i] - l[i]) * range);
        }

        // NGBoost, and NGBoost rescaled by conformal risk control: L_i(lambda) = 1[|y - mu| > lambda sigma].
        var ng = NGBoost.Fit(xTrain, yTrain, new NGBoostOptions { Rounds = o.Rounds, LearningRate = o.LearningRate });
        var (lt, ut) = ng.Interval(xTest, alpha);
        var (c1, w1) = Score(lt, ut);
        yield return ("NGBoost", c1, w1);
        var (muC, sigC) = ng.Predict(xCal);
        var grid = Tensor.Arange(0, 8.0001, 0.01, DType.Float64);
        var losses = ((yCal - muC).Abs() / sigC).Unsqueeze(1).Gt(grid.Unsqueeze(0)).To(DType.Float64);
        double lambda = grid.ToArray<double>()[ConformalRiskControl.Calibrate(losses, alpha)];
        var (muT, sigT) = ng.Predict(xTest);
        var (c2, w2) = Score(muT - sigT * lambda, muT + sigT * lambda);
        yield return ("NGBoost + CRC", c2, w2);

        // LSBoost (multicalibrated point predictor) with a split-conformal band |y - f| <= Q.
        var mc = MulticalibratedRegressor.Fit(xTrain, yTrain.Clamp(0, 1), new MulticalibrationOptions { Levels = o.Levels, Alpha = 1.0 / (4.0 * o.Levels * o.Levels) });
        double q = ConformalRiskControl.SplitConformalQuantile((yCal - mc.Predict(xCal)).Abs().ToArray<double>(), alpha);
        var f = mc.Predict(xTest);
        var (c3, w3) = Score(f - q, f + q);
        yield return ("LSBoost + split conformal", c3, w3);

        // Quantile aggregation of NGBoost's normal quantiles and linear quantile regression, then CQR.
        double[] taus = [alpha / 2, 0.5, 1 - alpha / 2];
        var linear = LinearQuantiles(xTrain, yTrain, taus, o.Steps);
        Tensor NgQuantiles(Tensor xs)
        {
            var (mu, sigma) = ng.Predict(xs);
            var z = Tensor.FromArray(taus.Select(t => Kiln.Kernels.Reference.NormalIcdf(t)).ToArray(), new Shape(1, taus.Length));
            return mu.Unsqueeze(1) + sigma.Unsqueeze(1) * z;
        }
        Tensor Linear(Tensor xs) { using (Autograd.NoGrad()) return linear.Call(xs).Detach(); }
        var agg = QuantileAggregator.Fit([NgQuantiles(xTrain), Linear(xTrain)], yTrain, taus, o.Steps, 0.05);
        var qTest = agg.Predict([NgQuantiles(xTest), Linear(xTest)]);
        Tensor Col(Tensor t, int k) => t.Narrow(1, k, 1).Reshape(-1);
        var (c4, w4) = Score(Col(qTest, 0), Col(qTest, 2));
        yield return ("quantile aggregation", c4, w4);
        var qCal = agg.Predict([NgQuantiles(xCal), Linear(xCal)]);
        double qq = QuantileAggregator.ConformalizedInterval(Col(qCal, 0), Col(qCal, 2), yCal, alpha);
        var (c5, w5) = Score(Col(qTest, 0) - qq, Col(qTest, 2) + qq);
        yield return ("quantile aggregation + CQR", c5, w5);
    }

    // Linear quantile regression: one linear head per level, AdamW on the pinball loss.
    static Linear LinearQuantiles(Tensor x, Tensor y, double[] taus, int steps)
    {
        var head = new Linear(x.Shape[1], taus.Length, true, new Generator(5), DType.Float64);
        var opt = new AdamW(head.Parameters(), 0.02, weightDecay: 0);
        for (int s = 0; s < steps; s++)
        {
            opt.ZeroGrad();
            QuantileLosses.Pinball(head.Call(x), y, taus).Backward();
            opt.Step();
        }
        return head;
    }
}
