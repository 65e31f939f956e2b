namespace Kiln;

public partial class Tensor
{
    /// <summary>
    /// Where each of <paramref name="values"/> would be inserted into <paramref name="sortedSequence"/> to keep it
    /// ascending (PyTorch's searchsorted): the first position whose element is not below the value, or above it when
    /// <paramref name="right"/>. A 1-D sequence serves values of any shape; an N-D sequence is a batch of sequences along
    /// its last axis, and values must share its leading dims. PyTorch's binary search is kept exactly, NaN included: a
    /// NaN value lands at the end, and the NaNs a sort puts last compare as below every value. The result has the values'
    /// shape, Int64 (Int32 with <paramref name="outInt32"/>). <paramref name="sorter"/> (Int64, the sequence's shape)
    /// holds the permutation that sorts an unsorted sequence along its last axis (as <see cref="ArgSort"/> gives it);
    /// the results then index the sorted order.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The sequence is a scalar, or the leading dims, or the sorter's shape, do not match.</exception>
    /// <exception cref="ArgumentException">The dtypes or devices differ, or the sorter is not Int64.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A sorter index is outside the sequence.</exception>
    public static Tensor SearchSorted(Tensor sortedSequence, Tensor values, bool right = false, bool outInt32 = false, Tensor? sorter = null)
    {
        const string op = "searchsorted";
        ArgumentNullException.ThrowIfNull(sortedSequence);
        ArgumentNullException.ThrowIfNull(values);
        sortedSequence.Storage.ThrowIfDisposed(op);
        values.Storage.ThrowIfDisposed(op);
        Check.SameDevice(sortedSequence, values, op, nameof(values));
        Check.SameDType(sortedSequence, values, op, nameof(values));
        var seq = sortedSequence;
        if (seq.Rank == 0) throw new ShapeMismatchException(op, nameof(sortedSequence), "sortedSequence must have at least one dimension, got a scalar");
        if (seq.Rank > 1 && (values.Rank != seq.Rank || !seq.Shape.Dims[..^1].SequenceEqual(values.Shape.Dims[..^1])))
            throw new ShapeMismatchException(op, nameof(values), seq.Shape, values.Shape,
                "an N-D sortedSequence and the values must share every dimension but the last (or give a 1-D sortedSequence)");
        int seqLen = seq.Shape[^1];
        if (sorter is not null)
        {
            sorter.Storage.ThrowIfDisposed(op);
            Check.SameDevice(seq, sorter, op, nameof(sorter));
            if (sorter.DType != DType.Int64) throw new ArgumentException($"{op}: sorter must be Int64, not {sorter.DType}", nameof(sorter));
            if (sorter.Shape != seq.Shape) throw new ShapeMismatchException(op, nameof(sorter), seq.Shape, sorter.Shape, "sorter must have the sortedSequence's shape");
            if (sorter.Numel > 0)
            {
                long lo = sorter.Amin().ToArray<long>()[0], hi = sorter.Amax().ToArray<long>()[0];
                if (lo < 0 || hi >= seqLen)
                    throw new ArgumentOutOfRangeException(nameof(sorter), lo < 0 ? lo : hi, $"{op}: sorter index {(lo < 0 ? lo : hi)} is outside [0, {seqLen}) of the last axis of sortedSequence {seq.Shape}");
            }
            seq = seq.Detach().Gather(seq.Rank - 1, sorter);
        }
        var y = Zeros(values.Shape, DType.Int64, values.Device);
        if (values.Numel > 0 && seqLen > 0)
        {
            int seqRows = seq.Numel / seqLen, valLen = values.Rank == 0 ? 1 : values.Shape[^1];
            values.Backend.SearchSorted(seq.Detach().Contiguous(), seqRows, seqLen, values.Detach().Contiguous(), valLen, right, y);
        }
        return outInt32 ? y.To(DType.Int32) : y;
    }

    /// <summary>
    /// Counts of each value of this 1-D Int32 or Int64 tensor of non-negative integers (PyTorch's bincount): bin i holds
    /// how often i occurs, or the sum of <paramref name="weights"/> (the input's shape) where it occurs. There are
    /// max(input) + 1 bins, at least <paramref name="minlength"/>. Int64 counts; weighted sums are Float32 for Float32
    /// weights and Float64 for any other dtype, as in PyTorch. The number of bins is read back from the device.
    /// </summary>
    /// <exception cref="NotSupportedException">The input is not Int32 or Int64.</exception>
    /// <exception cref="ShapeMismatchException">The input is not 1-D, or the weights do not have its shape.</exception>
    /// <exception cref="ArgumentException">The input holds negative values (the message lists them and where).</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="minlength"/> is negative.</exception>
    public Tensor Bincount(Tensor? weights = null, int minlength = 0)
    {
        const string op = "bincount";
        Storage.ThrowIfDisposed(op);
        if (DType is not (DType.Int32 or DType.Int64)) throw new NotSupportedException($"{op}: input has dtype {DType}; it counts Int32 or Int64 values");
        if (Rank != 1) throw new ShapeMismatchException(op, "input", $"input must be 1-D, got shape {Shape}");
        if (minlength < 0) throw new ArgumentOutOfRangeException(nameof(minlength), minlength, $"{op}: minlength must be non-negative, got {minlength}");
        if (weights is not null)
        {
            weights.Storage.ThrowIfDisposed(op);
            Check.SameDevice(this, weights, op, nameof(weights));
            if (weights.Shape != Shape) throw new ShapeMismatchException(op, nameof(weights), Shape, weights.Shape, "weights must have the input's shape");
        }
        var outType = weights is null ? DType.Int64 : weights.DType == DType.Float32 ? DType.Float32 : DType.Float64;
        var index = Detach().To(DType.Int64);
        long bins = minlength;
        if (Numel > 0)
        {
            long lo = index.Amin().ToArray<long>()[0], hi = index.Amax().ToArray<long>()[0];
            if (lo < 0)
            {
                var v = index.ToArray<long>();
                var bad = Enumerable.Range(0, v.Length).Where(i => v[i] < 0).ToArray();
                throw new ArgumentException($"{op}: input holds {bad.Length} negative value(s), e.g. " +
                    string.Join(", ", bad.Take(5).Select(i => $"{v[i]} at [{i}]")) + "; it counts non-negative integers", "input");
            }
            bins = Math.Max(bins, hi + 1);
            if (bins > int.MaxValue) throw new ArgumentException($"{op}: the largest value {hi} needs {bins} bins, more than a tensor holds", "input");
        }
        var y = Zeros(new Shape((int)bins), outType, Device);
        if (Numel == 0) return y;
        return y.ScatterAdd(0, index, weights is null ? Ones(Shape, DType.Int64, Device) : weights.To(outType));
    }

    /// <summary>
    /// The distinct elements, ascending (PyTorch's unique; <paramref name="sorted"/> false is accepted, and the result is
    /// ascending anyway, one of the orders PyTorch allows). With <paramref name="dim"/> null the input is flattened;
    /// otherwise the distinct slices along <paramref name="dim"/> in lexicographic order. <paramref name="returnInverse"/>
    /// adds where each element (slice) went (Int64, the input's shape, or [size of dim]); <paramref name="returnCounts"/>
    /// how often each distinct one occurs (Int64). NaN equals nothing, as in PyTorch, so every NaN is its own entry, last.
    /// The flattened form sorts on the device; the number of distinct entries is read back from it.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="dim"/> is outside the input's dimensions.</exception>
    public (Tensor Values, Tensor? Inverse, Tensor? Counts) Unique(bool sorted = true, bool returnInverse = false, bool returnCounts = false, int? dim = null)
    {
        Storage.ThrowIfDisposed("unique");
        if (dim is int d) return UniqueSlices(Check.Axis(d, Rank, "unique", nameof(dim)), sort: true, returnInverse, returnCounts);
        var (values, perm) = Detach().Reshape(-1).Sort(0);
        return Runs(values, perm, Shape, returnInverse, returnCounts);
    }

    /// <summary>
    /// Collapses each run of equal consecutive elements into one (PyTorch's unique_consecutive), of the flattened input
    /// with <paramref name="dim"/> null, else of the slices along <paramref name="dim"/>. <paramref name="returnInverse"/>
    /// adds the run each element (slice) belongs to, <paramref name="returnCounts"/> each run's length (both Int64).
    /// NaN equals nothing, so consecutive NaNs stay apart.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="dim"/> is outside the input's dimensions.</exception>
    public (Tensor Values, Tensor? Inverse, Tensor? Counts) UniqueConsecutive(bool returnInverse = false, bool returnCounts = false, int? dim = null)
    {
        Storage.ThrowIfDisposed("unique_consecutive");
        if (dim is int d) return UniqueSlices(Check.Axis(d, Rank, "unique_consecutive", nameof(dim)), sort: false, returnInverse, returnCounts);
        return Runs(Detach().Reshape(-1).Contiguous(), null, Shape, returnInverse, returnCounts);
    }

    // The runs of equal neighbours of 1-D s (the sort of the input by perm, or the input itself when perm is null): one
    // Bool per neighbour pair comes to the host, which decides the result's length.
    static (Tensor Values, Tensor? Inverse, Tensor? Counts) Runs(Tensor s, Tensor? perm, Shape shape, bool returnInverse, bool returnCounts)
    {
        int n = s.Numel;
        var dev = s.Device;
        var group = new long[n];
        var starts = new List<long>();
        if (n > 0)
        {
            var differs = s.Narrow(0, 1, n - 1).Ne(s.Narrow(0, 0, n - 1)).ToArray<bool>();
            starts.Add(0);
            for (int k = 1; k < n; k++)
            {
                if (differs[k - 1]) starts.Add(k);
                group[k] = starts.Count - 1;
            }
        }
        var values = n == 0 ? s.Clone() : s.IndexSelect(0, FromArray(starts.ToArray()).To(dev));
        Tensor? inverse = null, counts = null;
        if (returnInverse)
        {
            var g = FromArray(group).To(dev);
            inverse = (perm is null || n == 0 ? g : Zeros(new Shape(n), DType.Int64, dev).Scatter(0, perm, g)).Reshape(shape.ToArray());
        }
        if (returnCounts) counts = FromArray(starts.Select((st, i) => (i + 1 < starts.Count ? starts[i + 1] : n) - st).ToArray()).To(dev);
        return (values.Detach(), inverse, counts);
    }

    // Distinct (or consecutive-distinct) slices along axis a, compared on the host: lexicographic order with NaN last,
    // and NaN equal to nothing.
    (Tensor Values, Tensor? Inverse, Tensor? Counts) UniqueSlices(int a, bool sort, bool returnInverse, bool returnCounts)
    {
        int n = Rank == 0 ? 1 : Shape[a], rest = n == 0 ? 0 : Numel / n;
        var perm = Enumerable.Range(0, Rank).Where(i => i != a).Prepend(a).ToArray();
        var x = Rank == 0 ? Detach() : Detach().Permute(perm).Contiguous();
        // Int64 compares as long: float64 would merge neighbours above 2^53.
        long[]? li = DType == DType.Int64 ? x.ToArray<long>() : null;
        double[]? ld = li is null ? x.ToDoubleArray() : null;
        int Compare(int p, int q)
        {
            for (int j = 0; j < rest; j++)
            {
                int c = li is not null ? li[p * rest + j].CompareTo(li[q * rest + j]) : NanLast(ld![p * rest + j], ld[q * rest + j]);
                if (c != 0) return c;
            }
            return 0;
        }
        bool Equal(int p, int q)
        {
            for (int j = 0; j < rest; j++)
                if (li is not null ? li[p * rest + j] != li[q * rest + j] : !(ld![p * rest + j] == ld[q * rest + j])) return false;
            return true;
        }
        var order = Enumerable.Range(0, n).ToArray();
        if (sort) order = [.. order.OrderBy(i => i, Comparer<int>.Create(Compare))];
        var starts = new List<long>();
        var inverse = new long[n];
        for (int k = 0; k < n; k++)
        {
            if (k == 0 || !Equal(order[k - 1], order[k])) starts.Add(order[k]);
            inverse[order[k]] = starts.Count - 1;
        }
        var counts = new long[starts.Count];
        foreach (long g in inverse) counts[g]++;
        var values = Rank == 0 ? Detach().Clone() : Detach().IndexSelect(a, FromArray(starts.ToArray()).To(Device));
        return (values, returnInverse ? FromArray(inverse).To(Device) : null, returnCounts ? FromArray(counts).To(Device) : null);
    }

    static int NanLast(double p, double q) => double.IsNaN(p) ? (double.IsNaN(q) ? 0 : 1) : double.IsNaN(q) ? -1 : p.CompareTo(q);
}
