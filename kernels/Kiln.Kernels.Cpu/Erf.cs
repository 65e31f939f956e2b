using System.Numerics;
using System.Runtime.InteropServices;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Vectorized float32 erf and exact GELU. |x| &lt;= 1: erf x = x P(x^2), P of degree 7; 1 &lt; |x| &lt; 4:
/// erf x = 1 - e^(-x^2) Q(1/x), Q of degree 10 fitting erfc(x) e^(x^2); |x| &gt;= 4: +-1 (erfc 4 &lt; 2^-25).
/// The coefficients are weighted least-squares fits on Chebyshev nodes (relative fit error 4e-11 and 3e-9), so the
/// result is limited by float32 rounding. Reference: <see cref="Reference.Erf"/>.
/// </summary>
public static class Erf
{
    const float A0 = 1.1283791670800527f, A1 = -0.3761263855257886f, A2 = 0.11283783440656243f, A3 = -0.026865475337044715f,
        A4 = 0.005221138204329145f, A5 = -0.0008485431748754347f, A6 = 0.00011274685357091167f, A7 = -9.689588222575832e-06f;
    const float B0 = 2.5962322825608757e-05f, B1 = 0.5637192056904435f, B2 = 0.0030156843666735195f, B3 = -0.285187602620868f,
        B4 = -0.06926381664567799f, B5 = 0.8994746922755077f, B6 = -1.5240357090158956f, B7 = 1.4239852285142613f,
        B8 = -0.8105906818524571f, B9 = 0.2646572868211446f, B10 = -0.03821667486274084f;

    /// <summary>erf of one float.</summary>
    public static float Scalar(float x)
    {
        float a = MathF.Abs(x);
        if (float.IsNaN(x)) return x;
        if (a <= 1f)
        {
            float t = x * x;
            return x * (A0 + t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * (A5 + t * (A6 + t * A7)))))));
        }
        if (a >= 4f) return MathF.CopySign(1f, x);
        float u = 1f / a;
        float q = B0 + u * (B1 + u * (B2 + u * (B3 + u * (B4 + u * (B5 + u * (B6 + u * (B7 + u * (B8 + u * (B9 + u * B10)))))))));
        return MathF.CopySign(1f - MathF.Exp(-a * a) * q, x);
    }

    /// <summary>y = erf(x) over spans (y may equal x).</summary>
    public static void Run(ReadOnlySpan<float> x, Span<float> y) => Map(x, y, gelu: false);

    /// <summary>y = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2, the exact GELU, over spans (y may equal x).</summary>
    public static void Gelu(ReadOnlySpan<float> x, Span<float> y) => Map(x, y, gelu: true);

    static void Map(ReadOnlySpan<float> x, Span<float> y, bool gelu)
    {
        const float invSqrt2 = 0.70710678118654752f;
        int i = 0, w = Vector<float>.Count;
        if (System.Numerics.Vector.IsHardwareAccelerated)
        {
            var xv = MemoryMarshal.Cast<float, Vector<float>>(x);
            var yv = MemoryMarshal.Cast<float, Vector<float>>(y);
            for (int k = 0; k < xv.Length; k++)
            {
                var v = xv[k];
                var e = Lanes(gelu ? v * invSqrt2 : v);
                yv[k] = gelu ? v * (Vector<float>.One + e) * 0.5f : e;
            }
            i = xv.Length * w;
        }
        for (; i < x.Length; i++) y[i] = gelu ? x[i] * (1f + Scalar(x[i] * invSqrt2)) * 0.5f : Scalar(x[i]);
    }

    static Vector<float> Lanes(Vector<float> x)
    {
        var a = System.Numerics.Vector.Abs(x);
        var t = x * x;
        var small = x * (new Vector<float>(A0) + t * (new Vector<float>(A1) + t * (new Vector<float>(A2) + t * (new Vector<float>(A3)
            + t * (new Vector<float>(A4) + t * (new Vector<float>(A5) + t * (new Vector<float>(A6) + t * new Vector<float>(A7))))))));
        var u = Vector<float>.One / System.Numerics.Vector.Max(a, Vector<float>.One);
        var q = new Vector<float>(B0) + u * (new Vector<float>(B1) + u * (new Vector<float>(B2) + u * (new Vector<float>(B3) + u * (new Vector<float>(B4)
            + u * (new Vector<float>(B5) + u * (new Vector<float>(B6) + u * (new Vector<float>(B7) + u * (new Vector<float>(B8)
            + u * (new Vector<float>(B9) + u * new Vector<float>(B10))))))))));
        var ac = System.Numerics.Vector.Min(a, new Vector<float>(4f));
        var large = Vector<float>.One - System.Numerics.Vector.Exp(-(ac * ac)) * q;
        large = System.Numerics.Vector.ConditionalSelect(System.Numerics.Vector.GreaterThanOrEqual(a, new Vector<float>(4f)), Vector<float>.One, large);
        // Copy the sign of x onto the large-|x| branch; NaN flows through the small branch.
        var signed = System.Numerics.Vector.ConditionalSelect(System.Numerics.Vector.LessThan(x, Vector<float>.Zero), -large, large);
        return System.Numerics.Vector.ConditionalSelect(System.Numerics.Vector.GreaterThan(a, Vector<float>.One), signed, small);
    }
}
