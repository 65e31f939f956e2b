namespace Kiln.Ops;

/// <summary>How a <see cref="Tolerance"/> measures error.</summary>
public enum BudgetKind
{
    /// <summary>|actual - expected| &lt;= atol + rtol |expected|, in multiples of each dtype's unit: Kiln's own budgets for fused and composite ops.</summary>
    Scaled,
    /// <summary>|actual - expected| in units in the last place of the result dtype at the float64 reference's value, as the OpenCL conformance suite measures.</summary>
    Ulp,
    /// <summary>|actual - expected| &lt;= k n u sum|terms|: the standard bound of a sum or dot product of n terms (u the dtype's unit roundoff).</summary>
    Bound,
}

/// <summary>
/// Error budget of a result against the float64 reference. Three kinds (<see cref="BudgetKind"/>): ULPs of the result
/// dtype for elementwise functions (<see cref="Ulp"/>: the OpenCL conformance budgets for float32), the standard
/// forward-error bound for sums and products of matrices (<see cref="Bound"/>), and Kiln's own relative-plus-absolute budget
/// for fused ops (<c>new Tolerance(scale)</c>: rtol 2e-5 and atol 1e-6 in Float32, 1e-12 and 1e-14 in Float64, times the scale).
/// Integer and Bool results are always exact, NaN must meet NaN and an infinity the same infinity. A BFloat16 or Float16
/// result is the Float32 computation rounded once, so its budget is the Float32 budget plus the half format's rounding:
/// half an ulp of the half dtype on top of the Float32 ulps (<see cref="BudgetKind.Ulp"/>), its unit roundoff u times
/// |expected| on top of the Float32 rtol and atol (<see cref="BudgetKind.Scaled"/>) and on top of the Float32 bound
/// (<see cref="BudgetKind.Bound"/>: the sums accumulate in Float32, so |a - e| &lt;= k n u32 sum|terms| (1 + uh) + uh |e| plus
/// half the format's smallest subnormal, uh its unit roundoff).
/// </summary>
/// <param name="Scale">The multiple of the dtype's unit (<see cref="BudgetKind.Scaled"/>), the ULPs (<see cref="BudgetKind.Ulp"/>) or the bound's factor k (<see cref="BudgetKind.Bound"/>); 0 is exact.</param>
public sealed record Tolerance(double Scale)
{
    /// <summary>How error is measured.</summary>
    public BudgetKind Kind { get; init; } = BudgetKind.Scaled;
    /// <summary>The budget in Float64 where it differs from <see cref="Scale"/> (the float64 reference has rounding of its own).</summary>
    public double? Float64Scale { get; init; }
    /// <summary>The looser budget of fast-math builds (<c>kiln validate --relaxed</c>); null where it is the same.</summary>
    public Tolerance? Relaxed { get; init; }
    /// <summary>An absolute error every element may have on top of the budget (the relaxed sin and cos allow 2^-11).</summary>
    public double AbsoluteFloor { get; init; }

    /// <summary>A few units: well-conditioned elementwise ops.</summary>
    public static Tolerance Tight { get; } = new(2);

    /// <summary>Results must equal the reference exactly (moves, comparisons, selections, sorts).</summary>
    public static Tolerance Exact { get; } = new(0);

    /// <summary>Within <paramref name="ulps"/> units in the last place of the result (and <paramref name="float64"/> in Float64, default the same).</summary>
    public static Tolerance Ulp(double ulps, double? float64 = null) => new(ulps) { Kind = BudgetKind.Ulp, Float64Scale = float64 };

    /// <summary>
    /// |actual - expected| &lt;= <paramref name="factor"/> n u sum|terms| for a result summing n terms; twice that in
    /// Float64, where the float64 reference's own rounding is of the same order as the kernel's.
    /// </summary>
    public static Tolerance Bound(double factor = 1) => new(factor) { Kind = BudgetKind.Bound, Float64Scale = 2 * factor };

    /// <summary>This budget with <paramref name="relaxed"/> for fast-math builds.</summary>
    public Tolerance WithRelaxed(Tolerance relaxed) => this with { Relaxed = relaxed };

    /// <summary>Every result must equal the reference bit for bit (NaNs as one).</summary>
    public bool IsExact => Scale == 0 && (Float64Scale ?? 0) == 0 && AbsoluteFloor == 0;

    double ScaleFor(DType dtype) => dtype == DType.Float64 ? Float64Scale ?? Scale : Scale;

    /// <summary>(rtol, atol) of a <see cref="BudgetKind.Scaled"/> budget in <paramref name="dtype"/>, times <paramref name="extra"/> (a half dtype's rounding is not multiplied: it happens once).</summary>
    public (double Rtol, double Atol) For(DType dtype, double extra = 1) => dtype switch
    {
        DType.Float64 => (1e-12 * ScaleFor(dtype) * extra, 1e-14 * ScaleFor(dtype) * extra),
        DType.BFloat16 or DType.Float16 => (2e-5 * Scale * extra + CheckResult.UnitRoundoff(dtype), 1e-6 * Scale * extra),
        _ => (2e-5 * Scale * extra, 1e-6 * Scale * extra),
    };

    /// <summary>The budget in <paramref name="dtype"/> in words, e.g. "3 ulp", "exact", "1 n u sum|terms|" or "1e-06 + 2e-05 |e|".</summary>
    public string Describe(DType dtype, bool relaxed = false)
    {
        if (relaxed && Relaxed is { } r) return r.Describe(dtype) + " (relaxed)";
        if (!dtype.IsFloating() || IsExact) return "exact";
        string floor = AbsoluteFloor > 0 ? $" or {AbsoluteFloor:G3} absolute" : "";
        if (dtype.IsHalf() && Kind != BudgetKind.Scaled)
            return Kind == BudgetKind.Ulp ? $"0.5 ulp + {Scale:0.##} Float32 ulp{floor}" : $"u |e| + {Scale:0.##} n u32 sum|terms|{floor}";
        return Kind switch
        {
            BudgetKind.Ulp => $"{ScaleFor(dtype):0.##} ulp{floor}",
            BudgetKind.Bound => $"{ScaleFor(dtype):0.##} n u sum|terms|{floor}",
            _ => $"{For(dtype).Atol:G2} + {For(dtype).Rtol:G2} |e|{floor}",
        };
    }

    /// <summary>
    /// Checks <paramref name="actual"/> against the float64 reference <paramref name="expected"/> in result dtype
    /// <paramref name="dtype"/>, by the relaxed budget when <paramref name="c"/> asks for it. <paramref name="magnitude"/>
    /// holds each element's sum|terms| (required by <see cref="BudgetKind.Bound"/>); <paramref name="terms"/> is how many
    /// terms an element sums (n of the bound, and a multiplier of a scaled budget).
    /// </summary>
    public CheckResult Check(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, DType dtype, OpCase? c = null, string what = "",
        ReadOnlySpan<double> magnitude = default, double terms = 1)
    {
        if (c is { Relaxed: true } && Relaxed is { } r) return r.Check(expected, actual, dtype, null, what, magnitude, terms);
        if (!dtype.IsFloating() || IsExact) return CheckResult.Equal(expected, actual, what);
        terms = Math.Max(terms, 1);
        double scale = ScaleFor(dtype), floor = AbsoluteFloor;
        bool half = dtype.IsHalf();
        switch (Kind)
        {
            case BudgetKind.Ulp:
                return CheckResult.Measure(expected, actual, what, dtype, half ? $"0.5 ulp + {scale:0.##} Float32 ulp" : $"{scale:0.##} ulp", BudgetKind.Ulp, (i, e, a) =>
                {
                    double err = CheckResult.UlpError(e, a, dtype);
                    // The Float32 result's error, in ulps of the half dtype, plus the one rounding to it.
                    double allowed = half ? 0.5 + scale * terms * CheckResult.UlpOf(e, DType.Float32) / CheckResult.UlpOf(e, dtype) : scale * terms;
                    return (err, Math.Abs(a - e) <= floor || err <= allowed, err / allowed);
                });
            case BudgetKind.Bound:
                if (magnitude.Length != expected.Length) throw new ArgumentException($"{what}: a bound budget needs each element's sum|terms| ({expected.Length} values, got {magnitude.Length})", nameof(magnitude));
                // A half result sums in Float32 and rounds once at the end.
                double u = CheckResult.UnitRoundoff(half ? DType.Float32 : dtype), uh = half ? CheckResult.UnitRoundoff(dtype) : 0;
                floor += half ? CheckResult.UlpOf(0, dtype) / 2 : 0;   // rounding into the half subnormals is absolute
                var m = magnitude.ToArray();
                return CheckResult.Measure(expected, actual, what, dtype, Describe(dtype) + $" (n = {terms})", BudgetKind.Bound, (i, e, a) =>
                {
                    double d = Math.Abs(a - e), unit = u * m[i], budget = scale * terms * unit * (1 + uh) + uh * Math.Abs(e) + floor;
                    double err = d == 0 ? 0 : d / unit;
                    return (err, d <= budget, budget > 0 ? d / budget : d > 0 ? double.PositiveInfinity : 0);
                });
            default:
                var (rtol, atol) = For(dtype, terms);
                atol += floor;
                return CheckResult.Measure(expected, actual, what, dtype, $"{atol:G2} + {rtol:G2} |e|", BudgetKind.Scaled, (i, e, a) =>
                {
                    double d = Math.Abs(a - e), budget = atol + rtol * Math.Abs(e);
                    return (d / Math.Max(Math.Abs(e), 1e-300), d <= budget, budget > 0 ? d / budget : d > 0 ? double.PositiveInfinity : 0);
                });
        }
    }
}

/// <summary>The element of a result farthest out of (or closest to the edge of) its budget.</summary>
/// <param name="Index">Its position in the row-major result.</param>
/// <param name="Expected">The float64 reference's value.</param>
/// <param name="Actual">The device's value.</param>
public sealed record WorstElement(int Index, double Expected, double Actual)
{
    /// <summary>The op's input values at this element, where the definition knows them (elementwise ops), else null.</summary>
    public double[]? Inputs { get; init; }
}

/// <summary>The outcome of one conformance case on one device and dtype.</summary>
/// <param name="MaxRelError">The largest relative error of any finite expected element (0 for exact checks that pass).</param>
/// <param name="Pass">Every element is within the op's budget.</param>
/// <param name="Detail">What failed (the first element out of budget), or null.</param>
public readonly record struct CheckResult(double MaxRelError, bool Pass, string? Detail = null)
{
    /// <summary>A passing result with no error.</summary>
    public static CheckResult Ok => new(0, true);

    /// <summary>
    /// The largest error in units in the last place of the result dtype at the reference's value (below the smallest
    /// normal, the subnormal spacing); 0 for exact checks and integer results.
    /// </summary>
    public double MaxUlp { get; init; }
    /// <summary>For <see cref="BudgetKind.Bound"/> budgets: the largest |error| / (u sum|terms|), in the bound's units.</summary>
    public double MaxBoundError { get; init; }
    /// <summary>The largest error as a fraction of its element's budget (above 1 fails).</summary>
    public double BudgetUsed { get; init; }
    /// <summary>The element with the largest error relative to its budget, or null when every element is exact.</summary>
    public WorstElement? Worst { get; init; }
    /// <summary>A hash of the bit patterns of the device's results (every NaN as one): equal for two runs of a deterministic op.</summary>
    public ulong Digest { get; init; }

    /// <summary>The worse of two results (the first failure's detail is kept; the digests are combined).</summary>
    public CheckResult Merge(CheckResult other) =>
        new(Math.Max(MaxRelError, other.MaxRelError), Pass && other.Pass, Detail ?? other.Detail)
        {
            MaxUlp = Math.Max(MaxUlp, other.MaxUlp),
            MaxBoundError = Math.Max(MaxBoundError, other.MaxBoundError),
            BudgetUsed = Math.Max(BudgetUsed, other.BudgetUsed),
            Worst = other.BudgetUsed > BudgetUsed || Worst is null ? other.Worst ?? Worst : Worst,
            Digest = Digest * 0x100000001B3UL ^ other.Digest,
        };

    /// <summary>
    /// Compares <paramref name="actual"/> with <paramref name="expected"/> within |a - e| &lt;= atol + rtol |e|; NaN and
    /// infinities must match exactly. <paramref name="dtype"/> (the result's) sets the unit of <see cref="MaxUlp"/>.
    /// </summary>
    public static CheckResult Compare(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, double rtol, double atol, string what = "", DType dtype = DType.Float64) =>
        Measure(expected, actual, what, dtype, $"{atol:G2} + {rtol:G2} |e|", BudgetKind.Scaled, (i, e, a) =>
        {
            double d = Math.Abs(a - e), budget = atol + rtol * Math.Abs(e);
            return (d / Math.Max(Math.Abs(e), 1e-300), d <= budget, budget > 0 ? d / budget : d > 0 ? double.PositiveInfinity : 0);
        });

    /// <summary>
    /// The shared comparison loop: NaN must meet NaN and an infinite (or, in <paramref name="dtype"/>, overflowing)
    /// reference the same infinity; every other element is judged by <paramref name="judge"/>(index, expected, actual),
    /// which returns its error in the budget's unit, whether it passes, and the fraction of its budget it uses.
    /// </summary>
    internal static CheckResult Measure(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, string what, DType dtype, string budget, BudgetKind kind,
        Func<int, double, double, (double Error, bool Ok, double Used)> judge)
    {
        if (expected.Length != actual.Length) return new(double.PositiveInfinity, false, $"{what}: {actual.Length} elements, expected {expected.Length}");
        double worstRel = 0, maxUlp = 0, maxBound = 0, worstUsed = 0;
        int worstAt = -1;
        string? detail = null;
        bool ulpKind = kind == BudgetKind.Ulp, boundKind = kind == BudgetKind.Bound;
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i], rounded = RoundTo(e, dtype);
            bool ok;
            double used;
            if (double.IsNaN(e) || double.IsInfinity(rounded)) { ok = rounded.Equals(a); used = ok ? 0 : double.PositiveInfinity; }
            else
            {
                (double err, ok, used) = judge(i, e, a);
                double d = Math.Abs(a - e);
                if (!double.IsNaN(d)) worstRel = Math.Max(worstRel, d / Math.Max(Math.Abs(e), 1e-300));
                if (ulpKind) maxUlp = Math.Max(maxUlp, double.IsNaN(err) ? double.PositiveInfinity : err);
                else maxUlp = Math.Max(maxUlp, NormalUlps(e, a, dtype));
                if (boundKind) maxBound = Math.Max(maxBound, double.IsNaN(err) ? double.PositiveInfinity : err);
                if (double.IsNaN(used)) used = double.PositiveInfinity;
            }
            if (used > worstUsed) { worstUsed = used; worstAt = i; }
            if (!ok) detail ??= $"{what}[{i}]: got {a:R}, expected {e:R} (budget {budget})";
        }
        return new(worstRel, detail is null, detail)
        {
            MaxUlp = maxUlp,
            MaxBoundError = maxBound,
            BudgetUsed = worstUsed,
            Worst = worstAt < 0 ? null : new WorstElement(worstAt, expected[worstAt], actual[worstAt]),
            Digest = DigestOf(actual),
        };
    }

    /// <summary>Exact equality of two integer sequences (for results float64 cannot hold, such as Int64 beyond 2^53).</summary>
    public static CheckResult EqualInt64(ReadOnlySpan<long> expected, ReadOnlySpan<long> actual, string what = "")
    {
        if (expected.Length != actual.Length) return new(double.PositiveInfinity, false, $"{what}: {actual.Length} elements, expected {expected.Length}");
        ulong digest = 14695981039346656037UL;
        for (int i = 0; i < expected.Length; i++)
        {
            if (expected[i] != actual[i]) return new(double.PositiveInfinity, false, $"{what}[{i}]: got {actual[i]}, expected {expected[i]}") { BudgetUsed = double.PositiveInfinity };
            digest = (digest ^ (ulong)actual[i]) * 0x100000001B3UL;
        }
        return Ok with { Digest = digest };
    }

    /// <summary>Exact equality of two sequences.</summary>
    public static CheckResult Equal(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, string what = "")
    {
        if (expected.Length != actual.Length) return new(double.PositiveInfinity, false, $"{what}: {actual.Length} elements, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
            if (!expected[i].Equals(actual[i]))
                return new(double.PositiveInfinity, false, $"{what}[{i}]: got {actual[i]:R}, expected {expected[i]:R}")
                {
                    Worst = new WorstElement(i, expected[i], actual[i]), Digest = DigestOf(actual), BudgetUsed = double.PositiveInfinity,
                };
        return Ok with { Digest = DigestOf(actual) };
    }

    /// <summary>Bits of precision (with the implicit bit) and the smallest normal exponent of a floating dtype.</summary>
    static (int Precision, int MinExponent) Format(DType dtype) => dtype switch
    {
        DType.Float64 => (53, -1022),
        DType.Float16 => (11, -14),
        DType.BFloat16 => (8, -126),
        _ => (24, -126),
    };

    /// <summary>The unit roundoff u = 2^-p of <paramref name="dtype"/> (half the spacing of the numbers at 1).</summary>
    public static double UnitRoundoff(DType dtype) => Math.ScaleB(1.0, -Format(dtype).Precision);

    /// <summary>The spacing of <paramref name="dtype"/>'s numbers at |<paramref name="x"/>| (below the smallest normal, the subnormal spacing).</summary>
    public static double UlpOf(double x, DType dtype)
    {
        var (p, emin) = Format(dtype);
        double ax = Math.Abs(x);
        int exponent = ax == 0 || double.IsNaN(ax) ? emin : Math.Max(Math.ILogB(ax), emin);
        return Math.ScaleB(1.0, exponent - p + 1);
    }

    /// <summary>|<paramref name="actual"/> - <paramref name="expected"/>| in ULPs of <paramref name="dtype"/> at the reference value (infinite for a wrong infinity).</summary>
    public static double UlpError(double expected, double actual, DType dtype)
    {
        if (double.IsNaN(actual) || double.IsInfinity(actual)) return double.PositiveInfinity;
        return Math.Abs(actual - expected) / UlpOf(expected, dtype);
    }

    /// <summary>
    /// <paramref name="x"/> rounded to <paramref name="dtype"/>'s range: an infinity where it overflows (beyond the
    /// largest finite number plus half its spacing), else <paramref name="x"/> unchanged.
    /// </summary>
    static double RoundTo(double x, DType dtype)
    {
        double max = dtype switch { DType.Float32 => float.MaxValue, DType.Float16 => 65504.0, DType.BFloat16 => 3.3895313892515355e38, _ => double.MaxValue };
        return Math.Abs(x) >= max + UlpOf(max, dtype) / 2 && double.IsFinite(x) ? Math.CopySign(double.PositiveInfinity, x) : x;
    }

    /// <summary>The ULP error over references that are normal numbers of the dtype (0 elsewhere): informational for budgets of other kinds.</summary>
    static double NormalUlps(double expected, double actual, DType dtype)
    {
        if (!dtype.IsFloating()) return 0;
        double ae = Math.Abs(expected);
        if (ae < Math.ScaleB(1.0, Format(dtype).MinExponent) || double.IsInfinity(ae)) return 0;
        return Math.Abs(actual - expected) / UlpOf(expected, dtype);
    }

    static ulong DigestOf(ReadOnlySpan<double> values)
    {
        ulong h = 0xCBF29CE484222325UL;
        // Every NaN counts as one value: a NaN's sign and payload are not part of any op's result.
        foreach (double v in values) h = (h ^ (ulong)BitConverter.DoubleToInt64Bits(double.IsNaN(v) ? double.NaN : v)) * 0x100000001B3UL;
        return h;
    }
}
