namespace Kiln.Methods.Reward;

/// <summary>How stage 2 weights the samples in the ridge readout.</summary>
public enum Weighting
{
    /// <summary>ω_i = 1.</summary>
    Unweighted,
    /// <summary>ω_i ∝ exp(y_i/β₂): the idealized weighting by the observed labels.</summary>
    Label,
    /// <summary>ω_i ∝ exp(r_{a0}(x_i)/β₂) with a pilot readout a0 fitted (unweighted) on a separate split.</summary>
    Surrogate,
}

/// <summary>Stage-2 settings. Defaults are the assumptions documented in the Reward README.</summary>
public sealed record ReadoutOptions
{
    /// <summary>The sample weighting (unweighted by default).</summary>
    public Weighting Weighting { get; init; } = Weighting.Unweighted;
    /// <summary>The deployment temperature β₂ used by the weights.</summary>
    public double Beta2 { get; init; } = 1;
    /// <summary>The ridge penalty λ in (ΦᵀΩΦ + nλI) (1e-3 by default).</summary>
    public double Lambda { get; init; } = 1e-3;
    /// <summary>For <see cref="Weighting.Surrogate"/>: the fraction of the n samples used to fit the pilot (1/2 by default);
    /// the weighted fit uses the rest.</summary>
    public double PilotFraction { get; init; } = 0.5;

    /// <summary>Checks the settings.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range.</exception>
    public void Validate()
    {
        if (!(Beta2 > 0)) throw new ArgumentOutOfRangeException(nameof(Beta2), Beta2, "readout: beta2 must be positive");
        if (!(Lambda > 0) || !double.IsFinite(Lambda)) throw new ArgumentOutOfRangeException(nameof(Lambda), Lambda, "readout: lambda must be positive and finite");
        if (!(PilotFraction > 0 && PilotFraction < 1)) throw new ArgumentOutOfRangeException(nameof(PilotFraction), PilotFraction, "readout: the pilot fraction must be in (0, 1)");
    }
}

/// <summary>The fitted network and the weights' effective sample size (Σω)²/Σω² in the final fit.</summary>
/// <param name="Network">The network with its fitted readout.</param>
/// <param name="WeightEss">(Σω)²/Σω² of the weights used in the final fit (its n when unweighted).</param>
/// <param name="FitSamples">Samples in the final fit.</param>
public sealed record ReadoutFit(ReluNetwork Network, double WeightEss, int FitSamples);

/// <summary>
/// Stage 2: the readout a = (ΦᵀΩΦ + nλI)⁻¹ ΦᵀΩy on frozen features Φ, Ω = diag(ω), in float64. Exponential weights
/// are normalized by their mean and computed with the maximum subtracted, so β₂ = 1/64 does not overflow.
/// </summary>
public static class Readout
{
    /// <summary>
    /// a = (ΦᵀΩΦ + nλI)⁻¹ ΦᵀΩy for features Φ [n, N], labels y [n] and weights ω [n] (all ones when null), computed in
    /// float64 on Φ's device with a symmetric positive-definite solve. Returns a [N] in float64.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not agree.</exception>
    public static Tensor WeightedRidge(Tensor phi, Tensor y, Tensor? omega, double lambda)
    {
        if (phi.Rank != 2) throw new ShapeMismatchException("weighted_ridge", nameof(phi), $"features must be [n, N], got {phi.Shape}");
        int n = phi.Shape[0], k = phi.Shape[1];
        if (y.Rank != 1 || y.Shape[0] != n) throw new ShapeMismatchException("weighted_ridge", nameof(y), new Shape(n), y.Shape);
        if (omega is not null && (omega.Rank != 1 || omega.Shape[0] != n)) throw new ShapeMismatchException("weighted_ridge", nameof(omega), new Shape(n), omega.Shape);
        if (!(lambda > 0)) throw new ArgumentOutOfRangeException(nameof(lambda), lambda, "weighted_ridge: lambda must be positive");
        var p = phi.To(DType.Float64);
        var yy = y.To(DType.Float64).To(phi.Device);
        var wp = omega is null ? p : p * omega.To(DType.Float64).To(phi.Device).Unsqueeze(1);
        var gram = wp.T.MatMul(p) + Tensor.Eye(k, dtype: DType.Float64, device: phi.Device) * (n * lambda);
        return gram.Cholesky().CholeskySolve(wp.T.MatMul(yy));
    }

    /// <summary>Fits the readout of <paramref name="net"/> on samples x [n, d], y [n] as <paramref name="options"/> say.</summary>
    public static ReadoutFit Fit(ReluNetwork net, Tensor x, Tensor y, ReadoutOptions options)
    {
        options.Validate();
        int n = x.Shape[0];
        if (y.Rank != 1 || y.Shape[0] != n) throw new ShapeMismatchException("readout", nameof(y), new Shape(n), y.Shape);
        switch (options.Weighting)
        {
            case Weighting.Unweighted:
                return new(net.WithA(WeightedRidge(net.Features(x), y, null, options.Lambda)), n, n);
            case Weighting.Label:
            {
                var w = FeatureLearning.ExpWeights(y.To(DType.Float64), options.Beta2);
                return new(net.WithA(WeightedRidge(net.Features(x), y, w, options.Lambda)), Ess(w), n);
            }
            default:
            {
                int nPilot = (int)Math.Round(n * options.PilotFraction);
                if (nPilot < 1 || nPilot >= n) throw new ArgumentException($"readout: n = {n} is too small to split with pilot fraction {options.PilotFraction}", nameof(x));
                var pilot = net.WithA(WeightedRidge(net.Features(x.Narrow(0, 0, nPilot)), y.Narrow(0, 0, nPilot), null, options.Lambda));
                var xm = x.Narrow(0, nPilot, n - nPilot);
                var w = FeatureLearning.ExpWeights(pilot.Evaluate(xm).To(DType.Float64), options.Beta2);
                return new(net.WithA(WeightedRidge(net.Features(xm), y.Narrow(0, nPilot, n - nPilot), w, options.Lambda)), Ess(w), n - nPilot);
            }
        }
    }

    /// <summary>(Σω)²/Σω².</summary>
    public static double Ess(Tensor omega)
    {
        var w = omega.To(DType.Float64);
        double s = w.Sum().Item();
        return s * s / w.Square().Sum().Item();
    }
}
