using System.Diagnostics;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// A persistent team of ProcessorCount - 1 background threads for kernels whose parts must start together (GEMM,
/// long rows): the thread pool's workers may be asleep or busy when Parallel.For posts its parts, so the caller ends up
/// doing most of them alone. Parts are taken first come, first served; the caller works too. One job runs at a time: a
/// nested call, or a call while another thread's job is running, runs its parts inline.
/// </summary>
/// <remarks>
/// Waking a blocked thread can take a millisecond on a virtual machine (its idle vCPU is halted), longer than a GEMM
/// phase: measured here, a worker woken through a semaphore after a 200 µs pause took part in only 14% of 500 µs jobs.
/// So a worker polls for the next job for <see cref="SpinBeforeSleep"/> after each one before it blocks, and the caller
/// polls for the last part as long before it blocks, as BLAS libraries' threads do. An idle team costs nothing.
/// </remarks>
public static class WorkerTeam
{
    /// <summary>How long a worker (or a caller waiting for the last part) polls before it blocks.</summary>
    public static readonly TimeSpan SpinBeforeSleep = TimeSpan.FromMilliseconds(2);

    static readonly int Workers = Math.Max(0, Environment.ProcessorCount - 1);
    static readonly object Gate = new();
    static readonly SemaphoreSlim Wake = new(0);
    static Job? _job;
    static long _posted;      // jobs posted so far; a worker polls this
    static int _sleeping;     // workers blocked on Wake
    [ThreadStatic] static bool _inTeam;
    static readonly AsyncLocal<int> Cap = new();

    /// <summary>
    /// The threads a kernel may split its work into here: every core, or fewer inside <see cref="Limit"/>. Kernels size
    /// their parts from this, so a result that depends on the split shows up when it changes.
    /// </summary>
    public static int Threads => Cap.Value > 0 ? Math.Min(Cap.Value, Workers + 1) : Workers + 1;

    /// <summary>Runs the calling flow (and the async work it starts) on at most <paramref name="threads"/> threads until disposed.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="threads"/> is below 1.</exception>
    public static IDisposable Limit(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        int previous = Cap.Value;
        Cap.Value = threads;
        return new Restore(previous);
    }

    sealed class Restore(int previous) : IDisposable
    {
        public void Dispose() => Cap.Value = previous;
    }

    // Each call gets its own counters, so a worker that arrives late for an earlier job can only help the current one.
    sealed class Job(Action<int> body, int parts)
    {
        public readonly Action<int> Body = body;
        public readonly int Parts = parts;
        public int Next, Pending = parts;
        public Exception? Error;
        public readonly ManualResetEventSlim Done = new(false, spinCount: 1);
    }

    static WorkerTeam()
    {
        for (int i = 0; i < Workers; i++) new Thread(Loop) { IsBackground = true, Name = "kiln-worker" }.Start();
    }

    /// <summary>Runs body(0) .. body(parts - 1) on the team and the calling thread; rethrows the first exception.</summary>
    public static void For(int parts, Action<int> body)
    {
        if (parts <= 1 || Threads == 1 || _inTeam || !Monitor.TryEnter(Gate))
        {
            for (int i = 0; i < parts; i++) body(i);
            return;
        }
        try
        {
            var job = new Job(body, parts);
            Volatile.Write(ref _job, job);
            Interlocked.Increment(ref _posted);
            int sleeping = Volatile.Read(ref _sleeping);
            if (sleeping > 0) Wake.Release(Math.Min(sleeping, parts - 1));
            _inTeam = true;
            try { Work(job); } finally { _inTeam = false; }
            long start = Stopwatch.GetTimestamp();
            var spin = new SpinWait();
            while (Volatile.Read(ref job.Pending) > 0 && Stopwatch.GetElapsedTime(start) < SpinBeforeSleep) spin.SpinOnce(sleep1Threshold: -1);
            job.Done.Wait();
            if (job.Error is { } e) throw new AggregateException(e);
        }
        finally { Monitor.Exit(Gate); }
    }

    static void Work(Job job)
    {
        int i;
        while ((i = Interlocked.Increment(ref job.Next) - 1) < job.Parts)
        {
            try { job.Body(i); }
            catch (Exception e) { Interlocked.CompareExchange(ref job.Error, e, null); }
            finally { if (Interlocked.Decrement(ref job.Pending) == 0) job.Done.Set(); }
        }
    }

    static void Loop()
    {
        _inTeam = true;
        long seen = 0;
        while (true)
        {
            long start = Stopwatch.GetTimestamp(), now;
            var spin = new SpinWait();
            while ((now = Volatile.Read(ref _posted)) == seen)
            {
                // SpinOnce yields now and then, so a worker sharing a core with the caller does not hold it up.
                if (Stopwatch.GetElapsedTime(start) < SpinBeforeSleep) { spin.SpinOnce(sleep1Threshold: -1); continue; }
                // Announce the sleep, then look once more: a job posted in between is either seen here or wakes us.
                // A surplus release only makes a later Wait return early, and the loop polls again.
                Interlocked.Increment(ref _sleeping);
                if (Volatile.Read(ref _posted) == seen) Wake.Wait();
                Interlocked.Decrement(ref _sleeping);
                start = Stopwatch.GetTimestamp();
                spin.Reset();
            }
            seen = now;
            if (Volatile.Read(ref _job) is { } job) Work(job);
        }
    }
}
