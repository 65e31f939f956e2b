namespace Kiln.Methods.Merging;

/// <summary>
/// ATM: Alternating Tuning and Merging (Zhou et al., 2024). Each round fine-tunes a copy of the current merged model on
/// every task for a short budget, then merges by task arithmetic: theta &lt;- theta + scale * sum_t (FT_t(theta) - theta).
/// With one plain full-batch gradient step per task, sum_t (theta - eta grad L_t(theta) - theta) = -eta grad (sum_t L_t)(theta):
/// a round is exactly one multi-task gradient step, which is the paper's bridge between merging and multi-task GD.
/// </summary>
public static class Atm
{
    /// <summary>One round: theta + <paramref name="scale"/> * sum_t (fineTune_t(theta) - theta) (scale 1/T averages).</summary>
    /// <exception cref="ArgumentException">No fine-tuning functions, the scale is not finite, or a result's layout differs from theta's.</exception>
    public static Dictionary<string, Tensor> Round(IReadOnlyDictionary<string, Tensor> theta,
        IReadOnlyList<Func<IReadOnlyDictionary<string, Tensor>, IReadOnlyDictionary<string, Tensor>>> fineTune, double scale)
    {
        ArgumentNullException.ThrowIfNull(theta); ArgumentNullException.ThrowIfNull(fineTune);
        if (fineTune.Count == 0) throw new ArgumentException("ATM: no per-task fine-tuning functions given", nameof(fineTune));
        var vectors = fineTune.Select(f => (IReadOnlyDictionary<string, Tensor>)TaskArithmetic.TaskVector(f(theta), theta)).ToList();
        return TaskArithmetic.Apply(theta, vectors, scale);
    }

    /// <summary><paramref name="rounds"/> rounds of <see cref="Round"/> from <paramref name="theta"/>; <paramref name="progress"/> gets each round's result.</summary>
    /// <exception cref="ArgumentOutOfRangeException">rounds is not positive.</exception>
    public static Dictionary<string, Tensor> Run(IReadOnlyDictionary<string, Tensor> theta,
        IReadOnlyList<Func<IReadOnlyDictionary<string, Tensor>, IReadOnlyDictionary<string, Tensor>>> fineTune, double scale, int rounds,
        Action<int, IReadOnlyDictionary<string, Tensor>>? progress = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rounds);
        var current = ParameterTree.Clone(theta);
        for (int r = 1; r <= rounds; r++)
        {
            current = Round(current, fineTune, scale);
            progress?.Invoke(r, current);
        }
        return current;
    }

    /// <summary>
    /// One plain gradient-descent step theta - eta * grad L(theta) (no momentum, no weight decay): the fine-tuning step of
    /// the paper's equivalence. <paramref name="loss"/> maps a tree to a scalar loss.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The learning rate is not positive and finite.</exception>
    public static Dictionary<string, Tensor> GradientStep(IReadOnlyDictionary<string, Tensor> theta, Func<IReadOnlyDictionary<string, Tensor>, Tensor> loss, double learningRate)
    {
        ArgumentNullException.ThrowIfNull(theta); ArgumentNullException.ThrowIfNull(loss);
        if (!(learningRate > 0 && double.IsFinite(learningRate)))
            throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "ATM gradient step: the learning rate must be positive and finite");
        var names = theta.Keys.ToArray();
        var leaves = names.ToDictionary(n => n, n => { var t = theta[n].Detach().Clone(); t.RequiresGrad = true; return t; });
        var grads = Autograd.Grad([loss(leaves)], [.. names.Select(n => leaves[n])]);
        return names.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => (leaves[p.n] - grads[p.i] * learningRate).Detach());
    }
}
