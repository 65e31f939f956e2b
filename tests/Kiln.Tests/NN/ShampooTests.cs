using Kiln.NN;
using Kiln.NN.Optim;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests.NN;

/// <summary>
/// The Shampoo family (Shampoo, KL-Shampoo, SOAP, 4-bit Shampoo) step by step against float64 transcriptions written
/// with <see cref="Dense"/>, their degenerate cases (order-1 Shampoo is full-matrix AdaGrad, SOAP without rotation is
/// AdamW in its conventions), the papers' identities (KL fixed point, Kronecker power iteration, steepest descent under
/// l∞ and spectral norms), 4-bit quantisation bounds, parameter groups and state round trips.
/// </summary>
public class ShampooTests
{
    public static IEnumerable<object[]> Cases =>
        from d in Devices.All from dt in new[] { DType.Float32, DType.Float64 } select new object[] { d.ToString(), dt };

    static double[] Uniform(Random r, int len, double lo = -1, double hi = 1) => Dense.Uniform(r, len, lo, hi);

    static double Tol(DType dt) => dt == DType.Float64 ? 1e-9 : 2e-3;

    /// <summary>Runs <paramref name="opt"/> on <paramref name="p"/> with the given gradients, returning the values after each step.</summary>
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
        double scale = Math.Max(1, Dense.MaxAbs(expected));
        Assert.True(Dense.MaxDiff(expected, actual) <= tol * scale, $"{what}: max diff {Dense.MaxDiff(expected, actual):G3} > {tol * scale:G3}");
    }

    // Mode-i unfolding [d_i, rest] of a row-major tensor of the given dims (column order does not matter for G Gᵀ).
    static double[] Unfold(double[] t, int[] dims, int mode)
    {
        int d = dims[mode], rest = t.Length / Math.Max(d, 1);
        var u = new double[t.Length];
        var col = new int[d];
        for (int flat = 0; flat < t.Length; flat++)
        {
            int i = Naive.Unravel(flat, dims)[mode];
            u[i * rest + col[i]++] = t[flat];
        }
        return u;
    }

    // t ×_mode M for a symmetric M [d_mode, d_mode].
    static double[] ModeProduct(double[] t, int[] dims, double[] m, int mode)
    {
        int d = dims[mode];
        var r = new double[t.Length];
        for (int flat = 0; flat < t.Length; flat++)
        {
            var idx = Naive.Unravel(flat, dims);
            int i = idx[mode];
            double s = 0;
            for (int j = 0; j < d; j++) { idx[mode] = j; s += m[i * d + j] * t[Naive.Ravel(idx, dims)]; }
            r[flat] = s;
        }
        return r;
    }

    [Theory, MemberData(nameof(Cases))]
    public void Shampoo_matches_its_float64_transcription_for_every_order(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        var gen = from rank in G.Choose(0, 3) from dims in G.ArrayOf(G.Choose(0, 4), rank) from seed in TensorGen.Seed from wd in G.Elements(0.0, 0.1) select (dims, seed, wd);
        Props.Check(dev, gen, c =>
        {
            var (dims, seed, wd) = c;
            const double lr = 0.05, eps = 0.1;
            var r = new Random(seed);
            int numel = Naive.Numel(dims);
            var w = Uniform(r, numel);
            var grads = Enumerable.Range(0, 3).Select(_ => Uniform(r, numel, -2, 2)).ToList();
            var p = new Parameter(Tensor.FromArray(w, new Shape(dims)).To(dt).To(dev));
            var got = Run(new Shampoo([p], lr, eps, weightDecay: wd), p, grads, dev);
            // Reference: order k = max(rank, 1), H_i = eps I + Σ G_(i) G_(i)ᵀ, W -= lr G ×_i H_i^(-1/2k).
            var md = dims.Length == 0 ? [1] : dims;
            int k = md.Length;
            var h = md.Select(d => Dense.Scale(Dense.Eye(d), eps)).ToArray();
            var x = Tensor.FromArray(w).To(dt).ToDoubleArray();
            for (int s = 0; s < grads.Count; s++)
            {
                var g = Tensor.FromArray(grads[s]).To(dt).ToDoubleArray();
                if (numel > 0)
                {
                    var d = g;
                    for (int i = 0; i < k; i++)
                    {
                        var u = Unfold(g, md, i);
                        h[i] = Dense.Add(h[i], Dense.Mul(u, Dense.T(u, md[i], numel / md[i]), md[i], numel / md[i], md[i]));
                        d = ModeProduct(d, md, Dense.SymPow(h[i], md[i], -1.0 / (2 * k)), i);
                    }
                    x = x.Select((v, j) => v * (1 - lr * wd) - lr * d[j]).ToArray();
                }
                Near(x, got[s], Tol(dt), $"shampoo dims [{string.Join(",", dims)}] step {s + 1}");
            }
        });
    }

    [Fact]
    public void Order_one_Shampoo_is_full_matrix_AdaGrad()
    {
        // Full-matrix AdaGrad (Duchi et al.): x -= lr (eps I + Σ g gᵀ)^(-1/2) g on a vector.
        var r = new Random(7);
        const int n = 5;
        const double lr = 0.1, eps = 1e-3;
        var x0 = Uniform(r, n);
        var grads = Enumerable.Range(0, 4).Select(_ => Uniform(r, n)).ToList();
        var p = new Parameter(Tensor.FromArray(x0));
        var got = Run(new Shampoo([p], lr, eps), p, grads, Device.Cpu);
        var h = Dense.Scale(Dense.Eye(n), eps);
        var x = x0;
        for (int s = 0; s < grads.Count; s++)
        {
            h = Dense.Add(h, Dense.Mul(grads[s], grads[s], n, 1, n));
            var step = Dense.Mul(Dense.SymPow(h, n, -0.5), grads[s], n, n, 1);
            x = Dense.Add(x, step, -lr);
            Near(x, got[s], 1e-12, $"full-matrix adagrad step {s + 1}");
        }
    }

    // AdamW as SOAP's code writes it: eps added to sqrt(v) before the bias correction, which is folded into the step
    // size; decay after the step; the first call only gathers statistics, so Adam's step τ is the call count - 1.
    static double[] SoapAdamW(double[] x, double[] g, double[] m, double[] v, int tau, double lr, double b1, double b2, double eps, double wd)
    {
        double stepSize = lr * Math.Sqrt(1 - Math.Pow(b2, tau)) / (1 - Math.Pow(b1, tau));
        var y = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            m[i] = b1 * m[i] + (1 - b1) * g[i];
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
            y[i] = x[i] - stepSize * m[i] / (Math.Sqrt(v[i]) + eps);
            y[i] -= lr * wd * y[i];
        }
        return y;
    }

    [Theory, MemberData(nameof(Cases))]
    public void SOAP_without_rotation_is_AdamW_in_its_conventions(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        var gen = from rank in G.Choose(0, 3) from dims in G.ArrayOf(G.Choose(0, 4), rank) from seed in TensorGen.Seed select (dims, seed);
        Props.Check(dev, gen, c =>
        {
            var (dims, seed) = c;
            const double lr = 0.01, b1 = 0.9, b2 = 0.95, eps = 1e-6, wd = 0.1;
            var r = new Random(seed);
            int numel = Naive.Numel(dims);
            var w = Tensor.FromArray(Uniform(r, numel)).To(dt).ToDoubleArray();
            var grads = Enumerable.Range(0, 4).Select(_ => Tensor.FromArray(Uniform(r, numel, -2, 2)).To(dt).ToDoubleArray()).ToList();
            var p = new Parameter(Tensor.FromArray(w, new Shape(dims)).To(dt).To(dev));
            var got = Run(new SOAP([p], lr, b1, b2, eps: eps, weightDecay: wd, maxPreconditionDim: 0), p, grads, dev);
            double[] m = new double[numel], v = new double[numel], x = w;
            Near(x, got[0], 0, "soap step 1 gathers statistics only");
            for (int s = 1; s < grads.Count; s++)
            {
                x = SoapAdamW(x, grads[s], m, v, s, lr, b1, b2, eps, wd);
                Near(x, got[s], Tol(dt), $"soap (Q = I) dims [{string.Join(",", dims)}] step {s + 1}");
            }
        });
    }

    [Theory, MemberData(nameof(Cases))]
    public void SOAP_matches_its_float64_transcription_with_eigenbasis_refreshes(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        // Square gradients keep L and R full rank from the first step, so their eigenbases (and QR's) are unique up to
        // column signs, which cancel in the update; a rank-deficient L leaves the null-space basis free.
        var gen = from n in G.Choose(1, 4) from seed in TensorGen.Seed select (n, n, seed);
        Props.Check(dev, gen, c =>
        {
            var (rows, cols, seed) = c;
            const double lr = 0.01, b1 = 0.9, b2 = 0.95, sb = 0.8, eps = 1e-6, wd = 0.05;
            const int freq = 2, steps = 6;
            var r = new Random(seed);
            int numel = rows * cols;
            var w = Tensor.FromArray(Uniform(r, numel)).To(dt).ToDoubleArray();
            var grads = Enumerable.Range(0, steps).Select(_ => Tensor.FromArray(Uniform(r, numel, -2, 2)).To(dt).ToDoubleArray()).ToList();
            var p = new Parameter(Tensor.FromArray(w, new Shape(rows, cols)).To(dt).To(dev));
            var opt = new SOAP([p], lr, b1, b2, sb, eps, wd, freq);
            double[] m = new double[numel], v = new double[numel], x = w;
            double[] gl = new double[rows * rows], gr = new double[cols * cols], ql = [], qr = [];
            for (int s = 0; s < steps; s++)
            {
                var g = grads[s];
                p.Grad = Tensor.FromArray(g, new Shape(rows, cols)).To(dt).To(dev);
                opt.Step();
                int tau = s;
                if (s > 0)
                {
                    var gp = Dense.Mul(Dense.Mul(Dense.T(ql, rows, rows), g, rows, rows, cols), qr, rows, cols, cols);
                    for (int i = 0; i < numel; i++) { m[i] = b1 * m[i] + (1 - b1) * g[i]; v[i] = b2 * v[i] + (1 - b2) * gp[i] * gp[i]; }
                    var mp = Dense.Mul(Dense.Mul(Dense.T(ql, rows, rows), m, rows, rows, cols), qr, rows, cols, cols);
                    var ratio = mp.Select((a, i) => a / (Math.Sqrt(v[i]) + eps)).ToArray();
                    var dir = Dense.Mul(Dense.Mul(ql, ratio, rows, rows, cols), Dense.T(qr, cols, cols), rows, cols, cols);
                    double stepSize = lr * Math.Sqrt(1 - Math.Pow(b2, tau)) / (1 - Math.Pow(b1, tau));
                    x = x.Select((a, i) => (a - stepSize * dir[i]) * (1 - lr * wd)).ToArray();
                }
                gl = Dense.Add(Dense.Scale(gl, sb), Dense.Mul(g, Dense.T(g, rows, cols), rows, cols, rows), 1 - sb);
                gr = Dense.Add(Dense.Scale(gr, sb), Dense.Mul(Dense.T(g, rows, cols), g, cols, rows, cols), 1 - sb);
                if (s == 0) { ql = Descending(gl, rows); qr = Descending(gr, cols); }
                else if (tau % freq == 0) { ql = Refresh(gl, ql, rows, v, cols, left: true); qr = Refresh(gr, qr, cols, v, rows, left: false); }
                Near(x, p.Value.ToDoubleArray(), Tol(dt), $"soap {rows}x{cols} step {s + 1}");
                // Whatever signs the two eigensolvers choose, the bases are orthonormal after every refresh.
                var state = opt.StateDict();
                foreach (var (name, d) in new[] { ("q_left", rows), ("q_right", cols) })
                {
                    var q = state[$"state.0.{name}"].ToDoubleArray();
                    Near(Dense.Eye(d), Dense.Mul(Dense.T(q, d, d), q, d, d, d), dt == DType.Float64 ? 1e-12 : 1e-5, $"QᵀQ = I ({name}, step {s + 1})");
                }
            }
        });
    }

    // Eigenvectors of a symmetric matrix as columns, by descending eigenvalue.
    static double[] Descending(double[] a, int n)
    {
        var (w, v) = Dense.Eigh(a, n);
        var order = Enumerable.Range(0, n).OrderByDescending(i => w[i]).ToArray();
        return Permute(v, n, order);
    }

    static double[] Permute(double[] q, int n, int[] order)
    {
        var r = new double[n * n];
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) r[i * n + j] = q[i * n + order[j]];
        return r;
    }

    // SOAP's refresh: sort Q's columns (and V along this side) by diag(Qᵀ L Q) descending, then Q ← orth(L Q) by Gram-Schmidt.
    static double[] Refresh(double[] l, double[] q, int n, double[] v, int other, bool left)
    {
        var est = Dense.Mul(Dense.Mul(Dense.T(q, n, n), l, n, n, n), q, n, n, n);
        var order = Enumerable.Range(0, n).OrderByDescending(i => est[i * n + i]).ToArray();
        var vs = (double[])v.Clone();
        for (int i = 0; i < n; i++)
            for (int j = 0; j < other; j++)
                if (left) v[i * other + j] = vs[order[i] * other + j];
                else v[j * n + i] = vs[j * n + order[i]];
        var p = Dense.Mul(l, Permute(q, n, order), n, n, n);
        for (int j = 0; j < n; j++)
        {
            for (int k = 0; k < j; k++)
            {
                double dot = 0;
                for (int i = 0; i < n; i++) dot += p[i * n + j] * p[i * n + k];
                for (int i = 0; i < n; i++) p[i * n + j] -= dot * p[i * n + k];
            }
            double norm = Math.Sqrt(Enumerable.Range(0, n).Sum(i => p[i * n + j] * p[i * n + j]));
            for (int i = 0; i < n; i++) p[i * n + j] /= norm;
        }
        return p;
    }

    [Fact]
    public void KLShampoo_fixed_point_recovers_the_kronecker_covariance()
    {
        // Exact expectations: G_k = L*^(1/2) (√(ab) e_i e_jᵀ) R*^(1/2) over all (i, j) has E[vec G vec Gᵀ] = L* ⊗ R*.
        var r = new Random(11);
        const int a = 3, b = 4;
        double[] Spd(int n) { var x = Uniform(r, n * n); return Dense.Add(Dense.Mul(x, Dense.T(x, n, n), n, n, n), Dense.Eye(n), 0.3); }
        var lStar = Spd(a); var rStar = Spd(b);
        var lh = Dense.SymPow(lStar, a, 0.5); var rh = Dense.SymPow(rStar, b, 0.5);
        var set = new List<double>();
        for (int i = 0; i < a; i++)
            for (int j = 0; j < b; j++)
            {
                var e = new double[a * b]; e[i * b + j] = Math.Sqrt(a * b);
                set.AddRange(Dense.Mul(Dense.Mul(lh, e, a, a, b), rh, a, b, b));
            }
        var grads = Tensor.FromArray(set.ToArray(), new Shape(a * b, a, b));
        var sa = Tensor.Eye(a, dtype: DType.Float64); var sb = Tensor.Eye(b, dtype: DType.Float64);
        // With β = 1 one step already gives S_a ∝ L*, S_b ∝ R*, but the scale of S_a ⊗ S_b then alternates between c and
        // 1/c times L* ⊗ R*; a damped β has the same fixed points (S_a ⊗ S_b = L* ⊗ R*) and converges to them.
        var (oneA, oneB) = KLShampoo.UpdateFactors(sa, sb, grads, beta: 1);
        Near(TraceNormalised(lStar, a), TraceNormalised(oneA.ToDoubleArray(), a), 1e-12, "β = 1, one step: S_a ∝ L*");
        Near(TraceNormalised(rStar, b), TraceNormalised(oneB.ToDoubleArray(), b), 1e-12, "β = 1, one step: S_b ∝ R*");
        for (int it = 0; it < 200; it++) (sa, sb) = KLShampoo.UpdateFactors(sa, sb, grads, beta: 0.5);
        var kron = Kron(sa.ToDoubleArray(), a, sb.ToDoubleArray(), b);
        Near(Kron(lStar, a, rStar, b), kron, 1e-10, "S_a ⊗ S_b vs L* ⊗ R*");
        // The cross-inverse replaced by I: one update with S_b = I gives S_a = E[G Gᵀ] / d_b (Shampoo's L up to 1/d_b).
        var (left, _) = KLShampoo.UpdateFactors(Tensor.Eye(a, dtype: DType.Float64), Tensor.Eye(b, dtype: DType.Float64), grads, beta: 1);
        var ggt = new double[a * a];
        for (int k = 0; k < a * b; k++) { var g = set.Skip(k * a * b).Take(a * b).ToArray(); ggt = Dense.Add(ggt, Dense.Mul(g, Dense.T(g, a, b), a, b, a), 1.0 / (a * b * b)); }
        Near(ggt, left.ToDoubleArray(), 1e-12, "S_a with S_b = I");
    }

    static double[] TraceNormalised(double[] x, int n) => Dense.Scale(x, 1 / Enumerable.Range(0, n).Sum(i => x[i * n + i]));

    static double[] Kron(double[] x, int m, double[] y, int n)
    {
        var k = new double[m * n * m * n];
        for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) for (int p = 0; p < m; p++) for (int q = 0; q < n; q++)
            k[(i * n + j) * m * n + p * n + q] = x[i * m + p] * y[j * n + q];
        return k;
    }

    [Theory, MemberData(nameof(Cases))]
    public void KLShampoo_matches_its_float64_transcription(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        var gen = from rows in G.Choose(1, 4) from cols in G.Choose(1, 4) from seed in TensorGen.Seed select (rows, cols, seed);
        Props.Check(dev, gen, c =>
        {
            var (rows, cols, seed) = c;
            const double lr = 0.01, beta = 0.3, eps = 1e-3;
            var r = new Random(seed);
            int numel = rows * cols;
            var w = Tensor.FromArray(Uniform(r, numel)).To(dt).ToDoubleArray();
            var grads = Enumerable.Range(0, 3).Select(_ => Tensor.FromArray(Uniform(r, numel, -2, 2)).To(dt).ToDoubleArray()).ToList();
            var p = new Parameter(Tensor.FromArray(w, new Shape(rows, cols)).To(dt).To(dev));
            var got = Run(new KLShampoo([p], lr, beta, eps), p, grads, dev);
            double[] sa = Dense.Eye(rows), sb = Dense.Eye(cols), x = w;
            for (int s = 0; s < grads.Count; s++)
            {
                var g = grads[s];
                var na = Dense.Add(Dense.Scale(sa, 1 - beta), Dense.Mul(Dense.Mul(g, Dense.SymPow(sb, cols, -1, eps), rows, cols, cols), Dense.T(g, rows, cols), rows, cols, rows), beta / cols);
                var nb = Dense.Add(Dense.Scale(sb, 1 - beta), Dense.Mul(Dense.Mul(Dense.T(g, rows, cols), Dense.SymPow(sa, rows, -1, eps), cols, rows, rows), g, cols, rows, cols), beta / rows);
                (sa, sb) = (na, nb);
                var d = Dense.Mul(Dense.Mul(Dense.SymPow(sa, rows, -0.5, eps), g, rows, rows, cols), Dense.SymPow(sb, cols, -0.5, eps), rows, cols, cols);
                x = Dense.Add(x, d, -lr);
                Near(x, got[s], Tol(dt), $"kl-shampoo {rows}x{cols} step {s + 1}");
            }
        });
    }

    [Fact]
    public void LinearSquare_quantisation_rounds_to_the_nearest_level_within_half_a_gap()
    {
        var levels = LinearSquareQuantizer.Levels.ToArray();
        Assert.Equal(16, levels.Length);
        Assert.Equal(-1.0, levels[0]); Assert.Equal(0.0, levels[7]); Assert.Equal(1.0, levels[15]);
        Assert.Equal(-0.04, levels[6], 1e-14); Assert.Equal(1.0 / 225, levels[8], 1e-14);
        var gen = from n in G.Choose(0, 150) from block in G.Elements(8, 16, 64) from seed in TensorGen.Seed from dt in G.Elements(DType.Float32, DType.Float64) select (n, block, seed, dt);
        Props.Check(gen, c =>
        {
            var (n, block, seed, dt) = c;
            var r = new Random(seed);
            var x = Tensor.FromArray(Uniform(r, n, -3, 3)).To(dt);
            var (codes, scales) = LinearSquareQuantizer.Quantize(x, block);
            var back = LinearSquareQuantizer.Dequantize(codes, scales, x.Shape, block).ToDoubleArray();
            var xd = x.ToDoubleArray();
            for (int i = 0; i < n; i++)
            {
                int b = i / block;
                double scale = Enumerable.Range(b * block, Math.Min(block, n - b * block)).Max(j => Math.Abs(xd[j]));
                double u = scale > 0 ? xd[i] / scale : 0;
                int best = Enumerable.Range(0, 16).MinBy(j => Math.Abs(levels[j] - u));
                int upper = Enumerable.Range(0, 16).First(j => levels[j] >= u);
                double gap = upper == 0 ? 0 : levels[upper] - levels[upper - 1];
                double err = Math.Abs(back[i] - xd[i]);
                Assert.True(Math.Abs(back[i] - scale * levels[best]) <= 1e-6 * scale, $"element {i}: {back[i]} is not the nearest level {scale * levels[best]}");
                Assert.True(err <= scale * gap / 2 * (1 + 1e-6) + 1e-12, $"element {i}: error {err:G3} above half the gap {scale * gap / 2:G3}");
            }
        });
    }

    [Fact]
    public void FourBit_inverse_root_with_Bjorck_is_close_to_the_exact_root()
    {
        // 4-bit eigenvectors alone are not orthogonal; Björck restores that, and the inverse 4th root then stays close
        // to the exact float64 one (relative Frobenius error below 10%, the order the paper reports).
        var r = new Random(13);
        const int n = 16;
        var b = Uniform(r, n * n);
        var a = Dense.Add(Dense.Mul(b, Dense.T(b, n, n), n, n, n), Dense.Eye(n), 0.1);
        var exact = Dense.SymPow(a, n, -0.25, 1e-6);
        double Error(int steps)
        {
            var q = FourBitShampoo.QuantizedInverseRoot(Tensor.FromArray(a, new Shape(n, n)).To(DType.Float32), 1e-6, 64, steps).ToDoubleArray();
            return Math.Sqrt(q.Select((v, i) => (v - exact[i]) * (v - exact[i])).Sum() / exact.Sum(v => v * v));
        }
        double raw = Error(0), rectified = Error(2);
        Assert.True(rectified < 0.1, $"4-bit inverse root relative error {rectified:G3} with Björck");
        Assert.True(rectified < raw, $"Björck did not reduce the error ({raw:G3} -> {rectified:G3})");
    }

    [Fact]
    public void FourBitShampoo_trains_and_its_state_round_trips()
    {
        var target = Tensor.FromArray(Uniform(new Random(2), 12), new Shape(3, 4));
        var p = new Parameter(Tensor.Zeros(new Shape(3, 4), DType.Float64));
        var opt = new FourBitShampoo([p], 0.05, eps: 1e-4, blockSize: 8);
        double first = 0;
        for (int s = 0; s < 60; s++)
        {
            opt.ZeroGrad();
            var loss = (p - target).Square().Sum();
            if (s == 0) first = loss.Item();
            loss.Backward();
            opt.Step();
        }
        double last = (p.Value - target).Square().Sum().Item();
        Assert.True(last < 0.05 * first, $"4-bit Shampoo did not train: loss {first:G3} -> {last:G3}");
        var state = opt.StateDict();
        Assert.Equal(DType.Int32, state["state.0.eigenvector_codes_left"].DType);
        var copy = new FourBitShampoo([new Parameter(Tensor.Zeros(new Shape(3, 4), DType.Float64))], 0.05, eps: 1e-4, blockSize: 8);
        copy.LoadStateDict(state);
        foreach (var (k, v) in copy.StateDict()) Assert.Equal(state[k].ToDoubleArray(), v.ToDoubleArray());
    }

    [Fact]
    public void Kronecker_power_iteration_one_step_is_Shampoos_statistics_and_recovers_an_exact_kronecker_target()
    {
        var r = new Random(17);
        const int m = 3, n = 4, count = 9;
        var gs = Uniform(r, count * m * n);
        var (a, b, _) = ShampooAnalysis.KroneckerFactors(Tensor.FromArray(gs, new Shape(count, m, n)));
        double[] l = new double[m * m], rr = new double[n * n];
        for (int k = 0; k < count; k++)
        {
            var g = gs.Skip(k * m * n).Take(m * n).ToArray();
            l = Dense.Add(l, Dense.Mul(g, Dense.T(g, m, n), m, n, m));
            rr = Dense.Add(rr, Dense.Mul(Dense.T(g, m, n), g, n, m, n));
        }
        double Trace(double[] x, int d) => Enumerable.Range(0, d).Sum(i => x[i * d + i]);
        var ad = a.ToDoubleArray(); var bd = b.ToDoubleArray();
        Near(Dense.Scale(l, 1 / Trace(l, m)), Dense.Scale(ad, 1 / Trace(ad, m)), 1e-12, "one step: A ∝ Σ G Gᵀ");
        Near(Dense.Scale(rr, 1 / Trace(rr, n)), Dense.Scale(bd, 1 / Trace(bd, n)), 1e-12, "one step: B ∝ Σ Gᵀ G");

        // Exact target A* ⊗ B*: the gradient set with those second moments (as in the KL test) is fitted in one step.
        var aStar = Dense.Add(Dense.Mul(l, Dense.Eye(m), m, m, m), Dense.Eye(m));
        var bStar = Dense.Add(rr, Dense.Eye(n), 0.5);
        var ah = Dense.SymPow(aStar, m, 0.5); var bh = Dense.SymPow(bStar, n, 0.5);
        var set = new List<double>();
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                var e = new double[m * n]; e[i * n + j] = Math.Sqrt(m * n);
                set.AddRange(Dense.Mul(Dense.Mul(ah, e, m, m, n), bh, m, n, n));
            }
        var (a1, b1, scale) = ShampooAnalysis.KroneckerFactors(Tensor.FromArray(set.ToArray(), new Shape(m * n, m, n)));
        Near(Kron(aStar, m, bStar, n), Dense.Scale(Kron(a1.ToDoubleArray(), m, b1.ToDoubleArray(), n), scale), 1e-10, "σ A ⊗ B = A* ⊗ B*");
    }

    [Fact]
    public void Adafactor_in_Shampoos_eigenbasis_is_Shampoo_with_exponent_one_half()
    {
        Props.Check(from m in G.Choose(1, 4) from n in G.Choose(1, 4) from seed in TensorGen.Seed select (m, n, seed), c =>
        {
            var (m, n, seed) = c;
            var r = new Random(seed);
            int count = m + n + 2;   // enough gradients for L and R to be nonsingular
            var gs = Uniform(r, count * m * n);
            var g = Uniform(r, m * n);
            var (step, rows, cols) = ShampooAnalysis.EigenbasisAdafactor(Tensor.FromArray(gs, new Shape(count, m, n)), Tensor.FromArray(g, new Shape(m, n)));
            double[] l = new double[m * m], rr = new double[n * n];
            for (int k = 0; k < count; k++)
            {
                var gk = gs.Skip(k * m * n).Take(m * n).ToArray();
                l = Dense.Add(l, Dense.Mul(gk, Dense.T(gk, m, n), m, n, m));
                rr = Dense.Add(rr, Dense.Mul(Dense.T(gk, m, n), gk, n, m, n));
            }
            Near(Dense.Eigh(l, m).W.Order().ToArray(), rows.ToDoubleArray().Order().ToArray(), 1e-10, "row sums = eig(L)");
            Near(Dense.Eigh(rr, n).W.Order().ToArray(), cols.ToDoubleArray().Order().ToArray(), 1e-10, "column sums = eig(R)");
            double trace = Enumerable.Range(0, m).Sum(i => l[i * m + i]);
            var shampoo = Dense.Scale(Dense.Mul(Dense.Mul(Dense.SymPow(l, m, -0.5), g, m, m, n), Dense.SymPow(rr, n, -0.5), m, n, n), Math.Sqrt(trace));
            Near(shampoo, step.ToDoubleArray(), 1e-9, "Adafactor in the eigenbasis = sqrt(tr L) L^(-1/2) G R^(-1/2)");
        });
    }

    [Fact]
    public void Steepest_descent_under_linf_and_spectral_norms()
    {
        var r = new Random(19);
        // l∞: sign(g) attains ‖g‖₁ (and zeros stay zero).
        var g = Uniform(r, 9).Concat([0.0]).ToArray();
        var sign = ShampooAnalysis.SignDescent(Tensor.FromArray(g)).ToDoubleArray();
        Assert.Equal(g.Sum(Math.Abs), sign.Select((s, i) => s * g[i]).Sum(), 1e-12);
        Assert.Equal(0.0, sign[^1]);
        // Spectral: full-rank G gives its polar factor U Vᵀ, which attains the nuclear norm.
        var gm = MatrixRootTests.WithSingularValues(r, 4, 6, 0.3, 2);
        var d = ShampooAnalysis.SpectralDescent(Tensor.FromArray(gm, new Shape(4, 6))).ToDoubleArray();
        Near(Dense.Polar(gm, 4, 6), d, 1e-10, "(GGᵀ)^(-1/4) G (GᵀG)^(-1/4) = U Vᵀ");
        Assert.Equal(Dense.SingularValues(gm, 4, 6).Sum(), d.Select((x, i) => x * gm[i]).Sum(), 1e-10);
        // Rank 2 (a 5 x 4 product of 5 x 2 and 2 x 4): pseudo-inverse roots give U_r V_rᵀ, i.e. G (GᵀG)^+1/2.
        var low = Dense.Mul(Uniform(r, 10), Uniform(r, 8), 5, 2, 4);
        var dr = ShampooAnalysis.SpectralDescent(Tensor.FromArray(low, new Shape(5, 4))).ToDoubleArray();
        var expected = Dense.Mul(low, Dense.SymPow(Dense.Mul(Dense.T(low, 5, 4), low, 4, 5, 4), 4, -0.5, cutoff: 1e-10), 5, 4, 4);
        Near(expected, dr, 1e-8, "rank-deficient: U_r V_rᵀ");
        Assert.Equal(2, Dense.SingularValues(dr, 5, 4).Count(s => s > 0.5));
        Assert.All(Dense.SingularValues(dr, 5, 4), s => Assert.True(Math.Abs(s - 1) < 1e-8 || Math.Abs(s) < 1e-8, $"singular value {s} is neither 0 nor 1"));
    }

    [Fact]
    public void Parameter_groups_set_their_own_rate_and_decay_and_state_round_trips_with_per_mode_buffers()
    {
        var a = new Parameter(Tensor.Ones(new Shape(2, 3), DType.Float64));
        var b = new Parameter(Tensor.Ones(new Shape(4), DType.Float64));
        var opt = new Shampoo([new ParamGroup([a], learningRate: 0.5, weightDecay: 0.1), new ParamGroup([b])], 0.1, eps: 1);
        Assert.Equal(0.5, opt.LearningRateOf(0)); Assert.Equal(0.1, opt.LearningRateOf(1));
        opt.Schedule = LrSchedule.Constant(0.2);
        Assert.Equal(1.0, opt.LearningRateOf(0), 1e-14); Assert.Equal(0.2, opt.LearningRateOf(1), 1e-14);
        a.Grad = Tensor.Zeros(new Shape(2, 3), DType.Float64); b.Grad = Tensor.Zeros(new Shape(4), DType.Float64);
        opt.Step();
        // A zero gradient leaves only the decay: a shrinks by 1 - lr wd = 0.9, b (no decay) stays.
        Assert.All(a.Value.ToDoubleArray(), v => Assert.Equal(0.9, v, 1e-14));
        Assert.All(b.Value.ToDoubleArray(), v => Assert.Equal(1.0, v, 1e-14));
        var state = opt.StateDict();
        Assert.Contains("state.0.preconditioner_1", state.Keys);
        Assert.DoesNotContain("state.1.preconditioner_1", state.Keys);
        Assert.Equal(new Shape(3, 3), state["state.0.preconditioner_1"].Shape);
        var copy = new Shampoo([new ParamGroup([new Parameter(Tensor.Ones(new Shape(2, 3), DType.Float64))]), new ParamGroup([new Parameter(Tensor.Ones(new Shape(4), DType.Float64))])], 0.1, eps: 1);
        copy.LoadStateDict(state);
        foreach (var (k, v) in copy.StateDict()) Assert.Equal(state[k].ToDoubleArray(), v.ToDoubleArray());
        Assert.Throws<ArgumentException>(() => new Shampoo([new ParamGroup([a]), new ParamGroup([a])]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ParamGroup([a], learningRate: -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SOAP([a], beta1: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new FourBitShampoo([a], blockSize: 12));
        Assert.Throws<ShapeMismatchException>(() => KLShampoo.UpdateFactors(Tensor.Eye(2, dtype: DType.Float64), Tensor.Eye(3, dtype: DType.Float64), Tensor.Zeros(new Shape(3, 3), DType.Float64), 0.5));
    }
}
