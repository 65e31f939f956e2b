using System.CommandLine;
using Kiln.Methods.SelfSupervised;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>`kiln ssl`: VICReg and VICReg + E2MC on augmented digits, scored by a linear probe, with pixel and random-encoder baselines.</summary>
public static class SslVerb
{
    public static Command Build()
    {
        var cmd = new Command("ssl", "Self-supervised learning on the digits: VICReg pre-training, then continued with VICReg alone or with E2MC; linear-probe accuracy against raw pixels and a random encoder");
        var d = new SslOptions();
        var steps = new Option<int>("--steps") { Description = "VICReg pre-training steps", DefaultValueFactory = _ => d.PretrainSteps };
        var cont = new Option<int>("--continue-steps") { Description = "Continued pre-training steps (VICReg alone, and VICReg + E2MC)", DefaultValueFactory = _ => d.ContinueSteps };
        var batch = new Option<int>("--batch") { Description = "Images per step (two views each)", DefaultValueFactory = _ => d.BatchSize };
        var lr = new Option<double>("--lr") { Description = "AdamW learning rate", DefaultValueFactory = _ => d.LearningRate };
        var entropy = new Option<double>("--entropy-weight") { Description = "E2MC entropy weight (per view)", DefaultValueFactory = _ => d.EntropyWeight };
        var cov = new Option<double>("--e2mc-cov-weight") { Description = "E2MC covariance weight (per view)", DefaultValueFactory = _ => d.E2mcCovarianceWeight };
        var probe = new Option<int>("--probe-steps") { Description = "Linear-probe training steps", DefaultValueFactory = _ => d.ProbeSteps };
        var every = new Option<int>("--eval-every") { Description = "Probe every this many pre-training steps (the curve)", DefaultValueFactory = _ => d.EvalEvery };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the split, weights, batches and augmentations", DefaultValueFactory = _ => 0UL };
        var plot = new Option<string?>("--plot") { Description = "PNG to write (default: ssl.png, or none with --json)" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object with the table on standard output (and nothing else there)" };
        foreach (var o in new Option[] { steps, cont, batch, lr, entropy, cov, probe, every, seed, plot, json }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            string? png = Cli.PlotPath(p, plot, json, "ssl.png");
            var options = new SslOptions
            {
                PretrainSteps = p.GetValue(steps), ContinueSteps = p.GetValue(cont), BatchSize = p.GetValue(batch), LearningRate = p.GetValue(lr),
                EntropyWeight = p.GetValue(entropy), E2mcCovarianceWeight = p.GetValue(cov), ProbeSteps = p.GetValue(probe), EvalEvery = p.GetValue(every),
                Seed = p.GetValue(seed),
            };
            options.Validate();
            int total = 2 * (options.PretrainSteps + options.ContinueSteps);
            var result = Cli.Progress("pre-training", total, report => SslExperiment.Run(options, (done, _) => report(done)));
            Report(result, p.GetValue(json));
            Cli.SavePlot(png, file => Plot(result, file));
            return 0;
        });
        return cmd;
    }

    /// <summary>Prints the table (stderr) or one JSON object (stdout).</summary>
    public static void Report(SslResult r, bool json)
    {
        static double? N(double v) => double.IsNaN(v) ? null : v;
        if (json)
        {
            Cli.JsonLine(new
            {
                train = r.TrainSize, test = r.TestSize, pretrain_steps = r.Options.PretrainSteps, continue_steps = r.Options.ContinueSteps,
                entropy_weight = r.Options.EntropyWeight, e2mc_cov_weight = r.Options.E2mcCovarianceWeight, seed = r.Options.Seed, seconds = r.Seconds,
                rows = r.Rows.Select(x => new
                {
                    method = x.Method, steps = x.Steps, train_accuracy = x.TrainAccuracy, test_accuracy = x.TestAccuracy,
                    entropy = N(x.Entropy), covariance = N(x.Covariance), curve = x.Curve.Select(c => new { step = c.Step, test_accuracy = c.TestAccuracy }),
                }),
            });
            return;
        }
        Cli.Err.WriteLine($"digits: {r.TrainSize} train, {r.TestSize} test; {r.Seconds:F1} s");
        var t = new Table().AddColumns("method", "steps", "probe train acc", "probe test acc", "E2MC entropy (test)", "rep. covariance (test)");
        foreach (var x in r.Rows)
            t.AddRow(new[] { x.Method, x.Steps.ToString(), $"{x.TrainAccuracy * 100:F1}", $"{x.TestAccuracy * 100:F1}", F(x.Entropy), F(x.Covariance) }.Select(Markup.Escape).ToArray());
        Cli.Err.Write(t);
    }

    static string F(double v) => double.IsNaN(v) ? "-" : v.ToString("F3");

    /// <summary>Probe test accuracy against pre-training steps; the baselines as horizontal lines.</summary>
    public static void Plot(SslResult r, string path)
    {
        var plt = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int colour = 0;
        foreach (var row in r.Rows.Where(x => x.Curve.Count > 0 && x.Method != "vicreg"))
        {
            var pts = row.Curve;
            var s = plt.Add.Scatter(pts.Select(c => (double)c.Step).ToArray(), pts.Select(c => c.TestAccuracy * 100).ToArray(), palette.GetColor(colour++));
            s.LegendText = row.Method;
        }
        foreach (var row in r.Rows.Where(x => x.Curve.Count == 0))
        {
            var line = plt.Add.HorizontalLine(row.TestAccuracy * 100, color: palette.GetColor(colour++));
            line.LinePattern = ScottPlot.LinePattern.Dashed;
            line.LegendText = row.Method;
        }
        var v = plt.Add.VerticalLine(r.Options.PretrainSteps, color: ScottPlot.Colors.Gray);
        v.LegendText = "continuation starts";
        plt.Axes.Bottom.Label.Text = "pre-training steps";
        plt.Axes.Left.Label.Text = "linear-probe test accuracy (%)";
        plt.Title($"VICReg / E2MC on augmented digits ({r.TrainSize} train, {r.TestSize} test)");
        plt.ShowLegend();
        plt.SavePng(path, 900, 540);
    }
}
