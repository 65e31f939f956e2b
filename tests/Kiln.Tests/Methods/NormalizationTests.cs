using FsCheck.Fluent;
using Kiln.NN;
using Kiln.Tests.TestKit;
using Xunit;
using static Kiln.Tests.NN.NNCheck;
using Close = Kiln.Tests.TestKit.Close;

namespace Kiln.Tests.Methods;

/// <summary>
/// The normalization, initialization and routing rules of src/Kiln.Methods/Normalization/README.md, each against a
/// float64 transcription of its paper's equations written out here: LSUV, ghost batch normalization.
/// </summary>
public class NormalizationTests
{
    const DType F64 = DType.Float64;

    // ---------------------------------------------------------------- LSUV

    // y = x W^T + b for x [n, k], W [m, k], row-major.
    static double[] Affine(double[] x, double[] w, double[]? b, int n, int k, int m)
    {
        var y = new double[n * m];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++)
            {
                double s = b?[j] ?? 0;
                for (int p = 0; p < k; p++) s += x[i * k + p] * w[j * k + p];
                y[i * m + j] = s;
            }
        return y;
    }

    static double PopulationVar(double[] v)
    {
        double mean = v.Average();
        return v.Sum(e => (e - mean) * (e - mean)) / v.Length;
    }

    // The pre-activation variance of each Linear of a tanh MLP on x, written out in float64.
    static double[] LayerVariances(MLP mlp, double[] x, int n)
    {
        var linears = mlp.NamedModules().Select(m => m.Module).OfType<Linear>().ToArray();
        var vars = new double[linears.Length];
        var h = x;
        for (int l = 0; l < linears.Length; l++)
        {
            var lin = linears[l];
            var z = Affine(h, lin.Weight.ToArray<double>(), lin.Bias?.ToArray<double>(), n, lin.InFeatures, lin.OutFeatures);
            vars[l] = PopulationVar(z);
            h = z.Select(Math.Tanh).ToArray();
        }
        return vars;
    }

    [Fact]
    public void Lsuv_brings_every_layer_to_unit_variance_on_the_init_batch_from_orthonormal_weights()
    {
        int[] sizes = [12, 16, 10, 6];
        var mlp = new MLP(sizes, ActivationKind.Tanh, generator: new Generator(1), dtype: F64);
        // Inputs far from unit scale, so every layer needs rescaling.
        var batch = R([256, 12], 2, -4, 4);
        const double tol = 0.02;
        var report = Lsuv.Init_(mlp, batch, tol, 10, new Generator(3));

        Assert.Equal(["layers.0", "layers.2", "layers.4"], report.Select(r => r.Name));
        var vars = LayerVariances(mlp, batch.ToArray<double>(), 256);
        for (int l = 0; l < vars.Length; l++)
        {
            Assert.True(Math.Abs(vars[l] - 1) < tol, $"layer {l}: variance {vars[l]} on the init batch");
            Close.Check([vars[l]], [report[l].Variance], 1e-12, 0, $"reported variance of layer {l}");
            Assert.True(report[l].Iterations >= 1, $"layer {l} was never rescaled");
        }
        // The weights are the orthonormal pre-scaling matrices times the reported scale, and the biases are zero.
        var linears = mlp.NamedModules().Select(m => m.Module).OfType<Linear>().ToArray();
        for (int l = 0; l < linears.Length; l++)
        {
            int rows = linears[l].OutFeatures, cols = linears[l].InFeatures;
            var q = Dense.Scale(linears[l].Weight.ToArray<double>(), 1 / report[l].Scale);
            var gram = rows <= cols ? Dense.Mul(q, Dense.T(q, rows, cols), rows, cols, rows) : Dense.Mul(Dense.T(q, rows, cols), q, cols, rows, cols);
            Close.Check(Dense.Eye(Math.Min(rows, cols)), gram, 0, 1e-12, $"orthonormality of layer {l} before scaling");
            Assert.All(linears[l].Bias!.ToArray<double>(), b => Assert.Equal(0, b));
        }

        // A fresh batch from the same distribution: unit variance up to sampling error (a few percent at 4096 rows).
        var fresh = LayerVariances(mlp, R([4096, 12], 9, -4, 4).ToArray<double>(), 4096);
        Assert.All(fresh, v => Assert.InRange(v, 0.85, 1.15));
    }

    [Fact]
    public void Lsuv_without_iterations_leaves_the_orthonormal_init_and_errors_name_the_argument()
    {
        var mlp = new MLP([5, 4, 3], generator: new Generator(4), dtype: F64);
        var report = Lsuv.Init_(mlp, R([32, 5], 5), maxIterations: 0, generator: new Generator(6));
        Assert.All(report, r => { Assert.Equal(0, r.Iterations); Assert.Equal(1, r.Scale); });
        var w = ((Linear)mlp.NamedModules().First(m => m.Name == "layers.0").Module).Weight.ToArray<double>();
        Close.Check(Dense.Eye(4), Dense.Mul(w, Dense.T(w, 4, 5), 4, 5, 4), 0, 1e-12, "orthonormal rows");

        Assert.Equal("tolerance", Assert.Throws<ArgumentOutOfRangeException>(() => Lsuv.Init_(mlp, R([4, 5], 1), 0)).ParamName);
        Assert.Equal("maxIterations", Assert.Throws<ArgumentOutOfRangeException>(() => Lsuv.Init_(mlp, R([4, 5], 1), maxIterations: -1)).ParamName);
        Assert.Equal("batch", Assert.Throws<ArgumentException>(() => Lsuv.Init_(mlp, Tensor.Zeros([0, 5], F64))).ParamName);
        Assert.Equal("model", Assert.Throws<ArgumentException>(() => Lsuv.Init_(new Activation(ActivationKind.Relu), R([4, 5], 1))).ParamName);
        // A constant batch gives a zero-variance first layer output: no scale makes it 1.
        var ex = Assert.Throws<InvalidOperationException>(() => Lsuv.Init_(mlp, Tensor.Zeros([4, 5], F64)));
        Assert.Contains("layers.0", ex.Message);
    }

    // ---------------------------------------------------------------- Ghost batch normalization

    // Algorithm 1 of the paper on x [n, c, s]: ghost batches of vbs consecutive samples, each normalized per channel with
    // its biased statistics; the running statistics take one momentum step per ghost batch (unbiased variance).
    static (double[] Y, double[] Mean, double[] Var) GhostReference(double[] x, int n, int c, int s, int vbs, double[] w, double[] b, double m, double eps)
    {
        var y = new double[x.Length];
        var rm = new double[c]; var rv = Enumerable.Repeat(1.0, c).ToArray();
        for (int g0 = 0; g0 < n; g0 += vbs)
        {
            int g1 = Math.Min(n, g0 + vbs);
            for (int ch = 0; ch < c; ch++)
            {
                var idx = new List<int>();
                for (int i = g0; i < g1; i++) for (int k = 0; k < s; k++) idx.Add((i * c + ch) * s + k);
                double mean = idx.Average(j => x[j]);
                double var = idx.Average(j => (x[j] - mean) * (x[j] - mean));
                foreach (int j in idx) y[j] = (x[j] - mean) / Math.Sqrt(var + eps) * w[ch] + b[ch];
                rm[ch] = (1 - m) * rm[ch] + m * mean;
                rv[ch] = (1 - m) * rv[ch] + m * var * idx.Count / (idx.Count - 1);
            }
        }
        return (y, rm, rv);
    }

    [Fact]
    public void Ghost_batch_norm_normalizes_each_ghost_batch_with_its_own_statistics()
    {
        var gen = from n in Gen.Choose(1, 11) from c in Gen.Choose(1, 4) from s in Gen.Choose(2, 3)
                  from vbs in Gen.Choose(1, 12) from seed in Gen.Choose(0, 10000) select (n, c, s, vbs, seed);
        Props.Check(gen, t =>
        {
            var (n, c, s, vbs, seed) = t;
            var gbn = new GhostBatchNorm(c, vbs, momentum: 0.3, dtype: F64);
            using (Autograd.NoGrad()) { gbn.Weight!.Copy_(R([c], (ulong)seed, 0.5, 1.5)); gbn.Bias!.Copy_(R([c], (ulong)seed + 1)); }
            var x = R([n, c, s], (ulong)seed + 2, -3, 3);
            var (ry, rm, rv) = GhostReference(x.ToArray<double>(), n, c, s, vbs, gbn.Weight!.ToArray<double>(), gbn.Bias!.ToArray<double>(), 0.3, gbn.Eps);
            Close.Check(ry, gbn.Forward(x).ToArray<double>(), 1e-12, 1e-12, "ghost-normalized output");
            Close.Check(rm, gbn.RunningMean.ToArray<double>(), 1e-12, 1e-14, "running mean");
            Close.Check(rv, gbn.RunningVar.ToArray<double>(), 1e-12, 1e-14, "running var");
        }, 40);
    }

    [Fact]
    public void Ghost_batch_norm_reduces_to_batch_norm_and_evaluates_with_running_statistics()
    {
        var x = R([6, 3, 4], 11, -2, 2);
        var gbn = new GhostBatchNorm(3, 6, dtype: F64);
        var bn = new BatchNorm1d(3, dtype: F64);
        Close.Check(bn.Forward(x).ToArray<double>(), gbn.Forward(x).ToArray<double>(), 1e-14, 1e-14, "one ghost batch = batch norm");
        Close.Check(bn.RunningMean!.ToArray<double>(), gbn.RunningMean.ToArray<double>(), 1e-14, 1e-15, "running mean");
        Close.Check(bn.RunningVar!.ToArray<double>(), gbn.RunningVar.ToArray<double>(), 1e-14, 1e-15, "running var");
        bn.Eval(); gbn.Eval();
        var z = R([2, 3, 4], 12);
        Close.Check(bn.Forward(z).ToArray<double>(), gbn.Forward(z).ToArray<double>(), 1e-14, 1e-14, "evaluation output");

        // Two ghost batches of a [4, C] input: each is its own BatchNorm step.
        var g2 = new GhostBatchNorm(2, 2, dtype: F64);
        var bn2 = new BatchNorm1d(2, dtype: F64);
        var v = R([4, 2], 13);
        var expected = Tensor.Concat([bn2.Forward(v.Narrow(0, 0, 2)), bn2.Forward(v.Narrow(0, 2, 2))], 0);
        Close.Check(expected.ToArray<double>(), g2.Forward(v).ToArray<double>(), 1e-14, 1e-14, "ghost batches as successive batch-norm steps");
        Close.Check(bn2.RunningVar!.ToArray<double>(), g2.RunningVar.ToArray<double>(), 1e-14, 1e-15, "running var after two ghost batches");
    }

    [Fact]
    public void Ghost_batch_norm_gradients_match_central_differences()
    {
        var gbn = new GhostBatchNorm(2, 2, dtype: F64);
        using (Autograd.NoGrad()) { gbn.Weight!.Copy_(R([2], 21, 0.5, 1.5)); gbn.Bias!.Copy_(R([2], 22)); }
        var x = R([5, 2, 2], 23, -2, 2);
        Input(t => gbn.Forward(t), x, "ghost batch norm input");
        Parameters(gbn, () => gbn.Forward(x), "ghost batch norm parameters");
    }

    [Fact]
    public void Ghost_batch_norm_errors_name_the_argument_and_values()
    {
        Assert.Equal("virtualBatchSize", Assert.Throws<ArgumentOutOfRangeException>(() => new GhostBatchNorm(2, 0)).ParamName);
        Assert.Equal("momentum", Assert.Throws<ArgumentOutOfRangeException>(() => new GhostBatchNorm(2, 4, momentum: 0)).ParamName);
        var gbn = new GhostBatchNorm(2, 2, dtype: F64);
        // [3, 2] in ghost batches of 2: the last ghost batch has one sample, one value per channel.
        var ex = Assert.Throws<ArgumentException>(() => gbn.Forward(R([3, 2], 1)));
        Assert.Contains("[2, 3)", ex.Message);
        Assert.Throws<ShapeMismatchException>(() => gbn.Forward(R([4, 3], 1)));
        Assert.Equal("input", Assert.Throws<ArgumentException>(() => gbn.Forward(R([4], 1))).ParamName);
    }
}
