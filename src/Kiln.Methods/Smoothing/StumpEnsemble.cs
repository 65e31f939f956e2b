using System.Text.Json;
using System.Text.Json.Serialization;

namespace Kiln.Methods.Smoothing;

/// <summary>A decision stump on numerical feature <paramref name="Feature"/>: x_j &lt; threshold goes left. Leaf values lie in [0, 1].</summary>
/// <param name="Feature">The feature (column) index j.</param>
/// <param name="Threshold">The threshold v.</param>
/// <param name="Left">gamma_left, the value for x_j &lt; v.</param>
/// <param name="Right">gamma_right, the value for x_j &gt;= v.</param>
public readonly record struct Stump(int Feature, double Threshold, double Left, double Right);

/// <summary>
/// The stumps of one feature as one piecewise-constant function of that feature (a meta-stump): with thresholds
/// sorted ascending, region k (between threshold k-1 and threshold k) has the integer value
/// sum of the right-values of the thresholds below it plus the left-values of the thresholds above it.
/// </summary>
/// <param name="Feature">The feature index.</param>
/// <param name="Thresholds">The sorted thresholds (n).</param>
/// <param name="Values">The discretized region values (n + 1).</param>
public sealed record MetaStump(int Feature, double[] Thresholds, int[] Values);

/// <summary>
/// An ensemble of decision stumps F(x) = mean of its stumps' leaf values; class 1 iff F(x) &gt; 1/2 (a tie is class 0).
/// Leaf values are discretized to integers G = round(D gamma) (D = <see cref="Discretization"/>, 100 by default); the
/// hard and the smoothed model are both defined on the discretized ensemble. Immutable.
/// </summary>
public sealed class StumpEnsemble
{
    readonly Stump[] _stumps;
    MetaStump[]? _groups;

    /// <summary>Creates an ensemble of <paramref name="stumps"/> with leaf values in [0, 1] discretized in <paramref name="discretization"/> steps.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A leaf value is outside [0, 1], a feature is negative, a threshold is not finite, or the discretization is below 1.</exception>
    public StumpEnsemble(IEnumerable<Stump> stumps, int discretization = 100)
    {
        ArgumentNullException.ThrowIfNull(stumps);
        if (discretization < 1 || discretization > 1_000_000) throw new ArgumentOutOfRangeException(nameof(discretization), discretization, "the discretization must be in 1 .. 1e6");
        _stumps = stumps.ToArray();
        for (int i = 0; i < _stumps.Length; i++)
        {
            var s = _stumps[i];
            if (s.Feature < 0) throw new ArgumentOutOfRangeException(nameof(stumps), $"stump {i} has feature {s.Feature}; features are non-negative column indices");
            if (!double.IsFinite(s.Threshold)) throw new ArgumentOutOfRangeException(nameof(stumps), $"stump {i} has threshold {s.Threshold}; thresholds must be finite");
            if (!(s.Left >= 0 && s.Left <= 1) || !(s.Right >= 0 && s.Right <= 1))
                throw new ArgumentOutOfRangeException(nameof(stumps), $"stump {i} has leaf values ({s.Left}, {s.Right}); leaf values must lie in [0, 1]");
        }
        Discretization = discretization;
    }

    /// <summary>The stumps, in order.</summary>
    public IReadOnlyList<Stump> Stumps => _stumps;
    /// <summary>The number of stumps M.</summary>
    public int Count => _stumps.Length;
    /// <summary>D: leaf values are rounded to multiples of 1/D.</summary>
    public int Discretization { get; }
    /// <summary>The largest feature index used plus one (0 for an empty ensemble).</summary>
    public int FeatureCount => _stumps.Length == 0 ? 0 : _stumps.Max(s => s.Feature) + 1;

    /// <summary>round(D gamma), rounding half to even as NumPy does.</summary>
    public int Level(double gamma) => (int)Math.Round(gamma * Discretization, MidpointRounding.ToEven);

    /// <summary>The decision cut: class 1 iff the integer sum of leaf levels exceeds floor(M D / 2).</summary>
    public long Cut => (long)Count * Discretization / 2;

    /// <summary>A new ensemble with <paramref name="stump"/> appended.</summary>
    public StumpEnsemble Append(Stump stump) => new(_stumps.Append(stump), Discretization);

    /// <summary>The meta-stumps, one per used feature in increasing feature order (grouping is what makes smoothing exact when features repeat).</summary>
    public IReadOnlyList<MetaStump> Groups => _groups ??= BuildGroups();

    MetaStump[] BuildGroups()
    {
        return _stumps.Select((s, i) => (s, i)).GroupBy(t => t.s.Feature).OrderBy(g => g.Key).Select(g =>
        {
            var sorted = g.OrderBy(t => t.s.Threshold).ThenBy(t => t.i).Select(t => t.s).ToArray();
            var values = new int[sorted.Length + 1];
            int left = sorted.Sum(s => Level(s.Left)), right = 0;
            for (int k = 0; k <= sorted.Length; k++)
            {
                values[k] = left + right;
                if (k < sorted.Length) { left -= Level(sorted[k].Left); right += Level(sorted[k].Right); }
            }
            return new MetaStump(g.Key, sorted.Select(s => s.Threshold).ToArray(), values);
        }).ToArray();
    }

    /// <summary>The integer sum of leaf levels at <paramref name="x"/> (no noise).</summary>
    public long Sum(ReadOnlySpan<double> x)
    {
        long sum = 0;
        foreach (var s in _stumps) sum += x[s.Feature] < s.Threshold ? Level(s.Left) : Level(s.Right);
        return sum;
    }

    /// <summary>F(x) of the discretized ensemble, in [0, 1] (0 for an empty ensemble).</summary>
    public double Score(ReadOnlySpan<double> x) => Count == 0 ? 0 : Sum(x) / ((double)Count * Discretization);

    /// <summary>The hard prediction: 1 iff F(x) &gt; 1/2.</summary>
    /// <exception cref="ArgumentException">x has fewer features than the ensemble uses.</exception>
    public int Predict(ReadOnlySpan<double> x)
    {
        if (x.Length < FeatureCount) throw new ArgumentException($"the input has {x.Length} features but the ensemble uses feature {FeatureCount - 1}", nameof(x));
        return Sum(x) > Cut ? 1 : 0;
    }

    /// <summary>Hard predictions for each row of a [n, d] tensor (computed as tensor ops on its device): Int64 [n] of 0/1.</summary>
    public Tensor Predict(Tensor x)
    {
        CheckInput(x, nameof(x));
        int n = x.Shape[0];
        if (Count == 0) return Tensor.Zeros([n], DType.Int64, x.Device);
        var dev = x.Device;
        var xf = x.To(DType.Float64);
        var cols = xf.IndexSelect(1, Tensor.FromArray(_stumps.Select(s => (long)s.Feature).ToArray()).To(dev));
        var thr = Tensor.FromArray(_stumps.Select(s => s.Threshold).ToArray()).To(dev);
        var left = Tensor.FromArray(_stumps.Select(s => (double)Level(s.Left)).ToArray()).To(dev);
        var right = Tensor.FromArray(_stumps.Select(s => (double)Level(s.Right)).ToArray()).To(dev);
        var sum = Tensor.Where(cols < thr, left.BroadcastTo(cols.Shape), right.BroadcastTo(cols.Shape)).Sum(1);
        return (sum > (double)Cut).To(DType.Int64);
    }

    internal void CheckInput(Tensor x, string name)
    {
        ArgumentNullException.ThrowIfNull(x, name);
        if (x.Rank != 2) throw new ShapeMismatchException("stump_ensemble", name, $"inputs must be [n, features], got shape {x.Shape}");
        if (x.Shape[1] < FeatureCount) throw new ShapeMismatchException("stump_ensemble", name, $"inputs have {x.Shape[1]} features but the ensemble uses feature {FeatureCount - 1} (shape {x.Shape})");
    }

    sealed record FileModel(string Format, int Discretization, Stump[] Stumps);

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>The ensemble as JSON ({"format": "kiln-stumps-1", "discretization": D, "stumps": [...]}).</summary>
    public string ToJson() => JsonSerializer.Serialize(new FileModel("kiln-stumps-1", Discretization, _stumps), Json);

    /// <summary>Reads an ensemble written by <see cref="ToJson"/>.</summary>
    /// <exception cref="InvalidDataException">The text is not such a model.</exception>
    public static StumpEnsemble FromJson(string json)
    {
        FileModel? m;
        try { m = JsonSerializer.Deserialize<FileModel>(json, Json); }
        catch (JsonException e) { throw new InvalidDataException($"not a stump-ensemble model: {e.Message}", e); }
        if (m is null || m.Format != "kiln-stumps-1" || m.Stumps is null) throw new InvalidDataException("not a stump-ensemble model (expected format \"kiln-stumps-1\" with a stumps list)");
        try { return new StumpEnsemble(m.Stumps, m.Discretization); }
        catch (ArgumentException e) { throw new InvalidDataException($"malformed stump-ensemble model: {e.Message}", e); }
    }
}
