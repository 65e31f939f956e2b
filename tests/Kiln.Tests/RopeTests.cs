using FsCheck.Fluent;
using Kiln.Kernels;
using Kiln.Tests.TestKit;
using Xunit;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>The fused rotary embedding against <see cref="Reference.Rope"/>, the three-op composition and finite differences.</summary>
public class RopeTests
{
    // The composition the fused op replaces: x cos + concat(-x2, x1) sin.
    static Tensor Composite(Tensor x, Tensor cos, Tensor sin)
    {
        int h = x.Shape[-1] / 2;
        return x * cos + Tensor.Concat([-x.Narrow(-1, h, h), x.Narrow(-1, 0, h)], x.Rank - 1) * sin;
    }

    [Theory, MemberData(nameof(FusedRowTests.DeviceDtype), MemberType = typeof(FusedRowTests))]
    public void Rope_of_any_layout_matches_the_float64_reference(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        // Random shapes of rank 2-4 with an even last dim (a doubled extent, empty included) in every layout.
        Props.Check(dev, from c in TensorGen.Case(maxRank: 3) from half in G.Choose(0, 9) select (c, half), t =>
        {
            var (c, half) = t;
            int[] shape = [.. c.Shape, 2 * half];
            if (shape.Length < 2) shape = [1, .. shape];
            var x = TensorGen.Make(shape, c.View, c.Seed, dtype, dev);
            int tt = shape[^2], d = shape[^1];
            var cos = TensorGen.Make([tt, d], TensorGen.ViewKind.Contiguous, c.Seed + 1, dtype, dev, -1, 1);
            var sin = TensorGen.Make([tt, d], TensorGen.ViewKind.Contiguous, c.Seed + 2, dtype, dev, -1, 1);
            var y = x.Rope(cos, sin);
            Assert.Equal(x.Shape, y.Shape);
            var (rtol, atol) = Close.For(dtype, 4);
            Close.Check(Reference.Rope(x.Contiguous().ToDoubleArray(), tt, d, cos.ToDoubleArray(), sin.ToDoubleArray()), y.ToDoubleArray(), rtol, atol, "rope");
        });
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void Rope_gives_the_bits_of_the_composition(DType dtype)
    {
        var g = new Generator(3);
        // Widths below, at and above a vector, and a permuted input as the decoder passes it.
        foreach (int d in new[] { 2, 6, 32, 64, 130 })
        {
            var x = Tensor.Randn([2, 5, 3, d], g, dtype: dtype).Permute(0, 2, 1, 3);
            var cos = Tensor.Randn([5, d], g, dtype: dtype);
            var sin = Tensor.Randn([5, d], g, dtype: dtype);
            Assert.Equal(Composite(x, cos, sin).ToDoubleArray(), x.Rope(cos, sin).ToDoubleArray());
        }
    }

    [Fact]
    public void Rope_gradients_match_finite_differences()
    {
        var g = new Generator(5);
        var x = Tensor.Rand(new Shape(2, 3, 4, 6), g, -1, 1, DType.Float64);
        var cos = Tensor.Rand(new Shape(4, 6), g, -1, 1, DType.Float64);
        var sin = Tensor.Rand(new Shape(4, 6), g, -1, 1, DType.Float64);
        var r = GradCheck.Run(t => t[0].Rope(t[1], t[2]), [x, cos, sin]);
        Assert.True(r.Passed, r.ToString());
        // And the same gradients as the composition's, which autograd derives on its own.
        var (a, b) = (x.Detach().RequiresGrad_(), x.Detach().RequiresGrad_());
        var gy = Tensor.Randn(x.Shape, g, dtype: DType.Float64);
        a.Rope(cos, sin).Backward(gy);
        Composite(b, cos, sin).Backward(gy);
        Close.Check(b.Grad!.ToDoubleArray(), a.Grad!.ToDoubleArray(), 1e-15, 1e-15, "dx");
    }

    [Fact]
    public void Bad_rope_inputs_are_named()
    {
        var x = Tensor.Zeros([2, 4, 6]);
        var tab = Tensor.Zeros([4, 6]);
        Assert.Contains("even", Assert.Throws<ShapeMismatchException>(() => Tensor.Zeros([2, 4, 5]).Rope(Tensor.Zeros([4, 5]), Tensor.Zeros([4, 5]))).Message);
        Assert.Equal("cos", Assert.Throws<ShapeMismatchException>(() => x.Rope(Tensor.Zeros([3, 6]), tab)).ParamName);
        Assert.Equal("sin", Assert.Throws<ShapeMismatchException>(() => x.Rope(tab, Tensor.Zeros([4, 6, 1]))).ParamName);
        Assert.Equal("cos", Assert.Throws<ArgumentException>(() => x.Rope(tab.To(DType.Float64), tab)).ParamName);
        Assert.Throws<ShapeMismatchException>(() => Tensor.Zeros([6]).Rope(tab, tab));
    }
}
