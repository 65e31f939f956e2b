using System.Runtime.InteropServices;
using Kiln.Bench;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Kiln.Bench.Torch;

/// <summary>
/// libtorch 2 (through TorchSharp) as a peer of `kiln bench`. The harness (<c>TorchPeer</c>) starts it as
/// <c>dotnet Kiln.Bench.Torch.dll --threads N</c>; it prints one JSON hello (version, threads, build configuration) or
/// <c>{"error"}</c>, then speaks <see cref="PeerProtocol"/> (prepare a workload on Kiln's inputs, time it, quit), each
/// workload as a PyTorch user writes it.
/// </summary>
public static class Program
{
    /// <summary>Runs the line protocol on stdin and stdout; exit 0, or 3 when libtorch cannot load.</summary>
    public static int Main(string[] args)
    {
        int threads = PeerProtocol.Threads(args, "Kiln.Bench.Torch");
        try { LoadGlibcxxShim(); Hello(threads); }
        catch (Exception ex) when (ex is TypeInitializationException or DllNotFoundException or EntryPointNotFoundException or InvalidOperationException)
        {
            var inner = ex;
            while (inner.InnerException is not null) inner = inner.InnerException;
            PeerProtocol.Reply(new() { ["error"] = "libtorch did not load: " + inner.Message.Split('\n')[0].Trim() });
            return 3;
        }
        PeerProtocol.Serve("libtorch", (name, inputs) =>
        {
            var tensors = inputs.Values.ToDictionary(p => p.Name, ToTensor);
            if (Prepare(name, tensors) is not { } c)
            {
                foreach (var t in tensors.Values) t.Dispose();
                return null;
            }
            // Each run's temporaries, and the output once copied out, are freed by a dispose scope.
            return new PeerCase(() => { using var scope = NewDisposeScope(); c.Run(); }, () =>
            {
                using var scope = NewDisposeScope();
                return c.Output().to(ScalarType.Float32).contiguous().data<float>().ToArray();
            }, [c]);
        });
        return 0;
    }

    // TorchSharp's glue (libLibTorchSharp.so) is built with GCC 13 and needs one GLIBCXX_3.4.32 symbol that Debian 12's
    // libstdc++ lacks; bench/setup-peers.sh builds a shim that defines it and marks that version need weak. The shim must be
    // loaded with RTLD_GLOBAL before libtorch, so its symbol resolves the glue's reference (NativeLibrary loads locally).
    static void LoadGlibcxxShim()
    {
        var shim = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libglibcxx_3_4_32_shim.so");
        if (File.Exists(shim) && DlOpen(shim, RtldNow | RtldGlobal) == IntPtr.Zero)
            throw new InvalidOperationException($"could not load {shim}: {Marshal.PtrToStringUTF8(DlError())}");
    }

    const int RtldNow = 2, RtldGlobal = 0x100;
    [DllImport("libc", EntryPoint = "dlopen")] static extern IntPtr DlOpen(string path, int flags);
    [DllImport("libc", EntryPoint = "dlerror")] static extern IntPtr DlError();

    static void Hello(int threads)
    {
        set_num_threads(threads);
        set_num_interop_threads(1);
        PeerProtocol.Reply(new()
        {
            ["peer"] = "libtorch", ["version"] = __version__, ["torchsharp"] = typeof(torch).Assembly.GetName().Version!.ToString(3),
            ["threads"] = get_num_threads(), ["config"] = ShowConfig(),
        });
    }

    // at::show_config() (torch.__config__.show() in Python: BLAS, oneDNN, OpenMP, CPU capability), which TorchSharp does
    // not wrap. It returns a std::string (libstdc++'s new ABI: data pointer, length, 16-byte buffer) through a hidden
    // result pointer, the first argument in the System V ABI.
    static unsafe string ShowConfig()
    {
        var s = stackalloc byte[32];
        ShowConfigNative(s);
        return Marshal.PtrToStringUTF8(*(IntPtr*)s, (int)*(long*)(s + 8));
    }

    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at11show_configB5cxx11Ev")] static extern unsafe void ShowConfigNative(byte* result);

    static Tensor ToTensor(PeerInput p) => p.DType switch
    {
        "float32" => tensor(p.Floats(), p.Shape),
        // A bfloat16 input travels as its float32 widening; rounding it back is exact.
        "bfloat16" => tensor(p.Floats(), p.Shape).to(ScalarType.BFloat16),
        _ => tensor(MemoryMarshal.Cast<byte, long>(p.Bytes).ToArray(), p.Shape),
    };

    /// <summary>A prepared workload: its timed run, the output compared with Kiln's, and the tensors it holds.</summary>
    sealed class Case(Action run, Func<Tensor> output, IEnumerable<IDisposable> held) : IDisposable
    {
        public Action Run { get; } = run;
        public Func<Tensor> Output { get; } = output;
        public void Dispose() { foreach (var h in held) h.Dispose(); }
    }

    // Each workload as a PyTorch user writes it, on the inputs Kiln wrote; names as in the harness's Workloads.cs.
    static Case? Prepare(string name, Dictionary<string, Tensor> I)
    {
        var held = I.Values.ToList();
        Case Make(Action run, Func<Tensor> output) => new(run, output, held);
        switch (name)
        {
            case var _ when name.StartsWith("sgemm_", StringComparison.Ordinal) || name.StartsWith("matvec_", StringComparison.Ordinal):
                return Make(() => I["a"].matmul(I["b"]), () => I["a"].matmul(I["b"]));
            case var _ when name.StartsWith("linear_", StringComparison.Ordinal):
                return Make(() => F.linear(I["x"], I["w"]), () => F.linear(I["x"], I["w"]));
            case "add_16M":
                return Make(() => I["x"].add_(I["x"]), () => I["x"].clone().add_(I["x"]));
            case "sum_16M":
                return Make(() => I["x"].sum(), () => I["x"].sum());
            case "copy_16M":
                return Make(() => I["y"].copy_(I["x"]), () => I["y"].copy_(I["x"]).clone());
            case "softmax_4096x4096":
                return Make(() => I["x"].softmax(-1), () => I["x"].softmax(-1));
            case var _ when name.StartsWith("layer_norm_", StringComparison.Ordinal):
                Tensor Ln() => F.layer_norm(I["x"], [I["x"].shape[^1]], I["w"], I["b"], 1e-5);
                return Make(() => Ln(), Ln);
            case "gelu_16M":
                return Make(() => F.gelu(I["x"]), () => F.gelu(I["x"]));
            case "silu_16M":
                return Make(() => F.silu(I["x"]), () => F.silu(I["x"]));
            case var _ when name.StartsWith("causal_attention_", StringComparison.Ordinal) && !name.EndsWith("_fwdbwd", StringComparison.Ordinal):
                Tensor Sdpa() { using var ng = no_grad(); return F.scaled_dot_product_attention(I["q"], I["k"], I["v"], null, 0, true); }
                return Make(() => Sdpa(), Sdpa);
            case var _ when name.StartsWith("causal_attention_", StringComparison.Ordinal):
                return AttentionBackward(I, held);
            case "mlp_train_step_784_1024_1024_10_b256_adam":
                return MlpStep(I, held);
            case "decoder_4x_d512_h8_t512":
                return Decoder(I, held);
            default:
                return null;
        }
    }

    static Case AttentionBackward(Dictionary<string, Tensor> I, List<Tensor> held)
    {
        var (q, k, v) = (I["q"].requires_grad_(), I["k"].requires_grad_(), I["v"].requires_grad_());
        var gy = I["gy"];
        void Step()
        {
            q.grad = null; k.grad = null; v.grad = null;
            F.scaled_dot_product_attention(q, k, v, null, 0, true).backward([gy]);
        }
        Tensor Output()
        {
            Step();
            Tensor o;
            using (no_grad()) o = F.scaled_dot_product_attention(q, k, v, null, 0, true);
            return cat([o.flatten(), q.grad!.flatten(), k.grad!.flatten(), v.grad!.flatten()]);
        }
        return new(Step, Output, held);
    }

    // nn.Sequential(Linear, ReLU, Linear, ReLU, Linear), cross-entropy, Adam(1e-3) with PyTorch's betas (0.9, 0.999):
    // TorchSharp's Adam defaults beta2 to 0.99.
    static Case MlpStep(Dictionary<string, Tensor> I, List<Tensor> held)
    {
        var ps = Enumerable.Range(0, 3).SelectMany(i => new[] { I[$"w{i}"], I[$"b{i}"] }).Select(t => new TorchSharp.Modules.Parameter(t)).ToArray();
        var opt = optim.Adam(ps, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8);
        Tensor Forward() => F.linear(F.relu(F.linear(F.relu(F.linear(I["x"], ps[0], ps[1])), ps[2], ps[3])), ps[4], ps[5]);
        void Step()
        {
            opt.zero_grad();
            F.cross_entropy(Forward(), I["y"]).backward();
            opt.step();
        }
        Tensor Output() { Step(); using var ng = no_grad(); return Forward(); }
        return new(Step, Output, [.. held, .. ps, opt]);
    }

    // 4 pre-norm blocks (Kiln.NN's TransformerBlock without RoPE): h = x + Wo sdpa(Wq n, Wk n, Wv n) with n = ln1(x),
    // then h + fc2(gelu(fc1(ln2(h)))); inference.
    static Case Decoder(Dictionary<string, Tensor> I, List<Tensor> held)
    {
        const int heads = 8;
        Tensor Forward()
        {
            using var ng = no_grad();
            var x = I["x"];
            long b = x.shape[0], t = x.shape[1], d = x.shape[2];
            Tensor Split(Tensor y) => y.view(b, t, heads, d / heads).transpose(1, 2);
            for (int i = 0; I.ContainsKey($"{i}.wq"); i++)
            {
                var n = F.layer_norm(x, [d], I[$"{i}.ln1.w"], I[$"{i}.ln1.b"], 1e-5);
                var o = F.scaled_dot_product_attention(Split(F.linear(n, I[$"{i}.wq"])), Split(F.linear(n, I[$"{i}.wk"])), Split(F.linear(n, I[$"{i}.wv"])), null, 0, true);
                var h = x + F.linear(o.transpose(1, 2).reshape(b, t, d), I[$"{i}.wo"]);
                var m = F.layer_norm(h, [d], I[$"{i}.ln2.w"], I[$"{i}.ln2.b"], 1e-5);
                x = h + F.linear(F.gelu(F.linear(m, I[$"{i}.fc1.w"], I[$"{i}.fc1.b"])), I[$"{i}.fc2.w"], I[$"{i}.fc2.b"]);
            }
            return x;
        }
        return new(() => Forward(), Forward, held);
    }
}
