using System.Numerics;
using System.Runtime.InteropServices;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Vectorized float32 kernels of sinh, cosh, asinh, acosh, atanh and the exp-based activations (elu, celu, selu, mish):
/// each lane is widened to float64 and evaluated there by exp, log and sqrt, whose float64 errors lie far below half a
/// float32 ulp, so the result rounds once; power series replace the formulas near 0, where they would cancel. Every
/// float32 input's square and exponential up to 88 are finite in float64, so no formula overflows early.
/// Reference: <see cref="Reference.Unary"/>.
/// </summary>
public static class Widened
{
    /// <summary>Whether <paramref name="op"/> has a lane form here.</summary>
    public static bool Has(UnaryOp op) => op is UnaryOp.Sinh or UnaryOp.Cosh or UnaryOp.Asinh or UnaryOp.Acosh or UnaryOp.Atanh
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
        return Vector.Narrow(Lanes(op, lo, alpha), Lanes(op, hi, alpha));
    }

    static Vector<double> Lanes(UnaryOp op, Vector<double> x, double alpha)
    {
        var a = Vector.Abs(x);
        var neg = Vector.LessThan(x, Vector<double>.Zero);
        var t = x * x;
        switch (op)
        {
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
