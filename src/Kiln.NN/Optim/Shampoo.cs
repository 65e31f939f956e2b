namespace Kiln.NN.Optim;

/// <summary>The tensor views the Shampoo family shares: mode unfoldings, mode products and a parameter's matrix view.</summary>
static class Kronecker
{
    /// <summary>The mode-<paramref name="mode"/> unfolding [d_mode, numel / d_mode] of <paramref name="t"/>.</summary>
    public static Tensor Unfold(Tensor t, int mode)
    {
        int d = t.Shape[mode];
        return t.Transpose(0, mode).Contiguous().Reshape(d, t.Numel / d);
    }

    /// <summary>t ×_mode M: multiplies mode <paramref name="mode"/> of t by the symmetric matrix M.</summary>
    public static Tensor ModeProduct(Tensor t, Tensor m, int mode) =>
        t.Rank == 1 ? m.MatMul(t) : t.Transpose(mode, -1).MatMul(m).Transpose(mode, -1);

    /// <summary>A parameter as the matrix the two-sided rules precondition: [1, 1] for a scalar, [1, d] for a vector, [d0, rest] otherwise.</summary>
    public static (int Rows, int Cols) MatrixShape(Shape s) => s.Rank switch
    {
        0 => (1, 1),
        1 => (1, s[0]),
        _ => (s[0], s.Numel / Math.Max(s[0], 1)),
    };

    public static void CheckBeta(double beta, string name)
    {
        if (!(beta >= 0 && beta < 1)) throw new ArgumentOutOfRangeException(name, beta, $"optimizer: {name} must be in [0, 1)");
    }

    public static void CheckPositive(int value, string name)
    {
        if (value < 1) throw new ArgumentOutOfRangeException(name, value, $"optimizer: {name} must be at least 1");
    }
}

/// <summary>
/// Shampoo (Gupta, Koren and Singer 2018, "Shampoo: Preconditioned Stochastic Tensor Optimization"): for a parameter of
/// order k (its rank; a scalar counts as a vector of one) each mode i keeps H_i = eps I + Σ_t G_(i) G_(i)ᵀ, G_(i) the
/// mode-i unfolding of the gradient, and the step is W -= lr G ×₁ H₁^(-1/2k) ×₂ ... ×_k H_k^(-1/2k); for a matrix
/// W -= lr L^(-1/4) G R^(-1/4), for a vector (order 1) full-matrix AdaGrad W -= lr (eps I + Σ g gᵀ)^(-1/2) g. The inverse
/// roots come from <see cref="Tensor.SymmetricMatrixPower"/> every <see cref="UpdateFrequency"/> steps (1: the paper's
/// exact algorithm). Weight decay is decoupled (W *= 1 - lr wd); the paper has none.
/// State: "preconditioner_{i}" (H_i) and "inv_root_{i}" per mode.
/// </summary>
public sealed class Shampoo : Optimizer
{
    readonly Tensor?[][] _h, _roots;

    /// <summary>Creates the optimizer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative hyperparameter or an update frequency below 1.</exception>
    public Shampoo(IEnumerable<Parameter> parameters, double learningRate = 0.1, double eps = 1e-4, int updateFrequency = 1, double weightDecay = 0)
        : this([new ParamGroup(parameters)], learningRate, eps, updateFrequency, weightDecay) { }

    /// <summary>Creates the optimizer over parameter groups (each may set its own learning rate and weight decay).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative hyperparameter or an update frequency below 1.</exception>
    public Shampoo(IEnumerable<ParamGroup> groups, double learningRate = 0.1, double eps = 1e-4, int updateFrequency = 1, double weightDecay = 0)
        : base(groups, learningRate)
    {
        CheckNonNegative(eps, nameof(eps)); CheckNonNegative(weightDecay, nameof(weightDecay));
        Kronecker.CheckPositive(updateFrequency, nameof(updateFrequency));
        Eps = eps; UpdateFrequency = updateFrequency; WeightDecay = weightDecay;
        int order = Parameters.Max(p => Math.Max(p.Shape.Rank, 1));
        _h = new Tensor?[order][]; _roots = new Tensor?[order][];
        for (int i = 0; i < order; i++)
        {
            int mode = i;
            Shape? Stat(Parameter p) => mode < Math.Max(p.Shape.Rank, 1) ? new Shape(Dim(p.Shape, mode), Dim(p.Shape, mode)) : (Shape?)null;
            _h[i] = AddState($"preconditioner_{i}", Stat);
            _roots[i] = AddState($"inv_root_{i}", Stat);
        }
        using (Autograd.NoGrad())
            foreach (var h in _h)
                foreach (var t in h)
                    t?.Copy_(Tensor.Eye(t.Shape[0], dtype: t.DType, device: t.Device) * eps);
    }

    static int Dim(Shape s, int mode) => s.Rank == 0 ? 1 : s[mode];

    /// <summary>The initial diagonal eps I of every statistic.</summary>
    public double Eps { get; }
    /// <summary>Steps between recomputations of the inverse roots.</summary>
    public int UpdateFrequency { get; }
    /// <summary>Decoupled weight decay coefficient.</summary>
    public double WeightDecay { get; }

    /// <inheritdoc/>
    protected override void Update(int index, Tensor param, Tensor grad, double lr, int step)
    {
        if (param.Numel == 0) return;
        var g = param.Shape.Rank == 0 ? grad.Reshape(1) : grad;
        int order = g.Rank;
        for (int i = 0; i < order; i++)
        {
            var gi = Kronecker.Unfold(g, i);
            _h[i][index]!.Add_(gi.MatMul(gi.T));
            if ((step - 1) % UpdateFrequency == 0) _roots[i][index]!.Copy_(_h[i][index]!.SymmetricMatrixPower(-1.0 / (2 * order)));
        }
        var d = g;
        for (int i = 0; i < order; i++) d = Kronecker.ModeProduct(d, _roots[i][index]!, i);
        double wd = WeightDecayOf(index, WeightDecay);
        if (wd != 0) param.Mul_(1 - lr * wd);
        param.Sub_(d.Reshape(param.Shape.Dims.ToArray()) * lr);
    }
}

/// <summary>
/// KL-Shampoo (Lin et al. 2025, "Understanding and Improving the Shampoo Optimizer via Kullback-Leibler Minimization"):
/// Shampoo's two factors fitted to E[g gᵀ] (g = vec G) by KL minimisation, each updated with the other's inverse,
/// S_a ← (1-β) S_a + (β/d_b) G S_b⁻¹ Gᵀ and S_b ← (1-β) S_b + (β/d_a) Gᵀ S_a⁻¹ G (both from the previous factors, see
/// <see cref="UpdateFactors"/>), then W -= lr S_a^(-1/2) G S_b^(-1/2); no Adam grafting and no other state. The factors
/// start at the identity (so the first inverses exist); eps is a ridge in every inverse and root. This is the
/// idealised rule with exact inverse roots every step; the paper's practical variant (eigenbasis refreshed on a
/// schedule) is not built. Parameters are seen as matrices: [1, d] for a vector, [d0, rest] for higher ranks.
/// Weight decay is decoupled. State: "factor_left" (S_a) and "factor_right" (S_b).
/// </summary>
public sealed class KLShampoo : Optimizer
{
    readonly Tensor?[] _left, _right;

    /// <summary>Creates the optimizer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">beta outside [0, 1) or a negative hyperparameter.</exception>
    public KLShampoo(IEnumerable<Parameter> parameters, double learningRate = 1e-3, double beta = 0.05, double eps = 1e-8, double weightDecay = 0)
        : this([new ParamGroup(parameters)], learningRate, beta, eps, weightDecay) { }

    /// <summary>Creates the optimizer over parameter groups (each may set its own learning rate and weight decay).</summary>
    /// <exception cref="ArgumentOutOfRangeException">beta outside [0, 1) or a negative hyperparameter.</exception>
    public KLShampoo(IEnumerable<ParamGroup> groups, double learningRate = 1e-3, double beta = 0.05, double eps = 1e-8, double weightDecay = 0)
        : base(groups, learningRate)
    {
        Kronecker.CheckBeta(beta, nameof(beta)); CheckNonNegative(eps, nameof(eps)); CheckNonNegative(weightDecay, nameof(weightDecay));
        Beta = beta; Eps = eps; WeightDecay = weightDecay;
        _left = AddState("factor_left", p => { var (m, _) = Kronecker.MatrixShape(p.Shape); return new Shape(m, m); });
        _right = AddState("factor_right", p => { var (_, n) = Kronecker.MatrixShape(p.Shape); return new Shape(n, n); });
        using (Autograd.NoGrad())
            foreach (var t in _left.Concat(_right)) t!.Copy_(Tensor.Eye(t.Shape[0], dtype: t.DType, device: t.Device));
    }

    /// <summary>The weight β of each new gradient in the factors.</summary>
    public double Beta { get; }
    /// <summary>Ridge added to the factors' eigenvalues in every inverse and inverse root.</summary>
    public double Eps { get; }
    /// <summary>Decoupled weight decay coefficient.</summary>
    public double WeightDecay { get; }

    /// <summary>
    /// One KL-Shampoo factor update from gradients [N, d_a, d_b] (or one [d_a, d_b]), with the expectation taken as
    /// their mean: S_a' = (1-β) S_a + (β/d_b) E[G (S_b + eps I)⁻¹ Gᵀ], S_b' = (1-β) S_b + (β/d_a) E[Gᵀ (S_a + eps I)⁻¹ G],
    /// both from the given factors. With β = 1 and the exact second moments of a matrix-normal G ~ MN(0, L*, R*) it is
    /// the paper's coupled fixed-point map, whose fixed points satisfy S_a ⊗ S_b = L* ⊗ R*.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not fit together.</exception>
    /// <exception cref="ArgumentOutOfRangeException">beta outside [0, 1] or eps negative.</exception>
    public static (Tensor Left, Tensor Right) UpdateFactors(Tensor left, Tensor right, Tensor gradients, double beta, double eps = 0)
    {
        ArgumentNullException.ThrowIfNull(left); ArgumentNullException.ThrowIfNull(right); ArgumentNullException.ThrowIfNull(gradients);
        if (!(beta >= 0 && beta <= 1)) throw new ArgumentOutOfRangeException(nameof(beta), beta, "kl_shampoo: beta must be in [0, 1]");
        if (!(eps >= 0)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "kl_shampoo: eps must be non-negative");
        var g = gradients.Rank == 2 ? gradients.Unsqueeze(0) : gradients;
        if (g.Rank != 3) throw new ShapeMismatchException("kl_shampoo", nameof(gradients), $"gradients must be [N, d_a, d_b] or [d_a, d_b], got {gradients.Shape}");
        int da = g.Shape[1], db = g.Shape[2];
        if (left.Shape != new Shape(da, da)) throw new ShapeMismatchException("kl_shampoo", nameof(left), new Shape(da, da), left.Shape, "the left factor must be d_a x d_a");
        if (right.Shape != new Shape(db, db)) throw new ShapeMismatchException("kl_shampoo", nameof(right), new Shape(db, db), right.Shape, "the right factor must be d_b x d_b");
        var leftInv = left.SymmetricMatrixPower(-1, eps);
        var rightInv = right.SymmetricMatrixPower(-1, eps);
        var a = g.MatMul(rightInv).MatMul(g.T).Mean(0);
        var b = g.T.MatMul(leftInv).MatMul(g).Mean(0);
        // Symmetrised so rounding never trips the next eigh's symmetry check.
        return ((1 - beta) * left + (beta / db) * 0.5 * (a + a.T), (1 - beta) * right + (beta / da) * 0.5 * (b + b.T));
    }

    /// <inheritdoc/>
    protected override void Update(int index, Tensor param, Tensor grad, double lr, int step)
    {
        if (param.Numel == 0) return;
        var (m, n) = Kronecker.MatrixShape(param.Shape);
        var g = grad.Reshape(m, n);
        var (l, r) = UpdateFactors(_left[index]!, _right[index]!, g, Beta, Eps);
        _left[index]!.Copy_(l); _right[index]!.Copy_(r);
        var d = l.SymmetricMatrixPower(-0.5, Eps).MatMul(g).MatMul(r.SymmetricMatrixPower(-0.5, Eps));
        double wd = WeightDecayOf(index, WeightDecay);
        if (wd != 0) param.Mul_(1 - lr * wd);
        param.Sub_(d.Reshape(param.Shape.Dims.ToArray()) * lr);
    }
}

/// <summary>
/// SOAP (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam"), following the authors' code: L, R are
/// EMAs (<see cref="ShampooBeta"/>) of G Gᵀ and Gᵀ G; their eigenbases Q_L, Q_R come from eigh after the first step
/// (which only gathers statistics, as in the authors' code) and are refreshed every <see cref="PreconditionFrequency"/>
/// steps by one power-iteration step and QR (Q ← qr(L Q), after sorting Q's columns and V's matching rows or columns
/// by the estimated eigenvalues diag(Qᵀ L Q), descending). Adam runs in the rotated space: G' = Q_Lᵀ G Q_R,
/// V = b2 V + (1-b2) G'² (not rotated when the basis changes), M = b1 M + (1-b1) G kept in the original space and
/// rotated each step, W -= lr (sqrt(1-b2^τ)/(1-b1^τ)) Q_L (M' / (sqrt(V) + eps)) Q_Rᵀ (τ counts the Adam steps, so
/// eps is added before the bias correction), then decoupled decay W -= lr wd W after the step. A side whose dim exceeds
/// <see cref="MaxPreconditionDim"/> is not rotated (Q = I), and vectors and scalars are never (the authors' default
/// precondition_1d = False); with MaxPreconditionDim = 0 SOAP is exactly AdamW in these conventions.
/// Parameters of rank above 2 are seen as [d0, rest]. State: "exp_avg", "exp_avg_sq" (in the rotated space), and per
/// rotated side "gg_left"/"gg_right" and "q_left"/"q_right".
/// </summary>
public sealed class SOAP : Optimizer
{
    readonly Tensor[] _m, _v;
    readonly Tensor?[] _ggL, _ggR, _qL, _qR;

    /// <summary>Creates the optimizer; shampooBeta null uses beta2 (the authors' default).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1), a negative hyperparameter or a frequency below 1.</exception>
    public SOAP(IEnumerable<Parameter> parameters, double learningRate = 3e-3, double beta1 = 0.95, double beta2 = 0.95, double? shampooBeta = null,
        double eps = 1e-8, double weightDecay = 0.01, int preconditionFrequency = 10, int maxPreconditionDim = 10000)
        : this([new ParamGroup(parameters)], learningRate, beta1, beta2, shampooBeta, eps, weightDecay, preconditionFrequency, maxPreconditionDim) { }

    /// <summary>Creates the optimizer over parameter groups (each may set its own learning rate and weight decay).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1), a negative hyperparameter or a frequency below 1.</exception>
    public SOAP(IEnumerable<ParamGroup> groups, double learningRate = 3e-3, double beta1 = 0.95, double beta2 = 0.95, double? shampooBeta = null,
        double eps = 1e-8, double weightDecay = 0.01, int preconditionFrequency = 10, int maxPreconditionDim = 10000)
        : base(groups, learningRate)
    {
        Kronecker.CheckBeta(beta1, nameof(beta1)); Kronecker.CheckBeta(beta2, nameof(beta2)); Kronecker.CheckBeta(shampooBeta ?? beta2, nameof(shampooBeta));
        CheckNonNegative(eps, nameof(eps)); CheckNonNegative(weightDecay, nameof(weightDecay));
        Kronecker.CheckPositive(preconditionFrequency, nameof(preconditionFrequency));
        if (maxPreconditionDim < 0) throw new ArgumentOutOfRangeException(nameof(maxPreconditionDim), maxPreconditionDim, "soap: maxPreconditionDim must be non-negative");
        Beta1 = beta1; Beta2 = beta2; ShampooBeta = shampooBeta ?? beta2; Eps = eps; WeightDecay = weightDecay;
        PreconditionFrequency = preconditionFrequency; MaxPreconditionDim = maxPreconditionDim;
        _m = AddState("exp_avg");
        _v = AddState("exp_avg_sq");
        Shape? Side(Parameter p, bool left)
        {
            if (p.Shape.Rank < 2) return null;
            var (m, n) = Kronecker.MatrixShape(p.Shape);
            int d = left ? m : n;
            return d <= maxPreconditionDim ? new Shape(d, d) : (Shape?)null;
        }
        _ggL = AddState("gg_left", p => Side(p, true)); _ggR = AddState("gg_right", p => Side(p, false));
        _qL = AddState("q_left", p => Side(p, true)); _qR = AddState("q_right", p => Side(p, false));
    }

    /// <summary>Decay of the first moment.</summary>
    public double Beta1 { get; }
    /// <summary>Decay of the rotated second moment.</summary>
    public double Beta2 { get; }
    /// <summary>Decay of the L and R statistics.</summary>
    public double ShampooBeta { get; }
    /// <summary>Added to sqrt(V) before the bias correction.</summary>
    public double Eps { get; }
    /// <summary>Decoupled weight decay coefficient, applied after the step.</summary>
    public double WeightDecay { get; }
    /// <summary>Adam steps between eigenbasis refreshes.</summary>
    public int PreconditionFrequency { get; }
    /// <summary>Sides longer than this are not rotated.</summary>
    public int MaxPreconditionDim { get; }

    Tensor Project(int i, Tensor x)
    {
        if (_qL[i] is { } ql) x = ql.T.MatMul(x);
        if (_qR[i] is { } qr) x = x.MatMul(qr);
        return x;
    }

    Tensor ProjectBack(int i, Tensor x)
    {
        if (_qL[i] is { } ql) x = ql.MatMul(x);
        if (_qR[i] is { } qr) x = x.MatMul(qr.T);
        return x;
    }

    /// <inheritdoc/>
    protected override void Update(int index, Tensor param, Tensor grad, double lr, int step)
    {
        if (param.Numel == 0) return;
        var (rows, cols) = Kronecker.MatrixShape(param.Shape);
        var g = grad.Reshape(rows, cols);
        if (step == 1)
        {
            // The authors' first step: gather L and R, take their eigenbases, leave the parameter alone.
            UpdateStatistics(index, g);
            foreach (var (gg, q) in new[] { (_ggL[index], _qL[index]), (_ggR[index], _qR[index]) })
                if (gg is not null) q!.Copy_(gg.Eigh().Eigenvectors.Flip(-1));
            return;
        }
        int tau = step - 1;
        var m = _m[index].Reshape(rows, cols);
        var v = _v[index].Reshape(rows, cols);
        var gp = Project(index, g);
        m.Mul_(Beta1).Add_(g * (1 - Beta1));
        v.Mul_(Beta2).Add_(gp.Square() * (1 - Beta2));
        var direction = ProjectBack(index, Project(index, m) / (v.Sqrt() + Eps));
        double stepSize = lr * Math.Sqrt(1 - Math.Pow(Beta2, tau)) / (1 - Math.Pow(Beta1, tau));
        param.Sub_(direction.Reshape(param.Shape.Dims.ToArray()) * stepSize);
        double wd = WeightDecayOf(index, WeightDecay);
        if (wd != 0) param.Mul_(1 - lr * wd);
        UpdateStatistics(index, g);
        if (tau % PreconditionFrequency == 0) Refresh(index, v);
    }

    void UpdateStatistics(int i, Tensor g)
    {
        _ggL[i]?.Mul_(ShampooBeta).Add_(g.MatMul(g.T) * (1 - ShampooBeta));
        _ggR[i]?.Mul_(ShampooBeta).Add_(g.T.MatMul(g) * (1 - ShampooBeta));
    }

    // The authors' get_orthogonal_matrix_QR: reorder by estimated eigenvalue (V follows), then Q ← qr(L Q).
    void Refresh(int i, Tensor v)
    {
        foreach (var (gg, q, axis) in new[] { (_ggL[i], _qL[i], 0), (_ggR[i], _qR[i], 1) })
        {
            if (gg is null) continue;
            var order = (q!.T.MatMul(gg).MatMul(q)).Diagonal().ArgSort(descending: true);
            v.Copy_(v.IndexSelect(axis, order));
            var sorted = q.IndexSelect(1, order);
            q.Copy_(gg.MatMul(sorted).Qr().Q);
        }
    }
}

/// <summary>
/// Blockwise 4-bit linear-square quantisation (4-bit Shampoo, Wang et al. 2024): each block of
/// <c>blockSize</c> consecutive elements is divided by its largest magnitude (kept as the block's scale) and every
/// value is rounded to the nearest of the 16 levels R(j) = -(x_j)² for j &lt; 7, 0 for j = 7, (x_j)² for j &gt; 7,
/// x_j = -1 + 2j/15 (finer near 0, where eigenvector entries crowd). Codes are packed 8 to an Int32.
/// </summary>
public static class LinearSquareQuantizer
{
    /// <summary>The 16 levels in ascending order.</summary>
    public static IReadOnlyList<double> Levels { get; } = Enumerable.Range(0, 16).Select(j =>
    {
        double x = -1 + 2.0 * j / 15;
        return j < 7 ? -x * x : j == 7 ? 0 : x * x;
    }).ToArray();

    /// <summary>
    /// Quantises <paramref name="x"/> (any shape, flattened): returns the packed codes [ceil(numel / 8)] (Int32, code k of
    /// a word in bits 4k..4k+3) and the block scales [ceil(numel / blockSize)] in x's dtype. Ties round to the lower level.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">blockSize is not a positive multiple of 8.</exception>
    /// <exception cref="NotSupportedException">x is not Float32 or Float64.</exception>
    public static (Tensor Codes, Tensor Scales) Quantize(Tensor x, int blockSize = 64)
    {
        ArgumentNullException.ThrowIfNull(x);
        CheckBlock(blockSize);
        if (!x.DType.IsFloating()) throw new NotSupportedException($"linear_square_quantize: x has dtype {x.DType}; use Float32 or Float64");
        int n = x.Numel, blocks = (n + blockSize - 1) / blockSize;
        var flat = x.Detach().Contiguous().Reshape(n);
        var padded = Tensor.Concat([flat, Tensor.Zeros(new Shape(blocks * blockSize - n), x.DType, x.Device)], 0).Reshape(blocks, blockSize);
        var scales = padded.Abs().Amax([1], keepDim: true);
        var unit = padded / Tensor.Where(scales > 0.0, scales, scales.OnesLike());
        // The code is the number of midpoints between adjacent levels that lie strictly below the value.
        var mids = Tensor.FromArray(Enumerable.Range(0, 15).Select(j => 0.5 * (Levels[j] + Levels[j + 1])).ToArray()).To(x.DType).To(x.Device);
        var codes = (unit.Unsqueeze(-1) > mids).To(DType.Int32).Sum([-1]).To(DType.Int32).Reshape(blocks * blockSize / 8, 8);
        var shifts = Tensor.FromArray(new[] { 0, 4, 8, 12, 16, 20, 24, 28 }).To(x.Device);
        // The nibbles do not overlap, so their sum is their bitwise or (the top one wraps to the sign bit in Int32).
        var packed = (codes << shifts).Sum([1]).To(DType.Int32);
        return (packed, scales.Reshape(blocks));
    }

    /// <summary>The values encoded by <see cref="Quantize"/>: scale · R(code), reshaped to <paramref name="shape"/>.</summary>
    /// <exception cref="ArgumentException">The codes or scales do not fit the shape and block size.</exception>
    public static Tensor Dequantize(Tensor codes, Tensor scales, Shape shape, int blockSize = 64)
    {
        ArgumentNullException.ThrowIfNull(codes); ArgumentNullException.ThrowIfNull(scales);
        CheckBlock(blockSize);
        int n = shape.Numel, blocks = (n + blockSize - 1) / blockSize;
        if (codes.Numel != blocks * blockSize / 8 || scales.Numel != blocks)
            throw new ArgumentException($"linear_square_dequantize: {codes.Numel} code words and {scales.Numel} scales do not encode shape {shape} in blocks of {blockSize} " +
                $"(expected {blocks * blockSize / 8} and {blocks})", nameof(codes));
        var shifts = Tensor.FromArray(new[] { 0, 4, 8, 12, 16, 20, 24, 28 }).To(codes.Device);
        var fifteen = Tensor.Scalar(15, DType.Int32, codes.Device);
        var idx = ((codes.Reshape(codes.Numel, 1) >> shifts) & fifteen).Reshape(blocks * blockSize);
        var levels = Tensor.FromArray(Levels.ToArray()).To(scales.DType).To(scales.Device);
        var unit = levels.IndexSelect(0, idx.To(DType.Int64)).Reshape(blocks, blockSize);
        return (unit * scales.Reshape(blocks, 1)).Reshape(blocks * blockSize).Narrow(0, 0, n).Reshape(shape.Dims.ToArray());
    }

    static void CheckBlock(int blockSize)
    {
        if (blockSize < 8 || blockSize % 8 != 0) throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "linear_square_quantize: blockSize must be a positive multiple of 8");
    }
}

/// <summary>
/// 4-bit Shampoo (Wang et al. 2024, "4-bit Shampoo for Memory-Efficient Network Training"): each preconditioner
/// statistic A (L = EMA of G Gᵀ, R = EMA of Gᵀ G, weight <see cref="Beta"/>) is stored as its eigenvalues λ (full
/// precision) and its eigenvector matrix U quantised to 4 bits (<see cref="LinearSquareQuantizer"/>). Each step
/// rebuilds A from the dequantised U rectified by <see cref="BjorckSteps"/> Björck iterations, adds the new gradient
/// term, re-decomposes by eigh and re-quantises; the step is W -= lr L̂ G R̂ with the inverse fourth roots
/// Â = Ū diag((λ + eps)^(-1/4)) Ūᵀ formed from the rectified quantised Ū (<see cref="QuantizedInverseRoot"/>'s rule).
/// Simplified from the paper: statistics and roots are refreshed every step (the paper's T1/T2 intervals are 1) and
/// there is no grafting. Parameters are seen as matrices ([1, d] for vectors). Weight decay is decoupled.
/// State: per side "eigenvalues_*", "eigenvector_codes_*" (Int32, packed) and "eigenvector_scales_*".
/// </summary>
public sealed class FourBitShampoo : Optimizer
{
    readonly Tensor?[] _lamL, _lamR, _codesL, _codesR, _scalesL, _scalesR;

    /// <summary>Creates the optimizer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">beta outside [0, 1), a negative hyperparameter, or a block size that is not a positive multiple of 8.</exception>
    public FourBitShampoo(IEnumerable<Parameter> parameters, double learningRate = 0.1, double beta = 0.95, double eps = 1e-6, int blockSize = 64, int bjorckSteps = 1, double weightDecay = 0)
        : this([new ParamGroup(parameters)], learningRate, beta, eps, blockSize, bjorckSteps, weightDecay) { }

    /// <summary>Creates the optimizer over parameter groups (each may set its own learning rate and weight decay).</summary>
    /// <exception cref="ArgumentOutOfRangeException">beta outside [0, 1), a negative hyperparameter, or a block size that is not a positive multiple of 8.</exception>
    public FourBitShampoo(IEnumerable<ParamGroup> groups, double learningRate = 0.1, double beta = 0.95, double eps = 1e-6, int blockSize = 64, int bjorckSteps = 1, double weightDecay = 0)
        : base(groups, learningRate)
    {
        Kronecker.CheckBeta(beta, nameof(beta)); CheckNonNegative(eps, nameof(eps)); CheckNonNegative(weightDecay, nameof(weightDecay));
        if (blockSize < 8 || blockSize % 8 != 0) throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "four_bit_shampoo: blockSize must be a positive multiple of 8");
        if (bjorckSteps < 0) throw new ArgumentOutOfRangeException(nameof(bjorckSteps), bjorckSteps, "four_bit_shampoo: bjorckSteps must be non-negative");
        Beta = beta; Eps = eps; BlockSize = blockSize; BjorckSteps = bjorckSteps; WeightDecay = weightDecay;
        int Side(Parameter p, bool left) { var (m, n) = Kronecker.MatrixShape(p.Shape); return left ? m : n; }
        int Words(int d) => (d * d + blockSize - 1) / blockSize * blockSize / 8;
        int Blocks(int d) => (d * d + blockSize - 1) / blockSize;
        _lamL = AddState("eigenvalues_left", p => new Shape(Side(p, true)));
        _lamR = AddState("eigenvalues_right", p => new Shape(Side(p, false)));
        _codesL = AddState("eigenvector_codes_left", p => new Shape(Words(Side(p, true))), DType.Int32);
        _codesR = AddState("eigenvector_codes_right", p => new Shape(Words(Side(p, false))), DType.Int32);
        _scalesL = AddState("eigenvector_scales_left", p => new Shape(Blocks(Side(p, true))));
        _scalesR = AddState("eigenvector_scales_right", p => new Shape(Blocks(Side(p, false))));
    }

    /// <summary>EMA weight of the old statistic.</summary>
    public double Beta { get; }
    /// <summary>Ridge added to the eigenvalues in the inverse roots.</summary>
    public double Eps { get; }
    /// <summary>Elements per quantisation block.</summary>
    public int BlockSize { get; }
    /// <summary>Björck iterations applied to each dequantised eigenvector matrix.</summary>
    public int BjorckSteps { get; }
    /// <summary>Decoupled weight decay coefficient.</summary>
    public double WeightDecay { get; }

    /// <summary>
    /// The inverse fourth root of the symmetric PSD <paramref name="statistic"/> [n, n] as 4-bit Shampoo forms it:
    /// eigh, quantise the eigenvectors U to 4 bits, dequantise, rectify with <paramref name="bjorckSteps"/> Björck
    /// iterations to Ū, and return Ū diag((λ + eps)^(-1/4)) Ūᵀ.
    /// </summary>
    /// <exception cref="ArgumentException">The statistic is not a symmetric square matrix (from <see cref="Tensor.Eigh"/>).</exception>
    public static Tensor QuantizedInverseRoot(Tensor statistic, double eps, int blockSize = 64, int bjorckSteps = 1)
    {
        ArgumentNullException.ThrowIfNull(statistic);
        var (w, u) = statistic.Eigh();
        var (codes, scales) = LinearSquareQuantizer.Quantize(u, blockSize);
        return Root(w, LinearSquareQuantizer.Dequantize(codes, scales, u.Shape, blockSize).Bjorck(bjorckSteps), eps);
    }

    static Tensor Root(Tensor w, Tensor u, double eps) => (u * (w.Clamp(min: 0) + eps).Pow(-0.25).Unsqueeze(0)).MatMul(u.T);

    // Rebuilds one side's statistic, folds in the new term, stores it re-quantised; returns its inverse fourth root.
    Tensor Side(Tensor lam, Tensor codes, Tensor scales, Tensor term)
    {
        var u = LinearSquareQuantizer.Dequantize(codes, scales, term.Shape, BlockSize).Bjorck(BjorckSteps);
        var a = Beta * (u * lam.Unsqueeze(0)).MatMul(u.T) + (1 - Beta) * term;
        var (w, v) = (0.5 * (a + a.T)).Eigh();
        var (c, s) = LinearSquareQuantizer.Quantize(v, BlockSize);
        lam.Copy_(w); codes.Copy_(c); scales.Copy_(s);
        return Root(w, LinearSquareQuantizer.Dequantize(c, s, v.Shape, BlockSize).Bjorck(BjorckSteps), Eps);
    }

    /// <inheritdoc/>
    protected override void Update(int index, Tensor param, Tensor grad, double lr, int step)
    {
        if (param.Numel == 0) return;
        var (m, n) = Kronecker.MatrixShape(param.Shape);
        var g = grad.Reshape(m, n);
        var left = Side(_lamL[index]!, _codesL[index]!, _scalesL[index]!, g.MatMul(g.T));
        var right = Side(_lamR[index]!, _codesR[index]!, _scalesR[index]!, g.T.MatMul(g));
        double wd = WeightDecayOf(index, WeightDecay);
        if (wd != 0) param.Mul_(1 - lr * wd);
        param.Sub_(left.MatMul(g).MatMul(right).Reshape(param.Shape.Dims.ToArray()) * lr);
    }
}

/// <summary>
/// Analyses of Shampoo's preconditioner as tools: the Frobenius-optimal Kronecker approximation of a gradient
/// covariance (Morwani et al. 2024, "A New Perspective on Shampoo's Preconditioner") and the steepest-descent directions
/// of "Old Optimizer, New Norm: An Anthology" (Bernstein and Newhouse 2024).
/// </summary>
public static class ShampooAnalysis
{
    /// <summary>
    /// The Kronecker approximation σ A ⊗ B of C = E[vec(G) vec(G)ᵀ] (row-major vec, G over <paramref name="gradients"/>
    /// [N, m, n], expectation as their mean) by power iteration on Van Loan's rearrangement of C, whose top singular pair
    /// is the Frobenius-optimal Kronecker factor pair. Both factors start at I and are updated together,
    /// A ← E[G B Gᵀ], B ← E[Gᵀ A G] (the rearranged matrix and its transpose applied to the other factor), each scaled to
    /// unit Frobenius norm; σ = E[⟨G, A G B⟩] = ⟨C, A ⊗ B⟩. One step gives A ∝ E[G Gᵀ] and B ∝ E[Gᵀ G]: Shampoo's L and R
    /// up to scalars, so (L^(1/2) ⊗ R^(1/2))² = L ⊗ R is this one-step approximation up to scale.
    /// </summary>
    /// <exception cref="ShapeMismatchException">gradients is not [N, m, n].</exception>
    /// <exception cref="ArgumentOutOfRangeException">steps is below 1.</exception>
    public static (Tensor A, Tensor B, double Scale) KroneckerFactors(Tensor gradients, int steps = 1)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        if (gradients.Rank != 3) throw new ShapeMismatchException("kronecker_factors", nameof(gradients), $"gradients must be [N, m, n], got {gradients.Shape}");
        Kronecker.CheckPositive(steps, nameof(steps));
        var g = gradients.Detach();
        int m = g.Shape[1], n = g.Shape[2];
        var a = Tensor.Eye(m, dtype: g.DType, device: g.Device);
        var b = Tensor.Eye(n, dtype: g.DType, device: g.Device);
        for (int s = 0; s < steps; s++)
        {
            var na = g.MatMul(b).MatMul(g.T).Mean(0);
            var nb = g.T.MatMul(a).MatMul(g).Mean(0);
            a = na / na.MatrixNorm(); b = nb / nb.MatrixNorm();
        }
        double scale = (g * a.MatMul(g).MatMul(b)).Sum([1, 2]).Mean().Item();
        return (a, b, scale);
    }

    /// <summary>
    /// Steepest descent under the l∞ norm (Adam with its EMAs switched off): sign(g), which attains
    /// max over ‖d‖∞ ≤ 1 of ⟨g, d⟩ = ‖g‖₁ (zero where g is zero).
    /// </summary>
    public static Tensor SignDescent(Tensor gradient)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        return gradient.Sign();
    }

    /// <summary>
    /// Steepest descent under the spectral norm (Shampoo with its accumulators switched off) for G [..., m, n]:
    /// (G Gᵀ)^(-1/4) G (Gᵀ G)^(-1/4) with pseudo-inverse roots (eigenvalues at or below <paramref name="rcond"/> times the
    /// largest count as zero), which is U_r V_rᵀ from G's reduced SVD restricted to its r nonzero singular values; it
    /// attains max over ‖D‖₂ ≤ 1 of ⟨G, D⟩ = ‖G‖_* (the nuclear norm).
    /// </summary>
    /// <exception cref="ShapeMismatchException">G has fewer than two dims.</exception>
    public static Tensor SpectralDescent(Tensor gradient, double rcond = 1e-10)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        if (gradient.Rank < 2) throw new ShapeMismatchException("spectral_descent", nameof(gradient), $"gradient must be [..., m, n], got {gradient.Shape}");
        var g = gradient.Detach();
        var left = Symmetric(g.MatMul(g.T)).SymmetricMatrixPower(-0.25, rcond: rcond);
        var right = Symmetric(g.T.MatMul(g)).SymmetricMatrixPower(-0.25, rcond: rcond);
        return left.MatMul(g).MatMul(right);
    }

    /// <summary>
    /// SOAP's link to Shampoo in its idealised setting (no momentum, one fixed gradient set): with L = Σ G_k G_kᵀ and
    /// R = Σ G_kᵀ G_k over <paramref name="gradients"/> [N, m, n] and their eigenbases Q_L, Q_R, Adafactor's factored
    /// second moment of the rotated gradients G'_k = Q_Lᵀ G_k Q_R (row sums r and column sums c of Σ G'_k ∘ G'_k, which
    /// are eig(L) and eig(R), combined as r cᵀ / Σ r) preconditions <paramref name="gradient"/> [m, n] in that basis:
    /// Q_L (G' / sqrt(r cᵀ / Σ r)) Q_Rᵀ. This equals sqrt(tr L) L^(-1/2) G R^(-1/2) (Shampoo with exponent 1/2) when L
    /// and R are nonsingular. Returns the step and the row and column sums.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not fit together.</exception>
    public static (Tensor Step, Tensor RowSums, Tensor ColumnSums) EigenbasisAdafactor(Tensor gradients, Tensor gradient)
    {
        ArgumentNullException.ThrowIfNull(gradients); ArgumentNullException.ThrowIfNull(gradient);
        if (gradients.Rank != 3) throw new ShapeMismatchException("eigenbasis_adafactor", nameof(gradients), $"gradients must be [N, m, n], got {gradients.Shape}");
        if (gradient.Shape != new Shape(gradients.Shape[1], gradients.Shape[2]))
            throw new ShapeMismatchException("eigenbasis_adafactor", nameof(gradient), new Shape(gradients.Shape[1], gradients.Shape[2]), gradient.Shape, "the gradient must be one [m, n] of the set's shape");
        var gs = gradients.Detach();
        var ql = Symmetric(gs.MatMul(gs.T).Sum(0)).Eigh().Eigenvectors;
        var qr = Symmetric(gs.T.MatMul(gs).Sum(0)).Eigh().Eigenvectors;
        var second = ql.T.MatMul(gs).MatMul(qr).Square().Sum(0);
        var rows = second.Sum(1); var cols = second.Sum(0);
        var v = rows.Unsqueeze(1) * cols.Unsqueeze(0) / rows.Sum();
        var step = ql.MatMul(ql.T.MatMul(gradient.Detach()).MatMul(qr) / v.Sqrt()).MatMul(qr.T);
        return (step, rows, cols);
    }

    static Tensor Symmetric(Tensor a) => 0.5 * (a + a.T);
}
