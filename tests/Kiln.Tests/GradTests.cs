using Kiln.Kernels;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>Every differentiable op of the core against central finite differences in float64 (<see cref="GradCheck"/>).</summary>
public class GradTests
{
    static Tensor R(int seed, double lo, double hi, params int[] shape) => Tensor.Rand(new Shape(shape), new Generator((ulong)seed), lo, hi, DType.Float64);

    static void Ok(Func<Tensor[], Tensor> f, params Tensor[] inputs)
    {
        var r = GradCheck.Run(f, inputs);
        Assert.True(r.Passed, r.ToString());
    }

    public static IEnumerable<object[]> Binary => Enum.GetValues<BinaryOp>().Select(o => new object[] { o });

    [Theory, MemberData(nameof(Binary))]
    public void Binary_ops_with_broadcasting(BinaryOp op)
    {
        var a = R(2, 0.5, 2, 2, 3, 4);
        var b = R(3, 0.5, 2, 3, 1);
        if (op is BinaryOp.Max or BinaryOp.Min) b = b + 0.013;   // no exact ties
        Ok(x => Tensor.Binary(op, x[0], x[1]), a, b);
    }

    [Fact] public void Where_and_masked_fill() => Ok(x => Tensor.Where(x[0] > 0.0, x[0] * 3.0, x[1]).MaskedFill(x[1] > 0.5, 2), R(4, -1, 1, 3, 4), R(5, -1, 1, 4));
    [Fact] public void Clamp() => Ok(x => x[0].Clamp(-0.5, 0.7), R(6, -1, 1, 5, 3));
    [Fact] public void Sum_mean_over_axes() => Ok(x => x[0].Sum([0, 2], keepDim: true) * x[0].Mean(1).Sum(), R(7, -1, 1, 2, 3, 4));
    [Fact] public void Var_std() => Ok(x => x[0].Var(1) + x[0].Std([0], keepDim: true).Sum(), R(8, -1, 1, 3, 4));
    [Fact] public void Prod() => Ok(x => x[0].Prod([1]), R(9, 0.5, 1.5, 3, 4));
    [Fact] public void Amax_amin() => Ok(x => x[0].Amax([1]) - x[0].Amin(), R(10, -1, 1, 3, 5));
    [Fact] public void Max_with_indices() => Ok(x => x[0].Max(0).Values * 2.0, R(11, -1, 1, 4, 3));
    [Fact] public void LogSumExp() => Ok(x => x[0].LogSumExp(-1), R(12, -3, 3, 3, 5));
    [Fact] public void Norms() => Ok(x => x[0].Norm(1, [1]) + x[0].Norm(2) + x[0].Norm(3, [0]).Sum() + x[0].Norm(double.PositiveInfinity), R(13, 0.2, 1, 3, 4));
    [Fact] public void Cumsum() => Ok(x => x[0].Cumsum(1) * x[0], R(14, -1, 1, 3, 4));
    [Fact] public void Softmax_log_softmax() => Ok(x => x[0].Softmax(1) * x[0].LogSoftmax(0), R(15, -2, 2, 3, 4));
    [Fact] public void Layer_norm_affine() => Ok(x => x[0].LayerNorm(x[1], x[2]), R(16, -2, 2, 3, 5), R(17, 0.5, 1.5, 5), R(18, -1, 1, 5));
    [Fact] public void Layer_norm_plain() => Ok(x => x[0].LayerNorm(), R(19, -2, 2, 2, 6));
    [Fact] public void Rms_norm() => Ok(x => x[0].RmsNorm(x[1]), R(20, -2, 2, 3, 5), R(21, 0.5, 1.5, 5));
    [Fact] public void MatMul_batched_broadcast() => Ok(x => x[0].MatMul(x[1]), R(22, -1, 1, 2, 3, 4), R(23, -1, 1, 4, 5));
    [Fact] public void MatMul_vector_cases() => Ok(x => x[0].MatMul(x[1]).Sum() + x[1].MatMul(x[2]).Sum() + x[2].Dot(x[2]) + x[2].Outer(x[3]).Sum(), R(24, -1, 1, 4), R(25, -1, 1, 4, 3), R(26, -1, 1, 3), R(27, -1, 1, 2));
    [Fact] public void Views() => Ok(x => x[0].Permute(2, 0, 1).Reshape(4, 6).Slice(0, 1, null, 2).T.Unsqueeze(0).Squeeze(0).BroadcastTo(new Shape(2, 6, 2)), R(28, -1, 1, 2, 3, 4));
    [Fact] public void Gather_scatter_add() => Ok(x => x[0].Gather(1, Tensor.FromArray(new long[] { 0, 2, 2, 1, 0, 0 }, [3, 2])) + Tensor.Zeros(new Shape(3, 2), DType.Float64).ScatterAdd(0, Tensor.FromArray(new long[] { 2, 0, 2, 2 }, [2, 2]), x[1]).Narrow(0, 0, 3), R(29, -1, 1, 3, 3), R(30, -1, 1, 2, 2));
    [Fact] public void Scatter() => Ok(x => x[0].Scatter(1, Tensor.FromArray(new long[] { 0, 2 }, [2, 1]), x[1]), R(31, -1, 1, 2, 3), R(32, -1, 1, 2, 1));
    [Fact] public void Index_select_take() => Ok(x => x[0].IndexSelect(0, Tensor.FromArray(new long[] { 1, 1, 0 })).Sum(1) + x[0].Take(Tensor.FromArray(new long[] { 5, 0, 5 })), R(33, -1, 1, 2, 3));
    [Fact] public void Sort_topk() => Ok(x => x[0].Sort(1).Values * x[0] + x[0].TopK(2, 1).Values.Sum(), R(34, -1, 1, 3, 4));
    [Fact] public void Concat_stack_split_pad() => Ok(x => Tensor.Concat([x[0], x[1]], 1).Pad([1, 1]).Split(2, 1)[1].Sum() + Tensor.Stack([x[0], x[0]], 2).Sum(2).Sum(), R(35, -1, 1, 2, 3), R(36, -1, 1, 2, 2));
    [Fact] public void Dtype_round_trip() => Ok(x => x[0].To(DType.Float32).To(DType.Float64) * 0.0 + x[0].Clone().Contiguous(), R(37, -1, 1, 3));
}
