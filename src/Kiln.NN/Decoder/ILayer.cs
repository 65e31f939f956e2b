namespace Kiln.NN.Decoder;

/// <summary>
/// One residual layer of a stack, x -> x (a pre-norm transformer layer computes x + F(x)). The layer sees the sequence
/// through <see cref="SequenceContext"/>: the position of the first row of x and the KV cache, if any.
/// </summary>
public interface ILayer
{
    /// <summary>
    /// Maps the hidden states <paramref name="x"/> ([batch, positions, width] for transformer layers) to the layer's output.
    /// With <paramref name="write"/> the layer stashes whatever it contributes to the cache (keys and values) for this
    /// call; without it, it reads the cache but changes nothing, so it can be evaluated many times per call.
    /// </summary>
    Tensor Forward(Tensor x, SequenceContext ctx, bool write);
}

/// <summary>What a layer knows about the sequence in one forward call.</summary>
/// <param name="Position">Absolute position of the first row of the input (the number of tokens seen before this call).</param>
/// <param name="Cache">The KV cache of the call, or null for a stateless forward.</param>
/// <param name="State">Model-specific data computed once per call and shared by the layers (a transformer's RoPE tables).</param>
public sealed record SequenceContext(int Position, KvCache? Cache, object? State = null)
{
    /// <summary>A stateless context starting at position 0.</summary>
    public static SequenceContext Stateless { get; } = new(0, null);
}

/// <summary>
/// Runs a <see cref="DecoderModel"/>'s layer stack in one forward call in place of the plain pass (every layer once, each
/// writing its cache entries). Methods that change how the stack is evaluated but not its weights implement it, such as
/// the training-free loops of <c>Kiln.Methods.Looping</c>.
/// </summary>
public interface IStackRunner
{
    /// <summary>
    /// Maps the embedded tokens <paramref name="x"/> [batch, positions, hidden] through <paramref name="model"/>'s
    /// <see cref="DecoderModel.Layers"/> with <paramref name="ctx"/>; the model then commits the cache and applies its final norm.
    /// </summary>
    Tensor Run(DecoderModel model, Tensor x, SequenceContext ctx);
}
