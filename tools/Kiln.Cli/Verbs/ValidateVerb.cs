using System.CommandLine;
using Kiln.Backends;
using Kiln.Gpu;
using Kiln.Methods;
using Kiln.Ops;
using Kiln.Kernels.Gpu;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>
/// `kiln validate`: every op definition in <see cref="OpCatalog"/> (built-in, and the method library's on the extension
/// API) on every backend present (the CPU SIMD kernels, ILGPU's CPU accelerator, each CUDA device, each OpenCL device Kiln
/// can drive), through <see cref="Conformance.Validate"/>: the same definitions, domains, special values and budgets the
/// conformance tests use. Prints an op x backend matrix (each cell the error of the dtype that used most of its budget),
/// optionally JSON lines and a Markdown report with a heatmap (<see cref="ConformanceReport"/>), builds every catalog
/// kernel on each GPU device, and exits 1 on any failure.
/// </summary>
public static class ValidateVerb
{
    static double? Finite(double v) => double.IsFinite(v) ? v : null;

    static DType[] ParseDTypes(string spec) =>
        [.. spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s => Enum.TryParse<DType>(s, ignoreCase: true, out var t) ? t
            : throw new ArgumentException($"--dtype: '{s}' is not a dtype; known: {string.Join(", ", Enum.GetNames<DType>().Select(n => n.ToLowerInvariant()))}", "dtype"))];

    /// <summary>Random cases per op, dtype and device, on top of every edge shape (empty, scalar, odd extents) in every layout.</summary>
    const int Cases = 6;

    /// <summary>Builds every catalog kernel <paramref name="gpu"/> would launch (warp kernels only where it has warps);
    /// prints the count and each kernel that cannot build, with the reason; returns the number of failures.</summary>
    static int ReportBuilds(IlgpuBackend gpu)
    {
        var kernels = KernelCatalog.All.Where(k => gpu.Driver.SupportsWarp || !k.NeedsWarp).ToArray();
        var failed = new List<(string Name, string Reason)>();
        foreach (var k in kernels)
        {
            try { k.Prepare(gpu.Driver); }
            catch (Exception e) when (e is NotSupportedException or InvalidOperationException or ArgumentException) { failed.Add((k.Name, e.Message)); }
        }
        int warp = KernelCatalog.All.Count - kernels.Length;
        Cli.Err.MarkupLine($"{gpu.Device} ({Markup.Escape(gpu.Driver.Name)}): {(failed.Count == 0 ? "[green]" : "[red]")}{kernels.Length - failed.Count} of {kernels.Length} catalog kernels build[/]"
            + (warp > 0 ? $" ({warp} warp-shuffle kernels replaced by their shared-memory twins)" : ""));
        foreach (var (name, reason) in failed) Cli.Err.MarkupLine($"  [red]{Markup.Escape(name)}[/]: {Markup.Escape(reason)}");
        return failed.Count;
    }

    /// <summary>
    /// Ops (rows) by device and dtype (columns), coloured by the share of the error budget used (0 exact, 1 at the budget;
    /// 2 and above fail: out of budget, a wrong special value, or a result that changed between runs); white where the op
    /// has no such dtype.
    /// </summary>
    static void Heatmap(IReadOnlyList<ConformanceRow> rows, string path)
    {
        var ops = rows.Select(r => r.Op).Distinct().ToArray();
        var columns = rows.Select(r => (r.Device, r.DType)).Distinct().OrderBy(c => c.Device.Kind).ThenBy(c => c.Device.Index).ThenBy(c => c.DType).ToArray();
        var data = new double[ops.Length, columns.Length];
        for (int i = 0; i < ops.Length; i++)
            for (int j = 0; j < columns.Length; j++)
                data[i, j] = double.NaN;
        foreach (var r in rows)
            data[Array.IndexOf(ops, r.Op), Array.IndexOf(columns, (r.Device, r.DType))] = Math.Min(ConformanceReport.Score(r), 2);
        var plt = new ScottPlot.Plot();
        var map = plt.Add.Heatmap(data);
        map.Colormap = new ScottPlot.Colormaps.Turbo();
        map.ManualRange = new ScottPlot.Range(0, 2);
        map.NaNCellColor = ScottPlot.Colors.White;
        var bar = plt.Add.ColorBar(map);
        bar.Label = "share of the error budget used (>= 1 fails)";
        // Cell (i, j) is centred at x = j, y = rows - 1 - i (the first row on top).
        plt.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            [.. Enumerable.Range(0, ops.Length).Select(i => (double)(ops.Length - 1 - i))], ops);
        plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            [.. Enumerable.Range(0, columns.Length).Select(j => (double)j)], [.. columns.Select(c => $"{c.Device} {c.DType.ToString().ToLowerInvariant()}")]);
        plt.Axes.Bottom.TickLabelStyle.Rotation = 45;
        plt.Axes.Bottom.TickLabelStyle.Alignment = ScottPlot.Alignment.MiddleLeft;
        plt.Axes.Bottom.MinimumSize = 160;
        plt.Axes.Left.TickLabelStyle.FontSize = 10;
        plt.Axes.SetLimits(-0.5, columns.Length - 0.5, -0.5, ops.Length - 0.5);
        plt.Title("kiln validate: error / budget per op, device and dtype");
        plt.SavePng(path, 300 + 60 * columns.Length, 300 + 14 * ops.Length);
    }

    public static Command Build()
    {
        var json = new Option<bool>("--json") { Description = "one JSON object per op x dtype x backend on standard output (max_rel_error, ulp, budget, worst_input, deterministic, pass)" };
        var noCpuAccel = new Option<bool>("--no-ilgpu-cpu") { Description = "skip ILGPU's CPU accelerator" };
        var noOpenCl = new Option<bool>("--no-opencl") { Description = "skip OpenCL devices" };
        var filter = new Option<string?>("--op") { Description = "only ops whose name contains this" };
        var dtypeFilter = new Option<string?>("--dtype") { Description = "only these dtypes, comma-separated (float32, float64, int32, int64, ...)" };
        var report = new Option<string?>("--report") { Description = "write DIR/VALIDATION.md (summary, failures by input class, a table per family) and DIR/validation-heatmap.png (ops by device and dtype, coloured by the share of the error budget used)" };
        var relaxed = new Option<bool>("--relaxed") { Description = "judge by the relaxed (fast-math) budgets: exp-based functions 3 + 2|x| ulp, log 2^-21 and sin/cos 2^-11 absolute" };
        var device = new Option<string>("--device") { Description = $"Validate only this device: {KilnGpu.DeviceForms} (default: every device present)" };
        var listDevices = new Option<bool>("--list-devices") { Description = "list the devices present, each OpenCL device with the program path it takes and why, and exit (1 if one cannot be driven)" };
        var cmd = new Command("validate", "Run every op (built-in and registered) on every backend present against its float64 reference, with the error budget its definition states; prints an op x backend matrix, exit 1 on any failure") { json, noCpuAccel, noOpenCl, filter, dtypeFilter, device, relaxed, report, listDevices };
        cmd.SetAction(r =>
        {
            if (r.GetValue(listDevices)) return DeviceList.Print(r.GetValue(json));
            if (r.GetValue(report) is { } reportDir) Cli.OutputFolder(reportDir, "--report");
            _ = MethodOps.All;
            var dtypes = r.GetValue(dtypeFilter) is { } wanted ? ParseDTypes(wanted) : null;
            var leases = new List<DeviceLease>();
            try
            {
                if (r.GetValue(device) is not null) leases.Add(Cli.OpenDevice(r, device));
                else
                    foreach (var spec in KilnGpu.Available())
                    {
                        if (spec == "ilgpu-cpu" && r.GetValue(noCpuAccel) || spec.StartsWith("opencl", StringComparison.Ordinal) && r.GetValue(noOpenCl)) continue;
                        try { leases.Add(KilnGpu.Open(spec)); }
                        catch (NotSupportedException e) when (spec.StartsWith("opencl", StringComparison.Ordinal)) { Cli.Err.MarkupLine($"[yellow]{spec} skipped[/]: {Markup.Escape(e.InnerException?.Message ?? e.Message)}"); }
                    }
                var devices = leases.Select(l => l.Device).OrderBy(d => d.Kind).ThenBy(d => d.Index).ToArray();
                // Grouped by family, in definition order within each.
                var ops = OpCatalog.All.Where(o => (r.GetValue(filter) is not { } f || o.Name.Contains(f)) && (dtypes is null || o.DTypes.Any(dtypes.Contains)))
                    .OrderBy(o => o.Family, StringComparer.Ordinal).ToArray();
                var results = new Dictionary<(string, Device), ConformanceRow[]>();
                Cli.Progress($"validating {ops.Length} ops on {devices.Length} backends", ops.Length * devices.Length, tick =>
                {
                    int done = 0;
                    foreach (var dev in devices)
                        foreach (var op in ops)
                        {
                            var rows = Conformance.Validate(op, [dev], Cases, dtypes: dtypes, relaxed: r.GetValue(relaxed)).ToArray();
                            results[(op.Name, dev)] = rows;
                            if (r.GetValue(json))
                                foreach (var row in rows)
                                    Cli.JsonLine(new
                                    {
                                        op = row.Op, dtype = row.DType.ToString().ToLowerInvariant(), backend = dev.ToString(), cases = row.Cases,
                                        max_rel_error = Finite(row.Result.MaxRelError), ulp = Finite(row.Result.MaxUlp), bound_error = Finite(row.Result.MaxBoundError),
                                        budget = row.Budget, budget_used = Finite(row.Result.BudgetUsed),
                                        worst_input = row.Result.Worst is { } w ? new { index = w.Index, expected = Finite(w.Expected), actual = Finite(w.Actual) } : null,
                                        specials = row.Specials.Select(s => new { @class = s.Class, count = s.Count, mismatches = s.Mismatches.Count, first = s.Mismatches.FirstOrDefault()?.ToString() }),
                                        deterministic = row.Deterministic, thread_invariant = row.ThreadInvariant, pass = row.Pass, error = row.Failure,
                                    });
                            tick(++done);
                        }
                    return 0;
                });
                int buildFailures = 0;
                foreach (var dev in devices)
                {
                    if (BackendRegistry.Get(dev) is not IlgpuBackend gpu) continue;
                    buildFailures += ReportBuilds(gpu);
                }
                var table = new Table().AddColumn("family").AddColumn("op").AddColumn("dtypes");
                foreach (var d in devices) table.AddColumn(d.ToString());
                string? family = null;
                foreach (var op in ops)
                    table.AddRow([op.Family == family ? "" : family = op.Family, op.Name,
                        string.Join(" ", results[(op.Name, devices[0])].Select(x => x.DType.ToString().ToLowerInvariant())), .. devices.Select(d =>
                    {
                        var rows = results[(op.Name, d)];
                        var bad = rows.FirstOrDefault(x => !x.Pass);
                        // The dtype that used the most of its budget speaks for the cell.
                        var worst = rows.MaxBy(ConformanceReport.Score)!;
                        string nd = rows.All(x => x.Deterministic) ? "" : " [yellow]nondeterministic[/]";
                        return bad is null ? $"[green]pass[/] {Markup.Escape(ConformanceReport.Error(worst))}{nd}"
                            : $"[red]FAIL[/] {Markup.Escape(bad.Failure ?? "")}{nd}";
                    })]);
                Cli.Err.Write(table);
                int checks = results.Values.Sum(v => v.Length), failedChecks = results.Values.Sum(v => v.Count(x => !x.Pass));
                int failures = failedChecks + buildFailures;
                var unsteady = results.Values.SelectMany(v => v).Where(x => !x.Deterministic).ToArray();
                if (unsteady.Length > 0)
                    Cli.Err.MarkupLine($"[yellow]{unsteady.Length} op x dtype x backend rows gave different bits when run twice[/]: {Markup.Escape(string.Join(", ", unsteady.Select(x => $"{x.Op} {x.DType.ToString().ToLowerInvariant()} {x.Device}")))}");
                if (r.GetValue(report) is { } dir)
                {
                    var all = ops.SelectMany(o => devices.SelectMany(d => results[(o.Name, d)])).ToArray();
                    Directory.CreateDirectory(dir);
                    string png = Path.Combine(dir, "validation-heatmap.png"), md = Path.Combine(dir, "VALIDATION.md");
                    Heatmap(all, png);
                    var machine = Kiln.Bench.BenchMachine.Current();
                    File.WriteAllText(md, ConformanceReport.Markdown(all,
                    [
                        $"{DateTime.UtcNow:yyyy-MM-dd}, {machine.CpuName} ({machine.LogicalCpus} logical CPUs, Vector512 {(machine.Vector512 ? "on" : "off")}), .NET {machine.Runtime}",
                        $"devices: {string.Join(", ", devices.Select(d => $"{d} ({(BackendRegistry.Get(d) is IlgpuBackend g ? g.Driver.Name : "Kiln's SIMD kernels")})"))}",
                        $"command: `kiln {string.Join(' ', Environment.GetCommandLineArgs().Skip(1))}`",
                        $"{all.Length} op x dtype x device rows, {Cases} random cases each beside the edge shapes",
                    ], Path.GetFileName(png), r.GetValue(relaxed)));
                    Cli.Err.MarkupLine($"report: {Markup.Escape(md)}, heatmap: {Markup.Escape(png)}");
                }
                Cli.Err.MarkupLine(failures == 0
                    ? $"[green]all {checks} op x dtype x backend checks pass ({ops.Length} ops, each on every edge shape and {Cases} random cases in every layout), and every catalog kernel builds[/]"
                    : $"[red]{failures} failures ({failedChecks} of {checks} checks, {buildFailures} kernel builds)[/]");
                return failures == 0 ? 0 : Cli.Failed;
            }
            finally { foreach (var l in leases) l.Dispose(); }
        });
        return cmd;
    }
}
