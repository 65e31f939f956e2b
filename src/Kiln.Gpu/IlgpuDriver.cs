using System.Collections.Concurrent;
using ILGPU;
using ILGPU.Runtime;
using Kiln.Kernels.Gpu;

namespace Kiln.Gpu;

/// <summary>A <see cref="KernelDriver"/> over an ILGPU accelerator; each kernel is compiled once, on first use, and cached.</summary>
public sealed class IlgpuDriver : KernelDriver, IIlgpuRunner
{
    readonly Context _context;
    readonly Accelerator _accelerator;
    readonly ConcurrentDictionary<GpuKernel, Lazy<Delegate>> _kernels = new();

    /// <summary>Takes ownership of <paramref name="context"/> and <paramref name="accelerator"/>.</summary>
    public IlgpuDriver(Context context, Accelerator accelerator) { _context = context; _accelerator = accelerator; }

    /// <summary>The ILGPU accelerator.</summary>
    public Accelerator Accelerator => _accelerator;

    /// <inheritdoc/>
    public override string Name => $"{_accelerator.AcceleratorType} {_accelerator.Name}";
    /// <inheritdoc/>
    public override int MaxGroupSize => _accelerator.MaxNumThreadsPerGroup;
    /// <inheritdoc/>
    public override bool SupportsWarp => _accelerator.AcceleratorType is AcceleratorType.Cuda or AcceleratorType.CPU;
    /// <inheritdoc/>
    public override IIlgpuRunner Ilgpu => this;
    /// <inheritdoc/>
    public AcceleratorStream Stream => _accelerator.DefaultStream;

    sealed class Buffer(MemoryBuffer1D<byte, Stride1D.Dense> mem) : DeviceBuffer
    {
        public readonly MemoryBuffer1D<byte, Stride1D.Dense> Mem = mem;
        public override long Bytes => Mem.Length;
        public override void Dispose() => Mem.Dispose();
    }

    static MemoryBuffer1D<byte, Stride1D.Dense> M(DeviceBuffer b) => ((Buffer)b).Mem;

    /// <inheritdoc/>
    public override DeviceBuffer Allocate(long bytes) => new Buffer(_accelerator.Allocate1D<byte>(Math.Max(bytes, 8)));

    /// <inheritdoc/>
    public ArrayView<E> View<E>(DeviceBuffer buffer, long length) where E : unmanaged =>
        M(buffer).View.AsContiguous().Cast<E>().SubView(0, length);

    /// <inheritdoc/>
    public TLauncher Load<TLauncher>(GpuKernel kernel, Func<Accelerator, TLauncher> compile) where TLauncher : Delegate =>
        (TLauncher)_kernels.GetOrAdd(kernel, _ => new Lazy<Delegate>(() => compile(_accelerator))).Value;

    /// <inheritdoc/>
    public override void Write<T>(DeviceBuffer dst, T[] src, int count)
    {
        if (count > 0) View<T>(dst, count).CopyFromCPU(_accelerator.DefaultStream, new ReadOnlySpan<T>(src, 0, count));
    }

    /// <inheritdoc/>
    public override void Read<T>(DeviceBuffer src, T[] dst, int count)
    {
        if (count == 0) return;
        _accelerator.DefaultStream.Synchronize();
        View<T>(src, count).CopyToCPU(_accelerator.DefaultStream, new Span<T>(dst, 0, count));
        _accelerator.DefaultStream.Synchronize();
    }

    /// <inheritdoc/>
    public override void Zero(DeviceBuffer buffer, long bytes) => M(buffer).View.SubView(0, bytes).MemSetToZero(_accelerator.DefaultStream);

    /// <inheritdoc/>
    public override void Synchronize() => _accelerator.Synchronize();

    /// <inheritdoc/>
    public override void Dispose()
    {
        _kernels.Clear();
        _accelerator.Dispose();
        _context.Dispose();
    }
}
