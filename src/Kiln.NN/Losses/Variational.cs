namespace Kiln.NN;

/// <summary>The two targets of PIWAE: the generative network ascends <see cref="Model"/>, the inference network <see cref="Inference"/>.</summary>
/// <param name="Model">IWAE over all M·K samples, per batch element.</param>
/// <param name="Inference">MIWAE(M, K) over the same samples, per batch element.</param>
public readonly record struct PiwaeTargets(Tensor Model, Tensor Inference);

/// <summary>
/// Importance-weighted variational bounds on log p(x) as functions of the log-weights log w_k = log p(x, z_k) - log q(z_k | x),
/// z_k ~ q(z | x) (Rainforth et al., "Tighter Variational Bounds are Not Necessarily Better", ICML 2018). Each returns one
/// bound estimate per batch element; differentiate it (reparameterised z_k) and average over the batch to train.
/// </summary>
public static class VariationalBounds
{
    /// <summary>ELBO estimate (1/K) Σ_k log w_k over the last axis: log-weights [..., K] give [...].</summary>
    /// <exception cref="ArgumentException">The log-weights are not floating point, are a scalar, or have K = 0.</exception>
    public static Tensor Elbo(Tensor logWeights)
    {
        Check(logWeights, 1, "elbo");
        return logWeights.Mean(-1);
    }

    /// <summary>IWAE_K estimate log (1/K) Σ_k w_k over the last axis (log-sum-exp, stable for any scale): [..., K] give [...].
    /// With K = 1 it is the ELBO estimate.</summary>
    /// <exception cref="ArgumentException">The log-weights are not floating point, are a scalar, or have K = 0.</exception>
    public static Tensor Iwae(Tensor logWeights)
    {
        Check(logWeights, 1, "iwae");
        return logWeights.LogSumExp(-1) - Math.Log(logWeights.Shape[^1]);
    }

    /// <summary>MIWAE(M, K) estimate (1/M) Σ_m log (1/K) Σ_k w_{m,k}: log-weights [..., M, K] give [...]. M = 1 is IWAE_K,
    /// K = 1 is the ELBO over M samples.</summary>
    /// <exception cref="ArgumentException">The log-weights are not floating point, have rank below 2, or M or K is 0.</exception>
    public static Tensor Miwae(Tensor logWeights)
    {
        Check(logWeights, 2, "miwae");
        return logWeights.LogSumExp(-1).Mean(-1) - Math.Log(logWeights.Shape[^1]);
    }

    /// <summary>CIWAE_β estimate β ELBO + (1 - β) IWAE_K over the same K samples: [..., K] give [...]. β = 1 is the ELBO,
    /// β = 0 is IWAE_K.</summary>
    /// <exception cref="ArgumentOutOfRangeException">β is outside [0, 1].</exception>
    /// <exception cref="ArgumentException">The log-weights are not floating point, are a scalar, or have K = 0.</exception>
    public static Tensor Ciwae(Tensor logWeights, double beta)
    {
        if (!(beta >= 0 && beta <= 1)) throw new ArgumentOutOfRangeException(nameof(beta), beta, "ciwae: beta must be in [0, 1]");
        Check(logWeights, 1, "ciwae");
        return Elbo(logWeights) * beta + Iwae(logWeights) * (1 - beta);
    }

    /// <summary>PIWAE(M, K) targets from log-weights [..., M, K]: IWAE over all M·K samples for the generative network and
    /// MIWAE(M, K) for the inference network, each [...]. With M = 1 both are IWAE_K.</summary>
    /// <exception cref="ArgumentException">The log-weights are not floating point, have rank below 2, or M or K is 0.</exception>
    public static PiwaeTargets Piwae(Tensor logWeights)
    {
        Check(logWeights, 2, "piwae");
        var s = logWeights.Shape;
        var flat = logWeights.Reshape([.. Enumerable.Range(0, s.Rank - 2).Select(i => s[i]), s[^2] * s[^1]]);
        return new PiwaeTargets(Iwae(flat), Miwae(logWeights));
    }

    static void Check(Tensor logWeights, int sampleAxes, string op)
    {
        ArgumentNullException.ThrowIfNull(logWeights);
        if (!logWeights.DType.IsFloating()) throw new ArgumentException($"{op}: log-weights must be floating point, not {logWeights.DType}", nameof(logWeights));
        if (logWeights.Rank < sampleAxes)
            throw new ArgumentException($"{op}: log-weights {logWeights.Shape} need {(sampleAxes == 1 ? "a sample axis [..., K]" : "sample axes [..., M, K]")}", nameof(logWeights));
        for (int i = 1; i <= sampleAxes; i++)
            if (logWeights.Shape[^i] == 0) throw new ArgumentException($"{op}: log-weights {logWeights.Shape} have no samples (an empty sample axis)", nameof(logWeights));
    }
}
