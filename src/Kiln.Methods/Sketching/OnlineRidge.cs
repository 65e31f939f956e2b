namespace Kiln.Methods.Sketching;

/// <summary>
/// Follow-the-regularized-leader for online linear regression with squared loss and a ridge regularizer
/// ("Optimal Online Generalized Linear Regression with Stochastic Noise and Its Application to Heteroscedastic Bandits",
/// 2022): θₜ = argmin Σ_{s&lt;t} (xₛᵀθ - yₛ)² + λ‖θ‖² = (λI + Σ xₛxₛᵀ)⁻¹ Σ xₛyₛ, which is online ridge regression.
/// Each round updates the inverse Gram matrix by Sherman-Morrison, P ← P - (P x)(P x)ᵀ / (1 + xᵀP x), and θ ← θ + P x
/// (y - xᵀθ) with the updated P, in O(d²) instead of a fresh O(d³) solve. The regret against the best fixed θ grows
/// like σ² d log T under noise of variance σ².
/// </summary>
public sealed class OnlineRidge
{
    Tensor _p, _theta;

    /// <summary>Starts with θ = 0 and P = I/λ for d features (Float64 on <paramref name="device"/>).</summary>
    /// <param name="features">d, positive.</param>
    /// <param name="ridge">λ, positive.</param>
    /// <param name="device">Where the state lives (default: the CPU).</param>
    /// <exception cref="ArgumentOutOfRangeException">d or λ is not positive.</exception>
    public OnlineRidge(int features, double ridge, Device? device = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(features);
        if (!(ridge > 0) || double.IsInfinity(ridge)) throw new ArgumentOutOfRangeException(nameof(ridge), ridge, "OnlineRidge: the ridge λ must be positive and finite");
        _p = Tensor.Eye(features, dtype: DType.Float64, device: device) / ridge;
        _theta = Tensor.Zeros(new Shape(features), DType.Float64, device);
    }

    /// <summary>The current θₜ, [d].</summary>
    public Tensor Theta => _theta;

    /// <summary>The current inverse regularized Gram matrix (λI + Σ xₛxₛᵀ)⁻¹, [d, d].</summary>
    public Tensor InverseGram => _p;

    /// <summary>The prediction xᵀθₜ made before y is revealed.</summary>
    /// <param name="x">Features, [d].</param>
    public double Predict(Tensor x)
    {
        CheckX(x);
        return x.To(DType.Float64).Dot(_theta).Item();
    }

    /// <summary>Reveals the label of <paramref name="x"/>: one Sherman-Morrison update of P and θ.</summary>
    /// <param name="x">Features, [d].</param>
    /// <param name="y">The label, finite.</param>
    /// <exception cref="ArgumentException">y is not finite.</exception>
    public void Update(Tensor x, double y)
    {
        CheckX(x);
        if (!double.IsFinite(y)) throw new ArgumentException($"OnlineRidge.Update: the label {y} is not finite", nameof(y));
        var v = x.To(DType.Float64);
        var px = _p.MatMul(v.Unsqueeze(-1)).Squeeze(-1);
        _p = _p - px.Outer(px) / (1 + v.Dot(px).Item());
        _theta = _theta + _p.MatMul(v.Unsqueeze(-1)).Squeeze(-1) * (y - v.Dot(_theta).Item());
    }

    void CheckX(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Shape != _theta.Shape)
            throw new ShapeMismatchException("OnlineRidge", nameof(x), $"x has shape {x.Shape}; it must be {_theta.Shape}");
    }
}
