using Kiln.Backends;
using Kiln.Kernels;
using Kiln.Ops;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// The measuring side of conformance: ULP, bound and scaled budgets, the special-value pass, determinism across CPU
/// thread counts, the report, and the double-double references checked against 300-bit values (mpmath).
/// </summary>
public class ConformanceBudgetTests
{
    [Theory]
        [InlineData(UnaryOp.Erf, -30.5, -1.0)]
        [InlineData(UnaryOp.Erf, -9.25, -1.0)]
        [InlineData(UnaryOp.Erf, -5.0, -0.9999999999984626)]
        [InlineData(UnaryOp.Erf, -2.375, -0.9992170617821089)]
        [InlineData(UnaryOp.Erf, -0.8125, -0.749464025586362)]
        [InlineData(UnaryOp.Erf, -1e-20, -1.1283791670955125e-20)]
        [InlineData(UnaryOp.Erf, 0.3, 0.3286267594591274)]
        [InlineData(UnaryOp.Erf, 0.5, 0.5204998778130465)]
        [InlineData(UnaryOp.Erf, 1.7, 0.9837904585907745)]
        [InlineData(UnaryOp.Erf, 2.49, 0.9995707121322661)]
        [InlineData(UnaryOp.Erf, 4.99, 0.9999999999982977)]
        [InlineData(UnaryOp.Erf, 5.5, 0.9999999999999927)]
        [InlineData(UnaryOp.Erf, 12.0, 1.0)]
        [InlineData(UnaryOp.NormalCdf, -38.0, 2.88542835e-316)]
        [InlineData(UnaryOp.NormalCdf, -20.0, 2.7536241186062337e-89)]
        [InlineData(UnaryOp.NormalCdf, -8.5, 9.479534822203318e-18)]
        [InlineData(UnaryOp.NormalCdf, -3.1, 0.0009676032132183566)]
        [InlineData(UnaryOp.NormalCdf, -1.1, 0.13566606094638264)]
        [InlineData(UnaryOp.NormalCdf, -0.6, 0.2742531177500736)]
        [InlineData(UnaryOp.NormalCdf, 0.0, 0.5)]
        [InlineData(UnaryOp.NormalCdf, 0.7, 0.758036347776927)]
        [InlineData(UnaryOp.NormalCdf, 2.0, 0.9772498680518208)]
        [InlineData(UnaryOp.NormalCdf, 6.5, 0.99999999995984)]
        [InlineData(UnaryOp.Erfinv, -0.999999, -3.458910737275499)]
        [InlineData(UnaryOp.Erfinv, -0.9, -1.1630871536766743)]
        [InlineData(UnaryOp.Erfinv, -0.51, -0.4881220505159588)]
        [InlineData(UnaryOp.Erfinv, -0.3, -0.2724627147267543)]
        [InlineData(UnaryOp.Erfinv, 1e-12, 8.86226925452758e-13)]
        [InlineData(UnaryOp.Erfinv, 0.2, 0.1791434546212917)]
        [InlineData(UnaryOp.Erfinv, 0.75, 0.8134198475976185)]
        [InlineData(UnaryOp.Erfinv, 0.9999, 2.75106390571208)]
        [InlineData(UnaryOp.NormalIcdf, 1e-300, -37.0470962993612)]
        [InlineData(UnaryOp.NormalIcdf, 1e-20, -9.262340089798407)]
        [InlineData(UnaryOp.NormalIcdf, 0.001, -3.0902323061678136)]
        [InlineData(UnaryOp.NormalIcdf, 0.0301, -1.8793259535716091)]
        [InlineData(UnaryOp.NormalIcdf, 0.4952, -0.012032106029748952)]
        [InlineData(UnaryOp.NormalIcdf, 0.5, 0.0)]
        [InlineData(UnaryOp.NormalIcdf, 0.7, 0.5244005127080407)]
        [InlineData(UnaryOp.NormalIcdf, 0.999, 3.090232306167813)]
        [InlineData(UnaryOp.Log1p, -0.999, -6.907755278982136)]
        [InlineData(UnaryOp.Log1p, -0.5, -0.6931471805599453)]
        [InlineData(UnaryOp.Log1p, -1e-09, -1.0000000005000001e-09)]
        [InlineData(UnaryOp.Log1p, 1e-30, 1e-30)]
        [InlineData(UnaryOp.Log1p, 3e-05, 2.99995500089998e-05)]
        [InlineData(UnaryOp.Log1p, 0.001, 0.0009995003330835331)]
        [InlineData(UnaryOp.Log1p, 0.7, 0.5306282510621704)]
        [InlineData(UnaryOp.Log1p, 10000000000.0, 23.025850930040455)]
        [InlineData(UnaryOp.Expm1, -40.0, -1.0)]
        [InlineData(UnaryOp.Expm1, -1e-09, -9.999999995e-10)]
        [InlineData(UnaryOp.Expm1, 1e-30, 1e-30)]
        [InlineData(UnaryOp.Expm1, 2e-05, 2.000020000133334e-05)]
        [InlineData(UnaryOp.Expm1, 0.001, 0.0010005001667083417)]
        [InlineData(UnaryOp.Expm1, 0.7, 1.0137527074704764)]
        [InlineData(UnaryOp.Expm1, 30.0, 10686474581523.463)]
        [InlineData(UnaryOp.GeluTanh, -10.0, -1.2040923482098103e-37)]
        [InlineData(UnaryOp.GeluTanh, -6.0, -8.439646700762303e-11)]
        [InlineData(UnaryOp.GeluTanh, -3.0, -0.003637392081773019)]
        [InlineData(UnaryOp.GeluTanh, -0.5, -0.15428599017485609)]
        [InlineData(UnaryOp.GeluTanh, 0.25, 0.149675350701685)]
        [InlineData(UnaryOp.GeluTanh, 2.0, 1.954597694087775)]
        [InlineData(UnaryOp.GeluTanh, 8.0, 8.0)]
        [InlineData(UnaryOp.GeluErf, -12.0, -2.1317785344932147e-32)]
        [InlineData(UnaryOp.GeluErf, -6.0, -5.9195258702261885e-09)]
        [InlineData(UnaryOp.GeluErf, -1.5, -0.1002108019032871)]
        [InlineData(UnaryOp.GeluErf, 0.5, 0.34573123063700656)]
        [InlineData(UnaryOp.GeluErf, 3.0, 2.99595030590511)]
        [InlineData(UnaryOp.Selu, -30.0, -1.758099340847212)]
        [InlineData(UnaryOp.Selu, -5.5, -1.7509143906752191)]
        [InlineData(UnaryOp.Selu, -1.25, -1.2543954463378648)]
        [InlineData(UnaryOp.Selu, -1e-12, -1.7580993408464977e-12)]
        [InlineData(UnaryOp.Selu, -0.003, -0.0052663944810253235)]
        [InlineData(UnaryOp.Selu, 0.75, 0.7880257405166103)]
        [InlineData(UnaryOp.Selu, 4.0, 4.202803949421922)]
        [InlineData(UnaryOp.Mish, -700.0, -6.90177358063184e-302)]
        [InlineData(UnaryOp.Mish, -40.0, -1.6993417021166355e-16)]
        [InlineData(UnaryOp.Mish, -8.5, -0.0017293051892410683)]
        [InlineData(UnaryOp.Mish, -1.5, -0.29809974216680674)]
        [InlineData(UnaryOp.Mish, -1e-09, -5.9999999968e-10)]
        [InlineData(UnaryOp.Mish, 0.3, 0.20800137234811503)]
        [InlineData(UnaryOp.Mish, 2.0, 1.9439589595339946)]
        [InlineData(UnaryOp.Mish, 12.0, 11.999999999093978)]
        [InlineData(UnaryOp.Mish, 35.0, 35.0)]
        public void Float64_reference_is_within_an_ulp_of_300_bit_values(UnaryOp op, double x, double exact)
    {
        double r = Reference.Unary(op, x);
        Assert.True(CheckResult.UlpError(exact, r, DType.Float64) <= 1, $"{op}({x:R}) = {r:R}, exact {exact:R}: {CheckResult.UlpError(exact, r, DType.Float64)} ulp");
    }

    [Fact]
    public void Ulp_spacing_follows_each_format_down_to_its_subnormals()
    {
        Assert.Equal(Math.ScaleB(1.0, -23), CheckResult.UlpOf(1.0, DType.Float32));
        Assert.Equal(Math.ScaleB(1.0, -22), CheckResult.UlpOf(-3.0, DType.Float32));
        Assert.Equal(Math.ScaleB(1.0, -149), CheckResult.UlpOf(1e-42, DType.Float32));
        Assert.Equal(Math.ScaleB(1.0, -149), CheckResult.UlpOf(0.0, DType.Float32));
        Assert.Equal(Math.ScaleB(1.0, -52), CheckResult.UlpOf(1.5, DType.Float64));
        Assert.Equal(Math.ScaleB(1.0, -1074), CheckResult.UlpOf(0.0, DType.Float64));
        Assert.Equal(Math.ScaleB(1.0, -10), CheckResult.UlpOf(1.0, DType.Float16));
        Assert.Equal(Math.ScaleB(1.0, -7), CheckResult.UlpOf(1.0, DType.BFloat16));
    }

    [Fact]
    public void An_ulp_budget_passes_at_the_budget_and_fails_past_it()
    {
        var budget = Tolerance.Ulp(3);
        double u = CheckResult.UlpOf(1.0, DType.Float32);
        Assert.True(budget.Check([1.0], [1.0 + 3 * u], DType.Float32).Pass);
        var r = budget.Check([1.0, 2.0], [1.0, 2.0 + 8 * u], DType.Float32, what: "f");
        Assert.False(r.Pass);
        Assert.Equal(4, r.MaxUlp);   // 8 spacings of 1 are 4 of 2
        Assert.Equal(1, r.Worst!.Index);
        Assert.Contains("f[1]", r.Detail);
        // A reference beyond float32's range must come back as the infinity; a finite answer there is wrong.
        Assert.True(budget.Check([1e39], [double.PositiveInfinity], DType.Float32).Pass);
        Assert.False(budget.Check([1e39], [float.MaxValue], DType.Float32).Pass);
        // NaN meets NaN only; an integer result is exact whatever the budget.
        Assert.False(budget.Check([double.NaN], [0.0], DType.Float32).Pass);
        Assert.False(budget.Check([7.0], [8.0], DType.Int64).Pass);
    }

    [Fact]
    public void A_bound_budget_scales_with_the_terms_magnitude_not_the_result()
    {
        // 1e8 - 1e8 + 1: the result 1 is tiny next to sum|terms| = 2e8 + 1, so an error of 10 is within n u sum|terms| in float32.
        var bound = Tolerance.Bound();
        double m = 2e8 + 1, u = CheckResult.UnitRoundoff(DType.Float32);
        Assert.True(bound.Check([1.0], [11.0], DType.Float32, magnitude: [m], terms: 3).Pass);
        Assert.False(bound.Check([1.0], [1.0 + 4 * u * m], DType.Float32, magnitude: [m], terms: 3).Pass);
        Assert.Throws<ArgumentException>(() => bound.Check([1.0], [1.0], DType.Float32));
    }

    [Fact]
    public void The_relaxed_budget_applies_only_when_a_case_asks_for_it()
    {
        var sin = ElementwiseOps.Of(UnaryOp.Sin).Tolerance;
        var strict = new OpCase([1], InputView.Contiguous, 1);
        // An absolute error of 2^-12 at sin = 0.001 is thousands of ulps, but within the relaxed 2^-11.
        Assert.False(sin.Check([0.001], [0.001 + Math.ScaleB(1.0, -12)], DType.Float32, strict).Pass);
        Assert.True(sin.Check([0.001], [0.001 + Math.ScaleB(1.0, -12)], DType.Float32, strict with { Relaxed = true }).Pass);
        Assert.Equal("4 ulp", sin.Describe(DType.Float32));
        Assert.Contains("relaxed", sin.Describe(DType.Float32, relaxed: true));
    }

    [Fact]
    public void Special_values_cover_every_ieee_class_in_the_dtype()
    {
        var specials = SpecialValues.Of(DType.Float32, new Domain(-1, 1, double.NaN, 0.1) { Singular = [1] });
        Assert.Equal(["nan", "inf", "zero", "subnormal", "min-normal", "max-normal", "singular", "edge"], specials.Select(s => s.Class).Distinct());
        Assert.Contains(specials, s => s.Value == float.Epsilon);
        Assert.Contains(specials, s => s.Value == -float.MaxValue);
        Assert.Contains(specials, s => double.IsNegative(s.Value) && s.Value == 0);
        Assert.Contains(specials, s => s.Class == "edge" && s.Value == (float)0.1);
        Assert.Empty(SpecialValues.Of(DType.Int32, Domain.Default));
    }

    [Fact]
    public void The_special_value_pass_names_the_class_and_input_of_a_mismatch()
    {
        var classes = new[] { "nan", "inf", "inf" };
        var r = SpecialValues.Judge(Tolerance.Ulp(1), DType.Float32, false, classes, [double.NaN, 0, 1], [double.NaN, 0, 0], i => [i]);
        Assert.True(r.Single(c => c.Class == "nan").Pass);
        var inf = r.Single(c => c.Class == "inf");
        Assert.Equal(2, inf.Count);
        var bad = Assert.Single(inf.Mismatches);
        Assert.Equal([2.0], bad.Inputs);
        Assert.Equal(1, bad.Expected);
    }

    [Fact]
    public void Conformance_runs_the_special_pass_and_checks_the_cpu_on_one_thread()
    {
        var row = Conformance.Validate(ElementwiseOps.Of(UnaryOp.Exp), [Device.Cpu], cases: 2, dtypes: [DType.Float32]).Single();
        Assert.True(row.Pass, row.Failure);
        Assert.Equal("3 ulp", row.Budget);
        Assert.True(row.ThreadInvariant);
        Assert.Contains(row.Specials, s => s.Class == "subnormal" && s.Count == 4);
        Assert.True(row.Result.MaxUlp is > 0 and <= 3);
    }

    [Fact]
    public async Task Thread_limits_are_scoped_to_the_flow_that_set_them()
    {
        int all = CpuBackend.Threads;
        using (CpuBackend.LimitThreads(1))
        {
            Assert.Equal(1, CpuBackend.Threads);
            await Task.Yield();
            Assert.Equal(1, CpuBackend.Threads);
            // Another flow (a thread that does not inherit this one's context) keeps every core.
            int other = 0;
            var t = new Thread(() => other = CpuBackend.Threads);
            t.UnsafeStart();
            t.Join();
            Assert.Equal(all, other);
        }
        Assert.Equal(all, CpuBackend.Threads);
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuBackend.LimitThreads(0));
    }

    [Fact]
    public void The_report_lists_failures_by_class_and_every_row_by_family()
    {
        var good = Conformance.Validate(ElementwiseOps.Of(UnaryOp.Sqrt), [Device.Cpu], cases: 1, dtypes: [DType.Float64]).Single();
        var bad = good with
        {
            Specials = [new SpecialClassResult("subnormal", 4, [new SpecialMismatch([5e-324], 2.2e-162, 0)])],
        };
        var md = ConformanceReport.Markdown([good, bad], ["test machine"], "map.png");
        Assert.Contains("- test machine", md);
        Assert.Contains("![", md);
        Assert.Contains("## Failures", md);
        Assert.Contains("subnormal: 1 of 4: f(5E-324) = 0, expected 2.2E-162", md);
        Assert.Contains("## elementwise", md);
        Assert.Contains("| unary.sqrt | float64 | cpu | 3 ulp |", md);
        Assert.Equal(2, ConformanceReport.Score(bad));
    }
}
