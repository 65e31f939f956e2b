using System.Globalization;
using System.Text;

namespace Kiln.Ops;

/// <summary>
/// A conformance report in Markdown from the rows of <see cref="Conformance.Validate"/>: a summary per device, the
/// failures with their special-value mismatches by input class, and one table per family (op x dtype x device: budget,
/// error in the budget's unit, share of the budget used, worst element, special classes, determinism).
/// </summary>
public static class ConformanceReport
{
    /// <summary>The error of a row in its budget's unit: "1.5 ulp", "3.2 u sum|terms|" or a relative error.</summary>
    public static string Error(ConformanceRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        var r = row.Result;
        if (row.Budget == "exact") return r.Pass ? "0" : "differs";
        if (row.Budget.Contains("ulp", StringComparison.Ordinal)) return $"{Num(r.MaxUlp)} ulp";
        if (row.Budget.Contains("sum|terms|", StringComparison.Ordinal)) return $"{Num(r.MaxBoundError)} u sum|terms|";
        return $"{Num(r.MaxRelError)} rel";
    }

    /// <summary>The share of its budget a row used (above 1 fails), counting a failed special value or a determinism failure as 2.</summary>
    public static double Score(ConformanceRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        if (!row.Pass && row.Result.Pass) return 2;
        return double.IsFinite(row.Result.BudgetUsed) ? row.Result.BudgetUsed : 2;
    }

    static string Num(double v) => !double.IsFinite(v) ? v.ToString(CultureInfo.InvariantCulture)
        : v == 0 ? "0" : v >= 0.01 && v < 1e4 ? v.ToString("0.##", CultureInfo.InvariantCulture) : v.ToString("0.#e+0", CultureInfo.InvariantCulture);

    static string Cell(string s) => s.Replace("|", "\\|", StringComparison.Ordinal).Replace("\n", " ", StringComparison.Ordinal);

    /// <summary>
    /// The report. <paramref name="environment"/> lines (the machine, the command) go under the title;
    /// <paramref name="heatmap"/> is a relative path to an image of the matrix, or null.
    /// </summary>
    public static string Markdown(IReadOnlyList<ConformanceRow> rows, IEnumerable<string> environment, string? heatmap = null, bool relaxed = false)
    {
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentNullException.ThrowIfNull(environment);
        var md = new StringBuilder();
        md.AppendLine($"# Kernel conformance report{(relaxed ? " (relaxed budgets)" : "")}").AppendLine();
        foreach (var line in environment) md.AppendLine($"- {line}");
        md.AppendLine();
        md.AppendLine("Every op of the catalog (built-in, method-library and registered ops alike) in each of its dtypes on each device, "
            + "against its float64 reference (double-double where float64 would lose digits): every edge shape (empty, scalar, odd extents) "
            + "and random cases in four layouts (contiguous, permuted, sliced, broadcast), then the special-value pass (NaN, +-Inf, +-0, "
            + "subnormals, the smallest and largest normals, each op's singular points), each case run twice (bitwise equal, NaNs as one) "
            + "and, on the CPU, once more on a single thread. Budgets: float32 and float64 ulps of the OpenCL conformance suite for "
            + "elementwise functions, the standard bound n u sum|terms| for sums and products of matrices, Kiln's own relative-plus-absolute "
            + "budget for fused ops; integer results exact.").AppendLine();
        md.AppendLine("## Summary").AppendLine();
        md.AppendLine("| device | checks | pass | fail | special values checked | nondeterministic |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|");
        foreach (var g in rows.GroupBy(r => r.Device))
            md.AppendLine($"| {g.Key} | {g.Count()} | {g.Count(r => r.Pass)} | {g.Count(r => !r.Pass)} | {g.Sum(r => r.Specials.Sum(s => s.Count))} | {g.Count(r => !r.Deterministic || r.ThreadInvariant == false)} |");
        md.AppendLine();
        if (heatmap is not null) md.AppendLine($"![ops by device and dtype, coloured by the share of the error budget used]({heatmap})").AppendLine();
        var failed = rows.Where(r => !r.Pass).ToArray();
        md.AppendLine("## Failures").AppendLine();
        if (failed.Length == 0) md.AppendLine("None.").AppendLine();
        foreach (var r in failed)
        {
            md.AppendLine($"- **{r.Op}** {Dt(r.DType)} on {r.Device}: {Cell(r.Failure ?? "")}");
            foreach (var s in r.Specials.Where(s => !s.Pass))
                md.AppendLine($"  - {s.Class}: {s.Mismatches.Count} of {s.Count}: {Cell(string.Join("; ", s.Mismatches.Take(4)))}");
        }
        if (failed.Length > 0) md.AppendLine();
        foreach (var family in rows.GroupBy(r => r.Family).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            md.AppendLine($"## {family.Key}").AppendLine();
            md.AppendLine("| op | dtype | device | budget | error | budget used | worst (expected -> actual) | special values | deterministic | pass |");
            md.AppendLine("|---|---|---|---|---:|---:|---|---|---|---|");
            foreach (var r in family)
            {
                string worst = r.Result.Worst is { } w ? $"[{w.Index}] {Num(w.Expected)} -> {Num(w.Actual)}" : "";
                string specials = r.Specials.Count == 0 ? "n/a" : string.Join(", ", r.Specials.Select(s => s.Pass ? $"{s.Class} {s.Count}" : $"**{s.Class} {s.Mismatches.Count}/{s.Count}**"));
                string det = (r.Deterministic ? "yes" : r.NondeterministicByDesign ? "no (by design)" : "**no**") + (r.ThreadInvariant switch { true => ", 1 thread = all", false => ", **1 thread differs**", null => "" });
                md.AppendLine($"| {r.Op} | {Dt(r.DType)} | {r.Device} | {Cell(r.Budget)} | {Error(r)} | {Num(Score(r))} | {worst} | {specials} | {det} | {(r.Pass ? "pass" : "**FAIL**")} |");
            }
            md.AppendLine();
        }
        return md.ToString();
    }

    static string Dt(DType t) => t.ToString().ToLowerInvariant();
}
