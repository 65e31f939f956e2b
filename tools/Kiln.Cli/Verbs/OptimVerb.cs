using System.CommandLine;
using System.Globalization;
using Kiln.IO;
using Kiln.Methods.Looping;
using Kiln.NN.Optim;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>`kiln optim compare`: the optimizers of Kiln.NN.Optim against AdamW on the digits MLP or the tiny decoder's recipe (issue 21's experiment).</summary>
public static class OptimVerb
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static Command Build()
    {
        var cmd = new Command("optim", "Optimizers of the related literature (Shampoo, SOAP, Lion, MARS, RAdam, ...): compare them on one model");
        cmd.Subcommands.Add(Compare());
        return cmd;
    }

    static Command Compare()
    {
        var task = new Option<string>("--task") { Description = "mlp (the digits MLP) or lm (the embedded tiny decoder's training recipe)", DefaultValueFactory = _ => "mlp" };
        var steps = new Option<int?>("--steps") { Description = "Optimizer steps per run (default 300 for mlp, 20 for lm)" };
        var names = new Option<string?>("--optimizers") { Description = $"Comma-separated optimizers (default all: {string.Join(", ", OptimizerComparison.Candidates.Select(c => c.Name))})" };
        var json = new Option<bool>("--json") { Description = "One JSON object per optimizer on standard output" };
        var plot = new Option<string?>("--plot") { Description = "PNG of the training-loss curves at each optimizer's best rate" };
        var device = Cli.DeviceOption();
        var cmd = new Command("compare", "Train one model from one initialisation with each optimizer (three learning rates each) and report the best run's losses, steps to a target loss, time per step and state bytes per parameter")
            { task, steps, names, json, plot, device };
        cmd.SetAction(p =>
        {
            string taskName = p.GetValue(task)!;
            if (taskName is not ("mlp" or "lm")) throw new ArgumentException($"--task {taskName}: expected mlp or lm");
            int n = p.GetValue(steps) ?? (taskName == "mlp" ? 300 : 20);
            if (n < 1) throw new ArgumentException($"--steps {n}: must be at least 1");
            var candidates = Select(p.GetValue(names));
            string? png = Cli.PlotPath(p, plot, json, null);
            using var lease = Cli.OpenDevice(p, device);
            var t = taskName == "mlp" ? ComparisonTask.DigitsMlp(device: lease.Device) : LmTask(lease.Device);
            int runs = candidates.Sum(c => c.LearningRates.Count);
            Cli.Err.WriteLine($"task {t.Name}: {candidates.Count} optimizers x 3 learning rates, {n} steps each (warmup over the first tenth, then cosine to a tenth)");
            var results = Cli.Progress("training", runs, report => OptimizerComparison.Run(t, candidates, n, evalEvery: Math.Max(1, n / 50), report));
            if (p.GetValue(json))
                foreach (var r in results)
                    Cli.JsonLine(new
                    {
                        optimizer = r.Optimizer, lr = r.LearningRate, final_loss = Finite(r.FinalLoss), heldout_loss = Finite(r.HeldOutLoss),
                        seconds_per_step = r.SecondsPerStep, state_bytes_per_param = r.StateBytesPerParameter, steps_to_target = r.StepsToTarget,
                        target_loss = t.TargetLoss, task = t.Name, steps = n,
                        sweep = r.Sweep.Select(s => new { lr = s.LearningRate, final_loss = Finite(s.FinalLoss), heldout_loss = Finite(s.HeldOutLoss), failure = s.Failure }).ToArray(),
                    });
            PrintTable(results, t, n);
            Cli.SavePlot(png, file => Plot(results, file, $"kiln optim compare --task {t.Name} --steps {n}: training loss at each optimizer's best rate"));
            return 0;
        });
        return cmd;
    }

    static double? Finite(double x) => double.IsFinite(x) ? x : null;

    static IReadOnlyList<OptimizerCandidate> Select(string? list)
    {
        if (list is null) return OptimizerComparison.Candidates;
        var chosen = new List<OptimizerCandidate>();
        foreach (var name in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            chosen.Add(OptimizerComparison.Candidates.FirstOrDefault(c => c.Name == name)
                ?? throw new ArgumentException($"--optimizers: unknown optimizer '{name}'; known: {string.Join(", ", OptimizerComparison.Candidates.Select(c => c.Name))}"));
        if (chosen.Count == 0) throw new ArgumentException("--optimizers: the list is empty");
        return chosen;
    }

    // The recipe of the embedded checkpoint (kiln train-lm) on its corpus's train/held-out split.
    static ComparisonTask LmTask(Device device)
    {
        var (train, held) = TinyLm.Split(File.ReadAllText(Path.Combine(LmVerb.EmbeddedModel, "corpus.txt")));
        var tok = HfTokenizer.Parse(HfTokenizer.ByteLevelJson([TinyLm.EndOfText]));
        return ComparisonTask.Decoder(TinyLm.Config, tok.EncodeToIds(train).ToArray(), tok.EncodeToIds(held).ToArray(), TinyLm.Training with { Device = device });
    }

    static void PrintTable(IReadOnlyList<ComparisonResult> results, ComparisonTask task, int steps)
    {
        var adamw = results.FirstOrDefault(r => r.Optimizer == "adamw");
        var table = new Table().Title($"task {task.Name}, {steps} steps, target training loss {task.TargetLoss.ToString("G3", Inv)}")
            .AddColumns("optimizer", "best lr", "final loss", "held-out loss", "vs AdamW", "steps to target", "ms/step", "state B/param", "sweep (lr: final loss)");
        foreach (var r in results)
        {
            string vs = adamw is null || r == adamw || !double.IsFinite(r.FinalLoss) || !double.IsFinite(adamw.FinalLoss) ? "" : Percent(r.FinalLoss / adamw.FinalLoss - 1);
            table.AddRow(r.Optimizer, r.LearningRate.ToString("G3", Inv), Loss(r.FinalLoss), Loss(r.HeldOutLoss), vs, r.StepsToTarget?.ToString(Inv) ?? "-",
                (r.SecondsPerStep * 1000).ToString("F2", Inv), r.StateBytesPerParameter.ToString("F1", Inv),
                string.Join("  ", r.Sweep.Select(s => $"{s.LearningRate.ToString("G2", Inv)}: {Loss(s.FinalLoss)}")));
        }
        Cli.Err.Write(table);
        foreach (var r in results)
            foreach (var s in r.Sweep.Where(s => s.Failure is not null))
                Cli.Err.WriteLine($"{r.Optimizer} at lr {s.LearningRate.ToString("G3", Inv)} failed at {s.Failure}");
    }

    static string Percent(double change)
    {
        double p = Math.Round(change * 100);
        return p == 0 ? "0%" : $"{(p > 0 ? "+" : "")}{p.ToString(Inv)}%";
    }

    static string Loss(double x) => double.IsFinite(x) ? x.ToString("F4", Inv) : "diverged/failed";

    static void Plot(IReadOnlyList<ComparisonResult> results, string path, string title)
    {
        var plt = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category20();
        int colour = 0;
        foreach (var r in results)
        {
            var pts = r.Curve.Where(c => double.IsFinite(c.Loss) && c.Loss > 0).ToArray();
            if (pts.Length == 0) continue;
            var line = plt.Add.Scatter(pts.Select(c => (double)c.Step).ToArray(), pts.Select(c => Math.Log10(c.Loss)).ToArray(), palette.GetColor(colour++));
            line.MarkerSize = 0;
            line.LegendText = $"{r.Optimizer} (lr {r.LearningRate.ToString("G2", Inv)})";
            if (r.Optimizer == "adamw") line.LineWidth = 3;
        }
        plt.Axes.Bottom.Label.Text = "step";
        plt.Axes.Left.Label.Text = "log10 training loss";   // the losses span orders of magnitude
        plt.Title(title);
        plt.ShowLegend(ScottPlot.Edge.Right);
        plt.SavePng(path, 1200, 700);
    }
}
