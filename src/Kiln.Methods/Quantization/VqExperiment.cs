using System.Diagnostics;
using Kiln.IO;
using Kiln.NN;

namespace Kiln.Methods.Quantization;

/// <summary>The bottlenecks the VQ autoencoder experiment compares.</summary>
public enum VqMethod
{
    /// <summary>A learned codebook with the straight-through estimator.</summary>
    StraightThrough,
    /// <summary>A learned codebook with the rotation trick.</summary>
    Rotation,
    /// <summary>SimVQ: frozen basis through a learned linear layer, straight-through.</summary>
    SimVQ,
    /// <summary>CVQ-VAE's online clustered codebook, straight-through.</summary>
    OnlineClustered,
}

/// <summary>Settings of <see cref="VqExperiment.Run"/>.</summary>
public sealed record VqExperimentOptions
{
    /// <summary>Training steps per method.</summary>
    public int Steps { get; init; } = 800;
    /// <summary>Codebook size K.</summary>
    public int Codes { get; init; } = 512;
    /// <summary>Latent tokens per image, each quantized separately.</summary>
    public int Tokens { get; init; } = 4;
    /// <summary>Width of a code.</summary>
    public int CodeDim { get; init; } = 4;
    /// <summary>Hidden width of the encoder and decoder MLPs.</summary>
    public int Hidden { get; init; } = 128;
    /// <summary>Images per step.</summary>
    public int BatchSize { get; init; } = 128;
    /// <summary>AdamW learning rate.</summary>
    public double LearningRate { get; init; } = 2e-3;
    /// <summary>Commitment weight beta.</summary>
    public double Beta { get; init; } = 0.25;
    /// <summary>Evaluate on the test split every this many steps (and at the end).</summary>
    public int EvalEvery { get; init; } = 100;
    /// <summary>Seed of the split, the initialisation and the batches.</summary>
    public ulong Seed { get; init; }
    /// <summary>The methods to run, in order.</summary>
    public IReadOnlyList<VqMethod> Methods { get; init; } = Enum.GetValues<VqMethod>();

    /// <summary>Checks every setting.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range.</exception>
    public void Validate()
    {
        foreach (var (name, v) in new[] { (nameof(Steps), Steps), (nameof(Codes), Codes), (nameof(Tokens), Tokens), (nameof(CodeDim), CodeDim), (nameof(Hidden), Hidden), (nameof(BatchSize), BatchSize), (nameof(EvalEvery), EvalEvery) })
            if (v <= 0) throw new ArgumentOutOfRangeException(name, v, $"vq experiment: {name} must be positive");
        if (!(LearningRate > 0 && double.IsFinite(LearningRate))) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "vq experiment: the learning rate must be positive");
        if (!(Beta >= 0 && double.IsFinite(Beta))) throw new ArgumentOutOfRangeException(nameof(Beta), Beta, "vq experiment: beta must be non-negative");
        if (Methods.Count == 0) throw new ArgumentOutOfRangeException(nameof(Methods), "vq experiment: give at least one method");
    }
}

/// <summary>One evaluation on the test split.</summary>
/// <param name="Step">Training steps done.</param>
/// <param name="ReconstructionMse">Mean squared error per pixel (pixels scaled to [0, 1]).</param>
/// <param name="Perplexity">exp of the entropy of the code frequencies over all test tokens.</param>
/// <param name="FractionUsed">The fraction of the K codes used by at least one test token.</param>
public sealed record VqEvaluation(int Step, double ReconstructionMse, double Perplexity, double FractionUsed);

/// <summary>One method's run: its final evaluation, the curve, and the wall time.</summary>
public sealed record VqMethodResult(VqMethod Method, VqEvaluation Final, IReadOnlyList<VqEvaluation> Curve, double Seconds);

/// <summary>The experiment's result.</summary>
public sealed record VqExperimentResult(VqExperimentOptions Options, int TrainImages, int TestImages, IReadOnlyList<VqMethodResult> Methods);

/// <summary>
/// A small VQ autoencoder on the digits (8x8, pixels / 16): an MLP encoder to T tokens of width D, a bottleneck per
/// token, an MLP decoder, trained with AdamW on pixel MSE plus the VQ losses. Reports test reconstruction error and
/// codebook usage for each bottleneck.
/// </summary>
public static class VqExperiment
{
    sealed class Autoencoder : Module<Tensor, (Tensor Reconstruction, VqOutput Vq)>
    {
        readonly int _tokens, _dim;
        public Autoencoder(VqMethod method, VqExperimentOptions o, Generator g)
        {
            (_tokens, _dim) = (o.Tokens, o.CodeDim);
            Encoder = RegisterModule("encoder", new MLP([64, o.Hidden, o.Tokens * o.CodeDim], generator: g));
            Bottleneck = RegisterModule<Module<Tensor, VqOutput>>("quantizer", method switch
            {
                VqMethod.StraightThrough => new VectorQuantizer(o.Codes, o.CodeDim, VqEstimator.StraightThrough, g),
                VqMethod.Rotation => new VectorQuantizer(o.Codes, o.CodeDim, VqEstimator.Rotation, g),
                VqMethod.SimVQ => new SimVQ(o.Codes, o.CodeDim, VqEstimator.StraightThrough, g),
                VqMethod.OnlineClustered => new OnlineClusteredCodebook(o.Codes, o.CodeDim, generator: g),
                _ => throw new ArgumentOutOfRangeException(nameof(method), method, "vq experiment: unknown method"),
            });
            Decoder = RegisterModule("decoder", new MLP([o.Tokens * o.CodeDim, o.Hidden, 64], generator: g));
        }

        public MLP Encoder { get; }
        public Module<Tensor, VqOutput> Bottleneck { get; }
        public MLP Decoder { get; }

        public override (Tensor, VqOutput) Forward(Tensor x)
        {
            int b = x.Shape[0];
            var z = Encoder.Call(x).Reshape(b * _tokens, _dim);
            var vq = Bottleneck.Call(z);
            return (Decoder.Call(vq.Quantized.Reshape(b, _tokens * _dim)), vq);
        }
    }

    /// <summary>Runs every method in <paramref name="options"/>; <paramref name="progress"/> gets (steps done, total steps).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range.</exception>
    public static VqExperimentResult Run(VqExperimentOptions options, Action<int, int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var (features, labels) = Datasets.Digits();
        var ((trainX, _), (testX, _)) = Datasets.TrainTestSplit(features / 16.0, labels, 0.25, options.Seed);
        int total = options.Steps * options.Methods.Count, done = 0;
        var results = new List<VqMethodResult>();
        foreach (var method in options.Methods)
        {
            var sw = Stopwatch.StartNew();
            var g = new Generator(options.Seed + 1);
            var model = new Autoencoder(method, options, g);
            var opt = new AdamW(model.Parameters(), options.LearningRate, weightDecay: 0);
            var curve = new List<VqEvaluation> { Evaluate(model, testX, options, 0) };
            for (int step = 1; step <= options.Steps; step++)
            {
                var batch = trainX.IndexSelect(0, Tensor.RandInt([options.BatchSize], 0, trainX.Shape[0], g));
                var (recon, vq) = model.Call(batch);
                var loss = (recon - batch).Square().Mean() + vq.Loss(options.Beta);
                opt.ZeroGrad();
                loss.Backward();
                opt.Step();
                if (step % options.EvalEvery == 0 || step == options.Steps) curve.Add(Evaluate(model, testX, options, step));
                progress?.Invoke(++done, total);
            }
            results.Add(new VqMethodResult(method, curve[^1], curve, sw.Elapsed.TotalSeconds));
        }
        return new VqExperimentResult(options, trainX.Shape[0], testX.Shape[0], results);
    }

    static VqEvaluation Evaluate(Autoencoder model, Tensor x, VqExperimentOptions o, int step)
    {
        model.Eval();
        try
        {
            using var _ = Autograd.NoGrad();
            var (recon, vq) = model.Call(x);
            var (perplexity, used) = VectorQuantization.Usage(vq.Indices, o.Codes);
            return new VqEvaluation(step, (recon - x).Square().Mean().Item(), perplexity, used);
        }
        finally { model.Train(); }
    }
}
