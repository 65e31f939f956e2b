using FsCheck.Fluent;
using Kiln.Methods.Regularizers;
using Kiln.Tests.TestKit;
using Xunit;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests.Methods;

/// <summary>
/// The Regularizers family: each entry's CHECK against float64 transcriptions of its paper's equations (written out
/// here), degenerate cases as exact tests, gradients (double backprop included) against central differences.
/// </summary>
public class RegularizersTests
{
    const int Cases = 12;

    static Tensor T(double[] data, params int[] shape) => Tensor.FromArray(data, new Shape(shape));
    static double[] U(Random r, int len, double lo = -1, double hi = 1) => TestKit.Dense.Uniform(r, len, lo, hi);
    static FsCheck.Gen<(int A, int B, int C, int Seed)> Sizes(int a0, int a1, int b0, int b1, int c0, int c1) =>
        from a in G.Choose(a0, a1) from b in G.Choose(b0, b1) from c in G.Choose(c0, c1) from s in G.Choose(0, int.MaxValue)
        select (a, b, c, s);

    /// <summary>The gradient of a scalar f (which may itself take gradients inside) against central differences of its value.</summary>
    static void CheckGradient(Func<Tensor[], Tensor> f, Tensor[] inputs, string what, double eps = 1e-6, double atol = 1e-6, double rtol = 1e-5)
    {
        var r = GradCheck.Run(f, inputs, eps, atol, rtol, higherOrder: true);
        Assert.True(r.Passed, $"{what}: {r}");
    }

    // ---------------------------------------------------------------- expected gradients and attribution priors

    // f(z) = Σ_j v_j tanh(Σ_i z_i W_ij): a per-row network with a written-out input gradient.
    static Tensor TanhNet(Tensor z, Tensor w, Tensor v) => z.MatMul(w).Tanh().MatMul(v);

    static double[] TanhNetGrad(double[] z, double[] w, double[] v, int p, int h)
    {
        var g = new double[p];
        for (int j = 0; j < h; j++)
        {
            double s = 0;
            for (int i = 0; i < p; i++) s += z[i] * w[i * h + j];
            double d = v[j] * (1 - Math.Tanh(s) * Math.Tanh(s));
            for (int i = 0; i < p; i++) g[i] += d * w[i * h + j];
        }
        return g;
    }

    [Fact]
    public void Expected_gradients_match_the_path_formula()
    {
        Props.Check(Sizes(1, 4, 1, 5, 1, 6), c =>
        {
            var (n, k, p, seed) = c;
            int h = 3;
            var r = new Random(seed);
            double[] x = U(r, n * p), refs = U(r, n * k * p), al = U(r, n * k, 0, 1), w = U(r, p * h), v = U(r, h);
            var tw = T(w, p, h); var tv = T(v, h);
            var eg = ExpectedGradients.Attribute(z => TanhNet(z, tw, tv), T(x, n, p), T(refs, n, k, p), T(al, n, k)).ToArray<double>();
            var expected = new double[n * p];
            for (int i = 0; i < n; i++)
                for (int s = 0; s < k; s++)
                {
                    var z = new double[p];
                    for (int j = 0; j < p; j++) z[j] = refs[(i * k + s) * p + j] + al[i * k + s] * (x[i * p + j] - refs[(i * k + s) * p + j]);
                    var g = TanhNetGrad(z, w, v, p, h);
                    for (int j = 0; j < p; j++) expected[i * p + j] += (x[i * p + j] - refs[(i * k + s) * p + j]) * g[j] / k;
                }
            TestKit.Close.Check(expected, eg, 1e-12, 1e-13, "expected gradients");
        }, Cases);
    }

    [Fact]
    public void Expected_gradients_of_a_linear_model_are_weights_times_distance_to_the_mean_reference()
    {
        Props.Check(Sizes(1, 4, 1, 6, 1, 7), c =>
        {
            var (n, k, p, seed) = c;
            var r = new Random(seed);
            double[] x = U(r, n * p), refs = U(r, n * k * p), al = U(r, n * k, 0, 1), w = U(r, p);
            var tw = T(w, p);
            var eg = ExpectedGradients.Attribute(z => z.MatMul(tw) + 0.7, T(x, n, p), T(refs, n, k, p), T(al, n, k)).ToArray<double>();
            var expected = new double[n * p];
            for (int i = 0; i < n; i++)
                for (int j = 0; j < p; j++)
                {
                    double mean = 0;
                    for (int s = 0; s < k; s++) mean += refs[(i * k + s) * p + j] / k;
                    expected[i * p + j] = w[j] * (x[i * p + j] - mean);
                }
            TestKit.Close.Check(expected, eg, 1e-12, 1e-14, "linear expected gradients");
        }, Cases);
    }

    [Fact]
    public void Expected_gradients_are_complete_within_monte_carlo_error()
    {
        // Σ_j EG_j(x) = f(x) − E_{x'} f(x'), the expectation over the background rows (exact here: a finite set).
        const int p = 5, h = 4, m = 7, samples = 4000;
        var r = new Random(5);
        var tw = T(U(r, p * h, -1.5, 1.5), p, h); var tv = T(U(r, h), h);
        var x = T(U(r, p), 1, p);
        var background = T(U(r, m * p), m, p);
        Tensor F(Tensor z) => TanhNet(z, tw, tv);
        double target = F(x).Item() - F(background).Mean().Item();
        // One sample per row of a repeated x: the row sums are the i.i.d. terms whose mean is the k-sample estimate.
        var rows = ExpectedGradients.Sample(F, x.Expand(samples, p), background, 1, new Generator(11)).Sum(1).ToArray<double>();
        double mean = rows.Average(), sd = Math.Sqrt(rows.Select(s => (s - mean) * (s - mean)).Sum() / (samples - 1));
        Assert.True(sd > 0);
        Assert.True(Math.Abs(mean - target) <= 4 * sd / Math.Sqrt(samples), $"Σ EG = {mean}, f(x) − E f(x') = {target}, standard error {sd / Math.Sqrt(samples)}");
    }

    [Fact]
    public void Attribution_priors_match_their_formulas()
    {
        Props.Check(Sizes(1, 4, 1, 5, 1, 5), c =>
        {
            var (n, a, b, seed) = c;
            var r = new Random(seed);
            var phi = U(r, n * a * b);
            double tv = 0;
            for (int l = 0; l < n; l++)
                for (int i = 0; i < a; i++)
                    for (int j = 0; j < b; j++)
                    {
                        double here = phi[(l * a + i) * b + j];
                        if (i + 1 < a) tv += Math.Abs(phi[(l * a + i + 1) * b + j] - here);
                        if (j + 1 < b) tv += Math.Abs(phi[(l * a + i) * b + j + 1] - here);
                    }
            Assert.Equal(tv, AttributionPriors.TotalVariation(T(phi, n, a, b)).Item(), 1e-12);

            int q = a * b;
            var mean = new double[q];
            for (int l = 0; l < n; l++) for (int j = 0; j < q; j++) mean[j] += Math.Abs(phi[l * q + j]) / n;
            double pair = 0, wsum = 0;
            var adj = U(r, q * q, 0, 1);
            for (int i = 0; i < q; i++) for (int j = 0; j < i; j++) adj[j * q + i] = adj[i * q + j];
            for (int i = 0; i < q; i++)
                for (int j = 0; j < q; j++) { pair += Math.Abs(mean[i] - mean[j]); wsum += adj[i * q + j] * (mean[i] - mean[j]) * (mean[i] - mean[j]); }
            Assert.Equal(-pair / (2 * q * mean.Sum()), AttributionPriors.GiniSparsity(T(phi, n, q)).Item(), 1e-12);
            Assert.Equal(wsum / 2, AttributionPriors.GraphSmoothness(T(phi, n, q), T(adj, q, q)).Item(), 1e-12);
        }, Cases);
    }

    [Fact]
    public void Attribution_priors_have_their_exact_extremes()
    {
        Assert.Equal(0, AttributionPriors.TotalVariation(Tensor.Full(new Shape(2, 3, 4), 0.3, DType.Float64)).Item());
        Assert.Equal(0, AttributionPriors.GiniSparsity(Tensor.Full(new Shape(3, 5), -2.0, DType.Float64)).Item(), 1e-15);
        // One feature holds all attribution: Gini = (p − 1)/p, the largest value for p features.
        Assert.Equal(-3.0 / 4, AttributionPriors.GiniSparsity(T([0, 0, 2, 0, 0, 0, -4, 0], 2, 4)).Item(), 1e-15);
        Assert.Equal(0, AttributionPriors.GraphSmoothness(Tensor.Full(new Shape(2, 3), 1.0, DType.Float64), Tensor.Ones(new Shape(3, 3), DType.Float64)).Item());
        Assert.Throws<ArgumentException>(() => AttributionPriors.TotalVariation(Tensor.Zeros(new Shape(2, 3), DType.Float64), [0]));
        Assert.Throws<ShapeMismatchException>(() => AttributionPriors.GraphSmoothness(Tensor.Zeros(new Shape(2, 3), DType.Float64), Tensor.Zeros(new Shape(2, 2), DType.Float64)));
    }

    [Fact]
    public void Attribution_priors_pass_gradcheck()
    {
        var r = new Random(3);
        var phi = T(U(r, 3 * 4), 3, 4);
        var adj = T(U(r, 16, 0, 1), 4, 4);
        Assert.True(GradCheck.Run(xs => AttributionPriors.TotalVariation(xs[0]), [phi]).Passed);
        Assert.True(GradCheck.Run(xs => AttributionPriors.GiniSparsity(xs[0]), [phi]).Passed);
        Assert.True(GradCheck.Run(xs => AttributionPriors.GraphSmoothness(xs[0], adj + adj.T), [phi]).Passed);
    }

    [Fact]
    public void Attribution_prior_gradients_in_the_model_weights_match_finite_differences()
    {
        // Double backprop: Ω(EG(θ)) differentiated in θ = (W, v) against differences of Ω's value.
        const int n = 2, k = 3, p = 4, h = 3;
        var r = new Random(8);
        var x = T(U(r, n * p), n, p); var refs = T(U(r, n * k * p), n, k, p); var al = T(U(r, n * k, 0, 1), n, k);
        var adj = T(U(r, p * p, 0, 1), p, p);
        Tensor Eg(Tensor[] t) => ExpectedGradients.Attribute(z => TanhNet(z, t[0], t[1]), x, refs, al, createGraph: true);
        Tensor[] theta = [T(U(r, p * h), p, h), T(U(r, h), h)];
        CheckGradient(t => AttributionPriors.TotalVariation(Eg(t)), theta, "total variation of EG");
        CheckGradient(t => AttributionPriors.GiniSparsity(Eg(t)), theta, "Gini sparsity of EG");
        CheckGradient(t => AttributionPriors.GraphSmoothness(Eg(t), adj + adj.T), theta, "graph prior of EG");
    }

    [Fact]
    public void Expected_gradients_reject_mismatched_arguments()
    {
        var x = Tensor.Zeros(new Shape(2, 3), DType.Float64);
        Tensor F(Tensor z) => z.Sum(1);
        var e1 = Assert.Throws<ShapeMismatchException>(() => ExpectedGradients.Attribute(F, x, Tensor.Zeros(new Shape(2, 4, 2), DType.Float64), Tensor.Zeros(new Shape(2, 4), DType.Float64)));
        Assert.Equal("references", e1.ParamName);
        var e2 = Assert.Throws<ShapeMismatchException>(() => ExpectedGradients.Attribute(F, x, Tensor.Zeros(new Shape(2, 4, 3), DType.Float64), Tensor.Zeros(new Shape(2, 3), DType.Float64)));
        Assert.Equal("alphas", e2.ParamName);
        Assert.Throws<ShapeMismatchException>(() => ExpectedGradients.Attribute(z => z, x, Tensor.Zeros(new Shape(2, 1, 3), DType.Float64), Tensor.Zeros(new Shape(2, 1), DType.Float64)));
        Assert.Throws<ArgumentOutOfRangeException>(() => ExpectedGradients.Sample(F, x, x, 0, new Generator(1)));
    }

    // ---------------------------------------------------------------- invariance penalties

    static Tensor MseRisk(Tensor pred, Tensor y) => (pred - y).Square().Mean();

    // Solves A x = b (A [k, k] row-major) by Gauss-Jordan elimination with partial pivoting.
    static double[] SolveDense(double[] a, double[] b, int k)
    {
        var m = (double[])a.Clone(); var x = (double[])b.Clone();
        for (int c = 0; c < k; c++)
        {
            int piv = Enumerable.Range(c, k - c).MaxBy(i => Math.Abs(m[i * k + c]));
            for (int j = 0; j < k; j++) (m[c * k + j], m[piv * k + j]) = (m[piv * k + j], m[c * k + j]);
            (x[c], x[piv]) = (x[piv], x[c]);
            for (int i = 0; i < k; i++)
            {
                if (i == c) continue;
                double f = m[i * k + c] / m[c * k + c];
                for (int j = 0; j < k; j++) m[i * k + j] -= f * m[c * k + j];
                x[i] -= f * x[c];
            }
        }
        return x.Select((v, i) => v / m[i * k + i]).ToArray();
    }

    [Fact]
    public void Invariance_penalties_match_the_least_squares_closed_forms()
    {
        // Squared loss: ∇_w R = (2/n) Φᵀ(Φw − y); IRMv1 = ‖∇_w R‖², Gramian = ‖G⁻¹∇_w R‖² = 4‖w − w_e‖², w_e = (ΦᵀΦ)⁻¹Φᵀy.
        Props.Check(Sizes(4, 12, 1, 3, 0, 0), c =>
        {
            var (n, k, _, seed) = c;
            var r = new Random(seed);
            double[] phi = U(r, n * k), w = U(r, k), y = U(r, n);
            var res = new double[n];
            for (int i = 0; i < n; i++) { res[i] = -y[i]; for (int j = 0; j < k; j++) res[i] += phi[i * k + j] * w[j]; }
            var g = new double[k]; var gram = new double[k * k]; var phiY = new double[k];
            for (int j = 0; j < k; j++)
                for (int i = 0; i < n; i++)
                {
                    g[j] += 2.0 / n * phi[i * k + j] * res[i];
                    phiY[j] += phi[i * k + j] * y[i];
                    for (int l = 0; l < k; l++) gram[j * k + l] += phi[i * k + j] * phi[i * k + l];
                }
            var we = SolveDense(gram, phiY, k);
            double irm = g.Sum(v => v * v), gramian = 4 * w.Select((v, j) => (v - we[j]) * (v - we[j])).Sum();
            Assert.Equal(irm, InvariancePenalties.Irmv1(T(phi, n, k), T(w, k), T(y, n), MseRisk).Item(), 1e-12);
            double got = InvariancePenalties.Gramian(T(phi, n, k), T(w, k), T(y, n), MseRisk).Item();
            Assert.True(Math.Abs(gramian - got) <= 1e-9 * (1 + gramian), $"Gramian penalty {got}, closed form {gramian}");
        }, Cases);
    }

    // The linear IRM toy: y = x_inv + noise, x_spur = s_e y + noise_e in environment e, noises orthogonal to x_inv in
    // the sample so the invariant predictor β = (1, 0) is exactly risk-stationary in both environments.
    static (Tensor X, Tensor Y)[] IrmToy(int n, int seed)
    {
        var r = new Random(seed);
        double Gauss() => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());
        return new[] { 0.5, 2.0 }.Select(s =>
        {
            var xi = Enumerable.Range(0, n).Select(_ => Gauss()).ToArray();
            double nx = xi.Sum(v => v * v);
            double[] Orth(double[] e) { double c = e.Zip(xi, (a, b) => a * b).Sum() / nx; return e.Select((v, i) => v - c * xi[i]).ToArray(); }
            var ey = Orth(Enumerable.Range(0, n).Select(_ => 0.6 * Gauss()).ToArray());
            var y = xi.Select((v, i) => v + ey[i]).ToArray();
            var es = Enumerable.Range(0, n).Select(_ => 0.3 * Gauss()).ToArray();
            var x = new double[2 * n];
            for (int i = 0; i < n; i++) { x[2 * i] = xi[i]; x[2 * i + 1] = s * y[i] + es[i]; }
            return (T(x, n, 2), T(y, n));
        }).ToArray();
    }

    [Fact]
    public void Gramian_penalty_is_zero_at_the_invariant_predictor_and_not_fooled_by_scaling()
    {
        var envs = IrmToy(200, 1);
        var one = Tensor.Ones(new Shape(1), DType.Float64);
        double Pen(Tensor beta, bool gram) => envs.Sum(e =>
        {
            var phi = e.X.MatMul(beta).Unsqueeze(1);
            return (gram ? InvariancePenalties.Gramian(phi, one, e.Y, MseRisk) : InvariancePenalties.Irmv1(phi, one, e.Y, MseRisk)).Item();
        });
        Assert.True(Pen(T([1, 0], 2), gram: true) < 1e-24);
        Assert.True(Pen(T([1, 0], 2), gram: false) < 1e-24);
        // A spurious predictor shrunk towards 0: IRMv1's penalty vanishes with the scale, the Gramian penalty does not.
        var spur = T([0.2, 0.4], 2);
        double irmBig = Pen(spur, false), irmSmall = Pen(spur * 1e-3, false), gramBig = Pen(spur, true), gramSmall = Pen(spur * 1e-3, true);
        // IRMv1 falls like c² (its gradient is 2c²E[p²] − 2cE[py]); 1e-6 here, times (E[py]/(E[p²] − E[py]))².
        Assert.True(irmSmall < 1e-4 * irmBig, $"IRMv1 {irmBig} → {irmSmall}");
        Assert.True(gramBig > 0.01 && gramSmall > gramBig, $"Gramian {gramBig} → {gramSmall}");
    }

    [Fact]
    public void Gramian_penalized_training_drops_the_spurious_feature()
    {
        var envs = IrmToy(100, 2);
        var one = Tensor.Ones(new Shape(1), DType.Float64);
        Tensor Objective(Tensor beta, double lambda) => envs.Select(e =>
        {
            var pred = e.X.MatMul(beta);
            var risk = MseRisk(pred, e.Y);
            return lambda == 0 ? risk : risk + lambda * InvariancePenalties.Gramian(pred.Unsqueeze(1), one, e.Y, MseRisk);
        }).Aggregate((a, b) => a + b);
        double[] Erm()
        {
            var beta = T([0.5, 0.5], 2).RequiresGrad_();
            for (int s = 0; s < 300; s++) beta = (beta - 0.05 * Autograd.Grad(Objective(beta, 0), beta)).Detach().RequiresGrad_();
            return beta.ToArray<double>();
        }
        // Damped Newton steps (Hessian by differentiating the double-backprop gradient once more) with λ raised
        // 1 → 1000: the penalty is quadratic at (1, 0) while the risk's slope there is not 0, so the optimum sits
        // O(1/λ) away and plain gradient descent at large λ would need thousands of steps.
        double[] Penalized(double[] start)
        {
            var beta = T(start, 2);
            foreach (double lambda in new[] { 1.0, 10, 100, 1000 })
                for (int it = 0; it < 8; it++)
                {
                    var b = beta.Detach().RequiresGrad_();
                    double f0 = Objective(b, lambda).Item();
                    var g = Autograd.Grad([Objective(b, lambda)], [b], createGraph: true)[0];
                    var h0 = Autograd.Grad([g.Narrow(0, 0, 1).Sum()], [b], retainGraph: true)[0].ToArray<double>();
                    var h1 = Autograd.Grad([g.Narrow(0, 1, 1).Sum()], [b])[0].ToArray<double>();
                    var gv = g.ToArray<double>();
                    double det = h0[0] * h1[1] - h0[1] * h1[0];
                    double[] d = h0[0] > 0 && det > 0
                        ? [-(h1[1] * gv[0] - h0[1] * gv[1]) / det, -(h0[0] * gv[1] - h1[0] * gv[0]) / det]
                        : [-gv[0], -gv[1]];
                    double t = 1;
                    Tensor next = beta;
                    for (int k = 0; k < 40; k++, t /= 2)
                    {
                        next = beta + T([t * d[0], t * d[1]], 2);
                        if (Objective(next, lambda).Item() <= f0) break;
                    }
                    beta = next.Detach();
                }
            return beta.ToArray<double>();
        }
        var erm = Erm();
        var irm = Penalized(erm);
        Assert.True(Math.Abs(erm[1]) > 0.2, $"ERM puts {erm[1]} on the spurious feature");
        Assert.True(Math.Abs(irm[1]) < 0.005 && Math.Abs(irm[0] - 1) < 0.01, $"penalized fit ({irm[0]}, {irm[1]}), ERM ({erm[0]}, {erm[1]})");
    }

    [Fact]
    public void Invariance_penalty_gradients_match_finite_differences()
    {
        var r = new Random(4);
        var y = T(U(r, 6), 6);
        static Tensor Logistic(Tensor z, Tensor t) => (z.Exp() + 1).Log().Mean() - (z * t).Mean();
        Tensor[] inputs = [T(U(r, 12), 6, 2), T(U(r, 2), 2)];
        CheckGradient(t => InvariancePenalties.Gramian(t[0], t[1], y, MseRisk, ridge: 0.1), inputs, "Gramian penalty (squared loss)");
        CheckGradient(t => InvariancePenalties.Gramian(t[0], t[1], y, Logistic), inputs, "Gramian penalty (logistic loss)");
        CheckGradient(t => InvariancePenalties.Irmv1(t[0], t[1], y, MseRisk), inputs, "IRMv1 penalty");
    }

    [Fact]
    public void Invariance_penalties_reject_bad_arguments()
    {
        var phi = Tensor.Zeros(new Shape(4, 2), DType.Float64);
        var w = Tensor.Zeros(new Shape(2), DType.Float64);
        var y = Tensor.Zeros(new Shape(4), DType.Float64);
        Assert.Equal("w", Assert.Throws<ShapeMismatchException>(() => InvariancePenalties.Irmv1(phi, Tensor.Zeros(new Shape(3), DType.Float64), y, MseRisk)).ParamName);
        Assert.Equal("y", Assert.Throws<ShapeMismatchException>(() => InvariancePenalties.Irmv1(phi, w, Tensor.Zeros(new Shape(5), DType.Float64), MseRisk)).ParamName);
        Assert.Throws<ShapeMismatchException>(() => InvariancePenalties.Irmv1(phi, w, y, (p, t) => p - t));
        Assert.Throws<ArgumentOutOfRangeException>(() => InvariancePenalties.Gramian(phi, w, y, MseRisk, ridge: -1));
        // A zero representation has a singular Gramian.
        Assert.Throws<ArgumentException>(() => InvariancePenalties.Gramian(phi, w, y, MseRisk));
    }

    // ---------------------------------------------------------------- surrogate gradient norm

    [Fact]
    public void Gradient_norm_matches_the_least_squares_gradient_and_vanishes_at_the_solution()
    {
        Props.Check(Sizes(3, 10, 1, 3, 0, 0), c =>
        {
            var (n, k, _, seed) = c;
            var r = new Random(seed);
            double[] x = U(r, n * k), th = U(r, k), y = U(r, n);
            var g = new double[k];
            for (int i = 0; i < n; i++)
            {
                double res = -y[i];
                for (int j = 0; j < k; j++) res += x[i * k + j] * th[j];
                for (int j = 0; j < k; j++) g[j] += 2.0 / n * x[i * k + j] * res;
            }
            var tx = T(x, n, k); var ty = T(y, n);
            var theta = T(th, k).RequiresGrad_();
            double got = GradientNormPenalty.Compute(MseRisk(tx.MatMul(theta), ty), [theta]).Item();
            Assert.Equal(Math.Sqrt(g.Sum(v => v * v)), got, 1e-12);
            // At the least-squares solution θ* = (XᵀX)⁻¹Xᵀy the gradient, and so the penalty, is 0.
            var gram = new double[k * k]; var xy = new double[k];
            for (int i = 0; i < n; i++)
                for (int j = 0; j < k; j++) { xy[j] += x[i * k + j] * y[i]; for (int l = 0; l < k; l++) gram[j * k + l] += x[i * k + j] * x[i * k + l]; }
            var star = T(SolveDense(gram, xy, k), k).RequiresGrad_();
            Assert.True(GradientNormPenalty.Compute(MseRisk(tx.MatMul(star), ty), [star]).Item() < 1e-11);
        }, Cases);
    }

    [Fact]
    public void Gradient_norm_penalty_gradient_matches_finite_differences()
    {
        var r = new Random(6);
        var x = T(U(r, 5 * 3), 5, 3); var y = T(U(r, 5), 5);
        CheckGradient(t => GradientNormPenalty.Compute(MseRisk(TanhNet(x, t[0], t[1]), y), t), [T(U(r, 6), 3, 2), T(U(r, 2), 2)], "gradient norm");
    }

    [Fact]
    public void Gradient_norm_constraint_takes_projected_dual_steps()
    {
        var c = new GradientNormConstraint(epsilon: 0.5, dualStepSize: 2);
        Assert.Equal(0, c.UpdateMultiplier(0.1));          // below the bound: λ stays at 0
        Assert.Equal(1.0, c.UpdateMultiplier(1.0));        // 0 + 2(1 − 0.5)
        Assert.Equal(0.6, c.UpdateMultiplier(0.3), 1e-15);    // 1 + 2(0.3 − 0.5)
        var theta = T([0.3, -0.2], 2).RequiresGrad_();
        var x = T([1, 2, 3, 4, 5, 6], 3, 2); var y = T([1, 0, -1], 3);
        var loss = MseRisk(x.MatMul(theta), y);
        var (obj, norm) = c.Lagrangian(loss, [theta]);
        Assert.Equal(loss.Item() + 0.6 * (norm - 0.5), obj.Item(), 1e-13);
        Assert.Throws<ArgumentOutOfRangeException>(() => c.UpdateMultiplier(double.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GradientNormConstraint(-1, 1));
        Assert.Throws<ArgumentException>(() => GradientNormPenalty.Compute(x.MatMul(theta), [theta]));
    }

    [Fact]
    public void Gradient_norm_constrained_surrogate_is_flatter_on_held_out_inputs()
    {
        // A small tanh surrogate of a synthetic black box, trained full-batch with and without the constraint; the
        // held-out sharpness is the mean loss increase under random parameter perturbations of norm 0.3.
        const int p = 3, h = 12, n = 40;
        var r = new Random(12);
        double Box(double[] v, int i) => Math.Sin(2 * v[i * p]) + v[i * p + 1] * v[i * p + 2];
        var xTrain = U(r, n * p, -2, 2); var xTest = U(r, n * p, -2, 2);
        var tx = T(xTrain, n, p); var ty = T(Enumerable.Range(0, n).Select(i => Box(xTrain, i)).ToArray(), n);
        var sx = T(xTest, n, p); var sy = T(Enumerable.Range(0, n).Select(i => Box(xTest, i)).ToArray(), n);
        double[] w0 = U(r, p * h), v0 = U(r, h, -0.5, 0.5);
        double Sharpness(bool constrained)
        {
            Tensor w = T(w0, p, h), v = T(v0, h);
            var con = new GradientNormConstraint(epsilon: 0.05, dualStepSize: 0.002, initialMultiplier: 0.1);
            for (int s = 0; s < 300; s++)
            {
                w.RequiresGrad_(); v.RequiresGrad_();
                var loss = MseRisk(TanhNet(tx, w, v), ty);
                var (obj, norm) = constrained ? con.Lagrangian(loss, [w, v]) : (loss, 0);
                var g = Autograd.Grad([obj], [w, v]);
                w = (w - 0.05 * g[0]).Detach(); v = (v - 0.05 * g[1]).Detach();
                if (constrained) con.UpdateMultiplier(norm);
            }
            double baseLoss = MseRisk(TanhNet(sx, w, v), sy).Item(), rise = 0;
            var pr = new Random(99);
            for (int d = 0; d < 30; d++)
            {
                var dw = U(pr, p * h); var dv = U(pr, h);
                double scale = 0.3 / Math.Sqrt(dw.Sum(a => a * a) + dv.Sum(a => a * a));
                rise += MseRisk(TanhNet(sx, w + scale * T(dw, p, h), v + scale * T(dv, h)), sy).Item() - baseLoss;
            }
            return rise / 30;
        }
        double plain = Sharpness(false), flat = Sharpness(true);
        Assert.True(flat < plain, $"held-out sharpness: constrained {flat}, plain {plain}");
    }

    // ---------------------------------------------------------------- condition number (TSCNC)

    [Fact]
    public void Condition_number_is_the_ratio_of_extreme_singular_values()
    {
        Props.Check(Sizes(1, 6, 1, 6, 0, 0), c =>
        {
            var (m, n, _, seed) = c;
            var w = U(new Random(seed), m * n);
            var s = TestKit.Dense.SingularValues(w, m, n);
            double got = ConditionNumber.Of(T(w, m, n)).Item();
            Assert.True(Math.Abs(got - s[0] / s[^1]) <= 1e-9 * (s[0] / s[^1]), $"κ {got}, reference {s[0] / s[^1]}");
        }, Cases);
    }

    [Theory, InlineData(5, 5, 0.3), InlineData(7, 3, 2.5), InlineData(3, 7, 1.7)]
    public void Condition_number_is_one_for_scaled_orthogonal_and_semi_orthogonal_matrices(int m, int n, double scale)
    {
        var r = new Random(m * 10 + n);
        var (q, _) = T(U(r, Math.Max(m, n) * Math.Min(m, n)), Math.Max(m, n), Math.Min(m, n)).Qr();   // orthonormal columns
        var w = (m >= n ? q : q.T) * scale;
        Assert.Equal(1.0, ConditionNumber.Of(w).Item(), 1e-12);
        // The sparse term is not at its minimum there (that is the zero matrix): the two terms pull differently.
        Assert.True(ConditionNumber.TransformedL1(w, 1).Item() > 0);
        Assert.Equal(ConditionNumber.TransformedL1(w, 1).Item() * 0.2 + 3, ConditionNumber.Tscnc(w, 1, 0.2, 3).Item(), 1e-12);
    }

    [Fact]
    public void Condition_number_and_sparse_term_pass_gradcheck()
    {
        var r = new Random(21);
        foreach (var (m, n) in new[] { (4, 4), (5, 3), (2, 6) })
        {
            var w = T(U(r, m * n), m, n);
            var s = TestKit.Dense.SingularValues(w.ToArray<double>(), m, n);
            Assert.True(s[0] - s[1] > 1e-3 && s[^2] - s[^1] > 1e-3, "the extreme singular values must be simple");
            var res = GradCheck.Run(xs => ConditionNumber.Of(xs[0]), [w]);
            Assert.True(res.Passed, $"κ [{m}, {n}]: {res}");
        }
        var v = T(U(r, 12), 3, 4);
        double[] vv = v.ToArray<double>();
        Assert.Equal(vv.Sum(x => 1.5 * Math.Abs(x) / (0.5 + Math.Abs(x))), ConditionNumber.TransformedL1(v, 0.5).Item(), 1e-12);
        Assert.True(GradCheck.Run(xs => ConditionNumber.TransformedL1(xs[0], 0.5), [v]).Passed);
        Assert.Throws<ArgumentException>(() => ConditionNumber.Of(T([1, 2, 2, 4], 2, 2)));
        Assert.Throws<ArgumentOutOfRangeException>(() => ConditionNumber.TransformedL1(v, 0));
    }

    [Fact]
    public void Pruned_and_condition_penalized_weights_are_better_conditioned_than_pruned_only()
    {
        // A linear layer fitted to Y = X W*, half its weights pruned by magnitude, fine-tuned with the mask held.
        const int d = 6, n = 60;
        var r = new Random(31);
        var wStar = U(r, d * d);
        var x = T(U(r, n * d), n, d); var y = x.MatMul(T(wStar, d, d));
        double cut = wStar.Select(Math.Abs).Order().ElementAt(d * d / 2);
        var mask = T(wStar.Select(v => Math.Abs(v) >= cut ? 1.0 : 0).ToArray(), d, d);
        double Kappa(double beta)
        {
            var w = T(wStar, d, d) * mask;
            for (int s = 0; s < 300; s++)
            {
                var leaf = w.Detach().RequiresGrad_();
                var loss = (x.MatMul(leaf * mask) - y).Square().Mean();
                if (beta > 0) loss = loss + beta * ConditionNumber.Of(leaf * mask);
                w = ((leaf - 0.02 * Autograd.Grad(loss, leaf)) * mask).Detach();
            }
            return ConditionNumber.Of(w).Item();
        }
        double prunedOnly = Kappa(0), penalized = Kappa(0.01);
        Assert.True(penalized < 0.8 * prunedOnly, $"κ pruned only {prunedOnly}, pruned + penalized {penalized}");
    }

    // ---------------------------------------------------------------- model immunization

    [Fact]
    public void Autodiff_hessians_of_least_squares_are_the_gram_matrices()
    {
        Props.Check(Sizes(1, 8, 1, 5, 0, 0), c =>
        {
            var (n, k, _, seed) = c;
            var r = new Random(seed);
            double[] x = U(r, n * k), y = U(r, n), w = U(r, k);
            var tx = T(x, n, k); var ty = T(y, n);
            var gram = TestKit.Dense.Mul(TestKit.Dense.T(x, n, k), x, k, n, k);
            var half = new double[k * k]; var mean = new double[k * k];
            for (int j = 0; j < k; j++)
            {
                var e = new double[k]; e[j] = 1;
                var hv = Autograd.Hvp(v => 0.5 * (tx.MatMul(v) - ty).Square().Sum(), T(w, k), T(e, k)).ToArray<double>();
                var mv = Autograd.Hvp(v => (tx.MatMul(v) - ty).Square().Mean(), T(w, k), T(e, k)).ToArray<double>();
                for (int i = 0; i < k; i++) { half[i * k + j] = hv[i]; mean[i * k + j] = mv[i]; }
            }
            TestKit.Close.Check(gram, half, 1e-12, 1e-12, "½‖Xw − y‖²");
            TestKit.Close.Check(TestKit.Dense.Scale(gram, 2.0 / n), mean, 1e-12, 1e-12, "(1/n)‖Xw − y‖²");
            TestKit.Close.Check(gram, Immunization.LeastSquaresHessian(tx, meanSquaredError: false).ToArray<double>(), 1e-12, 1e-12, "XᵀX");
            TestKit.Close.Check(TestKit.Dense.Scale(gram, 2.0 / n), Immunization.LeastSquaresHessian(tx).ToArray<double>(), 1e-12, 1e-12, "(2/n)XᵀX");
        }, Cases);
    }

    [Fact]
    public void Log_condition_number_derivative_is_the_eigenvector_formula()
    {
        Props.Check(Sizes(2, 6, 0, 0, 0, 0), c =>
        {
            var (k, _, _, seed) = c;
            var r = new Random(seed);
            var a = U(r, k * k);
            var h = TestKit.Dense.Add(TestKit.Dense.Mul(TestKit.Dense.T(a, k, k), a, k, k, k), TestKit.Dense.Scale(TestKit.Dense.Eye(k), 0.3));
            var dh0 = U(r, k * k);
            var dh = TestKit.Dense.Add(dh0, TestKit.Dense.T(dh0, k, k));
            var (ev, vec) = TestKit.Dense.Eigh(h, k);
            int lo = Array.IndexOf(ev, ev.Min()), hi = Array.IndexOf(ev, ev.Max());
            double Quad(int col) { double s = 0; for (int i = 0; i < k; i++) for (int j = 0; j < k; j++) s += vec[i * k + col] * dh[i * k + j] * vec[j * k + col]; return s; }
            double formula = Quad(hi) / ev[hi] - Quad(lo) / ev[lo];
            var leaf = T(h, k, k).RequiresGrad_();
            var grad = Autograd.Grad(Immunization.LogConditionNumber(leaf), leaf).ToArray<double>();
            double directional = grad.Zip(dh, (g, d) => g * d).Sum();
            Assert.True(Math.Abs(directional - formula) <= 1e-9 * (1 + Math.Abs(formula)), $"autodiff {directional}, formula {formula}");
            const double eps = 1e-6;
            double LogK(double t) { var (e, _) = TestKit.Dense.Eigh(TestKit.Dense.Add(h, dh, t), k); return Math.Log(e.Max() / e.Min()); }
            double fd = (LogK(eps) - LogK(-eps)) / (2 * eps);
            Assert.True(Math.Abs(fd - formula) <= 1e-5 * (1 + Math.Abs(formula)), $"finite difference {fd}, formula {formula}");
        }, Cases);
        Assert.Throws<ArgumentException>(() => Immunization.LogConditionNumber(T([1, 0, 0, -1], 2, 2)));
    }

    [Fact]
    public void Immunization_slows_fine_tuning_on_the_harmful_task()
    {
        const int d = 6, k = 4, n = 80;
        var r = new Random(41);
        // The primary task lives mostly in inputs 0..3, the harmful one also in inputs 4..5, so θ can starve the
        // harmful features of a direction the primary task barely uses.
        var xp = T(U(r, n * d), n, d) * T([1, 1, 1, 1, 0.05, 0.05], d); var xh = T(U(r, n * d), n, d) * T([0.05, 0.05, 1, 1, 1, 1], d);
        var yp = xp.MatMul(T(U(r, d), d)); var yh = xh.MatMul(T(U(r, d), d));
        var theta = T(U(r, d * k), d, k);
        var head = T(U(r, k), k);
        double kappaBefore = Math.Exp(Immunization.LogConditionNumber(Immunization.LeastSquaresHessian(xh.MatMul(theta))).Item());
        int stepsBefore = Immunization.StepsToConverge(xh.MatMul(theta), yh, 1e-3, 50_000);
        for (int s = 0; s < 150; s++)
        {
            var th = theta.Detach().RequiresGrad_(); var hd = head.Detach().RequiresGrad_();
            var risk = (xp.MatMul(th).MatMul(hd) - yp).Square().Mean();
            var g = Autograd.Grad([Immunization.Objective(th, xp, risk, xh, 0.1, 1)], [th, hd]);
            theta = (th - 0.02 * g[0]).Detach(); head = (hd - 0.02 * g[1]).Detach();
        }
        double kappaAfter = Math.Exp(Immunization.LogConditionNumber(Immunization.LeastSquaresHessian(xh.MatMul(theta))).Item());
        int stepsAfter = Immunization.StepsToConverge(xh.MatMul(theta), yh, 1e-3, 50_000);
        Assert.True(kappaAfter > 2 * kappaBefore, $"harmful κ {kappaBefore} → {kappaAfter}");
        Assert.True(stepsAfter > 2 * stepsBefore, $"harmful fine-tuning steps {stepsBefore} → {stepsAfter}");
    }

    [Fact]
    public void Steps_to_converge_is_one_for_a_perfectly_conditioned_task()
    {
        // H = (2/n)FᵀF = cI: one step of size 1/c lands on w*.
        var f = T([1, 0, 0, 1, 1, 0, 0, 1], 4, 2);
        Assert.Equal(1, Immunization.StepsToConverge(f, T([1, 2, 3, 4], 4), 1e-9, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => Immunization.StepsToConverge(f, T([1, 2, 3, 4], 4), 0, 10));
        Assert.Throws<ShapeMismatchException>(() => Immunization.StepsToConverge(f, T([1, 2, 3], 3), 0.1, 10));
    }

    // ---------------------------------------------------------------- selective pruning

    [Fact]
    public void Selective_update_is_plain_for_relevant_weights_and_decays_irrelevant_ones()
    {
        Props.Check(Sizes(1, 30, 0, 0, 0, 0), c =>
        {
            var (len, _, _, seed) = c;
            var r = new Random(seed);
            double[] w = U(r, len), g = U(r, len);
            double thr = w.Zip(g, (a, b) => Math.Abs(a * b)).Order().ElementAt(len / 2);
            var rule = new SelectivePruning(learningRate: 0.1, decay: 0.5, relevanceThreshold: thr, pruneThreshold: 0.2);
            var got = rule.Step(T(w, len), T(g, len)).ToArray<double>();
            for (int i = 0; i < len; i++)
            {
                bool relevant = Math.Abs(w[i] * g[i]) >= thr;
                double expected = relevant ? w[i] - 0.1 * g[i] : w[i] - 0.1 * g[i] - 0.1 * 0.5 * w[i];
                Assert.Equal(expected, got[i], 1e-15);
            }
            var mask = rule.Prune(T(w, len)).ToArray<double>();
            for (int i = 0; i < len; i++) Assert.Equal(Math.Abs(w[i]) >= 0.2 ? 1.0 : 0.0, mask[i]);
        }, Cases);
        var rule0 = new SelectivePruning(0.1, 0.5, 0.01, 0.2);
        var kept = rule0.Prune(T([0.5, 0.5, 0.1], 3), T([1, 0, 1], 3)).ToArray<double>();
        Assert.Equal([1.0, 0.0, 0.0], kept);       // pruned weights stay pruned
        Assert.Equal([0.0, 0.0], rule0.Step(T([1, 1], 2), T([0.1, 0.1], 2), T([0, 0], 2)).ToArray<double>());
        Assert.Throws<ArgumentOutOfRangeException>(() => new SelectivePruning(0, 1, 1, 1));
        Assert.Throws<ShapeMismatchException>(() => rule0.Step(T([1, 1], 2), T([1], 1)));
    }

    [Fact]
    public void Selective_pruning_removes_planted_irrelevant_inputs()
    {
        // y depends on inputs 0..2 only; inputs 3..5 are noise. Prune every 50 steps.
        const int n = 200, p = 6;
        var r = new Random(51);
        var x = U(r, n * p);
        var y = Enumerable.Range(0, n).Select(i => 1.5 * x[i * p] - 1.0 * x[i * p + 1] + 0.8 * x[i * p + 2] + 0.05 * (r.NextDouble() - 0.5)).ToArray();
        var tx = T(x, n, p); var ty = T(y, n);
        // A relevant weight near its optimum has a small saliency, takes one decay step (ηλ|w| ≤ 0.015) and climbs back.
        var rule = new SelectivePruning(learningRate: 0.1, decay: 0.1, relevanceThreshold: 1e-4, pruneThreshold: 0.02);
        var w = T(U(r, p, -0.5, 0.5), p);
        Tensor? mask = null;
        for (int s = 1; s <= 600; s++)
        {
            var leaf = w.Detach().RequiresGrad_();
            var g = Autograd.Grad((tx.MatMul(leaf) - ty).Square().Mean(), leaf);
            w = rule.Step(leaf, g, mask);
            if (s % 50 == 0) mask = rule.Prune(w, mask);
        }
        Assert.Equal([1.0, 1, 1, 0, 0, 0], mask!.ToArray<double>());
        var wv = w.ToArray<double>();
        Assert.True(Math.Abs(wv[0] - 1.5) < 0.05 && Math.Abs(wv[1] + 1) < 0.05 && Math.Abs(wv[2] - 0.8) < 0.05, $"kept weights {string.Join(", ", wv)}");
    }

    // ---------------------------------------------------------------- CCL-K

    [Fact]
    public void Delta_kernel_weights_are_normalized_conditional_indicators()
    {
        Props.Check(Sizes(1, 9, 1, 3, 0, 0), c =>
        {
            var (n, groups, _, seed) = c;
            var r = new Random(seed);
            var labels = Enumerable.Range(0, n).Select(_ => (long)r.Next(groups)).ToArray();
            double lambda = Math.Pow(10, -r.Next(0, 4));
            var w = KernelConditionalContrastive.Weights(KernelConditionalContrastive.DeltaKernel(Tensor.FromArray(labels)), lambda).ToArray<double>();
            for (int i = 0; i < n; i++)
            {
                int size = labels.Count(l => l == labels[i]);
                for (int j = 0; j < n; j++) Assert.Equal(labels[i] == labels[j] ? 1.0 / (size + lambda) : 0, w[i * n + j], 1e-12);
            }
            // λ → 0: exactly conditional sampling, uniform over the samples sharing z_i.
            var w0 = KernelConditionalContrastive.Weights(KernelConditionalContrastive.DeltaKernel(Tensor.FromArray(labels)), 1e-12).ToArray<double>();
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) Assert.Equal(labels[i] == labels[j] ? 1.0 / labels.Count(l => l == labels[i]) : 0, w0[i * n + j], 1e-10);
        }, Cases);
    }

    [Fact]
    public void Kernel_weight_rows_are_the_kernel_ridge_smoother()
    {
        Props.Check(Sizes(1, 8, 1, 3, 0, 0), c =>
        {
            var (n, p, _, seed) = c;
            var r = new Random(seed);
            var z = U(r, n * p, -2, 2);
            double sigma = 0.5 + r.NextDouble(), lambda = 0.1 + r.NextDouble();
            var k = new double[n * n];
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                {
                    double d2 = 0;
                    for (int q = 0; q < p; q++) d2 += (z[i * p + q] - z[j * p + q]) * (z[i * p + q] - z[j * p + q]);
                    k[i * n + j] = Math.Exp(-d2 / (2 * sigma * sigma));
                }
            var kt = KernelConditionalContrastive.RbfKernel(T(z, n, p), sigma);
            TestKit.Close.Check(k, kt.ToArray<double>(), 1e-14, 1e-15, "rbf kernel");
            // The smoother's prediction at the training points for targets y is K α with (K + λI) α = y.
            var y = U(r, n);
            var alpha = SolveDense(TestKit.Dense.Add(k, TestKit.Dense.Scale(TestKit.Dense.Eye(n), lambda)), y, n);
            var fitted = TestKit.Dense.Mul(k, alpha, n, n, 1);
            var w = KernelConditionalContrastive.Weights(kt, lambda);
            TestKit.Close.Check(fitted, w.MatMul(T(y, n)).ToArray<double>(), 1e-10, 1e-12, "kernel ridge smoother");
        }, Cases);
    }

    [Fact]
    public void Ccl_k_loss_matches_its_formula_and_gradcheck()
    {
        Props.Check(Sizes(1, 7, 0, 0, 0, 0), c =>
        {
            var (n, _, _, seed) = c;
            var r = new Random(seed);
            var s = U(r, n * n, -3, 3); var w = U(r, n * n, 0, 1);
            double expected = 0;
            for (int i = 0; i < n; i++)
            {
                double den = 0;
                for (int j = 0; j < n; j++) den += w[i * n + j] * Math.Exp(s[i * n + j]);
                expected += (Math.Log(den) - s[i * n + i]) / n;
            }
            Assert.Equal(expected, KernelConditionalContrastive.Loss(T(s, n, n), T(w, n, n)).Item(), 1e-12);
        }, Cases);
        var r2 = new Random(2);
        var wt = T(U(r2, 16, 0.1, 1), 4, 4);
        Assert.True(GradCheck.Run(xs => KernelConditionalContrastive.Loss(xs[0], wt), [T(U(r2, 16, -2, 2), 4, 4)]).Passed);
        Assert.Throws<ShapeMismatchException>(() => KernelConditionalContrastive.Loss(T(U(r2, 6), 2, 3), T(U(r2, 6), 2, 3)));
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelConditionalContrastive.Weights(wt + wt.T, 0));
        Assert.Equal("kernel", Assert.Throws<ArgumentException>(() => KernelConditionalContrastive.Weights(T([1, 0.5, 0.4, 1], 2, 2), 0.1)).ParamName);
    }

    // ---------------------------------------------------------------- equiangular basis vectors

    static double MaxAbsCos(double[] b, int k, int d)
    {
        double worst = 0;
        for (int i = 0; i < k; i++)
            for (int j = 0; j < i; j++)
            {
                double dot = 0;
                for (int q = 0; q < d; q++) dot += b[i * d + q] * b[j * d + q];
                worst = Math.Max(worst, Math.Abs(dot));
            }
        return worst;
    }

    [Theory, InlineData(6, 8, 0.1), InlineData(5, 5, 0.05), InlineData(20, 10, 0.4)]
    public void Generated_basis_is_unit_norm_and_within_the_angle_bound(int k, int d, double alpha)
    {
        var res = EquiangularBasis.Generate(k, d, alpha, new Generator(7));
        Assert.Equal(0, res.Loss);
        var b = res.Basis.ToArray<double>();
        for (int i = 0; i < k; i++) Assert.Equal(1.0, Math.Sqrt(Enumerable.Range(0, d).Sum(q => b[i * d + q] * b[i * d + q])), 1e-14);
        Assert.True(MaxAbsCos(b, k, d) <= alpha + 1e-12, $"max |cos| {MaxAbsCos(b, k, d)} > α {alpha}");
    }

    [Fact]
    public void Infeasible_basis_keeps_a_positive_loss()
    {
        // 12 directions in the plane cannot all be within |cos| ≤ 0.2 of each other's orthogonal.
        var res = EquiangularBasis.Generate(12, 2, 0.2, new Generator(3), maxSteps: 100);
        Assert.True(res.Loss > 0);
        Assert.Equal(100, res.Steps);
    }

    [Fact]
    public void Ebv_loss_is_cross_entropy_over_cosine_logits()
    {
        Props.Check(Sizes(1, 5, 2, 5, 1, 6), c =>
        {
            var (n, k, d, seed) = c;
            var r = new Random(seed);
            double[] f = U(r, n * d), e = U(r, k * d);
            var t = Enumerable.Range(0, n).Select(_ => (long)r.Next(k)).ToArray();
            const double tau = 0.3;
            double Norm(double[] a, int row, int w) => Math.Sqrt(Enumerable.Range(0, w).Sum(q => a[row * w + q] * a[row * w + q]));
            double expected = 0; var pred = new long[n];
            for (int i = 0; i < n; i++)
            {
                var logits = Enumerable.Range(0, k).Select(j => Enumerable.Range(0, d).Sum(q => f[i * d + q] * e[j * d + q]) / (Norm(f, i, d) * Norm(e, j, d)) / tau).ToArray();
                double mx = logits.Max();
                expected += (mx + Math.Log(logits.Sum(l => Math.Exp(l - mx))) - logits[t[i]]) / n;
                pred[i] = Array.IndexOf(logits, logits.Max());
            }
            Assert.Equal(expected, EquiangularBasis.Loss(T(f, n, d), T(e, k, d), Tensor.FromArray(t), tau).Item(), 1e-12);
            Assert.Equal(pred, EquiangularBasis.Predict(T(f, n, d), T(e, k, d)).ToArray<long>());
            double gen = 0;
            for (int i = 0; i < k; i++)
                for (int j = 0; j < k; j++)
                    if (i != j) gen += Math.Max(Math.Abs(Enumerable.Range(0, d).Sum(q => e[i * d + q] * e[j * d + q]) / (Norm(e, i, d) * Norm(e, j, d))) - 0.1, 0);
            Assert.Equal(gen, EquiangularBasis.GenerationLoss(T(e, k, d), 0.1).Item(), 1e-12);
        }, Cases);
        var r2 = new Random(9);
        var basis = T(U(r2, 12), 3, 4); var target = Tensor.FromArray(new long[] { 2, 0 });
        Assert.True(GradCheck.Run(xs => EquiangularBasis.Loss(xs[0], basis, target, 0.5), [T(U(r2, 8), 2, 4)]).Passed);
        Assert.Throws<ArgumentOutOfRangeException>(() => EquiangularBasis.Generate(3, 3, 1.0, new Generator(1)));
        Assert.Throws<ShapeMismatchException>(() => EquiangularBasis.Logits(T(U(r2, 6), 2, 3), basis, 1));
    }

    // ---------------------------------------------------------------- conditional Monge gap

    static IEnumerable<int[]> Permutations(int n) => n == 0 ? [[]] :
        Permutations(n - 1).SelectMany(p => Enumerable.Range(0, n).Select(pos => p.Take(pos).Append(n - 1).Concat(p.Skip(pos)).ToArray()));

    [Fact]
    public void Assignment_cost_is_the_best_permutation()
    {
        Props.Check(Sizes(1, 6, 0, 0, 0, 0), c =>
        {
            var (n, _, _, seed) = c;
            var cost = U(new Random(seed), n * n, 0, 5);
            double best = Permutations(n).Min(p => Enumerable.Range(0, n).Sum(i => cost[i * n + p[i]])) / n;
            var (got, assignment) = MongeGap.AssignmentCost(T(cost, n, n));
            Assert.Equal(best, got, 1e-12);
            Assert.Equal(best, Enumerable.Range(0, n).Sum(i => cost[i * n + assignment[i]]) / n, 1e-12);
        }, Cases);
    }

    [Fact]
    public void Exact_monge_gap_is_zero_for_gradients_of_convex_maps_and_positive_for_rotations()
    {
        const int n = 9;
        var r = new Random(61);
        var x = T(U(r, n * 2, -1, 1), n, 2);
        Assert.Equal(0, MongeGap.Exact(x, x), 1e-12);
        var a = T([2.0, 0.7, 0.7, 0.5], 2, 2);                      // symmetric positive definite: x → Ax = ∇(½xᵀAx)
        Assert.Equal(0, MongeGap.Exact(x, x.MatMul(a)), 1e-12);
        var rot = T([0.0, 1, -1, 0], 2, 2);                         // a quarter turn
        Assert.True(MongeGap.Exact(x, x.MatMul(rot)) > 0.05);
    }

    [Fact]
    public void Entropic_monge_gap_is_within_its_entropic_bias_of_the_exact_gap()
    {
        // W ≤ W_ε ≤ W + ε log n (KL(P ‖ abᵀ) ≤ log n for uniform marginals), so gap − ε log n ≤ gap_ε ≤ gap.
        const int n = 8;
        var r = new Random(71);
        // Costs up to 2 against ε ≥ 0.05 keep Sinkhorn to a few hundred iterations; convergence is asserted, since
        // the bound is about the converged value.
        var x = T(U(r, n * 2, -0.5, 0.5), n, 2);
        var rot = T([Math.Cos(1.0), Math.Sin(1.0), -Math.Sin(1.0), Math.Cos(1.0)], 2, 2);
        foreach (var map in new[] { x, x.MatMul(rot), x.MatMul(T([1.5, 0.4, 0.4, 0.8], 2, 2)) })
        {
            double exact = MongeGap.Exact(x, map);
            foreach (double eps in new[] { 0.2, 0.1, 0.05 })
            {
                Assert.True(MongeGap.Sinkhorn(MongeGap.SquaredCost(x, map), eps).MarginalError <= 1e-12, $"ε {eps}: Sinkhorn did not converge");
                double gap = MongeGap.Entropic(x, map, eps).Item();
                Assert.True(gap <= exact + 1e-9 && gap >= exact - eps * Math.Log(n) - 1e-9, $"ε {eps}: entropic {gap}, exact {exact}");
            }
        }
    }

    [Fact]
    public void Sinkhorn_meets_its_marginals_and_its_cost_is_the_regularized_primal()
    {
        var r = new Random(81);
        var cost = T(U(r, 5 * 7, 0, 2), 5, 7);
        const double eps = 0.05;
        var s = MongeGap.Sinkhorn(cost, eps, 1e-13);
        Assert.True(s.MarginalError <= 1e-13);
        var c = cost.ToArray<double>();
        double primal = 0;
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(1.0 / 5, Enumerable.Range(0, 7).Sum(j => s.Plan[i, j]), 1e-12);
            for (int j = 0; j < 7; j++) primal += s.Plan[i, j] * c[i * 7 + j] + eps * s.Plan[i, j] * Math.Log(s.Plan[i, j] * 35);
        }
        for (int j = 0; j < 7; j++) Assert.Equal(1.0 / 7, Enumerable.Range(0, 5).Sum(i => s.Plan[i, j]), 1e-12);
        Assert.Equal(primal, s.Cost, 1e-11);
    }

    [Fact]
    public void Monge_gap_gradients_and_the_conditional_average()
    {
        var r = new Random(91);
        var x = T(U(r, 6 * 2), 6, 2);
        var res = GradCheck.Run(xs => MongeGap.Entropic(xs[0], xs[1], 0.5), [x, T(U(r, 12), 6, 2)]);
        Assert.True(res.Passed, res.ToString());
        var mapped = T(U(r, 12), 6, 2);
        long[] cond = [0, 1, 0, 1, 1, 0];
        var g0 = Tensor.FromArray(new long[] { 0, 2, 5 }); var g1 = Tensor.FromArray(new long[] { 1, 3, 4 });
        double expected = (MongeGap.Entropic(x.IndexSelect(0, g0), mapped.IndexSelect(0, g0), 0.1).Item()
            + MongeGap.Entropic(x.IndexSelect(0, g1), mapped.IndexSelect(0, g1), 0.1).Item()) / 2;
        Assert.Equal(expected, MongeGap.Conditional(x, mapped, cond, 0.1).Item(), 1e-13);
        Assert.Throws<ShapeMismatchException>(() => MongeGap.Conditional(x, mapped, [0, 1], 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => MongeGap.Entropic(x, mapped, 0));
    }
}
