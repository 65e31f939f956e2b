namespace Kiln.Methods.Reward;

/// <summary>
/// The two-layer reward network r(x) = Σ_j a_j relu(&lt;w_j, x&gt; + b_j) with N neurons: first-layer weights W [N, d] on
/// the unit sphere, fixed biases b [N] and a readout a [N]. Stage 1 (<see cref="FeatureLearning"/>) moves W; stage 2
/// (<see cref="Readout"/>) fits a on the frozen features.
/// </summary>
public sealed class ReluNetwork : IReward
{
    /// <summary>A network with the given parameters (a defaults to zeros).</summary>
    /// <exception cref="ShapeMismatchException">The shapes do not agree.</exception>
    public ReluNetwork(Tensor w, Tensor b, Tensor? a = null)
    {
        if (w.Rank != 2) throw new ShapeMismatchException("relu_network", nameof(w), $"W must be [N, d], got {w.Shape}");
        if (b.Rank != 1 || b.Shape[0] != w.Shape[0]) throw new ShapeMismatchException("relu_network", nameof(b), new Shape(w.Shape[0]), b.Shape);
        if (a is not null && (a.Rank != 1 || a.Shape[0] != w.Shape[0])) throw new ShapeMismatchException("relu_network", nameof(a), new Shape(w.Shape[0]), a.Shape);
        W = w; B = b.To(w.DType).To(w.Device);
        A = (a ?? Tensor.Zeros([w.Shape[0]], w.DType, w.Device)).To(w.DType).To(w.Device);
    }

    /// <summary>
    /// N neurons with w_j uniform on the unit sphere of R^d and b_j uniform on [-<paramref name="biasRange"/>, <paramref name="biasRange"/>].
    /// </summary>
    public static ReluNetwork Random(int neurons, int d, double biasRange, Generator generator, DType dtype = DType.Float32, Device? device = null)
    {
        if (neurons < 1) throw new ArgumentOutOfRangeException(nameof(neurons), neurons, "relu_network: need at least one neuron");
        if (d < 1) throw new ArgumentOutOfRangeException(nameof(d), d, "relu_network: d must be positive");
        if (!(biasRange >= 0)) throw new ArgumentOutOfRangeException(nameof(biasRange), biasRange, "relu_network: the bias range B must be non-negative");
        var w = FeatureLearning.NormalizeRows(Tensor.Randn([neurons, d], generator, dtype: dtype, device: device));
        var b = Tensor.Rand([neurons], generator, -biasRange, biasRange, dtype, device);
        return new ReluNetwork(w, b);
    }

    /// <summary>First-layer weights [N, d], unit rows.</summary>
    public Tensor W { get; }
    /// <summary>Biases [N].</summary>
    public Tensor B { get; }
    /// <summary>Readout [N].</summary>
    public Tensor A { get; }
    /// <summary>Number of neurons N.</summary>
    public int Neurons => W.Shape[0];
    /// <summary>Input dimension d.</summary>
    public int D => W.Shape[1];

    /// <summary>A copy with first-layer weights <paramref name="w"/>.</summary>
    public ReluNetwork WithW(Tensor w) => new(w, B, A);
    /// <summary>A copy with readout <paramref name="a"/>.</summary>
    public ReluNetwork WithA(Tensor a) => new(W, B, a);

    /// <summary>The features Φ = relu(X Wᵀ + b) [n, N] for rows of x [n, d].</summary>
    public Tensor Features(Tensor x)
    {
        if (x.Rank != 2 || x.Shape[1] != D) throw new ShapeMismatchException("relu_network", nameof(x), $"x must be [n, {D}], got {x.Shape}");
        return (x.To(W.DType).To(W.Device).MatMul(W.T) + B).Relu();
    }

    /// <summary>r(x) = Φ(x) a [n].</summary>
    public Tensor Evaluate(Tensor x) => Features(x).MatMul(A);

    /// <summary>Null: with N ≥ 2 generic neurons the reward depends on all of span(W).</summary>
    public Tensor? Basis => null;

    /// <summary>The overlaps m_j = |&lt;w_j, θ*&gt;| [N] (rows of W are unit vectors).</summary>
    public Tensor Overlaps(Tensor theta) => W.MatMul(theta.To(W.DType).To(W.Device)).Abs();

    /// <summary>The fraction of neurons with overlap m_j ≥ <paramref name="threshold"/> (1/2 by default).</summary>
    public double RecoveredFraction(Tensor theta, double threshold = 0.5) =>
        (Overlaps(theta) >= threshold).To(DType.Float64).Mean().Item();
}
