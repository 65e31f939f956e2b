namespace Kiln.NN;

// The gate math shared by the cells and the sequence layers. The input's gates for all of them come from one matmul
// (gx = x W_ih^T + b_ih, precomputed for a whole sequence by the sequence layers), the hidden state's from another.
// The elementwise part is one fused kernel per step on every device (IFusedBackend.LstmGates / GruGates) with a
// hand-written backward in tensor ops (so it differentiates again).
static class RnnMath
{
    // LSTM, gates in PyTorch's order i, f, g, o: c' = f c + i g, h' = o tanh(c').
    public static (Tensor H, Tensor C) LstmStep(Tensor gx, Tensor h, Tensor c, Tensor wHh, Tensor? bHh)
    {
        var hc = LstmFused(gx + Tensor.Linear(h, wHh, bHh), c);
        return (hc.Narrow(0, 0, 1).Squeeze(0), hc.Narrow(0, 1, 1).Squeeze(0));
    }

    // GRU, gates r, z, n: n = tanh(x_n + r (W_hn h + b_hn)), h' = (1 - z) n + z h.
    public static Tensor GruStep(Tensor gx, Tensor h, Tensor wHh, Tensor? bHh) => GruFused(gx, Tensor.Linear(h, wHh, bHh), h);

    // a [N, 4H] pre-activations, c [N, H]; returns [2, N, H]: h' then c'.
    public static Tensor LstmFused(Tensor a, Tensor c)
    {
        int rows = c.Shape[0], hid = c.Shape[-1];
        return Tensor.Custom("lstm_gates", [a, c], xs =>
        {
            var y = Tensor.Empty([2, rows, hid], a.DType, a.Device);
            a.Device.Backend.LstmGates(xs[0].Contiguous(), xs[1].Contiguous(), rows, hid, y);
            return y;
        }, g =>
        {
            var q = a.Chunk(4, -1);
            var (i, f, gg, o) = (q[0].Sigmoid(), q[1].Sigmoid(), q[2].Tanh(), q[3].Sigmoid());
            var tc = (f * c + i * gg).Tanh();
            var gh = g.Narrow(0, 0, 1).Squeeze(0);
            var dc = g.Narrow(0, 1, 1).Squeeze(0) + gh * o * (1 - tc * tc);
            return [Tensor.Concat([dc * gg * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - gg * gg), gh * tc * o * (1 - o)], -1), dc * f];
        });
    }

    // x, m [N, 3H] input and hidden pre-activations, h [N, H]; returns h' [N, H].
    public static Tensor GruFused(Tensor x, Tensor m, Tensor h)
    {
        int rows = h.Shape[0], hid = h.Shape[-1];
        return Tensor.Custom("gru_gates", [x, m, h], xs =>
        {
            var y = Tensor.Empty([rows, hid], x.DType, x.Device);
            x.Device.Backend.GruGates(xs[0].Contiguous(), xs[1].Contiguous(), xs[2].Contiguous(), rows, hid, y);
            return y;
        }, g =>
        {
            var xs = x.Chunk(3, -1); var ms = m.Chunk(3, -1);
            var r = (xs[0] + ms[0]).Sigmoid();
            var z = (xs[1] + ms[1]).Sigmoid();
            var n = (xs[2] + r * ms[2]).Tanh();
            var dn = g * (1 - z) * (1 - n * n);
            var dr = dn * ms[2] * r * (1 - r);
            var dz = g * (h - n) * z * (1 - z);
            return [Tensor.Concat([dr, dz, dn], -1), Tensor.Concat([dr, dz, dn * r], -1), g * z];
        });
    }

    public static Parameter Uniform(Func<string, Parameter, Parameter> register, string name, int[] shape, double bound, Generator? generator, DType dtype, Device? device) =>
        register(name, new Parameter(Init.Uniform_(Tensor.Empty(shape, dtype, device), -bound, bound, generator)));

    public static void Sizes(string op, int inputSize, int hiddenSize)
    {
        if (inputSize <= 0) throw new ArgumentOutOfRangeException(nameof(inputSize), inputSize, $"{op}: inputSize must be positive");
        if (hiddenSize <= 0) throw new ArgumentOutOfRangeException(nameof(hiddenSize), hiddenSize, $"{op}: hiddenSize must be positive");
    }

    // A given state must have exactly the expected shape; a missing one is zeros.
    public static Tensor State(string op, string name, Tensor? state, Shape expected, Tensor like)
    {
        if (state is null) return Tensor.Zeros(expected, like.DType, like.Device);
        if (state.Shape != expected) throw new ShapeMismatchException(op, name, expected, state.Shape, "the state must match the input's batch size and the hidden size");
        if (state.DType != like.DType || state.Device != like.Device)
            throw new ArgumentException($"{op}: state {name} is {state.DType} on {state.Device} but the input is {like.DType} on {like.Device}", name);
        return state;
    }
}

/// <summary>
/// The weights of a single recurrent step (the base of <see cref="LSTMCell"/> and <see cref="GRUCell"/>): W_ih
/// [gates * hidden, input], W_hh [gates * hidden, hidden] and biases b_ih, b_hh [gates * hidden], the gates stacked in
/// PyTorch's order, all initialized uniform on +-1/sqrt(hidden) as PyTorch does. Inputs are [N, input] or unbatched
/// [input]; states [N, hidden] or [hidden] to match.
/// </summary>
public abstract class RecurrentCell : Module
{
    private protected readonly string Op;

    private protected RecurrentCell(string op, int gates, int inputSize, int hiddenSize, bool bias, Generator? generator, DType dtype, Device? device)
    {
        RnnMath.Sizes(op, inputSize, hiddenSize);
        Op = op; InputSize = inputSize; HiddenSize = hiddenSize;
        double k = 1 / Math.Sqrt(hiddenSize);
        WeightIh = RnnMath.Uniform(RegisterParameter, "weight_ih", [gates * hiddenSize, inputSize], k, generator, dtype, device);
        WeightHh = RnnMath.Uniform(RegisterParameter, "weight_hh", [gates * hiddenSize, hiddenSize], k, generator, dtype, device);
        if (bias)
        {
            BiasIh = RnnMath.Uniform(RegisterParameter, "bias_ih", [gates * hiddenSize], k, generator, dtype, device);
            BiasHh = RnnMath.Uniform(RegisterParameter, "bias_hh", [gates * hiddenSize], k, generator, dtype, device);
        }
    }

    /// <summary>The input width.</summary>
    public int InputSize { get; }
    /// <summary>The hidden state's width.</summary>
    public int HiddenSize { get; }
    /// <summary>W_ih [gates * hidden, input].</summary>
    public Parameter WeightIh { get; }
    /// <summary>W_hh [gates * hidden, hidden].</summary>
    public Parameter WeightHh { get; }
    /// <summary>b_ih [gates * hidden], or null without bias.</summary>
    public Parameter? BiasIh { get; }
    /// <summary>b_hh [gates * hidden], or null without bias.</summary>
    public Parameter? BiasHh { get; }

    // The input as [N, input] with whether it came unbatched, and the input's gates from one matmul.
    private protected (Tensor Gx, bool Unbatched) InputGates(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank is not (1 or 2))
            throw new ArgumentException($"{Op}: input must be [N, {InputSize}] or [{InputSize}], got rank {input.Rank} with shape {input.Shape}", nameof(input));
        if (input.Shape[-1] != InputSize)
            throw new ShapeMismatchException(Op, nameof(input), $"input has shape {input.Shape}; its last dimension must be {InputSize}");
        bool unbatched = input.Rank == 1;
        var x = unbatched ? input.Unsqueeze(0) : input;
        return (Tensor.Linear(x, WeightIh.Value, BiasIh?.Value), unbatched);
    }

    private protected Tensor StateOf(string name, Tensor? state, Tensor gx, bool unbatched)
    {
        var expected = unbatched ? new Shape(HiddenSize) : new Shape(gx.Shape[0], HiddenSize);
        var s = RnnMath.State(Op, name, state, expected, gx);
        return unbatched ? s.Unsqueeze(0) : s;
    }
}

/// <summary>
/// One LSTM step (PyTorch's <c>LSTMCell</c>): with gates [i, f, g, o] = x W_ih^T + b_ih + h W_hh^T + b_hh,
/// i, f, o = sigmoid, g = tanh, c' = f c + i g and h' = o tanh(c'). Weight keys weight_ih, weight_hh, bias_ih, bias_hh.
/// </summary>
public sealed class LSTMCell : RecurrentCell
{
    /// <summary>Creates the cell, weights drawn from <paramref name="generator"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive.</exception>
    public LSTMCell(int inputSize, int hiddenSize, bool bias = true, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
        : base("lstm_cell", 4, inputSize, hiddenSize, bias, generator, dtype, device) { }

    /// <summary>
    /// One step from input [N, input] (or [input]) and state (h, c), each [N, hidden] (or [hidden]), zeros when null;
    /// returns (h', c') of the same shapes.
    /// </summary>
    /// <exception cref="ArgumentException">The input's rank is not 1 or 2.</exception>
    /// <exception cref="ShapeMismatchException">The input's width or a state's shape does not fit.</exception>
    public (Tensor H, Tensor C) Forward(Tensor input, (Tensor H, Tensor C)? state = null)
    {
        var (gx, unbatched) = InputGates(input);
        var h = StateOf("h", state?.H, gx, unbatched);
        var c = StateOf("c", state?.C, gx, unbatched);
        var (h2, c2) = RnnMath.LstmStep(gx, h, c, WeightHh.Value, BiasHh?.Value);
        return unbatched ? (h2.Squeeze(0), c2.Squeeze(0)) : (h2, c2);
    }
}

/// <summary>
/// One GRU step (PyTorch's <c>GRUCell</c>): with gates [r, z, n] of x W_ih^T + b_ih and of h W_hh^T + b_hh,
/// r = sigmoid(x_r + h_r), z = sigmoid(x_z + h_z), n = tanh(x_n + r h_n) and h' = (1 - z) n + z h.
/// </summary>
public sealed class GRUCell : RecurrentCell
{
    /// <summary>Creates the cell, weights drawn from <paramref name="generator"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive.</exception>
    public GRUCell(int inputSize, int hiddenSize, bool bias = true, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
        : base("gru_cell", 3, inputSize, hiddenSize, bias, generator, dtype, device) { }

    /// <summary>One step from input [N, input] (or [input]) and h [N, hidden] (or [hidden]), zeros when null; returns h'.</summary>
    /// <exception cref="ArgumentException">The input's rank is not 1 or 2.</exception>
    /// <exception cref="ShapeMismatchException">The input's width or the state's shape does not fit.</exception>
    public Tensor Forward(Tensor input, Tensor? h = null)
    {
        var (gx, unbatched) = InputGates(input);
        var h2 = RnnMath.GruStep(gx, StateOf("h", h, gx, unbatched), WeightHh.Value, BiasHh?.Value);
        return unbatched ? h2.Squeeze(0) : h2;
    }
}

/// <summary>
/// A stack of recurrent layers run over a sequence (the base of <see cref="LSTM"/> and <see cref="GRU"/>), optionally
/// bidirectional. Layer k has weight_ih_l{k} [gates * hidden, in_k] (in_0 = input, otherwise hidden times the number of
/// directions), weight_hh_l{k}, bias_ih_l{k} and bias_hh_l{k}, and when bidirectional the same again with the suffix
/// _reverse for the direction that runs from the last step to the first: PyTorch's keys and order, all uniform on
/// +-1/sqrt(hidden). Input [L, N, input], or [N, L, input] with batch first, or unbatched [L, input]; output
/// [L, N, D * hidden] (batch first [N, L, D * hidden], unbatched [L, D * hidden]) of the last layer at every step, D = 2
/// when bidirectional (the forward direction's features, then the reverse direction's for the same step); states
/// [layers * D, N, hidden] (unbatched [layers * D, hidden]), indexed layer * D + direction. Each direction's input
/// gates for all steps come from one matmul. In training, dropout with probability p is applied to the outputs of every
/// layer but the last. Packed (variable-length) sequences and projected (proj_size) variants are not provided.
/// </summary>
public abstract class RecurrentLayer : Module
{
    private protected readonly string Op;
    readonly Generator? _generator;
    readonly Parameter[] _wIh, _wHh;
    readonly Parameter[]? _bIh, _bHh;

    private protected RecurrentLayer(string op, int gates, int inputSize, int hiddenSize, int numLayers, bool bias, bool batchFirst, double dropout, bool bidirectional, Generator? generator, DType dtype, Device? device)
    {
        RnnMath.Sizes(op, inputSize, hiddenSize);
        if (numLayers <= 0) throw new ArgumentOutOfRangeException(nameof(numLayers), numLayers, $"{op}: numLayers must be positive");
        if (!(dropout >= 0 && dropout < 1)) throw new ArgumentOutOfRangeException(nameof(dropout), dropout, $"{op}: dropout must be in [0, 1)");
        Op = op; InputSize = inputSize; HiddenSize = hiddenSize; NumLayers = numLayers; BatchFirst = batchFirst; Dropout = dropout; Bidirectional = bidirectional;
        _generator = generator;
        double k = 1 / Math.Sqrt(hiddenSize);
        int dirs = NumDirections, n = numLayers * dirs;
        _wIh = new Parameter[n]; _wHh = new Parameter[n];
        if (bias) { _bIh = new Parameter[n]; _bHh = new Parameter[n]; }
        for (int l = 0; l < numLayers; l++)
            for (int d = 0; d < dirs; d++)
            {
                // PyTorch registers layer by layer, the forward direction's four tensors before the reverse one's.
                int at = l * dirs + d;
                string suffix = $"_l{l}{(d == 1 ? "_reverse" : "")}";
                _wIh[at] = RnnMath.Uniform(RegisterParameter, "weight_ih" + suffix, [gates * hiddenSize, l == 0 ? inputSize : dirs * hiddenSize], k, generator, dtype, device);
                _wHh[at] = RnnMath.Uniform(RegisterParameter, "weight_hh" + suffix, [gates * hiddenSize, hiddenSize], k, generator, dtype, device);
                if (bias)
                {
                    _bIh![at] = RnnMath.Uniform(RegisterParameter, "bias_ih" + suffix, [gates * hiddenSize], k, generator, dtype, device);
                    _bHh![at] = RnnMath.Uniform(RegisterParameter, "bias_hh" + suffix, [gates * hiddenSize], k, generator, dtype, device);
                }
            }
    }

    /// <summary>The input width.</summary>
    public int InputSize { get; }
    /// <summary>The hidden state's width.</summary>
    public int HiddenSize { get; }
    /// <summary>The number of stacked layers.</summary>
    public int NumLayers { get; }
    /// <summary>Whether batched inputs and outputs are [N, L, features] rather than [L, N, features].</summary>
    public bool BatchFirst { get; }
    /// <summary>The dropout probability between layers in training mode.</summary>
    public double Dropout { get; }
    /// <summary>Whether every layer also runs the sequence from its last step to its first.</summary>
    public bool Bidirectional { get; }
    /// <summary>2 when <see cref="Bidirectional"/>, otherwise 1.</summary>
    public int NumDirections => Bidirectional ? 2 : 1;
    /// <summary>W_ih of each layer and direction, at layer * <see cref="NumDirections"/> + direction (direction 1 is _reverse).</summary>
    public IReadOnlyList<Parameter> WeightIh => _wIh;
    /// <summary>W_hh of each layer and direction, indexed as <see cref="WeightIh"/>.</summary>
    public IReadOnlyList<Parameter> WeightHh => _wHh;
    /// <summary>b_ih of each layer and direction, indexed as <see cref="WeightIh"/>, or null without bias.</summary>
    public IReadOnlyList<Parameter>? BiasIh => _bIh;
    /// <summary>b_hh of each layer and direction, indexed as <see cref="WeightIh"/>, or null without bias.</summary>
    public IReadOnlyList<Parameter>? BiasHh => _bHh;

    // The input as [L, N, input] with whether it came unbatched.
    private protected (Tensor Seq, bool Unbatched) Sequence(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank is not (2 or 3))
            throw new ArgumentException($"{Op}: input must be {(BatchFirst ? "[N, L, input]" : "[L, N, input]")} or unbatched [L, input], got rank {input.Rank} with shape {input.Shape}", nameof(input));
        if (input.Shape[-1] != InputSize)
            throw new ShapeMismatchException(Op, nameof(input), $"input has shape {input.Shape}; its last dimension must be {InputSize}");
        if (input.Shape[input.Rank == 3 && BatchFirst ? 1 : 0] == 0)
            throw new ArgumentException($"{Op}: input of shape {input.Shape} has no time steps", nameof(input));
        if (input.Rank == 2) return (input.Unsqueeze(1), true);
        return (BatchFirst ? input.Transpose(0, 1) : input, false);
    }

    // A state as [layers * directions, N, hidden] (zeros when null).
    private protected Tensor StateOf(string name, Tensor? state, Tensor seq, bool unbatched)
    {
        int n = NumLayers * NumDirections;
        var expected = unbatched ? new Shape(n, HiddenSize) : new Shape(n, seq.Shape[1], HiddenSize);
        var s = RnnMath.State(Op, name, state, expected, seq);
        return unbatched ? s.Unsqueeze(1) : s;
    }

    // Runs every layer and direction over seq [L, N, input] from the states at[k] (k = layer * directions + direction,
    // each [N, hidden] tensors); step(k, gx_t, state) gives the next state, whose first tensor is the step's output.
    // Returns the last layer's output [L, N, directions * hidden]; states is updated to the final states.
    private protected Tensor Run(Tensor seq, Tensor[][] states, Func<int, Tensor, Tensor[], Tensor[]> step)
    {
        int len = seq.Shape[0], dirs = NumDirections;
        var x = seq;
        for (int l = 0; l < NumLayers; l++)
        {
            var perDirection = new Tensor[dirs];
            for (int d = 0; d < dirs; d++)
            {
                int k = l * dirs + d;
                var gx = Tensor.Linear(x, _wIh[k].Value, _bIh?[k].Value);
                var outputs = new Tensor[len];
                for (int s = 0; s < len; s++)
                {
                    // The reverse direction reads the sequence backwards but its outputs stay aligned with their steps.
                    int t = d == 0 ? s : len - 1 - s;
                    states[k] = step(k, gx.Narrow(0, t, 1).Squeeze(0), states[k]);
                    outputs[t] = states[k][0];
                }
                perDirection[d] = Tensor.Stack(outputs, 0);
            }
            x = dirs == 1 ? perDirection[0] : Tensor.Concat(perDirection, -1);
            if (Training && Dropout != 0 && l < NumLayers - 1)
            {
                var keep = Tensor.Bernoulli(x.Shape, 1 - Dropout, _generator, x.DType, x.Device);
                x = x * (keep * (1 / (1 - Dropout)));
            }
        }
        return x;
    }

    private protected Tensor RecurrentWeight(int k) => _wHh[k].Value;
    private protected Tensor? RecurrentBias(int k) => _bHh?[k].Value;

    private protected Tensor Output(Tensor y, bool unbatched) => unbatched ? y.Squeeze(1) : BatchFirst ? y.Transpose(0, 1) : y;

    // Component i of every layer's and direction's final state, stacked as [layers * directions, N, hidden].
    private protected static Tensor FinalState(Tensor[][] states, int i, bool unbatched)
    {
        var s = Tensor.Stack(states.Select(v => v[i]).ToArray(), 0);
        return unbatched ? s.Squeeze(1) : s;
    }
}

/// <summary>A multi-layer LSTM over sequences (PyTorch's <c>nn.LSTM</c>); each step is <see cref="LSTMCell"/>'s. See <see cref="RecurrentLayer"/>.</summary>
public sealed class LSTM : RecurrentLayer
{
    /// <summary>Creates the network, weights drawn from <paramref name="generator"/> (also used for dropout masks).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive, or dropout is outside [0, 1).</exception>
    public LSTM(int inputSize, int hiddenSize, int numLayers = 1, bool bias = true, bool batchFirst = false, double dropout = 0, bool bidirectional = false, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
        : base("lstm", 4, inputSize, hiddenSize, numLayers, bias, batchFirst, dropout, bidirectional, generator, dtype, device) { }

    /// <summary>
    /// Runs the sequence from state (h0, c0), each [layers * directions, N, hidden] (zeros when null); returns the last
    /// layer's output at every step and the final (h, c) of every layer and direction.
    /// </summary>
    /// <exception cref="ArgumentException">The input's rank is not 2 or 3.</exception>
    /// <exception cref="ShapeMismatchException">The input's width or a state's shape does not fit.</exception>
    public (Tensor Output, (Tensor H, Tensor C) State) Forward(Tensor input, (Tensor H, Tensor C)? state = null)
    {
        var (seq, unbatched) = Sequence(input);
        var h0 = StateOf("h", state?.H, seq, unbatched);
        var c0 = StateOf("c", state?.C, seq, unbatched);
        var states = new Tensor[h0.Shape[0]][];
        for (int k = 0; k < states.Length; k++) states[k] = [h0.Narrow(0, k, 1).Squeeze(0), c0.Narrow(0, k, 1).Squeeze(0)];
        var y = Run(seq, states, (k, gx, s) =>
        {
            var (h, c) = RnnMath.LstmStep(gx, s[0], s[1], RecurrentWeight(k), RecurrentBias(k));
            return [h, c];
        });
        return (Output(y, unbatched), (FinalState(states, 0, unbatched), FinalState(states, 1, unbatched)));
    }
}

/// <summary>A multi-layer GRU over sequences (PyTorch's <c>nn.GRU</c>); each step is <see cref="GRUCell"/>'s. See <see cref="RecurrentLayer"/>.</summary>
public sealed class GRU : RecurrentLayer
{
    /// <summary>Creates the network, weights drawn from <paramref name="generator"/> (also used for dropout masks).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive, or dropout is outside [0, 1).</exception>
    public GRU(int inputSize, int hiddenSize, int numLayers = 1, bool bias = true, bool batchFirst = false, double dropout = 0, bool bidirectional = false, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
        : base("gru", 3, inputSize, hiddenSize, numLayers, bias, batchFirst, dropout, bidirectional, generator, dtype, device) { }

    /// <summary>
    /// Runs the sequence from h0 [layers * directions, N, hidden] (zeros when null); returns the last layer's output at
    /// every step and the final h of every layer and direction.
    /// </summary>
    /// <exception cref="ArgumentException">The input's rank is not 2 or 3.</exception>
    /// <exception cref="ShapeMismatchException">The input's width or the state's shape does not fit.</exception>
    public (Tensor Output, Tensor H) Forward(Tensor input, Tensor? h0 = null)
    {
        var (seq, unbatched) = Sequence(input);
        var h0s = StateOf("h", h0, seq, unbatched);
        var states = new Tensor[h0s.Shape[0]][];
        for (int k = 0; k < states.Length; k++) states[k] = [h0s.Narrow(0, k, 1).Squeeze(0)];
        var y = Run(seq, states, (k, gx, s) => [RnnMath.GruStep(gx, s[0], RecurrentWeight(k), RecurrentBias(k))]);
        return (Output(y, unbatched), FinalState(states, 0, unbatched));
    }
}
