using Kiln.NN;
using Xunit;
using static Kiln.Tests.NN.NNCheck;

namespace Kiln.Tests.NN;

/// <summary>Losses: values against written-out float64 formulas, GradCheck, reductions and argument errors.</summary>
public class LossTests
{
    [Fact]
    public void Mse_and_huber_match_formulas_and_pass_gradcheck()
    {
        var a = R([3, 4], 1, -3, 3); var b = R([3, 4], 2, -3, 3);
        var av = a.ToArray<double>(); var bv = b.ToArray<double>();
        Assert.Equal(av.Zip(bv, (x, y) => (x - y) * (x - y)).Average(), Losses.Mse(a, b).Item(), 1e-12);
        const double delta = 1.5;
        var hub = av.Zip(bv, (x, y) => { double d = Math.Abs(x - y); return d < delta ? 0.5 * d * d : delta * (d - 0.5 * delta); }).ToArray();
        Assert.Contains(hub, h => h > 0.5 * delta * delta);   // both branches are exercised
        Assert.Contains(hub, h => h < 0.5 * delta * delta);
        Assert.Equal(hub.Sum(), Losses.Huber(a, b, delta, Reduction.Sum).Item(), 1e-12);
        TestKit.Close.Check(hub, Losses.Huber(a, b, delta, Reduction.None).ToArray<double>(), 1e-12, 1e-14, "huber none");
        Assert.True(GradCheck.Run(xs => Losses.Mse(xs[0], xs[1], Reduction.None), [a, b]).Passed);
        Assert.True(GradCheck.Run(xs => Losses.Huber(xs[0], xs[1], delta), [a, b]).Passed);
        Assert.Throws<ShapeMismatchException>(() => Losses.Mse(a, R([4, 3], 3)));
        Assert.Throws<ArgumentOutOfRangeException>(() => Losses.Huber(a, b, 0));
    }

    static double[] CrossEntropyLoops(double[] z, long[] t, int n, int c, double eps, long ignore)
    {
        var l = new double[n];
        for (int i = 0; i < n; i++)
        {
            if (t[i] == ignore) { l[i] = double.NaN; continue; }
            double mx = double.NegativeInfinity;
            for (int j = 0; j < c; j++) mx = Math.Max(mx, z[i * c + j]);
            double lse = 0;
            for (int j = 0; j < c; j++) lse += Math.Exp(z[i * c + j] - mx);
            lse = mx + Math.Log(lse);
            for (int j = 0; j < c; j++)
            {
                double q = (j == t[i] ? 1 - eps : 0) + eps / c;
                l[i] += -q * (z[i * c + j] - lse);
            }
        }
        return l;
    }

    [Theory]
    [InlineData(0.0, false)]
    [InlineData(0.1, false)]
    [InlineData(0.0, true)]
    [InlineData(0.2, true)]
    public void CrossEntropy_matches_formula_with_smoothing_and_ignore_index(double eps, bool ignore)
    {
        int n = 6, c = 5;
        var z = R([n, c], 4, -4, 4);
        long[] t = ignore ? [0, 4, -100, 2, -100, 1] : [0, 4, 3, 2, 2, 1];
        var target = Tensor.FromArray(t);
        var expected = CrossEntropyLoops(z.ToArray<double>(), t, n, c, eps, -100);
        var kept = expected.Where(v => !double.IsNaN(v)).ToArray();
        Assert.Equal(kept.Average(), Losses.CrossEntropy(z, target, eps).Item(), 1e-12);
        Assert.Equal(kept.Sum(), Losses.CrossEntropy(z, target, eps, reduction: Reduction.Sum).Item(), 1e-12);
        var none = Losses.CrossEntropy(z, target, eps, reduction: Reduction.None).ToArray<double>();
        for (int i = 0; i < n; i++) Assert.Equal(double.IsNaN(expected[i]) ? 0 : expected[i], none[i], 1e-12);
        var r = GradCheck.Run(xs => Losses.CrossEntropy(xs[0], target, eps), [z]);
        Assert.True(r.Passed, r.ToString());
        if (ignore)
        {
            // Ignored rows get no gradient at all.
            var zz = z.Detach().RequiresGrad_();
            Losses.CrossEntropy(zz, target, eps).Backward();
            Assert.All(zz.Grad!.Narrow(0, 2, 1).ToArray<double>(), g => Assert.Equal(0, g));
        }
    }

    [Fact]
    public void CrossEntropy_rejects_bad_targets()
    {
        var z = Tensor.Zeros(3, 4);
        Assert.Throws<ArgumentException>(() => Losses.CrossEntropy(z, Tensor.Zeros(3)));
        Assert.Throws<ShapeMismatchException>(() => Losses.CrossEntropy(z, Tensor.FromArray(new long[] { 0, 1 })));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => Losses.CrossEntropy(z, Tensor.FromArray(new long[] { 0, 4, 1 })));
        Assert.Contains("target 4 at sample 1", ex.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Losses.CrossEntropy(z, Tensor.FromArray(new long[] { 0, 1, 1 }), labelSmoothing: 1.5));
        // A single sample: logits [C] and a scalar target.
        Assert.Equal(Math.Log(4), Losses.CrossEntropy(Tensor.Zeros(4), Tensor.Scalar(2, DType.Int64)).Item(), 1e-6);
    }

    [Fact]
    public void BinaryCrossEntropyWithLogits_matches_formula_and_is_stable()
    {
        var x = R([3, 4], 5, -6, 6); var y = R([3, 4], 6, 0, 1); var w = R([4], 7, 0.5, 3);
        var xv = x.ToArray<double>(); var yv = y.ToArray<double>(); var wv = w.ToArray<double>();
        double Sig(double v) => 1 / (1 + Math.Exp(-v));
        var expected = xv.Select((v, i) => -(wv[i % 4] * yv[i] * Math.Log(Sig(v)) + (1 - yv[i]) * Math.Log(1 - Sig(v)))).ToArray();
        TestKit.Close.Check(expected, Losses.BinaryCrossEntropyWithLogits(x, y, w, Reduction.None).ToArray<double>(), 1e-10, 1e-12, "bce");
        Assert.Equal(expected.Average(), Losses.BinaryCrossEntropyWithLogits(x, y, w).Item(), 1e-10);
        Assert.True(GradCheck.Run(xs => Losses.BinaryCrossEntropyWithLogits(xs[0], xs[1], xs[2], Reduction.None), [x, y, w]).Passed);
        // Huge logits stay finite: loss ~ |x| on the wrong side, ~0 on the right side.
        var big = Losses.BinaryCrossEntropyWithLogits(Tensor.FromArray(new[] { 500.0, -500.0 }), Tensor.FromArray(new[] { 0.0, 0.0 }), reduction: Reduction.None).ToArray<double>();
        Assert.Equal(500, big[0], 1e-9); Assert.Equal(0, big[1], 1e-9);
    }

    [Fact]
    public void KlDiv_matches_formula_in_both_target_forms()
    {
        var logits = R([3, 5], 8, -2, 2); var tl = R([3, 5], 9, -2, 2);
        var logq = logits.LogSoftmax(-1); var p = tl.Softmax(-1);
        var lq = logq.ToArray<double>(); var pv = p.ToArray<double>();
        double kl = 0;
        for (int i = 0; i < 15; i++) kl += pv[i] * (Math.Log(pv[i]) - lq[i]);
        Assert.Equal(kl / 3, Losses.KlDiv(logq, p).Item(), 1e-12);
        Assert.Equal(kl / 3, Losses.KlDiv(logq, p.Log(), logTarget: true).Item(), 1e-12);
        Assert.Equal(kl / 15, Losses.KlDiv(logq, p, batchMean: false).Item(), 1e-12);
        // Zero target probabilities contribute zero, not NaN.
        var pz = Tensor.FromArray(new[] { 0.0, 1.0 }, [1, 2]);
        Assert.Equal(-Math.Log(0.25), Losses.KlDiv(Tensor.FromArray(new[] { Math.Log(0.75), Math.Log(0.25) }, [1, 2]), pz).Item(), 1e-12);
        Assert.True(GradCheck.Run(xs => Losses.KlDiv(xs[0].LogSoftmax(-1), xs[1].Softmax(-1)), [logits, tl]).Passed);
        Assert.True(GradCheck.Run(xs => Losses.KlDiv(xs[0], xs[1], logTarget: true, batchMean: false, reduction: Reduction.None), [logq, p.Log()]).Passed);
    }
}
