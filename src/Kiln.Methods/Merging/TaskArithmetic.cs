namespace Kiln.Methods.Merging;

/// <summary>
/// Editing Models with Task Arithmetic (Ilharco et al., ICLR 2023): a task vector tau_t = theta_ft,t - theta_pre; adding
/// lambda * sum_t tau_t to the pretrained weights teaches the tasks, subtracting (negation) makes the model forget one, and
/// tau_C + (tau_B - tau_A) completes an analogy "A is to B as C is to D".
/// </summary>
public static class TaskArithmetic
{
    /// <summary>tau = <paramref name="finetuned"/> - <paramref name="pretrained"/>, name by name.</summary>
    public static Dictionary<string, Tensor> TaskVector(IReadOnlyDictionary<string, Tensor> finetuned, IReadOnlyDictionary<string, Tensor> pretrained) =>
        ParameterTree.Subtract(finetuned, pretrained);

    /// <summary>theta = <paramref name="pretrained"/> + <paramref name="scale"/> * sum_t tau_t (a negative scale negates).</summary>
    /// <exception cref="ArgumentException">No task vectors, the scale is not finite, or the layouts differ.</exception>
    public static Dictionary<string, Tensor> Apply(IReadOnlyDictionary<string, Tensor> pretrained, IReadOnlyList<IReadOnlyDictionary<string, Tensor>> taskVectors, double scale)
    {
        ArgumentNullException.ThrowIfNull(taskVectors);
        if (taskVectors.Count == 0) throw new ArgumentException("task arithmetic: no task vectors given", nameof(taskVectors));
        return ParameterTree.Combine(pretrained, taskVectors, [.. Enumerable.Repeat(scale, taskVectors.Count)]);
    }

    /// <summary>-tau: applied with a positive scale it removes the task (forgetting by negation).</summary>
    public static Dictionary<string, Tensor> Negate(IReadOnlyDictionary<string, Tensor> taskVector) => ParameterTree.Scale(taskVector, -1);

    /// <summary>The analogy vector tau_C + (tau_B - tau_A).</summary>
    public static Dictionary<string, Tensor> Analogy(IReadOnlyDictionary<string, Tensor> tauA, IReadOnlyDictionary<string, Tensor> tauB, IReadOnlyDictionary<string, Tensor> tauC) =>
        ParameterTree.Map([tauA, tauB, tauC], (_, x) => x[2] + (x[1] - x[0]));
}
