namespace Kiln.NN;

/// <summary>How a loss combines its per-element values.</summary>
public enum Reduction
{
    /// <summary>The mean (over non-ignored targets for cross entropy).</summary>
    Mean,
    /// <summary>The sum.</summary>
    Sum,
    /// <summary>No reduction: one value per element (per sample for cross entropy).</summary>
    None,
}

/// <summary>Loss functions (PyTorch's <c>torch.nn.functional</c> semantics), differentiable in all floating inputs.</summary>
public static class Losses
{
    static Tensor Reduce(Tensor l, Reduction r) => r switch
    {
        Reduction.Mean => l.Mean(),
        Reduction.Sum => l.Sum(),
        Reduction.None => l,
        _ => throw new ArgumentOutOfRangeException(nameof(r), r, "unknown reduction"),
    };

    static void SameShape(Tensor input, Tensor target, string op)
    {
        if (input.Shape != target.Shape) throw new ShapeMismatchException(op, nameof(target), input.Shape, target.Shape, "target must have the input's shape");
    }

    /// <summary>Mean squared error (input - target)^2.</summary>
    /// <exception cref="ShapeMismatchException">The shapes differ.</exception>
    public static Tensor Mse(Tensor input, Tensor target, Reduction reduction = Reduction.Mean)
    {
        SameShape(input, target, "mse_loss");
        if (Autocast.Raises(input, target)) return Mse(Autocast.Raise(input), Autocast.Raise(target), reduction);
        return Reduce((input - target).Square(), reduction);
    }

    /// <summary>
    /// Huber loss: 0.5 d^2 where |d| &lt; delta, else delta (|d| - 0.5 delta), for d = input - target.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">delta is not positive.</exception>
    public static Tensor Huber(Tensor input, Tensor target, double delta = 1.0, Reduction reduction = Reduction.Mean)
    {
        if (!(delta > 0)) throw new ArgumentOutOfRangeException(nameof(delta), delta, "huber_loss: delta must be positive");
        SameShape(input, target, "huber_loss");
        if (Autocast.Raises(input, target)) return Huber(Autocast.Raise(input), Autocast.Raise(target), delta, reduction);
        var d = input - target;
        var a = d.Abs();
        // min(|d|, delta) gives both branches: q^2/2 + delta (|d| - q) with q = min(|d|, delta).
        var q = a.Clamp(max: delta);
        return Reduce(q.Square() * 0.5 + (a - q) * delta, reduction);
    }

    /// <summary>
    /// Cross entropy between logits [N, C] (or [C]) and Int64 class indices [N] (or a scalar). With label smoothing e
    /// the target is (1 - e) one-hot + e / C uniform. Samples whose target equals <paramref name="ignoreIndex"/>
    /// contribute nothing, and the mean is over the others (NaN when all are ignored, as in PyTorch).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not fit.</exception>
    /// <exception cref="ArgumentException">The target is not Int64.</exception>
    /// <exception cref="ArgumentOutOfRangeException">Label smoothing outside [0, 1], or a target outside [0, C) that is not ignored.</exception>
    public static Tensor CrossEntropy(Tensor logits, Tensor target, double labelSmoothing = 0, long ignoreIndex = -100, Reduction reduction = Reduction.Mean)
    {
        if (target.DType != DType.Int64) throw new ArgumentException($"cross_entropy: target must hold Int64 class indices, not {target.DType}", nameof(target));
        if (!(labelSmoothing >= 0 && labelSmoothing <= 1)) throw new ArgumentOutOfRangeException(nameof(labelSmoothing), labelSmoothing, "cross_entropy: label smoothing must be in [0, 1]");
        if (Autocast.Raises(logits)) return CrossEntropy(Autocast.Raise(logits), target, labelSmoothing, ignoreIndex, reduction);
        if (logits.Rank == 1 && target.Rank == 0) return CrossEntropy(logits.Unsqueeze(0), target.Unsqueeze(0), labelSmoothing, ignoreIndex, reduction).Reshape();
        if (logits.Rank != 2 || target.Rank != 1 || target.Shape[0] != logits.Shape[0])
            throw new ShapeMismatchException("cross_entropy", nameof(target), $"logits {logits.Shape} and target {target.Shape} must be [N, C] and [N]");
        int c = logits.Shape[1];
        var t = target.ToArray<long>();
        bool anyIgnored = false;
        for (int i = 0; i < t.Length; i++)
        {
            if (t[i] == ignoreIndex) { anyIgnored = true; t[i] = 0; continue; }
            if (t[i] < 0 || t[i] >= c) throw new ArgumentOutOfRangeException(nameof(target), $"cross_entropy: target {t[i]} at sample {i} is outside [0, {c})");
        }
        var logp = logits.LogSoftmax(-1);
        var idx = Tensor.FromArray(t, new Shape(t.Length, 1)).To(logits.Device);
        var nll = -logp.Gather(1, idx).Squeeze(1);
        var loss = labelSmoothing == 0 ? nll : nll * (1 - labelSmoothing) - logp.Mean(-1) * labelSmoothing;
        if (!anyIgnored) return Reduce(loss, reduction);
        var keep = target.Ne(Tensor.Scalar(ignoreIndex, DType.Int64, target.Device));
        loss = Tensor.Where(keep, loss, loss.ZerosLike());
        return reduction == Reduction.Mean ? loss.Sum() / keep.To(loss.DType).Sum() : Reduce(loss, reduction);
    }

    /// <summary>
    /// Binary cross entropy on logits x with targets y in [0, 1]: -(w_pos y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))),
    /// computed stably as (1 - y) x + (1 + (w_pos - 1) y) softplus(-x). <paramref name="posWeight"/> (broadcast to
    /// the input) weighs positive examples; null means 1.
    /// </summary>
    public static Tensor BinaryCrossEntropyWithLogits(Tensor logits, Tensor target, Tensor? posWeight = null, Reduction reduction = Reduction.Mean)
    {
        SameShape(logits, target, "binary_cross_entropy_with_logits");
        if (Autocast.Raises(logits, target, posWeight)) return BinaryCrossEntropyWithLogits(Autocast.Raise(logits), Autocast.Raise(target), Autocast.RaiseOrNull(posWeight), reduction);
        var sp = (-logits).Softplus();
        var l = posWeight is null
            ? (1.0 - target) * logits + sp
            : (1.0 - target) * logits + (1.0 + (posWeight - 1.0) * target) * sp;
        return Reduce(l, reduction);
    }

    /// <summary>
    /// KL divergence KL(target || model) = sum target (log target - input), where <paramref name="input"/> holds the
    /// model's log-probabilities and the target holds probabilities (or log-probabilities with <paramref name="logTarget"/>).
    /// Terms with target 0 count as 0. <paramref name="batchMean"/> divides the sum by the first dimension (the
    /// mathematically right mean; PyTorch's reduction='batchmean'); otherwise <paramref name="reduction"/> applies per element.
    /// </summary>
    public static Tensor KlDiv(Tensor input, Tensor target, bool logTarget = false, bool batchMean = true, Reduction reduction = Reduction.Mean)
    {
        SameShape(input, target, "kl_div");
        if (Autocast.Raises(input, target)) return KlDiv(Autocast.Raise(input), Autocast.Raise(target), logTarget, batchMean, reduction);
        Tensor l;
        if (logTarget) l = target.Exp() * (target - input);
        else
        {
            var positive = target > 0.0;
            var safeLog = Tensor.Where(positive, target, target.OnesLike()).Log();
            l = Tensor.Where(positive, target * (safeLog - input), target.ZerosLike());
        }
        if (batchMean) return l.Sum() / (input.Rank == 0 ? 1 : input.Shape[0]);
        return Reduce(l, reduction);
    }
}
