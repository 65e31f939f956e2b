using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Kiln.IO;

/// <summary>
/// Hugging Face <c>tokenizer.json</c> files (BPE models, byte-level or not) as Microsoft.ML.Tokenizers tokenizers: this
/// class reads the vocabulary, merges, special tokens and pre-tokenizer regex; the tokenization itself is the library's.
/// </summary>
public static class HfTokenizer
{
    /// <summary>GPT-2's pre-tokenizer regex, used by a ByteLevel pre-tokenizer with use_regex.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>Loads a tokenizer.json.</summary>
    /// <param name="path">The file.</param>
    /// <param name="limits">The regex match timeout (default <see cref="ReadLimits.Default"/>).</param>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="NotSupportedException">The model is not BPE (the message names its type).</exception>
    /// <exception cref="InvalidDataException">The JSON is malformed, lacks the model's vocabulary, holds a field of the
    /// wrong type or a key twice, or its pre-tokenizer regex is invalid, matches the empty string or times out.</exception>
    public static Tokenizer Load(string path, ReadLimits? limits = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"tokenizer: {path} not found", path);
        return Parse(File.ReadAllText(path), path, limits);
    }

    /// <summary>
    /// Builds the tokenizer from the text of a tokenizer.json; <paramref name="source"/> names it in errors. The
    /// pre-tokenizer regex runs with <see cref="ReadLimits.RegexMatchTimeout"/>, so encoding text on which it backtracks
    /// too long throws <see cref="RegexMatchTimeoutException"/> instead of hanging.
    /// </summary>
    /// <param name="json">The file's text.</param>
    /// <param name="source">The file's name for error messages.</param>
    /// <param name="limits">The regex match timeout (default <see cref="ReadLimits.Default"/>).</param>
    /// <exception cref="NotSupportedException">The model is not BPE (the message names its type).</exception>
    /// <exception cref="InvalidDataException">The JSON is malformed, lacks the model's vocabulary, holds a field of the
    /// wrong type or a key twice, or its pre-tokenizer regex is invalid, matches the empty string or times out.</exception>
    public static Tokenizer Parse(string json, string source = "tokenizer.json", ReadLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        limits ??= ReadLimits.Default;
        limits.Validate();
        try
        {
            return Build(json, source, limits);
        }
        // System.Text.Json.Nodes reports duplicate keys (ArgumentException), a value of the wrong JSON type or a lone
        // surrogate escape (InvalidOperationException) and malformed numbers (FormatException) lazily; the tokenizer
        // library reports bad vocabularies and merges with ArgumentException. All of them mean a malformed file.
        catch (Exception e) when (e is System.Text.Json.JsonException or ArgumentException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{source}: {e.Message}", e);
        }
    }

    static Tokenizer Build(string json, string source, ReadLimits limits)
    {
        var root = JsonNode.Parse(json) as JsonObject ?? throw new InvalidDataException($"{source}: the top level is not an object");
        var model = root["model"] as JsonObject ?? throw new InvalidDataException($"{source}: no 'model' object");
        string type = (string?)model["type"] ?? "BPE";
        if (type != "BPE") throw new NotSupportedException($"{source}: tokenizer model type '{type}' is not supported (BPE only)");
        var vocabNode = model["vocab"] as JsonObject ?? throw new InvalidDataException($"{source}: model has no 'vocab' object");
        var vocab = new Dictionary<string, int>();
        foreach (var (token, id) in vocabNode)
            vocab[token] = id is JsonValue v && v.TryGetValue<int>(out int i) ? i : throw new InvalidDataException($"{source}: vocab entry '{token}' has no integer id");
        var merges = new List<string>();
        if (model["merges"] is JsonArray ma)
            foreach (var m in ma)
                merges.Add(m switch
                {
                    JsonValue s when s.TryGetValue<string>(out var str) => str,
                    JsonArray pair when pair.Count == 2 => $"{(string?)pair[0]} {(string?)pair[1]}",
                    _ => throw new InvalidDataException($"{source}: a merge is neither 'a b' nor [a, b]"),
                });
        var special = new Dictionary<string, int>();
        if (root["added_tokens"] is JsonArray added)
            foreach (var t in added.OfType<JsonObject>())
                if ((string?)t["content"] is { } content && t["id"] is JsonValue idv && idv.TryGetValue<int>(out int sid)) special[content] = sid;
        bool byteLevel = json.Contains("\"ByteLevel\"", StringComparison.Ordinal);
        string? pattern = FindSplitPattern(root["pre_tokenizer"]) ?? (byteLevel ? Gpt2Pattern : null);
        var options = new BpeOptions(vocab)
        {
            Merges = merges,
            SpecialTokens = special.Count > 0 ? special : null,
            ByteLevel = byteLevel,
            UnknownToken = (string?)model["unk_token"],
            PreTokenizer = pattern is null ? PreTokenizer.CreateWhiteSpace(special.Count > 0 ? special : null)
                : new RegexPreTokenizer(SplitRegex(pattern, source, limits), special.Count > 0 ? special : null),
        };
        return BpeTokenizer.Create(options);
    }

    // Text on which a pre-tokenizer pattern's empty matches would show: letters, digits, punctuation, spaces, newlines
    // and non-ASCII, at the starts, middles and ends of words.
    const string Probe = "Hello, world! It's 2024.\n\t  x_y-z 'ab' na\u00efve \u65e5\u672c\u8a9e \u00a0end";

    // The library loops forever on an empty pre-token, so a pattern that matches the empty string (at the start of the
    // input or anywhere on the probe text) is refused; the timeout bounds every match, including the probe's.
    static Regex SplitRegex(string pattern, string source, ReadLimits limits)
    {
        Regex regex;
        try { regex = new Regex(pattern, RegexOptions.Compiled, limits.RegexMatchTimeout); }
        catch (ArgumentException e) { throw new InvalidDataException($"{source}: the pre-tokenizer regex /{pattern}/ is invalid: {e.Message}", e); }
        try
        {
            if (regex.Match("").Success || regex.Matches(Probe).Any(m => m.Length == 0))
                throw new InvalidDataException($"{source}: the pre-tokenizer regex /{pattern}/ matches the empty string, which would never advance through the text");
        }
        catch (RegexMatchTimeoutException e)
        {
            throw new InvalidDataException($"{source}: the pre-tokenizer regex /{pattern}/ ran past the {limits.RegexMatchTimeout.TotalSeconds} s match timeout on a short probe text", e);
        }
        return regex;
    }

    static string? FindSplitPattern(JsonNode? node) => node switch
    {
        JsonObject o when (string?)o["type"] == "Split" && o["pattern"] is JsonObject p => (string?)p["Regex"] ?? (p["String"] is { } s ? Regex.Escape((string)s!) : null),
        JsonObject o when o["pretokenizers"] is JsonArray list => list.Select(FindSplitPattern).FirstOrDefault(x => x is not null),
        _ => null,
    };

    /// <summary>GPT-2's map from bytes to printable characters, which byte-level vocabularies are written in.</summary>
    public static char[] ByteToChar()
    {
        var map = new char[256];
        int extra = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)(256 + extra++);
        }
        return map;
    }

    /// <summary>
    /// The text of a byte-level BPE tokenizer.json whose ids 0-255 are the bytes (so any text encodes, one token per
    /// UTF-8 byte, with no merges), followed by <paramref name="specialTokens"/>.
    /// </summary>
    public static string ByteLevelJson(IReadOnlyList<string> specialTokens)
    {
        ArgumentNullException.ThrowIfNull(specialTokens);
        var map = ByteToChar();
        var vocab = new JsonObject();
        for (int b = 0; b < 256; b++) vocab[map[b].ToString()] = b;
        var added = new JsonArray();
        for (int i = 0; i < specialTokens.Count; i++)
            added.Add(new JsonObject { ["id"] = 256 + i, ["content"] = specialTokens[i], ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true });
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
            ["post_processor"] = null,
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null, ["end_of_word_suffix"] = null,
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["vocab"] = vocab, ["merges"] = new JsonArray(),
            },
        };
        return root.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = false });
    }
}
