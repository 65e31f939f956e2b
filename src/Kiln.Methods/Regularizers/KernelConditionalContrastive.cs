namespace Kiln.Methods.Regularizers;

/// <summary>
/// Conditional contrastive learning with kernel, CCL-K (Tsai et al.): instead of sampling negatives from P(y | z), every
/// sample in the batch contributes with the weights of the kernel conditional embedding operator,
/// W = K_Z (K_Z + λI)⁻¹ (the kernel ridge regression smoother on the conditioning variable z), and the objective is
/// E_i[ f(x_i, y_i) − log Σ_j W_ij e^{f(x_i, y_j)} ] (maximized; <see cref="Loss"/> is its negative).
/// </summary>
public static class KernelConditionalContrastive
{
    /// <summary>The Gaussian kernel exp(−‖z_i − z_j‖² / (2σ²)) [n, n] of the rows of <paramref name="z"/> [n, p].</summary>
    /// <exception cref="ShapeMismatchException">z is not a matrix.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The bandwidth σ is not positive and finite.</exception>
    public static Tensor RbfKernel(Tensor z, double bandwidth)
    {
        if (z.Rank != 2) throw new ShapeMismatchException("rbf_kernel", nameof(z), $"z must be [n, p], got {z.Shape}");
        if (!(bandwidth > 0) || !double.IsFinite(bandwidth)) throw new ArgumentOutOfRangeException(nameof(bandwidth), bandwidth, "rbf_kernel: the bandwidth must be positive and finite");
        var d2 = (z.Unsqueeze(1) - z.Unsqueeze(0)).Square().Sum(-1);
        return (d2 * (-0.5 / (bandwidth * bandwidth))).Exp();
    }

    /// <summary>The delta kernel 1[z_i = z_j] [n, n] (Float64) of discrete conditioning values <paramref name="labels"/> [n].</summary>
    /// <exception cref="ShapeMismatchException">labels is not a vector.</exception>
    public static Tensor DeltaKernel(Tensor labels)
    {
        if (labels.Rank != 1) throw new ShapeMismatchException("delta_kernel", nameof(labels), $"labels must be [n], got {labels.Shape}");
        return labels.Unsqueeze(1).Eq(labels.Unsqueeze(0)).To(DType.Float64);
    }

    /// <summary>
    /// W = K (K + λI)⁻¹ [n, n] for a symmetric kernel matrix <paramref name="kernel"/> [n, n]: row i holds the weights
    /// the kernel ridge smoother puts on each sample when estimating a conditional expectation at z_i. With the delta
    /// kernel it is 1[z_i = z_j] / (m_i + λ), m_i the size of z_i's group: conditional sampling as λ → 0.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The kernel is not square.</exception>
    /// <exception cref="ArgumentOutOfRangeException">λ is not positive and finite.</exception>
    /// <exception cref="ArgumentException">The kernel is not symmetric (relative tolerance 1e-10) or holds NaN.</exception>
    public static Tensor Weights(Tensor kernel, double lambda)
    {
        if (kernel.Rank != 2 || kernel.Shape[0] != kernel.Shape[1]) throw new ShapeMismatchException("ccl_k_weights", nameof(kernel), $"kernel must be square [n, n], got {kernel.Shape}");
        if (!(lambda > 0) || !double.IsFinite(lambda)) throw new ArgumentOutOfRangeException(nameof(lambda), lambda, "ccl_k_weights: lambda must be positive and finite");
        // The smoother identity below needs K = Kᵀ; a relative 1e-10 allows rounding in a computed kernel.
        var asym = (kernel - kernel.T).Abs().Amax().Item();
        double scale = kernel.Abs().Amax().Item();
        if (!(asym <= 1e-10 * scale)) throw new ArgumentException($"ccl_k_weights: kernel {kernel.Shape} is not symmetric (largest |K_ij − K_ji| = {asym}, largest |K_ij| = {scale})", nameof(kernel));
        int n = kernel.Shape[0];
        var reg = kernel + lambda * Tensor.Eye(n, dtype: kernel.DType, device: kernel.Device);
        // K (K + λI)⁻¹ = ((K + λI)⁻¹ K)ᵀ for symmetric K; the two are equal since K and (K + λI)⁻¹ commute.
        return reg.Solve(kernel).T;
    }

    /// <summary>
    /// The CCL-K loss −(1/n) Σ_i [s_ii − log Σ_j W_ij exp(s_ij)] for scores s_ij = f(x_i, y_j) [n, n] (e.g. cosine
    /// similarities over a temperature) and weights W [n, n] from <see cref="Weights"/>. The inner sum is taken with
    /// the row maximum factored out; it must be positive (true for kernel smoothers with non-negative weights).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The scores are not square or the weights differ in shape.</exception>
    public static Tensor Loss(Tensor scores, Tensor weights)
    {
        const string op = "ccl_k_loss";
        if (scores.Rank != 2 || scores.Shape[0] != scores.Shape[1] || scores.Shape[0] < 1) throw new ShapeMismatchException(op, nameof(scores), $"scores must be square [n >= 1, n], got {scores.Shape}");
        if (weights.Shape != scores.Shape) throw new ShapeMismatchException(op, nameof(weights), scores.Shape, weights.Shape);
        var m = scores.Detach().Amax([1], keepDim: true);
        var logDen = (weights * (scores - m).Exp()).Sum(1).Log() + m.Squeeze(1);
        var pos = scores.Diagonal();
        return (logDen - pos).Mean();
    }
}
