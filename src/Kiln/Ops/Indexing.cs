using Kiln.Kernels;

namespace Kiln.Ops;

/// <summary>The indexing family's definitions: gather and scatter-add along the last axis at random indices.</summary>
public static class IndexingOps
{
    /// <summary>Every definition of the family.</summary>
    public static IReadOnlyList<OpDefinition> All { get; } = [new GatherDefinition(scatter: false), new GatherDefinition(scatter: true)];

    sealed class GatherDefinition(bool scatter) : OpDefinition(scatter ? "indexing.scatter_add" : "indexing.gather", "indexing",
        [DType.Float32, DType.Float64, DType.Int32, DType.Int64], new(-3, 3), scatter ? new Tolerance(8) : Tolerance.Exact)
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
