using Kiln.Backends;

namespace Kiln.Tests.TestKit;

/// <summary>The devices every conformance test runs on: the CPU always, and each device whose backend is registered
/// (ILGPU's CPU accelerator always once Kiln.Gpu is referenced, CUDA/OpenCL when present).</summary>
public static class Devices
{
    static Devices() => DeviceSetup.EnsureRegistered();

    /// <summary>All devices with a backend.</summary>
    public static IReadOnlyList<Device> All => BackendRegistry.Devices.OrderBy(d => d.Kind).ThenBy(d => d.Index).ToArray();

    /// <summary>xunit member data: one row per device.</summary>
    public static IEnumerable<object[]> Data => All.Select(d => new object[] { d.ToString() });

    /// <summary>The device named as in <see cref="Device.ToString"/>.</summary>
    public static Device Parse(string name) => All.First(d => d.ToString() == name);
}

/// <summary>Registers extra backends for the test run (the GPU adapter adds itself here).</summary>
public static partial class DeviceSetup
{
    static int _done;
    public static void EnsureRegistered()
    {
        if (Interlocked.Exchange(ref _done, 1) == 1) return;
        RegisterExtra();
    }

    static partial void RegisterExtra();
}
