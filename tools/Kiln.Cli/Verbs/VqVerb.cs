using System.CommandLine;
using Kiln.Methods.Quantization;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>`kiln vq`: a small VQ autoencoder on the digits with each bottleneck; codebook usage and reconstruction error, a table, JSON and a PNG.</summary>
public static class VqVerb
{
    public static Command Build()
    {
        var cmd = new Command("vq", "VQ autoencoder on the digits: codebook usage (perplexity, fraction of codes used) and reconstruction error for straight-through, rotation trick, SimVQ and online clustered codebook");
        var defaults = new VqExperimentOptions();
        var steps = new Option<int>("--steps") { Description = "Training steps per method", DefaultValueFactory = _ => defaults.Steps };
        var codes = new Option<int>("--codes") { Description = "Codebook size K", DefaultValueFactory = _ => defaults.Codes };
        var evalEvery = new Option<int>("--eval-every") { Description = "Evaluate on the test split every N steps", DefaultValueFactory = _ => defaults.EvalEvery };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the split, initialisation and batches", DefaultValueFactory = _ => 0UL };
        var methods = new Option<string>("--methods") { Description = "Comma-separated: straight-through, rotation, simvq, online-clustered", DefaultValueFactory = _ => "straight-through,rotation,simvq,online-clustered" };
        var plot = new Option<string?>("--plot") { Description = "PNG of usage and reconstruction error against steps (default: vq.png, or none with --json)" };
        var json = new Option<bool>("--json") { Description = "One JSON object on standard output" };
        foreach (var o in new Option[] { steps, codes, evalEvery, seed, methods, plot, json }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            string? png = Cli.PlotPath(p, plot, json, "vq.png");
            var list = p.GetValue(methods)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(ParseMethod).ToList();
            var options = new VqExperimentOptions { Steps = p.GetValue(steps), Codes = p.GetValue(codes), EvalEvery = p.GetValue(evalEvery), Seed = p.GetValue(seed), Methods = list };
            try { options.Validate(); }
            catch (ArgumentOutOfRangeException e) { throw new ArgumentException($"--{Kebab(e.ParamName ?? "")}: {e.Message.Split(Environment.NewLine)[0].Split(" (Parameter")[0]}", e); }
            var result = Cli.Progress("training VQ autoencoders", options.Steps * list.Count, report => VqExperiment.Run(options, (done, _) => report(done)));
            Print(result);
            if (p.GetValue(json)) Cli.JsonLine(ToJson(result));
            Cli.SavePlot(png, file => Plot(result, file));
            return 0;
        });
        return cmd;
    }

    // EvalEvery -> eval-every: the option spelling of a setting's name.
    static string Kebab(string name) => string.Concat(name.Select((ch, i) => char.IsUpper(ch) ? (i > 0 ? "-" : "") + char.ToLowerInvariant(ch) : ch.ToString()));

    static readonly string[] Names = ["straight-through", "rotation", "simvq", "online-clustered"];

    static string Name(VqMethod m) => Names[(int)m];

    static VqMethod ParseMethod(string s) =>
        Array.IndexOf(Names, s.ToLowerInvariant()) is var i and >= 0 ? (VqMethod)i : throw new ArgumentException($"--methods: '{s}' is not one of {string.Join(", ", Names)}");

    /// <summary>The result as one JSON object.</summary>
    public static object ToJson(VqExperimentResult r) => new
    {
        experiment = "vq_autoencoder_digits",
        steps = r.Options.Steps,
        codes = r.Options.Codes,
        tokens = r.Options.Tokens,
        code_dim = r.Options.CodeDim,
        seed = r.Options.Seed,
        train_images = r.TrainImages,
        test_images = r.TestImages,
        methods = r.Methods.Select(m => new
        {
            method = Name(m.Method),
            reconstruction_mse = m.Final.ReconstructionMse,
            perplexity = m.Final.Perplexity,
            fraction_used = m.Final.FractionUsed,
            seconds = Math.Round(m.Seconds, 2),
            curve = m.Curve.Select(c => new { step = c.Step, reconstruction_mse = c.ReconstructionMse, perplexity = c.Perplexity, fraction_used = c.FractionUsed }),
        }),
    };

    static void Print(VqExperimentResult r)
    {
        var t = new Table().Title($"VQ autoencoder on the digits: {r.TrainImages} train / {r.TestImages} test images, K = {r.Options.Codes}, {r.Options.Tokens} tokens of width {r.Options.CodeDim}, {r.Options.Steps} steps")
            .AddColumns("method", "test MSE / pixel", "perplexity", "codes used", "seconds");
        foreach (var m in r.Methods)
            t.AddRow(Name(m.Method), m.Final.ReconstructionMse.ToString("F4"), m.Final.Perplexity.ToString("F1"), $"{m.Final.FractionUsed * 100:F0}%", m.Seconds.ToString("F1"));
        Cli.Err.Write(t);
    }

    static void Plot(VqExperimentResult r, string path)
    {
        var plt = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        for (int i = 0; i < r.Methods.Count; i++)
        {
            var m = r.Methods[i];
            var xs = m.Curve.Select(c => (double)c.Step).ToArray();
            var usage = plt.Add.Scatter(xs, m.Curve.Select(c => c.Perplexity).ToArray(), palette.GetColor(i));
            usage.LegendText = $"{Name(m.Method)} perplexity";
            var mse = plt.Add.Scatter(xs, m.Curve.Select(c => c.ReconstructionMse).ToArray(), palette.GetColor(i));
            mse.LinePattern = ScottPlot.LinePattern.Dashed;
            mse.Axes.YAxis = plt.Axes.Right;
            mse.LegendText = $"{Name(m.Method)} test MSE";
        }
        plt.Axes.Bottom.Label.Text = "training step";
        plt.Axes.Left.Label.Text = $"codebook perplexity (solid, of K = {r.Options.Codes})";
        plt.Axes.Right.Label.Text = "test reconstruction MSE per pixel (dashed)";
        plt.Title("VQ autoencoder on the digits");
        plt.ShowLegend();
        plt.SavePng(path, 900, 560);
    }
}
