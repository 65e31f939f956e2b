namespace Kiln.Kernels;

/// <summary>
/// The scalar float64 reference for every Kiln kernel. Plain loops, no SIMD, no threads: obviously correct, and the
/// oracle that property tests and <c>kiln validate</c> compare every backend against.
/// </summary>
public static partial class Reference
{
    /// <summary>The unary primitive <paramref name="op"/> at <paramref name="x"/>.</summary>
    public static double Unary(UnaryOp op, double x) => op switch
    {
        UnaryOp.Neg => -x,
        UnaryOp.Abs => Math.Abs(x),
        UnaryOp.Exp => Math.Exp(x),
        UnaryOp.Log => Math.Log(x),
        UnaryOp.Log1p => Log1p(x),
        UnaryOp.Expm1 => Expm1(x),
        UnaryOp.Sqrt => Math.Sqrt(x),
        UnaryOp.Rsqrt => 1.0 / Math.Sqrt(x),
        UnaryOp.Sigmoid => x >= 0 ? 1.0 / (1.0 + Math.Exp(-x)) : Math.Exp(x) / (1.0 + Math.Exp(x)),
        UnaryOp.Tanh => Math.Tanh(x),
        UnaryOp.Relu => x > 0 ? x : 0.0,
        UnaryOp.GeluErf => x * NormalCdf(x),
        UnaryOp.GeluTanh => 0.5 * x * (1.0 + Math.Tanh(Math.Sqrt(2.0 / Math.PI) * (x + 0.044715 * x * x * x))),
        UnaryOp.Silu => x * Unary(UnaryOp.Sigmoid, x),
        UnaryOp.Softplus => Math.Max(x, 0.0) + Log1p(Math.Exp(-Math.Abs(x))),
        UnaryOp.Erf => Erf(x),
        UnaryOp.Erfinv => Erfinv(x),
        UnaryOp.NormalCdf => NormalCdf(x),
        UnaryOp.NormalIcdf => NormalIcdf(x),
        UnaryOp.Sign => double.IsNaN(x) ? double.NaN : Math.Sign(x),
        UnaryOp.Reciprocal => 1.0 / x,
        UnaryOp.Square => x * x,
        UnaryOp.Sin => Math.Sin(x),
        UnaryOp.Cos => Math.Cos(x),
        UnaryOp.Step => x > 0 ? 1.0 : 0.0,
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "unknown unary op"),
    };

    /// <summary>The binary primitive <paramref name="op"/> at (<paramref name="a"/>, <paramref name="b"/>).</summary>
    public static double Binary(BinaryOp op, double a, double b) => op switch
    {
        BinaryOp.Add => a + b,
        BinaryOp.Sub => a - b,
        BinaryOp.Mul => a * b,
        BinaryOp.Div => a / b,
        BinaryOp.Pow => Math.Pow(a, b),
        BinaryOp.Max => double.IsNaN(a) || double.IsNaN(b) ? double.NaN : Math.Max(a, b),
        BinaryOp.Min => double.IsNaN(a) || double.IsNaN(b) ? double.NaN : Math.Min(a, b),
        BinaryOp.Atan2 => Math.Atan2(a, b),
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "unknown binary op"),
    };

    /// <summary>The comparison <paramref name="op"/> of <paramref name="a"/> and <paramref name="b"/>.</summary>
    public static bool Compare(CompareOp op, double a, double b) => op switch
    {
        CompareOp.Eq => a == b,
        CompareOp.Ne => a != b,
        CompareOp.Lt => a < b,
        CompareOp.Le => a <= b,
        CompareOp.Gt => a > b,
        CompareOp.Ge => a >= b,
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "unknown comparison"),
    };

    /// <summary>The reduction <paramref name="op"/> of <paramref name="values"/> in order (identity for an empty run).</summary>
    public static double Reduce(ReduceOp op, ReadOnlySpan<double> values)
    {
        double acc = op switch
        {
            ReduceOp.Sum => 0.0,
            ReduceOp.Prod => 1.0,
            ReduceOp.Max => double.NegativeInfinity,
            ReduceOp.Min => double.PositiveInfinity,
            _ => throw new ArgumentOutOfRangeException(nameof(op)),
        };
        foreach (double v in values)
        {
            acc = op switch
            {
                ReduceOp.Sum => acc + v,
                ReduceOp.Prod => acc * v,
                ReduceOp.Max => double.IsNaN(v) || double.IsNaN(acc) ? double.NaN : Math.Max(acc, v),
                _ => double.IsNaN(v) || double.IsNaN(acc) ? double.NaN : Math.Min(acc, v),
            };
        }
        return acc;
    }

    /// <summary>ln(1 + x), accurate for small x.</summary>
    public static double Log1p(double x) => Math.Abs(x) < 1e-4 ? x - x * x / 2 + x * x * x / 3 : Math.Log(1.0 + x);

    /// <summary>e^x - 1, accurate for small x.</summary>
    public static double Expm1(double x) => Math.Abs(x) < 1e-5 ? x + x * x / 2 + x * x * x / 6 : Math.Exp(x) - 1.0;

    /// <summary>The error function, to about 1e-15 (series near 0, continued fraction for erfc in the tails).</summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return double.NaN;
        double ax = Math.Abs(x);
        if (ax < 2.5)
        {
            // Maclaurin series: erf x = 2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1)).
            double term = ax, sum = ax, x2 = ax * ax;
            for (int n = 1; n < 200; n++)
            {
                term *= -x2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17 * Math.Abs(sum)) break;
            }
            return Math.CopySign(2.0 / Math.Sqrt(Math.PI) * sum, x);
        }
        return Math.CopySign(1.0 - Erfc(ax), x);
    }

    /// <summary>erfc x for x &gt;= 2.5 by Lentz's continued fraction.</summary>
    static double Erfc(double x)
    {
        if (x > 27) return 0.0;
        // erfc x = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
        double tiny = 1e-300, f = x, c = x, d = 0.0;
        for (int n = 1; n < 500; n++)
        {
            double an = n / 2.0;
            d = x + an * d; if (Math.Abs(d) < tiny) d = tiny; d = 1.0 / d;
            c = x + an / c; if (Math.Abs(c) < tiny) c = tiny;
            double delta = c * d;
            f *= delta;
            if (Math.Abs(delta - 1.0) < 1e-16) break;
        }
        return Math.Exp(-x * x) / Math.Sqrt(Math.PI) / f;
    }

    /// <summary>Phi(x) = (1 + erf(x / sqrt 2)) / 2, computed through erfc in the lower tail to keep relative accuracy.</summary>
    public static double NormalCdf(double x)
    {
        double z = x / Math.Sqrt(2.0);
        if (z < -2.5) return 0.5 * Erfc(-z);
        return 0.5 * (1.0 + Erf(z));
    }

    /// <summary>The inverse of <see cref="Erf"/> on (-1, 1); +-infinity at +-1, NaN outside.</summary>
    public static double Erfinv(double y)
    {
        if (double.IsNaN(y) || y < -1 || y > 1) return double.NaN;
        if (y == 1) return double.PositiveInfinity;
        if (y == -1) return double.NegativeInfinity;
        return NormalIcdf((y + 1) / 2) / Math.Sqrt(2.0);
    }

    /// <summary>The standard normal quantile: Acklam's rational approximation refined by two Halley steps.</summary>
    public static double NormalIcdf(double p)
    {
        if (double.IsNaN(p) || p < 0 || p > 1) return double.NaN;
        if (p == 0) return double.NegativeInfinity;
        if (p == 1) return double.PositiveInfinity;
        double x = AcklamIcdf(p);
        for (int i = 0; i < 2; i++)
        {
            double e = NormalCdf(x) - p;
            double u = e * Math.Sqrt(2 * Math.PI) * Math.Exp(x * x / 2);
            x -= u / (1 + x * u / 2);
        }
        return x;
    }

    /// <summary>Acklam's approximation of the normal quantile, relative error below 1.2e-9.</summary>
    public static double AcklamIcdf(double p)
    {
        ReadOnlySpan<double> a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00];
        ReadOnlySpan<double> b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01];
        ReadOnlySpan<double> c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00];
        ReadOnlySpan<double> d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00];
        const double plow = 0.02425;
        if (p < plow)
        {
            double q = Math.Sqrt(-2 * Math.Log(p));
            return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
        }
        if (p > 1 - plow)
        {
            double q = Math.Sqrt(-2 * Math.Log(1 - p));
            return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
        }
        {
            double q = p - 0.5, r = q * q;
            return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
        }
    }
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

    /// <summary>y[o, i, n] = x[o, index[o, i, n], n] for row-major x [outer, xAxis, inner] and index [outer, yAxis, inner].</summary>
    public static double[] Gather(ReadOnlySpan<double> x, int outer, int xAxis, int inner, ReadOnlySpan<long> index, int yAxis)
    {
        var y = new double[outer * yAxis * inner];
        for (int o = 0; o < outer; o++)
            for (int i = 0; i < yAxis; i++)
                for (int n = 0; n < inner; n++)
                    y[(o * yAxis + i) * inner + n] = x[(o * xAxis + (int)index[(o * yAxis + i) * inner + n]) * inner + n];
        return y;
    }

    /// <summary>Stable sort of one row (NaN last ascending, first descending) and its permutation, by insertion.</summary>
    public static (double[] Values, long[] Indices) SortRow(ReadOnlySpan<double> x, bool descending)
    {
        int n = x.Length;
        var idx = new long[n];
        for (int i = 0; i < n; i++) idx[i] = i;
        var xs = x.ToArray();
        bool Before(double p, double q)
        {
            if (double.IsNaN(p) || double.IsNaN(q)) return descending ? double.IsNaN(p) && !double.IsNaN(q) : !double.IsNaN(p) && double.IsNaN(q);
            return descending ? p > q : p < q;
        }
        for (int i = 1; i < n; i++)
        {
            long cur = idx[i]; int j = i - 1;
            while (j >= 0 && Before(xs[cur], xs[idx[j]])) { idx[j + 1] = idx[j]; j--; }
            idx[j + 1] = cur;
        }
        var v = new double[n];
        for (int i = 0; i < n; i++) v[i] = xs[idx[i]];
        return (v, idx);
    }
    /// <summary>
    /// Eigenvalues (ascending) of the symmetric n x n row-major <paramref name="a"/> by cyclic Jacobi rotations: slow
    /// and simple, the oracle for the Householder/QL eigensolver. Sweeps until the off-diagonal mass is negligible.
    /// </summary>
    public static double[] JacobiEigh(ReadOnlySpan<double> a, int n)
    {
        var m = a[..(n * n)].ToArray();
        for (int sweep = 0; sweep < 100; sweep++)
        {
            double off = 0, total = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) { total += m[i * n + j] * m[i * n + j]; if (i != j) off += m[i * n + j] * m[i * n + j]; }
            if (off <= 1e-30 * total) break;
            for (int p = 0; p < n - 1; p++)
                for (int q = p + 1; q < n; q++)
                {
                    double apq = m[p * n + q];
                    if (apq == 0) continue;
                    // Rotation by theta with tan(2 theta) = 2 a_pq / (a_qq - a_pp) zeroes a_pq.
                    double theta = 0.5 * Math.Atan2(2 * apq, m[q * n + q] - m[p * n + p]);
                    double c = Math.Cos(theta), s = Math.Sin(theta);
                    for (int k = 0; k < n; k++)
                    {
                        double x = m[k * n + p], y = m[k * n + q];
                        m[k * n + p] = c * x - s * y;
                        m[k * n + q] = s * x + c * y;
                    }
                    for (int k = 0; k < n; k++)
                    {
                        double x = m[p * n + k], y = m[q * n + k];
                        m[p * n + k] = c * x - s * y;
                        m[q * n + k] = s * x + c * y;
                    }
                }
        }
        var w = new double[n];
        for (int i = 0; i < n; i++) w[i] = m[i * n + i];
        Array.Sort(w);
        return w;
    }
}
