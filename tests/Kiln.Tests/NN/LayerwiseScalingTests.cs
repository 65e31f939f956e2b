using Kiln.NN;
using Kiln.NN.Optim;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests.NN;

/// <summary>
/// The layerwise scaling rule's groups, and the AdamW facts it rests on, on a scale-invariant (output-normalised)
/// linear model: (kη, λ/k, kW₀) runs k times the (η, λ, W₀) trajectory, so at steady state the norm of W is
/// proportional to sqrt(η/λ).
/// </summary>
public class LayerwiseScalingTests
{
    [Fact]
    public void Matrices_get_rate_over_width_and_decay_times_root_width_and_vectors_keep_the_base_rate_without_decay()
    {
        Props.Check(from w in G.Choose(1, 4096) from b in G.Choose(1, 4096) from seed in TensorGen.Seed select (w, b, seed), c =>
        {
            var (width, baseWidth, seed) = c;
            var r = new Random(seed);
            double lr = r.NextDouble(), wd = r.NextDouble();
            var m = new Parameter(Tensor.Zeros(new Shape(2, 3))); var conv = new Parameter(Tensor.Zeros(new Shape(2, 1, 3, 3)));
            var gain = new Parameter(Tensor.Zeros(new Shape(3))); var scalar = new Parameter(Tensor.Zeros(new Shape()));
            var groups = LayerwiseScaling.Groups([m, gain, conv, scalar], width, baseWidth, lr, wd);
            Assert.Equal(2, groups.Count);
            Assert.Equal([m, conv], groups[0].Parameters);
            Assert.Equal(1.0, groups[0].LearningRate!.Value * width / (lr * baseWidth), 1e-12);
            Assert.Equal(1.0, groups[0].WeightDecay!.Value / (wd * Math.Sqrt(width / (double)baseWidth)), 1e-12);
            Assert.Equal([gain, scalar], groups[1].Parameters);
            Assert.Equal(lr, groups[1].LearningRate);
            Assert.Equal(0.0, groups[1].WeightDecay);
        });
        Assert.Single(LayerwiseScaling.Groups([new Parameter(Tensor.Zeros(new Shape(3)))], 2, 1, 0.1, 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => LayerwiseScaling.Groups([], 0, 1, 0.1, 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => LayerwiseScaling.Groups([], 1, 1, double.NaN, 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => LayerwiseScaling.Groups([], 1, 1, 0.1, -1));
    }

    /// <summary>
    /// AdamW on rmsnorm(W x) against a normalised random teacher (or, with <paramref name="noiseOnly"/>, a fresh random
    /// target each batch: gradients that are pure noise, so the direction process is stationary from the start); returns
    /// ‖W‖_F after each step.
    /// </summary>
    static double[] Train(int d, double lr, double wd, Tensor w0, int steps, ulong seed, double eps = 1e-8, bool noiseOnly = false, double beta2 = 0.999)
    {
        var gen = new Generator(seed);
        var teacher = Tensor.Randn(new Shape(d, d), gen, dtype: DType.Float64);
        var w = new Parameter(w0.Clone());
        var opt = new AdamW([w], lr, 0.9, beta2, eps, wd);
        var norms = new double[steps];
        for (int t = 0; t < steps; t++)
        {
            using var scope = Tensor.Scope();
            var x = Tensor.Randn(new Shape(16, d), gen, dtype: DType.Float64);
            var y = noiseOnly ? Tensor.Randn(new Shape(16, d), gen, dtype: DType.Float64) : x.MatMul(teacher.T);
            y = y / (y * y).Mean(1, keepDim: true).Sqrt();
            var h = x.MatMul(w.T); var o = h / (h * h).Mean(1, keepDim: true).Sqrt();
            var loss = ((o - y) * (o - y)).Mean();
            opt.ZeroGrad(); loss.Backward(); opt.Step();
            norms[t] = Math.Sqrt((w.Value * w.Value).Sum().Item());
        }
        return norms;
    }

    [Fact]
    public void Scaling_rate_up_and_decay_down_by_k_with_k_times_the_start_scales_the_whole_trajectory_by_k()
    {
        const int d = 8;
        var w0 = Tensor.Randn(new Shape(d, d), new Generator(3), dtype: DType.Float64);
        // eps ≪ √v keeps Adam's step invariant to the gradient's 1/k scale.
        var baseline = Train(d, 0.01, 0.5, w0, 60, 5, eps: 1e-30);
        foreach (double k in new[] { 0.25, 4.0 })
        {
            var scaled = Train(d, 0.01 * k, 0.5 / k, w0 * k, 60, 5, eps: 1e-30);
            for (int t = 0; t < baseline.Length; t++) Assert.Equal(1.0, scaled[t] / (k * baseline[t]), 1e-9);
        }
    }

    [Fact]
    public void At_steady_state_the_norm_is_proportional_to_the_root_of_rate_over_decay()
    {
        const int d = 16, steps = 1200;
        var w0 = Tensor.Randn(new Shape(d, d), new Generator(11), dtype: DType.Float64) * 0.25;
        // η λ = 0.01 throughout (a relaxation time of 1/(2ηλ) = 50 steps); η/λ from 0.0025 to 0.04, 16x.
        var settings = new[] { (0.005, 2.0), (0.01, 1.0), (0.02, 0.5) };
        var scaled = settings.Select(s =>
        {
            var norms = Train(d, s.Item1, s.Item2, w0, steps, 7, noiseOnly: true, beta2: 0.95);
            return norms[(steps / 2)..].Average() / Math.Sqrt(s.Item1 / s.Item2);
        }).ToArray();
        // The start is forgotten after ~12 relaxation times (β₂ = 0.95 keeps v's memory, 20 steps, below that), and the
        // same batches drive every run.
        foreach (double v in scaled) Assert.Equal(1.0, v / scaled[1], 1e-2);
    }
}
