using Kiln.Kernels;

namespace Kiln.Ops;

/// <summary>
/// The movement family's definitions: triangles, flips, rolls, repeats, diagonals, meshgrid and where(condition),
/// each in every dtype, exact against its float64 reference (kernels/Kiln.Kernels.Reference/Movement.cs), with the
/// op's arguments (offsets, dims, shifts, repeats) drawn from the case's seed.
/// </summary>
public static class MovementOps
{
    static readonly DType[] Every = [DType.Float32, DType.Float64, DType.Int32, DType.Int64, DType.Bool, DType.BFloat16, DType.Float16];

    /// <summary>What one case ran and what the reference expects, with the expected shape.</summary>
    readonly record struct Outcome(Tensor Actual, double[] Expected, int[] Shape);

    /// <summary>
    /// A movement op: <paramref name="run"/> draws the op's arguments from the random source, runs it on the case's
    /// input, and returns the result with the reference's values and shape.
    /// </summary>
    sealed class MovementDefinition(string name, int minRank, int maxRank, Func<Tensor, OpCase, Random, Outcome> run)
        : OpDefinition("movement." + name, "movement", Every, new(-3, 3, double.NaN, double.PositiveInfinity, double.NegativeInfinity), Tolerance.Exact)
    {
        public override int MinRank => minRank;
        public override int MaxRank => maxRank;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            var o = run(x, c, new Random((int)(c.Seed % int.MaxValue)));
            if (o.Actual.Shape != new Shape(o.Shape))
                return new CheckResult(double.PositiveInfinity, false, $"{Name}: shape {o.Actual.Shape}, expected {new Shape(o.Shape)}");
            return CheckResult.Equal(o.Expected, o.Actual.ToDoubleArray(), Name);
        }
    }

    static double[] H(Tensor t) => t.Contiguous().ToDoubleArray();

    static Outcome Of(Tensor actual, (double[] Values, int[] Shape) expected) => new(actual, expected.Values, expected.Shape);

    // A random subset of the axes in random order, each named by its positive or negative index.
    static (int[] Given, int[] Axes) SomeAxes(int rank, Random rng)
    {
        var axes = Enumerable.Range(0, rank).Where(_ => rng.Next(2) == 0).OrderBy(_ => rng.Next()).ToArray();
        return (axes.Select(a => rng.Next(2) == 0 ? a : a - rank).ToArray(), axes);
    }

    // Two different axes, each by its positive or negative index.
    static (int Dim1, int Dim2, int A, int B) TwoAxes(int rank, Random rng)
    {
        int a = rng.Next(rank), b = (a + 1 + rng.Next(rank - 1)) % rank;
        return (rng.Next(2) == 0 ? a : a - rank, rng.Next(2) == 0 ? b : b - rank, a, b);
    }

    static int[] Repeats(int n, Random rng) => Enumerable.Range(0, n).Select(_ => rng.Next(3)).ToArray();

    /// <summary>Every definition of the family.</summary>
    public static IReadOnlyList<OpDefinition> All { get; } =
    [
        new MovementDefinition("tril", 2, 4, (x, c, rng) => { int k = rng.Next(-4, 5); return Of(x.Tril(k), Reference.Triangle(H(x), c.Shape, k, upper: false)); }),
        new MovementDefinition("triu", 2, 4, (x, c, rng) => { int k = rng.Next(-4, 5); return Of(x.Triu(k), Reference.Triangle(H(x), c.Shape, k, upper: true)); }),
        new MovementDefinition("flip", 0, 4, (x, c, rng) =>
        {
            var (given, axes) = SomeAxes(c.Shape.Length, rng);
            return Of(x.Flip(given), Reference.Flip(H(x), c.Shape, axes));
        }),
        new MovementDefinition("roll", 0, 4, (x, c, rng) =>
        {
            if (c.Shape.Length == 0 || rng.Next(4) == 0)
            {
                int s = rng.Next(-20, 21);
                return Of(x.Roll(s), Reference.Roll(H(x), c.Shape, [s], []));
            }
            // Some dims, one possibly named twice (its shifts add up).
            var (given, axes) = SomeAxes(c.Shape.Length, rng);
            if (axes.Length > 0 && rng.Next(3) == 0) (given, axes) = ([.. given, given[0]], [.. axes, axes[0]]);
            var shifts = axes.Select(_ => rng.Next(-12, 13)).ToArray();
            if (axes.Length == 0) (given, axes, shifts) = ([0], [0], [rng.Next(-12, 13)]);
            return Of(x.Roll(shifts, given), Reference.Roll(H(x), c.Shape, shifts, axes));
        }),
        new MovementDefinition("repeat", 0, 4, (x, c, rng) =>
        {
            var reps = Repeats(c.Shape.Length + rng.Next(2), rng);
            return Of(x.Repeat(reps), Reference.Repeat(H(x), c.Shape, reps));
        }),
        new MovementDefinition("tile", 0, 4, (x, c, rng) =>
        {
            var reps = Repeats(rng.Next(c.Shape.Length + 2), rng);
            int[] padded = [.. Enumerable.Repeat(1, Math.Max(0, c.Shape.Length - reps.Length)), .. reps];
            return Of(x.Tile(reps), Reference.Repeat(H(x), c.Shape, padded));
        }),
        new MovementDefinition("repeat_interleave", 0, 4, (x, c, rng) =>
        {
            int rank = c.Shape.Length;
            if (rank == 0 || rng.Next(4) == 0)
            {
                // Flattened, with one count.
                int r = rng.Next(4);
                return Of(x.RepeatInterleave(r), Reference.RepeatInterleave(H(x), [x.Numel], [.. Enumerable.Repeat((long)r, x.Numel)], 0));
            }
            int a = rng.Next(rank), dim = rng.Next(2) == 0 ? a : a - rank;
            if (rng.Next(2) == 0)
            {
                int r = rng.Next(4);
                return Of(x.RepeatInterleave(r, dim), Reference.RepeatInterleave(H(x), c.Shape, [.. Enumerable.Repeat((long)r, c.Shape[a])], a));
            }
            var counts = Enumerable.Range(0, c.Shape[a]).Select(_ => (long)rng.Next(4)).ToArray();
            var repeats = Tensor.FromArray(counts, new Shape(counts.Length)).To(x.Device);
            return Of(x.RepeatInterleave(repeats, dim), Reference.RepeatInterleave(H(x), c.Shape, counts, a));
        }),
        new MovementDefinition("diagonal", 2, 4, (x, c, rng) =>
        {
            var (d1, d2, a, b) = TwoAxes(c.Shape.Length, rng);
            int k = rng.Next(-4, 5);
            return Of(x.Diagonal(k, d1, d2), Reference.Diagonal(H(x), c.Shape, k, a, b));
        }),
        new MovementDefinition("diag", 1, 2, (x, c, rng) =>
        {
            int k = rng.Next(-4, 5);
            return Of(x.Diag(k), c.Shape.Length == 1 ? Reference.DiagEmbed(H(x), c.Shape, k, 0, 1) : Reference.Diagonal(H(x), c.Shape, k, 0, 1));
        }),
        new MovementDefinition("diag_embed", 1, 4, (x, c, rng) =>
        {
            var (d1, d2, a, b) = TwoAxes(c.Shape.Length + 1, rng);
            int k = rng.Next(-3, 4);
            return Of(x.DiagEmbed(k, d1, d2), Reference.DiagEmbed(H(x), c.Shape, k, a, b));
        }),
        new MovementDefinition("meshgrid", 1, 1, (x, c, rng) =>
        {
            // The case's vector with up to two more (one may be 0-D), in random order.
            var others = Enumerable.Range(1, rng.Next(3)).Select(s =>
            {
                int[] shape = rng.Next(4) == 0 ? [] : [rng.Next(6)];
                return OpDefinition.Input(shape, InputView.Contiguous, c.Seed + (ulong)s, x.DType, x.Device, Domain.Default);
            });
            var vectors = others.Append(x).OrderBy(_ => rng.Next()).ToArray();
            bool xy = rng.Next(2) == 0;
            return Of(Tensor.Stack(Tensor.Meshgrid(vectors, xy ? "xy" : "ij")), Reference.Meshgrid([.. vectors.Select(H)], xy));
        }),
        new MovementDefinition("where_nonzero", 0, 4, (x, c, rng) =>
        {
            // Zeros at about half the positions, so the condition has both kinds of elements.
            var half = OpDefinition.Input(c.Shape, c.View, c.Seed + 1, DType.Float64, x.Device, Domain.Default) > 0.0;
            var cond = Tensor.Where(half, x, Tensor.Zeros(new Shape(), x.DType, x.Device));
            return Of(Tensor.Stack(Tensor.Where(cond)), Reference.NonzeroByDim(H(cond), c.Shape));
        }),
    ];
}
