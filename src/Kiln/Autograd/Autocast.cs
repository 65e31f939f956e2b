namespace Kiln;

/// <summary>
/// Automatic mixed precision, as <c>torch.autocast</c>: inside <c>using (Autocast.Enable(DType.BFloat16)) { ... }</c>
/// the matmul-class ops (<see cref="LowerPrecisionOps"/>) cast their Float32 and half operands to the autocast dtype and
/// compute there (half operands widened to Float32 in the kernels, Float32 accumulation), while the reductions,
/// softmax, norms and losses (<see cref="Float32Ops"/>) cast half operands up and return Float32. Every other op runs
/// in its operands' promoted dtype. Float64 and integer operands are never cast. Gradients flow back through the casts,
/// so a Float32 parameter gets a Float32 gradient. The scope flows with the async execution context, as
/// <see cref="TensorScope"/> does, and nests (the innermost scope wins; <see cref="Disable"/> turns it off inside).
/// </summary>
public static class Autocast
{
    static readonly AsyncLocal<DType?> _dtype = new();

    /// <summary>The ops that run in the autocast dtype (PyTorch's lower-precision list).</summary>
    public static IReadOnlyList<string> LowerPrecisionOps { get; } =
        ["matmul", "linear", "bmm", "einsum", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "scaled_dot_product_attention"];

    /// <summary>The ops that run in Float32 (PyTorch's float32 list, as far as Kiln has them).</summary>
    public static IReadOnlyList<string> Float32Ops { get; } =
        ["sum", "mean", "var", "std", "prod", "norm", "cumsum", "logsumexp", "softmax", "log_softmax", "layer_norm", "rms_norm",
         "mse_loss", "huber_loss", "cross_entropy", "binary_cross_entropy_with_logits", "kl_div"];

    /// <summary>The dtype matmul-class ops run in, or null outside an autocast scope.</summary>
    public static DType? Current => _dtype.Value;

    /// <summary>Runs <see cref="LowerPrecisionOps"/> in <paramref name="dtype"/> until the result is disposed.</summary>
    /// <exception cref="ArgumentException"><paramref name="dtype"/> is not BFloat16 or Float16.</exception>
    public static IDisposable Enable(DType dtype = DType.BFloat16)
    {
        if (!dtype.IsHalf()) throw new ArgumentException($"autocast: dtype must be BFloat16 or Float16, not {dtype}", nameof(dtype));
        return new Scope(dtype);
    }

    /// <summary>Turns autocast off until the result is disposed (a region that must run in its operands' dtypes).</summary>
    public static IDisposable Disable() => new Scope(null);

    sealed class Scope : IDisposable
    {
        readonly DType? _saved = _dtype.Value;
        bool _done;
        public Scope(DType? dtype) => _dtype.Value = dtype;
        public void Dispose() { if (!_done) { _done = true; _dtype.Value = _saved; } }
    }

    /// <summary>Whether a lower-precision op must cast any of <paramref name="operands"/> first.</summary>
    public static bool Lowers(params ReadOnlySpan<Tensor?> operands)
    {
        if (_dtype.Value is not { } d) return false;
        foreach (var t in operands) if (t is not null && Lowered(t.DType, d) != t.DType) return true;
        return false;
    }

    /// <summary><paramref name="t"/> as a lower-precision op computes with it.</summary>
    public static Tensor Lower(Tensor t) => _dtype.Value is { } d ? t.To(Lowered(t.DType, d)) : t;

    /// <summary>null-tolerant <see cref="Lower(Tensor)"/>.</summary>
    public static Tensor? LowerOrNull(Tensor? t) => t is null ? null : Lower(t);

    static DType Lowered(DType t, DType target) => t is DType.Float32 or DType.Float16 or DType.BFloat16 ? target : t;

    /// <summary>Whether a Float32 op must cast any of <paramref name="operands"/> up first.</summary>
    public static bool Raises(params ReadOnlySpan<Tensor?> operands)
    {
        if (_dtype.Value is null) return false;
        foreach (var t in operands) if (t is not null && t.DType.IsHalf()) return true;
        return false;
    }

    /// <summary><paramref name="t"/> as a Float32 op computes with it.</summary>
    public static Tensor Raise(Tensor t) => t.DType.IsHalf() ? t.To(DType.Float32) : t;

    /// <summary>null-tolerant <see cref="Raise(Tensor)"/>.</summary>
    public static Tensor? RaiseOrNull(Tensor? t) => t is null ? null : Raise(t);
}
