using System.CommandLine;
using System.Globalization;
using Kiln.Methods.Sketching;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>`kiln sketch`: sketch-and-solve (Gaussian, SRHT, CountSketch) and leverage-score sampling (uniform, independent, pivotal) against exact least squares: error and time against sketch size.</summary>
public static class SketchVerb
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    static readonly (string Name, SketchMethod Method)[] Names =
        [("gaussian", SketchMethod.Gaussian), ("srht", SketchMethod.Srht), ("countsketch", SketchMethod.CountSketch),
         ("uniform", SketchMethod.Uniform), ("leverage", SketchMethod.Leverage), ("pivotal", SketchMethod.Pivotal)];

    static string Name(SketchMethod m) => Names.First(n => n.Method == m).Name;

    /// <summary>The `sketch` command.</summary>
    public static Command Build()
    {
        var cmd = new Command("sketch", "Randomized least squares on Legendre polynomial regression: sketch-and-solve and leverage-score sampling against the exact solve (error and time against sketch size)");
        var methods = new Option<string>("--methods") { Description = "Methods, comma-separated: gaussian, srht, countsketch, uniform, leverage, pivotal", DefaultValueFactory = _ => "gaussian,srht,countsketch,uniform,leverage,pivotal" };
        var sizes = new Option<string>("--sizes") { Description = "Sketch sizes m (expected labels k for sampling), comma-separated", DefaultValueFactory = _ => "40,60,80,120,160,240,320,480,640" };
        var rows = new Option<int>("--rows") { Description = "Regression rows n (points uniform in [-1, 1])", DefaultValueFactory = _ => 4096 };
        var degree = new Option<int>("--degree") { Description = "Polynomial degree (Legendre design with degree + 1 columns)", DefaultValueFactory = _ => 19 };
        var trials = new Option<int>("--trials") { Description = "Draws per method and size", DefaultValueFactory = _ => 20 };
        var noise = new Option<double>("--noise") { Description = "Label noise standard deviation", DefaultValueFactory = _ => 0.05 };
        var seed = new Option<int>("--seed") { Description = "Seed of the data and the draws", DefaultValueFactory = _ => 1 };
        var plot = new Option<string?>("--plot") { Description = "PNG to write (default: sketch.png, or none with --json)" };
        var json = new Option<bool>("--json") { Description = "Print the result as one JSON object on standard output" };
        var device = Cli.DeviceOption();
        foreach (var o in new Option[] { methods, sizes, rows, degree, trials, noise, seed, plot, json, device }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            string? png = Cli.PlotPath(p, plot, json, "sketch.png");
            var list = p.GetValue(methods)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(s => Names.FirstOrDefault(n => n.Name == s) is { Name: not null } hit ? hit.Method : throw new ArgumentException($"--methods: unknown method '{s}' (use {string.Join(", ", Names.Select(n => n.Name))})"))
                .ToList();
            if (list.Count == 0) throw new ArgumentException("--methods: name at least one method");
            var m = p.GetValue(sizes)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(s => int.TryParse(s, NumberStyles.Integer, Inv, out int v) && v > 0 ? v : throw new ArgumentException($"--sizes: '{s}' is not a positive integer"))
                .ToList();
            if (m.Count == 0) throw new ArgumentException("--sizes: give at least one size");
            int n = Cli.Positive(p.GetValue(rows), "--rows");
            if (m.Max() > n) throw new ArgumentException($"--sizes: {m.Max()} exceeds --rows {n}");
            if (p.GetValue(degree) < 0 || p.GetValue(degree) >= n) throw new ArgumentException($"--degree: {p.GetValue(degree)} must be in [0, {n})");
            Cli.Positive(p.GetValue(trials), "--trials");
            if (!(p.GetValue(noise) >= 0) || double.IsInfinity(p.GetValue(noise))) throw new ArgumentException($"--noise: {p.GetValue(noise)} must be finite and non-negative");
            if (p.GetValue(seed) < 0) throw new ArgumentException($"--seed: {p.GetValue(seed)} is negative");
            using var lease = Cli.OpenDevice(p, device);
            var options = new SketchOptions
            {
                Methods = list, Sizes = m, Rows = n, Degree = p.GetValue(degree), Trials = p.GetValue(trials), Noise = p.GetValue(noise),
                Seed = (ulong)p.GetValue(seed), Device = lease.Device,
            };
            var result = Cli.Progress("sketch", list.Count * m.Count, tick => SketchExperiment.Run(options, (done, _) => tick(done)));
            Report(result, p.GetValue(json));
            Cli.SavePlot(png, file => Plot(result, file));
            return 0;
        });
        return cmd;
    }

    /// <summary>Prints the table (stderr) or the JSON object (stdout).</summary>
    public static void Report(SketchResult r, bool json)
    {
        var o = r.Options;
        if (json)
        {
            Cli.JsonLine(new
            {
                rows = o.Rows, degree = o.Degree, trials = o.Trials, noise = o.Noise, seed = o.Seed,
                exact_residual = r.ExactResidual, exact_ms = r.ExactMilliseconds, setup_ms = r.SetupMilliseconds,
                results = r.Rows.Select(x => new { method = Name(x.Method), size = x.Size, median_error = x.MedianError, mean_error = x.MeanError, ms = x.Milliseconds, mean_rows = x.MeanRows }).ToArray(),
            });
            return;
        }
        Cli.Err.WriteLine($"Legendre regression: n = {o.Rows}, d = {o.Degree + 1}, noisy Runge target; exact residual {r.ExactResidual:G4}, exact solve {r.ExactMilliseconds:F2} ms; " +
            $"leverage scores + PCA tree {r.SetupMilliseconds:F1} ms (once); {o.Trials} trials; ε = ‖Ax̃-b‖/‖Ax*-b‖ - 1");
        var t = new Table().AddColumn("m / k");
        foreach (var method in o.Methods) t.AddColumn($"{Name(method)} median ε (ms)");
        foreach (int size in o.Sizes)
            t.AddRow([size.ToString(Inv), .. o.Methods.Select(method => r.Rows.First(x => x.Method == method && x.Size == size)).Select(x => $"{x.MedianError:G3} ({x.Milliseconds:F2})")]);
        Cli.Err.Write(t);
    }

    /// <summary>Two panels: median ε and milliseconds per solve against the sketch size, both on log scales.</summary>
    public static void Plot(SketchResult r, string path)
    {
        const int w = 640, h = 460;
        var palette = new ScottPlot.Palettes.Category10();
        var sizes = r.Options.Sizes.Distinct().Order().ToArray();
        byte[] Panel(string title, string y, Func<SketchRow, double> f, double? exact)
        {
            var plt = new ScottPlot.Plot();
            for (int i = 0; i < r.Options.Methods.Count; i++)
            {
                var pts = r.Rows.Where(q => q.Method == r.Options.Methods[i]).OrderBy(q => q.Size).Where(q => f(q) > 0).ToArray();
                var sc = plt.Add.Scatter(pts.Select(q => Math.Log10(q.Size)).ToArray(), pts.Select(q => Math.Log10(f(q))).ToArray(), palette.GetColor(i));
                sc.LegendText = Name(r.Options.Methods[i]);
                sc.MarkerSize = 6;
            }
            if (exact is double e && e > 0)
            {
                var line = plt.Add.HorizontalLine(Math.Log10(e));
                line.LinePattern = ScottPlot.LinePattern.Dashed;
                line.LegendText = "exact solve";
            }
            plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(sizes.Select(s => Math.Log10(s)).ToArray(), sizes.Select(s => s.ToString(Inv)).ToArray());
            plt.Title(title);
            plt.XLabel("sketch size m / labels k (log scale)");
            plt.YLabel(y);
            plt.ShowLegend(ScottPlot.Alignment.UpperRight);
            return plt.GetImageBytes(w, h, ScottPlot.ImageFormat.Png);
        }
        var panels = new[]
        {
            Panel($"excess residual, n = {r.Options.Rows}, d = {r.Options.Degree + 1}", "log10 median ε", q => q.MedianError, null),
            Panel("time per solve", "log10 ms", q => q.Milliseconds, r.ExactMilliseconds),
        };
        Cli.SavePanels(path, panels, w, h);
    }
}
