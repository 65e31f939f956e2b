namespace Kiln.Kernels;

public static partial class Reference
{
    /// <summary>
    /// Scaled-dot-product attention of one head, unfused: S = scale q k^T ([tq, tk], with S[i, j] = -inf for j &gt; i when
    /// causal), P = softmax of each row of S, y = P v. q is [tq, d], k [tk, d], v [tk, dv], all row-major; returns y [tq, dv].
    /// </summary>
    public static double[] Attention(int tq, int tk, int d, int dv, ReadOnlySpan<double> q, ReadOnlySpan<double> k, ReadOnlySpan<double> v, bool causal, double scale)
    {
        var y = new double[tq * dv];
        var s = new double[tk];
        for (int i = 0; i < tq; i++)
        {
            for (int j = 0; j < tk; j++)
            {
                double acc = 0;
                for (int p = 0; p < d; p++) acc += q[i * d + p] * k[j * d + p];
                s[j] = causal && j > i ? double.NegativeInfinity : scale * acc;
            }
            var pr = Softmax(s);
            for (int j = 0; j < tk; j++)
                for (int c = 0; c < dv; c++) y[i * dv + c] += pr[j] * v[j * dv + c];
        }
        return y;
    }
}
