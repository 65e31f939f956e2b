namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// AlignDistil (Zhang et al., "AlignDistil: Token-Level Language Model Alignment as Adaptive Policy Distillation", 2025):
/// RLHF with the DPO token reward r_t = β₀ log(π_dpo/π_ref) and KL weight β is solved per token by the teacher
/// softmax(z_ref + a (log π_dpo − log π_ref)), a = β₀/β; the contrastive form uses a DPO and a reverse-DPO model,
/// softmax(z_base + a (log π_dpo − log π_rdpo)). The policy is then distilled toward the teacher token by token.
/// </summary>
public static class AlignDistil
{
    /// <summary>
    /// The teacher's logits z_base + a (log softmax(z_pos) − log softmax(z_neg)) over the last axis. The plain form
    /// passes the reference logits as both <paramref name="baseLogits"/> and <paramref name="negativeLogits"/>
    /// (a = 0 gives π_ref, a = 1 gives π_dpo); the contrastive form passes the DPO and reverse-DPO logits.
    /// </summary>
    /// <param name="baseLogits">The distribution being tilted, [..., V].</param>
    /// <param name="positiveLogits">The DPO model's logits, [..., V].</param>
    /// <param name="negativeLogits">The reference (plain) or reverse-DPO (contrastive) logits, [..., V].</param>
    /// <param name="coefficient">a = β₀/β: a scalar, or per token [..., 1] (the adaptive a_t).</param>
    /// <exception cref="ArgumentException">The logits' shapes differ.</exception>
    public static Tensor TeacherLogits(Tensor baseLogits, Tensor positiveLogits, Tensor negativeLogits, Tensor coefficient)
    {
        ArgumentNullException.ThrowIfNull(baseLogits); ArgumentNullException.ThrowIfNull(positiveLogits); ArgumentNullException.ThrowIfNull(negativeLogits);
        if (positiveLogits.Shape != baseLogits.Shape || negativeLogits.Shape != baseLogits.Shape)
            throw new ArgumentException($"align-distil: base {baseLogits.Shape}, positive {positiveLogits.Shape} and negative {negativeLogits.Shape} logits must have one shape", nameof(positiveLogits));
        return TokenTerms.Tilt(baseLogits, positiveLogits.LogSoftmax(-1) - negativeLogits.LogSoftmax(-1), coefficient);
    }

    /// <summary>
    /// Token-level distillation KL(softmax(teacher) ‖ softmax(student)) averaged over the completion tokens; the
    /// teacher is a fixed target (no gradient). [B, T, V] logits, [B, T] mask.
    /// </summary>
    /// <exception cref="ArgumentException">The shapes disagree.</exception>
    public static Tensor Loss(Tensor studentLogits, Tensor teacherLogits, Tensor mask)
    {
        ArgumentNullException.ThrowIfNull(studentLogits); ArgumentNullException.ThrowIfNull(teacherLogits); ArgumentNullException.ThrowIfNull(mask);
        if (studentLogits.Rank != 3 || teacherLogits.Shape != studentLogits.Shape || mask.Shape != new Shape(studentLogits.Shape[0], studentLogits.Shape[1]))
            throw new ArgumentException($"align-distil: student {studentLogits.Shape} and teacher {teacherLogits.Shape} must be one [B, T, V] shape with mask {mask.Shape} [B, T]", nameof(teacherLogits));
        var teacher = teacherLogits.Detach().LogSoftmax(-1);
        var kl = (teacher.Exp() * (teacher - studentLogits.LogSoftmax(-1))).Sum(-1);
        return PolicyMath.Aggregate(kl, mask, TokenAggregation.TokenMean);
    }
}
