namespace Kiln.Methods.Regularizers;

/// <summary>
/// Regularization-based pruning of irrelevant weights (Bonetta et al.): each step, weights judged relevant take the
/// plain gradient step w ← w − η g, while irrelevant ones also decay towards 0, w ← w − η g − η λ w; weights whose
/// magnitude falls below the pruning threshold are then removed (set to 0 and kept there by a mask). A weight's
/// relevance is its first-order saliency |w g| (the loss change its removal would cause to first order); it is
/// irrelevant when that is below <see cref="RelevanceThreshold"/>.
/// </summary>
public sealed class SelectivePruning
{
    /// <summary>The rule with step size η = <paramref name="learningRate"/>, decay λ = <paramref name="decay"/>,
    /// saliency threshold <paramref name="relevanceThreshold"/> and magnitude threshold <paramref name="pruneThreshold"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is negative or not finite, or η is 0.</exception>
    public SelectivePruning(double learningRate, double decay, double relevanceThreshold, double pruneThreshold)
    {
        const string op = "selective_pruning";
        if (!(learningRate > 0) || !double.IsFinite(learningRate)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, $"{op}: the learning rate must be positive and finite");
        if (!(decay >= 0) || !double.IsFinite(decay)) throw new ArgumentOutOfRangeException(nameof(decay), decay, $"{op}: the decay must be finite and non-negative");
        if (!(relevanceThreshold >= 0) || !double.IsFinite(relevanceThreshold)) throw new ArgumentOutOfRangeException(nameof(relevanceThreshold), relevanceThreshold, $"{op}: the relevance threshold must be finite and non-negative");
        if (!(pruneThreshold >= 0) || !double.IsFinite(pruneThreshold)) throw new ArgumentOutOfRangeException(nameof(pruneThreshold), pruneThreshold, $"{op}: the pruning threshold must be finite and non-negative");
        LearningRate = learningRate; Decay = decay; RelevanceThreshold = relevanceThreshold; PruneThreshold = pruneThreshold;
    }

    /// <summary>The step size η.</summary>
    public double LearningRate { get; }
    /// <summary>The decay λ applied to irrelevant weights.</summary>
    public double Decay { get; }
    /// <summary>The saliency |w g| below which a weight is irrelevant.</summary>
    public double RelevanceThreshold { get; }
    /// <summary>The magnitude below which a weight is pruned.</summary>
    public double PruneThreshold { get; }

    /// <summary>1 where |w g| ≥ the relevance threshold, 0 elsewhere (w's dtype and shape).</summary>
    /// <exception cref="ShapeMismatchException">The gradient's shape differs from the weight's.</exception>
    public Tensor Relevant(Tensor weight, Tensor grad)
    {
        if (grad.Shape != weight.Shape) throw new ShapeMismatchException("selective_pruning", nameof(grad), weight.Shape, grad.Shape);
        return ((weight * grad).Abs() >= RelevanceThreshold).To(weight.DType);
    }

    /// <summary>
    /// One update of <paramref name="weight"/> with its loss gradient <paramref name="grad"/>: w − η g − η λ w ⊙ (1 − r),
    /// r the relevance mask, then multiplied by <paramref name="mask"/> (1 = kept, 0 = pruned) when one is given.
    /// Returns the new weight, not recorded for autodiff.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The gradient's or mask's shape differs from the weight's.</exception>
    public Tensor Step(Tensor weight, Tensor grad, Tensor? mask = null)
    {
        if (mask is not null && mask.Shape != weight.Shape) throw new ShapeMismatchException("selective_pruning", nameof(mask), weight.Shape, mask.Shape);
        using var _ = Autograd.NoGrad();
        var w = weight.Detach(); var g = grad.Detach();
        var next = w - LearningRate * g - LearningRate * Decay * w * (1.0 - Relevant(w, g));
        return mask is null ? next : next * mask;
    }

    /// <summary>The pruning mask: 1 where |w| ≥ the pruning threshold and the current <paramref name="mask"/> (if any)
    /// keeps the weight, 0 elsewhere; pruned weights stay pruned.</summary>
    /// <exception cref="ShapeMismatchException">The mask's shape differs from the weight's.</exception>
    public Tensor Prune(Tensor weight, Tensor? mask = null)
    {
        if (mask is not null && mask.Shape != weight.Shape) throw new ShapeMismatchException("selective_pruning", nameof(mask), weight.Shape, mask.Shape);
        using var _ = Autograd.NoGrad();
        var keep = (weight.Detach().Abs() >= PruneThreshold).To(weight.DType);
        return mask is null ? keep : keep * mask;
    }
}
