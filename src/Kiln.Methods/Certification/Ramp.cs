using Kiln.NN;

namespace Kiln.Methods.Certification;

/// <summary>Settings of one <see cref="Ramp.Step"/>: the key trade-off pair of norms (q, r), their radii, PGD, and the two RAMP weights.</summary>
public sealed record RampOptions
{
    /// <summary>The norm q whose robust subset anchors the logit pairing (l_inf by default).</summary>
    public LpNorm Q { get; init; } = LpNorm.LInf;
    /// <summary>The norm r whose adversarial logits are pulled towards q's (l1 by default).</summary>
    public LpNorm R { get; init; } = LpNorm.L1;
    /// <summary>The radius of the q ball.</summary>
    public double EpsQ { get; init; } = 0.1;
    /// <summary>The radius of the r ball.</summary>
    public double EpsR { get; init; } = 2;
    /// <summary>PGD steps per attack.</summary>
    public int Steps { get; init; } = 5;
    /// <summary>The weight lambda of the logit pairing term.</summary>
    public double Lambda { get; init; } = 0.5;
    /// <summary>The weight beta of the natural-training component in the gradient projection (0: plain adversarial training).</summary>
    public double Beta { get; init; } = 0.5;
}

/// <summary>
/// RAMP (Jiang and Singh, 2024): adversarial training for the union of l_p balls. The loss pairs the logits of the
/// l_q and l_r adversarial examples, L = (CE(f(x_q), y) + CE(f(x_r), y)) / 2 + lambda KL(p_q || p_r) over the points
/// that x_q leaves correct, and the update mixes in natural training by gradient projection, layer by layer:
/// g = (1 - beta) g_adv + beta max(0, &lt;g_nat, g_adv&gt;) / ||g_adv||^2 g_adv (the part of the natural update that
/// agrees with the adversarial one).
/// </summary>
public static class Ramp
{
    /// <summary>
    /// RAMP's logit pairing term: sum over rows i where argmax <paramref name="logitsQ"/>_i = y_i of
    /// KL(softmax(z_q,i) || softmax(z_r,i)), divided by the number of rows (0 for an empty batch).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The logits differ in shape or do not match the labels.</exception>
    public static Tensor LogitPairing(Tensor logitsQ, Tensor logitsR, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(logitsQ); ArgumentNullException.ThrowIfNull(logitsR); ArgumentNullException.ThrowIfNull(y);
        if (logitsQ.Rank != 2 || logitsQ.Shape != logitsR.Shape || y.Rank != 1 || y.Shape[0] != logitsQ.Shape[0])
            throw new ShapeMismatchException("ramp_logit_pairing", nameof(logitsR), $"logits must both be [n, C] with labels [n], got {logitsQ.Shape}, {logitsR.Shape} and {y.Shape}");
        int n = logitsQ.Shape[0];
        if (n == 0) return Tensor.Zeros(new Shape(), logitsQ.DType, logitsQ.Device);
        var mask = logitsQ.ArgMax(1).Eq(y.To(DType.Int64)).To(logitsQ.DType);
        var lq = logitsQ.LogSoftmax(1); var lr = logitsR.LogSoftmax(1);
        var kl = (lq.Exp() * (lq - lr)).Sum(1);
        return (kl * mask).Sum() / n;
    }

    /// <summary>RAMP's adversarial loss (CE(z_q, y) + CE(z_r, y)) / 2 + lambda <see cref="LogitPairing"/>(z_q, z_r, y).</summary>
    public static Tensor Loss(Tensor logitsQ, Tensor logitsR, Tensor y, double lambda)
    {
        if (!(lambda >= 0) || double.IsInfinity(lambda)) throw new ArgumentOutOfRangeException(nameof(lambda), lambda, "ramp: lambda must be non-negative and finite");
        return (Losses.CrossEntropy(logitsQ, y) + Losses.CrossEntropy(logitsR, y)) * 0.5 + LogitPairing(logitsQ, logitsR, y) * lambda;
    }

    /// <summary>
    /// The gradient projection of one layer: (1 - beta) g_adv + beta max(0, &lt;g_nat, g_adv&gt;) / ||g_adv||^2 g_adv
    /// (g_adv itself when it is zero).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The gradients differ in shape.</exception>
    /// <exception cref="ArgumentOutOfRangeException">beta is outside [0, 1].</exception>
    public static Tensor ProjectGradient(Tensor natural, Tensor adversarial, double beta)
    {
        ArgumentNullException.ThrowIfNull(natural); ArgumentNullException.ThrowIfNull(adversarial);
        if (natural.Shape != adversarial.Shape) throw new ShapeMismatchException("ramp_gradient_projection", nameof(adversarial), $"gradients must match, got {natural.Shape} and {adversarial.Shape}");
        if (!(beta >= 0 && beta <= 1)) throw new ArgumentOutOfRangeException(nameof(beta), beta, "ramp: beta must be in [0, 1]");
        double dot = (natural.To(DType.Float64) * adversarial.To(DType.Float64)).Sum().Item();
        double sq = adversarial.To(DType.Float64).Square().Sum().Item();
        double scale = sq > 0 ? (1 - beta) + beta * Math.Max(0, dot) / sq : 1;
        return adversarial * scale;
    }

    /// <summary>
    /// One RAMP step on a batch: PGD examples in the q and r balls (from the current model), the natural gradient of
    /// CE(f(x), y) and the adversarial gradient of <see cref="Loss"/>, combined per parameter by <see cref="ProjectGradient"/>,
    /// then <paramref name="optimizer"/>.Step(). Returns the adversarial loss.
    /// </summary>
    public static double Step(Func<Tensor, Tensor> logits, IReadOnlyList<Parameter> parameters, Optimizer optimizer, Tensor x, Tensor y, RampOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits); ArgumentNullException.ThrowIfNull(parameters); ArgumentNullException.ThrowIfNull(optimizer); ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegative(options.Steps);
        var xq = Adversarial.Pgd(logits, x, y, options.Q, options.EpsQ, 2.5 * options.EpsQ / Math.Max(1, options.Steps), options.Steps);
        var xr = Adversarial.Pgd(logits, x, y, options.R, options.EpsR, 2.5 * options.EpsR / Math.Max(1, options.Steps), options.Steps);
        var ps = parameters.Cast<Tensor>().ToArray();
        var natural = Autograd.Grad([Losses.CrossEntropy(logits(x), y)], ps);
        var loss = Loss(logits(xq), logits(xr), y, options.Lambda);
        var adversarial = Autograd.Grad([loss], ps);
        optimizer.ZeroGrad();
        for (int i = 0; i < ps.Length; i++) ps[i].Grad = ProjectGradient(natural[i], adversarial[i], options.Beta).Detach();
        optimizer.Step();
        return loss.Item();
    }
}
