namespace Kiln.Methods.Sketching;

/// <summary>
/// Double-weighting covariate shift adaptation (Segovia-Martín, Mazuelas and Liu, "Double-Weighting for Covariate Shift
/// Adaptation", ICML 2023). Instead of one density ratio p_te/p_tr on the training points, which blows up where the
/// training density is small, the method weights the n training points by β and the t test points by α so that
/// β(x)p_tr(x) = α(x)p_te(x), found by kernel mean matching on both samples:
/// min ‖(1/n)Σᵢβᵢφ(xᵢ) − (1/t)Σⱼαⱼφ(x′ⱼ)‖² s.t. 0 ≤ βᵢ ≤ B/√D, 0 ≤ αⱼ ≤ 1, Σβᵢ = n/√D, Σαⱼ = t/√D,
/// with a Gaussian kernel; D ≥ 1 trades the two weightings (D = 1 forces α = 1, classical kernel mean matching).
/// The quadratic program is solved in float64 by accelerated projected gradient on the two capped simplices
/// (<see cref="CappedSimplex"/>) with an active-set polish. The classifier is the log-loss minimax risk classifier with
/// double weights: the expectation estimate τ = (1/n)ΣᵢβᵢΦ(xᵢ, yᵢ) and the test points weighted by α, whose dual is
/// min_μ −τᵀμ + (1/t)Σⱼ log Σ_y exp(αⱼΦ(x′ⱼ, y)ᵀμ) + λ‖μ‖₁, with Φ(x, y) = e_y ⊗ [1, x] (so μ is [classes, 1 + p]);
/// it predicts argmax_y Φ(x, y)ᵀμ.
/// </summary>
public static class DoubleWeighting
{
    /// <summary>K_ij = exp(−‖xᵢ − zⱼ‖²/2σ²), [n, m], in float64.</summary>
    /// <param name="x">Points, [n, p].</param>
    /// <param name="z">Points, [m, p].</param>
    /// <param name="bandwidth">σ, positive and finite.</param>
    public static Tensor GaussianKernel(Tensor x, Tensor z, double bandwidth)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(z);
        if (x.Rank != 2 || z.Rank != 2 || x.Shape[1] != z.Shape[1])
            throw new ShapeMismatchException("DoubleWeighting.GaussianKernel", nameof(z), $"points of shapes {x.Shape} and {z.Shape} must be [n, p] and [m, p]");
        if (!(bandwidth > 0) || double.IsInfinity(bandwidth)) throw new ArgumentOutOfRangeException(nameof(bandwidth), bandwidth, "DoubleWeighting: the kernel bandwidth must be positive and finite");
        var d2 = (x.To(DType.Float64).Unsqueeze(1) - z.To(DType.Float64).Unsqueeze(0)).Pow(2).Sum(-1);
        return (d2 * (-0.5 / (bandwidth * bandwidth))).Exp();
    }

    /// <summary>The double weights β (training) and α (test) from the kernel-mean-matching quadratic program.</summary>
    /// <param name="trainFeatures">Training points, [n, p] (n ≥ 1).</param>
    /// <param name="testFeatures">Test points, [t, p] (t ≥ 1).</param>
    /// <param name="bandwidth">σ of the Gaussian kernel.</param>
    /// <param name="bound">B ≥ 1, the cap of √D·β.</param>
    /// <param name="d">D ≥ 1.</param>
    /// <param name="tolerance">Stop when the KKT residual (the projected-gradient step, in gradient units) is at most this
    /// times 2·max(1/n, 1/t), the scale of the gradient.</param>
    /// <param name="maxIterations">Projected-gradient budget (positive).</param>
    /// <exception cref="ArgumentOutOfRangeException">B or D is below 1 or not finite, or the tolerance is not positive.</exception>
    /// <exception cref="ShapeMismatchException">The feature matrices are empty or do not share p.</exception>
    public static DoubleWeights Weights(Tensor trainFeatures, Tensor testFeatures, double bandwidth, double bound = 1000, double d = 1, double tolerance = 1e-10, int maxIterations = 20000)
    {
        ArgumentNullException.ThrowIfNull(trainFeatures);
        ArgumentNullException.ThrowIfNull(testFeatures);
        if (trainFeatures.Rank != 2 || trainFeatures.Shape[0] == 0)
            throw new ShapeMismatchException("DoubleWeighting.Weights", nameof(trainFeatures), $"training features have shape {trainFeatures.Shape}; they must be [n, p] with n ≥ 1");
        if (testFeatures.Rank != 2 || testFeatures.Shape[0] == 0 || testFeatures.Shape[1] != trainFeatures.Shape[1])
            throw new ShapeMismatchException("DoubleWeighting.Weights", nameof(testFeatures), $"test features have shape {testFeatures.Shape}; they must be [t, {trainFeatures.Shape[1]}] with t ≥ 1");
        if (!(bound >= 1) || double.IsInfinity(bound)) throw new ArgumentOutOfRangeException(nameof(bound), bound, "DoubleWeighting: the bound B must be finite and at least 1 (else Σβ = n/√D is infeasible)");
        if (!(d >= 1) || double.IsInfinity(d)) throw new ArgumentOutOfRangeException(nameof(d), d, "DoubleWeighting: D must be finite and at least 1");
        if (!(tolerance > 0)) throw new ArgumentOutOfRangeException(nameof(tolerance), tolerance, "DoubleWeighting: the tolerance must be positive");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxIterations);
        var qp = new KernelMeanProgram(GaussianKernel(Tensor.Concat([trainFeatures, testFeatures], 0), Tensor.Concat([trainFeatures, testFeatures], 0), bandwidth),
            trainFeatures.Shape[0], testFeatures.Shape[0], bound / Math.Sqrt(d), 1 / Math.Sqrt(d));
        var (z, iterations) = qp.Solve(tolerance * 2 * Math.Max(1.0 / trainFeatures.Shape[0], 1.0 / testFeatures.Shape[0]), maxIterations);
        int n = qp.N;
        return new DoubleWeights(Tensor.FromArray(z[..n], new Shape(n)), Tensor.FromArray(z[n..], new Shape(z.Length - n)), qp.Value(z), qp.Residual(z), iterations);
    }

    /// <summary>
    /// The smooth part of the classifier's objective, −(1/n)Σᵢβᵢ μ_(yᵢ)·[1, xᵢ] + (1/t)Σⱼ log Σ_y exp(αⱼ μ_y·[1, x′ⱼ]), a
    /// scalar (differentiable in μ).
    /// </summary>
    /// <param name="parameters">μ, [classes, 1 + p].</param>
    /// <param name="trainFeatures">Training points, [n, p].</param>
    /// <param name="trainLabels">Integer labels in [0, classes), [n].</param>
    /// <param name="testFeatures">Test points, [t, p].</param>
    /// <param name="trainWeights">β, [n].</param>
    /// <param name="testWeights">α, [t].</param>
    public static Tensor Objective(Tensor parameters, Tensor trainFeatures, Tensor trainLabels, Tensor testFeatures, Tensor trainWeights, Tensor testWeights)
    {
        var (xs, ys, xt) = CheckClassifier(parameters, trainFeatures, trainLabels, testFeatures, trainWeights, testWeights, "Objective");
        var fit = (xs.MatMul(parameters.T) * ys).Sum(1);
        return -(trainWeights.To(parameters.DType) * fit).Mean() + (xt.MatMul(parameters.T) * testWeights.To(parameters.DType).Unsqueeze(-1)).LogSumExp(1).Mean();
    }

    /// <summary>
    /// Fits the double-weighted classifier: proximal gradient (accelerated, with restarts) on <see cref="Objective"/> +
    /// λ‖μ‖₁ from μ = 0, in float64. Returns μ [classes, 1 + p].
    /// </summary>
    /// <param name="trainFeatures">Training points, [n, p].</param>
    /// <param name="trainLabels">Integer labels in [0, classes), [n].</param>
    /// <param name="testFeatures">Test points, [t, p] (the ones the weights were computed on).</param>
    /// <param name="weights">β and α from <see cref="Weights"/> (or uniform ones for the unweighted classifier).</param>
    /// <param name="classes">Number of classes (at least 2).</param>
    /// <param name="regularization">λ ≥ 0.</param>
    /// <param name="steps">Proximal-gradient steps (positive).</param>
    public static Tensor Fit(Tensor trainFeatures, Tensor trainLabels, Tensor testFeatures, DoubleWeights weights, int classes, double regularization = 1e-3, int steps = 3000)
    {
        ArgumentNullException.ThrowIfNull(trainFeatures);
        ArgumentNullException.ThrowIfNull(weights);
        if (classes < 2) throw new ArgumentOutOfRangeException(nameof(classes), classes, "DoubleWeighting.Fit: at least 2 classes are needed");
        if (!(regularization >= 0) || double.IsInfinity(regularization)) throw new ArgumentOutOfRangeException(nameof(regularization), regularization, "DoubleWeighting.Fit: λ must be finite and non-negative");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(steps);
        var mu = Tensor.Zeros(new Shape(classes, trainFeatures.Shape[^1] + 1), DType.Float64);
        var (xs, ys, xt) = CheckClassifier(mu, trainFeatures, trainLabels, testFeatures, weights.Train, weights.Test, "Fit");
        var beta = weights.Train.To(DType.Float64);
        var alpha = weights.Test.To(DType.Float64).Unsqueeze(-1);
        int n = xs.Shape[0], t = xt.Shape[0];
        var tau = (ys * beta.Unsqueeze(-1)).T.MatMul(xs) / n;
        var ax = xt * alpha;
        // The log-sum-exp term's Hessian is at most ½ in each αⱼx̃ⱼ direction: L = ‖αX̃′‖₂²/(2t) ≤ ‖αX̃′‖_F²/(2t).
        double step = 2 * t / Math.Max(ax.Pow(2).Sum().Item(), 1e-300);
        Tensor grad(Tensor m) => ax.MatMul(m.T).Softmax(1).T.MatMul(ax) / t - tau;
        Tensor prox(Tensor m) => m.Sign() * (m.Abs() - step * regularization).Clamp(min: 0);
        Tensor y = mu, previous = mu;
        double momentum = 1;
        for (int s = 0; s < steps; s++)
        {
            var next = prox(y - step * grad(y));
            double nextMomentum = 0.5 * (1 + Math.Sqrt(1 + 4 * momentum * momentum));
            // Restart the momentum when it points uphill (O'Donoghue and Candès).
            if (((y - next) * (next - previous)).Sum().Item() > 0) nextMomentum = 1;
            y = next + (momentum - 1) / nextMomentum * (next - previous);
            if (nextMomentum == 1) y = next;
            (previous, momentum) = (next, nextMomentum);
        }
        return previous;
    }

    /// <summary>The predicted class argmax_y μ_y·[1, x] per point, [m] (Int64).</summary>
    /// <param name="parameters">μ, [classes, 1 + p].</param>
    /// <param name="features">Points, [m, p].</param>
    public static Tensor Predict(Tensor parameters, Tensor features)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(features);
        if (parameters.Rank != 2 || features.Rank != 2 || parameters.Shape[1] != features.Shape[1] + 1)
            throw new ShapeMismatchException("DoubleWeighting.Predict", nameof(features), $"features {features.Shape} must be [m, p] for parameters {parameters.Shape} of shape [classes, 1 + p]");
        return Augment(features.To(parameters.DType)).MatMul(parameters.T).ArgMax(1);
    }

    // [1, x] per row.
    static Tensor Augment(Tensor x) => Tensor.Concat([Tensor.Ones(new Shape(x.Shape[0], 1), x.DType, x.Device), x], 1);

    static (Tensor Train, Tensor OneHot, Tensor Test) CheckClassifier(Tensor parameters, Tensor trainFeatures, Tensor trainLabels, Tensor testFeatures, Tensor trainWeights, Tensor testWeights, string op)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(trainFeatures);
        ArgumentNullException.ThrowIfNull(trainLabels);
        ArgumentNullException.ThrowIfNull(testFeatures);
        ArgumentNullException.ThrowIfNull(trainWeights);
        ArgumentNullException.ThrowIfNull(testWeights);
        string where = $"DoubleWeighting.{op}";
        if (parameters.Rank != 2 || !parameters.DType.IsFloating()) throw new ArgumentException($"{where}: parameters must be a floating [classes, 1 + p] matrix, got {parameters.DType} of shape {parameters.Shape}", nameof(parameters));
        int classes = parameters.Shape[0], p = parameters.Shape[1] - 1;
        if (trainFeatures.Rank != 2 || trainFeatures.Shape[1] != p || trainFeatures.Shape[0] == 0)
            throw new ShapeMismatchException(where, nameof(trainFeatures), $"training features have shape {trainFeatures.Shape}; they must be [n, {p}] with n ≥ 1");
        if (testFeatures.Rank != 2 || testFeatures.Shape[1] != p || testFeatures.Shape[0] == 0)
            throw new ShapeMismatchException(where, nameof(testFeatures), $"test features have shape {testFeatures.Shape}; they must be [t, {p}] with t ≥ 1");
        int n = trainFeatures.Shape[0], t = testFeatures.Shape[0];
        if (trainLabels.Shape != new Shape(n)) throw new ShapeMismatchException(where, nameof(trainLabels), $"labels have shape {trainLabels.Shape}; they must be [{n}]");
        if (trainWeights.Shape != new Shape(n)) throw new ShapeMismatchException(where, nameof(trainWeights), $"β has shape {trainWeights.Shape}; it must be [{n}]");
        if (testWeights.Shape != new Shape(t)) throw new ShapeMismatchException(where, nameof(testWeights), $"α has shape {testWeights.Shape}; it must be [{t}]");
        var labels = trainLabels.To(DType.Int64).ToArray<long>();
        int bad = Array.FindIndex(labels, l => l < 0 || l >= classes);
        if (bad >= 0) throw new ArgumentException($"{where}: trainLabels[{bad}] = {labels[bad]} is outside [0, {classes})", nameof(trainLabels));
        foreach (var (w, name) in new[] { (trainWeights, nameof(trainWeights)), (testWeights, nameof(testWeights)) })
        {
            var v = w.To(DType.Float64).ToArray<double>();
            int i = Array.FindIndex(v, x => !(x >= 0) || double.IsInfinity(x));
            if (i >= 0) throw new ArgumentException($"{where}: {name}[{i}] = {v[i]}; weights must be finite and non-negative", name);
        }
        return (Augment(trainFeatures.To(parameters.DType)), trainLabels.To(DType.Int64).OneHot(classes, parameters.DType), Augment(testFeatures.To(parameters.DType)));
    }

    // f(z) = cᵀKc with c = [β/n; −α/t], over the product of the capped simplices {0 ≤ β ≤ uβ, Σβ = n·s} and {0 ≤ α ≤ 1, Σα = t·s}.
    sealed class KernelMeanProgram
    {
        readonly double[] _k;
        readonly int _size;
        readonly double _upperTrain, _share;
        public readonly int N, T;

        public KernelMeanProgram(Tensor gram, int n, int t, double upperTrain, double share)
        {
            _k = gram.Contiguous().ToArray<double>();
            (N, T, _size, _upperTrain, _share) = (n, t, n + t, upperTrain, share);
        }

        double Scale(int i) => i < N ? 1.0 / N : -1.0 / T;

        double[] KernelTimesC(double[] z)
        {
            var c = new double[_size];
            for (int i = 0; i < _size; i++) c[i] = z[i] * Scale(i);
            var kc = new double[_size];
            for (int i = 0; i < _size; i++)
            {
                double s = 0;
                for (int j = 0; j < _size; j++) s += _k[i * _size + j] * c[j];
                kc[i] = s;
            }
            return kc;
        }

        public double Value(double[] z)
        {
            var kc = KernelTimesC(z);
            double v = 0;
            for (int i = 0; i < _size; i++) v += z[i] * Scale(i) * kc[i];
            return Math.Max(0, v);
        }

        public double[] Gradient(double[] z)
        {
            var g = KernelTimesC(z);
            for (int i = 0; i < _size; i++) g[i] *= 2 * Scale(i);
            return g;
        }

        public double[] Project(double[] z) =>
            [.. CappedSimplex.Project(z[..N], _upperTrain, N * _share), .. CappedSimplex.Project(z[N..], 1, T * _share)];

        // The projected-gradient step ‖z − Π(z − ∇f/L)‖∞·L: zero exactly at a KKT point.
        public double Residual(double[] z) => Residual(z, Lipschitz());

        double Residual(double[] z, double lipschitz)
        {
            var g = Gradient(z);
            var moved = Project(z.Select((v, i) => v - g[i] / lipschitz).ToArray());
            return z.Select((v, i) => Math.Abs(v - moved[i])).Max() * lipschitz;
        }

        double? _lipschitz;

        // 2 λmax(K) max(1/n², 1/t²) bounds the Hessian 2·diag(scale)·K·diag(scale); λmax by power iteration, padded.
        double Lipschitz()
        {
            if (_lipschitz is { } l) return l;
            var v = Enumerable.Repeat(1 / Math.Sqrt(_size), _size).ToArray();
            double lambda = 0;
            for (int it = 0; it < 300; it++)
            {
                var w = new double[_size];
                for (int i = 0; i < _size; i++)
                    for (int j = 0; j < _size; j++) w[i] += _k[i * _size + j] * v[j];
                lambda = Math.Sqrt(w.Sum(x => x * x));
                v = w.Select(x => x / lambda).ToArray();
            }
            double s = Math.Max(1.0 / N, 1.0 / T);
            return (_lipschitz = 2.2 * lambda * s * s).Value;
        }

        public (double[] Z, int Iterations) Solve(double tolerance, int maxIterations)
        {
            double lip = Lipschitz();
            // The uniform weights are feasible (and optimal when the two samples coincide).
            var z = Project(Enumerable.Repeat(_share, _size).ToArray());
            var y = z;
            double momentum = 1;
            int it = 0;
            while (it < maxIterations)
            {
                it++;
                var g = Gradient(y);
                var next = Project(y.Select((v, i) => v - g[i] / lip).ToArray());
                double nextMomentum = 0.5 * (1 + Math.Sqrt(1 + 4 * momentum * momentum));
                double uphill = 0;
                for (int i = 0; i < _size; i++) uphill += (y[i] - next[i]) * (next[i] - z[i]);
                if (uphill > 0) nextMomentum = 1;
                y = nextMomentum == 1 ? next : next.Select((v, i) => v + (momentum - 1) / nextMomentum * (v - z[i])).ToArray();
                (z, momentum) = (next, nextMomentum);
                if (it % 200 != 0) continue;
                double residual = Residual(z, lip);
                // The polish is kept only when it brings the point closer to KKT without raising the objective.
                if (residual > tolerance && Polish(z) is { } polished && Value(polished) <= Value(z) + 1e-15 && Residual(polished, lip) < residual)
                    (z, y, momentum, residual) = (polished, polished, 1, Residual(polished, lip));
                if (residual <= tolerance) break;
            }
            return (z, it);
        }

        // The active-set step: with the variables at their bounds fixed, the exact minimizer over the free ones on the
        // two sum constraints, from the KKT system [H_FF E; Eᵀ 0][δ; ν] = [−g_F; 0] (min-norm; H may be singular).
        // Returns null when the step leaves the box.
        double[]? Polish(double[] z)
        {
            var free = Enumerable.Range(0, _size).Where(i => z[i] > 1e-13 && z[i] < (i < N ? _upperTrain : 1) - 1e-13).ToArray();
            int f = free.Length;
            if (f == 0) return null;
            var g = Gradient(z);
            int rows = f + 2;
            var a = new double[rows * rows];
            var b = new double[rows];
            for (int p = 0; p < f; p++)
            {
                int i = free[p];
                for (int q = 0; q < f; q++) a[p * rows + q] = 2 * Scale(i) * _k[i * _size + free[q]] * Scale(free[q]);
                int block = i < N ? f : f + 1;
                a[p * rows + block] = 1;
                a[block * rows + p] = 1;
                b[p] = -g[i];
            }
            var step = LeastSquares.Solve(Tensor.FromArray(a, new Shape(rows, rows)), Tensor.FromArray(b, new Shape(rows))).ToArray<double>();
            var moved = (double[])z.Clone();
            for (int p = 0; p < f; p++)
            {
                int i = free[p];
                moved[i] += step[p];
                double upper = i < N ? _upperTrain : 1;
                if (moved[i] < -1e-14 || moved[i] > upper + 1e-14) return null;
                moved[i] = Math.Clamp(moved[i], 0, upper);
            }
            return moved;
        }
    }
}

/// <summary>The double weights and the quadratic program's outcome.</summary>
/// <param name="Train">β, one weight per training point, [n] (float64).</param>
/// <param name="Test">α, one weight per test point, [t] (float64).</param>
/// <param name="Discrepancy">The squared kernel mean discrepancy ‖(1/n)Σβᵢφ(xᵢ) − (1/t)Σαⱼφ(x′ⱼ)‖² at the solution.</param>
/// <param name="KktResidual">‖z − Π(z − ∇f/L)‖∞·L at the solution (0 exactly at a KKT point).</param>
/// <param name="Iterations">Projected-gradient iterations used.</param>
public sealed record DoubleWeights(Tensor Train, Tensor Test, double Discrepancy, double KktResidual, int Iterations)
{
    /// <summary>Uniform weights β = 1, α = 1: the unweighted classifier.</summary>
    /// <param name="n">Training points.</param>
    /// <param name="t">Test points.</param>
    public static DoubleWeights Uniform(int n, int t) =>
        new(Tensor.Ones(new Shape(n), DType.Float64), Tensor.Ones(new Shape(t), DType.Float64), double.NaN, 0, 0);
}
