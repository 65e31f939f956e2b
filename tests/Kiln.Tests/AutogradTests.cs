using Xunit;

namespace Kiln.Tests;

/// <summary>The tape: accumulation, no-grad scopes, higher order, products, custom ops, freeing.</summary>
[Collection(nameof(SerialCollection))]
public class AutogradTests
{
    static Tensor V(params double[] v) => Tensor.FromArray(v);

    [Fact]
    public void Gradients_accumulate_into_leaves_and_reuse_is_summed()
    {
        var x = V(1, 2, 3).RequiresGrad_();
        var y = (x * x + x).Sum();           // x used twice
        y.Backward();
        Assert.Equal(new double[] { 3, 5, 7 }, x.Grad!.ToDoubleArray());
        (x * 2.0).Sum().Backward();           // accumulates
        Assert.Equal(new double[] { 5, 7, 9 }, x.Grad!.ToDoubleArray());
        Assert.Throws<InvalidOperationException>(() => y.Backward());   // graph freed
    }

    [Fact]
    public void No_grad_detach_and_requires_grad_rules()
    {
        var x = V(1, 2).RequiresGrad_();
        using (Autograd.NoGrad()) Assert.False((x * 2.0).RequiresGrad);
        Assert.False(x.Detach().RequiresGrad);
        Assert.True((x * 2.0).RequiresGrad);
        Assert.Throws<InvalidOperationException>(() => (x * 2.0).RequiresGrad = false);
        Assert.Throws<InvalidOperationException>(() => Tensor.FromArray(new long[] { 1 }).RequiresGrad_());
        Assert.Throws<InvalidOperationException>(() => x.Add_(V(1, 1)));     // in-place on a graph leaf
        Assert.Throws<ArgumentException>(() => (x * 2.0).Backward());       // non-scalar without seed
        (x * 2.0).Backward(V(1, 10));
        Assert.Equal(new double[] { 2, 20 }, x.Grad!.ToDoubleArray());
    }

    [Fact]
    public void Second_derivatives_through_create_graph()
    {
        // f = sum(x^3): f' = 3x^2, f'' = 6x.
        var x = V(1, -2, 0.5).RequiresGrad_();
        var g = Autograd.Grad((x * x * x).Sum(), x, createGraph: true);
        Assert.Equal(new double[] { 3, 12, 0.75 }, g.ToDoubleArray());
        var h = Autograd.Grad(g.Sum(), x);
        Assert.Equal(new double[] { 6, -12, 3 }, h.ToDoubleArray());
        // A gradient-norm penalty: d/dx |grad f|^2 for f = sum(sin x) is -2 sin(x) cos(x).
        var x2 = V(0.3, 1.1).RequiresGrad_();
        var gp = Autograd.Grad(x2.Sin().Sum(), x2, createGraph: true);
        var pen = Autograd.Grad(gp.Square().Sum(), x2).ToDoubleArray();
        Assert.Equal(-2 * Math.Sin(0.3) * Math.Cos(0.3), pen[0], 1e-12);
        Assert.Equal(-2 * Math.Sin(1.1) * Math.Cos(1.1), pen[1], 1e-12);
    }

    [Fact]
    public void Vjp_jvp_hvp_match_closed_forms()
    {
        var a = Tensor.FromArray(new double[] { 1, 2, 3, 4, 5, 6 }, [2, 3]);
        var x = V(1, -1, 2);
        var v = V(0.5, -2, 1);
        var u = V(1, 3);
        // f(x) = A x: vjp = A^T u, jvp = A v.
        Assert.Equal(a.T.MatMul(u).ToDoubleArray(), Autograd.Vjp(t => a.MatMul(t), x, u).ToDoubleArray());
        Assert.Equal(a.MatMul(v).ToDoubleArray(), Autograd.Jvp(t => a.MatMul(t), x, v).ToDoubleArray());
        // f(x) = 1/2 x^T S x with S = A^T A: H v = S v.
        var s = a.T.MatMul(a);
        var hv = Autograd.Hvp(t => t.MatMul(s.MatMul(t)) * 0.5, x, v).ToDoubleArray();
        var expect = s.MatMul(v).ToDoubleArray();
        for (int i = 0; i < 3; i++) Assert.Equal(expect[i], hv[i], 1e-10);
    }

    [Fact]
    public void Custom_ops_use_their_own_backward()
    {
        // Straight-through rounding: forward rounds, backward passes the gradient unchanged.
        var x = V(0.2, 1.7, -0.6).RequiresGrad_();
        var y = Tensor.Custom("round_ste", [x], xs => Tensor.FromArray(xs[0].ToDoubleArray().Select(v => Math.Round(v)).ToArray()), g => [g]);
        Assert.Equal(new double[] { 0, 2, -1 }, y.ToDoubleArray());
        (y * V(1, 2, 3)).Sum().Backward();
        Assert.Equal(new double[] { 1, 2, 3 }, x.Grad!.ToDoubleArray());
    }

    [Fact]
    public void A_long_training_loop_does_not_grow_memory()
    {
        var g = new Generator(1);
        var w = Tensor.Randn([16, 4], g).RequiresGrad_();
        var x = Tensor.Randn([32, 16], g);
        long Step()
        {
            using var scope = Tensor.Scope();
            var loss = x.MatMul(w).Softmax(-1).Square().Sum();
            loss.Backward();
            using (Autograd.NoGrad()) w.Sub_(w.Grad! * 0.01);
            w.Grad = null;
            return Storage.LiveCount;
        }
        static long Settled() { GC.Collect(); GC.WaitForPendingFinalizers(); return Storage.LiveCount; }
        for (int i = 0; i < 5; i++) Step();
        long before = Settled();
        for (int i = 0; i < 500; i++) Step();
        Assert.Equal(before, Settled());
        Assert.False(w.Storage.IsDisposed);
    }

    [Fact]
    public void Deep_graphs_do_not_overflow_the_stack()
    {
        var x = V(1.0).RequiresGrad_();
        var y = x;
        for (int i = 0; i < 20000; i++) y = y * 1.0001;
        y.Sum().Backward();
        Assert.Equal(Math.Pow(1.0001, 20000), x.Grad!.Item(), 1e-8);
    }
}

/// <summary>Tests that read process-wide counters, or need the process-wide worker team, run alone.</summary>
[CollectionDefinition(nameof(SerialCollection), DisableParallelization = true)]
public sealed class SerialCollection;
