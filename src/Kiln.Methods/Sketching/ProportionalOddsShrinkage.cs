namespace Kiln.Methods.Sketching;

/// <summary>
/// PRESTO (Faletto and Bien, "Predicting Rare Events by Shrinking Towards Proportional Odds", ICML 2023): for an
/// ordinal outcome y ∈ {0, …, K−1}, the cumulative logit model P(y ≤ k | x) = σ(α_k + xᵀβ_k), k = 0..K−2, with its own
/// coefficients per threshold, fitted by maximum likelihood with the fused penalty λ Σ_{k≥1} ‖β_k − β_{k−1}‖₁ that
/// shrinks towards the proportional odds model (all β_k equal) and lets the rare last threshold borrow strength from
/// the common ones. In the differences ψ₀ = β₀, ψ_k = β_k − β_{k−1} the penalty is a lasso on ψ₁.., so its proximal map
/// is soft thresholding of those rows, and the fit is proximal gradient descent on the mean negative log-likelihood.
/// </summary>
public static class ProportionalOddsShrinkage
{
    /// <summary>The per-threshold coefficients β_k = Σ_{j≤k} ψ_j, [K−1, p], from the differences ψ [K−1, p].</summary>
    /// <param name="differences">ψ, [K−1, p].</param>
    public static Tensor Coefficients(Tensor differences)
    {
        ArgumentNullException.ThrowIfNull(differences);
        return differences.Cumsum(0);
    }

    /// <summary>P(y = k | x) = F_k − F_{k−1} with F_k = σ(α_k + xᵀβ_k), F_{−1} = 0, F_{K−1} = 1: [n, K] (entries can be negative where fitted cumulative curves cross).</summary>
    /// <param name="x">Features, [n, p].</param>
    /// <param name="intercepts">α, [K−1].</param>
    /// <param name="differences">ψ, [K−1, p].</param>
    /// <exception cref="ShapeMismatchException">The shapes do not fit together.</exception>
    public static Tensor CategoryProbabilities(Tensor x, Tensor intercepts, Tensor differences)
    {
        Check(x, intercepts, differences);
        var f = (x.MatMul(Coefficients(differences).T) + intercepts).Sigmoid();
        var zero = f.Narrow(1, 0, 1).ZerosLike();
        return Tensor.Concat([f, zero.OnesLike()], 1) - Tensor.Concat([zero, f], 1);
    }

    /// <summary>The mean negative log-likelihood −mean log P(yᵢ | xᵢ) (probabilities floored at 1e-12 so crossing curves stay finite); differentiable.</summary>
    /// <param name="x">Features, [n, p].</param>
    /// <param name="labels">Categories in [0, K), Int64 [n].</param>
    /// <param name="intercepts">α, [K−1].</param>
    /// <param name="differences">ψ, [K−1, p].</param>
    /// <exception cref="ArgumentException">A label is outside [0, K).</exception>
    public static Tensor NegativeLogLikelihood(Tensor x, Tensor labels, Tensor intercepts, Tensor differences)
    {
        ArgumentNullException.ThrowIfNull(labels);
        var p = CategoryProbabilities(x, intercepts, differences);
        int k = p.Shape[1];
        var y = labels.To(DType.Int64).ToArray<long>();
        if (labels.Shape != new Shape(x.Shape[0])) throw new ShapeMismatchException("ProportionalOddsShrinkage", nameof(labels), $"labels {labels.Shape} must be [{x.Shape[0]}]");
        int bad = Array.FindIndex(y, v => v < 0 || v >= k);
        if (bad >= 0) throw new ArgumentException($"ProportionalOddsShrinkage: labels[{bad}] = {y[bad]} is outside [0, {k})", nameof(labels));
        return -p.Gather(1, labels.To(DType.Int64).Unsqueeze(-1)).Clamp(min: 1e-12).Log().Mean();
    }

    /// <summary>The proximal map of t Σ_{k≥1} ‖ψ_k‖₁: soft thresholding at t of every row but the first.</summary>
    /// <param name="differences">ψ, [K−1, p].</param>
    /// <param name="threshold">t ≥ 0 (step size times λ).</param>
    public static Tensor Prox(Tensor differences, double threshold)
    {
        ArgumentNullException.ThrowIfNull(differences);
        if (!(threshold >= 0) || double.IsInfinity(threshold)) throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "ProportionalOddsShrinkage.Prox: the threshold must be finite and non-negative");
        int rows = differences.Shape[0];
        if (rows <= 1) return differences;
        var rest = differences.Narrow(0, 1, rows - 1);
        return Tensor.Concat([differences.Narrow(0, 0, 1), rest - rest.Clamp(-threshold, threshold)], 0);
    }

    /// <summary>
    /// Proximal gradient descent from proportional odds at the empirical thresholds (α_k = logit of the share of labels
    /// ≤ k, ψ = 0): α ← α − η∇_α, ψ ← prox_{ηλ}(ψ − η∇_ψ) of the mean negative log-likelihood. Returns α [K−1] and ψ [K−1, p].
    /// </summary>
    /// <param name="x">Features, [n, p] (Float64).</param>
    /// <param name="labels">Categories in [0, K), [n]; every category must occur.</param>
    /// <param name="classes">K ≥ 2.</param>
    /// <param name="lambda">λ ≥ 0 (0: separate coefficients per threshold; large: proportional odds).</param>
    /// <param name="steps">Iterations.</param>
    /// <param name="stepSize">η, positive.</param>
    /// <exception cref="ArgumentException">A category never occurs (its threshold would be infinite).</exception>
    public static (Tensor Intercepts, Tensor Differences) Fit(Tensor x, Tensor labels, int classes, double lambda, int steps, double stepSize = 1)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(labels);
        if (classes < 2) throw new ArgumentOutOfRangeException(nameof(classes), classes, "ProportionalOddsShrinkage.Fit: K must be at least 2");
        if (!(lambda >= 0) || double.IsInfinity(lambda)) throw new ArgumentOutOfRangeException(nameof(lambda), lambda, "ProportionalOddsShrinkage.Fit: lambda must be finite and non-negative");
        if (!(stepSize > 0) || double.IsInfinity(stepSize)) throw new ArgumentOutOfRangeException(nameof(stepSize), stepSize, "ProportionalOddsShrinkage.Fit: the step size must be positive and finite");
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        var y = labels.To(DType.Int64).ToArray<long>();
        var counts = Enumerable.Range(0, classes).Select(c => y.Count(v => v == c)).ToArray();
        int missing = Array.IndexOf(counts, 0);
        if (missing >= 0) throw new ArgumentException($"ProportionalOddsShrinkage.Fit: category {missing} never occurs among the {y.Length} labels", nameof(labels));
        double cum = 0;
        var alpha0 = new double[classes - 1];
        for (int k = 0; k < classes - 1; k++) { cum += counts[k] / (double)y.Length; alpha0[k] = Math.Log(cum / (1 - cum)); }
        var alpha = Tensor.FromArray(alpha0).To(x.DType).To(x.Device);
        var psi = Tensor.Zeros(new Shape(classes - 1, x.Shape[1]), x.DType, x.Device);
        for (int t = 0; t < steps; t++)
        {
            var a = alpha.Detach().RequiresGrad_();
            var s = psi.Detach().RequiresGrad_();
            var grads = Autograd.Grad([NegativeLogLikelihood(x, labels, a, s)], [a, s]);
            alpha = (alpha - grads[0] * stepSize).Detach();
            psi = Prox((psi - grads[1] * stepSize).Detach(), stepSize * lambda);
        }
        return (alpha, psi);
    }

    static void Check(Tensor x, Tensor intercepts, Tensor differences)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(intercepts);
        ArgumentNullException.ThrowIfNull(differences);
        if (x.Rank != 2 || intercepts.Rank != 1 || differences.Rank != 2 || differences.Shape[0] != intercepts.Shape[0] || differences.Shape[1] != x.Shape[1] || intercepts.Shape[0] < 1)
            throw new ShapeMismatchException("ProportionalOddsShrinkage", nameof(differences), $"x {x.Shape}, intercepts {intercepts.Shape} and differences {differences.Shape} must be [n, p], [K−1] and [K−1, p] with K ≥ 2");
    }
}
