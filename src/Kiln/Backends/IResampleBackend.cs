using Kiln.Kernels;

namespace Kiln.Backends;

/// <summary>
/// Interpolation over planes of [D, H, W] (<see cref="ResampleArgs"/>: nearest, nearest-exact, linear, cubic), 2d grid
/// sampling (<see cref="GridSampleArgs"/>), ROI align (<see cref="RoiAlignArgs"/>), and their gradients.
/// </summary>
public interface IResampleBackend
{
    /// <summary>
    /// y [Planes, OD, OH, OW] = the interpolation of contiguous <paramref name="x"/> [Planes, ID, IH, IW] (its offset is
    /// read from the tensor, not from <paramref name="args"/>).
    /// </summary>
    void ResampleForward(Tensor x, ResampleArgs args, Tensor y);

    /// <summary>dx [Planes, ID, IH, IW] = the gradient of <see cref="ResampleForward"/> for contiguous output gradient <paramref name="g"/>.</summary>
    void ResampleBackward(Tensor g, ResampleArgs args, Tensor dx);

    /// <summary>
    /// y [N, C, OH, OW] = contiguous <paramref name="x"/> [N, C, IH, IW] sampled at contiguous <paramref name="grid"/>
    /// [N, OH, OW, 2] (offsets are read from the tensors, not from <paramref name="args"/>).
    /// </summary>
    void GridSampleForward(Tensor x, Tensor grid, GridSampleArgs args, Tensor y);

    /// <summary>
    /// The gradients of <see cref="GridSampleForward"/> for contiguous output gradient <paramref name="g"/>: with respect to
    /// the input into <paramref name="dx"/> and to the grid into <paramref name="dgrid"/>, each skipped when null.
    /// </summary>
    void GridSampleBackward(Tensor g, Tensor x, Tensor grid, GridSampleArgs args, Tensor? dx, Tensor? dgrid);

    /// <summary>
    /// y [K, C, PH, PW] = ROI align of contiguous <paramref name="x"/> [N, C, H, W] over contiguous <paramref name="boxes"/>
    /// [K, 5] (batch indices already checked to lie in [0, N); offsets are read from the tensors).
    /// </summary>
    void RoiAlignForward(Tensor x, Tensor boxes, RoiAlignArgs args, Tensor y);

    /// <summary>dx [N, C, H, W] = the gradient of <see cref="RoiAlignForward"/> with respect to its input, for contiguous output gradient <paramref name="g"/>.</summary>
    void RoiAlignBackward(Tensor g, Tensor boxes, RoiAlignArgs args, Tensor dx);
}
