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
}

