using Kiln.NN;

namespace Kiln.Methods.Regularizers;

/// <summary>The generated basis: unit rows [K, d], the final generation loss, and the steps taken.</summary>
/// <param name="Basis">The K unit-norm basis vectors as rows.</param>
/// <param name="Loss">Σ_{i≠j} max(|cos θ_ij| − α, 0) at the returned basis (0 when every pair is within α).</param>
/// <param name="Steps">Gradient steps taken.</param>
public sealed record EquiangularResult(Tensor Basis, double Loss, int Steps);

/// <summary>
/// Equiangular basis vectors, EBV (Shen et al.): K unit vectors generated so every pair is nearly orthogonal,
/// |cos θ_ij| ≤ α, by minimising Σ_{i≠j} max(|cos θ_ij| − α, 0) with the rows renormalized after each step; they are
/// then fixed class "classifiers": an embedding is trained towards its class's vector by softmax cross-entropy over
/// cosine logits cos(f(x), e_k)/τ and predicted as the class of the nearest vector.
/// </summary>
public static class EquiangularBasis
{
    /// <summary>Σ_{i≠j} max(|cos θ_ij| − α, 0) over the rows of <paramref name="basis"/> [K, d].</summary>
    /// <exception cref="ShapeMismatchException">The basis is not a matrix.</exception>
    public static Tensor GenerationLoss(Tensor basis, double alpha)
    {
        if (basis.Rank != 2) throw new ShapeMismatchException("ebv_generation_loss", nameof(basis), $"basis must be [K, d], got {basis.Shape}");
        var unit = basis / basis.Norm(2, [1], keepDim: true);
        int k = basis.Shape[0];
        var off = 1.0 - Tensor.Eye(k, dtype: basis.DType, device: basis.Device);
        return ((unit.MatMul(unit.T).Abs() - alpha).Relu() * off).Sum();
    }

    /// <summary>
    /// Generates <paramref name="count"/> unit vectors in <paramref name="dim"/> dimensions: random Gaussian rows,
    /// then gradient steps of size <paramref name="learningRate"/> on <see cref="GenerationLoss"/> with the rows
    /// renormalized after each, until the loss is 0 or <paramref name="maxSteps"/> steps. The bound is reachable
    /// when it is feasible (always for K ≤ d, where orthogonal vectors exist); otherwise the loss stays positive.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is below 1, α is outside [0, 1), or a step setting is out of range.</exception>
    public static EquiangularResult Generate(int count, int dim, double alpha, Generator generator, int maxSteps = 2000, double learningRate = 0.01, DType dtype = DType.Float64)
    {
        const string op = "ebv_generate";
        ArgumentNullException.ThrowIfNull(generator);
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, $"{op}: count must be at least 1");
        if (dim < 1) throw new ArgumentOutOfRangeException(nameof(dim), dim, $"{op}: dim must be at least 1");
        if (!(alpha >= 0 && alpha < 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, $"{op}: alpha must be in [0, 1)");
        if (maxSteps < 0) throw new ArgumentOutOfRangeException(nameof(maxSteps), maxSteps, $"{op}: maxSteps must be non-negative");
        if (!(learningRate > 0) || !double.IsFinite(learningRate)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, $"{op}: the learning rate must be positive and finite");
        var b = Normalize(Tensor.Randn(new Shape(count, dim), generator, dtype: dtype));
        for (int step = 0; ; step++)
        {
            var leaf = b.Detach().RequiresGrad_();
            var loss = GenerationLoss(leaf, alpha);
            double value = loss.Item();
            if (value == 0 || step == maxSteps) return new EquiangularResult(b.Detach(), value, step);
            var g = Autograd.Grad(loss, leaf);
            b = Normalize((b - learningRate * g).Detach());
        }
    }

    /// <summary>Cosine logits cos(f_i, e_k)/τ [n, K] of embeddings [n, d] against the basis [K, d].</summary>
    /// <exception cref="ShapeMismatchException">The embeddings' width differs from the basis'.</exception>
    /// <exception cref="ArgumentOutOfRangeException">τ is not positive and finite.</exception>
    public static Tensor Logits(Tensor embeddings, Tensor basis, double temperature)
    {
        const string op = "ebv_logits";
        if (basis.Rank != 2) throw new ShapeMismatchException(op, nameof(basis), $"basis must be [K, d], got {basis.Shape}");
        if (embeddings.Rank != 2 || embeddings.Shape[1] != basis.Shape[1]) throw new ShapeMismatchException(op, nameof(embeddings), $"embeddings must be [n, {basis.Shape[1]}], got {embeddings.Shape}");
        if (!(temperature > 0) || !double.IsFinite(temperature)) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, $"{op}: the temperature must be positive and finite");
        return Normalize(embeddings).MatMul(Normalize(basis).T) / temperature;
    }

    /// <summary>The EBV training loss: mean cross-entropy of <see cref="Logits"/> against class indices <paramref name="targets"/> [n].</summary>
    /// <exception cref="ShapeMismatchException">The shapes do not agree.</exception>
    public static Tensor Loss(Tensor embeddings, Tensor basis, Tensor targets, double temperature) =>
        Losses.CrossEntropy(Logits(embeddings, basis, temperature), targets);

    /// <summary>The class of the basis vector nearest each embedding on the sphere (largest cosine), [n] Int64.</summary>
    /// <exception cref="ShapeMismatchException">The embeddings' width differs from the basis'.</exception>
    public static Tensor Predict(Tensor embeddings, Tensor basis) => Logits(embeddings, basis, 1).ArgMax(1);

    static Tensor Normalize(Tensor x) => x / x.Norm(2, [1], keepDim: true);
}
