using Kiln.NN.Decoder;

namespace Kiln.Distributed.Tests;

/// <summary>A decoder small enough for two ranks on a loaded CI machine, with every projection that tensor parallelism splits.</summary>
static class Tiny
{
    public static DecoderConfig Config { get; } = new()
    {
        ModelType = "qwen3", VocabSize = 19, HiddenSize = 12, IntermediateSize = 20, Layers = 2, Heads = 4, KvHeads = 2, HeadDim = 4,
        QkNorm = true, AttentionBias = true, MaxPositions = 64,
    };

    public static Dictionary<string, Tensor> Weights(DType dtype) => DecoderWeights.Init(Config, new Generator(7), std: 0.3, normJitter: 0.1, dtype: dtype);

    // A batch of token ids [batch, positions] and next-token targets, the same on every rank.
    public static (long[] Input, long[] Target) Batch(int batch, int context, int seed)
    {
        var rng = new Random(seed);
        var input = new long[batch * context];
        var target = new long[batch * context];
        for (int i = 0; i < input.Length; i++) { input[i] = rng.Next(Config.VocabSize); target[i] = rng.Next(Config.VocabSize); }
        return (input, target);
    }

    public static Tensor Loss(DecoderModel model, long[] input, long[] target, int rows, int context)
    {
        var logits = model.Forward(Tensor.FromArray(input, new Shape(rows, context)));
        return -logits.LogSoftmax(-1).Gather(2, Tensor.FromArray(target, new Shape(rows, context, 1))).Mean();
    }
}
