using System.Text.Json.Nodes;
using Kiln.NN.Decoder;

namespace Kiln.Methods.Looping;

/// <summary>One multiple-choice item: the prompt, the option continuations and the index of the right one.</summary>
public sealed record ChoiceItem(string Prompt, IReadOnlyList<string> Options, int Answer);

/// <summary>Multiple-choice files and scoring: MMLU-Pro, CommonsenseQA and OpenBookQA JSONL.</summary>
public static class MultipleChoice
{
    /// <summary>
    /// Reads JSONL in MMLU-Pro format (question, options, answer_index or answer letter) or CommonsenseQA/OpenBookQA
    /// format (question.stem, question.choices[].label/text, answerKey). MMLU-Pro items with category "cloze" are
    /// scored as raw text continuations; every other item as "Question: ...\nAnswer:" followed by " option".
    /// </summary>
    /// <exception cref="InvalidDataException">A line is not JSON or fits neither format (the message gives the line number).</exception>
    public static List<ChoiceItem> Read(string path)
    {
        var items = new List<ChoiceItem>();
        int n = 0;
        foreach (var line in File.ReadLines(path))
        {
            n++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try { items.Add(Parse(JsonNode.Parse(line) as JsonObject ?? throw new InvalidDataException("not an object"))); }
            catch (Exception e) when (e is System.Text.Json.JsonException or InvalidDataException or InvalidOperationException or FormatException)
            { throw new InvalidDataException($"{path}:{n}: not a multiple-choice item in MMLU-Pro, CommonsenseQA or OpenBookQA format ({e.Message})", e); }
        }
        return items;
    }

    static ChoiceItem Parse(JsonObject o)
    {
        if (o["options"] is JsonArray opts)
        {
            var options = opts.Select(x => (string?)x ?? throw new InvalidDataException("an option is not a string")).ToList();
            int answer = o["answer_index"] is JsonValue ai ? (int)ai : Letter((string?)o["answer"] ?? throw new InvalidDataException("no answer"));
            string q = (string?)o["question"] ?? throw new InvalidDataException("no question");
            return Check((string?)o["category"] == "cloze" ? new ChoiceItem(q, options, answer) : new ChoiceItem($"Question: {q}\nAnswer:", options, answer));
        }
        var question = o["question"] as JsonObject ?? throw new InvalidDataException("no 'options' array and no 'question' object");
        string stem = (string?)question["stem"] ?? (string?)o["question_stem"] ?? throw new InvalidDataException("no question stem");
        var choices = (question["choices"] as JsonArray ?? throw new InvalidDataException("no choices")).OfType<JsonObject>().ToList();
        string key = (string?)o["answerKey"] ?? throw new InvalidDataException("no answerKey");
        int idx = choices.FindIndex(c => (string?)c["label"] == key);
        return Check(new ChoiceItem($"Question: {stem}\nAnswer:", choices.Select(c => (string?)c["text"] ?? "").ToList(), idx));
    }

    static int Letter(string s) => s.Length == 1 && char.IsAsciiLetterUpper(s[0]) ? s[0] - 'A' : throw new InvalidDataException($"answer '{s}' is not a letter");

    static ChoiceItem Check(ChoiceItem item) =>
        item.Options.Count < 2 || item.Answer < 0 || item.Answer >= item.Options.Count
            ? throw new InvalidDataException($"answer index {item.Answer} does not fit {item.Options.Count} options")
            : item;

    /// <summary>
    /// Summed log-likelihood of each option's tokens after the prompt, all options in one right-padded batch
    /// (exact: the causal mask keeps padding out of earlier positions).
    /// </summary>
    public static double[] Score(DecoderModel model, Func<string, int[]> encode, ChoiceItem item, LoopOptions? loop)
    {
        var prompt = encode(item.Prompt);
        var conts = item.Options.Select(o => encode(" " + o)).ToArray();
        int len = prompt.Length + conts.Max(c => c.Length);
        var ids = new long[conts.Length * len];
        for (int b = 0; b < conts.Length; b++)
        {
            for (int t = 0; t < prompt.Length; t++) ids[b * len + t] = prompt[t];
            for (int t = 0; t < conts[b].Length; t++) ids[b * len + prompt.Length + t] = conts[b][t];
        }
        using var scope = Tensor.Scope();
        using var _ = Autograd.NoGrad();
        var hidden = model.Hidden(Tensor.FromArray(ids, new Shape(conts.Length, len)).To(model.Device), null, loop);
        var scores = new double[conts.Length];
        for (int b = 0; b < conts.Length; b++)
        {
            // Rows that predict the option's tokens: positions prompt-1 .. prompt+len(option)-2.
            var rows = hidden.Narrow(0, b, 1).Narrow(1, prompt.Length - 1, conts[b].Length).Reshape(conts[b].Length, -1);
            var logp = model.Project(rows).LogSoftmax(-1).ToDoubleArray();
            int v = model.Config.VocabSize;
            for (int t = 0; t < conts[b].Length; t++) scores[b] += logp[t * v + conts[b][t]];
        }
        return scores;
    }
}

/// <summary>Perplexity of a token stream in non-overlapping windows.</summary>
public static class Perplexity
{
    /// <summary>Per-window mean negative log-likelihoods (nats/token) of <paramref name="tokens"/> cut into windows of <paramref name="context"/> tokens.</summary>
    public static double[] WindowNll(DecoderModel model, int[] tokens, int context, LoopOptions? loop, int batch = 8)
    {
        if (context < 2) throw new ArgumentOutOfRangeException(nameof(context), context, "perplexity: context must be at least 2");
        int windows = tokens.Length / context;
        var nll = new double[windows];
        for (int w0 = 0; w0 < windows; w0 += batch)
        {
            int nb = Math.Min(batch, windows - w0);
            var ids = new long[nb * context];
            for (int i = 0; i < ids.Length; i++) ids[i] = tokens[w0 * context + i];
            using var scope = Tensor.Scope();
            using var _ = Autograd.NoGrad();
            var logp = model.Forward(Tensor.FromArray(ids, new Shape(nb, context)).To(model.Device), null, loop).LogSoftmax(-1);
            var target = new long[nb * (context - 1)];
            for (int b = 0; b < nb; b++) for (int t = 0; t < context - 1; t++) target[b * (context - 1) + t] = ids[b * context + t + 1];
            var picked = logp.Narrow(1, 0, context - 1).Gather(2, Tensor.FromArray(target, new Shape(nb, context - 1, 1)).To(model.Device)).Reshape(nb, context - 1).Mean(1).ToDoubleArray();
            for (int b = 0; b < nb; b++) nll[w0 + b] = -picked[b];
        }
        return nll;
    }
}

/// <summary>Paired bootstrap over items: the confidence interval of the mean difference between two methods.</summary>
public static class Bootstrap
{
    /// <summary>Mean of b - a and its percentile interval at <paramref name="level"/> from <paramref name="resamples"/> paired resamples.</summary>
    public static (double Mean, double Low, double High) PairedDiff(IReadOnlyList<double> a, IReadOnlyList<double> b, int resamples = 2000, double level = 0.95, int seed = 0)
    {
        if (a.Count != b.Count) throw new ArgumentException($"bootstrap: {a.Count} and {b.Count} paired values", nameof(b));
        int n = a.Count;
        if (n == 0) return (double.NaN, double.NaN, double.NaN);
        var d = new double[n];
        for (int i = 0; i < n; i++) d[i] = b[i] - a[i];
        var rng = new Random(seed);
        var means = new double[resamples];
        for (int r = 0; r < resamples; r++)
        {
            double s = 0;
            for (int i = 0; i < n; i++) s += d[rng.Next(n)];
            means[r] = s / n;
        }
        Array.Sort(means);
        double lo = (1 - level) / 2;
        return (d.Average(), means[(int)(lo * (resamples - 1))], means[(int)((1 - lo) * (resamples - 1))]);
    }
}
