namespace Kiln.Kernels;

public static partial class Reference
{
    /// <summary>Layer norm of one row: (x - mean) / sqrt(var + eps) * w + b, biased variance.</summary>
    public static double[] LayerNorm(ReadOnlySpan<double> x, ReadOnlySpan<double> w, ReadOnlySpan<double> b, double eps)
    {
        int n = x.Length;
        var y = new double[n];
        if (n == 0) return y;
        double mean = 0; foreach (double v in x) mean += v; mean /= n;
        double var = 0; foreach (double v in x) var += (v - mean) * (v - mean); var /= n;
        double rstd = 1.0 / Math.Sqrt(var + eps);
        for (int i = 0; i < n; i++) y[i] = (x[i] - mean) * rstd * (w.IsEmpty ? 1 : w[i]) + (b.IsEmpty ? 0 : b[i]);
        return y;
    }

    /// <summary>RMS norm of one row: x / sqrt(mean(x^2) + eps) * w.</summary>
    public static double[] RmsNorm(ReadOnlySpan<double> x, ReadOnlySpan<double> w, double eps)
    {
        int n = x.Length;
        var y = new double[n];
        if (n == 0) return y;
        double ms = 0; foreach (double v in x) ms += v * v; ms /= n;
        double s = 1.0 / Math.Sqrt(ms + eps);
        for (int i = 0; i < n; i++) y[i] = x[i] * s * (w.IsEmpty ? 1 : w[i]);
        return y;
    }
}
