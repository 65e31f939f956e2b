namespace Kiln.Methods.Merging;

/// <summary>
/// Arithmetic over parameter trees: dictionaries of named tensors in checkpoint layout (what <c>LmTrainer.Train</c>
/// returns and <c>DecoderModel</c> loads, or a module's <c>StateDict()</c>). Every merge rule of this folder is a
/// per-name map over trees with the same names and shapes; the results are new tensors, the inputs are never changed.
/// The operations record autograd when an input requires gradients, so coefficients can be learned through them.
/// </summary>
public static class ParameterTree
{
    /// <summary>Throws unless <paramref name="b"/> has exactly the names of <paramref name="a"/>, each with the same shape.</summary>
    /// <exception cref="ArgumentException">A name is missing or extra (both lists are named), or a shape differs (the name and both shapes are given).</exception>
    public static void CheckSameLayout(IReadOnlyDictionary<string, Tensor> a, IReadOnlyDictionary<string, Tensor> b, string argument = "b")
    {
        ArgumentNullException.ThrowIfNull(a); ArgumentNullException.ThrowIfNull(b);
        var missing = a.Keys.Where(k => !b.ContainsKey(k)).ToList();
        var extra = b.Keys.Where(k => !a.ContainsKey(k)).ToList();
        if (missing.Count > 0 || extra.Count > 0)
            throw new ArgumentException($"parameter trees differ in names: {argument} lacks [{string.Join(", ", missing)}] and has extra [{string.Join(", ", extra)}]", argument);
        foreach (var (name, t) in a)
            if (b[name].Shape != t.Shape)
                throw new ArgumentException($"parameter trees differ at '{name}': shape {t.Shape} vs {b[name].Shape} in {argument}", argument);
    }

    /// <summary>f applied name by name to the tensors of the trees (all with <paramref name="trees"/>[0]'s layout), in its name order.</summary>
    /// <exception cref="ArgumentException">No trees, or the layouts differ.</exception>
    public static Dictionary<string, Tensor> Map(IReadOnlyList<IReadOnlyDictionary<string, Tensor>> trees, Func<string, Tensor[], Tensor> f)
    {
        ArgumentNullException.ThrowIfNull(trees); ArgumentNullException.ThrowIfNull(f);
        if (trees.Count == 0) throw new ArgumentException("parameter tree map: no trees given", nameof(trees));
        for (int i = 1; i < trees.Count; i++) CheckSameLayout(trees[0], trees[i], $"{nameof(trees)}[{i}]");
        return trees[0].Keys.ToDictionary(name => name, name => f(name, trees.Select(t => t[name]).ToArray()));
    }

    /// <summary>a + b, name by name.</summary>
    public static Dictionary<string, Tensor> Add(IReadOnlyDictionary<string, Tensor> a, IReadOnlyDictionary<string, Tensor> b) => Map([a, b], (_, x) => x[0] + x[1]);

    /// <summary>a - b, name by name (a task vector is <c>Subtract(finetuned, pretrained)</c>).</summary>
    public static Dictionary<string, Tensor> Subtract(IReadOnlyDictionary<string, Tensor> a, IReadOnlyDictionary<string, Tensor> b) => Map([a, b], (_, x) => x[0] - x[1]);

    /// <summary>s * a, name by name.</summary>
    /// <exception cref="ArgumentOutOfRangeException">s is not finite.</exception>
    public static Dictionary<string, Tensor> Scale(IReadOnlyDictionary<string, Tensor> a, double s)
    {
        if (!double.IsFinite(s)) throw new ArgumentOutOfRangeException(nameof(s), s, "parameter tree scale: the factor must be finite");
        return Map([a], (_, x) => x[0] * s);
    }

    /// <summary>origin + sum_i c_i * trees_i, name by name (task arithmetic's general form).</summary>
    /// <exception cref="ArgumentException">The coefficient and tree counts differ, a coefficient is not finite, or the layouts differ.</exception>
    public static Dictionary<string, Tensor> Combine(IReadOnlyDictionary<string, Tensor> origin, IReadOnlyList<IReadOnlyDictionary<string, Tensor>> trees, IReadOnlyList<double> coefficients)
    {
        ArgumentNullException.ThrowIfNull(origin); ArgumentNullException.ThrowIfNull(trees); ArgumentNullException.ThrowIfNull(coefficients);
        if (trees.Count != coefficients.Count)
            throw new ArgumentException($"parameter tree combine: {trees.Count} trees but {coefficients.Count} coefficients", nameof(coefficients));
        foreach (var c in coefficients)
            if (!double.IsFinite(c)) throw new ArgumentException($"parameter tree combine: coefficient {c} is not finite", nameof(coefficients));
        return Map([origin, .. trees], (_, x) =>
        {
            var y = x[0];
            for (int i = 0; i < coefficients.Count; i++) y = y + x[i + 1] * coefficients[i];
            return y;
        });
    }

    /// <summary>The mean of the trees, name by name (plain weight averaging).</summary>
    public static Dictionary<string, Tensor> Mean(IReadOnlyList<IReadOnlyDictionary<string, Tensor>> trees) =>
        Map(trees, (_, x) => x.Skip(1).Aggregate(x[0], (s, t) => s + t) * (1.0 / x.Length));

    /// <summary>Sum over every name of &lt;a, b&gt; (the Frobenius inner product of the flattened trees), in float64.</summary>
    public static double Dot(IReadOnlyDictionary<string, Tensor> a, IReadOnlyDictionary<string, Tensor> b)
    {
        CheckSameLayout(a, b);
        double s = 0;
        using (Autograd.NoGrad())
            foreach (var (name, t) in a) s += t.To(DType.Float64).Reshape(-1).Dot(b[name].To(DType.Float64).Reshape(-1)).Item();
        return s;
    }

    /// <summary>The L2 norm of the flattened tree.</summary>
    public static double Norm(IReadOnlyDictionary<string, Tensor> a) => Math.Sqrt(Dot(a, a));

    /// <summary>Detached copies of every tensor (a snapshot later in-place updates do not change).</summary>
    public static Dictionary<string, Tensor> Clone(IReadOnlyDictionary<string, Tensor> a)
    {
        ArgumentNullException.ThrowIfNull(a);
        return a.ToDictionary(kv => kv.Key, kv => kv.Value.Detach().Clone());
    }
}
