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
/// Kiln's side of one workload of ../shared/peers/peer_bench.py: its name there, the work per run (the numerator of
/// <see cref="Unit"/>: GFLOP, GB or samples), and a factory that allocates the inputs and returns the timed action.
/// </summary>
/// <param name="Name">The workload's name in peer_bench.py.</param>
/// <param name="Amount">Work per run in the numerator of <paramref name="Unit"/> (GFLOP for GFLOP/s, GB for GB/s, samples for samples/s).</param>
/// <param name="Unit">The rate's unit: "GFLOP/s", "GB/s" or "samples/s".</param>
/// <param name="Setup">Allocates the inputs on a device and returns one run of the workload there.</param>
/// <param name="Gemm">For SGEMM, its shape, which also gets a one-core CPU-time comparison; otherwise null.</param>
public sealed record Workload(string Name, double Amount, string Unit, Func<Device, Action> Setup, GemmShape? Gemm = null);

/// <summary>The workloads `kiln bench` times, in run order, and look-up by name.</summary>
public static class Workloads
{
    /// <summary>
    /// Every workload, in run order. Names match peer_bench.py; sgemm_1000, sgemm_4097x64 and the conv2d ones are added to the peer by
    /// <see cref="PeerRunner"/>.
    /// </summary>
    public static IReadOnlyList<Workload> All { get; } =
    [
        Sgemm("sgemm_256", 256, 256, 256), Sgemm("sgemm_512", 512, 512, 512), Sgemm("sgemm_1024", 1024, 1024, 1024),
        Sgemm("sgemm_2048", 2048, 2048, 2048), Sgemm("sgemm_1000", 1000, 1000, 1000), Sgemm("sgemm_1023", 1023, 1023, 1023),
        // A 4097-square matrix times a 64-column panel: ragged M and K with a narrow N.
        Sgemm("sgemm_4097x64", 4097, 64, 4097),
        new("add_16M", 3 * 16 * 1024 * 1024 * 4 / 1e9, "GB/s", dev =>
        {
            // x + x in place, as the peer's add(x, x, out=y): one array read, one written (the values double each run).
            var x = Tensor.Randn([16 * 1024 * 1024], new Generator(1), device: dev);
            return () => x.Add_(x);
        }),
        new("sum_16M", 16 * 1024 * 1024 * 4 / 1e9, "GB/s", dev =>
        {
            var x = Tensor.Randn([16 * 1024 * 1024], new Generator(2), device: dev);
            return () => { using var s = Tensor.Scope(); x.Sum(); };
        }),
        new("softmax_4096x4096", 2 * 4096 * 4096 * 4 / 1e9, "GB/s", dev =>
        {
            var x = Tensor.Randn([4096, 4096], new Generator(3), device: dev);
            return () => { using var s = Tensor.Scope(); x.Softmax(-1); };
        }),
        new("layer_norm_4096x4096", 2 * 4096 * 4096 * 4 / 1e9, "GB/s", dev =>
        {
            var x = Tensor.Randn([4096, 4096], new Generator(4), device: dev); var w = Tensor.Ones([4096], device: dev); var b = Tensor.Zeros([4096], device: dev);
            return () => { using var s = Tensor.Scope(); x.LayerNorm(w, b); };
        }),
        new("mlp_train_step_784_1024_1024_10_b256_adam", 256, "samples/s", MlpStep),
        new("causal_attention_h8_t512_d64", 2.0 * 2 * 8 * 512 * 512 * 64 / 1e9, "GFLOP/s", dev =>
        {
            var g = new Generator(5);
            var (q, k, v) = (Tensor.Randn([1, 8, 512, 64], g, device: dev), Tensor.Randn([1, 8, 512, 64], g, device: dev), Tensor.Randn([1, 8, 512, 64], g, device: dev));
            return () => { using var s = Tensor.Scope(); using var ng = Autograd.NoGrad(); Tensor.ScaledDotProductAttention(q, k, v, causal: true, scale: 1.0 / 8); };
        }),
        .. ConvWorkloads(),
    ];

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
        return () => { using var s = Tensor.Scope(); a.MatMul(b); };
    }, new GemmShape(m, n, k));

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
        return new(name, flops / 1e9, "GFLOP/s", dev =>
        {
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
        });
    }

    // PyTorch's nn.Sequential(Linear 784-1024, ReLU, Linear 1024-1024, ReLU, Linear 1024-10), cross-entropy and
    // Adam(1e-3), with the same pieces of Kiln.NN a user would write: MLP, Losses.CrossEntropy, Adam, a scope per step.
    static Action MlpStep(Device dev)
    {
        var g = new Generator(0);
        var model = new NN.MLP([784, 1024, 1024, 10], generator: g, device: dev);
        var opt = new NN.Adam(model.Parameters(), 1e-3);
        var x = Tensor.Randn([256, 784], g, device: dev);
        var y = Tensor.RandInt([256], 0, 10, g, device: dev);
        return () =>
        {
            using var scope = Tensor.Scope();
            opt.ZeroGrad();
            NN.Losses.CrossEntropy(model.Forward(x), y).Backward();
            opt.Step();
        };
    }
}
