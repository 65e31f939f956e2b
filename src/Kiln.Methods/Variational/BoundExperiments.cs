using System.Diagnostics;
using Kiln.NN;

namespace Kiln.Methods.Variational;

/// <summary>The bound sweep's settings; the defaults are the README's run (the paper's D = 20 model and perturbation).</summary>
public sealed record BoundSettings
{
    /// <summary>Latent and data dimension D.</summary>
    public int Dim { get; init; } = 20;
    /// <summary>Sample counts K (per inner IWAE for MIWAE and PIWAE).</summary>
    public int[] Ks { get; init; } = [1, 3, 10, 30, 100];
    /// <summary>Outer sample count M of MIWAE(M, K) and PIWAE(M, K).</summary>
    public int M { get; init; } = 4;
    /// <summary>β of CIWAE_β.</summary>
    public double Beta { get; init; } = 0.5;
    /// <summary>Independent gradient estimates per (bound, K) from which means, standard deviations and SNRs are taken.</summary>
    public int Repeats { get; init; } = 1000;
    /// <summary>Standard deviation of the Gaussian perturbation of μ and b away from the optimum (A stays at I/2; see the README
    /// for why this is not the paper's 0.01 on every parameter).</summary>
    public double Perturbation { get; init; } = 0.3;
    /// <summary>Seed of μ*, x, the perturbation and the samples.</summary>
    public ulong Seed { get; init; }
    /// <summary>Device of the simulation (float64); null for the default device.</summary>
    public Device? Device { get; init; }
}

/// <summary>One bound at one K.</summary>
/// <param name="Bound">ELBO, IWAE, MIWAE, CIWAE or PIWAE.</param>
/// <param name="K">K.</param>
/// <param name="Samples">Samples drawn per estimate (M·K for MIWAE and PIWAE, K otherwise).</param>
/// <param name="Mean">Mean of the bound estimate over the repeats (PIWAE: its generative target, IWAE over M·K).</param>
/// <param name="StdError">Standard error of <see cref="Mean"/>.</param>
/// <param name="Gap">log p(x) - <see cref="Mean"/>.</param>
/// <param name="EncoderSnr">|E[∂/∂b]| / sd[∂/∂b] of the encoder's bias gradient, averaged over its D components.</param>
/// <param name="DecoderSnr">|E[∂/∂μ]| / sd[∂/∂μ] of the generative mean's gradient, averaged over its D components.</param>
public sealed record BoundRow(string Bound, int K, int Samples, double Mean, double StdError, double Gap, double EncoderSnr, double DecoderSnr);

/// <summary>Least-squares slope of log SNR against log K (K &gt; 1) for one bound.</summary>
/// <param name="Bound">The bound.</param>
/// <param name="Encoder">Slope of the encoder SNR (IWAE: the paper's -1/2).</param>
/// <param name="Decoder">Slope of the decoder SNR (IWAE: the paper's +1/2).</param>
public sealed record SnrSlope(string Bound, double Encoder, double Decoder);

/// <summary>The sweep's outcome.</summary>
/// <param name="Settings">The settings.</param>
/// <param name="LogPx">Exact log p(x) of the data point.</param>
/// <param name="Rows">One row per bound and K.</param>
/// <param name="Slopes">Log-log SNR slopes per bound.</param>
/// <param name="Seconds">Wall time.</param>
public sealed record BoundResult(BoundSettings Settings, double LogPx, IReadOnlyList<BoundRow> Rows, IReadOnlyList<SnrSlope> Slopes, double Seconds);

/// <summary>
/// "Tighter bounds are not necessarily better" on the linear-Gaussian model (<see cref="LinearGaussian"/>): for each K the
/// mean of ELBO, IWAE_K, MIWAE(M, K), CIWAE_β and PIWAE(M, K) against the exact log p(x), and the signal-to-noise ratio of
/// the reparameterised gradient of the encoder's bias b and of the generative mean μ at a point perturbed from the optimum.
/// </summary>
public static class BoundExperiments
{
    /// <summary>The bounds in table order.</summary>
    public static readonly string[] Bounds = ["ELBO", "IWAE", "MIWAE", "CIWAE", "PIWAE"];

    // Elements of one chunk's ε: repeats are independent, so chunking them changes nothing but peak memory.
    const long ChunkElements = 1 << 21;

    /// <summary>Runs the sweep.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive, a K is not positive, or β is outside [0, 1].</exception>
    public static BoundResult Run(BoundSettings s)
    {
        ArgumentNullException.ThrowIfNull(s);
        if (s.Dim < 1) throw new ArgumentOutOfRangeException(nameof(s), s.Dim, "bounds: Dim must be positive");
        if (s.M < 1) throw new ArgumentOutOfRangeException(nameof(s), s.M, "bounds: M must be positive");
        if (s.Repeats < 2) throw new ArgumentOutOfRangeException(nameof(s), s.Repeats, "bounds: Repeats must be at least 2 (a standard deviation needs two)");
        if (s.Ks.Length == 0 || s.Ks.Any(k => k < 1)) throw new ArgumentOutOfRangeException(nameof(s), string.Join(",", s.Ks), "bounds: every K must be positive");
        if (!(s.Beta >= 0 && s.Beta <= 1)) throw new ArgumentOutOfRangeException(nameof(s), s.Beta, "bounds: Beta must be in [0, 1]");
        if (!(s.Perturbation >= 0)) throw new ArgumentOutOfRangeException(nameof(s), s.Perturbation, "bounds: Perturbation must be non-negative");
        var sw = Stopwatch.StartNew();
        int d = s.Dim;
        var gen = new Generator(s.Seed);
        var dev = s.Device;
        Tensor N(params int[] shape) => Tensor.Randn(new Shape(shape), gen, dtype: DType.Float64, device: dev);
        var muStar = N(d);
        var x = muStar + N(d) * Math.Sqrt(2);                      // x ~ p(x) = N(μ*, 2I)
        var mu = muStar + N(d) * s.Perturbation;
        var a = Tensor.Eye(d, dtype: DType.Float64, device: dev) * 0.5;
        var b = muStar * 0.5 + N(d) * s.Perturbation;
        double logPx = LinearGaussian.LogMarginal(x.ToArray<double>(), mu.ToArray<double>());   // under the model being trained, μ

        var rows = new List<BoundRow>();
        foreach (int k in s.Ks)
            foreach (var bound in Bounds)
            {
                int m = bound is "MIWAE" or "PIWAE" ? s.M : 1;
                var values = new List<double>(s.Repeats);
                var gB = new List<double[]>(s.Repeats);
                var gMu = new List<double[]>(s.Repeats);
                int chunk = (int)Math.Clamp(ChunkElements / ((long)m * k * d), 1, s.Repeats);
                for (int start = 0; start < s.Repeats; start += chunk)
                {
                    int r = Math.Min(chunk, s.Repeats - start);
                    // One leaf copy of μ and b per repeat, so one backward gives every repeat's own gradient.
                    var muR = mu.Expand(r, d).Clone().RequiresGrad_();
                    var bR = b.Expand(r, d).Clone().RequiresGrad_();
                    var lw = LinearGaussian.LogWeights(x, muR, a, bR, N(r, m, k, d));
                    Tensor value, encoderTarget, decoderTarget;
                    switch (bound)
                    {
                        case "ELBO": value = encoderTarget = decoderTarget = VariationalBounds.Elbo(lw.Squeeze(1)); break;
                        case "IWAE": value = encoderTarget = decoderTarget = VariationalBounds.Iwae(lw.Squeeze(1)); break;
                        case "MIWAE": value = encoderTarget = decoderTarget = VariationalBounds.Miwae(lw); break;
                        case "CIWAE": value = encoderTarget = decoderTarget = VariationalBounds.Ciwae(lw.Squeeze(1), s.Beta); break;
                        default:
                            var t = VariationalBounds.Piwae(lw);
                            (value, encoderTarget, decoderTarget) = (t.Model, t.Inference, t.Model);
                            break;
                    }
                    var gradB = Autograd.Grad([encoderTarget.Sum()], [bR], retainGraph: true)[0].ToArray<double>();
                    var gradMu = Autograd.Grad([decoderTarget.Sum()], [muR])[0].ToArray<double>();
                    values.AddRange(value.Detach().ToArray<double>());
                    for (int i = 0; i < r; i++) { gB.Add(gradB[(i * d)..((i + 1) * d)]); gMu.Add(gradMu[(i * d)..((i + 1) * d)]); }
                }
                double mean = values.Average();
                double se = Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1) / values.Count);
                rows.Add(new BoundRow(bound, k, m * k, mean, se, logPx - mean, Snr(gB), Snr(gMu)));
            }
        var slopes = Bounds.Select(bd =>
        {
            var pts = rows.Where(r => r.Bound == bd && r.K > 1).ToArray();
            return new SnrSlope(bd, Slope(pts.Select(p => (double)p.K), pts.Select(p => p.EncoderSnr)), Slope(pts.Select(p => (double)p.K), pts.Select(p => p.DecoderSnr)));
        }).ToArray();
        return new BoundResult(s, logPx, rows, slopes, sw.Elapsed.TotalSeconds);
    }

    /// <summary>Mean over components of |mean| / sample standard deviation across the repeats.</summary>
    internal static double Snr(IReadOnlyList<double[]> grads)
    {
        int d = grads[0].Length, n = grads.Count;
        double total = 0;
        for (int j = 0; j < d; j++)
        {
            double mean = 0;
            for (int i = 0; i < n; i++) mean += grads[i][j];
            mean /= n;
            double v = 0;
            for (int i = 0; i < n; i++) v += (grads[i][j] - mean) * (grads[i][j] - mean);
            total += Math.Abs(mean) / Math.Sqrt(v / (n - 1));
        }
        return total / d;
    }

    /// <summary>Least-squares slope of log y against log x; NaN with fewer than two points.</summary>
    internal static double Slope(IEnumerable<double> xs, IEnumerable<double> ys)
    {
        var p = xs.Zip(ys, (x, y) => (X: Math.Log(x), Y: Math.Log(y))).ToArray();
        if (p.Length < 2) return double.NaN;
        double mx = p.Average(q => q.X), my = p.Average(q => q.Y);
        return p.Sum(q => (q.X - mx) * (q.Y - my)) / p.Sum(q => (q.X - mx) * (q.X - mx));
    }
}
