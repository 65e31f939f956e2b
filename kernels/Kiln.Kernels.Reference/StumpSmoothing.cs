namespace Kiln.Kernels;

public static partial class Reference
{
    /// <summary>
    /// The number of values the sum S = sum_g V_g can take: 1 + sum over groups of the largest value in the group.
    /// Group g holds regions <c>groupStarts[g] .. groupStarts[g + 1] - 1</c>; region r adds <c>values[r]</c> (&gt;= 0).
    /// </summary>
    /// <exception cref="ArgumentException">The group layout or a value is malformed.</exception>
    public static int StumpSumWidth(ReadOnlySpan<int> groupStarts, ReadOnlySpan<int> values)
    {
        if (groupStarts.Length == 0 || groupStarts[0] != 0 || groupStarts[^1] != values.Length)
            throw new ArgumentException($"stump_sum: groupStarts must start at 0 and end at the region count {values.Length}", nameof(groupStarts));
        long width = 1;
        for (int g = 0; g + 1 < groupStarts.Length; g++)
        {
            if (groupStarts[g + 1] <= groupStarts[g])
                throw new ArgumentException($"stump_sum: group {g} is empty (groupStarts[{g}] = {groupStarts[g]}, groupStarts[{g + 1}] = {groupStarts[g + 1]})", nameof(groupStarts));
            int max = 0;
            for (int r = groupStarts[g]; r < groupStarts[g + 1]; r++)
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
    /// The probability mass function of S = sum_g V_g for independent V_g, where V_g = values[r] with probability
    /// probs[r] for the regions r of group g: a plain dynamic program over the integer sum, one group at a time,
    /// pdf_g[t] = sum_r probs[r] pdf_{g-1}[t - values[r]], from pdf_0 = delta_0. Returns [<see cref="StumpSumWidth"/>].
    /// </summary>
    public static double[] StumpSumPdf(ReadOnlySpan<double> probs, ReadOnlySpan<int> groupStarts, ReadOnlySpan<int> values)
    {
        int width = StumpSumWidth(groupStarts, values);
        var pdf = new double[width];
        pdf[0] = 1;
        int used = 1;
        for (int g = 0; g + 1 < groupStarts.Length; g++)
        {
            var next = new double[width];
            int max = 0;
            for (int r = groupStarts[g]; r < groupStarts[g + 1]; r++)
            {
                max = Math.Max(max, values[r]);
                for (int t = 0; t < used; t++) next[t + values[r]] += probs[r] * pdf[t];
            }
            pdf = next;
            used += max;
        }
        return pdf;
    }

    /// <summary>P[S &gt; cut] for the sum of <see cref="StumpSumPdf"/>: 1 when cut &lt; 0, 0 when cut is at or above the largest value.</summary>
    public static double StumpSumTail(ReadOnlySpan<double> probs, ReadOnlySpan<int> groupStarts, ReadOnlySpan<int> values, long cut)
    {
        var pdf = StumpSumPdf(probs, groupStarts, values);
        if (cut < 0) return 1.0;
        double sum = 0;
        for (long t = cut + 1; t < pdf.Length; t++) sum += pdf[t];
        return sum;
    }
}
