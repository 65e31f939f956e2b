using ILGPU.Algorithms;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// The special functions of <see cref="Reference"/> in kernel-safe form (no spans, no throw, no CopySign, which ILGPU
/// 1.5 miscompiles on GPU backends): the same algorithms in float64, so float32 results are rounded once.
/// </summary>
public static class GpuMath
{
    /// <summary>The float64 value of the unary ops that are not plain arithmetic (Log1p, Expm1, Softplus, Erf, Erfinv, NormalCdf, NormalIcdf, GeluErf).</summary>
    public static double Special(int op, double x)
    {
        switch ((UnaryOp)op)
        {
            case UnaryOp.Log1p: return Log1p(x);
            case UnaryOp.Expm1: return Expm1(x);
            case UnaryOp.Softplus: return (x > 0 ? x : 0.0) + Log1p(XMath.Exp(-XMath.Abs(x)));
            case UnaryOp.Erf: return Erf(x);
            case UnaryOp.Erfinv: return Erfinv(x);
            case UnaryOp.NormalCdf: return NormalCdf(x);
            case UnaryOp.NormalIcdf: return NormalIcdf(x);
            case UnaryOp.GeluErf: return x * NormalCdf(x);
            default: return double.NaN;
        }
    }

    static double WithSign(double v, double s) => s < 0 ? -v : v;

    /// <summary>ln(1 + x), accurate for small x.</summary>
    public static double Log1p(double x) => XMath.Abs(x) < 1e-4 ? x - x * x / 2 + x * x * x / 3 : XMath.Log(1.0 + x);

    /// <summary>e^x - 1, accurate for small x.</summary>
    public static double Expm1(double x) => XMath.Abs(x) < 1e-5 ? x + x * x / 2 + x * x * x / 6 : XMath.Exp(x) - 1.0;

    /// <summary>The error function (series near 0, continued fraction for erfc in the tails).</summary>
    public static double Erf(double x)
    {
        if (XMath.IsNaN(x)) return double.NaN;
        double ax = XMath.Abs(x);
        if (ax < 2.5)
        {
            double term = ax, sum = ax, x2 = ax * ax;
            for (int n = 1; n < 200; n++)
            {
                term *= -x2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (XMath.Abs(add) < 1e-17 * XMath.Abs(sum)) break;
            }
            return WithSign(1.1283791670955126 * sum, x);
        }
        return WithSign(1.0 - Erfc(ax), x);
    }

    /// <summary>erfc x for x &gt;= 2.5 by Lentz's continued fraction.</summary>
    public static double Erfc(double x)
    {
        if (x > 27) return 0.0;
        double tiny = 1e-300, f = x, c = x, d = 0.0;
        for (int n = 1; n < 500; n++)
        {
            double an = n / 2.0;
            d = x + an * d; if (XMath.Abs(d) < tiny) d = tiny; d = 1.0 / d;
            c = x + an / c; if (XMath.Abs(c) < tiny) c = tiny;
            double delta = c * d;
            f *= delta;
            if (XMath.Abs(delta - 1.0) < 1e-16) break;
        }
        return XMath.Exp(-x * x) / 1.7724538509055159 / f;
    }

    /// <summary>Phi(x), through erfc in the lower tail.</summary>
    public static double NormalCdf(double x)
    {
        // Explicit: PoCL's compiled code returned 0 for NaN through the branches below (found by the NaN special of unary.normalcdf).
        if (XMath.IsNaN(x)) return x;
        double z = x / 1.4142135623730951;
        if (z < -2.5) return 0.5 * Erfc(-z);
        return 0.5 * (1.0 + Erf(z));
    }

    /// <summary>The inverse error function.</summary>
    public static double Erfinv(double y)
    {
        if (XMath.IsNaN(y) || y < -1 || y > 1) return double.NaN;
        if (y == 1) return double.PositiveInfinity;
        if (y == -1) return double.NegativeInfinity;
        return NormalIcdf((y + 1) / 2) / 1.4142135623730951;
    }

    /// <summary>The standard normal quantile: Acklam's approximation and two Halley steps.</summary>
    public static double NormalIcdf(double p)
    {
        if (XMath.IsNaN(p) || p < 0 || p > 1) return double.NaN;
        if (p == 0) return double.NegativeInfinity;
        if (p == 1) return double.PositiveInfinity;
        double x = Acklam(p);
        for (int i = 0; i < 2; i++)
        {
            double e = NormalCdf(x) - p;
            double u = e * 2.5066282746310002 * XMath.Exp(x * x / 2);
            x -= u / (1 + x * u / 2);
        }
        return x;
    }

    static double Acklam(double p)
    {
        const double plow = 0.02425;
        if (p < plow || p > 1 - plow)
        {
            double q = XMath.Sqrt(-2 * XMath.Log(p < plow ? p : 1 - p));
            double num = (((((-7.784894002430293e-03 * q - 3.223964580411365e-01) * q - 2.400758277161838e+00) * q - 2.549732539343734e+00) * q + 4.374664141464968e+00) * q + 2.938163982698783e+00);
            double den = ((((7.784695709041462e-03 * q + 3.224671290700398e-01) * q + 2.445134137142996e+00) * q + 3.754408661907416e+00) * q + 1);
            return p < plow ? num / den : -num / den;
        }
        double r0 = p - 0.5, r = r0 * r0;
        double a = (((((-3.969683028665376e+01 * r + 2.209460984245205e+02) * r - 2.759285104469687e+02) * r + 1.383577518672690e+02) * r - 3.066479806614716e+01) * r + 2.506628277459239e+00) * r0;
        double b = (((((-5.447609879822406e+01 * r + 1.615858368580409e+02) * r - 1.556989798598866e+02) * r + 6.680131188771972e+01) * r - 1.328068155288572e+01) * r + 1);
        return a / b;
    }
}
