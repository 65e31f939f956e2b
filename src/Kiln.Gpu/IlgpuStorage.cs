using Kiln.Kernels.Gpu;

namespace Kiln.Gpu;

/// <summary>
/// Device memory of one tensor storage: a pooled buffer of the ILGPU (or OpenCL) device. Disposing returns the buffer to
/// its backend's pool at once, so a training loop reuses the same buffers every step instead of allocating.
/// Bool is stored as one byte per element, Float16 and BFloat16 as their 16-bit patterns.
/// </summary>
public sealed class IlgpuStorage : Storage
{
    readonly BufferPool _pool;
    DeviceBuffer? _buffer;

    internal IlgpuStorage(Device device, DType dtype, int length, BufferPool pool, DeviceBuffer buffer) : base(device, dtype, length)
    {
        _pool = pool;
        _buffer = buffer;
    }

    /// <summary>The device buffer; throws <see cref="ObjectDisposedException"/> once disposed.</summary>
    public DeviceBuffer Buffer => _buffer ?? throw new ObjectDisposedException(nameof(Tensor), $"the tensor's storage ({Length} x {DType} on {Device}) was disposed");

    /// <inheritdoc/>
    protected override void Release()
    {
        var b = Interlocked.Exchange(ref _buffer, null);
        if (b is not null) _pool.Return(b);
    }
}

/// <summary>
/// Device buffers cached by size bucket (powers of two from 256 bytes), up to a byte limit; what does not fit is freed.
/// Thread-safe: storages are released from any thread.
/// </summary>
public sealed class BufferPool : IDisposable
{
    readonly KernelDriver _driver;
    readonly Dictionary<long, Stack<DeviceBuffer>> _free = [];
    readonly object _lock = new();
    long _cached;
    bool _disposed;

    internal BufferPool(KernelDriver driver, long limitBytes) { _driver = driver; LimitBytes = limitBytes; }

    /// <summary>The most bytes kept for reuse.</summary>
    public long LimitBytes { get; set; }
    /// <summary>Bytes currently cached for reuse.</summary>
    public long CachedBytes { get { lock (_lock) return _cached; } }
    /// <summary>Buffers allocated from the device so far (a loop that reuses memory stops increasing it).</summary>
    public long Allocations { get; private set; }

    /// <summary>The bucket size that holds <paramref name="bytes"/>.</summary>
    public static long Bucket(long bytes) => Math.Max(256, (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)Math.Max(bytes, 1)));

    /// <summary>A buffer of at least <paramref name="bytes"/> bytes, reused when one of its bucket is free.</summary>
    public DeviceBuffer Rent(long bytes)
    {
        long size = Bucket(bytes);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_free.TryGetValue(size, out var s) && s.Count > 0) { _cached -= size; return s.Pop(); }
            Allocations++;
        }
        return _driver.Allocate(size);
    }

    /// <summary>Gives a buffer back: cached when under the limit, freed otherwise.</summary>
    public void Return(DeviceBuffer buffer)
    {
        lock (_lock)
        {
            if (!_disposed && _cached + buffer.Bytes <= LimitBytes)
            {
                if (!_free.TryGetValue(buffer.Bytes, out var s)) _free[buffer.Bytes] = s = new Stack<DeviceBuffer>();
                s.Push(buffer);
                _cached += buffer.Bytes;
                return;
            }
        }
        buffer.Dispose();
    }

    /// <summary>Frees every cached buffer.</summary>
    public void Trim()
    {
        List<DeviceBuffer> all;
        lock (_lock)
        {
            all = _free.Values.SelectMany(s => s).ToList();
            _free.Clear();
            _cached = 0;
        }
        foreach (var b in all) b.Dispose();
    }

    /// <summary>Frees the cache; buffers returned later are freed at once.</summary>
    public void Dispose()
    {
        lock (_lock) _disposed = true;
        Trim();
    }
}
