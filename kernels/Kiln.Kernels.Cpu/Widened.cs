using System.Numerics;
using System.Runtime.InteropServices;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Vectorized float32 kernels of sin, cos, sinh, cosh, asinh, acosh, atanh and the exp-based activations (elu, celu, selu, mish):
/// each lane is widened to float64 and evaluated there by exp, log and sqrt, whose float64 errors lie far below half a
/// float32 ulp, so the result rounds once; power series replace the formulas near 0, where they would cancel. Every
/// float32 input's square and exponential up to 88 are finite in float64, so no formula overflows early.
/// Reference: <see cref="Reference.Unary"/>.
/// </summary>
public static class Widened
{
    /// <summary>Whether <paramref name="op"/> has a lane form here.</summary>
    public static bool Has(UnaryOp op) => op is UnaryOp.Sin or UnaryOp.Cos or UnaryOp.Sinh or UnaryOp.Cosh or UnaryOp.Asinh or UnaryOp.Acosh or UnaryOp.Atanh
        or UnaryOp.Elu or UnaryOp.Celu or UnaryOp.Selu or UnaryOp.Mish;

    /// <summary>y = op(x) over spans (y may equal x); <paramref name="alpha"/> is elu's and celu's parameter as float32 holds it.</summary>
    public static void Run(UnaryOp op, ReadOnlySpan<float> x, Span<float> y, double alpha)
    {
        int n = Vector<float>.Count, i = 0;
        for (; i + n <= x.Length; i += n) Lanes(op, new Vector<float>(x[i..]), alpha).CopyTo(y[i..]);
        if (i == x.Length) return;
        // The tail through the same lanes, so a result does not depend on where a row split puts its element.
        Span<float> tail = stackalloc float[n];
        tail.Clear();
        x[i..].CopyTo(tail);
        Lanes(op, new Vector<float>(tail), alpha).CopyTo(tail);
        tail[..(x.Length - i)].CopyTo(y[i..]);
    }

    static Vector<float> Lanes(UnaryOp op, Vector<float> x, double alpha)
    {
        Vector.Widen(x, out var lo, out var hi);
        var y = Vector.Narrow(Lanes(op, lo, alpha), Lanes(op, hi, alpha));
        if (op is not (UnaryOp.Sin or UnaryOp.Cos)) return y;
        // Past 2^19 (and NaN, infinities) the reduction below is not exact: those lanes take the float64 library call.
        var far = ~Vector.LessThanOrEqual(Vector.Abs(x), new Vector<float>(TrigReduceLimit));
        if (far == Vector<int>.Zero) return y;
        Span<float> lanes = stackalloc float[Vector<float>.Count];
        y.CopyTo(lanes);
        for (int j = 0; j < lanes.Length; j++)
            if (far[j] != 0) lanes[j] = (float)(op == UnaryOp.Sin ? Math.Sin(x[j]) : Math.Cos(x[j]));
        return new Vector<float>(lanes);
    }

    const float TrigReduceLimit = 524288f;

    // sin or cos of float32 lanes, |x| <= 2^19: k = round(2x/pi) by the 1.5 * 2^52 shift, r = x - k pi/2 with pi/2 in three
    // 33-bit parts (each k * part exact for |k| < 2^20, fdlibm's constants), then the quadrant's Taylor series on
    // |r| <= pi/4 (truncation below 5e-17). Plain multiplies and adds only: TensorPrimitives' float sin and cos gave
    // different bits before and after the JIT's tier-up when a vector held a large argument (kiln validate's thread check).
    static Vector<double> Trig(Vector<double> x, bool cos)
    {
        const double Shift = 6755399441055744.0;
        var shifted = x * (2 / Math.PI) + new Vector<double>(Shift);
        var k = shifted - new Vector<double>(Shift);
        var r = x - k * 1.57079632673412561417e+00 - k * 6.07710050630396597660e-11 - k * 2.02226624871116645580e-21;
        var q = Vector.AsVectorInt64(shifted) + new Vector<long>(cos ? 1 : 0);
        var t = r * r;
        var sin = r + r * t * (new Vector<double>(-1.0 / 6) + t * (new Vector<double>(1.0 / 120) + t * (new Vector<double>(-1.0 / 5040)
            + t * (new Vector<double>(1.0 / 362880) + t * (new Vector<double>(-1.0 / 39916800) + t * (new Vector<double>(1.0 / 6227020800)
            + t * (-1.0 / 1307674368000)))))));
        var cosr = Vector<double>.One + t * (new Vector<double>(-0.5) + t * (new Vector<double>(1.0 / 24) + t * (new Vector<double>(-1.0 / 720)
            + t * (new Vector<double>(1.0 / 40320) + t * (new Vector<double>(-1.0 / 3628800) + t * (new Vector<double>(1.0 / 479001600)
            + t * (new Vector<double>(-1.0 / 87178291200) + t * (1.0 / 20922789888000))))))));
        var v = Vector.ConditionalSelect(Vector.Equals(q & Vector<long>.One, Vector<long>.One), cosr, sin);
        return Vector.ConditionalSelect(Vector.Equals(q & new Vector<long>(2), new Vector<long>(2)), -v, v);
    }

    static Vector<double> Lanes(UnaryOp op, Vector<double> x, double alpha)
    {
        var a = Vector.Abs(x);
        var neg = Vector.LessThan(x, Vector<double>.Zero);
        var t = x * x;
        switch (op)
        {
            case UnaryOp.Sin or UnaryOp.Cos: return Trig(x, op == UnaryOp.Cos);
            case UnaryOp.Sinh:
            {
                // Below 0.03 the series' next term, x^9 / 9!, is below 1e-19 relative; above, e - 1/e cancels by at most 1e-14.
                var e = Vector.Exp(a);
                var big = (e - Vector<double>.One / e) * 0.5;
                var small = x * (Vector<double>.One + t * (new Vector<double>(1.0 / 6) + t * (new Vector<double>(1.0 / 120) + t * (1.0 / 5040))));
                return Vector.ConditionalSelect(Vector.LessThan(a, new Vector<double>(0.03)), small, Vector.ConditionalSelect(neg, -big, big));
            }
            case UnaryOp.Cosh:
            {
                var e = Vector.Exp(a);
                return (e + Vector<double>.One / e) * 0.5;
            }
            case UnaryOp.Asinh:
            {
                // Below 1e-3 the series' next term is below 1e-19 relative; above, ln(1 + ~a) loses at most 1e-13.
                var big = Vector.Log(a + Vector.SquareRoot(t + Vector<double>.One));
                var small = x * (Vector<double>.One + t * (new Vector<double>(-1.0 / 6) + t * (3.0 / 40)));
                return Vector.ConditionalSelect(Vector.LessThan(a, new Vector<double>(1e-3)), small, Vector.ConditionalSelect(neg, -big, big));
            }
            case UnaryOp.Acosh:
                // NaN below 1 (far below, x + sqrt(x^2 - 1) would cancel to 0 rather than give NaN); x^2 - 1 is exact for float32 x near 1.
                return Vector.ConditionalSelect(Vector.LessThan(x, Vector<double>.One), new Vector<double>(double.NaN), Vector.Log(x + Vector.SquareRoot(t - Vector<double>.One)));
            case UnaryOp.Atanh:
            {
                // 1 - |x| is exact for float32 x; NaN past 1, infinite at 1.
                var big = Vector.Log((Vector<double>.One + a) / (Vector<double>.One - a)) * 0.5;
                var small = x * (Vector<double>.One + t * (new Vector<double>(1.0 / 3) + t * 0.2));
                return Vector.ConditionalSelect(Vector.LessThan(a, new Vector<double>(1e-3)), small, Vector.ConditionalSelect(neg, -big, big));
            }
            case UnaryOp.Elu: return Vector.ConditionalSelect(Vector.GreaterThan(x, Vector<double>.Zero), x, Expm1(x) * alpha);
            case UnaryOp.Celu: return Vector.ConditionalSelect(Vector.GreaterThan(x, Vector<double>.Zero), x, Expm1(x / alpha) * alpha);
            case UnaryOp.Selu:
                return Vector.ConditionalSelect(Vector.GreaterThan(x, Vector<double>.Zero), x * Reference.SeluScale, Expm1(x) * Reference.SeluScaleAlpha);
            default:
            {
                // Mish: x tanh(softplus x) = x n / (n + 2), n = e^x (e^x + 2); past 40 it is x (and e^x may overflow).
                var e = Vector.Exp(x);
                var m = e * (e + new Vector<double>(2));
                return Vector.ConditionalSelect(Vector.GreaterThan(x, new Vector<double>(40)), x, x * m / (m + new Vector<double>(2)));
            }
        }
    }

    // e^x - 1: below 1e-5 the series x + x^2/2 + x^3/6 (next term below 1e-21 relative); above, e^x - 1 cancels by at most 1e-11.
    static Vector<double> Expm1(Vector<double> x)
    {
        var series = x * (Vector<double>.One + x * (new Vector<double>(0.5) + x * (1.0 / 6)));
        return Vector.ConditionalSelect(Vector.LessThan(Vector.Abs(x), new Vector<double>(1e-5)), series, Vector.Exp(x) - Vector<double>.One);
    }
}
