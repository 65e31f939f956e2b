using ILGPU;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using Kiln.Backends;
using Kiln.Gpu.OpenCl;

namespace Kiln.Gpu;

/// <summary>
/// Creates GPU devices for Kiln and registers them with <see cref="BackendRegistry"/>, so tensors can be moved there with
/// <c>x.To(device)</c>. <see cref="Open(string)"/> is the entry point for applications: it takes a spec such as "cuda:0",
/// shares a device opened twice, and frees it with its last lease. Each backend returned by a <c>Create*</c> method owns
/// its device: dispose it to free the device and unregister it.
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
    /// them directly through the OpenCL API, not through ILGPU's OpenCL accelerator, so devices that ILGPU refuses (PoCL,
    /// NVIDIA: OpenCL C 1.2, no generic address space) run too (see <see cref="OpenClDevices"/> and the README).
    /// </summary>
    public static int OpenClDeviceCount()
    {
        var api = ClApi.Instance;
        return api is null ? 0 : api.Devices().Length;
    }

    /// <summary>
    /// OpenCL device <paramref name="index"/> (in platform order, as listed by <c>clinfo</c>) as <see cref="Device.OpenCL(int)"/>,
    /// driven by the program path <see cref="OpenClDevices"/> lists for it (the environment variable <c>KILN_OPENCL_PATH</c>
    /// = spir, spirv or source forces one).
    /// </summary>
    /// <exception cref="NotSupportedException">There is no OpenCL driver or no such device, or a forced path the device cannot take.</exception>
    /// <exception cref="ArgumentException"><c>KILN_OPENCL_PATH</c> holds something else than spir, spirv or source.</exception>
    public static IlgpuBackend CreateOpenCl(int index = 0) => Register(new IlgpuBackend(Device.OpenCL(index), OpenOpenCl(index, null)));

    /// <summary>OpenCL device <paramref name="index"/> driven by <paramref name="path"/> (e.g. to test the source path on PoCL).</summary>
    /// <exception cref="NotSupportedException">There is no OpenCL driver or no such device, or the device cannot take <paramref name="path"/> (the message says why).</exception>
    public static IlgpuBackend CreateOpenCl(int index, OpenClProgramPath path) => Register(new IlgpuBackend(Device.OpenCL(index), OpenOpenCl(index, path)));

    internal static OpenClDriver OpenOpenCl(int index, OpenClProgramPath? path)
    {
        var api = ClApi.Instance ?? throw new NotSupportedException("OpenCL: " + ClApi.MissingReason);
        var devices = api.Devices();
        if (index < 0 || index >= devices.Length)
            throw new NotSupportedException($"no OpenCL device {index}: the installed platforms have {devices.Length} device(s)");
        return new OpenClDriver(api, devices[index], path);
    }

    /// <summary>
    /// Every OpenCL device of the installed platforms with the program path Kiln's driver takes there and why: SPIR where
    /// the device has cl_khr_spir (PoCL), SPIR-V where it takes SPIR-V IL, else OpenCL C source (NVIDIA's and AMD's
    /// OpenCL), or the path <c>KILN_OPENCL_PATH</c> forces; an impossible forced path is listed with a null path and the
    /// reason. Empty without an OpenCL ICD loader or platform. Opens no context.
    /// </summary>
    /// <exception cref="ArgumentException"><c>KILN_OPENCL_PATH</c> holds something else than spir, spirv or source.</exception>
    public static IReadOnlyList<OpenClDeviceInfo> OpenClDevices()
    {
        var api = ClApi.Instance;
        if (api is null) return [];
        return [.. api.Devices().Select((d, i) =>
        {
            var caps = ClDeviceCaps.Read(api, d);
            var (path, reason) = OpenClPathChooser.Choose(caps, null, api.HasIl);
            return new OpenClDeviceInfo($"opencl:{i}", caps.Name, caps.Vendor, caps.Version, caps.OpenClC, path, reason);
        })];
    }

    /// <summary>The forms <see cref="Open(string)"/> and <see cref="ParseDevice"/> accept.</summary>
    public const string DeviceForms = "cpu, ilgpu-cpu, cuda[:N] or opencl[:N] (also Device.ToString() forms such as ilgpucpu:0)";

    /// <summary>
    /// The device named by <paramref name="spec"/>, case-insensitively: <c>cpu</c>, <c>ilgpu-cpu</c> (or <c>ilgpucpu</c>),
    /// <c>cuda:N</c>, <c>opencl:N</c>; <c>cuda</c> and <c>opencl</c> mean index 0, and cpu and ilgpu-cpu take only index 0.
    /// Checks the form only, not whether the device exists.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="spec"/> is not one of those forms (the message names it and the forms).</exception>
    public static Device ParseDevice(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var parts = spec.Trim().ToLowerInvariant().Split(':');
        int index = 0;
        if (parts.Length > 2 || parts.Length == 2 && !(int.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out index)))
            throw BadSpec(spec);
        return parts[0] switch
        {
            "cpu" when index == 0 => Device.Cpu,
            "ilgpu-cpu" or "ilgpucpu" when index == 0 => Device.IlgpuCpu,
            "cuda" => Device.Cuda(index),
            "opencl" => Device.OpenCL(index),
            _ => throw BadSpec(spec),
        };
    }

    static ArgumentException BadSpec(string spec) => new($"device '{spec}' is not one of {DeviceForms}", nameof(spec));

    /// <summary>The spec of <paramref name="device"/> in the form <see cref="Available"/> lists (cpu, ilgpu-cpu, cuda:N, opencl:N).</summary>
    public static string Spec(Device device) => device.Kind == DeviceKind.IlgpuCpu ? "ilgpu-cpu" : device.ToString();

    /// <summary>
    /// The devices present on this machine, as specs for <see cref="Open(string)"/>: cpu, ilgpu-cpu, cuda:i for each CUDA device
    /// and opencl:i for each OpenCL device of the installed platforms (one that cannot be driven is listed but fails to
    /// open with the reason).
    /// </summary>
    public static IReadOnlyList<string> Available() =>
    [
        "cpu", "ilgpu-cpu",
        .. Enumerable.Range(0, CudaDeviceCount()).Select(i => $"cuda:{i}"),
        .. Enumerable.Range(0, OpenClDeviceCount()).Select(i => $"opencl:{i}"),
    ];

    static readonly DeviceTable Opened = new(OpenBackend);

    // The backend that the first lease of a device owns, or null when other code (a Create* call) already registered one:
    // registering a second backend would replace the first under the tensors that live on it.
    static IDisposable? OpenBackend(Device device)
    {
        if (device == Device.Cpu || BackendRegistry.Devices.Contains(device)) return null;
        try
        {
            return device.Kind switch
            {
                DeviceKind.IlgpuCpu => CreateCpuAccelerator(),
                DeviceKind.Cuda => CreateCuda(device.Index),
                _ => CreateOpenCl(device.Index),
            };
        }
        catch (NotSupportedException e)
        {
            throw new NotSupportedException($"device {Spec(device)} cannot be opened: {e.Message}; present here: {string.Join(", ", Available())}", e);
        }
    }

    /// <summary>
    /// Opens the device named by <paramref name="spec"/> (see <see cref="ParseDevice"/>) and registers its backend, so its
    /// tensors run there until the returned lease is disposed. Opening a device that is already open shares its backend
    /// (leases are reference-counted and thread-safe); disposing the last lease frees it. <c>cpu</c> creates nothing.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="spec"/> is not a device spec (the message names it and the accepted forms).</exception>
    /// <exception cref="NotSupportedException">The device is not present or cannot be driven (the message says why and lists the devices present).</exception>
    public static DeviceLease Open(string spec) => Open(ParseDevice(spec));

    /// <summary>Opens <paramref name="device"/>; see <see cref="Open(string)"/>.</summary>
    /// <exception cref="NotSupportedException">The device is not present or cannot be driven.</exception>
    public static DeviceLease Open(Device device) => device == Device.Cpu ? new DeviceLease(device, null, null) : Opened.Acquire(device);

    static IlgpuBackend Register(IlgpuBackend backend)
    {
        BackendRegistry.Register(backend.Device, backend);
        return backend;
    }
}
