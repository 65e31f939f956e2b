using Kiln.NN;
using Kiln.NN.Optim;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests.NN;

/// <summary>
/// Prospect and its spectral risk: the inner maximum against the top-k mean and an optimality certificate over every
/// vertex of the permutahedron, its gradient (Danskin), the optimizer against a float64 transcription of its step, and
/// linear convergence on a strongly convex regression.
/// </summary>
public class ProspectTests
{
    static double[] Losses(Random r, int n) => Dense.Uniform(r, n, -2, 3);

    static IEnumerable<int[]> Permutations(int n)
    {
        if (n == 0) { yield return []; yield break; }
        foreach (var p in Permutations(n - 1))
            for (int pos = 0; pos <= p.Length; pos++)
                yield return [.. p[..pos], n - 1, .. p[pos..]];
    }

    [Fact]
    public void Without_shift_cost_the_top_k_spectrum_gives_the_mean_of_the_k_largest_and_a_shift_cost_less()
    {
        Props.Check(from n in G.Choose(2, 40) from seed in TensorGen.Seed select (n, seed), c =>
        {
            var (n, seed) = c;
            var r = new Random(seed);
            int k = r.Next(1, n);
            var l = Losses(r, n);
            double topK = l.OrderDescending().Take(k).Average();
            Assert.Equal(topK, new SpectralRisk(SpectralRisk.TopK(n, k)).Value(l), 1e-12);
            double nu = 0.01 + r.NextDouble();
            Assert.True(new SpectralRisk(SpectralRisk.TopK(n, k), nu).Value(l) < topK - 1e-12);
        });
    }

    [Fact]
    public void The_weights_attain_the_maximum_over_every_vertex_of_the_permutahedron()
    {
        Props.Check(from n in G.Choose(1, 6) from seed in TensorGen.Seed select (n, seed), c =>
        {
            var (n, seed) = c;
            var r = new Random(seed);
            var sigma = r.Next(3) switch { 0 => SpectralRisk.Extremile(n, 1 + 3 * r.NextDouble()), 1 => SpectralRisk.Superquantile(n, 0.9 * r.NextDouble()), _ => SpectralRisk.TopK(n, r.Next(1, n + 1)) };
            var risk = new SpectralRisk(sigma, r.NextDouble() < 0.2 ? 0 : 0.05 + 2 * r.NextDouble());
            var l = Losses(r, n);
            var q = risk.Weights(l);
            // q ∈ P(σ): sums to 1 and its k largest entries sum to at most σ's k largest (majorization).
            Assert.Equal(1.0, q.Sum(), 1e-12);
            var qs = q.OrderDescending().ToArray(); var ss = sigma.OrderDescending().ToArray();
            for (int k = 1; k <= n; k++) Assert.True(qs.Take(k).Sum() <= ss.Take(k).Sum() + 1e-12);
            var vertices = Permutations(n).Select(p => p.Select(j => sigma[j]).ToArray()).ToList();
            if (risk.ShiftCost == 0)
            {
                Assert.Equal(vertices.Max(v => risk.Objective(v, l)), risk.Value(l), 1e-12);
                return;
            }
            // The objective is concave: q is the maximiser iff the gradient at q is non-positive toward every vertex.
            var grad = l.Select((x, i) => x - risk.ShiftCost * n * (q[i] - 1.0 / n)).ToArray();
            double atQ = grad.Select((g, i) => g * q[i]).Sum();
            foreach (var v in vertices) Assert.True(grad.Select((g, i) => g * v[i]).Sum() <= atQ + 1e-10);
            // And no convex combination of vertices does better.
            for (int t = 0; t < 50; t++)
            {
                var w = Dense.Uniform(r, vertices.Count, 0, 1); double s = w.Sum();
                var mix = new double[n];
                for (int j = 0; j < vertices.Count; j++) for (int i = 0; i < n; i++) mix[i] += w[j] / s * vertices[j][i];
                Assert.True(risk.Objective(mix, l) <= risk.Value(l) + 1e-12);
            }
        });
    }

    [Fact]
    public void The_risk_gradient_in_the_losses_is_the_weights()
    {
        Props.Check(from n in G.Choose(1, 30) from seed in TensorGen.Seed select (n, seed), c =>
        {
            var (n, seed) = c;
            var r = new Random(seed);
            var risk = new SpectralRisk(SpectralRisk.Superquantile(n, 0.8 * r.NextDouble()), 0.1 + r.NextDouble());
            var l = Losses(r, n);
            var q = risk.Weights(l);
            const double h = 1e-6;
            for (int i = 0; i < n; i++)
            {
                var up = (double[])l.Clone(); up[i] += h;
                var down = (double[])l.Clone(); down[i] -= h;
                // Absolute, not rounded to decimal places: two values 5e-10 apart can round to different sixth digits.
                Assert.Equal(q[i], (risk.Value(up) - risk.Value(down)) / (2 * h), 1e-8);
            }
        });
    }

    [Fact]
    public void Spectra_are_distributions_and_the_superquantile_at_one_minus_k_over_n_is_top_k()
    {
        for (int n = 1; n <= 12; n++)
        {
            for (int k = 1; k <= n; k++) Assert.Equal(SpectralRisk.TopK(n, k), SpectralRisk.Superquantile(n, 1 - k / (double)n), new ToleranceComparer(1e-12));
            foreach (var s in new[] { SpectralRisk.Extremile(n, 2.5), SpectralRisk.Superquantile(n, 0.37) })
            {
                Assert.Equal(1.0, s.Sum(), 1e-12);
                for (int i = 1; i < n; i++) Assert.True(s[i] >= s[i - 1] - 1e-15);
            }
        }
        Assert.Equal(Enumerable.Repeat(0.25, 4), SpectralRisk.Extremile(4, 1), new ToleranceComparer(1e-15));
        Assert.Throws<ArgumentException>(() => new SpectralRisk([0.6, 0.4]));
        Assert.Throws<ArgumentException>(() => new SpectralRisk([0.2, 0.2]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SpectralRisk([0.5, 0.5], -1));
        Assert.Throws<ArgumentException>(() => new SpectralRisk([0.5, 0.5]).Weights([1, double.NaN]));
    }

    sealed class ToleranceComparer(double tol) : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) <= tol;
        public int GetHashCode(double x) => 0;
    }

    /// <summary>Least squares ℓ_i(w) = (x_iᵀw − y_i)²/2 on n examples in d dimensions.</summary>
    static (double[] X, double[] Y) Regression(Random r, int n, int d)
    {
        var x = Dense.Uniform(r, n * d); var w = Dense.Uniform(r, d);
        var y = Enumerable.Range(0, n).Select(i => Enumerable.Range(0, d).Sum(j => x[i * d + j] * w[j]) + 0.5 * (r.NextDouble() - 0.5)).ToArray();
        return (x, y);
    }

    static double Loss(double[] x, double[] y, double[] w, int i)
    {
        int d = w.Length; double e = -y[i];
        for (int j = 0; j < d; j++) e += x[i * d + j] * w[j];
        return e * e / 2;
    }

    static double[] Grad(double[] x, double[] y, double[] w, int i)
    {
        int d = w.Length; double e = -y[i];
        for (int j = 0; j < d; j++) e += x[i * d + j] * w[j];
        return Enumerable.Range(0, d).Select(j => e * x[i * d + j]).ToArray();
    }

    static Func<int, double> Closure(Prospect opt, Parameter w, Tensor x, Tensor y) => i =>
    {
        opt.ZeroGrad();
        var e = (x.Narrow(0, i, 1).MatMul(w.Unsqueeze(1)).Reshape(1) - y.Narrow(0, i, 1));
        var loss = (e * e).Sum() * 0.5;
        loss.Backward();
        return loss.Item();
    };

    [Fact]
    public void A_step_matches_a_float64_transcription_of_the_rule()
    {
        Props.Check(from n in G.Choose(1, 12) from d in G.Choose(1, 5) from seed in TensorGen.Seed select (n, d, seed), c =>
        {
            var (n, d, seed) = c;
            var r = new Random(seed);
            var (xs, ys) = Regression(r, n, d);
            var risk = new SpectralRisk(SpectralRisk.Superquantile(n, 0.5 * r.NextDouble()), r.NextDouble() < 0.3 ? 0 : r.NextDouble());
            double lr = 0.05 * r.NextDouble(), mu = r.NextDouble() < 0.3 ? 0 : r.NextDouble();
            var w0 = Dense.Uniform(r, d);
            var w = new Parameter(Tensor.FromArray((double[])w0.Clone()));
            var opt = new Prospect([w], lr, risk, mu, seed);
            var closure = Closure(opt, w, Tensor.FromArray(xs, new Shape(n, d)), Tensor.FromArray(ys));

            // The transcription: tables filled at w0, then per step v = n λ_i g − n ρ_i g_i + ḡ, w = (w − η v)/(1 + η μ).
            var rw = (double[])w0.Clone();
            var table = Enumerable.Range(0, n).Select(i => Grad(xs, ys, rw, i)).ToArray();
            var losses = Enumerable.Range(0, n).Select(i => Loss(xs, ys, rw, i)).ToArray();
            var lambda = risk.Weights(losses); var rho = (double[])lambda.Clone();
            var running = new double[d];
            for (int i = 0; i < n; i++) for (int j = 0; j < d; j++) running[j] += rho[i] * table[i][j];
            var draws = new Random(seed);
            for (int step = 0; step < 3 * n + 2; step++)
            {
                int i = draws.Next(n);
                var g = Grad(xs, ys, rw, i); double li = Loss(xs, ys, rw, i);
                double lam = lambda[i], rh = rho[i];
                for (int j = 0; j < d; j++)
                {
                    double v = n * lam * g[j] - n * rh * table[i][j] + running[j];
                    rw[j] = (rw[j] - lr * v) / (1 + lr * mu);
                    running[j] += lam * g[j] - rh * table[i][j];
                }
                table[i] = g; losses[i] = li; lambda = risk.Weights(losses); rho[i] = lam;

                Assert.Equal(li, opt.Step(closure), 1e-12);
                Assert.True(Dense.MaxDiff(rw, w.Value.ToArray<double>()) <= 1e-11 * (1 + Dense.MaxAbs(rw)), $"step {step}");
            }
            Assert.Equal(losses, opt.Losses.ToArray(), new ToleranceComparer(1e-12));
        });
    }

    /// <summary>F(w) = R(ℓ(w)) + μ/2‖w‖², smooth for ν &gt; 0 with ∇F = Σ q*_i ∇ℓ_i + μ w.</summary>
    static double Objective(SpectralRisk risk, double[] x, double[] y, double[] w, double mu) =>
        risk.Value(Enumerable.Range(0, y.Length).Select(i => Loss(x, y, w, i)).ToArray()) + mu / 2 * w.Sum(v => v * v);

    [Fact]
    public void Prospect_converges_linearly_on_a_strongly_convex_regression()
    {
        const int n = 24, d = 3;
        const double mu = 0.05, nu = 0.5;
        for (int seed = 1; seed <= 3; seed++)
        {
            var r = new Random(seed);
            var (xs, ys) = Regression(r, n, d);
            var risk = new SpectralRisk(SpectralRisk.Superquantile(n, 0.5), nu);
            // F* by full-batch gradient descent on the smooth F (its gradient by Danskin).
            var ws = new double[d];
            for (int t = 0; t < 6000; t++)
            {
                var q = risk.Weights(Enumerable.Range(0, n).Select(i => Loss(xs, ys, ws, i)).ToArray());
                var g = ws.Select(v => mu * v).ToArray();
                for (int i = 0; i < n; i++) { var gi = Grad(xs, ys, ws, i); for (int j = 0; j < d; j++) g[j] += q[i] * gi[j]; }
                for (int j = 0; j < d; j++) ws[j] -= 0.05 * g[j];
            }
            double fStar = Objective(risk, xs, ys, ws, mu);

            var w = new Parameter(Tensor.Zeros(new Shape(d), DType.Float64));
            var opt = new Prospect([w], 0.02, risk, mu, seed);
            var closure = Closure(opt, w, Tensor.FromArray(xs, new Shape(n, d)), Tensor.FromArray(ys));
            var gaps = new List<double>();
            for (int epoch = 1; epoch <= 120; epoch++)
            {
                for (int s = 0; s < n; s++) opt.Step(closure);
                if (epoch % 30 == 0) gaps.Add(Objective(risk, xs, ys, w.Value.ToArray<double>(), mu) - fStar);
            }
            // Every 30 epochs the gap shrinks at least tenfold until it reaches float64 resolution.
            for (int k = 1; k < gaps.Count; k++)
                Assert.True(gaps[k] <= Math.Max(gaps[k - 1] / 10, 1e-12), $"seed {seed}: gaps {string.Join(", ", gaps)}");
            Assert.True(gaps[^1] < 1e-10, $"seed {seed}: final gap {gaps[^1]}");
        }
    }

    [Fact]
    public void Prospect_refuses_the_batch_closure_and_bad_settings()
    {
        var w = new Parameter(Tensor.Zeros(new Shape(2), DType.Float64));
        var risk = new SpectralRisk(SpectralRisk.TopK(3, 1), 1);
        var opt = new Prospect([w], 0.1, risk);
        Assert.Throws<InvalidOperationException>(() => opt.Step(() => 0.0));
        w.Grad = Tensor.Ones(new Shape(2), DType.Float64);
        Assert.Throws<InvalidOperationException>(() => opt.Step());
        Assert.Throws<ArgumentOutOfRangeException>(() => new Prospect([w], -1, risk));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Prospect([w], 0.1, risk, double.NaN));
    }
}
