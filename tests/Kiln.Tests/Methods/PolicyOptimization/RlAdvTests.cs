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
                for (int i = s; i < s + g; i++) Assert.Equal(r[i] - mean, 0.5 * ei[i] + 0.5 * ea[i], 1e-12);
                Assert.Equal(0, inter.ToDoubleArray().Skip(s).Take(g).Sum(), 1e-12);
                Assert.Equal(0, intra.ToDoubleArray().Skip(s).Take(g).Sum(), 1e-12);
                Assert.Equal(0, mix.Skip(s).Take(g).Sum(), 1e-12);
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
                Assert.Equal(n / (n - 1.0) * (r[i] - mean), sumInter[i] / count, 1e-12);
                Assert.Equal((n - 2) / (n - 1.0) * (r[i] - mean), sumIntra[i] / count, 1e-12);
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

    // ---------- QAE ----------

    // b = min{v in the group : #(r ≤ v) / G ≥ K}, transcribed literally.
    static double QuantileRef(double[] group, double k) => group.Where(v => group.Count(x => x <= v) / (double)group.Length >= k).Min();

    static double PopStd(double[] xs) { double m = xs.Average(); return Math.Sqrt(xs.Sum(x => (x - m) * (x - m)) / xs.Length); }

    [Fact]
    public void Qae_baseline_is_the_non_interpolating_k_quantile_and_the_advantage_its_scaled_gap()
    {
        var rng = new Random(10);
        for (int trial = 0; trial < 60; trial++)
        {
            int g = rng.Next(1, 9), groups = rng.Next(1, 4), n = g * groups;
            double k = rng.Next(2) == 0 ? rng.Next(1, 9) / 8.0 : 0.01 + 0.99 * rng.NextDouble();
            var r = RandomRewards(rng, n, binary: rng.Next(2) == 0);
            var b = QuantileAdvantage.Baselines(Tensor.FromArray(r), g, k).ToDoubleArray();
            var qae = new QuantileAdvantage { K = k };
            var tab = Tabular.Random(rng, n, 2, 3);
            var a = qae.Advantages(tab.Batch(tab.Logits(), r, g)).ToDoubleArray();
            var unscaled = new QuantileAdvantage { K = k, ScaleByStd = false }.Advantages(tab.Batch(tab.Logits(), r, g)).ToDoubleArray();
            for (int s = 0; s < n; s += g)
            {
                var group = r[s..(s + g)];
                double eb = QuantileRef(group, k), sd = PopStd(group);
                for (int i = s; i < s + g; i++)
                {
                    Assert.Equal(eb, b[i]);
                    Assert.Equal(r[i] - eb, unscaled[i], 1e-12);
                    Assert.Equal((r[i] - eb) / (sd + 1e-6), a[i], 1e-9);
                }
            }
        }
    }

    [Fact]
    public void Qae_on_binary_rewards_is_a_two_regime_gate_with_the_exact_zero_fraction()
    {
        var rng = new Random(11);
        for (int trial = 0; trial < 80; trial++)
        {
            int g = rng.Next(1, 9), successes = rng.Next(0, g + 1);
            double k = rng.Next(1, 9) / 8.0, p = successes / (double)g;
            var r = Enumerable.Range(0, g).Select(i => i < successes ? 1.0 : 0.0).OrderBy(_ => rng.Next()).ToArray();
            var tab = Tabular.Random(rng, g, 1, 2);
            var a = new QuantileAdvantage { K = k, ScaleByStd = false }.Advantages(tab.Batch(tab.Logits(), r, g)).ToDoubleArray();
            bool hard = p <= 1 - k;
            Assert.Equal(hard ? 0 : 1, QuantileAdvantage.Baselines(Tensor.FromArray(r), g, k).ToDoubleArray()[0]);
            for (int i = 0; i < g; i++) Assert.Equal(hard ? (r[i] == 1 ? 1 : 0) : (r[i] == 1 ? 0 : -1), a[i]);
            Assert.Equal(hard ? 1 - p : p, a.Count(x => x == 0) / (double)g, 1e-12);
        }
    }

    [Fact]
    public void Qae_gradient_is_the_surrogates_and_bad_k_is_rejected()
    {
        var rng = new Random(12);
        var tab = Tabular.Random(rng, 6, 3, 4);
        var r = RandomRewards(rng, 6, binary: true);
        var qae = new QuantileAdvantage();
        var a = qae.Advantages(tab.Batch(tab.Logits(), r, 3)).ToDoubleArray();
        AssertSurrogateGradient(qae, tab, r, 3, PerToken(a, tab.T));
        AssertGradCheck(qae, Tabular.Random(rng, 4, 2, 3), [1, 0, 0, 0], 4, rng);
        Assert.Throws<ArgumentOutOfRangeException>(() => new QuantileAdvantage { K = 0 });
        Assert.Throws<ArgumentOutOfRangeException>(() => QuantileAdvantage.Baselines(Tensor.FromArray(new double[] { 1 }), 1, 1.5));
    }

    // ---------- Unlikeliness reward ----------

    static double[] GrpoRef(double[] r, int g, double eps = 1e-6)
    {
        var a = new double[r.Length];
        for (int s = 0; s < r.Length; s += g)
        {
            var group = r[s..(s + g)]; double m = group.Average(), sd = PopStd(group);
            for (int i = s; i < s + g; i++) a[i] = (r[i] - m) / (sd + eps);
        }
        return a;
    }

    [Fact]
    public void Unlikeliness_reshapes_by_likelihood_rank_then_normalises_like_grpo()
    {
        var rng = new Random(20);
        for (int trial = 0; trial < 30; trial++)
        {
            int g = rng.Next(1, 7), groups = rng.Next(1, 3), n = g * groups;
            double beta = rng.NextDouble();
            var tab = Tabular.Random(rng, n, 4, 3);
            var r = RandomRewards(rng, n, binary: true);
            var shaped = new double[n];
            for (int s = 0; s < n; s += g)
            {
                var order = Enumerable.Range(s, g).OrderBy(tab.MeanLogP).ThenBy(i => i).ToArray();
                for (int rank = 0; rank < g; rank++) shaped[order[rank]] = r[order[rank]] * (1 - beta * rank / g);
                // Correct samples: reward non-increasing in likelihood rank; incorrect ones stay 0.
                for (int rank = 1; rank < g; rank++)
                    if (r[order[rank]] == 1 && r[order[rank - 1]] == 1) Assert.True(shaped[order[rank]] <= shaped[order[rank - 1]]);
            }
            for (int i = 0; i < n; i++) if (r[i] == 0) Assert.Equal(0, shaped[i]);
            var u = new Unlikeliness { Beta = beta };
            var likelihood = Tensor.FromArray(Enumerable.Range(0, n).Select(tab.MeanLogP).ToArray());
            Near(shaped, Unlikeliness.Rewards(Tensor.FromArray(r), likelihood, g, beta).ToDoubleArray());
            var a = u.Advantages(tab.Batch(tab.Logits(), r, g)).ToDoubleArray();
            Near(GrpoRef(shaped, g), a, 1e-9);
            var grpo = new Unlikeliness { Beta = 0 }.Advantages(tab.Batch(tab.Logits(), r, g)).ToDoubleArray();
            Assert.Equal(PolicyMath.GroupAdvantages(Tensor.FromArray(r), g).ToDoubleArray(), grpo);
            if (trial < 3) AssertSurrogateGradient(u, tab, r, g, PerToken(a, tab.T));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => new Unlikeliness { Beta = -0.1 });
    }

    // ---------- PURE (min-form credit) ----------

    static double[] Steps(Tabular tab, double[] tokenRewards, int i) => Enumerable.Range(0, tab.T).Where(t => tab.M[i * tab.T + t] != 0).Select(t => tokenRewards[i * tab.T + t]).ToArray();

    static double SoftMin(double[] r, double tau)
    {
        double m = r.Min(); var w = r.Select(x => Math.Exp(-(x - m) / tau)).ToArray();
        return r.Select((x, k) => w[k] * x).Sum() / w.Sum();
    }

    [Fact]
    public void Pure_min_form_is_the_suffix_minimum_in_range_and_invariant_to_repeated_steps()
    {
        var rng = new Random(30);
        for (int trial = 0; trial < 30; trial++)
        {
            var tab = Tabular.Random(rng, rng.Next(1, 5), rng.Next(1, 7), 2);
            var pr = Enumerable.Range(0, tab.B * tab.T).Select(k => tab.M[k] * Math.Round(2 * rng.NextDouble() - 1, 2)).ToArray();
            var mask = Tensor.FromArray(tab.M, new Shape(tab.B, tab.T));
            var got = ProcessReturns.MinForm(Tensor.FromArray(pr, new Shape(tab.B, tab.T)), mask).ToDoubleArray();
            for (int i = 0; i < tab.B; i++)
                for (int t = 0; t < tab.T; t++)
                {
                    int k = i * tab.T + t;
                    if (tab.M[k] == 0) { Assert.Equal(0, got[k]); continue; }
                    var suffix = Steps(tab, pr, i)[t..];
                    Assert.Equal(suffix.Min(), got[k]);
                    Assert.InRange(got[k], suffix.Min(), suffix.Max());
                }
        }
        // Duplicating any step leaves every exact min-form value unchanged (a sum would grow or shrink).
        for (int trial = 0; trial < 20; trial++)
        {
            int len = rng.Next(1, 6), dup = rng.Next(len);
            var r = Enumerable.Range(0, len).Select(_ => 2 * rng.NextDouble() - 1).ToArray();
            double[] repeated = [.. r[..(dup + 1)], r[dup], .. r[(dup + 1)..]];
            double V(double[] x, double tau) => ProcessReturns.MinForm(Tensor.FromArray(x, new Shape(1, x.Length)), Tensor.Ones(new Shape(1, x.Length), DType.Float64), tau).ToDoubleArray()[0];
            Assert.Equal(V(r, 0), V(repeated, 0));
        }
    }

    [Fact]
    public void Pure_soft_min_lies_between_min_and_mean_and_tends_to_the_min()
    {
        var rng = new Random(31);
        for (int trial = 0; trial < 40; trial++)
        {
            int len = rng.Next(1, 8);
            var r = Enumerable.Range(0, len).Select(_ => 2 * rng.NextDouble() - 1).ToArray();
            foreach (double tau in new[] { 2.0, 0.3, 0.05, 1e-3 })
            {
                var got = ProcessReturns.MinForm(Tensor.FromArray(r, new Shape(1, len)), Tensor.Ones(new Shape(1, len), DType.Float64), tau).ToDoubleArray();
                for (int t = 0; t < len; t++)
                {
                    var suffix = r[t..];
                    Assert.Equal(SoftMin(suffix, tau), got[t], 1e-12);
                    Assert.InRange(got[t], suffix.Min() - 1e-12, suffix.Average() + 1e-12);
                    // Every other weight is ≤ exp(−δ/τ), δ the gap to the second-smallest value: the distance to the min is bounded by it.
                    var sorted = suffix.Distinct().Order().ToArray();
                    if (sorted.Length > 1)
                        Assert.True(got[t] - sorted[0] <= (suffix.Length - 1) * Math.Exp(-(sorted[1] - sorted[0]) / tau) * (sorted[^1] - sorted[0]) + 1e-15);
                }
            }
        }
    }

    [Fact]
    public void Pure_token_advantages_add_the_outcome_and_subtract_the_group_mean_total()
    {
        var rng = new Random(32);
        for (int trial = 0; trial < 10; trial++)
        {
            int g = rng.Next(1, 4), n = g * rng.Next(1, 3);
            var tab = Tabular.Random(rng, n, rng.Next(1, 5), 3);
            var pr = Enumerable.Range(0, n * tab.T).Select(k => tab.M[k] * (2 * rng.NextDouble() - 1)).ToArray();
            var r = RandomRewards(rng, n, binary: true);
            double tau = trial % 2 == 0 ? 0 : 0.1;
            var ret = new double[n * tab.T]; var total = new double[n];
            for (int i = 0; i < n; i++)
            {
                var steps = Steps(tab, pr, i);
                for (int t = 0; t < steps.Length; t++) ret[i * tab.T + t] = tau == 0 ? steps[t..].Min() : SoftMin(steps[t..], tau);
                total[i] = (steps.Length == 0 ? 0 : ret[i * tab.T]) + r[i];
            }
            var a = new double[n * tab.T];
            for (int i = 0; i < n; i++)
            {
                double baseline = total[(i / g * g)..(i / g * g + g)].Average();
                for (int t = 0; t < tab.T; t++) a[i * tab.T + t] = tab.M[i * tab.T + t] * (ret[i * tab.T + t] + r[i] - baseline);
            }
            var pure = new MinFormCredit { Temperature = tau };
            Near(a, pure.Advantages(tab.Batch(tab.Logits(), r, g, pr)).ToDoubleArray(), 1e-12);
            AssertSurrogateGradient(pure, tab, r, g, a, pr);
            if (trial == 0) AssertGradCheck(pure, tab, r, g, rng, pr);
        }
        var t0 = Tabular.Random(rng, 2, 2, 2);
        var e = Assert.Throws<ArgumentException>(() => new MinFormCredit().Loss(t0.Batch(t0.Logits(), [1, 0], 2)));
        Assert.Contains("TokenRewards", e.Message);
        Assert.Equal([1.0, 0, 1, 0], ProcessReturns.PrefixMatch("abc", "aXcd"));
    }

    // ---------- Reward refinement (Clip, Delta) ----------

    static double Return(double[] steps, RefinementMode mode, double eta) =>
        ProcessReturns.ReturnToGo(RewardRefinement.Refine(Tensor.FromArray(steps, new Shape(1, steps.Length)), Tensor.Ones(new Shape(1, steps.Length), DType.Float64), mode, eta),
            Tensor.Ones(new Shape(1, steps.Length), DType.Float64)).ToDoubleArray()[0];

    [Fact]
    public void Reward_refinement_clip_bounds_returns_and_delta_telescopes()
    {
        var rng = new Random(40);
        for (int trial = 0; trial < 30; trial++)
        {
            var tab = Tabular.Random(rng, rng.Next(1, 4), rng.Next(1, 6), 2);
            var pr = Enumerable.Range(0, tab.B * tab.T).Select(k => tab.M[k] * rng.NextDouble()).ToArray();
            double eta = rng.NextDouble();
            var prT = Tensor.FromArray(pr, new Shape(tab.B, tab.T)); var mask = Tensor.FromArray(tab.M, new Shape(tab.B, tab.T));
            var clip = RewardRefinement.Refine(prT, mask, RefinementMode.Clip, eta).ToDoubleArray();
            var delta = RewardRefinement.Refine(prT, mask, RefinementMode.Delta, eta);
            var deltaReturn = ProcessReturns.ReturnToGo(delta, mask).ToDoubleArray();
            var clipReturn = ProcessReturns.ReturnToGo(Tensor.FromArray(clip, new Shape(tab.B, tab.T)), mask).ToDoubleArray();
            var clipDeltaReturn = ProcessReturns.ReturnToGo(RewardRefinement.Refine(prT, mask, RefinementMode.ClipDelta, eta), mask).ToDoubleArray();
            for (int i = 0; i < tab.B; i++)
            {
                var steps = Steps(tab, pr, i);
                for (int t = 0; t < steps.Length; t++)
                {
                    int k = i * tab.T + t;
                    Assert.Equal(Math.Min(steps[t] - eta, 0), clip[k]);
                    Assert.Equal(steps[t..].Sum(x => Math.Min(x - eta, 0)), clipReturn[k], 1e-12);
                    Assert.True(clipReturn[k] <= 0);                           // Clip: returns bounded above by 0
                    Assert.Equal(steps[t], deltaReturn[k], 1e-12);                // Delta: the return telescopes to r_t ≤ max r
                    Assert.Equal(Math.Min(steps[t] - eta, 0), clipDeltaReturn[k], 1e-12);
                }
            }
        }
        // Repeating a step never raises the return (a plain sum would by +r).
        for (int trial = 0; trial < 30; trial++)
        {
            int len = rng.Next(1, 6), dup = rng.Next(len);
            var r = Enumerable.Range(0, len).Select(_ => rng.NextDouble()).ToArray();
            double[] repeated = [.. r[..(dup + 1)], r[dup], .. r[(dup + 1)..]];
            foreach (var mode in Enum.GetValues<RefinementMode>())
                Assert.True(Return(repeated, mode, 0.5) <= Return(r, mode, 0.5) + 1e-12, $"{mode}");
        }
    }

    [Fact]
    public void Reward_refinement_objective_uses_the_refined_sum_form_returns()
    {
        var rng = new Random(41);
        var tab = Tabular.Random(rng, 4, 3, 3);
        var pr = Enumerable.Range(0, 12).Select(k => tab.M[k] * rng.NextDouble()).ToArray();
        var r = RandomRewards(rng, 4, binary: true);
        foreach (var mode in Enum.GetValues<RefinementMode>())
        {
            var obj = new RewardRefinement { Mode = mode, Threshold = 0.4 };
            var mask = Tensor.FromArray(tab.M, new Shape(4, 3));
            var expected = ProcessReturns.TokenAdvantages(ProcessReturns.ReturnToGo(RewardRefinement.Refine(Tensor.FromArray(pr, new Shape(4, 3)), mask, mode, 0.4), mask),
                Tensor.FromArray(r), mask, 2).ToDoubleArray();
            AssertSurrogateGradient(obj, tab, r, 2, expected, pr);
        }
        AssertGradCheck(new RewardRefinement(), tab, r, 2, rng, pr);
        Assert.Throws<ArgumentOutOfRangeException>(() => new RewardRefinement { Threshold = double.NaN });
    }

    // ---------- Beyond Variance: pairing + weighted GRPO ----------

    [Fact]
    public void Pair_weighted_grpo_gives_the_closed_form_binary_advantages_times_the_pair_weights()
    {
        var rng = new Random(50);
        for (int trial = 0; trial < 40; trial++)
        {
            int g = rng.Next(2, 9), groups = rng.Next(1, 5), n = g * groups;
            double wp = 0.5 + 2 * rng.NextDouble(), wn = 0.5 + 2 * rng.NextDouble();
            var r = new double[n]; var p = new double[groups];
            for (int q = 0; q < groups; q++)
            {
                int s = rng.Next(1, g);  // 0 < p < 1 so the std is positive and eps = 0 is exact
                p[q] = s / (double)g;
                var group = Enumerable.Range(0, g).Select(i => i < s ? 1.0 : 0.0).OrderBy(_ => rng.Next()).ToArray();
                group.CopyTo(r, q * g);
            }
            var a = PairWeightedGrpo.Advantages(Tensor.FromArray(r), g, wp, wn, eps: 0).ToDoubleArray();
            for (int q = 0; q < groups; q++)
            {
                int partner = q % 2 == 0 ? q + 1 : q - 1;
                bool paired = partner < groups;
                bool hard = paired && (p[q] < p[partner] || (p[q] == p[partner] && q < partner));
                for (int i = q * g; i < (q + 1) * g; i++)
                {
                    double std = r[i] == 1 ? Math.Sqrt((1 - p[q]) / p[q]) : -Math.Sqrt(p[q] / (1 - p[q]));
                    double w = !paired ? 1 : r[i] == 1 ? (hard ? wp : 1) : (hard ? 1 : wn);
                    Assert.Equal(w * std, a[i], 1e-12);
                }
            }
            Near(PolicyMath.GroupAdvantages(Tensor.FromArray(r), g).ToDoubleArray(), PairWeightedGrpo.Advantages(Tensor.FromArray(r), g, 1, 1, 1e-6).ToDoubleArray(), 0);
        }
        var tab = Tabular.Random(rng, 8, 2, 3);
        double[] rr = [1, 0, 0, 0, 1, 1, 1, 0];
        var obj = new PairWeightedGrpo();
        AssertSurrogateGradient(obj, tab, rr, 4, PerToken(obj.Advantages(tab.Batch(tab.Logits(), rr, 4)).ToDoubleArray(), 2));
        AssertGradCheck(obj, tab, rr, 4, rng);
    }

    [Fact]
    public void Pairing_matches_hard_solvable_prompts_with_easy_brittle_ones()
    {
        var rng = new Random(51);
        for (int trial = 0; trial < 40; trial++)
        {
            var rates = Enumerable.Range(0, rng.Next(0, 10)).Select(_ => rng.Next(0, 9) / 8.0).ToArray();
            var pairs = PairWeightedGrpo.Pair(rates);
            var open = rates.Count(x => x > 0 && x < 1);
            Assert.Equal(open / 2, pairs.Count);
            var used = pairs.SelectMany(x => new[] { x.Hard, x.Easy }).ToArray();
            Assert.Equal(used.Length, used.Distinct().Count());
            foreach (var (h, e) in pairs)
            {
                Assert.InRange(rates[h], 1e-9, 1 - 1e-9); Assert.InRange(rates[e], 1e-9, 1 - 1e-9);
                Assert.True(rates[h] <= rates[e]);
                // Every unpaired open prompt lies between the paired ones (extremes are paired first).
                foreach (int u in Enumerable.Range(0, rates.Length).Where(i => rates[i] > 0 && rates[i] < 1 && !used.Contains(i)))
                    Assert.InRange(rates[u], rates[h], rates[e]);
            }
        }
        Assert.Contains("successRates[1] = 1.5", Assert.Throws<ArgumentException>(() => PairWeightedGrpo.Pair([0.5, 1.5])).Message);
    }

    // ---------- REAL: rewards as labels ----------

    [Fact]
    public void Real_gradient_on_logits_is_the_bce_weight_times_the_length_normalised_score_gradient()
    {
        var rng = new Random(60);
        for (int trial = 0; trial < 8; trial++)
        {
            var tab = Tabular.Random(rng, rng.Next(1, 6), rng.Next(1, 4), 3);
            int b = tab.B;
            double beta = 0.5 + 2 * rng.NextDouble();
            var labels = Enumerable.Range(0, b).Select(_ => rng.Next(3) / 2.0).ToArray();
            var shift = Enumerable.Range(0, b * tab.T).Select(_ => rng.NextDouble() - 0.5).ToArray();
            var z = tab.Logits();
            var old = tab.LogProbs(z).Detach() + Tensor.FromArray(shift, new Shape(b, tab.T));
            var real = new RewardsAsLabels { Beta = beta };
            var batch = tab.Batch(z, labels, 1, old: old);
            var loss = real.Loss(batch);
            loss.Backward();
            var grad = z.Grad!.ToDoubleArray();
            var expected = new double[grad.Length]; double bce = 0;
            for (int i = 0; i < b; i++)
            {
                int len = tab.Len(i);
                // old = log π + shift, so each token's log-ratio is −shift.
                double s = len == 0 ? 0 : beta * Enumerable.Range(0, len).Sum(t => -shift[i * tab.T + t]) / len;
                double sig = 1 / (1 + Math.Exp(-s)), w = sig - labels[i];
                bce += -(labels[i] * Math.Log(sig) + (1 - labels[i]) * Math.Log(1 - sig)) / b;
                Assert.Equal(w, RewardsAsLabels.GradientWeights(RewardsAsLabels.Scores(batch, beta), Tensor.FromArray(labels)).ToDoubleArray()[i], 1e-12);
                for (int t = 0; t < tab.T; t++)
                {
                    var p = tab.P(i, t);
                    for (int v = 0; v < tab.V; v++)
                        expected[(i * tab.T + t) * tab.V + v] = w / b * beta * tab.M[i * tab.T + t] / Math.Max(len, 1) * ((v == tab.Y[i * tab.T + t] ? 1 : 0) - p[v]);
                }
            }
            Assert.Equal(bce, loss.Item(), 1e-12);
            Near(expected, grad, 1e-10);
        }
        var t2 = Tabular.Random(rng, 3, 2, 3);
        var r2 = GradCheck.Run(x => new RewardsAsLabels().Loss(t2.Batch(x[0], [1, 0, 0.5], 3, old: t2.LogProbs(Tensor.FromArray(t2.Z, new Shape(3, 2, 3))) - 0.2)),
            [Tensor.FromArray(t2.Z, new Shape(3, 2, 3))]);
        Assert.True(r2.Passed, r2.ToString());
    }

    [Fact]
    public void Real_gradient_weights_are_bounded_and_monotone_in_the_score()
    {
        var rng = new Random(61);
        var s = Enumerable.Range(0, 200).Select(_ => 30 * rng.NextDouble() - 15).Order().ToArray();
        foreach (double y in new[] { 0.0, 0.3, 1.0 })
        {
            var w = RewardsAsLabels.GradientWeights(Tensor.FromArray(s), Tensor.Full(new Shape(s.Length), y, DType.Float64)).ToDoubleArray();
            for (int i = 0; i < w.Length; i++)
            {
                Assert.InRange(w[i], -y, 1 - y);
                if (i > 0) Assert.True(w[i] >= w[i - 1]);
            }
        }
        var tab = Tabular.Random(rng, 2, 1, 2);
        Assert.Contains("Rewards[1] = 2", Assert.Throws<ArgumentException>(() => new RewardsAsLabels().Loss(tab.Batch(tab.Logits(), [1, 2], 2))).Message);
    }

    // ---------- LENS: confidence-reweighted negatives ----------

    [Fact]
    public void Lens_penalises_confident_mistakes_more_and_revives_all_incorrect_groups()
    {
        var rng = new Random(70);
        var lens = new ConfidenceReweighting();
        var c = Enumerable.Range(0, 101).Select(k => k / 100.0).ToArray();
        var shaped = lens.Rewards(Tensor.Zeros(new Shape(101), DType.Float64), Tensor.FromArray(c)).ToDoubleArray();
        for (int k = 0; k < c.Length; k++)
        {
            double ck = Math.Min(c[k], 0.99);
            Assert.Equal(-ck / (1 - ck), shaped[k], 1e-12);
            if (k > 0) Assert.True(shaped[k] <= shaped[k - 1]);
        }
        Assert.Equal([1.0, 1.0], lens.Rewards(Tensor.FromArray(new double[] { 1, 1 }), Tensor.FromArray(new double[] { 0.2, 0.9 })).ToDoubleArray());
        for (int trial = 0; trial < 10; trial++)
        {
            var tab = Tabular.Random(rng, 4, 3, 3, allowEmpty: false);
            var zeros = new double[4];
            var a = lens.Advantages(tab.Batch(tab.Logits(), zeros, 4)).ToDoubleArray();
            Assert.Contains(a, x => Math.Abs(x) > 1e-3);    // GRPO would give 0 everywhere
            var conf = Enumerable.Range(0, 4).Select(i => Math.Exp(tab.MeanLogP(i))).ToArray();
            var pen = conf.Select(x => -Math.Min(x, 0.99) / (1 - Math.Min(x, 0.99))).ToArray();
            Near(GrpoRef(pen, 4), a, 1e-9);
            AssertSurrogateGradient(lens, tab, zeros, 4, PerToken(a, tab.T));
        }
        // Identical confidences: the penalty is a constant shift and normalises away.
        var same = lens.Rewards(Tensor.Zeros(new Shape(4), DType.Float64), Tensor.Full(new Shape(4), 0.3, DType.Float64));
        Assert.All(PolicyMath.GroupAdvantages(same, 4).ToDoubleArray(), x => Assert.Equal(0, x, 1e-12));
        AssertGradCheck(lens, Tabular.Random(rng, 4, 2, 3), [1, 0, 0, 1], 2, rng);
    }

    [Fact]
    public void Lens_penalty_is_the_expected_mle_gradient_of_log_one_minus_pi_on_mistakes()
    {
        var rng = new Random(71);
        for (int trial = 0; trial < 20; trial++)
        {
            int v = rng.Next(2, 7);
            var zv = Enumerable.Range(0, v).Select(_ => 3 * rng.NextDouble() - 1.5).ToArray();
            var wrong = Enumerable.Range(0, v).Select(_ => rng.Next(2) == 0).ToArray();
            double mx = zv.Max(); var e = zv.Select(x => Math.Exp(x - mx)).ToArray(); var p = e.Select(x => x / e.Sum()).ToArray();
            // MLE side, by enumeration over the output space with Kiln's autodiff: Σ_{y wrong} π(y) ∇ log(1 − π_z(y)), π(y) held fixed.
            var z = Tensor.FromArray(zv).RequiresGrad_();
            var weights = Tensor.FromArray(p.Select((x, k) => wrong[k] ? x : 0).ToArray());
            var mle = Autograd.Grad((weights * (1 - z.Softmax(-1)).Log()).Sum(), z).ToDoubleArray();
            // Policy-gradient side: Σ_y π(y) r̃(y) (e_y − π) with LENS's reshaped reward of a mistake (reward 0, confidence π(y)).
            var lens = new ConfidenceReweighting { MaxConfidence = 1 - 1e-12 };
            var shaped = lens.Rewards(Tensor.Zeros(new Shape(v), DType.Float64), Tensor.FromArray(p)).ToDoubleArray();
            var pg = new double[v];
            for (int y = 0; y < v; y++)
                if (wrong[y])
                    for (int k = 0; k < v; k++) pg[k] += p[y] * shaped[y] * ((k == y ? 1 : 0) - p[k]);
            Near(pg, mle, 1e-12);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => new ConfidenceReweighting { MaxConfidence = 1 });
        Assert.Contains("confidence[0] = 1.5", Assert.Throws<ArgumentException>(() => new ConfidenceReweighting().Rewards(Tensor.FromArray(new double[] { 0 }), Tensor.FromArray(new double[] { 1.5 }))).Message);
    }

    // ---------- registry ----------

    [Fact]
    public void Every_rl_adv_objective_is_registered_and_trains_a_float32_batch()
    {
        var rng = new Random(80);
        var tab = Tabular.Random(rng, 8, 3, 4);
        foreach (var name in new[] { "canon", "qae", "unlikeliness", "pure", "reward-refinement", "pair-weighted-grpo", "real", "lens" })
        {
            var objective = PolicyObjectives.Create(name);
            Assert.Equal(name, objective.Name);
            var z = Tensor.FromArray(tab.Z, new Shape(8, 3, 4)).To(DType.Float32).RequiresGrad_();
            var lp = tab.LogProbs(z);
            var batch = new PolicyBatch
            {
                LogProbs = lp, OldLogProbs = lp.Detach(), Rewards = Tensor.FromArray(new float[] { 1, 0, 0, 1, 1, 1, 0, 1 }),
                Mask = Tensor.FromArray(tab.M, new Shape(8, 3)).To(DType.Float32), GroupSize = 4, Logits = z,
                TokenRewards = Tensor.FromArray(tab.M.Select(m => m * rng.NextDouble()).ToArray(), new Shape(8, 3)).To(DType.Float32),
            };
            var loss = objective.Loss(batch);
            Assert.Equal(DType.Float32, loss.DType);
            loss.Backward();
            Assert.All(z.Grad!.ToDoubleArray(), g => Assert.True(double.IsFinite(g)));
            Assert.Contains(z.Grad!.ToDoubleArray(), g => g != 0);
        }
    }
}
