namespace Kiln.Methods.Regularizers;

/// <summary>
/// Invariance penalties for invariant risk minimization across environments (Khezeli et al., "On Invariance Penalties
/// for Risk Minimization"). For one environment e with representation Φ [n, k], classifier w [k] and risk
/// R^e(w) = loss(Φw, y), IRMv1 penalizes ‖∇_w R^e‖², which can be made arbitrarily small by shrinking Φ without making
/// it invariant; the Gramian penalty ‖G_e⁻¹ ∇_w R^e‖² with G_e = ΦᵀΦ/n removes that scale (for the squared loss it is
/// 4‖w − w_e‖², the distance to the environment's least-squares classifier w_e). Both are differentiable in Φ and w
/// (double backprop), so Σ_e R^e + λ Σ_e ρ^e can be minimized by gradient descent.
/// </summary>
public static class InvariancePenalties
{
    /// <summary>
    /// The IRMv1 penalty ‖∇_w loss(Φw, y)‖² for representation <paramref name="phi"/> [n, k], classifier
    /// <paramref name="w"/> [k] (a fixed [1] of ones with k = 1 is Arjovsky et al.'s dummy classifier) and targets
    /// <paramref name="y"/> [n]; <paramref name="loss"/> maps predictions [n] and targets [n] to a scalar risk.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not agree, or the loss is not a scalar.</exception>
    public static Tensor Irmv1(Tensor phi, Tensor w, Tensor y, Func<Tensor, Tensor, Tensor> loss) =>
        RiskGradient("irmv1_penalty", phi, w, y, loss).Square().Sum();

    /// <summary>
    /// The Gramian invariance penalty ‖(G + ridge·I)⁻¹ ∇_w loss(Φw, y)‖² with G = ΦᵀΦ/n the Gramian of the
    /// representation <paramref name="phi"/> [n, k] (arguments as in <see cref="Irmv1"/>). Zero exactly where w is a
    /// stationary point of the environment's risk; unlike IRMv1 it does not vanish as Φ is scaled towards zero.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not agree, or the loss is not a scalar.</exception>
    /// <exception cref="ArgumentOutOfRangeException">ridge is negative or not finite.</exception>
    /// <exception cref="ArgumentException">G + ridge·I is singular.</exception>
    public static Tensor Gramian(Tensor phi, Tensor w, Tensor y, Func<Tensor, Tensor, Tensor> loss, double ridge = 0)
    {
        const string op = "gramian_invariance_penalty";
        if (!(ridge >= 0) || !double.IsFinite(ridge)) throw new ArgumentOutOfRangeException(nameof(ridge), ridge, $"{op}: ridge must be finite and non-negative");
        var g = RiskGradient(op, phi, w, y, loss);
        int n = phi.Shape[0], k = phi.Shape[1];
        var gram = phi.T.MatMul(phi) / n;
        if (ridge > 0) gram = gram + ridge * Tensor.Eye(k, dtype: phi.DType, device: phi.Device);
        return gram.Solve(g).Square().Sum();
    }

    // ∇_w loss(Φw, y), recorded (createGraph) so the penalty built from it can be differentiated again.
    static Tensor RiskGradient(string op, Tensor phi, Tensor w, Tensor y, Func<Tensor, Tensor, Tensor> loss)
    {
        ArgumentNullException.ThrowIfNull(loss);
        if (phi.Rank != 2 || phi.Shape[0] < 1) throw new ShapeMismatchException(op, nameof(phi), $"phi must be [n >= 1, k], got {phi.Shape}");
        int n = phi.Shape[0], k = phi.Shape[1];
        if (w.Shape != new Shape(k)) throw new ShapeMismatchException(op, nameof(w), new Shape(k), w.Shape);
        if (y.Shape != new Shape(n)) throw new ShapeMismatchException(op, nameof(y), new Shape(n), y.Shape);
        // w as its own leaf when it does not require grad (the fixed dummy classifier), so ∇_w exists.
        var wi = w.RequiresGrad ? w : w.Detach().RequiresGrad_();
        var risk = loss(phi.MatMul(wi), y);
        if (risk.Numel != 1) throw new ShapeMismatchException(op, nameof(loss), $"loss must return a scalar risk, got {risk.Shape}");
        return Autograd.Grad([risk.Reshape()], [wi], createGraph: true)[0];
    }
}
