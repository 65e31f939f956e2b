using Kiln.Backends;
using Kiln.Kernels;
using Kiln.Kernels.Cpu;
using Kiln.Kernels.Gpu;

namespace Kiln.Gpu;

public sealed partial class IlgpuBackend
{
    /// <summary>Calls <paramref name="launch"/> once per block of at most six coalesced dimensions.</summary>
    static void Chunks(Shape shape, Tensor[] ops, Action<Dims6, Strides6[], int> launch)
    {
        if (shape.Numel == 0) return;
        var (dims, strides) = Strided.Coalesce(shape.Dims, ops.Select(t => t.Layout.Strides).ToArray());
        Split(dims, strides, ops.Select(t => t.Layout.Offset).ToArray(), launch);
    }

    static void Split(int[] dims, int[][] strides, int[] offsets, Action<Dims6, Strides6[], int> launch)
    {
        if (dims.Length <= Dims6.MaxRank)
        {
            long n = 1; foreach (int d in dims) n *= d;
            launch(Dims6.From(dims), strides.Select((s, k) => Strides6.From(s, offsets[k])).ToArray(), (int)n);
            return;
        }
        for (int i = 0; i < dims[0]; i++)
            Split(dims[1..], strides.Select(s => s[1..]).ToArray(), offsets.Select((o, k) => o + i * strides[k][0]).ToArray(), launch);
    }

    /// <inheritdoc/>
    public void Unary(UnaryOp op, Tensor x, Tensor y, UnaryParams p = default) => Locked(() =>
    {
        switch (x.DType)
        {
            case DType.Float32: UnaryT<float, F32>(op, x, y, p); break;
            case DType.Float64: UnaryT<double, F64>(op, x, y, p); break;
            case DType.Int32 when IsIntegerUnary(op): UnaryIntegerT<int, I32>(op, x, y); break;
            case DType.Int64 when IsIntegerUnary(op): UnaryIntegerT<long, I64>(op, x, y); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x], [y], (i, o) => Unary(op, i[0]!, o[0]!, p)); break;
            default: throw Unsupported("unary " + op, x.DType);
        }
    });

    static bool IsIntegerUnary(UnaryOp op) => op is UnaryOp.Neg or UnaryOp.Abs or UnaryOp.Sign or UnaryOp.Square or UnaryOp.Relu;

    void UnaryIntegerT<T, TN>(UnaryOp op, Tensor x, Tensor y) where T : unmanaged where TN : struct, INum<T> =>
        Chunks(y.Shape, [x, y], (d, s, n) => IntegerKernels<T, TN>.Unary.Launch(Driver, n, (int)op, V<T>(x), s[0], V<T>(y), s[1], d));

    /// <inheritdoc/>
    public void Bitwise(BitwiseOp op, Tensor a, Tensor b, Tensor y) => Locked(() =>
    {
        switch (a.DType)
        {
            case DType.Int32: BitwiseT<int, I32>(op, a, b, y, 32); break;
            case DType.Int64: BitwiseT<long, I64>(op, a, b, y, 64); break;
            case DType.Bool when op is not (BitwiseOp.LeftShift or BitwiseOp.RightShift):
                // Booleans as 0/1 Int32: and, or and xor keep 0/1; not is xor with 1 (~1 would be -2).
                using (var ai = Tensor.Empty(a.Shape, DType.Int32, Device))
                using (var bi = Tensor.Empty(b.Shape, DType.Int32, Device))
                using (var yi = Tensor.Empty(y.Shape, DType.Int32, Device))
                {
                    Copy(a, ai);
                    if (op == BitwiseOp.Not) Fill(bi, 1); else Copy(b, bi);
                    BitwiseT<int, I32>(op == BitwiseOp.Not ? BitwiseOp.Xor : op, ai, bi, yi, 32);
                    Copy(yi, y);
                }
                break;
            default: throw Unsupported("bitwise " + op, a.DType);
        }
    });

    void BitwiseT<T, TN>(BitwiseOp op, Tensor a, Tensor b, Tensor y, int bits) where T : unmanaged where TN : struct, INum<T> =>
        Chunks(y.Shape, [a, b, y], (d, s, n) => IntegerKernels<T, TN>.Bitwise.Launch(Driver, n, (int)op, V<T>(a), s[0], V<T>(b), s[1], V<T>(y), s[2], d, bits));

    void UnaryT<T, TF>(UnaryOp op, Tensor x, Tensor y, UnaryParams p) where T : unmanaged where TF : struct, IFloat<T> =>
        Chunks(y.Shape, [x, y], (d, s, n) => UnaryKernels<T, TF>.Unary.Launch(Driver, n, (int)op, V<T>(x), s[0], V<T>(y), s[1], d, p.A, p.B));

    /// <inheritdoc/>
    public void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y) => Locked(() =>
    {
        bool real = op is not (BinaryOp.Pow or BinaryOp.Atan2);
        switch (a.DType)
        {
            case DType.Float32: BinaryT<float, F32>(op, a, b, y); break;
            case DType.Float64: BinaryT<double, F64>(op, a, b, y); break;
            case DType.Int32 when real: BinaryT<int, I32>(op, a, b, y); break;
            case DType.Int64 when real: BinaryT<long, I64>(op, a, b, y); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [a, b], [y], (i, o) => Binary(op, i[0]!, i[1]!, o[0]!)); break;
            default: throw Unsupported("binary " + op, a.DType);
        }
    });

    void BinaryT<T, TN>(BinaryOp op, Tensor a, Tensor b, Tensor y) where T : unmanaged where TN : struct, INum<T>
    {
        bool guard = a.DType.IsInteger() && op == BinaryOp.Div;
        if (guard) Driver.Zero(_err, 16);
        Chunks(y.Shape, [a, b, y], (d, s, n) => ElementwiseKernels<T, TN>.Binary.Launch(Driver, n, (int)op, V<T>(a), s[0], V<T>(b), s[1], V<T>(y), s[2], d, ErrView));
        if (guard && ReadErr(out long at)) throw new DivideByZeroException($"integer division by zero at element {at}");
    }

    DeviceView<long> ErrView => new(_err, 2);

    bool ReadErr(out long value)
    {
        Driver.Read(_err, _errHost, 2);
        value = _errHost[1];
        return _errHost[0] != 0;
    }

    /// <inheritdoc/>
    public void Compare(CompareOp op, Tensor a, Tensor b, Tensor y) => Locked(() =>
    {
        switch (a.DType)
        {
            case DType.Bool:
                // Booleans compare as 0/1 integers.
                using (var ai = Tensor.Empty(a.Shape, DType.Int32, Device))
                using (var bi = Tensor.Empty(b.Shape, DType.Int32, Device))
                {
                    Copy(a, ai); Copy(b, bi);
                    Compare(op, ai, bi, y);
                }
                break;
            case DType.Float32: CompareT<float, F32>(op, a, b, y); break;
            case DType.Float64: CompareT<double, F64>(op, a, b, y); break;
            case DType.Int32: CompareT<int, I32>(op, a, b, y); break;
            case DType.Int64: CompareT<long, I64>(op, a, b, y); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [a, b], [y], (i, o) => Compare(op, i[0]!, i[1]!, o[0]!)); break;
            default: throw Unsupported("compare " + op, a.DType);
        }
    });

    void CompareT<T, TN>(CompareOp op, Tensor a, Tensor b, Tensor y) where T : unmanaged where TN : struct, INum<T> =>
        Chunks(y.Shape, [a, b, y], (d, s, n) => ElementwiseKernels<T, TN>.Compare.Launch(Driver, n, (int)op, V<T>(a), s[0], V<T>(b), s[1], V<byte>(y), s[2], d));

    /// <inheritdoc/>
    public void Where(Tensor cond, Tensor a, Tensor b, Tensor y) => Locked(() =>
    {
        switch (a.DType)
        {
            case DType.Float32: WhereT<float>(cond, a, b, y); break;
            case DType.Float64: WhereT<double>(cond, a, b, y); break;
            case DType.Int32: WhereT<int>(cond, a, b, y); break;
            case DType.Int64: WhereT<long>(cond, a, b, y); break;
            case DType.Bool: WhereT<byte>(cond, a, b, y); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [cond, a, b], [y], (i, o) => Where(i[0]!, i[1]!, i[2]!, o[0]!)); break;
            default: throw Unsupported("where", a.DType);
        }
    });

    void WhereT<T>(Tensor cond, Tensor a, Tensor b, Tensor y) where T : unmanaged =>
        Chunks(y.Shape, [cond, a, b, y], (d, s, n) => ElementwiseKernels<T>.Where.Launch(Driver, n, V<byte>(cond), s[0], V<T>(a), s[1], V<T>(b), s[2], V<T>(y), s[3], d));

    /// <inheritdoc/>
    public void Clamp(Tensor x, double lo, double hi, Tensor y) => Locked(() =>
    {
        switch (x.DType)
        {
            case DType.Float32: ClampT<float, F32>(x, (float)lo, (float)hi, y); break;
            case DType.Float64: ClampT<double, F64>(x, lo, hi, y); break;
            case DType.Int32: ClampT<int, I32>(x, (int)Math.Max(lo, int.MinValue), (int)Math.Min(hi, int.MaxValue), y); break;
            case DType.Int64: ClampT<long, I64>(x, (long)Math.Max(lo, long.MinValue), (long)Math.Min(hi, long.MaxValue), y); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x], [y], (i, o) => Clamp(i[0]!, lo, hi, o[0]!)); break;
            default: throw Unsupported("clamp", x.DType);
        }
    });

    void ClampT<T, TN>(Tensor x, T lo, T hi, Tensor y) where T : unmanaged where TN : struct, INum<T> =>
        Chunks(y.Shape, [x, y], (d, s, n) => ElementwiseKernels<T, TN>.Clamp.Launch(Driver, n, V<T>(x), s[0], lo, hi, V<T>(y), s[1], d));
}
