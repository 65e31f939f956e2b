namespace Kiln.Methods.Smoothing;

/// <summary>
/// The randomized-smoothing baseline of Cohen et al. (2019) on the same stump ensemble, so the exact certificates can
/// be compared with sampled ones: n0 noisy samples select the class, n further samples estimate its probability, a
/// one-sided Clopper-Pearson bound at level alpha lower-bounds it, and the prediction abstains (class -1) below 1/2.
/// </summary>
public static class MonteCarloSmoothing
{
    /// <summary>Counts of class-1 predictions among <paramref name="samples"/> noisy copies of each row of <paramref name="x"/>.</summary>
    public static long[] ClassOneCounts(StumpEnsemble ensemble, Tensor x, Noise noise, int samples, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(ensemble);
        ensemble.CheckInput(x, nameof(x));
        ArgumentOutOfRangeException.ThrowIfNegative(samples);
        int n = x.Shape[0], d = x.Shape[1];
        var xs = x.To(DType.Float64);
        var counts = new long[n];
        int chunk = Math.Max(1, Math.Min(samples, (1 << 22) / Math.Max(d, 1)));
        for (int i = 0; i < n; i++)
        {
            var row = xs.Narrow(0, i, 1);
            for (int done = 0; done < samples; done += chunk)
            {
                int m = Math.Min(chunk, samples - done);
                using var scope = Tensor.Scope();
                var noisy = row + noise.Sample(new Shape(m, d), generator, x.Device);
                counts[i] += (long)ensemble.Predict(noisy).Sum().Item();
            }
        }
        return counts;
    }

    /// <summary>Cohen et al.'s CERTIFY for each row: select with <paramref name="n0"/> samples, estimate with <paramref name="n"/>, bound at <paramref name="alpha"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">n0 or n is below 1, or alpha is outside (0, 1).</exception>
    public static Certificate[] Certify(StumpEnsemble ensemble, Tensor x, Noise noise, int n0 = 100, int n = 100_000, double alpha = 0.001, Generator? generator = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n0, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        if (!(alpha > 0 && alpha < 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "alpha must be in (0, 1)");
        var g = generator ?? new Generator(0);
        var select = ClassOneCounts(ensemble, x, noise, n0, g);
        var estimate = ClassOneCounts(ensemble, x, noise, n, g);
        var result = new Certificate[select.Length];
        for (int i = 0; i < select.Length; i++)
        {
            int c = select[i] > n0 - select[i] ? 1 : 0;
            long nA = c == 1 ? estimate[i] : n - estimate[i];
            double pLower = ClopperPearsonLower(nA, n, alpha);
            result[i] = pLower < 0.5 ? new Certificate(-1, pLower, 0) : new Certificate(c, pLower, Math.Max(0, noise.Radius(pLower)));
        }
        return result;
    }

    /// <summary>
    /// The one-sided Clopper-Pearson lower confidence bound at level <paramref name="alpha"/> for k successes in n
    /// trials: the alpha quantile of Beta(k, n - k + 1) (0 when k = 0).
    /// </summary>
    public static double ClopperPearsonLower(long k, long n, double alpha)
    {
        if (k < 0 || k > n) throw new ArgumentOutOfRangeException(nameof(k), k, $"successes must be in 0 .. {n}");
        if (k == 0) return 0;
        return BetaQuantile(alpha, k, n - k + 1);
    }

    /// <summary>The <paramref name="p"/> quantile of Beta(a, b) by bisection on the regularized incomplete beta function.</summary>
    public static double BetaQuantile(double p, double a, double b)
    {
        double lo = 0, hi = 1;
        for (int i = 0; i < 200 && hi - lo > 1e-17; i++)
        {
            double mid = 0.5 * (lo + hi);
            if (RegularizedBeta(mid, a, b) < p) lo = mid; else hi = mid;
        }
        return 0.5 * (lo + hi);
    }

    /// <summary>I_x(a, b), the regularized incomplete beta function (continued fraction, Lentz's method).</summary>
    public static double RegularizedBeta(double x, double a, double b)
    {
        if (x <= 0) return 0;
        if (x >= 1) return 1;
        double lnFront = LogGamma(a + b) - LogGamma(a) - LogGamma(b) + a * Math.Log(x) + b * Math.Log(1 - x);
        if (x > (a + 1) / (a + b + 2)) return 1 - Math.Exp(lnFront) * BetaFraction(1 - x, b, a) / b;
        return Math.Exp(lnFront) * BetaFraction(x, a, b) / a;
    }

    static double BetaFraction(double x, double a, double b)
    {
        const double tiny = 1e-300;
        double c = 1, d = 1 - (a + b) * x / (a + 1);
        if (Math.Abs(d) < tiny) d = tiny;
        d = 1 / d;
        double f = d;
        for (int m = 1; m <= 10_000; m++)
        {
            double num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
            d = 1 + num * d; if (Math.Abs(d) < tiny) d = tiny; d = 1 / d;
            c = 1 + num / c; if (Math.Abs(c) < tiny) c = tiny;
            f *= d * c;
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1));
            d = 1 + num * d; if (Math.Abs(d) < tiny) d = tiny; d = 1 / d;
            c = 1 + num / c; if (Math.Abs(c) < tiny) c = tiny;
            double delta = d * c;
            f *= delta;
            if (Math.Abs(delta - 1) < 1e-15) break;
        }
        return f;
    }

    /// <summary>ln Gamma(x) for x &gt; 0 (Lanczos, g = 7, n = 9), about 1e-15 relative.</summary>
    public static double LogGamma(double x)
    {
        ReadOnlySpan<double> c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
            12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
        if (x < 0.5) return Math.Log(Math.PI / Math.Abs(Math.Sin(Math.PI * x))) - LogGamma(1 - x);
        x -= 1;
        double s = c[0];
        for (int i = 1; i < 9; i++) s += c[i] / (x + i);
        double t = x + 7.5;
        return 0.5 * Math.Log(2 * Math.PI) + (x + 0.5) * Math.Log(t) - t + Math.Log(s);
    }
}
