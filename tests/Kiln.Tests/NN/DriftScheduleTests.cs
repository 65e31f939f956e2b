using Kiln.NN;
using Kiln.NN.Optim;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests.NN;

/// <summary>
/// The drift schedule: its exact expected regret beats constant and c/t schedules, a Monte Carlo simulation of SGD on a
/// drifting regression agrees with the recursion it is built on (and ranks the schedules the same way), without drift
/// it decays like 1/t, with drift it settles at a rate that grows with the drift.
/// </summary>
public class DriftScheduleTests
{
    [Fact]
    public void The_schedule_has_lower_expected_regret_than_constant_and_inverse_time_schedules()
    {
        Props.Check(from d in G.Choose(1, 20) from seed in TensorGen.Seed select (d, seed), c =>
        {
            var (d, seed) = c;
            var r = new Random(seed);
            double s2 = 0.2 + 2 * r.NextDouble(), noise = 0.01 + r.NextDouble(), drift = r.NextDouble() < 0.3 ? 0 : 1e-4 * Math.Exp(4 * r.NextDouble());
            var sched = new DriftSchedule(d, noise, drift, 0.1 + 5 * r.NextDouble(), s2);
            int steps = 50 + r.Next(400);
            double best = sched.ExpectedRegret(sched.At, steps);
            double unit = 1 / ((d + 2) * s2);
            foreach (double k in new[] { 0.01, 0.03, 0.1, 0.3, 0.5, 1, 1.5 })
            {
                Assert.True(best < sched.ExpectedRegret(_ => k * unit, steps));
                foreach (int t0 in new[] { 1, 5, 20 }) Assert.True(best < sched.ExpectedRegret(t => k * unit * t0 / (t + t0), steps));
            }
            // The recursion's own error at each step is what ExpectedRegret sums.
            Assert.Equal(Enumerable.Range(0, steps).Sum(t => s2 * sched.ExpectedError(t)), best, 1e-9);
        });
    }

    /// <summary>SGD on the drifting regression, averaged over runs: the mean regret per step of each schedule.</summary>
    static double[] Simulate(int d, double s2, double noise, double drift, double e0, Func<int, double> rate, int steps, int runs, int seed)
    {
        var r = new Random(seed);
        var perStep = new double[steps];
        double Normal() => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());
        var w = new double[d]; var theta = new double[d]; var x = new double[d];
        for (int run = 0; run < runs; run++)
        {
            for (int j = 0; j < d; j++) { w[j] = 0; theta[j] = Math.Sqrt(e0 / d) * Normal(); }
            for (int t = 0; t < steps; t++)
            {
                double pred = 0, truth = 0;
                for (int j = 0; j < d; j++) { x[j] = Math.Sqrt(s2) * Normal(); pred += x[j] * w[j]; truth += x[j] * theta[j]; }
                perStep[t] += (pred - truth) * (pred - truth) / runs;
                double resid = pred - truth - Math.Sqrt(noise) * Normal(), eta = rate(t);
                for (int j = 0; j < d; j++) { w[j] -= eta * x[j] * resid; theta[j] += Math.Sqrt(drift) * Normal(); }
            }
        }
        return perStep;
    }

    [Fact]
    public void Simulated_sgd_on_a_drifting_regression_follows_the_recursion_and_ranks_the_schedules_alike()
    {
        const int d = 5, steps = 300, runs = 600;
        const double s2 = 1, noise = 0.25, drift = 0.002, e0 = 4;
        var sched = new DriftSchedule(d, noise, drift, e0, s2);
        var schedules = new (string Name, Func<int, double> Rate)[]
        {
            ("drift", sched.At), ("constant", _ => 0.05), ("constant-small", _ => 0.02), ("1/t", t => 1 / ((d + 2.0) * (t + 1))),
        };
        var simulated = schedules.Select((s, i) => Simulate(d, s2, noise, drift, e0, s.Rate, steps, runs, 100 + i).Sum()).ToArray();
        var exact = schedules.Select(s => sched.ExpectedRegret(s.Rate, steps)).ToArray();
        for (int i = 0; i < schedules.Length; i++)
            Assert.True(Math.Abs(simulated[i] - exact[i]) < 0.05 * exact[i], $"{schedules[i].Name}: simulated {simulated[i]}, recursion {exact[i]}");
        for (int i = 1; i < schedules.Length; i++)
            Assert.True(simulated[0] < simulated[i], $"drift schedule {simulated[0]} vs {schedules[i].Name} {simulated[i]}");
    }

    [Fact]
    public void Kiln_sgd_with_the_schedule_takes_its_rates()
    {
        var sched = new DriftSchedule(3, 0.5, 0.01, 2);
        var w = new Parameter(Tensor.Zeros(new Shape(3), DType.Float64));
        var opt = new SGD([w], 1) { Schedule = sched };
        var expected = new double[3];
        var r = new Random(7);
        for (int t = 0; t < 20; t++)
        {
            var g = Dense.Uniform(r, 3);
            w.Grad = Tensor.FromArray((double[])g.Clone());
            opt.Step();
            for (int j = 0; j < 3; j++) expected[j] -= sched.At(t) * g[j];
            Assert.True(Dense.MaxDiff(expected, w.Value.ToArray<double>()) < 1e-14);
        }
    }

    [Fact]
    public void Without_drift_the_rate_decays_as_one_over_t_and_with_drift_it_settles_higher_for_more_drift()
    {
        var still = new DriftSchedule(4, 0.3, 0, 3);
        for (int t = 1; t < 4000; t++) Assert.True(still.At(t) < still.At(t - 1));
        Assert.Equal(0.0, still.StationaryRate);
        // e_(t+1) ≈ e_t − s² e_t²/(d σ²) for small e_t, so e_t ≈ d σ²/(s² t) and t η_t → 1/s² (here s² = 1).
        Assert.InRange(4000 * still.At(4000), 0.97, 1.03);
        Assert.True(Math.Abs(1 - 4000 * still.At(4000)) < Math.Abs(1 - 1000 * still.At(1000)));
        double previous = 0;
        foreach (double drift in new[] { 1e-5, 1e-4, 1e-3, 1e-2 })
        {
            var moving = new DriftSchedule(4, 0.3, drift, 3);
            Assert.Equal(moving.StationaryRate, moving.At(20000), 1e-9);
            Assert.True(moving.StationaryRate > previous);
            previous = moving.StationaryRate;
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => new DriftSchedule(0, 1, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DriftSchedule(2, -1, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DriftSchedule(2, 1, double.NaN, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DriftSchedule(2, 1, 0, 0));
    }
}
