namespace Kiln.NN;

// Shared pieces of the normalization layers: argument checks and the normalize-then-affine step.
static class NormMath
{
    public static void PositiveFeatures(string op, int numFeatures, string paramName)
    {
        if (numFeatures <= 0) throw new ArgumentOutOfRangeException(paramName, numFeatures, $"{op}: {paramName} must be positive");
    }

    public static void Rank(string op, Tensor input, int[] ranks, string form)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (Array.IndexOf(ranks, input.Rank) < 0)
            throw new ArgumentException($"{op}: input must be {form} (rank {string.Join(" or ", ranks)}), got rank {input.Rank} with shape {input.Shape}", nameof(input));
    }

    public static void Channels(string op, Tensor input, int axis, int expected)
    {
        if (input.Shape[axis] != expected)
            throw new ShapeMismatchException(op, nameof(input), $"input has shape {input.Shape}; its channel dimension {axis} must be {expected}, got {input.Shape[axis]}");
    }

    // [1, C, 1, ...] for an input of the given rank with channels on axis 1.
    public static int[] ChannelShape(int rank, int channels)
    {
        var s = Enumerable.Repeat(1, rank).ToArray();
        s[1] = channels;
        return s;
    }

    // (x - mean) / sqrt(var + eps) * weight + bias, weight and bias per channel; composed from tensor ops so autograd
    // differentiates through the statistics when they come from the batch.
    public static Tensor Normalize(Tensor x, Tensor mean, Tensor var, double eps, Parameter? weight, Parameter? bias, int[] channelShape) =>
        Affine((x - mean) * (var + eps).Rsqrt(), weight, bias, channelShape);

    public static Tensor Affine(Tensor y, Parameter? weight, Parameter? bias, int[] channelShape)
    {
        if (weight is not null) y = y * weight.Value.Reshape(channelShape);
        if (bias is not null) y = y + bias.Value.Reshape(channelShape);
        return y;
    }

    // running = (1 - f) running + f batch, in place, outside the graph.
    public static void Blend(Tensor running, Tensor batch, double f) => running.Mul_(1 - f).Add_(batch.Detach() * f);
}

/// <summary>
/// Batch normalization (PyTorch's <c>_BatchNorm</c>): each channel (axis 1) is normalized over the batch and spatial
/// axes, y = (x - mean) / sqrt(var + eps) * weight + bias. In training mode mean and var are the batch's (biased
/// variance) and the running statistics are updated with momentum m: running = (1 - m) running + m batch, where the
/// running variance takes the unbiased batch variance; with momentum null, m = 1 / num_batches_tracked (a cumulative
/// average). In evaluation mode the running statistics are used, unless <see cref="TrackRunningStats"/> is false, in
/// which case batch statistics are always used. The running statistics are buffers (<c>running_mean</c>,
/// <c>running_var</c>, <c>num_batches_tracked</c>, as in PyTorch's state dictionary).
/// </summary>
public abstract class BatchNorm : Module<Tensor, Tensor>
{
    readonly string _op;
    readonly int[] _ranks;
    readonly string _form;

    private protected BatchNorm(string op, int[] ranks, string form, int numFeatures, double eps, double? momentum, bool affine, bool trackRunningStats, DType dtype, Device? device)
    {
        NormMath.PositiveFeatures(op, numFeatures, nameof(numFeatures));
        _op = op; _ranks = ranks; _form = form;
        NumFeatures = numFeatures; Eps = eps; Momentum = momentum; TrackRunningStats = trackRunningStats;
        if (affine)
        {
            Weight = RegisterParameter("weight", new Parameter(Tensor.Ones([numFeatures], dtype, device)));
            Bias = RegisterParameter("bias", new Parameter(Tensor.Zeros([numFeatures], dtype, device)));
        }
        if (trackRunningStats)
        {
            RunningMean = RegisterBuffer("running_mean", Tensor.Zeros([numFeatures], dtype, device));
            RunningVar = RegisterBuffer("running_var", Tensor.Ones([numFeatures], dtype, device));
            NumBatchesTracked = RegisterBuffer("num_batches_tracked", Tensor.Zeros(new Shape(), DType.Int64, device));
        }
    }

    /// <summary>The number of channels C.</summary>
    public int NumFeatures { get; }
    /// <summary>Added to the variance.</summary>
    public double Eps { get; }
    /// <summary>The weight of the new batch in the running statistics, or null for a cumulative average.</summary>
    public double? Momentum { get; }
    /// <summary>Whether running statistics are kept (and used in evaluation mode).</summary>
    public bool TrackRunningStats { get; }
    /// <summary>Scale [C] (ones), or null without affine parameters.</summary>
    public Parameter? Weight { get; }
    /// <summary>Shift [C] (zeros), or null without affine parameters.</summary>
    public Parameter? Bias { get; }
    /// <summary>Running mean [C] (zeros at first), or null when statistics are not tracked.</summary>
    public Tensor? RunningMean { get; }
    /// <summary>Running variance [C] (ones at first), or null when statistics are not tracked.</summary>
    public Tensor? RunningVar { get; }
    /// <summary>The number of training batches seen (an Int64 scalar), or null when statistics are not tracked.</summary>
    public Tensor? NumBatchesTracked { get; }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The input has the wrong rank, or (in training) one value per channel.</exception>
    /// <exception cref="ShapeMismatchException">Dimension 1 of the input is not <see cref="NumFeatures"/>.</exception>
    public override Tensor Forward(Tensor input)
    {
        NormMath.Rank(_op, input, _ranks, _form);
        NormMath.Channels(_op, input, 1, NumFeatures);
        var cshape = NormMath.ChannelShape(input.Rank, NumFeatures);
        if (!Training && RunningMean is not null)
            return NormMath.Normalize(input, RunningMean.Reshape(cshape), RunningVar!.Reshape(cshape), Eps, Weight, Bias, cshape);
        int count = input.Numel / NumFeatures;
        // A single value per channel has no variance to estimate, so PyTorch refuses it in training.
        if (Training && count <= 1)
            throw new ArgumentException($"{_op}: training needs more than one value per channel, got input shape {input.Shape}", nameof(input));
        var axes = Enumerable.Range(0, input.Rank).Where(a => a != 1).ToArray();
        var mean = input.Mean(axes, keepDim: true);
        var var = input.Var(axes, keepDim: true, correction: 0);
        if (Training && RunningMean is not null)
            using (Autograd.NoGrad())
            {
                NumBatchesTracked!.Add_(1);
                double f = Momentum ?? 1.0 / NumBatchesTracked.Item();
                NormMath.Blend(RunningMean, mean.Reshape(NumFeatures), f);
                NormMath.Blend(RunningVar!, var.Reshape(NumFeatures) * ((double)count / (count - 1)), f);
            }
        return NormMath.Normalize(input, mean, var, Eps, Weight, Bias, cshape);
    }
}

/// <summary>Batch normalization of [N, C] or [N, C, L] inputs; see <see cref="BatchNorm"/>.</summary>
public sealed class BatchNorm1d : BatchNorm
{
    /// <summary>Creates the layer for <paramref name="numFeatures"/> channels.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="numFeatures"/> is not positive.</exception>
    public BatchNorm1d(int numFeatures, double eps = 1e-5, double? momentum = 0.1, bool affine = true, bool trackRunningStats = true, DType dtype = DType.Float32, Device? device = null)
        : base("batch_norm_1d", [2, 3], "[N, C] or [N, C, L]", numFeatures, eps, momentum, affine, trackRunningStats, dtype, device) { }
}

/// <summary>Batch normalization of [N, C, H, W] inputs; see <see cref="BatchNorm"/>.</summary>
public sealed class BatchNorm2d : BatchNorm
{
    /// <summary>Creates the layer for <paramref name="numFeatures"/> channels.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="numFeatures"/> is not positive.</exception>
    public BatchNorm2d(int numFeatures, double eps = 1e-5, double? momentum = 0.1, bool affine = true, bool trackRunningStats = true, DType dtype = DType.Float32, Device? device = null)
        : base("batch_norm_2d", [4], "[N, C, H, W]", numFeatures, eps, momentum, affine, trackRunningStats, dtype, device) { }
}

/// <summary>Batch normalization of [N, C, D, H, W] inputs; see <see cref="BatchNorm"/>.</summary>
public sealed class BatchNorm3d : BatchNorm
{
    /// <summary>Creates the layer for <paramref name="numFeatures"/> channels.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="numFeatures"/> is not positive.</exception>
    public BatchNorm3d(int numFeatures, double eps = 1e-5, double? momentum = 0.1, bool affine = true, bool trackRunningStats = true, DType dtype = DType.Float32, Device? device = null)
        : base("batch_norm_3d", [5], "[N, C, D, H, W]", numFeatures, eps, momentum, affine, trackRunningStats, dtype, device) { }
}

/// <summary>
/// Group normalization (PyTorch's <c>GroupNorm</c>): the C channels of an [N, C, *] input are split into G groups of
/// C / G consecutive channels, and each (sample, group) is normalized over its channels and spatial positions with the
/// biased variance, y = (x - mean) / sqrt(var + eps) * weight + bias with per-channel weight (ones) and bias (zeros).
/// It uses no batch statistics, so training and evaluation compute the same.
/// </summary>
public sealed class GroupNorm : Module<Tensor, Tensor>
{
    const string Op = "group_norm";

    /// <summary>Creates the layer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A count is not positive.</exception>
    /// <exception cref="ArgumentException"><paramref name="numChannels"/> is not divisible by <paramref name="numGroups"/>.</exception>
    public GroupNorm(int numGroups, int numChannels, double eps = 1e-5, bool affine = true, DType dtype = DType.Float32, Device? device = null)
    {
        NormMath.PositiveFeatures(Op, numGroups, nameof(numGroups));
        NormMath.PositiveFeatures(Op, numChannels, nameof(numChannels));
        if (numChannels % numGroups != 0)
            throw new ArgumentException($"{Op}: numChannels {numChannels} is not divisible by numGroups {numGroups}", nameof(numChannels));
        NumGroups = numGroups; NumChannels = numChannels; Eps = eps;
        if (affine)
        {
            Weight = RegisterParameter("weight", new Parameter(Tensor.Ones([numChannels], dtype, device)));
            Bias = RegisterParameter("bias", new Parameter(Tensor.Zeros([numChannels], dtype, device)));
        }
    }

    /// <summary>The number of groups G.</summary>
    public int NumGroups { get; }
    /// <summary>The number of channels C.</summary>
    public int NumChannels { get; }
    /// <summary>Added to the variance.</summary>
    public double Eps { get; }
    /// <summary>Scale [C], or null without affine parameters.</summary>
    public Parameter? Weight { get; }
    /// <summary>Shift [C], or null without affine parameters.</summary>
    public Parameter? Bias { get; }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The input has fewer than two dimensions.</exception>
    /// <exception cref="ShapeMismatchException">Dimension 1 of the input is not <see cref="NumChannels"/>.</exception>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank < 2)
            throw new ArgumentException($"{Op}: input must be [N, C, *] (rank at least 2), got rank {input.Rank} with shape {input.Shape}", nameof(input));
        NormMath.Channels(Op, input, 1, NumChannels);
        int n = input.Shape[0], perGroup = input.Numel / Math.Max(1, n * NumGroups);
        var g = input.Reshape(n, NumGroups, perGroup);
        var y = (g - g.Mean(2, keepDim: true)) * (g.Var(2, keepDim: true, correction: 0) + Eps).Rsqrt();
        return NormMath.Affine(y.Reshape(input.Shape.ToArray()), Weight, Bias, NormMath.ChannelShape(input.Rank, NumChannels));
    }
}

/// <summary>
/// Instance normalization (PyTorch's <c>_InstanceNorm</c>): each (sample, channel) of an [N, C, *spatial] input (or an
/// unbatched [C, *spatial] one) is normalized over its spatial positions with the biased variance. Affine parameters
/// (ones and zeros) are off by default. With <see cref="TrackRunningStats"/> (off by default) training also updates
/// running statistics, running = (1 - momentum) running + momentum * (the batch average of the per-instance mean and
/// unbiased variance), and evaluation uses them.
/// </summary>
public abstract class InstanceNorm : Module<Tensor, Tensor>
{
    readonly string _op, _form;
    readonly int _spatial;

    private protected InstanceNorm(string op, int spatial, int numFeatures, double eps, double momentum, bool affine, bool trackRunningStats, DType dtype, Device? device)
    {
        NormMath.PositiveFeatures(op, numFeatures, nameof(numFeatures));
        _op = op; _spatial = spatial;
        _form = spatial switch { 1 => "[N, C, L] or [C, L]", 2 => "[N, C, H, W] or [C, H, W]", _ => "[N, C, D, H, W] or [C, D, H, W]" };
        NumFeatures = numFeatures; Eps = eps; Momentum = momentum; TrackRunningStats = trackRunningStats;
        if (affine)
        {
            Weight = RegisterParameter("weight", new Parameter(Tensor.Ones([numFeatures], dtype, device)));
            Bias = RegisterParameter("bias", new Parameter(Tensor.Zeros([numFeatures], dtype, device)));
        }
        if (trackRunningStats)
        {
            RunningMean = RegisterBuffer("running_mean", Tensor.Zeros([numFeatures], dtype, device));
            RunningVar = RegisterBuffer("running_var", Tensor.Ones([numFeatures], dtype, device));
            // PyTorch registers the counter for instance norm too (and never advances it); kept for identical state keys.
            RegisterBuffer("num_batches_tracked", Tensor.Zeros(new Shape(), DType.Int64, device));
        }
    }

    /// <summary>The number of channels C.</summary>
    public int NumFeatures { get; }
    /// <summary>Added to the variance.</summary>
    public double Eps { get; }
    /// <summary>The weight of the new batch in the running statistics.</summary>
    public double Momentum { get; }
    /// <summary>Whether running statistics are kept (and used in evaluation mode).</summary>
    public bool TrackRunningStats { get; }
    /// <summary>Scale [C], or null without affine parameters (the default).</summary>
    public Parameter? Weight { get; }
    /// <summary>Shift [C], or null without affine parameters (the default).</summary>
    public Parameter? Bias { get; }
    /// <summary>Running mean [C], or null when statistics are not tracked.</summary>
    public Tensor? RunningMean { get; }
    /// <summary>Running variance [C], or null when statistics are not tracked.</summary>
    public Tensor? RunningVar { get; }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The input has the wrong rank, or one spatial position where statistics are computed.</exception>
    /// <exception cref="ShapeMismatchException">The channel dimension of the input is not <see cref="NumFeatures"/>.</exception>
    public override Tensor Forward(Tensor input)
    {
        NormMath.Rank(_op, input, [_spatial + 1, _spatial + 2], _form);
        bool unbatched = input.Rank == _spatial + 1;
        var x = unbatched ? input.Unsqueeze(0) : input;
        NormMath.Channels(_op, x, 1, NumFeatures);
        var cshape = NormMath.ChannelShape(x.Rank, NumFeatures);
        Tensor y;
        if (!Training && RunningMean is not null)
            y = NormMath.Normalize(x, RunningMean.Reshape(cshape), RunningVar!.Reshape(cshape), Eps, Weight, Bias, cshape);
        else
        {
            int count = x.Numel / Math.Max(1, x.Shape[0] * NumFeatures);
            if (count <= 1)
                throw new ArgumentException($"{_op}: statistics need more than one spatial position, got input shape {input.Shape}", nameof(input));
            var axes = Enumerable.Range(2, _spatial).ToArray();
            var mean = x.Mean(axes, keepDim: true);
            var var = x.Var(axes, keepDim: true, correction: 0);
            if (Training && RunningMean is not null)
                using (Autograd.NoGrad())
                {
                    var perChannel = new[] { x.Shape[0], NumFeatures };
                    NormMath.Blend(RunningMean, mean.Reshape(perChannel).Mean(0), Momentum);
                    NormMath.Blend(RunningVar!, var.Reshape(perChannel).Mean(0) * ((double)count / (count - 1)), Momentum);
                }
            y = NormMath.Normalize(x, mean, var, Eps, Weight, Bias, cshape);
        }
        return unbatched ? y.Squeeze(0) : y;
    }
}

/// <summary>Instance normalization of [N, C, L] or [C, L] inputs; see <see cref="InstanceNorm"/>.</summary>
public sealed class InstanceNorm1d : InstanceNorm
{
    /// <summary>Creates the layer for <paramref name="numFeatures"/> channels.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="numFeatures"/> is not positive.</exception>
    public InstanceNorm1d(int numFeatures, double eps = 1e-5, double momentum = 0.1, bool affine = false, bool trackRunningStats = false, DType dtype = DType.Float32, Device? device = null)
        : base("instance_norm_1d", 1, numFeatures, eps, momentum, affine, trackRunningStats, dtype, device) { }
}

/// <summary>Instance normalization of [N, C, H, W] or [C, H, W] inputs; see <see cref="InstanceNorm"/>.</summary>
public sealed class InstanceNorm2d : InstanceNorm
{
    /// <summary>Creates the layer for <paramref name="numFeatures"/> channels.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="numFeatures"/> is not positive.</exception>
    public InstanceNorm2d(int numFeatures, double eps = 1e-5, double momentum = 0.1, bool affine = false, bool trackRunningStats = false, DType dtype = DType.Float32, Device? device = null)
        : base("instance_norm_2d", 2, numFeatures, eps, momentum, affine, trackRunningStats, dtype, device) { }
}

/// <summary>Instance normalization of [N, C, D, H, W] or [C, D, H, W] inputs; see <see cref="InstanceNorm"/>.</summary>
public sealed class InstanceNorm3d : InstanceNorm
{
    /// <summary>Creates the layer for <paramref name="numFeatures"/> channels.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="numFeatures"/> is not positive.</exception>
    public InstanceNorm3d(int numFeatures, double eps = 1e-5, double momentum = 0.1, bool affine = false, bool trackRunningStats = false, DType dtype = DType.Float32, Device? device = null)
        : base("instance_norm_3d", 3, numFeatures, eps, momentum, affine, trackRunningStats, dtype, device) { }
}
