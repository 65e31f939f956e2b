using Kiln.Backends;
using Kiln.Kernels.Cpu;

namespace Kiln;

/// <summary>
/// Process-wide resource settings and memory statistics, for apps that embed Kiln beside other work: how many threads
/// the CPU kernels use and how long idle workers poll, how much freed memory each device keeps for reuse, and what is
/// live. The defaults (every core, 2 ms, 1 GiB per device) are the fastest for a process that is mostly Kiln.
/// </summary>
public static class Runtime
{
    /// <summary>
    /// The most threads a CPU kernel uses (the caller and its workers), 1 to <see cref="Environment.ProcessorCount"/>.
    /// Lowering it retires surplus workers; <see cref="Backends.CpuBackend.LimitThreads"/> caps one async flow below it.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Outside 1 .. the processor count.</exception>
    public static int Threads { get => WorkerTeam.MaxThreads; set => WorkerTeam.MaxThreads = value; }

    /// <summary>
    /// How long an idle worker polls for the next job before it sleeps (and a caller for the last part): waking a thread
    /// costs up to a millisecond on virtual machines, so polling keeps back-to-back kernels fast; zero frees the cores at
    /// once. Between 0 and 1 s.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative or above one second.</exception>
    public static TimeSpan SpinTime { get => WorkerTeam.SpinBeforeSleep; set => WorkerTeam.SpinBeforeSleep = value; }

    /// <summary>The most bytes of freed host memory kept for reuse (default 1 GiB); lowering it trims at once.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative.</exception>
    public static long HostCacheLimitBytes { get => CpuArrayPool.LimitBytes; set => CpuArrayPool.LimitBytes = value; }

    /// <summary>Gives the memory every device keeps for reuse back (to the GC on the host, to the driver on a GPU).</summary>
    public static void Trim()
    {
        foreach (var device in BackendRegistry.Devices)
            if (BackendRegistry.Get(device) is IMemoryCache cache) cache.Trim();
    }

    /// <summary>Memory of every device with a backend: live storages and their bytes, and the bytes cached for reuse.</summary>
    public static IReadOnlyList<DeviceMemory> Memory() =>
        [.. BackendRegistry.Devices.OrderBy(d => d.Kind).ThenBy(d => d.Index).Select(MemoryOf)];

    /// <summary>Memory of one device.</summary>
    public static DeviceMemory MemoryOf(Device device)
    {
        var (storages, bytes) = Storage.LiveOn(device);
        var cache = BackendRegistry.Get(device) as IMemoryCache;
        return new DeviceMemory(device, storages, bytes, cache?.CachedBytes ?? 0, cache?.CacheLimitBytes ?? 0);
    }
}

/// <summary>One device's memory.</summary>
/// <param name="Device">The device.</param>
/// <param name="LiveStorages">Storages created and not yet disposed or collected.</param>
/// <param name="LiveBytes">Their bytes.</param>
/// <param name="CachedBytes">Freed memory kept for reuse.</param>
/// <param name="CacheLimitBytes">The most the cache keeps.</param>
public sealed record DeviceMemory(Device Device, long LiveStorages, long LiveBytes, long CachedBytes, long CacheLimitBytes);
