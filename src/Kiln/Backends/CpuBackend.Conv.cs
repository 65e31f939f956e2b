using Kiln.Kernels;

namespace Kiln.Backends;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void ConvForward(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y)
    {
        switch (x.DType)
        {
            case DType.Float32: Kernels.Cpu.Conv.Forward(g, A<float>(x), O(x), A<float>(w), O(w), bias is null ? null : A<float>(bias), bias is null ? 0 : O(bias), A<float>(y), O(y)); break;
            case DType.Float64: Kernels.Cpu.Conv.Forward(g, A<double>(x), O(x), A<double>(w), O(w), bias is null ? null : A<double>(bias), bias is null ? 0 : O(bias), A<double>(y), O(y)); break;
            case DType.Float16 or DType.BFloat16: ConvForwardHalf(g, x, w, bias, y); break;
            default: throw Unsupported("conv", x.DType);
        }
    }

    /// <inheritdoc/>
    public void ConvBackwardData(ConvGeometry g, Tensor gy, Tensor w, Tensor gx)
    {
        switch (gy.DType)
        {
            case DType.Float32: Kernels.Cpu.Conv.BackwardData(g, A<float>(gy), O(gy), A<float>(w), O(w), A<float>(gx), O(gx)); break;
            case DType.Float64: Kernels.Cpu.Conv.BackwardData(g, A<double>(gy), O(gy), A<double>(w), O(w), A<double>(gx), O(gx)); break;
            case DType.Float16 or DType.BFloat16: ConvBackwardDataHalf(g, gy, w, gx); break;
            default: throw Unsupported("conv_transpose", gy.DType);
        }
    }

    /// <inheritdoc/>
    public void ConvBackwardWeight(ConvGeometry g, Tensor x, Tensor gy, Tensor gw)
    {
        switch (x.DType)
        {
            case DType.Float32: Kernels.Cpu.Conv.BackwardWeight(g, A<float>(x), O(x), A<float>(gy), O(gy), A<float>(gw), O(gw)); break;
            case DType.Float64: Kernels.Cpu.Conv.BackwardWeight(g, A<double>(x), O(x), A<double>(gy), O(gy), A<double>(gw), O(gw)); break;
            case DType.Float16 or DType.BFloat16: ConvBackwardWeightHalf(g, x, gy, gw); break;
            default: throw Unsupported("conv_weight_grad", x.DType);
        }
    }

    void ConvForwardHalf(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y) => HalfCompute.Run(this, [x, w, bias], [y], (i, o) => ConvForward(g, i[0]!, i[1]!, i[2], o[0]!));
    void ConvBackwardDataHalf(ConvGeometry g, Tensor gy, Tensor w, Tensor gx) => HalfCompute.Run(this, [gy, w], [gx], (i, o) => ConvBackwardData(g, i[0]!, i[1]!, o[0]!));
    void ConvBackwardWeightHalf(ConvGeometry g, Tensor x, Tensor gy, Tensor gw) => HalfCompute.Run(this, [x, gy], [gw], (i, o) => ConvBackwardWeight(g, i[0]!, i[1]!, o[0]!));
}
