namespace Kiln.Methods.Reward;

/// <summary>How the exponential weights exp(y/β) are normalized.</summary>
public enum Normalizer
{
    /// <summary>Self-normalized over the batch: ω_i = exp(y_i/β) / mean_j exp(y_j/β) (the default).</summary>
    Batch,
    /// <summary>By the population value: ω_i = exp(y_i/β) / E[exp(y/β)] (from the model, by quadrature).</summary>
    Population,
}

/// <summary>How stage 1 uses its n samples.</summary>
public enum FeatureMode
{
    /// <summary>All steps on one batch of n samples (the default; with one step and an infinite rate, "one giant step").</summary>
    FullBatch,
    /// <summary>Fresh samples every step: n/steps per step.</summary>
    Online,
}

/// <summary>Stage-1 settings. Defaults are the assumptions documented in the Reward README.</summary>
public sealed record FeatureLearningOptions
{
    /// <summary>The feature-learning temperature β₁; +∞ (the default) means no weighting.</summary>
    public double Beta1 { get; init; } = double.PositiveInfinity;
    /// <summary>The label factor psi (y by default).</summary>
    public Psi Psi { get; init; } = Psi.Label;
    /// <summary>The weight normalizer Z (batch by default).</summary>
    public Normalizer Normalizer { get; init; } = Normalizer.Batch;
    /// <summary>Full batch (default) or online.</summary>
    public FeatureMode Mode { get; init; } = FeatureMode.FullBatch;
    /// <summary>Number of spherical gradient steps (1 by default).</summary>
    public int Steps { get; init; } = 1;
    /// <summary>The step size η on the sphere: w ← (w + η g⊥)/|w + η g⊥|; +∞ (the default) sets w ← g⊥/|g⊥|.</summary>
    public double LearningRate { get; init; } = double.PositiveInfinity;

    /// <summary>Checks the settings.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range.</exception>
    public void Validate()
    {
        if (!(Beta1 > 0)) throw new ArgumentOutOfRangeException(nameof(Beta1), Beta1, "feature learning: beta1 must be positive (+infinity for no weighting)");
        if (Steps < 1) throw new ArgumentOutOfRangeException(nameof(Steps), Steps, "feature learning: steps must be at least 1");
        if (!(LearningRate > 0)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "feature learning: the learning rate must be positive");
    }
}

/// <summary>
/// Stage 1: reward-weighted feature learning. Each neuron takes spherical gradient-ascent steps on the correlation
/// L(w) = E[ω(y) psi(y) relu(&lt;w, x&gt; + b)] with ω(y) = exp(y/β₁)/Z, whose gradient is E[T(y) 1{&lt;w,x&gt;+b &gt; 0} x]
/// with the effective label T(y) = ω(y) psi(y). All in tensor ops, so it runs on any device and dtype.
/// </summary>
public static class FeatureLearning
{
    /// <summary>
    /// ω_i = exp(y_i/β)/Z [n], computed with the maximum subtracted before exponentiation. With
    /// <paramref name="logZ"/> null, Z is the batch mean (the weights average to 1); otherwise Z = exp(logZ).
    /// β = +∞ gives ω = 1.
    /// </summary>
    public static Tensor ExpWeights(Tensor scores, double beta, double? logZ = null)
    {
        if (!(beta > 0)) throw new ArgumentOutOfRangeException(nameof(beta), beta, "exp weights: beta must be positive");
        if (double.IsPositiveInfinity(beta)) return scores.OnesLike();
        if (logZ is double lz) return (scores / beta - lz).Exp();
        var e = ((scores - scores.Max()) / beta).Exp();
        return e / e.Mean();
    }

    /// <summary>The effective labels T_i = ω(y_i) psi(y_i) [n] for labels y [n].</summary>
    public static Tensor EffectiveLabels(Tensor y, FeatureLearningOptions options, SingleIndexModel? model = null)
    {
        options.Validate();
        double? logZ = null;
        if (options.Normalizer == Normalizer.Population && !double.IsPositiveInfinity(options.Beta1))
            logZ = (model ?? throw new ArgumentNullException(nameof(model), "feature learning: the population normalizer needs the model")).LogMeanExpLabel(options.Beta1);
        var w = ExpWeights(y, options.Beta1, logZ);
        return options.Psi == Psi.Label ? w * y : w;
    }

    /// <summary>The objective Σ_j mean_i T_i relu(&lt;w_j, x_i&gt; + b_j) (a scalar), summed over neurons.</summary>
    public static Tensor Objective(Tensor x, Tensor t, Tensor w, Tensor b) =>
        ((x.MatMul(w.T) + b).Relu() * t.Unsqueeze(1)).Sum() / x.Shape[0];

    /// <summary>The Euclidean gradient of <see cref="Objective"/> in W: G_j = mean_i T_i 1{&lt;w_j,x_i&gt;+b_j &gt; 0} x_i, [N, d].</summary>
    public static Tensor Gradient(Tensor x, Tensor t, Tensor w, Tensor b)
    {
        var active = ((x.MatMul(w.T) + b) > 0).To(x.DType);
        return (active * t.Unsqueeze(1)).T.MatMul(x) / x.Shape[0];
    }

    /// <summary>
    /// One spherical ascent step per row: g⊥ = g - &lt;g, w&gt; w, then w ← (w + η g⊥)/|w + η g⊥|, or w ← g⊥/|g⊥| for
    /// η = +∞. For η = +∞ a row whose g⊥ is at round-off level (|g⊥| ≤ 1e3 ε |g|, ε the dtype's epsilon) has no
    /// direction and is left where it is.
    /// </summary>
    public static Tensor SphericalStep(Tensor w, Tensor g, double learningRate)
    {
        var gPerp = g - (g * w).Sum(1, keepDim: true) * w;
        if (!double.IsPositiveInfinity(learningRate)) return NormalizeRows(w + gPerp * learningRate);
        var norm = gPerp.Norm(2, [1], keepDim: true);
        double eps = g.DType == DType.Float64 ? 2.2e-16 : 1.2e-7;
        var keep = norm <= g.Norm(2, [1], keepDim: true) * (1e3 * eps);
        return Tensor.Where(keep, w, gPerp / Tensor.Maximum(norm, norm.FullLike(double.Epsilon)));
    }

    /// <summary>Each row divided by its Euclidean norm.</summary>
    public static Tensor NormalizeRows(Tensor w) => w / w.Norm(2, [1], keepDim: true);

    /// <summary>
    /// Runs stage 1 on <paramref name="n"/> labelled samples of <paramref name="model"/> and returns the network with
    /// its new first layer (readout unchanged). <paramref name="progress"/> receives the number of finished steps.
    /// </summary>
    public static ReluNetwork Train(ReluNetwork net, SingleIndexModel model, int n, FeatureLearningOptions options, Generator generator, Action<int>? progress = null)
    {
        options.Validate();
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "feature learning: n must be positive");
        if (net.D != model.D) throw new ShapeMismatchException("feature_learning", nameof(net), $"network input dimension {net.D} differs from the model's d = {model.D}");
        int perStep = options.Mode == FeatureMode.Online ? Math.Max(1, n / options.Steps) : n;
        var w = net.W;
        Tensor? x = null, t = null;
        for (int s = 0; s < options.Steps; s++)
        {
            if (x is null || options.Mode == FeatureMode.Online)
            {
                var (xs, ys) = model.Sample(perStep, generator);
                x = xs.To(net.W.DType); t = EffectiveLabels(ys.To(net.W.DType), options, model);
            }
            w = SphericalStep(w, Gradient(x, t!, w, net.B), options.LearningRate);
            progress?.Invoke(s + 1);
        }
        return net.WithW(w);
    }
}
