namespace Kiln.Methods.Generative;

/// <summary>The one-step rule of <see cref="FlowMatching.Sample"/>.</summary>
public enum OdeMethod
{
    /// <summary>x ← x + h v(x, t) (first order).</summary>
    Euler,
    /// <summary>Heun's trapezoidal predictor-corrector x ← x + h/2 (v(x, t) + v(x + h v(x, t), t + h)) (second order).</summary>
    Heun,
}

/// <summary>
/// The conditional flow matching core (Lipman et al.; Liu et al.'s rectified flow) shared by the flow-matching entries:
/// the straight path x_t = (1 − t) x₀ + t x₁ from noise x₀ (t = 0) to data x₁ (t = 1), its velocity x₁ − x₀, the
/// regression loss E‖v_θ(x_t, t) − (x₁ − x₀)‖², and an ODE sampler that integrates dx/dt = v(x, t) from t = 0 to 1.
/// Conditioning (an observation set, a class) lives inside the velocity function the caller passes.
/// </summary>
public static class FlowMatching
{
    /// <summary>The point x_t = (1 − t) x₀ + t x₁ of each row of x₀, x₁ [n, d] at its time t [n].</summary>
    /// <exception cref="ShapeMismatchException">x₀ and x₁ are not matrices of one shape, or t is not [n].</exception>
    public static Tensor Interpolate(Tensor x0, Tensor x1, Tensor t)
    {
        CheckPath("flow_matching_interpolate", x0, x1, t);
        var tc = t.Reshape(t.Shape[0], 1);
        return (1 - tc) * x0 + tc * x1;
    }

    /// <summary>
    /// The flow matching loss (1/n) Σ_i ‖v(x_t,i, t_i) − (x₁,i − x₀,i)‖² for noise x₀ [n, d], data x₁ [n, d] paired row by
    /// row and times t [n]; <paramref name="velocity"/> maps (x_t [n, d], t [n]) to [n, d]. Differentiable in whatever the
    /// velocity function is.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not agree, or the velocity is not [n, d].</exception>
    public static Tensor Loss(Func<Tensor, Tensor, Tensor> velocity, Tensor x0, Tensor x1, Tensor t)
    {
        const string op = "flow_matching_loss";
        ArgumentNullException.ThrowIfNull(velocity);
        CheckPath(op, x0, x1, t);
        var v = velocity(Interpolate(x0, x1, t), t);
        if (v.Shape != x0.Shape) throw new ShapeMismatchException(op, nameof(velocity), x0.Shape, v.Shape);
        return (v - (x1 - x0)).Square().Sum(1).Mean();
    }

    /// <summary>
    /// Integrates dx/dt = v(x, t) from t = 0 at <paramref name="x0"/> to t = 1 in <paramref name="steps"/> equal steps
    /// of <paramref name="method"/>; <paramref name="velocity"/> maps (x, t) to a tensor of x's shape. Records a graph
    /// when gradients are on (wrap it in <c>Autograd.NoGrad()</c> to sample only).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">steps is below 1.</exception>
    /// <exception cref="ShapeMismatchException">The velocity's shape differs from x's.</exception>
    public static Tensor Sample(Func<Tensor, double, Tensor> velocity, Tensor x0, int steps, OdeMethod method = OdeMethod.Heun)
    {
        const string op = "flow_matching_sample";
        ArgumentNullException.ThrowIfNull(velocity);
        ArgumentNullException.ThrowIfNull(x0);
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, $"{op}: steps must be at least 1");
        if (!Enum.IsDefined(method)) throw new ArgumentOutOfRangeException(nameof(method), method, $"{op}: unknown ODE method");
        Tensor V(Tensor x, double t)
        {
            var v = velocity(x, t);
            return v.Shape == x.Shape ? v : throw new ShapeMismatchException(op, nameof(velocity), x.Shape, v.Shape);
        }
        double h = 1.0 / steps;
        var xs = x0;
        for (int k = 0; k < steps; k++)
        {
            double t = k * h;
            var k1 = V(xs, t);
            xs = method == OdeMethod.Euler ? xs + h * k1 : xs + h / 2 * (k1 + V(xs + h * k1, t + h));
        }
        return xs;
    }

    static void CheckPath(string op, Tensor x0, Tensor x1, Tensor t)
    {
        if (x0.Rank != 2) throw new ShapeMismatchException(op, nameof(x0), $"x0 must be [n, d], got {x0.Shape}");
        if (x1.Shape != x0.Shape) throw new ShapeMismatchException(op, nameof(x1), x0.Shape, x1.Shape);
        if (t.Shape != new Shape(x0.Shape[0])) throw new ShapeMismatchException(op, nameof(t), new Shape(x0.Shape[0]), t.Shape);
    }
}
