namespace Kiln.Methods.Sketching;

/// <summary>
/// Swivel (Shazeer, Doherty, Evans and Waterson, "Swivel: Improving Embeddings by Noticing What's Missing", 2016):
/// row and column embeddings wᵢ, c̃ⱼ fitted to the pointwise mutual information of a co-occurrence matrix X [m, n],
/// pmi(i; j) = log xᵢⱼ + log |D| − log xᵢ* − log x*ⱼ (|D| = Σ X). Observed cells (xᵢⱼ > 0) cost
/// ½ f(xᵢⱼ)(wᵢᵀc̃ⱼ − pmi)² with confidence f(x) = 0.1 + 0.25 √x; unobserved cells cost the soft hinge
/// log(1 + exp(wᵢᵀc̃ⱼ − pmi*)), with pmi* the PMI the cell would have with a count of 1, which only penalizes
/// over-estimating the association of pairs never seen together. Training splits the matrix into shards (blocks of
/// rows × columns, marginals from the whole matrix); the shard losses add up to the full loss, so do their gradients.
/// </summary>
public static class Swivel
{
    /// <summary>PMI of every cell, [m, n]; for an unobserved cell it is pmi*, the value at a count of 1.</summary>
    /// <param name="counts">Non-negative co-occurrence counts, [m, n], every row and column with a positive total.</param>
    /// <exception cref="ArgumentException">A count is negative or not finite, or a row or column total is 0.</exception>
    public static Tensor Pmi(Tensor counts)
    {
        ArgumentNullException.ThrowIfNull(counts);
        if (counts.Rank != 2 || !counts.DType.IsFloating())
            throw new ArgumentException($"Swivel: counts must be a floating [m, n] matrix, got {counts.DType} of shape {counts.Shape}", nameof(counts));
        var v = counts.To(DType.Float64).ToArray<double>();
        int bad = Array.FindIndex(v, x => !(x >= 0) || double.IsInfinity(x));
        if (bad >= 0) throw new ArgumentException($"Swivel: counts[{bad / counts.Shape[1]}, {bad % counts.Shape[1]}] = {v[bad]} is not a finite non-negative count", nameof(counts));
        var rows = counts.Sum(1, keepDim: true);
        var cols = counts.Sum(0, keepDim: true);
        if ((rows.Amin().Item() <= 0) || (cols.Amin().Item() <= 0))
            throw new ArgumentException($"Swivel: every row and column of counts {counts.Shape} needs a positive total (PMI divides by the marginals)", nameof(counts));
        var observed = Tensor.Where(counts > 0, counts, counts.OnesLike());
        return observed.Log() + Math.Log(counts.Sum().To(DType.Float64).Item()) - rows.Log() - cols.Log();
    }

    /// <summary>The full Swivel loss Σ over every cell (observed: weighted squared error; unobserved: soft hinge).</summary>
    /// <param name="rowEmbeddings">wᵢ, [m, d].</param>
    /// <param name="columnEmbeddings">c̃ⱼ, [n, d].</param>
    /// <param name="counts">X, [m, n].</param>
    public static Tensor Loss(Tensor rowEmbeddings, Tensor columnEmbeddings, Tensor counts) =>
        CellLoss(rowEmbeddings, columnEmbeddings, counts, Pmi(counts));

    /// <summary>The loss of one shard: the cells of the given rows × columns, with the PMI of the whole matrix.</summary>
    /// <param name="rowEmbeddings">wᵢ of all rows, [m, d] (only the shard's rows receive gradient).</param>
    /// <param name="columnEmbeddings">c̃ⱼ of all columns, [n, d].</param>
    /// <param name="counts">X, [m, n].</param>
    /// <param name="rows">The shard's row indices.</param>
    /// <param name="columns">The shard's column indices.</param>
    public static Tensor ShardLoss(Tensor rowEmbeddings, Tensor columnEmbeddings, Tensor counts, IReadOnlyList<long> rows, IReadOnlyList<long> columns)
    {
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentNullException.ThrowIfNull(columns);
        var pmi = Pmi(counts);
        var r = Tensor.FromArray(rows.ToArray()).To(counts.Device);
        var c = Tensor.FromArray(columns.ToArray()).To(counts.Device);
        return CellLoss(rowEmbeddings.IndexSelect(0, r), columnEmbeddings.IndexSelect(0, c), counts.IndexSelect(0, r).IndexSelect(1, c), pmi.IndexSelect(0, r).IndexSelect(1, c));
    }

    /// <summary>Splits m rows and n columns, each randomly permuted, into k near-equal parts: the k² shards (rows, columns).</summary>
    /// <param name="rows">m.</param>
    /// <param name="columns">n.</param>
    /// <param name="parts">k, in [1, min(m, n)].</param>
    /// <param name="generator">The random source of the permutations.</param>
    public static IReadOnlyList<(long[] Rows, long[] Columns)> Shards(int rows, int columns, int parts, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(generator);
        if (parts < 1 || parts > Math.Min(rows, columns)) throw new ArgumentOutOfRangeException(nameof(parts), parts, $"Swivel.Shards: k must be in [1, min(m, n) = {Math.Min(rows, columns)}]");
        long[][] Split(int count)
        {
            var perm = Tensor.RandPerm(count, generator).To(DType.Int64).ToArray<long>();
            return Enumerable.Range(0, parts).Select(p => perm.Where((_, i) => i % parts == p).ToArray()).ToArray();
        }
        var rs = Split(rows);
        var cs = Split(columns);
        return [.. rs.SelectMany(r => cs.Select(c => (r, c)))];
    }

    static Tensor CellLoss(Tensor w, Tensor c, Tensor counts, Tensor pmi)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(c);
        if (w.Rank != 2 || c.Rank != 2 || w.Shape[1] != c.Shape[1] || w.Shape[0] != counts.Shape[0] || c.Shape[0] != counts.Shape[1])
            throw new ShapeMismatchException("Swivel", nameof(w), $"row embeddings {w.Shape} and column embeddings {c.Shape} must be [m, d] and [n, d] for counts {counts.Shape}");
        var z = w.MatMul(c.T) - pmi;
        var confidence = counts.Sqrt() * 0.25 + 0.1;
        var squared = confidence * z.Pow(2) * 0.5;
        var softHinge = z.Clamp(min: 0) + ((-z.Abs()).Exp() + 1).Log();        // log(1 + eᶻ), stable
        return Tensor.Where(counts > 0, squared, softHinge).Sum();
    }
}
