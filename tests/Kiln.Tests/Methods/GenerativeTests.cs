using Kiln.Methods.Generative;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests.Methods;

/// <summary>
/// Generative and encoding methods (ResBit, orthogonal MBAT, IGN, PFGM++) against float64 transcriptions of their papers' equations.
/// </summary>
public class GenerativeTests
{
    // ------------------------------------------------------------------ ResBit

    // The paper's construction written out: greedy blocks of ⌊log₂(R + 1)⌋ bits, then category n filled block by block.
    static List<int> RefBlocks(int c)
    {
        var ks = new List<int>();
        for (int rest = c - 1; rest > 0;)
        {
            int k = (int)Math.Floor(Math.Log2(rest + 1) + 1e-12);
            ks.Add(k);
            rest -= (int)Math.Pow(2, k) - 1;
        }
        return ks;
    }

    static double[] RefCode(int n, List<int> ks)
    {
        var code = new List<double>();
        foreach (int k in ks)
        {
            int cap = (int)Math.Pow(2, k) - 1, v = Math.Min(n, cap);
            n -= v;
            for (int b = k - 1; b >= 0; b--) code.Add((v / (int)Math.Pow(2, b)) % 2 == 1 ? 1 : -1);
        }
        return [.. code];
    }

    [Fact]
    public void ResBit_matches_its_construction_and_round_trips()
    {
        var rng = new Random(11);
        foreach (int c in new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 100, 255, 256, 1000 }.Concat(Enumerable.Range(0, 8).Select(_ => rng.Next(2, 5000))))
        {
            var rb = new ResBit(c);
            var ks = RefBlocks(c);
            Assert.Equal(ks, rb.BlockBits);
            Assert.Equal(c - 1, ks.Sum(k => (1 << k) - 1));
            var all = Tensor.FromArray(Enumerable.Range(0, c).Select(i => (long)i).ToArray());
            var code = rb.Encode(all, DType.Float64);
            Assert.Equal(new Shape(c, ks.Sum()), code.Shape);
            var got = code.ToArray<double>();
            for (int n = 0; n < c; n++) Assert.Equal(RefCode(n, ks), got.Skip(n * rb.Width).Take(rb.Width).ToArray());
            // Injective on [0, C): decoding the codes gives every category back exactly.
            Assert.Equal(all.ToArray<long>(), rb.Decode(code).ToArray<long>());
        }
    }

    [Fact]
    public void ResBit_decodes_noisy_and_arbitrary_codes_to_valid_categories()
    {
        var g = new Generator(3);
        foreach (int c in new[] { 3, 6, 37, 300 })
        {
            var rb = new ResBit(c);
            var idx = Tensor.RandInt(new Shape(4, 9), 0, c, g);
            var code = rb.Encode(idx, DType.Float64);
            // Any perturbation below 1 in every bit keeps each bit's sign, so the decoded category is unchanged.
            var noise = Tensor.Rand(code.Shape, g, -0.999, 0.999, DType.Float64);
            Assert.Equal(idx.ToArray<long>(), rb.Decode(code + noise).ToArray<long>());
            // Any real vector decodes into [0, C): the sum of block capacities is C − 1.
            var arbitrary = rb.Decode(Tensor.Randn(new Shape(200, rb.Width), g, dtype: DType.Float64)).ToArray<long>();
            Assert.All(arbitrary, v => Assert.InRange(v, 0, c - 1));
            // Every category is reached by a bit pattern whose decoding is it.
            Assert.Equal(Enumerable.Range(0, c).Select(i => (long)i), rb.Decode(rb.Encode(Tensor.FromArray(Enumerable.Range(0, c).Select(i => (long)i).ToArray()))).ToArray<long>());
        }
    }

    [Fact]
    public void ResBit_degenerate_and_bad_input()
    {
        var one = new ResBit(1);
        Assert.Equal(0, one.Width);
        Assert.Equal(new Shape(3, 0), one.Encode(Tensor.Zeros(new Shape(3), DType.Int64)).Shape);
        Assert.Equal(new long[3], one.Decode(Tensor.Zeros(new Shape(3, 0), DType.Float64)).ToArray<long>());
        var pow = new ResBit(8);
        Assert.Equal([3, 0], [pow.Width, pow.BlockBits.Count - 1]);
        Assert.Equal(new Shape(0, 3), pow.Encode(Tensor.Zeros(new Shape(0), DType.Int64)).Shape);
        Assert.Equal("categories", Assert.Throws<ArgumentOutOfRangeException>(() => new ResBit(0)).ParamName);
        Assert.Contains("index 8", Assert.Throws<ArgumentException>(() => pow.Encode(Tensor.FromArray(new long[] { 1, 8 }))).Message);
        Assert.Contains("Float64", Assert.Throws<ArgumentException>(() => pow.Encode(Tensor.Zeros(new Shape(2), DType.Float64))).Message);
        Assert.Equal("bits", Assert.Throws<ShapeMismatchException>(() => pow.Decode(Tensor.Zeros(new Shape(2, 4), DType.Float64))).ParamName);
        Assert.Contains("NaN", Assert.Throws<ArgumentException>(() => pow.Decode(Tensor.Full(new Shape(3), double.NaN, DType.Float64))).Message);
    }

    // ------------------------------------------------------------------ Orthogonal MBAT

    static double Dot(double[] a, double[] b) { double s = 0; for (int i = 0; i < a.Length; i++) s += a[i] * b[i]; return s; }

    static double[] MatVec(double[] m, double[] v, int d, bool transpose)
    {
        var r = new double[d];
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++) r[i] += (transpose ? m[j * d + i] : m[i * d + j]) * v[j];
        return r;
    }

    [Fact]
    public void Mbat_binding_is_an_exact_invertible_isometry()
    {
        var rng = new Random(5);
        for (int trial = 0; trial < 12; trial++)
        {
            int d = rng.Next(1, 24), n = rng.Next(0, 5);
            var g = new Generator((ulong)trial);
            var m = Mbat.RandomOrthogonal(d, g);
            var md = m.ToArray<double>();
            // MᵀM = I.
            for (int i = 0; i < d; i++)
                for (int j = 0; j < d; j++)
                {
                    double s = 0;
                    for (int k = 0; k < d; k++) s += md[k * d + i] * md[k * d + j];
                    Assert.Equal(i == j ? 1 : 0, s, 1e-12);
                }
            var v = Tensor.Randn(new Shape(n, d), g, dtype: DType.Float64);
            var bound = Mbat.Bind(m, v);
            var back = Mbat.Unbind(m, bound).ToArray<double>();
            var vd = v.ToArray<double>();
            var bd = bound.ToArray<double>();
            for (int r = 0; r < n; r++)
            {
                var row = vd.Skip(r * d).Take(d).ToArray();
                var want = MatVec(md, row, d, transpose: false);
                for (int i = 0; i < d; i++) Assert.Equal(want[i], bd[r * d + i], 1e-12);
                for (int i = 0; i < d; i++) Assert.Equal(row[i], back[r * d + i], 1e-12);
                // Dot products among rows survive binding.
                for (int q = 0; q < n; q++)
                {
                    var other = vd.Skip(q * d).Take(d).ToArray();
                    Assert.Equal(Dot(row, other), Dot(want, MatVec(md, other, d, transpose: false)), 1e-10);
                }
            }
        }
    }

    [Fact]
    public void Mbat_differently_bound_terms_are_nearly_orthogonal_and_recoverable()
    {
        const int d = 256, pairs = 24;
        var g = new Generator(9);
        var roles = Enumerable.Range(0, pairs).Select(_ => Mbat.RandomOrthogonal(d, g)).ToArray();
        var fillers = Tensor.Randn(new Shape(pairs, d), g, dtype: DType.Float64);
        var v = Tensor.Randn(new Shape(d), g, dtype: DType.Float64);
        // cos(M_a v, M_b v) over independent Haar matrices has mean 0 and variance 1/d: the sample of 276 pairs must
        // have its mean within 4 standard errors of 0 and its mean square within 30% of 1/d.
        var bound = roles.Select(m => Mbat.Bind(m, v)).ToArray();
        var cos = new List<double>();
        for (int a = 0; a < pairs; a++)
            for (int b = a + 1; b < pairs; b++) cos.Add(Mbat.Cosine(bound[a], bound[b]).Item());
        Assert.InRange(cos.Average(), -4 / Math.Sqrt(d * cos.Count), 4 / Math.Sqrt(d * cos.Count));
        Assert.InRange(cos.Average(c => c * c) * d, 0.7, 1.3);
        // Same matrix: cosine preserved exactly.
        var u = Tensor.Randn(new Shape(d), g, dtype: DType.Float64);
        Assert.Equal(Mbat.Cosine(u, v).Item(), Mbat.Cosine(Mbat.Bind(roles[0], u), bound[0]).Item(), 1e-12);
        // A bundle Σ M_i f_i of 8 terms answers "filler of role i" by unbinding and taking the most similar of the 24
        // fillers: the filler's own dot product (≈ d) is 6 standard deviations of the cross-talk (≈ √(7d)) from 0.
        const int terms = 8;
        var bundle = Enumerable.Range(0, terms).Select(i => Mbat.Bind(roles[i], fillers.Narrow(0, i, 1).Squeeze(0))).Aggregate((x, y) => x + y);
        for (int i = 0; i < terms; i++)
            Assert.Equal(i, (int)Mbat.Cosine(fillers, Mbat.Unbind(roles[i], bundle)).ArgMax(0).Item());
    }

    [Fact]
    public void Mbat_rejects_bad_shapes()
    {
        var m = Mbat.RandomOrthogonal(3, new Generator(1));
        Assert.Equal("vectors", Assert.Throws<ShapeMismatchException>(() => Mbat.Bind(m, Tensor.Zeros(new Shape(2, 4), DType.Float64))).ParamName);
        Assert.Equal("bound", Assert.Throws<ShapeMismatchException>(() => Mbat.Unbind(m, Tensor.Zeros(new Shape(4), DType.Float64))).ParamName);
        Assert.Equal("matrix", Assert.Throws<ShapeMismatchException>(() => Mbat.Bind(Tensor.Zeros(new Shape(3, 2), DType.Float64), Tensor.Zeros(new Shape(3), DType.Float64))).ParamName);
        Assert.Equal("dim", Assert.Throws<ArgumentOutOfRangeException>(() => Mbat.RandomOrthogonal(0, new Generator(1))).ParamName);
    }
    // ------------------------------------------------------------------ Idempotent Generative Network

    // The test network f(x) = tanh(x W + b) on rows of width d, in float64 by hand.
    static double[] RefNet(double[] w, double[] b, double[] x, int n, int d)
    {
        var y = new double[n * d];
        for (int r = 0; r < n; r++)
            for (int j = 0; j < d; j++)
            {
                double s = b[j];
                for (int i = 0; i < d; i++) s += x[r * d + i] * w[i * d + j];
                y[r * d + j] = Math.Tanh(s);
            }
        return y;
    }

    static double Mse(double[] a, double[] b) => a.Length == 0 ? double.NaN : a.Select((v, i) => (v - b[i]) * (v - b[i])).Average();

    // θ = (W, b) flattened into one vector for finite differences.
    static (double[] W, double[] B) Split(double[] theta, int d) => (theta[..(d * d)], theta[(d * d)..]);

    static Func<Tensor, Tensor> Net(Tensor w, Tensor b) => v => (v.MatMul(w) + b).Tanh();

    static double[] CentralDiff(Func<double[], double> f, double[] theta)
    {
        var g = new double[theta.Length];
        for (int i = 0; i < theta.Length; i++)
        {
            var p = (double[])theta.Clone(); p[i] += 1e-6;
            var m = (double[])theta.Clone(); m[i] -= 1e-6;
            g[i] = (f(p) - f(m)) / 2e-6;
        }
        return g;
    }

    [Fact]
    public void Ign_losses_match_their_equations()
    {
        var rng = new Random(21);
        for (int trial = 0; trial < 10; trial++)
        {
            int n = rng.Next(1, 5), d = rng.Next(1, 5);
            double lr = rng.NextDouble() * 20, li = rng.NextDouble() * 20, lt = rng.NextDouble() * 3, a = 1 + rng.NextDouble();
            var g = new Generator((ulong)trial + 100);
            var w = Tensor.Randn(new Shape(d, d), g, dtype: DType.Float64);
            var b = Tensor.Randn(new Shape(d), g, dtype: DType.Float64);
            var x = Tensor.Randn(new Shape(n, d), g, dtype: DType.Float64);
            var z = Tensor.Randn(new Shape(n, d), g, dtype: DType.Float64);
            double[] wd = w.ToArray<double>(), bd = b.ToArray<double>(), xd = x.ToArray<double>(), zd = z.ToArray<double>();
            var fz = RefNet(wd, bd, zd, n, d);
            double rec = Mse(RefNet(wd, bd, xd, n, d), xd), idem = Mse(RefNet(wd, bd, fz, n, d), fz), tight = -idem;
            var plain = IdempotentGenerativeNetwork.Losses(Net(w, b), Net(w.Detach(), b.Detach()), x, z, lr, li, lt);
            Assert.Equal(rec, plain.Reconstruction.Item(), 1e-12);
            Assert.Equal(idem, plain.Idempotence.Item(), 1e-12);
            Assert.Equal(tight, plain.Tightness.Item(), 1e-12);
            Assert.Equal(lr * rec + li * idem + lt * tight, plain.Total.Item(), 1e-10);
            var clamped = IdempotentGenerativeNetwork.Losses(Net(w, b), Net(w.Detach(), b.Detach()), x, z, lr, li, lt, a);
            double want = Math.Tanh(tight / (a * rec)) * a * rec;
            Assert.Equal(want, clamped.Tightness.Item(), 1e-12);
            Assert.True(Math.Abs(clamped.Tightness.Item()) <= a * rec + 1e-15);
        }
    }

    [Fact]
    public void Ign_gradients_follow_the_stop_gradient_routing()
    {
        const int n = 3, d = 2;
        var g = new Generator(8);
        var w = Tensor.Randn(new Shape(d, d), g, dtype: DType.Float64).RequiresGrad_();
        var b = Tensor.Randn(new Shape(d), g, dtype: DType.Float64).RequiresGrad_();
        var x = Tensor.Randn(new Shape(n, d), g, dtype: DType.Float64);
        var z = Tensor.Randn(new Shape(n, d), g, dtype: DType.Float64);
        double[] xd = x.ToArray<double>(), zd = z.ToArray<double>();
        var theta0 = w.ToArray<double>().Concat(b.ToArray<double>()).ToArray();
        var (w0, b0) = Split(theta0, d);
        var fz0 = RefNet(w0, b0, zd, n, d);
        var losses = IdempotentGenerativeNetwork.Losses(Net(w, b), Net(w.Detach(), b.Detach()), x, z, 1, 1, 1, 1.5);

        double[] Grad(Tensor loss) { var gs = Autograd.Grad([loss], [w, b]); return gs[0].ToArray<double>().Concat(gs[1].ToArray<double>()).ToArray(); }

        // L_idem: θ varies only in the inner application; the outer one stays at θ′ = θ₀.
        var idemFd = CentralDiff(t => { var (wi, bi) = Split(t, d); var f = RefNet(wi, bi, zd, n, d); return Mse(RefNet(w0, b0, f, n, d), f); }, theta0);
        Assert.True(Dense.MaxDiff(idemFd, Grad(losses.Idempotence)) < 1e-7);
        // L_tight (clamped, L_rec constant): θ varies only in the outer application on the fixed f_θ′(z).
        double rec0 = Mse(RefNet(w0, b0, xd, n, d), xd);
        var tightFd = CentralDiff(t => { var (wo, bo) = Split(t, d); return Math.Tanh(-Mse(RefNet(wo, bo, fz0, n, d), fz0) / (1.5 * rec0)) * 1.5 * rec0; }, theta0);
        Assert.True(Dense.MaxDiff(tightFd, Grad(losses.Tightness)) < 1e-7);
        // L_rec is differentiated as written.
        var recFd = CentralDiff(t => { var (wr, br) = Split(t, d); return Mse(RefNet(wr, br, xd, n, d), xd); }, theta0);
        Assert.True(Dense.MaxDiff(recFd, Grad(losses.Reconstruction)) < 1e-7);
        // The routing matters: the full derivative of δ_θ(f_θ(z)) is a different vector from either routed one.
        var fullFd = CentralDiff(t => { var (wf, bf) = Split(t, d); var f = RefNet(wf, bf, zd, n, d); return Mse(RefNet(wf, bf, f, n, d), f); }, theta0);
        Assert.True(Dense.MaxDiff(fullFd, idemFd) > 1e-3);
        Assert.True(Dense.MaxDiff(fullFd, CentralDiff(t => { var (wo, bo) = Split(t, d); return Mse(RefNet(wo, bo, fz0, n, d), fz0); }, theta0)) > 1e-3);
    }

    [Fact]
    public void Ign_degenerate_and_bad_input()
    {
        var x = Tensor.Randn(new Shape(4, 3), new Generator(2), dtype: DType.Float64);
        var z = Tensor.Randn(new Shape(4, 3), new Generator(3), dtype: DType.Float64);
        // The identity is idempotent and reconstructs everything: every loss is 0.
        var id = IdempotentGenerativeNetwork.Losses(v => v, v => v, x, z, 20, 20, 2.5);
        Assert.Equal([0.0, 0.0, 0.0, 0.0], new[] { id.Reconstruction, id.Idempotence, id.Tightness, id.Total }.Select(t => Math.Abs(t.Item())));
        Assert.Equal("z", Assert.Throws<ShapeMismatchException>(() => IdempotentGenerativeNetwork.Losses(v => v, v => v, x, Tensor.Zeros(new Shape(4, 2), DType.Float64), 1, 1, 1)).ParamName);
        Assert.Equal("model", Assert.Throws<ShapeMismatchException>(() => IdempotentGenerativeNetwork.Losses(v => v.Sum([1]), v => v, x, z, 1, 1, 1)).ParamName);
        Assert.Equal("tightnessWeight", Assert.Throws<ArgumentOutOfRangeException>(() => IdempotentGenerativeNetwork.Losses(v => v, v => v, x, z, 1, 1, -1)).ParamName);
        Assert.Equal("tightClamp", Assert.Throws<ArgumentOutOfRangeException>(() => IdempotentGenerativeNetwork.Losses(v => v, v => v, x, z, 1, 1, 1, 0)).ParamName);
    }
    // ------------------------------------------------------------------ PFGM++

    static double RefLogKernel(double[] x, double[] y, double r, double dAug)
    {
        int n = x.Length;
        double rho2 = x.Select((v, i) => (v - y[i]) * (v - y[i])).Sum();
        return Kiln.Methods.Smoothing.MonteCarloSmoothing.LogGamma((n + dAug) / 2) - n / 2.0 * Math.Log(Math.PI)
            - Kiln.Methods.Smoothing.MonteCarloSmoothing.LogGamma(dAug / 2) + dAug * Math.Log(r) - (n + dAug) / 2 * Math.Log(rho2 + r * r);
    }

    [Fact]
    public void Pfgmpp_kernel_matches_its_density_and_is_normalized()
    {
        var rng = new Random(31);
        for (int trial = 0; trial < 10; trial++)
        {
            int rows = rng.Next(0, 4), n = rng.Next(1, 6);
            double dAug = 0.5 + rng.NextDouble() * 200, r = 0.1 + rng.NextDouble() * 5;
            var g = new Generator((ulong)trial + 300);
            var x = Tensor.Randn(new Shape(rows, n), g, dtype: DType.Float64);
            var y = Tensor.Randn(new Shape(rows, n), g, dtype: DType.Float64);
            var got = Pfgmpp.LogKernel(x, y, r, dAug).ToArray<double>();
            Assert.Equal(rows, got.Length);
            double[] xd = x.ToArray<double>(), yd = y.ToArray<double>();
            for (int i = 0; i < rows; i++) Assert.Equal(RefLogKernel(xd[(i * n)..((i + 1) * n)], yd[(i * n)..((i + 1) * n)], r, dAug), got[i], 1e-9);
        }
        // N = 1: ∫ p_r(x | 0) dx = 1, by the midpoint rule on x = r tan θ, θ ∈ (−π/2, π/2).
        foreach (var (r, dAug) in new[] { (1.0, 1.0), (0.3, 4.0), (2.0, 64.0) })
        {
            const int m = 20000;
            var theta = Enumerable.Range(0, m).Select(k => -Math.PI / 2 + (k + 0.5) * Math.PI / m).ToArray();
            var xs = Tensor.FromArray(theta.Select(t => r * Math.Tan(t)).ToArray(), new Shape(m, 1));
            var logp = Pfgmpp.LogKernel(xs, Tensor.Zeros(new Shape(m, 1), DType.Float64), r, dAug).ToArray<double>();
            double mass = theta.Select((t, k) => Math.Exp(logp[k]) * r / (Math.Cos(t) * Math.Cos(t)) * Math.PI / m).Sum();
            Assert.Equal(1, mass, 1e-6);
        }
        var gc = GradCheck.Run(xs => Pfgmpp.LogKernel(xs[0], xs[1], 0.7, 5), [Tensor.Randn(new Shape(3, 2), new Generator(4), dtype: DType.Float64), Tensor.Randn(new Shape(3, 2), new Generator(5), dtype: DType.Float64)]);
        Assert.True(gc.Passed, gc.ToString());
    }

    [Fact]
    public void Pfgmpp_kernel_tends_to_the_gaussian_as_d_grows()
    {
        const double sigma = 0.8;
        var g = new Generator(12);
        var x = Tensor.Randn(new Shape(5, 3), g, dtype: DType.Float64);
        var y = Tensor.Randn(new Shape(5, 3), g, dtype: DType.Float64);
        double[] xd = x.ToArray<double>(), yd = y.ToArray<double>();
        var gauss = Enumerable.Range(0, 5).Select(i =>
            -1.5 * Math.Log(2 * Math.PI * sigma * sigma) - Enumerable.Range(0, 3).Sum(j => Math.Pow(xd[i * 3 + j] - yd[i * 3 + j], 2)) / (2 * sigma * sigma)).ToArray();
        double previous = double.PositiveInfinity;
        foreach (double dAug in new[] { 4.0, 40, 400, 4000, 40000, 400000 })
        {
            double err = Dense.MaxDiff(gauss, Pfgmpp.LogKernel(x, y, Pfgmpp.Radius(sigma, dAug), dAug).ToArray<double>());
            Assert.True(err < previous, $"D = {dAug}: error {err} did not fall below {previous}");
            previous = err;
        }
        Assert.True(previous < 1e-3, $"error at D = 4e5 is {previous}");
    }

    [Fact]
    public void Pfgmpp_samples_follow_the_kernel()
    {
        const int m = 3000, n = 3, dAug = 8;
        const double r = 1.3;
        var y = Tensor.Randn(new Shape(m, n), new Generator(40), dtype: DType.Float64);
        var x = Pfgmpp.Perturb(y, r, dAug, new Generator(41));
        double[] xd = x.ToArray<double>(), yd = y.ToArray<double>();
        // R₁ = ‖x − y‖²/(‖x − y‖² + r²) ~ Beta(N/2, D/2): Kolmogorov–Smirnov distance below the 1% critical value.
        var r1 = Enumerable.Range(0, m).Select(i => { double s = Enumerable.Range(0, n).Sum(j => Math.Pow(xd[i * n + j] - yd[i * n + j], 2)); return s / (s + r * r); }).OrderBy(v => v).ToArray();
        double ks = r1.Select((v, i) => { double c = Kiln.Methods.Smoothing.MonteCarloSmoothing.RegularizedBeta(v, n / 2.0, dAug / 2.0); return Math.Max(Math.Abs(c - i / (double)m), Math.Abs(c - (i + 1) / (double)m)); }).Max();
        Assert.True(ks < 1.63 / Math.Sqrt(m), $"KS distance {ks}");
        // Directions are uniform: the mean unit direction is within 4 standard errors (1/√(N m)) of 0 in each coordinate.
        for (int j = 0; j < n; j++)
        {
            double mean = Enumerable.Range(0, m).Average(i => { var dv = Enumerable.Range(0, n).Select(k => xd[i * n + k] - yd[i * n + k]).ToArray(); return dv[j] / Math.Sqrt(Dot(dv, dv)); });
            Assert.InRange(mean, -4 / Math.Sqrt(n * m), 4 / Math.Sqrt(n * m));
        }
    }

    [Fact]
    public void Pfgmpp_rejects_bad_input()
    {
        var y = Tensor.Zeros(new Shape(2, 3), DType.Float64);
        Assert.Equal("sigma", Assert.Throws<ArgumentOutOfRangeException>(() => Pfgmpp.Radius(0, 5)).ParamName);
        Assert.Equal("augmentedDims", Assert.Throws<ArgumentOutOfRangeException>(() => Pfgmpp.LogKernel(y, y, 1, double.PositiveInfinity)).ParamName);
        Assert.Equal("y", Assert.Throws<ShapeMismatchException>(() => Pfgmpp.LogKernel(y, Tensor.Zeros(new Shape(2, 2), DType.Float64), 1, 2)).ParamName);
        Assert.Equal("augmentedDims", Assert.Throws<ArgumentOutOfRangeException>(() => Pfgmpp.Perturb(y, 1, 0, new Generator(1))).ParamName);
        Assert.Equal("radius", Assert.Throws<ArgumentOutOfRangeException>(() => Pfgmpp.Perturb(y, -1, 3, new Generator(1))).ParamName);
    }
}
