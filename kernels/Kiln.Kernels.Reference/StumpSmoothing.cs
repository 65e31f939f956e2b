namespace Kiln.Kernels;

public static partial class Reference
{
    /// <summary>
    /// The number of values the sum S = sum_g V_g of a stump-sum layout can take: 1 + the sum over groups of the
    /// group's largest region value. Group g (a meta-stump) has the sorted thresholds
    /// <c>groupStarts[g] .. groupStarts[g+1]-1</c> and one more region than thresholds; its region k has the value
    /// <c>values[groupStarts[g] + g + k]</c> (&gt;= 0), so values holds thresholds + groups entries.
    /// </summary>
    /// <exception cref="ArgumentException">The group layout or a value is malformed.</exception>
    public static int StumpSumWidth(ReadOnlySpan<int> groupStarts, ReadOnlySpan<int> values)
    {
        int groups = groupStarts.Length - 1;
        if (groups < 0 || groupStarts[0] != 0 || groupStarts[^1] + groups != values.Length)
            throw new ArgumentException($"stump_sum: groupStarts must start at 0 and end at the threshold count, with values holding thresholds + groups = {values.Length} entries", nameof(groupStarts));
        long width = 1;
        for (int g = 0; g < groups; g++)
        {
            if (groupStarts[g + 1] < groupStarts[g])
                throw new ArgumentException($"stump_sum: groupStarts decreases at group {g} ({groupStarts[g]} then {groupStarts[g + 1]})", nameof(groupStarts));
            int max = 0;
            for (int r = groupStarts[g] + g; r <= groupStarts[g + 1] + g; r++)
            {
                if (values[r] < 0) throw new ArgumentException($"stump_sum: values[{r}] = {values[r]} is negative", nameof(values));
                max = Math.Max(max, values[r]);
            }
            width += max;
        }
        if (width > int.MaxValue / 2) throw new ArgumentException($"stump_sum: the sum's support ({width} values) is too large", nameof(values));
        return (int)width;
    }

    /// <summary>
    /// The probability of region k of group g given upper[t] = P[x' &gt;= threshold t]: upper[k-1] - upper[k] with
    /// upper[-1] = 1 and upper[n] = 0 at the group's ends, clamped at 0 against rounding.
    /// </summary>
    public static double StumpRegionProbability(ReadOnlySpan<double> upper, ReadOnlySpan<int> groupStarts, int g, int k)
    {
        int first = groupStarts[g], n = groupStarts[g + 1] - first;
        double hi = k == 0 ? 1.0 : upper[first + k - 1], lo = k == n ? 0.0 : upper[first + k];
        return Math.Max(0.0, hi - lo);
    }

    /// <summary>
    /// The probability mass function of S = sum_g V_g for independent meta-stumps, where V_g takes the value of region
    /// k with probability <see cref="StumpRegionProbability"/>: a plain dynamic program over the integer sum, one group
    /// at a time, pdf_g[t] = sum_k p_gk pdf_{g-1}[t - G_gk], from pdf_0 = delta_0. <paramref name="upper"/> holds
    /// P[x' &gt;= threshold] for one input. Returns [<see cref="StumpSumWidth"/>].
    /// </summary>
    public static double[] StumpSumPdf(ReadOnlySpan<double> upper, ReadOnlySpan<int> groupStarts, ReadOnlySpan<int> values)
    {
        int width = StumpSumWidth(groupStarts, values);
        var pdf = new double[width];
        pdf[0] = 1;
        int used = 1;
        for (int g = 0; g + 1 < groupStarts.Length; g++)
        {
            var next = new double[width];
            int n = groupStarts[g + 1] - groupStarts[g], max = 0;
            for (int k = 0; k <= n; k++)
            {
                int v = values[groupStarts[g] + g + k];
                double p = StumpRegionProbability(upper, groupStarts, g, k);
                max = Math.Max(max, v);
                for (int t = 0; t < used; t++) next[t + v] += p * pdf[t];
            }
            pdf = next;
            used += max;
        }
        return pdf;
    }

    /// <summary>P[S &gt; cut] for the sum of <see cref="StumpSumPdf"/>: exactly 1 when cut &lt; 0, exactly 0 when cut is at or above the largest value.</summary>
    public static double StumpSumTail(ReadOnlySpan<double> upper, ReadOnlySpan<int> groupStarts, ReadOnlySpan<int> values, long cut)
    {
        var pdf = StumpSumPdf(upper, groupStarts, values);
        if (cut < 0) return 1.0;
        double sum = 0;
        for (long t = cut + 1; t < pdf.Length; t++) sum += pdf[t];
        return sum;
    }
}
