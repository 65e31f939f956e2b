namespace Kiln.Kernels.Cpu;

/// <summary>
/// Dense float64 matrix decompositions of one row-major matrix at a time (callers loop over batches): Cholesky, LU with
/// partial pivoting and its solves, Householder QR, symmetric eigendecomposition (Householder tridiagonalization and
/// implicit QL, after EISPACK tred2/tql2 as in JAMA), and SVD by one-sided Jacobi. References: the eigensolver is checked
/// against <see cref="Reference.JacobiEigh"/>; the others against their defining identities (A = L Lᵀ, A = Q R with
/// orthonormal Q, U S Vᵀ = A, A x = b) and closed forms in the tests. Inputs are assumed finite (the caller checks).
/// </summary>
public static class Decompositions
{
    const double Eps = 2.220446049250313e-16;

    /// <summary>
    /// Lower Cholesky factor of the symmetric matrix <paramref name="a"/> (n x n; only its lower triangle is read) into
    /// <paramref name="l"/> (upper triangle zeroed). Returns -1 on success, else the index of the first pivot whose
    /// value a_jj - sum_k l_jk^2 (written to <paramref name="pivot"/>) is not positive.
    /// </summary>
    public static int Cholesky(ReadOnlySpan<double> a, Span<double> l, int n, out double pivot)
    {
        l[..(n * n)].Clear();
        pivot = 0;
        for (int j = 0; j < n; j++)
        {
            double d = a[j * n + j];
            for (int k = 0; k < j; k++) d -= l[j * n + k] * l[j * n + k];
            if (!(d > 0)) { pivot = d; return j; }
            double ljj = Math.Sqrt(d);
            l[j * n + j] = ljj;
            for (int i = j + 1; i < n; i++)
            {
                double s = a[i * n + j];
                for (int k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
                l[i * n + j] = s / ljj;
            }
        }
        return -1;
    }

    /// <summary>
    /// In-place LU factorization with partial pivoting of <paramref name="lu"/> (n x n): afterwards it holds unit-lower L
    /// below the diagonal and U on and above it, and row i of P A is row <paramref name="perm"/>[i] of A. The
    /// factorization always completes (as LAPACK's getrf does: a column with no nonzero pivot is left as it is, giving a
    /// zero on U's diagonal), so the determinant of a singular matrix comes out as 0. Returns -1, or the first column
    /// whose pivot is at most n·ε times the largest magnitude in that column of A (singular to working precision).
    /// </summary>
    public static int Lu(Span<double> lu, Span<int> perm, int n)
    {
        Span<double> colMax = n <= 256 ? stackalloc double[n] : new double[n];
        for (int j = 0; j < n; j++)
        {
            double m = 0;
            for (int i = 0; i < n; i++) m = Math.Max(m, Math.Abs(lu[i * n + j]));
            colMax[j] = m;
        }
        for (int i = 0; i < n; i++) perm[i] = i;
        int singular = -1;
        for (int k = 0; k < n; k++)
        {
            int p = k;
            double best = Math.Abs(lu[k * n + k]);
            for (int i = k + 1; i < n; i++)
            {
                double v = Math.Abs(lu[i * n + k]);
                if (v > best) { best = v; p = i; }
            }
            if (singular < 0 && !(best > n * Eps * colMax[k])) singular = k;
            // Nothing to eliminate below an exact zero pivot: the column is zero from row k down.
            if (best == 0) continue;
            if (p != k)
            {
                for (int j = 0; j < n; j++) (lu[k * n + j], lu[p * n + j]) = (lu[p * n + j], lu[k * n + j]);
                (perm[k], perm[p]) = (perm[p], perm[k]);
            }
            double inv = 1.0 / lu[k * n + k];
            for (int i = k + 1; i < n; i++)
            {
                double f = lu[i * n + k] * inv;
                lu[i * n + k] = f;
                if (f == 0) continue;
                for (int j = k + 1; j < n; j++) lu[i * n + j] -= f * lu[k * n + j];
            }
        }
        return singular;
    }

    /// <summary>Solves A X = B in place in <paramref name="b"/> (n x k, row-major) from the factors of <see cref="Lu"/>.</summary>
    public static void LuSolve(ReadOnlySpan<double> lu, ReadOnlySpan<int> perm, Span<double> b, int n, int k)
    {
        var x = new double[n * k];
        for (int i = 0; i < n; i++) b.Slice(perm[i] * k, k).CopyTo(x.AsSpan(i * k, k));
        // Forward substitution with unit-lower L, then back substitution with U.
        for (int i = 0; i < n; i++)
            for (int p = 0; p < i; p++)
            {
                double f = lu[i * n + p];
                if (f != 0) for (int c = 0; c < k; c++) x[i * k + c] -= f * x[p * k + c];
            }
        for (int i = n - 1; i >= 0; i--)
        {
            for (int p = i + 1; p < n; p++)
            {
                double f = lu[i * n + p];
                if (f != 0) for (int c = 0; c < k; c++) x[i * k + c] -= f * x[p * k + c];
            }
            double inv = 1.0 / lu[i * n + i];
            for (int c = 0; c < k; c++) x[i * k + c] *= inv;
        }
        x.AsSpan().CopyTo(b);
    }

    /// <summary>Solves L Lᵀ X = B in place in <paramref name="b"/> (n x k) given the lower factor <paramref name="l"/> (only its lower triangle is read).</summary>
    public static void CholeskySolve(ReadOnlySpan<double> l, Span<double> b, int n, int k)
    {
        for (int i = 0; i < n; i++)
        {
            for (int p = 0; p < i; p++)
            {
                double f = l[i * n + p];
                if (f != 0) for (int c = 0; c < k; c++) b[i * k + c] -= f * b[p * k + c];
            }
            double inv = 1.0 / l[i * n + i];
            for (int c = 0; c < k; c++) b[i * k + c] *= inv;
        }
        for (int i = n - 1; i >= 0; i--)
        {
            for (int p = i + 1; p < n; p++)
            {
                double f = l[p * n + i];
                if (f != 0) for (int c = 0; c < k; c++) b[i * k + c] -= f * b[p * k + c];
            }
            double inv = 1.0 / l[i * n + i];
            for (int c = 0; c < k; c++) b[i * k + c] *= inv;
        }
    }

    /// <summary>
    /// Reduced Householder QR of <paramref name="a"/> (m x n): <paramref name="q"/> (m x r, orthonormal columns) and
    /// <paramref name="r"/> (r x n, upper triangular) with r = min(m, n) and A = Q R. R's diagonal is non-negative
    /// (row i of R and column i of Q are negated where Householder left it negative), which makes the factors unique for
    /// a matrix of full column rank: R is then the transposed Cholesky factor of AᵀA.
    /// </summary>
    public static void Qr(ReadOnlySpan<double> a, int m, int n, Span<double> q, Span<double> r)
    {
        int kk = Math.Min(m, n);
        var w = a[..(m * n)].ToArray();
        var vs = new double[kk][];
        for (int j = 0; j < kk; j++)
        {
            double norm = 0;
            for (int i = j; i < m; i++) norm += w[i * n + j] * w[i * n + j];
            norm = Math.Sqrt(norm);
            if (norm == 0) continue;
            double alpha = w[j * n + j] > 0 ? -norm : norm;
            var v = new double[m - j];
            for (int i = j; i < m; i++) v[i - j] = w[i * n + j];
            v[0] -= alpha;
            double vn = 0;
            foreach (double x in v) vn += x * x;
            vn = Math.Sqrt(vn);
            if (vn == 0) continue;
            for (int i = 0; i < v.Length; i++) v[i] /= vn;
            vs[j] = v;
            ReflectRows(v, w, j, m, n, j);
        }
        // Q = H_0 ... H_{r-1} applied to the first r columns of the identity.
        var qq = new double[m * kk];
        for (int i = 0; i < kk; i++) qq[i * kk + i] = 1;
        for (int j = kk - 1; j >= 0; j--) if (vs[j] is { } v) ReflectRows(v, qq, j, m, kk, 0);
        r[..(kk * n)].Clear();
        for (int i = 0; i < kk; i++)
        {
            double sign = w[i * n + i] < 0 ? -1 : 1;
            for (int j = i; j < n; j++) r[i * n + j] = sign * w[i * n + j];
            if (sign < 0) for (int row = 0; row < m; row++) qq[row * kk + i] = -qq[row * kk + i];
        }
        qq.AsSpan().CopyTo(q);
    }

    // X[j:, c0:] -= 2 v (vᵀ X[j:, c0:]) for X with `cols` columns (a Householder reflection of rows j..m-1), row by row
    // so both passes stream through contiguous memory.
    static void ReflectRows(double[] v, double[] x, int j, int m, int cols, int c0)
    {
        int w = cols - c0;
        if (w <= 0) return;
        var s = new double[w];
        for (int i = j; i < m; i++)
        {
            double vi = v[i - j];
            if (vi == 0) continue;
            var row = x.AsSpan(i * cols + c0, w);
            for (int c = 0; c < w; c++) s[c] += vi * row[c];
        }
        for (int i = j; i < m; i++)
        {
            double vi = 2 * v[i - j];
            if (vi == 0) continue;
            var row = x.AsSpan(i * cols + c0, w);
            for (int c = 0; c < w; c++) row[c] -= vi * s[c];
        }
    }

    /// <summary>
    /// Eigendecomposition of the symmetric matrix <paramref name="a"/> (n x n; both triangles must agree): eigenvalues
    /// ascending in <paramref name="w"/>, orthonormal eigenvectors as the columns of <paramref name="v"/> (n x n), each
    /// signed so that its largest-magnitude component (the first of equal ones) is positive. Returns false when the QL
    /// iteration did not converge in 30 n sweeps.
    /// </summary>
    public static bool Eigh(ReadOnlySpan<double> a, int n, Span<double> w, Span<double> v)
    {
        if (n == 0) return true;
        var vv = a[..(n * n)].ToArray();
        var d = new double[n];
        var e = new double[n];
        Tred2(vv, d, e, n);
        // QL rotates pairs of V's columns: work on Vᵀ so each rotation touches two contiguous rows.
        Transpose(vv, n);
        if (!Tql2(vv, d, e, n)) return false;
        Transpose(vv, n);
        d.AsSpan().CopyTo(w);
        FixColumnSigns(vv, n, n);
        vv.AsSpan().CopyTo(v);
        return true;
    }

    // Householder reduction to tridiagonal form (EISPACK tred2, as in JAMA): V becomes the accumulated transform,
    // d the diagonal and e the sub-diagonal (e[0] = 0).
    static void Tred2(double[] V, double[] d, double[] e, int n)
    {
        for (int j = 0; j < n; j++) d[j] = V[(n - 1) * n + j];
        for (int i = n - 1; i > 0; i--)
        {
            double scale = 0, h = 0;
            for (int k = 0; k < i; k++) scale += Math.Abs(d[k]);
            if (scale == 0)
            {
                e[i] = d[i - 1];
                for (int j = 0; j < i; j++) { d[j] = V[(i - 1) * n + j]; V[i * n + j] = 0; V[j * n + i] = 0; }
            }
            else
            {
                for (int k = 0; k < i; k++) { d[k] /= scale; h += d[k] * d[k]; }
                double f = d[i - 1];
                double g = Math.Sqrt(h);
                if (f > 0) g = -g;
                e[i] = scale * g;
                h -= f * g;
                d[i - 1] = f - g;
                for (int j = 0; j < i; j++) e[j] = 0;
                for (int j = 0; j < i; j++)
                {
                    f = d[j];
                    V[j * n + i] = f;
                    g = e[j] + V[j * n + j] * f;
                    for (int k = j + 1; k <= i - 1; k++)
                    {
                        g += V[k * n + j] * d[k];
                        e[k] += V[k * n + j] * f;
                    }
                    e[j] = g;
                }
                f = 0;
                for (int j = 0; j < i; j++) { e[j] /= h; f += e[j] * d[j]; }
                double hh = f / (h + h);
                for (int j = 0; j < i; j++) e[j] -= hh * d[j];
                for (int j = 0; j < i; j++)
                {
                    f = d[j]; g = e[j];
                    for (int k = j; k <= i - 1; k++) V[k * n + j] -= f * e[k] + g * d[k];
                    d[j] = V[(i - 1) * n + j];
                    V[i * n + j] = 0;
                }
            }
            d[i] = h;
        }
        for (int i = 0; i < n - 1; i++)
        {
            V[(n - 1) * n + i] = V[i * n + i];
            V[i * n + i] = 1;
            double h = d[i + 1];
            if (h != 0)
            {
                for (int k = 0; k <= i; k++) d[k] = V[k * n + i + 1] / h;
                for (int j = 0; j <= i; j++)
                {
                    double g = 0;
                    for (int k = 0; k <= i; k++) g += V[k * n + i + 1] * V[k * n + j];
                    for (int k = 0; k <= i; k++) V[k * n + j] -= g * d[k];
                }
            }
            for (int k = 0; k <= i; k++) V[k * n + i + 1] = 0;
        }
        for (int j = 0; j < n; j++) { d[j] = V[(n - 1) * n + j]; V[(n - 1) * n + j] = 0; }
        V[(n - 1) * n + n - 1] = 1;
        e[0] = 0;
    }

    // Implicit QL on the tridiagonal (d, e) accumulating into Vt, the transpose of the eigenvector matrix (EISPACK tql2,
    // as in JAMA); sorts ascending.
    static bool Tql2(double[] Vt, double[] d, double[] e, int n)
    {
        for (int i = 1; i < n; i++) e[i - 1] = e[i];
        e[n - 1] = 0;
        double f = 0, tst1 = 0;
        for (int l = 0; l < n; l++)
        {
            tst1 = Math.Max(tst1, Math.Abs(d[l]) + Math.Abs(e[l]));
            int m = l;
            while (m < n - 1 && !(Math.Abs(e[m]) <= Eps * tst1)) m++;
            if (m > l)
            {
                int iter = 0;
                do
                {
                    if (++iter > 30 * n + 30) return false;
                    double g = d[l];
                    double p = (d[l + 1] - g) / (2 * e[l]);
                    double r = double.Hypot(p, 1);
                    if (p < 0) r = -r;
                    d[l] = e[l] / (p + r);
                    d[l + 1] = e[l] * (p + r);
                    double dl1 = d[l + 1];
                    double h = g - d[l];
                    for (int i = l + 2; i < n; i++) d[i] -= h;
                    f += h;
                    p = d[m];
                    double c = 1, c2 = c, c3 = c;
                    double el1 = e[l + 1];
                    double s = 0, s2 = 0;
                    for (int i = m - 1; i >= l; i--)
                    {
                        c3 = c2; c2 = c; s2 = s;
                        g = c * e[i];
                        h = c * p;
                        r = double.Hypot(p, e[i]);
                        e[i + 1] = s * r;
                        s = e[i] / r;
                        c = p / r;
                        p = c * d[i] - s * g;
                        d[i + 1] = h + s * (c * g + s * d[i]);
                        var vi = Vt.AsSpan(i * n, n);
                        var vi1 = Vt.AsSpan((i + 1) * n, n);
                        for (int k = 0; k < n; k++)
                        {
                            h = vi1[k];
                            vi1[k] = s * vi[k] + c * h;
                            vi[k] = c * vi[k] - s * h;
                        }
                    }
                    p = -s * s2 * c3 * el1 * e[l] / dl1;
                    e[l] = s * p;
                    d[l] = c * p;
                } while (Math.Abs(e[l]) > Eps * tst1);
            }
            d[l] += f;
            e[l] = 0;
        }
        for (int i = 0; i < n - 1; i++)
        {
            int k = i;
            double p = d[i];
            for (int j = i + 1; j < n; j++) if (d[j] < p) { k = j; p = d[j]; }
            if (k == i) continue;
            d[k] = d[i]; d[i] = p;
            for (int j = 0; j < n; j++) (Vt[i * n + j], Vt[k * n + j]) = (Vt[k * n + j], Vt[i * n + j]);
        }
        return true;
    }

    static void Transpose(double[] x, int n)
    {
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) (x[i * n + j], x[j * n + i]) = (x[j * n + i], x[i * n + j]);
    }

    // Signs each column of the rows x cols matrix x so its largest-magnitude entry (the first of equal ones) is
    // positive: a deterministic choice that is stable under small perturbations of a generic matrix.
    static void FixColumnSigns(double[] x, int rows, int cols)
    {
        for (int c = 0; c < cols; c++)
        {
            int best = 0;
            for (int i = 1; i < rows; i++) if (Math.Abs(x[i * cols + c]) > Math.Abs(x[best * cols + c])) best = i;
            if (x[best * cols + c] < 0) for (int i = 0; i < rows; i++) x[i * cols + c] = -x[i * cols + c];
        }
    }

    /// <summary>
    /// Reduced singular value decomposition A = U diag(S) Vᵀ of <paramref name="a"/> (m x n) by one-sided Jacobi:
    /// <paramref name="u"/> (m x r, orthonormal columns), <paramref name="s"/> (r, descending, non-negative) and
    /// <paramref name="vt"/> (r x n, orthonormal rows) with r = min(m, n). Columns of U for zero singular values are
    /// completed to an orthonormal set. Signs: each column of U has its largest-magnitude component (the first of equal
    /// ones) positive, and the matching row of Vᵀ is signed to keep A = U S Vᵀ. Returns false when 60 sweeps did not
    /// converge.
    /// </summary>
    public static bool Svd(ReadOnlySpan<double> a, int m, int n, Span<double> u, Span<double> s, Span<double> vt)
    {
        if (!SvdUnsigned(a, m, n, u, s, vt)) return false;
        int r = Math.Min(m, n);
        for (int c = 0; c < r; c++)
        {
            int best = 0;
            for (int i = 1; i < m; i++) if (Math.Abs(u[i * r + c]) > Math.Abs(u[best * r + c])) best = i;
            if (u[best * r + c] >= 0) continue;
            for (int i = 0; i < m; i++) u[i * r + c] = -u[i * r + c];
            for (int j = 0; j < n; j++) vt[c * n + j] = -vt[c * n + j];
        }
        return true;
    }

    static bool SvdUnsigned(ReadOnlySpan<double> a, int m, int n, Span<double> u, Span<double> s, Span<double> vt)
    {
        if (m >= n) return SvdTall(a[..(m * n)].ToArray(), m, n, u, s, vt);
        // A = (Aᵀ)ᵀ: the SVD of the tall Aᵀ = U' S V'ᵀ gives A = V' S U'ᵀ.
        var at = new double[n * m];
        for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) at[j * m + i] = a[i * n + j];
        var u2 = new double[n * m];
        var vt2 = new double[m * m];
        if (!SvdTall(at, n, m, u2, s, vt2)) return false;
        for (int i = 0; i < m; i++) for (int j = 0; j < m; j++) u[i * m + j] = vt2[j * m + i];
        for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) vt[i * n + j] = u2[j * m + i];
        return true;
    }

    // One-sided Jacobi on the columns of a tall w (m x n, m >= n): rotate column pairs until all are orthogonal. The
    // columns of W and V are kept as the contiguous rows of their transposes, so each rotation streams two rows.
    static bool SvdTall(double[] w, int m, int n, Span<double> u, Span<double> s, Span<double> vt)
    {
        var wt = new double[n * m];
        for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) wt[j * m + i] = w[i * n + j];
        var vr = new double[n * n];
        for (int i = 0; i < n; i++) vr[i * n + i] = 1;
        bool converged = n <= 1;
        for (int sweep = 0; sweep < 60 && !converged; sweep++)
        {
            converged = true;
            for (int p = 0; p < n - 1; p++)
                for (int q = p + 1; q < n; q++)
                {
                    var wp = wt.AsSpan(p * m, m);
                    var wq = wt.AsSpan(q * m, m);
                    double alpha = 0, beta = 0, gamma = 0;
                    for (int i = 0; i < m; i++)
                    {
                        double x = wp[i], y = wq[i];
                        alpha += x * x; beta += y * y; gamma += x * y;
                    }
                    if (gamma == 0 || Math.Abs(gamma) <= Eps * Math.Sqrt(alpha * beta)) continue;
                    converged = false;
                    double zeta = (beta - alpha) / (2 * gamma);
                    // tan of the rotation angle, the smaller root of t^2 + 2 zeta t - 1 = 0 (1 / 2zeta where zeta^2 would overflow).
                    double t = zeta == 0 ? 1 : Math.Abs(zeta) > 1e150 ? 0.5 / zeta
                        : Math.Sign(zeta) / (Math.Abs(zeta) + Math.Sqrt(1 + zeta * zeta));
                    double c = 1 / Math.Sqrt(1 + t * t), sn = c * t;
                    Rotate(wp, wq, c, sn);
                    Rotate(vr.AsSpan(p * n, n), vr.AsSpan(q * n, n), c, sn);
                }
        }
        if (!converged) return false;
        var norms = new double[n];
        for (int j = 0; j < n; j++)
        {
            double ss = 0;
            foreach (double x in wt.AsSpan(j * m, m)) ss += x * x;
            norms[j] = Math.Sqrt(ss);
        }
        var order = Enumerable.Range(0, n).OrderByDescending(j => norms[j]).ThenBy(j => j).ToArray();
        double tiny = (norms.Length == 0 ? 0 : norms.Max()) * Math.Max(m, n) * Eps;
        var uu = new double[m * n];
        var isZero = new bool[n];
        for (int c = 0; c < n; c++)
        {
            int j = order[c];
            s[c] = norms[j];
            isZero[c] = norms[j] <= tiny;
            if (!isZero[c]) for (int i = 0; i < m; i++) uu[i * n + c] = wt[j * m + i] / norms[j];
            vr.AsSpan(j * n, n).CopyTo(vt.Slice(c * n, n));
        }
        CompleteColumns(uu, m, n, isZero);
        uu.AsSpan().CopyTo(u);
        return true;
    }

    // (x, y) <- (c x - s y, s x + c y) elementwise.
    static void Rotate(Span<double> x, Span<double> y, double c, double s)
    {
        for (int i = 0; i < x.Length; i++)
        {
            double a = x[i], b = y[i];
            x[i] = c * a - s * b;
            y[i] = s * a + c * b;
        }
    }

    // Replaces the flagged columns of x (m x k) by unit vectors orthogonal to all others: each is the standard basis
    // vector with the largest part outside the others' span, projected out twice for stability. Some basis vector
    // keeps at least 1/sqrt(m) of its norm (the parts' squares add up to the complement's dimension, at least 1), so a
    // fixed threshold would fail for larger m.
    static void CompleteColumns(double[] x, int m, int k, bool[] replace)
    {
        for (int c = 0; c < k; c++) if (replace[c]) for (int i = 0; i < m; i++) x[i * k + c] = 0;
        var cand = new double[m];
        var best = new double[m];
        for (int c = 0; c < k; c++)
        {
            if (!replace[c]) continue;
            double bestNorm = -1;
            for (int basis = 0; basis < m; basis++)
            {
                Array.Clear(cand);
                cand[basis] = 1;
                for (int pass = 0; pass < 2; pass++)
                    for (int o = 0; o < k; o++)
                    {
                        if (o == c) continue;
                        double dot = 0;
                        for (int i = 0; i < m; i++) dot += cand[i] * x[i * k + o];
                        for (int i = 0; i < m; i++) cand[i] -= dot * x[i * k + o];
                    }
                double nrm = 0;
                foreach (double z in cand) nrm += z * z;
                nrm = Math.Sqrt(nrm);
                if (nrm > bestNorm) { bestNorm = nrm; cand.CopyTo(best, 0); }
            }
            for (int i = 0; i < m; i++) x[i * k + c] = best[i] / bestNorm;
        }
    }
}
