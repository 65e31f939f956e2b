using System.CommandLine;
using System.Diagnostics;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>`kiln tour`: Kiln's main job on embedded defaults. Each method family adds a step to <see cref="Steps"/>.</summary>
public static class TourVerb
{
    /// <summary>One step of the tour: a title and the work on a device, which prints what it did and returns false on a failed check.</summary>
    public sealed record Step(string Title, Func<Device, bool> Run);

    /// <summary>The steps, in order.</summary>
    public static IReadOnlyList<Step> Steps =>
    [
        new("Tensor core: a softmax classifier trained by autodiff", CoreTour.Run),
        new("Neural networks: an MLP learns the handwritten digits", NNTour.Run),
        new("Convolutions: a small CNN learns the handwritten digits", CnnTour.Run),
        new("Optimizers: SOAP and Lion against AdamW on the digits MLP", OptimTour.Run),
        new("Reward models: reward-weighted feature learning and tilted-policy readouts", RewardTour.Run),
        new("Looping: baseline vs naive vs damped loops of a tiny Qwen3-style checkpoint", LoopTour.Run),
        new("Stump smoothing: exact certificates for a decision-stump ensemble (NeurIPS 2022, Table 2 row)", SmoothTour.Run),
    ];

    public static Command Build()
    {
        var device = Cli.DeviceOption();
        var cmd = new Command("tour", "Run Kiln's main job on embedded data: each method family trains or evaluates a small model and prints what it did and how fast") { device };
        cmd.SetAction(p =>
        {
            using var lease = Cli.OpenDevice(p, device);
            var total = Stopwatch.StartNew();
            bool ok = true;
            foreach (var step in Steps)
            {
                Cli.Err.Write(new Rule($"[bold]{Markup.Escape(step.Title)}[/]").LeftJustified());
                ok &= step.Run(lease.Device);
            }
            Cli.Err.MarkupLine($"[bold]tour finished in {total.Elapsed.TotalSeconds:F1} s[/]{(ok ? "" : " [red](a check failed)[/]")}");
            return ok ? 0 : Cli.Failed;
        });
        return cmd;
    }
}
