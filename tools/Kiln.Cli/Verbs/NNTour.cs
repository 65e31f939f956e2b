using System.Diagnostics;
using System.Globalization;
using System.IO.Compression;
using Kiln.NN;

namespace Kiln.Cli;

/// <summary>The NN tour step: an MLP on the embedded handwritten digits (UCI, 1797 8x8 images), trained with AdamW,
/// a cosine schedule, dropout and gradient clipping on a fixed 80/20 split; prints held-out accuracy and throughput.</summary>
public static class NNTour
{
    /// <summary>The digits as pixels scaled to [0, 1] ([1797, 64] Float32) and labels ([1797] Int64).</summary>
    public static (Tensor X, Tensor Y) LoadDigits()
    {
        using var raw = typeof(NNTour).Assembly.GetManifestResourceStream("Kiln.Cli.Data.digits.csv.gz")
            ?? throw new InvalidDataException("the embedded digits data set is missing from the kiln executable");
        using var reader = new StreamReader(new GZipStream(raw, CompressionMode.Decompress));
        var pixels = new List<float>();
        var labels = new List<long>();
        string? line;
        while ((line = reader.ReadLine()) is not null)
        {
            if (line.Length == 0) continue;
            var cells = line.Split(',');
            if (cells.Length != 65) throw new InvalidDataException($"digits: row {labels.Count + 1} has {cells.Length} columns, expected 65");
            for (int j = 0; j < 64; j++) pixels.Add(float.Parse(cells[j], CultureInfo.InvariantCulture) / 16f);
            labels.Add(long.Parse(cells[64], CultureInfo.InvariantCulture));
        }
        return (Tensor.FromArray(pixels.ToArray(), [labels.Count, 64]), Tensor.FromArray(labels.ToArray()));
    }

    public static bool Run()
    {
        const int epochs = 30, batch = 64, testCount = 360;
        var (x, y) = LoadDigits();
        int n = y.Numel, trainCount = n - testCount;
        var g = new Generator(2026);
        var perm = Tensor.RandPerm(n, g);
        var xTrain = x.IndexSelect(0, perm.Narrow(0, 0, trainCount)); var yTrain = y.IndexSelect(0, perm.Narrow(0, 0, trainCount));
        var xTest = x.IndexSelect(0, perm.Narrow(0, trainCount, testCount)); var yTest = y.IndexSelect(0, perm.Narrow(0, trainCount, testCount));

        var model = new MLP([64, 256, 128, 10], ActivationKind.Relu, dropout: 0.1, generator: g);
        int stepsPerEpoch = (trainCount + batch - 1) / batch, total = epochs * stepsPerEpoch;
        var opt = new AdamW(model.Parameters(), 3e-3, weightDecay: 1e-4) { Schedule = LrSchedule.Cosine(3e-3, total, warmup: 20) };
        var sw = Stopwatch.StartNew();
        double lastLoss = Cli.Progress("training", epochs, report =>
        {
            double loss = 0;
            for (int e = 0; e < epochs; e++)
            {
                var order = Tensor.RandPerm(trainCount, g);
                double sum = 0;
                for (int s = 0; s < stepsPerEpoch; s++)
                {
                    using var scope = Tensor.Scope();
                    var idx = order.Narrow(0, s * batch, Math.Min(batch, trainCount - s * batch));
                    opt.ZeroGrad();
                    var l = Losses.CrossEntropy(model.Forward(xTrain.IndexSelect(0, idx)), yTrain.IndexSelect(0, idx), labelSmoothing: 0.05);
                    l.Backward();
                    GradClip.ClipGradNorm(model.Parameters(), 5.0);
                    opt.Step();
                    sum += l.Item();
                }
                loss = sum / stepsPerEpoch;
                report(e + 1);
            }
            return loss;
        });
        double seconds = sw.Elapsed.TotalSeconds;
        model.Eval();
        double acc;
        using (Autograd.NoGrad()) acc = model.Forward(xTest).ArgMax(axis: 1).Eq(yTest).To(DType.Float32).Mean().Item();
        Console.Error.WriteLine($"  MLP 64-256-128-10 ({model.ParameterCount:N0} parameters), AdamW + cosine schedule, {epochs} epochs of {trainCount} digits, batch {batch}");
        Console.Error.WriteLine($"  final training loss {lastLoss:F4}; held-out accuracy {acc:P1} on {testCount} digits");
        Console.Error.WriteLine($"  {seconds:F2} s, {epochs * (double)trainCount / seconds:N0} samples/s (forward + backward + update)");
        return acc > 0.95;
    }
}
