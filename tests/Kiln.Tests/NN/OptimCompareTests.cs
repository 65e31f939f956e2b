using Kiln.Tests.TestKit;
using System.Text.Json;
using Kiln.Cli;
using Kiln.NN;
using Kiln.NN.Optim;
using Xunit;

namespace Kiln.Tests.NN;

/// <summary>`kiln optim compare --json`'s contract on a few steps of the digits MLP, and the comparison library's bookkeeping.</summary>
[Collection(nameof(SerialCollection))]
public class OptimCompareTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRun.Capture(OptimVerb.Build(), args);

    [Fact]
    public void Compare_json_prints_one_object_per_optimizer_with_its_best_rate_losses_time_and_state_size()
    {
        var (code, stdout, stderr) = Run("optim", "compare", "--json", "--steps", "4", "--optimizers", "adamw,lion,sps,soap");
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length);
        // Float32 state: AdamW keeps m and v (8 B), Lion m (4 B), the Polyak step its second-moment buffer (4 B).
        var expectedBytes = new Dictionary<string, double> { ["adamw"] = 8, ["lion"] = 4, ["sps"] = 4 };
        var names = new List<string>();
        foreach (var line in lines)
        {
            using var doc = JsonDocument.Parse(line);
            var j = doc.RootElement;
            foreach (var key in new[] { "optimizer", "lr", "final_loss", "heldout_loss", "seconds_per_step", "state_bytes_per_param", "sweep" }) Assert.True(j.TryGetProperty(key, out _), key);
            string name = j.GetProperty("optimizer").GetString()!;
            names.Add(name);
            var sweep = j.GetProperty("sweep").EnumerateArray().ToArray();
            Assert.Equal(3, sweep.Length);
            Assert.Contains(sweep, s => s.GetProperty("lr").GetDouble() == j.GetProperty("lr").GetDouble());
            double best = j.GetProperty("final_loss").GetDouble();
            // The reported rate is the sweep's lowest final training loss; 10 classes start near ln 10.
            Assert.All(sweep, s => Assert.True(s.GetProperty("final_loss").ValueKind == JsonValueKind.Null || s.GetProperty("final_loss").GetDouble() >= best));
            Assert.InRange(best, 0.5, 3.0);
            Assert.InRange(j.GetProperty("heldout_loss").GetDouble(), 0.5, 3.0);
            Assert.True(j.GetProperty("seconds_per_step").GetDouble() > 0);
            if (expectedBytes.TryGetValue(name, out double bytes)) Assert.Equal(bytes, j.GetProperty("state_bytes_per_param").GetDouble(), 1e-12);
            else Assert.True(j.GetProperty("state_bytes_per_param").GetDouble() > 8);   // SOAP: Adam's moments plus the bases and statistics
        }
        Assert.Equal(["adamw", "lion", "sps", "soap"], names);
    }

    [Fact]
    public void Compare_rejects_an_unknown_optimizer_and_task_as_bad_usage()
    {
        var (code, _, err) = Run("optim", "compare", "--optimizers", "adamw,nadam");
        Assert.Equal(2, code);
        Assert.Contains("nadam", err);
        Assert.Equal(2, Run("optim", "compare", "--task", "cnn").Code);
    }

    [Fact]
    public void Every_candidate_builds_over_parameter_groups_and_steps_the_mlp()
    {
        var task = ComparisonTask.DigitsMlp(hidden: 8, batch: 16);
        var results = OptimizerComparison.Run(task, [.. OptimizerComparison.Candidates.Select(c => c with { LearningRates = [c.LearningRates[1]] })], steps: 2, evalEvery: 1);
        Assert.Equal(OptimizerComparison.Candidates.Select(c => c.Name), results.Select(r => r.Optimizer));
        foreach (var r in results)
        {
            Assert.Equal([0, 1, 2], r.Curve.Select(c => c.Step));
            Assert.True(double.IsFinite(r.FinalLoss), r.Optimizer);
            Assert.Equal(r.Curve[^1].Loss, r.FinalLoss);
            Assert.Equal(r.Curve[0].Loss, results[0].Curve[0].Loss);   // one initialisation for every optimizer
        }
    }

    [Fact]
    public void Tour_step_trains_the_digits_mlp_with_adamw_soap_and_lion()
    {
        var saved = Console.Error;
        Console.SetError(new StringWriter());
        try { Assert.True(OptimTour.Run(Device.Cpu)); }
        finally { Console.SetError(saved); }
    }

    [Fact]
    public void State_bytes_per_parameter_counts_the_state_buffers_only()
    {
        var p = new Parameter(Tensor.Zeros(3, 5));
        Assert.Equal(8.0, OptimizerComparison.StateBytesPerParameter(new AdamW([p])));
        Assert.Equal(0.0, OptimizerComparison.StateBytesPerParameter(new SGD([p], 0.1)));
        // Shampoo: H and its root per side, (3² + 5²) · 2 floats over 15 elements.
        Assert.Equal((9 + 25) * 2 * 4 / 15.0, OptimizerComparison.StateBytesPerParameter(new Shampoo([p])), 1e-12);
    }
}
