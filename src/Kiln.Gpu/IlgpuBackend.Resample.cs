using Kiln.Kernels;
using Kiln.Kernels.Gpu;

namespace Kiln.Gpu;

public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    public void ResampleForward(Tensor x, ResampleArgs args, Tensor y) => Locked(() =>
    {
        args.XOff = Off(x);
        switch (x.DType)
        {
            case DType.Float32: ResampleKernels<float, F32>.Forward.Launch(Driver, y.Numel, V<float>(x), V<float>(y), args); break;
            case DType.Float64: ResampleKernels<double, F64>.Forward.Launch(Driver, y.Numel, V<double>(x), V<double>(y), args); break;
            default: throw Unsupported("interpolate", x.DType);
        }
    });

    /// <inheritdoc/>
    public void ResampleBackward(Tensor g, ResampleArgs args, Tensor dx) => Locked(() =>
    {
        switch (g.DType)
        {
            case DType.Float32: ResampleKernels<float, F32>.Backward.Launch(Driver, dx.Numel, V<float>(g), V<float>(dx), args); break;
            case DType.Float64: ResampleKernels<double, F64>.Backward.Launch(Driver, dx.Numel, V<double>(g), V<double>(dx), args); break;
            default: throw Unsupported("interpolate_backward", g.DType);
        }
    });
}
