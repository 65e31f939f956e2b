using Kiln.NN;

namespace Kiln.Methods.Quantization;

/// <summary>How the gradient of a quantized vector reaches the encoder output it replaced.</summary>
public enum VqEstimator
{
    /// <summary>Straight-through (van den Oord et al., 2017): dL/dz = dL/dq.</summary>
    StraightThrough,
    /// <summary>Rotation trick (Fifty et al., 2024): dL/dz = lambda R^T dL/dq, R the rotation taking z to q's direction.</summary>
    Rotation,
}

/// <summary>One vector-quantization step: the estimator's output, the chosen codes and the VQ-VAE losses.</summary>
/// <param name="Quantized">The quantized vectors [N, D]: equal to the chosen codes, with the estimator's gradient to z.</param>
/// <param name="Indices">The chosen code of each row, Int64 [N].</param>
/// <param name="CodebookLoss">mean ||sg[z] - q||^2 (gradient to the codebook only).</param>
/// <param name="CommitmentLoss">mean ||z - sg[q]||^2 (gradient to the encoder only), not yet weighted by beta.</param>
public sealed record VqOutput(Tensor Quantized, Tensor Indices, Tensor CodebookLoss, Tensor CommitmentLoss)
{
    /// <summary>The VQ-VAE auxiliary loss CodebookLoss + beta CommitmentLoss.</summary>
    public Tensor Loss(double beta) => CodebookLoss + beta * CommitmentLoss;
}

/// <summary>
/// Nearest-codeword vector quantization and its gradient estimators as autodiff ops. The estimators are custom ops
/// (<see cref="Tensor.Custom"/>) whose forward returns the code itself, bit for bit, so every estimator has the same
/// forward and differs only in its backward rule.
/// </summary>
public static class VectorQuantization
{
    /// <summary>
    /// The index of the nearest codeword to each row: argmin_k ||z_n - c_k||^2, computed as ||c_k||^2 - 2 z_n . c_k
    /// (the row's own norm does not change the argmin); ties go to the lowest index. Not differentiable.
    /// </summary>
    /// <param name="z">Vectors [N, D].</param>
    /// <param name="codebook">Codewords [K, D], K at least 1.</param>
    /// <returns>Int64 indices [N].</returns>
    /// <exception cref="ShapeMismatchException">The shapes are not [N, D] and [K, D] with K &gt; 0.</exception>
    public static Tensor Nearest(Tensor z, Tensor codebook)
    {
        CheckPair("vq_nearest", z, codebook);
        using (Autograd.NoGrad())
        {
            var c = codebook.Detach();
            var scores = c.Square().Sum(1).Unsqueeze(0) - 2.0 * z.Detach().MatMul(c.Transpose(0, 1));
            return scores.ArgMin(1);
        }
    }

    /// <summary>
    /// Quantizes <paramref name="z"/> against <paramref name="codebook"/>: nearest codes, the estimator's output and the
    /// VQ-VAE codebook and commitment losses (the codebook loss carries the gradient to the codebook, and through it to
    /// whatever produced the codebook, such as SimVQ's linear layer).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes are not [N, D] and [K, D].</exception>
    public static VqOutput Quantize(Tensor z, Tensor codebook, VqEstimator estimator = VqEstimator.StraightThrough)
    {
        var idx = Nearest(z, codebook);
        var q = codebook.IndexSelect(0, idx);
        var qd = q.Detach();
        var zd = z.Detach();
        var output = estimator switch
        {
            VqEstimator.StraightThrough => StraightThrough(z, qd),
            VqEstimator.Rotation => RotationTrick(z, qd),
            _ => throw new ArgumentOutOfRangeException(nameof(estimator), estimator, "vq: unknown estimator"),
        };
        return new VqOutput(output, idx, (zd - q).Square().Mean(), (z - qd).Square().Mean());
    }

    /// <summary>
    /// Straight-through estimator: the forward returns <paramref name="q"/> exactly and the backward passes the output
    /// gradient to <paramref name="z"/> unchanged (the exact value of z + sg[q - z] without its rounding).
    /// </summary>
    /// <param name="z">Encoder outputs [N, D].</param>
    /// <param name="q">Their codes [N, D] (treated as constants).</param>
    /// <exception cref="ShapeMismatchException">The shapes differ.</exception>
    public static Tensor StraightThrough(Tensor z, Tensor q)
    {
        CheckSame("vq_straight_through", z, q);
        return Tensor.Custom("vq_straight_through", [z], _ => q.Detach().Clone(), g => [g]);
    }

    /// <summary>
    /// The rotation trick (Fifty et al., 2024, eq. 3): the output is q = sg[lambda R] z with lambda = ||q|| / ||z|| and
    /// R = I - 2 r r^T + 2 q^ z^^T, r = (z^ + q^) / ||z^ + q^||, the rotation that takes z^ = z/||z|| to q^ = q/||q||.
    /// The forward returns <paramref name="q"/> exactly; the backward is dL/dz = lambda R^T dL/dq =
    /// lambda (g - 2 r (r.g) + 2 z^ (q^.g)). Degenerate rows: z^ = -q^ gives r = 0 and R = I - 2 q^ q^^T, the reflection
    /// that still takes z^ to q^; z = 0 has no direction and passes the gradient straight through; q = 0 gives lambda = 0.
    /// </summary>
    /// <param name="z">Encoder outputs [N, D].</param>
    /// <param name="q">Their codes [N, D] (treated as constants).</param>
    /// <exception cref="ShapeMismatchException">The shapes are not the same [N, D].</exception>
    public static Tensor RotationTrick(Tensor z, Tensor q)
    {
        CheckSame("vq_rotation_trick", z, q);
        if (z.Rank != 2) throw new ShapeMismatchException("vq_rotation_trick", nameof(z), $"z has shape {z.Shape}; expected [N, D]");
        var zc = z.Detach();
        var qc = q.Detach().Clone();
        return Tensor.Custom("vq_rotation_trick", [z], _ => qc, g =>
        {
            var (r, zHat, qHat, lambda, moving) = RotationFactors(zc, qc);
            var rotated = g - 2.0 * r * (r * g).Sum(1, keepDim: true) + 2.0 * zHat * (qHat * g).Sum(1, keepDim: true);
            return [Tensor.Where(moving, lambda * rotated, g)];
        });
    }

    /// <summary>
    /// The rotation trick's constants for rows z and q [N, D]: the Householder direction r, z^, q^, lambda [N, 1], and
    /// the mask [N, 1] of rows with z != 0 (the others pass gradients straight through).
    /// </summary>
    internal static (Tensor R, Tensor ZHat, Tensor QHat, Tensor Lambda, Tensor Moving) RotationFactors(Tensor z, Tensor q)
    {
        var nz = z.Square().Sum(1, keepDim: true).Sqrt();
        var nq = q.Square().Sum(1, keepDim: true).Sqrt();
        var zPos = nz > 0.0;
        var one = nz.OnesLike();
        var nzSafe = Tensor.Where(zPos, nz, one);
        var zHat = z / nzSafe;
        var qHat = q / Tensor.Where(nq > 0.0, nq, one);
        var s = zHat + qHat;
        var ns = s.Square().Sum(1, keepDim: true).Sqrt();
        var r = s / Tensor.Where(ns > 0.0, ns, one);
        return (r, zHat, qHat, nq / nzSafe, zPos);
    }

    /// <summary>
    /// Codebook usage of a batch of assignments: the perplexity exp(-sum_k p_k log p_k) of the code frequencies p_k
    /// (1 when one code takes everything, K when all K are used equally) and the fraction of the K codes used at least once.
    /// </summary>
    /// <param name="indices">Int64 code indices of any shape, each in [0, codes).</param>
    /// <param name="codes">The codebook size K.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="codes"/> is not positive, or an index is outside [0, codes).</exception>
    public static (double Perplexity, double FractionUsed) Usage(Tensor indices, int codes)
    {
        if (codes <= 0) throw new ArgumentOutOfRangeException(nameof(codes), codes, "vq_usage: the codebook size must be positive");
        var counts = new long[codes];
        foreach (long i in indices.To(DType.Int64).Contiguous().ToArray<long>())
        {
            if (i < 0 || i >= codes) throw new ArgumentOutOfRangeException(nameof(indices), i, $"vq_usage: index {i} is outside [0, {codes})");
            counts[i]++;
        }
        long n = counts.Sum();
        if (n == 0) return (double.NaN, 0);
        double h = 0;
        foreach (long c in counts) if (c > 0) { double p = (double)c / n; h -= p * Math.Log(p); }
        return (Math.Exp(h), counts.Count(c => c > 0) / (double)codes);
    }

    internal static void CheckPair(string op, Tensor z, Tensor codebook)
    {
        ArgumentNullException.ThrowIfNull(z); ArgumentNullException.ThrowIfNull(codebook);
        if (z.Rank != 2) throw new ShapeMismatchException(op, nameof(z), $"z has shape {z.Shape}; expected [N, D]");
        if (codebook.Rank != 2 || codebook.Shape[0] == 0 || codebook.Shape[1] != z.Shape[1])
            throw new ShapeMismatchException(op, nameof(codebook), $"codebook has shape {codebook.Shape}; expected [K, {z.Shape[1]}] with K > 0");
    }

    static void CheckSame(string op, Tensor z, Tensor q)
    {
        ArgumentNullException.ThrowIfNull(z); ArgumentNullException.ThrowIfNull(q);
        if (z.Shape != q.Shape) throw new ShapeMismatchException(op, nameof(q), z.Shape, q.Shape, "the code must have the input's shape");
    }
}

/// <summary>
/// A VQ-VAE bottleneck (van den Oord et al., 2017): a learned codebook [K, D] (uniform on +-1/K, as the reference code),
/// nearest-codeword quantization and a choice of gradient estimator. Train it with the task loss plus
/// <see cref="VqOutput.Loss"/>(beta).
/// </summary>
public sealed class VectorQuantizer : Module<Tensor, VqOutput>
{
    /// <summary>Creates the codebook.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive.</exception>
    public VectorQuantizer(int codes, int dim, VqEstimator estimator = VqEstimator.StraightThrough, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        if (codes <= 0) throw new ArgumentOutOfRangeException(nameof(codes), codes, "vector_quantizer: codes must be positive");
        if (dim <= 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "vector_quantizer: dim must be positive");
        Estimator = estimator;
        Codebook = RegisterParameter("codebook", new Parameter(Init.Uniform_(Tensor.Empty([codes, dim], dtype, device), -1.0 / codes, 1.0 / codes, generator)));
    }

    /// <summary>The codebook [K, D].</summary>
    public Parameter Codebook { get; }

    /// <summary>The gradient estimator.</summary>
    public VqEstimator Estimator { get; }

    /// <inheritdoc/>
    /// <exception cref="ShapeMismatchException">The input is not [N, D].</exception>
    public override VqOutput Forward(Tensor input) => VectorQuantization.Quantize(input, Codebook.Value, Estimator);
}
