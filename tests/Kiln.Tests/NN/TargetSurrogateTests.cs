using Kiln.NN;
using Kiln.NN.Optim;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;
using static Kiln.Tests.TestKit.Dense;

namespace Kiln.Tests.NN;

/// <summary>
/// Target-based surrogates: g_t majorises an L-smooth loss for η ≤ 1/L and touches it at z_t (and fails to for η &gt; 1/L),
/// a linear model's inner minimiser is projected SGD in target space, and full-batch target steps never raise the loss.
/// </summary>
public class TargetSurrogateTests
{
    static Tensor Squared(Tensor z, Tensor y) => (z - y).Square().Sum() * 0.5;   // L = 1
    static Tensor SoftmaxCe(Tensor z, Tensor y) => Losses.CrossEntropy(z, y, reduction: Reduction.Sum);   // Hessian diag(p) - ppᵀ ≤ 1/2: L = 1/2

    [Fact]
    public void Surrogate_majorises_smooth_losses_at_eta_one_over_l_and_equals_them_at_the_target()
    {
        Props.Check(from n in G.Choose(1, 5) from k in G.Choose(2, 4) from seed in TensorGen.Seed select (n, k, seed), c =>
        {
            var (n, k, seed) = c;
            var r = new Random(seed);
            var zt = Tensor.FromArray(Uniform(r, n * k, -3, 3), new Shape(n, k));
            var yReal = Tensor.FromArray(Uniform(r, n * k, -3, 3), new Shape(n, k));
            var yClass = Tensor.FromArray(Enumerable.Range(0, n).Select(_ => (long)r.Next(k)).ToArray());
            foreach (var (loss, smoothness) in new (Func<Tensor, Tensor>, double)[] { (z => Squared(z, yReal), 1), (z => SoftmaxCe(z, yClass), 0.5) })
            {
                var zi = zt.Clone().RequiresGrad_();
                var l = loss(zi);
                double lt = l.Item();
                var grad = Autograd.Grad(l, zi);
                double eta = 1 / smoothness;
                Assert.Equal(lt, TargetSurrogate.Value(zt, zt, lt, grad, eta).Item(), 1e-12);
                for (int trial = 0; trial < 5; trial++)
                {
                    var z = Tensor.FromArray(Uniform(r, n * k, -6, 6), new Shape(n, k));
                    double g = TargetSurrogate.Value(z, zt, lt, grad, eta).Item(), lz = loss(z).Item();
                    Assert.True(g >= lz - 1e-12 * Math.Max(1, Math.Abs(lz)), $"g_t {g} < l {lz}");
                }
            }
            // Squared loss, η > 1/L: g_t - l = (1/(2η) - 1/2)‖z - z_t‖² < 0 away from z_t.
            var z2 = zt + 1.0;
            var zs = zt.Clone().RequiresGrad_();
            var ls = Squared(zs, yReal);
            double lts = ls.Item();
            var gs = Autograd.Grad(ls, zs);
            double expected = Squared(z2, yReal).Item() + (1 / (2 * 2.0) - 0.5) * n * k;
            Assert.Equal(expected, TargetSurrogate.Value(z2, zt, lts, gs, 2.0).Item(), 1e-10);
            Assert.True(expected < Squared(z2, yReal).Item());
        });
    }

    [Fact]
    public void Linear_model_target_step_is_projected_sgd_in_target_space()
    {
        Props.Check(from n in G.Choose(2, 6) from seed in TensorGen.Seed select (n, seed), c =>
        {
            var (n, seed) = c;
            int d = Math.Max(1, n - 1);   // range(X) a proper subspace of R^n
            var r = new Random(seed);
            // The first d columns of I + 0.1 U (U uniform in [-1, 1]): singular values in [0.4, 1.6], so XᵀX is well
            // conditioned and the inner gradient descent converges to float64 precision.
            var u = Uniform(r, n * n);
            var xd = Enumerable.Range(0, n * d).Select(i => (i / d == i % d ? 1.0 : 0.0) + 0.1 * u[i / d * n + i % d]).ToArray();
            var yd = Uniform(r, n, -2, 2);
            var th0 = Uniform(r, d);
            var x = Tensor.FromArray(xd, new Shape(n, d));
            var theta = new Parameter(Tensor.FromArray(th0, new Shape(d)));
            var y = Tensor.FromArray(yd);
            double eta = 0.7;
            // Inner gradient descent with step 1/λmax(XᵀX/η) converges to the exact minimiser.
            var xtx = Mul(T(xd, n, d), xd, d, n, d);
            double lmax = Eigh(xtx, d).W.Max() / eta;
            var inner = new SGD([theta], 1 / lmax);
            Tensor Outputs() => x.MatMul(theta.Unsqueeze(1)).Squeeze(1);
            var zt = Mul(xd, th0, n, d, 1);
            TargetSurrogate.Step(Outputs, z => Squared(z, y), inner, innerSteps: 4000, eta);
            // Float64 reference: z+ = X (XᵀX)⁻¹ Xᵀ (z_t - η (z_t - y)).
            var shifted = zt.Select((v, i) => v - eta * (v - yd[i])).ToArray();
            var rhs = Mul(T(xd, n, d), shifted, d, n, 1);
            var (w, v) = Eigh(xtx, d);
            var inv = Mul(Mul(v, Enumerable.Range(0, d * d).Select(i => i / d == i % d ? 1 / w[i / d] : 0).ToArray(), d, d, d), T(v, d, d), d, d, d);
            var projected = Mul(xd, Mul(inv, rhs, d, d, 1), n, d, 1);
            var got = Outputs().ToDoubleArray();
            Assert.True(MaxDiff(got, projected) <= 1e-8, $"target step vs projection: {MaxDiff(got, projected)}");
        });
    }

    [Fact]
    public void Full_batch_target_steps_never_raise_the_loss()
    {
        var g = new Generator(3);
        var model = new MLP([3, 8, 2], ActivationKind.Tanh, generator: g, dtype: DType.Float64);
        var r = new Random(3);
        var x = Tensor.FromArray(Uniform(r, 20 * 3), new Shape(20, 3));
        var y = Tensor.FromArray(Uniform(r, 20 * 2), new Shape(20, 2));
        var inner = new SGD(model.Parameters(), 0.01);
        var losses = Enumerable.Range(0, 30).Select(_ => TargetSurrogate.Step(() => model.Forward(x), z => Squared(z, y), inner, innerSteps: 5, eta: 1)).ToArray();
        for (int i = 1; i < losses.Length; i++) Assert.True(losses[i] <= losses[i - 1], $"loss rose at outer step {i}: {losses[i - 1]} -> {losses[i]}");
        Assert.True(losses[^1] < losses[0]);
    }
}
