namespace Kiln.Methods.Sketching;

/// <summary>
/// The linear-Gaussian representation-learning game ("A representation-learning game for classes of prediction tasks",
/// Uzan and Weinberger, ICLR 2024). Features x ~ N(0, Σ) in R^d, a task is a response y = fᵀx + noise, and the
/// representation player picks z = Rᵀx with R [d, k]. Under the squared loss the regret of R on f is the excess error of
/// the best predictor from z over the best from x: regret(R, f) = fᵀΣf − fᵀΣR(RᵀΣR)⁺RᵀΣf = min_w ‖Σ^½(f − Rw)‖².
/// Nature picks f from the class F_S = {S^½ g : ‖g‖ ≤ 1} (fᵀS⁻¹f ≤ 1 for S positive definite; S is the task
/// covariance). With M = Σ^½ S Σ^½ = Σᵢ λᵢuᵢuᵢᵀ (λ descending) the pure minimax representation is R* = Σ^-½[u₁..u_k] with
/// regret λ_(k+1); a randomized representation (a distribution over R, known to nature but not its draw) does better:
/// its expected projection Q = E[P] ranges over the Fantope {0 ≼ Q ≼ I, tr Q = k} and the minimax Q = Σ qᵢuᵢuᵢᵀ water-
/// fills, qᵢ = (1 − θ/λᵢ)₊ with Σqᵢ = k, for regret θ = (ℓ − k)/Σ_(i≤ℓ) λᵢ⁻¹ ≤ λ_(k+1). For a finite class of tasks the
/// mixed game min_Q max_(p∈Δ) Σⱼ pⱼ aⱼᵀ(I − Q)aⱼ (aⱼ = Σ^½fⱼ) is bilinear and is solved numerically by extragradient.
/// Every result is float64.
/// </summary>
public static class RepresentationGame
{
    /// <summary>regret(R, f) = fᵀΣf − fᵀΣR(RᵀΣR)⁺RᵀΣf for one task f [d] (a scalar) or for the rows of F [m, d] ([m]).</summary>
    /// <param name="covariance">Σ, symmetric positive definite [d, d].</param>
    /// <param name="representation">R, [d, k] (k may be 0; a rank-deficient R regresses on its span).</param>
    /// <param name="tasks">f [d], or tasks [m, d] as rows.</param>
    /// <exception cref="ArgumentException">Σ is not symmetric positive definite.</exception>
    /// <exception cref="ShapeMismatchException">R or the tasks do not have d rows (columns for the tasks).</exception>
    public static Tensor Regret(Tensor covariance, Tensor representation, Tensor tasks)
    {
        var (half, _) = Whiten(covariance, nameof(Regret));
        int d = half.Shape[0];
        var r = CheckRepresentation(representation, d, nameof(Regret));
        var a = half.MatMul(CheckTasks(tasks, d, nameof(Regret)).T);
        var residual = r.Shape[1] == 0 ? a : a - half.MatMul(r).MatMul(LeastSquares.Solve(half.MatMul(r), a));
        var regret = residual.Pow(2).Sum(0);
        return tasks.Rank == 1 ? regret.Squeeze(0) : regret;
    }

    /// <summary>Nature's best response to R: the task f ∈ F_S of largest regret and that regret (the top eigenpair of S^½Σ^½(I − P)Σ^½S^½, P the projection on Σ^½R).</summary>
    /// <param name="covariance">Σ, symmetric positive definite [d, d].</param>
    /// <param name="taskCovariance">S, symmetric positive semi-definite [d, d].</param>
    /// <param name="representation">R, [d, k].</param>
    public static (double Regret, Tensor Task) WorstTask(Tensor covariance, Tensor taskCovariance, Tensor representation)
    {
        var (half, _) = Whiten(covariance, nameof(WorstTask));
        int d = half.Shape[0];
        var sHalf = TaskRoot(taskCovariance, d, nameof(WorstTask));
        var r = CheckRepresentation(representation, d, nameof(WorstTask));
        var eye = Tensor.Eye(d, dtype: DType.Float64);
        var c = half.MatMul(r);
        var orth = r.Shape[1] == 0 ? eye : eye - c.MatMul(LeastSquares.Solve(c, eye));
        var b = sHalf.MatMul(half).MatMul(orth).MatMul(half).MatMul(sHalf);
        var (w, v) = (0.5 * (b + b.T)).Eigh();
        return (Math.Max(0, w.Narrow(0, d - 1, 1).Item()), sHalf.MatMul(v.Narrow(1, d - 1, 1)).Squeeze(1));
    }

    /// <summary>The pure minimax representation R* = Σ^-½[u₁..u_k] ([d, k]) and its worst-case regret λ_(k+1) (0 for k = d).</summary>
    /// <param name="covariance">Σ, symmetric positive definite [d, d].</param>
    /// <param name="taskCovariance">S, symmetric positive semi-definite [d, d].</param>
    /// <param name="k">The representation dimension, in [0, d].</param>
    /// <exception cref="ArgumentOutOfRangeException">k is outside [0, d].</exception>
    public static (Tensor Representation, double Regret) Minimax(Tensor covariance, Tensor taskCovariance, int k)
    {
        var (half, inverseHalf) = Whiten(covariance, nameof(Minimax));
        int d = half.Shape[0];
        CheckRank(k, d, nameof(Minimax));
        var (lambda, u) = Spectrum(half, TaskRoot(taskCovariance, d, nameof(Minimax)));
        return (inverseHalf.MatMul(u.Narrow(1, 0, k)), k == d ? 0 : lambda[k]);
    }

    /// <summary>The minimax randomized representation for the class F_S: the water-filling qᵢ = (1 − θ/λᵢ)₊ on the eigenvectors of M = Σ^½SΣ^½, with regret θ.</summary>
    /// <param name="covariance">Σ, symmetric positive definite [d, d].</param>
    /// <param name="taskCovariance">S, symmetric positive semi-definite [d, d].</param>
    /// <param name="k">The representation dimension, in [0, d].</param>
    public static MixedRepresentation MixedMinimax(Tensor covariance, Tensor taskCovariance, int k)
    {
        var (half, inverseHalf) = Whiten(covariance, nameof(MixedMinimax));
        int d = half.Shape[0];
        CheckRank(k, d, nameof(MixedMinimax));
        var (lambda, u) = Spectrum(half, TaskRoot(taskCovariance, d, nameof(MixedMinimax)));
        int positive = lambda.Count(l => l > 0);
        var q = new double[d];
        double theta = 0;
        if (k >= positive) for (int i = 0; i < positive; i++) q[i] = 1;
        else
        {
            // θ_ℓ = (ℓ − k)/Σ_(i≤ℓ) 1/λᵢ is the level at which the first ℓ directions share k; take the ℓ with λ_(ℓ+1) ≤ θ_ℓ ≤ λ_ℓ.
            double inv = 0;
            for (int l = 1; l <= positive; l++)
            {
                inv += 1 / lambda[l - 1];
                theta = (l - k) / inv;
                double next = l < d ? lambda[l] : 0;
                if (l > k && theta >= next) break;
            }
            for (int i = 0; i < d; i++) q[i] = lambda[i] > theta ? 1 - theta / lambda[i] : 0;
            q = CappedSimplex.Project(q, 1, k);   // removes the rounding in Σq = k
        }
        return new MixedRepresentation(half, inverseHalf, u, q, theta, theta, null);
    }

    /// <summary>
    /// The mixed game against a finite class: min over Fantope Q, max over task mixtures p of Σⱼ pⱼ aⱼᵀ(I − Q)aⱼ, by
    /// Euclidean extragradient (both players projected: Q on the Fantope through its eigenvalues, p on the simplex).
    /// Stops when the certified gap max_j aⱼᵀ(I − Q)aⱼ − (tr A_p − Σ top-k eig A_p) is at most the tolerance (relative
    /// to max‖aⱼ‖²) or after the iteration budget; the result's Regret and LowerBound are that certificate.
    /// </summary>
    /// <param name="covariance">Σ, symmetric positive definite [d, d].</param>
    /// <param name="tasks">The class, tasks [m, d] as rows (m ≥ 1).</param>
    /// <param name="k">The representation dimension, in [0, d].</param>
    /// <param name="tolerance">Relative duality gap at which to stop (positive).</param>
    /// <param name="maxIterations">Iteration budget (positive).</param>
    public static MixedRepresentation SolveFiniteGame(Tensor covariance, Tensor tasks, int k, double tolerance = 1e-7, int maxIterations = 20000)
    {
        var (half, inverseHalf) = Whiten(covariance, nameof(SolveFiniteGame));
        int d = half.Shape[0];
        CheckRank(k, d, nameof(SolveFiniteGame));
        var a = CheckTasks(tasks, d, nameof(SolveFiniteGame)).MatMul(half).Contiguous().ToArray<double>();   // rows aⱼ = Σ^½fⱼ
        int m = a.Length / Math.Max(d, 1);
        if (m == 0 || d == 0) throw new ArgumentException($"RepresentationGame.SolveFiniteGame: the task class (shape {tasks.Shape}) is empty", nameof(tasks));
        if (!(tolerance > 0) || double.IsInfinity(tolerance)) throw new ArgumentOutOfRangeException(nameof(tolerance), tolerance, "RepresentationGame.SolveFiniteGame: the tolerance must be positive and finite");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxIterations);
        var norms = new double[m];
        for (int j = 0; j < m; j++) for (int i = 0; i < d; i++) norms[j] += a[j * d + i] * a[j * d + i];
        double scale = norms.Max();
        // The iteration runs on arrays (d and m are small); only the eigendecompositions go through Kiln's Eigh.
        double[] gram(double[] p)
        {
            var g = new double[d * d];
            for (int j = 0; j < m; j++)
                for (int r = 0; r < d; r++)
                    for (int c = 0; c < d; c++) g[r * d + c] += p[j] * a[j * d + r] * a[j * d + c];
            return g;
        }
        double[] costs(double[] q)
        {
            var c = (double[])norms.Clone();
            for (int j = 0; j < m; j++)
                for (int r = 0; r < d; r++)
                    for (int s = 0; s < d; s++) c[j] -= a[j * d + r] * q[r * d + s] * a[j * d + s];
            return c;
        }
        double[] step(double[] x, double[] g, double eta) => x.Select((v, i) => v + eta * g[i]).ToArray();
        double[] q0 = Fantope(new double[d * d], d, k).Q, p0 = Enumerable.Repeat(1.0 / m, m).ToArray();
        double[] bestQ = q0, bestP = p0, qSum = new double[d * d], pSum = new double[m];
        double upper = costs(q0).Max(), lower = Lower(gram(p0), d, k);
        // η below 1/L for the bilinear map p ↦ Σ pⱼaⱼaⱼᵀ, whose operator norm is at most √Σ‖aⱼ‖⁴.
        double eta = scale == 0 ? 0 : 0.9 / Math.Sqrt(norms.Sum(v => v * v));
        for (int it = 1; it <= maxIterations && upper - lower > tolerance * scale; it++)
        {
            var qh = Fantope(step(q0, gram(p0), eta), d, k).Q;
            var ph = CappedSimplex.Project(step(p0, costs(q0), eta), 1, 1);
            q0 = Fantope(step(q0, gram(ph), eta), d, k).Q;
            p0 = CappedSimplex.Project(step(p0, costs(qh), eta), 1, 1);
            for (int i = 0; i < qSum.Length; i++) qSum[i] += qh[i];
            for (int j = 0; j < m; j++) pSum[j] += ph[j];
            if (it % 20 != 0) continue;
            // Both the last and the averaged iterates certify bounds; keep the tightest of each.
            foreach (var q in new[] { q0, qSum.Select(v => v / it).ToArray() })
            {
                double u = costs(q).Max();
                if (u < upper) (upper, bestQ) = (u, q);
            }
            foreach (var p in new[] { p0, pSum.Select(v => v / it).ToArray() })
            {
                double l = Lower(gram(p), d, k);
                if (l > lower) (lower, bestP) = (l, p);
            }
        }
        var (_, qs, vs) = Fantope(bestQ, d, k);
        return new MixedRepresentation(half, inverseHalf, Tensor.FromArray(vs, new Shape(d, d)), qs, upper, lower, Tensor.FromArray(bestP, new Shape(m)));
    }

    // Eigenvalues (descending) and eigenvectors (columns of the row-major [d, d] array) of the symmetrized x.
    static (double[] W, double[] V) EighDescending(double[] x, int d)
    {
        var t = Tensor.FromArray(x, new Shape(d, d));
        var (w, v) = (0.5 * (t + t.T)).Eigh();
        return (w.Flip(0).ToArray<double>(), v.Flip(1).Contiguous().ToArray<double>());
    }

    // The projection of the symmetric X on the Fantope {0 ≼ Q ≼ I, tr Q = k}: its eigenvalues projected on the capped simplex.
    static (double[] Q, double[] Values, double[] Vectors) Fantope(double[] x, int d, int k)
    {
        var (w, v) = EighDescending(x, d);
        var q = CappedSimplex.Project(w, 1, k);
        var result = new double[d * d];
        for (int i = 0; i < d; i++)
            for (int r = 0; r < d; r++)
                for (int c = 0; c < d; c++) result[r * d + c] += q[i] * v[r * d + i] * v[c * d + i];
        return (result, q, v);
    }

    // min over the Fantope of ⟨I − Q, A⟩ = tr A − (sum of the k largest eigenvalues of A): nature's guaranteed regret.
    static double Lower(double[] gram, int d, int k) => EighDescending(gram, d).W.Skip(k).Sum();

    static (double[] Lambda, Tensor U) Spectrum(Tensor half, Tensor sHalf)
    {
        var c = half.MatMul(sHalf);
        var m = c.MatMul(c.T);
        var (w, v) = (0.5 * (m + m.T)).Eigh();
        return (w.Flip(0).ToArray<double>().Select(l => Math.Max(0, l)).ToArray(), v.Flip(1));
    }

    // Σ^½ and Σ^-½ after checking Σ is a symmetric positive definite [d, d] matrix.
    static (Tensor Half, Tensor InverseHalf) Whiten(Tensor covariance, string op)
    {
        ArgumentNullException.ThrowIfNull(covariance);
        if (covariance.Rank != 2 || covariance.Shape[0] != covariance.Shape[1])
            throw new ShapeMismatchException($"RepresentationGame.{op}", nameof(covariance), $"the covariance has shape {covariance.Shape}; it must be a square [d, d] matrix");
        var s = covariance.To(DType.Float64);
        double asym = (s - s.T).Abs().Amax().Item(), big = s.Abs().Amax().Item();
        if (!(asym <= 1e-10 * big)) throw new ArgumentException($"RepresentationGame.{op}: the covariance is not symmetric (max |Σ − Σᵀ| = {asym:G6}, max |Σ| = {big:G6})", nameof(covariance));
        var w = (0.5 * (s + s.T)).Eigh().Eigenvalues;
        double low = s.Shape[0] == 0 ? 1 : w.Amin().Item();
        if (!(low > 1e-12 * big)) throw new ArgumentException($"RepresentationGame.{op}: the covariance must be positive definite; its smallest eigenvalue is {low:G6} (largest entry {big:G6})", nameof(covariance));
        var sym = 0.5 * (s + s.T);
        return (sym.SymmetricMatrixPower(0.5), sym.SymmetricMatrixPower(-0.5));
    }

    static Tensor TaskRoot(Tensor taskCovariance, int d, string op)
    {
        ArgumentNullException.ThrowIfNull(taskCovariance);
        if (taskCovariance.Shape != new Shape(d, d))
            throw new ShapeMismatchException($"RepresentationGame.{op}", nameof(taskCovariance), $"the task covariance S has shape {taskCovariance.Shape}; it must be [{d}, {d}] like Σ");
        var s = taskCovariance.To(DType.Float64);
        double asym = (s - s.T).Abs().Amax().Item(), big = s.Abs().Amax().Item();
        if (!(asym <= 1e-10 * big) && big > 0) throw new ArgumentException($"RepresentationGame.{op}: the task covariance S is not symmetric (max |S − Sᵀ| = {asym:G6})", nameof(taskCovariance));
        var sym = 0.5 * (s + s.T);
        double low = d == 0 ? 0 : sym.Eigh().Eigenvalues.Amin().Item();
        if (low < -1e-10 * Math.Max(big, double.Epsilon)) throw new ArgumentException($"RepresentationGame.{op}: the task covariance S must be positive semi-definite; its smallest eigenvalue is {low:G6}", nameof(taskCovariance));
        return sym.SymmetricMatrixPower(0.5);
    }

    static Tensor CheckRepresentation(Tensor representation, int d, string op)
    {
        ArgumentNullException.ThrowIfNull(representation);
        if (representation.Rank != 2 || representation.Shape[0] != d)
            throw new ShapeMismatchException($"RepresentationGame.{op}", nameof(representation), $"the representation R has shape {representation.Shape}; it must be [{d}, k] for d = {d} features");
        return representation.To(DType.Float64);
    }

    static Tensor CheckTasks(Tensor tasks, int d, string op)
    {
        ArgumentNullException.ThrowIfNull(tasks);
        if (tasks.Rank is < 1 or > 2 || tasks.Shape[^1] != d)
            throw new ShapeMismatchException($"RepresentationGame.{op}", nameof(tasks), $"the tasks have shape {tasks.Shape}; they must be f [{d}] or [m, {d}]");
        var f = tasks.To(DType.Float64);
        return f.Rank == 1 ? f.Unsqueeze(0) : f;
    }

    static void CheckRank(int k, int d, string op)
    {
        if (k < 0 || k > d) throw new ArgumentOutOfRangeException(nameof(k), k, $"RepresentationGame.{op}: the representation dimension k must be in [0, d] = [0, {d}]");
    }
}

/// <summary>
/// A randomized linear representation: in whitened coordinates (x̃ = Σ^-½x) it keeps a random k-subset T of the
/// orthonormal directions uᵢ, direction i with probability qᵢ (Σqᵢ = k), so R = Σ^-½U_T and the expected projection is
/// Q = Σ qᵢuᵢuᵢᵀ. Draws use systematic sampling, which always takes exactly k directions with these marginals.
/// </summary>
public sealed class MixedRepresentation
{
    readonly Tensor _half;

    internal MixedRepresentation(Tensor half, Tensor inverseHalf, Tensor directions, double[] probabilities, double regret, double lowerBound, Tensor? taskMixture)
    {
        _half = half;
        Whitening = inverseHalf;
        Directions = directions;
        Probabilities = probabilities;
        Rank = (int)Math.Round(probabilities.Sum());
        Regret = regret;
        LowerBound = lowerBound;
        TaskMixture = taskMixture;
    }

    /// <summary>Σ^-½, [d, d].</summary>
    public Tensor Whitening { get; }

    /// <summary>The orthonormal whitened directions uᵢ as columns, [d, d].</summary>
    public Tensor Directions { get; }

    /// <summary>qᵢ, the probability that direction i is kept (each in [0, 1], summing to k).</summary>
    public IReadOnlyList<double> Probabilities { get; }

    /// <summary>k, the dimension of every drawn representation.</summary>
    public int Rank { get; }

    /// <summary>The worst-case expected regret this strategy guarantees over the class.</summary>
    public double Regret { get; }

    /// <summary>A lower bound on the game's value (nature's guarantee from <see cref="TaskMixture"/>); equal to <see cref="Regret"/> for the closed form.</summary>
    public double LowerBound { get; }

    /// <summary>Nature's (approximately) optimal mixture over a finite class, [m]; null for the closed-form class F_S.</summary>
    public Tensor? TaskMixture { get; }

    /// <summary>Q = Σ qᵢuᵢuᵢᵀ, the expected whitened projection, [d, d].</summary>
    public Tensor ExpectedProjection() =>
        (Directions * Tensor.FromArray(Probabilities.ToArray(), new Shape(Probabilities.Count)).Unsqueeze(0)).MatMul(Directions.T);

    /// <summary>E[regret(R, f)] over draws of R, fᵀΣ^½(I − Q)Σ^½f, for f [d] (a scalar) or tasks [m, d] ([m]).</summary>
    /// <param name="tasks">f [d], or tasks [m, d] as rows.</param>
    public Tensor ExpectedRegret(Tensor tasks)
    {
        ArgumentNullException.ThrowIfNull(tasks);
        int d = _half.Shape[0];
        if (tasks.Rank is < 1 or > 2 || tasks.Shape[^1] != d)
            throw new ShapeMismatchException("MixedRepresentation.ExpectedRegret", nameof(tasks), $"the tasks have shape {tasks.Shape}; they must be f [{d}] or [m, {d}]");
        var f = tasks.To(DType.Float64);
        var a = (f.Rank == 1 ? f.Unsqueeze(0) : f).MatMul(_half);
        var r = (a.MatMul(Tensor.Eye(d, dtype: DType.Float64) - ExpectedProjection()) * a).Sum(1);
        return f.Rank == 1 ? r.Squeeze(0) : r;
    }

    /// <summary>Draws a representation R = Σ^-½U_T, [d, k].</summary>
    /// <param name="generator">The random source.</param>
    public Tensor Sample(Generator generator)
    {
        ArgumentNullException.ThrowIfNull(generator);
        double u = Tensor.Rand(new Shape(1), generator, dtype: DType.Float64).Item();
        // Systematic sampling: the points u, u + 1, .., u + k − 1 fall in the cumulative intervals of the qᵢ, one per kept direction.
        var keep = new List<long>();
        double cum = 0;
        int i = 0;
        for (int m = 0; m < Rank; m++)
        {
            while (i < Probabilities.Count - 1 && cum + Probabilities[i] <= u + m) cum += Probabilities[i++];
            keep.Add(i);
            cum += Probabilities[i];
            i = Math.Min(i + 1, Probabilities.Count - 1);
        }
        var idx = Tensor.FromArray(keep.ToArray(), new Shape(keep.Count));
        return Whitening.MatMul(Directions.IndexSelect(1, idx));
    }
}
