namespace Kiln.Tests.TestKit;

/// <summary>
/// Float64 dense matrix math on row-major host arrays, written out with loops: the references of the matrix-function
/// and optimizer tests (products, Jacobi eigendecomposition, symmetric powers, polar factors), independent of Kiln's ops.
/// </summary>
public static class Dense
{
    /// <summary>C = A B for A [m, k], B [k, n].</summary>
    public static double[] Mul(double[] a, double[] b, int m, int k, int n)
    {
        var c = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int p = 0; p < k; p++)
            {
                double x = a[i * k + p];
                for (int j = 0; j < n; j++) c[i * n + j] += x * b[p * n + j];
            }
        return c;
    }

    /// <summary>Aᵀ for A [m, n].</summary>
    public static double[] T(double[] a, int m, int n)
    {
        var t = new double[m * n];
        for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) t[j * m + i] = a[i * n + j];
        return t;
    }

    /// <summary>The n x n identity.</summary>
    public static double[] Eye(int n)
    {
        var e = new double[n * n];
        for (int i = 0; i < n; i++) e[i * n + i] = 1;
        return e;
    }

    /// <summary>Element-wise a + s b.</summary>
    public static double[] Add(double[] a, double[] b, double s = 1) => a.Select((x, i) => x + s * b[i]).ToArray();

    /// <summary><paramref name="len"/> draws uniform in [lo, hi) from <paramref name="r"/>.</summary>
    public static double[] Uniform(Random r, int len, double lo = -1, double hi = 1) => Enumerable.Range(0, len).Select(_ => lo + (hi - lo) * r.NextDouble()).ToArray();

    /// <summary>Element-wise s a.</summary>
    public static double[] Scale(double[] a, double s) => a.Select(x => s * x).ToArray();

    /// <summary>max |a_i - b_i|.</summary>
    public static double MaxDiff(double[] a, double[] b) => a.Length == 0 ? 0 : a.Select((x, i) => Math.Abs(x - b[i])).Max();

    /// <summary>max |a_i|.</summary>
    public static double MaxAbs(double[] a) => a.Length == 0 ? 0 : a.Max(Math.Abs);

    /// <summary>Eigenvalues w and eigenvectors (columns of V) of the symmetric n x n A (the reference's cyclic Jacobi).</summary>
    public static (double[] W, double[] V) Eigh(double[] a, int n) => Kiln.Kernels.Reference.JacobiEighVectors(a, n);

    /// <summary>V diag(f(w)) Vᵀ for the symmetric n x n A.</summary>
    public static double[] SymFunction(double[] a, int n, Func<double, double> f)
    {
        var (w, v) = Eigh(a, n);
        var r = new double[n * n];
        for (int k = 0; k < n; k++)
        {
            double fk = f(w[k]);
            for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) r[i * n + j] += v[i * n + k] * fk * v[j * n + k];
        }
        return r;
    }

    /// <summary>(A + eps I)^p of the symmetric PSD A; eigenvalues at or below cutoff · max count as zero and map to 0.</summary>
    public static double[] SymPow(double[] a, int n, double p, double eps = 0, double cutoff = -1)
    {
        double max = n == 0 ? 0 : Eigh(a, n).W.Max(x => Math.Max(x, 0) + eps);
        return SymFunction(a, n, w => { double s = Math.Max(w, 0) + eps; return s > cutoff * max && s > 0 ? Math.Pow(s, p) : 0; });
    }

    /// <summary>The orthogonal polar factor U Vᵀ of the full-rank G [m, n]: G (GᵀG)^(-1/2), or (GGᵀ)^(-1/2) G when m &lt; n.</summary>
    public static double[] Polar(double[] g, int m, int n) =>
        m >= n ? Mul(g, SymPow(Mul(T(g, m, n), g, n, m, n), n, -0.5), m, n, n)
               : Mul(SymPow(Mul(g, T(g, m, n), m, n, m), m, -0.5), g, m, m, n);

    /// <summary>Singular values (descending) of G [m, n].</summary>
    public static double[] SingularValues(double[] g, int m, int n) =>
        Eigh(Mul(T(g, m, n), g, n, m, n), n).W.Select(x => Math.Sqrt(Math.Max(x, 0))).OrderDescending().Take(Math.Min(m, n)).ToArray();
}
