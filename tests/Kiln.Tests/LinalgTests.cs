using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// Lu, LuFactor, LuSolve, Det, Slogdet, Inverse, Lstsq, MatrixNorm and MatrixPower against independently computed values (cofactor
/// expansion, closed forms, the normal equations, products of the input) and identities (P L U = A, A A⁻¹ = I,
/// det(AB) = det(A) det(B)) on seeded random matrices, batched (empty batches included) in Float32 and Float64; their
/// gradients by GradCheck in float64; the QR and SVD sign conventions; and the bad inputs each must reject.
/// </summary>
public class LinalgTests
{
    public static IEnumerable<object[]> DTypes => [[DType.Float32], [DType.Float64]];

    // Batch shapes: none, an empty batch, one dim, two dims; matrix orders 0 (where the op allows), 1 and 4.
    static readonly int[][] Batches = [[], [0], [3], [2, 2]];

    static Tensor Random(int[] shape, ulong seed) => Tensor.Rand(new Shape(shape), new Generator(seed), -1, 1, DType.Float64);

    // Diagonally dominant, so well conditioned: identities then hold to a small multiple of the dtype's roundoff.
    static Tensor WellConditioned(int[] batch, int n, ulong seed) => Random([.. batch, n, n], seed) + 2.0 * n * Tensor.Eye(n, dtype: DType.Float64);

    static double Eps(DType dt) => dt == DType.Float64 ? 1e-12 : 1e-5;

    static Tensor Eye(int[] batch, int n) => Tensor.Eye(n, dtype: DType.Float64).BroadcastTo(new Shape([.. batch, n, n]));

    // The results in float64, so identities are checked in float64 on the values the op returned.
    static Tensor F64(Tensor t) => t.Detach().To(DType.Float64);

    // Determinant by cofactor expansion along the first row: independent of LU.
    static double Cofactor(double[] a, int off, int n, int[] cols)
    {
        if (cols.Length == 0) return 1;
        int row = n - cols.Length;
        double sum = 0;
        for (int j = 0; j < cols.Length; j++)
        {
            double minor = Cofactor(a, off, n, cols.Where((_, q) => q != j).ToArray());
            sum += (j % 2 == 0 ? 1 : -1) * a[off + row * n + cols[j]] * minor;
        }
        return sum;
    }

    static void Passes(GradCheck.Result r, string what) => Assert.True(r.Passed, $"{what}: {r}");

    [Theory, MemberData(nameof(DTypes))]
    public void Lu_gives_a_permutation_and_triangular_factors_that_reconstruct_the_input(DType dt)
    {
        foreach (var batch in Batches)
            foreach (int n in new[] { 0, 1, 4 })
            {
                var a = Random([.. batch, n, n], (ulong)(n + 10 * batch.Length)).To(dt);
                var (p, l, u) = a.Lu();
                Assert.All(new[] { p, l, u }, t => { Assert.Equal(a.Shape, t.Shape); Assert.Equal(dt, t.DType); });
                var pd = p.ToDoubleArray(); var ld = l.ToDoubleArray(); var ud = u.ToDoubleArray();
                for (int b = 0; b < pd.Length / Math.Max(n * n, 1); b++)
                    for (int i = 0; i < n; i++)
                    {
                        Assert.Equal(1.0, Enumerable.Range(0, n).Sum(j => pd[b * n * n + i * n + j]));
                        Assert.Equal(1.0, Enumerable.Range(0, n).Sum(j => pd[b * n * n + j * n + i]));
                        Assert.Equal(1.0, ld[b * n * n + i * n + i]);
                        for (int j = 0; j < n; j++)
                        {
                            Assert.True(pd[b * n * n + i * n + j] is 0 or 1, "P holds only 0 and 1");
                            if (j > i) Assert.Equal(0.0, ld[b * n * n + i * n + j]);
                            if (j < i) { Assert.Equal(0.0, ud[b * n * n + i * n + j]); Assert.True(Math.Abs(ld[b * n * n + i * n + j]) <= 1, "partial pivoting keeps |L| <= 1"); }
                        }
                    }
                Close.Check(F64(a), F64(p).MatMul(F64(l)).MatMul(F64(u)), 0, 16 * Eps(dt), $"P L U, batch [{string.Join(",", batch)}], n {n}");
            }
    }

    [Fact]
    public void Lu_factors_a_singular_matrix_and_picks_the_largest_pivot()
    {
        // Second row is twice the first: the factorization completes with a zero at U[1, 1].
        var a = Tensor.FromArray(new[,] { { 1.0, 2, 3 }, { 2, 4, 6 }, { 0, 1, 1 } });
        var (p, l, u) = a.Lu();
        Close.Check(a, p.MatMul(l).MatMul(u), 0, 1e-15, "P L U of a singular matrix");
        Assert.Equal(0.0, u.ToDoubleArray()[8], 1e-15);
        // Column 0's largest entry is in row 1, so P moves row 1 of A to the top: P[1, 0] = 1.
        Assert.Equal(1.0, p.ToDoubleArray()[1 * 3 + 0]);
    }

    [Theory, MemberData(nameof(DTypes))]
    public void LuFactor_pivots_replay_to_the_packed_factors(DType dt)
    {
        foreach (var batch in Batches)
            foreach (int n in new[] { 0, 1, 5 })
            {
                var a = Random([.. batch, n, n], (ulong)(50 + n + 10 * batch.Length)).To(dt);
                var (lu, pivots) = a.LuFactor();
                Assert.Equal(a.Shape, lu.Shape);
                Assert.Equal(DType.Int32, pivots.DType);
                Assert.Equal(new Shape([.. batch, n]), pivots.Shape);
                var ad = a.ToDoubleArray(); var fd = lu.ToDoubleArray(); var pv = pivots.ToArray<int>();
                for (int b = 0; b < new Shape(batch).Numel; b++)
                {
                    // Apply the interchanges to A's rows in order, then compare with L U unpacked from LU.
                    var rows = Enumerable.Range(0, n).Select(i => ad.AsSpan((b * n + i) * n, n).ToArray()).ToArray();
                    for (int k = 0; k < n; k++)
                    {
                        Assert.InRange(pv[b * n + k], k + 1, n);
                        (rows[k], rows[pv[b * n + k] - 1]) = (rows[pv[b * n + k] - 1], rows[k]);
                    }
                    for (int i = 0; i < n; i++)
                        for (int j = 0; j < n; j++)
                        {
                            double s = 0;
                            for (int q = 0; q <= Math.Min(i, j); q++) s += (q == i ? 1 : fd[b * n * n + i * n + q]) * fd[b * n * n + q * n + j];
                            Assert.True(Math.Abs(s - rows[i][j]) <= 16 * Eps(dt), $"(L U)[{i}, {j}] = {s:R}, pivoted A has {rows[i][j]:R}");
                        }
                }
            }
    }

    [Theory, MemberData(nameof(DTypes))]
    public void Det_matches_cofactor_expansion_and_slogdet(DType dt)
    {
        foreach (var batch in Batches)
            foreach (int n in new[] { 0, 1, 4 })
            {
                var a = Random([.. batch, n, n], (ulong)(100 + n + 10 * batch.Length)).To(dt);
                var det = a.Det();
                var (sign, logAbs) = a.Slogdet();
                Assert.Equal(new Shape(batch), det.Shape);
                Assert.Equal(dt, det.DType);
                var ad = a.ToDoubleArray();
                var expected = Enumerable.Range(0, new Shape(batch).Numel).Select(b => Cofactor(ad, b * n * n, n, Enumerable.Range(0, n).ToArray())).ToArray();
                Close.Check(expected, det.ToDoubleArray(), 16 * Eps(dt), 16 * Eps(dt), $"det, batch [{string.Join(",", batch)}], n {n}");
                Close.Check(expected.Select(Math.Sign).Select(s => (double)s).ToArray(), sign.ToDoubleArray(), 0, 0, "slogdet sign");
                Close.Check(expected.Select(e => Math.Log(Math.Abs(e))).ToArray(), logAbs.ToDoubleArray(), 16 * Eps(dt), 16 * Eps(dt), "slogdet log|det|");
            }
    }

    [Fact]
    public void Det_is_multiplicative_and_exact_on_a_permuted_diagonal()
    {
        var a = Random([3, 5, 5], 1);
        var b = Random([3, 5, 5], 2);
        Close.Check(a.Det() * b.Det(), a.MatMul(b).Det(), 1e-12, 1e-14, "det(AB) = det(A) det(B)");
        Close.Check(1.0 / a.Det(), a.Inverse().Det(), 1e-11, 1e-14, "det(A⁻¹) = 1 / det(A)");

        // A = P D with P the cyclic shift of 300 rows (an odd permutation: 299 transpositions) and D = diag(10, 11, ...):
        // det = -∏ d_i overflows float64, but log|det| = Σ log d_i and the sign are exact.
        const int n = 300;
        var pd = new double[n * n];
        for (int i = 0; i < n; i++) pd[((i + 1) % n) * n + i] = 10 + i;
        var big = Tensor.FromArray(pd, new Shape(n, n));
        var (sign, logAbs) = big.Slogdet();
        Assert.Equal(-1.0, sign.Item());
        double expected = Enumerable.Range(0, n).Sum(i => Math.Log(10 + i));
        Assert.True(Math.Abs(logAbs.Item() - expected) <= 1e-12 * expected, $"log|det| {logAbs.Item():R}, expected {expected:R}");
        Assert.Equal(double.NegativeInfinity, big.Det().Item());
    }

    [Fact]
    public void Singular_matrices_have_zero_determinant()
    {
        var singular = Tensor.Stack([Tensor.Eye(3, dtype: DType.Float64), Tensor.FromArray(new[,] { { 1.0, 2, 3 }, { 4, 5, 6 }, { 0, 0, 0 } })]);
        Close.Check([1.0, 0.0], singular.Det().ToDoubleArray(), 0, 0, "det");
        var (sign, logAbs) = singular.Slogdet();
        Close.Check([1.0, 0.0], sign.ToDoubleArray(), 0, 0, "slogdet sign");
        Close.Check([0.0, double.NegativeInfinity], logAbs.ToDoubleArray(), 0, 0, "slogdet log|det|");
    }

    [Theory, MemberData(nameof(DTypes))]
    public void Inverse_times_input_is_the_identity(DType dt)
    {
        foreach (var batch in Batches)
            foreach (int n in new[] { 0, 1, 4 })
            {
                var a = WellConditioned(batch, n, (ulong)(200 + n + 10 * batch.Length)).To(dt);
                var inv = a.Inverse();
                Assert.Equal(a.Shape, inv.Shape);
                Assert.Equal(dt, inv.DType);
                string what = $"batch [{string.Join(",", batch)}], n {n}";
                Close.Check(Eye(batch, n), F64(a).MatMul(F64(inv)), 0, 16 * Eps(dt), "A A⁻¹ = I, " + what);
                Close.Check(Eye(batch, n), F64(inv).MatMul(F64(a)), 0, 16 * Eps(dt), "A⁻¹ A = I, " + what);
            }
        Close.Check([0.25], Tensor.FromArray(new[,] { { 4.0 } }).To(dt).Inverse().ToDoubleArray(), 0, 0, "1 x 1");
    }

    [Fact]
    public void Inverse_of_a_singular_matrix_names_its_batch_index()
    {
        var eye = Tensor.Eye(3, dtype: DType.Float64);
        var batch = Tensor.Stack([eye, eye, Tensor.FromArray(new[,] { { 1.0, 2, 0 }, { 3, 6, 0 }, { 0, 0, 1 } })]);
        var e = Assert.Throws<ArgumentException>(() => batch.Inverse());
        Assert.Contains("matrix 2 of the batch", e.Message);
        Assert.Contains("singular", e.Message);
        Assert.Contains("column 1", e.Message);
        Assert.Equal("input", e.ParamName);
        // Negative powers go through the inverse, and so does the backward of det.
        Assert.Throws<ArgumentException>(() => batch.MatrixPower(-1));
        var x = batch.Detach().RequiresGrad_();
        Assert.Throws<ArgumentException>(() => x.Det().Sum().Backward());
    }

    [Theory, MemberData(nameof(DTypes))]
    public void Lstsq_of_a_tall_full_rank_matrix_satisfies_the_normal_equations(DType dt)
    {
        foreach (var batch in Batches)
        {
            var a = Random([.. batch, 6, 3], (ulong)(300 + batch.Length)).To(dt);
            var b = Random([.. batch, 6, 2], (ulong)(310 + batch.Length)).To(dt);
            var x = a.Lstsq(b);
            Assert.Equal(new Shape([.. batch, 3, 2]), x.Shape);
            Assert.Equal(dt, x.DType);
            var (a64, b64, x64) = (F64(a), F64(b), F64(x));
            // Aᵀ (A x - b) = 0, and x agrees with the normal-equation solution (AᵀA)⁻¹ Aᵀ b.
            Close.Check(Tensor.Zeros(x.Shape, DType.Float64), a64.T.MatMul(a64.MatMul(x64) - b64), 0, 64 * Eps(dt), "normal equations");
            Close.Check(a64.T.MatMul(a64).Solve(a64.T.MatMul(b64)), x64, 64 * Eps(dt), 64 * Eps(dt), "(AᵀA)⁻¹ Aᵀ b");
        }
        // A vector right-hand side, and a 1-D one broadcast over A's batch.
        var a2 = Random([2, 5, 2], 320).To(dt);
        var bv = Random([5], 321).To(dt);
        var xv = a2.Lstsq(bv);
        Assert.Equal(new Shape(2, 2), xv.Shape);
        Close.Check(a2.Lstsq(bv.Unsqueeze(-1)).Squeeze(-1), xv, 0, 0, "vector b");
    }

    [Fact]
    public void Lstsq_of_wide_and_rank_deficient_matrices_gives_the_minimum_norm_solution()
    {
        // Wide, full row rank: the exact solution of least norm is Aᵀ (A Aᵀ)⁻¹ b.
        var a = Random([2, 3, 5], 400);
        var b = Random([2, 3, 2], 401);
        Close.Check(a.T.MatMul(a.MatMul(a.T).Solve(b)), a.Lstsq(b), 1e-12, 1e-13, "wide: Aᵀ (A Aᵀ)⁻¹ b");

        // Tall of rank 2 with a repeated column: A = B C with B = [c0 c1] of full column rank and C = [[1, 1, 0], [0, 0, 1]],
        // so A⁺ = C⁺ B⁺ = Cᵀ (C Cᵀ)⁻¹ (BᵀB)⁻¹ Bᵀ.
        var bb = Random([6, 2], 402);
        var c = Tensor.FromArray(new[,] { { 1.0, 1, 0 }, { 0, 0, 1 } });
        var deficient = bb.MatMul(c);
        var rhs = Random([6, 3], 403);
        var expected = c.T.MatMul(c.MatMul(c.T).Solve(bb.T.MatMul(bb).Solve(bb.T.MatMul(rhs))));
        var x = deficient.Lstsq(rhs);
        Close.Check(expected, x, 1e-11, 1e-12, "rank-deficient: A⁺ b");
        // The two copies of a repeated column share the weight equally in the least-norm solution.
        Close.Check(x.Narrow(0, 0, 1), x.Narrow(0, 1, 1), 1e-12, 1e-13, "repeated column");

        // A zero matrix: every x is a minimizer; the least norm one is 0.
        Close.Check(Tensor.Zeros(new Shape(2, 1), DType.Float64), Tensor.Zeros(new Shape(3, 2), DType.Float64).Lstsq(Tensor.Ones(new Shape(3, 1), DType.Float64)), 0, 0, "zero A");
        Assert.Equal(new Shape(0, 2), Tensor.Zeros(new Shape(3, 0), DType.Float64).Lstsq(Tensor.Ones(new Shape(3, 2), DType.Float64)).Shape);
    }

    [Theory, MemberData(nameof(DTypes))]
    public void MatrixNorm_matches_direct_formulas(DType dt)
    {
        const int m = 5, n = 3;
        foreach (var batch in Batches)
        {
            var a = Random([.. batch, m, n], (ulong)(500 + batch.Length)).To(dt);
            var ad = a.ToDoubleArray();
            int count = new Shape(batch).Numel;
            double[] Each(Func<double[], double> f) => Enumerable.Range(0, count).Select(t => f(ad.AsSpan(t * m * n, m * n).ToArray())).ToArray();
            double ColSum(double[] x, int j) => Enumerable.Range(0, m).Sum(i => Math.Abs(x[i * n + j]));
            double RowSum(double[] x, int i) => Enumerable.Range(0, n).Sum(j => Math.Abs(x[i * n + j]));
            // Singular values as square roots of the eigenvalues of AᵀA (the symmetric eigensolver, not the SVD).
            double[] Sv(double[] x)
            {
                var w = Tensor.FromArray(x, new Shape(m, n)).To(DType.Float64);
                return w.T.MatMul(w).Eigh().Eigenvalues.ToDoubleArray().Select(e => Math.Sqrt(Math.Max(e, 0))).ToArray();
            }
            var (rt, at) = (64 * Eps(dt), 64 * Eps(dt));
            string what = $"batch [{string.Join(",", batch)}]";
            Close.Check(Each(x => Math.Sqrt(x.Sum(v => v * v))), a.MatrixNorm("fro").ToDoubleArray(), rt, at, "fro " + what);
            Close.Check(Each(x => Sv(x).Sum()), a.MatrixNorm("nuc").ToDoubleArray(), rt, at, "nuc " + what);
            Close.Check(Each(x => Sv(x).Max()), a.MatrixNorm(2).ToDoubleArray(), rt, at, "2 " + what);
            Close.Check(Each(x => Sv(x).Min()), a.MatrixNorm(-2).ToDoubleArray(), rt, at, "-2 " + what);
            Close.Check(Each(x => Enumerable.Range(0, n).Max(j => ColSum(x, j))), a.MatrixNorm(1).ToDoubleArray(), rt, at, "1 " + what);
            Close.Check(Each(x => Enumerable.Range(0, n).Min(j => ColSum(x, j))), a.MatrixNorm(-1).ToDoubleArray(), rt, at, "-1 " + what);
            Close.Check(Each(x => Enumerable.Range(0, m).Max(i => RowSum(x, i))), a.MatrixNorm(double.PositiveInfinity).ToDoubleArray(), rt, at, "inf " + what);
            Close.Check(Each(x => Enumerable.Range(0, m).Min(i => RowSum(x, i))), a.MatrixNorm(double.NegativeInfinity).ToDoubleArray(), rt, at, "-inf " + what);
            Assert.Equal(new Shape([.. batch, 1, 1]), a.MatrixNorm(2, keepDim: true).Shape);
            Assert.Equal(new Shape([.. batch, 1, 1]), a.MatrixNorm("fro", keepDim: true).Shape);
        }
    }

    [Theory, MemberData(nameof(DTypes))]
    public void MatrixPower_matches_repeated_products(DType dt)
    {
        foreach (var batch in Batches)
        {
            var a = (0.5 * WellConditioned(batch, 3, (ulong)(600 + batch.Length)) / 3.0).To(dt);
            var a64 = F64(a);
            var product = Eye(batch, 3);
            for (int k = 1; k <= 7; k++)
            {
                product = product.MatMul(a64);
                Close.Check(product, F64(a.MatrixPower(k)), 64 * Eps(dt), 64 * Eps(dt), $"A^{k}");
            }
            Close.Check(Eye(batch, 3), F64(a.MatrixPower(0)), 0, 0, "A^0");
            Close.Check(Eye(batch, 3), F64(a.MatrixPower(3)).MatMul(F64(a.MatrixPower(-3))), 0, 64 * Eps(dt), "A^3 A^-3");
            Close.Check(F64(a.Inverse()).MatMul(F64(a.Inverse())), F64(a.MatrixPower(-2)), 64 * Eps(dt), 64 * Eps(dt), "A^-2");
        }
        var x = Random([2, 2], 610).RequiresGrad_();
        Assert.NotSame(x, x.MatrixPower(1));
    }

    // X with op(A) X = B (left) or X op(A) = B, op(A) = A or Aᵀ, by float64 Gaussian elimination with partial pivoting on
    // the matrix itself (not on any factors); a [n, n] and b row-major, B [n, k] when left, [k, n] otherwise.
    static double[] SolveReference(double[] a, double[] b, int n, int k, bool left, bool adjoint)
    {
        // X A = B is Aᵀ Xᵀ = Bᵀ: solve M Y = C with M = op(A) or its transpose and C = B or Bᵀ.
        bool transpose = left == adjoint;
        var m = new double[n, n];
        var c = new double[n, k];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++) m[i, j] = transpose ? a[j * n + i] : a[i * n + j];
            for (int j = 0; j < k; j++) c[i, j] = left ? b[i * k + j] : b[j * n + i];
        }
        for (int col = 0; col < n; col++)
        {
            int piv = col;
            for (int i = col + 1; i < n; i++) if (Math.Abs(m[i, col]) > Math.Abs(m[piv, col])) piv = i;
            for (int j = 0; j < n; j++) (m[col, j], m[piv, j]) = (m[piv, j], m[col, j]);
            for (int j = 0; j < k; j++) (c[col, j], c[piv, j]) = (c[piv, j], c[col, j]);
            for (int i = col + 1; i < n; i++)
            {
                double f = m[i, col] / m[col, col];
                for (int j = col; j < n; j++) m[i, j] -= f * m[col, j];
                for (int j = 0; j < k; j++) c[i, j] -= f * c[col, j];
            }
        }
        var y = new double[n, k];
        for (int i = n - 1; i >= 0; i--)
            for (int j = 0; j < k; j++)
            {
                double t = c[i, j];
                for (int q = i + 1; q < n; q++) t -= m[i, q] * y[q, j];
                y[i, j] = t / m[i, i];
            }
        var x = new double[n * k];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < k; j++) x[left ? i * k + j : j * n + i] = y[i, j];
        return x;
    }

    public static IEnumerable<object[]> LuSolveModes =>
        from dt in new[] { DType.Float32, DType.Float64 } from left in new[] { true, false } from adj in new[] { false, true } select new object[] { dt, left, adj };

    [Theory, MemberData(nameof(LuSolveModes))]
    public void LuSolve_matches_a_reference_solve_of_the_factored_matrix(DType dt, bool left, bool adjoint)
    {
        // (LU batch, B batch) pairs: unbatched, equal, broadcast both ways, and an empty batch.
        (int[] LuBatch, int[] BBatch)[] batches = [([], []), ([2], [2]), ([2], [3, 1]), ([], [2]), ([0], [0])];
        foreach (var (luBatch, bBatch) in batches)
            foreach (int n in new[] { 0, 1, 4 })
                foreach (int k in new[] { 0, 3 })
                {
                    ulong seed = (ulong)(900 + 10 * n + k + 100 * luBatch.Length + 1000 * bBatch.Length);
                    // Not diagonally dominant, so partial pivoting interchanges rows.
                    var a = (Random([.. luBatch, n, n], seed) + 0.5 * Tensor.Eye(n, dtype: DType.Float64)).To(dt);
                    var b = Random(left ? [.. bBatch, n, k] : [.. bBatch, k, n], seed + 1).To(dt);
                    var (lu, pivots) = a.LuFactor();
                    var x = Tensor.LuSolve(lu, pivots, b, left, adjoint);
                    var lead = Shape.Broadcast(new Shape(luBatch), new Shape(bBatch), "test").ToArray();
                    Assert.Equal(new Shape([.. lead, .. b.Shape.Dims[^2..]]), x.Shape);
                    Assert.Equal(dt, x.DType);
                    var ad = F64(a).BroadcastTo(new Shape([.. lead, n, n])).Contiguous().ToArray<double>();
                    var bd = F64(b).BroadcastTo(new Shape([.. lead, .. b.Shape.Dims[^2..]])).Contiguous().ToArray<double>();
                    var xd = x.ToDoubleArray();
                    for (int m = 0; m < new Shape(lead).Numel; m++)
                    {
                        var expected = SolveReference(ad[(m * n * n)..((m + 1) * n * n)], bd[(m * n * k)..((m + 1) * n * k)], n, k, left, adjoint);
                        Close.Check(expected, xd.AsSpan(m * n * k, n * k), 64 * Eps(dt), 64 * Eps(dt),
                            $"lu_solve left {left} adjoint {adjoint}, LU batch [{string.Join(",", luBatch)}], B batch [{string.Join(",", bBatch)}], n {n}, k {k}, matrix {m}");
                    }
                }
    }

    [Fact]
    public void LuSolve_agrees_with_solve_and_follows_the_factors_it_is_given()
    {
        var a = Random([2, 4, 4], 950);
        var b = Random([2, 4, 3], 951);
        var (lu, pivots) = a.LuFactor();
        Close.Check(a.Solve(b), Tensor.LuSolve(lu, pivots, b), 1e-12, 1e-13, "A X = B");
        Close.Check(a.T.Solve(b), Tensor.LuSolve(lu, pivots, b, adjoint: true), 1e-12, 1e-13, "Aᵀ X = B");
        // Pivots that are the identity interchanges make A = L U of whatever LU holds.
        var ident = Tensor.FromArray(Enumerable.Repeat(new[] { 1, 2, 3, 4 }, 2).SelectMany(v => v).ToArray(), new Shape(2, 4));
        var strict = Tensor.FromArray(new double[,] { { 0, 0, 0, 0 }, { 1, 0, 0, 0 }, { 1, 1, 0, 0 }, { 1, 1, 1, 0 } });
        var lu2 = Random([2, 4, 4], 952) + 2.0 * Tensor.Eye(4, dtype: DType.Float64);
        var a2 = (lu2 * strict + Tensor.Eye(4, dtype: DType.Float64)).MatMul(lu2 * (1.0 - strict));
        var bt = Random([2, 3, 4], 953);
        Close.Check(a2.Solve(bt.T).T, Tensor.LuSolve(lu2, ident, bt, left: false, adjoint: true), 1e-12, 1e-13, "X Aᵀ = B from L U");
    }

    [Fact]
    public void LuSolve_gradients_match_finite_differences()
    {
        var a = Random([2, 3, 3], 960) + 0.5 * Tensor.Eye(3, dtype: DType.Float64);
        var (lu, pivots) = a.LuFactor();
        lu = lu.Detach();
        foreach (bool left in new[] { true, false })
            foreach (bool adjoint in new[] { false, true })
            {
                // B's batch broadcasts against LU's, so both gradients are summed back to their own shapes.
                var b = Random(left ? [3, 1, 3, 2] : [3, 1, 2, 3], 961);
                Passes(GradCheck.Run(x => Tensor.LuSolve(x[0], pivots, x[1], left, adjoint), [lu, b]), $"lu_solve left {left} adjoint {adjoint}");
            }
        // Through LuFactor: d/dA of solving from A's own factors is d/dA of A⁻¹ B.
        var bb = Random([3, 2], 962);
        Passes(GradCheck.Run(x => { var (f, p) = x[0].LuFactor(); return Tensor.LuSolve(f, p, x[1]); }, [a, bb]), "lu_solve of lu_factor");
        // The backward is made of differentiable ops: a Hessian-vector product matches central differences of the gradient.
        var dir = Random([2, 3, 3], 963);
        var hv = Autograd.Hvp(x => Tensor.LuSolve(x, pivots, bb, left: true, adjoint: true).Square().Sum(), lu, dir);
        Tensor Grad(Tensor at) { var xi = at.Detach().RequiresGrad_(); return Autograd.Grad(Tensor.LuSolve(xi, pivots, bb, adjoint: true).Square().Sum(), xi); }
        const double eps = 1e-5;
        Close.Check((Grad(lu + eps * dir) - Grad(lu - eps * dir)) / (2 * eps), hv, 1e-6, 1e-8, "Hessian-vector product of lu_solve");
    }

    [Fact]
    public void LuSolve_rejects_bad_factors_and_right_hand_sides()
    {
        var (lu, pivots) = Random([2, 3, 3], 970).LuFactor();
        var b = Random([2, 3, 2], 971);
        Assert.Equal("lu", Assert.Throws<ShapeMismatchException>(() => Tensor.LuSolve(Tensor.Zeros(new Shape(2, 3, 2), DType.Float64), pivots, b)).ParamName);
        var ps = Assert.Throws<ShapeMismatchException>(() => Tensor.LuSolve(lu, pivots.Narrow(0, 0, 1), b));
        Assert.Equal("pivots", ps.ParamName);
        Assert.Contains("[2, 3]", ps.Message);
        Assert.Equal("pivots", Assert.Throws<ArgumentException>(() => Tensor.LuSolve(lu, pivots.To(DType.Int64), b)).ParamName);
        var bad = Tensor.FromArray(new[] { 1, 4, 3, 1, 2, 3 }, new Shape(2, 3));
        var range = Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.LuSolve(lu, bad, b));
        Assert.Equal("pivots", range.ParamName);
        Assert.Contains("is 4", range.Message);
        var rows = Assert.Throws<ShapeMismatchException>(() => Tensor.LuSolve(lu, pivots, Random([2, 2, 3], 972)));
        Assert.Equal("b", rows.ParamName);
        Assert.Contains("[..., 3, k]", rows.Message);
        Assert.Contains("[..., k, 3]", Assert.Throws<ShapeMismatchException>(() => Tensor.LuSolve(lu, pivots, b, left: false)).Message);
        Assert.Throws<ShapeMismatchException>(() => Tensor.LuSolve(lu, pivots, Random([3, 3, 2], 973)));
        Assert.Equal("b", Assert.Throws<ArgumentException>(() => Tensor.LuSolve(lu, pivots, b.To(DType.Float32))).ParamName);
        Assert.Throws<NotSupportedException>(() => Tensor.LuSolve(Tensor.Zeros(new Shape(3, 3), DType.Int32), pivots.Narrow(0, 0, 1).Squeeze(0), Tensor.Zeros(new Shape(3, 1), DType.Int32)));
    }

    [Fact]
    public void Gradients_match_finite_differences()
    {
        var a = WellConditioned([2], 3, 700);
        Passes(GradCheck.Run(x => x[0].Det(), [a]), "det");
        Passes(GradCheck.Run(x => x[0].Det(), [Random([3, 3], 701)]), "det of a general matrix");
        Passes(GradCheck.Run(x => x[0].Slogdet().LogAbsDet, [Random([2, 3, 3], 702)]), "slogdet");
        Passes(GradCheck.Run(x => x[0].Inverse(), [a]), "inverse");
        Passes(GradCheck.Run(x => x[0].MatrixPower(3), [Random([2, 3, 3], 703)]), "matrix_power 3");
        Passes(GradCheck.Run(x => x[0].MatrixPower(-2), [a]), "matrix_power -2");
        Passes(GradCheck.Run(x => { var (_, l, u) = x[0].Lu(); return Tensor.Concat([l, u], -1); }, [Random([2, 3, 3], 704)]), "lu");
        Passes(GradCheck.Run(x => x[0].LuFactor().LU, [Random([4, 4], 712)]), "lu_factor");
        Passes(GradCheck.Run(x => x[0].Lstsq(x[1]), [Random([2, 5, 3], 705), Random([5, 2], 706)]), "lstsq tall");
        Passes(GradCheck.Run(x => x[0].Lstsq(x[1]), [Random([2, 5], 707), Random([2, 2], 708)]), "lstsq wide");
        Passes(GradCheck.Run(x => x[0].Lstsq(x[1]), [Random([4, 3], 709), Random([4], 710)]), "lstsq vector");
        var rect = Random([2, 4, 3], 711);
        Passes(GradCheck.Run(x => x[0].MatrixNorm("fro"), [rect]), "fro");
        Passes(GradCheck.Run(x => x[0].MatrixNorm("nuc"), [rect]), "nuc");
        Passes(GradCheck.Run(x => x[0].MatrixNorm(2), [rect]), "2");
        Passes(GradCheck.Run(x => x[0].MatrixNorm(-2), [rect]), "-2");
        Passes(GradCheck.Run(x => x[0].MatrixNorm(1), [rect]), "1");
        Passes(GradCheck.Run(x => x[0].MatrixNorm(double.NegativeInfinity), [rect]), "-inf");
    }

    [Fact]
    public void Inverse_gradient_of_gradient()
    {
        // The backward rules are written in differentiable ops: a Hessian-vector product of a function of the inverse
        // and the determinant matches central differences of the gradient.
        var a0 = WellConditioned([], 3, 720);
        var dir = Random([3, 3], 721);
        static Tensor F(Tensor x) => x.Inverse().Square().Sum() + x.Det();
        var hv = Autograd.Hvp(F, a0, dir);
        Tensor Grad(Tensor at) { var xi = at.Detach().RequiresGrad_(); return Autograd.Grad(F(xi), xi); }
        const double eps = 1e-5;
        Close.Check((Grad(a0 + eps * dir) - Grad(a0 - eps * dir)) / (2 * eps), hv, 1e-6, 1e-8, "Hessian-vector product");
    }

    [Theory, MemberData(nameof(DTypes))]
    public void Qr_has_a_non_negative_diagonal_and_is_unique(DType dt)
    {
        foreach (var (m, n) in new[] { (5, 3), (3, 3), (3, 5), (1, 1) })
        {
            var a = Random([4, m, n], (ulong)(800 + m * 10 + n)).To(dt);
            var (q, r) = a.Qr();
            var (qn, rn) = (-a).Qr();
            int k = Math.Min(m, n);
            var rd = r.ToDoubleArray();
            for (int b = 0; b < 4; b++) for (int i = 0; i < k; i++) Assert.True(rd[b * k * n + i * n + i] >= 0, $"R[{b}, {i}, {i}] = {rd[b * k * n + i * n + i]}");
            // The factors are unique, so -A = (-Q) R.
            Close.Check(r, rn, 0, 8 * Eps(dt), $"R of -A, {m}x{n}");
            Close.Check(-q, qn, 0, 8 * Eps(dt), $"Q of -A, {m}x{n}");
            if (m >= n)
            {
                // For full column rank R is the transposed Cholesky factor of AᵀA.
                var a64 = F64(a);
                Close.Check(a64.T.MatMul(a64).Cholesky().T, F64(r), 64 * Eps(dt), 64 * Eps(dt), $"R = chol(AᵀA)ᵀ, {m}x{n}");
            }
        }
    }

    [Theory, MemberData(nameof(DTypes))]
    public void Svd_signs_each_left_vector_by_its_largest_component(DType dt)
    {
        foreach (var (m, n) in new[] { (5, 3), (3, 3), (3, 5), (1, 1) })
        {
            var a = Random([4, m, n], (ulong)(900 + m * 10 + n)).To(dt);
            var (u, s, vh) = a.Svd();
            var (un, _, vhn) = (-a).Svd();
            int k = Math.Min(m, n);
            var ud = u.ToDoubleArray();
            for (int b = 0; b < 4; b++)
                for (int j = 0; j < k; j++)
                {
                    var col = Enumerable.Range(0, m).Select(i => ud[b * m * k + i * k + j]).ToArray();
                    Assert.True(col.First(x => Math.Abs(x) == col.Max(Math.Abs)) > 0, $"U[{b}, :, {j}] has its largest component negative");
                }
            // -A = U S (-Vh) under the convention.
            Close.Check(u, un, 0, 8 * Eps(dt), $"U of -A, {m}x{n}");
            Close.Check(-vh, vhn, 0, 8 * Eps(dt), $"Vh of -A, {m}x{n}");
            Close.Check(F64(a), (F64(u) * F64(s).Unsqueeze(-2)).MatMul(F64(vh)), 0, 16 * Eps(dt), $"U S Vh, {m}x{n}");
        }
    }

    [Fact]
    public void Bad_inputs_are_rejected_clearly()
    {
        var rect = Tensor.Zeros(new Shape(2, 3), DType.Float64);
        foreach (var op in new Func<Tensor, object>[] { t => t.Lu(), t => t.LuFactor(), t => t.Det(), t => t.Slogdet(), t => t.Inverse(), t => t.MatrixPower(2) })
        {
            var e = Assert.Throws<ShapeMismatchException>(() => op(rect));
            Assert.Contains("[2, 3]", e.Message);
        }
        Assert.Throws<ShapeMismatchException>(() => Tensor.Zeros(new Shape(3), DType.Float64).MatrixNorm());
        Assert.Throws<ShapeMismatchException>(() => rect.Lstsq(Tensor.Zeros(new Shape(3, 1), DType.Float64)));
        Assert.Throws<ArgumentException>(() => rect.Lstsq(Tensor.Zeros(new Shape(2, 1), DType.Float32)));
        Assert.Throws<ArgumentOutOfRangeException>(() => rect.Lstsq(Tensor.Zeros(new Shape(2, 1), DType.Float64), rcond: -1));

        var bad = Assert.Throws<ArgumentException>(() => rect.MatrixNorm(3));
        Assert.Equal("ord", bad.ParamName);
        Assert.Contains("ord 3", bad.Message);
        Assert.Equal("ord", Assert.Throws<ArgumentException>(() => rect.MatrixNorm("spectral")).ParamName);
        Assert.Contains("empty", Assert.Throws<ArgumentException>(() => Tensor.Zeros(new Shape(0, 3), DType.Float64).MatrixNorm(2)).Message);

        var nan = Tensor.FromArray(new[,] { { 1.0, double.NaN }, { 0, 1 } });
        foreach (var (name, op) in new (string, Func<Tensor, object>)[] { ("lu", t => t.Lu()), ("lu_factor", t => t.LuFactor()), ("det", t => t.Det()),
            ("inverse", t => t.Inverse()), ("lstsq", t => t.Lstsq(Tensor.Ones(new Shape(2), DType.Float64))) })
        {
            var e = Assert.Throws<ArgumentException>(() => op(nan));
            Assert.StartsWith(name + ":", e.Message);
            Assert.Contains("NaN", e.Message);
        }
        Assert.Throws<NotSupportedException>(() => Tensor.Zeros(new Shape(2, 2), DType.Int32).Det());
    }

    public static IEnumerable<object[]> OtherDevices => Devices.All.Where(d => d != Device.Cpu).Select(d => new object[] { d.ToString() });

    [Theory, MemberData(nameof(OtherDevices))]
    public void Every_op_matches_cpu_on_other_devices(string device)
    {
        // The device runs the same float64 kernels through ILinalgBackend's host path; only its own matrix products and
        // sums may round differently.
        var dev = Devices.Parse(device);
        var a = WellConditioned([2], 3, 1000);
        var b = Random([2, 3, 2], 1001);
        var rect = Random([2, 4, 3], 1002);
        var ops = new (string Name, Func<Tensor, Tensor, Tensor, Tensor> F)[]
        {
            ("lu", (x, _, _) => { var (p, l, u) = x.Lu(); return Tensor.Concat([p, l, u], -1); }),
            ("det", (x, _, _) => x.Det()),
            ("slogdet", (x, _, _) => x.Slogdet().LogAbsDet),
            ("inverse", (x, _, _) => x.Inverse()),
            ("matrix_power", (x, _, _) => x.MatrixPower(-3)),
            ("lstsq tall", (_, y, r) => r.Lstsq(Tensor.Concat([y, y.Narrow(-2, 0, 1)], -2))),
            ("lstsq wide", (_, y, r) => r.T.Lstsq(y)),
            ("lu_solve", (x, y, _) => { var (f, p) = (x + 0.5 * x.T).LuFactor(); return Tensor.LuSolve(f, p, y, adjoint: true); }),
            ("matrix_norm nuc", (_, _, r) => r.MatrixNorm("nuc")),
        };
        foreach (var (name, f) in ops)
        {
            var expected = f(a, b, rect);
            var actual = f(a.To(dev), b.To(dev), rect.To(dev));
            Assert.Equal(dev, actual.Device);
            Close.Check(expected, actual.To(Device.Cpu), 1e-12, 1e-13, $"{name} on {dev}");
        }
    }
}
