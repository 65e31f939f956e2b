using Kiln.Kernels;

namespace Kiln;

/// <summary>
/// A per-axis size of a convolution (stride, dilation, padding, output padding): one int for every spatial axis, or
/// one per axis (an array or a tuple), as PyTorch's int-or-tuple arguments. The default value means the argument's default.
/// </summary>
public readonly struct ConvDims
{
    readonly int[]? _values;

    ConvDims(int[] values) => _values = values;

    /// <summary>The same size on every spatial axis.</summary>
    public static implicit operator ConvDims(int value) => new([value]);
    /// <summary>One size per spatial axis (or one for all).</summary>
    public static implicit operator ConvDims(int[] values) => new((int[])(values ?? throw new ArgumentNullException(nameof(values))).Clone());
    /// <summary>Sizes of two spatial axes.</summary>
    public static implicit operator ConvDims((int, int) v) => new([v.Item1, v.Item2]);
    /// <summary>Sizes of three spatial axes.</summary>
    public static implicit operator ConvDims((int, int, int) v) => new([v.Item1, v.Item2, v.Item3]);

    /// <summary>One value per axis of <paramref name="axes"/> spatial axes; <paramref name="fallback"/> on every axis when unset.</summary>
    /// <exception cref="ArgumentException">The values are neither one nor one per axis; the message names <paramref name="op"/> and <paramref name="name"/>.</exception>
    public int[] Expand(int axes, int fallback, string op, string name)
    {
        if (_values is null) return Enumerable.Repeat(fallback, axes).ToArray();
        if (_values.Length == 1) return Enumerable.Repeat(_values[0], axes).ToArray();
        if (_values.Length == axes) return (int[])_values.Clone();
        throw new ArgumentException($"{op}: {name} has {_values.Length} values ({this}); give one, or one per spatial axis ({axes})", name);
    }

    /// <inheritdoc/>
    public override string ToString() => _values is null ? "default" : $"({string.Join(", ", _values)})";
}

/// <summary>
/// The padding of a convolution: sizes as <see cref="ConvDims"/>, or "valid" (none) or "same" (the output has the
/// input's extent; stride 1 only; an odd total goes to the end, as PyTorch pads).
/// </summary>
public readonly struct ConvPadding
{
    readonly ConvDims _dims;
    readonly string? _mode;

    ConvPadding(ConvDims dims, string? mode) { _dims = dims; _mode = mode; }

    /// <summary>The same padding on every spatial axis.</summary>
    public static implicit operator ConvPadding(int value) => new(value, null);
    /// <summary>One padding per spatial axis (or one for all).</summary>
    public static implicit operator ConvPadding(int[] values) => new(values, null);
    /// <summary>Paddings of two spatial axes.</summary>
    public static implicit operator ConvPadding((int, int) v) => new(v, null);
    /// <summary>Paddings of three spatial axes.</summary>
    public static implicit operator ConvPadding((int, int, int) v) => new(v, null);
    /// <summary>"valid" or "same".</summary>
    /// <exception cref="ArgumentException">Another string.</exception>
    public static implicit operator ConvPadding(string mode) => mode is "same" or "valid"
        ? new(default, mode) : throw new ArgumentException($"padding '{mode}' is not 'same', 'valid' or sizes", nameof(mode));

    internal bool Same => _mode == "same";

    internal int[] Expand(int axes, string op) => _mode is null ? _dims.Expand(axes, 0, op, "padding") : new int[axes];

    /// <inheritdoc/>
    public override string ToString() => _mode ?? _dims.ToString();
}

public partial class Tensor
{
    /// <summary>
    /// 1-d convolution (PyTorch's conv1d, a cross-correlation): input [N, C, L] (or unbatched [C, L]), weight
    /// [O, C / groups, K], bias [O] or null; y [N, O, Lout] with Lout = floor((L + 2 padding - dilation (K - 1) - 1) / stride) + 1.
    /// Differentiable in input, weight and bias (to any order).
    /// </summary>
    /// <exception cref="ShapeMismatchException">A rank or channel count does not fit.</exception>
    /// <exception cref="ArgumentException">A stride or dilation below 1, negative padding, groups not dividing the channels, 'same' with a stride, or an output extent below 1.</exception>
    public static Tensor Conv1d(Tensor input, Tensor weight, Tensor? bias = null, ConvDims stride = default, ConvPadding padding = default, ConvDims dilation = default, int groups = 1) =>
        ConvNd(1, "conv1d", input, weight, bias, stride, padding, dilation, groups);

    /// <summary>
    /// 2-d convolution (PyTorch's conv2d): input [N, C, H, W] (or [C, H, W]), weight [O, C / groups, KH, KW], bias [O] or
    /// null; y [N, O, Hout, Wout], each extent floor((in + 2 padding - dilation (k - 1) - 1) / stride) + 1. groups = C = O is
    /// a depthwise convolution. Differentiable in input, weight and bias (to any order).
    /// </summary>
    /// <exception cref="ShapeMismatchException">A rank or channel count does not fit.</exception>
    /// <exception cref="ArgumentException">A stride or dilation below 1, negative padding, groups not dividing the channels, 'same' with a stride, or an output extent below 1.</exception>
    public static Tensor Conv2d(Tensor input, Tensor weight, Tensor? bias = null, ConvDims stride = default, ConvPadding padding = default, ConvDims dilation = default, int groups = 1) =>
        ConvNd(2, "conv2d", input, weight, bias, stride, padding, dilation, groups);

    /// <summary>
    /// 3-d convolution (PyTorch's conv3d): input [N, C, D, H, W] (or [C, D, H, W]), weight [O, C / groups, KD, KH, KW],
    /// bias [O] or null; y [N, O, Dout, Hout, Wout]. Differentiable in input, weight and bias (to any order).
    /// </summary>
    /// <exception cref="ShapeMismatchException">A rank or channel count does not fit.</exception>
    /// <exception cref="ArgumentException">A stride or dilation below 1, negative padding, groups not dividing the channels, 'same' with a stride, or an output extent below 1.</exception>
    public static Tensor Conv3d(Tensor input, Tensor weight, Tensor? bias = null, ConvDims stride = default, ConvPadding padding = default, ConvDims dilation = default, int groups = 1) =>
        ConvNd(3, "conv3d", input, weight, bias, stride, padding, dilation, groups);

    /// <summary>
    /// 1-d transposed convolution (PyTorch's conv_transpose1d, the input gradient of conv1d): input [N, Cin, L] (or
    /// [Cin, L]), weight [Cin, Cout / groups, K], bias [Cout] or null; y [N, Cout, Lout] with
    /// Lout = (L - 1) stride - 2 padding + dilation (K - 1) + outputPadding + 1. Differentiable in input, weight and bias.
    /// </summary>
    /// <exception cref="ShapeMismatchException">A rank or channel count does not fit.</exception>
    /// <exception cref="ArgumentException">A stride or dilation below 1, negative padding, output padding not below stride or dilation, groups not dividing the channels, or an output extent below 1.</exception>
    public static Tensor ConvTranspose1d(Tensor input, Tensor weight, Tensor? bias = null, ConvDims stride = default, ConvDims padding = default,
        ConvDims outputPadding = default, int groups = 1, ConvDims dilation = default) =>
        ConvTransposeNd(1, "conv_transpose1d", input, weight, bias, stride, padding, outputPadding, groups, dilation);

    /// <summary>
    /// 2-d transposed convolution (PyTorch's conv_transpose2d): input [N, Cin, H, W] (or [Cin, H, W]), weight
    /// [Cin, Cout / groups, KH, KW], bias [Cout] or null; y [N, Cout, Hout, Wout], each extent
    /// (in - 1) stride - 2 padding + dilation (k - 1) + outputPadding + 1. Differentiable in input, weight and bias.
    /// </summary>
    /// <exception cref="ShapeMismatchException">A rank or channel count does not fit.</exception>
    /// <exception cref="ArgumentException">A stride or dilation below 1, negative padding, output padding not below stride or dilation, groups not dividing the channels, or an output extent below 1.</exception>
    public static Tensor ConvTranspose2d(Tensor input, Tensor weight, Tensor? bias = null, ConvDims stride = default, ConvDims padding = default,
        ConvDims outputPadding = default, int groups = 1, ConvDims dilation = default) =>
        ConvTransposeNd(2, "conv_transpose2d", input, weight, bias, stride, padding, outputPadding, groups, dilation);

    /// <summary>
    /// 3-d transposed convolution (PyTorch's conv_transpose3d): input [N, Cin, D, H, W] (or [Cin, D, H, W]), weight
    /// [Cin, Cout / groups, KD, KH, KW], bias [Cout] or null; y [N, Cout, Dout, Hout, Wout]. Differentiable in input, weight and bias.
    /// </summary>
    /// <exception cref="ShapeMismatchException">A rank or channel count does not fit.</exception>
    /// <exception cref="ArgumentException">A stride or dilation below 1, negative padding, output padding not below stride or dilation, groups not dividing the channels, or an output extent below 1.</exception>
    public static Tensor ConvTranspose3d(Tensor input, Tensor weight, Tensor? bias = null, ConvDims stride = default, ConvDims padding = default,
        ConvDims outputPadding = default, int groups = 1, ConvDims dilation = default) =>
        ConvTransposeNd(3, "conv_transpose3d", input, weight, bias, stride, padding, outputPadding, groups, dilation);

    static Tensor ConvNd(int d, string op, Tensor input, Tensor weight, Tensor? bias, ConvDims stride, ConvPadding padding, ConvDims dilation, int groups)
    {
        if (Autocast.Lowers(input, weight, bias))
            return ConvNd(d, op, Autocast.Lower(input), Autocast.Lower(weight), Autocast.LowerOrNull(bias), stride, padding, dilation, groups);
        var x = ConvOperands(d, op, input, weight, bias, groups, out bool batched);
        int c = x.Shape[1], o = weight.Shape[0];
        if (weight.Shape[1] * groups != c)
            throw new ShapeMismatchException(op, nameof(weight), $"weight must be [O, C / groups = {c / groups}, kernel...] for input {input.Shape} and groups {groups}, got {weight.Shape}");
        if (o % groups != 0) throw new ArgumentException($"{op}: groups {groups} does not divide the output channels {o} (weight {weight.Shape})", nameof(groups));
        CheckBias(op, input, bias, o);
        var s = Positive(stride.Expand(d, 1, op, nameof(stride)), op, nameof(stride));
        var dil = Positive(dilation.Expand(d, 1, op, nameof(dilation)), op, nameof(dilation));
        var k = weight.Shape.Dims[2..].ToArray();
        var pad = padding.Expand(d, op);
        if (pad.Any(p => p < 0)) throw new ArgumentException($"{op}: padding must not be negative, got {padding}", nameof(padding));
        var inExt = x.Shape.Dims[2..].ToArray();
        var outExt = new int[d];
        for (int a = 0; a < d; a++)
        {
            if (padding.Same)
            {
                if (s[a] != 1) throw new ArgumentException($"{op}: padding 'same' needs stride 1, got stride {stride}", nameof(padding));
                pad[a] = dil[a] * (k[a] - 1) / 2;   // the odd unit of the total goes after the input
                outExt[a] = inExt[a];
            }
            else outExt[a] = ConvGeometry.OutExtent(inExt[a], k[a], s[a], pad[a], dil[a]);
            if (outExt[a] < 1)
                throw new ArgumentException($"{op}: output extent {outExt[a]} < 1 on spatial axis {a} (input {inExt[a]}, kernel {k[a]}, stride {s[a]}, padding {pad[a]}, dilation {dil[a]}); input {input.Shape} is too small", nameof(input));
        }
        var g = Geometry(x.Shape[0], c, o, groups, inExt, k, outExt, s, pad, dil);
        var y = ConvRaw(g, x, weight, bias, new Shape([x.Shape[0], o, .. outExt]));
        return batched ? y : y.Squeeze(0);
    }

    static Tensor ConvTransposeNd(int d, string op, Tensor input, Tensor weight, Tensor? bias, ConvDims stride, ConvDims padding, ConvDims outputPadding, int groups, ConvDims dilation)
    {
        if (Autocast.Lowers(input, weight, bias))
            return ConvTransposeNd(d, op, Autocast.Lower(input), Autocast.Lower(weight), Autocast.LowerOrNull(bias), stride, padding, outputPadding, groups, dilation);
        // The bias is a second op here: half operands add it in Float32, so the result rounds once.
        if (bias is not null && input.DType.IsHalf() && weight.DType == input.DType && bias.DType == input.DType)
            using (Autocast.Disable()) return ConvTransposeNd(d, op, input.To(DType.Float32), weight.To(DType.Float32), bias.To(DType.Float32), stride, padding, outputPadding, groups, dilation).To(input.DType);
        var x = ConvOperands(d, op, input, weight, bias, groups, out bool batched);
        int cin = x.Shape[1], cout = weight.Shape[1] * groups;
        if (weight.Shape[0] != cin)
            throw new ShapeMismatchException(op, nameof(weight), $"weight must be [Cin = {cin}, Cout / groups, kernel...] for input {input.Shape}, got {weight.Shape}");
        CheckBias(op, input, bias, cout);
        var s = Positive(stride.Expand(d, 1, op, nameof(stride)), op, nameof(stride));
        var dil = Positive(dilation.Expand(d, 1, op, nameof(dilation)), op, nameof(dilation));
        var pad = padding.Expand(d, 0, op, nameof(padding));
        var opad = outputPadding.Expand(d, 0, op, nameof(outputPadding));
        if (pad.Any(p => p < 0)) throw new ArgumentException($"{op}: padding must not be negative, got {padding}", nameof(padding));
        var k = weight.Shape.Dims[2..].ToArray();
        var inExt = x.Shape.Dims[2..].ToArray();
        var outExt = new int[d];
        for (int a = 0; a < d; a++)
        {
            if (opad[a] < 0 || opad[a] >= s[a] && opad[a] >= dil[a])
                throw new ArgumentException($"{op}: output padding {opad[a]} on spatial axis {a} must be non-negative and below the stride ({s[a]}) or the dilation ({dil[a]})", nameof(outputPadding));
            outExt[a] = (inExt[a] - 1) * s[a] - 2 * pad[a] + dil[a] * (k[a] - 1) + opad[a] + 1;
            if (outExt[a] < 1)
                throw new ArgumentException($"{op}: output extent {outExt[a]} < 1 on spatial axis {a} (input {inExt[a]}, kernel {k[a]}, stride {s[a]}, padding {pad[a]}, dilation {dil[a]}, output padding {opad[a]})", nameof(padding));
        }
        // The transposed convolution is the input gradient of the convolution that maps its output back to its input.
        var g = Geometry(x.Shape[0], cout, cin, groups, outExt, k, inExt, s, pad, dil);
        var y = ConvDataRaw(g, x, weight, new Shape([x.Shape[0], cout, .. outExt]));
        if (bias is not null) y = y + bias.Reshape([cout, .. Enumerable.Repeat(1, d)]);
        return batched ? y : y.Squeeze(0);
    }

    // Checks what conv and conv-transpose share; returns the input with a batch axis.
    static Tensor ConvOperands(int d, string op, Tensor input, Tensor weight, Tensor? bias, int groups, out bool batched)
    {
        ArgumentNullException.ThrowIfNull(input); ArgumentNullException.ThrowIfNull(weight);
        input.Storage.ThrowIfDisposed(op); weight.Storage.ThrowIfDisposed(op); bias?.Storage.ThrowIfDisposed(op);
        Check.Floating(input, op, nameof(input));
        Check.SameDType(input, weight, op, nameof(weight)); Check.SameDevice(input, weight, op, nameof(weight));
        if (input.Rank != d + 2 && input.Rank != d + 1)
            throw new ShapeMismatchException(op, nameof(input), $"input must be [N, C, {d} spatial dims] or [C, {d} spatial dims], got {input.Shape}");
        if (weight.Rank != d + 2)
            throw new ShapeMismatchException(op, nameof(weight), $"weight must have rank {d + 2} (two channel dims and {d} kernel dims), got {weight.Shape}");
        if (weight.Shape.Dims[2..].ToArray().Any(e => e < 1))
            throw new ShapeMismatchException(op, nameof(weight), $"kernel extents must be at least 1, got weight {weight.Shape}");
        if (groups < 1) throw new ArgumentException($"{op}: groups must be at least 1, got {groups}", nameof(groups));
        batched = input.Rank == d + 2;
        var x = batched ? input : input.Unsqueeze(0);
        if (x.Shape[1] % groups != 0) throw new ArgumentException($"{op}: groups {groups} does not divide the input channels {x.Shape[1]} (input {input.Shape})", nameof(groups));
        return x;
    }

    static void CheckBias(string op, Tensor input, Tensor? bias, int channels)
    {
        if (bias is null) return;
        Check.SameDType(input, bias, op, nameof(bias)); Check.SameDevice(input, bias, op, nameof(bias));
        if (bias.Rank != 1 || bias.Shape[0] != channels)
            throw new ShapeMismatchException(op, nameof(bias), new Shape(channels), bias.Shape, "bias must have one entry per output channel");
    }

    static int[] Positive(int[] values, string op, string name) => values.All(v => v >= 1) ? values
        : throw new ArgumentException($"{op}: {name} must be at least 1 on every axis, got ({string.Join(", ", values)})", name);

    // Leading axes of extent 1 make every convolution 3-d.
    static ConvGeometry Geometry(int n, int c, int o, int groups, int[] inExt, int[] k, int[] outExt, int[] s, int[] pad, int[] dil)
    {
        int[] Full(int[] v, int fill) => [.. Enumerable.Repeat(fill, 3 - v.Length), .. v];
        var (i3, k3, o3, s3, p3, d3) = (Full(inExt, 1), Full(k, 1), Full(outExt, 1), Full(s, 1), Full(pad, 0), Full(dil, 1));
        return new ConvGeometry
        {
            N = n, C = c, O = o, G = groups,
            ID = i3[0], IH = i3[1], IW = i3[2], KD = k3[0], KH = k3[1], KW = k3[2], OD = o3[0], OH = o3[1], OW = o3[2],
            SD = s3[0], SH = s3[1], SW = s3[2], PD = p3[0], PH = p3[1], PW = p3[2], DD = d3[0], DH = d3[1], DW = d3[2],
        };
    }

    // The three convolution primitives as recorded ops; each one's gradients are the other two, so every order
    // differentiates. Gradients of inputs outside the graph (data, frozen weights) are not computed.

    static Tensor ConvRaw(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Shape yShape)
    {
        var y = Empty(yShape, x.DType, x.Device);
        if (y.Numel > 0) x.Backend.ConvForward(g, x.Detach().Contiguous(), w.Detach().Contiguous(), bias?.Detach().Contiguous(), y);
        Tensor[] inputs = bias is null ? [x, w] : [x, w, bias];
        return Record(y, "conv", inputs, gy =>
        {
            var grads = new List<Tensor?> { x.RequiresGrad ? ConvDataRaw(g, gy, w, x.Shape) : null, w.RequiresGrad ? ConvWeightRaw(g, x, gy, w.Shape) : null };
            if (bias is not null) grads.Add(bias.RequiresGrad ? gy.Sum([0, .. Enumerable.Range(2, gy.Rank - 2)]) : null);
            return grads.ToArray();
        });
    }

    static Tensor ConvDataRaw(ConvGeometry g, Tensor gy, Tensor w, Shape xShape)
    {
        var gx = Empty(xShape, gy.DType, gy.Device);
        if (gx.Numel > 0) gy.Backend.ConvBackwardData(g, gy.Detach().Contiguous(), w.Detach().Contiguous(), gx);
        return Record(gx, "conv_backward_data", [gy, w], h =>
            [gy.RequiresGrad ? ConvRaw(g, h, w, null, gy.Shape) : null, w.RequiresGrad ? ConvWeightRaw(g, h, gy, w.Shape) : null]);
    }

    static Tensor ConvWeightRaw(ConvGeometry g, Tensor x, Tensor gy, Shape wShape)
    {
        var gw = Empty(wShape, x.DType, x.Device);
        if (gw.Numel > 0) x.Backend.ConvBackwardWeight(g, x.Detach().Contiguous(), gy.Detach().Contiguous(), gw);
        return Record(gw, "conv_backward_weight", [x, gy], h =>
            [x.RequiresGrad ? ConvDataRaw(g, gy, h, x.Shape) : null, gy.RequiresGrad ? ConvRaw(g, x, h, null, gy.Shape) : null]);
    }
}
