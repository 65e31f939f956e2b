using System.Collections.Concurrent;
using Kiln.NN;

namespace Kiln.Distributed;

/// <summary>
/// Data-parallel training of a module over a process group (PyTorch's <c>DistributedDataParallel</c>): every rank holds
/// a full replica, computes the loss of its share of the batch, and after backward holds the average of every rank's
/// gradient. On construction the parameters are broadcast from rank 0, so all replicas start equal. During backward,
/// gradients are copied into buckets (about <c>bucketBytes</c> each, in reverse registration order, the order backward
/// produces them) and each full bucket is all-reduced on a worker thread while the backward goes on.
/// <see cref="FinishGradients"/> waits for the buckets and divides by the world size. The all-reduce gives every rank
/// the same bits, so replicas that step the same optimizer stay bitwise equal.
/// </summary>
/// <remarks>Run one backward per <see cref="FinishGradients"/> and clear the gradients between steps (ZeroGrad):
/// a bucket reduces the accumulated gradient it is handed.</remarks>
public sealed class DistributedDataParallel : IDataParallel, IDisposable
{
    /// <summary>The default bucket size, 25 MiB (PyTorch's).</summary>
    public const long DefaultBucketBytes = 25L << 20;

    sealed class Bucket(Tensor flat, List<(Parameter P, int Offset)> members)
    {
        public readonly Tensor Flat = flat;
        public readonly List<(Parameter P, int Offset)> Members = members;
        public readonly HashSet<Parameter> Seen = new(ReferenceEqualityComparer.Instance);
        public readonly ManualResetEventSlim Done = new(false);
        public Exception? Error;
    }

    readonly Bucket[] _buckets;
    readonly Dictionary<Parameter, (Bucket Bucket, int Offset)> _slotOf = new(ReferenceEqualityComparer.Instance);
    readonly List<IDisposable> _hooks = [];
    readonly BlockingCollection<Bucket> _queue = [];
    readonly Thread? _worker;
    int _nextLaunch;

    /// <summary>Wraps <paramref name="module"/>'s parameters; see <see cref="DistributedDataParallel(IProcessGroup, IEnumerable{Parameter}, long)"/>.</summary>
    public DistributedDataParallel(IProcessGroup group, Module module, long bucketBytes = DefaultBucketBytes)
        : this(group, (module ?? throw new ArgumentNullException(nameof(module))).Parameters(), bucketBytes) => Module = module;

    /// <summary>
    /// Broadcasts <paramref name="parameters"/> from rank 0 and reduces their gradients in buckets of about
    /// <paramref name="bucketBytes"/>. Every rank must pass the same parameters (shapes and dtypes) in the same order.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">bucketBytes is not positive.</exception>
    /// <exception cref="DistributedException">The broadcast fails or times out.</exception>
    public DistributedDataParallel(IProcessGroup group, IEnumerable<Parameter> parameters, long bucketBytes = DefaultBucketBytes)
    {
        ArgumentNullException.ThrowIfNull(group); ArgumentNullException.ThrowIfNull(parameters);
        if (bucketBytes <= 0) throw new ArgumentOutOfRangeException(nameof(bucketBytes), bucketBytes, "ddp: the bucket size must be positive");
        Group = group;
        var ps = parameters.Distinct(ReferenceEqualityComparer.Instance).Cast<Parameter>().ToList();
        foreach (var p in ps) group.Broadcast(p.Value, 0);
        // Backward produces the last parameters' gradients first: bucket in reverse order, one dtype and device a bucket.
        var buckets = new List<Bucket>();
        var members = new List<(Parameter, int)>();
        long bytes = 0;
        int count = 0;
        void Close()
        {
            if (members.Count == 0) return;
            var first = members[0].Item1.Value;
            buckets.Add(new Bucket(Tensor.Zeros(new Shape(count), first.DType, first.Device), members));
            members = []; bytes = 0; count = 0;
        }
        foreach (var p in Enumerable.Reverse(ps).Where(p => p.RequiresGrad))
        {
            if (members.Count > 0 && (members[0].Item1.Value.DType != p.Value.DType || members[0].Item1.Value.Device != p.Value.Device || bytes >= bucketBytes)) Close();
            members.Add((p, count));
            count += p.Numel;
            bytes += (long)p.Numel * (p.Value.DType == DType.Float64 ? 8 : 4);
        }
        Close();
        _buckets = [.. buckets];
        if (group.WorldSize == 1) return;
        foreach (var b in _buckets)
            foreach (var (p, offset) in b.Members)
            {
                _slotOf[p] = (b, offset);
                _hooks.Add(p.Value.RegisterPostAccumulateGradHook(_ => OnGradient(p)));
            }
        _worker = new Thread(Reduce) { IsBackground = true, Name = "kiln-ddp-allreduce" };
        _worker.Start();
    }

    /// <summary>The wrapped module, or null when built from a parameter list.</summary>
    public Module? Module { get; }
    /// <summary>The process group the gradients are reduced over.</summary>
    public IProcessGroup Group { get; }
    /// <inheritdoc/>
    public int Rank => Group.Rank;
    /// <inheritdoc/>
    public int WorldSize => Group.WorldSize;
    /// <summary>Number of gradient buckets (each one all-reduce per step).</summary>
    public int BucketCount => _buckets.Length;
    /// <summary>Buckets of this step handed to the all-reduce worker so far (tests check that this happens during backward).</summary>
    internal int LaunchedBuckets => _nextLaunch;

    // Runs on the thread of backward, as each gradient becomes final.
    void OnGradient(Parameter p)
    {
        var (b, offset) = _slotOf[p];
        if (!b.Seen.Add(p))
            throw new InvalidOperationException("ddp: a second backward ran before FinishGradients; call FinishGradients after each backward");
        using (Autograd.NoGrad()) b.Flat.Narrow(0, offset, p.Numel).Copy_(p.Grad!.Reshape(-1));
        if (b.Seen.Count == b.Members.Count) LaunchReady();
    }

    // Buckets start in index order on every rank, so the ranks' collectives match even if gradients arrive in another order.
    void LaunchReady()
    {
        while (_nextLaunch < _buckets.Length && _buckets[_nextLaunch].Seen.Count == _buckets[_nextLaunch].Members.Count)
        {
            var b = _buckets[_nextLaunch++];
            _queue.Add(b);
        }
    }

    void Reduce()
    {
        foreach (var b in _queue.GetConsumingEnumerable())
        {
            try { Group.AllReduce(b.Flat); }
            catch (Exception e) { b.Error = e; }
            b.Done.Set();
        }
    }

    /// <inheritdoc/>
    /// <exception cref="DistributedException">An all-reduce failed or timed out (a peer died); the message says which.</exception>
    public void FinishGradients()
    {
        if (_worker is null) return;
        // Parameters this backward did not reach contribute zeros, as they would have had no gradient.
        foreach (var b in _buckets)
            foreach (var (p, offset) in b.Members)
                if (b.Seen.Add(p))
                    using (Autograd.NoGrad()) b.Flat.Narrow(0, offset, p.Numel).Fill_(0);
        LaunchReady();
        Exception? error = null;
        foreach (var b in _buckets)
        {
            b.Done.Wait();
            error ??= b.Error;
        }
        try
        {
            if (error is not null) throw new DistributedException($"ddp: rank {Rank}: gradient all-reduce failed: {error.Message}", error);
            using (Autograd.NoGrad())
                foreach (var b in _buckets)
                    foreach (var (p, offset) in b.Members)
                        p.Grad = b.Flat.Narrow(0, offset, p.Numel).Reshape(p.Shape.ToArray()) / WorldSize;
        }
        finally
        {
            foreach (var b in _buckets) { b.Seen.Clear(); b.Error = null; b.Done.Reset(); }
            _nextLaunch = 0;
        }
    }

    /// <summary>Removes the gradient hooks and stops the worker thread (the process group stays open).</summary>
    public void Dispose()
    {
        foreach (var h in _hooks) h.Dispose();
        _hooks.Clear();
        _queue.CompleteAdding();
        _worker?.Join();
    }
}
