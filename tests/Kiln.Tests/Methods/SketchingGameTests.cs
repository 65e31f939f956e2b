using Kiln.Methods.Sketching;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests.Methods;

/// <summary>
/// The representation-learning game (Uzan and Weinberger, ICLR 2024) against brute force written here: the regret
/// as a least-squares residual on sampled data, nature's best response against sampled tasks on the class, the closed-
/// form minimax representation against random and hill-climbed representations, the water-filling mixed strategy
/// against the numerically solved finite game and random mixtures of representations.
/// </summary>
public class SketchingGameTests
{
    static Tensor T(double[] v, params int[] shape) => Tensor.FromArray(v, new Shape(shape));
    static double[] H(Tensor t) => t.To(DType.Float64).Contiguous().ToArray<double>();

    // A random positive definite [d, d] matrix M = A Aᵀ + 0.2 I and its square root (so {M^½ g : ‖g‖ ≤ 1} = F_M).
    static (double[] M, double[] Factor) Spd(Random r, int d)
    {
        var a = Dense.Uniform(r, d * d);
        var m = Dense.Add(Dense.Mul(a, Dense.T(a, d, d), d, d, d), Dense.Scale(Dense.Eye(d), 0.2));
        return (m, Dense.SymPow(m, d, 0.5));
    }

    // fᵀΣf − fᵀΣR(RᵀΣR)⁻¹RᵀΣf, written out with the normal equations.
    static double RegretOf(double[] sigma, double[] r, double[] f, int d, int k)
    {
        var sf = Dense.Mul(sigma, f, d, d, 1);
        double total = f.Select((x, i) => x * sf[i]).Sum();
        if (k == 0) return total;
        var rt = Dense.T(r, d, k);
        var g = Dense.Mul(Dense.Mul(rt, sigma, k, d, d), r, k, d, k);
        var c = Dense.Mul(rt, sf, k, d, 1);
        var w = SketchingTests.SolveDense(g, c, k, 1);
        return total - c.Select((x, i) => x * w[i]).Sum();
    }

    static double[] UnitVector(Random r, int d)
    {
        var g = Enumerable.Range(0, d).Select(_ => Gaussian(r)).ToArray();
        double n = Math.Sqrt(g.Sum(x => x * x));
        return g.Select(x => x / n).ToArray();
    }

    static double Gaussian(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    // The largest regret of R over sampled tasks f = L g, ‖g‖ = 1 (the boundary of F_S for S = L Lᵀ).
    static double SampledWorst(double[] sigma, double[] factor, double[] r, int d, int k, Random rng, int samples) =>
        Enumerable.Range(0, samples).Max(_ => RegretOf(sigma, r, Dense.Mul(factor, UnitVector(rng, d), d, d, 1), d, k));

    [Fact]
    public void Regret_is_the_least_squares_excess_error_on_sampled_data()
    {
        var rng = new Random(1);
        for (int trial = 0; trial < 12; trial++)
        {
            int d = 2 + trial % 4, k = trial % d, n = 40;
            // Rows of X with a random covariance; Σ̂ = XᵀX/n is then the covariance of the sample exactly.
            var (_, factor) = Spd(rng, d);
            var x = Dense.Mul(Enumerable.Range(0, n * d).Select(_ => Gaussian(rng)).ToArray(), Dense.T(factor, d, d), n, d, d);
            var sigma = Dense.Scale(Dense.Mul(Dense.T(x, n, d), x, d, n, d), 1.0 / n);
            var r = Dense.Uniform(rng, d * k);
            var f = Dense.Uniform(rng, 3 * d);
            var got = H(RepresentationGame.Regret(T(sigma, d, d), T(r, d, k), T(f, 3, d)));
            for (int j = 0; j < 3; j++)
            {
                var fj = f.Skip(j * d).Take(d).ToArray();
                var y = Dense.Mul(x, fj, n, d, 1);
                double mse = y.Select(v => v * v).Sum() / n;
                if (k > 0)
                {
                    var z = Dense.Mul(x, r, n, d, k);
                    var w = SketchingTests.WeightedNormal(z, y, Enumerable.Repeat(1.0, n).ToArray(), n, k);
                    var fit = Dense.Mul(z, w, n, k, 1);
                    mse = y.Select((v, i) => (v - fit[i]) * (v - fit[i])).Sum() / n;
                }
                // y = Xf is fitted exactly from x, so the excess error is the residual of the regression on z = Rᵀx.
                Assert.Equal(mse, got[j], 1e-9 * Math.Max(1, mse));
                Assert.Equal(RegretOf(sigma, r, fj, d, k), got[j], 1e-9 * Math.Max(1, mse));
            }
            var single = RepresentationGame.Regret(T(sigma, d, d), T(r, d, k), T(f.Take(d).ToArray(), d));
            Assert.Equal(0, single.Rank);
            Assert.Equal(got[0], single.Item(), 1e-12);
        }
    }

    [Fact]
    public void Worst_task_is_feasible_attains_its_regret_and_no_sampled_task_beats_it()
    {
        var rng = new Random(2);
        for (int trial = 0; trial < 9; trial++)
        {
            int d = 2 + trial % 3, k = 1 + trial % (d - 1);
            var (sigma, _) = Spd(rng, d);
            var (s, factor) = Spd(rng, d);
            var r = Dense.Uniform(rng, d * k);
            var (value, task) = RepresentationGame.WorstTask(T(sigma, d, d), T(s, d, d), T(r, d, k));
            var f = H(task);
            // f = L g with ‖g‖ ≤ 1: fᵀS⁻¹f ≤ 1.
            var g = SketchingTests.SolveDense(factor, f, d, 1);
            Assert.True(g.Sum(v => v * v) <= 1 + 1e-9, $"‖L⁻¹f‖² = {g.Sum(v => v * v)}");
            Assert.Equal(RegretOf(sigma, r, f, d, k), value, 1e-9 * value);
            double sampled = SampledWorst(sigma, factor, r, d, k, rng, 2000);
            Assert.True(sampled <= value * (1 + 1e-10), $"sampled {sampled} > worst {value}");
            Assert.True(sampled >= value * 0.95, $"sampled {sampled} far below worst {value}");
        }
    }

    [Fact]
    public void Closed_form_minimax_is_attained_and_no_random_or_hill_climbed_representation_beats_it()
    {
        var rng = new Random(3);
        foreach (var (d, k) in new[] { (2, 1), (3, 1), (3, 2), (4, 1), (4, 2), (4, 3) })
        {
            var (sigma, _) = Spd(rng, d);
            var (s, factor) = Spd(rng, d);
            Tensor ts = T(sigma, d, d), tS = T(s, d, d);
            var (rStar, value) = RepresentationGame.Minimax(ts, tS, k);
            Assert.Equal(new Shape(d, k), rStar.Shape);
            // The value is the (k+1)-th eigenvalue of Σ^½ S Σ^½ (the float64 Jacobi reference here).
            var half = Dense.SymPow(sigma, d, 0.5);
            var (w, _) = Dense.Eigh(Dense.Mul(Dense.Mul(half, s, d, d, d), half, d, d, d), d);
            Assert.Equal(w.OrderByDescending(v => v).ElementAt(k), value, 1e-9 * w.Max());
            double worstStar = RepresentationGame.WorstTask(ts, tS, rStar).Regret;
            Assert.Equal(value, worstStar, 1e-9 * w.Max());
            double sampledStar = SampledWorst(sigma, factor, H(rStar), d, k, rng, 2000);
            Assert.True(sampledStar <= value * (1 + 1e-9) && sampledStar >= value * 0.95, $"d={d} k={k}: sampled {sampledStar} vs {value}");
            // Random representations, then a hill climb on the worst-case regret from the best of them.
            double best = double.MaxValue;
            double[] bestR = [];
            for (int i = 0; i < 50; i++)
            {
                var r = Dense.Uniform(rng, d * k);
                double v = RepresentationGame.WorstTask(ts, tS, T(r, d, k)).Regret;
                Assert.True(v >= value * (1 - 1e-10), $"d={d} k={k}: a random R has worst regret {v} < {value}");
                if (v < best) (best, bestR) = (v, r);
            }
            for (double step = 0.3; step > 5e-3; step *= 0.6)
                for (int i = 0; i < 10; i++)
                {
                    var r = Dense.Add(bestR, Dense.Uniform(rng, d * k), step);
                    double v = RepresentationGame.WorstTask(ts, tS, T(r, d, k)).Regret;
                    Assert.True(v >= value * (1 - 1e-10), $"d={d} k={k}: a climbed R has worst regret {v} < {value}");
                    if (v < best) (best, bestR) = (v, r);
                }
            Assert.True(best <= value * 1.05, $"d={d} k={k}: the search reached {best}, the closed form is {value}");
        }
    }

    [Fact]
    public void Degenerate_dimensions_keep_nothing_or_everything()
    {
        var rng = new Random(4);
        int d = 3;
        var (sigma, _) = Spd(rng, d);
        var (s, _) = Spd(rng, d);
        Tensor ts = T(sigma, d, d), tS = T(s, d, d);
        var f = Dense.Uniform(rng, d);
        var half = Dense.SymPow(sigma, d, 0.5);
        var (w, _) = Dense.Eigh(Dense.Mul(Dense.Mul(half, s, d, d, d), half, d, d, d), d);

        var (r0, v0) = RepresentationGame.Minimax(ts, tS, 0);
        Assert.Equal(new Shape(d, 0), r0.Shape);
        Assert.Equal(w.Max(), v0, 1e-9 * w.Max());
        Assert.Equal(v0, RepresentationGame.WorstTask(ts, tS, r0).Regret, 1e-9 * w.Max());
        Assert.Equal(RegretOf(sigma, [], f, d, 0), RepresentationGame.Regret(ts, r0, T(f, d)).Item(), 1e-12);
        var m0 = RepresentationGame.MixedMinimax(ts, tS, 0);
        Assert.Equal(v0, m0.Regret, 1e-9 * w.Max());
        Assert.Equal(new Shape(d, 0), m0.Sample(new Generator(1)).Shape);

        var (rd, vd) = RepresentationGame.Minimax(ts, tS, d);
        Assert.Equal(0, vd);
        Assert.True(Math.Abs(RepresentationGame.Regret(ts, rd, T(f, d)).Item()) < 1e-10);
        Assert.True(RepresentationGame.WorstTask(ts, tS, rd).Regret < 1e-10);
        var md = RepresentationGame.MixedMinimax(ts, tS, d);
        Assert.Equal(0, md.Regret);
        Assert.All(md.Probabilities, q => Assert.Equal(1, q, 1e-12));
    }

    [Fact]
    public void Water_filling_beats_the_pure_minimax_and_matches_the_numerically_solved_game()
    {
        var rng = new Random(5);
        foreach (var (d, k) in new[] { (2, 1), (3, 1), (3, 2), (4, 2) })
        {
            var (sigma, _) = Spd(rng, d);
            var (s, _) = Spd(rng, d);
            Tensor ts = T(sigma, d, d), tS = T(s, d, d);
            double pure = RepresentationGame.Minimax(ts, tS, k).Regret;
            var mixed = RepresentationGame.MixedMinimax(ts, tS, k);
            Assert.Equal(k, mixed.Probabilities.Sum(), 1e-12);
            Assert.All(mixed.Probabilities, q => Assert.InRange(q, 0, 1));
            Assert.True(mixed.Regret < pure * (1 - 1e-6), $"d={d} k={k}: mixed {mixed.Regret} is not below pure {pure}");
            // Its worst case over the class: the top eigenvalue of S^½Σ^½(I − Q)Σ^½S^½, by the Jacobi reference.
            var half = Dense.SymPow(sigma, d, 0.5);
            var sHalf = Dense.SymPow(s, d, 0.5);
            double Worst(double[] q)
            {
                var b = Dense.Mul(Dense.Mul(Dense.Mul(Dense.Mul(sHalf, half, d, d, d), Dense.Add(Dense.Eye(d), q, -1), d, d, d), half, d, d, d), sHalf, d, d, d);
                return Dense.Eigh(Dense.Scale(Dense.Add(b, Dense.T(b, d, d)), 0.5), d).W.Max();
            }
            Assert.Equal(mixed.Regret, Worst(H(mixed.ExpectedProjection())), 1e-9 * pure);
            // No random mixture of random pure representations does better.
            for (int i = 0; i < 40; i++)
            {
                var q = new double[d * d];
                var weights = Dense.Uniform(rng, 3, 0, 1);
                for (int l = 0; l < 3; l++)
                {
                    var c = Dense.Mul(half, Dense.Uniform(rng, d * k), d, d, k);
                    var proj = Dense.Mul(Dense.Mul(c, SketchingTests.SolveDense(Dense.Mul(Dense.T(c, d, k), c, k, d, k), Dense.Eye(k), k, k), d, k, k), Dense.T(c, d, k), d, k, d);
                    q = Dense.Add(q, proj, weights[l] / weights.Sum());
                }
                Assert.True(Worst(q) >= mixed.Regret * (1 - 1e-10), $"d={d} k={k}: a random mixture reached {Worst(q)} < {mixed.Regret}");
            }
            // The finite class of the d eigen-tasks (aᵢ = √λᵢ uᵢ) has the same mixed value; solve it numerically.
            var m = Dense.Mul(Dense.Mul(half, s, d, d, d), half, d, d, d);
            var (lam, u) = Dense.Eigh(m, d);
            var invHalf = Dense.SymPow(sigma, d, -0.5);
            var tasks = new double[d * d];
            for (int i = 0; i < d; i++)
            {
                var a = Enumerable.Range(0, d).Select(r => Math.Sqrt(Math.Max(lam[i], 0)) * u[r * d + i]).ToArray();
                Array.Copy(Dense.Mul(invHalf, a, d, d, 1), 0, tasks, i * d, d);
            }
            var game = RepresentationGame.SolveFiniteGame(ts, T(tasks, d, d), k, tolerance: 1e-5);
            Assert.True(game.Regret - game.LowerBound <= 1e-5 * lam.Max(), $"gap {game.Regret - game.LowerBound}");
            Assert.InRange(mixed.Regret, game.LowerBound - 1e-9 * pure, game.Regret + 1e-9 * pure);
        }
    }

    [Fact]
    public void Finite_game_certificate_holds_against_pure_and_mixed_representations_and_sampling_keeps_the_marginals()
    {
        var rng = new Random(6);
        int d = 3, k = 1, m = 4;
        var (sigma, _) = Spd(rng, d);
        var tasks = Dense.Uniform(rng, m * d);
        Tensor ts = T(sigma, d, d), tf = T(tasks, m, d);
        var game = RepresentationGame.SolveFiniteGame(ts, tf, k, tolerance: 1e-7);
        double scale = Enumerable.Range(0, m).Max(j => RegretOf(sigma, [], tasks.Skip(j * d).Take(d).ToArray(), d, 0));
        Assert.True(game.Regret - game.LowerBound <= 1e-7 * scale, $"gap {game.Regret - game.LowerBound}");
        Assert.Equal(game.Regret, H(game.ExpectedRegret(tf)).Max(), 1e-10 * scale);
        var p = H(game.TaskMixture!);
        Assert.Equal(1, p.Sum(), 1e-12);
        Assert.All(p, v => Assert.True(v >= 0));
        double PureWorst(double[] r) => Enumerable.Range(0, m).Max(j => RegretOf(sigma, r, tasks.Skip(j * d).Take(d).ToArray(), d, k));
        var pures = Enumerable.Range(0, 200).Select(_ => Dense.Uniform(rng, d * k)).ToArray();
        Assert.All(pures, r => Assert.True(PureWorst(r) >= game.LowerBound - 1e-10 * scale));
        // Random mixtures of three pure representations: their worst expected regret over the tasks.
        for (int i = 0; i < 100; i++)
        {
            var w = Dense.Uniform(rng, 3, 0, 1);
            var pick = Enumerable.Range(0, 3).Select(_ => pures[rng.Next(pures.Length)]).ToArray();
            double worst = Enumerable.Range(0, m).Max(j => Enumerable.Range(0, 3).Sum(l => w[l] / w.Sum() * RegretOf(sigma, pick[l], tasks.Skip(j * d).Take(d).ToArray(), d, k)));
            Assert.True(worst >= game.LowerBound - 1e-10 * scale, $"mixture worst {worst} < {game.LowerBound}");
        }
        // Every draw keeps k directions, and the draws' average regret per task approaches the expected regret.
        var gen = new Generator(7);
        var mean = new double[m];
        int draws = 1000;
        for (int i = 0; i < draws; i++)
        {
            var r = game.Sample(gen);
            Assert.Equal(new Shape(d, k), r.Shape);
            var reg = H(RepresentationGame.Regret(ts, r, tf));
            for (int j = 0; j < m; j++) mean[j] += reg[j] / draws;
        }
        var expected = H(game.ExpectedRegret(tf));
        for (int j = 0; j < m; j++) Assert.Equal(expected[j], mean[j], 0.06 * scale);   // about 3.4 standard errors
    }

    [Fact]
    public void Bad_input_is_named()
    {
        var eye = Tensor.Eye(3, dtype: DType.Float64);
        var r = Tensor.Ones(new Shape(3, 1), DType.Float64);
        var f = Tensor.Ones(new Shape(3), DType.Float64);
        Assert.Contains("symmetric", Assert.Throws<ArgumentException>(() => RepresentationGame.Regret(T([1, 2, 0, 1], 2, 2), T([1, 0], 2, 1), T([1, 1], 2))).Message);
        var ex = Assert.Throws<ArgumentException>(() => RepresentationGame.Minimax(T([1, 0, 0, -1], 2, 2), T([1, 0, 0, 1], 2, 2), 1));
        Assert.Equal("covariance", ex.ParamName);
        Assert.Contains("-1", ex.Message);
        Assert.Equal("representation", Assert.Throws<ShapeMismatchException>(() => RepresentationGame.Regret(eye, Tensor.Ones(new Shape(2, 1), DType.Float64), f)).ParamName);
        Assert.Equal("tasks", Assert.Throws<ShapeMismatchException>(() => RepresentationGame.Regret(eye, r, Tensor.Ones(new Shape(4), DType.Float64))).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentOutOfRangeException>(() => RepresentationGame.Minimax(eye, eye, 4)).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentOutOfRangeException>(() => RepresentationGame.MixedMinimax(eye, eye, -1)).ParamName);
        Assert.Equal("taskCovariance", Assert.Throws<ShapeMismatchException>(() => RepresentationGame.WorstTask(eye, Tensor.Eye(2, dtype: DType.Float64), r)).ParamName);
        Assert.Equal("taskCovariance", Assert.Throws<ArgumentException>(() => RepresentationGame.Minimax(eye, -1.0 * eye, 1)).ParamName);
        Assert.Equal("tasks", Assert.Throws<ArgumentException>(() => RepresentationGame.SolveFiniteGame(eye, Tensor.Zeros(new Shape(0, 3), DType.Float64), 1)).ParamName);
    }
}
