using Xunit;

namespace Kiln.Tests;

/// <summary>Bad input gets a clear exception naming the op, the argument and the shapes or values at fault.</summary>
public class ErrorTests
{
    static void Says<T>(Action act, params string[] fragments) where T : Exception
    {
        var e = Assert.ThrowsAny<T>(act);
        foreach (var f in fragments) Assert.Contains(f, e.Message);
    }

    [Fact]
    public void Shape_mismatches_name_both_shapes()
    {
        var a = Tensor.Zeros(2, 3); var b = Tensor.Zeros(4, 3);
        Says<ShapeMismatchException>(() => _ = a + b, "add", "[2, 3]", "[4, 3]");
        Says<ShapeMismatchException>(() => a.MatMul(Tensor.Zeros(2, 3)), "matmul", "[2, 3]", "3 vs 2");
        Says<ShapeMismatchException>(() => a.Reshape(4, 2), "reshape", "[4, 2]", "6");
        Says<ShapeMismatchException>(() => a.Reshape(-1, -1), "reshape", "-1");
        Says<ShapeMismatchException>(() => Tensor.Concat([a, Tensor.Zeros(2, 4)], 0), "concat", "dimension 1");
        Says<ShapeMismatchException>(() => a.LayerNorm(Tensor.Ones(4)), "layer_norm", "weight", "[4]");
        Says<ShapeMismatchException>(() => Tensor.FromArray(new float[5], [2, 3]), "from_array", "6", "5");
        Says<ShapeMismatchException>(() => a.Add_(Tensor.Zeros(1, 2, 3)), "add_", "keep");
    }

    [Fact]
    public void Wrong_dtypes_and_devices()
    {
        // Elementwise ops promote mixed dtypes (TypePromotionTests); matmul takes one dtype.
        Says<ArgumentException>(() => Tensor.Zeros(2, 2).MatMul(Tensor.Zeros([2, 2], DType.Float64)), "matmul", "Float64", "Float32");
        Says<NotSupportedException>(() => Tensor.Zeros([2], DType.Int32).Exp(), "exp", "Int32");
        Says<ArgumentException>(() => Tensor.Zeros(2).Gather(0, Tensor.Zeros([2], DType.Int32)), "gather", "Int64");
        Says<InvalidCastException>(() => Tensor.Zeros(2).ToArray<double>(), "Float32");
        Says<NotSupportedException>(() => Tensor.Zeros(2).To(Device.Cuda(7)), "cuda:7");
    }

    [Fact]
    public void Out_of_range_axes_and_indices()
    {
        var a = Tensor.Zeros(2, 3);
        Says<ArgumentOutOfRangeException>(() => a.Sum(2), "sum", "axis 2", "rank 2");
        Says<ArgumentOutOfRangeException>(() => a.Softmax(-3), "softmax", "-3");
        Says<ArgumentOutOfRangeException>(() => a.Gather(1, Tensor.FromArray(new long[] { 0, 3, 0, 1, 1, 1 }, [2, 3])), "gather", "3", "size 3");
        Says<ArgumentOutOfRangeException>(() => a.Narrow(1, 2, 2), "narrow", "[2, 4)");
        Says<ArgumentOutOfRangeException>(() => _ = a[0, 5], "index", "5");
        Says<ArgumentOutOfRangeException>(() => Tensor.FromArray(new long[] { 4 }).OneHot(3), "one_hot", "4");
        Says<ArgumentException>(() => a.Permute(0, 0), "permute");
        Says<ArgumentOutOfRangeException>(() => a.TopK(4, 1), "topk", "k");
    }

    [Fact]
    public void Negative_sizes_and_bad_values()
    {
        Says<ArgumentOutOfRangeException>(() => Tensor.Zeros(2, -1), "negative", "-1");
        Says<ArgumentException>(() => Tensor.Arange(0, 1, 0), "arange", "step");
        Says<ArgumentOutOfRangeException>(() => Tensor.Bernoulli([2], 1.5), "bernoulli", "p");
        Says<ArgumentException>(() => Tensor.Zeros(0, 3).Amax([0]), "amax", "empty");
        Says<ArgumentException>(() => Tensor.Ones(2).Clamp(1, 0), "clamp", "min");
        Says<ArgumentOutOfRangeException>(() => Tensor.Ones(4).Slice(0, 0, 4, 0), "slice", "step");
    }

    [Fact]
    public void Disposed_storage_is_reported()
    {
        var a = Tensor.Ones(3);
        var view = a.Reshape(3, 1);
        a.Dispose();
        Says<ObjectDisposedException>(() => view.Sum(), "disposed");
        Says<ObjectDisposedException>(() => view.ToArray<float>(), "disposed");
        Tensor temp, kept;
        var outside = Tensor.Ones(2);
        using (var scope = Tensor.Scope())
        {
            temp = outside * 2.0;
            kept = scope.Keep(outside * 3.0);
            _ = outside.Reshape(2, 1);   // a view of a tensor made outside: its storage is not the scope's
        }
        Assert.True(temp.Storage.IsDisposed);
        Assert.False(kept.Storage.IsDisposed);
        Assert.False(outside.Storage.IsDisposed);
    }
}
