using Kiln.Methods.Probabilistic;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests.Methods;

/// <summary>
/// The probabilistic-prediction entries built after <see cref="ProbabilisticTests"/> (issue 24): each CHECK against
/// float64 math written here or by simulation over seeds.
/// </summary>
public class ProbabilisticExtraTests
{
    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));
    static Tensor L(long[] v) => Tensor.FromArray(v, new Shape(v.Length));

    // ---------- Experts Don't Cheat: predicting pairs ----------

    // A random probability vector over k classes.
    static double[] Simplex(Random r, int k)
    {
        var e = Enumerable.Range(0, k).Select(_ => -Math.Log(1 - r.NextDouble())).ToArray();
        double s = e.Sum();
        return e.Select(v => v / s).ToArray();
    }

    static int Draw(Random r, double[] p)
    {
        double u = r.NextDouble(), c = 0;
        for (int k = 0; k < p.Length - 1; k++) { c += p[k]; if (u < c) return k; }
        return p.Length - 1;
    }

    // The population joint of a group whose members (equally likely) have laws p^m: E[p p^T] = mean_m p^m p^m^T.
    static double[] GroupJoint(double[][] members, int k)
    {
        var j = new double[k * k];
        foreach (var p in members) for (int a = 0; a < k; a++) for (int b = 0; b < k; b++) j[a * k + b] += p[a] * p[b] / members.Length;
        return j;
    }

    [Fact]
    public void Pair_readouts_and_loss_match_float64_and_a_product_joint_has_no_cheat()
    {
        var rng = new Random(21);
        for (int trial = 0; trial < 30; trial++)
        {
            int n = 1 + rng.Next(5), k = 2 + rng.Next(3);
            var z = Dense.Uniform(rng, n * k * k, -3, 3);
            var y1 = Enumerable.Range(0, n).Select(_ => (long)rng.Next(k)).ToArray();
            var y2 = Enumerable.Range(0, n).Select(_ => (long)rng.Next(k)).ToArray();
            double alpha = 0.05 + 0.9 * rng.NextDouble();
            var logits = T(z, n, k, k);
            var joint = PairPredictor.Joint(logits).ToArray<double>();
            var m = PairPredictor.Marginal(PairPredictor.Joint(logits)).ToArray<double>();
            var v = PairPredictor.EpistemicVariance(PairPredictor.Joint(logits)).ToArray<double>();
            var (lo, hi) = PairPredictor.Interval(PairPredictor.Joint(logits), alpha);
            var (loA, hiA) = (lo.ToArray<double>(), hi.ToArray<double>());
            double loss = 0;
            for (int i = 0; i < n; i++)
            {
                double max = z.AsSpan(i * k * k, k * k).ToArray().Max(), s = 0;
                for (int c = 0; c < k * k; c++) s += Math.Exp(z[i * k * k + c] - max);
                var q = new double[k * k];
                for (int c = 0; c < k * k; c++) { q[c] = Math.Exp(z[i * k * k + c] - max) / s; Assert.Equal(q[c], joint[i * k * k + c], 1e-12); }
                loss -= Math.Log(q[y1[i] * k + y2[i]]);
                for (int a = 0; a < k; a++)
                {
                    double row = 0, col = 0;
                    for (int b = 0; b < k; b++) { row += q[a * k + b]; col += q[b * k + a]; }
                    double mean = (row + col) / 2, var = q[a * k + a] - mean * mean, half = Math.Sqrt(Math.Max(var, 0) / alpha);
                    Assert.Equal(mean, m[i * k + a], 1e-12);
                    Assert.Equal(var, v[i * k + a], 1e-12);
                    Assert.Equal(Math.Clamp(mean - half, 0, 1), loA[i * k + a], 1e-12);
                    Assert.Equal(Math.Clamp(mean + half, 0, 1), hiA[i * k + a], 1e-12);
                }
            }
            Assert.Equal(loss / n, PairPredictor.PairLoss(logits, L(y1), L(y2)).Item(), 1e-12);
        }
        // An expert's joint p p^T ignores Y1: no cheat, and the interval shrinks to the point p.
        double[] p = [0.2, 0.5, 0.3];
        var product = T(GroupJoint([p], 3), 1, 3, 3);
        var vp = PairPredictor.EpistemicVariance(product).ToArray<double>();
        Assert.All(vp, x => Assert.Equal(0, x, 1e-15));
        var (l0, h0) = PairPredictor.Interval(product, 0.1);
        Assert.Equal(p, l0.ToArray<double>(), (a, b) => Math.Abs(a - b) < 1e-7);
        Assert.Equal(p, h0.ToArray<double>(), (a, b) => Math.Abs(a - b) < 1e-7);

        var r = GradCheck.Run(a => PairPredictor.PairLoss(a[0], L([1, 0]), L([2, 1])), [T(Dense.Uniform(new Random(3), 18, -2, 2), 2, 3, 3)]);
        Assert.True(r.Passed, r.ToString());
        Assert.Throws<ArgumentException>(() => PairPredictor.Joint(T([1.0, 2, 3, 4, 5, 6], 1, 2, 3)));
        Assert.Throws<ArgumentException>(() => PairPredictor.PairLoss(T(new double[8], 2, 2, 2), L([0]), L([0, 1])));
        Assert.Throws<ArgumentException>(() => PairPredictor.PairLoss(T(new double[8], 2, 2, 2), T([0.0, 1], 2), L([0, 1])));
        Assert.Throws<ArgumentOutOfRangeException>(() => PairPredictor.Interval(product, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => PairPredictor.Fit(T([1.0, 1], 2, 1), L([0, 2]), L([0, 1]), 2));
    }

    [Fact]
    public void Chebyshev_interval_from_the_population_pair_joint_covers_the_true_probability_at_the_nominal_rate()
    {
        // Inputs the model cannot tell apart form a group; its optimal joint is E[p p^T] over the group, and
        // Chebyshev guarantees that the interval holds p(y|x) for at least 1 - alpha of the group's members.
        var rng = new Random(22);
        for (int trial = 0; trial < 200; trial++)
        {
            int k = 2 + rng.Next(3), size = 1 + rng.Next(12);
            double alpha = 0.05 + 0.5 * rng.NextDouble();
            var members = Enumerable.Range(0, size).Select(_ => Simplex(rng, k)).ToArray();
            var (lo, hi) = PairPredictor.Interval(T(GroupJoint(members, k), 1, k, k), alpha);
            var (l, h) = (lo.ToArray<double>(), hi.ToArray<double>());
            for (int y = 0; y < k; y++)
            {
                int covered = members.Count(p => p[y] >= l[y] - 1e-12 && p[y] <= h[y] + 1e-12);
                Assert.True(covered >= (1 - alpha) * size - 1e-9, $"class {y}: {covered}/{size} covered at alpha {alpha}");
            }
        }
    }

    [Fact]
    public void A_fitted_pair_predictor_ignores_Y1_where_x_determines_p_and_cheats_where_it_does_not()
    {
        var rng = new Random(23);
        const int k = 3, groups = 4, perGroup = 1500;
        // Groups 0 and 1 hold one law each (the model can be an expert there); groups 2 and 3 mix four laws.
        var laws = Enumerable.Range(0, groups).Select(g => Enumerable.Range(0, g < 2 ? 1 : 4).Select(_ => Simplex(rng, k)).ToArray()).ToArray();
        var x = new double[groups * perGroup * groups];
        var y1 = new long[groups * perGroup]; var y2 = new long[groups * perGroup];
        for (int i = 0; i < y1.Length; i++)
        {
            int g = i % groups;
            var p = laws[g][rng.Next(laws[g].Length)];
            x[i * groups + g] = 1;
            y1[i] = Draw(rng, p); y2[i] = Draw(rng, p);
        }
        var model = PairPredictor.Fit(T(x, y1.Length, groups), L(y1), L(y2), k, steps: 300, learningRate: 0.1, seed: 5);
        var eye = T(Enumerable.Range(0, groups * groups).Select(i => i / groups == i % groups ? 1.0 : 0).ToArray(), groups, groups);
        var joint = model.PredictJoint(eye);
        var m = PairPredictor.Marginal(joint).ToArray<double>();
        var v = PairPredictor.EpistemicVariance(joint).ToArray<double>();
        var (lo, hi) = PairPredictor.Interval(joint, 0.2);
        var (l, h) = (lo.ToArray<double>(), hi.ToArray<double>());
        for (int g = 0; g < groups; g++)
            for (int y = 0; y < k; y++)
            {
                double mean = laws[g].Average(p => p[y]), var = laws[g].Average(p => p[y] * p[y]) - mean * mean;
                Assert.True(Math.Abs(m[g * k + y] - mean) < 0.03, $"group {g} class {y}: marginal {m[g * k + y]} vs {mean}");
                Assert.True(Math.Abs(v[g * k + y] - var) < 0.015, $"group {g} class {y}: cheat {v[g * k + y]} vs Var p {var}");
                // Coverage is over what the model cannot resolve (the mixed groups); an expert's interval is its
                // point estimate and carries only the finite-sample error checked above.
                if (g >= 2) Assert.All(laws[g], p => Assert.InRange(p[y], l[g * k + y], h[g * k + y]));
            }
        // The mixed groups cheat measurably: their largest variance stands well above the experts' noise.
        Assert.True(Enumerable.Range(2 * k, 2 * k).Max(i => v[i]) > 0.02, string.Join(", ", v));
    }
}
