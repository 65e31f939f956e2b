namespace Kiln.NN.Optim;

/// <summary>
/// ProGrad (Zhu et al. 2023, "Prompt-aligned Gradient for Prompt Tuning") as a gradient transform applied between
/// backward and the optimizer step: the task gradient g is kept where it agrees with the general direction g_gen (the
/// gradient of the KL divergence to the zero-shot prediction), ⟨g, g_gen⟩ ≥ 0, and otherwise replaced by
/// g' = g - λ (⟨g, g_gen⟩ / ‖g_gen‖²) g_gen (λ = 1: the projection onto g_gen's orthogonal complement). Like the
/// reference code, the test and projection run per parameter tensor.
/// </summary>
public static class ProGrad
{
    /// <summary>The aligned gradient g' of one tensor (a zero g_gen leaves g unchanged).</summary>
    /// <exception cref="ShapeMismatchException">The shapes differ.</exception>
    /// <exception cref="ArgumentOutOfRangeException">lambda is negative or not finite.</exception>
    public static Tensor Project(Tensor gradient, Tensor general, double lambda = 1)
    {
        ArgumentNullException.ThrowIfNull(gradient); ArgumentNullException.ThrowIfNull(general);
        if (gradient.Shape != general.Shape) throw new ShapeMismatchException("prograd", nameof(general), gradient.Shape, general.Shape, "the general direction must have the gradient's shape");
        if (!(lambda >= 0) || double.IsInfinity(lambda)) throw new ArgumentOutOfRangeException(nameof(lambda), lambda, "prograd: lambda must be finite and non-negative");
        var dot = (gradient * general).Sum();
        var norm2 = general.Square().Sum();
        var conflict = (dot < 0.0) & (norm2 > 0.0);
        var coef = Tensor.Where(conflict, dot / Tensor.Where(conflict, norm2, norm2.OnesLike()), dot.ZerosLike());
        return gradient - lambda * coef * general;
    }

    /// <summary>
    /// Replaces each parameter's gradient in place by its aligned form, with <paramref name="general"/>[i] the general
    /// direction of parameter i (null: left alone; a parameter without a gradient is skipped).
    /// </summary>
    /// <exception cref="ArgumentException">The lists differ in length.</exception>
    public static void Apply(IReadOnlyList<Parameter> parameters, IReadOnlyList<Tensor?> general, double lambda = 1)
    {
        ArgumentNullException.ThrowIfNull(parameters); ArgumentNullException.ThrowIfNull(general);
        if (parameters.Count != general.Count) throw new ArgumentException($"prograd: {parameters.Count} parameters but {general.Count} general directions", nameof(general));
        using (Autograd.NoGrad())
            for (int i = 0; i < parameters.Count; i++)
                if (parameters[i].Grad is { } g && general[i] is { } d) g.Copy_(Project(g, d.To(g.DType), lambda));
    }
}
