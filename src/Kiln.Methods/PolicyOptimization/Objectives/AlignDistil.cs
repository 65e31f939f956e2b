namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// AlignDistil (Zhang et al., "AlignDistil: Token-Level Language Model Alignment as Adaptive Policy Distillation", 2025):
/// RLHF with the DPO token reward r_t = β₀ log(π_dpo/π_ref) and KL weight β equals token-level distillation
/// β Σ_t KL(π_θ ‖ π*) toward the teacher π* = softmax(z_ref + a (z_dpo − z_ref)), a = β₀/β (Eq. 10–11). The full
/// method uses the contrastive reward β₀ log(π_dpo/π_dpo⁻) of a DPO and a reverse-DPO model with π_dpo as the
/// reference, teacher softmax(z_dpo + a (z_dpo − z_dpo⁻)) (Eq. 14–15), and a per-token a_t = r · TVD(π_dpo, π_dpo⁻) + ε
/// (Eq. 16–17).
/// </summary>
public static class AlignDistil
{
    /// <summary>
    /// The teacher's logits z_base + a (log softmax(z_pos) − log softmax(z_neg)) over the last axis (the same
    /// distribution as the raw-logit form). Plain: base = neg = π_ref, pos = π_dpo (a = 0 gives π_ref, a = 1 gives
    /// π_dpo). Contrastive: base = pos = π_dpo, neg = the reverse-DPO model (a = 0 gives π_dpo).
    /// </summary>
    /// <param name="baseLogits">The distribution being tilted, [..., V].</param>
    /// <param name="positiveLogits">The DPO model's logits, [..., V].</param>
    /// <param name="negativeLogits">The reference (plain) or reverse-DPO (contrastive) logits, [..., V].</param>
    /// <param name="coefficient">a = β₀/β: a scalar, or per token [..., 1] (<see cref="AdaptiveCoefficient"/>).</param>
    /// <exception cref="ArgumentException">The logits' shapes differ.</exception>
    public static Tensor TeacherLogits(Tensor baseLogits, Tensor positiveLogits, Tensor negativeLogits, Tensor coefficient)
    {
        ArgumentNullException.ThrowIfNull(baseLogits); ArgumentNullException.ThrowIfNull(positiveLogits); ArgumentNullException.ThrowIfNull(negativeLogits);
        if (positiveLogits.Shape != baseLogits.Shape || negativeLogits.Shape != baseLogits.Shape)
            throw new ArgumentException($"align-distil: base {baseLogits.Shape}, positive {positiveLogits.Shape} and negative {negativeLogits.Shape} logits must have one shape", nameof(positiveLogits));
        return TokenTerms.Tilt(baseLogits, positiveLogits.LogSoftmax(-1) - negativeLogits.LogSoftmax(-1), coefficient);
    }

    /// <summary>
    /// The token-adaptive extrapolation a_t = upperBound · TVD(softmax(z_dpo), softmax(z_dpo⁻)) + eps, [..., V] → [..., 1]
    /// (so it broadcasts in <see cref="TeacherLogits"/>), in [eps, upperBound + eps]: tokens where the two DPO models
    /// disagree get a stronger teacher. No gradient.
    /// </summary>
    /// <exception cref="ArgumentException">The shapes differ, or upperBound or eps is negative.</exception>
    public static Tensor AdaptiveCoefficient(Tensor dpoLogits, Tensor reverseDpoLogits, double upperBound, double eps = 1e-3)
    {
        ArgumentNullException.ThrowIfNull(dpoLogits); ArgumentNullException.ThrowIfNull(reverseDpoLogits);
        if (reverseDpoLogits.Shape != dpoLogits.Shape)
            throw new ArgumentException($"align-distil: reverse-DPO logits {reverseDpoLogits.Shape} must match the DPO logits {dpoLogits.Shape}", nameof(reverseDpoLogits));
        if (!(upperBound >= 0) || !(eps >= 0))
            throw new ArgumentException($"align-distil: need upperBound ≥ 0 and eps ≥ 0, got upperBound {upperBound}, eps {eps}", nameof(upperBound));
        var tvd = 0.5 * (dpoLogits.Detach().Softmax(-1) - reverseDpoLogits.Detach().Softmax(-1)).Abs().Sum(-1, keepDim: true);
        return upperBound * tvd + eps;
    }

    /// <summary>
    /// Token-level distillation (1/|B|) Σ_x (1/|y|) Σ_t w_t KL(π_θ(·|s_t) ‖ π*(·|s_t)) (Eq. 18–19, the reverse KL, student
    /// first); the teacher is a fixed target (no gradient). [B, T, V] logits, [B, T] mask, optional [B, T] weights
    /// w_t = β_t (β₀/a_t in the adaptive form; 1 when omitted).
    /// </summary>
    /// <exception cref="ArgumentException">The shapes disagree.</exception>
    public static Tensor Loss(Tensor studentLogits, Tensor teacherLogits, Tensor mask, Tensor? tokenWeights = null)
    {
        ArgumentNullException.ThrowIfNull(studentLogits); ArgumentNullException.ThrowIfNull(teacherLogits); ArgumentNullException.ThrowIfNull(mask);
        if (studentLogits.Rank != 3 || teacherLogits.Shape != studentLogits.Shape || mask.Shape != new Shape(studentLogits.Shape[0], studentLogits.Shape[1]))
            throw new ArgumentException($"align-distil: student {studentLogits.Shape} and teacher {teacherLogits.Shape} must be one [B, T, V] shape with mask {mask.Shape} [B, T]", nameof(teacherLogits));
        if (tokenWeights is not null && tokenWeights.Shape != mask.Shape)
            throw new ArgumentException($"align-distil: tokenWeights {tokenWeights.Shape} must match the mask {mask.Shape}", nameof(tokenWeights));
        var student = studentLogits.LogSoftmax(-1);
        var kl = (student.Exp() * (student - teacherLogits.Detach().LogSoftmax(-1))).Sum(-1);
        return PolicyMath.Aggregate(tokenWeights is null ? kl : kl * tokenWeights, mask, TokenAggregation.SequenceMeanTokenMean);
    }
}
