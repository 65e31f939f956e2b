namespace Kiln.NN;

/// <summary>
/// Logit-based knowledge-distillation losses: Hinton's temperature KD, logit-standardized KD (Sun et al. 2024),
/// Plackett-Luce distillation (PLD, Bassam et al. 2025), the binary (per-class Bernoulli) KL terms of dual-head KD
/// (Yang et al. 2024) and the graph-on-logits loss of InfiGFusion (Wang et al. 2025). Logits are [N, C] (one row per
/// sample). The teacher's logits are used as given: detach them for the usual one-way distillation.
/// </summary>
public static class Distillation
{
    static Tensor Reduce(Tensor perSample, Reduction r) => r switch
    {
        Reduction.Mean => perSample.Mean(),
        Reduction.Sum => perSample.Sum(),
        Reduction.None => perSample,
        _ => throw new ArgumentOutOfRangeException(nameof(r), r, "unknown reduction"),
    };

    static void Pair(Tensor student, Tensor teacher, string op, int minClasses = 1)
    {
        ArgumentNullException.ThrowIfNull(student); ArgumentNullException.ThrowIfNull(teacher);
        if (student.Rank != 2) throw new ShapeMismatchException(op, nameof(student), $"student logits {student.Shape} must be [N, C]");
        if (teacher.Shape != student.Shape) throw new ShapeMismatchException(op, nameof(teacher), student.Shape, teacher.Shape, "teacher logits must have the student's shape");
        if (student.Shape[1] < minClasses) throw new ShapeMismatchException(op, nameof(student), $"student logits {student.Shape} need at least {minClasses} classes");
    }

    static void Temperature(double t, string op)
    {
        if (!(t > 0) || double.IsInfinity(t)) throw new ArgumentOutOfRangeException("temperature", t, $"{op}: the temperature must be positive and finite");
    }

    static Tensor Labels(Tensor target, int n, int c, string op)
    {
        ArgumentNullException.ThrowIfNull(target);
        if (target.DType != DType.Int64) throw new ArgumentException($"{op}: target must hold Int64 class indices, not {target.DType}", nameof(target));
        if (target.Rank != 1 || target.Shape[0] != n) throw new ShapeMismatchException(op, nameof(target), $"target {target.Shape} must be [{n}]");
        var t = target.ToArray<long>();
        for (int i = 0; i < t.Length; i++)
            if (t[i] < 0 || t[i] >= c) throw new ArgumentOutOfRangeException(nameof(target), $"{op}: target {t[i]} at sample {i} is outside [0, {c})");
        return target;
    }

    /// <summary>
    /// Hinton's distillation term tau^2 KL(softmax(t / tau) || softmax(s / tau)) per sample (summed over classes),
    /// reduced over the batch (the mean is PyTorch's reduction='batchmean' times tau^2).
    /// </summary>
    /// <param name="student">Student logits s [N, C].</param>
    /// <param name="teacher">Teacher logits t [N, C].</param>
    /// <param name="temperature">tau &gt; 0.</param>
    /// <param name="reduction">How the per-sample values combine.</param>
    /// <exception cref="ShapeMismatchException">The logits are not both [N, C].</exception>
    /// <exception cref="ArgumentOutOfRangeException">tau is not positive and finite.</exception>
    public static Tensor KdLoss(Tensor student, Tensor teacher, double temperature = 4, Reduction reduction = Reduction.Mean)
    {
        Pair(student, teacher, "kd_loss");
        Temperature(temperature, "kd_loss");
        var logQ = (student / temperature).LogSoftmax(-1);
        var logP = (teacher / temperature).LogSoftmax(-1);
        var kl = (logP.Exp() * (logP - logQ)).Sum(-1);
        return Reduce(kl * (temperature * temperature), reduction);
    }

    /// <summary>
    /// The z-score of each row, (z - mean(z)) / (std(z) + eps), with the unbiased standard deviation (correction 1,
    /// as the paper's code uses torch.std). The result is invariant to z -&gt; a z + b for a &gt; 0 up to eps.
    /// </summary>
    /// <param name="logits">Logits [N, C] with C &gt;= 2.</param>
    /// <param name="eps">Added to the standard deviation so constant rows map to 0 instead of NaN.</param>
    /// <exception cref="ShapeMismatchException">Not [N, C] with at least 2 classes.</exception>
    /// <exception cref="ArgumentOutOfRangeException">eps is negative or not finite.</exception>
    public static Tensor StandardizeLogits(Tensor logits, double eps = 1e-7)
    {
        ArgumentNullException.ThrowIfNull(logits);
        if (logits.Rank != 2 || logits.Shape[1] < 2) throw new ShapeMismatchException("standardize_logits", nameof(logits), $"logits {logits.Shape} must be [N, C] with C >= 2");
        if (!(eps >= 0) || double.IsInfinity(eps)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "standardize_logits: eps must be non-negative and finite");
        var centred = logits - logits.Mean(-1, keepDim: true);
        return centred / (logits.Std(-1, keepDim: true) + eps);
    }

    /// <summary>
    /// Logit-standardized KD (Sun et al., CVPR 2024): <see cref="KdLoss"/> on <see cref="StandardizeLogits"/> of both
    /// the student's and the teacher's logits, tau^2 KL(softmax(Z(t) / tau) || softmax(Z(s) / tau)). Each model's
    /// effective temperature is tau times the standard deviation of its own logits, so the student matches the
    /// teacher's logit relations rather than their scale. The label cross-entropy term is separate.
    /// </summary>
    /// <param name="student">Student logits s [N, C].</param>
    /// <param name="teacher">Teacher logits t [N, C].</param>
    /// <param name="temperature">The base temperature tau &gt; 0.</param>
    /// <param name="eps">Added to each standard deviation (the paper's code uses 1e-7).</param>
    /// <param name="reduction">How the per-sample values combine.</param>
    /// <exception cref="ShapeMismatchException">The logits are not both [N, C] with C &gt;= 2.</exception>
    /// <exception cref="ArgumentOutOfRangeException">tau is not positive and finite, or eps is negative.</exception>
    public static Tensor LogitStandardizedKd(Tensor student, Tensor teacher, double temperature = 2, double eps = 1e-7, Reduction reduction = Reduction.Mean)
    {
        Pair(student, teacher, "logit_standardized_kd", minClasses: 2);
        return KdLoss(StandardizeLogits(student, eps), StandardizeLogits(teacher, eps), temperature, reduction);
    }

    /// <summary>
    /// PLD's teacher-optimal permutation pi* [N, C] (Int64): the true label first, then the other classes in
    /// descending order of the teacher's logits.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The teacher is not [N, C] or the target not [N].</exception>
    /// <exception cref="ArgumentException">The target is not Int64.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A target is outside [0, C).</exception>
    public static Tensor TeacherOptimalPermutation(Tensor teacher, Tensor target)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        if (teacher.Rank != 2) throw new ShapeMismatchException("teacher_optimal_permutation", nameof(teacher), $"teacher logits {teacher.Shape} must be [N, C]");
        Labels(target, teacher.Shape[0], teacher.Shape[1], "teacher_optimal_permutation");
        using var _ = Autograd.NoGrad();
        // Raising the label's score to +inf puts it first; the others keep the teacher's order.
        var isLabel = target.To(teacher.Device).OneHot(teacher.Shape[1], DType.Float64) > 0.5;
        var raised = Tensor.Where(isLabel, teacher.FullLike(double.PositiveInfinity), teacher.Detach());
        return raised.ArgSort(1, descending: true);
    }

    /// <summary>
    /// Plackett-Luce distillation (PLD): with pi* from <see cref="TeacherOptimalPermutation"/> and confidence weights
    /// alpha_k = softmax(t / tau)[pi*_k], the per-sample loss is
    /// sum_{k=1..K} alpha_k (log sum_{l=k..C} exp(s[pi*_l]) - s[pi*_k]), the alpha-weighted negative log-likelihood
    /// of the ranking pi* under the Plackett-Luce model with worths exp(s). It is convex in s and invariant to
    /// s -&gt; s + c; truncated to K = 1 it is cross entropy weighted by the teacher's probability of the label.
    /// </summary>
    /// <param name="student">Student logits s [N, C].</param>
    /// <param name="teacher">Teacher logits t [N, C]; they fix pi* and alpha and get no gradient.</param>
    /// <param name="target">Int64 labels [N].</param>
    /// <param name="temperature">tau &gt; 0 of the teacher's confidence weights.</param>
    /// <param name="topK">K, the number of ranking steps kept (1..C); null keeps all C.</param>
    /// <param name="reduction">How the per-sample values combine.</param>
    /// <exception cref="ShapeMismatchException">The shapes do not fit.</exception>
    /// <exception cref="ArgumentException">The target is not Int64.</exception>
    /// <exception cref="ArgumentOutOfRangeException">tau is not positive, K is outside [1, C], or a label is outside [0, C).</exception>
    public static Tensor PlackettLuceLoss(Tensor student, Tensor teacher, Tensor target, double temperature = 1, int? topK = null, Reduction reduction = Reduction.Mean)
    {
        Pair(student, teacher, "plackett_luce_loss");
        Temperature(temperature, "plackett_luce_loss");
        int c = student.Shape[1];
        int k = topK ?? c;
        if (k < 1 || k > c) throw new ArgumentOutOfRangeException(nameof(topK), topK, $"plackett_luce_loss: topK must be in [1, {c}]");
        var perm = TeacherOptimalPermutation(teacher, target).To(student.Device);
        var alpha = (teacher.Detach() / temperature).Softmax(-1).Gather(1, perm).To(student.DType);
        var s = student.Gather(1, perm);
        // log sum_{l >= k} exp(s_l): a cumulative log-sum-exp over the reversed ranking.
        var suffix = s.Flip(1).LogCumSumExp(1).Flip(1);
        var terms = alpha * (suffix - s);
        return Reduce(terms.Narrow(1, 0, k).Sum(-1), reduction);
    }

    /// <summary>
    /// BinaryKL of dual-head KD: each class as a Bernoulli variable with probability sigmoid(logit / tau),
    /// tau^2 sum_c KL(Bernoulli(sigmoid(t_c / tau)) || Bernoulli(sigmoid(s_c / tau))) per sample, reduced over the
    /// batch (computed with log-sigmoids, so no clamping).
    /// </summary>
    /// <param name="student">Student logits s [N, C].</param>
    /// <param name="teacher">Teacher logits t [N, C].</param>
    /// <param name="temperature">tau &gt; 0.</param>
    /// <param name="reduction">How the per-sample values combine.</param>
    /// <exception cref="ShapeMismatchException">The logits are not both [N, C].</exception>
    /// <exception cref="ArgumentOutOfRangeException">tau is not positive and finite.</exception>
    public static Tensor BinaryKl(Tensor student, Tensor teacher, double temperature = 2, Reduction reduction = Reduction.Mean)
    {
        Pair(student, teacher, "binary_kl");
        Temperature(temperature, "binary_kl");
        var s = student / temperature;
        var t = teacher / temperature;
        // log sigmoid(x) = -softplus(-x) and log(1 - sigmoid(x)) = -softplus(x).
        var p = t.Sigmoid();
        var kl = p * ((-s).Softplus() - (-t).Softplus()) + (1.0 - p) * (s.Softplus() - t.Softplus());
        return Reduce(kl.Sum(-1) * (temperature * temperature), reduction);
    }

    /// <summary>
    /// BinaryKL-Norm, the auxiliary head's loss of dual-head KD (the authors' code): with d_c = sigmoid((s_c - t_c) / tau),
    /// tau^2 sum_c KL(Bernoulli(1/2) || Bernoulli(d_c)) = tau^2 sum_c (softplus(x_c) + softplus(-x_c)) / 2 - log 2,
    /// x = (s - t) / tau, per sample; zero exactly where s = t and invariant to adding the same vector to both.
    /// </summary>
    /// <param name="student">Student logits s [N, C].</param>
    /// <param name="teacher">Teacher logits t [N, C].</param>
    /// <param name="temperature">tau &gt; 0.</param>
    /// <param name="reduction">How the per-sample values combine.</param>
    /// <exception cref="ShapeMismatchException">The logits are not both [N, C].</exception>
    /// <exception cref="ArgumentOutOfRangeException">tau is not positive and finite.</exception>
    public static Tensor BinaryKlNorm(Tensor student, Tensor teacher, double temperature = 2, Reduction reduction = Reduction.Mean)
    {
        Pair(student, teacher, "binary_kl_norm");
        Temperature(temperature, "binary_kl_norm");
        var x = (student - teacher) / temperature;
        var kl = (x.Softplus() + (-x).Softplus()) * 0.5 - Math.Log(2);
        return Reduce(kl.Sum(-1) * (temperature * temperature), reduction);
    }

    /// <summary>
    /// The dual-head KD objective: ceWeight CE(main, y) + kdWeight KD_tau(main, t) on the main head and
    /// binaryWeight BinaryKL-Norm_tau(aux, t) on the auxiliary head (<see cref="DualHeadClassifier"/>). Each head's
    /// parameters get gradient only from their own terms; the shared backbone gets the sum.
    /// </summary>
    /// <param name="main">Main-head logits [N, C] (the head that predicts).</param>
    /// <param name="auxiliary">Auxiliary-head logits [N, C].</param>
    /// <param name="teacher">Teacher logits [N, C].</param>
    /// <param name="target">Int64 labels [N].</param>
    /// <param name="temperature">tau of both distillation terms.</param>
    /// <param name="ceWeight">Weight of the main head's cross entropy.</param>
    /// <param name="kdWeight">Weight of the main head's probability-level KD (0: the authors' released configuration).</param>
    /// <param name="binaryWeight">Weight of the auxiliary head's BinaryKL-Norm.</param>
    /// <exception cref="ShapeMismatchException">The shapes do not fit.</exception>
    /// <exception cref="ArgumentOutOfRangeException">tau is not positive or a weight is negative.</exception>
    public static Tensor DualHeadKdLoss(Tensor main, Tensor auxiliary, Tensor teacher, Tensor target, double temperature = 2,
        double ceWeight = 1, double kdWeight = 1, double binaryWeight = 1)
    {
        Pair(main, teacher, "dual_head_kd_loss");
        Pair(auxiliary, teacher, "dual_head_kd_loss");
        foreach (var (w, name) in new[] { (ceWeight, nameof(ceWeight)), (kdWeight, nameof(kdWeight)), (binaryWeight, nameof(binaryWeight)) })
            if (!(w >= 0) || double.IsInfinity(w)) throw new ArgumentOutOfRangeException(name, w, "dual_head_kd_loss: weights must be non-negative and finite");
        Labels(target, main.Shape[0], main.Shape[1], "dual_head_kd_loss");
        var loss = Losses.CrossEntropy(main, target) * ceWeight + BinaryKlNorm(auxiliary, teacher, temperature) * binaryWeight;
        return kdWeight == 0 ? loss : loss + KdLoss(main, teacher, temperature) * kdWeight;
    }

    /// <summary>
    /// InfiGFusion's co-activation graph of one sequence's logits Z [T, V]: each row keeps its top-k logits (the rest
    /// are zeroed) and G = sum_t z_t z_t^T = Z_k^T Z_k [V, V], whose nodes are vocabulary channels and whose edges are
    /// their joint activations over the positions.
    /// </summary>
    /// <param name="logits">Z [T, V].</param>
    /// <param name="k">Logits kept per row, 1..V.</param>
    /// <exception cref="ShapeMismatchException">The logits are not [T, V].</exception>
    /// <exception cref="ArgumentOutOfRangeException">k is outside [1, V].</exception>
    public static Tensor CoActivationGraph(Tensor logits, int k)
    {
        ArgumentNullException.ThrowIfNull(logits);
        if (logits.Rank != 2) throw new ShapeMismatchException("co_activation_graph", nameof(logits), $"logits {logits.Shape} must be [T, V]");
        int v = logits.Shape[1];
        if (k < 1 || k > v) throw new ArgumentOutOfRangeException(nameof(k), k, $"co_activation_graph: k must be in [1, {v}]");
        Tensor keep;
        using (Autograd.NoGrad())
        {
            var top = logits.Detach().ArgSort(1, descending: true).Narrow(1, 0, k);
            keep = logits.Detach().ZerosLike().Scatter(1, top, Tensor.Ones(top.Shape, logits.DType, logits.Device));
        }
        var zk = logits * keep;
        return zk.Transpose(0, 1).MatMul(zk);
    }

    /// <summary>
    /// The sorting-based closed form between two graphs' weighted adjacency matrices A, B [n, n]: with mean degrees
    /// d_i = (1/n) sum_j A_ij, (1/n) sum_i (sort(d^A)_i - sort(d^B)_i)^2. It is O(n log n) after the degrees, zero for
    /// graphs equal up to a node permutation, invariant to permuting either graph's nodes, and never above the
    /// Gromov-Wasserstein discrepancy over permutation couplings, min_sigma (1/n^2) sum_ij (A_ij - B_sigma(i)sigma(j))^2
    /// (Jensen row by row, then the rearrangement inequality).
    /// </summary>
    /// <exception cref="ShapeMismatchException">A and B are not square matrices of the same size.</exception>
    public static Tensor SortedDegreeDistance(Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(a); ArgumentNullException.ThrowIfNull(b);
        if (a.Rank != 2 || a.Shape[0] != a.Shape[1]) throw new ShapeMismatchException("sorted_degree_distance", nameof(a), $"a {a.Shape} must be a square [n, n] matrix");
        if (b.Shape != a.Shape) throw new ShapeMismatchException("sorted_degree_distance", nameof(b), a.Shape, b.Shape, "b must have a's shape");
        var da = a.Mean(1);
        var db = b.Mean(1);
        var sa = da.Gather(0, da.Detach().ArgSort(0));
        var sb = db.Gather(0, db.Detach().ArgSort(0));
        return (sa - sb).Square().Mean();
    }

    /// <summary>
    /// InfiGFusion's graph-on-logits distillation (GLD) loss for one sequence: <see cref="SortedDegreeDistance"/>
    /// between the <see cref="CoActivationGraph"/>s of the student's and the teacher's logits [T, V] (a shared
    /// vocabulary, as after InfiGFusion's vocabulary alignment), each normalised by its number of positions T.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The logits are not both [T, V].</exception>
    /// <exception cref="ArgumentOutOfRangeException">k is outside [1, V].</exception>
    public static Tensor GraphOnLogitsLoss(Tensor student, Tensor teacher, int k)
    {
        Pair(student, teacher, "graph_on_logits_loss");
        int t = student.Shape[0];
        if (t == 0) throw new ShapeMismatchException("graph_on_logits_loss", nameof(student), $"student logits {student.Shape} have no positions");
        return SortedDegreeDistance(CoActivationGraph(student, k) / t, CoActivationGraph(teacher, k) / t);
    }
}

/// <summary>
/// Dual-head KD's student classifier: a shared backbone followed by two linear heads on its features, the main head
/// (cross entropy and probability-level KD; it predicts) and the auxiliary head (BinaryKL-Norm on logits). Splitting
/// the heads keeps the logit-level loss from collapsing the predicting head.
/// </summary>
public sealed class DualHeadClassifier : Module<Tensor, Tensor>
{
    /// <summary>Creates the heads on top of <paramref name="backbone"/>, whose output is [N, features].</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive.</exception>
    public DualHeadClassifier(Module<Tensor, Tensor> backbone, int features, int classes, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(backbone);
        Backbone = RegisterModule("backbone", backbone);
        Main = RegisterModule("main", new Linear(features, classes, true, generator, dtype, device));
        Auxiliary = RegisterModule("auxiliary", new Linear(features, classes, true, generator, dtype, device));
    }

    /// <summary>The shared feature extractor.</summary>
    public Module<Tensor, Tensor> Backbone { get; }
    /// <summary>The predicting head.</summary>
    public Linear Main { get; }
    /// <summary>The auxiliary head, used only in training.</summary>
    public Linear Auxiliary { get; }

    /// <summary>Both heads' logits [N, C] on one backbone pass.</summary>
    public (Tensor Main, Tensor Auxiliary) Heads(Tensor input)
    {
        var f = Backbone.Call(input);
        return (Main.Call(f), Auxiliary.Call(f));
    }

    /// <summary>The main head's logits (prediction).</summary>
    public override Tensor Forward(Tensor input) => Main.Call(Backbone.Call(input));
}
