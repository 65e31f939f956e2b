namespace Kiln.Methods.Sketching;

/// <summary>
/// Project and Probe (Chen et al., "Project and Probe: Sample-Efficient Domain Adaptation by Interpolating
/// Orthogonal Features", ICLR 2024). Project: on plentiful source data, learn k orthonormal directions v₁..v_k of a
/// pretrained embedding, each the best linear predictor of the source labels among directions orthogonal to the ones
/// before it (v₁ is the plain source predictor). Probe: on the few target examples, fit a linear head on the k projected
/// features [v₁ᵀx, …, v_kᵀx] only, so a small target set chooses among diverse source features instead of fitting all
/// d weights. Here each direction is the normalized ridge least-squares predictor within the orthogonal complement (the
/// paper trains logistic heads with the same orthogonality constraint).
/// </summary>
public static class ProjectAndProbe
{
    /// <summary>The k orthonormal source directions as the columns of V [d, k].</summary>
    /// <param name="features">Source embeddings, [n, d].</param>
    /// <param name="labels">Source targets (±1 labels or real values), [n].</param>
    /// <param name="directions">k, in [1, d].</param>
    /// <param name="ridge">Ridge penalty of each direction's fit, ≥ 0.</param>
    /// <exception cref="ArgumentOutOfRangeException">k is outside [1, d] or the ridge is negative.</exception>
    public static Tensor Project(Tensor features, Tensor labels, int directions, double ridge = 1e-6)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(labels);
        if (features.Rank != 2 || labels.Shape != new Shape(features.Shape[0]))
            throw new ShapeMismatchException("ProjectAndProbe.Project", nameof(labels), $"features {features.Shape} and labels {labels.Shape} must be [n, d] and [n]");
        int d = features.Shape[1];
        if (directions < 1 || directions > d) throw new ArgumentOutOfRangeException(nameof(directions), directions, $"ProjectAndProbe.Project: k must be in [1, d = {d}]");
        if (!(ridge >= 0) || double.IsInfinity(ridge)) throw new ArgumentOutOfRangeException(nameof(ridge), ridge, "ProjectAndProbe.Project: the ridge must be finite and non-negative");
        var eye = Tensor.Eye(d, dtype: features.DType, device: features.Device);
        var complement = eye;                                                          // projector onto span(v₁..v_{i−1})⊥
        var columns = new List<Tensor>();
        for (int i = 0; i < directions; i++)
        {
            // Ridge fit restricted to the complement: min ‖y − X P w‖² + ρ‖P w‖², solved on [X P; √ρ P], then v = P w / ‖P w‖.
            var xp = features.MatMul(complement);
            var a = Tensor.Concat([xp, complement * Math.Sqrt(ridge)], 0);
            var b = Tensor.Concat([labels, Tensor.Zeros(new Shape(d), labels.DType, labels.Device)], 0);
            var v = complement.MatMul(LeastSquares.Solve(a, b).Unsqueeze(-1)).Squeeze(-1);
            double norm = v.Norm().To(DType.Float64).Item();
            if (!(norm > 0)) throw new ArgumentException($"ProjectAndProbe.Project: direction {i + 1} is zero (the labels are orthogonal to the remaining feature space)", nameof(labels));
            v = v / norm;
            columns.Add(v);
            complement = complement - v.Outer(v);
        }
        return Tensor.Stack([.. columns], 1);
    }

    /// <summary>The target head on the projected features: ridge least squares of the labels on [X V, 1]; returns its k + 1 weights (last: intercept).</summary>
    /// <param name="features">Target embeddings, [n, d].</param>
    /// <param name="labels">Target labels, [n].</param>
    /// <param name="directions">V from <see cref="Project"/>, [d, k].</param>
    /// <param name="ridge">Ridge penalty on the k direction weights, ≥ 0.</param>
    public static Tensor Probe(Tensor features, Tensor labels, Tensor directions, double ridge = 1e-3)
    {
        ArgumentNullException.ThrowIfNull(directions);
        if (!(ridge >= 0) || double.IsInfinity(ridge)) throw new ArgumentOutOfRangeException(nameof(ridge), ridge, "ProjectAndProbe.Probe: the ridge must be finite and non-negative");
        var z = Design(features, directions);
        int k = directions.Shape[1];
        var penalty = Tensor.Eye(k, k + 1, features.DType, features.Device) * Math.Sqrt(ridge);   // the intercept is not penalized
        return LeastSquares.Solve(Tensor.Concat([z, penalty], 0), Tensor.Concat([labels, Tensor.Zeros(new Shape(k), labels.DType, labels.Device)], 0));
    }

    /// <summary>Predictions [X V, 1] · head for embeddings [n, d].</summary>
    /// <param name="features">Embeddings, [n, d].</param>
    /// <param name="directions">V, [d, k].</param>
    /// <param name="head">The probe's weights, [k + 1].</param>
    public static Tensor Predict(Tensor features, Tensor directions, Tensor head) =>
        Design(features, directions).MatMul(head.Unsqueeze(-1)).Squeeze(-1);

    static Tensor Design(Tensor features, Tensor directions)
    {
        ArgumentNullException.ThrowIfNull(features);
        if (features.Rank != 2 || directions.Rank != 2 || directions.Shape[0] != features.Shape[1])
            throw new ShapeMismatchException("ProjectAndProbe", nameof(directions), $"directions {directions.Shape} must be [d, k] for features {features.Shape}");
        var z = features.MatMul(directions);
        return Tensor.Concat([z, z.Narrow(1, 0, 1).OnesLike()], 1);
    }
}
