using Kiln.Gpu;
using Kiln.Kernels.Gpu;
using Kiln.Methods;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// Every catalog kernel compiles offline (no GPU): PTX for sm_60 and sm_90 and OpenCL C for every kernel the OpenCL path
/// uses. CompileTargetTests covers the other targets (AMD, NVIDIA nvptx64, SPIR) on a sample; CI compiles the full matrix.
/// </summary>
public class GpuEmissionTests
{
    // The method library's kernels (registered by its ops) are emitted with the built-in ones.
    static IReadOnlyList<GpuKernel> All { get { _ = MethodOps.All; return KernelCatalog.All; } }

    public static IEnumerable<object[]> Kernels => All.Select(k => new object[] { k.Name });
    public static IEnumerable<object[]> OpenClKernels => All.Where(k => !k.NeedsWarp).Select(k => new object[] { k.Name });

    static GpuKernel Get(string name) => All.First(k => k.Name == name);

    [Theory, MemberData(nameof(Kernels))]
    public void Emits_ptx_for_sm60_and_sm90(string name)
    {
        foreach (int sm in new[] { 60, 90 })
        {
            var ptx = KernelEmitter.Ptx(Get(name), sm);
            // ILGPU 1.5.3 writes at most `.target sm_80` (PTX for sm_80 is JIT-compiled forward on sm_86..sm_90);
            // the PTX ISA version is the one requested for the architecture.
            var target = System.Text.RegularExpressions.Regex.Match(ptx, @"\.target sm_(\d+)");
            Assert.True(target.Success, $"{name}: no .target line");
            Assert.Equal(Math.Min(sm, 80), int.Parse(target.Groups[1].Value));
            Assert.Contains($".version {KernelEmitter.PtxVersion(sm)}", ptx);
            Assert.Contains(".entry", ptx);
        }
    }

    [Theory, MemberData(nameof(OpenClKernels))]
    public void Emits_opencl_c(string name)
    {
        var cl = KernelEmitter.OpenCL(Get(name));
        Assert.Matches(@"kernel void \w+\(", cl);
    }

    [Fact]
    public void Warp_kernels_have_a_shared_memory_twin_for_opencl()
    {
        foreach (var k in KernelCatalog.All.Where(k => k.NeedsWarp))
            Assert.Contains(KernelCatalog.All, t => !t.NeedsWarp && t.Name == k.Name.Replace("_warp", ""));
    }

    [Fact]
    public void Unknown_ptx_target_is_rejected_with_the_known_list()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => KernelEmitter.Ptx(KernelCatalog.All[0], 52));
        Assert.Contains("sm_90", e.Message);
    }
}

/// <summary>Every OpenCL kernel as SPIR-V (clang-15 at -O0, llvm-spirv-15), accepted by spirv-val.</summary>
public class SpirVEmissionTests
{
    [SkippableTheory, MemberData(nameof(GpuEmissionTests.OpenClKernels), MemberType = typeof(GpuEmissionTests))]
    public void Spirv_module_translates_and_validates(string name)
    {
        Skip.If(KernelEmitter.SpirVMissing is not null, KernelEmitter.SpirVMissing);
        _ = MethodOps.All;
        var module = KernelEmitter.SpirV(KernelCatalog.All.First(k => k.Name == name));
        Assert.Equal(0x07230203u, BitConverter.ToUInt32(module, 0));   // the SPIR-V magic number
    }

    [Fact]
    public void Warp_kernels_are_refused_with_the_reason()
    {
        var warp = ReduceKernels<float, F32>.RowsWarp;
        Assert.Contains("warp shuffles", Assert.Throws<NotSupportedException>(() => KernelEmitter.SpirV(warp)).Message);
    }
}
