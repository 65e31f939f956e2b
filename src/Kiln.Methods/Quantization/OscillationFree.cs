namespace Kiln.Methods.Quantization;

/// <summary>
/// Oscillation-free quantization for low-bit vision transformers (Liu et al., ICML 2023, as the authors' OFQ code):
/// statistical weight quantization (StatsQ, a per-row scale from the weights' statistics instead of a learned one),
/// confidence-guided annealing (CGA, freezing weights that are not near a rounding threshold), query-key
/// reparameterisation (QKR, quantizing W_q^T W_k per head) and the oscillation counter of Nagel et al. (2022) used to
/// measure level flips.
/// </summary>
public static class OscillationFree
{
    /// <summary>
    /// StatsQ's integer levels: with the per-row scale s = 2 mean|w| (rows of [out, in]; one scale for a vector) and
    /// n = 2^(bits-1), the level of w is round(clamp(w / s, -1, 1 - 1e-6) n - 1/2) in {-n, ..., n - 1}.
    /// </summary>
    /// <returns>(levels as the weights' dtype, the scale s broadcastable to w, the pre-rounding values clamp(w/s) n - 1/2).</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="bits"/> is outside [2, 16].</exception>
    /// <exception cref="ArgumentException">The weights are not rank 1 or 2.</exception>
    public static (Tensor Levels, Tensor Scale, Tensor BeforeRound) StatsLevels(Tensor weight, int bits)
    {
        ArgumentNullException.ThrowIfNull(weight);
        // One bit is left out: clamp(w/s) = -1 gives -1.5, which half-to-even rounding sends to level -2, outside the range.
        if (bits is < 2 or > 16) throw new ArgumentOutOfRangeException(nameof(bits), bits, "statsq: bits must be in [2, 16]");
        if (weight.Rank is not (1 or 2)) throw new ArgumentException($"statsq: weight has shape {weight.Shape}; expected [out, in] or [n]", nameof(weight));
        using (Autograd.NoGrad())
        {
            var w = weight.Detach();
            var scale = 2.0 * w.Abs().Mean(weight.Rank - 1, keepDim: true);
            // An all-zero row has no scale; any positive one quantizes it to the two levels nearest zero.
            scale = Tensor.Where(scale > 0.0, scale, scale.OnesLike());
            double n = Math.Pow(2, bits - 1);
            var before = (w / scale).Clamp(-1, 1 - 1e-6) * n - 0.5;
            return (before.Round(), scale, before);
        }
    }

    /// <summary>
    /// StatsQ fake quantization: forward s (level + 1/2) / n, symmetric levels without zero; backward the identity
    /// (the authors' straight-through form, which passes the gradient even to clipped weights). With a
    /// <paramref name="frozen"/> mask (see <see cref="ConfidenceFrozen"/>) the gradient of frozen weights is zero.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The mask's shape differs from the weights'.</exception>
    public static Tensor StatsQuantize(Tensor weight, int bits, Tensor? frozen = null)
    {
        var (levels, scale, _) = StatsLevels(weight, bits);
        if (frozen is not null && frozen.Shape != weight.Shape) throw new ShapeMismatchException("statsq", nameof(frozen), weight.Shape, frozen.Shape, "the mask must have the weights' shape");
        double n = Math.Pow(2, bits - 1);
        Tensor q;
        using (Autograd.NoGrad()) q = scale * (levels + 0.5) / n;
        var keep = frozen is null ? null : Tensor.Where(frozen, weight.Detach().ZerosLike(), weight.Detach().OnesLike());
        return Tensor.Custom("statsq", [weight], _ => q, g => [keep is null ? g : g * keep]);
    }

    /// <summary>
    /// CGA's freeze mask: true for every weight whose pre-rounding value (<see cref="StatsLevels"/>) is not within
    /// <paramref name="boundaryRange"/> of a rounding threshold i + 1/2, i in {-n, ..., n - 2}; those weights are
    /// confidently on their level and stop updating, while weights at a threshold keep moving until they settle.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="boundaryRange"/> is not in [0, 1/2].</exception>
    public static Tensor ConfidenceFrozen(Tensor weight, int bits, double boundaryRange = 0.005)
    {
        if (!(boundaryRange >= 0 && boundaryRange <= 0.5)) throw new ArgumentOutOfRangeException(nameof(boundaryRange), boundaryRange, "cga: boundaryRange must be in [0, 1/2]");
        var (_, _, before) = StatsLevels(weight, bits);
        using (Autograd.NoGrad())
        {
            double n = Math.Pow(2, bits - 1);
            var frac = before - before.Floor();
            var nearThreshold = ((frac - 0.5).Abs() <= boundaryRange).To(before.DType);
            // Thresholds exist between levels -n .. n-1 only: i = floor(before) in [-n, n - 2].
            var inner = (before.Floor() >= -n).To(before.DType) * (before.Floor() <= n - 2).To(before.DType);
            return (nearThreshold * inner).Eq((nearThreshold * inner).ZerosLike());
        }
    }

    /// <summary>
    /// QKR: the per-head products W_qk^h = (W_q^h)^T W_k^h [H, C, C] of the query and key weights [C, C] (rows split
    /// into H heads of C/H), so attention logits become x W_qk^h x^T scale and W_qk is what gets quantized.
    /// </summary>
    /// <exception cref="ArgumentException">The weights are not [C, C] of the same shape, or C is not divisible by <paramref name="heads"/>.</exception>
    public static Tensor QueryKeyProduct(Tensor queryWeight, Tensor keyWeight, int heads)
    {
        ArgumentNullException.ThrowIfNull(queryWeight); ArgumentNullException.ThrowIfNull(keyWeight);
        if (queryWeight.Rank != 2 || queryWeight.Shape != keyWeight.Shape)
            throw new ArgumentException($"qkr: query weight {queryWeight.Shape} and key weight {keyWeight.Shape} must be the same [out, in]", nameof(keyWeight));
        if (heads <= 0 || queryWeight.Shape[0] % heads != 0)
            throw new ArgumentException($"qkr: {queryWeight.Shape[0]} output features do not split into {heads} heads", nameof(heads));
        int dh = queryWeight.Shape[0] / heads, c = queryWeight.Shape[1];
        var wq = queryWeight.Reshape(heads, dh, c);
        var wk = keyWeight.Reshape(heads, dh, c);
        return wq.Transpose(1, 2).MatMul(wk);
    }

    /// <summary>Attention logits x W_qk^h x^T scale [H, N, N] for tokens x [N, C] and W_qk [H, C, C].</summary>
    /// <exception cref="ShapeMismatchException">The shapes do not agree.</exception>
    public static Tensor QueryKeyLogits(Tensor x, Tensor queryKey, double scale)
    {
        ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(queryKey);
        if (x.Rank != 2 || queryKey.Rank != 3 || queryKey.Shape[1] != x.Shape[1] || queryKey.Shape[2] != x.Shape[1])
            throw new ShapeMismatchException("qkr_logits", nameof(queryKey), $"tokens {x.Shape} and W_qk {queryKey.Shape} must be [N, C] and [H, C, C]");
        return x.Unsqueeze(0).MatMul(queryKey).MatMul(x.Transpose(0, 1)) * scale;
    }
}

/// <summary>
/// Counts oscillations of integer levels over training steps (Nagel et al., 2022, as used in the OFQ code): a weight
/// oscillates at a step when its level moves in the direction opposite to its previous move.
/// </summary>
public sealed class OscillationTracker
{
    double[]? _previous, _direction;
    long[]? _counts;

    /// <summary>Oscillations per element so far (null before the first update).</summary>
    public IReadOnlyList<long>? Counts => _counts;

    /// <summary>All oscillations so far.</summary>
    public long Total => _counts?.Sum() ?? 0;

    /// <summary>Records the levels of one step; returns how many elements oscillated at this step.</summary>
    /// <exception cref="ShapeMismatchException">The number of elements changed since the first update.</exception>
    public int Update(Tensor levels)
    {
        ArgumentNullException.ThrowIfNull(levels);
        var now = levels.Detach().To(DType.Float64).Contiguous().ToArray<double>();
        if (_previous is null)
        {
            (_previous, _direction, _counts) = (now, new double[now.Length], new long[now.Length]);
            return 0;
        }
        if (now.Length != _previous.Length) throw new ShapeMismatchException("oscillation_tracker", nameof(levels), $"{now.Length} levels after {_previous.Length} before");
        int flips = 0;
        for (int i = 0; i < now.Length; i++)
        {
            double dir = Math.Sign(Math.Round(now[i] - _previous[i]));
            if (dir == 0) continue;
            if (dir == -_direction![i]) { _counts![i]++; flips++; }
            _direction[i] = dir;
        }
        _previous = now;
        return flips;
    }
}
