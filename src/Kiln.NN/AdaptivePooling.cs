namespace Kiln.NN;

/// <summary>
/// Adaptive pooling of transformer outputs (Brothers, "Robust Noise Attenuation via Adaptive Pooling of Transformer
/// Outputs", 2025): the pooled vector is an attention-weighted mean of the tokens, y = sum_t softmax_t(q . k_t /
/// sqrt(d)) v_t, with k_t = W_k x_t and v_t = W_v x_t and a learned query q, an approximation of the signal-optimal
/// vector quantiser that can down-weight noise tokens. With q = 0 every token gets weight 1/T and, with identity
/// projections, it is average pooling.
/// </summary>
public sealed class AdaptivePool : Module<Tensor, Tensor>
{
    /// <summary>Creates the layer: the query starts at 0 (average pooling of the values), the projections at the identity.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="features"/> is not positive.</exception>
    public AdaptivePool(int features, DType dtype = DType.Float32, Device? device = null)
    {
        if (features <= 0) throw new ArgumentOutOfRangeException(nameof(features), features, "adaptive_pool: features must be positive");
        var dev = device ?? Device.Cpu;
        Features = features;
        Query = RegisterParameter("query", new Parameter(Tensor.Zeros(new Shape(features), dtype, dev)));
        KeyWeight = RegisterParameter("key_weight", new Parameter(Tensor.Eye(features, dtype: dtype, device: dev)));
        ValueWeight = RegisterParameter("value_weight", new Parameter(Tensor.Eye(features, dtype: dtype, device: dev)));
    }

    /// <summary>d, the token width.</summary>
    public int Features { get; }
    /// <summary>The query q [d].</summary>
    public Parameter Query { get; }
    /// <summary>W_k [d, d] (k_t = W_k x_t).</summary>
    public Parameter KeyWeight { get; }
    /// <summary>W_v [d, d] (v_t = W_v x_t).</summary>
    public Parameter ValueWeight { get; }

    /// <summary>The pooling weights softmax_t(q . k_t / sqrt(d)) [B, T] of tokens x [B, T, d].</summary>
    /// <exception cref="ShapeMismatchException">x is not [B, T, d] with T &gt;= 1.</exception>
    public Tensor Weights(Tensor x)
    {
        Check(x);
        return (x.MatMul(KeyWeight.T).MatMul(Query) / Math.Sqrt(Features)).Softmax(-1);
    }

    /// <summary>Pools tokens x [B, T, d] to [B, d].</summary>
    /// <exception cref="ShapeMismatchException">x is not [B, T, d] with T &gt;= 1.</exception>
    public override Tensor Forward(Tensor input) => Weights(input).Unsqueeze(1).MatMul(input.MatMul(ValueWeight.T)).Squeeze(1);

    void Check(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Rank != 3 || x.Shape[2] != Features || x.Shape[1] < 1)
            throw new ShapeMismatchException("adaptive_pool", "input", $"input must be [B, T >= 1, {Features}], got {x.Shape}");
    }
}
