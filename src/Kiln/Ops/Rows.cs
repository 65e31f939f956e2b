using Kiln.Kernels;

namespace Kiln.Ops;

/// <summary>
/// An op over the last axis of its input (reductions, scans, softmax, norms, sorts): the kernels of
/// kernels/*/{Reduce,Softmax,LayerNorm,Sort}.cs run it row by row; <paramref name="reference"/> maps one row of float64
/// values to the row's results, and <paramref name="run"/> runs the op on a device. Where an empty row has no result
/// (<paramref name="emptyRows"/> false: max, min, argmax), the op must reject it with an <see cref="ArgumentException"/>.
/// <paramref name="typedReference"/>, where given, replaces <paramref name="reference"/> with one that knows the dtype the
/// op computes in (a scan stores each output in it, so a Float32 running product overflows where float64's would not).
/// </summary>
public sealed class RowOpDefinition(string name, string family, IReadOnlyList<DType> dtypes, Domain domain, Tolerance tolerance,
    Func<double[], double[]> reference, Func<Tensor, Tensor> run, bool scalesWithLength = false, bool emptyRows = true,
    Func<double[], double[]>? magnitude = null, Func<DType, double[], double[]>? typedReference = null) : OpDefinition(name, family, dtypes, domain, tolerance)
{
    readonly Func<DType, double[], double[]> _reference = typedReference ?? ((_, row) => reference(row));

    /// <inheritdoc/>
    public override int MinRank => 1;

    /// <inheritdoc/>
    public override CheckResult Check(Device device, DType dtype, OpCase c)
    {
        var x = Input(c, dtype, device);
        int len = c.Shape[^1];
        if (len == 0 && !emptyRows)
        {
            try { run(x); }
            catch (ArgumentException) { return CheckResult.Ok; }
            return new CheckResult(double.PositiveInfinity, false, $"{Name}: an empty axis was accepted");
        }
        var xd = x.Contiguous().ToDoubleArray();
        var expected = RowOps.Rows(xd, RowCount(c.Shape), len, row => _reference(dtype, row));
        var m = magnitude is null ? null : RowOps.Rows(xd, RowCount(c.Shape), len, magnitude);
        return Tolerance.Check(expected, run(x).ToDoubleArray(), dtype, c, Name, m, scalesWithLength ? len : 1);
    }

    /// <summary>Rows of four: each special value beside three ordinary ones, and a row of +Inf and -Inf together.</summary>
    public override IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false)
    {
        var one = SpecialValues.Of(dtype, Domain);
        if (one.Count == 0) return [];
        const int len = 4;
        var specials = one.Append(("inf", double.NaN)).ToArray();
        // The last row holds +Inf and -Inf together (a sum of them is NaN).
        var xd = one.SelectMany(s => new[] { s.Value, 1.5, -0.25, 2 }).Concat([double.PositiveInfinity, 1.5, double.NegativeInfinity, 2]).ToArray();
        var x = Tensor.FromArray(xd, new Shape(specials.Length, len)).To(dtype).To(device);
        var expected = RowOps.Rows(xd, specials.Length, len, row => _reference(dtype, row));
        var m = magnitude is null ? null : RowOps.Rows(xd, specials.Length, len, magnitude);
        int per = expected.Length / specials.Length;
        var classes = Enumerable.Range(0, expected.Length).Select(i => specials[i / per].Item1).ToArray();
        return SpecialValues.Judge(Tolerance, dtype, relaxed, classes, expected, run(x).ToDoubleArray(), i => xd[(i / per * len)..((i / per + 1) * len)], m, scalesWithLength ? len : 1);
    }

    static int RowCount(int[] shape) => shape[..^1].Aggregate(1, (a, b) => a * b);
}

/// <summary>The row families' definitions: reductions, scans, softmax, norms, sort.</summary>
public static class RowOps
{
    /// <summary>Applies <paramref name="f"/> to each of the <paramref name="rows"/> rows of length <paramref name="len"/> of row-major <paramref name="x"/> and concatenates the results.</summary>
    public static double[] Rows(double[] x, int rows, int len, Func<double[], double[]> f) =>
        [.. Enumerable.Range(0, rows).SelectMany(r => f(x[(r * len)..((r + 1) * len)]))];

    // Halves accumulate in Float32 inside and round each result once (PyTorch's CPU rule), so their references are the
    // Float32 ones (a Float32 running product overflows where float64's would not).
    static readonly DType[] Numbers = DTypeLists.Numbers, Floats = DTypeLists.Floats;

    // Sums are judged by the standard bound n u sum|x| of any summation order; max and min are exact; a product of n
    // factors may be off by n ulp.
    static RowOpDefinition Reduce(ReduceOp op, Func<Tensor, Tensor> run, IReadOnlyList<DType> dtypes, Domain domain, bool emptyRows = true) =>
        new("reduce." + op.ToString().ToLowerInvariant(), "reduce", dtypes, domain,
            op switch { ReduceOp.Sum => Tolerance.Bound(), ReduceOp.Prod => Tolerance.Ulp(1), _ => Tolerance.Exact },
            row => [Reference.Reduce(op, row)], run, scalesWithLength: true, emptyRows: emptyRows,
            magnitude: op == ReduceOp.Sum ? row => [row.Sum(Math.Abs)] : null);

    // The running extreme and its index, checked together: each row's result is its values, then its indices.
    static RowOpDefinition CumExtreme(ScanOp op, Func<Tensor, (Tensor Values, Tensor Indices)> run, Domain domain) =>
        new("reduce.cum" + op.ToString().ToLowerInvariant(), "reduce", Numbers, domain, Tolerance.Exact,
            row => { var (v, i) = Reference.Scan(op, row); return [.. v, .. i.Select(k => (double)k)]; },
            x => { var (v, i) = run(x); return Tensor.Concat([v, i.To(x.DType)], -1); });

    static double[] PrefixAbs(double[] row)
    {
        var m = new double[row.Length];
        double acc = 0;
        for (int i = 0; i < row.Length; i++) m[i] = acc += Math.Abs(row[i]);
        return m;
    }

    /// <summary>Every definition of the row families.</summary>
    public static IReadOnlyList<OpDefinition> All { get; } =
    [
        Reduce(ReduceOp.Sum, x => x.Sum([-1]), Numbers, new(-3, 3, double.NaN)),
        Reduce(ReduceOp.Max, x => x.Amax([-1]), Numbers, new(-3, 3, double.NaN, double.PositiveInfinity), emptyRows: false),
        Reduce(ReduceOp.Min, x => x.Amin([-1]), Numbers, new(-3, 3, double.NaN, double.NegativeInfinity), emptyRows: false),
        Reduce(ReduceOp.Prod, x => x.Prod([-1]), Floats, new(0.5, 1.5)),
        new ColumnSumDefinition(),
        new RowOpDefinition("reduce.argmax", "reduce", Numbers, new(-3, 3), Tolerance.Exact,
            row => [Reference.SortRow(row, true).Indices[0]], x => x.ArgMax(-1), emptyRows: false),
        new RowOpDefinition("reduce.cumsum", "reduce", Numbers, new(-3, 3, double.NaN), Tolerance.Bound(),
            row => { var c = new double[row.Length]; double acc = 0; for (int i = 0; i < row.Length; i++) c[i] = acc += row[i]; return c; },
            x => x.Cumsum(-1), scalesWithLength: true, magnitude: PrefixAbs),
        // Integers run on {-1, 0, 1}, where a long product never overflows; a product of n factors may be off by n ulp.
        new RowOpDefinition("reduce.cumprod", "reduce", Numbers, new(0.5, 1.5, double.NaN, 0.0) { Integers = new(-1.4, 1.4) }, Tolerance.Ulp(1),
            row => Reference.Scan(ScanOp.Prod, row).Values, x => x.Cumprod(-1), scalesWithLength: true,
            typedReference: (dtype, row) => Reference.Scan(ScanOp.Prod, row, dtype != DType.Float64).Values),
        CumExtreme(ScanOp.Max, x => x.Cummax(-1), new(-3, 3, double.NaN, double.PositiveInfinity, double.NaN)),
        CumExtreme(ScanOp.Min, x => x.Cummin(-1), new(-3, 3, double.NaN, double.NegativeInfinity, double.NaN)),
        // Each element is a chain of log-add-exps, each off by a few units (absolute in the log, relative in its max).
        new RowOpDefinition("reduce.logcumsumexp", "reduce", Floats, new(-8, 8, double.NegativeInfinity, double.NaN, double.PositiveInfinity), new Tolerance(2),
            row => Reference.Scan(ScanOp.LogSumExp, row).Values, x => x.LogCumSumExp(-1), scalesWithLength: true,
            typedReference: (dtype, row) => Reference.Scan(ScanOp.LogSumExp, row, dtype != DType.Float64).Values),
        new RowOpDefinition("softmax.softmax", "softmax", Floats, new(-8, 8, double.NegativeInfinity), new Tolerance(8), row => Reference.Softmax(row), x => x.Softmax(-1)),
        new RowOpDefinition("softmax.log_softmax", "softmax", Floats, new(-8, 8), new Tolerance(80), row => Reference.Softmax(row, true), x => x.LogSoftmax(-1)),
        new NormDefinition(rms: false),
        new NormDefinition(rms: true),
        new RopeDefinition(),
        .. ExactIntegerDefinition.All,
        new RowOpDefinition("sort.sort", "sort", Numbers, new(-3, 3, double.NaN), Tolerance.Exact, row => Reference.SortRow(row, true).Values, x => x.Sort(-1, descending: true).Values),
        new RowOpDefinition("sort.argsort", "sort", Numbers, new(-3, 3, double.NaN), Tolerance.Exact,
            row => [.. Reference.SortRow(row, false).Indices.Select(i => (double)i)], x => x.Sort(-1).Indices),
    ];

    /// <summary>Integers of <paramref name="dtype"/> near zero, at the dtype's limits and (Int64) past 2^53 and anywhere in the range.</summary>
    internal static long[] IntegerValues(int n, DType dtype, ulong seed)
    {
        var rng = new Random((int)(seed % int.MaxValue));
        long lo = dtype == DType.Int32 ? int.MinValue : long.MinValue, hi = dtype == DType.Int32 ? int.MaxValue : long.MaxValue;
        var v = new long[n];
        for (int i = 0; i < n; i++)
            v[i] = dtype == DType.Bool ? rng.Next(2) : rng.Next(5) switch
            {
                0 => rng.Next(-7, 8),
                1 => hi - rng.Next(8),
                2 => lo + rng.Next(8),
                3 when dtype == DType.Int64 => (rng.Next(2) == 0 ? 1 : -1) * ((1L << 53) + rng.Next(8)),
                _ => rng.NextInt64(lo, hi),
            };
        return v;
    }

    /// <summary>
    /// Sums, products, scans and extremes of Bool, Int32 and Int64 inputs, checked for equality against 64-bit integer
    /// references (float64 cannot hold these values): inputs mix small values with values at the dtype's limits and, for
    /// Int64, beyond 2^53 and over the whole range, so sums and products wrap as PyTorch's do. Sums and products of every
    /// integer dtype give Int64 (PyTorch's rule); extremes keep the input's dtype.
    /// </summary>
    sealed class ExactIntegerDefinition(string name, DType[] dtypes, Func<Tensor, Tensor> run, Func<long[], int[], long[]> reference, bool widens, bool emptyRows = true)
        : OpDefinition(name, "reduce", dtypes, Domain.Default, Tolerance.Exact)
    {
        static readonly DType[] Ints = [DType.Bool, DType.Int32, DType.Int64], Ordered = [DType.Int32, DType.Int64];

        public static IReadOnlyList<OpDefinition> All { get; } =
        [
            new ExactIntegerDefinition("reduce.sum_int", Ints, x => x.Sum([-1]), Along((r, _) => [Sum(r)]), widens: true),
            new ExactIntegerDefinition("reduce.sum_all_int", Ints, x => x.Sum(), (d, _) => [Sum(d)], widens: true),
            new ExactIntegerDefinition("reduce.sum_cols_int", Ints, x => x.Sum([0]), Columns, widens: true),
            new ExactIntegerDefinition("reduce.prod_int", Ints, x => x.Prod([-1]), Along((r, _) => [Prod(r)]), widens: true),
            new ExactIntegerDefinition("reduce.cumsum_int", Ints, x => x.Cumsum(-1), Along(Prefix((a, b) => unchecked(a + b))), widens: true),
            new ExactIntegerDefinition("reduce.cumprod_int", Ints, x => x.Cumprod(-1), Along(Prefix((a, b) => unchecked(a * b))), widens: true),
            new ExactIntegerDefinition("reduce.amax_int", Ordered, x => x.Amax([-1]), Along((r, _) => [r.Max()]), widens: false, emptyRows: false),
            new ExactIntegerDefinition("reduce.amin_int", Ordered, x => x.Amin([-1]), Along((r, _) => [r.Min()]), widens: false, emptyRows: false),
            new ExactIntegerDefinition("reduce.argmax_int", Ordered, x => x.ArgMax(-1), Along((r, _) => [Array.IndexOf(r, r.Max())]), widens: false, emptyRows: false),
        ];

        public override int MinRank => 1;

        static long Sum(long[] v) { long s = 0; foreach (long x in v) s = unchecked(s + x); return s; }
        static long Prod(long[] v) { long p = 1; foreach (long x in v) p = unchecked(p * x); return p; }

        static Func<long[], int, long[]> Prefix(Func<long, long, long> op) => (r, _) =>
        {
            var y = new long[r.Length];
            for (int i = 0; i < r.Length; i++) y[i] = i == 0 ? r[0] : op(y[i - 1], r[i]);
            return y;
        };

        // Applies f to each row of the last axis.
        static Func<long[], int[], long[]> Along(Func<long[], int, long[]> f) => (d, shape) =>
        {
            int len = shape[^1], rows = len == 0 ? shape[..^1].Aggregate(1, (a, b) => a * b) : d.Length / len;
            return [.. Enumerable.Range(0, rows).SelectMany(r => f(d[(r * len)..((r + 1) * len)], r))];
        };

        static long[] Columns(long[] d, int[] shape)
        {
            int n0 = shape[0], rest = shape[1..].Aggregate(1, (a, b) => a * b);
            return [.. Enumerable.Range(0, rest).Select(c => Sum([.. Enumerable.Range(0, n0).Select(i => d[i * rest + c])]))];
        }


        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var (dense, lay) = Layout(c.Shape, c.View);
            var data = IntegerValues(dense.Aggregate(1, (a, b) => a * b), dtype, c.Seed);
            var x = lay(Tensor.FromArray(data, new Shape(dense)).To(dtype).To(device));
            if (c.Shape[^1] == 0 && !emptyRows)
            {
                try { run(x); }
                catch (ArgumentException) { return CheckResult.Ok; }
                return new CheckResult(double.PositiveInfinity, false, $"{Name}: an empty axis was accepted");
            }
            var expected = reference(x.Contiguous().To(DType.Int64).ToArray<long>(), c.Shape);
            var y = run(x);
            var want = widens || Name.StartsWith("reduce.arg", StringComparison.Ordinal) ? DType.Int64 : dtype;
            if (y.DType != want) return new CheckResult(double.PositiveInfinity, false, $"{Name}: result dtype {y.DType}, expected {want}");
            return CheckResult.EqualInt64(expected, y.To(DType.Int64).ToArray<long>(), Name);
        }
    }

    /// <summary>Sums over the first axis (the column kernel).</summary>
    sealed class ColumnSumDefinition() : OpDefinition("reduce.sum_cols", "reduce", Numbers, new(-3, 3), Tolerance.Bound())
    {
        public override int MinRank => 1;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            var xd = x.Contiguous().ToDoubleArray();
            int n0 = c.Shape[0], rest = c.Shape[1..].Aggregate(1, (a, b) => a * b);
            double[] Column(int col) => [.. Enumerable.Range(0, n0).Select(i => xd[i * rest + col])];
            var expected = Enumerable.Range(0, rest).Select(col => Reference.Reduce(ReduceOp.Sum, Column(col))).ToArray();
            var magnitude = Enumerable.Range(0, rest).Select(col => Column(col).Sum(Math.Abs)).ToArray();
            return Tolerance.Check(expected, x.Sum([0]).ToDoubleArray(), dtype, c, Name, magnitude, n0);
        }
    }

    /// <summary>Rotary embedding of a [..., T, d] input (an odd d narrowed to even, a strided view) with random tables [T, d].</summary>
    sealed class RopeDefinition() : OpDefinition("rows.rope", "rope", Floats, new(-3, 3), Tolerance.Bound())
    {
        public override int MinRank => 2;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            if (x.Shape[-1] % 2 != 0) x = x.Narrow(-1, 0, x.Shape[-1] - 1);
            int t = x.Shape[-2], d = x.Shape[-1], h = d / 2;
            var cos = Input([t, d], InputView.Contiguous, c.Seed + 1, dtype, device, Domain);
            var sin = Input([t, d], InputView.Contiguous, c.Seed + 2, dtype, device, Domain);
            double[] xd = x.Contiguous().ToDoubleArray(), cd = cos.ToDoubleArray(), sd = sin.ToDoubleArray();
            // Each element is a sum of two products: the bound is the sum of their magnitudes.
            var magnitude = new double[xd.Length];
            for (int i = 0; i < xd.Length; i++)
            {
                int row = i / d * d, j = i % d, tab = i / d % t * d + j;
                magnitude[i] = Math.Abs(xd[i] * cd[tab]) + Math.Abs(xd[row + (j < h ? j + h : j - h)] * sd[tab]);
            }
            return Tolerance.Check(Reference.Rope(xd, t, d, cd, sd), x.Rope(cos, sin).ToDoubleArray(), dtype, c, Name, magnitude, 2);
        }
    }

    /// <summary>Layer norm with weight and bias, or RMS norm with weight, over the last axis.</summary>
    sealed class NormDefinition(bool rms) : OpDefinition(rms ? "norm.rms_norm" : "norm.layer_norm", "layernorm", Floats, new(-3, 3), new Tolerance(16))
    {
        public override int MinRank => 1;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            int len = c.Shape[^1];
            var w = Tensor.Linspace(0.5, 1.5, len, dtype, device);
            var b = Tensor.Linspace(-1, 1, len, dtype, device);
            double[] wd = w.ToDoubleArray(), bd = b.ToDoubleArray(), xd = x.Contiguous().ToDoubleArray();
            var y = (rms ? x.RmsNorm(w) : x.LayerNorm(w, b)).ToDoubleArray();
            var result = CheckResult.Ok;
            for (int r = 0; len > 0 && r < xd.Length / len; r++)
            {
                var row = xd[(r * len)..((r + 1) * len)];
                var expected = rms ? Reference.RmsNorm(row, wd, 1e-6) : Reference.LayerNorm(row, wd, bd, 1e-5);
                // Rounding in the row's mean is amplified by 1 / sqrt(var + eps), large for a nearly constant row.
                double mean = rms ? 0 : row.Average(), spread = rms ? row.Average(v => v * v) : row.Average(v => (v - mean) * (v - mean));
                double gain = row.Max(Math.Abs) / Math.Sqrt(spread + (rms ? 1e-6 : 1e-5));
                var budget = Tolerance with { AbsoluteFloor = Tolerance.For(dtype).Atol * gain };
                result = result.Merge(budget.Check(expected, y.AsSpan(r * len, len), dtype, c, Name));
            }
            return result;
        }
    }
}
