namespace Kiln.Kernels;

public static partial class Reference
{
    // The movement ops on row-major x of shape `shape`: each output element is found from its own multi-index by
    // PyTorch's definition, independently of how the ops are built (views, strided copies, masks, gathers).

    static int[] Unravel(int flat, int[] shape)
    {
        var idx = new int[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--) { idx[d] = flat % shape[d]; flat /= shape[d]; }
        return idx;
    }

    static int Ravel(int[] idx, int[] shape)
    {
        int flat = 0;
        for (int d = 0; d < shape.Length; d++) flat = flat * shape[d] + idx[d];
        return flat;
    }

    static int Count(int[] shape) => shape.Aggregate(1, (a, b) => a * b);

    static (double[] Values, int[] Shape) Map(int[] outShape, Func<int[], double> at)
    {
        var y = new double[Count(outShape)];
        for (int f = 0; f < y.Length; f++) y[f] = at(Unravel(f, outShape));
        return (y, outShape);
    }

    /// <summary>tril (upper false: keep j - i &lt;= k) or triu (upper: keep j - i &gt;= k) over the last two dims.</summary>
    public static (double[] Values, int[] Shape) Triangle(double[] x, int[] shape, int k, bool upper) =>
        Map(shape, i =>
        {
            long d = (long)i[^1] - i[^2];
            return (upper ? d >= k : d <= k) ? x[Ravel(i, shape)] : 0;
        });

    /// <summary>y[i] = x[i with i[d] replaced by n_d - 1 - i[d] for d in dims].</summary>
    public static (double[] Values, int[] Shape) Flip(double[] x, int[] shape, int[] dims) =>
        Map(shape, i =>
        {
            var s = (int[])i.Clone();
            foreach (int d in dims) s[d] = shape[d] - 1 - i[d];
            return x[Ravel(s, shape)];
        });

    /// <summary>y[i] = x[i with i[d] replaced by (i[d] - shift) mod n_d]; shifts of a repeated dim add up. No dims: the flattened roll.</summary>
    public static (double[] Values, int[] Shape) Roll(double[] x, int[] shape, int[] shifts, int[] dims)
    {
        if (dims.Length == 0)
        {
            int n = x.Length;
            var flat = new double[n];
            for (int f = 0; f < n; f++) flat[f] = x[(int)(((f - (long)shifts[0]) % n + n) % n)];
            return (flat, shape);
        }
        return Map(shape, i =>
        {
            var s = (int[])i.Clone();
            for (int k = 0; k < dims.Length; k++)
            {
                int d = dims[k];
                s[d] = (int)(((s[d] - (long)shifts[k]) % shape[d] + shape[d]) % shape[d]);
            }
            return x[Ravel(s, shape)];
        });
    }

    /// <summary>Tensor.repeat: x viewed with leading 1s to repeats.Length dims, y[i] = x[i mod size].</summary>
    public static (double[] Values, int[] Shape) Repeat(double[] x, int[] shape, int[] repeats)
    {
        int lead = repeats.Length - shape.Length;
        var src = Enumerable.Repeat(1, lead).Concat(shape).ToArray();
        return Map(src.Select((d, k) => d * repeats[k]).ToArray(), i => x[Ravel(i.Select((v, k) => v % src[k]).ToArray(), src)]);
    }

    /// <summary>repeat_interleave along dim with one count per element: output position p along dim reads the element whose run covers p.</summary>
    public static (double[] Values, int[] Shape) RepeatInterleave(double[] x, int[] shape, long[] counts, int dim)
    {
        var owner = new List<int>();
        for (int j = 0; j < shape[dim]; j++)
            for (long c = 0; c < counts[j]; c++) owner.Add(j);
        var outShape = (int[])shape.Clone(); outShape[dim] = owner.Count;
        return Map(outShape, i =>
        {
            var s = (int[])i.Clone(); s[dim] = owner[i[dim]];
            return x[Ravel(s, shape)];
        });
    }

    /// <summary>diagonal: the other dims in order then k, y[..., k] = x[... row k (+ max(0, -offset)) of dim1, column k (+ max(0, offset)) of dim2 ...].</summary>
    public static (double[] Values, int[] Shape) Diagonal(double[] x, int[] shape, int offset, int dim1, int dim2)
    {
        int len = 0;
        while (len - Math.Min(offset, 0) < shape[dim1] && len + Math.Max(offset, 0) < shape[dim2]) len++;
        var others = Enumerable.Range(0, shape.Length).Where(d => d != dim1 && d != dim2).ToArray();
        return Map([.. others.Select(d => shape[d]), len], i =>
        {
            var s = new int[shape.Length];
            for (int k = 0; k < others.Length; k++) s[others[k]] = i[k];
            s[dim1] = i[^1] - Math.Min(offset, 0);
            s[dim2] = i[^1] + Math.Max(offset, 0);
            return x[Ravel(s, shape)];
        });
    }

    /// <summary>diag_embed: y has dims dim1 and dim2 of size n + |offset| inserted; y[...] = x[..., col - max(0, offset)] where col - row = offset, else 0.</summary>
    public static (double[] Values, int[] Shape) DiagEmbed(double[] x, int[] shape, int offset, int dim1, int dim2)
    {
        int n = shape[^1] + Math.Abs(offset);
        var outShape = new int[shape.Length + 1];
        var batch = new Queue<int>(shape[..^1]);
        for (int d = 0; d < outShape.Length; d++) outShape[d] = d == dim1 || d == dim2 ? n : batch.Dequeue();
        return Map(outShape, i =>
        {
            if (i[dim2] - i[dim1] != offset) return 0;
            var s = new List<int>();
            for (int d = 0; d < i.Length; d++) if (d != dim1 && d != dim2) s.Add(i[d]);
            s.Add(i[dim2] - Math.Max(offset, 0));
            return x[Ravel([.. s], shape)];
        });
    }

    /// <summary>meshgrid of vectors, stacked: y[k, i0, i1, ...] = vectors[k][i_k] ("ij"); "xy" swaps the first two grid dims.</summary>
    public static (double[] Values, int[] Shape) Meshgrid(double[][] vectors, bool xy)
    {
        var grid = vectors.Select(v => v.Length).ToArray();
        bool swap = xy && grid.Length >= 2;
        if (swap) (grid[0], grid[1]) = (grid[1], grid[0]);
        return Map([vectors.Length, .. grid], i =>
        {
            int k = i[0], along = swap && k < 2 ? 1 - k : k;
            return vectors[k][i[1 + along]];
        });
    }

    /// <summary>nonzero(as_tuple=True), stacked: y[d, m] is coordinate d of the m-th non-zero element in row-major order (0-D counts as 1-D).</summary>
    public static (double[] Values, int[] Shape) NonzeroByDim(double[] x, int[] shape)
    {
        if (shape.Length == 0) shape = [1];
        var hits = Enumerable.Range(0, x.Length).Where(f => x[f] != 0).Select(f => Unravel(f, shape)).ToArray();
        return Map([shape.Length, hits.Length], i => hits[i[1]][i[0]]);
    }
}
