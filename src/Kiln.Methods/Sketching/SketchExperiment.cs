using System.Diagnostics;

namespace Kiln.Methods.Sketching;

/// <summary>The randomized least-squares methods the experiment compares with the exact solve.</summary>
public enum SketchMethod
{
    /// <summary>Sketch-and-solve with a dense Gaussian sketch.</summary>
    Gaussian,
    /// <summary>Sketch-and-solve with a subsampled randomized Hadamard transform.</summary>
    Srht,
    /// <summary>Sketch-and-solve with CountSketch.</summary>
    CountSketch,
    /// <summary>Bernoulli row sampling with equal probabilities (k expected labels).</summary>
    Uniform,
    /// <summary>Independent Bernoulli leverage-score sampling (k expected labels).</summary>
    Leverage,
    /// <summary>Pivotal leverage-score sampling over the recursive-PCA tree (k labels).</summary>
    Pivotal,
}

/// <summary>Settings of <see cref="SketchExperiment.Run"/>.</summary>
public sealed record SketchOptions
{
    /// <summary>Rows n of the regression (points x uniform in [-1, 1]).</summary>
    public int Rows { get; init; } = 4096;
    /// <summary>Polynomial degree: the design holds the Legendre polynomials P₀..P_degree of x.</summary>
    public int Degree { get; init; } = 19;
    /// <summary>Sketch sizes m (rows of S, or expected labels k for the sampling methods).</summary>
    public IReadOnlyList<int> Sizes { get; init; } = [40, 60, 80, 120, 160, 240, 320, 480, 640];
    /// <summary>Independent draws per method and size.</summary>
    public int Trials { get; init; } = 20;
    /// <summary>Standard deviation of the Gaussian label noise added to the Runge target 1/(1 + 25x²).</summary>
    public double Noise { get; init; } = 0.05;
    /// <summary>Methods to run.</summary>
    public IReadOnlyList<SketchMethod> Methods { get; init; } = Enum.GetValues<SketchMethod>();
    /// <summary>Seed of the data and of every draw.</summary>
    public ulong Seed { get; init; } = 1;
    /// <summary>Device (default: the CPU).</summary>
    public Device? Device { get; init; }
}

/// <summary>One method at one size: the relative excess residual ε = ‖A x̃ - b‖ / ‖A x* - b‖ - 1 over the trials, the seconds per solve, and the rows (labels) it used.</summary>
/// <param name="Method">The method.</param>
/// <param name="Size">m or k.</param>
/// <param name="MedianError">Median ε.</param>
/// <param name="MeanError">Mean ε.</param>
/// <param name="Milliseconds">Mean wall time of one solve (sketch or sample, then solve).</param>
/// <param name="MeanRows">Mean number of sketch rows or sampled labels.</param>
public sealed record SketchRow(SketchMethod Method, int Size, double MedianError, double MeanError, double Milliseconds, double MeanRows);

/// <summary>The experiment's result.</summary>
/// <param name="Options">The settings.</param>
/// <param name="ExactResidual">‖A x* - b‖.</param>
/// <param name="ExactMilliseconds">Mean wall time of the exact solve.</param>
/// <param name="SetupMilliseconds">One-off, label-free work of the sampling methods: leverage scores and the PCA tree.</param>
/// <param name="Rows">One row per method and size.</param>
public sealed record SketchResult(SketchOptions Options, double ExactResidual, double ExactMilliseconds, double SetupMilliseconds, IReadOnlyList<SketchRow> Rows);

/// <summary>
/// Sketch-and-solve and leverage-score sampling against exact least squares on polynomial regression: the Legendre
/// design of n random points fitted to a noisy Runge function, error and time against sketch size.
/// </summary>
public static class SketchExperiment
{
    /// <summary>Runs every method at every size; <paramref name="progress"/> gets (done, total) after each size of each method.</summary>
    /// <param name="options">The settings.</param>
    /// <param name="progress">Optional progress callback.</param>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range (named in the message).</exception>
    public static SketchResult Run(SketchOptions options, Action<int, int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Rows < 2) throw new ArgumentOutOfRangeException(nameof(options), options.Rows, "SketchExperiment: Rows must be at least 2");
        if (options.Degree < 0 || options.Degree >= options.Rows) throw new ArgumentOutOfRangeException(nameof(options), options.Degree, $"SketchExperiment: Degree must be in [0, Rows = {options.Rows})");
        if (options.Trials < 1) throw new ArgumentOutOfRangeException(nameof(options), options.Trials, "SketchExperiment: Trials must be positive");
        if (!(options.Noise >= 0) || double.IsInfinity(options.Noise)) throw new ArgumentOutOfRangeException(nameof(options), options.Noise, "SketchExperiment: Noise must be finite and non-negative");
        if (options.Sizes.Count == 0 || options.Sizes.Any(s => s < 1 || s > options.Rows))
            throw new ArgumentOutOfRangeException(nameof(options), string.Join(",", options.Sizes), $"SketchExperiment: Sizes must be non-empty, each in [1, Rows = {options.Rows}]");

        var gen = new Generator(options.Seed);
        var x = Tensor.Rand(new Shape(options.Rows), gen, -1, 1, DType.Float64);
        var a = Legendre(x, options.Degree).To(options.Device ?? Device.Cpu);
        var xs = x.ToArray<double>();
        var b = Tensor.FromArray(xs.Select(v => 1 / (1 + 25 * v * v)).ToArray()).To(a.Device)
            + Tensor.Randn(new Shape(options.Rows), gen, std: options.Noise, dtype: DType.Float64).To(a.Device);

        var exact = Time(() => LeastSquares.Solve(a, b), 3, out double exactMs);
        double best = LeastSquares.Residual(a, b, exact);

        var sw = Stopwatch.StartNew();
        var leverage = LeastSquares.LeverageScores(a).ToArray<double>();
        var tree = options.Methods.Contains(SketchMethod.Pivotal) ? new PivotalTree(x.Unsqueeze(-1)) : null;
        double setupMs = sw.Elapsed.TotalMilliseconds;

        var rows = new List<SketchRow>();
        int total = options.Methods.Count * options.Sizes.Count, done = 0;
        foreach (var method in options.Methods)
            foreach (int size in options.Sizes)
            {
                var p = method switch
                {
                    SketchMethod.Uniform => LeverageSampling.InclusionProbabilities(Enumerable.Repeat(1.0, options.Rows).ToArray(), size),
                    SketchMethod.Leverage or SketchMethod.Pivotal => LeverageSampling.InclusionProbabilities(leverage, size),
                    _ => null,
                };
                var errors = new double[options.Trials];
                double ms = 0, used = 0;
                for (int t = 0; t < options.Trials; t++)
                {
                    var draw = new Generator(options.Seed * 1_000_003UL + (ulong)(1000 * (int)method + t) * 7919UL + (ulong)size);
                    int count = size;
                    sw.Restart();
                    Tensor xt = method switch
                    {
                        SketchMethod.Gaussian => LeastSquares.SketchAndSolve(a, b, SketchKind.Gaussian, size, draw),
                        SketchMethod.Srht => LeastSquares.SketchAndSolve(a, b, SketchKind.Srht, size, draw),
                        SketchMethod.CountSketch => LeastSquares.SketchAndSolve(a, b, SketchKind.CountSketch, size, draw),
                        _ => Sampled(a, b, p!, method == SketchMethod.Pivotal ? tree!.Sample(p!, draw) : LeverageSampling.Bernoulli(p!, draw), out count),
                    };
                    errors[t] = LeastSquares.Residual(a, b, xt) / best - 1;
                    ms += sw.Elapsed.TotalMilliseconds;
                    used += count;
                }
                Array.Sort(errors);
                double median = options.Trials % 2 == 1 ? errors[options.Trials / 2] : 0.5 * (errors[options.Trials / 2 - 1] + errors[options.Trials / 2]);
                rows.Add(new SketchRow(method, size, median, errors.Average(), ms / options.Trials, used / options.Trials));
                progress?.Invoke(++done, total);
            }
        return new SketchResult(options, best, exactMs, setupMs, rows);
    }

    static Tensor Sampled(Tensor a, Tensor b, double[] p, int[] rows, out int count)
    {
        count = rows.Length;
        // An empty draw (possible with Bernoulli sampling at tiny k) predicts zero.
        return rows.Length == 0 ? Tensor.Zeros(new Shape(a.Shape[1]), a.DType, a.Device) : LeverageSampling.Fit(a, b, rows, p);
    }

    static Tensor Time(Func<Tensor> f, int repeats, out double ms)
    {
        var sw = Stopwatch.StartNew();
        var y = f();
        for (int i = 1; i < repeats; i++) y = f();
        ms = sw.Elapsed.TotalMilliseconds / repeats;
        return y;
    }

    /// <summary>The Legendre design [n, degree + 1]: column j is P_j(x) by the three-term recurrence (j+1) P_{j+1} = (2j+1) x P_j - j P_{j-1}.</summary>
    /// <param name="x">Points, [n].</param>
    /// <param name="degree">The highest degree, non-negative.</param>
    public static Tensor Legendre(Tensor x, int degree)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentOutOfRangeException.ThrowIfNegative(degree);
        var cols = new List<Tensor> { x.OnesLike() };
        if (degree >= 1) cols.Add(x);
        for (int j = 1; j < degree; j++)
            cols.Add(((2 * j + 1) * x * cols[j] - j * cols[j - 1]) / (j + 1));
        return Tensor.Stack([.. cols], 1);
    }
}
