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

    // ---------------------------------------------------------------- Every device

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Normalization_modules_in_float32_on_every_device_match_float64_on_the_cpu(string device)
    {
        var dev = Devices.Parse(device);
        const double rtol = 1e-4, atol = 1e-5;
        Tensor On(Tensor t) => t.To(DType.Float32).To(dev);

        var x = R([7, 3, 2], 111, -2, 2);
        var gbnRef = new GhostBatchNorm(3, 3, dtype: F64);
        var gbn = new GhostBatchNorm(3, 3, device: dev);
        Close.Check(gbnRef.Forward(x), gbn.Forward(On(x)), rtol, atol, "ghost batch norm");
        Close.Check(gbnRef.RunningVar, gbn.RunningVar, rtol, atol, "ghost batch norm running var");

        var encRef = new HyperEncoder(3, 4, 1, generator: new Generator(112), dtype: F64);
        var enc = new HyperEncoder(3, 4, 1, device: dev);
        enc.LoadStateDict(encRef.StateDict());
        var obs = R([5, 3], 113, -3, 3);
        Close.Check(encRef.Forward(obs), enc.Forward(On(obs)), rtol, atol, "hyperspherical encoder");

        var linRef = new ConditionedLinear(4, 3, generator: new Generator(114), dtype: F64);
        var lin = new ConditionedLinear(4, 3, linRef.Conditioner, device: dev);
        lin.LoadStateDict(linRef.StateDict());
        var z = R([2, 4], 115);
        Close.Check(linRef.Forward(z), lin.Forward(On(z)), rtol, atol, "conditioned linear");

        var p = R([6, 3], 116, -2, 2).Softmax(-1);
        var y = Tensor.FromArray(new long[] { 0, 1, 1, 0, 1, 0 });
        Close.Check(InformationGain.Compute(p, y, 2), InformationGain.Compute(On(p), y.To(dev), 2), rtol, atol, "information gain");
    }

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
        Assert.Equal("hidden", Assert.Throws<ArgumentOutOfRangeException>(() => new HyperEncoder(3, 0, 1)).ParamName);
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

    // ---------------------------------------------------------------- Auxiliary-loss-free load balancing

    // Top-k of s + b per token (ties to the lower index), written out.
    static int[][] TopKRef(double[] s, double[] b, int t, int e, int k) =>
        Enumerable.Range(0, t).Select(r => Enumerable.Range(0, e).OrderByDescending(i => s[r * e + i] + b[i]).ThenBy(i => i).Take(k).ToArray()).ToArray();

    static double DualRef(double[] s, double[] b, int t, int e, int k) =>
        TopKRef(s, b, t, e, k).Select((set, r) => set.Sum(i => s[r * e + i] + b[i])).Sum() - (double)t * k / e * b.Sum();

    static long[] LoadRef(int[][] sets, int e)
    {
        var load = new long[e];
        foreach (var set in sets) foreach (int i in set) load[i]++;
        return load;
    }

    [Fact]
    public void Alf_lb_routes_by_biased_scores_gates_by_raw_scores_and_steps_towards_balance()
    {
        var bal = new AuxLossFreeBalancer(4, 2, 0.1);
        using (Autograd.NoGrad()) bal.Bias.Copy_(Tensor.FromArray(new[] { 0.0, 0.5, -0.2, 0.1 }));
        var scores = R([6, 4], 61).RequiresGrad_();
        var (idx, gates) = bal.Route(scores);
        var s = scores.ToArray<double>();
        var expected = TopKRef(s, bal.Bias.ToArray<double>(), 6, 4, 2);
        Assert.Equal(expected.SelectMany(x => x.Select(i => (long)i)), idx.ToArray<long>());
        Close.Check(expected.SelectMany((set, r) => set.Select(i => s[r * 4 + i])).ToArray(), gates.ToArray<double>(), 0, 0, "gates are the unbiased scores");
        gates.Sum().Backward();
        Close.Check(Enumerable.Range(0, 24).Select(j => expected[j / 4].Contains(j % 4) ? 1.0 : 0).ToArray(), scores.Grad!.ToArray<double>(), 0, 0, "gate gradient");

        var load = bal.Load(idx);
        Assert.Equal(LoadRef(expected, 4), load);
        var b0 = bal.Bias.ToArray<double>();
        double mean = 12.0 / 4;
        var delta = bal.Step_(load);
        Close.Check(load.Select(l => 0.1 * Math.Sign(mean - l)).ToArray(), delta, 0, 0, "sign step");
        Close.Check(b0.Select((v, i) => v + delta[i]).ToArray(), bal.Bias.ToArray<double>(), 1e-15, 0, "bias after the step");
        var prop = new AuxLossFreeBalancer(4, 2, 0.1, BiasUpdate.Proportional);
        Close.Check(load.Select(l => 0.1 * (mean - l)).ToArray(), prop.Step_(load), 1e-15, 0, "proportional step");

        Assert.Equal("topK", Assert.Throws<ArgumentOutOfRangeException>(() => new AuxLossFreeBalancer(4, 5)).ParamName);
        Assert.Equal("stepSize", Assert.Throws<ArgumentOutOfRangeException>(() => new AuxLossFreeBalancer(4, 1, 0)).ParamName);
        Assert.Equal("load", Assert.Throws<ArgumentException>(() => bal.Step_([1, 2])).ParamName);
        Assert.Throws<ShapeMismatchException>(() => bal.Route(R([3, 5], 1)));
    }

    [Fact]
    public void Alf_lb_moves_tokens_only_from_overloaded_towards_underloaded_experts()
    {
        var gen = from t in Gen.Choose(1, 12) from e in Gen.Choose(2, 6) from k in Gen.Choose(1, 3)
                  from u in Gen.Elements(0.01, 0.1, 1.0) from prop in Gen.Elements(false, true) from seed in Gen.Choose(0, 10000)
                  select (t, e, Math.Min(k, e - 1), u, prop, seed);
        Props.Check(gen, c =>
        {
            var (t, e, k, u, prop, seed) = c;
            var bal = new AuxLossFreeBalancer(e, k, u, prop ? BiasUpdate.Proportional : BiasUpdate.Sign);
            using (Autograd.NoGrad()) bal.Bias.Copy_(R([e], (ulong)seed + 1, -0.3, 0.3));
            var scores = R([t, e], (ulong)seed);
            var s = scores.ToArray<double>();
            var before = TopKRef(s, bal.Bias.ToArray<double>(), t, e, k);
            var load = LoadRef(before, e);
            double mean = (double)t * k / e;
            var delta = bal.Step_(load);
            var after = TopKRef(s, bal.Bias.ToArray<double>(), t, e, k);
            for (int r = 0; r < t; r++)
                foreach (int j in after[r].Except(before[r]))
                    foreach (int i in before[r].Except(after[r]))
                    {
                        // Exchange argument: s_i + b_i > s_j + b_j and s_j + b'_j > s_i + b'_i give db_j > db_i, so the
                        // token leaves an expert that was over the mean load or joins one that was under it.
                        Assert.True(delta[j] > delta[i], $"token {r} moved {i} -> {j} with bias steps {delta[i]} and {delta[j]}");
                        Assert.True(load[i] > mean || load[j] < mean, $"token {r} moved {i} (load {load[i]}) -> {j} (load {load[j]}), mean {mean}");
                    }
        }, 60);
    }

    [Fact]
    public void Alf_lb_lagrangian_improves_under_the_no_overshoot_step_condition_and_not_unconditionally()
    {
        var gen = from t in Gen.Choose(1, 12) from e in Gen.Choose(2, 5) from k in Gen.Choose(1, 2)
                  from u in Gen.Elements(0.001, 0.03, 0.3, 3.0) from seed in Gen.Choose(0, 10000) select (t, e, Math.Min(k, e - 1), u, seed);
        int conditionHeld = 0;
        Props.Check(gen, c =>
        {
            var (t, e, k, u, seed) = c;
            var bal = new AuxLossFreeBalancer(e, k, u);
            var scores = R([t, e], (ulong)seed);
            var s = scores.ToArray<double>();
            var b = bal.Bias.ToArray<double>();
            double mean = (double)t * k / e;
            var load = LoadRef(TopKRef(s, b, t, e, k), e);
            double d0 = DualRef(s, b, t, e, k);
            Close.Check([d0], [AuxLossFreeBalancer.Lagrangian(scores, bal.Bias, k)], 1e-13, 1e-13, "Lagrangian");
            var delta = bal.Step_(load);
            var b1 = bal.Bias.ToArray<double>();
            var load1 = LoadRef(TopKRef(s, b1, t, e, k), e);
            double d1 = DualRef(s, b1, t, e, k);
            // D is convex with subgradient load - L: D(b') >= D(b) + db.(load - L), and, since x' maximizes over b',
            // D(b') <= D(b) + db.(load' - L).
            double lower = d0 + delta.Select((v, i) => v * (load[i] - mean)).Sum();
            double upper = d0 + delta.Select((v, i) => v * (load1[i] - mean)).Sum();
            Assert.InRange(d1, lower - 1e-12, upper + 1e-12);
            // The step condition: no expert crosses the mean load (over stays at or over, under at or under). Then every
            // term of the upper bound is <= 0 and the Lagrangian does not increase.
            bool noOvershoot = Enumerable.Range(0, e).All(i => (load[i] - mean) * (load1[i] - mean) >= 0);
            if (noOvershoot)
            {
                conditionHeld++;
                Assert.True(d1 <= d0 + 1e-12, $"Lagrangian rose from {d0} to {d1} although no expert crossed the mean load");
            }
        }, 80);
        Assert.True(conditionHeld > 0, "the step condition never held in the sample");

        // Two tokens preferring expert 0 (K = 1, L = 1): a small step keeps both there and lowers D; a large one sends
        // both to expert 1 (overshoot) and raises it.
        var sc = Tensor.FromArray(new double[] { 1, 0, 0.9, 0 }, [2, 2]);
        double DAfter(double u)
        {
            var bal = new AuxLossFreeBalancer(2, 1, u);
            bal.Step_(bal.Load(bal.Route(sc).Indices));
            return AuxLossFreeBalancer.Lagrangian(sc, bal.Bias, 1);
        }
        double start = AuxLossFreeBalancer.Lagrangian(sc, Tensor.Zeros([2], F64), 1);
        Close.Check([1.9, 1.3, 4.0], [start, DAfter(0.3), DAfter(2)], 1e-14, 1e-14, "Lagrangian of the two-token example");
    }

    [Fact]
    public void Alf_lb_sign_updates_reach_balance_within_the_ties_of_the_optimal_bias()
    {
        // Deterministic setting: fixed scores with a strong preference for expert 0. At a vertex b* of the dual, the LP
        // relaxation balances the loads exactly and only tokens tied at b* (at most E - 1 for generic scores, one per
        // equation fixing b* up to a shift) can differ, so small sign steps settle with every |load_i - L| <= E - 1.
        const int t = 40, e = 4;
        var s = R([t, e], 101).ToArray<double>();
        for (int r = 0; r < t; r++) s[r * e] += 0.8;
        var scores = Tensor.FromArray(s, [t, e]);
        var bal = new AuxLossFreeBalancer(e, 1, 1e-3);
        double Imbalance(long[] load) => load.Max(l => Math.Abs(l - (double)t / e));
        double first = Imbalance(bal.Load(bal.Route(scores).Indices));
        var late = new List<double>();
        for (int it = 0; it < 3000; it++)
        {
            var load = bal.Load(bal.Route(scores).Indices);
            if (it >= 2900) late.Add(Imbalance(load));
            bal.Step_(load);
        }
        Assert.True(first > e - 1, $"the start is already balanced ({first})");
        Assert.All(late, v => Assert.True(v <= e - 1, $"imbalance {v} late in the run"));
    }

    // ---------------------------------------------------------------- Conditional information gain trellis

    static double InformationGainRef(double[] p, long[] y, int b, int r, int c)
    {
        var joint = new double[c * r];
        for (int i = 0; i < b; i++) for (int n = 0; n < r; n++) joint[y[i] * r + n] += p[i * r + n] / b;
        static double H(IEnumerable<double> q) => -q.Where(v => v > 0).Sum(v => v * Math.Log(v));
        var pc = Enumerable.Range(0, c).Select(k => Enumerable.Range(0, r).Sum(n => joint[k * r + n]));
        var pn = Enumerable.Range(0, r).Select(n => Enumerable.Range(0, c).Sum(k => joint[k * r + n]));
        return H(pc) + H(pn) - H(joint);
    }

    [Fact]
    public void Information_gain_matches_the_float64_mutual_information_of_labels_and_routes()
    {
        var gen = from b in Gen.Choose(1, 12) from r in Gen.Choose(1, 4) from c in Gen.Choose(1, 4) from seed in Gen.Choose(0, 10000) select (b, r, c, seed);
        Props.Check(gen, t =>
        {
            var (b, r, c, seed) = t;
            var p = (R([b, r], (ulong)seed, -3, 3)).Softmax(-1);
            var rng = new Random(seed);
            var y = Enumerable.Range(0, b).Select(_ => (long)rng.Next(c)).ToArray();
            double ig = InformationGain.Compute(p, Tensor.FromArray(y), c).Item();
            Close.Check([InformationGainRef(p.ToArray<double>(), y, b, r, c)], [ig], 1e-12, 1e-13, "information gain");
            Assert.InRange(ig, -1e-12, Math.Min(Math.Log(c), Math.Log(r)) + 1e-12);
        }, 60);

        // Routes independent of the label carry no information; a route per class carries log C.
        var labels = Tensor.FromArray(new long[] { 0, 1, 2, 0, 1, 2 });
        var same = Tensor.FromArray(Enumerable.Range(0, 6).SelectMany(_ => new[] { 0.2, 0.5, 0.3 }).ToArray(), [6, 3]);
        Close.Check([0.0], [InformationGain.Compute(same, labels, 3).Item()], 0, 1e-15, "independent routes");
        Close.Check([Math.Log(3)], [InformationGain.Compute(labels.OneHot(3, F64), labels, 3).Item()], 1e-15, 0, "one route per class");

        var probs = R([5, 3], 71, -2, 2).Softmax(-1);
        var yl = Tensor.FromArray(new long[] { 0, 1, 1, 0, 1 });
        var r2 = GradCheck.Run(xs => InformationGain.Compute(xs[0], yl, 2), [probs]);
        Assert.True(r2.Passed, r2.ToString());

        Assert.Equal("labels", Assert.Throws<ArgumentOutOfRangeException>(() => InformationGain.Compute(probs, Tensor.FromArray(new long[] { 0, 1, 2, 0, 1 }), 2)).ParamName);
        Assert.Equal("labels", Assert.Throws<ArgumentOutOfRangeException>(() => InformationGain.Compute(probs, Tensor.FromArray(new long[] { 0, -1, 1, 0, 1 }), 2)).ParamName);
        Assert.Throws<ShapeMismatchException>(() => InformationGain.Compute(probs, Tensor.FromArray(new long[] { 0, 1 }), 2));
    }

    [Fact]
    public void Trellis_forward_runs_each_sample_along_its_argmax_route()
    {
        var net = new InformationGainTrellis(3, [1, 2, 3], 4, 2, temperature: 0.7, generator: new Generator(81), dtype: F64);
        var x = R([6, 3], 82, -2, 2);
        var o = net.Forward(x);
        Linear L(string name) => (Linear)net.NamedModules().First(m => m.Name == name).Module;
        double[] Apply(Linear lin, double[] h, bool relu) =>
            Affine(h, lin.Weight.ToArray<double>(), lin.Bias!.ToArray<double>(), 1, lin.InFeatures, lin.OutFeatures).Select(v => relu ? Math.Max(v, 0) : v).ToArray();
        var xs = x.ToArray<double>();
        var logits = new List<double>();
        for (int i = 0; i < 6; i++)
        {
            var h = Apply(L("block0_0"), xs[(i * 3)..(i * 3 + 3)], true);
            for (int l = 0; l < 2; l++)
            {
                var z = Apply(L($"router{l}"), h, false).Select(v => v / 0.7).ToArray();
                var p = z.Select(v => Math.Exp(v - z.Max())).ToArray();
                var p1 = p.Select(v => v / p.Sum()).ToArray();
                Close.Check(p1, o.RoutingProbabilities[l].ToArray<double>()[(i * p1.Length)..((i + 1) * p1.Length)], 1e-13, 1e-14, $"sample {i} router {l}");
                int route = Array.IndexOf(p1, p1.Max());
                Assert.Equal(route, o.Routes[l].ToArray<long>()[i]);
                h = Apply(L($"block{l + 1}_{route}"), h, true);
            }
            logits.AddRange(Apply(L("head"), h, false));
        }
        Close.Check(logits.ToArray(), o.Logits.ToArray<double>(), 1e-13, 1e-14, "logits along the routes");
        Assert.Equal("blocksPerLayer", Assert.Throws<ArgumentException>(() => new InformationGainTrellis(3, [2, 2], 4, 2)).ParamName);
    }

    [Fact]
    public void Trellis_learns_class_consistent_routes_on_toy_data()
    {
        // Four classes at the corners of a square (noise 0.3); a [1, 2, 2] trellis has four routes.
        var rng = new Random(91);
        const int n = 128;
        var xs = new double[n * 2]; var ys = new long[n];
        for (int i = 0; i < n; i++)
        {
            ys[i] = i % 4;
            xs[2 * i] = (ys[i] % 2 == 0 ? -1 : 1) + 0.3 * (rng.NextDouble() * 2 - 1);
            xs[2 * i + 1] = (ys[i] / 2 == 0 ? -1 : 1) + 0.3 * (rng.NextDouble() * 2 - 1);
        }
        var x = Tensor.FromArray(xs, [n, 2]).To(DType.Float32);
        var y = Tensor.FromArray(ys);
        var net = new InformationGainTrellis(2, [1, 2, 2], 8, 4, generator: new Generator(92));
        var opt = new AdamW(net.Parameters(), 0.02, weightDecay: 0);
        for (int step = 0; step < 160; step++)
        {
            opt.ZeroGrad();
            net.Loss(net.Forward(x), y).Backward();
            opt.Step();
        }
        TrellisOutput o;
        using (Autograd.NoGrad()) o = net.Forward(x);
        for (int l = 0; l < 2; l++)
        {
            var routes = o.Routes[l].ToArray<long>();
            // Each class follows one route: its most common block takes at least 95% of its samples.
            for (int c = 0; c < 4; c++)
            {
                var mine = Enumerable.Range(0, n).Where(i => ys[i] == c).Select(i => routes[i]).ToArray();
                double purity = mine.GroupBy(r => r).Max(g => g.Count()) / (double)mine.Length;
                Assert.True(purity >= 0.95, $"layer {l}, class {c}: route purity {purity}");
            }
            // With class-pure routes the information gain of the hard routes is H(route): at least H(1/4, 3/4) = 0.562
            // unless the layer collapsed onto one block (0); log 2 for a two-two split. The soft probabilities carry
            // nearly all of it.
            double hard = InformationGain.Compute(o.Routes[l].OneHot(2, DType.Float32), y, 4).Item();
            double soft = InformationGain.Compute(o.RoutingProbabilities[l], y, 4).Item();
            Assert.True(hard > 0.55, $"layer {l}: hard-route information gain {hard}");
            Assert.True(soft > 0.95 * hard, $"layer {l}: soft information gain {soft} against hard {hard}");
        }
        double acc = o.Logits.ArgMax(1).ToArray<long>().Zip(ys).Count(p => p.First == p.Second) / (double)n;
        Assert.True(acc > 0.95, $"accuracy {acc}");
    }
}
