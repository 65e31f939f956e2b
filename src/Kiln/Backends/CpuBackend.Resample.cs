using Kiln.Kernels;
using Kiln.Kernels.Cpu;

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
            case DType.Float16 or DType.BFloat16: ResampleForwardHalf(x, args, y); break;
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
            case DType.Float16 or DType.BFloat16: ResampleBackwardHalf(g, args, dx); break;
            default: throw Unsupported("interpolate_backward", g.DType);
        }
    }

    /// <inheritdoc/>
    public void GridSampleForward(Tensor x, Tensor grid, GridSampleArgs args, Tensor y)
    {
        args.XOff = O(x);
        args.GOff = O(grid);
        switch (x.DType)
        {
            case DType.Float32: GridSample.Forward(A<float>(x), A<float>(grid), args, A<float>(y)); break;
            case DType.Float64: GridSample.Forward(A<double>(x), A<double>(grid), args, A<double>(y)); break;
            case DType.Float16 or DType.BFloat16: GridSampleForwardHalf(x, grid, args, y); break;
            default: throw Unsupported("grid_sample", x.DType);
        }
    }

    /// <inheritdoc/>
    public void GridSampleBackward(Tensor g, Tensor x, Tensor grid, GridSampleArgs args, Tensor? dx, Tensor? dgrid)
    {
        args.XOff = O(x);
        args.GOff = O(grid);
        switch (g.DType)
        {
            case DType.Float32: GridSample.Backward(A<float>(g), A<float>(x), A<float>(grid), args, dx is null ? null : A<float>(dx), dgrid is null ? null : A<float>(dgrid)); break;
            case DType.Float64: GridSample.Backward(A<double>(g), A<double>(x), A<double>(grid), args, dx is null ? null : A<double>(dx), dgrid is null ? null : A<double>(dgrid)); break;
            case DType.Float16 or DType.BFloat16: GridSampleBackwardHalf(g, x, grid, args, dx, dgrid); break;
            default: throw Unsupported("grid_sample_backward", g.DType);
        }
    }

    /// <inheritdoc/>
    public void RoiAlignForward(Tensor x, Tensor boxes, RoiAlignArgs args, Tensor y)
    {
        args.XOff = O(x);
        args.ROff = O(boxes);
        switch (x.DType)
        {
            case DType.Float32: RoiAlign.Forward(A<float>(x), A<float>(boxes), args, A<float>(y)); break;
            case DType.Float64: RoiAlign.Forward(A<double>(x), A<double>(boxes), args, A<double>(y)); break;
            case DType.Float16 or DType.BFloat16: RoiAlignForwardHalf(x, boxes, args, y); break;
            default: throw Unsupported("roi_align", x.DType);
        }
    }

    /// <inheritdoc/>
    public void RoiAlignBackward(Tensor g, Tensor boxes, RoiAlignArgs args, Tensor dx)
    {
        args.ROff = O(boxes);
        switch (g.DType)
        {
            case DType.Float32: RoiAlign.Backward(A<float>(g), A<float>(boxes), args, A<float>(dx)); break;
            case DType.Float64: RoiAlign.Backward(A<double>(g), A<double>(boxes), args, A<double>(dx)); break;
            case DType.Float16 or DType.BFloat16: RoiAlignBackwardHalf(g, boxes, args, dx); break;
            default: throw Unsupported("roi_align_backward", g.DType);
        }
    }

    void ResampleForwardHalf(Tensor x, ResampleArgs args, Tensor y) => HalfCompute.Run(this, [x], [y], (i, o) => ResampleForward(i[0]!, args, o[0]!));
    void ResampleBackwardHalf(Tensor g, ResampleArgs args, Tensor dx) => HalfCompute.Run(this, [g], [dx], (i, o) => ResampleBackward(i[0]!, args, o[0]!));
    void GridSampleForwardHalf(Tensor x, Tensor grid, GridSampleArgs args, Tensor y) => HalfCompute.Run(this, [x, grid], [y], (i, o) => GridSampleForward(i[0]!, i[1]!, args, o[0]!));
    void GridSampleBackwardHalf(Tensor g, Tensor x, Tensor grid, GridSampleArgs args, Tensor? dx, Tensor? dgrid) => HalfCompute.Run(this, [g, x, grid], [dx, dgrid], (i, o) => GridSampleBackward(i[0]!, i[1]!, i[2]!, args, o[0], o[1]));
    void RoiAlignForwardHalf(Tensor x, Tensor boxes, RoiAlignArgs args, Tensor y) => HalfCompute.Run(this, [x, boxes], [y], (i, o) => RoiAlignForward(i[0]!, i[1]!, args, o[0]!));
    void RoiAlignBackwardHalf(Tensor g, Tensor boxes, RoiAlignArgs args, Tensor dx) => HalfCompute.Run(this, [g, boxes], [dx], (i, o) => RoiAlignBackward(i[0]!, i[1]!, args, o[0]!));
}
