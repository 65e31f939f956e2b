namespace Kiln.Kernels;

/// <summary>
/// A double-double number hi + lo (about 106 bits): the working precision of the references whose float64 form would
/// lose digits (erf and erfc away from 0, the normal CDF's lower tail, the GELUs), so the float64 kernels are judged
/// against a reference more accurate than themselves. Dekker's and Knuth's error-free transformations; exp by argument
/// reduction and a Taylor series.
/// </summary>
public readonly record struct DoubleDouble(double Hi, double Lo)
{
    /// <summary>The nearest double.</summary>
    public double Value => Hi + Lo;

    /// <summary>An exact double.</summary>
    public static implicit operator DoubleDouble(double x) => new(x, 0);

    static DoubleDouble TwoSum(double a, double b)
    {
        double s = a + b, bb = s - a;
        return new(s, (a - (s - bb)) + (b - bb));
    }

    static DoubleDouble QuickTwoSum(double a, double b)
    {
        double s = a + b;
        return new(s, b - (s - a));
    }

    /// <summary>The sum.</summary>
    public static DoubleDouble operator +(DoubleDouble a, DoubleDouble b)
    {
        var s = TwoSum(a.Hi, b.Hi);
        var t = TwoSum(a.Lo, b.Lo);
        s = QuickTwoSum(s.Hi, s.Lo + t.Hi);
        return QuickTwoSum(s.Hi, s.Lo + t.Lo);
    }

    /// <summary>The negation.</summary>
    public static DoubleDouble operator -(DoubleDouble a) => new(-a.Hi, -a.Lo);

    /// <summary>The difference.</summary>
    public static DoubleDouble operator -(DoubleDouble a, DoubleDouble b) => a + -b;

    /// <summary>The product.</summary>
    public static DoubleDouble operator *(DoubleDouble a, DoubleDouble b)
    {
        double p = a.Hi * b.Hi, e = Math.FusedMultiplyAdd(a.Hi, b.Hi, -p);
        return QuickTwoSum(p, e + (a.Hi * b.Lo + a.Lo * b.Hi));
    }

    /// <summary>The quotient (one Newton correction of the double quotient).</summary>
    public static DoubleDouble operator /(DoubleDouble a, DoubleDouble b)
    {
        double q1 = a.Hi / b.Hi;
        var r = a - b * q1;
        double q2 = r.Hi / b.Hi;
        r -= b * q2;
        double q3 = r.Hi / b.Hi;
        return QuickTwoSum(q1, q2) + q3;
    }

    /// <summary>a &lt; b.</summary>
    public static bool operator <(DoubleDouble a, DoubleDouble b) => a.Hi < b.Hi || a.Hi == b.Hi && a.Lo < b.Lo;
    /// <summary>a &gt; b.</summary>
    public static bool operator >(DoubleDouble a, DoubleDouble b) => b < a;

    /// <summary>|a|.</summary>
    public DoubleDouble Abs() => Hi < 0 ? -this : this;

    /// <summary>ln 2 to double-double precision.</summary>
    public static readonly DoubleDouble Ln2 = new(0.6931471805599453, 2.3190468138462996e-17);
    /// <summary>2 / sqrt(pi).</summary>
    public static readonly DoubleDouble TwoOverSqrtPi = new(1.1283791670955126, 1.533545961316588e-17);
    /// <summary>1 / sqrt(pi).</summary>
    public static readonly DoubleDouble InvSqrtPi = new(0.5641895835477563, 7.66772980658294e-18);
    /// <summary>1 / sqrt(2).</summary>
    public static readonly DoubleDouble InvSqrt2 = new(0.7071067811865476, -4.833646656726457e-17);
    /// <summary>sqrt(2 / pi).</summary>
    public static readonly DoubleDouble SqrtTwoOverPi = new(0.7978845608028654, -4.9846544045930727e-17);

    /// <summary>e^x: x = k ln 2 + r, e^(r / 1024) by Taylor series, squared ten times, scaled by 2^k.</summary>
    public static DoubleDouble Exp(DoubleDouble x)
    {
        if (double.IsNaN(x.Hi)) return x;
        if (x.Hi > 709.8) return double.PositiveInfinity;
        if (x.Hi < -745.2) return 0.0;
        double k = Math.Round(x.Hi / Ln2.Hi);
        var r = x - Ln2 * k;
        r = new DoubleDouble(Math.ScaleB(r.Hi, -10), Math.ScaleB(r.Lo, -10));
        DoubleDouble term = 1.0, sum = 1.0;
        for (int n = 1; n < 30; n++)
        {
            term = term * r / n;
            sum += term;
            if (Math.Abs(term.Hi) < 1e-34) break;
        }
        for (int i = 0; i < 10; i++) sum *= sum;
        // Scale in two steps so 2^k itself never overflows or underflows early.
        int k1 = (int)k / 2, k2 = (int)k - k1;
        return new DoubleDouble(Math.ScaleB(Math.ScaleB(sum.Hi, k1), k2), Math.ScaleB(Math.ScaleB(sum.Lo, k1), k2));
    }

    /// <summary>erf x for |x| &lt; 5: 2/sqrt(pi) e^(-x^2) sum (2x^2)^n x / (1 3 ... (2n+1)), whose terms are all positive.</summary>
    static DoubleDouble ErfSeries(DoubleDouble x)
    {
        var ax = x.Abs();
        var x2 = ax * ax;
        DoubleDouble term = ax, sum = ax;
        for (int n = 1; n < 400; n++)
        {
            term = term * x2 * 2.0 / (2 * n + 1);
            sum += term;
            if (term.Hi < 1e-34 * sum.Hi) break;
        }
        var r = TwoOverSqrtPi * Exp(-x2) * sum;
        return x.Hi < 0 ? -r : r;
    }

    /// <summary>erfc x for x &gt;= 5.</summary>
    static DoubleDouble ErfcFraction(DoubleDouble x) => Exp(-(x * x)) * Erfcx(x);

    /// <summary>e^(x^2) erfc x for x &gt;= 5 by Lentz's continued fraction x + (1/2)/(x + 1/(x + (3/2)/(x + ...))).</summary>
    public static DoubleDouble Erfcx(DoubleDouble x)
    {
        DoubleDouble f = x, c = x, d = 0.0;
        for (int n = 1; n < 2000; n++)
        {
            double an = n / 2.0;
            d = 1.0 / (x + d * an);
            c = x + an / c;
            var delta = c * d;
            f *= delta;
            if (Math.Abs(delta.Hi - 1.0) < 1e-33) break;
        }
        return InvSqrtPi / f;
    }

    /// <summary>The error function.</summary>
    public static DoubleDouble Erf(DoubleDouble x)
    {
        if (double.IsNaN(x.Hi)) return x;
        if (Math.Abs(x.Hi) < 5) return ErfSeries(x);
        var r = Math.Abs(x.Hi) > 27.3 ? 1.0 : 1.0 - ErfcFraction(x.Abs());
        return x.Hi < 0 ? -r : r;
    }

    /// <summary>The complementary error function 1 - erf x.</summary>
    public static DoubleDouble Erfc(DoubleDouble x)
    {
        if (double.IsNaN(x.Hi)) return x;
        if (x.Hi >= 5) return x.Hi > 27.3 ? 0.0 : ErfcFraction(x);
        if (x.Hi <= -5) return x.Hi < -27.3 ? 2.0 : 2.0 - ErfcFraction(-x);
        return 1.0 - ErfSeries(x);
    }

    /// <summary>ln x for x &gt; 0: one Newton step y + m e^-y - 1 from the double logarithm y of x's mantissa m.</summary>
    public static DoubleDouble Log(DoubleDouble x)
    {
        if (double.IsNaN(x.Hi) || x.Hi < 0) return double.NaN;
        if (x.Hi == 0) return double.NegativeInfinity;
        if (double.IsPositiveInfinity(x.Hi)) return x;
        // ln x = ln m + k ln 2 with x = m 2^k, so e^-y stays in range for the smallest and largest x.
        int k = Math.ILogB(x.Hi);
        var m = new DoubleDouble(Math.ScaleB(x.Hi, -k), Math.ScaleB(x.Lo, -k));
        DoubleDouble y = Math.Log(m.Hi);
        return y + m * Exp(-y) - 1.0 + Ln2 * k;
    }

    /// <summary>The standard normal CDF Phi(x) = erfc(-x / sqrt 2) / 2.</summary>
    public static DoubleDouble NormalCdf(DoubleDouble x) => double.IsInfinity(x.Hi) ? (x.Hi > 0 ? 1.0 : 0.0) : Erfc(-(x * InvSqrt2)) * 0.5;
}
