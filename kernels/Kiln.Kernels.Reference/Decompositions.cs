namespace Kiln.Kernels;

public static partial class Reference
{
    /// <summary>
    /// Eigenvalues (ascending) of the symmetric n x n row-major <paramref name="a"/> by cyclic Jacobi rotations: slow
    /// and simple, the oracle for the Householder/QL eigensolver.
    /// </summary>
    public static double[] JacobiEigh(ReadOnlySpan<double> a, int n)
    {
        var w = JacobiEighVectors(a, n).W;
        Array.Sort(w);
        return w;
    }

    /// <summary>
    /// Eigenvalues W (in no particular order) and the matching eigenvectors, the columns of the row-major n x n V, of
    /// the symmetric <paramref name="a"/> by cyclic Jacobi rotations; sweeps until the off-diagonal mass is negligible.
    /// </summary>
    public static (double[] W, double[] V) JacobiEighVectors(ReadOnlySpan<double> a, int n)
    {
        var m = a[..(n * n)].ToArray();
        var v = new double[n * n];
        for (int i = 0; i < n; i++) v[i * n + i] = 1;
        for (int sweep = 0; sweep < 100; sweep++)
        {
            double off = 0, total = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) { total += m[i * n + j] * m[i * n + j]; if (i != j) off += m[i * n + j] * m[i * n + j]; }
            if (off <= 1e-32 * total) break;
            for (int p = 0; p < n - 1; p++)
                for (int q = p + 1; q < n; q++)
                {
                    double apq = m[p * n + q];
                    if (apq == 0) continue;
                    // Rotation by theta with tan(2 theta) = 2 a_pq / (a_qq - a_pp) zeroes a_pq.
                    double theta = 0.5 * Math.Atan2(2 * apq, m[q * n + q] - m[p * n + p]);
                    double c = Math.Cos(theta), s = Math.Sin(theta);
                    for (int k = 0; k < n; k++)
                    {
                        double x = m[k * n + p], y = m[k * n + q];
                        m[k * n + p] = c * x - s * y;
                        m[k * n + q] = s * x + c * y;
                        x = v[k * n + p]; y = v[k * n + q];
                        v[k * n + p] = c * x - s * y;
                        v[k * n + q] = s * x + c * y;
                    }
                    for (int k = 0; k < n; k++)
                    {
                        double x = m[p * n + k], y = m[q * n + k];
                        m[p * n + k] = c * x - s * y;
                        m[q * n + k] = s * x + c * y;
                    }
                }
        }
        var w = new double[n];
        for (int i = 0; i < n; i++) w[i] = m[i * n + i];
        return (w, v);
    }
}
