using Kiln.Kernels;

namespace Kiln.Ops;

/// <summary>
/// The sequence family's definitions: causal linear attention's prefix sum (<see cref="Tensor.CausalLinearAttention"/>)
/// on cases [B, T, d] (v [B, T, dv] with a random dv), and causal long convolution (<see cref="Tensor.CausalConv1d"/>,
/// the convolution form of a state-space layer) and its gradients, on cases [..., C, L] with a random number of taps from 0 to past L, against
/// the float64 reference within the scaled budget of an n-term sum (n the taps summed into an element). The gradient is
/// checked in Float32 and Float64 only: its kernel part sums per-row convolutions over the batch, so a half dtype rounds
/// twice there by construction.
/// </summary>
public static class SequenceOps
{
    /// <summary>Every definition of the family.</summary>
    public static IReadOnlyList<OpDefinition> All { get; } = [new CausalConvDefinition(), new CausalConvGradDefinition(), new CausalLinearAttentionDefinition()];

    // One problem from a case: the input, a [C, taps] kernel and the row count.
    static (Tensor X, Tensor K, int Rows, int Channels, int Len, int Taps) Problem(OpDefinition op, OpCase c, DType dtype, Device device)
    {
        int channels = c.Shape[^2], len = c.Shape[^1];
        int taps = new Random((int)(c.Seed % int.MaxValue)).Next(0, len + 3);
        var x = op.Input(c, dtype, device);
        var k = OpDefinition.Input([channels, taps], InputView.Contiguous, c.Seed + 1, dtype, device, op.Domain);
        return (x, k, len == 0 ? 0 : (int)(x.Numel / len), channels, len, taps);
    }

    /// <summary>The forward convolution of the case's input (any layout).</summary>
    sealed class CausalConvDefinition() : OpDefinition("sequence.causal_conv", "sequence", DTypeLists.Floats, new(-1, 1), new Tolerance(4))
    {
        public override int MinRank => 2;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var (x, k, rows, channels, len, taps) = Problem(this, c, dtype, device);
            var e = Reference.CausalConv(x.Contiguous().ToDoubleArray(), k.ToDoubleArray(), rows, channels, len, taps);
            return Tolerance.Check(e, Tensor.CausalConv1d(x, k).ToDoubleArray(), dtype, c, Name, terms: Math.Min(taps, len));
        }

        /// <summary>Special values planted in the input of [2, 3, 12] by 4 taps that include an exact zero (an infinity times it is NaN).</summary>
        public override IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false)
        {
            int[] shape = [2, 3, 12];
            var ordinary = new Domain(Domain.Low, Domain.High);
            var kd = Input([3, 4], InputView.Contiguous, 31, dtype, Device.Cpu, ordinary).ToDoubleArray();
            kd[5] = 0;
            var k = Tensor.FromArray(kd, new Shape(3, 4)).To(dtype).To(device);
            var xd = Input(shape, InputView.Contiguous, 32, dtype, Device.Cpu, ordinary).ToDoubleArray();
            return SpecialValues.Planted(this, device, dtype, relaxed, xd, shape, v => Reference.CausalConv(v, kd, 6, 3, 12, 4), x => Tensor.CausalConv1d(x, k), 4);
        }
    }

    /// <summary>The input and kernel gradients through autodiff (both are the convolution run again on reversed rows).</summary>
    sealed class CausalConvGradDefinition() : OpDefinition("sequence.causal_conv_grad", "sequence", [DType.Float32, DType.Float64], new(-1, 1), new Tolerance(4))
    {
        public override int MinRank => 2;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var (x0, k0, rows, channels, len, taps) = Problem(this, c, dtype, device);
            var gy = Input(c.Shape, InputView.Contiguous, c.Seed + 2, dtype, device, Domain);
            var (x, k) = (x0.Detach().RequiresGrad_(), k0.Detach().RequiresGrad_());
            Tensor.CausalConv1d(x, k).Backward(gy);
            var (gx, gk) = Reference.CausalConvBackward(x0.Contiguous().ToDoubleArray(), k0.ToDoubleArray(), gy.ToDoubleArray(), rows, channels, len, taps);
            var rx = Tolerance.Check(gx, x.Grad!.ToDoubleArray(), dtype, c, Name + " input", terms: Math.Min(taps, len));
            if (!rx.Pass) return rx;
            return Tolerance.Check(gk, k.Grad!.ToDoubleArray(), dtype, c, Name + " kernel", terms: Math.Max(rows / Math.Max(channels, 1) * len, 1));
        }
    }

    /// <summary>Causal linear attention of the case's q (any layout) with random k and v, against the float64 pairwise-score reference.</summary>
    sealed class CausalLinearAttentionDefinition() : OpDefinition("sequence.causal_linear_attention", "sequence", DTypeLists.Floats, new(-1, 1), new Tolerance(4))
    {
        public override int MinRank => 3;
        public override int MaxRank => 3;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            int b = c.Shape[0], t = c.Shape[1], d = c.Shape[2], dv = new Random((int)(c.Seed % int.MaxValue)).Next(1, 6);
            var q = Input(c, dtype, device);
            var k = Input([b, t, d], InputView.Contiguous, c.Seed + 1, dtype, device, Domain);
            var v = Input([b, t, dv], InputView.Contiguous, c.Seed + 2, dtype, device, Domain);
            var e = Reference.CausalLinearAttention(q.Contiguous().ToDoubleArray(), k.ToDoubleArray(), v.ToDoubleArray(), b, t, d, dv);
            return Tolerance.Check(e, Tensor.CausalLinearAttention(q, k, v).ToDoubleArray(), dtype, c, Name, terms: Math.Max(t * d, 1));
        }
    }
}
