using System.CommandLine;
using System.Globalization;
using Kiln.Methods.Certification;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>
/// `kiln certify`: randomized-smoothing certificates of a small MLP on the digits, Cohen et al.'s vote certificate beside
/// the Lipschitz-variance-margin certificate: certified accuracy against l2 radius (the JSON keys natural / acr / ca of
/// `kiln smooth certify`), a table and a PNG.
/// </summary>
public static class CertifyVerb
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static Command Build()
    {
        var cmd = new Command("certify", "Randomized smoothing of an MLP on the digits: certified accuracy against l2 radius, Cohen et al. and Lipschitz-variance-margin certificates");
        var sigmas = new Option<string>("--sigmas") { Description = "Comma-separated noise levels; one noise-trained MLP each", DefaultValueFactory = _ => "0.25,0.5" };
        var epochs = new Option<int>("--epochs") { Description = "Training epochs per MLP", DefaultValueFactory = _ => 30 };
        var hidden = new Option<int>("--hidden") { Description = "Hidden width (64 -> h -> h -> 10)", DefaultValueFactory = _ => 128 };
        var points = new Option<int>("--test-points") { Description = "Test points certified (of 450)", DefaultValueFactory = _ => 450 };
        var n0 = new Option<int>("--n0") { Description = "Selection samples per point", DefaultValueFactory = _ => 100 };
        var n = new Option<int>("--n") { Description = "Estimation samples per point", DefaultValueFactory = _ => 1000 };
        var alpha = new Option<double>("--alpha") { Description = "Failure probability of each certificate", DefaultValueFactory = _ => 0.001 };
        var temperature = new Option<double>("--temperature") { Description = "Softmax temperature of the Lipschitz-variance-margin scores", DefaultValueFactory = _ => 0.25 };
        var radii = new Option<string>("--radii") { Description = "Comma-separated radii for the table and JSON", DefaultValueFactory = _ => "0,0.25,0.5,0.75,1,1.25" };
        var plot = new Option<string?>("--plot") { Description = "PNG of certified accuracy against radius (default: certify.png, or none with --json)" };
        var json = new Option<bool>("--json") { Description = "Print the result as one JSON object on standard output" };
        var device = Cli.DeviceOption();
        foreach (var o in new Option[] { sigmas, epochs, hidden, points, n0, n, alpha, temperature, radii, plot, json, device }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            string? png = Cli.PlotPath(p, plot, json, "certify.png");
            var s = Numbers(p.GetValue(sigmas)!, "--sigmas", v => v > 0);
            var rs = Numbers(p.GetValue(radii)!, "--radii", v => v >= 0);
            foreach (var (v, name) in new[] { (p.GetValue(epochs), "--epochs"), (p.GetValue(hidden), "--hidden"), (p.GetValue(points), "--test-points"), (p.GetValue(n0), "--n0") })
                Cli.Positive(v, name);
            if (p.GetValue(n) < 2) throw new ArgumentException($"--n: {p.GetValue(n)} is below 2");
            if (!(p.GetValue(alpha) > 0 && p.GetValue(alpha) < 1)) throw new ArgumentException($"--alpha: {p.GetValue(alpha)} is not in (0, 1)");
            Cli.PositiveFinite(p.GetValue(temperature), "--temperature");
            using var lease = Cli.OpenDevice(p, device);
            var options = new CertificationOptions
            {
                Sigmas = s.Select(v => v.Value).ToArray(), Epochs = p.GetValue(epochs), Hidden = p.GetValue(hidden), TestPoints = p.GetValue(points),
                N0 = p.GetValue(n0), N = p.GetValue(n), Alpha = p.GetValue(alpha), Temperature = p.GetValue(temperature), Device = lease.Device,
            };
            var result = Cli.Progress("certify", s.Length * 3, tick => CertificationExperiment.Run(options, (done, _) => tick(done)));
            Report(result, rs, p.GetValue(json));
            Cli.SavePlot(png, file => Plot(result, file));
            return 0;
        });
        return cmd;
    }

    static (string Text, double Value)[] Numbers(string list, string option, Func<double, bool> ok)
    {
        var v = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(t =>
            double.TryParse(t, NumberStyles.Float, Inv, out double d) && ok(d) && double.IsFinite(d) ? (t, d) : throw new ArgumentException($"{option}: '{t}' is out of range")).ToArray();
        return v.Length > 0 ? v : throw new ArgumentException($"{option}: give at least one value");
    }

    /// <summary>Prints the table (stderr) or the JSON object (stdout).</summary>
    public static void Report(CertificationExperimentResult r, (string Text, double Value)[] radii, bool json)
    {
        if (json)
        {
            Cli.JsonLine(new
            {
                train = r.TrainSize, test = r.TestSize, n0 = r.Options.N0, n = r.Options.N, alpha = r.Options.Alpha, temperature = r.Options.Temperature,
                rows = r.Rows.Select(x => new Dictionary<string, object>
                {
                    ["method"] = x.Method, ["sigma"] = x.Sigma, ["base_accuracy"] = Math.Round(100 * x.BaseAccuracy, 3),
                    ["natural"] = Math.Round(100 * x.Result.NaturalAccuracy, 3), ["acr"] = Math.Round(x.Result.AverageCertifiedRadius, 5),
                    ["ca"] = radii.ToDictionary(q => q.Text, q => Math.Round(100 * x.Result.CertifiedAccuracy(q.Value), 3)), ["seconds"] = Math.Round(x.Seconds, 3),
                }).ToArray(),
            });
            return;
        }
        Cli.Err.WriteLine($"digits: {r.TrainSize} train, {r.TestSize} test points certified; n0 {r.Options.N0}, n {r.Options.N}, alpha {r.Options.Alpha}");
        var t = new Table().Title("certified accuracy (%) at l2 radius").AddColumns("method", "sigma", "base acc", "ACR");
        foreach (var q in radii) t.AddColumn(q.Text);
        foreach (var x in r.Rows)
            t.AddRow([x.Method, x.Sigma.ToString("G3", Inv), (100 * x.BaseAccuracy).ToString("F1", Inv), x.Result.AverageCertifiedRadius.ToString("F3", Inv),
                .. radii.Select(q => (100 * x.Result.CertifiedAccuracy(q.Value)).ToString("F1", Inv))]);
        Cli.Err.Write(t);
    }

    /// <summary>Certified accuracy against radius, one curve per method and sigma.</summary>
    public static void Plot(CertificationExperimentResult r, string path)
    {
        var plt = new ScottPlot.Plot();
        double max = Math.Max(1e-9, r.Rows.Max(x => x.Result.Certificates.Max(c => c.Radius))) * 1.05;
        var xs = Enumerable.Range(0, 101).Select(i => max * i / 100).ToArray();
        foreach (var row in r.Rows)
        {
            var line = plt.Add.Scatter(xs, xs.Select(v => 100 * row.Result.CertifiedAccuracy(v)).ToArray());
            line.LegendText = $"{(row.Method == "cohen" ? "Cohen" : "LVM")} sigma={row.Sigma:G3}";
            line.MarkerSize = 0;
            if (row.Method == "lvm") line.LinePattern = ScottPlot.LinePattern.Dashed;
        }
        plt.Title($"digits MLP: randomized smoothing certificates ({r.TestSize} test points, n={r.Options.N})");
        plt.XLabel("l2 radius");
        plt.YLabel("certified accuracy (%)");
        plt.Axes.SetLimitsY(0, 102);
        plt.ShowLegend();
        plt.SavePng(path, 800, 500);
    }
}
