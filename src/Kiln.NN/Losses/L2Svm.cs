namespace Kiln.NN;

/// <summary>
/// The L2-SVM output layer (Tang 2013; Agarap 2017, "An Architecture Combining CNN and SVM"): a linear head trained
/// one-vs-rest on the squared hinge loss, 1/2 ||W||^2 + C sum_i sum_k max(0, 1 - y_ik (w_k^T x_i + b_k))^2 with
/// y_ik = +1 for the label and -1 otherwise. The head predicts argmax_k of its scores.
/// </summary>
public static class L2Svm
{
    /// <summary>
    /// sum_k max(0, 1 - y_ik s_ik)^2 per sample, one-vs-rest (y_ik = +1 where k is the label, else -1), reduced over
    /// the batch. Differentiable everywhere (the squared hinge has a continuous derivative).
    /// </summary>
    /// <param name="scores">Head outputs s [N, C].</param>
    /// <param name="target">Int64 labels [N].</param>
    /// <param name="reduction">How the per-sample values combine (the SVM objective uses the sum).</param>
    /// <exception cref="ShapeMismatchException">The shapes do not fit.</exception>
    /// <exception cref="ArgumentException">The target is not Int64.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A label is outside [0, C).</exception>
    public static Tensor SquaredHinge(Tensor scores, Tensor target, Reduction reduction = Reduction.Sum)
    {
        ArgumentNullException.ThrowIfNull(scores); ArgumentNullException.ThrowIfNull(target);
        if (scores.Rank != 2) throw new ShapeMismatchException("squared_hinge", nameof(scores), $"scores {scores.Shape} must be [N, C]");
        if (target.DType != DType.Int64) throw new ArgumentException($"squared_hinge: target must hold Int64 class indices, not {target.DType}", nameof(target));
        if (target.Rank != 1 || target.Shape[0] != scores.Shape[0]) throw new ShapeMismatchException("squared_hinge", nameof(target), $"target {target.Shape} must be [{scores.Shape[0]}]");
        int c = scores.Shape[1];
        var t = target.ToArray<long>();
        for (int i = 0; i < t.Length; i++)
            if (t[i] < 0 || t[i] >= c) throw new ArgumentOutOfRangeException(nameof(target), $"squared_hinge: target {t[i]} at sample {i} is outside [0, {c})");
        var y = target.To(scores.Device).OneHot(c, scores.DType) * 2.0 - 1.0;
        var perSample = (1.0 - y * scores).Relu().Square().Sum(-1);
        return reduction switch
        {
            Reduction.Mean => perSample.Mean(),
            Reduction.Sum => perSample.Sum(),
            Reduction.None => perSample,
            _ => throw new ArgumentOutOfRangeException(nameof(reduction), reduction, "unknown reduction"),
        };
    }

    /// <summary>
    /// The L2-SVM primal objective of a linear head: 1/2 ||W||^2 + C * <see cref="SquaredHinge"/>(head(features), y)
    /// summed over the batch (the bias is not penalised).
    /// </summary>
    /// <param name="head">The linear head, W [C, d].</param>
    /// <param name="features">x [N, d].</param>
    /// <param name="target">Int64 labels [N].</param>
    /// <param name="c">The penalty C &gt; 0 (larger C approaches the hard-margin SVM on separable data).</param>
    /// <exception cref="ArgumentOutOfRangeException">C is not positive and finite.</exception>
    public static Tensor Objective(Linear head, Tensor features, Tensor target, double c)
    {
        ArgumentNullException.ThrowIfNull(head);
        if (!(c > 0) || double.IsInfinity(c)) throw new ArgumentOutOfRangeException(nameof(c), c, "l2_svm: C must be positive and finite");
        return head.Weight.Value.Square().Sum() * 0.5 + SquaredHinge(head.Call(features), target) * c;
    }
}
