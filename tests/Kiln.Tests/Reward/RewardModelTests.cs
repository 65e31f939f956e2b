using FsCheck.Fluent;
using Kiln.Methods.Reward;
using Kiln.Tests.TestKit;
using Xunit;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests.Reward;

/// <summary>The two-stage reward model: weighted ridge, exponential weights, the stage-1 gradient and step.</summary>
public class RewardModelTests
{
    [Fact]
    public void Weighted_ridge_solves_the_normal_equations_in_float64()
    {
        Props.Check(G.Choose(1, 60).Zip(G.Choose(1, 12)).Zip(TensorGen.Seed), c =>
        {
            var ((n, k), seed) = c;
            var g = new Generator((ulong)seed);
            var phi = Tensor.Randn([n, k], g, dtype: DType.Float64).Relu();
            var y = Tensor.Randn([n], g, dtype: DType.Float64);
            var w = Tensor.Rand([n], g, 0.1, 3, DType.Float64);
            const double lambda = 0.01;
            var a = Readout.WeightedRidge(phi, y, w, lambda);
            Assert.Equal(DType.Float64, a.DType);
            // (ΦᵀΩΦ + nλI) a = ΦᵀΩy, written out with explicit loops.
            var (p, yv, wv, av) = (phi.ToDoubleArray(), y.ToDoubleArray(), w.ToDoubleArray(), a.ToDoubleArray());
            for (int r = 0; r < k; r++)
            {
                double lhs = n * lambda * av[r], rhs = 0;
                for (int i = 0; i < n; i++)
                {
                    double fi = 0;
                    for (int j = 0; j < k; j++) fi += p[i * k + j] * av[j];
                    lhs += wv[i] * p[i * k + r] * fi;
                    rhs += wv[i] * p[i * k + r] * yv[i];
                }
                Assert.True(Math.Abs(lhs - rhs) <= 1e-10 * (1 + Math.Abs(rhs)), $"row {r}: {lhs:R} vs {rhs:R}");
            }
            // Unit weights give the unweighted solution.
            Close.Check(Readout.WeightedRidge(phi, y, null, lambda), Readout.WeightedRidge(phi, y, Tensor.Ones([n], DType.Float64), lambda), 1e-13, 1e-13, "equal weights");
        });
    }

    [Fact]
    public void Weighted_ridge_rejects_mismatched_shapes()
    {
        var phi = Tensor.Ones([5, 3]);
        Assert.Throws<ShapeMismatchException>(() => Readout.WeightedRidge(phi, Tensor.Ones([4]), null, 0.1));
        Assert.Throws<ShapeMismatchException>(() => Readout.WeightedRidge(phi, Tensor.Ones([5]), Tensor.Ones([3]), 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Readout.WeightedRidge(phi, Tensor.Ones([5]), null, 0));
    }

    [Fact]
    public void Exp_weights_are_mean_normalized_and_do_not_overflow_at_small_beta()
    {
        var y = Tensor.FromArray(new float[] { 3f, -2f, 1.5f, 3f, 0f });
        var w = FeatureLearning.ExpWeights(y, 1.0 / 64).ToDoubleArray();
        Assert.All(w, v => Assert.True(double.IsFinite(v)));
        Assert.Equal(1, w.Average(), 1e-6);
        Assert.Equal(2.5, w[0], 1e-5); // two tied maxima share the mass
        // Equal scores give equal (unit) weights, so a label-weighted readout of constant labels is the unweighted one.
        Assert.All(FeatureLearning.ExpWeights(Tensor.Full([7], 2.5, DType.Float64), 0.01).ToDoubleArray(), v => Assert.Equal(1, v));
        Assert.All(FeatureLearning.ExpWeights(y, double.PositiveInfinity).ToDoubleArray(), v => Assert.Equal(1, v));
        Assert.Throws<ArgumentOutOfRangeException>(() => FeatureLearning.ExpWeights(y, 0));
    }

    [Fact]
    public void Readout_fits_are_finite_at_the_smallest_temperature()
    {
        var g = new Generator(3);
        var model = new SingleIndexModel(8, Link.Tanh, 0.1, g);
        var net = ReluNetwork.Random(16, 8, 1, g);
        var (x, y) = model.Sample(400, g);
        foreach (var w in Enum.GetValues<Weighting>())
        {
            var fit = Readout.Fit(net, x * 20, y * 50, new ReadoutOptions { Weighting = w, Beta2 = 1.0 / 64 });
            Assert.All(fit.Network.A.ToDoubleArray(), v => Assert.True(double.IsFinite(v), $"{w}: {v}"));
            Assert.InRange(fit.WeightEss, 1 - 1e-9, fit.FitSamples + 1e-6);
        }
        Assert.Equal(200, Readout.Fit(net, x, y, new ReadoutOptions { Weighting = Weighting.Surrogate }).FitSamples);
        Assert.Throws<ArgumentOutOfRangeException>(() => Readout.Fit(net, x, y, new ReadoutOptions { PilotFraction = 1 }));
    }

    [Fact]
    public void Stage_one_gradient_equals_autodiff()
    {
        Props.Check(G.Choose(1, 30).Zip(G.Choose(1, 9)).Zip(G.Choose(1, 7)).Zip(TensorGen.Seed), c =>
        {
            var (((n, d), k), seed) = c;
            var g = new Generator((ulong)seed);
            var x = Tensor.Randn([n, d], g, dtype: DType.Float64);
            var t = Tensor.Randn([n], g, dtype: DType.Float64);
            var w = Tensor.Randn([k, d], g, dtype: DType.Float64).RequiresGrad_();
            var b = Tensor.Rand([k], g, -1, 1, DType.Float64);
            var auto = Autograd.Grad(FeatureLearning.Objective(x, t, w, b), w);
            Close.Check(auto, FeatureLearning.Gradient(x, t, w.Detach(), b), 1e-12, 1e-13, "gradient");
        });
    }

    [Fact]
    public void Spherical_steps_stay_on_the_sphere_and_follow_the_projected_gradient()
    {
        var g = new Generator(5);
        var w = FeatureLearning.NormalizeRows(Tensor.Randn([6, 5], g, dtype: DType.Float64));
        var grad = Tensor.Randn([6, 5], g, dtype: DType.Float64);
        var gPerp = grad - (grad * w).Sum(1, keepDim: true) * w;
        foreach (var lr in new[] { 1e-3, 0.7, double.PositiveInfinity })
        {
            var w2 = FeatureLearning.SphericalStep(w, grad, lr);
            Close.Check(Tensor.Ones([6], DType.Float64), w2.Norm(2, [1]), 1e-12, 1e-12, $"unit rows at lr {lr}");
            if (double.IsPositiveInfinity(lr)) Close.Check(FeatureLearning.NormalizeRows(gPerp), w2, 1e-12, 1e-12, "giant step");
        }
        // A small step moves by η g⊥ to first order.
        var small = FeatureLearning.SphericalStep(w, grad, 1e-6);
        Close.Check(gPerp, (small - w) / 1e-6, 1e-4, 1e-5, "first-order step");
        // A row with no perpendicular gradient stays put.
        Close.Check(w, FeatureLearning.SphericalStep(w, w * 3, double.PositiveInfinity), 0, 0, "parallel gradient");
    }

    [Fact]
    public void Population_normalizer_matches_the_batch_mean_for_large_n()
    {
        var g = new Generator(9);
        var model = new SingleIndexModel(4, Link.Odd3, 0.2, g, DType.Float64);
        var (_, y) = model.Sample(1 << 18, g);
        double logZ = model.LogMeanExpLabel(0.5);
        var mc = Math.Log((y / 0.5).Exp().Mean().Item());
        Assert.Equal(logZ, mc, 0.01);
        var opt = new FeatureLearningOptions { Beta1 = 0.5, Normalizer = Normalizer.Population };
        Assert.Equal(1, FeatureLearning.EffectiveLabels(y, opt with { Psi = Psi.One }, model).Mean().Item(), 0.01);
        Assert.Throws<ArgumentNullException>(() => FeatureLearning.EffectiveLabels(y, opt));
    }

    [Fact]
    public void Options_and_links_reject_bad_values()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new FeatureLearningOptions { Beta1 = -1 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new FeatureLearningOptions { Steps = 0 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new ReadoutOptions { Beta2 = 0 }.Validate());
        Assert.Contains("odd3", Assert.Throws<ArgumentException>(() => Link.Parse("cubic")).Message);
        Assert.Same(Link.Odd3, Link.Parse("ODD3"));
        Assert.Throws<ShapeMismatchException>(() => new ReluNetwork(Tensor.Ones([3, 2]), Tensor.Ones([2])));
        Assert.Throws<ArgumentException>(() => new SingleIndexModel(Tensor.Zeros([3]), Link.Tanh, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SingleIndexModel(3, Link.Tanh, -1, new Generator(1)));
        var g = new Generator(1);
        var model = new SingleIndexModel(4, Link.Tanh, 0, g);
        Assert.Throws<ShapeMismatchException>(() => FeatureLearning.Train(ReluNetwork.Random(3, 5, 1, g), model, 10, new(), g));
    }

    [Fact]
    public void A_custom_link_without_a_scalar_form_evaluates_through_tensors()
    {
        var cubic = new Link("cubic", z => z * z * z);
        Assert.Equal(8, cubic.Scalar(2), 1e-12);
        Assert.Equal(3, Hermite.InformationExponent(Hermite.Coefficients(cubic, 5, 8).Select((c, k) => k == 1 ? 0 : c).ToArray()));
        Assert.Equal(3, Hermite.Coefficients(cubic, 3, 8)[1], 1e-12);
    }

    [Fact]
    public void Stage_one_recovers_tanh_and_needs_weighting_for_the_odd_link()
    {
        // d = 32, n = 64 d, one giant step: tanh is found without weighting; the odd link is not, and weighting at β₁ = 1/8 finds it.
        FeatureResult Run(Link l, double beta) => RewardExperiments.Features(new FeatureSetting
        { Link = l, D = 32, N = 2048, Neurons = 128, Seed = 1, Options = new FeatureLearningOptions { Beta1 = beta } });
        Assert.True(Run(Link.Tanh, double.PositiveInfinity).Recovered > 0.9);
        Assert.True(Run(Link.Odd3, double.PositiveInfinity).Recovered < 0.05);
        Assert.True(Run(Link.Odd3, 0.125).Recovered > 0.3);
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Both_stages_run_on_every_device_and_agree_with_the_cpu(string device)
    {
        var dev = Devices.Parse(device);
        (double[] W, double[] A) Run(Device dv)
        {
            var g = new Generator(21);
            var model = new SingleIndexModel(8, Link.Odd3, 0.1, g, DType.Float32, dv);
            var net = FeatureLearning.Train(ReluNetwork.Random(16, 8, 1, g, DType.Float32, dv), model, 512,
                new FeatureLearningOptions { Beta1 = 0.5, Steps = 3, Mode = FeatureMode.Online, LearningRate = 0.5 }, g);
            var (x, y) = model.Sample(300, g);
            var fit = Readout.Fit(net, x, y, new ReadoutOptions { Weighting = Weighting.Surrogate, Beta2 = 0.25 });
            Assert.Equal(dv, fit.Network.W.Device);
            return (fit.Network.W.ToDoubleArray(), fit.Network.A.ToDoubleArray());
        }
        var (w, a) = Run(dev);
        var (wc, ac) = Run(Device.Cpu);
        Close.Check(wc, w, 1e-4, 1e-5, "W");
        Close.Check(ac, a, 1e-3, 1e-4, "a");
    }
}
