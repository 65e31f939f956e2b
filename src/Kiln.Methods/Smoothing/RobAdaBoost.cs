namespace Kiln.Methods.Smoothing;

/// <summary>
/// A weighted committee of smoothed stump ensembles trained by <see cref="RobAdaBoost"/>. A point is certifiably
/// correct at radius r when members holding more than half of the total weight are certifiably correct at r, so the
/// committee's radius is the weighted median of its members' radii (0 for members that predict wrongly).
/// </summary>
public sealed class StumpCommittee
{
    /// <summary>Creates a committee of <paramref name="members"/> with positive <paramref name="weights"/>.</summary>
    /// <exception cref="ArgumentException">The counts differ, the committee is empty, or a weight is not positive.</exception>
    public StumpCommittee(IReadOnlyList<StumpEnsemble> members, IReadOnlyList<double> weights)
    {
        if (members.Count != weights.Count || members.Count == 0) throw new ArgumentException($"a committee needs as many weights ({weights.Count}) as members ({members.Count}), at least one", nameof(weights));
        if (weights.Any(w => !(w > 0) || double.IsInfinity(w))) throw new ArgumentException("committee weights must be positive and finite", nameof(weights));
        Members = members; Weights = weights;
    }

    /// <summary>The member ensembles.</summary>
    public IReadOnlyList<StumpEnsemble> Members { get; }
    /// <summary>The members' weights alpha_k.</summary>
    public IReadOnlyList<double> Weights { get; }

    /// <summary>Per point, the committee's certified radius for its label (0 when it is not certifiably correct at any radius) against <paramref name="y"/>.</summary>
    public double[] CertifiedRadii(Tensor x, IReadOnlyList<int> y, Noise noise)
    {
        var radii = Members.Select(m => RobAdaBoost.CorrectRadii(m, x, y, noise)).ToArray();
        var result = new double[y.Count];
        for (int i = 0; i < y.Count; i++) result[i] = WeightedMedian(radii.Select(r => r[i]).ToArray(), Weights);
        return result;
    }

    /// <summary>
    /// The largest r such that the members with radius &gt;= r hold strictly more than half the weight; radii &lt;= 0 (wrong
    /// or uncertified members) never count, so the result is -1 when no weighted majority is correct.
    /// </summary>
    public static double WeightedMedian(IReadOnlyList<double> radii, IReadOnlyList<double> weights)
    {
        double half = weights.Sum() / 2, acc = 0;
        foreach (int k in Enumerable.Range(0, radii.Count).Where(k => radii[k] >= 0).OrderByDescending(k => radii[k]))
        {
            acc += weights[k];
            if (acc > half) return radii[k];
        }
        return -1;
    }
}

/// <summary>
/// RobAdaBoost: K rounds (20) of SAMME-style boosting of independent-MLE stump ensembles, reweighting the training set
/// by certified correctness at a target radius: eps = weighted error of "not certifiably correct at r",
/// alpha = ln((1 - eps) / eps), and the weights of failing points are multiplied by e^alpha.
/// </summary>
public static class RobAdaBoost
{
    /// <summary>Trains a committee of up to <paramref name="rounds"/> members; stops early once a member is no better than chance.</summary>
    public static StumpCommittee Train(Tensor x, IReadOnlyList<int> y, Noise noise, double targetRadius, int rounds = 20, MleOptions? options = null, Action<int>? roundDone = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rounds, 1);
        options ??= new MleOptions();
        int n = y.Count;
        var w = options.Balanced ? MleStumps.BalancedWeights(y) : Enumerable.Repeat(1.0, n).ToArray();
        double total = w.Sum();
        for (int i = 0; i < n; i++) w[i] /= total;
        var members = new List<StumpEnsemble>(); var alphas = new List<double>();
        for (int k = 0; k < rounds; k++)
        {
            var member = MleStumps.Train(x, y, noise, options, w.Select(v => v * n).ToArray());
            var radii = CorrectRadii(member, x, y, noise);
            double err = 0;
            for (int i = 0; i < n; i++) if (!(radii[i] > targetRadius)) err += w[i];
            err /= w.Sum();
            if (err >= 0.5 && members.Count > 0) break;
            err = Math.Clamp(err, 1e-10, 0.5 - 1e-10);
            double alpha = Math.Log((1 - err) / err);
            members.Add(member); alphas.Add(alpha);
            for (int i = 0; i < n; i++) if (!(radii[i] > targetRadius)) w[i] *= Math.Exp(alpha);
            double s = w.Sum();
            for (int i = 0; i < n; i++) w[i] /= s;
            roundDone?.Invoke(k + 1);
        }
        return new StumpCommittee(members, alphas);
    }

    /// <summary>Certified radius of each point when the smoothed prediction is correct, else -1.</summary>
    internal static double[] CorrectRadii(StumpEnsemble e, Tensor x, IReadOnlyList<int> y, Noise noise) =>
        ExactSmoothing.Certify(e, x, noise).Select((c, i) => c.Class == y[i] ? c.Radius : -1).ToArray();
}
