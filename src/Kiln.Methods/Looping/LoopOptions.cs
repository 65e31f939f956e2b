using Kiln.NN.Decoder;

namespace Kiln.Methods.Looping;

/// <summary>How the looped window is iterated.</summary>
public enum LoopRule
{
    /// <summary>Reapply the window: x_{k+1} = g(x_k), K times (integrates to t = K; degrades the model).</summary>
    Naive,
    /// <summary>The method: x_{k+1} = x_k + (alpha/K)(g(x_k) - x_k), K times (K damped sub-steps over the same horizon).</summary>
    Damped,
    /// <summary>Anchored damped: beta g(x0) + (1 - beta) x_K(damped); beta = 0 is damped, beta = 1 the baseline.</summary>
    RK,
}

/// <summary>What the rule treats as one map g.</summary>
public enum LoopMode
{
    /// <summary>The whole window L_b o ... o L_a is one map (default for dense models).</summary>
    Block,
    /// <summary>The rule is applied to each layer in turn, K sub-steps per layer (default for MoE and MLA models).</summary>
    Layer,
}

/// <summary>Which state the window's KV-cache entries are written from.</summary>
public enum LoopCache
{
    /// <summary>From the first sub-step, whose input is x0: the cache holds what the unlooped model would write (default).</summary>
    First,
    /// <summary>From the last sub-step (the looped state).</summary>
    Last,
    /// <summary>The window writes no cache entries.</summary>
    None,
}

/// <summary>Which forward calls of a generation are looped.</summary>
public enum LoopDecode
{
    /// <summary>Every call: the prompt and every decoding step.</summary>
    Full,
    /// <summary>Only the prompt (the call that starts at position 0); decoding steps run the plain model.</summary>
    Bypass,
    /// <summary>The prompt and the first <see cref="LoopOptions.FirstN"/> decoding steps.</summary>
    FirstN,
}

/// <summary>
/// A training-free loop over the contiguous window [<see cref="Start"/>, <see cref="End"/>] (inclusive, 0-based) of a
/// pre-norm layer stack, with <see cref="K"/> sub-steps. K = 1 is the unlooped model for every rule (with alpha = 1).
/// Pass it to <see cref="DecoderModel.Forward"/>, <see cref="DecoderModel.Hidden"/> or <see cref="DecoderModel.Generate"/>
/// to loop a decoder.
/// </summary>
public sealed record LoopOptions : IStackRunner
{
    /// <summary>Creates options for the window [start, end] with k sub-steps.</summary>
    /// <exception cref="ArgumentOutOfRangeException">start is negative, end &lt; start, or k &lt; 1.</exception>
    public LoopOptions(int start, int end, int k, LoopRule rule = LoopRule.Damped)
    {
        if (start < 0) throw new ArgumentOutOfRangeException(nameof(start), start, "loop: the window start must be non-negative");
        if (end < start) throw new ArgumentOutOfRangeException(nameof(end), end, $"loop: the window end must be at least its start {start}");
        if (k < 1) throw new ArgumentOutOfRangeException(nameof(k), k, "loop: K must be at least 1");
        Start = start; End = end; K = k; Rule = rule;
    }

    /// <summary>First looped layer a (0-based).</summary>
    public int Start { get; }
    /// <summary>Last looped layer b (inclusive).</summary>
    public int End { get; }
    /// <summary>Number of sub-steps K (per window in block mode, per layer in layer mode).</summary>
    public int K { get; }
    /// <summary>The update rule.</summary>
    public LoopRule Rule { get; }
    /// <summary>Total horizon of the damped rule (step alpha/K); 1 keeps the horizon of one layer application.</summary>
    public double Alpha { get; init; } = 1;
    /// <summary>Weight of the anchor g(x0) in <see cref="LoopRule.RK"/>.</summary>
    public double Beta { get; init; } = 0.5;
    /// <summary>Block or layer mode; null picks the model's default (block for dense, layer for MoE/MLA).</summary>
    public LoopMode? Mode { get; init; }
    /// <summary>Which sub-step writes the window's KV-cache entries.</summary>
    public LoopCache Cache { get; init; } = LoopCache.First;
    /// <summary>Which forward calls of a generation loop.</summary>
    public LoopDecode Decode { get; init; } = LoopDecode.Full;
    /// <summary>Number of looped decoding steps after the prompt for <see cref="LoopDecode.FirstN"/>.</summary>
    public int FirstN { get; init; }

    /// <summary>Number of layers in the window.</summary>
    public int Width => End - Start + 1;

    /// <summary>The default window for a stack of <paramref name="layers"/>: width 4 starting at round(0.47 N) - 1, clipped to the stack.</summary>
    /// <exception cref="ArgumentOutOfRangeException">layers &lt; 1.</exception>
    public static (int Start, int End) DefaultWindow(int layers)
    {
        if (layers < 1) throw new ArgumentOutOfRangeException(nameof(layers), layers, "loop: a stack needs at least one layer");
        int width = Math.Min(4, layers);
        int a = (int)Math.Round(0.47 * layers, MidpointRounding.AwayFromZero) - 1;
        a = Math.Clamp(a, 0, layers - width);
        return (a, a + width - 1);
    }

    /// <summary>Parses "a:b" (inclusive) into a window.</summary>
    /// <exception cref="ArgumentException">The text is not two integers separated by ':'.</exception>
    public static (int Start, int End) ParseWindow(string text)
    {
        var parts = text.Split(':');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int a) || !int.TryParse(parts[1], out int b))
            throw new ArgumentException($"loop: window must be 'a:b' with inclusive 0-based layer indices, got '{text}'", nameof(text));
        return (a, b);
    }

    /// <summary>Checks the window against a stack of <paramref name="layers"/> layers.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The window reaches past the last layer.</exception>
    public void Validate(int layers)
    {
        if (End >= layers)
            throw new ArgumentOutOfRangeException(nameof(End), End, $"loop: window [{Start}, {End}] reaches past the last layer of a {layers}-layer stack");
    }

    /// <summary>True when a forward call that starts at <paramref name="position"/> after a prompt of <paramref name="promptLength"/> tokens loops.</summary>
    public bool LoopsAt(int position, int promptLength) => Decode switch
    {
        LoopDecode.Full => true,
        LoopDecode.Bypass => position == 0,
        _ => position == 0 || position - promptLength < FirstN,
    };

    /// <summary>
    /// Runs <paramref name="model"/>'s stack with this loop when the call loops (<see cref="LoopsAt"/>, the prompt being
    /// the cache's first call), else plainly; <see cref="Mode"/> null means <see cref="Looper.DefaultMode"/>.
    /// </summary>
    public Tensor Run(DecoderModel model, Tensor x, SequenceContext ctx)
    {
        ArgumentNullException.ThrowIfNull(model); ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(ctx);
        var cache = ctx.Cache;
        bool loops = LoopsAt(ctx.Position, cache is null || cache.Position == 0 ? x.Shape[1] : cache.PromptLength);
        return Looper.RunStack(model.Layers, x, ctx, loops ? this : null, Looper.DefaultMode(model.Config));
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"{Rule.ToString().ToLowerInvariant()} [{Start},{End}] K={K}" + (Rule == LoopRule.Damped && Alpha != 1 ? $" alpha={Alpha}" : "")
        + (Rule == LoopRule.RK ? $" beta={Beta}" : "") + (Mode is { } m ? $" {m.ToString().ToLowerInvariant()}" : "");
}
