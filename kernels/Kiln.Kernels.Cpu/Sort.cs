namespace Kiln.Kernels.Cpu;

/// <summary>Stable row sort with the permutation (NaN sorts last ascending, first descending, as in NumPy).
/// Reference: <see cref="Reference.SortRow"/>.</summary>
public static class Sort
{
    /// <summary>Sorts each row of a contiguous [rows, len] block into values and Int64 indices.</summary>
    public static void Rows<T>(T[] x, int xOff, int rows, int len, bool descending, T[] values, long[] indices, Comparison<T> compare)
    {
        Strided.Parallel(rows, (long)rows * len * 8, (s, e) =>
        {
            var idx = new int[len];
            for (int r = s; r < e; r++)
            {
                int b = xOff + r * len;
                for (int i = 0; i < len; i++) idx[i] = i;
                // Stable: ties keep their index order, whichever the direction.
                Array.Sort(idx, (p, q) =>
                {
                    int c = compare(x[b + p], x[b + q]);
                    if (descending) c = -c;
                    return c != 0 ? c : p.CompareTo(q);
                });
                for (int i = 0; i < len; i++) { indices[r * len + i] = idx[i]; values[r * len + i] = x[b + idx[i]]; }
            }
        });
    }
}
