using Kiln.Kernels.Cpu;

namespace Kiln.Backends;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void CausalConv(Tensor x, Tensor k, int rows, int channels, int len, int taps, Tensor y)
    {
        switch (x.DType)
        {
            case DType.Float32: SequenceConv.Causal(A<float>(x), O(x), A<float>(k), O(k), rows, channels, len, taps, A<float>(y), O(y)); break;
            case DType.Float64: SequenceConv.Causal(A<double>(x), O(x), A<double>(k), O(k), rows, channels, len, taps, A<double>(y), O(y)); break;
            case DType.Float16 or DType.BFloat16: CausalConvHalf(x, k, rows, channels, len, taps, y); break;
            default: throw Unsupported("causal_conv", x.DType);
        }
    }

    /// <inheritdoc/>
    public void CausalLinearAttention(Tensor q, Tensor k, Tensor v, Tensor y)
    {
        int batch = q.Shape[0], len = q.Shape[1], d = q.Shape[2], dv = v.Shape[2];
        switch (q.DType)
        {
            case DType.Float32: LinearAttentionScan.Causal(A<float>(q), O(q), A<float>(k), O(k), A<float>(v), O(v), batch, len, d, dv, A<float>(y), O(y)); break;
            case DType.Float64: LinearAttentionScan.Causal(A<double>(q), O(q), A<double>(k), O(k), A<double>(v), O(v), batch, len, d, dv, A<double>(y), O(y)); break;
            case DType.Float16 or DType.BFloat16: CausalLinearAttentionHalf(q, k, v, y); break;
            default: throw Unsupported("causal_linear_attention", q.DType);
        }
    }

    void CausalConvHalf(Tensor x, Tensor k, int rows, int channels, int len, int taps, Tensor y) => HalfCompute.Run(this, [x, k], [y], (i, o) => CausalConv(i[0]!, i[1]!, rows, channels, len, taps, o[0]!));
    void CausalLinearAttentionHalf(Tensor q, Tensor k, Tensor v, Tensor y) => HalfCompute.Run(this, [q, k, v], [y], (i, o) => CausalLinearAttention(i[0]!, i[1]!, i[2]!, o[0]!));
}
