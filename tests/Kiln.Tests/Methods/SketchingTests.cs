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
                    Assert.All(sv, v => Assert.Equal(1 / Math.Sqrt(rows), Math.Abs(v), 12));
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
            Assert.Equal(d, tau.Sum(), 9);
        }
        // A rank-one matrix (two equal columns): the scores sum to 1, not 2.
        var dup = T([1, 1, 2, 2, 3, 3], 3, 2);
        Assert.Equal(1, H(LeastSquares.LeverageScores(dup)).Sum(), 9);
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
            Assert.Equal(Math.Min(k, positive), p.Sum(), 9);
            // One constant c: p = c s below the cap, and c s ≥ 1 wherever the cap binds.
            var free = Enumerable.Range(0, n).Where(i => s[i] > 0 && p[i] < 1).ToArray();
            if (free.Length == 0) continue;
            double c = p[free[0]] / s[free[0]];
            foreach (int i in Enumerable.Range(0, n))
                if (p[i] < 1) Assert.Equal(c * s[i], p[i], 12);
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
            Assert.Equal((3 * xs[i] * xs[i] - 1) / 2, av[i * 10 + 2], 12);
            Assert.Equal((5 * Math.Pow(xs[i], 3) - 3 * xs[i]) / 2, av[i * 10 + 3], 12);
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
}

/// <summary>`kiln sketch` with tiny settings: one JSON object with a row per method and size.</summary>
[Collection(nameof(SerialCollection))]
public class SketchVerbTests
{
    [Fact]
    public void Sketch_verb_prints_one_json_object_with_a_row_per_method_and_size()
    {
        var root = new System.CommandLine.RootCommand("kiln");
        root.Subcommands.Add(Kiln.Cli.SketchVerb.Build());
        var saved = Console.Out;
        var output = new StringWriter();
        Console.SetOut(output);
        int code;
        try { code = Kiln.Cli.Cli.Run(root, ["sketch", "--rows", "128", "--degree", "4", "--sizes", "16,64", "--trials", "3", "--json"]); }
        finally { Console.SetOut(saved); }
        Assert.Equal(0, code);
        var line = Assert.Single(output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries));
        using var doc = System.Text.Json.JsonDocument.Parse(line);
        var r = doc.RootElement;
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
        Assert.Equal(Kiln.Cli.Cli.BadUsage, Kiln.Cli.Cli.Run(root, ["sketch", "--methods", "xx", "--json"]));
        Assert.Equal(Kiln.Cli.Cli.BadUsage, Kiln.Cli.Cli.Run(root, ["sketch", "--rows", "10", "--sizes", "20", "--json"]));
    }
}
