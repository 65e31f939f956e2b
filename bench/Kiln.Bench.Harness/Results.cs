namespace Kiln.Bench;

/// <summary>Kiln's timing of one workload.</summary>
/// <param name="Workload">The workload's name.</param>
/// <param name="Seconds">Median seconds per run (<see cref="Timing.MedianSeconds"/>).</param>
/// <param name="Rate">Work per second in <paramref name="Unit"/>: the workload's amount / <paramref name="Seconds"/>.</param>
/// <param name="Unit">The rate's unit ("GFLOP/s", "GB/s", "samples/s").</param>
public sealed record KilnResult(string Workload, double Seconds, double Rate, string Unit);

/// <summary>An SGEMM on one core in GFLOP per CPU-second of the thread that runs it: Kiln's and numpy's (OpenBLAS).</summary>
/// <param name="Kiln">Kiln's rate (<see cref="PeakProbe.KilnOneCoreGflops"/>).</param>
/// <param name="Peer">numpy's rate (<see cref="PeerRunner.OneCoreGflops"/>); null without a peer or when it failed.</param>
public sealed record OneCoreResult(double Kiln, double? Peer)
{
    /// <summary>Kiln / peer (&gt; 1: Kiln is faster); null without a peer rate.</summary>
    public double? Ratio => Peer is { } p ? Kiln / p : null;
}

/// <summary>One workload's results: Kiln's median round, the fastest peer, every peer's median round, and for SGEMM the one-core rates.</summary>
/// <param name="Kiln">Kiln's median round.</param>
/// <param name="Peer">The fastest peer in Kiln's unit (its median round); null without one.</param>
/// <param name="Peers">Every peer's median round, in the order the peer printed them.</param>
/// <param name="OneCore">For SGEMM with one-core timing on, the one-core rates; otherwise null.</param>
/// <param name="PeakFraction">For a GFLOP/s workload with a known peak, Kiln's rate / the machine's peak; otherwise null.</param>
public sealed record BenchRow(KilnResult Kiln, PeerResult? Peer, IReadOnlyList<PeerResult> Peers, OneCoreResult? OneCore = null, double? PeakFraction = null)
{
    /// <summary>The workload's name.</summary>
    public string Workload => Kiln.Workload;

    /// <summary>Kiln's rate / the fastest peer's rate (&gt; 1: Kiln is faster); null without a peer.</summary>
    public double? Ratio => Peer is null ? null : Kiln.Rate / Peer.Rate;

    /// <summary>
    /// The peer Kiln is judged against: libtorch with its allocator caching (<see cref="TorchPeer.KernelName"/>, kernel
    /// against kernel) when it ran the workload, otherwise the fastest peer.
    /// </summary>
    public PeerResult? Headline => Peers.FirstOrDefault(p => p.Peer == TorchPeer.KernelName && p.Unit == Kiln.Unit) ?? Peer;

    /// <summary>Kiln's rate / <see cref="Headline"/>'s rate; null without a peer.</summary>
    public double? HeadlineRatio => Headline is { } h ? Kiln.Rate / h.Rate : null;

    /// <summary>Kiln's rate / the named peer's rate; null when that peer has no result in Kiln's unit.</summary>
    public double? RatioTo(string peer) => Peers.FirstOrDefault(p => p.Peer == peer && p.Unit == Kiln.Unit) is { } r ? Kiln.Rate / r.Rate : null;

    /// <summary>
    /// Per peer that was checked, ‖kiln − peer‖₂ / ‖peer‖₂ of the two outputs on the same inputs, computed before timing
    /// (<see cref="ChildPeer.RelativeError"/>); empty when no peer was checked.
    /// </summary>
    public IReadOnlyDictionary<string, double> RelativeErrors { get; init; } = new Dictionary<string, double>();

    /// <summary>
    /// For a workload with <see cref="Workload.StreamedBytes"/>, its memory-bandwidth bound in Kiln's unit:
    /// <see cref="CopyGBps"/> / the bytes per unit; otherwise null.
    /// </summary>
    public double? BoundRate { get; init; }

    /// <summary>
    /// For a workload with <see cref="Workload.StreamedBytes"/>, the copy bandwidth its bound uses (GB/s, read + write):
    /// the median of <see cref="PeakProbe.MeasureCopyGBps"/> taken after each of its Kiln rounds, so the bound is this
    /// VM's memory bandwidth while the row ran (it moved 33-58 GB/s within an hour); otherwise null.
    /// </summary>
    public double? CopyGBps { get; init; }

    /// <summary>
    /// For a GFLOP/s row measured by <see cref="BenchRunner"/>, one core's peak (<see cref="PeakProbe.MeasureCoreGflops"/>)
    /// taken after each of its Kiln rounds, median: <see cref="PeakFraction"/>'s denominator over the cores, so the
    /// fraction is against the clock the row ran at (this VM's host moved a core's peak 207-235 GFLOP/s between rows
    /// and runs of one session); otherwise null.
    /// </summary>
    public double? CorePeakGflops { get; init; }

    /// <summary>
    /// For a GFLOP/s row measured by <see cref="BenchRunner"/>, every core's peak at once by the wall clock
    /// (<see cref="PeakProbe.MeasureCoresGflops"/>) taken after each of its Kiln rounds, median:
    /// <see cref="PeakFraction"/>'s denominator; otherwise null.
    /// </summary>
    public double? CoresPeakGflops { get; init; }

    /// <summary>
    /// Kiln's rate / (<see cref="CorePeakGflops"/> x <paramref name="cores"/>): the fraction of the CPU-time probe's
    /// peak, which no wall-clock rate reaches while the host takes a share of the cores; null without a core peak.
    /// </summary>
    public double? CorePeakFraction(int cores) => Kiln.Unit == "GFLOP/s" && CorePeakGflops is { } c ? Kiln.Rate / (c * cores) : null;

    /// <summary>Kiln's rate / <see cref="BoundRate"/>; null without a bound.</summary>
    public double? BoundFraction => BoundRate is { } b ? Kiln.Rate / b : null;

    /// <summary>
    /// A row from alternating rounds of one workload: each side's median round (<see cref="Timing.MedianRound"/>, per
    /// peer), and the fastest peer among those that report Kiln's unit.
    /// </summary>
    /// <param name="kilnRounds">Kiln's result in each round (at least one).</param>
    /// <param name="peerRounds">Every peer result of every round (may be empty).</param>
    /// <param name="oneCore">The one-core rates, for SGEMM.</param>
    /// <param name="peakGflops">The machine's single-precision peak, for <see cref="PeakFraction"/>; null: not known.</param>
    /// <exception cref="ArgumentNullException"><paramref name="kilnRounds"/> or <paramref name="peerRounds"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="kilnRounds"/> is empty, or the results name more than one workload.</exception>
    public static BenchRow FromRounds(IReadOnlyCollection<KilnResult> kilnRounds, IEnumerable<PeerResult> peerRounds, OneCoreResult? oneCore = null, double? peakGflops = null)
    {
        ArgumentNullException.ThrowIfNull(kilnRounds);
        ArgumentNullException.ThrowIfNull(peerRounds);
        var k = Timing.MedianRound(kilnRounds, r => r.Seconds);
        var peerList = peerRounds.ToList();
        var names = kilnRounds.Select(r => r.Workload).Concat(peerList.Select(p => p.Workload)).Distinct().ToArray();
        if (names.Length > 1) throw new ArgumentException($"bench: one row's rounds name several workloads: {string.Join(", ", names)}", nameof(peerRounds));
        var peers = peerList.GroupBy(p => (p.Peer, p.Unit)).Select(g => Timing.MedianRound(g.ToList(), p => p.Seconds)).ToList();
        var best = peers.Where(p => p.Unit == k.Unit).MaxBy(p => p.Rate);
        double? fraction = k.Unit == "GFLOP/s" && peakGflops is { } peak ? k.Rate / peak : null;
        return new(k, best, peers, oneCore, fraction);
    }
}

/// <summary>What a run of <see cref="BenchRunner.Run"/> has done: a workload finished, or a warning.</summary>
/// <param name="Completed">Workloads finished so far.</param>
/// <param name="Total">Workloads in the run.</param>
/// <param name="Row">The workload just finished; null for a warning.</param>
/// <param name="Warning">One line about a peer process that failed (its results are missing); null for a finished workload.</param>
public sealed record BenchProgress(int Completed, int Total, BenchRow? Row = null, string? Warning = null);

/// <summary>The machine a run was measured on.</summary>
/// <param name="LogicalCpus">Logical CPUs (<see cref="Environment.ProcessorCount"/>).</param>
/// <param name="CpuName">The CPU's model name (/proc/cpuinfo), or "unknown CPU".</param>
/// <param name="Vector512">Whether Vector512 is hardware accelerated.</param>
/// <param name="Runtime">The .NET runtime's version.</param>
/// <param name="Flags">The CPU flags that decide kernel choice (FMA, AVX2, AVX-512 subsets, AMX) that it has; null: unknown.</param>
/// <param name="Threads">Threads Kiln's kernels use (<see cref="Kiln.Runtime.Threads"/>), which the peers get too; 0: unknown.</param>
/// <param name="Caches">Cache sizes of CPU 0, e.g. "L1d 48K, L2 2048K, L3 107520K" (sysfs, as the kernels block for them: <see cref="Kiln.Kernels.Cpu.CpuCaches"/>); empty: unknown.</param>
public sealed record BenchMachine(int LogicalCpus, string CpuName, bool Vector512, string Runtime, IReadOnlyList<string>? Flags = null, int Threads = 0, string Caches = "")
{
    static readonly string[] FlagsThatMatter =
        ["fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16"];

    /// <summary>This machine, with Kiln's thread count.</summary>
    public static BenchMachine Current() =>
        new(Environment.ProcessorCount, CpuModel(), System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated, Environment.Version.ToString(),
            CpuFlags(), Kiln.Runtime.Threads, Kiln.Kernels.Cpu.CpuCaches.Describe());

    /// <summary>The CPU as every JSON line of `kiln bench --json` records it: model, flags, logical CPUs, threads used, caches.</summary>
    public IReadOnlyDictionary<string, object> ToJson() => new Dictionary<string, object>
    {
        ["model"] = CpuName, ["flags"] = Flags ?? [], ["logical_cpus"] = LogicalCpus, ["threads"] = Threads, ["caches"] = Caches, ["vector512"] = Vector512,
    };

    /// <summary>One line for a report: model, logical CPUs, threads used, flags and caches.</summary>
    public string Describe() =>
        $"{CpuName}, {LogicalCpus} logical CPUs, {Threads} threads used; {(Flags is { Count: > 0 } f ? string.Join(' ', f) : "flags unknown")}; {(Caches.Length > 0 ? Caches : "caches unknown")}";

    static string[] CpuFlags()
    {
        try
        {
            var flags = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal))?.Split(':', 2)[1].Split(' ', StringSplitOptions.RemoveEmptyEntries) ?? [];
            return FlagsThatMatter.Where(flags.Contains).ToArray();
        }
        catch (IOException) { return []; }
    }

    /// <summary>
    /// The 1-minute load average (/proc/loadavg), or "unknown": other processes slow Kiln and the peer alike but make
    /// both noisy, so a report states it.
    /// </summary>
    public static string LoadAverage()
    {
        try { return File.ReadAllText("/proc/loadavg").Split(' ')[0]; }
        catch (IOException) { return "unknown"; }
    }

    static string CpuModel()
    {
        try { return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? "unknown CPU"; }
        catch (IOException) { return "unknown CPU"; }
    }
}
