using Kiln.Gpu.OpenCl;

namespace Kiln.Gpu;

/// <summary>How a <see cref="CompileTarget"/>'s artifact is made.</summary>
public enum TargetToolchain
{
    /// <summary>ILGPU's PTXBackend, in process: PTX for one CUDA architecture.</summary>
    IlgpuPtx,
    /// <summary>ILGPU's CLBackend, in process: the OpenCL C 2.0 text every clang target starts from.</summary>
    IlgpuOpenCl,
    /// <summary>clang-15 from ILGPU's OpenCL C to a native object (amdgcn) or assembly (nvptx64), with libclc-15's builtins linked in.</summary>
    Clang,
    /// <summary>clang-15 from ILGPU's OpenCL C to SPIR 1.2 bitcode (what Kiln's OpenCL driver loads on PoCL).</summary>
    Spir,
    /// <summary>clang-15 at -O0, then llvm-spirv-15, checked by spirv-val.</summary>
    SpirV,
}

/// <summary>
/// One row of the compile matrix: a GPU target every catalog kernel is compiled for with no GPU present
/// (<see cref="KernelEmitter.Compile"/>, <c>kiln emit --matrix</c>). <see cref="All"/> is the table.
/// </summary>
public sealed class CompileTarget
{
    CompileTarget(string name, string vendor, TargetToolchain toolchain, string device, string flags, string extension, int sm = 0, string? libclc = null)
    {
        Name = name;
        Vendor = vendor;
        Toolchain = toolchain;
        Device = device;
        Flags = flags;
        Extension = extension;
        Sm = sm;
        Libclc = libclc;
    }

    /// <summary>The target's name as <c>kiln emit --target</c> takes it, e.g. <c>amdgcn-gfx90a</c> or <c>ptx-sm_75</c>.</summary>
    public string Name { get; }
    /// <summary>AMD, NVIDIA or Khronos (the vendor-neutral SPIR, SPIR-V and OpenCL C).</summary>
    public string Vendor { get; }
    /// <summary>What compiles it.</summary>
    public TargetToolchain Toolchain { get; }
    /// <summary>The hardware or consumer the artifact is for, in words.</summary>
    public string Device { get; }
    /// <summary>The compiler flags (clang targets) or ILGPU settings, as documentation of exactly what is run.</summary>
    public string Flags { get; }
    /// <summary>The artifact's file extension, with the dot.</summary>
    public string Extension { get; }
    /// <summary>The CUDA architecture (sm number) of an <see cref="TargetToolchain.IlgpuPtx"/> target, else 0.</summary>
    public int Sm { get; }
    /// <summary>True when the artifact is text (PTX, OpenCL C); false for ELF objects, bitcode and SPIR-V.</summary>
    public bool IsText => Extension is ".ptx" or ".cl";
    /// <summary>
    /// True for targets compiled from OpenCL C. Warp-shuffle kernels are not built for them: OpenCL devices run the
    /// kernel's shared-memory twin (<see cref="Kiln.Kernels.Gpu.GpuKernel.NeedsWarp"/>).
    /// </summary>
    public bool FromOpenCl => Toolchain != TargetToolchain.IlgpuPtx;

    /// <summary>libclc-15's builtin library linked into a clang target (file name under the libclc directory), else null.</summary>
    internal string? Libclc { get; }

    /// <summary>Why this target cannot be compiled on this machine (the missing tool and the Debian package that has it), or null.</summary>
    public string? Missing => Toolchain switch
    {
        TargetToolchain.IlgpuPtx or TargetToolchain.IlgpuOpenCl => null,
        TargetToolchain.Spir => SpirCompiler.Clang is null ? SpirCompiler.MissingReason : null,
        TargetToolchain.SpirV => SpirVCompiler.MissingReason,
        _ => ClangTargetCompiler.MissingReason(this),
    };

    /// <summary>The text of <see cref="ToString"/>: the name.</summary>
    public override string ToString() => Name;

    // Native targets are compiled at -O2, as a driver would: LLVM's AMDGPU and NVPTX back ends lower the `freeze`
    // instructions that -O2 creates (only llvm-spirv-15 cannot, hence SPIR-V at -O0); every kernel also compiles at -O0
    // (measured), which only keeps every value in scratch memory. libclc-15 supplies the OpenCL builtins (get_global_id,
    // exp, atomics) that ROCm's device libraries or NVIDIA's driver would, so the artifact has no unresolved calls; it
    // implements OpenCL 1.2's barrier, not 2.0's work_group_barrier, whose one-argument form ILGPU writes and which is
    // the same barrier (work-group scope), hence the macro.
    const string ClangCommon = "-x cl -cl-std=CL2.0 -O2 -Dwork_group_barrier=barrier -Wno-ignored-pragmas -Wno-linker-warnings";

    static CompileTarget Amd(string gfx, string device) =>
        new($"amdgcn-{gfx}", "AMD", TargetToolchain.Clang, device, $"{ClangCommon} -target amdgcn-amd-amdhsa -mcpu={gfx} -nogpulib -c", ".o", libclc: "amdgcn--amdhsa.bc");

    static CompileTarget Ptx(int sm) =>
        new($"ptx-sm_{sm}", "NVIDIA", TargetToolchain.IlgpuPtx, $"CUDA sm_{sm} (ILGPU's PTX, .version {KernelEmitter.PtxVersion(sm)}, .target sm_{Math.Min(sm, 80)})",
            $"ILGPU PTXBackend, CudaArchitecture.SM_{sm}, {KernelEmitter.CudaTargets[sm].Isa}, O1", ".ptx", sm: sm);

    /// <summary>
    /// Every target, in table order: ILGPU's OpenCL C, SPIR 1.2, SPIR-V, five AMD GPU generations (amdgcn objects),
    /// NVIDIA PTX from the OpenCL C (nvptx64), and ILGPU's own PTX for each CUDA architecture in <see cref="KernelEmitter.CudaTargets"/>.
    /// </summary>
    public static IReadOnlyList<CompileTarget> All { get; } =
    [
        new("opencl", "Khronos", TargetToolchain.IlgpuOpenCl, "OpenCL C 2.0 (what the clang targets and OpenCL drivers compile)", "ILGPU CLBackend, CL20, generic address space, fp64, int64 atomics, O1", ".cl"),
        new("spir", "Khronos", TargetToolchain.Spir, "SPIR 1.2 bitcode (OpenCL drivers with cl_khr_spir, e.g. PoCL)", "-x cl -cl-std=CL2.0 -target spir64-unknown-unknown -emit-llvm -c -O2", ".bc"),
        new("spirv", "Khronos", TargetToolchain.SpirV, "SPIR-V 1.0 module (clCreateProgramWithIL, Intel, Vulkan compute)", "clang -O0 -target spir64-unknown-unknown -emit-llvm | llvm-spirv-15 | spirv-val", ".spv"),
        Amd("gfx906", "Vega 20: MI50, MI60, Radeon VII (GCN 5)"),
        Amd("gfx90a", "CDNA2: MI210, MI250, MI250X"),
        // clang-15 does not know gfx942 (MI300X, MI300A) or gfx941; gfx940 is the nearest CDNA3 target it knows.
        Amd("gfx940", "CDNA3: MI300 family (clang-15 has no gfx942, MI300X/MI300A's target; gfx940 is the nearest it knows)"),
        Amd("gfx1030", "RDNA2: RX 6800/6900, W6800"),
        Amd("gfx1100", "RDNA3: RX 7900, W7900"),
        new("nvptx64", "NVIDIA", TargetToolchain.Clang, "PTX from the OpenCL C for sm_60 and later (what NVIDIA's OpenCL driver compiles)",
            $"{ClangCommon} -target nvptx64-nvidia-nvcl -march=sm_60 -S", ".ptx", libclc: "nvptx64--nvidiacl.bc"),
        .. KernelEmitter.CudaTargets.Keys.Order().Select(Ptx),
    ];

    /// <summary>The target named <paramref name="name"/> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">No target has that name; the message lists them.</exception>
    public static CompileTarget Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return All.FirstOrDefault(t => string.Equals(t.Name, name.Trim(), StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"no compile target '{name}'; known: {string.Join(", ", All.Select(t => t.Name))}", nameof(name));
    }
}
