using Kiln.NN;
using Xunit;
using static Kiln.Tests.NN.NNCheck;
using Close = Kiln.Tests.TestKit.Close;

namespace Kiln.Tests.NN;

/// <summary>
/// BatchNorm, GroupNorm and InstanceNorm: hand-computed cases, a float64 transcription of PyTorch's formulas, running
/// statistics, state dictionaries, gradients by central differences and argument errors.
/// </summary>
public class NormLayerTests
{
    const DType F64 = DType.Float64;
    const double Eps = 1e-5;

    // PyTorch's normalization written out on x viewed as [N, C, S]: statistics over the axes `over` picks
    // (true: over N and S per channel; false: over S per (n, c)), biased variance, then the per-channel affine.
    static double[] Reference(double[] x, int n, int c, int s, bool perChannel, double[]? w = null, double[]? b = null, double[]? mean = null, double[]? var = null)
    {
        var y = new double[x.Length];
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < (perChannel ? 1 : n); i++)
            {
                var idx = new List<int>();
                for (int nn = perChannel ? 0 : i; nn < (perChannel ? n : i + 1); nn++)
                    for (int k = 0; k < s; k++) idx.Add((nn * c + ch) * s + k);
                double m = mean?[ch] ?? idx.Average(j => x[j]);
                double v = var?[ch] ?? idx.Average(j => (x[j] - m) * (x[j] - m));
                foreach (int j in idx) y[j] = (x[j] - m) / Math.Sqrt(v + Eps) * (w?[ch] ?? 1) + (b?[ch] ?? 0);
            }
        return y;
    }

    static (double[] Mean, double[] UnbiasedVar) ChannelStats(double[] x, int n, int c, int s)
    {
        var mean = new double[c]; var var = new double[c];
        for (int ch = 0; ch < c; ch++)
        {
            var v = Enumerable.Range(0, n).SelectMany(nn => Enumerable.Range(0, s).Select(k => x[(nn * c + ch) * s + k])).ToArray();
            mean[ch] = v.Average();
            var[ch] = v.Sum(e => (e - mean[ch]) * (e - mean[ch])) / (v.Length - 1);
        }
        return (mean, var);
    }

    static void SetAffine(Parameter? w, Parameter? b, int c, ulong seed)
    {
        using (Autograd.NoGrad()) { w!.Value.Copy_(R([c], seed, 0.5, 1.5)); b!.Value.Copy_(R([c], seed + 1)); }
    }

    [Fact]
    public void BatchNorm1d_hand_computed_train_eval_and_running_stats()
    {
        var bn = new BatchNorm1d(2, dtype: F64);
        var x = Tensor.FromArray(new double[] { 1, 2, 3, 6 }, [2, 2]);
        // Channel 0 holds {1, 3}: mean 2, biased var 1; channel 1 holds {2, 6}: mean 4, biased var 4.
        double a = 1 / Math.Sqrt(1 + Eps), c = 2 / Math.Sqrt(4 + Eps);
        Close.Check([-a, -c, a, c], bn.Forward(x).ToArray<double>(), 1e-14, 1e-15, "train output");
        // Unbiased vars are 2 and 8: running = 0.9 * init + 0.1 * batch.
        Close.Check([0.2, 0.4], bn.RunningMean!.ToArray<double>(), 1e-15, 1e-16, "running mean");
        Close.Check([1.1, 1.7], bn.RunningVar!.ToArray<double>(), 1e-15, 1e-16, "running var");
        Assert.Equal(1, bn.NumBatchesTracked!.Item());
        bn.Eval();
        Close.Check([0.8 / Math.Sqrt(1.1 + Eps), 1.6 / Math.Sqrt(1.7 + Eps), 2.8 / Math.Sqrt(1.1 + Eps), 5.6 / Math.Sqrt(1.7 + Eps)],
            bn.Forward(x).ToArray<double>(), 1e-14, 1e-15, "eval output");
        Close.Check([0.2, 0.4], bn.RunningMean!.ToArray<double>(), 0, 0, "eval leaves running mean");
        Assert.Equal(1, bn.NumBatchesTracked!.Item());

        // momentum null: a cumulative average, f = 1 / batches. Batch 1 as above, batch 2 {5, 7} and {0, 2}.
        var cum = new BatchNorm1d(2, momentum: null, dtype: F64);
        cum.Forward(x);
        Close.Check([2, 4], cum.RunningMean!.ToArray<double>(), 1e-15, 0, "cumulative mean after 1");
        Close.Check([2, 8], cum.RunningVar!.ToArray<double>(), 1e-15, 0, "cumulative var after 1");
        cum.Forward(Tensor.FromArray(new double[] { 5, 0, 7, 2 }, [2, 2]));
        Close.Check([4, 2.5], cum.RunningMean!.ToArray<double>(), 1e-15, 0, "cumulative mean after 2");
        Close.Check([2, 5], cum.RunningVar!.ToArray<double>(), 1e-15, 0, "cumulative var after 2");
        Assert.Equal(2, cum.NumBatchesTracked!.Item());
    }

    [Theory]
    [InlineData(1, new[] { 4, 3 })]
    [InlineData(1, new[] { 2, 3, 5 })]
    [InlineData(2, new[] { 2, 3, 2, 3 })]
    [InlineData(3, new[] { 2, 3, 2, 1, 3 })]
    public void BatchNorm_matches_transcription_in_train_and_eval(int dims, int[] shape)
    {
        int n = shape[0], c = shape[1], s = shape.Skip(2).Aggregate(1, (p, d) => p * d);
        BatchNorm bn = dims switch { 1 => new BatchNorm1d(c, dtype: F64), 2 => new BatchNorm2d(c, dtype: F64), _ => new BatchNorm3d(c, dtype: F64) };
        SetAffine(bn.Weight, bn.Bias, c, 20);
        double[] w = bn.Weight!.Value.ToArray<double>(), b = bn.Bias!.Value.ToArray<double>();
        double[] rm = new double[c], rv = Enumerable.Repeat(1.0, c).ToArray();
        for (int step = 0; step < 3; step++)
        {
            var x = R(shape, (ulong)(30 + step), -2, 3);
            var xs = x.ToArray<double>();
            Close.Check(Reference(xs, n, c, s, true, w, b), bn.Forward(x).ToArray<double>(), 1e-12, 1e-13, $"train step {step}");
            var (m, v) = ChannelStats(xs, n, c, s);
            for (int ch = 0; ch < c; ch++) { rm[ch] = 0.9 * rm[ch] + 0.1 * m[ch]; rv[ch] = 0.9 * rv[ch] + 0.1 * v[ch]; }
            Close.Check(rm, bn.RunningMean!.ToArray<double>(), 1e-13, 1e-15, $"running mean step {step}");
            Close.Check(rv, bn.RunningVar!.ToArray<double>(), 1e-13, 1e-15, $"running var step {step}");
        }
        bn.Eval();
        var xe = R(shape, 40, -2, 3);
        Close.Check(Reference(xe.ToArray<double>(), n, c, s, true, w, b, rm, rv), bn.Forward(xe).ToArray<double>(), 1e-12, 1e-13, "eval");
    }

    [Fact]
    public void BatchNorm_state_dict_has_PyTorch_keys_and_round_trips_running_stats()
    {
        var bn = new BatchNorm2d(3, dtype: F64);
        Assert.Equal(["bias", "num_batches_tracked", "running_mean", "running_var", "weight"], bn.StateDict().Keys.Order().ToArray());
        Assert.Equal(["weight", "bias"], bn.NamedParameters().Select(p => p.Name).ToArray());
        bn.Forward(R([2, 3, 2, 2], 50));
        var saved = bn.StateDict().ToDictionary(kv => kv.Key, kv => kv.Value.Clone());
        var fresh = new BatchNorm2d(3, dtype: F64);
        fresh.LoadStateDict(saved);
        Assert.Equal(bn.RunningMean!.ToArray<double>(), fresh.RunningMean!.ToArray<double>());
        Assert.Equal(bn.RunningVar!.ToArray<double>(), fresh.RunningVar!.ToArray<double>());
        Assert.Equal(1, fresh.NumBatchesTracked!.Item());
        var xe = R([2, 3, 2, 2], 51);
        bn.Eval(); fresh.Eval();
        Assert.Equal(bn.Forward(xe).ToArray<double>(), fresh.Forward(xe).ToArray<double>());
    }

    [Fact]
    public void BatchNorm_without_running_stats_uses_batch_statistics_in_eval()
    {
        var bn = new BatchNorm1d(3, affine: false, trackRunningStats: false, dtype: F64);
        Assert.Empty(bn.StateDict());
        Assert.Null(bn.RunningMean);
        bn.Eval();
        var x = R([4, 3, 2], 60);
        Close.Check(Reference(x.ToArray<double>(), 4, 3, 2, true), bn.Forward(x).ToArray<double>(), 1e-12, 1e-13, "eval with batch stats");
    }

    [Fact]
    public void BatchNorm_train_passes_gradcheck()
    {
        var bn = new BatchNorm2d(3, dtype: F64);
        SetAffine(bn.Weight, bn.Bias, 3, 70);
        var x = R([2, 3, 2, 2], 71, -2, 2);
        Input(bn.Forward, x, "batch norm input");
        Parameters(bn, () => bn.Forward(x), "batch norm");
        var bn1 = new BatchNorm1d(4, affine: false, dtype: F64);
        Input(bn1.Forward, R([5, 4], 72), "batch norm 1d [N, C]");
    }

    [Fact]
    public void BatchNorm_rejects_bad_input()
    {
        var ex = Assert.Throws<ArgumentException>(() => new BatchNorm2d(3).Forward(Tensor.Zeros(2, 3, 4)));
        Assert.Equal("input", ex.ParamName);
        Assert.Contains("[2, 3, 4]", ex.Message);
        var sm = Assert.Throws<ShapeMismatchException>(() => new BatchNorm1d(3).Forward(Tensor.Zeros(2, 4)));
        Assert.Contains("must be 3, got 4", sm.Message);
        Assert.Throws<ArgumentException>(() => new BatchNorm3d(2).Forward(Tensor.Zeros(2, 2, 2, 2)));
        // One value per channel has no variance: refused in training, fine in eval.
        var one = new BatchNorm1d(3);
        Assert.Contains("more than one value per channel", Assert.Throws<ArgumentException>(() => one.Forward(Tensor.Zeros(1, 3))).Message);
        one.Eval();
        Assert.Equal(new Shape(1, 3), one.Forward(Tensor.Zeros(1, 3)).Shape);
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchNorm1d(0));
    }

    [Fact]
    public void GroupNorm_matches_transcription_and_passes_gradcheck()
    {
        // Groups of C / G consecutive channels: as a [N, G, (C/G) S] tensor each (n, g) row is one instance.
        int n = 2, c = 6, g = 3, s = 2 * 3;
        var gn = new GroupNorm(g, c, dtype: F64);
        SetAffine(gn.Weight, gn.Bias, c, 80);
        var x = R([n, c, 2, 3], 81, -2, 3);
        var grouped = Reference(x.ToArray<double>(), n, g, c / g * s, false);
        double[] w = gn.Weight!.Value.ToArray<double>(), b = gn.Bias!.Value.ToArray<double>();
        var expected = grouped.Select((v, i) => v * w[i / s % c] + b[i / s % c]).ToArray();
        Close.Check(expected, gn.Forward(x).ToArray<double>(), 1e-12, 1e-13, "group norm");
        gn.Eval();
        Close.Check(expected, gn.Forward(x).ToArray<double>(), 1e-12, 1e-13, "group norm in eval");
        Input(gn.Forward, R([2, 6, 3], 82, -2, 2), "group norm input");
        Parameters(gn, () => gn.Forward(R([2, 6, 3], 83, -2, 2)), "group norm");
        // One group is layer norm over (C, *); C groups is instance norm.
        var ln = new GroupNorm(1, 4, affine: false, dtype: F64).Forward(R([3, 4, 5], 84));
        Close.Check(R([3, 4, 5], 84).Reshape(3, 20).LayerNorm(null, null, Eps).Reshape(3, 4, 5), ln, 1e-12, 1e-13, "G = 1");
        Close.Check(new InstanceNorm1d(4, dtype: F64).Forward(R([3, 4, 5], 84)), new GroupNorm(4, 4, affine: false, dtype: F64).Forward(R([3, 4, 5], 84)), 1e-12, 1e-13, "G = C");
    }

    [Fact]
    public void GroupNorm_rejects_bad_arguments()
    {
        var ex = Assert.Throws<ArgumentException>(() => new GroupNorm(4, 6));
        Assert.Equal("numChannels", ex.ParamName);
        Assert.Contains("numChannels 6 is not divisible by numGroups 4", ex.Message);
        var sm = Assert.Throws<ShapeMismatchException>(() => new GroupNorm(2, 6).Forward(Tensor.Zeros(2, 4, 3)));
        Assert.Contains("must be 6, got 4", sm.Message);
        Assert.Equal("input", Assert.Throws<ArgumentException>(() => new GroupNorm(2, 6).Forward(Tensor.Zeros(6))).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => new GroupNorm(0, 6));
    }

    [Theory]
    [InlineData(1, new[] { 2, 3, 5 })]
    [InlineData(2, new[] { 2, 3, 2, 3 })]
    [InlineData(3, new[] { 2, 3, 2, 2, 2 })]
    public void InstanceNorm_matches_transcription_batched_and_unbatched(int dims, int[] shape)
    {
        int n = shape[0], c = shape[1], s = shape.Skip(2).Aggregate(1, (p, d) => p * d);
        InstanceNorm Make(bool affine, bool track) => dims switch
        {
            1 => new InstanceNorm1d(c, affine: affine, trackRunningStats: track, dtype: F64),
            2 => new InstanceNorm2d(c, affine: affine, trackRunningStats: track, dtype: F64),
            _ => new InstanceNorm3d(c, affine: affine, trackRunningStats: track, dtype: F64),
        };
        var x = R(shape, 90, -2, 3);
        var xs = x.ToArray<double>();
        var plain = Make(false, false);
        Assert.Empty(plain.StateDict());
        Close.Check(Reference(xs, n, c, s, false), plain.Forward(x).ToArray<double>(), 1e-12, 1e-13, "instance norm");
        plain.Eval();
        Close.Check(Reference(xs, n, c, s, false), plain.Forward(x).ToArray<double>(), 1e-12, 1e-13, "instance norm in eval without running stats");
        var one = x.Narrow(0, 1, 1).Squeeze(0);
        Close.Check(Reference(one.ToArray<double>(), 1, c, s, false), plain.Forward(one).ToArray<double>(), 1e-12, 1e-13, "unbatched");
        Assert.Equal(one.Shape, plain.Forward(one).Shape);

        var affine = Make(true, false);
        SetAffine(affine.Weight, affine.Bias, c, 91);
        Close.Check(Reference(xs, n, c, s, false, affine.Weight!.Value.ToArray<double>(), affine.Bias!.Value.ToArray<double>()),
            affine.Forward(x).ToArray<double>(), 1e-12, 1e-13, "affine instance norm");
    }

    [Fact]
    public void InstanceNorm_tracks_running_stats_as_batch_averages_of_instance_stats()
    {
        var inorm = new InstanceNorm1d(2, momentum: 0.2, trackRunningStats: true, dtype: F64);
        Assert.Equal(["num_batches_tracked", "running_mean", "running_var"], inorm.StateDict().Keys.Order().ToArray());
        // Instances (n, c): (0,0) {1, 3}: mean 2, unbiased var 2; (0,1) {0, 4}: 2, 8; (1,0) {2, 6}: 4, 8; (1,1) {5, 5}: 5, 0.
        var x = Tensor.FromArray(new double[] { 1, 3, 0, 4, 2, 6, 5, 5 }, [2, 2, 2]);
        inorm.Forward(x);
        Close.Check([0.2 * 3, 0.2 * 3.5], inorm.RunningMean!.ToArray<double>(), 1e-15, 0, "running mean");
        Close.Check([0.8 + 0.2 * 5, 0.8 + 0.2 * 4], inorm.RunningVar!.ToArray<double>(), 1e-15, 0, "running var");
        inorm.Eval();
        var xe = R([3, 2, 4], 92);
        Close.Check(Reference(xe.ToArray<double>(), 3, 2, 4, true, null, null, [0.6, 0.7], [1.8, 1.6]), inorm.Forward(xe).ToArray<double>(), 1e-12, 1e-13, "eval uses running stats");
    }

    [Fact]
    public void InstanceNorm_passes_gradcheck()
    {
        var inorm = new InstanceNorm2d(3, affine: true, dtype: F64);
        SetAffine(inorm.Weight, inorm.Bias, 3, 100);
        var x = R([2, 3, 2, 2], 101, -2, 2);
        Input(inorm.Forward, x, "instance norm input");
        Parameters(inorm, () => inorm.Forward(x), "instance norm");
    }

    [Fact]
    public void InstanceNorm_rejects_bad_input()
    {
        var ex = Assert.Throws<ArgumentException>(() => new InstanceNorm2d(3).Forward(Tensor.Zeros(2, 3)));
        Assert.Equal("input", ex.ParamName);
        Assert.Contains("rank 3 or 4", ex.Message);
        Assert.Contains("must be 3, got 5", Assert.Throws<ShapeMismatchException>(() => new InstanceNorm1d(3).Forward(Tensor.Zeros(2, 5, 4))).Message);
        Assert.Contains("more than one spatial position", Assert.Throws<ArgumentException>(() => new InstanceNorm1d(3).Forward(Tensor.Zeros(2, 3, 1))).Message);
    }
}
