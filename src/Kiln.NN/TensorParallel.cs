namespace Kiln.NN;

/// <summary>
/// The ranks that share the matrices of a tensor-parallel model (Kiln.Distributed's process groups implement it): each
/// holds a slice of every split weight, and partial results are summed across ranks.
/// </summary>
public interface ITensorParallel
{
    /// <summary>This process's rank, 0 .. <see cref="WorldSize"/> - 1.</summary>
    int Rank { get; }
    /// <summary>Number of ranks.</summary>
    int WorldSize { get; }
    /// <summary>
    /// Replaces <paramref name="tensor"/> on every rank by the elementwise sum over ranks; every rank gets the same bits.
    /// </summary>
    void AllReduce(Tensor tensor);
}

/// <summary>
/// Megatron-LM's tensor parallelism (Shoeybi et al. 2019, arXiv:1909.08053): the two communication operators that
/// surround a column-parallel / row-parallel pair of linear layers, and the slicing of full weights into a rank's shard.
/// </summary>
public static class TensorParallel
{
    /// <summary>
    /// Megatron's f: the identity forward (the input is replicated) and an all-reduce of the gradient in backward (each
    /// rank's column shard contributes part of the input's gradient). Put it before column-parallel layers.
    /// </summary>
    public static Tensor CopyToShards(this ITensorParallel tp, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(tp); ArgumentNullException.ThrowIfNull(x);
        if (tp.WorldSize == 1 || !x.RequiresGrad) return x;
        return Tensor.Custom("tp_copy", [x], xs => xs[0], g => [Reduced(tp, g)]);
    }

    /// <summary>
    /// Megatron's g: the sum over ranks of row-parallel partial outputs in forward, the identity in backward (the
    /// gradient of a sum reaches every addend unchanged).
    /// </summary>
    public static Tensor ReduceFromShards(this ITensorParallel tp, Tensor partial)
    {
        ArgumentNullException.ThrowIfNull(tp); ArgumentNullException.ThrowIfNull(partial);
        if (tp.WorldSize == 1) return partial;
        return Tensor.Custom("tp_reduce", [partial], xs => Reduced(tp, xs[0]), g => [g]);
    }

    // x [..., in] times w^T for w [out, in], as a matrix product over the flattened leading axes.
    internal static Tensor MatMulT(Tensor x, Tensor w)
    {
        var shape = x.Shape.ToArray();
        if (shape.Length == 0 || shape[^1] != w.Shape[1])
            throw new ShapeMismatchException("parallel_linear", "input", new Shape(w.Shape[1]), x.Shape, "the input's last axis must be the weight's in features");
        shape[^1] = w.Shape[0];
        return x.Reshape(-1, w.Shape[1]).MatMul(w.T).Reshape(shape);
    }

    static Tensor Reduced(ITensorParallel tp, Tensor x)
    {
        var y = x.Contiguous().Clone();
        tp.AllReduce(y);
        return y;
    }

    /// <summary>
    /// This rank's slice of <paramref name="full"/> along <paramref name="axis"/>: block <see cref="ITensorParallel.Rank"/>
    /// of <see cref="ITensorParallel.WorldSize"/> equal blocks, copied (so the full tensor can be freed).
    /// </summary>
    /// <exception cref="ArgumentException">The axis's extent does not divide by the world size.</exception>
    public static Tensor Shard(this ITensorParallel tp, Tensor full, int axis, string name = "tensor")
    {
        ArgumentNullException.ThrowIfNull(tp); ArgumentNullException.ThrowIfNull(full);
        return Shard(full, axis, tp.Rank, tp.WorldSize, name);
    }

    /// <summary>Block <paramref name="rank"/> of <paramref name="worldSize"/> of <paramref name="full"/> along <paramref name="axis"/>, copied.</summary>
    /// <exception cref="ArgumentException">The axis's extent does not divide by the world size.</exception>
    public static Tensor Shard(Tensor full, int axis, int rank, int worldSize, string name = "tensor")
    {
        ArgumentNullException.ThrowIfNull(full);
        int n = full.Shape[axis];
        if (n % worldSize != 0)
            throw new ArgumentException($"tensor parallel: {name} has {n} along axis {axis}, which does not split over {worldSize} ranks", nameof(full));
        return worldSize == 1 ? full : full.Narrow(axis, rank * (n / worldSize), n / worldSize).Contiguous().Clone();
    }
}

/// <summary>
/// A linear layer whose output features are split over the ranks (Megatron's column-parallel layer): rank r holds rows
/// r*out/W .. (r+1)*out/W of the weight and computes that slice of y = x W^T + b from the full input. Its output feeds a
/// <see cref="RowParallelLinear"/> (or an elementwise op first), so no communication happens in forward.
/// </summary>
public sealed class ColumnParallelLinear : Module<Tensor, Tensor>
{
    readonly ITensorParallel _tp;

    /// <summary>Builds this rank's shard of the linear layer with the full <paramref name="weight"/> [out, in] and <paramref name="bias"/> [out].</summary>
    /// <exception cref="ArgumentException">out does not divide by the world size, or the bias's length differs from out.</exception>
    public ColumnParallelLinear(ITensorParallel tp, Tensor weight, Tensor? bias = null)
    {
        ArgumentNullException.ThrowIfNull(tp); ArgumentNullException.ThrowIfNull(weight);
        if (weight.Rank != 2) throw new ArgumentException($"column-parallel linear: weight must be [out, in], got {weight.Shape}", nameof(weight));
        if (bias is not null && bias.Shape != new Shape(weight.Shape[0]))
            throw new ArgumentException($"column-parallel linear: bias has shape {bias.Shape}, expected [{weight.Shape[0]}]", nameof(bias));
        _tp = tp;
        Weight = RegisterParameter("weight", new Parameter(tp.Shard(weight, 0, "weight")));
        if (bias is not null) Bias = RegisterParameter("bias", new Parameter(tp.Shard(bias, 0, "bias")));
    }

    /// <summary>This rank's rows of the weight, [out / W, in].</summary>
    public Parameter Weight { get; }
    /// <summary>This rank's slice of the bias, or null.</summary>
    public Parameter? Bias { get; }

    /// <summary>This rank's slice of the output: [..., in] -> [..., out / W].</summary>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var y = TensorParallel.MatMulT(_tp.CopyToShards(input), Weight.Value);
        return Bias is null ? y : y + Bias.Value;
    }
}

/// <summary>
/// A linear layer whose input features are split over the ranks (Megatron's row-parallel layer): rank r holds columns
/// r*in/W .. (r+1)*in/W of the weight, multiplies its slice of the input, and the partial products are summed over the
/// ranks (one all-reduce); the bias is added once, after the sum. The output is replicated.
/// </summary>
public sealed class RowParallelLinear : Module<Tensor, Tensor>
{
    readonly ITensorParallel _tp;

    /// <summary>Builds this rank's shard of the linear layer with the full <paramref name="weight"/> [out, in] and <paramref name="bias"/> [out].</summary>
    /// <exception cref="ArgumentException">in does not divide by the world size, or the bias's length differs from out.</exception>
    public RowParallelLinear(ITensorParallel tp, Tensor weight, Tensor? bias = null)
    {
        ArgumentNullException.ThrowIfNull(tp); ArgumentNullException.ThrowIfNull(weight);
        if (weight.Rank != 2) throw new ArgumentException($"row-parallel linear: weight must be [out, in], got {weight.Shape}", nameof(weight));
        if (bias is not null && bias.Shape != new Shape(weight.Shape[0]))
            throw new ArgumentException($"row-parallel linear: bias has shape {bias.Shape}, expected [{weight.Shape[0]}]", nameof(bias));
        _tp = tp;
        Weight = RegisterParameter("weight", new Parameter(tp.Shard(weight, 1, "weight")));
        if (bias is not null) Bias = RegisterParameter("bias", new Parameter(bias.Clone()));
    }

    /// <summary>This rank's columns of the weight, [out, in / W].</summary>
    public Parameter Weight { get; }
    /// <summary>The full bias (replicated), or null.</summary>
    public Parameter? Bias { get; }

    /// <summary>The full output from this rank's slice of the input: [..., in / W] -> [..., out].</summary>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var y = _tp.ReduceFromShards(TensorParallel.MatMulT(input, Weight.Value));
        return Bias is null ? y : y + Bias.Value;
    }
}
