using ILGPU;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using Kiln.Backends;
using Kiln.Gpu.OpenCl;

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

    /// <summary>
    /// The number of OpenCL devices of every installed platform (0 without an OpenCL ICD loader or platform). Kiln drives
    /// them directly through the OpenCL API, not through ILGPU's OpenCL accelerator, so devices that ILGPU refuses (PoCL:
    /// OpenCL C 1.2, no generic address space) run too, given SPIR support and clang-15 (see README).
    /// </summary>
    public static int OpenClDeviceCount()
    {
        var api = ClApi.Instance;
        return api is null ? 0 : api.Devices().Length;
    }

    /// <summary>OpenCL device <paramref name="index"/> (in platform order, as listed by <c>clinfo</c>) as <see cref="Device.OpenCL(int)"/>.</summary>
    /// <exception cref="NotSupportedException">There is no OpenCL driver or no such device, or the device has neither OpenCL C 2.0 nor SPIR.</exception>
    public static IlgpuBackend CreateOpenCl(int index = 0)
    {
        var api = ClApi.Instance ?? throw new NotSupportedException("OpenCL: " + ClApi.MissingReason);
        var devices = api.Devices();
        if (index < 0 || index >= devices.Length)
            throw new NotSupportedException($"no OpenCL device {index}: the installed platforms have {devices.Length} device(s)");
        return Register(new IlgpuBackend(Device.OpenCL(index), new OpenClDriver(api, devices[index])));
    }

    static IlgpuBackend Register(IlgpuBackend backend)
    {
        BackendRegistry.Register(backend.Device, backend);
        return backend;
    }
}
