using System.Diagnostics;
using Kiln.NN;

namespace Kiln.Methods.Sequence;

/// <summary>The sequence mixers compared on associative recall.</summary>
public enum SequenceMixer
{
    /// <summary>Causal softmax attention (<see cref="MultiHeadAttention"/>, 2 heads, no rotary).</summary>
    Softmax,
    /// <summary>Bidirectional linear attention (<see cref="LinearAttention.Bidirectional"/>, chunkwise, elu + 1 features, no decay).</summary>
    Linear,
    /// <summary>The diagonal state-space layer (<see cref="S4D"/>, S4D-Lin, its convolution form).</summary>
    S4D,
}

/// <summary>Settings of <see cref="RecallExperiment.Run"/>.</summary>
public sealed record RecallOptions
{
    /// <summary>Sequence lengths to train at (each at least 2 * Pairs + 1).</summary>
    public IReadOnlyList<int> Lengths { get; init; } = [16, 32, 64];
    /// <summary>Mixers to compare.</summary>
    public IReadOnlyList<SequenceMixer> Mixers { get; init; } = Enum.GetValues<SequenceMixer>();
    /// <summary>Key-value pairs per sequence (distinct keys).</summary>
    public int Pairs { get; init; } = 4;
    /// <summary>Keys and values each come from this many symbols.</summary>
    public int Vocabulary { get; init; } = 8;
    /// <summary>Model width.</summary>
    public int Width { get; init; } = 32;
    /// <summary>Training steps per (mixer, length).</summary>
    public int Steps { get; init; } = 200;
    /// <summary>Sequences per step.</summary>
    public int Batch { get; init; } = 32;
    /// <summary>Held-out sequences for the accuracy.</summary>
    public int TestSize { get; init; } = 512;
    /// <summary>AdamW learning rate.</summary>
    public double LearningRate { get; init; } = 3e-3;
    /// <summary>Seed of data and initialisation.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>Device (CPU when null).</summary>
    public Device? Device { get; init; }
}

/// <summary>One (mixer, length) cell: held-out recall accuracy and mean wall seconds per training step.</summary>
public sealed record RecallRow(SequenceMixer Mixer, int Length, double Accuracy, double SecondsPerStep, double FinalLoss);

/// <summary>The experiment's result.</summary>
public sealed record RecallResult(RecallOptions Options, IReadOnlyList<RecallRow> Rows);

/// <summary>
/// Associative recall, generated: a sequence holds <c>Pairs</c> key-value pairs (distinct keys) at its start, blanks, and
/// finally one of the keys as the query; the model must output that key's value. Every model is the same except its
/// mixer: the token and its predecessor one-hot (a token shift, so a value position knows its key) -> linear to the
/// width -> mixer (residual) -> the last position -> linear to the values, trained with cross entropy.
/// </summary>
public static class RecallExperiment
{
    /// <summary>Generates <paramref name="count"/> sequences: tokens [count, length] (keys 0..V-1, values V..2V-1, blank 2V) and targets (value index).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The length cannot hold the pairs and the query, or there are more pairs than keys.</exception>
    public static (int[] Tokens, long[] Targets) Generate(Random rng, int count, int length, int pairs, int vocabulary)
    {
        ArgumentNullException.ThrowIfNull(rng);
        if (pairs < 1 || pairs > vocabulary) throw new ArgumentOutOfRangeException(nameof(pairs), pairs, $"recall: pairs must be in 1..{vocabulary} (the key vocabulary)");
        if (length < 2 * pairs + 1) throw new ArgumentOutOfRangeException(nameof(length), length, $"recall: length must be at least {2 * pairs + 1} for {pairs} pairs and the query");
        var tokens = new int[count * length];
        var targets = new long[count];
        for (int n = 0; n < count; n++)
        {
            var keys = Enumerable.Range(0, vocabulary).OrderBy(_ => rng.Next()).Take(pairs).ToArray();
            var values = keys.Select(_ => rng.Next(vocabulary)).ToArray();
            for (int t = 0; t < length; t++) tokens[n * length + t] = 2 * vocabulary;
            for (int p = 0; p < pairs; p++) { tokens[n * length + 2 * p] = keys[p]; tokens[n * length + 2 * p + 1] = vocabulary + values[p]; }
            int q = rng.Next(pairs);
            tokens[n * length + length - 1] = keys[q];
            targets[n] = values[q];
        }
        return (tokens, targets);
    }

    sealed class Model : Module<Tensor, Tensor>
    {
        readonly SequenceMixer _mixer;
        readonly int _symbols;

        public Model(SequenceMixer mixer, int symbols, int width, int classes, Generator g, Device device)
        {
            _mixer = mixer; _symbols = symbols;
            Embed = RegisterModule("embed", new Linear(2 * symbols, width, true, g, device: device));
            Head = RegisterModule("head", new Linear(width, classes, true, g, device: device));
            switch (mixer)
            {
                case SequenceMixer.Softmax: Attention = RegisterModule("attn", new MultiHeadAttention(width, 2, causal: true, rotary: false, generator: g, device: device)); break;
                case SequenceMixer.Linear:
                    Q = RegisterModule("q", new Linear(width, width, false, g, device: device));
                    K = RegisterModule("k", new Linear(width, width, false, g, device: device));
                    V = RegisterModule("v", new Linear(width, width, false, g, device: device));
                    break;
                default:
                    Ssm = RegisterModule("ssm", new S4D(width, 16, generator: g, device: device));
                    Out = RegisterModule("out", new Linear(width, width, true, g, device: device));
                    break;
            }
        }

        public Linear Embed { get; }
        public Linear Head { get; }
        public MultiHeadAttention? Attention { get; }
        public Linear? Q { get; }
        public Linear? K { get; }
        public Linear? V { get; }
        public S4D? Ssm { get; }
        public Linear? Out { get; }

        // tokens [B, L] Int64 -> logits [B, classes]
        public override Tensor Forward(Tensor tokens)
        {
            var oh = tokens.OneHot(_symbols);
            var prev = oh.Pad([0, 0, 1, 0]).Narrow(1, 0, tokens.Shape[1]);
            var x = Embed.Forward(Tensor.Concat([oh, prev], 2));
            var mixed = _mixer switch
            {
                SequenceMixer.Softmax => Attention!.Forward(x),
                SequenceMixer.Linear => LinearAttention.Bidirectional(Q!.Forward(x).Elu() + 1, K!.Forward(x).Elu() + 1, V!.Forward(x), null, LinearAttentionForm.Chunkwise, 16),
                _ => Out!.Forward(Ssm!.Forward(x).Gelu()),
            };
            var h = x + mixed;
            return Head.Forward(h.Narrow(1, tokens.Shape[1] - 1, 1).Squeeze(1));
        }
    }

    /// <summary>Trains every (mixer, length) and reports held-out accuracy and seconds per step; <paramref name="progress"/> gets (cells done, total).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range.</exception>
    public static RecallResult Run(RecallOptions options, Action<int, int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Steps < 1 || options.Batch < 1 || options.TestSize < 1 || options.Width < 2 || options.Width % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(options), "recall: steps, batch and test size must be positive and the width even");
        var device = options.Device ?? Device.Cpu;
        int symbols = 2 * options.Vocabulary + 1, total = options.Lengths.Count * options.Mixers.Count, done = 0;
        var rows = new List<RecallRow>();
        foreach (int length in options.Lengths)
        {
            var (testTokens, testTargets) = Generate(new Random(options.Seed + 1000 * length), options.TestSize, length, options.Pairs, options.Vocabulary);
            var testX = Tensor.FromArray(testTokens.Select(t => (long)t).ToArray(), new Shape(options.TestSize, length)).To(device);
            foreach (var mixer in options.Mixers)
            {
                var model = new Model(mixer, symbols, options.Width, options.Vocabulary, new Generator((ulong)options.Seed), device);
                var opt = new AdamW(model.Parameters(), options.LearningRate, weightDecay: 0);
                var rng = new Random(options.Seed);
                double seconds = 0, loss = 0;
                for (int step = 0; step < options.Steps; step++)
                {
                    var (tokens, targets) = Generate(rng, options.Batch, length, options.Pairs, options.Vocabulary);
                    var x = Tensor.FromArray(tokens.Select(t => (long)t).ToArray(), new Shape(options.Batch, length)).To(device);
                    var y = Tensor.FromArray(targets).To(device);
                    var sw = Stopwatch.StartNew();
                    opt.ZeroGrad();
                    var l = Losses.CrossEntropy(model.Forward(x), y);
                    l.Backward();
                    opt.Step();
                    loss = l.Item();
                    seconds += sw.Elapsed.TotalSeconds;
                }
                double accuracy;
                using (Autograd.NoGrad())
                {
                    var pred = model.Forward(testX).ArgMax(-1).To(Device.Cpu).ToArray<long>();
                    accuracy = pred.Where((p, i) => p == testTargets[i]).Count() / (double)options.TestSize;
                }
                rows.Add(new RecallRow(mixer, length, accuracy, seconds / options.Steps, loss));
                progress?.Invoke(++done, total);
            }
        }
        return new RecallResult(options, rows);
    }
}
