using System.Runtime.CompilerServices;

namespace Kiln.Methods.Smoothing;

/// <summary>
/// A smoothed prediction with its certificate: the predicted <paramref name="Class"/> (-1 when a Monte-Carlo
/// certificate abstains), the probability <paramref name="PA"/> of that class under noise (a lower bound for
/// Monte Carlo), and the certified radius (l2 or l1 by the noise; 0 when abstaining).
/// </summary>
public readonly record struct Certificate(int Class, double PA, double Radius);

/// <summary>
/// Deterministic (exact) smoothing of a stump ensemble. Under noise each meta-stump falls in region k with a
/// probability given by differences of the noise CDF at its sorted thresholds; the distribution of the integer sum
/// S of leaf levels is then a product of independent per-feature distributions, computed exactly by the dynamic
/// program pdf_i[t] = sum_k p_ik pdf_{i-1}[t - G_ik] (<see cref="StumpSum.Pdf"/>, a kernel with a float64 reference and a SIMD CPU form).
/// p1 = P[S &gt; M D / 2], p0 = 1 - p1. All tensor work runs on the inputs' device.
/// </summary>
public static class ExactSmoothing
{
    /// <summary>The kernel's view of an ensemble: the feature of each threshold (grouped by meta-stump, sorted), the group layout, min-shifted region values and their total minimum.</summary>
    internal sealed record KernelLayout(long[] ThresholdFeatures, double[] Thresholds, int[] GroupStarts, int[] Values, long Base, bool IdentityColumns);

    static readonly ConditionalWeakTable<StumpEnsemble, KernelLayout> Layouts = new();

    internal static KernelLayout LayoutOf(StumpEnsemble e) => Layouts.GetValue(e, Build);

    static KernelLayout Build(StumpEnsemble e)
    {
        var feats = new List<long>(); var thr = new List<double>(); var starts = new List<int> { 0 }; var values = new List<int>();
        long baseSum = 0;
        foreach (var g in e.Groups)
        {
            int min = g.Values.Min();
            baseSum += min;
            foreach (double t in g.Thresholds) { feats.Add(g.Feature); thr.Add(t); }
            values.AddRange(g.Values.Select(v => v - min));
            starts.Add(feats.Count);
        }
        bool identity = feats.Select((f, i) => f == i).All(b => b);
        return new KernelLayout(feats.ToArray(), thr.ToArray(), starts.ToArray(), values.ToArray(), baseSum, identity);
    }

    /// <summary>
    /// P[x'_j &gt;= v] under noise for every threshold v of the ensemble (grouped by feature, sorted within a feature) and
    /// each row of <paramref name="x"/> ([n, d]): Float64 [n, thresholds], computed with tensor ops on x's device.
    /// Region k of a meta-stump has probability column k-1 minus column k (1 and 0 at the ends).
    /// </summary>
    public static Tensor UpperTails(StumpEnsemble ensemble, Tensor x, Noise noise)
    {
        ArgumentNullException.ThrowIfNull(ensemble);
        ensemble.CheckInput(x, nameof(x));
        var l = LayoutOf(ensemble);
        var dev = x.Device;
        if (l.Thresholds.Length == 0) return Tensor.Zeros([x.Shape[0], 0], DType.Float64, dev);
        var xd = x.To(DType.Float64);
        // When the thresholds are one per feature in column order (independent MLE stumps) the columns are x itself.
        var cols = l.IdentityColumns && x.Shape[1] == l.Thresholds.Length ? xd : xd.IndexSelect(1, Tensor.FromArray(l.ThresholdFeatures).To(dev));
        return noise.UpperTail(cols - Tensor.FromArray(l.Thresholds).To(dev));
    }

    /// <summary>
    /// The probability of every meta-stump region under noise for each row of <paramref name="x"/> ([n, d]):
    /// Float64 [n, regions], regions ordered by feature and then by threshold (the layout of <see cref="StumpEnsemble.Groups"/>).
    /// </summary>
    public static Tensor RegionProbabilities(StumpEnsemble ensemble, Tensor x, Noise noise)
    {
        var upper = UpperTails(ensemble, x, noise);
        var l = LayoutOf(ensemble);
        int n = x.Shape[0], t = l.Thresholds.Length;
        var dev = x.Device;
        var padded = Tensor.Concat([Tensor.Ones([n, 1], DType.Float64, dev), upper, Tensor.Zeros([n, 1], DType.Float64, dev)], 1);
        var hi = new List<long>(); var lo = new List<long>();
        for (int g = 0; g + 1 < l.GroupStarts.Length; g++)
            for (int k = 0, first = l.GroupStarts[g], m = l.GroupStarts[g + 1] - first; k <= m; k++)
            {
                hi.Add(k == 0 ? 0 : 1 + first + k - 1);
                lo.Add(k == m ? t + 1 : 1 + first + k);
            }
        if (hi.Count == 0) return Tensor.Zeros([n, 0], DType.Float64, dev);
        var probs = padded.IndexSelect(1, Tensor.FromArray(hi.ToArray()).To(dev)) - padded.IndexSelect(1, Tensor.FromArray(lo.ToArray()).To(dev));
        return probs.Clamp(0.0, null);
    }

    /// <summary>
    /// The exact distribution of the integer sum of leaf levels under noise: Float64 [n, width] with
    /// pdf[i, t] = P[S_i = <see cref="Offset"/> + t].
    /// </summary>
    public static Tensor Pdf(StumpEnsemble ensemble, Tensor x, Noise noise)
    {
        var upper = UpperTails(ensemble, x, noise);
        var l = LayoutOf(ensemble);
        return StumpSum.Pdf(upper, l.GroupStarts, l.Values);
    }

    /// <summary>The smallest value the sum of leaf levels can take (the sum over meta-stumps of their smallest region value).</summary>
    public static long Offset(StumpEnsemble ensemble) => LayoutOf(ensemble).Base;

    /// <summary>
    /// p1 = P[S + shift &gt; cut] for each row, computed without materializing the distribution; cut defaults to
    /// floor(M D / 2) (the ensemble's decision), shift to 0. Exactly 1 or 0 where the shifted sum cannot cross the cut.
    /// </summary>
    public static double[] ClassOneProbability(StumpEnsemble ensemble, Tensor x, Noise noise, long[]? shift = null, long? cut = null)
    {
        var upper = UpperTails(ensemble, x, noise);
        var l = LayoutOf(ensemble);
        int n = x.Shape[0];
        if (shift is not null && shift.Length != n) throw new ArgumentException($"shift has {shift.Length} entries for {n} inputs", nameof(shift));
        long c = cut ?? ensemble.Cut;
        var cuts = new long[n];
        for (int i = 0; i < n; i++) cuts[i] = c - l.Base - (shift?[i] ?? 0);
        return StumpSum.Tail(upper, l.GroupStarts, l.Values, Tensor.FromArray(cuts).To(x.Device)).ToArray<double>();
    }

    /// <summary>
    /// Certifies each row of <paramref name="x"/>: class c = argmax(p0, p1) (a tie is class 0), pA its probability,
    /// radius sigma Phi^-1(pA) (l2) or 2 lambda (pA - 1/2) (l1) with pA clamped below 1 - 1e-15.
    /// </summary>
    public static Certificate[] Certify(StumpEnsemble ensemble, Tensor x, Noise noise)
    {
        var p1 = ClassOneProbability(ensemble, x, noise);
        var pA = p1.Select(p => Math.Max(p, 1 - p)).ToArray();
        var radius = noise.Radius(Tensor.FromArray(pA).To(x.Device)).ToArray<double>();
        var result = new Certificate[p1.Length];
        for (int i = 0; i < p1.Length; i++) result[i] = new Certificate(p1[i] > 1 - p1[i] ? 1 : 0, pA[i], Math.Max(0.0, radius[i]));
        return result;
    }
}
