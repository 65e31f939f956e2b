using System.Diagnostics;
using Kiln.IO;
using Kiln.NN;

namespace Kiln.Methods.SelfSupervised;

/// <summary>Settings of <see cref="SslExperiment.Run"/>; the defaults are the README's run.</summary>
public sealed record SslOptions
{
    /// <summary>VICReg pre-training steps.</summary>
    public int PretrainSteps { get; init; } = 600;
    /// <summary>Continued pre-training steps, with VICReg alone and with VICReg + E2MC, from the same pre-trained weights.</summary>
    public int ContinueSteps { get; init; } = 200;
    /// <summary>Images per step (two views of each).</summary>
    public int BatchSize { get; init; } = 256;
    /// <summary>Hidden width of the encoder and the projector.</summary>
    public int Hidden { get; init; } = 256;
    /// <summary>Width of the representation (the encoder's output, which the probe reads).</summary>
    public int RepresentationDim { get; init; } = 64;
    /// <summary>Width of the embedding (the projector's output, which the losses see).</summary>
    public int EmbeddingDim { get; init; } = 128;
    /// <summary>AdamW learning rate of pre-training.</summary>
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>E2MC's entropy weight λ_H (per view).</summary>
    public double EntropyWeight { get; init; } = 5;
    /// <summary>E2MC's covariance weight λ_C (per view).</summary>
    public double E2mcCovarianceWeight { get; init; } = 5;
    /// <summary>Largest pixel shift of an augmented view (each axis, uniform in [-s, s]).</summary>
    public int MaxShift { get; init; } = 1;
    /// <summary>Standard deviation of the Gaussian noise added to a view (pixels scaled to [0, 1]).</summary>
    public double NoiseStd { get; init; } = 0.1;
    /// <summary>Probability that a pixel of a view is masked to 0.</summary>
    public double MaskProbability { get; init; } = 0.15;
    /// <summary>Full-batch AdamW steps of the linear probe.</summary>
    public int ProbeSteps { get; init; } = 300;
    /// <summary>Evaluate the probe every this many pre-training steps (for the curve).</summary>
    public int EvalEvery { get; init; } = 100;
    /// <summary>Fraction of the digits held out for the probe's test accuracy.</summary>
    public double TestFraction { get; init; } = 0.25;
    /// <summary>Seed of the split, the weights, the batches and the augmentations.</summary>
    public ulong Seed { get; init; }

    /// <summary>Checks every setting.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range (the message names it).</exception>
    public void Validate()
    {
        static void Positive(int v, string name) { if (v <= 0) throw new ArgumentOutOfRangeException(name, v, $"ssl: {name} must be positive"); }
        if (PretrainSteps < 0) throw new ArgumentOutOfRangeException(nameof(PretrainSteps), PretrainSteps, "ssl: PretrainSteps must be non-negative");
        if (ContinueSteps < 0) throw new ArgumentOutOfRangeException(nameof(ContinueSteps), ContinueSteps, "ssl: ContinueSteps must be non-negative");
        if (BatchSize < 4) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "ssl: BatchSize must be at least 4 (batch statistics and the m-spacing window)");
        Positive(Hidden, nameof(Hidden)); Positive(RepresentationDim, nameof(RepresentationDim)); Positive(EmbeddingDim, nameof(EmbeddingDim));
        Positive(ProbeSteps, nameof(ProbeSteps)); Positive(EvalEvery, nameof(EvalEvery));
        if (!(LearningRate > 0 && double.IsFinite(LearningRate))) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "ssl: LearningRate must be positive and finite");
        if (!(EntropyWeight >= 0 && double.IsFinite(EntropyWeight))) throw new ArgumentOutOfRangeException(nameof(EntropyWeight), EntropyWeight, "ssl: EntropyWeight must be finite and non-negative");
        if (!(E2mcCovarianceWeight >= 0 && double.IsFinite(E2mcCovarianceWeight))) throw new ArgumentOutOfRangeException(nameof(E2mcCovarianceWeight), E2mcCovarianceWeight, "ssl: E2mcCovarianceWeight must be finite and non-negative");
        if (MaxShift is < 0 or > 3) throw new ArgumentOutOfRangeException(nameof(MaxShift), MaxShift, "ssl: MaxShift must be in [0, 3] pixels");
        if (!(NoiseStd >= 0 && double.IsFinite(NoiseStd))) throw new ArgumentOutOfRangeException(nameof(NoiseStd), NoiseStd, "ssl: NoiseStd must be finite and non-negative");
        if (!(MaskProbability >= 0 && MaskProbability < 1)) throw new ArgumentOutOfRangeException(nameof(MaskProbability), MaskProbability, "ssl: MaskProbability must be in [0, 1)");
        if (!(TestFraction > 0 && TestFraction < 1)) throw new ArgumentOutOfRangeException(nameof(TestFraction), TestFraction, "ssl: TestFraction must be in (0, 1)");
    }
}

/// <summary>The probe's test accuracy after <paramref name="Step"/> pre-training steps.</summary>
/// <param name="Step">Pre-training steps taken.</param>
/// <param name="TestAccuracy">Linear-probe accuracy on the held-out digits.</param>
public sealed record SslCurvePoint(int Step, double TestAccuracy);

/// <summary>One row of the experiment's table.</summary>
/// <param name="Method">pixels, random encoder, vicreg, vicreg continued, or vicreg + e2mc.</param>
/// <param name="Steps">Pre-training steps behind the representation.</param>
/// <param name="TrainAccuracy">Linear-probe accuracy on its training digits.</param>
/// <param name="TestAccuracy">Linear-probe accuracy on the held-out digits.</param>
/// <param name="Entropy">E2MC's mean marginal entropy of the sigmoid-transformed embeddings of the held-out digits (NaN without a projector).</param>
/// <param name="Covariance">VICReg's covariance term of the held-out representations (NaN for pixels).</param>
/// <param name="Curve">Probe test accuracy along this run's pre-training (empty for the baselines).</param>
public sealed record SslRow(string Method, int Steps, double TrainAccuracy, double TestAccuracy, double Entropy, double Covariance, IReadOnlyList<SslCurvePoint> Curve);

/// <summary>The experiment's outcome.</summary>
/// <param name="Options">The settings.</param>
/// <param name="TrainSize">Digits the encoder and the probe train on.</param>
/// <param name="TestSize">Held-out digits.</param>
/// <param name="Rows">The table.</param>
/// <param name="Seconds">Wall time.</param>
public sealed record SslResult(SslOptions Options, int TrainSize, int TestSize, IReadOnlyList<SslRow> Rows, double Seconds);

/// <summary>
/// VICReg and VICReg + E2MC on two augmented views of the 8x8 digits (small shifts, noise and pixel masking), an MLP
/// encoder and projector, and a linear probe on the frozen representation; baselines are the raw pixels and the
/// untrained encoder.
/// </summary>
public static class SslExperiment
{
    /// <summary>Runs the experiment on the CPU in float32; <paramref name="progress"/> gets (done, total) pre-training steps.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range.</exception>
    public static SslResult Run(SslOptions options, Action<int, int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var clock = Stopwatch.StartNew();
        var (features, labels) = Datasets.Digits();
        var ((xTrain, yTrain), (xTest, yTest)) = Datasets.TrainTestSplit(features / 16.0, labels, options.TestFraction, options.Seed);
        int total = options.PretrainSteps * 2 + options.ContinueSteps * 2, done = 0;
        void Tick() => progress?.Invoke(++done, total);

        var rows = new List<SslRow>();
        var (trP, teP) = Probe(xTrain, yTrain, xTest, yTest, options);
        rows.Add(new SslRow("pixels", 0, trP, teP, double.NaN, double.NaN, []));

        // Two runs from the same seed share their first PretrainSteps steps exactly; they differ only in the continuation.
        var plain = Train(options, xTrain, yTrain, xTest, yTest, e2mc: false, Tick);
        var e2mc = Train(options, xTrain, yTrain, xTest, yTest, e2mc: true, Tick);
        rows.Add(plain.Random);
        rows.Add(plain.Pretrained);
        rows.Add(plain.Final with { Method = "vicreg continued" });
        rows.Add(e2mc.Final with { Method = "vicreg + e2mc" });
        return new SslResult(options, xTrain.Shape[0], xTest.Shape[0], rows, clock.Elapsed.TotalSeconds);
    }

    sealed record Run3(SslRow Random, SslRow Pretrained, SslRow Final);

    static Run3 Train(SslOptions o, Tensor xTrain, Tensor yTrain, Tensor xTest, Tensor yTest, bool e2mc, Action tick)
    {
        var g = new Generator(o.Seed + 1);
        var encoder = new MLP([64, o.Hidden, o.RepresentationDim], generator: g);
        var projector = new MLP([o.RepresentationDim, o.Hidden, o.EmbeddingDim], generator: g);
        var opt = new AdamW(encoder.Parameters().Concat(projector.Parameters()), o.LearningRate, weightDecay: 1e-4);
        var rng = new Random((int)(o.Seed % int.MaxValue) + 7);
        var pixels = xTrain.ToArray<float>();
        int n = xTrain.Shape[0];

        SslRow Evaluate(string method, int steps, List<SslCurvePoint> curve)
        {
            Tensor rTrain, rTest;
            double h, c;
            using (Autograd.NoGrad())
            {
                rTrain = encoder.Call(xTrain); rTest = encoder.Call(xTest);
                h = SelfSupervisedLosses.EffectiveEntropy(projector.Call(rTest)).Entropy.Item();
                c = SelfSupervisedLosses.VicRegCovariance(rTest).Item();
            }
            var (tr, te) = Probe(rTrain, yTrain, rTest, yTest, o);
            return new SslRow(method, steps, tr, te, h, c, curve.ToArray());
        }

        var curve = new List<SslCurvePoint>();
        var random = Evaluate("random encoder", 0, curve);
        curve.Add(new SslCurvePoint(0, random.TestAccuracy));
        int steps = o.PretrainSteps + o.ContinueSteps;
        SslRow pretrained = random with { Method = "vicreg", Curve = curve.ToArray() }, final = random with { Curve = curve.ToArray() };
        for (int step = 1; step <= steps; step++)
        {
            var idx = Enumerable.Range(0, o.BatchSize).Select(_ => rng.Next(n)).ToArray();
            var v1 = Augment(pixels, idx, o, rng);
            var v2 = Augment(pixels, idx, o, rng);
            var z1 = projector.Call(encoder.Call(v1));
            var z2 = projector.Call(encoder.Call(v2));
            var loss = SelfSupervisedLosses.VicReg(z1, z2);
            if (e2mc && step > o.PretrainSteps)
                loss = loss + SelfSupervisedLosses.E2mc(z1, o.EntropyWeight, o.E2mcCovarianceWeight) + SelfSupervisedLosses.E2mc(z2, o.EntropyWeight, o.E2mcCovarianceWeight);
            opt.ZeroGrad();
            loss.Backward();
            opt.Step();
            tick();
            bool atPretrain = step == o.PretrainSteps, last = step == steps;
            if (step % o.EvalEvery != 0 && !atPretrain && !last) continue;
            var row = Evaluate("vicreg", step, []);
            curve.Add(new SslCurvePoint(step, row.TestAccuracy));
            if (atPretrain) pretrained = row with { Curve = curve.ToArray() };
            if (last) final = row with { Curve = curve.ToArray() };
        }
        return new Run3(random with { Curve = [] }, pretrained, final);
    }

    // A view: shift by (dx, dy) with zero fill, mask pixels, add noise. Pixels are [n, 64] row-major 8x8 in [0, 1].
    static Tensor Augment(float[] pixels, int[] idx, SslOptions o, Random rng)
    {
        var v = new float[idx.Length * 64];
        for (int b = 0; b < idx.Length; b++)
        {
            int dx = rng.Next(-o.MaxShift, o.MaxShift + 1), dy = rng.Next(-o.MaxShift, o.MaxShift + 1);
            for (int r = 0; r < 8; r++)
                for (int c = 0; c < 8; c++)
                {
                    int sr = r - dy, sc = c - dx;
                    float p = sr is >= 0 and < 8 && sc is >= 0 and < 8 ? pixels[idx[b] * 64 + sr * 8 + sc] : 0;
                    if (rng.NextDouble() < o.MaskProbability) p = 0;
                    v[b * 64 + r * 8 + c] = p + (float)(o.NoiseStd * Gaussian(rng));
                }
        }
        return Tensor.FromArray(v, new Shape(idx.Length, 64));
    }

    static double Gaussian(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    /// <summary>
    /// Multinomial logistic regression on frozen features (standardized with the training mean and std), full-batch
    /// AdamW; returns (train, test) accuracy.
    /// </summary>
    static (double Train, double Test) Probe(Tensor fTrain, Tensor yTrain, Tensor fTest, Tensor yTest, SslOptions o)
    {
        fTrain = fTrain.Detach(); fTest = fTest.Detach();
        var mean = fTrain.Mean(0, keepDim: true);
        var std = fTrain.Std(0, keepDim: true) + 1e-6;
        var a = (fTrain - mean) / std; var b = (fTest - mean) / std;
        var head = new Linear(a.Shape[1], 10, generator: new Generator(o.Seed + 99));
        var opt = new AdamW(head.Parameters(), 1e-2, weightDecay: 1e-3);
        for (int i = 0; i < o.ProbeSteps; i++)
        {
            var loss = Losses.CrossEntropy(head.Call(a), yTrain);
            opt.ZeroGrad();
            loss.Backward();
            opt.Step();
        }
        using var _ = Autograd.NoGrad();
        double Acc(Tensor f, Tensor y) => head.Call(f).ArgMax(1).Eq(y).To(DType.Float64).Mean().Item();
        return (Acc(a, yTrain), Acc(b, yTest));
    }
}
