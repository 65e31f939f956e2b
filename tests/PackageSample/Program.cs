using ILGPU;
using ILGPU.Algorithms;
using Kiln;
using Kiln.Gpu;
using Kiln.Kernels.Gpu;
using Kiln.Ops;

// SwiGLU, y = silu(a) * b, as a user-defined op: its float64 reference, a CPU kernel, an ILGPU kernel and its gradient.
var swiglu = new CustomOp("user.swiglu", inputs: 2, (x, _) => [.. x[0].Select((a, i) => a / (1 + Math.Exp(-a)) * x[1][i])], dtypes: [DType.Float32])
{
    Gradient = (x, y, g, _) => { var s = x[0].Sigmoid(); return [g * x[1] * s * (1.0 + x[0] * (1.0 - s)), g * x[0] * s]; },
}
    .Cpu<float>(k =>
    {
        ReadOnlySpan<float> a = k.Input(0), b = k.Input(1);
        var y = k.Output;
        for (int i = 0; i < y.Length; i++) y[i] = a[i] / (1 + MathF.Exp(-a[i])) * b[i];
    })
    .Ilgpu(c => UserKernels.SwiGlu.Launch(c.Host, c.Output.Numel, c.View<float>(c.Inputs[0]), c.View<float>(c.Inputs[1]), c.View<float>(c.Output)), UserKernels.SwiGlu)
    .Register();

// Run it on the CPU, ILGPU's CPU accelerator and the first OpenCL device, then validate it on all three in one call.
using var accelerator = KilnGpu.Open("ilgpu-cpu");
using var opencl = KilnGpu.Open("opencl:0");
var a = Tensor.Randn([2, 3], new Generator(1)).RequiresGrad_();
var b = Tensor.Randn([2, 3], new Generator(2));
swiglu.Apply(a, b).Sum().Backward();
Console.WriteLine($"grad of sum(swiglu(a, b)) in a: {a.Grad}");
Console.WriteLine($"swiglu on {opencl.Device}: {swiglu.Apply(a.Detach().To(opencl.Device), b.To(opencl.Device))}");
var report = Conformance.Validate(swiglu);
foreach (var r in report) Console.WriteLine($"{r.Device,-11} {r.DType,-8} {(r.Pass ? "pass" : "FAIL " + r.Failure)}: {ConformanceReport.Error(r)} within {r.Budget} over {r.Cases} cases, {r.Specials.Sum(s => s.Count)} special values, deterministic: {r.Deterministic}");
return report.All(r => r.Pass) ? 0 : 1;

static class UserKernels
{
    static void Body(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => y[i] = a[i] / (1 + XMath.Exp(-a[i])) * b[i];

    public static readonly Kernel<ArrayView<float>, ArrayView<float>, ArrayView<float>> SwiGlu = new("user.swiglu.f32", Body);
}
