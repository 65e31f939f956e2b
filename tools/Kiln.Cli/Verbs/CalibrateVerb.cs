using System.CommandLine;
using Kiln.Methods.Probabilistic;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>`kiln calibrate`: prediction intervals on regression tasks from the embedded UCI tables: NGBoost, conformal risk control, multicalibration boosting and quantile aggregation, coverage and width.</summary>
public static class CalibrateVerb
{
    public static Command Build()
    {
        var cmd = new Command("calibrate", "Prediction intervals on the embedded UCI regression tasks: coverage and width of NGBoost, NGBoost + conformal risk control, LSBoost + split conformal, quantile aggregation (+ CQR)");
        var alpha = new Option<double>("--alpha") { Description = "Miscoverage level of every interval", DefaultValueFactory = _ => 0.1 };
        var rounds = new Option<int>("--rounds") { Description = "NGBoost rounds", DefaultValueFactory = _ => 200 };
        var lr = new Option<double>("--lr") { Description = "NGBoost learning rate", DefaultValueFactory = _ => 0.02 };
        var levels = new Option<int>("--levels") { Description = "LSBoost grid size m", DefaultValueFactory = _ => 50 };
        var steps = new Option<int>("--steps") { Description = "AdamW steps of the linear quantile regression and the aggregation weights", DefaultValueFactory = _ => 300 };
        var splits = new Option<int>("--splits") { Description = "Random train/calibration/test splits averaged over", DefaultValueFactory = _ => 3 };
        var plot = new Option<string?>("--plot") { Description = "PNG of coverage against width (default: calibrate.png, or none with --json)" };
        var json = new Option<bool>("--json") { Description = "Print the result as one JSON object on standard output" };
        foreach (var o in new Option[] { alpha, rounds, lr, levels, steps, splits, plot, json }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            string? png = Cli.PlotPath(p, plot, json, "calibrate.png");
            if (!(p.GetValue(alpha) > 0 && p.GetValue(alpha) < 1)) throw new ArgumentException($"--alpha: {p.GetValue(alpha)} is not in (0, 1)");
            foreach (var (v, name) in new[] { (p.GetValue(rounds), "--rounds"), (p.GetValue(levels), "--levels"), (p.GetValue(steps), "--steps"), (p.GetValue(splits), "--splits") })
                Cli.Positive(v, name);
            Cli.PositiveFinite(p.GetValue(lr), "--lr");
            var options = new ProbabilisticOptions { Alpha = p.GetValue(alpha), Rounds = p.GetValue(rounds), LearningRate = p.GetValue(lr), Levels = p.GetValue(levels), Steps = p.GetValue(steps), Splits = p.GetValue(splits) };
            var result = Cli.Progress("calibrate", ProbabilisticExperiment.Datasets.Count * options.Splits, tick => ProbabilisticExperiment.Run(options, (done, _) => tick(done)));
            if (p.GetValue(json))
                Cli.JsonLine(new
                {
                    alpha = options.Alpha, splits = options.Splits, sizes = result.Sizes,
                    rows = result.Rows.Select(r => new { dataset = r.Dataset, method = r.Method, coverage = Math.Round(r.Coverage, 4), coverage_std = Math.Round(r.CoverageStd, 4), width = Math.Round(r.Width, 5) }).ToArray(),
                });
            else
            {
                var t = new Table().Title($"test coverage (nominal {100 * (1 - options.Alpha):F0}%) and mean interval width, {options.Splits} splits").AddColumns("data", "rows", "method", "coverage %", "width");
                foreach (var r in result.Rows)
                    t.AddRow(r.Dataset, result.Sizes[r.Dataset].ToString(), r.Method, $"{100 * r.Coverage:F1} ± {100 * r.CoverageStd:F1}", r.Width.ToString("G4"));
                Cli.Err.Write(t);
            }
            Cli.SavePlot(png, file => Plot(result, file));
            return 0;
        });
        return cmd;
    }

    /// <summary>Coverage against width relative to the narrowest interval, one marker per method and data set, with the nominal level as a line.</summary>
    public static void Plot(ProbabilisticResult r, string path)
    {
        var plt = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var methods = r.Rows.Select(x => x.Method).Distinct().ToList();
        var shapes = new[] { ScottPlot.MarkerShape.FilledCircle, ScottPlot.MarkerShape.FilledSquare, ScottPlot.MarkerShape.FilledTriangleUp };
        var sets = r.Rows.Select(x => x.Dataset).Distinct().ToList();
        foreach (var x in r.Rows)
        {
            double narrowest = r.Rows.Where(o => o.Dataset == x.Dataset).Min(o => o.Width);
            var m = plt.Add.Marker(x.Width / narrowest, 100 * x.Coverage);
            m.Color = palette.GetColor(methods.IndexOf(x.Method));
            m.Shape = shapes[sets.IndexOf(x.Dataset) % shapes.Length];
            m.Size = 12;
            m.LegendText = $"{x.Method} ({x.Dataset})";
        }
        var nominal = plt.Add.HorizontalLine(100 * (1 - r.Options.Alpha));
        nominal.LinePattern = ScottPlot.LinePattern.Dashed;
        nominal.LegendText = "nominal";
        plt.XLabel("mean width / narrowest on the data set");
        plt.YLabel("test coverage (%)");
        plt.Title("prediction intervals on the embedded UCI regression tasks");
        plt.ShowLegend();
        plt.SavePng(path, 900, 560);
    }
}
