namespace Kiln.NN;

/// <summary>
/// y = x W^T + b with W [out, in] and b [out] (PyTorch's layout, so state dictionaries carry over). Initialized as
/// PyTorch does: W and b uniform on +-1/sqrt(in). Input [..., in], output [..., out].
/// </summary>
public sealed class Linear : Module<Tensor, Tensor>
{
    /// <summary>Creates the layer with weights drawn from <paramref name="generator"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive.</exception>
    public Linear(int inFeatures, int outFeatures, bool bias = true, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        if (inFeatures <= 0) throw new ArgumentOutOfRangeException(nameof(inFeatures), inFeatures, "linear: inFeatures must be positive");
        if (outFeatures <= 0) throw new ArgumentOutOfRangeException(nameof(outFeatures), outFeatures, "linear: outFeatures must be positive");
        InFeatures = inFeatures; OutFeatures = outFeatures;
        double bound = 1 / Math.Sqrt(inFeatures);
        Weight = RegisterParameter("weight", new Parameter(Init.Uniform_(Tensor.Empty([outFeatures, inFeatures], dtype, device), -bound, bound, generator)));
        if (bias) Bias = RegisterParameter("bias", new Parameter(Init.Uniform_(Tensor.Empty([outFeatures], dtype, device), -bound, bound, generator)));
    }

    /// <summary>Input width.</summary>
    public int InFeatures { get; }
    /// <summary>Output width.</summary>
    public int OutFeatures { get; }
    /// <summary>W [out, in].</summary>
    public Parameter Weight { get; }
    /// <summary>b [out], or null without bias.</summary>
    public Parameter? Bias { get; }

    /// <inheritdoc/>
    /// <exception cref="ShapeMismatchException">The last dimension of the input is not <see cref="InFeatures"/>.</exception>
    public override Tensor Forward(Tensor input) => Forward(input, relu: false);

    // The layer, optionally followed by ReLU fused into its product (for a parent that runs the pair as one op).
    internal Tensor Forward(Tensor input, bool relu)
    {
        if (input.Rank == 0 || input.Shape[-1] != InFeatures)
            throw new ShapeMismatchException("linear", nameof(input), $"input has shape {input.Shape}; its last dimension must be {InFeatures}");
        return Tensor.Linear(input, Weight.Value, Bias?.Value, relu);
    }
}

/// <summary>A lookup table: Int64 indices of any shape S give rows of the weight [num, dim] as [S..., dim]. Weight ~ N(0, 1).</summary>
public sealed class Embedding : Module<Tensor, Tensor>
{
    /// <summary>Creates the table.</summary>
    public Embedding(int numEmbeddings, int embeddingDim, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        if (numEmbeddings <= 0) throw new ArgumentOutOfRangeException(nameof(numEmbeddings), numEmbeddings, "embedding: numEmbeddings must be positive");
        if (embeddingDim <= 0) throw new ArgumentOutOfRangeException(nameof(embeddingDim), embeddingDim, "embedding: embeddingDim must be positive");
        Weight = RegisterParameter("weight", new Parameter(Tensor.Randn([numEmbeddings, embeddingDim], generator, dtype: dtype, device: device)));
    }

    /// <summary>The table [num, dim].</summary>
    public Parameter Weight { get; }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The indices are not Int64.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An index is outside [0, num).</exception>
    public override Tensor Forward(Tensor input)
    {
        if (input.DType != DType.Int64) throw new ArgumentException($"embedding: indices must be Int64, not {input.DType}", nameof(input));
        var rows = Weight.Value.IndexSelect(0, input.Reshape(-1));
        return rows.Reshape([.. input.Shape.Dims, Weight.Shape[1]]);
    }
}

/// <summary>Layer normalization over the last dimension with a learned scale (ones) and shift (zeros).</summary>
public sealed class LayerNorm : Module<Tensor, Tensor>
{
    /// <summary>Creates the layer for inputs whose last dimension is <paramref name="dim"/>.</summary>
    public LayerNorm(int dim, double eps = 1e-5, bool elementwiseAffine = true, bool bias = true, DType dtype = DType.Float32, Device? device = null)
    {
        if (dim <= 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "layer_norm: dim must be positive");
        Eps = eps;
        if (elementwiseAffine)
        {
            Weight = RegisterParameter("weight", new Parameter(Tensor.Ones([dim], dtype, device)));
            if (bias) Bias = RegisterParameter("bias", new Parameter(Tensor.Zeros([dim], dtype, device)));
        }
    }

    /// <summary>Added to the variance.</summary>
    public double Eps { get; }
    /// <summary>Scale [dim] or null.</summary>
    public Parameter? Weight { get; }
    /// <summary>Shift [dim] or null.</summary>
    public Parameter? Bias { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => input.LayerNorm(Weight?.Value, Bias?.Value, Eps);
}

/// <summary>RMS normalization over the last dimension, x / sqrt(mean(x^2) + eps) * weight, weight initialized to ones.</summary>
public sealed class RMSNorm : Module<Tensor, Tensor>
{
    /// <summary>Creates the layer for inputs whose last dimension is <paramref name="dim"/>.</summary>
    public RMSNorm(int dim, double eps = 1e-6, DType dtype = DType.Float32, Device? device = null)
    {
        if (dim <= 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "rms_norm: dim must be positive");
        Eps = eps;
        Weight = RegisterParameter("weight", new Parameter(Tensor.Ones([dim], dtype, device)));
    }

    /// <summary>Added to the mean square.</summary>
    public double Eps { get; }
    /// <summary>Scale [dim].</summary>
    public Parameter Weight { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => input.RmsNorm(Weight.Value, Eps);
}

/// <summary>
/// In training mode zeroes each element with probability p and scales the rest by 1/(1-p) (inverted dropout, so
/// evaluation needs no rescaling); in evaluation mode the identity.
/// </summary>
public sealed class Dropout : Module<Tensor, Tensor>
{
    readonly Generator? _generator;

    /// <summary>Creates the layer; masks are drawn from <paramref name="generator"/> (the default generator when null).</summary>
    /// <exception cref="ArgumentOutOfRangeException">p is outside [0, 1).</exception>
    public Dropout(double p = 0.5, Generator? generator = null)
    {
        if (!(p >= 0 && p < 1)) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout: p must be in [0, 1)");
        P = p;
        _generator = generator;
    }

    /// <summary>The drop probability.</summary>
    public double P { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        if (!Training || P == 0) return input;
        var keep = Tensor.Bernoulli(input.Shape, 1 - P, _generator, input.DType, input.Device);
        return input * (keep * (1 / (1 - P)));
    }
}

/// <summary>Applies its modules in order; they are registered under the names "0", "1", ...</summary>
public sealed class Sequential : Module<Tensor, Tensor>
{
    readonly Module<Tensor, Tensor>[] _layers;

    /// <summary>Creates the chain.</summary>
    public Sequential(params Module<Tensor, Tensor>[] layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        _layers = layers;
        for (int i = 0; i < layers.Length; i++) RegisterModule(i.ToString(System.Globalization.CultureInfo.InvariantCulture), layers[i]);
    }

    /// <summary>The modules, in order.</summary>
    public IReadOnlyList<Module<Tensor, Tensor>> Layers => _layers;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        var x = input;
        foreach (var l in _layers) x = l.Call(x);
        return x;
    }
}

/// <summary>Elementwise activations as modules, for use in <see cref="Sequential"/>.</summary>
public enum ActivationKind
{
    /// <summary>max(x, 0)</summary>
    Relu,
    /// <summary>x Phi(x), exact.</summary>
    Gelu,
    /// <summary>GELU's tanh approximation.</summary>
    GeluTanh,
    /// <summary>x sigmoid(x)</summary>
    Silu,
    /// <summary>tanh x</summary>
    Tanh,
    /// <summary>1 / (1 + e^-x)</summary>
    Sigmoid,
    /// <summary>min(max(x + 3, 0), 6) / 6, as <c>torch.nn.Hardsigmoid</c>.</summary>
    Hardsigmoid,
    /// <summary>x min(max(x + 3, 0), 6) / 6, as <c>torch.nn.Hardswish</c>.</summary>
    Hardswish,
    /// <summary>SELU with its fixed scale and alpha, as <c>torch.nn.SELU</c>.</summary>
    Selu,
    /// <summary>x tanh(softplus x), as <c>torch.nn.Mish</c>.</summary>
    Mish,
    /// <summary>x / (1 + |x|), as <c>torch.nn.Softsign</c>.</summary>
    Softsign,
}

/// <summary>An elementwise activation function as a module.</summary>
public sealed class Activation(ActivationKind kind) : Module<Tensor, Tensor>
{
    /// <summary>Which function.</summary>
    public ActivationKind Kind { get; } = kind;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => Apply(Kind, input);

    /// <summary>Applies <paramref name="kind"/> to <paramref name="x"/>.</summary>
    public static Tensor Apply(ActivationKind kind, Tensor x) => kind switch
    {
        ActivationKind.Relu => x.Relu(),
        ActivationKind.Gelu => x.Gelu(),
        ActivationKind.GeluTanh => x.Gelu(approximateTanh: true),
        ActivationKind.Silu => x.Silu(),
        ActivationKind.Tanh => x.Tanh(),
        ActivationKind.Sigmoid => x.Sigmoid(),
        ActivationKind.Hardsigmoid => x.Hardsigmoid(),
        ActivationKind.Hardswish => x.Hardswish(),
        ActivationKind.Selu => x.Selu(),
        ActivationKind.Mish => x.Mish(),
        ActivationKind.Softsign => x.Softsign(),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown activation"),
    };

    /// <inheritdoc/>
    public override string ToString() => $"Activation({Kind})";
}

/// <summary>clamp(x, minVal, maxVal) as a module, as <c>torch.nn.Hardtanh</c>.</summary>
public sealed class Hardtanh : Module<Tensor, Tensor>
{
    /// <summary>Creates the module.</summary>
    /// <exception cref="ArgumentException">minVal &gt; maxVal, or either is NaN.</exception>
    public Hardtanh(double minVal = -1, double maxVal = 1)
    {
        if (!(minVal <= maxVal)) throw new ArgumentException($"Hardtanh: minVal {minVal} must not exceed maxVal {maxVal} (nor be NaN)", nameof(minVal));
        (MinVal, MaxVal) = (minVal, maxVal);
    }

    /// <summary>The lower bound.</summary>
    public double MinVal { get; }
    /// <summary>The upper bound.</summary>
    public double MaxVal { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => input.Hardtanh(MinVal, MaxVal);

    /// <inheritdoc/>
    public override string ToString() => $"Hardtanh(minVal={MinVal}, maxVal={MaxVal})";
}

/// <summary>x for x &gt; 0, else alpha (e^x - 1), as <c>torch.nn.ELU</c>.</summary>
public sealed class ELU : Module<Tensor, Tensor>
{
    /// <summary>Creates the module.</summary>
    /// <exception cref="ArgumentOutOfRangeException">alpha is not finite.</exception>
    public ELU(double alpha = 1)
    {
        if (!double.IsFinite(alpha)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "ELU: alpha must be finite");
        Alpha = alpha;
    }

    /// <summary>The value the output tends to as x goes to -infinity, negated.</summary>
    public double Alpha { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => input.Elu(Alpha);

    /// <inheritdoc/>
    public override string ToString() => $"ELU(alpha={Alpha})";
}

/// <summary>max(0, x) + min(0, alpha (e^(x/alpha) - 1)), as <c>torch.nn.CELU</c>.</summary>
public sealed class CELU : Module<Tensor, Tensor>
{
    /// <summary>Creates the module.</summary>
    /// <exception cref="ArgumentOutOfRangeException">alpha is 0 or not finite.</exception>
    public CELU(double alpha = 1)
    {
        if (!double.IsFinite(alpha) || alpha == 0) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "CELU: alpha must be finite and nonzero");
        Alpha = alpha;
    }

    /// <summary>The scale of the negative part.</summary>
    public double Alpha { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => input.Celu(Alpha);

    /// <inheritdoc/>
    public override string ToString() => $"CELU(alpha={Alpha})";
}

/// <summary>x for x &gt; 0, else negativeSlope x, as <c>torch.nn.LeakyReLU</c>.</summary>
public sealed class LeakyReLU : Module<Tensor, Tensor>
{
    /// <summary>Creates the module.</summary>
    /// <exception cref="ArgumentOutOfRangeException">negativeSlope is not finite.</exception>
    public LeakyReLU(double negativeSlope = 0.01)
    {
        if (!double.IsFinite(negativeSlope)) throw new ArgumentOutOfRangeException(nameof(negativeSlope), negativeSlope, "LeakyReLU: negativeSlope must be finite");
        NegativeSlope = negativeSlope;
    }

    /// <summary>The slope for x &lt; 0.</summary>
    public double NegativeSlope { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => input.LeakyRelu(NegativeSlope);

    /// <inheritdoc/>
    public override string ToString() => $"LeakyReLU(negativeSlope={NegativeSlope})";
}

/// <summary>
/// A multilayer perceptron: Linear layers of the given widths with an activation (and optional dropout) between
/// them and none after the last. <c>new MLP([784, 1024, 1024, 10])</c> is Linear-ReLU-Linear-ReLU-Linear.
/// </summary>
public sealed class MLP : Module<Tensor, Tensor>
{
    readonly Sequential _net;

    /// <summary>Creates the network; <paramref name="sizes"/> lists the input width, hidden widths and output width.</summary>
    /// <exception cref="ArgumentException">Fewer than two sizes.</exception>
    public MLP(int[] sizes, ActivationKind activation = ActivationKind.Relu, double dropout = 0, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(sizes);
        if (sizes.Length < 2) throw new ArgumentException($"mlp: sizes needs at least an input and an output width, got [{string.Join(", ", sizes)}]", nameof(sizes));
        Sizes = (int[])sizes.Clone();
        var layers = new List<Module<Tensor, Tensor>>();
        for (int i = 0; i + 1 < sizes.Length; i++)
        {
            layers.Add(new Linear(sizes[i], sizes[i + 1], true, generator, dtype, device));
            if (i + 2 < sizes.Length)
            {
                layers.Add(new Activation(activation));
                if (dropout > 0) layers.Add(new Dropout(dropout, generator));
            }
        }
        _net = RegisterModule("layers", new Sequential([.. layers]));
    }

    /// <summary>The widths, input first.</summary>
    public IReadOnlyList<int> Sizes { get; }

    /// <inheritdoc/>
    /// <remarks>A linear layer and the ReLU after it run as one <see cref="Tensor.Linear"/> with the activation fused
    /// (applied to each output tile while it is in cache, and the gradient masked once in the backward), unless a hook
    /// is registered on either (or on the chain), so that each hook still sees its own module's input and output.</remarks>
    public override Tensor Forward(Tensor input)
    {
        if (_net.Hooked) return _net.Call(input);
        var x = input;
        var layers = _net.Layers;
        for (int i = 0; i < layers.Count; i++)
        {
            if (layers[i] is Linear { Hooked: false } linear && i + 1 < layers.Count && layers[i + 1] is Activation { Kind: ActivationKind.Relu, Hooked: false })
            {
                x = linear.Forward(x, relu: true);
                i++;
            }
            else x = layers[i].Call(x);
        }
        return x;
    }
}
