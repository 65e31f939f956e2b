namespace Kiln.Methods.Generative;

/// <summary>A mixture of constrained experts' result: each expert's coefficients and the stitched solution.</summary>
/// <param name="Coefficients">ω [K, p]: expert k's coefficients of its p basis functions.</param>
/// <param name="Solution">u [K·p]: expert k's u_k = V_k ω_k on its subdomain's p points, subdomains in order.</param>
public sealed record ConstrainedExperts(Tensor Coefficients, Tensor Solution);

/// <summary>
/// Physics-informed hard constraints with a mixture of experts (Chalapathi et al., ICLR 2024). A network supplies, at p
/// collocation points, its basis functions' values V [p, p] and the PDE's linear operator applied to them A [p, p]
/// (e.g. A_ij = −φ_j″(x_i) on interior rows, A_ij = φ_j(x_i) on boundary rows); the solution u = V ω takes the
/// coefficients ω that satisfy the discretised PDE exactly:
/// G(ω) = A ω + κ ⊙ (V ω)³ − s = 0 (a semilinear PDE L u + κ u³ = s, κ = 0 on boundary rows, s the source or boundary
/// value), solved by Newton's method. Gradients flow through ω by the implicit function theorem:
/// with G_ω = A + diag(3 κ ⊙ (V ω)²) V and λ = G_ω⁻ᵀ g, g_A = −λ ωᵀ, g_V = −(3 κ ⊙ (V ω)² ⊙ λ) ωᵀ, g_s = λ.
/// The mixture splits the domain into K subdomains, each with its own expert and constraint solve; the K solves are
/// independent and run as one batched Newton iteration, and the outputs are stitched in subdomain order.
/// </summary>
public static class HardConstraintMoe
{
    /// <summary>
    /// Solves G(ω) = A ω + κ ⊙ (V ω)³ − s = 0 for ω [..., p] by Newton's method from the linear solution A⁻¹ s, for
    /// every batch entry independently. Differentiable in A, V and s (implicit function theorem); κ is a constant.
    /// </summary>
    /// <param name="operatorBasis">A [..., p, p]: the linear operator applied to each basis function, per row.</param>
    /// <param name="valueBasis">V [..., p, p]: the basis functions' values at the collocation points.</param>
    /// <param name="source">s [..., p]: the right-hand side (source, or boundary value on boundary rows).</param>
    /// <param name="reaction">κ [..., p]: the cubic reaction coefficient per row (0 on boundary rows).</param>
    /// <param name="tolerance">Newton stops when max |G| ≤ tolerance · (1 + max |s|).</param>
    /// <param name="maxIterations">At most this many Newton steps.</param>
    /// <exception cref="ShapeMismatchException">A is not a (batch of) square matrices, or V, s, κ do not match it.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The tolerance is not positive, or maxIterations is below 1.</exception>
    /// <exception cref="InvalidOperationException">Newton did not reach the tolerance (the constraint has no nearby root).</exception>
    public static Tensor Solve(Tensor operatorBasis, Tensor valueBasis, Tensor source, Tensor reaction, double tolerance = 1e-13, int maxIterations = 50)
    {
        const string op = "hard_constraint_solve";
        ArgumentNullException.ThrowIfNull(operatorBasis);
        ArgumentNullException.ThrowIfNull(valueBasis);
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(reaction);
        int r = operatorBasis.Rank;
        if (r < 2 || operatorBasis.Shape[r - 1] != operatorBasis.Shape[r - 2] || operatorBasis.Shape[r - 1] == 0)
            throw new ShapeMismatchException(op, nameof(operatorBasis), $"A must be [..., p, p] with p >= 1, got {operatorBasis.Shape}");
        if (valueBasis.Shape != operatorBasis.Shape) throw new ShapeMismatchException(op, nameof(valueBasis), operatorBasis.Shape, valueBasis.Shape);
        var rowShape = new Shape(operatorBasis.Shape.ToArray()[..^1]);
        if (source.Shape != rowShape) throw new ShapeMismatchException(op, nameof(source), rowShape, source.Shape);
        if (reaction.Shape != rowShape) throw new ShapeMismatchException(op, nameof(reaction), rowShape, reaction.Shape);
        if (!(tolerance > 0)) throw new ArgumentOutOfRangeException(nameof(tolerance), tolerance, $"{op}: tolerance must be positive");
        ArgumentOutOfRangeException.ThrowIfLessThan(maxIterations, 1);

        var kappa = reaction.Detach().To(DType.Float64);
        Tensor omega;
        using (Autograd.NoGrad())
        {
            var a = operatorBasis.To(DType.Float64);
            var v = valueBasis.To(DType.Float64);
            var s = source.To(DType.Float64);
            double limit = tolerance * (1 + (s.Numel == 0 ? 0 : s.Abs().Max().Item()));
            omega = a.Solve(s);
            double worst = double.PositiveInfinity;
            for (int it = 0; ; it++)
            {
                var u = MatVec(v, omega);
                var g = MatVec(a, omega) + kappa * u.Pow(3) - s;
                worst = g.Numel == 0 ? 0 : g.Abs().Max().Item();
                if (worst <= limit) break;
                if (it == maxIterations || !double.IsFinite(worst))
                    throw new InvalidOperationException($"{op}: Newton did not converge in {maxIterations} steps (max |G| = {worst:G3}, tolerance {limit:G3})");
                omega -= Jacobian(a, v, kappa, u).Solve(g);
            }
        }
        return Tensor.Custom(op, [operatorBasis, valueBasis, source], _ => omega.To(operatorBasis.DType).Clone(), grad =>
        {
            var a = operatorBasis.Detach().To(DType.Float64);
            var v = valueBasis.Detach().To(DType.Float64);
            var u = MatVec(v, omega);
            var lambda = Transpose(Jacobian(a, v, kappa, u)).Solve(grad.To(DType.Float64));
            var gA = -Outer(lambda, omega);
            var gV = -Outer(3 * kappa * u.Pow(2) * lambda, omega);
            return [gA.To(operatorBasis.DType), gV.To(valueBasis.DType), lambda.To(source.DType)];
        });
    }

    /// <summary>
    /// The mixture of K constrained experts: expert k's problem (A_k, V_k, s_k, κ_k) lives on subdomain k's p points
    /// (global points k·p … (k+1)·p − 1), is solved by <see cref="Solve"/> independently of the others (one batched
    /// Newton iteration), and the experts' u_k = V_k ω_k are stitched into u [K·p]. K = 1 is the single global solve.
    /// </summary>
    /// <param name="operatorBasis">A [K, p, p]: expert k's operator-applied basis on its points.</param>
    /// <param name="valueBasis">V [K, p, p]: expert k's basis values on its points.</param>
    /// <param name="source">s [K·p]: the global right-hand side in point order.</param>
    /// <param name="reaction">κ [K·p]: the global reaction coefficient in point order.</param>
    /// <exception cref="ShapeMismatchException">A is not [K, p, p] with K ≥ 1, or V, s, κ do not match it.</exception>
    /// <exception cref="InvalidOperationException">An expert's Newton iteration did not converge.</exception>
    public static ConstrainedExperts Experts(Tensor operatorBasis, Tensor valueBasis, Tensor source, Tensor reaction)
    {
        const string op = "hard_constraint_experts";
        ArgumentNullException.ThrowIfNull(operatorBasis);
        ArgumentNullException.ThrowIfNull(valueBasis);
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(reaction);
        if (operatorBasis.Rank != 3 || operatorBasis.Shape[0] < 1)
            throw new ShapeMismatchException(op, nameof(operatorBasis), $"A must be [K, p, p] with K >= 1 experts, got {operatorBasis.Shape}");
        int k = operatorBasis.Shape[0], p = operatorBasis.Shape[1];
        var global = new Shape(k * p);
        if (source.Shape != global) throw new ShapeMismatchException(op, nameof(source), global, source.Shape);
        if (reaction.Shape != global) throw new ShapeMismatchException(op, nameof(reaction), global, reaction.Shape);
        var omega = Solve(operatorBasis, valueBasis, source.Reshape(k, p), reaction.Reshape(k, p));
        return new ConstrainedExperts(omega, MatVec(valueBasis, omega).Reshape(k * p));
    }

    // M x over the last two dims of M [..., p, p] and x [..., p].
    static Tensor MatVec(Tensor m, Tensor x) => (m * x.Unsqueeze(x.Rank - 1)).Sum([m.Rank - 1]);

    static Tensor Outer(Tensor x, Tensor y) => x.Unsqueeze(x.Rank) * y.Unsqueeze(y.Rank - 1);

    static Tensor Transpose(Tensor m) => m.Transpose(m.Rank - 2, m.Rank - 1);

    // G_ω = A + diag(3 κ ⊙ u²) V.
    static Tensor Jacobian(Tensor a, Tensor v, Tensor kappa, Tensor u) => a + (3 * kappa * u.Pow(2)).Unsqueeze(u.Rank) * v;
}
