using Kiln.Gpu;

namespace Kiln.Tests.TestKit;

/// <summary>
/// Adds ILGPU's CPU accelerator (always), every CUDA device and every OpenCL device Kiln can drive (PoCL with clang-15
/// on CI) to <see cref="Devices.All"/>.
/// </summary>
public static partial class DeviceSetup
{
    /// <summary>Why no OpenCL device is in <see cref="Devices.All"/> (null when at least one is).</summary>
    public static string? OpenClMissing { get; private set; }

    static partial void RegisterExtra()
    {
        KilnGpu.CreateCpuAccelerator();
        for (int i = 0; i < KilnGpu.CudaDeviceCount(); i++) KilnGpu.CreateCuda(i);
        var reasons = new List<string>();
        int count = KilnGpu.OpenClDeviceCount();
        for (int i = 0; i < count; i++)
        {
            try { KilnGpu.CreateOpenCl(i); }
            catch (NotSupportedException e) { reasons.Add(e.Message); }
        }
        if (reasons.Count == count)
            OpenClMissing = count == 0 ? "no OpenCL device (Debian: apt-get install pocl-opencl-icd ocl-icd-libopencl1 clang-15)" : string.Join("; ", reasons);
    }
}
