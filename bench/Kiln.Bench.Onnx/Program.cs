using Microsoft.ML.OnnxRuntime;
using Kiln.Bench;

namespace Kiln.Bench.Onnx;

/// <summary>
/// ONNX Runtime (CPU execution provider, its MLAS kernels) as an inference peer of `kiln bench`. The harness
/// (<c>OnnxPeer</c>) starts it as <c>dotnet Kiln.Bench.Onnx.dll --threads N</c>; it prints one JSON hello
/// <c>{"peer", "version", "threads", "config"}</c> or <c>{"error"}</c>, then speaks <see cref="PeerProtocol"/>. Each
/// workload is an ONNX graph built here (<see cref="OnnxGraph"/>) on Kiln's inputs, activations as runtime inputs and
/// weights as initializers; timed runs reuse bound input and output buffers.
/// </summary>
public static class Program
{
    /// <summary>Runs the line protocol on stdin and stdout; exit 0, or 3 when ONNX Runtime cannot load.</summary>
    public static int Main(string[] args)
    {
        int threads = PeerProtocol.Threads(args, "Kiln.Bench.Onnx");
        string version;
        try { version = OrtEnv.Instance().GetVersionString(); }
        catch (Exception ex) when (ex is TypeInitializationException or DllNotFoundException or EntryPointNotFoundException or OnnxRuntimeException)
        {
            var inner = ex;
            while (inner.InnerException is not null) inner = inner.InnerException;
            PeerProtocol.Reply(new() { ["error"] = "ONNX Runtime did not load: " + inner.Message.Split('\n')[0].Trim() });
            return 3;
        }
        PeerProtocol.Reply(new()
        {
            ["peer"] = "onnxruntime", ["version"] = version, ["threads"] = threads,
            ["config"] = $"MLAS, {string.Join(", ", OrtEnv.Instance().GetAvailableProviders())}, intra-op {threads}, inter-op 1, sequential, graph optimization all",
        });
        PeerProtocol.Serve("onnxruntime", (name, inputs) => Prepare(name, inputs, threads));
        return 0;
    }

    static PeerCase? Prepare(string name, IReadOnlyDictionary<string, PeerInput> I, int threads)
    {
        var g = new OnnxGraph();
        var runtime = new List<PeerInput>();
        string In(string n) { runtime.Add(I[n]); return g.Input(n, I[n].Shape); }
        string W(string n) => g.Initializer(n, I[n].Shape, I[n].Floats());
        bool Is(string prefix) => name.StartsWith(prefix, StringComparison.Ordinal);
        string output;
        if (Is("sgemm_")) output = g.Node("MatMul", [In("a"), In("b")]);
        // Decoding: the weight is a constant, as in a deployed model (ONNX Runtime pre-packs it).
        else if (Is("matvec_") && !Is("matvec_bf16_")) output = g.Node("MatMul", [In("a"), W("b")]);
        else if (Is("linear_") && !Is("linear_bf16_")) output = g.Node("Gemm", [In("x"), W("w")], ints: [("transB", 1)]);
        else if (name == "softmax_4096x4096") output = g.Node("Softmax", [In("x")], ints: [("axis", -1)]);
        else if (Is("layer_norm_")) output = g.Node("LayerNormalization", [In("x"), W("w"), W("b")], ints: [("axis", -1)], floats: [("epsilon", 1e-5f)]);
        else if (name == "gelu_16M") output = g.Node("Gelu", [In("x")]);
        else if (Is("causal_attention_") && !name.EndsWith("_fwdbwd", StringComparison.Ordinal))
            output = g.Node("Attention", [In("q"), In("k"), In("v")], ints: [("is_causal", 1)], floats: [("scale", 0.125f)]);
        else if (name == "decoder_4x_d512_h8_t512") output = Decoder(g, I, In("x"));
        else return null;
        return Case(g.Model(output), runtime, threads);
    }

    // Kiln.NN's TransformerBlock x 4 without RoPE, as torch.onnx would export it: h = x + attn(ln1(x)) Woᵀ with the
    // fused causal Attention on [1, T, 512] (8 heads), then h + gelu(ln2(h) fc1ᵀ + b1) fc2ᵀ + b2. Linear weights
    // ([out, in], Kiln's layout) become MatMul initializers [in, out], transposed here once.
    static string Decoder(OnnxGraph g, IReadOnlyDictionary<string, PeerInput> I, string x)
    {
        string Wt(string n)
        {
            var p = I[n];
            int rows = (int)p.Shape[0], cols = (int)p.Shape[1];
            float[] w = p.Floats(), t = new float[w.Length];
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
            return g.Initializer(n + ".T", [cols, rows], t);
        }
        string V(string n) => g.Initializer(n, I[n].Shape, I[n].Floats());
        string Ln(string h, string p) => g.Node("LayerNormalization", [h, V(p + ".w"), V(p + ".b")], ints: [("axis", -1)], floats: [("epsilon", 1e-5f)]);
        for (int i = 0; I.ContainsKey($"{i}.wq"); i++)
        {
            string n = Ln(x, $"{i}.ln1");
            string a = g.Node("Attention", [g.Node("MatMul", [n, Wt($"{i}.wq")]), g.Node("MatMul", [n, Wt($"{i}.wk")]), g.Node("MatMul", [n, Wt($"{i}.wv")])],
                ints: [("is_causal", 1), ("q_num_heads", 8), ("kv_num_heads", 8)]);
            string h = g.Node("Add", [x, g.Node("MatMul", [a, Wt($"{i}.wo")])]);
            string f = g.Node("Gelu", [g.Node("Add", [g.Node("MatMul", [Ln(h, $"{i}.ln2"), Wt($"{i}.fc1.w")]), V($"{i}.fc1.b")])]);
            x = g.Node("Add", [h, g.Node("Add", [g.Node("MatMul", [f, Wt($"{i}.fc2.w")]), V($"{i}.fc2.b")])]);
        }
        return x;
    }

    // A session on Kiln's thread count; the first run gives the output's shape, then timed runs write into a bound buffer.
    static PeerCase Case(byte[] model, List<PeerInput> runtime, int threads)
    {
        var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL };
        var session = new InferenceSession(model, options);
        var inputs = runtime.Select(p => OrtValue.CreateTensorValueFromMemory(p.Floats(), p.Shape)).ToArray();
        var names = runtime.Select(p => p.Name).ToArray();
        string outName = session.OutputNames[0];
        float[] result;
        long[] shape;
        using (var first = session.Run(new RunOptions(), names, inputs, [outName]))
        {
            result = first[0].GetTensorDataAsSpan<float>().ToArray();
            shape = first[0].GetTensorTypeAndShape().Shape;
        }
        var output = OrtValue.CreateTensorValueFromMemory(result, shape);
        var run = new RunOptions();
        OrtValue[] outputs = [output];
        return new(() => session.Run(run, names, inputs, [outName], outputs), () => { session.Run(run, names, inputs, [outName], outputs); return result.ToArray(); },
            [.. inputs, output, run, session, options]);
    }
}
