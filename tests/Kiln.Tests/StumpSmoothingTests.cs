using Kiln.Kernels;
using Kiln.Methods.Smoothing;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>Properties of exact stump-ensemble smoothing, its certificates, the trainers and the joint l0 worst case.</summary>
public class StumpSmoothingTests
{
    // A tiny random ensemble on `features` features (shared features likely) with leaf values on the D grid or off it.
    static StumpEnsemble RandomEnsemble(Random rng, int stumps, int features, int d = 100) =>
        new(Enumerable.Range(0, stumps).Select(_ => new Stump(rng.Next(features), rng.NextDouble() * 2 - 1, rng.NextDouble(), rng.NextDouble())), d);

    static Tensor Inputs(Random rng, int n, int features, double scale = 1.5) =>
        Tensor.FromArray(Enumerable.Range(0, n * features).Select(_ => (rng.NextDouble() * 2 - 1) * scale).ToArray(), new Shape(n, features));

    static FsCheck.Gen<(int Seed, int Stumps, int Features, NoiseKind Kind)> Case =>
        from seed in TensorGen.Seed from m in G.Choose(1, 6) from f in G.Choose(1, 3) from k in G.Elements(NoiseKind.Gaussian, NoiseKind.Uniform)
        select (seed, m, f, k);

    // P[class 1] by enumerating every combination of regions of every feature, each stump evaluated on its own.
    static double BruteForceClassOne(StumpEnsemble e, double[] x, Noise noise)
    {
        var features = e.Stumps.Select(s => s.Feature).Distinct().Order().ToArray();
        var cuts = features.Select(f => e.Stumps.Where(s => s.Feature == f).Select(s => s.Threshold).Distinct().Order().ToArray()).ToArray();
        double total = 0;
        var point = (double[])x.Clone();
        void Walk(int i, double prob)
        {
            if (i == features.Length) { if (e.Sum(point) > e.Cut) total += prob; return; }
            var t = cuts[i];
            for (int k = 0; k <= t.Length; k++)
            {
                double upper = k == 0 ? 1 : noise.UpperTail(x[features[i]], t[k - 1]);
                double lower = k == t.Length ? 0 : noise.UpperTail(x[features[i]], t[k]);
                // A representative value of region k: between its bounding thresholds.
                point[features[i]] = k == 0 ? t[0] - 1 : k == t.Length ? t[^1] + 1 : (t[k - 1] + t[k]) / 2;
                Walk(i + 1, prob * (upper - lower));
            }
        }
        Walk(0, 1);
        return total;
    }

    [Fact]
    public void Exact_smoothing_equals_brute_force_enumeration_with_shared_features()
    {
        Props.Check(Case, c =>
        {
            var rng = new Random(c.Seed);
            var e = RandomEnsemble(rng, c.Stumps, c.Features);
            var noise = new Noise(c.Kind, 0.2 + rng.NextDouble());
            var x = Inputs(rng, 5, c.Features);
            var p1 = ExactSmoothing.ClassOneProbability(e, x, noise);
            var xs = x.ToArray<double>();
            for (int i = 0; i < 5; i++)
            {
                double expected = BruteForceClassOne(e, xs[(i * c.Features)..((i + 1) * c.Features)], noise);
                Assert.True(Math.Abs(expected - p1[i]) < 1e-12, $"row {i}: exact {p1[i]}, enumeration {expected}");
            }
        });
    }

    [Fact]
    public void Pdf_sums_to_one_and_matches_the_tail()
    {
        Props.Check(Case, c =>
        {
            var rng = new Random(c.Seed);
            var e = RandomEnsemble(rng, c.Stumps, c.Features);
            var noise = new Noise(c.Kind, 0.5);
            var x = Inputs(rng, 7, c.Features);
            var pdf = ExactSmoothing.Pdf(e, x, noise);
            var rows = pdf.Sum(1).ToArray<double>();
            foreach (double s in rows) Assert.Equal(1.0, s, 1e-12);
            var p1 = ExactSmoothing.ClassOneProbability(e, x, noise);
            long cut = e.Cut - ExactSmoothing.Offset(e);
            var host = pdf.ToArray<double>();
            int w = pdf.Shape[1];
            for (int i = 0; i < 7; i++)
            {
                double tail = 0;
                for (int t = 0; t < w; t++) if (t > cut) tail += host[i * w + t];
                Assert.True(Math.Abs(tail - p1[i]) < 1e-12);
            }
        });
    }

    [Fact]
    public void Region_probabilities_partition_each_meta_stump()
    {
        Props.Check(Case, c =>
        {
            var rng = new Random(c.Seed);
            var e = RandomEnsemble(rng, c.Stumps, c.Features);
            var noise = new Noise(c.Kind, 0.4);
            var x = Inputs(rng, 6, c.Features);
            var probs = ExactSmoothing.RegionProbabilities(e, x, noise).ToArray<double>();
            var upper = ExactSmoothing.UpperTails(e, x, noise).ToArray<double>();
            var l = e.Groups;
            int regions = l.Sum(g => g.Values.Length), thresholds = l.Sum(g => g.Thresholds.Length);
            var starts = new int[l.Count + 1];
            for (int g = 0; g < l.Count; g++) starts[g + 1] = starts[g] + l[g].Thresholds.Length;
            for (int i = 0; i < 6; i++)
                for (int g = 0, r = 0; g < l.Count; g++)
                {
                    double sum = 0;
                    for (int k = 0; k < l[g].Values.Length; k++, r++)
                    {
                        double expected = Reference.StumpRegionProbability(upper.AsSpan(i * thresholds, thresholds), starts, g, k);
                        Assert.Equal(expected, probs[i * regions + r], 1e-15);
                        sum += probs[i * regions + r];
                    }
                    Assert.Equal(1.0, sum, 1e-12);
                }
        });
    }

    [Fact]
    public void Vanishing_noise_gives_the_hard_ensemble()
    {
        Props.Check(Case, c =>
        {
            var rng = new Random(c.Seed);
            var e = RandomEnsemble(rng, c.Stumps, c.Features);
            var x = Inputs(rng, 20, c.Features);
            var hard = e.Predict(x).ToArray<long>();
            var xs = x.ToArray<double>();
            var certs = ExactSmoothing.Certify(e, x, new Noise(c.Kind, 1e-12));
            for (int i = 0; i < 20; i++)
            {
                Assert.Equal(hard[i], certs[i].Class);
                Assert.Equal(hard[i], e.Predict(xs.AsSpan(i * c.Features, c.Features)));
            }
        });
    }

    [Fact]
    public void One_class_ensembles_give_probability_one()
    {
        var x = Tensor.FromArray(new[] { 0.0, 1.0, -3.0, 2.0 }, new Shape(2, 2));
        var always1 = new StumpEnsemble([new Stump(0, 0.5, 0.9, 1.0), new Stump(1, 0.1, 0.7, 0.6)]);
        var always0 = new StumpEnsemble([new Stump(0, 0.5, 0.1, 0.0), new Stump(0, 0.2, 0.5, 0.3)]);
        Assert.All(ExactSmoothing.ClassOneProbability(always1, x, Noise.Gaussian(1)), p => Assert.Equal(1.0, p));
        Assert.All(ExactSmoothing.ClassOneProbability(always0, x, Noise.Uniform(1)), p => Assert.Equal(0.0, p));
        Assert.All(ExactSmoothing.ClassOneProbability(new StumpEnsemble([]), x, Noise.Uniform(1)), p => Assert.Equal(0.0, p));
    }

    [Fact]
    public void Monte_carlo_agrees_within_a_clopper_pearson_interval()
    {
        var rng = new Random(11);
        var e = RandomEnsemble(rng, 5, 2);
        var x = Inputs(rng, 4, 2, 0.5);
        foreach (var noise in new[] { Noise.Gaussian(0.7), Noise.Uniform(0.9) })
        {
            const int n = 20_000;
            var exact = ExactSmoothing.ClassOneProbability(e, x, noise);
            var counts = MonteCarloSmoothing.ClassOneCounts(e, x, noise, n, new Generator(5));
            for (int i = 0; i < exact.Length; i++)
            {
                // Two-sided 1 - 2e-6 interval: a false failure has probability about 1e-5 over the whole test.
                double lo = MonteCarloSmoothing.ClopperPearsonLower(counts[i], n, 1e-6);
                double hi = 1 - MonteCarloSmoothing.ClopperPearsonLower(n - counts[i], n, 1e-6);
                Assert.True(exact[i] >= lo && exact[i] <= hi, $"{noise} row {i}: exact {exact[i]}, sampled {counts[i]}/{n}, interval [{lo}, {hi}]");
            }
        }
    }

    [Fact]
    public void Clopper_pearson_matches_closed_forms()
    {
        // k = n: the bound is alpha^(1/n); k = 0 gives 0; it grows with k.
        Assert.Equal(Math.Pow(0.001, 1.0 / 50), MonteCarloSmoothing.ClopperPearsonLower(50, 50, 0.001), 1e-10);
        Assert.Equal(0.0, MonteCarloSmoothing.ClopperPearsonLower(0, 50, 0.001));
        Assert.True(MonteCarloSmoothing.ClopperPearsonLower(30, 50, 0.01) < MonteCarloSmoothing.ClopperPearsonLower(31, 50, 0.01));
        // I_x(1, 1) = x, and I_x(a, b) = 1 - I_{1-x}(b, a).
        Assert.Equal(0.3, MonteCarloSmoothing.RegularizedBeta(0.3, 1, 1), 1e-12);
        Assert.Equal(1 - MonteCarloSmoothing.RegularizedBeta(0.6, 5, 3), MonteCarloSmoothing.RegularizedBeta(0.4, 3, 5), 1e-12);
        Assert.Equal(Math.Log(120), MonteCarloSmoothing.LogGamma(6), 1e-12);
    }

    [Fact]
    public void Predictions_do_not_flip_inside_the_certified_radius()
    {
        Props.Check(Case, c =>
        {
            var rng = new Random(c.Seed);
            var e = RandomEnsemble(rng, c.Stumps, c.Features);
            var noise = new Noise(c.Kind, 0.3 + rng.NextDouble());
            var x = Inputs(rng, 3, c.Features);
            var certs = ExactSmoothing.Certify(e, x, noise);
            var xs = x.ToArray<double>();
            for (int i = 0; i < 3; i++)
            {
                if (certs[i].Radius <= 0) continue;
                for (int trial = 0; trial < 8; trial++)
                {
                    var dir = Enumerable.Range(0, c.Features).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
                    double norm = c.Kind == NoiseKind.Gaussian ? Math.Sqrt(dir.Sum(v => v * v)) : dir.Sum(Math.Abs);
                    double len = certs[i].Radius * (0.999 * rng.NextDouble());
                    var moved = Enumerable.Range(0, c.Features).Select(j => xs[i * c.Features + j] + dir[j] / norm * len).ToArray();
                    var after = ExactSmoothing.Certify(e, Tensor.FromArray(moved, new Shape(1, c.Features)), noise)[0];
                    Assert.Equal(certs[i].Class, after.Class);
                }
            }
        });
    }

    [Fact]
    public void Gaussian_smoothing_is_lipschitz_in_probit_space()
    {
        Props.Check(Case, c =>
        {
            var rng = new Random(c.Seed);
            var e = RandomEnsemble(rng, c.Stumps, c.Features);
            double sigma = 0.3 + rng.NextDouble();
            var noise = Noise.Gaussian(sigma);
            var x = Inputs(rng, 4, c.Features);
            var delta = Inputs(rng, 4, c.Features, 0.4);
            var p = ExactSmoothing.ClassOneProbability(e, x, noise);
            var q = ExactSmoothing.ClassOneProbability(e, x + delta, noise);
            var dn = delta.Square().Sum(1).Sqrt().ToArray<double>();
            for (int i = 0; i < 4; i++)
                foreach (var (a, b) in new[] { (p[i], q[i]), (1 - p[i], 1 - q[i]) })
                {
                    if (a <= 1e-12 || a >= 1 - 1e-12 || b <= 1e-12 || b >= 1 - 1e-12) continue;   // Phi^-1 saturates
                    // The probabilities are sums of O(1) terms, exact to about 64 ulps of 1; Phi^-1 magnifies that by
                    // 1/phi(z), which reaches 1e10 in the tails the guard above still admits.
                    double za = Reference.NormalIcdf(a), zb = Reference.NormalIcdf(b);
                    double slack = 64 * Math.Pow(2, -52) * (1 / Pdf(za) + 1 / Pdf(zb));
                    Assert.True(zb >= za - dn[i] / sigma - slack, $"row {i}: Phi^-1({b}) < Phi^-1({a}) - {dn[i]}/{sigma} (slack {slack:G3})");
                }
        });
    }

    static double Pdf(double z) => Math.Exp(-z * z / 2) / Math.Sqrt(2 * Math.PI);

    [Fact]
    public void Mle_leaf_values_maximize_the_expected_log_likelihood()
    {
        Props.Check(G.Zip(TensorGen.Seed, G.Elements(NoiseKind.Gaussian, NoiseKind.Uniform)), c =>
        {
            var (seed, kind) = c;
            var rng = new Random(seed);
            int n = 40;
            var x = Inputs(rng, n, 2, 1);
            var xs = x.ToArray<double>();
            var y = Enumerable.Range(0, n).Select(i => xs[2 * i] + 0.3 * (rng.NextDouble() - 0.5) > 0 ? 1 : 0).ToArray();
            if (y.Distinct().Count() < 2) return;
            var noise = new Noise(kind, 0.2);
            var e = MleStumps.Train(x, y, noise, new MleOptions { Balanced = false, MinImpurity = double.NegativeInfinity, BinSize = 0.05 });
            foreach (var s in e.Stumps)
            {
                double l0 = 0, l1 = 0, r0 = 0, r1 = 0;
                for (int i = 0; i < n; i++)
                {
                    double pr = noise.UpperTail(xs[2 * i + s.Feature], s.Threshold);
                    if (y[i] == 1) { r1 += pr; l1 += 1 - pr; } else { r0 += pr; l0 += 1 - pr; }
                }
                foreach (var (g, c0, c1) in new[] { (s.Left, l0, l1), (s.Right, r0, r1) })
                {
                    double L(double v) => c1 * Math.Log(Math.Clamp(v, 1e-300, 1)) + c0 * Math.Log(Math.Clamp(1 - v, 1e-300, 1));
                    Assert.Equal(c1 / (c0 + c1), g, 1e-9);
                    foreach (double alt in new[] { 0.01, 0.2, 0.5, 0.8, 0.99, g - 1e-3, g + 1e-3 })
                        if (alt > 0 && alt < 1) Assert.True(L(g) >= L(alt) - 1e-9, $"leaf {g} has lower likelihood than {alt}");
                }
            }
        });
    }

    [Fact]
    public void Greedy_l0_worst_case_equals_brute_force()
    {
        Props.Check(G.Zip(TensorGen.Seed, G.Choose(0, 3)), c =>
        {
            var (seed, r0) = c;
            var rng = new Random(seed);
            int k = rng.Next(1, 5);
            var tables = Enumerable.Range(0, k).Select(_ => (IReadOnlyDictionary<int, double>)Enumerable.Range(0, rng.Next(1, 4)).ToDictionary(i => i, _ => Math.Round(rng.NextDouble(), 2))).ToArray();
            var cat = new CategoricalStumps(Enumerable.Range(0, k).ToArray(), tables);
            var codes = Enumerable.Range(0, k).Select(j => rng.Next(0, 5)).ToArray();   // some codes unseen in training
            foreach (int label in new[] { 0, 1 })
            {
                double best = cat.Sum(codes);
                // Every assignment that changes at most r0 features, each to any known code or to an unseen one (value 1/2).
                void Walk(int j, int changed, int[] cur)
                {
                    if (j == k) { double s = cat.Sum(cur); best = label == 1 ? Math.Min(best, s) : Math.Max(best, s); return; }
                    Walk(j + 1, changed, cur);
                    if (changed == r0) return;
                    foreach (int code in cat.Values(j).Keys.Append(99))
                    {
                        var next = (int[])cur.Clone(); next[j] = code;
                        Walk(j + 1, changed + 1, next);
                    }
                }
                Walk(0, 0, codes);
                Assert.Equal(best, cat.WorstCaseSum(codes, label, r0), 1e-12);
            }
        });
    }

    [Fact]
    public void Joint_certificate_with_no_categorical_change_matches_the_shifted_distribution()
    {
        var rng = new Random(3);
        var num = RandomEnsemble(rng, 4, 2);
        var cat = new CategoricalStumps([0, 1], [new Dictionary<int, double> { [0] = 0.375, [1] = 0.625 }, new Dictionary<int, double> { [0] = 0.625, [1] = 0.375 }]);
        var x = Inputs(rng, 6, 2);
        var codes = Enumerable.Range(0, 6).Select(i => new[] { i % 2, (i / 2) % 2 }).ToArray();
        var y = Enumerable.Range(0, 6).Select(i => i % 2).ToArray();
        var noise = Noise.Gaussian(0.5);
        var joint = JointCertification.Certify(num, x, cat, codes, y, noise, 0);
        var pdf = ExactSmoothing.Pdf(num, x, noise).ToArray<double>();
        int w = pdf.Length / 6;
        for (int i = 0; i < 6; i++)
        {
            long shift = (long)Math.Round(cat.Sum(codes[i]) * 100, MidpointRounding.ToEven);
            long cut = 6 * 100 / 2;
            double p1 = 0;
            for (int t = 0; t < w; t++) if (ExactSmoothing.Offset(num) + t + shift > cut) p1 += pdf[i * w + t];
            double pA = y[i] == 1 ? p1 : 1 - p1;
            Assert.Equal(pA >= 0.5 ? y[i] : 1 - y[i], joint[i].Class);
            Assert.Equal(Math.Max(pA, 1 - pA), joint[i].PA, 1e-12);
        }
        // More categorical changes can only lower the certified probability of the label.
        var r1 = JointCertification.Certify(num, x, cat, codes, y, noise, 1);
        for (int i = 0; i < 6; i++)
            Assert.True((r1[i].Class == y[i] ? r1[i].PA : 1 - r1[i].PA) <= (joint[i].Class == y[i] ? joint[i].PA : 1 - joint[i].PA) + 1e-15);
    }

    [Fact]
    public void Meta_stumps_group_features_and_sum_leaf_levels()
    {
        var e = new StumpEnsemble([new Stump(1, 0.5, 0.2, 0.7), new Stump(0, 0.0, 0.1, 0.4), new Stump(1, -0.5, 0.3, 0.9)]);
        Assert.Equal([0, 1], e.Groups.Select(g => g.Feature));
        Assert.Equal([-0.5, 0.5], e.Groups[1].Thresholds);
        // Regions of feature 1: below -0.5 both left (30 + 20), between (90 + 20), above (90 + 70).
        Assert.Equal([50, 110, 160], e.Groups[1].Values);
        Assert.Equal([10, 40], e.Groups[0].Values);
        Assert.Equal(50 + 10, ExactSmoothing.Offset(e));
    }

    [Fact]
    public void Radius_formulas_and_clamping()
    {
        Assert.Equal(0.25 * Reference.NormalIcdf(0.9), Noise.Gaussian(0.25).Radius(0.9), 1e-14);
        Assert.Equal(2 * 2 * 0.4, Noise.Uniform(2).Radius(0.9), 1e-14);
        Assert.True(double.IsFinite(Noise.Gaussian(1).Radius(1.0)));
        Assert.Equal(Reference.NormalIcdf(1 - 1e-15), Noise.Gaussian(1).Radius(1.0), 1e-12);
    }

    [Fact]
    public void Weighted_median_radius_matches_majority_definition()
    {
        Props.Check(TensorGen.Seed, seed =>
        {
            var rng = new Random(seed);
            int k = rng.Next(1, 6);
            var radii = Enumerable.Range(0, k).Select(_ => rng.NextDouble() < 0.3 ? -1 : Math.Round(rng.NextDouble(), 1)).ToArray();
            var w = Enumerable.Range(0, k).Select(_ => rng.NextDouble() + 0.01).ToArray();
            double m = StumpCommittee.WeightedMedian(radii, w);
            double Support(double r) => Enumerable.Range(0, k).Where(i => radii[i] >= 0 && radii[i] >= r).Sum(i => w[i]);
            if (m < 0) Assert.True(Support(0) <= w.Sum() / 2 + 1e-12);
            else
            {
                Assert.True(Support(m) > w.Sum() / 2);
                foreach (double r in radii.Where(r => r > m)) Assert.True(Support(r) <= w.Sum() / 2 + 1e-12);
            }
        });
    }

    [Fact]
    public void Tree_boost_respects_the_reuse_limit_and_keeps_leaves_in_range()
    {
        var rng = new Random(4);
        int n = 60;
        var x = Inputs(rng, n, 2, 1);
        var xs = x.ToArray<double>();
        var y = Enumerable.Range(0, n).Select(i => xs[2 * i] * xs[2 * i + 1] > 0 ? 1 : 0).ToArray();
        var e = RobTreeBoost.Train(x, y, Noise.Gaussian(0.3), new TreeBoostOptions { Quantile = 0.8, Rounds = 6, MaxFeatureReuse = 2, BinSize = 0.05 });
        Assert.True(e.Count <= 2 + 6);
        foreach (var g in e.Stumps.GroupBy(s => s.Feature)) Assert.True(g.Count() <= 2 + 1, $"feature {g.Key} has {g.Count()} stumps");
        Assert.All(e.Stumps, s => Assert.InRange(s.Left, 0, 1));
    }

    [Fact]
    public void Ada_boost_committee_radius_lies_between_its_members()
    {
        var ds = SmoothingData.BreastCancer();
        var noise = Noise.Gaussian(0.25);
        var committee = RobAdaBoost.Train(ds.XTrain, ds.YTrain, noise, targetRadius: 0.3, rounds: 3);
        Assert.InRange(committee.Members.Count, 1, 3);
        Assert.All(committee.Weights, w => Assert.True(w > 0));
        var radii = committee.CertifiedRadii(ds.XTest, ds.YTest, noise);
        var members = committee.Members.Select(m => ExactSmoothing.Certify(m, ds.XTest, noise).Select((c, i) => c.Class == ds.YTest[i] ? c.Radius : -1).ToArray()).ToArray();
        for (int i = 0; i < radii.Length; i++)
        {
            Assert.True(radii[i] <= members.Max(m => m[i]) + 1e-12);
            Assert.True(radii[i] >= members.Min(m => m[i]) - 1e-12);
        }
        Assert.True(radii.Count(r => r >= 0) > radii.Length / 2, "the committee should be correct on most test points");
    }

    [Fact]
    public void Breast_cancer_mle_model_is_accurate_and_certifies()
    {
        var ds = SmoothingData.BreastCancer();
        Assert.Equal(new Shape(546, 10), ds.XTrain.Shape);
        Assert.Equal(new Shape(137, 10), ds.XTest.Shape);
        var noise = Noise.Gaussian(4);
        var e = MleStumps.Train(ds.XTrain, ds.YTrain, noise);
        var r = new CertificationResult(ExactSmoothing.Certify(e, ds.XTest, noise), ds.YTest);
        Assert.True(r.NaturalAccuracy > 0.9, $"natural accuracy {r.NaturalAccuracy}");
        Assert.True(r.CertifiedAccuracy(0.7) <= r.NaturalAccuracy);
        Assert.True(r.CertifiedAccuracy(0.7) > 0.5, $"CA(0.7) {r.CertifiedAccuracy(0.7)}");
        // The model file round-trips.
        var back = StumpEnsemble.FromJson(e.ToJson());
        Assert.Equal(e.Stumps, back.Stumps);
    }

    [Fact]
    public void Malformed_files_and_arguments_are_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Noise.Gaussian(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Noise.Uniform(double.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => new StumpEnsemble([new Stump(0, 0, 1.5, 0)]));
        Assert.Throws<InvalidDataException>(() => StumpEnsemble.FromJson("{\"format\": \"other\"}"));
        Assert.Throws<InvalidDataException>(() => StumpEnsemble.FromJson("not json"));
        Assert.Throws<InvalidDataException>(() => StumpEnsemble.FromJson("{\"format\":\"kiln-stumps-1\",\"discretization\":100,\"stumps\":[{\"feature\":0,\"threshold\":0,\"left\":2,\"right\":0}]}"));
        var e = new StumpEnsemble([new Stump(3, 0, 0.2, 0.8)]);
        Assert.Throws<ShapeMismatchException>(() => ExactSmoothing.Certify(e, Tensor.Zeros([2, 2], DType.Float64), Noise.Gaussian(1)));
        Assert.Throws<ArgumentException>(() => MleStumps.Train(Tensor.Zeros([3, 1], DType.Float64), [0, 1, 2], Noise.Gaussian(1)));
    }

    [Fact]
    public void Csv_loader_survives_fuzzed_files()
    {
        const string good = "a,b,label\n1,2,0\n3,4.5,1\n5,6,0\n7,8,1\n9,1,1\n";
        var rng = new Random(1);
        var dir = Directory.CreateTempSubdirectory("kiln-csv");
        try
        {
            for (int trial = 0; trial < 300; trial++)
            {
                var chars = good.ToCharArray().ToList();
                for (int m = rng.Next(1, 4); m > 0; m--)
                {
                    int at = rng.Next(chars.Count);
                    switch (rng.Next(3))
                    {
                        case 0: chars.RemoveAt(at); break;
                        case 1: chars.Insert(at, ",\n?x-.e9\"\r"[rng.Next(10)]); break;
                        default: chars[at] = (char)rng.Next(32, 127); break;
                    }
                }
                var path = Path.Combine(dir.FullName, $"f{trial}.csv");
                File.WriteAllText(path, new string(chars.ToArray()));
                try
                {
                    var ds = SmoothingData.FromCsv(path, null, "label", Scaling.MinMax, trainFraction: 0.6);
                    Assert.Equal(ds.XTrain.Shape[0] + ds.XTest.Shape[0], ds.YTrain.Length + ds.YTest.Length);
                }
                catch (Exception ex) when (ex is InvalidDataException or ArgumentException) { }
            }
        }
        finally { dir.Delete(true); }
        var okPath = Path.Combine(Path.GetTempPath(), $"kiln-ok-{Environment.ProcessId}.csv");
        File.WriteAllText(okPath, good);
        try
        {
            var ds = SmoothingData.FromCsv(okPath, null, "2", Scaling.MinMax, trainFraction: 0.6);
            Assert.Equal(new Shape(3, 2), ds.XTrain.Shape);
            Assert.Equal([0, 1, 0], ds.YTrain);
            Assert.Throws<ArgumentException>(() => SmoothingData.FromCsv(okPath, null, "nope", Scaling.None));
        }
        finally { File.Delete(okPath); }
    }
}
