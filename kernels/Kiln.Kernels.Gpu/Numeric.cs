using ILGPU.Algorithms;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// Element conversions of one storage type. Kernels are generic over a struct implementing this, so one kernel body
/// serves every dtype (ILGPU specializes the struct's methods at compile time; no virtual calls reach the device).
/// </summary>
public interface IElement<T> where T : unmanaged
{
    /// <summary>True for integer storage (conversions between integers go through Int64, not float64).</summary>
    bool IsInteger { get; }
    /// <summary>The value as float64.</summary>
    double ToDouble(T v);
    /// <summary>The nearest element to <paramref name="v"/> (truncation toward zero for integers, saturating; NaN to 0).</summary>
    T FromDouble(double v);
    /// <summary>The value as Int64 (integers only).</summary>
    long ToLong(T v);
    /// <summary>The element holding <paramref name="v"/> (integers only; Int32 keeps the low 32 bits).</summary>
    T FromLong(long v);
}

/// <summary>Arithmetic of a numeric dtype, with NaN-propagating Max/Min as in <see cref="Reference.Binary"/>.</summary>
public interface INum<T> : IElement<T> where T : unmanaged
{
    /// <summary>0.</summary>
    T Zero { get; }
    /// <summary>1.</summary>
    T One { get; }
    /// <summary>The identity of Max: -infinity or the smallest integer.</summary>
    T Lowest { get; }
    /// <summary>The identity of Min: +infinity or the largest integer.</summary>
    T Highest { get; }
    /// <summary>a + b.</summary>
    T Add(T a, T b);
    /// <summary>a - b.</summary>
    T Sub(T a, T b);
    /// <summary>a * b.</summary>
    T Mul(T a, T b);
    /// <summary>a / b (the caller guards integer division by zero).</summary>
    T Div(T a, T b);
    /// <summary>-a.</summary>
    T Neg(T a);
    /// <summary>max(a, b), NaN when either is NaN.</summary>
    T Max(T a, T b);
    /// <summary>min(a, b), NaN when either is NaN.</summary>
    T Min(T a, T b);
    /// <summary>a &lt; b.</summary>
    bool Lt(T a, T b);
    /// <summary>a &lt;= b.</summary>
    bool Le(T a, T b);
    /// <summary>a == b.</summary>
    bool Eq(T a, T b);
    /// <summary>True for NaN.</summary>
    bool IsNaN(T a);
    /// <summary>a ^ b (floating types).</summary>
    T Pow(T a, T b);
    /// <summary>atan2(a, b) (floating types).</summary>
    T Atan2(T a, T b);
}

/// <summary>Transcendental functions of a floating dtype (XMath, which every ILGPU backend implements).</summary>
public interface IFloat<T> : INum<T> where T : unmanaged
{
    /// <summary>e^x.</summary>
    T Exp(T x);
    /// <summary>ln x.</summary>
    T Log(T x);
    /// <summary>sqrt x.</summary>
    T Sqrt(T x);
    /// <summary>tanh x.</summary>
    T Tanh(T x);
    /// <summary>sin x.</summary>
    T Sin(T x);
    /// <summary>cos x.</summary>
    T Cos(T x);
    /// <summary>|x|.</summary>
    T Abs(T x);
    /// <summary>True when the sign bit is set (also for -0 and NaNs with the bit).</summary>
    bool SignBit(T x);
    /// <summary>The significand of finite non-zero |x|, in [1, 2): |x| = Significand(x) · 2^ILogB(x), subnormals included.</summary>
    T Significand(T x);
    /// <summary>The binary exponent of finite non-zero |x| (see <see cref="Significand"/>).</summary>
    int ILogB(T x);
    /// <summary>m · 2^k for m in [1, 4), rounded once (overflow to infinity, underflow through the subnormals to 0).</summary>
    T ScaleB(T m, int k);
}

/// <summary>Float32 ops.</summary>
public struct F32 : IFloat<float>
{
    /// <inheritdoc/>
    public readonly bool IsInteger => false;
    /// <inheritdoc/>
    public readonly double ToDouble(float v) => v;
    /// <inheritdoc/>
    public readonly float FromDouble(double v) => (float)v;
    /// <inheritdoc/>
    public readonly long ToLong(float v) => (long)v;
    /// <inheritdoc/>
    public readonly float FromLong(long v) => v;
    /// <inheritdoc/>
    public readonly float Zero => 0f;
    /// <inheritdoc/>
    public readonly float One => 1f;
    /// <inheritdoc/>
    public readonly float Lowest => float.NegativeInfinity;
    /// <inheritdoc/>
    public readonly float Highest => float.PositiveInfinity;
    /// <inheritdoc/>
    public readonly float Add(float a, float b) => a + b;
    /// <inheritdoc/>
    public readonly float Sub(float a, float b) => a - b;
    /// <inheritdoc/>
    public readonly float Mul(float a, float b) => a * b;
    /// <inheritdoc/>
    public readonly float Div(float a, float b) => a / b;
    /// <inheritdoc/>
    public readonly float Neg(float a) => -a;
    /// <inheritdoc/>
    public readonly float Max(float a, float b) => XMath.IsNaN(a) || XMath.IsNaN(b) ? float.NaN : (a >= b ? a : b);
    /// <inheritdoc/>
    public readonly float Min(float a, float b) => XMath.IsNaN(a) || XMath.IsNaN(b) ? float.NaN : (a <= b ? a : b);
    /// <inheritdoc/>
    public readonly bool Lt(float a, float b) => a < b;
    /// <inheritdoc/>
    public readonly bool Le(float a, float b) => a <= b;
    /// <inheritdoc/>
    public readonly bool Eq(float a, float b) => a == b;
    /// <inheritdoc/>
    public readonly bool IsNaN(float a) => XMath.IsNaN(a);
    /// <inheritdoc/>
    public readonly float Pow(float a, float b) => XMath.Pow(a, b);
    /// <inheritdoc/>
    public readonly float Atan2(float a, float b) => XMath.Atan2(a, b);
    /// <inheritdoc/>
    public readonly float Exp(float x) => XMath.Exp(x);
    /// <inheritdoc/>
    public readonly float Log(float x) => XMath.Log(x);
    /// <inheritdoc/>
    public readonly float Sqrt(float x) => XMath.Sqrt(x);
    /// <inheritdoc/>
    public readonly float Tanh(float x) => XMath.Tanh(x);
    /// <inheritdoc/>
    public readonly float Sin(float x) => XMath.Sin(x);
    /// <inheritdoc/>
    public readonly float Cos(float x) => XMath.Cos(x);
    /// <inheritdoc/>
    public readonly float Abs(float x) => XMath.Abs(x);
    /// <inheritdoc/>
    public readonly bool SignBit(float x) => (Interop.FloatAsInt(x) >> 31) != 0;
    /// <inheritdoc/>
    public readonly float Significand(float x) => Interop.IntAsFloat((Normal(x) & 0x7FFFFFu) | 0x3F800000u);
    /// <inheritdoc/>
    public readonly int ILogB(float x)
    {
        uint b = Interop.FloatAsInt(x) & 0x7FFFFFFFu;
        return b >> 23 != 0 ? (int)(b >> 23) - 127 : (int)(Normal(x) >> 23) - 127 - 64;
    }
    /// <inheritdoc/>
    public readonly float ScaleB(float m, int k)
    {
        if (k > 127) return float.PositiveInfinity;
        if (k < -152) return 0f;
        int a = k < -126 ? -126 : k;   // m · 2^a is exact (or overflows, as it should); the second factor rounds once
        return m * Interop.IntAsFloat((uint)(a + 127) << 23) * Interop.IntAsFloat((uint)(k - a + 127) << 23);
    }
    // The bits of |x| scaled into the normal range (a subnormal times 2^64, which is exact).
    static uint Normal(float x)
    {
        uint b = Interop.FloatAsInt(x) & 0x7FFFFFFFu;
        return b >> 23 != 0 ? b : Interop.FloatAsInt(Interop.IntAsFloat(b) * 18446744073709551616f);
    }
}

/// <summary>Float64 ops.</summary>
public struct F64 : IFloat<double>
{
    /// <inheritdoc/>
    public readonly bool IsInteger => false;
    /// <inheritdoc/>
    public readonly double ToDouble(double v) => v;
    /// <inheritdoc/>
    public readonly double FromDouble(double v) => v;
    /// <inheritdoc/>
    public readonly long ToLong(double v) => (long)v;
    /// <inheritdoc/>
    public readonly double FromLong(long v) => v;
    /// <inheritdoc/>
    public readonly double Zero => 0.0;
    /// <inheritdoc/>
    public readonly double One => 1.0;
    /// <inheritdoc/>
    public readonly double Lowest => double.NegativeInfinity;
    /// <inheritdoc/>
    public readonly double Highest => double.PositiveInfinity;
    /// <inheritdoc/>
    public readonly double Add(double a, double b) => a + b;
    /// <inheritdoc/>
    public readonly double Sub(double a, double b) => a - b;
    /// <inheritdoc/>
    public readonly double Mul(double a, double b) => a * b;
    /// <inheritdoc/>
    public readonly double Div(double a, double b) => a / b;
    /// <inheritdoc/>
    public readonly double Neg(double a) => -a;
    /// <inheritdoc/>
    public readonly double Max(double a, double b) => XMath.IsNaN(a) || XMath.IsNaN(b) ? double.NaN : (a >= b ? a : b);
    /// <inheritdoc/>
    public readonly double Min(double a, double b) => XMath.IsNaN(a) || XMath.IsNaN(b) ? double.NaN : (a <= b ? a : b);
    /// <inheritdoc/>
    public readonly bool Lt(double a, double b) => a < b;
    /// <inheritdoc/>
    public readonly bool Le(double a, double b) => a <= b;
    /// <inheritdoc/>
    public readonly bool Eq(double a, double b) => a == b;
    /// <inheritdoc/>
    public readonly bool IsNaN(double a) => XMath.IsNaN(a);
    /// <inheritdoc/>
    public readonly double Pow(double a, double b) => XMath.Pow(a, b);
    /// <inheritdoc/>
    public readonly double Atan2(double a, double b) => XMath.Atan2(a, b);
    /// <inheritdoc/>
    public readonly double Exp(double x) => XMath.Exp(x);
    /// <inheritdoc/>
    public readonly double Log(double x) => XMath.Log(x);
    /// <inheritdoc/>
    public readonly double Sqrt(double x) => XMath.Sqrt(x);
    /// <inheritdoc/>
    public readonly double Tanh(double x) => XMath.Tanh(x);
    /// <inheritdoc/>
    public readonly double Sin(double x) => XMath.Sin(x);
    /// <inheritdoc/>
    public readonly double Cos(double x) => XMath.Cos(x);
    /// <inheritdoc/>
    public readonly double Abs(double x) => XMath.Abs(x);
    /// <inheritdoc/>
    public readonly bool SignBit(double x) => (Interop.DoubleAsLong(x) >> 63) != 0;
    /// <inheritdoc/>
    public readonly double Significand(double x) => Interop.LongAsDouble((Normal(x) & 0xFFFFFFFFFFFFFul) | 0x3FF0000000000000ul);
    /// <inheritdoc/>
    public readonly int ILogB(double x)
    {
        ulong b = Interop.DoubleAsLong(x) & 0x7FFFFFFFFFFFFFFFul;
        return b >> 52 != 0 ? (int)(b >> 52) - 1023 : (int)(Normal(x) >> 52) - 1023 - 64;
    }
    /// <inheritdoc/>
    public readonly double ScaleB(double m, int k)
    {
        if (k > 1023) return double.PositiveInfinity;
        if (k < -1077) return 0.0;
        int a = k < -1022 ? -1022 : k;
        return m * Interop.LongAsDouble((ulong)(a + 1023) << 52) * Interop.LongAsDouble((ulong)(k - a + 1023) << 52);
    }
    static ulong Normal(double x)
    {
        ulong b = Interop.DoubleAsLong(x) & 0x7FFFFFFFFFFFFFFFul;
        return b >> 52 != 0 ? b : Interop.DoubleAsLong(Interop.LongAsDouble(b) * 18446744073709551616.0);
    }
}

/// <summary>Int32 ops.</summary>
public struct I32 : INum<int>
{
    /// <inheritdoc/>
    public readonly bool IsInteger => true;
    /// <inheritdoc/>
    public readonly double ToDouble(int v) => v;
    /// <inheritdoc/>
    public readonly int FromDouble(double v) => XMath.IsNaN(v) ? 0 : v >= 2147483647.0 ? int.MaxValue : v <= -2147483648.0 ? int.MinValue : (int)v;
    /// <inheritdoc/>
    public readonly long ToLong(int v) => v;
    /// <inheritdoc/>
    public readonly int FromLong(long v) => (int)v;
    /// <inheritdoc/>
    public readonly int Zero => 0;
    /// <inheritdoc/>
    public readonly int One => 1;
    /// <inheritdoc/>
    public readonly int Lowest => int.MinValue;
    /// <inheritdoc/>
    public readonly int Highest => int.MaxValue;
    /// <inheritdoc/>
    public readonly int Add(int a, int b) => a + b;
    /// <inheritdoc/>
    public readonly int Sub(int a, int b) => a - b;
    /// <inheritdoc/>
    public readonly int Mul(int a, int b) => a * b;
    /// <inheritdoc/>
    public readonly int Div(int a, int b) => b == 0 ? 0 : a / b;
    /// <inheritdoc/>
    public readonly int Neg(int a) => -a;
    /// <inheritdoc/>
    public readonly int Max(int a, int b) => a >= b ? a : b;
    /// <inheritdoc/>
    public readonly int Min(int a, int b) => a <= b ? a : b;
    /// <inheritdoc/>
    public readonly bool Lt(int a, int b) => a < b;
    /// <inheritdoc/>
    public readonly bool Le(int a, int b) => a <= b;
    /// <inheritdoc/>
    public readonly bool Eq(int a, int b) => a == b;
    /// <inheritdoc/>
    public readonly bool IsNaN(int a) => false;
    /// <inheritdoc/>
    public readonly int Pow(int a, int b) => 0;
    /// <inheritdoc/>
    public readonly int Atan2(int a, int b) => 0;
}

/// <summary>Int64 ops.</summary>
public struct I64 : INum<long>
{
    /// <inheritdoc/>
    public readonly bool IsInteger => true;
    /// <inheritdoc/>
    public readonly double ToDouble(long v) => v;
    /// <inheritdoc/>
    public readonly long FromDouble(double v) => XMath.IsNaN(v) ? 0 : v >= 9223372036854775807.0 ? long.MaxValue : v <= -9223372036854775808.0 ? long.MinValue : (long)v;
    /// <inheritdoc/>
    public readonly long ToLong(long v) => v;
    /// <inheritdoc/>
    public readonly long FromLong(long v) => v;
    /// <inheritdoc/>
    public readonly long Zero => 0;
    /// <inheritdoc/>
    public readonly long One => 1;
    /// <inheritdoc/>
    public readonly long Lowest => long.MinValue;
    /// <inheritdoc/>
    public readonly long Highest => long.MaxValue;
    /// <inheritdoc/>
    public readonly long Add(long a, long b) => a + b;
    /// <inheritdoc/>
    public readonly long Sub(long a, long b) => a - b;
    /// <inheritdoc/>
    public readonly long Mul(long a, long b) => a * b;
    /// <inheritdoc/>
    public readonly long Div(long a, long b) => b == 0 ? 0 : a / b;
    /// <inheritdoc/>
    public readonly long Neg(long a) => -a;
    /// <inheritdoc/>
    public readonly long Max(long a, long b) => a >= b ? a : b;
    /// <inheritdoc/>
    public readonly long Min(long a, long b) => a <= b ? a : b;
    /// <inheritdoc/>
    public readonly bool Lt(long a, long b) => a < b;
    /// <inheritdoc/>
    public readonly bool Le(long a, long b) => a <= b;
    /// <inheritdoc/>
    public readonly bool Eq(long a, long b) => a == b;
    /// <inheritdoc/>
    public readonly bool IsNaN(long a) => false;
    /// <inheritdoc/>
    public readonly long Pow(long a, long b) => 0;
    /// <inheritdoc/>
    public readonly long Atan2(long a, long b) => 0;
}

/// <summary>Bool stored as one byte (0 or 1); arithmetic is logical (used by copy, where, gather and scatter).</summary>
public struct U8 : INum<byte>
{
    /// <inheritdoc/>
    public readonly bool IsInteger => true;
    /// <inheritdoc/>
    public readonly double ToDouble(byte v) => v != 0 ? 1.0 : 0.0;
    /// <inheritdoc/>
    public readonly byte FromDouble(double v) => v != 0 ? (byte)1 : (byte)0;
    /// <inheritdoc/>
    public readonly long ToLong(byte v) => v != 0 ? 1 : 0;
    /// <inheritdoc/>
    public readonly byte FromLong(long v) => v != 0 ? (byte)1 : (byte)0;
    /// <inheritdoc/>
    public readonly byte Zero => 0;
    /// <inheritdoc/>
    public readonly byte One => 1;
    /// <inheritdoc/>
    public readonly byte Lowest => 0;
    /// <inheritdoc/>
    public readonly byte Highest => 1;
    /// <inheritdoc/>
    public readonly byte Add(byte a, byte b) => (byte)(a | b);
    /// <inheritdoc/>
    public readonly byte Sub(byte a, byte b) => (byte)(a & ~b);
    /// <inheritdoc/>
    public readonly byte Mul(byte a, byte b) => (byte)(a & b);
    /// <inheritdoc/>
    public readonly byte Div(byte a, byte b) => a;
    /// <inheritdoc/>
    public readonly byte Neg(byte a) => a;
    /// <inheritdoc/>
    public readonly byte Max(byte a, byte b) => (byte)(a | b);
    /// <inheritdoc/>
    public readonly byte Min(byte a, byte b) => (byte)(a & b);
    /// <inheritdoc/>
    public readonly bool Lt(byte a, byte b) => a < b;
    /// <inheritdoc/>
    public readonly bool Le(byte a, byte b) => a <= b;
    /// <inheritdoc/>
    public readonly bool Eq(byte a, byte b) => a == b;
    /// <inheritdoc/>
    public readonly bool IsNaN(byte a) => false;
    /// <inheritdoc/>
    public readonly byte Pow(byte a, byte b) => a;
    /// <inheritdoc/>
    public readonly byte Atan2(byte a, byte b) => 0;
}

/// <summary>bfloat16 storage (the top 16 bits of a float32); converts through float32 with round-to-nearest-even.</summary>
public struct BF16 : IElement<ushort>
{
    /// <inheritdoc/>
    public readonly bool IsInteger => false;
    /// <inheritdoc/>
    public readonly double ToDouble(ushort v) => Interop.IntAsFloat((uint)v << 16);
    /// <inheritdoc/>
    public readonly ushort FromDouble(double v)
    {
        float f = (float)v;
        if (XMath.IsNaN(f)) return 0x7FC0;
        uint u = Interop.FloatAsInt(f);
        return (ushort)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    }
    /// <inheritdoc/>
    public readonly long ToLong(ushort v) => (long)ToDouble(v);
    /// <inheritdoc/>
    public readonly ushort FromLong(long v) => FromDouble(v);
}

/// <summary>IEEE binary16 storage as raw bits; exact widening, round-to-nearest-even narrowing straight from float64.</summary>
public struct F16 : IElement<ushort>
{
    /// <inheritdoc/>
    public readonly bool IsInteger => false;
    /// <inheritdoc/>
    public readonly double ToDouble(ushort h)
    {
        int sign = (h >> 15) & 1, e = (h >> 10) & 0x1F, m = h & 0x3FF;
        double v;
        if (e == 0x1F) v = m != 0 ? double.NaN : double.PositiveInfinity;
        else if (e == 0) v = m * (1.0 / 16777216.0);                 // m * 2^-24
        else v = (1024 + m) * Pow2(e - 25);                          // (1.m) * 2^(e-15)
        return sign != 0 ? -v : v;
    }

    static double Pow2(int e)
    {
        double r = 1.0;
        if (e >= 0) for (int i = 0; i < e; i++) r *= 2.0;
        else for (int i = 0; i < -e; i++) r *= 0.5;
        return r;
    }

    /// <inheritdoc/>
    public readonly ushort FromDouble(double v)
    {
        if (XMath.IsNaN(v)) return 0x7E00;
        ushort sign = v < 0 || (v == 0 && 1.0 / v < 0) ? (ushort)0x8000 : (ushort)0;
        double a = v < 0 ? -v : v;
        if (a >= 65520.0) return (ushort)(sign | 0x7C00);           // rounds to infinity
        // Scale so that the half's last mantissa bit has weight 1, then round half to even.
        int e = 0;
        double t = a;
        while (t >= 2.0) { t *= 0.5; e++; }
        while (t < 1.0 && e > -14) { t *= 2.0; e--; }
        // a = t * 2^e with t in [1, 2) (or below 1 when subnormal at e = -14); ulp = 2^(e-10).
        double scaled = a * Pow2(10 - e);
        double fl = Floor(scaled);
        double rem = scaled - fl;
        long q = (long)fl;
        if (rem > 0.5 || (rem == 0.5 && (q & 1) == 1)) q++;
        // q in [0, 2048]; 2048 means a carry into the next binade.
        if (q == 2048) { q = 1024; e++; }
        if (q < 1024) return (ushort)(sign | (ushort)q);             // subnormal (e = -14)
        if (e > 15) return (ushort)(sign | 0x7C00);
        return (ushort)(sign | (ushort)((e + 15) << 10) | (ushort)(q - 1024));
    }

    static double Floor(double x) { double t = (long)x; return t > x ? t - 1 : t; }

    /// <inheritdoc/>
    public readonly long ToLong(ushort v) => (long)ToDouble(v);
    /// <inheritdoc/>
    public readonly ushort FromLong(long v) => FromDouble(v);
}

/// <summary>Bit reinterpretation helpers that every ILGPU backend maps to a register move.</summary>
public static class Interop
{
    /// <summary>The float with these bits.</summary>
    public static float IntAsFloat(uint bits) => BitConverter.Int32BitsToSingle((int)bits);
    /// <summary>The bits of a float.</summary>
    public static uint FloatAsInt(float f) => (uint)BitConverter.SingleToInt32Bits(f);
    /// <summary>The double with these bits.</summary>
    public static double LongAsDouble(ulong bits) => BitConverter.Int64BitsToDouble((long)bits);
    /// <summary>The bits of a double.</summary>
    public static ulong DoubleAsLong(double d) => (ulong)BitConverter.DoubleToInt64Bits(d);
}
