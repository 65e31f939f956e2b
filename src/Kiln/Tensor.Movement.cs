namespace Kiln;

public sealed partial class Tensor
{
    Tensor View(Layout layout, string op, Func<Tensor, Tensor> backward)
    {
        Storage.ThrowIfDisposed(op);
        var y = new Tensor(Storage, layout);
        return Record(y, op, [this], g => [backward(g)]);
    }

    /// <summary>A view broadcast to <paramref name="shape"/> (size-1 and missing leading dims get stride 0); no copy.</summary>
    /// <exception cref="ShapeMismatchException">This shape does not broadcast to <paramref name="shape"/>.</exception>
    public Tensor BroadcastTo(Shape shape)
    {
        if (shape == Shape) return this;
        int r = shape.Rank, lead = r - Rank;
        if (lead < 0) throw new ShapeMismatchException("broadcast_to", "shape", shape, Shape, "the target has fewer dimensions");
        var strides = new int[r];
        for (int i = 0; i < r; i++)
        {
            if (i < lead) { strides[i] = 0; continue; }
            int d = Shape[i - lead];
            if (d == shape[i]) strides[i] = d == 1 ? 0 : Layout.Strides[i - lead];
            else if (d == 1) strides[i] = 0;
            else throw new ShapeMismatchException("broadcast_to", "shape", shape, Shape, $"dimension {i - lead} of size {d} cannot broadcast to {shape[i]}");
        }
        var src = Shape;
        return View(new Layout(shape, strides, Layout.Offset), "broadcast_to", g => g.SumTo(src));
    }

    /// <summary>Same as <see cref="BroadcastTo"/>, PyTorch's name.</summary>
    public Tensor Expand(params int[] shape) => BroadcastTo(new Shape(shape));

    /// <summary>Sums a broadcast result back to <paramref name="shape"/> (the gradient of broadcasting).</summary>
    public Tensor SumTo(Shape shape)
    {
        if (shape == Shape) return this;
        int lead = Rank - shape.Rank;
        if (lead < 0) throw new ShapeMismatchException("sum_to", "shape", shape, Shape, "the target has more dimensions");
        var axes = new List<int>();
        for (int i = 0; i < Rank; i++)
            if (i < lead || (shape[i - lead] == 1 && Shape[i] != 1)) axes.Add(i);
        var s = axes.Count == 0 ? this : Sum(axes.ToArray(), keepDim: true);
        return s.Reshape(shape.ToArray());
    }

    /// <summary>
    /// The same elements in a new shape (one extent may be -1 and is inferred). A view when the layout allows, else a copy.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The element counts differ or more than one extent is -1.</exception>
    public Tensor Reshape(params int[] shape)
    {
        var target = InferShape(shape, "reshape");
        if (target == Shape) return this;
        var strides = ViewStrides(target);
        var src = Shape;
        if (strides is not null) return View(new Layout(target, strides, Layout.Offset), "reshape", g => g.Reshape(src.ToArray()));
        return Contiguous().Reshape(shape);
    }

    /// <summary>Like <see cref="Reshape"/> but never copies.</summary>
    /// <exception cref="InvalidOperationException">The layout cannot be viewed in that shape without a copy.</exception>
    public Tensor View(params int[] shape)
    {
        var target = InferShape(shape, "view");
        var strides = ViewStrides(target)
            ?? throw new InvalidOperationException($"view: a tensor of shape {Shape} with strides [{string.Join(", ", Layout.Strides)}] cannot be viewed as {target} without a copy; use Reshape");
        var src = Shape;
        return View(new Layout(target, strides, Layout.Offset), "view", g => g.Reshape(src.ToArray()));
    }

    /// <summary>All dims flattened into one (or dims start..end inclusive).</summary>
    public Tensor Flatten(int start = 0, int end = -1)
    {
        if (Rank == 0) return Reshape(1);
        int s = Check.Axis(start, Rank, "flatten", nameof(start)), e = Check.Axis(end, Rank, "flatten", nameof(end));
        if (s > e) throw new ArgumentException($"flatten: start {start} is after end {end}", nameof(start));
        var dims = new List<int>();
        for (int i = 0; i < s; i++) dims.Add(Shape[i]);
        int n = 1; for (int i = s; i <= e; i++) n *= Shape[i];
        dims.Add(n);
        for (int i = e + 1; i < Rank; i++) dims.Add(Shape[i]);
        return Reshape(dims.ToArray());
    }

    Shape InferShape(int[] shape, string op)
    {
        int infer = -1; long known = 1;
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] == -1)
            {
                if (infer >= 0) throw new ShapeMismatchException(op, "shape", $"only one dimension may be -1, got [{string.Join(", ", shape)}]");
                infer = i;
            }
            else if (shape[i] < 0) throw new ShapeMismatchException(op, "shape", $"negative size {shape[i]} in [{string.Join(", ", shape)}]");
            else known *= shape[i];
        }
        var dims = (int[])shape.Clone();
        if (infer >= 0)
        {
            if (known == 0 || Numel % known != 0)
                throw new ShapeMismatchException(op, "shape", $"cannot infer -1 in [{string.Join(", ", shape)}] for {Numel} elements (shape {Shape})");
            dims[infer] = (int)(Numel / known);
        }
        else if (known != Numel)
            throw new ShapeMismatchException(op, "shape", $"shape [{string.Join(", ", shape)}] holds {known} elements but the tensor of shape {Shape} has {Numel}");
        return new Shape(dims);
    }

    // Strides that view this layout's elements in row-major order as `target`, or null when a copy is needed
    // (NumPy's attempt_nocopy_reshape: match groups of old and new dims with equal products).
    int[]? ViewStrides(Shape target)
    {
        if (IsContiguous || Numel == 0) return target.ContiguousStrides();
        // Size-1 dims do not move any element: drop them from the old layout first.
        var keep = Enumerable.Range(0, Rank).Where(i => Shape[i] != 1).ToArray();
        var od = keep.Select(i => Shape[i]).ToArray(); var os = keep.Select(i => Layout.Strides[i]).ToArray();
        var nd = target.ToArray(); var ns = new int[nd.Length];
        int oi = 0, ni = 0;
        while (oi < od.Length && ni < nd.Length)
        {
            long op = od[oi], np = nd[ni];
            int oj = oi + 1, nj = ni + 1;
            while (op != np && oj <= od.Length && nj <= nd.Length)
            {
                if (np < op) np *= nd[nj++]; else op *= od[oj++];
            }
            for (int k = oi; k < oj - 1; k++) if (os[k] != os[k + 1] * od[k + 1]) return null;
            ns[nj - 1] = os[oj - 1];
            for (int k = nj - 1; k > ni; k--) ns[k - 1] = ns[k] * nd[k];
            oi = oj; ni = nj;
        }
        for (; ni < nd.Length; ni++) ns[ni] = 1;  // trailing size-1 dims
        return ns;
    }

    /// <summary>A view with dims reordered: result dim i is input dim <paramref name="dims"/>[i].</summary>
    /// <exception cref="ArgumentException">dims is not a permutation of 0..rank-1.</exception>
    public Tensor Permute(params int[] dims)
    {
        if (dims.Length != Rank) throw new ArgumentException($"permute: {dims.Length} dims given for a tensor of rank {Rank}", nameof(dims));
        var p = dims.Select(d => Check.Axis(d, Rank, "permute", nameof(dims))).ToArray();
        if (p.Distinct().Count() != Rank) throw new ArgumentException($"permute: [{string.Join(", ", dims)}] is not a permutation of 0..{Rank - 1}", nameof(dims));
        var shape = p.Select(d => Shape[d]).ToArray();
        var strides = p.Select(d => Layout.Strides[d]).ToArray();
        var inv = new int[Rank];
        for (int i = 0; i < Rank; i++) inv[p[i]] = i;
        return View(new Layout(new Shape(shape), strides, Layout.Offset), "permute", g => g.Permute(inv));
    }

    /// <summary>A view with two dims swapped.</summary>
    public Tensor Transpose(int dim0, int dim1)
    {
        int a = Check.Axis(dim0, Rank, "transpose", nameof(dim0)), b = Check.Axis(dim1, Rank, "transpose", nameof(dim1));
        var p = Enumerable.Range(0, Rank).ToArray();
        (p[a], p[b]) = (p[b], p[a]);
        return Permute(p);
    }

    /// <summary>The transpose of a matrix (the last two dims swapped for batches).</summary>
    public Tensor T => Rank < 2 ? this : Transpose(-2, -1);

    /// <summary>A view without size-1 dims (or without the given size-1 dim).</summary>
    public Tensor Squeeze(int? axis = null)
    {
        if (axis is int ax)
        {
            int a = Check.Axis(ax, Rank, "squeeze");
            if (Shape[a] != 1) return this;
            return Reshape(Shape.ToArray().Where((_, i) => i != a).ToArray());
        }
        return Reshape(Shape.ToArray().Where(d => d != 1).ToArray());
    }

    /// <summary>A view with a size-1 dim inserted at <paramref name="axis"/> (in -rank-1..rank).</summary>
    public Tensor Unsqueeze(int axis)
    {
        int a = axis < 0 ? axis + Rank + 1 : axis;
        if (a < 0 || a > Rank) throw new ArgumentOutOfRangeException(nameof(axis), axis, $"unsqueeze: axis {axis} is out of range for a tensor of rank {Rank}");
        var dims = Shape.ToArray().ToList();
        dims.Insert(a, 1);
        return Reshape(dims.ToArray());
    }

    /// <summary>
    /// A view of elements start, start+step, ... below end along <paramref name="axis"/> (Python slice rules:
    /// negative indices count from the end, bounds are clipped). Step must be positive.
    /// </summary>
    public Tensor Slice(int axis, int? start = null, int? end = null, int step = 1)
    {
        int a = Check.Axis(axis, Rank, "slice");
        if (step <= 0) throw new ArgumentOutOfRangeException(nameof(step), step, "slice: step must be positive");
        int n = Shape[a];
        int s = start ?? 0, e = end ?? n;
        if (s < 0) s += n; if (e < 0) e += n;
        s = Math.Clamp(s, 0, n); e = Math.Clamp(e, 0, n);
        int len = e > s ? (e - s + step - 1) / step : 0;
        var dims = Shape.ToArray(); dims[a] = len;
        var strides = (int[])Layout.Strides.Clone(); strides[a] *= step;
        int offset = Layout.Offset + (len > 0 ? s * Layout.Strides[a] : 0);
        var src = Shape;
        int s0 = s;
        return View(new Layout(new Shape(dims), strides, offset), "slice", g => g.SliceBackward(src, a, s0, step));
    }

    /// <summary>The gradient of a slice: zeros of the source shape with g written into the sliced positions.</summary>
    Tensor SliceBackward(Shape source, int axis, int start, int step)
    {
        var y = Zeros(source, DType, Device);
        var view = new Tensor(y.Storage, SliceLayout(y.Layout, axis, start, step, Shape[axis]));
        Backend.Copy(this, view);
        return Record(y, "slice_backward", [this], gg => [gg.Slice(axis, start, start + step * (Shape[axis] - 1) + 1, step)]);
    }

    static Layout SliceLayout(Layout l, int axis, int start, int step, int len)
    {
        var dims = l.Shape.ToArray(); dims[axis] = len;
        var strides = (int[])l.Strides.Clone(); strides[axis] *= step;
        return new Layout(new Shape(dims), strides, l.Offset + (len > 0 ? start * l.Strides[axis] : 0));
    }

    /// <summary>A view of <paramref name="length"/> elements from <paramref name="start"/> along <paramref name="axis"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range leaves the dimension.</exception>
    public Tensor Narrow(int axis, int start, int length)
    {
        int a = Check.Axis(axis, Rank, "narrow");
        if (start < 0 || length < 0 || start + length > Shape[a])
            throw new ArgumentOutOfRangeException(nameof(start), $"narrow: [{start}, {start + length}) is outside dimension {a} of size {Shape[a]}");
        return Slice(a, start, start + length);
    }
}
