namespace Kiln.Ops;

/// <summary>How an input of a conformance case is laid out in memory.</summary>
public enum InputView
{
    /// <summary>Row-major and dense.</summary>
    Contiguous,
    /// <summary>The transpose of a dense tensor of the reversed shape (every stride out of order).</summary>
    Permuted,
    /// <summary>Every second element of a wider last axis, starting at offset 1.</summary>
    Sliced,
    /// <summary>The first axis broadcast from extent 1 (a zero stride).</summary>
    Broadcast,
}

/// <summary>One conformance case: the main input's shape and layout and a seed for its values (and the op's other inputs).</summary>
/// <param name="Shape">The main input's shape; ops with several inputs derive the others from it.</param>
/// <param name="View">The layout of the inputs.</param>
/// <param name="Seed">Seeds every random value of the case.</param>
public sealed record OpCase(int[] Shape, InputView View, ulong Seed)
{
    /// <inheritdoc/>
    public override string ToString() => $"[{string.Join(",", Shape)}] {View} seed {Seed}";
}

/// <summary>The values an op is validated on: uniform in [<paramref name="Low"/>, <paramref name="High"/>), with special values mixed in.</summary>
/// <param name="Low">Smallest value.</param>
/// <param name="High">Largest value.</param>
/// <param name="Specials">Values (infinities, NaN, zeros, domain edges) placed at a few positions of every input, where the op defines its result.</param>
public sealed record Domain(double Low, double High, params double[] Specials)
{
    /// <summary>[-3, 3), no special values.</summary>
    public static Domain Default { get; } = new(-3, 3);
}

/// <summary>
/// Error budget of a result against the float64 reference: |actual - expected| &lt;= atol + rtol |expected| per element,
/// with NaN and infinities matched exactly. Budgets are multiples of each dtype's unit (Float32: rtol 2e-5, atol 1e-6;
/// Float64: rtol 1e-12, atol 1e-14), scaled by <paramref name="Scale"/> (and by a case's length where a result sums it).
/// </summary>
/// <param name="Scale">The multiple of the dtype's unit.</param>
public sealed record Tolerance(double Scale)
{
    /// <summary>A few units: well-conditioned elementwise ops.</summary>
    public static Tolerance Tight { get; } = new(2);

    /// <summary>Results must equal the reference exactly (moves, comparisons, selections, sorts).</summary>
    public static Tolerance Exact { get; } = new(0);

    /// <summary>(rtol, atol) for <paramref name="dtype"/>, times <paramref name="extra"/>.</summary>
    public (double Rtol, double Atol) For(DType dtype, double extra = 1) => dtype == DType.Float64
        ? (1e-12 * Scale * extra, 1e-14 * Scale * extra)
        : (2e-5 * Scale * extra, 1e-6 * Scale * extra);
}

/// <summary>The element of a result farthest out of (or closest to the edge of) its budget.</summary>
/// <param name="Index">Its position in the row-major result.</param>
/// <param name="Expected">The float64 reference's value.</param>
/// <param name="Actual">The device's value.</param>
public sealed record WorstElement(int Index, double Expected, double Actual);

/// <summary>The outcome of one conformance case on one device and dtype.</summary>
/// <param name="MaxRelError">The largest relative error of any finite expected element (0 for exact checks that pass).</param>
/// <param name="Pass">Every element is within the op's budget.</param>
/// <param name="Detail">What failed (the first element out of budget), or null.</param>
public readonly record struct CheckResult(double MaxRelError, bool Pass, string? Detail = null)
{
    /// <summary>A passing result with no error.</summary>
    public static CheckResult Ok => new(0, true);

    /// <summary>
    /// The largest error in units in the last place of the result dtype, over elements whose expected value is a normal
    /// number of that dtype (a result near zero or subnormal is judged by the absolute budget instead); 0 for exact checks.
    /// </summary>
    public double MaxUlp { get; init; }
    /// <summary>The element with the largest error relative to its budget, or null when every element is exact.</summary>
    public WorstElement? Worst { get; init; }
    /// <summary>A hash of the bit patterns of the device's results (every NaN as one): equal for two runs of a deterministic op.</summary>
    public ulong Digest { get; init; }

    /// <summary>The worse of two results (the first failure's detail is kept; the digests are combined).</summary>
    public CheckResult Merge(CheckResult other) =>
        new(Math.Max(MaxRelError, other.MaxRelError), Pass && other.Pass, Detail ?? other.Detail)
        {
            MaxUlp = Math.Max(MaxUlp, other.MaxUlp),
            Worst = (Worst, other.Worst) switch { (null, var w) => w, (var w, null) => w, var (p, q) => Score(q) > Score(p) ? q : p },
            Digest = Digest * 0x100000001B3UL ^ other.Digest,
        };

    static double Score(WorstElement w) => Math.Abs(w.Actual - w.Expected) / Math.Max(Math.Abs(w.Expected), 1e-300);

    /// <summary>
    /// Compares <paramref name="actual"/> with <paramref name="expected"/> within (rtol, atol); NaN and infinities must
    /// match exactly. <paramref name="dtype"/> (the result's) sets the unit of <see cref="MaxUlp"/>.
    /// </summary>
    public static CheckResult Compare(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, double rtol, double atol, string what = "", DType dtype = DType.Float64)
    {
        if (expected.Length != actual.Length) return new(double.PositiveInfinity, false, $"{what}: {actual.Length} elements, expected {expected.Length}");
        double worst = 0, maxUlp = 0, worstScore = -1;
        int worstAt = -1;
        string? detail = null;
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            bool ok;
            double score;
            if (double.IsNaN(e) || double.IsInfinity(e)) { ok = e.Equals(a); score = ok ? 0 : double.PositiveInfinity; }
            else
            {
                double d = Math.Abs(a - e), budget = atol + rtol * Math.Abs(e);
                if (!double.IsNaN(d)) worst = Math.Max(worst, d / Math.Max(Math.Abs(e), 1e-300));
                maxUlp = Math.Max(maxUlp, Ulps(e, a, dtype));
                ok = d <= budget;
                score = double.IsNaN(d) ? double.PositiveInfinity : budget > 0 ? d / budget : d > 0 ? double.PositiveInfinity : 0;
            }
            if (score > worstScore && score > 0) { worstScore = score; worstAt = i; }
            if (!ok) detail ??= $"{what}[{i}]: got {a:R}, expected {e:R} (budget {atol:G2} + {rtol:G2} |e|)";
        }
        return new(worst, detail is null, detail)
        {
            MaxUlp = maxUlp,
            Worst = worstAt < 0 ? null : new WorstElement(worstAt, expected[worstAt], actual[worstAt]),
            Digest = DigestOf(actual),
        };
    }

    /// <summary>Exact equality of two sequences.</summary>
    public static CheckResult Equal(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, string what = "")
    {
        if (expected.Length != actual.Length) return new(double.PositiveInfinity, false, $"{what}: {actual.Length} elements, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
            if (!expected[i].Equals(actual[i]))
                return new(double.PositiveInfinity, false, $"{what}[{i}]: got {actual[i]:R}, expected {expected[i]:R}")
                {
                    Worst = new WorstElement(i, expected[i], actual[i]), Digest = DigestOf(actual),
                };
        return Ok with { Digest = DigestOf(actual) };
    }

    /// <summary>|actual - expected| in units in the last place of <paramref name="dtype"/> at expected; 0 when expected is not a normal number of that dtype.</summary>
    static double Ulps(double expected, double actual, DType dtype)
    {
        double ae = Math.Abs(expected);
        if (dtype == DType.Float32)
        {
            if (ae < 1.1754943508222875e-38 || ae > float.MaxValue) return 0;   // below float32's smallest normal
            float f = (float)ae;
            return Math.Abs(actual - expected) / (MathF.BitIncrement(f) - f);
        }
        if (ae < 2.2250738585072014e-308 || double.IsInfinity(ae)) return 0;   // below float64's smallest normal
        return Math.Abs(actual - expected) / (Math.BitIncrement(ae) - ae);
    }

    static ulong DigestOf(ReadOnlySpan<double> values)
    {
        ulong h = 0xCBF29CE484222325UL;
        // Every NaN counts as one value: a NaN's sign and payload are not part of any op's result.
        foreach (double v in values) h = (h ^ (ulong)BitConverter.DoubleToInt64Bits(double.IsNaN(v) ? double.NaN : v)) * 0x100000001B3UL;
        return h;
    }
}

/// <summary>
/// One op, defined once: its name and family, the dtypes it runs in, the values it is validated on, its error budget,
/// and how a case is checked against its float64 reference. The backends run the op's kernels; the conformance tests,
/// <see cref="Conformance"/> and <c>kiln validate</c> all read these definitions (<see cref="OpCatalog"/>), so they cannot
/// disagree about what correct means. Built-in ops are defined next to their tensor methods (src/Kiln/Ops); a library or
/// an app defines its own with <see cref="CustomOp{TParams}"/>.
/// </summary>
public abstract class OpDefinition
{
    /// <summary>Creates a definition.</summary>
    /// <exception cref="ArgumentException">The name or family is empty, or no dtype is given.</exception>
    protected OpDefinition(string name, string family, IReadOnlyList<DType> dtypes, Domain domain, Tolerance tolerance)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentException.ThrowIfNullOrWhiteSpace(family);
        ArgumentNullException.ThrowIfNull(dtypes);
        if (dtypes.Count == 0) throw new ArgumentException($"op {name}: at least one dtype", nameof(dtypes));
        Name = name;
        Family = family;
        DTypes = dtypes;
        Domain = domain ?? throw new ArgumentNullException(nameof(domain));
        Tolerance = tolerance ?? throw new ArgumentNullException(nameof(tolerance));
    }

    /// <summary>Unique name, family.op (for tables, tests and messages).</summary>
    public string Name { get; }
    /// <summary>The op family (the kernel file name).</summary>
    public string Family { get; }
    /// <summary>The dtypes the op is defined for and validated in.</summary>
    public IReadOnlyList<DType> DTypes { get; }
    /// <summary>The values inputs are drawn from.</summary>
    public Domain Domain { get; }
    /// <summary>The error budget against the reference.</summary>
    public Tolerance Tolerance { get; }
    /// <summary>The largest rank of a case's main input.</summary>
    public virtual int MaxRank => 4;
    /// <summary>The smallest rank of a case's main input.</summary>
    public virtual int MinRank => 0;

    /// <summary>Runs case <paramref name="c"/> on <paramref name="device"/> in <paramref name="dtype"/> and compares it with the float64 reference.</summary>
    public abstract CheckResult Check(Device device, DType dtype, OpCase c);

    /// <summary>
    /// The main input of case <paramref name="c"/>: values from <see cref="Domain"/> (rounded to <paramref name="dtype"/>)
    /// on <paramref name="device"/>, laid out as the case says; <paramref name="stream"/> picks an independent value stream.
    /// </summary>
    public Tensor Input(OpCase c, DType dtype, Device device, int stream = 0) => Input(c.Shape, c.View, c.Seed + (ulong)stream * 0x9E3779B97F4A7C15UL, dtype, device, Domain);

    /// <summary>
    /// A tensor of <paramref name="shape"/> laid out as <paramref name="view"/>, with values from <paramref name="domain"/>
    /// (integer dtypes: the domain times 7, rounded, without specials).
    /// </summary>
    public static Tensor Input(int[] shape, InputView view, ulong seed, DType dtype, Device device, Domain domain)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(domain);
        var g = new Generator(seed);
        (int[] dense, Func<Tensor, Tensor> lay) = view switch
        {
            InputView.Permuted when shape.Length >= 2 => (shape.Reverse().ToArray(), t => t.Permute(Enumerable.Range(0, shape.Length).Reverse().ToArray())),
            InputView.Sliced when shape.Length >= 1 => ([.. shape[..^1], shape[^1] * 2 + 1], t => t.Slice(-1, 1, null, 2)),
            InputView.Broadcast when shape.Length >= 1 => ([Math.Min(1, shape[0]), .. shape[1..]], t => t.BroadcastTo(new Shape(shape))),
            _ => ((int[])shape.Clone(), (Func<Tensor, Tensor>)(t => t)),
        };
        bool integer = !dtype.IsFloating() && !dtype.IsHalf();
        // Integer inputs take the domain times 7, rounded, so they hold ties and more than a few values; no specials.
        double scale = integer ? 7 : 1;
        var values = Tensor.Rand(new Shape(dense), g, domain.Low * scale, domain.High * scale, DType.Float64).ToArray<double>();
        if (integer) for (int i = 0; i < values.Length; i++) values[i] = Math.Round(values[i]);
        // Specials land at spread positions so every layout reads some of them.
        for (int i = 0; !integer && i < domain.Specials.Length && values.Length > 0; i++)
            values[(int)((ulong)(i * 7919 + 3) * (seed | 1) % (ulong)values.Length)] = domain.Specials[i];
        return lay(Tensor.FromArray(values, new Shape(dense)).To(dtype).To(device));
    }

    /// <summary>A deterministic sample of cases: every edge shape (empty, scalar, one element, odd extents) and random ones, in every layout.</summary>
    public IEnumerable<OpCase> Cases(int count, ulong seed = 1)
    {
        var rng = new Random((int)(seed % int.MaxValue));
        int[][] edges = [[], [0], [1], [7], [3, 5], [33, 17], [4, 3, 65], [2, 3, 4, 5], [1, 257], [0, 3]];
        int i = 0;
        foreach (var s in edges.Where(s => s.Length >= MinRank && s.Length <= MaxRank))
            yield return new OpCase(s, (InputView)(i++ % 4), seed + (ulong)i);
        for (int k = 0; k < count; k++)
        {
            int rank = rng.Next(MinRank, MaxRank + 1);
            var shape = Enumerable.Range(0, rank).Select(_ => rng.Next(0, 10) == 0 ? 0 : rng.Next(1, 10)).ToArray();
            yield return new OpCase(shape, (InputView)rng.Next(4), seed + 1000 + (ulong)k);
        }
    }

    /// <inheritdoc/>
    public override string ToString() => Name;
}
