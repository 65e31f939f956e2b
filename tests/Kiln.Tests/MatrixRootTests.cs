using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>
/// SymmetricMatrixPower, NewtonSchulz and Bjorck against float64 references written with loops (<see cref="Dense"/>):
/// inverse roots by Jacobi, (A^(-1/4))⁴ A = I, polar factors G (GᵀG)^(-1/2); on every device, in both float dtypes,
/// with batches, empty and odd sizes and transposed views; gradients by GradCheck; bad inputs.
/// </summary>
public class MatrixRootTests
{
    public static IEnumerable<object[]> Cases =>
        from d in Devices.All from dt in new[] { DType.Float32, DType.Float64 } select new object[] { d.ToString(), dt };

    static FsCheck.Gen<(int[] Batch, int M, int N, int Seed, bool Strided)> MatrixCase =>
        from rank in G.Choose(0, 2)
        from batch in G.ArrayOf(G.Choose(0, 2), rank)
        from m in G.Choose(0, 6)
        from n in G.Choose(0, 6)
        from seed in TensorGen.Seed
        from strided in G.Elements(true, false)
        select (batch, m, n, seed, strided);

    static int Prod(int[] dims) => dims.Aggregate(1, (p, d) => p * d);

    static double[] Uniform(Random r, int len, double lo = -1, double hi = 1) => Dense.Uniform(r, len, lo, hi);

    /// <summary>A random m x n matrix whose singular values are uniform in [lo, hi] (Q₁ diag(σ) Q₂ᵀ from polar factors).</summary>
    internal static double[] WithSingularValues(Random r, int m, int n, double lo, double hi)
    {
        int k = Math.Min(m, n);
        if (k == 0) return new double[m * n];
        var q1 = Dense.Polar(Uniform(r, m * k), m, k);
        var q2 = Dense.Polar(Uniform(r, n * k), n, k);
        var s = Uniform(r, k, lo, hi);
        var q1s = new double[m * k];
        for (int i = 0; i < m; i++) for (int j = 0; j < k; j++) q1s[i * k + j] = q1[i * k + j] * s[j];
        return Dense.Mul(q1s, Dense.T(q2, n, k), m, k, n);
    }

    static Tensor Put(double[] data, int[] shape, DType dt, Device dev, bool strided)
    {
        var t = Tensor.FromArray(data, new Shape(shape)).To(dt).To(dev);
        return strided && shape.Length >= 2 ? t.T.Contiguous().T : t;   // same values, column-major strides
    }

    static double Unit(DType dt) => dt == DType.Float64 ? Math.Pow(2, -53) : Math.Pow(2, -24);

    [Theory, MemberData(nameof(Cases))]
    public void SymmetricMatrixPower_matches_Jacobi_reference_and_inverse_fourth_root_identity(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        var gen = from c in MatrixCase from p in G.Elements(-0.25, -0.5, 0.5, -1.0, 1.0 / 3) from eps in G.Elements(0.0, 0.1) select (c, p, eps);
        Props.Check(dev, gen, x =>
        {
            var ((batch, _, n, seed, strided), p, eps) = x;
            var r = new Random(seed);
            int count = Prod(batch);
            // L = B Bᵀ + 0.2 I: SPD with condition number below 30, the regime of a damped Shampoo statistic.
            var l = new double[count * n * n];
            for (int b = 0; b < count; b++)
            {
                var bm = Uniform(r, n * n);
                var spd = Dense.Add(Dense.Mul(bm, Dense.T(bm, n, n), n, n, n), Dense.Scale(Dense.Eye(n), 0.2));
                Array.Copy(spd, 0, l, b * n * n, n * n);
            }
            var input = Put(l, [.. batch, n, n], dt, dev, strided);
            var y = input.SymmetricMatrixPower(p, eps);
            Assert.Equal(input.Shape, y.Shape);
            Assert.Equal(dt, y.DType);
            var yd = y.ToDoubleArray();
            // The input is rounded to dt first; the result is a float64 computation rounded once more.
            var ld = input.ToDoubleArray();
            for (int b = 0; b < count; b++)
            {
                var a = ld[(b * n * n)..((b + 1) * n * n)];
                var got = yd[(b * n * n)..((b + 1) * n * n)];
                var expected = Dense.SymPow(a, n, p, eps);
                double tol = 64 * Math.Max(n, 1) * Unit(dt) * Math.Max(1, Dense.MaxAbs(expected));
                Assert.True(Dense.MaxDiff(expected, got) <= tol, $"(A + {eps} I)^{p} batch {b}: max diff {Dense.MaxDiff(expected, got):G3} > {tol:G3}");
                if (p == -0.25 && eps == 0)
                {
                    var r2 = Dense.Mul(got, got, n, n, n);
                    var check = Dense.Mul(Dense.Mul(r2, r2, n, n, n), a, n, n, n);
                    double itol = 1024 * Math.Max(n, 1) * Unit(dt) * 30;
                    Assert.True(Dense.MaxDiff(Dense.Eye(n), check) <= itol, $"(L^(-1/4))^4 L = I batch {b}: max diff {Dense.MaxDiff(Dense.Eye(n), check):G3}");
                }
            }
        });
    }

    [Fact]
    public void SymmetricMatrixPower_pseudo_inverse_root_of_rank_deficient_matrix()
    {
        // L = B Bᵀ with B [5, 2]: rank 2. With rcond the zero eigenvalues map to 0, so L^(-1/2) L L^(-1/2) is the
        // projector onto L's range, B (BᵀB)⁻¹ Bᵀ, and L^(-1) is the Moore-Penrose pseudo-inverse (L L⁺ L = L).
        var r = new Random(3);
        var b = Uniform(r, 10);
        var l = Dense.Mul(b, Dense.T(b, 5, 2), 5, 2, 5);
        var t = Tensor.FromArray(l, new Shape(5, 5));
        var h = t.SymmetricMatrixPower(-0.5, rcond: 1e-10).ToDoubleArray();
        var projector = Dense.Mul(Dense.Mul(b, Dense.SymPow(Dense.Mul(Dense.T(b, 5, 2), b, 2, 5, 2), 2, -1), 5, 2, 2), Dense.T(b, 5, 2), 5, 2, 5);
        Assert.True(Dense.MaxDiff(projector, Dense.Mul(Dense.Mul(h, l, 5, 5, 5), h, 5, 5, 5)) < 1e-10);
        var pinv = t.SymmetricMatrixPower(-1, rcond: 1e-10).ToDoubleArray();
        Assert.True(Dense.MaxDiff(l, Dense.Mul(Dense.Mul(l, pinv, 5, 5, 5), l, 5, 5, 5)) < 1e-10);
        // Without rcond a zero eigenvalue stays in for p ≥ 0 (A⁰ = I, diag(4, 0)^½ = diag(2, 0)) and is an error for p < 0.
        var singular = Tensor.FromArray(new double[] { 4, 0, 0, 0 }, new Shape(2, 2));
        Close.Check([1.0, 0, 0, 1], singular.SymmetricMatrixPower(0).ToArray<double>(), 1e-15, 1e-15, "diag(4, 0)⁰");
        Close.Check([2.0, 0, 0, 0], singular.SymmetricMatrixPower(0.5).ToArray<double>(), 1e-15, 1e-15, "diag(4, 0)^½");
        var ex = Assert.Throws<ArgumentException>(() => Tensor.FromArray(new double[] { 1, 0, 0, 0 }, new Shape(2, 2)).SymmetricMatrixPower(-0.25));
        Assert.Contains("singular", ex.Message);
    }

    [Theory, MemberData(nameof(Cases))]
    public void NewtonSchulz_cubic_converges_to_polar_factor_of_well_conditioned_input(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, MatrixCase, c =>
        {
            var (batch, m, n, seed, strided) = c;
            var r = new Random(seed);
            int count = Prod(batch);
            var g = new double[count * m * n];
            // Singular values in [0.5, 2]: X₀'s smallest is at least 0.5 / (2 √6) ≈ 0.1, which 30 steps carry to 1.
            for (int b = 0; b < count; b++) Array.Copy(WithSingularValues(r, m, n, 0.5, 2), 0, g, b * m * n, m * n);
            var input = Put(g, [.. batch, m, n], dt, dev, strided);
            var y = input.NewtonSchulz(30);
            Assert.Equal(input.Shape, y.Shape);
            var yd = y.ToDoubleArray();
            var gd = input.ToDoubleArray();
            for (int b = 0; b < count; b++)
            {
                var expected = Dense.Polar(gd[(b * m * n)..((b + 1) * m * n)], m, n);
                double tol = 256 * Math.Max(Math.Max(m, n), 1) * Unit(dt);
                double diff = Dense.MaxDiff(expected, yd[(b * m * n)..((b + 1) * m * n)]);
                Assert.True(diff <= tol, $"newton-schulz vs G (GᵀG)^(-1/2) batch {b} ({m}x{n}): max diff {diff:G3} > {tol:G3}");
            }
        });
    }

    [Theory, MemberData(nameof(Cases))]
    public void NewtonSchulz_muon_quintic_puts_singular_values_in_its_band(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, MatrixCase, c =>
        {
            var (_, m, n, seed, strided) = c;
            var r = new Random(seed);
            var g = WithSingularValues(r, m, n, 0.05, 1);
            var y = Put(g, [m, n], dt, dev, strided).NewtonSchulz(5, NewtonSchulzIteration.MuonQuintic).ToDoubleArray();
            // X₀'s singular values lie in [0.05/√6, 1], above 0.01; five steps of the scalar quintic map all of
            // [0.01, 1] into [0.6818, 1.1344] (evaluated on a fine grid), so no singular value may leave that band.
            foreach (double s in Dense.SingularValues(y, m, n))
                Assert.True(s > 0.68 && s < 1.136, $"muon quintic ({m}x{n}): singular value {s:G6} outside [0.68, 1.136]");
        });
    }

    [Theory, MemberData(nameof(Cases))]
    public void Bjorck_restores_orthogonality_to_the_polar_factor(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, MatrixCase, c =>
        {
            var (_, m, n, seed, strided) = c;
            var r = new Random(seed);
            // A nearly orthogonal matrix (an orthonormal frame plus noise of size 0.02, as after 4-bit quantisation).
            var a = Dense.Add(WithSingularValues(r, m, n, 1, 1), Uniform(r, m * n, -0.02, 0.02));
            var input = Put(a, [m, n], dt, dev, strided);
            var y = input.Bjorck(4).ToDoubleArray();
            var expected = Dense.Polar(input.ToDoubleArray(), m, n);
            double tol = 256 * Math.Max(Math.Max(m, n), 1) * Unit(dt);
            Assert.True(Dense.MaxDiff(expected, y) <= tol, $"björck vs polar factor ({m}x{n}): max diff {Dense.MaxDiff(expected, y):G3} > {tol:G3}");
        });
    }

    [Fact]
    public void Gradients_match_finite_differences()
    {
        var r = new Random(5);
        var b = Uniform(r, 16);
        var spd = Tensor.FromArray(Dense.Add(Dense.Mul(b, Dense.T(b, 4, 4), 4, 4, 4), Dense.Scale(Dense.Eye(4), 0.5)), new Shape(4, 4));
        var root = GradCheck.Run(x => (0.5 * (x[0] + x[0].T)).SymmetricMatrixPower(-0.25, 1e-3), [spd]);
        Assert.True(root.Passed, "symmetric_matrix_power: " + root);
        var g = Tensor.FromArray(WithSingularValues(r, 3, 5, 0.5, 2), new Shape(3, 5));
        var ns = GradCheck.Run(x => x[0].NewtonSchulz(6), [g]);
        Assert.True(ns.Passed, "newton_schulz: " + ns);
        var quintic = GradCheck.Run(x => x[0].T.NewtonSchulz(3, NewtonSchulzIteration.MuonQuintic), [g]);
        Assert.True(quintic.Passed, "newton_schulz quintic: " + quintic);
        var bj = GradCheck.Run(x => x[0].Bjorck(2), [Tensor.FromArray(WithSingularValues(r, 4, 3, 0.9, 1.1), new Shape(4, 3))]);
        Assert.True(bj.Passed, "bjorck: " + bj);
    }

    [Fact]
    public void Bad_inputs_are_rejected_clearly()
    {
        var indefinite = Tensor.FromArray(new double[] { 1, 0, 0, -1 }, new Shape(2, 2));
        var ex = Assert.Throws<ArgumentException>(() => indefinite.SymmetricMatrixPower(0.5));
        Assert.Contains("positive semi-definite", ex.Message);
        Assert.Contains("-1", ex.Message);
        var eye = Tensor.Eye(3, dtype: DType.Float64);
        Assert.Throws<ArgumentOutOfRangeException>(() => eye.SymmetricMatrixPower(double.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => eye.SymmetricMatrixPower(0.5, eps: -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => eye.SymmetricMatrixPower(0.5, rcond: 1));
        Assert.Throws<ShapeMismatchException>(() => Tensor.Zeros(new Shape(2, 3), DType.Float64).SymmetricMatrixPower(0.5));
        Assert.Throws<ArgumentException>(() => Tensor.FromArray(new double[] { 1, 2, 0, 1 }, new Shape(2, 2)).SymmetricMatrixPower(0.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => eye.NewtonSchulz(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => eye.Bjorck(-1));
        Assert.Throws<ShapeMismatchException>(() => Tensor.Zeros(new Shape(3), DType.Float64).NewtonSchulz(5));
        // A zero matrix has no polar factor; Newton-Schulz returns zero rather than NaN.
        Assert.All(Tensor.Zeros(new Shape(2, 3), DType.Float64).NewtonSchulz(5).ToDoubleArray(), v => Assert.Equal(0.0, v));
    }
}
