namespace Kiln.Methods.Sketching;

/// <summary>
/// Euclidean projection onto the capped simplex {z : 0 ≤ zᵢ ≤ u, Σ zᵢ = s}: zᵢ = clamp(vᵢ − τ, 0, u) for the one shift τ
/// that makes the sum s. It is the projection step of the double-weighting quadratic program (each weight block is a
/// capped simplex), of the probability simplex (u = 1, s = 1) and of the Fantope {0 ≼ Q ≼ I, tr Q = k} (applied to the
/// eigenvalues) in the representation game.
/// </summary>
public static class CappedSimplex
{
    /// <summary>The projection of v onto {0 ≤ zᵢ ≤ upper, Σ zᵢ = total}, in float64.</summary>
    /// <param name="values">v (finite).</param>
    /// <param name="upper">u, positive and finite.</param>
    /// <param name="total">s, in [0, n·u] so the set is not empty.</param>
    /// <exception cref="ArgumentOutOfRangeException">u is not positive and finite, or s is outside [0, n·u].</exception>
    /// <exception cref="ArgumentException">A value is not finite (the message names the first).</exception>
    public static double[] Project(IReadOnlyList<double> values, double upper, double total)
    {
        ArgumentNullException.ThrowIfNull(values);
        int n = values.Count;
        if (!(upper > 0) || double.IsInfinity(upper)) throw new ArgumentOutOfRangeException(nameof(upper), upper, "CappedSimplex: the cap must be positive and finite");
        if (!(total >= 0) || total > n * upper * (1 + 1e-12)) throw new ArgumentOutOfRangeException(nameof(total), total, $"CappedSimplex: the total must be in [0, n·upper] = [0, {n * upper}] for n = {n}");
        for (int i = 0; i < n; i++)
            if (!double.IsFinite(values[i])) throw new ArgumentException($"CappedSimplex: values[{i}] = {values[i]} is not finite", nameof(values));
        var z = new double[n];
        if (n == 0) return z;
        // Σ clamp(vᵢ − τ, 0, u) falls from n·u to 0 as τ runs over [min v − u, max v]: bisect, then recompute τ exactly
        // from the free coordinates so the sum is s to rounding.
        double lo = double.MaxValue, hi = double.MinValue;
        for (int i = 0; i < n; i++) { lo = Math.Min(lo, values[i]); hi = Math.Max(hi, values[i]); }
        lo -= upper;
        for (int it = 0; it < 200 && hi - lo > 1e-15 * Math.Max(1, Math.Abs(hi)); it++)
        {
            double mid = 0.5 * (lo + hi);
            if (Sum(values, mid, upper) > total) lo = mid; else hi = mid;
        }
        double tau = 0.5 * (lo + hi), freeSum = 0, atTop = 0;
        int free = 0;
        for (int i = 0; i < n; i++)
        {
            double r = values[i] - tau;
            if (r >= upper) atTop += upper;
            else if (r > 0) { freeSum += values[i]; free++; }
        }
        if (free > 0) tau = (freeSum + atTop - total) / free;
        for (int i = 0; i < n; i++) z[i] = Math.Clamp(values[i] - tau, 0, upper);
        return z;
    }

    static double Sum(IReadOnlyList<double> v, double tau, double upper)
    {
        double s = 0;
        for (int i = 0; i < v.Count; i++) s += Math.Clamp(v[i] - tau, 0, upper);
        return s;
    }
}
