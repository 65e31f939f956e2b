using Kiln.IO;

namespace Kiln.NN.Decoder;

/// <summary>
/// A decoder-only pre-norm transformer (Llama, Mistral, Qwen2, Qwen3, Qwen3-MoE, DeepSeek-V3/Moonlight) as a functional
/// forward over a dictionary of Hugging Face-named weights, with a KV cache. The residual stream, norms and attention
/// run in Float32 (Float64 when the weights are float64, for references). Half-precision (BFloat16, Float16) linear
/// weights stay in their dtype for inference, so a bf16 checkpoint is not converted first (it holds half the memory):
/// each product widens the weight to Float32, exactly, so the logits equal those of the widened weights bit for bit;
/// the embedding and norm weights are widened to Float32 at load. A forward may hand its layer stack to an
/// <see cref="IStackRunner"/> (such as a loop over a window of layers); the runner reuses the layer objects, so a forward
/// without one is always the plain model.
/// </summary>
public sealed partial class DecoderModel
{
    readonly DecoderLayer[] _layers;
    readonly Tensor _embed, _norm, _head;
    readonly ITensorParallel? _tp;
    // An inference model (not trainable, not sharded) keeps the projections that read the same input stacked in one
    // weight: q, k and v's, and the MLP's gate and up. A decoding step then makes one product of each stack (one op's
    // overhead, one pass over the input) whose columns are the separate products' (to float32 rounding: a column's
    // summation order can depend on where it sits in the stack).
    readonly bool _stacked;

    /// <summary>Builds the model from <paramref name="weights"/> (names as in Hugging Face checkpoints).</summary>
    /// <param name="config">The architecture.</param>
    /// <param name="weights">Tensors by name: model.embed_tokens.weight, model.layers.N.*, model.norm.weight, lm_head.weight (unless tied).</param>
    /// <param name="trainable">Keep the given tensors as the parameters (linear layers use transposed views, so gradients
    /// reach the weights); otherwise they are copied in the model's dtype for inference (half linear weights stay half).</param>
    /// <param name="tensorParallel">Run as one rank of a tensor-parallel group: <paramref name="weights"/> hold this rank's
    /// shards (<see cref="DecoderWeights.Shard(DecoderConfig, IReadOnlyDictionary{string, Tensor}, int, int)"/>): its heads of the attention projections and its slice of the MLP's inner
    /// width, column-parallel in and row-parallel out, with one all-reduce after each attention and MLP block; the
    /// embedding, norms and head are replicated. Null runs the whole model here.</param>
    /// <exception cref="InvalidDataException">A tensor is missing (the message names it) or has the wrong shape.</exception>
    /// <exception cref="NotSupportedException">Tensor parallelism of an MLA or MoE model.</exception>
    /// <exception cref="ArgumentException">The heads, KV heads or MLP width do not divide by the tensor-parallel world size.</exception>
    public DecoderModel(DecoderConfig config, IReadOnlyDictionary<string, Tensor> weights, bool trainable = false, ITensorParallel? tensorParallel = null)
    {
        ArgumentNullException.ThrowIfNull(config); ArgumentNullException.ThrowIfNull(weights);
        config.Validate();
        Config = config;
        if (tensorParallel is not null) DecoderWeights.CheckShardable(config, tensorParallel.WorldSize);
        _tp = tensorParallel;
        _stacked = !trainable && tensorParallel is null;
        var dtype = weights.TryGetValue("model.embed_tokens.weight", out var e) && e.DType == DType.Float64 ? DType.Float64 : DType.Float32;
        DType = dtype;
        WeightDType = dtype;
        Tensor Stored(string name, int[] shape)
        {
            if (!weights.TryGetValue(name, out var t)) throw new InvalidDataException($"checkpoint: missing tensor '{name}' (shape [{string.Join(", ", shape)}])");
            // Compared extent by extent: a config's shape need not fit a Shape (vocab_size * hidden_size past 2^31).
            if (!t.Shape.ToArray().AsSpan().SequenceEqual(shape)) throw new InvalidDataException($"checkpoint: tensor '{name}' has shape {t.Shape}, expected [{string.Join(", ", shape)}]");
            return t;
        }
        Tensor W(string name, params int[] shape) => trainable ? Stored(name, shape) : Stored(name, shape).To(dtype);
        Tensor Linear(string name, int outDim, int inDim)
        {
            var w = Stored(name, [outDim, inDim]);
            // Weights stay [out, in] and are transposed at use (Lin): a trainable forward records its own transpose, and
            // a decoding step's skinny product streams the weight in that layout, its fastest.
            if (trainable) return w;
            // Half weights stay half for inference: the product reads half the bytes.
            if (w.DType.IsHalf() && dtype == DType.Float32) { WeightDType = w.DType; return w.Contiguous(); }
            return w.To(dtype).Contiguous();
        }
        var c = config;
        int d = c.HiddenSize;
        // A half embedding stays half for inference, its rows widened as they are looked up: a tied head then streams
        // half the bytes on every token (the kernels widen a half weight in registers, to the bits of its float32 copy).
        var embed = Stored("model.embed_tokens.weight", [c.VocabSize, d]);
        _embed = trainable ? embed : embed.DType.IsHalf() && dtype == DType.Float32 ? embed.Contiguous() : embed.To(dtype);
        _norm = W("model.norm.weight", d);
        _head = c.TieWordEmbeddings ? _embed : Linear("lm_head.weight", c.VocabSize, d);
        // A tiny config.json can claim any layer count: the last layer must exist before the layer array is allocated.
        W($"model.layers.{c.Layers - 1}.input_layernorm.weight", d);
        _layers = new DecoderLayer[c.Layers];
        for (int i = 0; i < c.Layers; i++)
        {
            string p = $"model.layers.{i}.";
            var inNorm = W(p + "input_layernorm.weight", d);
            var gqa = c.Mla is null ? new GqaAttention(this, i, p + "self_attn.", W, Linear) : null;
            Func<Tensor, SequenceContext, bool, Tensor> attention = gqa is not null ? gqa.Forward : new MlaAttention(this, i, c.Mla!, p + "self_attn.", W, Linear).Forward;
            var postNorm = W(p + "post_attention_layernorm.weight", d);
            var dense = c.IsMoeLayer(i) ? null : SwiGlu(p + "mlp.", c.IntermediateSize, Linear);
            Func<Tensor, Tensor> mlp = dense is not null ? dense.Forward : new MoeMlp(this, c.Moe!, p + "mlp.", W, Linear).Forward;
            var step = _stacked && gqa is not null && dense is not null ? new LayerStep(c, i, inNorm, postNorm, gqa, dense) : null;
            _layers[i] = new DecoderLayer(c.RmsNormEps, inNorm, postNorm, attention, mlp, step);
        }
    }

    /// <summary>
    /// Loads the checkpoint in Hugging Face layout in <paramref name="dir"/> (see <see cref="HfCheckpoint"/>) onto
    /// <paramref name="device"/> (default the CPU); with <paramref name="tensorParallel"/>,
    /// only this rank's shards: each tensor is read from the memory-mapped files and sliced at once, so a rank's memory
    /// holds its shards plus one full tensor at a time.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">config.json or the weights are missing.</exception>
    /// <exception cref="NotSupportedException">The architecture is not supported, or not under tensor parallelism (the message names it).</exception>
    /// <exception cref="InvalidDataException">A file is malformed or a tensor is missing (the message names it).</exception>
    public static DecoderModel Load(string dir, Device? device = null, ITensorParallel? tensorParallel = null)
    {
        var config = DecoderConfig.FromJson(HfCheckpoint.ReadConfig(dir));
        IReadOnlyDictionary<string, Tensor> weights;
        if (tensorParallel is null) weights = HfCheckpoint.ReadWeights(dir);
        else
        {
            DecoderWeights.CheckShardable(config, tensorParallel.WorldSize);
            var shards = new Dictionary<string, Tensor>();
            foreach (var file in HfCheckpoint.WeightFiles(dir))
            {
                using var f = SafetensorsFile.Open(file);
                foreach (var name in f.Names)
                    shards[name] = DecoderWeights.Shard(config, name, f.Get(name), tensorParallel.Rank, tensorParallel.WorldSize);
            }
            weights = shards;
        }
        if (device is { } d && d != Device.Cpu) weights = weights.ToDictionary(kv => kv.Key, kv => kv.Value.To(d));
        return new(config, weights, tensorParallel: tensorParallel);
    }

    // Grouped-query attention (llama, qwen2, qwen3 and qwen3_moe), with optional q/k/v biases and per-head q/k norms.
    sealed class GqaAttention
    {
        readonly DecoderModel _m;
        readonly int _index;
        // Under tensor parallelism this rank holds heads / W query heads and kv heads / W key-value heads.
        public readonly int Heads, KvHeads, HeadDim;
        // An inference model keeps only the stacks of q, k and v's weights and biases (Wqkv, Bqkv), others the separate ones.
        public readonly Tensor Wo;
        public readonly Tensor? Wq, Wk, Wv, Bq, Bk, Bv, QNorm, KNorm, Wqkv, Bqkv;

        public GqaAttention(DecoderModel m, int index, string p, Func<string, int[], Tensor> weight, Func<string, int, int, Tensor> linear)
        {
            _m = m; _index = index;
            var c = m.Config;
            int w = m._tp?.WorldSize ?? 1, d = c.HiddenSize;
            (Heads, KvHeads, HeadDim) = (c.Heads / w, c.KvHeads / w, c.HeadDim);
            int qd = Heads * HeadDim, kvd = KvHeads * HeadDim;
            Tensor wq = linear(p + "q_proj.weight", qd, d), wk = linear(p + "k_proj.weight", kvd, d), wv = linear(p + "v_proj.weight", kvd, d);
            Wo = linear(p + "o_proj.weight", d, qd);
            Tensor? bq = c.AttentionBias ? weight(p + "q_proj.bias", [qd]) : null, bk = c.AttentionBias ? weight(p + "k_proj.bias", [kvd]) : null,
                bv = c.AttentionBias ? weight(p + "v_proj.bias", [kvd]) : null;
            if (c.QkNorm) (QNorm, KNorm) = (weight(p + "q_norm.weight", [HeadDim]), weight(p + "k_norm.weight", [HeadDim]));
            if (m._stacked) (Wqkv, Bqkv) = (Stack(wq, wk, wv), c.AttentionBias ? Stack(bq!, bk!, bv!) : null);
            else (Wq, Wk, Wv, Bq, Bk, Bv) = (wq, wk, wv, bq, bk, bv);
        }

        public Tensor Forward(Tensor h, SequenceContext ctx, bool write)
        {
            var (m, c) = (_m, _m.Config);
            int b = h.Shape[0], t = h.Shape[1], heads = Heads, kvHeads = KvHeads, hd = HeadDim, qd = heads * hd, kvd = kvHeads * hd;
            var st = (StepState)ctx.State!;
            if (m._tp is not null) h = m._tp.CopyToShards(h);
            Tensor q, k, v;
            if (Wqkv is not null)
            {
                var qkv = m.Lin(h, Wqkv, Bqkv);
                (q, k, v) = (qkv.Narrow(-1, 0, qd), qkv.Narrow(-1, qd, kvd), qkv.Narrow(-1, qd + kvd, kvd));
            }
            else (q, k, v) = (m.Lin(h, Wq!, Bq), m.Lin(h, Wk!, Bk), m.Lin(h, Wv!, Bv));
            q = q.Reshape(b, t, heads, hd);
            k = k.Reshape(b, t, kvHeads, hd);
            v = v.Reshape(b, t, kvHeads, hd).Permute(0, 2, 1, 3);
            // The per-head norm gains are replicated but each rank applies them to its own heads: f sums their gradients.
            if (QNorm is not null) q = q.RmsNorm(m._tp is null ? QNorm : m._tp.CopyToShards(QNorm), c.RmsNormEps);
            if (KNorm is not null) k = k.RmsNorm(m._tp is null ? KNorm : m._tp.CopyToShards(KNorm), c.RmsNormEps);
            q = Rope.Apply(q.Permute(0, 2, 1, 3), st.Cos, st.Sin);
            k = Rope.Apply(k.Permute(0, 2, 1, 3), st.Cos, st.Sin);
            var o = m.Lin(m.Attend(_index, q, k, v, ctx, write, 1.0 / Math.Sqrt(hd)), Wo, null);
            return m._tp is null ? o : m._tp.ReduceFromShards(o);
        }
    }

    // Weights stacked along the output dim: an inference model's own copy, outside autodiff.
    static Tensor Stack(params Tensor[] weights)
    {
        using var _ = Autograd.NoGrad();
        return Tensor.Concat(weights);
    }

    SwiGluMlp SwiGlu(string p, int inner, Func<string, int, int, Tensor> linear) => new(this, p, inner, linear);

    // The gated MLP down(silu(gate(h)) * up(h)); an inference model's gate and up weights stacked in one product.
    sealed class SwiGluMlp
    {
        readonly DecoderModel _m;
        public readonly int Inner;
        // An inference model keeps only the stack of the gate and up weights (WGateUp), others the separate ones.
        public readonly Tensor WDown;
        public readonly Tensor? WGate, WUp, WGateUp;

        public SwiGluMlp(DecoderModel m, string p, int inner, Func<string, int, int, Tensor> linear)
        {
            _m = m;
            int d = m.Config.HiddenSize;
            if (m._tp is not null) inner /= m._tp.WorldSize;
            Inner = inner;
            Tensor gate = linear(p + "gate_proj.weight", inner, d), up = linear(p + "up_proj.weight", inner, d);
            WDown = linear(p + "down_proj.weight", d, inner);
            if (m._stacked) WGateUp = Stack(gate, up);
            else (WGate, WUp) = (gate, up);
        }

        public Tensor Forward(Tensor h)
        {
            var m = _m;
            if (WGateUp is not null)
            {
                var gateUp = m.Lin(h, WGateUp, null);
                return m.Lin(gateUp.Narrow(-1, 0, Inner).Silu() * gateUp.Narrow(-1, Inner, Inner), WDown, null);
            }
            if (m._tp is not { } tp) return m.Lin(m.Lin(h, WGate!, null).Silu() * m.Lin(h, WUp!, null), WDown, null);
            h = tp.CopyToShards(h);
            return tp.ReduceFromShards(m.Lin(m.Lin(h, WGate!, null).Silu() * m.Lin(h, WUp!, null), WDown, null));
        }
    }

    // Causal attention of this call's queries q [b, heads, t, qk dim] over the committed cache of layer `index` plus this
    // call's keys k [b, kv heads, t, qk dim] and values v [b, kv heads, t, v dim] (stashed when `write`); returns [b, t, heads * v dim].
    Tensor Attend(int index, Tensor q, Tensor k, Tensor v, SequenceContext ctx, bool write, double scale)
    {
        int b = q.Shape[0], heads = q.Shape[1], t = q.Shape[2], kvHeads = k.Shape[1], vd = v.Shape[3];
        int past = ctx.Cache?.Length(index) ?? 0;
        var (keys, values) = ctx.Cache?.Extend(index, k, v, write) ?? (k, v);
        if (t == 1 && !Autograd.IsEnabled)
        {
            // A decoding step: one query per head sees every key, so the query heads of a group are the rows of one
            // fused attention over their shared key head (no score tensor, no mask, no copy of the keys per head).
            var rows = q.Reshape(b, kvHeads, heads / kvHeads, q.Shape[3]);
            return Tensor.ScaledDotProductAttention(rows, keys, values, scale: scale).Reshape(b, 1, heads * vd);
        }
        // Grouped-query attention without copying keys: the query heads of a group share a broadcast key head.
        var qg = q.Reshape(b, kvHeads, heads / kvHeads, t, q.Shape[3]);
        var scores = qg.MatMul(keys.Unsqueeze(2).Transpose(-2, -1)) * scale;
        if (t > 1) scores += CausalMask(t, past, DType, q.Device);
        return scores.Softmax(-1).MatMul(values.Unsqueeze(2)).Reshape(b, heads, t, vd).Permute(0, 2, 1, 3).Reshape(b, t, heads * vd);
    }

    /// <summary>The architecture.</summary>
    public DecoderConfig Config { get; }
    /// <summary>The device the weights live on; token ids given on the host are moved there.</summary>
    public Device Device => _embed.Device;
    /// <summary>The compute dtype (Float32, or Float64 when the weights are float64).</summary>
    public DType DType { get; }
    /// <summary>The dtype the linear weights are kept in: a half checkpoint's BFloat16 or Float16 for inference, else <see cref="DType"/>.</summary>
    public DType WeightDType { get; private set; }
    /// <summary>The layer stack, in order (the objects an <see cref="IStackRunner"/> reuses).</summary>
    public IReadOnlyList<ILayer> Layers => _layers;

    /// <summary>An empty KV cache for this model.</summary>
    public KvCache NewCache() => new(Config.Layers);

    /// <summary>Final-normed hidden states [batch, positions, hidden] of <paramref name="ids"/> ([batch, positions] or [positions], Int64).</summary>
    /// <param name="ids">Token ids.</param>
    /// <param name="cache">Cache to read past positions from and append this call's entries to, or null.</param>
    /// <param name="runner">Runs the layer stack (a loop, for instance), or null to run each layer once.</param>
    /// <exception cref="ArgumentException">ids is not Int64 of rank 1 or 2, or an id is outside the vocabulary.</exception>
    public Tensor Hidden(Tensor ids, KvCache? cache = null, IStackRunner? runner = null) => HiddenFrom(ids, cache, runner, null, null);

    // `rope`: cos and sin tables from position 0 that a caller made once for many calls (Generate), or null; `buffers`:
    // the caller's buffers for one-token steps through the layers that have a LayerStep, or null.
    Tensor HiddenFrom(Tensor ids, KvCache? cache, IStackRunner? runner, (Tensor Cos, Tensor Sin)? rope, StepBuffers? buffers)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.DType != DType.Int64 || ids.Rank is < 1 or > 2)
            throw new ArgumentException($"decoder: ids must be Int64 of shape [positions] or [batch, positions], got {ids.DType} {ids.Shape}", nameof(ids));
        if (ids.Rank == 1) ids = ids.Unsqueeze(0);
        int b = ids.Shape[0], t = ids.Shape[1];
        CheckCache(cache);
        if (ids.Numel > 0) CheckIds(IdRange(ids));
        var x = _embed.IndexSelect(0, ids.Reshape(-1)).Reshape(b, t, Config.HiddenSize).To(DType);
        return Stack(x, cache, runner, rope, b == 1 && t == 1 ? buffers : null).RmsNorm(_norm, Config.RmsNormEps);
    }

    // The layer stack on embedded tokens x [batch, positions, hidden] that follow the cache's positions, then the cache
    // committed; before the final norm.
    Tensor Stack(Tensor x, KvCache? cache, IStackRunner? runner, (Tensor Cos, Tensor Sin)? rope, StepBuffers? buffers)
    {
        int pos = cache?.Position ?? 0, t = x.Shape[1];
        var (cos, sin) = rope is { } r && pos + t <= r.Cos.Shape[0] ? (r.Cos.Narrow(0, pos, t), r.Sin.Narrow(0, pos, t)) : RopeTables(pos, t);
        var ctx = new SequenceContext(pos, cache, new StepState(cos, sin, buffers, runner is null));
        if (runner is not null) x = runner.Run(this, x, ctx);
        else foreach (var layer in _layers) x = layer.Forward(x, ctx, true);
        cache?.Commit(t);
        return x;
    }

    void CheckCache(KvCache? cache)
    {
        if (cache is not null && cache.Layers != Config.Layers)
            throw new ArgumentException($"decoder: the cache has {cache.Layers} layers, the model {Config.Layers}", nameof(cache));
    }

    void CheckIds((double Lo, double Hi) range)
    {
        if (range.Lo < 0 || range.Hi >= Config.VocabSize)
            throw new ArgumentException($"decoder: token ids must lie in [0, {Config.VocabSize}), got values in [{range.Lo}, {range.Hi}]", "ids");
    }

    // The smallest and largest id: read in place on the host (a decoding step's one id), else by two reductions.
    static (double Lo, double Hi) IdRange(Tensor ids)
    {
        if (ids.Device != Device.Cpu) return (ids.Min().Item(), ids.Max().Item());
        var c = ids.Contiguous();
        var v = ((CpuStorage)c.Storage).As<long>().AsSpan(c.Layout.Offset, c.Numel);
        return (System.Numerics.Tensors.TensorPrimitives.Min<long>(v), System.Numerics.Tensors.TensorPrimitives.Max<long>(v));
    }

    (Tensor Cos, Tensor Sin) RopeTables(int start, int count) =>
        Rope.Tables(Config.RotaryDim, Config.RopeTheta, Config.RopeScaling, Config.MaxPositions, start, count, DType, _embed.Device);

    /// <summary>Logits over the vocabulary of hidden states from <see cref="Hidden"/>: [..., hidden] -> [..., vocab].</summary>
    public Tensor Project(Tensor hidden) => Lin(hidden, _head, null);

    /// <summary>
    /// Continues <paramref name="prompt"/> by up to <paramref name="maxNew"/> tokens with the KV cache: greedy when
    /// <paramref name="temperature"/> is 0, otherwise sampled from softmax(logits / temperature) with <paramref name="generator"/>.
    /// Stops early at <paramref name="stop"/>. <paramref name="runner"/>, if any, runs the stack of every call (the prompt
    /// call has <see cref="SequenceContext.Position"/> 0). Each step frees its temporaries when it ends (tensors a runner
    /// keeps from a step, such as <c>SteeringRunner.Capture</c>, with them): a decoding step makes a few hundred small
    /// tensors, which an enclosing scope would otherwise hold, and the collector trace, until the whole generation ends.
    /// </summary>
    /// <exception cref="ArgumentException">The prompt is empty.</exception>
    public int[] Generate(int[] prompt, int maxNew, IStackRunner? runner = null, double temperature = 0, Generator? generator = null, int? stop = null)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (prompt.Length == 0) throw new ArgumentException("generate: the prompt is empty", nameof(prompt));
        if (temperature < 0) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "generate: temperature must be non-negative");
        using var _ = Autograd.NoGrad();
        var cache = NewCache();
        var output = new List<int>();
        var next = prompt.Select(i => (long)i).ToArray();
        var uniform = generator ?? new Generator(0);
        // The rotary tables of the positions ahead, made once (each row is the one a step would make itself), unless
        // dynamic scaling makes them depend on the length so far; at most 8192 positions, past which steps make their own.
        var rope = Config.RopeScaling?.Type == "dynamic" ? ((Tensor, Tensor)?)null : RopeTables(0, (int)Math.Min(8192L, (long)prompt.Length + maxNew));
        using var buffers = NewStepBuffers();
        for (int n = 0; n < maxNew; n++)
        {
            double[] logits;
            using (var step = Tensor.Scope())
            {
                logits = NextLogits(next, cache, runner, rope, buffers);
                cache.KeepBuffers(step);
            }
            int token;
            if (temperature == 0) token = Array.IndexOf(logits, logits.Max());
            else
            {
                double mx = logits.Max(), z = 0;
                var p = logits.Select(l => Math.Exp((l - mx) / temperature)).ToArray();
                z = p.Sum();
                double u = Tensor.Rand([1], uniform, dtype: DType.Float64).Item() * z, acc = 0;
                token = p.Length - 1;
                for (int i = 0; i < p.Length; i++) { acc += p[i]; if (u < acc) { token = i; break; } }
            }
            output.Add(token);
            if (token == stop) break;
            next = [token];
        }
        return output.ToArray();
    }

    // The logits after the last of `ids` (one sequence), which extend `cache`; `rope` and `buffers` as HiddenFrom's.
    // With buffers, a one-token step also runs its embedding, final norm and head as backend calls on them (the calls
    // of IndexSelect, RmsNorm and Project, so the same bits).
    internal double[] NextLogits(long[] ids, KvCache cache, IStackRunner? runner, (Tensor Cos, Tensor Sin)? rope, StepBuffers? buffers)
    {
        if (buffers is null || ids.Length != 1)
        {
            var h = HiddenFrom(Tensor.FromArray(ids, new Shape(1, ids.Length)).To(Device), cache, runner, rope, buffers);
            return Project(h.Narrow(1, ids.Length - 1, 1).Reshape(-1)).ToDoubleArray();
        }
        int d = Config.HiddenSize;
        CheckIds((ids[0], ids[0]));
        CheckCache(cache);
        var be = Device.Backend;
        var row = Tensor.Empty([1, d], DType, Device);
        be.Copy(_embed.Narrow(0, (int)ids[0], 1), row);
        var x = Stack(row.Reshape(1, 1, d), cache, runner, rope, buffers);
        if (!buffers.TryEnter()) return Project(x.RmsNorm(_norm, Config.RmsNormEps).Reshape(-1)).ToDoubleArray();
        try
        {
            be.RmsNormRows(x.Contiguous(), _norm, Config.RmsNormEps, 1, d, buffers.Xn);
            be.Linear(buffers.Xn, _head, null, false, buffers.Logits);
            return buffers.Logits.ToDoubleArray();
        }
        finally { buffers.Exit(); }
    }

    // Buffers for the one-token steps of this model's layers, or null where no layer has one (a trainable, sharded, MLA or MoE model).
    internal StepBuffers? NewStepBuffers() => _layers.Any(l => l.HasStep) ? new StepBuffers(Config, DType, Device) : null;

    // x [..., in] times a linear weight stored [out, in], through the fused linear op (its bias in the product's
    // write-back). Float32 activations read a half weight as it is stored (the kernels widen it in registers, exactly);
    // a weight of another dtype is converted to x's first.
    Tensor Lin(Tensor x, Tensor w, Tensor? bias) =>
        Tensor.Linear(x, x.DType == w.DType || w.DType.IsHalf() && x.DType == DType.Float32 ? w : w.To(x.DType), bias);

    /// <summary>Logits [batch, positions, vocab] of <paramref name="ids"/>; see <see cref="Hidden"/> for the arguments.</summary>
    public Tensor Forward(Tensor ids, KvCache? cache = null, IStackRunner? runner = null) => Project(Hidden(ids, cache, runner));

    // `step`: the same layer as backend calls on a Generate's buffers, for one token of one sequence (null where the
    // layer is not a dense GQA + SwiGLU one of an inference model).
    sealed class DecoderLayer(double eps, Tensor inNorm, Tensor postNorm, Func<Tensor, SequenceContext, bool, Tensor> attention, Func<Tensor, Tensor> mlp,
        LayerStep? step) : ILayer
    {
        public bool HasStep => step is not null;

        public Tensor Forward(Tensor x, SequenceContext ctx, bool write)
        {
            if (step is not null && write && ctx is { State: StepState { Buffers: { } buffers } st, Cache: { } cache } && step.Takes(x)
                && !Autograd.IsEnabled && buffers.TryEnter())
                try { return step.Run(x, cache, st, buffers); }
                finally { buffers.Exit(); }
            x = x + attention(x.RmsNorm(inNorm, eps), ctx, write);
            return x + mlp(x.RmsNorm(postNorm, eps));
        }
    }

    // Additive mask [t, past + t]: query i sees every cached key and the new keys up to itself.
    static Tensor CausalMask(int t, int past, DType dtype, Device device)
    {
        var mask = new float[t * (past + t)];
        for (int i = 0; i < t; i++)
            for (int j = past + i + 1; j < past + t; j++) mask[i * (past + t) + j] = float.NegativeInfinity;
        return Tensor.FromArray(mask, new Shape(t, past + t)).To(dtype).To(device);
    }
}
