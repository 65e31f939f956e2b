namespace Kiln.Methods.Merging;

/// <summary>
/// Backward Compatibility During Data Updates by Weight Interpolation (Schumann et al., 2023): after a data update the
/// new model theta_new may get wrong what the old model theta_old got right (negative flips). BCWI interpolates,
/// theta(alpha) = (1 - alpha) theta_old + alpha theta_new, and its importance-weighted form uses per-weight importances
/// (e.g. diagonal Fisher) F_old, F_new: theta = ((1 - alpha) F_old theta_old + alpha F_new theta_new) / ((1 - alpha) F_old + alpha F_new).
/// </summary>
public static class WeightInterpolation
{
    /// <summary>(1 - alpha) * old + alpha * new, name by name: alpha = 0 gives the old model, 1 the new one.</summary>
    /// <exception cref="ArgumentOutOfRangeException">alpha is not in [0, 1].</exception>
    public static Dictionary<string, Tensor> Interpolate(IReadOnlyDictionary<string, Tensor> oldWeights, IReadOnlyDictionary<string, Tensor> newWeights, double alpha)
    {
        CheckAlpha(alpha);
        return ParameterTree.Map([oldWeights, newWeights], (_, x) => x[0] * (1 - alpha) + x[1] * alpha);
    }

    /// <summary>
    /// The importance-weighted interpolation ((1 - alpha) F_old theta_old + alpha F_new theta_new) / ((1 - alpha) F_old + alpha F_new);
    /// importances of 1 give <see cref="Interpolate"/>. Importances must be non-negative with a positive weighted sum at every entry.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">alpha is not in [0, 1].</exception>
    /// <exception cref="ArgumentException">The layouts differ, or an importance is negative or the weighted importance is zero somewhere (the name is given).</exception>
    public static Dictionary<string, Tensor> ImportanceInterpolate(IReadOnlyDictionary<string, Tensor> oldWeights, IReadOnlyDictionary<string, Tensor> newWeights,
        IReadOnlyDictionary<string, Tensor> oldImportance, IReadOnlyDictionary<string, Tensor> newImportance, double alpha)
    {
        CheckAlpha(alpha);
        return ParameterTree.Map([oldWeights, newWeights, oldImportance, newImportance], (name, x) =>
        {
            var fo = x[2] * (1 - alpha); var fn = x[3] * alpha;
            var den = fo + fn;
            using (Autograd.NoGrad())
                if ((x[2].Numel > 0 && (x[2].Min().Item() < 0 || x[3].Min().Item() < 0)) || (den.Numel > 0 && den.Min().Item() <= 0))
                    throw new ArgumentException($"importance interpolation: at '{name}' an importance is negative or the weighted importance is zero", nameof(oldImportance));
            return (fo * x[0] + fn * x[1]) / den;
        });
    }

    /// <summary>Negative flips: the number of samples the old model got right and the new one wrong, and that count over the sample count (the negative flip rate).</summary>
    /// <exception cref="ArgumentException">The lists differ in length.</exception>
    public static (int Count, double Rate) NegativeFlips(IReadOnlyList<bool> oldCorrect, IReadOnlyList<bool> newCorrect)
    {
        ArgumentNullException.ThrowIfNull(oldCorrect); ArgumentNullException.ThrowIfNull(newCorrect);
        if (oldCorrect.Count != newCorrect.Count)
            throw new ArgumentException($"negative flips: {oldCorrect.Count} old outcomes but {newCorrect.Count} new ones", nameof(newCorrect));
        int n = 0;
        for (int i = 0; i < oldCorrect.Count; i++) if (oldCorrect[i] && !newCorrect[i]) n++;
        return (n, oldCorrect.Count == 0 ? 0 : n / (double)oldCorrect.Count);
    }

    static void CheckAlpha(double alpha)
    {
        if (!(alpha >= 0 && alpha <= 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "weight interpolation: alpha must lie in [0, 1]");
    }
}
