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
public sealed record BenchMachine(int LogicalCpus, string CpuName, bool Vector512, string Runtime)
{
    /// <summary>This machine.</summary>
    public static BenchMachine Current() =>
        new(Environment.ProcessorCount, CpuModel(), System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated, Environment.Version.ToString());

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
