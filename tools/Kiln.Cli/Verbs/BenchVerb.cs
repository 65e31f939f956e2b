using System.CommandLine;
using Kiln.Bench;
using Kiln.Gpu;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>
/// `kiln bench`: Kiln's CPU speed on the bench workloads against libtorch 2 (bench/Kiln.Bench.Torch) and ONNX Runtime (bench/Kiln.Bench.Onnx), both set up
/// by bench/setup-peers.sh, and ../shared/peers/peer_bench.py's numpy and PyTorch 1.13, in the same invocation
/// (<see cref="BenchRunner"/>); prints Kiln, peers and ratios, and writes RESULTS.md and ratios.png. With --json it prints
/// one JSON object per workload and peer (<see cref="BenchReport.JsonLines"/>) and writes no files.
/// </summary>
public static class BenchVerb
{
    public static Command Build()
    {
        var names = new Argument<string[]>("workload") { Description = "Workloads to run (default: all): " + string.Join(", ", Workloads.Names), Arity = ArgumentArity.ZeroOrMore };
        var json = new Option<bool>("--json") { Description = "Print one JSON line per workload and peer {workload, unit, kiln_rate, peer, peer_version, peer_rate, ratio, cpu, ...} on stdout (\"peer\": null when peers are skipped); writes no files" };
        var peer = new Option<string?>("--peer") { Description = "Path of peer_bench.py (default: shared/peers/peer_bench.py found upward from the working directory)" };
        var noPeer = new Option<bool>("--no-peer") { Description = "Skip the peer runs (libtorch, ONNX Runtime, numpy, PyTorch 1.13)" };
        var roundsOpt = new Option<int>("--rounds") { Description = "Rounds of (Kiln, peer) per workload; each side reports its median round", DefaultValueFactory = _ => 5 };
        var outDir = new Option<string?>("--out") { Description = "Folder for RESULTS.md and ratios.png (default: the repository's bench/)" };
        var device = Cli.DeviceOption($"Device for Kiln's side: {KilnGpu.DeviceForms} (the peer and the one-core GEMM stay on the CPU)");
        var cmd = new Command("bench", "Time Kiln's CPU kernels against libtorch 2, ONNX Runtime, numpy/OpenBLAS and PyTorch 1.13 in the same invocation, print the ratios, and write RESULTS.md and a ratio chart")
        {
            names, json, peer, noPeer, roundsOpt, outDir, device,
        };
        cmd.SetAction(parse =>
        {
            if (parse.GetValue(outDir) is { } outPath) Cli.OutputFolder(outPath, "--out");
            using var lease = Cli.OpenDevice(parse, device);
            bool asJson = parse.GetValue(json), wantPeer = !parse.GetValue(noPeer);
            string? peerPath = wantPeer ? parse.GetValue(peer) ?? PeerRunner.Find(Directory.GetCurrentDirectory()) : null;
            var options = new BenchOptions
            {
                Workloads = parse.GetValue(names) ?? [], Rounds = parse.GetValue(roundsOpt), PeerBench = peerPath, OneCore = !asJson, Device = lease.Device,
                LibTorch = wantPeer, TorchRunner = TorchPeer.FindRunner(BenchReport.DefaultFolder(Directory.GetCurrentDirectory())),
                OnnxRuntime = wantPeer, OnnxRunner = OnnxPeer.FindRunner(BenchReport.DefaultFolder(Directory.GetCurrentDirectory())),
            };
            if (wantPeer && peerPath is null) Cli.Err.MarkupLine("[yellow]peer_bench.py not found; pass --peer PATH (Kiln's numbers only)[/]");
            // Measured before the run so the console shows it first.
            options = options with { CorePeakGflops = PeakProbe.MeasureCoreGflops() };
            if (asJson)
            {
                foreach (var line in BenchRunner.Run(options, new Reporter(p => { if (p.Warning is { } w) Console.Error.WriteLine($"bench: {w}"); })).JsonLines())
                    Cli.JsonLine(line);
                return 0;
            }
            double corePeak = options.CorePeakGflops.Value;
            Cli.Err.MarkupLine($"peak (register-only FMA loop): [bold]{corePeak:F1} GFLOP/s per core, {corePeak * Environment.ProcessorCount:F1} on {Environment.ProcessorCount} cores[/]");
            var report = Cli.Progress("bench", Workloads.Select(options.Workloads).Count, done => BenchRunner.Run(options, new Reporter(p =>
            {
                if (p.Warning is { } w) Console.Error.WriteLine($"bench: {w}");
                if (p.Row is not { Kiln: var r, Headline: var best, OneCore: var core } row) return;
                Console.Error.WriteLine($"  {r.Workload,-44} kiln {r.Rate,9:F1} {r.Unit,-9} {(best is null ? "" : $"{best.Peer} {best.Rate,9:F1}  ratio {r.Rate / best.Rate:F2}")}" +
                    (row.RatioTo(TorchPeer.DefaultName) is { } d ? $" (default {d:F2})" : "") +
                    (row.RelativeErrors.TryGetValue(TorchPeer.KernelName, out double err) ? $" rel. error {err:0.0e+0}" : "") +
                    (row.RatioTo(OnnxPeer.PeerName) is { } o ? $" onnxruntime {o:F2} (rel. error {row.RelativeErrors[OnnxPeer.PeerName]:0.0e+0})" : "") +
                    (core is { } cc ? $"   one core: kiln {cc.Kiln:F1}{(cc.Peer is { } cp ? $" numpy {cp:F1} ratio {cc.Kiln / cp:F2}" : "")}" : ""));
                done(p.Completed);
            })));
            PrintTable(report);
            var dir = parse.GetValue(outDir) ?? BenchReport.DefaultFolder(Directory.GetCurrentDirectory());
            var md = Path.Combine(dir, "RESULTS.md");
            report.WriteMarkdown(md, ("kiln " + string.Join(' ', parse.Tokens.Select(t => t.Value))).Trim());
            var png = Path.Combine(dir, "ratios.png");
            if (report.HasPeers) report.WritePlot(png);
            Cli.Err.MarkupLine($"wrote [bold]{Markup.Escape(md)}[/]{(report.HasPeers ? $" and [bold]{Markup.Escape(png)}[/]" : "")}");
            return 0;
        });
        return cmd;
    }

    static void PrintTable(BenchReport report)
    {
        var t = new Table().AddColumns(new TableColumn("workload").NoWrap(), new TableColumn("Kiln").NoWrap(), new TableColumn("peer").NoWrap(),
            new TableColumn("ratio"), new TableColumn("% of peak"));
        foreach (var row in report.Rows)
        {
            var (k, p) = (row.Kiln, row.Headline);
            t.AddRow(k.Workload, $"{k.Seconds * 1e3:F2} ms, {k.Rate:F1} {k.Unit}", p is null ? "-" : $"{p.Seconds * 1e3:F2} ms, {p.Rate:F1} ({p.Peer})", row.HeadlineRatio is { } q ? $"{q:F2}" : "-",
                row.BoundFraction is { } b ? $"{100 * b:F0}% of bound" : row.PeakFraction is { } f ? $"{100 * f:F0}%" : "");
        }
        Cli.Err.Write(t);
    }

    // Acts on each report at once, on the runner's thread, so lines print in order (Progress<T> posts to the thread pool).
    sealed class Reporter(Action<BenchProgress> report) : IProgress<BenchProgress>
    {
        public void Report(BenchProgress value) => report(value);
    }
}
