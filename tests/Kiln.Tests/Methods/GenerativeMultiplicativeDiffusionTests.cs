using Kiln.Methods.Generative;
using Xunit;

namespace Kiln.Tests.Methods;

/// <summary>
/// "Dale meets Langevin" multiplicative diffusion against closed forms: geometric Brownian motion keeps log-normal data
/// log-normal, so the forward marginal, the transition kernel's score and the marginal score are all analytic.
/// </summary>
public class GenerativeMultiplicativeDiffusionTests
{
    // log|x_t| | x₀ ~ N(log|x₀| + (μ − σ²/2) t, σ² t); the kernel in x carries the Jacobian 1/|x_t|.
    static double RefLogKernel(double xt, double x0, double t, double mu, double sigma)
    {
        double m = Math.Log(Math.Abs(x0)) + (mu - sigma * sigma / 2) * t, v = sigma * sigma * t, y = Math.Log(Math.Abs(xt));
        return -0.5 * Math.Log(2 * Math.PI * v) - (y - m) * (y - m) / (2 * v) - Math.Log(Math.Abs(xt));
    }

    [Fact]
    public void MultiplicativeDiffusion_forward_marginal_has_the_gbm_moments()
    {
        const int n = 20000;
        foreach (var (mu, sigma, t, x0v) in new[] { (0.0, 0.5, 1.0, 2.0), (0.7, 0.3, 0.4, 0.25), (-1.2, 1.1, 0.3, 5.0), (0.4, 0.6, 0.8, -1.5) })
        {
            var proc = new MultiplicativeDiffusion(mu, sigma);
            var x0 = Tensor.Full(new Shape(n, 1), x0v, DType.Float64);
            var (xt, noise) = proc.Perturb(x0, Tensor.Full(new Shape(n), t, DType.Float64), new Generator(7));
            double[] xs = xt.ToArray<double>(), es = noise.ToArray<double>();
            // Transcription: x_t = x₀ exp((μ − σ²/2) t + σ √t ε), and the sign of x₀ is kept.
            for (int i = 0; i < n; i++) Assert.Equal(x0v * Math.Exp((mu - sigma * sigma / 2) * t + sigma * Math.Sqrt(t) * es[i]), xs[i], 1e-12 * Math.Abs(xs[i]));
            Assert.All(xs, v => Assert.Equal(Math.Sign(x0v), Math.Sign(v)));
            // E[x_t] = x₀ e^{μt}, Var[x_t] = x₀² e^{2μt}(e^{σ²t} − 1): the ratio x_t / (x₀ e^{μt}) has mean 1 and variance e^{σ²t} − 1.
            var ratio = xs.Select(v => v / (x0v * Math.Exp(mu * t))).ToArray();
            double q = Math.Exp(sigma * sigma * t) - 1, mean = ratio.Average(), var = ratio.Sum(r => (r - mean) * (r - mean)) / (n - 1);
            Assert.InRange(mean, 1 - 4 * Math.Sqrt(q / n), 1 + 4 * Math.Sqrt(q / n));
            // The sample variance's standard error from the sample fourth central moment (log-normal tails are heavy).
            double m4 = ratio.Sum(r => Math.Pow(r - mean, 4)) / n;
            Assert.InRange(var, q - 4 * Math.Sqrt((m4 - q * q) / n), q + 4 * Math.Sqrt((m4 - q * q) / n));
            // Log moments: log|x_t| ~ N(log|x₀| + (μ − σ²/2) t, σ² t).
            var logs = xs.Select(v => Math.Log(Math.Abs(v))).ToArray();
            double lm = logs.Average(), lv = logs.Sum(l => (l - lm) * (l - lm)) / (n - 1), v0 = sigma * sigma * t;
            Assert.InRange(lm, Math.Log(Math.Abs(x0v)) + (mu - sigma * sigma / 2) * t - 4 * Math.Sqrt(v0 / n), Math.Log(Math.Abs(x0v)) + (mu - sigma * sigma / 2) * t + 4 * Math.Sqrt(v0 / n));
            Assert.InRange(lv, v0 * (1 - 4 * Math.Sqrt(2.0 / n)), v0 * (1 + 4 * Math.Sqrt(2.0 / n)));
        }
    }

    [Fact]
    public void MultiplicativeDiffusion_denoising_target_is_the_kernel_score()
    {
        var rng = new Random(5);
        for (int trial = 0; trial < 8; trial++)
        {
            int rows = rng.Next(0, 5), d = rng.Next(1, 4);
            double mu = rng.NextDouble() * 2 - 1, sigma = 0.1 + rng.NextDouble();
            var proc = new MultiplicativeDiffusion(mu, sigma);
            var g = new Generator((ulong)trial + 50);
            // Mixed signs: each entry's kernel lives on the half-line of its sign.
            var x0 = Tensor.Randn(new Shape(rows, d), g, dtype: DType.Float64);
            var t = Tensor.Rand(new Shape(rows), g, 0.05, 2, DType.Float64);
            var (xt, _) = proc.Perturb(x0, t, g);
            var got = proc.DenoisingTarget(xt, x0, t).ToArray<double>();
            double[] xs = xt.ToArray<double>(), x0s = x0.ToArray<double>(), ts = t.ToArray<double>();
            Assert.Equal(rows * d, got.Length);
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < d; j++)
                {
                    int k = i * d + j;
                    // Transcription of −(1 + (log|x_t| − log|x₀| − (μ − σ²/2)t)/(σ²t))/x_t ...
                    double z = (Math.Log(Math.Abs(xs[k])) - Math.Log(Math.Abs(x0s[k])) - (mu - sigma * sigma / 2) * ts[i]) / (sigma * sigma * ts[i]);
                    Assert.Equal(-(1 + z) / xs[k], got[k], 1e-9 * Math.Max(1, Math.Abs(got[k])));
                    // ... and, independently, the central difference of the log-normal kernel's log-density in x_t.
                    double hstep = 1e-6 * Math.Abs(xs[k]);
                    double fd = (RefLogKernel(xs[k] + hstep, x0s[k], ts[i], mu, sigma) - RefLogKernel(xs[k] - hstep, x0s[k], ts[i], mu, sigma)) / (2 * hstep);
                    Assert.Equal(fd, got[k], 1e-5 * Math.Max(1, Math.Abs(fd)));
                }
        }
    }

    [Fact]
    public void MultiplicativeDiffusion_loss_matches_its_weighting_and_gradcheck()
    {
        var proc = new MultiplicativeDiffusion(0.3, 0.6);
        var g = new Generator(21);
        var x0 = Tensor.Rand(new Shape(4, 3), g, 0.2, 3, DType.Float64);
        var t = Tensor.Rand(new Shape(4), g, 0.1, 1, DType.Float64);
        var (xt, noise) = proc.Perturb(x0, t, g);
        var score = Tensor.Randn(new Shape(4, 3), g, dtype: DType.Float64);
        // With λ = σ²t x_t², σ√t x_t target = −ε − σ√t: the loss is the ε-prediction error of ŝ = −σ√t x_t s − σ√t.
        double[] xs = xt.ToArray<double>(), ss = score.ToArray<double>(), es = noise.ToArray<double>(), ts = t.ToArray<double>();
        double expected = Enumerable.Range(0, 4).Select(i => Enumerable.Range(0, 3).Sum(j =>
        {
            int k = i * 3 + j;
            double st = 0.6 * Math.Sqrt(ts[i]);
            return Math.Pow(-st * xs[k] * ss[k] - st - es[k], 2);
        })).Average();
        Assert.Equal(expected, proc.DenoisingLoss(score, xt, x0, t).Item(), 1e-9);
        // The analytic target itself has zero loss.
        Assert.Equal(0, proc.DenoisingLoss(proc.DenoisingTarget(xt, x0, t), xt, x0, t).Item(), 1e-20);
        var gc = GradCheck.Run(a => proc.DenoisingLoss(a[0], a[1], a[2], t), [score, xt, x0]);
        Assert.True(gc.Passed, gc.ToString());
    }

    // The marginal of log-normal data log x₀ ~ N(a, b²) under GBM: log x_t ~ N(a + (μ − σ²/2)t, b² + σ²t).
    static Tensor LogNormalScore(Tensor x, double t, double[] a, double[] b2, double mu, double sigma)
    {
        int d = a.Length;
        var m = Tensor.FromArray(a.Select(ai => ai + (mu - sigma * sigma / 2) * t).ToArray(), new Shape(1, d));
        var v = Tensor.FromArray(b2.Select(bi => bi + sigma * sigma * t).ToArray(), new Shape(1, d));
        return -(1 + (x.Log() - m) / v) / x;
    }

    [Fact]
    public void MultiplicativeDiffusion_reverse_sampler_recovers_lognormal_targets()
    {
        const int n = 2000, steps = 150;
        const double mu = 0.2, sigma = 0.8, horizon = 1.5, h = horizon / steps;
        double[] a = [0.5, -1.0, 2.0], b2 = [0.25, 0.5, 0.2];
        int d = a.Length;
        var proc = new MultiplicativeDiffusion(mu, sigma);
        var g = new Generator(99);
        // x_T drawn exactly from p_T.
        double c = mu - sigma * sigma / 2;
        var startLog = Tensor.Randn(new Shape(n, d), g, dtype: DType.Float64) * Tensor.FromArray(b2.Select(v => Math.Sqrt(v + sigma * sigma * horizon)).ToArray(), new Shape(1, d))
            + Tensor.FromArray(a.Select(ai => ai + c * horizon).ToArray(), new Shape(1, d));
        var x = proc.Sample((xx, t) => LogNormalScore(xx, t, a, b2, mu, sigma), startLog.Exp(), horizon, steps, g).ToArray<double>();
        Assert.All(x, v => Assert.True(v > 0 && double.IsFinite(v), $"sample {v} is not positive"));
        for (int j = 0; j < d; j++)
        {
            // The reverse SDE in y = log x is dy = [−c − σ²(y − m_t)/v_t] dτ + σ dB; its Euler–Maruyama chain's mean and
            // variance follow a linear recursion, written out here from the theory (not from the library's x-form).
            double mean = a[j] + c * horizon, var = b2[j] + sigma * sigma * horizon;
            for (int k = 0; k < steps; k++)
            {
                double t = horizon - k * h, mt = a[j] + c * t, vt = b2[j] + sigma * sigma * t, shrink = 1 - h * sigma * sigma / vt;
                mean = mean - h * c - h * sigma * sigma * (mean - mt) / vt;
                var = shrink * shrink * var + sigma * sigma * h;
            }
            // The discretized chain lands on the target's log-moments up to an O(h) bias ...
            Assert.InRange(mean, a[j] - 0.01, a[j] + 0.01);
            Assert.InRange(var, b2[j] * 0.98, b2[j] * 1.02);
            // ... and the sampler's draws match the chain's moments within 4 Monte Carlo standard errors.
            var logs = Enumerable.Range(0, n).Select(i => Math.Log(x[i * d + j])).ToArray();
            double lm = logs.Average(), lv = logs.Sum(l => (l - lm) * (l - lm)) / (n - 1);
            Assert.InRange(lm, mean - 4 * Math.Sqrt(var / n), mean + 4 * Math.Sqrt(var / n));
            Assert.InRange(lv, var * (1 - 4 * Math.Sqrt(2.0 / n)), var * (1 + 4 * Math.Sqrt(2.0 / n)));
        }
    }

    [Fact]
    public void MultiplicativeDiffusion_langevin_keeps_signs_and_targets_the_lognormal()
    {
        const int n = 2000, steps = 150;
        const double eta = 0.02, a = 1.0, b2 = 0.25;
        var g = new Generator(8);
        // Start far from the target with both signs; the score of the reflected log-normal keeps each half-line's law.
        var signs = (Tensor.Rand(new Shape(n, 1), g, dtype: DType.Float64) - 0.5).Sign();
        var x = Tensor.Full(new Shape(n, 1), 10.0, DType.Float64) * signs;
        for (int k = 0; k < steps; k++)
            x = MultiplicativeDiffusion.LangevinStep(x, -(1 + (x.Abs().Log() - a) / b2) / x, eta, g);
        double[] xs = x.ToArray<double>(), sg = signs.ToArray<double>();
        for (int i = 0; i < n; i++) Assert.Equal(sg[i], Math.Sign(xs[i]));
        // On y = log|x| the chain is y ← y − η(y − a)/b² + √(2η) ξ: its mean and variance recursions, from y₀ = log 10.
        double mean = Math.Log(10), var = 0, shrink = 1 - eta / b2;
        for (int k = 0; k < steps; k++) { mean = a + shrink * (mean - a); var = shrink * shrink * var + 2 * eta; }
        Assert.InRange(var, b2 * 0.95, b2 * 1.05);
        var logs = xs.Select(v => Math.Log(Math.Abs(v))).ToArray();
        double lm = logs.Average(), lv = logs.Sum(l => (l - lm) * (l - lm)) / (n - 1);
        Assert.InRange(lm, mean - 4 * Math.Sqrt(var / n), mean + 4 * Math.Sqrt(var / n));
        Assert.InRange(lv, var * (1 - 4 * Math.Sqrt(2.0 / n)), var * (1 + 4 * Math.Sqrt(2.0 / n)));
    }

    [Fact]
    public void MultiplicativeDiffusion_rejects_bad_input()
    {
        var proc = new MultiplicativeDiffusion(0, 1);
        var x = Tensor.Ones(new Shape(2, 3), DType.Float64);
        var t = Tensor.Ones(new Shape(2), DType.Float64);
        var g = new Generator(1);
        Assert.Equal("volatility", Assert.Throws<ArgumentOutOfRangeException>(() => new MultiplicativeDiffusion(0, 0)).ParamName);
        Assert.Equal("drift", Assert.Throws<ArgumentOutOfRangeException>(() => new MultiplicativeDiffusion(double.NaN, 1)).ParamName);
        var zero = Tensor.FromArray(new double[] { 1, 0, 2, 3, 4, 5 }, new Shape(2, 3));
        Assert.Equal("x0", Assert.Throws<ArgumentOutOfRangeException>(() => proc.Perturb(zero, t, g)).ParamName);
        Assert.Equal("t", Assert.Throws<ArgumentOutOfRangeException>(() => proc.Perturb(x, Tensor.FromArray(new double[] { 1, 0 }), g)).ParamName);
        Assert.Equal("t", Assert.Throws<ShapeMismatchException>(() => proc.Perturb(x, Tensor.Ones(new Shape(3), DType.Float64), g)).ParamName);
        Assert.Equal("xt", Assert.Throws<ArgumentOutOfRangeException>(() => proc.DenoisingTarget(-x, x, t)).ParamName);
        Assert.Equal("xt", Assert.Throws<ShapeMismatchException>(() => proc.DenoisingTarget(Tensor.Ones(new Shape(2, 2), DType.Float64), x, t)).ParamName);
        Assert.Equal("score", Assert.Throws<ShapeMismatchException>(() => proc.DenoisingLoss(t, x, x, t)).ParamName);
        Assert.Equal("stepSize", Assert.Throws<ArgumentOutOfRangeException>(() => proc.ReverseStep(x, x, 0, g)).ParamName);
        Assert.Equal("steps", Assert.Throws<ArgumentOutOfRangeException>(() => proc.Sample((xx, _) => xx, x, 1, 0, g)).ParamName);
        Assert.Equal("start", Assert.Throws<ArgumentOutOfRangeException>(() => proc.Sample((xx, _) => xx, zero, 1, 3, g)).ParamName);
        Assert.Equal("stepSize", Assert.Throws<ArgumentOutOfRangeException>(() => MultiplicativeDiffusion.LangevinStep(x, x, double.PositiveInfinity, g)).ParamName);
        // Empty batches pass through.
        var empty = Tensor.Zeros(new Shape(0, 3), DType.Float64);
        Assert.Equal(new Shape(0, 3), proc.Perturb(empty, Tensor.Zeros(new Shape(0), DType.Float64), g).Xt.Shape);
    }
}
