using Kiln.NN;

namespace Kiln.Methods.Generative;

/// <summary>
/// Conditional flow matching with a transformer over the observations for Bayesian inverse problems (Sherki et al.,
/// <i>Combining Flow Matching and Transformers for Efficient Solution of Bayesian Inverse Problems</i>): a set of
/// observations y₁…y_K of the unknown x is embedded, mixed by non-causal transformer blocks without positions
/// (the set is unordered), mean-pooled over the present observations and joined by log K; the velocity MLP reads
/// (x_t, t, context). Trained by <see cref="FlowMatching.Loss"/> on pairs (x, y) drawn from the prior and the forward
/// model, it samples the posterior p(x | y) by integrating from x₀ ~ N(0, I) (<see cref="FlowMatching.Sample"/>).
/// </summary>
public sealed class FlowMatchingTransformer : Module
{
    readonly TransformerBlock[] _blocks;

    /// <summary>
    /// Creates the model for unknowns of <paramref name="parameterDim"/> and observations of
    /// <paramref name="observationDim"/> features (a measurement, with its sensor location if it has one).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive, or width is not a multiple of heads.</exception>
    public FlowMatchingTransformer(int parameterDim, int observationDim, int width = 32, int heads = 2, int layers = 1, int hidden = 64,
        Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        const string op = "flow_matching_transformer";
        foreach (var (v, name) in new[] { (parameterDim, nameof(parameterDim)), (observationDim, nameof(observationDim)), (width, nameof(width)), (heads, nameof(heads)), (layers, nameof(layers)), (hidden, nameof(hidden)) })
            if (v < 1) throw new ArgumentOutOfRangeException(name, v, $"{op}: {name} must be positive");
        if (width % heads != 0) throw new ArgumentOutOfRangeException(nameof(heads), heads, $"{op}: width {width} must be a multiple of heads {heads}");
        ParameterDim = parameterDim; ObservationDim = observationDim; Width = width;
        Embed = RegisterModule("embed", new Linear(observationDim, width, true, generator, dtype, device));
        _blocks = [.. Enumerable.Range(0, layers).Select(i => RegisterModule($"block{i}",
            new TransformerBlock(width, heads, 2 * width, causal: false, rotary: false, generator: generator, dtype: dtype, device: device)))];
        Head = RegisterModule("velocity", new MLP([parameterDim + 1 + width + 1, hidden, hidden, parameterDim], ActivationKind.Silu, 0, generator, dtype, device));
    }

    /// <summary>Size of the unknown x.</summary>
    public int ParameterDim { get; }
    /// <summary>Features per observation.</summary>
    public int ObservationDim { get; }
    /// <summary>Width of the observation encoder.</summary>
    public int Width { get; }
    /// <summary>Embedding of each observation.</summary>
    public Linear Embed { get; }
    /// <summary>The encoder's transformer blocks (non-causal, no positions).</summary>
    public IReadOnlyList<TransformerBlock> Blocks => _blocks;
    /// <summary>The velocity network on [x_t, t, pooled encoding, log K].</summary>
    public MLP Head { get; }

    /// <summary>
    /// The context [B, Width + 1] of observation sets [B, K, ObservationDim]: the encoder's outputs averaged over the
    /// observations <paramref name="mask"/> [B, K] marks present (all when null), and log of their count (mean pooling
    /// and attention cannot tell a set from its copies, while the posterior sharpens with K).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The observations or mask have the wrong shape.</exception>
    /// <exception cref="ArgumentException">The mask is not Bool or leaves a set empty.</exception>
    public Tensor Encode(Tensor observations, Tensor? mask = null)
    {
        const string op = "flow_matching_transformer_encode";
        ArgumentNullException.ThrowIfNull(observations);
        if (observations.Rank != 3 || observations.Shape[2] != ObservationDim || observations.Shape[1] < 1)
            throw new ShapeMismatchException(op, nameof(observations), $"observations must be [batch, K >= 1, {ObservationDim}], got {observations.Shape}");
        int b = observations.Shape[0], k = observations.Shape[1];
        Tensor weights;
        Tensor? attend = null;
        if (mask is null) weights = Tensor.Ones(new Shape(b, k, 1), observations.DType, observations.Device);
        else
        {
            if (mask.DType != DType.Bool) throw new ArgumentException($"{op}: mask must be Bool (true = present), not {mask.DType}", nameof(mask));
            if (mask.Shape != new Shape(b, k)) throw new ShapeMismatchException(op, nameof(mask), new Shape(b, k), mask.Shape);
            weights = mask.To(observations.DType).Unsqueeze(2);
            if (b > 0 && weights.Sum([1, 2]).Min().Item() < 1) throw new ArgumentException($"{op}: every observation set needs at least one present observation", nameof(mask));
            attend = mask.Reshape(b, 1, 1, k);
        }
        var h = Embed.Call(observations);
        foreach (var block in _blocks) h = block.Call(h, attend);
        var count = weights.Sum(1);
        return Tensor.Concat([(h * weights).Sum(1) / count, count.Log()], 1);
    }

    /// <summary>v_θ(x_t, t, context) [n, ParameterDim] for x_t [n, ParameterDim], t [n] and a context from <see cref="Encode"/> with n rows or one (shared).</summary>
    /// <exception cref="ShapeMismatchException">The shapes do not agree.</exception>
    public Tensor Velocity(Tensor xt, Tensor t, Tensor context)
    {
        const string op = "flow_matching_transformer_velocity";
        if (xt.Rank != 2 || xt.Shape[1] != ParameterDim) throw new ShapeMismatchException(op, nameof(xt), $"xt must be [n, {ParameterDim}], got {xt.Shape}");
        int n = xt.Shape[0];
        if (t.Shape != new Shape(n)) throw new ShapeMismatchException(op, nameof(t), new Shape(n), t.Shape);
        if (context.Rank != 2 || context.Shape[1] != Width + 1 || (context.Shape[0] != n && context.Shape[0] != 1))
            throw new ShapeMismatchException(op, nameof(context), $"context must be [{n} or 1, {Width + 1}], got {context.Shape}");
        if (context.Shape[0] != n) context = context.Expand(n, Width + 1);
        return Head.Call(Tensor.Concat([xt, t.Reshape(n, 1).To(xt.DType), context], 1));
    }

    /// <summary>
    /// The flow matching loss (1/n) Σᵢ ‖v_θ(x_t,i, tᵢ, yᵢ) − (x₁,i − x₀,i)‖² for noise x₀ [n, d], unknowns x₁ [n, d] drawn
    /// from the prior, times t [n] and their observation sets [n, K, ObservationDim] (mask as in <see cref="Encode"/>).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not agree.</exception>
    public Tensor Loss(Tensor x0, Tensor x1, Tensor t, Tensor observations, Tensor? mask = null)
    {
        var context = Encode(observations, mask);
        if (context.Shape[0] != x0.Shape[0]) throw new ShapeMismatchException("flow_matching_transformer_loss", nameof(observations), $"{observations.Shape[0]} observation sets for {x0.Shape[0]} rows");
        return FlowMatching.Loss((x, s) => Velocity(x, s, context), x0, x1, t);
    }

    /// <summary>
    /// Posterior samples: integrates from noise x₀ [n, d] to t = 1 given observation sets [n or 1, K, ObservationDim]
    /// (one set is shared by all rows; it is encoded once) with <paramref name="steps"/> steps of <paramref name="method"/>.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not agree.</exception>
    /// <exception cref="ArgumentOutOfRangeException">steps is below 1.</exception>
    public Tensor Sample(Tensor x0, Tensor observations, Tensor? mask = null, int steps = 32, OdeMethod method = OdeMethod.Heun)
    {
        var context = Encode(observations, mask);
        return FlowMatching.Sample((x, s) => Velocity(x, Tensor.Full(new Shape(x.Shape[0]), s, x.DType, x.Device), context), x0, steps, method);
    }
}
