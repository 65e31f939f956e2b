namespace Kiln.NN.Optim;

/// <summary>
/// Gradient descent on logistic regression with large step sizes (Tyurin 2024, "From Logistic Regression to the
/// Perceptron Algorithm: Exploring Gradient Descent with Large Step Sizes"). With features X [n, d], labels y [n] in
/// {-1, +1} and margins m_i = y_i x_iᵀ w, the loss is f(w) = (1/n) Σ log(1 + e^(-m_i)) and LR+GD steps
/// w += (γ/n) Σ σ(-m_i) y_i x_i. Writing w = γ v, v follows v += (1/n) Σ σ(-γ m_i(v)) y_i x_i, which tends to the batch
/// perceptron v += (1/n) Σ_(m_i &lt; 0) y_i x_i as γ → ∞, a point with margin exactly 0 weighing σ(0) = 1/2
/// (<see cref="PerceptronStep"/> with tieWeight 1/2). From w_0 = 0 every point ties, so that limit's first step is half
/// the standard perceptron's (tieWeight 1) and the later directions differ. Normalized LR+GD divides the step by the
/// loss, w += (γ/(n f(w))) Σ σ(-m_i) y_i x_i.
/// </summary>
public static class LargeStepLogistic
{
    /// <summary>The logistic loss f(w) = mean log(1 + e^(-y ⊙ X w)) as a scalar tensor.</summary>
    /// <exception cref="ShapeMismatchException">X is not [n, d], y not [n] or w not [d].</exception>
    public static Tensor Loss(Tensor x, Tensor y, Tensor w) => (-Margins(x, y, w)).Softplus().Mean();

    /// <summary>The margins y ⊙ X w [n].</summary>
    /// <exception cref="ShapeMismatchException">X is not [n, d], y not [n] or w not [d].</exception>
    public static Tensor Margins(Tensor x, Tensor y, Tensor w)
    {
        ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(y); ArgumentNullException.ThrowIfNull(w);
        if (x.Rank != 2) throw new ShapeMismatchException("large-step logistic", nameof(x), new Shape(0, 0), x.Shape, "features must be [n, d]");
        if (y.Shape != new Shape(x.Shape[0])) throw new ShapeMismatchException("large-step logistic", nameof(y), new Shape(x.Shape[0]), y.Shape, "labels must be [n]");
        if (w.Shape != new Shape(x.Shape[1])) throw new ShapeMismatchException("large-step logistic", nameof(w), new Shape(x.Shape[1]), w.Shape, "weights must be [d]");
        return y * x.MatMul(w);
    }

    /// <summary>One LR+GD step with step size γ: w - γ ∇f(w).</summary>
    /// <exception cref="ShapeMismatchException">X is not [n, d], y not [n] or w not [d].</exception>
    /// <exception cref="ArgumentOutOfRangeException">gamma is not positive and finite.</exception>
    public static Tensor GradientStep(Tensor x, Tensor y, Tensor w, double gamma) => Step(x, y, w, gamma, normalized: false);

    /// <summary>One Normalized LR+GD step: w - (γ / f(w)) ∇f(w).</summary>
    /// <exception cref="ShapeMismatchException">X is not [n, d], y not [n] or w not [d].</exception>
    /// <exception cref="ArgumentOutOfRangeException">gamma is not positive and finite.</exception>
    public static Tensor NormalizedGradientStep(Tensor x, Tensor y, Tensor w, double gamma) => Step(x, y, w, gamma, normalized: true);

    /// <summary>
    /// One batch perceptron step: w + (1/n) Σ c_i y_i x_i, c_i = 1 for a margin y_i x_iᵀ w &lt; 0, tieWeight for a margin
    /// of 0 (1: the standard perceptron; 1/2: the γ → ∞ limit of LR+GD) and 0 otherwise.
    /// </summary>
    /// <exception cref="ShapeMismatchException">X is not [n, d], y not [n] or w not [d].</exception>
    /// <exception cref="ArgumentOutOfRangeException">tieWeight is not in [0, 1].</exception>
    public static Tensor PerceptronStep(Tensor x, Tensor y, Tensor w, double tieWeight = 1)
    {
        if (!(tieWeight >= 0 && tieWeight <= 1)) throw new ArgumentOutOfRangeException(nameof(tieWeight), tieWeight, "large-step logistic: tieWeight must be in [0, 1]");
        var m = Margins(x, y, w);
        var wrong = Tensor.Where(m < 0.0, m.OnesLike(), Tensor.Where(m.Eq(m.ZerosLike()), m.OnesLike() * tieWeight, m.ZerosLike()));
        return w + x.T.MatMul(wrong * y) / Math.Max(1, x.Shape[0]);
    }

    /// <summary>Whether every point is strictly on its side: all margins y_i x_iᵀ w &gt; 0.</summary>
    /// <exception cref="ShapeMismatchException">X is not [n, d], y not [n] or w not [d].</exception>
    public static bool Separates(Tensor x, Tensor y, Tensor w) => Margins(x, y, w).ToDoubleArray().All(m => m > 0);

    static Tensor Step(Tensor x, Tensor y, Tensor w, double gamma, bool normalized)
    {
        if (!(gamma > 0) || double.IsInfinity(gamma)) throw new ArgumentOutOfRangeException(nameof(gamma), gamma, "large-step logistic: gamma must be positive and finite");
        var m = Margins(x, y, w);
        if (!normalized) return w + gamma * x.T.MatMul((-m).Sigmoid() * y) / Math.Max(1, x.Shape[0]);
        // Σ σ(-m_i) y_i x_i / Σ log(1 + e^(-m_i)) in log space: once every margin passes ~745 both sums underflow to 0
        // and the direct ratio is 0/0, which normalized steps reach within a few hundred iterations. Both scale by
        // e^(-c), c the largest log-loss term; log log(1 + e^z) = z - e^z/2 + O(e^2z) below z = -20.
        var z = -m;
        var logLoss = Tensor.Where(z < -20.0, z - 0.5 * z.Exp(), z.Softplus().Log());
        var c = logLoss.Max();
        var weights = (-m.Softplus() - c).Exp();
        return w + gamma * x.T.MatMul(weights * y) / (logLoss - c).Exp().Sum();
    }
}
