using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Kiln.Methods.Smoothing;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>
/// `kiln smooth`: deterministic smoothing of decision-stump ensembles (Horváth et al., NeurIPS 2022):
/// `reproduce` (the paper's Tables 2 and 3 beside ours, with a PNG), `train` and `certify` on any CSV, and `bench`.
/// </summary>
public static class SmoothVerb
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static Command Build()
    {
        var cmd = new Command("smooth", "Exact randomized smoothing of decision-stump ensembles: certified l2/l1 (and joint l0) robustness, MLE stumps, boosting");
        cmd.Subcommands.Add(Reproduce());
        cmd.Subcommands.Add(TrainCommand());
        cmd.Subcommands.Add(CertifyCommand());
        cmd.Subcommands.Add(Bench());
        return cmd;
    }

    static Option<bool> JsonOption() => new("--json") { Description = "Print one JSON object per result on standard output (human output goes to standard error)" };

    // ---------------------------------------------------------------------------------------------- reproduce

    static Command Reproduce()
    {
        var json = JsonOption();
        var quick = new Option<bool>("--quick") { Description = "Only the independent-MLE rows of Table 2 (seconds instead of minutes)" };
        var outDir = new Option<string?>("--out") { Description = "Folder for the PNG of certified accuracy against radius (default: the current folder, or none with --json)" };
        var device = Cli.DeviceOption();
        var cmd = new Command("reproduce", "Run the paper's Table 2 (MLE stumps, RobTreeBoost) and Table 3 (joint categorical certificates) and print the paper's numbers beside ours") { json, quick, outDir, device };
        cmd.SetAction(p =>
        {
            bool asJson = p.GetValue(json), fast = p.GetValue(quick);
            string? outPath = p.GetValue(outDir) is { } given ? Cli.OutputFolder(given, "--out") : asJson ? null : ".";
            using var lease = Cli.OpenDevice(p, device);
            var setups = Reproduction.Table2.Where(s => !fast || s.Method == "MLE stumps").ToArray();
            string[] joint = fast ? [] : ["credit", "adult"];
            var rows = new List<Table2Row>();
            var tables3 = new List<Table3Result>();
            Cli.Progress("reproducing the paper's tables", setups.Length + joint.Length, done =>
            {
                foreach (var s in setups)
                {
                    var r = Reproduction.Run(s, lease.Device);
                    rows.Add(r);
                    if (asJson) Cli.JsonLine(new { table = 2, dataset = s.Dataset, method = s.Method, noise = s.Noise.Norm, scale = s.Noise.Scale, radius = s.Radius, paper_natural = s.PaperNatural, paper_certified = s.PaperCertified, natural = Math.Round(r.Natural, 2), certified = Math.Round(r.Certified, 2), acr = Math.Round(r.Acr, 4), stumps = r.Stumps });
                    done(rows.Count);
                }
                foreach (var d in joint)
                {
                    var t = Reproduction.RunJoint(d, device: lease.Device);
                    tables3.Add(t);
                    if (asJson) Cli.JsonLine(new { table = 3, dataset = d, radii = t.Radii, rows = t.Rows, balanced_certified = t.Balanced.Select(r => r.Select(v => Math.Round(v, 2)).ToArray()).ToArray() });
                    done(rows.Count + tables3.Count);
                }
                return 0;
            });
            PrintTable2(rows);
            foreach (var t in tables3) PrintTable3(t);
            if (outPath is not null)
            {
                var png = Path.Combine(outPath, "smooth_certified_accuracy.png");
                Plot(rows, tables3, png);
                Cli.Err.MarkupLine($"plot: [bold]{Markup.Escape(png)}[/]");
            }
            return 0;
        });
        return cmd;
    }

    static void PrintTable2(IReadOnlyList<Table2Row> rows)
    {
        var t = new Table().Title("Table 2: accuracy (%), paper / Kiln").AddColumns("data", "method", "noise", "r", "natural", "certified", "ACR", "M", "time");
        foreach (var r in rows)
            t.AddRow(r.Setup.Dataset, r.Setup.Method, r.Setup.Noise.ToString(), r.Setup.Radius.ToString("G3", Inv),
                $"{r.Setup.PaperNatural?.ToString("F1", Inv) ?? "-"} / {r.Natural.ToString("F1", Inv)}",
                $"{r.Setup.PaperCertified.ToString("F1", Inv)} / {r.Certified.ToString("F1", Inv)}",
                r.Acr.ToString("F3", Inv), r.Stumps.ToString(Inv), $"{r.TrainSeconds + r.CertifySeconds:F1} s");
        Cli.Err.Write(t);
        foreach (var r in rows.Where(r => r.Setup.Method != "MLE stumps"))
            Cli.Err.MarkupLine($"[grey]{r.Setup.Dataset} {r.Setup.Method} {r.Setup.Noise}: {Markup.Escape(r.Setup.Settings)}[/]");
    }

    static void PrintTable3(Table3Result r)
    {
        var t = new Table().Title($"Table 3, {r.Dataset}: balanced certified accuracy (%), l2 (sigma 0.25) jointly with l0").AddColumn("certificate");
        foreach (double rad in r.Radii) t.AddColumn(rad.ToString("G3", Inv));
        for (int i = 0; i < r.Rows.Length; i++) t.AddRow(r.Balanced[i].Select(v => v.ToString("F1", Inv)).Prepend(r.Rows[i]).ToArray());
        Cli.Err.Write(t);
        Cli.Err.MarkupLine($"[grey]{r.Dataset}: {r.Seconds:F1} s[/]");
    }

    // One panel per Table 2 experiment and per Table 3 data set, composed into one PNG.
    static void Plot(IReadOnlyList<Table2Row> rows, IReadOnlyList<Table3Result> joint, string path)
    {
        var panels = new List<byte[]>();
        const int w = 520, h = 360;
        foreach (var r in rows)
        {
            var plt = new ScottPlot.Plot();
            double max = Math.Max(r.Result.Certificates.Max(c => c.Radius), r.Setup.Radius) * 1.05 + 1e-9;
            var xs = Enumerable.Range(0, 101).Select(i => max * i / 100).ToArray();
            var ys = xs.Select(x => 100 * r.Result.CertifiedAccuracy(x)).ToArray();
            plt.Add.Scatter(xs, ys).LegendText = "Kiln";
            var paper = plt.Add.Marker(r.Setup.Radius, r.Setup.PaperCertified);
            paper.LegendText = "paper";
            paper.Size = 10;
            plt.Title($"{r.Setup.Dataset}, {r.Setup.Method}, {r.Setup.Noise}");
            plt.XLabel($"{r.Setup.Noise.Norm} radius");
            plt.YLabel("certified accuracy (%)");
            plt.Axes.SetLimitsY(0, 102);
            plt.ShowLegend();
            panels.Add(plt.GetImageBytes(w, h, ScottPlot.ImageFormat.Png));
        }
        foreach (var t in joint)
        {
            var plt = new ScottPlot.Plot();
            for (int i = 0; i < t.Rows.Length; i++) plt.Add.Scatter(t.Radii, t.Balanced[i]).LegendText = t.Rows[i];
            plt.Title($"{t.Dataset}: joint l2 + l0 certificates");
            plt.XLabel("l2 radius");
            plt.YLabel("balanced certified accuracy (%)");
            plt.Axes.SetLimitsY(0, 102);
            plt.ShowLegend();
            panels.Add(plt.GetImageBytes(w, h, ScottPlot.ImageFormat.Png));
        }
        Cli.SavePanels(path, panels, w, h, columns: 4);
    }

    // ---------------------------------------------------------------------------------------------- train / certify

    sealed record DataOptions(Option<string> Data, Option<string?> Test, Option<string> Label, Option<string> Scale, Option<string> Noise, Option<double> Sigma,
        Option<string?> Categorical, Option<string> Method, Option<double> Quantile, Option<int> Rounds, Option<int> Reuse, Option<bool> Unbalanced, Option<string> Device)
    {
        public static DataOptions Create() => new(
            new("--data") { Description = "Training CSV (header optional; with no --test the first 80% of rows train)", Required = true },
            new("--test") { Description = "Test CSV with the same columns" },
            new("--label-column") { Description = "The binary label column, by name or 0-based index", DefaultValueFactory = _ => "-1" },
            new("--scale") { Description = "Scaling of numerical columns with training statistics: minmax, zscore or none", DefaultValueFactory = _ => "minmax" },
            new("--noise") { Description = "gaussian (l2 certificates) or uniform (l1)", DefaultValueFactory = _ => "gaussian" },
            new("--sigma") { Description = "Noise scale: sigma (gaussian) or lambda (uniform)", DefaultValueFactory = _ => 0.25 },
            new("--categorical") { Description = "Comma-separated categorical columns (names or indices); default: columns named cN when all are named cN/nN" },
            new("--method") { Description = "mle (independent MLE stumps) or treeboost (RobTreeBoost)", DefaultValueFactory = _ => "mle" },
            new("--quantile") { Description = "RobTreeBoost quantile q", DefaultValueFactory = _ => 0.9 },
            new("--rounds") { Description = "RobTreeBoost rounds", DefaultValueFactory = _ => 40 },
            new("--reuse") { Description = "RobTreeBoost feature reuse limit", DefaultValueFactory = _ => 5 },
            new("--unbalanced") { Description = "Do not weight the classes to equal total weight" },
            Cli.DeviceOption());

        public void AddTo(Command c) { foreach (Option o in new Option[] { Data, Test, Label, Scale, Noise, Sigma, Categorical, Method, Quantile, Rounds, Reuse, Unbalanced, Device }) c.Options.Add(o); }

        /// <summary>The data set, with its inputs on the <paramref name="device"/> that <see cref="Device"/> opened.</summary>
        public SmoothingDataset Load(ParseResult p, Device device)
        {
            var scaling = p.GetValue(Scale) switch
            {
                "minmax" => Scaling.MinMax,
                "zscore" => Scaling.ZScore,
                "none" => Scaling.None,
                var s => throw new ArgumentException($"--scale must be minmax, zscore or none, not '{s}'"),
            };
            string label = p.GetValue(Label)!;
            var cat = p.GetValue(Categorical)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            string data = p.GetValue(Data)!;
            if (label == "-1")
            {
                // Default: the last column.
                using var r = new StreamReader(data);
                label = ((r.ReadLine() ?? "").Split(',').Length - 1).ToString(Inv);
            }
            return SmoothingData.FromCsv(data, p.GetValue(Test), label, scaling, cat).To(device);
        }

        public Noise NoiseOf(ParseResult p) => p.GetValue(Noise) switch
        {
            "gaussian" => Kiln.Methods.Smoothing.Noise.Gaussian(p.GetValue(Sigma)),
            "uniform" => Kiln.Methods.Smoothing.Noise.Uniform(p.GetValue(Sigma)),
            var s => throw new ArgumentException($"--noise must be gaussian or uniform, not '{s}'"),
        };

        public SmoothingModel Train(ParseResult p, SmoothingDataset d)
        {
            var noise = NoiseOf(p);
            TreeBoostOptions? boost = p.GetValue(Method) switch
            {
                "mle" => null,
                "treeboost" => new TreeBoostOptions { Quantile = p.GetValue(Quantile), Rounds = p.GetValue(Rounds), MaxFeatureReuse = p.GetValue(Reuse) },
                var m => throw new ArgumentException($"--method must be mle or treeboost, not '{m}'"),
            };
            return Cli.Progress($"training {p.GetValue(Method)} stumps ({noise})", 1, done => { var m = SmoothingModel.Train(d, noise, boost, !p.GetValue(Unbalanced)); done(1); return m; });
        }
    }

    static Command TrainCommand()
    {
        var o = DataOptions.Create();
        var outFile = new Option<string>("--out") { Description = "Where to write the model (JSON)", DefaultValueFactory = _ => "smooth-model.json" };
        var json = JsonOption();
        var cmd = new Command("train", "Train a smoothed stump ensemble on a CSV and write it as JSON");
        o.AddTo(cmd); cmd.Options.Add(outFile); cmd.Options.Add(json);
        cmd.SetAction(p =>
        {
            Cli.OutputFile(p.GetValue(outFile)!, "--out");
            using var lease = Cli.OpenDevice(p, o.Device);
            var d = o.Load(p, lease.Device);
            var sw = Stopwatch.StartNew();
            var m = o.Train(p, d);
            File.WriteAllText(p.GetValue(outFile)!, m.ToJson());
            Cli.Err.MarkupLine($"{m.Ensemble.Count} numerical stumps{(m.Categorical is null ? "" : $", {m.Categorical.Count} categorical stumps")} trained on {d.YTrain.Length} rows in {sw.Elapsed.TotalSeconds:F1} s; model: [bold]{Markup.Escape(p.GetValue(outFile)!)}[/]");
            if (p.GetValue(json)) Cli.JsonLine(new { model = p.GetValue(outFile), stumps = m.Ensemble.Count, categorical = m.Categorical?.Count ?? 0, seconds = Math.Round(sw.Elapsed.TotalSeconds, 3) });
            return 0;
        });
        return cmd;
    }

    // The parser's message can quote the text it choked on; the file's name is what the user needs.
    static SmoothingModel ReadModel(string path)
    {
        try { return SmoothingModel.FromJson(File.ReadAllText(path)); }
        catch (InvalidDataException e) { throw new InvalidDataException($"--model {path}: {e.Message}", e); }
    }

    static Command CertifyCommand()
    {
        var o = DataOptions.Create();
        var model = new Option<string?>("--model") { Description = "A model written by 'kiln smooth train' (otherwise one is trained first)" };
        var radii = new Option<string>("--radii") { Description = "Comma-separated radii for certified accuracy", DefaultValueFactory = _ => "0,0.25,0.5,0.75,1" };
        var l0 = new Option<int>("--l0") { Description = "Joint certificates: categorical features an adversary may change", DefaultValueFactory = _ => 0 };
        var mc = new Option<int>("--monte-carlo") { Description = "Also certify with Cohen et al.'s sampling baseline (n0 = 100, this many estimation samples, alpha = 0.001) on the same model", DefaultValueFactory = _ => 0 };
        var json = JsonOption();
        var cmd = new Command("certify", "Certify the test rows of a CSV: natural accuracy, certified accuracy at each radius, average certified radius");
        o.AddTo(cmd); cmd.Options.Add(model); cmd.Options.Add(radii); cmd.Options.Add(l0); cmd.Options.Add(mc); cmd.Options.Add(json);
        cmd.SetAction(p =>
        {
            var rs = p.GetValue(radii)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s =>
                double.TryParse(s, NumberStyles.Float, Inv, out double v) && v >= 0 ? (s, v) : throw new ArgumentException($"--radii: '{s}' is not a non-negative number")).ToArray();
            if (p.GetValue(l0) < 0) throw new ArgumentException("--l0 must be non-negative");
            using var lease = Cli.OpenDevice(p, o.Device);
            var d = o.Load(p, lease.Device);
            var path = p.GetValue(model);
            var m = path is null ? o.Train(p, d) : ReadModel(path);
            var sw = Stopwatch.StartNew();
            var r = m.Certify(d, p.GetValue(l0));
            double secs = sw.Elapsed.TotalSeconds;
            int samples = p.GetValue(mc);
            if (samples < 0) throw new ArgumentException("--monte-carlo must be non-negative");
            CertificationResult? sampled = null;
            double mcSecs = 0;
            if (samples > 0)
            {
                if (m.Categorical is not null) throw new ArgumentException("--monte-carlo certifies numerical features only; drop the categorical columns");
                var mcWatch = Stopwatch.StartNew();
                sampled = Cli.Progress($"Monte-Carlo certification ({samples} samples per row)", 1, done =>
                {
                    var c = MonteCarloSmoothing.Certify(m.Ensemble, d.NumericalTest, m.Noise, 100, samples, 0.001, new Generator(0));
                    done(1);
                    return new CertificationResult(c, d.YTest);
                });
                mcSecs = mcWatch.Elapsed.TotalSeconds;
            }
            var t = new Table().Title($"{d.Name}: {d.YTest.Length} test rows, {m.Noise}, {m.Ensemble.Count} stumps").AddColumns("radius", "certified accuracy (%), exact");
            if (sampled is not null) t.AddColumn("Monte Carlo");
            foreach (var (s, v) in rs)
                t.AddRow(sampled is null ? [s, (100 * r.CertifiedAccuracy(v)).ToString("F1", Inv)] : [s, (100 * r.CertifiedAccuracy(v)).ToString("F1", Inv), (100 * sampled.CertifiedAccuracy(v)).ToString("F1", Inv)]);
            Cli.Err.Write(t);
            Cli.Err.MarkupLine($"natural accuracy {100 * r.NaturalAccuracy:F1}%, ACR {r.AverageCertifiedRadius:F3}, certified in {secs * 1e6 / Math.Max(1, d.YTest.Length):F2} µs per row");
            if (sampled is not null)
                Cli.Err.MarkupLine($"Monte Carlo: natural {100 * sampled.NaturalAccuracy:F1}% (abstentions count as wrong), ACR {sampled.AverageCertifiedRadius:F3}, {mcSecs * 1e6 / Math.Max(1, d.YTest.Length):F0} µs per row");
            if (p.GetValue(json))
            {
                var line = new Dictionary<string, object>
                {
                    ["natural"] = Math.Round(100 * r.NaturalAccuracy, 3),
                    ["acr"] = Math.Round(r.AverageCertifiedRadius, 5),
                    ["ca"] = rs.ToDictionary(x => x.s, x => Math.Round(100 * r.CertifiedAccuracy(x.v), 3)),
                };
                if (sampled is not null)
                    line["monte_carlo"] = new Dictionary<string, object>
                    {
                        ["natural"] = Math.Round(100 * sampled.NaturalAccuracy, 3),
                        ["acr"] = Math.Round(sampled.AverageCertifiedRadius, 5),
                        ["ca"] = rs.ToDictionary(x => x.s, x => Math.Round(100 * sampled.CertifiedAccuracy(x.v), 3)),
                    };
                Cli.JsonLine(line);
            }
            return 0;
        });
        return cmd;
    }

    // ---------------------------------------------------------------------------------------------- bench

    /// <summary>
    /// Microseconds per sample (wall clock, fastest run) to certify the 10-stump breast_cancer MLE model (l2, sigma 4)
    /// on <paramref name="rows"/> inputs on <paramref name="device"/>, and the process CPU time per sample of that run (insensitive to other load on a shared machine).
    /// </summary>
    public static (double MicrosPerSample, double CpuMicrosPerSample, int Stumps) Measure(int rows, int repeats, Device device)
    {
        // Training is setup, not the timed work: it stays on the CPU, and only the certified inputs go to the device.
        var d = SmoothingData.BreastCancer();
        var noise = Noise.Gaussian(4);
        var m = MleStumps.Train(d.XTrain, d.YTrain, noise);
        var test = d.XTest.ToArray<double>();
        int f = d.XTest.Shape[1], n = d.XTest.Shape[0];
        var big = new double[rows * f];
        for (int i = 0; i < rows; i++) Array.Copy(test, i % n * f, big, i * f, f);
        var x = Tensor.FromArray(big, new Shape(rows, f)).To(device);
        ExactSmoothing.Certify(m, x, noise);   // warm-up (JIT)
        double best = double.PositiveInfinity, cpu = double.PositiveInfinity;
        var proc = Process.GetCurrentProcess();
        for (int k = 0; k < repeats; k++)
        {
            proc.Refresh();
            var cpu0 = proc.TotalProcessorTime;
            var sw = Stopwatch.StartNew();
            ExactSmoothing.Certify(m, x, noise);
            double wall = sw.Elapsed.TotalSeconds;
            proc.Refresh();
            double used = (proc.TotalProcessorTime - cpu0).TotalSeconds;
            if (wall < best) best = wall;
            cpu = Math.Min(cpu, used);
        }
        return (best * 1e6 / rows, cpu * 1e6 / rows, m.Count);
    }

    static Command Bench()
    {
        var json = JsonOption();
        var rows = new Option<int>("--rows") { Description = "Inputs per run (the 137 test rows repeated)", DefaultValueFactory = _ => 100_000 };
        var repeats = new Option<int>("--repeats") { Description = "Runs; the fastest is reported", DefaultValueFactory = _ => 5 };
        var device = Cli.DeviceOption();
        var cmd = new Command("bench", "Time exact certification of the 10-stump breast_cancer model (microseconds per sample) against the reference code's 53 µs") { json, rows, repeats, device };
        cmd.SetAction(p =>
        {
            if (p.GetValue(rows) < 1 || p.GetValue(repeats) < 1) throw new ArgumentException("--rows and --repeats must be at least 1");
            using var lease = Cli.OpenDevice(p, device);
            var (us, cpuUs, stumps) = Measure(p.GetValue(rows), p.GetValue(repeats), lease.Device);
            const double reference = 53;
            Cli.Err.MarkupLine($"certify breast_cancer ({stumps} stumps, l2 sigma 4): [bold]{us:F3} µs/sample[/] wall on {lease.Device} with {Environment.ProcessorCount} cores ({cpuUs:F3} CPU-µs/sample); reference code about {reference} µs/sample on 2 cores: [bold]{reference / us:F0}x[/]");
            if (p.GetValue(json)) Cli.JsonLine(new { workload = "certify breast_cancer 10-stump MLE model", stumps, us_per_sample = Math.Round(us, 4), cpu_us_per_sample = Math.Round(cpuUs, 4), reference_us_per_sample = reference, speedup = Math.Round(reference / us, 1), cores = Environment.ProcessorCount, device = lease.Device.ToString() });
            return 0;
        });
        return cmd;
    }
}
