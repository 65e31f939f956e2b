using System.CommandLine;
using Kiln.Gpu;
using Kiln.Kernels.Gpu;
using Kiln.Methods;

namespace Kiln.Cli;

/// <summary>`kiln emit`: writes every GPU kernel's PTX, OpenCL C or SPIR-V (checked by spirv-val), one file per kernel, with no GPU present.</summary>
public static class EmitVerb
{
    /// <summary>Parses "sm_60..sm_90", "sm_75" or "sm_70,sm_80" into known sm numbers.</summary>
    public static int[] ParseArch(string spec)
    {
        static int Sm(string s) => int.TryParse(s.Trim().Replace("sm_", ""), out int v) ? v
            : throw new ArgumentException($"--arch: '{s}' is not an sm_NN architecture", "arch");
        var known = KernelEmitter.CudaTargets.Keys.Order().ToArray();
        int[] picked;
        if (spec.Contains(".."))
        {
            var p = spec.Split("..");
            int lo = Sm(p[0]), hi = Sm(p[1]);
            picked = known.Where(k => k >= lo && k <= hi).ToArray();
        }
        else picked = spec.Split(',').Select(Sm).ToArray();
        foreach (int sm in picked)
            if (!known.Contains(sm)) throw new ArgumentException($"--arch: sm_{sm} is not supported; known: {string.Join(", ", known.Select(k => "sm_" + k))}", "arch");
        if (picked.Length == 0) throw new ArgumentException($"--arch: '{spec}' selects no known architecture", "arch");
        return picked;
    }

    public static Command Build()
    {
        var target = new Option<string>("--target") { Description = "ptx, opencl or spirv", Required = true };
        var arch = new Option<string>("--arch") { Description = "PTX architectures: sm_60..sm_90, sm_75 or sm_70,sm_80", DefaultValueFactory = _ => "sm_60..sm_90" };
        var outDir = new Option<string>("--out") { Description = "output directory (one file per kernel)", Required = true };
        var filter = new Option<string?>("--kernel") { Description = "only kernels whose name contains this" };
        var json = new Option<bool>("--json") { Description = "one JSON object per kernel on standard output" };
        var cmd = new Command("emit", "Write each GPU kernel's PTX (per architecture), OpenCL C or SPIR-V (validated by spirv-val) into --out DIR; needs no GPU") { target, arch, outDir, filter, json };
        cmd.SetAction(r =>
        {
            string t = r.GetValue(target)!.ToLowerInvariant();
            if (t is not ("ptx" or "opencl" or "spirv")) throw new ArgumentException($"--target must be ptx, opencl or spirv, not '{t}'", "target");
            if (t == "spirv" && KernelEmitter.SpirVMissing is { } missing) throw new NotSupportedException("--target spirv: " + missing);
            var archs = t == "ptx" ? ParseArch(r.GetValue(arch)!) : [0];
            string dir = r.GetValue(outDir)!;
            _ = MethodOps.All;   // the method library's kernels are emitted with the built-in ones
            var kernels = KernelCatalog.All.Where(k => r.GetValue(filter) is not { } f || k.Name.Contains(f)).ToList();
            bool asJson = r.GetValue(json);
            int failed = 0, written = 0, skipped = 0;
            Cli.Progress($"emitting {kernels.Count} kernels ({t})", kernels.Count * archs.Length, tick =>
            {
                int done = 0;
                foreach (int sm in archs)
                {
                    string sub = t == "ptx" ? Path.Combine(dir, $"sm_{sm}") : dir;
                    Directory.CreateDirectory(sub);
                    foreach (var k in kernels)
                    {
                        tick(++done);
                        if (t != "ptx" && k.NeedsWarp)
                        {
                            skipped++;
                            if (asJson) Cli.JsonLine(new { kernel = k.Name, target = t, status = "skipped", reason = "warp shuffles; OpenCL runs the shared-memory twin" });
                            continue;
                        }
                        string file = Path.Combine(sub, k.Name + t switch { "ptx" => ".ptx", "opencl" => ".cl", _ => ".spv" });
                        try
                        {
                            if (t == "spirv") File.WriteAllBytes(file, KernelEmitter.SpirV(k));
                            else File.WriteAllText(file, t == "ptx" ? KernelEmitter.Ptx(k, sm) : KernelEmitter.OpenCL(k));
                            written++;
                            if (asJson) Cli.JsonLine(new { kernel = k.Name, target = t == "ptx" ? $"sm_{sm}" : t, status = "ok", file });
                        }
                        catch (Exception e) when (e is not (OutOfMemoryException or IOException or UnauthorizedAccessException))
                        {
                            failed++;
                            Console.Error.WriteLine($"kiln emit: {k.Name} ({(t == "ptx" ? $"sm_{sm}" : t)}): {e.GetType().Name}: {e.Message}");
                            if (asJson) Cli.JsonLine(new { kernel = k.Name, target = t, status = "failed", error = e.Message });
                        }
                    }
                }
                return 0;
            });
            Console.Error.WriteLine($"wrote {written} files to {dir}{(t == "spirv" ? ", each accepted by spirv-val" : "")}, {skipped} skipped (warp kernels have a shared-memory twin for OpenCL), {failed} failed");
            return failed == 0 ? 0 : Cli.Failed;
        });
        return cmd;
    }
}
