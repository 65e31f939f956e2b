using Kiln.NN;

namespace Kiln.Methods.Probabilistic;

/// <summary>
/// Learning what you don't know by predicting pairs (Johnson et al., "Experts Don't Cheat", 2024), for K classes: a
/// model predicts the joint law q(y1, y2 | x) of two independent responses to the same input. An expert that knows
/// p(y | x) gains nothing from Y1 and predicts p p^T; a model that cannot tell apart inputs with different p "cheats"
/// and puts extra mass on the diagonal. Under second-order calibration q(y) = E[p(y|X) | q] and q(y, y) =
/// E[p(y|X)^2 | q], so <see cref="EpistemicVariance"/> q(y, y) - q(y)^2 is the variance of the unknown p(y | x), and
/// Chebyshev's inequality turns it into an interval for p(y | x) with coverage at least 1 - alpha
/// (<see cref="Interval"/>). The model here is linear from the features to the K^2 joint logits (tabular on one-hot
/// features).
/// </summary>
public sealed class PairPredictor
{
    readonly Linear _head;

    PairPredictor(Linear head, int classes) { _head = head; Classes = classes; }

    /// <summary>The number of classes K.</summary>
    public int Classes { get; }

    /// <summary>
    /// The pair cross-entropy -mean_i log q(y1_i, y2_i | x_i) for joint logits <paramref name="logits"/> [n, K, K]
    /// (a softmax over all K^2 cells) and Int64 responses <paramref name="y1"/>, <paramref name="y2"/> [n] in [0, K).
    /// </summary>
    /// <exception cref="ArgumentException">The logits are not [n, K, K] or the responses are not Int64 [n].</exception>
    public static Tensor PairLoss(Tensor logits, Tensor y1, Tensor y2)
    {
        int k = CheckJoint(logits, nameof(logits));
        int n = logits.Shape[0];
        CheckResponses(y1, nameof(y1), n); CheckResponses(y2, nameof(y2), n);
        return Losses.CrossEntropy(logits.Reshape(n, k * k), y1 * (long)k + y2);
    }

    /// <summary>The joint q(y1, y2 | x) [n, K, K] from joint logits [n, K, K].</summary>
    /// <exception cref="ArgumentException">The logits are not [n, K, K].</exception>
    public static Tensor Joint(Tensor logits)
    {
        int k = CheckJoint(logits, nameof(logits));
        int n = logits.Shape[0];
        return logits.Reshape(n, k * k).Softmax(1).Reshape(n, k, k);
    }

    /// <summary>The first-order prediction q(y | x) [n, K]: the mean of the joint's two marginals (the pair is exchangeable).</summary>
    /// <exception cref="ArgumentException">The joint is not [n, K, K].</exception>
    public static Tensor Marginal(Tensor joint)
    {
        CheckJoint(joint, nameof(joint));
        return (joint.Sum(2) + joint.Sum(1)) * 0.5;
    }

    /// <summary>
    /// The cheat, read as epistemic variance: q(y, y | x) - q(y | x)^2 [n, K], zero when the joint ignores Y1
    /// (q = q1 q1^T) and Var[p(y|X) | q] under second-order calibration.
    /// </summary>
    /// <exception cref="ArgumentException">The joint is not [n, K, K].</exception>
    public static Tensor EpistemicVariance(Tensor joint)
    {
        var m = Marginal(joint);
        return joint.Diagonal(0, 1, 2) - m * m;
    }

    /// <summary>
    /// Chebyshev intervals for the true p(y | x): q(y) -/+ sqrt(max(V, 0) / alpha), clipped to [0, 1], each [n, K].
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="alpha"/> is not in (0, 1).</exception>
    /// <exception cref="ArgumentException">The joint is not [n, K, K].</exception>
    public static (Tensor Lower, Tensor Upper) Interval(Tensor joint, double alpha)
    {
        if (!(alpha > 0 && alpha < 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "pair predictor: alpha must be in (0, 1)");
        var m = Marginal(joint);
        var half = (EpistemicVariance(joint).Clamp(min: 0) * (1 / alpha)).Sqrt();
        return ((m - half).Clamp(0, 1), (m + half).Clamp(0, 1));
    }

    /// <summary>
    /// Fits the linear pair model on features <paramref name="x"/> [n, d] and pairs of Int64 responses
    /// <paramref name="y1"/>, <paramref name="y2"/> [n] in [0, <paramref name="classes"/>) by full-batch AdamW on
    /// <see cref="PairLoss"/>.
    /// </summary>
    /// <exception cref="ArgumentException">Shapes disagree or the responses are not Int64.</exception>
    /// <exception cref="ArgumentOutOfRangeException">Fewer than 2 classes, negative steps, a non-positive learning rate, or a response outside [0, K).</exception>
    public static PairPredictor Fit(Tensor x, Tensor y1, Tensor y2, int classes, int steps = 300, double learningRate = 0.1, ulong seed = 0)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Rank != 2 || x.Shape[0] == 0) throw new ArgumentException($"pair predictor: x must be [n, d] with n > 0, got {x.Shape}", nameof(x));
        if (classes < 2) throw new ArgumentOutOfRangeException(nameof(classes), classes, "pair predictor: needs at least 2 classes");
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        if (!(learningRate > 0) || double.IsInfinity(learningRate)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "pair predictor: the learning rate must be positive and finite");
        int n = x.Shape[0];
        CheckResponses(y1, nameof(y1), n); CheckResponses(y2, nameof(y2), n);
        foreach (var (y, name) in new[] { (y1, nameof(y1)), (y2, nameof(y2)) })
        {
            var v = y.ToArray<long>();
            long lo = v.Min(), hi = v.Max();
            if (lo < 0 || hi >= classes) throw new ArgumentOutOfRangeException(name, lo < 0 ? lo : hi, $"pair predictor: responses must be in [0, {classes})");
        }
        var xd = x.To(DType.Float64);
        var model = new PairPredictor(new Linear(x.Shape[1], classes * classes, true, new Generator(seed), DType.Float64, x.Device), classes);
        var opt = new AdamW(model._head.Parameters(), learningRate, weightDecay: 0);
        for (int s = 0; s < steps; s++)
        {
            opt.ZeroGrad();
            PairLoss(model.Logits(xd), y1, y2).Backward();
            opt.Step();
        }
        return model;
    }

    /// <summary>The predicted joint q(y1, y2 | x) [n, K, K] for features <paramref name="x"/> [n, d].</summary>
    /// <exception cref="ShapeMismatchException">The feature width differs from the fitted one.</exception>
    public Tensor PredictJoint(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        using (Autograd.NoGrad()) return Joint(Logits(x.To(DType.Float64)));
    }

    Tensor Logits(Tensor x) => _head.Forward(x).Reshape(x.Shape[0], Classes, Classes);

    static int CheckJoint(Tensor t, string name)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        if (t.Rank != 3 || t.Shape[1] != t.Shape[2] || t.Shape[1] < 2)
            throw new ArgumentException($"pair predictor: {name} must be [n, K, K] with K >= 2, got {t.Shape}", name);
        return t.Shape[1];
    }

    static void CheckResponses(Tensor y, string name, int n)
    {
        ArgumentNullException.ThrowIfNull(y, name);
        if (y.DType != DType.Int64 || y.Rank != 1 || y.Shape[0] != n)
            throw new ArgumentException($"pair predictor: {name} must be Int64 [{n}], got {y.DType} {y.Shape}", name);
    }
}
