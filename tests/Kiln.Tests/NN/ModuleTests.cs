using Kiln.NN;
using Xunit;

namespace Kiln.Tests.NN;

/// <summary>Module plumbing: names, state dictionaries, train/eval mode, initializers.</summary>
public class ModuleTests
{
    [Fact]
    public void StateDict_round_trips_into_a_fresh_model()
    {
        var a = new MLP([4, 8, 3], generator: new Generator(1));
        var b = new MLP([4, 8, 3], generator: new Generator(2));
        var x = Tensor.Randn([5, 4], new Generator(3));
        Assert.NotEqual(a.Forward(x).ToArray<float>(), b.Forward(x).ToArray<float>());
        var saved = a.StateDict().ToDictionary(kv => kv.Key, kv => kv.Value.Clone());
        var (missing, unexpected) = b.LoadStateDict(saved);
        Assert.Empty(missing); Assert.Empty(unexpected);
        Assert.Equal(a.Forward(x).ToArray<float>(), b.Forward(x).ToArray<float>());
        // Loading copies: training b afterwards leaves the saved tensors alone.
        var before = saved["layers.0.weight"].ToArray<float>();
        using (Autograd.NoGrad()) b.Parameters().First().Value.Add_(1.0);
        Assert.Equal(before, saved["layers.0.weight"].ToArray<float>());
        // Float64 values load into a Float32 model by conversion.
        var f64 = saved.ToDictionary(kv => kv.Key, kv => kv.Value.To(DType.Float64));
        b.LoadStateDict(f64);
        Assert.Equal(a.Forward(x).ToArray<float>(), b.Forward(x).ToArray<float>());
    }

    [Fact]
    public void LoadStateDict_names_missing_unexpected_and_mismatched_keys()
    {
        var m = new MLP([4, 8, 3]);
        var state = m.StateDict().ToDictionary(kv => kv.Key, kv => kv.Value.Clone());
        state.Remove("layers.2.bias");
        state["layers.9.weight"] = Tensor.Zeros(2);
        var ex = Assert.Throws<ArgumentException>(() => m.LoadStateDict(state));
        Assert.Contains("missing keys [layers.2.bias]", ex.Message);
        Assert.Contains("unexpected keys [layers.9.weight]", ex.Message);
        var (missing, unexpected) = m.LoadStateDict(state, strict: false);
        Assert.Equal(["layers.2.bias"], missing);
        Assert.Equal(["layers.9.weight"], unexpected);
        state = m.StateDict().ToDictionary(kv => kv.Key, kv => kv.Value.Clone());
        var w0 = m.StateDict()["layers.0.weight"].ToArray<float>();
        state["layers.2.weight"] = Tensor.Zeros(3, 7);
        state["layers.0.weight"] = Tensor.Zeros(8, 4);
        var sm = Assert.Throws<ShapeMismatchException>(() => m.LoadStateDict(state, strict: false));
        Assert.Contains("layers.2.weight", sm.Message);
        Assert.Contains("[3, 7]", sm.Message);
        // A failed load changes nothing.
        Assert.Equal(w0, m.StateDict()["layers.0.weight"].ToArray<float>());
    }

    sealed class Tied : Module<Tensor, Tensor>
    {
        public Tied()
        {
            Inner = RegisterModule("inner", new Linear(2, 2));
            RegisterParameter("shared", Inner.Weight);
            RegisterBuffer("steps", Tensor.Zeros(1));
        }
        public Linear Inner { get; }
        public override Tensor Forward(Tensor input) => Inner.Forward(input);
    }

    [Fact]
    public void Names_are_unique_and_shared_parameters_count_once()
    {
        var t = new Tied();
        // Own entries come before children's, as in PyTorch, so the shared weight is named by the outer module.
        Assert.Equal(["shared", "inner.bias"], t.NamedParameters().Select(p => p.Name).ToArray());
        Assert.Contains("steps", t.StateDict().Keys);
        Assert.Equal(["", "inner"], t.NamedModules().Select(m => m.Name).ToArray());
        Assert.Throws<ArgumentException>(() => new BadNames());
    }

    sealed class BadNames : Module
    {
        public BadNames() { RegisterParameter("w", new Parameter(Tensor.Zeros(1))); RegisterBuffer("w", Tensor.Zeros(1)); }
    }

    [Fact]
    public void Parameter_rejects_integer_tensors()
    {
        Assert.Throws<NotSupportedException>(() => new Parameter(Tensor.Zeros([2], DType.Int64)));
    }

    [Fact]
    public void Xavier_and_kaiming_have_the_stated_spread()
    {
        // 256 x 512 draws: the sample std is within 1% of the truth with overwhelming probability (sd ~ 0.3%).
        var g = new Generator(5);
        void Std(Tensor t, double expected, string what)
        {
            double s = t.To(DType.Float64).Std().Item();
            Assert.True(Math.Abs(s - expected) < 0.01 * expected, $"{what}: std {s}, expected {expected}");
        }
        var w = Tensor.Empty([256, 512]);
        Std(Init.XavierUniform_(w, 1, g), Math.Sqrt(2.0 / 768), "xavier uniform");
        Std(Init.XavierNormal_(w, 2, g), 2 * Math.Sqrt(2.0 / 768), "xavier normal");
        Std(Init.KaimingUniform_(w, nonlinearity: "relu", generator: g), Math.Sqrt(2.0 / 512), "kaiming uniform");
        Std(Init.KaimingNormal_(w, mode: FanMode.FanOut, nonlinearity: "relu", generator: g), Math.Sqrt(2.0 / 256), "kaiming normal fan out");
        Std(Init.Normal_(w, 1, 0.3, g), 0.3, "normal");
        Assert.Equal(1, w.Mean().Item(), 1e-2);
        Assert.Equal((40, 30), Init.Fans([3, 4, 2, 5]));
        Assert.Throws<ArgumentException>(() => Init.Fans([3]));
        Assert.Throws<ArgumentException>(() => Init.Gain("swish"));
    }

    [Theory]
    [InlineData(3, 7)]
    [InlineData(7, 3)]
    [InlineData(5, 5)]
    public void Orthogonal_gives_orthonormal_rows_or_columns(int rows, int cols)
    {
        var w = Init.Orthogonal_(Tensor.Empty([rows, cols], DType.Float64), 2.0, new Generator(6));
        var gram = rows <= cols ? w.MatMul(w.T) : w.T.MatMul(w);
        int k = Math.Min(rows, cols);
        TestKit.Close.Check(Tensor.Eye(k, dtype: DType.Float64) * 4.0, gram, 0, 1e-12, "gram");
        Assert.Throws<ArgumentException>(() => Init.Orthogonal_(Tensor.Empty([4])));
    }
}
