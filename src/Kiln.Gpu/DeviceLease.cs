using Kiln.Backends;

namespace Kiln.Gpu;

/// <summary>
/// A device opened by <see cref="KilnGpu.Open(string)"/>: while any lease of a device is open its backend stays registered, so
/// tensors can be created on <see cref="Device"/> or moved there with <c>x.To(lease.Device)</c>. Disposing the last lease
/// of a device that <see cref="KilnGpu.Open(string)"/> created frees the device; a lease of <see cref="Kiln.Device.Cpu"/>, or of
/// a device whose backend was registered by other code, owns nothing.
/// </summary>
public sealed class DeviceLease : IDisposable
{
    readonly DeviceTable? _table;
    readonly DeviceTable.Entry? _entry;
    int _disposed;

    internal DeviceLease(Device device, DeviceTable? table, DeviceTable.Entry? entry)
    {
        Device = device;
        _table = table;
        _entry = entry;
    }

    /// <summary>The opened device.</summary>
    public Device Device { get; }

    /// <summary>The backend that runs the device's ops.</summary>
    /// <exception cref="ObjectDisposedException">The lease is disposed.</exception>
    public IBackend Backend
    {
        get
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            return BackendRegistry.Get(Device);
        }
    }

    /// <summary>Closes this lease (once; later calls do nothing); the device is freed when its last lease closes.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0 && _entry is not null) _table!.Release(Device, _entry);
    }

    /// <inheritdoc/>
    public override string ToString() => Device.ToString();
}

/// <summary>
/// Reference counts of opened devices: the first open of a device creates its backend (or borrows one that other code
/// registered), later opens share it, and the last release disposes what the first open created.
/// </summary>
internal sealed class DeviceTable(Func<Device, IDisposable?> open)
{
    /// <summary>One opened device: what its first open created (null when borrowed) and how many leases hold it.</summary>
    internal sealed class Entry(IDisposable? owned)
    {
        public IDisposable? Owned { get; } = owned;
        public int Count;
    }

    readonly object _lock = new();
    readonly Dictionary<Device, Entry> _entries = new();

    /// <summary>The number of open leases of <paramref name="device"/>.</summary>
    public int Count(Device device) { lock (_lock) return _entries.TryGetValue(device, out var e) ? e.Count : 0; }

    /// <summary>A new lease of <paramref name="device"/>, creating it on first use. Creation runs under the lock, so two
    /// threads opening the same device never create two backends.</summary>
    public DeviceLease Acquire(Device device)
    {
        lock (_lock)
        {
            if (!_entries.TryGetValue(device, out var e)) _entries[device] = e = new Entry(open(device));
            e.Count++;
            return new DeviceLease(device, this, e);
        }
    }

    internal void Release(Device device, Entry e)
    {
        lock (_lock)
        {
            if (--e.Count > 0) return;
            _entries.Remove(device);
            e.Owned?.Dispose();
        }
    }
}
