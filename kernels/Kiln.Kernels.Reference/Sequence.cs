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
