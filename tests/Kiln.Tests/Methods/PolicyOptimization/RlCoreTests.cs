using Kiln.Methods.PolicyOptimization;
using Kiln.NN.Decoder;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests.Methods;

/// <summary>
/// The post-training bench (issue 23, rl-core): the tabular and decoder policies, the k1/k2/k3 KL estimators against
/// exact expectations, and the baseline objectives' gradients against their closed forms on the softmax table.
/// </summary>
public class RlCoreTests
{
    static double[] Softmax(double[] z)
    {
        double m = z.Max();
        var e = z.Select(x => Math.Exp(x - m)).ToArray();
        double s = e.Sum();
        return [.. e.Select(x => x / s)];
    }

    // A tabular policy over random float64 logits [contexts, actions], with `groups` prompts (random contexts) of
    // `g` sampled one-token completions each.
    sealed record Table(TabularPolicy Policy, double[] Z, int Contexts, int Actions, int[][] Prompts, int[][] Completions)
    {
        public int Rows => Prompts.Length;
        public double[] P(int row) => Softmax(Z.AsSpan(Prompts[row][0] * Actions, Actions).ToArray());
        public int Context(int row) => Prompts[row][0];
        public int Action(int row) => Completions[row][0];
    }

    static Table MakeTable(Random r, int contexts, int actions, int groups, int g)
    {
        var z = Dense.Uniform(r, contexts * actions, -2, 2);
        var policy = new TabularPolicy(Tensor.FromArray(z, new Shape(contexts, actions)));
        var prompts = new List<int[]>(); var completions = new List<int[]>();
        for (int i = 0; i < groups; i++)
        {
            int c = r.Next(contexts);
            foreach (var y in policy.Sample([c], g, 1, 1, r)) { prompts.Add([c]); completions.Add(y); }
        }
        return new Table(policy, z, contexts, actions, [.. prompts], [.. completions]);
    }

    static double[] Binary(Random r, int n) => [.. Enumerable.Range(0, n).Select(_ => (double)r.Next(2))];

    // d loss / d z of the table, float64.
    static double[] GradZ(Table t, Func<PolicyScores, Tensor> loss)
    {
        var scores = t.Policy.Score(t.Prompts, t.Completions);
        return Autograd.Grad(loss(scores), t.Policy.Logits).ToDoubleArray();
    }

    // Σ_i w_i (e_{y_i} − p_i) placed in the rows of the table's contexts: the gradient of Σ_i w_i log π(y_i | c_i).
    static double[] ScoreGradient(Table t, double[] w)
    {
        var g = new double[t.Contexts * t.Actions];
        for (int i = 0; i < t.Rows; i++)
        {
            var p = t.P(i);
            for (int a = 0; a < t.Actions; a++) g[t.Context(i) * t.Actions + a] += w[i] * ((a == t.Action(i) ? 1 : 0) - p[a]);
        }
        return g;
    }

    static void Close(double[] expected, double[] actual, double tol = 1e-12)
    {
        Assert.Equal(expected.Length, actual.Length);
        Assert.True(Dense.MaxDiff(expected, actual) <= tol * (1 + Dense.MaxAbs(expected)), $"max diff {Dense.MaxDiff(expected, actual):G3}");
    }

    // ------------------------------------------------------------------ policies

    [Fact]
    public void Tabular_policy_scores_are_the_log_softmax_of_the_table_and_greedy_sampling_is_the_argmax()
    {
        var r = new Random(1);
        var t = MakeTable(r, 3, 5, 4, 3);
        var s = t.Policy.Score(t.Prompts, t.Completions);
        Assert.Equal(new Shape(t.Rows, 1), s.LogProbs.Shape);
        Assert.Equal(new Shape(t.Rows, 1, 5), s.Logits.Shape);
        Close([.. Enumerable.Range(0, t.Rows).Select(i => Math.Log(t.P(i)[t.Action(i)]))], s.LogProbs.ToDoubleArray());
        Assert.All(s.Mask.ToDoubleArray(), m => Assert.Equal(1, m));
        for (int c = 0; c < 3; c++)
        {
            var p = t.Policy.Probabilities(c);
            Close(Softmax(t.Z.AsSpan(c * 5, 5).ToArray()), p);
            Assert.All(t.Policy.Sample([c], 4, 1, 0, r), y => Assert.Equal(Array.IndexOf(p, p.Max()), y[0]));
        }
        Assert.Throws<ArgumentException>(() => t.Policy.Score([[3]], [[0]]));
        Assert.Throws<ArgumentException>(() => t.Policy.Score([[0]], [[0, 1]]));
        Assert.Throws<ArgumentException>(() => t.Policy.Sample([7], 2, 1, 1, r));
    }

    [Fact]
    public void Tabular_sampling_frequencies_follow_the_softmax()
    {
        var r = new Random(2);
        var policy = new TabularPolicy(Tensor.FromArray(new[] { 0.5, -1.0, 1.5, 0.0 }, new Shape(1, 4)));
        var p = policy.Probabilities(0);
        var counts = new double[4];
        const int n = 20000;
        foreach (var y in policy.Sample([0], n, 1, 1, r)) counts[y[0]]++;
        // Four binomial standard errors of a frequency from 20000 draws are below 0.015.
        for (int a = 0; a < 4; a++) Assert.InRange(counts[a] / n - p[a], -0.015, 0.015);
    }

    static DecoderConfig TinyConfig => new()
    {
        ModelType = "qwen3", VocabSize = 13, HiddenSize = 16, IntermediateSize = 24, Layers = 2, Heads = 4, KvHeads = 2, HeadDim = 4,
        MaxPositions = 64, TieWordEmbeddings = true, QkNorm = true,
    };

    [Fact]
    public void Decoder_policy_scores_padded_rows_as_each_row_alone()
    {
        var config = TinyConfig;
        var policy = new DecoderPolicy(config, DecoderWeights.Init(config, new Generator(3), std: 0.5, dtype: DType.Float64)) { Stop = 12 };
        int[][] prompts = [[1, 2, 3], [4], [5, 6]];
        int[][] completions = [[7, 12], [8, 9, 10, 12], [11]];
        var s = policy.Score(prompts, completions);
        Assert.Equal(new Shape(3, 4), s.LogProbs.Shape);
        Assert.Equal(new Shape(3, 4, 13), s.Logits.Shape);
        Assert.Equal([1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0], s.Mask.ToDoubleArray());
        var lp = s.LogProbs.ToDoubleArray();
        var logits = s.Logits.ToDoubleArray();
        for (int i = 0; i < 3; i++)
        {
            var row = prompts[i].Concat(completions[i]).Select(x => (long)x).ToArray();
            var alone = policy.Model.Forward(Tensor.FromArray(row, new Shape(1, row.Length))).LogSoftmax(-1).ToDoubleArray();
            for (int j = 0; j < completions[i].Length; j++)
            {
                int pos = prompts[i].Length + j - 1;
                Assert.Equal(alone[pos * 13 + completions[i][j]], lp[i * 4 + j], 1e-10);
                var ls = Softmax(logits.AsSpan((i * 4 + j) * 13, 13).ToArray());
                Assert.Equal(Math.Exp(alone[pos * 13 + 5]), ls[5], 1e-10);
            }
            for (int j = completions[i].Length; j < 4; j++) Assert.Equal(0, lp[i * 4 + j]);
        }
        Assert.Throws<ArgumentException>(() => policy.Score([[1]], [[13]]));
        Assert.Throws<ArgumentException>(() => policy.Score([[1], [2]], [[3]]));
    }

    [Fact]
    public void Decoder_policy_batched_sampling_matches_generate_greedily_and_stops_at_the_stop_token()
    {
        var config = TinyConfig;
        var weights = DecoderWeights.Init(config, new Generator(5), std: 0.5, dtype: DType.Float64);
        var policy = new DecoderPolicy(config, weights) { Stop = 12 };
        int[] prompt = [3, 1, 4];
        var greedy = policy.Sample(prompt, 3, 6, 0, new Random(1));
        var reference = new DecoderModel(config, weights).Generate(prompt, 6, stop: 12);
        Assert.All(greedy, row => Assert.Equal(reference, row));
        var sampled = policy.Sample(prompt, 16, 5, 1.5, new Random(2));
        Assert.All(sampled, row =>
        {
            Assert.InRange(row.Length, 1, 5);
            Assert.True(row.Length == 5 || row[^1] == 12);
            Assert.DoesNotContain(12, row[..^1]);
        });
        Assert.True(sampled.Select(s => string.Join(",", s)).Distinct().Count() > 1, "sampling at temperature 1.5 gave 16 identical rows");
    }

    // ------------------------------------------------------------------ KL estimators

    [Fact]
    public void Kl_estimators_have_the_exact_expectations_under_the_policy()
    {
        var r = new Random(4);
        for (int trial = 0; trial < 20; trial++)
        {
            int a = 2 + r.Next(6);
            var p = Softmax(Dense.Uniform(r, a, -2, 2));
            var q = Softmax(Dense.Uniform(r, a, -2, 2));
            // Every action once: E_π[k] = Σ_a π(a) k(a).
            var logp = Tensor.FromArray(p.Select(x => Math.Log(x)).ToArray(), new Shape(a, 1));
            var logq = Tensor.FromArray(q.Select(x => Math.Log(x)).ToArray(), new Shape(a, 1));
            var mask = Tensor.Ones(new Shape(a, 1), DType.Float64);
            double E(KlEstimator k) => KlEstimators.Token(k, logp, logq, mask).ToDoubleArray().Select((v, i) => p[i] * v).Sum();
            double kl = p.Select((pi, i) => pi * Math.Log(pi / q[i])).Sum();
            double k2 = p.Select((pi, i) => 0.5 * pi * Math.Pow(Math.Log(pi / q[i]), 2)).Sum();
            Assert.Equal(kl, E(KlEstimator.K1), 1e-12);
            Assert.Equal(kl, E(KlEstimator.K3), 1e-12);
            Assert.Equal(k2, E(KlEstimator.K2), 1e-12);
            Assert.All(KlEstimators.Token(KlEstimator.K3, logp, logq, mask).ToDoubleArray(), v => Assert.True(v >= 0));
            Assert.All(KlEstimators.Token(KlEstimator.K2, logp, logq, mask).ToDoubleArray(), v => Assert.True(v >= 0));
        }
    }

    [Fact]
    public void K2_expectation_agrees_with_kl_to_second_order()
    {
        // For q = softmax(z + s d), E_π[k2] − KL(π‖q) = O(s³): halving s divides the gap by about 8, while KL itself shrinks by 4.
        var r = new Random(6);
        var z = Dense.Uniform(r, 5, -1, 1);
        var d = Dense.Uniform(r, 5, -1, 1);
        var p = Softmax(z);
        (double Kl, double K2) At(double s)
        {
            var q = Softmax(z.Select((x, i) => x + s * d[i]).ToArray());
            var logp = Tensor.FromArray(p.Select(x => Math.Log(x)).ToArray(), new Shape(1, 5));
            var logq = Tensor.FromArray(q.Select(x => Math.Log(x)).ToArray(), new Shape(1, 5));
            var w = KlEstimators.Token(KlEstimator.K2, logp, logq, Tensor.Ones(new Shape(1, 5), DType.Float64)).ToDoubleArray();
            return (p.Select((pi, i) => pi * Math.Log(pi / q[i])).Sum(), w.Select((v, i) => p[i] * v).Sum());
        }
        var (kl1, k21) = At(0.04);
        var (kl2, k22) = At(0.02);
        Assert.InRange(kl1 / kl2, 3.8, 4.2);
        Assert.InRange((k21 - kl1) / (k22 - kl2), 7, 9);
    }

    [Fact]
    public void Kl_estimators_are_zero_off_the_mask_and_check_shapes()
    {
        var logp = Tensor.FromArray(new[] { -1.0, -2.0, 5.0, -0.5 }, new Shape(2, 2));
        var logq = Tensor.FromArray(new[] { -1.5, -1.0, -90.0, -0.7 }, new Shape(2, 2));
        var mask = Tensor.FromArray(new[] { 1.0, 1.0, 0.0, 1.0 }, new Shape(2, 2));
        foreach (var k in Enum.GetValues<KlEstimator>())
        {
            var v = KlEstimators.Token(k, logp, logq, mask).ToDoubleArray();
            Assert.Equal(0, v[2]);
            Assert.True(double.IsFinite(v.Sum()));
        }
        // k1 = log π − log π_ref summed over each row's masked tokens: (0.5 − 1) and 0.2.
        var seq = KlEstimators.Sequence(KlEstimator.K1, logp, logq, mask).ToDoubleArray();
        Assert.Equal(-0.5, seq[0], 1e-12);
        Assert.Equal(0.2, seq[1], 1e-12);
        Assert.Throws<ArgumentException>(() => KlEstimators.Token(KlEstimator.K3, logp, logq.Reshape(4, 1), mask));
    }
    // ------------------------------------------------------------------ baseline objectives

    static PolicyBatch OnPolicy(PolicyScores s, double[] rewards, int g, Tensor? reference = null) => Policies.OnPolicyBatch(s, rewards, g, reference);

    static double[] GroupCentred(double[] r, int g, bool std)
    {
        var a = new double[r.Length];
        for (int k = 0; k < r.Length / g; k++)
        {
            var grp = r.AsSpan(k * g, g).ToArray();
            double m = grp.Average(), sd = Math.Sqrt(grp.Select(x => (x - m) * (x - m)).Average());
            for (int i = 0; i < g; i++) a[k * g + i] = (grp[i] - m) / (std ? sd + 1e-6 : 1);
        }
        return a;
    }

    [Fact]
    public void Grpo_on_policy_gradient_is_the_advantage_weighted_score_function_plus_the_k3_gradient()
    {
        var r = new Random(7);
        for (int trial = 0; trial < 10; trial++)
        {
            int g = 2 + r.Next(5), groups = 1 + r.Next(3);
            var t = MakeTable(r, 3, 2 + r.Next(5), groups, g);
            var rewards = Binary(r, t.Rows);
            var refLp = Dense.Uniform(r, t.Rows, -3, -0.1);
            double beta = trial % 2 == 0 ? 0 : 0.04 + r.NextDouble();
            var grad = GradZ(t, s => new Grpo { Beta = beta }.Loss(OnPolicy(s, rewards, g, Tensor.FromArray(refLp, new Shape(t.Rows, 1)))));
            var a = GroupCentred(rewards, g, std: true);
            // d/d log π of −ρA + β k3 at ρ = 1: −A + β (1 − π_ref / π); one token per row, so the aggregate is the mean over B rows.
            var w = Enumerable.Range(0, t.Rows).Select(i =>
                (-a[i] + beta * (1 - Math.Exp(refLp[i] - Math.Log(t.P(i)[t.Action(i)])))) / t.Rows).ToArray();
            Close(ScoreGradient(t, w), grad, 1e-10);
        }
    }

    [Fact]
    public void Grpo_clip_region_gives_exactly_zero_gradient()
    {
        // Rows 0 and 1: A > 0 with ρ above 1 + ε, and A < 0 with ρ below 1 − ε (clipped: zero gradient); rows 2 and 3 inside.
        var lp = Tensor.FromArray(new[] { -1.0, -0.7, -2.0, -1.3, -0.4, -0.9, -1.1, -0.2 }, new Shape(4, 2)).RequiresGrad_();
        var old = Tensor.FromArray(new[] { -1.3, -1.0, -1.6, -1.0, -0.45, -0.8, -1.05, -0.3 }, new Shape(4, 2));
        var batch = new PolicyBatch
        {
            LogProbs = lp, OldLogProbs = old, Rewards = Tensor.FromArray(new[] { 1.0, 0.0, 1.0, 0.0 }), Mask = Tensor.Ones(new Shape(4, 2), DType.Float64),
            GroupSize = 2,
        };
        var grad = Autograd.Grad(new Grpo { Beta = 0 }.Loss(batch), lp).ToDoubleArray();
        Assert.Equal([0, 0, 0, 0], grad[..4]);
        // Inside the range the token gradient is −ρ A / (B T) with A = ±1 (a group of one 1 and one 0, std-normalised).
        double[] ratio = [Math.Exp(-0.4 + 0.45), Math.Exp(-0.9 + 0.8), Math.Exp(-1.1 + 1.05), Math.Exp(-0.2 + 0.3)];
        double a = 0.5 / (0.5 + 1e-6);
        Close([-ratio[0] * a / 8, -ratio[1] * a / 8, ratio[2] * a / 8, ratio[3] * a / 8], grad[4..], 1e-12);
    }

    [Fact]
    public void Dr_grpo_uses_centred_advantages_over_a_constant_token_count()
    {
        var r = new Random(8);
        var lp = Tensor.FromArray(Dense.Uniform(r, 12, -2, -0.1), new Shape(4, 3)).RequiresGrad_();
        var mask = new[] { 1.0, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0 };
        var rewards = new[] { 1.0, 0, 0, 0 };
        var batch = new PolicyBatch
        {
            LogProbs = lp, OldLogProbs = lp.Detach(), Rewards = Tensor.FromArray(rewards), Mask = Tensor.FromArray(mask, new Shape(4, 3)), GroupSize = 4,
        };
        var grad = Autograd.Grad(new DrGrpo().Loss(batch), lp).ToDoubleArray();
        var a = GroupCentred(rewards, 4, std: false);
        Close([.. Enumerable.Range(0, 12).Select(k => -a[k / 3] * mask[k] / 12)], grad, 1e-12);
        Assert.Equal("dr-grpo", new DrGrpo().Name);
        Assert.Throws<ArgumentException>(() => new Grpo().Loss(batch));
    }

    [Fact]
    public void Rloo_baseline_is_the_mean_of_the_other_samples()
    {
        var r = new Random(9);
        for (int trial = 0; trial < 10; trial++)
        {
            int g = 2 + r.Next(6), groups = 1 + r.Next(3);
            var rewards = Dense.Uniform(r, g * groups, -1, 2);
            var a = Rloo.Advantages(Tensor.FromArray(rewards), g).ToDoubleArray();
            for (int i = 0; i < rewards.Length; i++)
            {
                int k = i / g;
                double others = Enumerable.Range(k * g, g).Where(j => j != i).Sum(j => rewards[j]) / (g - 1);
                Assert.Equal(rewards[i] - others, a[i], 1e-12);
            }
            var t = MakeTable(r, 2, 4, groups, g);
            var binary = Binary(r, t.Rows);
            var grad = GradZ(t, s => new Rloo().Loss(OnPolicy(s, binary, g)));
            var loo = Rloo.Advantages(Tensor.FromArray(binary), g).ToDoubleArray();
            Close(ScoreGradient(t, Dense.Scale(loo, -1.0 / t.Rows)), grad, 1e-12);
        }
        Assert.Throws<ArgumentException>(() => Rloo.Advantages(Tensor.FromArray(new[] { 1.0, 0 }), 1));
    }

    [Fact]
    public void Reinforce_gradient_is_the_reward_weighted_score_function()
    {
        var r = new Random(10);
        var t = MakeTable(r, 3, 5, 3, 4);
        var rewards = Dense.Uniform(r, t.Rows, -1, 1);
        var grad = GradZ(t, s => new Reinforce().Loss(OnPolicy(s, rewards, 4)));
        Close(ScoreGradient(t, Dense.Scale(rewards, -1.0 / t.Rows)), grad, 1e-12);
    }

    [Fact]
    public void Baseline_objectives_pass_gradcheck_off_policy()
    {
        var r = new Random(11);
        var old = Tensor.FromArray(Dense.Uniform(r, 8, -2, -0.1), new Shape(4, 2));
        var reference = Tensor.FromArray(Dense.Uniform(r, 8, -2, -0.1), new Shape(4, 2));
        var rewards = Tensor.FromArray(new[] { 1.0, 0, 0, 1 });
        var mask = Tensor.FromArray(new[] { 1.0, 1, 1, 0, 1, 1, 0, 1 }, new Shape(4, 2));
        var lp = Tensor.FromArray(Dense.Uniform(r, 8, -2, -0.1), new Shape(4, 2));
        foreach (var o in new IPolicyObjective[] { new Reinforce(), new Rloo(), new Grpo { ClipLow = 0.99, ClipHigh = 10 }, new DrGrpo() })
        {
            var res = GradCheck.Run(x => o.Loss(new PolicyBatch { LogProbs = x[0], OldLogProbs = old, RefLogProbs = reference, Rewards = rewards, Mask = mask, GroupSize = 2 }), [lp]);
            Assert.True(res.Passed, $"{o.Name}: {res}");
        }
    }

    [Fact]
    public void Registry_finds_the_baselines()
    {
        foreach (var name in new[] { "reinforce", "rloo", "grpo", "dr-grpo" })
            Assert.Equal(name, PolicyObjectives.Create(name).Name);
    }
    // ------------------------------------------------------------------ OREAL

    [Fact]
    public void Oreal_best_of_n_positive_distribution_is_the_reference_restricted_to_correct_actions()
    {
        // Enumerate every sequence of N draws from π_ref, keep the first correct draw: its law, given that one was correct,
        // is π_ref(y) 1[correct] / p for every N (the BC target).
        var r = new Random(12);
        for (int trial = 0; trial < 5; trial++)
        {
            int a = 3 + r.Next(3);
            var q = Softmax(Dense.Uniform(r, a, -2, 2));
            var correct = Enumerable.Range(0, a).Select(i => i == 0 || r.Next(2) == 1).ToArray();
            var target = Oreal.BestOfNTarget(q, correct);
            for (int n = 1; n <= 3; n++)
            {
                var kept = new double[a];
                foreach (var draws in Sequences(a, n))
                {
                    double prob = draws.Aggregate(1.0, (acc, y) => acc * q[y]);
                    int first = Array.FindIndex(draws, y => correct[y]);
                    if (first >= 0) kept[draws[first]] += prob;
                }
                double total = kept.Sum();
                Close(target, Dense.Scale(kept, 1 / total), 1e-12);
            }
            Assert.Equal(1, target.Sum(), 1e-12);
        }
        Assert.Throws<ArgumentException>(() => Oreal.BestOfNTarget([0.5, 0.5], [false, false]));
        Assert.Throws<ArgumentException>(() => Oreal.BestOfNTarget([0.5, 0.5], [true]));
    }

    static IEnumerable<int[]> Sequences(int a, int n) =>
        n == 0 ? [[]] : Sequences(a, n - 1).SelectMany(s => Enumerable.Range(0, a).Select(y => s.Append(y).ToArray()));

    [Fact]
    public void Oreal_behaviour_cloning_gradient_vanishes_exactly_at_the_best_of_n_target()
    {
        // The BC half of the loss over the correct actions weighted by the target (batch rows with multiplicities k_y,
        // target = k_y / Σk): at π = target the gradient on z is zero; the incorrect actions have logit −∞ there (−800 in float64).
        int[] counts = [3, 0, 1, 2, 0];
        double total = counts.Sum();
        var z = counts.Select(k => k > 0 ? Math.Log(k / total) : -800).ToArray();
        var policy = new TabularPolicy(Tensor.FromArray(z, new Shape(1, 5)));
        var rows = counts.SelectMany((k, y) => Enumerable.Repeat(y, k)).ToArray();
        var s = policy.Score([.. rows.Select(_ => new[] { 0 })], [.. rows.Select(y => new[] { y })]);
        var loss = new Oreal().Loss(OnPolicy(s, [.. rows.Select(_ => 1.0)], rows.Length));
        Assert.All(Autograd.Grad(loss, policy.Logits).ToDoubleArray(), g => Assert.Equal(0, g, 1e-14));
        // Away from it the gradient is π − target (one group of correct samples: −(1/n₊) Σ (e_y − π)).
        var moved = new TabularPolicy(Tensor.FromArray(new[] { 0.1, -0.3, 0.2, 0.0, 0.4 }, new Shape(1, 5)));
        var sm = moved.Score([.. rows.Select(_ => new[] { 0 })], [.. rows.Select(y => new[] { y })]);
        var g2 = Autograd.Grad(new Oreal().Loss(OnPolicy(sm, [.. rows.Select(_ => 1.0)], rows.Length)), moved.Logits).ToDoubleArray();
        var pm = moved.Probabilities(0);
        Close([.. pm.Select((pi, y) => pi - counts[y] / total)], g2, 1e-12);
    }

    [Fact]
    public void Oreal_reshaped_gradient_matches_its_closed_form()
    {
        var r = new Random(13);
        for (int trial = 0; trial < 10; trial++)
        {
            int g = 2 + r.Next(6), groups = 1 + r.Next(3);
            var t = MakeTable(r, 3, 4, groups, g);
            var rewards = Binary(r, t.Rows);
            double eta = trial == 0 ? 1 : 2 * r.NextDouble();
            var grad = GradZ(t, s => new Oreal { NegativeWeight = eta }.Loss(OnPolicy(s, rewards, g)));
            // d L / d log π(y_i) = −1/(P n₊) for a correct sample, +η/(P n₋) for an incorrect one.
            var w = new double[t.Rows];
            for (int k = 0; k < groups; k++)
            {
                int pos = Enumerable.Range(k * g, g).Count(i => rewards[i] > 0), neg = g - pos;
                for (int i = k * g; i < (k + 1) * g; i++) w[i] = rewards[i] > 0 ? -1.0 / (groups * pos) : eta / (groups * neg);
            }
            Close(ScoreGradient(t, w), grad, 1e-12);
        }
    }

    // ------------------------------------------------------------------ PSR / NSR / W-REINFORCE

    [Fact]
    public void Nsr_gradient_on_the_logits_of_an_incorrect_sample_is_e_minus_p()
    {
        var r = new Random(14);
        for (int trial = 0; trial < 10; trial++)
        {
            var t = MakeTable(r, 1, 2 + r.Next(6), 1, 1);
            var grad = GradZ(t, s => new Nsr().Loss(OnPolicy(s, [0], 1)));
            var p = t.P(0);
            Close([.. p.Select((pi, a) => (a == t.Action(0) ? 1 : 0) - pi)], grad, 1e-12);
            // A correct sample contributes nothing to NSR, and PSR's gradient on it is p − e_y.
            Assert.All(GradZ(t, s => new Nsr().Loss(OnPolicy(s, [1], 1))), v => Assert.Equal(0, v));
            Close([.. p.Select((pi, a) => pi - (a == t.Action(0) ? 1 : 0))], GradZ(t, s => new Psr().Loss(OnPolicy(s, [1], 1))), 1e-12);
            // The population form π(y₋) has the gradient π(y₋)(e_{y₋} − p): the same direction, scaled by π(y₋).
            var pop = GradZ(t, s => s.LogProbs.Exp().Sum());
            Close(Dense.Scale(grad, p[t.Action(0)]), pop, 1e-12);
        }
    }

    [Fact]
    public void W_reinforce_with_lambda_one_is_reinforce_with_signed_rewards_and_lambda_weights_positives()
    {
        var r = new Random(15);
        var t = MakeTable(r, 3, 5, 4, 4);
        var rewards = Binary(r, t.Rows);
        var signed = rewards.Select(x => 2 * x - 1).ToArray();
        Close(GradZ(t, s => new Reinforce().Loss(OnPolicy(s, signed, 4))), GradZ(t, s => new WReinforce { Lambda = 1 }.Loss(OnPolicy(s, rewards, 4))), 1e-12);
        var w = rewards.Select(x => (x > 0 ? -0.1 : 1.0) / t.Rows).ToArray();
        Close(ScoreGradient(t, w), GradZ(t, s => new WReinforce().Loss(OnPolicy(s, rewards, 4))), 1e-12);
        Assert.Equal(0.1, new WReinforce().Lambda);
    }

    // ------------------------------------------------------------------ TOPR

    [Fact]
    public void Topr_on_policy_is_reinforce_and_negatives_get_a_ratio_in_zero_one()
    {
        var r = new Random(16);
        var t = MakeTable(r, 2, 4, 2, 4);
        var rewards = Binary(r, t.Rows);
        const double c = 0.3;
        var shifted = rewards.Select(x => 2 * x - 1 - c).ToArray();
        Close(GradZ(t, s => new Reinforce().Loss(OnPolicy(s, shifted, 4))), GradZ(t, s => new Topr { Baseline = c }.Loss(OnPolicy(s, rewards, 4))), 1e-12);
        // Off-policy: μ differs from π per row; positives keep weight A, negatives get clip(π/μ, 0, 1) A.
        var lp = Tensor.FromArray(new[] { -1.0, -0.5, -2.0, -0.3, -1.2, -0.9, -0.1, -2.5 }, new Shape(4, 2)).RequiresGrad_();
        var old = Tensor.FromArray(new[] { -1.5, -0.5, -1.0, -0.3, -1.0, -1.5, -0.2, -2.5 }, new Shape(4, 2));
        var mask = Tensor.FromArray(new[] { 1.0, 1, 1, 1, 1, 1, 1, 0 }, new Shape(4, 2));
        var batch = new PolicyBatch { LogProbs = lp, OldLogProbs = old, Rewards = Tensor.FromArray(new[] { 1.0, 0, 0, 0 }), Mask = mask, GroupSize = 4 };
        var grad = Autograd.Grad(new Topr().Loss(batch), lp).ToDoubleArray();
        // Row ratios: e^{0.5} (positive, ignored), e^{−1} (negative), e^{0.4} → 1 (negative), e^{0.1} → 1 but row 3 has one token.
        double[] w = [1, -Math.Exp(-1), -1, -1];
        double[] m = [1, 1, 1, 1, 1, 1, 1, 0];
        Close([.. Enumerable.Range(0, 8).Select(k => -w[k / 2] * m[k] / 4)], grad, 1e-12);
    }

    [Fact]
    public void Topr_effective_positive_weight_fraction_is_exact()
    {
        var r = new Random(17);
        for (int trial = 0; trial < 10; trial++)
        {
            int b = 4 + r.Next(12), pos = 1 + r.Next(b - 1);
            double c = -0.9 + 1.8 * r.NextDouble();
            var rewards = Enumerable.Range(0, b).Select(i => i < pos ? 1.0 : 0).ToArray();
            var lp = Tensor.FromArray(Dense.Uniform(r, b, -2, -0.1), new Shape(b, 1)).RequiresGrad_();
            var batch = new PolicyBatch { LogProbs = lp, OldLogProbs = lp.Detach(), Rewards = Tensor.FromArray(rewards), Mask = Tensor.Ones(new Shape(b, 1), DType.Float64), GroupSize = b };
            var g = Autograd.Grad(new Topr { Baseline = c }.Loss(batch), lp).ToDoubleArray();
            double positive = g.Take(pos).Sum(Math.Abs), all = g.Sum(Math.Abs);
            Assert.Equal(Topr.PositiveWeightFraction(pos / (double)b, c), positive / all, 1e-12);
            double p = pos / (double)b;
            Assert.Equal(p * (1 - c) / (p * (1 - c) + (1 - p) * (1 + c)), positive / all, 1e-12);
        }
    }

    [Fact]
    public void Paper_objectives_pass_gradcheck_and_register()
    {
        var r = new Random(18);
        var old = Tensor.FromArray(Dense.Uniform(r, 8, -2, -0.1), new Shape(4, 2));
        var rewards = Tensor.FromArray(new[] { 1.0, 0, 0, 1 });
        var mask = Tensor.FromArray(new[] { 1.0, 1, 1, 0, 1, 1, 0, 1 }, new Shape(4, 2));
        var lp = Tensor.FromArray(Dense.Uniform(r, 8, -2, -0.1), new Shape(4, 2));
        foreach (var name in new[] { "oreal", "psr", "nsr", "w-reinforce", "topr" })
        {
            var o = PolicyObjectives.Create(name);
            Assert.Equal(name, o.Name);
            var res = GradCheck.Run(x => o.Loss(new PolicyBatch { LogProbs = x[0], OldLogProbs = old, Rewards = rewards, Mask = mask, GroupSize = 2 }), [lp]);
            Assert.True(res.Passed, $"{o.Name}: {res}");
        }
        var b = new PolicyBatch { LogProbs = lp, OldLogProbs = old, Rewards = rewards, Mask = mask, GroupSize = 2 };
        Assert.Throws<ArgumentException>(() => new Oreal { NegativeWeight = -1 }.Loss(b));
        Assert.Throws<ArgumentException>(() => new WReinforce { Lambda = double.NaN }.Loss(b));
        Assert.Throws<ArgumentException>(() => new Topr { Baseline = double.PositiveInfinity }.Loss(b));
    }
    // ------------------------------------------------------------------ runner

    [Fact]
    public void Pass_at_k_is_the_unbiased_binomial_estimator()
    {
        static double Choose(int n, int k) => k < 0 || k > n ? 0 : Enumerable.Range(1, k).Aggregate(1.0, (acc, i) => acc * (n - k + i) / i);
        for (int n = 1; n <= 12; n++)
            for (int c = 0; c <= n; c++)
                for (int k = 1; k <= n; k++)
                    Assert.Equal(1 - Choose(n - c, k) / Choose(n, k), RlTrainer.PassAtK(n, c, k), 1e-12);
        Assert.Equal(3 / 8.0, RlTrainer.PassAtK(8, 3, 1), 1e-14);
        Assert.Throws<ArgumentException>(() => RlTrainer.PassAtK(4, 5, 1));
        Assert.Throws<ArgumentException>(() => RlTrainer.PassAtK(4, 1, 5));
    }

    [Fact]
    public void Rl_runs_are_deterministic_and_start_at_zero_kl()
    {
        var o = new RlOptions { SftSteps = 3, Steps = 2, Group = 3, Prompts = 2, PassK = 2, HeldOutPrompts = 2 };
        var start = RlTrainer.Start(o);
        // NSR moves the policy whatever the rewards (a 3-step start rarely answers right, which would leave GRPO at rest).
        var a = RlTrainer.Train(start, new Nsr(), o);
        var b = RlTrainer.Train(start, new Nsr(), o);
        Assert.Equal(a.Steps.Select(s => (s.Reward, s.Kl, s.Entropy)), b.Steps.Select(s => (s.Reward, s.Kl, s.Entropy)));
        Assert.Equal(a.HeldOutPassAt1, b.HeldOutPassAt1);
        // Step 1 samples from the start itself, so its KL to the reference is zero up to float32 rounding (the reference
        // is scored without recording); after one update the policy has moved and the frozen reference has not.
        Assert.InRange(a.Steps[0].Kl, 0, 1e-5);
        Assert.True(a.Steps[1].Kl > 1e-4, $"KL after one update {a.Steps[1].Kl}");
        Assert.All(a.Steps, s => { Assert.InRange(s.Reward, 0, 1); Assert.True(s.PassAtK >= s.PassAt1); Assert.True(s.Entropy > 0); });
        Assert.Throws<ArgumentException>(() => RlTrainer.Train(start, new Grpo(), o with { PassK = 4 }));
    }

    [Fact]
    public void Every_registered_objective_takes_a_trainer_step()
    {
        // The trainer's batch carries logits and prefix-match process rewards, so every objective (outcome, token-level,
        // process-reward) must run on it; a non-finite loss would poison the weights, which step 2's KL would show.
        var o = new RlOptions { SftSteps = 2, Steps = 2, Group = 4, Prompts = 1, PassK = 1, HeldOutPrompts = 1 };
        var start = RlTrainer.Start(o);
        Assert.True(PolicyObjectives.Names.Count >= 9, $"only {PolicyObjectives.Names.Count} objectives registered");
        foreach (var name in PolicyObjectives.Names)
        {
            var run = RlTrainer.Train(start, PolicyObjectives.Create(name), o);
            Assert.Equal(name, run.Objective);
            Assert.Equal(2, run.Steps.Count);
            Assert.All(run.Steps, s => Assert.True(double.IsFinite(s.Kl) && double.IsFinite(s.Entropy) && s.Entropy > 0, $"{name}: KL {s.Kl}, entropy {s.Entropy}"));
        }
    }
}

/// <summary>`kiln rl train` with tiny settings: one JSON object with a run per objective.</summary>
[Collection(nameof(SerialCollection))]
public class RlVerbTests
{
    [Fact]
    public void Rl_train_verb_prints_one_json_object_with_a_run_per_objective()
    {
        var root = new System.CommandLine.RootCommand("kiln");
        root.Subcommands.Add(Kiln.Cli.RlVerb.Build());
        var saved = Console.Out;
        var output = new StringWriter();
        Console.SetOut(output);
        int code;
        try
        {
            code = Kiln.Cli.Cli.Run(root, ["rl", "train", "--objective", "grpo,nsr", "--task", "count", "--steps", "2", "--group", "4", "--prompts", "2", "--k", "2",
                "--sft-steps", "4", "--held-out", "2", "--json"]);
        }
        finally { Console.SetOut(saved); }
        Assert.Equal(0, code);
        var line = Assert.Single(output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries));
        using var doc = System.Text.Json.JsonDocument.Parse(line);
        var r = doc.RootElement;
        Assert.Equal("count", r.GetProperty("task").GetString());
        Assert.InRange(r.GetProperty("start_heldout_pass1").GetDouble(), 0, 1);
        var runs = r.GetProperty("runs").EnumerateArray().ToList();
        Assert.Equal(["grpo", "nsr"], runs.Select(x => x.GetProperty("objective").GetString()));
        Assert.All(runs, x =>
        {
            var steps = x.GetProperty("steps").EnumerateArray().ToList();
            Assert.Equal([1, 2], steps.Select(s => s.GetProperty("step").GetInt32()));
            Assert.All(steps, s => Assert.InRange(s.GetProperty("reward").GetDouble(), 0, 1));
            Assert.InRange(steps[0].GetProperty("kl").GetDouble(), 0, 1e-5);
            Assert.InRange(x.GetProperty("heldout_pass1").GetDouble(), 0, 1);
        });
        Assert.Equal(Kiln.Cli.Cli.BadUsage, Kiln.Cli.Cli.Run(root, ["rl", "train", "--objective", "xx", "--json"]));
        Assert.Equal(Kiln.Cli.Cli.BadUsage, Kiln.Cli.Cli.Run(root, ["rl", "train", "--task", "nope", "--json"]));
        Assert.Equal(Kiln.Cli.Cli.BadUsage, Kiln.Cli.Cli.Run(root, ["rl", "train", "--group", "2", "--k", "3", "--json"]));
    }
}
