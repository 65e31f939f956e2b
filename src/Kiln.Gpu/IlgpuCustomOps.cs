using Kiln.Kernels.Gpu;
using Kiln.Ops;

namespace Kiln.Gpu;

/// <summary>
/// What an ILGPU kernel of a custom op gets: the op's inputs and output (contiguous, starting at element 0 of their
/// storage) on one ILGPU device, the host to launch on, and device views of the tensors. Launches run with the device
/// to themselves (ops on one device are serialized).
/// </summary>
public sealed class IlgpuKernelContext<TParams>
{
    readonly IlgpuBackend _backend;

    internal IlgpuKernelContext(IlgpuBackend backend, KernelContext<TParams> ctx) { _backend = backend; Op = ctx; }

    /// <summary>The op's inputs, output and parameters.</summary>
    public KernelContext<TParams> Op { get; }
    /// <summary>The inputs.</summary>
    public IReadOnlyList<Tensor> Inputs => Op.Inputs;
    /// <summary>The output to overwrite.</summary>
    public Tensor Output => Op.Output;
    /// <summary>The op's parameters.</summary>
    public TParams Params => Op.Params;
    /// <summary>Where kernels launch: pass it to <c>kernel.Launch(ctx.Host, ...)</c>.</summary>
    public IKernelHost Host => _backend.Driver;
    /// <summary>The backend (its group sizes, its device).</summary>
    public IlgpuBackend Backend => _backend;

    /// <summary>The device array of <paramref name="t"/> (a tensor on this device) as an <c>ArrayView&lt;T&gt;</c> argument.</summary>
    /// <exception cref="ArgumentException">The tensor is on another device.</exception>
    /// <exception cref="InvalidOperationException"><typeparamref name="T"/> does not match the tensor's element size.</exception>
    public DeviceView<T> View<T>(Tensor t) where T : unmanaged => _backend.V<T>(t);
}

/// <summary>Gives custom ops ILGPU kernels: one launch body for CUDA, OpenCL and ILGPU's CPU accelerator.</summary>
public static class IlgpuCustomOps
{
    /// <summary>
    /// Runs <paramref name="op"/> on every ILGPU device (CUDA, OpenCL, ILGPU's CPU accelerator) through
    /// <paramref name="launch"/>, and lists <paramref name="kernels"/> in <see cref="KernelCatalog"/> so <c>kiln emit</c>
    /// and <c>kiln validate</c> compile them for every target.
    /// </summary>
    public static CustomOp<TParams> Ilgpu<TParams>(this CustomOp<TParams> op, Action<IlgpuKernelContext<TParams>> launch, params GpuKernel[] kernels)
    {
        ArgumentNullException.ThrowIfNull(op);
        ArgumentNullException.ThrowIfNull(launch);
        foreach (var k in kernels) KernelCatalog.Register(k);
        void Run(KernelContext<TParams> ctx)
        {
            var backend = ctx.Backend as IlgpuBackend ?? throw new NotSupportedException($"{op.Name}: device {ctx.Device} is not an ILGPU device");
            backend.Locked(() => launch(new IlgpuKernelContext<TParams>(backend, ctx)));
        }
        return op.Kernel(DeviceKind.Cuda, Run).Kernel(DeviceKind.OpenCL, Run).Kernel(DeviceKind.IlgpuCpu, Run);
    }
}
