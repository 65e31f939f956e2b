namespace Kiln.Methods.Variational;

/// <summary>
/// Feasible Learning (Ramirez et al., "Feasible Learning", AISTATS 2025): instead of minimising the average loss, find θ
/// with every per-sample loss l_i(θ) ≤ ε, by gradient descent-ascent on the Lagrangian Σ_i λ_i (l_i(θ) - ε):
/// θ ← θ - η Σ_i λ_i ∇l_i(θ) (any optimizer on <see cref="Lagrangian"/>) and λ_i ← max(0, λ_i + η_d (l_i - ε))
/// (<see cref="DualStep"/>). The resilient relaxation adds slacks u ≥ 0 with cost (α/2)‖u‖², l_i ≤ ε + u_i; the minimal-norm
/// slack for given multipliers is u = λ/α, and the dual step becomes λ_i ← max(0, λ_i + η_d (l_i - ε - λ_i/α)).
/// One multiplier per training sample; mini-batches address theirs by sample index.
/// </summary>
public sealed class FeasibleLearning
{
    readonly double[] _lambda;

    /// <summary>Multipliers for <paramref name="samples"/> constraints l_i ≤ ε, all starting at <paramref name="initialMultiplier"/>.</summary>
    /// <param name="samples">Number of training samples (constraints).</param>
    /// <param name="epsilon">The per-sample loss bound ε.</param>
    /// <param name="dualLearningRate">Dual step size η_d.</param>
    /// <param name="slackPenalty">α of the resilient relaxation; null for the hard constraints.</param>
    /// <param name="initialMultiplier">λ_i at the start.</param>
    /// <exception cref="ArgumentOutOfRangeException">A count, bound, rate, penalty or initial multiplier is out of range.</exception>
    public FeasibleLearning(int samples, double epsilon, double dualLearningRate, double? slackPenalty = null, double initialMultiplier = 0)
    {
        if (samples < 1) throw new ArgumentOutOfRangeException(nameof(samples), samples, "feasible_learning: samples must be positive");
        if (!(epsilon >= 0) || double.IsInfinity(epsilon)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "feasible_learning: epsilon must be non-negative and finite");
        if (!(dualLearningRate > 0) || double.IsInfinity(dualLearningRate)) throw new ArgumentOutOfRangeException(nameof(dualLearningRate), dualLearningRate, "feasible_learning: the dual learning rate must be positive and finite");
        if (slackPenalty is { } a && (!(a > 0) || double.IsInfinity(a))) throw new ArgumentOutOfRangeException(nameof(slackPenalty), a, "feasible_learning: the slack penalty alpha must be positive and finite");
        if (!(initialMultiplier >= 0) || double.IsInfinity(initialMultiplier)) throw new ArgumentOutOfRangeException(nameof(initialMultiplier), initialMultiplier, "feasible_learning: multipliers must be non-negative and finite");
        _lambda = Enumerable.Repeat(initialMultiplier, samples).ToArray();
        (Epsilon, DualLearningRate, SlackPenalty) = (epsilon, dualLearningRate, slackPenalty);
    }

    /// <summary>The loss bound ε.</summary>
    public double Epsilon { get; }
    /// <summary>The dual step size η_d.</summary>
    public double DualLearningRate { get; }
    /// <summary>α of the resilient relaxation, or null for hard constraints.</summary>
    public double? SlackPenalty { get; }

    /// <summary>A copy of the multipliers λ, one per sample.</summary>
    public double[] Multipliers => (double[])_lambda.Clone();

    /// <summary>The minimal-norm slacks u = λ/α of the resilient relaxation (all zero for hard constraints).</summary>
    public double[] Slacks => SlackPenalty is { } a ? _lambda.Select(l => l / a).ToArray() : new double[_lambda.Length];

    /// <summary>
    /// The Lagrangian's sample terms Σ_b λ_{i_b} (l_b - ε) for the batch losses [B] of samples <paramref name="indices"/>, a
    /// scalar whose gradient in θ is Σ_b λ_{i_b} ∇l_b (the multipliers are constants). Minimise it with any optimizer.
    /// </summary>
    /// <exception cref="ArgumentException">The losses are not a floating vector, or an index is repeated.</exception>
    /// <exception cref="ShapeMismatchException">The index count differs from the batch size.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An index is outside [0, samples).</exception>
    public Tensor Lagrangian(Tensor losses, ReadOnlySpan<int> indices)
    {
        Check(losses, indices, "feasible_learning_lagrangian");
        var lam = new double[indices.Length];
        for (int b = 0; b < lam.Length; b++) lam[b] = _lambda[indices[b]];
        var l = Tensor.FromArray(lam).To(losses.DType).To(losses.Device);
        return ((losses - Epsilon) * l).Sum();
    }

    /// <summary>Dual ascent on the batch's multipliers from its losses [B] (their values only):
    /// λ_i ← max(0, λ_i + η_d (l_i - ε - u_i)) with u_i = λ_i/α in the resilient relaxation, else 0.</summary>
    /// <exception cref="ArgumentException">The losses are not a floating vector, or an index is repeated.</exception>
    /// <exception cref="ShapeMismatchException">The index count differs from the batch size.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An index is outside [0, samples).</exception>
    public void DualStep(Tensor losses, ReadOnlySpan<int> indices)
    {
        Check(losses, indices, "feasible_learning_dual_step");
        var v = losses.Detach().To(DType.Float64).ToArray<double>();
        for (int b = 0; b < v.Length; b++)
        {
            ref double lam = ref _lambda[indices[b]];
            double slack = SlackPenalty is { } a ? lam / a : 0;
            lam = Math.Max(0, lam + DualLearningRate * (v[b] - Epsilon - slack));
        }
    }

    void Check(Tensor losses, ReadOnlySpan<int> indices, string op)
    {
        ArgumentNullException.ThrowIfNull(losses);
        if (!losses.DType.IsFloating() || losses.Rank != 1) throw new ArgumentException($"{op}: losses must be a floating vector [B], not {losses.DType} {losses.Shape}", nameof(losses));
        if (indices.Length != losses.Shape[0]) throw new ShapeMismatchException(op, nameof(indices), $"{indices.Length} indices for {losses.Shape[0]} losses");
        var seen = new HashSet<int>();
        foreach (int i in indices)
        {
            if (i < 0 || i >= _lambda.Length) throw new ArgumentOutOfRangeException(nameof(indices), i, $"{op}: sample index {i} is outside [0, {_lambda.Length})");
            if (!seen.Add(i)) throw new ArgumentException($"{op}: sample index {i} appears twice in the batch", nameof(indices));
        }
    }
}
