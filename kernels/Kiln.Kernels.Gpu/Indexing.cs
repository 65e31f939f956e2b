using ILGPU;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// Gather, scatter and scatter-add along one axis of contiguous tensors viewed as [outer, axis, inner]. An index outside
/// the axis is skipped and reported in err (err[0] = 1, err[1] = the index), which the host turns into an exception.
/// Reference: <see cref="Reference.Gather"/>.
/// </summary>
public static class Indexing
{
    /// <summary>Sizes of a gather or scatter: x (or y) is [Outer, Axis, Inner], index is [Outer, IndexAxis, Inner].</summary>
    public struct Dims
    {
        /// <summary>Product of the dims before the axis.</summary>
        public int Outer;
        /// <summary>The axis extent of the indexed tensor.</summary>
        public int Axis;
        /// <summary>Product of the dims after the axis.</summary>
        public int Inner;
        /// <summary>The axis extent of the index (and of y for gather, src for scatter).</summary>
        public int IndexAxis;
        /// <summary>Offsets of the indexed tensor, the index and src.</summary>
        public int XOff, IOff, SOff;
    }

    /// <summary>y[o, i, n] = x[o, index[o, i, n], n]; one thread per element of y.</summary>
    public static void Gather<T>(Index1D q, ArrayView<T> x, ArrayView<long> index, ArrayView<T> y, Dims d, ArrayView<long> err) where T : unmanaged
    {
        int n = q % d.Inner, o = q / (d.IndexAxis * d.Inner);
        long j = index[d.IOff + q];
        if (j < 0 || j >= d.Axis) { err[0] = 1; err[1] = j; return; }
        y[q] = x[d.XOff + (o * d.Axis + (int)j) * d.Inner + n];
    }

    /// <summary>
    /// y[o, index[o, i, n], n] = src[o, i, n] (+= when add != 0). One thread per (o, n) walks i in order, so colliding
    /// indices never race and the result (last write wins, sums in index order) matches the CPU exactly.
    /// </summary>
    public static void Scatter<T, TN>(Index1D p, ArrayView<T> y, ArrayView<long> index, ArrayView<T> src, Dims d, int add, ArrayView<long> err)
        where T : unmanaged where TN : struct, INum<T>
    {
        TN num = default;
        int o = p / d.Inner, n = p % d.Inner;
        for (int i = 0; i < d.IndexAxis; i++)
        {
            int q = (o * d.IndexAxis + i) * d.Inner + n;
            long j = index[d.IOff + q];
            if (j < 0 || j >= d.Axis) { err[0] = 1; err[1] = j; continue; }
            int t = d.XOff + (o * d.Axis + (int)j) * d.Inner + n;
            y[t] = add != 0 ? num.Add(y[t], src[d.SOff + q]) : src[d.SOff + q];
        }
    }
}

/// <summary>The typed gather kernel of <see cref="Indexing"/> for storage type <typeparamref name="T"/>.</summary>
public static class IndexingKernels<T> where T : unmanaged
{
    /// <summary>indexing.gather: y = x along an axis at index; err records an out-of-range index.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<long>, ArrayView<T>, Indexing.Dims, ArrayView<long>> Gather = new($"indexing.gather.{Dt.Storage<T>()}", Indexing.Gather<T>);
}

/// <summary>The typed scatter kernel of <see cref="Indexing"/> for one dtype.</summary>
public static class IndexingKernels<T, TN> where T : unmanaged where TN : struct, INum<T>
{
    /// <summary>indexing.scatter: y at index = src (or += when add is 1); err records an out-of-range index.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<long>, ArrayView<T>, Indexing.Dims, int, ArrayView<long>> Scatter =
        new($"indexing.scatter.{Dt.Of<TN>()}", Indexing.Scatter<T, TN>);
}
