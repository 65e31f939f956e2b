namespace Kiln;

/// <summary>
/// A flat buffer of elements owned by one device. Tensors are views into a storage; several tensors may share one.
/// Disposing the storage frees its memory at once (device memory goes back to its pool); any later access through a
/// view throws <see cref="ObjectDisposedException"/>.
/// </summary>
public abstract class Storage : IDisposable
{
    /// <summary>Creates storage of <paramref name="length"/> elements of <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    protected Storage(Device device, DType dtype, int length)
    {
        Device = device; DType = dtype; Length = length;
        _usage = device == Device.Cpu ? CpuUsage : Usage.GetOrAdd(device, _ => new Counter());
        Interlocked.Increment(ref _usage.Storages);
        Interlocked.Add(ref _usage.Bytes, Bytes);
        TensorScope.Track(this);
    }

    internal sealed class Counter { public long Storages, Bytes; }
    static readonly System.Collections.Concurrent.ConcurrentDictionary<Device, Counter> Usage = new();
    // The host's, looked up on every allocation.
    static readonly Counter CpuUsage = Usage.GetOrAdd(Device.Cpu, _ => new Counter());
    readonly Counter _usage;

    /// <summary>The live storages and their bytes on <paramref name="device"/>.</summary>
    internal static (long Storages, long Bytes) LiveOn(Device device) =>
        Usage.TryGetValue(device, out var c) ? (Interlocked.Read(ref c.Storages), Interlocked.Read(ref c.Bytes)) : (0, 0);

    long Bytes => (long)Length * DType.Size();

    void Gone()
    {
        Interlocked.Decrement(ref _usage.Storages);
        Interlocked.Add(ref _usage.Bytes, -Bytes);
    }

    /// <summary>Number of storages created and not yet disposed or collected (for leak tests and diagnostics).</summary>
    public static long LiveCount => Usage.Values.Sum(c => Interlocked.Read(ref c.Storages));

    /// <summary>The device that holds the memory.</summary>
    public Device Device { get; }
    /// <summary>Element type.</summary>
    public DType DType { get; }
    /// <summary>Number of elements.</summary>
    public int Length { get; }
    /// <summary>True once disposed.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;
    int _disposed;

    /// <summary>Throws <see cref="ObjectDisposedException"/> if the storage has been disposed.</summary>
    public void ThrowIfDisposed(string op)
    {
        if (IsDisposed)
            throw new ObjectDisposedException(nameof(Tensor), $"{op}: the tensor's storage ({Length} x {DType} on {Device}) was disposed");
    }

    /// <summary>Frees the memory.</summary>
    public void Dispose()
    {
        // Once only, even from two threads at once: a second release would hand the array to the pool twice.
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        Gone();
        Release();
        GC.SuppressFinalize(this);
    }

    /// <summary>Counts a storage collected without Dispose as gone.</summary>
    ~Storage() { if (!IsDisposed) Gone(); }

    /// <summary>Frees the device memory.</summary>
    protected abstract void Release();
}

/// <summary>Host memory: a managed array of the dtype's element type (ushort for BFloat16).</summary>
public sealed class CpuStorage : Storage
{
    internal CpuStorage(Array data, DType dtype, int length) : base(Device.Cpu, dtype, length) { _data = data; }

    Array? _data;

    /// <summary>The elements; throws if disposed.</summary>
    public Array Data => _data ?? throw new ObjectDisposedException(nameof(Tensor), "the tensor's storage was disposed");

    /// <summary>The elements as a typed array.</summary>
    public T[] As<T>() => Data as T[] ?? throw new InvalidCastException($"storage holds {DType}, not {typeof(T).Name}");

    // Hands the array over for good (Download's result, which the caller keeps): freeing this storage then no longer
    // returns it to the pool, where another tensor would be given it.
    internal Array Take()
    {
        var d = Data;
        _data = null;
        return d;
    }

    /// <inheritdoc/>
    protected override void Release()
    {
        if (_data is { } d) CpuArrayPool.Return(d);
        _data = null;
    }
}

/// <summary>
/// Reuses large host arrays of disposed storages, so a training loop that frees its temporaries (Tensor.Scope) does not
/// make the GC allocate, zero and page in fresh memory every step. Bounded; arrays of equal length are interchangeable.
/// </summary>
internal static class CpuArrayPool
{
    // Per length, enough for a forward whose activations share one shape (a transformer block frees about eleven of
    // [T, d]): with 8, four blocks paged in ~36 MB of fresh arrays per call (decoder_4x_d512 92 -> 84 ms with 64).
    // LimitBytes bounds the whole pool.
    // Small arrays too: a decoding step frees and re-makes a few hundred of a few hundred elements each, which as fresh
    // allocations cost the collector more than a reuse costs here.
    const int MinLength = 1 << 6, MaxPerLength = 64;
    static long _maxBytes = 1L << 30;
    // Arrays of one element type and length; Count mirrors the bag's (whose own Count locks every thread's list).
    sealed class Slot(int elementSize)
    {
        public readonly System.Collections.Concurrent.ConcurrentBag<Array> Bag = [];
        public readonly int ElementSize = elementSize;
        public int Count;
    }
    // Per element type (Types' index), by length.
    static readonly Type[] Types = [typeof(float), typeof(double), typeof(int), typeof(long), typeof(bool), typeof(ushort), typeof(Half)];
    static readonly System.Collections.Concurrent.ConcurrentDictionary<int, Slot>[] Free = [.. Types.Select(_ => new System.Collections.Concurrent.ConcurrentDictionary<int, Slot>())];
    static int TypeIndex(Type element) => Array.IndexOf(Types, element);
    static long _bytes;

    /// <summary>Bytes held for reuse.</summary>
    public static long CachedBytes => Interlocked.Read(ref _bytes);

    /// <summary>The most bytes held for reuse (default 1 GiB); lowering it trims the pool.</summary>
    public static long LimitBytes
    {
        get => Interlocked.Read(ref _maxBytes);
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            Interlocked.Exchange(ref _maxBytes, value);
            if (CachedBytes > value) Trim();
        }
    }

    /// <summary>Lets the GC have every pooled array.</summary>
    public static void Trim()
    {
        foreach (var (_, slot) in Free.SelectMany(f => f))
            while (slot.Bag.TryTake(out var a))
            {
                Interlocked.Decrement(ref slot.Count);
                Interlocked.Add(ref _bytes, -(long)a.Length * slot.ElementSize);
            }
    }

    static int ElementSize(Array a)
    {
        var element = a.GetType().GetElementType()!;
        return System.Runtime.InteropServices.Marshal.SizeOf(element == typeof(bool) ? typeof(byte) : element);
    }

    public static Array Rent(Type element, int length, int elementSize)
    {
        if (length >= MinLength && TypeIndex(element) is >= 0 and var type && Free[type].TryGetValue(length, out var slot) && slot.Bag.TryTake(out var a))
        {
            Interlocked.Decrement(ref slot.Count);
            Interlocked.Add(ref _bytes, -(long)length * elementSize);
            return a;
        }
        return element == typeof(float) ? GC.AllocateUninitializedArray<float>(length)
            : element == typeof(double) ? GC.AllocateUninitializedArray<double>(length)
            : Array.CreateInstance(element, length);
    }

    public static void Return(Array a)
    {
        int length = a.Length;
        if (length < MinLength) return;
        int type = TypeIndex(a.GetType().GetElementType()!);
        if (type < 0) return;
        if (!Free[type].TryGetValue(length, out var slot)) slot = Free[type].GetOrAdd(length, static (_, size) => new Slot(size), ElementSize(a));
        long size = (long)length * slot.ElementSize;
        if (Interlocked.Increment(ref slot.Count) > MaxPerLength) { Interlocked.Decrement(ref slot.Count); return; }
        if (Interlocked.Add(ref _bytes, size) > LimitBytes)
        {
            Interlocked.Add(ref _bytes, -size);
            Interlocked.Decrement(ref slot.Count);
            return;
        }
        slot.Bag.Add(a);
    }
}
