using Kiln.Kernels;

namespace Kiln.Ops;

/// <summary>The indexing family's definitions: gather and scatter-add along the last axis at random indices, searchsorted, unique and bincount.</summary>
public static class IndexingOps
{
    // Before All: static fields initialize in order.
    // Halves move exactly; scatter-add sums them in Float32 and rounds once.
    static readonly DType[] Numbers = DTypeLists.Numbers;

    /// <summary>Every definition of the family, and the set ops on top of the sort (searchsorted, unique, bincount).</summary>
    public static IReadOnlyList<OpDefinition> All { get; } =
        [new GatherDefinition(scatter: false), new GatherDefinition(scatter: true), new SearchSortedDefinition(), new UniqueDefinition(consecutive: false),
         new UniqueDefinition(consecutive: true), new BincountDefinition()];

    /// <summary>
    /// The values of the case (any layout) searched in a sorted sequence with NaNs and infinities: 1-D for rank-1 cases
    /// and even seeds, else a batch sharing the values' leading dims; left and right, Int64 and Int32.
    /// </summary>
    sealed class SearchSortedDefinition() : OpDefinition("sort.searchsorted", "sort", Numbers, new(-3, 3, double.NaN, double.PositiveInfinity, double.NegativeInfinity), Tolerance.Exact)
    {
        public override int MinRank => 1;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var v = Input(c, dtype, device);
            int m = (int)(c.Seed % 11);
            bool flat = c.Shape.Length == 1 || c.Seed % 2 == 0;
            int[] seqShape = flat ? [m] : [.. c.Shape[..^1], m];
            var seq = Input(seqShape, InputView.Contiguous, c.Seed + 1, dtype, device, Domain).Sort(-1).Values;
            double[] vd = v.Contiguous().ToDoubleArray(), sd = seq.ToDoubleArray();
            int valLen = c.Shape[^1];
            var result = CheckResult.Ok;
            foreach (bool right in new[] { false, true })
            {
                var expected = vd.Select((x, k) => (double)Reference.SearchSorted(sd.AsSpan(flat ? 0 : k / valLen * m, m), x, right)).ToArray();
                var y = Tensor.SearchSorted(seq, v, right, outInt32: right);
                if (y.DType != (right ? DType.Int32 : DType.Int64)) return new CheckResult(double.PositiveInfinity, false, $"{Name}: dtype {y.DType}");
                result = result.Merge(CheckResult.Equal(expected, y.ToDoubleArray(), $"{Name} right={right}"));
            }
            return result;
        }
    }

    /// <summary>unique (sorted) or unique_consecutive of the flattened case, with inverse and counts; NaN twice in every float case.</summary>
    sealed class UniqueDefinition(bool consecutive) : OpDefinition(consecutive ? "sort.unique_consecutive" : "sort.unique", "sort", Numbers,
        new(-3, 3, double.NaN, double.NaN, double.PositiveInfinity), Tolerance.Exact)
    {
        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            var (ev, ei, ec) = Reference.Unique(x.Contiguous().ToDoubleArray(), consecutive);
            var (v, i, n) = consecutive ? x.UniqueConsecutive(returnInverse: true, returnCounts: true) : x.Unique(returnInverse: true, returnCounts: true);
            if (i!.Shape != x.Shape) return new CheckResult(double.PositiveInfinity, false, $"{Name}: inverse has shape {i.Shape}, input {x.Shape}");
            return CheckResult.Equal(ev, v.ToDoubleArray(), Name + " values")
                .Merge(CheckResult.Equal([.. ei.Select(k => (double)k)], i.ToDoubleArray(), Name + " inverse"))
                .Merge(CheckResult.Equal([.. ec.Select(k => (double)k)], n!.ToDoubleArray(), Name + " counts"));
        }
    }

    /// <summary>bincount of a 1-D case of values in [0, 21), plain and with integer-valued Float64 weights (exact sums), with a minlength from the seed.</summary>
    sealed class BincountDefinition() : OpDefinition("indexing.bincount", "indexing", [DType.Int32, DType.Int64], new(0, 3), Tolerance.Exact)
    {
        public override int MinRank => 1;
        public override int MaxRank => 1;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            var w = Input(c, DType.Int32, device, stream: 1).To(DType.Float64);
            int minlength = (int)(c.Seed % 30);
            double[] xd = x.ToDoubleArray(), wd = w.ToDoubleArray();
            int bins = Math.Max(minlength, xd.Length == 0 ? 0 : (int)xd.Max() + 1);
            double[] counts = new double[bins], sums = new double[bins];
            for (int k = 0; k < xd.Length; k++) { counts[(int)xd[k]]++; sums[(int)xd[k]] += wd[k]; }
            var plain = x.Bincount(minlength: minlength);
            var weighted = x.Bincount(w, minlength);
            if (plain.DType != DType.Int64 || weighted.DType != DType.Float64) return new CheckResult(double.PositiveInfinity, false, $"{Name}: dtypes {plain.DType}, {weighted.DType}");
            return CheckResult.Equal(counts, plain.ToDoubleArray(), Name).Merge(CheckResult.Equal(sums, weighted.ToDoubleArray(), Name + " weighted"));
        }
    }

    sealed class GatherDefinition(bool scatter) : OpDefinition(scatter ? "indexing.scatter_add" : "indexing.gather", "indexing",
        Numbers, new(-3, 3), scatter ? new Tolerance(8) : Tolerance.Exact)
    {
        public override int MinRank => 1;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            int len = c.Shape[^1];
            if (x.Numel == 0) return CheckResult.Ok;
            var idx = Tensor.RandInt(x.Shape, 0, len, new Generator(c.Seed)).To(device);
            var xd = x.Contiguous().ToDoubleArray();
            var id = idx.ToArray<long>();
            if (!scatter) return CheckResult.Equal(Reference.Gather(xd, x.Numel / len, len, 1, id, len), x.Gather(-1, idx).ToDoubleArray(), Name);
            var expected = new double[xd.Length];
            for (int q = 0; q < xd.Length; q++) expected[q / len * len + (int)id[q]] += xd[q];
            var y = x.ZerosLike().ScatterAdd(-1, idx, x).ToDoubleArray();
            return Tolerance.Check(expected, y, dtype, c, Name);
        }
    }
}
