namespace Kiln.Kernels.Cpu;

/// <summary>
/// A persistent team of ProcessorCount - 1 background threads for kernels whose parts must start together (GEMM):
/// the thread pool's workers may be asleep or busy when Parallel.For posts its parts, so the caller ends up doing most
/// of them alone. Parts are taken first come, first served; the caller works too. One job runs at a time: a nested
/// call, or a call while another thread's job is running, runs its parts inline.
/// </summary>
public static class WorkerTeam
{
    static readonly int Workers = Math.Max(0, Environment.ProcessorCount - 1);
    static readonly object Gate = new();
    static readonly SemaphoreSlim Wake = new(0);
    static Action<int>? _body;
    static int _parts, _next, _pending;
    static Exception? _error;
    [ThreadStatic] static bool _inTeam;

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
            // Publish the job before the part count, so a late wake from an earlier job sees either no parts or this job.
            Volatile.Write(ref _parts, 0);
            _body = body; _error = null;
            Volatile.Write(ref _next, 0);
            Volatile.Write(ref _pending, parts);
            Volatile.Write(ref _parts, parts);
            Wake.Release(Math.Min(Workers, parts - 1));
            _inTeam = true;
            try { Work(); } finally { _inTeam = false; }
            var spin = new SpinWait();
            while (Volatile.Read(ref _pending) > 0) spin.SpinOnce(sleep1Threshold: -1);
            _body = null;
            if (_error is { } e) throw new AggregateException(e);
        }
        finally { Monitor.Exit(Gate); }
    }

    static void Work()
    {
        int i;
        while ((i = Interlocked.Increment(ref _next) - 1) < Volatile.Read(ref _parts))
        {
            try { _body!(i); }
            catch (Exception e) { Interlocked.CompareExchange(ref _error, e, null); }
            finally { Interlocked.Decrement(ref _pending); }
        }
    }

    static void Loop()
    {
        _inTeam = true;
        while (true)
        {
            Wake.Wait();
            Work();
        }
    }
}
