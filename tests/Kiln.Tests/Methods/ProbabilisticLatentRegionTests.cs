using Kiln.Methods.Probabilistic;
using Kiln.Tests.TestKit;
using Xunit;
using Xunit.Abstractions;

namespace Kiln.Tests.Methods;

/// <summary>
/// Calibrated multiple-output quantile regions in a learned latent space (Feldman, Bates and Romano, 2023): the flow,
/// score, calibration and membership against float64 math written here; finite-sample coverage over many seeds;
/// the region's volume against the conformalised per-coordinate box on a curved heteroscedastic response.
/// </summary>
public class ProbabilisticLatentRegionTests(ITestOutputHelper output)
{
    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));

    // A banana whose scale grows with |x|: y = (x + sigma t, sigma (0.6 t^2 + 0.25 e)), sigma = 0.5 + 0.5 |x|,
    // t, e ~ N(0, 1), x ~ U(-1, 1).
    static double Sigma(double x) => 0.5 + 0.5 * Math.Abs(x);

    static (double[] X, double[] Y) Banana(Random rng, int n)
    {
        var x = new double[n]; var y = new double[2 * n];
        for (int i = 0; i < n; i++)
        {
            x[i] = 2 * rng.NextDouble() - 1;
            double t = Normal(rng), e = Normal(rng), s = Sigma(x[i]);
            y[2 * i] = x[i] + s * t;
            y[2 * i + 1] = s * (0.6 * t * t + 0.25 * e);
        }
        return (x, y);
    }

    static double Normal(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    static readonly Lazy<LatentQuantileRegion> Fitted = new(() =>
    {
        var (x, y) = Banana(new Random(50), 1000);
        return LatentQuantileRegion.Fit(T(x, x.Length, 1), T(y, x.Length, 2), layers: 2, hidden: 32, steps: 200, learningRate: 0.01, seed: 3);
    });

    [Fact]
    public void Flow_score_calibration_and_membership_match_float64()
    {
        var rng = new Random(51);
        foreach (var (p, d) in new[] { (1, 2), (2, 3) })
        {
            int n = 40;
            var x = Dense.Uniform(rng, n * p, -1, 1);
            var y = Dense.Uniform(rng, n * d, -2, 2);
            var model = LatentQuantileRegion.Fit(T(x, n, p), T(y, n, d), layers: 3, hidden: 8, steps: 30, learningRate: 0.02, seed: 7);
            var (xt, yt) = (T(x, n, p), T(y, n, d));
            var z = model.Encode(xt, yt).ToArray<double>();
            var logDet = model.LogAbsDetJacobian(xt, yt).ToArray<double>();
            // Bijective: decoding the latent gives back y.
            var back = model.Decode(xt, model.Encode(xt, yt)).ToArray<double>();
            for (int i = 0; i < y.Length; i++) Assert.Equal(y[i], back[i], 1e-10);
            // log|det dz/dy| against a central finite-difference Jacobian.
            const double h = 1e-5;
            for (int i = 0; i < 5; i++)
            {
                var jac = new double[d, d];
                for (int c = 0; c < d; c++)
                {
                    var plus = y.AsSpan(i * d, d).ToArray(); var minus = (double[])plus.Clone();
                    plus[c] += h; minus[c] -= h;
                    var xi = T(x.AsSpan(i * p, p).ToArray(), 1, p);
                    var zp = model.Encode(xi, T(plus, 1, d)).ToArray<double>(); var zm = model.Encode(xi, T(minus, 1, d)).ToArray<double>();
                    for (int r = 0; r < d; r++) jac[r, c] = (zp[r] - zm[r]) / (2 * h);
                }
                Assert.Equal(Math.Log(Math.Abs(Det(jac))), logDet[i], 1e-6);
            }
            // NLL = mean(|z|^2 / 2 + (d/2) log 2 pi - log|det|); score = |z|.
            double nll = 0;
            var score = new double[n];
            for (int i = 0; i < n; i++)
            {
                double sq = 0;
                for (int c = 0; c < d; c++) sq += z[i * d + c] * z[i * d + c];
                score[i] = Math.Sqrt(sq);
                nll += (0.5 * sq + 0.5 * d * Math.Log(2 * Math.PI) - logDet[i]) / n;
            }
            Assert.Equal(nll, model.NegLogLikelihood(xt, yt).Item(), 1e-12);
            Assert.Equal(score, model.Scores(xt, yt).ToArray<double>(), (a, b) => Math.Abs(a - b) < 1e-12);
            // Split conformal: the ceil((n + 1)(1 - alpha))-th smallest score; membership is score <= radius.
            foreach (double alpha in new[] { 0.1, 0.25, 0.5 })
            {
                var sorted = score.OrderBy(v => v).ToArray();
                int k = (int)Math.Ceiling((n + 1) * (1 - alpha) - 1e-12);
                double radius = model.Calibrate(xt, yt, alpha);
                Assert.Equal(sorted[k - 1], radius);
                Assert.Equal(score.Select(s => s <= radius).ToArray(), model.Contains(xt, yt, radius));
                Assert.Equal(k, model.Contains(xt, yt, radius).Count(b => b));
            }
            Assert.True(double.IsPositiveInfinity(model.Calibrate(xt, yt, 0.01)));
        }
        var small = LatentQuantileRegion.Fit(T([0.1, -0.3, 0.7], 3, 1), T([1.0, 0.2, -0.5, 0.4, 0.3, -1], 3, 2), layers: 2, hidden: 4, steps: 5);
        var grad = GradCheck.Run(a => small.NegLogLikelihood(a[0], a[1]), [T([0.1, -0.3, 0.7], 3, 1), T([1.0, 0.2, -0.5, 0.4, 0.3, -1], 3, 2)]);
        Assert.True(grad.Passed, grad.ToString());
    }

    static double Det(double[,] a) => a.GetLength(0) == 2
        ? a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
        : a[0, 0] * (a[1, 1] * a[2, 2] - a[1, 2] * a[2, 1]) - a[0, 1] * (a[1, 0] * a[2, 2] - a[1, 2] * a[2, 0]) + a[0, 2] * (a[1, 0] * a[2, 1] - a[1, 1] * a[2, 0]);

    [Fact]
    public void Coverage_over_many_calibration_splits_lies_in_the_finite_sample_window()
    {
        var model = Fitted.Value;
        const int seeds = 1000, nCal = 50, nTest = 50;
        const double alpha = 0.1;
        var (x, y) = Banana(new Random(52), seeds * (nCal + nTest));
        var scores = model.Scores(T(x, x.Length, 1), T(y, x.Length, 2)).ToArray<double>();
        var cover = new double[seeds];
        for (int s = 0; s < seeds; s++)
        {
            var cal = scores.AsSpan(s * (nCal + nTest), nCal).ToArray();
            double radius = ConformalRiskControl.SplitConformalQuantile(cal, alpha);
            cover[s] = scores.AsSpan(s * (nCal + nTest) + nCal, nTest).ToArray().Count(v => v <= radius) / (double)nTest;
        }
        double mean = cover.Average(), se = Math.Sqrt(cover.Sum(c => (c - mean) * (c - mean)) / (seeds - 1) / seeds);
        Assert.InRange(mean, 1 - alpha - 4 * se, 1 - alpha + 1.0 / (nCal + 1) + 4 * se);
    }

    [Fact]
    public void The_latent_region_is_smaller_than_the_conformal_box_at_the_same_coverage()
    {
        var model = Fitted.Value;
        const double alpha = 0.1;
        // Per-coordinate 5% and 95% quantiles: y1's from the normal, y2's from a large sample of 0.6 t^2 + 0.25 e
        // (the box from exact per-coordinate quantile regression, the best such baseline).
        var rng = new Random(53);
        var w2 = Enumerable.Range(0, 200_000).Select(_ => { double t = Normal(rng); return 0.6 * t * t + 0.25 * Normal(rng); }).OrderBy(v => v).ToArray();
        double lo2 = w2[10_000], hi2 = w2[190_000], z95 = 1.6448536269514722;
        (Tensor Lo, Tensor Hi) Box(double[] xs) => (
            T(xs.SelectMany(v => new[] { v - z95 * Sigma(v), Sigma(v) * lo2 }).ToArray(), xs.Length, 2),
            T(xs.SelectMany(v => new[] { v + z95 * Sigma(v), Sigma(v) * hi2 }).ToArray(), xs.Length, 2));
        var (xc, yc) = Banana(rng, 1000);
        var (xe, ye) = Banana(rng, 4000);
        var (lc, hc) = Box(xc);
        double q = ConformalRiskControl.SplitConformalQuantile(ConformalBox.Scores(lc, hc, T(yc, 1000, 2)).ToArray<double>(), alpha);
        double radius = model.Calibrate(T(xc, 1000, 1), T(yc, 1000, 2), alpha);
        var (le, he) = Box(xe);
        double boxCover = ConformalBox.Scores(le, he, T(ye, 4000, 2)).ToArray<double>().Count(v => v <= q) / 4000.0;
        double flowCover = model.Contains(T(xe, 4000, 1), T(ye, 4000, 2), radius).Count(b => b) / 4000.0;
        Assert.InRange(boxCover, 0.87, 0.93);
        Assert.InRange(flowCover, 0.87, 0.93);

        var grid = Enumerable.Range(0, 21).Select(i => -1 + i / 10.0).ToArray();
        var (lg, hg) = Box(grid);
        double boxVolume = ConformalBox.Volume(lg, hg, q).ToArray<double>().Average();
        double flowVolume = model.Volume(T(grid, grid.Length, 1), radius, 1000, new Generator(9)).ToArray<double>().Average();
        output.WriteLine($"coverage: latent {flowCover}, box {boxCover}; mean volume: latent {flowVolume}, box {boxVolume}");
        Assert.True(flowVolume < 0.6 * boxVolume, $"latent region {flowVolume} vs box {boxVolume} (radius {radius}, Q {q})");

        // The latent-space volume agrees with a Monte Carlo count of members in a box around the region at x = 0.5.
        var x0 = T([0.5], 1, 1);
        double vol = model.Volume(x0, radius, 20_000, new Generator(10)).Item();
        const int m = 100_000;
        double a1 = -2.5, b1 = 3.5, a2 = -1.5, b2 = 5;
        var u = new double[2 * m];
        for (int i = 0; i < m; i++) { u[2 * i] = a1 + (b1 - a1) * rng.NextDouble(); u[2 * i + 1] = a2 + (b2 - a2) * rng.NextDouble(); }
        double counted = model.Contains(T(Enumerable.Repeat(0.5, m).ToArray(), m, 1), T(u, m, 2), radius).Count(b => b) * (b1 - a1) * (b2 - a2) / m;
        output.WriteLine($"volume at x = 0.5: latent {vol}, counted {counted}");
        Assert.True(Math.Abs(counted - vol) < 0.05 * vol, $"latent volume {vol} vs counted {counted}");
    }

    [Fact]
    public void Ball_and_box_volumes_and_bad_input()
    {
        Assert.Equal(2 * 1.5, LatentQuantileRegion.BallVolume(1, 1.5), 1e-14);
        Assert.Equal(Math.PI * 4, LatentQuantileRegion.BallVolume(2, 2), 1e-12);
        Assert.Equal(4.0 / 3 * Math.PI * 8, LatentQuantileRegion.BallVolume(3, 2), 1e-12);
        Assert.Equal(Math.PI * Math.PI / 2, LatentQuantileRegion.BallVolume(4, 1), 1e-12);
        var lo = T([0.0, 1, -1, 2], 2, 2); var hi = T([1.0, 2, 1, 2], 2, 2);
        Assert.Equal([0.5, 3.0], ConformalBox.Scores(lo, hi, T([1.5, 1.5, 0.5, 5], 2, 2)).ToArray<double>());
        Assert.Equal([2.0 * 2, 3.0 * 1], ConformalBox.Volume(lo, hi, 0.5).ToArray<double>());

        var x = T([0.1, 0.2, 0.3], 3, 1); var y = T([1.0, 2, 3, 1, 2, 5], 3, 2);
        Assert.Equal("y", Assert.Throws<ArgumentException>(() => LatentQuantileRegion.Fit(x, T([1.0, 2, 3], 3, 1))).ParamName);
        Assert.Equal("y", Assert.Throws<ArgumentException>(() => LatentQuantileRegion.Fit(x, T([1.0, 2, 1, 3, 1, 5], 3, 2))).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => LatentQuantileRegion.Fit(x, y, layers: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => LatentQuantileRegion.Fit(x, y, learningRate: double.NaN));
        var model = LatentQuantileRegion.Fit(x, y, layers: 1, hidden: 2, steps: 0);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => model.Encode(T([1.0, 2, 3, 4, 5, 6], 3, 2), y)).ParamName);
        Assert.Equal("z", Assert.Throws<ArgumentException>(() => model.Decode(x, T([1.0, 2], 1, 2))).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Contains(x, y, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Calibrate(x, y, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Volume(x, double.PositiveInfinity, 10));
        Assert.Throws<ArgumentException>(() => ConformalBox.Scores(lo, hi, T([1.0, 2], 1, 2)));
    }
}
