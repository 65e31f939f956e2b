using System.Diagnostics;
using Kiln.IO;
using Kiln.Methods.Smoothing;
using Kiln.NN;

namespace Kiln.Methods.Certification;

/// <summary>Settings of <see cref="CertificationExperiment.Run"/>.</summary>
public sealed record CertificationOptions
{
    /// <summary>The noise levels sigma; one MLP is trained with Gaussian augmentation per sigma.</summary>
    public IReadOnlyList<double> Sigmas { get; init; } = [0.25, 0.5];
    /// <summary>The MLP's hidden width (64 -&gt; h -&gt; h -&gt; 10).</summary>
    public int Hidden { get; init; } = 128;
    /// <summary>Training epochs.</summary>
    public int Epochs { get; init; } = 30;
    /// <summary>Minibatch size.</summary>
    public int BatchSize { get; init; } = 64;
    /// <summary>The AdamW learning rate.</summary>
    public double LearningRate { get; init; } = 3e-3;
    /// <summary>Test points certified (the first of the fixed split); all 450 by default.</summary>
    public int TestPoints { get; init; } = 450;
    /// <summary>Selection samples n0.</summary>
    public int N0 { get; init; } = 100;
    /// <summary>Estimation samples n.</summary>
    public int N { get; init; } = 1000;
    /// <summary>The failure probability alpha of each certificate.</summary>
    public double Alpha { get; init; } = 0.001;
    /// <summary>The softmax temperature of the Lipschitz-variance-margin scores.</summary>
    public double Temperature { get; init; } = 0.25;
    /// <summary>The device of the tensor work (the CPU by default).</summary>
    public Device? Device { get; init; }
}

/// <summary>One certified model and method: the certificates of the test points and the time they took.</summary>
/// <param name="Method">"cohen" or "lvm".</param>
/// <param name="Sigma">The noise level.</param>
/// <param name="BaseAccuracy">The base MLP's clean test accuracy.</param>
/// <param name="Result">The certificates (natural accuracy, CA(r), ACR).</param>
/// <param name="Seconds">Certification time.</param>
public sealed record CertificationRow(string Method, double Sigma, double BaseAccuracy, CertificationResult Result, double Seconds);

/// <summary>The experiment's result: split sizes and one row per sigma and method.</summary>
public sealed record CertificationExperimentResult(CertificationOptions Options, int TrainSize, int TestSize, IReadOnlyList<CertificationRow> Rows);

/// <summary>
/// Certified accuracy against l2 radius for a small MLP on the UCI digits (pixels / 16, the fixed 75/25 split):
/// per sigma an MLP trained on Gaussian-augmented inputs (Cohen et al.), certified with Cohen's vote certificate and the
/// Lipschitz-variance-margin certificate from the same samples budget.
/// </summary>
public static class CertificationExperiment
{
    /// <summary>Runs the experiment; <paramref name="progress"/> gets (steps done, total).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size or rate is not positive, or alpha is outside (0, 1).</exception>
    public static CertificationExperimentResult Run(CertificationOptions options, Action<int, int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        foreach (var (v, name) in new[] { (options.Hidden, "Hidden"), (options.Epochs, "Epochs"), (options.BatchSize, "BatchSize"), (options.TestPoints, "TestPoints"), (options.N0, "N0"), (options.N - 1, "N - 1") })
            ArgumentOutOfRangeException.ThrowIfLessThan(v, 1, name);
        if (options.Sigmas.Count == 0 || options.Sigmas.Any(s => !(s > 0) || double.IsInfinity(s))) throw new ArgumentOutOfRangeException("Sigmas", string.Join(", ", options.Sigmas), "certify: sigmas must be a non-empty list of positive finite numbers");
        if (!(options.LearningRate > 0) || double.IsInfinity(options.LearningRate)) throw new ArgumentOutOfRangeException("LearningRate", options.LearningRate, "certify: the learning rate must be positive and finite");
        if (!(options.Alpha > 0 && options.Alpha < 1)) throw new ArgumentOutOfRangeException("Alpha", options.Alpha, "certify: alpha must be in (0, 1)");
        var device = options.Device ?? Device.Cpu;
        var (x, y) = Datasets.Digits();
        var ((xTrain, yTrain), (xTest, yTest)) = Datasets.TrainTestSplit((x / 16.0).To(DType.Float64), y, 0.25, seed: 0);
        int m = Math.Min(options.TestPoints, xTest.Shape[0]);
        xTrain = xTrain.To(device); yTrain = yTrain.To(device);
        var xCert = xTest.Narrow(0, 0, m).To(device);
        var labels = yTest.Narrow(0, 0, m).ToArray<long>().Select(v => (int)v).ToArray();
        var rows = new List<CertificationRow>();
        int total = options.Sigmas.Count * 3, done = 0;
        foreach (double sigma in options.Sigmas)
        {
            var model = new MLP([64, options.Hidden, options.Hidden, 10], generator: new Generator(1), dtype: DType.Float64, device: device);
            TrainNoisy(model, xTrain, yTrain, sigma, options);
            double baseAcc = Adversarial.Correct(model.Call, xTest.To(device), yTest.To(device)).Average(c => c ? 1.0 : 0.0);
            progress?.Invoke(++done, total);
            var noise = Noise.Gaussian(sigma);
            var sw = Stopwatch.StartNew();
            var cohen = RandomizedSmoothing.Cohen(model.Call, xCert, noise, options.N0, options.N, options.Alpha, new Generator(7));
            rows.Add(new CertificationRow("cohen", sigma, baseAcc, new CertificationResult(cohen, labels), sw.Elapsed.TotalSeconds));
            progress?.Invoke(++done, total);
            sw.Restart();
            var lvm = RandomizedSmoothing.LipschitzVarianceMargin(model.Call, xCert, noise, options.Temperature, options.N0, options.N, options.Alpha, generator: new Generator(7));
            rows.Add(new CertificationRow("lvm", sigma, baseAcc, new CertificationResult(lvm, labels), sw.Elapsed.TotalSeconds));
            progress?.Invoke(++done, total);
        }
        return new CertificationExperimentResult(options, xTrain.Shape[0], m, rows);
    }

    // AdamW on minibatches with fresh Gaussian noise on every input (Cohen et al.'s training); order fixed by seed.
    static void TrainNoisy(MLP model, Tensor xTrain, Tensor yTrain, double sigma, CertificationOptions o)
    {
        var opt = new AdamW(model.Parameters(), o.LearningRate, weightDecay: 0);
        var gen = new Generator(2);
        int n = xTrain.Shape[0], d = xTrain.Shape[1];
        for (int e = 0; e < o.Epochs; e++)
        {
            var perm = Tensor.RandPerm(n, gen).To(xTrain.Device);
            for (int start = 0; start < n; start += o.BatchSize)
            {
                var idx = perm.Narrow(0, start, Math.Min(o.BatchSize, n - start));
                var xb = xTrain.IndexSelect(0, idx);
                xb += Noise.Gaussian(sigma).Sample(xb.Shape, gen, xb.Device);
                opt.ZeroGrad();
                Losses.CrossEntropy(model.Call(xb), yTrain.IndexSelect(0, idx)).Backward();
                opt.Step();
            }
        }
    }
}
