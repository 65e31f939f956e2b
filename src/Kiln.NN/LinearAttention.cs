namespace Kiln.NN;

/// <summary>The three equal ways <see cref="LinearAttention.Bidirectional"/> can compute its output.</summary>
public enum LinearAttentionForm
{
    /// <summary>The full T x T form: Y = ((Q K^T) ⊙ M) V, O(T^2).</summary>
    Full,
    /// <summary>Two recurrences (forward and backward states) and one correction for the doubly counted diagonal, O(T).</summary>
    Recurrent,
    /// <summary>Full attention inside chunks, states passed between chunks in both directions.</summary>
    Chunkwise,
}

/// <summary>
/// Bidirectional linear attention with decay (LION, "Linear Attention for Efficient Bidirectional Sequence
/// Modeling", Afzal et al. 2025): y_i = sum_j M_ij (q_i . k_j) v_j / sum_j M_ij (q_i . k_j) with the symmetric decay
/// mask M_ij = the product of lambda_k over k from min(i, j) + 1 to max(i, j), i.e. exp(-|c_i - c_j|) with
/// c = cumsum(log lambda). lambda = 1 is LION-LIT, a constant lambda LION-D, a per-token lambda LION-S. Its three forms
/// (full, forward and backward recurrences, chunkwise) give the same output.
/// </summary>
public static class LinearAttention
{
    /// <summary>
    /// The bidirectional attention of q, k [B, T, d] (feature-mapped so that q . k &gt; 0, e.g. elu + 1) and v [B, T, dv]
    /// under decays exp(<paramref name="logDecay"/>) [B, T] (values &lt;= 0; null: no decay) in the chosen form.
    /// </summary>
    /// <param name="q">Queries [B, T, d].</param>
    /// <param name="k">Keys [B, T, d].</param>
    /// <param name="v">Values [B, T, dv].</param>
    /// <param name="logDecay">log lambda_i [B, T], or null for lambda = 1.</param>
    /// <param name="form">Which form computes it.</param>
    /// <param name="chunkSize">Chunk length of the chunkwise form, positive.</param>
    /// <returns>[B, T, dv].</returns>
    /// <exception cref="ShapeMismatchException">A shape does not fit.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="chunkSize"/> is not positive.</exception>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor? logDecay = null, LinearAttentionForm form = LinearAttentionForm.Full, int chunkSize = 16)
    {
        const string op = "lion";
        ArgumentNullException.ThrowIfNull(q); ArgumentNullException.ThrowIfNull(k); ArgumentNullException.ThrowIfNull(v);
        if (q.Rank != 3) throw new ShapeMismatchException(op, nameof(q), $"q must be [B, T, d], got {q.Shape}");
        if (!k.Shape.Equals(q.Shape)) throw new ShapeMismatchException(op, nameof(k), q.Shape, k.Shape, "k must have q's shape");
        if (v.Rank != 3 || v.Shape[0] != q.Shape[0] || v.Shape[1] != q.Shape[1])
            throw new ShapeMismatchException(op, nameof(v), $"v must be [{q.Shape[0]}, {q.Shape[1]}, dv], got {v.Shape}");
        if (logDecay is not null && (logDecay.Rank != 2 || logDecay.Shape[0] != q.Shape[0] || logDecay.Shape[1] != q.Shape[1]))
            throw new ShapeMismatchException(op, nameof(logDecay), new Shape(q.Shape[0], q.Shape[1]), logDecay.Shape, "one log-decay per token");
        if (chunkSize <= 0) throw new ArgumentOutOfRangeException(nameof(chunkSize), chunkSize, "lion: chunkSize must be positive");
        int b = q.Shape[0], t = q.Shape[1], dv = v.Shape[2];
        // The normaliser rides along as a column of ones in V.
        var v1 = Tensor.Concat([v, Tensor.Ones(new Shape(b, t, 1), v.DType, v.Device)], 2);
        var c = logDecay is null ? Tensor.Zeros(new Shape(b, t), q.DType, q.Device) : logDecay.Cumsum(1);
        var num = form switch
        {
            LinearAttentionForm.Full => Full(q, k, v1, c),
            LinearAttentionForm.Recurrent => Recurrences(q, k, v1, logDecay),
            _ => Chunkwise(q, k, v1, c, chunkSize),
        };
        return num.Narrow(2, 0, dv) / num.Narrow(2, dv, 1);
    }

    // exp(-|c_i - c_j|) for [B, Ti] and [B, Tj] cumulative log-decays.
    static Tensor Mask(Tensor ci, Tensor cj) => (-(ci.Unsqueeze(2) - cj.Unsqueeze(1)).Abs()).Exp();

    static Tensor Full(Tensor q, Tensor k, Tensor v1, Tensor c) => (q.MatMul(k.T) * Mask(c, c)).MatMul(v1);

    static Tensor Row(Tensor x, int i) => x.Narrow(1, i, 1);

    // S^F_i = lambda_i S^F_{i-1} + k_i v_i^T, S^B_i = lambda_{i+1} S^B_{i+1} + k_i v_i^T; y_i = q_i (S^F_i + S^B_i) - (q_i . k_i) v_i.
    static Tensor Recurrences(Tensor q, Tensor k, Tensor v1, Tensor? logDecay)
    {
        int b = q.Shape[0], t = q.Shape[1], d = q.Shape[2], dv = v1.Shape[2];
        if (t == 0) return Tensor.Zeros(new Shape(b, 0, dv), q.DType, q.Device);
        Tensor Decayed(Tensor state, int i) => logDecay is null ? state : state * Row(logDecay, i).Exp().Unsqueeze(2);
        var fwd = new Tensor[t]; var bwd = new Tensor[t];
        var s = Tensor.Zeros(new Shape(b, d, dv), q.DType, q.Device);
        for (int i = 0; i < t; i++)
        {
            s = Decayed(s, i) + Row(k, i).T.MatMul(Row(v1, i));
            fwd[i] = Row(q, i).MatMul(s);
        }
        s = Tensor.Zeros(new Shape(b, d, dv), q.DType, q.Device);
        for (int i = t - 1; i >= 0; i--)
        {
            s = (i + 1 < t ? Decayed(s, i + 1) : s) + Row(k, i).T.MatMul(Row(v1, i));
            bwd[i] = Row(q, i).MatMul(s);
        }
        var diag = (q * k).Sum(2, keepDim: true) * v1;
        return Tensor.Concat(fwd, 1) + Tensor.Concat(bwd, 1) - diag;
    }

    // Inside a chunk the full form; across chunks a forward state (earlier tokens j, weighted exp(c_end - c_j)) and a
    // backward state (later tokens, exp(c_j - c_start)), each decayed to its chunk boundary, so no factor exceeds 1.
    static Tensor Chunkwise(Tensor q, Tensor k, Tensor v1, Tensor c, int size)
    {
        int b = q.Shape[0], t = q.Shape[1], d = q.Shape[2], dv = v1.Shape[2];
        if (t == 0) return Tensor.Zeros(new Shape(b, 0, dv), q.DType, q.Device);
        var starts = Enumerable.Range(0, (t + size - 1) / size).Select(a => a * size).ToArray();
        int Len(int a) => Math.Min(size, t - starts[a]);
        Tensor Part(Tensor x, int a) => x.Narrow(1, starts[a], Len(a));
        Tensor At(int i) => c.Narrow(1, i, 1);
        Tensor Scale(Tensor logw) => logw.Exp().Unsqueeze(2);
        var outs = starts.Select((_, a) => Full(Part(q, a), Part(k, a), Part(v1, a), Part(c, a))).ToArray();
        var state = Tensor.Zeros(new Shape(b, d, dv), q.DType, q.Device);
        for (int a = 0; a < starts.Length; a++)
        {
            var (ca, end) = (Part(c, a), At(starts[a] + Len(a) - 1));
            if (a > 0)
            {
                var prev = At(starts[a] - 1);
                outs[a] = outs[a] + Scale(ca - prev) * Part(q, a).MatMul(state);
                state = state * Scale(end - prev);
            }
            state = state + (Scale(end - ca) * Part(k, a)).T.MatMul(Part(v1, a));
        }
        state = Tensor.Zeros(new Shape(b, d, dv), q.DType, q.Device);
        for (int a = starts.Length - 1; a >= 0; a--)
        {
            var (ca, start) = (Part(c, a), At(starts[a]));
            if (a + 1 < starts.Length)
            {
                var next = At(starts[a + 1]);
                outs[a] = outs[a] + Scale(next - ca) * Part(q, a).MatMul(state);
                state = state * Scale(next - start);
            }
            state = state + (Scale(ca - start) * Part(k, a)).T.MatMul(Part(v1, a));
        }
        return Tensor.Concat(outs, 1);
    }
}
