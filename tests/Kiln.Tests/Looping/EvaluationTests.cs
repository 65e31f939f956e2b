using Kiln.Methods.Looping;
using Kiln.NN.Decoder;
using Xunit;

namespace Kiln.Tests.Looping;

public class EvaluationTests
{
    static string Temp(params string[] lines)
    {
        var path = Path.Combine(Path.GetTempPath(), "kiln-mc-" + Guid.NewGuid().ToString("N") + ".jsonl");
        File.WriteAllLines(path, lines);
        return path;
    }

    [Fact]
    public void Reads_mmlu_pro_commonsenseqa_and_openbookqa_lines()
    {
        var path = Temp(
            """{"question": "2+2?", "options": ["3", "4", "5"], "answer": "B", "answer_index": 1, "category": "math"}""",
            """{"question": "The cat", "options": ["sat", "ran"], "answer": "A", "category": "cloze"}""",
            """{"id": "x", "question": {"stem": "Where?", "choices": [{"label": "A", "text": "here"}, {"label": "B", "text": "there"}]}, "answerKey": "B"}""",
            "",
            """{"id": "7-980", "question": {"stem": "Sun is a", "choices": [{"text": "star", "label": "A"}, {"text": "moon", "label": "B"}, {"text": "rock", "label": "C"}, {"text": "gas", "label": "D"}]}, "answerKey": "A"}""");
        var items = MultipleChoice.Read(path);
        Assert.Equal(4, items.Count);
        Assert.Equal("Question: 2+2?\nAnswer:", items[0].Prompt);
        Assert.Equal(["3", "4", "5"], items[0].Options);
        Assert.Equal(1, items[0].Answer);
        Assert.Equal("The cat", items[1].Prompt);
        Assert.Equal(1, items[2].Answer);
        Assert.Equal(["star", "moon", "rock", "gas"], items[3].Options);
        File.Delete(path);
    }

    [Fact]
    public void Bad_lines_are_reported_with_their_number()
    {
        foreach (var bad in new[] { "{not json", """{"question": "q", "options": ["a", "b"], "answer_index": 5}""", """{"foo": 1}""", """{"question": "q", "options": ["a", "b"], "answer": "ab"}""" })
        {
            var path = Temp("""{"question": "q", "options": ["a", "b"], "answer_index": 0}""", bad);
            var e = Assert.Throws<InvalidDataException>(() => MultipleChoice.Read(path));
            Assert.Contains(":2:", e.Message);
            File.Delete(path);
        }
    }

    [Fact]
    public void Paired_bootstrap_brackets_the_mean_difference()
    {
        var rng = new Random(3);
        var a = Enumerable.Range(0, 400).Select(_ => rng.NextDouble()).ToArray();
        var b = a.Select(x => x + 0.1 + (rng.NextDouble() - 0.5) * 0.2).ToArray();
        var (mean, lo, hi) = Bootstrap.PairedDiff(a, b);
        Assert.InRange(mean, 0.09, 0.11);
        Assert.True(lo < mean && mean < hi && hi - lo < 0.02, $"[{lo}, {hi}]");
        Assert.Equal((0.0, 0.0, 0.0), Bootstrap.PairedDiff(a, a));
        Assert.Throws<ArgumentException>("b", () => Bootstrap.PairedDiff(a, b.Take(3).ToArray()));
    }

    [Fact]
    public void Probe_items_come_from_held_out_text_with_same_length_distractors()
    {
        var corpus = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "tools", "Kiln.Cli", "Models", "looping-tiny", "corpus.txt"));
        var (train, held) = TinyLm.Split(corpus);
        Assert.True(held.Length > 0.1 * corpus.Length && train.Length > 0.8 * corpus.Length);
        var path = Temp([.. TinyLm.BuildProbe(held, train, items: 50)]);
        var items = MultipleChoice.Read(path);
        Assert.Equal(50, items.Count);
        foreach (var it in items)
        {
            string right = it.Options[it.Answer];
            Assert.Contains(it.Prompt + " " + right, held);
            Assert.All(it.Options, o => Assert.Equal(right.Length, o.Length));
            Assert.Equal(4, it.Options.Distinct().Count());
        }
        File.Delete(path);
    }
}
