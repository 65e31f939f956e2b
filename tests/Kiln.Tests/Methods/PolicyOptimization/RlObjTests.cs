using Kiln.Methods.PolicyOptimization;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests.Methods;

/// <summary>
/// Issue 23, rl-obj share: entropy dynamics and entropy-discriminator clipping, STEER, LLDS, REDI, AlignDistil, Ra-DPO,
/// the general preference model, Tree-OPO and controlled decoding. Each CHECK against a float64 transcription of the
/// paper's equations written here, on a tabular softmax policy (logits z, p = softmax(z)) where gradients are exact.
/// </summary>
public class RlObjTests
{
    // ---------- float64 transcriptions ----------

    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));

    static double[] LogSoftmax(ReadOnlySpan<double> z)
    {
        double m = double.NegativeInfinity;
        foreach (var x in z) m = Math.Max(m, x);
        double s = 0;
        foreach (var x in z) s += Math.Exp(x - m);
        double lse = m + Math.Log(s);
        var o = new double[z.Length];
        for (int k = 0; k < z.Length; k++) o[k] = z[k] - lse;
        return o;
    }

    static double[] Softmax(ReadOnlySpan<double> z) => LogSoftmax(z).Select(Math.Exp).ToArray();

    static double Entropy(ReadOnlySpan<double> z) => -LogSoftmax(z).Sum(l => Math.Exp(l) * l);

    static double Softplus(double x) => Math.Max(x, 0) + Math.Log(1 + Math.Exp(-Math.Abs(x)));

    static double[] GrpoAdvantages(double[] r, int g)
    {
        var a = new double[r.Length];
        for (int g0 = 0; g0 < r.Length; g0 += g)
        {
            double mean = r.Skip(g0).Take(g).Average();
            double std = Math.Sqrt(r.Skip(g0).Take(g).Average(x => (x - mean) * (x - mean)));
            for (int i = g0; i < g0 + g; i++) a[i] = (r[i] - mean) / (std + 1e-6);
        }
        return a;
    }

    /// <summary>A tabular policy batch: logits z [B, T, V], sampled tokens, old log-probs, 0/1 rewards, prefix masks.</summary>
    sealed class Tab
    {
        public required int B, Len, V, G;
        public required double[] Z, Old, Mask;
        public required double[] Rewards { get; set; }
        public required long[] Tokens;

        public ReadOnlySpan<double> Row(int b, int t) => Z.AsSpan((b * Len + t) * V, V);
        public double LogProb(int b, int t) => LogSoftmax(Row(b, t))[Tokens[b * Len + t]];
        public double Ratio(int b, int t) => Math.Exp(LogProb(b, t) - Old[b * Len + t]);
        public double Length(int b) => Enumerable.Range(0, Len).Sum(t => Mask[b * Len + t]);

        public static Tab Random(Random rng, int groups, int g, int len, int v, double offPolicy = 0.3)
        {
            int b = groups * g;
            var tab = new Tab
            {
                B = b, Len = len, V = v, G = g,
                Z = Dense.Uniform(rng, b * len * v, -2, 2),
                Tokens = Enumerable.Range(0, b * len).Select(_ => (long)rng.Next(v)).ToArray(),
                Old = new double[b * len], Mask = new double[b * len],
                Rewards = Enumerable.Range(0, b).Select(_ => (double)rng.Next(2)).ToArray(),
            };
            for (int i = 0; i < b; i++)
            {
                int n = rng.Next(len + 1);
                for (int t = 0; t < len; t++)
                {
                    tab.Mask[i * len + t] = t < n ? 1 : 0;
                    tab.Old[i * len + t] = tab.LogProb(i, t) + offPolicy * (2 * rng.NextDouble() - 1);
                }
            }
            return tab;
        }

        public Tensor Logits() => T(Z, B, Len, V).RequiresGrad_();

        public PolicyBatch Batch(Tensor z) => new()
        {
            LogProbs = z.LogSoftmax(-1).Gather(-1, Tensor.FromArray(Tokens, new Shape(B, Len, 1))).Squeeze(-1),
            OldLogProbs = T(Old, B, Len), Rewards = T(Rewards, B), Mask = T(Mask, B, Len), GroupSize = G, Logits = z,
        };

        /// <summary>GRPO's per-token clipped surrogate, ε = 0.2 both sides.</summary>
        public double Surrogate(int b, int t, double a)
        {
            double rho = Ratio(b, t);
            return -Math.Min(rho * a, Math.Clamp(rho, 0.8, 1.2) * a);
        }

        public bool Clipped(int b, int t, double a) => (a > 0 && Ratio(b, t) > 1.2) || (a < 0 && Ratio(b, t) < 0.8);

        /// <summary>GRPO's aggregation: mean over each sequence's tokens, then over sequences.</summary>
        public double SequenceMean(Func<int, int, double> token) =>
            Enumerable.Range(0, B).Average(b => Enumerable.Range(0, Len).Sum(t => Mask[b * Len + t] * token(b, t)) / Math.Max(1, Length(b)));

        /// <summary>d/dz of Σ_bt coef_bt log p(y_bt) / (len_b B): coef (e_y − p) / (len_b B) on masked tokens.</summary>
        public double[] LogProbGradient(Func<int, int, double> coef)
        {
            var g = new double[Z.Length];
            for (int b = 0; b < B; b++)
                for (int t = 0; t < Len; t++)
                {
                    if (Mask[b * Len + t] == 0) continue;
                    var p = Softmax(Row(b, t));
                    double c = coef(b, t) / (Math.Max(1, Length(b)) * B);
                    for (int k = 0; k < V; k++) g[(b * Len + t) * V + k] = c * ((k == Tokens[b * Len + t] ? 1 : 0) - p[k]);
                }
            return g;
        }
    }

    static void AssertGrad(Func<Tensor[], Tensor> f, params Tensor[] xs)
    {
        var r = GradCheck.Run(f, xs);
        Assert.True(r.Passed, r.ToString());
    }

    static void AssertClose(double expected, double actual, double tol, string what) =>
        Assert.True(Math.Abs(expected - actual) <= tol * (1 + Math.Abs(expected)), $"{what}: got {actual:R}, expected {expected:R}");

    /// <summary>
    /// argmax_q E_q[score] − τ KL(q ‖ softmax(logBase)) by mirror ascent on the simplex (log q += η ∂f/∂q, renormalise,
    /// η = 1/(2τ)): a numeric optimiser that reads only the objective's gradient, not its closed-form maximiser.
    /// </summary>
    static double[] MaximiseTilted(double[] score, double[] logBase, double tau)
    {
        var lq = LogSoftmax(new double[score.Length]);
        double eta = 0.5 / tau;
        for (int it = 0; it < 200; it++)
            lq = LogSoftmax(lq.Select((l, k) => l + eta * (score[k] - tau * (l - logBase[k]))).ToArray());
        return lq.Select(Math.Exp).ToArray();
    }

    static double TiltedObjective(double[] q, double[] score, double[] logBase, double tau) =>
        q.Select((qk, k) => qk * score[k] - (qk > 0 ? tau * qk * (Math.Log(qk) - logBase[k]) : 0)).Sum();

    /// <summary>A tiny enumerable language model: V tokens, sequences of length L, next-token log-probs per prefix, a reward per full sequence.</summary>
    sealed class TinyLm
    {
        public required int V, L;
        public readonly Dictionary<string, double[]> LogP = [];
        public readonly Dictionary<string, double> Reward = [];

        public static string Key(IEnumerable<int> y) => string.Join(",", y);

        public static IEnumerable<int[]> Sequences(int v, int length) =>
            length == 0 ? [[]] : Sequences(v, length - 1).SelectMany(s => Enumerable.Range(0, v).Select(z => s.Append(z).ToArray()));

        public static TinyLm Random(Random rng, int v, int l)
        {
            var lm = new TinyLm { V = v, L = l };
            for (int n = 0; n < l; n++)
                foreach (var s in Sequences(v, n)) lm.LogP[Key(s)] = LogSoftmax(Dense.Uniform(rng, v, -1.5, 1.5));
            foreach (var y in Sequences(v, l)) lm.Reward[Key(y)] = rng.NextDouble();
            return lm;
        }

        /// <summary>Every prefix's value by the backup op(log p(· | s), values of s's extensions), leaves valued by the reward.</summary>
        public Dictionary<string, double> Values(Func<double[], double[], double> backup)
        {
            var values = new Dictionary<string, double>();
            double Value(int[] s)
            {
                var key = Key(s);
                if (values.TryGetValue(key, out var known)) return known;
                double v = s.Length == L ? Reward[key] : backup(LogP[key], Enumerable.Range(0, V).Select(z => Value([.. s, z])).ToArray());
                values[key] = v;
                return v;
            }
            Value([]);
            return values;
        }

        public double[] ChildValues(Dictionary<string, double> values, int[] s) => Enumerable.Range(0, V).Select(z => values[Key([.. s, z])]).ToArray();

        public double LogProb(int[] y) => Enumerable.Range(0, y.Length).Sum(t => LogP[Key(y[..t])][y[t]]);
    }

    static double SoftBackup(double[] logp, double[] child, double lambda)
    {
        var a = logp.Select((l, k) => l + lambda * child[k]).ToArray();
        double m = a.Max();
        return (m + Math.Log(a.Sum(x => Math.Exp(x - m)))) / lambda;
    }

    // ---------- 1. Entropy dynamics, entropy-discriminator clipping ----------

    [Fact]
    public void First_order_entropy_change_matches_the_exact_change_with_a_quadratic_residual()
    {
        var rng = new Random(11);
        for (int trial = 0; trial < 30; trial++)
        {
            int v = rng.Next(2, 9);
            var z = Dense.Uniform(rng, v, -2, 2);
            var d = Dense.Uniform(rng, v, -1, 1);
            var logp = LogSoftmax(z);
            double h = Entropy(z);
            double Predicted(double eps) => TokenTerms.FirstOrderEntropyChange(T(z, v), T(d.Select(x => eps * x).ToArray(), v)).Item();
            double Exact(double eps) => Entropy(z.Select((x, k) => x + eps * d[k]).ToArray()) - h;
            // The transcription −Σ p_k (H + log p_k) dz_k.
            AssertClose(-logp.Select((l, k) => Math.Exp(l) * (h + l) * 0.01 * d[k]).Sum(), Predicted(0.01), 1e-12, "first order");
            double r1 = Math.Abs(Exact(2e-3) - Predicted(2e-3)), r2 = Math.Abs(Exact(1e-3) - Predicted(1e-3));
            Assert.InRange(r1 / r2, 3.0, 5.0);
            // A single-logit step ε e_k changes the entropy by −ε S*_k.
            int y = rng.Next(v);
            var ek = new double[v]; ek[y] = 1e-3;
            double s = TokenTerms.EntropyDiscriminator(T([logp[y]], 1), T([h], 1)).Item();
            AssertClose(Math.Exp(logp[y]) * (h + logp[y]), s, 1e-12, "S*");
            AssertClose(-1e-3 * s, TokenTerms.FirstOrderEntropyChange(T(z, v), T(ek, v)).Item(), 1e-12, "single logit");
        }
    }

    [Fact]
    public void Discriminator_predicts_the_sign_of_the_entropy_change_away_from_zero()
    {
        var rng = new Random(12);
        int checkedCount = 0;
        for (int trial = 0; trial < 200; trial++)
        {
            int v = rng.Next(2, 7);
            var z = Dense.Uniform(rng, v, -3, 3);
            int y = rng.Next(v);
            var logp = LogSoftmax(z);
            double s = Math.Exp(logp[y]) * (Entropy(z) + logp[y]);
            if (Math.Abs(s) < 0.02) continue;
            double eps = rng.Next(2) == 0 ? 1e-3 : -1e-3;   // reward or penalty
            var z2 = (double[])z.Clone(); z2[y] += eps;
            Assert.Equal(-Math.Sign(eps * s), Math.Sign(Entropy(z2) - Entropy(z)));
            checkedCount++;
        }
        Assert.True(checkedCount > 100);
    }

    [Fact]
    public void Discriminator_baseline_gives_the_first_order_change_of_a_policy_gradient_step()
    {
        var rng = new Random(13);
        for (int trial = 0; trial < 20; trial++)
        {
            int v = rng.Next(2, 8);
            var z = Dense.Uniform(rng, v, -2, 2);
            int y = rng.Next(v);
            var p = Softmax(z); var logp = LogSoftmax(z);
            double h = Entropy(z);
            double baseline = p.Select((pk, k) => pk * pk * (h + logp[k])).Sum();
            AssertClose(baseline, TokenTerms.DiscriminatorBaseline(T(z, v)).Item(), 1e-12, "E_p[S*]");
            // dz = η A (e_y − p): ΔH ≈ −η A (S*_y − E_p[S*]).
            double etaA = 1e-3 * (2 * rng.NextDouble() - 1);
            var dz = p.Select((pk, k) => etaA * ((k == y ? 1 : 0) - pk)).ToArray();
            AssertClose(-etaA * (p[y] * (h + logp[y]) - baseline), TokenTerms.FirstOrderEntropyChange(T(z, v), T(dz, v)).Item(), 1e-12, "GRPO step");
        }
    }

    static double[] KeepTranscription(Tab tab, DiscriminatorCentering centering, double threshold)
    {
        var adv = GrpoAdvantages(tab.Rewards, tab.G);
        int n = tab.B * tab.Len;
        var s = new double[n]; var baseline = new double[n];
        for (int b = 0; b < tab.B; b++)
            for (int t = 0; t < tab.Len; t++)
            {
                var z = tab.Row(b, t); var logp = LogSoftmax(z); double h = Entropy(z);
                double lp = tab.LogProb(b, t);
                s[b * tab.Len + t] = Math.Exp(lp) * (h + lp);
                baseline[b * tab.Len + t] = logp.Sum(l => Math.Exp(2 * l) * (h + l));
            }
        double count = Math.Max(1, tab.Mask.Sum());
        double sMean = s.Select((x, i) => x * tab.Mask[i]).Sum() / count;
        var c = s.Select((x, i) => adv[i / tab.Len] * (x - (centering == DiscriminatorCentering.Batch ? sMean : baseline[i]))).ToArray();
        double cMean = c.Select((x, i) => x * tab.Mask[i]).Sum() / count;
        double std = Math.Sqrt(c.Select((x, i) => (x - cMean) * (x - cMean) * tab.Mask[i]).Sum() / count);
        return c.Select(x => x - cMean <= threshold * std ? 1.0 : 0.0).ToArray();
    }

    [Theory]
    [InlineData(DiscriminatorCentering.Batch)]
    [InlineData(DiscriminatorCentering.Vocabulary)]
    public void Entropy_clip_keeps_the_tokens_below_the_threshold_and_its_gradient_is_exact(DiscriminatorCentering centering)
    {
        var rng = new Random(14 + (int)centering);
        int dropped = 0;
        for (int trial = 0; trial < 12; trial++)
        {
            var tab = Tab.Random(rng, rng.Next(1, 3), rng.Next(2, 5), rng.Next(1, 6), rng.Next(2, 6), offPolicy: 0);
            double threshold = 0.5 + rng.NextDouble();
            var obj = new EntropyClip { Centering = centering, Threshold = threshold };
            var z = tab.Logits();
            var batch = tab.Batch(z);
            var keep = KeepTranscription(tab, centering, threshold);
            Close.Check(keep, obj.KeepMask(batch).ToDoubleArray(), 0, 0, "keep");
            dropped += keep.Select((k, i) => (1 - k) * tab.Mask[i]).Count(x => x > 0);
            var adv = GrpoAdvantages(tab.Rewards, tab.G);
            var loss = obj.Loss(batch);
            AssertClose(tab.SequenceMean((b, t) => keep[b * tab.Len + t] * tab.Surrogate(b, t, adv[b])), loss.Item(), 1e-12, "loss");
            // On-policy the surrogate's gradient on the logits is −A keep (e_y − p) / (len B).
            var expected = tab.LogProbGradient((b, t) => -adv[b] * keep[b * tab.Len + t]);
            Close.Check(expected, Autograd.Grad(loss, z).ToDoubleArray(), 1e-10, 1e-12, "grad");
        }
        Assert.True(dropped > 0, "no token was ever clipped: the test did not exercise the clip");
    }

    [Fact]
    public void Entropy_clip_with_an_infinite_threshold_is_grpo_and_needs_logits()
    {
        var rng = new Random(16);
        var tab = Tab.Random(rng, 2, 3, 4, 5);
        var z = tab.Logits();
        var batch = tab.Batch(z);
        var adv = GrpoAdvantages(tab.Rewards, tab.G);
        AssertClose(tab.SequenceMean((b, t) => tab.Surrogate(b, t, adv[b])), new EntropyClip { Threshold = double.PositiveInfinity }.Loss(batch).Item(), 1e-12, "grpo");
        Assert.Throws<ArgumentException>(() => new EntropyClip().Loss(batch with { Logits = null }));
        Assert.Throws<ArgumentException>(() => new EntropyClip { Threshold = -1 }.Loss(batch));
        AssertGrad(x => new EntropyClip().Loss(tab.Batch(x[0])), T(tab.Z, tab.B, tab.Len, tab.V));
    }

    [Fact]
    public void Token_terms_match_their_transcriptions_and_reject_bad_arguments()
    {
        var rng = new Random(17);
        for (int trial = 0; trial < 10; trial++)
        {
            int n = rng.Next(0, 4), v = rng.Next(1, 7);
            var z = Dense.Uniform(rng, n * v, -3, 3);
            var h = TokenTerms.Entropy(T(z, n, v)).ToDoubleArray();
            for (int i = 0; i < n; i++) AssertClose(Entropy(z.AsSpan(i * v, v)), h[i], 1e-12, "entropy");
            AssertClose(Math.Log(v), TokenTerms.Entropy(T(new double[v], v)).Item(), 1e-12, "uniform entropy");
        }
        AssertGrad(x => TokenTerms.Entropy(x[0]), T(Dense.Uniform(rng, 12, -2, 2), 3, 4));
        AssertGrad(x => TokenTerms.DiscriminatorBaseline(x[0]), T(Dense.Uniform(rng, 12, -2, 2), 3, 4));
        var lp = T([-0.5, -1.0], 1, 2);
        Assert.Throws<ArgumentException>(() => TokenTerms.ClippedSurrogate(lp, lp, T([1.0], 1), -0.1, 0.2));
        Assert.Throws<ArgumentException>(() => TokenTerms.ClippedSurrogate(lp, lp, T([1.0], 1), 1.0, 0.2));
        Assert.Throws<ArgumentException>(() => TokenTerms.ClippedSurrogate(lp, lp, T([1.0, 2.0], 2), 0.2, 0.2));
        Assert.Throws<ArgumentException>(() => TokenTerms.FirstOrderEntropyChange(T(new double[3], 3), T(new double[2], 2)));
        Assert.Throws<ArgumentException>(() => PolicyMath.MaskedSum(lp, T([1.0], 1, 1)));
        Assert.Throws<ArgumentException>(() => TokenTerms.Entropy(Tensor.Scalar(1.0, DType.Float64)));
        // The batch objectives are found by name (kiln rl train --objective NAME).
        foreach (var (name, type) in new[] { ("entropy-clip", typeof(EntropyClip)), ("steer", typeof(Steer)), ("llds", typeof(Llds)), ("redi", typeof(Redi)), ("tree-opo", typeof(TreeOpo)) })
            Assert.IsType(type, PolicyObjectives.Create(name));
    }

    [Fact]
    public void Objectives_run_in_float32_with_finite_gradients()
    {
        var rng = new Random(18);
        var tab = Tab.Random(rng, 2, 4, 3, 4);
        tab.Rewards = [1, 0, 0, 1, 1, 1, 0, 1];
        foreach (var name in new[] { "entropy-clip", "steer", "llds", "redi", "tree-opo" })
        {
            var z = T(tab.Z, tab.B, tab.Len, tab.V).To(DType.Float32).RequiresGrad_();
            var b64 = tab.Batch(z);
            var batch = b64 with { OldLogProbs = b64.OldLogProbs.To(DType.Float32), Rewards = b64.Rewards.To(DType.Float32), Mask = b64.Mask.To(DType.Float32) };
            var loss = PolicyObjectives.Create(name).Loss(batch);
            Assert.Equal(DType.Float32, loss.DType);
            var g = Autograd.Grad(loss, z).ToDoubleArray();
            Assert.All(g, x => Assert.True(double.IsFinite(x), name));
            Assert.Contains(g, x => x != 0);
        }
        Tensor F(int n, params int[] shape) => T(Dense.Uniform(rng, n, -2, 2), shape).To(DType.Float32);
        var tokens = Tensor.FromArray(new long[] { 0, 2, 1 }, new Shape(1, 3));
        var ones = T([1.0, 1, 1], 1, 3).To(DType.Float32);
        foreach (var risk in Enum.GetValues<RiskMeasure>())
        {
            var side = new PreferenceSide(F(9, 1, 3, 3).LogSoftmax(-1), F(9, 1, 3, 3).LogSoftmax(-1), tokens, ones);
            Assert.Equal(DType.Float32, RaDpo.Loss(side, side with { LogProbs = F(9, 1, 3, 3).LogSoftmax(-1) }, risk: risk, riskLevel: 0.5).DType);
        }
        Assert.Equal(DType.Float32, GeneralPreference.Loss(GeneralPreference.Embed(F(8, 2, 4)), GeneralPreference.Embed(F(8, 2, 4))).DType);
        Assert.Equal(DType.Float32, ControlledDecoding.TokenwiseLogProbs(F(6, 2, 3), F(6, 2, 3), 0.5).DType);
        var zs = F(9, 1, 3, 3);
        Assert.Equal(DType.Float32, AlignDistil.Loss(zs, AlignDistil.TeacherLogits(zs, F(9, 1, 3, 3), zs, AlignDistil.AdaptiveCoefficient(zs, F(9, 1, 3, 3), 2)), ones).DType);
    }

    // ---------- 2. STEER ----------

    static double SteerOmega(Tab tab, int b, int t, double a, double eta)
    {
        double lp = tab.LogProb(b, t);
        double s = Math.Exp(lp) * (Entropy(tab.Row(b, t)) + lp);
        return -eta * tab.Ratio(b, t) * a * (tab.Clipped(b, t, a) ? 0 : 1) * s;
    }

    [Fact]
    public void Steer_weights_are_exp_minus_k_abs_omega_in_zero_one_and_k_zero_is_grpo()
    {
        var rng = new Random(21);
        for (int trial = 0; trial < 12; trial++)
        {
            var tab = Tab.Random(rng, rng.Next(1, 3), rng.Next(2, 5), rng.Next(1, 5), rng.Next(2, 6));
            double k = 3 * rng.NextDouble(), eta = 0.5 + rng.NextDouble();
            var z = tab.Logits();
            var batch = tab.Batch(z);
            var adv = GrpoAdvantages(tab.Rewards, tab.G);
            var steer = new Steer { Sharpness = k, StepSize = eta };
            var omega = steer.EntropyChange(batch).ToDoubleArray();
            var w = steer.Weights(batch).ToDoubleArray();
            for (int b = 0; b < tab.B; b++)
                for (int t = 0; t < tab.Len; t++)
                {
                    int i = b * tab.Len + t;
                    AssertClose(SteerOmega(tab, b, t, adv[b], eta), omega[i], 1e-12, "Ω");
                    AssertClose(Math.Exp(-k * Math.Abs(omega[i])), w[i], 1e-12, "λ");
                    Assert.InRange(w[i], double.Epsilon, 1.0);
                    if (omega[i] == 0) Assert.Equal(1.0, w[i]);
                }
            // Monotone: a larger |Ω| never gets a larger weight.
            var order = Enumerable.Range(0, w.Length).OrderBy(i => Math.Abs(omega[i])).ToArray();
            for (int j = 1; j < order.Length; j++) Assert.True(w[order[j]] <= w[order[j - 1]]);
            var loss = steer.Loss(batch);
            AssertClose(tab.SequenceMean((b, t) => w[b * tab.Len + t] * tab.Surrogate(b, t, adv[b])), loss.Item(), 1e-12, "loss");
            AssertClose(tab.SequenceMean((b, t) => tab.Surrogate(b, t, adv[b])), new Steer { Sharpness = 0 }.Loss(batch).Item(), 1e-12, "k = 0");
        }
    }

    [Fact]
    public void Steer_omega_matches_the_exact_entropy_change_of_a_small_step_to_second_order()
    {
        var rng = new Random(22);
        int tested = 0;
        for (int trial = 0; trial < 10; trial++)
        {
            var tab = Tab.Random(rng, 1, 4, 3, rng.Next(2, 7), offPolicy: 0.1);
            var batch = tab.Batch(tab.Logits());
            var adv = GrpoAdvantages(tab.Rewards, tab.G);
            double Residual(int b, int t, double eta)
            {
                double omega = new Steer { StepSize = eta }.EntropyChange(batch).ToDoubleArray()[b * tab.Len + t];
                var z = tab.Row(b, t).ToArray();
                z[tab.Tokens[b * tab.Len + t]] += eta * tab.Ratio(b, t) * adv[b];   // the token's logit step
                return Math.Abs(Entropy(z) - Entropy(tab.Row(b, t)) - omega);
            }
            for (int b = 0; b < tab.B; b++)
                for (int t = 0; t < tab.Len; t++)
                {
                    if (Math.Abs(adv[b]) < 0.1 || tab.Clipped(b, t, adv[b])) continue;
                    double r1 = Residual(b, t, 0.02), r2 = Residual(b, t, 0.01);
                    if (r2 < 1e-12) continue;
                    Assert.InRange(r1 / r2, 3.0, 5.0);
                    tested++;
                }
        }
        Assert.True(tested > 20);
    }

    [Fact]
    public void Steer_checks_its_settings_and_has_exact_gradients()
    {
        var tab = Tab.Random(new Random(23), 2, 3, 3, 4);
        var batch = tab.Batch(tab.Logits());
        Assert.Throws<ArgumentException>(() => new Steer { Sharpness = -1 }.Loss(batch));
        Assert.Throws<ArgumentException>(() => new Steer { StepSize = 0 }.Loss(batch));
        Assert.Throws<ArgumentException>(() => new Steer().Loss(batch with { Logits = null }));
        // The weights are a stop-gradient factor: on-policy the gradient on the logits is −A λ (e_y − p) / (len B).
        var onPolicy = Tab.Random(new Random(24), 2, 3, 4, 5, offPolicy: 0);
        var z = onPolicy.Logits();
        var steer = new Steer { Sharpness = 2 };
        var w = steer.Weights(onPolicy.Batch(z)).ToDoubleArray();
        var adv = GrpoAdvantages(onPolicy.Rewards, onPolicy.G);
        Close.Check(onPolicy.LogProbGradient((b, t) => -adv[b] * w[b * onPolicy.Len + t]), Autograd.Grad(steer.Loss(onPolicy.Batch(z)), z).ToDoubleArray(), 1e-10, 1e-12, "grad");
    }

    // ---------- 3. LLDS ----------

    [Fact]
    public void Llds_penalty_is_zero_with_zero_gradient_when_no_likelihood_fell()
    {
        var rng = new Random(31);
        for (int trial = 0; trial < 10; trial++)
        {
            var tab = Tab.Random(rng, 2, 3, 4, 4);
            for (int i = 0; i < tab.Old.Length; i++)
                tab.Old[i] = tab.LogProb(i / tab.Len, i % tab.Len) - rng.NextDouble();   // every token's likelihood rose
            var z = tab.Logits();
            var penalty = Llds.Penalty(tab.Batch(z));
            Assert.Equal(0.0, penalty.Item());
            Assert.All(Autograd.Grad(penalty, z).ToDoubleArray(), g => Assert.Equal(0.0, g));
        }
    }

    [Fact]
    public void Llds_penalty_gradient_is_restricted_to_offending_tokens_of_gated_completions()
    {
        var rng = new Random(32);
        int offending = 0;
        for (int trial = 0; trial < 15; trial++)
        {
            var tab = Tab.Random(rng, rng.Next(1, 3), rng.Next(2, 5), rng.Next(1, 5), rng.Next(2, 5), offPolicy: 0.5);
            var lp = T(Enumerable.Range(0, tab.B * tab.Len).Select(i => tab.LogProb(i / tab.Len, i % tab.Len)).ToArray(), tab.B, tab.Len).RequiresGrad_();
            var batch = tab.Batch(tab.Logits()) with { LogProbs = lp, Logits = null };
            var adv = GrpoAdvantages(tab.Rewards, tab.G);
            double count = Math.Max(1, tab.Mask.Sum()), expectedPenalty = 0;
            var expectedGrad = new double[tab.B * tab.Len];
            for (int b = 0; b < tab.B; b++)
            {
                double fell = Enumerable.Range(0, tab.Len).Sum(t => tab.Mask[b * tab.Len + t] * (tab.Old[b * tab.Len + t] - tab.LogProb(b, t)));
                if (adv[b] < 0 || fell <= 0) continue;
                for (int t = 0; t < tab.Len; t++)
                {
                    double drop = tab.Old[b * tab.Len + t] - tab.LogProb(b, t);
                    if (tab.Mask[b * tab.Len + t] == 0 || drop <= 0) continue;
                    expectedPenalty += drop / count;
                    expectedGrad[b * tab.Len + t] = -1 / count;
                    offending++;
                }
            }
            var penalty = Llds.Penalty(batch);
            AssertClose(expectedPenalty, penalty.Item(), 1e-12, "penalty");
            Close.Check(expectedGrad, Autograd.Grad(penalty, lp).ToDoubleArray(), 1e-12, 1e-15, "grad");
            // The loss is GRPO plus α times the penalty.
            var surrogate = tab.SequenceMean((b, t) => tab.Surrogate(b, t, adv[b]));
            AssertClose(surrogate + 0.3 * expectedPenalty, new Llds { Alpha = 0.3 }.Loss(batch).Item(), 1e-12, "loss");
        }
        Assert.True(offending > 10);
    }

    [Fact]
    public void Llds_checks_alpha_and_has_exact_gradients()
    {
        var tab = Tab.Random(new Random(33), 2, 3, 3, 4, offPolicy: 0.5);
        Assert.Throws<ArgumentException>(() => new Llds { Alpha = -0.1 }.Loss(tab.Batch(tab.Logits())));
        AssertGrad(x => new Llds { Alpha = 1 }.Loss(tab.Batch(x[0])), T(tab.Z, tab.B, tab.Len, tab.V));
    }

    // ---------- 4. REDI ----------

    static double RediTranscription(Tab tab, double alpha)
    {
        double MeanLogLik(int b) => Enumerable.Range(0, tab.Len).Sum(t => tab.Mask[b * tab.Len + t] * tab.LogProb(b, t)) / Math.Max(1, tab.Length(b));
        var pos = Enumerable.Range(0, tab.B).Where(b => tab.Rewards[b] > 0.5).ToArray();
        var neg = Enumerable.Range(0, tab.B).Where(b => tab.Rewards[b] <= 0.5).ToArray();
        return (pos.Length == 0 ? 0 : -pos.Average(MeanLogLik)) + alpha * (neg.Length == 0 ? 0 : neg.Average(MeanLogLik));
    }

    [Fact]
    public void Redi_matches_its_objective_and_zero_negative_weight_is_sft_on_positives()
    {
        var rng = new Random(41);
        for (int trial = 0; trial < 15; trial++)
        {
            var tab = Tab.Random(rng, rng.Next(1, 3), rng.Next(1, 5), rng.Next(1, 5), rng.Next(2, 6));
            double alpha = rng.NextDouble();
            var batch = tab.Batch(tab.Logits());
            AssertClose(RediTranscription(tab, alpha), new Redi { NegativeWeight = alpha }.Loss(batch).Item(), 1e-12, "redi");
            // α = 0: SFT, the mean over positive traces of their length-normalised negative log-likelihood.
            AssertClose(RediTranscription(tab, 0), new Redi { NegativeWeight = 0 }.Loss(batch).Item(), 1e-12, "sft");
            // Reference-free: reference log-probs, present or not, do not enter.
            var withRef = batch with { RefLogProbs = T(Dense.Uniform(rng, tab.B * tab.Len, -5, 0), tab.B, tab.Len) };
            Assert.Equal(new Redi().Loss(batch).Item(), new Redi().Loss(withRef).Item());
        }
    }

    [Fact]
    public void Redi_pushes_positive_traces_up_and_negative_traces_down_token_by_token()
    {
        var rng = new Random(42);
        for (int trial = 0; trial < 10; trial++)
        {
            var tab = Tab.Random(rng, 2, 3, 4, 4);
            var lp = T(Enumerable.Range(0, tab.B * tab.Len).Select(i => tab.LogProb(i / tab.Len, i % tab.Len)).ToArray(), tab.B, tab.Len).RequiresGrad_();
            var g = Autograd.Grad(new Redi().Loss(tab.Batch(tab.Logits()) with { LogProbs = lp, Logits = null }), lp).ToDoubleArray();
            for (int i = 0; i < g.Length; i++)
            {
                int b = i / tab.Len;
                int sign = tab.Mask[i] == 0 ? 0 : tab.Rewards[b] > 0.5 ? -1 : 1;
                Assert.Equal(sign, Math.Sign(g[i]));
            }
        }
        var t2 = Tab.Random(rng, 2, 2, 3, 3);
        Assert.Throws<ArgumentException>(() => new Redi { NegativeWeight = -1 }.Loss(t2.Batch(t2.Logits())));
        AssertGrad(x => new Redi().Loss(t2.Batch(x[0])), T(t2.Z, t2.B, t2.Len, t2.V));
    }

    // ---------- 5. AlignDistil ----------

    [Fact]
    public void Align_distil_teacher_is_the_maximiser_of_the_kl_regularised_dpo_token_reward()
    {
        var rng = new Random(51);
        for (int trial = 0; trial < 20; trial++)
        {
            int v = rng.Next(2, 7);
            var zRef = Dense.Uniform(rng, v, -1.5, 1.5); var zDpo = Dense.Uniform(rng, v, -1.5, 1.5);
            double beta0 = 0.1 + 0.4 * rng.NextDouble(), beta = 0.2 + 0.8 * rng.NextDouble();
            var logRef = LogSoftmax(zRef); var logDpo = LogSoftmax(zDpo);
            var reward = logDpo.Select((l, k) => beta0 * (l - logRef[k])).ToArray();
            var best = MaximiseTilted(reward, logRef, beta);
            Tensor Teacher(double a) => AlignDistil.TeacherLogits(T(zRef, v), T(zDpo, v), T(zRef, v), Tensor.Scalar(a, DType.Float64)).Softmax(-1);
            var teacher = Teacher(beta0 / beta).ToDoubleArray();
            Close.Check(best, teacher, 1e-9, 1e-12, "maximiser");
            var other = Softmax(Dense.Uniform(rng, v, -2, 2));
            Assert.True(TiltedObjective(teacher, reward, logRef, beta) >= TiltedObjective(other, reward, logRef, beta));
            Close.Check(Softmax(zRef), Teacher(0).ToDoubleArray(), 1e-12, 1e-15, "a = 0");
            Close.Check(Softmax(zDpo), Teacher(1).ToDoubleArray(), 1e-12, 1e-15, "a = 1");
            // Contrastive (Eq. 14–15): reward β₀ log(π_dpo / π_dpo⁻) with π_dpo as the reference; a = 0 gives π_dpo.
            var zRdpo = Dense.Uniform(rng, v, -1.5, 1.5);
            var logRdpo = LogSoftmax(zRdpo);
            var contrast = logDpo.Select((l, k) => beta0 * (l - logRdpo[k])).ToArray();
            Tensor Contrastive(double a) => AlignDistil.TeacherLogits(T(zDpo, v), T(zDpo, v), T(zRdpo, v), Tensor.Scalar(a, DType.Float64)).Softmax(-1);
            Close.Check(MaximiseTilted(contrast, logDpo, beta), Contrastive(beta0 / beta).ToDoubleArray(), 1e-9, 1e-12, "contrastive");
            Close.Check(Softmax(zDpo), Contrastive(0).ToDoubleArray(), 1e-12, 1e-15, "contrastive a = 0");
            // Theorem 1 per token: E_θ[r] − β KL(π_θ ‖ π_ref) + β KL(π_θ ‖ π*) is the same constant for every π_θ.
            double Constant(double[] zTheta)
            {
                var lt = LogSoftmax(zTheta);
                double objective = lt.Select((l, k) => Math.Exp(l) * (reward[k] - beta * (l - logRef[k]))).Sum();
                double kl = AlignDistil.Loss(T(zTheta, 1, 1, v), AlignDistil.TeacherLogits(T(zRef, 1, 1, v), T(zDpo, 1, 1, v), T(zRef, 1, 1, v), Tensor.Scalar(beta0 / beta, DType.Float64)), T([1.0], 1, 1)).Item();
                return objective + beta * kl;
            }
            AssertClose(Constant(Dense.Uniform(rng, v, -2, 2)), Constant(Dense.Uniform(rng, v, -2, 2)), 1e-12, "RLHF = distillation");
        }
    }

    [Fact]
    public void Align_distil_adaptive_coefficient_is_r_times_the_total_variation_plus_eps()
    {
        var rng = new Random(53);
        for (int trial = 0; trial < 10; trial++)
        {
            int n = rng.Next(0, 4), v = rng.Next(2, 6);
            double r = 3 * rng.NextDouble();
            var za = Dense.Uniform(rng, n * v, -2, 2); var zb = Dense.Uniform(rng, n * v, -2, 2);
            var a = AlignDistil.AdaptiveCoefficient(T(za, n, v), T(zb, n, v), r).ToDoubleArray();
            Assert.Equal(n, a.Length);
            for (int i = 0; i < n; i++)
            {
                var pa = Softmax(za.AsSpan(i * v, v)); var pb = Softmax(zb.AsSpan(i * v, v));
                double tvd = 0.5 * pa.Select((x, k) => Math.Abs(x - pb[k])).Sum();
                AssertClose(r * tvd + 1e-3, a[i], 1e-12, "a_t");
                Assert.InRange(a[i], 1e-3, r + 1e-3 + 1e-12);
            }
            Assert.All(AlignDistil.AdaptiveCoefficient(T(za, n, v), T(za, n, v), r).ToDoubleArray(), x => AssertClose(1e-3, x, 1e-12, "agreeing models"));
        }
        Assert.Throws<ArgumentException>(() => AlignDistil.AdaptiveCoefficient(T(new double[2], 2), T(new double[2], 2), -1));
    }

    [Fact]
    public void Align_distil_loss_is_the_weighted_masked_reverse_kl_to_the_teacher()
    {
        var rng = new Random(52);
        for (int trial = 0; trial < 8; trial++)
        {
            int b = rng.Next(1, 4), len = rng.Next(1, 5), v = rng.Next(2, 6);
            var zs = Dense.Uniform(rng, b * len * v, -2, 2); var zt = Dense.Uniform(rng, b * len * v, -2, 2);
            var mask = Enumerable.Range(0, b * len).Select(_ => (double)rng.Next(2)).ToArray();
            var w = Dense.Uniform(rng, b * len, 0.5, 2);
            double expected = 0;
            for (int row = 0; row < b; row++)
            {
                double sum = 0, count = 0;
                for (int i = row * len; i < (row + 1) * len; i++)
                {
                    if (mask[i] == 0) continue;
                    var lt = LogSoftmax(zt.AsSpan(i * v, v)); var ls = LogSoftmax(zs.AsSpan(i * v, v));
                    sum += w[i] * ls.Select((l, k) => Math.Exp(l) * (l - lt[k])).Sum();
                    count++;
                }
                expected += sum / Math.Max(1, count) / b;
            }
            AssertClose(expected, AlignDistil.Loss(T(zs, b, len, v), T(zt, b, len, v), T(mask, b, len), T(w, b, len)).Item(), 1e-12, "kl");
            AssertGrad(x => AlignDistil.Loss(x[0], T(zt, b, len, v), T(mask, b, len), T(w, b, len)), T(zs, b, len, v));
        }
        Assert.Throws<ArgumentException>(() => AlignDistil.Loss(T(new double[6], 1, 2, 3), T(new double[6], 1, 3, 2), T(new double[2], 1, 2)));
        Assert.Throws<ArgumentException>(() => AlignDistil.TeacherLogits(T(new double[3], 3), T(new double[2], 2), T(new double[3], 3), Tensor.Scalar(1.0, DType.Float64)));
        Assert.Throws<ArgumentException>(() => AlignDistil.Loss(T(new double[6], 1, 2, 3), T(new double[6], 1, 2, 3), T(new double[2], 1, 2), T(new double[3], 1, 3)));
    }

    // ---------- 6. Ra-DPO ----------

    static PreferenceSide Side(Tensor z, double[] refLogits, long[] tokens, double[] mask, int b, int len, int v) =>
        new(z.LogSoftmax(-1), T(refLogits, b, len, v).LogSoftmax(-1), Tensor.FromArray(tokens, new Shape(b, len)), T(mask, b, len));

    /// <summary>ρ_{z~π_ref}[X] for X = log π_ref − log π_θ: the expectation, the entropic risk, or the upper-tail CVaR as a tail average.</summary>
    static double RiskTranscription(double[] lp, double[] lr, RiskMeasure risk, double level)
    {
        var x = lr.Select((l, k) => l - lp[k]).ToArray();
        var p = lr.Select(Math.Exp).ToArray();
        switch (risk)
        {
            case RiskMeasure.Expectation: return p.Select((pk, k) => pk * x[k]).Sum();
            case RiskMeasure.Entropic: return Math.Log(p.Select((pk, k) => pk * Math.Exp(level * x[k])).Sum()) / level;
            default:
                double mass = 0, total = 0;
                foreach (int k in Enumerable.Range(0, x.Length).OrderByDescending(k => x[k]))
                {
                    double take = Math.Min(p[k], level - mass);
                    if (take <= 0) break;
                    total += take * x[k]; mass += take;
                }
                return total / level;
        }
    }

    static double TdpoTranscription(double[] zw, double[] rw, long[] yw, double[] mw, double[] zl, double[] rl, long[] yl, double[] ml,
        int pair, int len, int v, double beta, double alpha, RiskMeasure risk, double level)
    {
        double LogRatio(double[] z, double[] r, long[] y, double[] m) => Enumerable.Range(0, len).Sum(t =>
        {
            int i = pair * len + t;
            return m[i] * (LogSoftmax(z.AsSpan(i * v, v))[y[i]] - LogSoftmax(r.AsSpan(i * v, v))[y[i]]);
        });
        double Risk(double[] z, double[] r, double[] m) => Enumerable.Range(0, len).Sum(t =>
        {
            int i = pair * len + t;
            return m[i] * RiskTranscription(LogSoftmax(z.AsSpan(i * v, v)), LogSoftmax(r.AsSpan(i * v, v)), risk, level);
        });
        double u = beta * (LogRatio(zw, rw, yw, mw) - LogRatio(zl, rl, yl, ml));
        return Softplus(-(u - alpha * beta * (Risk(zl, rl, ml) - Risk(zw, rw, mw))));
    }

    [Theory]
    [InlineData(RiskMeasure.Expectation)]
    [InlineData(RiskMeasure.Entropic)]
    [InlineData(RiskMeasure.ConditionalValueAtRisk)]
    public void Ra_dpo_matches_tdpo_when_risk_neutral_and_its_risk_transcription_otherwise(RiskMeasure risk)
    {
        var rng = new Random(61 + (int)risk);
        for (int trial = 0; trial < 8; trial++)
        {
            int b = rng.Next(1, 4), len = rng.Next(1, 5), v = rng.Next(2, 6), n = b * len * v;
            double beta = 0.05 + rng.NextDouble(), alpha = rng.NextDouble();
            double level = risk == RiskMeasure.Entropic ? 0.2 + 2 * rng.NextDouble() : 0.1 + 0.8 * rng.NextDouble();
            var zw = Dense.Uniform(rng, n, -2, 2); var zl = Dense.Uniform(rng, n, -2, 2);
            var rw = Dense.Uniform(rng, n, -2, 2); var rl = Dense.Uniform(rng, n, -2, 2);
            long[] Tokens() => Enumerable.Range(0, b * len).Select(_ => (long)rng.Next(v)).ToArray();
            double[] Mask() => Enumerable.Range(0, b * len).Select(i => i % len == 0 || rng.Next(3) > 0 ? 1.0 : 0.0).ToArray();
            var (yw, yl, mw, ml) = (Tokens(), Tokens(), Mask(), Mask());
            var got = RaDpo.Loss(Side(T(zw, b, len, v), rw, yw, mw, b, len, v), Side(T(zl, b, len, v), rl, yl, ml, b, len, v), beta, alpha, risk, level).ToDoubleArray();
            for (int i = 0; i < b; i++)
                AssertClose(TdpoTranscription(zw, rw, yw, mw, zl, rl, yl, ml, i, len, v, beta, alpha, risk, level), got[i], 1e-12, "pair loss");
            // The chosen side's risk term is a stop-gradient (TDPO₂), so finite differences check the rejected side at α and both at α = 0.
            AssertGrad(x => RaDpo.Loss(Side(T(zw, b, len, v), rw, yw, mw, b, len, v), Side(x[0], rl, yl, ml, b, len, v), beta, alpha, risk, level), T(zl, b, len, v));
            AssertGrad(x => RaDpo.Loss(Side(x[0], rw, yw, mw, b, len, v), Side(x[1], rl, yl, ml, b, len, v), beta, 0, risk, level), T(zw, b, len, v), T(zl, b, len, v));
            var lp = T(zw, b, len, v).LogSoftmax(-1); var lr = T(rw, b, len, v).LogSoftmax(-1);
            var kl = RaDpo.TokenRisk(lp, lr, RiskMeasure.Expectation).ToDoubleArray();
            if (risk == RiskMeasure.Entropic)   // γ → 0 recovers the risk-neutral (KL) term
                Close.Check(kl, RaDpo.TokenRisk(lp, lr, RiskMeasure.Entropic, 1e-7).ToDoubleArray(), 1e-5, 1e-6, "γ → 0");
            if (risk == RiskMeasure.ConditionalValueAtRisk)
            {
                // α = 1 is the expectation; a smaller α averages a worse tail, never below it.
                Close.Check(kl, RaDpo.TokenRisk(lp, lr, risk, 1).ToDoubleArray(), 1e-12, 1e-14, "α = 1");
                var tail = RaDpo.TokenRisk(lp, lr, risk, level).ToDoubleArray();
                for (int i = 0; i < kl.Length; i++) Assert.True(tail[i] >= kl[i] - 1e-12);
            }
        }
    }

    [Fact]
    public void Ra_dpo_token_terms_telescope_to_the_sequence_level_bradley_terry_logit()
    {
        var rng = new Random(63);
        for (int trial = 0; trial < 6; trial++)
        {
            var lm = TinyLm.Random(rng, 3, 3);
            double beta = 0.1 + rng.NextDouble();
            // Soft-optimal policy of the terminal-reward token MDP: π*(z|s) = π_ref(z|s) exp((V(s,z) − V(s)) / β).
            var values = lm.Values((logp, child) => beta * SoftBackup(logp, child, 1 / beta));
            PreferenceSide SideOf(int[] y)
            {
                var lp = new List<double>(); var lr = new List<double>();
                for (int t = 0; t < y.Length; t++)
                {
                    var s = y[..t]; var logRef = lm.LogP[TinyLm.Key(s)];
                    double vs = values[TinyLm.Key(s)];
                    var child = lm.ChildValues(values, s);
                    lp.AddRange(logRef.Select((l, z) => l + (child[z] - vs) / beta));
                    lr.AddRange(logRef);
                }
                return new(T([.. lp], 1, y.Length, lm.V), T([.. lr], 1, y.Length, lm.V), Tensor.FromArray(y.Select(z => (long)z).ToArray(), new Shape(1, y.Length)), T(Enumerable.Repeat(1.0, y.Length).ToArray(), 1, y.Length));
            }
            var all = TinyLm.Sequences(lm.V, lm.L).ToArray();
            var yw = all[rng.Next(all.Length)]; var yl = all[rng.Next(all.Length)];
            // Σ_t β log(π*/π_ref)(y_t) = Σ_t A(s_t, y_t) = r(x, y) − V(x).
            AssertClose(lm.Reward[TinyLm.Key(yw)] - values[""], beta * SideOf(yw).SequenceLogRatio().Item(), 1e-12, "telescope");
            double logit = lm.Reward[TinyLm.Key(yw)] - lm.Reward[TinyLm.Key(yl)];
            AssertClose(Softplus(-logit), RaDpo.Loss(SideOf(yw), SideOf(yl), beta, alpha: 0).Item(), 1e-12, "BT logit");
        }
    }

    [Fact]
    public void Ra_dpo_rejects_bad_arguments()
    {
        var side = Side(T(new double[12], 1, 4, 3), new double[12], new long[4], [1, 1, 1, 1], 1, 4, 3);
        Assert.Throws<ArgumentException>(() => RaDpo.Loss(side, side, beta: 0));
        Assert.Throws<ArgumentException>(() => RaDpo.Loss(side, side, alpha: -1));
        Assert.Throws<ArgumentException>(() => RaDpo.Loss(side, side, risk: RiskMeasure.Entropic, riskLevel: 0));
        Assert.Throws<ArgumentException>(() => RaDpo.Loss(side, side, risk: RiskMeasure.ConditionalValueAtRisk, riskLevel: 1.5));
        Assert.Throws<ArgumentException>(() => RaDpo.Loss(side, side with { Tokens = Tensor.FromArray(new long[3], new Shape(1, 3)) }));
        Assert.Throws<ArgumentException>(() => RaDpo.Loss(side, side with { RefLogProbs = T(new double[8], 1, 4, 2) }));
    }

    // ---------- 7. General preference model ----------

    [Fact]
    public void General_preference_score_is_the_skew_bilinear_form_and_exactly_antisymmetric()
    {
        var rng = new Random(71);
        for (int trial = 0; trial < 20; trial++)
        {
            int n = rng.Next(0, 5), k = rng.Next(1, 5);
            var vi = GeneralPreference.Embed(T(Dense.Uniform(rng, n * 2 * k), n, 2 * k));
            var vj = GeneralPreference.Embed(T(Dense.Uniform(rng, n * 2 * k), n, 2 * k));
            var lam = Dense.Uniform(rng, k, 0, 3);
            var a = vi.ToDoubleArray(); var b = vj.ToDoubleArray();
            var s = GeneralPreference.Score(vi, vj, T(lam, k)).ToDoubleArray();
            for (int r = 0; r < n; r++)
            {
                // ⟨R v_i, v_j⟩ with R = diag(λ_b [[0, −1], [1, 0]]).
                double expected = 0;
                for (int blk = 0; blk < k; blk++)
                {
                    double x0 = a[r * 2 * k + 2 * blk], x1 = a[r * 2 * k + 2 * blk + 1];
                    double rv0 = -lam[blk] * x1, rv1 = lam[blk] * x0;
                    expected += rv0 * b[r * 2 * k + 2 * blk] + rv1 * b[r * 2 * k + 2 * blk + 1];
                }
                AssertClose(expected, s[r], 1e-12, "score");
                AssertClose(1, Math.Sqrt(Enumerable.Range(0, 2 * k).Sum(c => a[r * 2 * k + c] * a[r * 2 * k + c])), 1e-12, "unit norm");
            }
            var back = GeneralPreference.Score(vj, vi, T(lam, k)).ToDoubleArray();
            for (int r = 0; r < n; r++) Assert.Equal(-s[r], back[r]);
            Assert.All(GeneralPreference.Score(vi, vi, T(lam, k)).ToDoubleArray(), x => Assert.Equal(0.0, x));
            var pij = GeneralPreference.Probability(vi, vj).ToDoubleArray(); var pji = GeneralPreference.Probability(vj, vi).ToDoubleArray();
            for (int r = 0; r < n; r++) AssertClose(1, pij[r] + pji[r], 1e-15, "P + P");
            // Unscaled unit embeddings: |s| ≤ 1, so a deterministic preference is approached, never fit.
            Assert.All(GeneralPreference.Score(vi, vj).ToDoubleArray(), x => Assert.InRange(Math.Abs(x), 0, 1 + 1e-12));
        }
    }

    [Fact]
    public void General_preference_fits_a_three_cycle_exactly_where_bradley_terry_cannot()
    {
        foreach (double q in new[] { 0.8, 0.65, 0.95 })
        {
            double scale = Math.Log(q / (1 - q)) / Math.Sin(2 * Math.PI / 3);
            var v = T([.. Enumerable.Range(0, 3).SelectMany(i => new[] { Math.Cos(2 * Math.PI * i / 3), Math.Sin(2 * Math.PI * i / 3) })], 3, 2);
            var win = v; var lose = v.IndexSelect(0, Tensor.FromArray(new long[] { 1, 2, 0 }));
            var lam = T([scale], 1);
            var p = GeneralPreference.Probability(win, lose, lam).ToDoubleArray();
            Assert.All(p, x => AssertClose(q, x, 1e-12, "edge probability"));
            // Expected log-loss on data with P = q on each edge A ≻ B ≻ C ≻ A is the binary entropy of q.
            double entropy = -(q * Math.Log(q) + (1 - q) * Math.Log(1 - q));
            var loss = (q * GeneralPreference.Loss(win, lose, lam) + (1 - q) * GeneralPreference.Loss(lose, win, lam)).Mean().Item();
            AssertClose(entropy, loss, 1e-12, "GPM loss");
            // Bradley–Terry maximum likelihood: gradient descent on three scalar rewards ends at equal scores, P = 1/2, loss log 2.
            var r = T([0.7, -0.4, 0.1], 3).RequiresGrad_();
            double bt = 0;
            for (int step = 0; step < 400; step++)
            {
                var margin = r - r.IndexSelect(0, Tensor.FromArray(new long[] { 1, 2, 0 }));
                var btLoss = (q * TokenTerms.PairwiseLogistic(margin) + (1 - q) * TokenTerms.PairwiseLogistic(-margin)).Mean();
                bt = btLoss.Item();
                var g = Autograd.Grad(btLoss, r);
                r = (r.Detach() - 1.0 * g).RequiresGrad_();
            }
            var rv = r.ToDoubleArray();
            Assert.True(rv.Max() - rv.Min() < 1e-8, $"BT scores not equal: {string.Join(", ", rv)}");
            AssertClose(Math.Log(2), bt, 1e-10, "BT loss");
            Assert.True(loss < bt);
        }
    }

    [Fact]
    public void General_preference_gradients_and_argument_checks()
    {
        var rng = new Random(73);
        AssertGrad(x => GeneralPreference.Loss(GeneralPreference.Embed(x[0]), GeneralPreference.Embed(x[1]), x[2]),
            T(Dense.Uniform(rng, 12, 0.2, 1), 3, 4), T(Dense.Uniform(rng, 12, 0.2, 1), 3, 4), T(Dense.Uniform(rng, 2, 0.5, 2), 2));
        Assert.Throws<ArgumentException>(() => GeneralPreference.Embed(T(new double[3], 3)));
        Assert.Throws<ArgumentException>(() => GeneralPreference.Score(T(new double[4], 4), T(new double[2], 2)));
        Assert.Throws<ArgumentException>(() => GeneralPreference.Score(T(new double[4], 4), T(new double[4], 4), T(new double[3], 3)));
    }

    // ---------- 8. Tree-OPO ----------

    [Fact]
    public void Tree_opo_without_prefixes_is_grpo()
    {
        var rng = new Random(81);
        for (int trial = 0; trial < 10; trial++)
        {
            var tab = Tab.Random(rng, rng.Next(1, 3), rng.Next(1, 5), rng.Next(1, 5), rng.Next(2, 5), offPolicy: 0);
            var adv = GrpoAdvantages(tab.Rewards, tab.G);
            Close.Check(adv, TreeOpo.Advantages(T(tab.Rewards, tab.B), tab.G, new int[tab.B]).ToDoubleArray(), 1e-12, 1e-12, "advantages");
            var z = tab.Logits();
            var loss = new TreeOpo().Loss(tab.Batch(z));
            AssertClose(tab.SequenceMean((b, t) => tab.Surrogate(b, t, adv[b])), loss.Item(), 1e-12, "loss");
            Close.Check(tab.LogProbGradient((b, _) => -adv[b]), Autograd.Grad(loss, z).ToDoubleArray(), 1e-10, 1e-12, "grad");
        }
    }

    [Fact]
    public void Tree_opo_baselines_are_the_prefix_means_and_unbiased_on_a_tree_with_known_values()
    {
        // Root 0 → children 1 and 2 (probability 1/2 each); success probability 0.9 under 1, 0.3 under 2, so V(0) = 0.6.
        double[] value = [0.6, 0.9, 0.3];
        var rng = new Random(82);
        const int g = 6, trials = 3000;
        var sum = new double[3]; var sumSq = new double[3]; var count = new int[3];
        for (int trial = 0; trial < trials; trial++)
        {
            var nodes = Enumerable.Range(0, g).Select(_ => rng.Next(3)).ToArray();
            var r = nodes.Select(n => (n == 0 ? (rng.Next(2) == 0 ? 0.9 : 0.3) : value[n]) > rng.NextDouble() ? 1.0 : 0.0).ToArray();
            var a = TreeOpo.Advantages(T(r, g), g, nodes, scaleByStd: false).ToDoubleArray();
            for (int i = 0; i < g; i++)
            {
                double baseline = r[i] - a[i];
                AssertClose(Enumerable.Range(0, g).Where(j => nodes[j] == nodes[i]).Average(j => r[j]), baseline, 1e-12, "prefix mean");
                sum[nodes[i]] += baseline; sumSq[nodes[i]] += baseline * baseline; count[nodes[i]]++;
            }
        }
        for (int n = 0; n < 3; n++)
        {
            double mean = sum[n] / count[n], se = Math.Sqrt((sumSq[n] / count[n] - mean * mean) / count[n]);
            Assert.True(Math.Abs(mean - value[n]) < 4 * se, $"node {n}: mean baseline {mean}, value {value[n]}, se {se}");
        }
    }

    [Fact]
    public void Tree_opo_gradients_and_argument_checks()
    {
        var tab = Tab.Random(new Random(83), 2, 4, 3, 3);
        int[] nodes = [0, 1, 1, 0, 2, 2, 0, 3];
        AssertGrad(x => new TreeOpo().Loss(tab.Batch(x[0]), nodes), T(tab.Z, tab.B, tab.Len, tab.V));
        Assert.Throws<ArgumentException>(() => TreeOpo.Advantages(T(tab.Rewards, tab.B), tab.G, new int[3]));
        Assert.Throws<ArgumentException>(() => TreeOpo.Advantages(T(tab.Rewards, tab.B), 3, new int[tab.B]));
    }

    // ---------- 9. Controlled decoding ----------

    [Fact]
    public void Controlled_decoding_at_lambda_zero_is_the_base_model_and_each_step_is_the_kl_regularised_maximiser()
    {
        var rng = new Random(91);
        for (int trial = 0; trial < 20; trial++)
        {
            int v = rng.Next(2, 7);
            var logp = LogSoftmax(Dense.Uniform(rng, v, -2, 2));
            var values = Dense.Uniform(rng, v, 0, 1);
            Close.Check(logp, ControlledDecoding.TokenwiseLogProbs(T(logp, v), T(values, v), 0).ToDoubleArray(), 1e-14, 1e-14, "λ = 0");
            double lambda = 0.2 + 4 * rng.NextDouble();
            var q = ControlledDecoding.TokenwiseLogProbs(T(logp, v), T(values, v), lambda).Exp().ToDoubleArray();
            Close.Check(MaximiseTilted(values, logp, 1 / lambda), q, 1e-9, 1e-12, "maximiser");
        }
    }

    [Fact]
    public void Controlled_decoding_with_the_soft_value_samples_the_tilted_sequence_distribution_exactly()
    {
        var rng = new Random(92);
        for (int trial = 0; trial < 4; trial++)
        {
            var lm = TinyLm.Random(rng, 3, 3);
            var sequences = TinyLm.Sequences(lm.V, lm.L).ToArray();
            double MaxError(double lambda, Dictionary<string, double> values)
            {
                double logZ = Math.Log(sequences.Sum(y => Math.Exp(lm.LogProb(y) + lambda * lm.Reward[TinyLm.Key(y)])));
                return sequences.Max(y =>
                {
                    double logq = Enumerable.Range(0, y.Length).Sum(t => ControlledDecoding.TokenwiseLogProbs(
                        T(lm.LogP[TinyLm.Key(y[..t])], lm.V), T(lm.ChildValues(values, y[..t]), lm.V), lambda).ToDoubleArray()[y[t]]);
                    return Math.Abs(logq - (lm.LogProb(y) + lambda * lm.Reward[TinyLm.Key(y)] - logZ));
                });
            }
            double lam = 0.5 + rng.NextDouble();
            var soft = lm.Values((logp, child) => SoftBackup(logp, child, lam));
            var expected = lm.Values((logp, child) => logp.Select((l, k) => Math.Exp(l) * child[k]).Sum());
            // The library's backups agree with the transcriptions on every prefix.
            foreach (var s in Enumerable.Range(0, lm.L).SelectMany(n => TinyLm.Sequences(lm.V, n)))
            {
                var key = TinyLm.Key(s);
                AssertClose(soft[key], ControlledDecoding.SoftValue(T(lm.LogP[key], lm.V), T(lm.ChildValues(soft, s), lm.V), lam).Item(), 1e-12, "soft value");
                AssertClose(expected[key], ControlledDecoding.ExpectedValue(T(lm.LogP[key], lm.V), T(lm.ChildValues(expected, s), lm.V)).Item(), 1e-12, "expected value");
            }
            Assert.True(MaxError(lam, soft) < 1e-12);
            // CD's expected-reward V: exact only to first order, the log-prob error shrinking as λ².
            double e1 = MaxError(0.1, expected);
            double e2 = MaxError(0.05, expected);
            Assert.True(e1 > 1e-6, $"expected-value error {e1} should not vanish");
            Assert.InRange(e1 / e2, 3.0, 5.0);
        }
    }

    [Fact]
    public void Controlled_decoding_prefix_scorer_loss_best_of_k_and_argument_checks()
    {
        var rng = new Random(93);
        for (int trial = 0; trial < 6; trial++)
        {
            int b = rng.Next(1, 4), len = rng.Next(1, 5);
            var values = Dense.Uniform(rng, b * len); var rewards = Dense.Uniform(rng, b, 0, 1);
            var mask = Enumerable.Range(0, b * len).Select(_ => (double)rng.Next(2)).ToArray();
            double expected = Enumerable.Range(0, b * len).Sum(i => mask[i] * Math.Pow(values[i] - rewards[i / len], 2)) / Math.Max(1, mask.Sum());
            AssertClose(expected, ControlledDecoding.PrefixScorerLoss(T(values, b, len), T(rewards, b), T(mask, b, len)).Item(), 1e-12, "FUDGE loss");
            AssertGrad(x => ControlledDecoding.PrefixScorerLoss(x[0], T(rewards, b), T(mask, b, len)), T(values, b, len));
        }
        Assert.Equal(2, ControlledDecoding.BestOfK(T([0.1, 0.3, 0.9, 0.9], 4)));
        Assert.Equal(0, ControlledDecoding.BestOfK(T([5.0], 1)));
        Assert.Throws<ArgumentException>(() => ControlledDecoding.BestOfK(T([], 0)));
        Assert.Throws<ArgumentException>(() => ControlledDecoding.TokenwiseLogProbs(T([0.0, 0.0], 2), T([0.0], 1), 1));
        Assert.Throws<ArgumentException>(() => ControlledDecoding.TokenwiseLogProbs(T([0.0, 0.0], 2), T([0.0, 0.0], 2), double.NaN));
        Assert.Throws<ArgumentException>(() => ControlledDecoding.SoftValue(T([0.0, 0.0], 2), T([0.0, 0.0], 2), 0));
        AssertGrad(x => ControlledDecoding.TokenwiseLogProbs(x[0], x[1], 0.7), T(Dense.Uniform(rng, 6), 2, 3), T(Dense.Uniform(rng, 6), 2, 3));
    }
}
