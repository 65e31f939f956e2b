using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Kiln.Bench;

/// <summary>How `kiln bench` times a run: medians of wall time, the median round, and the calling thread's CPU time.</summary>
public static class Timing
{
    /// <summary>
    /// Median seconds of <paramref name="reps"/> timed runs after warm-up (at least 2 runs and 1.5 s, so the JIT's tiering
    /// and its background compiles are over: on 2 cores they take one core for a while after the first 30 calls).
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="run"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="reps"/> is less than 1.</exception>
    public static double MedianSeconds(Action run, int reps = 7)
    {
        ArgumentNullException.ThrowIfNull(run);
        if (reps < 1) throw new ArgumentOutOfRangeException(nameof(reps), $"bench: reps must be at least 1, not {reps}");
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
    /// The round with the median time (the upper middle one for an even count). The shared machine's speed drifts in
    /// episodes of seconds, so each side reports its median round and one episode cannot decide a ratio alone.
    /// </summary>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="rounds"/> is empty.</exception>
    public static T MedianRound<T>(IReadOnlyCollection<T> rounds, Func<T, double> seconds)
    {
        ArgumentNullException.ThrowIfNull(rounds);
        ArgumentNullException.ThrowIfNull(seconds);
        if (rounds.Count == 0) throw new ArgumentException("bench: no rounds to take the median of", nameof(rounds));
        return rounds.OrderBy(seconds).ElementAt(rounds.Count / 2);
    }

    /// <summary>
    /// CPU seconds of the calling thread (Linux: CLOCK_THREAD_CPUTIME_ID), so the runtime's own threads (tiered JIT
    /// compiles, GC, an idle worker's polling) and other load on the machine do not count; elsewhere the process's CPU time.
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
}
