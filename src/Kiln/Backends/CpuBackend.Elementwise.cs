using System.Numerics;
using Kiln.Kernels;
using Kiln.Kernels.Cpu;

namespace Kiln.Backends;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void Unary(UnaryOp op, Tensor x, Tensor y, UnaryParams p = default)
    {
        switch (x.DType)
        {
            case DType.Float32: Elementwise.UnaryStrided(op, y.Shape.Dims, A<float>(x), O(x), S(x), A<float>(y), O(y), S(y), p); break;
            case DType.Float64: Elementwise.UnaryStrided(op, y.Shape.Dims, A<double>(x), O(x), S(x), A<double>(y), O(y), S(y), p); break;
            case DType.Int32: UnaryIntegerT<int>(op, x, y); break;
            case DType.Int64: UnaryIntegerT<long>(op, x, y); break;
            case DType.Float16 or DType.BFloat16: UnaryHalf(op, x, y, p); break;
            default: throw Unsupported("unary " + op, x.DType);
        }
    }

    static void UnaryIntegerT<T>(UnaryOp op, Tensor x, Tensor y) where T : unmanaged, IBinaryInteger<T>, ISignedNumber<T>
    {
        if (op is not (UnaryOp.Neg or UnaryOp.Abs or UnaryOp.Sign or UnaryOp.Square or UnaryOp.Relu)) throw Unsupported("unary " + op, x.DType);
        Elementwise.ZipStrided(y.Shape.Dims, A<T>(x), O(x), S(x), A<T>(x), O(x), S(x), A<T>(y), O(y), S(y), (a, _, r) => Elementwise.UnaryInteger(op, a, r));
    }

    /// <inheritdoc/>
    public void Bitwise(BitwiseOp op, Tensor a, Tensor b, Tensor y)
    {
        switch (a.DType)
        {
            case DType.Int32: Elementwise.ZipStrided(y.Shape.Dims, A<int>(a), O(a), S(a), A<int>(b), O(b), S(b), A<int>(y), O(y), S(y), (p, q, r) => Elementwise.Bitwise(op, p, q, r)); break;
            case DType.Int64: Elementwise.ZipStrided(y.Shape.Dims, A<long>(a), O(a), S(a), A<long>(b), O(b), S(b), A<long>(y), O(y), S(y), (p, q, r) => Elementwise.Bitwise(op, p, q, r)); break;
            case DType.Bool when op is not (BitwiseOp.LeftShift or BitwiseOp.RightShift):
                Elementwise.ZipStrided(y.Shape.Dims, A<bool>(a), O(a), S(a), A<bool>(b), O(b), S(b), A<bool>(y), O(y), S(y), (p, q, r) => Elementwise.Bitwise(op, p, q, r)); break;
            default: throw Unsupported("bitwise " + op, a.DType);
        }
    }

    /// <inheritdoc/>
    public void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y)
    {
        switch (a.DType)
        {
            case DType.Float32: BinaryT<float>(op, a, b, y); break;
            case DType.Float64: BinaryT<double>(op, a, b, y); break;
            case DType.Int32 when op is not (BinaryOp.Pow or BinaryOp.Atan2): BinaryT<int>(op, a, b, y); break;
            case DType.Int64 when op is not (BinaryOp.Pow or BinaryOp.Atan2): BinaryT<long>(op, a, b, y); break;
            case DType.Float16 or DType.BFloat16: BinaryHalf(op, a, b, y); break;
            default: throw Unsupported("binary " + op, a.DType);
        }
    }

    static void BinaryT<T>(BinaryOp op, Tensor a, Tensor b, Tensor y) where T : unmanaged, INumber<T> =>
        Elementwise.BinaryStrided(op, y.Shape.Dims, A<T>(a), O(a), S(a), A<T>(b), O(b), S(b), A<T>(y), O(y), S(y));

    /// <inheritdoc/>
    public void Compare(CompareOp op, Tensor a, Tensor b, Tensor y)
    {
        switch (a.DType)
        {
            case DType.Float32: CompareT<float>(op, a, b, y); break;
            case DType.Float64: CompareT<double>(op, a, b, y); break;
            case DType.Int32: CompareT<int>(op, a, b, y); break;
            case DType.Int64: CompareT<long>(op, a, b, y); break;
            case DType.Bool:
                // Booleans compare as 0/1 bytes.
                var ab = Tensor.Empty(a.Shape, DType.Int32, Device.Cpu); Copy(a, ab);
                var bb = Tensor.Empty(b.Shape, DType.Int32, Device.Cpu); Copy(b, bb);
                CompareT<int>(op, ab, bb, y); break;
            case DType.Float16 or DType.BFloat16: CompareHalf(op, a, b, y); break;
            default: throw Unsupported("compare " + op, a.DType);
        }
    }

    static void CompareT<T>(CompareOp op, Tensor a, Tensor b, Tensor y) where T : unmanaged, INumber<T> =>
        Elementwise.CompareStrided(op, y.Shape.Dims, A<T>(a), O(a), S(a), A<T>(b), O(b), S(b), A<bool>(y), O(y), S(y));

    /// <inheritdoc/>
    public void Where(Tensor cond, Tensor a, Tensor b, Tensor y)
    {
        switch (a.DType)
        {
            case DType.Float32: WhereT<float>(cond, a, b, y); break;
            case DType.Float64: WhereT<double>(cond, a, b, y); break;
            case DType.Int32: WhereT<int>(cond, a, b, y); break;
            case DType.Int64: WhereT<long>(cond, a, b, y); break;
            case DType.Bool: WhereT<bool>(cond, a, b, y); break;
            case DType.Float16: WhereT<Half>(cond, a, b, y); break;
            case DType.BFloat16: WhereT<ushort>(cond, a, b, y); break;
            default: throw Unsupported("where", a.DType);
        }
    }

    static void WhereT<T>(Tensor c, Tensor a, Tensor b, Tensor y) =>
        Elementwise.WhereStrided(y.Shape.Dims, A<bool>(c), O(c), S(c), A<T>(a), O(a), S(a), A<T>(b), O(b), S(b), A<T>(y), O(y), S(y));

    /// <inheritdoc/>
    public void Clamp(Tensor x, double lo, double hi, Tensor y)
    {
        // An empty view may start past the end of its (empty) storage, where no span can begin.
        if (y.Numel == 0) return;
        var xc = x.Contiguous();
        switch (x.DType)
        {
            case DType.Float32: Elementwise.Clamp<float>(A<float>(xc).AsSpan(O(xc), x.Numel), (float)lo, (float)hi, A<float>(y).AsSpan(O(y), y.Numel)); break;
            case DType.Float64: Elementwise.Clamp<double>(A<double>(xc).AsSpan(O(xc), x.Numel), lo, hi, A<double>(y).AsSpan(O(y), y.Numel)); break;
            case DType.Int32: Elementwise.Clamp<int>(A<int>(xc).AsSpan(O(xc), x.Numel), (int)Math.Max(lo, int.MinValue), (int)Math.Min(hi, int.MaxValue), A<int>(y).AsSpan(O(y), y.Numel)); break;
            case DType.Int64: Elementwise.Clamp<long>(A<long>(xc).AsSpan(O(xc), x.Numel), (long)Math.Max(lo, long.MinValue), (long)Math.Min(hi, long.MaxValue), A<long>(y).AsSpan(O(y), y.Numel)); break;
            case DType.Float16 or DType.BFloat16: ClampHalf(x, lo, hi, y); break;
            default: throw Unsupported("clamp", x.DType);
        }
    }

    void UnaryHalf(UnaryOp op, Tensor x, Tensor y, UnaryParams p) => HalfCompute.Run(this, [x], [y], (i, o) => Unary(op, i[0]!, o[0]!, p));
    void BinaryHalf(BinaryOp op, Tensor a, Tensor b, Tensor y) => HalfCompute.Run(this, [a, b], [y], (i, o) => Binary(op, i[0]!, i[1]!, o[0]!));
    void CompareHalf(CompareOp op, Tensor a, Tensor b, Tensor y) => HalfCompute.Run(this, [a, b], [y], (i, o) => Compare(op, i[0]!, i[1]!, o[0]!));
    void ClampHalf(Tensor x, double lo, double hi, Tensor y) => HalfCompute.Run(this, [x], [y], (i, o) => Clamp(i[0]!, lo, hi, o[0]!));
}
