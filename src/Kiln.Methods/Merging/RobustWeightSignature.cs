namespace Kiln.Methods.Merging;

/// <summary>
/// Robust Weight Signatures (Cai et al., ICML 2023): the robustness a model gains from robust training lives in a weight
/// difference, RWS = theta_robust - theta_standard (restricted to chosen tensors, the shallow layers in the paper), that
/// patches the standard model: theta_standard + c * RWS. Several signatures compose by adding them with their
/// coefficients; stored quantised to b bits (uniform, per tensor) each entry is off by at most half a step.
/// </summary>
public static class RobustWeightSignature
{
    /// <summary>RWS = robust - standard on the names <paramref name="keep"/> accepts (all when null).</summary>
    /// <exception cref="ArgumentException">The layouts differ, or no name is kept.</exception>
    public static Dictionary<string, Tensor> Extract(IReadOnlyDictionary<string, Tensor> robust, IReadOnlyDictionary<string, Tensor> standard, Func<string, bool>? keep = null)
    {
        var all = ParameterTree.Subtract(robust, standard);
        var rws = all.Where(kv => keep?.Invoke(kv.Key) ?? true).ToDictionary(kv => kv.Key, kv => kv.Value);
        if (rws.Count == 0) throw new ArgumentException("robust weight signature: the filter keeps no tensor", nameof(keep));
        return rws;
    }

    /// <summary>standard + sum_i c_i * RWS_i on the names the signatures hold (every signature must hold the same names); other tensors are copied unchanged.</summary>
    /// <exception cref="ArgumentException">Counts differ, a coefficient is not finite, or a signature's names or shapes do not fit the model.</exception>
    public static Dictionary<string, Tensor> Patch(IReadOnlyDictionary<string, Tensor> standard, IReadOnlyList<IReadOnlyDictionary<string, Tensor>> signatures, IReadOnlyList<double> coefficients)
    {
        ArgumentNullException.ThrowIfNull(standard); ArgumentNullException.ThrowIfNull(signatures);
        if (signatures.Count == 0) throw new ArgumentException("robust weight signature: no signatures given", nameof(signatures));
        var part = signatures[0].Keys.ToDictionary(k => k, k => standard.TryGetValue(k, out var t) ? t
            : throw new ArgumentException($"robust weight signature: the model has no tensor '{k}'", nameof(signatures)));
        var patched = ParameterTree.Combine(part, signatures, coefficients);
        return standard.ToDictionary(kv => kv.Key, kv => patched.TryGetValue(kv.Key, out var p) ? p : kv.Value.Clone());
    }

    /// <summary>
    /// Uniform b-bit quantisation of each tensor: codes q = round((x - min) / step) in [0, 2^b - 1] with
    /// step = (max - min) / (2^b - 1), so <see cref="QuantizedSignature.Dequantize"/> is within step / 2 of x.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">bits is not in 1..16.</exception>
    public static QuantizedSignature Quantize(IReadOnlyDictionary<string, Tensor> signature, int bits)
    {
        ArgumentNullException.ThrowIfNull(signature);
        if (bits is < 1 or > 16) throw new ArgumentOutOfRangeException(nameof(bits), bits, "robust weight signature: bits must lie in 1..16");
        int levels = (1 << bits) - 1;
        var entries = new Dictionary<string, (Tensor Codes, double Min, double Step, DType DType)>();
        using (Autograd.NoGrad())
            foreach (var (name, t) in signature)
            {
                var x = t.To(DType.Float64);
                double lo = x.Numel == 0 ? 0 : x.Min().Item(), hi = x.Numel == 0 ? 0 : x.Max().Item();
                double step = hi > lo ? (hi - lo) / levels : 0;
                var codes = step > 0 ? ((x - lo) / step).Round().Clamp(0, levels) : x.ZerosLike();
                entries[name] = (codes.To(DType.Int32), lo, step, t.DType);
            }
        return new QuantizedSignature(entries, bits);
    }
}

/// <summary>A robust weight signature stored as b-bit codes with a per-tensor offset and step.</summary>
public sealed class QuantizedSignature
{
    readonly Dictionary<string, (Tensor Codes, double Min, double Step, DType DType)> _entries;

    internal QuantizedSignature(Dictionary<string, (Tensor Codes, double Min, double Step, DType DType)> entries, int bits) { _entries = entries; Bits = bits; }

    /// <summary>Bits per entry.</summary>
    public int Bits { get; }

    /// <summary>The quantisation step of each tensor: every dequantised entry is within half of it of the original.</summary>
    public IReadOnlyDictionary<string, double> Steps => _entries.ToDictionary(kv => kv.Key, kv => kv.Value.Step);

    /// <summary>The signature back in its dtypes: min + code * step.</summary>
    public Dictionary<string, Tensor> Dequantize() =>
        _entries.ToDictionary(kv => kv.Key, kv => (kv.Value.Codes.To(DType.Float64) * kv.Value.Step + kv.Value.Min).To(kv.Value.DType));
}
