using ILGPU;
using ILGPU.Algorithms;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// Philox 4x32-10 on the device, mapping counters to elements exactly as the CPU path (Kiln.Kernels.Cpu.Philox): the
/// same seed and counter give the same words, so uniform, Bernoulli and integer streams are bit-identical on every
/// backend, and normal streams agree to the last bit of the device's float64 log/sin/cos.
/// Reference: Salmon et al., SC'11; the CPU path is the oracle.
/// </summary>
public static class Philox
{
    const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    /// <summary>The four words of one block.</summary>
    public struct Block
    {
        /// <summary>Words 0..3.</summary>
        public uint X0, X1, X2, X3;
    }

    /// <summary>Block <paramref name="counter"/> under key <paramref name="seed"/>.</summary>
    public static Block Compute(ulong seed, ulong counter)
    {
        uint c0 = (uint)counter, c1 = (uint)(counter >> 32), c2 = 0, c3 = 0;
        uint k0 = (uint)seed, k1 = (uint)(seed >> 32);
        for (int round = 0; round < 10; round++)
        {
            ulong p0 = (ulong)M0 * c0, p1 = (ulong)M1 * c2;
            uint n0 = (uint)(p1 >> 32) ^ c1 ^ k0, n1 = (uint)p1, n2 = (uint)(p0 >> 32) ^ c3 ^ k1, n3 = (uint)p0;
            c0 = n0; c1 = n1; c2 = n2; c3 = n3;
            k0 += W0; k1 += W1;
        }
        return new Block { X0 = c0, X1 = c1, X2 = c2, X3 = c3 };
    }

    static double UnitFloat(uint u) => (float)((u >> 8) * (1.0f / 16777216.0f));
    static double UnitDouble(uint hi, uint lo) => (((ulong)hi << 21) ^ (lo >> 11)) * (1.0 / 9007199254740992.0);

    static double UniformFloat(ulong seed, ulong counter, long i)
    {
        var b = Compute(seed, counter + (ulong)(i >> 2));
        int lane = (int)(i & 3);
        return UnitFloat(lane == 0 ? b.X0 : lane == 1 ? b.X1 : lane == 2 ? b.X2 : b.X3);
    }

    static double UniformDouble(ulong seed, ulong counter, long i)
    {
        var b = Compute(seed, counter + (ulong)(i >> 1));
        return (i & 1) == 0 ? UnitDouble(b.X0, b.X1) : UnitDouble(b.X2, b.X3);
    }

    static double Normal(ulong seed, ulong counter, long i, bool float64)
    {
        double u1, u2; bool second;
        if (float64)
        {
            var b = Compute(seed, counter + (ulong)(i >> 1));
            u1 = UnitDouble(b.X0, b.X1); u2 = UnitDouble(b.X2, b.X3); second = (i & 1) == 1;
        }
        else
        {
            var b = Compute(seed, counter + (ulong)(i >> 2));
            int lane = (int)(i & 3);
            u1 = UnitFloat(lane < 2 ? b.X0 : b.X2); u2 = UnitFloat(lane < 2 ? b.X1 : b.X3); second = (lane & 1) == 1;
        }
        double r = XMath.Sqrt(-2.0 * XMath.Log(1.0 - u1));
        double t = 2.0 * 3.141592653589793 * u2;
        return second ? r * XMath.Sin(t) : r * XMath.Cos(t);
    }

    /// <summary>
    /// dst[i] = sample i of a <c>RandomKind</c> stream (0 uniform on [a, b), 1 normal(a, b), 2 Bernoulli(a), 3 integers on [a, b)).
    /// float64 selects the float64 element mapping (Float64 outputs).
    /// </summary>
    public static void Fill<T, TE>(Index1D i, ArrayView<T> dst, int kind, ulong seed, ulong counter, double a, double b, int float64)
        where T : unmanaged where TE : struct, IElement<T>
    {
        TE e = default;
        bool f64 = float64 != 0;
        double v;
        switch (kind)
        {
            case 0: v = a + (b - a) * (f64 ? UniformDouble(seed, counter, i) : UniformFloat(seed, counter, i)); break;
            case 1: v = a + b * Normal(seed, counter, i, f64); break;
            case 2: v = (f64 ? UniformDouble(seed, counter, i) : UniformFloat(seed, counter, i)) < a ? 1.0 : 0.0; break;
            default: v = XMath.Floor(a + (b - a) * UniformDouble(seed, counter, i)); break;
        }
        dst[i] = e.FromDouble(v);
    }
}

/// <summary>The typed kernel of <see cref="Philox"/> for one dtype.</summary>
public static class PhiloxKernels<T, TE> where T : unmanaged where TE : struct, IElement<T>
{
    /// <summary>philox.fill: dst[i] = sample i of a stream.</summary>
    public static readonly Kernel<ArrayView<T>, int, ulong, ulong, double, double, int> Fill = new($"philox.fill.{Dt.Of<TE>()}", Philox.Fill<T, TE>);
}
