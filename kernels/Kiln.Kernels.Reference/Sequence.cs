namespace Kiln.Kernels;

public static partial class Reference
{
    /// <summary>
    /// Causal long convolution of rows x [rows, len] by taps k [channels, taps], row r using kernel row r mod channels:
    /// y[r, t] = sum_{s = 0}^{min(t, taps - 1)} k[c, s] x[r, t - s]. Returns y and each element's sum |k x| (the error
    /// budget's magnitude), both [rows, len].
    /// </summary>
    public static (double[] Y, double[] Magnitude) CausalConv(double[] x, double[] k, int rows, int channels, int len, int taps)
    {
        var y = new double[rows * len];
        var m = new double[rows * len];
        for (int r = 0; r < rows; r++)
        {
            int c = r % channels;
            for (int t = 0; t < len; t++)
            {
                double acc = 0, mag = 0;
                for (int s = 0; s <= Math.Min(t, taps - 1); s++)
                {
                    double p = k[c * taps + s] * x[r * len + t - s];
                    acc += p; mag += Math.Abs(p);
                }
                y[r * len + t] = acc; m[r * len + t] = mag;
            }
        }
        return (y, m);
    }
}

public static partial class Reference
{
    /// <summary>
    /// Gradients of <see cref="CausalConv"/> for output gradient gy [rows, len]: gx[r, t] = sum_{s &lt; taps, t + s &lt; len}
    /// k[c, s] gy[r, t + s] and gk[c, s] = sum over the rows r of channel c of sum_{t &gt;= s} gy[r, t] x[r, t - s], each
    /// with its elements' sum |terms|.
    /// </summary>
    public static (double[] Gx, double[] GxMagnitude, double[] Gk, double[] GkMagnitude) CausalConvBackward(double[] x, double[] k, double[] gy,
        int rows, int channels, int len, int taps)
    {
        var gx = new double[rows * len]; var gxm = new double[rows * len];
        var gk = new double[channels * taps]; var gkm = new double[channels * taps];
        for (int r = 0; r < rows; r++)
        {
            int c = r % channels;
            for (int t = 0; t < len; t++)
                for (int s = 0; s < taps && t + s < len; s++)
                {
                    double p = k[c * taps + s] * gy[r * len + t + s], q = gy[r * len + t + s] * x[r * len + t];
                    gx[r * len + t] += p; gxm[r * len + t] += Math.Abs(p);
                    gk[c * taps + s] += q; gkm[c * taps + s] += Math.Abs(q);
                }
        }
        return (gx, gxm, gk, gkm);
    }
}
