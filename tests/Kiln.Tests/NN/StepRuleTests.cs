using Kiln.NN;
using Kiln.NN.Optim;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests.NN;

/// <summary>
/// Step-size rules and analysis tools: the refined schedule, the softmax safe step radius, large-step logistic
/// regression, generalised implicit FTRL and greedy coordinate descent, each against a float64 transcription written
/// here and the paper's identities.
/// </summary>
public class StepRuleTests
{
    static double[] Uniform(Random r, int len, double lo = -1, double hi = 1) => Enumerable.Range(0, len).Select(_ => lo + (hi - lo) * r.NextDouble()).ToArray();

    [Fact]
    public void Refined_schedule_is_linear_decay_for_constant_norms()
    {
        Props.Check(from t in G.Choose(2, 40) from seed in TensorGen.Seed select (t, seed), c =>
        {
            var (t, seed) = c;
            var r = new Random(seed);
            double norm = 0.01 + 10 * r.NextDouble(), lr = r.NextDouble();
            var norms = Enumerable.Repeat(norm, t).ToArray();
            Assert.Equal(Enumerable.Range(0, t).Select(k => (t - 1 - k) / (double)(t - 1)), RefinedSchedule.Multipliers(norms));
            var s = new RefinedSchedule(norms, lr);
            for (int k = 0; k < t; k++) Assert.Equal(lr * ((t - 1 - k) / (double)(t - 1)), s.At(k));
            Assert.Equal(0.0, s.At(t + 3));
        });
    }

    [Fact]
    public void Refined_schedule_matches_its_transcription_and_a_golden_case()
    {
        // Norms [1, 2, 1, 0.5]: w = [1, 1/4, 1, 4], η = [1·5.25, 0.25·5, 1·4, 0], peak 5.25.
        Assert.Equal([1.0, 1.25 / 5.25, 4 / 5.25, 0.0], RefinedSchedule.Multipliers([1, 2, 1, 0.5]));
        // A median filter of 3 turns [1, 9, 1, 1, 9] into [5, 1, 1, 1, 5] (ends: the mean of the two values covered).
        Assert.Equal([5.0, 1, 1, 1, 5], RefinedSchedule.MedianFilter([1, 9, 1, 1, 9], 3));
        Props.Check(from t in G.Choose(2, 30) from win in G.Elements(1, 3, 5) from seed in TensorGen.Seed select (t, win, seed), c =>
        {
            var (t, win, seed) = c;
            var r = new Random(seed);
            var norms = Uniform(r, t, 0.1, 3);
            var smooth = new double[t];
            for (int i = 0; i < t; i++)
            {
                var v = new List<double>();
                for (int j = i - win / 2; j <= i + win / 2; j++) if (j >= 0 && j < t) v.Add(norms[j]);
                v.Sort();
                smooth[i] = v.Count % 2 == 1 ? v[v.Count / 2] : 0.5 * (v[v.Count / 2 - 1] + v[v.Count / 2]);
            }
            var eta = new double[t];
            for (int i = 0; i < t; i++)
            {
                double sum = 0;
                for (int p = i + 1; p < t; p++) sum += 1 / (smooth[p] * smooth[p]);
                eta[i] = sum / (smooth[i] * smooth[i]);
            }
            double max = eta.Max();
            var s = new RefinedSchedule(norms, 0.3, win);
            for (int i = 0; i < t; i++) Assert.True(Math.Abs(0.3 * eta[i] / max - s.At(i)) <= 1e-13, $"step {i}: {s.At(i)} vs {0.3 * eta[i] / max}");
            Assert.Equal(0.0, s.At(t - 1));
            Assert.Equal(0.3, s.Rates.Max());
        });
        // Rising then falling norms give a warm-up (rates grow) and a fast final anneal.
        var warm = RefinedSchedule.Multipliers([5, 4, 3, 2, 1, 1, 1, 1]);
        Assert.True(warm[0] < warm[1] && warm[1] < warm[2], "large early norms give a warm-up");
        Assert.Throws<ArgumentException>(() => new RefinedSchedule([1.0], 0.1));
        Assert.Throws<ArgumentException>(() => new RefinedSchedule([1.0, 0.0], 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RefinedSchedule([1.0, 2.0], 0.1, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RefinedSchedule([1.0, 2.0], double.NaN));
    }
}
