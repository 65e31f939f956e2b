using System.Diagnostics;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// A persistent team of up to ProcessorCount - 1 background threads for kernels whose parts must start together (GEMM,
/// long rows): the thread pool's workers may be asleep or busy when Parallel.For posts its parts, so the caller ends up
/// doing most of them alone. The caller works too. One job runs at a time: a nested call, or a call while another
/// thread's job is running, runs its parts inline.
/// Parts are taken first come, first served, or (home blocks, for streaming kernels) dealt in contiguous blocks, one
/// per thread (the caller the first), as OpenMP's static schedule deals them, a thread that has finished its own block
/// then taking what is left of the others', so a thread the OS delays leaves little to wait on. A kernel called again
/// with the same split so gives each thread the same data as last time, which its caches may still hold: on a 2-core
/// Zen 5 guest whose cores have an L3 each, x += x on 64 MiB ran 160 GB/s with the halves swapped each call and
/// 256-275 with each core keeping its half; interleaved in one process, home blocks against first come: sum of 16M
/// floats +5%, layer norm 8192 x 1024 +9%, softmax 4096 x 4096 +3%.
/// </summary>
/// <remarks>
/// Waking a blocked thread can take a millisecond on a virtual machine (its idle vCPU is halted), longer than a GEMM
/// phase: measured here, a worker woken through a semaphore after a 200 µs pause took part in only 14% of 500 µs jobs.
/// So a worker polls for the next job for <see cref="SpinBeforeSleep"/> after each one before it blocks, and the caller
/// polls for the last part as long before it blocks, as BLAS libraries' threads do. An idle team costs nothing.
/// </remarks>
public static class WorkerTeam
{
    static long _spinTicks = TimeSpan.FromMilliseconds(2).Ticks;

    /// <summary>How long a worker (or a caller waiting for the last part) polls before it blocks (2 ms; zero blocks at once).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative, or above one second.</exception>
    public static TimeSpan SpinBeforeSleep
    {
        get => TimeSpan.FromTicks(Volatile.Read(ref _spinTicks));
        set
        {
            if (value < TimeSpan.Zero || value > TimeSpan.FromSeconds(1))
                throw new ArgumentOutOfRangeException(nameof(value), value, "spin time must be between 0 and 1 s");
            Volatile.Write(ref _spinTicks, value.Ticks);
        }
    }

    static bool Spinning(long start) => Stopwatch.GetElapsedTime(start).Ticks < Volatile.Read(ref _spinTicks);

    static readonly object Gate = new();
    static readonly object Staff = new();
    static int _workers;      // the team's size: threads a job may use beyond the caller
    static readonly HashSet<int> Running = [];   // indices of live worker threads; those at or past _workers leave
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
    public static int Threads
    {
        get
        {
            int cap = Cap.Value, all = Volatile.Read(ref _workers) + 1;
            return cap > 0 ? Math.Min(cap, all) : all;
        }
    }

    /// <summary>
    /// The most threads any kernel uses, process-wide: the caller plus this minus one workers (default: every core).
    /// Lowering it lets surplus workers finish and exit; raising it starts new ones.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Below 1 or above the processor count.</exception>
    public static int MaxThreads
    {
        get => Volatile.Read(ref _workers) + 1;
        set
        {
            if (value < 1 || value > Environment.ProcessorCount)
                throw new ArgumentOutOfRangeException(nameof(value), value, $"threads must be between 1 and the processor count {Environment.ProcessorCount}");
            lock (Staff)
            {
                Volatile.Write(ref _workers, value - 1);
                // A surplus worker may be asleep: waking them all lets each see whether it still belongs.
                if (Running.Count > 0) Wake.Release(Running.Count);
                for (int i = 0; i < value - 1; i++)
                {
                    if (!Running.Add(i)) continue;
                    int index = i;
                    new Thread(() => Loop(index)) { IsBackground = true, Name = "kiln-worker" }.Start();
                }
            }
        }
    }

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
    // The parts fall into Blocks contiguous home blocks, one per participant (the caller 0, worker i the i + 1-th), each
    // with its own cursor, a cache line apart; one block is first come, first served.
    sealed class Job(Action<int> body, int parts, int blocks)
    {
        const int Pad = 16;
        public readonly Action<int> Body = body;
        public readonly int Parts = parts, Blocks = blocks;
        public int Pending = parts;
        readonly int[] _cursor = new int[blocks * Pad];
        public Exception? Error;
        public readonly ManualResetEventSlim Done = new(false, spinCount: 1);

        // The next untaken part of block b, or -1 once it is all taken.
        public int Take(int b)
        {
            int start = (int)((long)Parts * b / Blocks), end = (int)((long)Parts * (b + 1) / Blocks);
            int i = start + Interlocked.Increment(ref _cursor[b * Pad]) - 1;
            return i < end ? i : -1;
        }
    }

    static WorkerTeam() => MaxThreads = Environment.ProcessorCount;

    /// <summary>
    /// Runs body(0) .. body(parts - 1) on the team and the calling thread; rethrows the first exception. With
    /// <paramref name="homeBlocks"/>, the parts are dealt in contiguous blocks, one per thread, before threads take what
    /// is left of the others' (for a streaming kernel called again and again on the same data); otherwise they are taken
    /// first come, first served (GEMM and attention, whose parts cost unevenly: dealt blocks ran them 1-8% slower).
    /// </summary>
    public static void For(int parts, Action<int> body, bool homeBlocks = false)
    {
        if (parts <= 1 || Threads == 1 || _inTeam || !Monitor.TryEnter(Gate))
        {
            for (int i = 0; i < parts; i++) body(i);
            return;
        }
        try
        {
            var job = new Job(body, parts, homeBlocks ? Math.Min(parts, Volatile.Read(ref _workers) + 1) : 1);
            Volatile.Write(ref _job, job);
            Interlocked.Increment(ref _posted);
            int sleeping = Volatile.Read(ref _sleeping);
            if (sleeping > 0) Wake.Release(Math.Min(sleeping, parts - 1));
            _inTeam = true;
            try { Work(job, 0); } finally { _inTeam = false; }
            long start = Stopwatch.GetTimestamp();
            var spin = new SpinWait();
            while (Volatile.Read(ref job.Pending) > 0 && Spinning(start)) spin.SpinOnce(sleep1Threshold: -1);
            job.Done.Wait();
            if (job.Error is { } e) throw new AggregateException(e);
        }
        finally { Monitor.Exit(Gate); }
    }

    // Participant `self` takes its own block's parts, then what is left of the others'.
    static void Work(Job job, int self)
    {
        for (int d = 0; d < job.Blocks; d++)
        {
            int b = (self + d) % job.Blocks, i;
            while ((i = job.Take(b)) >= 0)
            {
                try { job.Body(i); }
                catch (Exception e) { Interlocked.CompareExchange(ref job.Error, e, null); }
                finally { if (Interlocked.Decrement(ref job.Pending) == 0) job.Done.Set(); }
            }
        }
    }

    static void Loop(int index)
    {
        _inTeam = true;
        long seen = Volatile.Read(ref _posted);
        while (true)
        {
            long start = Stopwatch.GetTimestamp(), now;
            var spin = new SpinWait();
            while ((now = Volatile.Read(ref _posted)) == seen)
            {
                if (Leave(index)) return;
                // SpinOnce yields now and then, so a worker sharing a core with the caller does not hold it up.
                if (Spinning(start)) { spin.SpinOnce(sleep1Threshold: -1); continue; }
                // Announce the sleep, then look once more: a job posted in between is either seen here or wakes us.
                // A surplus release only makes a later Wait return early, and the loop polls again.
                Interlocked.Increment(ref _sleeping);
                if (Volatile.Read(ref _posted) == seen) Wake.Wait();
                Interlocked.Decrement(ref _sleeping);
                start = Stopwatch.GetTimestamp();
                spin.Reset();
            }
            seen = now;
            if (Leave(index)) return;
            if (Volatile.Read(ref _job) is { } job) Work(job, index + 1);
        }
    }

    // A surplus worker never takes a part; it leaves, and a later raise starts its index afresh.
    static bool Leave(int index)
    {
        if (index < Volatile.Read(ref _workers)) return false;
        lock (Staff)
        {
            if (index < _workers) return false;
            Running.Remove(index);
            return true;
        }
    }

    /// <summary>Worker threads alive now (surplus ones leave within their spin time once woken).</summary>
    public static int LiveWorkers { get { lock (Staff) return Running.Count; } }
}
