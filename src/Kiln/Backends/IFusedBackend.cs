using Kiln.Kernels;

namespace Kiln.Backends;

/// <summary>
/// Fused ops: a linear layer, row softmax and norms, rotary position embedding, scaled-dot-product attention, causal long convolution, and the gates of an LSTM or GRU step. Each has a default body composed
/// from the primitive families (products, elementwise ops, row reductions) on temporaries of this device, so a new
/// backend runs them from its primitives alone and overrides them with fused kernels for speed. The default attention
/// materializes the [Tq, Tk] score matrix of each head; a backend that serves long sequences overrides it. On half
/// inputs each default body runs in Float32 through <see cref="HalfCompute"/> and rounds its outputs once.
/// </summary>
public interface IFusedBackend : IMemoryBackend, IElementwiseBackend, IReduceBackend, IMatMulBackend
{
    /// <summary>
    /// Whether <see cref="Attention"/> also takes k and v whose [Tk, d] matrices are each row-major but lie any stride
    /// apart (a KV cache's committed prefix, viewed in its larger buffer); otherwise the core hands over contiguous copies.
    /// </summary>
    bool AttentionReadsStridedKeys => false;

    /// <summary>
    /// Fused scaled-dot-product attention over independent heads. <paramref name="q"/> [batch, Tq, d], <paramref name="k"/>
    /// [batch, Tk, d] and <paramref name="v"/> [batch, Tk, dv] are contiguous (k and v may lie at a batch stride where
    /// <see cref="AttentionReadsStridedKeys"/> says so, and the forward is not recorded); writes y [batch, Tq, dv] =
    /// softmax(scale q k^T) v row by row, where causal masks key j &gt; query i (top-left aligned, as PyTorch), and
    /// lse [batch, Tq] = log sum_j exp(scale q_i . k_j) over the unmasked keys (-inf when Tk is 0, with y 0 there).
    /// Must not materialize the Tq x Tk matrix for long sequences.
    /// </summary>
    void Attention(Tensor q, Tensor k, Tensor v, bool causal, double scale, Tensor y, Tensor lse)
    {
        if (q.DType.IsHalf()) { HalfCompute.Run(this, [q, k, v], [y, lse], (i, o) => Attention(i[0]!, i[1]!, i[2]!, causal, scale, o[0]!, o[1]!)); return; }
        int batch = q.Shape[0], tq = q.Shape[1], tk = k.Shape[1], rows = batch * tq;
        if (rows == 0) return;
        using var _ = Autograd.NoGrad();
        if (tk == 0) { Fill(y, 0); Fill(lse, double.NegativeInfinity); return; }
        using var s = Scores(q, k, causal, scale);
        var s2 = s.Reshape([rows, tk]);
        using var m = Tensor.Empty([rows, 1], q.DType, Device);
        using var sum = Tensor.Empty([rows, 1], q.DType, Device);
        ReduceRows(ReduceOp.Max, s2, rows, tk, m);
        Binary(BinaryOp.Sub, s2, m.BroadcastTo(s2.Shape), s2);
        Unary(UnaryOp.Exp, s2, s2);
        ReduceRows(ReduceOp.Sum, s2, rows, tk, sum);
        Binary(BinaryOp.Div, s2, sum.BroadcastTo(s2.Shape), s2);
        MatMul(s, v, y);
        Unary(UnaryOp.Log, sum, sum);
        Binary(BinaryOp.Add, sum, m, lse.Reshape([rows, 1]));
    }

    /// <summary>
    /// Gradients of <see cref="Attention"/> from the forward's inputs, its outputs y and lse, and the output gradient gy
    /// (all contiguous, shapes as there): overwrites gq [batch, Tq, d], gk [batch, Tk, d], gv [batch, Tk, dv].
    /// </summary>
    void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor y, Tensor gy, Tensor lse, bool causal, double scale, Tensor gq, Tensor gk, Tensor gv)
    {
        if (q.DType.IsHalf()) { HalfCompute.Run(this, [q, k, v, y, gy, lse], [gq, gk, gv], (i, o) => AttentionBackward(i[0]!, i[1]!, i[2]!, i[3]!, i[4]!, i[5]!, causal, scale, o[0]!, o[1]!, o[2]!)); return; }
        int batch = q.Shape[0], tq = q.Shape[1], tk = k.Shape[1], dv = v.Shape[2], rows = batch * tq;
        using var _ = Autograd.NoGrad();
        if (rows == 0 || tk == 0) { Fill(gq, 0); Fill(gk, 0); Fill(gv, 0); return; }
        // P = exp(S - lse) recomputed from the forward's log-sum-exp.
        using var p = Scores(q, k, causal, scale);
        Binary(BinaryOp.Sub, p, lse.Reshape([batch, tq, 1]).BroadcastTo(p.Shape), p);
        Unary(UnaryOp.Exp, p, p);
        MatMul(p.Transpose(1, 2), gy, gv);
        // dS = P (gy v^T - rowsum(gy y)) scale
        using var ds = Tensor.Empty(p.Shape, q.DType, Device);
        MatMul(gy, v.Transpose(1, 2), ds);
        using var gyy = Tensor.Empty([rows, dv], q.DType, Device);
        Binary(BinaryOp.Mul, gy.Reshape([rows, dv]), y.Reshape([rows, dv]), gyy);
        using var delta = Tensor.Empty([batch, tq, 1], q.DType, Device);
        ReduceRows(ReduceOp.Sum, gyy, rows, dv, delta);
        Binary(BinaryOp.Sub, ds, delta.BroadcastTo(ds.Shape), ds);
        Binary(BinaryOp.Mul, ds, p, ds);
        using var sc = Tensor.Scalar(scale, q.DType, Device);
        Binary(BinaryOp.Mul, ds, sc.BroadcastTo(ds.Shape), ds);
        MatMul(ds, k, gq);
        MatMul(ds.Transpose(1, 2), q, gk);
    }

    /// <summary>
    /// Rotary position embedding (rotate-half convention): y = x cos + rotate_half(x) sin for <paramref name="x"/> and
    /// <paramref name="y"/> [n, t, d] and tables <paramref name="cos"/>, <paramref name="sin"/> [t, d], all contiguous,
    /// d even, rotate_half(x) = (-x[..., h:], x[..., :h]) with h = d / 2. Each product and the sum is rounded once in the
    /// dtype (no fused multiply-add), so every backend gives the bits of these three ops.
    /// </summary>
    void Rope(Tensor x, Tensor cos, Tensor sin, Tensor y)
    {
        if (x.DType.IsHalf()) { HalfCompute.Run(this, [x, cos, sin], [y], (i, o) => Rope(i[0]!, i[1]!, i[2]!, o[0]!)); return; }
        int n = x.Shape[0], t = x.Shape[1], d = x.Shape[2], h = d / 2;
        if (n * t * d == 0) return;
        using var _ = Autograd.NoGrad();
        Binary(BinaryOp.Mul, x, cos.Reshape([1, t, d]).BroadcastTo(x.Shape), y);
        using var r = Tensor.Empty(x.Shape, x.DType, Device);
        Unary(UnaryOp.Neg, x.Narrow(2, h, h), r.Narrow(2, 0, h));
        Copy(x.Narrow(2, 0, h), r.Narrow(2, h, h));
        Binary(BinaryOp.Mul, r, sin.Reshape([1, t, d]).BroadcastTo(x.Shape), r);
        Binary(BinaryOp.Add, y, r, y);
    }

    /// <summary>
    /// A linear layer with its bias and activation fused into the matrix product's write-back: y = act(x w^T + bias).
    /// <paramref name="x"/> is [rows, in] and <paramref name="w"/> [out, in] (strided views), <paramref name="bias"/>
    /// [out] contiguous or null, <paramref name="y"/> contiguous [rows, out]; act is ReLU when <paramref name="relu"/>, else identity.
    /// With half-precision operands (see <see cref="Tensor.Linear"/>), the bias and activation run in float32 and a
    /// half <paramref name="y"/> is rounded once at the end.
    /// </summary>
    void Linear(Tensor x, Tensor w, Tensor? bias, bool relu, Tensor y)
    {
        using var _ = Autograd.NoGrad();
        var acc = y.DType.IsHalf() ? Tensor.Empty(y.Shape, DType.Float32, Device) : y;
        MatMul(x.Unsqueeze(0), w.T.Unsqueeze(0), acc.Unsqueeze(0));
        if (bias is not null)
        {
            var b = bias.To(acc.DType);
            Binary(BinaryOp.Add, acc, b.BroadcastTo(acc.Shape), acc);
            if (!ReferenceEquals(b, bias)) b.Dispose();
        }
        if (relu) Unary(UnaryOp.Relu, acc, acc);
        if (!ReferenceEquals(acc, y)) { Copy(acc, y); acc.Dispose(); }
    }

    /// <summary>Softmax (or log-softmax) of each row of a contiguous [rows, len] tensor.</summary>
    void SoftmaxRows(Tensor x, int rows, int len, bool log, Tensor y)
    {
        if (x.DType.IsHalf()) { HalfCompute.Run(this, [x], [y], (i, o) => SoftmaxRows(i[0]!, rows, len, log, o[0]!)); return; }
        if (rows == 0 || len == 0) return;
        using var _ = Autograd.NoGrad();
        var (xr, yr) = (x.Reshape([rows, len]), y.Reshape([rows, len]));
        using var m = Tensor.Empty([rows, 1], x.DType, Device);
        using var s = Tensor.Empty([rows, 1], x.DType, Device);
        ReduceRows(ReduceOp.Max, xr, rows, len, m);
        Binary(BinaryOp.Sub, xr, m.BroadcastTo(xr.Shape), yr);
        if (log)
        {
            using var e = Tensor.Empty([rows, len], x.DType, Device);
            Unary(UnaryOp.Exp, yr, e);
            ReduceRows(ReduceOp.Sum, e, rows, len, s);
            Unary(UnaryOp.Log, s, s);
            Binary(BinaryOp.Sub, yr, s.BroadcastTo(yr.Shape), yr);
            return;
        }
        Unary(UnaryOp.Exp, yr, yr);
        ReduceRows(ReduceOp.Sum, yr, rows, len, s);
        Binary(BinaryOp.Div, yr, s.BroadcastTo(yr.Shape), yr);
    }

    /// <summary>Layer norm of each row: (x - mean) / sqrt(var + eps) * weight + bias; weight and bias [len] or null.</summary>
    void LayerNormRows(Tensor x, Tensor? weight, Tensor? bias, double eps, int rows, int len, Tensor y)
    {
        if (x.DType.IsHalf()) { HalfCompute.Run(this, [x, weight, bias], [y], (i, o) => LayerNormRows(i[0]!, i[1], i[2], eps, rows, len, o[0]!)); return; }
        if (rows == 0 || len == 0) return;
        using var _ = Autograd.NoGrad();
        var (xr, yr) = (x.Reshape([rows, len]), y.Reshape([rows, len]));
        using var mean = RowMean(xr, rows, len);
        Binary(BinaryOp.Sub, xr, mean.BroadcastTo(xr.Shape), yr);
        using var sq = Tensor.Empty([rows, len], x.DType, Device);
        Binary(BinaryOp.Mul, yr, yr, sq);
        using var scale = RowMean(sq, rows, len);
        Normalize(yr, scale, eps, weight, len);
        if (bias is not null) Binary(BinaryOp.Add, yr, bias.Reshape([1, len]).BroadcastTo(yr.Shape), yr);
    }

    /// <summary>RMS norm of each row: x / sqrt(mean(x^2) + eps) * weight; weight [len] or null.</summary>
    void RmsNormRows(Tensor x, Tensor? weight, double eps, int rows, int len, Tensor y)
    {
        if (x.DType.IsHalf()) { HalfCompute.Run(this, [x, weight], [y], (i, o) => RmsNormRows(i[0]!, i[1], eps, rows, len, o[0]!)); return; }
        if (rows == 0 || len == 0) return;
        using var _ = Autograd.NoGrad();
        var (xr, yr) = (x.Reshape([rows, len]), y.Reshape([rows, len]));
        Binary(BinaryOp.Mul, xr, xr, yr);
        using var scale = RowMean(yr, rows, len);
        Copy(xr, yr);
        Normalize(yr, scale, eps, weight, len);
    }

    /// <summary>
    /// Causal long convolution, the convolution form of a state-space layer: contiguous <paramref name="x"/> and
    /// <paramref name="y"/> [rows, len] and taps <paramref name="k"/> [channels, taps] (rows a multiple of channels, row r
    /// using kernel row r mod channels), y[r, t] = sum_{s &lt;= min(t, taps - 1)} k[c, s] x[r, t - s]. The default body
    /// adds one shifted, scaled view of x per tap. Reference: <see cref="Reference.CausalConv"/>.
    /// </summary>
    void CausalConv(Tensor x, Tensor k, int rows, int channels, int len, int taps, Tensor y)
    {
        if (x.DType.IsHalf()) { HalfCompute.Run(this, [x, k], [y], (i, o) => CausalConv(i[0]!, i[1]!, rows, channels, len, taps, o[0]!)); return; }
        Fill(y, 0);
        if (rows == 0 || len == 0) return;
        using var _ = Autograd.NoGrad();
        int batch = rows / channels;
        var (x3, y3) = (x.Reshape([batch, channels, len]), y.Reshape([batch, channels, len]));
        using var term = Tensor.Empty([batch, channels, len], x.DType, Device);
        for (int s = 0; s < Math.Min(taps, len); s++)
        {
            var t = term.Narrow(2, 0, len - s);
            Binary(BinaryOp.Mul, x3.Narrow(2, 0, len - s), k.Narrow(1, s, 1).Unsqueeze(0).BroadcastTo(t.Shape), t);
            var dst = y3.Narrow(2, s, len - s);
            Binary(BinaryOp.Add, dst, t, dst);
        }
    }

    /// <summary>
    /// Causal linear attention, unnormalised: contiguous <paramref name="q"/>, <paramref name="k"/> [batch, len, d] and
    /// <paramref name="v"/> [batch, len, dv] give y[b, t] = sum_{s &lt;= t} (q_t . k_s) v_s, written to contiguous
    /// <paramref name="y"/> [batch, len, dv]. The default body masks the [len, len] scores; kernels run the prefix sum
    /// of k_s v_s^T instead. Reference: <see cref="Reference.CausalLinearAttention"/>.
    /// </summary>
    void CausalLinearAttention(Tensor q, Tensor k, Tensor v, Tensor y)
    {
        if (q.DType.IsHalf()) { HalfCompute.Run(this, [q, k, v], [y], (i, o) => CausalLinearAttention(i[0]!, i[1]!, i[2]!, o[0]!)); return; }
        int batch = q.Shape[0], len = q.Shape[1];
        if (y.Numel == 0) return;
        using var _ = Autograd.NoGrad();
        using var s = Tensor.Empty([batch, len, len], q.DType, Device);
        MatMul(q, k.Transpose(1, 2), s);
        using var mask = Tensor.Ones(new Shape(len, len), q.DType, Device).Tril();
        Binary(BinaryOp.Mul, s, mask.BroadcastTo(s.Shape), s);
        MatMul(s, v, y);
    }

    /// <summary>
    /// The elementwise part of an LSTM step (the matrix products are the caller's): from contiguous pre-activations
    /// <paramref name="a"/> [rows, 4 * hidden] (gates i, f, g, o, biases included) and cell state <paramref name="c"/>
    /// [rows, hidden], c' = sigmoid(a_f) c + sigmoid(a_i) tanh(a_g) and h' = sigmoid(a_o) tanh(c'), written to contiguous
    /// <paramref name="hc"/> [2, rows, hidden], h' then c'. Reference: <see cref="Reference.LstmGates"/>.
    /// </summary>
    void LstmGates(Tensor a, Tensor c, int rows, int hidden, Tensor hc)
    {
        if (a.DType.IsHalf()) { HalfCompute.Run(this, [a, c], [hc], (i, o) => LstmGates(i[0]!, i[1]!, rows, hidden, o[0]!)); return; }
        if (rows == 0 || hidden == 0) return;
        using var _ = Autograd.NoGrad();
        var a3 = a.Reshape([rows, 4, hidden]);
        using var s = Tensor.Empty([rows, 4, hidden], a.DType, Device);
        Tensor Gate(Tensor t, int k) => t.Narrow(1, k, 1).Squeeze(1);
        Unary(UnaryOp.Sigmoid, a3, s);
        var (g, h2, c2) = (Gate(s, 2), hc.Narrow(0, 0, 1).Squeeze(0), hc.Narrow(0, 1, 1).Squeeze(0));
        Unary(UnaryOp.Tanh, Gate(a3, 2), g);
        Binary(BinaryOp.Mul, g, Gate(s, 0), g);
        Binary(BinaryOp.Mul, Gate(s, 1), c, c2);
        Binary(BinaryOp.Add, c2, g, c2);
        Unary(UnaryOp.Tanh, c2, h2);
        Binary(BinaryOp.Mul, h2, Gate(s, 3), h2);
    }

    /// <summary>
    /// The elementwise part of a GRU step: from contiguous input and hidden pre-activations <paramref name="x"/>,
    /// <paramref name="m"/> [rows, 3 * hidden] (gates r, z, n, biases included) and state <paramref name="h"/>
    /// [rows, hidden], r = sigmoid(x_r + m_r), z = sigmoid(x_z + m_z), n = tanh(x_n + r m_n) and h' = (1 - z) n + z h,
    /// written to contiguous <paramref name="y"/> [rows, hidden]. Reference: <see cref="Reference.GruGates"/>.
    /// </summary>
    void GruGates(Tensor x, Tensor m, Tensor h, int rows, int hidden, Tensor y)
    {
        if (x.DType.IsHalf()) { HalfCompute.Run(this, [x, m, h], [y], (i, o) => GruGates(i[0]!, i[1]!, i[2]!, rows, hidden, o[0]!)); return; }
        if (rows == 0 || hidden == 0) return;
        using var _ = Autograd.NoGrad();
        var (x3, m3) = (x.Reshape([rows, 3, hidden]), m.Reshape([rows, 3, hidden]));
        using var s = Tensor.Empty([rows, 3, hidden], x.DType, Device);
        var (rz, n) = (s.Narrow(1, 0, 2), s.Narrow(1, 2, 1).Squeeze(1));
        Binary(BinaryOp.Add, x3.Narrow(1, 0, 2), m3.Narrow(1, 0, 2), rz);
        Unary(UnaryOp.Sigmoid, rz, rz);
        Binary(BinaryOp.Mul, m3.Narrow(1, 2, 1).Squeeze(1), s.Narrow(1, 0, 1).Squeeze(1), n);
        Binary(BinaryOp.Add, n, x3.Narrow(1, 2, 1).Squeeze(1), n);
        Unary(UnaryOp.Tanh, n, n);
        Binary(BinaryOp.Sub, h, n, y);
        Binary(BinaryOp.Mul, y, s.Narrow(1, 1, 1).Squeeze(1), y);
        Binary(BinaryOp.Add, y, n, y);
    }

    /// <summary>The mean of each row of contiguous [rows, len] <paramref name="x"/>, as a new [rows, 1] tensor.</summary>
    private Tensor RowMean(Tensor x, int rows, int len)
    {
        var m = Tensor.Empty([rows, 1], x.DType, Device);
        ReduceRows(ReduceOp.Sum, x, rows, len, m);
        using var n = Tensor.Scalar(len, x.DType, Device);
        Binary(BinaryOp.Div, m, n.BroadcastTo(m.Shape), m);
        return m;
    }

    /// <summary>y *= rsqrt(meanSquare + eps) per row, then times weight when given; meanSquare is overwritten.</summary>
    private void Normalize(Tensor y, Tensor meanSquare, double eps, Tensor? weight, int len)
    {
        using var e = Tensor.Scalar(eps, y.DType, Device);
        Binary(BinaryOp.Add, meanSquare, e.BroadcastTo(meanSquare.Shape), meanSquare);
        Unary(UnaryOp.Rsqrt, meanSquare, meanSquare);
        Binary(BinaryOp.Mul, y, meanSquare.BroadcastTo(y.Shape), y);
        if (weight is not null) Binary(BinaryOp.Mul, y, weight.Reshape([1, len]).BroadcastTo(y.Shape), y);
    }

    /// <summary>scale q k^T [batch, Tq, Tk], with -inf where a causal mask hides key j &gt; query i.</summary>
    private Tensor Scores(Tensor q, Tensor k, bool causal, double scale)
    {
        int batch = q.Shape[0], tq = q.Shape[1], tk = k.Shape[1];
        var s = Tensor.Empty([batch, tq, tk], q.DType, Device);
        MatMul(q, k.Transpose(1, 2), s);
        using var sc = Tensor.Scalar(scale, q.DType, Device);
        Binary(BinaryOp.Mul, s, sc.BroadcastTo(s.Shape), s);
        if (!causal) return s;
        var hidden = new bool[tq * tk];
        for (int i = 0; i < tq; i++)
            for (int j = i + 1; j < tk; j++) hidden[i * tk + j] = true;
        using var mask = Tensor.FromArray(hidden, new Shape(1, tq, tk)).To(Device);
        using var inf = Tensor.Scalar(double.NegativeInfinity, q.DType, Device);
        var masked = Tensor.Empty(s.Shape, q.DType, Device);
        Where(mask.BroadcastTo(s.Shape), inf.BroadcastTo(s.Shape), s, masked);
        s.Dispose();
        return masked;
    }
}
