namespace Kiln.Methods.Generative;

/// <summary>
/// The multiplicative denoising diffusion of "Dale meets Langevin": a geometric Brownian motion forward process
/// dx = μ x dt + σ x dW on data whose entries never change sign (Dale's law), which is additive in log space,
/// d log|x| = (μ − σ²/2) dt + σ dW, so x_t = x₀ exp((μ − σ²/2) t + σ √t ε). The reverse-time process is integrated
/// in log space too, x ← x ⊙ exp(·), an exponentiated-gradient-like update that can never flip a sign or reach 0.
/// </summary>
public sealed class MultiplicativeDiffusion
{
    /// <summary>A forward process dx = <paramref name="drift"/> x dt + <paramref name="volatility"/> x dW.</summary>
    /// <exception cref="ArgumentOutOfRangeException">μ is not finite, or σ is not positive and finite.</exception>
    public MultiplicativeDiffusion(double drift, double volatility)
    {
        if (!double.IsFinite(drift)) throw new ArgumentOutOfRangeException(nameof(drift), drift, "multiplicative_diffusion: drift must be finite");
        Args.Positive(volatility, nameof(volatility), "multiplicative_diffusion");
        Drift = drift;
        Volatility = volatility;
    }

    /// <summary>μ, the drift rate of the forward process.</summary>
    public double Drift { get; }

    /// <summary>σ, the volatility of the forward process.</summary>
    public double Volatility { get; }

    /// <summary>The drift of log|x|: μ − σ²/2 (Itô correction).</summary>
    public double LogDrift => Drift - Volatility * Volatility / 2;

    /// <summary>
    /// Draws x_t = x₀ exp((μ − σ²/2) t + σ √t ε), ε ~ N(0, I), for each row of <paramref name="x0"/> [n, d] at the
    /// row's time <paramref name="t"/> [n]; returns x_t and the ε used (the denoising target is a function of it).
    /// </summary>
    /// <exception cref="ShapeMismatchException">x₀ is not a matrix or t is not [n].</exception>
    /// <exception cref="ArgumentOutOfRangeException">an entry of x₀ is zero or not finite, or a time is not positive and finite.</exception>
    public (Tensor Xt, Tensor Noise) Perturb(Tensor x0, Tensor t, Generator generator)
    {
        const string op = "multiplicative_diffusion_perturb";
        ArgumentNullException.ThrowIfNull(generator);
        var tc = Times(x0, t, nameof(x0), op);
        NonZero(x0, nameof(x0), op);
        var noise = Tensor.Randn(x0.Shape, generator, dtype: x0.DType, device: x0.Device);
        return (x0 * (LogDrift * tc + Volatility * tc.Sqrt() * noise).Exp(), noise);
    }

    /// <summary>
    /// The denoising score-matching target ∇_{x_t} log p(x_t | x₀) = −(1 + (log|x_t| − log|x₀| − (μ − σ²/2) t)/(σ² t)) / x_t
    /// of the log-normal transition kernel, for x_t, x₀ [n, d] and times t [n].
    /// </summary>
    /// <exception cref="ShapeMismatchException">the shapes disagree.</exception>
    /// <exception cref="ArgumentOutOfRangeException">x_t and x₀ differ in sign somewhere (the kernel is 0 there), an entry is zero or not finite, or a time is not positive and finite.</exception>
    public Tensor DenoisingTarget(Tensor xt, Tensor x0, Tensor t)
    {
        const string op = "multiplicative_diffusion_target";
        var tc = Times(x0, t, nameof(x0), op);
        if (xt.Shape != x0.Shape) throw new ShapeMismatchException(op, nameof(xt), x0.Shape, xt.Shape);
        NonZero(x0, nameof(x0), op);
        NonZero(xt, nameof(xt), op);
        if (xt.Numel > 0 && !((xt.Sign() * x0.Sign()).Amin().Item() > 0))
            throw new ArgumentOutOfRangeException(nameof(xt), "multiplicative_diffusion_target: x_t must have the sign of x0 in every entry (the process never flips a sign)");
        var standardized = (xt.Abs().Log() - x0.Abs().Log() - LogDrift * tc) / (Volatility * Volatility * tc);
        return -(1 + standardized) / xt;
    }

    /// <summary>
    /// The denoising score-matching loss with weight λ(t) = σ² t x_t² (the log-space noise variance), which makes every
    /// term scale-free: mean over rows of Σ_j σ² t (x_t (s − ∇_{x_t} log p(x_t | x₀)))² for a score <paramref name="score"/>
    /// [n, d]. Differentiable in the score, x_t and x₀.
    /// </summary>
    /// <exception cref="ShapeMismatchException">the shapes disagree.</exception>
    /// <exception cref="ArgumentOutOfRangeException">as for <see cref="DenoisingTarget"/>.</exception>
    public Tensor DenoisingLoss(Tensor score, Tensor xt, Tensor x0, Tensor t)
    {
        const string op = "multiplicative_diffusion_loss";
        if (score.Shape != xt.Shape) throw new ShapeMismatchException(op, nameof(score), xt.Shape, score.Shape);
        var target = DenoisingTarget(xt, x0, t);
        var weight = Volatility * Volatility * t.Reshape(t.Shape[0], 1);
        return (weight * (xt * (score - target)).Pow(2)).Sum([1]).Mean();
    }

    /// <summary>
    /// One Euler–Maruyama step of the reverse-time SDE in log space, from time t to t − h:
    /// x ← x ⊙ exp([−(μ − σ²/2) + σ² (1 + x ⊙ s)] h + σ √h ξ), ξ ~ N(0, I), with s = ∇_x log p_t(x) the score at t
    /// (1 + x s is the score of log|x|). Every entry keeps its sign.
    /// </summary>
    /// <exception cref="ShapeMismatchException">the score's shape differs from x's.</exception>
    /// <exception cref="ArgumentOutOfRangeException">h is not positive and finite.</exception>
    public Tensor ReverseStep(Tensor x, Tensor score, double stepSize, Generator generator)
    {
        const string op = "multiplicative_diffusion_reverse_step";
        ArgumentNullException.ThrowIfNull(generator);
        if (score.Shape != x.Shape) throw new ShapeMismatchException(op, nameof(score), x.Shape, score.Shape);
        Args.Positive(stepSize, nameof(stepSize), op);
        double s2 = Volatility * Volatility;
        var xi = Tensor.Randn(x.Shape, generator, dtype: x.DType, device: x.Device);
        return x * ((-LogDrift + s2 * (1 + x * score)) * stepSize + Volatility * Math.Sqrt(stepSize) * xi).Exp();
    }

    /// <summary>
    /// Runs <paramref name="steps"/> reverse steps of equal size from time <paramref name="horizon"/> down to 0, starting
    /// at <paramref name="start"/> (a draw of p_T), calling <paramref name="score"/>(x, t) for ∇_x log p_t(x) at the start
    /// of each step.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">the horizon is not positive and finite, steps is below 1, or an entry of the start is zero or not finite.</exception>
    /// <exception cref="ShapeMismatchException">the score function returns a tensor of another shape.</exception>
    public Tensor Sample(Func<Tensor, double, Tensor> score, Tensor start, double horizon, int steps, Generator generator)
    {
        const string op = "multiplicative_diffusion_sample";
        ArgumentNullException.ThrowIfNull(score);
        Args.Positive(horizon, nameof(horizon), op);
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, $"{op}: steps must be at least 1");
        NonZero(start, nameof(start), op);
        double h = horizon / steps;
        var x = start;
        for (int k = 0; k < steps; k++) x = ReverseStep(x, score(x, horizon - k * h), h, generator);
        return x;
    }

    /// <summary>
    /// One step of Langevin dynamics on log|x| targeting the density whose score is <paramref name="score"/>:
    /// x ← x ⊙ exp(η (1 + x ⊙ s) + √(2η) ξ), ξ ~ N(0, I) (the multiplicative Langevin corrector; signs are kept).
    /// </summary>
    /// <exception cref="ShapeMismatchException">the score's shape differs from x's.</exception>
    /// <exception cref="ArgumentOutOfRangeException">η is not positive and finite.</exception>
    public static Tensor LangevinStep(Tensor x, Tensor score, double stepSize, Generator generator)
    {
        const string op = "multiplicative_langevin_step";
        ArgumentNullException.ThrowIfNull(generator);
        if (score.Shape != x.Shape) throw new ShapeMismatchException(op, nameof(score), x.Shape, score.Shape);
        Args.Positive(stepSize, nameof(stepSize), op);
        var xi = Tensor.Randn(x.Shape, generator, dtype: x.DType, device: x.Device);
        return x * ((1 + x * score) * stepSize + Math.Sqrt(2 * stepSize) * xi).Exp();
    }

    // Checks x is [n, d] and t is [n] with positive finite entries; returns t as a column [n, 1] for broadcasting.
    static Tensor Times(Tensor x, Tensor t, string xName, string op)
    {
        if (x.Rank != 2) throw new ShapeMismatchException(op, xName, $"{xName} must be [n, d], got {x.Shape}");
        if (t.Shape != new Shape(x.Shape[0])) throw new ShapeMismatchException(op, "t", new Shape(x.Shape[0]), t.Shape);
        if (t.Numel > 0)
        {
            double lo = t.Amin().Item(), hi = t.Amax().Item();
            if (!(lo > 0) || !double.IsFinite(hi)) throw new ArgumentOutOfRangeException("t", $"{op}: times must be positive and finite, got range [{lo}, {hi}]");
        }
        return t.Reshape(x.Shape[0], 1);
    }

    static void NonZero(Tensor x, string name, string op)
    {
        if (x.Numel == 0) return;
        var a = x.Abs();
        double lo = a.Amin().Item(), hi = a.Amax().Item();
        if (!(lo > 0) || !double.IsFinite(hi))
            throw new ArgumentOutOfRangeException(name, $"{op}: {name} must be nonzero and finite in every entry (its sign is kept), got |{name}| in [{lo}, {hi}]");
    }
}
