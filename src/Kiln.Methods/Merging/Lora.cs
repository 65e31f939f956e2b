using Kiln.NN;

namespace Kiln.Methods.Merging;

/// <summary>
/// A LoRA adapter around a frozen linear layer (Hu et al., 2021): y = x W^T + b + (alpha / r) (x A^T) B^T with trainable
/// A [r, in] (Kaiming-uniform) and B [out, r] (zeros, so the adapter starts as the base layer). Only A and B are
/// parameters; <see cref="MergedWeight"/> folds the adapter back, W' = W + (alpha / r) B A, and a plain linear layer with
/// W' computes the same outputs.
/// </summary>
public sealed class LoraLinear : Module<Tensor, Tensor>
{
    readonly Tensor _weight;
    readonly Tensor? _bias;

    /// <summary>Wraps <paramref name="weight"/> [out, in] and optional <paramref name="bias"/> [out] (both frozen: detached) with a rank-<paramref name="rank"/> adapter.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The rank is not in 1..min(out, in), or alpha is not positive and finite.</exception>
    /// <exception cref="ShapeMismatchException">The weight is not a matrix, or the bias is not [out].</exception>
    public LoraLinear(Tensor weight, Tensor? bias, int rank, double alpha, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.Rank != 2) throw new ShapeMismatchException("lora", nameof(weight), $"weight has shape {weight.Shape}; it must be [out, in]");
        int outF = weight.Shape[0], inF = weight.Shape[1];
        if (bias is not null && (bias.Rank != 1 || bias.Shape[0] != outF))
            throw new ShapeMismatchException("lora", nameof(bias), $"bias has shape {bias.Shape}; it must be [{outF}]");
        if (rank < 1 || rank > Math.Min(outF, inF)) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"lora: rank must lie in 1..{Math.Min(outF, inF)}");
        if (!(alpha > 0 && double.IsFinite(alpha))) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "lora: alpha must be positive and finite");
        _weight = weight.Detach(); _bias = bias?.Detach();
        Scaling = alpha / rank;
        A = RegisterParameter("lora_A", new Parameter(Init.KaimingUniform_(Tensor.Empty([rank, inF], weight.DType, weight.Device), a: Math.Sqrt(5), generator: generator)));
        B = RegisterParameter("lora_B", new Parameter(Tensor.Zeros([outF, rank], weight.DType, weight.Device)));
    }

    /// <summary>The down projection A [r, in].</summary>
    public Parameter A { get; }
    /// <summary>The up projection B [out, r] (zeros at creation).</summary>
    public Parameter B { get; }
    /// <summary>alpha / r.</summary>
    public double Scaling { get; }

    /// <inheritdoc/>
    /// <exception cref="ShapeMismatchException">The last dimension of the input is not the layer's input width.</exception>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank == 0 || input.Shape[-1] != _weight.Shape[1])
            throw new ShapeMismatchException("lora", nameof(input), $"input has shape {input.Shape}; its last dimension must be {_weight.Shape[1]}");
        return Tensor.Linear(input, _weight, _bias) + Tensor.Linear(Tensor.Linear(input, A.Value), B.Value) * Scaling;
    }

    /// <summary>W + (alpha / r) B A: the weight of a plain linear layer with the same outputs (detached).</summary>
    public Tensor MergedWeight()
    {
        using var _ = Autograd.NoGrad();
        return _weight + B.Value.MatMul(A.Value) * Scaling;
    }

    /// <summary>The frozen bias, or null.</summary>
    public Tensor? Bias => _bias;
}
