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

    /// <summary>
    /// Checks the gradient of a scalar f (which may itself take gradients inside) in each input against central
    /// differences of f's value, evaluated with recording on so that inner Autograd.Grad calls work.
    /// </summary>
    static void CheckGradient(Func<Tensor[], Tensor> f, Tensor[] inputs, string what, double eps = 1e-6, double atol = 1e-6, double rtol = 1e-5)
    {
        var xs = inputs.Select(x => x.Detach().Clone().RequiresGrad_()).ToArray();
        var analytic = Autograd.Grad([f(xs)], xs);
        for (int k = 0; k < xs.Length; k++)
        {
            var a = analytic[k].ToArray<double>();
            var baseVals = xs[k].ToArray<double>();
            for (int e = 0; e < baseVals.Length; e++)
            {
                double Eval(double v)
                {
                    var vals = (double[])baseVals.Clone(); vals[e] = v;
                    var args = xs.Select((x, j) => (j == k ? T(vals, x.Shape.Dims.ToArray()) : x.Detach()).RequiresGrad_()).ToArray();
                    return f(args).Item();
                }
                double numeric = (Eval(baseVals[e] + eps) - Eval(baseVals[e] - eps)) / (2 * eps);
                Assert.True(Math.Abs(a[e] - numeric) <= atol + rtol * Math.Abs(numeric), $"{what}: input {k}, element {e}: analytic {a[e]:G10}, numeric {numeric:G10}");
            }
        }
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
        Assert.Equal(0, AttributionPriors.GiniSparsity(Tensor.Full(new Shape(3, 5), -2.0, DType.Float64)).Item(), 15);
        // One feature holds all attribution: Gini = (p − 1)/p, the largest value for p features.
        Assert.Equal(-3.0 / 4, AttributionPriors.GiniSparsity(T([0, 0, 2, 0, 0, 0, -4, 0], 2, 4)).Item(), 15);
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
        Assert.Equal(0.6, c.UpdateMultiplier(0.3), 15);    // 1 + 2(0.3 − 0.5)
        var theta = T([0.3, -0.2], 2).RequiresGrad_();
        var x = T([1, 2, 3, 4, 5, 6], 3, 2); var y = T([1, 0, -1], 3);
        var loss = MseRisk(x.MatMul(theta), y);
        var (obj, norm) = c.Lagrangian(loss, [theta]);
        Assert.Equal(loss.Item() + 0.6 * (norm - 0.5), obj.Item(), 13);
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
}
