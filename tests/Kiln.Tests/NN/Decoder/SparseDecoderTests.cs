using Kiln.IO;
using Kiln.NN.Decoder;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests.NN.Decoder;

/// <summary>Qwen3-MoE and DeepSeek-V3/Moonlight (MLA) checkpoints: tiny random ones written in Hugging Face layout and
/// loaded back, against a plain float64 forward written here; the KV cache; errors.</summary>
public class SparseDecoderTests
{
    const string Common = """
        "vocab_size": 11, "hidden_size": 16, "intermediate_size": 20, "num_hidden_layers": 4, "num_attention_heads": 4,
        "max_position_embeddings": 64, "rope_theta": 100, "tie_word_embeddings": false, "hidden_act": "silu"
        """;

    public static readonly Dictionary<string, string> Configs = new()
    {
        // Layer 1 dense by mlp_only_layers; the others routed with renormalized gates.
        ["qwen3_moe"] = "{" + Common + """
            , "model_type": "qwen3_moe", "num_key_value_heads": 2, "head_dim": 6, "rms_norm_eps": 1e-6, "num_experts": 6,
            "num_experts_per_tok": 2, "moe_intermediate_size": 8, "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": [1]}
            """,
        // Every second layer routed (1 and 3), raw softmax gates.
        ["qwen3_moe step 2, unnormalized"] = "{" + Common + """
            , "model_type": "qwen3_moe", "num_key_value_heads": 2, "head_dim": 6, "rms_norm_eps": 1e-6, "num_experts": 5,
            "num_experts_per_tok": 3, "moe_intermediate_size": 8, "norm_topk_prob": false, "decoder_sparse_step": 2, "mlp_only_layers": []}
            """,
        // DeepSeek-V3 style: query bottleneck, 4 groups of 2 experts with 2 chosen groups, shared expert, yarn with mscales.
        ["deepseek_v3"] = "{" + Common + """
            , "model_type": "deepseek_v3", "num_key_value_heads": 4, "rms_norm_eps": 1e-5, "q_lora_rank": 6, "kv_lora_rank": 8,
            "qk_nope_head_dim": 4, "qk_rope_head_dim": 4, "v_head_dim": 6, "n_routed_experts": 8, "num_experts_per_tok": 3,
            "moe_intermediate_size": 6, "n_shared_experts": 1, "n_group": 4, "topk_group": 2, "norm_topk_prob": true,
            "routed_scaling_factor": 2.5, "first_k_dense_replace": 1, "moe_layer_freq": 1, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
            "rope_scaling": {"type": "yarn", "factor": 4, "original_max_position_embeddings": 16, "beta_fast": 32, "beta_slow": 1,
            "mscale": 0.707, "mscale_all_dim": 1.0}}
            """,
        // Moonlight-16B-A3B style: direct q_proj, one group, two shared experts, no rope scaling, rope_interleave left out.
        ["moonlight"] = "{" + Common + """
            , "model_type": "deepseek_v3", "num_key_value_heads": 4, "rms_norm_eps": 1e-5, "q_lora_rank": null, "kv_lora_rank": 8,
            "qk_nope_head_dim": 6, "qk_rope_head_dim": 4, "v_head_dim": 4, "n_routed_experts": 6, "num_experts_per_tok": 2,
            "moe_intermediate_size": 6, "n_shared_experts": 2, "n_group": 1, "topk_group": 1, "norm_topk_prob": true,
            "routed_scaling_factor": 2.446, "first_k_dense_replace": 2, "scoring_func": "sigmoid", "topk_method": "noaux_tc", "rope_scaling": null}
            """,
        // Half-layout rotary weights and unnormalized gates.
        ["deepseek_v3 rope_interleave false"] = "{" + Common + """
            , "model_type": "deepseek_v3", "num_key_value_heads": 4, "rms_norm_eps": 1e-6, "q_lora_rank": 6, "kv_lora_rank": 8,
            "qk_nope_head_dim": 4, "qk_rope_head_dim": 6, "v_head_dim": 4, "n_routed_experts": 4, "num_experts_per_tok": 2,
            "moe_intermediate_size": 6, "n_shared_experts": 1, "n_group": 2, "topk_group": 1, "norm_topk_prob": false,
            "routed_scaling_factor": 1.5, "first_k_dense_replace": 1, "rope_interleave": false}
            """,
    };

    public static IEnumerable<object[]> Names() => Configs.Keys.Select(k => new object[] { k });

    static readonly long[][] Seqs = [[1, 5, 2, 9, 3, 3, 7], [10, 0, 4, 4, 6, 8, 2]];

    static Tensor Ids(long[][] seqs) => Tensor.FromArray(seqs.SelectMany(s => s).ToArray(), new Shape(seqs.Length, seqs[0].Length));

    // Writes config.json and model.safetensors (random weights in `dtype`) to a fresh folder, loads it, and deletes the folder.
    internal static (DecoderModel Model, Dictionary<string, Tensor> Weights) Load(string name, int seed, DType dtype, Func<Dictionary<string, Tensor>, Dictionary<string, Tensor>>? edit = null)
    {
        var config = DecoderConfig.FromJson(Configs[name]);
        var w = DecoderWeights.Init(config, new Generator((ulong)seed), std: 0.4, normJitter: 0.2, dtype: dtype);
        var dir = Path.Combine(Path.GetTempPath(), "kiln-sparse-" + Guid.NewGuid().ToString("N"));
        try
        {
            Directory.CreateDirectory(dir);
            File.WriteAllText(Path.Combine(dir, "config.json"), Configs[name]);
            Safetensors.Save(Path.Combine(dir, "model.safetensors"), edit is null ? w : edit(new Dictionary<string, Tensor>(w)));
            return (DecoderModel.Load(dir), w);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory, MemberData(nameof(Names))]
    public void Float64_logits_match_the_reference(string name)
    {
        var (model, w) = Load(name, 1, DType.Float64);
        Assert.Equal(DType.Float64, model.DType);
        var logits = model.Forward(Ids(Seqs));
        Assert.Equal(new Shape(2, 7, 11), logits.Shape);
        var expected = Seqs.SelectMany(s => Reference.Logits(model.Config, w, s)).ToArray();
        Close.Check(expected, logits.ToDoubleArray(), 1e-10, 1e-11, name);
    }

    [Theory, MemberData(nameof(Names))]
    public void Float32_logits_match_the_reference(string name)
    {
        var (model, w) = Load(name, 2, DType.Float32);
        var expected = Seqs.SelectMany(s => Reference.Logits(model.Config, w, s)).ToArray();
        Close.Check(expected, model.Forward(Ids(Seqs)).ToDoubleArray(), 1e-4, 1e-5, name);
    }

    public static IEnumerable<object[]> NamesOnDevices() => from n in Configs.Keys from d in Devices.All select new object[] { n, d.ToString() };

    // Routing and MLA run through core ops (the router's choices go through the host), so on any device as on the CPU.
    [Theory, MemberData(nameof(NamesOnDevices))]
    public void Logits_on_every_device_match_the_reference(string name, string device)
    {
        var dev = Devices.Parse(device);
        var (model, w) = Load(name, 5, DType.Float32);
        var onDevice = new DecoderModel(model.Config, w.ToDictionary(kv => kv.Key, kv => kv.Value.To(dev)));
        var logits = onDevice.Forward(Ids(Seqs).To(dev));
        Assert.Equal(dev, logits.Device);
        var expected = Seqs.SelectMany(s => Reference.Logits(model.Config, w, s)).ToArray();
        Close.Check(expected, logits.To(Device.Cpu).ToDoubleArray(), 1e-4, 1e-5, $"{name} on {device}");
    }

    [Theory, MemberData(nameof(Names))]
    public void Cached_decoding_matches_the_full_forward(string name)
    {
        var (model, _) = Load(name, 3, DType.Float64);
        var ids = Ids(Seqs);
        var full = model.Forward(ids);
        var cache = model.NewCache();
        var parts = new List<Tensor> { model.Forward(ids.Narrow(1, 0, 3), cache) };
        for (int t = 3; t < 7; t++) parts.Add(model.Forward(ids.Narrow(1, t, 1), cache));
        Assert.Equal(7, cache.Position);
        Close.Check(full, Tensor.Concat([.. parts], 1), 1e-10, 1e-11, name);
    }

    [Theory]
    [InlineData("qwen3_moe", "model.layers.2.mlp.experts.3.down_proj.weight")]
    [InlineData("qwen3_moe", "model.layers.0.mlp.gate.weight")]
    [InlineData("qwen3_moe", "model.layers.1.mlp.up_proj.weight")]
    [InlineData("deepseek_v3", "model.layers.3.mlp.gate.e_score_correction_bias")]
    [InlineData("deepseek_v3", "model.layers.1.mlp.shared_experts.gate_proj.weight")]
    [InlineData("deepseek_v3", "model.layers.2.self_attn.q_a_layernorm.weight")]
    [InlineData("moonlight", "model.layers.0.self_attn.kv_b_proj.weight")]
    [InlineData("moonlight", "model.layers.3.self_attn.q_proj.weight")]
    public void A_missing_tensor_is_named(string name, string tensor)
    {
        var e = Assert.Throws<InvalidDataException>(() => Load(name, 6, DType.Float32, w => { Assert.True(w.Remove(tensor)); return w; }));
        Assert.Contains($"'{tensor}'", e.Message);
    }

    [Fact]
    public void Unsupported_options_are_named()
    {
        string ds = Configs["deepseek_v3"];
        foreach (var (field, value, named) in new[] { ("\"scoring_func\": \"sigmoid\"", "\"scoring_func\": \"softmax\"", "softmax"),
                     ("\"topk_method\": \"noaux_tc\"", "\"topk_method\": \"group_limited_greedy\"", "group_limited_greedy"),
                     ("\"scoring_func\": \"sigmoid\"", "\"scoring_func\": \"sigmoid\", \"attention_bias\": true", "attention_bias") })
            Assert.Contains(named, Assert.Throws<NotSupportedException>(() => DecoderConfig.FromJson(ds.Replace(field, value))).Message);
        Assert.Contains("num_experts_per_tok", Assert.Throws<InvalidDataException>(() =>
            DecoderConfig.FromJson(Configs["qwen3_moe"].Replace("\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 7"))).Message);
        Assert.Contains("n_group", Assert.Throws<InvalidDataException>(() =>
            DecoderConfig.FromJson(ds.Replace("\"n_group\": 4", "\"n_group\": 3"))).Message);
        Assert.Contains("kv_lora_rank", Assert.Throws<InvalidDataException>(() =>
            DecoderConfig.FromJson(ds.Replace("\"kv_lora_rank\": 8,", ""))).Message);
        Assert.Contains("qk_rope_head_dim", Assert.Throws<InvalidDataException>(() =>
            DecoderConfig.FromJson(ds.Replace("\"qk_rope_head_dim\": 4", "\"qk_rope_head_dim\": 3"))).Message);
    }

    [Theory, MemberData(nameof(Names))]
    public void Configs_round_trip_and_saved_checkpoints_reload(string name)
    {
        var c = DecoderConfig.FromJson(Configs[name]);
        Assert.Equal(c, DecoderConfig.FromJson(c.ToJson()));
        var w = DecoderWeights.Init(c, new Generator(7), std: 0.4);
        var dir = Path.Combine(Path.GetTempPath(), "kiln-sparse-save-" + Guid.NewGuid().ToString("N"));
        try
        {
            DecoderWeights.Save(dir, c, w, DType.Float32);
            var ids = Ids(Seqs);
            Assert.Equal(new DecoderModel(c, w).Forward(ids).ToArray<float>(), DecoderModel.Load(dir).Forward(ids).ToArray<float>());
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>The forward in float64, token by token with plain loops, written from Hugging Face's modelling code
    /// (Qwen3MoeForCausalLM, DeepseekV3ForCausalLM). The interleaved rotary pairs are rotated in place, not permuted.</summary>
    static class Reference
    {
        public static IEnumerable<double> Logits(DecoderConfig c, Dictionary<string, Tensor> weights, long[] ids)
        {
            double[] W(string n) => weights[n].ToDoubleArray();
            int T = ids.Length, D = c.HiddenSize;
            var emb = W("model.embed_tokens.weight");
            var x = new double[T][];
            for (int t = 0; t < T; t++) x[t] = emb.AsSpan((int)ids[t] * D, D).ToArray();
            bool ds = c.ModelType == "deepseek_v3";
            for (int l = 0; l < c.Layers; l++)
            {
                string p = $"model.layers.{l}.";
                var h = x.Select(r => Rms(r, W(p + "input_layernorm.weight"), c.RmsNormEps)).ToArray();
                var attn = ds ? Mla(c, W, p + "self_attn.", h) : Qwen3(c, W, p + "self_attn.", h);
                for (int t = 0; t < T; t++)
                {
                    var o = MatVec(W(p + "self_attn.o_proj.weight"), attn[t]);
                    for (int i = 0; i < D; i++) x[t][i] += o[i];
                    var h2 = Rms(x[t], W(p + "post_attention_layernorm.weight"), c.RmsNormEps);
                    bool sparse = ds ? l >= c.Moe!.FirstDenseLayers : !c.Moe!.DenseLayers.Contains(l) && (l + 1) % c.Moe.SparseStep == 0;
                    var m = !sparse ? SwiGlu(W, p + "mlp.", h2) : ds ? DeepSeekMoe(c.Moe, W, p + "mlp.", h2) : QwenMoe(c.Moe, W, p + "mlp.", h2);
                    for (int i = 0; i < D; i++) x[t][i] += m[i];
                }
            }
            return x.SelectMany(row => MatVec(W("lm_head.weight"), Rms(row, W("model.norm.weight"), c.RmsNormEps)));
        }

        static double[][] Qwen3(DecoderConfig c, Func<string, double[]> W, string p, double[][] h)
        {
            int T = h.Length, hd = c.HeadDim;
            var (inv, scale) = InvFreq(c, hd);
            var q = new double[T][]; var k = new double[T][]; var v = new double[T][];
            for (int t = 0; t < T; t++)
            {
                q[t] = MatVec(W(p + "q_proj.weight"), h[t]); k[t] = MatVec(W(p + "k_proj.weight"), h[t]); v[t] = MatVec(W(p + "v_proj.weight"), h[t]);
                foreach (var (vec, norm) in new[] { (q[t], "q_norm"), (k[t], "k_norm") })
                    for (int s = 0; s < vec.Length; s += hd)
                    {
                        Rms(vec[s..(s + hd)], W(p + norm + ".weight"), c.RmsNormEps).CopyTo(vec, s);
                        RotateHalves(vec.AsSpan(s, hd), t, inv, scale);
                    }
            }
            return Attention(T, c.Heads, hd, hd, 1 / Math.Sqrt(hd),
                (t, hq) => q[t].AsSpan(hq * hd, hd).ToArray(), (u, hq) => k[u].AsSpan(hq / c.Groups * hd, hd).ToArray(), (u, hq) => v[u].AsSpan(hq / c.Groups * hd, hd).ToArray());
        }

        static double[][] Mla(DecoderConfig c, Func<string, double[]> W, string p, double[][] h)
        {
            var a = c.Mla!;
            int T = h.Length, nope = a.QkNopeHeadDim, rope = a.QkRopeHeadDim, qk = nope + rope, vd = a.VHeadDim, r = a.KvLoraRank;
            var (inv, ropeScale) = InvFreq(c, rope);
            var q = new double[T][]; var kNope = new double[T][]; var kRope = new double[T][]; var v = new double[T][];
            for (int t = 0; t < T; t++)
            {
                q[t] = a.QLoraRank is null ? MatVec(W(p + "q_proj.weight"), h[t])
                    : MatVec(W(p + "q_b_proj.weight"), Rms(MatVec(W(p + "q_a_proj.weight"), h[t]), W(p + "q_a_layernorm.weight"), 1e-6));
                var latent = MatVec(W(p + "kv_a_proj_with_mqa.weight"), h[t]);
                var kv = MatVec(W(p + "kv_b_proj.weight"), Rms(latent[..r], W(p + "kv_a_layernorm.weight"), 1e-6));
                kRope[t] = latent[r..];
                Rotate(kRope[t], t, inv, ropeScale, a.RopeInterleave);
                for (int hh = 0; hh < c.Heads; hh++) Rotate(q[t].AsSpan(hh * qk + nope, rope), t, inv, ropeScale, a.RopeInterleave);
                kNope[t] = new double[c.Heads * nope]; v[t] = new double[c.Heads * vd];
                for (int hh = 0; hh < c.Heads; hh++)
                {
                    kv.AsSpan(hh * (nope + vd), nope).CopyTo(kNope[t].AsSpan(hh * nope));
                    kv.AsSpan(hh * (nope + vd) + nope, vd).CopyTo(v[t].AsSpan(hh * vd));
                }
            }
            double scale = 1 / Math.Sqrt(qk);
            if (c.RopeScaling is { MscaleAllDim: { } all } s) scale *= Math.Pow(0.1 * all * Math.Log(s.Factor) + 1, 2);
            return Attention(T, c.Heads, qk, vd, scale, (t, hh) => q[t].AsSpan(hh * qk, qk).ToArray(),
                (u, hh) => [.. kNope[u].AsSpan(hh * nope, nope), .. kRope[u]], (u, hh) => v[u].AsSpan(hh * vd, vd).ToArray());
        }

        // Causal softmax attention; returns per position the heads' outputs concatenated.
        static double[][] Attention(int T, int heads, int qk, int vd, double scale, Func<int, int, double[]> q, Func<int, int, double[]> k, Func<int, int, double[]> v)
        {
            var o = new double[T][];
            for (int t = 0; t < T; t++)
            {
                o[t] = new double[heads * vd];
                for (int hh = 0; hh < heads; hh++)
                {
                    var qv = q(t, hh);
                    var s = Enumerable.Range(0, t + 1).Select(u => { var kv = k(u, hh); double dot = 0; for (int i = 0; i < qk; i++) dot += qv[i] * kv[i]; return dot * scale; }).ToArray();
                    double mx = s.Max(), z = s.Sum(e => Math.Exp(e - mx));
                    for (int u = 0; u <= t; u++)
                    {
                        var vv = v(u, hh);
                        for (int i = 0; i < vd; i++) o[t][hh * vd + i] += Math.Exp(s[u] - mx) / z * vv[i];
                    }
                }
            }
            return o;
        }

        static double[] QwenMoe(MoeConfig m, Func<string, double[]> W, string p, double[] h)
        {
            var logits = MatVec(W(p + "gate.weight"), h);
            double mx = logits.Max(), z = logits.Sum(l => Math.Exp(l - mx));
            var prob = logits.Select(l => Math.Exp(l - mx) / z).ToArray();
            var top = Enumerable.Range(0, m.Experts).OrderByDescending(e => prob[e]).Take(m.ExpertsPerToken).ToArray();
            double sum = m.NormTopkProb ? top.Sum(e => prob[e]) : 1;
            return Mix(top.Select(e => (e, prob[e] / sum)), W, p, h.Length, h);
        }

        static double[] DeepSeekMoe(MoeConfig m, Func<string, double[]> W, string p, double[] h)
        {
            var score = MatVec(W(p + "gate.weight"), h).Select(l => 1 / (1 + Math.Exp(-l))).ToArray();
            var bias = W(p + "gate.e_score_correction_bias");
            var choice = score.Select((s, e) => s + bias[e]).ToArray();
            int per = m.Experts / m.Groups;
            var groups = Enumerable.Range(0, m.Groups)
                .OrderByDescending(g => choice.Skip(g * per).Take(per).OrderByDescending(s => s).Take(2).Sum()).Take(m.TopkGroups).ToHashSet();
            var top = Enumerable.Range(0, m.Experts).Where(e => groups.Contains(e / per)).OrderByDescending(e => choice[e]).Take(m.ExpertsPerToken).ToArray();
            double sum = m.NormTopkProb ? top.Sum(e => score[e]) + 1e-20 : 1;
            var y = Mix(top.Select(e => (e, score[e] / sum * m.RoutedScalingFactor)), W, p, h.Length, h);
            var shared = SwiGlu(W, p + "shared_experts.", h);
            return y.Select((a, i) => a + shared[i]).ToArray();
        }

        static double[] Mix(IEnumerable<(int Expert, double Gate)> chosen, Func<string, double[]> W, string p, int d, double[] h)
        {
            var y = new double[d];
            foreach (var (e, g) in chosen)
            {
                var o = SwiGlu(W, $"{p}experts.{e}.", h);
                for (int i = 0; i < d; i++) y[i] += g * o[i];
            }
            return y;
        }

        static double[] SwiGlu(Func<string, double[]> W, string p, double[] h)
        {
            var g = MatVec(W(p + "gate_proj.weight"), h);
            var up = MatVec(W(p + "up_proj.weight"), h);
            return MatVec(W(p + "down_proj.weight"), g.Select((a, i) => a / (1 + Math.Exp(-a)) * up[i]).ToArray());
        }

        // Rotates pairs (x[i], x[i + d/2]) (half layout) or (x[2i], x[2i + 1]) (interleaved) by the angle t * inv[i].
        static void Rotate(Span<double> x, int t, double[] inv, double scale, bool interleaved)
        {
            if (!interleaved) { RotateHalves(x, t, inv, scale); return; }
            for (int i = 0; i < x.Length / 2; i++)
            {
                double cs = Math.Cos(t * inv[i]) * scale, sn = Math.Sin(t * inv[i]) * scale, a = x[2 * i], b = x[2 * i + 1];
                x[2 * i] = a * cs - b * sn;
                x[2 * i + 1] = b * cs + a * sn;
            }
        }

        static void RotateHalves(Span<double> x, int t, double[] inv, double scale)
        {
            int half = x.Length / 2;
            for (int i = 0; i < half; i++)
            {
                double cs = Math.Cos(t * inv[i]) * scale, sn = Math.Sin(t * inv[i]) * scale, a = x[i], b = x[i + half];
                x[i] = a * cs - b * sn;
                x[i + half] = b * cs + a * sn;
            }
        }

        // Default RoPE, or transformers' _compute_yarn_parameters (attention factor from mscale / mscale_all_dim).
        static (double[] Inv, double Scale) InvFreq(DecoderConfig c, int d)
        {
            var inv = Enumerable.Range(0, d / 2).Select(i => 1 / Math.Pow(c.RopeTheta, 2.0 * i / d)).ToArray();
            if (c.RopeScaling is not { Type: "yarn" } s) return (inv, 1);
            int orig = s.OriginalMaxPositions!.Value;
            double Corr(double rot) => d * Math.Log(orig / (rot * 2 * Math.PI)) / (2 * Math.Log(c.RopeTheta));
            double lo = Math.Max(Math.Floor(Corr(s.BetaFast)), 0), hi = Math.Min(Math.Ceiling(Corr(s.BetaSlow)), d - 1);
            var mixed = inv.Select((f, i) => { double extra = 1 - Math.Min(Math.Max((i - lo) / (hi - lo), 0), 1); return f / s.Factor * (1 - extra) + f * extra; }).ToArray();
            double Mscale(double m) => 0.1 * m * Math.Log(s.Factor) + 1;
            return (mixed, Mscale(s.Mscale!.Value) / Mscale(s.MscaleAllDim!.Value));
        }

        static double[] Rms(double[] x, double[] g, double eps)
        {
            double r = 1 / Math.Sqrt(x.Sum(a => a * a) / x.Length + eps);
            return x.Select((a, i) => a * r * g[i]).ToArray();
        }

        static double[] MatVec(double[] w, double[] x)
        {
            var y = new double[w.Length / x.Length];
            for (int o = 0; o < y.Length; o++)
                for (int i = 0; i < x.Length; i++) y[o] += w[o * x.Length + i] * x[i];
            return y;
        }
    }
}
