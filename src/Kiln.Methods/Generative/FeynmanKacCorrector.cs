namespace Kiln.Methods.Generative;

/// <summary>How <see cref="FeynmanKacCorrector.Resample"/> draws particle indices from their weights.</summary>
public enum ResamplingScheme
{
    /// <summary>One uniform u, positions (u + i)/n: low variance, each particle kept ⌊n w⌋ or ⌈n w⌉ times.</summary>
    Systematic,

    /// <summary>n independent draws from the categorical distribution of the weights.</summary>
    Multinomial,
}

/// <summary>
/// One factor q^β of a Feynman–Kac corrector's target Π_i q_i,t^{β_i}: the score (x, t) ↦ ∇ₓ log q_i,t(x) of a
/// diffusion model (exact or learned) sharing the sampler's forward process, and its exponent β (any finite value;
/// negative ones appear in classifier-free guidance).
/// </summary>
/// <param name="Score">Maps particles [n, d] and the forward time t ∈ [0, 1] to the scores [n, d].</param>
/// <param name="Beta">The exponent β_i of this factor.</param>
public sealed record FkcExpert(Func<Tensor, double, Tensor> Score, double Beta);

/// <summary>Settings of <see cref="FeynmanKacCorrector.Sample"/>.</summary>
public sealed record FkcOptions
{
    /// <summary>Euler–Maruyama steps from t = 1 down to <see cref="EndTime"/>.</summary>
    public int Steps { get; init; } = 200;

    /// <summary>The forward time the sampler stops at (the samples target the factors' marginals at this time).</summary>
    public double EndTime { get; init; } = 1e-3;

    /// <summary>η in the sampler's noise σ_t = η g_t: 1 is the reverse SDE, 0 the deterministic (probability-flow) drift.</summary>
    public double NoiseScale { get; init; } = 1;

    /// <summary>Resample when the effective sample size falls below this fraction of the particles (0 never resamples, 1 at every step).</summary>
    public double EssThreshold { get; init; } = 0.5;

    /// <summary>The resampling scheme.</summary>
    public ResamplingScheme Scheme { get; init; } = ResamplingScheme.Systematic;

    /// <summary>Accumulate the Feynman–Kac weights and resample; false runs the same SDE uncorrected (all weights equal).</summary>
    public bool Reweight { get; init; } = true;

    /// <summary>The particles' dtype.</summary>
    public DType DType { get; init; } = DType.Float64;

    /// <summary>The particles' device (the CPU when null).</summary>
    public Device? Device { get; init; }
}

/// <summary>The weighted particles a Feynman–Kac corrector ends with.</summary>
/// <param name="Samples">The particles [n, d] at <see cref="FkcOptions.EndTime"/>.</param>
/// <param name="LogWeights">Their self-normalized log-weights [n] (Σ exp = 1); uniform after a final resampling or without reweighting.</param>
/// <param name="Resamplings">How many times the particles were resampled.</param>
/// <param name="EffectiveSampleSizes">The effective sample size after each step's weight update, before any resampling.</param>
public sealed record FkcResult(Tensor Samples, Tensor LogWeights, int Resamplings, double[] EffectiveSampleSizes);

/// <summary>
/// Feynman–Kac correctors (Skreta et al., 2025): sample the target π_t ∝ Π_i q_i,t^{β_i} built from the marginals
/// q_i,t of diffusion models sharing one forward process dx = f(t) x dt + g(t) dW (annealing q^β, products of experts
/// q¹q², classifier-free guidance q_c^w q_u^{1−w}) by simulating, in reverse time s = 1 − t,
/// dx = (−f x + (g² + σ²)/2 Σ_i β_i ∇log q_i,t) ds + σ dW̄ with the log-weight increment
/// d log w = [(B − 1) f d + g²/2 (‖Σ_i β_i ∇log q_i,t‖² − Σ_i β_i ‖∇log q_i,t‖²)] ds, B = Σ_i β_i, and resampling
/// when the effective sample size falls. The increment is the one that makes the weighted particles solve the
/// target's Fokker–Planck–Feynman–Kac equation; it is 0 when the target is one model's own marginal (B = 1, one factor).
/// </summary>
public static class FeynmanKacCorrector
{
    /// <summary>The annealed target q_t^β of one model.</summary>
    public static IReadOnlyList<FkcExpert> Annealed(Func<Tensor, double, Tensor> score, double beta) => [new(score, beta)];

    /// <summary>The product of experts Π_i q_i,t.</summary>
    public static IReadOnlyList<FkcExpert> Product(params Func<Tensor, double, Tensor>[] scores) => [.. scores.Select(s => new FkcExpert(s, 1))];

    /// <summary>The classifier-free-guidance target q_c,t^w q_u,t^{1−w} (geometric mixture of a conditional and an unconditional model, guidance weight w).</summary>
    public static IReadOnlyList<FkcExpert> Guided(Func<Tensor, double, Tensor> conditional, Func<Tensor, double, Tensor> unconditional, double guidance) =>
        [new(conditional, guidance), new(unconditional, 1 - guidance)];

    /// <summary>
    /// The log-weight rate at forward time <paramref name="t"/> for particles whose factor scores are
    /// <paramref name="scores"/> (each [n, d]): (B − 1) f(t) d + g(t)²/2 (‖Σ_i β_i s_i‖² − Σ_i β_i ‖s_i‖²), B = Σ_i β_i;
    /// [n]. The sampler multiplies it by the step. One factor with β = 1 gives exactly 0.
    /// </summary>
    /// <exception cref="ArgumentException">The counts of scores and exponents differ or are 0.</exception>
    /// <exception cref="ShapeMismatchException">The scores are not matrices of one shape.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An exponent is not finite, or t is outside [0, 1].</exception>
    public static Tensor LogWeightRate(IReadOnlyList<Tensor> scores, IReadOnlyList<double> betas, LinearDiffusion process, double t)
    {
        const string op = "fkc_log_weight_rate";
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(betas);
        ArgumentNullException.ThrowIfNull(process);
        if (scores.Count == 0 || scores.Count != betas.Count)
            throw new ArgumentException($"{op}: need one exponent per score and at least one of each, got {scores.Count} scores and {betas.Count} exponents", nameof(betas));
        CheckBetas(betas, op);
        CheckTime(t, nameof(t), op);
        if (scores[0].Rank != 2) throw new ShapeMismatchException(op, nameof(scores), $"scores must be [n, d], got {scores[0].Shape}");
        for (int i = 1; i < scores.Count; i++)
            if (scores[i].Shape != scores[0].Shape) throw new ShapeMismatchException(op, nameof(scores), scores[0].Shape, scores[i].Shape, $"score {i} differs from score 0");
        var target = TargetScore(scores, betas);
        var weighted = betas[0] * scores[0].Square().Sum(1);
        for (int i = 1; i < scores.Count; i++) weighted = weighted + betas[i] * scores[i].Square().Sum(1);
        double b = betas.Sum(), g2 = process.DiffusionSquared(t);
        return 0.5 * g2 * (target.Square().Sum(1) - weighted) + (b - 1) * process.Drift(t) * scores[0].Shape[1];
    }

    /// <summary>
    /// Runs the corrected sampler for <paramref name="particles"/> particles in <paramref name="dims"/> dimensions:
    /// x ~ N(0, V/B) at t = 1 (V the prior's variance, so the start is the tempered product of the factors' priors), then
    /// <see cref="FkcOptions.Steps"/> Euler–Maruyama steps of the reverse SDE with the left-point log-weight increment,
    /// resampling whenever the effective sample size falls below <see cref="FkcOptions.EssThreshold"/> · n.
    /// </summary>
    /// <exception cref="ArgumentException">There are no experts, or a score returns a shape other than [n, d].</exception>
    /// <exception cref="ArgumentOutOfRangeException">A count or option is out of range, an exponent is not finite, or B = Σβ is not positive.</exception>
    public static FkcResult Sample(LinearDiffusion process, IReadOnlyList<FkcExpert> experts, int particles, int dims, Generator generator, FkcOptions? options = null)
    {
        const string op = "fkc_sample";
        ArgumentNullException.ThrowIfNull(process);
        ArgumentNullException.ThrowIfNull(experts);
        ArgumentNullException.ThrowIfNull(generator);
        var o = options ?? new FkcOptions();
        if (experts.Count == 0) throw new ArgumentException($"{op}: need at least one expert", nameof(experts));
        for (int i = 0; i < experts.Count; i++)
            if (experts[i]?.Score is null) throw new ArgumentException($"{op}: expert {i} or its score is null", nameof(experts));
        var betas = experts.Select(e => e.Beta).ToArray();
        CheckBetas(betas, op);
        double b = betas.Sum();
        if (!(b > 0)) throw new ArgumentOutOfRangeException(nameof(experts), b, $"{op}: the exponents must sum to a positive B (the start is N(0, V/B)), got B = {b}");
        if (particles < 1) throw new ArgumentOutOfRangeException(nameof(particles), particles, $"{op}: particles must be at least 1");
        if (dims < 1) throw new ArgumentOutOfRangeException(nameof(dims), dims, $"{op}: dims must be at least 1");
        if (o.Steps < 1) throw new ArgumentOutOfRangeException(nameof(options), o.Steps, $"{op}: Steps must be at least 1, got {o.Steps}");
        if (!(o.EndTime >= 0 && o.EndTime < 1)) throw new ArgumentOutOfRangeException(nameof(options), o.EndTime, $"{op}: EndTime must be in [0, 1), got {o.EndTime}");
        if (!(o.NoiseScale >= 0) || !double.IsFinite(o.NoiseScale)) throw new ArgumentOutOfRangeException(nameof(options), o.NoiseScale, $"{op}: NoiseScale must be non-negative and finite, got {o.NoiseScale}");
        if (!(o.EssThreshold >= 0 && o.EssThreshold <= 1)) throw new ArgumentOutOfRangeException(nameof(options), o.EssThreshold, $"{op}: EssThreshold must be in [0, 1], got {o.EssThreshold}");

        var shape = new Shape(particles, dims);
        var x = Tensor.Randn(shape, generator, std: Math.Sqrt(process.PriorVariance / b), dtype: o.DType, device: o.Device);
        var logW = Tensor.Zeros(new Shape(particles), o.DType, o.Device);
        double h = (1 - o.EndTime) / o.Steps;
        var ess = new List<double>(o.Steps);
        int resamplings = 0;
        for (int k = 0; k < o.Steps; k++)
        {
            double t = 1 - k * h, g2 = process.DiffusionSquared(t), s2 = o.NoiseScale * o.NoiseScale * g2;
            var scores = new Tensor[experts.Count];
            for (int i = 0; i < scores.Length; i++)
            {
                scores[i] = experts[i].Score(x, t) ?? throw new ArgumentException($"{op}: expert {i}'s score returned null", nameof(experts));
                if (scores[i].Shape != shape) throw new ArgumentException($"{op}: expert {i}'s score returned {scores[i].Shape} for particles {shape}", nameof(experts));
            }
            if (o.Reweight) logW = logW + h * LogWeightRate(scores, betas, process, t);
            var drift = -process.Drift(t) * x + 0.5 * (g2 + s2) * TargetScore(scores, betas);
            x = x + h * drift;
            if (s2 > 0) x = x + Math.Sqrt(s2 * h) * Tensor.Randn(shape, generator, dtype: o.DType, device: o.Device);
            if (!o.Reweight) continue;
            double e = EffectiveSampleSize(logW);
            ess.Add(e);
            if (e < o.EssThreshold * particles)
            {
                x = x.IndexSelect(0, Resample(logW, particles, o.Scheme, generator));
                logW = Tensor.Zeros(new Shape(particles), o.DType, o.Device);
                resamplings++;
            }
        }
        return new FkcResult(x, logW.LogSoftmax(0), resamplings, [.. ess]);
    }

    /// <summary>The effective sample size (Σ w)²/Σ w² of unnormalized log-weights [n].</summary>
    /// <exception cref="ShapeMismatchException">The log-weights are not a non-empty vector.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A log-weight is NaN or +∞, or all are −∞.</exception>
    public static double EffectiveSampleSize(Tensor logWeights)
    {
        CheckLogWeights(logWeights, "fkc_effective_sample_size");
        return Math.Exp(2 * logWeights.LogSumExp(0).Item() - (2 * logWeights).LogSumExp(0).Item());
    }

    /// <summary>
    /// <paramref name="count"/> particle indices (Int64) drawn with probabilities proportional to exp(log-weights [n]):
    /// the first i with cumulative weight above each position, positions (u + j)/count (systematic) or independent uniforms (multinomial).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The log-weights are not a non-empty vector.</exception>
    /// <exception cref="ArgumentOutOfRangeException">count is negative, a log-weight is NaN or +∞, or all are −∞.</exception>
    public static Tensor Resample(Tensor logWeights, int count, ResamplingScheme scheme, Generator generator)
    {
        const string op = "fkc_resample";
        ArgumentNullException.ThrowIfNull(generator);
        CheckLogWeights(logWeights, op);
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, $"{op}: count must be non-negative");
        var dtype = logWeights.DType == DType.Float64 ? DType.Float64 : DType.Float32;
        var cdf = logWeights.To(dtype).Softmax(0).Cumsum(0);
        var positions = scheme switch
        {
            ResamplingScheme.Systematic => (Tensor.Rand(new Shape(1), generator, dtype: dtype, device: logWeights.Device) + Tensor.Arange(0, count, 1, dtype, logWeights.Device)) / Math.Max(count, 1),
            ResamplingScheme.Multinomial => Tensor.Rand(new Shape(count), generator, dtype: dtype, device: logWeights.Device),
            _ => throw new ArgumentOutOfRangeException(nameof(scheme), scheme, $"{op}: unknown scheme"),
        };
        // Rounding can leave the last cumulative weight just below a position near 1.
        return Tensor.SearchSorted(cdf, positions, right: true).Clamp(max: logWeights.Shape[0] - 1);
    }

    static Tensor TargetScore(IReadOnlyList<Tensor> scores, IReadOnlyList<double> betas)
    {
        var sum = betas[0] * scores[0];
        for (int i = 1; i < scores.Count; i++) sum = sum + betas[i] * scores[i];
        return sum;
    }

    static void CheckBetas(IReadOnlyList<double> betas, string op)
    {
        for (int i = 0; i < betas.Count; i++)
            if (!double.IsFinite(betas[i])) throw new ArgumentOutOfRangeException(nameof(betas), betas[i], $"{op}: exponent {i} must be finite, got {betas[i]}");
    }

    static void CheckTime(double t, string name, string op)
    {
        if (!(t >= 0 && t <= 1)) throw new ArgumentOutOfRangeException(name, t, $"{op}: {name} must be in [0, 1], got {t}");
    }

    static void CheckLogWeights(Tensor logWeights, string op)
    {
        ArgumentNullException.ThrowIfNull(logWeights);
        if (logWeights.Rank != 1 || logWeights.Shape[0] == 0)
            throw new ShapeMismatchException(op, nameof(logWeights), $"logWeights must be a non-empty vector, got {logWeights.Shape}");
        var v = logWeights.To(DType.Float64).ToArray<double>();
        foreach (double w in v)
            if (double.IsNaN(w) || double.IsPositiveInfinity(w)) throw new ArgumentOutOfRangeException(nameof(logWeights), w, $"{op}: a log-weight is {w}");
        if (v.All(double.IsNegativeInfinity)) throw new ArgumentOutOfRangeException(nameof(logWeights), double.NegativeInfinity, $"{op}: every log-weight is −∞");
    }
}
