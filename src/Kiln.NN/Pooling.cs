namespace Kiln.NN;

/// <summary>Argument checks shared by the pooling and resampling layers, so a bad layer fails when it is made.</summary>
static class LayerArgs
{
    public static void Window(string layer, int kernelSize, int? stride, int padding, int dilation = 1)
    {
        if (kernelSize < 1) throw new ArgumentOutOfRangeException(nameof(kernelSize), kernelSize, $"{layer}: kernelSize must be positive");
        if (stride is < 1) throw new ArgumentOutOfRangeException(nameof(stride), stride, $"{layer}: stride must be positive");
        if (padding < 0) throw new ArgumentOutOfRangeException(nameof(padding), padding, $"{layer}: padding must not be negative");
        if (padding > kernelSize / 2) throw new ArgumentException($"{layer}: padding {padding} is more than half of kernel size {kernelSize}", nameof(padding));
        if (dilation < 1) throw new ArgumentOutOfRangeException(nameof(dilation), dilation, $"{layer}: dilation must be positive");
    }
}

/// <summary>Max pooling over the last 1, 2 or 3 dims with a window of the same extent in each (PyTorch's MaxPool1d/2d/3d); no parameters.</summary>
public abstract class MaxPoolNd : Module<Tensor, Tensor>
{
    readonly int _dims;

    private protected MaxPoolNd(int dims, int kernelSize, int? stride, int padding, int dilation, bool ceilMode)
    {
        LayerArgs.Window($"MaxPool{dims}d", kernelSize, stride, padding, dilation);
        _dims = dims;
        KernelSize = kernelSize;
        Stride = stride ?? kernelSize;
        Padding = padding;
        Dilation = dilation;
        CeilMode = ceilMode;
    }

    /// <summary>The window extent in every pooled dim.</summary>
    public int KernelSize { get; }
    /// <summary>The step between windows.</summary>
    public int Stride { get; }
    /// <summary>Implicit padding on both sides (never wins).</summary>
    public int Padding { get; }
    /// <summary>The step between window positions.</summary>
    public int Dilation { get; }
    /// <summary>Whether the output size is rounded up.</summary>
    public bool CeilMode { get; }

    /// <summary>[N, C, *spatial] or [C, *spatial] to the pooled shape; see <see cref="Tensor.MaxPoolWithIndices"/>.</summary>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return input.MaxPool([.. Enumerable.Repeat(KernelSize, _dims)], [Stride], [Padding], [Dilation], CeilMode);
    }
}

/// <summary>1d max pooling of [N, C, L] or [C, L] (PyTorch's MaxPool1d).</summary>
/// <param name="kernelSize">The window.</param>
/// <param name="stride">The step between windows; default the window.</param>
/// <param name="padding">Implicit padding on both sides, at most half the window.</param>
/// <param name="dilation">The step between window positions.</param>
/// <param name="ceilMode">Round the output size up.</param>
/// <exception cref="ArgumentException">A non-positive window, stride or dilation, or padding outside [0, window / 2].</exception>
public sealed class MaxPool1d(int kernelSize, int? stride = null, int padding = 0, int dilation = 1, bool ceilMode = false)
    : MaxPoolNd(1, kernelSize, stride, padding, dilation, ceilMode);

/// <summary>2d max pooling of [N, C, H, W] or [C, H, W] with a square window (PyTorch's MaxPool2d).</summary>
/// <inheritdoc cref="MaxPool1d" path="/param"/>
/// <inheritdoc cref="MaxPool1d" path="/exception"/>
public sealed class MaxPool2d(int kernelSize, int? stride = null, int padding = 0, int dilation = 1, bool ceilMode = false)
    : MaxPoolNd(2, kernelSize, stride, padding, dilation, ceilMode);

/// <summary>3d max pooling of [N, C, D, H, W] or [C, D, H, W] with a cubic window (PyTorch's MaxPool3d).</summary>
/// <inheritdoc cref="MaxPool1d" path="/param"/>
/// <inheritdoc cref="MaxPool1d" path="/exception"/>
public sealed class MaxPool3d(int kernelSize, int? stride = null, int padding = 0, int dilation = 1, bool ceilMode = false)
    : MaxPoolNd(3, kernelSize, stride, padding, dilation, ceilMode);

/// <summary>Average pooling over the last 1, 2 or 3 dims with a window of the same extent in each (PyTorch's AvgPool1d/2d/3d); no parameters.</summary>
public abstract class AvgPoolNd : Module<Tensor, Tensor>
{
    readonly int _dims;

    private protected AvgPoolNd(int dims, int kernelSize, int? stride, int padding, bool ceilMode, bool countIncludePad, int? divisorOverride)
    {
        LayerArgs.Window($"AvgPool{dims}d", kernelSize, stride, padding);
        if (divisorOverride is < 1) throw new ArgumentOutOfRangeException(nameof(divisorOverride), divisorOverride, $"AvgPool{dims}d: divisorOverride must be positive");
        _dims = dims;
        KernelSize = kernelSize;
        Stride = stride ?? kernelSize;
        Padding = padding;
        CeilMode = ceilMode;
        CountIncludePad = countIncludePad;
        DivisorOverride = divisorOverride;
    }

    /// <summary>The window extent in every pooled dim.</summary>
    public int KernelSize { get; }
    /// <summary>The step between windows.</summary>
    public int Stride { get; }
    /// <summary>Implicit zero padding on both sides.</summary>
    public int Padding { get; }
    /// <summary>Whether the output size is rounded up.</summary>
    public bool CeilMode { get; }
    /// <summary>Whether padded positions count in the divisor.</summary>
    public bool CountIncludePad { get; }
    /// <summary>A fixed divisor, or null.</summary>
    public int? DivisorOverride { get; }

    /// <summary>[N, C, *spatial] or [C, *spatial] to the pooled shape; see <see cref="Tensor.AvgPool"/>.</summary>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return input.AvgPool([.. Enumerable.Repeat(KernelSize, _dims)], [Stride], [Padding], CeilMode, CountIncludePad, DivisorOverride);
    }
}

/// <summary>1d average pooling of [N, C, L] or [C, L] (PyTorch's AvgPool1d).</summary>
/// <param name="kernelSize">The window.</param>
/// <param name="stride">The step between windows; default the window.</param>
/// <param name="padding">Implicit zero padding on both sides, at most half the window.</param>
/// <param name="ceilMode">Round the output size up.</param>
/// <param name="countIncludePad">Count padded positions in the divisor.</param>
/// <exception cref="ArgumentException">A non-positive window or stride, or padding outside [0, window / 2].</exception>
public sealed class AvgPool1d(int kernelSize, int? stride = null, int padding = 0, bool ceilMode = false, bool countIncludePad = true)
    : AvgPoolNd(1, kernelSize, stride, padding, ceilMode, countIncludePad, null);

/// <summary>2d average pooling of [N, C, H, W] or [C, H, W] with a square window (PyTorch's AvgPool2d).</summary>
/// <param name="kernelSize">The window.</param>
/// <param name="stride">The step between windows; default the window.</param>
/// <param name="padding">Implicit zero padding on both sides, at most half the window.</param>
/// <param name="ceilMode">Round the output size up.</param>
/// <param name="countIncludePad">Count padded positions in the divisor.</param>
/// <param name="divisorOverride">A fixed positive divisor.</param>
/// <exception cref="ArgumentException">A non-positive window, stride or divisor, or padding outside [0, window / 2].</exception>
public sealed class AvgPool2d(int kernelSize, int? stride = null, int padding = 0, bool ceilMode = false, bool countIncludePad = true, int? divisorOverride = null)
    : AvgPoolNd(2, kernelSize, stride, padding, ceilMode, countIncludePad, divisorOverride);

/// <summary>3d average pooling of [N, C, D, H, W] or [C, D, H, W] with a cubic window (PyTorch's AvgPool3d).</summary>
/// <inheritdoc cref="AvgPool2d" path="/param"/>
/// <inheritdoc cref="AvgPool2d" path="/exception"/>
public sealed class AvgPool3d(int kernelSize, int? stride = null, int padding = 0, bool ceilMode = false, bool countIncludePad = true, int? divisorOverride = null)
    : AvgPoolNd(3, kernelSize, stride, padding, ceilMode, countIncludePad, divisorOverride);

/// <summary>Adaptive average pooling of [N, C, H, W] or [C, H, W] to a fixed [outputH, outputW] (PyTorch's AdaptiveAvgPool2d); no parameters.</summary>
public sealed class AdaptiveAvgPool2d : Module<Tensor, Tensor>
{
    /// <summary>Pools to [outputH, outputW].</summary>
    /// <exception cref="ArgumentOutOfRangeException">An output extent is not positive.</exception>
    public AdaptiveAvgPool2d(int outputH, int outputW)
    {
        if (outputH < 1 || outputW < 1) throw new ArgumentOutOfRangeException(nameof(outputH), $"AdaptiveAvgPool2d: output size must be positive, got [{outputH}, {outputW}]");
        OutputSize = [outputH, outputW];
    }

    /// <summary>Pools to a square output (1 for global average pooling).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The output extent is not positive.</exception>
    public AdaptiveAvgPool2d(int outputSize) : this(outputSize, outputSize) { }

    /// <summary>The output [H, W].</summary>
    public IReadOnlyList<int> OutputSize { get; }

    /// <summary>[N, C, H, W] or [C, H, W] to [.., outputH, outputW]; see <see cref="Tensor.AdaptiveAvgPool"/>.</summary>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return input.AdaptiveAvgPool([.. OutputSize]);
    }
}

/// <summary>Resamples [N, C, *spatial] to a size or by a scale factor (PyTorch's Upsample, over <see cref="Tensor.Interpolate"/>); no parameters.</summary>
public sealed class Upsample : Module<Tensor, Tensor>
{
    /// <summary>Creates the layer; give exactly one of <paramref name="size"/> and <paramref name="scaleFactor"/>.</summary>
    /// <param name="size">The output spatial extents (one for every dim or one per dim).</param>
    /// <param name="scaleFactor">The scale of every dim or of each.</param>
    /// <param name="mode">The interpolation.</param>
    /// <param name="alignCorners">Map corner pixel centres onto each other (linear modes and bicubic).</param>
    /// <exception cref="ArgumentException">Neither or both of size and scaleFactor, a non-positive entry, or alignCorners with a nearest mode.</exception>
    public Upsample(int[]? size = null, double[]? scaleFactor = null, InterpolateMode mode = InterpolateMode.Nearest, bool alignCorners = false)
    {
        if ((size is null) == (scaleFactor is null)) throw new ArgumentException("Upsample: give exactly one of size and scaleFactor", nameof(size));
        if (size is not null && (size.Length == 0 || size.Any(s => s < 1)))
            throw new ArgumentOutOfRangeException(nameof(size), $"Upsample: size must be positive extents, got [{string.Join(", ", size)}]");
        if (scaleFactor is not null && (scaleFactor.Length == 0 || scaleFactor.Any(s => !(s > 0) || double.IsInfinity(s))))
            throw new ArgumentOutOfRangeException(nameof(scaleFactor), $"Upsample: scaleFactor must be positive and finite, got [{string.Join(", ", scaleFactor)}]");
        if (alignCorners && mode is InterpolateMode.Nearest or InterpolateMode.NearestExact)
            throw new ArgumentException($"Upsample: alignCorners applies to the linear modes and bicubic, not {mode}", nameof(alignCorners));
        Size = size is null ? null : [.. size];
        ScaleFactor = scaleFactor is null ? null : [.. scaleFactor];
        Mode = mode;
        AlignCorners = alignCorners;
    }

    /// <summary>The output spatial extents, or null when a scale factor is used.</summary>
    public IReadOnlyList<int>? Size { get; }
    /// <summary>The scale factors, or null when a size is used.</summary>
    public IReadOnlyList<double>? ScaleFactor { get; }
    /// <summary>The interpolation.</summary>
    public InterpolateMode Mode { get; }
    /// <summary>Whether corner pixel centres are aligned.</summary>
    public bool AlignCorners { get; }

    /// <summary>[N, C, *spatial] to [N, C, *out]; see <see cref="Tensor.Interpolate"/>.</summary>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return input.Interpolate(Size?.ToArray(), ScaleFactor?.ToArray(), Mode, AlignCorners);
    }
}

/// <summary>Rearranges [*, C r^2, H, W] into [*, C, H r, W r] (PyTorch's PixelShuffle, over <see cref="Tensor.PixelShuffle"/>); no parameters.</summary>
public sealed class PixelShuffle : Module<Tensor, Tensor>
{
    /// <summary>Creates the layer.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="upscaleFactor"/> is not positive.</exception>
    public PixelShuffle(int upscaleFactor)
    {
        if (upscaleFactor < 1) throw new ArgumentOutOfRangeException(nameof(upscaleFactor), upscaleFactor, "PixelShuffle: upscaleFactor must be positive");
        UpscaleFactor = upscaleFactor;
    }

    /// <summary>r, the side of the channel blocks moved into space.</summary>
    public int UpscaleFactor { get; }

    /// <summary>[*, C r^2, H, W] to [*, C, H r, W r].</summary>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return input.PixelShuffle(UpscaleFactor);
    }
}
