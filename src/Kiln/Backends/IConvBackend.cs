using System.Numerics;
using Kiln.Kernels;
using Kiln.Kernels.Cpu;

namespace Kiln.Backends;

/// <summary>
/// Convolution primitives over the geometry <see cref="ConvGeometry"/> (1-d and 2-d as 3-d with extent-1 axes). Every
/// tensor is contiguous, Float32, Float64 or a half dtype (computed in Float32), on this backend's device, with the element counts the geometry gives
/// (its shape may be anything with that count); outputs are preallocated and overwritten. The transposed convolution
/// is <see cref="ConvBackwardData"/>. The default bodies are the host path: they download the operands, run the CPU
/// kernels of kernels/Kiln.Kernels.Cpu/Conv.cs and upload the result, so a backend without conv kernels still runs
/// them (through host memory).
/// </summary>
public interface IConvBackend
{
    /// <summary>y [N, O, OD, OH, OW] = conv(x [N, C, ID, IH, IW], w [O, C/G, KD, KH, KW]) + bias [O] (bias may be null).</summary>
    void ConvForward(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y)
    {
        if (x.DType.IsHalf()) { HalfCompute.Run(Memory, [x, w, bias], [y], (i, o) => ConvForward(g, i[0]!, i[1]!, i[2], o[0]!)); return; }
        if (x.DType == DType.Float32) Host<float>(y, x, w, bias, (hx, hw, hb, hy) => Conv.Forward(g, hx, 0, hw, 0, hb, 0, hy, 0));
        else Host<double>(y, x, w, bias, (hx, hw, hb, hy) => Conv.Forward(g, hx, 0, hw, 0, hb, 0, hy, 0));
    }

    /// <summary>gx [N, C, ID, IH, IW] = the input gradient of <see cref="ConvForward"/> for gy [N, O, OD, OH, OW] (the transposed convolution of gy by w).</summary>
    void ConvBackwardData(ConvGeometry g, Tensor gy, Tensor w, Tensor gx)
    {
        if (gy.DType.IsHalf()) { HalfCompute.Run(Memory, [gy, w], [gx], (i, o) => ConvBackwardData(g, i[0]!, i[1]!, o[0]!)); return; }
        if (gy.DType == DType.Float32) Host<float>(gx, gy, w, null, (hgy, hw, _, hgx) => Conv.BackwardData(g, hgy, 0, hw, 0, hgx, 0));
        else Host<double>(gx, gy, w, null, (hgy, hw, _, hgx) => Conv.BackwardData(g, hgy, 0, hw, 0, hgx, 0));
    }

    /// <summary>gw [O, C/G, KD, KH, KW] = the weight gradient of <see cref="ConvForward"/> for x [N, C, ID, IH, IW] and gy [N, O, OD, OH, OW].</summary>
    void ConvBackwardWeight(ConvGeometry g, Tensor x, Tensor gy, Tensor gw)
    {
        if (x.DType.IsHalf()) { HalfCompute.Run(Memory, [x, gy], [gw], (i, o) => ConvBackwardWeight(g, i[0]!, i[1]!, o[0]!)); return; }
        if (x.DType == DType.Float32) Host<float>(gw, x, gy, null, (hx, hgy, _, hgw) => Conv.BackwardWeight(g, hx, 0, hgy, 0, hgw, 0));
        else Host<double>(gw, x, gy, null, (hx, hgy, _, hgw) => Conv.BackwardWeight(g, hx, 0, hgy, 0, hgw, 0));
    }

    // Halves run the float32 bodies on widened stand-ins (HalfCompute), which needs the backend's memory operations.
    private IMemoryBackend Memory => this as IMemoryBackend
        ?? throw new NotSupportedException($"{GetType().Name} implements {nameof(IConvBackend)} without {nameof(IMemoryBackend)}, so half tensors cannot be widened");

    // Downloads a, b and c (when given), runs body(a, b, c, out) on host arrays, and writes out into dst.
    private void Host<T>(Tensor dst, Tensor a, Tensor b, Tensor? c, Action<T[], T[], T[]?, T[]> body) where T : unmanaged, INumber<T>
    {
        var backend = this as IBackend
            ?? throw new NotSupportedException($"{GetType().Name} implements {nameof(IConvBackend)} without {nameof(IBackend)}, so the host path cannot move its tensors");
        var result = new T[dst.Numel];
        body((T[])backend.Download(a), (T[])backend.Download(b), c is null ? null : (T[])backend.Download(c), result);
        using var staged = new Tensor(backend.Upload(result, dst.DType), Layout.Contiguous(dst.Shape));
        backend.Copy(staged, dst);
    }
}
