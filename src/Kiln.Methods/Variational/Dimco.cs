namespace Kiln.Methods.Variational;

/// <summary>
/// Discrete InfoMax Codes (Lee, Kim, Park and Choi, "Discrete Infomax Codes for Supervised Representation Learning", 2019):
/// a probabilistic encoder gives each input d independent k-way categorical code entries p(c_j | x) [N, d, k], trained to
/// maximise the mutual information between code and label, I(C; Y) ≈ Σ_j I(C_j; Y), with a regulariser keeping the code
/// entries independent (so the per-entry sum does not count the same information twice). Both are plug-in estimates over
/// a weighted batch: the batch's (x_i, y_i) carry weights w_i (uniform by default), p(y, c_j) = Σ_i w_i 1[y_i = y] p(c_j | x_i).
/// </summary>
public static class Dimco
{
    /// <summary>
    /// Σ_j Î(C_j; Y) = Σ_j [H(Y) + H(C_j) - H(Y, C_j)] in nats from code probabilities [N, d, k], Int64 labels [N] in
    /// [0, classes) and optional weights [N] (normalised here; uniform when null). Equals the exact Σ_j I(C_j; Y) of the joint
    /// when the batch enumerates (x, y) with weights p(x, y). Differentiable in the probabilities and the weights.
    /// </summary>
    /// <exception cref="ArgumentException">Probabilities not floating [N, d, k], labels not Int64 [N], or weights not [N].</exception>
    /// <exception cref="ArgumentOutOfRangeException">classes is not positive, or a label is outside [0, classes).</exception>
    public static Tensor MutualInformation(Tensor codeProbs, Tensor labels, int classes, Tensor? weights = null)
    {
        var w = Weights(codeProbs, weights, "dimco_mutual_information");
        if (classes < 1) throw new ArgumentOutOfRangeException(nameof(classes), classes, "dimco_mutual_information: classes must be positive");
        if (labels is null || labels.DType != DType.Int64 || labels.Shape != new Shape(codeProbs.Shape[0]))
            throw new ArgumentException($"dimco_mutual_information: labels must be Int64 [{codeProbs.Shape[0]}], not {labels?.DType} {labels?.Shape}", nameof(labels));
        var y = labels.ToArray<long>();
        var onehot = new double[y.Length * classes];
        for (int i = 0; i < y.Length; i++)
        {
            if (y[i] < 0 || y[i] >= classes) throw new ArgumentOutOfRangeException(nameof(labels), y[i], $"dimco_mutual_information: label {y[i]} at sample {i} is outside [0, {classes})");
            onehot[i * classes + y[i]] = 1;
        }
        int n = codeProbs.Shape[0], d = codeProbs.Shape[1], k = codeProbs.Shape[2];
        var yw = Tensor.FromArray(onehot, new Shape(n, classes)).To(codeProbs.DType).To(codeProbs.Device) * w.Unsqueeze(1);   // [N, C]
        var joint = yw.Transpose(0, 1).MatMul(codeProbs.Reshape(n, d * k)).Reshape(classes, d, k);                              // p(y, c_j)
        var py = yw.Sum(0);
        var pc = joint.Sum(0);                                                                                                  // [d, k]
        var hy = -XLogX(py).Sum();
        var hc = -XLogX(pc).Sum([1]);
        var hyc = -XLogX(joint).Sum([0, 2]);
        return (hc - hyc + hy).Sum();
    }

    /// <summary>
    /// The independence regulariser Σ_{j&lt;l} Î(C_j; C_l) over the batch's code distribution p(c_j, c_l) = Σ_i w_i p(c_j | x_i) p(c_l | x_i)
    /// (the entries are independent given x): zero exactly when every pair of entries is independent under the batch,
    /// subtracted (times a weight) from <see cref="MutualInformation"/>. [N, d, k] probabilities, optional weights [N].
    /// </summary>
    /// <exception cref="ArgumentException">Probabilities not floating [N, d, k], or weights not [N].</exception>
    public static Tensor PairwiseDependence(Tensor codeProbs, Tensor? weights = null)
    {
        var w = Weights(codeProbs, weights, "dimco_pairwise_dependence");
        int n = codeProbs.Shape[0], d = codeProbs.Shape[1], k = codeProbs.Shape[2];
        var total = Tensor.Zeros(new Shape(), codeProbs.DType, codeProbs.Device);
        var marg = (codeProbs * w.Unsqueeze(1).Unsqueeze(2)).Sum(0);                                                        // [d, k]
        var h = -XLogX(marg).Sum([1]);
        for (int j = 0; j < d; j++)
            for (int l = j + 1; l < d; l++)
            {
                var pj = codeProbs.Narrow(1, j, 1).Squeeze(1) * w.Unsqueeze(1);                                              // [N, k]
                var pl = codeProbs.Narrow(1, l, 1).Squeeze(1);
                var joint = pj.Transpose(0, 1).MatMul(pl);                                                                   // [k, k]
                total = total + h.Narrow(0, j, 1).Sum() + h.Narrow(0, l, 1).Sum() + XLogX(joint).Sum();
            }
        return total;
    }

    // x log x with 0 log 0 = 0; the clamp to the dtype's smallest normal keeps the log (and its gradient) finite where a
    // probability is exactly 0.
    static Tensor XLogX(Tensor p) => p * p.Clamp(min: p.DType switch { DType.Float64 => 1e-300, DType.Float16 => 6.2e-5, _ => 1.2e-38 }).Log();

    static Tensor Weights(Tensor codeProbs, Tensor? weights, string op)
    {
        ArgumentNullException.ThrowIfNull(codeProbs);
        if (!codeProbs.DType.IsFloating() || codeProbs.Rank != 3 || codeProbs.Shape[0] == 0)
            throw new ArgumentException($"{op}: code probabilities must be a non-empty floating [N, d, k], not {codeProbs.DType} {codeProbs.Shape}", nameof(codeProbs));
        int n = codeProbs.Shape[0];
        if (weights is null) return Tensor.Full(new Shape(n), 1.0 / n, codeProbs.DType, codeProbs.Device);
        if (weights.Shape != new Shape(n) || !weights.DType.IsFloating())
            throw new ArgumentException($"{op}: weights must be a floating [{n}], not {weights.DType} {weights.Shape}", nameof(weights));
        return weights / weights.Sum();
    }
}
