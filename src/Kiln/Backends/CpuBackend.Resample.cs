using Kiln.Kernels;

namespace Kiln.Backends;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void ResampleForward(Tensor x, ResampleArgs args, Tensor y)
    {
        args.XOff = O(x);
        switch (x.DType)
        {
            case DType.Float32: Kernels.Cpu.Resample.Forward(A<float>(x), args, A<float>(y)); break;
            case DType.Float64: Kernels.Cpu.Resample.Forward(A<double>(x), args, A<double>(y)); break;
            default: throw Unsupported("interpolate", x.DType);
        }
    }

    /// <inheritdoc/>
    public void ResampleBackward(Tensor g, ResampleArgs args, Tensor dx)
    {
        switch (g.DType)
        {
            case DType.Float32: Kernels.Cpu.Resample.Backward(A<float>(g), args, A<float>(dx)); break;
            case DType.Float64: Kernels.Cpu.Resample.Backward(A<double>(g), args, A<double>(dx)); break;
            default: throw Unsupported("interpolate_backward", g.DType);
        }
    }
}
