namespace Kiln.NN.Optim;

/// <summary>
/// RAdam (Liu et al. 2020, "On the Variance of the Adaptive Learning Rate and Beyond"): ρ∞ = 2/(1-b2) - 1,
/// ρ_t = ρ∞ - 2 t b2^t / (1-b2^t); while ρ_t exceeds <see cref="Threshold"/> the step is Adam's rectified by
/// r_t = sqrt((ρ_t-4)(ρ_t-2)ρ∞ / ((ρ∞-4)(ρ∞-2)ρ_t)), x -= lr r_t m̂ · sqrt(1-b2^t) / (sqrt(v) + eps) (PyTorch's
/// placement of eps), otherwise the un-adapted bias-corrected momentum x -= lr m̂. The paper's test is ρ_t &gt; 4, the
/// official and PyTorch code's ρ_t &gt; 5 (the default here); with b2 = 0.999 step 5 has ρ_5 ≈ 4.996 and is adaptive only
/// under the paper's. Weight decay is PyTorch's: L2 (g += wd x) or, with <see cref="DecoupledWeightDecay"/>,
/// x *= 1 - lr wd. State: "exp_avg", "exp_avg_sq".
/// </summary>
public sealed class RAdam : Optimizer
{
    readonly Tensor[] _m, _v;

    /// <summary>Creates the optimizer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1), a negative hyperparameter or a threshold below 4.</exception>
    public RAdam(IEnumerable<Parameter> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0,
        bool decoupledWeightDecay = false, double threshold = 5)
        : this([new ParamGroup(parameters)], learningRate, beta1, beta2, eps, weightDecay, decoupledWeightDecay, threshold) { }

    /// <summary>Creates the optimizer over parameter groups (each may set its own learning rate and weight decay).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1), a negative hyperparameter or a threshold below 4.</exception>
    public RAdam(IEnumerable<ParamGroup> groups, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0,
        bool decoupledWeightDecay = false, double threshold = 5)
        : base(groups, learningRate)
    {
        Kronecker.CheckBeta(beta1, nameof(beta1)); Kronecker.CheckBeta(beta2, nameof(beta2));
        CheckNonNegative(eps, nameof(eps)); CheckNonNegative(weightDecay, nameof(weightDecay));
        if (!(threshold >= 4) || double.IsInfinity(threshold)) throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "radam: threshold must be finite and at least 4 (r_t needs ρ_t > 4)");
        Beta1 = beta1; Beta2 = beta2; Eps = eps; WeightDecay = weightDecay; DecoupledWeightDecay = decoupledWeightDecay; Threshold = threshold;
        _m = AddState("exp_avg");
        _v = AddState("exp_avg_sq");
    }

    /// <summary>Decay of the first moment.</summary>
    public double Beta1 { get; }
    /// <summary>Decay of the second moment.</summary>
    public double Beta2 { get; }
    /// <summary>Added to sqrt(v).</summary>
    public double Eps { get; }
    /// <summary>Weight decay coefficient (L2 unless <see cref="DecoupledWeightDecay"/>).</summary>
    public double WeightDecay { get; }
    /// <summary>Whether the decay is decoupled (x *= 1 - lr wd).</summary>
    public bool DecoupledWeightDecay { get; }
    /// <summary>The step is adaptive while ρ_t exceeds this (5: PyTorch and the official code; 4: the paper).</summary>
    public double Threshold { get; }

    /// <summary>ρ_t = ρ∞ - 2 t b2^t / (1 - b2^t), the length of the approximated SMA at step t (1-based).</summary>
    /// <exception cref="ArgumentOutOfRangeException">step is below 1 or beta2 outside (0, 1).</exception>
    public static double Rho(int step, double beta2)
    {
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), step, "radam: step must be at least 1");
        if (!(beta2 > 0 && beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, "radam: beta2 must be in (0, 1)");
        double bt = Math.Pow(beta2, step);
        return 2 / (1 - beta2) - 1 - 2 * step * bt / (1 - bt);
    }

    /// <summary>The rectification r_t at step t, or null where ρ_t ≤ <paramref name="threshold"/> (the un-adapted momentum step).</summary>
    /// <exception cref="ArgumentOutOfRangeException">step is below 1, beta2 outside (0, 1) or threshold below 4.</exception>
    public static double? Rectification(int step, double beta2, double threshold = 5)
    {
        if (!(threshold >= 4)) throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "radam: threshold must be at least 4");
        double rho = Rho(step, beta2), inf = 2 / (1 - beta2) - 1;
        return rho > threshold ? Math.Sqrt((rho - 4) * (rho - 2) * inf / ((inf - 4) * (inf - 2) * rho)) : null;
    }

    /// <inheritdoc/>
    protected override void Update(int index, Tensor param, Tensor grad, double lr, int step)
    {
        double wd = WeightDecayOf(index, WeightDecay);
        var g = !DecoupledWeightDecay && wd != 0 ? grad + param * wd : grad;
        if (DecoupledWeightDecay && wd != 0) param.Mul_(1 - lr * wd);
        var m = _m[index].Mul_(Beta1).Add_(g * (1 - Beta1));
        var v = _v[index].Mul_(Beta2).Add_(g.Square() * (1 - Beta2));
        double bc1 = 1 - Math.Pow(Beta1, step), bc2 = 1 - Math.Pow(Beta2, step);
        // β2 = 0 has ρ∞ = 1 (never adaptive): the momentum step throughout.
        double? r = Beta2 > 0 ? Rectification(step, Beta2, Threshold) : null;
        param.Sub_(r is { } rect ? m / bc1 * (lr * rect * Math.Sqrt(bc2)) / (v.Sqrt() + Eps) : m / bc1 * lr);
    }
}

/// <summary>The base update the induced-metric optimiser damps.</summary>
public enum InducedMetricBase
{
    /// <summary>Momentum SGD (PyTorch's buffer b = μ b + g, b = g at step 1), s_t an EMA of ‖g‖².</summary>
    Sgd,
    /// <summary>Adam (Kiln's <see cref="Adam"/> conventions), s_t an EMA of Σ g² / (sqrt(v̂) + eps).</summary>
    Adam,
}

/// <summary>
/// The optimiser of "The Optimiser Hidden in Plain Sight: Training with the Loss Landscape's Induced Metric": the
/// metric g = I + ξ ∇f ∇fᵀ induced by embedding the loss graph gives the natural step -lr ∇f / (1 + ξ ‖∇f‖²)
/// (<see cref="NaturalStep"/>, by Sherman-Morrison), a smoothed clipping whose length never exceeds lr / (2 sqrt ξ).
/// The practical rule multiplies a base update (<see cref="InducedMetricBase"/>) by 1 / (1 + ξ ŝ_t), ŝ_t the
/// bias-corrected EMA (weight <see cref="MetricBeta"/>) of the squared gradient norm of the parameter tensor (the RMS
/// variant: of Σ g² / (sqrt(v̂) + eps)), with decoupled decay x *= 1 - lr wd. ξ = 0 is the base optimiser exactly.
/// The paper's loss-based scale L / (L² + ξ s) is not built. State: "momentum_buffer" or "exp_avg"/"exp_avg_sq", and
/// "metric_norm" (s, one value per parameter).
/// </summary>
public sealed class InducedMetric : Optimizer
{
    readonly Tensor?[] _buf, _m, _v;
    readonly Tensor?[] _s;

    /// <summary>Creates the optimizer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1) or a negative hyperparameter.</exception>
    public InducedMetric(IEnumerable<Parameter> parameters, double learningRate = 1e-3, double xi = 1, InducedMetricBase baseRule = InducedMetricBase.Adam,
        double momentum = 0.9, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double metricBeta = 0.99, double weightDecay = 0)
        : this([new ParamGroup(parameters)], learningRate, xi, baseRule, momentum, beta1, beta2, eps, metricBeta, weightDecay) { }

    /// <summary>Creates the optimizer over parameter groups (each may set its own learning rate and weight decay).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1) or a negative hyperparameter.</exception>
    public InducedMetric(IEnumerable<ParamGroup> groups, double learningRate = 1e-3, double xi = 1, InducedMetricBase baseRule = InducedMetricBase.Adam,
        double momentum = 0.9, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double metricBeta = 0.99, double weightDecay = 0)
        : base(groups, learningRate)
    {
        CheckNonNegative(xi, nameof(xi)); CheckNonNegative(momentum, nameof(momentum)); CheckNonNegative(eps, nameof(eps)); CheckNonNegative(weightDecay, nameof(weightDecay));
        Kronecker.CheckBeta(beta1, nameof(beta1)); Kronecker.CheckBeta(beta2, nameof(beta2)); Kronecker.CheckBeta(metricBeta, nameof(metricBeta));
        if (baseRule is not (InducedMetricBase.Sgd or InducedMetricBase.Adam)) throw new ArgumentOutOfRangeException(nameof(baseRule), baseRule, "induced_metric: unknown base rule");
        Xi = xi; BaseRule = baseRule; Momentum = momentum; Beta1 = beta1; Beta2 = beta2; Eps = eps; MetricBeta = metricBeta; WeightDecay = weightDecay;
        bool sgd = baseRule == InducedMetricBase.Sgd;
        _buf = AddState("momentum_buffer", p => sgd ? p.Shape : (Shape?)null);
        _m = AddState("exp_avg", p => sgd ? (Shape?)null : p.Shape);
        _v = AddState("exp_avg_sq", p => sgd ? (Shape?)null : p.Shape);
        _s = AddState("metric_norm", _ => new Shape());
    }

    /// <summary>ξ, the scale of the embedded loss axis.</summary>
    public double Xi { get; }
    /// <summary>The base update.</summary>
    public InducedMetricBase BaseRule { get; }
    /// <summary>SGD momentum μ.</summary>
    public double Momentum { get; }
    /// <summary>Adam's first-moment decay.</summary>
    public double Beta1 { get; }
    /// <summary>Adam's second-moment decay.</summary>
    public double Beta2 { get; }
    /// <summary>Adam's eps, added to sqrt(v̂).</summary>
    public double Eps { get; }
    /// <summary>Decay of the EMA s_t.</summary>
    public double MetricBeta { get; }
    /// <summary>Decoupled weight decay coefficient.</summary>
    public double WeightDecay { get; }

    /// <summary>
    /// The natural gradient step under g = I + ξ u uᵀ: g⁻¹ u = u / (1 + ξ ‖u‖²) (Sherman-Morrison), u the gradient
    /// (any shape, as one vector).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">xi is negative.</exception>
    public static Tensor NaturalStep(Tensor gradient, double xi)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        if (!(xi >= 0)) throw new ArgumentOutOfRangeException(nameof(xi), xi, "induced_metric: xi must be non-negative");
        return gradient / (1.0 + xi * gradient.Square().Sum());
    }

    /// <inheritdoc/>
    protected override void Update(int index, Tensor param, Tensor grad, double lr, int step)
    {
        Tensor u, sample;
        if (BaseRule == InducedMetricBase.Sgd)
        {
            var b = _buf[index]!;
            if (step == 1) b.Copy_(grad); else b.Mul_(Momentum).Add_(grad);
            u = b * lr;
            sample = grad.Square().Sum();
        }
        else
        {
            double bc1 = 1 - Math.Pow(Beta1, step), bc2 = 1 - Math.Pow(Beta2, step);
            var m = _m[index]!.Mul_(Beta1).Add_(grad * (1 - Beta1));
            var v = _v[index]!.Mul_(Beta2).Add_(grad.Square() * (1 - Beta2));
            var denom = v.Sqrt() * (1 / Math.Sqrt(bc2)) + Eps;
            u = m * (lr / bc1) / denom;
            sample = (grad.Square() / denom).Sum();
        }
        var s = _s[index]!.Mul_(MetricBeta).Add_(sample * (1 - MetricBeta));
        var sHat = s / (1 - Math.Pow(MetricBeta, step));
        double wd = WeightDecayOf(index, WeightDecay);
        if (wd != 0) param.Mul_(1 - lr * wd);
        param.Sub_(Xi == 0 ? u : u / (1.0 + Xi * sHat));
    }
}
