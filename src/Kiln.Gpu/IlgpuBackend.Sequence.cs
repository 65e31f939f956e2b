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

    /// <inheritdoc/>
    public void CausalLinearAttention(Tensor q, Tensor k, Tensor v, Tensor y) => Locked(() =>
    {
        int len = q.Shape[1], d = q.Shape[2], dv = v.Shape[2];
        if (y.Numel == 0) return;
        switch (q.DType)
        {
            case DType.Float32: LinearAttentionKernels<float, F32>.Causal.Launch(Driver, (int)y.Numel, V<float>(q), Off(q), V<float>(k), Off(k), V<float>(v), Off(v), V<float>(y), Off(y), len, d, dv); break;
            case DType.Float64: LinearAttentionKernels<double, F64>.Causal.Launch(Driver, (int)y.Numel, V<double>(q), Off(q), V<double>(k), Off(k), V<double>(v), Off(v), V<double>(y), Off(y), len, d, dv); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [q, k, v], [y], (i, o) => CausalLinearAttention(i[0]!, i[1]!, i[2]!, o[0]!)); break;
            default: throw Unsupported("causal_linear_attention", q.DType);
        }
    });
}
