using Kiln.NN;

namespace Kiln.Methods.Probabilistic;

/// <summary>Settings of <see cref="BoostedLastLayer.Fit"/>.</summary>
public sealed record BoostedLayerOptions
{
    /// <summary>Boosting stages M.</summary>
    public int Stages { get; init; } = 10;
    /// <summary>Hidden units each stage adds.</summary>
    public int UnitsPerStage { get; init; } = 4;
    /// <summary>The shrinkage nu applied to every stage.</summary>
    public double Shrinkage { get; init; } = 0.5;
    /// <summary>AdamW steps per stage.</summary>
    public int Steps { get; init; } = 200;
    /// <summary>The AdamW learning rate.</summary>
    public double LearningRate { get; init; } = 0.01;
    /// <summary>The seed of the stages' initialisation.</summary>
    public ulong Seed { get; init; }
}

/// <summary>
/// Sequential training of the last layers of a network by gradient boosting (squared error): on fixed features
/// phi(x), stage m trains a small block g_m(phi) = W2_m relu(W1_m phi + b1_m) + b2_m on the residuals
/// y - F_{m-1}(phi) (the negative gradient of the squared error), and F_m = F_{m-1} + nu g_m, F_0 = mean(y). The
/// stages assemble exactly into one hidden layer of M h units, W1 = [W1_1; ..; W1_M], b1 = [b1_1; ..],
/// W2 = nu [W2_1, .., W2_M], b2 = F_0 + nu sum_m b2_m; keeping the first k stages' units is boosting truncated at k.
/// </summary>
public sealed class BoostedLastLayer
{
    readonly List<(Linear Hidden, Linear Output)> _stages = [];

    BoostedLastLayer(Tensor f0, double shrinkage) { Initial = f0; Shrinkage = shrinkage; }

    /// <summary>F_0, the training mean of each output ([out]).</summary>
    public Tensor Initial { get; }
    /// <summary>The shrinkage nu.</summary>
    public double Shrinkage { get; }
    /// <summary>The number of stages.</summary>
    public int Stages => _stages.Count;
    /// <summary>The training MSE after each stage (index 0: F_0).</summary>
    public IReadOnlyList<double> TrainMse { get; private set; } = [];

    /// <summary>Fits the stages on features <paramref name="features"/> ([n, d]) and targets <paramref name="y"/> ([n, out]).</summary>
    /// <exception cref="ArgumentException">Shapes disagree or there are no rows.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A count below 1, or the shrinkage or rate not positive.</exception>
    public static BoostedLastLayer Fit(Tensor features, Tensor y, BoostedLayerOptions? options = null)
    {
        var o = options ?? new BoostedLayerOptions();
        ArgumentNullException.ThrowIfNull(features); ArgumentNullException.ThrowIfNull(y);
        if (features.Rank != 2 || y.Rank != 2 || y.Shape[0] != features.Shape[0] || features.Shape[0] == 0)
            throw new ArgumentException($"boosted last layer: features must be [n, d] with y [n, out], n >= 1, got {features.Shape} and {y.Shape}", nameof(y));
        foreach (var (v, name) in new[] { (o.Stages, "Stages"), (o.UnitsPerStage, "UnitsPerStage"), (o.Steps, "Steps") }) ArgumentOutOfRangeException.ThrowIfLessThan(v, 1, name);
        if (!(o.Shrinkage > 0) || double.IsInfinity(o.Shrinkage)) throw new ArgumentOutOfRangeException("Shrinkage", o.Shrinkage, "boosted last layer: the shrinkage must be positive and finite");
        if (!(o.LearningRate > 0) || double.IsInfinity(o.LearningRate)) throw new ArgumentOutOfRangeException("LearningRate", o.LearningRate, "boosted last layer: the learning rate must be positive and finite");
        var phi = features.To(DType.Float64).Detach(); var yd = y.To(DType.Float64);
        var model = new BoostedLastLayer(yd.Mean(0), o.Shrinkage);
        var f = model.Initial.Unsqueeze(0).Expand(yd.Shape[0], yd.Shape[1]);
        var mse = new List<double> { (yd - f).Square().Mean().Item() };
        var gen = new Generator(o.Seed);
        for (int m = 0; m < o.Stages; m++)
        {
            var residual = (yd - f).Detach();
            var hidden = new Linear(phi.Shape[1], o.UnitsPerStage, true, gen, DType.Float64, phi.Device);
            var output = new Linear(o.UnitsPerStage, yd.Shape[1], true, gen, DType.Float64, phi.Device);
            var opt = new AdamW(hidden.Parameters().Concat(output.Parameters()), o.LearningRate, weightDecay: 0);
            for (int s = 0; s < o.Steps; s++)
            {
                opt.ZeroGrad();
                Losses.Mse(output.Call(hidden.Call(phi).Relu()), residual).Backward();
                opt.Step();
            }
            model._stages.Add((hidden, output));
            using (Autograd.NoGrad()) f = (f + output.Call(hidden.Call(phi).Relu()) * o.Shrinkage).Detach();
            mse.Add((yd - f).Square().Mean().Item());
        }
        model.TrainMse = mse;
        return model;
    }

    /// <summary>F_k(phi) = F_0 + nu sum of the first <paramref name="stages"/> (all by default) stage outputs: Float64 [n, out].</summary>
    public Tensor Predict(Tensor features, int? stages = null)
    {
        int k = CheckStages(stages);
        var phi = features.To(DType.Float64);
        var f = Initial.Unsqueeze(0).Expand(phi.Shape[0], Initial.Shape[0]);
        using (Autograd.NoGrad())
            foreach (var (hidden, output) in _stages.Take(k)) f = f + output.Call(hidden.Call(phi).Relu()) * Shrinkage;
        return f.Detach();
    }

    /// <summary>
    /// The first <paramref name="stages"/> stages (all by default) as one hidden layer: W1 [k h, d], b1 [k h],
    /// W2 [out, k h], b2 [out], with F_k(phi) = relu(phi W1^T + b1) W2^T + b2.
    /// </summary>
    public (Tensor W1, Tensor B1, Tensor W2, Tensor B2) Assemble(int? stages = null)
    {
        int k = CheckStages(stages);
        var used = _stages.Take(k).ToArray();
        if (k == 0)
            return (Tensor.Zeros(new Shape(0, 0), DType.Float64), Tensor.Zeros(new Shape(0), DType.Float64), Tensor.Zeros(new Shape(Initial.Shape[0], 0), DType.Float64), Initial);
        var w1 = Tensor.Concat(used.Select(s => s.Hidden.Weight.Detach()).ToArray(), 0);
        var b1 = Tensor.Concat(used.Select(s => s.Hidden.Bias!.Detach()).ToArray(), 0);
        var w2 = Tensor.Concat(used.Select(s => s.Output.Weight.Detach()).ToArray(), 1) * Shrinkage;
        var b2 = Initial + Tensor.Stack(used.Select(s => s.Output.Bias!.Detach()).ToArray(), 0).Sum(0) * Shrinkage;
        return (w1, b1, w2, b2);
    }

    /// <summary>The assembled layer's forward pass relu(phi W1^T + b1) W2^T + b2.</summary>
    public static Tensor AssembledForward((Tensor W1, Tensor B1, Tensor W2, Tensor B2) layer, Tensor features)
    {
        ArgumentNullException.ThrowIfNull(features);
        var phi = features.To(DType.Float64);
        if (layer.W1.Shape[0] == 0) return layer.B2.Unsqueeze(0).Expand(phi.Shape[0], layer.B2.Shape[0]);
        return (phi.MatMul(layer.W1.Transpose(0, 1)) + layer.B1).Relu().MatMul(layer.W2.Transpose(0, 1)) + layer.B2;
    }

    int CheckStages(int? stages)
    {
        int k = stages ?? Stages;
        if (k < 0 || k > Stages) throw new ArgumentOutOfRangeException(nameof(stages), k, $"boosted last layer: stages must be in 0 .. {Stages}");
        return k;
    }
}
