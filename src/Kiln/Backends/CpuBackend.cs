using System.Numerics;
using System.Numerics.Tensors;
using Kiln.Kernels;
using Kiln.Kernels.Cpu;

namespace Kiln.Backends;

/// <summary>The host backend: Kiln's SIMD kernels (kernels/Kiln.Kernels.Cpu) over managed arrays, on all cores.</summary>
public sealed partial class CpuBackend : IBackend, IMemoryCache
{
    // An op's half-precision path (HalfCompute and a lambda over the op's arguments) sits in its own XHalf method: in
    // the op's body, the lambda's closure over the parameters would be made on every call, float32 ones included
    // (a decoding step makes a few hundred calls a token).

    /// <inheritdoc/>
    public long CachedBytes => CpuArrayPool.CachedBytes;
    /// <inheritdoc/>
    public long CacheLimitBytes { get => CpuArrayPool.LimitBytes; set => CpuArrayPool.LimitBytes = value; }
    /// <inheritdoc/>
    public void Trim() => CpuArrayPool.Trim();

    /// <summary>
    /// Runs the CPU kernels of the calling flow (and of the async work it starts) on at most <paramref name="threads"/>
    /// threads until the result is disposed; other flows keep every core. Results do not depend on the thread count
    /// (<c>kiln validate</c> checks each op on one thread and on all).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="threads"/> is below 1.</exception>
    public static IDisposable LimitThreads(int threads) => WorkerTeam.Limit(threads);

    /// <summary>The threads the calling flow's CPU kernels may use.</summary>
    public static int Threads => WorkerTeam.Threads;

    /// <summary>The one CPU backend.</summary>
    public static CpuBackend Instance { get; } = new();
    CpuBackend() { }

    /// <inheritdoc/>
    public Device Device => Device.Cpu;

    static T[] A<T>(Tensor t) { var s = (CpuStorage)t.Storage; s.ThrowIfDisposed("cpu"); return s.As<T>(); }
    static int[] S(Tensor t) => t.Layout.Strides;
    static int O(Tensor t) => t.Layout.Offset;

    /// <inheritdoc/>
    public Storage Allocate(DType dtype, int length) => new CpuStorage(CpuArrayPool.Rent(dtype.ClrType(), length, dtype.Size()), dtype, length);

    /// <inheritdoc/>
    public Storage Upload(Array host, DType dtype)
    {
        if (host.GetType().GetElementType() != dtype.ClrType())
            throw new ArgumentException($"upload: array of {host.GetType().GetElementType()?.Name} cannot hold {dtype}", nameof(host));
        return new CpuStorage((Array)host.Clone(), dtype, host.Length);
    }

    /// <inheritdoc/>
    public Array Download(Tensor src)
    {
        var dst = Tensor.Empty(src.Shape, src.DType, Device.Cpu);
        Copy(src, dst);
        var data = ((CpuStorage)dst.Storage).Take();
        dst.Dispose();
        return data;
    }

    /// <inheritdoc/>
    public void Fill(Tensor dst, double value)
    {
        switch (dst.DType)
        {
            case DType.Float32: FillT(dst, (float)value); break;
            case DType.Float64: FillT(dst, value); break;
            case DType.Int32: FillT(dst, checked((int)value)); break;
            case DType.Int64: FillT(dst, checked((long)value)); break;
            case DType.Bool: FillT(dst, value != 0); break;
            case DType.Float16: FillT(dst, (Half)value); break;
            case DType.BFloat16: FillT(dst, BFloat16Bits.FromFloat((float)value)); break;
        }
    }

    static void FillT<T>(Tensor dst, T value)
    {
        var scalar = new[] { value };
        Elementwise.CopyStrided(dst.Shape.Dims, scalar, 0, new int[dst.Rank], A<T>(dst), O(dst), S(dst), v => v);
    }

    /// <inheritdoc/>
    public void Copy(Tensor src, Tensor dst)
    {
        if (src.DType == dst.DType)
        {
            // Same dtype: storage elements as they are (no conversion delegates on the way).
            switch (src.DType)
            {
                case DType.Float32: Same<float>(src, dst); return;
                case DType.Float64: Same<double>(src, dst); return;
                case DType.Int32: Same<int>(src, dst); return;
                case DType.Int64: Same<long>(src, dst); return;
                case DType.Bool: Same<bool>(src, dst); return;
                case DType.Float16: Same<Half>(src, dst); return;
                case DType.BFloat16: Same<ushort>(src, dst); return;
            }
        }
        // Float32 <-> Float64 and BFloat16 -> Float32 between dense tensors (a decoding step's logits read as float64, its
        // token's half embedding row widened): one pass with the cast's rounding, where the general path below calls two
        // delegates an element.
        if (src.IsContiguous && dst.IsContiguous)
        {
            int n = (int)dst.Numel;
            if (n == 0) return;
            if (src.DType == DType.BFloat16 && dst.DType == DType.Float32)
            {
                Span<ushort> h = A<ushort>(src).AsSpan(O(src), n);
                Span<float> f = A<float>(dst).AsSpan(O(dst), n);
                for (int i = 0; i < h.Length; i++) f[i] = BFloat16Bits.ToFloat(h[i]);
                return;
            }
            if (src.DType == DType.Float32 && dst.DType == DType.Float64)
            {
                TensorPrimitives.ConvertChecked<float, double>(A<float>(src).AsSpan(O(src), n), A<double>(dst).AsSpan(O(dst), n));
                return;
            }
            if (src.DType == DType.Float64 && dst.DType == DType.Float32)
            {
                TensorPrimitives.ConvertTruncating<double, float>(A<double>(src).AsSpan(O(src), n), A<float>(dst).AsSpan(O(dst), n));
                return;
            }
        }
        switch (src.DType)
        {
            case DType.Float32: CopyFrom<float>(src, dst, v => v); break;
            case DType.Float64: CopyFrom<double>(src, dst, v => v); break;
            case DType.Int32: CopyFrom<int>(src, dst, v => v); break;
            case DType.Int64: CopyFrom<long>(src, dst, v => v); break;
            case DType.Bool: CopyFrom<bool>(src, dst, v => v ? 1.0 : 0.0); break;
            case DType.Float16: CopyFrom<Half>(src, dst, v => (double)v); break;
            case DType.BFloat16: CopyFrom<ushort>(src, dst, v => BFloat16Bits.ToFloat(v)); break;
        }
    }

    static void Same<T>(Tensor src, Tensor dst) =>
        Elementwise.CopyStrided(dst.Shape.Dims, A<T>(src), O(src), S(src), A<T>(dst), O(dst), S(dst), Identity<T>.Func);

    static class Identity<T>
    {
        public static readonly Func<T, T> Func = v => v;
    }

    static void CopyFrom<TIn>(Tensor src, Tensor dst, Func<TIn, double> toDouble)
    {
        var x = A<TIn>(src);
        var shape = dst.Shape.Dims;
        switch (dst.DType)
        {
            case DType.Float32: Elementwise.CopyStrided(shape, x, O(src), S(src), A<float>(dst), O(dst), S(dst), Conv<TIn, float>(toDouble, d => (float)d)); break;
            case DType.Float64: Elementwise.CopyStrided(shape, x, O(src), S(src), A<double>(dst), O(dst), S(dst), Conv<TIn, double>(toDouble, d => d)); break;
            case DType.Int32: Elementwise.CopyStrided(shape, x, O(src), S(src), A<int>(dst), O(dst), S(dst), Conv<TIn, int>(toDouble, d => (int)d)); break;
            case DType.Int64: Elementwise.CopyStrided(shape, x, O(src), S(src), A<long>(dst), O(dst), S(dst), Conv<TIn, long>(toDouble, d => (long)d)); break;
            case DType.Bool: Elementwise.CopyStrided(shape, x, O(src), S(src), A<bool>(dst), O(dst), S(dst), Conv<TIn, bool>(toDouble, d => d != 0)); break;
            case DType.Float16: Elementwise.CopyStrided(shape, x, O(src), S(src), A<Half>(dst), O(dst), S(dst), Conv<TIn, Half>(toDouble, d => (Half)d)); break;
            case DType.BFloat16: Elementwise.CopyStrided(shape, x, O(src), S(src), A<ushort>(dst), O(dst), S(dst), Conv<TIn, ushort>(toDouble, d => BFloat16Bits.FromFloat((float)d))); break;
        }
    }

    // Int32 <-> Int64 skip the double round trip, so Int64 values above 2^53 narrow as a cast does (same-dtype copies,
    // Same, never convert).
    static Func<TIn, TOut> Conv<TIn, TOut>(Func<TIn, double> toDouble, Func<double, TOut> fromDouble) =>
        typeof(TIn) == typeof(int) && typeof(TOut) == typeof(long) ? (Func<TIn, TOut>)(object)(Func<int, long>)(v => v)
        : typeof(TIn) == typeof(long) && typeof(TOut) == typeof(int) ? (Func<TIn, TOut>)(object)(Func<long, int>)(v => (int)v)
        : v => fromDouble(toDouble(v));

    static NotSupportedException Unsupported(string op, DType dtype) => new($"{op}: no CPU kernel for dtype {dtype}");
}

/// <summary>bfloat16 bit conversions (round to nearest even).</summary>
public static class BFloat16Bits
{
    /// <summary>The float whose top 16 bits are <paramref name="bits"/>.</summary>
    public static float ToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>The bfloat16 nearest <paramref name="value"/> (ties to even; NaN stays NaN).</summary>
    public static ushort FromFloat(float value)
    {
        if (float.IsNaN(value)) return 0x7FC0;
        uint u = (uint)BitConverter.SingleToInt32Bits(value);
        uint rounding = 0x7FFF + ((u >> 16) & 1);
        return (ushort)((u + rounding) >> 16);
    }
}
