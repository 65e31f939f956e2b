namespace Kiln.NN;

/// <summary>RoPE frequency scaling from a Hugging Face config's <c>rope_scaling</c> (or <c>rope_parameters</c>).</summary>
/// <param name="Type">"default", "linear", "dynamic", "llama3" or "yarn".</param>
/// <param name="Factor">Context extension factor.</param>
/// <param name="OriginalMaxPositions">Context length the checkpoint was trained with (llama3, yarn, dynamic).</param>
/// <param name="LowFreqFactor">llama3: wavelengths above original/low are divided by the factor.</param>
/// <param name="HighFreqFactor">llama3: wavelengths below original/high are kept.</param>
/// <param name="BetaFast">yarn: rotations that bound the extrapolated band.</param>
/// <param name="BetaSlow">yarn: rotations that bound the interpolated band.</param>
/// <param name="AttentionFactor">yarn: multiplier of cos and sin; null means mscale(factor, Mscale) / mscale(factor, MscaleAllDim)
/// when both are given (DeepSeek), else 0.1 ln(factor) + 1.</param>
/// <param name="Mscale">yarn (DeepSeek): the <c>mscale</c> of the cos/sin multiplier, mscale(s, m) = 0.1 m ln(s) + 1.</param>
/// <param name="MscaleAllDim">yarn (DeepSeek): <c>mscale_all_dim</c>; MLA attention multiplies its softmax scale by mscale(factor, this)^2.</param>
public sealed record RopeScaling(string Type, double Factor = 1, int? OriginalMaxPositions = null, double LowFreqFactor = 1,
    double HighFreqFactor = 4, double BetaFast = 32, double BetaSlow = 1, double? AttentionFactor = null, double? Mscale = null,
    double? MscaleAllDim = null)
{
    /// <summary>yarn's magnitude correction 0.1 m ln(scale) + 1 (1 when scale &lt;= 1), as Hugging Face's <c>get_mscale</c>.</summary>
    public static double YarnMscale(double scale, double m = 1) => scale <= 1 ? 1 : 0.1 * m * Math.Log(scale) + 1;
}
