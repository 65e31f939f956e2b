namespace Kiln.NN;

/// <summary>How <see cref="AuxLossFreeBalancer.Step_"/> moves each expert's bias.</summary>
public enum BiasUpdate
{
    /// <summary>b_i += u sign(L - load_i): DeepSeek's rule (Wang et al. 2024), a fixed step towards balance.</summary>
    Sign,
    /// <summary>b_i += u (L - load_i): the dual (sub)gradient step of the assignment problem's Lagrangian.</summary>
    Proportional,
}

/// <summary>
/// Auxiliary-loss-free load balancing of a sparse mixture of experts (DeepSeek's ALF-LB, analysed by Han and Zhong, "A
/// Theoretical Framework for Auxiliary-Loss-Free Load Balancing of Sparse Mixture-of-Experts in Large-Scale AI Models",
/// 2025). A per-expert bias b is added to the routing scores s [T, E] for the top-K choice only (the gates stay s),
/// and after each step the bias moves towards balance: up for experts whose load is under the mean load L = T K / E,
/// down for those over it. Read as a primal-dual method for the assignment problem max sum s x subject to K experts per
/// token and load L per expert, the top-K choice maximizes the Lagrangian
/// L(x, b) = sum_{t,i} (s_ti + b_i) x_ti - L sum_i b_i over assignments, and the bias step is a dual step on
/// D(b) = max_x L(x, b) (see <see cref="Lagrangian"/>).
/// </summary>
public sealed class AuxLossFreeBalancer : Module
{
    /// <summary>Creates the balancer with zero biases.</summary>
    /// <exception cref="ArgumentOutOfRangeException">experts is not positive, topK is outside [1, experts], or the step size is not positive and finite.</exception>
    public AuxLossFreeBalancer(int experts, int topK, double stepSize = 1e-3, BiasUpdate rule = BiasUpdate.Sign)
    {
        if (experts <= 0) throw new ArgumentOutOfRangeException(nameof(experts), experts, "alf_lb: experts must be positive");
        if (topK < 1 || topK > experts) throw new ArgumentOutOfRangeException(nameof(topK), topK, $"alf_lb: topK must be in [1, {experts}]");
        if (!(stepSize > 0 && double.IsFinite(stepSize))) throw new ArgumentOutOfRangeException(nameof(stepSize), stepSize, "alf_lb: stepSize must be positive and finite");
        Experts = experts; TopK = topK; StepSize = stepSize; Rule = rule;
        Bias = RegisterBuffer("bias", Tensor.Zeros([experts], DType.Float64));
    }

    /// <summary>The number of experts E.</summary>
    public int Experts { get; }
    /// <summary>Experts per token K.</summary>
    public int TopK { get; }
    /// <summary>The step size u.</summary>
    public double StepSize { get; }
    /// <summary>The bias update rule.</summary>
    public BiasUpdate Rule { get; }
    /// <summary>The selection bias b [E] (Float64).</summary>
    public Tensor Bias { get; }

    /// <summary>
    /// The top-K experts of each token by s + b (ties to the lower index) and their gates, the unbiased scores s at
    /// those experts (in the graph of <paramref name="scores"/>).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The scores are not [T, E].</exception>
    public (Tensor Indices, Tensor Gates) Route(Tensor scores)
    {
        CheckScores(scores, Experts);
        Tensor idx;
        using (Autograd.NoGrad()) idx = Choose(scores.Detach().To(DType.Float64).ToArray<double>(), Bias.ToArray<double>(), scores.Shape[0], Experts, TopK);
        idx = idx.To(scores.Device);
        return (idx, scores.Gather(1, idx));
    }

    /// <summary>The number of tokens routed to each expert, from the indices [T, K] that <see cref="Route"/> returned.</summary>
    /// <exception cref="ArgumentException">The indices are not Int64 [T, K] within [0, E).</exception>
    public long[] Load(Tensor indices)
    {
        ArgumentNullException.ThrowIfNull(indices);
        if (indices.DType != DType.Int64 || indices.Rank != 2 || indices.Shape[1] != TopK)
            throw new ArgumentException($"alf_lb: indices must be Int64 [T, {TopK}], got {indices.DType} {indices.Shape}", nameof(indices));
        var load = new long[Experts];
        foreach (long e in indices.ToArray<long>())
        {
            if (e < 0 || e >= Experts) throw new ArgumentException($"alf_lb: expert index {e} is outside [0, {Experts})", nameof(indices));
            load[e]++;
        }
        return load;
    }

    /// <summary>
    /// One bias update from the loads of the last step: with L = sum(load) / E, b_i += u sign(L - load_i)
    /// (<see cref="BiasUpdate.Sign"/>) or b_i += u (L - load_i) (<see cref="BiasUpdate.Proportional"/>). Returns the change of b.
    /// </summary>
    /// <exception cref="ArgumentException">The load has the wrong length or a negative entry.</exception>
    public double[] Step_(long[] load)
    {
        ArgumentNullException.ThrowIfNull(load);
        if (load.Length != Experts) throw new ArgumentException($"alf_lb: load must have {Experts} entries, got {load.Length}", nameof(load));
        if (load.Any(l => l < 0)) throw new ArgumentException($"alf_lb: loads must not be negative, got [{string.Join(", ", load)}]", nameof(load));
        double mean = (double)load.Sum() / Experts;
        var delta = load.Select(l => StepSize * (Rule == BiasUpdate.Sign ? Math.Sign(mean - l) : mean - l)).ToArray();
        using (Autograd.NoGrad()) Bias.Add_(Tensor.FromArray(delta));
        return delta;
    }

    /// <summary>
    /// The Lagrangian at its maximizing assignment, D(b) = sum_t (sum of the K largest s_ti + b_i) - (T K / E) sum_i b_i,
    /// for scores [T, E] and a bias [E] (evaluated in float64). It is convex in b, and its subgradient is load(b) - L.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not fit.</exception>
    /// <exception cref="ArgumentOutOfRangeException">topK is outside [1, E].</exception>
    public static double Lagrangian(Tensor scores, Tensor bias, int topK)
    {
        ArgumentNullException.ThrowIfNull(bias);
        int e = bias.Numel;
        CheckScores(scores, e);
        if (topK < 1 || topK > e) throw new ArgumentOutOfRangeException(nameof(topK), topK, $"alf_lb: topK must be in [1, {e}]");
        int t = scores.Shape[0];
        var s = scores.Detach().To(DType.Float64).ToArray<double>();
        var b = bias.Detach().To(DType.Float64).ToArray<double>();
        var idx = Choose(s, b, t, e, topK).ToArray<long>();
        double d = 0;
        for (int i = 0; i < idx.Length; i++) d += s[i / topK * e + idx[i]] + b[idx[i]];
        return d - (double)t * topK / e * b.Sum();
    }

    static void CheckScores(Tensor scores, int experts)
    {
        ArgumentNullException.ThrowIfNull(scores);
        if (scores.Rank != 2 || scores.Shape[1] != experts)
            throw new ShapeMismatchException("alf_lb", nameof(scores), $"scores have shape {scores.Shape}; they must be [tokens, {experts}]");
    }

    // Top-k of s + b per row, ties to the lower index, as Int64 [t, k].
    static Tensor Choose(double[] s, double[] b, int t, int e, int k)
    {
        var idx = new long[t * k];
        var order = new int[e];
        for (int r = 0; r < t; r++)
        {
            for (int i = 0; i < e; i++) order[i] = i;
            int row = r * e;
            Array.Sort(order, (i, j) => { int c = (s[row + j] + b[j]).CompareTo(s[row + i] + b[i]); return c != 0 ? c : i.CompareTo(j); });
            for (int j = 0; j < k; j++) idx[r * k + j] = order[j];
        }
        return Tensor.FromArray(idx, new Shape(t, k));
    }
}
