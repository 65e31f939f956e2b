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
        Interlocked.Increment(ref _live);
        TensorScope.Track(this);
    }

    static long _live;

    /// <summary>Number of storages created and not yet disposed or collected (for leak tests and diagnostics).</summary>
    public static long LiveCount => Interlocked.Read(ref _live);

    /// <summary>The device that holds the memory.</summary>
    public Device Device { get; }
    /// <summary>Element type.</summary>
    public DType DType { get; }
    /// <summary>Number of elements.</summary>
    public int Length { get; }
    /// <summary>True once disposed.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary>Throws <see cref="ObjectDisposedException"/> if the storage has been disposed.</summary>
    public void ThrowIfDisposed(string op)
    {
        if (IsDisposed)
            throw new ObjectDisposedException(nameof(Tensor), $"{op}: the tensor's storage ({Length} x {DType} on {Device}) was disposed");
    }

    /// <summary>Frees the memory.</summary>
    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        Interlocked.Decrement(ref _live);
        Release();
        GC.SuppressFinalize(this);
    }

    /// <summary>Counts a storage collected without Dispose as gone.</summary>
    ~Storage() { if (!IsDisposed) Interlocked.Decrement(ref _live); }

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
    const int MinLength = 1 << 12, MaxPerLength = 8;
    const long MaxBytes = 1L << 30;
    static readonly System.Collections.Concurrent.ConcurrentDictionary<(Type, int), System.Collections.Concurrent.ConcurrentBag<Array>> Free = new();
    static long _bytes;

    public static Array Rent(Type element, int length, int elementSize)
    {
        if (length >= MinLength && Free.TryGetValue((element, length), out var bag) && bag.TryTake(out var a))
        {
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
        var element = a.GetType().GetElementType()!;
        long size = (long)length * System.Runtime.InteropServices.Marshal.SizeOf(element == typeof(bool) ? typeof(byte) : element);
        var bag = Free.GetOrAdd((element, length), _ => []);
        if (bag.Count >= MaxPerLength || Interlocked.Add(ref _bytes, size) > MaxBytes) { if (bag.Count < MaxPerLength) Interlocked.Add(ref _bytes, -size); return; }
        bag.Add(a);
    }
}
