namespace Kiln.Kernels;

public static partial class Reference
{
    /// <summary>C = A B for row-major A [m, k] and B [k, n], accumulated in float64 in index order.</summary>
    public static double[] Gemm(int m, int n, int k, ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        var c = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double acc = 0;
                for (int p = 0; p < k; p++) acc += a[i * k + p] * b[p * n + j];
                c[i * n + j] = acc;
            }
        return c;
    }
}
