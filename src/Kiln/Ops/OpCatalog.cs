using Kiln.Backends;

namespace Kiln.Ops;

/// <summary>
/// Every op definition: the built-in ones, then those libraries and apps register (<see cref="Register"/>). The
/// conformance tests and <c>kiln validate</c> walk this list.
/// </summary>
public static class OpCatalog
{
    static readonly List<OpDefinition> Registered = [];

    /// <summary>The built-in definitions, family by family.</summary>
    public static IReadOnlyList<OpDefinition> BuiltIn { get; } =
        [.. ElementwiseOps.All, .. RowOps.All, .. IndexingOps.All, .. MovementOps.All, .. LinalgOps.All, .. RandomOps.All, .. PoolOps.All, .. ResampleOps.All,
         .. ConvOps.All, .. RecurrentOps.All, .. SequenceOps.All];

    /// <summary>The built-in definitions and every registered one.</summary>
    public static IReadOnlyList<OpDefinition> All
    {
        get { lock (Registered) return [.. BuiltIn, .. Registered]; }
    }

    /// <summary>Lists <paramref name="op"/> with the built-in ops; registering the same definition again does nothing.</summary>
    /// <exception cref="ArgumentException">Another definition has the same name.</exception>
    public static void Register(OpDefinition op)
    {
        ArgumentNullException.ThrowIfNull(op);
        lock (Registered)
        {
            var same = BuiltIn.Concat(Registered).FirstOrDefault(d => d.Name == op.Name);
            if (ReferenceEquals(same, op)) return;
            if (same is not null) throw new ArgumentException($"an op named {op.Name} is already defined", nameof(op));
            Registered.Add(op);
        }
    }

    /// <summary>The definition named <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No op has that name; the message lists the families.</exception>
    public static OpDefinition Get(string name) => All.FirstOrDefault(d => d.Name == name)
        ?? throw new KeyNotFoundException($"no op named '{name}'; families: {string.Join(", ", All.Select(d => d.Family).Distinct())}");
}

/// <summary>One row of a conformance report: an op on one device in one dtype.</summary>
/// <param name="Op">The op's name.</param>
/// <param name="Device">Where it ran.</param>
/// <param name="DType">The dtype.</param>
/// <param name="Cases">How many cases ran.</param>
/// <param name="Result">The worst case's result (merged over the cases).</param>
/// <param name="Deterministic">Every case gave bitwise-equal results (every NaN counted as one value) when run twice.</param>
/// <param name="Budget">The error budget in this dtype, e.g. "3 ulp", "exact", "1 n u sum|terms|".</param>
public sealed record ConformanceRow(string Op, Device Device, DType DType, int Cases, CheckResult Result, bool Deterministic, string Budget)
{
    /// <summary>The special-value pass by input class (empty where the op has none).</summary>
    public IReadOnlyList<SpecialClassResult> Specials { get; init; } = [];
    /// <summary>On the CPU: every case gave the same bits on one thread as on all cores; null on other devices.</summary>
    public bool? ThreadInvariant { get; init; }
    /// <summary>The op's definition allows different results between runs (atomics): a difference is reported, not failed.</summary>
    public bool NondeterministicByDesign { get; init; }
    /// <summary>The family of the op.</summary>
    public string Family { get; init; } = "";

    /// <summary>Within budget in every case and on every special value, and deterministic (run twice, and across CPU thread counts).</summary>
    public bool Pass => Result.Pass && (Deterministic || NondeterministicByDesign) && ThreadInvariant != false && Specials.All(s => s.Pass);

    /// <summary>What failed, in one line, or null.</summary>
    public string? Failure => Result.Detail
        ?? (Specials.FirstOrDefault(s => !s.Pass) is { } bad ? $"{bad.Mismatches.Count} of {bad.Count} {bad.Class} inputs: {bad.Mismatches[0]}" : null)
        ?? (!Deterministic && !NondeterministicByDesign ? "results differ between two runs" : null)
        ?? (ThreadInvariant == false ? "results differ between one thread and all cores" : null);
}

/// <summary>Runs op definitions against their float64 reference on devices: the one call that validates an op.</summary>
public static class Conformance
{
    /// <summary>
    /// Runs <paramref name="cases"/> random cases (plus every edge shape) of <paramref name="op"/> in each of its dtypes on
    /// each of <paramref name="devices"/> (default: every registered device), each case twice to check that the results
    /// are bitwise equal (on the CPU, once more on a single thread), then the special-value pass, and reports the worst
    /// result per (device, dtype). An exception inside a case is a failure with its message, not a crash of the report.
    /// </summary>
    /// <param name="op">The op.</param>
    /// <param name="devices">Where to run it; default every registered device.</param>
    /// <param name="cases">Random cases per device and dtype, beside the edge shapes.</param>
    /// <param name="seed">Seeds the cases.</param>
    /// <param name="dtypes">Only these of the op's dtypes; default all of them.</param>
    /// <param name="relaxed">Judge by the ops' relaxed (fast-math) budgets.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="cases"/> is negative.</exception>
    public static IReadOnlyList<ConformanceRow> Validate(OpDefinition op, IEnumerable<Device>? devices = null, int cases = 16, ulong seed = 1,
        IEnumerable<DType>? dtypes = null, bool relaxed = false)
    {
        ArgumentNullException.ThrowIfNull(op);
        ArgumentOutOfRangeException.ThrowIfNegative(cases);
        var rows = new List<ConformanceRow>();
        foreach (var device in (devices ?? BackendRegistry.Devices.OrderBy(d => d.Kind).ThenBy(d => d.Index)).ToArray())
            foreach (var dtype in op.DTypes.Where(t => dtypes is null || dtypes.Contains(t)))
            {
                var result = CheckResult.Ok;
                int n = 0;
                bool deterministic = true, cpu = device.Kind == DeviceKind.Cpu, threadInvariant = true;
                foreach (var c0 in op.Cases(cases, seed))
                {
                    var c = c0 with { Relaxed = relaxed };
                    n++;
                    var first = Run(op, device, dtype, c);
                    if (first.Pass)
                    {
                        deterministic &= Run(op, device, dtype, c).Digest == first.Digest;
                        if (cpu && CpuBackend.Threads > 1)
                            using (CpuBackend.LimitThreads(1)) threadInvariant &= Run(op, device, dtype, c).Digest == first.Digest;
                    }
                    result = result.Merge(first);
                }
                rows.Add(new ConformanceRow(op.Name, device, dtype, n, result, deterministic, op.Tolerance.Describe(dtype, relaxed))
                {
                    Specials = Specials(op, device, dtype, relaxed),
                    ThreadInvariant = cpu ? threadInvariant : null,
                    NondeterministicByDesign = !op.Deterministic,
                    Family = op.Family,
                });
            }
        return rows;
    }

    /// <summary>The op's special-value pass; an exception is a mismatch of class "error" carrying its message.</summary>
    static IReadOnlyList<SpecialClassResult> Specials(OpDefinition op, Device device, DType dtype, bool relaxed)
    {
        try
        {
            using var scope = Tensor.Scope();
            return op.CheckSpecials(device, dtype, relaxed);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return [new SpecialClassResult("error", 1, [new SpecialMismatch([], double.NaN, double.NaN) { Error = $"{e.GetType().Name}: {e.Message}" }])];
        }
    }

    /// <summary>Runs one case, turning an exception into a failed result that names the case.</summary>
    public static CheckResult Run(OpDefinition op, Device device, DType dtype, OpCase c)
    {
        ArgumentNullException.ThrowIfNull(op);
        ArgumentNullException.ThrowIfNull(c);
        try
        {
            using var scope = Tensor.Scope();
            var r = op.Check(device, dtype, c);
            return r.Pass ? r : r with { Detail = $"{op.Name} {dtype} on {device}, case {c}: {r.Detail}" };
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new CheckResult(double.NaN, false, $"{op.Name} {dtype} on {device}, case {c}: {e.GetType().Name}: {e.Message}");
        }
    }
}
