using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;

namespace Kiln.Gpu.OpenCl;

/// <summary>
/// Compiles ILGPU's OpenCL C 2.0 to SPIR 1.2 bitcode with clang-15, for OpenCL drivers that take SPIR but cannot compile
/// OpenCL C 2.0 themselves (PoCL: OpenCL C 1.2, no generic address space). clang-15 because the bitcode must be readable
/// by the driver's LLVM (Debian's PoCL 3.1 is built on LLVM 15); <c>KILN_OPENCL_CLANG</c> names another clang.
/// Bitcode is cached on disk by a hash of the compiler and the source, so a kernel is compiled once per machine.
/// </summary>
internal static class SpirCompiler
{
    const string Args = "-x cl -cl-std=CL2.0 -target spir64-unknown-unknown -emit-llvm -c -O2";

    /// <summary>The clang executable, or null when none is installed.</summary>
    public static string? Clang { get; } = FindClang();

    /// <summary>Why <see cref="Clang"/> is null.</summary>
    public static string MissingReason => "no clang-15 to compile the kernels to SPIR (Debian package clang-15, or set KILN_OPENCL_CLANG to a clang whose LLVM the driver reads)";

    static string? FindClang()
    {
        var env = Environment.GetEnvironmentVariable("KILN_OPENCL_CLANG");
        if (!string.IsNullOrEmpty(env)) return File.Exists(env) ? env : null;
        string[] fixedPaths = ["/usr/bin/clang-15", "/usr/lib/llvm-15/bin/clang", "/usr/local/bin/clang-15"];
        return fixedPaths.FirstOrDefault(File.Exists)
            ?? (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
                .Select(d => Path.Combine(d, "clang-15")).FirstOrDefault(File.Exists);
    }

    static readonly string CacheDir = Path.Combine(Path.GetTempPath(), "kiln-spir-cache");

    /// <summary>SPIR bitcode of <paramref name="source"/> (kernel <paramref name="kernel"/>, for messages).</summary>
    /// <exception cref="NotSupportedException">No clang, or clang rejected the source.</exception>
    public static byte[] Compile(string kernel, string source)
    {
        string clang = Clang ?? throw new NotSupportedException("OpenCL: " + MissingReason);
        string key = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(clang + "\n" + Args + "\n" + source)))[..32];
        string cached = Path.Combine(CacheDir, key + ".bc");
        if (File.Exists(cached)) return File.ReadAllBytes(cached);

        var dir = Directory.CreateTempSubdirectory("kiln-spir-");
        try
        {
            string src = Path.Combine(dir.FullName, "k.cl"), bc = Path.Combine(dir.FullName, "k.bc");
            File.WriteAllText(src, source);
            var psi = new ProcessStartInfo(clang, $"{Args} -o \"{bc}\" \"{src}\"") { RedirectStandardError = true, RedirectStandardOutput = true };
            using var p = Process.Start(psi) ?? throw new NotSupportedException($"OpenCL: could not start {clang}");
            var stderr = p.StandardError.ReadToEndAsync();
            p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0)
                throw new NotSupportedException($"OpenCL: kernel {kernel}: {clang} exited {p.ExitCode}: {stderr.Result.Trim()}");
            var bytes = File.ReadAllBytes(bc);
            try
            {
                Directory.CreateDirectory(CacheDir);
                string tmp = cached + "." + Environment.ProcessId + ".tmp";
                File.WriteAllBytes(tmp, bytes);
                File.Move(tmp, cached, overwrite: true);   // atomic: concurrent test processes never read half a file
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }   // the cache only saves time
            return bytes;
        }
        finally { dir.Delete(recursive: true); }
    }
}
