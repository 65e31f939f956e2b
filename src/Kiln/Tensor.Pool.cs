using Kiln.Kernels;

namespace Kiln;

public partial class Tensor
{
    /// <summary>
    /// The output extent of a pooling window along one dim (PyTorch's formula): floor (or ceil) of
    /// (in + 2 padding - dilation (kernel - 1) - 1) / stride, plus 1; with ceil mode the last window must start inside the
    /// input or its left padding, else it is dropped.
    /// </summary>
    public static int PoolOutputSize(int inputSize, int kernelSize, int stride, int padding, int dilation, bool ceilMode)
    {
        int span = dilation * (kernelSize - 1) + 1, num = inputSize + 2 * padding - span;
        int o = (ceilMode ? (num + stride - 1) / stride : num / stride) + 1;
        if (ceilMode && (o - 1) * stride >= inputSize + padding) o--;
        return o;
    }

    // Expands a per-dim argument given once or once per spatial dim.
    static int[] PerDim(int[]? v, int n, int fallback, string op, string name)
    {
        if (v is null) return Enumerable.Repeat(fallback, n).ToArray();
        if (v.Length == 1) return Enumerable.Repeat(v[0], n).ToArray();
        if (v.Length != n) throw new ArgumentException($"{op}: {name} has {v.Length} values [{string.Join(", ", v)}]; give 1 or {n}", name);
        return (int[])v.Clone();
    }

    // The input as (leading dims, spatial dims): [N, C, *spatial] or unbatched [C, *spatial].
    (int[] Lead, int[] Spatial) PoolInput(int n, string op)
    {
        Storage.ThrowIfDisposed(op);
        Check.Floating(this, op, "input");
        if (Rank != n + 1 && Rank != n + 2)
            throw new ShapeMismatchException(op, "input", $"input must be [N, C, {SpatialNames(n)}] or [C, {SpatialNames(n)}], got shape {Shape}");
        var dims = Shape.ToArray();
        var spatial = dims[^n..];
        if (spatial.Contains(0))
            throw new ShapeMismatchException(op, "input", $"spatial dims must be non-empty (the batch and channels may be 0), got shape {Shape}");
        return (dims[..^n], spatial);
    }

    static string SpatialNames(int n) => n switch { 1 => "L", 2 => "H, W", _ => "D, H, W" };

    // PoolArgs with the spatial dims right-aligned into [D, H, W]; unused dims get a unit window.
    static PoolArgs Geometry(int planes, int[] inS, int[] outS, int[] k, int[] s, int[] p, int[] d)
    {
        int n = inS.Length;
        int At(int[] v, int dim, int unit) => dim - (3 - n) is var i && i >= 0 ? v[i] : unit;
        return new PoolArgs
        {
            Planes = planes,
            ID = At(inS, 0, 1), IH = At(inS, 1, 1), IW = At(inS, 2, 1),
            OD = At(outS, 0, 1), OH = At(outS, 1, 1), OW = At(outS, 2, 1),
            KD = At(k, 0, 1), KH = At(k, 1, 1), KW = At(k, 2, 1),
            SD = At(s, 0, 1), SH = At(s, 1, 1), SW = At(s, 2, 1),
            PD = At(p, 0, 0), PH = At(p, 1, 0), PW = At(p, 2, 0),
            DD = At(d, 0, 1), DH = At(d, 1, 1), DW = At(d, 2, 1),
        };
    }

    // Checks a fixed-window pooling's arguments and returns its geometry and output spatial extents.
    (PoolArgs Args, int[] Lead, int[] Out) FixedPool(string op, int[] kernelSize, int[]? stride, int[]? padding, int[]? dilation, bool ceilMode)
    {
        ArgumentNullException.ThrowIfNull(kernelSize);
        int n = kernelSize.Length;
        if (n is < 1 or > 3) throw new ArgumentException($"{op}: kernelSize has {n} values; pooling is 1d, 2d or 3d", nameof(kernelSize));
        var (lead, inS) = PoolInput(n, op);
        var k = kernelSize;
        var s = stride is null || stride.Length == 0 ? k : PerDim(stride, n, 1, op, nameof(stride));
        var p = PerDim(padding, n, 0, op, nameof(padding));
        var d = PerDim(dilation, n, 1, op, nameof(dilation));
        var outS = new int[n];
        for (int i = 0; i < n; i++)
        {
            if (k[i] < 1) throw new ArgumentOutOfRangeException(nameof(kernelSize), k[i], $"{op}: kernelSize must be positive, got [{string.Join(", ", k)}]");
            if (s[i] < 1) throw new ArgumentOutOfRangeException(nameof(stride), s[i], $"{op}: stride must be positive, got [{string.Join(", ", s)}]");
            if (d[i] < 1) throw new ArgumentOutOfRangeException(nameof(dilation), d[i], $"{op}: dilation must be positive, got [{string.Join(", ", d)}]");
            if (p[i] < 0) throw new ArgumentOutOfRangeException(nameof(padding), p[i], $"{op}: padding must not be negative, got [{string.Join(", ", p)}]");
            // PyTorch's limit: more padding would allow windows that hold nothing but padding.
            if (p[i] > k[i] / 2)
                throw new ArgumentException($"{op}: padding {p[i]} is more than half of kernel size {k[i]} in spatial dim {i}", nameof(padding));
            int span = d[i] * (k[i] - 1) + 1;
            if (span > inS[i] + 2 * p[i])
                throw new ArgumentException($"{op}: kernel size {k[i]} (dilated to {span}) is larger than the padded input size {inS[i]} + 2 * {p[i]} in spatial dim {i}", nameof(kernelSize));
            outS[i] = PoolOutputSize(inS[i], k[i], s[i], p[i], d[i], ceilMode);
            if (outS[i] < 1) throw new ArgumentException($"{op}: output size {outS[i]} < 1 in spatial dim {i} (input {inS[i]}, kernel {k[i]}, stride {s[i]}, padding {p[i]})", nameof(kernelSize));
        }
        return (Geometry(lead.Aggregate(1, (a, b) => a * b), inS, outS, k, s, p, d), lead, outS);
    }

    (PoolArgs Args, int[] Lead, int[] Out) AdaptivePool(string op, int[] outputSize)
    {
        ArgumentNullException.ThrowIfNull(outputSize);
        int n = outputSize.Length;
        if (n is < 1 or > 3) throw new ArgumentException($"{op}: outputSize has {n} values; pooling is 1d, 2d or 3d", nameof(outputSize));
        var (lead, inS) = PoolInput(n, op);
        if (outputSize.Any(o => o < 1))
            throw new ArgumentOutOfRangeException(nameof(outputSize), $"{op}: outputSize must be positive, got [{string.Join(", ", outputSize)}]");
        var ones = Enumerable.Repeat(1, n).ToArray();
        var a = Geometry(lead.Aggregate(1, (x, y) => x * y), inS, outputSize, ones, ones, new int[n], ones);
        a.Adaptive = 1;
        return (a, lead, (int[])outputSize.Clone());
    }

    // Runs the pooling kernel and records its gradient (the backward kernel, itself differentiable).
    (Tensor Values, Tensor? Indices) RunPool(string op, PoolArgs a, int[] lead, int[] outS)
    {
        var outShape = new Shape([.. lead, .. outS]);
        var y = Empty(outShape, DType, Device);
        var idx = a.Avg == 0 ? Empty(outShape, DType.Int64, Device) : null;
        if (y.Numel > 0) Backend.PoolForward(Detach().Contiguous(), a, y, idx);
        var inShape = Shape;
        Record(y, op, [this], g => [PoolGrad(op, g, idx, a, inShape, lead, outS)]);
        return (y, idx);
    }

    static Tensor PoolGrad(string op, Tensor g, Tensor? idx, PoolArgs a, Shape inShape, int[] lead, int[] outS)
    {
        var dx = Empty(inShape, g.DType, g.Device);
        if (dx.Numel > 0) g.Backend.PoolBackward(g.Detach().Contiguous(), idx, a, dx);
        // The backward pass is linear in g; its own gradient is the forward gather (max) or the average pooling again.
        return Record(dx, op + "_backward", [g], gg => [idx is null
            ? gg.RunPool(op, a, lead, outS).Values
            : gg.Reshape(a.Planes, a.InPlane).Gather(1, idx.Reshape(a.Planes, a.OutPlane)).Reshape([.. lead, .. outS])]);
    }

    /// <summary>
    /// Max pooling over the last <c>kernelSize.Length</c> (1 to 3) dims of [N, C, *spatial] or [C, *spatial] (PyTorch's
    /// max_pool1d/2d/3d with return_indices): each output is the largest value of its window (a NaN wins), with the flat
    /// index of that value within its input plane (row-major over the spatial dims), for <see cref="MaxUnpool"/>.
    /// Windows start at o * stride - padding and take kernelSize positions dilation apart; padded positions never win. A
    /// window that holds no input (dilation can step over a small input) gives -infinity at index -1, where PyTorch leaves
    /// an index outside the plane.
    /// </summary>
    /// <param name="kernelSize">The window, one extent per spatial dim.</param>
    /// <param name="stride">The step between windows: one value for every dim or one per dim; default the kernel size.</param>
    /// <param name="padding">Implicit padding on both sides (at most half the kernel size); default 0.</param>
    /// <param name="dilation">The step between window positions; default 1.</param>
    /// <param name="ceilMode">Round the output size up (a last partial window is kept when it starts inside the input or its left padding).</param>
    /// <returns>The pooled values [.., *out] and their Int64 indices of the same shape.</returns>
    /// <exception cref="ArgumentException">A non-positive kernel size, stride or dilation, negative padding or more than half the
    /// kernel, a kernel larger than the padded input, an empty spatial dim, or a rank that is not spatial + 1 or + 2.</exception>
    /// <exception cref="NotSupportedException">The input is not Float32 or Float64.</exception>
    public (Tensor Values, Tensor Indices) MaxPoolWithIndices(int[] kernelSize, int[]? stride = null, int[]? padding = null, int[]? dilation = null, bool ceilMode = false)
    {
        var (a, lead, outS) = FixedPool("max_pool", kernelSize, stride, padding, dilation, ceilMode);
        var (y, idx) = RunPool("max_pool", a, lead, outS);
        return (y, idx!);
    }

    /// <summary>Max pooling: the values of <see cref="MaxPoolWithIndices"/>.</summary>
    /// <inheritdoc cref="MaxPoolWithIndices" path="/param"/>
    /// <inheritdoc cref="MaxPoolWithIndices" path="/exception"/>
    public Tensor MaxPool(int[] kernelSize, int[]? stride = null, int[]? padding = null, int[]? dilation = null, bool ceilMode = false) =>
        MaxPoolWithIndices(kernelSize, stride, padding, dilation, ceilMode).Values;

    /// <summary>1d max pooling of [N, C, L] or [C, L] with the same window in every argument form as PyTorch's max_pool1d; see <see cref="MaxPoolWithIndices"/>.</summary>
    public Tensor MaxPool1d(int kernelSize, int? stride = null, int padding = 0, int dilation = 1, bool ceilMode = false) =>
        MaxPool([kernelSize], stride is { } s ? [s] : null, [padding], [dilation], ceilMode);

    /// <summary>2d max pooling of [N, C, H, W] or [C, H, W] with a square window (PyTorch's max_pool2d); see <see cref="MaxPoolWithIndices"/>.</summary>
    public Tensor MaxPool2d(int kernelSize, int? stride = null, int padding = 0, int dilation = 1, bool ceilMode = false) =>
        MaxPool([kernelSize, kernelSize], stride is { } s ? [s] : null, [padding], [dilation], ceilMode);

    /// <summary>3d max pooling of [N, C, D, H, W] or [C, D, H, W] with a cubic window (PyTorch's max_pool3d); see <see cref="MaxPoolWithIndices"/>.</summary>
    public Tensor MaxPool3d(int kernelSize, int? stride = null, int padding = 0, int dilation = 1, bool ceilMode = false) =>
        MaxPool([kernelSize, kernelSize, kernelSize], stride is { } s ? [s] : null, [padding], [dilation], ceilMode);

    /// <summary>
    /// Average pooling over the last <c>kernelSize.Length</c> (1 to 3) dims of [N, C, *spatial] or [C, *spatial] (PyTorch's
    /// avg_pool1d/2d/3d): each output is its window's sum divided by <paramref name="divisorOverride"/> when given, else by
    /// the window's size clipped to the padded input (<paramref name="countIncludePad"/>) or by the number of inputs it holds.
    /// </summary>
    /// <param name="kernelSize">The window, one extent per spatial dim.</param>
    /// <param name="stride">The step between windows: one value for every dim or one per dim; default the kernel size.</param>
    /// <param name="padding">Implicit zero padding on both sides (at most half the kernel size); default 0.</param>
    /// <param name="ceilMode">Round the output size up (a last partial window is kept when it starts inside the input or its left padding).</param>
    /// <param name="countIncludePad">Count padded positions in the divisor.</param>
    /// <param name="divisorOverride">A fixed positive divisor.</param>
    /// <exception cref="ArgumentException">A non-positive kernel size, stride or divisor, negative padding or more than half the
    /// kernel, a kernel larger than the padded input, an empty spatial dim, or a rank that is not spatial + 1 or + 2.</exception>
    /// <exception cref="NotSupportedException">The input is not Float32 or Float64.</exception>
    public Tensor AvgPool(int[] kernelSize, int[]? stride = null, int[]? padding = null, bool ceilMode = false, bool countIncludePad = true, int? divisorOverride = null)
    {
        if (divisorOverride is < 1) throw new ArgumentOutOfRangeException(nameof(divisorOverride), divisorOverride, "avg_pool: divisorOverride must be positive");
        var (a, lead, outS) = FixedPool("avg_pool", kernelSize, stride, padding, null, ceilMode);
        a.Avg = 1;
        a.CountIncludePad = countIncludePad ? 1 : 0;
        a.Divisor = divisorOverride ?? 0;
        return RunPool("avg_pool", a, lead, outS).Values;
    }

    /// <summary>1d average pooling of [N, C, L] or [C, L] (PyTorch's avg_pool1d); see <see cref="AvgPool"/>.</summary>
    public Tensor AvgPool1d(int kernelSize, int? stride = null, int padding = 0, bool ceilMode = false, bool countIncludePad = true) =>
        AvgPool([kernelSize], stride is { } s ? [s] : null, [padding], ceilMode, countIncludePad);

    /// <summary>2d average pooling of [N, C, H, W] or [C, H, W] with a square window (PyTorch's avg_pool2d); see <see cref="AvgPool"/>.</summary>
    public Tensor AvgPool2d(int kernelSize, int? stride = null, int padding = 0, bool ceilMode = false, bool countIncludePad = true, int? divisorOverride = null) =>
        AvgPool([kernelSize, kernelSize], stride is { } s ? [s] : null, [padding], ceilMode, countIncludePad, divisorOverride);

    /// <summary>3d average pooling of [N, C, D, H, W] or [C, D, H, W] with a cubic window (PyTorch's avg_pool3d); see <see cref="AvgPool"/>.</summary>
    public Tensor AvgPool3d(int kernelSize, int? stride = null, int padding = 0, bool ceilMode = false, bool countIncludePad = true, int? divisorOverride = null) =>
        AvgPool([kernelSize, kernelSize, kernelSize], stride is { } s ? [s] : null, [padding], ceilMode, countIncludePad, divisorOverride);

    /// <summary>
    /// Power-average pooling (PyTorch's lp_pool1d/2d/3d): (sum over the window of x^p)^(1/p), computed as PyTorch does,
    /// from the average pooling of x^p without padding times the window size. p = 1 is sum pooling; large p approaches
    /// max pooling. Odd p on negative inputs can give NaN, as in PyTorch.
    /// </summary>
    /// <param name="normType">The power p (positive).</param>
    /// <param name="kernelSize">The window, one extent per spatial dim.</param>
    /// <param name="stride">The step between windows; default the kernel size.</param>
    /// <param name="ceilMode">Round the output size up.</param>
    /// <exception cref="ArgumentException">p is not positive and finite, or the window does not fit (see <see cref="AvgPool"/>).</exception>
    public Tensor LpPool(double normType, int[] kernelSize, int[]? stride = null, bool ceilMode = false)
    {
        if (!(normType > 0) || double.IsInfinity(normType)) throw new ArgumentOutOfRangeException(nameof(normType), normType, "lp_pool: normType must be positive and finite");
        var avg = Pow(normType).AvgPool(kernelSize, stride, null, ceilMode);
        return (avg * kernelSize.Aggregate(1, (a, b) => a * b)).Pow(1 / normType);
    }

    /// <summary>2d power-average pooling with a square window (PyTorch's lp_pool2d); see <see cref="LpPool"/>.</summary>
    public Tensor LpPool2d(double normType, int kernelSize, int? stride = null, bool ceilMode = false) =>
        LpPool(normType, [kernelSize, kernelSize], stride is { } s ? [s] : null, ceilMode);

    /// <summary>1d power-average pooling (PyTorch's lp_pool1d); see <see cref="LpPool"/>.</summary>
    public Tensor LpPool1d(double normType, int kernelSize, int? stride = null, bool ceilMode = false) =>
        LpPool(normType, [kernelSize], stride is { } s ? [s] : null, ceilMode);

    /// <summary>
    /// Adaptive average pooling to <paramref name="outputSize"/> over the last <c>outputSize.Length</c> (1 to 3) dims
    /// (PyTorch's adaptive_avg_pool1d/2d/3d): output o of a dim of input size I and output size O averages inputs
    /// [floor(o I / O), ceil((o + 1) I / O)). An output size of 1 everywhere is global average pooling.
    /// </summary>
    /// <exception cref="ArgumentException">A non-positive output size, an empty spatial dim, or a rank that is not spatial + 1 or + 2.</exception>
    public Tensor AdaptiveAvgPool(int[] outputSize)
    {
        var (a, lead, outS) = AdaptivePool("adaptive_avg_pool", outputSize);
        a.Avg = 1;
        return RunPool("adaptive_avg_pool", a, lead, outS).Values;
    }

    /// <summary>Adaptive max pooling over the windows of <see cref="AdaptiveAvgPool"/>, with the flat index of each maximum in its input plane (PyTorch's adaptive_max_pool with return_indices).</summary>
    /// <exception cref="ArgumentException">A non-positive output size, an empty spatial dim, or a rank that is not spatial + 1 or + 2.</exception>
    public (Tensor Values, Tensor Indices) AdaptiveMaxPoolWithIndices(int[] outputSize)
    {
        var (a, lead, outS) = AdaptivePool("adaptive_max_pool", outputSize);
        var (y, idx) = RunPool("adaptive_max_pool", a, lead, outS);
        return (y, idx!);
    }

    /// <summary>Adaptive max pooling: the values of <see cref="AdaptiveMaxPoolWithIndices"/>.</summary>
    public Tensor AdaptiveMaxPool(int[] outputSize) => AdaptiveMaxPoolWithIndices(outputSize).Values;

    /// <summary>Adaptive 1d average pooling of [N, C, L] or [C, L] to length <paramref name="outputSize"/>; see <see cref="AdaptiveAvgPool"/>.</summary>
    public Tensor AdaptiveAvgPool1d(int outputSize) => AdaptiveAvgPool([outputSize]);
    /// <summary>Adaptive 2d average pooling of [N, C, H, W] or [C, H, W] to [outputH, outputW]; see <see cref="AdaptiveAvgPool"/>.</summary>
    public Tensor AdaptiveAvgPool2d(int outputH, int outputW) => AdaptiveAvgPool([outputH, outputW]);
    /// <summary>Adaptive 2d average pooling to a square output; see <see cref="AdaptiveAvgPool"/>.</summary>
    public Tensor AdaptiveAvgPool2d(int outputSize) => AdaptiveAvgPool([outputSize, outputSize]);
    /// <summary>Adaptive 3d average pooling of [N, C, D, H, W] or [C, D, H, W] to a cubic output; see <see cref="AdaptiveAvgPool"/>.</summary>
    public Tensor AdaptiveAvgPool3d(int outputSize) => AdaptiveAvgPool([outputSize, outputSize, outputSize]);
    /// <summary>Adaptive 1d max pooling; see <see cref="AdaptiveMaxPoolWithIndices"/>.</summary>
    public Tensor AdaptiveMaxPool1d(int outputSize) => AdaptiveMaxPool([outputSize]);
    /// <summary>Adaptive 2d max pooling to a square output; see <see cref="AdaptiveMaxPoolWithIndices"/>.</summary>
    public Tensor AdaptiveMaxPool2d(int outputSize) => AdaptiveMaxPool([outputSize, outputSize]);
    /// <summary>Adaptive 3d max pooling to a cubic output; see <see cref="AdaptiveMaxPoolWithIndices"/>.</summary>
    public Tensor AdaptiveMaxPool3d(int outputSize) => AdaptiveMaxPool([outputSize, outputSize, outputSize]);

    /// <summary>Global average pooling: the mean over the last <paramref name="spatialDims"/> (1 to 3) dims, keeping them as extent 1 (adaptive pooling to 1).</summary>
    public Tensor GlobalAvgPool(int spatialDims = 2) => AdaptiveAvgPool(Enumerable.Repeat(1, spatialDims).ToArray());
    /// <summary>Global max pooling: the maximum over the last <paramref name="spatialDims"/> (1 to 3) dims, keeping them as extent 1 (adaptive pooling to 1).</summary>
    public Tensor GlobalMaxPool(int spatialDims = 2) => AdaptiveMaxPool(Enumerable.Repeat(1, spatialDims).ToArray());

    /// <summary>
    /// The partial inverse of max pooling (PyTorch's max_unpool1d/2d/3d): a zero tensor of the unpooled size with each
    /// input value written at its flat index (from <see cref="MaxPoolWithIndices"/>) within its plane. The default output
    /// extent of a dim is (in - 1) stride - 2 padding + kernel; <paramref name="outputSize"/> (the spatial extents) may
    /// give another within stride of it.
    /// </summary>
    /// <exception cref="ArgumentException">The indices are not Int64 of the input's shape, an output size is out of range, or an index lies outside the output plane.</exception>
    public Tensor MaxUnpool(Tensor indices, int[] kernelSize, int[]? stride = null, int[]? padding = null, int[]? outputSize = null)
    {
        ArgumentNullException.ThrowIfNull(indices);
        ArgumentNullException.ThrowIfNull(kernelSize);
        int n = kernelSize.Length;
        if (n is < 1 or > 3) throw new ArgumentException($"max_unpool: kernelSize has {n} values; unpooling is 1d, 2d or 3d", nameof(kernelSize));
        var (lead, inS) = PoolInput(n, "max_unpool");
        if (indices.DType != DType.Int64) throw new ArgumentException($"max_unpool: indices must be Int64, not {indices.DType}", nameof(indices));
        if (indices.Shape != Shape) throw new ShapeMismatchException("max_unpool", nameof(indices), Shape, indices.Shape, "indices must have the input's shape");
        var s = stride is null || stride.Length == 0 ? kernelSize : PerDim(stride, n, 1, "max_unpool", nameof(stride));
        var p = PerDim(padding, n, 0, "max_unpool", nameof(padding));
        var outS = new int[n];
        for (int i = 0; i < n; i++)
        {
            if (kernelSize[i] < 1 || s[i] < 1 || p[i] < 0)
                throw new ArgumentOutOfRangeException(nameof(kernelSize), $"max_unpool: kernel size {kernelSize[i]} and stride {s[i]} must be positive and padding {p[i]} not negative");
            int def = (inS[i] - 1) * s[i] - 2 * p[i] + kernelSize[i];
            outS[i] = outputSize is null ? def : outputSize.Length == n ? outputSize[i]
                : throw new ArgumentException($"max_unpool: outputSize has {outputSize.Length} values; give {n}", nameof(outputSize));
            if (outS[i] < 1 || outS[i] <= def - s[i] || outS[i] >= def + s[i])
                throw new ArgumentException($"max_unpool: output size {outS[i]} in spatial dim {i} must be positive and within ({def - s[i]}, {def + s[i]})", nameof(outputSize));
        }
        int planes = lead.Aggregate(1, (a, b) => a * b), inPlane = inS.Aggregate(1, (a, b) => a * b), outPlane = outS.Aggregate(1, (a, b) => a * b);
        var flat = Zeros(new Shape(planes, outPlane), DType, Device)
            .Scatter(1, indices.Reshape(planes, inPlane), Reshape(planes, inPlane));
        return flat.Reshape([.. lead, .. outS]);
    }

    /// <summary>1d max unpooling; see <see cref="MaxUnpool"/>.</summary>
    public Tensor MaxUnpool1d(Tensor indices, int kernelSize, int? stride = null, int padding = 0, int[]? outputSize = null) =>
        MaxUnpool(indices, [kernelSize], stride is { } s ? [s] : null, [padding], outputSize);

    /// <summary>3d max unpooling with a cubic window; see <see cref="MaxUnpool"/>.</summary>
    public Tensor MaxUnpool3d(Tensor indices, int kernelSize, int? stride = null, int padding = 0, int[]? outputSize = null) =>
        MaxUnpool(indices, [kernelSize, kernelSize, kernelSize], stride is { } s ? [s] : null, [padding], outputSize);

    /// <summary>2d max unpooling with a square window; see <see cref="MaxUnpool"/>.</summary>
    public Tensor MaxUnpool2d(Tensor indices, int kernelSize, int? stride = null, int padding = 0, int[]? outputSize = null) =>
        MaxUnpool(indices, [kernelSize, kernelSize], stride is { } s ? [s] : null, [padding], outputSize);
}
