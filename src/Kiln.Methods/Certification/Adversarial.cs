using Kiln.NN;

namespace Kiln.Methods.Certification;

/// <summary>The norm of a perturbation ball.</summary>
public enum LpNorm
{
    /// <summary>||d||_1 &lt;= eps.</summary>
    L1,
    /// <summary>||d||_2 &lt;= eps.</summary>
    L2,
    /// <summary>||d||_inf &lt;= eps.</summary>
    LInf,
}

/// <summary>
/// The white-box attacks both RAMP and the black-box attack use, on a logits function x [n, d] -&gt; [n, C]:
/// Euclidean projection onto l1 / l2 / l_inf balls (row-wise), steepest-ascent PGD, FGSM, and the per-point and union
/// accuracy against several attacks.
/// </summary>
public static class Adversarial
{
    /// <summary>
    /// Projects every row of <paramref name="delta"/> ([n, d]) onto the <paramref name="norm"/> ball of radius
    /// <paramref name="eps"/>: clamp (l_inf), rescale to eps when longer (l2), and for l1 the soft threshold
    /// sign(d) max(|d| - theta, 0) with theta from the sorted magnitudes (Duchi et al., 2008), identity inside the ball.
    /// </summary>
    /// <exception cref="ArgumentException">delta is not [n, d].</exception>
    /// <exception cref="ArgumentOutOfRangeException">eps is negative or not finite.</exception>
    public static Tensor Project(Tensor delta, LpNorm norm, double eps)
    {
        ArgumentNullException.ThrowIfNull(delta);
        if (delta.Rank != 2) throw new ArgumentException($"project: delta must be [n, d], got {delta.Shape}", nameof(delta));
        if (!(eps >= 0) || double.IsInfinity(eps)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "project: eps must be non-negative and finite");
        int d = delta.Shape[1];
        if (d == 0 || delta.Shape[0] == 0) return delta;
        switch (norm)
        {
            case LpNorm.LInf:
                return delta.Clamp(-eps, eps);
            case LpNorm.L2:
                {
                    var length = delta.Square().Sum(1, keepDim: true).Sqrt();
                    // eps / max(||d||, eps) is 1 inside the ball; a zero row stays zero, also for eps = 0.
                    return eps == 0 ? delta * 0 : delta * (eps / length.Clamp(eps, null));
                }
            case LpNorm.L1:
                {
                    if (eps == 0) return delta * 0;
                    var u = delta.Abs().Sort(1, descending: true).Values;
                    var cumulative = u.Cumsum(1);
                    var j = Tensor.Arange(1, d + 1, 1, delta.DType, delta.Device);
                    // rho = #{j : u_j > (cumsum_j - eps) / j}; the condition holds on a prefix of the sorted magnitudes.
                    var rho = (u > (cumulative - eps) / j).To(DType.Int64).Sum(1, keepDim: true);
                    var theta = ((cumulative.Gather(1, rho - 1) - eps) / rho.To(delta.DType)).Clamp(0, null);
                    return delta.Sign() * (delta.Abs() - theta).Relu();
                }
            default:
                throw new ArgumentOutOfRangeException(nameof(norm), norm, "project: unknown norm");
        }
    }

    /// <summary>
    /// The steepest-ascent direction of unit <paramref name="norm"/> for gradient rows g ([n, d]): sign(g) (l_inf),
    /// g / ||g||_2 (l2; 0 for a zero row), and for l1 sign(g_j) on the coordinate of largest |g_j| of each row (the first on ties).
    /// </summary>
    public static Tensor SteepestAscent(Tensor g, LpNorm norm)
    {
        ArgumentNullException.ThrowIfNull(g);
        if (g.Rank != 2) throw new ArgumentException($"steepest ascent: g must be [n, d], got {g.Shape}", nameof(g));
        return norm switch
        {
            LpNorm.LInf => g.Sign(),
            LpNorm.L2 => g / g.Square().Sum(1, keepDim: true).Sqrt().Clamp(1e-300, null),
            LpNorm.L1 => L1Ascent(g),
            _ => throw new ArgumentOutOfRangeException(nameof(norm), norm, "steepest ascent: unknown norm"),
        };
    }

    static Tensor L1Ascent(Tensor g)
    {
        if (g.Shape[1] == 0 || g.Shape[0] == 0) return g;
        var top = g.Abs().ArgMax(1, keepDim: true);
        return Tensor.Zeros(g.Shape, g.DType, g.Device).Scatter(1, top, g.Gather(1, top).Sign());
    }

    /// <summary>
    /// The gradient of the summed cross entropy of <paramref name="logits"/>(x) against labels <paramref name="y"/>
    /// (Int64 [n]) with respect to the inputs <paramref name="x"/> ([n, d]).
    /// </summary>
    public static Tensor InputGradient(Func<Tensor, Tensor> logits, Tensor x, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(logits); ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(y);
        var xi = x.Detach().RequiresGrad_();
        return Autograd.Grad(Losses.CrossEntropy(logits(xi), y, reduction: Reduction.Sum), xi);
    }

    /// <summary>FGSM (Goodfellow et al., 2015): x + eps sign(grad_x CE(f(x), y)), detached.</summary>
    /// <exception cref="ArgumentOutOfRangeException">eps is negative or not finite.</exception>
    public static Tensor Fgsm(Func<Tensor, Tensor> logits, Tensor x, Tensor y, double eps)
    {
        if (!(eps >= 0) || double.IsInfinity(eps)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "fgsm: eps must be non-negative and finite");
        return (x + InputGradient(logits, x, y).Sign() * eps).Detach();
    }

    /// <summary>
    /// PGD (Madry et al., 2018) in the <paramref name="norm"/> ball of radius <paramref name="eps"/>: from delta = 0,
    /// <paramref name="steps"/> times delta = Project(delta + step SteepestAscent(grad_delta CE(f(x + delta), y))).
    /// Returns x + delta, detached.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">eps or step is negative or not finite, or steps is negative.</exception>
    public static Tensor Pgd(Func<Tensor, Tensor> logits, Tensor x, Tensor y, LpNorm norm, double eps, double step, int steps)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (!(step >= 0) || double.IsInfinity(step)) throw new ArgumentOutOfRangeException(nameof(step), step, "pgd: the step must be non-negative and finite");
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        var delta = Project(Tensor.Zeros(x.Shape, x.DType, x.Device), norm, eps);
        for (int t = 0; t < steps; t++)
        {
            var g = InputGradient(logits, x + delta, y);
            delta = Project(delta + SteepestAscent(g, norm) * step, norm, eps).Detach();
        }
        return (x + delta).Detach();
    }

    /// <summary>Per row of <paramref name="x"/>: whether argmax logits(x) equals the label.</summary>
    public static bool[] Correct(Func<Tensor, Tensor> logits, Tensor x, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(logits);
        Tensor predicted;
        using (Autograd.NoGrad()) predicted = logits(x).ArgMax(1);
        var p = predicted.ToArray<long>(); var labels = y.To(DType.Int64).ToArray<long>();
        if (p.Length != labels.Length) throw new ArgumentException($"correct: {p.Length} predictions for {labels.Length} labels", nameof(y));
        return p.Select((v, i) => v == labels[i]).ToArray();
    }

    /// <summary>Union accuracy: the fraction of points classified correctly under every attack (one bool per point per attack).</summary>
    /// <exception cref="ArgumentException">No attack, or the attacks cover different numbers of points.</exception>
    public static double UnionAccuracy(IReadOnlyList<bool[]> correctPerAttack)
    {
        ArgumentNullException.ThrowIfNull(correctPerAttack);
        if (correctPerAttack.Count == 0) throw new ArgumentException("union accuracy: no attack", nameof(correctPerAttack));
        int n = correctPerAttack[0].Length;
        if (correctPerAttack.Any(c => c.Length != n)) throw new ArgumentException($"union accuracy: attacks cover different numbers of points ({string.Join(", ", correctPerAttack.Select(c => c.Length))})", nameof(correctPerAttack));
        return n == 0 ? 0 : Enumerable.Range(0, n).Count(i => correctPerAttack.All(c => c[i])) / (double)n;
    }
}
