using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kiln.NN.Decoder;

/// <summary>
/// Routed experts of a mixture-of-experts MLP (Qwen3-MoE, DeepSeek-V3). A sparse layer's MLP is
/// sum over the chosen experts of gate_e * SwiGLU_e(x), plus the shared experts' SwiGLU when there are any.
/// </summary>
public sealed record MoeConfig
{
    /// <summary>Routed experts (<c>num_experts</c>, <c>n_routed_experts</c>).</summary>
    public required int Experts { get; init; }
    /// <summary>Experts chosen per token (<c>num_experts_per_tok</c>).</summary>
    public required int ExpertsPerToken { get; init; }
    /// <summary>SwiGLU inner width of one expert (<c>moe_intermediate_size</c>).</summary>
    public required int IntermediateSize { get; init; }
    /// <summary>Renormalize the chosen experts' gates to sum to 1 (<c>norm_topk_prob</c>).</summary>
    public bool NormTopkProb { get; init; }
    /// <summary>"softmax" (Qwen3-MoE: softmax over all experts) or "sigmoid" (DeepSeek-V3: per-expert sigmoid, <c>scoring_func</c>).</summary>
    public string ScoringFunc { get; init; } = "softmax";
    /// <summary>The router has an <c>e_score_correction_bias</c> added to the scores for choosing experts only
    /// (DeepSeek-V3's <c>topk_method: noaux_tc</c>).</summary>
    public bool CorrectionBias { get; init; }
    /// <summary>Expert groups (<c>n_group</c>): a token first picks <see cref="TopkGroups"/> groups by the sum of each group's two best scores.</summary>
    public int Groups { get; init; } = 1;
    /// <summary>Groups a token may choose experts from (<c>topk_group</c>).</summary>
    public int TopkGroups { get; init; } = 1;
    /// <summary>Multiplier of the routed gates (<c>routed_scaling_factor</c>).</summary>
    public double RoutedScalingFactor { get; init; } = 1;
    /// <summary>Shared experts (<c>n_shared_experts</c>): one SwiGLU of width <see cref="IntermediateSize"/> times this, on every token.</summary>
    public int SharedExperts { get; init; }
    /// <summary>Qwen3-MoE: layer i is sparse when (i + 1) % step == 0 (<c>decoder_sparse_step</c>); DeepSeek-V3: when i % step == 0 (<c>moe_layer_freq</c>).</summary>
    public int SparseStep { get; init; } = 1;
    /// <summary>DeepSeek-V3: the first this many layers are dense (<c>first_k_dense_replace</c>).</summary>
    public int FirstDenseLayers { get; init; }
    /// <summary>Qwen3-MoE: layers with a dense MLP regardless of the step (<c>mlp_only_layers</c>).</summary>
    public IReadOnlyList<int> DenseLayers { get; init; } = [];

    /// <inheritdoc/>
    public bool Equals(MoeConfig? other) => other is not null && Experts == other.Experts && ExpertsPerToken == other.ExpertsPerToken
        && IntermediateSize == other.IntermediateSize && NormTopkProb == other.NormTopkProb && ScoringFunc == other.ScoringFunc
        && CorrectionBias == other.CorrectionBias && Groups == other.Groups && TopkGroups == other.TopkGroups
        && RoutedScalingFactor == other.RoutedScalingFactor && SharedExperts == other.SharedExperts && SparseStep == other.SparseStep
        && FirstDenseLayers == other.FirstDenseLayers && DenseLayers.SequenceEqual(other.DenseLayers);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Experts, ExpertsPerToken, IntermediateSize, ScoringFunc, SharedExperts, SparseStep, FirstDenseLayers, DenseLayers.Count);
}

/// <summary>
/// DeepSeek's multi-head latent attention: queries through an optional low-rank bottleneck, keys and values from a shared
/// compressed latent of width <see cref="KvLoraRank"/> plus one rotary key part of width <see cref="QkRopeHeadDim"/>
/// shared by all heads.
/// </summary>
public sealed record MlaConfig
{
    /// <summary>Query bottleneck width (<c>q_lora_rank</c>), or null for a direct <c>q_proj</c>.</summary>
    public int? QLoraRank { get; init; }
    /// <summary>Key/value latent width (<c>kv_lora_rank</c>).</summary>
    public required int KvLoraRank { get; init; }
    /// <summary>Per-head query/key width without RoPE (<c>qk_nope_head_dim</c>).</summary>
    public required int QkNopeHeadDim { get; init; }
    /// <summary>Per-head query/key width with RoPE (<c>qk_rope_head_dim</c>); the key part is shared by the heads.</summary>
    public required int QkRopeHeadDim { get; init; }
    /// <summary>Per-head value width (<c>v_head_dim</c>).</summary>
    public required int VHeadDim { get; init; }
    /// <summary>The rotary parts of q and k hold interleaved pairs (x0, x1), (x2, x3), ... (<c>rope_interleave</c>, default true):
    /// they are permuted to the half layout before RoPE, as Hugging Face's <c>apply_rotary_pos_emb_interleave</c> does.</summary>
    public bool RopeInterleave { get; init; } = true;

    /// <summary>Query/key width per head: <see cref="QkNopeHeadDim"/> + <see cref="QkRopeHeadDim"/>.</summary>
    public int QkHeadDim => QkNopeHeadDim + QkRopeHeadDim;
}

/// <summary>
/// The shape of a decoder-only pre-norm checkpoint, read from a Hugging Face <c>config.json</c>. Supported model types:
/// llama, mistral, qwen2 and qwen3 (dense: RMSNorm, RoPE, grouped-query attention, SwiGLU; qwen3 adds per-head q/k norms),
/// qwen3_moe (Qwen3 attention, routed experts with softmax gates) and deepseek_v3 (DeepSeek-V3 and Moonlight: multi-head
/// latent attention, sigmoid-routed experts with grouped top-k and shared experts).
/// </summary>
public sealed record DecoderConfig
{
    /// <summary>The <c>model_type</c> values this implementation runs.</summary>
    public static IReadOnlyList<string> SupportedTypes { get; } = ["llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "deepseek_v3"];

    /// <summary>The config's <c>model_type</c>.</summary>
    public required string ModelType { get; init; }
    /// <summary>Vocabulary size.</summary>
    public required int VocabSize { get; init; }
    /// <summary>Residual width.</summary>
    public required int HiddenSize { get; init; }
    /// <summary>SwiGLU inner width.</summary>
    public required int IntermediateSize { get; init; }
    /// <summary>Number of layers.</summary>
    public required int Layers { get; init; }
    /// <summary>Query heads.</summary>
    public required int Heads { get; init; }
    /// <summary>Key/value heads (grouped-query attention when fewer than <see cref="Heads"/>).</summary>
    public required int KvHeads { get; init; }
    /// <summary>Per-head query/key width (for MLA, <see cref="MlaConfig.QkHeadDim"/>).</summary>
    public required int HeadDim { get; init; }
    /// <summary>RMSNorm epsilon.</summary>
    public double RmsNormEps { get; init; } = 1e-6;
    /// <summary>RoPE base.</summary>
    public double RopeTheta { get; init; } = 10000;
    /// <summary>RoPE scaling, or null for plain RoPE.</summary>
    public RopeScaling? RopeScaling { get; init; }
    /// <summary>Context length of the config.</summary>
    public int MaxPositions { get; init; } = 4096;
    /// <summary>The output projection is the embedding matrix.</summary>
    public bool TieWordEmbeddings { get; init; }
    /// <summary>q/k/v projections have biases (qwen2).</summary>
    public bool AttentionBias { get; init; }
    /// <summary>Per-head RMSNorm of queries and keys before RoPE (qwen3).</summary>
    public bool QkNorm { get; init; }

    /// <summary>Routed experts (qwen3_moe, deepseek_v3), or null for a dense model.</summary>
    public MoeConfig? Moe { get; init; }
    /// <summary>Multi-head latent attention (deepseek_v3), or null for grouped-query attention.</summary>
    public MlaConfig? Mla { get; init; }

    /// <summary>Query heads per key/value head.</summary>
    public int Groups => Heads / KvHeads;

    /// <summary>Width RoPE rotates: the head dim, or <see cref="MlaConfig.QkRopeHeadDim"/> under MLA.</summary>
    public int RotaryDim => Mla?.QkRopeHeadDim ?? HeadDim;

    /// <summary>Whether layer <paramref name="layer"/> has routed experts (otherwise a dense SwiGLU of <see cref="IntermediateSize"/>).</summary>
    public bool IsMoeLayer(int layer) => Moe is { } m && (ModelType == "deepseek_v3"
        ? layer >= m.FirstDenseLayers && layer % m.SparseStep == 0
        : !m.DenseLayers.Contains(layer) && (layer + 1) % m.SparseStep == 0);

    /// <summary>Parses a Hugging Face config.json.</summary>
    /// <exception cref="NotSupportedException">The model type is not one this implementation runs (the message names it).</exception>
    /// <exception cref="InvalidDataException">The JSON is malformed or a required field is missing or inconsistent.</exception>
    public static DecoderConfig FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        try
        {
            return Parse(json);
        }
        // System.Text.Json.Nodes reports duplicate keys (ArgumentException), values of the wrong JSON type and lone
        // surrogate escapes (InvalidOperationException) and malformed numbers (FormatException) lazily, as they are read.
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"config.json: {e.Message}", e);
        }
    }

    static DecoderConfig Parse(string json)
    {
        JsonObject o;
        try { o = JsonNode.Parse(json) as JsonObject ?? throw new InvalidDataException("config.json: the top level is not an object"); }
        catch (JsonException e) { throw new InvalidDataException($"config.json: malformed JSON ({e.Message})", e); }
        string type = Str(o, "model_type") ?? throw new InvalidDataException("config.json: missing 'model_type'");
        if (!SupportedTypes.Contains(type))
            throw new NotSupportedException($"config.json: model_type '{type}' is not supported (supported: {string.Join(", ", SupportedTypes)})");
        int hidden = Int(o, "hidden_size"), heads = Int(o, "num_attention_heads");
        int kv = IntOr(o, "num_key_value_heads", heads);
        int headDim = IntOr(o, "head_dim", heads > 0 ? hidden / heads : 0);
        MlaConfig? mla = null;
        if (type == "deepseek_v3")
        {
            mla = new MlaConfig
            {
                QLoraRank = o["q_lora_rank"] is null ? null : Int(o, "q_lora_rank"),
                KvLoraRank = Int(o, "kv_lora_rank"), QkNopeHeadDim = Int(o, "qk_nope_head_dim"), QkRopeHeadDim = Int(o, "qk_rope_head_dim"),
                VHeadDim = Int(o, "v_head_dim"), RopeInterleave = BoolOr(o, "rope_interleave", true),
            };
            headDim = mla.QkHeadDim;
        }
        var cfg = new DecoderConfig
        {
            ModelType = type,
            VocabSize = Int(o, "vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = Int(o, "intermediate_size"),
            Layers = Int(o, "num_hidden_layers"),
            Heads = heads,
            KvHeads = kv,
            HeadDim = headDim,
            RmsNormEps = DoubleOr(o, "rms_norm_eps", 1e-6),
            RopeTheta = DoubleOr(o, "rope_theta", DoubleOr(o["rope_parameters"] as JsonObject, "rope_theta", 10000)),
            RopeScaling = Scaling((o["rope_scaling"] ?? o["rope_parameters"]) as JsonObject),
            MaxPositions = IntOr(o, "max_position_embeddings", 4096),
            TieWordEmbeddings = BoolOr(o, "tie_word_embeddings", false),
            AttentionBias = BoolOr(o, "attention_bias", type == "qwen2"),
            QkNorm = type is "qwen3" or "qwen3_moe",
            Moe = Experts(o, type),
            Mla = mla,
        };
        cfg.Validate();
        return cfg;
    }

    static MoeConfig? Experts(JsonObject o, string type)
    {
        if (type == "qwen3_moe")
        {
            if (IntOr(o, "num_experts", 0) == 0) return null;
            return new MoeConfig
            {
                Experts = Int(o, "num_experts"), ExpertsPerToken = Int(o, "num_experts_per_tok"), IntermediateSize = Int(o, "moe_intermediate_size"),
                NormTopkProb = BoolOr(o, "norm_topk_prob", false), SparseStep = IntOr(o, "decoder_sparse_step", 1),
                DenseLayers = o["mlp_only_layers"] is null ? [] : o["mlp_only_layers"] is JsonArray a
                    ? a.Select(n => n is JsonValue v && v.TryGetValue<int>(out int i) ? i : throw new InvalidDataException("config.json: 'mlp_only_layers' must hold integers")).ToArray()
                    : throw new InvalidDataException("config.json: 'mlp_only_layers' is not an array"),
            };
        }
        if (type != "deepseek_v3" || o["n_routed_experts"] is null) return null;
        string scoring = Str(o, "scoring_func") ?? "sigmoid", method = Str(o, "topk_method") ?? "noaux_tc";
        if (scoring != "sigmoid") throw new NotSupportedException($"config.json: scoring_func '{scoring}' is not supported for deepseek_v3 (sigmoid)");
        if (method != "noaux_tc") throw new NotSupportedException($"config.json: topk_method '{method}' is not supported for deepseek_v3 (noaux_tc)");
        return new MoeConfig
        {
            Experts = Int(o, "n_routed_experts"), ExpertsPerToken = Int(o, "num_experts_per_tok"), IntermediateSize = Int(o, "moe_intermediate_size"),
            NormTopkProb = BoolOr(o, "norm_topk_prob", true), ScoringFunc = scoring, CorrectionBias = true,
            Groups = IntOr(o, "n_group", 1), TopkGroups = IntOr(o, "topk_group", 1), RoutedScalingFactor = DoubleOr(o, "routed_scaling_factor", 1),
            SharedExperts = IntOr(o, "n_shared_experts", 0), SparseStep = IntOr(o, "moe_layer_freq", 1), FirstDenseLayers = IntOr(o, "first_k_dense_replace", 0),
        };
    }

    /// <summary>Writes this config as a Hugging Face config.json.</summary>
    public string ToJson()
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray(ModelType switch
            {
                "qwen3" => "Qwen3ForCausalLM", "qwen3_moe" => "Qwen3MoeForCausalLM", "deepseek_v3" => "DeepseekV3ForCausalLM",
                "qwen2" => "Qwen2ForCausalLM", "mistral" => "MistralForCausalLM", _ => "LlamaForCausalLM",
            }),
            ["model_type"] = ModelType,
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = Layers,
            ["num_attention_heads"] = Heads,
            ["num_key_value_heads"] = KvHeads,
            ["head_dim"] = HeadDim,
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["max_position_embeddings"] = MaxPositions,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["attention_bias"] = AttentionBias,
            ["hidden_act"] = "silu",
            ["torch_dtype"] = "float32",
        };
        if (RopeScaling is { } s)
        {
            var r = new JsonObject { ["rope_type"] = s.Type, ["factor"] = s.Factor };
            if (s.OriginalMaxPositions is { } orig) r["original_max_position_embeddings"] = orig;
            if (s.Type == "llama3") { r["low_freq_factor"] = s.LowFreqFactor; r["high_freq_factor"] = s.HighFreqFactor; }
            if (s.Type == "yarn")
            {
                r["beta_fast"] = s.BetaFast; r["beta_slow"] = s.BetaSlow;
                if (s.AttentionFactor is { } f) r["attention_factor"] = f;
                if (s.Mscale is { } ms) r["mscale"] = ms;
                if (s.MscaleAllDim is { } ma) r["mscale_all_dim"] = ma;
            }
            o["rope_scaling"] = r;
        }
        if (Mla is { } a)
        {
            o["q_lora_rank"] = a.QLoraRank; o["kv_lora_rank"] = a.KvLoraRank; o["qk_nope_head_dim"] = a.QkNopeHeadDim;
            o["qk_rope_head_dim"] = a.QkRopeHeadDim; o["v_head_dim"] = a.VHeadDim; o["rope_interleave"] = a.RopeInterleave;
        }
        if (Moe is { } m)
        {
            o["num_experts_per_tok"] = m.ExpertsPerToken; o["moe_intermediate_size"] = m.IntermediateSize; o["norm_topk_prob"] = m.NormTopkProb;
            if (ModelType == "deepseek_v3")
            {
                o["n_routed_experts"] = m.Experts; o["scoring_func"] = m.ScoringFunc; o["topk_method"] = "noaux_tc"; o["n_group"] = m.Groups;
                o["topk_group"] = m.TopkGroups; o["routed_scaling_factor"] = m.RoutedScalingFactor; o["n_shared_experts"] = m.SharedExperts;
                o["moe_layer_freq"] = m.SparseStep; o["first_k_dense_replace"] = m.FirstDenseLayers;
            }
            else
            {
                o["num_experts"] = m.Experts; o["decoder_sparse_step"] = m.SparseStep;
                o["mlp_only_layers"] = new JsonArray(m.DenseLayers.Select(i => (JsonNode)i).ToArray());
            }
        }
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Checks that the sizes are positive and the heads divide evenly.</summary>
    /// <exception cref="InvalidDataException">A size is not positive or the key/value heads do not divide the query heads.</exception>
    public void Validate()
    {
        foreach (var (name, v) in new[] { ("vocab_size", VocabSize), ("hidden_size", HiddenSize), ("intermediate_size", IntermediateSize),
                     ("num_hidden_layers", Layers), ("num_attention_heads", Heads), ("num_key_value_heads", KvHeads), ("head_dim", HeadDim) })
            if (v <= 0) throw new InvalidDataException($"config.json: '{name}' must be positive, got {v}");
        if (Heads % KvHeads != 0) throw new InvalidDataException($"config.json: num_attention_heads {Heads} is not a multiple of num_key_value_heads {KvHeads}");
        if (RotaryDim % 2 != 0) throw new InvalidDataException($"config.json: {(Mla is null ? "head_dim" : "qk_rope_head_dim")} {RotaryDim} must be even for RoPE");
        if (Mla is { } a)
        {
            foreach (var (name, v) in new[] { ("kv_lora_rank", a.KvLoraRank), ("qk_nope_head_dim", a.QkNopeHeadDim), ("qk_rope_head_dim", a.QkRopeHeadDim),
                         ("v_head_dim", a.VHeadDim), ("q_lora_rank", a.QLoraRank ?? 1) })
                if (v <= 0) throw new InvalidDataException($"config.json: '{name}' must be positive, got {v}");
            if (AttentionBias) throw new NotSupportedException("config.json: attention_bias is not supported for deepseek_v3 (multi-head latent attention)");
        }
        if (Moe is { } m)
        {
            foreach (var (name, v) in new[] { ("num_experts", m.Experts), ("num_experts_per_tok", m.ExpertsPerToken), ("moe_intermediate_size", m.IntermediateSize),
                         ("n_group", m.Groups), ("topk_group", m.TopkGroups), ("decoder_sparse_step", m.SparseStep) })
                if (v <= 0) throw new InvalidDataException($"config.json: '{name}' must be positive, got {v}");
            if (m.ExpertsPerToken > m.Experts)
                throw new InvalidDataException($"config.json: num_experts_per_tok {m.ExpertsPerToken} exceeds the {m.Experts} experts");
            if (m.ScoringFunc is not ("softmax" or "sigmoid")) throw new NotSupportedException($"config.json: scoring_func '{m.ScoringFunc}' is not supported (softmax, sigmoid)");
            if (m.Experts % m.Groups != 0 || m.TopkGroups > m.Groups || (m.Groups > 1 && m.Experts / m.Groups < 2))
                throw new InvalidDataException($"config.json: n_group {m.Groups} / topk_group {m.TopkGroups} do not fit {m.Experts} experts (groups must divide them, hold at least 2 when there are several, and topk_group <= n_group)");
            if (m.ExpertsPerToken > m.TopkGroups * (m.Experts / m.Groups))
                throw new InvalidDataException($"config.json: num_experts_per_tok {m.ExpertsPerToken} exceeds the {m.TopkGroups * (m.Experts / m.Groups)} experts of topk_group {m.TopkGroups} groups");
            if (m.SharedExperts < 0 || m.FirstDenseLayers < 0) throw new InvalidDataException("config.json: n_shared_experts and first_k_dense_replace must be non-negative");
        }
        if (RopeScaling is { } s && s.Type is not ("default" or "linear" or "dynamic" or "llama3" or "yarn"))
            throw new NotSupportedException($"config.json: rope_scaling type '{s.Type}' is not supported (default, linear, dynamic, llama3, yarn)");
    }

    static RopeScaling? Scaling(JsonObject? r)
    {
        if (r is null) return null;
        string type = Str(r, "rope_type") ?? Str(r, "type") ?? "default";
        if (type == "default") return null;
        return new RopeScaling(type, DoubleOr(r, "factor", 1),
            r["original_max_position_embeddings"] is null ? null : Int(r, "original_max_position_embeddings"),
            DoubleOr(r, "low_freq_factor", 1), DoubleOr(r, "high_freq_factor", 4), DoubleOr(r, "beta_fast", 32), DoubleOr(r, "beta_slow", 1),
            r["attention_factor"] is null ? null : DoubleOr(r, "attention_factor", 1),
            r["mscale"] is null ? null : DoubleOr(r, "mscale", 1), r["mscale_all_dim"] is null ? null : DoubleOr(r, "mscale_all_dim", 0));
    }

    static string? Str(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    static int Int(JsonObject o, string key) =>
        o[key] is JsonValue v && v.TryGetValue<int>(out int i) ? i : throw new InvalidDataException($"config.json: missing or non-integer '{key}'");

    static int IntOr(JsonObject o, string key, int fallback) => o[key] is null ? fallback : Int(o, key);

    static double DoubleOr(JsonObject? o, string key, double fallback)
    {
        if (o?[key] is not { } n) return fallback;
        if (n is JsonValue v && v.TryGetValue<double>(out double d))
            // 1e309 parses as infinity, which ToJson could not write back.
            return double.IsFinite(d) ? d : throw new InvalidDataException($"config.json: '{key}' is {n.ToJsonString()}, outside the range of a double");
        throw new InvalidDataException($"config.json: '{key}' is not a number");
    }

    static bool BoolOr(JsonObject o, string key, bool fallback)
    {
        if (o[key] is not { } n) return fallback;
        if (n is JsonValue v && v.TryGetValue<bool>(out bool b)) return b;
        throw new InvalidDataException($"config.json: '{key}' is not a boolean");
    }
}
