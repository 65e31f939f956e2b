using System.CommandLine;
using Kiln.Backends;
using Kiln.Gpu;
using Kiln.Kernels;
using Kiln.Kernels.Gpu;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>
/// `kiln validate`: every kernel family on every backend present (the CPU SIMD kernels, ILGPU's CPU accelerator, each
/// CUDA device, each OpenCL device Kiln can drive, e.g. PoCL through SPIR from clang-15) on random inputs of many shapes
/// and layouts, against the float64 reference; prints a kernel x backend matrix of the largest relative error and
/// pass/fail, and exits 1 on any failure.
/// </summary>
public static class ValidateVerb
{
    /// <summary>One check: compares a device's results with the reference; returns the largest relative error and whether every element is within tolerance.</summary>
    public sealed record Check(string Kernel, DType DType, Func<Device, Tensor[], (double MaxRel, bool Pass)> Run, double Tolerance, bool NeedsFloatInput = true);

    static readonly int[][] Shapes = [[0], [1], [7], [3, 5], [33, 17], [4, 3, 65], [2, 3, 4, 5], [1, 257]];

    static (double, bool) Compare(double[] expected, double[] actual, double rtol, double atol)
    {
        if (expected.Length != actual.Length) return (double.PositiveInfinity, false);
        double worst = 0; bool ok = true;
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            if (double.IsNaN(e) || double.IsInfinity(e)) { ok &= e.Equals(a); continue; }
            double d = Math.Abs(a - e);
            worst = Math.Max(worst, d / Math.Max(Math.Abs(e), 1e-300));
            ok &= d <= atol + rtol * Math.Abs(e);
        }
        return (expected.Length == 0 ? 0 : worst, ok);
    }

    static (double, double) Tol(DType d, double scale) => d == DType.Float64 ? (1e-12 * scale, 1e-14 * scale) : (2e-5 * scale, 1e-6 * scale);

    static double[] Rows(double[] x, int len, Func<double[], double[]> f) =>
        len == 0 ? [] : Enumerable.Range(0, x.Length / len).SelectMany(r => f(x.Skip(r * len).Take(len).ToArray())).ToArray();

    /// <summary>The checks, one per kernel family and dtype.</summary>
    public static IReadOnlyList<Check> Checks()
    {
        var list = new List<Check>();
        foreach (var dt in new[] { DType.Float32, DType.Float64 })
        {
            list.Add(new("elementwise.unary", dt, (dev, xs) => All(xs, x =>
            {
                var r = (0.0, true);
                foreach (var op in Enum.GetValues<UnaryOp>())
                {
                    var xin = op switch
                    {
                        UnaryOp.Log or UnaryOp.Sqrt or UnaryOp.Rsqrt or UnaryOp.Reciprocal => x.Abs() + 0.1,
                        UnaryOp.Log1p => x.Abs() * 0.3 - 0.9 + 0.95,
                        UnaryOp.Erfinv => x.Tanh() * 0.99,
                        UnaryOp.NormalIcdf => x.Sigmoid() * 0.98 + 0.01,
                        _ => x,
                    };
                    var xd = xin.ToDoubleArray();
                    var (rt, at) = Tol(dt, 8);
                    r = Merge(r, Compare(xd.Select(v => Reference.Unary(op, v)).ToArray(), xin.Apply(op).ToDoubleArray(), rt, at));
                }
                return r;
            }), 8));
            list.Add(new("elementwise.binary", dt, (dev, xs) => All(xs, x =>
            {
                var r = (0.0, true);
                var b = x.Rank == 0 ? x : x.Narrow(x.Rank - 1, 0, Math.Min(1, x.Shape[^1]));   // broadcast along the last axis
                foreach (var op in Enum.GetValues<BinaryOp>())
                {
                    var (p, q) = op == BinaryOp.Pow ? (x.Abs() + 0.1, b) : op == BinaryOp.Div ? (x, b.Abs() + 0.5) : (x, b);
                    var y = Tensor.Binary(op, p, q);
                    var pd = p.ToDoubleArray(); var qd = q.BroadcastTo(y.Shape).ToDoubleArray();
                    var (rt, at) = Tol(dt, 8);
                    r = Merge(r, Compare(pd.Select((v, i) => Reference.Binary(op, v, qd[i])).ToArray(), y.ToDoubleArray(), rt, at));
                }
                return r;
            }), 8));
            list.Add(new("reduce.rows+cols", dt, (dev, xs) => All(xs, x =>
            {
                if (x.Rank == 0 || x.Numel == 0) return (0, true);
                var r = (0.0, true);
                int len = x.Shape[^1];
                var xd = x.Contiguous().ToDoubleArray();
                var (rt, at) = Tol(dt, 4 * Math.Max(len, 1));
                foreach (var op in new[] { ReduceOp.Sum, ReduceOp.Max, ReduceOp.Min })
                {
                    var y = op == ReduceOp.Sum ? x.Sum([-1]) : op == ReduceOp.Max ? x.Amax([-1]) : x.Amin([-1]);
                    r = Merge(r, Compare(Rows(xd, len, row => [Reference.Reduce(op, row)]), y.ToDoubleArray(), rt, at));
                }
                var col = x.Contiguous().Sum([0]).ToDoubleArray();
                int n0 = x.Shape[0], rest = x.Numel / Math.Max(n0, 1);
                var colRef = Enumerable.Range(0, rest).Select(c => Reference.Reduce(ReduceOp.Sum, Enumerable.Range(0, n0).Select(i => xd[i * rest + c]).ToArray())).ToArray();
                return Merge(r, Compare(colRef, col, rt, at));
            }), 1));
            list.Add(new("softmax", dt, (dev, xs) => All(xs, x =>
            {
                if (x.Rank == 0) return (0, true);
                int len = x.Shape[^1]; var xd = x.Contiguous().ToDoubleArray(); var (rt, at) = Tol(dt, 8);
                return Merge(Compare(Rows(xd, len, row => Reference.Softmax(row)), x.Softmax(-1).ToDoubleArray(), rt, at),
                             Compare(Rows(xd, len, row => Reference.Softmax(row, true)), x.LogSoftmax(-1).ToDoubleArray(), rt, at * 10));
            }), 8));
            list.Add(new("layernorm", dt, (dev, xs) => All(xs, x =>
            {
                if (x.Rank == 0) return (0, true);
                int len = x.Shape[^1]; var xd = x.Contiguous().ToDoubleArray(); var (rt, at) = Tol(dt, 8);
                var w = Tensor.Linspace(0.5, 1.5, len, dt, dev); var b = Tensor.Linspace(-1, 1, len, dt, dev);
                double[] wd = w.ToDoubleArray(), bd = b.ToDoubleArray();
                return Merge(Compare(Rows(xd, len, row => Reference.LayerNorm(row, wd, bd, 1e-5)), x.LayerNorm(w, b).ToDoubleArray(), rt, at * 10),
                             Compare(Rows(xd, len, row => Reference.RmsNorm(row, wd, 1e-6)), x.RmsNorm(w).ToDoubleArray(), rt, at * 10));
            }), 8));
            list.Add(new("gemm.tiled", dt, (dev, _) =>
            {
                var r = (0.0, true);
                foreach (var (m, k, n) in new[] { (1, 1, 1), (7, 5, 3), (33, 17, 65), (64, 64, 64), (70, 130, 9) })
                {
                    var g = new Generator((ulong)(m * 1000 + k * 10 + n));
                    var a = Tensor.Rand([k, m], g, -1, 1, dt, dev).Transpose(0, 1);
                    var b = Tensor.Rand([k, n], g, -1, 1, dt, dev);
                    var (rt, at) = Tol(dt, 4 * k);
                    r = Merge(r, Compare(Reference.Gemm(m, n, k, a.Contiguous().ToDoubleArray(), b.ToDoubleArray()), a.MatMul(b).ToDoubleArray(), rt, at * 10));
                }
                return r;
            }, 4));
            list.Add(new("sort", dt, (dev, xs) => All(xs, x =>
            {
                if (x.Rank == 0) return (0, true);
                int len = x.Shape[^1]; var xd = x.Contiguous().ToDoubleArray();
                var (v, i) = x.Sort(-1, descending: true);
                bool ok = Rows(xd, len, row => Reference.SortRow(row, true).Values).SequenceEqual(v.ToDoubleArray())
                       && Rows(xd, len, row => Reference.SortRow(row, true).Indices.Select(q => (double)q).ToArray()).SequenceEqual(i.ToDoubleArray());
                return (0, ok);
            }), 0));
            list.Add(new("indexing.gather+scatter", dt, (dev, xs) => All(xs, x =>
            {
                if (x.Rank == 0 || x.Numel == 0) return (0, true);
                int len = x.Shape[^1];
                var idx = Tensor.RandInt(x.Shape, 0, len, new Generator(5)).To(dev);
                var xd = x.Contiguous().ToDoubleArray(); var id = idx.ToArray<long>();
                bool ok = Reference.Gather(xd, x.Numel / len, len, 1, id, len).SequenceEqual(x.Gather(-1, idx).ToDoubleArray());
                var add = new double[xd.Length];
                for (int q = 0; q < xd.Length; q++) add[(q / len) * len + (int)id[q]] += xd[q];
                var (rt, at) = Tol(dt, 8);
                var (e, ok2) = Compare(add, x.ZerosLike().ScatterAdd(-1, idx, x).ToDoubleArray(), rt, at);
                return (e, ok && ok2);
            }), 8));
            list.Add(new("elementwise.select", dt, (dev, xs) => All(xs, x =>
            {
                var b = x.Rank == 0 ? x : x.Narrow(x.Rank - 1, 0, Math.Min(1, x.Shape[^1]));
                var xd = x.ToDoubleArray();
                bool ok = true;
                foreach (var op in Enum.GetValues<CompareOp>())
                {
                    var y = Tensor.Compare(op, x, b);
                    var bd = b.BroadcastTo(y.Shape).ToDoubleArray();
                    ok &= xd.Select((v, i) => Reference.Compare(op, v, bd[i])).SequenceEqual(y.ToArray<bool>());
                }
                var w = Tensor.Where(x > 0.5, x, -x).ToDoubleArray();
                ok &= xd.Select(v => v > 0.5 ? v : -v).SequenceEqual(w);
                ok &= xd.Select(v => Math.Min(Math.Max(v, -1), 2)).SequenceEqual(x.Clamp(-1, 2).ToDoubleArray());
                return (0, ok);
            }), 0));
            list.Add(new("reduce.cumsum+argmax", dt, (dev, xs) => All(xs, x =>
            {
                if (x.Rank == 0 || x.Numel == 0) return (0, true);
                int len = x.Shape[^1];
                var xd = x.Contiguous().ToDoubleArray();
                var (rt, at) = Tol(dt, 4 * len);
                var prefix = Rows(xd, len, row => { var c = new double[row.Length]; double acc = 0; for (int i = 0; i < row.Length; i++) c[i] = acc += row[i]; return c; });
                var (e, ok) = Compare(prefix, x.Cumsum(-1).ToDoubleArray(), rt, at);
                // The first index of the largest value, as the reference sort (stable, descending) puts it first.
                var arg = Rows(xd, len, row => [Reference.SortRow(row, true).Indices[0]]);
                ok &= arg.SequenceEqual(x.ArgMax(-1).ToDoubleArray());
                return (e, ok);
            }), 4));
            list.Add(new("attention.fused", dt, (dev, _) =>
            {
                var r = (0.0, true);
                foreach (var (bh, tq, tk, d, dv, causal) in new[] { (1, 1, 1, 1, 1, false), (2, 5, 5, 4, 3, true), (3, 17, 33, 8, 5, false), (1, 33, 33, 16, 16, true), (2, 7, 0, 4, 4, false) })
                {
                    var g = new Generator((ulong)(tq * 100 + tk));
                    var q = Tensor.Rand([bh, tq, d], g, -1, 1, dt, dev); var k = Tensor.Rand([bh, tk, d], g, -1, 1, dt, dev); var v = Tensor.Rand([bh, tk, dv], g, -1, 1, dt, dev);
                    double scale = 1 / Math.Sqrt(d);
                    var (qd, kd, vd) = (q.ToDoubleArray(), k.ToDoubleArray(), v.ToDoubleArray());
                    var expected = Enumerable.Range(0, bh).SelectMany(t => Reference.Attention(tq, tk, d, dv, qd.AsSpan(t * tq * d, tq * d), kd.AsSpan(t * tk * d, tk * d), vd.AsSpan(t * tk * dv, tk * dv), causal, scale)).ToArray();
                    var (rt, at) = Tol(dt, 8 * Math.Max(tk, 1));
                    r = Merge(r, Compare(expected, Tensor.ScaledDotProductAttention(q, k, v, causal, scale).ToDoubleArray(), rt, at));
                }
                return r;
            }, 8));
            list.Add(new("philox", dt, (dev, _) =>
            {
                bool ok = Tensor.Rand([1000], new Generator(11), -1, 3, dt).ToDoubleArray().SequenceEqual(Tensor.Rand([1000], new Generator(11), -1, 3, dt, dev).ToDoubleArray());
                var (e, ok2) = Compare(Tensor.Randn([1000], new Generator(12), 0, 1, dt).ToDoubleArray(), Tensor.Randn([1000], new Generator(12), 0, 1, dt, dev).ToDoubleArray(), dt == DType.Float32 ? 1e-7 : 1e-13, 1e-14);
                return (e, ok && ok2);
            }, 0));
        }
        list.Add(new("stump_sum.pdf+tail", DType.Float64, (dev, _) =>
        {
            // Three meta-stumps with 2, 0 and 3 thresholds; region values as the smoothing builds them.
            int[] starts = [0, 2, 2, 5], values = [0, 1, 3, 2, 0, 4, 1, 0];
            int regions = starts[^1], batch = 6, width = Reference.StumpSumWidth(starts, values);
            var g = new Generator(21);
            // P[x' >= threshold] descends within a group, as for sorted thresholds.
            var upper = Tensor.Rand([batch, regions], g, 0, 1, DType.Float64).ToDoubleArray();
            for (int b = 0; b < batch; b++)
                for (int gr = 0; gr + 1 < starts.Length; gr++)
                    Array.Sort(upper, b * regions + starts[gr], starts[gr + 1] - starts[gr], Comparer<double>.Create((x, y) => y.CompareTo(x)));
            var up = Tensor.FromArray(upper, new Shape(batch, regions)).To(dev);
            var pdf = Tensor.StumpSumPdf(up, starts, values).ToDoubleArray();
            var expected = Enumerable.Range(0, batch).SelectMany(b => Reference.StumpSumPdf(upper.AsSpan(b * regions, regions), starts, values)).ToArray();
            var (e, ok) = Compare(expected, pdf, 1e-12, 1e-15);
            long[] cuts = [-1, 0, 3, 5, width - 1, width + 2];
            var tail = Tensor.StumpSumTail(up, starts, values, Tensor.FromArray(cuts, new Shape(batch)).To(dev)).ToDoubleArray();
            var tailRef = Enumerable.Range(0, batch).Select(b => Reference.StumpSumTail(upper.AsSpan(b * regions, regions), starts, values, cuts[b])).ToArray();
            var (e2, ok2) = Compare(tailRef, tail, 1e-12, 1e-15);
            return (Math.Max(e, e2), ok && ok2);
        }, 1));
        return list;
    }

    /// <summary>Builds every catalog kernel <paramref name="gpu"/> would launch (warp kernels only where it has warps);
    /// prints the count and each kernel that cannot build, with the reason; returns the number of failures.</summary>
    static int ReportBuilds(IlgpuBackend gpu)
    {
        var kernels = KernelCatalog.All.Where(k => gpu.Driver.SupportsWarp || !k.NeedsWarp).ToArray();
        var failed = new List<(string Name, string Reason)>();
        foreach (var k in kernels)
        {
            try { gpu.Driver.Prepare(k); }
            catch (Exception e) when (e is NotSupportedException or InvalidOperationException or ArgumentException) { failed.Add((k.Name, e.Message)); }
        }
        int warp = KernelCatalog.All.Count - kernels.Length;
        Cli.Err.MarkupLine($"{gpu.Device} ({Markup.Escape(gpu.Driver.Name)}): {(failed.Count == 0 ? "[green]" : "[red]")}{kernels.Length - failed.Count} of {kernels.Length} catalog kernels build[/]"
            + (warp > 0 ? $" ({warp} warp-shuffle kernels replaced by their shared-memory twins)" : ""));
        foreach (var (name, reason) in failed) Cli.Err.MarkupLine($"  [red]{Markup.Escape(name)}[/]: {Markup.Escape(reason)}");
        return failed.Count;
    }

    static (double, bool) Merge((double, bool) a, (double, bool) b) => (Math.Max(a.Item1, b.Item1), a.Item2 && b.Item2);

    static (double, bool) All(Tensor[] xs, Func<Tensor, (double, bool)> f)
    {
        var r = (0.0, true);
        foreach (var x in xs) r = Merge(r, f(x));
        return r;
    }

    /// <summary>Random inputs of every shape, contiguous and permuted, on <paramref name="device"/>.</summary>
    static Tensor[] Inputs(Device device, DType dt)
    {
        var list = new List<Tensor>();
        foreach (var (s, i) in Shapes.Select((s, i) => (s, i)))
        {
            var x = Tensor.Rand(new Shape(s), new Generator((ulong)i + 1), -3, 3, DType.Float64).To(dt).To(device);
            list.Add(x);
            if (s.Length >= 2) list.Add(Tensor.Rand(new Shape(s.Reverse().ToArray()), new Generator((ulong)i + 100), -3, 3, DType.Float64).To(dt).To(device).Permute(Enumerable.Range(0, s.Length).Reverse().ToArray()));
        }
        return list.ToArray();
    }

    public static Command Build()
    {
        var json = new Option<bool>("--json") { Description = "one JSON object per kernel and backend on standard output" };
        var noCpuAccel = new Option<bool>("--no-ilgpu-cpu") { Description = "skip ILGPU's CPU accelerator" };
        var noOpenCl = new Option<bool>("--no-opencl") { Description = "skip OpenCL devices" };
        var device = new Option<string>("--device") { Description = $"Validate only this device: {KilnGpu.DeviceForms} (default: every device present)" };
        var cmd = new Command("validate", "Run every kernel on every backend present against the float64 reference; prints a kernel x backend matrix, exit 1 on any failure") { json, noCpuAccel, noOpenCl, device };
        cmd.SetAction(r =>
        {
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
                var checks = Checks();
                var results = new Dictionary<(string, Device), (double, bool, string?)>();
                Cli.Progress($"validating {checks.Count} kernel checks on {devices.Length} backends", checks.Count * devices.Length, tick =>
                {
                    int done = 0;
                    foreach (var dev in devices)
                    {
                        var inputs = new Dictionary<DType, Tensor[]>();
                        foreach (var c in checks)
                        {
                            var xs = inputs.TryGetValue(c.DType, out var v) ? v : inputs[c.DType] = Inputs(dev, c.DType);
                            string key = $"{c.Kernel} {c.DType.ToString().ToLowerInvariant()}";
                            try { var (e, ok) = c.Run(dev, xs); results[(key, dev)] = (e, ok, null); }
                            catch (Exception ex) when (ex is not OutOfMemoryException) { results[(key, dev)] = (double.NaN, false, ex.GetType().Name + ": " + ex.Message); }
                            var res = results[(key, dev)];
                            if (r.GetValue(json)) Cli.JsonLine(new { kernel = key, backend = dev.ToString(), max_rel_error = double.IsNaN(res.Item1) ? (double?)null : res.Item1, pass = res.Item2, error = res.Item3 });
                            tick(++done);
                        }
                    }
                    return 0;
                });
                int buildFailures = 0;
                foreach (var dev in devices)
                {
                    if (BackendRegistry.Get(dev) is not IlgpuBackend gpu) continue;
                    buildFailures += ReportBuilds(gpu);
                }
                var table = new Table().AddColumn("kernel");
                foreach (var d in devices) table.AddColumn(d.ToString());
                foreach (var key in results.Keys.Select(k => k.Item1).Distinct())
                    table.AddRow([key, .. devices.Select(d =>
                    {
                        var (e, ok, err) = results[(key, d)];
                        return ok ? $"[green]pass[/] {e:0.0e+0}" : $"[red]FAIL[/] {(err is null ? e.ToString("0.0e+0") : Markup.Escape(err))}";
                    })]);
                Cli.Err.Write(table);
                int failures = results.Values.Count(v => !v.Item2) + buildFailures;
                Cli.Err.MarkupLine(failures == 0 ? $"[green]all {results.Count} kernel x backend checks pass, and every catalog kernel builds[/]" : $"[red]{failures} failures ({results.Values.Count(v => !v.Item2)} of {results.Count} checks, {buildFailures} kernel builds)[/]");
                return failures == 0 ? 0 : Cli.Failed;
            }
            finally { foreach (var l in leases) l.Dispose(); }
        });
        return cmd;
    }
}
