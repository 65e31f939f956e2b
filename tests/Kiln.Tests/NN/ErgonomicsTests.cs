using Kiln.NN;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests.NN;

/// <summary>
/// Issue #19's ergonomics: a Parameter is a Tensor, modules move between devices in place, a model summary, PyTorch's
/// printing, the named comparisons and the in-place scalar overloads.
/// </summary>
public class ErgonomicsTests
{
    [Fact]
    public void A_parameter_is_usable_wherever_a_tensor_is()
    {
        var lin = new Linear(3, 2, generator: new Generator(1));
        Tensor doubled = lin.Weight * 2.0;
        Assert.Equal(lin.Weight.ToDoubleArray().Select(v => v * 2), doubled.ToDoubleArray());
        Assert.Equal(lin.Weight.ToDoubleArray().Sum(), lin.Weight.Sum().Item(), 1e-5);
        var loss = (lin.Weight * lin.Weight).Sum();
        loss.Backward();
        Assert.Equal(lin.Weight.ToDoubleArray().Select(v => 2 * v), lin.Weight.Grad!.ToDoubleArray().Select(v => v), new Approx(1e-6));
        Assert.StartsWith("Parameter containing:\ntensor([[", lin.Weight.ToString());
        Assert.EndsWith("requires_grad=True)", lin.Weight.ToString());
    }

    sealed class Approx(double tol) : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) <= tol;
        public int GetHashCode(double v) => 0;
    }

    [Fact]
    public void Modules_move_between_devices_in_place_keeping_their_parameter_objects()
    {
        var device = Devices.All.First(d => d != Device.Cpu);
        var bn = new BatchNorm1d(4);
        var net = new Sequential(new Linear(4, 4, generator: new Generator(2)), bn);
        var before = net.Parameters().ToArray();
        var values = before.Select(p => p.ToDoubleArray()).ToArray();
        net.To(device);
        Assert.Equal(before, net.Parameters().ToArray());
        Assert.All(net.Parameters(), p => Assert.Equal(device, p.Device));
        Assert.All(net.NamedBuffers(), b => Assert.Equal(device, b.Buffer.Device));
        Assert.Equal(values, net.Parameters().Select(p => p.ToDoubleArray()).ToArray());
        var y = net.Forward(Tensor.Ones(new Shape(3, 4), device: device));
        Assert.Equal(device, y.Device);
        net.To(Device.Cpu).To(DType.Float64);
        Assert.All(net.Parameters(), p => { Assert.Equal(Device.Cpu, p.Device); Assert.Equal(DType.Float64, p.DType); Assert.True(p.RequiresGrad); });
        Assert.Equal(DType.Int64, net.NamedBuffers().Single(b => b.Name.EndsWith("num_batches_tracked")).Buffer.DType);
    }

    [Fact]
    public void The_summary_lists_every_module_and_the_totals()
    {
        var net = new Sequential(new Linear(4, 8), new Activation(ActivationKind.Relu), new Linear(8, 2, bias: false));
        string s = net.Summary();
        Assert.Contains("weight [8, 4], bias [8]", s);
        Assert.Contains("weight [2, 8]", s);
        Assert.Contains("parameters: 56 (56 trainable)", s);
        Assert.Contains("Activation", s);
    }

    [Fact]
    public void Tensors_print_like_pytorch()
    {
        Assert.Equal("tensor([[1.0000, 2.5000],\n        [3.0000, 4.0000]])", Tensor.FromArray([1f, 2.5f, 3, 4]).Reshape(2, 2).ToString());
        Assert.Equal("tensor([1., 2., 3.])", Tensor.FromArray([1f, 2, 3]).ToString());
        Assert.Equal("tensor([1234567,      -2])", Tensor.FromArray([1234567L, -2]).ToString());
        Assert.Equal("tensor([ True, False])", Tensor.FromArray([1.0, 0.0]).Gt(Tensor.Scalar(0.5, DType.Float64)).ToString());
        Assert.Equal("tensor([1.0000e-05, 1.0000e+00], dtype=Float64)", Tensor.FromArray([1e-5, 1.0]).ToString());
        Assert.Equal("tensor([   nan,    inf, 1.5000])", Tensor.FromArray([float.NaN, float.PositiveInfinity, 1.5f]).ToString());
        Assert.Equal("tensor(3.5000)", Tensor.Scalar(3.5).ToString());
        Assert.Equal("tensor([], size=(0, 3))", Tensor.Zeros(new Shape(0, 3)).ToString());
        var big = Tensor.Arange(2000).Reshape(40, 50).ToString();
        Assert.Contains("...", big);
        Assert.StartsWith("tensor([[   0,    1,    2,  ...,   47,   48,   49],", big);
        Assert.EndsWith("[1950, 1951, 1952,  ..., 1997, 1998, 1999]])", big);
        var disposed = Tensor.Ones(2);
        disposed.Dispose();
        Assert.Contains("<disposed>", disposed.ToString());
    }

    [Fact]
    public void Named_comparisons_and_in_place_scalar_ops()
    {
        var a = Tensor.FromArray([1.0, 2.0, 3.0]);
        var b = Tensor.FromArray([2.0, 2.0, 2.0]);
        Assert.Equal(new[] { 1.0, 0, 0 }, a.Lt(b).ToDoubleArray());
        Assert.Equal(new[] { 1.0, 1, 0 }, a.Le(b).ToDoubleArray());
        Assert.Equal(new[] { 0.0, 0, 1 }, a.Gt(b).ToDoubleArray());
        Assert.Equal(new[] { 0.0, 1, 1 }, a.Ge(b).ToDoubleArray());
        Assert.Equal(new[] { 0.5, 1.0, 1.5 }, a.Clone().Sub_(1.0).Div_(2.0).Add_(0.5).ToDoubleArray().Select(v => v));
        Assert.Equal(new[] { 4L, 5 }, Tensor.FromArray([5L, 6]).Sub_(1L).ToArray<long>());
        Assert.Throws<ArgumentException>(() => Tensor.FromArray([5L, 6]).Div_(2.0));
        // == is reference equality, as for any .NET object; Eq is the elementwise comparison.
        var c = a.Clone();
#pragma warning disable CS1718
        Assert.False(a == c);
        Assert.True(a == a);
#pragma warning restore CS1718
        Assert.Equal(new[] { 1.0, 1, 1 }, a.Eq(c).ToDoubleArray());
    }
}
