namespace Kiln.Bench;

/// <summary>The m, n, k of an SGEMM workload: C[m, n] = A[m, k] B[k, n].</summary>
/// <param name="M">Rows of A and C.</param>
/// <param name="N">Columns of B and C.</param>
/// <param name="K">Columns of A, rows of B.</param>
public readonly record struct GemmShape(int M, int N, int K)
{
    /// <summary>Floating-point operations of one product: 2 m n k.</summary>
    public double Flops => 2.0 * M * N * K;
}

/// <summary>
/// One prepared run of a workload: the timed action, the inputs a peer reads to run the same case (named as the peer
/// runner expects), and the output compared with the peer's before timing.
/// </summary>
/// <param name="Run">One run of the workload.</param>
/// <param name="Inputs">The inputs by the names bench/Kiln.Bench.Torch reads; empty: the workload has no checked peer.</param>
/// <param name="Output">Computes, from fresh state on the same inputs, the float32 output a peer's is compared with (for a
/// training step: the model's output after one step); null: not checked.</param>
public sealed record WorkloadCase(Action Run, IReadOnlyList<(string Name, Tensor Value)> Inputs, Func<Tensor>? Output = null)
{
    /// <summary>A case with no peer inputs and no checked output.</summary>
    public WorkloadCase(Action run) : this(run, []) { }
}

/// <summary>
/// Kiln's side of one workload of `kiln bench`: its stable name (listed in bench/README.md), the work per run (the
/// numerator of <see cref="Unit"/>: GFLOP, GB or samples), and a factory that allocates the inputs and returns the case.
/// </summary>
/// <param name="Name">The workload's name, the same in peer_bench.py and bench/Kiln.Bench.Torch.</param>
/// <param name="Amount">Work per run in the numerator of <paramref name="Unit"/> (GFLOP for GFLOP/s, GB for GB/s, samples for samples/s, tokens for tokens/s).</param>
/// <param name="Unit">The rate's unit: "GFLOP/s", "GB/s", "samples/s" or "tokens/s".</param>
/// <param name="Prepare">Allocates the inputs on a device and returns the case there.</param>
/// <param name="Gemm">For SGEMM, its shape, which also gets a one-core CPU-time comparison; otherwise null.</param>
/// <param name="StreamedBytes">
/// For a memory-bound workload (decoding, matrix-vector products), the bytes of weights one unit of
/// <paramref name="Amount"/> reads (per token; 1e9 per GB),
/// for its bandwidth bound (<see cref="BenchRow.BoundRate"/>); evaluated only when the workload runs; otherwise null.
/// </param>
public sealed record Workload(string Name, double Amount, string Unit, Func<Device, WorkloadCase> Prepare, GemmShape? Gemm = null, Func<double>? StreamedBytes = null)
{
    /// <summary>Allocates the inputs on <paramref name="device"/> and returns one run of the workload there.</summary>
    public Action Setup(Device device) => Prepare(device).Run;
}

/// <summary>The workloads `kiln bench` times, in run order, and look-up by name.</summary>
public static class Workloads
{
    /// <summary>
    /// Every workload, in run order. Names match peer_bench.py and bench/Kiln.Bench.Torch; <see cref="PeerRunner"/> adds
    /// sgemm_1000, sgemm_4097x64 and the conv2d ones to peer_bench.py, which lacks them.
    /// </summary>
    public static IReadOnlyList<Workload> All { get; } =
    [
        Sgemm("sgemm_256", 256, 256, 256), Sgemm("sgemm_512", 512, 512, 512), Sgemm("sgemm_1024", 1024, 1024, 1024),
        Sgemm("sgemm_2048", 2048, 2048, 2048), Sgemm("sgemm_1000", 1000, 1000, 1000), Sgemm("sgemm_1023", 1023, 1023, 1023),
        // A 4097-square matrix times a 64-column panel: ragged M and K with a narrow N.
        Sgemm("sgemm_4097x64", 4097, 64, 4097),
        // Batch-1 decoding: the weights are streamed once per token, so the rate is weight GB/s. matvec: x [1, in] times
        // W [in, out] (MatMul); linear: W [out, in], the layout of Linear and of checkpoints.
        MatVec("matvec_4096x4096", 4096, 4096, outIn: false), MatVec("matvec_4096x11008", 4096, 11008, outIn: false),
        MatVec("linear_4096x4096", 4096, 4096, outIn: true), MatVec("linear_4096x11008", 4096, 11008, outIn: true),
        // The same with BFloat16 x and weights (float32 accumulation, result rounded once to bf16): half the bytes per
        // weight, so at the same GB/s a bf16 product runs twice as many weights per second as a float32 one.
        MatVec("matvec_bf16_4096x4096", 4096, 4096, outIn: false, DType.BFloat16),
        MatVec("linear_bf16_4096x4096", 4096, 4096, outIn: true, DType.BFloat16), MatVec("linear_bf16_4096x11008", 4096, 11008, outIn: true, DType.BFloat16),
        new("add_16M", 3 * Elems16M * 4 / 1e9, "GB/s", dev =>
        {
            // x + x in place, as the peer's add(x, x, out=y): one array read, one written (the values double each run).
            var x = Tensor.Randn([Elems16M], new Generator(1), device: dev);
            return new(() => x.Add_(x), [("x", x)], () => x.Clone().Add_(x));
        }),
        new("sum_16M", Elems16M * 4 / 1e9, "GB/s", dev =>
        {
            var x = Tensor.Randn([Elems16M], new Generator(2), device: dev);
            return new(() => { using var s = Tensor.Scope(); x.Sum(); }, [("x", x)], () => x.Sum());
        }),
        new("copy_16M", 2 * Elems16M * 4 / 1e9, "GB/s", dev =>
        {
            var (x, y) = (Tensor.Randn([Elems16M], new Generator(8), device: dev), Tensor.Zeros([Elems16M], device: dev));
            return new(() => y.Copy_(x), [("x", x), ("y", y)], () => y.Copy_(x).Clone());
        }),
        Rowwise("softmax_4096x4096", 4096, 4096, 3, (x, _, _) => x.Softmax(-1)),
        Rowwise("layer_norm_4096x4096", 4096, 4096, 4, (x, w, b) => x.LayerNorm(w, b)),
        Rowwise("layer_norm_8192x1024", 8192, 1024, 9, (x, w, b) => x.LayerNorm(w, b)),
        Rowwise("gelu_16M", 1, Elems16M, 10, (x, _, _) => x.Gelu()),
        Rowwise("silu_16M", 1, Elems16M, 11, (x, _, _) => x.Silu()),
        new("mlp_train_step_784_1024_1024_10_b256_adam", 256, "samples/s", MlpStep),
        Attention("causal_attention_h8_t512_d64", 512, backward: false),
        Attention("causal_attention_h8_t2048_d64", 2048, backward: false),
        Attention("causal_attention_h8_t512_d64_fwdbwd", 512, backward: true),
        new("decoder_4x_d512_h8_t512", DecoderFlops(4, 512, 8, 512) / 1e9, "GFLOP/s", Decoder),
        // Batch-1 greedy decoding of a generated Llama-style decoder too large for the caches (111M parameters: every
        // token streams 445 MB of float32 or 222 MB of bf16 weights), float32 activations in both.
        Decode("decode_llama_111m_f32", DecodeConfig, DType.Float32), Decode("decode_llama_111m_bf16", DecodeConfig, DType.BFloat16),
        Decode("decode_llama_1b_bf16", Decode1BConfig, DType.BFloat16, tokens: 4), DecodeLoopingTiny(),
        .. ConvWorkloads(),
    ];

    const int Elems16M = 16 * 1024 * 1024;

    /// <summary>The names of <see cref="All"/>, in run order.</summary>
    public static IReadOnlyList<string> Names { get; } = All.Select(w => w.Name).ToArray();

    /// <summary>The workload called <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">No workload has that name; the message names it and lists the known ones.</exception>
    public static Workload Get(string name) => Select([name])[0];

    /// <summary>The named workloads in run order (<see cref="All"/>'s order, each once); no names: all of them.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="names"/> is null.</exception>
    /// <exception cref="ArgumentException">A name is unknown; the message names every unknown one and lists the known ones.</exception>
    public static IReadOnlyList<Workload> Select(IEnumerable<string> names) => Select(names, nameof(names));

    internal static IReadOnlyList<Workload> Select(IEnumerable<string> names, string paramName)
    {
        ArgumentNullException.ThrowIfNull(names, paramName);
        var wanted = names.ToArray();
        var unknown = wanted.Where(n => !Names.Contains(n)).ToArray();
        if (unknown.Length > 0)
            throw new ArgumentException($"bench: unknown workload(s) {string.Join(", ", unknown)}; known: {string.Join(", ", Names)}", paramName);
        return wanted.Length == 0 ? All : All.Where(w => wanted.Contains(w.Name)).ToArray();
    }

    static Workload Sgemm(string name, int m, int n, int k) => new(name, 2.0 * m * n * k / 1e9, "GFLOP/s", dev =>
    {
        var g = new Generator(6);
        var (a, b) = (Tensor.Rand([m, k], g, device: dev), Tensor.Rand([k, n], g, device: dev));
        return new(() => { using var s = Tensor.Scope(); a.MatMul(b); }, [("a", a), ("b", b)], () => a.MatMul(b));
    }, new GemmShape(m, n, k));

    static Workload MatVec(string name, int inFeatures, int outFeatures, bool outIn, DType dtype = DType.Float32) => new(name, dtype.Size() * (double)inFeatures * outFeatures / 1e9, "GB/s", dev =>
    {
        var g = new Generator(12);
        var x = Tensor.Randn([1, inFeatures], g, device: dev).To(dtype);
        var w = Tensor.Randn(outIn ? new Shape(outFeatures, inFeatures) : new Shape(inFeatures, outFeatures), g, device: dev).To(dtype);
        Func<Tensor> product = outIn ? () => Tensor.Linear(x, w) : () => x.MatMul(w);
        return new(() => { using var s = Tensor.Scope(); product(); }, outIn ? [("x", x), ("w", w)] : [("a", x), ("b", w)], product);
    }, StreamedBytes: () => 1e9);

    // A row-wise or elementwise op on [rows, cols] (weight and bias of width cols for layer norm): one array read, one written.
    static Workload Rowwise(string name, int rows, int cols, ulong seed, Func<Tensor, Tensor, Tensor, Tensor> op) => new(name, 2.0 * rows * cols * 4 / 1e9, "GB/s", dev =>
    {
        var g = new Generator(seed);
        var x = Tensor.Randn(rows == 1 ? new Shape(cols) : new Shape(rows, cols), g, device: dev);
        var (w, b) = (Tensor.Rand([cols], g, device: dev), Tensor.Randn([cols], g, device: dev));
        return new(() => { using var s = Tensor.Scope(); op(x, w, b); }, [("x", x), ("w", w), ("b", b)], () => op(x, w, b));
    });

    // Causal attention over [1, 8, t, 64], fused; forward (no grad), or forward and backward of the gradient gy. The rate
    // counts the full masked product's flops (2 x 2 x 8 x t x t x 64, backward 2.5x the forward's), as the peer's does.
    static Workload Attention(string name, int t, bool backward) => new(name, 2.0 * 2 * 8 * t * t * 64 * (backward ? 3.5 : 1) / 1e9, "GFLOP/s", dev =>
    {
        var g = new Generator(5);
        var (q, k, v) = (Tensor.Randn([1, 8, t, 64], g, device: dev), Tensor.Randn([1, 8, t, 64], g, device: dev), Tensor.Randn([1, 8, t, 64], g, device: dev));
        if (!backward)
        {
            Tensor Forward() { using var ng = Autograd.NoGrad(); return Tensor.ScaledDotProductAttention(q, k, v, causal: true, scale: 1.0 / 8); }
            return new(() => { using var s = Tensor.Scope(); Forward(); }, [("q", q), ("k", k), ("v", v)], Forward);
        }
        var gy = Tensor.Randn([1, 8, t, 64], g, device: dev);
        q.RequiresGrad_(); k.RequiresGrad_(); v.RequiresGrad_();
        void Step()
        {
            q.Grad = null; k.Grad = null; v.Grad = null;
            Tensor.ScaledDotProductAttention(q, k, v, causal: true, scale: 1.0 / 8).Backward(gy);
        }
        return new(() => { using var s = Tensor.Scope(); Step(); }, [("q", q), ("k", k), ("v", v), ("gy", gy)], () =>
        {
            Step();
            Tensor o;
            using (Autograd.NoGrad()) o = Tensor.ScaledDotProductAttention(q, k, v, causal: true, scale: 1.0 / 8);
            return Tensor.Concat([o.Reshape(-1), q.Grad!.Reshape(-1), k.Grad!.Reshape(-1), v.Grad!.Reshape(-1)]);
        });
    });

    // Flops of `blocks` pre-norm blocks on [1, t, d]: four d x d projections and the 4d-wide MLP (2 t d^2 x 12), and the
    // full masked attention product (2 x 2 x t^2 x d), as a dense implementation executes them.
    static double DecoderFlops(int blocks, int t, int heads, int d) => blocks * (2.0 * t * d * d * 12 + 4.0 * t * t * d);

    // Kiln.NN's TransformerBlock x 4 (d 512, 8 heads, LayerNorm, exact GELU, no RoPE: the peer has none), inference on
    // [1, 512, 512]. Inputs are the weights under the peer runner's names.
    const int DecodeTokens = 16;

    /// <summary>The generated decoder of the decode_llama_111m workloads: d 1024, 8 layers, SwiGLU 2816, vocabulary 8192.</summary>
    public static NN.Decoder.DecoderConfig DecodeConfig => new()
    {
        ModelType = "llama", VocabSize = 8192, HiddenSize = 1024, IntermediateSize = 2816, Layers = 8, Heads = 16, KvHeads = 16, HeadDim = 64,
    };

    /// <summary>The generated decoder of decode_llama_1b_bf16: d 2048, 20 layers, SwiGLU 5632, vocabulary 32000 (TinyLlama's widths without its grouped KV heads; 1.16B parameters, 2.2 GB of bf16 weights a token).</summary>
    public static NN.Decoder.DecoderConfig Decode1BConfig => new()
    {
        ModelType = "llama", VocabSize = 32000, HiddenSize = 2048, IntermediateSize = 5632, Layers = 20, Heads = 32, KvHeads = 32, HeadDim = 64,
    };

    // Greedy batch-1 decoding of `tokens` tokens after a one-token prompt, with random weights of `weights` dtype.
    static Workload Decode(string name, NN.Decoder.DecoderConfig c, DType weights, int tokens = DecodeTokens) => new(name, tokens, "tokens/s", dev =>
    {
        var model = new NN.Decoder.DecoderModel(c, NN.Decoder.DecoderWeights.Init(c, new Generator(14), dtype: weights).ToDictionary(kv => kv.Key, kv => kv.Value.To(dev)));
        return new(() => { using var s = Tensor.Scope(); model.Generate([1], tokens); });
    }, StreamedBytes: () => TokenBytes(c, weights));

    // The shipped looping checkpoint (kiln lm's default model, next to the kiln binary), greedy, without loops. Its 2.4 MB
    // of weights stay in the L2/L3 caches, so its bound is a cache-resident one in DRAM copy units (see bench/README.md).
    static Workload DecodeLoopingTiny()
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "Models", "looping-tiny");
        return new("decode_looping_tiny", DecodeTokens, "tokens/s", dev =>
        {
            var model = NN.Decoder.DecoderModel.Load(dir, dev);
            return new(() => { using var s = Tensor.Scope(); model.Generate([1], DecodeTokens); });
        }, StreamedBytes: () => TokenBytes(NN.Decoder.DecoderConfig.FromJson(File.ReadAllText(Path.Combine(dir, "config.json"))), DType.BFloat16));
    }

    /// <summary>
    /// Weight bytes one decoding step of <paramref name="c"/> reads: every linear weight in <paramref name="weights"/>'
    /// dtype (float32 unless half), the LM head in the same dtype (a tied half embedding stays half for inference) and the norms.
    /// The embedding lookup (one row) and the KV cache (a few tokens deep here) are left out.
    /// </summary>
    public static double TokenBytes(NN.Decoder.DecoderConfig c, DType weights)
    {
        double w = weights.IsHalf() ? 2 : 4, d = c.HiddenSize, q = (double)c.Heads * c.HeadDim, kv = (double)c.KvHeads * c.HeadDim;
        double layer = w * (d * q + 2 * d * kv + q * d + 3 * d * c.IntermediateSize) + 4 * (2 * d + (c.QkNorm ? 2 * c.HeadDim : 0));
        return c.Layers * layer + w * c.VocabSize * d + 4 * d;
    }

    static WorkloadCase Decoder(Device dev)
    {
        var g = new Generator(13);
        var blocks = Enumerable.Range(0, 4).Select(_ => new NN.TransformerBlock(512, 8, rotary: false, generator: g, device: dev)).ToArray();
        foreach (var b in blocks) b.Eval();
        var x = Tensor.Randn([1, 512, 512], g, device: dev);
        string[][] names =
        [
            ["norm1.weight", "ln1.w"], ["norm1.bias", "ln1.b"], ["attn.q_proj.weight", "wq"], ["attn.k_proj.weight", "wk"], ["attn.v_proj.weight", "wv"],
            ["attn.o_proj.weight", "wo"], ["norm2.weight", "ln2.w"], ["norm2.bias", "ln2.b"], ["mlp.layers.0.weight", "fc1.w"], ["mlp.layers.0.bias", "fc1.b"],
            ["mlp.layers.2.weight", "fc2.w"], ["mlp.layers.2.bias", "fc2.b"],
        ];
        var inputs = new List<(string, Tensor)> { ("x", x) };
        for (int i = 0; i < blocks.Length; i++)
        {
            var state = blocks[i].StateDict();
            if (state.Count != names.Length) throw new InvalidOperationException($"bench: TransformerBlock has parameters {string.Join(", ", state.Keys)}; the decoder workload maps {names.Length}");
            inputs.AddRange(names.Select(n => ($"{i}.{n[1]}", state[n[0]])));
        }
        Tensor Forward()
        {
            using var ng = Autograd.NoGrad();
            var h = x;
            foreach (var b in blocks) h = b.Forward(h);
            return h;
        }
        return new(() => { using var s = Tensor.Scope(); Forward(); }, inputs, Forward);
    }

    // Conv2d on 64 -> 64 channels of 56 x 56 (a ResNet stage), batch 8 (issue 16 asks for 32; 8 fits this 2-core
    // machine's time budget): 3x3, 1x1, 3x3 with stride 2, and depthwise 3x3, each forward and forward + backward
    // (input, weight and bias gradients, counted as 3x the forward's flops). The peer adds the same ones (PeerRunner).
    static IEnumerable<Workload> ConvWorkloads()
    {
        foreach (var (name, k, stride, groups) in new[] { ("3x3", 3, 1, 1), ("1x1", 1, 1, 1), ("3x3s2", 3, 2, 1), ("dw3x3", 3, 1, 64) })
            foreach (bool backward in new[] { false, true })
                yield return Conv($"conv2d_b8_c64_56_{name}{(backward ? "_fwdbwd" : "")}", k, stride, groups, backward);
    }

    static Workload Conv(string name, int k, int stride, int groups, bool backward)
    {
        const int n = 8, c = 64, hw = 56;
        int pad = k / 2, outHw = (hw + 2 * pad - k) / stride + 1;
        double flops = 2.0 * n * c * outHw * outHw * (c / groups) * k * k * (backward ? 3 : 1);
        return new(name, flops / 1e9, "GFLOP/s", dev => new WorkloadCase(ConvRun(dev, k, stride, groups, backward, pad, outHw)));
    }


    static Action ConvRun(Device dev, int k, int stride, int groups, bool backward, int pad, int outHw)
    {
        const int n = 8, c = 64, hw = 56;
        var g = new Generator(7);
        var (x, w, b) = (Tensor.Randn([n, c, hw, hw], g, device: dev), Tensor.Randn([c, c / groups, k, k], g, device: dev), Tensor.Randn([c], g, device: dev));
        if (!backward) return () => { using var s = Tensor.Scope(); using var ng = Autograd.NoGrad(); Tensor.Conv2d(x, w, b, stride, pad, groups: groups); };
        x.RequiresGrad_(); w.RequiresGrad_(); b.RequiresGrad_();
        var gy = Tensor.Randn([n, c, outHw, outHw], g, device: dev);
        return () =>
        {
            using var s = Tensor.Scope();
            x.Grad = null; w.Grad = null; b.Grad = null;
            Tensor.Conv2d(x, w, b, stride, pad, groups: groups).Backward(gy);
        };
    }

    // PyTorch's nn.Sequential(Linear 784-1024, ReLU, Linear 1024-1024, ReLU, Linear 1024-10), cross-entropy and
    // Adam(1e-3), with the same pieces of Kiln.NN a user would write: MLP, Losses.CrossEntropy, Adam, a scope per step.
    static WorkloadCase MlpStep(Device dev)
    {
        var g = new Generator(0);
        var model = new NN.MLP([784, 1024, 1024, 10], generator: g, device: dev);
        var opt = new NN.Adam(model.Parameters(), 1e-3);
        var x = Tensor.Randn([256, 784], g, device: dev);
        var y = Tensor.RandInt([256], 0, 10, g, device: dev);
        void Step()
        {
            opt.ZeroGrad();
            NN.Losses.CrossEntropy(model.Forward(x), y).Backward();
            opt.Step();
        }
        var state = model.StateDict();
        var inputs = new List<(string, Tensor)> { ("x", x), ("y", y) };
        for (int i = 0; i < 3; i++) inputs.AddRange([($"w{i}", state[$"layers.{2 * i}.weight"]), ($"b{i}", state[$"layers.{2 * i}.bias"])]);
        return new(() => { using var scope = Tensor.Scope(); Step(); }, inputs, () =>
        {
            Step();
            using var ng = Autograd.NoGrad();
            return model.Forward(x);
        });
    }
}
