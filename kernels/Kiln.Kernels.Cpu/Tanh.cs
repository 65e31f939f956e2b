using System.Numerics;
using System.Runtime.InteropServices;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Vectorized float32 tanh with full relative accuracy near 0 (TensorPrimitives.Tanh computes through exp and returns
/// -6e-8 at 0 and 5% error at 1e-6). |x| &lt; 0.6: tanh x = x P(x^2), P of degree 6 (relative fit error 1e-10);
/// otherwise tanh |x| = 1 - 2 / (e^(2|x|) + 1), which has no cancellation there. Reference: <see cref="Reference.Unary"/>.
/// </summary>
public static class Tanh
{
    const float C0 = 0.9999999999634723f, C1 = -0.3333333154210308f, C2 = 0.13333242680329288f, C3 = -0.053951987286341874f,
        C4 = 0.021732131446565023f, C5 = -0.00826182265137726f, C6 = 0.002226435646129521f;
    const float Split = 0.6f;

    /// <summary>tanh of one float.</summary>
    public static float Scalar(float x)
    {
        float a = MathF.Abs(x);
        if (a < Split)
        {
            float t = x * x;
            return x * (C0 + t * (C1 + t * (C2 + t * (C3 + t * (C4 + t * (C5 + t * C6))))));
        }
        if (float.IsNaN(x)) return x;
        return MathF.CopySign(1f - 2f / (MathF.Exp(2f * MathF.Min(a, 20f)) + 1f), x);
    }

    /// <summary>y = tanh(x) over spans (y may equal x).</summary>
    public static void Run(ReadOnlySpan<float> x, Span<float> y)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var xv = MemoryMarshal.Cast<float, Vector<float>>(x);
            var yv = MemoryMarshal.Cast<float, Vector<float>>(y);
            for (int k = 0; k < xv.Length; k++) yv[k] = Lanes(xv[k]);
            i = xv.Length * Vector<float>.Count;
        }
        for (; i < x.Length; i++) y[i] = Scalar(x[i]);
    }

    static Vector<float> Lanes(Vector<float> x)
    {
        var a = Vector.Abs(x);
        var t = x * x;
        var small = x * (new Vector<float>(C0) + t * (new Vector<float>(C1) + t * (new Vector<float>(C2) + t * (new Vector<float>(C3)
            + t * (new Vector<float>(C4) + t * (new Vector<float>(C5) + t * new Vector<float>(C6)))))));
        // Clamping at 20 keeps e^(2|x|) finite; tanh 20 is 1 in float32.
        var e = Vector.Exp(Vector.Min(a, new Vector<float>(20f)) * 2f);
        var large = Vector<float>.One - new Vector<float>(2f) / (e + Vector<float>.One);
        large = Vector.ConditionalSelect(Vector.LessThan(x, Vector<float>.Zero), -large, large);
        // NaN fails every comparison, so it takes the small branch, where it propagates.
        return Vector.ConditionalSelect(Vector.GreaterThanOrEqual(a, new Vector<float>(Split)), large, small);
    }
}
