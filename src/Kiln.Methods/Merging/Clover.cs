using Kiln.NN.Decoder;

namespace Kiln.Methods.Merging;

/// <summary>
/// One attention head in CLOVER form: the SVDs of its merged query-key matrix M_qk = W_q^T W_k and value-output matrix
/// M_vo = W_v^T W_o^T (both [d_model, d_model], rank at most head_dim), truncated to head_dim directions. Attention logits
/// are x_i M_qk x_j^T and the head's contribution is a V-weighted x M_vo, so each head is fully described by these.
/// </summary>
/// <param name="QkU">Left singular vectors of M_qk [d_model, head_dim] (orthonormal columns: the new query directions).</param>
/// <param name="QkS">Singular values of M_qk [head_dim], descending.</param>
/// <param name="QkVh">Right singular vectors of M_qk [head_dim, d_model] (orthonormal rows: the new key directions).</param>
/// <param name="VoU">Left singular vectors of M_vo [d_model, head_dim] (the new value directions).</param>
/// <param name="VoS">Singular values of M_vo [head_dim], descending.</param>
/// <param name="VoVh">Right singular vectors of M_vo [head_dim, d_model] (the new output directions).</param>
public sealed record CloverHead(Tensor QkU, Tensor QkS, Tensor QkVh, Tensor VoU, Tensor VoS, Tensor VoVh);

/// <summary>
/// CLOVER: Constrained Learning with Orthonormal Vectors for Eliminating Redundancy (Meng et al., 2024). Per attention head
/// the products W_q^T W_k and W_v^T W_o^T are factored by SVD into orthonormal vectors and singular values; folding them
/// back (q rows = S u^T, k rows = v^T; v rows = u^T, o columns = S v) leaves logits and outputs unchanged, directions
/// with small singular values can be pruned (each removes one row of each factor: 2 * d_model weights), and fine-tuning
/// can train only the singular values. The query-key merge is exact only without a position encoding between the
/// projections (rotary, per-head norms); the value-output merge is always exact.
/// </summary>
public static class Clover
{
    /// <summary>
    /// Decomposes every head of the projections in checkpoint layout: q [heads * hd, d], k and v [heads * hd, d],
    /// o [d, heads * hd] (multi-head attention: as many key/value heads as query heads). Computed in float64.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not fit <paramref name="heads"/> heads of one width over one d_model.</exception>
    /// <exception cref="ArgumentOutOfRangeException">heads is not positive.</exception>
    public static IReadOnlyList<CloverHead> Decompose(Tensor q, Tensor k, Tensor v, Tensor o, int heads)
    {
        ArgumentNullException.ThrowIfNull(q); ArgumentNullException.ThrowIfNull(k); ArgumentNullException.ThrowIfNull(v); ArgumentNullException.ThrowIfNull(o);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(heads);
        if (q.Rank != 2 || q.Shape[0] % heads != 0)
            throw new ShapeMismatchException("clover", nameof(q), $"q has shape {q.Shape}; it must be [heads * head_dim, d_model] with {heads} heads");
        int hd = q.Shape[0] / heads, d = q.Shape[1];
        foreach (var (t, name) in new[] { (k, nameof(k)), (v, nameof(v)) })
            if (t.Shape != q.Shape) throw new ShapeMismatchException("clover", name, $"{name} has shape {t.Shape}; it must match q's {q.Shape} (one key/value head per query head)");
        if (o.Shape != new Shape(d, heads * hd)) throw new ShapeMismatchException("clover", nameof(o), $"o has shape {o.Shape}; it must be [{d}, {heads * hd}]");
        using var _ = Autograd.NoGrad();
        var result = new List<CloverHead>();
        for (int h = 0; h < heads; h++)
        {
            Tensor Rows(Tensor w) => w.Narrow(0, h * hd, hd).To(DType.Float64);
            var (qu, qs, qvh) = Truncated(Rows(q).T.MatMul(Rows(k)), hd);
            var (vu, vs, vvh) = Truncated(Rows(v).T.MatMul(o.Narrow(1, h * hd, hd).To(DType.Float64).T), hd);
            result.Add(new CloverHead(qu, qs, qvh, vu, vs, vvh));
        }
        return result;
    }

    static (Tensor U, Tensor S, Tensor Vh) Truncated(Tensor m, int r)
    {
        var (u, s, vh) = m.Svd();
        return (u.Narrow(1, 0, r).Contiguous(), s.Narrow(0, 0, r).Contiguous(), vh.Narrow(0, 0, r).Contiguous());
    }

    /// <summary>
    /// Folds heads back into projections in checkpoint layout (in <paramref name="dtype"/>): head h's q rows are
    /// diag(S_qk) U_qk^T, its k rows Vh_qk, its v rows U_vo^T and its o columns Vh_vo^T diag(S_vo). Directions at index
    /// &gt;= the kept rank of a head (<paramref name="qkRank"/>, <paramref name="voRank"/>; default all) are zeroed: pruned.
    /// </summary>
    /// <exception cref="ArgumentException">No heads, or a kept rank is outside 0..head_dim (the head is named).</exception>
    public static (Tensor Q, Tensor K, Tensor V, Tensor O) Fold(IReadOnlyList<CloverHead> heads, DType dtype = DType.Float32, IReadOnlyList<int>? qkRank = null, IReadOnlyList<int>? voRank = null)
    {
        ArgumentNullException.ThrowIfNull(heads);
        if (heads.Count == 0) throw new ArgumentException("clover fold: no heads", nameof(heads));
        int hd = heads[0].QkS.Shape[0];
        int Kept(IReadOnlyList<int>? r, int h, string name)
        {
            if (r is null) return hd;
            if (r.Count != heads.Count) throw new ArgumentException($"clover fold: {r.Count} ranks for {heads.Count} heads", name);
            if (r[h] < 0 || r[h] > hd) throw new ArgumentException($"clover fold: head {h} keeps rank {r[h]}, outside 0..{hd}", name);
            return r[h];
        }
        using var _ = Autograd.NoGrad();
        var qs = new List<Tensor>(); var ks = new List<Tensor>(); var vs = new List<Tensor>(); var os = new List<Tensor>();
        for (int h = 0; h < heads.Count; h++)
        {
            var c = heads[h];
            var qkMask = Keep(hd, Kept(qkRank, h, nameof(qkRank)));
            var voMask = Keep(hd, Kept(voRank, h, nameof(voRank)));
            qs.Add(c.QkU.T * (c.QkS * qkMask).Unsqueeze(1));
            ks.Add(c.QkVh * qkMask.Unsqueeze(1));
            vs.Add(c.VoU.T * voMask.Unsqueeze(1));
            os.Add((c.VoVh * (c.VoS * voMask).Unsqueeze(1)).T);
        }
        return (Tensor.Concat([.. qs], 0).To(dtype), Tensor.Concat([.. ks], 0).To(dtype), Tensor.Concat([.. vs], 0).To(dtype), Tensor.Concat([.. os], 1).To(dtype));
    }

    static Tensor Keep(int hd, int rank)
    {
        var m = new double[hd];
        for (int i = 0; i < rank; i++) m[i] = 1;
        return Tensor.FromArray(m);
    }

    /// <summary>The kept rank of each head: the number of its singular values above <paramref name="threshold"/> times the head's largest.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The threshold is not in [0, 1).</exception>
    public static int[] RanksAbove(IEnumerable<Tensor> singularValues, double threshold)
    {
        ArgumentNullException.ThrowIfNull(singularValues);
        if (!(threshold >= 0 && threshold < 1)) throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "clover: the relative threshold must lie in [0, 1)");
        return [.. singularValues.Select(s =>
        {
            var v = s.ToDoubleArray();
            double top = v.Length == 0 ? 0 : v[0];
            return v.Count(x => x > threshold * top && x > 0);
        })];
    }

    /// <summary>Weights a pruned model no longer needs: each removed direction drops one d_model-long row of each of its two factors.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A count is negative.</exception>
    public static long RemovedWeights(int dModel, int removedDirections)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(dModel); ArgumentOutOfRangeException.ThrowIfNegative(removedDirections);
        return 2L * dModel * removedDirections;
    }

    /// <summary>
    /// Applies the exact value-output half of CLOVER to every layer of a multi-head decoder checkpoint (its rotary queries
    /// and keys stay as they are): the returned weights have orthonormal value directions and give the same logits.
    /// </summary>
    /// <exception cref="NotSupportedException">The config uses grouped-query or latent attention, or attention biases (a value bias would need its own change of basis).</exception>
    public static Dictionary<string, Tensor> OrthogonalizeValueOutput(DecoderConfig config, IReadOnlyDictionary<string, Tensor> weights)
    {
        ArgumentNullException.ThrowIfNull(config); ArgumentNullException.ThrowIfNull(weights);
        if (config.Mla is not null || config.KvHeads != config.Heads || config.AttentionBias)
            throw new NotSupportedException($"clover: needs multi-head attention without biases (heads {config.Heads}, key/value heads {config.KvHeads}, MLA {config.Mla is not null}, biases {config.AttentionBias})");
        var result = weights.ToDictionary(kv => kv.Key, kv => kv.Value);
        for (int i = 0; i < config.Layers; i++)
        {
            string p = $"model.layers.{i}.self_attn.";
            var w = weights[p + "v_proj.weight"];
            var heads = Decompose(weights[p + "q_proj.weight"], weights[p + "k_proj.weight"], w, weights[p + "o_proj.weight"], config.Heads);
            var (_, _, v, o) = Fold(heads, w.DType);
            result[p + "v_proj.weight"] = v; result[p + "o_proj.weight"] = o;
        }
        return result;
    }
}
