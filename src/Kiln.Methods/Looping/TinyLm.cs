using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Kiln.NN.Decoder;

namespace Kiln.Methods.Looping;

/// <summary>
/// The recipe of Kiln's embedded looping checkpoint: a Qwen3-style decoder (8 layers, width 128, byte-level
/// vocabulary) trained on a public-domain corpus, its train/held-out split, and a cloze multiple-choice probe built
/// from the held-out text. <c>kiln train-lm</c> runs it.
/// </summary>
public static class TinyLm
{
    /// <summary>The special token that separates documents (id 256).</summary>
    public const string EndOfText = "<|endoftext|>";

    /// <summary>The embedded architecture: qwen3 with 8 layers, width 128, 4 query and 2 key/value heads of 32, SwiGLU 256, vocabulary 257, tied embeddings.</summary>
    public static DecoderConfig Config { get; } = new()
    {
        ModelType = "qwen3", VocabSize = 257, HiddenSize = 128, IntermediateSize = 256, Layers = 8, Heads = 4, KvHeads = 2,
        HeadDim = 32, RmsNormEps = 1e-6, RopeTheta = 10000, MaxPositions = 512, TieWordEmbeddings = true, QkNorm = true,
    };

    /// <summary>The training recipe of the embedded checkpoint.</summary>
    public static LmTrainOptions Training { get; } = new() { Steps = 150, Batch = 8, Context = 96, LearningRate = 3e-3, Warmup = 15, Seed = 1 };

    /// <summary>Splits <paramref name="corpus"/> into paragraphs (blank-line separated); every <paramref name="every"/>-th goes to the held-out part.</summary>
    public static (string Train, string HeldOut) Split(string corpus, int every = 8)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        if (every < 2) throw new ArgumentOutOfRangeException(nameof(every), every, "split: every must be at least 2");
        var paragraphs = Regex.Split(corpus.Replace("\r\n", "\n"), @"\n\s*\n").Select(p => p.Trim()).Where(p => p.Length > 0).ToArray();
        var train = new StringBuilder(); var held = new StringBuilder();
        for (int i = 0; i < paragraphs.Length; i++) (i % every == every - 1 ? held : train).Append(paragraphs[i]).Append("\n\n");
        return (train.ToString(), held.ToString());
    }

    /// <summary>
    /// Cloze items in MMLU-Pro's JSONL format (category "cloze"): the question is up to 64 characters of held-out text
    /// ending before a word of 4+ letters; the options are that word and three training-vocabulary words of the same
    /// length (so summed log-likelihoods compare fairly), in random order.
    /// </summary>
    public static IReadOnlyList<string> BuildProbe(string heldOut, string train, int items = 200, int seed = 7)
    {
        var rng = new Random(seed);
        var byLength = Regex.Matches(train, @"\b[a-z]{4,}\b").Select(m => m.Value).Distinct().GroupBy(w => w.Length).ToDictionary(g => g.Key, g => g.ToArray());
        var candidates = Regex.Matches(heldOut, @"(?<=\S )[a-z]{4,}\b").Where(m => m.Index >= 40 && byLength.TryGetValue(m.Length, out var pool) && pool.Length >= 4).ToList();
        var lines = new List<string>();
        foreach (var m in candidates.OrderBy(_ => rng.Next()).Take(items).OrderBy(m => m.Index))
        {
            var pool = byLength[m.Length].Where(w => w != m.Value).OrderBy(_ => rng.Next()).Take(3).ToList();
            int answer = rng.Next(4);
            pool.Insert(answer, m.Value);
            int start = Math.Max(0, m.Index - 64);
            string question = heldOut[start..(m.Index - 1)];
            lines.Add(new JsonObject
            {
                ["question_id"] = lines.Count, ["question"] = question, ["options"] = new JsonArray(pool.Select(w => (JsonNode)w!).ToArray()),
                ["answer"] = ((char)('A' + answer)).ToString(), ["answer_index"] = answer, ["category"] = "cloze", ["src"] = "kiln-heldout",
            }.ToJsonString());
        }
        return lines;
    }
}
