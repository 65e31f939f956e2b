namespace Kiln.Methods.Regularizers;

/// <summary>
/// Model immunization from a condition-number perspective (Zheng et al.): for linear models on a pretrained linear
/// feature extractor θ [d, k], fine-tuning a head w by gradient descent on a least-squares task with features Xθ
/// converges at a rate set by the condition number of the task Hessian H = (2/n) θᵀXᵀXθ. Immunization pretrains θ so
/// the harmful task's Hessian is ill conditioned (slow to fine-tune) while the primary task's stays well conditioned:
/// J(θ) = L_P(θ) + λ_P log κ(H_P(θ)) − λ_H log κ(H_H(θ)).
/// </summary>
public static class Immunization
{
    /// <summary>
    /// The Hessian in w of the least-squares risk on features <paramref name="x"/> [n, k]: (2/n) XᵀX for the mean
    /// squared error (1/n)‖Xw − y‖² (the default), XᵀX for ½‖Xw − y‖².
    /// </summary>
    /// <exception cref="ShapeMismatchException">x is not [n >= 1, k].</exception>
    public static Tensor LeastSquaresHessian(Tensor x, bool meanSquaredError = true)
    {
        if (x.Rank != 2 || x.Shape[0] < 1) throw new ShapeMismatchException("least_squares_hessian", nameof(x), $"x must be [n >= 1, k], got {x.Shape}");
        var h = x.T.MatMul(x);
        return meanSquaredError ? h * (2.0 / x.Shape[0]) : h;
    }

    /// <summary>
    /// log κ(H) = log λ_max − log λ_min of a symmetric positive-definite H [k, k], through the symmetric
    /// eigendecomposition, whose gradient is the eigenvector formula
    /// d log κ = u_maxᵀ dH u_max / λ_max − u_minᵀ dH u_min / λ_min (simple extreme eigenvalues).
    /// </summary>
    /// <exception cref="ShapeMismatchException">H is not a non-empty square matrix.</exception>
    /// <exception cref="ArgumentException">H is not symmetric, or not positive definite (λ_min ≤ 0).</exception>
    public static Tensor LogConditionNumber(Tensor h)
    {
        const string op = "log_condition_number";
        if (h.Rank != 2 || h.Shape[0] != h.Shape[1] || h.Shape[0] < 1) throw new ShapeMismatchException(op, nameof(h), $"h must be a non-empty square matrix, got {h.Shape}");
        var (w, _) = h.Eigh();
        int k = h.Shape[0];
        var lmin = w.Narrow(0, 0, 1);
        double low = lmin.Item();
        if (!(low > 0)) throw new ArgumentException($"{op}: h is not positive definite (smallest eigenvalue {low})", nameof(h));
        return (w.Narrow(0, k - 1, 1).Log() - lmin.Log()).Sum();
    }

    /// <summary>
    /// The immunization objective L_P(θ) + λ_P log κ(H_P(θ)) − λ_H log κ(H_H(θ)) for the extractor
    /// <paramref name="theta"/> [d, k], primary inputs [n_P, d] with their risk <paramref name="primaryRisk"/> (a scalar
    /// already computed from θ, e.g. the least-squares loss of the primary head), and harmful inputs [n_H, d]; the
    /// Hessians are those of the mean squared error on the features Xθ.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The inputs do not have θ's d columns, or the risk is not a scalar.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A weight is negative or not finite.</exception>
    public static Tensor Objective(Tensor theta, Tensor primaryInputs, Tensor primaryRisk, Tensor harmfulInputs, double primaryWeight, double harmfulWeight)
    {
        const string op = "immunization_objective";
        if (theta.Rank != 2) throw new ShapeMismatchException(op, nameof(theta), $"theta must be [d, k], got {theta.Shape}");
        int d = theta.Shape[0];
        if (primaryInputs.Rank != 2 || primaryInputs.Shape[1] != d) throw new ShapeMismatchException(op, nameof(primaryInputs), $"primary inputs must be [n, {d}], got {primaryInputs.Shape}");
        if (harmfulInputs.Rank != 2 || harmfulInputs.Shape[1] != d) throw new ShapeMismatchException(op, nameof(harmfulInputs), $"harmful inputs must be [n, {d}], got {harmfulInputs.Shape}");
        if (primaryRisk.Numel != 1) throw new ShapeMismatchException(op, nameof(primaryRisk), $"the primary risk must be a scalar, got {primaryRisk.Shape}");
        if (!(primaryWeight >= 0) || !double.IsFinite(primaryWeight)) throw new ArgumentOutOfRangeException(nameof(primaryWeight), primaryWeight, $"{op}: weights must be finite and non-negative");
        if (!(harmfulWeight >= 0) || !double.IsFinite(harmfulWeight)) throw new ArgumentOutOfRangeException(nameof(harmfulWeight), harmfulWeight, $"{op}: weights must be finite and non-negative");
        var hp = LeastSquaresHessian(primaryInputs.MatMul(theta));
        var hh = LeastSquaresHessian(harmfulInputs.MatMul(theta));
        return primaryRisk.Reshape() + primaryWeight * LogConditionNumber(hp) - harmfulWeight * LogConditionNumber(hh);
    }

    /// <summary>
    /// Gradient-descent steps a linear head needs on the least-squares task (1/n)‖Fw − y‖² with features
    /// <paramref name="features"/> [n, k], from w = 0 with step 1/λ_max(H), until ‖w − w*‖ ≤ tolerance·‖w*‖
    /// (w* the least-squares solution); <paramref name="maxSteps"/> when it has not converged by then. The count
    /// grows like κ(H) log(1/tolerance): the fine-tuning cost immunization raises.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not agree.</exception>
    /// <exception cref="ArgumentOutOfRangeException">tolerance is not in (0, 1) or maxSteps is below 1.</exception>
    public static int StepsToConverge(Tensor features, Tensor targets, double tolerance, int maxSteps)
    {
        const string op = "steps_to_converge";
        if (features.Rank != 2 || features.Shape[0] < 1) throw new ShapeMismatchException(op, nameof(features), $"features must be [n >= 1, k], got {features.Shape}");
        if (targets.Shape != new Shape(features.Shape[0])) throw new ShapeMismatchException(op, nameof(targets), new Shape(features.Shape[0]), targets.Shape);
        if (!(tolerance > 0 && tolerance < 1)) throw new ArgumentOutOfRangeException(nameof(tolerance), tolerance, $"{op}: tolerance must be in (0, 1)");
        if (maxSteps < 1) throw new ArgumentOutOfRangeException(nameof(maxSteps), maxSteps, $"{op}: maxSteps must be at least 1");
        using var _ = Autograd.NoGrad();
        var f = features.Detach().To(DType.Float64); var y = targets.Detach().To(DType.Float64);
        int n = f.Shape[0], k = f.Shape[1];
        var ht = LeastSquaresHessian(f);
        var bt = f.T.MatMul(y) * (2.0 / n);
        double lr = 1 / ht.Eigh().Eigenvalues.Narrow(0, k - 1, 1).Item();
        var star = ht.Solve(bt).ToArray<double>();
        double goal = tolerance * Math.Sqrt(star.Sum(v => v * v));
        // The k-dimensional iteration runs on the host: thousands of tiny steps would be all launch overhead.
        var h = ht.ToArray<double>(); var b = bt.ToArray<double>();
        var w = new double[k]; var next = new double[k];
        for (int step = 1; step <= maxSteps; step++)
        {
            double dist = 0;
            for (int i = 0; i < k; i++)
            {
                double g = -b[i];
                for (int j = 0; j < k; j++) g += h[i * k + j] * w[j];
                next[i] = w[i] - lr * g;
                dist += (next[i] - star[i]) * (next[i] - star[i]);
            }
            (w, next) = (next, w);
            if (Math.Sqrt(dist) <= goal) return step;
        }
        return maxSteps;
    }
}
