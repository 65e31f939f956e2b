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

    // A small causal decoder: embedding, two pre-norm transformer blocks (RoPE attention, MLP, dropout), a final norm and the head.
    static Sequential Decoder(double dropout) =>
        new(new Embedding(11, 8, new Generator(1), DType.Float64),
            new TransformerBlock(8, 2, 12, norm: NormKind.RMSNorm, dropout: dropout, maxSeqLen: 16, generator: new Generator(2), dtype: DType.Float64),
            new TransformerBlock(8, 2, 12, dropout: dropout, maxSeqLen: 16, generator: new Generator(3), dtype: DType.Float64),
            new LayerNorm(8, dtype: DType.Float64),
            new Linear(8, 11, generator: new Generator(4), dtype: DType.Float64));

    static readonly Tensor Ids = Tensor.FromArray(new long[] { 1, 4, 2, 9, 0, 3, 3, 10 }, new Shape(2, 4));

    [Fact]
    public void Forward_and_backward_hooks_fire_on_every_module_of_a_decoder()
    {
        var decoder = Decoder(0.1);
        var modules = decoder.NamedModules().Where(m => m.Module is Module<Tensor, Tensor>).ToArray();
        // Root, embedding, per block (norms, attention with its four projections, MLP with its Sequential, two Linears
        // and activation, dropout), final norm, head; only the rotary embeddings (tables, not a Tensor -> Tensor module) are left out.
        Assert.Equal(decoder.NamedModules().Count() - 2, modules.Length);
        var forward = new Dictionary<string, int>();
        var backward = new Dictionary<string, int>();
        var handles = new List<IDisposable>();
        foreach (var (name, m) in modules)
        {
            var module = (Module<Tensor, Tensor>)m;
            forward[name] = 0; backward[name] = 0;
            handles.Add(module.RegisterForwardHook((_, _, y) => { forward[name]++; return y; }));
            handles.Add(module.RegisterFullBackwardHook((_, _, gout) => { Assert.NotNull(gout[0]); backward[name]++; return null; }));
        }
        decoder.Call(Ids).Square().Mean().Backward();
        // Each block runs its dropout on both residual branches.
        int Calls(string name) => name.EndsWith("dropout", StringComparison.Ordinal) ? 2 : 1;
        foreach (var (name, _) in modules)
        {
            Assert.True(forward[name] == Calls(name), $"forward hook of '{name}' fired {forward[name]} times");
            Assert.True(backward[name] == Calls(name), $"backward hook of '{name}' fired {backward[name]} times");
        }
        foreach (var h in handles) h.Dispose();
    }

    [Fact]
    public void Hooks_inside_a_decoder_change_its_output_and_gradients_as_they_say_and_pass_them_through_otherwise()
    {
        var decoder = Decoder(0);
        decoder.Eval();
        var block = (TransformerBlock)decoder.Layers[1];
        Tensor[] Grads()
        {
            decoder.ZeroGrad();
            decoder.Call(Ids).Square().Mean().Backward();
            return [.. decoder.Parameters().Select(p => p.Grad!)];
        }
        var plainOut = decoder.Forward(Ids).ToDoubleArray();
        var plain = Grads();
        // Hooks that return what they get change nothing, bit for bit.
        var handles = decoder.NamedModules().Select(m => m.Module).OfType<Module<Tensor, Tensor>>()
            .SelectMany(m => new[] { m.RegisterForwardHook((_, _, y) => y), m.RegisterFullBackwardHook((_, _, _) => null) }).ToArray();
        var hooked = Grads();
        for (int i = 0; i < plain.Length; i++) Assert.Equal(plain[i].ToDoubleArray(), hooked[i].ToDoubleArray());
        foreach (var h in handles) h.Dispose();

        // Zeroing the value projection of the first block's attention removes its branch: the block is then x + mlp(norm2(x)).
        using (block.Attention.VProj.RegisterForwardHook((_, _, y) => y.ZerosLike()))
        {
            var x = decoder.Layers[0].Forward(Ids);
            var expected = x + block.Mlp.Forward(block.Norm2.Forward(x));
            Assert.Equal(expected.ToDoubleArray(), block.Call(x).ToDoubleArray());
            Assert.NotEqual(plainOut, decoder.Call(Ids).ToDoubleArray());
        }
        // Doubling grad_input at the first block doubles the embedding's gradient and nothing downstream of the block.
        using (block.RegisterFullBackwardHook((_, gin, _) => [gin[0]! * 2.0]))
        {
            var doubled = Grads();
            Assert.Equal(plain[0].ToDoubleArray().Select(v => 2 * v), doubled[0].ToDoubleArray());
            Assert.Equal(plain[^1].ToDoubleArray(), doubled[^1].ToDoubleArray());
        }
    }

    [Fact]
    public void A_masked_attention_call_runs_the_hooks_on_the_input_not_the_mask()
    {
        var block = new TransformerBlock(8, 2, 12, causal: false, maxSeqLen: 16, generator: new Generator(5), dtype: DType.Float64);
        var x = Tensor.Randn([2, 3, 8], new Generator(6), dtype: DType.Float64);
        var mask = Tensor.FromArray(new[] { true, true, false }, new Shape(1, 1, 1, 3));
        var seen = new List<Shape>();
        using var a = block.RegisterForwardPreHook((_, input) => { seen.Add(input.Shape); return input; });
        using var b = block.Attention.RegisterForwardPreHook((_, input) => { seen.Add(input.Shape); return input; });
        var y = block.Call(x, mask);
        Assert.Equal(new[] { new Shape(2, 3, 8), new Shape(2, 3, 8) }, seen);
        Assert.Equal(block.Forward(x, mask).ToDoubleArray(), y.ToDoubleArray());
        Assert.NotEqual(block.Forward(x).ToDoubleArray(), y.ToDoubleArray());
    }

    static void AssertClose(double[] expected, double[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 1e-12);
    }
}
