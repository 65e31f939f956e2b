namespace Kiln.Methods.Regularizers;

/// <summary>
/// The TSCNC regularizer (Wei et al., "Lipschitz Constant Meets Condition Number: Learning Robust and Compact Deep
/// Neural Networks"): a transformed sparse constraint that drives weights to 0 for pruning, joined with the weight
/// matrix's condition number κ(W) = σ_max/σ_min, which keeps the pruned matrix well conditioned. κ ≥ 1, with equality
/// exactly for c·Q, Q orthogonal or semi-orthogonal.
/// </summary>
public static class ConditionNumber
{
    /// <summary>
    /// κ(W) = σ_1/σ_r for W [m, n], r = min(m, n), differentiable by the singular-vector formula
    /// ∂κ/∂W = (u_1 v_1ᵀ − κ u_r v_rᵀ)/σ_r (valid where σ_1 and σ_r are simple; a first-order rule).
    /// </summary>
    /// <exception cref="ShapeMismatchException">W is not a non-empty matrix.</exception>
    /// <exception cref="ArgumentException">W is rank deficient (σ_r = 0: infinite condition number).</exception>
    public static Tensor Of(Tensor w)
    {
        const string op = "condition_number";
        if (w.Rank != 2 || w.Numel == 0) throw new ShapeMismatchException(op, nameof(w), $"w must be a non-empty matrix [m, n], got {w.Shape}");
        Tensor u = null!, vh = null!;
        double smax = 0, smin = 0;
        return Tensor.Custom(op, [w], xs =>
        {
            (u, var s, vh) = xs[0].Svd();
            var sv = s.ToDoubleArray();
            smax = sv[0]; smin = sv[^1];
            if (!(smin > 0)) throw new ArgumentException($"{op}: w [{w.Shape}] is rank deficient (smallest singular value {smin}, largest {smax}); its condition number is infinite", nameof(w));
            return Tensor.Scalar(smax / smin, w.DType, w.Device);
        }, g =>
        {
            int r = vh.Shape[0];
            var top = u.Narrow(1, 0, 1).MatMul(vh.Narrow(0, 0, 1));
            var bottom = u.Narrow(1, r - 1, 1).MatMul(vh.Narrow(0, r - 1, 1));
            return [g * ((top - smax / smin * bottom) / smin)];
        });
    }

    /// <summary>
    /// The transformed ℓ1 (sparse) constraint Σ_ij (a + 1)|w_ij| / (a + |w_ij|) for a &gt; 0: close to the ℓ0 count of
    /// non-zeros for small a and to the ℓ1 norm for large a.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">a is not positive and finite.</exception>
    public static Tensor TransformedL1(Tensor w, double a)
    {
        if (!(a > 0) || !double.IsFinite(a)) throw new ArgumentOutOfRangeException(nameof(a), a, "transformed_l1: a must be positive and finite");
        var abs = w.Abs();
        return ((a + 1) * abs / (abs + a)).Sum();
    }

    /// <summary>TSCNC: sparsity · TransformedL1(W, a) + conditioning · κ(W), added to the task loss per weight matrix.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A weight is negative or not finite, or a is not positive.</exception>
    public static Tensor Tscnc(Tensor w, double a, double sparsity, double conditioning)
    {
        if (!(sparsity >= 0) || !double.IsFinite(sparsity)) throw new ArgumentOutOfRangeException(nameof(sparsity), sparsity, "tscnc: the sparsity weight must be finite and non-negative");
        if (!(conditioning >= 0) || !double.IsFinite(conditioning)) throw new ArgumentOutOfRangeException(nameof(conditioning), conditioning, "tscnc: the conditioning weight must be finite and non-negative");
        return sparsity * TransformedL1(w, a) + conditioning * Of(w);
    }
}
