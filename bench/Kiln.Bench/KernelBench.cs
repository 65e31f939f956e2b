using BenchmarkDotNet.Attributes;
using Kiln;
using Kiln.Kernels.Cpu;

// Kernel-level suites: the packed GEMM, fused attention and memory-bound rows (the peer comparison is `kiln bench`).
// dotnet run -c Release --project bench/Kiln.Bench -- --filter '*Gemm*'

/// <summary>The packed SGEMM kernel on square sizes and the odd ones, into a preallocated C (no allocation in the loop).</summary>
[MemoryDiagnoser]
public class GemmBench
{
    [Params(256, 512, 1000, 1023, 1024, 2048)]
    public int N;

    [Params(GemmKernel.Vector512, GemmKernel.Vector256)]
    public GemmKernel Kernel;

    float[] _a = [], _b = [], _c = [];

    [GlobalSetup]
    public void Setup()
    {
        var r = new Random(1);
        _a = Enumerable.Range(0, N * N).Select(_ => (float)r.NextDouble()).ToArray();
        _b = Enumerable.Range(0, N * N).Select(_ => (float)r.NextDouble()).ToArray();
        _c = new float[N * N];
    }

    [Benchmark]
    public void Sgemm() => Gemm.Run(N, N, N, 1f, _a, 0, N, 1, _b, 0, N, 1, 0f, _c, 0, N, Kernel);

    [Benchmark]
    public void SgemmTransposedB() => Gemm.Run(N, N, N, 1f, _a, 0, N, 1, _b, 0, 1, N, 0f, _c, 0, N, Kernel);
}

/// <summary>Fused causal attention, heads 8, T 512, d 64 (forward, and forward + backward).</summary>
public class AttentionBench
{
    Tensor _q = null!, _k = null!, _v = null!;

    [GlobalSetup]
    public void Setup()
    {
        var g = new Generator(1);
        (_q, _k, _v) = (Tensor.Randn([8, 512, 64], g), Tensor.Randn([8, 512, 64], g), Tensor.Randn([8, 512, 64], g));
    }

    [Benchmark]
    public void Forward()
    {
        using var s = Tensor.Scope();
        using var ng = Autograd.NoGrad();
        Tensor.ScaledDotProductAttention(_q, _k, _v, causal: true);
    }

    [Benchmark]
    public void ForwardBackward()
    {
        using var s = Tensor.Scope();
        var q = _q.Detach().RequiresGrad_();
        Tensor.ScaledDotProductAttention(q, _k, _v, causal: true).Sum().Backward();
    }
}

/// <summary>Memory-bound rows: elementwise add, sum, softmax and layer norm on 16M floats.</summary>
public class RowsBench
{
    Tensor _x = null!, _y = null!, _w = null!, _b = null!;

    [GlobalSetup]
    public void Setup()
    {
        _x = Tensor.Randn([4096, 4096], new Generator(2)); _y = _x.Clone();
        _w = Tensor.Ones([4096]); _b = Tensor.Zeros([4096]);
    }

    [Benchmark] public void AddInPlace() => _y.Add_(_x);
    [Benchmark] public void Sum() { using var s = Tensor.Scope(); _x.Sum(); }
    [Benchmark] public void Softmax() { using var s = Tensor.Scope(); _x.Softmax(-1); }
    [Benchmark] public void LayerNorm() { using var s = Tensor.Scope(); _x.LayerNorm(_w, _b); }
}
