namespace Kiln.Methods.Reward;

/// <summary>
/// A link σ* of the single-index reward r*(x) = σ*(&lt;θ*, x&gt;), as a tensor function (so rewards run on any device) and
/// the same function on doubles (for quadrature). Built in: <see cref="Tanh"/> (information exponent 1),
/// <see cref="Odd3"/> (odd, information exponent 3, generative exponent 1) and <see cref="Even"/> (both exponents 2).
/// </summary>
public sealed class Link
{
    /// <summary>A link from a tensor function and, optionally, the same function on doubles (derived from the tensor
    /// function through a one-element float64 tensor when omitted, which is correct but slow).</summary>
    /// <param name="name">A short name for tables and JSON.</param>
    /// <param name="apply">σ applied elementwise to a tensor of any shape, dtype and device.</param>
    /// <param name="scalar">σ on a double.</param>
    public Link(string name, Func<Tensor, Tensor> apply, Func<double, double>? scalar = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(apply);
        Name = name;
        Apply = apply;
        Scalar = scalar ?? (z => apply(Tensor.Scalar(z, DType.Float64)).Item());
    }

    /// <summary>The name used in tables, JSON and <see cref="Parse"/>.</summary>
    public string Name { get; }
    /// <summary>σ elementwise on a tensor.</summary>
    public Func<Tensor, Tensor> Apply { get; }
    /// <summary>σ on a double.</summary>
    public Func<double, double> Scalar { get; }

    /// <inheritdoc/>
    public override string ToString() => Name;

    /// <summary>σ(z) = tanh(z): c_1 = E[sech²(z)] ≈ 0.6057 ≠ 0, information exponent 1.</summary>
    public static Link Tanh { get; } = new("tanh", z => z.Tanh(), Math.Tanh);

    /// <summary>
    /// σ(z) = tanh(2z) - a·tanh(z/2) with a = c_1(tanh(2·))/c_1(tanh(·/2)) = 4 E[sech²(2z)] / E[sech²(z/2)], so the
    /// degree-1 Hermite coefficient vanishes. Odd and bounded: c_2 = 0, c_3 ≠ 0 (information exponent 3), yet a
    /// nonlinear label transform such as exp(y/β) has a degree-1 component (generative exponent 1).
    /// </summary>
    public static Link Odd3 { get; } = MakeOdd3();

    /// <summary>σ(z) = tanh(z²) - E[tanh(z²)]: even, bounded, centred; c_1 = 0, c_2 ≠ 0, and every label transform is
    /// still even in z, so both the information and the generative exponent are 2.</summary>
    public static Link Even { get; } = MakeEven();

    /// <summary>The odd link's constant a.</summary>
    public static double Odd3Coefficient { get; } = OddA();

    /// <summary>The even link's centring constant E[tanh(z²)].</summary>
    public static double EvenMean { get; } = Hermite.Rule(800).Expect(z => Math.Tanh(z * z));

    /// <summary>The built-in links by name.</summary>
    public static IReadOnlyList<Link> BuiltIn => [Tanh, Odd3, Even];

    /// <summary>A built-in link by name: tanh, odd3 or even.</summary>
    /// <exception cref="ArgumentException">The name is not a built-in link.</exception>
    public static Link Parse(string name) =>
        BuiltIn.FirstOrDefault(l => string.Equals(l.Name, name?.Trim(), StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"link: unknown link '{name}'; built in are {string.Join(", ", BuiltIn.Select(l => l.Name))}", nameof(name));

    static double Sech2(double z) { double c = Math.Cosh(z); return 1 / (c * c); }

    // c_1(f) = E[f'(z)] by Stein's lemma; both expectations are of smooth, rapidly converging integrands.
    static double OddA()
    {
        var rule = Hermite.Rule(800);
        return 4 * rule.Expect(z => Sech2(2 * z)) / rule.Expect(z => Sech2(z / 2));
    }

    static Link MakeOdd3()
    {
        double a = OddA();
        return new Link("odd3", z => (z * 2).Tanh() - (z * 0.5).Tanh() * a, z => Math.Tanh(2 * z) - a * Math.Tanh(z / 2));
    }

    static Link MakeEven()
    {
        double m = Hermite.Rule(800).Expect(z => Math.Tanh(z * z));
        return new Link("even", z => z.Square().Tanh() - m, z => Math.Tanh(z * z) - m);
    }
}
