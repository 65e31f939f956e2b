using Kiln.NN;
using Xunit;
using static Kiln.Tests.NN.NNCheck;

namespace Kiln.Tests.NN;

/// <summary>The pooling and resampling layers: the tensor op they stand for, no parameters, gradients through a stack, argument errors.</summary>
public class PoolingLayerTests
{
    public static IEnumerable<object[]> Layers => new (Module<Tensor, Tensor>, Func<Tensor, Tensor>, int[])[]
    {
        (new MaxPool1d(3, 2, 1, 2, ceilMode: true), x => x.MaxPool([3], [2], [1], [2], true), [2, 3, 9]),
        (new MaxPool2d(2), x => x.MaxPool2d(2), [2, 3, 6, 5]),
        (new MaxPool3d(2, 1), x => x.MaxPool3d(2, 1), [1, 2, 3, 4, 3]),
        (new AvgPool1d(3, 1, 1, countIncludePad: false), x => x.AvgPool1d(3, 1, 1, countIncludePad: false), [2, 3, 7]),
        (new AvgPool2d(3, 2, 1, ceilMode: true, divisorOverride: 4), x => x.AvgPool2d(3, 2, 1, true, true, 4), [1, 2, 6, 7]),
        (new AvgPool3d(2), x => x.AvgPool3d(2), [1, 2, 4, 4, 4]),
        (new AdaptiveAvgPool2d(3, 2), x => x.AdaptiveAvgPool2d(3, 2), [2, 2, 7, 5]),
        (new AdaptiveAvgPool2d(1), x => x.GlobalAvgPool(), [2, 2, 7, 5]),
        (new Upsample(scaleFactor: [2.0], mode: InterpolateMode.Bilinear, alignCorners: true), x => x.Interpolate(null, [2.0], InterpolateMode.Bilinear, true), [1, 2, 3, 4]),
        (new Upsample(size: [5]), x => x.Interpolate([5]), [1, 2, 3]),
        (new PixelShuffle(2), x => x.PixelShuffle(2), [1, 8, 2, 3]),
    }.Select(c => new object[] { c.Item1, c.Item2, c.Item3 });

    [Theory, MemberData(nameof(Layers))]
    public void A_layer_is_its_tensor_op_with_no_parameters(Module<Tensor, Tensor> layer, Func<Tensor, Tensor> op, int[] shape)
    {
        var x = R(new Shape(shape), 1);
        TestKit.Close.Check(op(x), layer.Forward(x), 0, 0, layer.GetType().Name);
        Assert.Empty(layer.NamedParameters());
        Input(layer.Forward, x, layer.GetType().Name);
    }

    [Fact]
    public void A_small_convnet_head_trains_its_linear_layer_through_pooling_and_upsampling()
    {
        var head = new Linear(4, 1, generator: new Generator(2), dtype: DType.Float64);
        var net = new Sequential(new Upsample(scaleFactor: [2.0], mode: InterpolateMode.Bicubic), new MaxPool2d(2), new AvgPool2d(2), new AdaptiveAvgPool2d(2), new PixelShuffle(1));
        var x = R(new Shape(3, 1, 4, 4), 3);
        Parameters(head, () => head.Forward(net.Forward(x).Reshape(3, 4)), "linear after pooling");
    }

    [Fact]
    public void Bad_constructor_arguments_throw()
    {
        Assert.Equal("padding", Assert.Throws<ArgumentOutOfRangeException>(() => new MaxPool2d(3, padding: -1)).ParamName);
        Assert.Equal("padding", Assert.Throws<ArgumentException>(() => new AvgPool1d(2, padding: 2)).ParamName);
        Assert.Equal("kernelSize", Assert.Throws<ArgumentOutOfRangeException>(() => new MaxPool3d(0)).ParamName);
        Assert.Equal("stride", Assert.Throws<ArgumentOutOfRangeException>(() => new AvgPool2d(2, 0)).ParamName);
        Assert.Equal("dilation", Assert.Throws<ArgumentOutOfRangeException>(() => new MaxPool1d(2, dilation: 0)).ParamName);
        Assert.Equal("divisorOverride", Assert.Throws<ArgumentOutOfRangeException>(() => new AvgPool3d(2, divisorOverride: 0)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => new AdaptiveAvgPool2d(0, 2));
        Assert.Throws<ArgumentException>(() => new Upsample());
        Assert.Throws<ArgumentException>(() => new Upsample([2], [2.0]));
        Assert.Equal("scaleFactor", Assert.Throws<ArgumentOutOfRangeException>(() => new Upsample(scaleFactor: [0.0])).ParamName);
        Assert.Equal("alignCorners", Assert.Throws<ArgumentException>(() => new Upsample([4], alignCorners: true)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => new PixelShuffle(0));
        // A window larger than the input fails at Forward, where the input size is known.
        Assert.Throws<ArgumentException>(() => new MaxPool2d(5).Forward(R(new Shape(1, 1, 4, 4), 4)));
    }
}
