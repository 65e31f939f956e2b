namespace Kiln.NN;

/// <summary>
/// The parameters and initialization shared by the convolution layers: weight and bias are drawn as PyTorch's
/// reset_parameters does (Kaiming uniform with a = sqrt 5, so U(+-1/sqrt(fan_in)), and the bias U(+-1/sqrt(fan_in)),
/// with fan_in = weight.shape[1] times the kernel volume).
/// </summary>
public abstract class ConvLayer : Module<Tensor, Tensor>
{
    /// <summary>Checks the sizes and draws the weight (of a transposed layer when <paramref name="transposed"/>) and the bias.</summary>
    private protected ConvLayer(string op, int inChannels, int outChannels, int[] kernel, int groups, bool bias, bool transposed, Generator? generator, DType dtype, Device? device)
    {
        if (inChannels <= 0) throw new ArgumentOutOfRangeException(nameof(inChannels), inChannels, $"{op}: inChannels must be positive");
        if (outChannels <= 0) throw new ArgumentOutOfRangeException(nameof(outChannels), outChannels, $"{op}: outChannels must be positive");
        if (groups <= 0 || inChannels % groups != 0 || outChannels % groups != 0)
            throw new ArgumentException($"{op}: groups {groups} must be positive and divide inChannels {inChannels} and outChannels {outChannels}", nameof(groups));
        if (kernel.Any(k => k <= 0)) throw new ArgumentOutOfRangeException(nameof(kernel), $"{op}: kernel sizes must be positive, got ({string.Join(", ", kernel)})");
        (InChannels, OutChannels, Groups, KernelSize) = (inChannels, outChannels, groups, kernel);
        int[] weightShape = transposed ? [inChannels, outChannels / groups, .. kernel] : [outChannels, inChannels / groups, .. kernel];
        Weight = RegisterParameter("weight", new Parameter(Init.KaimingUniform_(Tensor.Empty(weightShape, dtype, device), a: Math.Sqrt(5), generator: generator)));
        if (bias)
        {
            double bound = 1 / Math.Sqrt(Init.Fans(new Shape(weightShape)).FanIn);
            Bias = RegisterParameter("bias", new Parameter(Init.Uniform_(Tensor.Empty([outChannels], dtype, device), -bound, bound, generator)));
        }
    }

    /// <summary>Input channels.</summary>
    public int InChannels { get; }
    /// <summary>Output channels.</summary>
    public int OutChannels { get; }
    /// <summary>Channel groups.</summary>
    public int Groups { get; }
    /// <summary>Kernel extents.</summary>
    public IReadOnlyList<int> KernelSize { get; }
    /// <summary>The weight: [out, in / groups, kernel...] (transposed layers: [in, out / groups, kernel...]).</summary>
    public Parameter Weight { get; }
    /// <summary>The bias [out], or null.</summary>
    public Parameter? Bias { get; }

    private protected static int[] Kernel(ConvDims size, int axes, string op) => size.Expand(axes, 0, op, "kernelSize");
}

/// <summary>1-d convolution layer: <see cref="Tensor.Conv1d"/> of [N, in, L] (or [in, L]) with its weight [out, in / groups, k] and bias.</summary>
public sealed class Conv1d(int inChannels, int outChannels, ConvDims kernelSize, ConvDims stride = default, ConvPadding padding = default, ConvDims dilation = default,
    int groups = 1, bool bias = true, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    : ConvLayer("conv1d", inChannels, outChannels, Kernel(kernelSize, 1, "conv1d"), groups, bias, false, generator, dtype, device)
{
    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => Tensor.Conv1d(input, Weight.Value, Bias?.Value, stride, padding, dilation, Groups);
}

/// <summary>2-d convolution layer: <see cref="Tensor.Conv2d"/> of [N, in, H, W] (or [in, H, W]) with its weight [out, in / groups, kh, kw] and bias.</summary>
public sealed class Conv2d(int inChannels, int outChannels, ConvDims kernelSize, ConvDims stride = default, ConvPadding padding = default, ConvDims dilation = default,
    int groups = 1, bool bias = true, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    : ConvLayer("conv2d", inChannels, outChannels, Kernel(kernelSize, 2, "conv2d"), groups, bias, false, generator, dtype, device)
{
    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => Tensor.Conv2d(input, Weight.Value, Bias?.Value, stride, padding, dilation, Groups);
}

/// <summary>3-d convolution layer: <see cref="Tensor.Conv3d"/> of [N, in, D, H, W] (or [in, D, H, W]) with its weight [out, in / groups, kd, kh, kw] and bias.</summary>
public sealed class Conv3d(int inChannels, int outChannels, ConvDims kernelSize, ConvDims stride = default, ConvPadding padding = default, ConvDims dilation = default,
    int groups = 1, bool bias = true, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    : ConvLayer("conv3d", inChannels, outChannels, Kernel(kernelSize, 3, "conv3d"), groups, bias, false, generator, dtype, device)
{
    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => Tensor.Conv3d(input, Weight.Value, Bias?.Value, stride, padding, dilation, Groups);
}

/// <summary>2-d transposed convolution layer: <see cref="Tensor.ConvTranspose2d"/> of [N, in, H, W] (or [in, H, W]) with its weight [in, out / groups, kh, kw] and bias.</summary>
public sealed class ConvTranspose2d(int inChannels, int outChannels, ConvDims kernelSize, ConvDims stride = default, ConvDims padding = default, ConvDims outputPadding = default,
    int groups = 1, bool bias = true, ConvDims dilation = default, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    : ConvLayer("conv_transpose2d", inChannels, outChannels, Kernel(kernelSize, 2, "conv_transpose2d"), groups, bias, true, generator, dtype, device)
{
    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => Tensor.ConvTranspose2d(input, Weight.Value, Bias?.Value, stride, padding, outputPadding, Groups, dilation);
}
