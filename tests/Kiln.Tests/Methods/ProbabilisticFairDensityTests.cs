using Kiln.Methods.Probabilistic;
using Xunit;

namespace Kiln.Tests.Methods;

/// <summary>
/// Fair densities via boosting (Soen, Husain and Nock, 2023): normalisation, likelihood increase and the fairness
/// rates of every boosted density, each against float64 math written here.
/// </summary>
public class ProbabilisticFairDensityTests
{
    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));
    static Tensor L(long[] v) => Tensor.FromArray(v, new Shape(v.Length));

    // All 2^d binary vectors; column 0 is the sensitive attribute s, column 1 the outcome y.
    static double[] Cube(int d)
    {
        int m = 1 << d;
        var x = new double[m * d];
        for (int i = 0; i < m; i++) for (int j = 0; j < d; j++) x[i * d + j] = (i >> j) & 1;
        return x;
    }

    // Data from a random biased law on the cube (s underrepresented, y depending on s), and a fair base: the product
    // of the empirical marginals of the other bits with s uniform (representation and statistical rate 1).
    static (double[] Cube, long[] Data, double[] Base) Problem(Random rng, int d, int n)
    {
        int m = 1 << d;
        var cube = Cube(d);
        var logits = Enumerable.Range(0, m).Select(i => 1.5 * rng.NextDouble() - ((i & 1) == 1 ? 1.2 : 0) + ((i & 3) == 2 ? 1.0 : 0)).ToArray();
        var p = logits.Select(v => Math.Exp(v)).ToArray();
        double z = p.Sum();
        var data = new long[n];
        for (int k = 0; k < n; k++)
        {
            double u = rng.NextDouble() * z, c = 0;
            int i = 0;
            for (; i < m - 1; i++) { c += p[i]; if (u < c) break; }
            data[k] = i;
        }
        var marg = new double[d];
        foreach (long i in data) for (int j = 0; j < d; j++) marg[j] += cube[i * d + j] / n;
        marg[0] = 0.5;
        var q0 = new double[m];
        for (int i = 0; i < m; i++)
        {
            q0[i] = 1;
            // Clamp the marginals away from 0 and 1 so that q_0 > 0 everywhere.
            for (int j = 0; j < d; j++) { double pj = Math.Clamp(marg[j], 0.05, 0.95); q0[i] *= cube[i * d + j] == 1 ? pj : 1 - pj; }
        }
        double s = q0.Sum();
        return (cube, data, q0.Select(v => v / s).ToArray());
    }

    // min_s P(s) / max_s P(s) and min_s P(y=1|s) / max_s P(y=1|s) with s = bit 0, y = bit 1, written out.
    static (double Rr, double Sr) Rates(double[] q)
    {
        double[] ps = new double[2], py = new double[2];
        for (int i = 0; i < q.Length; i++) { ps[i & 1] += q[i]; if ((i & 2) != 0) py[i & 1] += q[i]; }
        double c0 = py[0] / ps[0], c1 = py[1] / ps[1];
        return (Math.Min(ps[0], ps[1]) / Math.Max(ps[0], ps[1]), Math.Min(c0, c1) / Math.Max(c0, c1));
    }

    [Fact]
    public void Every_round_is_normalised_never_lowers_the_likelihood_and_keeps_the_fairness_bounds()
    {
        var rng = new Random(41);
        for (int trial = 0; trial < 25; trial++)
        {
            int d = 3 + rng.Next(4), m = 1 << d, n = 40 + rng.Next(300), depth = 1 + rng.Next(3), rounds = 1 + rng.Next(12);
            double tau = 0.3 + 0.69 * rng.NextDouble();
            var (cube, data, q0) = Problem(rng, d, n);
            var groups = L(Enumerable.Range(0, m).Select(i => (long)(i & 1)).ToArray());
            var outcome = L(Enumerable.Range(0, m).Select(i => (long)((i >> 1) & 1)).ToArray());
            var fit = FairDensityBooster.Fit(T(cube, m, d), T(q0, m), L(data), groups, tau, rounds, depth);
            Assert.Equal(rounds, fit.Rounds.Count);
            Assert.Equal(0.5 * Math.Log(1 / tau), fit.Budget, 1e-12);
            var emp = new double[m];
            foreach (long i in data) emp[i] += 1.0 / n;
            var prev = q0;
            double prevLl = data.Average(i => Math.Log(q0[i])), spent = 0;
            foreach (var round in fit.Rounds)
            {
                var c = round.Classifier.ToArray<double>();
                var q = round.Density.ToArray<double>();
                Assert.All(c, v => Assert.InRange(v, -1, 1));
                double muP = 0, muQ = 0;
                for (int i = 0; i < m; i++) { muP += emp[i] * c[i]; muQ += prev[i] * c[i]; }
                Assert.Equal(muP, round.DataMean, 1e-12);
                Assert.Equal(muQ, round.ModelMean, 1e-12);
                // The step: atanh(mu_P) - atanh(mu_Q), clipped to the budget left.
                double left = Math.Max(0, fit.Budget - spent);
                double alpha = muP == muQ ? 0 : Math.Clamp(0.5 * Math.Log((1 + muP) / (1 - muP)) - 0.5 * Math.Log((1 + muQ) / (1 - muQ)), -left, left);
                Assert.Equal(alpha, round.Step, 1e-9);
                spent += Math.Abs(round.Step);
                Assert.True(spent <= fit.Budget + 1e-12, $"spent {spent} over the budget {fit.Budget}");
                // The update q_t = q_{t-1} exp(alpha c) / Z, normalised by enumeration.
                var next = prev.Select((v, i) => v * Math.Exp(round.Step * c[i])).ToArray();
                double z = next.Sum();
                for (int i = 0; i < m; i++) Assert.Equal(next[i] / z, q[i], 1e-13);
                Assert.Equal(1, q.Sum(), 1e-12);
                // Likelihood: never lower, and at least the convexity bound alpha mu_P - log(cosh alpha + mu_Q sinh alpha) >= 0.
                double ll = data.Average(i => Math.Log(q[i]));
                Assert.Equal(ll, round.LogLikelihood, 1e-12);
                double gain = round.Step * muP - Math.Log(Math.Cosh(round.Step) + muQ * Math.Sinh(round.Step));
                Assert.True(gain >= -1e-13, $"bound {gain}");
                Assert.True(ll - prevLl >= gain - 1e-12, $"round gain {ll - prevLl} below the bound {gain}");
                // Fairness: RR >= RR_0 e^{-2A} >= tau and SR >= SR_0 e^{-4A} with A = sum |alpha| (RR_0 = SR_0 = 1 here).
                var (rr, sr) = Rates(q);
                Assert.Equal(rr, FairDensityBooster.RepresentationRate(round.Density, groups), 1e-12);
                Assert.Equal(sr, FairDensityBooster.StatisticalRate(round.Density, groups, outcome), 1e-12);
                Assert.True(rr >= Math.Exp(-2 * spent) - 1e-12 && rr >= tau - 1e-12, $"RR {rr} below e^(-2 A) = {Math.Exp(-2 * spent)} or tau {tau}");
                Assert.True(sr >= Math.Exp(-4 * spent) - 1e-12, $"SR {sr} below e^(-4 A) = {Math.Exp(-4 * spent)}");
                prev = q; prevLl = ll;
            }
            Assert.Equal(prev, fit.Density.ToArray<double>());
        }
    }

    [Fact]
    public void The_fairness_budget_binds_where_unconstrained_boosting_would_follow_the_unfair_data()
    {
        var rng = new Random(42);
        const int d = 4, m = 16;
        var (cube, data, q0) = Problem(rng, d, 2000);
        var groups = L(Enumerable.Range(0, m).Select(i => (long)(i & 1)).ToArray());
        var (dataRr, _) = Rates(data.Aggregate(new double[m], (acc, i) => { acc[i] += 1.0 / data.Length; return acc; }));
        Assert.True(dataRr < 0.6, $"data RR {dataRr}");
        var loose = FairDensityBooster.Fit(T(cube, m, d), T(q0, m), L(data), groups, 1e-6, rounds: 30, maxDepth: 2);
        var fair = FairDensityBooster.Fit(T(cube, m, d), T(q0, m), L(data), groups, 0.9, rounds: 30, maxDepth: 2);
        double looseRr = FairDensityBooster.RepresentationRate(loose.Density, groups), fairRr = FairDensityBooster.RepresentationRate(fair.Density, groups);
        Assert.True(looseRr < 0.75, $"unconstrained RR {looseRr}");
        Assert.True(fairRr >= 0.9 - 1e-12, $"fair RR {fairRr}");
        // The budget is spent, and boosting still raised the likelihood over the base.
        Assert.Equal(fair.Budget, fair.Rounds.Sum(r => Math.Abs(r.Step)), 1e-9);
        double ll0 = FairDensityBooster.LogLikelihood(T(q0, m), L(data));
        Assert.True(fair.Rounds[^1].LogLikelihood > ll0 + 0.01, $"fair {fair.Rounds[^1].LogLikelihood} vs base {ll0}");
        Assert.True(loose.Rounds[^1].LogLikelihood > fair.Rounds[^1].LogLikelihood, "the fairness constraint should cost likelihood here");
    }

    [Fact]
    public void Zero_edge_gives_a_zero_step_and_bad_input_is_named()
    {
        Assert.Equal(0, FairDensityBooster.Step(0.3, 0.3));
        Assert.Equal(0, FairDensityBooster.Step(1, 1));
        Assert.Equal(Math.Atanh(0.5) - Math.Atanh(-0.2), FairDensityBooster.Step(0.5, -0.2), 1e-15);
        // Data that is exactly the base density: every leaf is (P - Q) / (P + Q) = 0, so every step is 0.
        var cube = T(Cube(2), 4, 2);
        var uniform = T([0.25, 0.25, 0.25, 0.25], 4);
        var groups = L([0, 1, 0, 1]);
        var fit = FairDensityBooster.Fit(cube, uniform, L([0, 1, 2, 3]), groups, 0.5, rounds: 3);
        Assert.All(fit.Rounds, r => { Assert.Equal(0, r.Step); Assert.Equal(r.DataMean, r.ModelMean); Assert.Equal([0.25, 0.25, 0.25, 0.25], r.Density.ToArray<double>()); });
        Assert.Empty(FairDensityBooster.Fit(cube, uniform, L([0]), groups, 0.5, rounds: 0).Rounds);

        var e = Assert.Throws<ArgumentException>(() => FairDensityBooster.Fit(cube, T([0.5, 0.5, 0, 0], 4), L([0]), groups, 0.5));
        Assert.Equal("baseDensity", e.ParamName);
        Assert.Throws<ArgumentException>(() => FairDensityBooster.Fit(cube, T([0.25, 0.25, 0.25, 0.3], 4), L([0]), groups, 0.5));
        e = Assert.Throws<ArgumentException>(() => FairDensityBooster.Fit(cube, uniform, L([0, 4]), groups, 0.5));
        Assert.Contains("data[1] = 4", e.Message);
        Assert.Equal("groups", Assert.Throws<ArgumentException>(() => FairDensityBooster.Fit(cube, uniform, L([0]), L([1, 1, 1, 1]), 0.5)).ParamName);
        Assert.Equal("minRepresentationRate", Assert.Throws<ArgumentOutOfRangeException>(() => FairDensityBooster.Fit(cube, T([0.1, 0.4, 0.1, 0.4], 4), L([0]), groups, 0.5)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => FairDensityBooster.Fit(cube, uniform, L([0]), groups, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => FairDensityBooster.Fit(cube, uniform, L([0]), groups, 0.5, maxDepth: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => FairDensityBooster.Step(1.5, 0));
        Assert.Throws<ArgumentException>(() => FairDensityBooster.StatisticalRate(uniform, groups, L([0, 1, 2, 0])));
    }
}
