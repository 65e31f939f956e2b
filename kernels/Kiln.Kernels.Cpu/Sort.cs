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

    /// <summary>
    /// y[r, j] = the insertion point of values[r, j] in row r of the ascending [rows, seqLen] block (row 0 for every r when
    /// <paramref name="seqRows"/> is 1), by PyTorch's binary search (<see cref="Reference.SearchSorted"/>).
    /// </summary>
    public static void SearchSorted<T>(T[] seq, int seqOff, int seqRows, int seqLen, T[] values, int valOff, int count, int valLen, bool right, long[] y)
        where T : unmanaged, System.Numerics.INumber<T>
    {
        Strided.Parallel(count, (long)count * (32 - System.Numerics.BitOperations.LeadingZeroCount((uint)seqLen) + 1), (s, e) =>
        {
            for (int k = s; k < e; k++)
            {
                T v = values[valOff + k];
                int b = seqOff + (seqRows == 1 ? 0 : k / valLen * seqLen), lo = 0, hi = seqLen;
                while (lo < hi)
                {
                    int mid = lo + ((hi - lo) >> 1);
                    if (right ? !(seq[b + mid] > v) : !(seq[b + mid] >= v)) lo = mid + 1;
                    else hi = mid;
                }
                y[k] = lo;
            }
        });
    }
}
