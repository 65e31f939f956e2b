using Kiln.Kernels;

namespace Kiln.Backends;

/// <summary>Interpolation over planes of [D, H, W] (<see cref="ResampleArgs"/>: nearest, nearest-exact, linear, cubic) and its input gradient.</summary>
public interface IResampleBackend
{
    /// <summary>
    /// y [Planes, OD, OH, OW] = the interpolation of contiguous <paramref name="x"/> [Planes, ID, IH, IW] (its offset is
    /// read from the tensor, not from <paramref name="args"/>).
    /// </summary>
    void ResampleForward(Tensor x, ResampleArgs args, Tensor y);

    /// <summary>dx [Planes, ID, IH, IW] = the gradient of <see cref="ResampleForward"/> for contiguous output gradient <paramref name="g"/>.</summary>
    void ResampleBackward(Tensor g, ResampleArgs args, Tensor dx);
}
