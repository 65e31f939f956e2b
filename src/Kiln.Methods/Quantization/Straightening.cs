using Kiln.NN;

namespace Kiln.Methods.Quantization;

/// <summary>How <see cref="AffineCodebook"/> maps the stored codes to the codes in use.</summary>
public enum AffineMode
{
    /// <summary>Learned scale and shift: c' = (1 + a s) * c + a b, with s, b starting at zero and a the learning-rate scale.</summary>
    Learnable,
    /// <summary>Matched to the running statistics: c' = sqrt(var_z / (var_c + 1e-8)) (c - mean_c) + mean_z per dimension.</summary>
    RunningStatistics,
}

/// <summary>
/// Affine reparameterisation of the codebook (Huh et al., 2023, "Straightening Out the Straight-Through Estimator",
/// section 5.1, as the authors' vqtorch AffineTransform with one group): a per-dimension scale and shift shared by all
/// codes, so a gradient through any selected code moves every code. With <see cref="AffineMode.RunningStatistics"/>
/// the codebook's mean and variance are matched to the encoder outputs' (exponential moving averages; the first
/// update copies the batch statistics).
/// </summary>
public sealed class AffineCodebook : Module
{
    readonly Tensor? _zMean, _zVar, _cMean, _cVar;
    bool _initialised;

    /// <summary>Creates the transform for codes of width <paramref name="dim"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size, the momentum or the scale is out of range.</exception>
    public AffineCodebook(int dim, AffineMode mode, double momentum = 0.1, double learningRateScale = 1, DType dtype = DType.Float32, Device? device = null)
    {
        if (dim <= 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "affine_codebook: dim must be positive");
        if (!(momentum > 0 && momentum <= 1)) throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "affine_codebook: momentum must be in (0, 1]");
        if (!(learningRateScale > 0 && double.IsFinite(learningRateScale))) throw new ArgumentOutOfRangeException(nameof(learningRateScale), learningRateScale, "affine_codebook: the learning-rate scale must be positive");
        Mode = mode; Momentum = momentum; LearningRateScale = learningRateScale;
        if (mode == AffineMode.Learnable)
        {
            Scale = RegisterParameter("scale", new Parameter(Tensor.Zeros([dim], dtype, device)));
            Shift = RegisterParameter("bias", new Parameter(Tensor.Zeros([dim], dtype, device)));
        }
        else
        {
            _zMean = RegisterBuffer("running_ze_mean", Tensor.Zeros([dim], dtype, device));
            _zVar = RegisterBuffer("running_ze_var", Tensor.Ones([dim], dtype, device));
            _cMean = RegisterBuffer("running_c_mean", Tensor.Zeros([dim], dtype, device));
            _cVar = RegisterBuffer("running_c_var", Tensor.Ones([dim], dtype, device));
        }
    }

    /// <summary>The mode.</summary>
    public AffineMode Mode { get; }
    /// <summary>The running statistics' momentum.</summary>
    public double Momentum { get; }
    /// <summary>The learnable parameters' learning-rate scale a.</summary>
    public double LearningRateScale { get; }
    /// <summary>The learned scale s [D] (learnable mode only).</summary>
    public Parameter? Scale { get; }
    /// <summary>The learned shift b [D] (learnable mode only).</summary>
    public Parameter? Shift { get; }

    /// <summary>The per-dimension (scale, shift) [D] in use.</summary>
    public (Tensor Scale, Tensor Shift) ScaleAndShift()
    {
        if (Mode == AffineMode.Learnable) return (1.0 + LearningRateScale * Scale!.Value, LearningRateScale * Shift!.Value);
        var scale = (_zVar! / (_cVar! + 1e-8)).Sqrt();
        return (scale, _zMean! - scale * _cMean!);
    }

    /// <summary>
    /// Running-statistics mode, in training: folds the batch mean and (biased) variance of the encoder outputs
    /// <paramref name="z"/> [N, D] and of the stored <paramref name="codebook"/> [K, D] into the running statistics.
    /// Does nothing in learnable mode or in evaluation.
    /// </summary>
    public void Update(Tensor z, Tensor codebook)
    {
        VectorQuantization.CheckPair("affine_codebook", z, codebook);
        if (Mode != AffineMode.RunningStatistics || !Training) return;
        using (Autograd.NoGrad())
        {
            var (zm, zv) = (z.Detach().Mean(0), z.Detach().Var(0, correction: 0));
            var (cm, cv) = (codebook.Detach().Mean(0), codebook.Detach().Var(0, correction: 0));
            double m = _initialised ? Momentum : 1;
            foreach (var (run, batch) in new[] { (_zMean!, zm), (_zVar!, zv), (_cMean!, cm), (_cVar!, cv) })
                run.Copy_(m * batch + (1 - m) * run);
            _initialised = true;
        }
    }

    /// <summary>The codes in use: scale * c + shift per dimension, for the stored codebook [K, D].</summary>
    public Tensor Apply(Tensor codebook)
    {
        var (scale, shift) = ScaleAndShift();
        return codebook * scale + shift;
    }
}

/// <summary>
/// The straightened straight-through estimator of Huh et al. (2023): the synchronized update (section 5.2), which also
/// sends nu times the output gradient to the chosen code, and alternating optimisation (section 5.3), which moves the
/// chosen codes towards their encoder outputs before the output is formed, so the decoder's gradient is taken nearer
/// the encoder output (a smaller gradient gap).
/// </summary>
public static class Straightening
{
    /// <summary>
    /// Forward <paramref name="q"/> exactly; backward dL/dz = g and dL/dq = <paramref name="nu"/> g: the value and
    /// gradients of z + sg[q - z] + nu q - sg[nu q] (the authors' synchronized update).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="nu"/> is negative or not finite.</exception>
    /// <exception cref="ShapeMismatchException">The shapes differ.</exception>
    public static Tensor SynchronizedStraightThrough(Tensor z, Tensor q, double nu)
    {
        ArgumentNullException.ThrowIfNull(z); ArgumentNullException.ThrowIfNull(q);
        if (!(nu >= 0 && double.IsFinite(nu))) throw new ArgumentOutOfRangeException(nameof(nu), nu, "synchronized_straight_through: nu must be non-negative and finite");
        if (z.Shape != q.Shape) throw new ShapeMismatchException("synchronized_straight_through", nameof(q), z.Shape, q.Shape, "the code must have the input's shape");
        var value = q.Detach().Clone();
        return Tensor.Custom("synchronized_straight_through", [z, q], _ => value, g => [g, nu * g]);
    }

    /// <summary>
    /// One alternating codebook step: gradient descent with step <paramref name="learningRate"/> on the codebook loss
    /// mean_n ||c_{k_n} - z_n||^2 (over all N D elements) for the fixed assignment <paramref name="indices"/>. Returns
    /// the new codebook [K, D] (not recorded); codes no row chose are unchanged.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="learningRate"/> is negative or not finite.</exception>
    public static Tensor AlternatingStep(Tensor codebook, Tensor z, Tensor indices, double learningRate)
    {
        VectorQuantization.CheckPair("alternating_step", z, codebook);
        if (!(learningRate >= 0 && double.IsFinite(learningRate))) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "alternating_step: the learning rate must be non-negative and finite");
        if (indices.Shape != new Shape(z.Shape[0])) throw new ShapeMismatchException("alternating_step", nameof(indices), new Shape(z.Shape[0]), indices.Shape, "one index per row of z");
        using (Autograd.NoGrad())
        {
            var c = codebook.Detach();
            var diff = c.IndexSelect(0, indices) - z.Detach();
            var grad = c.ZerosLike().ScatterAdd(0, indices.Unsqueeze(1).BroadcastTo(diff.Shape).Contiguous(), diff) * (2.0 / Math.Max(1, diff.Numel));
            return c - learningRate * grad;
        }
    }
}

/// <summary>
/// A vector quantizer with the straightening fixes of Huh et al. (2023): optional affine reparameterisation of the
/// codebook, the synchronized update with weight nu, and alternating optimisation (in-place SGD steps on the codebook
/// loss for the current assignment before the output is formed). Loss convention as the rest of this family:
/// CodebookLoss + beta CommitmentLoss.
/// </summary>
public sealed class StraightenedVectorQuantizer : Module<Tensor, VqOutput>
{
    /// <summary>Creates the quantizer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size, nu, or the alternating settings are out of range.</exception>
    /// <exception cref="ArgumentException">Both an affine map and alternating steps are asked for.</exception>
    public StraightenedVectorQuantizer(int codes, int dim, AffineMode? affine = null, double nu = 0, int alternatingSteps = 0, double alternatingLearningRate = 0,
        Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        if (codes <= 0) throw new ArgumentOutOfRangeException(nameof(codes), codes, "straightened_vq: codes must be positive");
        if (dim <= 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "straightened_vq: dim must be positive");
        if (!(nu >= 0 && double.IsFinite(nu))) throw new ArgumentOutOfRangeException(nameof(nu), nu, "straightened_vq: nu must be non-negative and finite");
        if (alternatingSteps < 0) throw new ArgumentOutOfRangeException(nameof(alternatingSteps), alternatingSteps, "straightened_vq: alternatingSteps must be non-negative");
        if (!(alternatingLearningRate >= 0 && double.IsFinite(alternatingLearningRate))) throw new ArgumentOutOfRangeException(nameof(alternatingLearningRate), alternatingLearningRate, "straightened_vq: alternatingLearningRate must be non-negative and finite");
        if (affine is not null && alternatingSteps > 0)
            throw new ArgumentException("straightened_vq: alternating steps update the stored codebook with the codebook loss of the codes in use; combine them with an affine map only through its learnable parameters, not here", nameof(alternatingSteps));
        Nu = nu; AlternatingSteps = alternatingSteps; AlternatingLearningRate = alternatingLearningRate;
        Codebook = RegisterParameter("codebook", new Parameter(Init.Uniform_(Tensor.Empty([codes, dim], dtype, device), -1.0 / codes, 1.0 / codes, generator)));
        if (affine is { } mode) Affine = RegisterModule("affine", new AffineCodebook(dim, mode, dtype: dtype, device: device));
    }

    /// <summary>The stored codebook [K, D].</summary>
    public Parameter Codebook { get; }
    /// <summary>The affine reparameterisation, or null.</summary>
    public AffineCodebook? Affine { get; }
    /// <summary>The synchronized update's weight.</summary>
    public double Nu { get; }
    /// <summary>Alternating codebook steps per forward in training.</summary>
    public int AlternatingSteps { get; }
    /// <summary>Their learning rate.</summary>
    public double AlternatingLearningRate { get; }

    /// <summary>The codes in use (after the affine map), differentiable in the codebook and the affine parameters.</summary>
    public Tensor Codes() => Affine is null ? Codebook.Value : Affine.Apply(Codebook.Value);

    /// <inheritdoc/>
    /// <exception cref="ShapeMismatchException">The input is not [N, D].</exception>
    public override VqOutput Forward(Tensor input)
    {
        VectorQuantization.CheckPair("straightened_vq", input, Codebook.Value);
        Affine?.Update(input, Codebook.Value);
        var idx = VectorQuantization.Nearest(input, Codes());
        if (Training)
            for (int s = 0; s < AlternatingSteps; s++)
                using (Autograd.NoGrad()) Codebook.Copy_(Straightening.AlternatingStep(Codebook.Value, input, idx, AlternatingLearningRate));
        var q = Codes().IndexSelect(0, idx);
        var (zd, qd) = (input.Detach(), q.Detach());
        var output = Straightening.SynchronizedStraightThrough(input, q, Nu);
        return new VqOutput(output, idx, (zd - q).Square().Mean(), (input - qd).Square().Mean());
    }
}
