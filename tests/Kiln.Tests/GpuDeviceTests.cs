using Kiln.Backends;
using Kiln.Gpu;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>Runs alone (after the parallel tests), so the device's pool counters see only this class's work.</summary>
[CollectionDefinition("ilgpu-exclusive", DisableParallelization = true)]
public class IlgpuExclusive;

/// <summary>Device placement, mixed-device errors, pooled memory and disposal of the ILGPU backend.</summary>
[Collection("ilgpu-exclusive")]
public class GpuDeviceTests
{
    static Device Gpu => Devices.All.First(d => d.Kind == DeviceKind.IlgpuCpu);

    [Fact]
    public void Mixed_devices_raise_a_clear_error()
    {
        var a = Tensor.Ones([3]).To(Gpu);
        var b = Tensor.Ones([3]);
        var e = Assert.Throws<ArgumentException>(() => a + b);
        Assert.Contains("cpu", e.Message);
        Assert.Contains(Gpu.ToString(), e.Message);
        Assert.Throws<ArgumentException>(() => a.MatMul(Tensor.Ones([3, 2])));
    }

    [Fact]
    public void To_device_round_trips_and_autodiff_runs_on_the_device()
    {
        var x = Tensor.FromArray(new[] { 1.0, -2.0, 3.0 }).To(Gpu).RequiresGrad_();
        var y = (x * x).Sum();
        y.Backward();
        Assert.Equal(Gpu, x.Grad!.Device);
        Assert.Equal(new[] { 2.0, -4.0, 6.0 }, x.Grad.To(Device.Cpu).ToArray<double>());
        Assert.Equal(14.0, y.Item());
    }

    [Fact]
    public void A_loop_that_disposes_its_temporaries_reuses_pooled_buffers()
    {
        var backend = (IlgpuBackend)BackendRegistry.Get(Gpu);
        var w = Tensor.Rand([16, 16], new Generator(1), device: Gpu);
        void Step() { using var scope = Tensor.Scope(); _ = (w.MatMul(w) + 1.0).Softmax(-1).Sum().Item(); }
        Step(); Step();
        long before = backend.Pool.Allocations;
        for (int i = 0; i < 10; i++) Step();
        Assert.Equal(before, backend.Pool.Allocations);
    }

    [Fact]
    public void Disposed_tensors_fail_loudly()
    {
        var t = Tensor.Ones([4]).To(Gpu);
        t.Dispose();
        Assert.Throws<ObjectDisposedException>(() => t.ToArray<float>());
    }

    [Fact]
    public void Missing_cuda_device_is_a_clear_not_supported_error()
    {
        int n = KilnGpu.CudaDeviceCount();
        var e = Assert.Throws<NotSupportedException>(() => KilnGpu.CreateCuda(n));
        Assert.Contains($"no CUDA device {n}", e.Message);
    }
}
