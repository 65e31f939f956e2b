using FsCheck.Fluent;
using Kiln.Methods.Reward;
using Kiln.Tests.TestKit;
using Xunit;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests.Reward;

/// <summary>Tilted-policy evaluation: closed forms for linear tilts, Gap ≥ 0, Gap = 0 for shifted rewards, importance sampling.</summary>
public class TiltedPolicyTests
{
    static Tensor Vec(params double[] v) => Tensor.FromArray(v);

    [Theory, InlineData(1.0), InlineData(0.5), InlineData(2.0)]
    public void Linear_rewards_tilt_to_shifted_gaussians(double beta)
    {
        // r = <v, x> tilts N(0, I) to N(v/β, I): E_π[<u, x>] = <u, v>/β, KL(π‖π₀) = |v|²/(2β²), χ² = exp(|v|²/β²) - 1,
        // and Gap = β KL(N(v/β, I)‖N(v*/β, I)) = |v - v*|²/(2β).
        var vStar = Vec(0.6, 0, 0, 0.3, 0);
        var v = Vec(0.2, 0.5, 0, 0, -0.1);
        var e = TiltedPolicy.Evaluate(new LinearReward(v, offset: 0.7), new LinearReward(vStar), 5, beta, new Generator(1));
        Assert.True(e.Exact);
        double vv = 0.3, vs = 0.45, dot = 0.12, diff2 = 0.16 + 0.25 + 0.09 + 0.01;
        Assert.Equal(dot / beta, e.RealizedValue, 1e-10);
        Assert.Equal(vs / beta, e.OracleValue, 1e-10);
        Assert.Equal(0, e.BaseValue, 1e-12);
        Assert.Equal(vv / (2 * beta * beta), e.KlHat, 1e-10);
        Assert.Equal(vs / (2 * beta * beta), e.KlStar, 1e-10);
        Assert.Equal(Math.Exp(vs / (beta * beta)) - 1, e.Chi2, 1e-9);
        Assert.Equal(diff2 / (2 * beta), e.Gap, 1e-10);
        Assert.Equal((vs - dot) / beta, e.ValueGap, 1e-10);
        Assert.Equal(1000 / (1 + e.Chi2), e.EffectiveSamples(1000), 1e-9);
    }

    [Fact]
    public void Gap_vanishes_when_the_learned_reward_is_the_true_one_plus_a_constant()
    {
        var g = new Generator(4);
        foreach (var link in Link.BuiltIn)
        {
            var model = new SingleIndexModel(12, link, 0.1, g, DType.Float64);
            var shifted = new FunctionReward(x => model.Evaluate(x) + 0.37, model.Basis);
            foreach (var beta in new[] { 2, 0.25, 1.0 / 64 })
            {
                var e = TiltedPolicy.Evaluate(shifted, model, 12, beta, g);
                Assert.True(e.Exact);
                Assert.Equal(0, e.Gap, 1e-9);
                Assert.Equal(0, e.ValueGap, 1e-9);
                Assert.True(e.OracleValue > e.BaseValue);
            }
        }
    }

    [Fact]
    public void Gap_is_non_negative_and_equals_beta_times_kl()
    {
        // Random smooth rewards on span(θ*, u): r̂ = a₁ tanh(<w₁,x> + b₁) + a₂ tanh(<w₂,x> + b₂), exact path, β down to 1/16.
        // (Smooth, so both this quadrature and the independent trapezoid check converge fast; a ReLU kink would not.)
        var gen = from seed in TensorGen.Seed from lb in G.Choose(-4, 1) from li in G.Elements(0, 1, 2) select (seed, Math.Pow(2, lb), li);
        Props.Check(gen, c =>
        {
            var (seed, beta, li) = c;
            var g = new Generator((ulong)seed);
            var model = new SingleIndexModel(6, Link.BuiltIn[li], 0, g, DType.Float64);
            var u = Tensor.Randn([6], g, dtype: DType.Float64);
            var w = Tensor.Stack([model.Theta * 0.8 + u * 0.2, u / u.Norm().Item()]);
            var b = Tensor.Rand([2], g, -1, 1, DType.Float64);
            var a = Tensor.Randn([2], g, dtype: DType.Float64) * 0.5;
            var rHat = new FunctionReward(x => (x.MatMul(w.T) + b).Tanh().MatMul(a), w);
            var e = TiltedPolicy.Evaluate(rHat, model, 6, beta, g, new TiltOptions { Nodes = [1000, 400, 32] });
            Assert.True(e.Exact);
            Assert.True(e.Gap >= -1e-9, $"gap {e.Gap} at β {beta}");
            // β KL(π̂‖π*) computed directly on a fine 2-D grid in the same plane agrees with J(π*) - J(π̂).
            Assert.Equal(DirectBetaKl(rHat, model, w, beta), e.Gap, 1e-9 * Math.Max(1, e.Gap));
        });
    }

    // β KL(π̂‖π*) on a 2-D trapezoid grid in span(θ*, w): an independent quadrature.
    static double DirectBetaKl(IReward rHat, SingleIndexModel model, Tensor w, double beta)
    {
        var q = TiltedPolicy.Orthonormal(6, model.Theta, w);
        const double h = 0.03, L = 10;
        var pts = new List<double>();
        var logw = new List<double>();
        for (double a = -L; a <= L; a += h)
            for (double b = -L; b <= L; b += h) { pts.Add(a); pts.Add(b); logw.Add(-(a * a + b * b) / 2); }
        var x = Tensor.FromArray(pts.ToArray(), new Shape(logw.Count, 2)).MatMul(q);
        var rh = rHat.Evaluate(x).ToDoubleArray(); var rs = model.Evaluate(x).ToDoubleArray();
        double LogZ(double[] r) { var l = r.Select((v, i) => logw[i] + v / beta).ToArray(); double m = l.Max(); return m + Math.Log(l.Sum(t => Math.Exp(t - m))); }
        double lzh = LogZ(rh), lzs = LogZ(rs);
        double kl = 0;
        for (int i = 0; i < rh.Length; i++)
        {
            double lh = logw[i] + rh[i] / beta - lzh;
            kl += Math.Exp(lh) * ((rh[i] - rs[i]) / beta - lzh + lzs);
        }
        return beta * kl;
    }

    [Fact]
    public void Oracle_quadrature_is_accurate_at_the_smallest_temperature()
    {
        var g = new Generator(2);
        foreach (var link in Link.BuiltIn)
        {
            var model = new SingleIndexModel(3, link, 0, g, DType.Float64);
            var e = TiltedPolicy.Evaluate(model, model, 3, 1.0 / 64, g);
            // E_{π*}[r*] and χ² by a fine 1-D trapezoid rule.
            const double h = 0.001;
            double m = double.NegativeInfinity;
            var zs = new List<double>();
            for (double z = -40; z <= 40; z += h) zs.Add(z);
            var l = zs.Select(z => -z * z / 2 + 64 * link.Scalar(z)).ToArray(); m = l.Max();
            double zsum = l.Sum(t => Math.Exp(t - m));
            double value = zs.Select((z, i) => Math.Exp(l[i] - m) * link.Scalar(z)).Sum() / zsum;
            Assert.Equal(value, e.OracleValue, 1e-9);
            Assert.Equal(0, e.Gap, 1e-12);
        }
    }

    [Fact]
    public void Importance_sampling_agrees_with_quadrature_within_its_error()
    {
        var g = new Generator(8);
        var model = new SingleIndexModel(10, Link.Tanh, 0, g, DType.Float64);
        var net = ReluNetwork.Random(4, 10, 1, g, DType.Float64).WithA(Tensor.FromArray(new[] { 0.5, -0.3, 0.4, 0.2 }));
        // A network has no declared basis, so its policy is importance-sampled.
        var sampled = TiltedPolicy.Evaluate(net, model, 10, 0.5, new Generator(3), new TiltOptions { Samples = 1 << 18, DType = DType.Float64 });
        Assert.False(sampled.Exact);
        Assert.InRange(sampled.Ess, 1000, 1 << 18);
        // A linear reward evaluated both ways: exactly (with its basis) and by importance sampling (basis hidden).
        var v = Tensor.Randn([10], g, dtype: DType.Float64) * 0.15;
        var exact = TiltedPolicy.Evaluate(new LinearReward(v), model, 10, 0.5, g);
        var mc = TiltedPolicy.Evaluate(new FunctionReward(x => new LinearReward(v).Evaluate(x)), model, 10, 0.5, new Generator(5),
            new TiltOptions { Samples = 1 << 18, DType = DType.Float64 });
        Assert.True(exact.Exact); Assert.False(mc.Exact);
        // The SNIS error of E_π̂[r*] is about sd_π̂(r*)/sqrt(ESS) ≤ 1/sqrt(ESS) for |r*| ≤ 1.
        double tol = 5 / Math.Sqrt(mc.Ess);
        Assert.Equal(exact.RealizedValue, mc.RealizedValue, tol);
        Assert.Equal(exact.OracleValue, mc.OracleValue, 1e-12); // the oracle side is exact in both
        Assert.Equal(exact.Gap, mc.Gap, 5 * tol);
    }

    [Fact]
    public void Many_readouts_sharing_features_evaluate_like_one_at_a_time()
    {
        var g = new Generator(12);
        var model = new SingleIndexModel(6, Link.Odd3, 0, g);
        var net = ReluNetwork.Random(8, 6, 1, g);
        var a1 = net.WithA(Tensor.Randn([8], g) * 0.2); var a2 = net.WithA(Tensor.Randn([8], g) * 0.2);
        var opt = new TiltOptions { Samples = 5000, Chunk = 1024 };
        var both = TiltedPolicy.EvaluateMany([(a1, 0.5), (a2, 0.25)], model, 6, new Generator(7), opt);
        var one = TiltedPolicy.Evaluate(a2, model, 6, 0.25, new Generator(7), opt);
        Assert.Equal(one.RealizedValue, both[1].RealizedValue, 1e-6);
        Assert.Equal(one.Gap, both[1].Gap, 1e-6);
        Assert.Throws<ArgumentOutOfRangeException>(() => TiltedPolicy.Evaluate(a1, model, 6, double.PositiveInfinity, g));
    }
}
