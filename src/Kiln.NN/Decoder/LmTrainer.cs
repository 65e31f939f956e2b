namespace Kiln.NN.Decoder;

/// <summary>Settings of <see cref="LmTrainer.Train"/>.</summary>
public sealed record LmTrainOptions
{
    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 600;
    /// <summary>Sequences per step.</summary>
    public int Batch { get; init; } = 16;
    /// <summary>Tokens per sequence.</summary>
    public int Context { get; init; } = 128;
    /// <summary>Peak learning rate (linear warmup, then cosine decay to a tenth).</summary>
    public double LearningRate { get; init; } = 3e-3;
    /// <summary>Warmup steps.</summary>
    public int Warmup { get; init; } = 40;
    /// <summary>Decoupled weight decay of matrices (norm gains are not decayed).</summary>
    public double WeightDecay { get; init; } = 0.1;
    /// <summary>The device to train on (default the CPU); the weights are initialized on the host, then moved, so every device starts alike.</summary>
    public Device Device { get; init; } = Device.Cpu;
    /// <summary>Seed of initialization and batch sampling.</summary>
    public ulong Seed { get; init; } = 1;
    /// <summary>
    /// Weights to fine-tune (Hugging Face names, as <see cref="LmTrainer.Train"/> returns them) instead of a fresh
    /// initialization; they are copied, never modified. Null trains from scratch.
    /// </summary>
    public IReadOnlyDictionary<string, Tensor>? InitialWeights { get; init; }
    /// <summary>
    /// Data-parallel training: given the parameters (in checkpoint order), returns the replica that averages their
    /// gradients. Every replica draws the same batches and computes the loss of its contiguous share of each batch's
    /// sequences (<see cref="Batch"/> must divide by the replica count), so the averaged gradient is the full batch's. Null
    /// trains in this process alone.
    /// </summary>
    public Func<IReadOnlyList<Parameter>, IDataParallel>? DataParallel { get; init; }
}

/// <summary>
/// Trains a <see cref="DecoderModel"/> from scratch on a token stream by next-token cross-entropy, with
/// <see cref="AdamW"/> (beta 0.9/0.95, eps 1e-8, <see cref="Adam.Textbook"/> form). Deterministic for a given seed.
/// </summary>
public static class LmTrainer
{
    const double Beta1 = 0.9, Beta2 = 0.95, Eps = 1e-8;

    /// <summary>
    /// Trains weights for <paramref name="config"/> on <paramref name="tokens"/> (from scratch, or from
    /// <see cref="LmTrainOptions.InitialWeights"/>); <paramref name="progress"/> gets
    /// (step, loss) after each step (with data parallelism, the loss of this replica's share of the batch). Returns the
    /// weights in Hugging Face layout.
    /// </summary>
    /// <exception cref="ArgumentException">The stream is shorter than one sequence, or the batch does not split over the replicas.</exception>
    public static Dictionary<string, Tensor> Train(DecoderConfig config, int[] tokens, LmTrainOptions o, Action<int, double>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config); ArgumentNullException.ThrowIfNull(tokens); ArgumentNullException.ThrowIfNull(o);
        if (tokens.Length < o.Context + 2)
            throw new ArgumentException($"train: {tokens.Length} tokens are fewer than one sequence of {o.Context + 1}", nameof(tokens));
        var gen = new Generator(o.Seed);
        var initial = o.InitialWeights ?? DecoderWeights.Init(config, gen);
        var parameters = initial.ToDictionary(kv => kv.Key, kv => new Parameter(kv.Value.Clone().To(o.Device)));
        var model = new DecoderModel(config, parameters.ToDictionary(kv => kv.Key, kv => kv.Value.Value), trainable: true);
        // Matrices are decayed, norm gains are not: two optimizers that differ only in weight decay.
        AdamW Make(bool matrices) => new(parameters.Values.Where(p => (p.Value.Rank == 2) == matrices), o.LearningRate, Beta1, Beta2, Eps,
            matrices ? o.WeightDecay : 0) { Textbook = true };
        var optimizers = new[] { Make(true), Make(false) };
        var replica = o.DataParallel?.Invoke(parameters.Values.ToList());
        int world = replica?.WorldSize ?? 1, rank = replica?.Rank ?? 0;
        if (o.Batch % world != 0)
            throw new ArgumentException($"train: batch {o.Batch} does not split evenly over {world} data-parallel replicas", nameof(o));
        int rows = o.Batch / world;
        var rng = new Random((int)(o.Seed & 0x7fffffff));
        for (int step = 1; step <= o.Steps; step++)
        {
            using var scope = Tensor.Scope();
            var input = new long[o.Batch * o.Context];
            var target = new long[o.Batch * o.Context];
            for (int b = 0; b < o.Batch; b++)
            {
                int start = rng.Next(tokens.Length - o.Context - 1);
                for (int t = 0; t < o.Context; t++) { input[b * o.Context + t] = tokens[start + t]; target[b * o.Context + t] = tokens[start + t + 1]; }
            }
            if (world > 1)
            {
                input = input.AsSpan(rank * rows * o.Context, rows * o.Context).ToArray();
                target = target.AsSpan(rank * rows * o.Context, rows * o.Context).ToArray();
            }
            var logits = model.Forward(Tensor.FromArray(input, new Shape(rows, o.Context)).To(o.Device));
            var loss = -logits.LogSoftmax(-1).Gather(2, Tensor.FromArray(target, new Shape(rows, o.Context, 1)).To(o.Device)).Mean();
            loss.Backward();
            replica?.FinishGradients();
            foreach (var opt in optimizers)
            {
                opt.LearningRate = Schedule(o, step);
                opt.Step();
                opt.ZeroGrad();
            }
            progress?.Invoke(step, loss.Item());
        }
        return parameters.ToDictionary(kv => kv.Key, kv => kv.Value.Value.Detach());
    }

    static double Schedule(LmTrainOptions o, int step)
    {
        if (step <= o.Warmup) return o.LearningRate * step / o.Warmup;
        double progress = (step - o.Warmup) / (double)Math.Max(1, o.Steps - o.Warmup);
        return o.LearningRate * (0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * progress)));
    }
}
