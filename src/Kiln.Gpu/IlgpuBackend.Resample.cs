using Kiln.Backends;
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
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x], [y], (i, o) => ResampleForward(i[0]!, args, o[0]!)); break;
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
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [g], [dx], (i, o) => ResampleBackward(i[0]!, args, o[0]!)); break;
            default: throw Unsupported("interpolate_backward", g.DType);
        }
    });

    /// <inheritdoc/>
    public void GridSampleForward(Tensor x, Tensor grid, GridSampleArgs args, Tensor y) => Locked(() =>
    {
        args.XOff = Off(x);
        args.GOff = Off(grid);
        switch (x.DType)
        {
            case DType.Float32: GridSampleKernels<float, F32>.Forward.Launch(Driver, y.Numel, V<float>(x), V<float>(grid), V<float>(y), args); break;
            case DType.Float64: GridSampleKernels<double, F64>.Forward.Launch(Driver, y.Numel, V<double>(x), V<double>(grid), V<double>(y), args); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x, grid], [y], (i, o) => GridSampleForward(i[0]!, i[1]!, args, o[0]!)); break;
            default: throw Unsupported("grid_sample", x.DType);
        }
    });

    /// <inheritdoc/>
    public void GridSampleBackward(Tensor g, Tensor x, Tensor grid, GridSampleArgs args, Tensor? dx, Tensor? dgrid) => Locked(() =>
    {
        args.XOff = Off(x);
        args.GOff = Off(grid);
        switch (g.DType)
        {
            case DType.Float32: GridSampleBackwardT<float, F32>(g, x, grid, args, dx, dgrid); break;
            case DType.Float64: GridSampleBackwardT<double, F64>(g, x, grid, args, dx, dgrid); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [g, x, grid], [dx, dgrid], (i, o) => GridSampleBackward(i[0]!, i[1]!, i[2]!, args, o[0], o[1])); break;
            default: throw Unsupported("grid_sample_backward", g.DType);
        }
    });

    void GridSampleBackwardT<T, TF>(Tensor g, Tensor x, Tensor grid, GridSampleArgs args, Tensor? dx, Tensor? dgrid) where T : unmanaged where TF : struct, IFloat<T>
    {
        if (dx is not null) GridSampleKernels<T, TF>.BackwardInput.Launch(Driver, args.N * args.C, V<T>(g), V<T>(grid), V<T>(dx), args);
        if (dgrid is not null) GridSampleKernels<T, TF>.BackwardGrid.Launch(Driver, args.N * args.OH * args.OW, V<T>(g), V<T>(x), V<T>(grid), V<T>(dgrid), args);
    }

    /// <inheritdoc/>
    public void RoiAlignForward(Tensor x, Tensor boxes, RoiAlignArgs args, Tensor y) => Locked(() =>
    {
        args.XOff = Off(x);
        args.ROff = Off(boxes);
        switch (x.DType)
        {
            case DType.Float32: RoiAlignKernels<float, F32>.Forward.Launch(Driver, y.Numel, V<float>(x), V<float>(boxes), V<float>(y), args); break;
            case DType.Float64: RoiAlignKernels<double, F64>.Forward.Launch(Driver, y.Numel, V<double>(x), V<double>(boxes), V<double>(y), args); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x, boxes], [y], (i, o) => RoiAlignForward(i[0]!, i[1]!, args, o[0]!)); break;
            default: throw Unsupported("roi_align", x.DType);
        }
    });

    /// <inheritdoc/>
    public void RoiAlignBackward(Tensor g, Tensor boxes, RoiAlignArgs args, Tensor dx) => Locked(() =>
    {
        args.ROff = Off(boxes);
        switch (g.DType)
        {
            case DType.Float32: RoiAlignKernels<float, F32>.Backward.Launch(Driver, args.N * args.C, V<float>(g), V<float>(boxes), V<float>(dx), args); break;
            case DType.Float64: RoiAlignKernels<double, F64>.Backward.Launch(Driver, args.N * args.C, V<double>(g), V<double>(boxes), V<double>(dx), args); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [g, boxes], [dx], (i, o) => RoiAlignBackward(i[0]!, i[1]!, args, o[0]!)); break;
            default: throw Unsupported("roi_align_backward", g.DType);
        }
    });
}
