namespace Kiln.Kernels;

/// <summary>Inclusive scans along a row (besides the sum, which <see cref="Reference.Reduce"/>'s callers scan themselves).</summary>
public enum ScanOp
{
    /// <summary>Running product.</summary>
    Prod,
    /// <summary>Running maximum with the index of the last occurrence of the extreme (NaN propagates, and the last NaN wins).</summary>
    Max,
    /// <summary>Running minimum with the index of the last occurrence of the extreme (NaN propagates, and the last NaN wins).</summary>
    Min,
    /// <summary>Running log(sum(exp(x))).</summary>
    LogSumExp,
}

public static partial class Reference
{
    /// <summary>
    /// The inclusive scan <paramref name="op"/> of one row in order, with the index of the running extreme for
    /// <see cref="ScanOp.Max"/> and <see cref="ScanOp.Min"/> (PyTorch's cummax/cummin: ties and NaNs move it to the
    /// later position). Indices are zero for the other ops. With <paramref name="float32"/>, each output is rounded to
    /// float32 before the next step, as a Float32 scan stores it (a running product that overflows there stays infinite).
    /// </summary>
    public static (double[] Values, long[] Indices) Scan(ScanOp op, ReadOnlySpan<double> x, bool float32 = false)
    {
        var v = new double[x.Length];
        var idx = new long[x.Length];
        double acc = op switch { ScanOp.Prod => 1.0, ScanOp.LogSumExp => double.NegativeInfinity, _ => double.NaN };
        long at = 0;
        for (int i = 0; i < x.Length; i++)
        {
            double e = x[i];
            switch (op)
            {
                case ScanOp.Prod: acc *= e; break;
                case ScanOp.LogSumExp: acc = LogAddExp(acc, e); break;
                default:
                    if (i == 0 || double.IsNaN(e) || (!double.IsNaN(acc) && (op == ScanOp.Max ? e >= acc : e <= acc))) { acc = e; at = i; }
                    break;
            }
            if (float32) acc = (float)acc;
            v[i] = acc;
            idx[i] = at;
        }
        return (v, idx);
    }

    /// <summary>log(exp(a) + exp(b)) without overflow: NaN propagates, equal infinities give themselves, -inf is the identity.</summary>
    public static double LogAddExp(double a, double b)
    {
        if (double.IsNaN(a) || double.IsNaN(b)) return double.NaN;
        double lo = Math.Min(a, b), hi = Math.Max(a, b);
        if (lo == hi && double.IsInfinity(lo)) return lo;
        return hi + Log1p(Math.Exp(lo - hi));
    }
}
