using System.CommandLine;
using Kiln.Gpu;
using Kiln.Kernels.Gpu;
using Kiln.Methods;

namespace Kiln.Cli;

/// <summary>
/// `kiln emit`: compiles every GPU kernel for the chosen compile targets (<see cref="CompileTarget.All"/>; AMD, NVIDIA and
/// Khronos) with no GPU present, optionally writes the artifacts, and prints a per-target summary; exit 1 on any failure.
/// </summary>
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

    /// <summary>
    /// The targets named by <paramref name="spec"/>: comma-separated target names, or the groups <c>all</c>, <c>amdgcn</c>
    /// (every AMD target) and <c>ptx</c> (ILGPU's PTX for each architecture of <paramref name="arch"/>).
    /// </summary>
    public static IReadOnlyList<CompileTarget> ParseTargets(string spec, string arch)
    {
        var picked = new List<CompileTarget>();
        foreach (var name in spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            IEnumerable<CompileTarget> group = name.ToLowerInvariant() switch
            {
                "all" => CompileTarget.All,
                "amdgcn" => CompileTarget.All.Where(t => t.Vendor == "AMD"),
                "ptx" => ParseArch(arch).Select(sm => CompileTarget.Get($"ptx-sm_{sm}")),
                _ => [Get(name)],
            };
            picked.AddRange(group.Where(t => !picked.Contains(t)));
        }
        if (picked.Count == 0) throw new ArgumentException($"--target: '{spec}' names no target", "target");
        return picked;
    }

    static CompileTarget Get(string name)
    {
        try { return CompileTarget.Get(name); }
        catch (ArgumentException e) { throw new ArgumentException($"--target: {e.Message.Replace(" (Parameter 'name')", "")} (or the groups all, amdgcn, ptx)", "target"); }
    }

    public static Command Build()
    {
        var target = new Option<string?>("--target") { Description = $"comma-separated targets: {string.Join(", ", CompileTarget.All.Select(t => t.Name))}, or the groups all, amdgcn, ptx (with --arch)" };
        var matrix = new Option<bool>("--matrix") { Description = "every kernel for every target (--target all), with the kernels x targets summary" };
        var arch = new Option<string>("--arch") { Description = "the architectures of the ptx group: sm_60..sm_90, sm_75 or sm_70,sm_80", DefaultValueFactory = _ => "sm_60..sm_90" };
        var outDir = new Option<string?>("--out") { Description = "write the artifacts here (one folder per target when there are several); without it, compile and check only" };
        var filter = new Option<string?>("--kernel") { Description = "only kernels whose name contains this" };
        var jobs = new Option<int>("--jobs") { Description = "compiles at a time", DefaultValueFactory = _ => Environment.ProcessorCount };
        var json = new Option<bool>("--json") { Description = "one JSON object per kernel x target on standard output" };
        var cmd = new Command("emit", "Compile each GPU kernel for AMD (amdgcn), NVIDIA (PTX) and Khronos (OpenCL C, SPIR, SPIR-V) targets with no GPU present, check each artifact, optionally write them; exit 1 on any failure or missing tool")
            { target, matrix, arch, outDir, filter, jobs, json };
        cmd.SetAction(r =>
        {
            string? spec = r.GetValue(target);
            bool all = r.GetValue(matrix);
            if (spec is null && !all || spec is not null && all) throw new ArgumentException("give --target TARGETS or --matrix (one of them)", "target");
            var targets = ParseTargets(all ? "all" : spec!, r.GetValue(arch)!);
            int parallelism = r.GetValue(jobs);
            if (parallelism < 1) throw new ArgumentException($"--jobs must be at least 1, not {parallelism}", "jobs");
            _ = MethodOps.All;   // the method library's kernels are compiled with the built-in ones
            var kernels = KernelCatalog.All.Where(k => r.GetValue(filter) is not { } f || k.Name.Contains(f)).ToList();
            if (kernels.Count == 0) throw new ArgumentException($"--kernel: no kernel name contains '{r.GetValue(filter)}'", "kernel");
            string? dir = r.GetValue(outDir) is { } d ? Cli.OutputFolder(d, "--out") : null;
            bool asJson = r.GetValue(json);

            string? Write(CompileResult c)
            {
                if (dir is null || c.Artifact is null) return null;
                string sub = targets.Count == 1 ? dir : Path.Combine(dir, c.Target.Name);
                Directory.CreateDirectory(sub);
                string file = Path.Combine(sub, c.Kernel.Name + c.Target.Extension);
                File.WriteAllBytes(file, c.Artifact);
                return file;
            }

            var clock = System.Diagnostics.Stopwatch.StartNew();
            var results = Cli.Progress($"compiling {kernels.Count} kernels for {targets.Count} target(s)", kernels.Count * targets.Count, tick =>
            {
                int done = 0;
                return KernelEmitter.CompileMatrix(kernels, targets, parallelism, c =>
                {
                    tick(++done);
                    string? file = Write(c);
                    if (asJson)
                        Cli.JsonLine(new
                        {
                            kernel = c.Kernel.Name, target = c.Target.Name, vendor = c.Target.Vendor,
                            status = c.Status switch { CompileStatus.Compiled => "ok", CompileStatus.NotApplicable => "skipped", CompileStatus.ToolMissing => "missing_tool", _ => "failed" },
                            bytes = c.Artifact?.Length, file, error = c.Error, ms = Math.Round(c.Elapsed.TotalMilliseconds, 1),
                        });
                });
            });
            PrintSummary(results, targets, clock.Elapsed, asJson ? Console.Error : Console.Out, dir);
            return results.Any(c => c.Status is CompileStatus.Failed or CompileStatus.ToolMissing) ? Cli.Failed : 0;
        });
        return cmd;
    }

    /// <summary>Per target: compiled, failed, skipped and compile seconds; then each failure's kernel and first error line.</summary>
    static void PrintSummary(IReadOnlyList<CompileResult> results, IReadOnlyList<CompileTarget> targets, TimeSpan wall, TextWriter output, string? dir)
    {
        output.WriteLine($"{"target",-15} {"vendor",-8} {"toolchain",-12} {"compiled",9} {"failed",6} {"skipped",7} {"seconds",8}");
        foreach (var t in targets)
        {
            var mine = results.Where(c => c.Target == t).ToList();
            output.WriteLine($"{t.Name,-15} {t.Vendor,-8} {t.Toolchain,-12} {$"{mine.Count(c => c.Status == CompileStatus.Compiled)}/{mine.Count}",9} "
                + $"{mine.Count(c => c.Status is CompileStatus.Failed or CompileStatus.ToolMissing),6} {mine.Count(c => c.Status == CompileStatus.NotApplicable),7} {mine.Sum(c => c.Elapsed.TotalSeconds),8:0.0}");
        }
        foreach (var missing in results.Where(c => c.Status == CompileStatus.ToolMissing).GroupBy(c => c.Target))
            output.WriteLine($"{missing.Key.Name}: {missing.First().Error}");
        foreach (var c in results.Where(c => c.Status == CompileStatus.Failed))
            output.WriteLine($"FAILED {c.Kernel.Name} ({c.Target.Name}): {c.FirstErrorLine}");
        output.WriteLine($"{results.Count(c => c.Status == CompileStatus.Compiled)} compiled, {results.Count(c => c.Status is CompileStatus.Failed or CompileStatus.ToolMissing)} failed, "
            + $"{results.Count(c => c.Status == CompileStatus.NotApplicable)} skipped (warp kernels on OpenCL targets run their shared-memory twins) "
            + $"of {results.Count / targets.Count} kernels x {targets.Count} targets in {wall.TotalSeconds:0.0} s" + (dir is null ? "" : $"; artifacts in {dir}"));
    }
}
