using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Elementwise kernels: contiguous span kernels (TensorPrimitives where it has the op, vectorized compositions or a
/// scalar path otherwise) and strided/broadcast drivers around them.
/// Reference: <see cref="Reference.Unary"/>, <see cref="Reference.Binary"/>, <see cref="Reference.Compare"/>.
/// </summary>
public static class Elementwise
{
    /// <summary>y = op(x) over contiguous spans of float or double, with parameters <paramref name="p"/> where the op takes them; y may equal x.</summary>
    public static void Unary<T>(UnaryOp op, ReadOnlySpan<T> x, Span<T> y, UnaryParams p = default) where T : unmanaged, IFloatingPointIeee754<T>
    {
        // TensorPrimitives computes a span shorter than its widest vector lane by lane through the scalar library call,
        // whose last bits can differ from the vector form's: such a span runs padded to one full vector, so an element's
        // result never depends on the length of the row it sits in.
        int full = Vector512.IsHardwareAccelerated ? Vector512<T>.Count : Vector256.IsHardwareAccelerated ? Vector256<T>.Count : Vector128<T>.Count;
        if (x.Length > 0 && x.Length < full)
        {
            Span<T> px = stackalloc T[full], py = stackalloc T[full];
            px.Clear();
            x.CopyTo(px);
            Unary(op, px, py, p);
            py[..x.Length].CopyTo(y);
            return;
        }
        switch (op)
        {
            case UnaryOp.Hardtanh: TP.Max(x, T.CreateTruncating(p.A), y); TP.Min(y, T.CreateTruncating(p.B), y); return;
            case var _ when typeof(T) == typeof(float) && Widened.Has(op):
                Widened.Run(op, MemoryMarshal.Cast<T, float>(x), MemoryMarshal.Cast<T, float>(y), (float)p.A); return;
            case UnaryOp.LeakyRelu: LeakyRelu(x, y, T.CreateTruncating(p.A)); return;
            case UnaryOp.Step: Step(x, y); return;
            case UnaryOp.Frac or UnaryOp.Hardsigmoid or UnaryOp.Hardswish or UnaryOp.Softsign:
            {
                // Vector passes over one scratch row, in the reference's order of operations.
                var t = Strided.Rent<T>(x.Length);
                try
                {
                    var ts = t.AsSpan(0, x.Length);
                    T three = T.CreateTruncating(3), six = T.CreateTruncating(6);
                    switch (op)
                    {
                        case UnaryOp.Frac: TP.Truncate(x, ts); TP.Subtract(x, ts, y); break;
                        case UnaryOp.Softsign: TP.Abs(x, ts); TP.Add(ts, T.One, ts); TP.Divide(x, ts, y); break;
                        default:
                            TP.Add(x, three, ts); TP.Max(ts, T.Zero, ts); TP.Min(ts, six, ts);
                            if (op == UnaryOp.Hardswish) { TP.Divide(ts, six, ts); TP.Multiply(x, ts, y); }
                            else TP.Divide(ts, six, y);
                            break;
                    }
                }
                finally { Strided.Return(t); }
                return;
            }
            case UnaryOp.Neg: TP.Negate(x, y); return;
            case UnaryOp.Abs: TP.Abs(x, y); return;
            // Float64 exp, sigmoid, sin and cos take the scalar path below: TensorPrimitives' double versions gave different
            // last bits for the same input before and after the JIT's tier-up (found by kiln validate's determinism checks).
            case UnaryOp.Exp when typeof(T) == typeof(float): TP.Exp(x, y); return;
            case UnaryOp.Log: TP.Log(x, y); return;
            case UnaryOp.Sqrt: TP.Sqrt(x, y); return;
            case UnaryOp.Rsqrt: TP.ReciprocalSqrt(x, y); return;
            case UnaryOp.Sigmoid when typeof(T) == typeof(float): TP.Sigmoid(x, y); return;
            case UnaryOp.Tanh when typeof(T) == typeof(float):
                Tanh.Run(MemoryMarshal.Cast<T, float>(x), MemoryMarshal.Cast<T, float>(y)); return;
            case UnaryOp.Relu: TP.Max(x, T.Zero, y); return;
            case UnaryOp.Reciprocal: TP.Reciprocal(x, y); return;
            case UnaryOp.Square: TP.Multiply(x, x, y); return;
            case UnaryOp.Floor: TP.Floor(x, y); return;
            case UnaryOp.Ceil: TP.Ceiling(x, y); return;
            case UnaryOp.Round: TP.Round(x, y); return;
            case UnaryOp.Trunc: TP.Truncate(x, y); return;
            case UnaryOp.Erf when typeof(T) == typeof(float):
                Erf.Run(MemoryMarshal.Cast<T, float>(x), MemoryMarshal.Cast<T, float>(y)); return;
            case UnaryOp.GeluErf when typeof(T) == typeof(float):
                Erf.Gelu(MemoryMarshal.Cast<T, float>(x), MemoryMarshal.Cast<T, float>(y)); return;
            case UnaryOp.Silu when typeof(T) == typeof(float) && FloatLanes.TryMap<SiluOp>(MemoryMarshal.Cast<T, float>(x), MemoryMarshal.Cast<T, float>(y)):
                return;
            case UnaryOp.GeluTanh when typeof(T) == typeof(float) && FloatLanes.TryMap<GeluTanhOp>(MemoryMarshal.Cast<T, float>(x), MemoryMarshal.Cast<T, float>(y)):
                return;
            default:
                for (int i = 0; i < x.Length; i++) y[i] = Scalar(op, x[i], p);
                return;
        }
    }

    // 0.5 x (1 + tanh u) = x sigmoid(2u), u = c (x + 0.044715 x^3): no cancellation for x < 0. Where e^(-2u) passes
    // e^88 the sigmoid is below float32's subnormals and taken as 0, so x sigmoid(2u) is -0 there and NaN at -inf.
    readonly struct GeluTanhOp : ILaneOp
    {
        public static bool Pairs => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TV Apply<TV>(TV x) where TV : struct, IFloatLanes<TV>
        {
            var m = -(TV.Fma(x * x, TV.Splat(0.044715f), TV.Splat(1f)) * x * TV.Splat((float)(2 * 0.7978845608028654)));
            var s = TV.Splat(1f) / (TV.Splat(1f) + FloatLanes.Exp(TV.Max(TV.Min(m, TV.Splat(88f)), TV.Splat(-87f))));
            return x * TV.Select(TV.Greater(m, TV.Splat(88f)), TV.Splat(0f), s);
        }
    }

    // x / (1 + e^-x) with e^-x clamped to normal numbers; below -87, where e^x is no longer normal but x e^x still is a
    // subnormal, x e^(x + 40) e^-40 instead (the last product rounds once into the subnormal range).
    readonly struct SiluOp : ILaneOp
    {
        public static bool Pairs => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TV Apply<TV>(TV x) where TV : struct, IFloatLanes<TV>
        {
            var e = FloatLanes.Exp(TV.Min(TV.Max(-x, TV.Splat(-87f)), TV.Splat(87f)));
            var y = x / (TV.Splat(1f) + e);
            // One compare into a mask register (a vector mask tested for any lane ran the loop 6% slower).
            if (!TV.AnyGreater(TV.Splat(-87f), x)) return y;
            var tiny = TV.Less(x, TV.Splat(-87f));
            var t = x * FloatLanes.Exp(TV.Max(x, TV.Splat(-126f)) + TV.Splat(40f)) * TV.Splat(4.248354255291589e-18f);
            // Past -126 the result rounds to -0, and -inf gives NaN as -inf * 0 does (PyTorch's silu(-inf)).
            t = TV.Select(TV.Less(x, TV.Splat(-126f)), x * TV.Splat(0f), t);
            return TV.Select(tiny, t, y);
        }
    }

    // x > 0 ? x : slope x, lane by lane (NaN fails the comparison and stays NaN in the product).
    static void LeakyRelu<T>(ReadOnlySpan<T> x, Span<T> y, T slope) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && Vector<T>.IsSupported)
        {
            var s = new Vector<T>(slope);
            for (; i + Vector<T>.Count <= x.Length; i += Vector<T>.Count)
            {
                var v = new Vector<T>(x[i..]);
                Vector.ConditionalSelect(Vector.GreaterThan(v, Vector<T>.Zero), v, v * s).CopyTo(y[i..]);
            }
        }
        for (; i < x.Length; i++) y[i] = x[i] > T.Zero ? x[i] : slope * x[i];
    }

    // x > 0 ? 1 : 0 lane by lane, without a branch (ReLU's derivative: the signs of activations are random, so a
    // branch per element mispredicts half the time); NaN fails the comparison and gives 0, as the reference's.
    static void Step<T>(ReadOnlySpan<T> x, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && Vector<T>.IsSupported)
            for (; i + Vector<T>.Count <= x.Length; i += Vector<T>.Count)
                Vector.ConditionalSelect(Vector.GreaterThan(new Vector<T>(x[i..]), Vector<T>.Zero), Vector<T>.One, Vector<T>.Zero).CopyTo(y[i..]);
        for (; i < x.Length; i++) y[i] = x[i] > T.Zero ? T.One : T.Zero;
    }

    // One element of the ops without a vector form, in float64: erf and the normal CDF through the Chebyshev kernel (the
    // float32 erf and GELU have vector forms above), log1p, expm1 and the GELUs by the formulas below, the rest through the
    // float64 reference.
    static T Scalar<T>(UnaryOp op, T v, UnaryParams p = default) where T : unmanaged, IFloatingPointIeee754<T>
    {
        double x = double.CreateTruncating(v);
        // Parameters as the dtype holds them, so Float32 results round once from the Float32 parameter's exact value.
        double a = double.CreateTruncating(T.CreateTruncating(p.A));
        double r = op switch
        {
            UnaryOp.Selu => x > 0 ? Reference.SeluScale * x : Reference.SeluScaleAlpha * Expm1(x),
            UnaryOp.Elu => x > 0 ? x : a * Expm1(x),
            UnaryOp.Celu => x > 0 ? x : a * Expm1(x / a),
            UnaryOp.Mish => x * Math.Tanh(Math.Max(x, 0.0) + Log1p(Math.Exp(-Math.Abs(x)))),
            UnaryOp.Softplus => Math.Max(x, 0.0) + Log1p(Math.Exp(-Math.Abs(x))),
            UnaryOp.Log1p => Log1p(x),
            UnaryOp.Expm1 => Expm1(x),
            UnaryOp.Silu => x * Sigmoid(x),
            UnaryOp.GeluTanh => GeluTanh(x),
            UnaryOp.Erf => Erf64.Erf(x),
            UnaryOp.NormalCdf => Erf64.NormalCdf(x),
            UnaryOp.NormalIcdf => Erf64.NormalIcdf(x),
            UnaryOp.Erfinv => Erf64.Erfinv(x),
            UnaryOp.GeluErf => Erf64.Gelu(x),
            _ => Reference.Unary(op, x),
        };
        return T.CreateTruncating(r);
    }

    // Kahan's forms: the rounding of 1 + x (or of e^x) cancels in the quotient, so both keep full relative accuracy near 0.
    static double Log1p(double x)
    {
        double u = 1.0 + x;
        return u == 1.0 || double.IsPositiveInfinity(u) ? x : Math.Log(u) * (x / (u - 1.0));
    }

    static double Expm1(double x)
    {
        double u = Math.Exp(x);
        if (u == 1.0 || double.IsNaN(x)) return x;
        double um1 = u - 1.0;
        return um1 == -1.0 || double.IsPositiveInfinity(u) ? um1 : um1 * x / Math.Log(u);
    }

    static double Sigmoid(double x) => x >= 0 ? 1.0 / (1.0 + Math.Exp(-x)) : Math.Exp(x) / (1.0 + Math.Exp(x));

    static double GeluTanh(double x) => x * Sigmoid(2 * 0.7978845608028654 * (x + 0.044715 * x * x * x));

    /// <summary>y = op(a, b) over contiguous spans; y may equal a or b.</summary>
    public static void Binary<T>(BinaryOp op, ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : unmanaged, INumber<T>
    {
        if (IsInPlace(a, y) || IsInPlace(b, y))
            switch (op)
            {
                case BinaryOp.Add when TryArith<AddArith, T>(a, b, y): return;
                case BinaryOp.Sub when TryArith<SubArith, T>(a, b, y): return;
                case BinaryOp.Mul when TryArith<MulArith, T>(a, b, y): return;
                case BinaryOp.Div when TryArith<DivArith, T>(a, b, y): return;
            }
        switch (op)
        {
            case BinaryOp.Add: TP.Add(a, b, y); return;
            case BinaryOp.Sub: TP.Subtract(a, b, y); return;
            case BinaryOp.Mul: TP.Multiply(a, b, y); return;
            case BinaryOp.Div:
                if (typeof(T) == typeof(float) || typeof(T) == typeof(double)) { TP.Divide(a, b, y); return; }
                for (int i = 0; i < a.Length; i++)
                {
                    if (b[i] == T.Zero) throw new DivideByZeroException($"integer division by zero at element {i}");
                    y[i] = a[i] / b[i];
                }
                return;
            case BinaryOp.Max: TP.Max(a, b, y); return;
            case BinaryOp.Min: TP.Min(a, b, y); return;
            case BinaryOp.Pow when typeof(T) == typeof(float):
                TP.Pow(Cast<T, float>(a), Cast<T, float>(b), MemoryMarshal.Cast<T, float>(y)); return;
            case BinaryOp.Pow when typeof(T) == typeof(double):
                TP.Pow(Cast<T, double>(a), Cast<T, double>(b), MemoryMarshal.Cast<T, double>(y)); return;
            case BinaryOp.Atan2 when typeof(T) == typeof(float):
                TP.Atan2(Cast<T, float>(a), Cast<T, float>(b), MemoryMarshal.Cast<T, float>(y)); return;
            case BinaryOp.Atan2 when typeof(T) == typeof(double):
                TP.Atan2(Cast<T, double>(a), Cast<T, double>(b), MemoryMarshal.Cast<T, double>(y)); return;
            default:
                throw new NotSupportedException($"{op} is not defined for {typeof(T).Name}");
        }
    }

    /// <summary>y = op(a, s) over a contiguous span and one value (a broadcast operand); y may equal a.</summary>
    public static void Binary<T>(BinaryOp op, ReadOnlySpan<T> a, T s, Span<T> y) where T : unmanaged, INumber<T>
    {
        if (IsInPlace(a, y))
            switch (op)
            {
                case BinaryOp.Add when TryArith<AddArith, T>(a, s, y): return;
                case BinaryOp.Sub when TryArith<SubArith, T>(a, s, y): return;
                case BinaryOp.Mul when TryArith<MulArith, T>(a, s, y): return;
                case BinaryOp.Div when TryArith<DivArith, T>(a, s, y): return;
            }
        switch (op)
        {
            case BinaryOp.Add: TP.Add(a, s, y); return;
            case BinaryOp.Sub: TP.Subtract(a, s, y); return;
            case BinaryOp.Mul: TP.Multiply(a, s, y); return;
            case BinaryOp.Div when typeof(T) == typeof(float) || typeof(T) == typeof(double): TP.Divide(a, s, y); return;
            case BinaryOp.Max: TP.Max(a, s, y); return;
            case BinaryOp.Min: TP.Min(a, s, y); return;
            case BinaryOp.Pow when typeof(T) == typeof(float):
                TP.Pow(Cast<T, float>(a), (float)(object)s, MemoryMarshal.Cast<T, float>(y)); return;
            case BinaryOp.Pow when typeof(T) == typeof(double):
                TP.Pow(Cast<T, double>(a), (double)(object)s, MemoryMarshal.Cast<T, double>(y)); return;
            case BinaryOp.Atan2 when typeof(T) == typeof(float):
                TP.Atan2(Cast<T, float>(a), (float)(object)s, MemoryMarshal.Cast<T, float>(y)); return;
            case BinaryOp.Atan2 when typeof(T) == typeof(double):
                TP.Atan2(Cast<T, double>(a), (double)(object)s, MemoryMarshal.Cast<T, double>(y)); return;
            default:
                // Integer division and ops without a scalar form: the scalar repeated, through the span kernel.
                BinaryRepeated(op, a, s, y, first: false); return;
        }
    }

    /// <summary>y = op(s, b) over one value (a broadcast operand) and a contiguous span; y may equal b.</summary>
    public static void Binary<T>(BinaryOp op, T s, ReadOnlySpan<T> b, Span<T> y) where T : unmanaged, INumber<T>
    {
        switch (op)
        {
            case BinaryOp.Add: TP.Add(b, s, y); return;
            case BinaryOp.Sub: TP.Subtract(s, b, y); return;
            case BinaryOp.Mul: TP.Multiply(b, s, y); return;
            case BinaryOp.Div when typeof(T) == typeof(float) || typeof(T) == typeof(double): TP.Divide(s, b, y); return;
            // Max and min are symmetric in their operands, NaN and signed zeros included.
            case BinaryOp.Max: TP.Max(b, s, y); return;
            case BinaryOp.Min: TP.Min(b, s, y); return;
            case BinaryOp.Pow when typeof(T) == typeof(float):
                TP.Pow((float)(object)s, Cast<T, float>(b), MemoryMarshal.Cast<T, float>(y)); return;
            case BinaryOp.Pow when typeof(T) == typeof(double):
                TP.Pow((double)(object)s, Cast<T, double>(b), MemoryMarshal.Cast<T, double>(y)); return;
            case BinaryOp.Atan2 when typeof(T) == typeof(float):
                TP.Atan2((float)(object)s, Cast<T, float>(b), MemoryMarshal.Cast<T, float>(y)); return;
            case BinaryOp.Atan2 when typeof(T) == typeof(double):
                TP.Atan2((double)(object)s, Cast<T, double>(b), MemoryMarshal.Cast<T, double>(y)); return;
            default:
                BinaryRepeated(op, b, s, y, first: true); return;
        }
    }

    // In-place add, sub, mul and div of float and double. TensorPrimitives writes a long result with non-temporal
    // stores, which pay where the destination is not cached (they skip reading its lines first); in place each line was
    // just read and is in the cache, and storing through the cache, as libtorch's loops do, ran 5-10% faster on one
    // Zen 4 core (16M floats). Each vector is loaded before its own store, so y may equal an operand. The loops fetch
    // their operands CacheFetch.StreamAheadBytes ahead into L1, where the hardware prefetcher alone kept too few lines
    // in flight: x += x over 16M floats on a 2-core Zen 5, three pairs of processes, 182/217/190 -> 268/291/277 GB/s
    // counted as a + b (fetching into L2 instead: +6-17% in a plain loop).

    static bool IsInPlace<T>(ReadOnlySpan<T> x, Span<T> y) => y.Length > 0 && Unsafe.AreSame(ref MemoryMarshal.GetReference(x), ref MemoryMarshal.GetReference(y));

    static bool TryArith<TOp, T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where TOp : struct, IArith where T : unmanaged, INumber<T>
    {
        if (typeof(T) != typeof(float) && typeof(T) != typeof(double)) return false;
        ref T pa = ref MemoryMarshal.GetReference(a), pb = ref MemoryMarshal.GetReference(b), py = ref MemoryMarshal.GetReference(y);
        nuint n = (nuint)y.Length, i = Math.Min(HeadToAlign(ref py), n);
        for (nuint h = 0; h < i; h++) Unsafe.Add(ref py, h) = TOp.Apply(Unsafe.Add(ref pa, h), Unsafe.Add(ref pb, h));
        // The second operand is fetched too unless it is the first.
        bool two = !Unsafe.AreSame(ref pa, ref pb);
        nuint ahead = (nuint)(CacheFetch.StreamAheadBytes / Unsafe.SizeOf<T>());
        if (Vector512.IsHardwareAccelerated)
        {
            nuint w = (nuint)Vector512<T>.Count;
            for (; i + 4 * w <= n; i += 4 * w)
            {
                if (i + ahead + 4 * w <= n)
                    for (nuint l = 0; l < 4 * w; l += w)
                    {
                        CacheFetch.L1(ref Unsafe.Add(ref pa, i + ahead + l));
                        if (two) CacheFetch.L1(ref Unsafe.Add(ref pb, i + ahead + l));
                    }
                var a0 = Vector512.LoadUnsafe(ref pa, i); var a1 = Vector512.LoadUnsafe(ref pa, i + w);
                var a2 = Vector512.LoadUnsafe(ref pa, i + 2 * w); var a3 = Vector512.LoadUnsafe(ref pa, i + 3 * w);
                var b0 = Vector512.LoadUnsafe(ref pb, i); var b1 = Vector512.LoadUnsafe(ref pb, i + w);
                var b2 = Vector512.LoadUnsafe(ref pb, i + 2 * w); var b3 = Vector512.LoadUnsafe(ref pb, i + 3 * w);
                TOp.Apply(a0, b0).StoreUnsafe(ref py, i); TOp.Apply(a1, b1).StoreUnsafe(ref py, i + w);
                TOp.Apply(a2, b2).StoreUnsafe(ref py, i + 2 * w); TOp.Apply(a3, b3).StoreUnsafe(ref py, i + 3 * w);
            }
            for (; i + w <= n; i += w) TOp.Apply(Vector512.LoadUnsafe(ref pa, i), Vector512.LoadUnsafe(ref pb, i)).StoreUnsafe(ref py, i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            nuint w = (nuint)Vector256<T>.Count;
            for (; i + 4 * w <= n; i += 4 * w)
            {
                if (i + ahead + 4 * w <= n)
                    for (nuint l = 0; l < 4 * w; l += 2 * w)
                    {
                        CacheFetch.L1(ref Unsafe.Add(ref pa, i + ahead + l));
                        if (two) CacheFetch.L1(ref Unsafe.Add(ref pb, i + ahead + l));
                    }
                var a0 = Vector256.LoadUnsafe(ref pa, i); var a1 = Vector256.LoadUnsafe(ref pa, i + w);
                var a2 = Vector256.LoadUnsafe(ref pa, i + 2 * w); var a3 = Vector256.LoadUnsafe(ref pa, i + 3 * w);
                var b0 = Vector256.LoadUnsafe(ref pb, i); var b1 = Vector256.LoadUnsafe(ref pb, i + w);
                var b2 = Vector256.LoadUnsafe(ref pb, i + 2 * w); var b3 = Vector256.LoadUnsafe(ref pb, i + 3 * w);
                TOp.Apply(a0, b0).StoreUnsafe(ref py, i); TOp.Apply(a1, b1).StoreUnsafe(ref py, i + w);
                TOp.Apply(a2, b2).StoreUnsafe(ref py, i + 2 * w); TOp.Apply(a3, b3).StoreUnsafe(ref py, i + 3 * w);
            }
            for (; i + w <= n; i += w) TOp.Apply(Vector256.LoadUnsafe(ref pa, i), Vector256.LoadUnsafe(ref pb, i)).StoreUnsafe(ref py, i);
        }
        for (; i < n; i++) Unsafe.Add(ref py, i) = TOp.Apply(Unsafe.Add(ref pa, i), Unsafe.Add(ref pb, i));
        return true;
    }

    static bool TryArith<TOp, T>(ReadOnlySpan<T> a, T s, Span<T> y) where TOp : struct, IArith where T : unmanaged, INumber<T>
    {
        if (typeof(T) != typeof(float) && typeof(T) != typeof(double)) return false;
        ref T pa = ref MemoryMarshal.GetReference(a), py = ref MemoryMarshal.GetReference(y);
        nuint n = (nuint)y.Length, i = Math.Min(HeadToAlign(ref py), n);
        for (nuint h = 0; h < i; h++) Unsafe.Add(ref py, h) = TOp.Apply(Unsafe.Add(ref pa, h), s);
        nuint ahead = (nuint)(CacheFetch.StreamAheadBytes / Unsafe.SizeOf<T>());
        if (Vector512.IsHardwareAccelerated)
        {
            nuint w = (nuint)Vector512<T>.Count;
            var b = Vector512.Create(s);
            for (; i + 4 * w <= n; i += 4 * w)
            {
                if (i + ahead + 4 * w <= n)
                    for (nuint l = 0; l < 4 * w; l += w) CacheFetch.L1(ref Unsafe.Add(ref pa, i + ahead + l));
                var a0 = Vector512.LoadUnsafe(ref pa, i); var a1 = Vector512.LoadUnsafe(ref pa, i + w);
                var a2 = Vector512.LoadUnsafe(ref pa, i + 2 * w); var a3 = Vector512.LoadUnsafe(ref pa, i + 3 * w);
                TOp.Apply(a0, b).StoreUnsafe(ref py, i); TOp.Apply(a1, b).StoreUnsafe(ref py, i + w);
                TOp.Apply(a2, b).StoreUnsafe(ref py, i + 2 * w); TOp.Apply(a3, b).StoreUnsafe(ref py, i + 3 * w);
            }
            for (; i + w <= n; i += w) TOp.Apply(Vector512.LoadUnsafe(ref pa, i), b).StoreUnsafe(ref py, i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            nuint w = (nuint)Vector256<T>.Count;
            var b = Vector256.Create(s);
            for (; i + 4 * w <= n; i += 4 * w)
            {
                if (i + ahead + 4 * w <= n)
                    for (nuint l = 0; l < 4 * w; l += 2 * w) CacheFetch.L1(ref Unsafe.Add(ref pa, i + ahead + l));
                var a0 = Vector256.LoadUnsafe(ref pa, i); var a1 = Vector256.LoadUnsafe(ref pa, i + w);
                var a2 = Vector256.LoadUnsafe(ref pa, i + 2 * w); var a3 = Vector256.LoadUnsafe(ref pa, i + 3 * w);
                TOp.Apply(a0, b).StoreUnsafe(ref py, i); TOp.Apply(a1, b).StoreUnsafe(ref py, i + w);
                TOp.Apply(a2, b).StoreUnsafe(ref py, i + 2 * w); TOp.Apply(a3, b).StoreUnsafe(ref py, i + 3 * w);
            }
            for (; i + w <= n; i += w) TOp.Apply(Vector256.LoadUnsafe(ref pa, i), b).StoreUnsafe(ref py, i);
        }
        for (; i < n; i++) Unsafe.Add(ref py, i) = TOp.Apply(Unsafe.Add(ref pa, i), s);
        return true;
    }

    // Elements before the first 64-byte boundary of y. A managed array starts at any multiple of 8 bytes, so without this
    // head most 512-bit loads and stores of an in-place op straddle two cache lines. (A GC move in between only costs
    // alignment, never correctness.)
    static unsafe nuint HeadToAlign<T>(ref T y) where T : unmanaged =>
        (nuint)((64 - ((nint)Unsafe.AsPointer(ref y) & 63)) & 63) / (nuint)sizeof(T);

    interface IArith
    {
        static abstract Vector512<T> Apply<T>(Vector512<T> a, Vector512<T> b) where T : INumber<T>;
        static abstract Vector256<T> Apply<T>(Vector256<T> a, Vector256<T> b) where T : INumber<T>;
        static abstract T Apply<T>(T a, T b) where T : INumber<T>;
    }

    readonly struct AddArith : IArith
    {
        public static Vector512<T> Apply<T>(Vector512<T> a, Vector512<T> b) where T : INumber<T> => a + b;
        public static Vector256<T> Apply<T>(Vector256<T> a, Vector256<T> b) where T : INumber<T> => a + b;
        public static T Apply<T>(T a, T b) where T : INumber<T> => a + b;
    }

    readonly struct SubArith : IArith
    {
        public static Vector512<T> Apply<T>(Vector512<T> a, Vector512<T> b) where T : INumber<T> => a - b;
        public static Vector256<T> Apply<T>(Vector256<T> a, Vector256<T> b) where T : INumber<T> => a - b;
        public static T Apply<T>(T a, T b) where T : INumber<T> => a - b;
    }

    readonly struct MulArith : IArith
    {
        public static Vector512<T> Apply<T>(Vector512<T> a, Vector512<T> b) where T : INumber<T> => a * b;
        public static Vector256<T> Apply<T>(Vector256<T> a, Vector256<T> b) where T : INumber<T> => a * b;
        public static T Apply<T>(T a, T b) where T : INumber<T> => a * b;
    }

    readonly struct DivArith : IArith
    {
        public static Vector512<T> Apply<T>(Vector512<T> a, Vector512<T> b) where T : INumber<T> => a / b;
        public static Vector256<T> Apply<T>(Vector256<T> a, Vector256<T> b) where T : INumber<T> => a / b;
        public static T Apply<T>(T a, T b) where T : INumber<T> => a / b;
    }

    // The span kernel over the scalar repeated in a scratch row.
    static void BinaryRepeated<T>(BinaryOp op, ReadOnlySpan<T> x, T s, Span<T> y, bool first) where T : unmanaged, INumber<T>
    {
        var t = Strided.Rent<T>(x.Length);
        try
        {
            var ts = t.AsSpan(0, x.Length);
            ts.Fill(s);
            if (first) Binary(op, ts, x, y); else Binary(op, x, ts, y);
        }
        finally { Strided.Return(t); }
    }

    /// <summary>
    /// y = op(x) over contiguous spans of Int32 or Int64 for the integer unary ops (Neg, Abs, Sign, Square, Relu); y may
    /// equal x. Overflow wraps, as PyTorch's: -MinValue and |MinValue| are MinValue.
    /// </summary>
    public static void UnaryInteger<T>(UnaryOp op, ReadOnlySpan<T> x, Span<T> y) where T : unmanaged, IBinaryInteger<T>, ISignedNumber<T>
    {
        switch (op)
        {
            case UnaryOp.Neg: TP.Negate(x, y); return;
            case UnaryOp.Square: TP.Multiply(x, x, y); return;
            case UnaryOp.Relu: TP.Max(x, T.Zero, y); return;
            case UnaryOp.Abs or UnaryOp.Sign:
            {
                // TensorPrimitives.Abs throws at MinValue; a select of -v wraps instead. Comparison masks are -1 per true lane, so sign = (v < 0) - (v > 0).
                int i = 0;
                if (Vector.IsHardwareAccelerated && Vector<T>.IsSupported)
                    for (; i + Vector<T>.Count <= x.Length; i += Vector<T>.Count)
                    {
                        var v = new Vector<T>(x[i..]);
                        var neg = Vector.LessThan(v, Vector<T>.Zero);
                        (op == UnaryOp.Abs ? Vector.ConditionalSelect(neg, -v, v) : neg - Vector.GreaterThan(v, Vector<T>.Zero)).CopyTo(y[i..]);
                    }
                for (; i < x.Length; i++)
                    y[i] = op == UnaryOp.Abs ? (T.IsNegative(x[i]) ? -x[i] : x[i]) : T.CreateTruncating(x[i].CompareTo(T.Zero));
                return;
            }
            default: throw new NotSupportedException($"{op} is not defined for {typeof(T).Name}");
        }
    }

    /// <summary>y = op(a, b) over contiguous spans of Int32 or Int64 (<see cref="BitwiseOp.Not"/> reads only a); y may equal a or b.</summary>
    public static void Bitwise<T>(BitwiseOp op, ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : unmanaged, IBinaryInteger<T>, ISignedNumber<T>
    {
        int bits = Unsafe.SizeOf<T>() * 8;
        switch (op)
        {
            case BitwiseOp.And: TP.BitwiseAnd(a, b, y); return;
            case BitwiseOp.Or: TP.BitwiseOr(a, b, y); return;
            case BitwiseOp.Xor: TP.Xor(a, b, y); return;
            case BitwiseOp.Not: TP.OnesComplement(a, y); return;
            // Shift counts outside [0, bits) are PyTorch's rule (C# would take them modulo the width).
            case BitwiseOp.LeftShift:
                for (int i = 0; i < y.Length; i++) { long s = long.CreateTruncating(b[i]); y[i] = s < 0 || s >= bits ? T.Zero : a[i] << (int)s; }
                return;
            default:
                for (int i = 0; i < y.Length; i++) { long s = long.CreateTruncating(b[i]); y[i] = a[i] >> (int)(s < 0 || s >= bits - 1 ? bits - 1 : s); }
                return;
        }
    }

    /// <summary>y = op(a, b) over contiguous spans of booleans: logical and, or, xor, not (shifts are not defined on booleans).</summary>
    public static void Bitwise(BitwiseOp op, ReadOnlySpan<bool> a, ReadOnlySpan<bool> b, Span<bool> y)
    {
        switch (op)
        {
            case BitwiseOp.And: for (int i = 0; i < y.Length; i++) y[i] = a[i] & b[i]; return;
            case BitwiseOp.Or: for (int i = 0; i < y.Length; i++) y[i] = a[i] | b[i]; return;
            case BitwiseOp.Xor: for (int i = 0; i < y.Length; i++) y[i] = a[i] ^ b[i]; return;
            case BitwiseOp.Not: for (int i = 0; i < y.Length; i++) y[i] = !a[i]; return;
            default: throw new NotSupportedException($"{op} is not defined for Boolean");
        }
    }

    /// <summary>A kernel over one row of contiguous operands.</summary>
    public delegate void RowKernel<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y);

    /// <summary>y = kernel(a, b) row by row over a strided, broadcast iteration space, any element type.</summary>
    public static void ZipStrided<T>(ReadOnlySpan<int> shape, T[] a, int aOff, int[] aStr, T[] b, int bOff, int[] bStr, T[] y, int yOff, int[] yStr, RowKernel<T> kernel)
    {
        var (dims, s) = Strided.Coalesce(shape, aStr, bStr, yStr);
        Strided.ForEachRow(dims, (r, start, len) =>
        {
            int ao = Strided.RowOffset(r, dims, s[0], aOff) + start * s[0][^1];
            int bo = Strided.RowOffset(r, dims, s[1], bOff) + start * s[1][^1];
            int yo = Strided.RowOffset(r, dims, s[2], yOff) + start * s[2][^1];
            var ar = Strided.RowView(a, ao, s[0][^1], len, out var sa);
            var br = Strided.RowView(b, bo, s[1][^1], len, out var sb);
            try
            {
                if (s[2][^1] == 1) kernel(ar, br, y.AsSpan(yo, len));
                else
                {
                    var tmp = Strided.Rent<T>(len);
                    kernel(ar, br, tmp.AsSpan(0, len));
                    Strided.Store<T>(tmp.AsSpan(0, len), y, yo, s[2][^1]);
                    Strided.Return(tmp);
                }
            }
            finally { Strided.Return(sa); Strided.Return(sb); }
        });
    }

    static ReadOnlySpan<TTo> Cast<TFrom, TTo>(ReadOnlySpan<TFrom> s) where TFrom : struct where TTo : struct => MemoryMarshal.Cast<TFrom, TTo>(s);

    /// <summary>y = op(a, b) as booleans over contiguous spans.</summary>
    public static void Compare<T>(CompareOp op, ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<bool> y) where T : unmanaged, INumber<T>
    {
        switch (op)
        {
            case CompareOp.Eq: for (int i = 0; i < y.Length; i++) y[i] = a[i] == b[i]; break;
            case CompareOp.Ne: for (int i = 0; i < y.Length; i++) y[i] = a[i] != b[i]; break;
            case CompareOp.Lt: for (int i = 0; i < y.Length; i++) y[i] = a[i] < b[i]; break;
            case CompareOp.Le: for (int i = 0; i < y.Length; i++) y[i] = a[i] <= b[i]; break;
            case CompareOp.Gt: for (int i = 0; i < y.Length; i++) y[i] = a[i] > b[i]; break;
            default: for (int i = 0; i < y.Length; i++) y[i] = a[i] >= b[i]; break;
        }
    }

    /// <summary>y = op(x) over a strided iteration space (x and y may be any views of <paramref name="shape"/>), with parameters <paramref name="p"/>.</summary>
    public static void UnaryStrided<T>(UnaryOp op, ReadOnlySpan<int> shape, T[] x, int xOff, int[] xStr, T[] y, int yOff, int[] yStr, UnaryParams p = default)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (Strided.SmallDense(shape, xStr, yStr) is var n and >= 0) { if (n > 0) Unary(op, x.AsSpan(xOff, n), y.AsSpan(yOff, n), p); }
        else UnaryRows(op, shape, x, xOff, xStr, y, yOff, yStr, p);
    }

    static void UnaryRows<T>(UnaryOp op, ReadOnlySpan<int> shape, T[] x, int xOff, int[] xStr, T[] y, int yOff, int[] yStr, UnaryParams p)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (dims, s) = Strided.Coalesce(shape, xStr, yStr);
        Strided.ForEachRow(dims, (r, start, len) =>
        {
            int xo = Strided.RowOffset(r, dims, s[0], xOff) + start * s[0][^1];
            int yo = Strided.RowOffset(r, dims, s[1], yOff) + start * s[1][^1];
            var xr = Strided.RowView(x, xo, s[0][^1], len, out var sx);
            try
            {
                if (s[1][^1] == 1) Unary(op, xr, y.AsSpan(yo, len), p);
                else
                {
                    var tmp = Strided.Rent<T>(len);
                    Unary(op, xr, tmp.AsSpan(0, len), p);
                    Strided.Store<T>(tmp.AsSpan(0, len), y, yo, s[1][^1]);
                    Strided.Return(tmp);
                }
            }
            finally { Strided.Return(sx); }
        });
    }

    /// <summary>
    /// y = op(a, b) over a strided, broadcast iteration space. An operand broadcast along the rows (a scalar, a column)
    /// is passed to the kernels as one value rather than gathered into a repeated row: that row would be one more stream
    /// through memory.
    /// </summary>
    public static void BinaryStrided<T>(BinaryOp op, ReadOnlySpan<int> shape, T[] a, int aOff, int[] aStr, T[] b, int bOff, int[] bStr, T[] y, int yOff, int[] yStr)
        where T : unmanaged, INumber<T>
    {
        if (Strided.SmallDense(shape, aStr, yStr) is var n and >= 0 && Strided.SmallDense(shape, bStr, yStr) >= 0)
        {
            if (n > 0) Binary(op, a.AsSpan(aOff, n), b.AsSpan(bOff, n), y.AsSpan(yOff, n));
        }
        else BinaryRows(op, shape, a, aOff, aStr, b, bOff, bStr, y, yOff, yStr);
    }

    static void BinaryRows<T>(BinaryOp op, ReadOnlySpan<int> shape, T[] a, int aOff, int[] aStr, T[] b, int bOff, int[] bStr, T[] y, int yOff, int[] yStr)
        where T : unmanaged, INumber<T>
    {
        var (dims, s) = Strided.Coalesce(shape, aStr, bStr, yStr);
        int sa = s[0][^1], sb = s[1][^1], sy = s[2][^1];
        Strided.ForEachRow(dims, (r, start, len) =>
        {
            int ao = Strided.RowOffset(r, dims, s[0], aOff) + start * sa;
            int bo = Strided.RowOffset(r, dims, s[1], bOff) + start * sb;
            int yo = Strided.RowOffset(r, dims, s[2], yOff) + start * sy;
            var tmp = sy == 1 ? null : Strided.Rent<T>(len);
            var yr = tmp is null ? y.AsSpan(yo, len) : tmp.AsSpan(0, len);
            T[]? ra = null, rb = null;
            try
            {
                if (sa == 0 && sb == 0)
                {
                    Binary(op, a.AsSpan(ao, 1), b.AsSpan(bo, 1), yr[..1]);
                    yr.Fill(yr[0]);
                }
                else if (sb == 0) Binary(op, Strided.RowView(a, ao, sa, len, out ra), b[bo], yr);
                else if (sa == 0) Binary(op, a[ao], Strided.RowView(b, bo, sb, len, out rb), yr);
                else Binary(op, Strided.RowView(a, ao, sa, len, out ra), Strided.RowView(b, bo, sb, len, out rb), yr);
                if (tmp is not null) Strided.Store<T>(yr, y, yo, sy);
            }
            finally { Strided.Return(ra); Strided.Return(rb); Strided.Return(tmp); }
        });
    }

    /// <summary>y = op(a, b) as booleans over a strided, broadcast iteration space; y is contiguous.</summary>
    public static void CompareStrided<T>(CompareOp op, ReadOnlySpan<int> shape, T[] a, int aOff, int[] aStr, T[] b, int bOff, int[] bStr, bool[] y, int yOff, int[] yStr)
        where T : unmanaged, INumber<T>
    {
        var (dims, s) = Strided.Coalesce(shape, aStr, bStr, yStr);
        Strided.ForEachRow(dims, (r, start, len) =>
        {
            int ao = Strided.RowOffset(r, dims, s[0], aOff) + start * s[0][^1];
            int bo = Strided.RowOffset(r, dims, s[1], bOff) + start * s[1][^1];
            int yo = Strided.RowOffset(r, dims, s[2], yOff) + start * s[2][^1];
            var ar = Strided.RowView(a, ao, s[0][^1], len, out var sa);
            var br = Strided.RowView(b, bo, s[1][^1], len, out var sb);
            var tmp = Strided.Rent<bool>(len);
            try
            {
                Compare(op, ar, br, tmp.AsSpan(0, len));
                Strided.Store<bool>(tmp.AsSpan(0, len), y, yo, s[2][^1]);
            }
            finally { Strided.Return(sa); Strided.Return(sb); Strided.Return(tmp); }
        });
    }

    /// <summary>y = cond ? a : b over a strided, broadcast iteration space.</summary>
    public static void WhereStrided<T>(ReadOnlySpan<int> shape, bool[] c, int cOff, int[] cStr, T[] a, int aOff, int[] aStr, T[] b, int bOff, int[] bStr, T[] y, int yOff, int[] yStr)
    {
        var (dims, s) = Strided.Coalesce(shape, cStr, aStr, bStr, yStr);
        Strided.ForEachRow(dims, (r, start, len) =>
        {
            int co = Strided.RowOffset(r, dims, s[0], cOff) + start * s[0][^1];
            int ao = Strided.RowOffset(r, dims, s[1], aOff) + start * s[1][^1];
            int bo = Strided.RowOffset(r, dims, s[2], bOff) + start * s[2][^1];
            int yo = Strided.RowOffset(r, dims, s[3], yOff) + start * s[3][^1];
            int cs = s[0][^1], as_ = s[1][^1], bs = s[2][^1], ys = s[3][^1];
            for (int i = 0; i < len; i++)
                y[yo + i * ys] = c[co + i * cs] ? a[ao + i * as_] : b[bo + i * bs];
        });
    }

    /// <summary>dst = convert(src) over a strided iteration space, any element types.</summary>
    public static void CopyStrided<TIn, TOut>(ReadOnlySpan<int> shape, TIn[] x, int xOff, int[] xStr, TOut[] y, int yOff, int[] yStr, Func<TIn, TOut> convert)
    {
        if (typeof(TIn) == typeof(TOut) && Strided.SmallDense(shape, xStr, yStr) is var n and >= 0)
        {
            if (n > 0) x.AsSpan(xOff, n).CopyTo(((TIn[])(object)y).AsSpan(yOff, n));
        }
        else CopyRows(shape, x, xOff, xStr, y, yOff, yStr, convert);
    }

    static void CopyRows<TIn, TOut>(ReadOnlySpan<int> shape, TIn[] x, int xOff, int[] xStr, TOut[] y, int yOff, int[] yStr, Func<TIn, TOut> convert)
    {
        long numel = 1;
        foreach (int d in shape) numel *= d;
        if (numel == 0) return;
        if (numel < Strided.ParallelThreshold && shape.Length <= 8) SmallRows(shape, x, xOff, xStr, y, yOff, yStr, convert, numel);
        else
        {
            var (dims, s) = Strided.Coalesce(shape, xStr, yStr);
            CopyRowsParallel(dims, s, x, xOff, y, yOff, convert, numel * Unsafe.SizeOf<TOut>());
        }
    }

    // A small copy (a decoding step's key and value rows into the slots of its cache) row by row on this thread, the
    // offsets stepped like an odometer over the shape as given: no coalescing, closures or per-row offset arithmetic,
    // which cost a 64-float KV row 360 ns of a decoding step against 40 for the copy itself.
    static void SmallRows<TIn, TOut>(ReadOnlySpan<int> shape, TIn[] x, int xOff, int[] xStr, TOut[] y, int yOff, int[] yStr, Func<TIn, TOut> convert, long numel)
    {
        int rank = shape.Length;
        int inner = rank == 0 ? 1 : shape[rank - 1], xs = rank == 0 ? 1 : xStr[rank - 1], ys = rank == 0 ? 1 : yStr[rank - 1];
        bool dense = typeof(TIn) == typeof(TOut) && xs == 1 && ys == 1;
        int xo = xOff, yo = yOff;
        Span<int> index = stackalloc int[8];
        for (long done = 0; done < numel; done += inner)
        {
            if (dense) x.AsSpan(xo, inner).CopyTo(((TIn[])(object)y).AsSpan(yo, inner));
            else for (int i = 0; i < inner; i++) y[yo + i * ys] = convert(x[xo + i * xs]);
            for (int d = rank - 2; d >= 0; d--)
            {
                xo += xStr[d]; yo += yStr[d];
                if (++index[d] < shape[d]) break;
                xo -= xStr[d] * shape[d]; yo -= yStr[d] * shape[d]; index[d] = 0;
            }
        }
    }

    static void CopyRowsParallel<TIn, TOut>(int[] dims, int[][] s, TIn[] x, int xOff, TOut[] y, int yOff, Func<TIn, TOut> convert, long bytes) =>
        Strided.ForEachRow(dims, (r, start, len) => CopyRow(dims, s, x, xOff, y, yOff, convert, r, start, len, bytes));

    /// <summary>One row (or a piece of one) of a copy whose whole output is <paramref name="bytes"/>.</summary>
    static void CopyRow<TIn, TOut>(int[] dims, int[][] s, TIn[] x, int xOff, TOut[] y, int yOff, Func<TIn, TOut> convert, int r, int start, int len, long bytes)
    {
        int xo = Strided.RowOffset(r, dims, s[0], xOff) + start * s[0][^1];
        int yo = Strided.RowOffset(r, dims, s[1], yOff) + start * s[1][^1];
        int xs = s[0][^1], ys = s[1][^1];
        if (typeof(TIn) == typeof(TOut) && xs == 1 && ys == 1) { Streaming.Copy<TIn>(x.AsSpan(xo, len), ((TIn[])(object)y).AsSpan(yo, len), bytes); return; }
        for (int i = 0; i < len; i++) y[yo + i * ys] = convert(x[xo + i * xs]);
    }

    /// <summary>y = clamp(x, lo, hi) over contiguous spans (NaN stays NaN).</summary>
    public static void Clamp<T>(ReadOnlySpan<T> x, T lo, T hi, Span<T> y) where T : unmanaged, INumber<T>
    {
        TP.Max(x, lo, y);
        TP.Min(y, hi, y);
    }
}
