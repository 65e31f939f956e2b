using Kiln.NN.Optim;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;
using static Kiln.Tests.TestKit.Dense;

namespace Kiln.Tests.NN;

/// <summary>
/// Gradient-regularised approximate Newton ("Gradient-Normalized Smoothness for Optimization with Approximate
/// Hessians"): the Gauss-Newton matrix Jᵀ Λ J by autodiff against a float64 transcription and the finite-difference
/// Hessian, the step's linear system, λ = 0 as Newton, and linear convergence on L2-regularised softmax regression with
/// the exact and with a diagonal Hessian.
/// </summary>
public class RegularizedNewtonTests
{
    // Softmax regression z_i = W x_i with W [k, d] flattened row-major into w.
    static Func<Tensor, Tensor> Logits(Tensor x, int k) => w => x.MatMul(w.Reshape(k, x.Shape[1]).T);

    static Tensor Loss(Tensor x, Tensor y, int k, double mu, Tensor w) =>
        Kiln.NN.Losses.CrossEntropy(Logits(x, k)(w), y) + w.Square().Sum() * (mu / 2);

    static (Tensor X, Tensor Y, double[] Xd, long[] Yd) Data(Random r, int n, int d, int k)
    {
        var xd = Uniform(r, n * d, -2, 2);
        var yd = Enumerable.Range(0, n).Select(_ => (long)r.Next(k)).ToArray();
        return (Tensor.FromArray(xd, new Shape(n, d)), Tensor.FromArray(yd), xd, yd);
    }

    [Fact]
    public void Gauss_newton_of_softmax_regression_matches_its_transcription_and_the_finite_difference_hessian()
    {
        Props.Check(from n in G.Choose(1, 6) from d in G.Choose(1, 4) from k in G.Choose(2, 4) from seed in TensorGen.Seed select (n, d, k, seed), c =>
        {
            var (n, d, k, seed) = c;
            var r = new Random(seed);
            var (x, y, xd, _) = Data(r, n, d, k);
            var wd = Uniform(r, k * d);
            var w = Tensor.FromArray(wd);
            var gn = RegularizedNewton.GaussNewtonSoftmax(Logits(x, k), w).ToDoubleArray();
            // Transcription: H[(a,b),(a',b')] = (1/n) Σ_i x_ib x_ib' (p_ia δ_aa' - p_ia p_ia').
            int p = k * d;
            var expected = new double[p * p];
            for (int i = 0; i < n; i++)
            {
                var z = Enumerable.Range(0, k).Select(a => Enumerable.Range(0, d).Sum(b => wd[a * d + b] * xd[i * d + b])).ToArray();
                double zmax = z.Max();
                var e = z.Select(v => Math.Exp(v - zmax)).ToArray();
                var prob = e.Select(v => v / e.Sum()).ToArray();
                for (int a = 0; a < k; a++)
                    for (int b = 0; b < d; b++)
                        for (int a2 = 0; a2 < k; a2++)
                            for (int b2 = 0; b2 < d; b2++)
                                expected[(a * d + b) * p + a2 * d + b2] += xd[i * d + b] * xd[i * d + b2] * ((a == a2 ? prob[a] : 0) - prob[a] * prob[a2]) / n;
            }
            Assert.True(MaxDiff(gn, expected) <= 1e-12, $"Gauss-Newton vs transcription: {MaxDiff(gn, expected)}");
            // The model is linear in w, so Jᵀ Λ J is the loss's Hessian: central differences of the autodiff gradient.
            const double h = 1e-5;
            double[] Grad(double[] at)
            {
                var wi = Tensor.FromArray(at).RequiresGrad_();
                return Autograd.Grad(Loss(x, y, k, 0, wi), wi).ToDoubleArray();
            }
            for (int j = 0; j < p; j++)
            {
                var plus = (double[])wd.Clone(); plus[j] += h;
                var minus = (double[])wd.Clone(); minus[j] -= h;
                var column = Grad(plus).Zip(Grad(minus), (u, v) => (u - v) / (2 * h)).ToArray();
                for (int i = 0; i < p; i++) Assert.True(Math.Abs(column[i] - gn[i * p + j]) <= 1e-8, $"H[{i},{j}]: finite differences {column[i]}, Gauss-Newton {gn[i * p + j]}");
            }
        });
    }

    [Fact]
    public void Step_solves_the_regularised_system_and_lambda_zero_is_newton()
    {
        Props.Check(from p in G.Choose(1, 6) from seed in TensorGen.Seed select (p, seed), c =>
        {
            var (p, seed) = c;
            var r = new Random(seed);
            var a = Uniform(r, p * p);
            var hd = Add(Mul(a, T(a, p, p), p, p, p), Eye(p), 0.5);   // symmetric positive definite
            var gd = Uniform(r, p);
            var xd = Uniform(r, p);
            var (x, g, hess) = (Tensor.FromArray(xd), Tensor.FromArray(gd), Tensor.FromArray(hd, new Shape(p, p)));
            foreach (double lambda in new[] { 0.0, 0.3, 2.0 })
            {
                var dx = Add(xd, RegularizedNewton.Step(x, g, hess, lambda).ToDoubleArray(), -1);   // x - x+
                var lhs = Add(Mul(hd, dx, p, p, 1), dx, lambda);                                     // (H + λI)(x - x+)
                Assert.True(MaxDiff(lhs, gd) <= 1e-10, $"λ = {lambda}: residual {MaxDiff(lhs, gd)}");
            }
            Assert.Equal(0.0, RegularizedNewton.Lambda(g, 0));
            Assert.Equal(Math.Sqrt(2 * Math.Sqrt(gd.Sum(v => v * v))), RegularizedNewton.Lambda(g, 2), 1e-12);
        });
    }

    [Fact]
    public void Minimize_converges_linearly_on_regularised_softmax_regression_with_exact_and_diagonal_hessians()
    {
        var r = new Random(5);
        const int n = 40, d = 3, k = 3;
        const double mu = 0.1;
        var (x, y, _, _) = Data(r, n, d, k);
        var w0 = Tensor.Zeros(new Shape(k * d), DType.Float64);
        Tensor Exact(Tensor w) => RegularizedNewton.GaussNewtonSoftmax(Logits(x, k), w) + Tensor.Eye(k * d, dtype: DType.Float64) * mu;
        Tensor Diagonal(Tensor w) => Exact(w) * Tensor.Eye(k * d, dtype: DType.Float64);
        Func<Tensor, Tensor> loss = w => Loss(x, y, k, mu, w);

        var (_, exact) = RegularizedNewton.Minimize(loss, Exact, w0, steps: 20, m0: 1);
        var (_, diagonal) = RegularizedNewton.Minimize(loss, Diagonal, w0, steps: 150, m0: 1);
        foreach (var run in new[] { exact, diagonal })
        {
            for (int i = 1; i < run.Count; i++) Assert.True(run[i].Loss <= run[i - 1].Loss, $"loss rose at step {i}: {run[i - 1].Loss} -> {run[i].Loss}");
            Assert.All(run, it => Assert.True(it.Lambda >= 0));
        }
        double g0 = exact[0].GradientNorm;
        // Exact Hessian: the regularised Newton iteration reaches ‖∇f‖ ≤ 1e-10 ‖∇f_0‖ in 20 steps.
        Assert.True(exact[^1].GradientNorm <= 1e-10 * g0, $"exact: ‖∇f‖ {exact[^1].GradientNorm} after 20 steps from {g0}");
        // Diagonal Hessian (an approximation): a linear rate, every 30 steps the gradient norm shrinks at least 4-fold
        // until 1e-8 ‖∇f_0‖, where float64 loss comparisons (resolution ~1e-16 f) stop the backtracking's progress.
        double floor = 1e-8 * g0;
        for (int s = 30; s < diagonal.Count; s += 30)
            Assert.True(diagonal[s].GradientNorm <= diagonal[s - 30].GradientNorm / 4 || diagonal[s - 30].GradientNorm <= floor,
                $"diagonal: ‖∇f‖ {diagonal[s - 30].GradientNorm} at step {s - 30}, {diagonal[s].GradientNorm} at step {s}");
        Assert.True(diagonal[^1].GradientNorm <= floor, $"diagonal: ‖∇f‖ {diagonal[^1].GradientNorm} after 150 steps from {g0}");
    }
}
