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
