using System.Diagnostics;
using Kiln;

namespace Kiln.Cli;

/// <summary>The core's tour step: a softmax-regression classifier on generated, linearly separable data, trained with
/// autodiff and plain gradient descent; prints accuracy and throughput.</summary>
public static class CoreTour
{
    public static bool Run(Device device)
    {
        const int n = 4096, d = 32, classes = 4, steps = 200;
        var g = new Generator(7);
        var trueW = Tensor.Randn([d, classes], g, device: device);
        var x = Tensor.Randn([n, d], g, device: device);
        var y = x.MatMul(trueW).ArgMax(axis: 1);
        var w = Tensor.Zeros([d, classes], device: device).RequiresGrad_();
        var b = Tensor.Zeros([classes], device: device).RequiresGrad_();
        var oneHot = y.OneHot(classes);
        var sw = Stopwatch.StartNew();
        double loss = 0;
        for (int s = 0; s < steps; s++)
        {
            using var scope = Tensor.Scope();
            var logp = (x.MatMul(w) + b).LogSoftmax(-1);
            var l = -(logp * oneHot).Sum() / n;
            l.Backward();
            using (Autograd.NoGrad())
            {
                w.Sub_(w.Grad! * 0.5);
                b.Sub_(b.Grad! * 0.5);
            }
            w.Grad = null; b.Grad = null;
            loss = l.Item();
        }
        double seconds = sw.Elapsed.TotalSeconds;
        double acc;
        using (Autograd.NoGrad()) acc = (x.MatMul(w) + b).ArgMax(axis: 1).Eq(y).To(DType.Float32).Mean().Item();
        Console.Error.WriteLine($"  {n} samples x {d} features, {classes} classes, {steps} full-batch steps: loss {loss:F4}, train accuracy {acc:P1}");
        Console.Error.WriteLine($"  {seconds:F2} s, {n * (double)steps / seconds:N0} samples/s (forward + backward + update)");
        return acc > 0.9;
    }
}
