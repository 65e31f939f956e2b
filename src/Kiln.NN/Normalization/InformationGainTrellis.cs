namespace Kiln.NN;

/// <summary>
/// The information gain of a routing decision (Bicici, Keskin and Akarun's conditional information gain networks, the
/// routing loss of the Conditional Information Gain Trellis): for a batch with routing probabilities p(n | x_b) [B, R]
/// and labels y_b, the joint p(c, n) = (1/B) sum_b [y_b = c] p(n | x_b) gives IG = H(c) + H(n) - H(c, n), the mutual
/// information between label and route, 0 for routes independent of the label and at most min(log C, log R).
/// </summary>
public static class InformationGain
{
    /// <summary>IG of <paramref name="routingProbabilities"/> [B, R] (rows summing to 1) against Int64 labels [B] in [0, classes), differentiable in the probabilities.</summary>
    /// <exception cref="ShapeMismatchException">The shapes do not fit.</exception>
    /// <exception cref="ArgumentException">The labels are not Int64, or the batch is empty.</exception>
    /// <exception cref="ArgumentOutOfRangeException">classes is not positive, or a label is outside [0, classes).</exception>
    public static Tensor Compute(Tensor routingProbabilities, Tensor labels, int classes)
    {
        ArgumentNullException.ThrowIfNull(routingProbabilities);
        ArgumentNullException.ThrowIfNull(labels);
        if (classes <= 0) throw new ArgumentOutOfRangeException(nameof(classes), classes, "information_gain: classes must be positive");
        if (routingProbabilities.Rank != 2)
            throw new ShapeMismatchException("information_gain", nameof(routingProbabilities), $"routing probabilities have shape {routingProbabilities.Shape}; they must be [batch, routes]");
        int b = routingProbabilities.Shape[0];
        if (labels.Shape != new Shape(b))
            throw new ShapeMismatchException("information_gain", nameof(labels), $"labels have shape {labels.Shape}; they must be [{b}]");
        if (labels.DType != DType.Int64) throw new ArgumentException($"information_gain: labels must be Int64, not {labels.DType}", nameof(labels));
        if (b == 0) throw new ArgumentException("information_gain: the batch is empty", nameof(routingProbabilities));
        foreach (long l in labels.ToArray<long>())
            if (l < 0 || l >= classes) throw new ArgumentOutOfRangeException(nameof(labels), l, $"information_gain: a label is outside [0, {classes})");
        var onehot = labels.OneHot(classes, routingProbabilities.DType).To(routingProbabilities.Device);
        var joint = onehot.T.MatMul(routingProbabilities) / b;                 // [C, R]
        return Entropy(joint.Sum(1)) + Entropy(joint.Sum(0)) - Entropy(joint.Reshape(-1));
    }

    // -sum p log p with 0 log 0 = 0 (the clamp only guards the log; the product with p = 0 is 0).
    static Tensor Entropy(Tensor p) => -(p * p.Clamp(min: 1e-30).Log()).Sum();
}

/// <summary>What a <see cref="InformationGainTrellis"/> computed for a batch.</summary>
/// <param name="Logits">Class logits [B, classes] from the route each sample took.</param>
/// <param name="RoutingProbabilities">Per routing layer, the softmax routing probabilities [B, blocks of the next layer].</param>
/// <param name="Routes">Per routing layer, the chosen block of the next layer (Int64 [B], the argmax of the probabilities).</param>
public sealed record TrellisOutput(Tensor Logits, IReadOnlyList<Tensor> RoutingProbabilities, IReadOnlyList<Tensor> Routes);

/// <summary>
/// A conditional information gain trellis (Bicici and Akarun, "Conditional Information Gain Trellis", Pattern
/// Recognition Letters 2024): layer l holds <c>blocksPerLayer[l]</c> blocks (Linear + ReLU to <c>hidden</c>), the first
/// layer has one; after each layer but the last, a router (Linear from <c>hidden</c> to the next layer's block count, a
/// softmax at <see cref="Temperature"/>) sends each sample to one block of the next layer, the argmax, so a sample runs
/// one path through the trellis; a shared Linear head gives the class logits. The routers are trained by maximizing
/// each layer's <see cref="InformationGain"/> (<see cref="Loss"/>), which makes routes class-consistent; the
/// classification loss trains the blocks on the path each sample took.
/// </summary>
public sealed class InformationGainTrellis : Module<Tensor, TrellisOutput>
{
    readonly Linear[][] _blocks;
    readonly Linear[] _routers;
    readonly Linear _head;

    /// <summary>Creates the trellis.</summary>
    /// <exception cref="ArgumentException">blocksPerLayer is empty, starts with a count other than 1, or holds a count below 1.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A width is not positive, or the temperature is not positive and finite.</exception>
    public InformationGainTrellis(int inFeatures, int[] blocksPerLayer, int hidden, int classes, double temperature = 1, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(blocksPerLayer);
        if (blocksPerLayer.Length == 0 || blocksPerLayer[0] != 1 || blocksPerLayer.Any(k => k < 1))
            throw new ArgumentException($"cigt: blocksPerLayer must start with 1 and hold positive counts, got [{string.Join(", ", blocksPerLayer)}]", nameof(blocksPerLayer));
        if (!(temperature > 0 && double.IsFinite(temperature))) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "cigt: temperature must be positive and finite");
        BlocksPerLayer = (int[])blocksPerLayer.Clone(); Classes = classes; Temperature = temperature;
        _blocks = blocksPerLayer.Select((k, l) => Enumerable.Range(0, k)
            .Select(j => RegisterModule($"block{l}_{j}", new Linear(l == 0 ? inFeatures : hidden, hidden, true, generator, dtype, device))).ToArray()).ToArray();
        _routers = Enumerable.Range(0, blocksPerLayer.Length - 1)
            .Select(l => RegisterModule($"router{l}", new Linear(hidden, blocksPerLayer[l + 1], true, generator, dtype, device))).ToArray();
        _head = RegisterModule("head", new Linear(hidden, classes, true, generator, dtype, device));
    }

    /// <summary>Blocks in each layer (the first is 1).</summary>
    public IReadOnlyList<int> BlocksPerLayer { get; }
    /// <summary>The number of classes.</summary>
    public int Classes { get; }
    /// <summary>The routers' softmax temperature.</summary>
    public double Temperature { get; }

    /// <inheritdoc/>
    public override TrellisOutput Forward(Tensor input)
    {
        var h = _blocks[0][0].Call(input).Relu();
        var probs = new List<Tensor>();
        var routes = new List<Tensor>();
        for (int l = 0; l < _routers.Length; l++)
        {
            var p = (_routers[l].Call(h) / Temperature).Softmax(-1);
            var route = p.Detach().ArgMax(1);
            probs.Add(p); routes.Add(route);
            // Each block runs on the whole batch and a one-hot mask keeps the chosen one per sample: the gradient of the
            // classification loss reaches only the blocks on each sample's path.
            var mask = route.OneHot(_blocks[l + 1].Length, h.DType).To(h.Device);
            var outs = Tensor.Stack(_blocks[l + 1].Select(b => b.Call(h).Relu()).ToArray(), 1);   // [B, K, hidden]
            h = (outs * mask.Unsqueeze(2)).Sum(1);
        }
        return new TrellisOutput(_head.Call(h), probs, routes);
    }

    /// <summary>
    /// The training loss: cross entropy of the logits minus <paramref name="informationGainWeight"/> times the sum over
    /// routing layers of <see cref="InformationGain.Compute"/> (so minimizing it maximizes the information gain).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The weight is negative or not finite.</exception>
    public Tensor Loss(TrellisOutput output, Tensor labels, double informationGainWeight = 1)
    {
        ArgumentNullException.ThrowIfNull(output);
        if (!(informationGainWeight >= 0 && double.IsFinite(informationGainWeight)))
            throw new ArgumentOutOfRangeException(nameof(informationGainWeight), informationGainWeight, "cigt: informationGainWeight must be non-negative and finite");
        var loss = Losses.CrossEntropy(output.Logits, labels);
        foreach (var p in output.RoutingProbabilities) loss = loss - InformationGain.Compute(p, labels, Classes) * informationGainWeight;
        return loss;
    }
}
