namespace Kiln.NN;

/// <summary>Quantile regression losses.</summary>
public static class QuantileLosses
{
    /// <summary>
    /// The pinball (check) loss of quantile predictions q [N, K] at levels tau_k for targets y [N]:
    /// rho_tau(u) = max(tau u, (tau - 1) u) with u = y - q, reduced over all N K entries. Its gradient in q is
    /// 1[y &lt; q] - tau (away from y = q).
    /// </summary>
    /// <exception cref="ShapeMismatchException">q is not [N, K] for y [N] and K levels.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A level is outside (0, 1).</exception>
    public static Tensor Pinball(Tensor predictions, Tensor target, IReadOnlyList<double> quantiles, Reduction reduction = Reduction.Mean)
    {
        ArgumentNullException.ThrowIfNull(predictions); ArgumentNullException.ThrowIfNull(target); ArgumentNullException.ThrowIfNull(quantiles);
        if (predictions.Rank != 2 || target.Rank != 1 || target.Shape[0] != predictions.Shape[0] || predictions.Shape[1] != quantiles.Count)
            throw new ShapeMismatchException("pinball", nameof(predictions), $"predictions {predictions.Shape} must be [N, K] for target {target.Shape} = [N] and K = {quantiles.Count} levels");
        foreach (double t in quantiles)
            if (!(t > 0 && t < 1)) throw new ArgumentOutOfRangeException(nameof(quantiles), t, "pinball: quantile levels must be in (0, 1)");
        var tau = Tensor.FromArray(quantiles.ToArray(), new Shape(1, quantiles.Count)).To(predictions.Device).To(predictions.DType);
        var u = target.To(predictions.DType).Unsqueeze(1) - predictions;
        var loss = Tensor.Maximum(u * tau, u * (tau - 1));
        return reduction switch
        {
            Reduction.Mean => loss.Mean(),
            Reduction.Sum => loss.Sum(),
            Reduction.None => loss,
            _ => throw new ArgumentOutOfRangeException(nameof(reduction), reduction, "pinball: unknown reduction"),
        };
    }
}
