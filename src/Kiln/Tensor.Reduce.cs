using Kiln.Kernels;

namespace Kiln;

public partial class Tensor
{
    int[] NormalizeAxes(int[]? axes, string op)
    {
        if (axes is null || axes.Length == 0) return Enumerable.Range(0, Rank).ToArray();
        var a = axes.Select(x => Check.Axis(x, Rank, op)).ToArray();
        if (a.Distinct().Count() != a.Length) throw new ArgumentException($"{op}: axis repeated in [{string.Join(", ", axes)}]", nameof(axes));
        Array.Sort(a);
        return Rank == 0 ? [] : a;
    }

    Shape ReducedShape(int[] axes, bool keepDim)
    {
        var dims = new List<int>();
        for (int i = 0; i < Rank; i++)
        {
            if (Array.IndexOf(axes, i) < 0) dims.Add(Shape[i]);
            else if (keepDim) dims.Add(1);
        }
        return new Shape(dims.ToArray());
    }

    /// <summary>
    /// Reduces <paramref name="axes"/> with a primitive (no gradient): the kept axes go first, so the reduced block is one
    /// contiguous run per output (rows), or when the reduced axes are already outermost, whole rows are combined (cols).
    /// </summary>
    Tensor ReducePrimitive(ReduceOp op, int[] axes, bool keepDim)
    {
        var outShape = ReducedShape(axes, keepDim);
        var y = Empty(outShape, DType, Device);
        int len = 1; foreach (int a in axes) len *= Shape[a];
        int kept = Numel == 0 ? outShape.Numel : Numel / Math.Max(len, 1);
        if (kept == 0) return y;
        bool prefix = axes.Length > 0 && axes[^1] == axes.Length - 1;
        if (prefix && IsContiguous && axes.Length < Rank)
        {
            Backend.ReduceCols(op, this, len, kept, y);
            return y;
        }
        var keptAxes = Enumerable.Range(0, Rank).Where(i => Array.IndexOf(axes, i) < 0);
        var x = Permute(keptAxes.Concat(axes).ToArray()).Detach().Contiguous();
        Backend.ReduceRows(op, x, kept, len, y);
        return y;
    }

    // PyTorch's rule for sums and products: Bool and Int32 inputs give Int64, computed in 64-bit integers.
    bool WidensToInt64 => DType is DType.Bool or DType.Int32;

    /// <summary>
    /// Sum over <paramref name="axes"/> (all when none given). Bool, Int32 and Int64 inputs give Int64 (PyTorch's rule),
    /// summed exactly in 64-bit integers (wrapping on overflow).
    /// </summary>
    public Tensor Sum(int[]? axes = null, bool keepDim = false)
    {
        Storage.ThrowIfDisposed("sum");
        if (WidensToInt64) return To(DType.Int64).Sum(axes, keepDim);
        if (Autocast.Raises(this)) return Autocast.Raise(this).Sum(axes, keepDim);
        var ax = NormalizeAxes(axes, "sum");
        var src = Shape;
        var y = ReducePrimitive(ReduceOp.Sum, ax, keepDim);
        return Record(y, "sum", [this], g => [g.Reshape(ReducedShape(ax, true).ToArray()).BroadcastTo(src)]);
    }

    /// <summary>Sum over one axis.</summary>
    public Tensor Sum(int axis, bool keepDim = false) => Sum([axis], keepDim);

    /// <summary>Mean over <paramref name="axes"/> (all when none given).</summary>
    /// <exception cref="NotSupportedException">The input is not floating (as PyTorch, the mean of integers is refused; convert first).</exception>
    public Tensor Mean(int[]? axes = null, bool keepDim = false)
    {
        Check.Floating(this, "mean", "input");
        if (Autocast.Raises(this)) return Autocast.Raise(this).Mean(axes, keepDim);
        // A half input reduces in Float32 and rounds its result once, as PyTorch's; the gradient returns in its dtype.
        if (DType.IsHalf()) return To(DType.Float32).Mean(axes, keepDim).To(DType);
        var ax = NormalizeAxes(axes, "mean");
        int n = 1; foreach (int a in ax) n *= Shape[a];
        return Sum(ax, keepDim) / n;
    }

    /// <summary>Mean over one axis.</summary>
    public Tensor Mean(int axis, bool keepDim = false) => Mean([axis], keepDim);

    /// <summary>Variance over <paramref name="axes"/> by two passes (mean, then centred squares): stable for large offsets.
    /// <paramref name="correction"/> 1 (default) gives the unbiased estimate, 0 the population variance.</summary>
    public Tensor Var(int[]? axes = null, bool keepDim = false, int correction = 1)
    {
        Check.Floating(this, "var", "input");
        if (Autocast.Raises(this)) return Autocast.Raise(this).Var(axes, keepDim, correction);
        if (DType.IsHalf()) return To(DType.Float32).Var(axes, keepDim, correction).To(DType);
        var ax = NormalizeAxes(axes, "var");
        int n = 1; foreach (int a in ax) n *= Shape[a];
        var d = this - Mean(ax, keepDim: true);
        return (d * d).Sum(ax, keepDim) / Math.Max(n - correction, 0);
    }

    /// <summary>Variance over one axis.</summary>
    public Tensor Var(int axis, bool keepDim = false, int correction = 1) => Var([axis], keepDim, correction);

    /// <summary>Standard deviation: sqrt of <see cref="Var(int[], bool, int)"/>.</summary>
    public Tensor Std(int[]? axes = null, bool keepDim = false, int correction = 1) => Var(axes, keepDim, correction).Sqrt();

    /// <summary>Standard deviation over one axis.</summary>
    public Tensor Std(int axis, bool keepDim = false, int correction = 1) => Std([axis], keepDim, correction);

    /// <summary>
    /// Product over <paramref name="axes"/>; its gradient is prod / x, so inputs with zeros give no finite gradient there.
    /// Bool, Int32 and Int64 inputs give Int64 (PyTorch's rule), multiplied exactly in 64-bit integers (wrapping on overflow).
    /// </summary>
    public Tensor Prod(int[]? axes = null, bool keepDim = false)
    {
        Storage.ThrowIfDisposed("prod");
        if (WidensToInt64) return To(DType.Int64).Prod(axes, keepDim);
        if (Autocast.Raises(this)) return Autocast.Raise(this).Prod(axes, keepDim);
        var ax = NormalizeAxes(axes, "prod");
        var y = ReducePrimitive(ReduceOp.Prod, ax, keepDim);
        var src = Shape;
        return Record(y, "prod", [this], g =>
        {
            var k = ReducedShape(ax, true).ToArray();
            return [g.Reshape(k).BroadcastTo(src) * y.Reshape(k).BroadcastTo(src) / this];
        });
    }

    /// <summary>Maximum over <paramref name="axes"/> (all when none given); ties share the gradient evenly.</summary>
    /// <exception cref="ArgumentException">A reduced axis is empty.</exception>
    public Tensor Amax(int[]? axes = null, bool keepDim = false) => Extreme(ReduceOp.Max, axes, keepDim, "amax");

    /// <summary>Minimum over <paramref name="axes"/> (all when none given); ties share the gradient evenly.</summary>
    public Tensor Amin(int[]? axes = null, bool keepDim = false) => Extreme(ReduceOp.Min, axes, keepDim, "amin");

    Tensor Extreme(ReduceOp op, int[]? axes, bool keepDim, string name)
    {
        Storage.ThrowIfDisposed(name);
        var ax = NormalizeAxes(axes, name);
        foreach (int a in ax) if (Shape[a] == 0) throw new ArgumentException($"{name}: axis {a} of shape {Shape} is empty; the {name} of nothing is undefined", nameof(axes));
        var y = ReducePrimitive(op, ax, keepDim);
        if (!DType.IsFloating()) return y;
        var src = Shape;
        return Record(y, name, [this], g =>
        {
            var k = ReducedShape(ax, true).ToArray();
            var mask = this.Detach().Eq(y.Detach().Reshape(k)).To(DType);
            var count = mask.Sum(ax, keepDim: true);
            return [g.Reshape(k).BroadcastTo(src) * mask / count];
        });
    }

    /// <summary>Maximum along <paramref name="axis"/> with the index of its first occurrence (Int64).</summary>
    public (Tensor Values, Tensor Indices) Max(int axis, bool keepDim = false) => ArgExtreme(true, axis, keepDim, "max");

    /// <summary>Minimum along <paramref name="axis"/> with the index of its first occurrence (Int64).</summary>
    public (Tensor Values, Tensor Indices) Min(int axis, bool keepDim = false) => ArgExtreme(false, axis, keepDim, "min");

    /// <summary>The maximum of all elements.</summary>
    public Tensor Max() => Amax();
    /// <summary>The minimum of all elements.</summary>
    public Tensor Min() => Amin();

    /// <summary>Index (Int64) of the first maximum along <paramref name="axis"/>, or of the flattened tensor when null.</summary>
    public Tensor ArgMax(int? axis = null, bool keepDim = false) =>
        axis is int a ? ArgExtreme(true, a, keepDim, "argmax").Indices : Reshape(-1).ArgExtreme(true, 0, false, "argmax").Indices;

    /// <summary>Index (Int64) of the first minimum along <paramref name="axis"/>, or of the flattened tensor when null.</summary>
    public Tensor ArgMin(int? axis = null, bool keepDim = false) =>
        axis is int a ? ArgExtreme(false, a, keepDim, "argmin").Indices : Reshape(-1).ArgExtreme(false, 0, false, "argmin").Indices;

    (Tensor Values, Tensor Indices) ArgExtreme(bool max, int axis, bool keepDim, string name)
    {
        Storage.ThrowIfDisposed(name);
        int a = Check.Axis(axis, Rank, name);
        if (Rank > 0 && Shape[a] == 0) throw new ArgumentException($"{name}: axis {axis} of shape {Shape} is empty", nameof(axis));
        var outShape = ReducedShape(Rank == 0 ? [] : [a], keepDim);
        int len = Rank == 0 ? 1 : Shape[a], rows = Numel / Math.Max(len, 1);
        var perm = Enumerable.Range(0, Rank).Where(i => i != a).Append(a).ToArray();
        var x = (Rank == 0 ? this : Permute(perm)).Detach().Contiguous();
        var values = Empty(outShape, DType, Device);
        var indices = Empty(outShape, DType.Int64, Device);
        if (rows > 0) Backend.ArgReduceRows(max, x, rows, len, values, indices);
        if (!DType.IsFloating() || Rank == 0) return (values, indices);
        var src = Shape;
        var v = Record(values, name, [this], g =>
        {
            var idx = keepDim ? indices : indices.Unsqueeze(a);
            var gk = keepDim ? g : g.Unsqueeze(a);
            return [Zeros(src, DType, Device).ScatterAdd(a, idx, gk)];
        });
        return (v, indices);
    }

    /// <summary>log(sum(exp(x))) over <paramref name="axes"/>, shifted by the maximum so it never overflows.</summary>
    public Tensor LogSumExp(int[]? axes = null, bool keepDim = false)
    {
        Check.Floating(this, "logsumexp", "input");
        if (Autocast.Raises(this)) return Autocast.Raise(this).LogSumExp(axes, keepDim);
        if (DType.IsHalf()) return To(DType.Float32).LogSumExp(axes, keepDim).To(DType);
        var ax = NormalizeAxes(axes, "logsumexp");
        Tensor m;
        using (Autograd.NoGrad())
        {
            m = Amax(ax, keepDim: true);
            m = Where(m.Abs().Eq(m.ScalarLike(double.PositiveInfinity)), m.ZerosLike(), m);
        }
        var s = (this - m).Exp().Sum(ax, keepDim: true).Log() + m;
        return keepDim ? s : s.Reshape(ReducedShape(ax, false).ToArray());
    }

    /// <summary>LogSumExp over one axis.</summary>
    public Tensor LogSumExp(int axis, bool keepDim = false) => LogSumExp([axis], keepDim);

    /// <summary>The p-norm over <paramref name="axes"/>: p = 1, 2 (default) or infinity, or any p &gt; 0.</summary>
    public Tensor Norm(double p = 2, int[]? axes = null, bool keepDim = false)
    {
        Check.Floating(this, "norm", "input");
        if (!(p > 0)) throw new ArgumentOutOfRangeException(nameof(p), p, "norm: p must be positive (or infinity)");
        if (Autocast.Raises(this)) return Autocast.Raise(this).Norm(p, axes, keepDim);
        if (DType.IsHalf()) return To(DType.Float32).Norm(p, axes, keepDim).To(DType);
        if (double.IsPositiveInfinity(p)) return Abs().Amax(axes, keepDim);
        if (p == 1) return Abs().Sum(axes, keepDim);
        if (p == 2) return Square().Sum(axes, keepDim).Sqrt();
        return Abs().Pow(p).Sum(axes, keepDim).Pow(1.0 / p);
    }

    /// <summary>True where any element along <paramref name="axes"/> is true (Bool input).</summary>
    public Tensor Any(int[]? axes = null, bool keepDim = false) => AnyAll(false, axes, keepDim);
    /// <summary>True where every element along <paramref name="axes"/> is true (Bool input).</summary>
    public Tensor All(int[]? axes = null, bool keepDim = false) => AnyAll(true, axes, keepDim);

    Tensor AnyAll(bool all, int[]? axes, bool keepDim)
    {
        string name = all ? "all" : "any";
        if (DType != DType.Bool) throw new NotSupportedException($"{name}: input must be Bool, not {DType} (compare first, e.g. x != 0)");
        var ax = NormalizeAxes(axes, name);
        var outShape = ReducedShape(ax, keepDim);
        int len = 1; foreach (int a in ax) len *= Shape[a];
        var keptAxes = Enumerable.Range(0, Rank).Where(i => Array.IndexOf(ax, i) < 0);
        var x = Permute(keptAxes.Concat(ax).ToArray()).Contiguous();
        var y = Empty(outShape, DType.Bool, Device);
        if (outShape.Numel > 0) Backend.AnyAllRows(all, x, outShape.Numel, len, y);
        return y;
    }

    /// <summary>
    /// Inclusive cumulative sum along <paramref name="axis"/>. Bool, Int32 and Int64 inputs give Int64 (PyTorch's rule),
    /// summed exactly in 64-bit integers (wrapping on overflow).
    /// </summary>
    public Tensor Cumsum(int axis)
    {
        Storage.ThrowIfDisposed("cumsum");
        int a = Check.Axis(axis, Rank, "cumsum");
        if (Autocast.Raises(this)) return Autocast.Raise(this).Cumsum(axis);
        return WidensToInt64 ? To(DType.Int64).CumsumImpl(a, reverse: false) : CumsumImpl(a, reverse: false);
    }

    Tensor CumsumImpl(int a, bool reverse)
    {
        Storage.ThrowIfDisposed("cumsum");
        if (Rank == 0) return Clone();
        var perm = Enumerable.Range(0, Rank).Where(i => i != a).Append(a).ToArray();
        var inv = new int[Rank]; for (int i = 0; i < Rank; i++) inv[perm[i]] = i;
        var x = Permute(perm).Detach().Contiguous();
        var y = Empty(x.Shape, DType, Device);
        int len = Shape[a];
        if (Numel > 0) Backend.CumsumRows(x, Numel / len, len, reverse, y);
        var result = y.Permute(inv).Detach();
        return Record(result, "cumsum", [this], g => [g.CumsumImpl(a, !reverse)]);
    }

    /// <summary>
    /// Inclusive cumulative product along <paramref name="axis"/> (PyTorch's cumprod): Bool, Int32 and Int64 inputs give
    /// Int64 like <see cref="Cumsum"/>, multiplied exactly in 64-bit integers (wrapping on overflow). Its gradient is exact with
    /// zeros in the input: before the first zero of a line it is sum_{j&gt;=i} g_j y_j / x_i, at the first zero the
    /// product of the other factors, and zero after it.
    /// </summary>
    /// <exception cref="NotSupportedException">The dtype has no kernel (halves).</exception>
    public Tensor Cumprod(int axis)
    {
        Storage.ThrowIfDisposed("cumprod");
        int a = Check.Axis(axis, Rank, "cumprod");
        if (WidensToInt64) return To(DType.Int64).Cumprod(axis);
        var y = ScanAlong(ScanOp.Prod, a, reverse: false, "cumprod").Values;
        if (!DType.IsFloating()) return y;
        return Record(y, "cumprod", [this], g => [CumprodGrad(a, y, g)]);
    }

    Tensor CumprodGrad(int a, Tensor y, Tensor g)
    {
        if (Rank == 0) return g;
        var x = Detach();
        var zeros = x.Eq(x.ZerosLike()).To(DType);
        var seen = zeros.CumsumImpl(a, reverse: false);
        // Lines are split at their first zero: no zero up to i (before), that zero (first), and everything after it.
        var before = seen.Eq(seen.ZerosLike());
        var first = (zeros * seen).Eq(x.OnesLike());
        var gBefore = (g * y).CumsumImpl(a, reverse: true) / Where(before, x, x.OnesLike());
        // At the first zero, the product of every other factor: the cumprod with that zero taken as one.
        var y1 = Where(first, x.OnesLike(), x).ScanAlong(ScanOp.Prod, a, reverse: false, "cumprod").Values;
        var gFirst = (g * y1).CumsumImpl(a, reverse: true);
        return Where(before, gBefore, Where(first, gFirst, x.ZerosLike()));
    }

    /// <summary>
    /// Running maximum along <paramref name="axis"/> with the Int64 index of where it was taken (PyTorch's cummax: on ties
    /// the later index; NaN propagates and the index follows the last NaN). The gradient flows to those indices.
    /// </summary>
    /// <exception cref="NotSupportedException">The dtype has no kernel (Bool, halves).</exception>
    public (Tensor Values, Tensor Indices) Cummax(int axis) => CumExtreme(ScanOp.Max, axis, "cummax");

    /// <summary>
    /// Running minimum along <paramref name="axis"/> with the Int64 index of where it was taken (PyTorch's cummin: on ties
    /// the later index; NaN propagates and the index follows the last NaN). The gradient flows to those indices.
    /// </summary>
    /// <exception cref="NotSupportedException">The dtype has no kernel (Bool, halves).</exception>
    public (Tensor Values, Tensor Indices) Cummin(int axis) => CumExtreme(ScanOp.Min, axis, "cummin");

    (Tensor Values, Tensor Indices) CumExtreme(ScanOp op, int axis, string name)
    {
        Storage.ThrowIfDisposed(name);
        int a = Check.Axis(axis, Rank, name);
        var (values, indices) = ScanAlong(op, a, reverse: false, name);
        if (!DType.IsFloating()) return (values, indices!);
        var src = Shape;
        return (Record(values, name, [this], g => [Rank == 0 ? g : Zeros(src, DType, Device).ScatterAdd(a, indices!, g)]), indices!);
    }

    /// <summary>
    /// log(cumsum(exp(x))) along <paramref name="axis"/> (PyTorch's logcumsumexp), one stable log-add-exp per element:
    /// no overflow for large inputs, -inf where every element so far is -inf, +inf once a +inf is seen, NaN after a NaN.
    /// </summary>
    /// <exception cref="NotSupportedException">The input is not Float32 or Float64.</exception>
    public Tensor LogCumSumExp(int axis)
    {
        Check.Floating(this, "logcumsumexp", "input");
        int a = Check.Axis(axis, Rank, "logcumsumexp");
        var y = ScanAlong(ScanOp.LogSumExp, a, reverse: false, "logcumsumexp").Values;
        return Record(y, "logcumsumexp", [this], g =>
        {
            // PyTorch's rule: dx_i = sum_{j>=i} g_j exp(x_i - y_j), with the positive and negative parts of g summed
            // apart in log space so nothing overflows.
            var x = Detach();
            var lowest = x.FullLike(DType == DType.Float32 ? float.MinValue : double.MinValue);
            var logPos = Where(g > 0.0, g.Log(), lowest);
            var logNeg = Where(g < 0.0, (-g).Log(), lowest);
            Tensor Part(Tensor logG) => ((logG - y).ScanAlong(ScanOp.LogSumExp, a, reverse: true, "logcumsumexp").Values + x).Exp();
            return [Part(logPos) - Part(logNeg)];
        });
    }

    /// <summary>Runs scan <paramref name="op"/> along axis <paramref name="a"/> (no gradient); indices for Max and Min.</summary>
    (Tensor Values, Tensor? Indices) ScanAlong(ScanOp op, int a, bool reverse, string name)
    {
        bool arg = op is ScanOp.Max or ScanOp.Min;
        if (Rank == 0) return (Detach().Clone(), arg ? Zeros(Shape, DType.Int64, Device) : null);
        var (x, inv, len) = RowsAlong(a, name);
        var y = Empty(x.Shape, DType, Device);
        var idx = arg ? Empty(x.Shape, DType.Int64, Device) : null;
        if (Numel > 0) Backend.ScanRows(op, x, Numel / len, len, reverse, y, idx);
        return (y.Permute(inv).Contiguous().Detach(), idx?.Permute(inv).Contiguous());
    }
}
