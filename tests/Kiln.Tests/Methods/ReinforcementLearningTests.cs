using Kiln.Methods.ReinforcementLearning;
using Kiln.NN;
using Kiln.Tests.TestKit;
using Xunit;
using Xunit.Abstractions;

namespace Kiln.Tests.Methods;

/// <summary>
/// The classic RL and bandit methods of src/Kiln.Methods/ReinforcementLearning/README.md, each against a float64
/// transcription of its paper's equations written out here, on small generated bandits and MDPs (statistical trends
/// averaged over seeds, with slack).
/// </summary>
public class ReinforcementLearningTests(ITestOutputHelper output)
{
    const DType F64 = DType.Float64;

    // ---------------------------------------------------------------- Variance-adaptive Thompson sampling

    [Fact]
    public void Normal_gamma_sequential_updates_equal_the_batch_conjugate_posterior()
    {
        for (int seed = 0; seed < 30; seed++)
        {
            var r = new Random(seed);
            int n = seed % 7; // includes the empty sample
            var prior = new NormalGamma(r.NextDouble() * 2 - 1, 0.1 + r.NextDouble() * 3, 0.5 + r.NextDouble() * 2, 0.1 + r.NextDouble());
            var xs = Enumerable.Range(0, n).Select(_ => 3 * r.NextDouble() - 1).ToArray();
            var post = prior;
            foreach (var x in xs) post = post.Update(x);

            // Batch form: κn = κ0+n, μn = (κ0 μ0 + n x̄)/κn, αn = α0 + n/2, βn = β0 + ½Σ(x-x̄)² + κ0 n (x̄-μ0)²/(2κn).
            double xbar = n == 0 ? 0 : xs.Average(), ss = xs.Sum(x => (x - xbar) * (x - xbar));
            double kn = prior.Kappa + n;
            Assert.Equal(kn, post.Kappa, 1e-12);
            Assert.Equal((prior.Kappa * prior.Mean + n * xbar) / kn, post.Mean, 1e-12);
            Assert.Equal(prior.Alpha + n / 2.0, post.Alpha, 1e-12);
            Assert.Equal(prior.Beta + ss / 2 + prior.Kappa * n * (xbar - prior.Mean) * (xbar - prior.Mean) / (2 * kn), post.Beta, 1e-11);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => new NormalGamma(0, 1, 1, 1).Update(double.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => new VarianceAdaptiveThompsonSampling(3, new NormalGamma(0, 0, 1, 1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new VarianceAdaptiveThompsonSampling(0, new NormalGamma(0, 1, 1, 1)));
    }

    [Fact]
    public void Known_variance_posterior_is_the_gaussian_conjugate_update()
    {
        var r = new Random(5);
        var ts = new KnownVarianceThompsonSampling([0.25, 4], 0.3, 2);
        var xs = Enumerable.Range(0, 9).Select(_ => r.NextDouble()).ToArray();
        foreach (var x in xs) ts.Observe(1, x);
        double prec = 1 / 2.0 + xs.Length / 4.0;
        var (m, v) = ts.Posterior(1);
        Assert.Equal((0.3 / 2 + xs.Sum() / 4) / prec, m, 1e-12);
        Assert.Equal(1 / prec, v, 1e-12);
        Assert.Equal((0.3, 2.0), ts.Posterior(0));
        Assert.Throws<ArgumentException>(() => new KnownVarianceThompsonSampling([1, 0], 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ts.Observe(2, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new VarianceAdaptiveThompsonSampling(2, new NormalGamma(0, 1, 1, 1)).Observe(-1, 0));
    }

    [Theory]
    [InlineData(0.4, 2.0)]
    [InlineData(3.0, 0.5)]
    public void Posterior_draws_have_the_normal_gamma_moments(double alpha, double beta)
    {
        var post = new NormalGamma(0.7, 4, alpha, beta);
        var r = new Random(11);
        const int n = 40000;
        double sumTau = 0;
        var mus = new double[n];
        for (int i = 0; i < n; i++) { (mus[i], double tau) = post.Sample(r); sumTau += tau; }
        // E[τ] = α/β with sd sqrt(α)/β; μ is Student-t with 2α degrees of freedom around μ₀ (no mean when α ≤ 1/2), so its median.
        Assert.InRange(sumTau / n, alpha / beta - 4 * Math.Sqrt(alpha) / beta / Math.Sqrt(n), alpha / beta + 4 * Math.Sqrt(alpha) / beta / Math.Sqrt(n));
        Array.Sort(mus);
        Assert.InRange(mus[n / 2], 0.6, 0.8);
    }

    [Fact]
    public void Variance_adaptive_TS_pays_less_regret_than_TS_with_a_variance_upper_bound()
    {
        // Low, unequal noise that a conservative TS (σ = 1 for every arm) cannot exploit; VATS learns it.
        double[] stds = [0.05, 0.1, 0.2, 0.1, 0.3];
        const int horizon = 1000, seeds = 16;
        double vats = 0, bound = 0, oracle = 0, vatsHalf = 0;
        for (int seed = 0; seed < seeds; seed++)
        {
            var inst = new Random(1000 + seed);
            var means = stds.Select(_ => inst.NextDouble()).ToArray();
            var rv = GaussianBandit.CumulativeRegret(means, stds, new VarianceAdaptiveThompsonSampling(5, new NormalGamma(0.5, 1, 1, 0.05)), horizon, new Random(seed));
            vats += rv[^1]; vatsHalf += rv[horizon / 2 - 1];
            bound += GaussianBandit.CumulativeRegret(means, stds, new KnownVarianceThompsonSampling([1, 1, 1, 1, 1], 0.5, 1), horizon, new Random(seed))[^1];
            oracle += GaussianBandit.CumulativeRegret(means, stds, new KnownVarianceThompsonSampling(stds.Select(s => s * s).ToArray(), 0.5, 1), horizon, new Random(seed))[^1];
        }
        vats /= seeds; bound /= seeds; oracle /= seeds; vatsHalf /= seeds;
        output.WriteLine($"regret at T={horizon}: VATS {vats:F2} (T/2: {vatsHalf:F2}), TS sigma=1 {bound:F2}, TS true sigma {oracle:F2}");
        Assert.True(vats < 0.5 * bound, $"VATS regret {vats} is not well below TS with the upper bound {bound}");
        Assert.True(vats < 3 * oracle + 1, $"VATS regret {vats} is far above TS with the true variances {oracle}");
        Assert.True(vats - vatsHalf < vatsHalf, $"VATS regret grows linearly: {vatsHalf} at T/2, {vats} at T");
    }

    // ---------------------------------------------------------------- CoLSTIM

    static double Phi(double z) => 0.5 * (1 + Kiln.Kernels.Reference.Erf(z / Math.Sqrt(2)));

    // n duels on d-dimensional differences z_n, outcomes drawn from the LST model with θ*.
    static (double[] Z, double[] Y) Duels(int n, int d, double[] thetaStar, TransitivityLink link, Random r)
    {
        var z = new double[n * d];
        var y = new double[n];
        for (int i = 0; i < n; i++)
        {
            double u = 0;
            for (int a = 0; a < d; a++) { z[i * d + a] = 2 * r.NextDouble() - 1; u += thetaStar[a] * z[i * d + a]; }
            double p = link == TransitivityLink.Logistic ? 1 / (1 + Math.Exp(-u)) : Phi(u);
            y[i] = r.NextDouble() < p ? 1 : 0;
        }
        return (z, y);
    }

    [Fact]
    public void LST_likelihood_is_logistic_regression_on_feature_differences_and_the_probit_GLM_otherwise()
    {
        for (int seed = 0; seed < 12; seed++)
        {
            var r = new Random(seed);
            int n = seed % 5 * 3, d = 1 + seed % 4;
            var theta = Enumerable.Range(0, d).Select(_ => 2 * r.NextDouble() - 1).ToArray();
            var (z, y) = Duels(n, d, theta, TransitivityLink.Logistic, r);
            var tz = Tensor.FromArray(z, new Shape(n, d));
            var ty = Tensor.FromArray(y);
            double bce = 0, probit = 0;
            for (int i = 0; i < n; i++)
            {
                double u = 0;
                for (int a = 0; a < d; a++) u += theta[a] * z[i * d + a];
                double p = 1 / (1 + Math.Exp(-u));
                bce -= y[i] * Math.Log(p) + (1 - y[i]) * Math.Log(1 - p);
                probit -= y[i] * Math.Log(Phi(u)) + (1 - y[i]) * Math.Log(1 - Phi(u));
            }
            Assert.Equal(bce, LinearStochasticTransitivity.NegativeLogLikelihood(Tensor.FromArray(theta), tz, ty, TransitivityLink.Logistic).Item(), 1e-10);
            Assert.Equal(probit, LinearStochasticTransitivity.NegativeLogLikelihood(Tensor.FromArray(theta), tz, ty, TransitivityLink.Probit).Item(), 1e-9);
            if (n > 0)
                foreach (var link in new[] { TransitivityLink.Logistic, TransitivityLink.Probit })
                {
                    var g = GradCheck.Run(xs => LinearStochasticTransitivity.NegativeLogLikelihood(xs[0], tz, ty, link), [Tensor.FromArray(theta)]);
                    Assert.True(g.Passed, $"{link} nll gradient: {g}");
                }
        }
        Assert.Throws<ShapeMismatchException>(() => LinearStochasticTransitivity.NegativeLogLikelihood(Tensor.Zeros(new Shape(2), F64), Tensor.Zeros(new Shape(4, 3), F64), Tensor.Zeros(new Shape(4), F64), TransitivityLink.Logistic));
        Assert.Throws<ArgumentException>(() => LinearStochasticTransitivity.FitMaximumLikelihood(new double[4], [0.5, 2], 2, TransitivityLink.Logistic));
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.7)]
    public void LST_MLE_with_the_logistic_link_equals_logistic_regression_by_gradient_descent(double ridge)
    {
        const int n = 150, d = 3;
        var r = new Random(21);
        var (z, y) = Duels(n, d, [1.5, -1, 0.5], TransitivityLink.Logistic, r);
        var mle = LinearStochasticTransitivity.FitMaximumLikelihood(z, y, d, TransitivityLink.Logistic, ridge);

        // Logistic regression of y on z (no intercept), ridge/2 |w|², by plain gradient descent.
        var w = new double[d];
        double lr = 4.0 / (z.Sum(v => v * v) + 4 * ridge);
        for (int it = 0; it < 20000; it++)
        {
            var g = w.Select(v => ridge * v).ToArray();
            for (int i = 0; i < n; i++)
            {
                double u = 0;
                for (int a = 0; a < d; a++) u += w[a] * z[i * d + a];
                double e = 1 / (1 + Math.Exp(-u)) - y[i];
                for (int a = 0; a < d; a++) g[a] += e * z[i * d + a];
            }
            for (int a = 0; a < d; a++) w[a] -= lr * g[a];
        }
        for (int a = 0; a < d; a++) Assert.Equal(w[a], mle[a], 1e-6);
    }

    [Fact]
    public void LST_MLE_with_the_probit_link_is_a_stationary_point_of_the_probit_likelihood()
    {
        const int n = 120, d = 2;
        var (z, y) = Duels(n, d, [1, -2], TransitivityLink.Probit, new Random(3));
        var mle = LinearStochasticTransitivity.FitMaximumLikelihood(z, y, d, TransitivityLink.Probit, ridge: 0.2);
        var theta = Tensor.FromArray(mle).RequiresGrad_();
        var loss = LinearStochasticTransitivity.NegativeLogLikelihood(theta, Tensor.FromArray(z, new Shape(n, d)), Tensor.FromArray(y), TransitivityLink.Probit) + 0.1 * (theta * theta).Sum();
        loss.Backward();
        Assert.True(theta.Grad!.ToArray<double>().All(g => Math.Abs(g) < 1e-7), $"gradient at the probit MLE: {string.Join(", ", theta.Grad!.ToArray<double>())}");
    }

    [Fact]
    public void CoLSTIM_regret_grows_like_the_square_root_of_the_horizon()
    {
        const int d = 3, arms = 5, horizon = 1200, seeds = 5;
        double early = 0, late = 0, random = 0;
        for (int seed = 0; seed < seeds; seed++)
        {
            var inst = new Random(500 + seed);
            var theta = Enumerable.Range(0, d).Select(_ => Sampling.Normal(inst)).ToArray();
            double norm = Math.Sqrt(theta.Sum(v => v * v));
            theta = theta.Select(v => 3 * v / norm).ToArray();
            var regret = ContextualDuelingBandit.CumulativeRegret(theta, arms, horizon, new Colstim(d), TransitivityLink.Logistic, new Random(seed));
            early += regret[horizon / 4 - 1]; late += regret[^1];
            // Uniformly random duels (all exploration) as the linear-regret yardstick.
            random += ContextualDuelingBandit.CumulativeRegret(theta, arms, horizon, new Colstim(d, new ColstimOptions { ExplorationRounds = horizon }), TransitivityLink.Logistic, new Random(seed))[^1];
        }
        output.WriteLine($"CoLSTIM regret: T/4 {early / seeds:F2}, T {late / seeds:F2} (ratio {late / early:F2}; sqrt: 2, linear: 4); random duels {random / seeds:F2}");
        Assert.True(late / early < 2.8, $"regret ratio R(T)/R(T/4) = {late / early} is not sublinear enough (sqrt: 2, linear: 4)");
        Assert.True(late < 0.25 * random, $"CoLSTIM regret {late / seeds} is not well below random duels {random / seeds}");
    }

    // ---------------------------------------------------------------- SAC-RND

    [Fact]
    public void FiLM_is_gamma_times_features_plus_beta_of_the_condition()
    {
        for (int seed = 0; seed < 8; seed++)
        {
            var r = new Random(seed);
            int b = seed % 4, c = 1 + seed % 3, f = 1 + (seed * 5) % 4;
            var film = new FiLM(c, f, new Generator((ulong)seed + 1), F64);
            var h = Dense.Uniform(r, b * f);
            var cond = Dense.Uniform(r, b * c);
            var w = film.Projection.Weight.ToArray<double>();
            var bias = film.Projection.Bias!.ToArray<double>();
            var expected = new double[b * f];
            for (int i = 0; i < b; i++)
                for (int j = 0; j < f; j++)
                {
                    double gamma = bias[j], beta = bias[f + j];
                    for (int k = 0; k < c; k++) { gamma += w[j * c + k] * cond[i * c + k]; beta += w[(f + j) * c + k] * cond[i * c + k]; }
                    expected[i * f + j] = gamma * h[i * f + j] + beta;
                }
            var th = Tensor.FromArray(h, new Shape(b, f));
            var tc = Tensor.FromArray(cond, new Shape(b, c));
            Close.Check(expected, film.Forward(th, tc).ToArray<double>(), 1e-13, 1e-13, "film");
            if (b > 0)
            {
                var g = GradCheck.Run(xs => film.Forward(xs[0], xs[1]), [th, tc]);
                Assert.True(g.Passed, $"film input gradient: {g}");
                Kiln.Tests.NN.NNCheck.Parameters(film, () => film.Forward(th, tc), "film parameters");
            }
        }
        Assert.Throws<ShapeMismatchException>(() => new FiLM(2, 3, dtype: F64).Forward(Tensor.Zeros(new Shape(1, 4), F64), Tensor.Zeros(new Shape(1, 2), F64)));
    }

    [Fact]
    public void SAC_RND_objectives_match_their_transcription()
    {
        var r = new Random(9);
        const int b = 6;
        double[] q = Dense.Uniform(r, b), lp = Dense.Uniform(r, b), bo = Dense.Uniform(r, b, 0, 2), rew = Dense.Uniform(r, b), done = [0, 1, 0, 0, 1, 0];
        double actor = Enumerable.Range(0, b).Average(i => 0.2 * lp[i] - q[i] + 0.5 * bo[i]);
        Assert.Equal(actor, SacRnd.ActorLoss(Tensor.FromArray(q), Tensor.FromArray(lp), Tensor.FromArray(bo), 0.2, 0.5).Item(), 1e-12);
        var target = SacRnd.CriticTarget(Tensor.FromArray(rew), Tensor.FromArray(done), Tensor.FromArray(q), Tensor.FromArray(lp), Tensor.FromArray(bo), 0.9, 0.2, 3).ToArray<double>();
        for (int i = 0; i < b; i++) Assert.Equal(rew[i] + 0.9 * (1 - done[i]) * (q[i] - 0.2 * lp[i] - 3 * bo[i]), target[i], 1e-12);
        Assert.Throws<ArgumentOutOfRangeException>(() => SacRnd.CriticTarget(Tensor.FromArray(rew), Tensor.FromArray(done), Tensor.FromArray(q), Tensor.FromArray(lp), Tensor.FromArray(bo), 1.5, 0.2, 3));
        Assert.Throws<ShapeMismatchException>(() => SacRnd.ActorLoss(Tensor.FromArray(q), Tensor.FromArray(lp), Tensor.FromArray(rew[..3]), 0.2, 0.5));

        var rnd = new RandomNetworkDistillation(2, 2, 3, 5, new Generator(4), F64);
        var s = Tensor.FromArray(Dense.Uniform(r, 8), new Shape(4, 2));
        var g = GradCheck.Run(xs => rnd.Bonus(s, xs[0]), [Tensor.FromArray(Dense.Uniform(r, 8), new Shape(4, 2))]);
        Assert.True(g.Passed, $"bonus action gradient: {g}");
        Assert.All(rnd.Prior.Parameters(), p => Assert.False(p.RequiresGrad));
    }

    // Offline data: states uniform in [-1, 1]², the behaviour action a = tanh(1.5 s₁ - s₂, s₁ s₂) plus small noise.
    static (Tensor S, Tensor A) BehaviourData(int n, Random r)
    {
        var s = Dense.Uniform(r, 2 * n);
        var a = new double[2 * n];
        for (int i = 0; i < n; i++)
        {
            a[2 * i] = Math.Tanh(1.5 * s[2 * i] - s[2 * i + 1]) + 0.05 * Sampling.Normal(r);
            a[2 * i + 1] = Math.Tanh(2 * s[2 * i] * s[2 * i + 1]) + 0.05 * Sampling.Normal(r);
        }
        return (Tensor.FromArray(s, new Shape(n, 2)), Tensor.FromArray(a, new Shape(n, 2)));
    }

    [Fact]
    public void RND_bonus_is_small_on_the_offline_data_and_large_off_support_and_an_actor_can_descend_it()
    {
        var r = new Random(17);
        var rnd = new RandomNetworkDistillation(2, 2, 8, 32, new Generator(18), F64);
        var opt = new AdamW(rnd.Predictor.Parameters(), 3e-3, weightDecay: 0);
        var (s, a) = BehaviourData(512, r);
        for (int step = 0; step < 400; step++)
        {
            var idx = Tensor.FromArray(Enumerable.Range(0, 64).Select(_ => (long)r.Next(512)).ToArray());
            opt.ZeroGrad();
            rnd.Loss(s.IndexSelect(0, idx), a.IndexSelect(0, idx)).Backward();
            opt.Step();
        }
        var (sTest, aTest) = BehaviourData(256, r);
        // Off support: the same states with the behaviour action pushed at least 0.6 away (per coordinate, mirrored).
        var aData = aTest.ToArray<double>();
        var aOff = aData.Select(v => v > 0 ? v - 0.6 - 0.4 * r.NextDouble() : v + 0.6 + 0.4 * r.NextDouble()).ToArray();
        double onData = rnd.Bonus(sTest, aTest).Mean().Item();
        double offSupport = rnd.Bonus(sTest, Tensor.FromArray(aOff, new Shape(256, 2))).Mean().Item();
        output.WriteLine($"RND bonus: data {onData:G4}, off support {offSupport:G4}");
        Assert.True(offSupport > 4 * onData, $"off-support bonus {offSupport} is not well above the data's {onData}");

        // An actor that descends the bonus in its actions moves back toward the behaviour action.
        var acts = new Parameter(Tensor.FromArray(aOff, new Shape(256, 2)));
        var actOpt = new AdamW([acts], 0.02, weightDecay: 0);
        double distBefore = Enumerable.Range(0, aData.Length).Average(i => Math.Abs(aOff[i] - aData[i]));
        for (int step = 0; step < 100; step++)
        {
            actOpt.ZeroGrad();
            rnd.Bonus(sTest, acts).Sum().Backward();
            actOpt.Step();
        }
        var moved = acts.ToArray<double>();
        double distAfter = Enumerable.Range(0, aData.Length).Average(i => Math.Abs(moved[i] - aData[i]));
        double bonusAfter = rnd.Bonus(sTest, acts).Mean().Item();
        output.WriteLine($"actor descent: bonus {offSupport:G4} -> {bonusAfter:G4}, distance to behaviour {distBefore:F3} -> {distAfter:F3}");
        Assert.True(bonusAfter < 0.5 * offSupport, $"descending the bonus left it at {bonusAfter} from {offSupport}");
        Assert.True(distAfter < 0.7 * distBefore, $"descending the bonus moved actions {distBefore} -> {distAfter} from the behaviour action");
    }

    // ---------------------------------------------------------------- Diverse projection ensembles

    static (double[] Atoms, double[] Probs) RandomDistribution(Random r, int n, double spread = 3)
    {
        var atoms = Enumerable.Range(0, n).Select(_ => spread * (2 * r.NextDouble() - 1)).ToArray();
        var w = Enumerable.Range(0, n).Select(_ => 0.05 + r.NextDouble()).ToArray();
        double sum = w.Sum();
        return (atoms, w.Select(v => v / sum).ToArray());
    }

    // The quantile function F⁻¹(τ) = min{x : F(x) ≥ τ} of a discrete distribution.
    static double QuantileOf(double[] atoms, double[] probs, double tau)
    {
        var order = Enumerable.Range(0, atoms.Length).OrderBy(i => atoms[i]).ToArray();
        double c = 0;
        foreach (var i in order) { c += probs[i]; if (c >= tau) return atoms[i]; }
        return atoms[order[^1]];
    }

    // W1 by the quantile formula ∫₀¹ |F_A⁻¹(τ) - F_B⁻¹(τ)| dτ: both quantile functions are constant between consecutive
    // cumulative masses of either distribution, so the integral is exact on that partition (evaluated at midpoints).
    static double W1Quantile(double[] aA, double[] pA, double[] aB, double[] pB)
    {
        var cuts = new List<double> { 0, 1 };
        foreach (var (atoms, probs) in new[] { (aA, pA), (aB, pB) })
        {
            var order = Enumerable.Range(0, atoms.Length).OrderBy(i => atoms[i]).ToArray();
            double c = 0;
            foreach (var i in order) { c += probs[i]; if (c < 1) cuts.Add(c); }
        }
        cuts.Sort();
        double w = 0;
        for (int k = 0; k + 1 < cuts.Count; k++)
        {
            double lo = cuts[k], hi = cuts[k + 1];
            if (hi <= lo) continue;
            double mid = (lo + hi) / 2;
            w += (hi - lo) * Math.Abs(QuantileOf(aA, pA, mid) - QuantileOf(aB, pB, mid));
        }
        return w;
    }

    [Fact]
    public void Categorical_projection_is_the_C51_projection_and_keeps_mass_mean_and_the_support()
    {
        const double vMin = -2, vMax = 2;
        for (int seed = 0; seed < 20; seed++)
        {
            var r = new Random(seed);
            int n = 1 + seed % 6, bins = 2 + seed % 7;
            double delta = (vMax - vMin) / (bins - 1);
            var (atoms, probs) = RandomDistribution(r, n);
            var projected = ProjectionEnsembles.CategoricalProjection(Tensor.FromArray(atoms), Tensor.FromArray(probs), vMin, vMax, bins).ToArray<double>();
            // C51: b = (clamp(x) - vMin)/Δ, mass split between floor(b) and ceil(b) by distance.
            var expected = new double[bins];
            for (int i = 0; i < n; i++)
            {
                double b = (Math.Clamp(atoms[i], vMin, vMax) - vMin) / delta;
                int l = (int)Math.Floor(b), u = (int)Math.Ceiling(b);
                if (l == u) expected[l] += probs[i];
                else { expected[l] += probs[i] * (u - b); expected[u] += probs[i] * (b - l); }
            }
            Close.Check(expected, projected, 1e-12, 1e-12, "categorical projection");
            Assert.Equal(1, projected.Sum(), 1e-12);
            if (atoms.All(x => x >= vMin && x <= vMax))
                Assert.Equal(atoms.Zip(probs, (x, p) => x * p).Sum(), Enumerable.Range(0, bins).Sum(j => (vMin + j * delta) * projected[j]), 1e-12);
            // Idempotent: a distribution on the support projects to itself.
            var onSupport = ProjectionEnsembles.CategoricalProjection(Tensor.Linspace(vMin, vMax, bins, F64), Tensor.FromArray(projected), vMin, vMax, bins).ToArray<double>();
            Close.Check(projected, onSupport, 1e-12, 1e-12, "categorical projection twice");
        }
        var batch = ProjectionEnsembles.CategoricalProjection(Tensor.Zeros(new Shape(0, 3), F64), Tensor.Zeros(new Shape(0, 3), F64), -1, 1, 5);
        Assert.Equal(new Shape(0, 5), batch.Shape);
        Assert.Throws<ArgumentOutOfRangeException>(() => ProjectionEnsembles.CategoricalProjection(Tensor.Zeros(new Shape(3), F64), Tensor.Zeros(new Shape(3), F64), 1, 1, 5));
        Assert.Throws<ShapeMismatchException>(() => ProjectionEnsembles.CategoricalProjection(Tensor.Zeros(new Shape(3), F64), Tensor.Zeros(new Shape(2), F64), -1, 1, 5));
    }

    [Fact]
    public void Quantile_projection_takes_midpoint_quantiles_and_is_W1_closest()
    {
        for (int seed = 0; seed < 20; seed++)
        {
            var r = new Random(100 + seed);
            int n = 1 + seed % 7, m = 1 + seed % 5, batch = 1 + seed % 3;
            var atoms = new double[batch * n];
            var probs = new double[batch * n];
            for (int b = 0; b < batch; b++)
            {
                var (a, p) = RandomDistribution(r, n);
                a.CopyTo(atoms, b * n); p.CopyTo(probs, b * n);
            }
            var q = ProjectionEnsembles.QuantileProjection(Tensor.FromArray(atoms, new Shape(batch, n)), Tensor.FromArray(probs, new Shape(batch, n)), m).ToArray<double>();
            for (int b = 0; b < batch; b++)
            {
                var a = atoms[(b * n)..((b + 1) * n)];
                var p = probs[(b * n)..((b + 1) * n)];
                var expected = Enumerable.Range(0, m).Select(k => QuantileOf(a, p, (2 * k + 1) / (2.0 * m))).ToArray();
                Close.Check(expected, q[(b * m)..((b + 1) * m)], 0, 0, "quantile projection");
                var uniform = Enumerable.Repeat(1.0 / m, m).ToArray();
                double best = W1Quantile(a, p, expected, uniform);
                for (int t = 0; t < 10; t++)
                {
                    var other = expected.Select(x => x + 0.3 * (2 * r.NextDouble() - 1)).ToArray();
                    Assert.True(best <= W1Quantile(a, p, other, uniform) + 1e-12, "a perturbed m-atom distribution is W1-closer than the quantile projection");
                }
            }
        }
    }

    [Fact]
    public void W1_by_the_CDF_integral_equals_the_quantile_formula()
    {
        for (int seed = 0; seed < 25; seed++)
        {
            var r = new Random(200 + seed);
            var (aA, pA) = RandomDistribution(r, 1 + seed % 6);
            var (aB, pB) = RandomDistribution(r, 1 + seed * 3 % 5, 2);
            if (seed % 5 == 0) aB[0] = aA[0]; // a shared atom
            var w = ProjectionEnsembles.Wasserstein1(Tensor.FromArray(aA), Tensor.FromArray(pA), Tensor.FromArray(aB), Tensor.FromArray(pB)).Item();
            Assert.Equal(W1Quantile(aA, pA, aB, pB), w, 1e-12);
            if (seed % 5 != 0)
            {
                var g = GradCheck.Run(xs => ProjectionEnsembles.Wasserstein1(xs[0], xs[1], xs[2], xs[3]), [Tensor.FromArray(aA), Tensor.FromArray(pA), Tensor.FromArray(aB), Tensor.FromArray(pB)]);
                Assert.True(g.Passed, $"W1 gradient: {g}");
            }
        }
        var (x, p) = RandomDistribution(new Random(1), 4);
        Assert.Equal(0, ProjectionEnsembles.Wasserstein1(Tensor.FromArray(x), Tensor.FromArray(p), Tensor.FromArray(x), Tensor.FromArray(p)).Item(), 1e-14);
        Assert.Throws<ShapeMismatchException>(() => ProjectionEnsembles.Wasserstein1(Tensor.Zeros(new Shape(2, 3), F64), Tensor.Zeros(new Shape(2, 3), F64), Tensor.Zeros(new Shape(3, 3), F64), Tensor.Zeros(new Shape(3, 3), F64)));
    }

    [Fact]
    public void Ensemble_disagreement_is_the_mean_W1_to_the_mixture_and_zero_when_members_agree()
    {
        var r = new Random(7);
        var members = Enumerable.Range(0, 3).Select(k => RandomDistribution(r, 2 + k)).ToArray();
        var mixAtoms = members.SelectMany(m => m.Atoms).ToArray();
        var mixProbs = members.SelectMany(m => m.Probs.Select(v => v / 3)).ToArray();
        double expected = members.Average(m => W1Quantile(m.Atoms, m.Probs, mixAtoms, mixProbs));
        var bonus = ProjectionEnsembles.Disagreement(members.Select(m => Tensor.FromArray(m.Atoms)).ToArray(), members.Select(m => Tensor.FromArray(m.Probs)).ToArray()).Item();
        Assert.Equal(expected, bonus, 1e-12);
        Assert.True(bonus > 0);
        var same = Tensor.FromArray(members[0].Atoms);
        var sameP = Tensor.FromArray(members[0].Probs);
        Assert.Equal(0, ProjectionEnsembles.Disagreement([same, same], [sameP, sameP]).Item(), 1e-14);

        var target = ProjectionEnsembles.BellmanAtoms(Tensor.FromArray(new[] { 1.0, 2 }), Tensor.FromArray(new[] { 0.0, 1 }), Tensor.FromArray(new double[,] { { 1, 2 }, { 3, 4 } }), 0.5).ToArray<double>();
        Assert.Equal([1.5, 2, 2, 2], target);
    }

    // ---------------------------------------------------------------- Orchestrated value mapping

    [Fact]
    public void One_identity_channel_is_Q_learning_exactly()
    {
        const int states = 5, actions = 3;
        const double gamma = 0.9;
        var r = new Random(31);
        var ovm = new OrchestratedQLearning(states, actions, [ValueMapping.Identity], [1], gamma, 0.25);
        var q = Enumerable.Repeat(0.25, states * actions).ToArray();
        for (int t = 0; t < 500; t++)
        {
            int s = r.Next(states), a = r.Next(actions), s2 = r.Next(states);
            bool terminal = r.NextDouble() < 0.1;
            double reward = 2 * r.NextDouble() - 1, beta = 0.05 + 0.5 * r.NextDouble();
            ovm.Update(s, a, [reward], s2, terminal, beta);
            double max = Enumerable.Range(0, actions).Max(b => q[s2 * actions + b]);
            q[s * actions + a] += beta * (reward + (terminal ? 0 : gamma * max) - q[s * actions + a]);
        }
        for (int s = 0; s < states; s++)
            for (int a = 0; a < actions; a++) Assert.Equal(q[s * actions + a], ovm.Q(s, a), 1e-12);
        Assert.Throws<ArgumentException>(() => ovm.Update(0, 0, [1, 2], 0, false, 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ovm.Update(0, 0, [1], 0, false, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => ovm.Update(0, actions, [1], 0, false, 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ovm.Update(0, 0, [1], states, false, 0.1));
    }

    [Fact]
    public void Orchestrated_channels_converge_to_the_value_iteration_Q_star_on_a_random_MDP()
    {
        const int states = 4, actions = 2;
        const double gamma = 0.8;
        var r = new Random(41);
        var p = new double[states * actions][];
        var reward = new double[states * actions];
        for (int sa = 0; sa < states * actions; sa++)
        {
            var w = Enumerable.Range(0, states).Select(_ => r.NextDouble()).ToArray();
            p[sa] = w.Select(v => v / w.Sum()).ToArray();
            reward[sa] = 2 * r.NextDouble() - 1;
        }
        // Value iteration: Q(s,a) = R(s,a) + γ Σ_s' P(s'|s,a) max_a' Q(s',a').
        var qStar = new double[states * actions];
        for (int it = 0; it < 500; it++)
        {
            var v = Enumerable.Range(0, states).Select(s => Enumerable.Range(0, actions).Max(a => qStar[s * actions + a])).ToArray();
            for (int sa = 0; sa < states * actions; sa++) qStar[sa] = reward[sa] + gamma * Enumerable.Range(0, states).Sum(s2 => p[sa][s2] * v[s2]);
        }

        var learners = new (string Name, OrchestratedQLearning L, double BetaMap)[]
        {
            ("log/log", new OrchestratedQLearning(states, actions, [ValueMapping.Logarithmic(), ValueMapping.Logarithmic()], [1, -1], gamma), 0.5),
            ("identity/log", new OrchestratedQLearning(states, actions, [ValueMapping.Identity, ValueMapping.Logarithmic(0.3, 0.1)], [1, -1], gamma), 0.7),
        };
        foreach (var (name, learner, betaMap) in learners)
        {
            var rng = new Random(42);
            for (int sweep = 1; sweep <= 3000; sweep++)
            {
                double beta = Math.Pow(sweep, -0.6);
                for (int s = 0; s < states; s++)
                    for (int a = 0; a < actions; a++)
                        learner.Update(s, a, OrchestratedQLearning.PositiveNegative(reward[s * actions + a]), Sampling.Categorical(rng, p[s * actions + a]), false, beta, betaMap);
            }
            double err = Enumerable.Range(0, states * actions).Max(sa => Math.Abs(learner.Q(sa / actions, sa % actions) - qStar[sa]));
            output.WriteLine($"OVM {name}: max |Q - Q*| = {err:G3} (|Q*| max {qStar.Max(Math.Abs):F2})");
            Assert.True(err < 0.1, $"OVM {name}: max |Q - Q*| = {err}");
            for (int s = 0; s < states; s++)
                Assert.Equal(Enumerable.Range(0, actions).MaxBy(a => qStar[s * actions + a]), learner.Greedy(s));
        }
    }

    // ---------------------------------------------------------------- Contrastive difference predictive coding (TD InfoNCE)

    [Fact]
    public void TD_InfoNCE_loss_matches_its_transcription_and_holds_the_importance_weights_fixed()
    {
        for (int seed = 0; seed < 8; seed++)
        {
            var r = new Random(300 + seed);
            int n = 1 + seed % 5;
            double gamma = 0.9 * r.NextDouble();
            double[] next = Dense.Uniform(r, n * n, -2, 2), goal = Dense.Uniform(r, n * n, -2, 2), nextGoal = Dense.Uniform(r, n * n, -2, 2);
            double LogSoftmax(double[] m, int i, int j) => m[i * n + j] - Math.Log(Enumerable.Range(0, n).Sum(k => Math.Exp(m[i * n + k])));
            double expected = 0;
            for (int i = 0; i < n; i++)
            {
                double z = Enumerable.Range(0, n).Sum(k => Math.Exp(nextGoal[i * n + k]));
                expected -= (1 - gamma) * LogSoftmax(next, i, i) / n;
                for (int j = 0; j < n; j++) expected -= gamma * Math.Exp(nextGoal[i * n + j]) / z * LogSoftmax(goal, i, j) / n;
            }
            Tensor M(double[] v) => Tensor.FromArray(v, new Shape(n, n));
            Assert.Equal(expected, TdInfoNce.Loss(M(next), M(goal), M(nextGoal), gamma).Item(), 1e-12);
            var g = GradCheck.Run(xs => TdInfoNce.Loss(xs[0], xs[1], M(nextGoal), gamma), [M(next), M(goal)]);
            Assert.True(g.Passed, $"td infonce gradient: {g}");
            var w = M(nextGoal).RequiresGrad_();
            TdInfoNce.Loss(M(next).RequiresGrad_(), M(goal), w, gamma).Backward();
            Assert.True(w.Grad is null || w.Grad.ToArray<double>().All(v => v == 0), "gradient reached the importance weights");
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => TdInfoNce.Loss(Tensor.Zeros(new Shape(2, 2), F64), Tensor.Zeros(new Shape(2, 2), F64), Tensor.Zeros(new Shape(2, 2), F64), 1));
        Assert.Throws<ShapeMismatchException>(() => TdInfoNce.Loss(Tensor.Zeros(new Shape(2, 2), F64), Tensor.Zeros(new Shape(2, 3), F64), Tensor.Zeros(new Shape(2, 2), F64), 0.5));
    }

    [Fact]
    public void TD_InfoNCE_tabular_critic_recovers_the_discounted_occupancy_up_to_a_row_constant()
    {
        const int states = 4, actions = 2, batch = 96, steps = 400;
        const double gamma = 0.5;
        var r = new Random(61);
        var p = Enumerable.Range(0, states * actions).Select(_ => { var w = Enumerable.Range(0, states).Select(_ => r.NextDouble() + 0.1).ToArray(); return w.Select(v => v / w.Sum()).ToArray(); }).ToArray();
        var pi = Enumerable.Range(0, states).Select(_ => { double a = 0.2 + 0.6 * r.NextDouble(); return new[] { a, 1 - a }; }).ToArray();
        // Exact occupancy of the future state s₊ (k ≥ 1 steps ahead): M = (1-γ)P + γ P Π M.
        var occ = new double[states * actions][];
        for (int sa = 0; sa < occ.Length; sa++) occ[sa] = new double[states];
        for (int it = 0; it < 200; it++)
            occ = Enumerable.Range(0, states * actions).Select(sa => Enumerable.Range(0, states).Select(g =>
                (1 - gamma) * p[sa][g] + gamma * Enumerable.Range(0, states).Sum(s2 => p[sa][s2] * Enumerable.Range(0, actions).Sum(a2 => pi[s2][a2] * occ[s2 * actions + a2][g])))
                .ToArray()).ToArray();
        var marginal = Enumerable.Range(0, states).Select(g => p.Average(row => row[g])).ToArray(); // goals ~ the next-state marginal

        var table = new Parameter(Tensor.Zeros(new Shape(states * actions, states), F64));
        // A cosine-decayed step lets the last iterates average out the batch noise.
        var opt = new AdamW([table], 0.05, weightDecay: 0) { Schedule = LrSchedule.Cosine(0.05, steps, 0.002) };
        for (int step = 0; step < steps; step++)
        {
            long[] sa = new long[batch], next = new long[batch], nextSa = new long[batch], goals = new long[batch];
            for (int i = 0; i < batch; i++)
            {
                int x = r.Next(states * actions), s2 = Sampling.Categorical(r, p[x]);
                sa[i] = x; next[i] = s2; nextSa[i] = s2 * actions + Sampling.Categorical(r, pi[s2]);
                goals[i] = Sampling.Categorical(r, p[r.Next(states * actions)]);
            }
            Tensor Idx(long[] v) => Tensor.FromArray(v);
            var rows = table.IndexSelect(0, Idx(sa));
            var loss = TdInfoNce.Loss(rows.IndexSelect(1, Idx(next)), rows.IndexSelect(1, Idx(goals)), table.IndexSelect(0, Idx(nextSa)).IndexSelect(1, Idx(goals)), gamma);
            opt.ZeroGrad();
            loss.Backward();
            opt.Step();
        }
        var f = table.ToArray<double>();
        double err = 0;
        for (int sa = 0; sa < states * actions; sa++)
        {
            var row = Enumerable.Range(0, states).Select(g => marginal[g] * Math.Exp(f[sa * states + g])).ToArray();
            double z = row.Sum();
            for (int g = 0; g < states; g++) err = Math.Max(err, Math.Abs(row[g] / z - occ[sa][g]));
        }
        output.WriteLine($"TD InfoNCE: max |normalised p(g) exp f - occupancy| = {err:G3}");
        Assert.True(err < 0.05, $"the learned critic's normalised rows miss the occupancy by {err}");
    }

    // ---------------------------------------------------------------- HERON

    [Fact]
    public void Hierarchical_comparator_decides_at_the_first_level_beyond_its_margin()
    {
        var c = new HierarchicalComparator([0.5, 0.1, 0]);
        Assert.Equal((1, 0), c.Compare([2, 0, 0], [1, 5, 5]));
        Assert.Equal((-1, 1), c.Compare([1.2, 0, 9], [1, 0.3, 0]));
        Assert.Equal((1, 2), c.Compare([1, 0, 0.01], [1.4, 0.05, 0]));
        Assert.Equal((0, -1), c.Compare([1, 0, 3], [1.5, 0.1, 3]));
        var r = new Random(71);
        for (int t = 0; t < 200; t++)
        {
            var a = Dense.Uniform(r, 3);
            var b = Dense.Uniform(r, 3);
            var (pab, lab) = c.Compare(a, b);
            var (pba, lba) = c.Compare(b, a);
            Assert.Equal(-pab, pba);
            Assert.Equal(lab, lba);
            // The transcription: walk the levels in order.
            int expected = 0;
            for (int k = 0; k < 3 && expected == 0; k++) if (Math.Abs(a[k] - b[k]) > new[] { 0.5, 0.1, 0 }[k]) expected = Math.Sign(a[k] - b[k]);
            Assert.Equal(expected, pab);
        }
        Assert.Throws<ArgumentException>(() => new HierarchicalComparator([0.1, -1]));
        Assert.Throws<ArgumentException>(() => c.Compare([1, 2], [1, 2, 3]));
    }

    [Fact]
    public void Bradley_Terry_loss_matches_its_transcription()
    {
        var r = new Random(72);
        double[] ra = Dense.Uniform(r, 7, -3, 3), rb = Dense.Uniform(r, 7, -3, 3), y = [1, 0, 0.5, 1, 1, 0, 0];
        double expected = -Enumerable.Range(0, 7).Average(i => y[i] * Math.Log(1 / (1 + Math.Exp(rb[i] - ra[i]))) + (1 - y[i]) * Math.Log(1 / (1 + Math.Exp(ra[i] - rb[i]))));
        Assert.Equal(expected, BradleyTerry.Loss(Tensor.FromArray(ra), Tensor.FromArray(rb), Tensor.FromArray(y)).Item(), 1e-12);
        var g = GradCheck.Run(xs => BradleyTerry.Loss(xs[0], xs[1], Tensor.FromArray(y)), [Tensor.FromArray(ra), Tensor.FromArray(rb)]);
        Assert.True(g.Passed, $"bradley-terry gradient: {g}");
        Assert.Throws<ShapeMismatchException>(() => BradleyTerry.Loss(Tensor.FromArray(ra), Tensor.FromArray(rb[..3]), Tensor.FromArray(y)));
    }

    [Fact]
    public void Bradley_Terry_reward_fit_on_hierarchical_labels_recovers_the_induced_order()
    {
        const int pairs = 400, steps = 10, factors = 3;
        var r = new Random(73);
        var comparator = new HierarchicalComparator([0.5, 0.5, 0.5]);
        (Tensor A, Tensor B, double[] Labels) Pairs(int n)
        {
            var a = Dense.Uniform(r, n * steps * factors, 0, 1);
            var b = Dense.Uniform(r, n * steps * factors, 0, 1);
            var labels = new double[n];
            for (int i = 0; i < n; i++)
            {
                // The trajectory's factors are its summed step features.
                var fa = Enumerable.Range(0, factors).Select(k => Enumerable.Range(0, steps).Sum(t => a[(i * steps + t) * factors + k])).ToArray();
                var fb = Enumerable.Range(0, factors).Select(k => Enumerable.Range(0, steps).Sum(t => b[(i * steps + t) * factors + k])).ToArray();
                labels[i] = (comparator.Compare(fa, fb).Preference + 1) / 2.0;
            }
            return (Tensor.FromArray(a, new Shape(n, steps, factors)), Tensor.FromArray(b, new Shape(n, steps, factors)), labels);
        }
        var (ta, tb, y) = Pairs(pairs);
        var reward = new Linear(factors, 1, bias: false, generator: new Generator(74), dtype: F64);
        var opt = new AdamW(reward.Parameters(), 0.05, weightDecay: 0);
        for (int step = 0; step < 300; step++)
        {
            opt.ZeroGrad();
            BradleyTerry.TrajectoryLoss(reward, ta, tb, Tensor.FromArray(y)).Backward();
            opt.Step();
        }
        var w = reward.Weight.ToArray<double>();
        var (ea, eb, ey) = Pairs(pairs);
        double Agreement(double[] diff) => Enumerable.Range(0, pairs).Where(i => ey[i] != 0.5).Average(i => (diff[i] > 0) == (ey[i] == 1) ? 1.0 : 0.0);
        var learned = (BradleyTerry.Return(reward, ea) - BradleyTerry.Return(reward, eb)).ToArray<double>();
        var flat = (ea.Sum([1, 2]) - eb.Sum([1, 2])).ToArray<double>(); // every factor weighted alike
        output.WriteLine($"HERON BT: weights [{string.Join(", ", w.Select(v => v.ToString("F2")))}], held-out agreement {Agreement(learned):F3} (equal weights {Agreement(flat):F3})");
        Assert.True(w[0] > w[1] && w[1] > w[2] && w[2] > 0, $"the learned weights [{string.Join(", ", w)}] do not follow the hierarchy");
        Assert.True(Agreement(learned) > 0.8, $"held-out agreement {Agreement(learned)}");
        Assert.True(Agreement(learned) > Agreement(flat) + 0.05, $"held-out agreement {Agreement(learned)} is no better than equal weights {Agreement(flat)}");
    }
}
