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
/// `kiln bench` as a library: Kiln against numpy/OpenBLAS and PyTorch on peer_bench.py's workloads, in one process
/// invocation, in alternating rounds.
/// </summary>
public static class BenchRunner
{
    /// <summary>
    /// Measures the peak (unless given), then each workload in turn: <see cref="BenchOptions.Rounds"/> rounds of (Kiln,
    /// peer), each side's median round, the ratio to the fastest peer, and for SGEMM the one-core CPU-time rates.
    /// </summary>
    /// <param name="options">What to run.</param>
    /// <param name="progress">Told after each workload and of each peer failure, on the calling thread before the run
    /// goes on; so pass an <see cref="IProgress{T}"/> that acts at once (<see cref="Progress{T}"/> posts to the thread
    /// pool, which can reorder reports). Null: not told.</param>
    /// <returns>The rows in run order, with the machine, peak, load and date.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="FileNotFoundException">The peer script or /usr/bin/python3 is missing.</exception>
    /// <exception cref="InvalidDataException">The peer printed a malformed result line.</exception>
    public static BenchReport Run(BenchOptions options, IProgress<BenchProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var list = Workloads.Select(options.Workloads);
        var rows = new List<BenchRow>();
        var peer = options.PeerBench is null ? null : new PeerRunner(options.PeerBench, w => progress?.Report(new(rows.Count, list.Count, Warning: w)));
        var machine = BenchMachine.Current();
        double corePeak = options.CorePeakGflops ?? PeakProbe.MeasureCoreGflops();
        string loadBefore = BenchMachine.LoadAverage();
        int rounds = peer is null ? 1 : options.Rounds;
        foreach (var w in list)
        {
            var kilnRounds = new List<KilnResult>();
            var peerRounds = new List<PeerResult>();
            for (int round = 0; round < rounds; round++)
            {
                kilnRounds.Add(Measure(w, options.Device));
                if (peer is not null) peerRounds.AddRange(peer.Run(w.Name));
            }
            OneCoreResult? core = options.OneCore && w.Gemm is { } s ? new(PeakProbe.KilnOneCoreGflops(s), peer?.OneCoreGflops(s)) : null;
            rows.Add(BenchRow.FromRounds(kilnRounds, peerRounds, core, corePeak * machine.LogicalCpus));
            progress?.Report(new(rows.Count, list.Count, rows[^1]));
        }
        return new BenchReport(rows, machine, corePeak, rounds, loadBefore, BenchMachine.LoadAverage(), DateTime.Now);
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
