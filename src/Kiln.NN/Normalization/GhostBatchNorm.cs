namespace Kiln.NN;

/// <summary>
/// Ghost batch normalization (Hoffer, Hubara and Soudry, "Train longer, generalize better", NeurIPS 2017, Algorithm 1):
/// in training mode the batch of an [N, C, *] input is split into consecutive "ghost" batches of
/// <see cref="VirtualBatchSize"/> samples (the last one holds the remainder), and each ghost batch is normalized per
/// channel with its own statistics, y = (x - mean_g) / sqrt(var_g + eps) * weight + bias (biased variance over the ghost
/// batch's samples and spatial positions). The running statistics take one update per ghost batch, in order, as a
/// <see cref="BatchNorm"/> step would (running = (1 - m) running + m stat, with the unbiased variance), which is the
/// paper's geometric weighting of the ghost batches' statistics. Evaluation mode uses the running statistics. With a
/// virtual batch size at least N the layer computes exactly what <see cref="BatchNorm"/> does.
/// </summary>
public sealed class GhostBatchNorm : Module<Tensor, Tensor>
{
    const string Op = "ghost_batch_norm";

    /// <summary>Creates the layer for <paramref name="numFeatures"/> channels and ghost batches of <paramref name="virtualBatchSize"/> samples.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive, or momentum is outside (0, 1].</exception>
    public GhostBatchNorm(int numFeatures, int virtualBatchSize, double eps = 1e-5, double momentum = 0.1, bool affine = true, DType dtype = DType.Float32, Device? device = null)
    {
        NormMath.PositiveFeatures(Op, numFeatures, nameof(numFeatures));
        NormMath.PositiveFeatures(Op, virtualBatchSize, nameof(virtualBatchSize));
        if (!(momentum > 0 && momentum <= 1))
            throw new ArgumentOutOfRangeException(nameof(momentum), momentum, $"{Op}: momentum must be in (0, 1]");
        NumFeatures = numFeatures; VirtualBatchSize = virtualBatchSize; Eps = eps; Momentum = momentum;
        if (affine)
        {
            Weight = RegisterParameter("weight", new Parameter(Tensor.Ones([numFeatures], dtype, device)));
            Bias = RegisterParameter("bias", new Parameter(Tensor.Zeros([numFeatures], dtype, device)));
        }
        RunningMean = RegisterBuffer("running_mean", Tensor.Zeros([numFeatures], dtype, device));
        RunningVar = RegisterBuffer("running_var", Tensor.Ones([numFeatures], dtype, device));
    }

    /// <summary>The number of channels C.</summary>
    public int NumFeatures { get; }
    /// <summary>The number of samples in a ghost batch.</summary>
    public int VirtualBatchSize { get; }
    /// <summary>Added to the variance.</summary>
    public double Eps { get; }
    /// <summary>The weight of each ghost batch's statistics in the running statistics.</summary>
    public double Momentum { get; }
    /// <summary>Scale [C] (ones), or null without affine parameters.</summary>
    public Parameter? Weight { get; }
    /// <summary>Shift [C] (zeros), or null without affine parameters.</summary>
    public Parameter? Bias { get; }
    /// <summary>Running mean [C] (zeros at first).</summary>
    public Tensor RunningMean { get; }
    /// <summary>Running variance [C] (ones at first).</summary>
    public Tensor RunningVar { get; }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The input has fewer than two dimensions, or (in training) a ghost batch holds one value per channel.</exception>
    /// <exception cref="ShapeMismatchException">Dimension 1 of the input is not <see cref="NumFeatures"/>.</exception>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank < 2)
            throw new ArgumentException($"{Op}: input must be [N, C, *] (rank at least 2), got rank {input.Rank} with shape {input.Shape}", nameof(input));
        NormMath.Channels(Op, input, 1, NumFeatures);
        var cshape = NormMath.ChannelShape(input.Rank, NumFeatures);
        if (!Training)
            return NormMath.Normalize(input, RunningMean.Reshape(cshape), RunningVar.Reshape(cshape), Eps, Weight, Bias, cshape);
        int n = input.Shape[0];
        if (n == 0)
            throw new ArgumentException($"{Op}: training needs a non-empty batch, got input shape {input.Shape}", nameof(input));
        var axes = Enumerable.Range(0, input.Rank).Where(a => a != 1).ToArray();
        var parts = new List<Tensor>();
        for (int start = 0; start < n; start += VirtualBatchSize)
        {
            var ghost = input.Narrow(0, start, Math.Min(VirtualBatchSize, n - start));
            int count = ghost.Numel / NumFeatures;
            if (count <= 1)
                throw new ArgumentException($"{Op}: the ghost batch of samples [{start}, {start + ghost.Shape[0]}) holds one value per channel (input shape {input.Shape}, virtualBatchSize {VirtualBatchSize}); its variance is undefined", nameof(input));
            var mean = ghost.Mean(axes, keepDim: true);
            var var = ghost.Var(axes, keepDim: true, correction: 0);
            using (Autograd.NoGrad())
            {
                NormMath.Blend(RunningMean, mean.Reshape(NumFeatures), Momentum);
                NormMath.Blend(RunningVar, var.Reshape(NumFeatures) * ((double)count / (count - 1)), Momentum);
            }
            parts.Add(NormMath.Normalize(ghost, mean, var, Eps, Weight, Bias, cshape));
        }
        return parts.Count == 1 ? parts[0] : Tensor.Concat([.. parts], 0);
    }
}
