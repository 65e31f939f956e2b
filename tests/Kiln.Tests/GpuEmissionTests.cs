using System.Diagnostics;
using Kiln.Gpu;
using Kiln.Kernels.Gpu;
using Kiln.Methods;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// Every catalog kernel compiles offline (no GPU): PTX for sm_60 and sm_90, OpenCL C for every kernel the OpenCL path
/// uses, and that OpenCL C through clang-15 for AMD, NVIDIA and SPIR targets (skipped, with the reason, without clang-15).
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

    /// <summary>The clang targets of the cross-vendor matrix.</summary>
    public static readonly (string Name, string Args)[] ClangTargets =
    [
        ("amdgcn-gfx90a", "-target amdgcn-amd-amdhsa -mcpu=gfx90a -nogpulib -c"),
        ("amdgcn-gfx1100", "-target amdgcn-amd-amdhsa -mcpu=gfx1100 -nogpulib -c"),
        ("nvptx64-nvcl", "-target nvptx64-nvidia-nvcl -S"),
        ("spir64", "-target spir64-unknown-unknown -emit-llvm -c"),
    ];

    [SkippableTheory, MemberData(nameof(OpenClKernels))]
    public void Opencl_c_compiles_with_clang15_for_amd_nvidia_and_spir(string name)
    {
        Skip.If(ClangCl.Path is null, "clang-15 is not installed (Debian package clang-15); the cross-vendor compile matrix needs it");
        var dir = Directory.CreateTempSubdirectory("kiln-cl-");
        try
        {
            var src = Path.Combine(dir.FullName, name + ".cl");
            File.WriteAllText(src, KernelEmitter.OpenCL(Get(name)));
            foreach (var (target, args) in ClangTargets)
            {
                var (code, err) = ClangCl.Compile(src, Path.Combine(dir.FullName, $"{name}.{target}.out"), args);
                Assert.True(code == 0, $"{name} for {target}: clang-15 exited {code}: {err}");
            }
        }
        finally { dir.Delete(recursive: true); }
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

/// <summary>Runs clang-15 on emitted OpenCL C.</summary>
public static class ClangCl
{
    /// <summary>The clang-15 executable, or null when absent.</summary>
    public static string? Path { get; } = new[] { "/usr/bin/clang-15", "/usr/lib/llvm-15/bin/clang" }.FirstOrDefault(File.Exists);

    /// <summary>Compiles <paramref name="src"/> as OpenCL C 2.0 with the target arguments; returns the exit code and standard error.</summary>
    public static (int Code, string Error) Compile(string src, string output, string targetArgs)
    {
        var psi = new ProcessStartInfo(Path!, $"-x cl -cl-std=CL2.0 {targetArgs} -o \"{output}\" \"{src}\"") { RedirectStandardError = true, RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, err);
    }
}
