using System.Diagnostics;

namespace Kiln.Distributed;

/// <summary>
/// The world of an MPI job (every rank mpirun started) as an <see cref="IProcessGroup"/>, over Open MPI or MPICH loaded
/// at run time. MPI's error handler is set to return, so MPI errors become <see cref="DistributedException"/>s, and
/// every operation runs non-blocking under a watchdog: one that has not completed after <see cref="Timeout"/> (a peer
/// died or stalled) throws <see cref="DistributedTimeoutException"/> instead of hanging. Operations may come from any
/// thread; they run one at a time, in call order.
/// </summary>
public sealed unsafe class MpiProcessGroup : IProcessGroup
{
    const int ThreadSerialized = 2;
    /// <summary>Seconds of the default <see cref="Timeout"/> when set in the environment (default 300).</summary>
    public const string TimeoutVariable = "KILN_DIST_TIMEOUT";

    static MpiProcessGroup? _world;
    static readonly Lock InitGate = new();

    readonly MpiLibrary _mpi;
    readonly Lock _gate = new();
    bool _disposed;
    string? _broken;

    MpiProcessGroup(MpiLibrary mpi, int rank, int size, TimeSpan timeout)
    {
        _mpi = mpi; Rank = rank; WorldSize = size; Timeout = timeout;
    }

    /// <summary>
    /// Initializes MPI (once per process) and returns the world group. Run the program under <c>mpirun -np N</c>; started
    /// alone it is a world of one rank.
    /// </summary>
    /// <param name="timeout">How long an operation may wait for its peers (default: <see cref="TimeoutVariable"/> seconds, else 300 s).</param>
    /// <exception cref="DistributedException">No MPI library is installed (the message says what was tried), MPI fails to
    /// initialize, or MPI was already finalized in this process.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is not positive.</exception>
    public static MpiProcessGroup Init(TimeSpan? timeout = null)
    {
        var t = timeout ?? (double.TryParse(Environment.GetEnvironmentVariable(TimeoutVariable), System.Globalization.CultureInfo.InvariantCulture, out double s)
            ? TimeSpan.FromSeconds(s) : TimeSpan.FromSeconds(300));
        if (t <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(timeout), t, "mpi: the timeout must be positive");
        lock (InitGate)
        {
            if (_world is { _disposed: false } w) { w.Timeout = t; return w; }
            var mpi = MpiLibrary.Load();
            int flag = 0;
            mpi.Finalized(&flag);
            if (flag != 0) throw new DistributedException("mpi: MPI was already finalized in this process and cannot be initialized again");
            mpi.Initialized(&flag);
            if (flag == 0)
            {
                int provided = 0;
                int rc = mpi.InitThread(null, 0, ThreadSerialized, &provided);
                if (rc != 0) throw new DistributedException($"mpi: MPI_Init_thread failed ({mpi.Describe(rc)}) with {mpi.Path}");
                // Data-parallel gradient buckets are reduced on a worker thread, so calls must be allowed from any thread.
                if (provided < ThreadSerialized)
                    throw new DistributedException($"mpi: {mpi.Path} provides thread level {provided}; Kiln needs MPI_THREAD_SERIALIZED ({ThreadSerialized}) or higher");
            }
            int r = mpi.CommSetErrhandler(mpi.CommWorld, mpi.ErrorsReturn);
            if (r != 0) throw new DistributedException($"mpi: MPI_Comm_set_errhandler failed ({mpi.Describe(r)})");
            int rank = 0, size = 0;
            mpi.CommRank(mpi.CommWorld, &rank);
            mpi.CommSize(mpi.CommWorld, &size);
            return _world = new MpiProcessGroup(mpi, rank, size, t);
        }
    }

    /// <inheritdoc/>
    public int Rank { get; }
    /// <inheritdoc/>
    public int WorldSize { get; }
    /// <inheritdoc/>
    public TimeSpan Timeout { get; set; }
    /// <summary>The MPI library in use and its ABI, e.g. <c>libmpi.so.40 (OpenMpi)</c>.</summary>
    public string Library => $"{_mpi.Path} ({_mpi.Abi})";
    /// <summary>The ABI of the loaded MPI library.</summary>
    public MpiAbi Abi => _mpi.Abi;

    /// <inheritdoc/>
    public void Barrier() => Run("barrier", req => _mpi.Ibarrier(_mpi.CommWorld, (long*)req));

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">root is not a rank.</exception>
    public void Broadcast(Tensor tensor, int root = 0)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        CheckRank(root, nameof(root));
        if (tensor.DType == DType.Float32) Write(tensor, Broadcast(Read<float>(tensor, "broadcast"), root));
        else Write(tensor, Broadcast(Read<double>(tensor, "broadcast"), root));
    }

    /// <inheritdoc/>
    public void AllReduce(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.DType == DType.Float32) Write(tensor, AllReduce(Read<float>(tensor, "all_reduce")));
        else Write(tensor, AllReduce(Read<double>(tensor, "all_reduce")));
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The element counts are not WorldSize * n and n, or the dtypes differ.</exception>
    public void ReduceScatter(Tensor input, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(input); ArgumentNullException.ThrowIfNull(output);
        CheckPair("reduce_scatter", input, output, input.Numel, output.Numel * WorldSize);
        if (input.DType == DType.Float32) { var o = new float[output.Numel]; ReduceScatter(Read<float>(input, "reduce_scatter"), o); Write(output, o); }
        else { var o = new double[output.Numel]; ReduceScatter(Read<double>(input, "reduce_scatter"), o); Write(output, o); }
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The element counts are not n and WorldSize * n, or the dtypes differ.</exception>
    public void AllGather(Tensor input, Tensor output)
    {
        ArgumentNullException.ThrowIfNull(input); ArgumentNullException.ThrowIfNull(output);
        CheckPair("all_gather", input, output, output.Numel, input.Numel * WorldSize);
        if (input.DType == DType.Float32) { var o = new float[output.Numel]; AllGather(Read<float>(input, "all_gather"), o); Write(output, o); }
        else { var o = new double[output.Numel]; AllGather(Read<double>(input, "all_gather"), o); Write(output, o); }
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">destination is not another rank, or the tag is negative.</exception>
    public void Send(Tensor tensor, int destination, int tag = 0)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.DType == DType.Float32) Send(Read<float>(tensor, "send"), destination, tag);
        else Send(Read<double>(tensor, "send"), destination, tag);
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">source is not another rank, or the tag is negative.</exception>
    public void Receive(Tensor tensor, int source, int tag = 0)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.DType == DType.Float32) { var b = Read<float>(tensor, "receive"); Receive(b, source, tag); Write(tensor, b); }
        else { var b = Read<double>(tensor, "receive"); Receive(b, source, tag); Write(tensor, b); }
    }

    // ------------------------------------------------------------------ host arrays

    /// <summary>Overwrites <paramref name="buffer"/> on every rank with its contents on <paramref name="root"/>; returns it.</summary>
    public T[] Broadcast<T>(T[] buffer, int root = 0) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(buffer);
        CheckRank(root, nameof(root));
        fixed (T* p = buffer)
        {
            var ptr = p;
            Run("broadcast", req => _mpi.Ibcast(ptr, checked(buffer.Length * sizeof(T)), _mpi.Byte, root, _mpi.CommWorld, (long*)req));
        }
        return buffer;
    }

    /// <summary>
    /// Replaces <paramref name="buffer"/> (float, double or int) by the elementwise sum over ranks, as a reduce-scatter
    /// followed by an all-gather (the ring all-reduce's two halves), so every rank ends with the same bits; returns it.
    /// </summary>
    /// <exception cref="NotSupportedException">T is not float, double or int.</exception>
    public T[] AllReduce<T>(T[] buffer) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(buffer);
        var dt = Reducible<T>("all_reduce");
        if (WorldSize == 1) return buffer;
        int block = (buffer.Length + WorldSize - 1) / WorldSize;
        // Blocks must be equal: pad the tail with zeros, which the sum leaves unchanged.
        var full = block * WorldSize == buffer.Length ? buffer : new T[block * WorldSize];
        if (!ReferenceEquals(full, buffer)) buffer.CopyTo(full, 0);
        var mine = new T[block];
        fixed (T* f = full) fixed (T* m = mine)
        {
            T* fp = f; T* mp = m;
            Run("all_reduce (reduce-scatter)", req => _mpi.IreduceScatterBlock(fp, mp, block, dt, _mpi.Sum, _mpi.CommWorld, (long*)req));
            mine.CopyTo(full, Rank * block);
            Run("all_reduce (all-gather)", req => _mpi.Iallgather((void*)_mpi.InPlace, 0, dt, fp, block, dt, _mpi.CommWorld, (long*)req));
        }
        if (!ReferenceEquals(full, buffer)) Array.Copy(full, buffer, buffer.Length);
        return buffer;
    }

    /// <summary>Sums <paramref name="input"/> (WorldSize blocks of output.Length) over ranks into <paramref name="output"/> (this rank's block).</summary>
    /// <exception cref="ArgumentException">input.Length is not WorldSize * output.Length.</exception>
    public void ReduceScatter<T>(T[] input, T[] output) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(input); ArgumentNullException.ThrowIfNull(output);
        var dt = Reducible<T>("reduce_scatter");
        if (input.Length != (long)output.Length * WorldSize)
            throw new ArgumentException($"reduce_scatter: input has {input.Length} elements, expected world size {WorldSize} x output's {output.Length}", nameof(input));
        fixed (T* i = input) fixed (T* o = output)
        {
            T* ip = i; T* op = o;
            Run("reduce_scatter", req => _mpi.IreduceScatterBlock(ip, op, output.Length, dt, _mpi.Sum, _mpi.CommWorld, (long*)req));
        }
    }

    /// <summary>Gathers every rank's <paramref name="input"/>, in rank order, into <paramref name="output"/>.</summary>
    /// <exception cref="ArgumentException">output.Length is not WorldSize * input.Length.</exception>
    public void AllGather<T>(T[] input, T[] output) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(input); ArgumentNullException.ThrowIfNull(output);
        if (output.Length != (long)input.Length * WorldSize)
            throw new ArgumentException($"all_gather: output has {output.Length} elements, expected world size {WorldSize} x input's {input.Length}", nameof(output));
        int bytes = checked(input.Length * sizeof(T));
        fixed (T* i = input) fixed (T* o = output)
        {
            T* ip = i; T* op = o;
            Run("all_gather", req => _mpi.Iallgather(ip, bytes, _mpi.Byte, op, bytes, _mpi.Byte, _mpi.CommWorld, (long*)req));
        }
    }

    /// <summary>Sends <paramref name="buffer"/> to <paramref name="destination"/> with <paramref name="tag"/>.</summary>
    public void Send<T>(T[] buffer, int destination, int tag = 0) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(buffer);
        CheckPeer(destination, nameof(destination), tag);
        fixed (T* p = buffer)
        {
            var ptr = p;
            Run($"send to rank {destination}", req => _mpi.Isend(ptr, checked(buffer.Length * sizeof(T)), _mpi.Byte, destination, tag, _mpi.CommWorld, (long*)req));
        }
    }

    /// <summary>Receives into <paramref name="buffer"/> what <paramref name="source"/> sent with <paramref name="tag"/>.</summary>
    public void Receive<T>(T[] buffer, int source, int tag = 0) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(buffer);
        CheckPeer(source, nameof(source), tag);
        fixed (T* p = buffer)
        {
            var ptr = p;
            Run($"receive from rank {source}", req => _mpi.Irecv(ptr, checked(buffer.Length * sizeof(T)), _mpi.Byte, source, tag, _mpi.CommWorld, (long*)req));
        }
    }

    /// <summary>
    /// Ends the whole job at once (MPI_Abort), for a rank that cannot go on; mpirun stops every rank with
    /// <paramref name="exitCode"/>.
    /// </summary>
    public void Abort(int exitCode = 1) => _mpi.Abort(_mpi.CommWorld, exitCode);

    /// <summary>
    /// Finalizes MPI (after which no group can be created in this process). After a timeout it does not, since
    /// finalizing waits for the dead peer; the process should then exit with a non-zero status.
    /// </summary>
    public void Dispose()
    {
        lock (InitGate)
        {
            if (_disposed) return;
            _disposed = true;
            if (_broken is null) _mpi.Finalize();
        }
    }

    // ------------------------------------------------------------------ plumbing

    // Starts a non-blocking operation and polls it to completion under the watchdog.
    void Run(string what, Func<nint, int> start)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_broken is not null) throw new DistributedException($"mpi: rank {Rank}: the group is unusable after an earlier failure ({_broken})");
            long request = 0;
            int rc = start((nint)(&request));
            if (rc != 0) throw Fail(what, rc);
            var clock = Stopwatch.StartNew();
            var spin = new SpinWait();
            while (true)
            {
                int done = 0;
                rc = _mpi.Test(&request, &done, _mpi.StatusIgnore);
                if (rc != 0) throw Fail(what, rc);
                if (done != 0) return;
                var waited = clock.Elapsed;
                if (waited > Timeout)
                {
                    _broken = $"{what} timed out";
                    throw new DistributedTimeoutException(
                        $"mpi: {what} on rank {Rank} of {WorldSize} did not complete within {Timeout.TotalSeconds:0.###} s: a peer rank died or stalled. " +
                        "The job cannot continue; exit, and restart it from the last checkpoint");
                }
                // Spin for the first milliseconds (latency of small collectives), then give the cores to the peers.
                if (waited.TotalMilliseconds < 2) spin.SpinOnce(sleep1Threshold: -1);
                else if (waited.TotalMilliseconds < 50) Thread.Yield();
                else Thread.Sleep(1);
            }
        }
    }

    DistributedException Fail(string what, int rc)
    {
        _broken = $"{what} failed";
        return new DistributedException($"mpi: {what} on rank {Rank} of {WorldSize} failed: {_mpi.Describe(rc)}");
    }

    nint Reducible<T>(string op) where T : unmanaged =>
        typeof(T) == typeof(float) ? _mpi.Float : typeof(T) == typeof(double) ? _mpi.Double : typeof(T) == typeof(int) ? _mpi.Int
            : throw new NotSupportedException($"{op}: sums {typeof(T).Name} elements not; use float, double or int");

    void CheckRank(int rank, string name)
    {
        if ((uint)rank >= (uint)WorldSize) throw new ArgumentOutOfRangeException(name, rank, $"mpi: rank must lie in [0, {WorldSize})");
    }

    void CheckPeer(int rank, string name, int tag)
    {
        CheckRank(rank, name);
        if (rank == Rank) throw new ArgumentOutOfRangeException(name, rank, $"mpi: rank {Rank} cannot send to or receive from itself");
        if (tag < 0) throw new ArgumentOutOfRangeException(nameof(tag), tag, "mpi: tags must be non-negative");
    }

    static void CheckPair(string op, Tensor input, Tensor output, long big, long expected)
    {
        if (input.DType != output.DType) throw new ArgumentException($"{op}: input is {input.DType} but output is {output.DType}", nameof(output));
        if (big != expected) throw new ArgumentException($"{op}: input has {input.Numel} and output {output.Numel} elements; one must be the world size times the other", nameof(output));
    }

    static T[] Read<T>(Tensor t, string op) where T : unmanaged
    {
        if (t.DType is not (DType.Float32 or DType.Float64))
            throw new NotSupportedException($"{op}: the MPI process group carries Float32 and Float64 tensors, not {t.DType}");
        return t.To(Device.Cpu).Contiguous().ToArray<T>();
    }

    static void Write<T>(Tensor t, T[] data) where T : unmanaged
    {
        using (Autograd.NoGrad()) t.Copy_(Tensor.FromArray(data, t.Shape).To(t.Device));
    }
}
