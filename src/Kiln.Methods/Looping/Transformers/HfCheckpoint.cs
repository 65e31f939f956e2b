using Kiln.IO;

namespace Kiln.Methods.Looping;

/// <summary>
/// Decoder checkpoints in Hugging Face layout: a folder with config.json, the weights as model.safetensors or shards
/// listed by model.safetensors.index.json (bf16, f16 or f32), and optionally tokenizer.json.
/// </summary>
public static class HfCheckpoint
{
    /// <summary>Loads the model in <paramref name="dir"/>.</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">config.json or the weights are missing.</exception>
    /// <exception cref="NotSupportedException">The architecture is not supported (the message names it).</exception>
    /// <exception cref="InvalidDataException">A file is malformed or a tensor is missing (the message names it).</exception>
    public static DecoderModel Load(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint: folder {dir} not found");
        string cfgPath = Path.Combine(dir, "config.json");
        if (!File.Exists(cfgPath)) throw new FileNotFoundException($"checkpoint: {cfgPath} not found", cfgPath);
        var config = DecoderConfig.FromJson(File.ReadAllText(cfgPath));
        string index = Path.Combine(dir, "model.safetensors.index.json"), single = Path.Combine(dir, "model.safetensors");
        IReadOnlyDictionary<string, Tensor> weights;
        if (File.Exists(index)) weights = Safetensors.Load(index);
        else if (File.Exists(single)) weights = Safetensors.Load(single);
        else
        {
            var shards = Directory.GetFiles(dir, "*.safetensors").Order().ToArray();
            if (shards.Length == 0) throw new FileNotFoundException($"checkpoint: no *.safetensors in {dir}");
            var all = new Dictionary<string, Tensor>();
            foreach (var s in shards) foreach (var (k, v) in Safetensors.Load(s)) all[k] = v;
            weights = all;
        }
        return new DecoderModel(config, weights);
    }

    /// <summary>The tokenizer.json of the checkpoint in <paramref name="dir"/>.</summary>
    public static Microsoft.ML.Tokenizers.Tokenizer LoadTokenizer(string dir) => HfTokenizer.Load(Path.Combine(dir, "tokenizer.json"));

    /// <summary>Writes config.json and model.safetensors (weights converted to <paramref name="dtype"/>) into <paramref name="dir"/>.</summary>
    public static void Save(string dir, DecoderConfig config, IReadOnlyDictionary<string, Tensor> weights, DType dtype = DType.BFloat16)
    {
        ArgumentNullException.ThrowIfNull(config); ArgumentNullException.ThrowIfNull(weights);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJson().Replace("\"float32\"", dtype == DType.BFloat16 ? "\"bfloat16\"" : dtype == DType.Float16 ? "\"float16\"" : "\"float32\""));
        var ordered = new Dictionary<string, Tensor>();
        foreach (var (name, _) in DecoderWeights.Layout(config))
            ordered[name] = weights.TryGetValue(name, out var t) ? t.Detach().To(dtype) : throw new ArgumentException($"checkpoint: no weight '{name}' to save", nameof(weights));
        Safetensors.Save(Path.Combine(dir, "model.safetensors"), ordered, new Dictionary<string, string> { ["format"] = "pt" });
    }
}
