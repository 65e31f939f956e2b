using Kiln.Gpu;

namespace Kiln.Tests.TestKit;

/// <summary>
/// Opens every device present through <see cref="KilnGpu.Open(string)"/> for <see cref="Devices.All"/>: ILGPU's CPU
/// accelerator (always), every CUDA device and every OpenCL device Kiln can drive (PoCL with clang-15 on CI). The leases
/// live as long as the test run.
/// </summary>
public static partial class DeviceSetup
{
    static readonly List<DeviceLease> Leases = [];

    /// <summary>Why no OpenCL device is in <see cref="Devices.All"/> (null when at least one is).</summary>
    public static string? OpenClMissing { get; private set; }

    static partial void RegisterExtra()
    {
        var specs = KilnGpu.Available().Where(s => s != "cpu").ToArray();
        var reasons = new List<string>();
        foreach (var spec in specs)
        {
            try { Leases.Add(KilnGpu.Open(spec)); }
            catch (NotSupportedException e) when (spec.StartsWith("opencl", StringComparison.Ordinal)) { reasons.Add(e.InnerException?.Message ?? e.Message); }
        }
        int openCl = specs.Count(s => s.StartsWith("opencl", StringComparison.Ordinal));
        if (reasons.Count == openCl)
            OpenClMissing = openCl == 0 ? "no OpenCL device (Debian: apt-get install pocl-opencl-icd ocl-icd-libopencl1 clang-15)" : string.Join("; ", reasons);
    }
}
