namespace Kiln.NN.Optim;

/// <summary>The map Lion-K applies to the interpolated momentum: a subgradient of a convex K.</summary>
public enum LionK
{
    /// <summary>K(x) = ‖x‖₁, ∇K = sign(x): Lion itself (constraint ‖x‖∞ ≤ 1/λ).</summary>
    Sign,
    /// <summary>K(x) = ‖x‖₂, ∇K = x / ‖x‖₂ over the parameter tensor (0 at 0): normalised momentum (constraint ‖x‖₂ ≤ 1/λ).</summary>
    L2,
    /// <summary>K(x) = ‖x‖²/2, ∇K = x: momentum SGD with decoupled decay (a quadratic penalty instead of a constraint).</summary>
    Quadratic,
}

/// <summary>How <see cref="Cautious.Mask"/> rescales the surviving coordinates.</summary>
public enum CautiousScaling
{
    /// <summary>s = d / (Σ m + 1), d the element count: the Cautious Optimizers paper's original code.</summary>
    Original,
    /// <summary>s = 1 / max(mean(m), 1e-3): later versions; all signs agreeing gives the base update exactly.</summary>
    Mean,
}

/// <summary>
/// The cautious mask of "Cautious Optimizers: Improving Training with One Line of Code" (Liang et al. 2024):
/// u' = u ∘ m ∘ s with m = 1[u ∘ g &gt; 0], so ⟨u', g⟩ ≥ 0 and every coordinate whose update disagrees in sign with
/// the gradient is exactly 0.
/// </summary>
public static class Cautious
{
    /// <summary>
    /// The masked, rescaled update u' (same shape as <paramref name="update"/>), where the mask compares
    /// <paramref name="direction"/> (the update itself, or its numerator: C-AdamW compares the first moment, which has
    /// the update's signs) with <paramref name="gradient"/>.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes differ.</exception>
    public static Tensor Mask(Tensor update, Tensor direction, Tensor gradient, CautiousScaling scaling = CautiousScaling.Original)
    {
        ArgumentNullException.ThrowIfNull(update); ArgumentNullException.ThrowIfNull(direction); ArgumentNullException.ThrowIfNull(gradient);
        if (update.Shape != gradient.Shape || direction.Shape != gradient.Shape)
            throw new ShapeMismatchException("cautious", nameof(gradient), update.Shape, gradient.Shape, "the update, direction and gradient must have one shape");
        var m = (direction * gradient > 0.0).To(update.DType);
        var count = m.Sum();
        var s = scaling == CautiousScaling.Original
            ? update.Numel / (count + 1.0)
            : 1.0 / (count / Math.Max(update.Numel, 1)).Clamp(min: 1e-3);
        return update * m * s;
    }
}

/// <summary>
/// Lion (Chen et al. 2023) and Lion-K ("Lion Secretly Solves Constrained Optimization: As Lyapunov Predicts", Chen et
/// al. 2024): u = ∇K(b1 m + (1-b1) g), x -= lr (u + λ x), m = b2 m + (1-b2) g. With K = ‖·‖₁ (sign) the iterates solve
/// min f(x) s.t. ‖x‖∞ ≤ 1/λ; for lr λ ≤ 1 that box is invariant. With <see cref="Cautious"/> set it is C-Lion: u is
/// masked where it disagrees in sign with g (<see cref="Optim.Cautious.Mask"/>). State: "exp_avg".
/// </summary>
public sealed class Lion : Optimizer
{
    readonly Tensor[] _m;

    /// <summary>Creates the optimizer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1] or a negative hyperparameter.</exception>
    public Lion(IEnumerable<Parameter> parameters, double learningRate = 1e-4, double beta1 = 0.9, double beta2 = 0.99, double weightDecay = 0, LionK k = LionK.Sign)
        : this([new ParamGroup(parameters)], learningRate, beta1, beta2, weightDecay, k) { }

    /// <summary>Creates the optimizer over parameter groups (each may set its own learning rate and weight decay).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1] or a negative hyperparameter.</exception>
    public Lion(IEnumerable<ParamGroup> groups, double learningRate = 1e-4, double beta1 = 0.9, double beta2 = 0.99, double weightDecay = 0, LionK k = LionK.Sign)
        : base(groups, learningRate)
    {
        if (!(beta1 >= 0 && beta1 <= 1)) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, "lion: beta1 must be in [0, 1]");
        if (!(beta2 >= 0 && beta2 <= 1)) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, "lion: beta2 must be in [0, 1]");
        CheckNonNegative(weightDecay, nameof(weightDecay));
        if (k is not (LionK.Sign or LionK.L2 or LionK.Quadratic)) throw new ArgumentOutOfRangeException(nameof(k), k, "lion: unknown K");
        Beta1 = beta1; Beta2 = beta2; WeightDecay = weightDecay; K = k;
        _m = AddState("exp_avg");
    }

    /// <summary>Interpolation weight of the momentum in the update.</summary>
    public double Beta1 { get; }
    /// <summary>Decay of the momentum.</summary>
    public double Beta2 { get; }
    /// <summary>Decoupled weight decay λ (the constraint radius is 1/λ).</summary>
    public double WeightDecay { get; }
    /// <summary>The convex K whose subgradient maps the momentum.</summary>
    public LionK K { get; }
    /// <summary>When set, C-Lion: the update is masked by <see cref="Optim.Cautious.Mask"/> with this scaling.</summary>
    public CautiousScaling? Cautious { get; init; }

    /// <summary>∇K(x) for the chosen K.</summary>
    public Tensor Subgradient(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        return K switch
        {
            LionK.Sign => x.Sign(),
            LionK.L2 => x / Tensor.Where(x.Square().Sum() > 0.0, x.Square().Sum().Sqrt(), x.Sum().OnesLike()),
            _ => x.Clone(),
        };
    }

    /// <inheritdoc/>
    protected override void Update(int index, Tensor param, Tensor grad, double lr, int step)
    {
        var m = _m[index];
        var u = Subgradient(m * Beta1 + grad * (1 - Beta1));
        if (Cautious is { } scaling) u = Optim.Cautious.Mask(u, u, grad, scaling);
        double wd = WeightDecayOf(index, WeightDecay);
        if (wd != 0) param.Mul_(1 - lr * wd);
        param.Sub_(u * lr);
        m.Mul_(Beta2).Add_(grad * (1 - Beta2));
    }
}

/// <summary>
/// C-AdamW (Cautious Optimizers, Liang et al. 2024): AdamW (Kiln's <see cref="AdamW"/> conventions: decay
/// p *= 1 - lr wd first, then p -= (lr / (1 - b1^t)) m ∘ mask ∘ s / (sqrt(v) / sqrt(1 - b2^t) + eps)) where the mask keeps
/// the coordinates in which the first moment m and the gradient agree in sign (the positive denominator does not change
/// signs) and s rescales them (<see cref="Cautious.Mask"/>). With <see cref="CautiousScaling.Mean"/> and all signs
/// agreeing this is AdamW exactly. State: "exp_avg", "exp_avg_sq".
/// </summary>
public sealed class CautiousAdamW : Optimizer
{
    readonly Tensor[] _m, _v;

    /// <summary>Creates the optimizer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1) or a negative hyperparameter.</exception>
    public CautiousAdamW(IEnumerable<Parameter> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.01,
        CautiousScaling scaling = CautiousScaling.Original)
        : this([new ParamGroup(parameters)], learningRate, beta1, beta2, eps, weightDecay, scaling) { }

    /// <summary>Creates the optimizer over parameter groups (each may set its own learning rate and weight decay).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1) or a negative hyperparameter.</exception>
    public CautiousAdamW(IEnumerable<ParamGroup> groups, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.01,
        CautiousScaling scaling = CautiousScaling.Original)
        : base(groups, learningRate)
    {
        Kronecker.CheckBeta(beta1, nameof(beta1)); Kronecker.CheckBeta(beta2, nameof(beta2));
        CheckNonNegative(eps, nameof(eps)); CheckNonNegative(weightDecay, nameof(weightDecay));
        Beta1 = beta1; Beta2 = beta2; Eps = eps; WeightDecay = weightDecay; Scaling = scaling;
        _m = AddState("exp_avg");
        _v = AddState("exp_avg_sq");
    }

    /// <summary>Decay of the first moment.</summary>
    public double Beta1 { get; }
    /// <summary>Decay of the second moment.</summary>
    public double Beta2 { get; }
    /// <summary>Added to sqrt(v_hat).</summary>
    public double Eps { get; }
    /// <summary>Decoupled weight decay coefficient.</summary>
    public double WeightDecay { get; }
    /// <summary>How the surviving coordinates are rescaled.</summary>
    public CautiousScaling Scaling { get; }

    /// <inheritdoc/>
    protected override void Update(int index, Tensor param, Tensor grad, double lr, int step)
    {
        double bc1 = 1 - Math.Pow(Beta1, step), bc2 = 1 - Math.Pow(Beta2, step);
        var m = _m[index].Mul_(Beta1).Add_(grad * (1 - Beta1));
        var v = _v[index].Mul_(Beta2).Add_(grad.Square() * (1 - Beta2));
        double wd = WeightDecayOf(index, WeightDecay);
        if (wd != 0) param.Mul_(1 - lr * wd);
        var u = m * (lr / bc1) / (v.Sqrt() * (1 / Math.Sqrt(bc2)) + Eps);
        param.Sub_(Cautious.Mask(u, m, grad, Scaling));
    }
}
