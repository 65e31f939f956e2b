using Kiln.NN;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests.Methods;

/// <summary>
/// The distillation family and its neighbours (issue 22): each paper's CHECK against a float64 transcription of its
/// equations written here, degenerate cases exactly, and GradCheck of every loss.
/// </summary>
public class DistillationTests
{
    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));
    static Tensor Labels(long[] v) => Tensor.FromArray(v);
    static double[] U(Random r, int n, double lo = -3, double hi = 3) => Dense.Uniform(r, n, lo, hi);
    static long[] Ints(Random r, int n, int c) => Enumerable.Range(0, n).Select(_ => (long)r.Next(c)).ToArray();

    static double[] Row(double[] z, int i, int c) => z.AsSpan(i * c, c).ToArray();

    static double[] Softmax(double[] z, double tau)
    {
        double m = z.Max(x => x / tau);
        var e = z.Select(x => Math.Exp(x / tau - m)).ToArray();
        double s = e.Sum();
        return e.Select(x => x / s).ToArray();
    }

    static double LogSumExp(IEnumerable<double> xs)
    {
        var a = xs.ToArray();
        double m = a.Max();
        return m + Math.Log(a.Sum(x => Math.Exp(x - m)));
    }

    // tau^2 KL(softmax(t / tau) || softmax(s / tau)) for one row.
    static double KdRow(double[] s, double[] t, double tau)
    {
        var p = Softmax(t, tau); var q = Softmax(s, tau);
        return tau * tau * p.Select((pi, j) => pi * (Math.Log(pi) - Math.Log(q[j]))).Sum();
    }

    static double[] Standardize(double[] z, double eps)
    {
        double m = z.Average();
        double sd = Math.Sqrt(z.Sum(x => (x - m) * (x - m)) / (z.Length - 1));
        return z.Select(x => (x - m) / (sd + eps)).ToArray();
    }

    static void AssertGrad(Func<Tensor[], Tensor> f, params Tensor[] xs)
    {
        var r = GradCheck.Run(f, xs);
        Assert.True(r.Passed, r.ToString());
    }

    // ---------- Logit standardization ----------

    [Fact]
    public void Logit_standardized_kd_matches_the_papers_formula_per_sample()
    {
        var rng = new Random(1);
        for (int trial = 0; trial < 25; trial++)
        {
            int n = rng.Next(1, 6), c = rng.Next(2, 10);
            double tau = 0.5 + 4 * rng.NextDouble();
            var s = U(rng, n * c); var t = U(rng, n * c);
            var got = Distillation.LogitStandardizedKd(T(s, n, c), T(t, n, c), tau, reduction: Reduction.None).ToArray<double>();
            var kd = Distillation.KdLoss(T(s, n, c), T(t, n, c), tau, Reduction.None).ToArray<double>();
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(KdRow(Standardize(Row(s, i, c), 1e-7), Standardize(Row(t, i, c), 1e-7), tau), got[i], 1e-12);
                Assert.Equal(KdRow(Row(s, i, c), Row(t, i, c), tau), kd[i], 1e-12);
            }
            Assert.Equal(got.Average(), Distillation.LogitStandardizedKd(T(s, n, c), T(t, n, c), tau).Item(), 1e-12);
        }
    }

    [Fact]
    public void Logit_standardized_kd_is_invariant_to_positive_affine_student_logits_only()
    {
        var rng = new Random(2);
        for (int trial = 0; trial < 20; trial++)
        {
            int n = rng.Next(1, 5), c = rng.Next(3, 9);
            var s = U(rng, n * c); var t = U(rng, n * c);
            var a = U(rng, n, 0.2, 5); var b = U(rng, n, -10, 10);
            var moved = s.Select((x, j) => a[j / c] * x + b[j / c]).ToArray();
            var flipped = s.Select((x, j) => -a[j / c] * x + b[j / c]).ToArray();
            double Lskd(double[] z, double eps) => Distillation.LogitStandardizedKd(T(z, n, c), T(t, n, c), 2, eps).Item();
            // Exact without eps; with the paper's eps the change is of the order of eps / std.
            Assert.Equal(Lskd(s, 0), Lskd(moved, 0), 1e-11);
            Assert.True(Math.Abs(Lskd(s, 1e-7) - Lskd(moved, 1e-7)) < 1e-5);
            Assert.True(Math.Abs(Lskd(s, 0) - Lskd(flipped, 0)) > 1e-3, "a < 0 reverses the ranking and must change the loss");
            // Plain KD is not invariant: it sees the scale.
            Assert.NotEqual(Distillation.KdLoss(T(s, n, c), T(t, n, c)).Item(), Distillation.KdLoss(T(moved, n, c), T(t, n, c)).Item(), 6);
            // A student that is a positive affine image of the teacher has nothing left to learn.
            var image = t.Select((x, j) => a[j / c] * x + b[j / c]).ToArray();
            Assert.Equal(0, Lskd(image, 0), 1e-12);
        }
    }

    [Fact]
    public void Kd_losses_pass_gradcheck_and_reject_bad_arguments()
    {
        var rng = new Random(3);
        var s = T(U(rng, 12), 3, 4); var t = T(U(rng, 12), 3, 4);
        AssertGrad(x => Distillation.KdLoss(x[0], x[1], 3, Reduction.None), s, t);
        AssertGrad(x => Distillation.LogitStandardizedKd(x[0], x[1], 2, reduction: Reduction.None), s, t);
        AssertGrad(x => Distillation.StandardizeLogits(x[0]), s);
        Assert.Throws<ArgumentOutOfRangeException>(() => Distillation.KdLoss(s, t, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Distillation.KdLoss(s, t, double.PositiveInfinity));
        Assert.Throws<ShapeMismatchException>(() => Distillation.KdLoss(s, T(U(rng, 12), 4, 3)));
        Assert.Throws<ShapeMismatchException>(() => Distillation.LogitStandardizedKd(T([1, 2], 2, 1), T([1, 2], 2, 1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => Distillation.StandardizeLogits(s, -1));
        // A constant row standardizes to zeros (not NaN) thanks to eps.
        Assert.All(Distillation.StandardizeLogits(T([2, 2, 2], 1, 3)).ToArray<double>(), v => Assert.Equal(0, v));
    }

    // ---------- PLD ----------

    static int[] OptimalPermutation(double[] t, int label) =>
        new[] { label }.Concat(Enumerable.Range(0, t.Length).Where(j => j != label).OrderByDescending(j => t[j])).ToArray();

    static double PldRow(double[] s, double[] t, int label, double tau, int k)
    {
        var pi = OptimalPermutation(t, label);
        var alpha = Softmax(t, tau);
        double sum = 0;
        for (int r = 0; r < k; r++)
            sum += alpha[pi[r]] * (LogSumExp(pi.Skip(r).Select(j => s[j])) - s[pi[r]]);
        return sum;
    }

    [Fact]
    public void Plackett_luce_loss_matches_the_papers_formula()
    {
        var rng = new Random(4);
        for (int trial = 0; trial < 30; trial++)
        {
            int n = rng.Next(1, 5), c = rng.Next(1, 9);
            int k = rng.Next(1, c + 1);
            double tau = 0.5 + 3 * rng.NextDouble();
            var s = U(rng, n * c); var t = U(rng, n * c); var y = Ints(rng, n, c);
            var perm = Distillation.TeacherOptimalPermutation(T(t, n, c), Labels(y)).ToArray<long>();
            var got = Distillation.PlackettLuceLoss(T(s, n, c), T(t, n, c), Labels(y), tau, k, Reduction.None).ToArray<double>();
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(OptimalPermutation(Row(t, i, c), (int)y[i]).Select(v => (long)v), perm.Skip(i * c).Take(c));
                Assert.Equal(PldRow(Row(s, i, c), Row(t, i, c), (int)y[i], tau, k), got[i], 1e-12);
            }
        }
    }

    [Fact]
    public void Plackett_luce_loss_is_translation_invariant_convex_and_truncates_to_weighted_cross_entropy()
    {
        var rng = new Random(5);
        for (int trial = 0; trial < 10; trial++)
        {
            int n = rng.Next(1, 4), c = rng.Next(2, 8);
            double tau = 0.5 + 3 * rng.NextDouble();
            var s = U(rng, n * c); var t = U(rng, n * c); var y = Ints(rng, n, c);
            var shift = U(rng, n, -20, 20);
            var shifted = s.Select((x, j) => x + shift[j / c]).ToArray();
            Tensor L(double[] z, int? k = null) => Distillation.PlackettLuceLoss(T(z, n, c), T(t, n, c), Labels(y), tau, k, Reduction.None);
            Close.Check(L(s).ToArray<double>(), L(shifted).ToArray<double>(), 1e-12, 1e-12, "L(s + c) = L(s)");

            // K = 1: cross entropy weighted by the teacher's probability of the label.
            var ce = Losses.CrossEntropy(T(s, n, c), Labels(y), reduction: Reduction.None).ToArray<double>();
            var weighted = ce.Select((v, i) => Softmax(Row(t, i, c), tau)[y[i]] * v).ToArray();
            Close.Check(weighted, L(s, 1).ToArray<double>(), 1e-12, 1e-14, "K = 1");

            // The Hessian in the student logits: central differences of the autodiff gradient (Kiln's logcumsumexp
            // has no double backward) against the closed form sum_k alpha_k (diag(p_k) - p_k p_k^T), p_k the softmax
            // over the ranking's suffix from step k; it is symmetric positive semi-definite.
            var t0 = T(Row(t, 0, c), 1, c); var y0 = Labels([y[0]]);
            double[] Grad(double[] z)
            {
                var x = T(z, 1, c).RequiresGrad_();
                return Autograd.Grad([Distillation.PlackettLuceLoss(x, t0, y0, tau)], [x])[0].ToArray<double>();
            }
            var s0 = Row(s, 0, c);
            var h = new double[c * c];
            const double step = 1e-5;
            for (int l = 0; l < c; l++)
            {
                var up = (double[])s0.Clone(); up[l] += step;
                var down = (double[])s0.Clone(); down[l] -= step;
                var gu = Grad(up); var gd = Grad(down);
                for (int j = 0; j < c; j++) h[j * c + l] = (gu[j] - gd[j]) / (2 * step);
            }
            var pi = OptimalPermutation(Row(t, 0, c), (int)y[0]);
            var alpha = Softmax(Row(t, 0, c), tau);
            var closed = new double[c * c];
            for (int k = 0; k < c; k++)
            {
                var suffix = pi.Skip(k).ToArray();
                double lse = LogSumExp(suffix.Select(j => s0[j]));
                foreach (int j in suffix)
                    foreach (int l in suffix)
                        closed[j * c + l] += alpha[pi[k]] * ((j == l ? Math.Exp(s0[j] - lse) : 0) - Math.Exp(s0[j] - lse) * Math.Exp(s0[l] - lse));
            }
            Close.Check(closed, h, 1e-6, 1e-7, "Hessian");
            Assert.All(Dense.Eigh(closed, c).W, ev => Assert.True(ev > -1e-12, $"Hessian eigenvalue {ev}"));
            // The all-ones direction is flat (translation invariance), so the smallest eigenvalue is 0.
            Assert.Equal(0, Dense.Eigh(closed, c).W.Min(), 1e-10);
        }
    }

    [Fact]
    public void Plackett_luce_loss_passes_gradcheck_and_rejects_bad_arguments()
    {
        var rng = new Random(6);
        var s = T(U(rng, 15), 3, 5); var t = T(U(rng, 15), 3, 5); var y = Labels([4, 0, 2]);
        AssertGrad(x => Distillation.PlackettLuceLoss(x[0], t, y, 2, reduction: Reduction.None), s);
        AssertGrad(x => Distillation.PlackettLuceLoss(x[0], t, y, 1, 3), s);
        Assert.Throws<ArgumentOutOfRangeException>(() => Distillation.PlackettLuceLoss(s, t, y, topK: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Distillation.PlackettLuceLoss(s, t, y, topK: 6));
        Assert.Throws<ArgumentOutOfRangeException>(() => Distillation.PlackettLuceLoss(s, t, Labels([5, 0, 0])));
        Assert.Throws<ArgumentException>(() => Distillation.PlackettLuceLoss(s, t, Tensor.Zeros(3)));
        Assert.Throws<ShapeMismatchException>(() => Distillation.PlackettLuceLoss(s, t, Labels([1, 2])));
    }

    // ---------- Dual-head KD ----------

    static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    [Fact]
    public void Binary_kl_terms_match_direct_per_class_formulas_and_gradcheck()
    {
        var rng = new Random(7);
        for (int trial = 0; trial < 20; trial++)
        {
            int n = rng.Next(1, 5), c = rng.Next(1, 8);
            double tau = 0.5 + 3 * rng.NextDouble();
            var s = U(rng, n * c); var t = U(rng, n * c);
            var bkl = Distillation.BinaryKl(T(s, n, c), T(t, n, c), tau, Reduction.None).ToArray<double>();
            var norm = Distillation.BinaryKlNorm(T(s, n, c), T(t, n, c), tau, Reduction.None).ToArray<double>();
            for (int i = 0; i < n; i++)
            {
                double e1 = 0, e2 = 0;
                for (int j = 0; j < c; j++)
                {
                    double p = Sigmoid(t[i * c + j] / tau), q = Sigmoid(s[i * c + j] / tau);
                    e1 += p * Math.Log(p / q) + (1 - p) * Math.Log((1 - p) / (1 - q));
                    double d = Sigmoid((s[i * c + j] - t[i * c + j]) / tau);
                    e2 += 0.5 * Math.Log(0.5 / d) + 0.5 * Math.Log(0.5 / (1 - d));
                }
                Assert.Equal(tau * tau * e1, bkl[i], 1e-11);
                Assert.Equal(tau * tau * e2, norm[i], 1e-11);
            }
        }
        var a = T(U(rng, 8), 2, 4); var b = T(U(rng, 8), 2, 4);
        AssertGrad(x => Distillation.BinaryKl(x[0], x[1], 2, Reduction.None), a, b);
        AssertGrad(x => Distillation.BinaryKlNorm(x[0], x[1], 3, Reduction.None), a, b);
        Assert.Equal(0, Distillation.BinaryKlNorm(a, a).Item(), 1e-14);
        Assert.Equal(0, Distillation.BinaryKl(a, a).Item(), 1e-14);
    }

    [Fact]
    public void Dual_head_gradients_stay_in_their_own_head_and_add_up_in_the_backbone()
    {
        var gen = new Generator(11);
        var backbone = new Sequential(new Linear(5, 6, true, gen, DType.Float64), new Activation(ActivationKind.Tanh));
        var model = new DualHeadClassifier(backbone, 6, 4, gen, DType.Float64);
        var x = Tensor.Rand(new Shape(7, 5), gen, -1, 1, DType.Float64);
        var teacher = Tensor.Rand(new Shape(7, 4), gen, -3, 3, DType.Float64);
        var y = Labels([0, 1, 2, 3, 0, 1, 2]);
        const double tau = 2;

        Dictionary<string, double[]?> Grads(Func<Tensor, Tensor, Tensor> loss)
        {
            model.ZeroGrad();
            var (main, aux) = model.Heads(x);
            loss(main, aux).Backward();
            return model.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter.Grad?.ToArray<double>());
        }
        var mainOnly = Grads((m, _) => Losses.CrossEntropy(m, y) + Distillation.KdLoss(m, teacher, tau));
        var auxOnly = Grads((_, a) => Distillation.BinaryKlNorm(a, teacher, tau));
        var total = Grads((m, a) => Distillation.DualHeadKdLoss(m, a, teacher, y, tau));
        static bool Zero(double[]? g) => g is null || g.All(v => v == 0);
        foreach (var name in total.Keys)
        {
            if (name.StartsWith("main.")) { Assert.True(Zero(auxOnly[name]), name); Assert.Equal(mainOnly[name], total[name]); }
            else if (name.StartsWith("auxiliary.")) { Assert.True(Zero(mainOnly[name]), name); Assert.Equal(auxOnly[name], total[name]); }
            else Close.Check(Dense.Add(mainOnly[name]!, auxOnly[name]!), total[name]!, 1e-12, 1e-14, name);
        }
        // The prediction is the main head's.
        Close.Check(model.Heads(x).Main, model.Call(x), 0, 0, "forward");
        Assert.Throws<ArgumentOutOfRangeException>(() => Distillation.DualHeadKdLoss(teacher, teacher, teacher, y, kdWeight: -1));
    }

    // ---------- AnyLoss ----------

    static double Metric(AnyLossMetric m, double tp, double fn, double fp, double tn, double beta) => m switch
    {
        AnyLossMetric.Accuracy => (tp + tn) / (tp + tn + fp + fn),
        AnyLossMetric.F1 => 2 * tp / (2 * tp + fp + fn),
        AnyLossMetric.FBeta => (1 + beta * beta) * tp / ((1 + beta * beta) * tp + beta * beta * fn + fp),
        AnyLossMetric.GeometricMean => Math.Sqrt(tp / (tp + fn) * tn / (tn + fp)),
        AnyLossMetric.BalancedAccuracy => (tp / (tp + fn) + tn / (tn + fp)) / 2,
        _ => (tp * tn - fp * fn) / Math.Sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)),
    };

    [Fact]
    public void AnyLoss_matches_its_soft_confusion_matrix_formulas()
    {
        var rng = new Random(8);
        foreach (var metric in Enum.GetValues<AnyLossMetric>())
            for (int trial = 0; trial < 5; trial++)
            {
                int n = rng.Next(4, 30);
                double l = 1 + 100 * rng.NextDouble(), beta = 0.25 + 3 * rng.NextDouble();
                var p = U(rng, n, 0, 1);
                var y = Enumerable.Range(0, n).Select(i => (double)(i % 2 == 0 ? 1 : rng.Next(2))).ToArray();
                y[1] = 0;   // both classes present
                double tp = 0, fn = 0, fp = 0, tn = 0;
                for (int i = 0; i < n; i++)
                {
                    double a = Sigmoid(l * (p[i] - 0.5));
                    tp += y[i] * a; fn += y[i] * (1 - a); fp += (1 - y[i]) * a; tn += (1 - y[i]) * (1 - a);
                }
                var cm = AnyLoss.ConfusionMatrix(T(p, n), T(y, n), l);
                Assert.Equal(tp, cm.TruePositives.Item(), 1e-11); Assert.Equal(fn, cm.FalseNegatives.Item(), 1e-11);
                Assert.Equal(fp, cm.FalsePositives.Item(), 1e-11); Assert.Equal(tn, cm.TrueNegatives.Item(), 1e-11);
                Assert.Equal(1 - Metric(metric, tp, fn, fp, tn, beta), AnyLoss.Loss(T(p, n), T(y, n), metric, l, beta).Item(), 1e-11);
            }
    }

    [Fact]
    public void AnyLoss_soft_counts_tend_to_hard_counts_within_the_sigmoid_tail()
    {
        var rng = new Random(9);
        int n = 40;
        const double gap = 0.05;
        // Probabilities at least `gap` away from 1/2.
        var p = Enumerable.Range(0, n).Select(_ => { double v = rng.NextDouble() * (0.5 - gap); return rng.Next(2) == 0 ? v : 1 - v; }).ToArray();
        var y = Enumerable.Range(0, n).Select(_ => (double)rng.Next(2)).ToArray();
        double htp = 0, hfn = 0, hfp = 0, htn = 0;
        for (int i = 0; i < n; i++)
        {
            bool pos = p[i] > 0.5;
            if (y[i] == 1) { if (pos) htp++; else hfn++; } else { if (pos) hfp++; else htn++; }
        }
        double previous = double.PositiveInfinity;
        foreach (double l in new[] { 5.0, 20, 73, 200, 600 })
        {
            var cm = AnyLoss.ConfusionMatrix(T(p, n), T(y, n), l);
            double err = new[] { cm.TruePositives.Item() - htp, cm.FalseNegatives.Item() - hfn, cm.FalsePositives.Item() - hfp, cm.TrueNegatives.Item() - htn }.Max(Math.Abs);
            Assert.True(err <= n * Sigmoid(-l * gap) + 1e-12, $"L = {l}: error {err} above the tail bound");
            Assert.True(err < previous);
            previous = err;
        }
        Assert.True(previous < 1e-9);
    }

    [Fact]
    public void AnyLoss_passes_gradcheck_for_every_metric_and_rejects_bad_arguments()
    {
        var rng = new Random(10);
        var p = T(U(rng, 10, 0.05, 0.95), 10);
        var y = T([1, 0, 1, 1, 0, 0, 1, 0, 1, 0], 10);
        foreach (var metric in Enum.GetValues<AnyLossMetric>())
            AssertGrad(x => AnyLoss.Loss(x[0], y, metric, 5, 2), p);
        Assert.Throws<ArgumentOutOfRangeException>(() => AnyLoss.Loss(p, y, AnyLossMetric.F1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => AnyLoss.Loss(p, y, AnyLossMetric.FBeta, beta: -1));
        Assert.Throws<ShapeMismatchException>(() => AnyLoss.Loss(p, T([1, 0], 2), AnyLossMetric.F1));
    }

    // ---------- L2-SVM ----------

    [Fact]
    public void Squared_hinge_matches_loops_and_gradcheck()
    {
        var rng = new Random(12);
        int n = 6, c = 4;
        var s = U(rng, n * c, -2, 2); var y = Ints(rng, n, c);
        var got = L2Svm.SquaredHinge(T(s, n, c), Labels(y), Reduction.None).ToArray<double>();
        for (int i = 0; i < n; i++)
        {
            double e = 0;
            for (int k = 0; k < c; k++) { double yk = k == y[i] ? 1 : -1; e += Math.Pow(Math.Max(0, 1 - yk * s[i * c + k]), 2); }
            Assert.Equal(e, got[i], 1e-12);
        }
        AssertGrad(x => L2Svm.SquaredHinge(x[0], Labels(y), Reduction.None), T(s, n, c));
        Assert.Throws<ArgumentOutOfRangeException>(() => L2Svm.SquaredHinge(T(s, n, c), Labels([0, 1, 2, 3, 4, 0])));
        Assert.Throws<ArgumentOutOfRangeException>(() => L2Svm.Objective(new Linear(2, 2, dtype: DType.Float64), Tensor.Zeros(new Shape(1, 2), DType.Float64), Labels([0]), 0));
    }

    // Two separable Gaussian-ish clouds in the plane; label 1 above the line x0 + x1 = 0.
    static (double[] X, long[] Y) Separable(int n, int seed)
    {
        var rng = new Random(seed);
        var x = new double[2 * n]; var y = new long[n];
        for (int i = 0; i < n; i++)
        {
            y[i] = i % 2;
            double side = y[i] == 1 ? 1 : -1;
            x[2 * i] = side * (0.4 + rng.NextDouble()) + (rng.NextDouble() - 0.5);
            x[2 * i + 1] = side * (0.4 + rng.NextDouble()) - (rng.NextDouble() - 0.5);
        }
        return (x, y);
    }

    // Binary L2-SVM primal min 1/2 |w|^2 + C sum max(0, 1 - y (w.x + b))^2 by generalized Newton (finite convergence
    // on this piecewise quadratic), in float64: the convex solver the head is compared with.
    static double[] SolveSvm(double[] x, double[] ypm, double c)
    {
        int n = ypm.Length;
        var theta = new double[3];
        for (int it = 0; it < 200; it++)
        {
            var g = new double[] { theta[0], theta[1], 0 };
            var h = new double[] { 1, 0, 0, 0, 1, 0, 0, 0, 1e-12 };
            for (int i = 0; i < n; i++)
            {
                double[] xi = [x[2 * i], x[2 * i + 1], 1];
                double m = 1 - ypm[i] * (theta[0] * xi[0] + theta[1] * xi[1] + theta[2]);
                if (m <= 0) continue;
                for (int a = 0; a < 3; a++)
                {
                    g[a] -= 2 * c * ypm[i] * m * xi[a];
                    for (int b = 0; b < 3; b++) h[a * 3 + b] += 2 * c * xi[a] * xi[b];
                }
            }
            var step = Tensor.FromArray(h, new Shape(3, 3)).Solve(Tensor.FromArray(g, new Shape(3, 1))).ToArray<double>();
            for (int a = 0; a < 3; a++) theta[a] -= step[a];
            if (step.Max(Math.Abs) < 1e-14) break;
        }
        return theta;
    }

    // The hard-margin SVM's margin in 2-D: max over unit directions of (min over positives - max over negatives) / 2.
    static double HardMargin(double[] x, long[] y)
    {
        double Width(double angle)
        {
            double c = Math.Cos(angle), s = Math.Sin(angle), lo = double.PositiveInfinity, hi = double.NegativeInfinity;
            for (int i = 0; i < y.Length; i++)
            {
                double v = c * x[2 * i] + s * x[2 * i + 1];
                if (y[i] == 1) lo = Math.Min(lo, v); else hi = Math.Max(hi, v);
            }
            return (lo - hi) / 2;
        }
        double best = double.NegativeInfinity, at = 0;
        for (int k = 0; k < 20000; k++) { double a = 2 * Math.PI * k / 20000; double w = Width(a); if (w > best) { best = w; at = a; } }
        // Golden-section refinement around the best grid angle (the width is unimodal near its maximum).
        double l = at - 2 * Math.PI / 20000, r = at + 2 * Math.PI / 20000;
        for (int k = 0; k < 100; k++)
        {
            double m1 = r - (r - l) / 1.618033988749895, m2 = l + (r - l) / 1.618033988749895;
            if (Width(m1) < Width(m2)) l = m1; else r = m2;
        }
        return Width((l + r) / 2);
    }

    [Fact]
    public void L2_svm_head_on_frozen_features_reaches_the_convex_solution_and_the_hard_margin_as_C_grows()
    {
        var (x, y) = Separable(24, 13);
        var features = T(x, 24, 2);
        var labels = Labels(y);
        const double c = 0.5;
        var head = new Linear(2, 2, true, new Generator(1), DType.Float64);
        var opt = new SGD(head.Parameters(), 0.02, momentum: 0.9);
        for (int step = 0; step < 1500; step++)
        {
            opt.ZeroGrad();
            L2Svm.Objective(head, features, labels, c).Backward();
            opt.Step();
        }
        // One-vs-rest with two classes: column k is the binary SVM of "label k" against the rest.
        var w = head.Weight.Value.ToArray<double>(); var b = head.Bias!.Value.ToArray<double>();
        for (int k = 0; k < 2; k++)
        {
            var theta = SolveSvm(x, y.Select(v => v == k ? 1.0 : -1.0).ToArray(), c);
            Close.Check(theta, [w[2 * k], w[2 * k + 1], b[k]], 1e-6, 1e-6, $"head column {k}");
        }

        // The geometric margin 1/|w| of the soft solution shrinks towards the hard margin as C grows; the Kiln
        // objective's gradient vanishes at each convex solution.
        double hard = HardMargin(x, y);
        double previous = double.PositiveInfinity;
        foreach (double cc in new[] { 0.01, 0.1, 1, 10, 1e3, 1e5 })
        {
            var theta = SolveSvm(x, y.Select(v => v == 1 ? 1.0 : -1.0).ToArray(), cc);
            var svm = new Linear(2, 2, true, null, DType.Float64);
            using (Autograd.NoGrad())
            {
                svm.Weight.Value.Copy_(T([-theta[0], -theta[1], theta[0], theta[1]], 2, 2));
                svm.Bias!.Value.Copy_(T([-theta[2], theta[2]], 2));
            }
            L2Svm.Objective(svm, features, labels, cc).Backward();
            // Both columns hold the same binary problem (mirrored), so the objective is twice the binary one.
            Assert.True(svm.Weight.Grad!.ToArray<double>().Max(Math.Abs) < 1e-8 * Math.Max(1, cc), $"C = {cc}: stationarity");
            double margin = 1 / Math.Sqrt(theta[0] * theta[0] + theta[1] * theta[1]);
            Assert.True(margin <= previous + 1e-12, $"C = {cc}: margin {margin} grew");
            Assert.True(margin >= hard - 1e-9, $"C = {cc}: margin {margin} below the hard margin {hard}");
            previous = margin;
        }
        Assert.True(previous - hard < 1e-3 * hard, $"C = 1e5: margin {previous} vs hard margin {hard}");
        Assert.True(SolveMargin(x, y, 0.01) > 1.5 * hard, "a small C keeps a much wider (soft) margin");
    }

    static double SolveMargin(double[] x, long[] y, double c)
    {
        var theta = SolveSvm(x, y.Select(v => v == 1 ? 1.0 : -1.0).ToArray(), c);
        return 1 / Math.Sqrt(theta[0] * theta[0] + theta[1] * theta[1]);
    }

    // ---------- Learning to reject ----------

    [Fact]
    public void Rejection_surrogate_bounds_the_rejection_loss_and_matches_its_formula()
    {
        var rng = new Random(14);
        for (int trial = 0; trial < 20; trial++)
        {
            int n = rng.Next(1, 30);
            double c = 0.01 + 0.98 * rng.NextDouble(), alpha = 0.2 + 3 * rng.NextDouble(), beta = 0.2 + 3 * rng.NextDouble();
            var r = U(rng, n, -4, 4); r[0] = 0;
            var wrong = Enumerable.Range(0, n).Select(_ => (double)rng.Next(2)).ToArray();
            var target = Rejection.Loss(T(r, n), T(wrong, n), c, Reduction.None).ToArray<double>();
            var sur = Rejection.SurrogateLoss(T(r, n), T(wrong, n), c, alpha, beta, Reduction.None).ToArray<double>();
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(r[i] > 0 ? wrong[i] : c, target[i]);
                Assert.Equal(wrong[i] * Math.Exp(alpha * r[i]) + c * Math.Exp(-beta * r[i]), sur[i], 1e-12);
                Assert.True(sur[i] >= target[i], $"surrogate {sur[i]} below the loss {target[i]} at r = {r[i]}");
            }
        }
        AssertGrad(x => Rejection.SurrogateLoss(x[0], T([1, 0, 1], 3), 0.2, 1.5, 0.5, Reduction.None), T([0.3, -1, 2], 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => Rejection.Loss(T([1], 1), T([1], 1), 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Rejection.SurrogateLoss(T([1], 1), T([1], 1), 0.1, alpha: 0));
        Assert.Throws<ShapeMismatchException>(() => Rejection.Loss(T([1], 1), T([1, 0], 2), 0.1));
    }

    [Fact]
    public void Learned_rejector_approaches_thresholding_the_probability_of_being_correct_at_one_minus_c()
    {
        // x ~ U[-1, 1]; the fixed predictor is wrong with probability eta(x) = exp(-2x - 2) / 2, so the surrogate's
        // minimiser (alpha = beta = 1) r* = log(c / eta) / 2 is linear in x and a linear rejector can reach it.
        const int n = 4000;
        const double c = 0.1;
        var rng = new Random(15);
        var x = U(rng, n, -1, 1);
        var wrong = x.Select(v => rng.NextDouble() < 0.5 * Math.Exp(-2 * v - 2) ? 1.0 : 0.0).ToArray();
        var feats = T(x.SelectMany(v => new[] { 1.0, v }).ToArray(), n, 2);
        var w = Tensor.Zeros(new Shape(2, 1), DType.Float64).RequiresGrad_();
        var incorrect = T(wrong, n);
        for (int step = 0; step < 300; step++)
        {
            var loss = Rejection.SurrogateLoss(feats.MatMul(w).Reshape(n), incorrect, c);
            var g = Autograd.Grad([loss], [w])[0];
            using (Autograd.NoGrad()) w = (w - g * 2.0).Detach().RequiresGrad_();
        }
        var wv = w.ToArray<double>();
        double learned = -wv[0] / wv[1];
        double exact = (Math.Log(0.5 / c) - 2) / 2;   // where P(correct | x) = 1 - c
        Assert.True(Math.Abs(learned - exact) < 0.1, $"learned threshold {learned}, Bayes threshold {exact}");
        // On a grid the learned rule agrees with accepting where P(correct | x) > 1 - c almost everywhere.
        int agree = 0;
        for (int k = 0; k <= 1000; k++)
        {
            double v = -1 + 2 * k / 1000.0;
            agree += (wv[0] + wv[1] * v > 0) == (1 - 0.5 * Math.Exp(-2 * v - 2) > 1 - c) ? 1 : 0;
        }
        Assert.True(agree >= 950, $"{agree} of 1001 grid points agree");
    }

    // ---------- InfiGFusion graph-on-logits ----------

    static IEnumerable<int[]> Permutations(int n)
    {
        if (n == 0) { yield return []; yield break; }
        foreach (var p in Permutations(n - 1))
            for (int i = 0; i <= p.Length; i++)
                yield return [.. p.Take(i), n - 1, .. p.Skip(i)];
    }

    static double PermutationGw(double[] a, double[] b, int n) =>
        Permutations(n).Min(s =>
        {
            double sum = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) { double d = a[i * n + j] - b[s[i] * n + s[j]]; sum += d * d; }
            return sum / (n * n);
        });

    static double[] RandomGraph(Random rng, int n)
    {
        var z = U(rng, n * 3, -1, 1);
        return Dense.Mul(z, Dense.T(z, n, 3), n, 3, n);   // symmetric co-activation-like weights
    }

    [Fact]
    public void Sorted_degree_distance_is_zero_on_isomorphic_graphs_permutation_invariant_and_below_permutation_gw()
    {
        var rng = new Random(16);
        for (int trial = 0; trial < 30; trial++)
        {
            int n = rng.Next(1, 7);
            var a = RandomGraph(rng, n); var b = RandomGraph(rng, n);
            var perm = Enumerable.Range(0, n).OrderBy(_ => rng.Next()).ToArray();
            var pa = new double[n * n];
            for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) pa[i * n + j] = a[perm[i] * n + perm[j]];
            double D(double[] u, double[] v) => Distillation.SortedDegreeDistance(T(u, n, n), T(v, n, n)).Item();
            Assert.Equal(0, D(a, a));
            Assert.Equal(0, D(a, pa), 1e-14);
            Assert.Equal(D(a, b), D(pa, b), 1e-13);
            double gw = PermutationGw(a, b, n);
            Assert.True(D(a, b) <= gw + 1e-12, $"n = {n}: approximation {D(a, b)} above permutation GW {gw}");
            // Direct transcription of the closed form.
            var da = Enumerable.Range(0, n).Select(i => a.Skip(i * n).Take(n).Average()).Order().ToArray();
            var db = Enumerable.Range(0, n).Select(i => b.Skip(i * n).Take(n).Average()).Order().ToArray();
            Assert.Equal(da.Zip(db, (p, q) => (p - q) * (p - q)).Average(), D(a, b), 1e-13);
        }
    }

    [Fact]
    public void Co_activation_graph_and_graph_on_logits_loss_match_their_definition_and_gradcheck()
    {
        var rng = new Random(17);
        int t = 5, v = 7, k = 3;
        var z = U(rng, t * v);
        var g = Distillation.CoActivationGraph(T(z, t, v), k).ToArray<double>();
        var kept = new double[t * v];
        for (int r = 0; r < t; r++)
            foreach (int j in Enumerable.Range(0, v).OrderByDescending(j => z[r * v + j]).Take(k)) kept[r * v + j] = z[r * v + j];
        Close.Check(Dense.Mul(Dense.T(kept, t, v), kept, v, t, v), g, 1e-12, 1e-13, "Z_k^T Z_k");
        var s = T(U(rng, t * v), t, v);
        Assert.Equal(0, Distillation.GraphOnLogitsLoss(T(z, t, v), T(z, t, v), k).Item());
        Assert.True(Distillation.GraphOnLogitsLoss(s, T(z, t, v), k).Item() > 0);
        AssertGrad(x => Distillation.GraphOnLogitsLoss(x[0], T(z, t, v), k), s);
        Assert.Throws<ArgumentOutOfRangeException>(() => Distillation.CoActivationGraph(s, 0));
        Assert.Throws<ShapeMismatchException>(() => Distillation.SortedDegreeDistance(T(z, t, v), T(z, t, v)));
    }
}

/// <summary>`kiln distill` with tiny settings: one JSON object with a row per requested loss.</summary>
[Collection(nameof(SerialCollection))]
public class DistillVerbTests
{
    [Fact]
    public void Distill_verb_prints_one_json_object_with_a_row_per_loss()
    {
        var r = CliRun.JsonObject(Kiln.Cli.DistillVerb.Build(), ["distill", "--epochs", "3", "--teacher-epochs", "3", "--seeds", "1", "--student-hidden", "4", "--teacher-hidden", "8", "--lr", "0.03", "--losses", "ce,lskd,pld,dhkd", "--json"]);
        Assert.Equal(1347, r.GetProperty("train").GetInt32());
        Assert.Equal(450, r.GetProperty("test").GetInt32());
        Assert.InRange(r.GetProperty("teacher_accuracy").GetDouble(), 0.5, 1);
        var rows = r.GetProperty("rows").EnumerateArray().ToList();
        Assert.Equal(["ce", "lskd", "pld", "dhkd"], rows.Select(x => x.GetProperty("loss").GetString()));
        // Three epochs of a 4-unit student are already above chance (10%) with every loss.
        Assert.All(rows, x => Assert.InRange(x.GetProperty("accuracy").GetDouble(), 0.15, 1));
        Assert.Equal(Kiln.Cli.Cli.BadUsage, CliRun.Capture(Kiln.Cli.DistillVerb.Build(), ["distill", "--losses", "xx", "--json"]).Code);
    }
}
