using Kiln.NN;
using Kiln.NN.Optim;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests.NN;

/// <summary>
/// Lion and Lion-K, the cautious mask (C-Lion, C-AdamW), MARS, RAdam, the induced-metric optimiser, ProGrad and the
/// preconditioned Polyak step against float64 transcriptions, with each paper's identities and degenerate cases.
/// </summary>
public class SignMomentumTests
{
    public static IEnumerable<object[]> Cases =>
        from d in Devices.All from dt in new[] { DType.Float32, DType.Float64 } select new object[] { d.ToString(), dt };

    static double[] Uniform(Random r, int len, double lo = -1, double hi = 1) => Dense.Uniform(r, len, lo, hi);

    static double Tol(DType dt) => dt == DType.Float64 ? 1e-12 : 1e-5;

    static FsCheck.Gen<(int[] Dims, int Seed)> ShapeCase =>
        from rank in G.Choose(0, 3) from dims in G.ArrayOf(G.Choose(0, 5), rank) from seed in TensorGen.Seed select (dims, seed);

    static List<double[]> Run(Optimizer opt, Parameter p, IReadOnlyList<double[]> grads, Device dev)
    {
        var trace = new List<double[]>();
        foreach (var g in grads)
        {
            p.Grad = Tensor.FromArray(g, p.Shape).To(p.DType).To(dev);
            opt.Step();
            trace.Add(p.Value.ToDoubleArray());
        }
        return trace;
    }

    static void Near(double[] expected, double[] actual, double tol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tol * Math.Max(1, Math.Abs(expected[i])), $"{what}[{i}]: {actual[i]:R} vs {expected[i]:R}");
    }

    // A parameter and a gradient sequence, rounded to dt so the float64 reference sees the optimizer's inputs.
    static (Parameter P, double[] X, List<double[]> Grads) Setup(int[] dims, int seed, DType dt, Device dev, int steps, double glo = -2, double ghi = 2)
    {
        var r = new Random(seed);
        int n = Naive.Numel(dims);
        var x = Tensor.FromArray(Uniform(r, n)).To(dt).ToDoubleArray();
        var grads = Enumerable.Range(0, steps).Select(_ => Tensor.FromArray(Uniform(r, n, glo, ghi)).To(dt).ToDoubleArray()).ToList();
        return (new Parameter(Tensor.FromArray(x, new Shape(dims)).To(dt).To(dev)), x, grads);
    }

    static double[] Mask(double[] u, double[] dir, double[] g, CautiousScaling scaling)
    {
        var m = dir.Select((d, i) => d * g[i] > 0 ? 1.0 : 0.0).ToArray();
        double s = scaling == CautiousScaling.Original ? u.Length / (m.Sum() + 1) : 1 / Math.Max(u.Length == 0 ? 0 : m.Average(), 1e-3);
        return u.Select((x, i) => x * m[i] * s).ToArray();
    }

    [Theory, MemberData(nameof(Cases))]
    public void Lion_LionK_and_CLion_match_their_transcription(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        var gen = from c in ShapeCase from k in G.Elements(LionK.Sign, LionK.L2, LionK.Quadratic)
                  from cautious in G.Elements<CautiousScaling?>(null, CautiousScaling.Original, CautiousScaling.Mean) select (c, k, cautious);
        Props.Check(dev, gen, c =>
        {
            var ((dims, seed), k, cautious) = c;
            const double lr = 0.01, b1 = 0.8, b2 = 0.95, wd = 0.3;
            var (p, x, grads) = Setup(dims, seed, dt, dev, 4);
            var got = Run(new Lion([p], lr, b1, b2, wd, k) { Cautious = cautious }, p, grads, dev);
            var m = new double[x.Length];
            for (int s = 0; s < grads.Count; s++)
            {
                var g = grads[s];
                var z = m.Select((v, i) => b1 * v + (1 - b1) * g[i]).ToArray();
                double norm = Math.Sqrt(z.Sum(v => v * v));
                var u = k switch
                {
                    LionK.Sign => z.Select(v => (double)Math.Sign(v)).ToArray(),
                    LionK.L2 => z.Select(v => norm > 0 ? v / norm : 0).ToArray(),
                    _ => z,
                };
                if (cautious is { } sc) u = Mask(u, u, g, sc);
                x = x.Select((v, i) => v * (1 - lr * wd) - lr * u[i]).ToArray();
                m = m.Select((v, i) => b2 * v + (1 - b2) * g[i]).ToArray();
                Near(x, got[s], Tol(dt), $"lion K={k} cautious={cautious} step {s + 1}");
            }
        });
    }

    [Fact]
    public void Lion_with_beta1_zero_is_signSGD_with_decoupled_decay_whatever_beta2()
    {
        var (p1, x, grads) = Setup([7], 3, DType.Float64, Device.Cpu, 5);
        var (p2, _, _) = Setup([7], 3, DType.Float64, Device.Cpu, 5);
        var a = Run(new Lion([p1], 0.1, 0, 0.5, 0.2), p1, grads, Device.Cpu);
        var b = Run(new Lion([p2], 0.1, 0, 0.99, 0.2), p2, grads, Device.Cpu);
        for (int s = 0; s < grads.Count; s++)
        {
            x = x.Select((v, i) => v * (1 - 0.1 * 0.2) - 0.1 * Math.Sign(grads[s][i])).ToArray();
            Assert.Equal(x, a[s]);
            Assert.Equal(x, b[s]);
        }
    }

    [Fact]
    public void Lion_keeps_the_box_invariant_and_shrinks_the_excess_outside_it()
    {
        // x' = (1 - lr λ) x - lr u with |u| ≤ 1: for lr λ ≤ 1, |x| ≤ 1/λ stays so, and outside the box the excess
        // |x| - 1/λ shrinks at least by the factor (1 - lr λ) each step (equality when u opposes x).
        Props.Check(from seed in TensorGen.Seed from lr in G.Elements(0.01, 0.1, 0.5) from lambda in G.Elements(0.5, 1.0, 2.0) select (seed, lr, lambda), c =>
        {
            var (seed, lr, lambda) = c;
            var r = new Random(seed);
            const int n = 9;
            var x0 = Uniform(r, n, -3 / lambda, 3 / lambda);
            var p = new Parameter(Tensor.FromArray(x0));
            var opt = new Lion([p], lr, 0.9, 0.99, lambda);
            var x = x0;
            for (int s = 0; s < 20; s++)
            {
                p.Grad = Tensor.FromArray(Uniform(r, n, -5, 5));
                opt.Step();
                var y = p.Value.ToDoubleArray();
                for (int i = 0; i < n; i++)
                {
                    double excess = Math.Abs(x[i]) - 1 / lambda, next = Math.Abs(y[i]) - 1 / lambda;
                    if (excess <= 0) Assert.True(next <= 1e-12, $"left the box: |x| {Math.Abs(y[i]):R} > 1/λ");
                    else Assert.True(next <= (1 - lr * lambda) * excess + 1e-12, $"excess {next:R} above (1 - lr λ) {excess:R}");
                }
                x = y;
            }
        });
    }

    [Fact]
    public void Cautious_mask_never_opposes_the_gradient_and_is_exact_when_all_signs_agree()
    {
        Props.Check(from n in G.Choose(0, 40) from seed in TensorGen.Seed from sc in G.Elements(CautiousScaling.Original, CautiousScaling.Mean) select (n, seed, sc), c =>
        {
            var (n, seed, sc) = c;
            var r = new Random(seed);
            var u = Uniform(r, n); var g = Uniform(r, n);
            var masked = Cautious.Mask(Tensor.FromArray(u), Tensor.FromArray(u), Tensor.FromArray(g), sc).ToDoubleArray();
            Assert.True(masked.Select((v, i) => v * g[i]).Sum() >= 0, "⟨u', g⟩ < 0");
            for (int i = 0; i < n; i++) if (u[i] * g[i] <= 0) Assert.Equal(0.0, masked[i]);
            Near(Mask(u, u, g, sc), masked, 1e-14, "mask");
            // All signs agree: the mean scaling is the identity, the original one d / (d + 1).
            var agree = Cautious.Mask(Tensor.FromArray(u), Tensor.FromArray(u), Tensor.FromArray(u.Select(v => 2 * v).ToArray()), sc).ToDoubleArray();
            if (u.All(v => v != 0)) Near(u.Select(v => sc == CautiousScaling.Mean ? v : v * n / (n + 1.0)).ToArray(), agree, 1e-15, "all agree");
        });
    }

    [Theory, MemberData(nameof(Cases))]
    public void CautiousAdamW_matches_its_transcription_and_is_AdamW_when_signs_agree(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, from c in ShapeCase from sc in G.Elements(CautiousScaling.Original, CautiousScaling.Mean) select (c, sc), c =>
        {
            var ((dims, seed), sc) = c;
            const double lr = 0.01, b1 = 0.8, b2 = 0.95, eps = 1e-6, wd = 0.1;
            var (p, x, grads) = Setup(dims, seed, dt, dev, 4);
            var got = Run(new CautiousAdamW([p], lr, b1, b2, eps, wd, sc), p, grads, dev);
            double[] m = new double[x.Length], v = new double[x.Length];
            for (int s = 0; s < grads.Count; s++)
            {
                var g = grads[s];
                int t = s + 1;
                for (int i = 0; i < x.Length; i++) { m[i] = b1 * m[i] + (1 - b1) * g[i]; v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]; }
                var u = m.Select((mi, i) => lr / (1 - Math.Pow(b1, t)) * mi / (Math.Sqrt(v[i]) / Math.Sqrt(1 - Math.Pow(b2, t)) + eps)).ToArray();
                var masked = Mask(u, m, g, sc);
                x = x.Select((xi, i) => xi * (1 - lr * wd) - masked[i]).ToArray();
                Near(x, got[s], Tol(dt) * 10, $"c-adamw {sc} step {s + 1}");
            }
            // Positive gradients keep m and g in agreement: the mean scaling is AdamW step for step.
            var (q1, _, pos) = Setup(dims, seed, dt, dev, 4, 0.1, 2);
            var (q2, _, _) = Setup(dims, seed, dt, dev, 4, 0.1, 2);
            var cautious = Run(new CautiousAdamW([q1], lr, b1, b2, eps, wd, CautiousScaling.Mean), q1, pos, dev);
            var adamw = Run(new AdamW([q2], lr, b1, b2, eps, wd), q2, pos, dev);
            for (int s = 0; s < pos.Count; s++) Near(adamw[s], cautious[s], Tol(dt) * 10, $"c-adamw vs adamw step {s + 1}");
        });
    }

    [Theory, MemberData(nameof(Cases))]
    public void MARS_at_gamma_zero_without_clip_is_AdamW_and_MARS_Lion_is_Lion_with_equal_betas(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, ShapeCase, c =>
        {
            var (dims, seed) = c;
            const double lr = 0.01, b1 = 0.8, b2 = 0.95, eps = 1e-6, wd = 0.1;
            var (p1, _, grads) = Setup(dims, seed, dt, dev, 4);
            var (p2, _, _) = Setup(dims, seed, dt, dev, 4);
            var mars = Run(new MARS([p1], lr, b1, b2, gamma: 0, eps, wd, clip: false), p1, grads, dev);
            var adamw = Run(new AdamW([p2], lr, b1, b2, eps, wd), p2, grads, dev);
            for (int s = 0; s < grads.Count; s++) Near(adamw[s], mars[s], Tol(dt) * 10, $"mars(γ=0) vs adamw step {s + 1}");
            // Gradients of norm at most 1 leave the clip idle, so it may stay on.
            var (p3, _, small) = Setup(dims, seed, dt, dev, 4, -0.1, 0.1);
            var (p4, _, _) = Setup(dims, seed, dt, dev, 4, -0.1, 0.1);
            if (small.All(g => Math.Sqrt(g.Sum(v => v * v)) <= 1))
            {
                var clipped = Run(new MARS([p3], lr, b1, b2, gamma: 0, eps, wd), p3, small, dev);
                var plain = Run(new AdamW([p4], lr, b1, b2, eps, wd), p4, small, dev);
                for (int s = 0; s < small.Count; s++) Near(plain[s], clipped[s], Tol(dt) * 10, $"mars(γ=0, idle clip) vs adamw step {s + 1}");
            }
            var (p5, _, _) = Setup(dims, seed, dt, dev, 4);
            var (p6, _, _) = Setup(dims, seed, dt, dev, 4);
            var marsLion = Run(new MARS([p5], lr, b1, b2, gamma: 0, weightDecay: wd, kind: MarsKind.Lion, clip: false), p5, grads, dev);
            var lion = Run(new Lion([p6], lr, b1, b1, wd), p6, grads, dev);
            for (int s = 0; s < grads.Count; s++) Near(lion[s], marsLion[s], Tol(dt) * 10, $"mars-lion(γ=0) vs lion(b1=b2) step {s + 1}");
        });
    }

    // MARS-AdamW's update from the corrected gradient c, as the authors' code writes it.
    static double[] MarsAdamW(double[] x, double[] c, double[] m, double[] v, int t, double lr, double b1, double b2, double eps, double wd, bool clip)
    {
        double norm = Math.Sqrt(c.Sum(z => z * z));
        if (clip && norm > 1) c = c.Select(z => z / norm).ToArray();
        double bc1 = 1 - Math.Pow(b1, t), bc2 = 1 - Math.Pow(b2, t);
        var y = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            m[i] = b1 * m[i] + (1 - b1) * c[i];
            v[i] = b2 * v[i] + (1 - b2) * c[i] * c[i];
            y[i] = x[i] - lr * (m[i] / bc1 / (Math.Sqrt(v[i]) / Math.Sqrt(bc2) + eps) + wd * x[i]);
        }
        return y;
    }

    [Fact]
    public void MARS_exact_correction_is_the_Hessian_times_the_step_on_a_quadratic()
    {
        // f(x) = ½ xᵀ H x - bᵀ x on a fixed batch: g(x_t) - g(x_{t-1}) = H (x_t - x_{t-1}) exactly, so the two-gradient
        // closure rule equals the transcription that forms the correction from H.
        var r = new Random(23);
        const int n = 6;
        const double lr = 0.05, b1 = 0.9, b2 = 0.99, gamma = 0.5, eps = 1e-8, wd = 0.01;
        var bm = Uniform(r, n * n);
        var h = Dense.Add(Dense.Mul(bm, Dense.T(bm, n, n), n, n, n), Dense.Eye(n));
        var bv = Uniform(r, n);
        var ht = Tensor.FromArray(h, new Shape(n, n)); var bt = Tensor.FromArray(bv);
        foreach (bool clip in new[] { false, true })
        {
            var x0 = Uniform(r, n);
            var p = new Parameter(Tensor.FromArray(x0));
            var opt = new MARS([p], lr, b1, b2, gamma, eps, wd, approximate: false, clip: clip);
            double Closure()
            {
                opt.ZeroGrad();
                var loss = 0.5 * (p.Value.MatMul(ht).MatMul(p.Value)) - bt.Dot(p.Value);
                loss.Backward();
                return loss.Item();
            }
            double[] m = new double[n], v = new double[n], x = x0, prev = x0;
            for (int t = 1; t <= 6; t++)
            {
                opt.Step(Closure);
                var g = Dense.Add(Dense.Mul(h, x, n, n, 1), bv, -1);
                var c = t == 1 ? g : Dense.Add(g, Dense.Mul(h, Dense.Add(x, prev, -1), n, n, 1), gamma * b1 / (1 - b1));
                prev = x;
                x = MarsAdamW(x, c, m, v, t, lr, b1, b2, eps, wd, clip);
                Near(x, p.Value.ToDoubleArray(), 1e-12, $"mars exact (clip {clip}) step {t}");
            }
        }
        var q = new Parameter(Tensor.Zeros(new Shape(2), DType.Float64)) { Grad = Tensor.Ones(new Shape(2), DType.Float64) };
        Assert.Throws<InvalidOperationException>(() => new MARS([q], approximate: false).Step());
    }

    [Theory, MemberData(nameof(Cases))]
    public void MARS_approximate_matches_its_transcription(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, from c in ShapeCase from clip in G.Elements(true, false) select (c, clip), c =>
        {
            var ((dims, seed), clip) = c;
            const double lr = 0.01, b1 = 0.9, b2 = 0.95, gamma = 0.3, eps = 1e-6, wd = 0.1;
            var (p, x, grads) = Setup(dims, seed, dt, dev, 4);
            var got = Run(new MARS([p], lr, b1, b2, gamma, eps, wd, clip: clip), p, grads, dev);
            double[] m = new double[x.Length], v = new double[x.Length], last = new double[x.Length];
            for (int s = 0; s < grads.Count; s++)
            {
                var g = grads[s];
                var cc = g.Select((z, i) => z + gamma * b1 / (1 - b1) * (z - last[i])).ToArray();
                last = g;
                x = MarsAdamW(x, cc, m, v, s + 1, lr, b1, b2, eps, wd, clip);
                Near(x, got[s], Tol(dt) * 10, $"mars approximate (clip {clip}) step {s + 1}");
            }
        });
    }

    [Fact]
    public void RAdam_rectification_golden_table_and_threshold_convention()
    {
        // Values from an independent evaluation of the paper's formulas (Python, float64), b2 = 0.999.
        (int T, double Rho, double? R)[] golden =
        [
            (1, 1.0, null), (4, 3.9974987498546852, null), (5, 4.995998000395048, 0.017311503166315034),
            (6, 5.994163751655833, 0.02582111280185855), (10, 9.98349177230557, 0.04899801344710748),
            (100, 98.33294432272578, 0.21533543653820142), (1000, 835.9673756107934, 0.6453256523380656),
            (10000, 1998.0964922659898, 0.9997733049343513),
        ];
        foreach (var (t, rho, rect) in golden)
        {
            Assert.Equal(rho, RAdam.Rho(t, 0.999), 1e-9);
            var paper = RAdam.Rectification(t, 0.999, threshold: 4);
            Assert.Equal(rect.HasValue, paper.HasValue);
            if (rect is { } expected) Assert.Equal(expected, paper!.Value, 1e-9);
        }
        // ρ_5 ≈ 4.996: adaptive under the paper's ρ > 4, not under PyTorch's ρ > 5 (step 6 is adaptive under both).
        Assert.NotNull(RAdam.Rectification(5, 0.999, threshold: 4));
        Assert.Null(RAdam.Rectification(5, 0.999));
        Assert.NotNull(RAdam.Rectification(6, 0.999));
        Assert.True(Math.Abs(RAdam.Rectification(200000, 0.999)!.Value - 1) < 1e-9, "r_t -> 1");
    }

    [Theory, MemberData(nameof(Cases))]
    public void RAdam_matches_its_transcription_and_starts_as_bias_corrected_momentum(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, from c in ShapeCase from th in G.Elements(4.0, 5.0) from decoupled in G.Elements(true, false) select (c, th, decoupled), c =>
        {
            var ((dims, seed), th, decoupled) = c;
            // b2 = 0.5: ρ∞ = 3 never exceeds 4, so every step is momentum; b2 = 0.9: ρ_t passes 4 and 5 at steps 5 and 6.
            foreach (double b2 in new[] { 0.5, 0.9 })
            {
                const double lr = 0.01, b1 = 0.8, eps = 1e-6, wd = 0.1;
                var (p, x, grads) = Setup(dims, seed, dt, dev, 8);
                var got = Run(new RAdam([p], lr, b1, b2, eps, wd, decoupled, th), p, grads, dev);
                double[] m = new double[x.Length], v = new double[x.Length];
                for (int s = 0; s < grads.Count; s++)
                {
                    int t = s + 1;
                    var g = decoupled ? grads[s] : grads[s].Select((z, i) => z + wd * x[i]).ToArray();
                    if (decoupled) x = x.Select(z => z * (1 - lr * wd)).ToArray();
                    for (int i = 0; i < x.Length; i++) { m[i] = b1 * m[i] + (1 - b1) * g[i]; v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]; }
                    double bc1 = 1 - Math.Pow(b1, t), bc2 = 1 - Math.Pow(b2, t);
                    double inf = 2 / (1 - b2) - 1, rho = inf - 2 * t * Math.Pow(b2, t) / bc2;
                    x = rho > th
                        ? x.Select((z, i) => z - lr * Math.Sqrt((rho - 4) * (rho - 2) * inf / ((inf - 4) * (inf - 2) * rho)) * (m[i] / bc1) * Math.Sqrt(bc2) / (Math.Sqrt(v[i]) + eps)).ToArray()
                        : x.Select((z, i) => z - lr * m[i] / bc1).ToArray();
                    Near(x, got[s], Tol(dt) * 10, $"radam b2={b2} threshold={th} step {t}");
                }
            }
        });
    }

    [Fact]
    public void Induced_metric_step_is_Sherman_Morrison_and_bounded()
    {
        Props.Check(from n in G.Choose(1, 8) from seed in TensorGen.Seed from xi in G.Elements(0.0, 0.3, 1.0, 4.0) from scale in G.Elements(0.01, 1.0, 30.0) select (n, seed, xi, scale), c =>
        {
            var (n, seed, xi, scale) = c;
            var u = Uniform(new Random(seed), n).Select(v => v * scale).ToArray();
            var step = InducedMetric.NaturalStep(Tensor.FromArray(u), xi).ToDoubleArray();
            // Explicit solve of (I + ξ u uᵀ) x = u.
            var metric = Dense.Add(Dense.Eye(n), Dense.Mul(u, u, n, 1, n), xi);
            Near(Dense.Mul(Dense.SymPow(metric, n, -1), u, n, n, 1), step, 1e-10, "g⁻¹ u");
            double norm = Math.Sqrt(step.Sum(v => v * v)), un = Math.Sqrt(u.Sum(v => v * v));
            Assert.Equal(un / (1 + xi * un * un), norm, 1e-10);
            if (xi > 0) Assert.True(norm <= 1 / (2 * Math.Sqrt(xi)) + 1e-12, $"‖step‖ {norm} above 1/(2 sqrt ξ)");
        });
        // The bound is attained at ‖u‖ = 1/sqrt(ξ).
        var at = InducedMetric.NaturalStep(Tensor.FromArray(new[] { 0.5, 0.0 }), 4.0).ToDoubleArray();
        Assert.Equal(1 / (2 * Math.Sqrt(4.0)), Math.Sqrt(at.Sum(v => v * v)), 1e-14);
    }

    [Theory, MemberData(nameof(Cases))]
    public void Induced_metric_optimiser_matches_its_transcription_and_is_its_base_at_xi_zero(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, from c in ShapeCase from rule in G.Elements(InducedMetricBase.Sgd, InducedMetricBase.Adam) select (c, rule), c =>
        {
            var ((dims, seed), rule) = c;
            const double lr = 0.02, xi = 0.7, mu = 0.9, b1 = 0.8, b2 = 0.95, eps = 1e-6, mb = 0.9, wd = 0.1;
            var (p, x, grads) = Setup(dims, seed, dt, dev, 4);
            var got = Run(new InducedMetric([p], lr, xi, rule, mu, b1, b2, eps, mb, wd), p, grads, dev);
            double[] buf = new double[x.Length], m = new double[x.Length], v = new double[x.Length];
            double sAcc = 0;
            for (int s = 0; s < grads.Count; s++)
            {
                int t = s + 1;
                var g = grads[s];
                double[] u; double sample;
                if (rule == InducedMetricBase.Sgd)
                {
                    buf = t == 1 ? (double[])g.Clone() : buf.Select((b, i) => mu * b + g[i]).ToArray();
                    u = buf.Select(b => lr * b).ToArray();
                    sample = g.Sum(z => z * z);
                }
                else
                {
                    for (int i = 0; i < x.Length; i++) { m[i] = b1 * m[i] + (1 - b1) * g[i]; v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]; }
                    var denom = v.Select(z => Math.Sqrt(z / (1 - Math.Pow(b2, t))) + eps).ToArray();
                    u = m.Select((z, i) => lr * z / (1 - Math.Pow(b1, t)) / denom[i]).ToArray();
                    sample = g.Select((z, i) => z * z / denom[i]).Sum();
                }
                sAcc = mb * sAcc + (1 - mb) * sample;
                double damp = 1 / (1 + xi * sAcc / (1 - Math.Pow(mb, t)));
                x = x.Select((z, i) => z * (1 - lr * wd) - u[i] * damp).ToArray();
                Near(x, got[s], Tol(dt) * 10, $"induced metric ({rule}) step {t}");
            }
            // ξ = 0: the base optimiser exactly (AdamW with decoupled decay; momentum SGD without decay).
            var (q1, _, _) = Setup(dims, seed, dt, dev, 4);
            var (q2, _, _) = Setup(dims, seed, dt, dev, 4);
            var plain = rule == InducedMetricBase.Adam
                ? Run(new AdamW([q2], lr, b1, b2, eps, wd), q2, grads, dev)
                : Run(new SGD([q2], lr, mu), q2, grads, dev);
            var zero = Run(new InducedMetric([q1], lr, 0, rule, mu, b1, b2, eps, mb, rule == InducedMetricBase.Adam ? wd : 0), q1, grads, dev);
            for (int s = 0; s < grads.Count; s++) Near(plain[s], zero[s], Tol(dt) * 10, $"induced metric ξ = 0 vs base ({rule}) step {s + 1}");
        });
    }

    [Fact]
    public void ProGrad_projects_conflicting_gradients()
    {
        Props.Check(from n in G.Choose(1, 12) from seed in TensorGen.Seed from lambda in G.Elements(0.0, 0.5, 1.0, 1.5, 2.0) select (n, seed, lambda), c =>
        {
            var (n, seed, lambda) = c;
            var r = new Random(seed);
            var g = Uniform(r, n); var d = Uniform(r, n);
            double dot = g.Select((z, i) => z * d[i]).Sum(), dd = d.Sum(z => z * z);
            var got = ProGrad.Project(Tensor.FromArray(g), Tensor.FromArray(d), lambda).ToDoubleArray();
            var expected = dot >= 0 ? g : g.Select((z, i) => z - lambda * dot / dd * d[i]).ToArray();
            Near(expected, got, 1e-14, "g'");
            double newDot = got.Select((z, i) => z * d[i]).Sum();
            if (dot >= 0) Assert.Equal(g, got);
            else
            {
                Assert.Equal((1 - lambda) * dot, newDot, 1e-12);
                if (lambda == 1) Assert.True(Math.Abs(newDot) < 1e-12, "λ = 1 leaves no component along g_gen");
            }
            Assert.True(got.Sum(z => z * z) <= g.Sum(z => z * z) + 1e-12, "‖g'‖ > ‖g‖ for λ in [0, 2]");
        });
        // Per parameter tensor: each tensor is tested against its own general direction.
        var a = new Parameter(Tensor.FromArray(new[] { 0.0, 0.0 })) { Grad = Tensor.FromArray(new[] { 1.0, 1.0 }) };
        var b = new Parameter(Tensor.FromArray(new[] { 0.0, 0.0 })) { Grad = Tensor.FromArray(new[] { 1.0, 0.0 }) };
        ProGrad.Apply([a, b], [Tensor.FromArray(new[] { -1.0, 0.0 }), Tensor.FromArray(new[] { 1.0, 1.0 })]);
        Assert.Equal([0.0, 1.0], a.Grad!.ToArray<double>());
        Assert.Equal([1.0, 0.0], b.Grad!.ToArray<double>());
        Assert.Throws<ShapeMismatchException>(() => ProGrad.Project(Tensor.Ones(new Shape(2)), Tensor.Ones(new Shape(3))));
    }

    [Fact]
    public void Polyak_step_on_one_linear_equation_goes_half_way_or_projects()
    {
        Props.Check(from n in G.Choose(1, 8) from seed in TensorGen.Seed select (n, seed), c =>
        {
            var (n, seed) = c;
            var r = new Random(seed);
            var a = Uniform(r, n); double b = r.NextDouble();
            var x0 = Uniform(r, n);
            double Residual(double[] x) => x.Select((z, i) => z * a[i]).Sum() - b;
            foreach (double cc in new[] { 1.0, 0.5 })
            {
                var p = new Parameter(Tensor.FromArray(x0));
                var at = Tensor.FromArray(a);
                var opt = new PreconditionedSPS([p], cc);
                opt.Step(() =>
                {
                    opt.ZeroGrad();
                    var res = at.Dot(p.Value) - b;
                    var loss = 0.5 * res * res;
                    loss.Backward();
                    return loss.Item();
                });
                // c = 1 halves the residual aᵀx - b; c = 1/2 zeroes it along a (Kaczmarz).
                Assert.Equal(cc == 1 ? Residual(x0) / 2 : 0, Residual(p.Value.ToDoubleArray()), 1e-10);
                var moved = Dense.Add(p.Value.ToDoubleArray(), x0, -1);
                double cos = moved.Select((z, i) => z * a[i]).Sum() / Math.Sqrt(moved.Sum(z => z * z) * a.Sum(z => z * z) + 1e-300);
                if (Math.Abs(Residual(x0)) > 1e-9) Assert.Equal(1, Math.Abs(cos), 1e-10);
            }
        });
        var q = new Parameter(Tensor.Zeros(new Shape(2), DType.Float64)) { Grad = Tensor.Ones(new Shape(2), DType.Float64) };
        Assert.Throws<InvalidOperationException>(() => new PreconditionedSPS([q]).Step());
    }

    [Theory]
    [InlineData(PolyakPreconditioner.AdaGrad)]
    [InlineData(PolyakPreconditioner.Adam)]
    public void Preconditioned_Polyak_step_matches_its_transcription(PolyakPreconditioner kind)
    {
        var r = new Random(29);
        const int n = 5;
        const double c = 0.5, fStar = -0.1, beta = 0.9, eps = 1e-8;
        var target = Uniform(r, n);
        var x = Uniform(r, n);
        var p = new Parameter(Tensor.FromArray(x));
        var tt = Tensor.FromArray(target);
        var opt = new PreconditionedSPS([p], c, fStar, kind, beta, eps);
        var acc = new double[n];
        for (int t = 1; t <= 5; t++)
        {
            opt.Step(() => { opt.ZeroGrad(); var l = (p.Value - tt).Pow(4).Sum(); l.Backward(); return l.Item(); });
            double f = x.Select((z, i) => Math.Pow(z - target[i], 4)).Sum();
            var g = x.Select((z, i) => 4 * Math.Pow(z - target[i], 3)).ToArray();
            double[] bDiag;
            if (kind == PolyakPreconditioner.AdaGrad) { acc = acc.Select((a, i) => a + g[i] * g[i]).ToArray(); bDiag = acc.Select(a => Math.Sqrt(a) + eps).ToArray(); }
            else { acc = acc.Select((a, i) => beta * a + (1 - beta) * g[i] * g[i]).ToArray(); bDiag = acc.Select(a => Math.Sqrt(a / (1 - Math.Pow(beta, t))) + eps).ToArray(); }
            double norm = g.Select((z, i) => z * z / bDiag[i]).Sum();
            double gamma = (f - fStar) / (c * norm);
            Assert.Equal(gamma, opt.LastStepSize, 1e-9);
            x = x.Select((z, i) => z - gamma * g[i] / bDiag[i]).ToArray();
            Near(x, p.Value.ToDoubleArray(), 1e-10, $"sps {kind} step {t}");
        }
    }
}
