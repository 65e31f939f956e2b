using System.CommandLine;
using System.Globalization;
using Kiln.Methods.Reward;
using Spectre.Console;
using Link = Kiln.Methods.Reward.Link;

namespace Kiln.Cli;

/// <summary>
/// `kiln reward features|readout`: the neural-reward-model experiments of Kiln.Methods.Reward. Every list option
/// takes comma-separated values and the run covers their product; --json prints one object per setting.
/// </summary>
public static class RewardVerb
{
    public static Command Build()
    {
        var cmd = new Command("reward", "Neural reward models in the Gaussian single-index model: reward-weighted feature learning (features) and weighted ridge readouts deployed as tilted policies (readout)");
        cmd.Subcommands.Add(BuildFeatures());
        cmd.Subcommands.Add(BuildReadout());
        return cmd;
    }

    static readonly Option<bool> Json = new("--json") { Description = "Print one JSON object per setting on standard output (and nothing else there)" };
    static readonly Option<string> DeviceOpt = Cli.DeviceOption();
    static readonly Option<string> Noise = new("--noise") { Description = "Label noise standard deviation", DefaultValueFactory = _ => "0.1" };
    static readonly Option<string> Bias = new("--bias") { Description = "Bias range B: b_j ~ U[-B, B]", DefaultValueFactory = _ => "1" };
    static readonly Option<int> Seeds = new("--seeds") { Description = "Number of seeds (0, 1, ...)", DefaultValueFactory = _ => 3 };
    static readonly Option<string> Steps = new("--steps") { Description = "Stage-1 spherical gradient steps", DefaultValueFactory = _ => "1" };
    static readonly Option<string> Lr = new("--lr") { Description = "Stage-1 step size on the sphere (inf: w <- g_perp/|g_perp|)", DefaultValueFactory = _ => "inf" };
    static readonly Option<string> Mode = new("--mode") { Description = "Stage-1 data use: full (one batch) or online (fresh samples each step)", DefaultValueFactory = _ => "full" };
    static readonly Option<string> PsiOpt = new("--psi") { Description = "Stage-1 label factor: y or one", DefaultValueFactory = _ => "y" };
    static readonly Option<string> Norm = new("--normalizer") { Description = "Weight normalizer Z: batch or population", DefaultValueFactory = _ => "batch" };
    static readonly Option<string?> Plot = new("--plot") { Description = "PNG path prefix for the plots (default: reward-<verb> in the current directory, or none with --json; 'none' for no plot)" };

    static Command BuildFeatures()
    {
        var link = new Option<string>("--link") { Description = "Links: odd3, tanh, even", DefaultValueFactory = _ => "odd3" };
        var d = new Option<string>("--d") { Description = "Dimensions d", DefaultValueFactory = _ => "64" };
        var n = new Option<string?>("--n") { Description = "Stage-1 samples n (default: 64 d)" };
        var nOverD = new Option<string?>("--n-over-d") { Description = "Stage-1 samples as multiples of d (instead of --n)" };
        var neurons = new Option<int>("--neurons") { Description = "Neurons N", DefaultValueFactory = _ => 256 };
        var beta1 = new Option<string>("--beta1") { Description = "Feature-learning temperatures beta_1 (inf: no weighting)", DefaultValueFactory = _ => "inf,4,2,1,0.5" };
        var cmd = new Command("features", "Stage 1: fraction of neurons with |<w_j, theta*>| >= 1/2 after reward-weighted feature learning, against beta_1, d and n");
        foreach (var o in new Option[] { link, d, n, nOverD, neurons, beta1, Seeds, Bias, Noise, Steps, Lr, Mode, PsiOpt, Norm, DeviceOpt, Json, Plot }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            var links = List(p.GetValue(link)!).Select(Link.Parse).ToArray();
            var ds = Ints(p.GetValue(d)!, "--d");
            if (p.GetValue(n) is not null && p.GetValue(nOverD) is not null) throw new ArgumentException("reward features: give --n or --n-over-d, not both");
            var ns = p.GetValue(n) is { } nv ? Ints(nv, "--n").Select(v => (Fixed: v, Ratio: 0.0)).ToArray()
                : Doubles(p.GetValue(nOverD) ?? "64", "--n-over-d").Select(r => (Fixed: 0, Ratio: r)).ToArray();
            var betas = Doubles(p.GetValue(beta1)!, "--beta1");
            int seeds = Positive(p.GetValue(Seeds), "--seeds");
            var baseOpt = StageOne(p, double.PositiveInfinity);
            using var lease = Cli.OpenDevice(p, DeviceOpt);
            var settings = (from l in links from dd in ds from nn in ns from b in betas from s in Enumerable.Range(0, seeds)
                            select new FeatureSetting
                            {
                                Link = l, D = dd, N = nn.Fixed > 0 ? nn.Fixed : (int)Math.Round(nn.Ratio * dd), Neurons = Positive(p.GetValue(neurons), "--neurons"),
                                BiasRange = Double(p.GetValue(Bias)!, "--bias"), NoiseStd = Double(p.GetValue(Noise)!, "--noise"), Seed = s,
                                Options = baseOpt with { Beta1 = b }, Device = lease.Device,
                            }).ToArray();
            bool json = p.GetValue(Json);
            var results = Cli.Progress("reward features", settings.Length, tick =>
            {
                var list = new List<FeatureResult>();
                foreach (var s in settings)
                {
                    var r = RewardExperiments.Features(s);
                    list.Add(r);
                    if (json) Cli.JsonLine(ToJson(r));
                    tick(list.Count);
                }
                return list;
            });
            FeatureTable(results);
            var prefix = PlotPrefix(p.GetValue(Plot), "reward-features", json);
            if (prefix is not null)
                foreach (var g in results.GroupBy(r => r.Link))
                    Cli.Err.WriteLine($"plot: {FeaturePlot(g.ToList(), $"{prefix}-{g.Key}.png")}");
            return 0;
        });
        return cmd;
    }

    static Command BuildReadout()
    {
        var link = new Option<string>("--link") { Description = "Link: odd3, tanh or even", DefaultValueFactory = _ => "tanh" };
        var d = new Option<int>("--d") { Description = "Dimension d", DefaultValueFactory = _ => 16 };
        var neurons = new Option<int>("--neurons") { Description = "Neurons N", DefaultValueFactory = _ => 64 };
        var n = new Option<string>("--n") { Description = "Readout samples n", DefaultValueFactory = _ => "500,2000,8000" };
        var nFeat = new Option<int>("--feature-n") { Description = "Stage-1 samples (separate from the readout's)", DefaultValueFactory = _ => 4096 };
        var beta1 = new Option<string>("--beta1") { Description = "Stage-1 temperature (inf: no weighting)", DefaultValueFactory = _ => "inf" };
        var beta2 = new Option<string>("--beta2") { Description = "Deployment temperatures beta_2", DefaultValueFactory = _ => "2,1,0.5,0.25,0.125,0.0625,0.03125,0.015625" };
        var weighting = new Option<string>("--weighting") { Description = "Readouts: unweighted, label, surrogate", DefaultValueFactory = _ => "unweighted,label,surrogate" };
        var lambda = new Option<string>("--lambda") { Description = "Ridge penalty lambda in (Phi^T Omega Phi + n lambda I)", DefaultValueFactory = _ => "0.001" };
        var pilot = new Option<string>("--pilot") { Description = "Fraction of the n samples that fits the surrogate's pilot readout", DefaultValueFactory = _ => "0.5" };
        var samples = new Option<int>("--is-samples") { Description = "Importance samples from pi_0 when the learned reward has no small basis", DefaultValueFactory = _ => 1 << 18 };
        var admit = new Option<string>("--admit") { Description = "A beta_2 is admissible when the learned policy keeps this share of the oracle's regularized gain J(pi*) - J(pi_0), i.e. Gap <= (1 - share)(J(pi*) - J(pi_0))", DefaultValueFactory = _ => "0.9" };
        var seeds = new Option<int>("--seeds") { Description = "Number of seeds (0, 1, ...)", DefaultValueFactory = _ => 1 };
        var minEss = new Option<int>("--min-ess") { Description = "Importance-sampling ESS below which an evaluation is marked unreliable (and never admissible)", DefaultValueFactory = _ => 100 };
        var cmd = new Command("readout", "Stage 2: unweighted, label-weighted and surrogate-weighted ridge readouts deployed as tilted policies: realized value, gap, chi^2 and n_eff against beta_2 and n");
        foreach (var o in new Option[] { link, d, neurons, n, nFeat, beta1, beta2, weighting, lambda, pilot, samples, admit, minEss, seeds, Bias, Noise, Steps, Lr, Mode, PsiOpt, Norm, DeviceOpt, Json, Plot }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            var l = Link.Parse(p.GetValue(link)!);
            var ns = Ints(p.GetValue(n)!, "--n");
            var b2 = Doubles(p.GetValue(beta2)!, "--beta2");
            if (b2.Any(b => !(b > 0) || double.IsInfinity(b))) throw new ArgumentException("reward readout: --beta2 values must be positive and finite");
            var ws = List(p.GetValue(weighting)!).Select(ParseWeighting).ToArray();
            int nSeeds = Positive(p.GetValue(seeds), "--seeds");
            double admitShare = Double(p.GetValue(admit)!, "--admit");
            var stage1 = StageOne(p, Double(p.GetValue(beta1)!, "--beta1"));
            using var lease = Cli.OpenDevice(p, DeviceOpt);
            var device = lease.Device;
            var settings = (from nn in ns from s in Enumerable.Range(0, nSeeds)
                            select new ReadoutSetting
                            {
                                Link = l, D = Positive(p.GetValue(d), "--d"), Neurons = Positive(p.GetValue(neurons), "--neurons"), N = nn, Seed = s,
                                FeatureSamples = Positive(p.GetValue(nFeat), "--feature-n"), FeatureOptions = stage1,
                                BiasRange = Double(p.GetValue(Bias)!, "--bias"), NoiseStd = Double(p.GetValue(Noise)!, "--noise"),
                                Lambda = Double(p.GetValue(lambda)!, "--lambda"), PilotFraction = Double(p.GetValue(pilot)!, "--pilot"),
                                Tilt = new TiltOptions { Samples = Positive(p.GetValue(samples), "--is-samples"), Device = device }, Device = device,
                            }).ToArray();
            bool json = p.GetValue(Json);
            var results = Cli.Progress("reward readout", settings.Length, tick =>
            {
                var list = new List<ReadoutResult>();
                int done = 0;
                foreach (var s in settings)
                {
                    foreach (var r in RewardExperiments.Readout(s, b2, ws))
                    {
                        list.Add(r);
                        if (json) Cli.JsonLine(ToJson(r));
                    }
                    tick(++done);
                }
                return list;
            });
            ReadoutTable(results, admitShare, p.GetValue(minEss));
            var prefix = PlotPrefix(p.GetValue(Plot), "reward-readout", json);
            if (prefix is not null) Cli.Err.WriteLine($"plots: {ReadoutPlot(results, prefix)}");
            return 0;
        });
        return cmd;
    }

    static FeatureLearningOptions StageOne(ParseResult p, double beta1) => new()
    {
        Beta1 = beta1,
        Steps = Positive(int.Parse(p.GetValue(Steps)!, CultureInfo.InvariantCulture), "--steps"),
        LearningRate = Double(p.GetValue(Lr)!, "--lr"),
        Mode = p.GetValue(Mode) switch { "full" => FeatureMode.FullBatch, "online" => FeatureMode.Online, var m => throw new ArgumentException($"--mode: expected full or online, got '{m}'") },
        Psi = p.GetValue(PsiOpt) switch { "y" => Psi.Label, "one" => Psi.One, var m => throw new ArgumentException($"--psi: expected y or one, got '{m}'") },
        Normalizer = p.GetValue(Norm) switch { "batch" => Normalizer.Batch, "population" => Normalizer.Population, var m => throw new ArgumentException($"--normalizer: expected batch or population, got '{m}'") },
    };

    // ------------------------------------------------------------------ tables

    static void FeatureTable(IReadOnlyList<FeatureResult> results)
    {
        var table = new Table().AddColumns("link", "d", "n", "n/d", "beta1", "recovered (mean ± sd over seeds)", "mean m_j", "c1(T)", "c1²/E[[T²]]", "s/run");
        foreach (var g in results.GroupBy(r => (r.Link, r.D, r.N, r.Beta1)))
        {
            var rec = g.Select(r => r.Recovered).ToArray();
            table.AddRow(g.Key.Link, g.Key.D.ToString(), g.Key.N.ToString(), (g.Key.N / (double)g.Key.D).ToString("G4"), Fmt(g.Key.Beta1),
                $"{rec.Average():F3} ± {Sd(rec):F3}", g.Average(r => r.MeanOverlap).ToString("F3"), g.First().C1.ToString("F4"), g.First().Signal.ToString("F4"),
                g.Average(r => r.Seconds).ToString("F2"));
        }
        Cli.Err.Write(table);
    }

    static void ReadoutTable(IReadOnlyList<ReadoutResult> results, double admitShare, int minEss)
    {
        bool Admissible(IEnumerable<ReadoutResult> rows) => RewardVerb.Admissible(rows, admitShare, minEss);
        var table = new Table().AddColumns("weighting", "n", "beta2", "realized E[[r*]]", "oracle", "gap", "value gap", "chi²", "n_eff", "weight ESS", "IS ESS", "admissible");
        foreach (var g in results.GroupBy(r => (r.Weighting, r.N, r.Beta2)))
        {
            var f = g.First();
            table.AddRow(g.Key.Weighting, g.Key.N.ToString(), Fmt(g.Key.Beta2), g.Average(r => r.Realized).ToString("F4"), f.Oracle.ToString("F4"),
                g.Average(r => r.Gap).ToString("F4"), g.Average(r => r.ValueGap).ToString("F4"), f.Chi2.ToString("G3"), f.NEff.ToString("G3"),
                g.Average(r => r.WeightEss).ToString("F0"), f.Exact ? "exact" : g.Min(r => r.Ess).ToString("F0"),
                g.Any(r => Unreliable(r, minEss)) ? "unreliable" : Admissible(g) ? "yes" : "no");
        }
        Cli.Err.Write(table);
        foreach (var g in results.GroupBy(r => (r.Weighting, r.N)))
        {
            var ok = g.GroupBy(r => r.Beta2).Where(Admissible).Select(b => b.Key).OrderBy(b => b).ToArray();
            Cli.Err.WriteLine($"admissible beta2 for {g.Key.Weighting}, n = {g.Key.N}: " + (ok.Length == 0 ? "none" : $"{Fmt(ok[0])} .. {Fmt(ok[^1])} ({ok.Length} of {g.Select(r => r.Beta2).Distinct().Count()})"));
        }
    }

    static bool Unreliable(ReadoutResult r, int minEss) => !r.Exact && r.Ess < minEss;

    /// <summary>Admissible: every evaluation is reliable and J(π̂) - J(π₀) ≥ share · (J(π*) - J(π₀)), i.e. the mean gap is at most
    /// (1 - share) of the oracle's regularized gain (means over seeds).</summary>
    static bool Admissible(IEnumerable<ReadoutResult> rows, double share, int minEss)
    {
        var r = rows.ToArray();
        if (r.Any(v => Unreliable(v, minEss))) return false;
        double gain = r.Average(v => v.OracleObjective - v.Base);
        return r.Average(v => v.Gap) <= (1 - share) * gain;
    }

    // ------------------------------------------------------------------ plots

    static string FeaturePlot(IReadOnlyList<FeatureResult> results, string path)
    {
        var plt = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int ci = 0;
        // x = log2 β₁; the unweighted run (β₁ = ∞) sits one step right of the largest finite β₁.
        var finite = results.Select(r => r.Beta1).Where(double.IsFinite).DefaultIfEmpty(1).ToArray();
        double infX = Math.Log2(finite.Max()) + 1;
        double X(double b) => double.IsPositiveInfinity(b) ? infX : Math.Log2(b);
        foreach (var g in results.GroupBy(r => (r.D, r.N)).OrderBy(g => g.Key.D).ThenBy(g => g.Key.N))
        {
            var pts = g.GroupBy(r => r.Beta1).OrderBy(b => X(b.Key)).Select(b => (X: X(b.Key), Y: b.Average(r => r.Recovered))).ToArray();
            var sc = plt.Add.Scatter(pts.Select(q => q.X).ToArray(), pts.Select(q => q.Y).ToArray(), palette.GetColor(ci++));
            sc.LegendText = $"d = {g.Key.D}, n/d = {g.Key.N / (double)g.Key.D:G3}";
            sc.MarkerSize = 7;
        }
        plt.Title($"{results[0].Link}: recovered neurons (|<w_j, θ*>| ≥ 1/2) vs feature-learning temperature");
        plt.Axes.Bottom.Label.Text = $"log₂ β₁ (rightmost point, {infX:G3}: unweighted, β₁ = ∞)";
        plt.Axes.Left.Label.Text = "fraction recovered (mean over seeds)";
        plt.Axes.SetLimitsY(-0.02, 1.02);
        plt.ShowLegend(ScottPlot.Alignment.UpperRight);
        plt.SavePng(path, 900, 560);
        return path;
    }

    static string ReadoutPlot(IReadOnlyList<ReadoutResult> results, string path)
    {
        var (val, gap) = (new ScottPlot.Plot(), new ScottPlot.Plot());
        var palette = new ScottPlot.Palettes.Category10();
        var weightings = results.Select(r => r.Weighting).Distinct().ToList();
        var nsOrder = results.Select(r => r.N).Distinct().OrderBy(v => v).ToList();
        var patterns = new[] { ScottPlot.LinePattern.Dotted, ScottPlot.LinePattern.Dashed, ScottPlot.LinePattern.Solid };
        foreach (var g in results.GroupBy(r => (r.Weighting, r.N)))
        {
            var pts = g.GroupBy(r => r.Beta2).OrderBy(b => b.Key).Select(b => (X: Math.Log2(b.Key), V: b.Average(r => r.Realized), G: b.Average(r => r.Gap))).ToArray();
            var color = palette.GetColor(weightings.IndexOf(g.Key.Weighting));
            var pattern = patterns[nsOrder.IndexOf(g.Key.N) % patterns.Length];
            var xs = pts.Select(q => q.X).ToArray();
            var a = val.Add.Scatter(xs, pts.Select(q => q.V).ToArray(), color);
            a.LegendText = $"{g.Key.Weighting}, n = {g.Key.N}"; a.LinePattern = pattern;
            var b = gap.Add.Scatter(xs, pts.Select(q => q.G).ToArray(), color);
            b.LegendText = a.LegendText; b.LinePattern = pattern;
        }
        var oracle = results.GroupBy(r => r.Beta2).OrderBy(b => b.Key).ToArray();
        var o = val.Add.Scatter(oracle.Select(b => Math.Log2(b.Key)).ToArray(), oracle.Select(b => b.First().Oracle).ToArray(), ScottPlot.Colors.Black);
        o.LegendText = "oracle E_π*[r*]"; o.LineWidth = 2;
        val.Title($"{results[0].Link}, d = {results[0].D}: realized value E_π̂[r*]");
        val.Axes.Bottom.Label.Text = "log₂ β₂";
        val.ShowLegend(ScottPlot.Alignment.LowerLeft);
        gap.Title("gap J(π*) - J(π̂) = β₂ KL(π̂‖π*)");
        gap.Axes.Bottom.Label.Text = "log₂ β₂";
        gap.Axes.Left.Label.Text = "gap";
        gap.ShowLegend(ScottPlot.Alignment.UpperLeft);
        val.SavePng(path + "-value.png", 900, 560);
        gap.SavePng(path + "-gap.png", 900, 560);
        return $"{path}-value.png, {path}-gap.png";
    }

    // ------------------------------------------------------------------ parsing and formatting

    // A --json run writes files only when --plot asks for them.
    static string? PlotPrefix(string? given, string fallback, bool json) => given switch
    {
        "none" => null,
        null or "" => json ? null : Path.GetFullPath(fallback),
        var p => Path.GetFullPath(p.EndsWith(".png", StringComparison.OrdinalIgnoreCase) ? p[..^4] : p),
    };

    static object ToJson(FeatureResult r) => new
    {
        kind = "reward-features", link = r.Link, d = r.D, n = r.N, n_over_d = r.N / (double)r.D, neurons = r.Neurons, beta1 = JsonNum(r.Beta1), seed = r.Seed,
        recovered = r.Recovered, mean_overlap = r.MeanOverlap, max_overlap = r.MaxOverlap, c1 = r.C1, signal = r.Signal, seconds = r.Seconds,
    };

    static object ToJson(ReadoutResult r) => new
    {
        kind = "reward-readout", link = r.Link, d = r.D, n = r.N, seed = r.Seed, weighting = r.Weighting, beta2 = r.Beta2, recovered = r.Recovered,
        realized = r.Realized, oracle = r.Oracle, @base = r.Base, oracle_objective = r.OracleObjective, gap = r.Gap, value_gap = r.ValueGap, chi2 = r.Chi2, n_eff = r.NEff,
        weight_ess = r.WeightEss, exact = r.Exact, is_ess = r.Exact ? null : (double?)r.Ess, seconds = r.Seconds,
    };

    // JSON has no infinity: +inf (no weighting) is written as null.
    static double? JsonNum(double v) => double.IsFinite(v) ? v : null;
    static string Fmt(double v) => double.IsPositiveInfinity(v) ? "inf" : v.ToString("G6", CultureInfo.InvariantCulture);
    static double Sd(double[] v) => v.Length < 2 ? 0 : Math.Sqrt(v.Sum(x => (x - v.Average()) * (x - v.Average())) / (v.Length - 1));

    static string[] List(string s) => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    static int[] Ints(string s, string name) => List(s).Select(v => int.TryParse(v, CultureInfo.InvariantCulture, out var i) && i > 0 ? i
        : throw new ArgumentException($"{name}: expected positive integers, got '{v}'")).ToArray();
    static double[] Doubles(string s, string name) => List(s).Select(v => Double(v, name)).ToArray();

    /// <summary>A number: a decimal, "inf", or a fraction such as 1/64.</summary>
    static double Double(string v, string name)
    {
        v = v.Trim();
        if (v is "inf" or "+inf" or "infinity") return double.PositiveInfinity;
        var parts = v.Split('/');
        if (parts.Length == 2 && double.TryParse(parts[0], CultureInfo.InvariantCulture, out var a) && double.TryParse(parts[1], CultureInfo.InvariantCulture, out var b) && b != 0)
            return a / b;
        return double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var x) && !double.IsNaN(x) ? x
            : throw new ArgumentException($"{name}: expected a number, 'inf' or a fraction like 1/64, got '{v}'");
    }

    static int Positive(int v, string name) => v > 0 ? v : throw new ArgumentException($"{name}: must be positive, got {v}");

    static Weighting ParseWeighting(string s) => s switch
    {
        "unweighted" => Weighting.Unweighted, "label" => Weighting.Label, "surrogate" => Weighting.Surrogate,
        _ => throw new ArgumentException($"--weighting: expected unweighted, label or surrogate, got '{s}'"),
    };
}
