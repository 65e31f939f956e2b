using Kiln.NN;

namespace Kiln.Methods.Quantization;

/// <summary>
/// SimVQ (Zhu et al., 2024, "Addressing Representation Collapse in Vector Quantized Models with One Linear Layer"): the
/// codebook is a frozen random basis C [K, D] (N(0, 1/D), as the authors' code) reparameterised through one linear
/// layer, E = C W^T + b, and only W and b learn. The codebook loss ||sg[z] - E_k||^2 then moves every code through the
/// shared W, not only the selected ones, which is what keeps the whole codebook in use.
/// </summary>
public sealed class SimVQ : Module<Tensor, VqOutput>
{
    /// <summary>Creates the frozen basis and the linear layer (bias included, as the authors' nn.Linear).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive.</exception>
    public SimVQ(int codes, int dim, VqEstimator estimator = VqEstimator.StraightThrough, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        if (codes <= 0) throw new ArgumentOutOfRangeException(nameof(codes), codes, "simvq: codes must be positive");
        if (dim <= 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "simvq: dim must be positive");
        Estimator = estimator;
        Basis = RegisterBuffer("basis", Tensor.Randn([codes, dim], generator, 0, 1 / Math.Sqrt(dim), dtype, device));
        Projection = RegisterModule("projection", new Linear(dim, dim, bias: true, generator, dtype, device));
    }

    /// <summary>The frozen basis C [K, D].</summary>
    public Tensor Basis { get; }

    /// <summary>The learned linear layer W [D, D], b [D].</summary>
    public Linear Projection { get; }

    /// <summary>The gradient estimator from the quantized output to the encoder.</summary>
    public VqEstimator Estimator { get; }

    /// <summary>The effective codebook E = C W^T + b [K, D], differentiable in W and b.</summary>
    public Tensor Codebook() => Projection.Call(Basis);

    /// <inheritdoc/>
    /// <exception cref="ShapeMismatchException">The input is not [N, D].</exception>
    public override VqOutput Forward(Tensor input) => VectorQuantization.Quantize(input, Codebook(), Estimator);
}
