namespace Kiln;

public partial class Tensor
{
    // A view of this tensor's storage. Its gradient rule is a static lambda over `state`, closed over only when the view
    // is recorded, so an inference view allocates the tensor and its layout alone.
    Tensor View<TState>(Layout layout, string op, TState state, Func<Tensor, TState, Tensor> backward)
    {
        Storage.ThrowIfDisposed(op);
        var y = new Tensor(Storage, layout);
        return Tracks(this) ? RecordView(y, op, this, state, backward) : y;
    }

    static Tensor RecordView<TState>(Tensor y, string op, Tensor x, TState state, Func<Tensor, TState, Tensor> backward) =>
        Record(y, op, [x], g => [backward(g, state)]);

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
        return View(new Layout(shape, strides, Layout.Offset), "broadcast_to", Shape, static (g, src) => g.SumTo(src));
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
        if (strides is not null) return View(new Layout(target, strides, Layout.Offset), "reshape", Shape, static (g, src) => g.Reshape(src.ToArray()));
        return Contiguous().Reshape(shape);
    }

    /// <summary>Like <see cref="Reshape"/> but never copies.</summary>
    /// <exception cref="InvalidOperationException">The layout cannot be viewed in that shape without a copy.</exception>
    public Tensor View(params int[] shape)
    {
        var target = InferShape(shape, "view");
        var strides = ViewStrides(target)
            ?? throw new InvalidOperationException($"view: a tensor of shape {Shape} with strides [{string.Join(", ", Layout.Strides)}] cannot be viewed as {target} without a copy; use Reshape");
        return View(new Layout(target, strides, Layout.Offset), "view", Shape, static (g, src) => g.Reshape(src.ToArray()));
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
        int numel = Numel;
        if (infer < 0 && known == numel && shape.AsSpan().SequenceEqual(Shape.Dims)) return Shape;
        var dims = shape.AsSpan().ToArray();
        if (infer >= 0)
        {
            if (known == 0 || numel % known != 0)
                throw new ShapeMismatchException(op, "shape", $"cannot infer -1 in [{string.Join(", ", shape)}] for {numel} elements (shape {Shape})");
            dims[infer] = (int)(numel / known);
        }
        else if (known != numel)
            throw new ShapeMismatchException(op, "shape", $"shape [{string.Join(", ", shape)}] holds {known} elements but the tensor of shape {Shape} has {numel}");
        return Shape.Owning(dims);
    }

    // Strides that view this layout's elements in row-major order as `target`, or null when a copy is needed
    // (NumPy's attempt_nocopy_reshape: match groups of old and new dims with equal products).
    int[]? ViewStrides(Shape target)
    {
        if (IsContiguous || Numel == 0) return target.ContiguousStrides();
        // Size-1 dims do not move any element: drop them from the old layout first.
        int kept = 0;
        for (int i = 0; i < Rank; i++) if (Shape[i] != 1) kept++;
        var od = new int[kept]; var os = new int[kept];
        for (int i = 0, j = 0; i < Rank; i++)
            if (Shape[i] != 1) { od[j] = Shape[i]; os[j++] = Layout.Strides[i]; }
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
        int rank = Rank;
        if (dims.Length != rank) throw new ArgumentException($"permute: {dims.Length} dims given for a tensor of rank {rank}", nameof(dims));
        var p = new int[rank]; var shape = new int[rank]; var strides = new int[rank];
        Span<bool> seen = rank <= 64 ? stackalloc bool[rank] : new bool[rank];
        for (int i = 0; i < rank; i++)
        {
            int d = Check.Axis(dims[i], rank, "permute", nameof(dims));
            if (seen[d]) throw new ArgumentException($"permute: [{string.Join(", ", dims)}] is not a permutation of 0..{rank - 1}", nameof(dims));
            seen[d] = true;
            (p[i], shape[i], strides[i]) = (d, Shape.Dims[d], Layout.Strides[d]);
        }
        return View(new Layout(Shape.Owning(shape), strides, Layout.Offset), "permute", p, static (g, p) =>
        {
            var inv = new int[p.Length];
            for (int i = 0; i < p.Length; i++) inv[p[i]] = i;
            return g.Permute(inv);
        });
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

    /// <summary>
    /// A view without size-1 dims, or without dim <paramref name="axis"/> when it has size 1 (as PyTorch, a dim of another
    /// size is kept and the input returned unchanged).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="axis"/> is outside [-rank, rank).</exception>
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

    /// <summary>
    /// A view without those of <paramref name="axes"/> that have size 1 (PyTorch's squeeze with a tuple of dims: listed
    /// dims of another size are kept).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An axis is outside [-rank, rank).</exception>
    /// <exception cref="ArgumentException">An axis is listed twice.</exception>
    public Tensor Squeeze(int[] axes)
    {
        ArgumentNullException.ThrowIfNull(axes);
        var a = axes.Select(x => Check.Axis(x, Rank, "squeeze", nameof(axes))).ToArray();
        if (a.Distinct().Count() != a.Length) throw new ArgumentException($"squeeze: axis repeated in [{string.Join(", ", axes)}]", nameof(axes));
        return Reshape(Shape.ToArray().Where((d, i) => d != 1 || Array.IndexOf(a, i) < 0).ToArray());
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
        var strides = Layout.Strides.AsSpan().ToArray(); strides[a] *= step;
        int offset = Layout.Offset + (len > 0 ? s * Layout.Strides[a] : 0);
        return View(new Layout(Shape.Owning(dims), strides, offset), "slice", (Src: Shape, a, s, step), static (g, c) => g.SliceBackward(c.Src, c.a, c.s, c.step));
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

    // ---------------------------------------------------------------- triangles, flips, rolls, repeats, diagonals

    /// <summary>
    /// The lower triangle of the matrices in the last two dims (PyTorch tril): element [..., i, j] is kept where
    /// j - i &lt;= <paramref name="diagonal"/> and is zero elsewhere. Diagonal 0 is the main diagonal, positive values
    /// lie above it, negative below. Leading dims are a batch. Any dtype; the gradient is masked the same way.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The tensor has fewer than two dims.</exception>
    public Tensor Tril(int diagonal = 0) => Triangle(diagonal, upper: false);

    /// <summary>
    /// The upper triangle of the matrices in the last two dims (PyTorch triu): element [..., i, j] is kept where
    /// j - i &gt;= <paramref name="diagonal"/> and is zero elsewhere. Leading dims are a batch.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The tensor has fewer than two dims.</exception>
    public Tensor Triu(int diagonal = 0) => Triangle(diagonal, upper: true);

    Tensor Triangle(int diagonal, bool upper)
    {
        string op = upper ? "triu" : "tril";
        Storage.ThrowIfDisposed(op);
        if (Rank < 2) throw new ShapeMismatchException(op, "input", $"needs a tensor of at least 2 dims (a batch of matrices), got shape {Shape}");
        int n = Shape[^2], m = Shape[^1];
        // One [n, m] mask broadcast over the batch: column j against row i + diagonal, built on the device.
        var rows = Arange(diagonal, (double)diagonal + n, 1, DType.Int64, Device).Reshape(n, 1);
        var cols = Arange(m, DType.Int64, Device);
        var keep = upper ? cols >= rows : cols <= rows;
        return Where(keep, this, Zeros(new Shape(), DType, Device));
    }

    /// <summary>A copy with the order of elements reversed along each of <paramref name="dims"/> (PyTorch flip).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A dim is outside -rank..rank-1.</exception>
    /// <exception cref="ArgumentException">A dim is named twice.</exception>
    public Tensor Flip(params int[] dims)
    {
        ArgumentNullException.ThrowIfNull(dims);
        Storage.ThrowIfDisposed("flip");
        var axes = dims.Select(d => Check.Axis(d, Rank, "flip", nameof(dims))).ToArray();
        CheckDistinct(axes, dims, "flip");
        // A reversed axis is a negative stride from the axis' last element; one strided copy materialises it (such
        // layouts stay internal: every public view has non-negative strides).
        var strides = (int[])Layout.Strides.Clone();
        int offset = Layout.Offset;
        foreach (int a in axes)
            if (Rank > 0 && Shape[a] > 1) { offset += (Shape[a] - 1) * strides[a]; strides[a] = -strides[a]; }
        var y = Empty(Shape, DType, Device);
        if (Numel > 0) Backend.Copy(new Tensor(Storage, new Layout(Shape, strides, offset)), y);
        return Record(y, "flip", [this], g => [g.Flip(axes)]);
    }

    static void CheckDistinct(int[] axes, int[] given, string op)
    {
        var twice = axes.GroupBy(a => a).FirstOrDefault(g => g.Count() > 1);
        if (twice is not null)
            throw new ArgumentException($"{op}: dims [{string.Join(", ", given)}] name dimension {twice.Key} more than once", "dims");
    }

    /// <summary>
    /// A copy with elements shifted by <paramref name="shifts"/>[k] along <paramref name="dims"/>[k], wrapping around
    /// (PyTorch roll: element i moves to (i + shift) mod n). Without dims, the flattened tensor is rolled by the one
    /// shift and the shape restored. A dim named twice is rolled by the sum of its shifts.
    /// </summary>
    /// <exception cref="ArgumentException">shifts and dims differ in length, or shifts is not one value when dims is null or empty.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A dim is outside -rank..rank-1.</exception>
    public Tensor Roll(int[] shifts, int[]? dims = null)
    {
        ArgumentNullException.ThrowIfNull(shifts);
        Storage.ThrowIfDisposed("roll");
        if (dims is null || dims.Length == 0)
        {
            if (shifts.Length != 1)
                throw new ArgumentException($"roll: without dims, shifts must be one value (the flattened roll), got [{string.Join(", ", shifts)}]", nameof(shifts));
            return Reshape(-1).Roll(shifts, [0]).Reshape(Shape.ToArray());
        }
        if (shifts.Length != dims.Length)
            throw new ArgumentException($"roll: {shifts.Length} shifts [{string.Join(", ", shifts)}] for {dims.Length} dims [{string.Join(", ", dims)}]; give one shift per dim", nameof(shifts));
        var axes = dims.Select(d => Check.Axis(d, Rank, "roll", nameof(dims))).ToArray();
        if (Rank == 0) return Clone();
        var shift = new int[Rank];
        for (int k = 0; k < axes.Length; k++)
        {
            int n = Shape[axes[k]];
            if (n > 0) shift[axes[k]] = (int)((((long)shift[axes[k]] + shifts[k]) % n + n) % n);
        }
        var y = Empty(Shape, DType, Device);
        if (Numel > 0)
        {
            // Along each rolled dim the source splits into [0, n - s), which lands at [s, n), and [n - s, n), which
            // lands at [0, s): one strided block copy per combination of halves.
            var moved = Enumerable.Range(0, Rank).Where(a => shift[a] != 0).ToArray();
            for (int pick = 0; pick < 1 << moved.Length; pick++)
            {
                Layout src = Layout, dst = y.Layout;
                for (int b = 0; b < moved.Length; b++)
                {
                    int a = moved[b], n = Shape[a], s = shift[a];
                    var (from, to, len) = (pick >> b & 1) == 0 ? (0, s, n - s) : (n - s, 0, s);
                    src = SliceLayout(src, a, from, 1, len);
                    dst = SliceLayout(dst, a, to, 1, len);
                }
                Backend.Copy(new Tensor(Storage, src), new Tensor(y.Storage, dst));
            }
        }
        var rolled = axes.Distinct().ToArray();
        var back = rolled.Select(a => -shift[a]).ToArray();
        return Record(y, "roll", [this], g => [g.Roll(back, rolled)]);
    }

    /// <summary>Roll by one shift along <paramref name="dim"/>, or of the flattened tensor when dim is null (see <see cref="Roll(int[], int[])"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException">dim is outside -rank..rank-1.</exception>
    public Tensor Roll(int shifts, int? dim = null) => Roll([shifts], dim is int d ? [d] : null);

    /// <summary>
    /// A copy tiled <paramref name="repeats"/>[i] times along dim i (PyTorch Tensor.repeat). With more repeats than
    /// dims, the tensor is first viewed with leading size-1 dims. Shape: [repeats[i] * size[i]].
    /// </summary>
    /// <exception cref="ArgumentException">Fewer repeats than dims.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A repeat is negative.</exception>
    public Tensor Repeat(params int[] repeats)
    {
        ArgumentNullException.ThrowIfNull(repeats);
        if (repeats.Length < Rank)
            throw new ArgumentException($"repeat: {repeats.Length} repeats [{string.Join(", ", repeats)}] for a tensor of rank {Rank}; give one per dim at least (Tile pads with 1s)", nameof(repeats));
        return Tiled(repeats, "repeat");
    }

    /// <summary>
    /// A copy tiled <paramref name="reps"/>[i] times along dim i (numpy and PyTorch tile): fewer reps than dims are
    /// padded with leading 1s, more reps than dims view the tensor with leading size-1 dims.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A rep is negative.</exception>
    public Tensor Tile(params int[] reps)
    {
        ArgumentNullException.ThrowIfNull(reps);
        return Tiled([.. Enumerable.Repeat(1, Math.Max(0, Rank - reps.Length)), .. reps], "tile");
    }

    Tensor Tiled(int[] repeats, string op)
    {
        Storage.ThrowIfDisposed(op);
        int bad = Array.FindIndex(repeats, r => r < 0);
        if (bad >= 0) throw new ArgumentOutOfRangeException("repeats", repeats[bad], $"{op}: repeats[{bad}] = {repeats[bad]} is negative in [{string.Join(", ", repeats)}]");
        int r = repeats.Length, lead = r - Rank;
        // [d0, d1, ...] viewed as [1, d0, 1, d1, ...], broadcast to [r0, d0, r1, d1, ...] and copied once.
        var inter = new int[2 * r]; var wide = new int[2 * r]; var shape = new int[r];
        for (int i = 0; i < r; i++)
        {
            int d = i < lead ? 1 : Shape[i - lead];
            (inter[2 * i], inter[2 * i + 1]) = (1, d);
            (wide[2 * i], wide[2 * i + 1]) = (repeats[i], d);
            shape[i] = checked(repeats[i] * d);
        }
        return Reshape(inter).BroadcastTo(new Shape(wide)).Clone().Reshape(shape);
    }

    /// <summary>
    /// Each element repeated <paramref name="repeats"/> times in place along <paramref name="dim"/> (PyTorch
    /// repeat_interleave: [a, b] becomes [a, a, b, b]); without dim, the flattened tensor is repeated.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">repeats is negative or dim is outside -rank..rank-1.</exception>
    public Tensor RepeatInterleave(int repeats, int? dim = null)
    {
        Storage.ThrowIfDisposed("repeat_interleave");
        if (repeats < 0) throw new ArgumentOutOfRangeException(nameof(repeats), repeats, $"repeat_interleave: repeats {repeats} is negative");
        if (dim is int d) Check.Axis(d, Rank, "repeat_interleave", nameof(dim));
        if (dim is null || Rank == 0) return (Rank == 1 ? this : Reshape(-1)).RepeatInterleave(repeats, 0);
        int a = Check.Axis(dim.Value, Rank, "repeat_interleave", nameof(dim));
        var s = Shape.ToArray();
        int[] wide = [.. s[..(a + 1)], repeats, .. s[(a + 1)..]];
        var shape = (int[])s.Clone(); shape[a] = checked(s[a] * repeats);
        return Unsqueeze(a + 1).BroadcastTo(new Shape(wide)).Clone().Reshape(shape);
    }

    /// <summary>
    /// Element i along <paramref name="dim"/> repeated repeats[i] times (PyTorch repeat_interleave with a tensor):
    /// <paramref name="repeats"/> is an Int64 vector with one count per element of the dim, or a single count for all.
    /// Without dim, the flattened tensor is repeated. The counts are read on the host (they decide the result's shape).
    /// </summary>
    /// <exception cref="ArgumentException">repeats is not Int64, not 0-D or 1-D, or its length is neither 1 nor the dim's size.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A count is negative or dim is outside -rank..rank-1.</exception>
    public Tensor RepeatInterleave(Tensor repeats, int? dim = null)
    {
        ArgumentNullException.ThrowIfNull(repeats);
        Storage.ThrowIfDisposed("repeat_interleave");
        repeats.Storage.ThrowIfDisposed("repeat_interleave");
        if (repeats.DType != DType.Int64) throw new ArgumentException($"repeat_interleave: repeats must be Int64, not {repeats.DType}", nameof(repeats));
        if (repeats.Rank > 1) throw new ArgumentException($"repeat_interleave: repeats must be 0-D or 1-D, got shape {repeats.Shape}", nameof(repeats));
        if (dim is not int d0 || Rank == 0)
        {
            if (dim is int d) Check.Axis(d, Rank, "repeat_interleave", nameof(dim));
            return (Rank == 1 ? this : Reshape(-1)).RepeatInterleave(repeats, 0);
        }
        int a = Check.Axis(d0, Rank, "repeat_interleave", nameof(dim)), n = Shape[a];
        var counts = repeats.ToArray<long>();
        if (counts.Length != n && counts.Length != 1)
            throw new ArgumentException($"repeat_interleave: repeats holds {counts.Length} counts but dimension {a} has size {n}; give one per element or a single count", nameof(repeats));
        int bad = Array.FindIndex(counts, c => c < 0);
        if (bad >= 0) throw new ArgumentOutOfRangeException(nameof(repeats), counts[bad], $"repeat_interleave: repeats[{bad}] = {counts[bad]} is negative");
        if (counts.Length == 1) return RepeatInterleave(checked((int)counts[0]), a);
        long total = counts.Sum();
        if (total > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(repeats), total, $"repeat_interleave: the counts add up to {total} elements along dimension {a}, more than a dim holds");
        var index = new long[total];
        for (int i = 0, at = 0; i < n; i++)
            for (long k = 0; k < counts[i]; k++) index[at++] = i;
        return IndexSelect(a, FromArray(index, new Shape(index.Length)).To(Device));
    }

    /// <summary>
    /// A view of the diagonal of the matrices spanned by <paramref name="dim1"/> (rows) and <paramref name="dim2"/>
    /// (columns) (PyTorch diagonal): element k is [k, k + offset] for offset &gt;= 0 and [k - offset, k] below. Both dims
    /// are removed and the diagonal becomes the last dim; no copy (its stride is the sum of the two dims' strides).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The tensor has fewer than two dims.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A dim is outside -rank..rank-1.</exception>
    /// <exception cref="ArgumentException">dim1 and dim2 are the same dim.</exception>
    public Tensor Diagonal(int offset = 0, int dim1 = 0, int dim2 = 1)
    {
        Storage.ThrowIfDisposed("diagonal");
        if (Rank < 2) throw new ShapeMismatchException("diagonal", "input", $"needs a tensor of at least 2 dims, got shape {Shape}");
        var (a, b) = DiagonalDims(dim1, dim2, Rank, "diagonal");
        return View(DiagonalLayout(Layout, offset, a, b), "diagonal", (Src: Shape, offset, a, b), static (g, c) => g.DiagonalBackward(c.Src, c.offset, c.a, c.b));
    }

    static (int, int) DiagonalDims(int dim1, int dim2, int rank, string op)
    {
        int a = Check.Axis(dim1, rank, op, nameof(dim1)), b = Check.Axis(dim2, rank, op, nameof(dim2));
        if (a == b) throw new ArgumentException($"{op}: dim1 {dim1} and dim2 {dim2} are the same dimension {a}; the diagonal needs two", nameof(dim2));
        return (a, b);
    }

    static Layout DiagonalLayout(Layout l, int offset, int a, int b)
    {
        long n1 = l.Shape[a], n2 = l.Shape[b];
        int len = (int)Math.Max(0, offset >= 0 ? Math.Min(n1, n2 - offset) : Math.Min(n1 + offset, n2));
        int start = len == 0 ? l.Offset : l.Offset + (offset >= 0 ? offset * l.Strides[b] : -offset * l.Strides[a]);
        var keep = Enumerable.Range(0, l.Shape.Rank).Where(i => i != a && i != b).ToArray();
        int[] dims = [.. keep.Select(i => l.Shape[i]), len], strides = [.. keep.Select(i => l.Strides[i]), l.Strides[a] + l.Strides[b]];
        return new Layout(new Shape(dims), strides, start);
    }

    /// <summary>The gradient of a diagonal: zeros of the source shape with g written onto the diagonal.</summary>
    Tensor DiagonalBackward(Shape source, int offset, int a, int b)
    {
        var y = Zeros(source, DType, Device);
        if (Numel > 0) Backend.Copy(this, new Tensor(y.Storage, DiagonalLayout(y.Layout, offset, a, b)));
        return Record(y, "diagonal_backward", [this], gg => [gg.Diagonal(offset, a, b)]);
    }

    /// <summary>
    /// PyTorch diag: a vector of n elements becomes the [n + |diagonal|, n + |diagonal|] matrix with it on that diagonal
    /// and zeros elsewhere; a matrix gives a copy of its diagonal (see <see cref="Diagonal"/>).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The tensor is neither 1-D nor 2-D.</exception>
    public Tensor Diag(int diagonal = 0)
    {
        Storage.ThrowIfDisposed("diag");
        if (Rank == 2) return Diagonal(diagonal).Clone();
        if (Rank != 1) throw new ShapeMismatchException("diag", "input", $"needs a 1-D or 2-D tensor, got shape {Shape}");
        return DiagEmbed(diagonal, 0, 1);
    }

    /// <summary>
    /// The last dim placed on a diagonal of new matrices (PyTorch diag_embed): the result has one more dim, dims
    /// <paramref name="dim1"/> and <paramref name="dim2"/> (of the result) are both n + |offset| for a last dim of n,
    /// and result.Diagonal(offset, dim1, dim2) equals this tensor; every other element is zero.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The tensor is 0-D.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A dim is outside -(rank+1)..rank.</exception>
    /// <exception cref="ArgumentException">dim1 and dim2 are the same dim.</exception>
    public Tensor DiagEmbed(int offset = 0, int dim1 = -2, int dim2 = -1)
    {
        Storage.ThrowIfDisposed("diag_embed");
        if (Rank == 0) throw new ShapeMismatchException("diag_embed", "input", "needs a tensor of at least 1 dim, got a 0-D tensor");
        var (a, b) = DiagonalDims(dim1, dim2, Rank + 1, "diag_embed");
        int n = checked(Shape[^1] + Math.Abs(offset));
        var dims = Shape.ToArray()[..^1].ToList();
        dims.Insert(Math.Min(a, b), n);
        dims.Insert(Math.Max(a, b), n);
        var y = Zeros(new Shape(dims.ToArray()), DType, Device);
        if (Numel > 0) Backend.Copy(this, new Tensor(y.Storage, DiagonalLayout(y.Layout, offset, a, b)));
        return Record(y, "diag_embed", [this], g => [g.Diagonal(offset, a, b)]);
    }

    /// <summary>
    /// Coordinate grids of 0-D or 1-D tensors (PyTorch meshgrid): with "ij" indexing result k has shape [n0, n1, ...]
    /// and varies along dim k; "xy" swaps the first two dims (Cartesian order). The results are broadcast views.
    /// </summary>
    /// <exception cref="ArgumentException">No tensors, indexing is neither "ij" nor "xy", or the dtypes or devices differ.</exception>
    /// <exception cref="ShapeMismatchException">A tensor has more than one dim.</exception>
    public static Tensor[] Meshgrid(Tensor[] tensors, string indexing = "ij")
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (indexing is not ("ij" or "xy")) throw new ArgumentException($"meshgrid: indexing must be \"ij\" or \"xy\", got \"{indexing}\"", nameof(indexing));
        if (tensors.Length == 0) throw new ArgumentException("meshgrid: no tensors given", nameof(tensors));
        for (int i = 0; i < tensors.Length; i++)
        {
            tensors[i].Storage.ThrowIfDisposed("meshgrid");
            if (tensors[i].Rank > 1) throw new ShapeMismatchException("meshgrid", nameof(tensors), $"tensors[{i}] must be 0-D or 1-D, got shape {tensors[i].Shape}");
            Check.SameDType(tensors[0], tensors[i], "meshgrid", nameof(tensors));
            Check.SameDevice(tensors[0], tensors[i], "meshgrid", nameof(tensors));
        }
        var shape = tensors.Select(t => t.Numel).ToArray();
        bool xy = indexing == "xy" && tensors.Length >= 2;
        if (xy) (shape[0], shape[1]) = (shape[1], shape[0]);
        return tensors.Select((t, i) =>
        {
            var view = Enumerable.Repeat(1, shape.Length).ToArray();
            view[xy && i < 2 ? 1 - i : i] = t.Numel;
            return t.Reshape(view).BroadcastTo(new Shape(shape));
        }).ToArray();
    }

    /// <summary>
    /// The indices of the non-zero (true) elements of <paramref name="condition"/>, one Int64 vector per dim (PyTorch
    /// torch.where(condition), the same as nonzero(as_tuple=True)); a 0-D condition counts as 1-D. NaN is non-zero.
    /// A host path, like <see cref="Nonzero"/>; each vector has its own storage.
    /// </summary>
    public static Tensor[] Where(Tensor condition)
    {
        ArgumentNullException.ThrowIfNull(condition);
        condition.Storage.ThrowIfDisposed("where");
        var c = condition.Rank == 0 ? condition.Reshape(1) : condition;
        var nz = c.Nonzero();
        // A copy per dim: views of one storage would all be freed when any one of them is disposed.
        return Enumerable.Range(0, c.Rank).Select(d => nz.Narrow(1, d, 1).Squeeze(1).Clone()).ToArray();
    }
}
