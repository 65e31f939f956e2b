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
