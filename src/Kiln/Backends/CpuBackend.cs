using System.Numerics;
using Kiln.Kernels;
using Kiln.Kernels.Cpu;

namespace Kiln.Backends;

/// <summary>The host backend: Kiln's SIMD kernels (kernels/Kiln.Kernels.Cpu) over managed arrays, on all cores.</summary>
public sealed partial class CpuBackend : IBackend
{
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
        return ((CpuStorage)dst.Storage).Data;
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

    // Same-type copies skip the double round trip, so Int64 values above 2^53 survive.
    static Func<TIn, TOut> Conv<TIn, TOut>(Func<TIn, double> toDouble, Func<double, TOut> fromDouble) =>
        typeof(TIn) == typeof(TOut) ? (Func<TIn, TOut>)(object)(Func<TIn, TIn>)(v => v)
        : typeof(TIn) == typeof(int) && typeof(TOut) == typeof(long) ? (Func<TIn, TOut>)(object)(Func<int, long>)(v => v)
        : typeof(TIn) == typeof(long) && typeof(TOut) == typeof(int) ? (Func<TIn, TOut>)(object)(Func<long, int>)(v => (int)v)
        : v => fromDouble(toDouble(v));

    /// <inheritdoc/>
    public void Unary(UnaryOp op, Tensor x, Tensor y)
    {
        switch (x.DType)
        {
            case DType.Float32: Elementwise.UnaryStrided(op, y.Shape.Dims, A<float>(x), O(x), S(x), A<float>(y), O(y), S(y)); break;
            case DType.Float64: Elementwise.UnaryStrided(op, y.Shape.Dims, A<double>(x), O(x), S(x), A<double>(y), O(y), S(y)); break;
            default: throw Unsupported("unary " + op, x.DType);
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
            default: throw Unsupported("where", a.DType);
        }
    }

    static void WhereT<T>(Tensor c, Tensor a, Tensor b, Tensor y) =>
        Elementwise.WhereStrided(y.Shape.Dims, A<bool>(c), O(c), S(c), A<T>(a), O(a), S(a), A<T>(b), O(b), S(b), A<T>(y), O(y), S(y));

    /// <inheritdoc/>
    public void Clamp(Tensor x, double lo, double hi, Tensor y)
    {
        var xc = x.Contiguous();
        switch (x.DType)
        {
            case DType.Float32: Elementwise.Clamp<float>(A<float>(xc).AsSpan(O(xc), x.Numel), (float)lo, (float)hi, A<float>(y).AsSpan(O(y), y.Numel)); break;
            case DType.Float64: Elementwise.Clamp<double>(A<double>(xc).AsSpan(O(xc), x.Numel), lo, hi, A<double>(y).AsSpan(O(y), y.Numel)); break;
            case DType.Int32: Elementwise.Clamp<int>(A<int>(xc).AsSpan(O(xc), x.Numel), (int)Math.Max(lo, int.MinValue), (int)Math.Min(hi, int.MaxValue), A<int>(y).AsSpan(O(y), y.Numel)); break;
            case DType.Int64: Elementwise.Clamp<long>(A<long>(xc).AsSpan(O(xc), x.Numel), (long)Math.Max(lo, long.MinValue), (long)Math.Min(hi, long.MaxValue), A<long>(y).AsSpan(O(y), y.Numel)); break;
            default: throw Unsupported("clamp", x.DType);
        }
    }

    /// <inheritdoc/>
    public void ReduceRows(ReduceOp op, Tensor x, int rows, int len, Tensor y)
    {
        switch (x.DType)
        {
            case DType.Float32: Reduce.Rows(op, A<float>(x), O(x), rows, len, A<float>(y), O(y)); break;
            case DType.Float64: Reduce.Rows(op, A<double>(x), O(x), rows, len, A<double>(y), O(y)); break;
            case DType.Int32: Reduce.Rows(op, A<int>(x), O(x), rows, len, A<int>(y), O(y)); break;
            case DType.Int64: Reduce.Rows(op, A<long>(x), O(x), rows, len, A<long>(y), O(y)); break;
            default: throw Unsupported("reduce " + op, x.DType);
        }
    }

    /// <inheritdoc/>
    public void ReduceCols(ReduceOp op, Tensor x, int len, int cols, Tensor y)
    {
        switch (x.DType)
        {
            case DType.Float32: Reduce.Cols(op, A<float>(x), O(x), len, cols, A<float>(y), O(y)); break;
            case DType.Float64: Reduce.Cols(op, A<double>(x), O(x), len, cols, A<double>(y), O(y)); break;
            case DType.Int32: Reduce.Cols(op, A<int>(x), O(x), len, cols, A<int>(y), O(y)); break;
            case DType.Int64: Reduce.Cols(op, A<long>(x), O(x), len, cols, A<long>(y), O(y)); break;
            default: throw Unsupported("reduce " + op, x.DType);
        }
    }

    /// <inheritdoc/>
    public void ArgReduceRows(bool max, Tensor x, int rows, int len, Tensor values, Tensor indices)
    {
        switch (x.DType)
        {
            case DType.Float32: Reduce.ArgRows(max, A<float>(x), O(x), rows, len, A<float>(values), A<long>(indices)); break;
            case DType.Float64: Reduce.ArgRows(max, A<double>(x), O(x), rows, len, A<double>(values), A<long>(indices)); break;
            case DType.Int32: Reduce.ArgRows(max, A<int>(x), O(x), rows, len, A<int>(values), A<long>(indices)); break;
            case DType.Int64: Reduce.ArgRows(max, A<long>(x), O(x), rows, len, A<long>(values), A<long>(indices)); break;
            default: throw Unsupported(max ? "argmax" : "argmin", x.DType);
        }
    }

    /// <inheritdoc/>
    public void CumsumRows(Tensor x, int rows, int len, bool reverse, Tensor y)
    {
        switch (x.DType)
        {
            case DType.Float32: Reduce.CumsumRows(A<float>(x), O(x), rows, len, reverse, A<float>(y)); break;
            case DType.Float64: Reduce.CumsumRows(A<double>(x), O(x), rows, len, reverse, A<double>(y)); break;
            case DType.Int32: Reduce.CumsumRows(A<int>(x), O(x), rows, len, reverse, A<int>(y)); break;
            case DType.Int64: Reduce.CumsumRows(A<long>(x), O(x), rows, len, reverse, A<long>(y)); break;
            default: throw Unsupported("cumsum", x.DType);
        }
    }

    /// <inheritdoc/>
    public void AnyAllRows(bool all, Tensor x, int rows, int len, Tensor y) => Reduce.AnyAllRows(all, A<bool>(x), O(x), rows, len, A<bool>(y));

    /// <inheritdoc/>
    public void MatMul(Tensor a, Tensor b, Tensor c)
    {
        switch (a.DType)
        {
            case DType.Float32: MatMulT<float>(a, b, c); break;
            case DType.Float64: MatMulT<double>(a, b, c); break;
            default: throw Unsupported("matmul", a.DType);
        }
    }

    static void MatMulT<T>(Tensor a, Tensor b, Tensor c) where T : unmanaged, INumber<T>
    {
        int batch = c.Shape[0], m = c.Shape[1], n = c.Shape[2], k = a.Shape[2];
        var (sa, sb) = (S(a), S(b));
        Gemm.RunBatched(batch, m, n, k, T.One, A<T>(a), O(a), sa[0], sa[1], sa[2], A<T>(b), O(b), sb[0], sb[1], sb[2],
            T.Zero, A<T>(c), O(c), m * n, n);
    }

    /// <inheritdoc/>
    public void Linear(Tensor x, Tensor w, Tensor? bias, bool relu, Tensor y)
    {
        switch (x.DType)
        {
            case DType.Float32: LinearT<float>(x, w, bias, relu, y); break;
            case DType.Float64: LinearT<double>(x, w, bias, relu, y); break;
            default: throw Unsupported("linear", x.DType);
        }
    }

    static void LinearT<T>(Tensor x, Tensor w, Tensor? bias, bool relu, Tensor y) where T : unmanaged, INumber<T>
    {
        int rows = x.Shape[0], inF = x.Shape[1], outF = w.Shape[0];
        var (sx, sw) = (S(x), S(w));
        // B = w^T: element (p, j) is w[j, p].
        Gemm.Run(rows, outF, inF, T.One, A<T>(x), O(x), sx[0], sx[1], A<T>(w), O(w), sw[1], sw[0], T.Zero, A<T>(y), O(y), outF,
            bias: bias is null ? null : A<T>(bias), biasOff: bias is null ? 0 : O(bias), relu: relu);
    }

    /// <inheritdoc/>
    public void Attention(Tensor q, Tensor k, Tensor v, bool causal, double scale, Tensor y, Tensor lse)
    {
        var (batch, tq, d, tk, dv) = (q.Shape[0], q.Shape[1], q.Shape[2], k.Shape[1], v.Shape[2]);
        switch (q.DType)
        {
            case DType.Float32: Kernels.Cpu.Attention.Forward(batch, tq, tk, d, dv, A<float>(q), O(q), A<float>(k), O(k), A<float>(v), O(v), causal, (float)scale, A<float>(y), O(y), A<float>(lse), O(lse)); break;
            case DType.Float64: Kernels.Cpu.Attention.Forward(batch, tq, tk, d, dv, A<double>(q), O(q), A<double>(k), O(k), A<double>(v), O(v), causal, scale, A<double>(y), O(y), A<double>(lse), O(lse)); break;
            default: throw Unsupported("attention", q.DType);
        }
    }

    /// <inheritdoc/>
    public void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor y, Tensor gy, Tensor lse, bool causal, double scale, Tensor gq, Tensor gk, Tensor gv)
    {
        var (batch, tq, d, tk, dv) = (q.Shape[0], q.Shape[1], q.Shape[2], k.Shape[1], v.Shape[2]);
        switch (q.DType)
        {
            case DType.Float32:
                Kernels.Cpu.Attention.Backward(batch, tq, tk, d, dv, A<float>(q), O(q), A<float>(k), O(k), A<float>(v), O(v), A<float>(y), O(y), A<float>(gy), O(gy),
                    A<float>(lse), O(lse), causal, (float)scale, A<float>(gq), O(gq), A<float>(gk), O(gk), A<float>(gv), O(gv)); break;
            case DType.Float64:
                Kernels.Cpu.Attention.Backward(batch, tq, tk, d, dv, A<double>(q), O(q), A<double>(k), O(k), A<double>(v), O(v), A<double>(y), O(y), A<double>(gy), O(gy),
                    A<double>(lse), O(lse), causal, scale, A<double>(gq), O(gq), A<double>(gk), O(gk), A<double>(gv), O(gv)); break;
            default: throw Unsupported("attention", q.DType);
        }
    }

    /// <inheritdoc/>
    public void SoftmaxRows(Tensor x, int rows, int len, bool log, Tensor y)
    {
        switch (x.DType)
        {
            case DType.Float32: Softmax.Rows(A<float>(x), O(x), rows, len, log, A<float>(y)); break;
            case DType.Float64: Softmax.Rows(A<double>(x), O(x), rows, len, log, A<double>(y)); break;
            default: throw Unsupported("softmax", x.DType);
        }
    }

    /// <inheritdoc/>
    public void LayerNormRows(Tensor x, Tensor? weight, Tensor? bias, double eps, int rows, int len, Tensor y)
    {
        switch (x.DType)
        {
            case DType.Float32: LayerNorm.Rows(A<float>(x), O(x), weight is null ? null : A<float>(weight), weight is null ? 0 : O(weight), bias is null ? null : A<float>(bias), bias is null ? 0 : O(bias), (float)eps, rows, len, A<float>(y)); break;
            case DType.Float64: LayerNorm.Rows(A<double>(x), O(x), weight is null ? null : A<double>(weight), weight is null ? 0 : O(weight), bias is null ? null : A<double>(bias), bias is null ? 0 : O(bias), eps, rows, len, A<double>(y)); break;
            default: throw Unsupported("layer_norm", x.DType);
        }
    }

    /// <inheritdoc/>
    public void RmsNormRows(Tensor x, Tensor? weight, double eps, int rows, int len, Tensor y)
    {
        switch (x.DType)
        {
            case DType.Float32: LayerNorm.RmsRows(A<float>(x), O(x), weight is null ? null : A<float>(weight), weight is null ? 0 : O(weight), (float)eps, rows, len, A<float>(y)); break;
            case DType.Float64: LayerNorm.RmsRows(A<double>(x), O(x), weight is null ? null : A<double>(weight), weight is null ? 0 : O(weight), eps, rows, len, A<double>(y)); break;
            default: throw Unsupported("rms_norm", x.DType);
        }
    }

    /// <inheritdoc/>
    public void Random(RandomKind kind, ulong seed, ulong counter, double a, double b, Tensor dst)
    {
        int n = dst.Numel;
        bool f64 = dst.DType == DType.Float64;
        Func<long, double> sample = kind switch
        {
            RandomKind.Uniform => i => a + (b - a) * (f64 ? Philox.UniformDouble(seed, counter, i) : Philox.UniformFloat(seed, counter, i)),
            RandomKind.Normal => i => a + b * Philox.Normal(seed, counter, i, f64),
            RandomKind.Bernoulli => i => (f64 ? Philox.UniformDouble(seed, counter, i) : Philox.UniformFloat(seed, counter, i)) < a ? 1.0 : 0.0,
            _ => i => Math.Floor(a + (b - a) * Philox.UniformDouble(seed, counter, i)),
        };
        switch (dst.DType)
        {
            case DType.Float32: { var d = A<float>(dst); Strided.Parallel(n, n * 16L, (s, e) => { for (int i = s; i < e; i++) d[i] = (float)sample(i); }); break; }
            case DType.Float64: { var d = A<double>(dst); Strided.Parallel(n, n * 16L, (s, e) => { for (int i = s; i < e; i++) d[i] = sample(i); }); break; }
            case DType.Int32: { var d = A<int>(dst); Strided.Parallel(n, n * 16L, (s, e) => { for (int i = s; i < e; i++) d[i] = (int)sample(i); }); break; }
            case DType.Int64: { var d = A<long>(dst); Strided.Parallel(n, n * 16L, (s, e) => { for (int i = s; i < e; i++) d[i] = (long)sample(i); }); break; }
            case DType.Bool: { var d = A<bool>(dst); for (int i = 0; i < n; i++) d[i] = sample(i) != 0; break; }
            default: throw Unsupported("random", dst.DType);
        }
    }

    static (int Outer, int Axis, int Inner) Split3(Shape s, int axis)
    {
        int outer = 1, inner = 1;
        for (int i = 0; i < axis; i++) outer *= s[i];
        for (int i = axis + 1; i < s.Rank; i++) inner *= s[i];
        return (outer, s.Rank == 0 ? 1 : s[axis], inner);
    }

    /// <inheritdoc/>
    public void Gather(Tensor x, int axis, Tensor index, Tensor y)
    {
        var (outer, xAxis, inner) = Split3(x.Shape, axis);
        int yAxis = index.Rank == 0 ? 1 : index.Shape[axis];
        switch (x.DType)
        {
            case DType.Float32: Indexing.Gather(A<float>(x), O(x), outer, xAxis, inner, A<long>(index), O(index), yAxis, A<float>(y)); break;
            case DType.Float64: Indexing.Gather(A<double>(x), O(x), outer, xAxis, inner, A<long>(index), O(index), yAxis, A<double>(y)); break;
            case DType.Int32: Indexing.Gather(A<int>(x), O(x), outer, xAxis, inner, A<long>(index), O(index), yAxis, A<int>(y)); break;
            case DType.Int64: Indexing.Gather(A<long>(x), O(x), outer, xAxis, inner, A<long>(index), O(index), yAxis, A<long>(y)); break;
            case DType.Bool: Indexing.Gather(A<bool>(x), O(x), outer, xAxis, inner, A<long>(index), O(index), yAxis, A<bool>(y)); break;
            default: throw Unsupported("gather", x.DType);
        }
    }

    /// <inheritdoc/>
    public void ScatterAdd(Tensor y, int axis, Tensor index, Tensor src) => ScatterImpl(y, axis, index, src, add: true);
    /// <inheritdoc/>
    public void Scatter(Tensor y, int axis, Tensor index, Tensor src) => ScatterImpl(y, axis, index, src, add: false);

    static void ScatterImpl(Tensor y, int axis, Tensor index, Tensor src, bool add)
    {
        var (outer, yAxis, inner) = Split3(y.Shape, axis);
        int sAxis = index.Rank == 0 ? 1 : index.Shape[axis];
        switch (y.DType)
        {
            case DType.Float32: Indexing.Scatter(A<float>(y), O(y), outer, yAxis, inner, A<long>(index), O(index), A<float>(src), O(src), sAxis, add ? (p, q) => p + q : null); break;
            case DType.Float64: Indexing.Scatter(A<double>(y), O(y), outer, yAxis, inner, A<long>(index), O(index), A<double>(src), O(src), sAxis, add ? (p, q) => p + q : null); break;
            case DType.Int32: Indexing.Scatter(A<int>(y), O(y), outer, yAxis, inner, A<long>(index), O(index), A<int>(src), O(src), sAxis, add ? (p, q) => p + q : null); break;
            case DType.Int64: Indexing.Scatter(A<long>(y), O(y), outer, yAxis, inner, A<long>(index), O(index), A<long>(src), O(src), sAxis, add ? (p, q) => p + q : null); break;
            case DType.Bool when !add: Indexing.Scatter(A<bool>(y), O(y), outer, yAxis, inner, A<long>(index), O(index), A<bool>(src), O(src), sAxis, null); break;
            default: throw Unsupported(add ? "scatter_add" : "scatter", y.DType);
        }
    }

    /// <inheritdoc/>
    public void SortRows(Tensor x, int rows, int len, bool descending, Tensor values, Tensor indices)
    {
        switch (x.DType)
        {
            case DType.Float32: Sort.Rows(A<float>(x), O(x), rows, len, descending, A<float>(values), A<long>(indices), NanLast); break;
            case DType.Float64: Sort.Rows(A<double>(x), O(x), rows, len, descending, A<double>(values), A<long>(indices), NanLast); break;
            case DType.Int32: Sort.Rows(A<int>(x), O(x), rows, len, descending, A<int>(values), A<long>(indices), (p, q) => p.CompareTo(q)); break;
            case DType.Int64: Sort.Rows(A<long>(x), O(x), rows, len, descending, A<long>(values), A<long>(indices), (p, q) => p.CompareTo(q)); break;
            default: throw Unsupported("sort", x.DType);
        }
    }

    // NaN is the largest value, as NumPy sorts it.
    static int NanLast<T>(T p, T q) where T : IFloatingPointIeee754<T> =>
        T.IsNaN(p) ? (T.IsNaN(q) ? 0 : 1) : T.IsNaN(q) ? -1 : p.CompareTo(q);

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
