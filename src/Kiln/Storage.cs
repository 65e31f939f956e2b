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
    internal CpuStorage(Array data, DType dtype) : base(Device.Cpu, dtype, data.Length) { _data = data; }

    Array? _data;

    /// <summary>The elements; throws if disposed.</summary>
    public Array Data => _data ?? throw new ObjectDisposedException(nameof(Tensor), "the tensor's storage was disposed");

    /// <summary>The elements as a typed array.</summary>
    public T[] As<T>() => Data as T[] ?? throw new InvalidCastException($"storage holds {DType}, not {typeof(T).Name}");

    /// <inheritdoc/>
    protected override void Release() => _data = null;
}
