using Kiln.Methods.Merging;
using Kiln.NN;
using Kiln.NN.Decoder;
using Kiln.Tests.TestKit;
using Xunit;
using Tree = System.Collections.Generic.IReadOnlyDictionary<string, Kiln.Tensor>;

namespace Kiln.Tests.Methods;

/// <summary>
/// Model merging, steering, probing and PEFT (issue 23): each paper's CHECK against a float64 transcription written
/// here over random parameter trees (seeded loops over random layouts, empty tensors included), degenerate cases exactly.
/// </summary>
public class MergingTests
{
    const double Rtol = Close.F64Rtol, Atol = Close.F64Atol;

    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));
    static double[] U(Random r, int n, double lo = -2, double hi = 2) => Dense.Uniform(r, n, lo, hi);

    // 1-4 tensors of rank 1-2 with extents 0-4, named so that the text before the last '.' is a block of one or two tensors.
    static (string Name, int[] Shape)[] Layout(Random r)
    {
        int count = r.Next(1, 5);
        return [.. Enumerable.Range(0, count).Select(i => ($"layers.{i / 2}.w{i % 2}", r.Next(2) == 0 ? new[] { r.Next(0, 5) } : [r.Next(0, 4), r.Next(1, 4)]))];
    }

    static Dictionary<string, Tensor> Tree(Random r, (string Name, int[] Shape)[] layout, double lo = -2, double hi = 2) =>
        layout.ToDictionary(l => l.Name, l => T(U(r, l.Shape.Aggregate(1, (a, b) => a * b), lo, hi), l.Shape));

    static double[] A(Tree t, string name) => t[name].ToDoubleArray();

    static void Same(Tree expected, Tree actual, double scale = 1)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, e) in expected) Close.Check(e, actual[name], Rtol * scale, Atol * scale, name);
    }

    static Dictionary<string, Tensor> FromArrays(Tree like, Func<string, double[]> f) => like.ToDictionary(kv => kv.Key, kv => T(f(kv.Key), kv.Value.Shape.ToArray()));

    // ---------- Parameter trees and task arithmetic ----------

    [Fact]
    public void Task_arithmetic_is_exact_arithmetic_over_parameter_trees()
    {
        for (int seed = 0; seed < 25; seed++)
        {
            var r = new Random(seed);
            var layout = Layout(r);
            var theta = Tree(r, layout); var t1 = Tree(r, layout); var t2 = Tree(r, layout); var t3 = Tree(r, layout);
            double lambda = r.NextDouble() * 2 - 0.5;
            Same(FromArrays(theta, n => A(theta, n).Select((x, i) => x + lambda * A(t1, n)[i] + lambda * A(t2, n)[i]).ToArray()),
                TaskArithmetic.Apply(theta, [t1, t2], lambda));
            var finetuned = ParameterTree.Add(theta, t1);
            Same(FromArrays(theta, n => A(theta, n).Select((x, i) => x + A(t1, n)[i] - x).ToArray()), TaskArithmetic.TaskVector(finetuned, theta));
            // Negation undoes addition.
            Same(theta, TaskArithmetic.Apply(TaskArithmetic.Apply(theta, [t1], lambda), [TaskArithmetic.Negate(t1)], lambda), 10);
            Same(FromArrays(theta, n => A(t3, n).Select((c, i) => c + (A(t2, n)[i] - A(t1, n)[i])).ToArray()), TaskArithmetic.Analogy(t1, t2, t3));
            Same(FromArrays(theta, n => A(t1, n).Select((x, i) => (x + A(t2, n)[i]) / 2).ToArray()), ParameterTree.Mean([t1, t2]));
            double dot = layout.Sum(l => A(t1, l.Name).Select((x, i) => x * A(t2, l.Name)[i]).Sum());
            Assert.Equal(dot, ParameterTree.Dot(t1, t2), 1e-12);
            Assert.Equal(Math.Sqrt(layout.Sum(l => A(t1, l.Name).Sum(x => x * x))), ParameterTree.Norm(t1), 1e-12);
        }
    }

    [Fact]
    public void Parameter_trees_reject_mismatched_layouts_naming_the_tensor()
    {
        var a = new Dictionary<string, Tensor> { ["x"] = Tensor.Zeros([2, 3], DType.Float64), ["y"] = Tensor.Zeros([4], DType.Float64) };
        var shape = new Dictionary<string, Tensor> { ["x"] = Tensor.Zeros([3, 2], DType.Float64), ["y"] = Tensor.Zeros([4], DType.Float64) };
        var names = new Dictionary<string, Tensor> { ["x"] = Tensor.Zeros([2, 3], DType.Float64), ["z"] = Tensor.Zeros([4], DType.Float64) };
        Assert.Contains("'x'", Assert.Throws<ArgumentException>(() => ParameterTree.Add(a, shape)).Message);
        var e = Assert.Throws<ArgumentException>(() => ParameterTree.Subtract(a, names));
        Assert.Contains("[y]", e.Message); Assert.Contains("[z]", e.Message);
        Assert.Throws<ArgumentException>(() => ParameterTree.Combine(a, [a], [1, 2]));
        Assert.Throws<ArgumentException>(() => ParameterTree.Combine(a, [a], [double.NaN]));
        Assert.Throws<ArgumentOutOfRangeException>(() => ParameterTree.Scale(a, double.PositiveInfinity));
        Assert.Throws<ArgumentException>(() => TaskArithmetic.Apply(a, [], 1));
    }

    // ---------- aTLAS: anisotropic scaling ----------

    static string BlockOf(string name) => name[..name.LastIndexOf('.')];

    [Fact]
    public void Anisotropic_coefficient_gradient_is_the_inner_product_with_the_block_task_vector()
    {
        for (int seed = 0; seed < 15; seed++)
        {
            var r = new Random(100 + seed);
            var layout = Layout(r);
            var theta0 = Tree(r, layout);
            int tasks = r.Next(1, 4);
            var vectors = Enumerable.Range(0, tasks).Select(_ => (Tree)Tree(r, layout)).ToList();
            var w = Tree(r, layout);
            var atlas = new AnisotropicScaling(theta0, vectors, BlockOf);
            int blocks = atlas.Blocks.Count;
            var lambda = U(r, tasks * blocks, -1, 1);
            using (Autograd.NoGrad()) atlas.Coefficients.Copy_(T(lambda, tasks, blocks));
            // L(theta) = sum w . sin(theta): dL/dtheta = w cos(theta).
            var merged = atlas.Merge();
            var loss = layout.Select(l => (merged[l.Name].Sin() * w[l.Name]).Sum()).Aggregate((x, y) => x + y);
            loss.Backward();
            var expected = new double[tasks * blocks];
            foreach (var (name, _) in layout)
            {
                int b = atlas.Blocks.ToList().IndexOf(BlockOf(name));
                var th = A(theta0, name).Select((x, i) => x + Enumerable.Range(0, tasks).Sum(t => lambda[t * blocks + b] * A(vectors[t], name)[i])).ToArray();
                for (int t = 0; t < tasks; t++)
                    expected[t * blocks + b] += th.Select((x, i) => A(w, name)[i] * Math.Cos(x) * A(vectors[t], name)[i]).Sum();
            }
            Close.Check(expected, atlas.Coefficients.Grad!.ToDoubleArray(), 1e-10, 1e-12, "dL/dlambda");
            // Equal coefficients are task arithmetic.
            double c = r.NextDouble();
            using (Autograd.NoGrad()) atlas.Coefficients.Copy_(Tensor.Full([tasks, blocks], c, DType.Float64));
            using (Autograd.NoGrad()) Same(TaskArithmetic.Apply(theta0, vectors, c), atlas.Merge(), 10);
        }
    }

    [Fact]
    public void Anisotropic_fit_recovers_per_block_coefficients_of_a_reachable_target()
    {
        var r = new Random(7);
        (string, int[])[] layout = [("a.w", [3, 2]), ("a.b", [3]), ("b.w", [4])];
        var theta0 = Tree(r, layout); var t1 = Tree(r, layout); var t2 = Tree(r, layout);
        // Target coefficients per block: a -> (0.7, -0.2), b -> (0.1, 0.5).
        var target = theta0.ToDictionary(kv => kv.Key, kv => BlockOf(kv.Key) == "a" ? kv.Value + t1[kv.Key] * 0.7 - t2[kv.Key] * 0.2 : kv.Value + t1[kv.Key] * 0.1 + t2[kv.Key] * 0.5);
        var atlas = new AnisotropicScaling(theta0, [t1, t2], BlockOf, initial: 0);
        atlas.Fit(m => layout.Select(l => (m[l.Item1] - target[l.Item1]).Square().Sum()).Aggregate((x, y) => x + y), 400, 0.05);
        Close.Check([0.7, 0.1, -0.2, 0.5], atlas.Coefficients.ToDoubleArray(), 0, 2e-3, "lambda");
        Assert.Throws<ArgumentException>(() => new AnisotropicScaling(theta0, []));
    }

    // ---------- NegMerge ----------

    [Fact]
    public void NegMerge_keeps_the_mean_where_all_signs_agree_and_zero_elsewhere()
    {
        for (int seed = 0; seed < 25; seed++)
        {
            var r = new Random(200 + seed);
            var layout = Layout(r);
            int k = r.Next(1, 5);
            // Some exact zeros: a zero never agrees (it has no sign).
            var cands = Enumerable.Range(0, k).Select(_ => (Tree)FromArrays(Tree(r, layout), n => Tree(r, layout)[n].ToDoubleArray().Select(x => r.Next(6) == 0 ? 0 : x).ToArray())).ToList();
            var merged = NegMerge.Merge(cands);
            var mask = NegMerge.ConsensusMask(cands);
            foreach (var (name, _) in layout)
            {
                int len = A(cands[0], name).Length;
                var m = new double[len]; var e = new double[len];
                for (int i = 0; i < len; i++)
                {
                    var v = cands.Select(c => A(c, name)[i]).ToArray();
                    bool agree = v.All(x => x > 0) || v.All(x => x < 0);
                    m[i] = agree ? 1 : 0;
                    e[i] = agree ? v.Sum() / k : 0;
                }
                Assert.Equal(m, A(mask, name));
                Close.Check(e, A(merged, name), Rtol, Atol, name);
            }
            var theta = Tree(r, layout);
            double lambda = r.NextDouble() * 2;
            Same(FromArrays(theta, n => A(theta, n).Select((x, i) => x - lambda * A(merged, n)[i]).ToArray()), NegMerge.Unlearn(theta, cands, lambda));
            // One candidate: the merge is that vector, exactly.
            var one = NegMerge.Merge([cands[0]]);
            foreach (var (name, _) in layout) Assert.Equal(A(cands[0], name), A(one, name));
        }
        Assert.Throws<ArgumentException>(() => NegMerge.Merge([]));
    }

    // ---------- TCAV ----------

    // A two-hidden-layer tanh net x [n, 4] -> a = tanh(x W1^T + b1) [n, 8] -> tanh(a W2^T + b2) -> logit; the probed layer is a.
    sealed record Net(Tensor W1, Tensor B1, Tensor W2, Tensor B2, Tensor W3, Tensor B3)
    {
        public Tensor Acts(Tensor x) => Tensor.Linear(x, W1, B1).Tanh();
        public Tensor Head(Tensor a) => (Tensor.Linear(a, W2, B2).Tanh() * W3).Sum(1) + B3;
    }

    static double[] HeadF64(double[] w2, double[] b2, double[] w3, double b3, double[] a, int n, int d, int h)
    {
        var y = new double[n];
        for (int i = 0; i < n; i++)
        {
            y[i] = b3;
            for (int j = 0; j < h; j++)
            {
                double z = b2[j];
                for (int c = 0; c < d; c++) z += w2[j * d + c] * a[i * d + c];
                y[i] += w3[j] * Math.Tanh(z);
            }
        }
        return y;
    }

    [Fact]
    public void Tcav_directional_derivative_matches_central_finite_differences()
    {
        for (int seed = 0; seed < 10; seed++)
        {
            var r = new Random(300 + seed);
            int n = r.Next(1, 6), d = r.Next(1, 6), h = r.Next(1, 5);
            double[] w2 = U(r, h * d, -1, 1), b2 = U(r, h, -1, 1), w3 = U(r, h, -1, 1), a = U(r, n * d), v = U(r, d);
            double b3 = r.NextDouble();
            var net = new Net(T([0.0], 1, 1), T([0.0], 1), T(w2, h, d), T(b2, h), T(w3, h), T([b3], 1));
            var s = Tcav.DirectionalDerivatives(net.Head, T(a, n, d), T(v, d));
            const double eps = 1e-5;
            var plus = HeadF64(w2, b2, w3, b3, a.Select((x, i) => x + eps * v[i % d]).ToArray(), n, d, h);
            var minus = HeadF64(w2, b2, w3, b3, a.Select((x, i) => x - eps * v[i % d]).ToArray(), n, d, h);
            Close.Check(plus.Select((p, i) => (p - minus[i]) / (2 * eps)).ToArray(), s, 1e-7, 1e-8, "S_k");
        }
        Assert.Throws<ShapeMismatchException>(() => Tcav.DirectionalDerivatives(x => x.Sum(1), Tensor.Zeros([3, 2], DType.Float64), Tensor.Zeros([3], DType.Float64)));
    }

    static Tensor Gaussian(Random r, int n, int d, double mean0 = double.NaN)
    {
        var v = new double[n * d];
        for (int i = 0; i < v.Length; i++)
        {
            double g = Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());
            v[i] = i % d == 0 && !double.IsNaN(mean0) ? mean0 + 0.3 * g : g;
        }
        return T(v, n, d);
    }

    [Fact]
    public void Tcav_finds_a_planted_concept_and_its_opposite_and_random_cavs_average_near_one_half()
    {
        // Train the net on labels y = [x0 + 0.5 x1 > 0]: "x0 is large" is a concept the positive class depends on.
        var r = new Random(11);
        int n = 256, d = 4, h = 8;
        var x = Gaussian(r, n, d);
        var xs = x.ToDoubleArray();
        var y = T([.. Enumerable.Range(0, n).Select(i => xs[i * d] + 0.5 * xs[i * d + 1] > 0 ? 1.0 : 0.0)], n);
        var ps = new[] { new Parameter(T(U(r, h * d, -0.5, 0.5), h, d)), new Parameter(Tensor.Zeros([h], DType.Float64)), new Parameter(T(U(r, h * h, -0.5, 0.5), h, h)),
            new Parameter(Tensor.Zeros([h], DType.Float64)), new Parameter(T(U(r, h, -0.5, 0.5), h)), new Parameter(Tensor.Zeros([1], DType.Float64)) };
        var net = new Net(ps[0], ps[1], ps[2], ps[3], ps[4], ps[5]);
        var opt = new Adam(ps, 0.03);
        for (int s = 0; s < 300; s++)
        {
            var z = net.Head(net.Acts(x));
            (z.Softplus() - y * z).Mean().Backward();
            opt.Step(); opt.ZeroGrad();
        }
        var fresh = Gaussian(r, 400, d).ToDoubleArray();
        var positives = Enumerable.Range(0, 400).Where(i => fresh[i * d] + 0.5 * fresh[i * d + 1] > 0).ToArray();
        var cls = net.Acts(T([.. positives.SelectMany(i => fresh.AsSpan(i * d, d).ToArray())], positives.Length, d));
        double Score(Tensor concept, Tensor random) => Tcav.Score(Tcav.DirectionalDerivatives(net.Head, cls, Tcav.FitCav(net.Acts(concept), net.Acts(random)).Direction));
        var conceptScores = Enumerable.Range(0, 10).Select(_ => Score(Gaussian(r, 50, d, 2), Gaussian(r, 50, d))).ToArray();
        var oppositeScores = Enumerable.Range(0, 10).Select(_ => Score(Gaussian(r, 50, d, -2), Gaussian(r, 50, d))).ToArray();
        var randomScores = Enumerable.Range(0, 30).Select(_ => Score(Gaussian(r, 50, d), Gaussian(r, 50, d))).ToArray();
        Assert.True(conceptScores.Average() > 0.9, $"concept TCAV {conceptScores.Average()}");
        Assert.True(oppositeScores.Average() < 0.1, $"opposite concept TCAV {oppositeScores.Average()}");
        Assert.InRange(randomScores.Average(), 0.3, 0.7);
        var (t, p) = Tcav.TTest(conceptScores, randomScores);
        Assert.True(t > 0 && p < 1e-3, $"t {t}, p {p}");
        // Two random samples of random-CAV scores are not told apart.
        Assert.True(Tcav.TTest(randomScores[..15], randomScores[15..]).P > 0.01);
    }

    // Gamma at positive integers and half-integers.
    static double Gamma(double z) => z == 0.5 ? Math.Sqrt(Math.PI) : z == 1 ? 1 : (z - 1) * Gamma(z - 1);

    [Fact]
    public void Tcav_t_test_matches_the_pooled_students_t_by_numeric_integration()
    {
        for (int seed = 0; seed < 8; seed++)
        {
            var r = new Random(400 + seed);
            var a = U(r, r.Next(2, 8), 0, 1); var b = U(r, r.Next(2, 8), 0.2, 1);
            int n1 = a.Length, n2 = b.Length, df = n1 + n2 - 2;
            double m1 = a.Average(), m2 = b.Average();
            double sp = (a.Sum(x => (x - m1) * (x - m1)) + b.Sum(x => (x - m2) * (x - m2))) / df;
            double t = (m1 - m2) / Math.Sqrt(sp * (1.0 / n1 + 1.0 / n2));
            double c = Gamma((df + 1) / 2.0) / (Math.Sqrt(df * Math.PI) * Gamma(df / 2.0));
            // p = 1 - 2 * integral_0^|t| of the t density (Simpson).
            int steps = 20000; double hstep = Math.Abs(t) / steps, integral = 0;
            for (int i = 0; i <= steps; i++)
            {
                double f = c * Math.Pow(1 + Math.Pow(i * hstep, 2) / df, -(df + 1) / 2.0);
                integral += f * (i == 0 || i == steps ? 1 : i % 2 == 1 ? 4 : 2);
            }
            var (tt, p) = Tcav.TTest(a, b);
            Assert.Equal(t, tt, 1e-12);
            Assert.Equal(1 - 2 * integral * hstep / 3, p, 1e-9);
        }
        Assert.Throws<ArgumentException>(() => Tcav.TTest([0.5], [0.1, 0.2]));
    }

    // ---------- CLOVER ----------

    static double[] Rows(double[] w, int start, int count, int cols) => w.AsSpan(start * cols, count * cols).ToArray();
    static double[] Cols(double[] w, int rows, int cols, int start, int count) =>
        [.. Enumerable.Range(0, rows * count).Select(i => w[(i / count) * cols + start + i % count])];

    // Per head: logits X Wq_h^T (X Wk_h^T)^T [t, t] and output P (X Wv_h^T) Wo_h^T [t, d], in float64.
    static (double[][] Logits, double[][] Outputs) Heads(double[] q, double[] k, double[] v, double[] o, double[] x, double[] p, int heads, int hd, int d, int t)
    {
        var logits = new double[heads][]; var outs = new double[heads][];
        for (int h = 0; h < heads; h++)
        {
            var qh = Dense.Mul(x, Dense.T(Rows(q, h * hd, hd, d), hd, d), t, d, hd);
            var kh = Dense.Mul(x, Dense.T(Rows(k, h * hd, hd, d), hd, d), t, d, hd);
            logits[h] = Dense.Mul(qh, Dense.T(kh, t, hd), t, hd, t);
            var vh = Dense.Mul(x, Dense.T(Rows(v, h * hd, hd, d), hd, d), t, d, hd);
            outs[h] = Dense.Mul(Dense.Mul(p, vh, t, t, hd), Dense.T(Cols(o, d, heads * hd, h * hd, hd), d, hd), t, hd, d);
        }
        return (logits, outs);
    }

    [Fact]
    public void Clover_folding_keeps_attention_logits_and_head_outputs_and_pruning_zero_directions_changes_nothing()
    {
        for (int seed = 0; seed < 12; seed++)
        {
            var r = new Random(500 + seed);
            int heads = r.Next(1, 4), hd = r.Next(2, 4), d = r.Next(hd, 8), t = r.Next(1, 5);
            double[] q = U(r, heads * hd * d), k = U(r, heads * hd * d), v = U(r, heads * hd * d), o = U(r, d * heads * hd), x = U(r, t * d);
            // Head 0's last query row is a combination of its first two: its query-key product loses one rank.
            for (int c = 0; c < d; c++) q[(hd - 1) * d + c] = Enumerable.Range(0, hd - 1).Sum(j => (j % 2 == 0 ? 0.5 + j : -1.5 - j) * q[j * d + c]);
            var p = Enumerable.Range(0, t * t).Select(_ => r.NextDouble()).ToArray();
            for (int i = 0; i < t; i++) { double s = p.Skip(i * t).Take(t).Sum(); for (int j = 0; j < t; j++) p[i * t + j] /= s; }
            var (logits, outs) = Heads(q, k, v, o, x, p, heads, hd, d, t);

            var dec = Clover.Decompose(T(q, heads * hd, d), T(k, heads * hd, d), T(v, heads * hd, d), T(o, d, heads * hd), heads);
            foreach (var c in dec)
                foreach (var (m, rows) in new[] { (c.QkU.T, hd), (c.QkVh, hd), (c.VoU.T, hd), (c.VoVh, hd) })
                    Close.Check(Dense.Eye(rows), m.MatMul(m.T).ToDoubleArray(), 0, 1e-10, "orthonormal directions");
            void Check(Tensor[] f, double tol)
            {
                var (l2, o2) = Heads(f[0].ToDoubleArray(), f[1].ToDoubleArray(), f[2].ToDoubleArray(), f[3].ToDoubleArray(), x, p, heads, hd, d, t);
                for (int h = 0; h < heads; h++) { Close.Check(logits[h], l2[h], 1e-9, tol, "logits"); Close.Check(outs[h], o2[h], 1e-9, tol, "head output"); }
            }
            var (fq, fk, fv, fo) = Clover.Fold(dec, DType.Float64);
            Check([fq, fk, fv, fo], 1e-9);
            // Head 0 has a zero query-key singular value: pruning it (and only it) changes nothing.
            var ranks = Clover.RanksAbove(dec.Select(c => c.QkS), 1e-9);
            Assert.Equal(hd - 1, ranks[0]);
            Assert.All(ranks.Skip(1), x => Assert.Equal(hd, x));
            var (pq, pk, pv, po) = Clover.Fold(dec, DType.Float64, qkRank: ranks);
            Check([pq, pk, pv, po], 1e-9);
            Assert.Equal(0, pq.Narrow(0, hd - 1, 1).Abs().Sum().Item());
            Assert.Equal(2L * d, Clover.RemovedWeights(d, ranks.Sum(x => hd - x)));
            // Pruning a nonzero direction does change the logits.
            var (bq, bk, _, _) = Clover.Fold(dec, DType.Float64, qkRank: [.. ranks.Select(x => x - 1)]);
            var broken = Heads(bq.ToDoubleArray(), bk.ToDoubleArray(), v, o, x, p, heads, hd, d, t).Logits;
            Assert.True(Dense.MaxDiff(logits[0], broken[0]) > 1e-6);
        }
        Assert.Throws<ShapeMismatchException>(() => Clover.Decompose(Tensor.Zeros([4, 3]), Tensor.Zeros([2, 3]), Tensor.Zeros([4, 3]), Tensor.Zeros([3, 4]), 2));
        Assert.Throws<ArgumentException>(() => Clover.Fold(Clover.Decompose(Tensor.Ones([4, 3]), Tensor.Ones([4, 3]), Tensor.Ones([4, 3]), Tensor.Ones([3, 4]), 2), qkRank: [3, 0]));
    }

    static DecoderConfig TinyConfig(int kvHeads = 2) => new()
    {
        ModelType = "llama", VocabSize = 32, HiddenSize = 8, IntermediateSize = 12, Layers = 2, Heads = 2, KvHeads = kvHeads, HeadDim = 4, MaxPositions = 16,
    };

    [Fact]
    public void Clover_value_output_orthogonalization_of_a_decoder_leaves_its_logits_unchanged()
    {
        var config = TinyConfig();
        var weights = DecoderWeights.Init(config, new Generator(3), std: 0.4, dtype: DType.Float64);
        var ids = Tensor.FromArray(new long[] { 1, 5, 9, 2, 30, 7 }, new Shape(1, 6));
        var reference = new DecoderModel(config, weights).Forward(ids);
        var orth = Clover.OrthogonalizeValueOutput(config, weights);
        Close.Check(reference, new DecoderModel(config, orth).Forward(ids), 1e-10, 1e-12, "logits");
        Assert.True(Dense.MaxDiff(orth["model.layers.0.self_attn.v_proj.weight"].ToDoubleArray(), weights["model.layers.0.self_attn.v_proj.weight"].ToDoubleArray()) > 1e-3);
        Assert.Throws<NotSupportedException>(() => Clover.OrthogonalizeValueOutput(TinyConfig(1), DecoderWeights.Init(TinyConfig(1), new Generator(3), dtype: DType.Float64)));
    }

    // ---------- Backward-compatible weight interpolation ----------

    [Fact]
    public void Weight_interpolation_endpoints_unit_importances_and_negative_flips()
    {
        for (int seed = 0; seed < 20; seed++)
        {
            var r = new Random(600 + seed);
            var layout = Layout(r);
            var oldW = Tree(r, layout); var newW = Tree(r, layout);
            var fo = Tree(r, layout, 0.1, 3); var fn = Tree(r, layout, 0.1, 3);
            foreach (var (name, _) in layout)
            {
                Assert.Equal(A(oldW, name), A(WeightInterpolation.Interpolate(oldW, newW, 0), name));
                Assert.Equal(A(newW, name), A(WeightInterpolation.Interpolate(oldW, newW, 1), name));
            }
            double alpha = r.NextDouble();
            Same(FromArrays(oldW, n => A(oldW, n).Select((x, i) => (1 - alpha) * x + alpha * A(newW, n)[i]).ToArray()), WeightInterpolation.Interpolate(oldW, newW, alpha));
            Same(FromArrays(oldW, n => A(oldW, n).Select((x, i) =>
                ((1 - alpha) * A(fo, n)[i] * x + alpha * A(fn, n)[i] * A(newW, n)[i]) / ((1 - alpha) * A(fo, n)[i] + alpha * A(fn, n)[i])).ToArray()),
                WeightInterpolation.ImportanceInterpolate(oldW, newW, fo, fn, alpha));
            var ones = FromArrays(oldW, n => Enumerable.Repeat(1.0, A(oldW, n).Length).ToArray());
            Same(WeightInterpolation.Interpolate(oldW, newW, alpha), WeightInterpolation.ImportanceInterpolate(oldW, newW, ones, ones, alpha), 10);
            var oc = Enumerable.Range(0, 30).Select(_ => r.Next(2) == 0).ToArray(); var nc = Enumerable.Range(0, 30).Select(_ => r.Next(2) == 0).ToArray();
            int flips = oc.Zip(nc).Count(z => z.First && !z.Second);
            Assert.Equal((flips, flips / 30.0), WeightInterpolation.NegativeFlips(oc, nc));
        }
        var w = new Dictionary<string, Tensor> { ["x"] = T([1.0, 2], 2) };
        var neg = new Dictionary<string, Tensor> { ["x"] = T([1.0, -1], 2) };
        Assert.Throws<ArgumentOutOfRangeException>(() => WeightInterpolation.Interpolate(w, w, 1.5));
        Assert.Throws<ArgumentException>(() => WeightInterpolation.ImportanceInterpolate(w, w, neg, w, 0.5));
        Assert.Throws<ArgumentException>(() => WeightInterpolation.NegativeFlips([true], [true, false]));
    }

    // ---------- ATM ----------

    [Fact]
    public void Atm_sum_of_one_step_task_vectors_is_one_gradient_step_on_the_summed_loss()
    {
        for (int seed = 0; seed < 12; seed++)
        {
            var r = new Random(700 + seed);
            var layout = Layout(r);
            var theta = Tree(r, layout);
            int tasks = r.Next(1, 4);
            // L_t(theta) = sum a_t theta^2 / 2 + b_t sin(theta): gradient a_t theta + b_t cos(theta).
            var a = Enumerable.Range(0, tasks).Select(_ => Tree(r, layout, 0, 2)).ToArray();
            var b = Enumerable.Range(0, tasks).Select(_ => Tree(r, layout)).ToArray();
            Tensor Loss(int t, Tree th) => layout.Select(l => (a[t][l.Name] * th[l.Name].Square() * 0.5 + b[t][l.Name] * th[l.Name].Sin()).Sum()).Aggregate((x, y) => x + y);
            double eta = 0.1 + r.NextDouble() * 0.2;
            for (int t = 0; t < tasks; t++)
                Same(FromArrays(theta, n => A(theta, n).Select((x, i) => x - eta * (A(a[t], n)[i] * x + A(b[t], n)[i] * Math.Cos(x))).ToArray()),
                    Atm.GradientStep(theta, th => Loss(t, th), eta));
            var fineTune = Enumerable.Range(0, tasks).Select(t => (Func<Tree, Tree>)(th => Atm.GradientStep(th, w => Loss(t, w), eta))).ToList();
            var summed = Atm.GradientStep(theta, th => Enumerable.Range(0, tasks).Select(t => Loss(t, th)).Aggregate((x, y) => x + y), eta);
            Same(summed, Atm.Round(theta, fineTune, 1), 100);
            var mean = Atm.GradientStep(theta, th => Enumerable.Range(0, tasks).Select(t => Loss(t, th)).Aggregate((x, y) => x + y) * (1.0 / tasks), eta);
            Same(mean, Atm.Round(theta, fineTune, 1.0 / tasks), 100);
            // A round with a longer budget is task arithmetic of that budget's task vectors.
            var longer = Enumerable.Range(0, tasks).Select(t => (Func<Tree, Tree>)(th => Atm.GradientStep(Atm.GradientStep(th, w => Loss(t, w), eta), w => Loss(t, w), eta))).ToList();
            var vectors = longer.Select(f => (Tree)TaskArithmetic.TaskVector(f(theta), theta)).ToList();
            Same(TaskArithmetic.Apply(theta, vectors, 0.5), Atm.Round(theta, longer, 0.5));
            Same(Atm.Round(Atm.Round(theta, fineTune, 0.5), fineTune, 0.5), Atm.Run(theta, fineTune, 0.5, 2));
        }
        Assert.Throws<ArgumentException>(() => Atm.Round(new Dictionary<string, Tensor>(), [], 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Atm.GradientStep(new Dictionary<string, Tensor> { ["x"] = T([1.0], 1) }, t => t["x"].Sum(), 0));
    }

    // ---------- Robust weight signatures ----------

    [Fact]
    public void Robust_weight_signatures_round_trip_compose_additively_and_quantise_within_half_a_step()
    {
        for (int seed = 0; seed < 20; seed++)
        {
            var r = new Random(800 + seed);
            var layout = Layout(r);
            var std = Tree(r, layout); var rob1 = Tree(r, layout); var rob2 = Tree(r, layout);
            string kept = layout[0].Name;
            var s1 = RobustWeightSignature.Extract(rob1, std, n => n == kept);
            Assert.Equal([kept], s1.Keys);
            var s2 = RobustWeightSignature.Extract(rob2, std, n => n == kept);
            var patched = RobustWeightSignature.Patch(std, [s1], [1]);
            foreach (var (name, _) in layout)
                if (name == kept) Close.Check(A(rob1, name), A(patched, name), Rtol, 10 * Atol, name);
                else Assert.Equal(A(std, name), A(patched, name));
            double c1 = r.NextDouble(), c2 = r.NextDouble() - 0.5;
            var both = RobustWeightSignature.Patch(std, [s1, s2], [c1, c2]);
            Close.Check(A(RobustWeightSignature.Patch(RobustWeightSignature.Patch(std, [s1], [c1]), [s2], [c2]), kept), A(both, kept), Rtol, 10 * Atol, "composition");
            Close.Check(A(std, kept).Select((x, i) => x + c1 * A(s1, kept)[i] + c2 * A(s2, kept)[i]).ToArray(), A(both, kept), Rtol, 10 * Atol, "additive");
            int bits = r.Next(1, 9);
            var all = RobustWeightSignature.Extract(rob1, std);
            var q = RobustWeightSignature.Quantize(all, bits);
            var deq = q.Dequantize();
            foreach (var (name, _) in layout)
            {
                var x = A(all, name);
                double step = x.Length == 0 ? 0 : (x.Max() - x.Min()) / ((1 << bits) - 1);
                Assert.Equal(step, q.Steps[name], 1e-15);
                Assert.True(Dense.MaxDiff(x, A(deq, name)) <= step / 2 * (1 + 1e-9) + 1e-15, $"{name}: {bits}-bit error {Dense.MaxDiff(x, A(deq, name))} over step/2 {step / 2}");
            }
        }
        var constant = new Dictionary<string, Tensor> { ["x"] = T([0.25, 0.25, 0.25], 3) };
        Assert.Equal([0.25, 0.25, 0.25], RobustWeightSignature.Quantize(constant, 2).Dequantize()["x"].ToDoubleArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => RobustWeightSignature.Quantize(constant, 0));
        Assert.Throws<ArgumentException>(() => RobustWeightSignature.Extract(constant, constant, _ => false));
    }

    // ---------- LoRA ----------

    [Fact]
    public void Lora_forward_merge_back_and_gradients_match_the_float64_transcription()
    {
        for (int seed = 0; seed < 12; seed++)
        {
            var r = new Random(900 + seed);
            int inF = r.Next(1, 6), outF = r.Next(1, 6), rank = r.Next(1, Math.Min(inF, outF) + 1), n = r.Next(1, 5);
            double alpha = 0.5 + r.NextDouble() * 4, s = alpha / rank;
            double[] w = U(r, outF * inF), bias = U(r, outF), x = U(r, n * inF), bm = U(r, outF * rank);
            var lora = new LoraLinear(T(w, outF, inF), T(bias, outF), rank, alpha, new Generator((ulong)seed));
            Assert.Equal(["lora_A", "lora_B"], lora.NamedParameters().Select(p => p.Name));
            var baseOut = Dense.Mul(x, Dense.T(w, outF, inF), n, inF, outF).Select((y, i) => y + bias[i % outF]).ToArray();
            // B starts at zero: the adapter is the base layer, exactly.
            Close.Check(baseOut, lora.Forward(T(x, n, inF)).ToDoubleArray(), Rtol, Atol, "initial forward");
            using (Autograd.NoGrad()) lora.B.Copy_(T(bm, outF, rank));
            var am = lora.A.ToDoubleArray();
            var xa = Dense.Mul(x, Dense.T(am, rank, inF), n, inF, rank);
            var expected = Dense.Add(baseOut, Dense.Mul(xa, Dense.T(bm, outF, rank), n, rank, outF), s);
            var y = lora.Forward(T(x, n, inF));
            Close.Check(expected, y.ToDoubleArray(), Rtol, Atol, "forward");
            Close.Check(Dense.Add(w, Dense.Mul(bm, am, outF, rank, inF), s), lora.MergedWeight().ToDoubleArray(), Rtol, Atol, "W + s B A");
            Close.Check(expected, Tensor.Linear(T(x, n, inF), lora.MergedWeight(), lora.Bias).ToDoubleArray(), Rtol, Atol, "merged forward");
            // With upstream gradient G: dB = s G^T (x A^T), dA = s (G B)^T x.
            var g = U(r, n * outF);
            (y * T(g, n, outF)).Sum().Backward();
            Close.Check(Dense.Scale(Dense.Mul(Dense.T(g, n, outF), xa, outF, n, rank), s), lora.B.Grad!.ToDoubleArray(), Rtol, Atol, "dB");
            Close.Check(Dense.Scale(Dense.Mul(Dense.T(Dense.Mul(g, bm, n, outF, rank), n, rank), x, rank, n, inF), s), lora.A.Grad!.ToDoubleArray(), Rtol, Atol, "dA");
            var check = GradCheck.Run(xs => lora.Forward(xs[0]), [T(x, n, inF)]);
            Assert.True(check.Passed, check.ToString());
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => new LoraLinear(Tensor.Zeros([3, 2]), null, 3, 1));
        Assert.Throws<ShapeMismatchException>(() => new LoraLinear(Tensor.Zeros([3, 2]), Tensor.Zeros([2]), 1, 1));
    }

    // ---------- Activation steering ----------

    [Fact]
    public void Steering_adds_the_direction_to_the_layer_output()
    {
        var r = new Random(13);
        var lin = new Linear(3, 4, dtype: DType.Float64, generator: new Generator(2));
        var x = T(U(r, 6), 2, 3); var v = T(U(r, 4), 4);
        var plain = lin.Forward(x).ToDoubleArray();
        using (Steering.AddTo(lin, v, 1.5))
            Close.Check(plain.Select((p, i) => p + 1.5 * v.ToDoubleArray()[i % 4]).ToArray(), lin.Call(x).ToDoubleArray(), Rtol, Atol, "hooked");
        Assert.Equal(plain, lin.Call(x).ToDoubleArray());
        double[] pos = U(r, 12), neg = U(r, 8);
        Close.Check(Enumerable.Range(0, 4).Select(j => (pos[j] + pos[4 + j] + pos[8 + j]) / 3 - (neg[j] + neg[4 + j]) / 2).ToArray(),
            Steering.MeanDifference(T(pos, 3, 4), T(neg, 2, 4)).ToDoubleArray(), Rtol, Atol, "mean difference");

        // On the decoder: steering the last layer's output h gives final hidden states RmsNorm(h + s v) * g.
        var config = TinyConfig();
        var weights = DecoderWeights.Init(config, new Generator(5), std: 0.3, normJitter: 0.2, dtype: DType.Float64);
        var model = new DecoderModel(config, weights);
        var ids = Tensor.FromArray(new long[] { 3, 1, 4, 1, 5 }, new Shape(1, 5));
        var dir = U(r, config.HiddenSize);
        var runner = new SteeringRunner(config.Layers - 1, T(dir, config.HiddenSize), 2.0);
        var steered = model.Hidden(ids, runner: runner).ToDoubleArray();
        var h = runner.Capture!.ToDoubleArray();
        var gain = weights["model.norm.weight"].ToDoubleArray();
        int dm = config.HiddenSize;
        var expected = new double[h.Length];
        for (int i = 0; i < h.Length / dm; i++)
        {
            var row = Enumerable.Range(0, dm).Select(j => h[i * dm + j] + 2.0 * dir[j]).ToArray();
            double rms = Math.Sqrt(row.Sum(z => z * z) / dm + config.RmsNormEps);
            for (int j = 0; j < dm; j++) expected[i * dm + j] = row[j] / rms * gain[j];
        }
        Close.Check(expected, steered, 1e-10, 1e-12, "steered hidden");
        Close.Check(model.Hidden(ids), model.Hidden(ids, runner: new SteeringRunner(0, T(dir, dm), 0)), 1e-12, 1e-12, "scale 0");
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Hidden(ids, runner: new SteeringRunner(config.Layers, null)));
        Assert.Throws<ShapeMismatchException>(() => model.Hidden(ids, runner: new SteeringRunner(0, T([1.0], 1))));
    }

    // ---------- The experiment ----------

    [Fact]
    public void Teacher_forced_exact_match_equals_greedy_decoding()
    {
        // A tiny decoder trained briefly on "count" emits a digit and a newline, right or wrong.
        var task = Kiln.Methods.PolicyOptimization.GeneratedTask.Get("count");
        var config = new MergeOptions().Config with { HiddenSize = 32, IntermediateSize = 64, Layers = 1, HeadDim = 8 };
        var weights = LmTrainer.Train(config, task.Corpus(new Random(1), 400), new LmTrainOptions { Steps = 60, Batch = 8, Context = 32, Warmup = 5, LearningRate = 1e-2 });
        var model = new DecoderModel(config, weights);
        var rng = new Random(2);
        var samples = new List<(string Prompt, string Answer)>();
        for (int i = 0; i < 12; i++)
        {
            var (p, a) = task.Sample(rng);
            var greedy = new string(model.Generate([.. p.Select(c => (int)c)], 4, stop: '\n').Select(t => (char)t).ToArray());
            // The true answer, the model's own greedy answer (cut at the newline) and a wrong one.
            samples.AddRange([(p, a), (p, greedy.Split('\n')[0]), (p, "x")]);
        }
        var correct = MergeExperiment.Correct(model, samples);
        var expected = samples.Select(s => new string(model.Generate([.. s.Prompt.Select(c => (int)c)], s.Answer.Length + 1, stop: '\n').Select(t => (char)t).ToArray()) == s.Answer + "\n").ToArray();
        Assert.Equal(expected, correct);
        Assert.Contains(true, correct);
        Assert.Contains(false, correct);
    }
}

/// <summary>`kiln merge` with tiny settings: one JSON object with a row per model.</summary>
[Collection(nameof(SerialCollection))]
public class MergeVerbTests
{
    [Fact]
    public void Merge_verb_prints_one_json_object_with_a_row_per_model()
    {
        var r = CliRun.JsonObject(Kiln.Cli.MergeVerb.Build(), ["merge", "--tasks", "count,sort", "--base-steps", "20", "--finetune-steps", "8", "--eval", "10", "--scales", "0.5", "--atlas-steps", "2", "--atm-rounds", "2", "--json"]);
        Assert.Equal(["count", "sort"], r.GetProperty("tasks").EnumerateArray().Select(x => x.GetString()));
        var rows = r.GetProperty("rows").EnumerateArray().ToList();
        Assert.Equal(["base", "ft-count", "ft-sort", "ta-0.5", "average", "negmerge", "atlas", "atm"], rows.Select(x => x.GetProperty("model").GetString()));
        foreach (var row in rows)
        {
            var acc = row.GetProperty("accuracies").EnumerateArray().Select(x => x.GetDouble()).ToArray();
            Assert.Equal(2, acc.Length);
            Assert.All(acc, a => Assert.InRange(a, 0, 1));
            Assert.Equal(acc.Average(), row.GetProperty("mean").GetDouble(), 1e-12);
        }
        Assert.Equal(Kiln.Cli.Cli.BadUsage, CliRun.Capture(Kiln.Cli.MergeVerb.Build(), ["merge", "--tasks", "nope", "--json"]).Code);
        Assert.Equal(Kiln.Cli.Cli.BadUsage, CliRun.Capture(Kiln.Cli.MergeVerb.Build(), ["merge", "--scales", "x", "--json"]).Code);
    }
}
