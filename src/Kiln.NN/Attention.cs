namespace Kiln.NN;

/// <summary>Functional forms of the attention building blocks.</summary>
public static class Functional
{
    /// <summary>
    /// softmax(q k^T * scale + mask) v for q [..., Tq, d], k [..., Tk, d], v [..., Tk, dv] -> [..., Tq, dv].
    /// <paramref name="causal"/> hides keys after each query (query i sees keys 0..i + Tk - Tq, so a query block at
    /// the end of a longer key sequence lines up with it). <paramref name="mask"/> is a Bool tensor broadcastable to
    /// [..., Tq, Tk], true where attention is allowed. The scale defaults to 1/sqrt(d).
    /// A query row with no allowed key gets NaN, as in PyTorch.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The head dims of q and k, or the key lengths of k and v, differ.</exception>
    public static Tensor ScaledDotProductAttention(Tensor q, Tensor k, Tensor v, bool causal = false, Tensor? mask = null, double? scale = null)
    {
        if (q.Rank < 2 || k.Rank < 2 || v.Rank < 2) throw new ShapeMismatchException("attention", nameof(q), $"q, k and v need at least 2 dimensions, got {q.Shape}, {k.Shape}, {v.Shape}");
        if (q.Shape[-1] != k.Shape[-1]) throw new ShapeMismatchException("attention", nameof(k), $"q {q.Shape} and k {k.Shape} differ in their last (head) dimension");
        if (k.Shape[-2] != v.Shape[-2]) throw new ShapeMismatchException("attention", nameof(v), $"k {k.Shape} and v {v.Shape} differ in their key length");
        if (mask is not null && mask.DType != DType.Bool) throw new ArgumentException($"attention: mask must be Bool (true = attend), not {mask.DType}", nameof(mask));
        int tq = q.Shape[-2], tk = k.Shape[-2];
        // The core's fused kernel (no Tq x Tk matrix) covers no mask, and causal masks when both alignments agree.
        if (mask is null && (!causal || tq == tk)) return Tensor.ScaledDotProductAttention(q, k, v, causal, scale);
        var scores = q.MatMul(k.T) * (scale ?? 1 / Math.Sqrt(q.Shape[-1]));
        Tensor? allowed = mask;
        if (causal)
        {
            var c = CausalMask(tq, tk, q.Device);
            allowed = allowed is null ? c : allowed & c;
        }
        if (allowed is not null) scores = scores.MaskedFill(!allowed, double.NegativeInfinity);
        return scores.Softmax(-1).MatMul(v);
    }

    /// <summary>A Bool [tq, tk] mask, true where key j is at or before query i's position (i + tk - tq).</summary>
    public static Tensor CausalMask(int tq, int tk, Device? device = null)
    {
        var m = new bool[tq * tk];
        for (int i = 0; i < tq; i++)
            for (int j = 0; j <= Math.Min(tk - 1, i + tk - tq); j++) m[i * tk + j] = true;
        return Tensor.FromArray(m, new Shape(tq, tk)).To(device ?? Device.Cpu);
    }
}

/// <summary>
/// Rotary position embeddings (RoPE, Su et al. 2021) in the rotate-half layout of GPT-NeoX and Llama: the head
/// dimension is split into halves (x1, x2) and position t rotates pair i by angle t * base^(-2i/d):
/// (x1 cos - x2 sin, x2 cos + x1 sin). Cos and sin tables from <see cref="Rope"/> are cached for <c>maxSeqLen</c> positions.
/// </summary>
public sealed class RotaryEmbedding : Module
{
    readonly Tensor _cos, _sin;

    /// <summary>Creates the tables for heads of even size <paramref name="headDim"/>.</summary>
    /// <exception cref="ArgumentException">headDim is odd or not positive, or maxSeqLen is not positive.</exception>
    public RotaryEmbedding(int headDim, int maxSeqLen = 4096, double theta = 10000, DType dtype = DType.Float32, Device? device = null)
    {
        if (headDim <= 0 || headDim % 2 != 0) throw new ArgumentException($"rotary: headDim must be positive and even, got {headDim}", nameof(headDim));
        if (maxSeqLen <= 0) throw new ArgumentException($"rotary: maxSeqLen must be positive, got {maxSeqLen}", nameof(maxSeqLen));
        HeadDim = headDim; MaxSeqLen = maxSeqLen;
        var (cos, sin) = Rope.Tables(headDim, theta, null, maxSeqLen, 0, maxSeqLen, dtype, device ?? Device.Cpu);
        _cos = RegisterBuffer("cos", cos, persistent: false);
        _sin = RegisterBuffer("sin", sin, persistent: false);
    }

    /// <summary>Head size.</summary>
    public int HeadDim { get; }
    /// <summary>Positions covered by the tables.</summary>
    public int MaxSeqLen { get; }

    /// <summary>Rotates x [..., T, headDim] whose rows are positions offset, offset + 1, ...</summary>
    /// <exception cref="ShapeMismatchException">The last dim is not headDim.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The positions run past maxSeqLen.</exception>
    public Tensor Apply(Tensor x, int offset = 0)
    {
        if (x.Rank < 2 || x.Shape[-1] != HeadDim) throw new ShapeMismatchException("rotary", nameof(x), $"x has shape {x.Shape}; it must be [..., T, {HeadDim}]");
        int t = x.Shape[-2];
        if (offset < 0 || offset + t > MaxSeqLen) throw new ArgumentOutOfRangeException(nameof(offset), $"rotary: positions {offset}..{offset + t - 1} are outside the table of {MaxSeqLen}");
        return Rope.Apply(x, _cos.Narrow(0, offset, t).To(x.DType), _sin.Narrow(0, offset, t).To(x.DType));
    }
}

/// <summary>
/// Multi-head self-attention: q, k, v projections of x [B, T, d], split into heads of d / heads, optional RoPE on q
/// and k, scaled dot-product attention (causal or with a Bool mask), and an output projection. Parameter names follow
/// Llama (q_proj, k_proj, v_proj, o_proj).
/// </summary>
public sealed class MultiHeadAttention : Module<Tensor, Tensor>
{
    /// <summary>Creates the layer.</summary>
    /// <exception cref="ArgumentException">dModel is not divisible by heads.</exception>
    public MultiHeadAttention(int dModel, int heads, bool causal = true, bool rotary = true, bool bias = false, int maxSeqLen = 4096,
        Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        if (heads <= 0 || dModel <= 0 || dModel % heads != 0)
            throw new ArgumentException($"attention: dModel {dModel} must be a positive multiple of heads {heads}", nameof(heads));
        DModel = dModel; Heads = heads; HeadDim = dModel / heads; Causal = causal;
        QProj = RegisterModule("q_proj", new Linear(dModel, dModel, bias, generator, dtype, device));
        KProj = RegisterModule("k_proj", new Linear(dModel, dModel, bias, generator, dtype, device));
        VProj = RegisterModule("v_proj", new Linear(dModel, dModel, bias, generator, dtype, device));
        OProj = RegisterModule("o_proj", new Linear(dModel, dModel, bias, generator, dtype, device));
        if (rotary) Rotary = RegisterModule("rotary", new RotaryEmbedding(HeadDim, maxSeqLen, dtype: dtype, device: device));
    }

    /// <summary>Model width.</summary>
    public int DModel { get; }
    /// <summary>Number of heads.</summary>
    public int Heads { get; }
    /// <summary>Width of one head.</summary>
    public int HeadDim { get; }
    /// <summary>Whether each position attends only to itself and earlier ones.</summary>
    public bool Causal { get; }
    /// <summary>Query projection.</summary>
    public Linear QProj { get; }
    /// <summary>Key projection.</summary>
    public Linear KProj { get; }
    /// <summary>Value projection.</summary>
    public Linear VProj { get; }
    /// <summary>Output projection.</summary>
    public Linear OProj { get; }
    /// <summary>The rotary embedding, or null without RoPE.</summary>
    public RotaryEmbedding? Rotary { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => Forward(input, null);

    /// <summary>Attention over x [B, T, dModel] with an optional Bool mask broadcastable to [B, heads, T, T] (true = attend).</summary>
    /// <exception cref="ShapeMismatchException">x is not [B, T, dModel].</exception>
    public Tensor Forward(Tensor x, Tensor? mask)
    {
        if (x.Rank != 3 || x.Shape[2] != DModel) throw new ShapeMismatchException("attention", nameof(x), $"x has shape {x.Shape}; it must be [batch, time, {DModel}]");
        int b = x.Shape[0], t = x.Shape[1];
        Tensor SplitHeads(Tensor y) => y.Reshape(b, t, Heads, HeadDim).Transpose(1, 2);
        var q = SplitHeads(QProj.Call(x));
        var k = SplitHeads(KProj.Call(x));
        var v = SplitHeads(VProj.Call(x));
        if (Rotary is not null) { q = Rotary.Apply(q); k = Rotary.Apply(k); }
        var o = Functional.ScaledDotProductAttention(q, k, v, Causal, mask);
        return OProj.Call(o.Transpose(1, 2).Reshape(b, t, DModel));
    }

    /// <summary><see cref="Forward(Tensor, Tensor?)"/> with this module's hooks (see <see cref="Module{TIn, TOut}.Call(TIn)"/>); the hooks see x, not the mask.</summary>
    public Tensor Call(Tensor x, Tensor? mask) => Call(x, y => Forward(y, mask));
}

/// <summary>Which normalization a transformer block uses.</summary>
public enum NormKind
{
    /// <summary><see cref="NN.LayerNorm"/>.</summary>
    LayerNorm,
    /// <summary><see cref="NN.RMSNorm"/>.</summary>
    RMSNorm,
}

/// <summary>
/// A pre-norm transformer block: x + attn(norm1(x)), then h + mlp(norm2(h)) with a two-layer MLP of width
/// <c>mlpHidden</c> (4 dModel by default) and optional dropout on both residual branches.
/// </summary>
public sealed class TransformerBlock : Module<Tensor, Tensor>
{
    /// <summary>Creates the block.</summary>
    public TransformerBlock(int dModel, int heads, int? mlpHidden = null, bool causal = true, bool rotary = true, NormKind norm = NormKind.LayerNorm,
        ActivationKind activation = ActivationKind.Gelu, double dropout = 0, int maxSeqLen = 4096, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        Module<Tensor, Tensor> Norm() => norm == NormKind.LayerNorm ? new LayerNorm(dModel, dtype: dtype, device: device) : new RMSNorm(dModel, dtype: dtype, device: device);
        Norm1 = RegisterModule("norm1", Norm());
        Attention = RegisterModule("attn", new MultiHeadAttention(dModel, heads, causal, rotary, false, maxSeqLen, generator, dtype, device));
        Norm2 = RegisterModule("norm2", Norm());
        Mlp = RegisterModule("mlp", new MLP([dModel, mlpHidden ?? 4 * dModel, dModel], activation, 0, generator, dtype, device));
        Drop = RegisterModule("dropout", new Dropout(dropout, generator));
    }

    /// <summary>Normalization before attention.</summary>
    public Module<Tensor, Tensor> Norm1 { get; }
    /// <summary>The attention layer.</summary>
    public MultiHeadAttention Attention { get; }
    /// <summary>Normalization before the MLP.</summary>
    public Module<Tensor, Tensor> Norm2 { get; }
    /// <summary>The feed-forward network.</summary>
    public MLP Mlp { get; }
    /// <summary>Dropout on the residual branches.</summary>
    public Dropout Drop { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => Forward(input, null);

    /// <summary>The block on x [B, T, dModel] with an optional attention mask (see <see cref="MultiHeadAttention.Forward(Tensor, Tensor?)"/>).</summary>
    public Tensor Forward(Tensor x, Tensor? mask)
    {
        var h = x + Drop.Call(Attention.Call(Norm1.Call(x), mask));
        return h + Drop.Call(Mlp.Call(Norm2.Call(h)));
    }

    /// <summary><see cref="Forward(Tensor, Tensor?)"/> with this module's hooks (see <see cref="Module{TIn, TOut}.Call(TIn)"/>); the hooks see x, not the mask.</summary>
    public Tensor Call(Tensor x, Tensor? mask) => Call(x, y => Forward(y, mask));
}
