using ILGPU;
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
    public void Bound_arguments_that_do_not_match_the_emitted_kernel_are_rejected_before_launch()
    {
        // Typed launches make the C# arguments match the kernel; the binder still checks them against the OpenCL C that
        // ILGPU emitted, which is what a change in its code generation would break.
        Skip.If(OpenCl is null, "no OpenCL device: " + DeviceSetup.OpenClMissing);
        var driver = ((IlgpuBackend)BackendRegistry.Get(OpenCl!.Value)).Driver;
        var fill = ElementwiseKernels<float>.Fill;
        using var buf = driver.Allocate(64);
        var view = new DeviceView<float>(buf, 16);
        var strides = Strides6.From([1], 0);
        var dims = Dims6.From([16]);

        var few = driver.Bind(fill);
        few.Add<ArrayView<float>>(view); few.Add<Strides6>(strides); few.Add<Dims6>(dims);
        Assert.Contains("takes 4 arguments, got 3", Assert.Throws<ArgumentException>(() => few.Launch(16)).Message);
        var wrongElement = driver.Bind(fill);
        Assert.Contains("does not hold Double elements", Assert.Throws<ArgumentException>(() => wrongElement.Add<ArrayView<double>>(new DeviceView<double>(buf, 8))).Message);
        var wrongSize = driver.Bind(fill);
        wrongSize.Add<ArrayView<float>>(view);
        Assert.Contains("for the kernel's", Assert.Throws<ArgumentException>(() => wrongSize.Add<double>(1.0)).Message);

        fill.Launch(driver, 16, view, strides, dims, 3f);
        var host = new float[16];
        driver.Read(buf, host, 16);
        Assert.All(host, v => Assert.Equal(3f, v));
    }
}
