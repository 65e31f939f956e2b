namespace Kiln.Methods.Sketching;

/// <summary>
/// Damped preconditioned gradient descent, ScaledGD(λ), for overparameterized low-rank matrix sensing (Xu, Shen, Ma
/// and Chi, "The Power of Preconditioning in Overparameterized Low-Rank Matrix Sensing", ICML 2023). From measurements
/// yᵢ = ⟨Aᵢ, M*⟩ of a PSD M* [n, n] of rank r ≤ k, minimize f(X) = (1/4m) Σᵢ (⟨Aᵢ, X Xᵀ⟩ - yᵢ)² over X [n, k] by
/// X ← X - η ∇f(X) (XᵀX + λI)⁻¹, with ∇f(X) = (1/2m) Σᵢ rᵢ (Aᵢ + Aᵢᵀ) X, from a small random start. The preconditioner
/// makes the iteration count independent of M*'s condition number κ; plain gradient descent (no preconditioner) needs
/// about κ times more steps.
/// </summary>
public static class PreconditionedSensing
{
    /// <summary>∇f(X) for sensing matrices A [m, n, n], measurements y [m] and the factor X [n, k].</summary>
    /// <param name="operators">The sensing matrices Aᵢ, [m, n, n].</param>
    /// <param name="measurements">yᵢ, [m].</param>
    /// <param name="x">The factor, [n, k].</param>
    /// <exception cref="ShapeMismatchException">The shapes do not fit together.</exception>
    public static Tensor Gradient(Tensor operators, Tensor measurements, Tensor x)
    {
        Check(operators, measurements, x);
        int m = operators.Shape[0], n = operators.Shape[1];
        var flat = operators.Reshape(m, n * n);
        var r = flat.MatMul(x.MatMul(x.T).Reshape(n * n, 1)).Squeeze(-1) - measurements;
        var g = r.Unsqueeze(0).MatMul(flat).Reshape(n, n);
        return (g + g.T).MatMul(x) / (2.0 * m);
    }

    /// <summary>One step X - η ∇f(X) (XᵀX + λI)⁻¹, or plain gradient descent X - η ∇f(X) when <paramref name="damping"/> is null.</summary>
    /// <param name="operators">The sensing matrices, [m, n, n].</param>
    /// <param name="measurements">yᵢ, [m].</param>
    /// <param name="x">The factor, [n, k].</param>
    /// <param name="stepSize">η, positive.</param>
    /// <param name="damping">λ ≥ 0 (positive when X may be rank deficient, as in the overparameterized start), or null for no preconditioner.</param>
    /// <exception cref="ArgumentOutOfRangeException">η is not positive or λ is negative.</exception>
    public static Tensor Step(Tensor operators, Tensor measurements, Tensor x, double stepSize, double? damping)
    {
        if (!(stepSize > 0) || double.IsInfinity(stepSize)) throw new ArgumentOutOfRangeException(nameof(stepSize), stepSize, "PreconditionedSensing.Step: the step size must be positive and finite");
        if (damping is double l && (!(l >= 0) || double.IsInfinity(l))) throw new ArgumentOutOfRangeException(nameof(damping), damping, "PreconditionedSensing.Step: the damping must be finite and non-negative");
        var g = Gradient(operators, measurements, x);
        if (damping is double lambda)
        {
            int k = x.Shape[1];
            var p = x.T.MatMul(x) + Tensor.Eye(k, dtype: x.DType, device: x.Device) * lambda;
            g = p.Solve(g.T).T;                                      // g P⁻¹, P symmetric
        }
        return x - g * stepSize;
    }

    /// <summary>
    /// Runs <see cref="Step"/> from <paramref name="start"/> until ‖X Xᵀ - M*‖_F / ‖M*‖_F falls below
    /// <paramref name="tolerance"/> or <paramref name="maxSteps"/> steps; returns the factor and the relative error before each step and at the end.
    /// </summary>
    /// <param name="operators">The sensing matrices, [m, n, n].</param>
    /// <param name="measurements">yᵢ, [m].</param>
    /// <param name="target">The planted M*, [n, n] (used only to report the error).</param>
    /// <param name="start">X₀, [n, k] (small and random in the paper).</param>
    /// <param name="stepSize">η.</param>
    /// <param name="damping">λ, or null for plain gradient descent.</param>
    /// <param name="maxSteps">The most steps, non-negative.</param>
    /// <param name="tolerance">The relative error that stops the run.</param>
    public static (Tensor X, IReadOnlyList<double> Errors) Run(Tensor operators, Tensor measurements, Tensor target, Tensor start, double stepSize, double? damping, int maxSteps, double tolerance)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentOutOfRangeException.ThrowIfNegative(maxSteps);
        double scale = target.To(DType.Float64).Norm().Item();
        if (!(scale > 0)) throw new ArgumentException("PreconditionedSensing.Run: the target M* is zero", nameof(target));
        var errors = new List<double>();
        var x = start;
        for (int t = 0; ; t++)
        {
            double err = (x.MatMul(x.T) - target).To(DType.Float64).Norm().Item() / scale;
            errors.Add(err);
            if (err < tolerance || t == maxSteps || !double.IsFinite(err)) break;
            x = Step(operators, measurements, x, stepSize, damping);
        }
        return (x, errors);
    }

    static void Check(Tensor operators, Tensor measurements, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(operators);
        ArgumentNullException.ThrowIfNull(measurements);
        ArgumentNullException.ThrowIfNull(x);
        if (operators.Rank != 3 || operators.Shape[1] != operators.Shape[2])
            throw new ShapeMismatchException("PreconditionedSensing", nameof(operators), $"operators have shape {operators.Shape}; they must be [m, n, n]");
        if (measurements.Shape != new Shape(operators.Shape[0]))
            throw new ShapeMismatchException("PreconditionedSensing", nameof(measurements), $"measurements have shape {measurements.Shape}; they must be [{operators.Shape[0]}]");
        if (x.Rank != 2 || x.Shape[0] != operators.Shape[1])
            throw new ShapeMismatchException("PreconditionedSensing", nameof(x), $"x has shape {x.Shape}; it must be [{operators.Shape[1]}, k]");
    }
}
