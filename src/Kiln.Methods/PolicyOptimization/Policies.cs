using Kiln.NN;
using Kiln.NN.Decoder;

namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// A policy's scores of given completions, the differentiable part of a <see cref="PolicyBatch"/>: B rows, T the longest
/// completion (padded).
/// </summary>
/// <param name="LogProbs">log π(y_t | s_t) of each completion token, [B, T], zero on padding.</param>
/// <param name="Logits">The next-token logits at each completion position, [B, T, V].</param>
/// <param name="Mask">1 on completion tokens and 0 on padding, [B, T].</param>
public sealed record PolicyScores(Tensor LogProbs, Tensor Logits, Tensor Mask);

/// <summary>
/// A policy over token sequences: samples completions of a prompt and scores given completions. Prompts and
/// completions are token ids; a completion is scored token by token given the prompt and its own prefix.
/// </summary>
public interface IPolicy
{
    /// <summary>Tokens the policy chooses from.</summary>
    int VocabSize { get; }
    /// <summary>The trainable parameters.</summary>
    IReadOnlyList<Parameter> Parameters { get; }
    /// <summary>
    /// Draws <paramref name="count"/> completions of <paramref name="prompt"/> of at most <paramref name="maxNew"/>
    /// tokens from softmax(logits / <paramref name="temperature"/>) (greedy at 0), with <paramref name="random"/>.
    /// </summary>
    int[][] Sample(int[] prompt, int count, int maxNew, double temperature, Random random);
    /// <summary>Scores completion i of prompt i in one forward pass.</summary>
    PolicyScores Score(IReadOnlyList<int[]> prompts, IReadOnlyList<int[]> completions);
}

/// <summary>Sampling and scoring shared by the policies.</summary>
public static class Policies
{
    /// <summary>
    /// A token drawn from softmax(<paramref name="logits"/> / <paramref name="temperature"/>) with
    /// <paramref name="random"/>; the first maximum at temperature 0.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The temperature is negative or not finite.</exception>
    public static int SampleToken(ReadOnlySpan<double> logits, double temperature, Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        if (!(temperature >= 0) || double.IsInfinity(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "sample: temperature must be finite and non-negative");
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        if (temperature == 0) return best;
        double z = 0;
        for (int i = 0; i < logits.Length; i++) z += Math.Exp((logits[i] - logits[best]) / temperature);
        double u = random.NextDouble() * z, acc = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            acc += Math.Exp((logits[i] - logits[best]) / temperature);
            if (u < acc) return i;
        }
        return best;
    }

    /// <summary>
    /// A <see cref="PolicyBatch"/> of <paramref name="scores"/> sampled by the same policy (on-policy: OldLogProbs are the
    /// detached LogProbs) with <paramref name="rewards"/> [B] and optional reference log-probs.
    /// </summary>
    public static PolicyBatch OnPolicyBatch(PolicyScores scores, double[] rewards, int groupSize, Tensor? refLogProbs = null)
    {
        ArgumentNullException.ThrowIfNull(scores); ArgumentNullException.ThrowIfNull(rewards);
        var batch = new PolicyBatch
        {
            LogProbs = scores.LogProbs, OldLogProbs = scores.LogProbs.Detach(), RefLogProbs = refLogProbs,
            Rewards = Tensor.FromArray(rewards).To(scores.LogProbs.DType).To(scores.LogProbs.Device), Mask = scores.Mask,
            GroupSize = groupSize, Logits = scores.Logits,
        };
        batch.Validate();
        return batch;
    }

    internal static void CheckPairs(IReadOnlyList<int[]> prompts, IReadOnlyList<int[]> completions, int vocab)
    {
        ArgumentNullException.ThrowIfNull(prompts); ArgumentNullException.ThrowIfNull(completions);
        if (prompts.Count != completions.Count || prompts.Count == 0)
            throw new ArgumentException($"score: {prompts.Count} prompts and {completions.Count} completions must be equal in number and non-zero", nameof(completions));
        for (int i = 0; i < prompts.Count; i++)
        {
            if (prompts[i] is not { Length: > 0 } p) throw new ArgumentException($"score: prompt {i} is empty", nameof(prompts));
            if (completions[i] is null) throw new ArgumentException($"score: completion {i} is null", nameof(completions));
            foreach (var t in p.Concat(completions[i]))
                if ((uint)t >= (uint)vocab) throw new ArgumentException($"score: token {t} in row {i} is outside [0, {vocab})", nameof(completions));
        }
    }
}

/// <summary>
/// A softmax table π(a | c) = softmax(z[c])_a over <see cref="Contexts"/> × <see cref="VocabSize"/> logits: the prompt is
/// one token (the context), the completion one token (the action). Its expectations are finite sums, so objectives can
/// be checked against exact float64 math.
/// </summary>
public sealed class TabularPolicy : IPolicy
{
    readonly Parameter _logits;

    /// <summary>A table over the given logits [contexts, actions] (copied; float64 for exact checks).</summary>
    /// <exception cref="ArgumentException">The logits are not a non-empty matrix.</exception>
    public TabularPolicy(Tensor logits)
    {
        ArgumentNullException.ThrowIfNull(logits);
        if (logits.Rank != 2 || logits.Shape[0] < 1 || logits.Shape[1] < 1)
            throw new ArgumentException($"tabular policy: logits must be [contexts, actions] with both positive, got {logits.Shape}", nameof(logits));
        _logits = new Parameter(logits.Detach().Clone());
    }

    /// <summary>The logits z [contexts, actions] (the parameter).</summary>
    public Parameter Logits => _logits;
    /// <summary>Number of contexts (prompts are one token in [0, Contexts)).</summary>
    public int Contexts => _logits.Shape[0];
    /// <inheritdoc/>
    public int VocabSize => _logits.Shape[1];
    /// <inheritdoc/>
    public IReadOnlyList<Parameter> Parameters => [_logits];

    /// <summary>π(· | <paramref name="context"/>) in float64.</summary>
    public double[] Probabilities(int context)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(context); ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(context, Contexts);
        using var _ = Autograd.NoGrad();
        return _logits.Narrow(0, context, 1).Reshape(VocabSize).To(DType.Float64).Softmax(-1).ToDoubleArray();
    }

    /// <inheritdoc/>
    /// <remarks>The prompt is one context token; every completion is one action (<paramref name="maxNew"/> ≥ 1).</remarks>
    public int[][] Sample(int[] prompt, int count, int maxNew, double temperature, Random random)
    {
        ArgumentNullException.ThrowIfNull(prompt); ArgumentNullException.ThrowIfNull(random);
        if (prompt.Length != 1 || (uint)prompt[0] >= (uint)Contexts)
            throw new ArgumentException($"tabular policy: the prompt must be one context in [0, {Contexts}), got [{string.Join(", ", prompt)}]", nameof(prompt));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count); ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxNew);
        double[] logits;
        using (Autograd.NoGrad()) logits = _logits.Narrow(0, prompt[0], 1).ToDoubleArray();
        return [.. Enumerable.Range(0, count).Select(_ => new[] { Policies.SampleToken(logits, temperature, random) })];
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">A prompt is not one context, or a completion is not one action.</exception>
    public PolicyScores Score(IReadOnlyList<int[]> prompts, IReadOnlyList<int[]> completions)
    {
        Policies.CheckPairs(prompts, completions, Math.Max(Contexts, VocabSize));
        int b = prompts.Count;
        for (int i = 0; i < b; i++)
            if (prompts[i].Length != 1 || prompts[i][0] >= Contexts || completions[i].Length != 1 || completions[i][0] >= VocabSize)
                throw new ArgumentException($"tabular policy: row {i} must be one context in [0, {Contexts}) and one action in [0, {VocabSize})", nameof(completions));
        var contexts = Tensor.FromArray(prompts.Select(p => (long)p[0]).ToArray()).To(_logits.Device);
        var actions = Tensor.FromArray(completions.Select(c => (long)c[0]).ToArray(), new Shape(b, 1, 1)).To(_logits.Device);
        var logits = _logits.IndexSelect(0, contexts).Reshape(b, 1, VocabSize);
        var logProbs = logits.LogSoftmax(-1).Gather(2, actions).Reshape(b, 1);
        return new PolicyScores(logProbs, logits, Tensor.Ones(new Shape(b, 1), _logits.DType, _logits.Device));
    }
}

/// <summary>
/// A <see cref="DecoderModel"/> as a policy over byte tokens: trainable copies of the given weights, batched sampling with
/// a KV cache (the group of one prompt shares it), and one forward over right-padded (prompt, completion) rows to score.
/// </summary>
public sealed class DecoderPolicy : IPolicy
{
    readonly Dictionary<string, Parameter> _weights;

    /// <summary>A policy over copies of <paramref name="weights"/> (Hugging Face names) for <paramref name="config"/>.</summary>
    /// <exception cref="InvalidDataException">A weight is missing or has the wrong shape.</exception>
    public DecoderPolicy(DecoderConfig config, IReadOnlyDictionary<string, Tensor> weights)
    {
        ArgumentNullException.ThrowIfNull(config); ArgumentNullException.ThrowIfNull(weights);
        _weights = weights.ToDictionary(kv => kv.Key, kv => new Parameter(kv.Value.Detach().Clone()));
        Model = new DecoderModel(config, _weights.ToDictionary(kv => kv.Key, kv => (Tensor)kv.Value), trainable: true);
    }

    /// <summary>The model (its weights are <see cref="Parameters"/>).</summary>
    public DecoderModel Model { get; }
    /// <summary>The token that ends a completion (it is part of it); default the newline, as in <see cref="GeneratedTask.Corpus"/>.</summary>
    public int Stop { get; init; } = '\n';
    /// <inheritdoc/>
    public int VocabSize => Model.Config.VocabSize;
    /// <inheritdoc/>
    public IReadOnlyList<Parameter> Parameters => [.. _weights.Values];

    /// <summary>Detached copies of the current weights by name (a checkpoint).</summary>
    public Dictionary<string, Tensor> Weights() => _weights.ToDictionary(kv => kv.Key, kv => kv.Value.Detach().Clone());

    /// <inheritdoc/>
    /// <remarks>The <paramref name="count"/> rows run as one batch over one KV cache; a row that emitted <see cref="Stop"/>
    /// keeps being fed it until every row has stopped, and its completion ends at the stop token.</remarks>
    public int[][] Sample(int[] prompt, int count, int maxNew, double temperature, Random random)
    {
        ArgumentNullException.ThrowIfNull(prompt); ArgumentNullException.ThrowIfNull(random);
        if (prompt.Length == 0) throw new ArgumentException("decoder policy: the prompt is empty", nameof(prompt));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count); ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxNew);
        using var _ = Autograd.NoGrad();
        using var scope = Tensor.Scope();
        int v = VocabSize;
        var cache = Model.NewCache();
        var rows = Enumerable.Range(0, count).Select(_ => new List<int>()).ToArray();
        var done = new bool[count];
        var input = new long[count * prompt.Length];
        for (int r = 0; r < count; r++) for (int t = 0; t < prompt.Length; t++) input[r * prompt.Length + t] = prompt[t];
        int width = prompt.Length;
        for (int n = 0; n < maxNew && !done.All(d => d); n++)
        {
            var h = Model.Hidden(Tensor.FromArray(input, new Shape(count, width)).To(Model.Device), cache);
            var logits = Model.Project(h.Narrow(1, width - 1, 1)).ToDoubleArray();
            input = new long[count];
            width = 1;
            for (int r = 0; r < count; r++)
            {
                int token = Stop;
                if (!done[r])
                {
                    token = Policies.SampleToken(logits.AsSpan(r * v, v), temperature, random);
                    rows[r].Add(token);
                    done[r] = token == Stop;
                }
                input[r] = token;
            }
        }
        return [.. rows.Select(r => r.ToArray())];
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The counts differ, a prompt is empty, or a token is outside the vocabulary.</exception>
    public PolicyScores Score(IReadOnlyList<int[]> prompts, IReadOnlyList<int[]> completions)
    {
        Policies.CheckPairs(prompts, completions, VocabSize);
        int b = prompts.Count, v = VocabSize;
        int t = Math.Max(1, completions.Max(c => c.Length));
        // The last completion token is only predicted, never read, so it is left out of the input.
        int width = Enumerable.Range(0, b).Max(i => prompts[i].Length + Math.Max(0, completions[i].Length - 1));
        var ids = new long[b * width];
        var positions = new long[b * t];
        var targets = new long[b * t];
        var mask = new double[b * t];
        for (int i = 0; i < b; i++)
        {
            int p = prompts[i].Length;
            for (int j = 0; j < p; j++) ids[i * width + j] = prompts[i][j];
            for (int j = 0; j + 1 < completions[i].Length; j++) ids[i * width + p + j] = completions[i][j];
            for (int j = 0; j < completions[i].Length; j++)
            {
                // Token j of the completion is predicted at position p + j − 1; padding points at row i's first position.
                positions[i * t + j] = i * width + p + j - 1;
                targets[i * t + j] = completions[i][j];
                mask[i * t + j] = 1;
            }
            for (int j = completions[i].Length; j < t; j++) positions[i * t + j] = i * width;
        }
        var device = Model.Device;
        var all = Model.Forward(Tensor.FromArray(ids, new Shape(b, width)).To(device)).Reshape(b * width, v);
        var logits = all.IndexSelect(0, Tensor.FromArray(positions).To(device)).Reshape(b, t, v);
        var m = Tensor.FromArray(mask, new Shape(b, t)).To(Model.DType).To(device);
        var logProbs = logits.LogSoftmax(-1).Gather(2, Tensor.FromArray(targets, new Shape(b, t, 1)).To(device)).Reshape(b, t) * m;
        return new PolicyScores(logProbs, logits, m);
    }
}
