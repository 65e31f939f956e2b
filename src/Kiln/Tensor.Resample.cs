using Kiln.Kernels;

namespace Kiln;

/// <summary>The interpolation of <see cref="Tensor.Interpolate"/> (PyTorch's interpolate modes).</summary>
public enum InterpolateMode
{
    /// <summary>The input at floor(o * in / out) (PyTorch's "nearest"; 1d to 3d).</summary>
    Nearest,
    /// <summary>The input at floor((o + 0.5) * in / out) (PyTorch's "nearest-exact"; 1d to 3d).</summary>
    NearestExact,
    /// <summary>Linear interpolation of [N, C, L].</summary>
    Linear,
    /// <summary>Bilinear interpolation of [N, C, H, W].</summary>
    Bilinear,
    /// <summary>Bicubic interpolation of [N, C, H, W] (Keys' kernel, A = -0.75; borders replicated; may overshoot the input's range).</summary>
    Bicubic,
    /// <summary>Trilinear interpolation of [N, C, D, H, W].</summary>
    Trilinear,
    /// <summary>The mean of each output's share of the input (PyTorch's "area": adaptive average pooling; 1d to 3d).</summary>
    Area,
}

/// <summary>How <see cref="Tensor.GridSample"/> reads the input at a grid point.</summary>
public enum GridSampleMode
{
    /// <summary>Bilinear weights of the four surrounding pixels.</summary>
    Bilinear,
    /// <summary>The nearest pixel (ties to even, as PyTorch's nearbyint).</summary>
    Nearest,
}

/// <summary>What <see cref="Tensor.GridSample"/> reads outside the input.</summary>
public enum GridSamplePadding
{
    /// <summary>Zeros.</summary>
    Zeros,
    /// <summary>The nearest border pixel (coordinates clamped).</summary>
    Border,
    /// <summary>The input mirrored at its borders, then clamped.</summary>
    Reflection,
}

public partial class Tensor
{
    /// <summary>
    /// Resamples the spatial dims of [N, C, *spatial] (1 to 3 spatial dims) to <paramref name="size"/> or by
    /// <paramref name="scaleFactor"/> (PyTorch's interpolate with its coordinate conventions): without align_corners, output
    /// o of a dim samples source coordinate (o + 0.5) * scale - 0.5 (pixel centres), with it o * (in - 1) / (out - 1)
    /// (corner pixels coincide); scale is 1 / scaleFactor when a factor is given, else in / out. A factor gives an output
    /// extent of floor(in * factor).
    /// </summary>
    /// <param name="size">The output spatial extents (one value for every dim, or one per dim); exclusive with <paramref name="scaleFactor"/>.</param>
    /// <param name="scaleFactor">The scale of every dim or of each; exclusive with <paramref name="size"/>.</param>
    /// <param name="mode">The interpolation; linear, bilinear/bicubic and trilinear need 1, 2 and 3 spatial dims.</param>
    /// <param name="alignCorners">Map corner pixel centres onto each other (linear modes and bicubic only).</param>
    /// <returns>[N, C, *out], same dtype and device.</returns>
    /// <exception cref="ArgumentException">Neither or both of size and scaleFactor, a non-positive size or factor, an output
    /// extent below 1, a mode that does not fit the rank, alignCorners with a nearest or area mode, or an empty spatial dim.</exception>
    /// <exception cref="NotSupportedException">The input is not Float32 or Float64.</exception>
    public Tensor Interpolate(int[]? size = null, double[]? scaleFactor = null, InterpolateMode mode = InterpolateMode.Nearest, bool alignCorners = false)
    {
        const string op = "interpolate";
        Storage.ThrowIfDisposed(op);
        Check.Floating(this, op, "input");
        int n = Rank - 2;
        if (n is < 1 or > 3) throw new ShapeMismatchException(op, "input", $"input must be [N, C, *spatial] with 1 to 3 spatial dims, got shape {Shape}");
        int need = mode switch { InterpolateMode.Linear => 1, InterpolateMode.Bilinear or InterpolateMode.Bicubic => 2, InterpolateMode.Trilinear => 3, _ => n };
        if (need != n) throw new ArgumentException($"{op}: mode {mode} needs {need} spatial dims, the input {Shape} has {n}", nameof(mode));
        if (alignCorners && mode is InterpolateMode.Nearest or InterpolateMode.NearestExact or InterpolateMode.Area)
            throw new ArgumentException($"{op}: alignCorners applies to the linear modes and bicubic, not {mode}", nameof(alignCorners));
        if ((size is null) == (scaleFactor is null)) throw new ArgumentException($"{op}: give exactly one of size and scaleFactor", nameof(size));
        var inS = Shape.ToArray()[2..];
        if (inS.Contains(0)) throw new ShapeMismatchException(op, "input", $"spatial dims must be non-empty, got shape {Shape}");
        var outS = new int[n];
        var factors = new double[n];
        if (size is not null)
        {
            outS = PerDim(size, n, 1, op, nameof(size));
            if (outS.Any(o => o < 1)) throw new ArgumentOutOfRangeException(nameof(size), $"{op}: output size must be positive, got [{string.Join(", ", size)}]");
        }
        else
        {
            if (scaleFactor!.Length != 1 && scaleFactor.Length != n) throw new ArgumentException($"{op}: scaleFactor has {scaleFactor.Length} values; give 1 or {n}", nameof(scaleFactor));
            for (int i = 0; i < n; i++)
            {
                factors[i] = scaleFactor[scaleFactor.Length == 1 ? 0 : i];
                if (!(factors[i] > 0) || double.IsInfinity(factors[i]))
                    throw new ArgumentOutOfRangeException(nameof(scaleFactor), factors[i], $"{op}: scaleFactor must be positive and finite");
                double o = Math.Floor(inS[i] * factors[i]);
                if (o < 1 || o > int.MaxValue)
                    throw new ArgumentException($"{op}: output size floor({inS[i]} * {factors[i]}) = {o} in spatial dim {i} is out of range (must be at least 1)", nameof(scaleFactor));
                outS[i] = (int)o;
            }
        }
        if (mode == InterpolateMode.Area) return AdaptiveAvgPool(outS);
        int At(int[] v, int dim, int unit) => dim - (3 - n) is var i && i >= 0 ? v[i] : unit;
        double Factor(int dim) => dim - (3 - n) is var i && i >= 0 ? factors[i] : 0;
        var a = new ResampleArgs
        {
            Planes = Shape[0] * Shape[1],
            ID = At(inS, 0, 1), IH = At(inS, 1, 1), IW = At(inS, 2, 1),
            OD = At(outS, 0, 1), OH = At(outS, 1, 1), OW = At(outS, 2, 1),
            Mode = (int)(mode switch
            {
                InterpolateMode.Nearest => ResampleMode.Nearest,
                InterpolateMode.NearestExact => ResampleMode.NearestExact,
                InterpolateMode.Bicubic => ResampleMode.Cubic,
                _ => ResampleMode.Linear,
            }),
            AlignCorners = alignCorners ? 1 : 0,
            Active = (1 << n) - 1,
            FactorD = Factor(0), FactorH = Factor(1), FactorW = Factor(2),
        };
        return RunResample(a, new Shape([Shape[0], Shape[1], .. outS]));
    }

    // Runs the interpolation kernel and records its gradient (the backward kernel, itself differentiable).
    Tensor RunResample(ResampleArgs a, Shape outShape)
    {
        var y = Empty(outShape, DType, Device);
        if (y.Numel > 0) Backend.ResampleForward(Detach().Contiguous(), a, y);
        var inShape = Shape;
        return Record(y, "interpolate", [this], g => [ResampleGrad(g, a, inShape)]);
    }

    static Tensor ResampleGrad(Tensor g, ResampleArgs a, Shape inShape)
    {
        var dx = Empty(inShape, g.DType, g.Device);
        if (dx.Numel > 0) g.Backend.ResampleBackward(g.Detach().Contiguous(), a, dx);
        var outShape = g.Shape;
        // The backward pass is linear in g, and its own gradient is the interpolation again.
        return Record(dx, "interpolate_backward", [g], gg => [gg.RunResample(a, outShape)]);
    }

    /// <summary>
    /// Moves blocks of r x r channels into space (PyTorch's pixel_shuffle): [*, C r^2, H, W] becomes [*, C, H r, W r] with
    /// y[.., c, h r + i, w r + j] = x[.., c r^2 + i r + j, h, w]. A view-and-copy composite, differentiable.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="upscaleFactor"/> is not positive, the rank is below 3, or the channels are not a multiple of its square.</exception>
    public Tensor PixelShuffle(int upscaleFactor)
    {
        int r = upscaleFactor;
        if (r < 1) throw new ArgumentOutOfRangeException(nameof(upscaleFactor), r, "pixel_shuffle: upscaleFactor must be positive");
        if (Rank < 3) throw new ShapeMismatchException("pixel_shuffle", "input", $"input must be [*, C, H, W], got shape {Shape}");
        int c = Shape[-3], h = Shape[-2], w = Shape[-1];
        if (c % (r * r) != 0) throw new ShapeMismatchException("pixel_shuffle", "input", $"channels {c} are not a multiple of upscaleFactor^2 = {r * r} (shape {Shape})");
        var lead = Shape.ToArray()[..^3];
        int k = lead.Length;
        return Reshape([.. lead, c / (r * r), r, r, h, w])
            .Permute([.. Enumerable.Range(0, k), k, k + 3, k + 1, k + 4, k + 2])
            .Reshape([.. lead, c / (r * r), h * r, w * r]);
    }

    /// <summary>
    /// The inverse of <see cref="PixelShuffle"/> (PyTorch's pixel_unshuffle): [*, C, H r, W r] becomes [*, C r^2, H, W].
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="downscaleFactor"/> is not positive, the rank is below 3, or H or W is not a multiple of it.</exception>
    public Tensor PixelUnshuffle(int downscaleFactor)
    {
        int r = downscaleFactor;
        if (r < 1) throw new ArgumentOutOfRangeException(nameof(downscaleFactor), r, "pixel_unshuffle: downscaleFactor must be positive");
        if (Rank < 3) throw new ShapeMismatchException("pixel_unshuffle", "input", $"input must be [*, C, H, W], got shape {Shape}");
        int c = Shape[-3], h = Shape[-2], w = Shape[-1];
        if (h % r != 0 || w % r != 0) throw new ShapeMismatchException("pixel_unshuffle", "input", $"height {h} and width {w} must be multiples of downscaleFactor {r}");
        var lead = Shape.ToArray()[..^3];
        int k = lead.Length;
        return Reshape([.. lead, c, h / r, r, w / r, r])
            .Permute([.. Enumerable.Range(0, k), k, k + 2, k + 4, k + 1, k + 3])
            .Reshape([.. lead, c * r * r, h / r, w / r]);
    }

    /// <summary>
    /// Samples [N, C, IH, IW] at the points of <paramref name="grid"/> [N, OH, OW, 2] (PyTorch's grid_sample, 2d): grid
    /// values are (x, y) in [-1, 1] across the input's width and height, -1 and 1 meaning the corner pixels' centres with
    /// <paramref name="alignCorners"/> and their outer edges without. Differentiable with respect to the input and the grid
    /// (the nearest mode's grid gradient is zero); second derivatives through the grid throw <see cref="NotSupportedException"/>.
    /// </summary>
    /// <param name="grid">Sampling points [N, OH, OW, 2], same dtype and device.</param>
    /// <param name="mode">Bilinear or nearest.</param>
    /// <param name="paddingMode">What points outside the input read: zeros, the border, or the reflected input.</param>
    /// <param name="alignCorners">Whether -1 and 1 are the centres (true) or the outer edges (false) of the corner pixels.</param>
    /// <returns>[N, C, OH, OW].</returns>
    /// <exception cref="ArgumentException">The input is not [N, C, H, W] with non-empty H and W, or the grid is not [N, OH, OW, 2] of the same dtype and device.</exception>
    /// <exception cref="NotSupportedException">The input is not Float32 or Float64.</exception>
    public Tensor GridSample(Tensor grid, GridSampleMode mode = GridSampleMode.Bilinear, GridSamplePadding paddingMode = GridSamplePadding.Zeros, bool alignCorners = false)
    {
        const string op = "grid_sample";
        ArgumentNullException.ThrowIfNull(grid);
        Storage.ThrowIfDisposed(op);
        grid.Storage.ThrowIfDisposed(op);
        Check.Floating(this, op, "input");
        Check.SameDType(this, grid, op, nameof(grid));
        Check.SameDevice(this, grid, op, nameof(grid));
        if (Rank != 4 || Shape[2] == 0 || Shape[3] == 0) throw new ShapeMismatchException(op, "input", $"input must be [N, C, H, W] with H, W > 0, got shape {Shape}");
        if (grid.Rank != 4 || grid.Shape[0] != Shape[0] || grid.Shape[3] != 2)
            throw new ShapeMismatchException(op, nameof(grid), $"grid must be [N, OH, OW, 2] with the input's N = {Shape[0]}, got shape {grid.Shape}");
        var a = new GridSampleArgs
        {
            N = Shape[0], C = Shape[1], IH = Shape[2], IW = Shape[3], OH = grid.Shape[1], OW = grid.Shape[2],
            Mode = (int)mode, Padding = (int)paddingMode, AlignCorners = alignCorners ? 1 : 0,
        };
        var x = Detach().Contiguous();
        var gd = grid.Detach().Contiguous();
        var y = Empty(new Shape(a.N, a.C, a.OH, a.OW), DType, Device);
        if (y.Numel > 0) Backend.GridSampleForward(x, gd, a, y);
        return Record(y, op, [this, grid], g =>
        {
            var gc = g.Detach().Contiguous();
            var dx = RequiresGrad ? Empty(Shape, DType, Device) : null;
            var dgrid = grid.RequiresGrad ? Empty(grid.Shape, DType, Device) : null;
            if (gc.Numel > 0) Backend.GridSampleBackward(gc, x, gd, a, dx, dgrid);
            else { dx?.Fill_(0); dgrid?.Fill_(0); }
            // The input gradient is linear in g, and its gradient in g is the sampling again. Second derivatives through the
            // grid are not implemented: they throw rather than come out as zeros.
            return
            [
                dx is null ? null : Record(dx, op + "_backward", [g, grid], gg => [gg.GridSample(gd, mode, paddingMode, alignCorners), grid.RequiresGrad ? throw NoSecondOrder() : null]),
                dgrid is null ? null : Record(dgrid, op + "_grid_backward", [g, this, grid], _ => throw NoSecondOrder()),
            ];
        });
    }

    static NotSupportedException NoSecondOrder() =>
        new("grid_sample: second derivatives that involve the grid are not implemented (those in the input alone are)");

    /// <summary>
    /// The sampling grid of affine maps (PyTorch's affine_grid, 2d): for <paramref name="theta"/> [N, 2, 3] and output
    /// size [N, C, H, W], grid[n, h, w] = theta[n] (x_w, y_h, 1), where x and y run evenly over [-1, 1] (pixel centres
    /// with <paramref name="alignCorners"/>, else scaled by (W - 1) / W and (H - 1) / H); a single pixel sits at 0.
    /// Differentiable with respect to theta.
    /// </summary>
    /// <param name="theta">The affine matrices [N, 2, 3].</param>
    /// <param name="size">The output size [N, C, H, W] whose grid to make.</param>
    /// <param name="alignCorners">As in <see cref="GridSample"/>.</param>
    /// <returns>[N, H, W, 2], theta's dtype and device.</returns>
    /// <exception cref="ArgumentException">theta is not [N, 2, 3], or size is not 4 positive extents (N may be 0) with theta's N.</exception>
    public static Tensor AffineGrid(Tensor theta, int[] size, bool alignCorners = false)
    {
        ArgumentNullException.ThrowIfNull(theta);
        ArgumentNullException.ThrowIfNull(size);
        Check.Floating(theta, "affine_grid", nameof(theta));
        if (size.Length != 4 || size.Skip(1).Any(e => e < 1) || size[0] < 0)
            throw new ArgumentException($"affine_grid: size must be [N, C, H, W] with positive C, H, W, got [{string.Join(", ", size)}]", nameof(size));
        if (theta.Rank != 3 || theta.Shape[0] != size[0] || theta.Shape[1] != 2 || theta.Shape[2] != 3)
            throw new ShapeMismatchException("affine_grid", nameof(theta), $"theta must be [N, 2, 3] with N = {size[0]}, got shape {theta.Shape}");
        int h = size[2], w = size[3];
        double[] Steps(int n) => n <= 1 ? [0.0] : [.. Enumerable.Range(0, n).Select(i => (-1 + 2.0 * i / (n - 1)) * (alignCorners ? 1 : (n - 1.0) / n))];
        double[] xs = Steps(w), ys = Steps(h);
        var b = new double[h * w * 3];
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) { b[(i * w + j) * 3] = xs[j]; b[(i * w + j) * 3 + 1] = ys[i]; b[(i * w + j) * 3 + 2] = 1; }
        var baseGrid = FromArray(b, new Shape(h * w, 3)).To(theta.DType).To(theta.Device);
        return baseGrid.MatMul(theta.Transpose(1, 2)).Reshape(size[0], h, w, 2);
    }

    /// <summary>
    /// ROI align (torchvision's roi_align) of [N, C, H, W] over <paramref name="boxes"/> [K, 5] = (batch index, x1, y1, x2,
    /// y2): each box, scaled by <paramref name="spatialScale"/> (and shifted by -0.5 when <paramref name="aligned"/>), is cut
    /// into outputH x outputW bins, and each bin averages bilinear samples on a regular grid of
    /// <paramref name="samplingRatio"/> per side (or ceil(bin size) when it is not positive). Samples more than one pixel
    /// outside the input read zero. Without <paramref name="aligned"/> a box is at least one pixel on each side.
    /// Differentiable with respect to the input (not the boxes, as in torchvision).
    /// </summary>
    /// <param name="boxes">[K, 5] boxes, same dtype and device; each batch index an integer in [0, N).</param>
    /// <param name="outputSize">The bins per box, [outputH, outputW].</param>
    /// <param name="spatialScale">The scale from box coordinates to input pixels (positive).</param>
    /// <param name="samplingRatio">Samples per bin along each side; 0 or negative for adaptive.</param>
    /// <param name="aligned">Shift boxes by half a pixel so that box corners fall on pixel edges.</param>
    /// <returns>[K, C, outputH, outputW].</returns>
    /// <exception cref="ArgumentException">A shape, output size, scale or batch index out of range.</exception>
    /// <exception cref="NotSupportedException">The input is not Float32 or Float64.</exception>
    public Tensor RoiAlign(Tensor boxes, int[] outputSize, double spatialScale = 1, int samplingRatio = -1, bool aligned = false)
    {
        const string op = "roi_align";
        ArgumentNullException.ThrowIfNull(boxes);
        ArgumentNullException.ThrowIfNull(outputSize);
        Storage.ThrowIfDisposed(op);
        Check.Floating(this, op, "input");
        Check.SameDType(this, boxes, op, nameof(boxes));
        Check.SameDevice(this, boxes, op, nameof(boxes));
        if (Rank != 4 || Shape[2] == 0 || Shape[3] == 0) throw new ShapeMismatchException(op, "input", $"input must be [N, C, H, W] with H, W > 0, got shape {Shape}");
        if (boxes.Rank != 2 || boxes.Shape[1] != 5) throw new ShapeMismatchException(op, nameof(boxes), $"boxes must be [K, 5] rows of (batch index, x1, y1, x2, y2), got shape {boxes.Shape}");
        if (outputSize.Length != 2 || outputSize.Any(o => o < 1))
            throw new ArgumentOutOfRangeException(nameof(outputSize), $"{op}: outputSize must be two positive extents, got [{string.Join(", ", outputSize)}]");
        if (!(spatialScale > 0) || double.IsInfinity(spatialScale)) throw new ArgumentOutOfRangeException(nameof(spatialScale), spatialScale, $"{op}: spatialScale must be positive and finite");
        var b = boxes.Detach().Contiguous();
        var bh = b.ToDoubleArray();
        for (int k = 0; k < boxes.Shape[0]; k++)
        {
            double n = bh[k * 5];
            if (n != Math.Floor(n) || n < 0 || n >= Shape[0])
                throw new ArgumentOutOfRangeException(nameof(boxes), n, $"{op}: box {k} has batch index {n}; it must be an integer in [0, {Shape[0]})");
        }
        var a = new RoiAlignArgs
        {
            N = Shape[0], C = Shape[1], H = Shape[2], W = Shape[3], K = boxes.Shape[0], PH = outputSize[0], PW = outputSize[1],
            SamplingRatio = Math.Max(samplingRatio, 0), Aligned = aligned ? 1 : 0, SpatialScale = spatialScale,
        };
        var y = Empty(new Shape(a.K, a.C, a.PH, a.PW), DType, Device);
        if (y.Numel > 0) Backend.RoiAlignForward(Detach().Contiguous(), b, a, y);
        var inShape = Shape;
        return Record(y, op, [this], g => [RoiAlignGrad(g, b, a, inShape)]);
    }

    static Tensor RoiAlignGrad(Tensor g, Tensor boxes, RoiAlignArgs a, Shape inShape)
    {
        var dx = Zeros(inShape, g.DType, g.Device);
        if (g.Numel > 0) g.Backend.RoiAlignBackward(g.Detach().Contiguous(), boxes, a, dx);
        // Linear in g: the gradient of the backward pass is ROI align of the incoming gradient.
        return Record(dx, "roi_align_backward", [g], gg => [gg.RoiAlign(boxes, [a.PH, a.PW], a.SpatialScale, a.SamplingRatio, a.Aligned != 0)]);
    }
}
