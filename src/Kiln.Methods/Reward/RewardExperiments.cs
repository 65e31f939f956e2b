using System.Diagnostics;

namespace Kiln.Methods.Reward;

/// <summary>One stage-1 run: link, sizes, temperature and seed. Defaults are the README's assumptions.</summary>
public sealed record FeatureSetting
{
    /// <summary>The link σ*.</summary>
    public required Link Link { get; init; }
    /// <summary>Dimension d.</summary>
    public int D { get; init; } = 64;
    /// <summary>Stage-1 samples n.</summary>
    public int N { get; init; } = 4096;
    /// <summary>Neurons N.</summary>
    public int Neurons { get; init; } = 256;
    /// <summary>Bias range B: b_j ~ U[-B, B].</summary>
    public double BiasRange { get; init; } = 1;
    /// <summary>Label noise standard deviation.</summary>
    public double NoiseStd { get; init; } = 0.1;
    /// <summary>The seed of θ*, the initialization and the samples (the same for every β₁, so sweeps compare like with like).</summary>
    public int Seed { get; init; }
    /// <summary>Stage-1 settings (β₁ included).</summary>
    public FeatureLearningOptions Options { get; init; } = new();
    /// <summary>Dtype of the simulation.</summary>
    public DType DType { get; init; } = DType.Float32;
    /// <summary>Device of the simulation.</summary>
    public Device? Device { get; init; }
}

/// <summary>The outcome of one stage-1 run.</summary>
/// <param name="Link">Link name.</param>
/// <param name="D">Dimension.</param>
/// <param name="N">Samples.</param>
/// <param name="Neurons">Neurons.</param>
/// <param name="Beta1">β₁ (+∞ for no weighting).</param>
/// <param name="Seed">Seed.</param>
/// <param name="Recovered">Fraction of neurons with m_j = |&lt;w_j, θ*&gt;| ≥ 1/2.</param>
/// <param name="MeanOverlap">Mean of m_j.</param>
/// <param name="MaxOverlap">Largest m_j.</param>
/// <param name="C1">c_1 of the noise-averaged effective label T (the first-order signal).</param>
/// <param name="Signal">c_1(T)²/E[T²]: the share of the label's power a single step can align with θ*.</param>
/// <param name="Seconds">Wall time of the run.</param>
public sealed record FeatureResult(string Link, int D, int N, int Neurons, double Beta1, int Seed, double Recovered, double MeanOverlap, double MaxOverlap,
    double C1, double Signal, double Seconds);

/// <summary>One stage-2 sweep: features learned once, then readouts for every β₂ and weighting.</summary>
public sealed record ReadoutSetting
{
    /// <summary>The link σ*.</summary>
    public required Link Link { get; init; }
    /// <summary>Dimension d.</summary>
    public int D { get; init; } = 16;
    /// <summary>Neurons N.</summary>
    public int Neurons { get; init; } = 64;
    /// <summary>Bias range B.</summary>
    public double BiasRange { get; init; } = 1;
    /// <summary>Label noise standard deviation.</summary>
    public double NoiseStd { get; init; } = 0.1;
    /// <summary>Stage-1 samples (separate from the readout's).</summary>
    public int FeatureSamples { get; init; } = 4096;
    /// <summary>Stage-1 settings.</summary>
    public FeatureLearningOptions FeatureOptions { get; init; } = new();
    /// <summary>Readout samples n.</summary>
    public int N { get; init; } = 2000;
    /// <summary>Ridge penalty λ.</summary>
    public double Lambda { get; init; } = 1e-3;
    /// <summary>Pilot fraction for the surrogate weighting.</summary>
    public double PilotFraction { get; init; } = 0.5;
    /// <summary>Seed.</summary>
    public int Seed { get; init; }
    /// <summary>Evaluation settings.</summary>
    public TiltOptions Tilt { get; init; } = new();
    /// <summary>Dtype of the simulation.</summary>
    public DType DType { get; init; } = DType.Float32;
    /// <summary>Device of the simulation.</summary>
    public Device? Device { get; init; }
}

/// <summary>One readout at one β₂.</summary>
/// <param name="Link">Link name.</param>
/// <param name="D">Dimension.</param>
/// <param name="N">Readout samples n.</param>
/// <param name="Seed">Seed.</param>
/// <param name="Weighting">unweighted, label or surrogate.</param>
/// <param name="Beta2">β₂.</param>
/// <param name="Recovered">Stage-1 recovered fraction of the shared features.</param>
/// <param name="Realized">E_{π̂}[r*].</param>
/// <param name="Oracle">E_{π*}[r*].</param>
/// <param name="Base">E_{π₀}[r*].</param>
/// <param name="Gap">J(π*) - J(π̂) = β₂ KL(π̂‖π*).</param>
/// <param name="ValueGap">E_{π*}[r*] - E_{π̂}[r*].</param>
/// <param name="Chi2">χ²(π*‖π₀).</param>
/// <param name="NEff">n/(1 + χ²).</param>
/// <param name="WeightEss">Effective sample size of the readout's weights.</param>
/// <param name="Exact">Whether π̂ was integrated exactly.</param>
/// <param name="Ess">Importance-sampling effective sample size for π̂ (NaN when exact).</param>
/// <param name="Seconds">Wall time of the setting (shared by its rows).</param>
/// <param name="OracleObjective">J(π*); the learned policy keeps (J(π*) - Gap - Base)/(J(π*) - Base) of the oracle's regularized gain.</param>
public sealed record ReadoutResult(string Link, int D, int N, int Seed, string Weighting, double Beta2, double Recovered, double Realized, double Oracle, double Base,
    double Gap, double ValueGap, double Chi2, double NEff, double WeightEss, bool Exact, double Ess, double Seconds, double OracleObjective);

/// <summary>The experiments behind `kiln reward`: stage-1 recovery against β₁, and readouts against β₂.</summary>
public static class RewardExperiments
{
    /// <summary>Runs stage 1 once and measures the recovery of θ*.</summary>
    public static FeatureResult Features(FeatureSetting s)
    {
        var sw = Stopwatch.StartNew();
        using var scope = Tensor.Scope();
        var g = new Generator((ulong)s.Seed);
        var model = new SingleIndexModel(s.D, s.Link, s.NoiseStd, g, s.DType, s.Device);
        var net = ReluNetwork.Random(s.Neurons, s.D, s.BiasRange, g, s.DType, s.Device);
        var trained = FeatureLearning.Train(net, model, s.N, s.Options, g);
        var m = trained.Overlaps(model.Theta).ToDoubleArray();
        var (c1, signal) = FirstOrderSignal(s.Link, s.Options.Beta1, s.Options.Psi, s.NoiseStd);
        return new FeatureResult(s.Link.Name, s.D, s.N, s.Neurons, s.Options.Beta1, s.Seed,
            m.Count(v => v >= 0.5) / (double)m.Length, m.Average(), m.Max(), c1, signal, sw.Elapsed.TotalSeconds);
    }

    /// <summary>c_1(T) and c_1(T)²/E[T²] for the noise-averaged effective label T at temperature β.</summary>
    public static (double C1, double Signal) FirstOrderSignal(Link link, double beta, Psi psi, double noiseStd)
    {
        var t = Hermite.EffectiveLabel(link, beta, psi, noiseStd);
        var c = Hermite.Coefficients(t, 1);
        double power = Hermite.Rule(400).Expect(z => t(z) * t(z));
        return (c[1], power > 0 ? c[1] * c[1] / power : 0);
    }

    /// <summary>
    /// Learns features once, draws n readout samples, fits the unweighted readout once and the label- and
    /// surrogate-weighted readouts at every β₂, and evaluates each tilted policy at its β₂.
    /// </summary>
    public static IReadOnlyList<ReadoutResult> Readout(ReadoutSetting s, IReadOnlyList<double> beta2s, IReadOnlyList<Weighting> weightings)
    {
        var sw = Stopwatch.StartNew();
        using var scope = Tensor.Scope();
        var g = new Generator((ulong)s.Seed);
        var model = new SingleIndexModel(s.D, s.Link, s.NoiseStd, g, s.DType, s.Device);
        var net = FeatureLearning.Train(ReluNetwork.Random(s.Neurons, s.D, s.BiasRange, g, s.DType, s.Device), model, s.FeatureSamples, s.FeatureOptions, g);
        double recovered = net.RecoveredFraction(model.Theta);
        var (x, y) = model.Sample(s.N, g);
        var items = new List<(IReward, double)>();
        var meta = new List<(Weighting W, double Ess)>();
        ReadoutFit? unweighted = null;
        foreach (var b2 in beta2s)
            foreach (var w in weightings)
            {
                var opt = new ReadoutOptions { Weighting = w, Beta2 = b2, Lambda = s.Lambda, PilotFraction = s.PilotFraction };
                var fit = w == Weighting.Unweighted ? unweighted ??= Reward.Readout.Fit(net, x, y, opt) : Reward.Readout.Fit(net, x, y, opt);
                items.Add((fit.Network, b2));
                meta.Add((w, fit.WeightEss));
            }
        var evals = TiltedPolicy.EvaluateMany(items, model, s.D, new Generator((ulong)s.Seed + 0x9E3779B9UL), s.Tilt);
        double secs = sw.Elapsed.TotalSeconds;
        return evals.Select((e, i) => new ReadoutResult(s.Link.Name, s.D, s.N, s.Seed, meta[i].W.ToString().ToLowerInvariant(), e.Beta, recovered,
            e.RealizedValue, e.OracleValue, e.BaseValue, e.Gap, e.ValueGap, e.Chi2, e.EffectiveSamples(s.N), meta[i].Ess, e.Exact, e.Ess, secs, e.OracleObjective)).ToArray();
    }
}
