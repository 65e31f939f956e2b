namespace Kiln.NN.Optim;

/// <summary>One iterate of <see cref="RegularizedNewton.Minimize"/>: the loss, the gradient norm and the regularisation λ of the step taken from it.</summary>
/// <param name="Loss">f(x_k).</param>
/// <param name="GradientNorm">‖∇f(x_k)‖.</param>
/// <param name="Lambda">The accepted λ of the step from x_k (0 at the last iterate).</param>
public sealed record NewtonIterate(double Loss, double GradientNorm, double Lambda);

/// <summary>
/// Gradient-regularised (approximate) Newton steps, the method of "Gradient-Normalized Smoothness for Optimization with
/// Approximate Hessians": x+ = x - (H̃ + λ I)⁻¹ ∇f(x) with λ tied to the gradient norm, λ = sqrt(M ‖∇f(x)‖) (the
/// power 1/2 of the Lipschitz-Hessian case), M adapted by backtracking (<see cref="Minimize"/>); H̃ is the exact Hessian
/// or any approximation, such as the Gauss-Newton matrix Jᵀ Λ J of a softmax model (<see cref="GaussNewtonSoftmax"/>).
/// λ = 0 is Newton's step. Works on one flat parameter vector (float64 advised: the solve is dense).
/// </summary>
public static class RegularizedNewton
{
    /// <summary>x - (H̃ + λ I)⁻¹ g for a vector x [P], gradient g [P] and symmetric H̃ [P, P].</summary>
    /// <exception cref="ShapeMismatchException">The shapes disagree.</exception>
    /// <exception cref="ArgumentOutOfRangeException">lambda is negative or not finite.</exception>
    public static Tensor Step(Tensor x, Tensor gradient, Tensor hessian, double lambda)
    {
        ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(gradient); ArgumentNullException.ThrowIfNull(hessian);
        if (!(lambda >= 0) || double.IsInfinity(lambda)) throw new ArgumentOutOfRangeException(nameof(lambda), lambda, "regularized newton: lambda must be finite and non-negative");
        if (x.Rank != 1) throw new ShapeMismatchException("regularized newton", nameof(x), $"x must be a vector, got {x.Shape}");
        int p = x.Shape[0];
        if (gradient.Shape != x.Shape) throw new ShapeMismatchException("regularized newton", nameof(gradient), x.Shape, gradient.Shape, "the gradient must have x's shape");
        if (hessian.Shape != new Shape(p, p)) throw new ShapeMismatchException("regularized newton", nameof(hessian), new Shape(p, p), hessian.Shape, "the Hessian must be [P, P]");
        var a = lambda == 0 ? hessian : hessian + Tensor.Eye(p, dtype: hessian.DType, device: hessian.Device) * lambda;
        return x - a.Solve(gradient.Unsqueeze(1)).Squeeze(1);
    }

    /// <summary>λ = sqrt(M ‖g‖), the regularisation of a step at gradient g.</summary>
    /// <exception cref="ArgumentOutOfRangeException">m is negative or not finite.</exception>
    public static double Lambda(Tensor gradient, double m)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        if (!(m >= 0) || double.IsInfinity(m)) throw new ArgumentOutOfRangeException(nameof(m), m, "regularized newton: M must be finite and non-negative");
        return Math.Sqrt(m * gradient.Norm().Item());
    }

    /// <summary>
    /// The Gauss-Newton matrix of the mean softmax cross-entropy of logits z(w) [n, k] in the parameters w [P]:
    /// (1/n) Σ_i J_iᵀ (diag(p_i) - p_i p_iᵀ) J_i, J_i = ∂z_i/∂w [k, P] by reverse-mode autodiff (one vector-Jacobian
    /// product per logit, so gradients must be enabled) and p_i = softmax(z_i), Λ = diag(p) - ppᵀ the Hessian of the loss in the logits. For a model
    /// linear in w (softmax regression) it is the loss's Hessian.
    /// </summary>
    /// <exception cref="ArgumentException">w is not a vector or the logits are not [n, k].</exception>
    public static Tensor GaussNewtonSoftmax(Func<Tensor, Tensor> logits, Tensor w)
    {
        ArgumentNullException.ThrowIfNull(logits); ArgumentNullException.ThrowIfNull(w);
        if (w.Rank != 1) throw new ArgumentException($"gauss newton: w must be a vector, got {w.Shape}", nameof(w));
        Tensor z;
        using (Autograd.NoGrad()) z = logits(w.Detach());
        if (z.Rank != 2) throw new ArgumentException($"gauss newton: the logits must be [n, k], got {z.Shape}", nameof(logits));
        int n = z.Shape[0], k = z.Shape[1], p = w.Shape[0];
        var rows = new Tensor[n * k];
        for (int r = 0; r < n * k; r++)
        {
            var e = Tensor.Zeros(z.Shape, z.DType, z.Device);
            e.Narrow(0, r / k, 1).Narrow(1, r % k, 1).Fill_(1.0);
            rows[r] = Autograd.Vjp(logits, w, e);
        }
        using (Autograd.NoGrad())
        {
            var jac = Tensor.Stack(rows).Reshape(n, k, p);
            var prob = z.Softmax(-1);
            var jp = (jac * prob.Unsqueeze(2)).Sum(1);                            // J_iᵀ p_i, [n, P]
            var weighted = jac.Transpose(1, 2).MatMul(jac * prob.Unsqueeze(2));   // J_iᵀ diag(p_i) J_i, [n, P, P]
            return (weighted.Sum(0) - jp.T.MatMul(jp)) / n;
        }
    }

    /// <summary>
    /// Runs <paramref name="steps"/> regularised Newton steps from <paramref name="x0"/> on the scalar
    /// <paramref name="loss"/>(x), with H̃ = <paramref name="hessian"/>(x). Each step tries λ = sqrt(M ‖∇f‖) and
    /// doubles M until the loss does not increase (at most 60 times), then halves M for the next step, so λ follows the
    /// local smoothness (backtracking on M, as the adaptive variants of gradient-regularised Newton do); M = 0 from the
    /// start keeps λ = 0 (Newton) while the loss decreases. Returns the final x and the iterates' history.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">steps negative, or m0 negative or not finite.</exception>
    public static (Tensor X, IReadOnlyList<NewtonIterate> History) Minimize(Func<Tensor, Tensor> loss, Func<Tensor, Tensor> hessian, Tensor x0, int steps, double m0 = 1)
    {
        ArgumentNullException.ThrowIfNull(loss); ArgumentNullException.ThrowIfNull(hessian); ArgumentNullException.ThrowIfNull(x0);
        if (steps < 0) throw new ArgumentOutOfRangeException(nameof(steps), steps, "regularized newton: steps must be non-negative");
        if (!(m0 >= 0) || double.IsInfinity(m0)) throw new ArgumentOutOfRangeException(nameof(m0), m0, "regularized newton: M must be finite and non-negative");
        var x = x0.Detach();
        double m = m0;
        var history = new List<NewtonIterate>();
        (double F, Tensor G) Eval(Tensor at)
        {
            var xi = at.Detach().RequiresGrad_();
            var f = loss(xi);
            return (f.Item(), Autograd.Grad(f, xi));
        }
        var (fx, g) = Eval(x);
        for (int s = 0; s < steps; s++)
        {
            var h = hessian(x).Detach();   // with gradients on: a Gauss-Newton H̃ differentiates the model
            double lambda = 0;
            Tensor next = x;
            double fNext = fx;
            Tensor gNext = g;
            for (int tries = 0; tries <= 60; tries++)
            {
                lambda = Lambda(g, m);
                using (Autograd.NoGrad()) next = Step(x, g, h, lambda);
                (fNext, gNext) = Eval(next);
                if (fNext <= fx) break;
                m = m == 0 ? 1e-8 : m * 2;
            }
            history.Add(new NewtonIterate(fx, g.Norm().Item(), lambda));
            if (!(fNext <= fx)) return (x, history);   // no λ tried decreased the loss: stop at x
            (x, fx, g) = (next, fNext, gNext);
            m /= 2;
        }
        history.Add(new NewtonIterate(fx, g.Norm().Item(), 0));
        return (x, history);
    }
}
