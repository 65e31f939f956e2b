using Kiln.Backends;
using Kiln.Kernels.Gpu;

namespace Kiln.Gpu;

public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    public void CausalConv(Tensor x, Tensor k, int rows, int channels, int len, int taps, Tensor y) => Locked(() =>
    {
        if (rows * len == 0) return;
        switch (x.DType)
        {
            case DType.Float32: SequenceKernels<float, F32>.CausalConv.Launch(Driver, rows * len, V<float>(x), Off(x), V<float>(k), Off(k), V<float>(y), Off(y), channels, len, taps); break;
            case DType.Float64: SequenceKernels<double, F64>.CausalConv.Launch(Driver, rows * len, V<double>(x), Off(x), V<double>(k), Off(k), V<double>(y), Off(y), channels, len, taps); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x, k], [y], (i, o) => CausalConv(i[0]!, i[1]!, rows, channels, len, taps, o[0]!)); break;
            default: throw Unsupported("causal_conv", x.DType);
        }
    });
}
