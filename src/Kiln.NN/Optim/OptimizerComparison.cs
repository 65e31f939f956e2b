using System.Diagnostics;
using Kiln.IO;
using Kiln.NN.Decoder;

namespace Kiln.NN.Optim;

/// <summary>
/// One fresh copy of a comparison task's model: its parameter groups (the task's weight decay per group), the
/// minibatch loss of a step (with its graph, for backward; the same batch whenever the same step is asked for, so
/// rules that evaluate a step's batch twice see one batch), and the loss over the task's fixed training and held-out
/// evaluation sets.
/// </summary>
/// <param name="Groups">The parameters, grouped by weight decay.</param>
/// <param name="BatchLoss">The loss of 1-based step s's minibatch.</param>
/// <param name="TrainingLoss">The loss over the training evaluation set (no graph).</param>
/// <param name="HeldOutLoss">The loss over the held-out set (no graph).</param>
public sealed record ComparisonModel(IReadOnlyList<ParamGroup> Groups, Func<int, Tensor> BatchLoss, Func<double> TrainingLoss, Func<double> HeldOutLoss);

/// <summary>
/// A training problem of <see cref="OptimizerComparison"/>: <see cref="Create"/> builds the model from the task's fixed
/// initialisation each time, so every optimizer starts from the same weights and sees the same batches.
/// </summary>
/// <param name="Name">The task's name ("mlp", "lm").</param>
/// <param name="TargetLoss">The training loss whose first crossing is reported as the steps to target.</param>
/// <param name="Create">Builds a fresh model.</param>
public sealed record ComparisonTask(string Name, double TargetLoss, Func<ComparisonModel> Create)
{
    /// <summary>
    /// The digits MLP: 64-<paramref name="hidden"/>-10 with ReLU on the embedded UCI digits (grey levels scaled to
    /// [0, 1]), the fixed 80/20 split of <see cref="Datasets.TrainTestSplit"/> (seed 2026), cross-entropy, minibatches of
    /// <paramref name="batch"/> drawn epoch by epoch from a seeded permutation, no weight decay. The training loss is
    /// over all 1437 training digits, the held-out loss over the 360 others; the target is a training loss of 0.1.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">hidden or batch below 1.</exception>
    public static ComparisonTask DigitsMlp(int hidden = 64, int batch = 64, ulong seed = 1, Device? device = null)
    {
        if (hidden < 1) throw new ArgumentOutOfRangeException(nameof(hidden), hidden, "optim compare: hidden must be at least 1");
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "optim compare: batch must be at least 1");
        var dev = device ?? Device.Cpu;
        var (pixels, labels) = Datasets.Digits();
        var ((xTrain, yTrain), (xTest, yTest)) = Datasets.TrainTestSplit((pixels / 16.0).To(dev), labels.To(dev), testFraction: 0.2, seed: 2026);
        int n = yTrain.Numel, perEpoch = (n + batch - 1) / batch;
        // Epoch orders as managed arrays: the index tensor of a step is made inside the step's scope.
        var orders = new Dictionary<int, long[]>();
        long[] Order(int epoch)
        {
            lock (orders)
            {
                if (!orders.TryGetValue(epoch, out var o))
                {
                    o = [.. Enumerable.Range(0, n).Select(i => (long)i)];
                    new Random(unchecked((int)seed * 1_000_003 + epoch)).Shuffle(o);
                    orders[epoch] = o;
                }
                return o;
            }
        }
        return new ComparisonTask("mlp", 0.1, () =>
        {
            var model = new MLP([64, hidden, 10], generator: new Generator(seed), device: dev);
            double Eval(Tensor x, Tensor y) { using (Autograd.NoGrad()) return Losses.CrossEntropy(model.Forward(x), y).Item(); }
            return new ComparisonModel([new ParamGroup(model.Parameters(), weightDecay: 0)],
                step =>
                {
                    int e = (step - 1) / perEpoch, s = (step - 1) % perEpoch;
                    int rows = Math.Min(batch, n - s * batch);
                    var idx = Tensor.FromArray(Order(e).AsSpan(s * batch, rows).ToArray(), new Shape(rows)).To(dev);
                    return Losses.CrossEntropy(model.Forward(xTrain.IndexSelect(0, idx)), yTrain.IndexSelect(0, idx));
                },
                () => Eval(xTrain, yTrain), () => Eval(xTest, yTest));
        });
    }

    /// <summary>
    /// A decoder trained as <see cref="LmTrainer"/> does: weights from <see cref="DecoderWeights.Init"/> (seed
    /// <see cref="LmTrainOptions.Seed"/>), next-token cross-entropy on <see cref="LmTrainOptions.Batch"/> random windows
    /// of <see cref="LmTrainOptions.Context"/> tokens per step, decoupled decay <see cref="LmTrainOptions.WeightDecay"/>
    /// on matrices and none on norm gains. Training and held-out losses are over <paramref name="evalSequences"/> fixed
    /// windows of each stream; the target is <paramref name="targetLoss"/> nats per token.
    /// </summary>
    /// <exception cref="ArgumentException">A stream shorter than one window, or fewer than one evaluation sequence.</exception>
    public static ComparisonTask Decoder(DecoderConfig config, int[] trainTokens, int[] heldOutTokens, LmTrainOptions options, int evalSequences = 8, double targetLoss = 2.5)
    {
        ArgumentNullException.ThrowIfNull(config); ArgumentNullException.ThrowIfNull(trainTokens); ArgumentNullException.ThrowIfNull(heldOutTokens); ArgumentNullException.ThrowIfNull(options);
        int ctx = options.Context;
        foreach (var (stream, name) in new[] { (trainTokens, nameof(trainTokens)), (heldOutTokens, nameof(heldOutTokens)) })
            if (stream.Length < ctx + 2) throw new ArgumentException($"optim compare: {name} has {stream.Length} tokens, fewer than one window of {ctx + 1}", name);
        if (evalSequences < 1) throw new ArgumentException($"optim compare: evalSequences must be at least 1, got {evalSequences}", nameof(evalSequences));
        (Tensor Input, Tensor Target) Windows(int[] tokens, int rows, Random rng)
        {
            var input = new long[rows * ctx];
            var target = new long[rows * ctx];
            for (int b = 0; b < rows; b++)
            {
                int start = rng.Next(tokens.Length - ctx - 1);
                for (int t = 0; t < ctx; t++) { input[b * ctx + t] = tokens[start + t]; target[b * ctx + t] = tokens[start + t + 1]; }
            }
            return (Tensor.FromArray(input, new Shape(rows, ctx)).To(options.Device), Tensor.FromArray(target, new Shape(rows, ctx, 1)).To(options.Device));
        }
        int seed = (int)(options.Seed & 0x7fffffff);
        (Tensor, Tensor) trainEval, heldEval;
        trainEval = Windows(trainTokens, evalSequences, new Random(seed + 1));
        heldEval = Windows(heldOutTokens, evalSequences, new Random(seed + 2));
        return new ComparisonTask("lm", targetLoss, () =>
        {
            var parameters = DecoderWeights.Init(config, new Generator(options.Seed)).ToDictionary(kv => kv.Key, kv => new Parameter(kv.Value.To(options.Device)));
            var model = new DecoderModel(config, parameters.ToDictionary(kv => kv.Key, kv => kv.Value.Value), trainable: true);
            Tensor Loss((Tensor Input, Tensor Target) w) => -model.Forward(w.Input).LogSoftmax(-1).Gather(2, w.Target).Mean();
            double Eval((Tensor, Tensor) w) { using (Autograd.NoGrad()) return Loss(w).Item(); }
            var matrices = parameters.Values.Where(p => p.Value.Rank == 2).ToArray();
            var gains = parameters.Values.Where(p => p.Value.Rank != 2).ToArray();
            ParamGroup[] groups = gains.Length == 0
                ? [new ParamGroup(matrices, weightDecay: options.WeightDecay)]
                : [new ParamGroup(matrices, weightDecay: options.WeightDecay), new ParamGroup(gains, weightDecay: 0)];
            return new ComparisonModel(groups,
                step => Loss(Windows(trainTokens, options.Batch, new Random(seed * 7919 + step))),
                () => Eval(trainEval), () => Eval(heldEval));
        });
    }
}

/// <summary>
/// An optimizer of the comparison: its name, the learning rates of its sweep and how it is built over parameter
/// groups at one rate. For <see cref="PreconditionedSPS"/>, which has no learning rate, the swept value is the cap
/// on its Polyak step size (SPS_max).
/// </summary>
/// <param name="Name">The name on the command line and in the results.</param>
/// <param name="LearningRates">The rates of the sweep.</param>
/// <param name="Create">Builds the optimizer over the task's groups at one rate.</param>
public sealed record OptimizerCandidate(string Name, IReadOnlyList<double> LearningRates, Func<IReadOnlyList<ParamGroup>, double, Optimizer> Create);

/// <summary>One learning rate of a sweep: its final training and held-out losses (NaN when the run diverged).</summary>
/// <param name="LearningRate">The rate.</param>
/// <param name="FinalLoss">The training loss after the last step.</param>
/// <param name="HeldOutLoss">The held-out loss after the last step.</param>
/// <param name="Failure">Why the run stopped when the optimizer threw, else null.</param>
public sealed record SweepPoint(double LearningRate, double FinalLoss, double HeldOutLoss, string? Failure = null);

/// <summary>One optimizer's result: the run at its best rate (lowest final training loss) and the whole sweep.</summary>
/// <param name="Optimizer">The candidate's name.</param>
/// <param name="LearningRate">The best rate.</param>
/// <param name="FinalLoss">Training loss after the last step at that rate (NaN: every rate diverged).</param>
/// <param name="HeldOutLoss">Held-out loss after the last step at that rate.</param>
/// <param name="StepsToTarget">The first evaluated step at which the training loss was at most the task's target, or null.</param>
/// <param name="SecondsPerStep">Wall time per step (minibatch forward, backward and update; evaluations excluded) at that rate.</param>
/// <param name="StateBytesPerParameter">Bytes of optimizer state (every per-parameter buffer of the state dict, masters and counters excluded) per model parameter.</param>
/// <param name="Curve">(step, training loss) at the evaluated steps, step 0 first.</param>
/// <param name="Sweep">Every rate of the sweep.</param>
public sealed record ComparisonResult(string Optimizer, double LearningRate, double FinalLoss, double HeldOutLoss, int? StepsToTarget, double SecondsPerStep,
    double StateBytesPerParameter, IReadOnlyList<(int Step, double Loss)> Curve, IReadOnlyList<SweepPoint> Sweep)
{
    /// <summary>Why the run stopped early when the optimizer threw (its losses are then NaN), else null.</summary>
    public string? Failure { get; init; }
}

/// <summary>
/// Trains one task's model from the same initialisation with each optimizer, at each rate of its sweep, for the same
/// steps and batches, under one schedule (linear warmup over the first tenth of the steps, then cosine decay to a tenth
/// of the rate: <see cref="LmTrainer"/>'s recipe), and reports per optimizer the run of its best rate (the issue 21
/// experiment, <c>kiln optim compare</c>).
/// </summary>
public static class OptimizerComparison
{
    static IReadOnlyList<double> Around(double center) => [center / 3, center, center * 3];

    /// <summary>
    /// Every optimizer of Kiln that trains a network, torch.optim style, at its usual hyperparameters, with a sweep of
    /// three rates (c/3, c, 3c) around a centre c suited to each (set from two earlier digits-MLP sweeps, 9 and 3 times
    /// lower, whose best rates sat at their tops): SGD (momentum 0.9), Adam, AdamW, RAdam, C-AdamW, Lion, MARS (AdamW
    /// and Lion kinds, approximate), the induced-metric optimiser (Adam base, ξ = 1), Shampoo (roots every 10 steps),
    /// KL-Shampoo, SOAP, 4-bit Shampoo and the Polyak step (identity and Adam preconditioners, c = 1/2, f* = 0).
    /// Weight decay comes from the task's groups.
    /// </summary>
    public static IReadOnlyList<OptimizerCandidate> Candidates { get; } =
    [
        new("adamw", Around(3e-2), (g, lr) => new AdamW(g, lr)),
        new("adam", Around(3e-2), (g, lr) => new Adam(g, lr)),
        new("sgd", Around(0.3), (g, lr) => new SGD(g, lr, momentum: 0.9)),
        new("radam", Around(3e-2), (g, lr) => new RAdam(g, lr, decoupledWeightDecay: true)),
        new("cautious-adamw", Around(3e-2), (g, lr) => new CautiousAdamW(g, lr)),
        new("lion", Around(1e-2), (g, lr) => new Lion(g, lr)),
        new("mars", Around(3e-2), (g, lr) => new MARS(g, lr)),
        new("mars-lion", Around(1e-2), (g, lr) => new MARS(g, lr, kind: MarsKind.Lion)),
        new("induced-metric", Around(0.1), (g, lr) => new InducedMetric(g, lr)),
        new("shampoo", Around(0.3), (g, lr) => new Shampoo(g, lr, updateFrequency: 10)),
        new("kl-shampoo", Around(3e-2), (g, lr) => new KLShampoo(g, lr)),
        new("soap", Around(3e-2), (g, lr) => new SOAP(g, lr)),
        new("four-bit-shampoo", Around(0.1), (g, lr) => new FourBitShampoo(g, lr)),
        new("sps", Around(1.0), (g, lr) => new PreconditionedSPS(g.SelectMany(x => x.Parameters), maxStepSize: lr)),
        new("sps-adam", Around(3e-2), (g, lr) => new PreconditionedSPS(g.SelectMany(x => x.Parameters), preconditioner: PolyakPreconditioner.Adam, maxStepSize: lr)),
    ];

    /// <summary>
    /// Runs each candidate's sweep on <paramref name="task"/> for <paramref name="steps"/> steps, evaluating the
    /// training loss every <paramref name="evalEvery"/> steps (and at the last); a run whose loss turns non-finite stops
    /// and counts as diverged. <paramref name="progress"/> gets the number of finished runs.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">steps or evalEvery below 1.</exception>
    /// <exception cref="ArgumentException">No candidates, or a candidate without rates.</exception>
    public static IReadOnlyList<ComparisonResult> Run(ComparisonTask task, IReadOnlyList<OptimizerCandidate> candidates, int steps, int evalEvery = 10, Action<int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(task); ArgumentNullException.ThrowIfNull(candidates);
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "optim compare: steps must be at least 1");
        if (evalEvery < 1) throw new ArgumentOutOfRangeException(nameof(evalEvery), evalEvery, "optim compare: evalEvery must be at least 1");
        if (candidates.Count == 0) throw new ArgumentException("optim compare: no optimizers to compare", nameof(candidates));
        foreach (var c in candidates)
            if (c.LearningRates.Count == 0) throw new ArgumentException($"optim compare: optimizer '{c.Name}' has no learning rates to sweep", nameof(candidates));
        var results = new List<ComparisonResult>();
        int done = 0;
        foreach (var c in candidates)
        {
            var runs = new List<ComparisonResult>();
            foreach (double lr in c.LearningRates)
            {
                runs.Add(Train(task, c, lr, steps, evalEvery));
                progress?.Invoke(++done);
            }
            // Best = lowest final training loss; a diverged run (NaN) ranks last.
            var best = runs.OrderBy(r => double.IsNaN(r.FinalLoss) ? double.PositiveInfinity : r.FinalLoss).First();
            results.Add(best with { Sweep = [.. runs.Select(r => new SweepPoint(r.LearningRate, r.FinalLoss, r.HeldOutLoss, r.Failure))] });
        }
        return results;
    }

    static ComparisonResult Train(ComparisonTask task, OptimizerCandidate candidate, double lr, int steps, int evalEvery)
    {
        using var run = Tensor.Scope();   // frees the run's model and optimizer state
        var model = task.Create();
        var opt = candidate.Create(model.Groups, lr);
        if (opt.LearningRate > 0) opt.Schedule = LrSchedule.Cosine(lr, steps, minLr: lr / 10, warmup: steps / 10);
        var curve = new List<(int, double)> { (0, model.TrainingLoss()) };
        int? reached = curve[0].Item2 <= task.TargetLoss ? 0 : null;
        var clock = new Stopwatch();
        bool diverged = false;
        string? failure = null;
        for (int step = 1; step <= steps && !diverged; step++)
        {
            using var scope = Tensor.Scope();
            clock.Start();
            double loss;
            try
            {
                loss = opt.Step(() =>
                {
                    opt.ZeroGrad();
                    var l = model.BatchLoss(step);
                    l.Backward();
                    return l.Item();
                });
            }
            catch (ArgumentException e)
            {
                // A rule that factorises its statistics (Shampoo's inverse roots) can reject them (overflowed
                // gradients, eps lost to rounding): the run ends there as failed, with the reason.
                failure = $"step {step}: {e.Message}" + (AllFinite(opt.Parameters) ? "" : " (non-finite parameters or gradients)");
                loss = double.NaN;
            }
            clock.Stop();
            diverged = !double.IsFinite(loss);
            if (!diverged && (step % evalEvery == 0 || step == steps))
            {
                double train = model.TrainingLoss();
                curve.Add((step, train));
                diverged = !double.IsFinite(train);
                if (reached is null && train <= task.TargetLoss) reached = step;
            }
        }
        int ran = Math.Max(1, opt.StepCount);
        double final = diverged ? double.NaN : curve[^1].Item2;
        double held = diverged ? double.NaN : model.HeldOutLoss();
        return new ComparisonResult(candidate.Name, lr, final, held, diverged ? null : reached, clock.Elapsed.TotalSeconds / ran, StateBytesPerParameter(opt), curve, []) { Failure = failure };
    }

    static bool AllFinite(IEnumerable<Parameter> parameters)
    {
        using (Autograd.NoGrad())
            foreach (var p in parameters)
                foreach (var t in p.Grad is { } g ? new[] { p.Value, g } : [p.Value])
                    if (!double.IsFinite(t.Abs().Sum().Item())) return false;
        return true;
    }

    /// <summary>
    /// Bytes of <paramref name="optimizer"/>'s per-parameter state buffers (the "state.{i}.{buffer}" entries of its
    /// state dict; step counters and half-precision master copies excluded) per parameter element.
    /// </summary>
    public static double StateBytesPerParameter(Optimizer optimizer)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        long bytes = 0;
        foreach (var (key, t) in optimizer.StateDict())
            if (key.StartsWith("state.", StringComparison.Ordinal) && !key.EndsWith(".step", StringComparison.Ordinal) && !key.EndsWith(".master", StringComparison.Ordinal))
                bytes += (long)t.Numel * t.DType.Size();
        long elements = optimizer.Parameters.Sum(p => (long)p.Numel);
        return elements == 0 ? 0 : bytes / (double)elements;
    }
}
