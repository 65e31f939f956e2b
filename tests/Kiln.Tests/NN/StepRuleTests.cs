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
    static double[] Uniform(Random r, int len, double lo = -1, double hi = 1) => Dense.Uniform(r, len, lo, hi);

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

    public static IEnumerable<object[]> Cases =>
        from d in Devices.All from dt in new[] { DType.Float32, DType.Float64 } select new object[] { d.ToString(), dt };

    /// <summary>Separable data: labels from a random direction u, each point pushed 0.3 along y u off the hyperplane.</summary>
    static (double[] X, double[] Y) Separable(Random r, int n, int d)
    {
        var u = Uniform(r, d); double norm = Math.Sqrt(u.Sum(z => z * z)) + 1e-12;
        var x = Uniform(r, n * d); var y = new double[n];
        for (int i = 0; i < n; i++)
        {
            double dot = 0; for (int j = 0; j < d; j++) dot += u[j] / norm * x[i * d + j];
            y[i] = dot >= 0 ? 1 : -1;
            for (int j = 0; j < d; j++) x[i * d + j] += 0.3 * y[i] * u[j] / norm;
        }
        return (x, y);
    }

    /// <summary>w + c (1/n) Σ weight(m_i) y_i x_i with m_i = y_i x_iᵀ w, written with loops.</summary>
    static double[] LogisticStepRef(double[] x, double[] y, double[] w, Func<double, double> weight, Func<double[], double> scale)
    {
        int n = y.Length, d = w.Length;
        var m = new double[n];
        for (int i = 0; i < n; i++) { for (int j = 0; j < d; j++) m[i] += x[i * d + j] * w[j]; m[i] *= y[i]; }
        double c = scale(m);
        var next = (double[])w.Clone();
        for (int i = 0; i < n; i++) for (int j = 0; j < d; j++) next[j] += c * weight(m[i]) * y[i] * x[i * d + j] / n;
        return next;
    }

    static double Sigmoid(double z) => 1 / (1 + Math.Exp(-z));
    static double Softplus(double z) => Math.Max(z, 0) + Math.Log(1 + Math.Exp(-Math.Abs(z)));

    [Theory, MemberData(nameof(Cases))]
    public void Logistic_GD_normalized_GD_and_perceptron_steps_match_their_transcription(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, from n in G.Choose(1, 7) from d in G.Choose(1, 4) from seed in TensorGen.Seed select (n, d, seed), c =>
        {
            var (n, d, seed) = c;
            var r = new Random(seed);
            var x = Uniform(r, n * d); var y = Enumerable.Range(0, n).Select(_ => r.Next(2) == 0 ? -1.0 : 1.0).ToArray(); var w = Uniform(r, d, -2, 2);
            double gamma = Math.Pow(10, 3 * r.NextDouble() - 1);
            Tensor T(double[] v, params int[] dims) => Tensor.FromArray(v, new Shape(dims)).To(dt).To(dev);
            Tensor tx = T(x, n, d), ty = T(y, n), tw = T(w, d);
            double tol = dt == DType.Float64 ? 1e-12 : 2e-5;
            void Near(double[] e, Tensor got, string what)
            {
                var a = got.ToDoubleArray();
                for (int j = 0; j < e.Length; j++) Assert.True(Math.Abs(e[j] - a[j]) <= tol * (1 + Math.Abs(e[j])), $"{what}[{j}]: {a[j]} vs {e[j]}");
            }
            Near(LogisticStepRef(x, y, w, m => Sigmoid(-m), _ => gamma), LargeStepLogistic.GradientStep(tx, ty, tw, gamma), "LR+GD");
            Near(LogisticStepRef(x, y, w, m => Sigmoid(-m), m => gamma / m.Average(z => Softplus(-z))), LargeStepLogistic.NormalizedGradientStep(tx, ty, tw, gamma), "normalized LR+GD");
            Near(LogisticStepRef(x, y, w, m => m <= 0 ? 1 : 0, _ => 1), LargeStepLogistic.PerceptronStep(tx, ty, tw), "perceptron");
            Near(LogisticStepRef(x, y, new double[d], m => m < 0 ? 1 : m == 0 ? 0.5 : 0, _ => 1), LargeStepLogistic.PerceptronStep(tx, ty, tw.ZerosLike(), 0.5), "perceptron at ties");
            var margins = new double[n];
            for (int i = 0; i < n; i++) { for (int j = 0; j < d; j++) margins[i] += x[i * d + j] * w[j]; margins[i] *= y[i]; }
            Assert.True(Math.Abs(margins.Average(z => Softplus(-z)) - LargeStepLogistic.Loss(tx, ty, tw).ToDoubleArray()[0]) <= tol * 10, "loss");
        });
    }

    [Theory, MemberData(nameof(Cases))]
    public void Normalized_logistic_step_stays_finite_where_the_loss_underflows(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, from n in G.Choose(1, 7) from d in G.Choose(1, 4) from seed in TensorGen.Seed select (n, d, seed), c =>
        {
            var (n, d, seed) = c;
            var (x, y) = Separable(new Random(seed), n, d);
            // The direction Separable labelled by (its first draw) separates with margins ≥ 0.3; scaled until the smallest
            // is 800-2000, e^(-m) underflows in float64 and float32, so the loss and its gradient are both 0 and only
            // their ratio is defined. There σ(-m) = log(1 + e^(-m)) = e^(-m) to double precision and the step is
            // γ Σ e^(-(m_i - m_min)) y_i x_i / Σ e^(-(m_i - m_min)).
            var w = Uniform(new Random(seed), d);
            var r = new Random(~seed);
            double scale = (800 + 1200 * r.NextDouble()) / Margins(x, y, w).Min();
            w = w.Select(v => v * scale).ToArray();
            var m = Margins(x, y, w);
            double gamma = Math.Pow(10, 2 * r.NextDouble() - 1), mMin = m.Min(), sum = m.Sum(v => Math.Exp(-(v - mMin)));
            var expected = (double[])w.Clone();
            for (int i = 0; i < n; i++) for (int j = 0; j < d; j++) expected[j] += gamma * Math.Exp(-(m[i] - mMin)) * y[i] * x[i * d + j] / sum;
            Tensor T(double[] v, params int[] dims) => Tensor.FromArray(v, new Shape(dims)).To(dt).To(dev);
            var got = LargeStepLogistic.NormalizedGradientStep(T(x, n, d), T(y, n), T(w, d), gamma).ToDoubleArray();
            double tol = dt == DType.Float64 ? 1e-12 : 1e-4;   // float32: margins in the thousands carry errors of ~1e-3
            for (int j = 0; j < d; j++) Assert.True(Math.Abs(got[j] - expected[j]) <= tol * (1 + Math.Abs(expected[j])), $"[{j}]: {got[j]} vs {expected[j]} (smallest margin {mMin})");
        });
    }

    static double[] Margins(double[] x, double[] y, double[] w)
    {
        int n = y.Length, d = w.Length;
        var m = new double[n];
        for (int i = 0; i < n; i++) { for (int j = 0; j < d; j++) m[i] += x[i * d + j] * w[j]; m[i] *= y[i]; }
        return m;
    }

    [Fact]
    public void Logistic_GD_tends_to_the_batch_perceptron_as_gamma_grows()
    {
        int cases = 0, checkedAt1e6 = 0;
        Props.Check(from n in G.Choose(2, 12) from d in G.Choose(1, 4) from seed in TensorGen.Seed select (n, d, seed), c =>
        {
            var (n, d, seed) = c;
            var (x, y) = Separable(new Random(seed), n, d);
            var tx = Tensor.FromArray(x, new Shape(n, d)); var ty = Tensor.FromArray(y);
            static double Cos(double[] a, double[] b)
            {
                double ab = 0, aa = 0, bb = 0;
                for (int j = 0; j < a.Length; j++) { ab += a[j] * b[j]; aa += a[j] * a[j]; bb += b[j] * b[j]; }
                return aa == 0 && bb == 0 ? 1 : ab / Math.Sqrt(aa * bb);
            }
            const int steps = 30;
            var perceptron = new List<double[]>();
            var v = Tensor.Zeros(new Shape(d), DType.Float64);
            // The limit is the perceptron with weight σ(0) = 1/2 at zero margins, which at v_0 = 0 (all tie) halves the
            // first step. μ: the smallest |margin| it steps from after that first step.
            double mu = double.PositiveInfinity;
            for (int t = 0; t < steps; t++)
            {
                if (t > 0) mu = Math.Min(mu, LargeStepLogistic.Margins(tx, ty, v).ToDoubleArray().Min(m => Math.Abs(m)));
                v = LargeStepLogistic.PerceptronStep(tx, ty, v, tieWeight: 0.5);
                perceptron.Add(v.ToDoubleArray());
            }
            cases++;
            // Each point's weight differs from the perceptron's by σ(-γ|m|) ≤ e^(-γ|m|): once γ μ ≥ 40 the directions
            // agree to the tolerance, which shrinks with γ. A margin of exactly 0 (weight 1/2) never converges.
            foreach (var (gamma, tolerance) in new[] { (1e6, 1e-6), (1e8, 1e-12) })
            {
                if (gamma * mu < 40) continue;
                if (gamma == 1e6) checkedAt1e6++;
                var w = Tensor.Zeros(new Shape(d), DType.Float64);
                double worst = 0;
                for (int t = 0; t < steps; t++)
                {
                    w = LargeStepLogistic.GradientStep(tx, ty, w, gamma);
                    worst = Math.Max(worst, 1 - Cos(w.ToDoubleArray(), perceptron[t]));
                }
                Assert.True(worst <= tolerance, $"γ = {gamma}, μ = {mu}: 1 - cos = {worst}");
            }
        });
        Assert.True(checkedAt1e6 * 2 >= cases, $"only {checkedAt1e6} of {cases} cases had γ μ ≥ 40 at γ = 1e6");
    }

    [Fact]
    public void Logistic_GD_normalized_GD_and_perceptron_separate_synthetic_data()
    {
        Props.Check(from n in G.Choose(2, 12) from d in G.Choose(1, 4) from seed in TensorGen.Seed select (n, d, seed), c =>
        {
            var (n, d, seed) = c;
            var (x, y) = Separable(new Random(seed), n, d);
            var tx = Tensor.FromArray(x, new Shape(n, d)); var ty = Tensor.FromArray(y);
            Tensor gd = Tensor.Zeros(new Shape(d), DType.Float64), ngd = gd, p = gd;
            for (int t = 0; t < 300; t++)
            {
                gd = LargeStepLogistic.GradientStep(tx, ty, gd, 1e3);
                ngd = LargeStepLogistic.NormalizedGradientStep(tx, ty, ngd, 1);
                p = LargeStepLogistic.PerceptronStep(tx, ty, p);
            }
            Assert.True(LargeStepLogistic.Separates(tx, ty, gd), "LR+GD (γ = 1000) separates");
            Assert.True(LargeStepLogistic.Separates(tx, ty, ngd), "normalized LR+GD separates");
            Assert.True(LargeStepLogistic.Separates(tx, ty, p), "batch perceptron separates");
        });
        Assert.Throws<ShapeMismatchException>(() => LargeStepLogistic.GradientStep(Tensor.Ones(new Shape(3, 2)), Tensor.Ones(new Shape(2)), Tensor.Ones(new Shape(2)), 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => LargeStepLogistic.GradientStep(Tensor.Ones(new Shape(3, 2)), Tensor.Ones(new Shape(3)), Tensor.Ones(new Shape(2)), 0));
    }

    [Theory, MemberData(nameof(Cases))]
    public void Implicit_FTRL_reproduces_FTRL_on_linear_losses_and_takes_the_closed_form_squared_step(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, from rank in G.Choose(0, 2) from dims in G.ArrayOf(G.Choose(1, 4), rank) from seed in TensorGen.Seed select (dims, seed), c =>
        {
            var (dims, seed) = c;
            var r = new Random(seed);
            var shape = new Shape(dims);
            int len = (int)shape.Numel;
            double eta = Math.Pow(10, 2 * r.NextDouble() - 1), tol = dt == DType.Float64 ? 1e-11 : 1e-4;
            Tensor T(double[] v) => Tensor.FromArray(v, shape).To(dt).To(dev);
            void Near(double[] e, Tensor got, string what)
            {
                var a = got.ToDoubleArray();
                for (int j = 0; j < e.Length; j++) Assert.True(Math.Abs(e[j] - a[j]) <= tol * (1 + Math.Abs(e[j])), $"{what}[{j}]: {a[j]} vs {e[j]}");
            }
            // Linear losses: x_(t+1) = -η Σ g_i for both rules.
            var implicitFtrl = new ImplicitFtrl(shape, eta, FtrlUpdate.Implicit, dt, dev);
            var linearized = new ImplicitFtrl(shape, eta, FtrlUpdate.Linearized, dt, dev);
            var sum = new double[len];
            for (int t = 0; t < 4; t++)
            {
                var g = Uniform(r, len);
                for (int j = 0; j < len; j++) sum[j] += g[j];
                var expected = sum.Select(s => -eta * s).ToArray();
                var a = implicitFtrl.Update(OnlineLoss.Linear(T(g)));
                Near(expected, a, $"implicit, round {t}");
                Assert.Equal(a.ToDoubleArray(), linearized.Update(OnlineLoss.Linear(T(g))).ToDoubleArray());
            }
            // Squared losses: the proximal step x = x̃ - η a (aᵀx̃ - b)/(1 + η‖a‖²), x̃ = -η Σ z_i.
            var ftrl = new ImplicitFtrl(shape, eta, FtrlUpdate.Implicit, dt, dev);
            var z = new double[len];
            for (int t = 0; t < 4; t++)
            {
                var a = Uniform(r, len); double b = 2 * r.NextDouble() - 1;
                var xt = z.Select(s => -eta * s).ToArray();
                double res = -b, aa = 0;
                for (int j = 0; j < len; j++) { res += a[j] * xt[j]; aa += a[j] * a[j]; }
                double scale = res / (1 + eta * aa);
                for (int j = 0; j < len; j++) z[j] += a[j] * scale;
                var next = xt.Select((x, j) => x - eta * a[j] * scale).ToArray();
                var got = ftrl.Update(OnlineLoss.Squared(T(a), b));
                Near(next, got, $"squared, round {t}");
                // Optimality of the implicit step: (x - x̃)/η + a (aᵀx - b) = 0.
                double resNext = -b; for (int j = 0; j < len; j++) resNext += a[j] * next[j];
                for (int j = 0; j < len; j++) Assert.True(Math.Abs((next[j] - xt[j]) / eta + a[j] * resNext) < 1e-12, "prox optimality");
            }
        });
        Assert.Throws<ShapeMismatchException>(() => new ImplicitFtrl(new Shape(2), 1).Update(OnlineLoss.Linear(Tensor.Ones(new Shape(3)))));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ImplicitFtrl(new Shape(2), 0));
    }

    [Fact]
    public void Implicit_FTRL_on_squared_losses_does_not_overshoot_where_the_linearised_step_does()
    {
        // One example with a large η: the linearised step overshoots aᵀx = b, the implicit one stops short of it.
        var a = Tensor.FromArray(new[] { 1.0, 2.0 });
        var lin = new ImplicitFtrl(new Shape(2), 10, FtrlUpdate.Linearized).Update(OnlineLoss.Squared(a, 1));
        var imp = new ImplicitFtrl(new Shape(2), 10, FtrlUpdate.Implicit).Update(OnlineLoss.Squared(a, 1));
        double Fit(Tensor x) => (a * x).Sum().ToDoubleArray()[0];
        Assert.Equal(50.0, Fit(lin));                           // η ‖a‖² b = 10 · 5 · 1
        Assert.True(Math.Abs(50.0 / 51.0 - Fit(imp)) < 1e-14);   // η‖a‖² b/(1 + η‖a‖²)
    }

    [Fact]
    public void Greedy_coordinate_descent_progress_is_exact_and_GSL_beats_GS_and_random()
    {
        Props.Check(from n in G.Choose(1, 6) from seed in TensorGen.Seed from equalL in G.Elements(false, true) select (n, seed, equalL), c =>
        {
            var (n, seed, equalL) = c;
            var r = new Random(seed);
            // A = MᵀM + D, SPD; with equalL the diagonal is made constant (A_ii = 2) by symmetric scaling.
            var m = Uniform(r, n * n);
            var a = new double[n * n];
            for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) { for (int k = 0; k < n; k++) a[i * n + j] += m[k * n + i] * m[k * n + j]; if (i == j) a[i * n + j] += 0.1 + 3 * r.NextDouble(); }
            if (equalL)
            {
                var s = Enumerable.Range(0, n).Select(i => Math.Sqrt(2 / a[i * n + i])).ToArray();
                for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) a[i * n + j] *= s[i] * s[j];
                for (int i = 0; i < n; i++) a[i * n + i] = 2;
            }
            var b = Uniform(r, n); var x = Uniform(r, n);
            double F(double[] v) { double f = 0; for (int i = 0; i < n; i++) { f -= b[i] * v[i]; for (int j = 0; j < n; j++) f += 0.5 * v[i] * a[i * n + j] * v[j]; } return f; }
            var g = new double[n];
            for (int i = 0; i < n; i++) { g[i] = -b[i]; for (int j = 0; j < n; j++) g[i] += a[i * n + j] * x[j]; }
            var l = Enumerable.Range(0, n).Select(i => a[i * n + i]).ToArray();
            var ta = Tensor.FromArray(a, new Shape(n, n)); var tb = Tensor.FromArray(b); var tx = Tensor.FromArray(x);
            double f0 = F(x);
            Assert.True(Math.Abs(f0 - CoordinateDescent.Objective(ta, tb, tx).ToDoubleArray()[0]) <= 1e-12 * (1 + Math.Abs(f0)), "objective");
            var progress = new double[n];
            for (int i = 0; i < n; i++)
            {
                // The exact one-step progress identity on every coordinate.
                var xi = (double[])x.Clone(); xi[i] -= g[i] / l[i];
                progress[i] = f0 - F(xi);
                Assert.True(Math.Abs(progress[i] - CoordinateDescent.Progress(g, l, i)) <= 1e-12 * (1 + Math.Abs(f0)), $"progress of coordinate {i}: {progress[i]} vs {CoordinateDescent.Progress(g, l, i)}");
            }
            var (gslX, gsl) = CoordinateDescent.Step(ta, tb, tx, CoordinateRule.GaussSouthwellLipschitz);
            var (_, gs) = CoordinateDescent.Step(ta, tb, tx, CoordinateRule.GaussSouthwell);
            Assert.Equal(Enumerable.Range(0, n).MaxBy(i => Math.Abs(g[i]) / Math.Sqrt(l[i])), gsl);
            Assert.Equal(Enumerable.Range(0, n).MaxBy(i => Math.Abs(g[i])), gs);
            double pGsl = CoordinateDescent.Progress(g, l, gsl), pGs = CoordinateDescent.Progress(g, l, gs), pRandom = Enumerable.Range(0, n).Average(i => CoordinateDescent.Progress(g, l, i));
            // 1e-14 relative: the rounding of the average.
            Assert.True(pGsl >= pGs && pGsl >= pRandom * (1 - 1e-14), $"GSL {pGsl}, GS {pGs}, random {pRandom}");
            if (equalL) Assert.True(pGs >= pRandom * (1 - 1e-14), $"equal L: GS {pGs} below random {pRandom}");
            Assert.True(Math.Abs(f0 - CoordinateDescent.Objective(ta, tb, gslX).ToDoubleArray()[0] - pGsl) <= 1e-12 * (1 + Math.Abs(f0)), "the GSL step's decrease");
        });
        // Unequal L: GS picks the steep coordinate with the large L and makes less progress than random.
        double[] gradient = [3, 1, 1], lip = [100, 1, 1];
        int pick = CoordinateDescent.Select(gradient, lip, CoordinateRule.GaussSouthwell);
        Assert.Equal(0, pick);
        Assert.True(CoordinateDescent.Progress(gradient, lip, pick) < Enumerable.Range(0, 3).Average(i => CoordinateDescent.Progress(gradient, lip, i)));
        Assert.Throws<ArgumentException>(() => CoordinateDescent.Select([1.0], [0.0], CoordinateRule.GaussSouthwell));
        Assert.Throws<ShapeMismatchException>(() => CoordinateDescent.Step(Tensor.Ones(new Shape(2, 3)), Tensor.Ones(new Shape(2)), Tensor.Ones(new Shape(2)), CoordinateRule.GaussSouthwell));
    }
}
