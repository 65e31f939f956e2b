using ILGPU;
using Kiln.Kernels.Gpu;

namespace Kiln.Gpu;

/// <summary>A block of raw device memory owned by a <see cref="KernelDriver"/>.</summary>
public abstract class DeviceBuffer : IDisposable
{
    /// <summary>Size in bytes.</summary>
    public abstract long Bytes { get; }
    /// <summary>Frees the memory.</summary>
    public abstract void Dispose();
}

/// <summary>A kernel argument that is a device array: <paramref name="Length"/> elements of <paramref name="Element"/> from the start of a buffer.</summary>
public readonly record struct DeviceView(DeviceBuffer Buffer, Type Element, long Length);

/// <summary>
/// Runs catalog kernels on one device: memory, copies and launches. The backend's host logic is written against this,
/// so the same code drives an ILGPU accelerator (CUDA, OpenCL, CPU) and an OpenCL driver fed with SPIR from clang.
/// Arguments are <see cref="DeviceView"/>s for ArrayView parameters and values of the kernel's other parameter types.
/// </summary>
public abstract class KernelDriver : IDisposable
{
    /// <summary>A short description of the device (for tables and errors).</summary>
    public abstract string Name { get; }
    /// <summary>The largest thread group the device runs.</summary>
    public abstract int MaxGroupSize { get; }
    /// <summary>True when warp-shuffle kernels can run (else the shared-memory twins are used).</summary>
    public abstract bool SupportsWarp { get; }
    /// <summary>Allocates at least <paramref name="bytes"/> bytes (contents unspecified).</summary>
    public abstract DeviceBuffer Allocate(long bytes);
    /// <summary>Copies <paramref name="count"/> elements of <paramref name="src"/> to the start of <paramref name="dst"/>.</summary>
    public abstract void Write<T>(DeviceBuffer dst, T[] src, int count) where T : unmanaged;
    /// <summary>Copies <paramref name="count"/> elements from the start of <paramref name="src"/> into <paramref name="dst"/>.</summary>
    public abstract void Read<T>(DeviceBuffer src, T[] dst, int count) where T : unmanaged;
    /// <summary>Sets the first <paramref name="bytes"/> bytes of <paramref name="buffer"/> to zero.</summary>
    public abstract void Zero(DeviceBuffer buffer, long bytes);
    /// <summary>Compiles <paramref name="kernel"/> for the device (or finds it in the cache) without launching it.</summary>
    /// <exception cref="NotSupportedException">The device cannot run the kernel; the message says why.</exception>
    public abstract void Prepare(KernelEntry kernel);
    /// <summary>Launches an implicitly grouped kernel over <paramref name="extent"/> threads.</summary>
    public abstract void Launch(KernelEntry kernel, int extent, params object[] args);
    /// <summary>Launches an explicitly grouped kernel.</summary>
    public abstract void Launch(KernelEntry kernel, Index3D grid, Index3D group, params object[] args);
    /// <summary>Waits for all launched work.</summary>
    public abstract void Synchronize();
    /// <summary>Frees the device and everything the driver compiled.</summary>
    public abstract void Dispose();
}
