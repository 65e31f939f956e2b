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

    // ---------------------------------------------------------------- Hyperspherical normalization (SimbaV2)

    static double[] UnitRows(double[] x, int rows, int cols)
    {
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            double n = Math.Sqrt(Enumerable.Range(0, cols).Sum(j => x[r * cols + j] * x[r * cols + j]));
            for (int j = 0; j < cols; j++) y[r * cols + j] = x[r * cols + j] / Math.Max(n, 1e-8);
        }
        return y;
    }

    static double[] RowNorms(double[] x, int rows, int cols) =>
        Enumerable.Range(0, rows).Select(r => Math.Sqrt(Enumerable.Range(0, cols).Sum(j => x[r * cols + j] * x[r * cols + j]))).ToArray();

    [Fact]
    public void Hyperspherical_features_stay_on_the_unit_sphere()
    {
        var gen = from n in Gen.Choose(1, 5) from d in Gen.Choose(1, 6) from hidden in Gen.Choose(2, 6)
                  from blocks in Gen.Choose(0, 2) from seed in Gen.Choose(0, 10000) select (n, d, hidden, blocks, seed);
        Props.Check(gen, t =>
        {
            var (n, d, hidden, blocks, seed) = t;
            var x = R([n, d], (ulong)seed, -5, 5);
            // The shift projection: [x, c] / sqrt(|x|^2 + c^2), one more dimension, on the sphere even for x = 0.
            var xs = x.ToArray<double>();
            var expected = new double[n * (d + 1)];
            for (int r = 0; r < n; r++)
            {
                for (int j = 0; j < d; j++) expected[r * (d + 1) + j] = xs[r * d + j];
                expected[r * (d + 1) + d] = 3;
            }
            Close.Check(UnitRows(expected, n, d + 1), Hypersphere.ShiftProject(x).ToArray<double>(), 1e-14, 1e-15, "shift projection");
            var enc = new HyperEncoder(d, hidden, blocks, generator: new Generator((ulong)seed), dtype: F64);
            foreach (var input in new[] { x, Tensor.Zeros([n, d], F64) })
                Close.Check(Enumerable.Repeat(1.0, n).ToArray(), RowNorms(enc.Forward(input).ToArray<double>(), n, hidden), 0, 1e-13, "encoder output norms");
            // Weights start on the sphere, row by row.
            foreach (var (_, m) in enc.NamedModules())
                if (m is HyperLinear h)
                    Close.Check(Enumerable.Repeat(1.0, h.OutFeatures).ToArray(), RowNorms(h.Weight.ToArray<double>(), h.OutFeatures, h.InFeatures), 0, 1e-13, "initial weight rows");
        }, 30);
        Close.Check([0, 0], Hypersphere.L2Normalize(Tensor.Zeros([1, 2], F64)).ToArray<double>(), 0, 0, "zero row stays zero");
    }

    [Fact]
    public void Hyperspherical_residual_block_is_the_papers_normalized_interpolation()
    {
        const int d = 3, e = 2;
        var block = new HyperResidualBlock(d, 0.6, 0.5, 0.3, 0.25, expansion: e, generator: new Generator(31), dtype: F64);
        using (Autograd.NoGrad())
        {
            block.Up.Scaler!.Weight.Copy_(R([d * e], 32, 0.2, 0.8));
            block.Alpha.Weight.Copy_(R([d], 33, 0.1, 0.4));
        }
        var x = Hypersphere.L2Normalize(R([4, d], 34));
        double[] xs = x.ToArray<double>(), w1 = block.Up.Weight.ToArray<double>(), w2 = block.Down.Weight.ToArray<double>();
        var s = block.Up.Scaler!.Weight.ToArray<double>().Select(v => v * 0.6 / 0.5).ToArray();
        var a = block.Alpha.Weight.ToArray<double>().Select(v => v * 0.3 / 0.25).ToArray();
        // h~ = l2norm(W2 (relu(s * W1 x) + 1e-8)); out = l2norm(x + alpha (h~ - x)).
        var u = Affine(xs, w1, null, 4, d, d * e).Select((v, i) => Math.Max(v * s[i % (d * e)], 0) + 1e-8).ToArray();
        var h = UnitRows(Affine(u, w2, null, 4, d * e, d), 4, d);
        var mix = xs.Select((v, i) => v + a[i % d] * (h[i] - v)).ToArray();
        Close.Check(UnitRows(mix, 4, d), block.Forward(x).ToArray<double>(), 1e-13, 1e-14, "residual block");

        Input(t => block.Forward(t), x, "hyper residual block input");
        Parameters(block, () => block.Forward(x), "hyper residual block parameters");
    }

    [Fact]
    public void Hyperspherical_weight_projection_maps_each_row_to_its_closest_unit_vector()
    {
        var enc = new HyperEncoder(3, 4, 1, generator: new Generator(41), dtype: F64);
        var hyper = enc.NamedModules().Select(m => m.Module).OfType<HyperLinear>().ToArray();
        var others = enc.Parameters().Where(p => hyper.All(h => !ReferenceEquals(h.Weight, p))).Select(p => p.ToArray<double>()).ToArray();
        // An optimizer step moves the rows off the sphere.
        ulong seed = 42;
        using (Autograd.NoGrad()) foreach (var h in hyper) h.Weight.Add_(R(h.Weight.Shape, seed++, -0.5, 0.5));
        var before = hyper.Select(h => h.Weight.ToArray<double>()).ToArray();
        Assert.Equal(hyper.Length, Hypersphere.ProjectWeights_(enc));
        var rng = new Random(43);
        for (int l = 0; l < hyper.Length; l++)
        {
            int rows = hyper[l].OutFeatures, cols = hyper[l].InFeatures;
            var after = hyper[l].Weight.ToArray<double>();
            Close.Check(UnitRows(before[l], rows, cols), after, 1e-14, 1e-15, $"projected layer {l}");
            // w / |w| is the unit vector nearest to w: no random unit vector is closer.
            for (int r = 0; r < rows; r++)
            {
                double Dist(double[] v, int off) => Math.Sqrt(Enumerable.Range(0, cols).Sum(j => Math.Pow(before[l][r * cols + j] - v[off + j], 2)));
                double best = Dist(after, r * cols);
                for (int k = 0; k < 20; k++)
                {
                    var v = UnitRows(Dense.Uniform(rng, cols), 1, cols);
                    Assert.True(Dist(v, 0) >= best - 1e-12, $"layer {l} row {r}: a unit vector at {Dist(v, 0)} beats the projection's {best}");
                }
            }
        }
        // The projection is idempotent and leaves scalers alone.
        var once = hyper.Select(h => h.Weight.ToArray<double>()).ToArray();
        Hypersphere.ProjectWeights_(enc);
        for (int l = 0; l < hyper.Length; l++) Close.Check(once[l], hyper[l].Weight.ToArray<double>(), 1e-15, 0, "second projection");
        var othersAfter = enc.Parameters().Where(p => hyper.All(h => !ReferenceEquals(h.Weight, p))).Select(p => p.ToArray<double>()).ToArray();
        for (int i = 0; i < others.Length; i++) Assert.Equal(others[i], othersAfter[i]);

        Assert.Equal("shift", Assert.Throws<ArgumentOutOfRangeException>(() => Hypersphere.ShiftProject(R([2, 2], 1), 0)).ParamName);
        Assert.Equal("scale", Assert.Throws<ArgumentOutOfRangeException>(() => new Scaler(3, 1, -1)).ParamName);
        Assert.Throws<ShapeMismatchException>(() => new HyperLinear(3, 2, dtype: F64).Forward(R([1, 4], 1)));
    }

    // ---------------------------------------------------------------- Weight conditioning

    [Fact]
    public void Weight_conditioning_condition_numbers_match_the_float64_singular_values()
    {
        var gen = from m in Gen.Choose(1, 6) from n in Gen.Choose(1, 6) from seed in Gen.Choose(0, 10000) select (m, n, seed);
        Props.Check(gen, t =>
        {
            var (m, n, seed) = t;
            var w = R([m, n], (ulong)seed);
            var sv = Dense.SingularValues(w.ToArray<double>(), m, n);
            Close.Check([sv.Max() / sv.Min()], [WeightConditioning.ConditionNumber(w)], 1e-8, 0, "condition number");

            // The inverse-root conditioner: every singular value of the conditioned weight is V's mean singular value.
            var lin = new ConditionedLinear(n, m, generator: new Generator((ulong)seed), dtype: F64);
            int k = Math.Min(m, n);
            double[] v = lin.Weight.ToArray<double>(), g = lin.Conditioner.ToArray<double>();
            var eff = m <= n ? Dense.Mul(g, v, m, m, n) : Dense.Mul(v, g, m, n, n);
            Close.Check(eff, lin.EffectiveWeight.ToArray<double>(), 1e-13, 1e-14, "effective weight");
            double mean = Dense.SingularValues(v, m, n).Average();
            Close.Check(Enumerable.Repeat(mean, k).ToArray(), Dense.SingularValues(eff, m, n), 1e-8, 1e-10, "conditioned singular values");
            Assert.True(Math.Abs(WeightConditioning.ConditionNumber(lin.EffectiveWeight) - 1) < 1e-8);
            Assert.True(WeightConditioning.ConditionNumber(lin.Weight) >= WeightConditioning.ConditionNumber(lin.EffectiveWeight) - 1e-8);
        }, 30);
        Assert.Equal(double.PositiveInfinity, WeightConditioning.ConditionNumber(Tensor.FromArray(new double[] { 1, 2, 2, 4 }, [2, 2])));
    }

    [Fact]
    public void Weight_conditioning_forward_and_gradient_go_through_the_fixed_conditioner()
    {
        foreach (var (inF, outF) in new[] { (4, 3), (3, 4) })
        {
            var lin = new ConditionedLinear(inF, outF, generator: new Generator(51), dtype: F64);
            var x = R([5, inF], 52);
            double[] v = lin.Weight.ToArray<double>(), g = lin.Conditioner.ToArray<double>();
            var eff = outF <= inF ? Dense.Mul(g, v, outF, outF, inF) : Dense.Mul(v, g, outF, inF, inF);
            Close.Check(Affine(x.ToArray<double>(), eff, lin.Bias!.ToArray<double>(), 5, inF, outF), lin.Forward(x).ToArray<double>(), 1e-13, 1e-14, "forward");

            // d sum(c * y) / dV = G^T (c^T x) (left conditioner) or (c^T x) G^T (right), by the chain rule through W.
            var c = R([5, outF], 53);
            lin.ZeroGrad();
            (lin.Forward(x) * c).Sum().Backward();
            var dW = Dense.Mul(Dense.T(c.ToArray<double>(), 5, outF), x.ToArray<double>(), outF, 5, inF);
            int k = Math.Min(inF, outF);
            var dV = outF <= inF ? Dense.Mul(Dense.T(g, k, k), dW, k, k, inF) : Dense.Mul(dW, Dense.T(g, k, k), outF, k, k);
            Close.Check(dV, lin.Weight.Grad!.ToArray<double>(), 1e-12, 1e-13, "dL/dV");
            Assert.False(lin.Conditioner.RequiresGrad);
            Parameters(lin, () => lin.Forward(x), $"conditioned linear {inF}->{outF}");
            Input(t => lin.Forward(t), x, "conditioned linear input");
        }
        Assert.Throws<ShapeMismatchException>(() => new ConditionedLinear(4, 3, Tensor.Eye(4, dtype: F64)));
        Assert.Equal("weight", Assert.Throws<ArgumentException>(() => WeightConditioning.InverseRootConditioner(Tensor.Zeros([2, 3], F64))).ParamName);
    }
}
