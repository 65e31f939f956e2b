using Kiln.IO;

namespace Kiln.NN.Decoder;

/// <summary>Names, fresh initial values and checkpoint files of a decoder's weights, in Hugging Face layout ([out, in] linear weights).</summary>
public static class DecoderWeights
{
    /// <summary>Every tensor name and shape the model reads for <paramref name="c"/>, in checkpoint order.</summary>
    public static IEnumerable<(string Name, int[] Shape)> Layout(DecoderConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        int d = c.HiddenSize, qd = c.Heads * c.HeadDim, kvd = c.KvHeads * c.HeadDim, f = c.IntermediateSize;
        yield return ("model.embed_tokens.weight", [c.VocabSize, d]);
        for (int i = 0; i < c.Layers; i++)
        {
            string p = $"model.layers.{i}.";
            yield return (p + "input_layernorm.weight", [d]);
            if (c.Mla is { } a)
                foreach (var t in MlaLayout(c, a, p)) yield return t;
            else
            {
                yield return (p + "self_attn.q_proj.weight", [qd, d]);
                yield return (p + "self_attn.k_proj.weight", [kvd, d]);
                yield return (p + "self_attn.v_proj.weight", [kvd, d]);
                yield return (p + "self_attn.o_proj.weight", [d, qd]);
                if (c.AttentionBias)
                {
                    yield return (p + "self_attn.q_proj.bias", [qd]);
                    yield return (p + "self_attn.k_proj.bias", [kvd]);
                    yield return (p + "self_attn.v_proj.bias", [kvd]);
                }
                if (c.QkNorm)
                {
                    yield return (p + "self_attn.q_norm.weight", [c.HeadDim]);
                    yield return (p + "self_attn.k_norm.weight", [c.HeadDim]);
                }
            }
            yield return (p + "post_attention_layernorm.weight", [d]);
            if (c.IsMoeLayer(i))
            {
                var m = c.Moe!;
                yield return (p + "mlp.gate.weight", [m.Experts, d]);
                if (m.CorrectionBias) yield return (p + "mlp.gate.e_score_correction_bias", [m.Experts]);
                for (int e = 0; e < m.Experts; e++)
                    foreach (var t in SwiGlu($"{p}mlp.experts.{e}.", d, m.IntermediateSize)) yield return t;
                if (m.SharedExperts > 0)
                    foreach (var t in SwiGlu(p + "mlp.shared_experts.", d, m.IntermediateSize * m.SharedExperts)) yield return t;
            }
            else
                foreach (var t in SwiGlu(p + "mlp.", d, f)) yield return t;
        }
        yield return ("model.norm.weight", [d]);
        if (!c.TieWordEmbeddings) yield return ("lm_head.weight", [c.VocabSize, d]);
    }

    static IEnumerable<(string, int[])> SwiGlu(string p, int d, int f)
    {
        yield return (p + "gate_proj.weight", [f, d]);
        yield return (p + "up_proj.weight", [f, d]);
        yield return (p + "down_proj.weight", [d, f]);
    }

    static IEnumerable<(string, int[])> MlaLayout(DecoderConfig c, MlaConfig a, string p)
    {
        int d = c.HiddenSize, h = c.Heads;
        if (a.QLoraRank is { } r)
        {
            yield return (p + "self_attn.q_a_proj.weight", [r, d]);
            yield return (p + "self_attn.q_a_layernorm.weight", [r]);
            yield return (p + "self_attn.q_b_proj.weight", [h * a.QkHeadDim, r]);
        }
        else yield return (p + "self_attn.q_proj.weight", [h * a.QkHeadDim, d]);
        yield return (p + "self_attn.kv_a_proj_with_mqa.weight", [a.KvLoraRank + a.QkRopeHeadDim, d]);
        yield return (p + "self_attn.kv_a_layernorm.weight", [a.KvLoraRank]);
        yield return (p + "self_attn.kv_b_proj.weight", [h * (a.QkNopeHeadDim + a.VHeadDim), a.KvLoraRank]);
        yield return (p + "self_attn.o_proj.weight", [d, h * a.VHeadDim]);
    }

    /// <summary>
    /// Random weights: normal(0, <paramref name="std"/>) for matrices and biases (output projections scaled by
    /// 1/sqrt(2 layers), as GPT-2 does, so the residual stream starts near unit size), and norm gains 1 + normal(0, <paramref name="normJitter"/>).
    /// </summary>
    public static Dictionary<string, Tensor> Init(DecoderConfig c, Generator generator, double std = 0.02, double normJitter = 0, DType dtype = DType.Float32)
    {
        ArgumentNullException.ThrowIfNull(generator);
        var w = new Dictionary<string, Tensor>();
        foreach (var (name, shape) in Layout(c))
        {
            bool norm = name.EndsWith("norm.weight", StringComparison.Ordinal);
            bool output = name.EndsWith("o_proj.weight", StringComparison.Ordinal) || name.EndsWith("down_proj.weight", StringComparison.Ordinal);
            w[name] = norm
                ? Tensor.Randn(new Shape(shape), generator, 1, normJitter, dtype)
                : Tensor.Randn(new Shape(shape), generator, 0, output ? std / Math.Sqrt(2 * c.Layers) : std, dtype);
        }
        return w;
    }

    /// <summary>
    /// Checks that a model of <paramref name="c"/> splits over <paramref name="worldSize"/> tensor-parallel ranks: the
    /// query heads, key-value heads and MLP width must divide by it.
    /// </summary>
    /// <exception cref="NotSupportedException">The model uses MLA attention or MoE layers, which Kiln does not split.</exception>
    /// <exception cref="ArgumentException">A split dimension does not divide by the world size (the message names it).</exception>
    public static void CheckShardable(DecoderConfig c, int worldSize)
    {
        ArgumentNullException.ThrowIfNull(c);
        if (worldSize < 1) throw new ArgumentOutOfRangeException(nameof(worldSize), worldSize, "tensor parallel: the world size must be positive");
        if (c.Mla is not null || c.Moe is not null)
            throw new NotSupportedException($"tensor parallel: {c.ModelType} with {(c.Mla is not null ? "MLA attention" : "MoE layers")} is not split by Kiln; run it in one process");
        foreach (var (what, n) in new[] { ("num_attention_heads", c.Heads), ("num_key_value_heads", c.KvHeads), ("intermediate_size", c.IntermediateSize) })
            if (n % worldSize != 0)
                throw new ArgumentException($"tensor parallel: {what} = {n} does not divide by {worldSize} ranks", nameof(worldSize));
    }

    /// <summary>
    /// This rank's shard of the checkpoint tensor <paramref name="name"/> (full value <paramref name="full"/>) for a
    /// tensor-parallel <see cref="DecoderModel"/>: rows of the column-parallel q/k/v, gate and up projections (and of the
    /// q/k/v biases), columns of the row-parallel o and down projections, every other tensor whole.
    /// </summary>
    public static Tensor Shard(DecoderConfig c, string name, Tensor full, int rank, int worldSize)
    {
        ArgumentNullException.ThrowIfNull(c); ArgumentNullException.ThrowIfNull(name); ArgumentNullException.ThrowIfNull(full);
        int? axis = !name.StartsWith("model.layers.", StringComparison.Ordinal) ? null
            : name.EndsWith("q_proj.weight", StringComparison.Ordinal) || name.EndsWith("k_proj.weight", StringComparison.Ordinal)
              || name.EndsWith("v_proj.weight", StringComparison.Ordinal) || name.EndsWith("_proj.bias", StringComparison.Ordinal)
              || name.EndsWith("gate_proj.weight", StringComparison.Ordinal) || name.EndsWith("up_proj.weight", StringComparison.Ordinal) ? 0
            : name.EndsWith("o_proj.weight", StringComparison.Ordinal) || name.EndsWith("down_proj.weight", StringComparison.Ordinal) ? 1
            : null;
        return axis is { } a ? TensorParallel.Shard(full, a, rank, worldSize, name) : full;
    }

    /// <summary>Every tensor of <paramref name="weights"/> as this rank's shard (see <see cref="Shard(DecoderConfig, string, Tensor, int, int)"/>).</summary>
    /// <exception cref="NotSupportedException">The model cannot be split (see <see cref="CheckShardable"/>).</exception>
    /// <exception cref="ArgumentException">A split dimension does not divide by the world size.</exception>
    public static Dictionary<string, Tensor> Shard(DecoderConfig c, IReadOnlyDictionary<string, Tensor> weights, int rank, int worldSize)
    {
        ArgumentNullException.ThrowIfNull(weights);
        CheckShardable(c, worldSize);
        return weights.ToDictionary(kv => kv.Key, kv => Shard(c, kv.Key, kv.Value, rank, worldSize));
    }

    /// <summary>
    /// Writes config.json and model.safetensors (the weights <see cref="Layout"/> names, in its order, converted to
    /// <paramref name="dtype"/>) into <paramref name="dir"/>, so that <see cref="DecoderModel.Load"/> reads them back.
    /// </summary>
    /// <exception cref="ArgumentException">A weight of the layout is missing (the message names it).</exception>
    public static void Save(string dir, DecoderConfig config, IReadOnlyDictionary<string, Tensor> weights, DType dtype = DType.BFloat16)
    {
        ArgumentNullException.ThrowIfNull(config); ArgumentNullException.ThrowIfNull(weights);
        var ordered = new Dictionary<string, Tensor>();
        foreach (var (name, _) in Layout(config))
            ordered[name] = weights.TryGetValue(name, out var t) ? t.Detach().To(dtype) : throw new ArgumentException($"checkpoint: no weight '{name}' to save", nameof(weights));
        string json = config.ToJson().Replace("\"float32\"", dtype == DType.BFloat16 ? "\"bfloat16\"" : dtype == DType.Float16 ? "\"float16\"" : "\"float32\"");
        HfCheckpoint.Write(dir, json, ordered);
    }
}
