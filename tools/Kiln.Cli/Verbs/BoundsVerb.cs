using System.CommandLine;
using System.Globalization;
using Kiln.Methods.Variational;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>
/// `kiln bounds`: "Tighter Variational Bounds are Not Necessarily Better" on the linear-Gaussian model of Kiln.Methods.Variational:
/// ELBO, IWAE, MIWAE, CIWAE and PIWAE against the exact log p(x), and the encoder's and decoder's gradient SNR, as K grows.
/// </summary>
public static class BoundsVerb
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static Command Build()
    {
        var ks = new Option<string>("--k") { Description = "Comma-separated sample counts K", DefaultValueFactory = _ => "1,3,10,30,100" };
        var m = new Option<int>("--m") { Description = "Outer sample count M of MIWAE(M, K) and PIWAE(M, K)", DefaultValueFactory = _ => 4 };
        var beta = new Option<double>("--beta") { Description = "β of CIWAE_β = β ELBO + (1 - β) IWAE", DefaultValueFactory = _ => 0.5 };
        var dim = new Option<int>("--dim") { Description = "Latent and data dimension D", DefaultValueFactory = _ => 20 };
        var repeats = new Option<int>("--repeats") { Description = "Gradient estimates per bound and K (the SNR's sample size)", DefaultValueFactory = _ => 1000 };
        var perturbation = new Option<double>("--perturbation") { Description = "Standard deviation of the perturbation of μ and b from the optimum", DefaultValueFactory = _ => 0.3 };
        var seed = new Option<int>("--seed") { Description = "Seed", DefaultValueFactory = _ => 0 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on standard output (and nothing else there)" };
        var plot = new Option<string?>("--plot") { Description = "PNG file of bound gap and SNR against K (log x)" };
        var device = Cli.DeviceOption();
        var cmd = new Command("bounds", "Variational bounds on a linear-Gaussian model with exact log p(x): gap to log p(x) and gradient SNR of ELBO, IWAE, MIWAE, CIWAE, PIWAE as K grows")
        {
            ks, m, beta, dim, repeats, perturbation, seed, json, plot, device,
        };
        cmd.SetAction(p =>
        {
            var kList = p.GetValue(ks)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(v => int.TryParse(v, Inv, out var k) && k > 0 ? k : throw new ArgumentException($"--k: expected positive integers, got '{v}'")).Distinct().Order().ToArray();
            if (kList.Length == 0) throw new ArgumentException("--k: give at least one K");
            int Positive(Option<int> o) => p.GetValue(o) is var v && v > 0 ? v : throw new ArgumentException($"{o.Name}: must be positive, got {p.GetValue(o)}");
            if (Positive(repeats) < 2) throw new ArgumentException("--repeats: must be at least 2");
            double b = p.GetValue(beta);
            if (!(b >= 0 && b <= 1)) throw new ArgumentException($"--beta: must be in [0, 1], got {b}");
            double pert = p.GetValue(perturbation);
            if (!(pert >= 0) || double.IsInfinity(pert)) throw new ArgumentException($"--perturbation: must be non-negative and finite, got {pert}");
            if (p.GetValue(seed) < 0) throw new ArgumentException($"--seed: must be non-negative, got {p.GetValue(seed)}");
            string? png = Cli.PlotPath(p, plot, json, null);
            using var lease = Cli.OpenDevice(p, device);
            var settings = new BoundSettings
            {
                Dim = Positive(dim), Ks = kList, M = Positive(m), Beta = b, Repeats = p.GetValue(repeats), Perturbation = pert,
                Seed = (ulong)p.GetValue(seed), Device = lease.Device,
            };
            var r = Cli.Progress("bounds", 1, _ => BoundExperiments.Run(settings));
            Table(r);
            if (p.GetValue(json)) Cli.JsonLine(ToJson(r));
            Cli.SavePlot(png, file => Plot(r, file));
            return 0;
        });
        return cmd;
    }

    static void Table(BoundResult r)
    {
        var s = r.Settings;
        var t = new Table().Title($"D = {s.Dim}, M = {s.M}, β = {s.Beta.ToString("G3", Inv)}, {s.Repeats} repeats, log p(x) = {r.LogPx.ToString("F4", Inv)}")
            .AddColumns("bound", "K", "samples", "E[[bound]]", "± se", "gap to log p(x)", "encoder SNR", "decoder SNR");
        foreach (var row in r.Rows)
            t.AddRow(row.Bound, row.K.ToString(Inv), row.Samples.ToString(Inv), row.Mean.ToString("F4", Inv), row.StdError.ToString("F4", Inv),
                row.Gap.ToString("F4", Inv), row.EncoderSnr.ToString("F4", Inv), row.DecoderSnr.ToString("F3", Inv));
        Cli.Err.Write(t);
        var slopes = new Table().Title("SNR slope, log-log in K > 1").AddColumns("bound", "encoder", "decoder");
        foreach (var sl in r.Slopes) slopes.AddRow(sl.Bound, sl.Encoder.ToString("F3", Inv), sl.Decoder.ToString("F3", Inv));
        Cli.Err.Write(slopes);
        Cli.Err.MarkupLine("[grey]paper (IWAE, K → ∞): encoder SNR slope -1/2, decoder +1/2[/]");
        Cli.Err.MarkupLine($"[grey]SNR noise floor ≈ 1/sqrt(repeats) = {1 / Math.Sqrt(s.Repeats):F4}; {r.Seconds:F1} s[/]");
    }

    static object ToJson(BoundResult r) => new
    {
        kind = "bounds", dim = r.Settings.Dim, m = r.Settings.M, beta = r.Settings.Beta, repeats = r.Settings.Repeats, perturbation = r.Settings.Perturbation,
        seed = r.Settings.Seed, log_px = r.LogPx, seconds = r.Seconds,
        rows = r.Rows.Select(q => new { bound = q.Bound, k = q.K, samples = q.Samples, mean = q.Mean, std_error = q.StdError, gap = q.Gap, encoder_snr = q.EncoderSnr, decoder_snr = q.DecoderSnr }).ToArray(),
        slopes = r.Slopes.Select(q => new { bound = q.Bound, encoder = Finite(q.Encoder), decoder = Finite(q.Decoder) }).ToArray(),
    };

    // JSON has no NaN: a slope from fewer than two K > 1 is null.
    static double? Finite(double v) => double.IsFinite(v) ? v : null;

    static void Plot(BoundResult r, string path)
    {
        const int w = 640, h = 440;
        var palette = new ScottPlot.Palettes.Category10();
        var ks = r.Rows.Select(q => q.K).Distinct().Order().ToArray();
        double[] ticks = [.. ks.Select(k => Math.Log10(k))];
        string[] labels = [.. ks.Select(k => k.ToString(Inv))];
        byte[] Panel(string title, string y, Func<BoundRow, double> f)
        {
            var plt = new ScottPlot.Plot();
            for (int i = 0; i < BoundExperiments.Bounds.Length; i++)
            {
                var rows = r.Rows.Where(q => q.Bound == BoundExperiments.Bounds[i]).OrderBy(q => q.K).ToArray();
                var sc = plt.Add.Scatter(rows.Select(q => Math.Log10(q.K)).ToArray(), rows.Select(f).ToArray(), palette.GetColor(i));
                sc.LegendText = BoundExperiments.Bounds[i];
                sc.MarkerSize = 6;
            }
            plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks, labels);
            plt.Title(title);
            plt.XLabel("K (log scale)");
            plt.YLabel(y);
            plt.ShowLegend(ScottPlot.Alignment.UpperRight);
            return plt.GetImageBytes(w, h, ScottPlot.ImageFormat.Png);
        }
        var panels = new[]
        {
            Panel("gap log p(x) - E[bound]", "nats", q => q.Gap),
            Panel("encoder gradient SNR (b)", "log10 SNR", q => Math.Log10(q.EncoderSnr)),
            Panel("decoder gradient SNR (μ)", "log10 SNR", q => Math.Log10(q.DecoderSnr)),
        };
        Cli.SavePanels(path, panels, w, h);
    }
}
