namespace Kiln.Methods.Probabilistic;

/// <summary>
/// One round of <see cref="FairDensityBooster"/>: the weak classifier c_t on the domain, its means under the data and
/// under the previous density, the step alpha_t and the density q_t it produced.
/// </summary>
/// <param name="Classifier">c_t(x) in [-1, 1] at every domain point, Float64 [m].</param>
/// <param name="DataMean">mu_P = E_P[c_t] under the empirical data distribution.</param>
/// <param name="ModelMean">mu_Q = E_{q_{t-1}}[c_t] under the previous density.</param>
/// <param name="Step">alpha_t after clipping to the fairness budget left.</param>
/// <param name="Density">q_t at every domain point, Float64 [m], normalised by enumeration.</param>
/// <param name="LogLikelihood">The mean data log-likelihood (1/n) sum_i log q_t(x_i).</param>
public sealed record FairDensityRound(Tensor Classifier, double DataMean, double ModelMean, double Step, Tensor Density, double LogLikelihood);

/// <summary>
/// Fair densities by boosting the sufficient statistics of an exponential family (Soen, Husain and Nock, 2023) on a
/// finite domain: q_t(x) = q_0(x) exp(sum_k alpha_k c_k(x)) / Z_t, Z_t by enumeration of the domain. Each weak learner
/// c_t is a least-squares <see cref="RegressionTree"/> fitted to tell the data (+1, weight p^(x)) from the current
/// density (-1, weight q_{t-1}(x)); its leaves are (P_L - Q_L) / (P_L + Q_L) in [-1, 1]. The step
/// alpha_t = atanh(mu_P) - atanh(mu_Q) maximises the likelihood gain's lower bound
/// alpha mu_P - log(cosh alpha + mu_Q sinh alpha) (exact for +-1 classifiers) and is clipped so that
/// sum_t |alpha_t| stays within the budget (1/2) log(RR(q_0) / tau): since |c_t| &lt;= 1, q_t / q_0 lies in
/// [e^{-2A}, e^{2A}] up to the constant Z with A = sum |alpha|, so the representation rate
/// RR(q) = min_s P_q(s) / max_s P_q(s) stays at least RR(q_0) e^{-2A} &gt;= tau and the statistical rate at least
/// SR(q_0) e^{-4A}.
/// </summary>
public sealed class FairDensityBooster
{
    FairDensityBooster(Tensor baseDensity, double budget, IReadOnlyList<FairDensityRound> rounds)
    {
        BaseDensity = baseDensity; Budget = budget; Rounds = rounds;
    }

    /// <summary>The fair base density q_0, Float64 [m].</summary>
    public Tensor BaseDensity { get; }

    /// <summary>The fairness budget (1/2) log(RR(q_0) / tau) that bounds sum_t |alpha_t|.</summary>
    public double Budget { get; }

    /// <summary>The boosting rounds in order.</summary>
    public IReadOnlyList<FairDensityRound> Rounds { get; }

    /// <summary>The final density q_T, Float64 [m] (q_0 after zero rounds).</summary>
    public Tensor Density => Rounds.Count == 0 ? BaseDensity : Rounds[^1].Density;

    /// <summary>
    /// Boosts the base density <paramref name="baseDensity"/> (q_0 &gt; 0 on every row of <paramref name="domain"/>
    /// [m, d], summing to 1) towards the data <paramref name="data"/> (Int64 [n] row indices into the domain) for
    /// <paramref name="rounds"/> rounds with weak learners of depth <paramref name="maxDepth"/>, keeping the
    /// representation rate of the sensitive attribute <paramref name="groups"/> (Int64 [m], at least two groups)
    /// at least <paramref name="minRepresentationRate"/> (tau in (0, RR(q_0)]).
    /// </summary>
    /// <exception cref="ArgumentException">Shapes or dtypes disagree, q_0 is not a positive distribution, a data index is outside [0, m), or there is a single group.</exception>
    /// <exception cref="ArgumentOutOfRangeException">tau is outside (0, RR(q_0)], rounds is negative or maxDepth is below 1.</exception>
    public static FairDensityBooster Fit(Tensor domain, Tensor baseDensity, Tensor data, Tensor groups, double minRepresentationRate, int rounds = 20, int maxDepth = 1)
    {
        ArgumentNullException.ThrowIfNull(domain);
        if (domain.Rank != 2 || domain.Shape[0] == 0) throw new ArgumentException($"fair density boosting: domain must be [m, d] with m > 0, got {domain.Shape}", nameof(domain));
        int m = domain.Shape[0];
        var q0 = CheckDensity(baseDensity, m, nameof(baseDensity));
        var idx = CheckIndices(data, m);
        var g = CheckGroups(groups, m);
        ArgumentOutOfRangeException.ThrowIfNegative(rounds);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxDepth, 1);
        double rr0 = Rate(GroupMass(q0, g));
        if (!(minRepresentationRate > 0 && minRepresentationRate <= rr0))
            throw new ArgumentOutOfRangeException(nameof(minRepresentationRate), minRepresentationRate, $"fair density boosting: tau must be in (0, RR(q_0) = {rr0}]");
        double budget = 0.5 * Math.Log(rr0 / minRepresentationRate), left = budget;

        var empirical = new double[m];
        foreach (long i in idx) empirical[i] += 1.0 / idx.Length;
        var x2 = Tensor.Concat([domain.To(DType.Float64), domain.To(DType.Float64)], 0);
        var sign = Tensor.FromArray(Enumerable.Range(0, 2 * m).Select(i => i < m ? 1.0 : -1.0).ToArray(), new Shape(2 * m));
        var logq0 = q0.Select(v => Math.Log(v)).ToArray();
        var f = new double[m];
        var q = q0;
        var history = new List<FairDensityRound>();
        for (int t = 0; t < rounds; t++)
        {
            var w = Tensor.FromArray(empirical.Concat(q).ToArray(), new Shape(2 * m));
            var c = RegressionTree.Fit(x2, sign, maxDepth, minLeaf: 1, weight: w).Predict(domain.To(DType.Float64)).ToArray<double>();
            double muP = 0, muQ = 0;
            for (int i = 0; i < m; i++) { muP += empirical[i] * c[i]; muQ += q[i] * c[i]; }
            double alpha = Math.Clamp(Step(muP, muQ), -left, left);
            left = Math.Max(0, left - Math.Abs(alpha));
            for (int i = 0; i < m; i++) f[i] += alpha * c[i];
            q = Normalise(logq0, f);
            history.Add(new FairDensityRound(Tensor.FromArray(c, new Shape(m)), muP, muQ, alpha, Tensor.FromArray(q, new Shape(m)), MeanLog(q, idx)));
        }
        return new FairDensityBooster(Tensor.FromArray(q0, new Shape(m)), budget, history);
    }

    /// <summary>
    /// The unclipped step atanh(mu_P) - atanh(mu_Q) for a classifier with means <paramref name="dataMean"/> under the data
    /// and <paramref name="modelMean"/> under the current density (both in [-1, 1]); exactly 0 at zero edge
    /// mu_P = mu_Q, and +-infinity when mu_P = +-1 (then only the fairness budget bounds it).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A mean is outside [-1, 1].</exception>
    public static double Step(double dataMean, double modelMean)
    {
        if (!(dataMean >= -1 && dataMean <= 1)) throw new ArgumentOutOfRangeException(nameof(dataMean), dataMean, "fair density boosting: mu_P must be in [-1, 1]");
        if (!(modelMean >= -1 && modelMean <= 1)) throw new ArgumentOutOfRangeException(nameof(modelMean), modelMean, "fair density boosting: mu_Q must be in [-1, 1]");
        if (dataMean == modelMean) return 0;
        return Math.Atanh(dataMean) - Math.Atanh(modelMean);
    }

    /// <summary>The mean log-likelihood (1/n) sum_i log q(x_i) of the data (Int64 [n] indices) under a density q [m].</summary>
    /// <exception cref="ArgumentException">The density is not a distribution on m points or an index is outside [0, m).</exception>
    public static double LogLikelihood(Tensor density, Tensor data)
    {
        var q = CheckDensity(density, density?.Rank == 1 ? density.Shape[0] : -1, nameof(density));
        return MeanLog(q, CheckIndices(data, q.Length));
    }

    /// <summary>
    /// The representation rate min_s P_q(s) / max_s P_q(s) of the sensitive attribute <paramref name="groups"/>
    /// (Int64 [m]) under the density <paramref name="density"/> [m]: 1 when every group has the same mass.
    /// </summary>
    /// <exception cref="ArgumentException">Shapes disagree, the density is not a distribution, or there is a single group.</exception>
    public static double RepresentationRate(Tensor density, Tensor groups)
    {
        var q = CheckDensity(density, density?.Rank == 1 ? density.Shape[0] : -1, nameof(density));
        return Rate(GroupMass(q, CheckGroups(groups, q.Length)));
    }

    /// <summary>
    /// The statistical rate min_s P_q(y = 1 | s) / max_s P_q(y = 1 | s) of the binary outcome <paramref name="outcome"/>
    /// (Int64 [m] in {0, 1}, the outcome at each domain point) across the groups <paramref name="groups"/> (Int64 [m]).
    /// </summary>
    /// <exception cref="ArgumentException">Shapes disagree, the density is not a distribution, an outcome is not 0 or 1, or there is a single group.</exception>
    public static double StatisticalRate(Tensor density, Tensor groups, Tensor outcome)
    {
        var q = CheckDensity(density, density?.Rank == 1 ? density.Shape[0] : -1, nameof(density));
        var g = CheckGroups(groups, q.Length);
        var y = CheckIndices(outcome, 2, q.Length, nameof(outcome));
        var mass = GroupMass(q, g);
        var positive = GroupMass(q.Select((v, i) => y[i] == 1 ? v : 0).ToArray(), g);
        return Rate(positive.Select((p, s) => p / mass[s]).ToArray());
    }

    static double Rate(double[] values) => values.Min() / values.Max();

    // Mass per group, over the groups that occur (group ids are labels, not necessarily 0..S-1).
    static double[] GroupMass(double[] q, long[] groups)
    {
        var mass = new SortedDictionary<long, double>();
        for (int i = 0; i < q.Length; i++) mass[groups[i]] = mass.GetValueOrDefault(groups[i]) + q[i];
        return [.. mass.Values];
    }

    // q = exp(log q0 + f - logsumexp(log q0 + f)), the exact normaliser of the finite domain.
    static double[] Normalise(double[] logq0, double[] f)
    {
        var a = logq0.Select((v, i) => v + f[i]).ToArray();
        double max = a.Max(), s = 0;
        foreach (double v in a) s += Math.Exp(v - max);
        double logZ = max + Math.Log(s);
        return a.Select(v => Math.Exp(v - logZ)).ToArray();
    }

    static double MeanLog(double[] q, long[] idx) => idx.Sum(i => Math.Log(q[i])) / idx.Length;

    static double[] CheckDensity(Tensor? density, int m, string name)
    {
        ArgumentNullException.ThrowIfNull(density, name);
        if (density.Rank != 1 || density.Shape[0] != m || m == 0) throw new ArgumentException($"fair density boosting: {name} must be [m] = [{m}] with m > 0, got {density.Shape}", name);
        var q = density.To(DType.Float64).ToArray<double>();
        int bad = Array.FindIndex(q, v => !(v > 0) || double.IsInfinity(v));
        if (bad >= 0) throw new ArgumentException($"fair density boosting: {name} must be positive and finite everywhere, got {q[bad]} at {bad}", name);
        double s = q.Sum();
        if (Math.Abs(s - 1) > 1e-9) throw new ArgumentException($"fair density boosting: {name} must sum to 1, got {s}", name);
        return q.Select(v => v / s).ToArray();
    }

    static long[] CheckIndices(Tensor? data, int m) => CheckIndices(data, m, -1, nameof(data));

    // Int64 [n] (n > 0; n = length when length >= 0) with values in [0, m).
    static long[] CheckIndices(Tensor? t, int m, int length, string name)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        if (t.DType != DType.Int64 || t.Rank != 1 || t.Shape[0] == 0 || (length >= 0 && t.Shape[0] != length))
            throw new ArgumentException($"fair density boosting: {name} must be Int64 [{(length >= 0 ? length.ToString() : "n > 0")}], got {t.DType} {t.Shape}", name);
        var v = t.ToArray<long>();
        int bad = Array.FindIndex(v, i => i < 0 || i >= m);
        if (bad >= 0) throw new ArgumentException($"fair density boosting: {name}[{bad}] = {v[bad]} is outside [0, {m})", name);
        return v;
    }

    static long[] CheckGroups(Tensor? groups, int m)
    {
        ArgumentNullException.ThrowIfNull(groups);
        if (groups.DType != DType.Int64 || groups.Rank != 1 || groups.Shape[0] != m)
            throw new ArgumentException($"fair density boosting: groups must be Int64 [{m}], got {groups.DType} {groups.Shape}", nameof(groups));
        var g = groups.ToArray<long>();
        if (g.Distinct().Count() < 2) throw new ArgumentException("fair density boosting: groups must hold at least two sensitive groups", nameof(groups));
        return g;
    }
}
