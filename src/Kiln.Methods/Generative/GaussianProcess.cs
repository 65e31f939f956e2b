namespace Kiln.Methods.Generative;

/// <summary>The stationary covariance of a <see cref="GaussianProcess"/>, with one length scale per input dim (ARD).</summary>
public enum GpKernel
{
    /// <summary>k(a, b) = s² exp(−r²/2), r² = Σ_k ((a_k − b_k)/ℓ_k)².</summary>
    SquaredExponential,

    /// <summary>k(a, b) = s² (1 + √5 r + 5r²/3) exp(−√5 r), r as for the squared exponential.</summary>
    Matern52,
}

/// <summary>Hyperparameters of a <see cref="GaussianProcess"/>: ARD length scales ℓ, signal variance s² and noise variance σ².</summary>
/// <param name="LengthScales">ℓ_k, one per input dim, positive.</param>
/// <param name="SignalVariance">s², the prior variance of f, positive.</param>
/// <param name="NoiseVariance">σ², the variance of the observation noise, positive (a jitter for noise-free data).</param>
public sealed record GpHyperparameters(double[] LengthScales, double SignalVariance, double NoiseVariance);

/// <summary>
/// Float64 Gaussian-process regression with a constant prior mean m: y = f(x) + ε, f ~ GP(m, k), ε ~ N(0, σ²). With
/// K = k(X, X) + σ² I = L Lᵀ and α = K⁻¹(y − m) (two triangular solves, no inverse), the posterior at x* is
/// μ(x*) = m + k*ᵀ α and v(x*) = k(x*, x*) − k*ᵀ K⁻¹ k* (the variance of the latent f, without σ²).
/// The log marginal likelihood is −½ (y − m)ᵀ α − Σ_i log L_ii − (n/2) log 2π, differentiable by Kiln's autodiff in the
/// log hyperparameters θ = [log ℓ₁ … log ℓ_d, log s², log σ²].
/// </summary>
public sealed class GaussianProcess
{
    readonly Tensor theta, factor, alpha;

    /// <summary>Conditions the GP on the data: x [n, d] and y [n] (converted to float64), n ≥ 1.</summary>
    /// <exception cref="ShapeMismatchException">x is not [n, d] with n, d ≥ 1, or y is not [n].</exception>
    /// <exception cref="ArgumentOutOfRangeException">A hyperparameter is not positive and finite, ℓ has the wrong length, or m or the data are not finite.</exception>
    /// <exception cref="ArgumentException">K is not positive definite to working precision (raise σ²).</exception>
    public GaussianProcess(Tensor x, Tensor y, GpKernel kernel, GpHyperparameters hyperparameters, double mean)
    {
        const string op = "gaussian_process";
        ArgumentNullException.ThrowIfNull(hyperparameters);
        (X, Y) = Data(op, x, y);
        if (hyperparameters.LengthScales.Length != X.Shape[1])
            throw new ArgumentOutOfRangeException(nameof(hyperparameters), hyperparameters.LengthScales.Length, $"{op}: {hyperparameters.LengthScales.Length} length scales for {X.Shape[1]} input dims");
        foreach (double l in hyperparameters.LengthScales) Args.Positive(l, "LengthScales", op);
        Args.Positive(hyperparameters.SignalVariance, "SignalVariance", op);
        Args.Positive(hyperparameters.NoiseVariance, "NoiseVariance", op);
        if (!double.IsFinite(mean)) throw new ArgumentOutOfRangeException(nameof(mean), mean, $"{op}: the prior mean must be finite");
        Kernel = kernel;
        Hyperparameters = hyperparameters;
        Mean = mean;
        theta = Tensor.FromArray([.. hyperparameters.LengthScales.Select(v => Math.Log(v)), Math.Log(hyperparameters.SignalVariance), Math.Log(hyperparameters.NoiseVariance)]);
        factor = Gram(X, theta, kernel).Cholesky();
        alpha = factor.CholeskySolve((Y - mean).Unsqueeze(1));
    }

    /// <summary>The training inputs [n, d] (float64).</summary>
    public Tensor X { get; }

    /// <summary>The training targets [n] (float64).</summary>
    public Tensor Y { get; }

    /// <summary>The covariance function.</summary>
    public GpKernel Kernel { get; }

    /// <summary>ℓ, s² and σ².</summary>
    public GpHyperparameters Hyperparameters { get; }

    /// <summary>The constant prior mean m.</summary>
    public double Mean { get; }

    /// <summary>
    /// Posterior mean μ [m] and variance v [m] of the latent f at xs [m, d] (clamped at 0 against rounding).
    /// Differentiable in xs.
    /// </summary>
    /// <exception cref="ShapeMismatchException">xs is not [m, d] with the training data's d.</exception>
    public (Tensor Mean, Tensor Variance) Predict(Tensor xs)
    {
        const string op = "gaussian_process_predict";
        ArgumentNullException.ThrowIfNull(xs);
        if (xs.Rank != 2 || xs.Shape[1] != X.Shape[1])
            throw new ShapeMismatchException(op, nameof(xs), $"xs must be [m, {X.Shape[1]}], got {xs.Shape}");
        var ks = Covariance(X, xs.To(DType.Float64), theta, Kernel);            // [n, m]
        var mean = ks.T.MatMul(alpha).Squeeze(1) + Mean;
        var variance = (Hyperparameters.SignalVariance - (ks * factor.CholeskySolve(ks)).Sum(0)).Clamp(min: 0);
        return (mean, variance);
    }

    /// <summary>
    /// The prior covariance k(a, b) [n, m] of a [n, d] and b [m, d] under log hyperparameters θ [d + 2]
    /// (= [log ℓ, log s², log σ²]; σ² is not used here). Differentiable in a, b and θ.
    /// </summary>
    /// <exception cref="ShapeMismatchException">a or b is not a float64 matrix with d columns, or θ is not [d + 2].</exception>
    public static Tensor Covariance(Tensor a, Tensor b, Tensor logHyperparameters, GpKernel kernel)
    {
        const string op = "gp_covariance";
        Inputs(op, a, nameof(a), logHyperparameters);
        Inputs(op, b, nameof(b), logHyperparameters);
        int d = a.Shape[1];
        var scaled = (a.Unsqueeze(1) - b.Unsqueeze(0)) * (-logHyperparameters.Narrow(0, 0, d)).Exp();
        var r2 = scaled.Pow(2).Sum(2);
        var signal = logHyperparameters.Narrow(0, d, 1).Exp();
        if (kernel == GpKernel.SquaredExponential) return signal * (-0.5 * r2).Exp();
        if (kernel != GpKernel.Matern52) throw new ArgumentOutOfRangeException(nameof(kernel), kernel, $"{op}: unknown kernel");
        // u = √5 r; the clamp keeps sqrt's derivative finite at r = 0 (d r²/dθ is 0 there, so nothing is lost).
        var u2 = 5 * r2;
        var u = u2.Clamp(min: 1e-300).Sqrt();
        return signal * (1 + u + u2 / 3) * (-u).Exp();
    }

    /// <summary>
    /// log p(y | X, θ) = −½ (y − m)ᵀ K⁻¹ (y − m) − ½ log det K − (n/2) log 2π with K = k(X, X) + σ² I, computed through
    /// the Cholesky factor. x [n, d], y [n], θ [d + 2] float64; a scalar, differentiable in θ (and x, y).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not fit.</exception>
    /// <exception cref="ArgumentException">K is not positive definite to working precision.</exception>
    public static Tensor LogMarginalLikelihood(Tensor x, Tensor y, Tensor logHyperparameters, double mean, GpKernel kernel)
    {
        const string op = "gp_log_marginal_likelihood";
        ArgumentNullException.ThrowIfNull(y);
        Inputs(op, x, nameof(x), logHyperparameters);
        if (y.Rank != 1 || y.Shape[0] != x.Shape[0]) throw new ShapeMismatchException(op, nameof(y), $"y must be [{x.Shape[0]}], got {y.Shape}");
        int n = x.Shape[0];
        var l = Gram(x, logHyperparameters, kernel).Cholesky();
        var r = (y - mean).Unsqueeze(1);
        return -0.5 * (r * l.CholeskySolve(r)).Sum() - l.Diagonal().Log().Sum() - 0.5 * n * Math.Log(2 * Math.PI);
    }

    /// <summary>
    /// Fits ℓ, s², σ² by maximising the log marginal likelihood: y is standardised (m = its mean), then each of
    /// <paramref name="restarts"/> starts (the first at ℓ = 0.3 · the range of each input dim, s² = 1, σ² = 1e-3, or at
    /// <paramref name="warmStart"/> when given; the rest drawn log-uniformly) takes <paramref name="steps"/> Adam steps of
    /// size 0.1 on θ (the analytic gradient, equal to the autodiff one of <see cref="LogMarginalLikelihood"/>), projected onto ℓ ∈ [0.01, 100] · range, s² ∈ [0.01, 100], σ² ∈
    /// [<paramref name="minNoiseVariance"/>, 1] (standardised units). The best θ seen is scaled back to y's units.
    /// </summary>
    /// <exception cref="ShapeMismatchException">x is not [n, d] or y is not [n].</exception>
    /// <exception cref="ArgumentOutOfRangeException">restarts or steps is below 1, minNoiseVariance is not in (0, 1], the warm start has the wrong number of length scales, or the data are not finite.</exception>
    public static GaussianProcess Fit(Tensor x, Tensor y, GpKernel kernel, Generator generator, int restarts = 3, int steps = 50,
        double minNoiseVariance = 1e-6, GpHyperparameters? warmStart = null)
    {
        const string op = "gaussian_process_fit";
        ArgumentNullException.ThrowIfNull(generator);
        var (x64, y64) = Data(op, x, y);
        if (restarts < 1) throw new ArgumentOutOfRangeException(nameof(restarts), restarts, $"{op}: restarts must be at least 1");
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, $"{op}: steps must be at least 1");
        if (!(minNoiseVariance > 0 && minNoiseVariance <= 1)) throw new ArgumentOutOfRangeException(nameof(minNoiseVariance), minNoiseVariance, $"{op}: minNoiseVariance must be in (0, 1]");
        int n = x64.Shape[0], d = x64.Shape[1];
        if (warmStart is not null && warmStart.LengthScales.Length != d)
            throw new ArgumentOutOfRangeException(nameof(warmStart), warmStart.LengthScales.Length, $"{op}: {warmStart.LengthScales.Length} warm-start length scales for {d} input dims");
        var ys = y64.ToArray<double>();
        double mean = ys.Average(), sd = Math.Sqrt(ys.Sum(v => (v - mean) * (v - mean)) / n);
        if (!(sd > 1e-12 * (1 + Math.Abs(mean)))) sd = 1;
        var yStd = ys.Select(v => (v - mean) / sd).ToArray();
        var xs = x64.ToArray<double>();
        var range = Enumerable.Range(0, d).Select(k =>
        {
            var col = Enumerable.Range(0, n).Select(i => xs[i * d + k]).ToArray();
            double w = col.Max() - col.Min();
            return w > 0 ? w : 1;
        }).ToArray();
        var lo = new double[d + 2];
        var hi = new double[d + 2];
        for (int k = 0; k < d; k++) { lo[k] = Math.Log(0.01 * range[k]); hi[k] = Math.Log(100 * range[k]); }
        (lo[d], hi[d]) = (Math.Log(0.01), Math.Log(100));
        (lo[d + 1], hi[d + 1]) = (Math.Log(minNoiseVariance), 0);
        var draws = Tensor.Rand(new Shape(restarts, d + 2), generator, dtype: DType.Float64).ToArray<double>();

        double bestValue = double.NegativeInfinity;
        double[] best = [];
        for (int s = 0; s < restarts; s++)
        {
            var start = new double[d + 2];
            if (s == 0)
            {
                for (int k = 0; k < d; k++) start[k] = warmStart is null ? Math.Log(0.3 * range[k]) : Math.Log(warmStart.LengthScales[k]);
                start[d] = warmStart is null ? 0 : Math.Log(warmStart.SignalVariance / (sd * sd));
                start[d + 1] = warmStart is null ? Math.Log(1e-3) : Math.Log(warmStart.NoiseVariance / (sd * sd));
            }
            else
            {
                var u = draws.AsSpan(s * (d + 2), d + 2);
                for (int k = 0; k < d; k++) start[k] = Math.Log(0.05 * range[k]) + u[k] * Math.Log(40);
                start[d] = 2 * u[d] - 1;
                start[d + 1] = lo[d + 1] + u[d + 1] * (Math.Log(0.1) - lo[d + 1]);
            }
            var (th, value) = Ascend(xs, n, d, yStd, kernel, Project(start, lo, hi), lo, hi, steps);
            if (value > bestValue || best.Length == 0) (bestValue, best) = (value, th);
        }
        var h = new GpHyperparameters([.. best.Take(d).Select(v => Math.Exp(v))], sd * sd * Math.Exp(best[d]), sd * sd * Math.Exp(best[d + 1]));
        return new GaussianProcess(x64, y64, kernel, h, mean);
    }

    // Adam ascent on the log marginal likelihood, projected onto the box; returns the best θ visited and its value.
    static (double[] Theta, double Value) Ascend(double[] x, int n, int d, double[] y, GpKernel kernel, double[] th, double[] lo, double[] hi, int steps)
    {
        const double rate = 0.1, b1 = 0.9, b2 = 0.999;
        var m = new double[th.Length];
        var v = new double[th.Length];
        double bestValue = double.NegativeInfinity;
        var best = th;
        for (int t = 1; t <= steps + 1; t++)
        {
            var (value, g) = LogMarginalLikelihoodAndGradient(x, n, d, y, th, kernel);
            if (value > bestValue) (bestValue, best) = (value, th);
            if (t > steps || !double.IsFinite(value)) break;
            var next = new double[th.Length];
            for (int k = 0; k < th.Length; k++)
            {
                m[k] = b1 * m[k] + (1 - b1) * g[k];
                v[k] = b2 * v[k] + (1 - b2) * g[k] * g[k];
                next[k] = th[k] + rate * (m[k] / (1 - Math.Pow(b1, t))) / (Math.Sqrt(v[k] / (1 - Math.Pow(b2, t))) + 1e-8);
            }
            th = Project(next, lo, hi);
        }
        return (best, bestValue);
    }

    /// <summary>
    /// The log marginal likelihood (prior mean 0) and its gradient in θ, in plain float64 for the fit: a BO step fits
    /// hundreds of small (n ≲ 100) likelihoods, where the tensor form's per-op dispatch would dominate. The gradient is
    /// ∂/∂θ_k = ½ tr((ααᵀ − K⁻¹) ∂K/∂θ_k) (Rasmussen &amp; Williams eq. 5.9). x is row-major [n, d]. The value is −∞
    /// (and the gradient empty) when K is not positive definite to working precision.
    /// </summary>
    internal static (double Value, double[] Gradient) LogMarginalLikelihoodAndGradient(double[] x, int n, int d, double[] y, double[] th, GpKernel kernel)
    {
        var inv = th.Take(d).Select(v => Math.Exp(-v)).ToArray();
        double s2 = Math.Exp(th[d]), noise = Math.Exp(th[d + 1]);
        var kf = new double[n * n];
        var dl = new double[d][];                       // ∂K/∂log ℓ_k
        for (int k = 0; k < d; k++) dl[k] = new double[n * n];
        var sq = new double[d];
        for (int i = 0; i < n; i++)
            for (int j = 0; j <= i; j++)
            {
                double r2 = 0;
                for (int k = 0; k < d; k++) { double z = (x[i * d + k] - x[j * d + k]) * inv[k]; sq[k] = z * z; r2 += sq[k]; }
                double kv, slope;                       // slope · (Δ_k/ℓ_k)² = ∂k/∂log ℓ_k
                if (kernel == GpKernel.SquaredExponential) { kv = s2 * Math.Exp(-0.5 * r2); slope = kv; }
                else
                {
                    double u = Math.Sqrt(5 * r2), e = s2 * Math.Exp(-u);
                    kv = e * (1 + u + u * u / 3);
                    slope = 5 * e * (1 + u) / 3;
                }
                kf[i * n + j] = kf[j * n + i] = kv;
                for (int k = 0; k < d; k++) dl[k][i * n + j] = dl[k][j * n + i] = slope * sq[k];
            }
        var l = new double[n * n];
        for (int j = 0; j < n; j++)
        {
            double diag = kf[j * n + j] + noise;
            for (int k = 0; k < j; k++) diag -= l[j * n + k] * l[j * n + k];
            if (!(diag > 0)) return (double.NegativeInfinity, []);
            l[j * n + j] = Math.Sqrt(diag);
            for (int i = j + 1; i < n; i++)
            {
                double s = kf[i * n + j];
                for (int k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
                l[i * n + j] = s / l[j * n + j];
            }
        }
        var alpha = CholeskySolve(l, n, y);
        double value = -0.5 * n * Math.Log(2 * Math.PI);
        for (int i = 0; i < n; i++) value += -0.5 * y[i] * alpha[i] - Math.Log(l[i * n + i]);
        var w = new double[n * n];                      // ααᵀ − K⁻¹, column by column
        var e1 = new double[n];
        for (int c = 0; c < n; c++)
        {
            Array.Clear(e1);
            e1[c] = 1;
            var col = CholeskySolve(l, n, e1);
            for (int i = 0; i < n; i++) w[i * n + c] = alpha[i] * alpha[c] - col[i];
        }
        var grad = new double[d + 2];
        for (int p = 0; p < n * n; p++)
        {
            for (int k = 0; k < d; k++) grad[k] += 0.5 * w[p] * dl[k][p];
            grad[d] += 0.5 * w[p] * kf[p];
        }
        for (int i = 0; i < n; i++) grad[d + 1] += 0.5 * noise * w[i * n + i];
        return (value, grad);
    }

    // Solves L Lᵀ z = b for a row-major lower-triangular L [n, n].
    static double[] CholeskySolve(double[] l, int n, double[] b)
    {
        var z = (double[])b.Clone();
        for (int i = 0; i < n; i++)
        {
            for (int k = 0; k < i; k++) z[i] -= l[i * n + k] * z[k];
            z[i] /= l[i * n + i];
        }
        for (int i = n - 1; i >= 0; i--)
        {
            for (int k = i + 1; k < n; k++) z[i] -= l[k * n + i] * z[k];
            z[i] /= l[i * n + i];
        }
        return z;
    }

    static double[] Project(double[] th, double[] lo, double[] hi) => [.. th.Select((t, k) => Math.Clamp(t, lo[k], hi[k]))];

    static Tensor Gram(Tensor x, Tensor logHyperparameters, GpKernel kernel) =>
        Covariance(x, x, logHyperparameters, kernel) + logHyperparameters.Narrow(0, x.Shape[1] + 1, 1).Exp() * Tensor.Eye(x.Shape[0], dtype: DType.Float64, device: x.Device);

    static void Inputs(string op, Tensor a, string name, Tensor logHyperparameters)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(logHyperparameters);
        if (a.Rank != 2 || a.Shape[1] < 1) throw new ShapeMismatchException(op, name, $"{name} must be [n, d] with d ≥ 1, got {a.Shape}");
        if (logHyperparameters.Rank != 1 || logHyperparameters.Shape[0] != a.Shape[1] + 2)
            throw new ShapeMismatchException(op, nameof(logHyperparameters), $"θ must be [d + 2] = [{a.Shape[1] + 2}] (log ℓ, log s², log σ²), got {logHyperparameters.Shape}");
    }

    static (Tensor X, Tensor Y) Data(string op, Tensor x, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (x.Rank != 2 || x.Shape[0] < 1 || x.Shape[1] < 1) throw new ShapeMismatchException(op, nameof(x), $"x must be [n, d] with n, d ≥ 1, got {x.Shape}");
        if (y.Rank != 1 || y.Shape[0] != x.Shape[0]) throw new ShapeMismatchException(op, nameof(y), $"y must be [{x.Shape[0]}], got {y.Shape}");
        var x64 = x.Detach().To(DType.Float64);
        var y64 = y.Detach().To(DType.Float64);
        if (x64.ToArray<double>().Any(v => !double.IsFinite(v))) throw new ArgumentOutOfRangeException(nameof(x), $"{op}: x has a non-finite entry");
        if (y64.ToArray<double>().Any(v => !double.IsFinite(v))) throw new ArgumentOutOfRangeException(nameof(y), $"{op}: y has a non-finite entry");
        return (x64, y64);
    }
}
