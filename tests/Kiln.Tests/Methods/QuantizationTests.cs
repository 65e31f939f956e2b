using FsCheck.Fluent;
using Kiln.Methods.Quantization;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests.Methods;

/// <summary>
/// Vector quantizers and discrete-gradient estimators (src/Kiln.Methods/Quantization): each paper's CHECK against a
/// float64 transcription of its equations written here, degenerate cases exactly, and GradCheck where differentiable.
/// </summary>
public class QuantizationTests
{
    // ------------------------------------------------------------------ shared helpers

    static double[] Rand(Random r, int n, double scale = 1) => Enumerable.Range(0, n).Select(_ => scale * (2 * r.NextDouble() - 1)).ToArray();
    static Tensor T64(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));

    // argmin_k ||z - c_k||^2 in float64, ties to the lowest index.
    static int[] NearestRef(double[] z, double[] c, int n, int k, int d) => Enumerable.Range(0, n).Select(i =>
    {
        int best = 0; double bestD = double.PositiveInfinity;
        for (int j = 0; j < k; j++)
        {
            double s = 0;
            for (int e = 0; e < d; e++) { double t = z[i * d + e] - c[j * d + e]; s += t * t; }
            if (s < bestD) { bestD = s; best = j; }
        }
        return best;
    }).ToArray();

    static FsCheck.Gen<(int N, int K, int D, int Seed)> VqCase =>
        from n in Gen.Choose(1, 9) from k in Gen.Choose(1, 7) from d in Gen.Choose(1, 6) from s in TensorGen.Seed select (n, k, d, s);

    // ------------------------------------------------------------------ straight-through VQ baseline

    [Fact]
    public void Nearest_matches_the_float64_argmin_and_every_estimator_returns_the_code_exactly()
    {
        Props.Check(VqCase, c =>
        {
            var r = new Random(c.Seed);
            double[] z = Rand(r, c.N * c.D), cb = Rand(r, c.K * c.D);
            var want = NearestRef(z, cb, c.N, c.K, c.D);
            foreach (var dtype in new[] { DType.Float64, DType.Float32 })
            {
                var zt = T64(z, c.N, c.D).To(dtype);
                var ct = T64(cb, c.K, c.D).To(dtype);
                var idx = VectorQuantization.Nearest(zt, ct).ToArray<long>();
                if (dtype == DType.Float64) Assert.Equal(want.Select(i => (long)i), idx);
                var codes = ct.IndexSelect(0, Tensor.FromArray(idx)).To(DType.Float64).ToArray<double>();
                foreach (var est in new[] { VqEstimator.StraightThrough, VqEstimator.Rotation })
                {
                    var o = VectorQuantization.Quantize(zt.Detach().RequiresGrad_(), ct, est);
                    Assert.Equal(idx, o.Indices.ToArray<long>());
                    Assert.Equal(codes, o.Quantized.To(DType.Float64).ToArray<double>());   // bit for bit, not z + (q - z)
                }
            }
        }, 40);
    }

    [Fact]
    public void Straight_through_passes_the_gradient_unchanged_and_the_losses_split_their_gradients()
    {
        var r = new Random(3);
        int n = 5, k = 4, d = 3;
        var z = T64(Rand(r, n * d), n, d).RequiresGrad_();
        var cb = T64(Rand(r, k * d), k, d).RequiresGrad_();
        var g = T64(Rand(r, n * d), n, d);
        var o = VectorQuantization.Quantize(z, cb);
        var st = Autograd.Grad([o.Quantized], [z, cb], [g]);
        Assert.Equal(g.ToArray<double>(), st[0].ToArray<double>());
        Assert.Equal(new double[k * d], st[1].ToArray<double>());
        // Codebook loss reaches only the codebook, commitment loss only the encoder.
        var o2 = VectorQuantization.Quantize(z, cb);
        var a = Autograd.Grad([o2.CodebookLoss], [z, cb]);
        Assert.Equal(new double[n * d], a[0].ToArray<double>());
        var o3 = VectorQuantization.Quantize(z, cb);
        var b = Autograd.Grad([o3.CommitmentLoss], [z, cb]);
        Assert.Equal(new double[k * d], b[1].ToArray<double>());
        // The losses' values: mean squared distance to the chosen code.
        var idx = NearestRef(z.ToArray<double>(), cb.ToArray<double>(), n, k, d);
        double want = 0;
        var zv = z.ToArray<double>(); var cv = cb.ToArray<double>();
        for (int i = 0; i < n; i++) for (int e = 0; e < d; e++) { double t = zv[i * d + e] - cv[idx[i] * d + e]; want += t * t; }
        want /= n * d;
        Assert.Equal(want, o.CodebookLoss.Item(), 1e-14);
        Assert.Equal(want, o.CommitmentLoss.Item(), 1e-14);
        Assert.NotEqual(0.0, a[1].Abs().Sum().Item());
    }

    [Fact]
    public void Vq_losses_pass_gradcheck_where_the_assignment_is_locally_constant()
    {
        var r = new Random(11);
        var z = T64(Rand(r, 12), 4, 3);
        var cb = T64(Rand(r, 15), 5, 3);
        // Each loss is a true function of the input its gradient reaches (the other side is a stop-gradient).
        var res = GradCheck.Run(xs => VectorQuantization.Quantize(z, xs[0]).CodebookLoss, [cb]);
        Assert.True(res.Passed, res.ToString());
        res = GradCheck.Run(xs => VectorQuantization.Quantize(xs[0], cb).CommitmentLoss, [z]);
        Assert.True(res.Passed, res.ToString());
    }

    [Fact]
    public void Usage_is_perplexity_and_fraction_of_codes_used()
    {
        var (p, f) = VectorQuantization.Usage(Tensor.FromArray(new long[] { 0, 0, 1, 1 }), 4);
        Assert.Equal(2.0, p, 1e-12); Assert.Equal(0.5, f);
        (p, f) = VectorQuantization.Usage(Tensor.FromArray(new long[] { 2, 2, 2 }), 3);
        Assert.Equal(1.0, p, 1e-12); Assert.Equal(1 / 3.0, f, 1e-12);
        Assert.Throws<ArgumentOutOfRangeException>(() => VectorQuantization.Usage(Tensor.FromArray(new long[] { 3 }), 3));
    }

    [Fact]
    public void Vq_rejects_mismatched_shapes_naming_the_argument()
    {
        var ex = Assert.Throws<ShapeMismatchException>(() => VectorQuantization.Nearest(Tensor.Zeros(3, 2), Tensor.Zeros(4, 3)));
        Assert.Contains("codebook", ex.Message);
        Assert.Contains("[4, 3]", ex.Message);
        Assert.Throws<ShapeMismatchException>(() => VectorQuantization.Nearest(Tensor.Zeros(3, 2), Tensor.Zeros(0, 2)));
        Assert.Throws<ShapeMismatchException>(() => VectorQuantization.RotationTrick(Tensor.Zeros(3, 2), Tensor.Zeros(3, 3)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new VectorQuantizer(0, 2));
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Estimators_run_on_every_device_and_match_the_cpu(string device)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, VqCase, c =>
        {
            var r = new Random(c.Seed);
            double[] z = Rand(r, c.N * c.D), cb = Rand(r, c.K * c.D), g = Rand(r, c.N * c.D), logits = Rand(r, c.N * c.K);
            (long[] Idx, double[] Q, double[] Gz, double[] Gl, double[] W) On(Device d)
            {
                var zt = T64(z, c.N, c.D).To(d).RequiresGrad_();
                var o = VectorQuantization.Quantize(zt, T64(cb, c.K, c.D).To(d), VqEstimator.Rotation);
                var gz = Autograd.Grad([o.Quantized], [zt], [T64(g, c.N, c.D).To(d)])[0];
                var lt = T64(logits, c.N, c.K).To(d).RequiresGrad_();
                var sample = o.Indices.OneHot(c.K, DType.Float64);
                var gl = Autograd.Grad([DiscreteEstimators.ReinMax(lt, sample, 0.7)], [lt], [sample * 0.5 - 0.1])[0];
                var w = OscillationFree.StatsQuantize(T64(cb, c.K, c.D).To(d), 3);
                return (o.Indices.To(Device.Cpu).ToArray<long>(), o.Quantized.To(Device.Cpu).ToArray<double>(), gz.To(Device.Cpu).ToArray<double>(),
                    gl.To(Device.Cpu).ToArray<double>(), w.To(Device.Cpu).ToArray<double>());
            }
            var (want, got) = (On(Device.Cpu), On(dev));
            Assert.Equal(want.Idx, got.Idx);
            Assert.Equal(want.Q, got.Q);
            Assert.True(Dense.MaxDiff(want.Gz, got.Gz) < 1e-12);
            Assert.True(Dense.MaxDiff(want.Gl, got.Gl) < 1e-12);
            Assert.True(Dense.MaxDiff(want.W, got.W) < 1e-12);
        }, 12);
    }

    // ------------------------------------------------------------------ rotation trick

    // Float64 transcription of the paper: R = I - 2 r r^T + 2 q^ e^^T, lambda = ||q||/||e||; gradient lambda R^T g.
    static (double[] R, double Lambda) RotationRef(double[] e, double[] q)
    {
        int d = e.Length;
        double ne = Math.Sqrt(e.Sum(x => x * x)), nq = Math.Sqrt(q.Sum(x => x * x));
        var eh = e.Select(x => x / ne).ToArray();
        var qh = q.Select(x => x / nq).ToArray();
        var s = eh.Select((x, i) => x + qh[i]).ToArray();
        double ns = Math.Sqrt(s.Sum(x => x * x));
        // e^ = -q^ (only in exact arithmetic, e.g. D = 1 with opposite signs): r = 0, the documented reflection.
        var rr = s.Select(x => ns == 0 ? 0 : x / ns).ToArray();
        var R = new double[d * d];
        for (int i = 0; i < d; i++) for (int j = 0; j < d; j++)
            R[i * d + j] = (i == j ? 1 : 0) - 2 * rr[i] * rr[j] + 2 * qh[i] * eh[j];
        return (R, nq / ne);
    }

    [Fact]
    public void Rotation_trick_gradient_is_lambda_R_transpose_g_with_R_orthogonal_taking_e_hat_to_q_hat()
    {
        Props.Check(from n in Gen.Choose(1, 6) from d in Gen.Choose(1, 7) from s in TensorGen.Seed select (N: n, D: d, Seed: s), c =>
        {
            var r = new Random(c.Seed);
            double[] e = Rand(r, c.N * c.D, 2), q = Rand(r, c.N * c.D, 2), g = Rand(r, c.N * c.D);
            var z = T64(e, c.N, c.D).RequiresGrad_();
            var y = VectorQuantization.RotationTrick(z, T64(q, c.N, c.D));
            Assert.Equal(q, y.ToArray<double>());
            var got = Autograd.Grad([y], [z], [T64(g, c.N, c.D)])[0].ToArray<double>();
            for (int i = 0; i < c.N; i++)
            {
                var ei = e.Skip(i * c.D).Take(c.D).ToArray();
                var qi = q.Skip(i * c.D).Take(c.D).ToArray();
                var gi = g.Skip(i * c.D).Take(c.D).ToArray();
                var (R, lambda) = RotationRef(ei, qi);
                var rtr = Dense.Mul(Dense.T(R, c.D, c.D), R, c.D, c.D, c.D);
                Assert.True(Dense.MaxDiff(rtr, Dense.Eye(c.D)) < 1e-9, "R^T R = I");
                double ne = Math.Sqrt(ei.Sum(x => x * x)), nq = Math.Sqrt(qi.Sum(x => x * x));
                var re = Dense.Mul(R, ei.Select(x => x / ne).ToArray(), c.D, c.D, 1);
                Assert.True(Dense.MaxDiff(re, qi.Select(x => x / nq).ToArray()) < 1e-9, "R e^ = q^");
                // lambda R e = q: the forward the gradient belongs to.
                Assert.True(Dense.MaxDiff(Dense.Scale(Dense.Mul(R, ei, c.D, c.D, 1), lambda), qi) < 1e-9, "lambda R e = q");
                var want = Dense.Scale(Dense.Mul(Dense.T(R, c.D, c.D), gi, c.D, c.D, 1), lambda);
                Assert.True(Dense.MaxDiff(want, got.Skip(i * c.D).Take(c.D).ToArray()) < 1e-10 * (1 + Dense.MaxAbs(want)), $"row {i}");
            }
        }, 40);
    }

    [Fact]
    public void Rotation_trick_degenerate_rows_reflect_pass_through_or_vanish()
    {
        var g = T64([0.3, -0.7, 1.1], 1, 3);
        // q = -2 e: z^ = -q^, r = 0, R = I - 2 q^ q^^T (a reflection), lambda = 2.
        var e = new[] { 1.0, 2.0, -2.0 };
        var z = T64(e, 1, 3).RequiresGrad_();
        var grad = Autograd.Grad([VectorQuantization.RotationTrick(z, T64(e.Select(x => -2 * x).ToArray(), 1, 3))], [z], [g])[0].ToArray<double>();
        var qh = e.Select(x => -x / 3).ToArray();
        double qg = qh.Zip(g.ToArray<double>(), (a, b) => a * b).Sum();
        var want = g.ToArray<double>().Select((x, i) => 2 * (x - 2 * qh[i] * qg)).ToArray();
        Assert.True(Dense.MaxDiff(want, grad) < 1e-12);
        // z = 0: straight through.
        var z0 = T64(new double[3], 1, 3).RequiresGrad_();
        Assert.Equal(g.ToArray<double>(), Autograd.Grad([VectorQuantization.RotationTrick(z0, T64([1.0, 0, 0], 1, 3))], [z0], [g])[0].ToArray<double>());
        // q = 0: lambda = 0.
        var z1 = T64(e, 1, 3).RequiresGrad_();
        Assert.Equal(new double[3], Autograd.Grad([VectorQuantization.RotationTrick(z1, T64(new double[3], 1, 3))], [z1], [g])[0].ToArray<double>());
        // q along e: R = I, lambda = ||q||/||e||.
        var z2 = T64(e, 1, 3).RequiresGrad_();
        var g2 = Autograd.Grad([VectorQuantization.RotationTrick(z2, T64(e.Select(x => 0.5 * x).ToArray(), 1, 3))], [z2], [g])[0].ToArray<double>();
        Assert.True(Dense.MaxDiff(g.ToArray<double>().Select(x => 0.5 * x).ToArray(), g2) < 1e-12);
    }

    [Fact]
    public void Rotation_trick_backward_is_differentiable_in_the_seed()
    {
        // The rule is linear in g, so a double backward through it (createGraph) gives lambda R^T v for any v.
        var r = new Random(5);
        var e = Rand(r, 6); var q = Rand(r, 6);
        var z = T64(e, 2, 3).RequiresGrad_();
        var y = VectorQuantization.RotationTrick(z, T64(q, 2, 3));
        var seed = T64(new double[6], 2, 3).RequiresGrad_();
        var gz = Autograd.Grad([y], [z], [seed], createGraph: true)[0];
        var v = T64(Rand(r, 6), 2, 3);
        var jv = Autograd.Grad([(gz * v).Sum()], [seed])[0].ToArray<double>();
        var z2 = T64(e, 2, 3).RequiresGrad_();
        var direct = Autograd.Grad([VectorQuantization.RotationTrick(z2, T64(q, 2, 3))], [z2], [v])[0].ToArray<double>();
        // <seed, lambda R^T v>'s gradient in seed is (lambda R^T)^T v = lambda R v; compare through the float64 R instead.
        for (int i = 0; i < 2; i++)
        {
            var (R, lambda) = RotationRef(e.Skip(3 * i).Take(3).ToArray(), q.Skip(3 * i).Take(3).ToArray());
            var want = Dense.Scale(Dense.Mul(R, v.ToArray<double>().Skip(3 * i).Take(3).ToArray(), 3, 3, 1), lambda);
            Assert.True(Dense.MaxDiff(want, jv.Skip(3 * i).Take(3).ToArray()) < 1e-12);
            var wantT = Dense.Scale(Dense.Mul(Dense.T(R, 3, 3), v.ToArray<double>().Skip(3 * i).Take(3).ToArray(), 3, 3, 1), lambda);
            Assert.True(Dense.MaxDiff(wantT, direct.Skip(3 * i).Take(3).ToArray()) < 1e-12);
        }
    }

    [Fact]
    public void Vector_quantizer_module_trains_its_codebook_through_the_codebook_loss()
    {
        var vq = new VectorQuantizer(4, 2, VqEstimator.Rotation, new Generator(1), DType.Float64);
        var z = T64([0.5, 0.5, -0.5, 0.5, 0.5, -0.5], 3, 2).RequiresGrad_();
        var o = vq.Call(z);
        o.Loss(0.25).Backward();
        Assert.NotNull(vq.Codebook.Grad);
        Assert.NotEqual(0.0, vq.Codebook.Grad!.Abs().Sum().Item());
        Assert.Equal(VqEstimator.Rotation, vq.Estimator);
    }

    // ------------------------------------------------------------------ SimVQ

    // E = C W^T + b in float64.
    static double[] SimVqCodebookRef(SimVQ m, int k, int d)
    {
        var c = m.Basis.ToArray<double>(); var w = m.Projection.Weight.ToArray<double>(); var b = m.Projection.Bias!.ToArray<double>();
        var e = Dense.Mul(c, Dense.T(w, d, d), k, d, d);
        for (int i = 0; i < k; i++) for (int j = 0; j < d; j++) e[i * d + j] += b[j];
        return e;
    }

    [Fact]
    public void SimVq_lookup_is_the_nearest_row_of_the_explicit_codebook_C_W_T_plus_b()
    {
        Props.Check(VqCase, c =>
        {
            var m = new SimVQ(c.K, c.D, generator: new Generator((ulong)c.Seed), dtype: DType.Float64);
            var r = new Random(c.Seed);
            var z = Rand(r, c.N * c.D);
            var e = SimVqCodebookRef(m, c.K, c.D);
            var o = m.Call(T64(z, c.N, c.D));
            var want = NearestRef(z, e, c.N, c.K, c.D);
            Assert.Equal(want.Select(i => (long)i), o.Indices.ToArray<long>());
            var rows = want.SelectMany(i => e.Skip(i * c.D).Take(c.D)).ToArray();
            Assert.True(Dense.MaxDiff(rows, o.Quantized.ToArray<double>()) < 1e-12);
            Assert.False(m.Parameters().Any(p => ReferenceEquals(p, m.Basis)), "the basis is frozen");
        }, 30);
    }

    [Fact]
    public void SimVq_codebook_loss_moves_codes_no_row_chose_through_W()
    {
        int n = 3, k = 6, d = 4;
        var r = new Random(7);
        var z = T64(Rand(r, n * d), n, d);
        var m = new SimVQ(k, d, generator: new Generator(3), dtype: DType.Float64);
        var e = SimVqCodebookRef(m, k, d);
        var o = m.Call(z);
        o.CodebookLoss.Backward();
        // dL/dE_k = 2/(N D) sum_{n: k_n = k} (E_k - z_n); dL/dW = G^T C.
        var idx = o.Indices.ToArray<long>();
        var zv = z.ToArray<double>();
        var gE = new double[k * d];
        for (int i = 0; i < n; i++) for (int j = 0; j < d; j++) gE[idx[i] * d + j] += 2.0 / (n * d) * (e[idx[i] * d + j] - zv[i * d + j]);
        var gW = Dense.Mul(Dense.T(gE, k, d), m.Basis.ToArray<double>(), d, k, d);
        Assert.True(Dense.MaxDiff(gW, m.Projection.Weight.Grad!.ToArray<double>()) < 1e-12);
        // An SGD step on W changes E_k = C_k W^T for every k, including codes no row chose.
        var unused = Enumerable.Range(0, k).Where(j => !idx.Contains(j)).ToArray();
        Assert.NotEmpty(unused);
        var dE = Dense.Mul(m.Basis.ToArray<double>(), Dense.T(gW, d, d), k, d, d);
        foreach (int j in unused) Assert.True(dE.Skip(j * d).Take(d).Any(v => Math.Abs(v) > 1e-6), $"code {j}");
        // The plain codebook's unused rows get exactly nothing.
        var cb = T64(e, k, d).RequiresGrad_();
        var gc = Autograd.Grad([VectorQuantization.Quantize(z, cb).CodebookLoss], [cb])[0].ToArray<double>();
        foreach (int j in unused) Assert.All(gc.Skip(j * d).Take(d), v => Assert.Equal(0.0, v));
    }

    [Fact]
    public void SimVq_codebook_loss_passes_gradcheck_in_W_and_b()
    {
        var m = new SimVQ(5, 3, generator: new Generator(2), dtype: DType.Float64);
        var z = T64(Rand(new Random(9), 12), 4, 3);
        var res = GradCheck.Run(xs => VectorQuantization.Quantize(z, Tensor.Linear(m.Basis, xs[0], xs[1])).CodebookLoss,
            [m.Projection.Weight.Detach(), m.Projection.Bias!.Detach()]);
        Assert.True(res.Passed, res.ToString());
    }

    // ------------------------------------------------------------------ ReinMax

    static double[] Softmax(double[] x, double tau = 1)
    {
        double mx = x.Max(); var e = x.Select(v => Math.Exp((v - mx) / tau)).ToArray(); double s = e.Sum();
        return e.Select(v => v / s).ToArray();
    }

    static double[] JacT(double[] p, double[] g) { double s = p.Zip(g, (a, b) => a * b).Sum(); return p.Select((pi, i) => pi * g[i] - pi * s).ToArray(); }

    [Fact]
    public void ReinMax_forward_is_the_sample_and_samples_follow_the_softmax()
    {
        var logits = T64([0.3, -1.0, 1.2], 1, 3);
        var counts = new double[3];
        var gen = new Generator(5);
        const int draws = 20000;
        var many = T64(Enumerable.Range(0, draws).SelectMany(_ => new[] { 0.3, -1.0, 1.2 }).ToArray(), draws, 3);
        var y = DiscreteEstimators.ReinMax(many.RequiresGrad_(), 1.0, gen).ToArray<double>();
        for (int i = 0; i < draws; i++)
        {
            Assert.Equal(1.0, y.Skip(3 * i).Take(3).Sum());
            Assert.All(y.Skip(3 * i).Take(3), v => Assert.True(v is 0.0 or 1.0));
            for (int j = 0; j < 3; j++) counts[j] += y[3 * i + j];
        }
        var p = Softmax([0.3, -1.0, 1.2]);
        for (int j = 0; j < 3; j++) Assert.True(Math.Abs(counts[j] / draws - p[j]) < 4 * Math.Sqrt(p[j] * (1 - p[j]) / draws), $"category {j}");
        var d = T64([0.0, 1.0, 0.0], 1, 3);
        Assert.Equal(d.ToArray<double>(), DiscreteEstimators.ReinMax(logits.RequiresGrad_(), d, 0.5).ToArray<double>());
        Assert.Throws<ArgumentOutOfRangeException>(() => DiscreteEstimators.ReinMax(logits, d, 0));
        Assert.Throws<ShapeMismatchException>(() => DiscreteEstimators.ReinMax(logits, T64([1.0, 0], 1, 2), 1));
    }

    [Fact]
    public void ReinMax_expected_gradient_by_enumeration_is_exact_on_quadratics_at_tau_1_and_beats_straight_through()
    {
        Props.Check(from k in Gen.Choose(2, 5) from s in TensorGen.Seed from t in Gen.Elements(1.0, 0.5, 2.0) select (K: k, Seed: s, Tau: t), c =>
        {
            var r = new Random(c.Seed);
            int k = c.K;
            var th = Rand(r, k, 2); var a = Rand(r, k);
            var b = Rand(r, k * k); var B = Dense.Add(b, Dense.T(b, k, k));
            double F(double[] x) => a.Zip(x, (u, v) => u * v).Sum() + 0.5 * x.Zip(Dense.Mul(B, x, k, k, 1), (u, v) => u * v).Sum();
            double[] GradF(double[] x) => Dense.Add(a, Dense.Mul(B, x, k, k, 1));
            var p = Softmax(th);
            var eye = Enumerable.Range(0, k).Select(i => Enumerable.Range(0, k).Select(j => i == j ? 1.0 : 0).ToArray()).ToArray();
            var exact = JacT(p, eye.Select(F).ToArray());
            var rm = new double[k]; var st = new double[k];
            for (int i = 0; i < k; i++)
            {
                var g = T64(GradF(eye[i]), 1, k);
                var x1 = T64(th, 1, k).RequiresGrad_();
                var est = Autograd.Grad([DiscreteEstimators.ReinMax(x1, T64(eye[i], 1, k), c.Tau)], [x1], [g])[0].ToArray<double>();
                // Float64 transcription: 2 J(pi1) g - J(pi0) g / 2, pi1 = (softmax(theta/tau) + D) / 2.
                var pi1 = Softmax(th, c.Tau).Select((v, j) => (v + eye[i][j]) / 2).ToArray();
                var want = Dense.Add(Dense.Scale(JacT(pi1, GradF(eye[i])), 2), JacT(p, GradF(eye[i])), -0.5);
                Assert.True(Dense.MaxDiff(want, est) < 1e-12);
                var x2 = T64(th, 1, k).RequiresGrad_();
                var stEst = Autograd.Grad([DiscreteEstimators.StraightThrough(x2, T64(eye[i], 1, k))], [x2], [g])[0].ToArray<double>();
                Assert.True(Dense.MaxDiff(JacT(p, GradF(eye[i])), stEst) < 1e-12);
                for (int j = 0; j < k; j++) { rm[j] += p[i] * est[j]; st[j] += p[i] * stEst[j]; }
            }
            if (c.Tau == 1)
            {
                Assert.True(Dense.MaxDiff(rm, exact) < 1e-10, "ReinMax (tau = 1) is unbiased for quadratic f");
                Assert.True(Dense.MaxDiff(st, exact) >= Dense.MaxDiff(rm, exact));
            }
        }, 30);
    }

    // ------------------------------------------------------------------ straightening the STE

    [Fact]
    public void Affine_running_statistics_match_the_embedding_statistics()
    {
        var r = new Random(4);
        int n = 9, k = 5, d = 3;
        var z = Rand(r, n * d, 3).Select(v => v + 2).ToArray();
        var c = Rand(r, k * d, 0.1);
        var affine = new AffineCodebook(d, AffineMode.RunningStatistics, momentum: 0.25, dtype: DType.Float64);
        affine.Update(T64(z, n, d), T64(c, k, d));
        var mapped = affine.Apply(T64(c, k, d));
        Close.Check(T64(z, n, d).Mean(0), mapped.Mean(0), 1e-9, 1e-9, "codebook mean = embedding mean");
        // Variance matches up to the transform's 1e-8 guard: var_z var_c / (var_c + 1e-8).
        var cvar = T64(c, k, d).Var(0, correction: 0);
        Close.Check(T64(z, n, d).Var(0, correction: 0) * cvar / (cvar + 1e-8), mapped.Var(0, correction: 0), 1e-9, 1e-12, "codebook variance = embedding variance");
        // The second update is an exponential moving average with the momentum (float64 transcription).
        var z2 = Rand(r, n * d);
        affine.Update(T64(z2, n, d), T64(c, k, d));
        var (scale, shift) = affine.ScaleAndShift();
        for (int j = 0; j < d; j++)
        {
            double M(double[] v, int rows) => Enumerable.Range(0, rows).Average(i => v[i * d + j]);
            double V(double[] v, int rows) { double m = M(v, rows); return Enumerable.Range(0, rows).Average(i => (v[i * d + j] - m) * (v[i * d + j] - m)); }
            double zm = 0.25 * M(z2, n) + 0.75 * M(z, n), zv = 0.25 * V(z2, n) + 0.75 * V(z, n);
            double cm = M(c, k), cv = V(c, k);
            double s = Math.Sqrt(zv / (cv + 1e-8));
            Assert.Equal(s, scale.ToArray<double>()[j], 1e-9);
            Assert.Equal(zm - s * cm, shift.ToArray<double>()[j], 1e-9);
        }
    }

    [Fact]
    public void Learnable_affine_codebook_passes_gradcheck_and_synchronized_update_splits_the_gradient()
    {
        var affine = new AffineCodebook(3, AffineMode.Learnable, learningRateScale: 0.5, dtype: DType.Float64);
        var c = T64(Rand(new Random(1), 12), 4, 3);
        Assert.Equal(c.ToArray<double>(), affine.Apply(c).ToArray<double>());   // scale 1, shift 0 at the start
        var res = GradCheck.Run(xs => xs[2] * (1.0 + 0.5 * xs[0]) + 0.5 * xs[1], [affine.Scale!.Detach(), affine.Shift!.Detach(), c]);
        Assert.True(res.Passed, res.ToString());
        var z = T64([1.0, 2, 3], 1, 3).RequiresGrad_();
        var q = T64([0.5, -1, 4], 1, 3).RequiresGrad_();
        var g = T64([0.1, 0.2, -0.3], 1, 3);
        var y = Straightening.SynchronizedStraightThrough(z, q, 0.3);
        Assert.Equal(q.ToArray<double>(), y.ToArray<double>());
        var grads = Autograd.Grad([y], [z, q], [g]);
        Assert.Equal(g.ToArray<double>(), grads[0].ToArray<double>());
        Assert.Equal(g.ToArray<double>().Select(v => 0.3 * v), grads[1].ToArray<double>());
        Assert.Throws<ArgumentException>(() => new StraightenedVectorQuantizer(4, 3, AffineMode.Learnable, alternatingSteps: 1, alternatingLearningRate: 0.1));
    }

    [Fact]
    public void Alternating_codebook_steps_shrink_the_straight_through_gradient_gap()
    {
        // Task loss L(x) = 1/2 ||x - y||^2 per row; the STE uses dL/dx at q in place of dL/dx at z, so its error is
        // q - z, and the RMS over rows is the gap. A step pulls each used code towards its rows' mean by a factor
        // 1 - lr 2 m_k / (N D) in [1/2, 23/24] here, so the gap must shrink strictly with every step. (With a general
        // task Hessian A^T A the gap's mean norm need not fall: only its bound ||A^T A|| RMS(q - z) does.)
        Props.Check(from s in TensorGen.Seed select s, seed =>
        {
            var r = new Random(seed);
            int n = 12, k = 4, d = 3;
            var z = T64(Rand(r, n * d), n, d);
            var cb = T64(Rand(r, k * d), k, d);
            double Gap(Tensor codebook, long[] idx)
            {
                var cv = codebook.ToArray<double>(); var zv = z.ToArray<double>(); double total = 0;
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < d; j++) total += Math.Pow(cv[idx[i] * d + j] - zv[i * d + j], 2);
                return Math.Sqrt(total / n);
            }
            var idx = VectorQuantization.Nearest(z, cb);
            var ids = idx.ToArray<long>();
            var stepped = Straightening.AlternatingStep(cb, z, idx, 0.5 * n * d / 2 / n);
            // Float64 transcription of one step: c_k -= lr 2/(N D) sum_{n: k_n = k} (c_k - z_n).
            double lr = 0.5 * n * d / 2 / n;
            var want = cb.ToArray<double>();
            var cv0 = cb.ToArray<double>(); var zv0 = z.ToArray<double>();
            for (int i = 0; i < n; i++) for (int j = 0; j < d; j++) want[ids[i] * d + j] -= lr * 2.0 / (n * d) * (cv0[ids[i] * d + j] - zv0[i * d + j]);
            Assert.True(Dense.MaxDiff(want, stepped.ToArray<double>()) < 1e-12);
            var twice = Straightening.AlternatingStep(stepped, z, idx, lr);
            double g0 = Gap(cb, ids), g1 = Gap(stepped, ids), g2 = Gap(twice, ids);
            Assert.True(g1 < g0 && g2 < g1, $"gap {g0} -> {g1} -> {g2}");
        }, 300);
    }

    // ------------------------------------------------------------------ online clustered codebook

    [Fact]
    public void Online_codebook_step_is_the_papers_update_with_alpha_decaying_in_usage()
    {
        int n = 10, k = 4, d = 2;
        var r = new Random(2);
        // Eight rows near (1, 1) and two near (-1, 0): usage is lopsided.
        var z = Enumerable.Range(0, n).SelectMany(i => i < 8 ? new[] { 1 + 0.1 * r.NextDouble(), 1 + 0.1 * r.NextDouble() } : new[] { -1 - 0.1 * r.NextDouble(), 0.1 * r.NextDouble() }).ToArray();
        var m = new OnlineClusteredCodebook(k, d, decay: 0.99, anchor: AnchorSampling.Closest, generator: new Generator(1), dtype: DType.Float64);
        var c0 = m.Codebook.ToArray<double>();
        var o = m.Call(T64(z, n, d));
        var idx = o.Indices.ToArray<long>();
        Assert.Equal(NearestRef(z, c0, n, k, d).Select(i => (long)i), idx);
        var c1 = m.Codebook.ToArray<double>();
        for (int j = 0; j < k; j++)
        {
            double p = 0.01 * idx.Count(i => i == j) / (double)n;
            double alpha = Math.Exp(-p * k * 10 / 0.01 - 1e-3);
            Assert.Equal(p, m.Usage.ToArray<double>()[j], 1e-15);
            // Closest anchor: the row nearest to code j (before the update).
            int best = Enumerable.Range(0, n).OrderBy(i => Math.Pow(z[i * d] - c0[j * d], 2) + Math.Pow(z[i * d + 1] - c0[j * d + 1], 2)).First();
            for (int e = 0; e < d; e++) Assert.Equal((1 - alpha) * c0[j * d + e] + alpha * z[best * d + e], c1[j * d + e], 1e-12);
            // Rare codes move almost all the way, frequent ones barely (alpha small but not zero).
            if (p == 0) Assert.True(alpha > 0.99);
            if (p >= 0.005) { Assert.True(alpha < 1e-8); Assert.True(alpha > 0); }
        }
        // Evaluation mode leaves the codebook alone.
        m.Eval();
        m.Call(T64(z, n, d));
        Assert.Equal(c1, m.Codebook.ToArray<double>());
    }

    static double TrainUsage(Kiln.NN.Module<Tensor, VqOutput> vq, Tensor data, int steps)
    {
        var opt = new Kiln.NN.AdamW(vq.Parameters(), 0.01, weightDecay: 0);
        for (int s = 0; s < steps; s++)
        {
            opt.ZeroGrad();
            vq.Call(data).Loss(0.25).Backward();
            opt.Step();
        }
        using (Autograd.NoGrad()) { vq.Eval(); return VectorQuantization.Usage(vq.Call(data).Indices, 16).FractionUsed; }
    }

    [Fact]
    public void Online_clustered_codebook_uses_more_codes_than_plain_vq_on_a_gaussian_mixture()
    {
        // Eight tight clusters on a circle of radius 3, far from the codebook's start (uniform on +-1/16).
        var r = new Random(0);
        var data = T64(Enumerable.Range(0, 256).SelectMany(i =>
        {
            double t = 2 * Math.PI * (i % 8) / 8;
            return new[] { 3 * Math.Cos(t) + 0.1 * r.NextDouble(), 3 * Math.Sin(t) + 0.1 * r.NextDouble() };
        }).ToArray(), 256, 2);
        double plain = TrainUsage(new VectorQuantizer(16, 2, generator: new Generator(1), dtype: DType.Float64), data, 40);
        double online = TrainUsage(new OnlineClusteredCodebook(16, 2, generator: new Generator(1), dtype: DType.Float64), data, 40);
        Assert.True(online > plain, $"fraction used: online {online}, plain {plain}");
        Assert.True(online >= 0.5, $"online uses {online}");
    }

    // ------------------------------------------------------------------ oscillation-free quantization

    [Fact]
    public void StatsQ_levels_and_clipping_match_the_float64_transcription()
    {
        Props.Check(from rows in Gen.Choose(1, 4) from cols in Gen.Choose(1, 9) from bits in Gen.Choose(2, 4) from s in TensorGen.Seed select (Rows: rows, Cols: cols, Bits: bits, Seed: s), c =>
        {
            var r = new Random(c.Seed);
            var w = Rand(r, c.Rows * c.Cols, 2);
            var wt = T64(w, c.Rows, c.Cols).RequiresGrad_();
            var q = OscillationFree.StatsQuantize(wt, c.Bits);
            double n = Math.Pow(2, c.Bits - 1);
            var got = q.ToArray<double>();
            for (int i = 0; i < c.Rows; i++)
            {
                double s = 2 * Enumerable.Range(0, c.Cols).Average(j => Math.Abs(w[i * c.Cols + j]));
                for (int j = 0; j < c.Cols; j++)
                {
                    double x = Math.Clamp(w[i * c.Cols + j] / s, -1, 1 - 1e-6);
                    double level = Math.Round(x * n - 0.5, MidpointRounding.ToEven);
                    Assert.InRange(level, -n, n - 1);
                    Assert.Equal(s * (level + 0.5) / n, got[i * c.Cols + j], 1e-12);
                }
            }
            // Straight-through: identity gradient; CGA-frozen weights get none.
            var g = T64(Rand(r, c.Rows * c.Cols), c.Rows, c.Cols);
            Assert.Equal(g.ToArray<double>(), Autograd.Grad([q], [wt], [g])[0].ToArray<double>());
            var frozen = OscillationFree.ConfidenceFrozen(wt, c.Bits, 0.1);
            var wt2 = T64(w, c.Rows, c.Cols).RequiresGrad_();
            var gf = Autograd.Grad([OscillationFree.StatsQuantize(wt2, c.Bits, frozen)], [wt2], [g])[0].ToArray<double>();
            var fz = frozen.ToArray<bool>();
            for (int e = 0; e < w.Length; e++)
            {
                int i = e / c.Cols;
                double s = 2 * Enumerable.Range(0, c.Cols).Average(j => Math.Abs(w[i * c.Cols + j]));
                double b4 = Math.Clamp(w[e] / s, -1, 1 - 1e-6) * n - 0.5;
                // The authors' loop: not frozen when b4 - i is within the range of 1/2 for some i in [-n, n - 2].
                bool moving = false;
                for (double t = -n; t <= n - 2; t++) moving |= b4 - t <= 0.5 + 0.1 && b4 - t >= 0.5 - 0.1;
                Assert.Equal(!moving, fz[e]);
                Assert.Equal(moving ? g.ToArray<double>()[e] : 0.0, gf[e]);
            }
        }, 40);
    }

    [Fact]
    public void Query_key_reparameterisation_leaves_attention_logits_unchanged()
    {
        Props.Check(from h in Gen.Choose(1, 3) from dh in Gen.Choose(1, 3) from nTok in Gen.Choose(1, 5) from s in TensorGen.Seed select (H: h, Dh: dh, N: nTok, Seed: s), c =>
        {
            var r = new Random(c.Seed);
            int cdim = c.H * c.Dh;
            var wq = Rand(r, cdim * cdim); var wk = Rand(r, cdim * cdim); var x = Rand(r, c.N * cdim);
            double scale = 1 / Math.Sqrt(c.Dh);
            var logits = OscillationFree.QueryKeyLogits(T64(x, c.N, cdim), OscillationFree.QueryKeyProduct(T64(wq, cdim, cdim), T64(wk, cdim, cdim), c.H), scale).ToArray<double>();
            // Standard attention: Q = x Wq^T, K = x Wk^T, split into heads, logits Q_h K_h^T scale.
            var q = Dense.Mul(x, Dense.T(wq, cdim, cdim), c.N, cdim, cdim);
            var k = Dense.Mul(x, Dense.T(wk, cdim, cdim), c.N, cdim, cdim);
            for (int h = 0; h < c.H; h++)
                for (int i = 0; i < c.N; i++)
                    for (int j = 0; j < c.N; j++)
                    {
                        double want = Enumerable.Range(0, c.Dh).Sum(e => q[i * cdim + h * c.Dh + e] * k[j * cdim + h * c.Dh + e]) * scale;
                        Assert.Equal(want, logits[(h * c.N + i) * c.N + j], 1e-12);
                    }
        }, 30);
        Assert.Throws<ArgumentException>(() => OscillationFree.QueryKeyProduct(Tensor.Zeros(4, 4), Tensor.Zeros(4, 4), 3));
    }

    [Fact]
    public void Oscillation_tracker_counts_direction_reversals_exactly()
    {
        var t = new OscillationTracker();
        int[] flips = [.. new[] { 0, 1, 0, 1, 1, 2, 1 }.Select(v => t.Update(Tensor.FromArray(new double[] { v, 3 })))];
        Assert.Equal([0, 0, 1, 1, 0, 0, 1], flips);
        Assert.Equal(3, t.Total);
        Assert.Equal([3L, 0L], t.Counts!);
        Assert.Throws<ShapeMismatchException>(() => t.Update(Tensor.FromArray(new double[] { 1 })));
    }

    [Fact]
    public void Level_flips_on_a_synthetic_regression_match_a_float64_simulation()
    {
        // y = X w* with w* between 2-bit StatsQ levels: straight-through SGD on the quantized weights keeps flipping
        // levels. The Kiln path (StatsQuantize, autodiff, OscillationTracker) against a plain float64 simulation.
        const int bits = 2, dim = 16, rows = 64, steps = 120;
        const double lr = 0.05, n = 2;
        var r = new Random(1);
        var xv = Rand(r, rows * dim);
        var target = Enumerable.Range(0, dim).Select(i => (i % 2 == 0 ? 1 : -1) * (0.25 + 0.5 * (i % 3 == 0 ? 1 : 0))).ToArray();
        var yv = Dense.Mul(xv, target, rows, dim, 1);
        var w0 = Rand(new Random(2), dim);
        int[] Levels(double[] w)
        {
            double s = 2 * w.Average(Math.Abs);
            return w.Select(v => (int)Math.Round(Math.Clamp(v / s, -1, 1 - 1e-6) * n - 0.5, MidpointRounding.ToEven)).ToArray();
        }
        // Float64 simulation with its own flip count.
        var w = (double[])w0.Clone();
        var prev = Levels(w); var dir = new int[dim]; long want = 0;
        for (int step = 0; step < steps; step++)
        {
            double s = 2 * w.Average(Math.Abs);
            var q = Levels(w).Select(l => s * (l + 0.5) / n).ToArray();
            var res = Dense.Add(Dense.Mul(xv, q, rows, dim, 1), yv, -1);
            var g = Dense.Scale(Dense.Mul(Dense.T(xv, rows, dim), res, dim, rows, 1), 2.0 / rows);
            w = Dense.Add(w, g, -lr);
            var lev = Levels(w);
            for (int i = 0; i < dim; i++)
            {
                int d = Math.Sign(lev[i] - prev[i]);
                if (d == 0) continue;
                if (d == -dir[i]) want++;
                dir[i] = d;
            }
            prev = lev;
        }
        var x = T64(xv, rows, dim); var y = T64(yv, rows, 1);
        var wt = T64(w0, 1, dim);
        var tracker = new OscillationTracker();
        tracker.Update(OscillationFree.StatsLevels(wt, bits).Levels);
        for (int step = 0; step < steps; step++)
        {
            var leaf = wt.Detach().RequiresGrad_();
            var loss = (x.MatMul(OscillationFree.StatsQuantize(leaf, bits).Transpose(0, 1)) - y).Square().Mean();
            wt = (wt - lr * Autograd.Grad(loss, leaf)).Detach();
            tracker.Update(OscillationFree.StatsLevels(wt, bits).Levels);
        }
        Assert.True(want > 10, $"the regression oscillates ({want} flips)");
        Assert.Equal(want, tracker.Total);
        Assert.True(Dense.MaxDiff(w, wt.ToArray<double>()) < 1e-9);
    }
}

/// <summary>`kiln vq --json` on a tiny run: one JSON object with every method's usage and reconstruction error.</summary>
[Collection(nameof(SerialCollection))]
public class VqVerbTests
{
    [Fact]
    public void Kiln_vq_json_prints_one_object_with_every_method()
    {
        var j = CliRun.JsonObject(Kiln.Cli.VqVerb.Build(), ["vq", "--json", "--steps", "6", "--eval-every", "3", "--codes", "8"]);
        Assert.Equal(6, j.GetProperty("steps").GetInt32());
        Assert.Equal(1797, j.GetProperty("train_images").GetInt32() + j.GetProperty("test_images").GetInt32());
        var methods = j.GetProperty("methods").EnumerateArray().ToList();
        Assert.Equal(["straight-through", "rotation", "simvq", "online-clustered"], methods.Select(m => m.GetProperty("method").GetString()));
        foreach (var m in methods)
        {
            Assert.InRange(m.GetProperty("perplexity").GetDouble(), 1, 8);
            Assert.InRange(m.GetProperty("fraction_used").GetDouble(), 1 / 8.0, 1);
            Assert.True(m.GetProperty("reconstruction_mse").GetDouble() > 0);
            Assert.Equal([0, 3, 6], m.GetProperty("curve").EnumerateArray().Select(c => c.GetProperty("step").GetInt32()));
        }
        var badMethod = CliRun.Capture(Kiln.Cli.VqVerb.Build(), ["vq", "--json", "--methods", "kmeans"]);
        var every = CliRun.Capture(Kiln.Cli.VqVerb.Build(), ["vq", "--json", "--eval-every", "0"]);
        Assert.Equal(2, badMethod.Code);
        Assert.Equal(2, every.Code);
        Assert.Contains("kiln: --methods: 'kmeans'", badMethod.Err);
        Assert.Contains("kiln: --eval-every: ", every.Err);
    }
}
