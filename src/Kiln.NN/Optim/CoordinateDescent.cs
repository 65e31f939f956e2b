namespace Kiln.NN.Optim;

/// <summary>The coordinate a greedy <see cref="CoordinateDescent"/> step updates.</summary>
public enum CoordinateRule
{
    /// <summary>Gauss-Southwell: the largest |∇_i f|.</summary>
    GaussSouthwell,
    /// <summary>Gauss-Southwell-Lipschitz: the largest |∇_i f| / √L_i, the coordinate of largest guaranteed progress.</summary>
    GaussSouthwellLipschitz,
}

/// <summary>
/// Greedy coordinate descent on a quadratic f(x) = xᵀAx/2 - bᵀx, A symmetric positive definite (Nutini et al. 2022,
/// "Let's Make Block Coordinate Descent Converge Faster"): pick a coordinate i by a rule and step x_i -= ∇_i f / L_i with
/// L_i = A_ii, the coordinate's Lipschitz constant. On a quadratic that step is exact along the coordinate and decreases
/// f by exactly ∇_i f² / (2 L_i), so Gauss-Southwell-Lipschitz, which maximises that quantity, makes at least the progress
/// of Gauss-Southwell and of a uniformly random coordinate (in expectation); Gauss-Southwell beats random only when the
/// L_i are equal. Single coordinates only: the variable blocks, message passing and active-set parts are not built.
/// </summary>
public static class CoordinateDescent
{
    /// <summary>f(x) = xᵀAx/2 - bᵀx as a scalar tensor.</summary>
    /// <exception cref="ShapeMismatchException">A is not [n, n], or b or x not [n].</exception>
    public static Tensor Objective(Tensor a, Tensor b, Tensor x)
    {
        Check(a, b, x);
        return 0.5 * (x * a.MatMul(x)).Sum() - (b * x).Sum();
    }

    /// <summary>∇f(x) = Ax - b.</summary>
    /// <exception cref="ShapeMismatchException">A is not [n, n], or b or x not [n].</exception>
    public static Tensor Gradient(Tensor a, Tensor b, Tensor x)
    {
        Check(a, b, x);
        return a.MatMul(x) - b;
    }

    /// <summary>The decrease of f from one exact step on coordinate i: g_i² / (2 L_i).</summary>
    /// <exception cref="ArgumentException">The lists differ in length.</exception>
    /// <exception cref="ArgumentOutOfRangeException">i is out of range or L_i is not positive.</exception>
    public static double Progress(IReadOnlyList<double> gradient, IReadOnlyList<double> lipschitz, int i)
    {
        ArgumentNullException.ThrowIfNull(gradient); ArgumentNullException.ThrowIfNull(lipschitz);
        if (gradient.Count != lipschitz.Count) throw new ArgumentException($"coordinate descent: {gradient.Count} gradient entries but {lipschitz.Count} Lipschitz constants", nameof(lipschitz));
        if (i < 0 || i >= gradient.Count) throw new ArgumentOutOfRangeException(nameof(i), i, $"coordinate descent: coordinate must be in [0, {gradient.Count})");
        if (!(lipschitz[i] > 0)) throw new ArgumentOutOfRangeException(nameof(lipschitz), lipschitz[i], $"coordinate descent: L_{i} must be positive");
        return gradient[i] * gradient[i] / (2 * lipschitz[i]);
    }

    /// <summary>The coordinate the rule picks (the first on ties).</summary>
    /// <exception cref="ArgumentException">The lists differ in length or are empty, or an L_i is not positive.</exception>
    public static int Select(IReadOnlyList<double> gradient, IReadOnlyList<double> lipschitz, CoordinateRule rule)
    {
        ArgumentNullException.ThrowIfNull(gradient); ArgumentNullException.ThrowIfNull(lipschitz);
        if (gradient.Count != lipschitz.Count || gradient.Count == 0)
            throw new ArgumentException($"coordinate descent: needs as many Lipschitz constants ({lipschitz.Count}) as gradient entries ({gradient.Count}), at least one", nameof(lipschitz));
        int best = -1; double bestScore = double.NegativeInfinity;
        for (int i = 0; i < gradient.Count; i++)
        {
            if (!(lipschitz[i] > 0)) throw new ArgumentException($"coordinate descent: L_{i} is {lipschitz[i]}, must be positive", nameof(lipschitz));
            double score = rule switch
            {
                CoordinateRule.GaussSouthwell => Math.Abs(gradient[i]),
                CoordinateRule.GaussSouthwellLipschitz => Math.Abs(gradient[i]) / Math.Sqrt(lipschitz[i]),
                _ => throw new ArgumentOutOfRangeException(nameof(rule), rule, "coordinate descent: unknown rule"),
            };
            if (score > bestScore) { best = i; bestScore = score; }
        }
        return best;
    }

    /// <summary>One exact coordinate step x_i -= ∇_i f / A_ii on the coordinate the rule picks; returns x and i.</summary>
    /// <exception cref="ShapeMismatchException">A is not [n, n], or b or x not [n].</exception>
    /// <exception cref="ArgumentException">x is empty or a diagonal entry of A is not positive.</exception>
    public static (Tensor X, int Coordinate) Step(Tensor a, Tensor b, Tensor x, CoordinateRule rule)
    {
        var g = Gradient(a, b, x).ToDoubleArray();
        var l = a.Diagonal().ToDoubleArray();
        int i = Select(g, l, rule);
        var delta = new double[g.Length];
        delta[i] = -g[i] / l[i];
        return (x + Tensor.FromArray(delta).To(x.DType).To(x.Device), i);
    }

    static void Check(Tensor a, Tensor b, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(a); ArgumentNullException.ThrowIfNull(b); ArgumentNullException.ThrowIfNull(x);
        if (x.Rank != 1) throw new ShapeMismatchException("coordinate descent", nameof(x), new Shape(a.Rank == 2 ? a.Shape[0] : 0), x.Shape, "x must be a vector");
        int n = x.Shape[0];
        if (a.Shape != new Shape(n, n)) throw new ShapeMismatchException("coordinate descent", nameof(a), new Shape(n, n), a.Shape, "A must be [n, n]");
        if (b.Shape != x.Shape) throw new ShapeMismatchException("coordinate descent", nameof(b), x.Shape, b.Shape, "b must be [n]");
    }
}
