using Kiln.Backends;

namespace Kiln;

/// <summary>The kind of a device.</summary>
public enum DeviceKind
{
    /// <summary>The host CPU, running Kiln's SIMD kernels.</summary>
    Cpu,
    /// <summary>An NVIDIA GPU through ILGPU's CUDA backend.</summary>
    Cuda,
    /// <summary>An OpenCL device through ILGPU.</summary>
    OpenCL,
    /// <summary>ILGPU's CPU accelerator: the GPU kernels simulated on CPU threads (for tests).</summary>
    IlgpuCpu,
}

/// <summary>Where a tensor's memory lives and where its ops run.</summary>
public readonly record struct Device(DeviceKind Kind, int Index = 0)
{
    /// <summary>The host CPU.</summary>
    public static Device Cpu => new(DeviceKind.Cpu);
    /// <summary>CUDA GPU number <paramref name="index"/>.</summary>
    public static Device Cuda(int index = 0) => new(DeviceKind.Cuda, index);
    /// <summary>OpenCL device number <paramref name="index"/>.</summary>
    public static Device OpenCL(int index = 0) => new(DeviceKind.OpenCL, index);
    /// <summary>ILGPU's CPU accelerator (simulated GPU threads).</summary>
    public static Device IlgpuCpu => new(DeviceKind.IlgpuCpu);

    /// <summary>The backend that runs ops on this device.</summary>
    /// <exception cref="NotSupportedException">No backend for this device is registered.</exception>
    public IBackend Backend => BackendRegistry.Get(this);

    /// <summary>Formats as cpu, cuda:0, ...</summary>
    public override string ToString() => Kind == DeviceKind.Cpu ? "cpu" : $"{Kind.ToString().ToLowerInvariant()}:{Index}";
}
