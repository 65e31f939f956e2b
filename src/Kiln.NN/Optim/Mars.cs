namespace Kiln.NN.Optim;

/// <summary>The preconditioned momentum MARS applies to its corrected gradient.</summary>
public enum MarsKind
{
    /// <summary>MARS-AdamW: Adam moments of c, bias-corrected, with decoupled decay.</summary>
    AdamW,
    /// <summary>MARS-Lion: x -= lr (sign(m) + λ x) with m the EMA of c (one EMA: Lion with b1 = b2 at γ = 0).</summary>
    Lion,
}

/// <summary>
/// MARS (Yuan et al. 2024, "MARS: Unleashing the Power of Variance Reduction for Training Large Models"), following the
/// authors' code: the scaled recursive-momentum gradient c_t = g(x_t, ξ_t) + γ (b1 / (1-b1)) (g(x_t, ξ_t) - g(x_{t-1}, ξ)),
/// clipped per parameter tensor to norm 1 (c ← c / max(1, ‖c‖)), then m = b1 m + (1-b1) c and either AdamW
/// (v = b2 v + (1-b2) c², x -= lr (m̂ / (sqrt(v̂) + eps) + λ x), eps added after dividing by sqrt(1 - b2^t)) or Lion
/// (x -= lr (sign(m) + λ x)). The exact variant (<see cref="Approximate"/> false) needs two gradients on one minibatch:
/// call <see cref="Step(Func{double})"/> with a closure that evaluates the same batch each time it is called within a
/// step; it is called at x_t and then at x_{t-1} (step 1 has no x_0 and uses c = g). The approximate variant (the
/// authors' default) reuses the previous step's gradient g(x_{t-1}, ξ_{t-1}), starting from 0, and steps from plain
/// <see cref="Optimizer.Step()"/>. With γ = 0 and the clip inactive, MARS-AdamW is AdamW in these conventions. Every
/// parameter gets the MARS rule (the authors' optimize_1d = True); their default sends vectors to plain AdamW with
/// separate hyperparameters (here: give the vectors to a separate <see cref="AdamW"/>).
/// State: "exp_avg", "exp_avg_sq" (AdamW), and "last_grad" (approximate) or "previous_param" (exact).
/// </summary>
public sealed class MARS : Optimizer
{
    readonly Tensor[] _m;
    readonly Tensor?[] _v;
    readonly Tensor[] _memory;
    Tensor?[]? _previousGrads;

    /// <summary>Creates the optimizer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1), a negative hyperparameter.</exception>
    public MARS(IEnumerable<Parameter> parameters, double learningRate = 3e-3, double beta1 = 0.95, double beta2 = 0.99, double gamma = 0.025, double eps = 1e-8,
        double weightDecay = 0, MarsKind kind = MarsKind.AdamW, bool approximate = true, bool clip = true)
        : this([new ParamGroup(parameters)], learningRate, beta1, beta2, gamma, eps, weightDecay, kind, approximate, clip) { }

    /// <summary>Creates the optimizer over parameter groups (each may set its own learning rate and weight decay).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1), a negative hyperparameter.</exception>
    public MARS(IEnumerable<ParamGroup> groups, double learningRate = 3e-3, double beta1 = 0.95, double beta2 = 0.99, double gamma = 0.025, double eps = 1e-8,
        double weightDecay = 0, MarsKind kind = MarsKind.AdamW, bool approximate = true, bool clip = true)
        : base(groups, learningRate)
    {
        Kronecker.CheckBeta(beta1, nameof(beta1)); Kronecker.CheckBeta(beta2, nameof(beta2));
        CheckNonNegative(gamma, nameof(gamma)); CheckNonNegative(eps, nameof(eps)); CheckNonNegative(weightDecay, nameof(weightDecay));
        if (kind is not (MarsKind.AdamW or MarsKind.Lion)) throw new ArgumentOutOfRangeException(nameof(kind), kind, "mars: unknown kind");
        Beta1 = beta1; Beta2 = beta2; Gamma = gamma; Eps = eps; WeightDecay = weightDecay; Kind = kind; Approximate = approximate; Clip = clip;
        _m = AddState("exp_avg");
        _v = AddState("exp_avg_sq", p => kind == MarsKind.AdamW ? p.Shape : (Shape?)null);
        _memory = AddState(approximate ? "last_grad" : "previous_param");
    }

    /// <summary>Decay of the first moment (and the correction's scale b1 / (1 - b1)).</summary>
    public double Beta1 { get; }
    /// <summary>Decay of the second moment (AdamW kind).</summary>
    public double Beta2 { get; }
    /// <summary>Scale γ of the variance-reduction correction.</summary>
    public double Gamma { get; }
    /// <summary>Added to sqrt(v̂) (AdamW kind).</summary>
    public double Eps { get; }
    /// <summary>Decoupled weight decay coefficient.</summary>
    public double WeightDecay { get; }
    /// <summary>AdamW or Lion on the corrected gradient.</summary>
    public MarsKind Kind { get; }
    /// <summary>True to reuse the previous step's gradient (one gradient per step); false for the exact two-gradient rule.</summary>
    public bool Approximate { get; }
    /// <summary>Whether c is clipped to norm 1 per parameter tensor.</summary>
    public bool Clip { get; }

    /// <summary>
    /// One step of the exact rule: evaluates <paramref name="closure"/> at x_t, then at x_{t-1} (same minibatch, the
    /// closure's duty) for g(x_{t-1}, ξ_t), restores x_t and its gradients, and updates. For the approximate variant it is
    /// the base behaviour (one evaluation). Returns the loss at x_t.
    /// </summary>
    public override double Step(Func<double> closure)
    {
        ArgumentNullException.ThrowIfNull(closure);
        if (Approximate) return base.Step(closure);
        double loss = closure();
        if (StepCount == 0) return StepWith(new Tensor?[Parameters.Count], loss);
        var grads = Parameters.Select(p => p.Grad?.Detach().Clone()).ToArray();
        var current = Parameters.Select(p => p.Value.Detach().Clone()).ToArray();
        using (Autograd.NoGrad())
            for (int i = 0; i < Parameters.Count; i++) Parameters[i].Value.Copy_(_memory[i]);
        closure();
        var previous = Parameters.Select(p => p.Grad?.Detach().Clone()).ToArray();
        using (Autograd.NoGrad())
            for (int i = 0; i < Parameters.Count; i++)
            {
                Parameters[i].Value.Copy_(current[i]);
                Parameters[i].Grad = grads[i];
            }
        return StepWith(previous, loss);
    }

    double StepWith(Tensor?[] previousGrads, double loss)
    {
        _previousGrads = previousGrads;
        try { Step(); }
        finally { _previousGrads = null; }
        return loss;
    }

    /// <inheritdoc/>
    protected override void Update(int index, Tensor param, Tensor grad, double lr, int step)
    {
        Tensor c;
        if (Approximate)
        {
            c = grad + (grad - _memory[index]) * (Gamma * Beta1 / (1 - Beta1));
            _memory[index].Copy_(grad);
        }
        else
        {
            if (_previousGrads is null)
                throw new InvalidOperationException("mars: the exact variant needs two gradients per step; call Step(closure) (or construct with approximate: true)");
            var previous = _previousGrads[index];
            c = previous is null ? grad : grad + (grad - previous.To(grad.DType)) * (Gamma * Beta1 / (1 - Beta1));
            _memory[index].Copy_(param);
        }
        if (Clip) c = c / c.Square().Sum().Sqrt().Clamp(min: 1);
        var m = _m[index].Mul_(Beta1).Add_(c * (1 - Beta1));
        double wd = WeightDecayOf(index, WeightDecay);
        Tensor update;
        if (Kind == MarsKind.AdamW)
        {
            var v = _v[index]!.Mul_(Beta2).Add_(c.Square() * (1 - Beta2));
            double bc1 = 1 - Math.Pow(Beta1, step), bc2 = 1 - Math.Pow(Beta2, step);
            update = m / bc1 / (v.Sqrt() * (1 / Math.Sqrt(bc2)) + Eps);
        }
        else update = m.Sign();
        param.Sub_((update + param * wd) * lr);
    }
}
