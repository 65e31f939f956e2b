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
}
