namespace Kiln.Methods.Generative;

/// <summary>A marginalization model's training loss: the data term, the self-consistency penalty and their weighted sum.</summary>
/// <param name="Fit">MLE: −mean log p_θ(x) over the data; energy-based: mean (log p_θ(x) − log f(x) + log Z)² over the samples.</param>
/// <param name="Penalty">Mean squared self-consistency residual over one random order and step per row.</param>
/// <param name="Total">Fit + λ Penalty.</param>
public sealed record MarginalizationLoss(Tensor Fit, Tensor Penalty, Tensor Total);

/// <summary>
/// Generative Marginalization Model (Liu et al.): a network θ that gives log p_θ(x_S) for any subset S of D discrete
/// variables with K values each (the others masked), trained to be self-consistent: for every order σ and step d,
/// log p_θ(x_σ(&lt;d)) + log p(x_σ(d) | x_σ(&lt;d)) = log p_θ(x_σ(≤d)), with the conditional taken from an any-order
/// conditional network φ (normalised by a softmax over the K values) or derived from θ as
/// softmax_k log p_θ(x_S, x_i = k), whose residual is that of marginalization, log Σ_k p_θ(x_S, x_i = k) − log p_θ(x_S).
/// log p_θ(x_∅) = 0 by definition (the empty marginal is the total mass). A partial assignment is an Int64 row of
/// length D holding a value in [0, K) or <see cref="Masked"/>; the networks see it one-hot encoded
/// (<see cref="Encode"/>).
/// </summary>
public sealed class MarginalizationModel
{
    /// <summary>The value marking an unobserved variable in a partial assignment.</summary>
    public const long Masked = -1;

    readonly Func<Tensor, Tensor> _marginal;
    readonly Func<Tensor, Tensor>? _conditional;

    /// <summary>
    /// A model over <paramref name="variables"/> variables with <paramref name="values"/> values each.
    /// <paramref name="marginal"/> maps an encoding [N, D(K+1)] to log p_θ(x_S) of shape [N] or [N, 1];
    /// <paramref name="conditional"/> (optional, φ) maps it to logits [N, D·K] or [N, D, K], one K-way softmax per
    /// variable. Encodings are made in <paramref name="dtype"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Fewer than one variable, fewer than two values, or a dtype that is not floating.</exception>
    public MarginalizationModel(int variables, int values, Func<Tensor, Tensor> marginal, Func<Tensor, Tensor>? conditional = null, DType dtype = DType.Float32)
    {
        ArgumentNullException.ThrowIfNull(marginal);
        if (variables < 1) throw new ArgumentOutOfRangeException(nameof(variables), variables, "marginalization_model: needs at least one variable");
        if (values < 2) throw new ArgumentOutOfRangeException(nameof(values), values, "marginalization_model: each variable needs at least two values");
        if (!dtype.IsFloating()) throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "marginalization_model: the encoding dtype must be floating");
        (Variables, Values, DType, _marginal, _conditional) = (variables, values, dtype, marginal, conditional);
    }

    /// <summary>D, the number of variables.</summary>
    public int Variables { get; }

    /// <summary>K, the number of values of each variable.</summary>
    public int Values { get; }

    /// <summary>The dtype of the encodings given to the networks.</summary>
    public DType DType { get; }

    /// <summary>Whether an any-order conditional network φ was given.</summary>
    public bool HasConditional => _conditional is not null;

    /// <summary>
    /// The networks' input: per variable a one-hot of width K + 1 whose last slot marks <see cref="Masked"/>, giving
    /// [N, D(K+1)] from partial assignments [N, D].
    /// </summary>
    /// <exception cref="ArgumentException">Not an Int64 [N, D] tensor, or a value outside [−1, K).</exception>
    public Tensor Encode(Tensor states)
    {
        var s = States(states, nameof(states), complete: false);
        int n = s.Length / Variables, w = Values + 1;
        var v = new double[s.Length * w];
        for (int j = 0; j < s.Length; j++) v[j * w + (s[j] == Masked ? Values : (int)s[j])] = 1;
        return Tensor.FromArray(v, new Shape(n, Variables * w)).To(DType).To(states.Device);
    }

    /// <summary>log p_θ(x_S) of partial assignments [N, D], shape [N]; exactly 0 on rows with nothing observed.</summary>
    /// <exception cref="ArgumentException">Bad states (see <see cref="Encode"/>).</exception>
    /// <exception cref="ShapeMismatchException">The marginal network's output is not [N] or [N, 1].</exception>
    public Tensor LogMarginal(Tensor states)
    {
        var s = States(states, nameof(states), complete: false);
        int n = s.Length / Variables;
        var y = _marginal(Encode(states));
        if (y.Shape != new Shape(n) && y.Shape != new Shape(n, 1))
            throw new ShapeMismatchException("marginalization_model", "marginal", new Shape(n), y.Shape, "the marginal network must give one log-probability per row");
        var empty = new bool[n];
        for (int r = 0; r < n; r++) empty[r] = s.AsSpan(r * Variables, Variables).IndexOfAnyExcept(Masked) < 0;
        return Tensor.Where(Tensor.FromArray(empty).To(y.Device), Tensor.Zeros(new Shape(n), y.DType, y.Device), y.Reshape(n));
    }

    /// <summary>
    /// log p_φ(x_i = k | x_S) from the conditional network, [N, K], for the unobserved variable i =
    /// <paramref name="variable"/>[r] of each row r of <paramref name="states"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model has no conditional network.</exception>
    /// <exception cref="ArgumentException">Bad states, or a variable index outside [0, D) or already observed.</exception>
    /// <exception cref="ShapeMismatchException">The conditional network's output is not [N, D·K] or [N, D, K].</exception>
    public Tensor LogConditional(Tensor states, Tensor variable)
    {
        if (_conditional is null) throw new InvalidOperationException("marginalization_model: no conditional network was given; use MarginalLogConditional");
        var (_, vars) = Query(states, variable);
        int n = vars.Length;
        var logits = _conditional(Encode(states));
        if (logits.Shape != new Shape(n, Variables * Values) && logits.Shape != new Shape(n, Variables, Values))
            throw new ShapeMismatchException("marginalization_model", "conditional", new Shape(n, Variables, Values), logits.Shape, "the conditional network must give K logits per variable and row");
        var index = Tensor.FromArray(vars, new Shape(n, 1, 1)).To(logits.Device).Expand(n, 1, Values);
        return logits.Reshape(n, Variables, Values).Gather(1, index).Reshape(n, Values).LogSoftmax(-1);
    }

    /// <summary>
    /// The conditionals derived from the marginals, log p(x_i = k | x_S) = log p_θ(x_S, x_i = k) − log Σ_k′ p_θ(x_S, x_i = k′),
    /// [N, K], for the unobserved variable i = <paramref name="variable"/>[r] of each row r.
    /// </summary>
    /// <exception cref="ArgumentException">Bad states, or a variable index outside [0, D) or already observed.</exception>
    public Tensor MarginalLogConditional(Tensor states, Tensor variable) => Extended(states, variable).LogSoftmax(-1);

    /// <summary>
    /// The marginalization residual log Σ_k p_θ(x_S, x_i = k) − log p_θ(x_S), [N], for the unobserved variable
    /// i = <paramref name="variable"/>[r] of each row r; 0 for a consistent model.
    /// </summary>
    /// <exception cref="ArgumentException">Bad states, or a variable index outside [0, D) or already observed.</exception>
    public Tensor MarginalizationResidual(Tensor states, Tensor variable) => Extended(states, variable).LogSumExp(1) - LogMarginal(states);

    /// <summary>
    /// The self-consistency residual log p_θ(x_σ(&lt;d)) + log p(x_σ(d) | x_σ(&lt;d)) − log p_θ(x_σ(≤d)), [N], of complete
    /// assignments <paramref name="x"/> [N, D] under per-row orders <paramref name="order"/> [N, D] (permutations of
    /// 0..D−1) at 0-based steps <paramref name="step"/> [N] in [0, D). The conditional is φ's when the model has one,
    /// else the marginals' (<see cref="MarginalLogConditional"/>).
    /// </summary>
    /// <exception cref="ArgumentException">x is not complete in [0, K), an order row is not a permutation, or a step is outside [0, D).</exception>
    /// <exception cref="ShapeMismatchException">order or step does not match x's rows.</exception>
    public Tensor SelfConsistencyResidual(Tensor x, Tensor order, Tensor step)
    {
        const string op = "marginalization_model";
        var xs = States(x, nameof(x), complete: true);
        int n = xs.Length / Variables;
        if (order.Shape != x.Shape) throw new ShapeMismatchException(op, nameof(order), x.Shape, order.Shape, "one order per row of x");
        if (step.Shape != new Shape(n)) throw new ShapeMismatchException(op, nameof(step), new Shape(n), step.Shape, "one step per row of x");
        var orders = Orders(order);
        var steps = Int64(step, nameof(step));
        var prefix = new long[xs.Length];
        var added = new long[xs.Length];
        var vars = new long[n];
        var picked = new long[n];
        Array.Fill(prefix, Masked);
        for (int r = 0; r < n; r++)
        {
            var row = orders.AsSpan(r * Variables, Variables);
            if (steps[r] < 0 || steps[r] >= Variables) throw new ArgumentException($"{op}: step {steps[r]} of row {r} is outside [0, {Variables})", nameof(step));
            for (int d = 0; d < steps[r]; d++) prefix[r * Variables + row[d]] = xs[r * Variables + row[d]];
            vars[r] = row[(int)steps[r]];
            picked[r] = xs[r * Variables + vars[r]];
        }
        Array.Copy(prefix, added, prefix.Length);
        for (int r = 0; r < n; r++) added[r * Variables + vars[r]] = picked[r];

        var prefixStates = Tensor.FromArray(prefix, x.Shape).To(x.Device);
        var variable = Tensor.FromArray(vars).To(x.Device);
        var logCond = HasConditional ? LogConditional(prefixStates, variable) : MarginalLogConditional(prefixStates, variable);
        var chosen = logCond.Gather(1, Tensor.FromArray(picked, new Shape(n, 1)).To(logCond.Device)).Reshape(n);
        return LogMarginal(prefixStates) + chosen - LogMarginal(Tensor.FromArray(added, x.Shape).To(x.Device));
    }

    /// <summary>
    /// Penalised maximum likelihood: Fit = −mean log p_θ(x) over <paramref name="data"/> [N, D] (complete), Penalty =
    /// mean squared <see cref="SelfConsistencyResidual"/> at one uniformly random order and step per row drawn from
    /// <paramref name="generator"/>, Total = Fit + <paramref name="penaltyWeight"/> · Penalty.
    /// </summary>
    /// <exception cref="ArgumentException">data is empty or not complete in [0, K).</exception>
    /// <exception cref="ArgumentOutOfRangeException">The penalty weight is negative or not finite.</exception>
    public MarginalizationLoss MleLoss(Tensor data, double penaltyWeight, Generator generator)
    {
        Batch(data, nameof(data), penaltyWeight);
        var fit = -LogMarginal(data).Mean();
        var penalty = Penalty(data, generator);
        return new MarginalizationLoss(fit, penalty, fit + penaltyWeight * penalty);
    }

    /// <summary>
    /// Energy-based training toward an unnormalised target f: Fit = mean (log p_θ(x) − log f(x) + log Z)² over
    /// <paramref name="samples"/> [N, D] (complete, drawn from any behaviour distribution) with their
    /// <paramref name="logTarget"/> log f(x) [N] and the learnable scalar <paramref name="logNormalizer"/> log Z;
    /// Penalty and Total as in <see cref="MleLoss"/>.
    /// </summary>
    /// <exception cref="ArgumentException">samples is empty or not complete in [0, K).</exception>
    /// <exception cref="ShapeMismatchException">logTarget is not [N] or logNormalizer is not a scalar.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The penalty weight is negative or not finite.</exception>
    public MarginalizationLoss EnergyLoss(Tensor samples, Tensor logTarget, Tensor logNormalizer, double penaltyWeight, Generator generator)
    {
        int n = Batch(samples, nameof(samples), penaltyWeight);
        if (logTarget.Shape != new Shape(n)) throw new ShapeMismatchException("marginalization_model", nameof(logTarget), new Shape(n), logTarget.Shape, "one log f(x) per sample");
        if (logNormalizer.Numel != 1 || logNormalizer.Rank > 1) throw new ShapeMismatchException("marginalization_model", nameof(logNormalizer), new Shape(), logNormalizer.Shape, "log Z is a scalar");
        var fit = (LogMarginal(samples) - logTarget + logNormalizer.Reshape()).Pow(2).Mean();
        var penalty = Penalty(samples, generator);
        return new MarginalizationLoss(fit, penalty, fit + penaltyWeight * penalty);
    }

    /// <summary>
    /// Any-order sampling: row r fills its variables in the order <paramref name="order"/>[r] (a permutation of 0..D−1),
    /// each drawn from its conditional given those already drawn, from the marginals
    /// (exp(log p_θ(x_σ(≤d)) − log p_θ(x_σ(&lt;d))) normalised over the K values) or, with
    /// <paramref name="fromMarginals"/> false, from φ. Returns complete assignments [N, D] (Int64); no gradient.
    /// </summary>
    /// <exception cref="ArgumentException">An order row is not a permutation, or order is not [N, D].</exception>
    /// <exception cref="InvalidOperationException">φ was asked for but the model has none.</exception>
    public Tensor Sample(Tensor order, Generator generator, bool fromMarginals = true)
    {
        ArgumentNullException.ThrowIfNull(generator);
        if (!fromMarginals && !HasConditional) throw new InvalidOperationException("marginalization_model: sampling from φ needs a conditional network");
        if (order.Rank != 2 || order.Shape[1] != Variables) throw new ArgumentException($"marginalization_model: order must be [N, {Variables}], got {order.Shape}", nameof(order));
        var orders = Orders(order);
        int n = order.Shape[0];
        var states = new long[n * Variables];
        Array.Fill(states, Masked);
        using var _ = Autograd.NoGrad();
        for (int d = 0; d < Variables; d++)
        {
            var vars = new long[n];
            for (int r = 0; r < n; r++) vars[r] = orders[r * Variables + d];
            var current = Tensor.FromArray(states, new Shape(n, Variables)).To(order.Device);
            var variable = Tensor.FromArray(vars).To(order.Device);
            var logCond = fromMarginals ? MarginalLogConditional(current, variable) : LogConditional(current, variable);
            // Gumbel-max: argmax_k (log p_k + G_k) is a draw from p; a zero uniform gives G = −∞, never chosen.
            var u = Tensor.Rand(logCond.Shape, generator, dtype: DType.Float64, device: logCond.Device);
            var drawn = (logCond.To(DType.Float64) - (-u.Log()).Log()).ArgMax(1).To(DType.Int64).ToArray<long>();
            for (int r = 0; r < n; r++) states[r * Variables + vars[r]] = drawn[r];
        }
        return Tensor.FromArray(states, new Shape(n, Variables)).To(order.Device);
    }

    /// <summary><see cref="Sample(Tensor, Generator, bool)"/> of <paramref name="count"/> rows, each in its own uniformly random order.</summary>
    /// <exception cref="ArgumentOutOfRangeException">count is negative.</exception>
    public Tensor Sample(int count, Generator generator, bool fromMarginals = true)
    {
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, "marginalization_model: count must be non-negative");
        ArgumentNullException.ThrowIfNull(generator);
        return Sample(RandomOrders(count, generator), generator, fromMarginals);
    }

    Tensor RandomOrders(int count, Generator generator) => Tensor.Rand(new Shape(count, Variables), generator, dtype: DType.Float64).ArgSort(1);

    Tensor Penalty(Tensor x, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(generator);
        int n = x.Shape[0];
        var order = RandomOrders(n, generator).To(x.Device);
        var step = Tensor.RandInt(new Shape(n), 0, Variables, generator).To(x.Device);
        return SelfConsistencyResidual(x, order, step).Pow(2).Mean();
    }

    int Batch(Tensor x, string name, double penaltyWeight)
    {
        var s = States(x, name, complete: true);
        if (s.Length == 0) throw new ArgumentException($"marginalization_model: {name} is empty", name);
        if (!(penaltyWeight >= 0 && double.IsFinite(penaltyWeight))) throw new ArgumentOutOfRangeException(nameof(penaltyWeight), penaltyWeight, "marginalization_model: the penalty weight must be non-negative and finite");
        return s.Length / Variables;
    }

    // The log-marginals of each row with its query variable set to every value, [N, K].
    Tensor Extended(Tensor states, Tensor variable)
    {
        var (s, vars) = Query(states, variable);
        int n = vars.Length;
        var rows = new long[n * Values * Variables];
        for (int r = 0; r < n; r++)
            for (int k = 0; k < Values; k++)
            {
                var dst = rows.AsSpan((r * Values + k) * Variables, Variables);
                s.AsSpan(r * Variables, Variables).CopyTo(dst);
                dst[(int)vars[r]] = k;
            }
        return LogMarginal(Tensor.FromArray(rows, new Shape(n * Values, Variables)).To(states.Device)).Reshape(n, Values);
    }

    (long[] States, long[] Variables) Query(Tensor states, Tensor variable)
    {
        var s = States(states, nameof(states), complete: false);
        int n = s.Length / Variables;
        if (variable.Shape != new Shape(n)) throw new ShapeMismatchException("marginalization_model", nameof(variable), new Shape(n), variable.Shape, "one query variable per row");
        var vars = Int64(variable, nameof(variable));
        for (int r = 0; r < n; r++)
        {
            if (vars[r] < 0 || vars[r] >= Variables) throw new ArgumentException($"marginalization_model: variable {vars[r]} of row {r} is outside [0, {Variables})", nameof(variable));
            if (s[r * Variables + vars[r]] != Masked) throw new ArgumentException($"marginalization_model: variable {vars[r]} of row {r} is already observed (value {s[r * Variables + vars[r]]})", nameof(variable));
        }
        return (s, vars);
    }

    long[] Orders(Tensor order)
    {
        var orders = Int64(order, nameof(order));
        for (int r = 0; r < orders.Length / Variables; r++)
        {
            var row = orders.AsSpan(r * Variables, Variables);
            var seen = new bool[Variables];
            foreach (long v in row)
            {
                if (v < 0 || v >= Variables || seen[v]) throw new ArgumentException($"marginalization_model: order row {r} [{string.Join(", ", row.ToArray())}] is not a permutation of 0..{Variables - 1}", nameof(order));
                seen[v] = true;
            }
        }
        return orders;
    }

    long[] States(Tensor states, string name, bool complete)
    {
        if (states.Rank != 2 || states.Shape[1] != Variables) throw new ArgumentException($"marginalization_model: {name} must be [N, {Variables}], got {states.Shape}", name);
        var s = Int64(states, name);
        long low = complete ? 0 : Masked;
        for (int j = 0; j < s.Length; j++)
            if (s[j] < low || s[j] >= Values)
                throw new ArgumentException($"marginalization_model: {name}[{j / Variables}, {j % Variables}] = {s[j]} is outside [{low}, {Values})", name);
        return s;
    }

    static long[] Int64(Tensor t, string name) =>
        t.DType == DType.Int64 ? t.ToArray<long>() : throw new ArgumentException($"marginalization_model: {name} must be Int64, not {t.DType}", name);
}
