using Kiln.Methods.Certification;
using Kiln.Methods.Smoothing;
using Kiln.NN;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests.Methods;

/// <summary>
/// The certification family (issue 24): randomized smoothing (Cohen, Lipschitz-variance-margin), l_p projections and
/// attacks, RAMP and the black-box substitute attack, each CHECK against float64 math written here.
/// </summary>
public class CertificationTests
{
    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));
    static Tensor Labels(long[] v) => Tensor.FromArray(v);

    // Linear logits x W + b with W [d, C], in float64.
    static Func<Tensor, Tensor> Linear(double[] w, double[] b, int d, int c) => x => x.MatMul(T(w, d, c)) + T(b, c);

    static double[] Softmax(double[] z)
    {
        double m = z.Max();
        var e = z.Select(v => Math.Exp(v - m)).ToArray();
        double s = e.Sum();
        return e.Select(v => v / s).ToArray();
    }

    // ---------- Randomized smoothing ----------

    [Fact]
    public void Empirical_bernstein_width_is_the_maurer_pontil_formula_and_covers_at_the_nominal_rate()
    {
        Assert.Equal(Math.Sqrt(2 * 0.04 * Math.Log(2 / 0.01) / 100) + 7 * Math.Log(2 / 0.01) / (3.0 * 99), EmpiricalBernstein.Width(0.04, 100, 0.01), 1e-15);
        // X = U^2 in [0, 1] with mean 1/3: the one-sided lower bound at delta fails in at most a delta fraction of seeds.
        var rng = new Random(5);
        const int seeds = 2000, n = 30;
        const double delta = 0.05;
        int missL = 0, missU = 0;
        for (int s = 0; s < seeds; s++)
        {
            var v = Enumerable.Range(0, n).Select(_ => Math.Pow(rng.NextDouble(), 2)).ToArray();
            double m = v.Average(), var = v.Sum(x => (x - m) * (x - m)) / (n - 1);
            if (EmpiricalBernstein.Lower(m, var, n, delta) > 1.0 / 3) missL++;
            if (EmpiricalBernstein.Upper(m, var, n, delta) < 1.0 / 3) missU++;
        }
        Assert.InRange(missL / (double)seeds, 0, delta);
        Assert.InRange(missU / (double)seeds, 0, delta);
        Assert.Throws<ArgumentOutOfRangeException>(() => EmpiricalBernstein.Width(0.1, 1, 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => EmpiricalBernstein.Width(-0.1, 10, 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => EmpiricalBernstein.Width(0.1, 10, 1));
    }

    [Fact]
    public void Margin_radius_golden_values_and_reduction_to_cohen()
    {
        // Phi^-1(0.9) = 1.2815515655446004, Phi^-1(0.975) = 1.959963984540054.
        Assert.Equal(0.5 * 1.2815515655446004, RandomizedSmoothing.MarginRadius(0.9, 0.1, 0.5), 1e-12);
        Assert.Equal(0.25 / 2 * (1.959963984540054 - (-1.2815515655446004)), RandomizedSmoothing.MarginRadius(0.975, 0.1, 0.25), 1e-12);
        Assert.Equal(0, RandomizedSmoothing.MarginRadius(0.4, 0.4, 1), 1e-15);
        var rng = new Random(2);
        for (int i = 0; i < 50; i++)
        {
            double p = 0.5 + 0.5 * rng.NextDouble(), sigma = 0.1 + rng.NextDouble();
            Assert.Equal(Noise.Gaussian(sigma).Radius(p), RandomizedSmoothing.MarginRadius(p, 1 - p, sigma), 1e-10);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => RandomizedSmoothing.MarginRadius(1.2, 0.1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => RandomizedSmoothing.MarginRadius(0.9, 0.1, 0));
    }

    [Fact]
    public void Smoothed_linear_classifier_has_the_closed_form_and_its_radius_is_the_distance_to_the_hyperplane()
    {
        var rng = new Random(3);
        for (int trial = 0; trial < 5; trial++)
        {
            int d = 1 + rng.Next(5);
            var w = Dense.Uniform(rng, d); double b = rng.NextDouble() - 0.5, sigma = 0.2 + rng.NextDouble();
            var x = Dense.Uniform(rng, 3 * d);
            var p = RandomizedSmoothing.LinearProbability(T(w, d), b, T(x, 3, d), sigma).ToArray<double>();
            double norm = Math.Sqrt(w.Sum(v => v * v));
            for (int i = 0; i < 3; i++)
            {
                double margin = Enumerable.Range(0, d).Sum(j => w[j] * x[i * d + j]) + b;
                // sigma Phi^-1(max(p, 1 - p)) = |w.x + b| / ||w||.
                Assert.Equal(Math.Abs(margin) / norm, Noise.Gaussian(sigma).Radius(Math.Max(p[i], 1 - p[i])), 1e-8);
                // Monte Carlo votes of the base classifier (logits [0, w.x + b]) match the closed form within 5 standard errors.
                const int n = 4000;
                var votes = RandomizedSmoothing.Sample(z => Tensor.Concat([Tensor.Zeros(new Shape(z.Shape[0], 1), DType.Float64), z.MatMul(T(w, d, 1)) + b], 1),
                    T(x.AsSpan(i * d, d).ToArray(), d), Noise.Gaussian(sigma), n, new Generator((ulong)(10 * trial + i))).Votes;
                Assert.InRange(votes[1] / (double)n - p[i], -5 * Math.Sqrt(p[i] * (1 - p[i]) / n) - 1e-9, 5 * Math.Sqrt(p[i] * (1 - p[i]) / n) + 1e-9);
            }
        }
        Assert.Throws<ArgumentException>(() => RandomizedSmoothing.LinearProbability(T([0.0, 0], 2), 0, T([1.0, 2], 1, 2), 1));
        Assert.Throws<ArgumentException>(() => RandomizedSmoothing.LinearProbability(T([1.0], 1), 0, T([1.0, 2], 1, 2), 1));
    }

    [Fact]
    public void Cohen_certificates_of_a_linear_classifier_never_exceed_the_distance_to_the_boundary()
    {
        double[] w = [1, -1, 2, 0.5, 0, -2]; // [2, 3] logits: class c scores x . W[:, c]
        var f = Linear(w, [0, 0.1, -0.1], 2, 3);
        var x = T([0.5, -0.3, 2, 1, -1, -0.5, 0.1, 0.1], 4, 2);
        var certs = RandomizedSmoothing.Cohen(f, x, Noise.Gaussian(0.5), 50, 2000, 0.001, new Generator(1));
        var xs = x.ToArray<double>();
        for (int i = 0; i < 4; i++)
        {
            if (certs[i].Class < 0) continue;
            // The exact l2 distance to the decision region's boundary of the argmax class.
            var z = Enumerable.Range(0, 3).Select(c => xs[2 * i] * w[c] + xs[2 * i + 1] * w[3 + c] + new[] { 0, 0.1, -0.1 }[c]).ToArray();
            int a = certs[i].Class;
            double dist = Enumerable.Range(0, 3).Where(c => c != a).Min(c => (z[a] - z[c]) / Math.Sqrt(Math.Pow(w[a] - w[c], 2) + Math.Pow(w[3 + a] - w[3 + c], 2)));
            Assert.True(dist > 0, $"row {i}: the smoothed class {a} is not the base classifier's");
            Assert.InRange(certs[i].Radius, 0, dist);
        }
        Assert.Contains(certs, c => c.Class >= 0);
        Assert.Throws<ArgumentOutOfRangeException>(() => RandomizedSmoothing.Cohen(f, x, Noise.Gaussian(1), 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => RandomizedSmoothing.Cohen(f, x, Noise.Gaussian(1), alpha: 1));
    }

    [Fact]
    public void Lipschitz_variance_margin_certificate_of_a_constant_classifier_is_the_bernstein_margin_formula()
    {
        // Constant logits: every noisy score equals softmax(z / T), so the sample variance is 0 and the bounds are exact.
        double[] z = [2, 0.5, -1];
        foreach (double temperature in new[] { 0.5, 1.0, 4.0 })
        {
            Func<Tensor, Tensor> f = x => T(z, 1, 3).Expand(x.Shape[0], 3) + x.Sum(1, keepDim: true) * 0;
            const int n = 500; const double alpha = 0.01, sigma = 0.3;
            var cert = RandomizedSmoothing.LipschitzVarianceMargin(f, T([0.1, 0.2], 1, 2), Noise.Gaussian(sigma), temperature, 10, n, alpha, generator: new Generator(4))[0];
            var p = Softmax(z.Select(v => v / temperature).ToArray());
            double pA = Math.Max(0, p[0] - 7 * Math.Log(4 / alpha) / (3.0 * (n - 1)));
            double pB = Math.Min(1 - pA, Math.Min(1, p[1] + 7 * Math.Log(4 * 2 / alpha) / (3.0 * (n - 1))));
            Assert.Equal(0, cert.Class);
            Assert.Equal(pA, cert.PA, 1e-12);
            if (pA <= pB) continue;
            Assert.Equal(RandomizedSmoothing.MarginRadius(pA, pB, sigma), cert.Radius, 1e-12);
            var withL = RandomizedSmoothing.LipschitzVarianceMargin(f, T([0.1, 0.2], 1, 2), Noise.Gaussian(sigma), temperature, 10, n, alpha, lipschitz: 0.05, generator: new Generator(4))[0];
            Assert.Equal(Math.Max(RandomizedSmoothing.MarginRadius(pA, pB, sigma), (pA - pB) / (Math.Sqrt(2) * 0.05)), withL.Radius, 1e-12);
        }
        // Two tied classes: the margin is never certified.
        Func<Tensor, Tensor> tie = x => Tensor.Zeros(new Shape(x.Shape[0], 2), DType.Float64);
        Assert.Equal(-1, RandomizedSmoothing.LipschitzVarianceMargin(tie, T([0.0], 1, 1), Noise.Gaussian(1), n0: 5, n: 50)[0].Class);
        Assert.Throws<ArgumentException>(() => RandomizedSmoothing.LipschitzVarianceMargin(tie, T([0.0], 1, 1), Noise.Uniform(1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => RandomizedSmoothing.LipschitzVarianceMargin(tie, T([0.0], 1, 1), Noise.Gaussian(1), lipschitz: 0));
    }

    [Fact]
    public void Sample_statistics_are_the_votes_mean_and_unbiased_variance_of_the_softmax_scores()
    {
        // Re-drawing the same noise from the same seed gives the per-sample scores to compare with.
        const int n = 37, d = 3;
        double[] w = [1, -2, 0.5, 0.3, -1, 2];
        var f = Linear(w, [0.1, 0], d, 2);
        var x = T([0.2, -0.1, 0.4], d);
        var s = RandomizedSmoothing.Sample(f, x, Noise.Gaussian(0.7), n, new Generator(9), temperature: 2, batchSize: 10);
        var noisy = new List<double[]>();
        var g = new Generator(9);
        for (int done = 0; done < n; done += 10)
        {
            int m = Math.Min(10, n - done);
            var e = Noise.Gaussian(0.7).Sample(new Shape(m, d), g).ToArray<double>();
            for (int r = 0; r < m; r++) noisy.Add(Enumerable.Range(0, d).Select(j => e[r * d + j] + new[] { 0.2, -0.1, 0.4 }[j]).ToArray());
        }
        var logits = noisy.Select(v => Enumerable.Range(0, 2).Select(c => Enumerable.Range(0, d).Sum(j => v[j] * w[j * 2 + c]) + new[] { 0.1, 0 }[c]).ToArray()).ToList();
        var scores = logits.Select(z => Softmax(z.Select(v => v / 2).ToArray())).ToList();
        for (int c = 0; c < 2; c++)
        {
            Assert.Equal(logits.Count(z => (z[0] >= z[1] ? 0 : 1) == c), s.Votes[c]);
            double mean = scores.Average(p => p[c]);
            Assert.Equal(mean, s.Mean[c], 1e-12);
            Assert.Equal(scores.Sum(p => (p[c] - mean) * (p[c] - mean)) / (n - 1), s.Variance[c], 1e-10);
        }
        Assert.Throws<ArgumentException>(() => RandomizedSmoothing.Sample(f, T([1.0, 2, 3], 1, 3), Noise.Gaussian(1), 2, new Generator(0)));
        Assert.Throws<ArgumentOutOfRangeException>(() => RandomizedSmoothing.Sample(f, x, Noise.Gaussian(1), 2, new Generator(0), temperature: 0));
    }

    // ---------- Projections and attacks ----------

    // The l1 projection by bisection on theta: sum max(|d| - theta, 0) = eps.
    static double[] ProjectL1(double[] v, double eps)
    {
        if (v.Sum(Math.Abs) <= eps) return v;
        double lo = 0, hi = v.Max(Math.Abs);
        for (int i = 0; i < 200; i++)
        {
            double mid = 0.5 * (lo + hi);
            if (v.Sum(x => Math.Max(Math.Abs(x) - mid, 0)) > eps) lo = mid; else hi = mid;
        }
        double theta = 0.5 * (lo + hi);
        return v.Select(x => Math.Sign(x) * Math.Max(Math.Abs(x) - theta, 0)).ToArray();
    }

    [Fact]
    public void Projections_match_the_float64_ball_projections_row_by_row()
    {
        var rng = new Random(7);
        for (int trial = 0; trial < 30; trial++)
        {
            int n = rng.Next(4), d = 1 + rng.Next(7);
            double eps = rng.NextDouble() * 2;
            var v = Dense.Uniform(rng, n * d, -1.5, 1.5);
            var delta = T(v, n, d);
            var l1 = Adversarial.Project(delta, LpNorm.L1, eps).ToArray<double>();
            var l2 = Adversarial.Project(delta, LpNorm.L2, eps).ToArray<double>();
            var li = Adversarial.Project(delta, LpNorm.LInf, eps).ToArray<double>();
            for (int i = 0; i < n; i++)
            {
                var row = v.AsSpan(i * d, d).ToArray();
                Close.Check(ProjectL1(row, eps), l1.AsSpan(i * d, d), 1e-9, 1e-9, "l1");
                double len = Math.Sqrt(row.Sum(x => x * x));
                Close.Check(row.Select(x => len <= eps ? x : x * eps / len).ToArray(), l2.AsSpan(i * d, d), 1e-12, 1e-14, "l2");
                Close.Check(row.Select(x => Math.Clamp(x, -eps, eps)).ToArray(), li.AsSpan(i * d, d), 0, 0, "linf");
            }
        }
        // Inside the ball every projection is the identity; eps = 0 maps to zero.
        var small = T([0.1, -0.2, 0.05], 1, 3);
        foreach (var p in new[] { LpNorm.L1, LpNorm.L2, LpNorm.LInf })
        {
            Close.Check(small, Adversarial.Project(small, p, 1), 0, 1e-15, p.ToString());
            Assert.All(Adversarial.Project(small, p, 0).ToArray<double>(), x => Assert.Equal(0, x));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => Adversarial.Project(small, LpNorm.L2, -1));
        Assert.Throws<ArgumentException>(() => Adversarial.Project(T([1.0], 1), LpNorm.L2, 1));
    }

    [Fact]
    public void Steepest_ascent_has_unit_norm_and_attains_the_dual_norm()
    {
        var rng = new Random(8);
        for (int trial = 0; trial < 20; trial++)
        {
            int d = 1 + rng.Next(6);
            var g = Dense.Uniform(rng, d);
            foreach (var (norm, dual) in new[] { (LpNorm.LInf, g.Sum(Math.Abs)), (LpNorm.L2, Math.Sqrt(g.Sum(x => x * x))), (LpNorm.L1, g.Max(Math.Abs)) })
            {
                var s = Adversarial.SteepestAscent(T(g, 1, d), norm).ToArray<double>();
                double unit = norm switch { LpNorm.L1 => s.Sum(Math.Abs), LpNorm.L2 => Math.Sqrt(s.Sum(x => x * x)), _ => s.Max(Math.Abs) };
                Assert.Equal(1, unit, 1e-12);
                Assert.Equal(dual, s.Select((x, j) => x * g[j]).Sum(), 1e-12);
            }
        }
    }

    [Fact]
    public void Fgsm_and_pgd_on_a_linear_model_take_the_closed_form_worst_case_step()
    {
        var rng = new Random(11);
        const int n = 5, d = 4, c = 3;
        var w = Dense.Uniform(rng, d * c); var b = Dense.Uniform(rng, c);
        var x = Dense.Uniform(rng, n * d);
        long[] y = [0, 1, 2, 1, 0];
        var f = Linear(w, b, d, c);
        var fgsm = Adversarial.Fgsm(f, T(x, n, d), Labels(y), 0.1).ToArray<double>();
        for (int i = 0; i < n; i++)
        {
            // grad_x CE = W (softmax(z) - e_y).
            var z = Enumerable.Range(0, c).Select(k => Enumerable.Range(0, d).Sum(j => x[i * d + j] * w[j * c + k]) + b[k]).ToArray();
            var p = Softmax(z); p[y[i]] -= 1;
            for (int j = 0; j < d; j++)
                Assert.Equal(x[i * d + j] + 0.1 * Math.Sign(Enumerable.Range(0, c).Sum(k => w[j * c + k] * p[k])), fgsm[i * d + j], 1e-12);
        }
        // Two classes: CE falls with the margin (w_y - w_o).x, so the worst l2 / l_inf perturbations are
        // -eps u / ||u||_2 and -eps sign(u), u = w_y - w_o; one PGD step larger than eps reaches them.
        double[] w2 = [1, -1, 0.5, 2, -0.3, 0.2];
        var f2 = Linear(w2, [0, 0], 3, 2);
        var x2 = T([0.3, -0.2, 0.1], 1, 3);
        var u = new[] { w2[0] - w2[1], w2[2] - w2[3], w2[4] - w2[5] };
        double len = Math.Sqrt(u.Sum(v => v * v));
        Close.Check(u.Select((v, j) => new[] { 0.3, -0.2, 0.1 }[j] - 0.5 * v / len).ToArray(), Adversarial.Pgd(f2, x2, Labels([0]), LpNorm.L2, 0.5, 1, 1).ToArray<double>(), 1e-12, 1e-12, "pgd l2");
        Close.Check(u.Select((v, j) => new[] { 0.3, -0.2, 0.1 }[j] - 0.5 * Math.Sign(v)).ToArray(), Adversarial.Pgd(f2, x2, Labels([0]), LpNorm.LInf, 0.5, 1, 1).ToArray<double>(), 1e-12, 1e-12, "pgd linf");
        // l1: all of eps on the coordinate of largest |u|.
        int top = Enumerable.Range(0, 3).MaxBy(j => Math.Abs(u[j]));
        Close.Check(Enumerable.Range(0, 3).Select(j => new[] { 0.3, -0.2, 0.1 }[j] - (j == top ? 0.5 * Math.Sign(u[j]) : 0)).ToArray(), Adversarial.Pgd(f2, x2, Labels([0]), LpNorm.L1, 0.5, 1, 3).ToArray<double>(), 1e-12, 1e-12, "pgd l1");
        Assert.Throws<ArgumentOutOfRangeException>(() => Adversarial.Pgd(f2, x2, Labels([0]), LpNorm.L1, 0.5, -1, 3));
    }

    [Fact]
    public void Union_accuracy_counts_points_correct_under_every_attack()
    {
        Assert.Equal(0.25, Adversarial.UnionAccuracy([[true, true, false, true], [true, false, false, false], [true, true, true, false]]));
        Assert.Equal(0.5, Adversarial.UnionAccuracy([[true, false]]));
        Assert.Equal(0, Adversarial.UnionAccuracy([Array.Empty<bool>()]));
        Assert.Throws<ArgumentException>(() => Adversarial.UnionAccuracy([]));
        Assert.Throws<ArgumentException>(() => Adversarial.UnionAccuracy([[true], [true, false]]));
        // On synthetic blobs: the union of PGD attacks is the minimum over points of each attack's correctness.
        var (x, y) = Blobs(40, 5, new Random(12));
        var model = new MLP([5, 8, 2], generator: new Generator(1), dtype: DType.Float64);
        var correct = new[] { LpNorm.L1, LpNorm.L2, LpNorm.LInf }.Select(p => Adversarial.Correct(model.Call, Adversarial.Pgd(model.Call, x, y, p, 0.3, 0.1, 3), y)).ToList();
        Assert.Equal(Enumerable.Range(0, 40).Count(i => correct.All(c => c[i])) / 40.0, Adversarial.UnionAccuracy(correct));
        Assert.True(Adversarial.UnionAccuracy(correct) <= correct.Min(c => c.Count(v => v) / 40.0));
    }

    static (Tensor X, Tensor Y) Blobs(int n, int d, Random rng)
    {
        var y = Enumerable.Range(0, n).Select(i => (long)(i % 2)).ToArray();
        var x = Enumerable.Range(0, n * d).Select(k => (y[k / d] == 1 ? 1.0 : -1.0) * (k % d == 0 ? 1.5 : 0.3) + 0.5 * Gaussian(rng)).ToArray();
        return (T(x, n, d), Labels(y));
    }

    static double Gaussian(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    // ---------- RAMP ----------

    [Fact]
    public void Ramp_logit_pairing_is_the_kl_over_the_q_correct_rows_and_has_its_gradient()
    {
        var rng = new Random(13);
        const int n = 6, c = 4;
        var zq = Dense.Uniform(rng, n * c, -2, 2); var zr = Dense.Uniform(rng, n * c, -2, 2);
        var y = Enumerable.Range(0, n).Select(_ => (long)rng.Next(c)).ToArray();
        y[0] = Array.IndexOf(zq, zq.Take(c).Max()); // at least one q-correct row
        double expected = 0;
        for (int i = 0; i < n; i++)
        {
            var rowQ = zq.AsSpan(i * c, c).ToArray();
            if (Array.IndexOf(rowQ, rowQ.Max()) != y[i]) continue;
            var p = Softmax(rowQ); var q = Softmax(zr.AsSpan(i * c, c).ToArray());
            expected += p.Select((v, k) => v * Math.Log(v / q[k])).Sum();
        }
        Assert.Equal(expected / n, Ramp.LogitPairing(T(zq, n, c), T(zr, n, c), Labels(y)).Item(), 1e-12);
        var r = GradCheck.Run(a => Ramp.Loss(a[0], a[1], Labels(y), 0.7), [T(zq, n, c), T(zr, n, c)]);
        Assert.True(r.Passed, r.ToString());
        Assert.Equal(0, Ramp.LogitPairing(Tensor.Zeros(new Shape(0, 3), DType.Float64), Tensor.Zeros(new Shape(0, 3), DType.Float64), Labels([])).Item());
        Assert.Throws<ShapeMismatchException>(() => Ramp.LogitPairing(T(zq, n, c), T(zr, c, n), Labels(y)));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ramp.Loss(T(zq, n, c), T(zr, n, c), Labels(y), -1));
    }

    [Fact]
    public void Ramp_gradient_projection_keeps_the_agreeing_part_of_the_natural_gradient()
    {
        var rng = new Random(14);
        for (int trial = 0; trial < 20; trial++)
        {
            var gn = Dense.Uniform(rng, 7); var ga = Dense.Uniform(rng, 7);
            double beta = rng.NextDouble();
            double dot = gn.Select((v, i) => v * ga[i]).Sum(), sq = ga.Sum(v => v * v);
            var expected = ga.Select(v => (1 - beta) * v + beta * Math.Max(0, dot) / sq * v).ToArray();
            Close.Check(expected, Ramp.ProjectGradient(T(gn, 7), T(ga, 7), beta).ToArray<double>(), 1e-12, 1e-14);
        }
        // beta = 0 is plain adversarial training; opposite gradients contribute nothing.
        Close.Check(T([1.0, 2], 2), Ramp.ProjectGradient(T([5.0, -3], 2), T([1.0, 2], 2), 0), 0, 0);
        Close.Check(T([0.5, 1], 2), Ramp.ProjectGradient(T([-1.0, -2], 2), T([1.0, 2], 2), 0.5), 0, 1e-15);
        Assert.Throws<ArgumentOutOfRangeException>(() => Ramp.ProjectGradient(T([1.0], 1), T([1.0], 1), 1.5));
        Assert.Throws<ShapeMismatchException>(() => Ramp.ProjectGradient(T([1.0], 1), T([1.0, 2], 2), 0.5));
    }

    [Fact]
    public void Ramp_training_lowers_the_adversarial_loss_and_raises_union_accuracy_on_blobs()
    {
        var (x, y) = Blobs(64, 5, new Random(15));
        var model = new MLP([5, 16, 2], generator: new Generator(2), dtype: DType.Float64);
        var ps = model.Parameters().ToList();
        var opt = new AdamW(ps, 0.02, weightDecay: 0);
        var o = new RampOptions { EpsQ = 0.3, EpsR = 1.0, Steps = 3 };
        double Union() => Adversarial.UnionAccuracy(new[] { LpNorm.L1, LpNorm.LInf }.Select(p => Adversarial.Correct(model.Call, Adversarial.Pgd(model.Call, x, y, p, p == LpNorm.L1 ? 1.0 : 0.3, p == LpNorm.L1 ? 0.5 : 0.15, 5), y)).ToList());
        double before = Union();
        var losses = Enumerable.Range(0, 40).Select(_ => Ramp.Step(model.Call, ps, opt, x, y, o)).ToList();
        Assert.True(losses.TakeLast(5).Average() < losses.Take(5).Average(), $"loss {losses[0]} -> {losses[^1]}");
        Assert.True(Union() > before, $"union accuracy {before} -> {Union()}");
    }

    // ---------- Black-box substitute attack ----------

    [Fact]
    public void Jacobian_augmentation_steps_along_the_sign_of_the_oracle_class_probability_gradient()
    {
        var rng = new Random(16);
        const int n = 4, d = 3, c = 3;
        var w = Dense.Uniform(rng, d * c); var b = Dense.Uniform(rng, c); var x = Dense.Uniform(rng, n * d);
        long[] labels = [2, 0, 1, 2];
        var aug = BlackBox.JacobianAugment(Linear(w, b, d, c), T(x, n, d), Labels(labels), 0.1).ToArray<double>();
        for (int i = 0; i < n; i++)
        {
            var p = Softmax(Enumerable.Range(0, c).Select(k => Enumerable.Range(0, d).Sum(j => x[i * d + j] * w[j * c + k]) + b[k]).ToArray());
            long a = labels[i];
            for (int j = 0; j < d; j++)
            {
                // d p_a / d x_j = p_a (W[j, a] - sum_k p_k W[j, k]).
                double grad = p[a] * (w[j * c + a] - Enumerable.Range(0, c).Sum(k => p[k] * w[j * c + k]));
                Assert.Equal(x[i * d + j] + 0.1 * Math.Sign(grad), aug[i * d + j], 1e-12);
            }
        }
        Assert.Throws<ShapeMismatchException>(() => BlackBox.JacobianAugment(Linear(w, b, d, c), T(x, n, d), Labels([1]), 0.1));
    }

    [Fact]
    public void Substitute_trained_by_jacobian_augmentation_transfers_fgsm_to_a_synthetic_oracle()
    {
        // Oracle: a fixed linear rule on 6 features, seen only through its labels.
        double[] u = [1, -0.5, 0.8, 0.2, -1, 0.4];
        Func<Tensor, Tensor> oracle = x => (x.MatMul(T(u, 6)) > 0).To(DType.Int64);
        var rng = new Random(17);
        var initial = T(Dense.Uniform(rng, 10 * 6), 10, 6);
        var substitute = new MLP([6, 16, 2], generator: new Generator(3), dtype: DType.Float64);
        int size = BlackBox.TrainSubstitute(oracle, substitute, initial, new SubstituteOptions { Rounds = 4, Epochs = 40, Lambda = 0.2 });
        Assert.Equal(10 * 8, size);
        var test = T(Dense.Uniform(rng, 200 * 6), 200, 6);
        var truth = oracle(test);
        const double eps = 0.3;
        double transfer = BlackBox.TransferRate(oracle, Adversarial.Fgsm(substitute.Call, test, truth, eps), truth);
        // Random sign perturbations of the same l_inf size flip far fewer labels.
        var random = test + T(Enumerable.Range(0, 200 * 6).Select(_ => rng.Next(2) == 0 ? -eps : eps).ToArray(), 200, 6);
        double baseline = BlackBox.TransferRate(oracle, random, truth);
        Assert.True(transfer > baseline + 0.2, $"transfer {transfer} vs random {baseline}");
        Assert.Equal(0, BlackBox.TransferRate(oracle, test, truth));
        Assert.Throws<ArgumentOutOfRangeException>(() => BlackBox.TrainSubstitute(oracle, substitute, initial, new SubstituteOptions { Rounds = 0 }));
    }
}

/// <summary>`kiln certify` with tiny settings: one JSON object with a row per sigma and certificate.</summary>
[Collection(nameof(SerialCollection))]
public class CertifyVerbTests
{
    [Fact]
    public void Certify_verb_prints_one_json_object_with_cohen_and_lvm_rows()
    {
        var r = CliRun.JsonObject(Kiln.Cli.CertifyVerb.Build(), ["certify", "--sigmas", "0.25", "--epochs", "2", "--hidden", "16", "--test-points", "10", "--n0", "10", "--n", "50", "--radii", "0,0.5", "--json"]);
        Assert.Equal(1347, r.GetProperty("train").GetInt32());
        Assert.Equal(10, r.GetProperty("test").GetInt32());
        var rows = r.GetProperty("rows").EnumerateArray().ToList();
        Assert.Equal(["cohen", "lvm"], rows.Select(x => x.GetProperty("method").GetString()));
        foreach (var x in rows)
        {
            double ca0 = x.GetProperty("ca").GetProperty("0").GetDouble(), ca5 = x.GetProperty("ca").GetProperty("0.5").GetDouble();
            // Certified accuracy falls with the radius and never exceeds the smoothed classifier's accuracy.
            Assert.InRange(ca5, 0, ca0);
            Assert.InRange(ca0, 0, x.GetProperty("natural").GetDouble());
        }
        Assert.Equal(Kiln.Cli.Cli.BadUsage, CliRun.Capture(Kiln.Cli.CertifyVerb.Build(), ["certify", "--sigmas", "-1", "--json"]).Code);
    }
}
