namespace Kiln.NN.Decoder;

public sealed partial class DecoderModel
{
    // DeepSeek's low-rank norms (q_a_layernorm, kv_a_layernorm) are built without the config's eps in Hugging Face's
    // modelling code, so they keep RMSNorm's default.
    const double LatentNormEps = 1e-6;

    /// <summary>
    /// Multi-head latent attention (DeepSeek-V2/V3, Moonlight). Queries come from q_proj or the q_a_proj, q_a_layernorm,
    /// q_b_proj bottleneck; kv_a_proj_with_mqa gives a latent (normed by kv_a_layernorm, expanded by kv_b_proj into per-head
    /// non-rotary keys and values) and one rotary key part shared by all heads. The cache holds the full per-head keys and
    /// values (simple and exact; the compressed latent would be smaller).
    /// </summary>
    sealed class MlaAttention
    {
        readonly DecoderModel _m;
        readonly int _index;
        readonly MlaConfig _a;
        readonly Tensor? _wq, _wqa, _qaNorm, _wqb;
        readonly Tensor _wkva, _kvaNorm, _wkvb, _wo;
        readonly double _scale;

        public MlaAttention(DecoderModel m, int index, MlaConfig a, string p, Func<string, int[], Tensor> w, Func<string, int, int, Tensor> linear)
        {
            _m = m; _index = index; _a = a;
            var c = m.Config;
            int d = c.HiddenSize, h = c.Heads;
            if (a.QLoraRank is { } r)
            {
                _wqa = linear(p + "q_a_proj.weight", r, d);
                _qaNorm = w(p + "q_a_layernorm.weight", [r]);
                _wqb = linear(p + "q_b_proj.weight", h * a.QkHeadDim, r);
            }
            else _wq = linear(p + "q_proj.weight", h * a.QkHeadDim, d);
            _wkva = linear(p + "kv_a_proj_with_mqa.weight", a.KvLoraRank + a.QkRopeHeadDim, d);
            _kvaNorm = w(p + "kv_a_layernorm.weight", [a.KvLoraRank]);
            _wkvb = linear(p + "kv_b_proj.weight", h * (a.QkNopeHeadDim + a.VHeadDim), a.KvLoraRank);
            _wo = linear(p + "o_proj.weight", d, h * a.VHeadDim);
            _scale = 1 / Math.Sqrt(a.QkHeadDim);
            // yarn with mscale_all_dim: the softmax temperature is corrected by mscale^2 (queries and keys each carry one mscale).
            if (c.RopeScaling is { MscaleAllDim: { } all } s && all != 0)
            {
                double ms = RopeScaling.YarnMscale(s.Factor, all);
                _scale *= ms * ms;
            }
        }

        public Tensor Forward(Tensor h, SequenceContext ctx, bool write)
        {
            var (m, a) = (_m, _a);
            int b = h.Shape[0], t = h.Shape[1], heads = m.Config.Heads, nope = a.QkNopeHeadDim, rope = a.QkRopeHeadDim, vd = a.VHeadDim;
            var st = (StepState)ctx.State!;
            var (cos, sin) = (st.Cos, st.Sin);
            var q = (_wq is not null ? m.Lin(h, _wq, null) : m.Lin(m.Lin(h, _wqa!, null).RmsNorm(_qaNorm!, LatentNormEps), _wqb!, null))
                .Reshape(b, t, heads, a.QkHeadDim).Permute(0, 2, 1, 3);
            var latent = m.Lin(h, _wkva, null);
            var kv = m.Lin(latent.Narrow(-1, 0, a.KvLoraRank).RmsNorm(_kvaNorm, LatentNormEps), _wkvb, null)
                .Reshape(b, t, heads, nope + vd).Permute(0, 2, 1, 3);
            var qRot = Rotate(q.Narrow(-1, nope, rope), cos, sin);
            var kRot = Rotate(latent.Narrow(-1, a.KvLoraRank, rope).Unsqueeze(1), cos, sin);
            var query = Tensor.Concat([q.Narrow(-1, 0, nope), qRot], 3);
            var key = Tensor.Concat([kv.Narrow(-1, 0, nope), kRot.Expand(b, heads, t, rope)], 3);
            return m.Lin(m.Attend(_index, query, key, kv.Narrow(-1, nope, vd), ctx, write, _scale), _wo, null);
        }

        // RoPE on [b, heads, t, rope dim]. Interleaved checkpoints store pairs (x0, x1), (x2, x3), ...; like Hugging Face's
        // apply_rotary_pos_emb_interleave they are first permuted to the half layout (x0, x2, ..., x1, x3, ...), so the
        // rotated parts of queries and keys (and the cached keys) are in the half layout.
        Tensor Rotate(Tensor x, Tensor cos, Tensor sin)
        {
            if (_a.RopeInterleave)
            {
                int r = x.Shape[3];
                x = x.Reshape(x.Shape[0], x.Shape[1], x.Shape[2], r / 2, 2).Transpose(-1, -2).Reshape(x.Shape[0], x.Shape[1], x.Shape[2], r);
            }
            return Rope.Apply(x, cos, sin);
        }
    }

    /// <summary>
    /// A mixture-of-experts MLP: a router picks <see cref="MoeConfig.ExpertsPerToken"/> experts per token (softmax top-k
    /// for Qwen3-MoE; sigmoid scores with a choice-only correction bias and grouped top-k for DeepSeek-V3), and the
    /// output is the gate-weighted sum of the chosen experts' SwiGLUs plus the shared experts'. Tokens are grouped by
    /// expert on the host, so each active expert runs one GEMM chain over its own rows; outputs are scatter-added back.
    /// </summary>
    sealed class MoeMlp
    {
        readonly DecoderModel _m;
        readonly MoeConfig _e;
        readonly Tensor _router;
        readonly Tensor? _bias;
        readonly Func<Tensor, Tensor>[] _experts;
        readonly Func<Tensor, Tensor>? _shared;

        public MoeMlp(DecoderModel m, MoeConfig e, string p, Func<string, int[], Tensor> w, Func<string, int, int, Tensor> linear)
        {
            _m = m; _e = e;
            _router = linear(p + "gate.weight", e.Experts, m.Config.HiddenSize);
            _bias = e.CorrectionBias ? w(p + "gate.e_score_correction_bias", [e.Experts]) : null;
            _experts = Enumerable.Range(0, e.Experts).Select(i => (Func<Tensor, Tensor>)m.SwiGlu($"{p}experts.{i}.", e.IntermediateSize, linear).Forward).ToArray();
            _shared = e.SharedExperts > 0 ? m.SwiGlu(p + "shared_experts.", e.IntermediateSize * e.SharedExperts, linear).Forward : null;
        }

        public Tensor Forward(Tensor h)
        {
            var shape = h.Shape.ToArray();
            int d = shape[^1], k = _e.ExpertsPerToken;
            var x = h.Reshape(-1, d);
            int n = x.Shape[0];
            if (n == 0) return h.ZerosLike();
            bool sigmoid = _e.ScoringFunc == "sigmoid";
            var logits = _m.Lin(x, _router, null);
            var scores = sigmoid ? logits.Sigmoid() : logits.Softmax(-1);
            var choice = _bias is null ? scores : scores + _bias;
            long[] chosen = Choose(choice.Detach().ToDoubleArray(), n);
            var gates = scores.Gather(1, Tensor.FromArray(chosen, new Shape(n, k)).To(x.Device));
            // DeepSeek adds 1e-20 to the denominator, Qwen3-MoE does not (both as in Hugging Face).
            if (_e.NormTopkProb) gates = sigmoid ? gates / (gates.Sum(-1, keepDim: true) + 1e-20) : gates / gates.Sum(-1, keepDim: true);
            if (_e.RoutedScalingFactor != 1) gates = gates * _e.RoutedScalingFactor;

            // Counting sort of the n*k (token, slot) pairs by expert; within an expert, tokens stay in order.
            var counts = new int[_e.Experts];
            foreach (long ex in chosen) counts[ex]++;
            var next = new int[_e.Experts];
            for (int i = 1; i < next.Length; i++) next[i] = next[i - 1] + counts[i - 1];
            var slots = new long[chosen.Length];
            for (int j = 0; j < chosen.Length; j++) slots[next[chosen[j]]++] = j;
            var tokens = slots.Select(j => j / k).ToArray();
            var tokenIdx = Tensor.FromArray(tokens).To(x.Device);
            var rows = x.IndexSelect(0, tokenIdx);
            var parts = new List<Tensor>();
            for (int ex = 0, off = 0; ex < _e.Experts; off += counts[ex], ex++)
                if (counts[ex] > 0) parts.Add(_experts[ex](rows.Narrow(0, off, counts[ex])));
            var weighted = Tensor.Concat([.. parts], 0) * gates.Reshape(-1).IndexSelect(0, Tensor.FromArray(slots).To(x.Device)).Unsqueeze(1);
            var scatter = tokenIdx.Unsqueeze(1).Expand(tokens.Length, d).Contiguous();
            var y = Tensor.Zeros(new Shape(n, d), weighted.DType, x.Device).ScatterAdd(0, scatter, weighted);
            if (_shared is not null) y += _shared(x);
            return y.Reshape(shape);
        }

        // The chosen experts of each token ([n * k], row-major), from the choice scores [n, experts]. With groups, only
        // experts of the topk_group groups with the largest sums of their two best scores are eligible (DeepSeek-V3's
        // noaux_tc; Hugging Face fills the other experts' scores with 0 rather than excluding them, which differs only when
        // an eligible biased score is negative). Ties go to the lower index.
        long[] Choose(double[] s, int n)
        {
            int experts = _e.Experts, k = _e.ExpertsPerToken, groups = _e.Groups, per = experts / groups;
            var chosen = new long[n * k];
            var excluded = new bool[experts];
            var groupScore = new double[groups];
            var taken = new bool[groups];
            for (int t = 0; t < n; t++)
            {
                var row = s.AsSpan(t * experts, experts);
                if (groups > 1 && _e.TopkGroups < groups)
                {
                    for (int g = 0; g < groups; g++)
                    {
                        double best = double.NegativeInfinity, second = double.NegativeInfinity;
                        foreach (double v in row.Slice(g * per, per))
                            if (v > best) (best, second) = (v, best);
                            else if (v > second) second = v;
                        groupScore[g] = best + second;
                    }
                    Array.Clear(taken);
                    for (int i = 0; i < _e.TopkGroups; i++) taken[ArgMax(groupScore, taken)] = true;
                    for (int ex = 0; ex < experts; ex++) excluded[ex] = !taken[ex / per];
                }
                else Array.Clear(excluded);
                for (int i = 0; i < k; i++)
                {
                    int best = ArgMax(row, excluded);
                    chosen[t * k + i] = best;
                    excluded[best] = true;
                }
            }
            return chosen;
        }

        static int ArgMax(ReadOnlySpan<double> v, bool[] excluded)
        {
            int best = -1;
            for (int i = 0; i < v.Length; i++)
                if (!excluded[i] && (best < 0 || v[i] > v[best])) best = i;
            return best;
        }
    }
}
