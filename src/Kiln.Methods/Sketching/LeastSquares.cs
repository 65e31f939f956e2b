namespace Kiln.Methods.Sketching;

/// <summary>
/// Least squares on Kiln tensors, exact and randomized: the full solve (Kiln's <see cref="Tensor.Lstsq"/>),
/// sketch-and-solve x̃ = argmin ‖S(A x - b)‖, weighted least squares and the statistical leverage scores.
/// A is [n, d] and b is [n] (or [n, k]); everything runs in A's dtype on A's device.
/// </summary>
public static class LeastSquares
{
    /// <summary>The minimum-norm minimizer of ‖A x - b‖ (Kiln's Lstsq).</summary>
    /// <param name="a">The design, [n, d].</param>
    /// <param name="b">The targets, [n] or [n, k].</param>
    public static Tensor Solve(Tensor a, Tensor b)
    {
        CheckProblem(a, b, "Solve");
        return a.Lstsq(b);
    }

    /// <summary>Sketch-and-solve: x̃ = argmin ‖S A x - S b‖ with one m-row sketch S applied to [A | b].</summary>
    /// <param name="a">The design, [n, d].</param>
    /// <param name="b">The targets, [n] or [n, k].</param>
    /// <param name="kind">The sketch family.</param>
    /// <param name="m">Sketch rows.</param>
    /// <param name="generator">The random source of S.</param>
    /// <exception cref="ShapeMismatchException">b's rows differ from A's.</exception>
    /// <exception cref="ArgumentOutOfRangeException">m is not positive (or too large for SRHT).</exception>
    public static Tensor SketchAndSolve(Tensor a, Tensor b, SketchKind kind, int m, Generator generator)
    {
        CheckProblem(a, b, "SketchAndSolve");
        bool vector = b.Rank == 1;
        var bm = vector ? b.Unsqueeze(-1) : b;
        int d = a.Shape[1];
        var sab = Sketch.Apply(kind, Tensor.Concat([a, bm], 1), m, generator);
        var x = sab.Narrow(1, 0, d).Lstsq(sab.Narrow(1, d, bm.Shape[1]));
        return vector ? x.Squeeze(-1) : x;
    }

    /// <summary>Sketch-and-solve with an explicit sketch: x̃ = argmin ‖S A x - S b‖ for S [m, n] (the identity gives the exact solve).</summary>
    /// <param name="a">The design, [n, d].</param>
    /// <param name="b">The targets, [n] or [n, k].</param>
    /// <param name="sketch">The sketch S, [m, n], A's dtype.</param>
    /// <exception cref="ShapeMismatchException">S does not have n columns, or b's rows differ from A's.</exception>
    public static Tensor SketchAndSolve(Tensor a, Tensor b, Tensor sketch)
    {
        CheckProblem(a, b, "SketchAndSolve");
        ArgumentNullException.ThrowIfNull(sketch);
        if (sketch.Rank != 2 || sketch.Shape[1] != a.Shape[0])
            throw new ShapeMismatchException("LeastSquares.SketchAndSolve", nameof(sketch), $"the sketch has shape {sketch.Shape}; it must be [m, {a.Shape[0]}] for A of shape {a.Shape}");
        return sketch.MatMul(a).Lstsq(b.Rank == 1 ? sketch.MatMul(b.Unsqueeze(-1)).Squeeze(-1) : sketch.MatMul(b));
    }

    /// <summary>Weighted least squares: argmin Σᵢ wᵢ (aᵢᵀx - bᵢ)², solved as the ordinary problem on √wᵢ-scaled rows.</summary>
    /// <param name="a">The design, [n, d].</param>
    /// <param name="b">The targets, [n] or [n, k].</param>
    /// <param name="weights">Non-negative, finite row weights, [n].</param>
    /// <exception cref="ShapeMismatchException">b or the weights do not have A's n rows.</exception>
    /// <exception cref="ArgumentException">A weight is negative or not finite (the message names the first).</exception>
    public static Tensor Weighted(Tensor a, Tensor b, Tensor weights)
    {
        CheckProblem(a, b, "Weighted");
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Shape != new Shape(a.Shape[0]))
            throw new ShapeMismatchException("LeastSquares.Weighted", nameof(weights), $"weights have shape {weights.Shape}; they must be [{a.Shape[0]}], one per row of A {a.Shape}");
        var w = weights.To(DType.Float64).ToArray<double>();
        int bad = Array.FindIndex(w, v => !(v >= 0) || double.IsInfinity(v));
        if (bad >= 0) throw new ArgumentException($"LeastSquares.Weighted: weights[{bad}] = {w[bad]}; weights must be finite and non-negative", nameof(weights));
        var root = weights.To(a.DType).Sqrt();
        var rb = b.Rank == 1 ? root * b : root.Unsqueeze(-1) * b;
        return (root.Unsqueeze(-1) * a).Lstsq(rb);
    }

    /// <summary>
    /// Statistical leverage scores τᵢ = ‖Uᵢ‖² = aᵢᵀ(AᵀA)⁺aᵢ, with U the left singular vectors of A [n, d] belonging to
    /// singular values above rcond times the largest; [n], each in [0, 1], summing to rank(A).
    /// </summary>
    /// <param name="a">The design, [n, d].</param>
    /// <param name="rcond">Relative cutoff for the numerical rank (default ε · max(n, d) of the dtype).</param>
    /// <exception cref="ArgumentException">A is not a floating matrix.</exception>
    public static Tensor LeverageScores(Tensor a, double? rcond = null)
    {
        ArgumentNullException.ThrowIfNull(a);
        if (a.Rank != 2 || !a.DType.IsFloating())
            throw new ArgumentException($"LeastSquares.LeverageScores: a must be a floating [n, d] matrix, got {a.DType} of shape {a.Shape}", nameof(a));
        int n = a.Shape[0], d = a.Shape[1];
        if (Math.Min(n, d) == 0) return Tensor.Zeros(new Shape(n), a.DType, a.Device);
        double rc = rcond ?? (a.DType == DType.Float64 ? Math.Pow(2, -52) : Math.Pow(2, -23)) * Math.Max(n, d);
        var (u, s, _) = a.Detach().Svd();
        var keep = (s > s.Narrow(0, 0, 1) * rc).To(a.DType);
        return (u * u * keep).Sum(1);
    }

    /// <summary>The residual norm ‖A x - b‖ (Frobenius for matrix b), as a double.</summary>
    /// <param name="a">The design, [n, d].</param>
    /// <param name="b">The targets, [n] or [n, k].</param>
    /// <param name="x">A solution, [d] or [d, k].</param>
    public static double Residual(Tensor a, Tensor b, Tensor x)
    {
        CheckProblem(a, b, "Residual");
        ArgumentNullException.ThrowIfNull(x);
        var ax = x.Rank == 1 ? a.MatMul(x.Unsqueeze(-1)).Squeeze(-1) : a.MatMul(x);
        return (ax - b).To(DType.Float64).Pow(2).Sum().Sqrt().Item();
    }

    static void CheckProblem(Tensor a, Tensor b, string op)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Rank != 2 || !a.DType.IsFloating())
            throw new ArgumentException($"LeastSquares.{op}: a must be a floating [n, d] matrix, got {a.DType} of shape {a.Shape}", nameof(a));
        if (b.Rank is < 1 or > 2 || b.Shape[0] != a.Shape[0])
            throw new ShapeMismatchException($"LeastSquares.{op}", nameof(b), $"b has shape {b.Shape}; it must be [{a.Shape[0]}] or [{a.Shape[0]}, k] for A of shape {a.Shape}");
    }
}
