namespace Kiln.Kernels.Cpu;

/// <summary>
/// Gather, scatter and scatter-add along one axis of contiguous tensors viewed as [outer, axisLen, inner].
/// Reference: <see cref="Reference.Gather"/>.
/// </summary>
public static class Indexing
{
    /// <summary>
    /// y[o, i, n] = x[o, index[o, i, n], n]; x is [outer, xAxis, inner], index and y are [outer, yAxis, inner], contiguous.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An index lies outside [0, xAxis).</exception>
    public static void Gather<T>(T[] x, int xOff, int outer, int xAxis, int inner, long[] index, int iOff, int yAxis, T[] y)
    {
        Strided.Parallel(outer, (long)outer * yAxis * inner, (s, e) =>
        {
            for (int o = s; o < e; o++)
                for (int i = 0; i < yAxis; i++)
                    for (int n = 0; n < inner; n++)
                    {
                        int q = (o * yAxis + i) * inner + n;
                        long j = index[iOff + q];
                        if ((ulong)j >= (ulong)xAxis)
                            throw new ArgumentOutOfRangeException("index", j, $"gather: index {j} is out of range for an axis of size {xAxis}");
                        y[q] = x[xOff + (o * xAxis + (int)j) * inner + n];
                    }
        });
    }

    /// <summary>y[o, index[o, i, n], n] (+)= src[o, i, n]; y is [outer, yAxis, inner], index and src [outer, srcAxis, inner].</summary>
    public static void Scatter<T>(T[] y, int yOff, int outer, int yAxis, int inner, long[] index, int iOff, T[] src, int sOff, int srcAxis, Func<T, T, T>? combine)
    {
        // Sequential: scatter-add of colliding indices must not race, and the write order is deterministic.
        for (int o = 0; o < outer; o++)
            for (int i = 0; i < srcAxis; i++)
                for (int n = 0; n < inner; n++)
                {
                    int q = (o * srcAxis + i) * inner + n;
                    long j = index[iOff + q];
                    if ((ulong)j >= (ulong)yAxis)
                        throw new ArgumentOutOfRangeException("index", j, $"scatter: index {j} is out of range for an axis of size {yAxis}");
                    int d = yOff + (o * yAxis + (int)j) * inner + n;
                    y[d] = combine is null ? src[sOff + q] : combine(y[d], src[sOff + q]);
                }
    }
}
