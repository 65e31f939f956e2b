namespace Kiln.Methods.Reward;

/// <summary>
/// Eigenvalues of a real symmetric tridiagonal matrix by the implicit QL iteration with Wilkinson shifts (the classic
/// tqli), tracking only the first component of each eigenvector: all Golub-Welsch needs for quadrature weights.
/// </summary>
internal static class Tridiagonal
{
    /// <summary>
    /// Eigen-decomposition of the n x n matrix with diagonal <paramref name="diagonal"/> and off-diagonal
    /// <paramref name="offDiagonal"/> (length n-1, entry i couples rows i and i+1). Returns the eigenvalues in ascending
    /// order and the first component of each unit eigenvector (sign arbitrary).
    /// </summary>
    /// <exception cref="ArgumentException">The off-diagonal length is not n-1.</exception>
    /// <exception cref="ArithmeticException">The iteration did not converge (non-finite input).</exception>
    public static (double[] Values, double[] FirstComponents) Eigen(double[] diagonal, double[] offDiagonal)
    {
        int n = diagonal.Length;
        if (offDiagonal.Length != Math.Max(n - 1, 0))
            throw new ArgumentException($"tridiagonal eigen: offDiagonal has length {offDiagonal.Length}, expected {Math.Max(n - 1, 0)} for a diagonal of length {n}", nameof(offDiagonal));
        var d = (double[])diagonal.Clone();
        var e = new double[n];
        Array.Copy(offDiagonal, e, offDiagonal.Length);
        var z = new double[n];
        if (n > 0) z[0] = 1;
        for (int l = 0; l < n; l++)
        {
            int iter = 0, m;
            do
            {
                for (m = l; m < n - 1; m++)
                {
                    double dd = Math.Abs(d[m]) + Math.Abs(d[m + 1]);
                    if (Math.Abs(e[m]) <= double.Epsilon + 1e-17 * dd) break;
                }
                if (m == l) break;
                if (++iter > 100) throw new ArithmeticException("tridiagonal eigen: QL iteration did not converge (non-finite entries?)");
                double g = (d[l + 1] - d[l]) / (2 * e[l]);
                double r = Hypot(g, 1);
                g = d[m] - d[l] + e[l] / (g + (g >= 0 ? r : -r));
                double s = 1, c = 1, p = 0;
                int i;
                bool deflated = false;
                for (i = m - 1; i >= l; i--)
                {
                    double f = s * e[i], b = c * e[i];
                    e[i + 1] = r = Hypot(f, g);
                    if (r == 0)
                    {
                        // An exact zero split the matrix: undo the partial shift and restart the sweep.
                        d[i + 1] -= p;
                        e[m] = 0;
                        deflated = true;
                        break;
                    }
                    s = f / r; c = g / r;
                    g = d[i + 1] - p;
                    r = (d[i] - g) * s + 2 * c * b;
                    p = s * r;
                    d[i + 1] = g + p;
                    g = c * r - b;
                    double zf = z[i + 1];
                    z[i + 1] = s * z[i] + c * zf;
                    z[i] = c * z[i] - s * zf;
                }
                if (deflated) continue;
                d[l] -= p; e[l] = g; e[m] = 0;
            } while (true);
        }
        var order = Enumerable.Range(0, n).OrderBy(k => d[k]).ToArray();
        return (order.Select(k => d[k]).ToArray(), order.Select(k => z[k]).ToArray());
    }

    static double Hypot(double a, double b)
    {
        double x = Math.Abs(a), y = Math.Abs(b);
        if (x < y) (x, y) = (y, x);
        if (x == 0) return 0;
        double t = y / x;
        return x * Math.Sqrt(1 + t * t);
    }
}
