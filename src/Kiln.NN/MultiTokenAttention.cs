namespace Kiln.NN;

/// <summary>
/// Multi-Token Attention (Golovneva et al. 2025): causal softmax attention whose logits are convolved over
/// (query, key) per head before the softmax, with future logits zeroed before the convolution and set to -inf after
/// it: Â = softmax(Mask_-inf(sum_{i' &lt; cq} sum_{j'} theta[h, i', j'] Mask_0(q_{i - i'} . k_{j - j'} / sqrt(d)))),
/// j' from -floor(ck/2) to ceil(ck/2) - 1 (index j' + floor(ck/2) of theta); then head mixing within groups of
/// <c>g</c> heads after the softmax, Â'_{h} = sum_{h'} W[group, h mod g, h' mod g] Â_{h'}, and optionally a per-head
/// normalisation of the head outputs scaled by a depth factor.
/// </summary>
public static class MultiTokenAttentionFunctional
{
    /// <summary>
    /// Multi-token attention of q, k [B, H, T, d] and v [B, H, T, dv] with key-query kernel <paramref name="kqKernel"/>
    /// [H, cq, ck] and head-mixing weights <paramref name="headMix"/> [H / g, g, g] (null: no mixing).
    /// </summary>
    /// <returns>[B, H, T, dv].</returns>
    /// <exception cref="ShapeMismatchException">A shape does not fit (names the argument).</exception>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor kqKernel, Tensor? headMix = null)
    {
        const string op = "multi_token_attention";
        ArgumentNullException.ThrowIfNull(q); ArgumentNullException.ThrowIfNull(k); ArgumentNullException.ThrowIfNull(v); ArgumentNullException.ThrowIfNull(kqKernel);
        if (q.Rank != 4) throw new ShapeMismatchException(op, nameof(q), $"q must be [B, H, T, d], got {q.Shape}");
        if (!k.Shape.Equals(q.Shape)) throw new ShapeMismatchException(op, nameof(k), q.Shape, k.Shape, "k must have q's shape");
        if (v.Rank != 4 || v.Shape[0] != q.Shape[0] || v.Shape[1] != q.Shape[1] || v.Shape[2] != q.Shape[2])
            throw new ShapeMismatchException(op, nameof(v), $"v must be [{q.Shape[0]}, {q.Shape[1]}, {q.Shape[2]}, dv], got {v.Shape}");
        int heads = q.Shape[1], t = q.Shape[2];
        if (kqKernel.Rank != 3 || kqKernel.Shape[0] != heads || kqKernel.Shape[1] < 1 || kqKernel.Shape[2] < 1)
            throw new ShapeMismatchException(op, nameof(kqKernel), $"kqKernel must be [{heads}, cq >= 1, ck >= 1], got {kqKernel.Shape}");
        if (headMix is not null && (headMix.Rank != 3 || headMix.Shape[1] != headMix.Shape[2] || headMix.Shape[0] * headMix.Shape[1] != heads))
            throw new ShapeMismatchException(op, nameof(headMix), $"headMix must be [H / g, g, g] with H = {heads}, got {headMix.Shape}");
        int cq = kqKernel.Shape[1], ck = kqKernel.Shape[2];
        var causal = Functional.CausalMask(t, t, q.Device);
        var logits = q.MatMul(k.T) / Math.Sqrt(q.Shape[3]);
        logits = Tensor.Where(causal, logits, logits.ZerosLike());
        // theta reads q_{i - i'} and k_{j - j'}: a cross-correlation by theta flipped on both axes, padded so that it
        // sees cq - 1 earlier queries and ceil(ck/2) - 1 earlier, floor(ck/2) later keys.
        var padded = logits.Pad([(ck + 1) / 2 - 1, ck / 2, cq - 1, 0]);
        var w = kqKernel.Flip(1, 2).Unsqueeze(1);
        int b = q.Shape[0];
        var conv = Tensor.Conv2d(padded, w, groups: heads);
        var attn = conv.MaskedFill(!causal, double.NegativeInfinity).Softmax(-1);
        if (headMix is not null)
        {
            int g = headMix.Shape[1];
            var grouped = attn.Reshape(b, heads / g, g, t * t);
            attn = headMix.MatMul(grouped).Reshape(b, heads, t, t);
        }
        return attn.MatMul(v);
    }
}

/// <summary>
/// A multi-token attention layer: projections q, k, v, o of <c>dModel</c>, <see cref="MultiTokenAttentionFunctional.Attend"/>
/// with a learned key-query kernel (initialised to the identity, theta[h, 0, floor(ck/2)] = 1, so it starts as causal
/// softmax attention) and learned head mixing (identity at start), and an optional per-head normalisation of the
/// outputs scaled by <c>depthScale</c>. Input and output [B, T, dModel].
/// </summary>
public sealed class MultiTokenAttention : Module<Tensor, Tensor>
{
    /// <summary>Creates the layer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive, heads do not divide dModel, or mixGroup does not divide heads.</exception>
    public MultiTokenAttention(int dModel, int heads, int queryKernel = 6, int keyKernel = 11, int mixGroup = 2, bool headNorm = true, double depthScale = 1,
        Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        if (dModel <= 0 || heads <= 0 || dModel % heads != 0)
            throw new ArgumentOutOfRangeException(nameof(heads), $"multi_token_attention: heads ({heads}) must be positive and divide dModel ({dModel})");
        if (queryKernel <= 0 || keyKernel <= 0) throw new ArgumentOutOfRangeException(nameof(queryKernel), $"multi_token_attention: kernel sizes must be positive, got {queryKernel} x {keyKernel}");
        if (mixGroup <= 0 || heads % mixGroup != 0) throw new ArgumentOutOfRangeException(nameof(mixGroup), mixGroup, $"multi_token_attention: mixGroup must be positive and divide heads ({heads})");
        Heads = heads; HeadNorm = headNorm; DepthScale = depthScale;
        var dev = device ?? Device.Cpu;
        QProj = RegisterModule("q_proj", new Linear(dModel, dModel, false, generator, dtype, dev));
        KProj = RegisterModule("k_proj", new Linear(dModel, dModel, false, generator, dtype, dev));
        VProj = RegisterModule("v_proj", new Linear(dModel, dModel, false, generator, dtype, dev));
        OProj = RegisterModule("o_proj", new Linear(dModel, dModel, false, generator, dtype, dev));
        var theta = new double[heads * queryKernel * keyKernel];
        for (int h = 0; h < heads; h++) theta[h * queryKernel * keyKernel + keyKernel / 2] = 1;
        KqKernel = RegisterParameter("kq_kernel", new Parameter(Tensor.FromArray(theta, new Shape(heads, queryKernel, keyKernel)).To(dtype).To(dev)));
        var eye = Tensor.Eye(mixGroup, dtype: dtype, device: dev).Unsqueeze(0).Expand(heads / mixGroup, mixGroup, mixGroup);
        HeadMix = RegisterParameter("head_mix", new Parameter(eye.Contiguous()));
    }

    /// <summary>Heads.</summary>
    public int Heads { get; }
    /// <summary>Whether head outputs are normalised (layer norm over each head's features) and scaled by <see cref="DepthScale"/>.</summary>
    public bool HeadNorm { get; }
    /// <summary>The depth scaling of normalised head outputs.</summary>
    public double DepthScale { get; }
    /// <summary>Query projection.</summary>
    public Linear QProj { get; }
    /// <summary>Key projection.</summary>
    public Linear KProj { get; }
    /// <summary>Value projection.</summary>
    public Linear VProj { get; }
    /// <summary>Output projection.</summary>
    public Linear OProj { get; }
    /// <summary>theta [H, cq, ck].</summary>
    public Parameter KqKernel { get; }
    /// <summary>Head mixing [H / g, g, g].</summary>
    public Parameter HeadMix { get; }

    /// <inheritdoc/>
    /// <exception cref="ShapeMismatchException">The input is not [B, T, dModel].</exception>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank != 3) throw new ShapeMismatchException("multi_token_attention", nameof(input), $"input must be [B, T, dModel], got {input.Shape}");
        int b = input.Shape[0], t = input.Shape[1], dm = input.Shape[2], hd = dm / Heads;
        Tensor Split(Tensor x) => x.Reshape(b, t, Heads, hd).Transpose(1, 2);
        var y = MultiTokenAttentionFunctional.Attend(Split(QProj.Forward(input)), Split(KProj.Forward(input)), Split(VProj.Forward(input)), KqKernel, HeadMix);
        if (HeadNorm) y = y.LayerNorm() * DepthScale;
        return OProj.Forward(y.Transpose(1, 2).Reshape(b, t, dm));
    }
}
