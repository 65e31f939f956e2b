using Kiln.Methods.PolicyOptimization;
using Xunit;

namespace Kiln.Tests.Methods;

/// <summary>
/// Issue 23's advantage-estimator and reward-shaping entries (rl-adv): each paper's CHECK against a float64
/// transcription written here, on a tabular softmax policy whose logits z [B, T, V] are the parameters, so the
/// gradient of every objective on z can be compared with its closed form.
/// </summary>
public class RlAdvTests
{
    // ---------- the tabular policy ----------

    /// <summary>Logits z [B, T, V], sampled tokens y [B, T] and a mask of random lengths (0..T).</summary>
    sealed record Tabular(int B, int T, int V, double[] Z, long[] Y, double[] M)
    {
        public static Tabular Random(Random rng, int b, int t, int v, bool allowEmpty = true)
        {
            var z = Enumerable.Range(0, b * t * v).Select(_ => 4 * rng.NextDouble() - 2).ToArray();
            var y = Enumerable.Range(0, b * t).Select(_ => (long)rng.Next(v)).ToArray();
            var m = new double[b * t];
            for (int i = 0; i < b; i++)
            {
                int len = rng.Next(allowEmpty ? 0 : 1, t + 1);
                for (int s = 0; s < len; s++) m[i * t + s] = 1;
            }
            return new Tabular(b, t, v, z, y, m);
        }

        public Tensor Logits() => Tensor.FromArray(Z, new Shape(B, T, V)).RequiresGrad_();

        public Tensor LogProbs(Tensor z) => z.LogSoftmax(-1).Gather(2, Tensor.FromArray(Y, new Shape(B, T, 1))).Reshape(B, T);

        /// <summary>An on-policy batch (old = current log-probs) unless fixed <paramref name="old"/> log-probs are given.</summary>
        public PolicyBatch Batch(Tensor z, double[] rewards, int groupSize, double[]? tokenRewards = null, Tensor? old = null)
        {
            var lp = LogProbs(z);
            old ??= lp.Detach();
            return new PolicyBatch
            {
                LogProbs = lp, OldLogProbs = old, Rewards = Tensor.FromArray(rewards), Mask = Tensor.FromArray(M, new Shape(B, T)),
                GroupSize = groupSize, Logits = z, TokenRewards = tokenRewards is null ? null : Tensor.FromArray(tokenRewards, new Shape(B, T)),
            };
        }

        public double[] P(int i, int t)
        {
            var row = Z.AsSpan((i * T + t) * V, V).ToArray();
            double mx = row.Max(); var e = row.Select(x => Math.Exp(x - mx)).ToArray(); double s = e.Sum();
            return e.Select(x => x / s).ToArray();
        }

        public double LogP(int i, int t) => Math.Log(P(i, t)[Y[i * T + t]]);
        public int Len(int i) => (int)Enumerable.Range(0, T).Sum(t => M[i * T + t]);
        public double MeanLogP(int i) => Len(i) == 0 ? 0 : Enumerable.Range(0, Len(i)).Sum(t => LogP(i, t)) / Len(i);

        /// <summary>
        /// ∂L/∂z of the on-policy clipped surrogate with per-token advantages a [B, T] under GRPO's aggregation:
        /// −a_it m_it / (B max(|y_i|, 1)) (e_y − p) (the clip is inactive at ratio 1).
        /// </summary>
        public double[] SurrogateGrad(double[] a)
        {
            var g = new double[Z.Length];
            for (int i = 0; i < B; i++)
                for (int t = 0; t < T; t++)
                {
                    double w = -a[i * T + t] * M[i * T + t] / (B * Math.Max(Len(i), 1));
                    var p = P(i, t);
                    for (int v = 0; v < V; v++) g[(i * T + t) * V + v] = w * ((v == Y[i * T + t] ? 1 : 0) - p[v]);
                }
            return g;
        }
    }

    static double[] PerToken(double[] a, int t) => a.SelectMany(x => Enumerable.Repeat(x, t)).ToArray();

    static void Near(double[] expected, double[] actual, double tol = 1e-12)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tol * (1 + Math.Abs(expected[i])), $"[{i}] expected {expected[i]}, got {actual[i]}");
    }

    /// <summary>The objective's gradient on z equals the surrogate's closed form with the expected advantages.</summary>
    static void AssertSurrogateGradient(IPolicyObjective objective, Tabular tab, double[] rewards, int groupSize, double[] tokenAdvantages, double[]? tokenRewards = null)
    {
        var z = tab.Logits();
        objective.Loss(tab.Batch(z, rewards, groupSize, tokenRewards)).Backward();
        Near(tab.SurrogateGrad(tokenAdvantages), z.Grad!.ToDoubleArray(), 1e-10);
    }

    static void AssertGradCheck(IPolicyObjective objective, Tabular tab, double[] rewards, int groupSize, Random rng, double[]? tokenRewards = null)
    {
        // Off-policy (old ≠ current) so the ratio, clip and min are all exercised; the advantages are constants.
        var z = Tensor.FromArray(tab.Z, new Shape(tab.B, tab.T, tab.V));
        var old = tab.LogProbs(z) + Tensor.FromArray(Enumerable.Range(0, tab.B * tab.T).Select(_ => 0.8 * rng.NextDouble() - 0.4).ToArray(), new Shape(tab.B, tab.T));
        var r = GradCheck.Run(x => objective.Loss(tab.Batch(x[0], rewards, groupSize, tokenRewards, old)), [z]);
        Assert.True(r.Passed, r.ToString());
    }

    static double[] RandomRewards(Random rng, int n, bool binary) =>
        Enumerable.Range(0, n).Select(_ => binary ? rng.Next(2) : Math.Round(4 * rng.NextDouble() - 2, rng.Next(2) == 0 ? 0 : 3)).ToArray();

    static IEnumerable<int[]> Permutations(int n)
    {
        if (n == 0) { yield return []; yield break; }
        foreach (var p in Permutations(n - 1))
            for (int k = 0; k <= p.Length; k++) yield return [.. p[..k], n - 1, .. p[k..]];
    }

    // ---------- CANON ----------

    // Direct transcription: sort by metric (ties by index), lower half = first ⌊G/2⌋.
    static (double[] Inter, double[] Intra) CanonRef(double[] r, double[] metric, int g)
    {
        var inter = new double[r.Length]; var intra = new double[r.Length];
        for (int s = 0; s < r.Length; s += g)
        {
            var order = Enumerable.Range(s, g).OrderBy(i => metric[i]).ThenBy(i => i).ToArray();
            var lower = order.Take(g / 2).ToArray(); var upper = order.Skip(g / 2).ToArray();
            double ml = lower.Average(i => r[i]), mu = upper.Average(i => r[i]);
            foreach (int i in lower) { inter[i] = r[i] - mu; intra[i] = r[i] - ml; }
            foreach (int i in upper) { inter[i] = r[i] - ml; intra[i] = r[i] - mu; }
        }
        return (inter, intra);
    }

    [Fact]
    public void Canon_split_matches_the_transcription_and_every_mix_sums_to_zero_for_even_groups()
    {
        var rng = new Random(1);
        for (int trial = 0; trial < 60; trial++)
        {
            int g = rng.Next(2, 9), groups = rng.Next(1, 4), n = g * groups;
            var r = RandomRewards(rng, n, binary: rng.Next(2) == 0);
            var metric = Enumerable.Range(0, n).Select(_ => (double)rng.Next(4)).ToArray(); // ties on purpose
            var (inter, intra) = Canon.Split(Tensor.FromArray(r), Tensor.FromArray(metric), g);
            var (ei, ea) = CanonRef(r, metric, g);
            Near(ei, inter.ToDoubleArray()); Near(ea, intra.ToDoubleArray());
            double lambda = rng.NextDouble();
            var mix = ei.Select((x, i) => lambda * x + (1 - lambda) * ea[i]).ToArray();
            for (int s = 0; s < n; s += g)
            {
                double mean = r.Skip(s).Take(g).Average();
                if (g % 2 != 0) continue;
                for (int i = s; i < s + g; i++) Assert.Equal(r[i] - mean, 0.5 * ei[i] + 0.5 * ea[i], 12);
                Assert.Equal(0, inter.ToDoubleArray().Skip(s).Take(g).Sum(), 12);
                Assert.Equal(0, intra.ToDoubleArray().Skip(s).Take(g).Sum(), 12);
                Assert.Equal(0, mix.Skip(s).Take(g).Sum(), 12);
            }
        }
    }

    [Fact]
    public void Canon_at_lambda_one_half_is_dr_grpo_through_the_objective()
    {
        var rng = new Random(2);
        var tab = Tabular.Random(rng, 8, 3, 4);
        var r = RandomRewards(rng, 8, binary: true);
        var canon = new Canon { Lambda = 0.5, Metric = CanonMetric.Length };
        var batch = tab.Batch(tab.Logits(), r, 4);
        Near(PolicyMath.GroupAdvantages(Tensor.FromArray(r), 4, scaleByStd: false).ToDoubleArray(), canon.Advantages(batch).ToDoubleArray());
    }

    [Fact]
    public void Canon_averaged_over_every_reward_independent_split_is_a_scaled_mean_centred_advantage()
    {
        var rng = new Random(3);
        foreach (int n in new[] { 2, 4, 6 })
        {
            var r = RandomRewards(rng, n, binary: false);
            double mean = r.Average();
            var sumInter = new double[n]; var sumIntra = new double[n]; int count = 0;
            foreach (var perm in Permutations(n))
            {
                var (inter, intra) = Canon.Split(Tensor.FromArray(r), Tensor.FromArray(perm.Select(x => (double)x).ToArray()), n);
                var a = inter.ToDoubleArray(); var b = intra.ToDoubleArray();
                for (int i = 0; i < n; i++) { sumInter[i] += a[i]; sumIntra[i] += b[i]; }
                count++;
            }
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(n / (n - 1.0) * (r[i] - mean), sumInter[i] / count, 12);
                Assert.Equal((n - 2) / (n - 1.0) * (r[i] - mean), sumIntra[i] / count, 12);
            }
        }
    }

    [Fact]
    public void Canon_splits_by_exact_entropy_from_logits_and_its_gradient_is_the_surrogates()
    {
        var rng = new Random(4);
        for (int trial = 0; trial < 5; trial++)
        {
            var tab = Tabular.Random(rng, 6, 4, 5);
            var r = RandomRewards(rng, 6, binary: false);
            var entropy = new double[6];
            for (int i = 0; i < 6; i++)
                entropy[i] = tab.Len(i) == 0 ? 0 : Enumerable.Range(0, tab.Len(i)).Sum(t => -tab.P(i, t).Sum(p => p * Math.Log(p))) / tab.Len(i);
            var batch = tab.Batch(tab.Logits(), r, 3);
            Near(entropy, ResponseMetrics.MeanEntropy(batch).ToDoubleArray(), 1e-12);
            var (inter, intra) = CanonRef(r, entropy, 3);
            var canon = new Canon { Scale = 2 };
            var a = inter.Select((x, i) => (0.8 * x + 0.2 * intra[i]) / 2).ToArray();
            Near(a, canon.Advantages(batch).ToDoubleArray(), 1e-12);
            AssertSurrogateGradient(canon, tab, r, 3, PerToken(a, tab.T));
        }
        var t2 = Tabular.Random(rng, 4, 3, 3);
        AssertGradCheck(new Canon(), t2, RandomRewards(rng, 4, false), 2, rng);
    }

    [Fact]
    public void Canon_without_logits_splits_by_the_sampled_token_entropy_estimate()
    {
        var rng = new Random(5);
        var tab = Tabular.Random(rng, 4, 3, 4);
        var batch = tab.Batch(tab.Logits(), [1, 0, 0, 1], 4) with { Logits = null };
        Near(Enumerable.Range(0, 4).Select(i => -tab.MeanLogP(i)).ToArray(), ResponseMetrics.MeanEntropy(batch).ToDoubleArray());
    }

    [Fact]
    public void Canon_rejects_single_completion_groups_and_out_of_range_settings()
    {
        var e = Assert.Throws<ArgumentException>(() => Canon.Split(Tensor.FromArray(new double[] { 1, 0 }), Tensor.FromArray(new double[] { 1, 2 }), 1));
        Assert.Contains("groupSize 1", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new Canon { Lambda = 1.5 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new Canon { Scale = 0 });
        Assert.Throws<ArgumentException>(() => Canon.Split(Tensor.FromArray(new double[] { 1, 0 }), Tensor.FromArray(new double[] { 1, 2, 3, 4 }), 2));
        // An odd group: the upper half holds the extra completion.
        var (inter, _) = Canon.Split(Tensor.FromArray(new double[] { 1, 0, 3 }), Tensor.FromArray(new double[] { 0, 1, 2 }), 3);
        Near([1 - 1.5, 0 - 1, 3 - 1], inter.ToDoubleArray());
    }
}
