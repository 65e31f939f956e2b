using System.Runtime.CompilerServices;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Philox 4x32-10 (Salmon et al., SC'11): a counter-based generator, so element i of a stream depends only on
/// (seed, counter, i). Every backend maps counters to elements the same way, giving the same numbers in any order on
/// any number of threads. Block c of a stream gives four 32-bit words; float32 element i uses word i%4 of block i/4,
/// float64 element i uses words 2(i%2), 2(i%2)+1 of block i/2.
/// </summary>
public static class Philox
{
    const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    /// <summary>The four words of block <paramref name="counter"/> under key <paramref name="seed"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (uint, uint, uint, uint) Block(ulong seed, ulong counter) =>
        Block((uint)counter, (uint)(counter >> 32), 0, 0, (uint)seed, (uint)(seed >> 32));

    /// <summary>Philox 4x32-10 of the 128-bit counter (c0..c3) under the 64-bit key (k0, k1), as in Random123.</summary>
    public static (uint, uint, uint, uint) Block(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        for (int round = 0; round < 10; round++)
        {
            ulong p0 = (ulong)M0 * c0, p1 = (ulong)M1 * c2;
            uint n0 = (uint)(p1 >> 32) ^ c1 ^ k0, n1 = (uint)p1, n2 = (uint)(p0 >> 32) ^ c3 ^ k1, n3 = (uint)p0;
            c0 = n0; c1 = n1; c2 = n2; c3 = n3;
            k0 += W0; k1 += W1;
        }
        return (c0, c1, c2, c3);
    }

    /// <summary>Word <paramref name="lane"/> (0..3) of a block.</summary>
    public static uint Lane((uint, uint, uint, uint) b, int lane) => lane switch { 0 => b.Item1, 1 => b.Item2, 2 => b.Item3, _ => b.Item4 };

    /// <summary>A float in [0, 1) from the top 24 bits of a word.</summary>
    public static float ToUnitFloat(uint u) => (u >> 8) * (1.0f / 16777216.0f);

    /// <summary>A double in [0, 1) from 53 bits of two words.</summary>
    public static double ToUnitDouble(uint hi, uint lo) => (((ulong)hi << 21) ^ (lo >> 11)) * (1.0 / 9007199254740992.0);

    /// <summary>Element <paramref name="i"/> of a uniform [0,1) float32 stream.</summary>
    public static float UniformFloat(ulong seed, ulong counter, long i) => ToUnitFloat(Lane(Block(seed, counter + (ulong)(i >> 2)), (int)(i & 3)));

    /// <summary>Element <paramref name="i"/> of a uniform [0,1) float64 stream.</summary>
    public static double UniformDouble(ulong seed, ulong counter, long i)
    {
        var b = Block(seed, counter + (ulong)(i >> 1));
        return (i & 1) == 0 ? ToUnitDouble(b.Item1, b.Item2) : ToUnitDouble(b.Item3, b.Item4);
    }

    /// <summary>
    /// Element <paramref name="i"/> of a standard normal stream (Box-Muller on the pair of uniforms that shares its block:
    /// float32 pairs words (0,1) and (2,3); float64 uses one block per pair of elements).
    /// </summary>
    public static double Normal(ulong seed, ulong counter, long i, bool float64)
    {
        double u1, u2; bool second;
        if (float64)
        {
            var b = Block(seed, counter + (ulong)(i >> 1));
            u1 = ToUnitDouble(b.Item1, b.Item2); u2 = ToUnitDouble(b.Item3, b.Item4); second = (i & 1) == 1;
        }
        else
        {
            var b = Block(seed, counter + (ulong)(i >> 2));
            int lane = (int)(i & 3);
            uint w1 = lane < 2 ? b.Item1 : b.Item3, w2 = lane < 2 ? b.Item2 : b.Item4;
            u1 = ToUnitFloat(w1); u2 = ToUnitFloat(w2); second = (lane & 1) == 1;
        }
        double r = Math.Sqrt(-2.0 * Math.Log(1.0 - u1));   // 1 - u1 lies in (0, 1]: no log(0)
        double t = 2.0 * Math.PI * u2;
        return second ? r * Math.Sin(t) : r * Math.Cos(t);
    }

    /// <summary>Blocks a stream of <paramref name="n"/> elements consumes (so the next call starts after them).</summary>
    public static ulong BlocksFor(long n, bool float64) => (ulong)(float64 ? (n + 1) / 2 : (n + 3) / 4);
}
