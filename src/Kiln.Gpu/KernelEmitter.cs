using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.OpenCL;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using Kiln.Kernels.Gpu;

namespace Kiln.Gpu;

/// <summary>
/// Compiles catalog kernels to PTX, OpenCL C or SPIR-V without any device (ILGPU's PTXBackend and CLBackend run offline).
/// Each call uses a fresh ILGPU context, because a failed compile leaves its context unusable.
/// </summary>
public static class KernelEmitter
{
    /// <summary>The CUDA architectures <c>kiln emit</c> accepts, by sm number.</summary>
    public static IReadOnlyDictionary<int, (CudaArchitecture Arch, CudaInstructionSet Isa)> CudaTargets { get; } =
        new Dictionary<int, (CudaArchitecture, CudaInstructionSet)>
        {
            [60] = (CudaArchitecture.SM_60, CudaInstructionSet.ISA_50), [61] = (CudaArchitecture.SM_61, CudaInstructionSet.ISA_50),
            [70] = (CudaArchitecture.SM_70, CudaInstructionSet.ISA_60), [75] = (CudaArchitecture.SM_75, CudaInstructionSet.ISA_63),
            [80] = (CudaArchitecture.SM_80, CudaInstructionSet.ISA_70), [86] = (CudaArchitecture.SM_86, CudaInstructionSet.ISA_71),
            [89] = (CudaArchitecture.SM_89, CudaInstructionSet.ISA_78), [90] = (CudaArchitecture.SM_90, CudaInstructionSet.ISA_78),
        };

    /// <summary>The PTX ISA version (as written in the .version line) used for sm_<paramref name="sm"/>.</summary>
    public static string PtxVersion(int sm) => CudaTargets[sm].Isa.ToString();

    static Context NewContext() => Context.Create(b => b.Optimize(OptimizationLevel.O1).EnableAlgorithms());

    static EntryPointDescription Entry(GpuKernel k) => k.Grouped
        ? EntryPointDescription.FromExplicitlyGroupedKernel(k.Body.Method)
        : EntryPointDescription.FromImplicitlyGroupedKernel(k.Body.Method);

    /// <summary>The PTX assembly of <paramref name="kernel"/> for CUDA architecture sm_<paramref name="sm"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="sm"/> is not in <see cref="CudaTargets"/>.</exception>
    public static string Ptx(GpuKernel kernel, int sm)
    {
        if (!CudaTargets.TryGetValue(sm, out var t))
            throw new ArgumentOutOfRangeException(nameof(sm), sm, $"no PTX target sm_{sm}; known: {string.Join(", ", CudaTargets.Keys.Select(k => "sm_" + k))}");
        using var ctx = NewContext();
        using var backend = new PTXBackend(ctx, new CudaCapabilityContext(t.Arch), t.Arch, t.Isa, null!);
        var compiled = (PTXCompiledKernel)backend.Compile(Entry(kernel), default);
        return compiled.PTXAssembly;
    }

    /// <summary>
    /// The OpenCL C source of <paramref name="kernel"/> (OpenCL C 2.0, generic address space, float64 and int64 atomics;
    /// subgroups only when <paramref name="subgroups"/>, which warp-shuffle kernels need).
    /// </summary>
    public static string OpenCL(GpuKernel kernel, bool subgroups = false)
    {
        using var ctx = NewContext();
        var caps = new CLCapabilityContext(float16: false, float64: true, genericAddressSpace: true, int64_Atomics: true, subGroups: subgroups);
        using var backend = new CLBackend(ctx, caps, CLDeviceVendor.Other, CLCVersion.CL20);
        var compiled = (CLCompiledKernel)backend.Compile(Entry(kernel), default);
        return compiled.Source;
    }

    /// <summary>
    /// The SPIR-V module of <paramref name="kernel"/>'s OpenCL C (clang-15 at -O0, then llvm-spirv-15), checked by
    /// spirv-val: what SPIR-V consumers such as Intel's GPU drivers load.
    /// </summary>
    /// <exception cref="NotSupportedException">clang-15, llvm-spirv-15 or spirv-val is missing, a step failed, or the module does not validate; the message says which.</exception>
    public static byte[] SpirV(GpuKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        if (kernel.NeedsWarp) throw new NotSupportedException($"SPIR-V: kernel {kernel.Name} needs warp shuffles; OpenCL consumers run its shared-memory twin");
        var module = OpenCl.SpirVCompiler.Compile(kernel.Name, OpenCL(kernel));
        if (OpenCl.SpirVCompiler.Validate(kernel.Name, module) is { } error) throw new NotSupportedException("SPIR-V: " + error);
        return module;
    }

    /// <summary>Why <see cref="SpirV"/> cannot run on this machine, or null when clang-15, llvm-spirv-15 and spirv-val are all installed.</summary>
    public static string? SpirVMissing => OpenCl.SpirVCompiler.MissingReason;

    /// <summary>The kernel entry's name in OpenCL C <paramref name="source"/> (ILGPU's <c>Kernel_Method</c>; its PTX uses the same).</summary>
    /// <exception cref="ArgumentException">The source has no <c>kernel void name(</c>.</exception>
    public static string OpenClEntry(string source)
    {
        var m = Regex.Match(source, @"\bkernel void (\w+)\(");
        return m.Success ? m.Groups[1].Value : throw new ArgumentException("OpenCL C source has no 'kernel void name(' entry", nameof(source));
    }

    /// <summary>
    /// Compiles <paramref name="kernel"/> for <paramref name="target"/> and checks the artifact (see <see cref="CompileTarget"/>:
    /// an AMDGPU ELF object, PTX for the architecture, SPIR bitcode, a SPIR-V module spirv-val accepts). Never throws for a
    /// failed compile: the result says what failed, or which tool is missing and its Debian package. Each compile uses a
    /// fresh ILGPU context, so one failure does not poison the next.
    /// </summary>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    public static CompileResult Compile(GpuKernel kernel, CompileTarget target)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(target);
        return CompileFrom(kernel, target, () => OpenCL(kernel));
    }

    static CompileResult CompileFrom(GpuKernel kernel, CompileTarget target, Func<string> openCl)
    {
        var clock = Stopwatch.StartNew();
        CompileResult Done(CompileStatus status, byte[]? artifact, string? error) => new(kernel, target, status, artifact, error, clock.Elapsed);
        if (target.FromOpenCl && kernel.NeedsWarp)
            return Done(CompileStatus.NotApplicable, null, "needs warp shuffles; OpenCL devices run its shared-memory twin");
        if (target.Missing is { } missing) return Done(CompileStatus.ToolMissing, null, missing);
        try
        {
            byte[] artifact = target.Toolchain switch
            {
                TargetToolchain.IlgpuPtx => CheckedPtx(kernel, target.Sm),
                TargetToolchain.IlgpuOpenCl => Encoding.UTF8.GetBytes(openCl()),
                TargetToolchain.Spir => CheckedSpir(kernel, openCl()),
                TargetToolchain.SpirV => SpirV(kernel),
                _ => OpenCl.ClangTargetCompiler.Compile(kernel.Name, openCl(), target),
            };
            return Done(CompileStatus.Compiled, artifact, null);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // ILGPU's compile errors and the tools' failures alike are the result here; the message carries the first error line.
            return Done(CompileStatus.Failed, null, $"{e.GetType().Name}: {e.Message}");
        }
    }

    static byte[] CheckedPtx(GpuKernel kernel, int sm)
    {
        string ptx = Ptx(kernel, sm);
        // ILGPU 1.5.3 writes at most `.target sm_80`: PTX for sm_80 that the driver JIT-compiles forward on sm_86..sm_90.
        if (OpenCl.ClangTargetCompiler.CheckPtx(ptx, Entry(kernel).Name, Math.Min(sm, 80)) is { } problem)
            throw new NotSupportedException($"ptx-sm_{sm}: kernel {kernel.Name}: {problem}");
        if (!ptx.Contains($".version {PtxVersion(sm)}\n")) throw new NotSupportedException($"ptx-sm_{sm}: kernel {kernel.Name}: no '.version {PtxVersion(sm)}' line");
        return Encoding.UTF8.GetBytes(ptx);
    }

    static byte[] CheckedSpir(GpuKernel kernel, string source)
    {
        var bc = OpenCl.SpirCompiler.Compile(kernel.Name, source);
        // LLVM bitcode starts with 'BC' 0xC0DE.
        if (bc.Length < 4 || bc[0] != 0x42 || bc[1] != 0x43 || bc[2] != 0xC0 || bc[3] != 0xDE)
            throw new NotSupportedException($"spir: kernel {kernel.Name}: clang-15 did not write LLVM bitcode");
        return bc;
    }

    /// <summary>
    /// Compiles every kernel for every target, <paramref name="parallelism"/> compiles at a time (clang runs as separate
    /// processes), emitting each kernel's OpenCL C once for all its OpenCL targets. <paramref name="onResult"/> sees each
    /// result as it comes (one at a time). Returns the results in kernel-major, target-minor order.
    /// </summary>
    /// <exception cref="ArgumentNullException">A list is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="parallelism"/> is below 1.</exception>
    public static IReadOnlyList<CompileResult> CompileMatrix(IReadOnlyList<GpuKernel> kernels, IReadOnlyList<CompileTarget> targets, int parallelism, Action<CompileResult>? onResult = null)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        ArgumentNullException.ThrowIfNull(targets);
        ArgumentOutOfRangeException.ThrowIfLessThan(parallelism, 1);
        var sources = kernels.Distinct().ToDictionary(k => k, k => new Lazy<string>(() => OpenCL(k)));
        var results = new CompileResult[kernels.Count * targets.Count];
        var gate = new object();
        Parallel.For(0, results.Length, new ParallelOptions { MaxDegreeOfParallelism = parallelism }, i =>
        {
            var k = kernels[i / targets.Count];
            var r = CompileFrom(k, targets[i % targets.Count], () => sources[k].Value);
            results[i] = r;
            if (onResult is not null) lock (gate) onResult(r);
        });
        return results;
    }
}

/// <summary>What <see cref="KernelEmitter.Compile"/> made of one kernel for one target.</summary>
public enum CompileStatus
{
    /// <summary>The artifact was made and passed the target's checks.</summary>
    Compiled,
    /// <summary>A compiler failed or the artifact failed a check; <see cref="CompileResult.Error"/> says which.</summary>
    Failed,
    /// <summary>A tool the target needs is not installed; <see cref="CompileResult.Error"/> names it and its Debian package.</summary>
    ToolMissing,
    /// <summary>The kernel is not built for this target (a warp-shuffle kernel on an OpenCL target, which runs its shared-memory twin).</summary>
    NotApplicable,
}

/// <summary>One kernel compiled for one target: the status, the artifact when compiled, the reason otherwise, and the time taken.</summary>
/// <param name="Kernel">The kernel.</param>
/// <param name="Target">The target.</param>
/// <param name="Status">What happened.</param>
/// <param name="Artifact">The checked artifact (UTF-8 text for PTX, assembly and OpenCL C), or null unless <see cref="CompileStatus.Compiled"/>.</param>
/// <param name="Error">Why it failed, is missing or does not apply; null when compiled.</param>
/// <param name="Elapsed">Wall time of the compile and its checks.</param>
public sealed record CompileResult(GpuKernel Kernel, CompileTarget Target, CompileStatus Status, byte[]? Artifact, string? Error, TimeSpan Elapsed)
{
    /// <summary>The first line of <see cref="Error"/> (tools print many), or null.</summary>
    public string? FirstErrorLine => Error?.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault();
}

