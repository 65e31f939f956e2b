namespace Kiln.NN.Optim;

/// <summary>How <see cref="ImplicitFtrl"/> turns the loss of a round into the linear term z_t it accumulates.</summary>
public enum FtrlUpdate
{
    /// <summary>z_t = ∇ℓ_t(x_t): FTRL on linearised losses (online gradient descent with lazy projection).</summary>
    Linearized,
    /// <summary>z_t ∈ ∂ℓ_t(x_(t+1)), x_(t+1) = argmin ψ(x) + Σ_(i&lt;t) ⟨z_i, x⟩ + ℓ_t(x): implicit FTRL, a proximal step.</summary>
    Implicit,
}

/// <summary>
/// The loss ℓ_t of one round of online learning, given to <see cref="ImplicitFtrl.Update"/>: its gradient and its
/// proximal step, which the implicit update needs in closed form.
/// </summary>
public abstract class OnlineLoss
{
    private protected OnlineLoss() { }

    /// <summary>ℓ(x) = ⟨g, x⟩.</summary>
    public static OnlineLoss Linear(Tensor g)
    {
        ArgumentNullException.ThrowIfNull(g);
        return new LinearLoss(g);
    }

    /// <summary>ℓ(x) = (aᵀx - b)²/2: the squared loss of one linear-regression example.</summary>
    /// <exception cref="ArgumentOutOfRangeException">b is not finite.</exception>
    public static OnlineLoss Squared(Tensor a, double b)
    {
        ArgumentNullException.ThrowIfNull(a);
        if (!double.IsFinite(b)) throw new ArgumentOutOfRangeException(nameof(b), b, "online loss: the target b must be finite");
        return new SquaredLoss(a, b);
    }

    /// <summary>The shape of x this loss takes.</summary>
    public abstract Shape Shape { get; }

    /// <summary>ℓ(x) as a scalar tensor.</summary>
    public abstract Tensor Value(Tensor x);

    /// <summary>∇ℓ(x).</summary>
    public abstract Tensor Gradient(Tensor x);

    /// <summary>The z with x = x̃ - η z and z ∈ ∂ℓ(x): the proximal step of η ℓ from x̃, in its subgradient form.</summary>
    public abstract Tensor ProximalSubgradient(Tensor xTilde, double eta);

    sealed class LinearLoss(Tensor g) : OnlineLoss
    {
        public override Shape Shape => g.Shape;
        public override Tensor Value(Tensor x) => (g * x).Sum();
        public override Tensor Gradient(Tensor x) => g.To(x.DType);
        public override Tensor ProximalSubgradient(Tensor xTilde, double eta) => g.To(xTilde.DType);
    }

    sealed class SquaredLoss(Tensor a, double b) : OnlineLoss
    {
        public override Shape Shape => a.Shape;
        public override Tensor Value(Tensor x) => 0.5 * ((a * x).Sum() - b).Square();
        public override Tensor Gradient(Tensor x) => a.To(x.DType) * ((a * x).Sum() - b);
        // (x - x̃)/η + a(aᵀx - b) = 0 gives aᵀx - b = (aᵀx̃ - b)/(1 + η‖a‖²).
        public override Tensor ProximalSubgradient(Tensor xTilde, double eta) =>
            a.To(xTilde.DType) * (((a * xTilde).Sum() - b) / (1 + eta * a.Square().Sum()));
    }
}

/// <summary>
/// Generalized implicit follow-the-regularized-leader (Chen and Orabona 2023, "Generalized Implicit Follow-The-
/// Regularized-Leader") with the quadratic regularizer ψ(x) = ‖x‖²/(2η): x_(t+1) = argmin ψ(x) + Σ_(i≤t) ⟨z_i, x⟩
/// = -η Σ z_i. The losses enter only through z_t: the linearisation z_t = ∇ℓ_t(x_t) gives plain FTRL, and the
/// implicit choice z_t ∈ ∂ℓ_t(x_(t+1)) (the minimiser of the Fenchel-Young upper bound for this ψ) gives
/// x_(t+1) = prox_(ηℓ_t)(x̃), x̃ = -η Σ_(i&lt;t) z_i. A linear loss gives the same z_t either way, so implicit FTRL
/// reproduces FTRL exactly there.
/// </summary>
public sealed class ImplicitFtrl
{
    Tensor _sum;

    /// <summary>Starts at x_1 = 0 of <paramref name="shape"/> (float64 on the default device unless given).</summary>
    /// <exception cref="ArgumentOutOfRangeException">eta is not positive and finite, or the update is unknown.</exception>
    public ImplicitFtrl(Shape shape, double eta, FtrlUpdate update = FtrlUpdate.Implicit, DType? dtype = null, Device? device = null)
    {
        if (!(eta > 0) || double.IsInfinity(eta)) throw new ArgumentOutOfRangeException(nameof(eta), eta, "implicit ftrl: eta must be positive and finite");
        if (update is not (FtrlUpdate.Linearized or FtrlUpdate.Implicit)) throw new ArgumentOutOfRangeException(nameof(update), update, "implicit ftrl: unknown update");
        Eta = eta; Rule = update;
        _sum = Tensor.Zeros(shape, dtype ?? DType.Float64, device);
    }

    /// <summary>The regularizer's scale η in ψ(x) = ‖x‖²/(2η).</summary>
    public double Eta { get; }

    /// <summary>Which z_t the rounds accumulate.</summary>
    public FtrlUpdate Rule { get; }

    /// <summary>The current prediction x_t = -η Σ z_i.</summary>
    public Tensor X => -Eta * _sum;

    /// <summary>Σ z_i, the accumulated linear terms.</summary>
    public Tensor SumOfLinearTerms => _sum;

    /// <summary>Plays x_t against <paramref name="loss"/>, accumulates its z_t and returns x_(t+1).</summary>
    /// <exception cref="ShapeMismatchException">The loss takes another shape than x.</exception>
    public Tensor Update(OnlineLoss loss)
    {
        ArgumentNullException.ThrowIfNull(loss);
        if (loss.Shape != _sum.Shape) throw new ShapeMismatchException("implicit ftrl", nameof(loss), _sum.Shape, loss.Shape, "the loss must take x's shape");
        var z = Rule == FtrlUpdate.Linearized ? loss.Gradient(X) : loss.ProximalSubgradient(X, Eta);
        _sum = _sum + z;
        return X;
    }
}
