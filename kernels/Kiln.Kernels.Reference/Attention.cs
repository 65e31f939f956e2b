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
    /// <summary>
    /// Gradients of <see cref="Attention"/> for one head given the output's gradient gy [tq, dv], from the textbook formulas:
    /// P = softmax(S), dV = P^T gy, dP = gy V^T, dS = P (dP - rowsum(dP P)), dQ = scale dS K, dK = scale dS^T Q.
    /// </summary>
    public static (double[] Gq, double[] Gk, double[] Gv) AttentionBackward(int tq, int tk, int d, int dv, ReadOnlySpan<double> q,
        ReadOnlySpan<double> k, ReadOnlySpan<double> v, ReadOnlySpan<double> gy, bool causal, double scale)
    {
        var (gq, gk, gv) = (new double[tq * d], new double[tk * d], new double[tk * dv]);
        var s = new double[tk];
        var dp = new double[tk];
        for (int i = 0; i < tq; i++)
        {
            for (int j = 0; j < tk; j++)
            {
                double acc = 0;
                for (int p = 0; p < d; p++) acc += q[i * d + p] * k[j * d + p];
                s[j] = causal && j > i ? double.NegativeInfinity : scale * acc;
            }
            var pr = Softmax(s);
            double dot = 0;
            for (int j = 0; j < tk; j++)
            {
                double acc = 0;
                for (int c = 0; c < dv; c++) { acc += gy[i * dv + c] * v[j * dv + c]; gv[j * dv + c] += pr[j] * gy[i * dv + c]; }
                dp[j] = acc;
                dot += acc * pr[j];
            }
            for (int j = 0; j < tk; j++)
            {
                double ds = pr[j] * (dp[j] - dot) * scale;
                for (int p = 0; p < d; p++) { gq[i * d + p] += ds * k[j * d + p]; gk[j * d + p] += ds * q[i * d + p]; }
            }
        }
        return (gq, gk, gv);
    }
}
