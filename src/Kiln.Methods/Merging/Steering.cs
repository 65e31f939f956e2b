using Kiln.NN;
using Kiln.NN.Decoder;

namespace Kiln.Methods.Merging;

/// <summary>
/// Activation steering: a direction v added to one layer's output, h_L &lt;- h_L + scale * v, at every position. The
/// direction is commonly the difference of mean activations on contrasting inputs (contrastive activation addition).
/// </summary>
public static class Steering
{
    /// <summary>mean(positive) - mean(negative) over the rows of [n, d] and [m, d] activations: the steering direction [d].</summary>
    /// <exception cref="ShapeMismatchException">The inputs are not matrices of the same width, or one has no rows.</exception>
    public static Tensor MeanDifference(Tensor positive, Tensor negative)
    {
        ArgumentNullException.ThrowIfNull(positive); ArgumentNullException.ThrowIfNull(negative);
        if (positive.Rank != 2 || negative.Rank != 2 || positive.Shape[1] != negative.Shape[1] || positive.Shape[0] == 0 || negative.Shape[0] == 0)
            throw new ShapeMismatchException("steering", nameof(negative), $"activations must be [n, d] and [m, d] with n, m > 0; got {positive.Shape} and {negative.Shape}");
        return positive.Mean(0) - negative.Mean(0);
    }

    /// <summary>
    /// A forward hook for <paramref name="module"/> that adds <paramref name="scale"/> * <paramref name="direction"/> to its
    /// output (broadcast over the leading dimensions); dispose the returned handle to remove it.
    /// </summary>
    public static IDisposable AddTo(Module<Tensor, Tensor> module, Tensor direction, double scale)
    {
        ArgumentNullException.ThrowIfNull(module); ArgumentNullException.ThrowIfNull(direction);
        return module.RegisterForwardHook((_, _, output) => output + direction * scale);
    }
}

/// <summary>
/// Runs a <see cref="DecoderModel"/>'s layer stack and adds scale * direction to the output of layer <see cref="Layer"/>
/// (a stack runner is the decoder's forward hook point): <c>model.Generate(prompt, n, runner: steering)</c> decodes steered.
/// With <see cref="Capture"/> it also records that layer's (unsteered) output of the last call, for building directions and probes.
/// </summary>
public sealed class SteeringRunner : IStackRunner
{
    /// <summary>Steers after layer <paramref name="layer"/> (0-based) by <paramref name="scale"/> * <paramref name="direction"/> [hidden]; a null direction only captures.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The layer is negative or the scale is not finite.</exception>
    public SteeringRunner(int layer, Tensor? direction, double scale = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        if (!double.IsFinite(scale)) throw new ArgumentOutOfRangeException(nameof(scale), scale, "steering: the scale must be finite");
        Layer = layer; Direction = direction; Scale = scale;
    }

    /// <summary>The layer whose output is steered.</summary>
    public int Layer { get; }
    /// <summary>The direction [hidden], or null.</summary>
    public Tensor? Direction { get; }
    /// <summary>The multiplier of the direction.</summary>
    public double Scale { get; }
    /// <summary>The layer's output [batch, positions, hidden] in the last call, before steering.</summary>
    public Tensor? Capture { get; private set; }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">The model has no layer <see cref="Layer"/>.</exception>
    /// <exception cref="ShapeMismatchException">The direction is not [hidden].</exception>
    public Tensor Run(DecoderModel model, Tensor x, SequenceContext ctx)
    {
        ArgumentNullException.ThrowIfNull(model); ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(ctx);
        if (Layer >= model.Layers.Count) throw new ArgumentOutOfRangeException(nameof(model), Layer, $"steering: layer {Layer} of a {model.Layers.Count}-layer model");
        if (Direction is not null && (Direction.Rank != 1 || Direction.Shape[0] != model.Config.HiddenSize))
            throw new ShapeMismatchException("steering", nameof(Direction), $"direction has shape {Direction.Shape}; it must be [{model.Config.HiddenSize}]");
        for (int i = 0; i < model.Layers.Count; i++)
        {
            x = model.Layers[i].Forward(x, ctx, true);
            if (i != Layer) continue;
            Capture = x;
            if (Direction is not null) x = x + Direction.To(x.DType).To(x.Device) * Scale;
        }
        return x;
    }
}
