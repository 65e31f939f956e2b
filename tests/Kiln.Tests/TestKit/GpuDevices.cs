using Kiln.Gpu;

namespace Kiln.Tests.TestKit;

/// <summary>Adds ILGPU's CPU accelerator (always) and every CUDA device (when present) to <see cref="Devices.All"/>.</summary>
public static partial class DeviceSetup
{
    static partial void RegisterExtra()
    {
        KilnGpu.CreateCpuAccelerator();
        for (int i = 0; i < KilnGpu.CudaDeviceCount(); i++) KilnGpu.CreateCuda(i);
    }
}
