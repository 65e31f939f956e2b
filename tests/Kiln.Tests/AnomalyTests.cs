using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>Autograd.DetectAnomaly: backward stops at the first op whose rule produces a NaN or an infinity.</summary>
[Collection(nameof(SerialCollection))]
public class AnomalyTests
{
    static Tensor V(params double[] v) => Tensor.FromArray(v);

    [Fact]
    public void Backward_stops_at_the_op_whose_rule_produced_a_nan_and_names_its_forward_call_site()
    {
        using (Autograd.DetectAnomaly())
        {
            Assert.True(Autograd.IsAnomalyEnabled);
            var x = V(0, 4).RequiresGrad_();
            // d/dx sqrt(x) at 0 is +inf; the exp above it is finite, so sqrt's rule is the first with a non-finite result.
            var y = x.Sqrt().Exp().Sum();
            var e = Assert.Throws<AnomalyException>(() => y.Backward());
            Assert.Contains("sqrt", e.Op, StringComparison.OrdinalIgnoreCase);
            Assert.Equal(0, e.Input);
            Assert.Contains("1 non-finite value(s) of 2", e.Message);
            Assert.NotNull(e.ForwardTrace);
            Assert.Contains(nameof(Backward_stops_at_the_op_whose_rule_produced_a_nan_and_names_its_forward_call_site), e.ForwardTrace);
            Assert.Contains("AnomalyTests.cs:line", e.ForwardTrace);
            Assert.Null(x.Grad);   // stopped before reaching the leaf
        }
        Assert.False(Autograd.IsAnomalyEnabled);
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void The_check_runs_on_every_device(string device)
    {
        var dev = Devices.Parse(device);
        using (Autograd.DetectAnomaly())
        {
            var x = Tensor.FromArray([0f, 1f, 4f]).To(dev).RequiresGrad_();
            var e = Assert.Throws<AnomalyException>(() => x.Sqrt().Sum().Backward());
            Assert.Contains("1 non-finite value(s) of 3", e.Message);
            var z = Tensor.FromArray([1f, 4f]).To(dev).RequiresGrad_();
            z.Sqrt().Sum().Backward();
            Assert.Equal([0.5f, 0.25f], z.Grad!.ToArray<float>());
        }
    }

    [Fact]
    public void Without_the_scope_the_same_backward_runs_through_and_finite_graphs_are_unchanged_inside_it()
    {
        var x = V(0, 4).RequiresGrad_();
        x.Sqrt().Exp().Sum().Backward();
        Assert.True(double.IsPositiveInfinity(x.Grad!.ToDoubleArray()[0]));

        var z = V(1, 4).RequiresGrad_();
        using (Autograd.DetectAnomaly()) z.Sqrt().Exp().Sum().Backward();
        Assert.Equal(Math.Exp(2) / 4, z.Grad!.ToDoubleArray()[1], 1e-12);
    }

    [Fact]
    public void An_op_recorded_outside_the_scope_is_named_without_a_trace()
    {
        var x = V(-1.0).RequiresGrad_();
        var y = x.Log().Sum();
        y = y * double.NaN;   // the seed of log's rule is already NaN; mul's rule is the first to produce one
        using (Autograd.DetectAnomaly())
        {
            var e = Assert.Throws<AnomalyException>(() => y.Backward());
            Assert.Null(e.ForwardTrace);
            Assert.Contains("forward call site is unknown", e.Message);
            Assert.Contains($"'{e.Op}'", e.Message);
        }
    }

    [Fact]
    public async Task The_scope_flows_into_async_continuations_and_nested_scopes_unwind()
    {
        using (Autograd.DetectAnomaly())
        {
            using (Autograd.DetectAnomaly()) { }
            Assert.True(Autograd.IsAnomalyEnabled);
            Assert.True(await Task.Run(() => Autograd.IsAnomalyEnabled));
        }
        Assert.False(Autograd.IsAnomalyEnabled);
        Assert.False(await Task.Run(() => Autograd.IsAnomalyEnabled));
    }
}
