using Kiln.Tests.TestKit;
using Kiln.Methods.Variational;
using Kiln.NN;
using Xunit;

namespace Kiln.Tests.Methods;

/// <summary>
/// Variational bounds (ELBO, IWAE, MIWAE, CIWAE, PIWAE) against float64 transcriptions of their equations, their special
/// cases, and the linear-Gaussian checks of "Tighter Variational Bounds are Not Necessarily Better".
/// </summary>
public class VariationalTests
{
    static Tensor Rand(Shape s, ulong seed, double lo, double hi) => Tensor.Rand(s, new Generator(seed), lo, hi, DType.Float64);

    static double Lse(IEnumerable<double> v)
    {
        var a = v.ToArray();
        double mx = a.Max();
        return mx + Math.Log(a.Sum(x => Math.Exp(x - mx)));
    }

    // ------------------------------------------------------------------ 1. Tighter variational bounds

    [Fact]
    public void Bounds_match_their_equations_on_random_shapes()
    {
        var rng = new Random(7);
        for (int trial = 0; trial < 40; trial++)
        {
            int batch = rng.Next(0, 4), m = rng.Next(1, 5), k = rng.Next(1, 7);
            double beta = rng.NextDouble();
            // Large log-weights: a naive log(mean(exp)) would overflow, the bounds must not.
            var lw = Rand(new Shape(batch, m, k), (ulong)trial, -300, 300);
            var v = lw.ToArray<double>();
            double W(int b, int i, int j) => v[(b * m + i) * k + j];
            var elbo = VariationalBounds.Elbo(lw).ToArray<double>();
            var iwae = VariationalBounds.Iwae(lw).ToArray<double>();
            var ciwae = VariationalBounds.Ciwae(lw, beta).ToArray<double>();
            var miwae = VariationalBounds.Miwae(lw).ToArray<double>();
            var piwae = VariationalBounds.Piwae(lw);
            Assert.Equal(new Shape(batch, m), VariationalBounds.Iwae(lw).Shape);
            Assert.Equal(new Shape(batch), piwae.Model.Shape);
            for (int b = 0; b < batch; b++)
            {
                double miw = 0;
                for (int i = 0; i < m; i++)
                {
                    var row = Enumerable.Range(0, k).Select(j => W(b, i, j)).ToArray();
                    double e = row.Average(), iw = Lse(row) - Math.Log(k);
                    Assert.Equal(e, elbo[b * m + i], 1e-9);
                    Assert.Equal(iw, iwae[b * m + i], 1e-9);
                    Assert.Equal(beta * e + (1 - beta) * iw, ciwae[b * m + i], 1e-9);
                    miw += iw / m;
                }
                Assert.Equal(miw, miwae[b], 1e-9);
                Assert.Equal(miw, piwae.Inference.ToArray<double>()[b], 1e-9);
                double all = Lse(Enumerable.Range(0, m * k).Select(t => W(b, t / k, t % k))) - Math.Log(m * k);
                Assert.Equal(all, piwae.Model.ToArray<double>()[b], 1e-9);
                // Jensen, sample by sample: ELBO ≤ IWAE over the same samples, and MIWAE ≤ IWAE over all M·K.
                for (int i = 0; i < m; i++) Assert.True(elbo[b * m + i] <= iwae[b * m + i] + 1e-9);
                Assert.True(miw <= all + 1e-9);
            }
        }
    }

    [Fact]
    public void Special_cases_are_exact()
    {
        var lw1 = Rand(new Shape(3, 5, 1), 1, -40, 10);
        // K = 1: IWAE is the ELBO bit for bit, and so are MIWAE and PIWAE's targets with M = 1 against IWAE.
        Assert.Equal(VariationalBounds.Elbo(lw1).ToArray<double>(), VariationalBounds.Iwae(lw1).ToArray<double>());
        var lw = Rand(new Shape(3, 1, 6), 2, -40, 10);
        var iw = VariationalBounds.Iwae(lw).Squeeze(1).ToArray<double>();
        Assert.Equal(iw, VariationalBounds.Miwae(lw).ToArray<double>());
        Assert.Equal(iw, VariationalBounds.Piwae(lw).Model.ToArray<double>());
        Assert.Equal(iw, VariationalBounds.Piwae(lw).Inference.ToArray<double>());
        Assert.Equal(VariationalBounds.Elbo(lw).ToArray<double>(), VariationalBounds.Ciwae(lw, 1).ToArray<double>());
        Assert.Equal(VariationalBounds.Iwae(lw).ToArray<double>(), VariationalBounds.Ciwae(lw, 0).ToArray<double>());
        // MIWAE with K = 1 is the ELBO over its M samples.
        var lwm = Rand(new Shape(4, 7, 1), 3, -5, 5);
        Close(VariationalBounds.Elbo(lwm.Squeeze(2)).ToArray<double>(), VariationalBounds.Miwae(lwm).ToArray<double>(), 1e-14);
        // Equal weights: every bound is that weight.
        var flat = Tensor.Full(new Shape(2, 3, 4), -2.5, DType.Float64);
        Assert.All(VariationalBounds.Iwae(flat).ToArray<double>(), v => Assert.Equal(-2.5, v, 1e-14));
        Assert.All(VariationalBounds.Piwae(flat).Model.ToArray<double>(), v => Assert.Equal(-2.5, v, 1e-14));
    }

    static void Close(double[] e, double[] a, double tol)
    {
        Assert.Equal(e.Length, a.Length);
        for (int i = 0; i < e.Length; i++) Assert.Equal(e[i], a[i], tol);
    }

    [Fact]
    public void Bounds_pass_gradcheck()
    {
        var lw = Rand(new Shape(2, 3, 4), 5, -3, 3);
        foreach (var f in new Func<Tensor[], Tensor>[]
        {
            xs => VariationalBounds.Elbo(xs[0]), xs => VariationalBounds.Iwae(xs[0]), xs => VariationalBounds.Miwae(xs[0]),
            xs => VariationalBounds.Ciwae(xs[0], 0.3), xs => VariationalBounds.Piwae(xs[0]).Model, xs => VariationalBounds.Piwae(xs[0]).Inference,
        })
        {
            var r = GradCheck.Run(f, [lw]);
            Assert.True(r.Passed, r.ToString());
        }
    }

    [Fact]
    public void Bounds_reject_bad_input()
    {
        Assert.Contains("Int64", Assert.Throws<ArgumentException>(() => VariationalBounds.Iwae(Tensor.FromArray(new long[] { 1, 2 }))).Message);
        Assert.Contains("sample axis", Assert.Throws<ArgumentException>(() => VariationalBounds.Elbo(Tensor.Full(new Shape(), 1.0, DType.Float64))).Message);
        Assert.Contains("[..., M, K]", Assert.Throws<ArgumentException>(() => VariationalBounds.Miwae(Tensor.Zeros(new Shape(4), DType.Float64))).Message);
        Assert.Contains("no samples", Assert.Throws<ArgumentException>(() => VariationalBounds.Iwae(Tensor.Zeros(new Shape(3, 0), DType.Float64))).Message);
        Assert.Contains("no samples", Assert.Throws<ArgumentException>(() => VariationalBounds.Piwae(Tensor.Zeros(new Shape(0, 2), DType.Float64))).Message);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => VariationalBounds.Ciwae(Tensor.Zeros(new Shape(2), DType.Float64), 1.5));
        Assert.Equal("beta", ex.ParamName);
    }

    // The linear-Gaussian model written out: log N(z; μ, I) + log N(x; z, I) - log N(z; A x + b, 2/3 I).
    static double LogWeight(double[] x, double[] mu, double[] a, double[] b, double[] eps)
    {
        int d = x.Length;
        double s = Math.Sqrt(2.0 / 3), lp = 0, ll = 0, lq = 0;
        for (int i = 0; i < d; i++)
        {
            double mean = b[i];
            for (int j = 0; j < d; j++) mean += a[i * d + j] * x[j];
            double z = mean + s * eps[i];
            lp += -0.5 * (z - mu[i]) * (z - mu[i]) - 0.5 * Math.Log(2 * Math.PI);
            ll += -0.5 * (x[i] - z) * (x[i] - z) - 0.5 * Math.Log(2 * Math.PI);
            lq += -0.5 * eps[i] * eps[i] - 0.5 * Math.Log(2 * Math.PI * 2.0 / 3);
        }
        return lp + ll - lq;
    }

    [Fact]
    public void Linear_gaussian_bounds_rise_with_k_towards_the_exact_log_likelihood()
    {
        const int d = 4, reps = 4000;
        var g = new Generator(11);
        double[] Randn(int n, double sd) => Tensor.Randn(new Shape(n), g, 0, sd, DType.Float64).ToArray<double>();
        var muStar = Randn(d, 1);
        var x = muStar.Zip(Randn(d, Math.Sqrt(2)), (m, e) => m + e).ToArray();
        var a = Enumerable.Range(0, d * d).Select(i => i % (d + 1) == 0 ? 0.5 : 0).Zip(Randn(d * d, 0.1), (p, e) => p + e).ToArray();
        var b = muStar.Zip(Randn(d, 0.1), (m, e) => m / 2 + e).ToArray();
        // log p(x) = log N(x; μ, 2I), written out.
        double logPx = -Enumerable.Range(0, d).Sum(i => (x[i] - muStar[i]) * (x[i] - muStar[i])) / 4 - 0.5 * d * Math.Log(4 * Math.PI);
        Assert.Equal(logPx, LinearGaussian.LogMarginal(x, muStar), 1e-12);

        int[] ks = [1, 4, 16, 64];
        var eps = Tensor.Randn(new Shape(reps, 1, ks[^1], d), g, dtype: DType.Float64);
        var lw = LinearGaussian.LogWeights(Tensor.FromArray(x), Tensor.FromArray(muStar), Tensor.FromArray(a, new Shape(d, d)), Tensor.FromArray(b), eps);
        // The library's log-weights against the written-out model on a few draws.
        var ev = eps.ToArray<double>();
        var lwv = lw.ToArray<double>();
        for (int t = 0; t < 50; t++) Assert.Equal(LogWeight(x, muStar, a, b, ev[(t * d)..((t + 1) * d)]), lwv[t], 1e-10);

        // E[bound] over many independent draws (nested: IWAE_K uses the first K of the 64 samples), ± 4 standard errors.
        (double Mean, double Se) Stats(Tensor v)
        {
            var arr = v.ToArray<double>();
            double mean = arr.Average();
            return (mean, Math.Sqrt(arr.Sum(q => (q - mean) * (q - mean)) / (arr.Length - 1) / arr.Length));
        }
        var w = lw.Squeeze(1);
        var elbo = Stats(VariationalBounds.Elbo(w.Narrow(1, 0, 1)));
        var prev = elbo;
        var gaps = new List<double>();
        foreach (int k in ks)
        {
            var iw = Stats(VariationalBounds.Iwae(w.Narrow(1, 0, k)));
            Assert.True(iw.Mean <= logPx + 4 * iw.Se, $"E[IWAE_{k}] = {iw.Mean} above log p(x) = {logPx}");
            Assert.True(iw.Mean >= prev.Mean - 4 * Math.Sqrt(iw.Se * iw.Se + prev.Se * prev.Se), $"E[IWAE_{k}] = {iw.Mean} below the previous {prev.Mean}");
            Assert.True(iw.Mean >= elbo.Mean - 4 * Math.Sqrt(iw.Se * iw.Se + elbo.Se * elbo.Se));
            gaps.Add(logPx - iw.Mean);
            prev = iw;
        }
        // The gap closes: IWAE_64's is a small fraction of the ELBO's (which here is KL(q‖p(z|x)) ≈ 0.1 nats for d = 4).
        Assert.True(gaps[0] > 0.05, $"ELBO gap {gaps[0]}");
        Assert.True(gaps[^1] < 0.1 * gaps[0], $"gaps {string.Join(", ", gaps)}");
    }

    [Fact]
    public void Encoder_snr_falls_and_decoder_snr_rises_with_k_for_iwae()
    {
        var r = BoundExperiments.Run(new BoundSettings { Dim = 5, Ks = [1, 8, 64], Repeats = 2000, Perturbation = 0.3, Seed = 3 });
        BoundRow Row(string bound, int k) => r.Rows.Single(q => q.Bound == bound && q.K == k);
        // IWAE: encoder SNR ~ 1/sqrt(K), decoder SNR ~ sqrt(K) (paper, eq. 11); from K = 1 to 64 that is a factor of 8 each way.
        Assert.True(Row("IWAE", 64).EncoderSnr < 0.4 * Row("IWAE", 1).EncoderSnr, $"encoder SNR {Row("IWAE", 1).EncoderSnr} -> {Row("IWAE", 64).EncoderSnr}");
        Assert.True(Row("IWAE", 64).DecoderSnr > 3 * Row("IWAE", 1).DecoderSnr, $"decoder SNR {Row("IWAE", 1).DecoderSnr} -> {Row("IWAE", 64).DecoderSnr}");
        var iwae = r.Slopes.Single(s => s.Bound == "IWAE");
        Assert.InRange(iwae.Encoder, -0.8, -0.25);
        Assert.InRange(iwae.Decoder, 0.25, 0.8);
        // The ELBO's K samples only average: its encoder SNR rises with K instead.
        Assert.True(Row("ELBO", 64).EncoderSnr > 3 * Row("ELBO", 1).EncoderSnr);
        // K = 1: IWAE and CIWAE are the ELBO on the same kind of draws; every bound stays below log p(x) in expectation.
        Assert.All(r.Rows, q => Assert.True(q.Gap > -4 * q.StdError, $"{q.Bound} K={q.K}: gap {q.Gap} ± {q.StdError}"));
        Assert.True(Row("IWAE", 64).Gap < Row("MIWAE", 64).Gap && Row("MIWAE", 64).Gap < Row("ELBO", 64).Gap);
    }
    // ------------------------------------------------------------------ 2. Proper losses for discrete generative models

    static double[] Simplex(Random rng, int n)
    {
        var v = Enumerable.Range(0, n).Select(_ => rng.NextDouble() + 0.05).ToArray();
        double s = v.Sum();
        return v.Select(x => x / s).ToArray();
    }

    // E[1[x=x'] - 2·1[x=y] + 1[y=y']] by enumerating every (x, x', y, y') of an alphabet of `a` outcomes, each outcome a
    // row of `len` symbols (so the alphabet is a^len sequences compared whole).
    static double ExpectedSquaredDistanceLoss(double[] p, double[] q, int symbols, int len)
    {
        int a = p.Length, n = a * a * a * a;
        var cols = new long[4][];
        for (int c = 0; c < 4; c++) cols[c] = new long[n * len];
        var w = new double[n];
        for (int t = 0; t < n; t++)
        {
            int[] o = [t % a, t / a % a, t / (a * a) % a, t / (a * a * a)];
            w[t] = p[o[0]] * p[o[1]] * q[o[2]] * q[o[3]];
            for (int c = 0; c < 4; c++)
                for (int j = 0, v = o[c]; j < len; j++, v /= symbols) cols[c][t * len + j] = v % symbols;
        }
        Tensor T(long[] v) => len == 1 ? Tensor.FromArray(v) : Tensor.FromArray(v, new Shape(n, len));
        var loss = ProperLosses.SquaredDistance(T(cols[0]), T(cols[1]), T(cols[2]), T(cols[3])).ToArray<double>();
        Assert.All(loss, l => Assert.Contains(l, new[] { -2.0, -1.0, 0.0, 1.0, 2.0 }));
        return loss.Zip(w, (l, x) => l * x).Sum();
    }

    [Fact]
    public void Squared_distance_loss_is_unbiased_for_the_squared_l2_distance_and_proper()
    {
        var rng = new Random(5);
        for (int trial = 0; trial < 12; trial++)
        {
            // Plain outcomes (alphabet 2..5), or length-2 sequences over 2 symbols (4 sequences).
            bool seq = trial % 3 == 2;
            int a = seq ? 4 : 2 + trial % 4;
            var p = Simplex(rng, a);
            var q = Simplex(rng, a);
            double l2 = p.Zip(q, (x, y) => (x - y) * (x - y)).Sum();
            Assert.Equal(l2, ExpectedSquaredDistanceLoss(p, q, seq ? 2 : a, seq ? 2 : 1), 1e-12);
            // Proper: the expected loss is smallest, zero, at p = q.
            Assert.Equal(0, ExpectedSquaredDistanceLoss(q, q, seq ? 2 : a, seq ? 2 : 1), 1e-14);
            Assert.True(l2 > 0);
        }
        var x = Tensor.FromArray(new long[] { 1, 2 });
        Assert.Throws<ShapeMismatchException>(() => ProperLosses.SquaredDistance(x, x, x, Tensor.FromArray(new long[] { 1, 2, 3 })));
        Assert.Equal("target1", Assert.Throws<ArgumentException>(() => ProperLosses.SquaredDistance(x, x, Tensor.Zeros(2), x)).ParamName);
    }

    // Test-side Poisson tail P(N ≥ k), summed term by term in log space.
    static double Tail(int k, double rate)
    {
        double s = 0;
        for (int j = k; j < k + 400; j++)
        {
            double lf = 0;
            for (int i = 2; i <= j; i++) lf += Math.Log(i);
            s += Math.Exp(-rate + j * Math.Log(rate) - lf);
        }
        return s;
    }

    [Theory, InlineData(0.5, 1.5), InlineData(0.2, 3.0), InlineData(0.8, 0.7)]
    public void Poisson_log_loss_estimates_the_log_loss_without_bias(double py, double rate)
    {
        // Every draw sequence of length n ≤ 6 over {y = 0, other = 1, 2}: the estimate against its written-out sum.
        double[] p = [py, (1 - py) * 0.3, (1 - py) * 0.7];
        const int nMax = 6;
        double enumerated = 0, formula = 0;
        for (int n = 0; n <= nMax; n++)
        {
            double pmfN = Tail(n, rate) - Tail(n + 1, rate);
            double inner = 0;
            for (int k = 1; k <= n; k++) inner += Math.Pow(1 - py, k) / (k * Tail(k, rate));
            formula += pmfN * inner;
            int count = (int)Math.Pow(3, n);
            var seq = new long[n];
            for (int t = 0; t < count; t++)
            {
                double prob = 1;
                for (int i = 0, v = t; i < n; i++, v /= 3) { seq[i] = v % 3; prob *= p[v % 3]; }
                enumerated += pmfN * prob * ProperLosses.PoissonLogLoss(seq, 0, rate);
            }
        }
        Assert.Equal(formula, enumerated, 1e-12);
        // The untruncated expectation, Σ_k P(N ≥ k) (1 - p)^k / (k P(N ≥ k)), is -log p(y).
        double full = 0;
        for (int k = 1; k < 200; k++) full += Math.Pow(1 - py, k) / k;
        Assert.Equal(-Math.Log(py), full, 1e-12);
        for (int k = 1; k < 30; k++) Assert.Equal(1, ProperLosses.PoissonTail(k, rate) / Tail(k, rate), 1e-11);
        Assert.Equal(0, ProperLosses.PoissonLogLoss([0, 1], 0, rate));
        Assert.Throws<ArgumentOutOfRangeException>(() => ProperLosses.PoissonLogLoss([1], 0, 0));
    }

    // ------------------------------------------------------------------ 3. AutoGen

    // Linear-Gaussian VAE with a scalar latent: z ~ N(0, 1), x | z ~ N(w z + c, σ² I_D), q = N(a, s²).
    sealed record Lg(double[] W, double[] C, double Sigma2, double[] X)
    {
        int D => X.Length;
        double[] R => X.Zip(C, (x, c) => x - c).ToArray();
        double WW => W.Sum(v => v * v);
        double WR => W.Zip(R, (u, r) => u * r).Sum();
        public double ExpectedLogLik(double a, double s2) =>
            -0.5 * D * Math.Log(2 * Math.PI * Sigma2) - (R.Zip(W, (r, u) => (r - u * a) * (r - u * a)).Sum() + s2 * WW) / (2 * Sigma2);
        public static double Kl(double a, double s2) => 0.5 * (s2 + a * a - 1 - Math.Log(s2));
        // log ∫ p(z) p(x | z)^n dz = -(n-1)(D/2) log(2πσ²) - (D/2) log n + log N(x; c, w wᵀ + (σ²/n) I).
        public double TiedLogLik(int n)
        {
            double tau = Sigma2 / n, rr = R.Sum(v => v * v);
            double logDet = (D - 1) * Math.Log(tau) + Math.Log(tau + WW);
            double quad = (rr - WR * WR / (tau + WW)) / tau;
            return -(n - 1) * 0.5 * D * Math.Log(2 * Math.PI * Sigma2) - 0.5 * D * Math.Log(n) - 0.5 * (D * Math.Log(2 * Math.PI) + logDet + quad);
        }
        public (double Mean, double Var) TiedPosterior(int n)
        {
            double prec = 1 + n * WW / Sigma2;
            return (n * WR / Sigma2 / prec, 1 / prec);
        }
    }

    static Lg RandomLg(Random rng, int d) => new(
        Enumerable.Range(0, d).Select(_ => rng.NextDouble() * 2 - 1).ToArray(), Enumerable.Range(0, d).Select(_ => rng.NextDouble() - 0.5).ToArray(),
        0.2 + rng.NextDouble(), Enumerable.Range(0, d).Select(_ => rng.NextDouble() * 4 - 2).ToArray());

    static Tensor S(double v) => Tensor.Full(new Shape(1), v, DType.Float64);

    [Fact]
    public void AutoGen_bound_is_the_elbo_with_a_prefactor_and_bounds_the_tied_likelihood()
    {
        var rng = new Random(9);
        for (int trial = 0; trial < 20; trial++)
        {
            var lg = RandomLg(rng, 1 + trial % 4);
            double a = rng.NextDouble() * 2 - 1, s2 = 0.1 + rng.NextDouble();
            double ll = lg.ExpectedLogLik(a, s2), kl = Lg.Kl(a, s2);
            // m = 0: the ELBO, and log p(x) - ELBO = KL(q ‖ p(z | x)) > 0.
            double elbo = AutoGen.Bound(S(ll).Unsqueeze(-1), S(kl), 0).Item();
            Assert.Equal(ll - kl, elbo, 1e-12);
            var (pm, pv) = lg.TiedPosterior(1);
            double klPost = 0.5 * (s2 / pv + (a - pm) * (a - pm) / pv - 1 - Math.Log(s2 / pv));
            Assert.Equal(lg.TiedLogLik(1) - klPost, elbo, 1e-10);
            for (int m = 1; m <= 3; m++)
            {
                double bound = AutoGen.Bound(S(ll).Unsqueeze(-1), S(kl), m).Item();
                Assert.Equal(elbo + m * ll, bound, 1e-10);               // the pre-factor (1 + m) on the reconstruction term
                Assert.True(bound <= lg.TiedLogLik(1 + m) + 1e-10);
                // Tight at the tied posterior ∝ p(z) p(x | z)^(1+m).
                var (tm, tv) = lg.TiedPosterior(1 + m);
                Assert.Equal(lg.TiedLogLik(1 + m), AutoGen.Bound(S(lg.ExpectedLogLik(tm, tv)).Unsqueeze(-1), S(Lg.Kl(tm, tv)), m).Item(), 1e-9);
            }
        }
    }

    [Fact]
    public void AutoGen_log_weights_are_constant_at_the_tied_posterior_and_the_elbo_weights_without_tying()
    {
        var rng = new Random(4);
        var lg = RandomLg(rng, 3);
        const int m = 2, k = 64;
        var (tm, tv) = lg.TiedPosterior(1 + m);
        var z = Tensor.Randn(new Shape(k), new Generator(1), tm, Math.Sqrt(tv), DType.Float64);
        var zs = z.ToArray<double>();
        double LogN(double v, double mean, double var) => -0.5 * (Math.Log(2 * Math.PI * var) + (v - mean) * (v - mean) / var);
        var logLik = Tensor.FromArray(zs.Select(zz => lg.X.Select((x, i) => LogN(x, lg.W[i] * zz + lg.C[i], lg.Sigma2)).Sum()).ToArray());
        var logPrior = Tensor.FromArray(zs.Select(zz => LogN(zz, 0, 1)).ToArray());
        var logQ = Tensor.FromArray(zs.Select(zz => LogN(zz, tm, tv)).ToArray());
        Assert.All(AutoGen.LogWeights(logLik, logPrior, logQ, m).ToArray<double>(), v => Assert.Equal(lg.TiedLogLik(1 + m), v, 1e-9));
        Assert.Equal(lg.TiedLogLik(1 + m), VariationalBounds.Iwae(AutoGen.LogWeights(logLik, logPrior, logQ, m)).Item(), 1e-9);
        Assert.Equal((logLik + logPrior - logQ).ToArray<double>(), AutoGen.LogWeights(logLik, logPrior, logQ, 0).ToArray<double>());
        var r = GradCheck.Run(xs => AutoGen.Bound(xs[0], xs[1], 2), [Rand(new Shape(3, 4), 1, -3, 0), Rand(new Shape(3), 2, 0, 2)]);
        Assert.True(r.Passed, r.ToString());
        Assert.Equal("m", Assert.Throws<ArgumentOutOfRangeException>(() => AutoGen.Bound(logLik.Unsqueeze(0), S(0), -1)).ParamName);
        Assert.Throws<ShapeMismatchException>(() => AutoGen.Bound(logLik.Unsqueeze(0), Tensor.Zeros(new Shape(2), DType.Float64), 1));
        Assert.Throws<ShapeMismatchException>(() => AutoGen.LogWeights(logLik, logPrior.Narrow(0, 0, 3), logQ, 1));
    }
    // ------------------------------------------------------------------ 4. Feasible Learning

    // Linear regression with squared per-sample losses l_i = (θ·x_i - y_i)², θ a float64 leaf.
    static (Tensor X, Tensor Y, double[] Xv, double[] Yv) Regression(int n, int d, double noise, ulong seed, double thetaScale = 1)
    {
        var g = new Generator(seed);
        var x = Tensor.Randn(new Shape(n, d), g, dtype: DType.Float64);
        var theta = Tensor.Randn(new Shape(d, 1), g, 0, thetaScale, DType.Float64);
        var y = x.MatMul(theta).Squeeze(1) + Tensor.Rand(new Shape(n), g, -noise, noise, DType.Float64);
        return (x, y, x.ToArray<double>(), y.ToArray<double>());
    }

    [Fact]
    public void Feasible_learning_lagrangian_gradient_and_dual_step_match_their_equations()
    {
        const int n = 9, d = 3;
        var (x, y, xv, yv) = Regression(n, d, 0.5, 1);
        var fl = new FeasibleLearning(n, epsilon: 0.05, dualLearningRate: 0.7, slackPenalty: 2.0, initialMultiplier: 0.3);
        var theta = Tensor.Randn(new Shape(d, 1), new Generator(2), dtype: DType.Float64).RequiresGrad_();
        int[] batch = [4, 0, 7, 2];
        var idx = Tensor.FromArray(batch.Select(i => (long)i).ToArray());
        Tensor Losses(Tensor th) => (x.IndexSelect(0, idx).MatMul(th).Squeeze(1) - y.IndexSelect(0, idx)).Square();
        for (int step = 0; step < 3; step++)
        {
            var lam = fl.Multipliers;
            var th = theta.Detach().ToArray<double>();
            var losses = Losses(theta);
            var grad = Autograd.Grad(fl.Lagrangian(losses, batch), theta).ToArray<double>();
            // Written out: Σ_b λ_b 2 (θ·x_b - y_b) x_b, and λ_b ← max(0, λ_b + η_d (l_b - ε - λ_b/α)).
            var expected = new double[d];
            var l = new double[batch.Length];
            for (int b = 0; b < batch.Length; b++)
            {
                int i = batch[b];
                double r = Enumerable.Range(0, d).Sum(j => th[j] * xv[i * d + j]) - yv[i];
                l[b] = r * r;
                for (int j = 0; j < d; j++) expected[j] += lam[i] * 2 * r * xv[i * d + j];
            }
            Close(expected, grad, 1e-12);
            fl.DualStep(losses, batch);
            var after = fl.Multipliers;
            for (int i = 0; i < n; i++)
            {
                int b = Array.IndexOf(batch, i);
                double want = b < 0 ? lam[i] : Math.Max(0, lam[i] + 0.7 * (l[b] - 0.05 - lam[i] / 2.0));
                Assert.Equal(want, after[i], 1e-12);
            }
            Assert.Equal(after.Select(v => v / 2.0).ToArray(), fl.Slacks);
            theta = (theta.Detach() - Tensor.FromArray(grad, new Shape(d, 1)) * 0.05).RequiresGrad_();
        }
        Assert.Throws<ArgumentException>(() => fl.Lagrangian(Losses(theta), [4, 4, 7, 2]));
        Assert.Throws<ArgumentOutOfRangeException>(() => fl.DualStep(Losses(theta), [4, 0, 9, 2]));
        Assert.Throws<ShapeMismatchException>(() => fl.DualStep(Losses(theta), [4, 0]));
        Assert.Equal("epsilon", Assert.Throws<ArgumentOutOfRangeException>(() => new FeasibleLearning(3, -1, 1)).ParamName);
        Assert.Equal("slackPenalty", Assert.Throws<ArgumentOutOfRangeException>(() => new FeasibleLearning(3, 0.1, 1, 0)).ParamName);
    }

    [Fact]
    public void Feasible_learning_satisfies_every_constraint_of_a_feasible_problem_and_frees_inactive_multipliers()
    {
        // Residual noise within ±0.1 leaves θ* with every l_i ≤ 0.01 < ε = 0.05: feasible with room to spare.
        const int n = 16, d = 3;
        const double eps = 0.05;
        var (x, y, _, _) = Regression(n, d, 0.1, 3, thetaScale: 0.3);
        var fl = new FeasibleLearning(n, eps, dualLearningRate: 1.0);
        var theta = Tensor.Zeros(new Shape(d, 1), DType.Float64).RequiresGrad_();
        int[] all = [.. Enumerable.Range(0, n)];
        Tensor Losses() => (x.MatMul(theta).Squeeze(1) - y).Square();
        int step = 0;
        for (; step < 5000 && (step == 0 || fl.Multipliers.Any(v => v > 0)); step++)
        {
            var losses = Losses();
            var g = Autograd.Grad(fl.Lagrangian(losses, all), theta);
            fl.DualStep(losses, all);
            theta = (theta.Detach() - g * 0.005).RequiresGrad_();
        }
        var final = Losses().ToArray<double>();
        var lam = fl.Multipliers;
        Assert.True(final.Max() <= eps, $"after {step} steps the largest loss is {final.Max()} > {eps}");
        // All multipliers reach zero exactly (every constraint ends inactive), so the primal has stopped where it is feasible.
        Assert.All(lam, v => Assert.Equal(0, v));
        Assert.True(step < 5000, "the multipliers did not all return to zero");
        Assert.True(step > 1, "the start was already feasible, so the run proves nothing");
    }

    [Fact]
    public void Resilient_feasible_learning_reaches_the_relaxed_problems_kkt_point_on_an_infeasible_problem()
    {
        // Noise ±0.3 against ε = 0.01: no θ satisfies every constraint, so the slacks u = λ/α must absorb the excess.
        const int n = 16, d = 3;
        const double eps = 0.01, alpha = 10;
        var (x, y, _, _) = Regression(n, d, 0.3, 5, thetaScale: 0.3);
        var fl = new FeasibleLearning(n, eps, dualLearningRate: 1.0, slackPenalty: alpha);
        var theta = Tensor.Zeros(new Shape(d, 1), DType.Float64).RequiresGrad_();
        int[] all = [.. Enumerable.Range(0, n)];
        Tensor Losses() => (x.MatMul(theta).Squeeze(1) - y).Square();
        for (int step = 0; step < 2000; step++)
        {
            var losses = Losses();
            var g = Autograd.Grad(fl.Lagrangian(losses, all), theta);
            fl.DualStep(losses, all);
            theta = (theta.Detach() - g * 0.005).RequiresGrad_();
        }
        var l = Losses().ToArray<double>();
        var lam = fl.Multipliers;
        var u = fl.Slacks;
        Assert.True(l.Max() > 2 * eps, "the problem should be infeasible");
        // KKT of min (α/2)‖u‖² s.t. l_i ≤ ε + u_i: active constraints hold with equality at u_i = λ_i/α, the others are satisfied,
        // and θ is stationary for Σ λ_i l_i.
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(lam[i] / alpha, u[i], 1e-15);
            if (lam[i] > 0) Assert.Equal(eps + u[i], l[i], 1e-9);
            else Assert.True(l[i] <= eps, $"inactive constraint {i} has loss {l[i]}");
        }
        var grad = Autograd.Grad(fl.Lagrangian(Losses(), all), theta).ToArray<double>();
        Assert.All(grad, v => Assert.True(Math.Abs(v) < 1e-8, $"Lagrangian gradient {v}"));
    }

    // ------------------------------------------------------------------ 5. Discrete infomax codes

    static double[] Softmaxes(Random rng, int count, int k)
    {
        var v = new double[count * k];
        for (int r = 0; r < count; r++)
        {
            var e = Enumerable.Range(0, k).Select(_ => Math.Exp(3 * rng.NextDouble() - 1.5)).ToArray();
            for (int c = 0; c < k; c++) v[r * k + c] = e[c] / e.Sum();
        }
        return v;
    }

    static double Mi(double[,] joint)
    {
        int a = joint.GetLength(0), b = joint.GetLength(1);
        double mi = 0;
        for (int i = 0; i < a; i++)
            for (int j = 0; j < b; j++)
            {
                double pi = Enumerable.Range(0, b).Sum(t => joint[i, t]), pj = Enumerable.Range(0, a).Sum(t => joint[t, j]);
                if (joint[i, j] > 0) mi += joint[i, j] * Math.Log(joint[i, j] / (pi * pj));
            }
        return mi;
    }

    [Fact]
    public void Dimco_batch_estimate_equals_the_exact_mutual_information_of_an_enumerated_joint()
    {
        var rng = new Random(8);
        for (int trial = 0; trial < 10; trial++)
        {
            int nx = 2 + trial % 3, classes = 2 + trial % 2, d = 1 + trial % 3, k = 2 + trial % 3;
            // The batch: every (x, y) pair, weighted by a random joint p(x, y); the encoder p(c_j | x) depends on x only.
            var pxy = Simplex(rng, nx * classes);
            var enc = Softmaxes(rng, nx * d, k);
            int n = nx * classes;
            var probs = new double[n * d * k];
            var labels = new long[n];
            for (int t = 0; t < n; t++)
            {
                int xi = t / classes;
                labels[t] = t % classes;
                Array.Copy(enc, xi * d * k, probs, t * d * k, d * k);
            }
            var p = Tensor.FromArray(probs, new Shape(n, d, k));
            double exact = 0;
            for (int j = 0; j < d; j++)
            {
                var joint = new double[classes, k];
                for (int t = 0; t < n; t++)
                    for (int c = 0; c < k; c++) joint[t % classes, c] += pxy[t] * enc[(t / classes * d + j) * k + c];
                exact += Mi(joint);
            }
            // Unnormalised weights: the estimator normalises them.
            var w = Tensor.FromArray(pxy.Select(v => 3 * v).ToArray());
            Assert.Equal(exact, Dimco.MutualInformation(p, Tensor.FromArray(labels), classes, w).Item(), 1e-12);
            var r = GradCheck.Run(xs => Dimco.MutualInformation(xs[0], Tensor.FromArray(labels), classes, xs[1]), [p, w]);
            Assert.True(r.Passed, r.ToString());
        }
    }

    [Fact]
    public void Dimco_degenerate_codes_and_pairwise_dependence()
    {
        // Codes that copy the label (k = classes, one-hot): I = H(Y); codes that ignore the input: I = 0.
        long[] y = [0, 2, 1, 2, 0, 2];
        var onehot = new double[6 * 3];
        for (int i = 0; i < 6; i++) onehot[i * 3 + y[i]] = 1;
        double hy = -new[] { 2 / 6.0, 1 / 6.0, 3 / 6.0 }.Sum(v => v * Math.Log(v));
        Assert.Equal(hy, Dimco.MutualInformation(Tensor.FromArray(onehot, new Shape(6, 1, 3)), Tensor.FromArray(y), 3).Item(), 1e-14);
        // Exact zeros in float32 stay finite, value and gradient (0 log 0 = 0).
        var oh32 = Tensor.FromArray(onehot, new Shape(6, 1, 3)).To(DType.Float32).RequiresGrad_();
        var mi32 = Dimco.MutualInformation(oh32, Tensor.FromArray(y), 3);
        Assert.Equal(hy, mi32.Item(), 1e-6);
        Assert.All(Autograd.Grad(mi32, oh32).To(DType.Float64).ToArray<double>(), g => Assert.True(double.IsFinite(g)));
        var same = Enumerable.Range(0, 6).SelectMany(_ => new[] { 0.2, 0.5, 0.3, 0.6, 0.1, 0.3 }).ToArray();
        var constant = Tensor.FromArray(same, new Shape(6, 2, 3));
        Assert.Equal(0, Dimco.MutualInformation(constant, Tensor.FromArray(y), 3).Item(), 1e-14);
        Assert.Equal(0, Dimco.PairwiseDependence(constant).Item(), 1e-14);
        // Two entries that both copy the label depend on each other by H(Y); a third constant entry adds nothing.
        var three = new double[6 * 3 * 3];
        for (int i = 0; i < 6; i++)
            for (int c = 0; c < 3; c++) { three[(i * 3) * 3 + c] = onehot[i * 3 + c]; three[(i * 3 + 1) * 3 + c] = onehot[i * 3 + c]; three[(i * 3 + 2) * 3 + c] = 1 / 3.0; }
        Assert.Equal(hy, Dimco.PairwiseDependence(Tensor.FromArray(three, new Shape(6, 3, 3))).Item(), 1e-12);
        // Random soft codes: against the written-out pairwise MI of p(c_j, c_l) = mean_i p_ij ⊗ p_il.
        var rng = new Random(2);
        var soft = Softmaxes(rng, 5 * 3, 2);
        double expected = 0;
        for (int j = 0; j < 3; j++)
            for (int l = j + 1; l < 3; l++)
            {
                var joint = new double[2, 2];
                for (int i = 0; i < 5; i++) for (int a = 0; a < 2; a++) for (int b = 0; b < 2; b++) joint[a, b] += soft[(i * 3 + j) * 2 + a] * soft[(i * 3 + l) * 2 + b] / 5;
                expected += Mi(joint);
            }
        var st = Tensor.FromArray(soft, new Shape(5, 3, 2));
        Assert.Equal(expected, Dimco.PairwiseDependence(st).Item(), 1e-12);
        var r = GradCheck.Run(xs => Dimco.PairwiseDependence(xs[0]), [st]);
        Assert.True(r.Passed, r.ToString());
        Assert.Throws<ArgumentOutOfRangeException>(() => Dimco.MutualInformation(st, Tensor.FromArray(new long[] { 0, 1, 2, 0, 1 }), 2));
        Assert.Equal("labels", Assert.Throws<ArgumentException>(() => Dimco.MutualInformation(st, Tensor.FromArray(new long[] { 0, 1 }), 2)).ParamName);
        Assert.Equal("codeProbs", Assert.Throws<ArgumentException>(() => Dimco.PairwiseDependence(Tensor.Zeros(new Shape(5, 2), DType.Float64))).ParamName);
    }
}

/// <summary>`kiln bounds --json` with tiny settings: one JSON object with a row per bound and K, and the plot when asked.</summary>
[Collection(nameof(SerialCollection))]
public class BoundsVerbTests
{
    [Fact]
    public void Bounds_verb_prints_one_json_object_and_writes_the_plot()
    {
        var dir = Directory.CreateTempSubdirectory("kiln-bounds-");
        string png = Path.Combine(dir.FullName, "b.png");
        try
        {
            var j = CliRun.JsonObject(Kiln.Cli.BoundsVerb.Build(), ["bounds", "--k", "1,4", "--dim", "3", "--repeats", "50", "--m", "2", "--json", "--plot", png]);
            Assert.Equal("bounds", j.GetProperty("kind").GetString());
            var rows = j.GetProperty("rows").EnumerateArray().ToArray();
            Assert.Equal(10, rows.Length);
            var iwae1 = rows.Single(q => q.GetProperty("bound").GetString() == "IWAE" && q.GetProperty("k").GetInt32() == 1);
            Assert.Equal(j.GetProperty("log_px").GetDouble() - iwae1.GetProperty("mean").GetDouble(), iwae1.GetProperty("gap").GetDouble(), 1e-12);
            Assert.Equal(8, rows.Single(q => q.GetProperty("bound").GetString() == "PIWAE" && q.GetProperty("k").GetInt32() == 4).GetProperty("samples").GetInt32());
            Assert.Equal(5, j.GetProperty("slopes").GetArrayLength());
            Assert.True(new FileInfo(png).Length > 1000);
            Assert.Equal(2, CliRun.Capture(Kiln.Cli.BoundsVerb.Build(), ["bounds", "--k", "0"]).Code);
        }
        finally { dir.Delete(recursive: true); }
    }
}
