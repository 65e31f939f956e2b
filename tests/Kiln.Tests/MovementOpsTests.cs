using Xunit;

namespace Kiln.Tests;

/// <summary>
/// The movement family beyond its definitions (OpConformanceTests checks every op against its float64 reference on
/// every device): float64 gradients against finite differences, the diagonal being a view, PyTorch's documented
/// examples, and the exceptions for bad arguments.
/// </summary>
public class MovementOpsTests
{
    static Tensor R(int seed, params int[] shape) => Tensor.Rand(new Shape(shape), new Generator((ulong)seed), -1, 1, DType.Float64);

    static void Ok(Func<Tensor[], Tensor> f, params Tensor[] inputs)
    {
        var r = GradCheck.Run(f, inputs);
        Assert.True(r.Passed, r.ToString());
    }

    static void Says<T>(Action act, params string[] fragments) where T : Exception
    {
        var e = Assert.ThrowsAny<T>(act);
        foreach (var f in fragments) Assert.Contains(f, e.Message);
    }

    [Fact] public void Tril_triu_gradients_over_a_batch() => Ok(x => x[0].Tril(1) * 2.0 + x[0].Triu(-1), R(1, 2, 3, 4));
    [Fact] public void Flip_gradient() => Ok(x => x[0].Flip(0, -1) * x[0], R(2, 3, 2, 4));
    [Fact] public void Roll_gradients() => Ok(x => x[0].Roll([1, -2, 3], [0, 2, 0]) * x[0] + x[0].Roll(5), R(3, 3, 2, 4));
    [Fact] public void Repeat_and_tile_gradients() => Ok(x => x[0].Repeat(2, 1, 3).Sum([0]).Narrow(-1, 2, 3) + x[0].Tile(2).Narrow(-1, 1, 3), R(4, 2, 3));
    [Fact] public void Repeat_interleave_gradients() => Ok(x => x[0].RepeatInterleave(Tensor.FromArray(new long[] { 2, 0, 3 }), 1).Sum([1]) + x[0].RepeatInterleave(2).Sum(), R(5, 2, 3));
    [Fact] public void Diagonal_diag_and_diag_embed_gradients()
    {
        Ok(x => x[0].Diagonal(-1, 2, 0), R(6, 4, 2, 3));
        Ok(x => x[0].Diag(1).Diag(1) + x[0].Diag(-1).Sum([0]).Narrow(0, 0, 3), R(7, 3));
        Ok(x => x[0].DiagEmbed(1, 0, 2) * 3.0, R(8, 2, 3));
    }
    [Fact] public void Meshgrid_gradients() => Ok(x => { var g = Tensor.Meshgrid([x[0], x[1]], "xy"); return g[0] * g[1]; }, R(9, 3), R(10, 2));

    [Fact]
    public void Diagonal_is_a_view_of_any_layout()
    {
        var x = Tensor.Arange(0, 24, 1, DType.Float64).Reshape(2, 3, 4);
        var d = x.Diagonal(1, 1, 2);
        Assert.Same(x.Storage, d.Storage);
        Assert.Equal(new Shape(2, 3), d.Shape);
        Assert.Equal(new double[] { 1, 6, 11, 13, 18, 23 }, d.ToDoubleArray());
        var t = x.Transpose(0, 2);                                  // [4, 3, 2]
        Assert.Same(x.Storage, t.Diagonal(0, 0, 1).Storage);
        Assert.Equal(x.Diagonal(0, 2, 1).ToDoubleArray(), t.Diagonal(0, 0, 1).ToDoubleArray());
        Assert.Equal(new Shape(2, 0), x.Diagonal(4, 1, 2).Shape);
    }

    [Fact]
    public void PyTorch_documented_examples()
    {
        var x = Tensor.Arange(1, 9, 1, DType.Int64).Reshape(4, 2);
        Assert.Equal(new long[] { 8, 1, 2, 3, 4, 5, 6, 7 }, x.Roll(1).ToArray<long>());
        Assert.Equal(new long[] { 7, 8, 1, 2, 3, 4, 5, 6 }, x.Roll(1, 0).ToArray<long>());
        Assert.Equal(new long[] { 3, 4, 5, 6, 7, 8, 1, 2 }, x.Roll(-1, 0).ToArray<long>());
        Assert.Equal(new long[] { 6, 5, 8, 7, 2, 1, 4, 3 }, x.Roll([2, 1], [0, 1]).ToArray<long>());

        var v = Tensor.FromArray(new long[] { 1, 2, 3 });
        Assert.Equal(new Shape(4, 6), v.Repeat(4, 2).Shape);
        Assert.Equal(new Shape(4, 2, 3), v.Repeat(4, 2, 1).Shape);
        Assert.Equal(new long[] { 1, 2, 3, 1, 2, 3 }, v.Tile(2).ToArray<long>());

        var y = Tensor.FromArray(new long[,] { { 1, 2 }, { 3, 4 } });
        Assert.Equal(new long[] { 1, 2, 1, 2, 3, 4, 3, 4, 1, 2, 1, 2, 3, 4, 3, 4 }, y.Tile(2, 2).ToArray<long>());
        Assert.Equal(new long[] { 1, 1, 2, 2, 3, 3, 4, 4 }, y.RepeatInterleave(2).ToArray<long>());
        Assert.Equal(new long[] { 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4 }, y.RepeatInterleave(3, 1).ToArray<long>());
        Assert.Equal(new long[] { 1, 2, 3, 4, 3, 4 }, y.RepeatInterleave(Tensor.FromArray(new long[] { 1, 2 }), 0).ToArray<long>());
        Assert.Equal(new long[] { 2, 1, 4, 3 }, y.Flip(1).ToArray<long>());

        var ij = Tensor.Meshgrid([v, Tensor.FromArray(new long[] { 4, 5 })]);
        Assert.Equal(new long[] { 1, 1, 2, 2, 3, 3 }, ij[0].ToArray<long>());
        Assert.Equal(new long[] { 4, 5, 4, 5, 4, 5 }, ij[1].ToArray<long>());
        var xy = Tensor.Meshgrid([v, Tensor.FromArray(new long[] { 4, 5 })], "xy");
        Assert.Equal(new Shape(2, 3), xy[0].Shape);
        Assert.Equal(new long[] { 1, 2, 3, 1, 2, 3 }, xy[0].ToArray<long>());

        Assert.Equal(new double[] { 0, 1, 0, 0, 0, 2, 0, 0, 0 }, Tensor.FromArray(new double[] { 1, 2 }).Diag(1).ToDoubleArray());
        Assert.Equal(new double[] { 1, 0, 0, 1, 1, 0, 1, 1, 1 }, Tensor.Ones(3, 3).Tril().ToDoubleArray());
        Assert.Equal(new double[] { 0, 1, 1, 0, 0, 1, 0, 0, 0 }, Tensor.Ones(3, 3).Triu(1).ToDoubleArray());
    }

    [Fact]
    public void Where_with_one_argument_is_nonzero_by_dim()
    {
        var c = Tensor.FromArray(new double[,] { { 0, 1.5, 0 }, { double.NaN, 0, -2 } });
        var w = Tensor.Where(c);
        Assert.Equal(2, w.Length);
        Assert.Equal(new long[] { 0, 1, 1 }, w[0].ToArray<long>());
        Assert.Equal(new long[] { 1, 0, 2 }, w[1].ToArray<long>());
        Assert.All(w, t => Assert.Equal(DType.Int64, t.DType));
        Assert.NotSame(w[0].Storage, w[1].Storage);
        var s = Tensor.Where(Tensor.Scalar(3.0, DType.Float64));
        Assert.Equal(new long[] { 0 }, Assert.Single(s).ToArray<long>());
        Assert.Equal(new Shape(0), Tensor.Where(Tensor.Zeros(2, 2))[1].Shape);
    }

    [Fact]
    public void Bad_arguments_name_the_argument_and_values()
    {
        var a = Tensor.Zeros(2, 3);
        Says<ShapeMismatchException>(() => Tensor.Zeros(3).Tril(), "tril", "[3]");
        Says<ShapeMismatchException>(() => Tensor.Zeros(3).Triu(), "triu", "[3]");
        Says<ArgumentException>(() => a.Flip(0, -2), "flip", "[0, -2]", "dimension 0 more than once");
        Says<ArgumentOutOfRangeException>(() => a.Flip(2), "flip", "axis 2", "rank 2");
        Says<ArgumentException>(() => a.Roll([1, 2], [0]), "roll", "2 shifts [1, 2]", "1 dims [0]");
        Says<ArgumentException>(() => a.Roll([1, 2]), "roll", "without dims", "[1, 2]");
        Says<ArgumentOutOfRangeException>(() => a.Roll(1, -3), "roll", "axis -3");
        Says<ArgumentException>(() => a.Repeat(2), "repeat", "1 repeats [2]", "rank 2");
        Says<ArgumentOutOfRangeException>(() => a.Repeat(2, -1), "repeat", "repeats[1] = -1");
        Says<ArgumentOutOfRangeException>(() => a.Tile(-2), "tile", "repeats[1] = -2");
        Says<ArgumentOutOfRangeException>(() => a.RepeatInterleave(-1), "repeat_interleave", "repeats -1");
        Says<ArgumentOutOfRangeException>(() => a.RepeatInterleave(2, 2), "repeat_interleave", "axis 2");
        Says<ArgumentException>(() => a.RepeatInterleave(Tensor.FromArray(new long[] { 1, 2, 3 }), 0), "repeat_interleave", "3 counts", "dimension 0 has size 2");
        Says<ArgumentException>(() => a.RepeatInterleave(Tensor.FromArray(new int[] { 1, 2 }), 0), "repeat_interleave", "Int64", "Int32");
        Says<ArgumentOutOfRangeException>(() => a.RepeatInterleave(Tensor.FromArray(new long[] { 1, -4 }), 0), "repeat_interleave", "repeats[1] = -4");
        Says<ArgumentException>(() => a.RepeatInterleave(Tensor.Zeros([1, 2], DType.Int64)), "repeat_interleave", "0-D or 1-D", "[1, 2]");
        Says<ArgumentException>(() => a.Diagonal(0, 1, -1), "diagonal", "same dimension 1");
        Says<ShapeMismatchException>(() => Tensor.Zeros(3).Diagonal(), "diagonal", "[3]");
        Says<ShapeMismatchException>(() => Tensor.Zeros(2, 2, 2).Diag(), "diag", "[2, 2, 2]");
        Says<ShapeMismatchException>(() => Tensor.Scalar(1).DiagEmbed(), "diag_embed", "0-D");
        Says<ArgumentException>(() => a.DiagEmbed(0, 0, -3), "diag_embed", "same dimension 0");
        Says<ArgumentException>(() => Tensor.Meshgrid([Tensor.Zeros(2)], "yx"), "meshgrid", "\"yx\"");
        Says<ShapeMismatchException>(() => Tensor.Meshgrid([Tensor.Zeros(2), a]), "meshgrid", "tensors[1]", "[2, 3]");
        Says<ArgumentException>(() => Tensor.Meshgrid([Tensor.Zeros(2), Tensor.Zeros([2], DType.Int64)]), "meshgrid", "Int64", "Float32");
    }
}
