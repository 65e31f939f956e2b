using System.Collections.Concurrent;
using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using Kiln.Kernels.Gpu;

namespace Kiln.Gpu;

/// <summary>A <see cref="KernelDriver"/> over an ILGPU accelerator; each kernel is compiled once, on first use, and cached.</summary>
public sealed class IlgpuDriver : KernelDriver
{
    readonly Context _context;
    readonly Accelerator _accelerator;
    readonly ConcurrentDictionary<string, Kernel> _kernels = new();
    readonly object _launchLock = new();

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

    sealed class Buffer(MemoryBuffer1D<byte, Stride1D.Dense> mem) : DeviceBuffer
    {
        public readonly MemoryBuffer1D<byte, Stride1D.Dense> Mem = mem;
        public override long Bytes => Mem.Length;
        public override void Dispose() => Mem.Dispose();
    }

    static MemoryBuffer1D<byte, Stride1D.Dense> M(DeviceBuffer b) => ((Buffer)b).Mem;

    /// <inheritdoc/>
    public override DeviceBuffer Allocate(long bytes) => new Buffer(_accelerator.Allocate1D<byte>(Math.Max(bytes, 8)));

    static ArrayView<T> Typed<T>(DeviceBuffer b, long length) where T : unmanaged =>
        M(b).View.AsContiguous().Cast<T>().SubView(0, length);

    /// <inheritdoc/>
    public override void Write<T>(DeviceBuffer dst, T[] src, int count)
    {
        if (count > 0) Typed<T>(dst, count).CopyFromCPU(_accelerator.DefaultStream, new ReadOnlySpan<T>(src, 0, count));
    }

    /// <inheritdoc/>
    public override void Read<T>(DeviceBuffer src, T[] dst, int count)
    {
        if (count == 0) return;
        _accelerator.DefaultStream.Synchronize();
        Typed<T>(src, count).CopyToCPU(_accelerator.DefaultStream, new Span<T>(dst, 0, count));
        _accelerator.DefaultStream.Synchronize();
    }

    /// <inheritdoc/>
    public override void Zero(DeviceBuffer buffer, long bytes) => M(buffer).View.SubView(0, bytes).MemSetToZero(_accelerator.DefaultStream);

    static readonly MethodInfo TypedMethod = typeof(IlgpuDriver).GetMethod(nameof(Typed), BindingFlags.NonPublic | BindingFlags.Static)!;
    static readonly ConcurrentDictionary<Type, Func<DeviceBuffer, long, object>> Viewers = new();

    static object[] Map(object[] args)
    {
        var r = new object[args.Length];
        for (int i = 0; i < args.Length; i++)
            r[i] = args[i] is DeviceView v
                ? Viewers.GetOrAdd(v.Element, t =>
                {
                    var m = TypedMethod.MakeGenericMethod(t);
                    return (b, n) => m.Invoke(null, [b, n])!;
                })(v.Buffer, v.Length)
                : args[i];
        return r;
    }

    Kernel Get(KernelEntry k) => _kernels.GetOrAdd(k.Name, _ => k.Grouped ? _accelerator.LoadKernel(k.Method) : _accelerator.LoadAutoGroupedKernel(k.Method));

    /// <inheritdoc/>
    public override void Prepare(KernelEntry kernel)
    {
        if (kernel.NeedsWarp && !SupportsWarp) throw new NotSupportedException($"kernel {kernel.Name} needs warp shuffles; {Name} runs the shared-memory twin");
        Get(kernel);
    }

    /// <inheritdoc/>
    public override void Launch(KernelEntry kernel, int extent, params object[] args)
    {
        if (extent <= 0) return;
        var kn = Get(kernel);
        lock (_launchLock) kn.Launch(_accelerator.DefaultStream, extent, Map(args));
    }

    /// <inheritdoc/>
    public override void Launch(KernelEntry kernel, Index3D grid, Index3D group, params object[] args)
    {
        if (grid.Size <= 0) return;
        var kn = Get(kernel);
        lock (_launchLock) kn.Launch(_accelerator.DefaultStream, new KernelConfig(grid, group), Map(args));
    }

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
