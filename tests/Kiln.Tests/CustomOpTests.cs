using ILGPU;
using ILGPU.Algorithms;
using Kiln.Gpu;
using Kiln.Kernels.Gpu;
using Kiln.Ops;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>The extension API: a user-defined op runs on every device with its kernel, records on the tape, and fails clearly.</summary>
public class CustomOpTests
{
    static void Body(Index1D i, ArrayView<double> a, ArrayView<double> b, ArrayView<double> y) => y[i] = a[i] * XMath.Sin(b[i]);

    static readonly Kernel<ArrayView<double>, ArrayView<double>, ArrayView<double>> SinMul = new("test.sin_mul.f64", Body);

    /// <summary>y = a sin(b), Float64, with a CPU kernel, an ILGPU kernel and its gradient.</summary>
    static readonly CustomOp Op = (CustomOp)new CustomOp("test.sin_mul", 2, (x, _) => [.. x[0].Select((a, i) => a * Math.Sin(x[1][i]))], dtypes: [DType.Float64])
    {
        Gradient = (x, y, g, _) => [g * x[1].Sin(), g * x[0] * x[1].Cos()],
    }
        .Cpu<double>(k => { ReadOnlySpan<double> a = k.Input(0), b = k.Input(1); var y = k.Output; for (int i = 0; i < y.Length; i++) y[i] = a[i] * Math.Sin(b[i]); })
        .Ilgpu(c => SinMul.Launch(c.Host, c.Output.Numel, c.View<double>(c.Inputs[0]), c.View<double>(c.Inputs[1]), c.View<double>(c.Output)), SinMul);

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Runs_and_validates_on_every_device_with_broadcasting(string device)
    {
        var dev = Devices.Parse(device);
        var rows = Conformance.Validate(Op, [dev], cases: 8);
        Assert.All(rows, r => Assert.True(r.Pass, r.Result.Detail));
        var a = Tensor.Randn([3, 4], new Generator(1), dtype: DType.Float64);
        var b = Tensor.Randn([4], new Generator(2), dtype: DType.Float64);
        var y = Op.Apply(a.To(dev), b.To(dev));
        Close.Check(a * b.Sin(), y.To(Device.Cpu), 1e-12, 1e-14, "sin_mul");
    }

    [Fact]
    public void Records_on_the_tape_and_its_gradient_matches_finite_differences()
    {
        var a = Tensor.Randn([3, 4], new Generator(3), dtype: DType.Float64);
        var b = Tensor.Randn([3, 4], new Generator(4), dtype: DType.Float64);
        var r = GradCheck.Run(x => Op.Apply(x[0], x[1]) * x[0], [a, b]);
        Assert.True(r.Passed, r.ToString());
    }

    [Fact]
    public void Bad_calls_fail_with_messages_that_name_the_fault()
    {
        var a = Tensor.Ones([2], DType.Float64);
        Assert.Contains("takes 2 inputs, got 1", Assert.Throws<ArgumentException>(() => Op.Apply(a)).Message);
        Assert.Contains("runs in Float64", Assert.Throws<NotSupportedException>(() => Op.Apply(Tensor.Ones([2]), Tensor.Ones([2]))).Message);
        var cpuOnly = new CustomOp("test.cpu_only", 1, (x, _) => x[0], dtypes: [DType.Float64]).Cpu<double>(k => k.Input(0).CopyTo(k.Output));
        var dev = Devices.All.First(d => d.Kind == DeviceKind.IlgpuCpu);
        var e = Assert.Throws<NotSupportedException>(() => cpuOnly.Apply(a.To(dev)));
        Assert.Contains("no kernel for device ilgpucpu:0", e.Message);
        Assert.Throws<ShapeMismatchException>(() => Op.Apply(Tensor.Ones([2], DType.Float64), Tensor.Ones([3], DType.Float64)));
        var clash = new CustomOp("unary.exp", 1, (x, _) => x[0]);
        Assert.Contains("already defined", Assert.Throws<ArgumentException>(() => clash.Register()).Message);
    }
}
