using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kiln.Methods.Looping;

/// <summary>RoPE frequency scaling from a Hugging Face config's <c>rope_scaling</c> (or <c>rope_parameters</c>).</summary>
/// <param name="Type">"default", "linear", "dynamic", "llama3" or "yarn".</param>
/// <param name="Factor">Context extension factor.</param>
/// <param name="OriginalMaxPositions">Context length the checkpoint was trained with (llama3, yarn, dynamic).</param>
/// <param name="LowFreqFactor">llama3: wavelengths above original/low are divided by the factor.</param>
/// <param name="HighFreqFactor">llama3: wavelengths below original/high are kept.</param>
/// <param name="BetaFast">yarn: rotations that bound the extrapolated band.</param>
/// <param name="BetaSlow">yarn: rotations that bound the interpolated band.</param>
/// <param name="AttentionFactor">yarn: multiplier of cos and sin; null means 0.1 ln(factor) + 1.</param>
public sealed record RopeScaling(string Type, double Factor = 1, int? OriginalMaxPositions = null, double LowFreqFactor = 1,
    double HighFreqFactor = 4, double BetaFast = 32, double BetaSlow = 1, double? AttentionFactor = null);

/// <summary>
/// The shape of a decoder-only pre-norm checkpoint, read from a Hugging Face <c>config.json</c>. Supported model types:
/// llama, mistral, qwen2 and qwen3 (dense: RMSNorm, RoPE, grouped-query attention, SwiGLU; qwen3 adds per-head q/k norms).
/// </summary>
public sealed record DecoderConfig
{
    /// <summary>The <c>model_type</c> values this implementation runs.</summary>
    public static IReadOnlyList<string> SupportedTypes { get; } = ["llama", "mistral", "qwen2", "qwen3"];

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
    /// <summary>Per-head width.</summary>
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

    /// <summary>Query heads per key/value head.</summary>
    public int Groups => Heads / KvHeads;

    /// <summary>Parses a Hugging Face config.json.</summary>
    /// <exception cref="NotSupportedException">The model type is not one this implementation runs (the message names it).</exception>
    /// <exception cref="InvalidDataException">The JSON is malformed or a required field is missing or inconsistent.</exception>
    public static DecoderConfig FromJson(string json)
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
            QkNorm = type == "qwen3",
        };
        cfg.Validate();
        return cfg;
    }

    /// <summary>Writes this config as a Hugging Face config.json.</summary>
    public string ToJson()
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray(ModelType switch { "qwen3" => "Qwen3ForCausalLM", "qwen2" => "Qwen2ForCausalLM", "mistral" => "MistralForCausalLM", _ => "LlamaForCausalLM" }),
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
            if (s.OriginalMaxPositions is { } m) r["original_max_position_embeddings"] = m;
            if (s.Type == "llama3") { r["low_freq_factor"] = s.LowFreqFactor; r["high_freq_factor"] = s.HighFreqFactor; }
            if (s.Type == "yarn") { r["beta_fast"] = s.BetaFast; r["beta_slow"] = s.BetaSlow; if (s.AttentionFactor is { } f) r["attention_factor"] = f; }
            o["rope_scaling"] = r;
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
        if (HeadDim % 2 != 0) throw new InvalidDataException($"config.json: head_dim {HeadDim} must be even for RoPE");
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
            r["attention_factor"] is null ? null : DoubleOr(r, "attention_factor", 1));
    }

    static string? Str(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    static int Int(JsonObject o, string key) =>
        o[key] is JsonValue v && v.TryGetValue<int>(out int i) ? i : throw new InvalidDataException($"config.json: missing or non-integer '{key}'");

    static int IntOr(JsonObject o, string key, int fallback) => o[key] is null ? fallback : Int(o, key);

    static double DoubleOr(JsonObject? o, string key, double fallback)
    {
        if (o?[key] is not { } n) return fallback;
        if (n is JsonValue v && v.TryGetValue<double>(out double d)) return d;
        throw new InvalidDataException($"config.json: '{key}' is not a number");
    }

    static bool BoolOr(JsonObject o, string key, bool fallback)
    {
        if (o[key] is not { } n) return fallback;
        if (n is JsonValue v && v.TryGetValue<bool>(out bool b)) return b;
        throw new InvalidDataException($"config.json: '{key}' is not a boolean");
    }
}
