using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text;
using System.Text.Json;
using Kiln.Backends;
using Kiln.Gpu;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>
/// `kiln bench`: Kiln's CPU speed on the workloads of ../shared/peers/peer_bench.py (same names, same sizes, same
/// median-of-7 timing), each followed by the peer's run in the same invocation; prints Kiln, peer and ratio, and writes
/// RESULTS.md and ratios.png. With --json it prints Kiln's numbers only, one JSON object per line.
/// </summary>
public static class BenchVerb
{
    /// <summary>
    /// One workload: a name from peer_bench.py, the work per run (in <see cref="Unit"/>'s numerator), a factory for the
    /// timed action on a device, and for SGEMM its m, n, k (which also get a one-core CPU-time comparison).
    /// </summary>
    public sealed record Workload(string Name, double Amount, string Unit, Func<Device, Action> Setup, (int M, int N, int K)? Gemm = null);

    /// <summary>A measured result.</summary>
    public sealed record Result(string Workload, double Seconds, double Rate, string Unit);

    /// <summary>The workloads, in run order. Names match peer_bench.py; sgemm_1000 and sgemm_4097x64 are added to the peer by <see cref="PeerScript"/>.</summary>
    public static IReadOnlyList<Workload> Workloads =>
    [
        Sgemm("sgemm_256", 256, 256, 256), Sgemm("sgemm_512", 512, 512, 512), Sgemm("sgemm_1024", 1024, 1024, 1024),
        Sgemm("sgemm_2048", 2048, 2048, 2048), Sgemm("sgemm_1000", 1000, 1000, 1000), Sgemm("sgemm_1023", 1023, 1023, 1023),
        // A 4097-square matrix times a 64-column panel: ragged M and K with a narrow N.
        Sgemm("sgemm_4097x64", 4097, 64, 4097),
        new("add_16M", 3 * 16 * 1024 * 1024 * 4 / 1e9, "GB/s", dev =>
        {
            // x + x in place, as the peer's add(x, x, out=y): one array read, one written (the values double each run).
            var x = Tensor.Randn([16 * 1024 * 1024], new Generator(1), device: dev);
            return () => x.Add_(x);
        }),
        new("sum_16M", 16 * 1024 * 1024 * 4 / 1e9, "GB/s", dev =>
        {
            var x = Tensor.Randn([16 * 1024 * 1024], new Generator(2), device: dev);
            return () => { using var s = Tensor.Scope(); x.Sum(); };
        }),
        new("softmax_4096x4096", 2 * 4096 * 4096 * 4 / 1e9, "GB/s", dev =>
        {
            var x = Tensor.Randn([4096, 4096], new Generator(3), device: dev);
            return () => { using var s = Tensor.Scope(); x.Softmax(-1); };
        }),
        new("layer_norm_4096x4096", 2 * 4096 * 4096 * 4 / 1e9, "GB/s", dev =>
        {
            var x = Tensor.Randn([4096, 4096], new Generator(4), device: dev); var w = Tensor.Ones([4096], device: dev); var b = Tensor.Zeros([4096], device: dev);
            return () => { using var s = Tensor.Scope(); x.LayerNorm(w, b); };
        }),
        new("mlp_train_step_784_1024_1024_10_b256_adam", 256, "samples/s", MlpStep),
        new("causal_attention_h8_t512_d64", 2.0 * 2 * 8 * 512 * 512 * 64 / 1e9, "GFLOP/s", dev =>
        {
            var g = new Generator(5);
            var (q, k, v) = (Tensor.Randn([1, 8, 512, 64], g, device: dev), Tensor.Randn([1, 8, 512, 64], g, device: dev), Tensor.Randn([1, 8, 512, 64], g, device: dev));
            return () => { using var s = Tensor.Scope(); using var ng = Autograd.NoGrad(); Tensor.ScaledDotProductAttention(q, k, v, causal: true, scale: 1.0 / 8); };
        }),
    ];

    static Workload Sgemm(string name, int m, int n, int k) => new(name, 2.0 * m * n * k / 1e9, "GFLOP/s", dev =>
    {
        var g = new Generator(6);
        var (a, b) = (Tensor.Rand([m, k], g, device: dev), Tensor.Rand([k, n], g, device: dev));
        return () => { using var s = Tensor.Scope(); a.MatMul(b); };
    }, (m, n, k));

    // Work per one-core measurement, Kiln and numpy alike: about 0.2 s of CPU time, long enough that a few
    // milliseconds of the VM's slow episodes do not move the ratio (a 30 ms window read 0.86-1.13 at n = 256).
    const double OneCoreFlops = 2e10;

    /// <summary>
    /// SGEMM on one thread, in GFLOP per CPU-second of that thread (<see cref="ThreadCpuSeconds"/>, so other load on the
    /// machine does not count): the kernel's per-core efficiency, comparable with OpenBLAS on one thread however busy the
    /// machine is.
    /// </summary>
    public static double KilnOneCoreGflops(int m, int n, int k)
    {
        var r = new Random(1);
        var a = Enumerable.Range(0, m * k).Select(_ => (float)r.NextDouble()).ToArray();
        var b = Enumerable.Range(0, k * n).Select(_ => (float)r.NextDouble()).ToArray();
        var c = new float[m * n];
        void Go() => Kernels.Cpu.Gemm.Run(m, n, k, 1f, a, 0, k, 1, b, 0, n, 1, 0f, c, 0, n, threads: 1);
        double flops = 2.0 * m * n * k;
        int reps = Math.Max(5, (int)(OneCoreFlops / flops));
        for (int i = 0; i < 3; i++) Go();
        double t0 = ThreadCpuSeconds();
        for (int i = 0; i < reps; i++) Go();
        return flops * reps / (ThreadCpuSeconds() - t0) / 1e9;
    }

    /// <summary>
    /// CPU seconds of the calling thread (Linux: CLOCK_THREAD_CPUTIME_ID), so the runtime's own threads (tiered JIT
    /// compiles, GC, an idle worker's polling) do not count against the product; elsewhere the process's CPU time.
    /// </summary>
    public static double ThreadCpuSeconds()
    {
        if (OperatingSystem.IsLinux() && ClockGetTime(ClockThreadCpuTime, out var ts) == 0) return ts.Seconds + ts.Nanoseconds * 1e-9;
        using var proc = Process.GetCurrentProcess();
        return proc.TotalProcessorTime.TotalSeconds;
    }

    const int ClockThreadCpuTime = 3;
    [StructLayout(LayoutKind.Sequential)] struct TimeSpec { public long Seconds, Nanoseconds; }
    [DllImport("libc", EntryPoint = "clock_gettime")] static extern int ClockGetTime(int clock, out TimeSpec time);

    // numpy (OpenBLAS, its SkylakeX kernels where AVX-512 exists) on one thread, timed by CPU time the same way.
    const string OneCoreScript = """
        import os, sys, time
        if "OPENBLAS_CORETYPE" not in os.environ and "avx512f" in open("/proc/cpuinfo").read():
            os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
        import numpy as np
        m, n, k = map(int, sys.argv[1:4])
        a = np.random.rand(m, k).astype(np.float32); b = np.random.rand(k, n).astype(np.float32)
        for _ in range(3): a @ b
        reps = max(5, int(float(sys.argv[4]) / (2 * m * n * k)))
        t = time.thread_time()
        for _ in range(reps): a @ b
        print(2 * m * n * k * reps / (time.thread_time() - t) / 1e9)
        """;

    static double? PeerOneCoreGflops(int m, int n, int k)
    {
        var psi = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { "-c", OneCoreScript, m.ToString(CultureInfo.InvariantCulture), n.ToString(CultureInfo.InvariantCulture), k.ToString(CultureInfo.InvariantCulture), OneCoreFlops.ToString(CultureInfo.InvariantCulture) }) psi.ArgumentList.Add(arg);
        using var proc = Process.Start(psi);
        if (proc is null) return null;
        var err = proc.StandardError.ReadToEndAsync();
        string output = proc.StandardOutput.ReadToEnd();
        proc.WaitForExit();
        if (proc.ExitCode == 0 && double.TryParse(output.Trim(), CultureInfo.InvariantCulture, out double v)) return v;
        Console.Error.WriteLine($"bench: one-core peer failed: {err.Result.Trim()}");
        return null;
    }

    // PyTorch's nn.Sequential(Linear 784-1024, ReLU, Linear 1024-1024, ReLU, Linear 1024-10), cross-entropy and
    // Adam(1e-3), with the same pieces of Kiln.NN a user would write: MLP, Losses.CrossEntropy, Adam, a scope per step.
    static Action MlpStep(Device dev)
    {
        var g = new Generator(0);
        var model = new Kiln.NN.MLP([784, 1024, 1024, 10], generator: g, device: dev);
        var opt = new Kiln.NN.Adam(model.Parameters(), 1e-3);
        var x = Tensor.Randn([256, 784], g, device: dev);
        var y = Tensor.RandInt([256], 0, 10, g, device: dev);
        return () =>
        {
            using var scope = Tensor.Scope();
            opt.ZeroGrad();
            Kiln.NN.Losses.CrossEntropy(model.Forward(x), y).Backward();
            opt.Step();
        };
    }

    /// <summary>Median seconds of 7 timed runs after warm-up (at least 2 runs and 1.5 s, so the JIT's tiering and its
    /// background compiles are over: on 2 cores they take one core for a while after the first 30 calls).</summary>
    public static double MedianSeconds(Action run, int reps = 7)
    {
        var warm = Stopwatch.StartNew();
        for (int i = 0; i < 2 || warm.Elapsed.TotalSeconds < 1.5 && i < 500; i++) run();
        var times = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            var sw = Stopwatch.StartNew(); run(); times[i] = sw.Elapsed.TotalSeconds;
        }
        Array.Sort(times);
        return times[reps / 2];
    }

    /// <summary>
    /// One core's single-precision peak in GFLOP per CPU-second: a register-only loop of 12 independent Vector512 (or
    /// Vector256) FMA chains, enough to cover FMA latency times throughput, with no memory traffic, timed by the
    /// thread's CPU time (<see cref="ThreadCpuSeconds"/>) so other load on the machine does not lower it: iterations x 12 x lanes x 2 / CPU seconds, best of 3.
    /// The machine's peak is this times the number of cores.
    /// </summary>
    public static double MeasureCorePeakGflops()
    {
        const long iters = 20_000_000;
        int lanes = Vector512.IsHardwareAccelerated ? Vector512<float>.Count : Vector256<float>.Count;
        double best = 0;
        for (int rep = 0; rep < 3; rep++)
        {
            double t0 = ThreadCpuSeconds();
            float sink = Vector512.IsHardwareAccelerated ? Fma512(iters) : Fma256(iters);
            double seconds = ThreadCpuSeconds() - t0;
            if (float.IsNaN(sink)) throw new InvalidOperationException("bench: the FMA loop diverged");
            best = Math.Max(best, iters * 12.0 * lanes * 2 / seconds / 1e9);
        }
        return best;
    }

    static float Fma512(long iters)
    {
        var x = Vector512.Create(0.999f); var y = Vector512.Create(1e-7f);
        Vector512<float> a0 = x, a1 = x, a2 = x, a3 = x, a4 = x, a5 = x, a6 = x, a7 = x, a8 = x, a9 = x, a10 = x, a11 = x;
        for (long i = 0; i < iters; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, x, y); a1 = Vector512.FusedMultiplyAdd(a1, x, y); a2 = Vector512.FusedMultiplyAdd(a2, x, y);
            a3 = Vector512.FusedMultiplyAdd(a3, x, y); a4 = Vector512.FusedMultiplyAdd(a4, x, y); a5 = Vector512.FusedMultiplyAdd(a5, x, y);
            a6 = Vector512.FusedMultiplyAdd(a6, x, y); a7 = Vector512.FusedMultiplyAdd(a7, x, y); a8 = Vector512.FusedMultiplyAdd(a8, x, y);
            a9 = Vector512.FusedMultiplyAdd(a9, x, y); a10 = Vector512.FusedMultiplyAdd(a10, x, y); a11 = Vector512.FusedMultiplyAdd(a11, x, y);
        }
        return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    static float Fma256(long iters)
    {
        var x = Vector256.Create(0.999f); var y = Vector256.Create(1e-7f);
        Vector256<float> a0 = x, a1 = x, a2 = x, a3 = x, a4 = x, a5 = x, a6 = x, a7 = x, a8 = x, a9 = x, a10 = x, a11 = x;
        for (long i = 0; i < iters; i++)
        {
            a0 = Vector256.FusedMultiplyAdd(a0, x, y); a1 = Vector256.FusedMultiplyAdd(a1, x, y); a2 = Vector256.FusedMultiplyAdd(a2, x, y);
            a3 = Vector256.FusedMultiplyAdd(a3, x, y); a4 = Vector256.FusedMultiplyAdd(a4, x, y); a5 = Vector256.FusedMultiplyAdd(a5, x, y);
            a6 = Vector256.FusedMultiplyAdd(a6, x, y); a7 = Vector256.FusedMultiplyAdd(a7, x, y); a8 = Vector256.FusedMultiplyAdd(a8, x, y);
            a9 = Vector256.FusedMultiplyAdd(a9, x, y); a10 = Vector256.FusedMultiplyAdd(a10, x, y); a11 = Vector256.FusedMultiplyAdd(a11, x, y);
        }
        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    // peer_bench.py plus the odd GEMM shapes it lacks, timed the same way (its median_seconds, numpy and torch).
    const string PeerScript = """
        import sys
        sys.path.insert(0, sys.argv.pop(1))
        import peer_bench as pb
        import numpy as np, torch
        def sgemm_mnk(m, n, k):
            def run():
                a = np.random.rand(m, k).astype(np.float32); b = np.random.rand(k, n).astype(np.float32)
                ta, tb = torch.from_numpy(a), torch.from_numpy(b)
                flops = 2.0 * m * n * k
                return [("numpy", pb.median_seconds(lambda: a @ b), flops / 1e9, "GFLOP/s"),
                        ("torch", pb.median_seconds(lambda: ta @ tb), flops / 1e9, "GFLOP/s")]
            return run
        pb.WORKLOADS.setdefault("sgemm_1000", pb.sgemm(1000))
        pb.WORKLOADS.setdefault("sgemm_4097x64", sgemm_mnk(4097, 64, 4097))
        pb.main(sys.argv[1:])
        """;

    /// <summary>A peer's timing of one workload.</summary>
    public sealed record PeerResult(string Workload, string Peer, double Seconds, double Rate, string Unit);

    static List<PeerResult> RunPeer(string peerBench, string workload)
    {
        var psi = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-c", PeerScript, Path.GetDirectoryName(Path.GetFullPath(peerBench))!, "--json", workload }) psi.ArgumentList.Add(a);
        using var proc = Process.Start(psi) ?? throw new InvalidOperationException("bench: could not start /usr/bin/python3");
        var err = proc.StandardError.ReadToEndAsync();
        var lines = new List<PeerResult>();
        string? line;
        while ((line = proc.StandardOutput.ReadLine()) is not null)
        {
            if (!line.StartsWith('{')) continue;
            var j = JsonDocument.Parse(line).RootElement;
            lines.Add(new(j.GetProperty("workload").GetString()!, j.GetProperty("peer").GetString()!, j.GetProperty("seconds").GetDouble(), j.GetProperty("rate").GetDouble(), j.GetProperty("unit").GetString()!));
        }
        proc.WaitForExit();
        if (proc.ExitCode != 0) Console.Error.WriteLine($"bench: peer failed on {workload}: {err.Result.Trim()}");
        return lines;
    }

    // ../shared/peers/peer_bench.py next to the repository (searched upward from the working directory).
    static string? FindPeer()
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
        {
            var p = Path.Combine(dir.FullName, "shared", "peers", "peer_bench.py");
            if (File.Exists(p)) return p;
        }
        return null;
    }

    static string DefaultOut()
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) return Path.Combine(dir.FullName, "bench");
        return Directory.GetCurrentDirectory();
    }

    public static Command Build()
    {
        var names = new Argument<string[]>("workload") { Description = "Workloads to run (default: all): " + string.Join(", ", Workloads.Select(w => w.Name)), Arity = ArgumentArity.ZeroOrMore };
        var json = new Option<bool>("--json") { Description = "Print Kiln's results as JSON lines {workload, seconds, rate, unit} on stdout; runs no peer and writes no files" };
        var peer = new Option<string?>("--peer") { Description = "Path of peer_bench.py (default: shared/peers/peer_bench.py found upward from the working directory)" };
        var noPeer = new Option<bool>("--no-peer") { Description = "Skip the peer runs" };
        var roundsOpt = new Option<int>("--rounds") { Description = "Rounds of (Kiln, peer) per workload; each side reports its median round", DefaultValueFactory = _ => 5 };
        var outDir = new Option<string?>("--out") { Description = "Folder for RESULTS.md and ratios.png (default: the repository's bench/)" };
        var device = Cli.DeviceOption($"Device for Kiln's side: {KilnGpu.DeviceForms} (the peer and the one-core GEMM stay on the CPU)");
        var cmd = new Command("bench", "Time Kiln's CPU kernels on peer_bench.py's workloads, run the peer (numpy/OpenBLAS, PyTorch) in the same invocation, print the ratios, and write RESULTS.md and a ratio chart")
        {
            names, json, peer, noPeer, roundsOpt, outDir, device,
        };
        cmd.SetAction(parse =>
        {
            var wanted = parse.GetValue(names) ?? [];
            var unknown = wanted.Where(n => Workloads.All(w => w.Name != n)).ToArray();
            if (unknown.Length > 0)
                throw new ArgumentException($"bench: unknown workload(s) {string.Join(", ", unknown)}; known: {string.Join(", ", Workloads.Select(w => w.Name))}");
            var list = wanted.Length == 0 ? Workloads : Workloads.Where(w => wanted.Contains(w.Name)).ToList();
            bool asJson = parse.GetValue(json);
            int rounds = parse.GetValue(roundsOpt);
            if (rounds < 1) throw new ArgumentOutOfRangeException("--rounds", rounds, "bench: --rounds must be at least 1");
            using var lease = Cli.OpenDevice(parse, device);
            var dev = lease.Device;
            double corePeak = MeasureCorePeakGflops(), peak = corePeak * Environment.ProcessorCount;
            if (asJson)
            {
                foreach (var w in list)
                {
                    var r = Measure(w, dev);
                    Cli.JsonLine(new Dictionary<string, object>
                    {
                        ["workload"] = r.Workload, ["seconds"] = r.Seconds, ["rate"] = r.Rate, ["unit"] = r.Unit,
                        ["peak_fraction"] = r.Unit == "GFLOP/s" ? r.Rate / peak : double.NaN,
                    }.Where(kv => kv.Value is not double d || !double.IsNaN(d)).ToDictionary());
                }
                return 0;
            }
            string? peerPath = parse.GetValue(noPeer) ? null : parse.GetValue(peer) ?? FindPeer();
            if (!parse.GetValue(noPeer) && peerPath is null) Cli.Err.MarkupLine("[yellow]peer_bench.py not found; pass --peer PATH (Kiln's numbers only)[/]");
            if (peerPath is not null && !File.Exists(peerPath)) throw new FileNotFoundException($"bench: --peer {peerPath} does not exist");
            Cli.Err.MarkupLine($"peak (register-only FMA loop): [bold]{corePeak:F1} GFLOP/s per core, {peak:F1} on {Environment.ProcessorCount} cores[/]");
            string loadBefore = LoadAverage();
            var rows = Cli.Progress("bench", list.Count, done =>
            {
                var acc = new List<Row>();
                foreach (var w in list)
                {
                    // Rounds of (Kiln, peer): the shared machine's speed drifts in episodes of seconds, so each side is
                    // measured in every round and reports its median round, and an episode cannot decide a ratio alone.
                    var kilnRounds = new List<Result>();
                    var peerRounds = new List<List<PeerResult>>();
                    for (int round = 0; round < (peerPath is null ? 1 : rounds); round++)
                    {
                        kilnRounds.Add(Measure(w, dev));
                        if (peerPath is not null) peerRounds.Add(RunPeer(peerPath, w.Name));
                    }
                    var r = MedianRound(kilnRounds, k => k.Seconds);
                    var peers = peerRounds.SelectMany(x => x).GroupBy(p => (p.Peer, p.Unit)).Select(g => MedianRound(g.ToList(), p => p.Seconds)).ToList();
                    // The ratio is against the fastest peer.
                    var best = peers.Where(p => p.Unit == r.Unit).MaxBy(p => p.Rate);
                    (double Kiln, double? Peer)? core = w.Gemm is { } s ? (KilnOneCoreGflops(s.M, s.N, s.K), peerPath is null ? null : PeerOneCoreGflops(s.M, s.N, s.K)) : null;
                    acc.Add(new(r, best, peers, core));
                    Console.Error.WriteLine($"  {w.Name,-44} kiln {r.Rate,9:F1} {r.Unit,-9} {(best is null ? "" : $"{best.Peer} {best.Rate,9:F1}  ratio {r.Rate / best.Rate:F2}")}" +
                        (core is { } cc ? $"   one core: kiln {cc.Kiln:F1}{(cc.Peer is { } cp ? $" numpy {cp:F1} ratio {cc.Kiln / cp:F2}" : "")}" : ""));
                    done(acc.Count);
                }
                return acc;
            });
            PrintTable(rows, peak);
            var dir = parse.GetValue(outDir) ?? DefaultOut();
            Directory.CreateDirectory(dir);
            string cmdLine = "kiln " + string.Join(' ', parse.Tokens.Select(t => t.Value));
            var md = Path.Combine(dir, "RESULTS.md");
            WriteSection(md, Markdown(rows, peak, cmdLine.Trim(), $"{loadBefore} before, {LoadAverage()} after", peerPath is null ? 1 : rounds));
            var png = Path.Combine(dir, "ratios.png");
            if (rows.Any(r => r.Peer is not null)) Chart(rows, png);
            Cli.Err.MarkupLine($"wrote [bold]{Markup.Escape(md)}[/]{(rows.Any(r => r.Peer is not null) ? $" and [bold]{Markup.Escape(png)}[/]" : "")}");
            return 0;
        });
        return cmd;
    }

    /// <summary>A workload's results: Kiln, the fastest peer, every peer, and for SGEMM the one-core CPU-time rates.</summary>
    public sealed record Row(Result Kiln, PeerResult? Peer, List<PeerResult> All, (double Kiln, double? Peer)? OneCore);

    // The round with the median time (the upper middle one for an even count).
    static T MedianRound<T>(IReadOnlyCollection<T> rounds, Func<T, double> seconds) => rounds.OrderBy(seconds).ElementAt(rounds.Count / 2);

    static Result Measure(Workload w, Device device)
    {
        var run = w.Setup(device);
        // A GPU backend launches asynchronously: each timed run waits for its work.
        if (BackendRegistry.Get(device) is IlgpuBackend gpu) { var launch = run; run = () => { launch(); gpu.Driver.Synchronize(); }; }
        double s = MedianSeconds(run);
        return new(w.Name, s, w.Amount / s, w.Unit);
    }

    static void PrintTable(List<Row> rows, double peak)
    {
        var t = new Table().AddColumns(new TableColumn("workload").NoWrap(), new TableColumn("Kiln").NoWrap(), new TableColumn("peer").NoWrap(),
            new TableColumn("ratio"), new TableColumn("% of peak"));
        foreach (var (k, p, _, _) in rows)
            t.AddRow(k.Workload, $"{k.Seconds * 1e3:F2} ms, {k.Rate:F1} {k.Unit}", p is null ? "-" : $"{p.Seconds * 1e3:F2} ms, {p.Rate:F1} ({p.Peer})", p is null ? "-" : $"{k.Rate / p.Rate:F2}",
                k.Unit == "GFLOP/s" ? $"{100 * k.Rate / peak:F0}%" : "");
        Cli.Err.Write(t);
    }

    const string Begin = "<!-- kiln bench: begin (generated by `kiln bench`; edits inside are overwritten) -->", End = "<!-- kiln bench: end -->";

    // Replaces this verb's section of RESULTS.md (other tools and people write their own sections there), or appends it.
    static void WriteSection(string path, string section)
    {
        string text = File.Exists(path) ? File.ReadAllText(path) : "# Benchmark results\n";
        string block = Begin + "\n" + section.TrimEnd() + "\n" + End + "\n";
        int b = text.IndexOf(Begin, StringComparison.Ordinal), e = text.IndexOf(End, StringComparison.Ordinal);
        text = b >= 0 && e > b ? text[..b] + block + text[(e + End.Length)..].TrimStart('\n') : text.TrimEnd() + "\n\n" + block;
        File.WriteAllText(path, text);
    }

    // The 1-minute load average: other processes on the machine slow Kiln and the peer alike, but make both noisy.
    static string LoadAverage()
    {
        try { return File.ReadAllText("/proc/loadavg").Split(' ')[0]; }
        catch (IOException) { return "unknown"; }
    }

    static string Markdown(List<Row> rows, double peak, string command, string load, int rounds)
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("## Kiln vs peers on peer_bench.py's workloads (`kiln bench`)").AppendLine();
        sb.AppendLine(ci, $"- Machine: {Environment.ProcessorCount} logical CPUs, {CpuName()}; Vector512 {(Vector512.IsHardwareAccelerated ? "yes" : "no")}; .NET {Environment.Version}; load average {load}");
        sb.AppendLine(ci, $"- Date: {DateTime.Now:yyyy-MM-dd HH:mm}");
        sb.AppendLine(ci, $"- Command: `{command}` (Release build), peers from `../shared/peers/peer_bench.py` run in the same invocation, one workload at a time, alternating with Kiln's runs");
        sb.AppendLine(ci, $"- Peak: {peak:F1} GFLOP/s single precision = {Environment.ProcessorCount} cores x {peak / Environment.ProcessorCount:F1} GFLOP per CPU-second, measured by a register-only loop of 12 independent FMA chains on one thread, timed by CPU time (`BenchVerb.MeasureCorePeakGflops`)");
        sb.AppendLine(ci, $"- Timing: median of 7 runs after warm-up, for Kiln and peers alike, in {rounds} alternating rounds (Kiln, peer, Kiln, peer, ...; each side reports its median round, so an episode of load on the shared machine cannot decide a ratio alone) (time per run, and rate in the workload's unit); ratio = Kiln rate / fastest peer's rate (> 1: Kiln is faster)").AppendLine();
        sb.AppendLine("| workload | Kiln | numpy | torch | ratio | Kiln % of peak |").AppendLine("|---|---:|---:|---:|---:|---:|");
        foreach (var (k, p, all, _) in rows)
        {
            string Peer(string name) => all.FirstOrDefault(x => x.Peer == name) is { } r ? string.Create(ci, $"{r.Seconds * 1e3:F2} ms, {r.Rate:F1}") : "-";
            sb.AppendLine(ci, $"| {k.Workload} | {k.Seconds * 1e3:F2} ms, {k.Rate:F1} {k.Unit} | {Peer("numpy")} | {Peer("torch")} | {(p is null ? "-" : (k.Rate / p.Rate).ToString("F2", ci))} | {(k.Unit == "GFLOP/s" ? (100 * k.Rate / peak).ToString("F0", ci) + "%" : "")} |");
        }
        if (rows.Any(r => r.OneCore is not null))
        {
            sb.AppendLine().AppendLine("One core, CPU time (GFLOP per CPU-second of the thread that runs the product, 2e10 flops each: Kiln's `Gemm.Run(threads: 1)` against numpy with");
            sb.AppendLine("`OPENBLAS_NUM_THREADS=1`), which other load on the machine does not distort:").AppendLine();
            sb.AppendLine("| workload | Kiln 1 core | OpenBLAS 1 core | ratio |").AppendLine("|---|---:|---:|---:|");
            foreach (var r in rows.Where(r => r.OneCore is not null))
            {
                var (kc, pc) = r.OneCore!.Value;
                sb.AppendLine(ci, $"| {r.Kiln.Workload} | {kc:F1} ({100 * kc * Environment.ProcessorCount / peak:F0}% of a core's peak) | {(pc is { } v ? v.ToString("F1", ci) : "-")} | {(pc is { } w ? (kc / w).ToString("F2", ci) : "-")} |");
            }
        }
        sb.AppendLine().AppendLine("Notes:");
        sb.AppendLine("- sgemm_N is an N x N x N product through `Tensor.MatMul` (float32, output allocated per call, as numpy's `a @ b`);");
        sb.AppendLine("  sgemm_4097x64 is [4097, 4097] x [4097, 64]. peer_bench.py has no sgemm_1000 or sgemm_4097x64: `kiln bench` adds them");
        sb.AppendLine("  to it with its own sgemm code and median_seconds, so the peer is timed exactly like the other sizes.");
        sb.AppendLine("- The MLP step (784-1024-1024-10, batch 256, cross-entropy, Adam 1e-3) uses Kiln.NN as a user would: `MLP` (whose");
        sb.AppendLine("  `Linear` layers call the core's fused `Tensor.Linear`), `Losses.CrossEntropy`, `Adam`, and a `Tensor.Scope()` per step.");
        sb.AppendLine("- Attention is `Tensor.ScaledDotProductAttention(q, k, v, causal: true)` on [1, 8, 512, 64], forward only, fused;");
        sb.AppendLine("  its rate counts the same 2 x 2 x 8 x 512 x 512 x 64 flops as the peer's (which computes the full masked product).");
        sb.AppendLine("- On a machine shared with other work the wall-time ratios are noisy (both sides slow down, not always equally);");
        sb.AppendLine("  the one-core CPU-time table is the load-independent comparison of the GEMM kernels.");
        sb.AppendLine().AppendLine("![ratios](ratios.png)");
        return sb.ToString();
    }

    static string CpuName()
    {
        try { return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? "unknown CPU"; }
        catch (IOException) { return "unknown CPU"; }
    }

    static void Chart(List<Row> rows, string path)
    {
        var withPeer = rows.Where(r => r.Peer is not null).ToArray();
        var plt = new ScottPlot.Plot();
        var bars = withPeer.Select((r, i) => new ScottPlot.Bar
        {
            Position = withPeer.Length - 1 - i, Value = r.Kiln.Rate / r.Peer!.Rate,
            FillColor = r.Kiln.Rate >= r.Peer.Rate ? ScottPlot.Colors.SeaGreen : ScottPlot.Colors.IndianRed,
            Label = (r.Kiln.Rate / r.Peer.Rate).ToString("F2", CultureInfo.InvariantCulture),
        }).ToArray();
        var bp = plt.Add.Bars(bars);
        bp.ValueLabelStyle.FontSize = 11;
        bp.Horizontal = true;
        var one = plt.Add.VerticalLine(1.0);
        one.LinePattern = ScottPlot.LinePattern.Dashed; one.Color = ScottPlot.Colors.Black;
        plt.Axes.Left.SetTicks(withPeer.Select((_, i) => (double)(withPeer.Length - 1 - i)).ToArray(), withPeer.Select(r => r.Kiln.Workload).ToArray());
        plt.Axes.Left.MajorTickStyle.Length = 0;
        plt.Axes.Bottom.Label.Text = "Kiln rate / fastest peer's rate (> 1: Kiln faster)";
        plt.Title("Kiln vs numpy (OpenBLAS) / PyTorch CPU, same run");
        plt.Axes.SetLimitsX(0, Math.Max(1.5, bars.Max(b => b.Value) * 1.15));
        plt.Axes.SetLimitsY(-0.7, withPeer.Length - 0.3);
        plt.SavePng(path, 1000, 120 + 34 * withPeer.Length);
    }
}
