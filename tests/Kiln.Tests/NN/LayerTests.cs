using Kiln.NN;
using Xunit;
using static Kiln.Tests.NN.NNCheck;

namespace Kiln.Tests.NN;

/// <summary>Layers: forward against written-out math, gradients by GradCheck in float64, argument errors.</summary>
public class LayerTests
{
    const DType F64 = DType.Float64;

    [Fact]
    public void Linear_computes_xWt_plus_b_and_passes_gradcheck()
    {
        var lin = new Linear(3, 4, generator: new Generator(1), dtype: F64);
        var x = R([2, 5, 3], 2);
        var y = lin.Forward(x);
        Assert.Equal(new Shape(2, 5, 4), y.Shape);
        var xs = x.ToArray<double>(); var w = lin.Weight.Value.ToArray<double>(); var b = lin.Bias!.Value.ToArray<double>();
        var expected = new double[2 * 5 * 4];
        for (int r = 0; r < 10; r++) for (int o = 0; o < 4; o++)
        {
            double s = b[o];
            for (int i = 0; i < 3; i++) s += xs[r * 3 + i] * w[o * 3 + i];
            expected[r * 4 + o] = s;
        }
        TestKit.Close.Check(expected, y.ToArray<double>(), 1e-12, 1e-14, "linear");
        Input(lin.Forward, x, "linear input");
        Parameters(lin, () => lin.Forward(x), "linear");
        // The hand-written backward is made of tensor ops, so it differentiates again (double backward).
        var dir = R(x.Shape, 31);
        var hvp = Autograd.Hvp(v => lin.Forward(v).Tanh().Sum(), x, dir);
        var hvpComposite = Autograd.Hvp(v => (v.MatMul(lin.Weight.Value.T) + lin.Bias.Value).Tanh().Sum(), x, dir);
        TestKit.Close.Check(hvpComposite, hvp, 1e-12, 1e-14, "linear hessian-vector product");
        var v1 = R([3], 30);
        Assert.Equal(new Shape(4), lin.Forward(v1).Shape);
        Input(lin.Forward, v1, "linear on a vector");
        // PyTorch's default init: every weight within +-1/sqrt(in).
        Assert.All(w, v => Assert.InRange(Math.Abs(v), 0, 1 / Math.Sqrt(3)));
    }

    [Fact]
    public void Linear_rejects_wrong_width_and_bad_sizes()
    {
        var lin = new Linear(3, 2);
        var ex = Assert.Throws<ShapeMismatchException>(() => lin.Forward(Tensor.Zeros(4, 5)));
        Assert.Contains("[4, 5]", ex.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new Linear(0, 2));
        Assert.Null(new Linear(3, 2, bias: false).Bias);
    }

    [Fact]
    public void Embedding_looks_up_rows_and_accumulates_repeated_indices()
    {
        var emb = new Embedding(5, 3, new Generator(3), F64);
        var idx = Tensor.FromArray(new long[] { 1, 4, 1, 0, 2, 1 }, [2, 3]);
        var y = emb.Forward(idx);
        Assert.Equal(new Shape(2, 3, 3), y.Shape);
        var w = emb.Weight.Value.ToArray<double>();
        var ys = y.ToArray<double>();
        long[] flat = [1, 4, 1, 0, 2, 1];
        for (int i = 0; i < 6; i++) for (int j = 0; j < 3; j++) Assert.Equal(w[flat[i] * 3 + j], ys[i * 3 + j]);
        Parameters(emb, () => emb.Forward(idx), "embedding");
        Assert.Throws<ArgumentException>(() => emb.Forward(Tensor.Zeros(2)));
        Assert.Throws<ArgumentOutOfRangeException>(() => emb.Forward(Tensor.FromArray(new long[] { 5 })));
    }

    [Fact]
    public void LayerNorm_and_RMSNorm_modules_pass_gradcheck()
    {
        var x = R([3, 5], 4, -2, 2);
        var ln = new LayerNorm(5, dtype: F64);
        using (Autograd.NoGrad()) { ln.Weight!.Value.Copy_(R([5], 5, 0.5, 1.5)); ln.Bias!.Value.Copy_(R([5], 6)); }
        Input(ln.Forward, x, "layer norm input");
        Parameters(ln, () => ln.Forward(x), "layer norm");
        var rms = new RMSNorm(5, dtype: F64);
        using (Autograd.NoGrad()) rms.Weight.Value.Copy_(R([5], 7, 0.5, 1.5));
        Input(rms.Forward, x, "rms norm input");
        Parameters(rms, () => rms.Forward(x), "rms norm");
        // Normalized rows: mean 0 and variance 1 before the affine part.
        var y = new LayerNorm(5, elementwiseAffine: false, dtype: F64).Forward(x);
        TestKit.Close.Check(new double[3], y.Mean(-1).ToArray<double>(), 0, 1e-12, "layer norm mean");
        TestKit.Close.Check(Enumerable.Repeat(1.0, 3).ToArray(), y.Var(-1, correction: 0).ToArray<double>(), 1e-4, 0, "layer norm var");
    }

    [Fact]
    public void Dropout_drops_in_training_and_is_identity_in_eval()
    {
        var drop = new Dropout(0.25, new Generator(8));
        var x = Tensor.Ones(100, 100);
        var y = drop.Forward(x).ToArray<float>();
        int zeros = y.Count(v => v == 0);
        // 10000 Bernoulli(0.25) draws: the count is 2500 +- 43 (one sd), so +-250 cannot be missed by chance.
        Assert.InRange(zeros, 2250, 2750);
        Assert.All(y, v => Assert.True(v == 0 || Math.Abs(v - 1 / 0.75) < 1e-6, $"kept value {v} is not 1/(1-p)"));
        var model = new Sequential(new Linear(4, 4), drop);
        model.Eval();
        Assert.False(drop.Training);
        Assert.Same(x, drop.Forward(x));
        model.Train();
        Assert.True(drop.Training);
        Assert.NotEqual(x.ToArray<float>(), drop.Forward(x).ToArray<float>());
        // With the mask fixed by reseeding, dropout is linear in x and GradCheck applies.
        Input(v => new Dropout(0.5, new Generator(9)).Forward(v), R([4, 6], 10), "dropout");
        Assert.Throws<ArgumentOutOfRangeException>(() => new Dropout(1.0));
    }

    [Fact]
    public void MLP_has_PyTorch_names_and_passes_gradcheck()
    {
        var mlp = new MLP([3, 5, 4, 2], ActivationKind.Tanh, generator: new Generator(11), dtype: F64);
        Assert.Equal(["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias", "layers.4.weight", "layers.4.bias"],
            mlp.NamedParameters().Select(p => p.Name).ToArray());
        Assert.Equal(3 * 5 + 5 + 5 * 4 + 4 + 4 * 2 + 2, mlp.ParameterCount);
        var x = R([4, 3], 12);
        Input(mlp.Forward, x, "mlp input");
        Parameters(mlp, () => mlp.Forward(x), "mlp");
        Assert.Throws<ArgumentException>(() => new MLP([3]));
    }

    [Fact]
    public void MLP_with_relu_runs_fused_linear_relu_equal_to_the_layers_one_by_one_and_passes_gradcheck()
    {
        var mlp = new MLP([3, 5, 4, 2], generator: new Generator(13), dtype: F64);
        var modules = mlp.NamedModules().ToDictionary(m => m.Name, m => m.Module);
        var (l0, l2, l4) = ((Linear)modules["layers.0"], (Linear)modules["layers.2"], (Linear)modules["layers.4"]);
        var x = R([6, 3], 14);
        var seed = R([6, 2], 15);
        Tensor[] Grads(Func<Tensor> f)
        {
            mlp.ZeroGrad();
            f().Backward(seed);
            return mlp.Parameters().Select(p => p.Grad!).ToArray();
        }
        Tensor OneByOne() => l4.Forward(l2.Forward(l0.Forward(x).Relu()).Relu());
        Assert.Equal(OneByOne().ToArray<double>(), mlp.Forward(x).ToArray<double>());
        var expected = Grads(OneByOne);
        var fused = Grads(() => mlp.Forward(x));
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i].ToArray<double>(), fused[i].ToArray<double>());
        Input(mlp.Forward, x, "fused mlp input");
        Parameters(mlp, () => mlp.Forward(x), "fused mlp");

        // A hook on the activation sees its own call: the pair then runs unfused, with the same result.
        int calls = 0;
        using (((Activation)modules["layers.1"]).RegisterForwardHook((_, _, y) => { calls++; return y; }))
            Assert.Equal(OneByOne().ToArray<double>(), mlp.Forward(x).ToArray<double>());
        Assert.Equal(1, calls);
    }

    [Fact]
    public void Linear_leaves_no_gradient_for_an_input_that_needs_none()
    {
        var lin = new Linear(4, 3, generator: new Generator(16), dtype: F64);
        var x = R([5, 4], 17);
        var withX = x.Detach().RequiresGrad_();
        Tensor.Linear(withX, lin.Weight.Value, lin.Bias!.Value, relu: true).Sum().Backward();
        var expected = lin.Weight.Grad!.ToArray<double>();
        lin.ZeroGrad();
        Tensor.Linear(x, lin.Weight.Value, lin.Bias!.Value, relu: true).Sum().Backward();
        Assert.Null(x.Grad);
        Assert.NotNull(withX.Grad);
        Assert.Equal(expected, lin.Weight.Grad!.ToArray<double>());
    }

    [Theory]
    [InlineData(ActivationKind.Relu)]
    [InlineData(ActivationKind.Gelu)]
    [InlineData(ActivationKind.GeluTanh)]
    [InlineData(ActivationKind.Silu)]
    [InlineData(ActivationKind.Sigmoid)]
    [InlineData(ActivationKind.Hardsigmoid)]
    [InlineData(ActivationKind.Hardswish)]
    [InlineData(ActivationKind.Selu)]
    [InlineData(ActivationKind.Mish)]
    [InlineData(ActivationKind.Softsign)]
    public void Activations_pass_gradcheck(ActivationKind kind)
    {
        // Values kept away from ReLU's kink at 0 and the hard functions' kinks at +-3.
        var x = Tensor.FromArray(new[] { -1.3, -0.4, 0.3, 0.9, 2.1, -2.5, -3.4, 3.7 }, [2, 4]);
        Input(new Activation(kind).Forward, x, kind.ToString());
    }

    [Fact]
    public void Parametrised_activations_use_their_parameters_pass_gradcheck_and_reject_bad_ones()
    {
        // Values on every piece, away from the kinks of both parameter sets.
        var x = Tensor.FromArray(new[] { -1.3, -0.4, 0.3, 0.9, 2.1, -2.5, -0.7, 1.6 }, [2, 4]);
        Module<Tensor, Tensor>[] modules = [new Hardtanh(), new Hardtanh(-0.5, 2), new ELU(), new ELU(0.3), new CELU(), new CELU(2.5), new LeakyReLU(), new LeakyReLU(0.2)];
        foreach (var m in modules) Input(m.Forward, x, m.ToString()!);
        Assert.Equal(x.Hardtanh(-0.5, 2).ToDoubleArray(), new Hardtanh(-0.5, 2).Forward(x).ToDoubleArray());
        Assert.Equal(x.Elu(0.3).ToDoubleArray(), new ELU(0.3).Forward(x).ToDoubleArray());
        Assert.Equal(x.Celu(2.5).ToDoubleArray(), new CELU(2.5).Forward(x).ToDoubleArray());
        Assert.Equal(x.LeakyRelu(0.2).ToDoubleArray(), new LeakyReLU(0.2).Forward(x).ToDoubleArray());
        Assert.Equal("minVal", Assert.Throws<ArgumentException>(() => new Hardtanh(1, -1)).ParamName);
        Assert.Equal("alpha", Assert.Throws<ArgumentOutOfRangeException>(() => new CELU(0)).ParamName);
        Assert.Equal("alpha", Assert.Throws<ArgumentOutOfRangeException>(() => new ELU(double.NaN)).ParamName);
        Assert.Equal("negativeSlope", Assert.Throws<ArgumentOutOfRangeException>(() => new LeakyReLU(double.PositiveInfinity)).ParamName);
    }

    [Fact]
    public void Rotary_rotates_pairs_and_makes_scores_depend_on_relative_position()
    {
        var rope = new RotaryEmbedding(4, 16, theta: 100, dtype: F64);
        var x = R([1, 6, 4], 13);
        var y = rope.Apply(x, offset: 2);
        var xs = x.ToArray<double>(); var ys = y.ToArray<double>();
        for (int t = 0; t < 6; t++)
            for (int i = 0; i < 2; i++)
            {
                double ang = (t + 2) * Math.Pow(100, -2.0 * i / 4);
                double a = xs[t * 4 + i], b = xs[t * 4 + i + 2];
                Assert.Equal(a * Math.Cos(ang) - b * Math.Sin(ang), ys[t * 4 + i], 1e-12);
                Assert.Equal(b * Math.Cos(ang) + a * Math.Sin(ang), ys[t * 4 + i + 2], 1e-12);
            }
        // <R(s) q, R(t) k> depends on t - s only.
        var q = R([1, 4], 14); var k = R([1, 4], 15);
        double Score(int s, int t) => rope.Apply(q, s).MatMul(rope.Apply(k, t).T).Item();
        Assert.Equal(Score(1, 4), Score(7, 10), 1e-12);
        Input(v => rope.Apply(v, 1), x, "rotary");
        Assert.Throws<ArgumentOutOfRangeException>(() => rope.Apply(x, 11));
        Assert.Throws<ArgumentException>(() => new RotaryEmbedding(5));
    }

    [Fact]
    public void Attention_matches_loops_with_causal_and_explicit_masks()
    {
        int b = 2, h = 2, tq = 3, tk = 5, d = 4;
        var q = R([b, h, tq, d], 16); var k = R([b, h, tk, d], 17); var v = R([b, h, tk, 3], 18);
        var mask = Tensor.Rand([tq, tk], new Generator(19)) > 0.3;
        var maskv = mask.ToArray<bool>();
        foreach (var (causal, useMask) in new[] { (false, false), (true, false), (false, true), (true, true) })
        {
            var y = Functional.ScaledDotProductAttention(q, k, v, causal, useMask ? mask : null).ToArray<double>();
            var qs = q.ToArray<double>(); var ks = k.ToArray<double>(); var vs = v.ToArray<double>();
            for (int bh = 0; bh < b * h; bh++)
                for (int i = 0; i < tq; i++)
                {
                    var s = new double[tk];
                    var allowed = new bool[tk];
                    for (int j = 0; j < tk; j++)
                    {
                        allowed[j] = (!causal || j <= i + tk - tq) && (!useMask || maskv[i * tk + j]);
                        for (int c = 0; c < d; c++) s[j] += qs[(bh * tq + i) * d + c] * ks[(bh * tk + j) * d + c];
                        s[j] /= Math.Sqrt(d);
                    }
                    if (!allowed.Any(a => a)) { for (int c = 0; c < 3; c++) Assert.True(double.IsNaN(y[(bh * tq + i) * 3 + c])); continue; }
                    double mx = s.Where((_, j) => allowed[j]).Max();
                    var p = s.Select((x, j) => allowed[j] ? Math.Exp(x - mx) : 0).ToArray();
                    double z = p.Sum();
                    for (int c = 0; c < 3; c++)
                    {
                        double e = 0;
                        for (int j = 0; j < tk; j++) e += p[j] / z * vs[(bh * tk + j) * 3 + c];
                        Assert.Equal(e, y[(bh * tq + i) * 3 + c], 1e-12);
                    }
                }
        }
        Assert.Throws<ShapeMismatchException>(() => Functional.ScaledDotProductAttention(q, R([b, h, tk, 5], 1), v));
        Assert.Throws<ArgumentException>(() => Functional.ScaledDotProductAttention(q, k, v, mask: Tensor.Ones(tq, tk)));
    }

    [Fact]
    public void MultiHeadAttention_is_causal_and_passes_gradcheck()
    {
        var mha = new MultiHeadAttention(4, 2, causal: true, rotary: true, bias: true, maxSeqLen: 8, generator: new Generator(20), dtype: F64);
        var x = R([2, 3, 4], 21);
        Input(mha.Forward, x, "attention input");
        Parameters(mha, () => mha.Forward(x), "attention");
        // Changing the last position leaves earlier outputs unchanged.
        var x2 = x.Clone();
        using (Autograd.NoGrad()) x2.Narrow(1, 2, 1).Fill_(5);
        var y1 = mha.Forward(x).Narrow(1, 0, 2).ToArray<double>();
        var y2 = mha.Forward(x2).Narrow(1, 0, 2).ToArray<double>();
        TestKit.Close.Check(y1, y2, 1e-12, 1e-14, "causal prefix");
        Assert.NotEqual(mha.Forward(x).Narrow(1, 2, 1).ToArray<double>(), mha.Forward(x2).Narrow(1, 2, 1).ToArray<double>());
        Assert.Throws<ArgumentException>(() => new MultiHeadAttention(5, 2));
        Assert.Throws<ShapeMismatchException>(() => mha.Forward(R([3, 4], 1)));
    }

    [Theory]
    [InlineData(NormKind.LayerNorm)]
    [InlineData(NormKind.RMSNorm)]
    public void TransformerBlock_passes_gradcheck(NormKind norm)
    {
        var block = new TransformerBlock(4, 2, mlpHidden: 6, norm: norm, maxSeqLen: 8, generator: new Generator(22), dtype: F64);
        var x = R([1, 3, 4], 23);
        Input(block.Forward, x, $"block input ({norm})");
        Parameters(block, () => block.Forward(x), $"block ({norm})");
        Assert.Contains("attn.q_proj.weight", block.StateDict().Keys);
        Assert.DoesNotContain("attn.rotary.cos", block.StateDict().Keys);
    }
}
