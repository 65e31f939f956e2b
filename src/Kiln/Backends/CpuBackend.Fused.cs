using System.Numerics;
using Kiln.Kernels;
using Kiln.Kernels.Cpu;

namespace Kiln.Backends;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void MatMul(Tensor a, Tensor b, Tensor c)
    {
        if (a.DType.IsHalf() || b.DType.IsHalf()) { WithFloat32(a, null, c, (a32, _, c32) => MatMulWide(a32, b, c32)); return; }
        switch (a.DType)
        {
            case DType.Float32: MatMulT<float>(a, b, c); break;
            case DType.Float64: MatMulT<double>(a, b, c); break;
            case DType.Int32: MatMulInteger<int>(a, b, c); break;
            case DType.Int64: MatMulInteger<long>(a, b, c); break;
            default: throw Unsupported("matmul", a.DType);
        }
    }

    static void MatMulInteger<T>(Tensor a, Tensor b, Tensor c) where T : unmanaged, IBinaryInteger<T>
    {
        var (sa, sb) = (S(a), S(b));
        IntegerGemm.RunBatched(c.Shape[0], c.Shape[1], c.Shape[2], a.Shape[2], A<T>(a), O(a), sa[0], sa[1], sa[2], A<T>(b), O(b), sb[0], sb[1], sb[2], A<T>(c), O(c));
    }

    static void MatMulT<T>(Tensor a, Tensor b, Tensor c) where T : unmanaged, INumber<T>
    {
        int batch = c.Shape[0], m = c.Shape[1], n = c.Shape[2], k = a.Shape[2];
        var (sa, sb) = (S(a), S(b));
        if (FoldRows(batch, m, sa, sb, out int rows, out int rowStride) && MatVec.Streams(sb[1], sb[2]))
        {
            MatVec.Run(rows, n, k, A<T>(a), O(a), rowStride, sa[2], A<T>(b), O(b), sb[1], sb[2], A<T>(c), O(c), n);
            return;
        }
        Gemm.RunBatched(batch, m, n, k, T.One, A<T>(a), O(a), sa[0], sa[1], sa[2], A<T>(b), O(b), sb[0], sb[1], sb[2],
            T.Zero, A<T>(c), O(c), m * n, n);
    }

    // Half operands: A (or x, small next to the weight in the skinny products and O(m k) against O(m n k) otherwise)
    // and the bias are widened to float32 copies, the product runs in float32 into C (or a float32 C rounded once into
    // the half C at the end); the weight is left to the kernels, which widen it as they stream or pack it.
    void WithFloat32(Tensor a, Tensor? bias, Tensor c, Action<Tensor, Tensor?, Tensor> run)
    {
        using var _ = Autograd.NoGrad();
        var a32 = a.To(DType.Float32);
        var b32 = bias?.To(DType.Float32);
        var c32 = c.DType == DType.Float32 ? c : Tensor.Empty(c.Shape, DType.Float32, Device);
        run(a32, b32, c32);
        if (!ReferenceEquals(c32, c)) { Copy(c32, c); c32.Dispose(); }
        if (!ReferenceEquals(a32, a)) a32.Dispose();
        if (b32 is not null && !ReferenceEquals(b32, bias)) b32.Dispose();
    }

    // A float32 [batch, m, k] times B of Float32, BFloat16 or Float16.
    static void MatMulWide(Tensor a, Tensor b, Tensor c)
    {
        switch (b.DType)
        {
            case DType.Float32: MatMulT<float>(a, b, c); break;
            case DType.BFloat16: MatMulW<ushort>(a, b, c); break;
            case DType.Float16: MatMulW<Half>(a, b, c); break;
            default: throw Unsupported("matmul", b.DType);
        }
    }

    static void MatMulW<TW>(Tensor a, Tensor b, Tensor c) where TW : unmanaged
    {
        int batch = c.Shape[0], m = c.Shape[1], n = c.Shape[2], k = a.Shape[2];
        var (sa, sb) = (S(a), S(b));
        if (FoldRows(batch, m, sa, sb, out int rows, out int rowStride) && MatVec.Streams(sb[1], sb[2]))
            MatVec.Run(rows, n, k, A<float>(a), O(a), rowStride, sa[2], A<TW>(b), O(b), sb[1], sb[2], A<float>(c), O(c), n);
        else
            Gemm.RunWidened(batch, m, n, k, A<float>(a), O(a), sa[0], sa[1], sa[2], A<TW>(b), O(b), sb[0], sb[1], sb[2], A<float>(c), O(c), m * n, n);
    }

    // Products with one shared B whose rows of A fold into at most MatVec.MaxRows rows of one product (C is contiguous,
    // so its rows fold too): the skinny kernel streams B once instead of packing it.
    static bool FoldRows(int batch, int m, int[] sa, int[] sb, out int rows, out int rowStride)
    {
        rows = batch * m;
        rowStride = m == 1 ? sa[0] : sa[1];
        return rows <= MatVec.MaxRows && (batch == 1 || sb[0] == 0 && (m == 1 || sa[0] == m * sa[1]));
    }

    /// <inheritdoc/>
    public void Linear(Tensor x, Tensor w, Tensor? bias, bool relu, Tensor y)
    {
        if (x.DType.IsHalf() || w.DType.IsHalf())
        {
            // Float32 activations with a half weight (a half checkpoint's inference) need no conversions around the kernel.
            if (x.DType == DType.Float32 && y.DType == DType.Float32 && bias is null or { DType: DType.Float32 }) LinearWide(x, w, bias, relu, y);
            else LinearInFloat32(x, w, bias, relu, y);
            return;
        }
        switch (x.DType)
        {
            case DType.Float32: LinearT<float>(x, w, bias, relu, y); break;
            case DType.Float64: LinearT<double>(x, w, bias, relu, y); break;
            default: throw Unsupported("linear", x.DType);
        }
    }

    void LinearInFloat32(Tensor x, Tensor w, Tensor? bias, bool relu, Tensor y) =>
        WithFloat32(x, bias, y, (x32, b32, y32) => LinearWide(x32, w, b32, relu, y32));

    // Float32 x, bias and y times a weight of Float32, BFloat16 or Float16.
    static void LinearWide(Tensor x, Tensor w, Tensor? bias, bool relu, Tensor y)
    {
        switch (w.DType)
        {
            case DType.Float32: LinearT<float>(x, w, bias, relu, y); break;
            case DType.BFloat16: LinearW<ushort>(x, w, bias, relu, y); break;
            case DType.Float16: LinearW<Half>(x, w, bias, relu, y); break;
            default: throw Unsupported("linear", w.DType);
        }
    }

    static void LinearT<T>(Tensor x, Tensor w, Tensor? bias, bool relu, Tensor y) where T : unmanaged, INumber<T>
    {
        int rows = x.Shape[0], inF = x.Shape[1], outF = w.Shape[0];
        var (sx, sw) = (S(x), S(w));
        // B = w^T: element (p, j) is w[j, p].
        if (rows <= MatVec.MaxRows && MatVec.Streams(sw[1], sw[0]))
        {
            MatVec.Run(rows, outF, inF, A<T>(x), O(x), sx[0], sx[1], A<T>(w), O(w), sw[1], sw[0], A<T>(y), O(y), outF,
                bias is null ? null : A<T>(bias), bias is null ? 0 : O(bias), relu);
            return;
        }
        Gemm.Run(rows, outF, inF, T.One, A<T>(x), O(x), sx[0], sx[1], A<T>(w), O(w), sw[1], sw[0], T.Zero, A<T>(y), O(y), outF,
            bias: bias is null ? null : A<T>(bias), biasOff: bias is null ? 0 : O(bias), relu: relu);
    }

    static void LinearW<TW>(Tensor x, Tensor w, Tensor? bias, bool relu, Tensor y) where TW : unmanaged
    {
        int rows = x.Shape[0], inF = x.Shape[1], outF = w.Shape[0];
        var (sx, sw) = (S(x), S(w));
        float[]? b = bias is null ? null : A<float>(bias);
        int bOff = bias is null ? 0 : O(bias);
        if (rows <= MatVec.MaxRows && MatVec.Streams(sw[1], sw[0]))
            MatVec.Run(rows, outF, inF, A<float>(x), O(x), sx[0], sx[1], A<TW>(w), O(w), sw[1], sw[0], A<float>(y), O(y), outF, b, bOff, relu);
        else
            Gemm.RunWidened(1, rows, outF, inF, A<float>(x), O(x), 0, sx[0], sx[1], A<TW>(w), O(w), 0, sw[1], sw[0], A<float>(y), O(y), 0, outF, b, bOff, relu);
    }

    /// <inheritdoc/>
    public void Rope(Tensor x, Tensor cos, Tensor sin, Tensor y)
    {
        var (n, t, d) = (x.Shape[0], x.Shape[1], x.Shape[2]);
        switch (x.DType)
        {
            case DType.Float32: Kernels.Cpu.Rope.Run(n * t, t, d, A<float>(x), O(x), A<float>(cos), O(cos), A<float>(sin), O(sin), A<float>(y), O(y)); break;
            case DType.Float64: Kernels.Cpu.Rope.Run(n * t, t, d, A<double>(x), O(x), A<double>(cos), O(cos), A<double>(sin), O(sin), A<double>(y), O(y)); break;
            case DType.Float16 or DType.BFloat16: RopeHalf(x, cos, sin, y); break;
            default: throw Unsupported("rope", x.DType);
        }
    }

    /// <inheritdoc/>
    public void Attention(Tensor q, Tensor k, Tensor v, bool causal, double scale, Tensor y, Tensor lse)
    {
        var (batch, tq, d, tk, dv) = (q.Shape[0], q.Shape[1], q.Shape[2], k.Shape[1], v.Shape[2]);
        // Keys and values at a stride: read in place by the few-rows path, copied for the tiles.
        if (tq > Kernels.Cpu.Attention.FewRows && !(k.IsContiguous && v.IsContiguous)) { k = k.Contiguous(); v = v.Contiguous(); }
        int kbs = k.IsContiguous || batch <= 1 ? -1 : S(k)[0], vbs = v.IsContiguous || batch <= 1 ? -1 : S(v)[0];
        switch (q.DType)
        {
            case DType.Float32: Kernels.Cpu.Attention.Forward(batch, tq, tk, d, dv, A<float>(q), O(q), A<float>(k), O(k), A<float>(v), O(v), causal, (float)scale, A<float>(y), O(y), A<float>(lse), O(lse), kBatchStride: kbs, vBatchStride: vbs); break;
            case DType.Float64: Kernels.Cpu.Attention.Forward(batch, tq, tk, d, dv, A<double>(q), O(q), A<double>(k), O(k), A<double>(v), O(v), causal, scale, A<double>(y), O(y), A<double>(lse), O(lse), kBatchStride: kbs, vBatchStride: vbs); break;
            case DType.Float16 or DType.BFloat16: AttentionHalf(q, k, v, causal, scale, y, lse); break;
            default: throw Unsupported("attention", q.DType);
        }
    }

    /// <inheritdoc/>
    public bool AttentionReadsStridedKeys => true;

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
            case DType.Float16 or DType.BFloat16: AttentionBackwardHalf(q, k, v, y, gy, lse, causal, scale, gq, gk, gv); break;
            default: throw Unsupported("attention", q.DType);
        }
    }

    /// <inheritdoc/>
    public void LstmGates(Tensor a, Tensor c, int rows, int hidden, Tensor hc)
    {
        switch (a.DType)
        {
            case DType.Float32: RecurrentGates.Lstm(A<float>(a), O(a), A<float>(c), O(c), rows, hidden, A<float>(hc), O(hc)); break;
            case DType.Float64: RecurrentGates.Lstm(A<double>(a), O(a), A<double>(c), O(c), rows, hidden, A<double>(hc), O(hc)); break;
            case DType.Float16 or DType.BFloat16: LstmGatesHalf(a, c, rows, hidden, hc); break;
            default: throw Unsupported("lstm_gates", a.DType);
        }
    }

    /// <inheritdoc/>
    public void GruGates(Tensor x, Tensor m, Tensor h, int rows, int hidden, Tensor y)
    {
        switch (x.DType)
        {
            case DType.Float32: RecurrentGates.Gru(A<float>(x), O(x), A<float>(m), O(m), A<float>(h), O(h), rows, hidden, A<float>(y), O(y)); break;
            case DType.Float64: RecurrentGates.Gru(A<double>(x), O(x), A<double>(m), O(m), A<double>(h), O(h), rows, hidden, A<double>(y), O(y)); break;
            case DType.Float16 or DType.BFloat16: GruGatesHalf(x, m, h, rows, hidden, y); break;
            default: throw Unsupported("gru_gates", x.DType);
        }
    }

    /// <inheritdoc/>
    public void SoftmaxRows(Tensor x, int rows, int len, bool log, Tensor y)
    {
        switch (x.DType)
        {
            case DType.Float32: Softmax.Rows(A<float>(x), O(x), rows, len, log, A<float>(y)); break;
            case DType.Float64: Softmax.Rows(A<double>(x), O(x), rows, len, log, A<double>(y)); break;
            case DType.Float16 or DType.BFloat16: SoftmaxRowsHalf(x, rows, len, log, y); break;
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
            case DType.Float16 or DType.BFloat16: LayerNormRowsHalf(x, weight, bias, eps, rows, len, y); break;
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
            case DType.Float16 or DType.BFloat16: RmsNormRowsHalf(x, weight, eps, rows, len, y); break;
            default: throw Unsupported("rms_norm", x.DType);
        }
    }

    void RopeHalf(Tensor x, Tensor cos, Tensor sin, Tensor y) => HalfCompute.Run(this, [x, cos, sin], [y], (i, o) => Rope(i[0]!, i[1]!, i[2]!, o[0]!));
    void AttentionHalf(Tensor q, Tensor k, Tensor v, bool causal, double scale, Tensor y, Tensor lse) => HalfCompute.Run(this, [q, k, v], [y, lse], (i, o) => Attention(i[0]!, i[1]!, i[2]!, causal, scale, o[0]!, o[1]!));
    void AttentionBackwardHalf(Tensor q, Tensor k, Tensor v, Tensor y, Tensor gy, Tensor lse, bool causal, double scale, Tensor gq, Tensor gk, Tensor gv) => HalfCompute.Run(this, [q, k, v, y, gy, lse], [gq, gk, gv], (i, o) => AttentionBackward(i[0]!, i[1]!, i[2]!, i[3]!, i[4]!, i[5]!, causal, scale, o[0]!, o[1]!, o[2]!));
    void LstmGatesHalf(Tensor a, Tensor c, int rows, int hidden, Tensor hc) => HalfCompute.Run(this, [a, c], [hc], (i, o) => LstmGates(i[0]!, i[1]!, rows, hidden, o[0]!));
    void GruGatesHalf(Tensor x, Tensor m, Tensor h, int rows, int hidden, Tensor y) => HalfCompute.Run(this, [x, m, h], [y], (i, o) => GruGates(i[0]!, i[1]!, i[2]!, rows, hidden, o[0]!));
    void SoftmaxRowsHalf(Tensor x, int rows, int len, bool log, Tensor y) => HalfCompute.Run(this, [x], [y], (i, o) => SoftmaxRows(i[0]!, rows, len, log, o[0]!));
    void LayerNormRowsHalf(Tensor x, Tensor? weight, Tensor? bias, double eps, int rows, int len, Tensor y) => HalfCompute.Run(this, [x, weight, bias], [y], (i, o) => LayerNormRows(i[0]!, i[1], i[2], eps, rows, len, o[0]!));
    void RmsNormRowsHalf(Tensor x, Tensor? weight, double eps, int rows, int len, Tensor y) => HalfCompute.Run(this, [x, weight], [y], (i, o) => RmsNormRows(i[0]!, i[1], eps, rows, len, o[0]!));
}
