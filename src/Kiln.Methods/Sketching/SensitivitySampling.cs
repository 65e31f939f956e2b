namespace Kiln.Methods.Sketching;

/// <summary>
/// Clustering-based sensitivity sampling for data selection (Axiotis et al., "Data-Efficient Learning via
/// Clustering-Based Sensitivity Sampling: Foundation Models and Beyond", ICML 2024): cluster the embeddings by
/// k-means, give point i the sampling probability pᵢ = ½ dᵢ²/Σⱼ dⱼ² + ½ / (k |C(i)|) (dᵢ its distance to its centre,
/// C(i) its cluster: an upper bound on its sensitivity), draw m points with replacement and weight each by 1/(m pᵢ).
/// The weighted sum Σ wᵢ ℓᵢ is an unbiased estimate of the full loss Σ ℓᵢ, and for a loss that is Hölder in the
/// embedding its error is bounded by the clustering cost.
/// </summary>
public static class SensitivitySampling
{
    /// <summary>Lloyd's k-means from a k-means++ start: the centres [k, dim] and each point's cluster.</summary>
    /// <param name="points">Embeddings, [n, dim], n ≥ k.</param>
    /// <param name="clusters">k, positive.</param>
    /// <param name="iterations">Lloyd iterations after the start.</param>
    /// <param name="generator">The random source of the k-means++ start.</param>
    /// <exception cref="ArgumentException">Points is not a floating [n, dim] matrix with n ≥ k.</exception>
    public static (Tensor Centers, long[] Assignment) KMeans(Tensor points, int clusters, int iterations, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(points);
        ArgumentNullException.ThrowIfNull(generator);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(clusters);
        ArgumentOutOfRangeException.ThrowIfNegative(iterations);
        if (points.Rank != 2 || !points.DType.IsFloating() || points.Shape[0] < clusters)
            throw new ArgumentException($"SensitivitySampling.KMeans: points must be a floating [n, dim] matrix with n ≥ k = {clusters}, got {points.DType} of shape {points.Shape}", nameof(points));
        int n = points.Shape[0];
        // k-means++: each next centre drawn with probability proportional to the squared distance to the nearest one.
        var u = Tensor.Rand(new Shape(clusters), generator, dtype: DType.Float64).ToArray<double>();
        var chosen = new List<long> { Math.Min(n - 1, (long)(u[0] * n)) };
        for (int c = 1; c < clusters; c++)
        {
            var d2 = SquaredDistances(points, points.IndexSelect(0, Tensor.FromArray(chosen.ToArray()).To(points.Device))).Amin([1]).To(DType.Float64).ToArray<double>();
            chosen.Add(Pick(d2, u[c]));
        }
        var centers = points.IndexSelect(0, Tensor.FromArray(chosen.ToArray()).To(points.Device));
        var assign = Assign(points, centers);
        for (int t = 0; t < iterations; t++)
        {
            // Each centre moves to its cluster's mean; an emptied cluster keeps its centre.
            var onehot = Tensor.Zeros(new Shape(clusters, n), points.DType, points.Device)
                .Scatter(0, assign.Unsqueeze(0), Tensor.Ones(new Shape(1, n), points.DType, points.Device));
            var counts = onehot.Sum(1, keepDim: true);
            var means = onehot.MatMul(points) / counts.Clamp(min: 1);
            centers = Tensor.Where(counts > 0, means, centers);
            assign = Assign(points, centers);
        }
        return (centers, assign.ToArray<long>());
    }

    /// <summary>pᵢ = ½ dᵢ²/Σⱼ dⱼ² + ½ / (k' |C(i)|) with k' the number of non-empty clusters (only the second term when every dᵢ is 0); sums to 1.</summary>
    /// <param name="points">Embeddings, [n, dim].</param>
    /// <param name="centers">Cluster centres, [k, dim].</param>
    /// <param name="assignment">Each point's cluster, n entries in [0, k).</param>
    /// <exception cref="ArgumentException">The assignment has the wrong length or an out-of-range cluster.</exception>
    public static double[] Probabilities(Tensor points, Tensor centers, IReadOnlyList<long> assignment)
    {
        ArgumentNullException.ThrowIfNull(points);
        ArgumentNullException.ThrowIfNull(centers);
        ArgumentNullException.ThrowIfNull(assignment);
        int n = points.Shape[0], k = centers.Shape[0];
        if (assignment.Count != n || assignment.Any(a => a < 0 || a >= k))
            throw new ArgumentException($"SensitivitySampling.Probabilities: the assignment needs {n} clusters in [0, {k})", nameof(assignment));
        var d2 = (points - centers.IndexSelect(0, Tensor.FromArray(assignment.ToArray()).To(points.Device))).Pow(2).Sum(1).To(DType.Float64).ToArray<double>();
        var size = assignment.GroupBy(a => a).ToDictionary(g => g.Key, g => g.Count());
        double cost = d2.Sum();
        double half = cost > 0 ? 0.5 : 0;
        return Enumerable.Range(0, n).Select(i => (cost > 0 ? half * d2[i] / cost : 0) + (1 - half) / (size.Count * size[assignment[i]])).ToArray();
    }

    /// <summary>m draws with replacement from p, each with its weight 1/(m pᵢ): Σ weightᵢ ℓ_{indexᵢ} estimates Σ ℓ without bias.</summary>
    /// <param name="p">Probabilities summing to 1.</param>
    /// <param name="samples">m, positive.</param>
    /// <param name="generator">The random source.</param>
    /// <exception cref="ArgumentException">p has a negative entry or does not sum to 1 (within 1e-9).</exception>
    public static (int[] Indices, double[] Weights) Sample(IReadOnlyList<double> p, int samples, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(p);
        ArgumentNullException.ThrowIfNull(generator);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(samples);
        if (p.Any(v => !(v >= 0)) || Math.Abs(p.Sum() - 1) > 1e-9)
            throw new ArgumentException($"SensitivitySampling.Sample: p must be non-negative and sum to 1 (sums to {p.Sum()})", nameof(p));
        var u = Tensor.Rand(new Shape(samples), generator, dtype: DType.Float64).ToArray<double>();
        var pa = p.ToArray();
        var idx = u.Select(v => Pick(pa, v)).Select(i => (int)i).ToArray();
        return (idx, idx.Select(i => 1 / (samples * pa[i])).ToArray());
    }

    // The index i whose cumulative mass interval holds u ∈ [0, 1) times the total (never a zero-mass index).
    static long Pick(double[] mass, double u)
    {
        double target = u * mass.Sum(), acc = 0;
        int last = Array.FindLastIndex(mass, v => v > 0);
        for (int i = 0; i < last; i++)
        {
            acc += mass[i];
            if (mass[i] > 0 && target < acc) return i;
        }
        return last;
    }

    static Tensor SquaredDistances(Tensor a, Tensor b) =>
        (a.Pow(2).Sum(1, keepDim: true) + b.Pow(2).Sum(1).Unsqueeze(0) - a.MatMul(b.T) * 2.0).Clamp(min: 0);

    static Tensor Assign(Tensor points, Tensor centers) => SquaredDistances(points, centers).ArgMin(1);
}
