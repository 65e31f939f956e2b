namespace Kiln.Methods.SelfSupervised;

/// <summary>Kernels for <see cref="ConditionalOperatorDiscrepancy"/>: each maps rows a [n, p] and b [m, p] to the Gram matrix [n, m].</summary>
public static class CodKernels
{
    /// <summary>The linear kernel k(a, b) = aᵀb (features are the rows themselves).</summary>
    public static Tensor Linear(Tensor a, Tensor b) => a.MatMul(b.T);

    /// <summary>The Gaussian kernel k(a, b) = exp(-‖a - b‖² / (2σ²)).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="bandwidth"/> σ is not positive and finite.</exception>
    public static Func<Tensor, Tensor, Tensor> Gaussian(double bandwidth)
    {
        if (!(bandwidth > 0 && double.IsFinite(bandwidth))) throw new ArgumentOutOfRangeException(nameof(bandwidth), bandwidth, "cod gaussian kernel: the bandwidth must be positive and finite");
        return (a, b) =>
        {
            var d2 = a.Square().Sum(1, keepDim: true) + b.Square().Sum(1, keepDim: true).T - a.MatMul(b.T) * 2.0;
            return (d2.Clamp(min: 0) * (-0.5 / (bandwidth * bandwidth))).Exp();
        };
    }
}

/// <summary>
/// The Conditional Operator Discrepancy of Yang, Ren and Luo ("COD: Learning Conditional Invariant Representation for
/// Domain Adaptation Regression", ECCV 2024) between the conditional laws P_s(X | Y) and P_t(X | Y) of two samples, from
/// kernel embeddings: the squared Hilbert-Schmidt distance of the regularized conditional mean embedding operators
/// U_{X|Y} = C_XY (C_YY + εI)⁻¹ plus the squared Bures distance of the regularized conditional covariance operators
/// C_{XX|Y} = C_XX - C_XY (C_YY + εI)⁻¹ C_YX (centred covariances). Both are computed from Gram matrices; see
/// src/Kiln.Methods/SelfSupervised/README.md for the formulas.
/// </summary>
public static class ConditionalOperatorDiscrepancy
{
    /// <summary>
    /// COD = CMMD + CKB between source (xs [n_s, p], ys [n_s, q]) and target (xt [n_t, p], yt [n_t, q]); in domain
    /// adaptation regression ys are labels, yt the model's predictions on the target, and x the learned features.
    /// <para>CMMD = ‖Û_s - Û_t‖²_HS = tr(A_s K^X_s A_s K^Y_s) + tr(A_t K^X_t A_t K^Y_t) - 2 tr(A_s K^X_st A_t K^Y_ts),
    /// A = (K^Y + nεI)⁻¹.</para>
    /// <para>CKB = tr Ĉ_s + tr Ĉ_t - 2 ‖ε R_s⁻¹ Q_sᵀ K^X_st Q_t R_t⁻ᵀ‖_*, with tr Ĉ = ε tr((G^Y + nεI)⁻¹ G^X),
    /// G = QᵀKQ for an orthonormal basis Q [n, n-1] of the vectors orthogonal to 1 (centring), R Rᵀ = G^Y + nεI (Cholesky),
    /// and ‖·‖_* the nuclear norm (the Bures fidelity tr (Ĉ_s^½ Ĉ_t Ĉ_s^½)^½).</para>
    /// Differentiable in all four inputs; the nuclear norm's gradient is U Vᵀ over its nonzero singular values.
    /// </summary>
    /// <param name="xs">Source features [n_s, p].</param>
    /// <param name="ys">Source conditioning variable [n_s, q] (or [n_s]).</param>
    /// <param name="xt">Target features [n_t, p].</param>
    /// <param name="yt">Target conditioning variable [n_t, q] (or [n_t]).</param>
    /// <param name="epsilon">The operator regularization ε &gt; 0.</param>
    /// <param name="featureKernel">Kernel on features (default <see cref="CodKernels.Linear"/>).</param>
    /// <param name="labelKernel">Kernel on the conditioning variable (default <see cref="CodKernels.Linear"/>).</param>
    /// <exception cref="ShapeMismatchException">A shape does not fit: rows of x and y differ, or feature or label widths differ between domains.</exception>
    /// <exception cref="ArgumentException">A domain has fewer than 2 samples.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="epsilon"/> is not positive and finite.</exception>
    public static Tensor Compute(Tensor xs, Tensor ys, Tensor xt, Tensor yt, double epsilon = 0.05,
        Func<Tensor, Tensor, Tensor>? featureKernel = null, Func<Tensor, Tensor, Tensor>? labelKernel = null)
    {
        var (cmmd, ckb) = Terms(xs, ys, xt, yt, epsilon, featureKernel, labelKernel);
        return cmmd + ckb;
    }

    /// <summary>The two terms of <see cref="Compute"/>: the conditional mean discrepancy CMMD and the conditional kernel Bures distance CKB.</summary>
    /// <exception cref="ShapeMismatchException">A shape does not fit.</exception>
    /// <exception cref="ArgumentException">A domain has fewer than 2 samples.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="epsilon"/> is not positive and finite.</exception>
    public static (Tensor Cmmd, Tensor Ckb) Terms(Tensor xs, Tensor ys, Tensor xt, Tensor yt, double epsilon = 0.05,
        Func<Tensor, Tensor, Tensor>? featureKernel = null, Func<Tensor, Tensor, Tensor>? labelKernel = null)
    {
        xs = Rows(xs, nameof(xs)); ys = Rows(ys, nameof(ys)); xt = Rows(xt, nameof(xt)); yt = Rows(yt, nameof(yt));
        if (ys.Shape[0] != xs.Shape[0]) throw new ShapeMismatchException("cod", nameof(ys), $"xs {xs.Shape} and ys {ys.Shape} must have the same rows");
        if (yt.Shape[0] != xt.Shape[0]) throw new ShapeMismatchException("cod", nameof(yt), $"xt {xt.Shape} and yt {yt.Shape} must have the same rows");
        if (xt.Shape[1] != xs.Shape[1]) throw new ShapeMismatchException("cod", nameof(xt), $"xs {xs.Shape} and xt {xt.Shape} must have the same feature width");
        if (yt.Shape[1] != ys.Shape[1]) throw new ShapeMismatchException("cod", nameof(yt), $"ys {ys.Shape} and yt {yt.Shape} must have the same width");
        if (xs.Shape[0] < 2) throw new ArgumentException($"cod: the source has {xs.Shape[0]} samples; centring needs at least 2", nameof(xs));
        if (xt.Shape[0] < 2) throw new ArgumentException($"cod: the target has {xt.Shape[0]} samples; centring needs at least 2", nameof(xt));
        if (!(epsilon > 0 && double.IsFinite(epsilon))) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "cod: epsilon must be positive and finite");
        var kx = featureKernel ?? CodKernels.Linear;
        var ky = labelKernel ?? CodKernels.Linear;
        int ns = xs.Shape[0], nt = xt.Shape[0];
        var kxs = kx(xs, xs); var kxt = kx(xt, xt); var kxst = kx(xs, xt);
        var kys = ky(ys, ys); var kyt = ky(yt, yt); var kyst = ky(ys, yt);

        // Conditional mean embeddings: Û = Φ (K^Y + nεI)⁻¹ Ψᵀ, so every inner product is a trace of Gram products.
        var a_s = Regularized(kys, ns * epsilon).Inverse();
        var a_t = Regularized(kyt, nt * epsilon).Inverse();
        var cmmd = (a_s.MatMul(kxs).MatMul(a_s) * kys).Sum() + (a_t.MatMul(kxt).MatMul(a_t) * kyt).Sum()
                   - (a_s.MatMul(kxst).MatMul(a_t) * kyst).Sum() * 2.0;

        // Conditional covariances Ĉ = (1/n) Φ Q (QᵀBQ) Qᵀ Φᵀ with QᵀBQ = nε (G^Y + nεI)⁻¹, in the centred subspace.
        var qs = Centring(ns, xs); var qt = Centring(nt, xt);
        var gxs = qs.T.MatMul(kxs).MatMul(qs); var gxt = qt.T.MatMul(kxt).MatMul(qt);
        var ms = Regularized(qs.T.MatMul(kys).MatMul(qs), ns * epsilon);
        var mt = Regularized(qt.T.MatMul(kyt).MatMul(qt), nt * epsilon);
        var traceS = ms.Solve(gxs).Diagonal().Sum() * epsilon;
        var traceT = mt.Solve(gxt).Diagonal().Sum() * epsilon;
        var rs = ms.Cholesky(); var rt = mt.Cholesky();
        var cross = rs.Solve(qs.T.MatMul(kxst).MatMul(qt));
        var fidelity = NuclearNorm(rt.Solve(cross.T).T * epsilon);
        return (cmmd, traceS + traceT - fidelity * 2.0);
    }

    static Tensor Rows(Tensor t, string name)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        if (t.Rank == 1) return t.Reshape(t.Shape[0], 1);
        if (t.Rank != 2) throw new ShapeMismatchException("cod", name, $"{name} must be [n, width] or [n], got {t.Shape}");
        return t;
    }

    static Tensor Regularized(Tensor k, double shift) => k + Tensor.Eye(k.Shape[0], dtype: k.DType, device: k.Device) * shift;

    // Helmert basis: column j (j = 1..n-1) is (1, ..., 1, -j, 0, ...) / √(j(j+1)), orthonormal and orthogonal to 1.
    static Tensor Centring(int n, Tensor like)
    {
        var q = new double[n * (n - 1)];
        for (int j = 1; j < n; j++)
        {
            double s = 1 / Math.Sqrt(j * (j + 1.0));
            for (int i = 0; i < j; i++) q[i * (n - 1) + j - 1] = s;
            q[j * (n - 1) + j - 1] = -j * s;
        }
        return Tensor.FromArray(q, new Shape(n, n - 1)).To(like.DType).To(like.Device);
    }

    // ‖N‖_* from the SVD; its gradient U Vᵀ keeps only singular values above rounding (zero ones add no first-order change).
    static Tensor NuclearNorm(Tensor n) => Tensor.Custom("nuclear_norm", [n], x =>
    {
        var (_, s, _) = x[0].Svd();
        return s.Sum();
    }, g =>
    {
        var (u, s, vh) = n.Detach().Svd();
        var sv = s.To(DType.Float64).ToArray<double>();
        double cut = sv.Length == 0 ? 0 : sv[0] * Math.Max(n.Shape[0], n.Shape[1]) * 1e-15;
        int r = sv.Count(v => v > cut);
        return [u.Narrow(1, 0, r).MatMul(vh.Narrow(0, 0, r)) * g];
    });
}
