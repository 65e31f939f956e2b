using Kiln.Kernels;

namespace Kiln.Backends;

/// <summary>
/// Pooling over planes of [D, H, W] (1d and 2d pooling pass unit extents): max with the flat index of each maximum,
/// average, and their adaptive forms (<see cref="PoolArgs"/>), and the input gradient of each.
/// </summary>
public interface IPoolBackend
{
    /// <summary>
    /// y [Planes, OD, OH, OW] = the pooling of contiguous <paramref name="x"/> [Planes, ID, IH, IW] (its offset is read from
    /// the tensor, not from <paramref name="args"/>); <paramref name="indices"/> (Int64, y's shape) receives the flat
    /// index in the input plane of each maximum and is null for average pooling.
    /// </summary>
    void PoolForward(Tensor x, PoolArgs args, Tensor y, Tensor? indices);

    /// <summary>
    /// dx [Planes, ID, IH, IW] = the gradient of <see cref="PoolForward"/> for output gradient <paramref name="g"/> (contiguous, y's
    /// shape) and, for max pooling, the <paramref name="indices"/> the forward pass wrote (null for average pooling).
    /// </summary>
    void PoolBackward(Tensor g, Tensor? indices, PoolArgs args, Tensor dx);
}
