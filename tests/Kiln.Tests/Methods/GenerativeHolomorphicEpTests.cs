using System.Numerics;
using Kiln.Methods.Generative;
using Kiln.Tests.TestKit;
using Xunit;
using Xunit.Abstractions;

namespace Kiln.Tests.Methods;

/// <summary>
/// Generalised holomorphic EP with Jacobian homeostasis (Laborieux &amp; Zenke, 2024) against autodiff through the
/// network's unrolled float64 dynamics u ← W tanh(u) + b − β P(u − y) written in the test.
/// </summary>
public class GenerativeHolomorphicEpTests(ITestOutputHelper output)
{
    // A random net whose map u ↦ W f(u) + b contracts: ‖W‖_F = 0.6 bounds ‖J‖₂ by 0.6.
    static (Tensor W, Tensor B, Tensor Y) RandomNet(Random rng, int n, int m)
    {
        var w = Enumerable.Range(0, n * n).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        double norm = Math.Sqrt(w.Sum(v => v * v));
        return (Tensor.FromArray(w.Select(v => 0.6 * v / norm).ToArray(), new Shape(n, n)),
            Tensor.FromArray(Enumerable.Range(0, n).Select(_ => rng.NextDouble() * 2 - 1).ToArray()),
            Tensor.FromArray(Enumerable.Range(0, m).Select(_ => rng.NextDouble() * 2 - 1).ToArray()));
    }

    // Mask P of the output units and the target padded to [n].
    static (Tensor Mask, Tensor Target) Readout(int n, Tensor y)
    {
        int m = y.Shape[0];
        var mask = Enumerable.Range(0, n).Select(i => i >= n - m ? 1.0 : 0.0).ToArray();
        var t = new double[n];
        y.ToArray<double>().CopyTo(t, n - m);
        return (Tensor.FromArray(mask), Tensor.FromArray(t));
    }

    // The dynamics unrolled in Kiln tensors: `steps` iterations of u ← W f(u) + b − β P(u − y) from u0.
    static Tensor Unroll(Tensor w, Tensor b, Tensor y, Tensor beta, Tensor u0, int steps, bool tanh = true)
    {
        var (mask, t) = Readout(w.Shape[0], y);
        var u = u0;
        for (int s = 0; s < steps; s++) u = (tanh ? u.Tanh() : u).MatMul(w.T) + b - beta * mask * (u - t);
        return u;
    }

    // d u*(β)/dβ at 0 by forward-mode autodiff of the unrolled nudged dynamics started at the free fixed point.
    static double[] AutodiffDerivative(Tensor w, Tensor b, Tensor y, bool tanh = true)
    {
        var free = Unroll(w, b, y, Tensor.Scalar(0, DType.Float64), Tensor.Zeros(new Shape(w.Shape[0]), DType.Float64), 150, tanh);
        return Autograd.Jvp(beta => Unroll(w, b, y, beta, free, 80, tanh), Tensor.Zeros(new Shape(1), DType.Float64), Tensor.Ones(new Shape(1), DType.Float64)).ToArray<double>();
    }

    // Gradient of L(u*) = ½‖P(u* − y)‖² in (W, b) by backprop through 150 unrolled free iterations from 0.
    static (double[] W, double[] B) AutodiffGradient(Tensor w, Tensor b, Tensor y, bool tanh = true)
    {
        var wg = w.Clone().RequiresGrad_();
        var bg = b.Clone().RequiresGrad_();
        var (mask, t) = Readout(w.Shape[0], y);
        var u = Unroll(wg, bg, y, Tensor.Scalar(0, DType.Float64), Tensor.Zeros(new Shape(w.Shape[0]), DType.Float64), 150, tanh);
        var loss = 0.5 * (mask * (u - t)).Pow(2).Sum();
        var g = Autograd.Grad([loss], [wg, bg]);
        return (g[0].ToArray<double>(), g[1].ToArray<double>());
    }

    static double MaxDiff(double[] a, double[] b) => a.Select((v, i) => Math.Abs(v - b[i])).Max();

    [Fact]
    public void Contour_derivative_matches_autodiff_with_geometric_error_decay()
    {
        var rng = new Random(5);
        for (int trial = 0; trial < 6; trial++)
        {
            int n = rng.Next(2, 7), m = rng.Next(1, n + 1);
            var (w, b, y) = RandomNet(rng, n, m);
            var exact = AutodiffDerivative(w, b, y);
            var errors = Enumerable.Range(2, 13).Select(points =>
            {
                var nu = HolomorphicEp.ContourDerivative(w, b, y, 0.15, points);
                return nu.Select((z, i) => Complex.Abs(z - exact[i])).Max();
            }).ToArray();
            output.WriteLine($"n={n} m={m}: " + string.Join(" ", errors.Select(e => e.ToString("E1"))));
            // Trapezoidal Cauchy estimate: error ≈ |c_{N+1}| r^N, so two more points shrink it by (r/ρ)².
            for (int k = 0; k + 2 < errors.Length; k++)
                if (errors[k] > 1e-11) Assert.True(errors[k + 2] < 0.5 * errors[k], $"N={k + 2}: {errors[k]:E2} -> {errors[k + 2]:E2}");
            Assert.True(errors[^1] < 1e-10, $"N=14 error {errors[^1]:E2}");
            Assert.True(errors[0] > 1e3 * errors[^1], "the error must decay, not start at the floor");
        }
    }

    [Fact]
    public void Ep_update_equals_backprop_when_the_jacobian_is_symmetric()
    {
        var rng = new Random(8);
        for (int trial = 0; trial < 5; trial++)
        {
            int n = rng.Next(2, 7), m = rng.Next(1, n + 1);
            // Build J = W diag f′(u*) symmetric: pick u*, a symmetric S with ‖S‖_F = 0.5, W = S diag(f′(u*))⁻¹,
            // b = u* − W tanh(u*). |u*| ≤ 0.5 keeps f′ ≥ 0.78, so ‖W‖₂ f′ ≤ 0.65 and u* is the unique fixed point.
            var ustar = Enumerable.Range(0, n).Select(_ => rng.NextDouble() - 0.5).ToArray();
            var s = new double[n * n];
            for (int i = 0; i < n; i++)
                for (int j = 0; j <= i; j++) s[i * n + j] = s[j * n + i] = rng.NextDouble() * 2 - 1;
            double norm = Math.Sqrt(s.Sum(v => v * v));
            var wa = new double[n * n];
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) wa[i * n + j] = 0.5 * s[i * n + j] / norm / (1 - Math.Tanh(ustar[j]) * Math.Tanh(ustar[j]));
            var ba = Enumerable.Range(0, n).Select(i => ustar[i] - Enumerable.Range(0, n).Sum(j => wa[i * n + j] * Math.Tanh(ustar[j]))).ToArray();
            var w = Tensor.FromArray(wa, new Shape(n, n));
            var b = Tensor.FromArray(ba);
            var y = Tensor.FromArray(Enumerable.Range(0, m).Select(_ => rng.NextDouble() * 2 - 1).ToArray());
            var jac = HolomorphicEp.Jacobian(w, b).ToArray<double>();
            Assert.True(MaxDiff(jac, Dense.T(jac, n, n)) < 1e-14);
            Assert.True(HolomorphicEp.HomeostaticLoss(w, b).Item() < 1e-28);

            var ep = HolomorphicEp.Update(w, b, y, 0.3, 24);
            var (gw, gb) = AutodiffGradient(w, b, y);
            double scale = 1 + Dense.MaxAbs(gw);
            Assert.True(MaxDiff(ep.Weight.ToArray<double>(), gw) < 1e-8 * scale, $"W: {MaxDiff(ep.Weight.ToArray<double>(), gw):E2}");
            Assert.True(MaxDiff(ep.Bias.ToArray<double>(), gb) < 1e-8 * scale);
            var bp = HolomorphicEp.Backprop(w, b, y);
            Assert.True(MaxDiff(bp.Weight.ToArray<double>(), gw) < 1e-10 * scale);
        }
        // A linear network: J = W, so a symmetric W gives a symmetric Jacobian.
        var (w0, b0, y0) = RandomNet(rng, 5, 2);
        var ws = (w0 + w0.T) * 0.5;
        var epLin = HolomorphicEp.Update(ws, b0, y0, 0.3, 24, EpActivation.Identity);
        var (gwl, gbl) = AutodiffGradient(ws, b0, y0, tanh: false);
        Assert.True(MaxDiff(epLin.Weight.ToArray<double>(), gwl) < 1e-8 * (1 + Dense.MaxAbs(gwl)));
        Assert.True(MaxDiff(epLin.Bias.ToArray<double>(), gbl) < 1e-8 * (1 + Dense.MaxAbs(gbl)));
    }

    [Fact]
    public void Ep_update_is_biased_when_the_jacobian_is_asymmetric()
    {
        var rng = new Random(13);
        for (int trial = 0; trial < 5; trial++)
        {
            int n = rng.Next(3, 7), m = rng.Next(1, n);
            var (w, b, y) = RandomNet(rng, n, m);
            // The update is the exact −(du*/dβ) f(u*)ᵀ (the contour is accurate) ...
            var nu = AutodiffDerivative(w, b, y);
            var f = Unroll(w, b, y, Tensor.Scalar(0, DType.Float64), Tensor.Zeros(new Shape(n), DType.Float64), 150).Tanh().ToArray<double>();
            var expected = Enumerable.Range(0, n * n).Select(k => -nu[k / n] * f[k % n]).ToArray();
            var ep = HolomorphicEp.Update(w, b, y, 0.3, 24);
            Assert.True(MaxDiff(ep.Weight.ToArray<double>(), expected) < 1e-10);
            // ... the backprop gradient is right ...
            var (gw, gb) = AutodiffGradient(w, b, y);
            var bp = HolomorphicEp.Backprop(w, b, y);
            Assert.True(MaxDiff(bp.Weight.ToArray<double>(), gw) < 1e-10 * (1 + Dense.MaxAbs(gw)));
            Assert.True(MaxDiff(bp.Bias.ToArray<double>(), gb) < 1e-10 * (1 + Dense.MaxAbs(gb)));
            // ... and they differ by far more than the contour's error: the bias of an asymmetric Jacobian.
            double bias = MaxDiff(ep.Weight.ToArray<double>(), gw) / Dense.MaxAbs(gw);
            output.WriteLine($"n={n} relative bias {bias:E2}");
            Assert.True(bias > 1e-2, $"relative bias {bias:E2}");
        }
    }

    [Fact]
    public void Homeostatic_loss_matches_its_definition_and_its_gradient_checks()
    {
        var rng = new Random(21);
        for (int trial = 0; trial < 4; trial++)
        {
            int n = rng.Next(2, 6);
            var (w, b, y) = RandomNet(rng, n, 1);
            var u = Unroll(w, b, y, Tensor.Scalar(0, DType.Float64), Tensor.Zeros(new Shape(n), DType.Float64), 150).ToArray<double>();
            var wa = w.ToArray<double>();
            var jac = Enumerable.Range(0, n * n).Select(k => wa[k] * (1 - Math.Tanh(u[k % n]) * Math.Tanh(u[k % n]))).ToArray();
            double h = Enumerable.Range(0, n * n).Sum(k => Math.Pow(jac[k] - jac[k % n * n + k / n], 2));
            Assert.Equal(h, HolomorphicEp.HomeostaticLoss(w, b).Item(), 1e-13);
            Assert.True(MaxDiff(jac, HolomorphicEp.Jacobian(w, b).ToArray<double>()) < 1e-14);
        }
        var (w1, b1, _) = RandomNet(rng, 4, 1);
        var gc = GradCheck.Run(xs => HolomorphicEp.HomeostaticLoss(xs[0], xs[1]), [w1 * 1.2, b1]);
        Assert.True(gc.Passed, gc.ToString());
    }

    [Fact]
    public void Homeostatic_descent_symmetrises_the_jacobian_and_shrinks_the_ep_bias()
    {
        var (w, b, y) = RandomNet(new Random(34), 5, 2);
        double BiasOf(Tensor wt)
        {
            var bp = HolomorphicEp.Backprop(wt, b, y).Weight.ToArray<double>();
            return MaxDiff(HolomorphicEp.Update(wt, b, y, 0.3, 16).Weight.ToArray<double>(), bp) / Dense.MaxAbs(bp);
        }
        double h0 = HolomorphicEp.HomeostaticLoss(w, b).Item(), bias0 = BiasOf(w), last = h0;
        for (int step = 0; step < 60; step++)
        {
            var wg = w.Clone().RequiresGrad_();
            var h = HolomorphicEp.HomeostaticLoss(wg, b);
            var g = Autograd.Grad(h, wg);
            Assert.True(h.Item() <= last + 1e-15, $"step {step}: {h.Item():E3} after {last:E3}");
            last = h.Item();
            w = w - 0.1 * g;
        }
        double h1 = HolomorphicEp.HomeostaticLoss(w, b).Item(), bias1 = BiasOf(w);
        output.WriteLine($"H {h0:E2} -> {h1:E2}, EP bias {bias0:E2} -> {bias1:E2}");
        Assert.True(h1 < 0.05 * h0, $"H {h0:E2} -> {h1:E2}");
        Assert.True(bias1 < 0.5 * bias0, $"EP bias {bias0:E2} -> {bias1:E2}");
    }

    [Fact]
    public void Bad_input_is_named()
    {
        var (w, b, y) = RandomNet(new Random(1), 3, 1);
        Assert.Equal("weight", Assert.Throws<ShapeMismatchException>(() => HolomorphicEp.Backprop(Tensor.Zeros(new Shape(3, 2), DType.Float64), b, y)).ParamName);
        Assert.Equal("bias", Assert.Throws<ShapeMismatchException>(() => HolomorphicEp.Backprop(w, Tensor.Zeros(new Shape(4), DType.Float64), y)).ParamName);
        Assert.Equal("target", Assert.Throws<ShapeMismatchException>(() => HolomorphicEp.Backprop(w, b, Tensor.Zeros(new Shape(4), DType.Float64))).ParamName);
        Assert.Equal("radius", Assert.Throws<ArgumentOutOfRangeException>(() => HolomorphicEp.Update(w, b, y, 0, 8)).ParamName);
        Assert.Equal("points", Assert.Throws<ArgumentOutOfRangeException>(() => HolomorphicEp.ContourDerivative(w, b, y, 0.1, 1)).ParamName);
        Assert.Equal("beta", Assert.Throws<ArgumentOutOfRangeException>(() => HolomorphicEp.FixedPoint(w, b, y, new Complex(double.NaN, 0))).ParamName);
        // A linear map with gain 2 has no attracting fixed point.
        var ex = Assert.Throws<InvalidOperationException>(() => HolomorphicEp.Backprop(2 * Tensor.Eye(3, dtype: DType.Float64), b, y, EpActivation.Identity));
        Assert.Contains("did not converge", ex.Message);
    }
}
