using System.CommandLine;
using System.Globalization;
using Kiln.Methods.Merging;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>`kiln merge`: task-specific fine-tunes of a small decoder merged by each rule; per-task exact-match accuracy.</summary>
public static class MergeVerb
{
    public static Command Build()
    {
        var cmd = new Command("merge", "Model merging on generated tasks: a base decoder, one fine-tune per task, merged by task arithmetic, averaging, NegMerge, aTLAS and ATM; per-task greedy exact-match accuracy");
        var tasks = new Option<string>("--tasks") { Description = "Tasks, comma-separated: add, reverse, sort, count", DefaultValueFactory = _ => "add,reverse,sort,count" };
        var baseSteps = new Option<int>("--base-steps") { Description = "Training steps of the base model on the task mix", DefaultValueFactory = _ => 800 };
        var ftSteps = new Option<int>("--finetune-steps") { Description = "Steps of each single-task fine-tune (ATM's total budget per task)", DefaultValueFactory = _ => 100 };
        var baseLr = new Option<double>("--base-lr") { Description = "Peak learning rate of the base training", DefaultValueFactory = _ => 3e-3 };
        var ftLr = new Option<double>("--finetune-lr") { Description = "Peak learning rate of the fine-tunes (and ATM's)", DefaultValueFactory = _ => 5e-4 };
        var evalPrompts = new Option<int>("--eval") { Description = "Held-out prompts per task", DefaultValueFactory = _ => 200 };
        var scales = new Option<string>("--scales") { Description = "Task arithmetic scales, comma-separated", DefaultValueFactory = _ => "0.3,0.5,1" };
        var atlasSteps = new Option<int>("--atlas-steps") { Description = "Adam steps of aTLAS's per-tensor coefficients", DefaultValueFactory = _ => 30 };
        var atmRounds = new Option<int>("--atm-rounds") { Description = "ATM rounds (the fine-tune budget is split over them)", DefaultValueFactory = _ => 3 };
        var seed = new Option<int>("--seed") { Description = "Seed of data, initialization and batches", DefaultValueFactory = _ => 1 };
        var plot = new Option<string?>("--plot") { Description = "Bar chart PNG to write (default: merge.png, or none with --json)" };
        var json = new Option<bool>("--json") { Description = "Print the result as one JSON object on standard output" };
        foreach (var o in new Option[] { tasks, baseSteps, ftSteps, baseLr, ftLr, evalPrompts, scales, atlasSteps, atmRounds, seed, plot, json }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            string? png = Cli.PlotPath(p, plot, json, "merge.png");
            var names = p.GetValue(tasks)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            if (names.Length == 0) throw new ArgumentException("--tasks: name at least one task");
            foreach (var n in names) Kiln.Methods.PolicyOptimization.GeneratedTask.Get(n);
            var scaleList = p.GetValue(scales)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) ? v : throw new ArgumentException($"--scales: '{s}' is not a finite number"))
                .ToArray();
            foreach (var (v, name) in new[] { (p.GetValue(baseSteps), "--base-steps"), (p.GetValue(ftSteps), "--finetune-steps"), (p.GetValue(evalPrompts), "--eval"), (p.GetValue(atmRounds), "--atm-rounds") })
                Cli.Positive(v, name);
            Cli.PositiveFinite(p.GetValue(baseLr), "--base-lr");
            Cli.PositiveFinite(p.GetValue(ftLr), "--finetune-lr");
            if (p.GetValue(atlasSteps) < 0) throw new ArgumentException($"--atlas-steps: {p.GetValue(atlasSteps)} is negative");
            var options = new MergeOptions
            {
                Tasks = names, BaseSteps = p.GetValue(baseSteps), FineTuneSteps = p.GetValue(ftSteps), BaseLearningRate = p.GetValue(baseLr), FineTuneLearningRate = p.GetValue(ftLr), EvalPrompts = p.GetValue(evalPrompts), Scales = scaleList,
                AtlasSteps = p.GetValue(atlasSteps), AtmRounds = p.GetValue(atmRounds), Seed = p.GetValue(seed),
            };
            var result = Cli.Progress("merge", 5 + names.Length + scaleList.Length, tick => MergeExperiment.Run(options, (done, _, _) => tick(done)));
            Report(result, p.GetValue(json));
            Cli.SavePlot(png, file => Plot(result, file));
            return 0;
        });
        return cmd;
    }

    /// <summary>Prints the table (stderr) or the JSON object (stdout).</summary>
    public static void Report(MergeResult r, bool json)
    {
        var o = r.Options;
        if (json)
        {
            Cli.JsonLine(new
            {
                tasks = o.Tasks, base_steps = o.BaseSteps, finetune_steps = o.FineTuneSteps, base_lr = o.BaseLearningRate, finetune_lr = o.FineTuneLearningRate, eval_prompts = o.EvalPrompts, scales = o.Scales, atlas_steps = o.AtlasSteps,
                atm_rounds = o.AtmRounds, seed = o.Seed, seconds = r.Seconds,
                rows = r.Rows.Select(x => new { model = x.Name, accuracies = x.Accuracies, mean = x.Mean }).ToArray(),
            });
            return;
        }
        var c = o.Config;
        Cli.Err.WriteLine($"decoder {c.Layers}x{c.HiddenSize} ({c.Heads} heads); base {o.BaseSteps} steps on the mix, fine-tunes {o.FineTuneSteps} steps at lr {o.FineTuneLearningRate:G3}; {o.EvalPrompts} held-out prompts per task; {r.Seconds:F1} s");
        var t = new Table().AddColumns(["model", .. o.Tasks.Select(n => n + " %"), "mean %"]);
        foreach (var x in r.Rows) t.AddRow([x.Name, .. x.Accuracies.Select(a => $"{a * 100:F1}"), $"{x.Mean * 100:F1}"]);
        Cli.Err.Write(t);
    }

    /// <summary>Grouped bars: per model, one bar per task's exact-match accuracy.</summary>
    public static void Plot(MergeResult r, string path)
    {
        var plt = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int k = r.Options.Tasks.Count;
        double width = 0.8 / k;
        for (int j = 0; j < k; j++)
        {
            var bars = r.Rows.Select((x, i) => new ScottPlot.Bar { Position = i + (j - (k - 1) / 2.0) * width, Value = x.Accuracies[j] * 100, Size = width, FillColor = palette.GetColor(j) }).ToList();
            var b = plt.Add.Bars(bars);
            b.LegendText = r.Options.Tasks[j];
        }
        plt.Axes.Bottom.SetTicks([.. r.Rows.Select((_, i) => (double)i)], [.. r.Rows.Select(x => x.Name)]);
        plt.Axes.SetLimitsY(0, 100);
        plt.Axes.Left.Label.Text = "greedy exact match on held-out prompts (%)";
        plt.Title("kiln merge: base, per-task fine-tunes and merges");
        plt.ShowLegend(ScottPlot.Edge.Right);
        plt.SavePng(path, 1200, 500);
    }
}
