using Kiln.NN;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests.NN;

/// <summary>The convolution layers: parameter shapes and names, PyTorch's initialization bounds, and forward = the functional op.</summary>
public class ConvLayerTests
{
    [Fact]
    public void Layers_hold_pytorch_shaped_parameters_within_the_kaiming_bounds()
    {
        var g = new Generator(1);
        var layers = new (ConvLayer Layer, int[] Weight, int FanIn)[]
        {
            (new Conv1d(4, 6, 3, generator: g), [6, 4, 3], 12),
            (new Conv2d(4, 6, (3, 2), groups: 2, generator: g), [6, 2, 3, 2], 12),
            (new Conv3d(2, 3, 2, generator: g), [3, 2, 2, 2, 2], 16),
            (new ConvTranspose2d(4, 6, 3, groups: 2, generator: g), [4, 3, 3, 3], 27),
        };
        foreach (var (layer, shape, fanIn) in layers)
        {
            Assert.Equal(new Shape(shape), layer.Weight.Value.Shape);
            Assert.Equal(new Shape(layer.OutChannels), layer.Bias!.Value.Shape);
            double bound = 1 / Math.Sqrt(fanIn);
            foreach (var p in new[] { layer.Weight.Value, layer.Bias.Value })
                Assert.All(p.ToDoubleArray(), e => Assert.InRange(Math.Abs(e), 0, bound));
            var w = layer.Weight.Value.ToDoubleArray();
            Assert.True(w.Max() - w.Min() > bound, $"weights spread over the bound {bound}: [{w.Min()}, {w.Max()}]");
            Assert.Equal(["weight", "bias"], layer.NamedParameters().Select(p => p.Name));
        }
    }

    [Fact]
    public void Forward_is_the_functional_op_with_the_layer_parameters()
    {
        var g = new Generator(2);
        var x = Tensor.Rand(new Shape(2, 4, 7, 6), g, -1, 1);
        var conv = new Conv2d(4, 6, 3, stride: 2, padding: 1, groups: 2, generator: g);
        Close.Check(Tensor.Conv2d(x, conv.Weight.Value, conv.Bias!.Value, 2, 1, groups: 2), conv.Forward(x), 0, 0, "conv2d");
        var up = new ConvTranspose2d(4, 2, 2, stride: 2, bias: false, generator: g);
        Assert.Null(up.Bias);
        Assert.Equal(new Shape(2, 2, 14, 12), up.Forward(x).Shape);
        Assert.Throws<ArgumentException>(() => new Conv2d(4, 6, 3, groups: 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Conv1d(4, 6, 0));
    }
}
