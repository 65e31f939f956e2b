namespace Kiln.Methods.Merging;

/// <summary>
/// Knowledge Composition using Task Vectors with Learned Anisotropic Scaling (aTLAS; Zhang et al., NeurIPS 2024): each
/// task vector is split into blocks (here: parameter tensors grouped by a block function) and every block gets its own
/// learned coefficient, theta(Lambda) = theta_pre + sum_t sum_b lambda_{t,b} tau_{t,b}. The coefficients are few, so they
/// are learned from little data; since theta is linear in them, dL/dlambda_{t,b} = &lt;grad_{theta_b} L, tau_{t,b}&gt;,
/// and equal coefficients lambda give task arithmetic with scale lambda.
/// </summary>
public sealed class AnisotropicScaling
{
    readonly IReadOnlyDictionary<string, Tensor> _pretrained;
    readonly IReadOnlyList<IReadOnlyDictionary<string, Tensor>> _vectors;
    readonly Dictionary<string, int> _blockOf;

    /// <summary>
    /// Coefficients for <paramref name="taskVectors"/> over <paramref name="pretrained"/>; <paramref name="block"/> names the
    /// block of each parameter (default: the parameter's own name); every coefficient starts at <paramref name="initial"/>.
    /// </summary>
    /// <exception cref="ArgumentException">No task vectors, their layouts differ from the pretrained tree's, or the initial value is not finite.</exception>
    public AnisotropicScaling(IReadOnlyDictionary<string, Tensor> pretrained, IReadOnlyList<IReadOnlyDictionary<string, Tensor>> taskVectors,
        Func<string, string>? block = null, double initial = 0.3)
    {
        ArgumentNullException.ThrowIfNull(pretrained); ArgumentNullException.ThrowIfNull(taskVectors);
        if (taskVectors.Count == 0) throw new ArgumentException("aTLAS: no task vectors given", nameof(taskVectors));
        if (!double.IsFinite(initial)) throw new ArgumentException($"aTLAS: the initial coefficient {initial} is not finite", nameof(initial));
        for (int i = 0; i < taskVectors.Count; i++) ParameterTree.CheckSameLayout(pretrained, taskVectors[i], $"{nameof(taskVectors)}[{i}]");
        _pretrained = pretrained; _vectors = taskVectors;
        Blocks = pretrained.Keys.Select(n => block?.Invoke(n) ?? n).Distinct().ToArray();
        var index = Blocks.Select((b, i) => (b, i)).ToDictionary(p => p.b, p => p.i);
        _blockOf = pretrained.Keys.ToDictionary(n => n, n => index[block?.Invoke(n) ?? n]);
        var dtype = pretrained.Values.First().DType;
        Coefficients = new Kiln.NN.Parameter(Tensor.Full([taskVectors.Count, Blocks.Count], initial, dtype, pretrained.Values.First().Device));
    }

    /// <summary>The block names, in the column order of <see cref="Coefficients"/>.</summary>
    public IReadOnlyList<string> Blocks { get; }
    /// <summary>The learnable coefficients Lambda [tasks, blocks].</summary>
    public Kiln.NN.Parameter Coefficients { get; }
    /// <summary>The block index of each parameter name.</summary>
    public IReadOnlyDictionary<string, int> BlockOf => _blockOf;

    /// <summary>theta(Lambda) = theta_pre + sum_t lambda_{t, block(name)} tau_t[name], differentiable in <see cref="Coefficients"/>.</summary>
    public Dictionary<string, Tensor> Merge() => _pretrained.ToDictionary(kv => kv.Key, kv =>
    {
        var y = kv.Value;
        int b = _blockOf[kv.Key];
        for (int t = 0; t < _vectors.Count; t++) y = y + _vectors[t][kv.Key] * Coefficients.Value.Narrow(0, t, 1).Narrow(1, b, 1).Reshape();
        return y;
    });

    /// <summary>
    /// Learns the coefficients by <paramref name="steps"/> Adam steps on <paramref name="loss"/>(theta(Lambda))
    /// (the paper's few-shot objective); <paramref name="progress"/> gets (step, loss). Returns the final merged weights, detached.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">steps is negative, or the learning rate is not positive and finite.</exception>
    public Dictionary<string, Tensor> Fit(Func<IReadOnlyDictionary<string, Tensor>, Tensor> loss, int steps, double learningRate, Action<int, double>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(loss);
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        if (!(learningRate > 0 && double.IsFinite(learningRate)))
            throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "aTLAS: the learning rate must be positive and finite");
        var opt = new Kiln.NN.Adam([Coefficients], learningRate);
        for (int s = 1; s <= steps; s++)
        {
            using var scope = Tensor.Scope();
            var l = loss(Merge());
            l.Backward();
            opt.Step(); opt.ZeroGrad();
            progress?.Invoke(s, l.Item());
        }
        using (Autograd.NoGrad()) return Merge().ToDictionary(kv => kv.Key, kv => kv.Value.Detach().Clone());
    }
}
