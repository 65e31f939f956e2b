namespace Kiln.Methods.Sketching;

/// <summary>
/// Active least squares by leverage-score row sampling (Shimizu, Cheng, Musco and Weare, "Improved Active Learning via
/// Dependent Leverage Score Sampling", ICLR 2024): inclusion probabilities pᵢ = min(1, c τᵢ) with Σ pᵢ = k, rows drawn
/// either independently (Bernoulli) or dependently by pivotal sampling over a recursive-PCA binary tree
/// (<see cref="PivotalTree"/>), then the weighted fit argmin Σ_{i ∈ S} (aᵢᵀx - bᵢ)² / pᵢ, which only needs the labels bᵢ of
/// the sampled rows.
/// </summary>
public static class LeverageSampling
{
    /// <summary>pᵢ = min(1, c sᵢ) with c chosen so that Σ pᵢ = k (every pᵢ = 1 when k ≥ the number of positive scores).</summary>
    /// <param name="scores">Non-negative sampling scores (leverage scores, or ones for uniform sampling).</param>
    /// <param name="k">The expected sample size, positive.</param>
    /// <exception cref="ArgumentException">A score is negative or not finite, or all are zero.</exception>
    /// <exception cref="ArgumentOutOfRangeException">k is not positive and finite.</exception>
    public static double[] InclusionProbabilities(IReadOnlyList<double> scores, double k)
    {
        ArgumentNullException.ThrowIfNull(scores);
        if (!(k > 0) || double.IsInfinity(k)) throw new ArgumentOutOfRangeException(nameof(k), k, "InclusionProbabilities: the sample size k must be positive and finite");
        for (int i = 0; i < scores.Count; i++)
            if (!(scores[i] >= 0) || double.IsInfinity(scores[i]))
                throw new ArgumentException($"InclusionProbabilities: scores[{i}] = {scores[i]}; scores must be finite and non-negative", nameof(scores));
        int positive = scores.Count(s => s > 0);
        if (positive == 0) throw new ArgumentException("InclusionProbabilities: every score is zero", nameof(scores));
        if (k >= positive) return scores.Select(s => s > 0 ? 1.0 : 0.0).ToArray();
        // Σ min(1, c s) is increasing and piecewise linear in c: cap the largest scores at 1 one by one until the
        // remaining budget, spread proportionally over the rest, keeps every one of them below 1.
        var sorted = scores.Where(s => s > 0).OrderByDescending(s => s).ToArray();
        double rest = sorted.Sum(), c = 0;
        for (int capped = 0; capped < sorted.Length; capped++)
        {
            c = (k - capped) / rest;
            if (c * sorted[capped] <= 1) break;
            rest -= sorted[capped];
        }
        return scores.Select(s => Math.Min(1, c * s)).ToArray();
    }

    /// <summary>Independent (Bernoulli) sampling: row i is kept with probability pᵢ. Returns the kept rows, ascending.</summary>
    /// <param name="p">Inclusion probabilities in [0, 1].</param>
    /// <param name="generator">The random source.</param>
    /// <exception cref="ArgumentException">A probability is outside [0, 1].</exception>
    public static int[] Bernoulli(IReadOnlyList<double> p, Generator generator)
    {
        CheckProbabilities(p);
        ArgumentNullException.ThrowIfNull(generator);
        if (p.Count == 0) return [];
        var u = Tensor.Rand(new Shape(p.Count), generator, dtype: DType.Float64).ToArray<double>();
        return Enumerable.Range(0, p.Count).Where(i => u[i] < p[i]).ToArray();
    }

    /// <summary>The weighted fit on the sampled rows: argmin Σ_{i ∈ rows} (aᵢᵀx - bᵢ)² / pᵢ (Horvitz-Thompson weights).</summary>
    /// <param name="a">The design, [n, d] (only the sampled rows are read).</param>
    /// <param name="b">The labels, [n] (only the sampled rows are read).</param>
    /// <param name="rows">The sampled row indices.</param>
    /// <param name="p">The inclusion probabilities the rows were drawn with, [n].</param>
    /// <exception cref="ArgumentException">No rows, a row out of range, or a sampled row with pᵢ = 0.</exception>
    public static Tensor Fit(Tensor a, Tensor b, IReadOnlyList<int> rows, IReadOnlyList<double> p)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(rows);
        CheckProbabilities(p);
        if (rows.Count == 0) throw new ArgumentException("LeverageSampling.Fit: no rows were sampled", nameof(rows));
        if (p.Count != a.Shape[0]) throw new ArgumentException($"LeverageSampling.Fit: p has {p.Count} entries for A with {a.Shape[0]} rows", nameof(p));
        foreach (int i in rows)
            if (i < 0 || i >= p.Count || p[i] == 0)
                throw new ArgumentException($"LeverageSampling.Fit: row {i} is out of range [0, {p.Count}) or has p = 0", nameof(rows));
        var index = Tensor.FromArray(rows.Select(i => (long)i).ToArray()).To(a.Device);
        var w = Tensor.FromArray(rows.Select(i => 1 / p[i]).ToArray()).To(a.DType).To(a.Device);
        return LeastSquares.Weighted(a.IndexSelect(0, index), b.IndexSelect(0, index), w);
    }

    internal static void CheckProbabilities(IReadOnlyList<double> p)
    {
        ArgumentNullException.ThrowIfNull(p);
        for (int i = 0; i < p.Count; i++)
            if (!(p[i] >= 0 && p[i] <= 1))
                throw new ArgumentException($"LeverageSampling: p[{i}] = {p[i]} is not a probability in [0, 1]", nameof(p));
    }
}

/// <summary>
/// The paper's spatially aware pivotal sampling (its Algorithm 2): a binary tree built once over the points by
/// recursive PCA (each node's points are projected on their first principal axis and split at the median into halves),
/// then, per draw, Deville and Tillé's pivotal method run bottom-up: at each node the two children's undecided units
/// duel, one ends at 0 or 1 and the other carries the summed probability up. Each row keeps its marginal pᵢ exactly;
/// the sample size is ⌊Σpᵢ⌋ or ⌈Σpᵢ⌉, and nearby points (same subtree) are rarely drawn together.
/// </summary>
public sealed class PivotalTree
{
    readonly int[] _leaves;      // points in the tree's left-to-right leaf order
    readonly int[] _splits;      // for the node spanning [lo, hi) of _leaves, its split point (heap order over the recursion)
    readonly int _n;

    /// <summary>Builds the recursive-PCA tree over <paramref name="points"/> [n, dim] (floating; n ≥ 1).</summary>
    /// <param name="points">The candidate points, one per row (the regression's inputs, not its features).</param>
    /// <exception cref="ArgumentException">Points is not a non-empty floating [n, dim] matrix or holds NaN or infinity.</exception>
    public PivotalTree(Tensor points)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (points.Rank != 2 || points.Shape[0] == 0 || points.Shape[1] == 0 || !points.DType.IsFloating())
            throw new ArgumentException($"PivotalTree: points must be a non-empty floating [n, dim] matrix, got {points.DType} of shape {points.Shape}", nameof(points));
        _n = points.Shape[0];
        int dim = points.Shape[1];
        var x = points.To(DType.Float64).ToArray<double>();
        int bad = Array.FindIndex(x, v => !double.IsFinite(v));
        if (bad >= 0) throw new ArgumentException($"PivotalTree: points[{bad / dim}, {bad % dim}] = {x[bad]} is not finite", nameof(points));
        _leaves = Enumerable.Range(0, _n).ToArray();
        var splits = new List<int>();
        Split(x, dim, 0, _n, splits);
        _splits = [.. splits];
    }

    /// <summary>The points in the tree's leaf order (siblings adjacent).</summary>
    public IReadOnlyList<int> LeafOrder => _leaves;

    // Orders _leaves[lo..hi) by the projection on the first principal axis and recurses on the two halves; records
    // each node's split in pre-order so Sample can replay the recursion.
    void Split(double[] x, int dim, int lo, int hi, List<int> splits)
    {
        if (hi - lo < 2) return;
        int count = hi - lo;
        var mean = new double[dim];
        for (int t = lo; t < hi; t++) for (int j = 0; j < dim; j++) mean[j] += x[_leaves[t] * dim + j] / count;
        var centred = new double[count * dim];
        for (int t = lo; t < hi; t++) for (int j = 0; j < dim; j++) centred[(t - lo) * dim + j] = x[_leaves[t] * dim + j] - mean[j];
        var c = Tensor.FromArray(centred, new Shape(count, dim));
        var (_, v) = c.T.MatMul(c).Eigh();
        var axis = v.Narrow(1, dim - 1, 1);                              // eigenvector of the largest eigenvalue
        var proj = c.MatMul(axis).Squeeze(-1).ToArray<double>();
        var order = Enumerable.Range(0, count).OrderBy(t => proj[t]).ThenBy(t => _leaves[lo + t]).Select(t => _leaves[lo + t]).ToArray();
        order.CopyTo(_leaves, lo);
        int mid = lo + (count + 1) / 2;
        splits.Add(mid);
        Split(x, dim, lo, mid, splits);
        Split(x, dim, mid, hi, splits);
    }

    /// <summary>One pivotal draw with inclusion probabilities <paramref name="p"/> [n]: the sampled rows, ascending.</summary>
    /// <param name="p">Inclusion probabilities in [0, 1], one per point.</param>
    /// <param name="generator">The random source.</param>
    /// <exception cref="ArgumentException">p does not have one entry per point, or an entry is outside [0, 1].</exception>
    public int[] Sample(IReadOnlyList<double> p, Generator generator)
    {
        LeverageSampling.CheckProbabilities(p);
        ArgumentNullException.ThrowIfNull(generator);
        if (p.Count != _n) throw new ArgumentException($"PivotalTree.Sample: p has {p.Count} entries for a tree over {_n} points", nameof(p));
        var q = p.ToArray();
        var u = Tensor.Rand(new Shape(_n), generator, dtype: DType.Float64).ToArray<double>();
        int draws = 0, node = 0;
        int last = Duels(q, 0, _n, ref node, u, ref draws);
        // A fractional Σp leaves one undecided unit at the root: it is kept with its remaining probability.
        if (last >= 0) q[last] = u[draws] < q[last] ? 1 : 0;
        return Enumerable.Range(0, _n).Where(i => q[i] == 1).ToArray();
    }

    // The undecided unit (0 < q < 1) left in the subtree over _leaves[lo..hi), or -1 when all are decided.
    int Duels(double[] q, int lo, int hi, ref int node, double[] u, ref int draws)
    {
        if (hi - lo == 1) return Undecided(q, _leaves[lo]);
        int mid = _splits[node++];
        int i = Duels(q, lo, mid, ref node, u, ref draws);
        int j = Duels(q, mid, hi, ref node, u, ref draws);
        if (i < 0 || j < 0) return Math.Max(i, j);
        double pi = q[i], pj = q[j], s = pi + pj, r = u[draws++];
        if (s <= 1)
        {
            // One of the two takes the whole mass, the other drops out.
            if (r < pi / s) (q[i], q[j]) = (s, 0); else (q[i], q[j]) = (0, s);
        }
        else
        {
            // One of the two is selected, the other keeps the excess.
            if (r < (1 - pj) / (2 - s)) (q[i], q[j]) = (1, s - 1); else (q[i], q[j]) = (s - 1, 1);
        }
        return Undecided(q, i) >= 0 ? i : Undecided(q, j);
    }

    static int Undecided(double[] q, int i) => q[i] > 0 && q[i] < 1 ? i : -1;
}
