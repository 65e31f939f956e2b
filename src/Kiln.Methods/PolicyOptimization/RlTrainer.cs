using System.Diagnostics;
using System.Text;
using Kiln.NN;
using Kiln.NN.Decoder;

namespace Kiln.Methods.PolicyOptimization;

/// <summary>Settings of <see cref="RlTrainer"/>: the task, the SFT start and the RL loop.</summary>
public sealed record RlOptions
{
    /// <summary>The generated task (prompts and exact-match rewards).</summary>
    public GeneratedTask Task { get; init; } = GeneratedTask.Get("count");
    /// <summary>The decoder (byte vocabulary); default <see cref="RlTrainer.SmallConfig"/>.</summary>
    public DecoderConfig Config { get; init; } = RlTrainer.SmallConfig;
    /// <summary>SFT steps from a fresh initialisation on <see cref="GeneratedTask.Corpus"/> (brief, so pass@1 starts well below 1).</summary>
    public int SftSteps { get; init; } = 120;
    /// <summary>RL steps per objective.</summary>
    public int Steps { get; init; } = 60;
    /// <summary>Completions sampled per prompt (G).</summary>
    public int Group { get; init; } = 8;
    /// <summary>Prompts per RL step.</summary>
    public int Prompts { get; init; } = 8;
    /// <summary>k of the pass@k estimate (at most <see cref="Group"/>).</summary>
    public int PassK { get; init; } = 4;
    /// <summary>Held-out prompts for the final pass@1 (each sampled <see cref="Group"/> times).</summary>
    public int HeldOutPrompts { get; init; } = 32;
    /// <summary>AdamW learning rate of the RL steps.</summary>
    public double LearningRate { get; init; } = 5e-4;
    /// <summary>Sampling temperature of the rollouts and the held-out evaluation.</summary>
    public double Temperature { get; init; } = 1;
    /// <summary>Seed of the SFT start, the prompts and the sampling (every objective gets the same).</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Checks every setting.</summary>
    /// <exception cref="ArgumentException">A count is not positive, k exceeds the group, or the rate or temperature is not positive and finite.</exception>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Task); ArgumentNullException.ThrowIfNull(Config);
        foreach (var (v, name) in new[] { (SftSteps, nameof(SftSteps)), (Steps, nameof(Steps)), (Group, nameof(Group)), (Prompts, nameof(Prompts)), (PassK, nameof(PassK)), (HeldOutPrompts, nameof(HeldOutPrompts)) })
            if (v < 1) throw new ArgumentException($"rl: {name} must be positive, got {v}", name);
        if (PassK > Group) throw new ArgumentException($"rl: pass@k needs k ≤ group size, got k = {PassK} > {Group}", nameof(PassK));
        if (!(LearningRate > 0) || !double.IsFinite(LearningRate)) throw new ArgumentException($"rl: the learning rate must be positive and finite, got {LearningRate}", nameof(LearningRate));
        if (!(Temperature > 0) || !double.IsFinite(Temperature)) throw new ArgumentException($"rl: the temperature must be positive and finite, got {Temperature}", nameof(Temperature));
        if (Config.VocabSize < 256) throw new ArgumentException($"rl: the decoder needs the byte vocabulary (≥ 256), got {Config.VocabSize}", nameof(Config));
    }
}

/// <summary>One RL step's statistics over its batch of Prompts × Group samples.</summary>
/// <param name="Step">1-based step.</param>
/// <param name="Reward">Mean reward.</param>
/// <param name="PassAt1">Mean over prompts of c/G.</param>
/// <param name="PassAtK">Mean over prompts of the unbiased pass@k.</param>
/// <param name="Kl">Mean over samples of the sequence KL to the reference (Σ_t k3).</param>
/// <param name="Entropy">Mean next-token entropy (nats) over completion tokens.</param>
/// <param name="Seconds">Wall time of the step (sampling, scoring, update).</param>
public sealed record RlStep(int Step, double Reward, double PassAt1, double PassAtK, double Kl, double Entropy, double Seconds);

/// <summary>One objective's run from the shared start.</summary>
/// <param name="Objective">The objective's name.</param>
/// <param name="Steps">Per-step statistics.</param>
/// <param name="HeldOutPassAt1">pass@1 on the held-out prompts after the last step.</param>
public sealed record RlRun(string Objective, IReadOnlyList<RlStep> Steps, double HeldOutPassAt1);

/// <summary>The shared starting checkpoint (the reference policy).</summary>
/// <param name="Weights">The SFT weights.</param>
/// <param name="HeldOutPassAt1">Its held-out pass@1.</param>
/// <param name="Seconds">Wall time of the SFT.</param>
public sealed record RlStart(IReadOnlyDictionary<string, Tensor> Weights, double HeldOutPassAt1, double Seconds);

/// <summary>An experiment: the start and one run per objective.</summary>
public sealed record RlResult(RlOptions Options, RlStart Start, IReadOnlyList<RlRun> Runs);

/// <summary>
/// The post-training bench's runner: a small byte-level decoder SFT'd briefly and deterministically on a generated task
/// (<see cref="GeneratedTask.Corpus"/> + <see cref="LmTrainer"/>), then RL steps with a policy objective: sample G
/// completions per prompt from the current policy, exact-match rewards, one <see cref="PolicyBatch"/> (on-policy, with
/// the SFT start as the reference, the policy's logits, and <see cref="ProcessReturns.PrefixMatch"/> against the answer and
/// its stop token as the per-token process rewards), the objective's loss, one AdamW step.
/// </summary>
public static class RlTrainer
{
    /// <summary>The default policy: qwen3-style, 2 layers, width 64, 4 query / 2 key-value heads of 16, SwiGLU 128, byte vocabulary, tied embeddings.</summary>
    public static DecoderConfig SmallConfig { get; } = new()
    {
        ModelType = "qwen3", VocabSize = 256, HiddenSize = 64, IntermediateSize = 128, Layers = 2, Heads = 4, KvHeads = 2, HeadDim = 16,
        MaxPositions = 64, TieWordEmbeddings = true, QkNorm = true,
    };

    /// <summary>
    /// The unbiased pass@k of Chen et al. (2021) from <paramref name="n"/> samples with <paramref name="c"/> correct:
    /// 1 − C(n − c, k) / C(n, k), computed as a product to stay finite.
    /// </summary>
    /// <exception cref="ArgumentException">Not 0 ≤ c ≤ n and 1 ≤ k ≤ n.</exception>
    public static double PassAtK(int n, int c, int k)
    {
        if (c < 0 || c > n || k < 1 || k > n) throw new ArgumentException($"pass@k: needs 0 ≤ c ≤ n and 1 ≤ k ≤ n, got n = {n}, c = {c}, k = {k}", nameof(k));
        if (n - c < k) return 1;
        double miss = 1;
        for (int i = n - c + 1; i <= n; i++) miss *= 1 - k / (double)i;
        return 1 - miss;
    }

    static int[] Bytes(string s) => [.. Encoding.UTF8.GetBytes(s).Select(b => (int)b)];
    static string Text(int[] tokens) => Encoding.UTF8.GetString([.. tokens.Select(t => (byte)t)]);

    // One char per byte token (not UTF-8 decoding), so the process rewards line up with the completion's tokens.
    static string Chars(int[] tokens) => new([.. tokens.Select(t => (char)t)]);

    /// <summary>The rows' per-token process rewards as a [B, T] tensor like <paramref name="mask"/>, zero on the padding.</summary>
    static Tensor TokenRewards(List<double[]> rows, Tensor mask)
    {
        int t = mask.Shape[1];
        var values = new double[rows.Count * t];
        for (int i = 0; i < rows.Count; i++) rows[i].CopyTo(values, i * t);
        return Tensor.FromArray(values, new Shape(rows.Count, t)).To(mask.DType).To(mask.Device);
    }

    /// <summary>The SFT start: <see cref="RlOptions.SftSteps"/> LM steps on the task's corpus from a seeded initialisation.</summary>
    public static RlStart Start(RlOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        o.Validate();
        var clock = Stopwatch.StartNew();
        var corpus = o.Task.Corpus(new Random(o.Seed), 4000);
        var weights = LmTrainer.Train(o.Config, corpus, new LmTrainOptions
        {
            Steps = o.SftSteps, Batch = 16, Context = 48, LearningRate = 3e-3, Warmup = Math.Min(20, o.SftSteps), Seed = (ulong)o.Seed,
        });
        double seconds = clock.Elapsed.TotalSeconds;
        return new RlStart(weights, HeldOutPassAt1(new DecoderPolicy(o.Config, weights), o), seconds);
    }

    /// <summary>pass@1 on <see cref="RlOptions.HeldOutPrompts"/> fresh prompts (their own seed), G samples each.</summary>
    public static double HeldOutPassAt1(IPolicy policy, RlOptions o)
    {
        ArgumentNullException.ThrowIfNull(policy); ArgumentNullException.ThrowIfNull(o);
        var prompts = new Random(o.Seed + 7919);
        var sampling = new Random(o.Seed + 104729);
        double total = 0;
        for (int i = 0; i < o.HeldOutPrompts; i++)
        {
            var (prompt, answer) = o.Task.Sample(prompts);
            total += policy.Sample(Bytes(prompt), o.Group, o.Task.MaxAnswerLength + 1, o.Temperature, sampling)
                .Average(c => GeneratedTask.ExactMatch(answer, Text(c)));
        }
        return total / o.HeldOutPrompts;
    }

    /// <summary>Trains a copy of the start with <paramref name="objective"/>; <paramref name="progress"/> gets each finished step.</summary>
    public static RlRun Train(RlStart start, IPolicyObjective objective, RlOptions o, Action<int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(start); ArgumentNullException.ThrowIfNull(objective); ArgumentNullException.ThrowIfNull(o);
        o.Validate();
        var policy = new DecoderPolicy(o.Config, start.Weights);
        var reference = new DecoderPolicy(o.Config, start.Weights);
        var optimizer = new AdamW(policy.Parameters, o.LearningRate, 0.9, 0.99, 1e-8, 0);
        var promptRandom = new Random(o.Seed);
        var sampling = new Random(o.Seed + 1);
        var steps = new List<RlStep>();
        for (int step = 1; step <= o.Steps; step++)
        {
            var clock = Stopwatch.StartNew();
            using var scope = Tensor.Scope();
            var prompts = new List<int[]>(); var completions = new List<int[]>(); var rewards = new List<double>(); var stepRewards = new List<double[]>();
            double passK = 0;
            for (int p = 0; p < o.Prompts; p++)
            {
                var (prompt, answer) = o.Task.Sample(promptRandom);
                var tokens = Bytes(prompt);
                int correct = 0;
                foreach (var c in policy.Sample(tokens, o.Group, o.Task.MaxAnswerLength + 1, o.Temperature, sampling))
                {
                    double r = GeneratedTask.ExactMatch(answer, Text(c));
                    correct += r > 0 ? 1 : 0;
                    prompts.Add(tokens); completions.Add(c); rewards.Add(r);
                    // The stop token ends the target as the SFT corpus teaches it, so stopping on time is a correct step too.
                    stepRewards.Add(ProcessReturns.PrefixMatch(Chars(Bytes(answer + "\n")), Chars(c)));
                }
                passK += PassAtK(o.Group, correct, o.PassK);
            }
            Tensor refLogProbs;
            using (Autograd.NoGrad()) refLogProbs = reference.Score(prompts, completions).LogProbs.Detach();
            var scores = policy.Score(prompts, completions);
            var batch = Policies.OnPolicyBatch(scores, [.. rewards], o.Group, refLogProbs) with { TokenRewards = TokenRewards(stepRewards, scores.Mask) };
            var loss = objective.Loss(batch);
            loss.Backward();
            optimizer.Step();
            optimizer.ZeroGrad();
            double kl, entropy;
            using (Autograd.NoGrad())
            {
                var lp = scores.LogProbs.Detach();
                kl = KlEstimators.Sequence(KlEstimator.K3, lp, refLogProbs, scores.Mask).Mean().Item();
                var logits = scores.Logits.Detach();
                entropy = ((TokenTerms.Entropy(logits) * scores.Mask).Sum() / scores.Mask.Sum()).Item();
            }
            double mean = rewards.Average();
            steps.Add(new RlStep(step, mean, mean, passK / o.Prompts, kl, entropy, clock.Elapsed.TotalSeconds));
            progress?.Invoke(step);
        }
        return new RlRun(objective.Name, steps, HeldOutPassAt1(policy, o));
    }

    /// <summary>The start, then one run per objective from it; <paramref name="progress"/> counts finished RL steps over all runs.</summary>
    public static RlResult Run(RlOptions o, IReadOnlyList<IPolicyObjective> objectives, Action<int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(o); ArgumentNullException.ThrowIfNull(objectives);
        if (objectives.Count == 0) throw new ArgumentException("rl: name at least one objective", nameof(objectives));
        var start = Start(o);
        var runs = new List<RlRun>();
        foreach (var objective in objectives)
        {
            int before = runs.Count * o.Steps;
            runs.Add(Train(start, objective, o, s => progress?.Invoke(before + s)));
        }
        return new RlResult(o, start, runs);
    }
}
