namespace Kiln.Methods.Sketching;

/// <summary>The sparsity penalties g of <see cref="SparseCoding"/>.</summary>
public enum SparsePenalty
{
    /// <summary>g(z) = |z| (the usual ℓ₁ sparse coding, soft thresholding).</summary>
    L1,
    /// <summary>g(z) = |z|^½ (half thresholding).</summary>
    LHalf,
    /// <summary>g(z) = 1[z ≠ 0] (hard thresholding).</summary>
    L0,
}

/// <summary>
/// Sparse coding beyond ℓ₁ (Rentzeperis, Calatroni, Perrinet and Prandi, "Beyond ℓ₁ sparse coding in V1", 2023):
/// codes Z = argmin ½‖X - D Z‖² + λ Σ g(z) for a dictionary D [dim, atoms] with the ℓ₁, ℓ½ or ℓ₀ penalty, by the
/// iterative thresholding Z ← prox_{ηλg}(Z + η Dᵀ(X - D Z)), η = 1/‖D‖₂². The proximal maps are closed forms:
/// soft thresholding for ℓ₁, hard thresholding at √(2λ) for ℓ₀, and for ℓ½ the half-thresholding formula of Xu et al.
/// (2012): zero below (3/2) λ^{2/3}, else (2/3) x (1 + cos(2π/3 - (2/3) φ)) with φ = arccos((λ/4)(|x|/3)^{-3/2}).
/// The non-convex penalties reach a given reconstruction error with fewer active atoms.
/// </summary>
public static class SparseCoding
{
    /// <summary>prox_{λg}(x) = argmin_z ½(z - x)² + λ g(z), element-wise.</summary>
    /// <param name="x">The input, any shape.</param>
    /// <param name="lambda">λ ≥ 0.</param>
    /// <param name="penalty">g.</param>
    /// <exception cref="ArgumentOutOfRangeException">λ is negative or not finite.</exception>
    public static Tensor Prox(Tensor x, double lambda, SparsePenalty penalty)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (!(lambda >= 0) || double.IsInfinity(lambda)) throw new ArgumentOutOfRangeException(nameof(lambda), lambda, "SparseCoding.Prox: lambda must be finite and non-negative");
        var zero = x.ZerosLike();
        switch (penalty)
        {
            case SparsePenalty.L1:
                return x - x.Clamp(-lambda, lambda);
            case SparsePenalty.L0:
                return Tensor.Where(x.Abs() > Math.Sqrt(2 * lambda), x, zero);
            case SparsePenalty.LHalf:
            {
                if (lambda == 0) return x;
                // Xu et al. state the rule for (z - x)² + μ|z|^½, i.e. μ = 2λ: threshold (54^{1/3}/4) μ^{2/3} = (3/2) λ^{2/3}.
                double threshold = 1.5 * Math.Pow(lambda, 2.0 / 3);
                var keep = x.Abs() > threshold;
                var safe = Tensor.Where(keep, x.Abs(), x.OnesLike() * threshold);
                var phi = ((safe / 3.0).Pow(-1.5) * (lambda / 4)).Clamp(-1, 1).Acos();
                var value = x * ((2 * Math.PI / 3 - phi * (2.0 / 3)).Cos() + 1) * (2.0 / 3);
                return Tensor.Where(keep, value, zero);
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(penalty), penalty, "SparseCoding: unknown penalty");
        }
    }

    /// <summary>½‖X - D Z‖² + λ Σ g(Z) (sums over every column).</summary>
    /// <param name="dictionary">D, [dim, atoms].</param>
    /// <param name="signals">X, [dim, batch].</param>
    /// <param name="codes">Z, [atoms, batch].</param>
    /// <param name="lambda">λ.</param>
    /// <param name="penalty">g.</param>
    public static double Objective(Tensor dictionary, Tensor signals, Tensor codes, double lambda, SparsePenalty penalty)
    {
        Check(dictionary, signals);
        var g = penalty switch
        {
            SparsePenalty.L1 => codes.Abs(),
            SparsePenalty.LHalf => codes.Abs().Sqrt(),
            _ => (codes.Abs() > 0).To(codes.DType),
        };
        return (0.5 * (signals - dictionary.MatMul(codes)).Pow(2).Sum() + lambda * g.Sum()).To(DType.Float64).Item();
    }

    /// <summary>Runs <paramref name="steps"/> thresholding iterations from Z = 0; returns the codes and the objective after each step.</summary>
    /// <param name="dictionary">D, [dim, atoms].</param>
    /// <param name="signals">X, [dim, batch].</param>
    /// <param name="lambda">λ ≥ 0.</param>
    /// <param name="penalty">g.</param>
    /// <param name="steps">Iterations, non-negative.</param>
    /// <exception cref="ShapeMismatchException">X's rows differ from D's.</exception>
    public static (Tensor Codes, IReadOnlyList<double> Objectives) Encode(Tensor dictionary, Tensor signals, double lambda, SparsePenalty penalty, int steps)
    {
        Check(dictionary, signals);
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        double lipschitz = Math.Pow(dictionary.Detach().Svd().S.To(DType.Float64).Amax().Item(), 2);
        double eta = lipschitz > 0 ? 1 / lipschitz : 1;
        var z = Tensor.Zeros(new Shape(dictionary.Shape[1], signals.Shape[1]), signals.DType, signals.Device);
        var objectives = new List<double>();
        for (int t = 0; t < steps; t++)
        {
            z = Prox(z + dictionary.T.MatMul(signals - dictionary.MatMul(z)) * eta, eta * lambda, penalty);
            objectives.Add(Objective(dictionary, signals, z, lambda, penalty));
        }
        return (z, objectives);
    }

    static void Check(Tensor dictionary, Tensor signals)
    {
        ArgumentNullException.ThrowIfNull(dictionary);
        ArgumentNullException.ThrowIfNull(signals);
        if (dictionary.Rank != 2 || signals.Rank != 2 || signals.Shape[0] != dictionary.Shape[0])
            throw new ShapeMismatchException("SparseCoding", nameof(signals), $"signals {signals.Shape} and dictionary {dictionary.Shape} must be [dim, batch] and [dim, atoms]");
    }
}
