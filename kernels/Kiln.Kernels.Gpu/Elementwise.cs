using ILGPU;
using ILGPU.Algorithms;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// Elementwise kernels over strided, broadcast operands (one thread per output element; a 0 stride broadcasts).
/// Reference: <see cref="Reference.Unary"/>, <see cref="Reference.Binary"/>, <see cref="Reference.Compare"/>.
/// </summary>
public static class Elementwise
{
    /// <summary>y = value at every element of the view.</summary>
    public static void Fill<T>(Index1D i, ArrayView<T> y, Strides6 sy, Dims6 d, T value) where T : unmanaged
    {
        y[Coord6.Of(i, d).At(sy)] = value;
    }

    /// <summary>y = x elementwise, same element type.</summary>
    public static void Copy<T>(Index1D i, ArrayView<T> x, Strides6 sx, ArrayView<T> y, Strides6 sy, Dims6 d) where T : unmanaged
    {
        var c = Coord6.Of(i, d);
        y[c.At(sy)] = x[c.At(sx)];
    }

    /// <summary>y = convert(x): integer to integer through Int64 (wrapping as in C#), everything else through float64.</summary>
    public static void Convert<TIn, TOut, TA, TB>(Index1D i, ArrayView<TIn> x, Strides6 sx, ArrayView<TOut> y, Strides6 sy, Dims6 d)
        where TIn : unmanaged where TOut : unmanaged where TA : struct, IElement<TIn> where TB : struct, IElement<TOut>
    {
        var c = Coord6.Of(i, d);
        TA a = default; TB b = default;
        TIn v = x[c.At(sx)];
        y[c.At(sy)] = a.IsInteger && b.IsInteger ? b.FromLong(a.ToLong(v)) : b.FromDouble(a.ToDouble(v));
    }

    /// <summary>y = op(x) for a <see cref="UnaryOp"/> code with the parameters (<paramref name="pa"/>, <paramref name="pb"/>) of <see cref="UnaryParams"/>.</summary>
    public static void Unary<T, TF>(Index1D i, int op, ArrayView<T> x, Strides6 sx, ArrayView<T> y, Strides6 sy, Dims6 d, double pa, double pb)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        var c = Coord6.Of(i, d);
        y[c.At(sy)] = ApplyUnary<T, TF>(op, x[c.At(sx)], pa, pb);
    }

    /// <summary>
    /// One unary primitive with parameters (<paramref name="pa"/>, <paramref name="pb"/>) where it takes them. The special
    /// functions are evaluated in float64 (GpuMath) and rounded once.
    /// </summary>
    public static T ApplyUnary<T, TF>(int op, T x, double pa = 0, double pb = 0) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        switch ((UnaryOp)op)
        {
            // PyTorch's formulas in the dtype, in the reference's order of operations; parameters as the dtype holds them.
            case UnaryOp.Hardtanh: return f.Min(f.Max(x, f.FromDouble(pa)), f.FromDouble(pb));
            case UnaryOp.LeakyRelu: return f.Lt(f.Zero, x) ? x : f.Mul(f.FromDouble(pa), x);
            case UnaryOp.Hardsigmoid: return f.Div(Relu6<T, TF>(f.Add(x, f.FromDouble(3))), f.FromDouble(6));
            case UnaryOp.Hardswish: return f.Mul(x, f.Div(Relu6<T, TF>(f.Add(x, f.FromDouble(3))), f.FromDouble(6)));
            case UnaryOp.Softsign: return f.Div(x, f.Add(f.One, f.Abs(x)));
            // Exact in float64, as Floor below.
            case UnaryOp.Frac: { double v = f.ToDouble(x); return f.FromDouble(v - XMath.Truncate(v)); }
            case UnaryOp.Elu or UnaryOp.Celu: return f.FromDouble(GpuMath.Special(op, f.ToDouble(x), f.ToDouble(f.FromDouble(pa))));
            case UnaryOp.Neg: return f.Neg(x);
            case UnaryOp.Abs: return f.Abs(x);
            case UnaryOp.Exp: return f.Exp(x);
            case UnaryOp.Log: return f.Log(x);
            case UnaryOp.Sqrt: return f.Sqrt(x);
            case UnaryOp.Rsqrt: return f.Div(f.One, f.Sqrt(x));
            case UnaryOp.Sigmoid: return Sigmoid<T, TF>(x);
            case UnaryOp.Tanh: return f.Tanh(x);
            case UnaryOp.Relu: return f.Lt(f.Zero, x) || f.IsNaN(x) ? x : f.Zero;
            case UnaryOp.GeluTanh:
            {
                // 0.5 x (1 + tanh u) = x sigmoid(2u): no cancellation for x < 0.
                T x3 = f.Mul(f.Mul(x, x), x);
                T twoU = f.Mul(f.FromDouble(2 * 0.7978845608028654), f.Add(x, f.Mul(f.FromDouble(0.044715), x3)));
                return f.Mul(x, Sigmoid<T, TF>(twoU));
            }
            case UnaryOp.Silu:
            {
                // Far below 0, e^x underflows before x e^x does: that tail takes float64.
                if (f.Lt(x, f.FromDouble(-87))) { double d = f.ToDouble(x); return f.FromDouble(d * XMath.Exp(d) / (1 + XMath.Exp(d))); }
                return f.Mul(x, Sigmoid<T, TF>(x));
            }
            case UnaryOp.Sign: return f.IsNaN(x) ? x : f.Lt(f.Zero, x) ? f.One : f.Lt(x, f.Zero) ? f.Neg(f.One) : f.Zero;
            case UnaryOp.Reciprocal: return f.Div(f.One, x);
            case UnaryOp.Square: return f.Mul(x, x);
            case UnaryOp.Sin: return f.Sin(x);
            case UnaryOp.Cos: return f.Cos(x);
            case UnaryOp.Step: return f.Lt(f.Zero, x) ? f.One : f.Zero;
            // Exact in float64 for every float32 or float64 input, so one conversion each way rounds nothing.
            case UnaryOp.Floor: return f.FromDouble(XMath.Floor(f.ToDouble(x)));
            case UnaryOp.Ceil: return f.FromDouble(XMath.Ceiling(f.ToDouble(x)));
            case UnaryOp.Round: return f.FromDouble(XMath.RoundToEven(f.ToDouble(x)));
            case UnaryOp.Trunc: return f.FromDouble(XMath.Truncate(f.ToDouble(x)));
            default: return f.FromDouble(GpuMath.Special(op, f.ToDouble(x)));
        }
    }

    static T Relu6<T, TF>(T x) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        return f.Min(f.Max(x, f.Zero), f.FromDouble(6));
    }

    // The form that cannot overflow; the recurrent gate kernels share it.
    internal static T Sigmoid<T, TF>(T x) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        if (f.Le(f.Zero, x)) return f.Div(f.One, f.Add(f.One, f.Exp(f.Neg(x))));
        T e = f.Exp(x);
        return f.Div(e, f.Add(f.One, e));
    }

    /// <summary>y = op(a, b) for a <see cref="BinaryOp"/> code; integer division by zero writes 0 and sets err[0] = 1.</summary>
    public static void Binary<T, TN>(Index1D i, int op, ArrayView<T> a, Strides6 sa, ArrayView<T> b, Strides6 sb, ArrayView<T> y, Strides6 sy, Dims6 d, ArrayView<long> err)
        where T : unmanaged where TN : struct, INum<T>
    {
        TN n = default;
        var c = Coord6.Of(i, d);
        T p = a[c.At(sa)], q = b[c.At(sb)];
        T r;
        switch ((BinaryOp)op)
        {
            case BinaryOp.Add: r = n.Add(p, q); break;
            case BinaryOp.Sub: r = n.Sub(p, q); break;
            case BinaryOp.Mul: r = n.Mul(p, q); break;
            case BinaryOp.Div:
                if (n.IsInteger && n.Eq(q, n.Zero)) { err[0] = 1; err[1] = i; }
                r = n.Div(p, q); break;
            case BinaryOp.Pow: r = n.Pow(p, q); break;
            case BinaryOp.Max: r = n.Max(p, q); break;
            case BinaryOp.Min: r = n.Min(p, q); break;
            default: r = n.Atan2(p, q); break;
        }
        y[c.At(sy)] = r;
    }

    /// <summary>y = op(x) for the integer unary ops (Neg, Abs, Sign, Square, Relu); overflow wraps (|MinValue| is MinValue).</summary>
    public static void UnaryInteger<T, TN>(Index1D i, int op, ArrayView<T> x, Strides6 sx, ArrayView<T> y, Strides6 sy, Dims6 d)
        where T : unmanaged where TN : struct, INum<T>
    {
        TN n = default;
        var c = Coord6.Of(i, d);
        T v = x[c.At(sx)];
        T r;
        switch ((UnaryOp)op)
        {
            case UnaryOp.Neg: r = n.Neg(v); break;
            case UnaryOp.Abs: r = n.Lt(v, n.Zero) ? n.Neg(v) : v; break;
            case UnaryOp.Sign: r = n.Lt(n.Zero, v) ? n.One : n.Lt(v, n.Zero) ? n.Neg(n.One) : n.Zero; break;
            case UnaryOp.Square: r = n.Mul(v, v); break;
            default: r = n.Lt(n.Zero, v) ? v : n.Zero; break;
        }
        y[c.At(sy)] = r;
    }

    /// <summary>
    /// y = op(a, b) for a <see cref="BitwiseOp"/> code on integers of <paramref name="bits"/> bits, computed in Int64 and
    /// wrapped back; shift counts outside [0, bits) follow PyTorch's rule (<see cref="Reference.Bitwise"/>).
    /// </summary>
    public static void Bitwise<T, TN>(Index1D i, int op, ArrayView<T> a, Strides6 sa, ArrayView<T> b, Strides6 sb, ArrayView<T> y, Strides6 sy, Dims6 d, int bits)
        where T : unmanaged where TN : struct, INum<T>
    {
        TN n = default;
        var c = Coord6.Of(i, d);
        long p = n.ToLong(a[c.At(sa)]), q = n.ToLong(b[c.At(sb)]);
        long r;
        switch ((BitwiseOp)op)
        {
            case BitwiseOp.And: r = p & q; break;
            case BitwiseOp.Or: r = p | q; break;
            case BitwiseOp.Xor: r = p ^ q; break;
            case BitwiseOp.Not: r = ~p; break;
            case BitwiseOp.LeftShift: r = q < 0 || q >= bits ? 0 : p << (int)q; break;
            default: r = p >> (int)(q < 0 || q >= bits - 1 ? bits - 1 : q); break;
        }
        y[c.At(sy)] = n.FromLong(r);
    }

    /// <summary>y = op(a, b) as 0/1 bytes for a <see cref="CompareOp"/> code.</summary>
    public static void Compare<T, TN>(Index1D i, int op, ArrayView<T> a, Strides6 sa, ArrayView<T> b, Strides6 sb, ArrayView<byte> y, Strides6 sy, Dims6 d)
        where T : unmanaged where TN : struct, INum<T>
    {
        TN n = default;
        var c = Coord6.Of(i, d);
        T p = a[c.At(sa)], q = b[c.At(sb)];
        bool r;
        switch ((CompareOp)op)
        {
            case CompareOp.Eq: r = n.Eq(p, q); break;
            case CompareOp.Ne: r = !n.Eq(p, q); break;
            case CompareOp.Lt: r = n.Lt(p, q); break;
            case CompareOp.Le: r = n.Le(p, q); break;
            case CompareOp.Gt: r = n.Lt(q, p); break;
            default: r = n.Le(q, p); break;
        }
        y[c.At(sy)] = r ? (byte)1 : (byte)0;
    }

    /// <summary>y = cond ? a : b.</summary>
    public static void Where<T>(Index1D i, ArrayView<byte> cond, Strides6 sc, ArrayView<T> a, Strides6 sa, ArrayView<T> b, Strides6 sb, ArrayView<T> y, Strides6 sy, Dims6 d)
        where T : unmanaged
    {
        var c = Coord6.Of(i, d);
        y[c.At(sy)] = cond[c.At(sc)] != 0 ? a[c.At(sa)] : b[c.At(sb)];
    }

    /// <summary>y = min(max(x, lo), hi); NaN stays NaN.</summary>
    public static void Clamp<T, TN>(Index1D i, ArrayView<T> x, Strides6 sx, T lo, T hi, ArrayView<T> y, Strides6 sy, Dims6 d)
        where T : unmanaged where TN : struct, INum<T>
    {
        TN n = default;
        var c = Coord6.Of(i, d);
        y[c.At(sy)] = n.Min(n.Max(x[c.At(sx)], lo), hi);
    }
}

/// <summary>The typed kernels of <see cref="Elementwise"/> that move elements of storage type <typeparamref name="T"/>.</summary>
public static class ElementwiseKernels<T> where T : unmanaged
{
    /// <summary>elementwise.fill: y = value.</summary>
    public static readonly Kernel<ArrayView<T>, Strides6, Dims6, T> Fill = new($"elementwise.fill.{Dt.Storage<T>()}", Elementwise.Fill<T>);
    /// <summary>elementwise.copy: y = x.</summary>
    public static readonly Kernel<ArrayView<T>, Strides6, ArrayView<T>, Strides6, Dims6> Copy = new($"elementwise.copy.{Dt.Storage<T>()}", Elementwise.Copy<T>);
    /// <summary>elementwise.where: y = cond ? a : b.</summary>
    public static readonly Kernel<ArrayView<byte>, Strides6, ArrayView<T>, Strides6, ArrayView<T>, Strides6, ArrayView<T>, Strides6, Dims6> Where =
        new($"elementwise.where.{Dt.Storage<T>()}", Elementwise.Where<T>);
}

/// <summary>The typed arithmetic kernels of <see cref="Elementwise"/> for one numeric dtype.</summary>
public static class ElementwiseKernels<T, TN> where T : unmanaged where TN : struct, INum<T>
{
    /// <summary>elementwise.binary: y = op(a, b); err records an integer division by zero.</summary>
    public static readonly Kernel<int, ArrayView<T>, Strides6, ArrayView<T>, Strides6, ArrayView<T>, Strides6, Dims6, ArrayView<long>> Binary =
        new($"elementwise.binary.{Dt.Of<TN>()}", Elementwise.Binary<T, TN>);
    /// <summary>elementwise.compare: y = op(a, b) as bytes.</summary>
    public static readonly Kernel<int, ArrayView<T>, Strides6, ArrayView<T>, Strides6, ArrayView<byte>, Strides6, Dims6> Compare =
        new($"elementwise.compare.{Dt.Of<TN>()}", Elementwise.Compare<T, TN>);
    /// <summary>elementwise.clamp: y = clamp(x, lo, hi).</summary>
    public static readonly Kernel<ArrayView<T>, Strides6, T, T, ArrayView<T>, Strides6, Dims6> Clamp =
        new($"elementwise.clamp.{Dt.Of<TN>()}", Elementwise.Clamp<T, TN>);
}

/// <summary>The typed integer-only kernels of <see cref="Elementwise"/> for Int32 or Int64.</summary>
public static class IntegerKernels<T, TN> where T : unmanaged where TN : struct, INum<T>
{
    /// <summary>elementwise.unary_integer: y = op(x) for Neg, Abs, Sign, Square, Relu.</summary>
    public static readonly Kernel<int, ArrayView<T>, Strides6, ArrayView<T>, Strides6, Dims6> Unary = new($"elementwise.unary_integer.{Dt.Of<TN>()}", Elementwise.UnaryInteger<T, TN>);
    /// <summary>elementwise.bitwise: y = op(a, b) on integers of the given width.</summary>
    public static readonly Kernel<int, ArrayView<T>, Strides6, ArrayView<T>, Strides6, ArrayView<T>, Strides6, Dims6, int> Bitwise =
        new($"elementwise.bitwise.{Dt.Of<TN>()}", Elementwise.Bitwise<T, TN>);
}

/// <summary>The typed transcendental kernel of <see cref="Elementwise"/> for one floating dtype.</summary>
public static class UnaryKernels<T, TF> where T : unmanaged where TF : struct, IFloat<T>
{
    /// <summary>elementwise.unary: y = op(x).</summary>
    public static readonly Kernel<int, ArrayView<T>, Strides6, ArrayView<T>, Strides6, Dims6, double, double> Unary = new($"elementwise.unary.{Dt.Of<TF>()}", Elementwise.Unary<T, TF>);
}

/// <summary>The typed conversion kernel of <see cref="Elementwise"/> from one dtype to another.</summary>
public static class ConvertKernels<TIn, TOut, TA, TB> where TIn : unmanaged where TOut : unmanaged where TA : struct, IElement<TIn> where TB : struct, IElement<TOut>
{
    /// <summary>elementwise.convert: y = convert(x).</summary>
    public static readonly Kernel<ArrayView<TIn>, Strides6, ArrayView<TOut>, Strides6, Dims6> Convert =
        new($"elementwise.convert.{Dt.Of<TA>()}_{Dt.Of<TB>()}", Elementwise.Convert<TIn, TOut, TA, TB>);
}
