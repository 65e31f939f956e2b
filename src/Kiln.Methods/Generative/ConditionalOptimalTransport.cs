using Kiln.Methods.Regularizers;

namespace Kiln.Methods.Generative;

/// <summary>
/// C²OT (Cheng and Schwing, <i>The Curse of Conditions</i>): minibatch optimal-transport coupling for conditional flow
/// matching. Plain minibatch OT re-pairs noise x₀ with data x₁ ignoring the condition, so the noise that training
/// attaches to a condition is no longer distributed as the prior, while sampling starts from the prior. C²OT keeps the
/// condition cᵢ that the independent coupling gave noise row i and pays for re-pairing it with a data row of another
/// condition: C_ij = ‖x₀,i − x₁,j‖² + w d(cᵢ, c_j), d = 1[cᵢ ≠ c_j] for discrete conditions (w = ∞ forbids crossing)
/// and d = ‖cᵢ − c_j‖² / mean_kl ‖c_k − c_l‖² for continuous ones. w = 0 is plain minibatch OT.
/// </summary>
public static class ConditionalOptimalTransport
{
    /// <summary>
    /// An exact minimum-cost assignment for a finite cost matrix [n, m] (any shape, float64 on the host): for each row
    /// its column, or −1 where n &gt; m leaves the row unmatched; min(n, m) pairs, no column used twice, Σ C_iσ(i)
    /// minimal. Rectangular problems are padded with zero-cost dummy rows or columns and solved by the Hungarian
    /// algorithm of <see cref="MongeGap.AssignmentCost"/> (O(max(n, m)³)).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The cost is not a matrix.</exception>
    /// <exception cref="ArgumentException">The cost has a NaN or infinite entry.</exception>
    public static int[] Assignment(Tensor cost)
    {
        const string op = "linear_assignment";
        ArgumentNullException.ThrowIfNull(cost);
        if (cost.Rank != 2) throw new ShapeMismatchException(op, nameof(cost), $"cost must be a matrix [n, m], got {cost.Shape}");
        int n = cost.Shape[0], m = cost.Shape[1], size = Math.Max(n, m);
        if (n == 0 || m == 0) return [.. Enumerable.Repeat(-1, n)];
        var c = cost.Detach().Contiguous().ToDoubleArray();
        var padded = new double[size, size];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++)
            {
                double v = c[i * m + j];
                if (!double.IsFinite(v)) throw new ArgumentException($"{op}: cost[{i}, {j}] = {v} is not finite", nameof(cost));
                padded[i, j] = v;
            }
        var full = MongeGap.AssignmentCost(Tensor.FromArray(padded)).Assignment;
        return [.. full.Take(n).Select(j => j < m ? j : -1)];
    }

    /// <summary>
    /// The C²OT cost matrix C_ij = ‖x₀,i − x₁,j‖² + w d(cᵢ, c_j) [n, n] in float64 for noise x₀ [n, d], data x₁ [n, d] and
    /// the batch's conditions: integer [n] (discrete, d = 1[cᵢ ≠ c_j]) or floating [n] / [n, k] (continuous,
    /// d = ‖cᵢ − c_j‖² over its batch mean, 0 when all conditions are equal). Noise row i carries condition cᵢ.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not agree.</exception>
    /// <exception cref="ArgumentOutOfRangeException">w is negative, NaN or infinite.</exception>
    public static Tensor Cost(Tensor x0, Tensor x1, Tensor conditions, double weight)
    {
        const string op = "conditional_ot_cost";
        CheckBatch(op, x0, x1, conditions);
        if (!(weight >= 0) || !double.IsFinite(weight))
            throw new ArgumentOutOfRangeException(nameof(weight), weight, $"{op}: weight must be finite and non-negative (use Couple for w = ∞)");
        using var _ = Autograd.NoGrad();
        var a = x0.Detach().To(DType.Float64); var b = x1.Detach().To(DType.Float64);
        var cost = (a.Unsqueeze(1) - b.Unsqueeze(0)).Square().Sum(2);
        return weight == 0 || x0.Shape[0] == 0 ? cost : cost + weight * Mismatch(conditions.To(cost.Device));
    }

    /// <summary>
    /// The C²OT pairing: a permutation σ [n] minimizing Σᵢ C_iσ(i) (see <see cref="Cost"/>), so that noise row i trains
    /// on data row σ(i) with that row's condition. <paramref name="weight"/> = +∞ (discrete conditions only) solves
    /// each condition's rows on their own, so no pair crosses conditions.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not agree.</exception>
    /// <exception cref="ArgumentOutOfRangeException">w is negative or NaN, or +∞ with continuous conditions.</exception>
    public static int[] Couple(Tensor x0, Tensor x1, Tensor conditions, double weight)
    {
        const string op = "conditional_ot_couple";
        CheckBatch(op, x0, x1, conditions);
        if (!double.IsPositiveInfinity(weight)) return Assignment(Cost(x0, x1, conditions, weight));
        if (conditions.DType.IsFloating())
            throw new ArgumentOutOfRangeException(nameof(weight), weight, $"{op}: an infinite weight needs discrete (integer) conditions, got {conditions.DType}");
        conditions = conditions.To(x0.Device);
        var labels = conditions.To(DType.Int64).ToArray<long>();
        var sigma = new int[labels.Length];
        foreach (var group in Enumerable.Range(0, labels.Length).GroupBy(i => labels[i]))
        {
            var rows = group.ToArray();
            var idx = Tensor.FromArray(rows.Select(i => (long)i).ToArray()).To(x0.Device);
            var local = Assignment(Cost(x0.IndexSelect(0, idx), x1.IndexSelect(0, idx), conditions.IndexSelect(0, idx), 0));
            for (int k = 0; k < rows.Length; k++) sigma[rows[k]] = rows[local[k]];
        }
        return sigma;
    }

    // d(cᵢ, c_j) [n, n] in float64: mismatch indicator for labels, batch-normalized squared distance for vectors.
    static Tensor Mismatch(Tensor conditions)
    {
        if (!conditions.DType.IsFloating())
        {
            var c = conditions.To(DType.Int64);
            return c.Unsqueeze(1).Ne(c.Unsqueeze(0)).To(DType.Float64);
        }
        var v = conditions.Detach().To(DType.Float64);
        if (v.Rank == 1) v = v.Unsqueeze(1);
        var d = (v.Unsqueeze(1) - v.Unsqueeze(0)).Square().Sum(2);
        double mean = d.Mean().Item();
        return mean > 0 ? d / mean : d;
    }

    static void CheckBatch(string op, Tensor x0, Tensor x1, Tensor conditions)
    {
        ArgumentNullException.ThrowIfNull(x0);
        ArgumentNullException.ThrowIfNull(x1);
        ArgumentNullException.ThrowIfNull(conditions);
        if (x0.Rank != 2) throw new ShapeMismatchException(op, nameof(x0), $"x0 must be [n, d], got {x0.Shape}");
        if (x1.Shape != x0.Shape) throw new ShapeMismatchException(op, nameof(x1), x0.Shape, x1.Shape);
        if (conditions.Rank is < 1 or > 2 || conditions.Shape[0] != x0.Shape[0] || (conditions.Rank == 2 && !conditions.DType.IsFloating()))
            throw new ShapeMismatchException(op, nameof(conditions), $"conditions must be integer labels [{x0.Shape[0]}] or floating vectors [{x0.Shape[0]}] / [{x0.Shape[0]}, k], got {conditions.DType} {conditions.Shape}");
    }
}
