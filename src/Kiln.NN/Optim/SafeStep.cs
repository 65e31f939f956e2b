namespace Kiln.NN.Optim;

/// <summary>
/// The safe step radius of cross-entropy (Ghosts of Softmax: complex singularities that limit safe step sizes). Along
/// an update x + τ v the logits are linearised, z_k(τ) = z_k + τ a_k with a_k = ∇z_k · v (<see cref="LogitSlopes"/>),
/// and the loss's Taylor series in τ converges only within the distance to the nearest complex zero of the softmax
/// partition function Σ exp(z_k + τ a_k). Binary (log(1 + e^(-z)), z = δ + a τ, δ the margin y·logit): the branch
/// points z = iπ(2k+1) make the radius exactly √(δ² + π²)/|a|. Multiclass: no zero lies within π/Δa,
/// Δa = max_k a_k - min_k a_k, a lower bound. Over a batch the radius is the smallest of the examples'.
/// <see cref="Controlled"/> keeps a proposed step within a fraction of the radius.
/// </summary>
public static class SoftmaxStepRadius
{
    /// <summary>The exact radius √(δ² + π²)/|a| of log(1 + e^(-(δ + a τ))) (infinite when a = 0).</summary>
    /// <exception cref="ArgumentOutOfRangeException">margin or slope is not finite.</exception>
    public static double Binary(double margin, double slope)
    {
        if (!double.IsFinite(margin)) throw new ArgumentOutOfRangeException(nameof(margin), margin, "softmax radius: margin must be finite");
        if (!double.IsFinite(slope)) throw new ArgumentOutOfRangeException(nameof(slope), slope, "softmax radius: slope must be finite");
        return slope == 0 ? double.PositiveInfinity : Math.Sqrt(margin * margin + Math.PI * Math.PI) / Math.Abs(slope);
    }

    /// <summary>The smallest binary radius over a batch: <paramref name="margins"/> y·logit and their slopes, one shape.</summary>
    /// <exception cref="ShapeMismatchException">The shapes differ.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A margin or slope is not finite.</exception>
    public static double Binary(Tensor margins, Tensor slopes)
    {
        ArgumentNullException.ThrowIfNull(margins); ArgumentNullException.ThrowIfNull(slopes);
        if (margins.Shape != slopes.Shape) throw new ShapeMismatchException("softmax radius", nameof(slopes), margins.Shape, slopes.Shape, "slopes must have the margins' shape");
        double[] d = margins.ToDoubleArray(), a = slopes.ToDoubleArray();
        double r = double.PositiveInfinity;
        for (int i = 0; i < d.Length; i++) r = Math.Min(r, Binary(d[i], a[i]));
        return r;
    }

    /// <summary>The multiclass lower bound π/Δa of one example's logit slopes (infinite when all are equal).</summary>
    /// <exception cref="ArgumentException">No slopes, or a slope that is not finite.</exception>
    public static double Multiclass(IReadOnlyList<double> slopes)
    {
        ArgumentNullException.ThrowIfNull(slopes);
        if (slopes.Count == 0) throw new ArgumentException("softmax radius: needs at least one class slope", nameof(slopes));
        for (int k = 0; k < slopes.Count; k++)
            if (!double.IsFinite(slopes[k])) throw new ArgumentException($"softmax radius: slope {k} is {slopes[k]}, must be finite", nameof(slopes));
        double spread = slopes.Max() - slopes.Min();
        return spread == 0 ? double.PositiveInfinity : Math.PI / spread;
    }

    /// <summary>The smallest multiclass bound over the rows of <paramref name="slopes"/> [..., C] (classes last).</summary>
    /// <exception cref="ArgumentException">slopes is a scalar or has no classes, or holds a value that is not finite.</exception>
    public static double Multiclass(Tensor slopes)
    {
        ArgumentNullException.ThrowIfNull(slopes);
        if (slopes.Rank == 0 || slopes.Shape[-1] == 0) throw new ArgumentException($"softmax radius: slopes need a class axis with at least one class, got shape {slopes.Shape}", nameof(slopes));
        double[] a = slopes.ToDoubleArray();
        int c = slopes.Shape[-1];
        double r = double.PositiveInfinity;
        for (int i = 0; i < a.Length; i += c) r = Math.Min(r, Multiclass(new ArraySegment<double>(a, i, c)));
        return r;
    }

    /// <summary>
    /// The logit slopes a = J_z(x) v: the directional derivative of <paramref name="logits"/> at <paramref name="x"/>
    /// along <paramref name="direction"/> (a Jacobian-vector product).
    /// </summary>
    /// <exception cref="ShapeMismatchException">direction's shape differs from x's.</exception>
    public static Tensor LogitSlopes(Func<Tensor, Tensor> logits, Tensor x, Tensor direction)
    {
        ArgumentNullException.ThrowIfNull(logits); ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(direction);
        if (x.Shape != direction.Shape) throw new ShapeMismatchException("softmax radius", nameof(direction), x.Shape, direction.Shape, "the direction must have the point's shape");
        return Autograd.Jvp(logits, x, direction);
    }

    /// <summary>The step controller: min(proposed, fraction · radius), so the step stays inside the safe radius.</summary>
    /// <exception cref="ArgumentOutOfRangeException">proposed negative or NaN, radius not positive, or fraction outside (0, 1].</exception>
    public static double Controlled(double proposed, double radius, double fraction = 1)
    {
        if (!(proposed >= 0)) throw new ArgumentOutOfRangeException(nameof(proposed), proposed, "softmax radius: the proposed step must be non-negative");
        if (!(radius > 0)) throw new ArgumentOutOfRangeException(nameof(radius), radius, "softmax radius: radius must be positive");
        if (!(fraction > 0 && fraction <= 1)) throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "softmax radius: fraction must be in (0, 1]");
        return Math.Min(proposed, fraction * radius);
    }
}
