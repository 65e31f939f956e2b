using Kiln.Kernels;

namespace Kiln.Methods.Probabilistic;

/// <summary>Settings of <see cref="NGBoost.Fit"/>.</summary>
public sealed record NGBoostOptions
{
    /// <summary>Boosting rounds M.</summary>
    public int Rounds { get; init; } = 300;
    /// <summary>The learning rate eta.</summary>
    public double LearningRate { get; init; } = 0.05;
    /// <summary>Depth of each regression tree.</summary>
    public int MaxDepth { get; init; } = 3;
    /// <summary>Minimum rows per leaf.</summary>
    public int MinLeaf { get; init; } = 5;
    /// <summary>Fit the natural gradient (true, NGBoost) or the ordinary gradient (false, the paper's ablation).</summary>
    public bool Natural { get; init; } = true;
}

/// <summary>
/// NGBoost (Duan et al., 2020) for a normal predictive distribution N(mu(x), sigma(x)^2), parameterized by
/// theta = (mu, log sigma). Starting from the marginal fit, every round fits one regression tree per parameter to the
/// natural gradient g_i = I(theta_i)^-1 grad_theta NLL(theta_i; y_i) (I the Fisher information, diag(1/sigma^2, 2)
/// for this parameterization, so g = (mu - y, (1 - (y - mu)^2 / sigma^2) / 2)), finds the scale rho by the line
/// search of the reference implementation, and steps theta -= eta rho f(x).
/// </summary>
public sealed class NGBoost
{
    readonly List<(RegressionTree Mu, RegressionTree LogSigma, double Rho, double Step)> _stages = [];

    NGBoost(double mu0, double logSigma0) { Mu0 = mu0; LogSigma0 = logSigma0; }

    /// <summary>The marginal (initial) mean.</summary>
    public double Mu0 { get; }
    /// <summary>The marginal (initial) log standard deviation.</summary>
    public double LogSigma0 { get; }
    /// <summary>The line-search scale rho of every round.</summary>
    public IReadOnlyList<double> Scales => _stages.Select(s => s.Rho).ToArray();
    /// <summary>The mean training NLL after each round (index 0: the marginal fit).</summary>
    public IReadOnlyList<double> TrainLoss { get; private set; } = [];

    /// <summary>The per-row negative log-likelihood log sigma + (y - mu)^2 / (2 sigma^2) + log(2 pi) / 2 (Float64 [n]).</summary>
    public static Tensor NegLogLikelihood(Tensor mu, Tensor logSigma, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(mu); ArgumentNullException.ThrowIfNull(logSigma); ArgumentNullException.ThrowIfNull(y);
        var z = (y - mu) * (-logSigma).Exp();
        return logSigma + z.Square() * 0.5 + 0.5 * Math.Log(2 * Math.PI);
    }

    /// <summary>The gradient of the NLL in theta = (mu, log sigma): ((mu - y) / sigma^2, 1 - (y - mu)^2 / sigma^2).</summary>
    public static (Tensor Mu, Tensor LogSigma) Gradient(Tensor mu, Tensor logSigma, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(mu); ArgumentNullException.ThrowIfNull(logSigma); ArgumentNullException.ThrowIfNull(y);
        var inv = (logSigma * -2).Exp();
        return ((mu - y) * inv, 1 - (y - mu).Square() * inv);
    }

    /// <summary>The diagonal of the Fisher information of N(mu, sigma^2) in (mu, log sigma): (1 / sigma^2, 2).</summary>
    public static (Tensor Mu, Tensor LogSigma) Fisher(Tensor logSigma)
    {
        ArgumentNullException.ThrowIfNull(logSigma);
        return ((logSigma * -2).Exp(), Tensor.Full(logSigma.Shape, 2.0, logSigma.DType, logSigma.Device));
    }

    /// <summary>The natural gradient I^-1 grad NLL in closed form: (mu - y, (1 - (y - mu)^2 / sigma^2) / 2).</summary>
    public static (Tensor Mu, Tensor LogSigma) NaturalGradient(Tensor mu, Tensor logSigma, Tensor y)
    {
        var (_, gs) = Gradient(mu, logSigma, y);
        return (mu - y, gs * 0.5);
    }

    /// <summary>
    /// The reference implementation's line search for the scale of a step: from rho = 1, double while the loss stays
    /// finite and no worse than loss(0) (up to 256), then halve until the loss is below loss(0) (down to 2^-20).
    /// </summary>
    public static double LineSearch(Func<double, double> loss)
    {
        ArgumentNullException.ThrowIfNull(loss);
        double l0 = loss(0), scale = 1;
        while (true)
        {
            double l = loss(scale);
            if (!double.IsFinite(l) || l > l0 || scale > 256) break;
            scale *= 2;
        }
        while (scale > 1.0 / (1 << 20))
        {
            double l = loss(scale);
            if (double.IsFinite(l) && l < l0) break;
            scale *= 0.5;
        }
        return scale;
    }

    /// <summary>Fits the model to inputs <paramref name="x"/> ([n, d]) and targets <paramref name="y"/> ([n]).</summary>
    /// <exception cref="ArgumentException">The shapes disagree or there are fewer than 2 rows.</exception>
    /// <exception cref="ArgumentOutOfRangeException">Rounds is negative or the learning rate is not positive.</exception>
    public static NGBoost Fit(Tensor x, Tensor y, NGBoostOptions? options = null)
    {
        var o = options ?? new NGBoostOptions();
        ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(y);
        if (x.Rank != 2 || y.Rank != 1 || y.Shape[0] != x.Shape[0] || x.Shape[0] < 2) throw new ArgumentException($"ngboost: x must be [n, d] with y [n], n >= 2, got {x.Shape} and {y.Shape}", nameof(y));
        ArgumentOutOfRangeException.ThrowIfNegative(o.Rounds, "Rounds");
        if (!(o.LearningRate > 0) || double.IsInfinity(o.LearningRate)) throw new ArgumentOutOfRangeException("LearningRate", o.LearningRate, "ngboost: the learning rate must be positive and finite");
        var yd = y.To(DType.Float64);
        double mean = yd.Mean().Item();
        double std = Math.Sqrt(Math.Max((yd - mean).Square().Mean().Item(), 1e-12));
        var model = new NGBoost(mean, Math.Log(std));
        int n = x.Shape[0];
        var mu = Tensor.Full(new Shape(n), mean, DType.Float64, y.Device);
        var ls = Tensor.Full(new Shape(n), Math.Log(std), DType.Float64, y.Device);
        var losses = new List<double> { NegLogLikelihood(mu, ls, yd).Mean().Item() };
        for (int m = 0; m < o.Rounds; m++)
        {
            var (gm, gs) = o.Natural ? NaturalGradient(mu, ls, yd) : Gradient(mu, ls, yd);
            var tm = RegressionTree.Fit(x, gm, o.MaxDepth, o.MinLeaf);
            var ts = RegressionTree.Fit(x, gs, o.MaxDepth, o.MinLeaf);
            var fm = tm.Predict(x); var fs = ts.Predict(x);
            var mu0 = mu; var ls0 = ls;
            double rho = LineSearch(r => NegLogLikelihood(mu0 - fm * r, ls0 - fs * r, yd).Mean().Item());
            double step = o.LearningRate * rho;
            mu = mu - fm * step; ls = ls - fs * step;
            model._stages.Add((tm, ts, rho, step));
            losses.Add(NegLogLikelihood(mu, ls, yd).Mean().Item());
        }
        model.TrainLoss = losses;
        return model;
    }

    /// <summary>The predicted mean and standard deviation for each row of <paramref name="x"/> ([n, d]): Float64 [n] each.</summary>
    public (Tensor Mu, Tensor Sigma) Predict(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Rank != 2) throw new ArgumentException($"ngboost: x must be [n, d], got {x.Shape}", nameof(x));
        int n = x.Shape[0];
        var mu = Tensor.Full(new Shape(n), Mu0, DType.Float64, x.Device);
        var ls = Tensor.Full(new Shape(n), LogSigma0, DType.Float64, x.Device);
        foreach (var (tm, ts, _, step) in _stages)
        {
            mu = mu - tm.Predict(x) * step;
            ls = ls - ts.Predict(x) * step;
        }
        return (mu, ls.Exp());
    }

    /// <summary>
    /// The central interval of level 1 - <paramref name="alpha"/> of the predictive normal, mu -/+ z sigma with
    /// z = Phi^-1(1 - alpha/2), for each row of <paramref name="x"/>.
    /// </summary>
    public (Tensor Lower, Tensor Upper) Interval(Tensor x, double alpha)
    {
        if (!(alpha > 0 && alpha < 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "ngboost: alpha must be in (0, 1)");
        var (mu, sigma) = Predict(x);
        double z = Reference.NormalIcdf(1 - alpha / 2);
        return (mu - sigma * z, mu + sigma * z);
    }
}
