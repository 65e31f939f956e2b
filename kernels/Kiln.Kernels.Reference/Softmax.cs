namespace Kiln.Kernels;

public static partial class Reference
{
    /// <summary>Softmax (or log-softmax) of one row, with the maximum subtracted first.</summary>
    public static double[] Softmax(ReadOnlySpan<double> x, bool log = false)
    {
        var y = new double[x.Length];
        if (x.Length == 0) return y;
        double m = double.NegativeInfinity;
        foreach (double v in x) m = Math.Max(m, v);
        double sum = 0;
        for (int i = 0; i < x.Length; i++) sum += Math.Exp(x[i] - m);
        for (int i = 0; i < x.Length; i++) y[i] = log ? x[i] - m - Math.Log(sum) : Math.Exp(x[i] - m) / sum;
        return y;
    }
}
