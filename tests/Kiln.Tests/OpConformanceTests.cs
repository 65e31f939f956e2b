using Kiln.Methods;
using Kiln.Ops;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>
/// Every op definition in <see cref="OpCatalog"/> (built-in and the method library's, on the extension API) against its
/// float64 reference on every device in <see cref="Devices.All"/> and each of its dtypes, with the domain and error
/// budget its definition states: every edge shape in every layout, then random shapes, layouts and values (FsCheck).
/// <c>kiln validate</c> runs the same definitions.
/// </summary>
public class OpConformanceTests
{
    public static IEnumerable<object[]> Cases
    {
        get
        {
            _ = MethodOps.All;
            return from op in OpCatalog.All from d in Devices.All from dt in op.DTypes select new object[] { op.Name, d.ToString(), dt };
        }
    }

    static FsCheck.Gen<OpCase> Case(OpDefinition op) =>
        from rank in G.Choose(op.MinRank, op.MaxRank)
        from dims in G.ArrayOf(G.Frequency((1, G.Constant(0)), (9, G.Choose(1, 9))), rank)
        from view in G.Elements(Enum.GetValues<InputView>())
        from seed in TensorGen.Seed
        select new OpCase(dims, view, (ulong)seed);

    [Theory, MemberData(nameof(Cases))]
    public void Op_matches_its_reference(string name, string device, DType dtype)
    {
        var op = OpCatalog.Get(name);
        var dev = Devices.Parse(device);
        foreach (var c in op.Cases(0))
        {
            var r = Conformance.Run(op, dev, dtype, c);
            Assert.True(r.Pass, r.Detail);
            if (dev == Device.Cpu && r.Digest != 0)
                using (Kiln.Backends.CpuBackend.LimitThreads(1))
                    Assert.True(Conformance.Run(op, dev, dtype, c).Digest == r.Digest, $"{name} {dtype}, case {c}: one thread differs from all cores");
        }
        foreach (var s in op.CheckSpecials(dev, dtype))
            Assert.True(s.Pass, $"{name} {dtype} on {device}, {s.Class} inputs: {string.Join("; ", s.Mismatches)}");
        Props.Check(dev, Case(op), c =>
        {
            var r = Conformance.Run(op, dev, dtype, c);
            Assert.True(r.Pass, r.Detail);
        }, maxTest: 30);
    }

    public static IEnumerable<object[]> Differentiable =>
        ElementwiseOps.Unary.Where(d => d.Gradient is not null).Select(d => new object[] { d.Op });

    [Theory, MemberData(nameof(Differentiable))]
    public void Unary_gradient_rule_matches_finite_differences(Kiln.Kernels.UnaryOp op)
    {
        var def = ElementwiseOps.Of(op);
        var x = OpDefinition.Input([3, 4], InputView.Contiguous, (ulong)op + 1, DType.Float64, Device.Cpu, def.GradDomain);
        // Keep |x| away from the kinks of abs and relu, where the finite difference straddles the corner.
        if (op is Kiln.Kernels.UnaryOp.Abs or Kiln.Kernels.UnaryOp.Relu) x = Tensor.Where(x.Abs() < 0.1, x + 0.5, x);
        // Every parameter set of a parametrised op, the non-default ones too.
        foreach (var p in def.Parameters)
        {
            var r = GradCheck.Run(a => a[0].Apply(op, p), [x]);
            Assert.True(r.Passed, $"{p}: {r}");
        }
    }

    [Fact]
    public void Every_op_name_is_unique_and_every_unary_and_binary_primitive_is_defined()
    {
        _ = MethodOps.All;
        Assert.Equal(OpCatalog.All.Count, OpCatalog.All.Select(o => o.Name).Distinct().Count());
        Assert.Equal(Enum.GetValues<Kiln.Kernels.UnaryOp>().Length, ElementwiseOps.Unary.Count);
        Assert.All(Enum.GetValues<Kiln.Kernels.UnaryOp>(), op => Assert.Equal(op, ElementwiseOps.Of(op).Op));
        Assert.All(Enum.GetValues<Kiln.Kernels.BinaryOp>(), op => Assert.Equal(op, ElementwiseOps.Binary(op).Op));
        Assert.Contains(OpCatalog.All, o => o.Name == "stump.sum_pdf");
    }

    [Fact]
    public void A_definition_that_disagrees_with_its_reference_fails()
    {
        // The conformance machinery must be able to fail: a custom op whose kernel is off by one ulp-scale amount.
        var wrong = new CustomOp("test.off_by_a_little", 1, (xs, _) => xs[0], dtypes: [DType.Float64])
            .Cpu<double>(a => { var x = a.Input(0); var y = a.Output; for (int i = 0; i < y.Length; i++) y[i] = x[i] * (1 + 1e-9); });
        var rows = Conformance.Validate(wrong, [Device.Cpu], cases: 4);
        Assert.All(rows, r => Assert.False(r.Pass));
        Assert.Contains("test.off_by_a_little", rows[0].Result.Detail);
        Assert.True(rows[0].Result.MaxUlp > 1000, $"1e-9 relative is thousands of float64 ulps, got {rows[0].Result.MaxUlp}");
        Assert.NotNull(rows[0].Result.Worst);
    }

    [Fact]
    public void An_op_whose_results_change_between_runs_is_not_deterministic()
    {
        long calls = 0;
        var drifting = new CustomOp("test.drifting", 1, (x, _) => x[0], dtypes: [DType.Float64], tolerance: new Tolerance(1e6))
            .Cpu<double>(a => { var x = a.Input(0); var y = a.Output; double d = Interlocked.Increment(ref calls) * 1e-12; for (int i = 0; i < y.Length; i++) y[i] = x[i] + d; });
        var rows = Conformance.Validate(drifting, [Device.Cpu], cases: 2);
        Assert.All(rows, r => { Assert.True(r.Result.Pass, r.Result.Detail); Assert.False(r.Deterministic); Assert.False(r.Pass); });
    }
}
