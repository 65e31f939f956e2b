namespace Kiln.Methods.Reward;

/// <summary>A reward function on R^d, evaluated on rows of a batch.</summary>
public interface IReward
{
    /// <summary>r(x) for each row of <paramref name="x"/> [n, d]; returns [n] on the reward's device (x is moved there).</summary>
    Tensor Evaluate(Tensor x);

    /// <summary>Rows [k, d] spanning a subspace such that r(x) depends on x only through its projection onto it, or null when
    /// no small such subspace is known. A basis lets <see cref="TiltedPolicy"/> evaluate policies exactly by quadrature.</summary>
    Tensor? Basis { get; }
}

/// <summary>A reward given by a tensor function and, optionally, a subspace it depends on.</summary>
/// <param name="f">r on rows of a batch [n, d] -&gt; [n].</param>
/// <param name="basis">Rows [k, d] spanning the subspace r depends on, or null.</param>
public sealed class FunctionReward(Func<Tensor, Tensor> f, Tensor? basis = null) : IReward
{
    /// <inheritdoc/>
    public Tensor Evaluate(Tensor x) => f(x);
    /// <inheritdoc/>
    public Tensor? Basis { get; } = basis;
}

/// <summary>r(x) = &lt;v, x&gt; + c: tilts N(0, I) to N(v/β, I).</summary>
public sealed class LinearReward : IReward
{
    readonly Tensor _v;
    readonly double _c;

    /// <summary>The linear reward with direction <paramref name="v"/> [d] and offset <paramref name="offset"/>.</summary>
    public LinearReward(Tensor v, double offset = 0)
    {
        if (v.Rank != 1) throw new ShapeMismatchException("linear_reward", nameof(v), $"v must be a vector, got {v.Shape}");
        _v = v; _c = offset;
    }

    /// <inheritdoc/>
    public Tensor Evaluate(Tensor x) => x.To(_v.DType).To(_v.Device).MatMul(_v) + _c;
    /// <inheritdoc/>
    public Tensor? Basis => _v.Unsqueeze(0);
}

/// <summary>
/// The Gaussian single-index model: x ~ π₀ = N(0, I_d), r*(x) = σ*(&lt;θ*, x&gt;) with |θ*| = 1, labels y = r*(x) + ε with
/// ε ~ N(0, s²). θ* and samples live on <see cref="Device"/> in <see cref="DType"/>.
/// </summary>
public sealed class SingleIndexModel : IReward
{
    /// <summary>A model with a random direction θ* drawn uniformly on the sphere from <paramref name="generator"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">d is not positive or the noise level is negative.</exception>
    public SingleIndexModel(int d, Link link, double noiseStd, Generator generator, DType dtype = DType.Float32, Device? device = null)
        : this(RandomDirection(d, generator, dtype, device), link, noiseStd) { }

    /// <summary>A model with the given direction (normalized to unit length).</summary>
    public SingleIndexModel(Tensor theta, Link link, double noiseStd)
    {
        ArgumentNullException.ThrowIfNull(link);
        if (theta.Rank != 1 || theta.Shape[0] < 1) throw new ShapeMismatchException("single_index", nameof(theta), $"theta must be a non-empty vector, got {theta.Shape}");
        if (!(noiseStd >= 0)) throw new ArgumentOutOfRangeException(nameof(noiseStd), noiseStd, "single_index: noise std must be non-negative");
        double norm = theta.To(DType.Float64).Norm().Item();
        if (!(norm > 0) || !double.IsFinite(norm)) throw new ArgumentException($"single_index: theta must be finite and non-zero (norm {norm})", nameof(theta));
        Theta = theta / norm;
        Link = link;
        NoiseStd = noiseStd;
    }

    /// <summary>The unit direction θ* [d].</summary>
    public Tensor Theta { get; }
    /// <summary>The link σ*.</summary>
    public Link Link { get; }
    /// <summary>The label noise standard deviation s.</summary>
    public double NoiseStd { get; }
    /// <summary>The dimension d.</summary>
    public int D => Theta.Shape[0];
    /// <summary>The dtype of θ* and of samples.</summary>
    public DType DType => Theta.DType;
    /// <summary>The device of θ* and of samples.</summary>
    public Device Device => Theta.Device;

    /// <summary>r*(x) = σ*(&lt;θ*, x&gt;) for rows of x [n, d].</summary>
    public Tensor Evaluate(Tensor x) => Link.Apply(x.To(DType).To(Device).MatMul(Theta));

    /// <summary>θ* as a [1, d] basis: r* depends on x only through &lt;θ*, x&gt;.</summary>
    public Tensor? Basis => Theta.Unsqueeze(0);

    /// <summary>n samples x ~ N(0, I_d) [n, d] and labels y = r*(x) + ε [n].</summary>
    public (Tensor X, Tensor Y) Sample(int n, Generator generator)
    {
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), n, "single_index: n must be non-negative");
        var x = Tensor.Randn([n, D], generator, dtype: DType, device: Device);
        var y = Evaluate(x);
        if (NoiseStd > 0) y = y + Tensor.Randn([n], generator, std: NoiseStd, dtype: DType, device: Device);
        return (x, y);
    }

    /// <summary>log E[exp(y/β)] for a label y of this model (exact up to quadrature): log E_z[exp(σ(z)/β)] + s²/(2β²).</summary>
    public double LogMeanExpLabel(double beta, int nodes = 400)
    {
        var rule = Hermite.Rule(nodes);
        double max = rule.Nodes.Max(z => Link.Scalar(z) / beta);
        return max + Math.Log(rule.Expect(z => Math.Exp(Link.Scalar(z) / beta - max))) + NoiseStd * NoiseStd / (2 * beta * beta);
    }

    static Tensor RandomDirection(int d, Generator generator, DType dtype, Device? device)
    {
        if (d < 1) throw new ArgumentOutOfRangeException(nameof(d), d, "single_index: d must be positive");
        var v = Tensor.Randn([d], generator, dtype: DType.Float64);
        return (v / v.Norm().Item()).To(dtype).To(device ?? Device.Cpu);
    }
}
