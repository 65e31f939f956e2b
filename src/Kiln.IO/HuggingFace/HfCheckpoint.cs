using Microsoft.ML.Tokenizers;

namespace Kiln.IO;

/// <summary>
/// The files of a model folder in Hugging Face layout: config.json, the weights as model.safetensors or shards listed
/// by model.safetensors.index.json (bf16, f16 or f32), and optionally tokenizer.json. This class reads and writes the
/// files; building a model from them is the model's job (<c>Kiln.NN.Decoder.DecoderModel.Load</c>).
/// </summary>
public static class HfCheckpoint
{
    /// <summary>The text of config.json in <paramref name="dir"/>.</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">config.json is missing.</exception>
    public static string ReadConfig(string dir)
    {
        CheckFolder(dir);
        string path = Path.Combine(dir, "config.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint: {path} not found", path);
        return File.ReadAllText(path);
    }

    /// <summary>
    /// Every tensor of the checkpoint in <paramref name="dir"/> by name: from model.safetensors.index.json's shards, else
    /// model.safetensors, else every *.safetensors in name order.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">There are no weights.</exception>
    /// <exception cref="InvalidDataException">A file is malformed.</exception>
    public static IReadOnlyDictionary<string, Tensor> ReadWeights(string dir)
    {
        CheckFolder(dir);
        string index = Path.Combine(dir, "model.safetensors.index.json"), single = Path.Combine(dir, "model.safetensors");
        if (File.Exists(index)) return Safetensors.Load(index);
        if (File.Exists(single)) return Safetensors.Load(single);
        var shards = Directory.GetFiles(dir, "*.safetensors").Order().ToArray();
        if (shards.Length == 0) throw new FileNotFoundException($"checkpoint: no *.safetensors in {dir}");
        var all = new Dictionary<string, Tensor>();
        foreach (var s in shards) foreach (var (k, v) in Safetensors.Load(s)) all[k] = v;
        return all;
    }

    /// <summary>
    /// The safetensors files that hold the weights of the checkpoint in <paramref name="dir"/>, in the order
    /// <see cref="ReadWeights"/> reads them: model.safetensors if present, else every *.safetensors in name order.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">There are no weights.</exception>
    public static string[] WeightFiles(string dir)
    {
        CheckFolder(dir);
        string single = Path.Combine(dir, "model.safetensors");
        if (File.Exists(single)) return [single];
        var shards = Directory.GetFiles(dir, "*.safetensors").Order().ToArray();
        return shards.Length > 0 ? shards : throw new FileNotFoundException($"checkpoint: no *.safetensors in {dir}");
    }

    /// <summary>The tokenizer.json of the checkpoint in <paramref name="dir"/> (see <see cref="HfTokenizer.Load"/>).</summary>
    /// <param name="dir">The checkpoint folder.</param>
    /// <param name="limits">The regex match timeout (default <see cref="ReadLimits.Default"/>).</param>
    public static Tokenizer LoadTokenizer(string dir, ReadLimits? limits = null) => HfTokenizer.Load(Path.Combine(dir, "tokenizer.json"), limits);

    /// <summary>
    /// Writes <paramref name="configJson"/> as config.json and <paramref name="weights"/>, in their order and dtypes, as
    /// model.safetensors (with PyTorch's <c>format: pt</c> metadata) into <paramref name="dir"/>, creating it if needed.
    /// </summary>
    public static void Write(string dir, string configJson, IReadOnlyDictionary<string, Tensor> weights)
    {
        ArgumentNullException.ThrowIfNull(configJson); ArgumentNullException.ThrowIfNull(weights);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), configJson);
        Safetensors.Save(Path.Combine(dir, "model.safetensors"), weights, new Dictionary<string, string> { ["format"] = "pt" });
    }

    static void CheckFolder(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint: folder {dir} not found");
    }
}
