namespace Kiln.Kernels;

public static partial class Reference
{
    /// <summary>
    /// Causal long convolution of rows x [rows, len] by taps k [channels, taps], row r using kernel row r mod channels:
    /// y[r, t] = sum_{s = 0}^{min(t, taps - 1)} k[c, s] x[r, t - s]. Returns y [rows, len].
    /// </summary>
    public static double[] CausalConv(double[] x, double[] k, int rows, int channels, int len, int taps)
    {
        var y = new double[rows * len];
        for (int r = 0; r < rows; r++)
        {
            int c = r % channels;
            for (int t = 0; t < len; t++)
            {
                double acc = 0;
                for (int s = 0; s <= Math.Min(t, taps - 1); s++)
                    acc += k[c * taps + s] * x[r * len + t - s];
                y[r * len + t] = acc;
            }
        }
        return y;
    }
}

public static partial class Reference
{
    /// <summary>
    /// Gradients of <see cref="CausalConv"/> for output gradient gy [rows, len]: gx[r, t] = sum_{s &lt; taps, t + s &lt; len}
    /// k[c, s] gy[r, t + s] and gk[c, s] = sum over the rows r of channel c of sum_{t &gt;= s} gy[r, t] x[r, t - s].
    /// </summary>
    public static (double[] Gx, double[] Gk) CausalConvBackward(double[] x, double[] k, double[] gy,
        int rows, int channels, int len, int taps)
    {
        var gx = new double[rows * len];
        var gk = new double[channels * taps];
        for (int r = 0; r < rows; r++)
        {
            int c = r % channels;
            for (int t = 0; t < len; t++)
                for (int s = 0; s < taps && t + s < len; s++)
                {
                    gx[r * len + t] += k[c * taps + s] * gy[r * len + t + s];
                    gk[c * taps + s] += gy[r * len + t + s] * x[r * len + t];
                }
        }
        return (gx, gk);
    }
}

public static partial class Reference
{
    /// <summary>
    /// Causal linear attention (unnormalised) over q, k [batch, T, d] and v [batch, T, dv]: y[b, t] = sum_{s &lt;= t}
    /// (q_t . k_s) v_s = q_t^T S_t with the prefix sum S_t = sum_{s &lt;= t} k_s v_s^T. Returns y [batch, T, dv].
    /// </summary>
    public static double[] CausalLinearAttention(double[] q, double[] k, double[] v, int batch, int len, int d, int dv)
    {
        var y = new double[batch * len * dv];
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < len; t++)
                for (int s = 0; s <= t; s++)
                {
                    double w = 0;
                    for (int i = 0; i < d; i++) w += q[(b * len + t) * d + i] * k[(b * len + s) * d + i];
                    for (int e = 0; e < dv; e++) y[(b * len + t) * dv + e] += w * v[(b * len + s) * dv + e];
                }
        return y;
    }
}
