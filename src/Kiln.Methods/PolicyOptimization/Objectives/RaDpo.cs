namespace Kiln.Methods.PolicyOptimization;

/// <summary>The risk measure Ra-DPO applies, token by token, to the log-ratio log π_ref(z) − log π_θ(z) under z ~ π_ref.</summary>
public enum RiskMeasure
{
    /// <summary>The plain expectation (risk-neutral): the token term is KL(π_ref ‖ π_θ) and Ra-DPO is token-level DPO (TDPO).</summary>
    Expectation,
    /// <summary>The entropic risk (1/γ) log E[exp(γ X)] with γ = the risk level (γ → 0 gives the expectation; γ &gt; 0 is risk-averse).</summary>
    Entropic,
    /// <summary>The upper-tail CVaR_α: the mean of X over its worst α of probability mass, α = the risk level in (0, 1] (1 gives the expectation).</summary>
    ConditionalValueAtRisk,
}

/// <summary>One side of a preference pair in token form: the full next-token log-probs of the policy and the reference and the tokens taken.</summary>
/// <param name="LogProbs">log π_θ(· | s_t), [B, T, V], differentiable.</param>
/// <param name="RefLogProbs">log π_ref(· | s_t), [B, T, V].</param>
/// <param name="Tokens">The response tokens y_t, [B, T], Int64.</param>
/// <param name="Mask">1 on response tokens, 0 on padding, [B, T].</param>
public sealed record PreferenceSide(Tensor LogProbs, Tensor RefLogProbs, Tensor Tokens, Tensor Mask)
{
    /// <summary>Checks the four shapes against each other.</summary>
    /// <exception cref="ArgumentException">A shape disagrees, naming the field.</exception>
    public void Validate(string side)
    {
        if (LogProbs.Rank != 3) throw new ArgumentException($"{side}: LogProbs must be [B, T, V], got {LogProbs.Shape}", nameof(LogProbs));
        if (RefLogProbs.Shape != LogProbs.Shape) throw new ArgumentException($"{side}: RefLogProbs {RefLogProbs.Shape} must match LogProbs {LogProbs.Shape}", nameof(RefLogProbs));
        var bt = new Shape(LogProbs.Shape[0], LogProbs.Shape[1]);
        if (Tokens.Shape != bt || Tokens.DType != DType.Int64) throw new ArgumentException($"{side}: Tokens must be Int64 {bt}, got {Tokens.DType} {Tokens.Shape}", nameof(Tokens));
        if (Mask.Shape != bt) throw new ArgumentException($"{side}: Mask must be {bt}, got {Mask.Shape}", nameof(Mask));
    }

    /// <summary>Σ_t log π_θ(y_t)/π_ref(y_t) over the response, [B].</summary>
    public Tensor SequenceLogRatio()
    {
        var index = Tokens.Unsqueeze(-1);
        return PolicyMath.MaskedSum((LogProbs.Gather(-1, index) - RefLogProbs.Gather(-1, index)).Squeeze(-1), Mask);
    }
}

/// <summary>
/// Ra-DPO ("Risk-aware Direct Preference Optimization under Nested Risk Measure", 2025) in token-level
/// Bradley–Terry form: loss −log σ(u − α δ) with u = β Σ_t log(π_θ/π_ref)(y_t) over the chosen minus the rejected
/// response and δ = β D(y_l) − sg(β D(y_w)), where D(y) = Σ_t ρ_{z~π_ref(·|s_t)}[log π_ref(z|s_t) − log π_θ(z|s_t)] is
/// the sequential risk ratio. With <see cref="RiskMeasure.Expectation"/> D is the sequential KL and the loss is TDPO₂.
/// </summary>
public static class RaDpo
{
    /// <summary>The per-token risk of X = log π_ref − log π_θ under π_ref, over the last axis: [..., V] → [...].</summary>
    /// <exception cref="ArgumentException">Bad shapes, or a non-positive level for the entropic risk.</exception>
    public static Tensor TokenRisk(Tensor logProbs, Tensor refLogProbs, RiskMeasure risk, double riskLevel = 1)
    {
        ArgumentNullException.ThrowIfNull(logProbs); ArgumentNullException.ThrowIfNull(refLogProbs);
        if (logProbs.Shape != refLogProbs.Shape) throw new ArgumentException($"ra-dpo: refLogProbs {refLogProbs.Shape} must match logProbs {logProbs.Shape}", nameof(refLogProbs));
        var x = refLogProbs - logProbs;
        return risk switch
        {
            RiskMeasure.Expectation => (refLogProbs.Exp() * x).Sum(-1),
            RiskMeasure.Entropic => riskLevel > 0 && double.IsFinite(riskLevel)
                ? (refLogProbs + riskLevel * x).LogSumExp(-1) / riskLevel
                : throw new ArgumentException($"ra-dpo: the entropic risk level γ must be positive and finite, got {riskLevel}", nameof(riskLevel)),
            RiskMeasure.ConditionalValueAtRisk => riskLevel > 0 && riskLevel <= 1
                ? UpperCvar(x, refLogProbs.Exp(), riskLevel)
                : throw new ArgumentException($"ra-dpo: the CVaR level α must lie in (0, 1], got {riskLevel}", nameof(riskLevel)),
            _ => throw new ArgumentOutOfRangeException(nameof(risk), risk, "ra-dpo: unknown risk measure"),
        };
    }

    // The tail average: the largest values of X take their full probability until α of mass is reached, the boundary
    // value the remainder. The fractions taken are piecewise constant in X, so they enter as host constants and the
    // gradient is exact wherever the order of X is strict.
    static Tensor UpperCvar(Tensor x, Tensor p, double alpha)
    {
        int v = x.Shape[-1];
        var xs = x.Detach().ToDoubleArray(); var ps = p.Detach().ToDoubleArray();
        var taken = new double[xs.Length];
        for (int r = 0; v > 0 && r < xs.Length / v; r++)
        {
            double mass = 0;
            foreach (int k in Enumerable.Range(r * v, v).OrderByDescending(k => xs[k]))
            {
                if (mass >= alpha) break;
                if (ps[k] <= 0) continue;
                double take = Math.Min(ps[k], alpha - mass);
                taken[k] = take / ps[k];
                mass += take;
            }
        }
        var fraction = Tensor.FromArray(taken, x.Shape).To(x.DType).To(x.Device);
        return (fraction * p * x).Sum(-1) / alpha;
    }

    /// <summary>The per-pair loss −log σ(u − α δ), [B] (mean it for the batch loss).</summary>
    /// <param name="chosen">The preferred responses y_w.</param>
    /// <param name="rejected">The dispreferred responses y_l (same B).</param>
    /// <param name="beta">β &gt; 0, the deviation weight (default 0.1).</param>
    /// <param name="alpha">α ≥ 0, the weight of the risk-ratio term δ (default 0.5).</param>
    /// <param name="risk">The risk measure (default the expectation, i.e. TDPO₂).</param>
    /// <param name="riskLevel">The risk measure's level (γ of the entropic risk, α of the CVaR).</param>
    /// <exception cref="ArgumentException">Shapes disagree or a weight is out of range.</exception>
    public static Tensor Loss(PreferenceSide chosen, PreferenceSide rejected, double beta = 0.1, double alpha = 0.5,
        RiskMeasure risk = RiskMeasure.Expectation, double riskLevel = 1)
    {
        ArgumentNullException.ThrowIfNull(chosen); ArgumentNullException.ThrowIfNull(rejected);
        chosen.Validate(nameof(chosen)); rejected.Validate(nameof(rejected));
        if (chosen.LogProbs.Shape[0] != rejected.LogProbs.Shape[0])
            throw new ArgumentException($"ra-dpo: chosen has {chosen.LogProbs.Shape[0]} pairs, rejected {rejected.LogProbs.Shape[0]}", nameof(rejected));
        if (!(beta > 0) || !(alpha >= 0)) throw new ArgumentException($"ra-dpo: need beta > 0 and alpha ≥ 0, got beta {beta}, alpha {alpha}", nameof(beta));
        var u = beta * (chosen.SequenceLogRatio() - rejected.SequenceLogRatio());
        var dW = PolicyMath.MaskedSum(TokenRisk(chosen.LogProbs, chosen.RefLogProbs, risk, riskLevel), chosen.Mask);
        var dL = PolicyMath.MaskedSum(TokenRisk(rejected.LogProbs, rejected.RefLogProbs, risk, riskLevel), rejected.Mask);
        return TokenTerms.PairwiseLogistic(u - alpha * beta * (dL - dW.Detach()));
    }
}
