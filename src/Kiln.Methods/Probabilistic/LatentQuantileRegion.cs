using Kiln.NN;

namespace Kiln.Methods.Probabilistic;

/// <summary>
/// Calibrated multiple-output quantile regions with representation learning (Feldman, Bates and Romano, 2023): a
/// conditional generative model maps a response y in R^d (d &gt;= 2) given x to a latent z whose law is close to
/// N(0, I); in the latent space the quantile region is a ball, and the region in the response space is its preimage
/// R(x) = {y : ||z(x, y)|| &lt;= r}, of any shape (non-convex, curved). Split conformal calibration with the score
/// s(x, y) = ||z(x, y)|| (the smallest scaling of the unit latent ball whose region contains y) gives
/// P(y in R(x)) &gt;= 1 - alpha in finite samples. The representation here is a conditional affine-coupling flow, so
/// y -> z is a bijection with an exact Jacobian: layer k keeps half the coordinates A and maps the others
/// z_B = (y_B - t_k(x, y_A)) e^{-s_k(x, y_A)}, with t_k, s_k from one tanh MLP and s_k soft-clipped to (-4, 4) by
/// 4 tanh(./4); the halves alternate between layers. It is fitted by maximum likelihood (AdamW), on standardized
/// inputs and responses.
/// </summary>
public sealed class LatentQuantileRegion
{
    const double ScaleBound = 4;
    readonly MLP[] _layers;
    readonly Tensor _xMean, _xStd, _yMean, _yStd;

    LatentQuantileRegion(MLP[] layers, Tensor xMean, Tensor xStd, Tensor yMean, Tensor yStd)
    {
        _layers = layers; _xMean = xMean; _xStd = xStd; _yMean = yMean; _yStd = yStd;
    }

    /// <summary>The number of input features p.</summary>
    public int Features => _xMean.Shape[1];

    /// <summary>The response dimension d.</summary>
    public int Outputs => _yMean.Shape[1];

    /// <summary>
    /// Fits the flow to inputs <paramref name="x"/> [n, p] and responses <paramref name="y"/> [n, d] (d &gt;= 2) by
    /// full-batch AdamW on <see cref="NegLogLikelihood"/>, with <paramref name="layers"/> coupling layers whose
    /// conditioners are tanh MLPs of width <paramref name="hidden"/> (two hidden layers).
    /// </summary>
    /// <exception cref="ArgumentException">The shapes disagree, there are fewer than 2 rows, d &lt; 2, or a column is constant.</exception>
    /// <exception cref="ArgumentOutOfRangeException">layers or hidden is below 1, steps is negative, or the learning rate is not positive and finite.</exception>
    public static LatentQuantileRegion Fit(Tensor x, Tensor y, int layers = 4, int hidden = 32, int steps = 500, double learningRate = 0.01, ulong seed = 0)
    {
        ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(y);
        if (x.Rank != 2 || y.Rank != 2 || x.Shape[0] != y.Shape[0] || x.Shape[0] < 2)
            throw new ArgumentException($"latent quantile region: x must be [n, p] and y [n, d] with n >= 2, got {x.Shape} and {y.Shape}", nameof(y));
        if (y.Shape[1] < 2) throw new ArgumentException($"latent quantile region: the response must have d >= 2 outputs, got {y.Shape}", nameof(y));
        ArgumentOutOfRangeException.ThrowIfLessThan(layers, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(hidden, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        if (!(learningRate > 0) || double.IsInfinity(learningRate)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "latent quantile region: the learning rate must be positive and finite");
        var xd = x.To(DType.Float64); var yd = y.To(DType.Float64);
        var (xm, xs) = Moments(xd, nameof(x));
        var (ym, ys) = Moments(yd, nameof(y));
        int p = x.Shape[1], d = y.Shape[1], h = d / 2;
        var gen = new Generator(seed);
        var nets = new MLP[layers];
        for (int k = 0; k < layers; k++)
        {
            int kept = k % 2 == 0 ? h : d - h;
            nets[k] = new MLP([p + kept, hidden, hidden, 2 * (d - kept)], ActivationKind.Tanh, generator: gen, dtype: DType.Float64, device: x.Device);
        }
        var model = new LatentQuantileRegion(nets, xm, xs, ym, ys);
        var opt = new AdamW(nets.SelectMany(n => n.Parameters()), learningRate, weightDecay: 0);
        for (int s = 0; s < steps; s++)
        {
            opt.ZeroGrad();
            model.NegLogLikelihood(xd, yd).Backward();
            opt.Step();
        }
        return model;
    }

    /// <summary>
    /// The mean negative log-density -(1/n) sum_i log p(y_i | x_i) = mean(||z||^2 / 2 + (d/2) log 2 pi - log|det dz/dy|),
    /// differentiable in the flow's parameters and in x and y.
    /// </summary>
    /// <exception cref="ArgumentException">x is not [n, p] or y is not [n, d] for the fitted p and d.</exception>
    public Tensor NegLogLikelihood(Tensor x, Tensor y)
    {
        var (z, logDet) = Forward(x, y);
        return (z.Square().Sum(1) * 0.5 - logDet).Mean() + 0.5 * Outputs * Math.Log(2 * Math.PI);
    }

    /// <summary>The latent z(x, y), Float64 [n, d].</summary>
    /// <exception cref="ArgumentException">x is not [n, p] or y is not [n, d] for the fitted p and d.</exception>
    public Tensor Encode(Tensor x, Tensor y)
    {
        using (Autograd.NoGrad()) return Forward(x, y).Z;
    }

    /// <summary>log|det dz/dy| of the map y -> z(x, y) at each row, Float64 [n].</summary>
    /// <exception cref="ArgumentException">x is not [n, p] or y is not [n, d] for the fitted p and d.</exception>
    public Tensor LogAbsDetJacobian(Tensor x, Tensor y)
    {
        using (Autograd.NoGrad()) return Forward(x, y).LogDet;
    }

    /// <summary>The response y(x, z) with z(x, y) = <paramref name="z"/>: the inverse of <see cref="Encode"/>, Float64 [n, d].</summary>
    /// <exception cref="ArgumentException">x is not [n, p] or z is not [n, d] for the fitted p and d.</exception>
    public Tensor Decode(Tensor x, Tensor z)
    {
        var xs = Inputs(x, z, nameof(z));
        using var _ = Autograd.NoGrad();
        var hcur = z.To(DType.Float64);
        for (int k = _layers.Length - 1; k >= 0; k--)
        {
            var (a, b, s, t) = Coupling(k, xs, hcur);
            hcur = Join(k, a, b * s.Exp() + t);
        }
        return hcur * _yStd + _yMean;
    }

    /// <summary>
    /// The conformal score s(x, y) = ||z(x, y)||_2 at each row, Float64 [n]: the smallest radius r of the latent ball
    /// whose region R(x) = {y : ||z(x, y)|| &lt;= r} contains y.
    /// </summary>
    /// <exception cref="ArgumentException">x is not [n, p] or y is not [n, d] for the fitted p and d.</exception>
    public Tensor Scores(Tensor x, Tensor y) => Encode(x, y).Square().Sum(1).Sqrt();

    /// <summary>
    /// The split-conformal radius: the ceil((n + 1)(1 - alpha))-th smallest calibration score (+infinity when that exceeds
    /// n), so that the region of that radius holds a fresh exchangeable y with probability at least 1 - alpha.
    /// </summary>
    /// <exception cref="ArgumentException">x is not [n, p] or y is not [n, d] for the fitted p and d.</exception>
    /// <exception cref="ArgumentOutOfRangeException">alpha is outside (0, 1).</exception>
    public double Calibrate(Tensor x, Tensor y, double alpha) => ConformalRiskControl.SplitConformalQuantile(Scores(x, y).ToArray<double>(), alpha);

    /// <summary>Whether each y lies in the region R(x) of radius <paramref name="radius"/>: s(x, y) &lt;= radius.</summary>
    /// <exception cref="ArgumentException">x is not [n, p] or y is not [n, d] for the fitted p and d.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The radius is negative or NaN.</exception>
    public bool[] Contains(Tensor x, Tensor y, double radius)
    {
        if (!(radius >= 0)) throw new ArgumentOutOfRangeException(nameof(radius), radius, "latent quantile region: the radius must be non-negative");
        return Scores(x, y).ToArray<double>().Select(s => s <= radius).ToArray();
    }

    /// <summary>
    /// The volume of R(x) of radius <paramref name="radius"/> for each row of <paramref name="x"/>, Float64 [n], by
    /// Monte Carlo in the latent space: vol(R(x)) = V_d(r) E_{z ~ U(ball r)} |det dy/dz| with
    /// <paramref name="samples"/> uniform latent points per row.
    /// </summary>
    /// <exception cref="ArgumentException">x is not [n, p] for the fitted p.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The radius is negative or not finite, or samples is below 1.</exception>
    public Tensor Volume(Tensor x, double radius, int samples, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (!(radius >= 0) || double.IsInfinity(radius)) throw new ArgumentOutOfRangeException(nameof(radius), radius, "latent quantile region: the radius must be non-negative and finite");
        ArgumentOutOfRangeException.ThrowIfLessThan(samples, 1);
        if (x.Rank != 2 || x.Shape[1] != Features) throw new ArgumentException($"latent quantile region: x must be [n, {Features}], got {x.Shape}", nameof(x));
        int n = x.Shape[0], d = Outputs;
        // Uniform in the ball: a normal direction scaled by r u^{1/d}.
        var g = Tensor.Randn(new Shape(n * samples, d), generator, dtype: DType.Float64, device: x.Device);
        var u = Tensor.Rand(new Shape(n * samples, 1), generator, dtype: DType.Float64, device: x.Device);
        var z = g / g.Square().Sum(1, keepDim: true).Sqrt() * (u.Log() * (1.0 / d)).Exp() * radius;
        var xr = x.To(DType.Float64).Unsqueeze(1).Expand(n, samples, Features).Reshape(n * samples, Features);
        var jac = (-LogAbsDetJacobian(xr, Decode(xr, z))).Exp().Reshape(n, samples).Mean(1);
        return jac * BallVolume(d, radius);
    }

    /// <summary>The volume of the Euclidean ball of radius r in R^d: pi^{d/2} r^d / Gamma(d/2 + 1).</summary>
    public static double BallVolume(int d, double radius)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(d);
        // V_0 = 1, V_1 = 2r, V_d = V_{d-2} 2 pi r^2 / d.
        double v = d % 2 == 0 ? 1 : 2 * radius;
        for (int k = d % 2 == 0 ? 2 : 3; k <= d; k += 2) v *= 2 * Math.PI * radius * radius / k;
        return v;
    }

    (Tensor Z, Tensor LogDet) Forward(Tensor x, Tensor y)
    {
        var xs = Inputs(x, y, nameof(y));
        var hcur = (y.To(DType.Float64) - _yMean) / _yStd;
        var logDet = Tensor.Zeros(new Shape(y.Shape[0]), DType.Float64, y.Device) - _yStd.Log().Sum();
        for (int k = 0; k < _layers.Length; k++)
        {
            var (a, b, s, t) = Coupling(k, xs, hcur);
            hcur = Join(k, a, (b - t) * (-s).Exp());
            logDet = logDet - s.Sum(1);
        }
        return (hcur, logDet);
    }

    // Layer k's kept half A, transformed half B, and its log-scale s (soft-clipped) and shift t from (x, A).
    (Tensor A, Tensor B, Tensor S, Tensor T) Coupling(int k, Tensor xs, Tensor hcur)
    {
        int d = Outputs, h = d / 2;
        Tensor a = k % 2 == 0 ? hcur.Narrow(1, 0, h) : hcur.Narrow(1, h, d - h);
        Tensor b = k % 2 == 0 ? hcur.Narrow(1, h, d - h) : hcur.Narrow(1, 0, h);
        var st = _layers[k].Call(Tensor.Concat([xs, a], 1));
        int nb = b.Shape[1];
        var s = (st.Narrow(1, 0, nb) * (1 / ScaleBound)).Tanh() * ScaleBound;
        return (a, b, s, st.Narrow(1, nb, nb));
    }

    static Tensor Join(int k, Tensor a, Tensor b) => k % 2 == 0 ? Tensor.Concat([a, b], 1) : Tensor.Concat([b, a], 1);

    Tensor Inputs(Tensor x, Tensor y, string name)
    {
        ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(y, name);
        if (x.Rank != 2 || x.Shape[1] != Features) throw new ArgumentException($"latent quantile region: x must be [n, {Features}], got {x.Shape}", nameof(x));
        if (y.Rank != 2 || y.Shape[0] != x.Shape[0] || y.Shape[1] != Outputs) throw new ArgumentException($"latent quantile region: {name} must be [{x.Shape[0]}, {Outputs}], got {y.Shape}", name);
        return (x.To(DType.Float64) - _xMean) / _xStd;
    }

    static (Tensor Mean, Tensor Std) Moments(Tensor t, string name)
    {
        var mean = t.Mean(0, keepDim: true);
        var std = (t - mean).Square().Mean(0, keepDim: true).Sqrt();
        var sd = std.ToArray<double>();
        int bad = Array.FindIndex(sd, v => !(v > 0) || double.IsInfinity(v));
        if (bad >= 0) throw new ArgumentException($"latent quantile region: column {bad} of {name} is constant or not finite (std {sd[bad]})", name);
        return (mean, std);
    }
}

/// <summary>
/// The baseline region of multiple-output conformal prediction: a box [lo_j(x), hi_j(x)] from per-coordinate quantile
/// predictions, conformalised with the score max_j max(lo_j - y_j, y_j - hi_j) and inflated by the split-conformal
/// quantile Q of the scores to [lo - Q, hi + Q].
/// </summary>
public static class ConformalBox
{
    /// <summary>The box scores max_j max(lo_j - y_j, y_j - hi_j), Float64 [n], for lower, upper and y all [n, d].</summary>
    /// <exception cref="ArgumentException">The three are not all [n, d].</exception>
    public static Tensor Scores(Tensor lower, Tensor upper, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(lower); ArgumentNullException.ThrowIfNull(upper); ArgumentNullException.ThrowIfNull(y);
        if (lower.Rank != 2 || lower.Shape != upper.Shape || lower.Shape != y.Shape)
            throw new ArgumentException($"conformal box: lower, upper and y must all be [n, d], got {lower.Shape}, {upper.Shape} and {y.Shape}", nameof(y));
        var yd = y.To(DType.Float64);
        return Tensor.Maximum(lower.To(DType.Float64) - yd, yd - upper.To(DType.Float64)).Amax([1]);
    }

    /// <summary>The volume prod_j (hi_j - lo_j + 2 Q) of each inflated box, Float64 [n] (0 where a side is empty).</summary>
    /// <exception cref="ArgumentException">lower and upper are not both [n, d].</exception>
    /// <exception cref="ArgumentOutOfRangeException">Q is NaN or infinite.</exception>
    public static Tensor Volume(Tensor lower, Tensor upper, double q)
    {
        ArgumentNullException.ThrowIfNull(lower); ArgumentNullException.ThrowIfNull(upper);
        if (lower.Rank != 2 || lower.Shape != upper.Shape) throw new ArgumentException($"conformal box: lower and upper must both be [n, d], got {lower.Shape} and {upper.Shape}", nameof(upper));
        if (double.IsNaN(q) || double.IsInfinity(q)) throw new ArgumentOutOfRangeException(nameof(q), q, "conformal box: Q must be finite");
        var side = (upper.To(DType.Float64) - lower.To(DType.Float64) + 2 * q).Clamp(min: 0);
        var volume = side.Narrow(1, 0, 1).Squeeze(1);
        for (int j = 1; j < side.Shape[1]; j++) volume = volume * side.Narrow(1, j, 1).Squeeze(1);
        return volume;
    }
}
