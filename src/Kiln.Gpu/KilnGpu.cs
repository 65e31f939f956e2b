using ILGPU;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using Kiln.Backends;

namespace Kiln.Gpu;

/// <summary>
/// Creates GPU devices for Kiln and registers them with <see cref="BackendRegistry"/>, so tensors can be moved there with
/// <c>x.To(device)</c>. Each returned backend owns its device: dispose it to free the device and unregister it.
/// </summary>
public static class KilnGpu
{
    static Context NewContext(Action<Context.Builder> configure) =>
        Context.Create(b => { configure(b); b.Optimize(OptimizationLevel.O1).EnableAlgorithms(); });

    /// <summary>ILGPU's CPU accelerator as <see cref="Device.IlgpuCpu"/>: the GPU kernels run on simulated GPU threads (for tests at small sizes).</summary>
    public static IlgpuBackend CreateCpuAccelerator()
    {
        var ctx = NewContext(b => b.CPU());
        var acc = ctx.CreateCPUAccelerator(0);
        return Register(new IlgpuBackend(Device.IlgpuCpu, new IlgpuDriver(ctx, acc)));
    }

    /// <summary>The number of CUDA devices ILGPU finds (0 without an NVIDIA driver).</summary>
    public static int CudaDeviceCount()
    {
        try
        {
            using var ctx = Context.Create(b => b.Cuda());
            return ctx.GetCudaDevices().Count;
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or InvalidOperationException or NotSupportedException)
        {
            return 0;
        }
    }

    /// <summary>CUDA device <paramref name="index"/> as <see cref="Device.Cuda(int)"/>.</summary>
    /// <exception cref="NotSupportedException">There is no such CUDA device.</exception>
    public static IlgpuBackend CreateCuda(int index = 0)
    {
        int count = CudaDeviceCount();
        if (index < 0 || index >= count)
            throw new NotSupportedException($"no CUDA device {index}: ILGPU found {count} CUDA device(s)");
        var ctx = NewContext(b => b.Cuda());
        var acc = ctx.CreateCudaAccelerator(index);
        return Register(new IlgpuBackend(Device.Cuda(index), new IlgpuDriver(ctx, acc)));
    }

    static IlgpuBackend Register(IlgpuBackend backend)
    {
        BackendRegistry.Register(backend.Device, backend);
        return backend;
    }
}
