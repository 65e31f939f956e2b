using System.CommandLine;
using System.Globalization;
using Kiln.Methods.Sequence;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>
/// `kiln seq`: associative recall learned by causal softmax attention, bidirectional linear attention (LION) and the
/// S4D state-space layer: held-out accuracy and seconds per training step against sequence length.
/// </summary>
public static class SeqVerb
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    static readonly (string Name, SequenceMixer Mixer)[] Names = [("softmax", SequenceMixer.Softmax), ("linear", SequenceMixer.Linear), ("s4d", SequenceMixer.S4D)];

    static string Name(SequenceMixer m) => Names.First(n => n.Mixer == m).Name;

    public static Command Build()
    {
        var cmd = new Command("seq", "Associative recall by softmax attention, linear attention (LION) and S4D: accuracy and seconds per step against sequence length");
        var lengths = new Option<string>("--lengths") { Description = "Sequence lengths, comma-separated", DefaultValueFactory = _ => "16,32,64" };
        var mixers = new Option<string>("--mixers") { Description = "Mixers, comma-separated: softmax, linear, s4d", DefaultValueFactory = _ => "softmax,linear,s4d" };
        var steps = new Option<int>("--steps") { Description = "Training steps per mixer and length", DefaultValueFactory = _ => 200 };
        var batch = new Option<int>("--batch") { Description = "Sequences per step", DefaultValueFactory = _ => 32 };
        var width = new Option<int>("--width") { Description = "Model width (even)", DefaultValueFactory = _ => 32 };
        var pairs = new Option<int>("--pairs") { Description = "Key-value pairs per sequence", DefaultValueFactory = _ => 4 };
        var testSize = new Option<int>("--test-size") { Description = "Held-out sequences", DefaultValueFactory = _ => 512 };
        var lr = new Option<double>("--lr") { Description = "AdamW learning rate", DefaultValueFactory = _ => 3e-3 };
        var seed = new Option<int>("--seed") { Description = "Seed of data and initialisation", DefaultValueFactory = _ => 1 };
        var plot = new Option<string?>("--plot") { Description = "PNG to write (default: seq.png, or none with --json)" };
        var json = new Option<bool>("--json") { Description = "Print the result as one JSON object on standard output" };
        var device = Cli.DeviceOption();
        foreach (var o in new Option[] { lengths, mixers, steps, batch, width, pairs, testSize, lr, seed, plot, json, device }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            string? png = Cli.PlotPath(p, plot, json, "seq.png");
            var list = p.GetValue(mixers)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(s => Names.FirstOrDefault(n => n.Name == s) is { Name: not null } hit ? hit.Mixer : throw new ArgumentException($"--mixers: unknown mixer '{s}' (use softmax, linear, s4d)"))
                .ToList();
            if (list.Count == 0) throw new ArgumentException("--mixers: name at least one mixer");
            int np = Cli.Positive(p.GetValue(pairs), "--pairs");
            if (np > 8) throw new ArgumentException($"--pairs: {np} is more than the 8 keys");
            var lens = p.GetValue(lengths)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(s => int.TryParse(s, NumberStyles.Integer, Inv, out int v) && v >= 2 * np + 1 ? v : throw new ArgumentException($"--lengths: '{s}' is not a length of at least {2 * np + 1}"))
                .ToList();
            if (lens.Count == 0) throw new ArgumentException("--lengths: give at least one length");
            foreach (var (v, name) in new[] { (p.GetValue(steps), "--steps"), (p.GetValue(batch), "--batch"), (p.GetValue(testSize), "--test-size"), (p.GetValue(width), "--width") })
                Cli.Positive(v, name);
            if (p.GetValue(width) % 2 != 0) throw new ArgumentException($"--width: {p.GetValue(width)} is odd (two attention heads)");
            Cli.PositiveFinite(p.GetValue(lr), "--lr");
            using var lease = Cli.OpenDevice(p, device);
            var options = new RecallOptions
            {
                Lengths = lens, Mixers = list, Steps = p.GetValue(steps), Batch = p.GetValue(batch), Width = p.GetValue(width), Pairs = np,
                TestSize = p.GetValue(testSize), LearningRate = p.GetValue(lr), Seed = p.GetValue(seed), Device = lease.Device,
            };
            var result = Cli.Progress("seq", lens.Count * list.Count, tick => RecallExperiment.Run(options, (done, _) => tick(done)));
            Report(result, p.GetValue(json));
            Cli.SavePlot(png, file => Plot(result, file));
            return 0;
        });
        return cmd;
    }

    /// <summary>Prints the table (stderr) or the JSON object (stdout).</summary>
    public static void Report(RecallResult r, bool json)
    {
        var o = r.Options;
        if (json)
        {
            Cli.JsonLine(new
            {
                task = "associative_recall", pairs = o.Pairs, vocabulary = o.Vocabulary, steps = o.Steps, batch = o.Batch, width = o.Width, test = o.TestSize,
                rows = r.Rows.Select(x => new { mixer = Name(x.Mixer), length = x.Length, accuracy = x.Accuracy, seconds_per_step = x.SecondsPerStep, final_loss = x.FinalLoss }).ToArray(),
            });
            return;
        }
        Cli.Err.WriteLine($"associative recall: {o.Pairs} pairs of {o.Vocabulary} keys/values, width {o.Width}, {o.Steps} steps of {o.Batch}, {o.TestSize} held-out sequences");
        var t = new Table().AddColumns("mixer", "length", "accuracy %", "ms / step", "final loss");
        foreach (var x in r.Rows)
            t.AddRow(Name(x.Mixer), x.Length.ToString(Inv), (x.Accuracy * 100).ToString("F1", Inv), (x.SecondsPerStep * 1000).ToString("F1", Inv), x.FinalLoss.ToString("F3", Inv));
        Cli.Err.Write(t);
    }

    /// <summary>Two panels: held-out accuracy and milliseconds per step against sequence length, one line per mixer.</summary>
    public static void Plot(RecallResult r, string path)
    {
        const int w = 560, h = 400;
        var palette = new ScottPlot.Palettes.Category10();
        byte[] Panel(string title, string y, Func<RecallRow, double> f, ScottPlot.Alignment legend)
        {
            var plt = new ScottPlot.Plot();
            var mixers = r.Rows.Select(q => q.Mixer).Distinct().ToArray();
            for (int i = 0; i < mixers.Length; i++)
            {
                var rows = r.Rows.Where(q => q.Mixer == mixers[i]).OrderBy(q => q.Length).ToArray();
                var sc = plt.Add.Scatter(rows.Select(q => (double)q.Length).ToArray(), rows.Select(f).ToArray(), palette.GetColor(i));
                sc.LegendText = Name(mixers[i]);
                sc.MarkerSize = 6;
            }
            plt.Title(title);
            plt.XLabel("sequence length");
            plt.YLabel(y);
            plt.ShowLegend(legend);
            return plt.GetImageBytes(w, h, ScottPlot.ImageFormat.Png);
        }
        var panels = new[] { Panel("associative recall: held-out accuracy", "accuracy %", q => q.Accuracy * 100, ScottPlot.Alignment.UpperRight),
            Panel("training cost", "ms per step", q => q.SecondsPerStep * 1000, ScottPlot.Alignment.UpperLeft) };
        Cli.SavePanels(path, panels, w, h);
    }
}
