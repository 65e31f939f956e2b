namespace Kiln.Methods.ReinforcementLearning;

/// <summary>
/// An invertible, strictly increasing value mapping f used by orchestrated value mapping: each reward channel learns
/// Q̃ = f(Q) in the mapped space.
/// </summary>
public sealed class ValueMapping
{
    readonly Func<double, double> _forward, _inverse;

    /// <summary>A mapping from its forward f and inverse f⁻¹ (the caller guarantees they are inverse and increasing).</summary>
    public ValueMapping(string name, Func<double, double> forward, Func<double, double> inverse)
    {
        ArgumentNullException.ThrowIfNull(forward);
        ArgumentNullException.ThrowIfNull(inverse);
        Name = name;
        _forward = forward;
        _inverse = inverse;
    }

    /// <summary>A label for tables.</summary>
    public string Name { get; }

    /// <summary>f(x).</summary>
    public double Forward(double x) => _forward(x);

    /// <summary>f⁻¹(y).</summary>
    public double Inverse(double y) => _inverse(y);

    /// <summary>f(x) = x: the channel learns in the regular space.</summary>
    public static ValueMapping Identity { get; } = new("identity", x => x, y => y);

    /// <summary>
    /// The logarithmic mapping of logarithmic Q-learning (van Seijen et al., 2019): f(x) = c ln(x + δ), f⁻¹(y) = e^{y/c} - δ,
    /// for a channel with non-negative rewards (values above -δ).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">c or δ is not positive and finite.</exception>
    public static ValueMapping Logarithmic(double c = 0.5, double delta = 0.02)
    {
        if (!(c > 0) || double.IsInfinity(c)) throw new ArgumentOutOfRangeException(nameof(c), c, "log mapping: c must be positive and finite");
        if (!(delta > 0) || double.IsInfinity(delta)) throw new ArgumentOutOfRangeException(nameof(delta), delta, "log mapping: delta must be positive and finite");
        return new($"log(c={c}, d={delta})", x => c * Math.Log(x + delta), y => Math.Exp(y / c) - delta);
    }
}

/// <summary>
/// Orchestrated value mapping (Fatemi and Tavakoli, 2022), tabular. The reward is decomposed linearly into channels,
/// r = Σ_j λ_j r_j; channel j learns Q̃_j = f_j(Q_j) under its own mapping f_j and the orchestrated value is
/// Q(s, a) = Σ_j λ_j f_j⁻¹(Q̃_j(s, a)). A transition (s, a, r_1..r_J, s') updates every channel toward the greedy action of
/// the orchestrated value, a* = argmax_a' Q(s', a'):
/// U_j = r_j + γ f_j⁻¹(Q̃_j(s', a*)),  q_j = f_j⁻¹(Q̃_j(s, a)),
/// Q̃_j(s, a) ← Q̃_j(s, a) + β_map (f_j(q_j + β_reg (U_j - q_j)) - Q̃_j(s, a)).
/// One identity channel with β_map = 1 is Q-learning.
/// </summary>
public sealed class OrchestratedQLearning
{
    readonly ValueMapping[] _mappings;
    readonly double[] _weights;
    readonly double[][] _tables; // [channel][s * actions + a], mapped space

    /// <summary>Creates the learner; every channel's regular-space value starts at <paramref name="initialValue"/>.</summary>
    /// <exception cref="ArgumentException">The sizes are not positive, the mapping and weight lists differ in length or are empty, or γ is outside [0, 1).</exception>
    public OrchestratedQLearning(int states, int actions, ValueMapping[] mappings, double[] weights, double gamma, double initialValue = 0)
    {
        ArgumentNullException.ThrowIfNull(mappings);
        ArgumentNullException.ThrowIfNull(weights);
        if (states < 1) throw new ArgumentOutOfRangeException(nameof(states), states, "ovm: needs at least one state");
        if (actions < 1) throw new ArgumentOutOfRangeException(nameof(actions), actions, "ovm: needs at least one action");
        if (mappings.Length == 0 || mappings.Length != weights.Length)
            throw new ArgumentException($"ovm: needs one weight per mapping and at least one channel, got {mappings.Length} mappings and {weights.Length} weights", nameof(weights));
        if (!(gamma >= 0 && gamma < 1)) throw new ArgumentOutOfRangeException(nameof(gamma), gamma, "ovm: gamma must be in [0, 1)");
        States = states; Actions = actions; Gamma = gamma;
        _mappings = (ValueMapping[])mappings.Clone();
        _weights = (double[])weights.Clone();
        _tables = _mappings.Select(f => Enumerable.Repeat(f.Forward(initialValue), states * actions).ToArray()).ToArray();
    }

    /// <summary>The number of states.</summary>
    public int States { get; }
    /// <summary>The number of actions.</summary>
    public int Actions { get; }
    /// <summary>The discount γ.</summary>
    public double Gamma { get; }

    /// <summary>Q̃_j(s, a), channel <paramref name="channel"/>'s value in its mapped space.</summary>
    public double Mapped(int channel, int s, int a) => _tables[channel][s * Actions + a];

    /// <summary>The orchestrated value Q(s, a) = Σ_j λ_j f_j⁻¹(Q̃_j(s, a)).</summary>
    public double Q(int s, int a)
    {
        double q = 0;
        for (int j = 0; j < _mappings.Length; j++) q += _weights[j] * _mappings[j].Inverse(_tables[j][s * Actions + a]);
        return q;
    }

    /// <summary>argmax_a Q(s, a) (the first on ties).</summary>
    public int Greedy(int s)
    {
        int best = 0;
        for (int a = 1; a < Actions; a++) if (Q(s, a) > Q(s, best)) best = a;
        return best;
    }

    /// <summary>One update from the transition (s, a, channel rewards, s'); a terminal s' contributes no bootstrap.</summary>
    /// <exception cref="ArgumentException">A state or action is out of range, the channel rewards have the wrong length, or a step size is outside (0, 1].</exception>
    public void Update(int s, int a, ReadOnlySpan<double> channelRewards, int sNext, bool terminal, double betaReg, double betaMap = 1)
    {
        if ((uint)s >= (uint)States) throw new ArgumentOutOfRangeException(nameof(s), s, $"ovm: state must be in [0, {States})");
        if ((uint)sNext >= (uint)States) throw new ArgumentOutOfRangeException(nameof(sNext), sNext, $"ovm: next state must be in [0, {States})");
        if ((uint)a >= (uint)Actions) throw new ArgumentOutOfRangeException(nameof(a), a, $"ovm: action must be in [0, {Actions})");
        if (channelRewards.Length != _mappings.Length) throw new ArgumentException($"ovm: {channelRewards.Length} channel rewards for {_mappings.Length} channels", nameof(channelRewards));
        if (!(betaReg > 0 && betaReg <= 1)) throw new ArgumentOutOfRangeException(nameof(betaReg), betaReg, "ovm: betaReg must be in (0, 1]");
        if (!(betaMap > 0 && betaMap <= 1)) throw new ArgumentOutOfRangeException(nameof(betaMap), betaMap, "ovm: betaMap must be in (0, 1]");
        int aStar = terminal ? 0 : Greedy(sNext);
        for (int j = 0; j < _mappings.Length; j++)
        {
            var f = _mappings[j];
            var table = _tables[j];
            double target = channelRewards[j] + (terminal ? 0 : Gamma * f.Inverse(table[sNext * Actions + aStar]));
            double q = f.Inverse(table[s * Actions + a]);
            table[s * Actions + a] += betaMap * (f.Forward(q + betaReg * (target - q)) - table[s * Actions + a]);
        }
    }

    /// <summary>The positive/negative decomposition r = 1·max(r, 0) + (-1)·max(-r, 0): channel rewards, to pair with weights [1, -1].</summary>
    public static double[] PositiveNegative(double reward) => [Math.Max(reward, 0), Math.Max(-reward, 0)];
}
