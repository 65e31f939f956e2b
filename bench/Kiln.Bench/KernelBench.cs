using BenchmarkDotNet.Attributes;
using Kiln;
using Kiln.Bench;
using Kiln.Kernels.Cpu;

// Kernel-level suites: the packed GEMM and its A packing, fused attention and memory-bound rows (the peer comparison is `kiln bench`).
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

/// <summary>
/// Packing one MC x KC block of a row-major A (192 x 512, leading dimension 4097 as in sgemm_4097x64) into the
/// micro-kernel's 6-row panels: the AVX-512 permute path against the unrolled scalar copy it replaced.
/// </summary>
public unsafe class PackABench
{
    const int Mc = 192, Kc = 512, Lda = 4097;
    float[] _a = [], _packed = [];

    [GlobalSetup]
    public void Setup()
    {
        _a = Enumerable.Range(0, Mc * Lda).Select(i => (float)i).ToArray();
        _packed = new float[Mc * Kc];
    }

    [Benchmark]
    public void PackA() { fixed (float* a = _a, d = _packed) Pack.A(Kc, Mc, 6, a, Lda, 1, d); }

    [Benchmark(Baseline = true)]
    public void ScalarCopy()
    {
        // The unrolled scalar loop Pack.A used before (six row pointers, six moves per k).
        fixed (float* a = _a, d0 = _packed)
            for (int i0 = 0; i0 < Mc; i0 += 6)
            {
                float* d = d0 + i0 * Kc, r0 = a + i0 * Lda, r1 = r0 + Lda, r2 = r1 + Lda, r3 = r2 + Lda, r4 = r3 + Lda, r5 = r4 + Lda;
                for (int p = 0; p < Kc; p++, d += 6) { d[0] = r0[p]; d[1] = r1[p]; d[2] = r2[p]; d[3] = r3[p]; d[4] = r4[p]; d[5] = r5[p]; }
            }
    }
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

/// <summary>
/// Memory-bound rows on 16M floats, as `kiln bench` times them (<see cref="Workloads"/>): x + x in place, sum, softmax
/// and layer norm over rows of 4096.
/// </summary>
public class RowsBench
{
    Action _run = null!;

    [GlobalSetup(Target = nameof(AddInPlace))] public void SetupAdd() => _run = Workloads.Get("add_16M").Setup(Kiln.Device.Cpu);
    [GlobalSetup(Target = nameof(Sum))] public void SetupSum() => _run = Workloads.Get("sum_16M").Setup(Kiln.Device.Cpu);
    [GlobalSetup(Target = nameof(Softmax))] public void SetupSoftmax() => _run = Workloads.Get("softmax_4096x4096").Setup(Kiln.Device.Cpu);
    [GlobalSetup(Target = nameof(LayerNorm))] public void SetupLayerNorm() => _run = Workloads.Get("layer_norm_4096x4096").Setup(Kiln.Device.Cpu);

    [Benchmark] public void AddInPlace() => _run();
    [Benchmark] public void Sum() => _run();
    [Benchmark] public void Softmax() => _run();
    [Benchmark] public void LayerNorm() => _run();
}
