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

    /// <summary>
    /// C = A B for row-major integer A [m, k] and B [k, n], exact in 64-bit integers (wrapping on overflow, as PyTorch's
    /// integer matmul); an Int32 product is this result's low 32 bits.
    /// </summary>
    public static long[] GemmInt64(int m, int n, int k, ReadOnlySpan<long> a, ReadOnlySpan<long> b)
    {
        var c = new long[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                long acc = 0;
                for (int p = 0; p < k; p++) acc = unchecked(acc + a[i * k + p] * b[p * n + j]);
                c[i * n + j] = acc;
            }
        return c;
    }
}
