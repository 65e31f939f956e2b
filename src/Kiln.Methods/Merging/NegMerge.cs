namespace Kiln.Methods.Merging;

/// <summary>
/// NegMerge: sign-consensual weight merging for machine unlearning (Kim et al., 2024). Several task vectors of the forget
/// task (fine-tunes with different hyperparameters) are merged element by element: where every candidate has the same
/// strictly positive or strictly negative sign the merged entry is their mean, elsewhere it is zero. The unlearned model
/// is theta_pre - lambda * tau_merged. With one candidate the mask keeps every nonzero entry, so the merge is that vector.
/// </summary>
public static class NegMerge
{
    /// <summary>The element-wise sign-consensus mask (1 where all candidates are &gt; 0 or all are &lt; 0, else 0) in the candidates' dtype.</summary>
    /// <exception cref="ArgumentException">No candidates, or their layouts differ.</exception>
    public static Dictionary<string, Tensor> ConsensusMask(IReadOnlyList<IReadOnlyDictionary<string, Tensor>> taskVectors) =>
        ParameterTree.Map(taskVectors, (_, x) => Mask(x));

    static Tensor Mask(Tensor[] x)
    {
        using var _ = Autograd.NoGrad();
        // The signs sum to +-n exactly when all n candidates agree strictly.
        var signs = x.Skip(1).Aggregate(x[0].Sign(), (s, t) => s + t.Sign());
        return (signs.Abs() >= x.Length - 0.5).To(x[0].DType);
    }

    /// <summary>tau_merged: the candidates' mean where their signs agree, zero elsewhere.</summary>
    /// <exception cref="ArgumentException">No candidates, or their layouts differ.</exception>
    public static Dictionary<string, Tensor> Merge(IReadOnlyList<IReadOnlyDictionary<string, Tensor>> taskVectors) =>
        ParameterTree.Map(taskVectors, (_, x) => Mask(x) * (x.Skip(1).Aggregate(x[0], (s, t) => s + t) * (1.0 / x.Length)));

    /// <summary>The unlearned weights theta_pre - <paramref name="scale"/> * tau_merged.</summary>
    /// <exception cref="ArgumentException">No candidates, the scale is not finite, or the layouts differ.</exception>
    public static Dictionary<string, Tensor> Unlearn(IReadOnlyDictionary<string, Tensor> pretrained, IReadOnlyList<IReadOnlyDictionary<string, Tensor>> taskVectors, double scale) =>
        ParameterTree.Combine(pretrained, [Merge(taskVectors)], [-scale]);
}
