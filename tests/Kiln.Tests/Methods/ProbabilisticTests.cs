using Kiln.Methods.Probabilistic;
using Kiln.NN;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests.Methods;

/// <summary>
/// The probabilistic-prediction family (issue 24): conformal risk control (exchangeable and weighted), NGBoost,
/// multicalibration boosting, quantile aggregation and the regression tree they share, each CHECK against float64
/// math written here or by simulation over seeds.
/// </summary>
public class ProbabilisticTests
{
    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));
    static double Gaussian(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    // ---------- Conformal risk control ----------

    // The paper's rule in float64: the first j with sum_i w~_i L_ij + w~_{n+1} B <= alpha, else the last.
    static int CrcIndex(double[,] l, double[] w, double alpha, double b)
    {
        int n = l.GetLength(0), m = l.GetLength(1);
        double total = 1 + w.Sum();
        for (int j = 0; j < m; j++)
        {
            double r = b / total;
            for (int i = 0; i < n; i++) r += w[i] / total * l[i, j];
            if (r <= alpha) return j;
        }
        return m - 1;
    }

    static Tensor Matrix(double[,] a) => T(a.Cast<double>().ToArray(), a.GetLength(0), a.GetLength(1));

    [Fact]
    public void Conformal_risk_control_matches_the_papers_rule_and_reduces_to_split_conformal()
    {
        var rng = new Random(1);
        for (int trial = 0; trial < 40; trial++)
        {
            int n = 1 + rng.Next(40);
            double alpha = 0.02 + 0.4 * rng.NextDouble();
            var s = Enumerable.Range(0, n).Select(_ => Gaussian(rng)).ToArray();
            var grid = s.OrderBy(v => v).ToArray();
            // Miscoverage of the set {y : s(y) <= lambda}: L_i(lambda) = 1[s_i > lambda], non-increasing in lambda.
            var l = new double[n, n];
            for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) l[i, j] = s[i] > grid[j] ? 1 : 0;
            int j0 = ConformalRiskControl.Calibrate(Matrix(l), alpha);
            Assert.Equal(CrcIndex(l, Enumerable.Repeat(1.0, n).ToArray(), alpha, 1), j0);
            double q = ConformalRiskControl.SplitConformalQuantile(s, alpha);
            int k = (int)Math.Ceiling((n + 1) * (1 - alpha));
            if (k > n) Assert.True(double.IsPositiveInfinity(q));
            else { Assert.Equal(grid[k - 1], q); Assert.Equal(q, grid[j0]); }
            // Random bounded non-increasing losses with B = 2 and random weights.
            var b = 2.0;
            var l2 = new double[n, 7];
            var w = Enumerable.Range(0, n).Select(_ => rng.NextDouble()).ToArray();
            for (int i = 0; i < n; i++) { double v = b; for (int j = 0; j < 7; j++) { v *= rng.NextDouble(); l2[i, j] = v; } }
            Assert.Equal(CrcIndex(l2, w, alpha, b), ConformalRiskControl.CalibrateWeighted(Matrix(l2), T(w, n), alpha, b));
            // Unit weights are exchangeable conformal risk control.
            Assert.Equal(ConformalRiskControl.Calibrate(Matrix(l2), alpha, b), ConformalRiskControl.CalibrateWeighted(Matrix(l2), T(Enumerable.Repeat(1.0, n).ToArray(), n), alpha, b));
        }
        Assert.Throws<ArgumentException>(() => ConformalRiskControl.Calibrate(T([0.5, 1.5], 1, 2), 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ConformalRiskControl.Calibrate(T([0.5, 0.2], 1, 2), 0));
        Assert.Throws<ArgumentException>(() => ConformalRiskControl.CalibrateWeighted(T([0.5, 0.2], 1, 2), T([2.0], 1), 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ConformalRiskControl.SplitConformalQuantile([1.0], 1));
    }

    // L(lambda) = min(1, max(0, |y| - lambda)) on the grid 0, 0.01, .., 4: bounded by 1, continuous, non-increasing.
    static readonly double[] Grid = Enumerable.Range(0, 401).Select(j => j / 100.0).ToArray();
    static double Loss(double y, double lambda) => Math.Min(1, Math.Max(0, Math.Abs(y) - lambda));

    static Tensor LossMatrix(double[] ys)
    {
        var l = new double[ys.Length * Grid.Length];
        for (int i = 0; i < ys.Length; i++) for (int j = 0; j < Grid.Length; j++) l[i * Grid.Length + j] = Loss(ys[i], Grid[j]);
        return T(l, ys.Length, Grid.Length);
    }

    [Fact]
    public void Conformal_risk_control_guarantee_holds_by_simulation_within_its_finite_sample_slack()
    {
        var rng = new Random(2);
        const int seeds = 800, n = 19;
        const double alpha = 0.1;
        var risks = new double[seeds];
        for (int s = 0; s < seeds; s++)
        {
            var ys = Enumerable.Range(0, n).Select(_ => 1.5 * Gaussian(rng)).ToArray();
            double lambda = Grid[ConformalRiskControl.Calibrate(LossMatrix(ys), alpha)];
            // The exact conditional risk of the new point: average over many fresh draws.
            risks[s] = Enumerable.Range(0, 200).Average(_ => Loss(1.5 * Gaussian(rng), lambda));
        }
        double mean = risks.Average(), se = Math.Sqrt(risks.Sum(r => (r - mean) * (r - mean)) / (seeds - 1) / seeds);
        // alpha - 2B/(n+1) <= E[L(lambda)] <= alpha (Theorems 1 and 2), up to Monte-Carlo error and the 0.01 grid.
        Assert.InRange(mean, alpha - 2.0 / (n + 1) - 4 * se, alpha + 4 * se);
    }

    [Fact]
    public void Weighted_conformal_risk_control_recovers_the_risk_under_drift()
    {
        // The noise scale doubles halfway through the calibration stream and stays there for the test point.
        var rng = new Random(3);
        const int seeds = 300, n = 60;
        const double alpha = 0.1;
        var w = Enumerable.Range(0, n).Select(i => Math.Pow(0.9, n - i)).ToArray();
        double plain = 0, weighted = 0;
        for (int s = 0; s < seeds; s++)
        {
            var ys = Enumerable.Range(0, n).Select(i => (i < n / 2 ? 0.5 : 1.5) * Gaussian(rng)).ToArray();
            var l = LossMatrix(ys);
            double l0 = Grid[ConformalRiskControl.Calibrate(l, alpha)], l1 = Grid[ConformalRiskControl.CalibrateWeighted(l, T(w, n), alpha)];
            for (int k = 0; k < 100; k++)
            {
                double y = 1.5 * Gaussian(rng);
                plain += Loss(y, l0); weighted += Loss(y, l1);
            }
        }
        plain /= seeds * 100; weighted /= seeds * 100;
        Assert.True(plain > alpha + 0.02, $"unweighted risk {plain}");
        Assert.InRange(weighted, 0, alpha + 0.01);
    }

    // ---------- Regression tree ----------

    [Fact]
    public void Regression_tree_depth_zero_is_the_weighted_mean_and_a_step_is_found_exactly()
    {
        var x = T([0.0, 1, 2, 3, 4, 5], 6, 1);
        var y = T([1.0, 1, 1, 5, 5, 5], 6);
        Close.Check(T(Enumerable.Repeat(3.0, 6).ToArray(), 6), RegressionTree.Fit(x, y, 0, 1).Predict(x), 1e-15, 0);
        Close.Check(T(Enumerable.Repeat(13.0 / 5, 6).ToArray(), 6), RegressionTree.Fit(x, y, 0, 1, T([1.0, 1, 1, 1, 1, 0], 6)).Predict(x) * 1, 1e-15, 0);
        var step = RegressionTree.Fit(x, y, 3, 1);
        Close.Check(y, step.Predict(x), 0, 0);
        Assert.Equal(2, step.Leaves);
        Close.Check(T([1.0, 5], 2), step.Predict(T([2.4, 2.6], 2, 1)), 0, 0);
        Assert.Throws<ArgumentException>(() => RegressionTree.Fit(x, T([1.0], 1)));
        Assert.Throws<ArgumentException>(() => step.Predict(T([1.0, 2], 1, 2)));
    }

    // ---------- NGBoost ----------

    [Fact]
    public void Ngboost_natural_gradient_equals_the_fisher_preconditioned_autodiff_gradient()
    {
        var rng = new Random(4);
        for (int trial = 0; trial < 10; trial++)
        {
            double mu = Gaussian(rng), ls = 0.5 * Gaussian(rng), y = 2 * Gaussian(rng), sigma = Math.Exp(ls);
            // Autodiff gradient and Hessian of the NLL; the Fisher is the Hessian's expectation over y ~ N(mu, sigma^2),
            // exact with the two points mu -/+ sigma because the Hessian is quadratic in y - mu.
            (double[] G, double[,] H) Derivatives(double yv)
            {
                var m = T([mu], 1).RequiresGrad_(); var s = T([ls], 1).RequiresGrad_();
                var g = Autograd.Grad([NGBoost.NegLogLikelihood(m, s, T([yv], 1)).Sum()], [m, s], createGraph: true);
                var h0 = Autograd.Grad([g[0].Sum()], [m, s], retainGraph: true);
                var h1 = Autograd.Grad([g[1].Sum()], [m, s]);
                return ([g[0].Item(), g[1].Item()], new[,] { { h0[0].Item(), h0[1].Item() }, { h1[0].Item(), h1[1].Item() } });
            }
            var (grad, _) = Derivatives(y);
            var (_, hp) = Derivatives(mu + sigma); var (_, hm) = Derivatives(mu - sigma);
            double a = (hp[0, 0] + hm[0, 0]) / 2, b = (hp[0, 1] + hm[0, 1]) / 2, c = (hp[1, 0] + hm[1, 0]) / 2, d = (hp[1, 1] + hm[1, 1]) / 2;
            double det = a * d - b * c;
            double n0 = (d * grad[0] - b * grad[1]) / det, n1 = (-c * grad[0] + a * grad[1]) / det;
            var (nm, ns) = NGBoost.NaturalGradient(T([mu], 1), T([ls], 1), T([y], 1));
            Assert.Equal(n0, nm.Item(), 1e-10);
            Assert.Equal(n1, ns.Item(), 1e-10);
            var (fm, fs) = NGBoost.Fisher(T([ls], 1));
            Assert.Equal(a, fm.Item(), 1e-10); Assert.Equal(d, fs.Item(), 1e-10); Assert.Equal(0, b, 1e-12);
            var (gm, gs) = NGBoost.Gradient(T([mu], 1), T([ls], 1), T([y], 1));
            Assert.Equal(grad[0], gm.Item(), 1e-10); Assert.Equal(grad[1], gs.Item(), 1e-10);
        }
    }

    [Fact]
    public void Ngboost_line_search_doubles_then_halves_like_the_reference_implementation()
    {
        Assert.Equal(4, NGBoost.LineSearch(r => (r - 3) * (r - 3)));
        Assert.Equal(1.0 / (1 << 20), NGBoost.LineSearch(r => r));
        Assert.Equal(0.5, NGBoost.LineSearch(r => (r - 0.4) * (r - 0.4)));
        Assert.Equal(512, NGBoost.LineSearch(r => -r));
    }

    [Fact]
    public void Ngboost_is_calibrated_on_heteroscedastic_synthetic_data()
    {
        var rng = new Random(5);
        (Tensor X, Tensor Y) Draw(int n)
        {
            var x = Enumerable.Range(0, n).Select(_ => 4 * rng.NextDouble() - 2).ToArray();
            return (T(x, n, 1), T(x.Select(v => Math.Sin(v) + (0.1 + 0.5 * Math.Abs(v)) * Gaussian(rng)).ToArray(), n));
        }
        var (xt, yt) = Draw(800);
        var model = NGBoost.Fit(xt, yt, new NGBoostOptions { Rounds = 60, LearningRate = 0.05, MaxDepth = 2, MinLeaf = 20 });
        Assert.True(model.TrainLoss[^1] < model.TrainLoss[0] - 0.2, $"NLL {model.TrainLoss[0]} -> {model.TrainLoss[^1]}");
        Assert.All(model.Scales, r => Assert.True(r > 0));
        var (xs, ys) = Draw(600);
        var (lo, hi) = model.Interval(xs, 0.2);
        var y = ys.ToArray<double>(); var l = lo.ToArray<double>(); var h = hi.ToArray<double>();
        double coverage = Enumerable.Range(0, 600).Average(i => y[i] >= l[i] && y[i] <= h[i] ? 1.0 : 0.0);
        Assert.InRange(coverage, 0.72, 0.88);
        var sigma = model.Predict(T([0.0, 1.9], 2, 1)).Sigma.ToArray<double>();
        Assert.True(sigma[1] > 2 * sigma[0], $"sigma(0) = {sigma[0]}, sigma(1.9) = {sigma[1]}");
        Assert.Throws<ArgumentException>(() => NGBoost.Fit(T([1.0], 1, 1), T([1.0], 1)));
    }

    // ---------- Multicalibration (LSBoost) ----------

    [Fact]
    public void Lsboost_mse_falls_every_round_and_the_result_is_calibrated_on_its_level_sets()
    {
        var rng = new Random(6);
        const int n = 500, d = 3, m = 20;
        var x = Dense.Uniform(rng, n * d);
        var y = Enumerable.Range(0, n).Select(i => Math.Clamp(0.5 + 0.3 * x[i * d] * x[i * d + 1] + 0.2 * Math.Sign(x[i * d + 2]) + 0.1 * Gaussian(rng), 0, 1)).ToArray();
        double alpha = 1.0 / (4 * m * m);
        var o = new MulticalibrationOptions { Levels = m, Alpha = alpha, MaxDepth = 2, MinLeaf = 10 };
        var model = MulticalibratedRegressor.Fit(T(x, n, d), T(y, n), o);
        Assert.True(model.Rounds >= 2);
        for (int t = 1; t < model.TrainMse.Count; t++) Assert.True(model.TrainMse[t] < model.TrainMse[t - 1], $"round {t}: {model.TrainMse[t - 1]} -> {model.TrainMse[t]}");
        // Replaying the rounds on the training inputs gives the training predictions.
        var f = model.Predict(T(x, n, d)).ToArray<double>();
        Assert.Equal(model.TrainMse[^1], Enumerable.Range(0, n).Average(i => (y[i] - f[i]) * (y[i] - f[i])), 1e-12);
        Assert.All(f, v => Assert.Equal(0, Math.Abs(v * m - Math.Round(v * m)), 1e-9));
        // Termination: no tree of H improves the level sets by more than alpha, and the level sets are calibrated.
        Assert.True(model.Improvements[^1] <= alpha);
        double improvement = 0, calibration = 0;
        foreach (var g in Enumerable.Range(0, n).GroupBy(i => f[i]))
        {
            var rows = g.ToArray();
            var xs = T(rows.SelectMany(i => x.AsSpan(i * d, d).ToArray()).ToArray(), rows.Length, d);
            var ys = rows.Select(i => y[i]).ToArray();
            var h = RegressionTree.Fit(xs, T(ys, rows.Length), 2, 10).Predict(xs).ToArray<double>();
            improvement += rows.Select((i, k) => (y[i] - g.Key) * (y[i] - g.Key) - (y[i] - h[k]) * (y[i] - h[k])).Sum() / n;
            calibration += rows.Length / (double)n * Math.Pow(ys.Average() - g.Key, 2);
        }
        Assert.InRange(improvement, -1e-12, alpha);
        Assert.InRange(calibration, 0, alpha);
        Assert.Equal(3, MulticalibratedRegressor.RoundToLevel(0.149, 20));
        Assert.Throws<ArgumentException>(() => MulticalibratedRegressor.Fit(T([0.0], 1, 1), T([1.5], 1)));
    }

    // ---------- Quantile aggregation ----------

    static double PinballSum(double[] q, double y, double[] taus) => q.Select((v, k) => Math.Max(taus[k] * (y - v), (taus[k] - 1) * (y - v))).Sum();

    [Fact]
    public void Pinball_loss_matches_its_formula_has_its_gradient_and_sorting_never_raises_it()
    {
        var rng = new Random(7);
        double[] taus = [0.1, 0.3, 0.5, 0.9];
        for (int trial = 0; trial < 30; trial++)
        {
            int n = 1 + rng.Next(6);
            var q = Dense.Uniform(rng, n * 4, -2, 2); var y = Dense.Uniform(rng, n, -2, 2);
            double expected = Enumerable.Range(0, n).Sum(i => PinballSum(q.AsSpan(i * 4, 4).ToArray(), y[i], taus));
            Assert.Equal(expected / (4 * n), QuantileLosses.Pinball(T(q, n, 4), T(y, n), taus).Item(), 1e-12);
            // Sorting theorem: rearranged quantiles have no larger summed pinball loss, row by row.
            var sorted = QuantileAggregator.Rearrange(T(q, n, 4)).ToArray<double>();
            for (int i = 0; i < n; i++)
                Assert.True(PinballSum(sorted.AsSpan(i * 4, 4).ToArray(), y[i], taus) <= PinballSum(q.AsSpan(i * 4, 4).ToArray(), y[i], taus) + 1e-12);
        }
        var r = GradCheck.Run(a => QuantileLosses.Pinball(a[0], T([0.3, -1.2], 2), taus), [T([0.1, 0.5, -0.4, 1.1, -2, -1.5, 0.7, 0.2], 2, 4)]);
        Assert.True(r.Passed, r.ToString());
        Assert.Throws<ShapeMismatchException>(() => QuantileLosses.Pinball(T([1.0, 2], 1, 2), T([1.0], 1), taus));
        Assert.Throws<ArgumentOutOfRangeException>(() => QuantileLosses.Pinball(T([1.0], 1, 1), T([1.0], 1), [1.0]));
    }

    [Fact]
    public void Quantile_aggregation_weights_the_better_model_and_covers_after_conformal_calibration()
    {
        var rng = new Random(8);
        double[] taus = [0.05, 0.5, 0.95];
        double[] z = [-1.6448536269514729, 0, 1.6448536269514729];
        // y | x ~ N(x, 1): model A predicts the true quantiles, model B is shifted and too narrow.
        (Tensor X, Tensor Y, Tensor A, Tensor B) Draw(int n)
        {
            var x = Enumerable.Range(0, n).Select(_ => 2 * Gaussian(rng)).ToArray();
            var y = x.Select(v => v + Gaussian(rng)).ToArray();
            return (T(x, n, 1), T(y, n), T(x.SelectMany(v => z.Select(q => v + q)).ToArray(), n, 3), T(x.SelectMany(v => z.Select(q => v + 0.8 + 0.3 * q)).ToArray(), n, 3));
        }
        var (_, yt, at, bt) = Draw(300);
        var agg = QuantileAggregator.Fit([at, bt], yt, taus, steps: 200, learningRate: 0.1);
        var w = agg.Weights.ToArray<double>();
        for (int k = 0; k < 3; k++) Assert.True(w[k] > 0.7, $"level {taus[k]}: weight of the true model {w[k]}");
        // Conformalized interval from the 5% and 95% aggregate quantiles: coverage >= 1 - alpha on average over splits.
        const double alpha = 0.2;
        var cover = new List<double>();
        for (int s = 0; s < 150; s++)
        {
            var (_, yc, ac, bc) = Draw(30);
            var (_, ye, ae, be) = Draw(50);
            var qc = agg.Predict([ac, bc]); var qe = agg.Predict([ae, be]);
            double q = QuantileAggregator.ConformalizedInterval(qc.Narrow(1, 0, 1).Reshape(-1), qc.Narrow(1, 2, 1).Reshape(-1), yc, alpha);
            var lo = qe.Narrow(1, 0, 1).Reshape(-1).ToArray<double>(); var hi = qe.Narrow(1, 2, 1).Reshape(-1).ToArray<double>(); var y = ye.ToArray<double>();
            cover.Add(Enumerable.Range(0, 50).Average(i => y[i] >= lo[i] - q && y[i] <= hi[i] + q ? 1.0 : 0.0));
        }
        double mean = cover.Average(), se = Math.Sqrt(cover.Sum(c => (c - mean) * (c - mean)) / (cover.Count - 1) / cover.Count);
        // 1 - alpha <= E[coverage] <= 1 - alpha + 1/(n+1) for continuous scores.
        Assert.InRange(mean, 1 - alpha - 4 * se, 1 - alpha + 1.0 / 31 + 4 * se);
        Assert.Throws<ArgumentException>(() => QuantileAggregator.Fit([at], yt, [0.5, 0.2, 0.9]));
        Assert.Throws<ArgumentException>(() => agg.Predict([at]));
    }
}

public class ProbabilisticMoreTests
{
    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));
    static double Gaussian(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    // ---------- Causal isotonic calibration ----------

    [Fact]
    public void Pava_equals_the_min_max_formula_of_isotonic_regression()
    {
        var rng = new Random(21);
        for (int trial = 0; trial < 40; trial++)
        {
            int n = 1 + rng.Next(12);
            // Distinct sorted x, random y and weights: f_i = max_{j <= i} min_{k >= i} weighted mean(y_j .. y_k).
            var x = Enumerable.Range(0, n).Select(i => i + 0.5 * rng.NextDouble()).ToArray();
            var y = Dense.Uniform(rng, n, -2, 2); var w = Dense.Uniform(rng, n, 0.1, 2);
            var iso = IsotonicRegression.Fit(x, y, w);
            for (int i = 0; i < n; i++)
            {
                double best = double.NegativeInfinity;
                for (int j = 0; j <= i; j++)
                {
                    double inner = double.PositiveInfinity;
                    for (int k = i; k < n; k++)
                        inner = Math.Min(inner, Enumerable.Range(j, k - j + 1).Sum(t => w[t] * y[t]) / Enumerable.Range(j, k - j + 1).Sum(t => w[t]));
                    best = Math.Max(best, inner);
                }
                Assert.Equal(best, iso.Predict(x[i]), 1e-12);
            }
            for (int b = 1; b < iso.Values.Count; b++) Assert.True(iso.Values[b] > iso.Values[b - 1]);
        }
        // Ties in x share one value; points outside take the end blocks.
        var tied = IsotonicRegression.Fit([1.0, 1, 2], [3.0, 1, 0]);
        Assert.Equal(4.0 / 3, tied.Predict(1), 1e-12);
        Assert.Equal(4.0 / 3, tied.Predict(-5), 1e-12);
        Assert.Equal(4.0 / 3, tied.Predict(9), 1e-12);
        Assert.Throws<ArgumentException>(() => IsotonicRegression.Fit([1.0], [1.0, 2]));
        Assert.Throws<ArgumentException>(() => IsotonicRegression.Fit([1.0], [1.0], [0.0]));
    }

    [Fact]
    public void Causal_isotonic_calibration_fixes_a_miscalibrated_cate_predictor_on_simulated_data()
    {
        var rng = new Random(22);
        (double[] Tau, double[] Pred, double[] Chi) Draw(int n)
        {
            var tau = new double[n]; var pred = new double[n]; var y = new double[n]; var a = new int[n]; var mu0 = new double[n]; var mu1 = new double[n]; var pi = new double[n];
            for (int i = 0; i < n; i++)
            {
                double x = 2 * rng.NextDouble() - 1;
                tau[i] = 1 + x;                       // the true CATE
                pred[i] = 0.5 + 2 * Math.Pow(x, 3);  // monotone in the truth but miscalibrated
                pi[i] = 0.3 + 0.4 * rng.NextDouble();
                a[i] = rng.NextDouble() < pi[i] ? 1 : 0;
                mu0[i] = x; mu1[i] = x + tau[i];
                y[i] = (a[i] == 1 ? mu1[i] : mu0[i]) + 0.5 * Gaussian(rng);
            }
            return (tau, pred, CausalIsotonicCalibration.PseudoOutcomes(y, a, mu0, mu1, pi));
        }
        var (_, pc, chi) = Draw(2000);
        var theta = CausalIsotonicCalibration.Fit(pc, chi);
        var (tauT, predT, _) = Draw(2000);
        double before = Enumerable.Range(0, 2000).Average(i => Math.Pow(predT[i] - tauT[i], 2));
        double after = Enumerable.Range(0, 2000).Average(i => Math.Pow(theta.Predict(predT[i]) - tauT[i], 2));
        Assert.True(after < before / 4, $"MSE to the true CATE {before} -> {after}");
        // AIPW with the true outcome models: chi - tau has mean zero (within 4 standard errors).
        var (tauD, _, chiD) = Draw(4000);
        var diff = chiD.Zip(tauD, (c, t) => c - t).ToArray();
        double md = diff.Average(), sd = Math.Sqrt(diff.Sum(v => (v - md) * (v - md)) / (diff.Length - 1));
        Assert.InRange(md, -4 * sd / Math.Sqrt(diff.Length), 4 * sd / Math.Sqrt(diff.Length));
        Assert.Throws<ArgumentException>(() => CausalIsotonicCalibration.PseudoOutcomes([1.0], [2], [0.0], [0.0], [0.5]));
        Assert.Throws<ArgumentException>(() => CausalIsotonicCalibration.PseudoOutcomes([1.0], [1], [0.0], [0.0], [1.0]));
    }

    // ---------- Classifier-based variable construction ----------

    [Fact]
    public void Classifier_features_build_the_threshold_labels_count_crossings_and_help_a_tree_on_heteroscedastic_data()
    {
        var labels = ClassifierFeatures.Labels(T([0.5, 2, -1, 3], 4), [0.0, 2, 2.5]).ToArray<double>();
        Assert.Equal([0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0], labels);
        Assert.Equal(4, ClassifierFeatures.CrossingViolations(T([0.2, 0.1, 0.5, 0.9, 0.3, 0.4, 0.5, 0.4, 0.3], 3, 3)));
        Assert.Equal(0, ClassifierFeatures.CrossingViolations(T([0.2, 0.3], 2, 1)));
        var rng = new Random(23);
        (Tensor X, Tensor Y) Draw(int n)
        {
            var x = Dense.Uniform(rng, n * 2);
            return (T(x, n, 2), T(Enumerable.Range(0, n).Select(i => Math.Exp(2 * x[2 * i]) + x[2 * i + 1] + (0.1 + Math.Abs(x[2 * i])) * Gaussian(rng)).ToArray(), n));
        }
        var (xt, yt) = Draw(600);
        var features = ClassifierFeatures.Fit(xt, yt, 9, 3, 10);
        Assert.True(features.Thresholds.Zip(features.Thresholds.Skip(1)).All(p => p.First <= p.Second));
        var (xs, ys) = Draw(600);
        double Mse(Tensor pred) => (pred - ys).Square().Mean().Item();
        double plain = Mse(RegressionTree.Fit(xt, yt, 2, 10).Predict(xs));
        double augmented = Mse(RegressionTree.Fit(features.Augment(xt), yt, 2, 10).Predict(features.Augment(xs)));
        Assert.True(augmented < plain, $"test MSE {plain} -> {augmented}");
    }
}

public class BoostedLastLayerTests
{
    [Fact]
    public void Boosted_stages_assemble_exactly_into_one_layer_and_dropping_stages_is_truncated_boosting()
    {
        var rng = new Random(31);
        const int n = 120, d = 4;
        var x = Dense.Uniform(rng, n * d);
        var y = Enumerable.Range(0, n).SelectMany(i => new[] { Math.Sin(3 * x[i * d]) + x[i * d + 1] * x[i * d + 2], Math.Abs(x[i * d + 3]) }).ToArray();
        var phi = Tensor.FromArray(x, new Shape(n, d)); var target = Tensor.FromArray(y, new Shape(n, 2));
        var model = BoostedLastLayer.Fit(phi, target, new BoostedLayerOptions { Stages = 5, UnitsPerStage = 3, Steps = 60, LearningRate = 0.05, Seed = 1 });
        for (int t = 1; t < model.TrainMse.Count; t++) Assert.True(model.TrainMse[t] < model.TrainMse[t - 1], $"stage {t}: {model.TrainMse[t - 1]} -> {model.TrainMse[t]}");
        var full = model.Assemble();
        Assert.Equal(new Shape(15, d), full.W1.Shape);
        Close.Check(model.Predict(phi), BoostedLastLayer.AssembledForward(full, phi), 1e-12, 1e-12, "assembled");
        for (int k = 0; k <= 5; k++)
        {
            // The first 3k hidden units of the full layer, with the output bias of the first k stages.
            var truncated = model.Assemble(k);
            Close.Check(model.Predict(phi, k), BoostedLastLayer.AssembledForward(truncated, phi), 1e-12, 1e-12, $"k = {k}");
            if (k > 0) Close.Check(full.W1.Narrow(0, 0, 3 * k), truncated.W1, 0, 0, $"W1 k = {k}");
            if (k > 0) Close.Check(full.W2.Narrow(1, 0, 3 * k), truncated.W2, 0, 0, $"W2 k = {k}");
        }
        Close.Check(target.Mean(0).Unsqueeze(0).Expand(n, 2), model.Predict(phi, 0), 1e-12, 1e-12, "F0");
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Predict(phi, 6));
        Assert.Throws<ArgumentException>(() => BoostedLastLayer.Fit(phi, Tensor.FromArray(y)));
    }
}

public class CondensedBoostingTests
{
    [Fact]
    public void Multi_output_tree_reduces_to_the_single_output_tree_and_predicts_per_leaf_column_means()
    {
        var rng = new Random(41);
        const int n = 80, d = 3;
        var x = Tensor.FromArray(Dense.Uniform(rng, n * d), new Shape(n, d));
        var y = Dense.Uniform(rng, n);
        var single = RegressionTree.Fit(x, Tensor.FromArray(y), 3, 4);
        var column = RegressionTree.Fit(x, Tensor.FromArray(y, new Shape(n, 1)), 3, 4);
        var padded = RegressionTree.Fit(x, Tensor.FromArray(y.SelectMany(v => new[] { v, 0.0 }).ToArray(), new Shape(n, 2)), 3, 4);
        Assert.Equal(single.Apply(x), column.Apply(x));
        Assert.Equal(single.Apply(x), padded.Apply(x));
        Close.Check(single.Predict(x), column.Predict(x).Reshape(-1), 0, 0);
        var y2 = Dense.Uniform(rng, n * 2);
        var tree = RegressionTree.Fit(x, Tensor.FromArray(y2, new Shape(n, 2)), 2, 5);
        var leaf = tree.Apply(x); var pred = tree.Predict(x).ToArray<double>();
        for (int i = 0; i < n; i++)
            for (int k = 0; k < 2; k++)
                Assert.Equal(Enumerable.Range(0, n).Where(j => leaf[j] == leaf[i]).Average(j => y2[j * 2 + k]), pred[i * 2 + k], 1e-12);
    }

    [Fact]
    public void Condensed_boosting_leaf_values_are_friedmans_newton_step_and_training_improves()
    {
        var rng = new Random(42);
        const int n = 150, d = 2, c = 3;
        var labels = Enumerable.Range(0, n).Select(i => (long)(i % c)).ToArray();
        var xs = Enumerable.Range(0, n * d).Select(k => (k % d == 0 ? Math.Cos(2 * Math.PI * labels[k / d] / c) : Math.Sin(2 * Math.PI * labels[k / d] / c)) + 0.4 * (rng.NextDouble() - 0.5)).ToArray();
        var x = Tensor.FromArray(xs, new Shape(n, d)); var y = Tensor.FromArray(labels);
        var model = CondensedGradientBoosting.Fit(x, y, c, rounds: 20, shrinkage: 0.3, maxDepth: 2, minLeaf: 5);
        // Round 1 by hand: F = 0, r_ik = 1[y = k] - 1/K, the multi-output tree on r, gamma = (K-1)/K sum r / sum |r|(1 - |r|).
        var r = labels.SelectMany(l => Enumerable.Range(0, c).Select(k => (k == l ? 1.0 : 0.0) - 1.0 / c)).ToArray();
        var leaf = RegressionTree.Fit(x, Tensor.FromArray(r, new Shape(n, c)), 2, 5).Apply(x);
        var f1 = model.DecisionFunction(x, 1).ToArray<double>();
        for (int i = 0; i < n; i++)
            for (int k = 0; k < c; k++)
            {
                var rows = Enumerable.Range(0, n).Where(j => leaf[j] == leaf[i]).ToArray();
                double gamma = (c - 1.0) / c * rows.Sum(j => r[j * c + k]) / rows.Sum(j => Math.Abs(r[j * c + k]) * (1 - Math.Abs(r[j * c + k])));
                Assert.Equal(0.3 * gamma, f1[i * c + k], 1e-12);
            }
        Assert.True(model.TrainLoss[^1] < model.TrainLoss[0] / 3, $"cross entropy {model.TrainLoss[0]} -> {model.TrainLoss[^1]}");
        var predicted = model.Predict(x).ToArray<long>();
        Assert.True(predicted.Where((p, i) => p == labels[i]).Count() > 0.95 * n);
        Assert.Equal(new double[n * c], model.DecisionFunction(x, 0).ToArray<double>());
        Assert.Throws<ArgumentException>(() => CondensedGradientBoosting.Fit(x, Tensor.FromArray(labels.Select(l => l + 1).ToArray()), c));
        Assert.Throws<ArgumentOutOfRangeException>(() => CondensedGradientBoosting.Fit(x, y, 1));
    }
}

/// <summary>`kiln calibrate` with tiny settings: one JSON object with a row per data set and method.</summary>
[Collection(nameof(SerialCollection))]
public class CalibrateVerbTests
{
    [Fact]
    public void Calibrate_verb_prints_one_json_object_with_coverage_and_width_rows()
    {
        var r = CliRun.JsonObject(Kiln.Cli.CalibrateVerb.Build(), ["calibrate", "--rounds", "5", "--steps", "20", "--splits", "1", "--levels", "10", "--json"]);
        Assert.Equal(569, r.GetProperty("sizes").GetProperty("wdbc-area").GetInt32());
        var rows = r.GetProperty("rows").EnumerateArray().ToList();
        Assert.Equal(10, rows.Count);
        Assert.All(rows, x => Assert.InRange(x.GetProperty("coverage").GetDouble(), 0, 1));
        Assert.All(rows, x => Assert.True(x.GetProperty("width").GetDouble() > 0));
        // The conformal methods reach close to 90% even with 5 boosting rounds (about 110 test rows per data set).
        Assert.All(rows.Where(x => x.GetProperty("method").GetString()!.Contains("CQR") || x.GetProperty("method").GetString()!.Contains("CRC")),
            x => Assert.InRange(x.GetProperty("coverage").GetDouble(), 0.75, 1));
        Assert.Equal(Kiln.Cli.Cli.BadUsage, CliRun.Capture(Kiln.Cli.CalibrateVerb.Build(), ["calibrate", "--alpha", "2", "--json"]).Code);
    }
}
