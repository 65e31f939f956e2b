using Kiln.Kernels;
using Kiln.Kernels.Cpu;

namespace Kiln.Backends;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void PoolForward(Tensor x, PoolArgs args, Tensor y, Tensor? indices)
    {
        args.XOff = O(x);
        long[]? idx = indices is null ? null : A<long>(indices);
        switch (x.DType)
        {
            case DType.Float32: Kernels.Cpu.Pool.Forward(A<float>(x), args, A<float>(y), idx); break;
            case DType.Float64: Kernels.Cpu.Pool.Forward(A<double>(x), args, A<double>(y), idx); break;
            case DType.Float16 or DType.BFloat16: PoolForwardHalf(x, args, y, indices); break;
            default: throw Unsupported("pool", x.DType);
        }
    }

    /// <inheritdoc/>
    public void PoolBackward(Tensor g, Tensor? indices, PoolArgs args, Tensor dx)
    {
        // Average pooling reads no indices; an empty array stands in.
        long[] idx = indices is null ? [] : A<long>(indices);
        switch (g.DType)
        {
            case DType.Float32: Kernels.Cpu.Pool.Backward(A<float>(g), idx, args, A<float>(dx)); break;
            case DType.Float64: Kernels.Cpu.Pool.Backward(A<double>(g), idx, args, A<double>(dx)); break;
            case DType.Float16 or DType.BFloat16: PoolBackwardHalf(g, indices, args, dx); break;
            default: throw Unsupported("pool_backward", g.DType);
        }
    }

    void PoolForwardHalf(Tensor x, PoolArgs args, Tensor y, Tensor? indices) => HalfCompute.Run(this, [x], [y, indices], (i, o) => PoolForward(i[0]!, args, o[0]!, o[1]));
    void PoolBackwardHalf(Tensor g, Tensor? indices, PoolArgs args, Tensor dx) => HalfCompute.Run(this, [g, indices], [dx], (i, o) => PoolBackward(i[0]!, i[1], args, o[0]!));
}
