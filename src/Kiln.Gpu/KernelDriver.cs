using ILGPU;
using Kiln.Kernels.Gpu;

namespace Kiln.Gpu;

/// <summary>
/// Runs kernels on one device: memory, copies, and the host side of typed launches (<see cref="IKernelHost"/>). The
/// backend's host logic is written against this, so the same code drives an ILGPU accelerator (CUDA, OpenCL, CPU) and an
/// OpenCL driver fed with SPIR from clang.
/// </summary>
public abstract class KernelDriver : IKernelHost, IDisposable
{
    /// <summary>A short description of the device (for tables and errors).</summary>
    public abstract string Name { get; }
    /// <summary>The largest thread group the device runs.</summary>
    public abstract int MaxGroupSize { get; }
    /// <inheritdoc/>
    public abstract bool SupportsWarp { get; }
    /// <inheritdoc/>
    public abstract IIlgpuRunner? Ilgpu { get; }
    /// <summary>Allocates at least <paramref name="bytes"/> bytes (contents unspecified).</summary>
    public abstract DeviceBuffer Allocate(long bytes);
    /// <summary>Copies <paramref name="count"/> elements of <paramref name="src"/> to the start of <paramref name="dst"/>.</summary>
    public abstract void Write<T>(DeviceBuffer dst, T[] src, int count) where T : unmanaged;
    /// <summary>Copies <paramref name="count"/> elements from the start of <paramref name="src"/> into <paramref name="dst"/>.</summary>
    public abstract void Read<T>(DeviceBuffer src, T[] dst, int count) where T : unmanaged;
    /// <summary>Sets the first <paramref name="bytes"/> bytes of <paramref name="buffer"/> to zero.</summary>
    public abstract void Zero(DeviceBuffer buffer, long bytes);
    /// <inheritdoc/>
    /// <exception cref="NotSupportedException">This driver launches through ILGPU.</exception>
    public virtual IArgumentBinder Bind(GpuKernel kernel) => throw new NotSupportedException($"{Name} launches kernels through ILGPU");
    /// <inheritdoc/>
    public virtual void Build(GpuKernel kernel) => throw new NotSupportedException($"{Name} compiles kernels through ILGPU");
    /// <summary>Waits for all launched work.</summary>
    public abstract void Synchronize();
    /// <summary>Frees the device and everything the driver compiled.</summary>
    public abstract void Dispose();
}
