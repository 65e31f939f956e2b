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

    /// <summary>Radius of the series Σ c_n τⁿ by the root test: 1 / max |c_n|^(1/n) over the last coefficients.</summary>
    static double RootTestRadius(double[] c, int window)
    {
        double best = 0;
        for (int n = c.Length - window; n < c.Length; n++) best = Math.Max(best, Math.Pow(Math.Abs(c[n]), 1.0 / n));
        return 1 / best;
    }

    /// <summary>
    /// Taylor coefficients in τ of d/dτ of the cross-entropy along z_k + τ a_k: Z'/Z - a_y with Z = Σ exp(z_k + τ a_k),
    /// by power-series division (the constant -a_y only changes c_0). Its poles are the zeros of Z.
    /// </summary>
    static double[] LossSlopeSeries(double[] z, double[] a, int terms)
    {
        double zmax = z.Max();
        var zs = new double[terms + 1];
        for (int k = 0; k < z.Length; k++)
        {
            double term = Math.Exp(z[k] - zmax);
            for (int n = 0; n <= terms; n++) { zs[n] += term; term *= a[k] / (n + 1); }
        }
        var q = new double[terms];
        for (int n = 0; n < terms; n++)
        {
            double s = (n + 1) * zs[n + 1];
            for (int k = 1; k <= n; k++) s -= zs[k] * q[n - k];
            q[n] = s / zs[0];
        }
        return q;
    }

    [Fact]
    public void Softmax_binary_radius_is_the_branch_point_distance()
    {
        Props.Check(from seed in TensorGen.Seed select seed, seed =>
        {
            var r = new Random(seed);
            double delta = -4 + 8 * r.NextDouble(), a = (0.5 + 2.5 * r.NextDouble()) * (r.Next(2) == 0 ? -1 : 1);
            double exact = Math.Sqrt(delta * delta + Math.PI * Math.PI) / Math.Abs(a);
            Assert.Equal(exact, SoftmaxStepRadius.Binary(delta, a));
            // log(1 + e^(-z)) is the two-class cross-entropy with logits (z, 0) and label 0.
            double estimate = RootTestRadius(LossSlopeSeries([delta, 0], [a, 0], 160), 40);
            Assert.True(Math.Abs(estimate / exact - 1) < 0.02, $"δ = {delta}, a = {a}: exact {exact}, root test {estimate}");
            Assert.Equal(exact, SoftmaxStepRadius.Binary(Tensor.FromArray(new[] { delta, 10.0 }), Tensor.FromArray(new[] { a, a })));
        });
        Assert.Equal(double.PositiveInfinity, SoftmaxStepRadius.Binary(1.0, 0.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => SoftmaxStepRadius.Binary(double.NaN, 1.0));
        Assert.Throws<ShapeMismatchException>(() => SoftmaxStepRadius.Binary(Tensor.Ones(new Shape(2)), Tensor.Ones(new Shape(3))));
    }

    [Fact]
    public void Softmax_multiclass_bound_is_below_the_numerical_radius()
    {
        Props.Check(from classes in G.Choose(2, 8) from seed in TensorGen.Seed select (classes, seed), c =>
        {
            var (classes, seed) = c;
            var r = new Random(seed);
            var z = Uniform(r, classes, -3, 3);
            var a = Uniform(r, classes, -2, 2);
            a[0] = -1; a[1] = 1; // Δa ≥ 2 keeps the radius small enough for float64 coefficients
            double spread = a.Max() - a.Min();
            double bound = SoftmaxStepRadius.Multiclass(a);
            Assert.Equal(Math.PI / spread, bound);
            double estimate = RootTestRadius(LossSlopeSeries(z, a, 160), 40);
            Assert.True(bound <= estimate * 1.02, $"π/Δa = {bound} above the root-test radius {estimate}");
            var rows = Tensor.FromArray(a.Concat(a.Select(x => x / 2)).ToArray(), new Shape(2, classes));
            Assert.Equal(bound, SoftmaxStepRadius.Multiclass(rows));
        });
        // Two classes with equal logits: the bound is the exact radius √(0 + π²)/Δa.
        double tight = RootTestRadius(LossSlopeSeries([0.7, 0.7], [-1, 1], 160), 40);
        Assert.True(Math.Abs(tight / SoftmaxStepRadius.Multiclass([-1.0, 1.0]) - 1) < 0.02, $"root test {tight}");
        Assert.Equal(double.PositiveInfinity, SoftmaxStepRadius.Multiclass([0.5, 0.5]));
        Assert.Throws<ArgumentException>(() => SoftmaxStepRadius.Multiclass(Array.Empty<double>()));
        Assert.Throws<ArgumentException>(() => SoftmaxStepRadius.Multiclass(Tensor.Ones(new Shape(3, 0))));
    }

    [Fact]
    public void Softmax_logit_slopes_by_jvp_match_finite_differences_and_the_controller_clamps()
    {
        Props.Check(from n in G.Choose(1, 5) from classes in G.Choose(1, 4) from seed in TensorGen.Seed select (n, classes, seed), c =>
        {
            var (n, classes, seed) = c;
            var r = new Random(seed);
            var m = Tensor.FromArray(Uniform(r, classes * n), new Shape(classes, n));
            double[] x0 = Uniform(r, n), v = Uniform(r, n);
            Tensor Logits(Tensor x) => m.MatMul(x.Tanh());
            var slopes = SoftmaxStepRadius.LogitSlopes(Logits, Tensor.FromArray(x0), Tensor.FromArray(v)).ToDoubleArray();
            const double h = 1e-5;
            var plus = Logits(Tensor.FromArray(x0.Select((x, i) => x + h * v[i]).ToArray())).ToDoubleArray();
            var minus = Logits(Tensor.FromArray(x0.Select((x, i) => x - h * v[i]).ToArray())).ToDoubleArray();
            for (int k = 0; k < classes; k++) Assert.True(Math.Abs(slopes[k] - (plus[k] - minus[k]) / (2 * h)) < 1e-8, $"a_{k}: jvp {slopes[k]}, fd {(plus[k] - minus[k]) / (2 * h)}");
            double radius = SoftmaxStepRadius.Multiclass(slopes);
            double step = SoftmaxStepRadius.Controlled(10.0, radius, 0.5);
            Assert.Equal(Math.Min(10.0, 0.5 * radius), step);
        });
        Assert.Equal(0.1, SoftmaxStepRadius.Controlled(0.1, 2.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => SoftmaxStepRadius.Controlled(0.1, 2.0, 1.5));
        Assert.Throws<ShapeMismatchException>(() => SoftmaxStepRadius.LogitSlopes(x => x, Tensor.Ones(new Shape(2)), Tensor.Ones(new Shape(3))));
    }
}
