using System.CommandLine;
using Kiln.Methods.PolicyOptimization;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>`kiln rl train`: RL post-training of a small SFT'd decoder on a generated task with each policy objective from the same start.</summary>
public static class RlVerb
{
    public static Command Build()
    {
        var cmd = new Command("rl", "Reinforcement-learning post-training bench (policy objectives on generated tasks)");
        cmd.Subcommands.Add(Train());
        return cmd;
    }

    static Command Train()
    {
        var cmd = new Command("train", "SFT a small byte-level decoder briefly on a generated task, then RL it with each objective from that start: reward, pass@1, pass@k, KL to the start, entropy, seconds per step, held-out pass@1");
        var objective = new Option<string>("--objective") { Description = $"Objectives, comma-separated, or all ({string.Join(", ", PolicyObjectives.Names)})", DefaultValueFactory = _ => "grpo" };
        var task = new Option<string>("--task") { Description = $"Generated task ({string.Join(", ", GeneratedTask.All.Select(t => t.Name))})", DefaultValueFactory = _ => "count" };
        var defaults = new RlOptions();
        var steps = new Option<int>("--steps") { Description = "RL steps per objective", DefaultValueFactory = _ => defaults.Steps };
        var group = new Option<int>("--group") { Description = "Completions sampled per prompt (G)", DefaultValueFactory = _ => defaults.Group };
        var prompts = new Option<int>("--prompts") { Description = "Prompts per step", DefaultValueFactory = _ => defaults.Prompts };
        var passK = new Option<int>("--k") { Description = "k of pass@k (at most the group size)", DefaultValueFactory = _ => defaults.PassK };
        var sftSteps = new Option<int>("--sft-steps") { Description = "SFT steps of the shared start", DefaultValueFactory = _ => defaults.SftSteps };
        var heldOut = new Option<int>("--held-out") { Description = "Held-out prompts for the final pass@1", DefaultValueFactory = _ => defaults.HeldOutPrompts };
        var lr = new Option<double>("--lr") { Description = "AdamW learning rate of the RL steps", DefaultValueFactory = _ => defaults.LearningRate };
        var seed = new Option<int>("--seed") { Description = "Seed of the start, prompts and sampling (shared by every objective)", DefaultValueFactory = _ => defaults.Seed };
        var plot = new Option<string?>("--plot") { Description = "Reward-against-steps PNG to write (default: rl.png, or none with --json)" };
        var json = new Option<bool>("--json") { Description = "Print the result as one JSON object on standard output" };
        foreach (var o in new Option[] { objective, task, steps, group, prompts, passK, sftSteps, heldOut, lr, seed, plot, json }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            string? png = Cli.PlotPath(p, plot, json, "rl.png");
            var names = p.GetValue(objective)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToList();
            if (names.Count == 0) throw new ArgumentException("--objective: name at least one objective, or all");
            var objectives = (names is ["all"] ? PolicyObjectives.Names.ToList() : names).Select(n =>
            {
                try { return PolicyObjectives.Create(n); }
                catch (ArgumentException e) { throw new ArgumentException($"--objective: {e.Message.Replace(" (Parameter 'name')", "")}", e); }
            }).ToList();
            GeneratedTask generated;
            try { generated = GeneratedTask.Get(p.GetValue(task)!); }
            catch (ArgumentException e) { throw new ArgumentException($"--task: {e.Message.Replace(" (Parameter 'name')", "")}", e); }
            var options = new RlOptions
            {
                Task = generated, Steps = Cli.Positive(p.GetValue(steps), "--steps"), Group = Cli.Positive(p.GetValue(group), "--group"),
                Prompts = Cli.Positive(p.GetValue(prompts), "--prompts"), PassK = Cli.Positive(p.GetValue(passK), "--k"),
                SftSteps = Cli.Positive(p.GetValue(sftSteps), "--sft-steps"), HeldOutPrompts = Cli.Positive(p.GetValue(heldOut), "--held-out"),
                LearningRate = Cli.PositiveFinite(p.GetValue(lr), "--lr"), Seed = p.GetValue(seed),
            };
            if (options.PassK > options.Group) throw new ArgumentException($"--k: {options.PassK} exceeds the group size {options.Group}");
            var result = Cli.Progress("rl train", objectives.Count * options.Steps, tick => RlTrainer.Run(options, objectives, tick));
            Report(result, p.GetValue(json));
            Cli.SavePlot(png, file => Plot(result, file));
            return 0;
        });
        return cmd;
    }

    // The last quarter of the steps (at least one): the reported end-of-training figures, less noisy than one step.
    static IReadOnlyList<RlStep> Tail(RlRun run) => [.. run.Steps.TakeLast(Math.Max(1, run.Steps.Count / 4))];

    /// <summary>Prints the table (stderr) or the JSON object (stdout).</summary>
    public static void Report(RlResult r, bool json)
    {
        var o = r.Options;
        if (json)
        {
            Cli.JsonLine(new
            {
                task = o.Task.Name, steps = o.Steps, group = o.Group, prompts = o.Prompts, k = o.PassK, seed = o.Seed, sft_steps = o.SftSteps, lr = o.LearningRate,
                sft_seconds = r.Start.Seconds, start_heldout_pass1 = r.Start.HeldOutPassAt1,
                runs = r.Runs.Select(x => new
                {
                    objective = x.Objective, heldout_pass1 = x.HeldOutPassAt1,
                    steps = x.Steps.Select(s => new { step = s.Step, reward = s.Reward, pass1 = s.PassAt1, passk = s.PassAtK, kl = s.Kl, entropy = s.Entropy, seconds = s.Seconds }).ToArray(),
                }).ToArray(),
            });
            return;
        }
        Cli.Err.WriteLine($"task {o.Task.Name}: {o.Task.Description}; start: {o.SftSteps} SFT steps ({r.Start.Seconds:F1} s), held-out pass@1 {r.Start.HeldOutPassAt1:F3}");
        Cli.Err.WriteLine($"{o.Steps} RL steps × {o.Prompts} prompts × {o.Group} samples, lr {o.LearningRate:G3}, seed {o.Seed}; step columns: mean of the last {Tail(r.Runs[0]).Count} steps");
        var t = new Table().AddColumns("objective", "reward (first → last)", "pass@1", $"pass@{o.PassK}", "KL to start", "entropy", "s/step", "held-out pass@1");
        foreach (var x in r.Runs)
        {
            var tail = Tail(x);
            t.AddRow(x.Objective, $"{x.Steps[0].Reward:F3} → {tail.Average(s => s.Reward):F3}", $"{tail.Average(s => s.PassAt1):F3}", $"{tail.Average(s => s.PassAtK):F3}",
                $"{tail.Average(s => s.Kl):F4}", $"{tail.Average(s => s.Entropy):F3}", $"{x.Steps.Average(s => s.Seconds):F3}", $"{x.HeldOutPassAt1:F3}");
        }
        Cli.Err.Write(t);
    }

    /// <summary>Reward against steps per objective (a 5-step moving average), with the start's held-out pass@1 as a line.</summary>
    public static void Plot(RlResult r, string path)
    {
        var plt = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int i = 0;
        foreach (var x in r.Runs)
        {
            var rewards = x.Steps.Select(s => s.Reward).ToArray();
            var smooth = rewards.Select((_, j) => rewards[Math.Max(0, j - 4)..(j + 1)].Average()).ToArray();
            var line = plt.Add.Scatter(x.Steps.Select(s => (double)s.Step).ToArray(), smooth, palette.GetColor(i++ % 10));
            line.MarkerSize = 0;
            line.LegendText = $"{x.Objective} (held-out {x.HeldOutPassAt1:F2})";
        }
        var start = plt.Add.HorizontalLine(r.Start.HeldOutPassAt1);
        start.LinePattern = ScottPlot.LinePattern.Dashed;
        start.LegendText = $"SFT start held-out pass@1 {r.Start.HeldOutPassAt1:F2}";
        plt.Axes.Bottom.Label.Text = "RL step";
        plt.Axes.Left.Label.Text = "mean reward (5-step moving average)";
        plt.Title($"kiln rl train: task {r.Options.Task.Name}, {r.Options.Prompts} prompts × {r.Options.Group} samples per step");
        plt.ShowLegend(ScottPlot.Edge.Right);
        // ScottPlot wraps a long legend into columns of about 17 entries; each column needs ~260 px beside the plot.
        int columns = (r.Runs.Count + 1 + 16) / 17;
        plt.SavePng(path, 650 + 280 * columns, 450);
    }
}
