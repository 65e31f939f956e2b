using System.CommandLine;
using Kiln.IO;
using Kiln.Methods.Looping;
using Kiln.NN.Decoder;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>`kiln loop`: baseline against naive, damped (and RK) looping over a grid of windows and K, with paired bootstrap intervals and a PNG.</summary>
public static class LoopVerb
{
    public static Command Build()
    {
        var cmd = new Command("loop", "Training-free looped transformers: evaluate baseline, naive and damped looping side by side (multiple-choice accuracy and perplexity) over windows and K");
        var model = new Option<string>("--model") { Description = "Checkpoint folder; the embedded tiny model by default", DefaultValueFactory = _ => LmVerb.EmbeddedModel };
        var eval = new Option<string?>("--eval") { Description = "Multiple-choice JSONL (MMLU-Pro, CommonsenseQA or OpenBookQA format); the model folder's probe.jsonl by default" };
        var text = new Option<string?>("--text") { Description = "Text file for perplexity; the model folder's heldout.txt by default" };
        var windows = new Option<string?>("--windows") { Description = "Windows 'a:b' separated by commas; the default width-4 window at 47% depth by default" };
        var ks = new Option<string>("--k") { Description = "Values of K, comma-separated (K = 1 is the baseline)", DefaultValueFactory = _ => "2,3,4,6" };
        var rules = new Option<string>("--rules") { Description = "Rules, comma-separated: naive, damped, rk", DefaultValueFactory = _ => "naive,damped" };
        var mode = new Option<string?>("--mode") { Description = "block or layer (default: the model's)" };
        var limit = new Option<int>("--limit") { Description = "Use only the first N items (0: all)", DefaultValueFactory = _ => 0 };
        var ctx = new Option<int>("--context") { Description = "Perplexity window in tokens", DefaultValueFactory = _ => 128 };
        var plot = new Option<string?>("--plot") { Description = "PNG to write (default: loop.png, or none with --json)" };
        var json = new Option<bool>("--json") { Description = "One JSON object per setting on standard output" };
        var device = Cli.DeviceOption();
        foreach (var o in new Option[] { model, eval, text, windows, ks, rules, mode, limit, ctx, plot, json, device }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            string? png = Cli.PlotPath(p, plot, json, "loop.png");
            using var lease = Cli.OpenDevice(p, device);
            string dir = p.GetValue(model)!;
            var m = DecoderModel.Load(dir, lease.Device);
            var tok = HfCheckpoint.LoadTokenizer(dir);
            string? evalPath = p.GetValue(eval) ?? Existing(Path.Combine(dir, "probe.jsonl"));
            string? textPath = p.GetValue(text) ?? Existing(Path.Combine(dir, "heldout.txt"));
            if (evalPath is null && textPath is null) throw new ArgumentException("--eval/--text: nothing to evaluate (give a JSONL file or a text file)");
            var items = evalPath is null ? [] : MultipleChoice.Read(evalPath);
            if (p.GetValue(limit) > 0) items = items.Take(p.GetValue(limit)).ToList();
            var textTokens = textPath is null ? [] : tok.EncodeToIds(File.ReadAllText(textPath)).ToArray();
            var wins = p.GetValue(windows) is { } w ? w.Split(',').Select(s => LoopOptions.ParseWindow(s.Trim())).ToList() : [LoopOptions.DefaultWindow(m.Config.Layers)];
            var kList = p.GetValue(ks)!.Split(',').Select(s => int.TryParse(s.Trim(), out int k) && k >= 1 ? k : throw new ArgumentException($"--k: '{s}' is not a positive integer")).ToList();
            var ruleList = p.GetValue(rules)!.Split(',').Select(s => LmVerb.ParseEnum<LoopRule>(s.Trim(), "--rules")).ToList();
            LoopMode? loopMode = p.GetValue(mode) is { } md ? LmVerb.ParseEnum<LoopMode>(md, "--mode") : null;
            int settings = 1 + wins.Count * kList.Count(k => k > 1) * ruleList.Count;
            Cli.Err.WriteLine($"{dir}: {m.Config.ModelType}, {m.Config.Layers} layers; {items.Count} items, {textTokens.Length} text tokens; {settings} settings");
            var rows = Cli.Progress("evaluating settings", settings, report =>
                LoopSweep.Run(m, s => tok.EncodeToIds(s).ToArray(), items, textTokens, p.GetValue(ctx), wins, kList, ruleList, loopMode, (done, _) => report(done)));
            Report(rows, p.GetValue(json));
            Cli.SavePlot(png, file => Plot(rows, file, $"{Path.GetFileName(Path.TrimEndingDirectorySeparator(dir))} ({m.Config.Layers} layers): baseline vs looped windows"));
            return 0;
        });
        return cmd;
    }

    static string? Existing(string path) => File.Exists(path) ? path : null;

    /// <summary>Prints the table (stderr) or JSON lines (stdout).</summary>
    public static void Report(IReadOnlyList<SweepRow> rows, bool json)
    {
        if (json)
        {
            foreach (var r in rows)
                Cli.JsonLine(new { method = r.Method, window = $"{r.Start}:{r.End}", k = r.K, accuracy = r.Accuracy, acc_diff = r.AccDiff, acc_ci = new[] { r.AccLow, r.AccHigh },
                    perplexity = r.Perplexity, nll_diff = r.NllDiff, nll_ci = new[] { r.NllLow, r.NllHigh } });
            return;
        }
        var t = new Table().AddColumns(new[] { "method", "window", "K", "accuracy", "Δacc (pp) [95% CI]", "perplexity", "ΔNLL (nats) [95% CI]" }.Select(Markup.Escape).ToArray());
        foreach (var r in rows)
            t.AddRow(new[] { r.Method, r.Rule is null ? "-" : $"[{r.Start},{r.End}]", r.K.ToString(), F(r.Accuracy * 100, "F1"),
                r.Rule is null || double.IsNaN(r.Accuracy) ? "" : $"{r.AccDiff * 100:+0.0;-0.0} [{r.AccLow * 100:+0.0;-0.0}, {r.AccHigh * 100:+0.0;-0.0}]",
                F(r.Perplexity, "F3"), r.Rule is null || double.IsNaN(r.Perplexity) ? "" : $"{r.NllDiff:+0.0000;-0.0000} [{r.NllLow:+0.0000;-0.0000}, {r.NllHigh:+0.0000;-0.0000}]" }.Select(Markup.Escape).ToArray());
        Cli.Err.Write(t);
    }

    static string F(double v, string f) => double.IsNaN(v) ? "-" : v.ToString(f);

    /// <summary>Accuracy (left axis, solid) and perplexity (right axis, dashed) against K, one line per (rule, window); the baseline is K = 1.</summary>
    public static void Plot(IReadOnlyList<SweepRow> rows, string path, string title)
    {
        var baseline = rows.First(r => r.Rule is null);
        var plt = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int colour = 0;
        foreach (var g in rows.Where(r => r.Rule is not null).GroupBy(r => (r.Method, r.Start, r.End)))
        {
            var pts = g.OrderBy(r => r.K).Prepend(baseline with { K = 1 }).ToArray();
            var xs = pts.Select(r => (double)r.K).ToArray();
            var c = palette.GetColor(colour++);
            if (!double.IsNaN(baseline.Accuracy))
            {
                var acc = plt.Add.Scatter(xs, pts.Select(r => r.Accuracy * 100).ToArray(), c);
                acc.LegendText = $"{g.Key.Method} [{g.Key.Start},{g.Key.End}] accuracy";
            }
            if (!double.IsNaN(baseline.Perplexity))
            {
                var ppl = plt.Add.Scatter(xs, pts.Select(r => r.Perplexity).ToArray(), c);
                ppl.LinePattern = ScottPlot.LinePattern.Dashed;
                ppl.Axes.YAxis = plt.Axes.Right;
                ppl.LegendText = $"{g.Key.Method} [{g.Key.Start},{g.Key.End}] perplexity";
            }
        }
        plt.Axes.Bottom.Label.Text = "K (sub-steps; K = 1 is the baseline)";
        plt.Axes.Left.Label.Text = "multiple-choice accuracy (%, solid)";
        plt.Axes.Right.Label.Text = "held-out perplexity (dashed)";
        plt.Title(title);
        plt.ShowLegend();
        plt.SavePng(path, 1000, 600);
    }
}
