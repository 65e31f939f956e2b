using System.Diagnostics;
using Kiln.Methods.Reward;

namespace Kiln.Cli;

/// <summary>The reward-model tour step: stage-1 recovery of the odd link with and without reward weighting, then
/// unweighted and label-weighted readouts deployed as tilted policies.</summary>
public static class RewardTour
{
    public static bool Run(Device device)
    {
        var sw = Stopwatch.StartNew();
        var f = new[] { double.PositiveInfinity, 0.125 }.Select(b => RewardExperiments.Features(new FeatureSetting
        {
            Link = Link.Odd3, D = 32, N = 64 * 32, Neurons = 128, Seed = 0, Options = new FeatureLearningOptions { Beta1 = b }, Device = device,
        })).ToArray();
        Console.Error.WriteLine($"  odd3 link, d = 32, n = 64 d, 128 neurons, one reward-weighted giant step: recovered {f[0].Recovered:P0} unweighted, {f[1].Recovered:P0} at beta1 = 1/8");
        var r = RewardExperiments.Readout(new ReadoutSetting
        {
            Link = Link.Tanh, D = 8, Neurons = 32, FeatureSamples = 1024, N = 1000, Seed = 0, Tilt = new TiltOptions { Samples = 1 << 15, Device = device }, Device = device,
        }, [1, 0.25], [Weighting.Unweighted, Weighting.Label]);
        foreach (var row in r)
            Console.Error.WriteLine($"  tanh link, d = 8, n = 1000, {row.Weighting,-10} readout at beta2 = {row.Beta2,-4}: realized E[r*] {row.Realized:F3} of oracle {row.Oracle:F3}, gap {row.Gap:F4}");
        Console.Error.WriteLine($"  {sw.Elapsed.TotalSeconds:F1} s");
        return f[1].Recovered > f[0].Recovered && r.All(x => x.Gap >= -1e-3 && x.Realized > x.Base);
    }
}
