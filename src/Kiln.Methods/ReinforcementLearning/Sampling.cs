namespace Kiln.Methods.ReinforcementLearning;

/// <summary>Scalar draws the bandit and tabular simulations share (seeded <see cref="Random"/>, so runs repeat exactly).</summary>
public static class Sampling
{
    /// <summary>A standard normal draw (Box-Muller).</summary>
    public static double Normal(Random rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        double u = 1 - rng.NextDouble(); // (0, 1]: log(u) is finite
        return Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * rng.NextDouble());
    }

    /// <summary>A Gamma(shape, rate) draw (Marsaglia-Tsang; shapes below 1 through the u^(1/shape) boost).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The shape or rate is not positive and finite.</exception>
    public static double Gamma(Random rng, double shape, double rate)
    {
        ArgumentNullException.ThrowIfNull(rng);
        if (!(shape > 0) || double.IsInfinity(shape)) throw new ArgumentOutOfRangeException(nameof(shape), shape, "gamma: shape must be positive and finite");
        if (!(rate > 0) || double.IsInfinity(rate)) throw new ArgumentOutOfRangeException(nameof(rate), rate, "gamma: rate must be positive and finite");
        if (shape < 1) return Gamma(rng, shape + 1, rate) * Math.Pow(1 - rng.NextDouble(), 1 / shape);
        double d = shape - 1.0 / 3, c = 1 / Math.Sqrt(9 * d);
        while (true)
        {
            double z = Normal(rng), v = 1 + c * z;
            if (v <= 0) continue;
            v = v * v * v;
            double u = 1 - rng.NextDouble();
            if (Math.Log(u) < 0.5 * z * z + d - d * v + d * Math.Log(v)) return d * v / rate;
        }
    }

    /// <summary>A standard Gumbel draw, -log(-log u).</summary>
    public static double Gumbel(Random rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        double u = rng.NextDouble();
        while (u == 0) u = rng.NextDouble();
        return -Math.Log(-Math.Log(u));
    }

    /// <summary>An index drawn from the probabilities <paramref name="p"/> (assumed to sum to 1).</summary>
    public static int Categorical(Random rng, ReadOnlySpan<double> p)
    {
        ArgumentNullException.ThrowIfNull(rng);
        double u = rng.NextDouble(), c = 0;
        for (int i = 0; i < p.Length; i++)
        {
            c += p[i];
            if (u < c) return i;
        }
        return p.Length - 1;
    }

    /// <summary>The index of the largest value (the first on ties).</summary>
    public static int ArgMax(ReadOnlySpan<double> v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }
}
