namespace Kiln.NN.Optim;

/// <summary>The diagonal preconditioner B of <see cref="PreconditionedSPS"/>.</summary>
public enum PolyakPreconditioner
{
    /// <summary>B = I: the stochastic Polyak step size SPS.</summary>
    Identity,
    /// <summary>B = diag(sqrt(Σ g²)) + eps: AdaGrad's accumulator.</summary>
    AdaGrad,
    /// <summary>B = diag(sqrt(v̂)) + eps, v̂ the bias-corrected EMA of g² (Adam's second moment).</summary>
    Adam,
}

/// <summary>
/// Stochastic gradient descent with a preconditioned Polyak step size (Abdukhakimov et al. 2023, "Stochastic Gradient
/// Descent with Preconditioned Polyak Step-size"): γ = (f_i(x) - f_i*) / (c ‖∇f_i‖²_{B⁻¹}) with
/// ‖g‖²_{B⁻¹} = Σ g² / B over all parameters, then x -= γ B⁻¹ ∇f_i (capped at <see cref="MaxStepSize"/> when set,
/// SPS_max). B = I and c = 1/2 is the Polyak step; on one linear equation f = (aᵀx - b)²/2 with f* = 0 that step is the
/// Kaczmarz projection onto aᵀx = b (c = 1 goes half-way). The base learning rate is not used (γ is the step size); a
/// zero gradient gives no step. It needs the loss: call <see cref="Step(Func{double})"/> with a closure that returns
/// f_i(x) (its gradients filled). The Hutchinson (diagonal Hessian) preconditioner of the paper is not built.
/// State: "exp_avg_sq" (AdaGrad: the sum, Adam: the EMA), allocated for every preconditioner.
/// </summary>
public sealed class PreconditionedSPS : Optimizer
{
    readonly Tensor[] _v;
    double? _gamma;

    /// <summary>Creates the optimizer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">c not positive, beta outside [0, 1), or a negative hyperparameter.</exception>
    public PreconditionedSPS(IEnumerable<Parameter> parameters, double c = 0.5, double lowerBound = 0, PolyakPreconditioner preconditioner = PolyakPreconditioner.Identity,
        double beta = 0.999, double eps = 1e-8, double? maxStepSize = null)
        : base(parameters, 0)
    {
        if (!(c > 0) || double.IsInfinity(c)) throw new ArgumentOutOfRangeException(nameof(c), c, "sps: c must be positive and finite");
        if (!double.IsFinite(lowerBound)) throw new ArgumentOutOfRangeException(nameof(lowerBound), lowerBound, "sps: lowerBound (f*) must be finite");
        Kronecker.CheckBeta(beta, nameof(beta)); CheckNonNegative(eps, nameof(eps));
        if (maxStepSize is { } cap) CheckNonNegative(cap, nameof(maxStepSize));
        if (preconditioner is not (PolyakPreconditioner.Identity or PolyakPreconditioner.AdaGrad or PolyakPreconditioner.Adam))
            throw new ArgumentOutOfRangeException(nameof(preconditioner), preconditioner, "sps: unknown preconditioner");
        C = c; LowerBound = lowerBound; Preconditioner = preconditioner; Beta = beta; Eps = eps; MaxStepSize = maxStepSize;
        _v = AddState("exp_avg_sq");
    }

    /// <summary>The constant c in the denominator (1/2: Polyak's step, 1: SPS's half step).</summary>
    public double C { get; }
    /// <summary>f_i*, the lower bound of each sampled loss (0 for interpolating models).</summary>
    public double LowerBound { get; }
    /// <summary>The preconditioner B.</summary>
    public PolyakPreconditioner Preconditioner { get; }
    /// <summary>Decay of Adam's second moment.</summary>
    public double Beta { get; }
    /// <summary>Added to the diagonal of B (AdaGrad, Adam).</summary>
    public double Eps { get; }
    /// <summary>When set, γ is capped at this value (SPS_max).</summary>
    public double? MaxStepSize { get; }
    /// <summary>The step size γ of the last step.</summary>
    public double LastStepSize { get; private set; }

    Tensor B(int index, Tensor grad, int step)
    {
        var v = _v[index];
        switch (Preconditioner)
        {
            case PolyakPreconditioner.AdaGrad:
                return v.Add_(grad.Square()).Sqrt() + Eps;
            case PolyakPreconditioner.Adam:
                v.Mul_(Beta).Add_(grad.Square() * (1 - Beta));
                return (v / (1 - Math.Pow(Beta, step))).Sqrt() + Eps;
            default:
                return grad.OnesLike();
        }
    }

    readonly Dictionary<int, Tensor> _scaled = [];

    /// <summary>
    /// Evaluates <paramref name="closure"/> (f_i(x) with its gradients), updates the preconditioner, computes γ over all
    /// parameters with a gradient and steps. Returns f_i(x).
    /// </summary>
    /// <exception cref="ArgumentException">The closure returned a non-finite loss.</exception>
    public override double Step(Func<double> closure)
    {
        ArgumentNullException.ThrowIfNull(closure);
        double loss = closure();
        if (!double.IsFinite(loss)) throw new ArgumentException($"sps: the closure returned loss {loss}; the Polyak step needs a finite f_i(x)", nameof(closure));
        double norm = 0;
        using (Autograd.NoGrad())
            for (int i = 0; i < Parameters.Count; i++)
            {
                if (Parameters[i].Grad is not { } g) continue;
                var gc = g.To(Parameters[i].DType);
                var scaled = gc / B(i, gc, ParameterSteps(i) + 1);
                _scaled[i] = scaled;
                norm += (gc * scaled).Sum().Item();
            }
        double gamma = norm > 0 ? Math.Max(loss - LowerBound, 0) / (C * norm) : 0;
        if (MaxStepSize is { } cap) gamma = Math.Min(gamma, cap);
        _gamma = LastStepSize = gamma;
        try { Step(); }
        finally { _gamma = null; _scaled.Clear(); }
        return loss;
    }

    /// <inheritdoc/>
    protected override void Update(int index, Tensor param, Tensor grad, double lr, int step)
    {
        if (_gamma is not { } gamma)
            throw new InvalidOperationException("sps: the Polyak step needs the loss; call Step(closure) with a closure that returns f_i(x)");
        param.Sub_(_scaled[index] * gamma);
    }
}
