using System.Diagnostics;

namespace Kiln.Gpu.OpenCl;

/// <summary>
/// SPIR-V modules of ILGPU's OpenCL C, for stacks that consume SPIR-V (Intel's GPU drivers, newer OpenCL and Vulkan
/// compute): clang-15 to LLVM IR for spir64 at <c>-O0</c> (drivers optimize; at <c>-O2</c> LLVM emits <c>freeze</c>, which
/// llvm-spirv-15 cannot translate), then llvm-spirv-15; <c>spirv-val</c> (Debian's spirv-tools) checks a module.
/// </summary>
internal static class SpirVCompiler
{
    const string ClangArgs = "-x cl -cl-std=CL2.0 -target spir64-unknown-unknown -emit-llvm -c -O0";

    /// <summary>llvm-spirv-15, or null when absent.</summary>
    public static string? Translator { get; } = Find("llvm-spirv-15", "/usr/bin/llvm-spirv-15", "/usr/lib/llvm-15/bin/llvm-spirv");
    /// <summary>spirv-val, or null when absent.</summary>
    public static string? Validator { get; } = Find("spirv-val", "/usr/bin/spirv-val");

    /// <summary>Why a module cannot be made or checked here, or null when every tool is present.</summary>
    public static string? MissingReason =>
        SpirCompiler.Clang is null ? SpirCompiler.MissingReason
        : Translator is null ? "no llvm-spirv-15 to translate LLVM IR to SPIR-V (Debian package llvm-spirv-15)"
        : Validator is null ? "no spirv-val to check SPIR-V modules (Debian package spirv-tools)"
        : null;

    static string? Find(string name, params string[] paths) =>
        paths.FirstOrDefault(File.Exists)
        ?? (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    /// <summary>The SPIR-V module of OpenCL C <paramref name="source"/> (kernel <paramref name="kernel"/>, for messages).</summary>
    /// <exception cref="NotSupportedException">A tool is missing or rejected the code; the message says which and why.</exception>
    public static byte[] Compile(string kernel, string source)
    {
        if (SpirCompiler.Clang is null || Translator is null) throw new NotSupportedException("SPIR-V: " + MissingReason);
        var dir = Directory.CreateTempSubdirectory("kiln-spirv-");
        try
        {
            string src = Path.Combine(dir.FullName, "k.cl"), bc = Path.Combine(dir.FullName, "k.bc"), spv = Path.Combine(dir.FullName, "k.spv");
            File.WriteAllText(src, source);
            Run(kernel, SpirCompiler.Clang, $"{ClangArgs} -o \"{bc}\" \"{src}\"");
            Run(kernel, Translator, $"\"{bc}\" -o \"{spv}\"");
            return File.ReadAllBytes(spv);
        }
        finally { dir.Delete(recursive: true); }
    }

    /// <summary>spirv-val's verdict on <paramref name="module"/>: null when valid, else its message.</summary>
    /// <exception cref="NotSupportedException">spirv-val is not installed.</exception>
    public static string? Validate(string kernel, byte[] module)
    {
        if (Validator is null) throw new NotSupportedException("SPIR-V: " + MissingReason);
        var dir = Directory.CreateTempSubdirectory("kiln-spirv-");
        try
        {
            string spv = Path.Combine(dir.FullName, "k.spv");
            File.WriteAllBytes(spv, module);
            var (code, err) = Exec(Validator, $"\"{spv}\"");
            return code == 0 ? null : $"kernel {kernel}: spirv-val exited {code}: {err}";
        }
        finally { dir.Delete(recursive: true); }
    }

    static void Run(string kernel, string tool, string args)
    {
        var (code, err) = Exec(tool, args);
        if (code != 0) throw new NotSupportedException($"SPIR-V: kernel {kernel}: {Path.GetFileName(tool)} exited {code}: {err}");
    }

    /// <summary>Runs <paramref name="tool"/> and returns its exit code and its standard error and output.</summary>
    internal static (int Code, string Error) Exec(string tool, string args)
    {
        var psi = new ProcessStartInfo(tool, args) { RedirectStandardError = true, RedirectStandardOutput = true };
        using var p = Process.Start(psi) ?? throw new NotSupportedException($"SPIR-V: could not start {tool}");
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, (err.Result + output).Trim());
    }
}
