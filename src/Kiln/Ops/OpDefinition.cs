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
    /// <summary>Judge the case by the op's relaxed (fast-math) budget where it has one.</summary>
    public bool Relaxed { get; init; }

    /// <inheritdoc/>
    public override string ToString() => $"[{string.Join(",", Shape)}] {View} seed {Seed}";
}

/// <summary>The dtype lists the definitions share: halves compute in Float32 and round once on store.</summary>
static class DTypeLists
{
    internal static readonly DType[] Floats = [DType.Float32, DType.Float64, DType.BFloat16, DType.Float16];
    internal static readonly DType[] Numbers = [DType.Float32, DType.Float64, DType.Int32, DType.Int64, DType.BFloat16, DType.Float16];
}

/// <summary>The values an op is validated on: uniform in [<paramref name="Low"/>, <paramref name="High"/>), with special values mixed in.</summary>
/// <param name="Low">Smallest value.</param>
/// <param name="High">Largest value.</param>
/// <param name="Specials">Values (infinities, NaN, zeros, domain edges) placed at a few positions of every input, where the op defines its result.</param>
public sealed record Domain(double Low, double High, params double[] Specials)
{
    /// <summary>Inputs at or next to the function's singularities and branch points (poles, 1 for log, +-1 for erfinv), checked by the special-value pass.</summary>
    public double[] Singular { get; init; } = [];

    /// <summary>
    /// The values integer inputs are drawn from (rounded), for ops where the domain times 7 would overflow (a running
    /// product); null for the domain times 7.
    /// </summary>
    public Domain? Integers { get; init; }

    /// <summary>[-3, 3), no special values.</summary>
    public static Domain Default { get; } = new(-3, 3);
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
    /// Runs the op on IEEE special values (<see cref="SpecialValues.Of"/>: NaN, infinities, signed zeros, subnormals, the
    /// extreme normals, the op's singular points) and compares each result with the float64 reference's, by input
    /// class; empty where the op has no special-value pass (its random cases still mix in <see cref="Domain.Specials"/>).
    /// </summary>
    public virtual IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false) => [];

    /// <summary>False for ops whose results may differ between runs by design (floating-point atomics); a difference is then reported, not failed.</summary>
    public virtual bool Deterministic => true;

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
        var (dense, lay) = Layout(shape, view);
        bool integer = !dtype.IsFloating();
        // Integer inputs take the domain times 7 (or the domain's own integer range), rounded, so they hold ties and more
        // than a few values; no specials.
        double scale = integer && domain.Integers is null ? 7 : 1;
        var range = integer && domain.Integers is { } ints ? ints : domain;
        var values = Tensor.Rand(new Shape(dense), g, range.Low * scale, range.High * scale, DType.Float64).ToArray<double>();
        if (integer) for (int i = 0; i < values.Length; i++) values[i] = Math.Round(values[i]);
        // Specials land at spread positions so every layout reads some of them.
        for (int i = 0; !integer && i < domain.Specials.Length && values.Length > 0; i++)
            values[(int)((ulong)(i * 7919 + 3) * (seed | 1) % (ulong)values.Length)] = domain.Specials[i];
        return lay(Tensor.FromArray(values, new Shape(dense)).To(dtype).To(device));
    }

    /// <summary>
    /// The dense shape to fill for an input of <paramref name="shape"/> laid out as <paramref name="view"/>, and the view
    /// that turns the dense tensor into it.
    /// </summary>
    protected static (int[] Dense, Func<Tensor, Tensor> Lay) Layout(int[] shape, InputView view) => view switch
    {
        InputView.Permuted when shape.Length >= 2 => (shape.Reverse().ToArray(), t => t.Permute(Enumerable.Range(0, shape.Length).Reverse().ToArray())),
        InputView.Sliced when shape.Length >= 1 => ([.. shape[..^1], shape[^1] * 2 + 1], t => t.Slice(-1, 1, null, 2)),
        InputView.Broadcast when shape.Length >= 1 => ([Math.Min(1, shape[0]), .. shape[1..]], t => t.BroadcastTo(new Shape(shape))),
        _ => ((int[])shape.Clone(), t => t),
    };

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

/// <summary>One input of the special-value pass that the device got wrong.</summary>
/// <param name="Inputs">The op's inputs (one value per operand, or the row of a row op).</param>
/// <param name="Expected">The float64 reference's result.</param>
/// <param name="Actual">The device's result.</param>
public sealed record SpecialMismatch(double[] Inputs, double Expected, double Actual)
{
    /// <summary>The exception that stopped the pass, where one did.</summary>
    public string? Error { get; init; }

    /// <inheritdoc/>
    public override string ToString() => Error ?? $"f({string.Join(", ", Inputs.Select(v => v.ToString("R")))}) = {Actual:R}, expected {Expected:R}";
}

/// <summary>The special-value pass of one input class on one device and dtype.</summary>
/// <param name="Class">The input class: nan, inf, zero, subnormal, min-normal, max-normal, singular, edge.</param>
/// <param name="Count">How many results of the class were checked.</param>
/// <param name="Mismatches">The results out of budget.</param>
public sealed record SpecialClassResult(string Class, int Count, IReadOnlyList<SpecialMismatch> Mismatches)
{
    /// <summary>No mismatch.</summary>
    public bool Pass => Mismatches.Count == 0;
}

/// <summary>The IEEE special values of each dtype, by class, that every elementwise and row op is checked on.</summary>
public static class SpecialValues
{
    /// <summary>
    /// The special inputs of an op with domain <paramref name="domain"/> in <paramref name="dtype"/>: NaN, +-Inf, +-0, the
    /// smallest and largest subnormals, the smallest and largest normals (all signed), the domain's singular points, and
    /// its other listed specials ("edge"); each value as <paramref name="dtype"/> holds it. Integer dtypes have none.
    /// </summary>
    public static IReadOnlyList<(string Class, double Value)> Of(DType dtype, Domain domain)
    {
        ArgumentNullException.ThrowIfNull(domain);
        if (!dtype.IsFloating()) return [];
        var (minSub, maxSub, minNormal, maxNormal) = dtype switch
        {
            DType.Float32 => (float.Epsilon, BitConverter.Int32BitsToSingle(0x007FFFFF), 1.1754943508222875e-38, float.MaxValue),
            DType.Float16 => ((double)BitConverter.UInt16BitsToHalf(1), (double)BitConverter.UInt16BitsToHalf(0x03FF), (double)BitConverter.UInt16BitsToHalf(0x0400), 65504.0),
            DType.BFloat16 => (Bf(0x0001), Bf(0x007F), Bf(0x0080), Bf(0x7F7F)),
            _ => (double.Epsilon, BitConverter.Int64BitsToDouble(0x000FFFFFFFFFFFFFL), 2.2250738585072014e-308, double.MaxValue),
        };
        var list = new List<(string, double)> { ("nan", double.NaN), ("inf", double.PositiveInfinity), ("inf", double.NegativeInfinity), ("zero", 0.0), ("zero", -0.0) };
        foreach (var (cls, v) in new[] { ("subnormal", minSub), ("subnormal", maxSub), ("min-normal", minNormal), ("max-normal", maxNormal) })
        {
            list.Add((cls, v));
            list.Add((cls, -v));
        }
        double Held(double v) => Tensor.Scalar(v, dtype, Device.Cpu).Item();
        foreach (double v in domain.Singular) list.Add(("singular", Held(v)));
        foreach (double v in domain.Specials)
            if (double.IsFinite(v) && v != 0) list.Add(("edge", Held(v)));
        return list;
    }

    static double Bf(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>
    /// The special-value pass of an op whose outputs each combine a window of one input (convolution, pooling,
    /// resampling): for each special value of <paramref name="dtype"/> (<see cref="Of"/> over <paramref name="op"/>'s
    /// domain), <paramref name="values"/> (ordinary float64 values of shape <paramref name="shape"/>, as
    /// <paramref name="dtype"/> holds them) with that value planted at three positions a third of the input apart (so
    /// one window rarely reads two; different positions for each special) runs through <paramref name="run"/> on <paramref name="device"/> and through <paramref name="reference"/> in float64.
    /// The outputs the planted value changes are judged within the op's tolerance for <paramref name="terms"/> summed
    /// terms, classed by the value. Without <paramref name="largestNormals"/> the max-normal class is left out: for an op
    /// that, as PyTorch does, sums several weighted reads of one input in its own dtype before scaling the sum down,
    /// where the float64 reference cannot say whether that sum overflows.
    /// </summary>
    public static IReadOnlyList<SpecialClassResult> Planted(OpDefinition op, Device device, DType dtype, bool relaxed, double[] values, int[] shape,
        Func<double[], double[]> reference, Func<Tensor, Tensor> run, double terms = 1, bool largestNormals = true)
    {
        ArgumentNullException.ThrowIfNull(op);
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(run);
        var specials = Of(dtype, op.Domain).Where(sv => largestNormals || sv.Class != "max-normal").ToArray();
        if (specials.Length == 0 || values.Length == 0) return [];
        var baseline = reference(values);
        var classes = new List<string>();
        var expected = new List<double>();
        var actual = new List<double>();
        var planted = new List<double>();
        for (int k = 0; k < specials.Length; k++)
        {
            var (cls, v) = specials[k];
            var x = (double[])values.Clone();
            int at = (int)((k * 7919L + 3) % x.Length);
            for (int t = 0; t < 3; t++) x[(at + t * (x.Length / 3)) % x.Length] = v;
            var e = reference(x);
            var a = run(Tensor.FromArray(x, new Shape(shape)).To(dtype).To(device)).ToDoubleArray();
            if (a.Length != e.Length)
                return [new SpecialClassResult(cls, 1, [new SpecialMismatch([v], double.NaN, double.NaN) { Error = $"{op.Name}: {a.Length} outputs, expected {e.Length}" }])];
            for (int j = 0; j < e.Length; j++)
            {
                if (e[j].Equals(baseline[j])) continue;
                classes.Add(cls); expected.Add(e[j]); actual.Add(a[j]); planted.Add(v);
            }
        }
        return Judge(op.Tolerance, dtype, relaxed, classes, [.. expected], [.. actual], i => [planted[i]], null, terms);
    }

    /// <summary>
    /// Checks <paramref name="actual"/> against <paramref name="expected"/> element by element within
    /// <paramref name="tolerance"/> and groups the elements by <paramref name="classes"/>[i], keeping each mismatch with
    /// its inputs <paramref name="inputs"/>(i).
    /// </summary>
    public static IReadOnlyList<SpecialClassResult> Judge(Tolerance tolerance, DType dtype, bool relaxed, IReadOnlyList<string> classes,
        double[] expected, double[] actual, Func<int, double[]> inputs, double[]? magnitude = null, double terms = 1)
    {
        ArgumentNullException.ThrowIfNull(tolerance);
        var c = new OpCase([], InputView.Contiguous, 0) { Relaxed = relaxed };
        var byClass = new Dictionary<string, (int Count, List<SpecialMismatch> Bad)>();
        for (int i = 0; i < expected.Length; i++)
        {
            var r = tolerance.Check([expected[i]], [actual[i]], dtype, c, "", magnitude is null ? default : magnitude.AsSpan(i, 1), terms);
            var (n, bad) = byClass.TryGetValue(classes[i], out var e) ? e : (0, new List<SpecialMismatch>());
            if (!r.Pass) bad.Add(new SpecialMismatch(inputs(i), expected[i], actual[i]));
            byClass[classes[i]] = (n + 1, bad);
        }
        return [.. byClass.Select(kv => new SpecialClassResult(kv.Key, kv.Value.Count, kv.Value.Bad))];
    }
}
