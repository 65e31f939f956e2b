namespace Kiln.Kernels.Cpu;

/// <summary>
/// A persistent team of ProcessorCount - 1 background threads for kernels whose parts must start together (GEMM,
/// long rows): the thread pool's workers may be asleep or busy when Parallel.For posts its parts, so the caller ends up
/// doing most of them alone. Parts are taken first come, first served; the caller works too. One job runs at a time: a
/// nested call, or a call while another thread's job is running, runs its parts inline.
/// </summary>
public static class WorkerTeam
{
    static readonly int Workers = Math.Max(0, Environment.ProcessorCount - 1);
    static readonly object Gate = new();
    static readonly SemaphoreSlim Wake = new(0);
    static Job? _job;
    [ThreadStatic] static bool _inTeam;

    // Each call gets its own counters, so a worker woken late for an earlier job can only help the current one.
    sealed class Job(Action<int> body, int parts)
    {
        public readonly Action<int> Body = body;
        public readonly int Parts = parts;
        public int Next, Pending = parts;
        public Exception? Error;
        // Set by whoever finishes the last part; the caller spins briefly, then blocks, so a caller whose helper was
        // descheduled does not burn its core waiting.
        public readonly ManualResetEventSlim Done = new(false, spinCount: 200);
    }

    static WorkerTeam()
    {
        for (int i = 0; i < Workers; i++) new Thread(Loop) { IsBackground = true, Name = "kiln-worker" }.Start();
    }

    /// <summary>Runs body(0) .. body(parts - 1) on the team and the calling thread; rethrows the first exception.</summary>
    public static void For(int parts, Action<int> body)
    {
        if (parts <= 1 || Workers == 0 || _inTeam || !Monitor.TryEnter(Gate))
        {
            for (int i = 0; i < parts; i++) body(i);
            return;
        }
        try
        {
            var job = new Job(body, parts);
            Volatile.Write(ref _job, job);
            Wake.Release(Math.Min(Workers, parts - 1));
            _inTeam = true;
            try { Work(job); } finally { _inTeam = false; }
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
        while (true)
        {
            Wake.Wait();
            if (Volatile.Read(ref _job) is { } job) Work(job);
        }
    }
}
