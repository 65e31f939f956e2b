namespace Kiln.NN.Optim;

/// <summary>
/// Target optimisation ("Target-based Surrogates for Stochastic Optimization", Lavington et al. 2023): at the model's
/// outputs z_t = f(θ_t) the loss l is replaced by the surrogate g_t(z) = l(z_t) + ⟨∇l(z_t), z - z_t⟩ + ‖z - z_t‖²/(2η),
/// which majorises l when l is L-smooth and η ≤ 1/L (equal at z_t), and g_t(f(θ)) is minimised over θ by a few steps
/// of any inner optimizer (<see cref="Step"/>), so one gradient of l (possibly expensive) serves many cheap model steps.
/// For a linear model f(θ) = Xθ the exact inner minimiser gives z_(t+1) = Proj_range(X)(z_t - η ∇l(z_t)): projected
/// SGD in target space (SSO).
/// </summary>
public static class TargetSurrogate
{
    /// <summary>g_t(z) = l(z_t) + ⟨∇l(z_t), z - z_t⟩ + ‖z - z_t‖²/(2η), differentiable in <paramref name="z"/> (a scalar tensor).</summary>
    /// <exception cref="ArgumentOutOfRangeException">eta is not positive and finite.</exception>
    /// <exception cref="ShapeMismatchException">z, the target or the gradient differ in shape.</exception>
    public static Tensor Value(Tensor z, Tensor target, double lossAtTarget, Tensor lossGradient, double eta)
    {
        ArgumentNullException.ThrowIfNull(z); ArgumentNullException.ThrowIfNull(target); ArgumentNullException.ThrowIfNull(lossGradient);
        if (!(eta > 0) || double.IsInfinity(eta)) throw new ArgumentOutOfRangeException(nameof(eta), eta, "target surrogate: eta must be positive and finite");
        if (z.Shape != target.Shape) throw new ShapeMismatchException("target surrogate", nameof(target), z.Shape, target.Shape, "the target must have the outputs' shape");
        if (lossGradient.Shape != target.Shape) throw new ShapeMismatchException("target surrogate", nameof(lossGradient), target.Shape, lossGradient.Shape, "the loss gradient must have the target's shape");
        var d = z - target;
        return (lossGradient * d).Sum() + d.Square().Sum() * (1 / (2 * eta)) + lossAtTarget;
    }

    /// <summary>
    /// One outer step: z_t = <paramref name="outputs"/>() (detached), l(z_t) and ∇l(z_t) by autodiff, then
    /// <paramref name="innerSteps"/> steps of <paramref name="inner"/> on g_t(outputs()) (each zeroes the gradients,
    /// recomputes the outputs and backpropagates the surrogate). Returns l(z_t), the loss before the step.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">innerSteps below 1, or eta not positive and finite.</exception>
    public static double Step(Func<Tensor> outputs, Func<Tensor, Tensor> loss, Optimizer inner, int innerSteps, double eta)
    {
        ArgumentNullException.ThrowIfNull(outputs); ArgumentNullException.ThrowIfNull(loss); ArgumentNullException.ThrowIfNull(inner);
        if (innerSteps < 1) throw new ArgumentOutOfRangeException(nameof(innerSteps), innerSteps, "target surrogate: innerSteps must be at least 1");
        if (!(eta > 0) || double.IsInfinity(eta)) throw new ArgumentOutOfRangeException(nameof(eta), eta, "target surrogate: eta must be positive and finite");
        Tensor target;
        using (Autograd.NoGrad()) target = outputs().Detach();
        var zi = target.Clone().RequiresGrad_();
        var l = loss(zi);
        double lossAtTarget = l.Item();
        var gradient = Autograd.Grad(l, zi);
        for (int k = 0; k < innerSteps; k++)
        {
            inner.ZeroGrad();
            Value(outputs(), target, lossAtTarget, gradient, eta).Backward();
            inner.Step();
        }
        inner.ZeroGrad();
        return lossAtTarget;
    }
}
