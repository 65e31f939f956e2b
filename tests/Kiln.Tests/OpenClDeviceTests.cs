using Kiln.Backends;
using Kiln.Gpu;
using Kiln.Kernels.Gpu;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// The OpenCL device (PoCL on CI, driven through the OpenCL API with SPIR from clang-15): present when the machine has
/// a driver, clear errors otherwise. The kernels themselves are checked by every property test that runs on
/// <see cref="Devices.All"/>, and by <c>kiln validate</c>.
/// </summary>
public class OpenClDeviceTests
{
    static Device? OpenCl => Devices.All.Cast<Device?>().FirstOrDefault(d => d!.Value.Kind == DeviceKind.OpenCL);

    [SkippableFact]
    public void An_opencl_device_is_registered_when_a_driver_is_present()
    {
        Skip.If(OpenCl is null, "no OpenCL device: " + DeviceSetup.OpenClMissing);
        var backend = (IlgpuBackend)BackendRegistry.Get(OpenCl!.Value);
        Assert.StartsWith("OpenCL ", backend.Driver.Name);
        Assert.False(backend.Driver.SupportsWarp);
        var x = Tensor.Arange(0, 10, 1, DType.Float64, OpenCl.Value);
        Assert.Equal(Enumerable.Range(0, 10).Select(i => 2.0 * i + 1), (x * 2.0 + 1.0).ToDoubleArray());
    }

    [Fact]
    public void Missing_opencl_device_is_a_clear_not_supported_error()
    {
        int n = KilnGpu.OpenClDeviceCount();
        var e = Assert.Throws<NotSupportedException>(() => KilnGpu.CreateOpenCl(n));
        Assert.Contains("OpenCL", e.Message);
        Assert.Throws<NotSupportedException>(() => KilnGpu.CreateOpenCl(-1));
    }

    [SkippableFact]
    public void Arguments_that_do_not_match_the_kernel_are_rejected_before_launch()
    {
        Skip.If(OpenCl is null, "no OpenCL device: " + DeviceSetup.OpenClMissing);
        var driver = ((IlgpuBackend)BackendRegistry.Get(OpenCl!.Value)).Driver;
        var fill = KernelCatalog.All.First(k => k.Name == "elementwise.fill.f32");
        using var buf = driver.Allocate(64);
        var view = new DeviceView(buf, typeof(float), 16);
        var strides = Strides6.From([1], 0);
        var dims = Dims6.From([16]);
        var few = Assert.Throws<ArgumentException>(() => driver.Launch(fill, 16, view, strides, dims));
        Assert.Contains("takes 4 arguments, got 3", few.Message);
        var wrongType = Assert.Throws<ArgumentException>(() => driver.Launch(fill, 16, view, strides, dims, 1.0));
        Assert.Contains("Double for a float", wrongType.Message);
        var wrongElement = Assert.Throws<ArgumentException>(() => driver.Launch(fill, 16, new DeviceView(buf, typeof(double), 8), strides, dims, 1f));
        Assert.Contains("4-byte elements", wrongElement.Message);
        var wrongStruct = Assert.Throws<ArgumentException>(() => driver.Launch(fill, 16, view, dims, dims, 1f));
        Assert.Contains("scalar fields", wrongStruct.Message);
        driver.Launch(fill, 16, view, strides, dims, 3f);
        var host = new float[16];
        driver.Read(buf, host, 16);
        Assert.All(host, v => Assert.Equal(3f, v));
    }
}
