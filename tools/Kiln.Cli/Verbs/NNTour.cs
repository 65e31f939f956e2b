using System.Diagnostics;
using Kiln.IO;
using Kiln.NN;

namespace Kiln.Cli;

/// <summary>The NN tour step: an MLP on the embedded handwritten digits (UCI, 1797 8x8 images), trained with AdamW,
/// a cosine schedule, dropout and gradient clipping on a fixed 80/20 split; prints held-out accuracy and throughput.</summary>
public static class NNTour
{
    public static bool Run(Device device)
    {
        const int epochs = 30, batch = 64, testCount = 360;
        var (pixels, labels) = Datasets.Digits();
        var (x, y) = ((pixels / 16.0).To(device), labels.To(device));   // grey levels 0..16 to [0, 1]
        var ((xTrain, yTrain), (xTest, yTest)) = Datasets.TrainTestSplit(x, y, testFraction: testCount / (double)y.Numel, seed: 2026);
        int trainCount = yTrain.Numel;
        var g = new Generator(2026);

        var model = new MLP([64, 256, 128, 10], ActivationKind.Relu, dropout: 0.1, generator: g, device: device);
        int stepsPerEpoch = (trainCount + batch - 1) / batch, total = epochs * stepsPerEpoch;
        var opt = new AdamW(model.Parameters(), 3e-3, weightDecay: 1e-4) { Schedule = LrSchedule.Cosine(3e-3, total, warmup: 20) };
        var sw = Stopwatch.StartNew();
        double lastLoss = Cli.Progress("training", epochs, report =>
        {
            double loss = 0;
            for (int e = 0; e < epochs; e++)
            {
                var order = Tensor.RandPerm(trainCount, g, device);
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
