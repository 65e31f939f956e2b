using Kiln.Backends;
using ILGPU;
using Kiln.Kernels;
using Kiln.Kernels.Gpu;
using G = Kiln.Kernels.Gpu;

namespace Kiln.Gpu;

public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    public void MatMul(Tensor a, Tensor b, Tensor c) => Locked(() =>
    {
        if (a.DType.IsHalf() || b.DType.IsHalf()) { MatMulHalf(a, b, c); return; }
        switch (a.DType)
        {
            case DType.Float32: MatMulT<float, F32>(a, b, c); break;
            case DType.Float64: MatMulT<double, F64>(a, b, c); break;
            case DType.Int32: MatMulInteger<int, I32>(a, b, c); break;
            case DType.Int64: MatMulInteger<long, I64>(a, b, c); break;
            default: throw Unsupported("matmul", a.DType);
        }
    });

    void MatMulInteger<T, TN>(Tensor a, Tensor b, Tensor c) where T : unmanaged where TN : struct, INum<T> =>
        GemmKernels<T, TN>.Integer.Launch(Driver, c.Numel, V<T>(a), V<T>(b), V<T>(c), Args(a, b, c));

    static GemmArgs Args(Tensor a, Tensor b, Tensor c)
    {
        var (sa, sb) = (a.Layout.Strides, b.Layout.Strides);
        return new GemmArgs
        {
            M = c.Shape[1], N = c.Shape[2], K = a.Shape[2],
            AOff = Off(a), ABs = sa[0], ARs = sa[1], ACs = sa[2],
            BOff = Off(b), BBs = sb[0], BRs = sb[1], BCs = sb[2],
            COff = Off(c),
        };
    }

    void MatMulT<T, TN>(Tensor a, Tensor b, Tensor c) where T : unmanaged where TN : struct, INum<T> =>
        GemmKernels<T, TN>.Tiled.Launch(Driver, GemmGrid(c), new Index3D(GemmGroup, GemmGroup, 1), V<T>(a), V<T>(b), V<T>(c), Args(a, b, c));

    Index3D GemmGrid(Tensor c)
    {
        int tile = 4 * GemmGroup;
        return new Index3D((c.Shape[2] + tile - 1) / tile, (c.Shape[1] + tile - 1) / tile, c.Shape[0]);
    }

    // Half operands: A becomes a float32 copy, B stays in its 16-bit storage and is widened as its tiles load, and a
    // float32 product is rounded once into a half C.
    void MatMulHalf(Tensor a, Tensor b, Tensor c)
    {
        using var _ = Autograd.NoGrad();
        var a32 = a.To(DType.Float32);
        var c32 = c.DType == DType.Float32 ? c : Tensor.Empty(c.Shape, DType.Float32, Device);
        var group = new Index3D(GemmGroup, GemmGroup, 1);
        switch (b.DType)
        {
            case DType.Float32: MatMulT<float, F32>(a32, b, c32); break;
            case DType.BFloat16: HalfGemmKernels<WidenBF16>.Tiled.Launch(Driver, GemmGrid(c32), group, V<float>(a32), V<ushort>(b), V<float>(c32), Args(a32, b, c32)); break;
            case DType.Float16: HalfGemmKernels<WidenF16>.Tiled.Launch(Driver, GemmGrid(c32), group, V<float>(a32), V<ushort>(b), V<float>(c32), Args(a32, b, c32)); break;
            default: throw Unsupported("matmul", b.DType);
        }
        if (!ReferenceEquals(c32, c)) { Copy(c32, c); c32.Dispose(); }
        if (!ReferenceEquals(a32, a)) a32.Dispose();
    }

    /// <inheritdoc/>
    public void Attention(Tensor q, Tensor k, Tensor v, bool causal, double scale, Tensor y, Tensor lse) => Locked(() =>
    {
        switch (q.DType)
        {
            case DType.Float32: AttentionT<float, F32>(q, k, v, causal, (float)scale, y, lse); break;
            case DType.Float64: AttentionT<double, F64>(q, k, v, causal, scale, y, lse); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [q, k, v], [y, lse], (i, o) => Attention(i[0]!, i[1]!, i[2]!, causal, scale, o[0]!, o[1]!)); break;
            default: throw Unsupported("attention", q.DType);
        }
    });

    void AttentionT<T, TF>(Tensor q, Tensor k, Tensor v, bool causal, T scale, Tensor y, Tensor lse) where T : unmanaged where TF : struct, IFloat<T>
    {
        var dims = AttentionDims(q, k, v, causal) with { YOff = Off(y), LseOff = Off(lse) };
        AttentionKernels<T, TF>.Forward.Launch(Driver, q.Shape[0] * dims.Tq, V<T>(q), V<T>(k), V<T>(v), V<T>(y), V<T>(lse), dims, scale);
    }

    /// <inheritdoc/>
    public void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor y, Tensor gy, Tensor lse, bool causal, double scale, Tensor gq, Tensor gk, Tensor gv) => Locked(() =>
    {
        switch (q.DType)
        {
            case DType.Float32: AttentionBackwardT<float, F32>(q, k, v, y, gy, lse, causal, (float)scale, gq, gk, gv); break;
            case DType.Float64: AttentionBackwardT<double, F64>(q, k, v, y, gy, lse, causal, scale, gq, gk, gv); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [q, k, v, y, gy, lse], [gq, gk, gv], (i, o) => AttentionBackward(i[0]!, i[1]!, i[2]!, i[3]!, i[4]!, i[5]!, causal, scale, o[0]!, o[1]!, o[2]!)); break;
            default: throw Unsupported("attention_backward", q.DType);
        }
    });

    void AttentionBackwardT<T, TF>(Tensor q, Tensor k, Tensor v, Tensor y, Tensor gy, Tensor lse, bool causal, T scale, Tensor gq, Tensor gk, Tensor gv)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        var dims = AttentionDims(q, k, v, causal) with
        {
            YOff = Off(y), LseOff = Off(lse), GyOff = Off(gy), GqOff = Off(gq), GkOff = Off(gk), GvOff = Off(gv),
        };
        int rows = q.Shape[0] * dims.Tq, keys = q.Shape[0] * dims.Tk;
        using var delta = Tensor.Empty(new Shape(Math.Max(rows, 1)), q.DType, Device);
        AttentionKernels<T, TF>.Delta.Launch(Driver, rows, V<T>(y), V<T>(gy), V<T>(delta), dims);
        AttentionKernels<T, TF>.GradQ.Launch(Driver, rows, V<T>(q), V<T>(k), V<T>(v), V<T>(gy), V<T>(lse), V<T>(delta), V<T>(gq), dims, scale);
        AttentionKernels<T, TF>.GradKV.Launch(Driver, keys, V<T>(q), V<T>(k), V<T>(v), V<T>(gy), V<T>(lse), V<T>(delta), V<T>(gk), V<T>(gv), dims, scale);
    }

    // The core hands over contiguous tensors, which may still start past their buffer's first element.
    static G.Attention.Dims AttentionDims(Tensor q, Tensor k, Tensor v, bool causal) => new()
    {
        Tq = q.Shape[1], Tk = k.Shape[1], D = q.Shape[2], Dv = v.Shape[2], Causal = causal ? 1 : 0,
        QOff = Off(q), KOff = Off(k), VOff = Off(v),
    };

    /// <inheritdoc/>
    public void LstmGates(Tensor a, Tensor c, int rows, int hidden, Tensor hc) => Locked(() =>
    {
        switch (a.DType)
        {
            case DType.Float32: RecurrentKernels<float, F32>.Lstm.Launch(Driver, rows * hidden, V<float>(a), Off(a), V<float>(c), Off(c), V<float>(hc), Off(hc), rows, hidden); break;
            case DType.Float64: RecurrentKernels<double, F64>.Lstm.Launch(Driver, rows * hidden, V<double>(a), Off(a), V<double>(c), Off(c), V<double>(hc), Off(hc), rows, hidden); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [a, c], [hc], (i, o) => LstmGates(i[0]!, i[1]!, rows, hidden, o[0]!)); break;
            default: throw Unsupported("lstm_gates", a.DType);
        }
    });

    /// <inheritdoc/>
    public void GruGates(Tensor x, Tensor m, Tensor h, int rows, int hidden, Tensor y) => Locked(() =>
    {
        switch (x.DType)
        {
            case DType.Float32: RecurrentKernels<float, F32>.Gru.Launch(Driver, rows * hidden, V<float>(x), Off(x), V<float>(m), Off(m), V<float>(h), Off(h), V<float>(y), Off(y), hidden); break;
            case DType.Float64: RecurrentKernels<double, F64>.Gru.Launch(Driver, rows * hidden, V<double>(x), Off(x), V<double>(m), Off(m), V<double>(h), Off(h), V<double>(y), Off(y), hidden); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x, m, h], [y], (i, o) => GruGates(i[0]!, i[1]!, i[2]!, rows, hidden, o[0]!)); break;
            default: throw Unsupported("gru_gates", x.DType);
        }
    });

    /// <inheritdoc/>
    public void SoftmaxRows(Tensor x, int rows, int len, bool log, Tensor y) => Locked(() =>
    {
        if (len == 0 && x.DType.IsFloating()) return;
        switch (x.DType)
        {
            case DType.Float32: SoftmaxKernels<float, F32>.Rows.Launch(Driver, Rows(rows), Group, V<float>(x), Off(x), len, log ? 1 : 0, V<float>(y)); break;
            case DType.Float64: SoftmaxKernels<double, F64>.Rows.Launch(Driver, Rows(rows), Group, V<double>(x), Off(x), len, log ? 1 : 0, V<double>(y)); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x], [y], (i, o) => SoftmaxRows(i[0]!, rows, len, log, o[0]!)); break;
            default: throw Unsupported("softmax", x.DType);
        }
    });

    /// <inheritdoc/>
    public void LayerNormRows(Tensor x, Tensor? weight, Tensor? bias, double eps, int rows, int len, Tensor y) => Locked(() =>
    {
        if (len == 0 && x.DType.IsFloating()) return;
        switch (x.DType)
        {
            case DType.Float32: LayerNormT<float, F32>(x, weight, bias, (float)eps, rows, len, y); break;
            case DType.Float64: LayerNormT<double, F64>(x, weight, bias, eps, rows, len, y); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x, weight, bias], [y], (i, o) => LayerNormRows(i[0]!, i[1], i[2], eps, rows, len, o[0]!)); break;
            default: throw Unsupported("layer_norm", x.DType);
        }
    });

    void LayerNormT<T, TF>(Tensor x, Tensor? weight, Tensor? bias, T eps, int rows, int len, Tensor y) where T : unmanaged where TF : struct, IFloat<T> =>
        LayerNormKernels<T, TF>.Rows.Launch(Driver, Rows(rows), Group, V<T>(x), Off(x), len,
            V<T>(weight ?? x), weight is null ? 0 : Off(weight), weight is null ? 0 : 1,
            V<T>(bias ?? x), bias is null ? 0 : Off(bias), bias is null ? 0 : 1, eps, V<T>(y));

    /// <inheritdoc/>
    public void RmsNormRows(Tensor x, Tensor? weight, double eps, int rows, int len, Tensor y) => Locked(() =>
    {
        if (len == 0 && x.DType.IsFloating()) return;
        switch (x.DType)
        {
            case DType.Float32: RmsNormT<float, F32>(x, weight, (float)eps, rows, len, y); break;
            case DType.Float64: RmsNormT<double, F64>(x, weight, eps, rows, len, y); break;
            case DType.Float16 or DType.BFloat16: HalfCompute.Run(this, [x, weight], [y], (i, o) => RmsNormRows(i[0]!, i[1], eps, rows, len, o[0]!)); break;
            default: throw Unsupported("rms_norm", x.DType);
        }
    });

    void RmsNormT<T, TF>(Tensor x, Tensor? weight, T eps, int rows, int len, Tensor y) where T : unmanaged where TF : struct, IFloat<T> =>
        LayerNormKernels<T, TF>.RmsRows.Launch(Driver, Rows(rows), Group, V<T>(x), Off(x), len,
            V<T>(weight ?? x), weight is null ? 0 : Off(weight), weight is null ? 0 : 1, eps, V<T>(y));
}
