namespace Kiln.NN;

/// <summary>
/// The hyperspherical normalization of SimbaV2 (Lee et al., "Hyperspherical Normalization for Scalable Deep
/// Reinforcement Learning", ICML 2025): features live on the unit sphere (l2-normalized over the last axis after every
/// layer), weights live on the unit sphere (each output unit's weight row is projected back to unit norm after every
/// optimizer step), and learnable scalers restore the magnitudes a unit-norm weight cannot express.
/// </summary>
public static class Hypersphere
{
    /// <summary>The floor of the norm in <see cref="L2Normalize"/>, so a zero vector maps to zero rather than NaN (the paper's code uses 1e-8).</summary>
    public const double NormFloor = 1e-8;

    /// <summary>x / max(||x||, 1e-8) over the last axis: a point of the unit sphere for every nonzero row.</summary>
    /// <exception cref="ArgumentException">The input is a scalar.</exception>
    public static Tensor L2Normalize(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Rank == 0) throw new ArgumentException("l2_normalize: input must have at least one dimension, got a scalar", nameof(x));
        return x / x.Norm(2, [x.Rank - 1], keepDim: true).Clamp(min: NormFloor);
    }

    /// <summary>
    /// The paper's input projection: the constant <paramref name="shift"/> is appended to each row of x [..., d] and the
    /// result [..., d + 1] is l2-normalized, so even a zero observation lands on the sphere and the norm of x survives
    /// as the angle to the new axis.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">shift is not positive and finite.</exception>
    public static Tensor ShiftProject(Tensor x, double shift = 3.0)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (!(shift > 0 && double.IsFinite(shift))) throw new ArgumentOutOfRangeException(nameof(shift), shift, "shift_project: shift must be positive and finite");
        if (x.Rank == 0) throw new ArgumentException("shift_project: input must have at least one dimension, got a scalar", nameof(x));
        var dims = x.Shape.ToArray(); dims[^1] = 1;
        return L2Normalize(Tensor.Concat([x, Tensor.Full(new Shape(dims), shift, x.DType, x.Device)], x.Rank - 1));
    }

    /// <summary>
    /// Projects the weight of every <see cref="HyperLinear"/> in <paramref name="model"/> back onto the unit sphere, row
    /// by row (w_i = w_i / max(||w_i||, 1e-8), the closest unit vector to w_i), in place and outside the graph. Call it
    /// after every optimizer step. Other parameters (scalers, biases) are left as they are. Returns the number of layers projected.
    /// </summary>
    public static int ProjectWeights_(Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        int count = 0;
        using (Autograd.NoGrad())
            foreach (var (_, m) in model.NamedModules())
                if (m is HyperLinear h)
                {
                    h.Weight.Copy_(L2Normalize(h.Weight));
                    count++;
                }
        return count;
    }
}

/// <summary>
/// A learnable per-feature scale with a decoupled parameterization: the parameter s starts at <see cref="Scale"/> and
/// the output is x * s * (init / scale), so the effective scale starts at <see cref="Init"/> while <see cref="Scale"/>
/// sets how fast an optimizer moves it (SimbaV2's Scaler, after nGPT).
/// </summary>
public sealed class Scaler : Module<Tensor, Tensor>
{
    /// <summary>Creates the scaler for inputs whose last dimension is <paramref name="dim"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">dim is not positive, or init or scale is not positive and finite.</exception>
    public Scaler(int dim, double init = 1, double scale = 1, DType dtype = DType.Float32, Device? device = null)
    {
        if (dim <= 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "scaler: dim must be positive");
        if (!(init > 0 && double.IsFinite(init))) throw new ArgumentOutOfRangeException(nameof(init), init, "scaler: init must be positive and finite");
        if (!(scale > 0 && double.IsFinite(scale))) throw new ArgumentOutOfRangeException(nameof(scale), scale, "scaler: scale must be positive and finite");
        Init = init; Scale = scale;
        Weight = RegisterParameter("scaler", new Parameter(Tensor.Full([dim], scale, dtype, device)));
    }

    /// <summary>The effective scale at initialization.</summary>
    public double Init { get; }
    /// <summary>The stored parameter's initial value.</summary>
    public double Scale { get; }
    /// <summary>s [dim].</summary>
    public Parameter Weight { get; }
    /// <summary>The effective scale s * init / scale [dim].</summary>
    public Tensor Effective => Weight * (Init / Scale);

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => input * Effective;
}

/// <summary>
/// A bias-free linear layer whose weight rows lie on the unit sphere (SimbaV2's HyperDense): W [out, in] starts
/// orthogonal (<see cref="Init.Orthogonal_"/>) with each row then projected to unit norm, and stays there when
/// <see cref="Hypersphere.ProjectWeights_"/> runs after each optimizer step. An optional <see cref="Scaler"/> follows.
/// </summary>
public sealed class HyperLinear : Module<Tensor, Tensor>
{
    /// <summary>Creates the layer; with <paramref name="useScaler"/> a <see cref="Scaler"/>(out, scalerInit, scalerScale) follows the product.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive.</exception>
    public HyperLinear(int inFeatures, int outFeatures, bool useScaler = false, double scalerInit = 1, double scalerScale = 1, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        if (inFeatures <= 0) throw new ArgumentOutOfRangeException(nameof(inFeatures), inFeatures, "hyper_linear: inFeatures must be positive");
        if (outFeatures <= 0) throw new ArgumentOutOfRangeException(nameof(outFeatures), outFeatures, "hyper_linear: outFeatures must be positive");
        InFeatures = inFeatures; OutFeatures = outFeatures;
        var w = Init.Orthogonal_(Tensor.Empty([outFeatures, inFeatures], dtype, device), 1, generator);
        Weight = RegisterParameter("weight", new Parameter(Hypersphere.L2Normalize(w)));
        if (useScaler) Scaler = RegisterModule("scaler", new Scaler(outFeatures, scalerInit, scalerScale, dtype, device));
    }

    /// <summary>Input width.</summary>
    public int InFeatures { get; }
    /// <summary>Output width.</summary>
    public int OutFeatures { get; }
    /// <summary>W [out, in], unit-norm rows.</summary>
    public Parameter Weight { get; }
    /// <summary>The scaler after the product, or null.</summary>
    public Scaler? Scaler { get; }

    /// <inheritdoc/>
    /// <exception cref="ShapeMismatchException">The last dimension of the input is not <see cref="InFeatures"/>.</exception>
    public override Tensor Forward(Tensor input)
    {
        if (input.Rank == 0 || input.Shape[-1] != InFeatures)
            throw new ShapeMismatchException("hyper_linear", nameof(input), $"input has shape {input.Shape}; its last dimension must be {InFeatures}");
        var y = Tensor.Linear(input, Weight);
        return Scaler is null ? y : Scaler.Call(y);
    }
}

/// <summary>
/// SimbaV2's residual block on the unit sphere: h~ = l2norm(W2 (relu(s * W1 h) + 1e-8)) with W1 [4d, d] followed by a
/// <see cref="Scaler"/> and W2 [d, 4d], both <see cref="HyperLinear"/>; then the residual becomes a normalized linear
/// interpolation, out = l2norm(h + alpha * (h~ - h)), with alpha a learnable per-feature <see cref="Scaler"/>-style
/// vector (effective value alphaInit at first). Input and output rows are unit vectors of width d.
/// </summary>
public sealed class HyperResidualBlock : Module<Tensor, Tensor>
{
    const double ReluFloor = 1e-8;

    /// <summary>Creates the block for width <paramref name="dim"/> (the paper's defaults: scaler init and scale 1/sqrt(d), alpha scale 1/sqrt(d)).</summary>
    /// <exception cref="ArgumentOutOfRangeException">dim or expansion is not positive, or an init or scale is not positive and finite.</exception>
    public HyperResidualBlock(int dim, double scalerInit, double scalerScale, double alphaInit, double alphaScale, int expansion = 4, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        if (dim <= 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "hyper_residual_block: dim must be positive");
        if (expansion <= 0) throw new ArgumentOutOfRangeException(nameof(expansion), expansion, "hyper_residual_block: expansion must be positive");
        Up = RegisterModule("w1", new HyperLinear(dim, dim * expansion, true, scalerInit, scalerScale, generator, dtype, device));
        Down = RegisterModule("w2", new HyperLinear(dim * expansion, dim, false, generator: generator, dtype: dtype, device: device));
        Alpha = RegisterModule("alpha", new Scaler(dim, alphaInit, alphaScale, dtype, device));
    }

    /// <summary>W1 with its scaler.</summary>
    public HyperLinear Up { get; }
    /// <summary>W2.</summary>
    public HyperLinear Down { get; }
    /// <summary>The interpolation rate alpha.</summary>
    public Scaler Alpha { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        var h = Hypersphere.L2Normalize(Down.Call(Up.Call(input).Relu() + ReluFloor));
        return Hypersphere.L2Normalize(input + Alpha.Call(h - input));
    }
}

/// <summary>
/// SimbaV2's encoder: <see cref="Hypersphere.ShiftProject"/> of the observation [..., in] to the sphere in in + 1
/// dimensions, an embedding <see cref="HyperLinear"/> to <c>hidden</c> with a scaler (init 1, scale 1), l2-normalization,
/// then <c>blocks</c> <see cref="HyperResidualBlock"/>s with the paper's settings (scaler init and scale 1/sqrt(hidden),
/// alpha init 1/(blocks + 1), alpha scale 1/sqrt(hidden)). Output [..., hidden], unit rows.
/// </summary>
public sealed class HyperEncoder : Module<Tensor, Tensor>
{
    readonly HyperLinear _embed;
    readonly HyperResidualBlock[] _blocks;

    /// <summary>Creates the encoder.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is negative or zero (blocks may be 0), or shift is not positive.</exception>
    public HyperEncoder(int inFeatures, int hidden, int blocks, double shift = 3.0, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        if (inFeatures <= 0) throw new ArgumentOutOfRangeException(nameof(inFeatures), inFeatures, "hyper_encoder: inFeatures must be positive");
        if (hidden <= 0) throw new ArgumentOutOfRangeException(nameof(hidden), hidden, "hyper_encoder: hidden must be positive");
        if (blocks < 0) throw new ArgumentOutOfRangeException(nameof(blocks), blocks, "hyper_encoder: blocks must not be negative");
        if (!(shift > 0 && double.IsFinite(shift))) throw new ArgumentOutOfRangeException(nameof(shift), shift, "hyper_encoder: shift must be positive and finite");
        Shift = shift;
        _embed = RegisterModule("embed", new HyperLinear(inFeatures + 1, hidden, true, generator: generator, dtype: dtype, device: device));
        double s = 1 / Math.Sqrt(hidden);
        _blocks = Enumerable.Range(0, blocks)
            .Select(i => RegisterModule($"block{i}", new HyperResidualBlock(hidden, s, s, 1.0 / (blocks + 1), s, generator: generator, dtype: dtype, device: device)))
            .ToArray();
    }

    /// <summary>The constant appended by the input projection.</summary>
    public double Shift { get; }
    /// <summary>The residual blocks.</summary>
    public IReadOnlyList<HyperResidualBlock> Blocks => _blocks;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        var h = Hypersphere.L2Normalize(_embed.Call(Hypersphere.ShiftProject(input, Shift)));
        foreach (var b in _blocks) h = b.Call(h);
        return h;
    }
}
