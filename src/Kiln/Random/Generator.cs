using Kiln.Backends;
using Kiln.Kernels.Cpu;

namespace Kiln;

/// <summary>
/// A Philox 4x32-10 stream: a seed and a counter. Each draw takes the next block range, so the same seed and the same
/// sequence of draws give the same numbers on every backend and thread count. Thread-safe.
/// </summary>
public sealed class Generator(ulong seed)
{
    long _counter;

    /// <summary>The key of the stream.</summary>
    public ulong Seed { get; } = seed;
    /// <summary>The next block the stream will use; set it to resume a stream where a checkpoint left it.</summary>
    public ulong Counter
    {
        get => (ulong)Interlocked.Read(ref _counter);
        set => Interlocked.Exchange(ref _counter, (long)value);
    }

    /// <summary>A process-wide generator with seed 0 for code that does not pass one (tests and methods should pass their own).</summary>
    public static Generator Default { get; } = new(0);

    internal ulong Take(ulong blocks) => (ulong)Interlocked.Add(ref _counter, (long)blocks) - blocks;

    internal Tensor Draw(RandomKind kind, Shape shape, DType dtype, Device? device, double a, double b)
    {
        var t = Tensor.Empty(shape, dtype, device);
        ulong start = Take(Philox.BlocksFor(shape.Numel, dtype == DType.Float64 || kind == RandomKind.RandInt));
        if (shape.Numel == 0) return t;
        t.Backend.Random(kind, Seed, start, a, b, t);
        // Rounding a + (b - a) u to the dtype can land on b itself (in the halves about one draw in 500 near b, in float32
        // and float64 rarely): those move to the dtype's largest number below b, so the interval stays half-open.
        if (kind == RandomKind.Uniform && b > a && dtype.IsFloating()) t.Backend.Clamp(t, double.NegativeInfinity, Below(b, dtype), t);
        return t;
    }

    // The largest number of the dtype below b.
    static double Below(double b, DType dtype)
    {
        switch (dtype)
        {
            case DType.Float64: return Math.BitDecrement(b);
            case DType.Float32: { float f = (float)b; return f < b ? f : MathF.BitDecrement(f); }
            case DType.Float16: { var h = (Half)b; return (double)h < b ? (double)h : (double)Half.BitDecrement(h); }
            default:
            {
                ushort h = BFloat16Bits.FromFloat((float)b);
                if (BFloat16Bits.ToFloat(h) < b) return BFloat16Bits.ToFloat(h);
                // Sign and magnitude: one step down is a smaller magnitude above 0, a larger one below.
                h = (h & 0x7FFF) == 0 ? (ushort)0x8001 : (h & 0x8000) == 0 ? (ushort)(h - 1) : (ushort)(h + 1);
                return BFloat16Bits.ToFloat(h);
            }
        }
    }
}

public partial class Tensor
{
    /// <summary>Uniform samples on [low, high).</summary>
    public static Tensor Rand(Shape shape, Generator? generator = null, double low = 0, double high = 1, DType dtype = DType.Float32, Device? device = null)
    {
        if (!(low <= high)) throw new ArgumentException($"rand: low {low} must not exceed high {high}", nameof(low));
        return (generator ?? Generator.Default).Draw(RandomKind.Uniform, shape, dtype, device, low, high);
    }

    /// <summary>Normal samples with the given mean and standard deviation.</summary>
    public static Tensor Randn(Shape shape, Generator? generator = null, double mean = 0, double std = 1, DType dtype = DType.Float32, Device? device = null)
    {
        if (!(std >= 0)) throw new ArgumentException($"randn: std must be non-negative, got {std}", nameof(std));
        return (generator ?? Generator.Default).Draw(RandomKind.Normal, shape, dtype, device, mean, std);
    }

    /// <summary>1 with probability p, else 0.</summary>
    public static Tensor Bernoulli(Shape shape, double p, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        if (!(p >= 0 && p <= 1)) throw new ArgumentOutOfRangeException(nameof(p), p, "bernoulli: p must be in [0, 1]");
        return (generator ?? Generator.Default).Draw(RandomKind.Bernoulli, shape, dtype, device, p, 0);
    }

    /// <summary>Integers uniform on [low, high).</summary>
    public static Tensor RandInt(Shape shape, long low, long high, Generator? generator = null, DType dtype = DType.Int64, Device? device = null)
    {
        if (low >= high) throw new ArgumentException($"randint: low {low} must be below high {high}", nameof(low));
        return (generator ?? Generator.Default).Draw(RandomKind.RandInt, shape, dtype, device, low, high);
    }

    /// <summary>A uniformly random permutation of 0..n-1 (Int64): the argsort of n uniform keys.</summary>
    public static Tensor RandPerm(int n, Generator? generator = null, Device? device = null)
    {
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), n, "randperm: n must be non-negative");
        return Rand(new Shape(n), generator, dtype: DType.Float64, device: device).ArgSort();
    }
}
