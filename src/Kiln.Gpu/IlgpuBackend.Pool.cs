using Kiln.Backends;
using Kiln.Kernels;
using Kiln.Kernels.Gpu;

namespace Kiln.Gpu;

public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    public void PoolForward(Tensor x, PoolArgs args, Tensor y, Tensor? indices) => Locked(() =>
    {
        args.XOff = Off(x);
        switch (x.DType)
        {
            case DType.Float32: PoolT<float, F32>(x, args, y, indices); break;
            case DType.Float64: PoolT<double, F64>(x, args, y, indices); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x], [y, indices], (i, o) => PoolForward(i[0]!, args, o[0]!, o[1])); break;
            default: throw Unsupported("pool", x.DType);
        }
    });

    void PoolT<T, TF>(Tensor x, PoolArgs args, Tensor y, Tensor? indices) where T : unmanaged where TF : struct, IFloat<T>
    {
        // Average pooling writes no indices; the kernel still takes a view, so it gets the error buffer it never touches.
        var idx = indices is null ? ErrView : V<long>(indices);
        PoolKernels<T, TF>.Forward.Launch(Driver, y.Numel, V<T>(x), V<T>(y), idx, args);
    }

    /// <inheritdoc/>
    public void PoolBackward(Tensor g, Tensor? indices, PoolArgs args, Tensor dx) => Locked(() =>
    {
        switch (g.DType)
        {
            case DType.Float32: PoolBackwardT<float, F32>(g, indices, args, dx); break;
            case DType.Float64: PoolBackwardT<double, F64>(g, indices, args, dx); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [g, indices], [dx], (i, o) => PoolBackward(i[0]!, i[1], args, o[0]!)); break;
            default: throw Unsupported("pool_backward", g.DType);
        }
    });

    void PoolBackwardT<T, TF>(Tensor g, Tensor? indices, PoolArgs args, Tensor dx) where T : unmanaged where TF : struct, IFloat<T> =>
        PoolKernels<T, TF>.Backward.Launch(Driver, dx.Numel, V<T>(g), indices is null ? ErrView : V<long>(indices), V<T>(dx), args);
}
