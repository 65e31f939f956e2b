namespace Kiln.Methods.Regularizers;

/// <summary>
/// Expected gradients (Erion et al., "Improving performance of deep learning models with axiomatic attribution priors
/// and expected gradients"): EG_j(x) = E_{x'~D, α~U(0,1)}[(x_j − x'_j) ∂f/∂x_j (x' + α(x − x'))], estimated with k
/// reference samples x' and path positions α per input. With <c>createGraph</c> the attributions are differentiable
/// (double backprop), so an attribution prior Ω(EG) can be added to a training loss.
/// </summary>
public static class ExpectedGradients
{
    /// <summary>
    /// The k-sample estimate (1/k) Σ_s (x − x'_s) ⊙ ∇f(x'_s + α_s (x − x'_s)) for inputs <paramref name="x"/> [n, ...],
    /// references [n, k, ...] and path positions <paramref name="alphas"/> [n, k]. <paramref name="f"/> maps a batch
    /// [m, ...] to one scalar per row, [m] or [m, 1], and must treat rows independently (no batch statistics), since
    /// the per-row gradients are taken as the gradient of the batch sum. Returns attributions of x's shape. With
    /// <paramref name="createGraph"/> the result is differentiable in f's parameters (and in x and the references when
    /// they require grad).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The references, alphas or f's output do not match x.</exception>
    /// <exception cref="ArgumentException">x has no batch dimension.</exception>
    public static Tensor Attribute(Func<Tensor, Tensor> f, Tensor x, Tensor references, Tensor alphas, bool createGraph = false)
    {
        const string op = "expected_gradients";
        ArgumentNullException.ThrowIfNull(f);
        if (x.Rank < 1) throw new ArgumentException($"{op}: x must be a batch [n, ...], got a scalar", nameof(x));
        int n = x.Shape[0];
        int[] feat = x.Shape.Dims[1..].ToArray();
        if (references.Rank != x.Rank + 1 || references.Shape[0] != n || !references.Shape.Dims[2..].SequenceEqual(feat))
            throw new ShapeMismatchException(op, nameof(references), $"references must be [n, k, ...] = [{n}, k, {string.Join(", ", feat)}], got {references.Shape}");
        int k = references.Shape[1];
        if (k < 1) throw new ShapeMismatchException(op, nameof(references), $"references must hold at least one sample per input, got {references.Shape}");
        if (alphas.Shape != new Shape(n, k)) throw new ShapeMismatchException(op, nameof(alphas), new Shape(n, k), alphas.Shape);

        var xs = x.Unsqueeze(1);
        var diff = xs - references;                                   // [n, k, ...]
        var a = alphas.Reshape([n, k, .. Enumerable.Repeat(1, feat.Length)]);
        var z = (references + a * diff).Reshape([n * k, .. feat]);
        // A path point that does not depend on a grad-requiring tensor becomes its own leaf, so ∂f/∂z exists.
        var zi = z.RequiresGrad ? z : z.Detach().RequiresGrad_();
        var y = f(zi);
        if (y.Shape != new Shape(n * k) && y.Shape != new Shape(n * k, 1))
            throw new ShapeMismatchException(op, "f", $"f must map [{n * k}, ...] to [{n * k}] or [{n * k}, 1], got {y.Shape}");
        var g = Autograd.Grad([y.Sum()], [zi], createGraph: createGraph)[0].Reshape([n, k, .. feat]);
        return (diff * g).Mean(1);
    }

    /// <summary>
    /// <see cref="Attribute"/> with <paramref name="samples"/> references per input drawn uniformly (with replacement)
    /// from the rows of <paramref name="background"/> [m, ...] and α ~ U(0, 1), as in training with expected gradients.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">samples is below 1.</exception>
    /// <exception cref="ShapeMismatchException">The background's rows do not have x's feature shape, or it is empty.</exception>
    public static Tensor Sample(Func<Tensor, Tensor> f, Tensor x, Tensor background, int samples, Generator generator, bool createGraph = false)
    {
        const string op = "expected_gradients";
        ArgumentNullException.ThrowIfNull(generator);
        if (samples < 1) throw new ArgumentOutOfRangeException(nameof(samples), samples, $"{op}: samples must be at least 1");
        if (x.Rank < 1) throw new ArgumentException($"{op}: x must be a batch [n, ...], got a scalar", nameof(x));
        int n = x.Shape[0];
        int[] feat = x.Shape.Dims[1..].ToArray();
        if (background.Rank != x.Rank || background.Shape[0] < 1 || !background.Shape.Dims[1..].SequenceEqual(feat))
            throw new ShapeMismatchException(op, nameof(background), $"background must be [m >= 1, {string.Join(", ", feat)}], got {background.Shape}");
        var idx = Tensor.RandInt(new Shape(n * samples), 0, background.Shape[0], generator, device: background.Device);
        var refs = background.IndexSelect(0, idx).Reshape([n, samples, .. feat]);
        var alphas = Tensor.Rand(new Shape(n, samples), generator, dtype: x.DType, device: x.Device);
        return Attribute(f, x, refs, alphas, createGraph);
    }
}

/// <summary>
/// The attribution priors Ω(Φ) of Erion et al. for attributions Φ [n, ...] (one row per sample), added to a loss as
/// λ Ω(Φ). Each is written in tensor ops, so it is differentiable through attributions computed with createGraph.
/// </summary>
public static class AttributionPriors
{
    /// <summary>
    /// The pixel (total-variation) prior Σ_ℓ Σ_axes Σ |φ_{ℓ,i+1} − φ_{ℓ,i}|: summed absolute differences of neighbouring
    /// attributions along each of <paramref name="axes"/> (feature axes, 1-based like the tensor's; default: every
    /// feature axis), over all samples. Zero for attributions constant along those axes.
    /// </summary>
    /// <exception cref="ArgumentException">An axis is the batch axis or out of range.</exception>
    public static Tensor TotalVariation(Tensor attributions, int[]? axes = null)
    {
        const string op = "total_variation_prior";
        if (attributions.Rank < 2) throw new ShapeMismatchException(op, nameof(attributions), $"attributions must be [n, features...], got {attributions.Shape}");
        axes ??= Enumerable.Range(1, attributions.Rank - 1).ToArray();
        var total = Tensor.Zeros(new Shape(), attributions.DType, attributions.Device);
        foreach (int a0 in axes)
        {
            int a = a0 < 0 ? a0 + attributions.Rank : a0;
            if (a < 1 || a >= attributions.Rank) throw new ArgumentException($"{op}: axis {a0} is not a feature axis of attributions with shape {attributions.Shape}", nameof(axes));
            int len = attributions.Shape[a];
            if (len < 2) continue;
            total = total + (attributions.Narrow(a, 1, len - 1) - attributions.Narrow(a, 0, len - 1)).Abs().Sum();
        }
        return total;
    }

    /// <summary>
    /// The sparsity prior −Gini(φ̄) on the mean absolute attribution φ̄_j = (1/n) Σ_ℓ |φ_{ℓ,j}| over samples, with
    /// Gini(v) = Σ_i Σ_j |v_i − v_j| / (2 p Σ_i v_i) over its p features: minimising it concentrates attribution on
    /// few features.
    /// </summary>
    /// <exception cref="ShapeMismatchException">Attributions are not [n >= 1, p >= 1].</exception>
    public static Tensor GiniSparsity(Tensor attributions)
    {
        const string op = "gini_sparsity_prior";
        if (attributions.Rank != 2 || attributions.Shape[0] < 1 || attributions.Shape[1] < 1)
            throw new ShapeMismatchException(op, nameof(attributions), $"attributions must be [n >= 1, p >= 1], got {attributions.Shape}");
        int p = attributions.Shape[1];
        var v = attributions.Abs().Mean(0);
        var pair = (v.Unsqueeze(0) - v.Unsqueeze(1)).Abs().Sum();
        return -pair / (2.0 * p * v.Sum());
    }

    /// <summary>
    /// The graph prior φ̄ᵀ L φ̄ = ½ Σ_i Σ_j W_ij (φ̄_i − φ̄_j)² on the mean absolute attribution φ̄ [p], for a symmetric
    /// non-negative feature graph <paramref name="adjacency"/> W [p, p] with Laplacian L = diag(W1) − W: features
    /// connected in the graph are pushed towards equal attribution.
    /// </summary>
    /// <exception cref="ShapeMismatchException">Attributions are not [n >= 1, p] or the adjacency is not [p, p].</exception>
    public static Tensor GraphSmoothness(Tensor attributions, Tensor adjacency)
    {
        const string op = "graph_prior";
        if (attributions.Rank != 2 || attributions.Shape[0] < 1)
            throw new ShapeMismatchException(op, nameof(attributions), $"attributions must be [n >= 1, p], got {attributions.Shape}");
        int p = attributions.Shape[1];
        if (adjacency.Shape != new Shape(p, p)) throw new ShapeMismatchException(op, nameof(adjacency), new Shape(p, p), adjacency.Shape);
        var v = attributions.Abs().Mean(0);
        return 0.5 * (adjacency * (v.Unsqueeze(0) - v.Unsqueeze(1)).Square()).Sum();
    }
}
