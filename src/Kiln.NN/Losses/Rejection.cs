namespace Kiln.NN;

/// <summary>
/// Learning to reject with a fixed predictor (Mohri, Andor, Choi, Collins, Mao and Zhong, ICLR 2024). A rejector
/// r(x) accepts the fixed predictor's output where r(x) &gt; 0 and abstains, at cost c, where r(x) &lt;= 0; the label
/// says whether the predictor's output on x is wrong.
/// </summary>
public static class Rejection
{
    static void Check(Tensor scores, Tensor incorrect, double cost, string op)
    {
        ArgumentNullException.ThrowIfNull(scores); ArgumentNullException.ThrowIfNull(incorrect);
        if (incorrect.Shape != scores.Shape) throw new ShapeMismatchException(op, nameof(incorrect), scores.Shape, incorrect.Shape, "incorrect must have the scores' shape");
        if (!(cost > 0 && cost < 1)) throw new ArgumentOutOfRangeException(nameof(cost), cost, $"{op}: the rejection cost must be in (0, 1)");
    }

    static Tensor Reduce(Tensor l, Reduction r) => r switch
    {
        Reduction.Mean => l.Mean(),
        Reduction.Sum => l.Sum(),
        Reduction.None => l,
        _ => throw new ArgumentOutOfRangeException(nameof(r), r, "unknown reduction"),
    };

    /// <summary>
    /// The rejection loss 1[h(x) wrong] 1[r(x) &gt; 0] + c 1[r(x) &lt;= 0]: an error counts 1 when accepted and every
    /// abstention costs c. Its minimiser accepts exactly where P(h(x) wrong | x) &lt; c, i.e. where
    /// P(correct | x) &gt; 1 - c.
    /// </summary>
    /// <param name="scores">r(x), any shape.</param>
    /// <param name="incorrect">1 where the fixed predictor is wrong, 0 where it is right (the shape of r).</param>
    /// <param name="cost">c in (0, 1).</param>
    /// <param name="reduction">How the per-example values combine.</param>
    /// <exception cref="ShapeMismatchException">The shapes differ.</exception>
    /// <exception cref="ArgumentOutOfRangeException">c is outside (0, 1).</exception>
    public static Tensor Loss(Tensor scores, Tensor incorrect, double cost, Reduction reduction = Reduction.Mean)
    {
        Check(scores, incorrect, cost, "rejection_loss");
        var accept = (scores > 0.0).To(scores.DType);
        return Reduce(incorrect.To(scores.DType) * accept + (1.0 - accept) * cost, reduction);
    }

    /// <summary>
    /// The paper's surrogate with exponential Phi: 1[h(x) wrong] exp(alpha r(x)) + c exp(-beta r(x)). It bounds
    /// <see cref="Loss"/> from above everywhere, is convex in r, and its pointwise minimiser given the error probability
    /// eta(x) is r* = log(beta c / (alpha eta)) / (alpha + beta), so the built-in threshold r = 0 accepts where
    /// eta(x) &lt; (beta / alpha) c: alpha = beta gives the rejection loss's own rule, P(correct | x) &gt; 1 - c.
    /// </summary>
    /// <param name="scores">r(x), any shape.</param>
    /// <param name="incorrect">1 where the fixed predictor is wrong, 0 where it is right (the shape of r).</param>
    /// <param name="cost">c in (0, 1).</param>
    /// <param name="alpha">alpha &gt; 0, the slope of the accepted-error term.</param>
    /// <param name="beta">beta &gt; 0, the slope of the abstention term.</param>
    /// <param name="reduction">How the per-example values combine.</param>
    /// <exception cref="ShapeMismatchException">The shapes differ.</exception>
    /// <exception cref="ArgumentOutOfRangeException">c is outside (0, 1) or alpha, beta are not positive and finite.</exception>
    public static Tensor SurrogateLoss(Tensor scores, Tensor incorrect, double cost, double alpha = 1, double beta = 1, Reduction reduction = Reduction.Mean)
    {
        Check(scores, incorrect, cost, "rejection_surrogate_loss");
        if (!(alpha > 0) || double.IsInfinity(alpha)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "rejection_surrogate_loss: alpha must be positive and finite");
        if (!(beta > 0) || double.IsInfinity(beta)) throw new ArgumentOutOfRangeException(nameof(beta), beta, "rejection_surrogate_loss: beta must be positive and finite");
        return Reduce(incorrect.To(scores.DType) * (scores * alpha).Exp() + (scores * -beta).Exp() * cost, reduction);
    }
}
