namespace Kiln.Methods.Regularizers;

/// <summary>A solved entropic transport problem between uniform marginals.</summary>
/// <param name="Plan">The transport plan P [n, m] (rows sum to 1/n, columns to 1/m at convergence), Float64 on the host.</param>
/// <param name="Cost">The regularized cost ⟨P, C⟩ + ε KL(P ‖ abᵀ), equal to the dual value ⟨f, a⟩ + ⟨g, b⟩.</param>
/// <param name="Iterations">Sinkhorn iterations run.</param>
/// <param name="MarginalError">The largest absolute deviation of P's row and column sums from 1/n and 1/m.</param>
public sealed record SinkhornResult(double[,] Plan, double Cost, int Iterations, double MarginalError);

/// <summary>
/// The (conditional) Monge gap (Uscidda and Cuturi; Harsanyi et al., "Towards generalizable single-cell perturbation
/// modeling via the Conditional Monge Gap"): for a map T and source samples x, M(T) = (1/n) Σ_i c(x_i, T(x_i)) −
/// W_c(x, T#x) ≥ 0, the excess of the map's displacement cost over the optimal transport cost between the source and
/// its push-forward; it is 0 exactly when T is c-optimal (for c = ‖x − y‖², a gradient of a convex function). The
/// conditional gap averages it over the samples of each condition c, so T(·; c) is regularized towards optimality for
/// every covariate. The OT cost is the entropic (Sinkhorn) estimate, differentiable by the envelope theorem
/// (∂W_ε/∂C = P), or the exact assignment cost for equal-size clouds.
/// </summary>
public static class MongeGap
{
    /// <summary>The squared-Euclidean cost matrix C_ij = ‖x_i − y_j‖² [n, m] of x [n, p] and y [m, p].</summary>
    /// <exception cref="ShapeMismatchException">x and y are not matrices of the same width.</exception>
    public static Tensor SquaredCost(Tensor x, Tensor y)
    {
        if (x.Rank != 2) throw new ShapeMismatchException("squared_cost", nameof(x), $"x must be [n, p], got {x.Shape}");
        if (y.Rank != 2 || y.Shape[1] != x.Shape[1]) throw new ShapeMismatchException("squared_cost", nameof(y), $"y must be [m, {x.Shape[1]}], got {y.Shape}");
        return (x.Unsqueeze(1) - y.Unsqueeze(0)).Square().Sum(-1);
    }

    /// <summary>
    /// Log-domain Sinkhorn between uniform marginals for the cost <paramref name="cost"/> [n, m] (read to the host in
    /// float64), until the marginal error is at most <paramref name="tolerance"/> or <paramref name="maxIterations"/>.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The cost is not a non-empty matrix.</exception>
    /// <exception cref="ArgumentOutOfRangeException">ε, the tolerance or the iteration limit is out of range.</exception>
    /// <exception cref="ArgumentException">The cost holds NaN or an infinity.</exception>
    public static SinkhornResult Sinkhorn(Tensor cost, double epsilon, double tolerance = 1e-12, int maxIterations = 100_000)
    {
        const string op = "sinkhorn";
        if (cost.Rank != 2 || cost.Numel == 0) throw new ShapeMismatchException(op, nameof(cost), $"cost must be a non-empty matrix [n, m], got {cost.Shape}");
        if (!(epsilon > 0) || !double.IsFinite(epsilon)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, $"{op}: epsilon must be positive and finite");
        if (!(tolerance > 0)) throw new ArgumentOutOfRangeException(nameof(tolerance), tolerance, $"{op}: tolerance must be positive");
        if (maxIterations < 1) throw new ArgumentOutOfRangeException(nameof(maxIterations), maxIterations, $"{op}: maxIterations must be at least 1");
        int n = cost.Shape[0], m = cost.Shape[1];
        var c = cost.Detach().Contiguous().ToDoubleArray();
        for (int i = 0; i < c.Length; i++)
            if (!double.IsFinite(c[i])) throw new ArgumentException($"{op}: cost[{i / m}, {i % m}] is {c[i]}", nameof(cost));
        double la = -Math.Log(n), lb = -Math.Log(m);
        var f = new double[n]; var g = new double[m];
        var row = new double[Math.Max(n, m)];
        double err = double.PositiveInfinity;
        int it = 0;
        while (it < maxIterations && err > tolerance)
        {
            it++;
            // f_i = −ε log Σ_j b_j exp((g_j − C_ij)/ε), then g likewise: exact row then column scaling.
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < m; j++) row[j] = lb + (g[j] - c[i * m + j]) / epsilon;
                f[i] = -epsilon * LogSumExp(row, m);
            }
            for (int j = 0; j < m; j++)
            {
                for (int i = 0; i < n; i++) row[i] = la + (f[i] - c[i * m + j]) / epsilon;
                g[j] = -epsilon * LogSumExp(row, n);
            }
            // Columns are exact after the g update; the row sums measure convergence.
            err = 0;
            for (int i = 0; i < n; i++)
            {
                double s = 0;
                for (int j = 0; j < m; j++) s += Math.Exp(la + lb + (f[i] + g[j] - c[i * m + j]) / epsilon);
                err = Math.Max(err, Math.Abs(s - 1.0 / n));
            }
        }
        var plan = new double[n, m];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++) plan[i, j] = Math.Exp(la + lb + (f[i] + g[j] - c[i * m + j]) / epsilon);
        return new SinkhornResult(plan, f.Sum() / n + g.Sum() / m, it, err);
    }

    /// <summary>
    /// The entropic OT cost W_ε = ⟨P, C⟩ + ε KL(P ‖ abᵀ) between uniform marginals as a differentiable scalar of
    /// <paramref name="cost"/> [n, m]: its gradient is the plan P (envelope theorem, exact at convergence).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The cost is not a non-empty matrix.</exception>
    /// <exception cref="ArgumentOutOfRangeException">ε is not positive and finite.</exception>
    public static Tensor EntropicCost(Tensor cost, double epsilon, double tolerance = 1e-12, int maxIterations = 100_000)
    {
        double[,] plan = null!;
        return Tensor.Custom("entropic_ot_cost", [cost], xs =>
        {
            var r = Sinkhorn(xs[0], epsilon, tolerance, maxIterations);
            plan = r.Plan;
            return Tensor.Scalar(r.Cost, cost.DType, cost.Device);
        }, g => [g * Tensor.FromArray(plan).To(cost.DType).To(cost.Device)]);
    }

    /// <summary>
    /// The exact OT cost between two equal-size uniform point sets for the cost <paramref name="cost"/> [n, n]: the
    /// minimum over permutations σ of (1/n) Σ_i C_iσ(i) (Hungarian algorithm in float64 on the host), with the
    /// optimal assignment.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The cost is not a non-empty square matrix.</exception>
    public static (double Cost, int[] Assignment) AssignmentCost(Tensor cost)
    {
        if (cost.Rank != 2 || cost.Shape[0] != cost.Shape[1] || cost.Shape[0] < 1)
            throw new ShapeMismatchException("assignment_cost", nameof(cost), $"cost must be a non-empty square matrix, got {cost.Shape}");
        int n = cost.Shape[0];
        var c = cost.Detach().Contiguous().ToDoubleArray();
        // Shortest augmenting paths with row potentials u and column potentials v (1-based, column 0 is a sentinel).
        var u = new double[n + 1]; var v = new double[n + 1];
        var p = new int[n + 1]; var way = new int[n + 1];
        for (int i = 1; i <= n; i++)
        {
            p[0] = i;
            int j0 = 0;
            var minv = Enumerable.Repeat(double.PositiveInfinity, n + 1).ToArray();
            var used = new bool[n + 1];
            do
            {
                used[j0] = true;
                int i0 = p[j0], j1 = 0;
                double delta = double.PositiveInfinity;
                for (int j = 1; j <= n; j++)
                {
                    if (used[j]) continue;
                    double cur = c[(i0 - 1) * n + j - 1] - u[i0] - v[j];
                    if (cur < minv[j]) { minv[j] = cur; way[j] = j0; }
                    if (minv[j] < delta) { delta = minv[j]; j1 = j; }
                }
                for (int j = 0; j <= n; j++)
                {
                    if (used[j]) { u[p[j]] += delta; v[j] -= delta; }
                    else minv[j] -= delta;
                }
                j0 = j1;
            } while (p[j0] != 0);
            do { int j1 = way[j0]; p[j0] = p[j1]; j0 = j1; } while (j0 != 0);
        }
        var assignment = new int[n];
        for (int j = 1; j <= n; j++) assignment[p[j] - 1] = j - 1;
        double total = 0;
        for (int i = 0; i < n; i++) total += c[i * n + assignment[i]];
        return (total / n, assignment);
    }

    /// <summary>
    /// The entropic Monge gap (1/n) Σ_i ‖x_i − T(x_i)‖² − W_ε(x, T#x) of source samples <paramref name="x"/> [n, p]
    /// and their images <paramref name="mapped"/> [n, p], differentiable in both. The entropic estimate carries a bias
    /// of order ε (it can be slightly negative).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes differ or are not [n >= 1, p].</exception>
    /// <exception cref="ArgumentOutOfRangeException">ε is not positive and finite.</exception>
    public static Tensor Entropic(Tensor x, Tensor mapped, double epsilon)
    {
        CheckPair("monge_gap", x, mapped);
        var displacement = (x - mapped).Square().Sum(1).Mean();
        return displacement - EntropicCost(SquaredCost(x, mapped), epsilon);
    }

    /// <summary>The exact Monge gap (1/n) Σ_i ‖x_i − T(x_i)‖² − min_σ (1/n) Σ_i ‖x_i − T(x_σ(i))‖² (≥ 0, not recorded).</summary>
    /// <exception cref="ShapeMismatchException">The shapes differ or are not [n >= 1, p].</exception>
    public static double Exact(Tensor x, Tensor mapped)
    {
        CheckPair("monge_gap", x, mapped);
        using var _ = Autograd.NoGrad();
        var x64 = x.Detach().To(DType.Float64); var t64 = mapped.Detach().To(DType.Float64);
        return (x64 - t64).Square().Sum(1).Mean().Item() - AssignmentCost(SquaredCost(x64, t64)).Cost;
    }

    /// <summary>
    /// The conditional Monge gap: the mean over the distinct values of <paramref name="conditions"/> [n] of the entropic
    /// gap on that condition's rows of <paramref name="x"/> and <paramref name="mapped"/>, where mapped = T(x; c).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not agree.</exception>
    /// <exception cref="ArgumentOutOfRangeException">ε is not positive and finite.</exception>
    public static Tensor Conditional(Tensor x, Tensor mapped, long[] conditions, double epsilon)
    {
        CheckPair("conditional_monge_gap", x, mapped);
        ArgumentNullException.ThrowIfNull(conditions);
        if (conditions.Length != x.Shape[0]) throw new ShapeMismatchException("conditional_monge_gap", nameof(conditions), new Shape(x.Shape[0]), new Shape(conditions.Length));
        var groups = conditions.Select((c, i) => (c, i)).GroupBy(t => t.c).Select(g => g.Select(t => (long)t.i).ToArray()).ToArray();
        Tensor? total = null;
        foreach (var rows in groups)
        {
            var idx = Tensor.FromArray(rows).To(x.Device);
            var gap = Entropic(x.IndexSelect(0, idx), mapped.IndexSelect(0, idx), epsilon);
            total = total is null ? gap : total + gap;
        }
        return total! / groups.Length;
    }

    static void CheckPair(string op, Tensor x, Tensor mapped)
    {
        if (x.Rank != 2 || x.Shape[0] < 1) throw new ShapeMismatchException(op, nameof(x), $"x must be [n >= 1, p], got {x.Shape}");
        if (mapped.Shape != x.Shape) throw new ShapeMismatchException(op, nameof(mapped), x.Shape, mapped.Shape);
    }

    static double LogSumExp(double[] v, int len)
    {
        double mx = double.NegativeInfinity;
        for (int i = 0; i < len; i++) mx = Math.Max(mx, v[i]);
        double s = 0;
        for (int i = 0; i < len; i++) s += Math.Exp(v[i] - mx);
        return mx + Math.Log(s);
    }
}
