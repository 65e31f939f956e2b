namespace Kiln.NN.Optim;

/// <summary>
/// The width-transfer rule of "Robust Layerwise Scaling Rules by Proper Weight Decay Tuning" for AdamW. At steady state
/// the norm of a matrix parameter scales as sqrt(η/λ) (decay and update balance); with μP's η ∝ 1/d for matrix-like
/// parameters, the paper's measured top singular value sqrt(η/λ) d^0.75 stays width-invariant when λ ∝ sqrt(d).
/// Matrix-like parameters (rank ≥ 2) get η = η₀ d₀/d and λ = λ₀ sqrt(d/d₀); vector-like ones (gains, biases) keep
/// η₀ and no decay. Tuned once at width d₀, the same (η₀, λ₀) then serve every width d.
/// </summary>
public static class LayerwiseScaling
{
    /// <summary>
    /// The AdamW parameter groups of a model of width <paramref name="width"/> whose rates were tuned at
    /// <paramref name="baseWidth"/>: matrices first (η₀ d₀/d, λ₀ sqrt(d/d₀)), then vectors (η₀, 0). Empty groups are left out.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A width is not positive, or a rate or decay is negative or not finite.</exception>
    public static IReadOnlyList<ParamGroup> Groups(IEnumerable<Parameter> parameters, int width, int baseWidth, double baseLearningRate, double baseWeightDecay)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(baseWidth);
        if (!(baseLearningRate >= 0) || double.IsInfinity(baseLearningRate))
            throw new ArgumentOutOfRangeException(nameof(baseLearningRate), baseLearningRate, "layerwise scaling: the base learning rate must be finite and non-negative");
        if (!(baseWeightDecay >= 0) || double.IsInfinity(baseWeightDecay))
            throw new ArgumentOutOfRangeException(nameof(baseWeightDecay), baseWeightDecay, "layerwise scaling: the base weight decay must be finite and non-negative");
        var all = parameters.ToList();
        double ratio = width / (double)baseWidth;
        var groups = new List<ParamGroup>();
        var matrices = all.Where(p => p.Rank >= 2).ToList();
        var vectors = all.Where(p => p.Rank < 2).ToList();
        if (matrices.Count > 0) groups.Add(new ParamGroup(matrices, baseLearningRate / ratio, baseWeightDecay * Math.Sqrt(ratio)));
        if (vectors.Count > 0) groups.Add(new ParamGroup(vectors, baseLearningRate, 0));
        return groups;
    }
}
