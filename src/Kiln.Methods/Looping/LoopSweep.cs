using Kiln.NN.Decoder;

namespace Kiln.Methods.Looping;

/// <summary>One evaluated setting of a sweep: the plain model (rule null) or a rule over a window with K sub-steps.</summary>
/// <param name="Rule">The rule, or null for the baseline.</param>
/// <param name="Start">Window start (the baseline repeats the first window for reference).</param>
/// <param name="End">Window end.</param>
/// <param name="K">Sub-steps (1 for the baseline).</param>
/// <param name="Accuracy">Multiple-choice accuracy (NaN without items).</param>
/// <param name="AccDiff">Accuracy minus the baseline's, with its paired-bootstrap 95% interval (AccLow, AccHigh).</param>
/// <param name="AccLow">Lower end of the interval of AccDiff.</param>
/// <param name="AccHigh">Upper end of the interval of AccDiff.</param>
/// <param name="Perplexity">Perplexity of the text (NaN without text).</param>
/// <param name="NllDiff">Mean per-window NLL minus the baseline's (nats/token), with its interval (NllLow, NllHigh).</param>
/// <param name="NllLow">Lower end of the interval of NllDiff.</param>
/// <param name="NllHigh">Upper end of the interval of NllDiff.</param>
public sealed record SweepRow(LoopRule? Rule, int Start, int End, int K, double Accuracy, double AccDiff, double AccLow, double AccHigh,
    double Perplexity, double NllDiff, double NllLow, double NllHigh)
{
    /// <summary>"baseline" or the rule's name.</summary>
    public string Method => Rule?.ToString().ToLowerInvariant() ?? "baseline";
}

/// <summary>Baseline against looped rules over a grid of windows and K: accuracy and perplexity with paired bootstrap intervals.</summary>
public static class LoopSweep
{
    /// <summary>
    /// Evaluates the plain model once and every (window, K &gt; 1, rule) setting; <paramref name="progress"/> gets
    /// (done, total) settings. Items and text may be empty; their columns are then NaN.
    /// </summary>
    public static List<SweepRow> Run(DecoderModel model, Func<string, int[]> encode, IReadOnlyList<ChoiceItem> items, int[] text, int context,
        IReadOnlyList<(int Start, int End)> windows, IReadOnlyList<int> ks, IReadOnlyList<LoopRule> rules, LoopMode? mode = null, Action<int, int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(model); ArgumentNullException.ThrowIfNull(windows);
        if (windows.Count == 0) throw new ArgumentException("sweep: no window given", nameof(windows));
        var settings = new List<LoopOptions?> { null };
        foreach (var (a, b) in windows)
            foreach (int k in ks.Where(k => k > 1).Distinct().Order())
                foreach (var r in rules)
                {
                    var o = new LoopOptions(a, b, k, r) { Mode = mode };
                    o.Validate(model.Config.Layers);
                    settings.Add(o);
                }
        var rows = new List<SweepRow>();
        double[]? baseCorrect = null, baseNll = null;
        for (int s = 0; s < settings.Count; s++)
        {
            var o = settings[s];
            var correct = items.Select(it => { var sc = MultipleChoice.Score(model, encode, it, o); return Array.IndexOf(sc, sc.Max()) == it.Answer ? 1.0 : 0.0; }).ToArray();
            var nll = text.Length >= context ? Perplexity.WindowNll(model, text, context, o) : [];
            baseCorrect ??= correct; baseNll ??= nll;
            var acc = Bootstrap.PairedDiff(baseCorrect, correct, seed: s);
            var dn = Bootstrap.PairedDiff(baseNll, nll, seed: s);
            var (a0, b0) = o is null ? windows[0] : (o.Start, o.End);
            rows.Add(new SweepRow(o?.Rule, a0, b0, o?.K ?? 1, correct.Length > 0 ? correct.Average() : double.NaN, acc.Mean, acc.Low, acc.High,
                nll.Length > 0 ? Math.Exp(nll.Average()) : double.NaN, dn.Mean, dn.Low, dn.High));
            progress?.Invoke(s + 1, settings.Count);
        }
        return rows;
    }
}
