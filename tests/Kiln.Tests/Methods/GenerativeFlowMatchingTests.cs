using Kiln.Methods.Generative;
using Kiln.NN;
using Xunit;

namespace Kiln.Tests.Methods;

/// <summary>
/// The flow matching entries (C²OT's conditional OT coupling; flow matching with a transformer over observation sets)
/// against brute force, float64 transcriptions and the analytic posterior of a linear-Gaussian inverse problem.
/// </summary>
public class GenerativeFlowMatchingTests
{
    static Tensor F64(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));

    static double[] Uniform(Random rng, int n, double lo = -1, double hi = 1) => [.. Enumerable.Range(0, n).Select(_ => lo + (hi - lo) * rng.NextDouble())];

    // ------------------------------------------------------------------ C²OT: assignment

    // The minimum of Σ C_iσ(i) over every injection of the smaller side into the larger, by enumeration.
    static double BruteForce(double[] c, int n, int m)
    {
        double best = double.PositiveInfinity;
        var used = new bool[Math.Max(n, m)];
        void Go(int k, double acc)
        {
            if (k == Math.Min(n, m)) { best = Math.Min(best, acc); return; }
            for (int j = 0; j < used.Length; j++)
            {
                if (used[j]) continue;
                used[j] = true;
                Go(k + 1, acc + (n <= m ? c[k * m + j] : c[j * m + k]));
                used[j] = false;
            }
        }
        Go(0, 0);
        return best;
    }

    static double Total(double[] c, int m, int[] sigma) => sigma.Select((j, i) => j < 0 ? 0 : c[i * m + j]).Sum();

    [Fact]
    public void Assignment_equals_brute_force_on_tiny_batches()
    {
        var rng = new Random(3);
        for (int trial = 0; trial < 120; trial++)
        {
            int n = rng.Next(0, 8), m = rng.Next(0, 8);
            // Every third matrix has small integer costs, so many assignments tie for the optimum.
            var c = trial % 3 == 0 ? [.. Enumerable.Range(0, n * m).Select(_ => (double)rng.Next(0, 3))] : Uniform(rng, n * m, -2, 5);
            var sigma = ConditionalOptimalTransport.Assignment(F64(c, n, m));
            Assert.Equal(n, sigma.Length);
            Assert.All(sigma, j => Assert.InRange(j, -1, m - 1));
            var matched = sigma.Where(j => j >= 0).ToArray();
            Assert.Equal(Math.Min(n, m), matched.Length);
            Assert.Equal(matched.Length, matched.Distinct().Count());
            Assert.Equal(BruteForce(c, n, m), Total(c, m, sigma), 1e-9);
        }
        // Degenerate shapes: one row picks its cheapest column, one column its cheapest row, empty sides match nothing.
        Assert.Equal([2], ConditionalOptimalTransport.Assignment(F64([3, 1, -4, 0], 1, 4)));
        Assert.Equal([-1, -1, 0], ConditionalOptimalTransport.Assignment(F64([3, 1, -4], 3, 1)));
        Assert.Equal([-1, -1], ConditionalOptimalTransport.Assignment(Tensor.Zeros(new Shape(2, 0), DType.Float64)));
        Assert.Empty(ConditionalOptimalTransport.Assignment(Tensor.Zeros(new Shape(0, 3), DType.Float64)));
    }

    // ------------------------------------------------------------------ C²OT: coupling

    // C_ij = ‖x₀,i − x₁,j‖² + w d(cᵢ, c_j), written out.
    static double[] RefCost(double[] x0, double[] x1, int n, int d, Func<int, int, double> mismatch, double w)
    {
        var c = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int k = 0; k < d; k++) s += (x0[i * d + k] - x1[j * d + k]) * (x0[i * d + k] - x1[j * d + k]);
                c[i * n + j] = s + w * mismatch(i, j);
            }
        return c;
    }

    [Fact]
    public void Cost_matches_its_transcription_for_discrete_and_continuous_conditions()
    {
        var rng = new Random(5);
        for (int trial = 0; trial < 10; trial++)
        {
            int n = rng.Next(1, 9), d = rng.Next(1, 4), q = rng.Next(1, 3);
            double w = 3 * rng.NextDouble();
            var x0 = Uniform(rng, n * d); var x1 = Uniform(rng, n * d);
            var labels = Enumerable.Range(0, n).Select(_ => (long)rng.Next(0, 3)).ToArray();
            var got = ConditionalOptimalTransport.Cost(F64(x0, n, d), F64(x1, n, d), Tensor.FromArray(labels), w).ToArray<double>();
            var want = RefCost(x0, x1, n, d, (i, j) => labels[i] == labels[j] ? 0 : 1, w);
            for (int k = 0; k < got.Length; k++) Assert.Equal(want[k], got[k], 1e-12);

            var cv = Uniform(rng, n * q);
            double Sq(int i, int j) => Enumerable.Range(0, q).Sum(k => (cv[i * q + k] - cv[j * q + k]) * (cv[i * q + k] - cv[j * q + k]));
            double mean = Enumerable.Range(0, n * n).Average(k => Sq(k / n, k % n));
            got = ConditionalOptimalTransport.Cost(F64(x0, n, d), F64(x1, n, d), F64(cv, n, q), w).ToArray<double>();
            want = RefCost(x0, x1, n, d, (i, j) => mean > 0 ? Sq(i, j) / mean : 0, w);
            for (int k = 0; k < got.Length; k++) Assert.Equal(want[k], got[k], 1e-12);
        }
    }

    [Fact]
    public void Weight_zero_is_plain_minibatch_ot_and_large_weights_never_cross_conditions()
    {
        var rng = new Random(9);
        bool plainCrossed = false;
        for (int trial = 0; trial < 12; trial++)
        {
            int n = rng.Next(2, 8), d = rng.Next(1, 4);
            var x0 = Uniform(rng, n * d); var x1 = Uniform(rng, n * d, -2, 2);
            var labels = Enumerable.Range(0, n).Select(_ => (long)rng.Next(0, 3)).ToArray();
            Tensor a = F64(x0, n, d), b = F64(x1, n, d), c = Tensor.FromArray(labels);
            var sq = RefCost(x0, x1, n, d, (_, _) => 0, 0);
            int[] Couple(double w) => ConditionalOptimalTransport.Couple(a, b, c, w);

            // w = 0: the plain squared-distance optimum over all n! permutations.
            var plain = Couple(0);
            Assert.Equal(BruteForce(sq, n, n), Total(sq, n, plain), 1e-9);
            plainCrossed |= plain.Where((j, i) => labels[j] != labels[i]).Any();

            // w large or infinite: every pair keeps its condition, and within conditions the pairing is optimal.
            double perGroup = labels.Distinct().Sum(l =>
            {
                var rows = Enumerable.Range(0, n).Where(i => labels[i] == l).ToArray();
                var sub = rows.SelectMany(i => rows.Select(j => sq[i * n + j])).ToArray();
                return BruteForce(sub, rows.Length, rows.Length);
            });
            foreach (double w in new[] { 1e3, double.PositiveInfinity })
            {
                var sigma = Couple(w);
                Assert.Equal(n, sigma.Distinct().Count());
                Assert.All(Enumerable.Range(0, n), i => Assert.Equal(labels[i], labels[sigma[i]]));
                Assert.Equal(perGroup, Total(sq, n, sigma), 1e-9);
            }
        }
        Assert.True(plainCrossed, "plain OT never crossed conditions, so the test above proves nothing");
    }

    [Fact]
    public void Continuous_condition_mismatch_falls_as_the_weight_grows()
    {
        var rng = new Random(13);
        const int n = 7, d = 2;
        var a = F64(Uniform(rng, n * d), n, d); var b = F64(Uniform(rng, n * d), n, d);
        var cv = Uniform(rng, n);
        var c = F64(cv, n);
        // For exact optima of A(σ) + w B(σ), the mismatch B is non-increasing in w; at w → large it reaches its own minimum.
        var mismatch = new[] { 0, 0.1, 0.5, 2, 10, 1e4 }.Select(w =>
        {
            var sigma = ConditionalOptimalTransport.Couple(a, b, c, w);
            return sigma.Select((j, i) => (cv[i] - cv[j]) * (cv[i] - cv[j])).Sum();
        }).ToArray();
        for (int k = 1; k < mismatch.Length; k++) Assert.True(mismatch[k] <= mismatch[k - 1] + 1e-12, string.Join(", ", mismatch));
        Assert.True(mismatch[0] > 0.05, $"plain OT already matched conditions ({mismatch[0]}), the test proves nothing");
        Assert.Equal(0, mismatch[^1], 1e-12);
    }

    [Fact]
    public void Conditional_ot_rejects_bad_input_by_name()
    {
        var x = Tensor.Zeros(new Shape(3, 2), DType.Float64);
        var labels = Tensor.FromArray(new long[] { 0, 1, 0 });
        Assert.Equal("cost", Assert.Throws<ArgumentException>(() => ConditionalOptimalTransport.Assignment(F64([1, double.NaN], 1, 2))).ParamName);
        Assert.Equal("cost", Assert.Throws<ArgumentException>(() => ConditionalOptimalTransport.Assignment(F64([1, double.PositiveInfinity], 1, 2))).ParamName);
        Assert.Equal("cost", Assert.Throws<ShapeMismatchException>(() => ConditionalOptimalTransport.Assignment(F64([1, 2], 2))).ParamName);
        Assert.Equal("weight", Assert.Throws<ArgumentOutOfRangeException>(() => ConditionalOptimalTransport.Couple(x, x, labels, -1)).ParamName);
        Assert.Equal("weight", Assert.Throws<ArgumentOutOfRangeException>(() => ConditionalOptimalTransport.Couple(x, x, labels, double.NaN)).ParamName);
        Assert.Equal("weight", Assert.Throws<ArgumentOutOfRangeException>(() => ConditionalOptimalTransport.Couple(x, x, F64([0, 1, 2], 3), double.PositiveInfinity)).ParamName);
        Assert.Equal("x1", Assert.Throws<ShapeMismatchException>(() => ConditionalOptimalTransport.Couple(x, Tensor.Zeros(new Shape(2, 2), DType.Float64), labels, 1)).ParamName);
        Assert.Equal("conditions", Assert.Throws<ShapeMismatchException>(() => ConditionalOptimalTransport.Couple(x, x, Tensor.FromArray(new long[] { 0, 1 }), 1)).ParamName);
    }

    // ------------------------------------------------------------------ Flow matching core

    [Fact]
    public void Flow_matching_loss_matches_its_float64_transcription_and_gradients()
    {
        var rng = new Random(21);
        for (int trial = 0; trial < 8; trial++)
        {
            int n = rng.Next(1, 6), d = rng.Next(1, 4);
            var x0 = Uniform(rng, n * d); var x1 = Uniform(rng, n * d, -3, 3); var t = Uniform(rng, n, 0, 1);
            var w = Uniform(rng, d * d); var bias = Uniform(rng, d);
            // v(x, t) = tanh(x W + t b)
            Tensor V(Tensor x, Tensor s) => (x.MatMul(F64(w, d, d)) + s.Reshape(x.Shape[0], 1) * F64(bias, d)).Tanh();
            double want = 0;
            for (int i = 0; i < n; i++)
                for (int k = 0; k < d; k++)
                {
                    double pre = t[i] * bias[k];
                    for (int l = 0; l < d; l++) pre += ((1 - t[i]) * x0[i * d + l] + t[i] * x1[i * d + l]) * w[l * d + k];
                    double r = Math.Tanh(pre) - (x1[i * d + k] - x0[i * d + k]);
                    want += r * r / n;
                }
            Assert.Equal(want, FlowMatching.Loss(V, F64(x0, n, d), F64(x1, n, d), F64(t, n)).Item(), 1e-12);
        }
        var g = new Generator(22);
        Tensor R(params int[] s) => Tensor.Randn(new Shape(s), g, dtype: DType.Float64);
        var tt = Tensor.Rand(new Shape(4), g, dtype: DType.Float64);
        var gc = GradCheck.Run(xs => FlowMatching.Loss((x, s) => (x.MatMul(xs[2]) + s.Reshape(4, 1)).Tanh(), xs[0], xs[1], tt), [R(4, 3), R(4, 3), R(3, 3)]);
        Assert.True(gc.Passed, gc.ToString());
        Assert.Equal("t", Assert.Throws<ShapeMismatchException>(() => FlowMatching.Loss((x, _) => x, R(4, 3), R(4, 3), R(3))).ParamName);
        Assert.Equal("velocity", Assert.Throws<ShapeMismatchException>(() => FlowMatching.Loss((x, _) => x.Sum(1), R(4, 3), R(4, 3), tt)).ParamName);
    }

    [Fact]
    public void Sampler_matches_direct_integration_and_its_order()
    {
        var rng = new Random(31);
        var start = Uniform(rng, 12, -2, 2);
        // A nonlinear, time-dependent field v(x, t) = x cos t − 0.3 x³ + t, integrated per element in float64 by hand.
        static double Field(double x, double t) => x * Math.Cos(t) - 0.3 * x * x * x + t;
        Tensor FieldT(Tensor x, double t) => x * Math.Cos(t) - 0.3 * x.Pow(3) + t;
        foreach (var method in new[] { OdeMethod.Euler, OdeMethod.Heun })
            foreach (int steps in new[] { 1, 7, 40 })
            {
                var got = FlowMatching.Sample(FieldT, F64(start, 4, 3), steps, method).ToArray<double>();
                for (int e = 0; e < start.Length; e++)
                {
                    double x = start[e], h = 1.0 / steps;
                    for (int k = 0; k < steps; k++)
                    {
                        double t = k * h, k1 = Field(x, t);
                        x = method == OdeMethod.Euler ? x + h * k1 : x + h / 2 * (k1 + Field(x + h * k1, t + h));
                    }
                    Assert.Equal(x, got[e], 1e-12);
                }
            }
        // dx/dt = x cos t has x(1) = x(0) e^{sin 1}: halving the step halves Euler's error and quarters Heun's.
        double Error(OdeMethod m, int steps) => FlowMatching.Sample((x, t) => x * Math.Cos(t), F64([1.3], 1), steps, m).Item() - 1.3 * Math.Exp(Math.Sin(1));
        Assert.InRange(Error(OdeMethod.Euler, 100) / Error(OdeMethod.Euler, 200), 1.9, 2.1);
        Assert.InRange(Error(OdeMethod.Heun, 100) / Error(OdeMethod.Heun, 200), 3.8, 4.2);
        Assert.True(Math.Abs(Error(OdeMethod.Heun, 200)) * 100 < Math.Abs(Error(OdeMethod.Euler, 200)));
        Assert.Equal("steps", Assert.Throws<ArgumentOutOfRangeException>(() => FlowMatching.Sample((x, _) => x, F64([1.0], 1), 0)).ParamName);
        Assert.Equal("velocity", Assert.Throws<ShapeMismatchException>(() => FlowMatching.Sample((x, _) => x.Sum(), F64([1.0, 2], 2), 3)).ParamName);
    }

    // ------------------------------------------------------------------ Linear-Gaussian inverse problem

    // x ~ N(m, S), y_k = A x + ε_k, ε_k ~ N(0, σ² I), k = 1..K: p(x | y) = N(μ, P) with
    // P = (S⁻¹ + K Aᵀ A / σ²)⁻¹ and μ = P (S⁻¹ m + Aᵀ Σ_k y_k / σ²).
    sealed record LinearGaussian(Tensor Mean, Tensor Cov, Tensor A, double Sigma)
    {
        public (Tensor Mu, Tensor P) Posterior(Tensor ys)
        {
            var sInv = Cov.Inverse();
            var p = (sInv + ys.Shape[0] * A.T.MatMul(A) / (Sigma * Sigma)).Inverse();
            var mu = p.MatMul(sInv.MatMul(Mean) + A.T.MatMul(ys.Sum(0)) / (Sigma * Sigma));
            return (mu, p);
        }

        public Tensor Observe(Tensor x, int k, Generator g) =>
            x.MatMul(A.T).Unsqueeze(1) + Sigma * Tensor.Randn(new Shape(x.Shape[0], k, A.Shape[0]), g, dtype: x.DType);
    }

    // The exact marginal velocity of the straight path from N(0, I) to N(μ, P): with Σ_t = (1−t)² I + t² P,
    // v(x, t) = E[x₁ − x₀ | x_t = x] = μ + (t P − (1 − t) I) Σ_t⁻¹ (x − t μ).
    static Tensor ExactVelocity(Tensor x, double t, Tensor mu, Tensor p)
    {
        var eye = Tensor.Eye(p.Shape[0], dtype: DType.Float64);
        var sigmaT = (1 - t) * (1 - t) * eye + t * t * p;
        var gain = (t * p - (1 - t) * eye).MatMul(sigmaT.Inverse());
        return mu + (x - t * mu).MatMul(gain.T);
    }

    [Fact]
    public void Exact_gaussian_velocity_samples_the_analytic_posterior()
    {
        var g = new Generator(41);
        var l = Tensor.Randn(new Shape(3, 3), g, dtype: DType.Float64);
        var problem = new LinearGaussian(F64([0.5, -1, 0.2], 3), l.MatMul(l.T) + 0.5 * Tensor.Eye(3, dtype: DType.Float64),
            Tensor.Randn(new Shape(2, 3), g, dtype: DType.Float64), 0.4);
        var truth = F64([2, 1, -1.5], 1, 3);
        var ys = problem.Observe(truth, 5, g).Squeeze(0);
        var (mu, p) = problem.Posterior(ys);
        const int samples = 4000;
        var x1 = FlowMatching.Sample((x, t) => ExactVelocity(x, t, mu.Reshape(1, 3), p), Tensor.Randn(new Shape(samples, 3), g, dtype: DType.Float64), 100);
        var mean = x1.Mean([0]);
        var centered = x1 - mean;
        var cov = centered.T.MatMul(centered) / (samples - 1);
        var muA = mu.ToArray<double>(); var pA = p.ToArray<double>(); var meanA = mean.ToArray<double>(); var covA = cov.ToArray<double>();
        for (int i = 0; i < 3; i++)
        {
            Assert.True(Math.Abs(meanA[i] - muA[i]) < 4 * Math.Sqrt(pA[i * 4] / samples), $"mean[{i}] {meanA[i]} vs {muA[i]}");
            for (int j = 0; j < 3; j++)
            {
                double se = Math.Sqrt((pA[i * 4] * pA[j * 4] + pA[i * 3 + j] * pA[i * 3 + j]) / samples);
                Assert.True(Math.Abs(covA[i * 3 + j] - pA[i * 3 + j]) < 4 * se, $"cov[{i},{j}] {covA[i * 3 + j]} vs {pA[i * 3 + j]}");
            }
        }
        // Not vacuous: the posterior is far from the prior in the units of its own spread.
        var prior = problem.Mean.ToArray<double>();
        double shift = Enumerable.Range(0, 3).Max(i => Math.Abs(muA[i] - prior[i]) / Math.Sqrt(pA[i * 4]));
        Assert.True(shift > 1, $"posterior mean only {shift} standard deviations from the prior's");
    }

    // ------------------------------------------------------------------ Flow matching transformer

    [Fact]
    public void Encoder_is_permutation_invariant_and_ignores_masked_observations()
    {
        var g = new Generator(51);
        var model = new FlowMatchingTransformer(2, 3, width: 8, heads: 2, hidden: 16, generator: g, dtype: DType.Float64);
        var ys = Tensor.Randn(new Shape(2, 5, 3), g, dtype: DType.Float64);
        var mask = Tensor.FromArray(new[] { true, true, true, false, false, true, true, true, true, true }, new Shape(2, 5));
        var padded = model.Encode(ys, mask).ToArray<double>();
        var alone = model.Encode(ys.Narrow(0, 0, 1).Narrow(1, 0, 3)).ToArray<double>();
        var permuted = model.Encode(ys.IndexSelect(1, Tensor.FromArray(new long[] { 4, 2, 0, 3, 1 })).Narrow(0, 1, 1)).ToArray<double>();
        Assert.Equal(model.Width + 1, alone.Length);
        for (int k = 0; k < alone.Length; k++)
        {
            Assert.Equal(alone[k], padded[k], 1e-12);
            Assert.Equal(permuted[k], padded[alone.Length + k], 1e-12);
        }
        Assert.Equal(Math.Log(3), alone[^1], 1e-12);
        // The loss is the core's loss of the model's velocity, differentiable in the noise and the data.
        var t = Tensor.Rand(new Shape(2), g, dtype: DType.Float64);
        var gc = GradCheck.Run(xs => model.Loss(xs[0], xs[1], t, ys, mask), [Tensor.Randn(new Shape(2, 2), g, dtype: DType.Float64), Tensor.Randn(new Shape(2, 2), g, dtype: DType.Float64)]);
        Assert.True(gc.Passed, gc.ToString());
        Assert.Equal("mask", Assert.Throws<ArgumentException>(() => model.Encode(ys, Tensor.Zeros(new Shape(2, 5), DType.Bool))).ParamName);
        Assert.Equal("observations", Assert.Throws<ShapeMismatchException>(() => model.Encode(Tensor.Zeros(new Shape(2, 5, 4), DType.Float64))).ParamName);
        Assert.Equal("heads", Assert.Throws<ArgumentOutOfRangeException>(() => new FlowMatchingTransformer(2, 3, width: 6, heads: 4)).ParamName);
    }

    [Fact]
    public void Short_training_recovers_the_posterior_mean_an_unconditional_model_misses()
    {
        const int steps = 300, batch = 64, maxK = 4, samples = 1000;
        const double tolerance = 0.3, lr = 3e-3;
        var g = new Generator(61);
        var problem = new LinearGaussian(Tensor.Zeros(new Shape(2), DType.Float64), Tensor.Eye(2, dtype: DType.Float64),
            F64([1, 0.5, -0.3, 1], 2, 2), 0.5);
        var model = new FlowMatchingTransformer(2, 2, width: 16, heads: 2, hidden: 64, generator: g);
        var baseline = new MLP([3, 64, 64, 2], ActivationKind.Silu, 0, g);
        var opt = new AdamW(model.Parameters(), lr, weightDecay: 0);
        var optBase = new AdamW(baseline.Parameters(), lr, weightDecay: 0);
        Tensor Unconditional(Tensor x, Tensor t) => baseline.Call(Tensor.Concat([x, t.Reshape(x.Shape[0], 1)], 1));
        var rng = new Random(62);
        for (int step = 0; step < steps; step++)
        {
            var x1 = Tensor.Randn(new Shape(batch, 2), g, dtype: DType.Float64);
            var ys = problem.Observe(x1, maxK, g).To(DType.Float32);
            var mask = Tensor.FromArray(Enumerable.Range(0, batch).SelectMany(_ => { int k = rng.Next(1, maxK + 1); return Enumerable.Range(0, maxK).Select(j => j < k); }).ToArray(), new Shape(batch, maxK));
            var x0 = Tensor.Randn(new Shape(batch, 2), g);
            var t = Tensor.Rand(new Shape(batch), g);
            opt.ZeroGrad();
            model.Loss(x0, x1.To(DType.Float32), t, ys, mask).Backward();
            opt.Step();
            optBase.ZeroGrad();
            FlowMatching.Loss(Unconditional, x0, x1.To(DType.Float32), t).Backward();
            optBase.Step();
        }
        using var _ = Autograd.NoGrad();
        foreach (var (truth, k) in new[] { (new[] { 1.5, -1.0 }, 4), (new[] { -1.2, -0.8 }, 2), (new[] { 0.4, 1.6 }, 3) })
        {
            var ys = problem.Observe(F64(truth, 1, 2), k, g);
            var mu = problem.Posterior(ys.Squeeze(0)).Mu.ToArray<double>();
            var x0 = Tensor.Randn(new Shape(samples, 2), g);
            var conditional = model.Sample(x0, ys.To(DType.Float32), steps: 20).Mean([0]).To(DType.Float64).ToArray<double>();
            var unconditional = FlowMatching.Sample((x, t) => Unconditional(x, Tensor.Full(new Shape(samples), t)), x0, 20).Mean([0]).To(DType.Float64).ToArray<double>();
            double Distance(double[] a) => Math.Sqrt((a[0] - mu[0]) * (a[0] - mu[0]) + (a[1] - mu[1]) * (a[1] - mu[1]));
            Assert.True(Distance(conditional) < tolerance, $"conditional mean [{string.Join(", ", conditional)}] vs posterior [{string.Join(", ", mu)}]");
            Assert.True(Distance(unconditional) > tolerance, $"unconditional mean [{string.Join(", ", unconditional)}] vs posterior [{string.Join(", ", mu)}]");
        }
    }
}
