using Kiln.Methods.Reward;
using Xunit;

namespace Kiln.Tests.Reward;

/// <summary>The tridiagonal eigensolver, Gauss-Hermite rules, Hermite coefficients, exponents and Mehler's identity.</summary>
public class HermiteTests
{
    [Theory, InlineData(1), InlineData(2), InlineData(7), InlineData(40)]
    public void Tridiagonal_eigen_matches_the_second_difference_matrix(int n)
    {
        // diag 2, off-diagonal -1: eigenvalues 2 - 2cos(kπ/(n+1)), eigenvectors sin(jkπ/(n+1)) with first component² = 2 sin²(kπ/(n+1))/(n+1).
        var (values, first) = Tridiagonal.Eigen(Enumerable.Repeat(2.0, n).ToArray(), Enumerable.Repeat(-1.0, n - 1).ToArray());
        for (int k = 1; k <= n; k++)
        {
            double t = k * Math.PI / (n + 1);
            Assert.Equal(2 - 2 * Math.Cos(t), values[k - 1], 1e-12);
            Assert.Equal(2 * Math.Sin(t) * Math.Sin(t) / (n + 1), first[k - 1] * first[k - 1], 1e-12);
        }
    }

    [Fact]
    public void Tridiagonal_eigen_rejects_a_wrong_off_diagonal_length()
    {
        var ex = Assert.Throws<ArgumentException>(() => Tridiagonal.Eigen(new double[3], new double[3]));
        Assert.Contains("offDiagonal", ex.Message);
    }

    [Fact]
    public void Three_point_rule_is_the_known_one()
    {
        var r = Hermite.Rule(3);
        Assert.Equal([-Math.Sqrt(3), 0, Math.Sqrt(3)], r.Nodes, (a, b) => Math.Abs(a - b) < 1e-14);
        Assert.Equal([1 / 6.0, 2 / 3.0, 1 / 6.0], r.Weights, (a, b) => Math.Abs(a - b) < 1e-14);
    }

    [Theory, InlineData(10), InlineData(60), InlineData(240)]
    public void Rules_integrate_moments_exactly_and_match_christoffel_weights(int n)
    {
        var r = Hermite.Rule(n);
        // E[z^(2k)] = (2k-1)!! up to degree 2n-1, relative to its size.
        double dfact = 1;
        for (int k = 1; 2 * k <= Math.Min(2 * n - 1, 40); k++)
        {
            dfact *= 2 * k - 1;
            Assert.Equal(1, r.Expect(z => Math.Pow(z, 2 * k)) / dfact, 1e-11);
            Assert.Equal(0, r.Expect(z => Math.Pow(z, 2 * k - 1)) / dfact, 1e-11);
        }
        // Gauss weights are w_i = 1 / Σ_{k<n} h_k(x_i)² (Christoffel); checked where they matter (above 1e-30).
        for (int i = 0; i < n; i++)
        {
            if (r.Weights[i] < 1e-30) continue;
            double s = Hermite.Normalized(n - 1, r.Nodes[i]).Sum(h => h * h);
            Assert.Equal(1, r.Weights[i] * s, 1e-9);
        }
    }

    [Fact]
    public void Rule_rejects_bad_sizes()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Hermite.Rule(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Hermite.Rule(1001));
    }

    [Fact]
    public void Coefficients_of_polynomials_have_closed_forms()
    {
        // z³ = He_3 + 3 He_1 → c_1 = 3, c_3 = sqrt(3!) ; z² = He_2 + 1 → c_0 = 1, c_2 = sqrt(2); He_4/sqrt(4!) → c_4 = 1.
        AssertCoefficients(Hermite.Coefficients(z => z * z * z, 6, 10), [0, 3, 0, Math.Sqrt(6), 0, 0, 0]);
        AssertCoefficients(Hermite.Coefficients(z => z * z, 6, 10), [1, 0, Math.Sqrt(2), 0, 0, 0, 0]);
        AssertCoefficients(Hermite.Coefficients(z => (z * z * z * z - 6 * z * z + 3) / Math.Sqrt(24), 6, 10), [0, 0, 0, 0, 1, 0, 0]);
    }

    [Theory, InlineData(0.5), InlineData(-1.3)]
    public void Coefficients_of_exponentials_have_closed_forms(double t)
    {
        // E[exp(tz) h_k(z)] = exp(t²/2) t^k / sqrt(k!).
        var c = Hermite.Coefficients(z => Math.Exp(t * z), 12, 80);
        double fact = 1;
        for (int k = 0; k <= 12; k++)
        {
            if (k > 0) fact *= k;
            Assert.Equal(Math.Exp(t * t / 2) * Math.Pow(t, k) / Math.Sqrt(fact), c[k], 1e-12);
        }
    }

    [Fact]
    public void Tanh_coefficients_match_a_fine_trapezoid_rule()
    {
        // The trapezoid rule on a wide grid converges geometrically for analytic integrands that decay like φ: an independent quadrature.
        var gh = Hermite.Coefficients(Math.Tanh, 9);
        var tr = Trapezoid(Math.Tanh, 9);
        AssertCoefficients(gh, tr, 1e-11);
        Assert.Equal(tr[1], Hermite.Coefficients(Link.Tanh, 1)[1], 1e-12);
        // c_1(tanh) = E[sech²(z)] > 0 and the even coefficients vanish.
        Assert.InRange(gh[1], 0.60, 0.61);
        for (int k = 0; k <= 9; k += 2) Assert.Equal(0, gh[k], 1e-14);
    }

    [Fact]
    public void Built_in_links_have_the_stated_exponents()
    {
        var tanh = Hermite.Coefficients(Link.Tanh, 8);
        var odd = Hermite.Coefficients(Link.Odd3, 8);
        var even = Hermite.Coefficients(Link.Even, 8);
        Assert.Equal(1, Hermite.InformationExponent(tanh));
        Assert.Equal(3, Hermite.InformationExponent(odd));
        Assert.Equal(2, Hermite.InformationExponent(even));
        Assert.Equal(0, odd[1], 1e-12);
        Assert.Equal(0, even[0], 1e-12);
        // Independent check of the odd link's first coefficient on the trapezoid grid.
        Assert.Equal(0, Trapezoid(Link.Odd3.Scalar, 1)[1], 1e-11);
        Assert.Null(Hermite.InformationExponent([1.0, 0, 0]));
    }

    [Theory, InlineData(0.25), InlineData(1.0), InlineData(4.0)]
    public void Weighting_gives_the_odd_link_a_first_order_signal_but_not_the_even_one(double beta)
    {
        // Generative exponent: exp(y/β) is a label transform with a degree-1 component for the odd link only.
        Assert.True(Math.Abs(Hermite.EffectiveLabelCoefficients(Link.Odd3, beta, 1)[1]) > 1e-5);
        Assert.Equal(0, Hermite.EffectiveLabelCoefficients(Link.Even, beta, 1)[1], 1e-12);
        Assert.Equal(0, Hermite.EffectiveLabelCoefficients(Link.Odd3, double.PositiveInfinity, 1)[1], 1e-12);
    }

    [Theory, InlineData(0.5, 0.3), InlineData(2.0, 0.0), InlineData(0.125, 0.2)]
    public void Effective_label_closed_form_matches_integration_over_the_noise(double beta, double s)
    {
        var link = Link.Odd3;
        var t = Hermite.EffectiveLabel(link, beta, Psi.Label, s);
        var t1 = Hermite.EffectiveLabel(link, beta, Psi.One, s);
        // Direct double integral over (z, ε): 400 nodes in z (the link has poles near the real axis), 60 in ε (entire integrand).
        var rz = Hermite.Rule(400); var re = Hermite.Rule(60);
        double z0 = rz.Nodes.Max(z => link.Scalar(z) / beta);
        double zNorm = rz.Expect(z => re.Expect(e => Math.Exp((link.Scalar(z) + s * e) / beta - z0)));
        foreach (var z in new[] { -2.0, -0.3, 0.7, 1.9 })
        {
            double num = re.Expect(e => { double y = link.Scalar(z) + s * e; return y * Math.Exp(y / beta - z0); });
            double num1 = re.Expect(e => Math.Exp((link.Scalar(z) + s * e) / beta - z0));
            Assert.Equal(num / zNorm, t(z), 1e-9 * Math.Max(1, Math.Abs(num / zNorm)));
            Assert.Equal(num1 / zNorm, t1(z), 1e-9 * Math.Max(1, num1 / zNorm));
        }
    }

    [Theory, InlineData(0.6), InlineData(-0.8), InlineData(0.25)]
    public void Mehler_identity_holds_by_monte_carlo(double rho)
    {
        // E[f(<w,x>) g(<θ,x>)] = Σ_k c_k(f) c_k(g) <w,θ>^k, checked against a float64 Monte Carlo estimate within 5 standard errors.
        const int d = 6, n = 1 << 20;
        var g = new Generator(11);
        var theta = Tensor.FromArray(new double[] { 1, 0, 0, 0, 0, 0 });
        var w = Tensor.FromArray(new double[] { rho, Math.Sqrt(1 - rho * rho), 0, 0, 0, 0 });
        var x = Tensor.Randn([n, d], g, dtype: DType.Float64);
        foreach (var (f, gl) in new[] { (Link.Tanh, Link.Odd3), (Link.Even, Link.Even), (Link.Odd3, Link.Odd3) })
        {
            var prod = f.Apply(x.MatMul(w)) * gl.Apply(x.MatMul(theta));
            double mean = prod.Mean().Item(), se = Math.Sqrt(prod.Var().Item() / n);
            var cf = Hermite.Coefficients(f, 40); var cg = Hermite.Coefficients(gl, 40);
            double series = Enumerable.Range(0, 41).Sum(k => cf[k] * cg[k] * Math.Pow(rho, k));
            Assert.True(Math.Abs(mean - series) < 5 * se, $"{f}·{gl} at ρ = {rho}: Monte Carlo {mean:G6} ± {se:G2}, series {series:G6}");
        }
    }

    static double[] Trapezoid(Func<double, double> f, int kmax)
    {
        const double h = 0.005, L = 40;
        var c = new double[kmax + 1];
        for (double z = -L; z <= L; z += h)
        {
            double wz = h * Math.Exp(-z * z / 2) / Math.Sqrt(2 * Math.PI) * f(z);
            var hk = Hermite.Normalized(kmax, z);
            for (int k = 0; k <= kmax; k++) c[k] += wz * hk[k];
        }
        return c;
    }

    static void AssertCoefficients(double[] actual, double[] expected, double tol = 1e-12)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int k = 0; k < expected.Length; k++) Assert.True(Math.Abs(actual[k] - expected[k]) <= tol, $"c_{k}: got {actual[k]:R}, expected {expected[k]:R}");
    }
}
