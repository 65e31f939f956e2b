namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// Credit assignment from per-step (process) rewards r_t [B, T] under a mask: the returns the process-reward rules
/// define (sum-form return-to-go, PURE's min-form) and the group-baselined token advantages they feed. Every masked
/// token is a step; off-mask entries are ignored and come back as 0.
/// </summary>
public static class ProcessReturns
{
    /// <summary>The sum-form return-to-go G_t = Σ_{t' ≥ t} m_t' r_t' on masked tokens, [B, T].</summary>
    /// <exception cref="ArgumentException">The shapes differ or are not [B, T].</exception>
    public static Tensor ReturnToGo(Tensor tokenRewards, Tensor mask) => Map(tokenRewards, mask, steps =>
    {
        var g = new double[steps.Length];
        double acc = 0;
        for (int k = steps.Length - 1; k >= 0; k--) g[k] = acc += steps[k];
        return g;
    });

    /// <summary>
    /// PURE's min-form return G_t = min_{t' ≥ t} r_t' on masked tokens, [B, T]; with <paramref name="temperature"/> τ &gt; 0
    /// the authors' soft form Σ_{t' ≥ t} softmax_{t' ≥ t}(−r / τ)_t' r_t', which lies in [min, mean] of the suffix and
    /// tends to the min as τ → 0.
    /// </summary>
    /// <exception cref="ArgumentException">The shapes differ or are not [B, T].</exception>
    /// <exception cref="ArgumentOutOfRangeException">τ is negative or not finite.</exception>
    public static Tensor MinForm(Tensor tokenRewards, Tensor mask, double temperature = 0)
    {
        GroupHost.InRange(temperature, 0, double.MaxValue, nameof(temperature));
        return Map(tokenRewards, mask, steps =>
        {
            var g = new double[steps.Length];
            for (int k = 0; k < steps.Length; k++)
            {
                var suffix = steps.AsSpan(k);
                double min = double.PositiveInfinity;
                foreach (double x in suffix) min = Math.Min(min, x);
                if (temperature == 0) { g[k] = min; continue; }
                // Weights exp(−(r − min)/τ) ≤ 1: the minimum's weight is 1, so the sum never underflows to 0.
                double num = 0, den = 0;
                foreach (double x in suffix) { double w = Math.Exp(-(x - min) / temperature); num += w * x; den += w; }
                g[k] = num / den;
            }
            return g;
        });
    }

    /// <summary>
    /// Token advantages from returns [B, T] and outcome rewards [B]: A_it = m_it (G_it + r_i − mean_{j in i's group}(V_j + r_j)),
    /// with V_j = G_j at its first masked token (0 for an empty completion), so the baseline is the group's mean total return.
    /// </summary>
    /// <exception cref="ArgumentException">Shapes disagree with each other or with the group size.</exception>
    public static Tensor TokenAdvantages(Tensor returns, Tensor outcome, Tensor mask, int groupSize)
    {
        var (g, m, b, t) = Host(returns, mask);
        var r = GroupHost.Rows(outcome, groupSize, nameof(outcome));
        if (r.Length != b) throw new ArgumentException($"process returns: outcome {outcome.Shape} must be [{b}]", nameof(outcome));
        var total = new double[b];
        for (int i = 0; i < b; i++)
        {
            int first = Enumerable.Range(0, t).FirstOrDefault(s => m[i * t + s] != 0, -1);
            total[i] = (first < 0 ? 0 : g[i * t + first]) + r[i];
        }
        var a = new double[b * t];
        for (int i = 0; i < b; i++)
        {
            int start = i / groupSize * groupSize;
            double baseline = total.AsSpan(start, groupSize).ToArray().Average();
            for (int s = 0; s < t; s++) a[i * t + s] = m[i * t + s] * (g[i * t + s] + r[i] - baseline);
        }
        return GroupHost.ToTensor(a, returns, b, t);
    }

    /// <summary>A verifiable step reward for the generated tasks: 1 where the completion's token matches the answer's token at that position, else 0.</summary>
    public static double[] PrefixMatch(string answer, string completion)
    {
        ArgumentNullException.ThrowIfNull(answer); ArgumentNullException.ThrowIfNull(completion);
        return [.. completion.Select((c, k) => k < answer.Length && answer[k] == c ? 1.0 : 0.0)];
    }

    /// <summary>Applies <paramref name="rule"/> to each row's masked steps in order and scatters the result back (0 off the mask).</summary>
    internal static Tensor Map(Tensor tokenRewards, Tensor mask, Func<double[], double[]> rule)
    {
        var (r, m, b, t) = Host(tokenRewards, mask);
        var output = new double[b * t];
        for (int i = 0; i < b; i++)
        {
            var at = Enumerable.Range(i * t, t).Where(k => m[k] != 0).ToArray();
            var mapped = rule([.. at.Select(k => r[k])]);
            for (int k = 0; k < at.Length; k++) output[at[k]] = mapped[k];
        }
        return GroupHost.ToTensor(output, tokenRewards, b, t);
    }

    static (double[] Values, double[] Mask, int B, int T) Host(Tensor values, Tensor mask)
    {
        ArgumentNullException.ThrowIfNull(values); ArgumentNullException.ThrowIfNull(mask);
        if (values.Rank != 2 || values.Shape != mask.Shape)
            throw new ArgumentException($"process returns: rewards {values.Shape} and mask {mask.Shape} must both be [B, T]", nameof(values));
        return (values.ToDoubleArray(), mask.ToDoubleArray(), values.Shape[0], values.Shape[1]);
    }

    /// <summary>The batch's process rewards, or an exception saying the objective needs them.</summary>
    internal static Tensor Required(PolicyBatch batch, string objective) =>
        batch.TokenRewards?.Detach() ?? throw new ArgumentException(
            $"{objective}: needs per-step process rewards in PolicyBatch.TokenRewards; the batch has none (e.g. fill them with ProcessReturns.PrefixMatch)", nameof(batch));
}
