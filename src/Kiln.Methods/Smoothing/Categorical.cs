namespace Kiln.Methods.Smoothing;

/// <summary>
/// Categorical d-ary stumps, one per categorical feature: category c has value 1/2 + lr/2 when the weighted class-1
/// mean of the training points in c is at least 1/2, else 1/2 - lr/2; a category unseen in training has value 1/2.
/// Under an l0 attack that changes up to r0 categories, the worst case of the summed values is the current sum plus
/// the r0 largest adverse value changes (each feature's most adverse alternative), which is exact because the features
/// contribute independently (greedy).
/// </summary>
public sealed class CategoricalStumps
{
    readonly Dictionary<int, double>[] _values;

    /// <summary>Creates stumps on the columns <paramref name="features"/> with per-category values in [0, 1].</summary>
    /// <exception cref="ArgumentException">The counts differ or a value is outside [0, 1].</exception>
    public CategoricalStumps(IReadOnlyList<int> features, IReadOnlyList<IReadOnlyDictionary<int, double>> values)
    {
        if (features.Count != values.Count) throw new ArgumentException($"{values.Count} value tables for {features.Count} features", nameof(values));
        if (values.Any(t => t.Values.Any(v => !(v >= 0 && v <= 1)))) throw new ArgumentException("categorical stump values must lie in [0, 1]", nameof(values));
        Features = features.ToArray();
        _values = values.Select(t => t.ToDictionary(kv => kv.Key, kv => kv.Value)).ToArray();
    }

    /// <summary>The categorical columns, one stump each.</summary>
    public IReadOnlyList<int> Features { get; }
    /// <summary>The number of stumps.</summary>
    public int Count => Features.Count;
    /// <summary>The value table of stump <paramref name="k"/> (category code to value).</summary>
    public IReadOnlyDictionary<int, double> Values(int k) => _values[k];

    /// <summary>
    /// Trains on the integer category codes in <paramref name="columns"/> (one array per feature, one code per row)
    /// with 0/1 labels and optional weights; <paramref name="learningRate"/> is lr.
    /// </summary>
    public static CategoricalStumps Train(IReadOnlyList<int> features, IReadOnlyList<int[]> columns, IReadOnlyList<int> y, IReadOnlyList<double>? weights = null, double learningRate = 0.25)
    {
        if (!(learningRate >= 0 && learningRate <= 1)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "lr must be in [0, 1]");
        var tables = new List<IReadOnlyDictionary<int, double>>();
        foreach (var col in columns)
        {
            if (col.Length != y.Count) throw new ArgumentException($"a categorical column has {col.Length} rows for {y.Count} labels", nameof(columns));
            var sums = new Dictionary<int, (double W, double WY)>();
            for (int i = 0; i < col.Length; i++)
            {
                double w = weights?[i] ?? 1;
                sums.TryGetValue(col[i], out var s);
                sums[col[i]] = (s.W + w, s.WY + w * y[i]);
            }
            tables.Add(sums.Where(kv => kv.Value.W > 0).ToDictionary(kv => kv.Key, kv => 0.5 + (kv.Value.WY / kv.Value.W >= 0.5 ? 1 : -1) * learningRate / 2));
        }
        return new CategoricalStumps(features, tables);
    }

    double ValueOf(int k, int code) => _values[k].TryGetValue(code, out var v) ? v : 0.5;

    /// <summary>The summed values of the stumps at one row of category codes (indexed like <see cref="Features"/>).</summary>
    public double Sum(ReadOnlySpan<int> codes)
    {
        double s = 0;
        for (int k = 0; k < Count; k++) s += ValueOf(k, codes[k]);
        return s;
    }

    /// <summary>Per feature, the most adverse change of its value for label <paramref name="label"/> (&lt;= 0 for class 1, &gt;= 0 for class 0); unseen codes (value 1/2) are among the options.</summary>
    public double[] AdverseChanges(ReadOnlySpan<int> codes, int label)
    {
        var changes = new double[Count];
        for (int k = 0; k < Count; k++)
        {
            double cur = ValueOf(k, codes[k]), worst = 0;
            foreach (double v in _values[k].Values.Append(0.5))
                worst = label == 1 ? Math.Min(worst, v - cur) : Math.Max(worst, v - cur);
            changes[k] = worst;
        }
        return changes;
    }

    /// <summary>The worst-case summed value when an adversary changes up to <paramref name="r0"/> categories: the current sum plus the r0 most adverse changes.</summary>
    public double WorstCaseSum(ReadOnlySpan<int> codes, int label, int r0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(r0);
        var ch = AdverseChanges(codes, label);
        var ordered = label == 1 ? ch.Order() : ch.OrderDescending();
        return Sum(codes) + ordered.Take(r0).Sum();
    }
}

/// <summary>
/// Joint certificates over numerical features (l2 or l1 by the noise) and categorical features (l0, up to r0 changed
/// categories): the categorical stumps' worst-case sum for the true label shifts the start of the numerical ensemble's
/// exact dynamic program, and the certificate is that of the shifted distribution against the joint decision cut
/// floor((M_num + M_cat) D / 2).
/// </summary>
public static class JointCertification
{
    /// <summary>
    /// Certificates for the labels <paramref name="y"/>: Class is the label when its worst-case probability pA is at
    /// least 1/2 (with radius R(pA)), otherwise the other class with radius 0. <paramref name="xNumerical"/> holds the
    /// numerical columns the ensemble was trained on, <paramref name="codes"/> one array of category codes per row
    /// (indexed like <see cref="CategoricalStumps.Features"/>); with <paramref name="categorical"/> null only the
    /// numerical ensemble is certified.
    /// </summary>
    public static Certificate[] Certify(StumpEnsemble numerical, Tensor xNumerical, CategoricalStumps? categorical, IReadOnlyList<int[]>? codes, IReadOnlyList<int> y, Noise noise, int r0)
    {
        int n = xNumerical.Shape[0];
        if (y.Count != n) throw new ArgumentException($"{y.Count} labels for {n} rows", nameof(y));
        long[]? shift = null;
        long cut = numerical.Cut;
        if (categorical is not null)
        {
            if (codes is null || codes.Count != n) throw new ArgumentException($"joint certification needs one row of category codes per input ({n})", nameof(codes));
            int d = numerical.Discretization;
            cut = (long)(numerical.Count + categorical.Count) * d / 2;
            shift = new long[n];
            for (int i = 0; i < n; i++) shift[i] = (long)Math.Round(categorical.WorstCaseSum(codes[i], y[i], r0) * d, MidpointRounding.ToEven);
        }
        var p1 = ExactSmoothing.ClassOneProbability(numerical, xNumerical, noise, shift, cut);
        var result = new Certificate[n];
        for (int i = 0; i < n; i++)
        {
            double pA = y[i] == 1 ? p1[i] : 1 - p1[i];
            result[i] = pA >= 0.5 ? new Certificate(y[i], pA, Math.Max(0, noise.Radius(pA))) : new Certificate(1 - y[i], 1 - pA, 0);
        }
        return result;
    }
}
