using ILGPU.Algorithms;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// The special functions of <see cref="Reference"/> in kernel-safe form (no spans, no throw, no CopySign, which ILGPU
/// 1.5 miscompiles on GPU backends): the same algorithms in float64, so float32 results are rounded once.
/// </summary>
public static class GpuMath
{
    /// <summary>
    /// The float64 value of the unary ops that are not plain arithmetic (Log1p, Expm1, Softplus, Erf, Erfinv, NormalCdf,
    /// NormalIcdf, GeluErf, the trigonometric and hyperbolic functions and their inverses, Selu, Mish, and Elu and Celu
    /// with alpha <paramref name="alpha"/>).
    /// </summary>
    public static double Special(int op, double x, double alpha = 0)
    {
        switch ((UnaryOp)op)
        {
            case UnaryOp.Tan: return XMath.Tan(x);
            case UnaryOp.Asin: return XMath.Asin(x);
            case UnaryOp.Acos: return XMath.Acos(x);
            case UnaryOp.Atan: return XMath.Atan(x);
            case UnaryOp.Sinh: return XMath.Sinh(x);
            case UnaryOp.Cosh: return XMath.Cosh(x);
            case UnaryOp.Asinh: return Asinh(x);
            case UnaryOp.Acosh: return Acosh(x);
            case UnaryOp.Atanh: return Atanh(x);
            case UnaryOp.Selu: return x > 0 ? Reference.SeluScale * x : Reference.SeluScaleAlpha * Expm1(x);
            case UnaryOp.Elu: return x > 0 ? x : alpha * Expm1(x);
            case UnaryOp.Celu: return x > 0 ? x : alpha * Expm1(x / alpha);
            case UnaryOp.Mish: return x * XMath.Tanh((x > 0 ? x : 0.0) + Log1p(XMath.Exp(-XMath.Abs(x))));
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

    // XMath has no inverse hyperbolic functions. Past 2^28, x^2 + 1 rounds to x^2 (and overflows past 1e154): ln 2x.
    const double Ln2 = 0.69314718055994530942, Big = 268435456.0;

    /// <summary>arsinh x = sign(x) ln(1 + |x| + x^2 / (1 + sqrt(1 + x^2))), through log1p (no cancellation near 0).</summary>
    public static double Asinh(double x)
    {
        double a = XMath.Abs(x);
        if (!(a < Big)) return XMath.IsNaN(x) ? x : WithSign(XMath.Log(a) + Ln2, x);
        return WithSign(Log1p(a + a * a / (1 + XMath.Sqrt(1 + a * a))), x);
    }

    /// <summary>arcosh x = ln(1 + t + sqrt(2t + t^2)), t = x - 1 (exact near 1); NaN below 1.</summary>
    public static double Acosh(double x)
    {
        if (!(x >= 1)) return double.NaN;
        if (x >= Big) return XMath.Log(x) + Ln2;
        double t = x - 1;
        return Log1p(t + XMath.Sqrt(2 * t + t * t));
    }

    /// <summary>artanh x = sign(x) ln(1 + 2|x| / (1 - |x|)) / 2; +-inf at +-1, NaN beyond.</summary>
    public static double Atanh(double x)
    {
        double a = XMath.Abs(x);
        if (!(a <= 1)) return double.NaN;
        if (a == 1) return WithSign(double.PositiveInfinity, x);
        return WithSign(0.5 * Log1p(2 * a / (1 - a)), x);
    }

    /// <summary>ln(1 + x) by Kahan's form: the rounding of 1 + x cancels in the quotient.</summary>
    public static double Log1p(double x)
    {
        double u = 1.0 + x;
        return u == 1.0 || u > 1.7976931348623157e308 ? x : XMath.Log(u) * (x / (u - 1.0));
    }

    /// <summary>e^x - 1 by Kahan's form.</summary>
    public static double Expm1(double x)
    {
        double u = XMath.Exp(x);
        if (u == 1.0 || XMath.IsNaN(x)) return x;
        double um1 = u - 1.0;
        return um1 == -1.0 || u > 1.7976931348623157e308 ? um1 : um1 * x / XMath.Log(u);
    }

    /// <summary>
    /// The error function: the alternating Maclaurin series below 0.5; from 0.5 to 2.5 the series
    /// e^(-x^2) sum (2x^2)^n x / (1 3 ... (2n+1)), whose terms are all positive (the alternating one cancels there);
    /// beyond, 1 - erfc by the continued fraction.
    /// </summary>
    public static double Erf(double x)
    {
        if (XMath.IsNaN(x)) return double.NaN;
        double ax = XMath.Abs(x);
        if (ax < 0.5)
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
        if (ax > 6) return WithSign(1.0, x);   // erfc 6 < 2^-55
        if (ax < 2.5)
        {
            double term = ax, sum = ax, x2 = ax * ax;
            for (int n = 1; n < 200; n++)
            {
                term *= 2 * x2 / (2 * n + 1);
                sum += term;
                if (term < 1e-17 * sum) break;
            }
            return WithSign(1.1283791670955126 * ExpMinusSquare(ax, 1) * sum, x);
        }
        return WithSign(1.0 - ExpMinusSquare(ax, 1) * Erfcx(ax), x);
    }

    /// <summary>
    /// e^(-s x^2) for s = 1 or 1/2, with x^2 split into hi + lo exactly (Dekker's split of x), so the rounding of x^2
    /// does not cost x^2 ulps.
    /// </summary>
    static double ExpMinusSquare(double x, double s)
    {
        double c = 134217729.0 * x, xh = c - (c - x), xl = x - xh;
        double hi = x * x, lo = ((xh * xh - hi) + 2 * xh * xl) + xl * xl;
        return XMath.Exp(-s * hi) * (1 - s * lo);
    }

    /// <summary>e^(x^2) erfc x for x &gt;= 0.5 by Lentz's continued fraction.</summary>
    static double Erfcx(double x)
    {
        double tiny = 1e-300, f = x, c = x, d = 0.0;
        for (int n = 1; n < 5000; n++)
        {
            double an = n / 2.0;
            d = x + an * d; if (XMath.Abs(d) < tiny) d = tiny; d = 1.0 / d;
            c = x + an / c; if (XMath.Abs(c) < tiny) c = tiny;
            double delta = c * d;
            f *= delta;
            if (XMath.Abs(delta - 1.0) < 1e-16) break;
        }
        return 1.0 / (1.7724538509055159 * f);
    }

    /// <summary>erfc x for x &gt;= 0.</summary>
    public static double Erfc(double x)
    {
        if (x < 0.5) return 1.0 - Erf(x);
        if (x < 3) return ErfcAnchored(x, 0);
        if (x > 27.3) return 0.0;
        return ExpMinusSquare(x, 1) * Erfcx(x);
    }

    /// <summary>
    /// erfc(zHi + zLo) for 0.5 &lt;= z &lt; 3: the Taylor series about the nearest of ten anchors z0 = 0.625 + i/4, whose
    /// derivatives are erfc^(n)(z0) = (-1)^n 2/sqrt(pi) H_(n-1)(z0) e^(-z0^2) (Hermite polynomials by their recurrence);
    /// the continued fraction converges too slowly there, and 1 - erf cancels. Within 4 ulp (checked at 200 bits).
    /// </summary>
    static double ErfcAnchored(double zHi, double zLo)
    {
        int i = (int)((zHi - 0.5) * 4);
        if (i > 9) i = 9;
        if (i < 0) i = 0;
        double z0 = 0.625 + 0.25 * i, h = (zHi - z0) + zLo;
        double sum = 0, power = 1, hermitePrev = 0, hermite = 1;
        for (int n = 1; n < 40; n++)
        {
            power *= h / n;
            double term = (n % 2 == 1 ? hermite : -hermite) * power;
            sum += term;
            double next = 2 * z0 * hermite - 2 * (n - 1) * hermitePrev;
            hermitePrev = hermite;
            hermite = next;
            if (n > 3 && XMath.Abs(term) <= 1e-18 * XMath.Abs(sum)) break;
        }
        return AnchorErfc(i) - 1.1283791670955126 * XMath.Exp(-z0 * z0) * sum;
    }

    /// <summary>erfc(0.625 + i/4), from 200-bit values.</summary>
    static double AnchorErfc(int i)
    {
        switch (i)
        {
            case 0: return 0.376759117811582;
            case 1: return 0.21592493894014034;
            case 2: return 0.11161176829829224;
            case 3: return 0.051829927217909674;
            case 4: return 0.021556266760016336;
            case 5: return 0.00800994232988003;
            case 6: return 0.0026540293594823415;
            case 7: return 0.0007829382178911192;
            case 8: return 0.00020537573614121745;
            default: return 4.785483974377341e-05;
        }
    }

    /// <summary>The error of the rounded product p = a b (Dekker's two-product without a fused multiply-add).</summary>
    static double ProductError(double a, double b, double p)
    {
        double ca = 134217729.0 * a, ah = ca - (ca - a), al = a - ah;
        double cb = 134217729.0 * b, bh = cb - (cb - b), bl = b - bh;
        return ((ah * bh - p) + ah * bl + al * bh) + al * bl;
    }

    /// <summary>
    /// Phi(x) = erfc(-x / sqrt 2) / 2. Below x = -sqrt(2)/2 the argument w = -x / sqrt 2 is carried as hi + lo and e^(-x^2/2)
    /// taken from x itself: the rounding of w would cost 2 w^2 ulps.
    /// </summary>
    public static double NormalCdf(double x)
    {
        // Explicit: PoCL's compiled code returned 0 for NaN through the branches below (found by the NaN special of unary.normalcdf).
        if (XMath.IsNaN(x)) return x;
        double z = x * 0.7071067811865476;
        if (z >= -0.5) return 0.5 * (1.0 + Erf(z));
        if (x < -40) return 0.0;
        double w = -z;
        if (w < 3) return 0.5 * ErfcAnchored(w, -(ProductError(x, 0.7071067811865476, z) + x * -4.833646656726457e-17));
        return 0.5 * ExpMinusSquare(x, 0.5) * Erfcx(w);
    }

    /// <summary>erfinv y: a quantile estimate, then Newton steps on erf t = |y| (|y| &lt;= 1/2) or erfc t = 1 - |y| (exact).</summary>
    public static double Erfinv(double y)
    {
        if (XMath.IsNaN(y) || y < -1 || y > 1) return double.NaN;
        if (y == 1) return double.PositiveInfinity;
        if (y == -1) return double.NegativeInfinity;
        double a = XMath.Abs(y), t = -LowerQuantile((1 - a) / 2) * 0.7071067811865476;
        for (int i = 0; i < 2; i++)
            t -= (a <= 0.5 ? Erf(t) - a : (1 - a) - Erfc(t)) / (1.1283791670955126 * XMath.Exp(-t * t));
        return y < 0 ? -t : t;
    }

    /// <summary>Phi^-1(p), through the lower tail on both sides (1 - p is exact for p &gt;= 1/2).</summary>
    public static double NormalIcdf(double p)
    {
        if (XMath.IsNaN(p) || p < 0 || p > 1) return double.NaN;
        if (p == 0) return double.NegativeInfinity;
        if (p == 1) return double.PositiveInfinity;
        double r = p - 0.5;
        if (r < -0.19 || r > 0.19) return p > 0.5 ? -LowerQuantile(1 - p) : LowerQuantile(p);
        // The central region (|x| &lt; 1/2): Halley on Phi(x) - 1/2 = erf(x / sqrt 2) / 2 against the exact p - 1/2, so
        // the result keeps its relative accuracy near p = 1/2.
        double x = Acklam(p);
        for (int i = 0; i < 2; i++)
        {
            double e = 0.5 * Erf(x * 0.7071067811865476) - r;
            double u = e * 2.5066282746310002 * XMath.Exp(x * x / 2);
            x -= u / (1 + x * u / 2);
        }
        return x;
    }

    /// <summary>The lower-tail quantile (q &lt;= 1/2): Acklam's approximation and two Halley steps.</summary>
    static double LowerQuantile(double q)
    {
        double x = Acklam(q);
        if (q < 1e-290)
        {
            // Far out Phi(x) is subnormal and the density underflows: Newton on ln Phi(x) = ln q instead, with
            // Phi(x) = e^(-x^2/2) erfcx(-x / sqrt 2) / 2 and (ln Phi)' = 2 / (sqrt(2 pi) erfcx(-x / sqrt 2)).
            for (int i = 0; i < 3; i++)
            {
                double ex = Erfcx(-x * 0.7071067811865476);
                x -= (XMath.Log(0.5 * ex) - x * x / 2 - XMath.Log(q)) * 1.2533141373155003 * ex;
            }
            return x;
        }
        for (int i = 0; i < 2; i++)
        {
            double e = NormalCdf(x) - q;
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
