namespace Kiln.Methods.Regularizers;

/// <summary>
/// The surrogate gradient norm of IGNITE (Dao et al., "Incorporating Surrogate Gradient Norm to Improve Offline
/// Optimization Techniques"): the norm ‖∇_θ L(θ)‖ of the surrogate's training-loss gradient in its parameters, a
/// proxy for the loss's sharpness. Training constrains it, min_θ L(θ) s.t. ‖∇_θ L(θ)‖ ≤ ε, through the Lagrangian
/// L(θ) + λ(‖∇_θ L(θ)‖ − ε) with dual ascent on λ ≥ 0 (<see cref="GradientNormConstraint"/>).
/// </summary>
public static class GradientNormPenalty
{
    /// <summary>
    /// ‖∇_θ loss‖₂ over all <paramref name="parameters"/> together (a parameter the loss does not use contributes 0),
    /// recorded so that it can be differentiated again (double backprop). Zero exactly at stationary points of the
    /// loss. Its gradient is undefined where the norm is 0.
    /// </summary>
    /// <exception cref="ArgumentException">The loss is not a scalar or no parameter is given.</exception>
    public static Tensor Compute(Tensor loss, IReadOnlyList<Tensor> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (loss.Numel != 1) throw new ArgumentException($"gradient_norm_penalty: loss must be a scalar, got shape {loss.Shape}", nameof(loss));
        if (parameters.Count == 0) throw new ArgumentException("gradient_norm_penalty: at least one parameter is needed", nameof(parameters));
        var grads = Autograd.Grad([loss.Reshape()], parameters.ToArray(), createGraph: true);
        var sq = grads[0].Square().Sum();
        for (int i = 1; i < grads.Length; i++) sq = sq + grads[i].Square().Sum();
        return sq.Sqrt();
    }
}

/// <summary>
/// IGNITE's constrained surrogate training: each step minimizes the Lagrangian L(θ) + λ(‖∇_θ L(θ)‖ − ε) in θ, then
/// takes a projected dual-ascent step λ ← max(0, λ + η(‖∇_θ L(θ)‖ − ε)), so λ grows while the gradient norm exceeds
/// the bound ε and decays back to 0 once it holds.
/// </summary>
public sealed class GradientNormConstraint
{
    /// <summary>A constraint ‖∇_θ L‖ ≤ <paramref name="epsilon"/> with dual step size <paramref name="dualStepSize"/>
    /// and starting multiplier <paramref name="initialMultiplier"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is negative or not finite.</exception>
    public GradientNormConstraint(double epsilon, double dualStepSize, double initialMultiplier = 0)
    {
        const string op = "gradient_norm_constraint";
        if (!(epsilon >= 0) || !double.IsFinite(epsilon)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, $"{op}: epsilon must be finite and non-negative");
        if (!(dualStepSize >= 0) || !double.IsFinite(dualStepSize)) throw new ArgumentOutOfRangeException(nameof(dualStepSize), dualStepSize, $"{op}: the dual step size must be finite and non-negative");
        if (!(initialMultiplier >= 0) || !double.IsFinite(initialMultiplier)) throw new ArgumentOutOfRangeException(nameof(initialMultiplier), initialMultiplier, $"{op}: the multiplier must be finite and non-negative");
        Epsilon = epsilon;
        DualStepSize = dualStepSize;
        Multiplier = initialMultiplier;
    }

    /// <summary>The bound ε on the gradient norm.</summary>
    public double Epsilon { get; }
    /// <summary>The dual step size η.</summary>
    public double DualStepSize { get; }
    /// <summary>The current Lagrange multiplier λ ≥ 0.</summary>
    public double Multiplier { get; private set; }

    /// <summary>
    /// The Lagrangian L + λ(‖∇_θ L‖ − ε) at the current λ (to backpropagate into θ) and the gradient norm's value (to
    /// pass to <see cref="UpdateMultiplier"/> after the primal step).
    /// </summary>
    /// <exception cref="ArgumentException">The loss is not a scalar or no parameter is given.</exception>
    public (Tensor Objective, double GradientNorm) Lagrangian(Tensor loss, IReadOnlyList<Tensor> parameters)
    {
        var norm = GradientNormPenalty.Compute(loss, parameters);
        return (loss.Reshape() + Multiplier * (norm - Epsilon), norm.Item());
    }

    /// <summary>The projected dual-ascent step λ ← max(0, λ + η(gradientNorm − ε)); returns the new λ.</summary>
    /// <exception cref="ArgumentOutOfRangeException">gradientNorm is negative or not finite.</exception>
    public double UpdateMultiplier(double gradientNorm)
    {
        if (!(gradientNorm >= 0) || !double.IsFinite(gradientNorm))
            throw new ArgumentOutOfRangeException(nameof(gradientNorm), gradientNorm, "gradient_norm_constraint: the gradient norm must be finite and non-negative");
        Multiplier = Math.Max(0, Multiplier + DualStepSize * (gradientNorm - Epsilon));
        return Multiplier;
    }
}
