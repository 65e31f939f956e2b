using Kiln.NN;

namespace Kiln.Methods.Quantization;

/// <summary>Which encoded feature each code is pulled towards in <see cref="OnlineClusteredCodebook"/>.</summary>
public enum AnchorSampling
{
    /// <summary>The feature closest to the code.</summary>
    Closest,
    /// <summary>A feature drawn with probability softmax over the batch of -||z_n - c_k||^2 (the authors' default 'probrandom').</summary>
    ProbabilisticRandom,
}

/// <summary>
/// CVQ-VAE's online clustered codebook (Zheng and Vedaldi, 2023, eq. 8-10, as the authors' code with Euclidean
/// distance): a VQ-VAE codebook whose codes, after every training step, move towards anchors drawn from the encoded
/// batch, c_k &lt;- (1 - alpha_k) c_k + alpha_k a_k, with alpha_k = exp(-p_k K 10 / (1 - gamma) - 1e-3) and p_k the
/// running average usage p_k &lt;- gamma p_k + (1 - gamma) (fraction of the batch assigned to k). Rarely used (dead)
/// codes are re-initialised near the features; frequently used codes barely move.
/// </summary>
public sealed class OnlineClusteredCodebook : Module<Tensor, VqOutput>
{
    readonly Generator _generator;

    /// <summary>Creates the codebook (uniform on +-1/K) with zero usage.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive or <paramref name="decay"/> is not in [0, 1).</exception>
    public OnlineClusteredCodebook(int codes, int dim, double decay = 0.99, AnchorSampling anchor = AnchorSampling.ProbabilisticRandom, Generator? generator = null,
        DType dtype = DType.Float32, Device? device = null)
    {
        if (codes <= 0) throw new ArgumentOutOfRangeException(nameof(codes), codes, "online_clustered_codebook: codes must be positive");
        if (dim <= 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "online_clustered_codebook: dim must be positive");
        if (!(decay >= 0 && decay < 1)) throw new ArgumentOutOfRangeException(nameof(decay), decay, "online_clustered_codebook: decay must be in [0, 1)");
        Decay = decay; Anchor = anchor;
        _generator = generator ?? new Generator(0);
        Codebook = RegisterParameter("codebook", new Parameter(Init.Uniform_(Tensor.Empty([codes, dim], dtype, device), -1.0 / codes, 1.0 / codes, _generator)));
        Usage = RegisterBuffer("embed_prob", Tensor.Zeros([codes], dtype, device));
    }

    /// <summary>The codebook [K, D].</summary>
    public Parameter Codebook { get; }
    /// <summary>The running average usage p [K].</summary>
    public Tensor Usage { get; }
    /// <summary>gamma, the usage average's decay.</summary>
    public double Decay { get; }
    /// <summary>How anchors are chosen.</summary>
    public AnchorSampling Anchor { get; }

    /// <summary>alpha_k = exp(-p_k K 10 / (1 - gamma) - 1e-3) [K] for the current usage.</summary>
    public Tensor Alpha() => (Usage * (-10.0 * Codebook.Shape[0] / (1 - Decay)) - 1e-3).Exp();

    /// <summary>
    /// Quantizes (straight-through) and, in training, updates the usage and pulls the codes towards their anchors
    /// afterwards (the returned output and losses use the codebook before the update, as the authors' code).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The input is not [N, D].</exception>
    public override VqOutput Forward(Tensor input)
    {
        var o = VectorQuantization.Quantize(input, Codebook.Value);
        if (Training && input.Shape[0] > 0) Step(input, o.Indices);
        return o;
    }

    /// <summary>The anchor update for encoder outputs <paramref name="z"/> [N, D] assigned to <paramref name="indices"/> [N].</summary>
    void Step(Tensor z, Tensor indices)
    {
        using var _ = Autograd.NoGrad();
        int k = Codebook.Shape[0];
        var zd = z.Detach();
        var c = Codebook.Detach();
        var batchUsage = indices.OneHot(k, Usage.DType).Mean(0);
        Usage.Copy_(Decay * Usage + (1 - Decay) * batchUsage);
        // Negative squared distances [K, N]: the closest feature has the largest score.
        var score = 2.0 * c.MatMul(zd.Transpose(0, 1)) - c.Square().Sum(1, keepDim: true) - zd.Square().Sum(1).Unsqueeze(0);
        var pick = Anchor == AnchorSampling.Closest
            ? score.ArgMax(1)
            : (score.To(DType.Float64) - (-Tensor.Rand(score.Shape, _generator, 0, 1, DType.Float64, score.Device).Log()).Log()).ArgMax(1);
        var anchors = zd.IndexSelect(0, pick);
        var alpha = Alpha().Unsqueeze(1);
        Codebook.Copy_(c * (1.0 - alpha) + anchors * alpha);
    }
}
