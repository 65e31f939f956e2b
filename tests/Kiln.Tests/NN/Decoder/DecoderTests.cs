using Kiln.NN;
using Kiln.NN.Decoder;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests.NN.Decoder;

/// <summary>The decoder against a plain float64 forward written here, on tiny random checkpoints of each supported
/// architecture and RoPE scaling; the KV cache; checkpoint files.</summary>
public class DecoderTests
{
    public static DecoderConfig Tiny(string type, RopeScaling? scaling = null, bool tie = false, bool bias = false) => new()
    {
        ModelType = type, VocabSize = 11, HiddenSize = 16, IntermediateSize = 20, Layers = 4, Heads = 4, KvHeads = 2,
        HeadDim = type == "qwen3" ? 6 : 4, RmsNormEps = 1e-6, RopeTheta = 100, RopeScaling = scaling, MaxPositions = 4,
        TieWordEmbeddings = tie, AttentionBias = bias || type == "qwen2", QkNorm = type == "qwen3",
    };

    public static IEnumerable<object[]> Architectures()
    {
        yield return ["llama", Tiny("llama")];
        yield return ["llama linear rope", Tiny("llama", new RopeScaling("linear", Factor: 2))];
        yield return ["llama dynamic rope", Tiny("llama", new RopeScaling("dynamic", Factor: 3))];
        yield return ["llama3 rope", Tiny("llama", new RopeScaling("llama3", Factor: 8, OriginalMaxPositions: 40, LowFreqFactor: 1, HighFreqFactor: 4))];
        yield return ["yarn rope", Tiny("llama", new RopeScaling("yarn", Factor: 4, OriginalMaxPositions: 60))];
        yield return ["qwen2 (biases)", Tiny("qwen2")];
        yield return ["qwen3 (q/k norms, tied)", Tiny("qwen3", tie: true)];
    }

    internal static Dictionary<string, Tensor> Weights(DecoderConfig c, int seed, DType dtype) =>
        DecoderWeights.Init(c, new Generator((ulong)seed), std: 0.4, normJitter: 0.2, dtype: dtype);

    internal static readonly long[][] Seqs = [[1, 5, 2, 9, 3, 3, 7], [10, 0, 4, 4, 6, 8, 2]];

    internal static Tensor Ids(long[][] seqs) => Tensor.FromArray(seqs.SelectMany(s => s).ToArray(), new Shape(seqs.Length, seqs[0].Length));

    [Theory, MemberData(nameof(Architectures))]
    public void Float64_logits_match_the_reference(string name, DecoderConfig c)
    {
        var w = Weights(c, 1, DType.Float64);
        var model = new DecoderModel(c, w);
        var logits = model.Forward(Ids(Seqs));
        Assert.Equal(new Shape(2, 7, c.VocabSize), logits.Shape);
        var expected = Seqs.SelectMany(s => Reference.Logits(c, w, s)).ToArray();
        Close.Check(expected, logits.ToDoubleArray(), 1e-10, 1e-11, name);
    }

    [Theory, MemberData(nameof(Architectures))]
    public void Float32_logits_match_the_reference(string name, DecoderConfig c)
    {
        var w = Weights(c, 2, DType.Float32);
        var logits = new DecoderModel(c, w).Forward(Ids(Seqs));
        var expected = Seqs.SelectMany(s => Reference.Logits(c, w, s)).ToArray();
        Close.Check(expected, logits.ToDoubleArray(), 1e-4, 1e-5, name);
    }

    // The model runs through core ops only, so on any device: weights and ids moved there, the logits match the float64 reference.
    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Logits_on_every_device_match_the_reference(string device)
    {
        var dev = Devices.Parse(device);
        var c = Tiny("qwen3", tie: true);
        var w = Weights(c, 4, DType.Float32);
        var onDevice = new DecoderModel(c, w.ToDictionary(kv => kv.Key, kv => kv.Value.To(dev)));
        var logits = onDevice.Forward(Ids(Seqs).To(dev));
        Assert.Equal(dev, logits.Device);
        var expected = Seqs.SelectMany(s => Reference.Logits(c, w, s)).ToArray();
        Close.Check(expected, logits.To(Device.Cpu).ToDoubleArray(), 1e-4, 1e-5, device);
    }

    // Dynamic RoPE is left out: its base depends on the sequence length, so cached keys (rotated with the base of their
    // call) differ from a full forward's by design, in Hugging Face's implementation as here.
    public static IEnumerable<object[]> StaticRopeArchitectures() => Architectures().Where(a => !((string)a[0]).Contains("dynamic"));

    [Theory, MemberData(nameof(StaticRopeArchitectures))]
    public void Cached_decoding_matches_the_full_forward(string name, DecoderConfig c)
    {
        var model = new DecoderModel(c, Weights(c, 3, DType.Float64));
        var ids = Ids(Seqs);
        var full = model.Forward(ids).ToDoubleArray();
        var cache = model.NewCache();
        var parts = new List<double[]> { model.Forward(ids.Narrow(1, 0, 3), cache).ToDoubleArray() };
        for (int t = 3; t < 7; t++) parts.Add(model.Forward(ids.Narrow(1, t, 1), cache).ToDoubleArray());
        Assert.Equal(7, cache.Position);
        // Reassemble [batch, positions, vocab] from the chunks along positions.
        int v = c.VocabSize;
        var stitched = new double[full.Length];
        int[] starts = [0, 3, 4, 5, 6], lens = [3, 1, 1, 1, 1];
        for (int p = 0; p < parts.Count; p++)
            for (int b = 0; b < 2; b++)
                Array.Copy(parts[p], b * lens[p] * v, stitched, (b * 7 + starts[p]) * v, lens[p] * v);
        Close.Check(full, stitched, 1e-10, 1e-11, name);
    }

    [Fact]
    public void Cache_buffers_grow_in_place_and_clones_diverge_without_touching_each_other()
    {
        var c = Tiny("qwen3");
        var model = new DecoderModel(c, Weights(c, 6, DType.Float64));
        int v = c.VocabSize, n = 40;
        long[] seq = Enumerable.Range(0, n).Select(i => (long)((i * 7 + 3) % v)).ToArray();
        double[] Row(long[] s, int t) => model.Forward(Tensor.FromArray(s, new Shape(1, s.Length))).ToDoubleArray()[(t * v)..((t + 1) * v)];
        double[] Step(KvCache cache, long id) => model.Forward(Tensor.FromArray(new[] { id }, new Shape(1, 1)), cache).ToDoubleArray();
        var full = model.Forward(Tensor.FromArray(seq, new Shape(1, n))).ToDoubleArray();
        var cache = model.NewCache();
        model.Forward(Tensor.FromArray(seq[..2], new Shape(1, 2)), cache);
        // Past 16 positions the buffers grow (a copy of the committed entries into one of 34).
        for (int t = 2; t < 30; t++) Close.Check(full[(t * v)..((t + 1) * v)], Step(cache, seq[t]), 1e-10, 1e-11, $"position {t}");
        // Two clones write different tokens into what was one buffer (room left), in turns; each sees only its own.
        var (a, b) = (cache.Clone(), cache.Clone());
        long[] other = [.. seq[..30], (seq[30] + 1) % v, seq[31]];
        Step(a, seq[30]); Step(b, other[30]);
        Close.Check(full[(31 * v)..(32 * v)], Step(a, seq[31]), 1e-10, 1e-11, "clone a");
        Close.Check(Row(other, 31), Step(b, other[31]), 1e-10, 1e-11, "clone b");
        // The original, untouched by both, goes on from position 30.
        Close.Check(full[(30 * v)..(31 * v)], Step(cache, seq[30]), 1e-10, 1e-11, "original");
        Assert.Equal((32, 32, 31), (a.Position, b.Position, cache.Position));
    }

    [Fact]
    public void Cache_entries_that_do_not_match_the_cached_ones_are_named()
    {
        var cache = new KvCache(2);
        var k = Tensor.Zeros([1, 2, 3, 4]);
        cache.Stash(0, k, k);
        cache.Commit(3);
        // Another head count, width or dtype would otherwise broadcast into (or beside) the cached entries.
        Assert.Equal("keys", Assert.Throws<ArgumentException>(() => cache.Stash(0, Tensor.Zeros([1, 1, 1, 4]), Tensor.Zeros([1, 1, 1, 4]))).ParamName);
        Assert.Equal("values", Assert.Throws<ArgumentException>(() => cache.Stash(0, Tensor.Zeros([1, 2, 1, 4]), Tensor.Zeros([1, 2, 1, 5]))).ParamName);
        Assert.Equal("keys", Assert.Throws<ArgumentException>(() => cache.Stash(0, Tensor.Zeros([1, 2, 1, 4], DType.Float64), Tensor.Zeros([1, 2, 1, 4]))).ParamName);
        Assert.Equal("values", Assert.Throws<ArgumentException>(() => cache.Stash(1, k, Tensor.Zeros([1, 2, 2, 4]))).ParamName);
        Assert.Equal(3, cache.Length(0));
        Assert.Equal(0, cache.Length(1));
    }

    // An inference model multiplies by stacked q/k/v and gate/up weights; a trainable one by each weight alone. The
    // logits agree to float32 rounding (a column's summation order depends on its place in the matvec's groups of eight),
    // biases included; a slice taken at the wrong offset would be off by the logits' own size.
    [Theory]
    [InlineData("qwen3", false)]
    [InlineData("qwen2", true)]
    public void Stacked_inference_projections_give_the_separate_products(string type, bool bias)
    {
        var c = Tiny(type, bias: bias);
        var w = Weights(c, 6, DType.Float32);
        var ids = Tensor.FromArray(new long[] { 3, 1, 4, 1, 5 }, new Shape(1, 5));
        using var _ = Autograd.NoGrad();
        Close.Check(new DecoderModel(c, w, trainable: true).Forward(ids).ToDoubleArray(), new DecoderModel(c, w).Forward(ids).ToDoubleArray(),
            1e-5, 1e-5, $"{type} stacked vs separate");
    }

    // Runs each layer once, as the model does, but as a runner: the layer steps must then leave each output to the caller.
    sealed class EachLayerOnce : IStackRunner
    {
        public Tensor Run(DecoderModel model, Tensor x, SequenceContext ctx)
        {
            foreach (var layer in model.Layers) x = layer.Forward(x, ctx, true);
            return x;
        }
    }

    // Generate runs a one-token step of a dense inference layer as backend calls on reused buffers (DecoderModel.LayerStep);
    // its logits are those of the tensor-op layers bit for bit, step after step, with the cache growing past its first
    // buffer (16 positions), for float32, float64 and bf16 weights, with the model's own stack and under a runner.
    [Theory]
    [InlineData("llama", false, "Float32", false)]
    [InlineData("qwen2", true, "Float32", false)]
    [InlineData("qwen3", false, "Float32", false)]
    [InlineData("qwen3", false, "BFloat16", false)]
    [InlineData("llama", true, "Float64", false)]
    [InlineData("qwen3", false, "Float32", true)]
    public void Decoding_steps_give_the_logits_of_the_tensor_ops_bit_for_bit(string type, bool bias, string weights, bool runner)
    {
        var c = Tiny(type, bias: bias) with { MaxPositions = 64 };
        var model = new DecoderModel(c, Weights(c, 8, Enum.Parse<DType>(weights)));
        using var _ = Autograd.NoGrad();
        using var buffers = model.NewStepBuffers();
        Assert.NotNull(buffers);
        var (ops, steps) = (model.NewCache(), model.NewCache());
        var run = runner ? new EachLayerOnce() : null;
        long[] prompt = [3, 1, 4];
        Assert.Equal(model.NextLogits(prompt, ops, null, null, null), model.NextLogits(prompt, steps, run, null, buffers));
        long next = 2;
        for (int i = 0; i < 20; i++)
        {
            var expected = model.NextLogits([next], ops, null, null, null);
            var actual = model.NextLogits([next], steps, run, null, buffers);
            Assert.Equal(expected.Select(BitConverter.DoubleToInt64Bits), actual.Select(BitConverter.DoubleToInt64Bits));
            next = Array.IndexOf(expected, expected.Max());
        }
        // Every one-token call ran each layer and the head on the buffers.
        Assert.Equal(20 * (c.Layers + 1), buffers!.Taken);
        Assert.Equal(ops.Position, steps.Position);
        Assert.Equal(ops.Length(0), steps.Length(0));
    }

    // A one-token prompt takes the step path from the first call: an id outside the vocabulary is named there too.
    [Fact]
    public void Generate_names_an_out_of_vocabulary_one_token_prompt()
    {
        var model = Qwen3();
        var e = Assert.Throws<ArgumentException>("ids", () => model.Generate([11], 3));
        Assert.Contains("[0, 11)", e.Message);
        Assert.Throws<ArgumentException>("ids", () => model.Generate([-1], 3));
    }

    // A trainable model has no steps (its weights are not stacked, and gradients need the recorded ops).
    [Fact]
    public void Trainable_models_have_no_decoding_steps() =>
        Assert.Null(new DecoderModel(Tiny("llama"), Weights(Tiny("llama"), 8, DType.Float32), trainable: true).NewStepBuffers());

    internal static DecoderModel Qwen3(int seed = 4) { var c = Tiny("qwen3"); return new DecoderModel(c, Weights(c, seed, DType.Float32)); }

    [Fact]
    public void Right_padded_batches_score_each_sequence_as_alone()
    {
        var model = Qwen3();
        var alone = model.Forward(Tensor.FromArray(new long[] { 1, 5, 2 }, new Shape(1, 3))).ToArray<float>();
        var batch = model.Forward(Tensor.FromArray(new long[] { 1, 5, 2, 0, 0, 3, 4, 5, 6, 7 }, new Shape(2, 5)), null);
        Close.Check(alone.Select(x => (double)x).ToArray(), batch.Narrow(0, 0, 1).Narrow(1, 0, 3).ToDoubleArray(), 1e-5, 1e-6, "padded row");
    }

    [Fact]
    public void Bad_checkpoints_and_inputs_are_named()
    {
        var c = Tiny("qwen3");
        var w = Weights(c, 5, DType.Float32);
        w.Remove("model.layers.2.mlp.up_proj.weight");
        var e = Assert.Throws<InvalidDataException>(() => new DecoderModel(c, w));
        Assert.Contains("model.layers.2.mlp.up_proj.weight", e.Message);
        w = Weights(c, 5, DType.Float32);
        w["model.norm.weight"] = Tensor.Ones([3]);
        Assert.Contains("model.norm.weight", Assert.Throws<InvalidDataException>(() => new DecoderModel(c, w)).Message);
        var ns = Assert.Throws<NotSupportedException>(() => DecoderConfig.FromJson("""{"model_type": "gpt_neox", "hidden_size": 8}"""));
        Assert.Contains("gpt_neox", ns.Message);
        Assert.Throws<InvalidDataException>(() => DecoderConfig.FromJson("{not json"));
        Assert.Contains("num_hidden_layers", Assert.Throws<InvalidDataException>(() => DecoderConfig.FromJson(
            """{"model_type": "llama", "hidden_size": 8, "num_attention_heads": 2, "vocab_size": 5, "intermediate_size": 4}""")).Message);
        var model = Qwen3();
        Assert.Throws<ArgumentException>("ids", () => model.Forward(Tensor.FromArray(new long[] { 3, 11 })));
        Assert.Throws<ArgumentException>("ids", () => model.Forward(Tensor.FromArray(new float[] { 3, 1 })));
    }

    [Fact]
    public void Config_round_trips_through_json()
    {
        var c = Tiny("llama", new RopeScaling("llama3", Factor: 8, OriginalMaxPositions: 40, LowFreqFactor: 1, HighFreqFactor: 4), tie: true);
        Assert.Equal(c, DecoderConfig.FromJson(c.ToJson()));
        var q = Tiny("qwen3");
        Assert.Equal(q, DecoderConfig.FromJson(q.ToJson()));
    }

    /// <summary>The forward in float64 with plain loops, written from the Hugging Face modelling code.</summary>
    static class Reference
    {
        public static IEnumerable<double> Logits(DecoderConfig c, Dictionary<string, Tensor> w, long[] ids)
        {
            double[] W(string n) => w[n].ToDoubleArray();
            int T = ids.Length, D = c.HiddenSize, hd = c.HeadDim, half = hd / 2;
            var emb = W("model.embed_tokens.weight");
            var x = new double[T][];
            for (int t = 0; t < T; t++) x[t] = emb.AsSpan((int)ids[t] * D, D).ToArray();
            var (inv, scale) = InvFreq(c, T);
            for (int l = 0; l < c.Layers; l++)
            {
                string p = $"model.layers.{l}.";
                var q = new double[T][]; var k = new double[T][]; var v = new double[T][];
                for (int t = 0; t < T; t++)
                {
                    var h = Rms(x[t], W(p + "input_layernorm.weight"), c.RmsNormEps);
                    q[t] = MatVec(W(p + "self_attn.q_proj.weight"), h, c.AttentionBias ? W(p + "self_attn.q_proj.bias") : null);
                    k[t] = MatVec(W(p + "self_attn.k_proj.weight"), h, c.AttentionBias ? W(p + "self_attn.k_proj.bias") : null);
                    v[t] = MatVec(W(p + "self_attn.v_proj.weight"), h, c.AttentionBias ? W(p + "self_attn.v_proj.bias") : null);
                    foreach (var (vec, heads, norm) in new[] { (q[t], c.Heads, "q_norm"), (k[t], c.KvHeads, "k_norm") })
                        for (int hh = 0; hh < heads; hh++)
                        {
                            var head = vec.AsSpan(hh * hd, hd);
                            if (c.QkNorm) Rms(head.ToArray(), W(p + $"self_attn.{norm}.weight"), c.RmsNormEps).CopyTo(head);
                            for (int i = 0; i < half; i++)
                            {
                                double a = t * inv[i], cs = Math.Cos(a) * scale, sn = Math.Sin(a) * scale;
                                double x1 = head[i], x2 = head[i + half];
                                head[i] = x1 * cs - x2 * sn;
                                head[i + half] = x2 * cs + x1 * sn;
                            }
                        }
                }
                var attn = new double[T][];
                for (int t = 0; t < T; t++)
                {
                    attn[t] = new double[c.Heads * hd];
                    for (int hq = 0; hq < c.Heads; hq++)
                    {
                        int kv = hq / (c.Heads / c.KvHeads);
                        var s = new double[t + 1];
                        for (int u = 0; u <= t; u++)
                        {
                            double dot = 0;
                            for (int i = 0; i < hd; i++) dot += q[t][hq * hd + i] * k[u][kv * hd + i];
                            s[u] = dot / Math.Sqrt(hd);
                        }
                        double mx = s.Max(), z = s.Sum(a => Math.Exp(a - mx));
                        for (int u = 0; u <= t; u++)
                            for (int i = 0; i < hd; i++) attn[t][hq * hd + i] += Math.Exp(s[u] - mx) / z * v[u][kv * hd + i];
                    }
                }
                for (int t = 0; t < T; t++)
                {
                    var o = MatVec(W(p + "self_attn.o_proj.weight"), attn[t], null);
                    for (int i = 0; i < D; i++) x[t][i] += o[i];
                    var h2 = Rms(x[t], W(p + "post_attention_layernorm.weight"), c.RmsNormEps);
                    var g = MatVec(W(p + "mlp.gate_proj.weight"), h2, null);
                    var up = MatVec(W(p + "mlp.up_proj.weight"), h2, null);
                    for (int i = 0; i < g.Length; i++) g[i] = g[i] / (1 + Math.Exp(-g[i])) * up[i];
                    var m = MatVec(W(p + "mlp.down_proj.weight"), g, null);
                    for (int i = 0; i < D; i++) x[t][i] += m[i];
                }
            }
            var lmHead = W(c.TieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
            return x.SelectMany(row => MatVec(lmHead, Rms(row, W("model.norm.weight"), c.RmsNormEps), null));
        }

        static double[] Rms(double[] x, double[] g, double eps)
        {
            double ms = x.Sum(a => a * a) / x.Length, r = 1 / Math.Sqrt(ms + eps);
            return x.Select((a, i) => a * r * g[i]).ToArray();
        }

        static double[] MatVec(double[] w, double[] x, double[]? bias)
        {
            int n = w.Length / x.Length;
            var y = new double[n];
            for (int o = 0; o < n; o++)
            {
                double s = bias?[o] ?? 0;
                for (int i = 0; i < x.Length; i++) s += w[o * x.Length + i] * x[i];
                y[o] = s;
            }
            return y;
        }

        // transformers' modeling_rope_utils, one function per rope_type.
        static (double[] Inv, double Scale) InvFreq(DecoderConfig c, int seqLen)
        {
            int d = c.HeadDim;
            double b = c.RopeTheta;
            var s = c.RopeScaling;
            int orig = s?.OriginalMaxPositions ?? c.MaxPositions;
            if (s?.Type == "dynamic" && seqLen > orig) b *= Math.Pow(s.Factor * seqLen / orig - (s.Factor - 1), d / (d - 2.0));
            double[] Inv(double factor) => Enumerable.Range(0, d / 2).Select(i => 1 / (factor * Math.Pow(b, 2.0 * i / d))).ToArray();
            switch (s?.Type)
            {
                case "linear": return (Inv(s.Factor), 1);
                case "llama3":
                    return (Inv(1).Select(f =>
                    {
                        double wl = 2 * Math.PI / f, smooth = (orig / wl - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                        return wl < orig / s.HighFreqFactor ? f : wl > orig / s.LowFreqFactor ? f / s.Factor : (1 - smooth) * f / s.Factor + smooth * f;
                    }).ToArray(), 1);
                case "yarn":
                {
                    double Corr(double rot) => d * Math.Log(orig / (rot * 2 * Math.PI)) / (2 * Math.Log(b));
                    double lo = Math.Max(Math.Floor(Corr(s.BetaFast)), 0), hi = Math.Min(Math.Ceiling(Corr(s.BetaSlow)), d - 1);
                    if (lo == hi) hi += 0.001;
                    var extra = Inv(1); var inter = Inv(s.Factor);
                    var mix = extra.Select((e, i) => { double ef = 1 - Math.Min(Math.Max((i - lo) / (hi - lo), 0), 1); return inter[i] * (1 - ef) + e * ef; }).ToArray();
                    return (mix, 0.1 * Math.Log(s.Factor) + 1);
                }
                default: return (Inv(1), 1);
            }
        }
    }
}

public class CheckpointTests
{
    [Fact]
    public void Saved_checkpoints_load_with_identical_logits_and_generation_matches_the_forward()
    {
        var c = DecoderTests.Tiny("qwen3", tie: true);
        var w = DecoderWeights.Init(c, new Generator(9), std: 0.4);
        var dir = Path.Combine(Path.GetTempPath(), "kiln-ckpt-" + Guid.NewGuid().ToString("N"));
        try
        {
            DecoderWeights.Save(dir, c, w, DType.Float32);
            var loaded = DecoderModel.Load(dir);
            Assert.Equal(c, loaded.Config);
            var ids = Tensor.FromArray(new long[] { 1, 2, 3, 4 }, new Shape(1, 4));
            Assert.Equal(new DecoderModel(c, w).Forward(ids).ToArray<float>(), loaded.Forward(ids).ToArray<float>());
            // Greedy generation with the cache picks the argmax of a full forward at every step.
            var gen = loaded.Generate([1, 2, 3], 4);
            var seq = new List<long> { 1, 2, 3 };
            foreach (int tok in gen)
            {
                var last = loaded.Forward(Tensor.FromArray(seq.ToArray(), new Shape(1, seq.Count))).Narrow(1, seq.Count - 1, 1).Reshape(-1).ToArray<float>();
                Assert.Equal(Array.IndexOf(last, last.Max()), tok);
                seq.Add(tok);
            }
            DecoderWeights.Save(dir, c, w, DType.BFloat16);
            var bf = DecoderModel.Load(dir);
            Assert.Equal(DType.BFloat16, bf.WeightDType);   // kept as stored, widened exactly in each product
            var rounded = w.ToDictionary(kv => kv.Key, kv => kv.Value.To(DType.BFloat16).To(DType.Float32));
            Assert.Equal(new DecoderModel(c, rounded).Forward(ids).ToArray<float>(), bf.Forward(ids).ToArray<float>());
            File.Delete(Path.Combine(dir, "model.safetensors"));
            Assert.Throws<FileNotFoundException>(() => DecoderModel.Load(dir));
            File.WriteAllText(Path.Combine(dir, "config.json"), """{"model_type": "gpt_neox"}""");
            Assert.Contains("gpt_neox", Assert.Throws<NotSupportedException>(() => DecoderModel.Load(dir)).Message);
        }
        finally { Directory.Delete(dir, true); }
        Assert.Throws<DirectoryNotFoundException>(() => DecoderModel.Load(dir));
    }
}
