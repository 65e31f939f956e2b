using Kiln.NN;

namespace Kiln.Methods.ReinforcementLearning;

/// <summary>
/// HERON's hierarchical comparator (Bukharin et al., "Deep Reinforcement Learning from Hierarchical Weak Preference
/// Feedback", 2023): reward factors are ranked by importance; two trajectories are compared on the most important
/// factor, and only when their values lie within that level's margin does the next factor decide. Larger factor values
/// are better (negate a cost).
/// </summary>
public sealed class HierarchicalComparator
{
    readonly double[] _margins;

    /// <summary>Creates the comparator; <paramref name="margins"/>[k] is the indifference margin δ_k of the k-th most important factor.</summary>
    /// <exception cref="ArgumentException">No factors, or a margin is negative or not finite.</exception>
    public HierarchicalComparator(double[] margins)
    {
        ArgumentNullException.ThrowIfNull(margins);
        if (margins.Length == 0) throw new ArgumentException("heron: needs at least one factor", nameof(margins));
        foreach (var m in margins)
            if (!(m >= 0) || double.IsInfinity(m)) throw new ArgumentException($"heron: margin {m} must be non-negative and finite", nameof(margins));
        _margins = (double[])margins.Clone();
    }

    /// <summary>The number of factors.</summary>
    public int Factors => _margins.Length;

    /// <summary>
    /// Compares factor vectors a and b (most important first): +1 when a is preferred, -1 when b is, 0 when every level
    /// is within its margin; <c>Level</c> is the index of the deciding factor (-1 on a tie). The first level k with
    /// |a_k - b_k| &gt; δ_k decides by the sign of a_k - b_k.
    /// </summary>
    /// <exception cref="ArgumentException">A vector does not have one value per factor.</exception>
    public (int Preference, int Level) Compare(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        if (a.Length != Factors || b.Length != Factors) throw new ArgumentException($"heron: factor vectors must have {Factors} values, got {a.Length} and {b.Length}", nameof(b));
        for (int k = 0; k < Factors; k++)
        {
            double d = a[k] - b[k];
            if (Math.Abs(d) > _margins[k]) return (Math.Sign(d), k);
        }
        return (0, -1);
    }
}

/// <summary>The Bradley-Terry reward-model objective HERON trains on the comparator's labels.</summary>
public static class BradleyTerry
{
    /// <summary>
    /// -mean_n [y_n log σ(R_a,n - R_b,n) + (1 - y_n) log σ(R_b,n - R_a,n)] for returns R_a, R_b [N] and labels y [N]
    /// (1: a preferred, 0: b preferred, 1/2: a tie).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The inputs are not three [N] vectors.</exception>
    public static Tensor Loss(Tensor returnsA, Tensor returnsB, Tensor labels)
    {
        ArgumentNullException.ThrowIfNull(returnsA);
        ArgumentNullException.ThrowIfNull(returnsB);
        ArgumentNullException.ThrowIfNull(labels);
        if (returnsA.Rank != 1 || returnsB.Shape != returnsA.Shape || labels.Shape != returnsA.Shape)
            throw new ShapeMismatchException("bradley-terry", nameof(labels), $"returns {returnsA.Shape}, {returnsB.Shape} and labels {labels.Shape} must be [N] each");
        return Losses.BinaryCrossEntropyWithLogits(returnsA - returnsB, labels);
    }

    /// <summary>
    /// The preference loss of a per-step reward model r: trajectories [N, T, F] of step features get returns Σ_t r(x_t)
    /// (the model maps [..., F] to [..., 1]), compared by <see cref="Loss"/>.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The trajectories are not two [N, T, F] tensors of one shape.</exception>
    public static Tensor TrajectoryLoss(Module<Tensor, Tensor> rewardModel, Tensor trajectoriesA, Tensor trajectoriesB, Tensor labels)
    {
        ArgumentNullException.ThrowIfNull(rewardModel);
        ArgumentNullException.ThrowIfNull(trajectoriesA);
        ArgumentNullException.ThrowIfNull(trajectoriesB);
        if (trajectoriesA.Rank != 3 || trajectoriesB.Shape != trajectoriesA.Shape)
            throw new ShapeMismatchException("bradley-terry", nameof(trajectoriesB), $"trajectories {trajectoriesA.Shape} and {trajectoriesB.Shape} must be one [N, T, F]");
        return Loss(Return(rewardModel, trajectoriesA), Return(rewardModel, trajectoriesB), labels);
    }

    /// <summary>Σ_t r(x_t) [N] for trajectories [N, T, F].</summary>
    public static Tensor Return(Module<Tensor, Tensor> rewardModel, Tensor trajectories)
    {
        ArgumentNullException.ThrowIfNull(rewardModel);
        ArgumentNullException.ThrowIfNull(trajectories);
        return rewardModel.Call(trajectories).Sum([1, 2]);
    }
}
