using System.Numerics;
using FsCheck.Fluent;
using Kiln.NN;
using Kiln.Tests.TestKit;
using Xunit;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests.Methods;

/// <summary>
/// The sequence family: each entry's CHECK against float64 transcriptions of its paper's equations (written out here),
/// degenerate cases as exact tests, and gradients against central differences. The causal-convolution kernel's
/// conformance on every device runs through <see cref="Kiln.Ops.OpCatalog"/> (OpConformanceTests).
/// </summary>
public class SequenceTests
{
    static Tensor T(double[] data, params int[] shape) => Tensor.FromArray(data, new Shape(shape));
    static double[] U(Random r, int len, double lo = -1, double hi = 1) => Dense.Uniform(r, len, lo, hi);

    static void CheckGradient(Func<Tensor[], Tensor> f, Tensor[] inputs, string what, bool higherOrder = false)
    {
        var r = GradCheck.Run(f, inputs, 1e-6, 1e-6, 1e-5, higherOrder: higherOrder);
        Assert.True(r.Passed, $"{what}: {r}");
    }

    // ---------------------------------------------------------------- causal long convolution (the SSM kernel)

    [Fact]
    public void Causal_conv_gradients_match_finite_differences_to_second_order()
    {
        var r = new Random(3);
        foreach (var (b, c, l, k) in new[] { (2, 3, 7, 4), (1, 2, 5, 8), (3, 1, 6, 1) })
        {
            var x = T(U(r, b * c * l), b, c, l).RequiresGrad_();
            var w = T(U(r, c * k), c, k).RequiresGrad_();
            CheckGradient(t => Tensor.CausalConv1d(t[0], t[1]), [x, w], $"causal_conv1d [{b},{c},{l}] taps {k}");
            // Second order: the gradient of a function of the input gradient.
            CheckGradient(t =>
            {
                var g = Autograd.Grad(Tensor.CausalConv1d(t[0], t[1]).Square().Sum(), t[0], createGraph: true);
                return g.Square().Sum();
            }, [x, w], $"causal_conv1d second order [{b},{c},{l}] taps {k}", higherOrder: true);
        }
    }

    [Fact]
    public void Causal_conv_rejects_bad_shapes_naming_the_argument()
    {
        var x = Tensor.Zeros(new Shape(2, 3, 5), DType.Float64);
        var e = Assert.Throws<ShapeMismatchException>(() => Tensor.CausalConv1d(x, Tensor.Zeros(new Shape(4, 2), DType.Float64)));
        Assert.Equal("kernel", e.ParamName);
        Assert.Contains("[4, 2]", e.Message);
        Assert.Equal("input", Assert.Throws<ShapeMismatchException>(() => Tensor.CausalConv1d(Tensor.Zeros(new Shape(5), DType.Float64), Tensor.Zeros(new Shape(1, 2), DType.Float64))).ParamName);
        Assert.ThrowsAny<ArgumentException>(() => Tensor.CausalConv1d(x, Tensor.Zeros(new Shape(3, 2), DType.Float32)));
    }

    [Fact]
    public void Causal_conv_with_a_unit_impulse_kernel_is_the_identity_and_shifts_exactly()
    {
        var r = new Random(5);
        var x = T(U(r, 2 * 3 * 6), 2, 3, 6);
        var delta = T([1, 0, 0], 1, 3).Expand(3, 3).Contiguous();
        Assert.Equal(x.ToArray<double>(), Tensor.CausalConv1d(x, delta).ToArray<double>());
        var shift = T([0, 0, 1, 0, 0, 1, 0, 0, 1], 3, 3);
        var y = Tensor.CausalConv1d(x, shift).ToArray<double>();
        var xd = x.ToArray<double>();
        for (int row = 0; row < 6; row++)
            for (int t = 0; t < 6; t++) Assert.Equal(t >= 2 ? xd[row * 6 + t - 2] : 0, y[row * 6 + t]);
    }

    // ---------------------------------------------------------------- HiPPO (How to Train Your HiPPO)

    [Fact]
    public void Hippo_matrices_equal_their_closed_forms()
    {
        foreach (int n in new[] { 1, 2, 5, 9 })
        {
            var (a, b) = Hippo.LegS(n);
            var (at, bt) = Hippo.LegT(n, theta: 2.5);
            double[] ad = a.ToArray<double>(), atd = at.ToArray<double>();
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(Math.Sqrt(2 * i + 1), b.ToArray<double>()[i], 1e-14);
                Assert.Equal(Math.Sqrt(2 * i + 1) / 2.5, bt.ToArray<double>()[i], 1e-14);
                for (int k = 0; k < n; k++)
                {
                    double legs = i > k ? -Math.Sqrt(2 * i + 1) * Math.Sqrt(2 * k + 1) : i == k ? -(i + 1) : 0;
                    double legt = -Math.Sqrt(2 * i + 1) * Math.Sqrt(2 * k + 1) * (i >= k ? 1 : Math.Pow(-1, i - k)) / 2.5;
                    Assert.Equal(legs, ad[i * n + k], 1e-12);
                    Assert.Equal(legt, atd[i * n + k], 1e-12);
                }
            }
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => Hippo.LegS(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Hippo.LegT(3, theta: 0));
    }

    [Fact]
    public void Bilinear_discretisation_solves_its_defining_equations()
    {
        var (a, b) = Hippo.LegT(6, theta: 1.5);
        const double dt = 0.05;
        var (ad, bd) = Hippo.Bilinear(a, b, dt);
        // (I - dt/2 A) Ā = I + dt/2 A and (I - dt/2 A) B̄ = dt B, written out.
        double[] am = a.ToArray<double>(), adm = ad.ToArray<double>(), bdm = bd.ToArray<double>(), bm = b.ToArray<double>();
        for (int i = 0; i < 6; i++)
        {
            double rb = 0;
            for (int j = 0; j < 6; j++)
            {
                double lhs = 0;
                for (int k = 0; k < 6; k++) lhs += ((i == k ? 1 : 0) - dt / 2 * am[i * 6 + k]) * adm[k * 6 + j];
                Assert.Equal((i == j ? 1 : 0) + dt / 2 * am[i * 6 + j], lhs, 1e-10);
                rb += ((i == j ? 1 : 0) - dt / 2 * am[i * 6 + j]) * bdm[j];
            }
            Assert.Equal(dt * bm[i], rb, 1e-10);
        }
    }

    // f(s) = 0.3 + s - 0.4 s^2 + 0.05 s^3: degree 3 < N, so the Legendre projection of any window is exact and the only
    // reconstruction error is the discretisation's.
    static double Cubic(double s) => 0.3 + s - 0.4 * s * s + 0.05 * s * s * s;

    [Fact]
    public void LegT_state_reconstructs_the_sliding_window_of_its_input()
    {
        const int n = 6; const double theta = 1.0, dt = 1e-3; const int steps = 2500;
        var (ad, bd) = Hippo.Bilinear(Hippo.LegT(n, theta).A, Hippo.LegT(n, theta).B, dt);
        var c = Tensor.Zeros(new Shape(n), DType.Float64);
        for (int k = 0; k < steps; k++) c = ad.MatMul(c) + bd * Cubic(k * dt);
        double t = (steps - 1) * dt;
        var s = Enumerable.Range(0, 9).Select(i => t - theta + theta * i / 8.0).ToArray();
        var x = T([.. s.Select(v => 2 * (v - t) / theta + 1)], 9);
        var rec = Hippo.LegendreBasis(n, x).MatMul(c).ToArray<double>();
        for (int i = 0; i < 9; i++) Assert.True(Math.Abs(rec[i] - Cubic(s[i])) < 2e-3, $"s = {s[i]}: reconstructed {rec[i]}, f = {Cubic(s[i])}");
    }

    [Fact]
    public void LegS_state_reconstructs_the_whole_history_of_its_input_converging_with_the_step()
    {
        // LegS is time-varying: c' = (A c + B f) / t, stepped bilinearly with dt = 1/k at step k. The reconstruction
        // error is the discretisation's alone, so it must shrink about linearly as the steps double.
        const int n = 6; const double horizon = 3.0;
        var (a, b) = Hippo.LegS(n);
        var s = Enumerable.Range(0, 9).Select(i => horizon * i / 8.0).ToArray();
        var basis = Hippo.LegendreBasis(n, T([.. s.Select(v => 2 * v / horizon - 1)], 9));
        double Error(int steps)
        {
            var c = Tensor.Zeros(new Shape(n), DType.Float64);
            for (int k = 1; k <= steps; k++)
            {
                var (ak, bk) = Hippo.Bilinear(a, b, 1.0 / k);
                c = ak.MatMul(c) + bk * Cubic(horizon * k / steps);
            }
            var rec = basis.MatMul(c).ToArray<double>();
            return s.Select((v, i) => Math.Abs(rec[i] - Cubic(v))).Max();
        }
        double coarse = Error(500), fine = Error(1000);
        Assert.True(fine < 0.6 * coarse, $"error {coarse} at 500 steps, {fine} at 1000");
        Assert.True(fine < 6e-3, $"error {fine} at 1000 steps");
    }

    [Fact]
    public void Dense_hippo_convolution_equals_its_recurrence()
    {
        Props.Check(from n in G.Choose(1, 6) from len in G.Choose(0, 17) from seed in G.Choose(0, int.MaxValue) select (n, len, seed), p =>
        {
            var (n, len, seed) = p;
            var r = new Random(seed);
            var (ad, bd) = Hippo.Bilinear(Hippo.LegT(n, theta: 4).A, Hippo.LegT(n, theta: 4).B, 0.3);
            var cv = U(r, n);
            var u = U(r, len);
            // Recurrence, transcribed in float64.
            double[] am = ad.ToArray<double>(), bm = bd.ToArray<double>(), state = new double[n], expected = new double[len];
            for (int t = 0; t < len; t++)
            {
                var next = new double[n];
                for (int i = 0; i < n; i++)
                {
                    next[i] = bm[i] * u[t];
                    for (int j = 0; j < n; j++) next[i] += am[i * n + j] * state[j];
                }
                state = next;
                for (int i = 0; i < n; i++) expected[t] += cv[i] * state[i];
            }
            var kernel = Hippo.Kernel(ad, bd, T(cv, n), len);
            var y = Tensor.CausalConv1d(T(u, 1, len), kernel.Reshape(1, len)).ToArray<double>();
            Close.Check(expected, y, 1e-10, 1e-10, $"n {n} len {len}");
        }, 25);
    }

    // ---------------------------------------------------------------- S4D: convolution form vs recurrence

    // The layer's equations transcribed with System.Numerics.Complex: Ā, B̄ per discretisation, then the recurrence.
    static double[] S4DReference(S4D m, double[] u, int batch, int len)
    {
        int h = m.Channels, n = m.StateSize;
        double[] logDt = m.LogDt.ToArray<double>(), lar = m.LogAReal.ToArray<double>(), ai = m.AImag.ToArray<double>(),
            cr = m.CReal.ToArray<double>(), ci = m.CImag.ToArray<double>(), d = m.D.ToArray<double>();
        var y = new double[batch * len * h];
        for (int c = 0; c < h; c++)
        {
            double dt = Math.Exp(logDt[c]);
            var abar = new Complex[n]; var bbar = new Complex[n];
            for (int i = 0; i < n; i++)
            {
                var a = new Complex(-Math.Exp(lar[c * n + i]), ai[c * n + i]);
                (abar[i], bbar[i]) = m.Discretization == SsmDiscretization.Zoh
                    ? (Complex.Exp(dt * a), (Complex.Exp(dt * a) - 1) / a)
                    : ((1 + dt * a / 2) / (1 - dt * a / 2), dt / (1 - dt * a / 2));
            }
            for (int b = 0; b < batch; b++)
            {
                var x = new Complex[n];
                for (int t = 0; t < len; t++)
                {
                    double ut = u[(b * len + t) * h + c];
                    Complex acc = 0;
                    for (int i = 0; i < n; i++)
                    {
                        x[i] = abar[i] * x[i] + bbar[i] * ut;
                        acc += new Complex(cr[c * n + i], ci[c * n + i]) * x[i];
                    }
                    y[(b * len + t) * h + c] = 2 * acc.Real + d[c] * ut;
                }
            }
        }
        return y;
    }

    [Fact]
    public void S4D_convolution_form_equals_its_recurrence_and_the_transcription()
    {
        Props.Check(from b in G.Choose(1, 3) from len in G.Choose(0, 24) from h in G.Choose(1, 4) from n in G.Choose(1, 6)
                    from disc in G.Elements(SsmDiscretization.Zoh, SsmDiscretization.Bilinear) from init in G.Elements(S4DInit.Lin, S4DInit.Real)
                    from seed in G.Choose(0, int.MaxValue) select (b, len, h, n, disc, init, seed), p =>
        {
            var (b, len, h, n, disc, init, seed) = p;
            var m = new S4D(h, n, init, disc, 1e-2, 0.5, new Generator((ulong)seed), DType.Float64);
            var u = U(new Random(seed), b * len * h);
            var x = T(u, b, len, h);
            var expected = S4DReference(m, u, b, len);
            Close.Check(expected, m.Forward(x).ToArray<double>(), 1e-9, 1e-9, $"convolution form {p}");
            Close.Check(expected, m.Recurrent(x).ToArray<double>(), 1e-9, 1e-9, $"recurrence {p}");
        }, 30);
    }

    [Fact]
    public void S4D_gradients_match_finite_differences()
    {
        foreach (var disc in new[] { SsmDiscretization.Zoh, SsmDiscretization.Bilinear })
        {
            var m = new S4D(2, 3, S4DInit.Lin, disc, 0.05, 0.3, new Generator(7), DType.Float64);
            var x = T(U(new Random(8), 2 * 6 * 2), 2, 6, 2);
            CheckGradient(t => m.Forward(t[0]), [x], $"s4d {disc} input");
            CheckParameterGradients(m, () => m.Forward(x), $"s4d {disc}");
        }
    }

    /// <summary>Each parameter's gradient of sum(w * f()) against central differences, perturbing the parameter in place.</summary>
    static void CheckParameterGradients(Module m, Func<Tensor> f, string what)
    {
        var w = Tensor.Rand(f().Shape, new Generator(99), 0.5, 1.5, DType.Float64);
        m.ZeroGrad();
        (f() * w).Sum().Backward();
        foreach (var (name, p) in m.NamedParameters())
        {
            var analytic = p.Grad!.ToArray<double>();
            var values = p.ToArray<double>();
            for (int e = 0; e < values.Length; e++)
            {
                double Eval(double v)
                {
                    var moved = (double[])values.Clone(); moved[e] = v;
                    using (Autograd.NoGrad()) { p.Copy_(Tensor.FromArray(moved, p.Shape)); return (f() * w).Sum().Item(); }
                }
                double numeric = (Eval(values[e] + 1e-6) - Eval(values[e] - 1e-6)) / 2e-6;
                Assert.True(Math.Abs(analytic[e] - numeric) <= 1e-6 + 1e-5 * Math.Abs(numeric), $"{what}: {name}[{e}] analytic {analytic[e]}, numeric {numeric}");
            }
            using (Autograd.NoGrad()) p.Copy_(Tensor.FromArray(values, p.Shape));
        }
    }

    [Fact]
    public void S4D_rejects_bad_input_naming_the_argument()
    {
        var m = new S4D(3, 2, dtype: DType.Float64);
        var e = Assert.Throws<ShapeMismatchException>(() => m.Forward(Tensor.Zeros(new Shape(2, 5, 4), DType.Float64)));
        Assert.Contains("[2, 5, 4]", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new S4D(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new S4D(2, dtMin: 0.5, dtMax: 0.1));
    }

    // ---------------------------------------------------------------- LION: bidirectional linear attention

    // The full form transcribed: y_i = sum_j M_ij (q_i . k_j) v_j / sum_j M_ij (q_i . k_j), M_ij = prod_{k = min+1}^{max} lambda_k.
    static double[] LionReference(double[] q, double[] k, double[] v, double[]? logDecay, int b, int t, int d, int dv)
    {
        var y = new double[b * t * dv];
        for (int n = 0; n < b; n++)
            for (int i = 0; i < t; i++)
            {
                double den = 0; var num = new double[dv];
                for (int j = 0; j < t; j++)
                {
                    double m = 1;
                    for (int l = Math.Min(i, j) + 1; l <= Math.Max(i, j); l++) m *= logDecay is null ? 1 : Math.Exp(logDecay[n * t + l]);
                    double s = 0;
                    for (int e = 0; e < d; e++) s += q[(n * t + i) * d + e] * k[(n * t + j) * d + e];
                    den += m * s;
                    for (int e = 0; e < dv; e++) num[e] += m * s * v[(n * t + j) * dv + e];
                }
                for (int e = 0; e < dv; e++) y[(n * t + i) * dv + e] = num[e] / den;
            }
        return y;
    }

    [Fact]
    public void Lion_full_recurrent_and_chunkwise_forms_agree_for_every_decay_variant()
    {
        Props.Check(from b in G.Choose(1, 2) from t in G.Choose(0, 13) from d in G.Choose(1, 4) from dv in G.Choose(1, 3)
                    from variant in G.Choose(0, 2) from chunk in G.Choose(1, 6) from seed in G.Choose(0, int.MaxValue)
                    select (b, t, d, dv, variant, chunk, seed), p =>
        {
            var (b, t, d, dv, variant, chunk, seed) = p;
            var r = new Random(seed);
            // Positive features (q . k > 0), as LION's feature maps give; decay none, constant (LION-D) or per token (LION-S).
            double[] q = U(r, b * t * d, 0.1, 1), k = U(r, b * t * d, 0.1, 1), v = U(r, b * t * dv);
            double lam = Math.Log(0.3 + 0.6 * r.NextDouble());
            double[]? ld = variant == 0 ? null : variant == 1 ? [.. Enumerable.Repeat(lam, b * t)] : U(r, b * t, -2, 0);
            var expected = LionReference(q, k, v, ld, b, t, d, dv);
            foreach (var form in Enum.GetValues<LinearAttentionForm>())
            {
                var y = LinearAttention.Bidirectional(T(q, b, t, d), T(k, b, t, d), T(v, b, t, dv), ld is null ? null : T(ld, b, t), form, chunk);
                Assert.Equal(new Shape(b, t, dv), y.Shape);
                Close.Check(expected, y.ToArray<double>(), 1e-10, 1e-10, $"{form} {p}");
            }
        }, 30);
    }

    [Fact]
    public void Lion_gradients_match_finite_differences_in_every_form()
    {
        var r = new Random(11);
        var (q, k, v, ld) = (T(U(r, 2 * 5 * 3, 0.1, 1), 2, 5, 3), T(U(r, 2 * 5 * 3, 0.1, 1), 2, 5, 3), T(U(r, 2 * 5 * 2), 2, 5, 2), T(U(r, 10, -1, 0), 2, 5));
        foreach (var form in Enum.GetValues<LinearAttentionForm>())
            CheckGradient(x => LinearAttention.Bidirectional(x[0], x[1], x[2], x[3], form, 2), [q, k, v, ld], $"lion {form}");
    }

    [Fact]
    public void Lion_rejects_bad_shapes_naming_the_argument()
    {
        var q = Tensor.Zeros(new Shape(1, 4, 2), DType.Float64);
        Assert.Equal("v", Assert.Throws<ShapeMismatchException>(() => LinearAttention.Bidirectional(q, q, Tensor.Zeros(new Shape(1, 3, 2), DType.Float64))).ParamName);
        Assert.Equal("logDecay", Assert.Throws<ShapeMismatchException>(() => LinearAttention.Bidirectional(q, q, q, Tensor.Zeros(new Shape(1, 5), DType.Float64))).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => LinearAttention.Bidirectional(q, q, q, null, LinearAttentionForm.Chunkwise, 0));
    }

    [Fact]
    public void Causal_linear_attention_gradients_match_finite_differences_to_second_order()
    {
        var r = new Random(29);
        foreach (var (b, t, d, dv) in new[] { (2, 5, 3, 2), (1, 1, 2, 3), (1, 7, 1, 1) })
        {
            var (q, k, v) = (T(U(r, b * t * d), b, t, d), T(U(r, b * t * d), b, t, d), T(U(r, b * t * dv), b, t, dv));
            CheckGradient(x => Tensor.CausalLinearAttention(x[0], x[1], x[2]), [q, k, v], $"causal linear attention [{b},{t},{d}] dv {dv}");
            CheckGradient(x =>
            {
                var g = Autograd.Grad(Tensor.CausalLinearAttention(x[0], x[1], x[2]).Square().Sum(), x[1], createGraph: true);
                return g.Square().Sum();
            }, [q, k, v], $"causal linear attention second order [{b},{t},{d}]", higherOrder: true);
        }
        var z = Tensor.Zeros(new Shape(1, 4, 2), DType.Float64);
        Assert.Equal("v", Assert.Throws<ShapeMismatchException>(() => Tensor.CausalLinearAttention(z, z, Tensor.Zeros(new Shape(1, 3, 2), DType.Float64))).ParamName);
        Assert.Equal("k", Assert.Throws<ShapeMismatchException>(() => Tensor.CausalLinearAttention(z, Tensor.Zeros(new Shape(1, 4, 3), DType.Float64), z)).ParamName);
    }

    // ---------------------------------------------------------------- Multi-Token Attention

    // The paper's equation as loops: zero the future, convolve, -inf the future, softmax, mix heads, weight v.
    static double[] MtaReference(double[] q, double[] k, double[] v, double[] theta, double[]? mix, int b, int h, int t, int d, int dv, int cq, int ck, int g)
    {
        var attn = new double[b * h * t * t];
        for (int n = 0; n < b; n++)
            for (int hh = 0; hh < h; hh++)
            {
                double Logit(int i, int j)
                {
                    if (i < 0 || j < 0 || j >= t || j > i) return 0;
                    double s = 0;
                    for (int e = 0; e < d; e++) s += q[((n * h + hh) * t + i) * d + e] * k[((n * h + hh) * t + j) * d + e];
                    return s / Math.Sqrt(d);
                }
                for (int i = 0; i < t; i++)
                {
                    var row = new double[t];
                    for (int j = 0; j <= i; j++)
                        for (int a = 0; a < cq; a++)
                            for (int jj = -(ck / 2); jj <= (ck + 1) / 2 - 1; jj++)
                                row[j] += theta[(hh * cq + a) * ck + jj + ck / 2] * Logit(i - a, j - jj);
                    double max = row.Take(i + 1).Max(), z = row.Take(i + 1).Sum(x => Math.Exp(x - max));
                    for (int j = 0; j <= i; j++) attn[((n * h + hh) * t + i) * t + j] = Math.Exp(row[j] - max) / z;
                }
            }
        var mixed = attn;
        if (mix is not null)
        {
            mixed = new double[attn.Length];
            for (int n = 0; n < b; n++)
                for (int hh = 0; hh < h; hh++)
                    for (int o = 0; o < g; o++)
                    {
                        int src = hh / g * g + o;
                        for (int e = 0; e < t * t; e++) mixed[(n * h + hh) * t * t + e] += mix[(hh / g * g + hh % g) * g + o] * attn[(n * h + src) * t * t + e];
                    }
        }
        var y = new double[b * h * t * dv];
        for (int n = 0; n < b * h; n++)
            for (int i = 0; i < t; i++)
                for (int j = 0; j < t; j++)
                    for (int e = 0; e < dv; e++) y[(n * t + i) * dv + e] += mixed[(n * t + i) * t + j] * v[(n * t + j) * dv + e];
        return y;
    }

    [Fact]
    public void Mta_convolution_matches_the_explicit_loop_reference()
    {
        Props.Check(from t in G.Choose(1, 7) from cq in G.Choose(1, 3) from ck in G.Choose(1, 4) from g in G.Choose(1, 2) from seed in G.Choose(0, int.MaxValue)
                    select (t, cq, ck, g, seed), p =>
        {
            var (t, cq, ck, g, seed) = p;
            int b = 2, h = 2 * g, d = 3, dv = 2;
            var r = new Random(seed);
            double[] q = U(r, b * h * t * d), k = U(r, b * h * t * d), v = U(r, b * h * t * dv), theta = U(r, h * cq * ck), mix = U(r, h * g);
            var y = MultiTokenAttentionFunctional.Attend(T(q, b, h, t, d), T(k, b, h, t, d), T(v, b, h, t, dv), T(theta, h, cq, ck), T(mix, h / g, g, g));
            Close.Check(MtaReference(q, k, v, theta, mix, b, h, t, d, dv, cq, ck, g), y.ToArray<double>(), 1e-10, 1e-10, $"{p}");
        }, 25);
    }

    [Fact]
    public void Mta_with_identity_kernel_and_mixing_is_causal_softmax_attention()
    {
        var r = new Random(13);
        var m = new MultiTokenAttention(8, 4, queryKernel: 3, keyKernel: 5, mixGroup: 2, headNorm: false, generator: new Generator(3), dtype: DType.Float64);
        var x = T(U(r, 2 * 6 * 8), 2, 6, 8);
        Tensor Split(Tensor z) => z.Reshape(2, 6, 4, 2).Transpose(1, 2);
        var sdpa = Functional.ScaledDotProductAttention(Split(m.QProj.Forward(x)), Split(m.KProj.Forward(x)), Split(m.VProj.Forward(x)), causal: true);
        var expected = m.OProj.Forward(sdpa.Transpose(1, 2).Reshape(2, 6, 8));
        Close.Check(expected.ToArray<double>(), m.Forward(x).ToArray<double>(), 1e-12, 1e-12, "identity MTA");
        // With the head normalisation on, the outputs differ by exactly that normalisation.
        var normed = new MultiTokenAttention(8, 4, 3, 5, 2, headNorm: true, depthScale: 0.7, generator: new Generator(3), dtype: DType.Float64);
        var withNorm = normed.OProj.Forward((sdpa.LayerNorm() * 0.7).Transpose(1, 2).Reshape(2, 6, 8));
        Close.Check(withNorm.ToArray<double>(), normed.Forward(x).ToArray<double>(), 1e-12, 1e-12, "identity MTA with head norm");
    }

    [Fact]
    public void Mta_is_causal_and_its_gradients_match_finite_differences()
    {
        var r = new Random(17);
        var m = new MultiTokenAttention(4, 2, 2, 3, 2, headNorm: true, generator: new Generator(5), dtype: DType.Float64);
        foreach (var p in new[] { m.KqKernel, m.HeadMix })
            using (Autograd.NoGrad()) p.Copy_(T(U(r, (int)p.Numel), [.. p.Shape.Dims.ToArray()]));
        var x = T(U(r, 1 * 5 * 4), 1, 5, 4).RequiresGrad_();
        // No gradient reaches earlier outputs from later tokens: d y[:, 2] / d x[:, 3:] = 0.
        var g = Autograd.Grad(m.Forward(x).Narrow(1, 2, 1).Sum(), x).ToArray<double>();
        for (int i = 3 * 4; i < g.Length; i++) Assert.Equal(0.0, g[i]);
        Assert.Contains(g.Take(12), v => v != 0);
        CheckGradient(t => m.Forward(t[0]), [x], "mta input");
        CheckParameterGradients(m, () => m.Forward(x.Detach()), "mta");
    }

    // ---------------------------------------------------------------- Adaptive pooling

    [Fact]
    public void Adaptive_pool_with_zero_query_is_average_pooling()
    {
        Props.Check(from b in G.Choose(1, 3) from t in G.Choose(1, 9) from d in G.Choose(1, 5) from seed in G.Choose(0, int.MaxValue) select (b, t, d, seed), p =>
        {
            var (b, t, d, seed) = p;
            var x = U(new Random(seed), b * t * d);
            var expected = new double[b * d];
            for (int n = 0; n < b; n++)
                for (int i = 0; i < t; i++)
                    for (int e = 0; e < d; e++) expected[n * d + e] += x[(n * t + i) * d + e] / t;
            Close.Check(expected, new AdaptivePool(d, DType.Float64).Forward(T(x, b, t, d)).ToArray<double>(), 1e-13, 1e-13, $"{p}");
        }, 20);
    }

    [Fact]
    public void Adaptive_pool_attenuates_noise_tokens_that_average_pooling_keeps()
    {
        // Synthetic signal/noise sets: each set has s signal tokens near mu (along e_0) and many noise tokens orthogonal to
        // it; the pooled vector should recover mu. A query along e_0 weights the signal up; average pooling dilutes it.
        var r = new Random(19);
        int b = 64, signal = 3, noise = 29, d = 6, t = signal + noise;
        var x = new double[b * t * d];
        var mu = new double[d]; mu[0] = 4;
        for (int n = 0; n < b; n++)
            for (int i = 0; i < t; i++)
                for (int e = 0; e < d; e++)
                    x[(n * t + i) * d + e] = i < signal ? mu[e] + 0.1 * (r.NextDouble() - 0.5) : e == 0 ? 0 : 2 * (r.NextDouble() - 0.5);
        var pool = new AdaptivePool(d, DType.Float64);
        var xs = T(x, b, t, d);
        double Error(Tensor pooled) => (pooled - T(mu, d)).Square().Sum(1).Mean().Item();
        double avg = Error(pool.Forward(xs));
        using (Autograd.NoGrad()) pool.Query.Copy_(T([6, 0, 0, 0, 0, 0], d));
        double adaptive = Error(pool.Forward(xs));
        Assert.True(adaptive < 0.05 * avg, $"adaptive {adaptive}, average {avg}");
        var w = pool.Weights(xs).ToArray<double>();
        Assert.True(w.Where((_, i) => i % t < signal).Sum() / b > 0.99);
    }

    [Fact]
    public void Adaptive_pool_gradients_match_finite_differences()
    {
        var pool = new AdaptivePool(3, DType.Float64);
        var r = new Random(23);
        foreach (var p in pool.Parameters())
            using (Autograd.NoGrad()) p.Copy_(T(U(r, (int)p.Numel), [.. p.Shape.Dims.ToArray()]));
        var x = T(U(r, 2 * 4 * 3), 2, 4, 3);
        CheckGradient(t => pool.Forward(t[0]), [x], "adaptive pool input");
        CheckParameterGradients(pool, () => pool.Forward(x), "adaptive pool");
        Assert.Equal("input", Assert.Throws<ShapeMismatchException>(() => pool.Forward(Tensor.Zeros(new Shape(2, 0, 3), DType.Float64))).ParamName);
    }
}

/// <summary>`kiln seq` end to end with tiny settings (it swaps the console, so it runs alone).</summary>
[Collection(nameof(SerialCollection))]
public class SeqVerbTests
{
    [Fact]
    public void Seq_verb_writes_one_json_object_with_a_row_per_mixer_and_length()
    {
        var j = CliRun.JsonObject(Kiln.Cli.SeqVerb.Build(), ["seq", "--lengths", "9,12", "--steps", "3", "--batch", "4", "--width", "8", "--test-size", "16", "--json"]);
        var rows = j.GetProperty("rows").EnumerateArray().ToArray();
        Assert.Equal(["softmax", "linear", "s4d", "softmax", "linear", "s4d"], rows.Select(r => r.GetProperty("mixer").GetString()));
        Assert.Equal([9, 9, 9, 12, 12, 12], rows.Select(r => r.GetProperty("length").GetInt32()));
        foreach (var r in rows)
        {
            Assert.InRange(r.GetProperty("accuracy").GetDouble(), 0, 1);
            Assert.True(r.GetProperty("seconds_per_step").GetDouble() > 0);
            Assert.True(double.IsFinite(r.GetProperty("final_loss").GetDouble()));
        }
        // A length too short for the pairs and the query is bad usage (exit 2), before any training.
        Assert.Equal(2, CliRun.Capture(Kiln.Cli.SeqVerb.Build(), ["seq", "--lengths", "8", "--json"]).Code);
    }
}
