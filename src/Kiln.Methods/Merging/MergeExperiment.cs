using System.Diagnostics;
using Kiln.Methods.PolicyOptimization;
using Kiln.NN.Decoder;

namespace Kiln.Methods.Merging;

/// <summary>Settings of <see cref="MergeExperiment.Run"/>; the defaults are the README's run.</summary>
public sealed record MergeOptions
{
    /// <summary>The generated tasks (names of <see cref="GeneratedTask.All"/>), one fine-tune each.</summary>
    public IReadOnlyList<string> Tasks { get; init; } = ["add", "reverse", "sort", "count"];
    /// <summary>The decoder: llama-style, byte vocabulary (128, the tasks are ASCII), width 64, 2 layers of 4 heads of 16, MLP 192, tied embeddings.</summary>
    public DecoderConfig Config { get; init; } = new()
    {
        ModelType = "llama", VocabSize = 128, HiddenSize = 64, IntermediateSize = 192, Layers = 2, Heads = 4, KvHeads = 4, HeadDim = 16,
        MaxPositions = 128, TieWordEmbeddings = true,
    };
    /// <summary>Steps of the base model on the mix of all tasks.</summary>
    public int BaseSteps { get; init; } = 800;
    /// <summary>Steps of each single-task fine-tune from the base (also ATM's total per-task budget).</summary>
    public int FineTuneSteps { get; init; } = 100;
    /// <summary>Sequences per step.</summary>
    public int Batch { get; init; } = 16;
    /// <summary>Tokens per sequence.</summary>
    public int Context { get; init; } = 48;
    /// <summary>Peak learning rate of the base training.</summary>
    public double BaseLearningRate { get; init; } = 3e-3;
    /// <summary>Peak learning rate of the fine-tunes.</summary>
    public double FineTuneLearningRate { get; init; } = 5e-4;
    /// <summary>Training lines (prompt + answer) per task.</summary>
    public int TrainLines { get; init; } = 3000;
    /// <summary>Held-out prompts per task (prompts seen in training are excluded).</summary>
    public int EvalPrompts { get; init; } = 200;
    /// <summary>Scales lambda of task arithmetic, theta_base + lambda * sum_t tau_t.</summary>
    public IReadOnlyList<double> Scales { get; init; } = [0.3, 0.5, 1.0];
    /// <summary>aTLAS: few-shot lines per task (held out from training and evaluation) for learning the per-tensor coefficients.</summary>
    public int AtlasShots { get; init; } = 16;
    /// <summary>aTLAS: Adam steps.</summary>
    public int AtlasSteps { get; init; } = 30;
    /// <summary>aTLAS: Adam learning rate of the coefficients.</summary>
    public double AtlasLearningRate { get; init; } = 0.05;
    /// <summary>ATM rounds: each fine-tunes every task for FineTuneSteps / rounds steps from the current merge, then averages.</summary>
    public int AtmRounds { get; init; } = 3;
    /// <summary>Seed of data, initialization and batch order.</summary>
    public int Seed { get; init; } = 1;
}

/// <summary>One model's exact-match accuracy on each task's held-out prompts.</summary>
/// <param name="Name">base, ft-TASK, ta-LAMBDA, average, negmerge, atlas, atm.</param>
/// <param name="Accuracies">Per task, in <see cref="MergeOptions.Tasks"/> order.</param>
public sealed record MergeRow(string Name, IReadOnlyList<double> Accuracies)
{
    /// <summary>The mean over tasks.</summary>
    public double Mean => Accuracies.Average();
}

/// <summary>The result of <see cref="MergeExperiment.Run"/>.</summary>
public sealed record MergeResult(MergeOptions Options, IReadOnlyList<MergeRow> Rows, double Seconds);

/// <summary>
/// The merging experiment (<c>kiln merge</c>): a small decoder trained briefly on a mix of the generated tasks is the base;
/// a fine-tune per task from it gives task vectors; the fine-tunes are merged by each rule (task arithmetic at several
/// scales, plain averaging, NegMerge sign consensus, aTLAS with learned per-tensor coefficients, ATM) and every model is
/// scored by greedy exact match on held-out prompts of every task.
/// </summary>
public static class MergeExperiment
{
    /// <summary>Runs the experiment; <paramref name="progress"/> gets (models done, models in all, name).</summary>
    /// <exception cref="ArgumentException">An option is out of range or a task is unknown.</exception>
    public static MergeResult Run(MergeOptions o, Action<int, int, string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(o);
        Validate(o);
        var clock = Stopwatch.StartNew();
        var tasks = o.Tasks.Select(GeneratedTask.Get).ToArray();
        int total = 1 + tasks.Length + o.Scales.Count + 4, done = 0;
        void Tick(string name) => progress?.Invoke(++done, total, name);

        // Training lines: the mix for the base, one stream per task for the fine-tunes; held-out prompts avoid all of them.
        var seen = new HashSet<string>();
        var perTask = tasks.Select((t, i) =>
        {
            var rng = new Random(o.Seed * 1000 + i);
            var lines = Enumerable.Range(0, o.TrainLines).Select(_ => t.Sample(rng)).ToList();
            foreach (var (p, _) in lines) seen.Add(p);
            return lines;
        }).ToArray();
        var mix = new List<(string, string)>();
        for (int j = 0; j < o.TrainLines; j++) foreach (var lines in perTask) mix.Add(lines[j]);
        var fewShot = tasks.Select((t, i) => Lines(t, new Random(o.Seed * 1000 + 500 + i), o.AtlasShots, seen)).ToArray();
        foreach (var shots in fewShot) foreach (var (p, _) in shots) seen.Add(p);
        var heldOut = tasks.Select((t, i) => Lines(t, new Random(o.Seed * 1000 + 900 + i), o.EvalPrompts, seen)).ToArray();

        var rows = new List<MergeRow>();
        MergeRow Score(string name, IReadOnlyDictionary<string, Tensor> weights)
        {
            var model = new DecoderModel(o.Config, weights);
            var row = new MergeRow(name, [.. heldOut.Select(h => Accuracy(model, h))]);
            rows.Add(row); Tick(name);
            return row;
        }

        var train = new LmTrainOptions { Steps = o.BaseSteps, Batch = o.Batch, Context = o.Context, LearningRate = o.BaseLearningRate, Warmup = Math.Max(1, o.BaseSteps / 10), Seed = (ulong)o.Seed };
        var theta0 = LmTrainer.Train(o.Config, Tokens(mix), train);
        Score("base", theta0);

        Dictionary<string, Tensor> FineTune(IReadOnlyDictionary<string, Tensor> from, int i, int steps, int round) => LmTrainer.Train(o.Config, Tokens(perTask[i]), train with
        {
            Steps = steps, LearningRate = o.FineTuneLearningRate, Warmup = Math.Max(1, steps / 10), Seed = (ulong)(o.Seed * 100 + 10 * round + i + 1), InitialWeights = from,
        });
        var vectors = new List<IReadOnlyDictionary<string, Tensor>>();
        for (int i = 0; i < tasks.Length; i++)
        {
            var ft = FineTune(theta0, i, o.FineTuneSteps, 0);
            Score("ft-" + tasks[i].Name, ft);
            vectors.Add(TaskArithmetic.TaskVector(ft, theta0));
        }
        foreach (var s in o.Scales) Score(FormattableString.Invariant($"ta-{s:0.##}"), TaskArithmetic.Apply(theta0, vectors, s));
        Score("average", TaskArithmetic.Apply(theta0, vectors, 1.0 / tasks.Length));
        Score("negmerge", ParameterTree.Add(theta0, NegMerge.Merge(vectors)));

        var atlas = new AnisotropicScaling(theta0, vectors, initial: 1.0 / tasks.Length);
        var shotRows = Rows(Tokens([.. fewShot.SelectMany(s => s)]), o.Context);
        Score("atlas", atlas.Fit(w => LmLoss(o.Config, w, shotRows), o.AtlasSteps, o.AtlasLearningRate));

        int perRound = Math.Max(1, o.FineTuneSteps / o.AtmRounds), round = 0;
        var atm = Atm.Run(theta0, [.. Enumerable.Range(0, tasks.Length).Select(i => (Func<IReadOnlyDictionary<string, Tensor>, IReadOnlyDictionary<string, Tensor>>)(w => FineTune(w, i, perRound, round + 1)))],
            1.0 / tasks.Length, o.AtmRounds, (r, _) => round = r);
        Score("atm", atm);
        return new MergeResult(o, rows, clock.Elapsed.TotalSeconds);
    }

    static void Validate(MergeOptions o)
    {
        if (o.Tasks.Count == 0) throw new ArgumentException("merge: no tasks", nameof(o));
        if (o.Tasks.Distinct(StringComparer.OrdinalIgnoreCase).Count() != o.Tasks.Count) throw new ArgumentException($"merge: a task is listed twice in [{string.Join(", ", o.Tasks)}]", nameof(o));
        foreach (var (v, name) in new[] { (o.BaseSteps, "BaseSteps"), (o.FineTuneSteps, "FineTuneSteps"), (o.Batch, "Batch"), (o.Context, "Context"), (o.TrainLines, "TrainLines"), (o.EvalPrompts, "EvalPrompts"), (o.AtlasShots, "AtlasShots"), (o.AtmRounds, "AtmRounds") })
            if (v <= 0) throw new ArgumentException($"merge: {name} must be positive, got {v}", nameof(o));
        if (o.AtlasSteps < 0) throw new ArgumentException($"merge: AtlasSteps must be non-negative, got {o.AtlasSteps}", nameof(o));
        foreach (var (v, name) in new[] { (o.BaseLearningRate, "BaseLearningRate"), (o.FineTuneLearningRate, "FineTuneLearningRate"), (o.AtlasLearningRate, "AtlasLearningRate") })
            if (!(v > 0 && double.IsFinite(v))) throw new ArgumentException($"merge: {name} must be positive and finite, got {v}", nameof(o));
        if (o.Scales.Any(s => !double.IsFinite(s))) throw new ArgumentException("merge: the scales must be finite", nameof(o));
    }

    // n fresh (prompt, answer) pairs whose prompts are not in `seen` (gives up after 50 n draws: small task spaces).
    static List<(string Prompt, string Answer)> Lines(GeneratedTask task, Random rng, int n, HashSet<string> seen)
    {
        var lines = new List<(string, string)>();
        var used = new HashSet<string>();
        for (int tries = 0; lines.Count < n && tries < 50 * n; tries++)
        {
            var (p, a) = task.Sample(rng);
            if (!seen.Contains(p) && used.Add(p)) lines.Add((p, a));
        }
        if (lines.Count == 0) throw new ArgumentException($"merge: task '{task.Name}' has no prompts left outside the training lines; use fewer training lines", nameof(task));
        return lines;
    }

    static int[] Tokens(IEnumerable<(string Prompt, string Answer)> lines) =>
        [.. System.Text.Encoding.ASCII.GetBytes(string.Concat(lines.Select(l => l.Prompt + l.Answer + "\n"))).Select(b => (int)b)];

    // The stream cut into whole rows of context + 1 tokens (inputs and shifted targets).
    static (Tensor Input, Tensor Target) Rows(int[] tokens, int context)
    {
        int rows = Math.Max(1, (tokens.Length - 1) / context);
        context = Math.Min(context, tokens.Length - 1);
        var input = new long[rows * context]; var target = new long[rows * context];
        for (int r = 0; r < rows; r++)
            for (int t = 0; t < context; t++) { input[r * context + t] = tokens[r * context + t]; target[r * context + t] = tokens[r * context + t + 1]; }
        return (Tensor.FromArray(input, new Shape(rows, context)), Tensor.FromArray(target, new Shape(rows, context, 1)));
    }

    static Tensor LmLoss(DecoderConfig config, IReadOnlyDictionary<string, Tensor> weights, (Tensor Input, Tensor Target) batch) =>
        -new DecoderModel(config, weights, trainable: true).Forward(batch.Input).LogSoftmax(-1).Gather(2, batch.Target).Mean();

    /// <summary>
    /// Greedy exact-match accuracy of <paramref name="model"/> on (prompt, answer) pairs, by one teacher-forced forward of
    /// prompt + answer + newline: greedy decoding returns the answer and then the newline exactly when the argmax at every
    /// answer position (given the true prefix) is the next true token, so this equals decoding with
    /// <see cref="DecoderModel.Generate"/> (ties aside) at one forward per sample, batched by length.
    /// </summary>
    public static double Accuracy(DecoderModel model, IReadOnlyList<(string Prompt, string Answer)> samples)
    {
        ArgumentNullException.ThrowIfNull(model); ArgumentNullException.ThrowIfNull(samples);
        if (samples.Count == 0) throw new ArgumentException("merge accuracy: no samples", nameof(samples));
        return Correct(model, samples).Count(c => c) / (double)samples.Count;
    }

    /// <summary>Per sample, whether greedy decoding from the prompt gives exactly the answer and a newline (see <see cref="Accuracy"/>).</summary>
    public static bool[] Correct(DecoderModel model, IReadOnlyList<(string Prompt, string Answer)> samples)
    {
        ArgumentNullException.ThrowIfNull(model); ArgumentNullException.ThrowIfNull(samples);
        var correct = new bool[samples.Count];
        using var _ = Autograd.NoGrad();
        foreach (var group in samples.Select((s, i) => (Ids: System.Text.Encoding.ASCII.GetBytes(s.Prompt + s.Answer + "\n"), s.Prompt.Length, i)).GroupBy(x => (x.Ids.Length, x.Length)))
        {
            var items = group.ToArray();
            int len = group.Key.Item1, start = group.Key.Item2;
            using var scope = Tensor.Scope();
            var ids = Tensor.FromArray(items.SelectMany(x => x.Ids.Select(b => (long)b)).ToArray(), new Shape(items.Length, len));
            // Predictions at positions start-1 .. len-2 must equal tokens start .. len-1.
            var pred = model.Forward(ids).Narrow(1, start - 1, len - start).ArgMax(-1).ToDoubleArray();
            for (int r = 0; r < items.Length; r++)
            {
                bool ok = true;
                for (int t = 0; t < len - start && ok; t++) ok = (int)pred[r * (len - start) + t] == items[r].Ids[start + t];
                correct[items[r].i] = ok;
            }
        }
        return correct;
    }
}
