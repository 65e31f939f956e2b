namespace Kiln.Methods.Sketching;

/// <summary>
/// The linear core of mini-vec2vec ("mini-vec2vec: Scaling Universal Geometry Alignment with Linear Transformations",
/// 2025): an orthogonal map W between two embedding spaces by orthogonal Procrustes, W = U Vᵀ for Xᵀ Y = U Σ Vᵀ
/// (the minimizer of ‖X W - Y‖_F over orthogonal W), refined without pairs by alternating nearest-neighbour matching
/// of the mapped source rows to the target rows with a fresh Procrustes fit on the matched pairs.
/// </summary>
public static class Procrustes
{
    /// <summary>argmin over orthogonal W [d, d] of ‖X W - Y‖_F for paired rows X, Y [n, d].</summary>
    /// <param name="x">Source rows, [n, d].</param>
    /// <param name="y">Matching target rows, [n, d].</param>
    /// <exception cref="ShapeMismatchException">X and Y differ in shape or are not matrices.</exception>
    public static Tensor Fit(Tensor x, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (x.Rank != 2 || x.Shape != y.Shape)
            throw new ShapeMismatchException("Procrustes.Fit", nameof(y), $"x {x.Shape} and y {y.Shape} must be paired [n, d] matrices");
        var (u, _, vh) = x.T.MatMul(y).Svd();
        return u.MatMul(vh);
    }

    /// <summary>
    /// Unpaired refinement from <paramref name="start"/>: each round matches every mapped source row xᵢW to its
    /// nearest target row (cosine similarity) and refits W by <see cref="Fit"/> on those pairs. Returns W and the final matching (target row per source row).
    /// </summary>
    /// <param name="x">Source rows, [n, d].</param>
    /// <param name="y">Target rows, [n', d] (any order).</param>
    /// <param name="start">The initial orthogonal map, [d, d].</param>
    /// <param name="rounds">Refinement rounds, non-negative.</param>
    public static (Tensor Map, long[] Matches) Refine(Tensor x, Tensor y, Tensor start, int rounds)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        ArgumentNullException.ThrowIfNull(start);
        ArgumentOutOfRangeException.ThrowIfNegative(rounds);
        if (x.Rank != 2 || y.Rank != 2 || y.Shape[1] != x.Shape[1] || start.Shape != new Shape(x.Shape[1], x.Shape[1]))
            throw new ShapeMismatchException("Procrustes.Refine", nameof(y), $"x {x.Shape}, y {y.Shape} and start {start.Shape} must be [n, d], [n', d] and [d, d]");
        var yn = y / y.Norm(axes: [1], keepDim: true).Clamp(min: 1e-300);
        var w = start;
        var match = Match(x, yn, w);
        for (int r = 0; r < rounds; r++)
        {
            w = Fit(x, y.IndexSelect(0, match));
            match = Match(x, yn, w);
        }
        return (w, match.To(DType.Int64).ToArray<long>());
    }

    static Tensor Match(Tensor x, Tensor yNormalized, Tensor w) => x.MatMul(w).MatMul(yNormalized.T).ArgMax(1);
}
