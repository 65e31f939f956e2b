using Xunit;

namespace Kiln.Tests.TestKit;

/// <summary>Elementwise comparison against a float64 reference with a stated tolerance: |a - e| &lt;= atol + rtol |e|.</summary>
public static class Close
{
    /// <summary>Float32 results against a float64 reference: a few ulps of float32 for well-conditioned ops.</summary>
    public const double F32Rtol = 2e-5, F32Atol = 1e-6;
    /// <summary>Float64 against float64.</summary>
    public const double F64Rtol = 1e-12, F64Atol = 1e-14;

    public static void Check(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, double rtol, double atol, string what = "")
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            if (double.IsNaN(e)) { Assert.True(double.IsNaN(a), $"{what}[{i}]: expected NaN, got {a}"); continue; }
            if (double.IsInfinity(e)) { Assert.True(e == a, $"{what}[{i}]: expected {e}, got {a}"); continue; }
            double tol = atol + rtol * Math.Abs(e);
            Assert.True(Math.Abs(a - e) <= tol, $"{what}[{i}]: got {a:R}, expected {e:R} (|diff| {Math.Abs(a - e):G3} > tol {tol:G3})");
        }
    }

    public static void Check(Tensor expected, Tensor actual, double rtol, double atol, string what = "")
    {
        Assert.Equal(expected.Shape, actual.Shape);
        Check(expected.ToDoubleArray(), actual.ToDoubleArray(), rtol, atol, what);
    }

    /// <summary>Tolerances for a dtype.</summary>
    public static (double Rtol, double Atol) For(DType dtype, double scale = 1) =>
        dtype == DType.Float64 ? (F64Rtol * scale, F64Atol * scale) : (F32Rtol * scale, F32Atol * scale);
}
