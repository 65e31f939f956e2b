using Kiln.Kernels;

namespace Kiln.Methods.ReinforcementLearning;

/// <summary>
/// The link F of a linear stochastic transitivity (LST) model, P(i beats j) = F(θᵀ(x_i - x_j)); each is the CDF of the
/// difference of two independent utility perturbations, which CoLSTIM samples to imitate the feedback.
/// </summary>
public enum TransitivityLink
{
    /// <summary>F = σ (logistic; Bradley-Terry): the difference of two standard Gumbel perturbations.</summary>
    Logistic,
    /// <summary>F = Φ (probit; Thurstone): the difference of two N(0, 1/2) perturbations.</summary>
    Probit,
}

/// <summary>The LST model: its links, their likelihood as a Kiln loss, and its maximum-likelihood fit.</summary>
public static class LinearStochasticTransitivity
{
    /// <summary>F(z): the probability that the arm with utility advantage z wins.</summary>
    public static double Link(TransitivityLink link, double z) => link switch
    {
        TransitivityLink.Logistic => 1 / (1 + Math.Exp(-z)),
        TransitivityLink.Probit => 0.5 * (1 + Reference.Erf(z / Math.Sqrt(2))),
        _ => throw new ArgumentOutOfRangeException(nameof(link), link, "lst: unknown link"),
    };

    /// <summary>F'(z).</summary>
    public static double LinkDerivative(TransitivityLink link, double z) => link switch
    {
        TransitivityLink.Logistic => Link(link, z) * (1 - Link(link, z)),
        TransitivityLink.Probit => Math.Exp(-0.5 * z * z) / Math.Sqrt(2 * Math.PI),
        _ => throw new ArgumentOutOfRangeException(nameof(link), link, "lst: unknown link"),
    };

    /// <summary>One utility perturbation ε whose differences ε_i - ε_j have CDF F (standard Gumbel, or N(0, 1/2)).</summary>
    public static double SamplePerturbation(TransitivityLink link, Random rng) => link switch
    {
        TransitivityLink.Logistic => Sampling.Gumbel(rng),
        TransitivityLink.Probit => Sampling.Normal(rng) / Math.Sqrt(2),
        _ => throw new ArgumentOutOfRangeException(nameof(link), link, "lst: unknown link"),
    };

    /// <summary>
    /// The negative log-likelihood -Σ_n [y_n log F(θᵀz_n) + (1 - y_n) log(1 - F(θᵀz_n))] of duel outcomes
    /// <paramref name="outcomes"/> [n] (1 when the first arm won) on feature differences <paramref name="differences"/>
    /// [n, d] = x_first - x_second. With the logistic link it is the summed binary cross-entropy of logistic regression
    /// on the differences; differentiable in θ [d].
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not line up.</exception>
    public static Tensor NegativeLogLikelihood(Tensor theta, Tensor differences, Tensor outcomes, TransitivityLink link)
    {
        ArgumentNullException.ThrowIfNull(theta);
        ArgumentNullException.ThrowIfNull(differences);
        ArgumentNullException.ThrowIfNull(outcomes);
        if (theta.Rank != 1 || differences.Rank != 2 || differences.Shape[1] != theta.Shape[0])
            throw new ShapeMismatchException("lst nll", nameof(differences), $"differences {differences.Shape} must be [n, d] with d = θ's {theta.Shape}");
        if (outcomes.Rank != 1 || outcomes.Shape[0] != differences.Shape[0])
            throw new ShapeMismatchException("lst nll", nameof(outcomes), $"outcomes {outcomes.Shape} must be [n] with n = {differences.Shape[0]}");
        var z = differences.MatMul(theta);
        return link switch
        {
            // -log σ(z) = softplus(-z), -log(1 - σ(z)) = softplus(z).
            TransitivityLink.Logistic => (outcomes * (-z).Softplus() + (1.0 - outcomes) * z.Softplus()).Sum(),
            TransitivityLink.Probit => -(outcomes * StdNormalCdf(z).Log() + (1.0 - outcomes) * StdNormalCdf(-z).Log()).Sum(),
            _ => throw new ArgumentOutOfRangeException(nameof(link), link, "lst: unknown link"),
        };
    }

    static Tensor StdNormalCdf(Tensor z) => 0.5 * ((z * (1 / Math.Sqrt(2))).Erf() + 1.0);

    /// <summary>
    /// The (ridge-regularized) maximum-likelihood θ: argmin NLL(θ) + (ridge/2)|θ|², by Fisher scoring from
    /// <paramref name="start"/> (zero when null). Fisher scoring is Newton's method (IRLS) for the logistic link; for the
    /// probit link it reaches the same stationary point. <paramref name="differences"/> is [n, d] row-major.
    /// </summary>
    /// <exception cref="ArgumentException">The lengths do not line up, an outcome is outside [0, 1], or the ridge is negative.</exception>
    public static double[] FitMaximumLikelihood(ReadOnlySpan<double> differences, ReadOnlySpan<double> outcomes, int dim, TransitivityLink link,
        double ridge = 0, double[]? start = null, int maxIterations = 100, double tolerance = 1e-12)
    {
        if (dim < 1) throw new ArgumentOutOfRangeException(nameof(dim), dim, "lst fit: the dimension must be positive");
        int n = outcomes.Length;
        if (differences.Length != n * dim) throw new ArgumentException($"lst fit: differences has {differences.Length} values, expected {n} x {dim}", nameof(differences));
        if (!(ridge >= 0)) throw new ArgumentOutOfRangeException(nameof(ridge), ridge, "lst fit: the ridge must be non-negative");
        foreach (var y in outcomes) if (!(y >= 0 && y <= 1)) throw new ArgumentException($"lst fit: outcome {y} is outside [0, 1]", nameof(outcomes));
        if (start is not null && start.Length != dim) throw new ArgumentException($"lst fit: start has {start.Length} values, expected {dim}", nameof(start));
        var theta = start is null ? new double[dim] : (double[])start.Clone();
        var grad = new double[dim];
        var info = new double[dim * dim];
        for (int it = 0; it < maxIterations; it++)
        {
            for (int a = 0; a < dim; a++) grad[a] = ridge * theta[a];
            Array.Clear(info);
            for (int a = 0; a < dim; a++) info[a * dim + a] = ridge;
            for (int i = 0; i < n; i++)
            {
                var zi = differences.Slice(i * dim, dim);
                double u = 0;
                for (int a = 0; a < dim; a++) u += theta[a] * zi[a];
                double f = Math.Clamp(Link(link, u), 1e-300, 1 - 1e-16), df = LinkDerivative(link, u);
                double w = df / (f * (1 - f));
                double g = (f - outcomes[i]) * w; // d(-loglik)/du
                double h = df * w;                // Fisher information of u
                for (int a = 0; a < dim; a++)
                {
                    grad[a] += g * zi[a];
                    for (int b = 0; b < dim; b++) info[a * dim + b] += h * zi[a] * zi[b];
                }
            }
            var step = SolveSymmetric(info, grad, dim);
            double size = 0;
            for (int a = 0; a < dim; a++) { theta[a] -= step[a]; size = Math.Max(size, Math.Abs(step[a])); }
            if (size <= tolerance * (1 + theta.Max(Math.Abs))) break;
        }
        return theta;
    }

    /// <summary>Solves A x = b for a symmetric positive (semi)definite A [d, d] by Cholesky with a tiny jitter.</summary>
    internal static double[] SolveSymmetric(double[] a, double[] b, int d)
    {
        var l = new double[d * d];
        double jitter = 1e-12 * (1 + Enumerable.Range(0, d).Max(i => Math.Abs(a[i * d + i])));
        for (int i = 0; i < d; i++)
            for (int j = 0; j <= i; j++)
            {
                double s = a[i * d + j] + (i == j ? jitter : 0);
                for (int k = 0; k < j; k++) s -= l[i * d + k] * l[j * d + k];
                l[i * d + j] = i == j ? Math.Sqrt(Math.Max(s, 1e-300)) : s / l[j * d + j];
            }
        var y = new double[d];
        for (int i = 0; i < d; i++)
        {
            double s = b[i];
            for (int k = 0; k < i; k++) s -= l[i * d + k] * y[k];
            y[i] = s / l[i * d + i];
        }
        var x = new double[d];
        for (int i = d - 1; i >= 0; i--)
        {
            double s = y[i];
            for (int k = i + 1; k < d; k++) s -= l[k * d + i] * x[k];
            x[i] = s / l[i * d + i];
        }
        return x;
    }
}

/// <summary>Settings of <see cref="Colstim"/>.</summary>
public sealed record ColstimOptions
{
    /// <summary>The link of the assumed LST model (and so the perturbation distribution).</summary>
    public TransitivityLink Link { get; init; } = TransitivityLink.Logistic;
    /// <summary>Rounds of uniformly random duels before the first fit (τ).</summary>
    public int ExplorationRounds { get; init; } = 10;
    /// <summary>Perturbations are clipped to [-C, C] (C_thresh).</summary>
    public double Threshold { get; init; } = 2;
    /// <summary>The width c₁ of the second arm's optimism bonus c₁ |x_j - x_i|_{M⁻¹}.</summary>
    public double Confidence { get; init; } = 1;
    /// <summary>The ridge λ of the MLE and of M = λI + Σ z zᵀ.</summary>
    public double Ridge { get; init; } = 1;
}

/// <summary>
/// CoLSTIM (Bengs, Saha and Hüllermeier, 2022), the contextual dueling bandit for linear stochastic transitivity models.
/// Round t sees K contexts x_1..x_K [K, d]. After τ random rounds: θ̂ is the (ridge) MLE of the LST model on all duels so
/// far; the first arm imitates the feedback process, i = argmax_k θ̂ᵀx_k + ε_k |x_k|_{M⁻¹} with ε_k the link's
/// perturbation clipped to [-C, C]; the second arm is the optimistic challenger j = argmax_k θ̂ᵀx_k + c₁ |x_k - x_i|_{M⁻¹},
/// where M = λI + Σ (x_first - x_second)(x_first - x_second)ᵀ. The challenger may be the first arm itself (a duel with
/// itself costs no regret and teaches nothing), which is how the learner stops exploring once it is confident.
/// </summary>
public sealed class Colstim
{
    readonly List<double> _differences = [];
    readonly List<double> _outcomes = [];
    readonly double[] _m;
    double[] _theta;
    double[] _mInverse;
    int _rounds;

    /// <summary>Creates the learner for <paramref name="dim"/>-dimensional contexts.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The dimension is not positive, or an option is out of range.</exception>
    public Colstim(int dim, ColstimOptions? options = null)
    {
        if (dim < 1) throw new ArgumentOutOfRangeException(nameof(dim), dim, "colstim: the dimension must be positive");
        Options = options ?? new ColstimOptions();
        if (!(Options.Ridge > 0) || double.IsInfinity(Options.Ridge)) throw new ArgumentOutOfRangeException(nameof(options), Options.Ridge, "colstim: Ridge must be positive and finite");
        if (!(Options.Threshold >= 0)) throw new ArgumentOutOfRangeException(nameof(options), Options.Threshold, "colstim: Threshold must be non-negative");
        if (!(Options.Confidence >= 0)) throw new ArgumentOutOfRangeException(nameof(options), Options.Confidence, "colstim: Confidence must be non-negative");
        if (Options.ExplorationRounds < 0) throw new ArgumentOutOfRangeException(nameof(options), Options.ExplorationRounds, "colstim: ExplorationRounds must be non-negative");
        Dim = dim;
        _theta = new double[dim];
        _m = new double[dim * dim];
        for (int a = 0; a < dim; a++) _m[a * dim + a] = Options.Ridge;
        _mInverse = Invert(_m, dim);
    }

    /// <summary>The context dimension d.</summary>
    public int Dim { get; }
    /// <summary>The settings.</summary>
    public ColstimOptions Options { get; }
    /// <summary>The current estimate θ̂.</summary>
    public IReadOnlyList<double> Theta => _theta;

    /// <summary>Picks the two arms to duel among the rows of <paramref name="contexts"/> [K, d] (K ≥ 2).</summary>
    /// <exception cref="ArgumentException">Fewer than two arms or the wrong width.</exception>
    public (int First, int Second) Select(double[,] contexts, Random rng)
    {
        ArgumentNullException.ThrowIfNull(contexts);
        ArgumentNullException.ThrowIfNull(rng);
        int k = contexts.GetLength(0);
        if (k < 2 || contexts.GetLength(1) != Dim) throw new ArgumentException($"colstim: contexts must be [K >= 2, {Dim}], got [{k}, {contexts.GetLength(1)}]", nameof(contexts));
        if (_rounds < Options.ExplorationRounds)
        {
            int a = rng.Next(k), b = rng.Next(k - 1);
            return (a, b >= a ? b + 1 : b);
        }
        var score = new double[k];
        for (int i = 0; i < k; i++)
        {
            double eps = Math.Clamp(LinearStochasticTransitivity.SamplePerturbation(Options.Link, rng), -Options.Threshold, Options.Threshold);
            score[i] = Utility(contexts, i) + eps * Math.Sqrt(Quadratic(contexts, i, -1));
        }
        int first = Sampling.ArgMax(score);
        for (int j = 0; j < k; j++)
            score[j] = Utility(contexts, j) + Options.Confidence * Math.Sqrt(Quadratic(contexts, j, first));
        return (first, Sampling.ArgMax(score));
    }

    /// <summary>Records the duel of <paramref name="first"/> against <paramref name="second"/> (feature vectors) and refits θ̂.</summary>
    /// <exception cref="ArgumentException">A vector has the wrong length.</exception>
    public void Observe(ReadOnlySpan<double> first, ReadOnlySpan<double> second, bool firstWon)
    {
        if (first.Length != Dim || second.Length != Dim) throw new ArgumentException($"colstim: feature vectors must have {Dim} values, got {first.Length} and {second.Length}", nameof(first));
        for (int a = 0; a < Dim; a++) _differences.Add(first[a] - second[a]);
        _outcomes.Add(firstWon ? 1 : 0);
        int off = _differences.Count - Dim;
        for (int a = 0; a < Dim; a++)
            for (int b = 0; b < Dim; b++) _m[a * Dim + b] += _differences[off + a] * _differences[off + b];
        _mInverse = Invert(_m, Dim);
        _rounds++;
        if (_rounds >= Options.ExplorationRounds)
            _theta = LinearStochasticTransitivity.FitMaximumLikelihood(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_differences),
                System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_outcomes), Dim, Options.Link, Options.Ridge, _theta, maxIterations: 20, tolerance: 1e-8);
    }

    double Utility(double[,] x, int i)
    {
        double s = 0;
        for (int a = 0; a < Dim; a++) s += _theta[a] * x[i, a];
        return s;
    }

    // |x_i - x_j|²_{M⁻¹}, or |x_i|²_{M⁻¹} when j < 0.
    double Quadratic(double[,] x, int i, int j)
    {
        double s = 0;
        for (int a = 0; a < Dim; a++)
            for (int b = 0; b < Dim; b++)
                s += (x[i, a] - (j < 0 ? 0 : x[j, a])) * _mInverse[a * Dim + b] * (x[i, b] - (j < 0 ? 0 : x[j, b]));
        return Math.Max(s, 0);
    }

    static double[] Invert(double[] m, int d)
    {
        var inv = new double[d * d];
        for (int c = 0; c < d; c++)
        {
            var e = new double[d];
            e[c] = 1;
            var col = LinearStochasticTransitivity.SolveSymmetric(m, e, d);
            for (int r = 0; r < d; r++) inv[r * d + c] = col[r];
        }
        return inv;
    }
}

/// <summary>Simulated contextual dueling bandits with LST feedback.</summary>
public static class ContextualDuelingBandit
{
    /// <summary>
    /// Runs <paramref name="learner"/> for <paramref name="horizon"/> rounds on a CoLST instance with true parameter
    /// <paramref name="thetaStar"/>: each round draws <paramref name="arms"/> contexts uniform in [-1, 1]^d / √d, the
    /// winner is drawn with P(first wins) = F(θ*ᵀ(x_i - x_j)), and the average regret
    /// max_k θ*ᵀx_k - (θ*ᵀx_i + θ*ᵀx_j)/2 accumulates. Returns the cumulative regret after each round.
    /// </summary>
    /// <exception cref="ArgumentException">θ* does not match the learner, fewer than two arms, or a negative horizon.</exception>
    public static double[] CumulativeRegret(double[] thetaStar, int arms, int horizon, Colstim learner, TransitivityLink link, Random rng)
    {
        ArgumentNullException.ThrowIfNull(thetaStar);
        ArgumentNullException.ThrowIfNull(learner);
        if (thetaStar.Length != learner.Dim) throw new ArgumentException($"dueling bandit: θ* has {thetaStar.Length} values, the learner {learner.Dim}", nameof(thetaStar));
        if (arms < 2) throw new ArgumentOutOfRangeException(nameof(arms), arms, "dueling bandit: needs at least two arms");
        if (horizon < 0) throw new ArgumentOutOfRangeException(nameof(horizon), horizon, "dueling bandit: the horizon must be non-negative");
        int d = thetaStar.Length;
        var x = new double[arms, d];
        var u = new double[arms];
        var regret = new double[horizon];
        double total = 0;
        for (int t = 0; t < horizon; t++)
        {
            for (int k = 0; k < arms; k++)
            {
                u[k] = 0;
                for (int a = 0; a < d; a++) { x[k, a] = (2 * rng.NextDouble() - 1) / Math.Sqrt(d); u[k] += thetaStar[a] * x[k, a]; }
            }
            var (i, j) = learner.Select(x, rng);
            bool firstWon = rng.NextDouble() < LinearStochasticTransitivity.Link(link, u[i] - u[j]);
            learner.Observe(Row(x, i), Row(x, j), firstWon);
            total += u.Max() - (u[i] + u[j]) / 2;
            regret[t] = total;
        }
        return regret;
    }

    static double[] Row(double[,] x, int i) => Enumerable.Range(0, x.GetLength(1)).Select(a => x[i, a]).ToArray();
}
