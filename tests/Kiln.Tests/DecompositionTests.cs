using Kiln.Kernels;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>
/// Eigh, Cholesky, Solve, CholeskySolve, QR and SVD against their defining identities (A = L Lᵀ, A V = V diag(w),
/// A = Q R, A = U S Vh with orthonormal factors, A X = B), the Jacobi eigenvalue reference and closed forms for 2x2
/// and 3x3 matrices; gradients by GradCheck; and the bad inputs each must reject.
/// </summary>
public class DecompositionTests
{
    public static IEnumerable<object[]> Cases =>
        from d in Devices.All from dt in new[] { DType.Float32, DType.Float64 } select new object[] { d.ToString(), dt };

    // Batch dims (0-2 of them, extents 0-3), matrix sizes 0-8, a seed and whether to hand the op a transposed view.
    static FsCheck.Gen<(int[] Batch, int M, int N, int Seed, bool Strided)> MatrixCase =>
        from rank in G.Choose(0, 2)
        from batch in G.ArrayOf(G.Choose(0, 3), rank)
        from m in G.Choose(0, 8)
        from n in G.Choose(0, 8)
        from seed in TensorGen.Seed
        from strided in G.Elements(true, false)
        select (batch, m, n, seed, strided);

    // Unit roundoff of the dtype the results are stored in: float64 results are exact to it, Float32 ones are float64
    // results rounded once, so every identity holds to a small multiple of n u ||A||.
    static double U(DType dt) => dt == DType.Float64 ? Math.Pow(2, -53) : Math.Pow(2, -24);
    static double Tol(DType dt, int n, double scale) => 64 * Math.Max(n, 1) * U(dt) * Math.Max(scale, 1);

    static Tensor Random(int[] shape, int seed, DType dt, Device dev) =>
        Tensor.Rand(new Shape(shape), new Generator((ulong)seed), -1, 1, DType.Float64).To(dt).To(dev);

    static Tensor Transposed(Tensor a) => a.T.Contiguous().T;   // same values, column-major strides

    static double MaxAbs(double[] a) => a.Length == 0 ? 0 : a.Max(Math.Abs);

    // C = A B for row-major host matrices at the given offsets.
    static double[] Mul(double[] a, int ao, double[] b, int bo, int m, int k, int n, bool transA = false, bool transB = false)
    {
        var c = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                    s += (transA ? a[ao + p * m + i] : a[ao + i * k + p]) * (transB ? b[bo + j * k + p] : b[bo + p * n + j]);
                c[i * n + j] = s;
            }
        return c;
    }

    static void Near(double[] expected, int eo, double[] actual, int ao, int len, double tol, string what)
    {
        for (int i = 0; i < len; i++)
            Assert.True(Math.Abs(expected[eo + i] - actual[ao + i]) <= tol,
                $"{what}[{i}]: {actual[ao + i]:R} vs {expected[eo + i]:R} (tol {tol:G3})");
    }

    static void Orthonormal(double[] q, int off, int rows, int cols, bool columns, double tol, string what)
    {
        // QᵀQ = I for orthonormal columns, Q Qᵀ = I for orthonormal rows.
        var g = columns ? Mul(q, off, q, off, cols, rows, cols, transA: true) : Mul(q, off, q, off, rows, cols, rows, transB: true);
        int k = columns ? cols : rows;
        var eye = new double[k * k];
        for (int i = 0; i < k; i++) eye[i * k + i] = 1;
        Near(eye, 0, g, 0, k * k, tol, what);
    }

    static int Prod(int[] dims) => dims.Aggregate(1, (p, d) => p * d);

    [Theory, MemberData(nameof(Cases))]
    public void Cholesky_reconstructs_spd_input(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(MatrixCase, c =>
        {
            var (batch, n, _, seed, strided) = c;
            var x = Random([.. batch, n, n], seed, DType.Float64, Device.Cpu);
            var spd = (x.MatMul(x.T) + n * Tensor.Eye(n, dtype: DType.Float64)).To(dt).To(dev);
            var l = (strided ? Transposed(spd) : spd).Cholesky();
            Assert.Equal(spd.Shape, l.Shape);
            Assert.Equal(dt, l.DType); Assert.Equal(dev, l.Device);
            var a = spd.ToDoubleArray(); var ld = l.ToDoubleArray();
            double tol = Tol(dt, n, MaxAbs(a));
            for (int b = 0; b < Prod(batch); b++)
            {
                int o = b * n * n;
                for (int i = 0; i < n; i++)
                {
                    Assert.True(ld[o + i * n + i] > 0, $"diagonal {i} of L is {ld[o + i * n + i]}");
                    for (int j = i + 1; j < n; j++) Assert.Equal(0.0, ld[o + i * n + j]);
                }
                Near(a, o, Mul(ld, o, ld, o, n, n, n, transB: true), 0, n * n, tol, $"L Lᵀ batch {b}");
            }
        });
    }

    [Theory, MemberData(nameof(Cases))]
    public void Eigh_diagonalizes_symmetric_input(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(MatrixCase, c =>
        {
            var (batch, n, _, seed, strided) = c;
            var x = Random([.. batch, n, n], seed, dt, dev);
            var a = x + x.T;
            var (w, v) = (strided ? Transposed(a) : a).Eigh();
            Assert.Equal(new Shape([.. batch, n]), w.Shape);
            Assert.Equal(a.Shape, v.Shape);
            var ad = a.ToDoubleArray(); var wd = w.ToDoubleArray(); var vd = v.ToDoubleArray();
            double tol = Tol(dt, n, MaxAbs(ad));
            for (int b = 0; b < Prod(batch); b++)
            {
                int o = b * n * n;
                Orthonormal(vd, o, n, n, columns: true, Tol(dt, n, 1), $"VᵀV batch {b}");
                var av = Mul(ad, o, vd, o, n, n, n);
                var vw = new double[n * n];
                for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) vw[i * n + j] = vd[o + i * n + j] * wd[b * n + j];
                Near(vw, 0, av, 0, n * n, tol, $"A V = V diag(w) batch {b}");
                var reference = Reference.JacobiEigh(ad.AsSpan(o, n * n), n);
                Near(reference, 0, wd, b * n, n, tol, $"eigenvalues vs Jacobi batch {b}");
                for (int j = 0; j + 1 < n; j++) Assert.True(wd[b * n + j] <= wd[b * n + j + 1], "eigenvalues ascend");
                for (int j = 0; j < n; j++)
                {
                    var col = Enumerable.Range(0, n).Select(i => vd[o + i * n + j]).ToArray();
                    Assert.True(col.MaxBy(Math.Abs) >= 0, $"eigenvector {j} has its largest component negative");
                }
            }
        });
    }

    [Theory, MemberData(nameof(Cases))]
    public void Solve_satisfies_the_system_with_broadcast_batches(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        var gen = from c in MatrixCase from k in G.Choose(0, 4) from vector in G.Elements(true, false) from bcast in G.Elements(true, false)
                  select (c, k, vector, bcast);
        Props.Check(gen, p =>
        {
            var ((batch, n, _, seed, strided), k, vector, bcast) = p;
            // Diagonally dominant, so well conditioned: the residual bound below holds.
            var aBatch = bcast && batch.Length > 0 ? [1, .. batch[1..]] : batch;
            var a = (Random([.. aBatch, n, n], seed, DType.Float64, Device.Cpu) + 2.0 * n * Tensor.Eye(n, dtype: DType.Float64)).To(dt).To(dev);
            // A vector b is [..., n] with A's exact batch (PyTorch's rule), or a 1-D [n] broadcast over A's batch.
            var bShape = vector ? (bcast ? [n] : (int[])[.. aBatch, n]) : [.. batch, n, k];
            var b = Random(bShape, seed + 1, dt, dev);
            var x = (strided ? Transposed(a) : a).Solve(b);
            var outBatch = vector ? aBatch : batch;
            Assert.Equal(vector ? new Shape([.. outBatch, n]) : b.Shape, x.Shape);
            batch = outBatch;
            var ab = a.BroadcastTo(new Shape([.. batch, n, n])).ToDoubleArray();
            var bd = (vector ? b.BroadcastTo(new Shape([.. batch, n])) : b).ToDoubleArray(); var xd = x.ToDoubleArray();
            int kk = vector ? 1 : k;
            double tol = Tol(dt, n, 2.0 * n * MaxAbs(xd) + MaxAbs(bd));
            for (int i = 0; i < Prod(batch); i++)
                Near(bd, i * n * kk, Mul(ab, i * n * n, xd, i * n * kk, n, n, kk), 0, n * kk, tol, $"A x = b batch {i}");
        });
    }

    [Theory, MemberData(nameof(Cases))]
    public void CholeskySolve_matches_solve(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        var gen = from c in MatrixCase from k in G.Choose(0, 4) select (c, k);
        Props.Check(gen, p =>
        {
            var ((batch, n, _, seed, strided), k) = p;
            var x0 = Random([.. batch, n, n], seed, DType.Float64, Device.Cpu);
            var spd = (x0.MatMul(x0.T) + n * Tensor.Eye(n, dtype: DType.Float64)).To(dt).To(dev);
            var l = spd.Cholesky();
            var b = Random([.. batch, n, k], seed + 1, dt, dev);
            var x = (strided ? Transposed(l) : l).CholeskySolve(b);
            var ad = spd.ToDoubleArray(); var bd = b.ToDoubleArray(); var xd = x.ToDoubleArray();
            double tol = Tol(dt, n, MaxAbs(ad) * n * MaxAbs(xd) + MaxAbs(bd));
            for (int i = 0; i < Prod(batch); i++)
                Near(bd, i * n * k, Mul(ad, i * n * n, xd, i * n * k, n, n, k), 0, n * k, tol, $"L Lᵀ x = b batch {i}");
        });
    }

    [Theory, MemberData(nameof(Cases))]
    public void Qr_factors_into_orthonormal_and_upper_triangular(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(MatrixCase, c =>
        {
            var (batch, m, n, seed, strided) = c;
            var a = Random([.. batch, m, n], seed, dt, dev);
            var (q, r) = (strided ? Transposed(a) : a).Qr();
            int k = Math.Min(m, n);
            Assert.Equal(new Shape([.. batch, m, k]), q.Shape);
            Assert.Equal(new Shape([.. batch, k, n]), r.Shape);
            var ad = a.ToDoubleArray(); var qd = q.ToDoubleArray(); var rd = r.ToDoubleArray();
            for (int b = 0; b < Prod(batch); b++)
            {
                Orthonormal(qd, b * m * k, m, k, columns: true, Tol(dt, m, 1), $"QᵀQ batch {b}");
                for (int i = 0; i < k; i++) for (int j = 0; j < i; j++) Assert.Equal(0.0, rd[b * k * n + i * n + j]);
                Near(ad, b * m * n, Mul(qd, b * m * k, rd, b * k * n, m, k, n), 0, m * n, Tol(dt, m, Math.Sqrt(m)), $"Q R batch {b}");
            }
        });
    }

    [Theory, MemberData(nameof(Cases))]
    public void Svd_reconstructs_with_orthonormal_factors(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        var gen = from c in MatrixCase from rankDeficient in G.Elements(true, false) select (c, rankDeficient);
        Props.Check(gen, p =>
        {
            var ((batch, m, n, seed, strided), rankDeficient) = p;
            var a = Random([.. batch, m, n], seed, dt, dev);
            // Repeating the first column (or zeroing everything for one column) makes zero singular values occur.
            if (rankDeficient && n >= 2) a = Tensor.Concat([a.Narrow(-1, 0, 1), a.Narrow(-1, 0, n - 1)], -1);
            else if (rankDeficient) a = a * 0.0;
            var (u, s, vh) = (strided ? Transposed(a) : a).Svd();
            int k = Math.Min(m, n);
            Assert.Equal(new Shape([.. batch, m, k]), u.Shape);
            Assert.Equal(new Shape([.. batch, k]), s.Shape);
            Assert.Equal(new Shape([.. batch, k, n]), vh.Shape);
            var ad = a.ToDoubleArray(); var ud = u.ToDoubleArray(); var sd = s.ToDoubleArray(); var vd = vh.ToDoubleArray();
            for (int b = 0; b < Prod(batch); b++)
            {
                Orthonormal(ud, b * m * k, m, k, columns: true, Tol(dt, Math.Max(m, n), 1), $"UᵀU batch {b}");
                Orthonormal(vd, b * k * n, k, n, columns: false, Tol(dt, Math.Max(m, n), 1), $"Vh Vhᵀ batch {b}");
                for (int i = 0; i < k; i++)
                {
                    Assert.True(sd[b * k + i] >= 0, "singular values are non-negative");
                    if (i > 0) Assert.True(sd[b * k + i] <= sd[b * k + i - 1], "singular values descend");
                }
                var us = new double[m * k];
                for (int i = 0; i < m; i++) for (int j = 0; j < k; j++) us[i * k + j] = ud[b * m * k + i * k + j] * sd[b * k + j];
                Near(ad, b * m * n, Mul(us, 0, vd, b * k * n, m, k, n), 0, m * n, Tol(dt, Math.Max(m, n), Math.Sqrt(m * n)), $"U S Vh batch {b}");
            }
        });
    }

    [Fact]
    public void Svd_completes_u_when_the_left_null_vector_is_spread_out()
    {
        // A = (I - 11ᵀ/m) R has the left null vector 1/sqrt(m): no standard basis vector keeps half its norm outside
        // the other columns' span, so the completion must take the best one rather than the first above a threshold.
        foreach (int m in new[] { 5, 7, 12 })
        {
            var r = RandomF64([m, m], (ulong)m);
            var a = r - Tensor.Ones(new Shape([m, m]), DType.Float64).MatMul(r) / m;
            var (u, s, vh) = a.Svd();
            var ud = u.ToDoubleArray();
            Orthonormal(ud, 0, m, m, columns: true, Tol(DType.Float64, m, 1), $"UᵀU m={m}");
            Assert.True(s.ToDoubleArray()[m - 1] <= 1e-12, $"m={m}: the last singular value should be zero, got {s.ToDoubleArray()[m - 1]:R}");
            double spread = Enumerable.Range(0, m).Max(i => Math.Abs(ud[i * m + m - 1]));
            Assert.True(Math.Abs(spread - 1 / Math.Sqrt(m)) < 1e-12, $"m={m}: U's last column should be ±1/sqrt(m) everywhere, max |u| = {spread:R}");
            var sd = s.ToDoubleArray();
            var us = ud.Select((x, i) => x * sd[i % m]).ToArray();
            Near(a.ToDoubleArray(), 0, Mul(us, 0, vh.ToDoubleArray(), 0, m, m, m), 0, m * m, Tol(DType.Float64, m, m), $"U S Vh m={m}");
        }
    }

    [Fact]
    public void Closed_forms_for_small_matrices()
    {
        // Symmetric 2x2 [[a, b], [b, d]]: eigenvalues (a + d)/2 -/+ sqrt(((a - d)/2)^2 + b^2).
        double a = 3, b = -1.5, d = 0.5;
        var (w, _) = Tensor.FromArray(new[,] { { a, b }, { b, d } }).Eigh();
        double mid = (a + d) / 2, rad = Math.Sqrt((a - d) * (a - d) / 4 + b * b);
        Close.Check([mid - rad, mid + rad], w.ToDoubleArray(), 1e-15, 1e-15, "eigh 2x2");

        // Symmetric 3x3 with the trigonometric closed form (Smith 1961).
        var m3 = new[,] { { 4.0, 1, -2 }, { 1, 2, 0.5 }, { -2, 0.5, 3 } };
        double q = (m3[0, 0] + m3[1, 1] + m3[2, 2]) / 3;
        double p1 = m3[0, 1] * m3[0, 1] + m3[0, 2] * m3[0, 2] + m3[1, 2] * m3[1, 2];
        double p2 = Math.Pow(m3[0, 0] - q, 2) + Math.Pow(m3[1, 1] - q, 2) + Math.Pow(m3[2, 2] - q, 2) + 2 * p1;
        double pp = Math.Sqrt(p2 / 6);
        var bm = new double[3, 3];
        for (int i = 0; i < 3; i++) for (int j = 0; j < 3; j++) bm[i, j] = (m3[i, j] - (i == j ? q : 0)) / pp;
        double detB = bm[0, 0] * (bm[1, 1] * bm[2, 2] - bm[1, 2] * bm[2, 1]) - bm[0, 1] * (bm[1, 0] * bm[2, 2] - bm[1, 2] * bm[2, 0])
            + bm[0, 2] * (bm[1, 0] * bm[2, 1] - bm[1, 1] * bm[2, 0]);
        double phi = Math.Acos(Math.Clamp(detB / 2, -1, 1)) / 3;
        double e1 = q + 2 * pp * Math.Cos(phi), e3 = q + 2 * pp * Math.Cos(phi + 2 * Math.PI / 3), e2 = 3 * q - e1 - e3;
        Close.Check([e3, e2, e1], Tensor.FromArray(m3).Eigh().Eigenvalues.ToDoubleArray(), 1e-13, 1e-13, "eigh 3x3");

        // Cholesky of [[a, b], [b, d]]: l11 = sqrt(a), l21 = b / l11, l22 = sqrt(d - l21^2).
        double ca = 4, cb = 2, cd = 5;
        double l11 = Math.Sqrt(ca), l21 = cb / l11, l22 = Math.Sqrt(cd - l21 * l21);
        Close.Check([l11, 0, l21, l22], Tensor.FromArray(new[,] { { ca, cb }, { cb, cd } }).Cholesky().ToDoubleArray(), 1e-15, 1e-15, "cholesky 2x2");

        // Cramer's rule for 2x2 and 3x3 systems (the 3x3 one needs a row swap: its (0, 0) entry is 0).
        double[,] s2 = { { 2, 1 }, { 5, 3 } };
        double det2 = s2[0, 0] * s2[1, 1] - s2[0, 1] * s2[1, 0];
        double[] r2 = [4, 7];
        Close.Check([(r2[0] * s2[1, 1] - s2[0, 1] * r2[1]) / det2, (s2[0, 0] * r2[1] - r2[0] * s2[1, 0]) / det2],
            Tensor.FromArray(s2).Solve(Tensor.FromArray(r2)).ToDoubleArray(), 1e-14, 1e-14, "solve 2x2");
        double[,] s3 = { { 0, 2, 1 }, { 1, -1, 3 }, { 4, 0, -2 } };
        double[] r3 = [1, 2, 3];
        double Det(double[,] mm) => mm[0, 0] * (mm[1, 1] * mm[2, 2] - mm[1, 2] * mm[2, 1]) - mm[0, 1] * (mm[1, 0] * mm[2, 2] - mm[1, 2] * mm[2, 0])
            + mm[0, 2] * (mm[1, 0] * mm[2, 1] - mm[1, 1] * mm[2, 0]);
        var cramer = Enumerable.Range(0, 3).Select(col =>
        {
            var mm = (double[,])s3.Clone();
            for (int i = 0; i < 3; i++) mm[i, col] = r3[i];
            return Det(mm) / Det(s3);
        }).ToArray();
        Close.Check(cramer, Tensor.FromArray(s3).Solve(Tensor.FromArray(r3)).ToDoubleArray(), 1e-14, 1e-14, "solve 3x3");

        // Singular values of a 2x2 are the square roots of the eigenvalues of AᵀA.
        double[,] g = { { 3, 1 }, { -2, 4 } };
        double t11 = g[0, 0] * g[0, 0] + g[1, 0] * g[1, 0], t22 = g[0, 1] * g[0, 1] + g[1, 1] * g[1, 1], t12 = g[0, 0] * g[0, 1] + g[1, 0] * g[1, 1];
        double tm = (t11 + t22) / 2, tr = Math.Sqrt((t11 - t22) * (t11 - t22) / 4 + t12 * t12);
        Close.Check([Math.Sqrt(tm + tr), Math.Sqrt(tm - tr)], Tensor.FromArray(g).Svd().S.ToDoubleArray(), 1e-14, 1e-14, "svd 2x2");

        // QR of a 2x2: |R_00| is the first column's norm, |det R| = |det A|.
        var (_, rr) = Tensor.FromArray(g).Qr();
        var rv = rr.ToDoubleArray();
        Close.Check([Math.Sqrt(t11), Math.Abs(g[0, 0] * g[1, 1] - g[0, 1] * g[1, 0])], [Math.Abs(rv[0]), Math.Abs(rv[0] * rv[3])], 1e-14, 1e-14, "qr 2x2");
    }

    static Tensor Sym(Tensor x) => 0.5 * (x + x.T);

    static Tensor RandomF64(int[] shape, ulong seed) => Tensor.Rand(new Shape(shape), new Generator(seed), -1, 1, DType.Float64);

    [Fact]
    public void Solve_gradient()
    {
        var a = RandomF64([2, 3, 3], 1) + 3.0 * Tensor.Eye(3, dtype: DType.Float64);
        var b = RandomF64([3, 2], 2);
        var r = GradCheck.Run(x => x[0].Solve(x[1]), [a, b]);
        Assert.True(r.Passed, r.ToString());
        var bv = RandomF64([3], 3);
        r = GradCheck.Run(x => x[0].Solve(x[1]), [a.Narrow(0, 0, 1).Squeeze(0), bv]);
        Assert.True(r.Passed, r.ToString());
    }

    [Fact]
    public void Solve_gradient_of_gradient()
    {
        // Second derivatives flow because the backward rule is itself written in differentiable ops: the Hessian-vector
        // product must match central differences of the gradient.
        var b = RandomF64([3, 2], 5);
        var a0 = RandomF64([3, 3], 4) + 3.0 * Tensor.Eye(3, dtype: DType.Float64);
        var dir = RandomF64([3, 3], 6);
        var hv = Autograd.Hvp(x => x.Solve(b).Square().Sum(), a0, dir);
        Tensor Grad(Tensor at) { var xi = at.Detach().RequiresGrad_(); return Autograd.Grad(xi.Solve(b).Square().Sum(), xi); }
        const double eps = 1e-5;
        var fd = (Grad(a0 + eps * dir) - Grad(a0 - eps * dir)) / (2 * eps);
        Close.Check(fd, hv, 1e-6, 1e-8, "Hessian-vector product of a solve");
    }

    [Fact]
    public void Cholesky_gradient()
    {
        var x0 = RandomF64([2, 4, 4], 7);
        var spd = x0.MatMul(x0.T) + 4.0 * Tensor.Eye(4, dtype: DType.Float64);
        var r = GradCheck.Run(x => Sym(x[0]).Cholesky(), [spd]);
        Assert.True(r.Passed, r.ToString());
    }

    [Fact]
    public void CholeskySolve_gradient()
    {
        var x0 = RandomF64([3, 3], 8);
        var l = (x0.MatMul(x0.T) + 3.0 * Tensor.Eye(3, dtype: DType.Float64)).Cholesky();
        var b = RandomF64([2, 3, 2], 9);
        var r = GradCheck.Run(x => x[0].CholeskySolve(x[1]), [l, b]);
        Assert.True(r.Passed, r.ToString());
    }

    [Fact]
    public void Eigh_gradient_for_distinct_eigenvalues()
    {
        // diag(1, 2, 3, 4) plus a small symmetric perturbation: well separated eigenvalues.
        var a = Tensor.FromArray(new double[] { 1, 2, 3, 4 }).Unsqueeze(0) * Tensor.Eye(4, dtype: DType.Float64) + 0.3 * Sym(RandomF64([2, 4, 4], 10));
        var rw = GradCheck.Run(x => Sym(x[0]).Eigh().Eigenvalues, [a]);
        Assert.True(rw.Passed, "eigenvalues: " + rw);
        var rv = GradCheck.Run(x => Sym(x[0]).Eigh().Eigenvectors, [a]);
        Assert.True(rv.Passed, "eigenvectors: " + rv);
        var both = GradCheck.Run(x => { var (w, v) = Sym(x[0]).Eigh(); return v * w.Unsqueeze(-2); }, [a]);
        Assert.True(both.Passed, "both: " + both);
    }

    [Fact]
    public void Bad_inputs_are_rejected_clearly()
    {
        var rect = Tensor.Zeros(new Shape(2, 3), DType.Float64);
        Assert.Throws<ShapeMismatchException>(() => rect.Eigh());
        Assert.Throws<ShapeMismatchException>(() => rect.Cholesky());
        Assert.Throws<ShapeMismatchException>(() => rect.Solve(Tensor.Zeros(new Shape(2), DType.Float64)));
        Assert.Throws<ShapeMismatchException>(() => Tensor.Zeros(new Shape(3), DType.Float64).Qr());
        Assert.Throws<ShapeMismatchException>(() => Tensor.Eye(3, dtype: DType.Float64).Solve(Tensor.Zeros(new Shape(4, 1), DType.Float64)));

        var nonSym = Tensor.FromArray(new[,] { { 2.0, 1 }, { 0, 2 } });
        var e = Assert.Throws<ArgumentException>(() => nonSym.Eigh());
        Assert.Contains("not symmetric", e.Message);
        Assert.Throws<ArgumentException>(() => nonSym.Cholesky());

        var indefinite = Tensor.FromArray(new[,] { { 1.0, 2, 0 }, { 2, 1, 0 }, { 0, 0, 1 } });
        e = Assert.Throws<ArgumentException>(() => indefinite.Cholesky());
        Assert.Contains("not positive definite: pivot 1 is -3", e.Message);

        var singular = Tensor.FromArray(new[,] { { 1.0, 2 }, { 3, 6 } });
        e = Assert.Throws<ArgumentException>(() => singular.Solve(Tensor.FromArray(new[] { 1.0, 1 })));
        Assert.Contains("singular", e.Message);
        Assert.Contains("column 1", e.Message);
        e = Assert.Throws<ArgumentException>(() => Tensor.Zeros(new Shape(2, 2), DType.Float64).CholeskySolve(Tensor.Ones(new Shape(2), DType.Float64)));
        Assert.Contains("diagonal position 0", e.Message);

        Assert.Throws<ArgumentException>(() => Tensor.FromArray(new[,] { { double.NaN, 0 }, { 0, 1 } }).Svd());
        Assert.Throws<NotSupportedException>(() => Tensor.Zeros(new Shape(2, 2), DType.Int32).Eigh());
        Assert.Throws<ArgumentException>(() => Tensor.Eye(2, dtype: DType.Float64).Solve(Tensor.Ones(new Shape(2), DType.Float32)));

        var x = RandomF64([3, 3], 11).RequiresGrad_();
        Assert.Throws<NotSupportedException>(() => x.Svd().S.Sum().Backward());
        Assert.Throws<NotSupportedException>(() => x.Qr().R.Sum().Backward());
    }
}
