namespace Kiln.Methods.Generative;

/// <summary>The operator splitting used to find a monotone mean-field fixed point.</summary>
public enum MeanFieldSplitting
{
    /// <summary>Peaceman–Rachford: a linear solve with I + α(I − W) and the proximal step per iteration; converges for every α &gt; 0.</summary>
    PeacemanRachford,

    /// <summary>Forward–backward: z ← prox_f^α((1 − α) z + α(W z + b)); converges for α &lt; 2m/‖I − W‖².</summary>
    ForwardBackward,
}

/// <summary>The result of <see cref="MonotoneBoltzmann.Solve"/>.</summary>
/// <param name="Q">The mean-field marginals q [n, d].</param>
/// <param name="Iterations">Splitting iterations run.</param>
/// <param name="Converged">Whether the fixed-point residual fell to the tolerance.</param>
/// <param name="Residuals">max |q − σ(W q + b)| after each iteration (index 0: the start).</param>
public sealed record MeanFieldSolution(Tensor Q, int Iterations, bool Converged, IReadOnlyList<double> Residuals);

/// <summary>
/// Monotone deep Boltzmann machines (Feng, Winston, Kolter): binary units whose mean-field marginals solve
/// q = σ(W q + b). With W = (1 − m) I − AᵀA + B − Bᵀ the operator I − W is m-strongly monotone (sym(I − W) = m I + AᵀA),
/// and σ is the proximal operator of the convex f(z) = z log z + (1 − z) log(1 − z) − z²/2, so the fixed point is the
/// unique zero of (I − W) z − b + ∂f(z), found by operator splitting as in monotone equilibrium networks.
/// </summary>
public static class MonotoneBoltzmann
{
    /// <summary>
    /// The monotone parameterisation W = (1 − m) I − AᵀA + B − Bᵀ for A [r, d] and an optional B [d, d] (null: a
    /// symmetric W, a proper Boltzmann machine). Differentiable in A and B.
    /// </summary>
    /// <exception cref="ShapeMismatchException">A is not a matrix or B is not [d, d].</exception>
    /// <exception cref="ArgumentOutOfRangeException">m is not positive and finite.</exception>
    public static Tensor Weight(Tensor a, double margin, Tensor? skew = null)
    {
        const string op = "monotone_boltzmann_weight";
        if (a.Rank != 2) throw new ShapeMismatchException(op, nameof(a), $"a must be [r, d], got {a.Shape}");
        if (!(margin > 0) || !double.IsFinite(margin)) throw new ArgumentOutOfRangeException(nameof(margin), margin, $"{op}: margin must be positive and finite");
        int d = a.Shape[1];
        var w = (1 - margin) * Tensor.Eye(d, dtype: a.DType, device: a.Device) - a.T.MatMul(a);
        if (skew is null) return w;
        if (skew.Shape != new Shape(d, d)) throw new ShapeMismatchException(op, nameof(skew), new Shape(d, d), skew.Shape);
        return w + skew - skew.T;
    }

    /// <summary>The monotonicity margin λ_min(sym(I − W)) of a [d, d] weight; positive iff the fixed point is unique for every bias.</summary>
    /// <exception cref="ShapeMismatchException">W is not square.</exception>
    public static double MonotonicityMargin(Tensor weight)
    {
        var (d, eye) = Square(weight, "monotone_boltzmann_margin");
        if (d == 0) return double.PositiveInfinity;
        var iw = eye - weight.Detach().To(DType.Float64);
        return ((iw + iw.T) / 2).Eigh().Eigenvalues.Amin().Item();
    }

    /// <summary>
    /// The proximal operator of α f, f(z) = z log z + (1 − z) log(1 − z) − z²/2: the z ∈ (0, 1) with
    /// (1 − α) z + α logit(z) = v, elementwise (α = 1 gives σ(v)). Newton's method on u = logit(z), whose derivative
    /// (1 − α) σ(u)(1 − σ(u)) + α stays within [min(α, (1 + 3α)/4), max(α, (1 + 3α)/4)].
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">α is not positive and finite.</exception>
    /// <exception cref="InvalidOperationException">Newton's method did not converge in 100 steps.</exception>
    public static Tensor Proximal(Tensor v, double alpha)
    {
        const string op = "monotone_boltzmann_prox";
        if (!(alpha > 0) || !double.IsFinite(alpha)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, $"{op}: alpha must be positive and finite");
        if (v.Numel == 0 || alpha == 1) return v.Sigmoid();
        double scale = 1 + v.Abs().Amax().Item();
        var u = v / Math.Max(alpha, 1);
        for (int k = 0; k < 100; k++)
        {
            var s = u.Sigmoid();
            var r = (1 - alpha) * s + alpha * u - v;
            if (r.Abs().Amax().Item() <= 4e-15 * scale) return s;
            u = u - r / ((1 - alpha) * s * (1 - s) + alpha);
        }
        throw new InvalidOperationException($"{op}: Newton's method did not converge in 100 steps for alpha = {alpha}");
    }

    /// <summary>The fixed-point residual q − σ(W q + b) of marginals q [n, d].</summary>
    /// <exception cref="ShapeMismatchException">the shapes disagree.</exception>
    public static Tensor Residual(Tensor weight, Tensor bias, Tensor q)
    {
        Check(weight, bias, "monotone_boltzmann_residual");
        if (q.Shape != bias.Shape) throw new ShapeMismatchException("monotone_boltzmann_residual", nameof(q), bias.Shape, q.Shape);
        return q - (q.MatMul(weight.T) + bias).Sigmoid();
    }

    /// <summary>
    /// Finds the mean-field fixed point q = σ(W q + b) for each row of <paramref name="bias"/> [n, d] by operator
    /// splitting (no gradient is recorded; see <see cref="MeanField"/>). α defaults to 1 for Peaceman–Rachford and to
    /// m/‖I − W‖₂², the step that minimises the contraction bound √(1 − 2αm + α²‖I − W‖²), for forward–backward.
    /// <paramref name="init"/> is the starting q (default 1/2), strictly inside (0, 1).
    /// </summary>
    /// <exception cref="ShapeMismatchException">W is not [d, d], the bias not [n, d], or init not the bias's shape.</exception>
    /// <exception cref="ArgumentException">W is not monotone (λ_min(sym(I − W)) ≤ 0), so the fixed point need not be unique.</exception>
    /// <exception cref="ArgumentOutOfRangeException">α, the tolerance or the iteration cap is not positive, or init leaves (0, 1).</exception>
    public static MeanFieldSolution Solve(Tensor weight, Tensor bias, MeanFieldSplitting splitting = MeanFieldSplitting.PeacemanRachford,
        double? alpha = null, Tensor? init = null, double tolerance = 1e-12, int maxIterations = 1000)
    {
        const string op = "monotone_boltzmann_solve";
        var eye = Check(weight, bias, op);
        if (alpha is { } al && (!(al > 0) || !double.IsFinite(al))) throw new ArgumentOutOfRangeException(nameof(alpha), al, $"{op}: alpha must be positive and finite");
        if (!(tolerance > 0)) throw new ArgumentOutOfRangeException(nameof(tolerance), tolerance, $"{op}: tolerance must be positive");
        if (maxIterations < 1) throw new ArgumentOutOfRangeException(nameof(maxIterations), maxIterations, $"{op}: maxIterations must be at least 1");
        double m = MonotonicityMargin(weight);
        if (!(m > 0)) throw new ArgumentException($"{op}: weight is not monotone, λ_min(sym(I − W)) = {m} ≤ 0, so the mean-field fixed point need not be unique; build W with {nameof(Weight)}", nameof(weight));
        var z = init ?? Tensor.Full(bias.Shape, 0.5, bias.DType, bias.Device);
        if (z.Shape != bias.Shape) throw new ShapeMismatchException(op, nameof(init), bias.Shape, z.Shape);
        if (z.Numel > 0 && !(z.Amin().Item() > 0 && z.Amax().Item() < 1)) throw new ArgumentOutOfRangeException(nameof(init), $"{op}: init must lie strictly inside (0, 1)");
        using var noGrad = Autograd.NoGrad();
        var w = weight.Detach();
        var a = eye.To(w.DType) - w;
        double step = alpha ?? (splitting == MeanFieldSplitting.PeacemanRachford ? 1 : m / Math.Pow(a.To(DType.Float64).Svd().S.Amax().Item(), 2));
        double Res(Tensor q) => q.Numel == 0 ? 0 : Residual(w, bias, q).Abs().Amax().Item();
        var residuals = new List<double> { Res(z) };
        // Peaceman–Rachford runs on u with z = prox(u); u₀ is the preimage of the start, (1 − α) z₀ + α logit z₀.
        var u = (1 - step) * z + step * (z / (1 - z)).Log();
        // The resolvent (I + α(I − W))⁻¹, applied to rows through its transpose.
        var resolventT = (eye.To(w.DType) + step * a).Solve(eye.To(w.DType)).T;
        int k = 0;
        while (residuals[^1] > tolerance && k < maxIterations)
        {
            if (splitting == MeanFieldSplitting.ForwardBackward)
                z = Proximal((1 - step) * z + step * (z.MatMul(w.T) + bias), step);
            else
            {
                var uHalf = 2 * z - u;
                var zHalf = (uHalf + step * bias).MatMul(resolventT);
                u = 2 * zHalf - uHalf;
                z = Proximal(u, step);
            }
            k++;
            residuals.Add(Res(z));
        }
        return new MeanFieldSolution(z, k, residuals[^1] <= tolerance, residuals);
    }

    /// <summary>
    /// The mean-field fixed point q* = σ(W q* + b) [n, d], differentiable in W and b by the implicit function theorem:
    /// with D = diag(q*(1 − q*)) per row, (I − D W) dq = D (dW q* + db), so the backward pass solves (I − Wᵀ D) u = g and
    /// returns g_b = D u, g_W = Σ_rows (D u) q*ᵀ. Solved with <see cref="Solve"/> (Peaceman–Rachford, α = 1).
    /// </summary>
    /// <exception cref="ArgumentException">W is not monotone, or the solver did not reach the tolerance.</exception>
    /// <exception cref="ShapeMismatchException">as for <see cref="Solve"/>.</exception>
    public static Tensor MeanField(Tensor weight, Tensor bias, double tolerance = 1e-12, int maxIterations = 1000)
    {
        var sol = Solve(weight, bias, tolerance: tolerance, maxIterations: maxIterations);
        if (!sol.Converged)
            throw new ArgumentException($"monotone_boltzmann_mean_field: no convergence to {tolerance} in {maxIterations} iterations (residual {sol.Residuals[^1]})", nameof(maxIterations));
        var q = sol.Q.Detach();
        return Tensor.Custom("monotone_boltzmann_mean_field", [weight, bias], _ => q.Clone(), g =>
        {
            var dq = q * (1 - q);
            int d = q.Shape[1];
            // Row i: (I − Wᵀ diag(D_i)) u_i = g_i; Wᵀ diag(D_i) scales column j of Wᵀ by D_ij.
            var lhs = Tensor.Eye(d, dtype: q.DType, device: q.Device) - weight.Detach().T.Unsqueeze(0) * dq.Unsqueeze(1);
            var gb = dq * lhs.Solve(g);
            return [gb.T.MatMul(q), gb];
        });
    }

    /// <summary>
    /// The mean-field free energy per row, F(q) = −½ qᵀ W q − bᵀ q + Σ_j [q_j log q_j + (1 − q_j) log(1 − q_j)]
    /// [n] (only sym(W) enters). For a symmetric monotone W it is strongly convex and its unique minimiser is the
    /// mean-field fixed point. Differentiable in every argument.
    /// </summary>
    /// <exception cref="ShapeMismatchException">the shapes disagree.</exception>
    /// <exception cref="ArgumentOutOfRangeException">an entry of q is outside (0, 1).</exception>
    public static Tensor FreeEnergy(Tensor weight, Tensor bias, Tensor q)
    {
        const string op = "monotone_boltzmann_free_energy";
        Check(weight, bias, op);
        if (q.Shape != bias.Shape) throw new ShapeMismatchException(op, nameof(q), bias.Shape, q.Shape);
        if (q.Numel > 0 && !(q.Amin().Item() > 0 && q.Amax().Item() < 1)) throw new ArgumentOutOfRangeException(nameof(q), $"{op}: q must lie strictly inside (0, 1)");
        var entropy = q * q.Log() + (1 - q) * (1 - q).Log();
        return (-0.5 * q * q.MatMul(weight.T) - bias * q + entropy).Sum([1]);
    }

    static (int D, Tensor Eye) Square(Tensor weight, string op)
    {
        if (weight.Rank != 2 || weight.Shape[0] != weight.Shape[1]) throw new ShapeMismatchException(op, nameof(weight), $"weight must be [d, d], got {weight.Shape}");
        int d = weight.Shape[0];
        return (d, Tensor.Eye(d, dtype: DType.Float64, device: weight.Device));
    }

    static Tensor Check(Tensor weight, Tensor bias, string op)
    {
        var (d, eye) = Square(weight, op);
        if (bias.Rank != 2 || bias.Shape[1] != d) throw new ShapeMismatchException(op, nameof(bias), $"bias must be [n, {d}], got {bias.Shape}");
        return eye;
    }
}
