using System.Diagnostics;
using Kiln.IO;
using Kiln.NN;

namespace Kiln.Cli;

/// <summary>The CNN tour step: a small convolutional network on the embedded 8x8 digits (strided convolutions instead
/// of pooling), trained with AdamW and a cosine schedule on the NN step's 80/20 split; prints held-out accuracy and throughput.</summary>
public static class CnnTour
{
    sealed class Net : Module<Tensor, Tensor>
    {
        readonly Conv2d _c1, _c2, _c3;
        readonly Linear _head;

        public Net(Generator g, Device device)
        {
            _c1 = RegisterModule("c1", new Conv2d(1, 16, 3, padding: 1, generator: g, device: device));             // 16 x 8 x 8
            _c2 = RegisterModule("c2", new Conv2d(16, 32, 3, stride: 2, padding: 1, generator: g, device: device));  // 32 x 4 x 4
            _c3 = RegisterModule("c3", new Conv2d(32, 32, 3, stride: 2, padding: 1, generator: g, device: device));  // 32 x 2 x 2
            _head = RegisterModule("head", new Linear(128, 10, generator: g, device: device));
        }

        public override Tensor Forward(Tensor x)
        {
            var h = _c3.Forward(_c2.Forward(_c1.Forward(x).Relu()).Relu()).Relu();
            return _head.Forward(h.Reshape(h.Shape[0], 128));
        }
    }

    public static bool Run(Device device)
    {
        const int epochs = 16, batch = 64, testCount = 360;
        var (pixels, labels) = Datasets.Digits();
        var (x, y) = ((pixels / 16.0).Reshape(-1, 1, 8, 8).To(device), labels.To(device));
        var ((xTrain, yTrain), (xTest, yTest)) = Datasets.TrainTestSplit(x, y, testFraction: testCount / (double)y.Numel, seed: 2026);
        int trainCount = yTrain.Numel;
        var g = new Generator(2026);
        var model = new Net(g, device);
        int stepsPerEpoch = (trainCount + batch - 1) / batch, total = epochs * stepsPerEpoch;
        var opt = new AdamW(model.Parameters(), 4e-3, weightDecay: 1e-4) { Schedule = LrSchedule.Cosine(4e-3, total, warmup: 20) };
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
                    var l = Losses.CrossEntropy(model.Forward(xTrain.IndexSelect(0, idx)), yTrain.IndexSelect(0, idx), labelSmoothing: 0.1);
                    l.Backward();
                    opt.Step();
                    sum += l.Item();
                }
                loss = sum / stepsPerEpoch;
                report(e + 1);
            }
            return loss;
        });
        double seconds = sw.Elapsed.TotalSeconds;
        double acc;
        using (Autograd.NoGrad()) acc = model.Forward(xTest).ArgMax(axis: 1).Eq(yTest).To(DType.Float32).Mean().Item();
        Console.Error.WriteLine($"  CNN conv3x3(16) - conv3x3/2(32) - conv3x3/2(32) - linear(10), {model.ParameterCount:N0} parameters, AdamW + cosine, label smoothing 0.1, {epochs} epochs of {trainCount} digits, batch {batch}");
        Console.Error.WriteLine($"  final training loss {lastLoss:F4}; held-out accuracy {acc:P1} on {testCount} digits");
        Console.Error.WriteLine($"  {seconds:F2} s, {epochs * (double)trainCount / seconds:N0} samples/s (forward + backward + update)");
        return acc >= 0.97;
    }
}
