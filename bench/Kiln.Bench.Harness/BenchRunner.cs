using Kiln.Gpu;
namespace Kiln.Bench;

/// <summary>What <see cref="BenchRunner.Run"/> measures. Each property checks its value when set.</summary>
public sealed record BenchOptions
{
    /// <summary>Names of the workloads to run (<see cref="Bench.Workloads.Names"/>); empty (the default): all.</summary>
    /// <exception cref="ArgumentNullException">Set to null.</exception>
    /// <exception cref="ArgumentException">A name is unknown; the message names it.</exception>
    public IReadOnlyList<string> Workloads
    {
        get;
        init
        {
            Bench.Workloads.Select(value, nameof(Workloads));
            field = value.ToArray();
        }
    } = [];

    /// <summary>
    /// Alternating rounds of (Kiln, peer) per workload, each side reporting its median round; default 5. Without a peer
    /// there is one round.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Set to less than 1.</exception>
    public int Rounds
    {
        get;
        init => field = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(Rounds), $"bench: rounds must be at least 1, not {value}");
    } = 5;

    /// <summary>Path of peer_bench.py (<see cref="PeerRunner.Find"/> finds the shared one); null (the default): no peer.</summary>
    /// <exception cref="FileNotFoundException">Set to a path that does not exist.</exception>
    public string? PeerBench
    {
        get;
        init => field = value is null || File.Exists(value) ? value : throw new FileNotFoundException($"bench: peer script {value} does not exist", value);
    }

    /// <summary>
    /// Whether libtorch 2 (bench/Kiln.Bench.Torch) runs as a peer, twice: with glibc's malloc made to cache
    /// (<see cref="TorchPeer.KernelName"/>, the headline) and as a user gets it (<see cref="TorchPeer.DefaultName"/>); default false.
    /// </summary>
    public bool LibTorch { get; init; }

    /// <summary>Path of the built Kiln.Bench.Torch.dll (<see cref="TorchPeer.FindRunner"/>); null: not built, so
    /// <see cref="LibTorch"/> is skipped with that reason.</summary>
    public string? TorchRunner { get; init; }

    /// <summary>Whether ONNX Runtime (bench/Kiln.Bench.Onnx, <see cref="OnnxPeer"/>) runs as an inference peer; default false.</summary>
    public bool OnnxRuntime { get; init; }

    /// <summary>Path of the built Kiln.Bench.Onnx.dll (<see cref="OnnxPeer.FindRunner"/>); null: not built, so
    /// <see cref="OnnxRuntime"/> is skipped with that reason.</summary>
    public string? OnnxRunner { get; init; }

    /// <summary>Whether SGEMM workloads also get the one-core CPU-time comparison; default true.</summary>
    public bool OneCore { get; init; } = true;

    /// <summary>The device Kiln's side runs on (default the CPU); the peer and the one-core GEMM stay on the CPU.</summary>
    public Device Device { get; init; } = Device.Cpu;

    /// <summary>One core's peak in GFLOP/s, when already measured (<see cref="PeakProbe.MeasureCoreGflops"/>); null (the default): measured by the run.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Set to a value that is not positive and finite.</exception>
    public double? CorePeakGflops
    {
        get;
        init => field = value is null || double.IsFinite(value.Value) && value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(CorePeakGflops), $"bench: a core's peak must be positive and finite, not {value}");
    }
}

/// <summary>
/// `kiln bench` as a library: Kiln against libtorch 2 (bench/Kiln.Bench.Torch), ONNX Runtime (bench/Kiln.Bench.Onnx), numpy/OpenBLAS and PyTorch 1.13
/// (peer_bench.py), in one invocation, in alternating rounds, each peer's output checked against Kiln's first.
/// </summary>
public static class BenchRunner
{
    /// <summary>
    /// Probes the peers (refusing, with a reason, one on a reference BLAS or on more threads than Kiln), measures the peak
    /// (unless given), then each workload in turn, with fresh libtorch and ONNX Runtime processes: libtorch's and ONNX Runtime's output on Kiln's inputs compared with Kiln's,
    /// <see cref="BenchOptions.Rounds"/> rounds of (Kiln, peers), each side's median round, the ratios, and for SGEMM the
    /// one-core CPU-time rates.
    /// </summary>
    /// <param name="options">What to run.</param>
    /// <param name="progress">Told after each workload and of each peer failure, on the calling thread before the run
    /// goes on; so pass an <see cref="IProgress{T}"/> that acts at once (<see cref="Progress{T}"/> posts to the thread
    /// pool, which can reorder reports). Null: not told.</param>
    /// <returns>The rows in run order, with the machine, peak, load and date.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="FileNotFoundException">The peer script or /usr/bin/python3 is missing.</exception>
    /// <exception cref="InvalidDataException">A peer printed a malformed result line, or libtorch's runner failed mid-run.</exception>
    public static BenchReport Run(BenchOptions options, IProgress<BenchProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var list = Workloads.Select(options.Workloads);
        var rows = new List<BenchRow>();
        void Warn(string w) => progress?.Report(new(rows.Count, list.Count, Warning: w));
        var machine = BenchMachine.Current();
        int threads = machine.Threads;
        var peer = options.PeerBench is null ? null : new PeerRunner(options.PeerBench, threads, Warn);
        var infos = new List<PeerInfo>(peer?.Peers ?? []);
        var skipped = new List<string>(peer?.Refused ?? []);
        if (options.PeerBench is null) skipped.Add("numpy, torch: no peer_bench.py (--no-peer, or not found)");
        // Each child peer is opened once here to read its hello (or the reason it is skipped), then afresh for every
        // workload: libtorch's OpenMP and MKL thread teams keep state from one op to the next (after its GEMM rows its
        // softmax and SiLU ran 30x slower in the same process), and a workload is judged as it runs on its own.
        var openers = new List<Func<(ChildPeer? Peer, string? Reason)>>();
        if (options.LibTorch)
            foreach (bool kernel in new[] { true, false })
            {
                Func<(ChildPeer?, string?)> open = () => TorchPeer.Open(options.TorchRunner, threads, kernel);
                var (tp, reason) = open();
                if (tp is null) { skipped.Add(reason!); if (kernel) break; continue; }
                infos.Add(tp.Info); tp.Dispose(); openers.Add(open);
            }
        else skipped.Add("libtorch: not asked for");
        if (options.OnnxRuntime)
        {
            Func<(ChildPeer?, string?)> open = () => OnnxPeer.Open(options.OnnxRunner, threads);
            var (op, reason) = open();
            if (op is null) skipped.Add(reason!);
            else { infos.Add(op.Info); op.Dispose(); openers.Add(open); }
        }
        else skipped.Add("onnxruntime: not asked for");
        foreach (var s in skipped) Warn("skipped " + s);
        double corePeak = options.CorePeakGflops ?? PeakProbe.MeasureCoreGflops();
        string loadBefore = BenchMachine.LoadAverage();
        int rounds = peer is null && openers.Count == 0 ? 1 : options.Rounds;
        foreach (var w in list)
        {
            var children = new List<ChildPeer>();
            try
            {
                foreach (var open in openers)
                {
                    var (cp, reason) = open();
                    if (cp is null) Warn($"{w.Name}: {reason}");
                    else children.Add(cp);
                }
                var (checkedPeers, errors) = Check(w, children, Warn);
                var kilnRounds = new List<KilnResult>();
                var peerRounds = new List<PeerResult>();
                var probes = new List<double>();
                var peaks = new List<double>();
                var allCores = new List<double>();
                // A bandwidth-bound row takes at least three copy probes, one after each Kiln round.
                for (int round = 0; round < (w.StreamedBytes is null ? rounds : Math.Max(rounds, 3)); round++)
                {
                    kilnRounds.Add(Measure(w, options.Device));
                    if (w.StreamedBytes is not null) probes.Add(PeakProbe.MeasureCopyGBps());
                    if (w.Unit == "GFLOP/s") { peaks.Add(PeakProbe.MeasureCoreGflops()); allCores.Add(PeakProbe.MeasureCoresGflops()); }
                    if (round >= rounds) continue;
                    if (peer is not null) peerRounds.AddRange(peer.Run(w.Name));
                    foreach (var cp in checkedPeers)
                    {
                        double seconds = cp.Time(w.Name);
                        peerRounds.Add(new(w.Name, cp.Name, seconds, w.Amount / seconds, w.Unit));
                    }
                }
                OneCoreResult? core = options.OneCore && w.Gemm is { } sh ? new(PeakProbe.KilnOneCoreGflops(sh), peer?.OneCoreGflops(sh)) : null;
                static double? Median(List<double> xs) => xs.Count > 0 ? xs.Order().ElementAt(xs.Count / 2) : null;
                double? copyGBps = Median(probes), rowPeak = Median(peaks), coresPeak = Median(allCores);
                rows.Add(BenchRow.FromRounds(kilnRounds, peerRounds, core, coresPeak ?? corePeak * machine.LogicalCpus) with
                {
                    RelativeErrors = errors, CopyGBps = copyGBps, BoundRate = copyGBps is { } bw && w.StreamedBytes is { } bytes ? bw * 1e9 / bytes() : null,
                    CorePeakGflops = rowPeak, CoresPeakGflops = coresPeak,
                });
            }
            finally
            {
                foreach (var cp in children) cp.Dispose();
            }
            progress?.Report(new(rows.Count, list.Count, rows[^1]));
        }
        return new BenchReport(rows, machine, corePeak, rounds, loadBefore, BenchMachine.LoadAverage(), DateTime.Now) { PeerInfos = infos, Skipped = skipped };
    }

    // Before timing: Kiln's case on the CPU writes its inputs for the peers, each peer computes its output on them, and
    // the two outputs are compared. Peers without the workload drop out of its rounds.
    static (List<ChildPeer> Ready, Dictionary<string, double> Errors) Check(Workload w, IReadOnlyList<ChildPeer> peers, Action<string> warn)
    {
        var ready = new List<ChildPeer>();
        var errors = new Dictionary<string, double>();
        if (peers.Count == 0) return (ready, errors);
        var dir = Directory.CreateTempSubdirectory("kiln-bench-");
        try
        {
            using var scope = Tensor.Scope();
            var c = w.Prepare(Device.Cpu);
            if (c.Inputs.Count == 0 || c.Output is null) return (ready, errors);
            ChildPeer.WriteInputs(dir.FullName, c.Inputs);
            float[] kiln = c.Output().To(DType.Float32).ToArray<float>();
            foreach (var tp in peers)
                if (tp.Prepare(w.Name, dir.FullName) is { } theirs)
                {
                    ready.Add(tp);
                    errors[tp.Name] = ChildPeer.RelativeError(kiln, theirs);
                }
            if (ready.Count == 0) warn($"{w.Name}: no {string.Join(" or ", peers.Select(p => p.Name).Distinct())} version of it");
            return (ready, errors);
        }
        finally { dir.Delete(recursive: true); }
    }

    /// <summary>Kiln's time of one workload on <paramref name="device"/> (default the CPU): <see cref="Workload.Setup"/>, then <see cref="Timing.MedianSeconds"/> of the run.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="workload"/> is null.</exception>
    public static KilnResult Measure(Workload workload, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(workload);
        var dev = device ?? Device.Cpu;
        var run = workload.Setup(dev);
        // A GPU backend launches asynchronously: each timed run waits for its work.
        if (dev.Backend is IlgpuBackend gpu) { var launch = run; run = () => { launch(); gpu.Driver.Synchronize(); }; }
        double s = Timing.MedianSeconds(run);
        return new(workload.Name, s, workload.Amount / s, workload.Unit);
    }
}
