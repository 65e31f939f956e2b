using System.Collections.Concurrent;

namespace Kiln.Backends;

/// <summary>
/// Maps devices to backends. The CPU backend is always present; a GPU adapter package registers its devices with
/// <see cref="Register"/> when the application creates it.
/// </summary>
public static class BackendRegistry
{
    static readonly ConcurrentDictionary<Device, IBackend> Backends = new() { [Device.Cpu] = CpuBackend.Instance };

    /// <summary>Makes <paramref name="backend"/> run the ops of tensors on <paramref name="device"/>.</summary>
    public static void Register(Device device, IBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        if (device == Device.Cpu) throw new ArgumentException("the CPU backend is built in and cannot be replaced", nameof(device));
        Backends[device] = backend;
    }

    /// <summary>Removes the backend of <paramref name="device"/> (when its accelerator is disposed).</summary>
    public static void Unregister(Device device) { if (device != Device.Cpu) Backends.TryRemove(device, out _); }

    /// <summary>The backend of <paramref name="device"/>.</summary>
    /// <exception cref="NotSupportedException">None is registered.</exception>
    public static IBackend Get(Device device) => device == Device.Cpu ? CpuBackend.Instance : Backends.TryGetValue(device, out var b) ? b
        : throw new NotSupportedException($"no backend is registered for device {device}; create its accelerator first (Kiln.Gpu)");

    /// <summary>The devices with a registered backend.</summary>
    public static IReadOnlyCollection<Device> Devices => Backends.Keys.ToArray();
}
