namespace Kiln.Kernels;

/// <summary>Elementwise unary primitives. Every backend implements each one; <see cref="Reference.Unary"/> defines it.</summary>
public enum UnaryOp
{
    /// <summary>-x</summary>
    Neg,
    /// <summary>|x|</summary>
    Abs,
    /// <summary>e^x</summary>
    Exp,
    /// <summary>ln x</summary>
    Log,
    /// <summary>ln(1 + x)</summary>
    Log1p,
    /// <summary>e^x - 1</summary>
    Expm1,
    /// <summary>sqrt x</summary>
    Sqrt,
    /// <summary>1 / sqrt x</summary>
    Rsqrt,
    /// <summary>1 / (1 + e^-x)</summary>
    Sigmoid,
    /// <summary>tanh x</summary>
    Tanh,
    /// <summary>max(x, 0)</summary>
    Relu,
    /// <summary>x Phi(x), the exact GELU.</summary>
    GeluErf,
    /// <summary>0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))), the tanh approximation of GELU.</summary>
    GeluTanh,
    /// <summary>x sigmoid(x)</summary>
    Silu,
    /// <summary>ln(1 + e^x), computed without overflow.</summary>
    Softplus,
    /// <summary>The error function.</summary>
    Erf,
    /// <summary>The inverse error function on (-1, 1).</summary>
    Erfinv,
    /// <summary>Phi(x), the standard normal CDF.</summary>
    NormalCdf,
    /// <summary>Phi^-1(p), the standard normal quantile.</summary>
    NormalIcdf,
    /// <summary>-1, 0 or 1 (NaN stays NaN).</summary>
    Sign,
    /// <summary>1 / x</summary>
    Reciprocal,
    /// <summary>x^2</summary>
    Square,
    /// <summary>sin x</summary>
    Sin,
    /// <summary>cos x</summary>
    Cos,
    /// <summary>Heaviside step: 1 for x &gt; 0, else 0 (the derivative of relu).</summary>
    Step,
    /// <summary>The largest integer &lt;= x.</summary>
    Floor,
    /// <summary>The smallest integer &gt;= x.</summary>
    Ceil,
    /// <summary>The nearest integer, halves to even (as NumPy and PyTorch).</summary>
    Round,
    /// <summary>The integer part of x (toward zero).</summary>
    Trunc,
    /// <summary>x - trunc x, the fractional part with the sign of x.</summary>
    Frac,
    /// <summary>tan x</summary>
    Tan,
    /// <summary>arcsin x on [-1, 1]</summary>
    Asin,
    /// <summary>arccos x on [-1, 1]</summary>
    Acos,
    /// <summary>arctan x</summary>
    Atan,
    /// <summary>sinh x</summary>
    Sinh,
    /// <summary>cosh x</summary>
    Cosh,
    /// <summary>arsinh x</summary>
    Asinh,
    /// <summary>arcosh x on [1, inf)</summary>
    Acosh,
    /// <summary>artanh x on [-1, 1]</summary>
    Atanh,
    /// <summary>min(max(x + 3, 0), 6) / 6, PyTorch's hardsigmoid.</summary>
    Hardsigmoid,
    /// <summary>x min(max(x + 3, 0), 6) / 6, PyTorch's hardswish.</summary>
    Hardswish,
    /// <summary>scale x for x &gt; 0, else scale alpha (e^x - 1), with PyTorch's SELU constants.</summary>
    Selu,
    /// <summary>x tanh(softplus x)</summary>
    Mish,
    /// <summary>x / (1 + |x|)</summary>
    Softsign,
    /// <summary>clamp(x, A, B): hardtanh with min A and max B (<see cref="UnaryParams"/>).</summary>
    Hardtanh,
    /// <summary>x for x &gt; 0, else A (e^x - 1): ELU with alpha A.</summary>
    Elu,
    /// <summary>x for x &gt; 0, else A (e^(x/A) - 1): CELU with alpha A.</summary>
    Celu,
    /// <summary>x for x &gt; 0, else A x: leaky ReLU with negative slope A.</summary>
    LeakyRelu,
}

/// <summary>
/// The scalar parameters of a parametrised <see cref="UnaryOp"/> (<see cref="UnaryOp.Hardtanh"/>'s min and max,
/// <see cref="UnaryOp.Elu"/>'s and <see cref="UnaryOp.Celu"/>'s alpha, <see cref="UnaryOp.LeakyRelu"/>'s slope in
/// <see cref="A"/>); the other ops ignore them. Kernels round them to the tensor's dtype, as PyTorch does.
/// </summary>
/// <param name="A">The first parameter.</param>
/// <param name="B">The second parameter.</param>
public readonly record struct UnaryParams(double A, double B = 0);

/// <summary>Elementwise binary primitives with NumPy broadcasting.</summary>
public enum BinaryOp
{
    /// <summary>a + b</summary>
    Add,
    /// <summary>a - b</summary>
    Sub,
    /// <summary>a * b</summary>
    Mul,
    /// <summary>a / b</summary>
    Div,
    /// <summary>a ^ b</summary>
    Pow,
    /// <summary>max(a, b); NaN if either is NaN.</summary>
    Max,
    /// <summary>min(a, b); NaN if either is NaN.</summary>
    Min,
    /// <summary>atan2(a, b)</summary>
    Atan2,
}

/// <summary>Elementwise bitwise primitives on integers and booleans (shifts on integers only), with NumPy broadcasting.</summary>
public enum BitwiseOp
{
    /// <summary>a &amp; b (logical and of booleans)</summary>
    And,
    /// <summary>a | b (logical or of booleans)</summary>
    Or,
    /// <summary>a ^ b (logical xor of booleans)</summary>
    Xor,
    /// <summary>~a, unary: b is ignored (logical not of booleans).</summary>
    Not,
    /// <summary>a &lt;&lt; b; 0 where b is negative or at least the width in bits (PyTorch's rule).</summary>
    LeftShift,
    /// <summary>a &gt;&gt; b, arithmetic (sign-filling); a shift of b &lt; 0 or b &gt;= width - 1 fills every bit with the sign (PyTorch's rule).</summary>
    RightShift,
}

/// <summary>Elementwise comparisons; the result is boolean.</summary>
public enum CompareOp
{
    /// <summary>a == b</summary>
    Eq,
    /// <summary>a != b</summary>
    Ne,
    /// <summary>a &lt; b</summary>
    Lt,
    /// <summary>a &lt;= b</summary>
    Le,
    /// <summary>a &gt; b</summary>
    Gt,
    /// <summary>a &gt;= b</summary>
    Ge,
}

public static partial class Reference
{
    /// <summary>SELU's scale and alpha (Klambauer et al. 2017, as PyTorch states them) and their product.</summary>
    public const double SeluScale = 1.0507009873554804934193349852946, SeluAlpha = 1.6732632423543772848170429916717, SeluScaleAlpha = SeluScale * SeluAlpha;

    /// <summary>The unary primitive <paramref name="op"/> at <paramref name="x"/>, with parameters <paramref name="p"/> where it takes them.</summary>
    public static double Unary(UnaryOp op, double x, UnaryParams p = default) => op switch
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
        UnaryOp.Relu => x > 0 || double.IsNaN(x) ? x : 0.0,
        UnaryOp.GeluErf => double.IsInfinity(x) ? x * (x > 0 ? 1.0 : 0.0) : (x * DoubleDouble.NormalCdf(x)).Value,
        UnaryOp.GeluTanh => GeluTanh(x),
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
        UnaryOp.Floor => Math.Floor(x),
        UnaryOp.Ceil => Math.Ceiling(x),
        UnaryOp.Round => Math.Round(x, MidpointRounding.ToEven),
        UnaryOp.Trunc => Math.Truncate(x),
        UnaryOp.Frac => x - Math.Truncate(x),
        UnaryOp.Tan => Math.Tan(x),
        UnaryOp.Asin => Math.Asin(x),
        UnaryOp.Acos => Math.Acos(x),
        UnaryOp.Atan => Math.Atan(x),
        UnaryOp.Sinh => Math.Sinh(x),
        UnaryOp.Cosh => Math.Cosh(x),
        UnaryOp.Asinh => Math.Asinh(x),
        UnaryOp.Acosh => Math.Acosh(x),
        UnaryOp.Atanh => Math.Atanh(x),
        // PyTorch's formulas, NaN and infinities included: hardswish(-inf) is -inf * 0, NaN. Hardswish divides before it
        // multiplies, so a large x is x exactly (x * 6 would overflow first).
        UnaryOp.Hardsigmoid => Clamp(x + 3, 0, 6) / 6,
        UnaryOp.Hardswish => x * (Clamp(x + 3, 0, 6) / 6),
        UnaryOp.Selu => x > 0 ? SeluScale * x : ScaledExpm1(new DoubleDouble(SeluScale, 0) * SeluAlpha, x),
        UnaryOp.Mish => Mish(x),
        UnaryOp.Softsign => x / (1 + Math.Abs(x)),
        UnaryOp.Hardtanh => Clamp(x, p.A, p.B),
        UnaryOp.Elu => x > 0 ? x : ScaledExpm1(p.A, x),
        // Double-double division by alpha would turn -inf into NaN: the infinities take float64.
        UnaryOp.Celu => x > 0 ? x : double.IsInfinity(x) ? p.A * (Math.Exp(x / p.A) - 1) : ScaledExpm1(p.A, new DoubleDouble(x, 0) / p.A),
        UnaryOp.LeakyRelu => x > 0 ? x : p.A * x,
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

    /// <summary>
    /// The bitwise primitive <paramref name="op"/> of integers <paramref name="a"/> and <paramref name="b"/> of width
    /// <paramref name="bits"/> (32 or 64, the result wrapping to that width), or of booleans (0 or 1) where
    /// <paramref name="bits"/> is 1.
    /// </summary>
    public static long Bitwise(BitwiseOp op, long a, long b, int bits)
    {
        long r = op switch
        {
            BitwiseOp.And => a & b,
            BitwiseOp.Or => a | b,
            BitwiseOp.Xor => a ^ b,
            BitwiseOp.Not => bits == 1 ? 1 - a : ~a,
            BitwiseOp.LeftShift => b < 0 || b >= bits ? 0 : a << (int)b,
            BitwiseOp.RightShift => a >> (int)(b < 0 || b >= bits - 1 ? bits - 1 : b),
            _ => throw new ArgumentOutOfRangeException(nameof(op), op, "unknown bitwise op"),
        };
        return bits == 32 ? (int)r : r;
    }

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

    /// <summary>c (e^u - 1) in double-double, rounded once (the series below 1e-10, where e^u - 1 would keep too few digits).</summary>
    static double ScaledExpm1(DoubleDouble c, DoubleDouble u)
    {
        // Past the double-double range the double formula is exact enough: e^u - 1 is -1 or infinite.
        if (!(Math.Abs(u.Hi) < 700)) return c.Value * (Math.Exp(u.Hi) - 1);
        return (c * (Math.Abs(u.Hi) < 1e-10 ? u + u * u * 0.5 : DoubleDouble.Exp(u) - 1.0)).Value;
    }

    /// <summary>x tanh(softplus x) = x n / (n + 2), n = e^x (e^x + 2), in double-double (no tanh or log needed).</summary>
    static double Mish(double x)
    {
        // Past 40, 2 / (n + 2) is below 2^-110: the result is x. At -inf the formula is -inf * 0, NaN, as PyTorch's.
        if (double.IsNaN(x) || x > 40) return x;
        if (double.IsNegativeInfinity(x)) return double.NaN;
        var e = DoubleDouble.Exp(x);
        var n = e * (e + 2.0);
        return (x * n / (n + 2.0)).Value;
    }

    // NaN stays NaN (Math.Clamp would return a bound).
    static double Clamp(double x, double lo, double hi) => double.IsNaN(x) ? x : Math.Min(Math.Max(x, lo), hi);

    /// <summary>ln(1 + x): 1 + x is exact in double-double.</summary>
    public static double Log1p(double x) => double.IsNaN(x) || double.IsPositiveInfinity(x) ? x : DoubleDouble.Log(new DoubleDouble(1.0, 0) + x).Value;

    /// <summary>e^x - 1 in double-double (a cubic near 0, where e^x - 1 would keep too few digits even there).</summary>
    public static double Expm1(double x)
    {
        if (double.IsNaN(x) || Math.Abs(x) < 1e-10) return x + x * x / 2;
        if (x > 709.8) return double.PositiveInfinity;
        return (DoubleDouble.Exp(x) - 1.0).Value;
    }

    /// <summary>The tanh GELU 0.5 x (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3), as x / (1 + e^(-2u)) in double-double (no cancellation for x &lt; 0).</summary>
    static double GeluTanh(double x)
    {
        // At -Inf the product x sigmoid(2u) is -Inf * 0: NaN, as PyTorch's formula gives (the GELUs and SiLU alike).
        if (double.IsNaN(x) || double.IsNegativeInfinity(x)) return double.NaN;
        if (Math.Abs(x) > 1e30) return x > 0 ? x : -0.0;
        DoubleDouble dx = x;
        var t = DoubleDouble.SqrtTwoOverPi * (dx + dx * dx * dx * 0.044715) * -2.0;
        if (t.Hi > 709) return x * 0.0;
        return (dx / (1.0 + DoubleDouble.Exp(t))).Value;
    }

    /// <summary>The error function, in double-double (see <see cref="DoubleDouble.Erf"/>).</summary>
    public static double Erf(double x) => DoubleDouble.Erf(x).Value;

    /// <summary>Phi(x) = erfc(-x / sqrt 2) / 2, in double-double.</summary>
    public static double NormalCdf(double x) => DoubleDouble.NormalCdf(x).Value;

    /// <summary>
    /// The inverse of <see cref="Erf"/> on (-1, 1); +-infinity at +-1, NaN outside: Newton's method in double-double on
    /// erf t = |y| (|y| &lt;= 1/2) or on erfc t = 1 - |y| (exact for |y| &gt;= 1/2), from Acklam's estimate.
    /// </summary>
    public static double Erfinv(double y)
    {
        if (double.IsNaN(y) || y < -1 || y > 1) return double.NaN;
        if (Math.Abs(y) == 1) return y * double.PositiveInfinity;
        double a = Math.Abs(y);
        DoubleDouble t = -AcklamIcdf((1 - a) / 2) / Math.Sqrt(2.0);
        for (int i = 0; i < 4; i++)
        {
            var g = a <= 0.5 ? DoubleDouble.Erf(t) - a : (1 - a) - DoubleDouble.Erfc(t);
            t -= g / (DoubleDouble.TwoOverSqrtPi * DoubleDouble.Exp(-(t * t)));
        }
        return Math.CopySign(t.Value, y);
    }

    /// <summary>
    /// The standard normal quantile Phi^-1(p): Newton's method in double-double on Phi(x) = p (p &lt;= 1/2) or
    /// Phi(-x) = 1 - p (exact for p &gt;= 1/2), from Acklam's estimate.
    /// </summary>
    public static double NormalIcdf(double p)
    {
        if (double.IsNaN(p) || p < 0 || p > 1) return double.NaN;
        if (p == 0) return double.NegativeInfinity;
        if (p == 1) return double.PositiveInfinity;
        double q = Math.Min(p, 1 - p);
        DoubleDouble x = AcklamIcdf(q);
        var invSqrt2Pi = DoubleDouble.InvSqrtPi * DoubleDouble.InvSqrt2;
        for (int i = 0; i < 4; i++)
        {
            if (q < 1e-290)
            {
                // Phi(x) is subnormal out here: Newton on ln Phi(x) = ln q with Phi(x) = e^(-x^2/2) erfcx(-x / sqrt 2) / 2.
                var ex = DoubleDouble.Erfcx(-(x * DoubleDouble.InvSqrt2));
                x -= (DoubleDouble.Log(ex * 0.5) - x * x * 0.5 - DoubleDouble.Log(q)) * ex / (DoubleDouble.InvSqrt2 * DoubleDouble.InvSqrtPi * 2.0);
            }
            else x -= (DoubleDouble.NormalCdf(x) - q) / (invSqrt2Pi * DoubleDouble.Exp(-(x * x) * 0.5));
        }
        return p > 0.5 ? -x.Value : x.Value;
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
}
