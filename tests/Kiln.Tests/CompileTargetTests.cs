using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Kiln.Gpu;
using Kiln.Gpu.OpenCl;
using Kiln.Kernels.Gpu;
using Kiln.Methods;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// Each compile target (<see cref="CompileTarget.All"/>) on a sample of kernels: the first and last kernel of every family
/// (shared memory and barriers, float64, int64, atomics, bfloat16), with the artifact checked here independently of the
/// library's own checks: an AMDGPU ELF object, PTX for the architecture with the kernel's entry, SPIR bitcode, a SPIR-V
/// module. The full matrix (every kernel x every target) runs in CI through <c>kiln emit --matrix</c>. A target whose tools
/// are not installed is skipped with the missing tool's name; CI installs them.
/// </summary>
public class CompileTargetTests
{
    static IReadOnlyList<GpuKernel> Sample
    {
        get
        {
            _ = MethodOps.All;
            return [.. KernelCatalog.All.GroupBy(k => k.Family).SelectMany(g => new[] { g.First(), g.Last() }).Distinct()];
        }
    }

    public static IEnumerable<object[]> Targets => CompileTarget.All.Select(t => new object[] { t.Name });

    [SkippableTheory, MemberData(nameof(Targets))]
    public void Sample_kernels_compile_to_a_real_artifact(string name)
    {
        var target = CompileTarget.Get(name);
        Skip.If(target.Missing is not null, target.Missing);
        var results = KernelEmitter.CompileMatrix(Sample, [target], parallelism: Environment.ProcessorCount);
        foreach (var r in results)
        {
            if (target.FromOpenCl && r.Kernel.NeedsWarp)
            {
                Assert.Equal(CompileStatus.NotApplicable, r.Status);
                continue;
            }
            Assert.True(r.Status == CompileStatus.Compiled, $"{r.Kernel.Name} for {name}: {r.Status}: {r.Error}");
            byte[] a = r.Artifact!;
            string entry = r.Kernel.NeedsWarp ? "" : KernelEmitter.OpenClEntry(KernelEmitter.OpenCL(r.Kernel));
            string text = target.IsText ? Encoding.UTF8.GetString(a) : "";
            switch (target.Toolchain)
            {
                case TargetToolchain.Clang when target.Vendor == "AMD":
                    Assert.Equal("\x7F" + "ELF", Encoding.ASCII.GetString(a, 0, 4));
                    Assert.Equal(224, BinaryPrimitives.ReadUInt16LittleEndian(a.AsSpan(18)));   // e_machine EM_AMDGPU
                    Assert.Contains(entry + "\0", Encoding.ASCII.GetString(a));                // the entry's symbol name
                    break;
                case TargetToolchain.Clang:
                    Assert.Matches(@"(?m)^\.target sm_60\b", text);
                    Assert.Contains($".entry {entry}(", text);
                    break;
                case TargetToolchain.IlgpuPtx:
                    Assert.Matches($@"(?m)^\.target sm_{Math.Min(target.Sm, 80)}$", text);   // ILGPU 1.5.3 writes sm_80 at most
                    Assert.Contains($".version {KernelEmitter.PtxVersion(target.Sm)}", text);
                    Assert.Matches(r.Kernel.NeedsWarp ? @"\.entry \w+\(" : $@"\.entry {entry}\(", text);
                    break;
                case TargetToolchain.Spir:
                    Assert.Equal(new byte[] { 0x42, 0x43, 0xC0, 0xDE }, a[..4]);   // LLVM bitcode
                    break;
                case TargetToolchain.SpirV:
                    Assert.Equal(0x07230203u, BinaryPrimitives.ReadUInt32LittleEndian(a));   // SPIR-V magic; spirv-val ran in Compile
                    Assert.Null(SpirVCompiler.Validate(r.Kernel.Name, a));
                    break;
                default:
                    Assert.Contains($"kernel void {entry}(", text);
                    break;
            }
        }
    }

    [Fact]
    public void Table_has_the_targets_the_issue_asks_for()
    {
        string[] names = [.. CompileTarget.All.Select(t => t.Name)];
        foreach (var n in new[] { "amdgcn-gfx906", "amdgcn-gfx90a", "amdgcn-gfx940", "amdgcn-gfx1030", "amdgcn-gfx1100", "nvptx64", "spir", "spirv" })
            Assert.Contains(n, names);
        Assert.Equal(KernelEmitter.CudaTargets.Keys.Order().Select(sm => $"ptx-sm_{sm}"), names.Where(n => n.StartsWith("ptx-")));
        Assert.Equal(names.Length, names.Distinct().Count());
    }

    [Fact]
    public void Unknown_target_is_rejected_with_the_known_list()
    {
        var e = Assert.Throws<ArgumentException>(() => CompileTarget.Get("gfx9000"));
        Assert.Contains("amdgcn-gfx1100", e.Message);
        Assert.Equal("name", e.ParamName);
    }

    [Fact]
    public void Warp_kernels_are_not_built_for_opencl_targets_but_are_for_ptx()
    {
        var warp = ReduceKernels<float, F32>.RowsWarp;
        var spir = KernelEmitter.Compile(warp, CompileTarget.Get("spir"));
        Assert.Equal(CompileStatus.NotApplicable, spir.Status);
        Assert.Contains("shared-memory twin", spir.Error);
        Assert.Equal(CompileStatus.Compiled, KernelEmitter.Compile(warp, CompileTarget.Get("ptx-sm_75")).Status);
    }

    [SkippableFact]
    public void Amdgpu_check_catches_unresolved_builtins_and_other_machines()
    {
        var target = CompileTarget.Get("amdgcn-gfx90a");
        Skip.If(target.Missing is not null, target.Missing);
        var kernel = ReduceKernels<float, F32>.Rows;
        string source = KernelEmitter.OpenCL(kernel), entry = KernelEmitter.OpenClEntry(source);
        var dir = Directory.CreateTempSubdirectory("kiln-test-");
        try
        {
            // Without libclc the object calls builtins (get_global_id, barrier) that nothing defines: it would not load.
            string src = Path.Combine(dir.FullName, "k.cl"), obj = Path.Combine(dir.FullName, "k.o");
            File.WriteAllText(src, source);
            using (var p = Process.Start(new ProcessStartInfo(SpirCompiler.Clang!, $"{target.Flags} -o \"{obj}\" \"{src}\"") { RedirectStandardError = true })!)
            {
                p.StandardError.ReadToEnd();
                p.WaitForExit();
                Assert.Equal(0, p.ExitCode);
            }
            var bare = File.ReadAllBytes(obj);
            Assert.Equal(224, BinaryPrimitives.ReadUInt16LittleEndian(bare.AsSpan(18)));
            Assert.Contains("unresolved symbols", ClangTargetCompiler.CheckAmdGpuElf(bare, entry));
            Assert.Contains("no symbol for the entry", ClangTargetCompiler.CheckAmdGpuElf(KernelEmitter.Compile(kernel, target).Artifact!, "Kernel_Elsewhere"));
            // This test process's own executable is an ELF for the host's machine.
            var host = File.ReadAllBytes(Environment.ProcessPath!);
            Assert.Matches(@"^(not a 64-bit ELF file|ELF machine \d+, not AMDGPU \(224\))$", ClangTargetCompiler.CheckAmdGpuElf(host, entry));
        }
        finally { dir.Delete(recursive: true); }
    }

    [Fact]
    public void Ptx_check_catches_declared_only_functions_and_wrong_targets()
    {
        const string ptx = ".version 7.8\n.target sm_60\n.address_size 64\n.func  (.param .b64 func_retval0) _Z13get_global_idj\n(\n\t.param .b32 p\n)\n;\n.entry k(\n\t.param .u64 a\n)\n{\n\tret;\n}\n";
        Assert.Equal("unresolved functions: _Z13get_global_idj", ClangTargetCompiler.CheckPtx(ptx, "k", 60));
        Assert.Equal("no '.target sm_70' line", ClangTargetCompiler.CheckPtx(ptx, "k", 70));
        Assert.Equal("no '.entry other'", ClangTargetCompiler.CheckPtx(ptx, "other", 60));
        string defined = Regex.Replace(ptx, @"\n\)\n;\n\.entry", "\n)\n{\n\tret;\n}\n.entry");
        Assert.Null(ClangTargetCompiler.CheckPtx(defined, "k", 60));
    }
}
