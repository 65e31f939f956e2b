using Kiln.Methods.Smoothing;

namespace Kiln.Methods.Merging;

/// <summary>A concept activation vector: a linear probe w.a + b separating concept from random activations, and its unit normal.</summary>
/// <param name="Weight">The probe's weight [d] (float64).</param>
/// <param name="Bias">The probe's bias.</param>
/// <param name="Direction">Weight / |Weight|: the CAV v_C (pointing towards the concept).</param>
/// <param name="Accuracy">The probe's accuracy on its training activations.</param>
public sealed record Cav(Tensor Weight, double Bias, Tensor Direction, double Accuracy);

/// <summary>
/// Testing with Concept Activation Vectors (Kim et al., ICML 2018). A CAV is the normal of a linear classifier separating a
/// layer's activations on concept examples from those on random examples; the conceptual sensitivity of class k at an
/// input is the directional derivative S = grad h_k(a) . v_C of the class logit h_k (a function of the layer's
/// activations a); the TCAV score is the fraction of class-k inputs with S &gt; 0. A single random CAV can score anywhere,
/// so the paper compares the scores of many concept CAVs (each against a different random set) with those of random-vs-random
/// CAVs by a two-sided t-test.
/// </summary>
public static class Tcav
{
    /// <summary>
    /// Fits the CAV as an L2-regularised logistic regression (concept = 1, random = 0) by <paramref name="steps"/> full-batch
    /// gradient steps in float64 from zero (deterministic).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The activation sets are not [n, d] and [m, d] with n, m &gt; 0.</exception>
    /// <exception cref="ArgumentOutOfRangeException">steps is not positive, or the learning rate or L2 weight is out of range.</exception>
    /// <exception cref="ArgumentException">The probe's weight is zero (the sets cannot be told apart).</exception>
    public static Cav FitCav(Tensor concept, Tensor random, int steps = 300, double learningRate = 0.5, double l2 = 1e-3)
    {
        ArgumentNullException.ThrowIfNull(concept); ArgumentNullException.ThrowIfNull(random);
        if (concept.Rank != 2 || random.Rank != 2 || concept.Shape[1] != random.Shape[1] || concept.Shape[0] == 0 || random.Shape[0] == 0)
            throw new ShapeMismatchException("tcav", nameof(random), $"activations must be [n, d] and [m, d] with n, m > 0; got {concept.Shape} and {random.Shape}");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(steps);
        if (!(learningRate > 0 && double.IsFinite(learningRate))) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "tcav: the learning rate must be positive and finite");
        if (!(l2 >= 0 && double.IsFinite(l2))) throw new ArgumentOutOfRangeException(nameof(l2), l2, "tcav: the L2 weight must be non-negative and finite");
        using var _ = Autograd.NoGrad();
        var x = Tensor.Concat([concept.To(DType.Float64), random.To(DType.Float64)], 0).Contiguous();
        int n = concept.Shape[0], m = random.Shape[0], d = concept.Shape[1];
        var y = Tensor.FromArray([.. Enumerable.Repeat(1.0, n), .. Enumerable.Repeat(0.0, m)]);
        var w = Tensor.Zeros([d], DType.Float64); double b = 0;
        for (int s = 0; s < steps; s++)
        {
            var err = (x.MatMul(w) + b).Sigmoid() - y;
            w = w - (x.T.MatMul(err) / (n + m) + w * l2) * learningRate;
            b -= learningRate * err.Mean().Item();
        }
        double norm = w.Dot(w).Sqrt().Item();
        if (!(norm > 0)) throw new ArgumentException("tcav: the probe's weight is zero; the concept and random activations cannot be told apart", nameof(concept));
        double acc = ((x.MatMul(w) + b > 0).To(DType.Float64).Eq(y)).To(DType.Float64).Mean().Item();
        return new Cav(w, b, w / norm, acc);
    }

    /// <summary>
    /// The conceptual sensitivities S_i = grad h_k(a_i) . v for each row a_i of <paramref name="activations"/> [n, d], where
    /// <paramref name="classLogit"/> maps activations [n, d] to the class-k logits [n] row by row (the rest of the network).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The activations are not [n, d], the direction is not [d], or the logits are not [n].</exception>
    /// <exception cref="InvalidOperationException">Called inside <see cref="Autograd.NoGrad"/>.</exception>
    public static double[] DirectionalDerivatives(Func<Tensor, Tensor> classLogit, Tensor activations, Tensor direction)
    {
        ArgumentNullException.ThrowIfNull(classLogit); ArgumentNullException.ThrowIfNull(activations); ArgumentNullException.ThrowIfNull(direction);
        if (activations.Rank != 2 || direction.Rank != 1 || direction.Shape[0] != activations.Shape[1])
            throw new ShapeMismatchException("tcav", nameof(direction), $"activations must be [n, d] and the direction [d]; got {activations.Shape} and {direction.Shape}");
        if (!Autograd.IsEnabled) throw new InvalidOperationException("tcav: directional derivatives need gradients; call outside Autograd.NoGrad()");
        var a = activations.Detach().Clone();
        a.RequiresGrad = true;
        var logits = classLogit(a);
        if (logits.Shape != new Shape(activations.Shape[0]))
            throw new ShapeMismatchException("tcav", nameof(classLogit), $"the class logits have shape {logits.Shape}; they must be [{activations.Shape[0]}]");
        // Rows are independent, so the gradient of the sum holds each row's own gradient.
        var g = Autograd.Grad(logits.Sum(), a);
        using var _ = Autograd.NoGrad();
        return g.To(DType.Float64).MatMul(direction.To(DType.Float64).To(g.Device)).ToDoubleArray();
    }

    /// <summary>The TCAV score: the fraction of sensitivities that are positive.</summary>
    /// <exception cref="ArgumentException">No sensitivities.</exception>
    public static double Score(IReadOnlyList<double> sensitivities)
    {
        ArgumentNullException.ThrowIfNull(sensitivities);
        if (sensitivities.Count == 0) throw new ArgumentException("tcav: no sensitivities to score", nameof(sensitivities));
        return sensitivities.Count(s => s > 0) / (double)sensitivities.Count;
    }

    /// <summary>
    /// The two-sided two-sample t-test (pooled variance, as scipy's ttest_ind the paper's code calls) of concept scores
    /// against random-CAV scores: the t statistic and its p-value with n1 + n2 - 2 degrees of freedom.
    /// </summary>
    /// <exception cref="ArgumentException">A sample has fewer than two scores.</exception>
    public static (double T, double P) TTest(IReadOnlyList<double> conceptScores, IReadOnlyList<double> randomScores)
    {
        ArgumentNullException.ThrowIfNull(conceptScores); ArgumentNullException.ThrowIfNull(randomScores);
        if (conceptScores.Count < 2 || randomScores.Count < 2)
            throw new ArgumentException($"tcav t-test: needs at least two scores per sample, got {conceptScores.Count} and {randomScores.Count}", nameof(randomScores));
        int n1 = conceptScores.Count, n2 = randomScores.Count, df = n1 + n2 - 2;
        double m1 = conceptScores.Average(), m2 = randomScores.Average();
        double ss = conceptScores.Sum(x => (x - m1) * (x - m1)) + randomScores.Sum(x => (x - m2) * (x - m2));
        double se = Math.Sqrt(ss / df * (1.0 / n1 + 1.0 / n2));
        if (se == 0) return m1 == m2 ? (double.NaN, double.NaN) : (Math.Sign(m1 - m2) * double.PositiveInfinity, 0);
        double t = (m1 - m2) / se;
        return (t, MonteCarloSmoothing.RegularizedBeta(df / (df + t * t), df / 2.0, 0.5));
    }
}
