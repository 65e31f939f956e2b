using FsCheck.Fluent;
using Kiln.Methods.Sketching;
using Kiln.Tests.TestKit;
using Xunit;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests.Methods;

/// <summary>
/// The sketching family (issue 24): the sketches, leverage scores, weighted least squares and pivotal leverage sampling
/// against float64 transcriptions written here (normal equations by Gaussian elimination, Sylvester's Hadamard matrix,
/// the pivotal method's marginals), then each entry's CHECK.
/// </summary>
public class SketchingTests
{
    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));
    static double[] H(Tensor t) => t.To(DType.Float64).ToArray<double>();

    // Solves the square system M X = B (n x n, n x k) by Gaussian elimination with partial pivoting.
    internal static double[] SolveDense(double[] m, double[] b, int n, int k)
    {
        var a = (double[])m.Clone();
        var x = (double[])b.Clone();
        for (int c = 0; c < n; c++)
        {
            int piv = c;
            for (int r = c + 1; r < n; r++) if (Math.Abs(a[r * n + c]) > Math.Abs(a[piv * n + c])) piv = r;
            for (int j = 0; j < n; j++) (a[c * n + j], a[piv * n + j]) = (a[piv * n + j], a[c * n + j]);
            for (int j = 0; j < k; j++) (x[c * k + j], x[piv * k + j]) = (x[piv * k + j], x[c * k + j]);
            for (int r = 0; r < n; r++)
            {
                if (r == c) continue;
                double f = a[r * n + c] / a[c * n + c];
                for (int j = 0; j < n; j++) a[r * n + j] -= f * a[c * n + j];
                for (int j = 0; j < k; j++) x[r * k + j] -= f * x[c * k + j];
            }
        }
        for (int r = 0; r < n; r++) for (int j = 0; j < k; j++) x[r * k + j] /= a[r * n + r];
        return x;
    }

    // (Aᵀ W A)⁻¹ Aᵀ W b: the weighted normal equations, A [n, d], b [n].
    internal static double[] WeightedNormal(double[] a, double[] b, double[] w, int n, int d)
    {
        var g = new double[d * d];
        var r = new double[d];
        for (int i = 0; i < n; i++)
            for (int p = 0; p < d; p++)
            {
                r[p] += w[i] * a[i * d + p] * b[i];
                for (int q = 0; q < d; q++) g[p * d + q] += w[i] * a[i * d + p] * a[i * d + q];
            }
        return SolveDense(g, r, d, 1);
    }

    static FsCheck.Gen<(int N, int D, int M, int Seed)> Problems(int maxN, int maxD) =>
        from n in G.Choose(1, maxN)
        from d in G.Choose(1, maxD)
        from m in G.Choose(1, maxN)
        from seed in G.Choose(0, int.MaxValue)
        select (n, d, m, seed);

    // ---------- Shared machinery ----------

    [Fact]
    public void Hadamard_matches_sylvesters_matrix()
    {
        foreach (int n in new[] { 1, 2, 8, 32 })
        {
            var r = new Random(n);
            var x = Dense.Uniform(r, n * 3);
            var expected = new double[n * 3];
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                {
                    double h = (System.Numerics.BitOperations.PopCount((uint)(i & j)) % 2 == 0 ? 1 : -1) / Math.Sqrt(n);
                    for (int c = 0; c < 3; c++) expected[i * 3 + c] += h * x[j * 3 + c];
                }
            Close.Check(expected, H(Sketch.Hadamard(T(x, n, 3))), 1e-12, 1e-12, $"N = {n}");
        }
    }

    [Fact]
    public void Every_sketch_applies_its_explicit_matrix_and_has_the_documented_structure()
    {
        Props.Check(Problems(40, 5), c =>
        {
            var (n, d, m, seed) = c;
            var a = Tensor.Randn(new Shape(n, d), new Generator((ulong)seed), dtype: DType.Float64);
            foreach (var kind in Enum.GetValues<SketchKind>())
            {
                int padded = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)n);
                int rows = kind == SketchKind.Srht ? Math.Min(m, padded) : m;
                var s = Sketch.Matrix(kind, rows, n, new Generator((ulong)seed + 1));
                var sa = Sketch.Apply(kind, a, rows, new Generator((ulong)seed + 1));
                Close.Check(H(s.MatMul(a)), H(sa), 1e-12, 1e-12, $"{kind} m = {rows} n = {n}");
                var sv = H(s);
                if (kind == SketchKind.CountSketch)
                    for (int j = 0; j < n; j++)
                    {
                        var col = Enumerable.Range(0, rows).Select(i => sv[i * n + j]).ToArray();
                        Assert.Equal(1, col.Count(v => v != 0));
                        Assert.Equal(1, col.Sum(Math.Abs));
                    }
                if (kind == SketchKind.Srht)
                {
                    Assert.All(sv, v => Assert.Equal(1 / Math.Sqrt(rows), Math.Abs(v), 1e-12));
                    if (rows == padded)  // all of H D: an isometry, SᵀS = I
                        Close.Check(Dense.Eye(n), H(s.T.MatMul(s)), 1e-12, 1e-12, "SRHT with m = N");
                }
            }
        }, 25);
    }

    [Fact]
    public void Sketches_are_unbiased_isometries_on_average()
    {
        // E[SᵀS] = I for each kind: the mean over 400 draws is within Monte Carlo error (each entry's sd is at most
        // about √(2/m) for one draw, so 4 sd of the mean is 4 √(2/m/400)).
        const int n = 6, m = 4, draws = 400;
        foreach (var kind in Enum.GetValues<SketchKind>())
        {
            var sum = new double[n * n];
            var g = new Generator(7);
            for (int t = 0; t < draws; t++)
            {
                var s = Sketch.Matrix(kind, m, n, g);
                sum = Dense.Add(sum, H(s.T.MatMul(s)));
            }
            var mean = Dense.Scale(sum, 1.0 / draws);
            Assert.True(Dense.MaxDiff(Dense.Eye(n), mean) < 4 * Math.Sqrt(2.0 / m / draws), $"{kind}: max |E[SᵀS] - I| = {Dense.MaxDiff(Dense.Eye(n), mean)}");
        }
    }

    [Fact]
    public void Weighted_least_squares_matches_the_weighted_normal_equations()
    {
        for (int seed = 0; seed < 20; seed++)
        {
            var r = new Random(seed);
            int d = r.Next(1, 6), n = d + r.Next(0, 12);
            var a = Dense.Uniform(r, n * d);
            var b = Dense.Uniform(r, n);
            var w = Dense.Uniform(r, n, 0.1, 3);
            var x = LeastSquares.Weighted(T(a, n, d), T(b, n), T(w, n));
            Close.Check(WeightedNormal(a, b, w, n, d), H(x), 1e-9, 1e-9, $"seed {seed}");
            // Unit weights are the plain solve.
            Close.Check(H(LeastSquares.Solve(T(a, n, d), T(b, n))), H(LeastSquares.Weighted(T(a, n, d), T(b, n), Tensor.Ones(new Shape(n), DType.Float64))), 1e-10, 1e-10);
        }
        Assert.Throws<ArgumentException>(() => LeastSquares.Weighted(T([1, 2], 2, 1), T([1, 2], 2), T([1, -1], 2)));
        Assert.Throws<ShapeMismatchException>(() => LeastSquares.Weighted(T([1, 2], 2, 1), T([1, 2], 2), T([1], 1)));
        Assert.Throws<ShapeMismatchException>(() => LeastSquares.Solve(T([1, 2], 2, 1), T([1, 2, 3], 3)));
    }

    [Fact]
    public void Leverage_scores_are_the_hat_matrix_diagonal_and_sum_to_the_rank()
    {
        for (int seed = 0; seed < 20; seed++)
        {
            var r = new Random(seed);
            int d = r.Next(1, 6), n = d + r.Next(0, 12);
            var a = Dense.Uniform(r, n * d);
            var g = Dense.Mul(Dense.T(a, n, d), a, d, n, d);
            var ginvAt = SolveDense(g, Dense.T(a, n, d), d, n);           // (AᵀA)⁻¹ Aᵀ, [d, n]
            var hat = Dense.Mul(a, ginvAt, n, d, n);
            var tau = H(LeastSquares.LeverageScores(T(a, n, d)));
            Close.Check(Enumerable.Range(0, n).Select(i => hat[i * n + i]).ToArray(), tau, 1e-9, 1e-9, $"seed {seed}");
            Assert.Equal(d, tau.Sum(), 1e-9);
        }
        // A rank-one matrix (two equal columns): the scores sum to 1, not 2.
        var dup = T([1, 1, 2, 2, 3, 3], 3, 2);
        Assert.Equal(1, H(LeastSquares.LeverageScores(dup)).Sum(), 1e-9);
    }

    [Fact]
    public void Sketch_and_solve_is_exact_for_an_isometric_sketch_and_close_for_a_large_one()
    {
        var g = new Generator(3);
        var a = Tensor.Randn(new Shape(50, 4), g, dtype: DType.Float64);
        var b = Tensor.Randn(new Shape(50), g, dtype: DType.Float64);
        var exact = LeastSquares.Solve(a, b);
        // SRHT with m = N = 64 is an orthogonal map of the padded rows: the same minimizer.
        Close.Check(H(exact), H(LeastSquares.SketchAndSolve(a, b, SketchKind.Srht, 64, new Generator(1))), 1e-10, 1e-10);
        double best = LeastSquares.Residual(a, b, exact);
        foreach (var kind in Enum.GetValues<SketchKind>())
        {
            double eps = LeastSquares.Residual(a, b, LeastSquares.SketchAndSolve(a, b, kind, 40, new Generator(2))) / best - 1;
            Assert.InRange(eps, 0, 1);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => LeastSquares.SketchAndSolve(a, b, SketchKind.Srht, 65, new Generator(1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => LeastSquares.SketchAndSolve(a, b, SketchKind.Gaussian, 0, new Generator(1)));
    }

    // ---------- Improved Active Learning via Dependent Leverage Score Sampling ----------

    [Fact]
    public void Inclusion_probabilities_are_capped_proportional_and_sum_to_k()
    {
        for (int seed = 0; seed < 30; seed++)
        {
            var r = new Random(seed);
            int n = r.Next(1, 30);
            var s = Enumerable.Range(0, n).Select(_ => r.NextDouble() < 0.2 ? 0 : Math.Pow(r.NextDouble(), 3)).ToArray();
            if (s.All(v => v == 0)) s[0] = 1;
            int positive = s.Count(v => v > 0);
            double k = 0.5 + r.NextDouble() * positive;
            var p = LeverageSampling.InclusionProbabilities(s, k);
            Assert.Equal(Math.Min(k, positive), p.Sum(), 1e-9);
            // One constant c: p = c s below the cap, and c s ≥ 1 wherever the cap binds.
            var free = Enumerable.Range(0, n).Where(i => s[i] > 0 && p[i] < 1).ToArray();
            if (free.Length == 0) continue;
            double c = p[free[0]] / s[free[0]];
            foreach (int i in Enumerable.Range(0, n))
                if (p[i] < 1) Assert.Equal(c * s[i], p[i], 1e-12);
                else Assert.True(c * s[i] >= 1 - 1e-12, $"capped p[{i}] with c s = {c * s[i]}");
        }
        Assert.Throws<ArgumentException>(() => LeverageSampling.InclusionProbabilities([0, 0], 1));
        Assert.Throws<ArgumentException>(() => LeverageSampling.InclusionProbabilities([1, -1], 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => LeverageSampling.InclusionProbabilities([1, 1], 0));
    }

    [Fact]
    public void Pivotal_and_bernoulli_sampling_keep_the_marginals_and_pivotal_fixes_the_size()
    {
        const int draws = 3000;
        var r = new Random(5);
        foreach (int n in new[] { 1, 2, 7, 12 })
        {
            var pts = Dense.Uniform(r, n * 2);
            var tree = new PivotalTree(T(pts, n, 2));
            Assert.Equal(Enumerable.Range(0, n), tree.LeafOrder.Order());
            var p = LeverageSampling.InclusionProbabilities(Dense.Uniform(r, n, 0.05, 1), Math.Max(1, n / 3.0 + 0.4));
            double total = p.Sum();
            var pivotal = new double[n];
            var bernoulli = new double[n];
            var g = new Generator((ulong)n);
            for (int t = 0; t < draws; t++)
            {
                var s = tree.Sample(p, g);
                Assert.InRange(s.Length, Math.Floor(total + 1e-9), Math.Ceiling(total - 1e-9));
                foreach (int i in s) pivotal[i]++;
                foreach (int i in LeverageSampling.Bernoulli(p, g)) bernoulli[i]++;
            }
            for (int i = 0; i < n; i++)
            {
                double sd = Math.Sqrt(p[i] * (1 - p[i]) / draws);
                Assert.True(Math.Abs(pivotal[i] / draws - p[i]) <= 4.5 * sd + 1e-12, $"pivotal n = {n}: row {i} drawn {pivotal[i] / draws} for p = {p[i]}");
                Assert.True(Math.Abs(bernoulli[i] / draws - p[i]) <= 4.5 * sd + 1e-12, $"bernoulli n = {n}: row {i} drawn {bernoulli[i] / draws} for p = {p[i]}");
            }
        }
    }

    [Fact]
    public void Pivotal_sampling_never_takes_two_sibling_leaves_whose_probabilities_sum_to_at_most_one()
    {
        // Eight points on a line: the PCA tree pairs neighbours, and equal p = 1/2 makes every sibling pair one draw.
        var x = T([0, 1, 2, 3, 4, 5, 6, 7], 8, 1);
        var tree = new PivotalTree(x);
        var p = Enumerable.Repeat(0.5, 8).ToArray();
        var g = new Generator(11);
        for (int t = 0; t < 200; t++)
        {
            var s = tree.Sample(p, g);
            Assert.Equal(4, s.Length);
            var order = tree.LeafOrder.ToArray();
            for (int pair = 0; pair < 4; pair++)
                Assert.Equal(1, s.Count(i => i == order[2 * pair] || i == order[2 * pair + 1]));
        }
        Assert.Throws<ArgumentException>(() => tree.Sample([0.5, 0.5], g));
        Assert.Throws<ArgumentException>(() => tree.Sample(Enumerable.Repeat(1.5, 8).ToArray(), g));
        Assert.Throws<ArgumentException>(() => new PivotalTree(T([double.NaN, 1], 2, 1)));
    }

    [Fact]
    public void Leverage_fit_is_the_inverse_probability_weighted_solve_and_pivotal_beats_independent_on_polynomials()
    {
        var g = new Generator(21);
        var x = Tensor.Rand(new Shape(512), g, -1, 1, DType.Float64);
        var a = SketchExperiment.Legendre(x, 9);
        var xs = H(x);
        // The Legendre recurrence against the closed form P₂ = (3x² - 1)/2 and P₃ = (5x³ - 3x)/2.
        var av = H(a);
        for (int i = 0; i < 512; i += 37)
        {
            Assert.Equal((3 * xs[i] * xs[i] - 1) / 2, av[i * 10 + 2], 1e-12);
            Assert.Equal((5 * Math.Pow(xs[i], 3) - 3 * xs[i]) / 2, av[i * 10 + 3], 1e-12);
        }
        var b = T(xs.Select(v => 1 / (1 + 25 * v * v)).ToArray(), 512) + Tensor.Randn(new Shape(512), g, std: 0.05, dtype: DType.Float64);
        var p = LeverageSampling.InclusionProbabilities(H(LeastSquares.LeverageScores(a)), 20);
        var rows = LeverageSampling.Bernoulli(p, g);
        var bv = H(b);
        Close.Check(WeightedNormal(rows.SelectMany(i => av.Skip(i * 10).Take(10)).ToArray(), rows.Select(i => bv[i]).ToArray(), rows.Select(i => 1 / p[i]).ToArray(), rows.Length, 10),
            H(LeverageSampling.Fit(a, b, rows, p)), 1e-7, 1e-7);

        // The paper's claim at k = 2d: pivotal (spatially spread) sampling gives a smaller excess residual than
        // independent sampling with the same marginals. Median over 40 draws each.
        double best = LeastSquares.Residual(a, b, LeastSquares.Solve(a, b));
        var tree = new PivotalTree(x.Unsqueeze(-1));
        var indep = new List<double>();
        var pivot = new List<double>();
        for (int t = 0; t < 40; t++)
        {
            indep.Add(LeastSquares.Residual(a, b, LeverageSampling.Fit(a, b, LeverageSampling.Bernoulli(p, g), p)) / best - 1);
            pivot.Add(LeastSquares.Residual(a, b, LeverageSampling.Fit(a, b, tree.Sample(p, g), p)) / best - 1);
        }
        double Median(List<double> v) { v.Sort(); return 0.5 * (v[19] + v[20]); }
        Assert.True(Median(pivot) < Median(indep), $"pivotal median ε {Median(pivot)} vs independent {Median(indep)}");
        Assert.Throws<ArgumentException>(() => LeverageSampling.Fit(a, b, [], p));
    }
    // ---------- A Nearly-Optimal Bound for Fast Regression with ell_infty Guarantee ----------

    [Fact]
    public void Linf_regression_identity_sketch_is_exact_gaussian_error_has_the_closed_form_covariance_and_meets_the_bound()
    {
        var g = new Generator(31);
        const int n = 60, d = 3, m = 24, trials = 600;
        var a = Tensor.Randn(new Shape(n, d), g, dtype: DType.Float64);
        var b = Tensor.Randn(new Shape(n), g, dtype: DType.Float64);
        var exact = LeastSquares.Solve(a, b);
        Assert.Equal(0, LInfRegression.Error(exact, LeastSquares.SketchAndSolve(a, b, Tensor.Eye(n, dtype: DType.Float64))), 1e-10);

        // The float64 transcription: Cov = ‖r‖² (AᵀA)⁻¹ / (m - d - 1), from the residual and normal equations written here.
        var av = H(a); var bv = H(b);
        var xs = WeightedNormal(av, bv, Enumerable.Repeat(1.0, n).ToArray(), n, d);
        var res = Dense.Add(Dense.Mul(av, xs, n, d, 1), bv, -1);
        double r2 = res.Sum(v => v * v);
        var gram = Dense.Mul(Dense.T(av, n, d), av, d, n, d);
        var cov = Dense.Scale(SolveDense(gram, Dense.Eye(d), d, d), r2 / (m - d - 1));
        Close.Check(cov, H(LInfRegression.GaussianErrorCovariance(a, b, m)), 1e-9, 1e-12);

        var xe = H(exact);
        var emp = new double[d * d];
        int withinBound = 0;
        // ε = √(2 ln(40 d)) √(d / (m - d - 1)): each coordinate's sd is at most ‖r‖ ‖A⁺‖ / √(m - d - 1), so the bound
        // fails with probability about 1/20 by a union of Gaussian tails.
        double eps = Math.Sqrt(2 * Math.Log(40 * d) * d / (m - d - 1));
        double bound = LInfRegression.Bound(a, b, eps);
        var dense = new List<double>();
        for (int t = 0; t < trials; t++)
        {
            var x = LeastSquares.SketchAndSolve(a, b, SketchKind.Gaussian, m, g);
            var dx = Dense.Add(H(x), xe, -1);
            for (int i = 0; i < d; i++) for (int j = 0; j < d; j++) emp[i * d + j] += dx[i] * dx[j] / trials;
            double err = LInfRegression.Error(x, exact);
            dense.Add(err);
            if (err <= bound) withinBound++;
        }
        // Entry (i, j) of a mean of 600 outer products: Monte Carlo error ~ √((c_ii c_jj + c_ij²)/600) (heavier tails
        // of the inverse Wishart: 6 of those).
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
            {
                double se = Math.Sqrt((cov[i * d + i] * cov[j * d + j] + cov[i * d + j] * cov[i * d + j]) / trials);
                Assert.True(Math.Abs(emp[i * d + j] - cov[i * d + j]) < 6 * se, $"cov[{i},{j}]: empirical {emp[i * d + j]}, closed form {cov[i * d + j]} (se {se})");
            }
        Assert.True(withinBound >= 0.9 * trials, $"{withinBound} of {trials} Gaussian solves met the l_inf bound {bound}");
        Assert.Throws<ArgumentOutOfRangeException>(() => LInfRegression.Bound(a, b, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => LInfRegression.GaussianErrorCovariance(a, b, d + 1));
        Assert.Throws<ShapeMismatchException>(() => LeastSquares.SketchAndSolve(a, b, Tensor.Eye(n - 1, dtype: DType.Float64)));
    }

    [Fact]
    public void Linf_error_of_countsketch_exceeds_the_dense_sketch_on_a_coherent_design()
    {
        // A few heavy rows carry the design: a sparse sketch that hashes two of them together (probability about
        // 1 - Π(1 - i/m) ≈ 18% here) keeps only the light rows' information along one direction, a dense sketch mixes
        // every row into every sketch row.
        const int n = 200, d = 4, m = 32, trials = 300;
        var g = new Generator(41);
        var heavy = Tensor.Eye(d, dtype: DType.Float64) * 10.0;
        var a = Tensor.Concat([heavy, Tensor.Randn(new Shape(n - d, d), g, std: 0.01, dtype: DType.Float64)], 0);
        var b = Tensor.Randn(new Shape(n), g, dtype: DType.Float64);
        var exact = LeastSquares.Solve(a, b);
        double Mean(SketchKind kind) => Enumerable.Range(0, trials).Average(_ => LInfRegression.Error(LeastSquares.SketchAndSolve(a, b, kind, m, g), exact));
        double dense = Mean(SketchKind.Gaussian), sparse = Mean(SketchKind.CountSketch);
        Assert.True(sparse > 2 * dense, $"mean l_inf error: CountSketch {sparse}, Gaussian {dense}");
    }

    // ---------- The Connection Between R-Learning and Inverse-Variance Weighting ----------

    [Fact]
    public void R_loss_equals_its_inverse_variance_weighted_form_and_both_fits_coincide()
    {
        for (int seed = 0; seed < 20; seed++)
        {
            var r = new Random(seed);
            int p = r.Next(1, 4), n = p + 2 + r.Next(0, 20);
            var xf = Dense.Uniform(r, n * p);
            var w = Enumerable.Range(0, n).Select(_ => (double)r.Next(2)).ToArray();
            var e = Dense.Uniform(r, n, 0.1, 0.9);
            var m = Dense.Uniform(r, n);
            var y = Dense.Uniform(r, n, -2, 2);
            var tau = Dense.Uniform(r, n);
            // The identity, term by term: ((y - m) - (w - e) τ)² = (w - e)² ((y - m)/(w - e) - τ)².
            double direct = Enumerable.Range(0, n).Average(i => Math.Pow(y[i] - m[i] - (w[i] - e[i]) * tau[i], 2));
            double ivw = Enumerable.Range(0, n).Average(i => Math.Pow(w[i] - e[i], 2) * Math.Pow((y[i] - m[i]) / (w[i] - e[i]) - tau[i], 2));
            Assert.Equal(direct, ivw, 1e-10);
            Assert.Equal(direct, RLearner.Loss(T(tau, n), T(y, n), T(w, n), T(m, n), T(e, n)).Item(), 1e-10);
            // The R-loss minimizer over τ = xᵀβ by its own normal equations: rows (w - e) x against y - m.
            var rows = Enumerable.Range(0, n).SelectMany(i => Enumerable.Range(0, p).Select(j => (w[i] - e[i]) * xf[i * p + j])).ToArray();
            var beta = WeightedNormal(rows, y.Select((v, i) => v - m[i]).ToArray(), Enumerable.Repeat(1.0, n).ToArray(), n, p);
            Close.Check(beta, H(RLearner.Fit(T(xf, n, p), T(y, n), T(w, n), T(m, n), T(e, n))), 1e-8, 1e-8, $"seed {seed}");
        }
        Assert.Throws<ArgumentException>(() => RLearner.PseudoOutcomes(T([1, 2], 2), T([1, 0.5], 2), T([0, 0], 2), T([0.5, 0.5], 2)));
        Assert.Throws<ShapeMismatchException>(() => RLearner.Loss(T([1], 1), T([1, 2], 2), T([1, 0], 2), T([0, 0], 2), T([0.5, 0.5], 2)));
    }

    [Fact]
    public void R_loss_passes_gradcheck()
    {
        var r = new Random(3);
        var xs = Enumerable.Range(0, 5).Select(_ => T(Dense.Uniform(r, 6, 0.1, 0.9), 6)).ToArray();
        var res = GradCheck.Run(v => RLearner.Loss(v[0], v[1], v[2], v[3], v[4]), xs);
        Assert.True(res.Passed, res.ToString());
    }

    // ---------- The Power of Preconditioning in Overparameterized Low-Rank Matrix Sensing ----------

    static (Tensor Ops, Tensor Y, Tensor Target, Tensor Start) Sensing(double kappa, int seed, int n = 8, int rank = 2, int k = 4, int m = 200)
    {
        var g = new Generator((ulong)seed);
        var (q, _) = Tensor.Randn(new Shape(n, rank), g, dtype: DType.Float64).Qr();
        var s = Tensor.FromArray(Enumerable.Range(0, rank).Select(i => i == 0 ? kappa : 1.0).ToArray());
        var target = (q * s).MatMul(q.T);
        var ops = Tensor.Randn(new Shape(m, n, n), g, dtype: DType.Float64);
        var y = ops.Reshape(m, n * n).MatMul(target.Reshape(n * n, 1)).Squeeze(-1);
        var start = Tensor.Randn(new Shape(n, k), g, std: 1e-6 / Math.Sqrt(n), dtype: DType.Float64);
        return (ops, y, target, start);
    }

    [Fact]
    public void Scaled_gd_step_matches_the_papers_update_written_out()
    {
        for (int seed = 0; seed < 6; seed++)
        {
            var (ops, y, _, _) = Sensing(3, seed, n: 4, k: 3, m: 12);
            var x = Tensor.Randn(new Shape(4, 3), new Generator((ulong)seed + 100), dtype: DType.Float64);
            var ov = H(ops); var yv = H(y); var xv = H(x);
            int n = 4, k = 3, m = 12;
            var xxt = Dense.Mul(xv, Dense.T(xv, n, k), n, k, n);
            var gsum = new double[n * n];
            for (int i = 0; i < m; i++)
            {
                double ri = -yv[i];
                for (int t = 0; t < n * n; t++) ri += ov[i * n * n + t] * xxt[t];
                for (int a = 0; a < n; a++) for (int c = 0; c < n; c++) gsum[a * n + c] += ri * (ov[i * n * n + a * n + c] + ov[i * n * n + c * n + a]);
            }
            var grad = Dense.Scale(Dense.Mul(gsum, xv, n, n, k), 1.0 / (2 * m));
            Close.Check(grad, H(PreconditionedSensing.Gradient(ops, y, x)), 1e-10, 1e-10);
            // f(X) = (1/4m) Σ rᵢ² and its gradient by autodiff agree with the closed form.
            var xg = x.Detach().RequiresGrad_();
            var f = (ops.Reshape(m, n * n).MatMul(xg.MatMul(xg.T).Reshape(n * n, 1)).Squeeze(-1) - y).Pow(2).Sum() / (4.0 * m);
            var auto = Autograd.Grad([f], [xg])[0];
            Close.Check(H(auto), H(PreconditionedSensing.Gradient(ops, y, x)), 1e-10, 1e-10);
            const double eta = 0.3, lambda = 0.2;
            var pre = Dense.Add(Dense.Mul(Dense.T(xv, n, k), xv, k, n, k), Dense.Scale(Dense.Eye(k), lambda));
            var step = Dense.Add(xv, Dense.Scale(Dense.T(SolveDense(pre, Dense.T(grad, n, k), k, n), k, n), eta), -1);
            Close.Check(step, H(PreconditionedSensing.Step(ops, y, x, eta, lambda)), 1e-10, 1e-10);
            Close.Check(Dense.Add(xv, Dense.Scale(grad, eta), -1), H(PreconditionedSensing.Step(ops, y, x, eta, null)), 1e-12, 1e-12);
        }
    }

    [Fact]
    public void Scaled_gd_recovers_the_planted_matrix_in_steps_independent_of_the_condition_number_unlike_gd()
    {
        int Steps(double kappa, bool precondition)
        {
            var (ops, y, target, start) = Sensing(kappa, 7);
            var (_, errors) = PreconditionedSensing.Run(ops, y, target, start, precondition ? 0.5 : 0.5 / kappa, precondition ? 1.0 : null, 2000, 1e-6);
            Assert.True(errors[^1] < 1e-6, $"kappa {kappa}, preconditioned {precondition}: error {errors[^1]} after {errors.Count - 1} steps");
            return errors.Count - 1;
        }
        int s1 = Steps(1, true), s10 = Steps(10, true), g1 = Steps(1, false), g10 = Steps(10, false);
        Assert.True(s10 < 2 * s1, $"ScaledGD: {s1} steps at kappa 1, {s10} at kappa 10");
        Assert.True(g10 > 4 * g1, $"GD: {g1} steps at kappa 1, {g10} at kappa 10");
        Assert.Throws<ArgumentOutOfRangeException>(() => PreconditionedSensing.Step(T([1, 2, 3, 4], 1, 2, 2), T([1], 1), T([1, 1], 2, 1), 0, null));
        Assert.Throws<ShapeMismatchException>(() => PreconditionedSensing.Gradient(T([1, 2, 3, 4], 1, 2, 2), T([1, 2], 2), T([1, 1], 2, 1)));
    }

    // ---------- Optimal Online Generalized Linear Regression with Stochastic Noise ----------

    [Fact]
    public void Online_ridge_sherman_morrison_equals_the_batch_ridge_solve_after_every_round()
    {
        for (int seed = 0; seed < 5; seed++)
        {
            var r = new Random(seed);
            int d = r.Next(1, 5), rounds = 15;
            double lambda = 0.1 + r.NextDouble();
            var learner = new OnlineRidge(d, lambda);
            var xs = new List<double>(); var ys = new List<double>();
            for (int t = 0; t < rounds; t++)
            {
                var x = Dense.Uniform(r, d);
                double y = Dense.Uniform(r, 1)[0];
                learner.Update(T(x, d), y);
                xs.AddRange(x); ys.Add(y);
                int nt = t + 1;
                var gram = Dense.Add(Dense.Mul(Dense.T(xs.ToArray(), nt, d), xs.ToArray(), d, nt, d), Dense.Scale(Dense.Eye(d), lambda));
                var xty = Dense.Mul(Dense.T(xs.ToArray(), nt, d), ys.ToArray(), d, nt, 1);
                Close.Check(SolveDense(gram, xty, d, 1), H(learner.Theta), 1e-10, 1e-10, $"seed {seed} round {t}");
                Close.Check(SolveDense(gram, Dense.Eye(d), d, d), H(learner.InverseGram), 1e-10, 1e-10);
            }
        }
        var l = new OnlineRidge(2, 1);
        Assert.Throws<ShapeMismatchException>(() => l.Update(T([1, 2, 3], 3), 1));
        Assert.Throws<ArgumentException>(() => l.Update(T([1, 2], 2), double.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => new OnlineRidge(2, 0));
    }

    [Fact]
    public void Online_ridge_regret_grows_logarithmically_in_the_horizon()
    {
        // Regret against the best fixed θ in hindsight, Σ (ŷₜ - yₜ)² - min_θ Σ (xₜᵀθ - yₜ)²: ~ σ² d log T, so ten
        // times the rounds adds a constant, far below ten times the regret.
        const int d = 3;
        var g = new Generator(9);
        var theta = T([1, -0.5, 0.25], d);
        double Regret(int rounds)
        {
            var x = Tensor.Randn(new Shape(rounds, d), g, dtype: DType.Float64);
            var y = x.MatMul(theta.Unsqueeze(-1)).Squeeze(-1) + Tensor.Randn(new Shape(rounds), g, std: 0.5, dtype: DType.Float64);
            var learner = new OnlineRidge(d, 1);
            var yv = H(y);
            double loss = 0;
            for (int t = 0; t < rounds; t++)
            {
                var xt = x.Narrow(0, t, 1).Squeeze(0);
                loss += Math.Pow(learner.Predict(xt) - yv[t], 2);
                learner.Update(xt, yv[t]);
            }
            return loss - Math.Pow(LeastSquares.Residual(x, y, LeastSquares.Solve(x, y)), 2);
        }
        double shortRun = Enumerable.Range(0, 4).Average(_ => Regret(100)), longRun = Enumerable.Range(0, 4).Average(_ => Regret(1000));
        Assert.True(longRun > shortRun && longRun < 3 * shortRun, $"regret {shortRun} at T = 100, {longRun} at T = 1000");
    }

    // ---------- Tackling Interference Induced by Data Training Loops in A/B Tests ----------

    [Fact]
    public void Ab_weights_reproduce_each_arms_distribution_on_a_discrete_example()
    {
        for (int seed = 0; seed < 20; seed++)
        {
            var r = new Random(seed);
            int k = r.Next(2, 8);
            double p = 0.1 + 0.8 * r.NextDouble();
            var pt = Dense.Uniform(r, k, 0.05, 1); var pc = Dense.Uniform(r, k, 0.05, 1);
            pt = Dense.Scale(pt, 1 / pt.Sum()); pc = Dense.Scale(pc, 1 / pc.Sum());
            var pool = Enumerable.Range(0, k).Select(x => p * pt[x] + (1 - p) * pc[x]).ToArray();
            var e = Enumerable.Range(0, k).Select(x => p * pt[x] / pool[x]).ToArray();   // Bayes: P(Z = 1 | x)
            var f = Dense.Uniform(r, k, -3, 3);
            var (wt, wc) = WeightedTraining.Weights(T(e, k), p);
            var wtv = H(wt); var wcv = H(wc);
            Assert.Equal(Enumerable.Range(0, k).Sum(x => pt[x] * f[x]), Enumerable.Range(0, k).Sum(x => pool[x] * wtv[x] * f[x]), 1e-12);
            Assert.Equal(Enumerable.Range(0, k).Sum(x => pc[x] * f[x]), Enumerable.Range(0, k).Sum(x => pool[x] * wcv[x] * f[x]), 1e-12);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => WeightedTraining.Weights(T([0.5], 1), 1));
        Assert.Throws<ArgumentException>(() => WeightedTraining.Weights(T([1.5], 1), 0.5));
    }

    [Fact]
    public void Ab_weighted_fit_recovers_each_arms_model_where_pooling_is_biased()
    {
        // Users answer alike in both arms (y = x² + noise), but the arms show different x: treatment x ~ N(1, 1),
        // control x ~ N(0, 1). The best linear model of each arm has slope 2μ (2 and 0); pooled data give slope 1.
        // The weights with the exact e(x) make each arm's fit on all the pooled data match its own distribution.
        const int nt = 3000, nc = 3000;
        var g = new Generator(13);
        var x = Tensor.Concat([Tensor.Randn(new Shape(nt), g, mean: 1, dtype: DType.Float64), Tensor.Randn(new Shape(nc), g, dtype: DType.Float64)]);
        var y = x.Pow(2) + Tensor.Randn(new Shape(nt + nc), g, std: 0.1, dtype: DType.Float64);
        const double p = 0.5;
        Tensor Density(double mu) => (-(x - mu).Pow(2) / 2.0).Exp();
        var e = Density(1) * p / (Density(1) * p + Density(0) * (1 - p));
        var design = Tensor.Stack([x.OnesLike(), x], 1);
        var (bt, bc) = WeightedTraining.Fit(design, y, e, p);
        double pooled = H(LeastSquares.Solve(design, y))[1];
        Assert.True(Math.Abs(H(bt)[1] - 2) < 0.2 && Math.Abs(H(bc)[1]) < 0.2, $"weighted slopes {H(bt)[1]} (treatment, 2), {H(bc)[1]} (control, 0)");
        Assert.True(Math.Abs(pooled - 1) < 0.2, $"pooled slope {pooled} (1)");
    }
    // ---------- Weighting vectors for machine learning (magnitude) ----------

    [Fact]
    public void Weighting_vectors_match_the_closed_forms_on_a_line_and_minimize_the_quadratic_form()
    {
        for (int seed = 0; seed < 15; seed++)
        {
            var r = new Random(seed);
            int n = r.Next(1, 9);
            double h = 0.1 + r.NextDouble(), t = 0.2 + 2 * r.NextDouble(), q = Math.Exp(-t * h);
            var pts = T(Enumerable.Range(0, n).Select(i => i * h).ToArray(), n, 1);
            var w = H(Magnitude.WeightingVector(pts, t));
            // Equally spaced points on a line: ends 1/(1 + q), interior (1 - q)/(1 + q); n = 1 gives 1.
            var expected = Enumerable.Range(0, n).Select(i => n == 1 ? 1 : i == 0 || i == n - 1 ? 1 / (1 + q) : (1 - q) / (1 + q)).ToArray();
            Close.Check(expected, w, 1e-10, 1e-10, $"n = {n}");
            Assert.Equal(n == 1 ? 1 : 2 / (1 + q) + (n - 2) * (1 - q) / (1 + q), Magnitude.Of(pts, t), 1e-10);

            // Random points: Z transcribed, and v = w / Σw minimizes vᵀZv over Σv = 1 (every feasible direction raises it).
            int m = r.Next(2, 8), dim = r.Next(1, 4);
            var x = Dense.Uniform(r, m * dim, -2, 2);
            var z = new double[m * m];
            for (int i = 0; i < m; i++)
                for (int j = 0; j < m; j++)
                    z[i * m + j] = Math.Exp(-t * Math.Sqrt(Enumerable.Range(0, dim).Sum(c => Math.Pow(x[i * dim + c] - x[j * dim + c], 2))));
            Close.Check(z, H(Magnitude.Similarity(T(x, m, dim), t)), 1e-12, 1e-12);
            var wv = H(Magnitude.WeightingVector(T(x, m, dim), t));
            Close.Check(SolveDense(z, Enumerable.Repeat(1.0, m).ToArray(), m, 1), wv, 1e-9, 1e-9);
            var v = Dense.Scale(wv, 1 / wv.Sum());
            double Quad(double[] a) => Dense.Mul(a, Dense.Mul(z, a, m, m, 1), 1, m, 1)[0];
            for (int k = 0; k < 10; k++)
            {
                var dir = Dense.Uniform(r, m);
                double mean = dir.Average();
                dir = dir.Select(e => 0.3 * (e - mean)).ToArray();
                Assert.True(Quad(Dense.Add(v, dir)) >= Quad(v) - 1e-12);
            }
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => Magnitude.Similarity(T([0, 1], 2, 1), 0));
    }

    [Fact]
    public void Weighting_vector_is_largest_on_the_boundary_of_a_grid()
    {
        const int side = 7;
        var pts = Enumerable.Range(0, side * side).SelectMany(i => new double[] { i / side, i % side }).ToArray();
        var w = H(Magnitude.WeightingVector(T(pts, side * side, 2), 1.5));
        bool Boundary(int i) => i / side is 0 or side - 1 || i % side is 0 or side - 1;
        double edge = Enumerable.Range(0, side * side).Where(Boundary).Min(i => w[i]);
        double inside = Enumerable.Range(0, side * side).Where(i => !Boundary(i)).Max(i => w[i]);
        Assert.True(edge > inside, $"smallest boundary weight {edge}, largest interior weight {inside}");
    }

    // ---------- Beyond ell_1 sparse coding in V1 ----------

    [Fact]
    public void Sparse_coding_proximal_maps_are_the_global_minimizers_of_their_scalar_problems()
    {
        var r = new Random(17);
        foreach (var penalty in Enum.GetValues<SparsePenalty>())
            for (int c = 0; c < 40; c++)
            {
                double x = r.NextDouble() * 6 - 3, lambda = r.NextDouble() * 1.5;
                double G(double z) => penalty switch { SparsePenalty.L1 => Math.Abs(z), SparsePenalty.LHalf => Math.Sqrt(Math.Abs(z)), _ => z == 0 ? 0 : 1 };
                double F(double z) => 0.5 * (z - x) * (z - x) + lambda * G(z);
                double prox = SparseCoding.Prox(T([x], 1), lambda, penalty).Item();
                // Brute force: a 1e-4 grid over [-4, 4] plus z = 0 and z = x, then the best point refined by a fine grid.
                double best = Math.Min(F(0), F(x));
                for (double z = -4; z <= 4; z += 1e-4) best = Math.Min(best, F(z));
                Assert.True(F(prox) <= best + 1e-7, $"{penalty} x = {x} λ = {lambda}: prox {prox} has F = {F(prox)}, grid minimum {best}");
            }
        Assert.Throws<ArgumentOutOfRangeException>(() => SparseCoding.Prox(T([1], 1), -1, SparsePenalty.L1));
    }

    [Fact]
    public void Sparse_coding_descends_and_trades_sparsity_for_reconstruction()
    {
        var g = new Generator(23);
        const int dim = 16, atoms = 32, batch = 8;
        var d = Tensor.Randn(new Shape(dim, atoms), g, dtype: DType.Float64);
        d = d / d.Norm(axes: [0], keepDim: true);
        // Planted codes with 3 active atoms per signal, plus a little noise.
        var mask = (Tensor.Rand(new Shape(atoms, batch), g, dtype: DType.Float64) < 3.0 / atoms).To(DType.Float64);
        var z0 = mask * Tensor.Randn(new Shape(atoms, batch), g, std: 2, dtype: DType.Float64);
        var x = d.MatMul(z0) + Tensor.Randn(new Shape(dim, batch), g, std: 0.01, dtype: DType.Float64);
        foreach (var penalty in Enum.GetValues<SparsePenalty>())
        {
            var (_, objectives) = SparseCoding.Encode(d, x, 0.1, penalty, 200);
            for (int t = 1; t < objectives.Count; t++)
                Assert.True(objectives[t] <= objectives[t - 1] * (1 + 1e-12) + 1e-12, $"{penalty}: objective rose at step {t}: {objectives[t - 1]} -> {objectives[t]}");
            var (zs, _) = SparseCoding.Encode(d, x, 0.01, penalty, 300);
            var (zl, _) = SparseCoding.Encode(d, x, 1.0, penalty, 300);
            double Error(Tensor z) => (x - d.MatMul(z)).Pow(2).Sum().Item();
            double Active(Tensor z) => (z.Abs() > 0).To(DType.Float64).Sum().Item();
            Assert.True(Active(zl) < Active(zs) && Error(zl) > Error(zs), $"{penalty}: λ = 0.01 gives {Active(zs)} atoms, error {Error(zs)}; λ = 1 gives {Active(zl)}, {Error(zl)}");
        }
    }

    // ---------- mini-vec2vec: linear alignment ----------

    [Fact]
    public void Procrustes_is_optimal_and_recovers_a_planted_rotation_and_permutation()
    {
        for (int seed = 0; seed < 6; seed++)
        {
            var g = new Generator((ulong)seed + 50);
            int n = 120, d = 6;
            var x = Tensor.Randn(new Shape(n, d), g, dtype: DType.Float64);
            var (rot, _) = Tensor.Randn(new Shape(d, d), g, dtype: DType.Float64).Qr();
            var y = x.MatMul(rot) + Tensor.Randn(new Shape(n, d), g, std: 0.01, dtype: DType.Float64);
            var w = Procrustes.Fit(x, y);
            Close.Check(Dense.Eye(d), H(w.T.MatMul(w)), 1e-10, 1e-10, "W is orthogonal");
            // The optimality condition: Wᵀ Xᵀ Y is symmetric positive semidefinite; and no other orthogonal map fits better.
            var s = H(w.T.MatMul(x.T.MatMul(y)));
            Close.Check(s, Dense.T(s, d, d), 1e-9, 1e-9, "WᵀXᵀY symmetric");
            Assert.True(Dense.Eigh(s, d).W.Min() >= -1e-9);
            double fit = (x.MatMul(w) - y).Norm().Item();
            for (int k = 0; k < 10; k++)
            {
                var (q, _) = (rot + Tensor.Randn(new Shape(d, d), g, std: 0.05, dtype: DType.Float64)).Qr();
                Assert.True((x.MatMul(q) - y).Norm().Item() >= fit - 1e-12);
            }
            Assert.True((w - rot).Abs().Amax().Item() < 0.01);

            // Unpaired: the target rows shuffled; refinement from a perturbed rotation finds the map and the pairing.
            var perm = Tensor.RandPerm(n, g);
            var shuffled = y.IndexSelect(0, perm);
            var (start, _) = (rot + Tensor.Randn(new Shape(d, d), g, std: 0.1, dtype: DType.Float64)).Qr();
            var (refined, matches) = Procrustes.Refine(x, shuffled, start, 5);
            var inverse = new long[n];
            var pv = perm.ToArray<long>();
            for (int i = 0; i < n; i++) inverse[pv[i]] = i;
            Assert.True(matches.Where((m, i) => m == inverse[i]).Count() >= 0.95 * n, $"seed {seed}: {matches.Where((m, i) => m == inverse[i]).Count()} of {n} rows matched");
            Assert.True((refined - rot).Abs().Amax().Item() < 0.01);
        }
        Assert.Throws<ShapeMismatchException>(() => Procrustes.Fit(T([1, 2], 1, 2), T([1, 2], 2, 1)));
    }

    // ---------- Data-Efficient Learning via Clustering-Based Sensitivity Sampling ----------

    [Fact]
    public void Sensitivity_sampling_is_unbiased_and_beats_uniform_on_a_hoelder_loss()
    {
        var g = new Generator(61);
        // Three blobs, one small and far: k-means finds them, and a loss that grows with the distance to a reference
        // point (Hölder in the embedding) is dominated by the small blob that uniform sampling rarely sees.
        var blobs = new[] { (Center: 0.0, Count: 200), (Center: 5.0, Count: 150), (Center: 40.0, Count: 10) };
        var x = Tensor.Concat(blobs.Select(b => Tensor.Randn(new Shape(b.Count, 2), g, mean: b.Center, std: 0.5, dtype: DType.Float64)).ToArray(), 0);
        int n = x.Shape[0];
        var (centers, assign) = SensitivitySampling.KMeans(x, 3, 10, g);
        for (int b = 0, start = 0; b < blobs.Length; start += blobs[b].Count, b++)
            Assert.Single(assign.Skip(start).Take(blobs[b].Count).Distinct());
        var p = SensitivitySampling.Probabilities(x, centers, assign);
        Assert.Equal(1, p.Sum(), 1e-12);
        // The transcription: ½ d²/Σd² + ½ / (k |C|).
        var xv = H(x); var cv = H(centers);
        var d2 = Enumerable.Range(0, n).Select(i => Math.Pow(xv[2 * i] - cv[2 * assign[i]], 2) + Math.Pow(xv[2 * i + 1] - cv[2 * assign[i] + 1], 2)).ToArray();
        Close.Check(Enumerable.Range(0, n).Select(i => 0.5 * d2[i] / d2.Sum() + 0.5 / (3 * assign.Count(a => a == assign[i]))).ToArray(), p, 1e-9, 1e-12);

        var loss = Enumerable.Range(0, n).Select(i => Math.Sqrt(xv[2 * i] * xv[2 * i] + xv[2 * i + 1] * xv[2 * i + 1])).ToArray();
        double total = loss.Sum();
        const int m = 30, draws = 2000;
        // Per-draw variance of the estimate, exact: (1/m)(Σ ℓ²/p - (Σℓ)²).
        double variance = (loss.Select((l, i) => l * l / p[i]).Sum() - total * total) / m;
        double uniformVariance = (loss.Sum(l => l * l) * n - total * total) / m;
        Assert.True(variance < uniformVariance / 4, $"sensitivity variance {variance}, uniform {uniformVariance}");
        double mean = Enumerable.Range(0, draws).Average(_ =>
        {
            var (idx, w) = SensitivitySampling.Sample(p, m, g);
            return idx.Select((i, j) => w[j] * loss[i]).Sum();
        });
        Assert.True(Math.Abs(mean - total) < 4 * Math.Sqrt(variance / draws), $"mean estimate {mean}, total {total}");
        Assert.Throws<ArgumentException>(() => SensitivitySampling.Sample([0.5, 0.4], 3, g));
        Assert.Throws<ArgumentException>(() => SensitivitySampling.KMeans(x, n + 1, 1, g));
    }

    // ---------- An Analysis of Causal Effect Estimation using Outcome Invariant Data Augmentation ----------

    [Fact]
    public void Ivl_regression_matches_its_closed_form_and_limits()
    {
        for (int seed = 0; seed < 10; seed++)
        {
            var r = new Random(seed);
            int d = r.Next(1, 4), q = d + r.Next(0, 3), n = q + 3 + r.Next(0, 15);
            var x = Dense.Uniform(r, n * d); var y = Dense.Uniform(r, n); var gm = Dense.Uniform(r, n * q);
            // Π = G (GᵀG)⁻¹ Gᵀ, then β_α = (Xᵀ(I + αΠ)X)⁻¹ Xᵀ(I + αΠ)Y and β_∞ = (XᵀΠX)⁻¹ XᵀΠY.
            var pi = Dense.Mul(gm, SolveDense(Dense.Mul(Dense.T(gm, n, q), gm, q, n, q), Dense.T(gm, n, q), q, n), n, q, n);
            double[] Beta(double alpha, double own)
            {
                var m = Dense.Add(Dense.Scale(Dense.Eye(n), own), Dense.Scale(pi, alpha));
                var xt = Dense.T(x, n, d);
                return SolveDense(Dense.Mul(Dense.Mul(xt, m, d, n, n), x, d, n, d), Dense.Mul(Dense.Mul(xt, m, d, n, n), y, d, n, 1), d, 1);
            }
            double a = 5 * r.NextDouble();
            Close.Check(Beta(a, 1), H(IvlRegression.Fit(T(x, n, d), T(y, n), T(gm, n, q), a)), 1e-8, 1e-8, $"seed {seed} α = {a}");
            Close.Check(H(LeastSquares.Solve(T(x, n, d), T(y, n))), H(IvlRegression.Fit(T(x, n, d), T(y, n), T(gm, n, q), 0)), 1e-10, 1e-10);
            var iv = Beta(1, 0);
            Close.Check(iv, H(IvlRegression.Fit(T(x, n, d), T(y, n), T(gm, n, q), double.PositiveInfinity)), 1e-7, 1e-8);
            Close.Check(iv, H(IvlRegression.Fit(T(x, n, d), T(y, n), T(gm, n, q), 1e7)), 1e-4, 1e-5, "large α tends to 2SLS");
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => IvlRegression.Fit(T([1, 2], 2, 1), T([1, 2], 2), T([1, 2], 2, 1), -1));
    }

    [Fact]
    public void Ivl_regression_removes_hidden_confounding_along_the_augmented_direction()
    {
        // Linear SCM: hidden H drives both features and Y; Y = X0₁ + 2H + ε depends on the first feature only. The
        // augmentation adds g to the second feature, which leaves the outcome invariant (β ⊥ e₂). The coefficient of the
        // second feature is 0; its population bias shrinks from 2/3 (OLS) to 2/11 (OLS on augmented data, α = 0) to
        // 2/19 (IVL, α = 1) to 0 (2SLS, sampling sd about 0.015 at this n).
        const int n = 8000;
        var g = new Generator(71);
        var h = Tensor.Randn(new Shape(n), g, dtype: DType.Float64);
        var x0 = Tensor.Stack([h + Tensor.Randn(new Shape(n), g, dtype: DType.Float64), h + Tensor.Randn(new Shape(n), g, dtype: DType.Float64)], 1);
        var y = x0.Narrow(1, 0, 1).Squeeze(-1) + h * 2.0 + Tensor.Randn(new Shape(n), g, std: 0.1, dtype: DType.Float64);
        var aug = Tensor.Randn(new Shape(n, 1), g, std: 2, dtype: DType.Float64);
        var x = x0 + Tensor.Concat([aug.ZerosLike(), aug], 1);
        double Bias(Tensor beta) => Math.Abs(H(beta)[1]);
        double raw = Bias(LeastSquares.Solve(x0, y));
        double da = Bias(IvlRegression.Fit(x, y, aug, 0)), ivl = Bias(IvlRegression.Fit(x, y, aug, 1)), iv = Bias(IvlRegression.Fit(x, y, aug, double.PositiveInfinity));
        Assert.True(raw > da && da > ivl && ivl > iv && iv < 0.05, $"|bias| of the augmented coefficient: OLS {raw}, DA {da}, IVL(1) {ivl}, 2SLS {iv}");
    }

    // ---------- Project and Probe ----------

    [Fact]
    public void Project_and_probe_directions_are_orthonormal_the_first_is_the_source_predictor_and_the_probe_fits_them()
    {
        for (int seed = 0; seed < 8; seed++)
        {
            var g = new Generator((ulong)seed + 80);
            int n = 60, d = 6, k = 1 + seed % d;
            var x = Tensor.Randn(new Shape(n, d), g, dtype: DType.Float64);
            var y = (x.MatMul(Tensor.Randn(new Shape(d, 1), g, dtype: DType.Float64)).Squeeze(-1) + Tensor.Randn(new Shape(n), g, dtype: DType.Float64)).Sign();
            var v = ProjectAndProbe.Project(x, y, k, ridge: 0);
            Close.Check(Dense.Eye(k), H(v.T.MatMul(v)), 1e-10, 1e-10, $"VᵀV, k = {k}");
            var w = H(LeastSquares.Solve(x, y));
            Close.Check(Dense.Scale(w, 1 / Math.Sqrt(w.Sum(e => e * e))), H(v.Narrow(1, 0, 1).Squeeze(-1)), 1e-9, 1e-9, "v₁ is the normalized source predictor");
            // A target that is exactly linear in the projected features is fitted exactly by the probe.
            var c = Tensor.Randn(new Shape(k + 1), g, dtype: DType.Float64);
            var xt = Tensor.Randn(new Shape(20, d), g, dtype: DType.Float64);
            var yt = ProjectAndProbe.Predict(xt, v, c);
            Close.Check(H(c), H(ProjectAndProbe.Probe(xt, yt, v, ridge: 0)), 1e-9, 1e-9, "probe");
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => ProjectAndProbe.Project(T([1, 2], 1, 2), T([1], 1), 3));
    }

    // ---------- Predicting Rare Events by Shrinking Towards Proportional Odds (PRESTO) ----------

    [Fact]
    public void Presto_probabilities_likelihood_and_prox_match_their_transcriptions()
    {
        for (int seed = 0; seed < 10; seed++)
        {
            var r = new Random(seed);
            int n = r.Next(1, 8), p = r.Next(1, 4), k = r.Next(2, 5);
            var x = Dense.Uniform(r, n * p); var alpha = Dense.Uniform(r, k - 1); var psi = Dense.Uniform(r, (k - 1) * p, -0.5, 0.5);
            var y = Enumerable.Range(0, n).Select(_ => (long)r.Next(k)).ToArray();
            // F_j = σ(α_j + x·Σ_{i≤j} ψ_i), P(y = j) = F_j − F_{j−1}.
            var expected = new double[n * k];
            for (int i = 0; i < n; i++)
            {
                double prev = 0;
                for (int j = 0; j < k; j++)
                {
                    double f = 1;
                    if (j < k - 1)
                    {
                        double eta = alpha[j];
                        for (int c = 0; c < p; c++) eta += x[i * p + c] * Enumerable.Range(0, j + 1).Sum(q => psi[q * p + c]);
                        f = 1 / (1 + Math.Exp(-eta));
                    }
                    expected[i * k + j] = f - prev;
                    prev = f;
                }
            }
            var probs = ProportionalOddsShrinkage.CategoryProbabilities(T(x, n, p), T(alpha, k - 1), T(psi, k - 1, p));
            Close.Check(expected, H(probs), 1e-12, 1e-12);
            double nll = -Enumerable.Range(0, n).Average(i => Math.Log(Math.Max(1e-12, expected[i * k + y[i]])));
            Assert.Equal(nll, ProportionalOddsShrinkage.NegativeLogLikelihood(T(x, n, p), Tensor.FromArray(y), T(alpha, k - 1), T(psi, k - 1, p)).Item(), 1e-10);
            // The prox: the first row untouched, the rest soft-thresholded (the minimizer of ½(z − v)² + t|z| per entry).
            double t = r.NextDouble() * 0.3;
            var prox = H(ProportionalOddsShrinkage.Prox(T(psi, k - 1, p), t));
            var soft = psi.Select((v, i) => i < p ? v : Math.Sign(v) * Math.Max(0, Math.Abs(v) - t)).ToArray();
            Close.Check(soft, prox, 1e-15, 1e-15);
        }
        Assert.Throws<ArgumentException>(() => ProportionalOddsShrinkage.NegativeLogLikelihood(T([1], 1, 1), Tensor.FromArray(new long[] { 2 }), T([0], 1), T([0], 1, 1)));
    }

    [Fact]
    public void Presto_likelihood_passes_gradcheck()
    {
        var r = new Random(4);
        var x = T(Dense.Uniform(r, 5 * 2), 5, 2);
        var y = Tensor.FromArray(new long[] { 0, 1, 2, 1, 0 });
        var res = GradCheck.Run(v => ProportionalOddsShrinkage.NegativeLogLikelihood(x, y, v[0], v[1]), [T([-1, 1], 2), T(Dense.Uniform(r, 4, -0.3, 0.3), 2, 2)]);
        Assert.True(res.Passed, res.ToString());
    }

    [Fact]
    public void Presto_shrinks_to_proportional_odds_as_lambda_grows_and_frees_the_thresholds_at_zero()
    {
        // Three ordered categories, the last rare; the rare threshold's coefficients differ a little from the common one.
        const int n = 400;
        var g = new Generator(91);
        var x = Tensor.Randn(new Shape(n, 2), g, dtype: DType.Float64);
        var beta = T([1, -1, 1.5, -1], 2, 2);
        var f = (x.MatMul(beta.T) + T([0, 2.5], 2)).Sigmoid();
        var u = Tensor.Rand(new Shape(n), g, dtype: DType.Float64).Unsqueeze(-1);
        var y = (u > f).To(DType.Int64).Sum(1);
        var (_, psiBig) = ProportionalOddsShrinkage.Fit(x, y, 3, 10, 300);
        var (aZero, psiZero) = ProportionalOddsShrinkage.Fit(x, y, 3, 0, 300);
        var (aMid, psiMid) = ProportionalOddsShrinkage.Fit(x, y, 3, 0.01, 300);
        // λ large: every difference is exactly 0 (proportional odds); λ = 0 frees them; in between they shrink.
        Assert.All(H(psiBig.Narrow(0, 1, 1)), v => Assert.Equal(0, v));
        double Gap(Tensor psi) => psi.Narrow(0, 1, 1).Abs().Sum().Item();
        Assert.True(Gap(psiZero) > Gap(psiMid) && Gap(psiMid) >= 0, $"|ψ₁|: λ = 0 {Gap(psiZero)}, λ = 0.01 {Gap(psiMid)}");
        // The unpenalized fit has the best in-sample likelihood, and its gradient vanishes (it converged).
        double nllZero = ProportionalOddsShrinkage.NegativeLogLikelihood(x, y, aZero, psiZero).Item();
        Assert.True(nllZero <= ProportionalOddsShrinkage.NegativeLogLikelihood(x, y, aMid, psiMid).Item() + 1e-12);
        var a = aZero.Detach().RequiresGrad_(); var s = psiZero.Detach().RequiresGrad_();
        var grads = Autograd.Grad([ProportionalOddsShrinkage.NegativeLogLikelihood(x, y, a, s)], [a, s]);
        Assert.True(grads.Max(gr => gr.Abs().Amax().Item()) < 1e-3, "λ = 0 fit has not converged");
        Assert.Throws<ArgumentException>(() => ProportionalOddsShrinkage.Fit(x, y.ZerosLike(), 3, 0, 1));
    }

    // ---------- Swivel ----------

    [Fact]
    public void Swivel_pmi_and_piecewise_loss_match_their_transcriptions()
    {
        for (int seed = 0; seed < 10; seed++)
        {
            var r = new Random(seed);
            int m = r.Next(1, 6), n = r.Next(1, 6), d = r.Next(1, 4);
            var x = Enumerable.Range(0, m * n).Select(_ => r.NextDouble() < 0.4 ? 0 : (double)r.Next(1, 20)).ToArray();
            for (int i = 0; i < m; i++) x[i * n + i % n] += 1;            // every row non-empty
            for (int j = 0; j < n; j++) x[(j % m) * n + j] += 1;          // every column non-empty
            var w = Dense.Uniform(r, m * d); var c = Dense.Uniform(r, n * d);
            double total = x.Sum();
            double expected = 0;
            var pmi = new double[m * n];
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double row = Enumerable.Range(0, n).Sum(q => x[i * n + q]), col = Enumerable.Range(0, m).Sum(q => x[q * n + j]);
                    double xij = x[i * n + j];
                    pmi[i * n + j] = Math.Log(xij > 0 ? xij : 1) + Math.Log(total) - Math.Log(row) - Math.Log(col);
                    double pred = Enumerable.Range(0, d).Sum(q => w[i * d + q] * c[j * d + q]);
                    expected += xij > 0
                        ? 0.5 * (0.1 + 0.25 * Math.Sqrt(xij)) * Math.Pow(pred - pmi[i * n + j], 2)
                        : Math.Log(1 + Math.Exp(pred - pmi[i * n + j]));
                }
            Close.Check(pmi, H(Swivel.Pmi(T(x, m, n))), 1e-12, 1e-12);
            Assert.Equal(expected, Swivel.Loss(T(w, m, d), T(c, n, d), T(x, m, n)).Item(), 1e-9);
        }
        // The unobserved piece: log 2 at pmi*, vanishing for under-estimates, linear for over-estimates.
        var counts = T([0, 4, 4, 4], 2, 2);
        double star = Swivel.Pmi(counts).ToArray<double>()[0];
        double Cell(double pred) => Swivel.ShardLoss(T([pred], 1, 1).Expand(2, 1), T([1], 1, 1).Expand(2, 1), counts, [0], [0]).Item();
        Assert.Equal(Math.Log(2), Cell(star), 1e-12);
        Assert.True(Cell(star - 30) < 1e-12);
        Assert.Equal(30, Cell(star + 30), 1e-9);
        Assert.Throws<ArgumentException>(() => Swivel.Pmi(T([0, 0, 1, 1], 2, 2)));
    }

    [Fact]
    public void Swivel_shard_gradients_sum_to_the_full_gradient_and_the_loss_passes_gradcheck()
    {
        var g = new Generator(101);
        const int m = 7, n = 5, d = 3;
        var counts = (Tensor.Rand(new Shape(m, n), g, dtype: DType.Float64) * 6).Floor() + Tensor.Eye(m, n, DType.Float64);
        var w = Tensor.Randn(new Shape(m, d), g, dtype: DType.Float64).RequiresGrad_();
        var c = Tensor.Randn(new Shape(n, d), g, dtype: DType.Float64).RequiresGrad_();
        var full = Autograd.Grad([Swivel.Loss(w, c, counts)], [w, c]);
        var shards = Swivel.Shards(m, n, 2, g);
        Assert.Equal(4, shards.Count);
        var gw = Tensor.Zeros(new Shape(m, d), DType.Float64); var gc = Tensor.Zeros(new Shape(n, d), DType.Float64);
        foreach (var (rows, cols) in shards)
        {
            var part = Autograd.Grad([Swivel.ShardLoss(w, c, counts, rows, cols)], [w, c]);
            gw = gw + part[0]; gc = gc + part[1];
        }
        Close.Check(H(full[0]), H(gw), 1e-12, 1e-12);
        Close.Check(H(full[1]), H(gc), 1e-12, 1e-12);
        var res = GradCheck.Run(v => Swivel.Loss(v[0], v[1], counts), [w.Detach(), c.Detach()]);
        Assert.True(res.Passed, res.ToString());
    }

    // ---------- ReTaSA ----------

    [Fact]
    public void Retasa_smoother_and_tikhonov_solution_match_their_transcriptions()
    {
        for (int seed = 0; seed < 8; seed++)
        {
            var r = new Random(seed);
            int n = r.Next(1, 9), p = r.Next(1, 3);
            var x = Dense.Uniform(r, n * p); var eta = Dense.Uniform(r, n, 0.2, 3);
            double h = 0.2 + r.NextDouble(), alpha = 0.01 + r.NextDouble();
            var k = new double[n * n];
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < n; j++) k[i * n + j] = Math.Exp(-Enumerable.Range(0, p).Sum(c => Math.Pow(x[i * p + c] - x[j * p + c], 2)) / (2 * h * h));
                double s = Enumerable.Range(0, n).Sum(j => k[i * n + j]);
                for (int j = 0; j < n; j++) k[i * n + j] /= s;
            }
            Close.Check(k, H(TargetShift.Smoother(T(x, n, p), h)), 1e-12, 1e-12);
            var kt = Dense.T(k, n, n);
            var omega = SolveDense(Dense.Add(Dense.Mul(kt, k, n, n, n), Dense.Scale(Dense.Eye(n), alpha)), Dense.Mul(kt, eta, n, n, 1), n, 1);
            Close.Check(omega, H(TargetShift.DensityRatio(T(x, n, p), T(eta, n), h, alpha)), 1e-8, 1e-8);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => TargetShift.DensityRatio(T([0, 1], 2, 1), T([1, 1], 2), 0.5, 0));
    }

    [Fact]
    public void Retasa_weights_make_the_source_risk_unbiased_and_recover_the_label_density_ratio()
    {
        // Exact: on a discrete label distribution the true ω makes E_s[ω ℓ] = E_t[ℓ] for any loss.
        var r = new Random(3);
        var ps = Dense.Uniform(r, 5, 0.1, 1); ps = Dense.Scale(ps, 1 / ps.Sum());
        var pt = Dense.Uniform(r, 5, 0.1, 1); pt = Dense.Scale(pt, 1 / pt.Sum());
        var loss = Dense.Uniform(r, 5, 0, 4);
        var weighted = TargetShift.WeightedRisk(T(loss.Select((l, i) => l * ps[i] * 5).ToArray(), 5), T(pt.Select((v, i) => v / ps[i]).ToArray(), 5)).Item();
        Assert.Equal(Enumerable.Range(0, 5).Sum(i => pt[i] * loss[i]), weighted, 1e-12);

        // Estimated: Y ~ N(0, 1) in the source, N(0.5, 1) in the target, X = Y + N(0, 0.5²), so η(x) is a ratio of
        // N(0.5, 1.25) and N(0, 1.25) densities and ω(y) = exp(0.5 y − 0.125). The constant ω = 1 has relative error
        // √(1 − e^{−1/4}) ≈ 0.47; a pure-Python prototype of the same estimator gave about 0.21.
        const int n = 300;
        var g = new Generator(5);
        var y = Tensor.Randn(new Shape(n), g, dtype: DType.Float64);
        var x = y + Tensor.Randn(new Shape(n), g, std: 0.5, dtype: DType.Float64);
        var eta = ((x - 0.5).Pow(2) * (-1 / 2.5) + x.Pow(2) / 2.5).Exp();
        var omega = TargetShift.DensityRatio(x.Unsqueeze(-1), eta, 0.3, 0.01);
        var truth = (y * 0.5 - 0.125).Exp();
        double rel = ((omega - truth).Norm() / truth.Norm()).Item();
        Assert.True(rel < 0.3, $"relative error of ω: {rel}");
        // The weighted source mean of Y estimates the target mean 0.5 (the source mean is 0).
        double shifted = TargetShift.WeightedRisk(y, omega).Item() / omega.Mean().Item();
        Assert.True(Math.Abs(shifted - 0.5) < 0.15 && Math.Abs(y.Mean().Item()) < 0.15, $"weighted mean of Y {shifted}, unweighted {y.Mean().Item()}");
    }

}

/// <summary>`kiln sketch` with tiny settings: one JSON object with a row per method and size.</summary>
[Collection(nameof(SerialCollection))]
public class SketchVerbTests
{
    [Fact]
    public void Sketch_verb_prints_one_json_object_with_a_row_per_method_and_size()
    {
        var r = CliRun.JsonObject(Kiln.Cli.SketchVerb.Build(), ["sketch", "--rows", "128", "--degree", "4", "--sizes", "16,64", "--trials", "3", "--json"]);
        Assert.Equal(128, r.GetProperty("rows").GetInt32());
        Assert.True(r.GetProperty("exact_residual").GetDouble() > 0);
        var rows = r.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(12, rows.Count);
        Assert.Equal(["gaussian", "srht", "countsketch", "uniform", "leverage", "pivotal"], rows.Select(x => x.GetProperty("method").GetString()).Distinct());
        // Every randomized solution is at least as far from b as the exact one, and 64 rows beat 16 for the sketches.
        Assert.All(rows, x => Assert.True(x.GetProperty("mean_error").GetDouble() >= -1e-9));
        foreach (var m in new[] { "gaussian", "srht", "countsketch" })
        {
            var e = rows.Where(x => x.GetProperty("method").GetString() == m).Select(x => x.GetProperty("median_error").GetDouble()).ToArray();
            Assert.True(e[1] < e[0], $"{m}: {e[0]} at m = 16, {e[1]} at m = 64");
        }
        Assert.Equal(Kiln.Cli.Cli.BadUsage, CliRun.Capture(Kiln.Cli.SketchVerb.Build(), ["sketch", "--methods", "xx", "--json"]).Code);
        Assert.Equal(Kiln.Cli.Cli.BadUsage, CliRun.Capture(Kiln.Cli.SketchVerb.Build(), ["sketch", "--rows", "10", "--sizes", "20", "--json"]).Code);
    }
}
