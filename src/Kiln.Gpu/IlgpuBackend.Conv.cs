using Kiln.Backends;
using ILGPU;
using Kiln.Kernels;
using Kiln.Kernels.Gpu;

namespace Kiln.Gpu;

public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    public void ConvForward(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y)
    {
        if (x.DType.IsHalf()) { HalfCompute.Run(this, [x, w, bias], [y], (i, o) => ConvForward(g, i[0]!, i[1]!, i[2], o[0]!)); return; }
        Launch(x.DType, "conv", new ConvArgs
        {
            Mode = 0, M = g.Og, N = g.OutVol, K = g.Cg * g.KVol, G = g.G,
            AOff = Off(w), ARs = g.Cg * g.KVol, AC1 = g.KVol,
            COff = Off(y), CBatch = g.O * g.OutVol, HasBias = bias is null ? 0 : 1, BiasOff = bias is null ? 0 : Off(bias),
        }.Forward(g, Off(x)), g.N * g.G, w, x, bias ?? y, y);
    }

    /// <inheritdoc/>
    public void ConvBackwardData(ConvGeometry g, Tensor gy, Tensor w, Tensor gx)
    {
        if (gy.DType.IsHalf()) { HalfCompute.Run(this, [gy, w], [gx], (i, o) => ConvBackwardData(g, i[0]!, i[1]!, o[0]!)); return; }
        Launch(gy.DType, "conv_transpose", new ConvArgs
        {
            Mode = 0, M = g.Cg, N = g.InVol, K = g.Og * g.KVol, G = g.G, KVol = g.KVol, KD = g.KD, KH = g.KH, KW = g.KW,
            AOff = Off(w), ARs = g.KVol, AC1 = g.Cg * g.KVol,
            SrcOff = Off(gy), SrcBatch = g.O * g.OutVol, SrcChan = g.OutVol, SrcCg = g.Og, SD = g.OD, SH = g.OH, SW = g.OW,
            TD = g.ID, TH = g.IH, TW = g.IW,
            MulD = 1, MulH = 1, MulW = 1, BaseD = g.PD, BaseH = g.PH, BaseW = g.PW,
            StepD = -g.DD, StepH = -g.DH, StepW = -g.DW, DivD = g.SD, DivH = g.SH, DivW = g.SW,
            COff = Off(gx), CBatch = g.C * g.InVol,
        }, g.N * g.G, w, gy, gx, gx);
    }

    /// <inheritdoc/>
    public void ConvBackwardWeight(ConvGeometry g, Tensor x, Tensor gy, Tensor gw)
    {
        if (x.DType.IsHalf()) { HalfCompute.Run(this, [x, gy], [gw], (i, o) => ConvBackwardWeight(g, i[0]!, i[1]!, o[0]!)); return; }
        Launch(x.DType, "conv_weight_grad", new ConvArgs
        {
            Mode = 1, M = g.Og, N = g.Cg * g.KVol, K = g.N * g.OutVol, G = g.G,
            AOff = Off(gy), ABs = g.O * g.OutVol, COff = Off(gw),
        }.Forward(g, Off(x)), g.G, gy, x, gw, gw);
    }

    void Launch(DType dtype, string op, ConvArgs args, int slices, Tensor a, Tensor src, Tensor bias, Tensor c) => Locked(() =>
    {
        if ((long)args.M * args.N * slices == 0) return;
        int tile = 4 * GemmGroup;
        var grid = new Index3D((args.N + tile - 1) / tile, (args.M + tile - 1) / tile, slices);
        var group = new Index3D(GemmGroup, GemmGroup, 1);
        switch (dtype)
        {
            case DType.Float32: ConvKernels<float, F32>.Tiled.Launch(Driver, grid, group, V<float>(a), V<float>(src), V<float>(bias), V<float>(c), args); break;
            case DType.Float64: ConvKernels<double, F64>.Tiled.Launch(Driver, grid, group, V<double>(a), V<double>(src), V<double>(bias), V<double>(c), args); break;
            default: throw Unsupported(op, dtype);
        }
    });
}

static class ConvArgsExtensions
{
    // The forward patches of x: source x, targets the output positions, source position q stride - pad + tap dilation.
    public static ConvArgs Forward(this ConvArgs a, ConvGeometry g, int xOff) => a with
    {
        KVol = g.KVol, KD = g.KD, KH = g.KH, KW = g.KW,
        SrcOff = xOff, SrcBatch = g.C * g.InVol, SrcChan = g.InVol, SrcCg = g.Cg, SD = g.ID, SH = g.IH, SW = g.IW,
        TD = g.OD, TH = g.OH, TW = g.OW,
        MulD = g.SD, MulH = g.SH, MulW = g.SW, BaseD = -g.PD, BaseH = -g.PH, BaseW = -g.PW,
        StepD = g.DD, StepH = g.DH, StepW = g.DW, DivD = 1, DivH = 1, DivW = 1,
    };
}
