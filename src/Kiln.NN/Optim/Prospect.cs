namespace Kiln.NN.Optim;

/// <summary>
/// A spectral risk measure with a shift penalty: R(l) = max over q in P(σ) of qᵀl − ν D(q ‖ 1/n), where P(σ) is the
/// permutahedron of the spectrum σ (the convex hull of its permutations: non-decreasing weights that sum to 1, the
/// largest on the largest loss) and D(q ‖ u) = (n/2)‖q − 1/n‖² is half the χ² divergence from uniform (the authors'
/// code's scaling). ν = 0 is the plain spectral risk Σ σ_i l_(i) over sorted losses (the mean of the top k for
/// σ = 1/k on the k largest; CVaR, extremiles); ν &gt; 0 makes R smooth, with gradient q*(l) (Danskin).
/// </summary>
public sealed class SpectralRisk
{
    readonly double[] _sigma;

    /// <summary>Creates the risk of spectrum <paramref name="spectrum"/> (non-decreasing up to 1e-12 of rounding, non-negative, sum 1) and shift cost <paramref name="shiftCost"/> ν ≥ 0.</summary>
    /// <exception cref="ArgumentException">The spectrum is empty, decreases somewhere, has a negative weight or does not sum to 1.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The shift cost is negative or not finite.</exception>
    public SpectralRisk(IReadOnlyList<double> spectrum, double shiftCost = 0)
    {
        ArgumentNullException.ThrowIfNull(spectrum);
        if (spectrum.Count == 0) throw new ArgumentException("spectral risk: the spectrum is empty", nameof(spectrum));
        for (int i = 0; i < spectrum.Count; i++)
        {
            if (!(spectrum[i] >= 0) || double.IsInfinity(spectrum[i]))
                throw new ArgumentException($"spectral risk: spectrum[{i}] = {spectrum[i]} is not a finite non-negative weight", nameof(spectrum));
            if (i > 0 && spectrum[i] < spectrum[i - 1] - 1e-12)
                throw new ArgumentException($"spectral risk: the spectrum must be non-decreasing, but spectrum[{i}] = {spectrum[i]} < spectrum[{i - 1}] = {spectrum[i - 1]}", nameof(spectrum));
        }
        double sum = spectrum.Sum();
        if (Math.Abs(sum - 1) > 1e-9) throw new ArgumentException($"spectral risk: the spectrum sums to {sum}, not 1", nameof(spectrum));
        if (!(shiftCost >= 0) || double.IsInfinity(shiftCost)) throw new ArgumentOutOfRangeException(nameof(shiftCost), shiftCost, "spectral risk: the shift cost must be finite and non-negative");
        _sigma = [.. spectrum];
        ShiftCost = shiftCost;
    }

    /// <summary>The spectrum σ (non-decreasing).</summary>
    public IReadOnlyList<double> Spectrum => _sigma;
    /// <summary>The shift cost ν.</summary>
    public double ShiftCost { get; }
    /// <summary>Number of losses n.</summary>
    public int Count => _sigma.Length;

    /// <summary>The superquantile (CVaR) at level α ∈ [0, 1): the mean of the worst (1 − α) fraction of n losses (a fractional weight at the boundary).</summary>
    public static double[] Superquantile(int n, double alpha)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        if (!(alpha >= 0 && alpha < 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "superquantile: alpha must be in [0, 1)");
        // σ_i = ∫ over ((i-1)/n, i/n] of 1[t > α]/(1 − α) dt: 0, one fractional weight, then 1/(n(1 − α)).
        return [.. Enumerable.Range(1, n).Select(i => (i - 1) / (double)n >= alpha ? 1 / (n * (1 - alpha)) : i / (double)n <= alpha ? 0 : (i / (double)n - alpha) / (1 - alpha))];
    }

    /// <summary>σ = 1/k on the k largest of n losses (the average top-k loss).</summary>
    public static double[] TopK(int n, int k)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        if (k < 1 || k > n) throw new ArgumentOutOfRangeException(nameof(k), k, $"top-k: k must be in [1, {n}]");
        return [.. Enumerable.Range(0, n).Select(i => i >= n - k ? 1.0 / k : 0)];
    }

    /// <summary>The r-extremile: σ_i = (i/n)^r − ((i−1)/n)^r, r ≥ 1 (r = 1 is the mean).</summary>
    public static double[] Extremile(int n, double r)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        if (!(r >= 1) || double.IsInfinity(r)) throw new ArgumentOutOfRangeException(nameof(r), r, "extremile: r must be finite and at least 1");
        return [.. Enumerable.Range(1, n).Select(i => Math.Pow(i / (double)n, r) - Math.Pow((i - 1) / (double)n, r))];
    }

    /// <summary>The weights q*(l) that attain the maximum: the Euclidean projection of 1/n + l/(nν) onto P(σ) for ν &gt; 0, σ sorted along l for ν = 0.</summary>
    /// <exception cref="ArgumentException">The number of losses is not <see cref="Count"/>, or a loss is not finite.</exception>
    public double[] Weights(ReadOnlySpan<double> losses)
    {
        int n = Count;
        if (losses.Length != n) throw new ArgumentException($"spectral risk: {losses.Length} losses for a spectrum of {n}", nameof(losses));
        var order = new int[n];
        for (int i = 0; i < n; i++)
        {
            if (!double.IsFinite(losses[i])) throw new ArgumentException($"spectral risk: losses[{i}] = {losses[i]} is not finite", nameof(losses));
            order[i] = i;
        }
        var l = losses.ToArray();
        Array.Sort(l, order);   // ascending, stable enough for ties: any order of tied losses gives the same risk
        var q = new double[n];
        if (ShiftCost == 0)
        {
            for (int r = 0; r < n; r++) q[order[r]] = _sigma[r];
            return q;
        }
        // Projection onto the permutahedron of sorted z: z − isotonic (non-decreasing) regression of z − σ, by pool-adjacent-violators.
        double scale = n * ShiftCost;
        var z = l.Select(x => 1.0 / n + x / scale).ToArray();
        var fit = Isotonic(z.Select((x, r) => x - _sigma[r]).ToArray());
        for (int r = 0; r < n; r++) q[order[r]] = z[r] - fit[r];
        return q;
    }

    /// <summary>R(l) = q*ᵀl − ν (n/2)‖q* − 1/n‖².</summary>
    public double Value(ReadOnlySpan<double> losses)
    {
        var q = Weights(losses);
        return Objective(q, losses);
    }

    /// <summary>qᵀl − ν (n/2)‖q − 1/n‖² for any weights q (the inner objective the maximum is over).</summary>
    /// <exception cref="ArgumentException">The lengths differ from <see cref="Count"/>.</exception>
    public double Objective(ReadOnlySpan<double> q, ReadOnlySpan<double> losses)
    {
        int n = Count;
        if (q.Length != n || losses.Length != n) throw new ArgumentException($"spectral risk: {q.Length} weights and {losses.Length} losses for a spectrum of {n}");
        double dot = 0, d = 0;
        for (int i = 0; i < n; i++) { dot += q[i] * losses[i]; d += (q[i] - 1.0 / n) * (q[i] - 1.0 / n); }
        return dot - ShiftCost * n / 2 * d;
    }

    /// <summary>Least-squares non-decreasing fit of y (pool adjacent violators).</summary>
    static double[] Isotonic(double[] y)
    {
        int n = y.Length;
        var mean = new double[n]; var count = new int[n];
        int blocks = 0;
        for (int i = 0; i < n; i++)
        {
            mean[blocks] = y[i]; count[blocks] = 1; blocks++;
            while (blocks > 1 && mean[blocks - 2] >= mean[blocks - 1])
            {
                int c = count[blocks - 2] + count[blocks - 1];
                mean[blocks - 2] = (count[blocks - 2] * mean[blocks - 2] + count[blocks - 1] * mean[blocks - 1]) / c;
                count[blocks - 2] = c;
                blocks--;
            }
        }
        var fit = new double[n];
        for (int b = 0, i = 0; b < blocks; b++)
            for (int j = 0; j < count[b]; j++) fit[i++] = mean[b];
        return fit;
    }
}

/// <summary>
/// Prospect (Mehta et al., "Distributionally Robust Optimization with Bias and Variance Reduction", ICLR 2024):
/// minimises F(w) = R(ℓ_1(w), ..., ℓ_n(w)) + (μ/2)‖w‖² for a <see cref="SpectralRisk"/> R over n examples, with one
/// learning rate. It keeps a table of each example's last loss l_j and gradient g_j, the weights λ = q*(l) of the
/// loss table, the weights ρ_j the table gradients were stored with, and ḡ = Σ ρ_j g_j. A step draws i uniformly and
/// moves along the bias- and variance-reduced direction v = n λ_i ∇ℓ_i(w) − n ρ_i g_i + ḡ with the regulariser as a
/// proximal step, w ← (w − η v)/(1 + η μ); then l_i ← ℓ_i(w), λ ← q*(l), ḡ += λ_i ∇ℓ_i(w) − ρ_i g_i, ρ_i ← λ_i, g_i ← ∇ℓ_i(w)
/// (the authors' code's order: the same index updates the gradient and the loss table, λ_i is the weight before the
/// loss update). Converges linearly for smooth, strongly convex losses when μ &gt; 0 and ν &gt; 0.
/// </summary>
/// <remarks>
/// Drive it with <see cref="Step(Func{int, double})"/>: the closure computes example i's loss, runs backward and
/// returns the loss, as PyTorch's step(closure) does for the whole batch. The first call fills the tables (n
/// closures). Memory: one gradient per example per parameter (n × P values).
/// </remarks>
public sealed class Prospect : Optimizer
{
    readonly SpectralRisk _risk;
    readonly Random _random;
    readonly Tensor[] _table, _running;
    readonly double[] _losses, _rho;
    double[] _lambda = [];
    int _index = -1;
    double _lambdaI, _rhoI;
    bool _filled;

    /// <summary>Creates the optimizer for <paramref name="risk"/>.Count examples.</summary>
    /// <param name="parameters">The model's parameters.</param>
    /// <param name="learningRate">The step size η.</param>
    /// <param name="risk">The spectral risk R (its spectrum's length is the number of examples n).</param>
    /// <param name="l2">The regularisation μ ≥ 0, applied as a proximal step.</param>
    /// <param name="seed">Seed of the index sampling.</param>
    /// <exception cref="ArgumentOutOfRangeException">A negative or non-finite learning rate or μ.</exception>
    public Prospect(IEnumerable<Parameter> parameters, double learningRate, SpectralRisk risk, double l2 = 0, int seed = 0)
        : base(parameters, learningRate)
    {
        ArgumentNullException.ThrowIfNull(risk);
        if (!(learningRate >= 0) || double.IsInfinity(learningRate)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "prospect: the learning rate must be finite and non-negative");
        if (!(l2 >= 0) || double.IsInfinity(l2)) throw new ArgumentOutOfRangeException(nameof(l2), l2, "prospect: l2 must be finite and non-negative");
        _risk = risk; L2 = l2;
        _random = new Random(seed);
        int n = risk.Count;
        _table = AddState("grad_table", p => new Shape([n, .. p.Shape.ToArray()]))!;
        _running = AddState("running_grad");
        _losses = new double[n]; _rho = new double[n];
    }

    /// <summary>The regularisation μ.</summary>
    public double L2 { get; }
    /// <summary>The spectral risk minimised.</summary>
    public SpectralRisk Risk => _risk;
    /// <summary>The loss table l (each example's loss when it was last drawn).</summary>
    public IReadOnlyList<double> Losses => _losses;

    /// <summary>Prospect needs the example's index; use <see cref="Step(Func{int, double})"/>.</summary>
    /// <exception cref="InvalidOperationException">Always.</exception>
    public override double Step(Func<double> closure) =>
        throw new InvalidOperationException("prospect: a step needs one example's loss; call Step(Func<int, double>) with a closure over the example index");

    /// <summary>
    /// One step: <paramref name="exampleLoss"/>(i) zeroes the gradients, computes example i's loss, runs backward and
    /// returns it. The first call evaluates every example once to fill the tables. Returns the drawn example's loss.
    /// </summary>
    public double Step(Func<int, double> exampleLoss)
    {
        ArgumentNullException.ThrowIfNull(exampleLoss);
        int n = _risk.Count;
        if (!_filled) Fill(exampleLoss);
        int i = _random.Next(n);
        double loss = exampleLoss(i);
        _index = i; _lambdaI = _lambda[i]; _rhoI = _rho[i];
        try { Step(); }
        finally { _index = -1; }
        _losses[i] = loss;
        _lambda = _risk.Weights(_losses);
        _rho[i] = _lambdaI;
        return loss;
    }

    void Fill(Func<int, double> exampleLoss)
    {
        int n = _risk.Count;
        for (int j = 0; j < n; j++)
        {
            _losses[j] = exampleLoss(j);
            using var _ = Autograd.NoGrad();
            for (int p = 0; p < Parameters.Count; p++)
                if (Parameters[p].Grad is { } g) _table[p].Narrow(0, j, 1).Copy_(g.Unsqueeze(0));
        }
        _lambda = _risk.Weights(_losses);
        Array.Copy(_lambda, _rho, n);
        using (Autograd.NoGrad())
            for (int p = 0; p < Parameters.Count; p++)
            {
                var flat = _table[p].Reshape(n, -1);
                var w = Tensor.FromArray(_rho, new Shape(1, n)).To(flat.DType).To(flat.Device);
                _running[p].Copy_(w.MatMul(flat).Reshape(Parameters[p].Shape.ToArray()));
            }
        _filled = true;
    }

    /// <inheritdoc/>
    protected override void Update(int index, Tensor param, Tensor grad, double lr, int step)
    {
        if (_index < 0) throw new InvalidOperationException("prospect: call Step(Func<int, double>) with a closure over the example index");
        int n = _risk.Count;
        var old = _table[index].Narrow(0, _index, 1).Squeeze(0);
        var v = grad * (n * _lambdaI) - old * (n * _rhoI) + _running[index];
        param.Sub_(v * lr);
        if (L2 > 0) param.Div_(1 + lr * L2);
        _running[index].Add_(grad * _lambdaI - old * _rhoI);
        old.Copy_(grad);
    }
}
