using ILGPU;
using Kiln.Gpu;
using Kiln.Gpu.OpenCl;
using Kiln.Kernels;
using Kiln.Kernels.Gpu;
using Kiln.Methods;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// The OpenCL driver's program paths: the choice for the devices of each vendor (from what they report), and on PoCL both
/// the SPIR path (the default there, which every OpenCL property test runs) and the source path, forced, building kernels
/// of every family and computing the right numbers.
/// </summary>
public class OpenClPathTests
{
    // What each kind of device reports (CL_DEVICE_VERSION, CL_DEVICE_OPENCL_C_VERSION, extensions, IL version, generic address space).
    static readonly ClDeviceCaps Pocl = new("pthread-cpu", "AuthenticAMD", "OpenCL 3.0 PoCL", "OpenCL C 1.2 PoCL", ["cl_khr_fp64", "cl_khr_spir"], "", false);
    static readonly ClDeviceCaps Nvidia = new("NVIDIA H200", "NVIDIA Corporation", "OpenCL 3.0 CUDA", "OpenCL C 1.2 ", ["cl_khr_fp64", "cl_khr_int64_base_atomics"], "", false);
    static readonly ClDeviceCaps Amd = new("gfx90a:sramecc+:xnack-", "Advanced Micro Devices, Inc.", "OpenCL 2.0 AMD-APP (3614.0)", "OpenCL C 2.0 ", ["cl_khr_fp64"], "", false);
    static readonly ClDeviceCaps Intel = new("Intel(R) Arc(TM) A770", "Intel(R) Corporation", "OpenCL 3.0 NEO", "OpenCL C 1.2 ", ["cl_khr_fp64", "cl_khr_il_program"], "SPIR-V_1.0 SPIR-V_1.1 SPIR-V_1.2", true);

    static OpenClProgramPath? Auto(ClDeviceCaps d) => OpenClPathChooser.Choose(d, null, ilEntryPoint: true).Path;

    [Fact]
    public void Nvidia_takes_opencl_c_source_as_1_2_with_views_in_global_memory()
    {
        var (path, reason) = OpenClPathChooser.Choose(Nvidia, null, ilEntryPoint: true);
        Assert.Equal(OpenClProgramPath.Source, path);
        Assert.Contains("no cl_khr_spir", reason);
        Assert.Contains("no SPIR-V IL", reason);
        Assert.Contains("OpenCL C 1.2", reason);
        Assert.Equal("-w", OpenClPathChooser.SourceOptions(Nvidia));   // the driver's default language, OpenCL C 1.2
        string source = KernelEmitter.OpenCL(ReduceKernels<float, F32>.Rows);
        Assert.Contains("__generic", source);
        Assert.Contains("work_group_barrier", source);
        string c12 = OpenClPathChooser.SourceFor(Nvidia, source);
        Assert.DoesNotContain("__generic", c12);
        Assert.DoesNotContain("work_group_barrier", c12);
        static int Count(string text, string word) => System.Text.RegularExpressions.Regex.Matches(text, $@"\b{word}\b").Count;
        Assert.Equal(Count(source, "__generic"), Count(c12, "__global") - Count(source, "__global"));
        Assert.Equal(Count(source, "work_group_barrier"), Count(c12, "barrier") - Count(source, "barrier"));
        Assert.Same(source, OpenClPathChooser.SourceFor(Amd, source));
    }

    [Fact]
    public void Amd_takes_the_source_unchanged_as_opencl_c_2_0()
    {
        Assert.Equal(OpenClProgramPath.Source, Auto(Amd));
        Assert.Equal("-cl-std=CL2.0 -w", OpenClPathChooser.SourceOptions(Amd));
        // An OpenCL 3.0 device with the generic address space reports OpenCL C 1.2 yet compiles the source as 3.0.
        Assert.Equal("-cl-std=CL3.0 -w", OpenClPathChooser.SourceOptions(Intel));
    }

    [Fact]
    public void Spir_devices_take_spir_and_spirv_devices_take_il_when_the_tools_are_there()
    {
        Assert.Equal(SpirCompiler.Clang is null ? OpenClProgramPath.Source : OpenClProgramPath.Spir, Auto(Pocl));
        Assert.Equal(SpirVCompiler.MissingReason is null ? OpenClProgramPath.SpirV : OpenClProgramPath.Source, Auto(Intel));
        // Without clCreateProgramWithIL in the ICD loader, the SPIR-V device falls back to source and says why.
        var (path, reason) = OpenClPathChooser.Choose(Intel, null, ilEntryPoint: false);
        Assert.Equal(OpenClProgramPath.Source, path);
        Assert.Contains("clCreateProgramWithIL", reason);
    }

    [Fact]
    public void A_forced_path_the_device_cannot_take_is_none_with_the_reason()
    {
        var (path, reason) = OpenClPathChooser.Choose(Pocl, OpenClProgramPath.SpirV, ilEntryPoint: true);
        Assert.Null(path);
        Assert.Equal("spirv forced by the caller, but the device has no SPIR-V IL version", reason);
        Assert.Null(OpenClPathChooser.Choose(Nvidia, OpenClProgramPath.Spir, ilEntryPoint: true).Path);
        Assert.Equal(OpenClProgramPath.Source, OpenClPathChooser.Choose(Pocl, OpenClProgramPath.Source, ilEntryPoint: true).Path);
    }

    [Fact]
    public void The_environment_variable_takes_spir_spirv_or_source_only()
    {
        Assert.Equal(OpenClProgramPath.SpirV, OpenClPathChooser.Parse(" SPIRV "));
        Assert.Null(OpenClPathChooser.Parse(""));
        var e = Assert.Throws<ArgumentException>(() => OpenClPathChooser.Parse("ptx"));
        Assert.Contains("KILN_OPENCL_PATH='ptx'", e.Message);
    }

    [SkippableFact]
    public void Devices_are_listed_with_their_path_and_reason()
    {
        var devices = KilnGpu.OpenClDevices();
        Skip.If(devices.Count == 0, "no OpenCL device (Debian: apt-get install pocl-opencl-icd ocl-icd-libopencl1)");
        Assert.Equal(KilnGpu.OpenClDeviceCount(), devices.Count);
        for (int i = 0; i < devices.Count; i++)
        {
            Assert.Equal($"opencl:{i}", devices[i].Spec);
            Assert.False(string.IsNullOrWhiteSpace(devices[i].Name));
            Assert.False(string.IsNullOrWhiteSpace(devices[i].Reason));
        }
    }

    static bool PoclPresent => KilnGpu.OpenClDevices().FirstOrDefault() is { } d && d.Name.Contains("pthread", StringComparison.Ordinal);

    [SkippableFact]
    public void Source_path_on_pocl_builds_every_family_and_computes_right()
    {
        Skip.If(!PoclPresent, "no PoCL device (Debian: apt-get install pocl-opencl-icd ocl-icd-libopencl1)");
        using var driver = KilnGpu.OpenOpenCl(0, OpenClProgramPath.Source);
        Assert.Equal(OpenClProgramPath.Source, driver.Path);
        Assert.Contains("forced by the caller", driver.PathReason);
        Assert.Contains(", source)", driver.Name);

        _ = MethodOps.All;
        foreach (var k in KernelCatalog.All.Where(k => !k.NeedsWarp).GroupBy(k => k.Family).SelectMany(g => new[] { g.First(), g.Last() }).Distinct())
            k.Prepare(driver);

        // A one-thread-per-element kernel and a grouped one with shared memory and barriers (work_group_barrier as barrier).
        using var buf = driver.Allocate(16 * sizeof(float));
        var view = new DeviceView<float>(buf, 16);
        ElementwiseKernels<float>.Fill.Launch(driver, 16, view, Strides6.From([1], 0), Dims6.From([16]), 3f);
        var filled = new float[16];
        driver.Read(buf, filled, 16);
        Assert.All(filled, v => Assert.Equal(3f, v));

        const int rows = 3, len = 1000;
        var x = Enumerable.Range(0, rows * len).Select(i => (double)(i % len + 1) * (i / len + 1)).ToArray();
        using var xb = driver.Allocate(x.Length * sizeof(double));
        using var yb = driver.Allocate(rows * sizeof(double));
        driver.Write(xb, x, x.Length);
        ReduceKernels<double, F64>.Rows.Launch(driver, new Index3D(rows, 1, 1), new Index3D(64, 1, 1),
            new DeviceView<double>(xb, x.Length), 0, len, new DeviceView<double>(yb, rows), 0, (int)ReduceOp.Sum);
        var sums = new double[rows];
        driver.Read(yb, sums, rows);
        Assert.Equal(Enumerable.Range(1, rows).Select(r => r * len * (len + 1) / 2.0), sums);
    }

    [SkippableFact]
    public void Spirv_forced_on_pocl_is_refused_with_the_reason()
    {
        Skip.If(!PoclPresent, "no PoCL device (Debian: apt-get install pocl-opencl-icd ocl-icd-libopencl1)");
        var e = Assert.Throws<NotSupportedException>(() => KilnGpu.OpenOpenCl(0, OpenClProgramPath.SpirV));
        Assert.Contains("spirv forced by the caller, but the device has no SPIR-V IL version", e.Message);
    }
}
