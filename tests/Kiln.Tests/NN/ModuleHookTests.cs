using Kiln.NN;
using Xunit;

namespace Kiln.Tests.NN;

/// <summary>Module hooks run by <c>Call</c>: forward pre-hooks, forward hooks, full backward hooks, and the summary's output shapes.</summary>
public class ModuleHookTests
{
    static Linear Lin(int i, int o, ulong seed) => new(i, o, generator: new Generator(seed), dtype: DType.Float64);

    [Fact]
    public void Forward_hooks_run_in_order_around_forward_and_can_replace_input_and_output()
    {
        var lin = Lin(3, 2, 1);
        var x = Tensor.Randn([4, 3], new Generator(2), dtype: DType.Float64);
        var log = new List<string>();
        var pre = lin.RegisterForwardPreHook((m, input) => { log.Add("pre"); Assert.Same(lin, m); return input * 2.0; });
        var post = lin.RegisterForwardHook((m, input, output) => { log.Add("post"); return output + 1.0; });
        var y = lin.Call(x);
        Assert.Equal(["pre", "post"], log);
        Assert.Equal((lin.Forward(x * 2.0) + 1.0).ToDoubleArray(), y.ToDoubleArray());
        // Forward itself skips the hooks; Sequential runs its children's.
        log.Clear();
        lin.Forward(x);
        Assert.Empty(log);
        new Sequential(lin).Forward(x);
        Assert.Equal(["pre", "post"], log);
        // Disposing a handle removes its hook (twice is harmless).
        pre.Dispose(); pre.Dispose(); post.Dispose();
        log.Clear();
        Assert.Equal(lin.Forward(x).ToDoubleArray(), lin.Call(x).ToDoubleArray());
        Assert.Empty(log);
    }

    [Fact]
    public void Full_backward_hooks_see_grad_output_and_grad_input_and_may_replace_grad_input()
    {
        var first = Lin(3, 4, 1);
        var second = Lin(4, 2, 3);
        var net = new Sequential(first, new Activation(ActivationKind.Tanh), second);
        var x = Tensor.Randn([5, 3], new Generator(4), dtype: DType.Float64).RequiresGrad_();
        var seed = Tensor.Randn([5, 2], new Generator(5), dtype: DType.Float64);

        // The expected gradients, computed without hooks: d(out)/d(second's input) and d(out)/dx.
        var h = first.Forward(x).Tanh().Detach().RequiresGrad_();
        var expectedGradIn = Autograd.Grad([second.Forward(h)], [h], [seed])[0].ToDoubleArray();
        var expectedDx = Autograd.Grad([net.Forward(x)], [x], [seed])[0].ToDoubleArray();

        Tensor?[]? seenIn = null, seenOut = null;
        using (second.RegisterFullBackwardHook((m, gin, gout) => { seenIn = gin; seenOut = gout; return null; }))
        {
            var dx = Autograd.Grad([net.Forward(x)], [x], [seed])[0];
            Assert.Equal(seed.ToDoubleArray(), Assert.Single(seenOut!)!.ToDoubleArray());
            AssertClose(expectedGradIn, Assert.Single(seenIn!)!.ToDoubleArray());
            AssertClose(expectedDx, dx.ToDoubleArray());
        }
        // A hook that doubles grad_input doubles everything upstream of the module.
        using (second.RegisterFullBackwardHook((m, gin, gout) => [gin[0]! * 2.0]))
        {
            var dx = Autograd.Grad([net.Forward(x)], [x], [seed])[0];
            AssertClose(expectedDx.Select(v => 2 * v).ToArray(), dx.ToDoubleArray());
        }
        // An input that does not require grad: the hook still runs, with a null grad_input.
        seenIn = null; seenOut = null;
        using (first.RegisterFullBackwardHook((m, gin, gout) => { seenIn = gin; seenOut = gout; return null; }))
            net.Forward(x.Detach()).Sum().Backward();
        Assert.Null(Assert.Single(seenIn!));
        Assert.Equal(new Shape(5, 4), Assert.Single(seenOut!)!.Shape);
    }

    [Fact]
    public void A_hooked_module_keeps_its_gradient()
    {
        var lin = Lin(3, 2, 7);
        using var _ = lin.RegisterFullBackwardHook((m, gin, gout) => null);
        var x = Tensor.Randn([2, 3], new Generator(8), dtype: DType.Float64);
        Assert.True(GradCheck.Run(xs => lin.Call(xs[0]).Sin(), [x]).Passed);
    }

    [Fact]
    public void Bad_backward_hooks_are_refused_with_the_module_named()
    {
        var pair = new PairSum();
        var e = Assert.Throws<NotSupportedException>(() => pair.RegisterFullBackwardHook((m, gin, gout) => null));
        Assert.Contains("PairSum", e.Message);
        var lin = Lin(3, 2, 1);
        using var _ = lin.RegisterFullBackwardHook((m, gin, gout) => [gin[0], gin[0]]);
        var x = Tensor.Randn([2, 3], new Generator(2), dtype: DType.Float64).RequiresGrad_();
        var ex = Assert.Throws<InvalidOperationException>(() => lin.Call(x).Sum().Backward());
        Assert.Contains("Linear", ex.Message);
    }

    sealed class PairSum : Module<(Tensor A, Tensor B), Tensor>
    {
        public override Tensor Forward((Tensor A, Tensor B) input) => input.A + input.B;
    }

    [Fact]
    public void Summary_with_a_sample_input_shows_each_modules_output_shape()
    {
        var net = new Sequential(new Linear(4, 8), new Activation(ActivationKind.Relu), new Linear(8, 2, bias: false));
        var x = Tensor.Ones(new Shape(3, 4));
        string s = net.Summary(x);
        var lines = s.Split('\n');
        Assert.Contains("output", lines[0]);
        Assert.Contains("[3, 8]", lines.Single(l => l.StartsWith("0 ")));
        Assert.Contains("[3, 8]", lines.Single(l => l.StartsWith("1 ")));
        Assert.Contains("[3, 2]", lines.Single(l => l.StartsWith("2 ")));
        Assert.Contains("[3, 2]", lines.Single(l => l.StartsWith("(root)")));
        Assert.Contains("parameters: 56 (56 trainable)", s);
        // The observers are gone afterwards: the summary does not change and the plain summary has no output column.
        Assert.Equal(s, net.Summary(x));
        Assert.DoesNotContain("output", net.Summary());
    }

    static void AssertClose(double[] expected, double[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 1e-12);
    }
}
