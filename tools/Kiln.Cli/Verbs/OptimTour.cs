using Kiln.NN;
using Kiln.NN.Optim;

namespace Kiln.Cli;

/// <summary>The optimizer tour step: the digits MLP from one initialisation stepped by AdamW, SOAP and Lion (Kiln.NN.Optim),
/// 120 steps each; prints each one's training and held-out loss, time per step and state size.</summary>
public static class OptimTour
{
    public static bool Run(Device device)
    {
        const int steps = 120;
        var task = ComparisonTask.DigitsMlp(device: device);
        OptimizerCandidate[] candidates =
        [
            new("adamw", [1e-2], (g, lr) => new AdamW(g, lr)),
            new("soap", [1e-2], (g, lr) => new SOAP(g, lr)),
            new("lion", [3e-3], (g, lr) => new Lion(g, lr)),
        ];
        var results = Cli.Progress("training", candidates.Length, report => OptimizerComparison.Run(task, candidates, steps, evalEvery: steps, progress: report));
        double start = results[0].Curve[0].Loss;
        Console.Error.WriteLine($"  MLP 64-64-10 on the digits, one initialisation (training loss {start:F3}), {steps} steps, warmup then cosine decay");
        foreach (var r in results)
            Console.Error.WriteLine($"  {r.Optimizer,-6} lr {r.LearningRate:G2}: training loss {r.FinalLoss:F4}, held-out {r.HeldOutLoss:F4}, " +
                $"{r.SecondsPerStep * 1000:F2} ms/step, {r.StateBytesPerParameter:F1} state bytes/parameter");
        Console.Error.WriteLine("  all optimizers side by side: kiln optim compare [--task lm] [--plot curves.png]");
        return results.All(r => r.FinalLoss < start / 4);
    }
}
