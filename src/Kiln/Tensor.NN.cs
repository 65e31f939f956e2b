namespace Kiln;

public partial class Tensor
{
    // Moves `axis` last and makes the data contiguous, so row kernels see [rows, len]; returns the inverse permutation.
    (Tensor X, int[] Inverse, int Len) RowsAlong(int axis, string op)
    {
        int a = Check.Axis(axis, Rank, op);
        var perm = Enumerable.Range(0, Rank).Where(i => i != a).Append(a).ToArray();
        var inv = new int[Rank]; for (int i = 0; i < Rank; i++) inv[perm[i]] = i;
        var x = (Rank == 0 ? this : Permute(perm)).Detach().Contiguous();
        return (x, inv, Rank == 0 ? 1 : Shape[a]);
    }

    /// <summary>Softmax along <paramref name="axis"/> (fused kernel, max-shifted): rows sum to 1.</summary>
    public Tensor Softmax(int axis = -1) => SoftmaxImpl(axis, log: false);

    /// <summary>Log-softmax along <paramref name="axis"/> (fused kernel): x - logsumexp(x).</summary>
    public Tensor LogSoftmax(int axis = -1) => SoftmaxImpl(axis, log: true);

    Tensor SoftmaxImpl(int axis, bool log)
    {
        string name = log ? "log_softmax" : "softmax";
        Storage.ThrowIfDisposed(name);
        Check.Floating(this, name, "input");
        if (Autocast.Raises(this)) return Autocast.Raise(this).SoftmaxImpl(axis, log);
        int a = Check.Axis(axis, Rank, name);
        var (x, inv, len) = RowsAlong(a, name);
        var y0 = Empty(x.Shape, DType, Device);
        if (Numel > 0) Backend.SoftmaxRows(x, Numel / len, len, log, y0);
        var y = (Rank == 0 ? y0 : y0.Permute(inv)).Detach();
        return Record(y, name, [this], g => log
            ? [g - y.Exp() * g.Sum(a, keepDim: true)]
            : [y * (g - (g * y).Sum(a, keepDim: true))]);
    }

    /// <summary>
    /// Layer norm over the last dim: (x - mean) / sqrt(var + eps) * weight + bias with the biased variance
    /// (fused kernel). weight and bias are [last dim] or null.
    /// </summary>
    public Tensor LayerNorm(Tensor? weight = null, Tensor? bias = null, double eps = 1e-5)
    {
        Storage.ThrowIfDisposed("layer_norm");
        Check.Floating(this, "layer_norm", "input");
        if (Autocast.Raises(this, weight, bias)) return Autocast.Raise(this).LayerNorm(Autocast.RaiseOrNull(weight), Autocast.RaiseOrNull(bias), eps);
        if (Rank == 0) throw new ShapeMismatchException("layer_norm", "input", "input must have at least one dimension");
        int len = Shape[-1];
        CheckNormParam(weight, len, "layer_norm", nameof(weight));
        CheckNormParam(bias, len, "layer_norm", nameof(bias));
        var x = Detach().Contiguous();
        var y = Empty(Shape, DType, Device);
        if (Numel > 0) Backend.LayerNormRows(x, weight?.Detach().Contiguous(), bias?.Detach().Contiguous(), eps, Numel / len, len, y);
        var inputs = new List<Tensor> { this };
        if (weight is not null) inputs.Add(weight);
        if (bias is not null) inputs.Add(bias);
        return Record(y, "layer_norm", inputs.ToArray(), g =>
        {
            // Recomputed statistics; the formulas are differentiable again for create-graph use.
            var mean = Mean(-1, keepDim: true);
            var rstd = (Var(-1, keepDim: true, correction: 0) + eps).Rsqrt();
            var xhat = (this - mean) * rstd;
            var gw = weight is null ? g : g * weight;
            var dx = rstd * (gw - gw.Mean(-1, keepDim: true) - xhat * (gw * xhat).Mean(-1, keepDim: true));
            var grads = new List<Tensor?> { dx };
            if (weight is not null) grads.Add((g * xhat).SumTo(weight.Shape));
            if (bias is not null) grads.Add(g.SumTo(bias.Shape));
            return grads.ToArray();
        });
    }

    /// <summary>RMS norm over the last dim: x / sqrt(mean(x^2) + eps) * weight (fused kernel); weight is [last dim] or null.</summary>
    public Tensor RmsNorm(Tensor? weight = null, double eps = 1e-6)
    {
        Storage.ThrowIfDisposed("rms_norm");
        Check.Floating(this, "rms_norm", "input");
        if (Autocast.Raises(this, weight)) return Autocast.Raise(this).RmsNorm(Autocast.RaiseOrNull(weight), eps);
        if (Rank == 0) throw new ShapeMismatchException("rms_norm", "input", "input must have at least one dimension");
        int len = Shape[-1];
        CheckNormParam(weight, len, "rms_norm", nameof(weight));
        bool tracks = Tracks(this, weight);
        var y = Empty(Shape, DType, Device);
        if (Numel > 0) Backend.RmsNormRows((tracks ? Detach() : this).Contiguous(), (tracks ? weight?.Detach() : weight)?.Contiguous(), eps, Numel / len, len, y);
        return tracks ? RecordRmsNorm(this, weight, eps, y) : y;
    }

    static Tensor RecordRmsNorm(Tensor x, Tensor? weight, double eps, Tensor y)
    {
        Tensor[] inputs = weight is null ? [x] : [x, weight];
        return Record(y, "rms_norm", inputs, g =>
        {
            var r = (x.Square().Mean(-1, keepDim: true) + eps).Rsqrt();
            var xhat = x * r;
            var gw = weight is null ? g : g * weight;
            var dx = r * (gw - xhat * (gw * xhat).Mean(-1, keepDim: true));
            return weight is null ? [dx] : [dx, (g * xhat).SumTo(weight.Shape)];
        });
    }

    /// <summary>
    /// Rotary position embedding (RoPE, Su et al. 2021) in the rotate-half convention of GPT-NeoX, Llama and Hugging
    /// Face: this cos + rotate_half(this) sin with rotate_half(x) = concat(-x[..., d/2:], x[..., :d/2]), for this tensor
    /// [..., T, d] (d even) and tables <paramref name="cos"/>, <paramref name="sin"/> [T, d] (row i for position i).
    /// Fused: one pass, each product and the sum rounded once, so it gives the bits of those three ops. Differentiable
    /// in the input and in the tables.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The input has rank below 2 or an odd last dim, or a table is not [T, d].</exception>
    /// <exception cref="ArgumentException">The dtypes or devices differ, or the input is not floating point.</exception>
    public Tensor Rope(Tensor cos, Tensor sin)
    {
        const string op = "rope";
        ArgumentNullException.ThrowIfNull(cos); ArgumentNullException.ThrowIfNull(sin);
        Storage.ThrowIfDisposed(op); cos.Storage.ThrowIfDisposed(op); sin.Storage.ThrowIfDisposed(op);
        Check.Floating(this, op, "input");
        Check.SameDType(this, cos, op, nameof(cos)); Check.SameDType(this, sin, op, nameof(sin));
        Check.SameDevice(this, cos, op, nameof(cos)); Check.SameDevice(this, sin, op, nameof(sin));
        if (Rank < 2) throw new ShapeMismatchException(op, "input", $"the input must be [..., T, d], got shape {Shape}");
        int t = Shape[-2], d = Shape[-1];
        if (d % 2 != 0) throw new ShapeMismatchException(op, "input", $"the last dim pairs rotated coordinates and must be even, got shape {Shape}");
        var table = new Shape(t, d);
        if (cos.Shape != table) throw new ShapeMismatchException(op, nameof(cos), table, cos.Shape, $"cos must be [T, d] for an input of shape {Shape}");
        if (sin.Shape != table) throw new ShapeMismatchException(op, nameof(sin), table, sin.Shape, $"sin must be [T, d] for an input of shape {Shape}");
        int n = 1;
        foreach (int e in Shape.Dims[..^2]) n *= e;
        bool tracks = Tracks(this, cos, sin);
        var y3 = Empty(new Shape(n, t, d), DType, Device);
        if (y3.Numel > 0)
            Backend.Rope((tracks ? Detach() : this).Contiguous().Reshape(n, t, d), (tracks ? cos.Detach() : cos).Contiguous(), (tracks ? sin.Detach() : sin).Contiguous(), y3);
        var y = y3.Reshape(Shape.ToArray());
        return tracks ? RecordRope(this, cos, sin, y) : y;
    }

    // y is linear in x: dx = g cos + rotate_half^T(g sin), and rotate_half^T = -rotate_half.
    static Tensor RecordRope(Tensor x, Tensor cos, Tensor sin, Tensor y) => Record(y, "rope", [x, cos, sin], g =>
        [x.RequiresGrad ? g * cos - RotateHalf(g * sin) : null, cos.RequiresGrad ? (g * x).SumTo(cos.Shape) : null, sin.RequiresGrad ? (g * RotateHalf(x)).SumTo(sin.Shape) : null]);

    static Tensor RotateHalf(Tensor u)
    {
        int h = u.Shape[-1] / 2;
        return Concat([-u.Narrow(-1, h, h), u.Narrow(-1, 0, h)], u.Rank - 1);
    }

    /// <summary>
    /// Scaled-dot-product attention, fused: softmax(scale q k^T) v over the last two dims, computed in tiles with an online
    /// softmax so the Tq x Tk score matrix is never stored. q is [..., Tq, d], k [..., Tk, d], v [..., Tk, dv]; the
    /// batch dims broadcast; the result is [..., Tq, dv]. <paramref name="causal"/> lets query i see keys j &lt;= i only
    /// (top-left aligned, as PyTorch's is_causal). <paramref name="scale"/> defaults to 1/sqrt(d).
    /// Differentiable: a fused backward recomputes the probabilities tile by tile; with create-graph the gradient is
    /// written in tensor ops, so it can be differentiated again.
    /// </summary>
    /// <exception cref="ShapeMismatchException">A rank below 2, k's last dim differs from q's, v's rows from k's, or batch dims do not broadcast.</exception>
    /// <exception cref="ArgumentOutOfRangeException">scale is not finite.</exception>
    public static Tensor ScaledDotProductAttention(Tensor q, Tensor k, Tensor v, bool causal = false, double? scale = null)
    {
        const string op = "scaled_dot_product_attention";
        ArgumentNullException.ThrowIfNull(q); ArgumentNullException.ThrowIfNull(k); ArgumentNullException.ThrowIfNull(v);
        q.Storage.ThrowIfDisposed(op); k.Storage.ThrowIfDisposed(op); v.Storage.ThrowIfDisposed(op);
        if (Autocast.Lowers(q, k, v)) return ScaledDotProductAttention(Autocast.Lower(q), Autocast.Lower(k), Autocast.Lower(v), causal, scale);
        Check.Floating(q, op, nameof(q));
        Check.SameDType(q, k, op, nameof(k)); Check.SameDType(q, v, op, nameof(v));
        Check.SameDevice(q, k, op, nameof(k)); Check.SameDevice(q, v, op, nameof(v));
        foreach (var (t, name) in new[] { (q, nameof(q)), (k, nameof(k)), (v, nameof(v)) })
            if (t.Rank < 2) throw new ShapeMismatchException(op, name, $"{name} must be [..., T, d], got shape {t.Shape}");
        int tq = q.Shape[-2], d = q.Shape[-1], tk = k.Shape[-2], dv = v.Shape[-1];
        if (k.Shape[-1] != d) throw new ShapeMismatchException(op, nameof(k), $"k's last dim must equal q's: q {q.Shape}, k {k.Shape}");
        if (v.Shape[-2] != tk) throw new ShapeMismatchException(op, nameof(v), $"v must have as many rows as k: k {k.Shape}, v {v.Shape}");
        var batch = Shape.Broadcast(Shape.Broadcast(new Shape(q.Shape.Dims[..^2]), new Shape(k.Shape.Dims[..^2]), op), new Shape(v.Shape.Dims[..^2]), op);
        double s = scale ?? (d == 0 ? 1.0 : 1.0 / Math.Sqrt(d));
        if (!double.IsFinite(s)) throw new ArgumentOutOfRangeException(nameof(scale), s, $"{op}: scale must be finite");
        int nb = batch.Numel;
        Tensor Flat(Tensor t, int r, int c, bool strided)
        {
            if (t.RequiresGrad) t = t.Detach();
            // A dense operand with the full batch shape is its own [nb, r, c] view (a decoding step's q, k and v); so are
            // keys and values whose rows are dense, for a backend that reads them at a stride (a KV cache's prefix).
            bool full = t.Rank == batch.Rank + 2 && t.Shape.Dims[..batch.Rank].SequenceEqual(batch.Dims)
                && (t.IsContiguous || strided && t.Layout.Strides[^1] == 1 && (r <= 1 || t.Layout.Strides[^2] == c));
            return (full ? t : t.BroadcastTo(new Shape([.. batch.Dims, r, c])).Contiguous()).Reshape(nb, r, c);
        }
        // Keys at a stride only for a forward that is not recorded: the backward kernels take dense operands.
        bool tracks = Tracks(q, k, v), stridedKeys = !tracks && q.Backend.AttentionReadsStridedKeys;
        var (q3, k3, v3) = (Flat(q, tq, d, false), Flat(k, tk, d, stridedKeys), Flat(v, tk, dv, stridedKeys));
        var y3 = Empty(new Shape(nb, tq, dv), q.DType, q.Device);
        var lse = Empty(new Shape(nb, tq), q.DType, q.Device);
        if (nb * tq > 0) q.Backend.Attention(q3, k3, v3, causal, s, y3, lse);
        var y = y3.Reshape([.. batch.Dims, tq, dv]);
        return tracks ? RecordAttention(q, k, v, causal, s, batch, q3, k3, v3, y3, lse, y) : y;
    }

    static Tensor RecordAttention(Tensor q, Tensor k, Tensor v, bool causal, double s, Shape batch, Tensor q3, Tensor k3, Tensor v3, Tensor y3, Tensor lse, Tensor y)
    {
        int nb = batch.Numel, tq = q3.Shape[1], d = q3.Shape[2], tk = k3.Shape[1], dv = v3.Shape[2];
        return Record(y, "scaled_dot_product_attention", [q, k, v], g =>
        {
            if (Autograd.IsEnabled) return AttentionGradComposite(q, k, v, g, causal, s);
            var gq = Zeros(q3.Shape, q.DType, q.Device); var gk = Zeros(k3.Shape, q.DType, q.Device); var gv = Zeros(v3.Shape, q.DType, q.Device);
            if (nb * tq * tk > 0) q.Backend.AttentionBackward(q3, k3, v3, y3, g.Detach().Contiguous().Reshape(nb, tq, dv), lse, causal, s, gq, gk, gv);
            return [gq.Reshape([.. batch.Dims, tq, d]).SumTo(q.Shape), gk.Reshape([.. batch.Dims, tk, d]).SumTo(k.Shape), gv.Reshape([.. batch.Dims, tk, dv]).SumTo(v.Shape)];
        });
    }

    // The attention gradient in tensor ops (materializes the scores; used only when the gradient itself is recorded).
    static Tensor?[] AttentionGradComposite(Tensor q, Tensor k, Tensor v, Tensor g, bool causal, double scale)
    {
        var scores = q.MatMul(k.Transpose(-2, -1)) * scale;
        if (causal)
        {
            int tq = q.Shape[-2], tk = k.Shape[-2];
            var future = Arange(tk, DType.Int64, q.Device).Unsqueeze(0) > Arange(tq, DType.Int64, q.Device).Unsqueeze(1);
            scores = scores.MaskedFill(future, double.NegativeInfinity);
        }
        var p = scores.Softmax(-1);
        var dp = g.MatMul(v.Transpose(-2, -1));
        var ds = p * (dp - (dp * p).Sum(-1, keepDim: true));
        return [(ds.MatMul(k) * scale).SumTo(q.Shape), (ds.Transpose(-2, -1).MatMul(q) * scale).SumTo(k.Shape), p.Transpose(-2, -1).MatMul(g).SumTo(v.Shape)];
    }

    void CheckNormParam(Tensor? p, int len, string op, string name)
    {
        if (p is null) return;
        if (p.Rank != 1 || p.Shape[0] != len) throw new ShapeMismatchException(op, name, new Shape(len), p.Shape, "it must match the last dimension of the input");
        Check.SameDType(this, p, op, name);
        Check.SameDevice(this, p, op, name);
    }
}
