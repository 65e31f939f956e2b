using ILGPU;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// Stable row sorts with the Int64 permutation (NaN last ascending, first descending). Short rows: each element's rank
/// is counted directly (O(len) per thread, fully parallel). Long rows: a bitonic network over (key, index) pairs padded
/// to a power of two; ordering ties by index makes the network's result the stable order.
/// Reference: <see cref="Reference.SortRow"/>.
/// </summary>
public static class Sort
{
    /// <summary>True when (p, i) comes before (q, k) in the stable order.</summary>
    public static bool Before<T, TN>(T p, long i, T q, long k, bool descending) where T : unmanaged where TN : struct, INum<T>
    {
        TN n = default;
        bool pn = n.IsNaN(p), qn = n.IsNaN(q);
        if (pn || qn)
        {
            if (pn && qn) return i < k;
            return descending ? pn : qn;
        }
        if (n.Eq(p, q)) return i < k;
        return descending ? n.Lt(q, p) : n.Lt(p, q);
    }

    /// <summary>One thread per element: its rank in the row is the number of elements before it; writes values and indices there.</summary>
    public static void RankRows<T, TN>(Index1D e, ArrayView<T> x, int xOff, int len, int descending, ArrayView<T> values, ArrayView<long> indices)
        where T : unmanaged where TN : struct, INum<T>
    {
        int r = e / len, i = e % len, b = xOff + r * len;
        T v = x[b + i];
        int rank = 0;
        for (int j = 0; j < len; j++)
            if (Before<T, TN>(x[b + j], j, v, i, descending != 0)) rank++;
        values[r * len + rank] = v;
        indices[r * len + rank] = i;
    }

    /// <summary>Copies rows into [rows, pad] key and index scratch; padding gets index &gt;= len, which sorts last.</summary>
    public static void BitonicInit<T>(Index1D e, ArrayView<T> x, int xOff, int len, int pad, ArrayView<T> keys, ArrayView<long> idx)
        where T : unmanaged
    {
        int r = e / pad, i = e % pad;
        keys[e] = x[xOff + r * len + (i < len ? i : 0)];
        idx[e] = i;
    }

    /// <summary>One compare-exchange step (k, j) of the bitonic network over every row of the scratch.</summary>
    public static void BitonicStep<T, TN>(Index1D e, ArrayView<T> keys, ArrayView<long> idx, int len, int pad, int k, int j, int descending)
        where T : unmanaged where TN : struct, INum<T>
    {
        int r = e / pad, i = e % pad, l = i ^ j;
        if (l <= i) return;
        int a = r * pad + i, b = r * pad + l;
        T ka = keys[a], kb = keys[b];
        long ia = idx[a], ib = idx[b];
        // Padding (index >= len) sorts after every real element.
        bool bFirst = ia >= len ? ib < len || ib < ia : ib < len && Before<T, TN>(kb, ib, ka, ia, descending != 0);
        bool up = (i & k) == 0;
        if (up == bFirst)
        {
            keys[a] = kb; keys[b] = ka;
            idx[a] = ib; idx[b] = ia;
        }
    }

    /// <summary>Copies the first len sorted entries of each scratch row to values and indices.</summary>
    public static void BitonicFinish<T>(Index1D e, ArrayView<T> keys, ArrayView<long> idx, int len, int pad, ArrayView<T> values, ArrayView<long> indices)
        where T : unmanaged
    {
        int r = e / len, i = e % len;
        values[e] = keys[r * pad + i];
        indices[e] = idx[r * pad + i];
    }

    /// <summary>
    /// One thread per value: its insertion point in its row of the ascending sequence (row 0 for all when seqRows is 1)
    /// by PyTorch's binary search (<see cref="Reference.SearchSorted"/>), written as Int64.
    /// </summary>
    public static void SearchSorted<T, TN>(Index1D k, ArrayView<T> seq, int seqOff, int seqRows, int seqLen, ArrayView<T> values, int valOff, int valLen, int right, ArrayView<long> y)
        where T : unmanaged where TN : struct, INum<T>
    {
        TN n = default;
        T v = values[valOff + k];
        int b = seqOff + (seqRows == 1 ? 0 : k / valLen * seqLen), lo = 0, hi = seqLen;
        while (lo < hi)
        {
            int mid = lo + ((hi - lo) >> 1);
            T m = seq[b + mid];
            // Moves right unless m >= v (m > v when right), so a NaN on either side moves right and a NaN value ends up
            // last. Spelled without negating a comparison, which a backend may turn into the opposite ordered one.
            if (n.IsNaN(m) || n.IsNaN(v) || (right != 0 ? n.Le(m, v) : n.Lt(m, v))) lo = mid + 1;
            else hi = mid;
        }
        y[k] = lo;
    }
}

/// <summary>The typed kernels of <see cref="Sort"/> that move elements of storage type <typeparamref name="T"/>.</summary>
public static class SortKernels<T> where T : unmanaged
{
    /// <summary>sort.bitonic_init: pads each row to a power of two.</summary>
    public static readonly Kernel<ArrayView<T>, int, int, int, ArrayView<T>, ArrayView<long>> BitonicInit = new($"sort.bitonic_init.{Dt.Storage<T>()}", Sort.BitonicInit<T>);
    /// <summary>sort.bitonic_finish: drops the padding.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<long>, int, int, ArrayView<T>, ArrayView<long>> BitonicFinish = new($"sort.bitonic_finish.{Dt.Storage<T>()}", Sort.BitonicFinish<T>);
}

/// <summary>The typed comparing kernels of <see cref="Sort"/> for one numeric dtype.</summary>
public static class SortKernels<T, TN> where T : unmanaged where TN : struct, INum<T>
{
    /// <summary>sort.rank_rows: one thread per element counts the elements before it.</summary>
    public static readonly Kernel<ArrayView<T>, int, int, int, ArrayView<T>, ArrayView<long>> RankRows = new($"sort.rank_rows.{Dt.Of<TN>()}", Sort.RankRows<T, TN>);
    /// <summary>sort.bitonic_step: one compare-exchange stage.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<long>, int, int, int, int, int> BitonicStep = new($"sort.bitonic_step.{Dt.Of<TN>()}", Sort.BitonicStep<T, TN>);
    /// <summary>sort.searchsorted: one thread per value, a binary search in its row.</summary>
    public static readonly Kernel<ArrayView<T>, int, int, int, ArrayView<T>, int, int, int, ArrayView<long>> SearchSorted = new($"sort.searchsorted.{Dt.Of<TN>()}", Sort.SearchSorted<T, TN>);
}
