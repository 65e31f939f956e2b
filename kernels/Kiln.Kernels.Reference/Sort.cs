namespace Kiln.Kernels;

public static partial class Reference
{
    /// <summary>Stable sort of one row (NaN last ascending, first descending) and its permutation, by insertion.</summary>
    public static (double[] Values, long[] Indices) SortRow(ReadOnlySpan<double> x, bool descending)
    {
        int n = x.Length;
        var idx = new long[n];
        for (int i = 0; i < n; i++) idx[i] = i;
        var xs = x.ToArray();
        bool Before(double p, double q)
        {
            if (double.IsNaN(p) || double.IsNaN(q)) return descending ? double.IsNaN(p) && !double.IsNaN(q) : !double.IsNaN(p) && double.IsNaN(q);
            return descending ? p > q : p < q;
        }
        for (int i = 1; i < n; i++)
        {
            long cur = idx[i]; int j = i - 1;
            while (j >= 0 && Before(xs[cur], xs[idx[j]])) { idx[j + 1] = idx[j]; j--; }
            idx[j + 1] = cur;
        }
        var v = new double[n];
        for (int i = 0; i < n; i++) v[i] = xs[idx[i]];
        return (v, idx);
    }
}

public static partial class Reference
{
    /// <summary>
    /// PyTorch's searchsorted of <paramref name="v"/> in ascending <paramref name="seq"/>: the first position whose element
    /// is not below <paramref name="v"/> (above it when <paramref name="right"/>), by PyTorch's binary search, which moves
    /// right unless the middle element compares at least (above) <paramref name="v"/>, so a NaN value lands at the end.
    /// </summary>
    public static long SearchSorted(ReadOnlySpan<double> seq, double v, bool right)
    {
        int lo = 0, hi = seq.Length;
        while (lo < hi)
        {
            int mid = lo + ((hi - lo) >> 1);
            if (right ? !(seq[mid] > v) : !(seq[mid] >= v)) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }
}

public static partial class Reference
{
    /// <summary>
    /// The distinct values of <paramref name="x"/> in ascending order (NaN last, each NaN distinct, since NaN equals
    /// nothing), or with <paramref name="consecutive"/> the runs of equal neighbours in order; with the group of each
    /// element and each group's size.
    /// </summary>
    public static (double[] Values, long[] Inverse, long[] Counts) Unique(ReadOnlySpan<double> x, bool consecutive)
    {
        var (s, perm) = consecutive ? (x.ToArray(), Enumerable.Range(0, x.Length).Select(i => (long)i).ToArray()) : SortRow(x, false);
        var values = new List<double>();
        var counts = new List<long>();
        var inverse = new long[x.Length];
        for (int k = 0; k < s.Length; k++)
        {
            if (k == 0 || !(s[k] == s[k - 1])) { values.Add(s[k]); counts.Add(0); }
            counts[^1]++;
            inverse[perm[k]] = values.Count - 1;
        }
        return ([.. values], inverse, [.. counts]);
    }
}
