using Kiln.Kernels;

namespace Kiln.Methods.Smoothing;

/// <summary>The smoothing distribution added to every numerical feature.</summary>
public enum NoiseKind
{
    /// <summary>x' = x + N(0, sigma^2 I): l2 certificates.</summary>
    Gaussian,
    /// <summary>x' = x + U[-lambda, lambda]^d: l1 certificates.</summary>
    Uniform,
}

/// <summary>Isotropic smoothing noise of one <see cref="NoiseKind"/> and scale (sigma for Gaussian, lambda for uniform).</summary>
public readonly record struct Noise
{
    /// <summary>Creates noise of <paramref name="kind"/> with scale <paramref name="scale"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The scale is not a positive finite number.</exception>
    public Noise(NoiseKind kind, double scale)
    {
        if (!(scale > 0) || double.IsInfinity(scale)) throw new ArgumentOutOfRangeException(nameof(scale), scale, "the noise scale must be a positive finite number");
        if (kind is not (NoiseKind.Gaussian or NoiseKind.Uniform)) throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown noise kind");
        Kind = kind; Scale = scale;
    }

    /// <summary>Gaussian noise N(0, sigma^2 I) (l2 certificates).</summary>
    public static Noise Gaussian(double sigma) => new(NoiseKind.Gaussian, sigma);
    /// <summary>Uniform noise U[-lambda, lambda]^d (l1 certificates).</summary>
    public static Noise Uniform(double lambda) => new(NoiseKind.Uniform, lambda);

    /// <summary>The kind of noise.</summary>
    public NoiseKind Kind { get; }
    /// <summary>sigma (Gaussian) or lambda (uniform).</summary>
    public double Scale { get; }
    /// <summary>The norm of the certificate: "l2" or "l1".</summary>
    public string Norm => Kind == NoiseKind.Gaussian ? "l2" : "l1";

    /// <summary>P[x + e &gt;= v] for one coordinate: Phi((x - v)/sigma), or clip((x - v)/(2 lambda) + 1/2, 0, 1).</summary>
    public double UpperTail(double x, double v) => Kind == NoiseKind.Gaussian
        ? Reference.NormalCdf((x - v) / Scale)
        : Math.Min(1.0, Math.Max(0.0, (x - v) / (2 * Scale) + 0.5));

    /// <summary><see cref="UpperTail(double, double)"/> elementwise for a tensor of differences x - v.</summary>
    public Tensor UpperTail(Tensor diff) => Kind == NoiseKind.Gaussian
        ? (diff / Scale).NormalCdf()
        : (diff / (2 * Scale) + 0.5).Clamp(0.0, 1.0);

    /// <summary>
    /// The certified radius for probability <paramref name="pA"/> of the top class (clamped below 1 - 1e-15):
    /// sigma Phi^-1(pA) for l2, 2 lambda (pA - 1/2) for l1. Negative below 1/2.
    /// </summary>
    public double Radius(double pA)
    {
        pA = Math.Min(pA, 1 - 1e-15);
        return Kind == NoiseKind.Gaussian ? Scale * Reference.NormalIcdf(pA) : 2 * Scale * (pA - 0.5);
    }

    /// <summary><see cref="Radius(double)"/> elementwise (Float64 tensor of top-class probabilities), on the tensor's device.</summary>
    public Tensor Radius(Tensor pA)
    {
        var p = pA.To(DType.Float64).Clamp(null, 1 - 1e-15);
        return Kind == NoiseKind.Gaussian ? p.NormalIcdf() * Scale : (p - 0.5) * (2 * Scale);
    }

    /// <summary>One noise sample of the given shape (float64) from <paramref name="generator"/>.</summary>
    public Tensor Sample(Shape shape, Generator generator, Device? device = null) => Kind == NoiseKind.Gaussian
        ? Tensor.Randn(shape, generator, 0, Scale, DType.Float64, device)
        : Tensor.Rand(shape, generator, -Scale, Scale, DType.Float64, device);

    /// <summary>Formats as "l2 sigma=0.25" or "l1 lambda=2".</summary>
    public override string ToString() => Kind == NoiseKind.Gaussian ? $"l2 sigma={Scale:G4}" : $"l1 lambda={Scale:G4}";
}
