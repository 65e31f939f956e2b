namespace Kiln.NN;

/// <summary>
/// Weight conditioning (Saratchandran, Wang and Lucey, "Weight Conditioning for Smooth Optimization of Neural Networks",
/// ECCV 2024): a weight matrix is used through a fixed conditioner matrix that narrows the gap between its extreme
/// singular values, W = G V (or V G), where V is trained and G is not.
/// </summary>
public static class WeightConditioning
{
    /// <summary>kappa(W) = sigma_max / sigma_min of a matrix [m, n] over its min(m, n) singular values (infinity when sigma_min is 0).</summary>
    /// <exception cref="ArgumentException">The tensor is not a non-empty matrix.</exception>
    public static double ConditionNumber(Tensor w)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (w.Rank != 2 || w.Numel == 0) throw new ArgumentException($"condition_number: needs a non-empty matrix, got shape {w.Shape}", nameof(w));
        var s = w.Detach().To(DType.Float64).Svd().S.ToArray<double>();
        double max = s.Max(), min = s.Min();
        return min == 0 ? double.PositiveInfinity : max / min;
    }

    /// <summary>
    /// The conditioner that makes <paramref name="weight"/> [out, in] perfectly conditioned while keeping its scale:
    /// on the smaller side k = min(out, in), G = c (V V^T)^(-1/2) [out, out] when out &lt;= in (W = G V), else
    /// G = c (V^T V)^(-1/2) [in, in] (W = V G), with c the mean singular value of V; every singular value of W is then c.
    /// </summary>
    /// <exception cref="ArgumentException">The weight is not a matrix, or is rank deficient (some singular value is 0).</exception>
    public static Tensor InverseRootConditioner(Tensor weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.Rank != 2 || weight.Numel == 0) throw new ArgumentException($"weight_conditioning: the weight must be a non-empty matrix, got shape {weight.Shape}", nameof(weight));
        var v = weight.Detach().To(DType.Float64);
        var s = v.Svd().S.ToArray<double>();
        if (s.Min() <= 1e-12 * s.Max())
            throw new ArgumentException($"weight_conditioning: the weight of shape {weight.Shape} is rank deficient (singular values {s.Min():G3} to {s.Max():G3}); no conditioner makes it well conditioned", nameof(weight));
        var gram = weight.Shape[0] <= weight.Shape[1] ? v.MatMul(v.T) : v.T.MatMul(v);
        gram = (gram + gram.T) * 0.5;
        return (gram.SymmetricMatrixPower(-0.5) * s.Average()).To(weight.DType).To(weight.Device);
    }
}

/// <summary>
/// A linear layer with a conditioned weight: y = x W^T + b with W = G V when out &lt;= in (G [out, out]) or W = V G
/// otherwise (G [in, in]); V [out, in] is the trained parameter (PyTorch's Linear initialization) and the conditioner G
/// is a fixed buffer. Gradients reach V through the product, dL/dV = G^T dL/dW (or dL/dW G^T).
/// </summary>
public sealed class ConditionedLinear : Module<Tensor, Tensor>
{
    /// <summary>
    /// Creates the layer. With <paramref name="conditioner"/> null it is
    /// <see cref="WeightConditioning.InverseRootConditioner"/> of the initial V, so the initial W has condition number 1.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive.</exception>
    /// <exception cref="ShapeMismatchException">The conditioner is not [min(out, in), min(out, in)].</exception>
    public ConditionedLinear(int inFeatures, int outFeatures, Tensor? conditioner = null, bool bias = true, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        // V and b start as a Linear's (and carry its argument checks); the Linear itself is not kept.
        var lin = new Linear(inFeatures, outFeatures, bias, generator, dtype, device);
        InFeatures = inFeatures; OutFeatures = outFeatures;
        Weight = RegisterParameter("weight", lin.Weight);
        if (lin.Bias is not null) Bias = RegisterParameter("bias", lin.Bias);
        int k = Math.Min(inFeatures, outFeatures);
        if (conditioner is not null && conditioner.Shape != new Shape(k, k))
            throw new ShapeMismatchException("conditioned_linear", nameof(conditioner), $"the conditioner has shape {conditioner.Shape}; a [{outFeatures}, {inFeatures}] weight needs [{k}, {k}]");
        Conditioner = RegisterBuffer("conditioner", (conditioner ?? WeightConditioning.InverseRootConditioner(Weight)).Detach().To(dtype).To(Weight.Device).Contiguous());
    }

    /// <summary>Input width.</summary>
    public int InFeatures { get; }
    /// <summary>Output width.</summary>
    public int OutFeatures { get; }
    /// <summary>The trained V [out, in].</summary>
    public Parameter Weight { get; }
    /// <summary>b [out], or null without bias.</summary>
    public Parameter? Bias { get; }
    /// <summary>The fixed conditioner G [k, k], k = min(out, in).</summary>
    public Tensor Conditioner { get; }
    /// <summary>The weight the layer applies, G V or V G [out, in] (in the graph, so it carries V's gradient).</summary>
    public Tensor EffectiveWeight => OutFeatures <= InFeatures ? Conditioner.MatMul(Weight) : Weight.MatMul(Conditioner);

    /// <inheritdoc/>
    /// <exception cref="ShapeMismatchException">The last dimension of the input is not <see cref="InFeatures"/>.</exception>
    public override Tensor Forward(Tensor input)
    {
        if (input.Rank == 0 || input.Shape[-1] != InFeatures)
            throw new ShapeMismatchException("conditioned_linear", nameof(input), $"input has shape {input.Shape}; its last dimension must be {InFeatures}");
        return Tensor.Linear(input, EffectiveWeight, Bias);
    }
}
