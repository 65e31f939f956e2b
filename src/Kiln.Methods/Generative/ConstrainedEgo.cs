namespace Kiln.Methods.Generative;

/// <summary>The rule that picks the next point of <see cref="ConstrainedEgo.Run"/>.</summary>
public enum EgoAcquisition
{
    /// <summary>
    /// CONFIG (Xu et al.): the optimistic problem x = argmin LCB_f(x) s.t. LCB_{c_j}(x) ≤ 0 for every j, with
    /// LCB(x) = μ(x) − β^{1/2} σ(x); when no candidate satisfies the optimistic constraints the problem is declared infeasible.
    /// </summary>
    Config,

    /// <summary>
    /// Constrained expected improvement: EI(x) · Π_j P(c_j(x) ≤ 0), EI against the best feasible value so far; while
    /// nothing feasible has been seen, Π_j P(c_j(x) ≤ 0) alone.
    /// </summary>
    ExpectedImprovement,
}

/// <summary>Settings of <see cref="ConstrainedEgo.Run"/>.</summary>
public sealed record ConstrainedEgoOptions
{
    /// <summary>The acquisition rule (default CONFIG, the paper's).</summary>
    public EgoAcquisition Acquisition { get; init; } = EgoAcquisition.Config;

    /// <summary>The covariance of every GP (default Matérn 5/2).</summary>
    public GpKernel Kernel { get; init; } = GpKernel.Matern52;

    /// <summary>Points of the Latin-hypercube initial design; 0 means 2(d + 1), capped at the budget.</summary>
    public int InitialPoints { get; init; }

    /// <summary>β^{1/2}, the width of CONFIG's confidence bounds (default 2).</summary>
    public double ConfidenceWidth { get; init; } = 2;

    /// <summary>Uniform random candidates per acquisition search (default 1000), before local refinement.</summary>
    public int Candidates { get; init; } = 1000;

    /// <summary>
    /// Starts of the hyperparameter fit at the first acquisition and every fifth after it (the first start warm from the
    /// last fit, the others random; default 2); the refits in between take only the warm start.
    /// </summary>
    public int FitRestarts { get; init; } = 2;

    /// <summary>Adam steps of each hyperparameter fit (default 30).</summary>
    public int FitSteps { get; init; } = 30;
}

/// <summary>One evaluation of the black box.</summary>
/// <param name="X">The point, in the problem's coordinates.</param>
/// <param name="Objective">f(x).</param>
/// <param name="Constraints">c_j(x); the point is feasible when every one is ≤ 0.</param>
/// <param name="BestFeasible">The smallest f over the feasible points evaluated so far (this one included); +∞ while none is.</param>
public sealed record EgoEvaluation(double[] X, double Objective, double[] Constraints, double BestFeasible)
{
    /// <summary>Whether every c_j(x) ≤ 0.</summary>
    public bool Feasible => Constraints.All(c => c <= 0);

    /// <summary>The constraint violation Σ_j max(c_j(x), 0).</summary>
    public double Violation => Constraints.Sum(c => Math.Max(c, 0));
}

/// <summary>The history of a <see cref="ConstrainedEgo.Run"/>.</summary>
/// <param name="History">Every evaluation in order: the initial design, then one per acquisition.</param>
/// <param name="InitialPoints">How many of the evaluations are the initial design.</param>
/// <param name="InfeasibilityDeclared">Whether CONFIG stopped early because its optimistic problem had no feasible candidate.</param>
public sealed record ConstrainedEgoResult(IReadOnlyList<EgoEvaluation> History, int InitialPoints, bool InfeasibilityDeclared)
{
    /// <summary>The best feasible evaluation, or null when none was feasible.</summary>
    public EgoEvaluation? Best => History.Where(e => e.Feasible).MinBy(e => e.Objective);
}

/// <summary>
/// Constrained efficient global optimisation of an expensive black box: minimise f(x) over a box subject to c_j(x) ≤ 0,
/// with independent float64 <see cref="GaussianProcess"/> models of f and of each c_j refitted (marginal likelihood) after
/// every evaluation. The next point maximises the acquisition (<see cref="EgoAcquisition"/>) over uniform candidates
/// plus perturbations of the best evaluated points, refined by three rounds of shrinking Gaussian perturbations.
/// </summary>
public static class ConstrainedEgo
{
    /// <summary>
    /// Expected improvement below <paramref name="best"/> of f ~ N(μ, v): (f* − μ) Φ(z) + σ φ(z), z = (f* − μ)/σ,
    /// σ = √v floored at 1e-12. Elementwise over mean and variance (same shape, float64); differentiable.
    /// </summary>
    /// <exception cref="ShapeMismatchException">mean and variance differ in shape.</exception>
    /// <exception cref="ArgumentOutOfRangeException">best is not finite.</exception>
    public static Tensor ExpectedImprovement(Tensor mean, Tensor variance, double best)
    {
        const string op = "expected_improvement";
        var sd = Sd(op, mean, variance);
        if (!double.IsFinite(best)) throw new ArgumentOutOfRangeException(nameof(best), best, $"{op}: the incumbent must be finite");
        var gain = best - mean;
        var z = gain / sd;
        return gain * z.NormalCdf() + sd * (-0.5 * z * z).Exp() * (1 / Math.Sqrt(2 * Math.PI));
    }

    /// <summary>P(c ≤ 0) = Φ(−μ/σ) for c ~ N(μ, v), σ = √v floored at 1e-12; elementwise, differentiable.</summary>
    /// <exception cref="ShapeMismatchException">mean and variance differ in shape.</exception>
    public static Tensor ProbabilityOfFeasibility(Tensor mean, Tensor variance) =>
        (-mean / Sd("probability_of_feasibility", mean, variance)).NormalCdf();

    /// <summary>
    /// Minimises <paramref name="objective"/> over the box <paramref name="bounds"/> subject to every
    /// <paramref name="constraints"/>[j](x) ≤ 0, with <paramref name="budget"/> evaluations in all (initial design
    /// included). Deterministic given <paramref name="seed"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A bound is not finite with Low &lt; High, the budget is below 1, an option is out of range, or the black box returns a non-finite value (the message names the point).</exception>
    public static ConstrainedEgoResult Run(Func<double[], double> objective, IReadOnlyList<Func<double[], double>> constraints,
        IReadOnlyList<(double Low, double High)> bounds, int budget, ulong seed, ConstrainedEgoOptions? options = null)
    {
        const string op = "constrained_ego";
        ArgumentNullException.ThrowIfNull(objective);
        ArgumentNullException.ThrowIfNull(constraints);
        ArgumentNullException.ThrowIfNull(bounds);
        options ??= new ConstrainedEgoOptions();
        if (bounds.Count < 1) throw new ArgumentOutOfRangeException(nameof(bounds), bounds.Count, $"{op}: at least one dimension is needed");
        for (int k = 0; k < bounds.Count; k++)
            if (!double.IsFinite(bounds[k].Low) || !double.IsFinite(bounds[k].High) || !(bounds[k].Low < bounds[k].High))
                throw new ArgumentOutOfRangeException(nameof(bounds), bounds[k], $"{op}: bound {k} must be finite with Low < High, got ({bounds[k].Low}, {bounds[k].High})");
        if (budget < 1) throw new ArgumentOutOfRangeException(nameof(budget), budget, $"{op}: the budget must be at least 1");
        if (options.InitialPoints < 0) throw new ArgumentOutOfRangeException(nameof(options), options.InitialPoints, $"{op}: InitialPoints must be non-negative");
        if (!(options.ConfidenceWidth >= 0) || !double.IsFinite(options.ConfidenceWidth)) throw new ArgumentOutOfRangeException(nameof(options), options.ConfidenceWidth, $"{op}: ConfidenceWidth must be finite and non-negative");
        if (options.Candidates < 1) throw new ArgumentOutOfRangeException(nameof(options), options.Candidates, $"{op}: Candidates must be at least 1");
        if (options.FitRestarts < 1 || options.FitSteps < 1) throw new ArgumentOutOfRangeException(nameof(options), (options.FitRestarts, options.FitSteps), $"{op}: FitRestarts and FitSteps must be at least 1");

        int d = bounds.Count, m = constraints.Count;
        var gen = new Generator(seed);
        var history = new List<EgoEvaluation>();
        var unit = new List<double[]>();   // the points scaled to [0, 1]^d, where the GPs live
        double bestFeasible = double.PositiveInfinity;
        void Evaluate(double[] u)
        {
            var x = u.Select((v, k) => bounds[k].Low + v * (bounds[k].High - bounds[k].Low)).ToArray();
            double f = objective(x);
            var c = constraints.Select(g => g(x)).ToArray();
            if (!double.IsFinite(f) || c.Any(v => !double.IsFinite(v)))
                throw new ArgumentOutOfRangeException(nameof(objective), $"{op}: the black box returned f = {f}, c = [{string.Join(", ", c)}] at x = [{string.Join(", ", x)}]");
            if (c.All(v => v <= 0)) bestFeasible = Math.Min(bestFeasible, f);
            history.Add(new EgoEvaluation(x, f, c, bestFeasible));
            unit.Add(u);
        }

        int n0 = Math.Min(budget, options.InitialPoints > 0 ? options.InitialPoints : 2 * (d + 1));
        foreach (var u in LatinHypercube(n0, d, gen)) Evaluate(u);

        var warm = new GpHyperparameters?[m + 1];
        while (history.Count < budget)
        {
            var x = Tensor.FromArray(unit.SelectMany(u => u).ToArray(), new Shape(unit.Count, d));
            var models = new GaussianProcess[m + 1];
            for (int j = 0; j <= m; j++)
            {
                var y = Tensor.FromArray(history.Select(e => j == 0 ? e.Objective : e.Constraints[j - 1]).ToArray());
                int restarts = (history.Count - n0) % 5 == 0 ? options.FitRestarts : 1;
                models[j] = GaussianProcess.Fit(x, y, options.Kernel, gen, restarts, options.FitSteps, warmStart: warm[j]);
                warm[j] = models[j].Hyperparameters;
            }
            var next = Maximise(u => Acquisition(models, u, options, bestFeasible), unit, history, d, options.Candidates, gen);
            if (next is null) return new ConstrainedEgoResult(history, n0, InfeasibilityDeclared: true);
            Evaluate(next);
        }
        return new ConstrainedEgoResult(history, n0, InfeasibilityDeclared: false);
    }

    // The acquisition at candidates u [c, d] (unit cube), to be maximised; −∞ marks a point CONFIG's optimistic problem excludes.
    static double[] Acquisition(GaussianProcess[] models, Tensor u, ConstrainedEgoOptions options, double bestFeasible)
    {
        var (mf, vf) = models[0].Predict(u);
        if (options.Acquisition == EgoAcquisition.Config)
        {
            double w = options.ConfidenceWidth;
            var score = (-(mf - w * vf.Sqrt())).ToArray<double>();
            for (int j = 1; j < models.Length; j++)
            {
                var (mc, vc) = models[j].Predict(u);
                var lcb = (mc - w * vc.Sqrt()).ToArray<double>();
                for (int i = 0; i < score.Length; i++) if (lcb[i] > 0) score[i] = double.NegativeInfinity;
            }
            return score;
        }
        var a = double.IsFinite(bestFeasible) ? ExpectedImprovement(mf, vf, bestFeasible) : mf.OnesLike();
        for (int j = 1; j < models.Length; j++)
        {
            var (mc, vc) = models[j].Predict(u);
            a *= ProbabilityOfFeasibility(mc, vc);
        }
        return a.ToArray<double>();
    }

    // Random candidates plus perturbations of the five best evaluated points (feasible first, then least violating),
    // then three rounds of shrinking perturbations of the best candidate. Null when every candidate scores −∞.
    static double[]? Maximise(Func<Tensor, double[]> score, List<double[]> unit, List<EgoEvaluation> history, int d, int candidates, Generator gen)
    {
        var seeds = Enumerable.Range(0, history.Count).OrderBy(i => history[i].Violation).ThenBy(i => history[i].Objective).Take(5).Select(i => unit[i]).ToArray();
        int local = Math.Max(1, candidates / 2);
        var pool = Tensor.Rand(new Shape(candidates, d), gen, dtype: DType.Float64).ToArray<double>().Chunk(d)
            .Concat(Perturb(Enumerable.Range(0, local).Select(i => seeds[i % seeds.Length]).ToArray(), 0.05, d, gen)).ToArray();
        double[]? best = null;
        double bestScore = double.NegativeInfinity;
        foreach (double scale in new[] { double.NaN, 0.02, 0.005, 0.001 })
        {
            if (!double.IsNaN(scale)) pool = Perturb(Enumerable.Repeat(best!, 64).ToArray(), scale, d, gen);
            var s = score(Tensor.FromArray(pool.SelectMany(p => p).ToArray(), new Shape(pool.Length, d)));
            for (int i = 0; i < s.Length; i++) if (s[i] > bestScore) (bestScore, best) = (s[i], pool[i]);
            if (best is null) return null;
        }
        return best;
    }

    static double[][] Perturb(double[][] centres, double scale, int d, Generator gen)
    {
        var z = Tensor.Randn(new Shape(centres.Length, d), gen, dtype: DType.Float64).ToArray<double>();
        return [.. centres.Select((c, i) => c.Select((v, k) => Math.Clamp(v + scale * z[i * d + k], 0, 1)).ToArray())];
    }

    // n points in [0, 1]^d with exactly one in each of the n strata of every coordinate.
    static double[][] LatinHypercube(int n, int d, Generator gen)
    {
        var jitter = Tensor.Rand(new Shape(n, d), gen, dtype: DType.Float64).ToArray<double>();
        var points = new double[n][];
        for (int i = 0; i < n; i++) points[i] = new double[d];
        for (int k = 0; k < d; k++)
        {
            var perm = Tensor.RandPerm(n, gen).ToArray<long>();
            for (int i = 0; i < n; i++) points[i][k] = (perm[i] + jitter[i * d + k]) / n;
        }
        return points;
    }

    static Tensor Sd(string op, Tensor mean, Tensor variance)
    {
        ArgumentNullException.ThrowIfNull(mean);
        ArgumentNullException.ThrowIfNull(variance);
        if (mean.Shape != variance.Shape) throw new ShapeMismatchException(op, nameof(variance), mean.Shape, variance.Shape);
        return variance.Clamp(min: 1e-24).Sqrt();
    }
}
