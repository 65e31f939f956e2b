using Kiln.Methods.Generative;
using Kiln.Tests.TestKit;
using Xunit;
using Xunit.Abstractions;

namespace Kiln.Tests.Methods;

/// <summary>
/// Physics-informed hard constraints with a mixture of experts (Chalapathi et al., 2024): the constraint
/// A ω + κ ⊙ (V ω)³ = s written out in float64 loops, its implicit gradient against finite differences and against
/// autodiff through an unrolled Newton iteration, and the experts' independence and stitching.
/// </summary>
public class GenerativeHardConstraintMoeTests(ITestOutputHelper output)
{
    // A well-posed random problem per expert: A = 3I + R/2, V = I + 3R′/10, κ ∈ [0, 1] with the first row a boundary row (κ = 0).
    static (Tensor A, Tensor V, Tensor S, Tensor Kappa) Problem(Random rng, int k, int p)
    {
        var a = new double[k * p * p];
        var v = new double[k * p * p];
        for (int e = 0; e < k; e++)
            for (int i = 0; i < p; i++)
                for (int j = 0; j < p; j++)
                {
                    int at = (e * p + i) * p + j;
                    a[at] = (i == j ? 3 : 0) + 0.5 * (rng.NextDouble() * 2 - 1);
                    v[at] = (i == j ? 1 : 0) + 0.3 * (rng.NextDouble() * 2 - 1);
                }
        var s = Dense.Uniform(rng, k * p);
        var kappa = Enumerable.Range(0, k * p).Select(i => i % p == 0 ? 0 : rng.NextDouble()).ToArray();
        return (Tensor.FromArray(a, new Shape(k, p, p)), Tensor.FromArray(v, new Shape(k, p, p)), Tensor.FromArray(s, new Shape(k, p)), Tensor.FromArray(kappa, new Shape(k, p)));
    }

    // Expert e's slice of a [K, ...] tensor.
    static Tensor At(Tensor t, int e) => t.Narrow(0, e, 1).Reshape(t.Shape.ToArray()[1..]);

    // max_i |Σ_j A_ij ω_j + κ_i (Σ_j V_ij ω_j)³ − s_i| over every expert, in float64 loops.
    static double Residual(Tensor a, Tensor v, Tensor s, Tensor kappa, Tensor omega)
    {
        var (aa, va, sa, ka, wa) = (a.ToArray<double>(), v.ToArray<double>(), s.ToArray<double>(), kappa.ToArray<double>(), omega.ToArray<double>());
        int p = a.Shape[^1], k = sa.Length / p;
        double worst = 0;
        for (int e = 0; e < k; e++)
            for (int i = 0; i < p; i++)
            {
                double lin = 0, u = 0;
                for (int j = 0; j < p; j++) { lin += aa[(e * p + i) * p + j] * wa[e * p + j]; u += va[(e * p + i) * p + j] * wa[e * p + j]; }
                worst = Math.Max(worst, Math.Abs(lin + ka[e * p + i] * u * u * u - sa[e * p + i]));
            }
        return worst;
    }

    [Fact]
    public void Constraint_residuals_vanish_for_one_and_many_experts()
    {
        var rng = new Random(2);
        foreach (int k in new[] { 1, 1, 2, 3, 5 })
        {
            int p = rng.Next(1, 7);
            var (a, v, s, kappa) = Problem(rng, k, p);
            var moe = HardConstraintMoe.Experts(a, v, s.Reshape(k * p), kappa.Reshape(k * p));
            Assert.True(Residual(a, v, s, kappa, moe.Coefficients) < 1e-10, $"K={k} p={p}: {Residual(a, v, s, kappa, moe.Coefficients):E2}");
            // The stitched solution is expert k's V_k ω_k on subdomain k.
            var omega = moe.Coefficients.ToArray<double>();
            var va = v.ToArray<double>();
            var u = moe.Solution.ToArray<double>();
            for (int e = 0; e < k; e++)
                for (int i = 0; i < p; i++)
                    Assert.Equal(Enumerable.Range(0, p).Sum(j => va[(e * p + i) * p + j] * omega[e * p + j]), u[e * p + i], 1e-13);
            // The cubic term is active: the linear solution A⁻¹ s violates the constraint.
            if (p > 1) Assert.True(Residual(a, v, s, kappa, a.Solve(s)) > 1e-4);
        }
    }

    [Fact]
    public void A_chebyshev_basis_solves_a_semilinear_pde_exactly_at_its_collocation_points()
    {
        // −u″ + u³ = π² sin πx + sin³ πx on [0, 1], u(0) = u(1) = 0, whose solution is sin πx. Basis T_j(2x − 1) at
        // Chebyshev–Lobatto points; rows 0 and p − 1 are the boundary conditions.
        double previous = double.PositiveInfinity;
        foreach (int p in new[] { 8, 11, 14 })
        {
            var x = Enumerable.Range(0, p).Select(i => (1 - Math.Cos(Math.PI * i / (p - 1))) / 2).ToArray();
            var (a, v) = (new double[p * p], new double[p * p]);
            for (int i = 0; i < p; i++)
            {
                double t = 2 * x[i] - 1;
                var (tv, d1, d2) = (new double[p], new double[p], new double[p]);
                for (int j = 0; j < p; j++)
                {
                    (tv[j], d1[j], d2[j]) = j switch
                    {
                        0 => (1.0, 0.0, 0.0),
                        1 => (t, 1.0, 0.0),
                        _ => (2 * t * tv[j - 1] - tv[j - 2], 2 * tv[j - 1] + 2 * t * d1[j - 1] - d1[j - 2], 4 * d1[j - 1] + 2 * t * d2[j - 1] - d2[j - 2]),
                    };
                    v[i * p + j] = tv[j];
                    a[i * p + j] = i == 0 || i == p - 1 ? tv[j] : -4 * d2[j];
                }
            }
            var s = x.Select((xi, i) => i == 0 || i == p - 1 ? 0 : Math.PI * Math.PI * Math.Sin(Math.PI * xi) + Math.Pow(Math.Sin(Math.PI * xi), 3)).ToArray();
            var kappa = x.Select((_, i) => i == 0 || i == p - 1 ? 0.0 : 1.0).ToArray();
            var (at, vt, st, kt) = (Tensor.FromArray(a, new Shape(1, p, p)), Tensor.FromArray(v, new Shape(1, p, p)), Tensor.FromArray(s), Tensor.FromArray(kappa));
            var moe = HardConstraintMoe.Experts(at, vt, st, kt);
            Assert.True(Residual(at, vt, st.Reshape(1, p), kt.Reshape(1, p), moe.Coefficients) < 1e-10);
            double error = Dense.MaxDiff(moe.Solution.ToArray<double>(), x.Select(xi => Math.Sin(Math.PI * xi)).ToArray());
            output.WriteLine($"p={p}: error {error:E2}");
            Assert.True(error < previous * 0.1, $"p={p}: error {error:E2} after {previous:E2}");
            previous = error;
        }
        Assert.True(previous < 1e-10, $"p=14: error {previous:E2}");
    }

    [Fact]
    public void One_expert_is_the_single_solve_and_experts_are_independent()
    {
        var rng = new Random(3);
        var (a, v, s, kappa) = Problem(rng, 1, 5);
        var single = HardConstraintMoe.Solve(At(a, 0), At(v, 0), At(s, 0), At(kappa, 0));
        var moe = HardConstraintMoe.Experts(a, v, s.Reshape(5), kappa.Reshape(5));
        Assert.Equal(single.ToArray<double>(), moe.Coefficients.ToArray<double>());
        Assert.True(Dense.MaxDiff(At(v, 0).MatMul(single).ToArray<double>(), moe.Solution.ToArray<double>()) < 1e-15);

        // Three experts give each expert's own solve; changing expert 2's data leaves experts 0 and 1 alone.
        var (a3, v3, s3, k3) = Problem(rng, 3, 4);
        var joint = HardConstraintMoe.Experts(a3, v3, s3.Reshape(12), k3.Reshape(12)).Coefficients.ToArray<double>();
        var s3b = s3.ToArray<double>();
        for (int i = 8; i < 12; i++) s3b[i] = 0.9;
        var changed = HardConstraintMoe.Experts(a3, v3, Tensor.FromArray(s3b), k3.Reshape(12)).Coefficients.ToArray<double>();
        for (int e = 0; e < 3; e++)
        {
            var alone = HardConstraintMoe.Solve(At(a3, e), At(v3, e), At(s3, e), At(k3, e)).ToArray<double>();
            Assert.True(Dense.MaxDiff(alone, joint[(e * 4)..(e * 4 + 4)]) < 1e-13);
            if (e < 2) Assert.True(Dense.MaxDiff(alone, changed[(e * 4)..(e * 4 + 4)]) < 1e-13);
        }
        Assert.True(Dense.MaxDiff(joint[8..], changed[8..]) > 1e-3);
    }

    [Fact]
    public void Implicit_gradient_matches_finite_differences()
    {
        var (a, v, s, kappa) = Problem(new Random(4), 2, 3);
        var gc = GradCheck.Run(xs => HardConstraintMoe.Solve(xs[0], xs[1], xs[2], kappa), [a, v, s]);
        Assert.True(gc.Passed, gc.ToString());
        var gcMoe = GradCheck.Run(xs => HardConstraintMoe.Experts(xs[0], xs[1], xs[2], kappa.Reshape(6)).Solution, [a, v, s.Reshape(6)]);
        Assert.True(gcMoe.Passed, gcMoe.ToString());
    }

    [Fact]
    public void Implicit_gradient_matches_autodiff_through_unrolled_newton()
    {
        var rng = new Random(5);
        for (int trial = 0; trial < 4; trial++)
        {
            int k = rng.Next(1, 4), p = rng.Next(1, 6);
            var (a0, v0, s0, kappa) = Problem(rng, k, p);
            var weights = Tensor.FromArray(Dense.Uniform(rng, k * p), new Shape(k, p));
            var (a, v, s) = (a0.Clone().RequiresGrad_(), v0.Clone().RequiresGrad_(), s0.Clone().RequiresGrad_());
            // Newton written out: ω ← ω − G_ω⁻¹ G(ω), recorded by autodiff at every step.
            var omega = a.Solve(s);
            for (int it = 0; it < 30; it++)
            {
                var u = (v * omega.Unsqueeze(1)).Sum([2]);
                var g = (a * omega.Unsqueeze(1)).Sum([2]) + kappa * u.Pow(3) - s;
                omega = omega - (a + (3 * kappa * u.Pow(2)).Unsqueeze(2) * v).Solve(g);
            }
            var unrolled = Autograd.Grad([(omega * weights).Sum()], [a, v, s]);
            var (ai, vi, si) = (a0.Clone().RequiresGrad_(), v0.Clone().RequiresGrad_(), s0.Clone().RequiresGrad_());
            var implicitGrads = Autograd.Grad([(HardConstraintMoe.Solve(ai, vi, si, kappa) * weights).Sum()], [ai, vi, si]);
            for (int i = 0; i < 3; i++)
                Assert.True(Dense.MaxDiff(unrolled[i].ToArray<double>(), implicitGrads[i].ToArray<double>()) < 1e-10, $"input {i}");
        }
    }

    [Fact]
    public void Bad_input_is_named()
    {
        var (a, v, s, kappa) = Problem(new Random(6), 2, 3);
        Assert.Equal("operatorBasis", Assert.Throws<ShapeMismatchException>(() => HardConstraintMoe.Solve(Tensor.Zeros(new Shape(2, 3, 4), DType.Float64), v, s, kappa)).ParamName);
        Assert.Equal("valueBasis", Assert.Throws<ShapeMismatchException>(() => HardConstraintMoe.Solve(a, At(v, 0), s, kappa)).ParamName);
        Assert.Equal("source", Assert.Throws<ShapeMismatchException>(() => HardConstraintMoe.Solve(a, v, s.Reshape(6), kappa)).ParamName);
        Assert.Equal("reaction", Assert.Throws<ShapeMismatchException>(() => HardConstraintMoe.Solve(a, v, s, At(kappa, 0))).ParamName);
        Assert.Equal("tolerance", Assert.Throws<ArgumentOutOfRangeException>(() => HardConstraintMoe.Solve(a, v, s, kappa, tolerance: 0)).ParamName);
        Assert.Equal("operatorBasis", Assert.Throws<ShapeMismatchException>(() => HardConstraintMoe.Experts(At(a, 0), At(v, 0), At(s, 0), At(kappa, 0))).ParamName);
        Assert.Equal("source", Assert.Throws<ShapeMismatchException>(() => HardConstraintMoe.Experts(a, v, Tensor.Zeros(new Shape(5), DType.Float64), kappa.Reshape(6))).ParamName);
        // One Newton step cannot reach the tolerance on an active cubic term.
        var ex = Assert.Throws<InvalidOperationException>(() => HardConstraintMoe.Solve(a, v, s, kappa, maxIterations: 1));
        Assert.Contains("did not converge", ex.Message);
    }
}
