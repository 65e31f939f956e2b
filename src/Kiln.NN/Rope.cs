namespace Kiln.NN;

/// <summary>
/// Rotary position embedding (RoPE, Su et al. 2021) as Hugging Face applies it (rotate_half convention of GPT-NeoX and
/// Llama: the two halves of a head are the two coordinates of each rotated pair), with the frequency scalings of
/// <see cref="RopeScaling"/>. The one implementation behind <see cref="RotaryEmbedding"/> and the decoder models.
/// </summary>
public static class Rope
{
    /// <summary>
    /// The inverse frequencies theta^(-2i/d), i &lt; d/2, as scaled by <paramref name="s"/>, and the multiplier of cos
    /// and sin, for a forward whose largest position is <paramref name="seqLen"/> - 1 (only dynamic scaling depends on it).
    /// </summary>
    /// <param name="d">Rotated width (even).</param>
    /// <param name="theta">RoPE base.</param>
    /// <param name="s">Frequency scaling, or null for plain RoPE.</param>
    /// <param name="maxPositions">Context length that stands in for <see cref="RopeScaling.OriginalMaxPositions"/> when it is null.</param>
    /// <param name="seqLen">Positions covered by the forward.</param>
    public static (double[] InvFreq, double Scale) Frequencies(int d, double theta, RopeScaling? s, int maxPositions, int seqLen)
    {
        int half = d / 2;
        if (s?.Type == "dynamic" && seqLen > (s.OriginalMaxPositions ?? maxPositions))
        {
            int max = s.OriginalMaxPositions ?? maxPositions;
            theta *= Math.Pow(s.Factor * seqLen / max - (s.Factor - 1), d / (d - 2.0));
        }
        var inv = new double[half];
        for (int i = 0; i < half; i++) inv[i] = 1.0 / Math.Pow(theta, 2.0 * i / d);
        switch (s?.Type)
        {
            case "linear":
                for (int i = 0; i < half; i++) inv[i] /= s.Factor;
                return (inv, 1);
            case "llama3":
            {
                double old = s.OriginalMaxPositions ?? maxPositions;
                double lowWave = old / s.LowFreqFactor, highWave = old / s.HighFreqFactor;
                for (int i = 0; i < half; i++)
                {
                    double wave = 2 * Math.PI / inv[i];
                    if (wave > lowWave) inv[i] /= s.Factor;
                    else if (wave >= highWave)
                    {
                        double smooth = (old / wave - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                        inv[i] = (1 - smooth) * inv[i] / s.Factor + smooth * inv[i];
                    }
                }
                return (inv, 1);
            }
            case "yarn":
            {
                double max = s.OriginalMaxPositions ?? maxPositions;
                double CorrectionDim(double rotations) => d * Math.Log(max / (rotations * 2 * Math.PI)) / (2 * Math.Log(theta));
                double low = Math.Max(Math.Floor(CorrectionDim(s.BetaFast)), 0);
                double high = Math.Min(Math.Ceiling(CorrectionDim(s.BetaSlow)), d - 1);
                if (low == high) high += 0.001;
                for (int i = 0; i < half; i++)
                {
                    double extrapolation = 1 - Math.Clamp((i - low) / (high - low), 0, 1);
                    inv[i] = inv[i] / s.Factor * (1 - extrapolation) + inv[i] * extrapolation;
                }
                double scale = s.AttentionFactor ?? (s is { Mscale: { } m, MscaleAllDim: { } all } && m != 0 && all != 0
                    ? RopeScaling.YarnMscale(s.Factor, m) / RopeScaling.YarnMscale(s.Factor, all)
                    : RopeScaling.YarnMscale(s.Factor));
                return (inv, scale);
            }
            default:
                return (inv, 1);
        }
    }

    /// <summary>
    /// cos and sin tables, [count, d], for positions start .. start + count - 1, in <paramref name="dtype"/> on
    /// <paramref name="device"/>; the arguments are those of <see cref="Frequencies"/>.
    /// </summary>
    public static (Tensor Cos, Tensor Sin) Tables(int d, double theta, RopeScaling? s, int maxPositions, int start, int count, DType dtype, Device device)
    {
        var (inv, scale) = Frequencies(d, theta, s, maxPositions, start + count);
        int half = d / 2;
        var cos = new double[count * d];
        var sin = new double[count * d];
        for (int t = 0; t < count; t++)
            for (int i = 0; i < half; i++)
            {
                double a = (start + t) * inv[i];
                double cv = Math.Cos(a) * scale, sv = Math.Sin(a) * scale;
                cos[t * d + i] = cos[t * d + i + half] = cv;
                sin[t * d + i] = sin[t * d + i + half] = sv;
            }
        return (Tensor.FromArray(cos, new Shape(count, d)).To(dtype).To(device), Tensor.FromArray(sin, new Shape(count, d)).To(dtype).To(device));
    }

    /// <summary>x cos + rotate_half(x) sin for x of shape [..., positions, head dim] and tables [positions, head dim]
    /// (the fused <see cref="Tensor.Rope"/>).</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        ArgumentNullException.ThrowIfNull(x);
        return x.Rope(cos, sin);
    }
}
