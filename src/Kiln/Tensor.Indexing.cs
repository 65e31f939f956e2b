namespace Kiln;

public partial class Tensor
{
    void CheckIndex(Tensor index, int axis, string op, bool sameOtherDims)
    {
        index.Storage.ThrowIfDisposed(op);
        if (index.DType != DType.Int64) throw new ArgumentException($"{op}: index must be Int64, not {index.DType}", nameof(index));
        Check.SameDevice(this, index, op, nameof(index));
        if (index.Rank != Rank) throw new ShapeMismatchException(op, nameof(index), Shape, index.Shape, "index must have the input's rank");
        for (int i = 0; i < Rank; i++)
            if (i != axis && (sameOtherDims ? index.Shape[i] != Shape[i] : index.Shape[i] > Shape[i]))
                throw new ShapeMismatchException(op, nameof(index), Shape, index.Shape, $"dimension {i} must match outside axis {axis}");
    }

    /// <summary>y[i][j][k] = x[i][index[i][j][k]][k] for axis 1 (PyTorch gather); index is Int64 with the input's rank.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An index is outside the axis.</exception>
    public Tensor Gather(int axis, Tensor index)
    {
        Storage.ThrowIfDisposed("gather");
        int a = Check.Axis(axis, Rank, "gather");
        CheckIndex(index, a, "gather", sameOtherDims: true);
        var y = Empty(index.Shape, DType, Device);
        if (y.Numel > 0) Backend.Gather(Detach().Contiguous(), a, index.Contiguous(), y);
        var src = Shape;
        return Record(y, "gather", [this], g => [Zeros(src, DType, Device).ScatterAdd(a, index, g)]);
    }

    /// <summary>A copy with src[i][j][k] added at [i][index[i][j][k]][k] for axis 1; repeated indices accumulate.</summary>
    public Tensor ScatterAdd(int axis, Tensor index, Tensor src)
    {
        Storage.ThrowIfDisposed("scatter_add");
        int a = Check.Axis(axis, Rank, "scatter_add");
        CheckIndex(index, a, "scatter_add", sameOtherDims: true);
        if (src.Shape != index.Shape) throw new ShapeMismatchException("scatter_add", nameof(src), index.Shape, src.Shape, "src must have the index's shape");
        Check.SameDType(this, src, "scatter_add", nameof(src));
        var y = Detach().Clone();
        if (index.Numel > 0) Backend.ScatterAdd(y, a, index.Contiguous(), src.Detach().Contiguous());
        return Record(y, "scatter_add", [this, src], g => [g, g.Gather(a, index)]);
    }

    /// <summary>A copy with src[i][j][k] written at [i][index[i][j][k]][k] for axis 1 (the last write wins on repeats).</summary>
    public Tensor Scatter(int axis, Tensor index, Tensor src)
    {
        Storage.ThrowIfDisposed("scatter");
        int a = Check.Axis(axis, Rank, "scatter");
        CheckIndex(index, a, "scatter", sameOtherDims: true);
        if (src.Shape != index.Shape) throw new ShapeMismatchException("scatter", nameof(src), index.Shape, src.Shape, "src must have the index's shape");
        Check.SameDType(this, src, "scatter", nameof(src));
        var y = Detach().Clone();
        if (index.Numel > 0) Backend.Scatter(y, a, index.Contiguous(), src.Detach().Contiguous());
        return Record(y, "scatter", [this, src], g =>
        {
            var hit = Zeros(Shape, DType.Bool, Device).Scatter(a, index, Ones(index.Shape, DType.Bool, Device));
            return [Where(hit, g.ZerosLike(), g), g.Gather(a, index)];
        });
    }

    /// <summary>The slices at <paramref name="index"/> (Int64 vector) along <paramref name="axis"/>.</summary>
    public Tensor IndexSelect(int axis, Tensor index)
    {
        int a = Check.Axis(axis, Rank, "index_select");
        if (index.Rank != 1) throw new ShapeMismatchException("index_select", nameof(index), $"index must be a vector, got shape {index.Shape}");
        var shape = Shape.ToArray(); shape[a] = index.Shape[0];
        var view = Enumerable.Repeat(1, Rank).ToArray(); view[a] = index.Shape[0];
        var full = index.Reshape(view).BroadcastTo(new Shape(shape)).Contiguous();
        return Gather(a, full);
    }

    /// <summary>Elements of the flattened tensor at <paramref name="index"/> (Int64, any shape).</summary>
    public Tensor Take(Tensor index) => Reshape(-1).Gather(0, index.Reshape(-1)).Reshape(index.Shape.ToArray());

    /// <summary>
    /// One-hot rows: an Int64 tensor of shape S becomes [S..., classes] in <paramref name="dtype"/>. The default is
    /// Float32, where PyTorch's one_hot gives Int64, because the result is mostly multiplied into Float32 losses; pass
    /// <see cref="DType.Int64"/> for PyTorch's. A host path: the labels are copied to the host, checked and expanded
    /// there, and the result is copied to this tensor's device.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A label is outside [0, classes).</exception>
    public Tensor OneHot(int classes, DType dtype = DType.Float32)
    {
        if (DType != DType.Int64) throw new ArgumentException($"one_hot: labels must be Int64, not {DType}");
        var labels = ToArray<long>();
        foreach (long l in labels)
            if (l < 0 || l >= classes) throw new ArgumentOutOfRangeException(nameof(classes), $"one_hot: label {l} is outside [0, {classes})");
        var v = new double[labels.Length * classes];
        for (int i = 0; i < labels.Length; i++) v[i * classes + labels[i]] = 1;
        return FromArray(v, new Shape([.. Shape.Dims, classes])).To(dtype).To(Device);
    }

    /// <summary>
    /// Indices of non-zero (true) elements as an Int64 [count, rank] tensor. A host path: the elements are copied to the
    /// host (the count decides the result's shape), and the indices are copied to this tensor's device.
    /// </summary>
    public Tensor Nonzero()
    {
        var v = To(DType.Float64).ToArray<double>();
        var strides = Shape.ContiguousStrides();
        var rows = new List<long>();
        for (int i = 0; i < v.Length; i++)
        {
            if (v[i] == 0) continue;
            int r = i;
            for (int d = 0; d < Rank; d++) { rows.Add(r / strides[d]); r %= strides[d]; }
        }
        return FromArray(rows.ToArray(), new Shape(rows.Count / Math.Max(Rank, 1), Rank)).To(Device);
    }

    /// <summary>Stable sort along <paramref name="axis"/> with the permutation (Int64). NaN sorts last ascending.</summary>
    public (Tensor Values, Tensor Indices) Sort(int axis = -1, bool descending = false)
    {
        Storage.ThrowIfDisposed("sort");
        if (Rank == 0) return (Clone(), Zeros(new Shape(), DType.Int64, Device));
        int a = Check.Axis(axis, Rank, "sort");
        var (x, inv, len) = RowsAlong(a, "sort");
        var v = Empty(x.Shape, DType, Device);
        var idx = Empty(x.Shape, DType.Int64, Device);
        if (Numel > 0) Backend.SortRows(x, Numel / len, len, descending, v, idx);
        var indices = idx.Permute(inv).Contiguous();
        var values = v.Permute(inv).Contiguous().Detach();
        if (!DType.IsFloating()) return (values, indices);
        return (Record(values, "sort", [this], g => [Zeros(Shape, DType, Device).ScatterAdd(a, indices, g)]), indices);
    }

    /// <summary>The permutation that sorts along <paramref name="axis"/>.</summary>
    public Tensor ArgSort(int axis = -1, bool descending = false) => Sort(axis, descending).Indices;

    /// <summary>The <paramref name="k"/> largest (or smallest) values along <paramref name="axis"/>, sorted, with indices.</summary>
    public (Tensor Values, Tensor Indices) TopK(int k, int axis = -1, bool largest = true)
    {
        int a = Check.Axis(axis, Rank, "topk");
        if (k < 0 || k > Shape[a]) throw new ArgumentOutOfRangeException(nameof(k), k, $"topk: k must be in [0, {Shape[a]}] for axis {a} of shape {Shape}");
        var (v, i) = Sort(a, descending: largest);
        return (v.Narrow(a, 0, k), i.Narrow(a, 0, k).Contiguous());
    }

    /// <summary>Joins tensors along an existing axis; all other dims must match.</summary>
    public static Tensor Concat(Tensor[] tensors, int axis = 0)
    {
        if (tensors.Length == 0) throw new ArgumentException("concat: no tensors given", nameof(tensors));
        var first = tensors[0];
        int a = Check.Axis(axis, first.Rank, "concat");
        int total = 0;
        foreach (var t in tensors)
        {
            t.Storage.ThrowIfDisposed("concat");
            Check.SameDType(first, t, "concat", nameof(tensors));
            Check.SameDevice(first, t, "concat", nameof(tensors));
            if (t.Rank != first.Rank) throw new ShapeMismatchException("concat", nameof(tensors), first.Shape, t.Shape, "all tensors need the same rank");
            for (int i = 0; i < first.Rank; i++)
                if (i != a && t.Shape[i] != first.Shape[i]) throw new ShapeMismatchException("concat", nameof(tensors), first.Shape, t.Shape, $"dimension {i} differs");
            total += t.Shape[a];
        }
        var shape = first.Shape.ToArray(); shape[a] = total;
        var y = Empty(new Shape(shape), first.DType, first.Device);
        int at = 0;
        var starts = new int[tensors.Length];
        for (int k = 0; k < tensors.Length; k++)
        {
            starts[k] = at;
            int n = tensors[k].Shape[a];
            if (n > 0 && tensors[k].Numel > 0)
                first.Backend.Copy(tensors[k], new Tensor(y.Storage, SliceLayout(y.Layout, a, at, 1, n)));
            at += n;
        }
        if (!first.DType.IsFloating()) return y;
        return Record(y, "concat", tensors, g => tensors.Select((t, k) => (Tensor?)g.Narrow(a, starts[k], t.Shape[a])).ToArray());
    }

    /// <summary>Joins tensors of equal shape along a new axis.</summary>
    public static Tensor Stack(Tensor[] tensors, int axis = 0)
    {
        if (tensors.Length == 0) throw new ArgumentException("stack: no tensors given", nameof(tensors));
        foreach (var t in tensors)
            if (t.Shape != tensors[0].Shape) throw new ShapeMismatchException("stack", nameof(tensors), tensors[0].Shape, t.Shape, "all tensors need the same shape");
        int a = axis < 0 ? axis + tensors[0].Rank + 1 : axis;
        return Concat(tensors.Select(t => t.Unsqueeze(a)).ToArray(), a);
    }

    /// <summary>Views of consecutive pieces of <paramref name="size"/> along <paramref name="axis"/> (the last may be shorter).</summary>
    public Tensor[] Split(int size, int axis = 0)
    {
        int a = Check.Axis(axis, Rank, "split");
        if (size <= 0) throw new ArgumentOutOfRangeException(nameof(size), size, "split: size must be positive");
        var parts = new List<Tensor>();
        for (int s = 0; s < Shape[a]; s += size) parts.Add(Narrow(a, s, Math.Min(size, Shape[a] - s)));
        return parts.ToArray();
    }

    /// <summary>Views of pieces with the given sizes along <paramref name="axis"/>; the sizes must add up to the dim.</summary>
    public Tensor[] Split(int[] sizes, int axis = 0)
    {
        int a = Check.Axis(axis, Rank, "split");
        if (sizes.Sum() != Shape[a] || sizes.Any(s => s < 0))
            throw new ArgumentException($"split: sizes [{string.Join(", ", sizes)}] do not add up to dimension {a} of size {Shape[a]}", nameof(sizes));
        var parts = new Tensor[sizes.Length];
        int at = 0;
        for (int i = 0; i < sizes.Length; i++) { parts[i] = Narrow(a, at, sizes[i]); at += sizes[i]; }
        return parts;
    }

    /// <summary><paramref name="chunks"/> nearly equal views along <paramref name="axis"/> (PyTorch's rule: ceil-sized pieces).</summary>
    public Tensor[] Chunk(int chunks, int axis = 0)
    {
        if (chunks <= 0) throw new ArgumentOutOfRangeException(nameof(chunks), chunks, "chunk: chunks must be positive");
        int a = Check.Axis(axis, Rank, "chunk");
        return Split(Math.Max(1, (Shape[a] + chunks - 1) / chunks), a);
    }

    /// <summary>
    /// Pads with a constant: <paramref name="pads"/> holds (before, after) pairs starting from the last dim, as in PyTorch's F.pad.
    /// </summary>
    public Tensor Pad(int[] pads, double value = 0)
    {
        if (pads.Length % 2 != 0 || pads.Length / 2 > Rank)
            throw new ArgumentException($"pad: {pads.Length} values; give (before, after) pairs for at most {Rank} dims", nameof(pads));
        if (pads.Any(p => p < 0)) throw new ArgumentOutOfRangeException(nameof(pads), "pad: negative padding is not supported");
        var shape = Shape.ToArray();
        var starts = new int[Rank];
        for (int k = 0; k < pads.Length / 2; k++)
        {
            int d = Rank - 1 - k;
            starts[d] = pads[2 * k];
            shape[d] += pads[2 * k] + pads[2 * k + 1];
        }
        var y = Full(new Shape(shape), value, DType, Device);
        var layout = y.Layout;
        for (int d = 0; d < Rank; d++) layout = SliceLayout(layout, d, starts[d], 1, Shape[d]);
        if (Numel > 0) Backend.Copy(this, new Tensor(y.Storage, layout));
        if (!DType.IsFloating()) return y;
        return Record(y, "pad", [this], g =>
        {
            var v = g;
            for (int d = 0; d < Rank; d++) v = v.Narrow(d, starts[d], Shape[d]);
            return [v];
        });
    }
}
