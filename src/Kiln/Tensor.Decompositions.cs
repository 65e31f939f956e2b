using Kiln.Backends;

namespace Kiln;

/// <summary>
/// Matrix decompositions and solves over the last two dims, batched over any leading dims. They compute in float64
/// through the tensor's backend (<see cref="ILinalgBackend"/>): a Float32 input is converted to float64 on its device
/// and the results back. A backend without decomposition kernels (ILGPU's) copies the matrices to the host, runs the
/// CPU kernels there and copies the results back (the documented host path of <see cref="ILinalgBackend"/>).
/// Input checks (finite, symmetric) run as tensor ops on the device; only a failing check reads the matrices back to
/// name the offending element.
/// </summary>
public partial class Tensor
{
    /// <summary>
    /// Eigendecomposition of a symmetric matrix: A = V diag(w) Vᵀ for A of shape [..., n, n]. Returns the eigenvalues
    /// w [..., n] in ascending order and the orthonormal eigenvectors as the columns of V [..., n, n], each signed so
    /// that its largest-magnitude component is positive. Differentiable where the eigenvalues are distinct:
    /// gA = V (diag(g_w) + F ∘ (Vᵀ g_V)) Vᵀ with F_ij = 1/(w_j - w_i) off the diagonal, symmetrized (the input is taken
    /// as symmetric); the gradient is infinite at repeated eigenvalues when g_V is not zero there.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The input is not a (batch of) square matrices.</exception>
    /// <exception cref="ArgumentException">A matrix is not symmetric (relative tolerance 1e-10 in Float64, 1e-5 in Float32) or holds NaN or infinity.</exception>
    /// <exception cref="NotSupportedException">The dtype is not Float32 or Float64.</exception>
    public (Tensor Eigenvalues, Tensor Eigenvectors) Eigh()
    {
        const string op = "eigh";
        var (lead, batch, n, _) = Matrices(op, square: true);
        var a = Float64Matrices(op, requireFinite: true, requireSymmetric: true);
        var w64 = Empty(new Shape([.. lead, n]), DType.Float64, Device);
        var v64 = Empty(Shape, DType.Float64, Device);
        int failed = Backend.Eigh(a, batch, n, w64, v64);
        if (failed >= 0)
            throw new ArithmeticException($"{op}: the QL iteration did not converge for matrix {failed} of the batch (shape {Shape})");
        // One packed result [..., n + 1, n] (row 0: eigenvalues, rows 1..n: V) keeps both outputs on one graph node.
        var p = Concat([w64.Unsqueeze(-2), v64], -2).To(DType);
        Tensor w = null!, v = null!;
        p = Record(p, op, [this], g => [EighBackward(w, v, g.Narrow(-2, 0, 1).Squeeze(-2), g.Narrow(-2, 1, n))]);
        w = p.Narrow(-2, 0, 1).Squeeze(-2);
        v = p.Narrow(-2, 1, n);
        return (w, v);
    }

    static Tensor EighBackward(Tensor w, Tensor v, Tensor gw, Tensor gv)
    {
        int n = w.Shape[-1];
        var eye = Eye(n, dtype: w.DType, device: w.Device);
        var vt = v.T;
        // F_ij = 1 / (w_j - w_i) off the diagonal, 0 on it (the diagonal is shifted by 1 first so nothing divides by 0).
        var diff = w.Unsqueeze(-2) - w.Unsqueeze(-1);
        var f = (1.0 - eye) / (diff + eye);
        var inner = eye * gw.Unsqueeze(-2) + f * vt.MatMul(gv);
        var ga = v.MatMul(inner).MatMul(vt);
        return 0.5 * (ga + ga.T);
    }

    /// <summary>
    /// Cholesky factor: the lower-triangular L [..., n, n] with positive diagonal and A = L Lᵀ, for a symmetric
    /// positive-definite A [..., n, n]. Differentiable (Murray 2016): gA = L⁻ᵀ Φ(Lᵀ g_L) L⁻¹, symmetrized, where Φ takes
    /// the lower triangle and halves the diagonal.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The input is not a (batch of) square matrices.</exception>
    /// <exception cref="ArgumentException">A matrix is not symmetric, or not positive definite (the message names the failing pivot).</exception>
    /// <exception cref="NotSupportedException">The dtype is not Float32 or Float64.</exception>
    public Tensor Cholesky()
    {
        const string op = "cholesky";
        var (_, batch, n, _) = Matrices(op, square: true);
        var a = Float64Matrices(op, requireFinite: false, requireSymmetric: true);
        var l = Empty(Shape, DType.Float64, Device);
        int b = Backend.Cholesky(a, batch, n, l, out int j, out double pivot);
        if (b >= 0)
            throw new ArgumentException($"{op}: matrix {b} of the batch (shape {Shape}) is not positive definite: pivot {j} is {pivot:G6} " +
                $"(a_{j}{j} minus the squares of row {j} of L so far must be positive)", "input");
        var y = l.To(DType);
        return Record(y, op, [this], g => [CholeskyBackward(y, g)]);
    }

    static Tensor CholeskyBackward(Tensor l, Tensor gl)
    {
        int n = l.Shape[-1];
        var lower = TriangleMask(n, 0, l.DType, l.Device);
        var strict = TriangleMask(n, -1, l.DType, l.Device);
        var p = l.T.MatMul(gl) * lower;
        var s = 0.5 * (p + (p * strict).T);          // the symmetric matrix whose lower triangle is Φ(Lᵀ g_L)
        var x = l.T.Solve(s);                        // L⁻ᵀ S
        return l.T.Solve(x.T).T;                     // L⁻ᵀ S L⁻¹ (symmetric, since S is)
    }

    /// <summary>
    /// Solves A X = B for X, with this tensor as A [..., n, n] (LU with partial pivoting). B is [..., n, k], or a vector
    /// [n] / [..., n] (when its shape is A's without the last dim), giving X of B's form; batch dims broadcast.
    /// Differentiable: g_B = A⁻ᵀ g, g_A = -g_B Xᵀ.
    /// </summary>
    /// <exception cref="ShapeMismatchException">A is not square, or B's rows differ from A's or batch dims do not broadcast.</exception>
    /// <exception cref="ArgumentException">A matrix is singular to working precision (a pivot is at most n·ε times its column's largest magnitude), or dtypes/devices differ.</exception>
    /// <exception cref="NotSupportedException">The dtype is not Float32 or Float64.</exception>
    public Tensor Solve(Tensor b) => SolveWith("solve", b, (lhs, rhs) => SolveLu(lhs, rhs));

    /// <summary>
    /// Solves A X = B given this tensor as the lower Cholesky factor L [..., n, n] of A = L Lᵀ (only its lower triangle
    /// is read), by two triangular solves. B is [..., n, k] or a vector, as in <see cref="Solve"/>. Differentiable:
    /// g_B = A⁻¹ g and g_L = tril((g_A + g_Aᵀ) L) with g_A = -g_B Xᵀ.
    /// </summary>
    /// <exception cref="ShapeMismatchException">L is not square, or B does not fit.</exception>
    /// <exception cref="ArgumentException">L has a zero on its diagonal, or dtypes/devices differ.</exception>
    /// <exception cref="NotSupportedException">The dtype is not Float32 or Float64.</exception>
    public Tensor CholeskySolve(Tensor b) => SolveWith("cholesky_solve", b, (lhs, rhs) => SolveCholesky(lhs, rhs));

    Tensor SolveWith(string op, Tensor b, Func<Tensor, Tensor, Tensor> matrixSolve)
    {
        ArgumentNullException.ThrowIfNull(b);
        b.Storage.ThrowIfDisposed(op);
        var (_, _, n, _) = Matrices(op, square: true);
        Check.SameDType(this, b, op, nameof(b));
        Check.SameDevice(this, b, op, nameof(b));
        bool vector = b.Rank == 1 || (b.Rank == Rank - 1 && b.Shape == new Shape(Shape.Dims[..^1]));
        var bm = vector ? b.Unsqueeze(-1) : b;
        if (bm.Rank < 2 || bm.Shape[-2] != n)
            throw new ShapeMismatchException(op, nameof(b), $"b has shape {b.Shape}, which is neither [..., {n}, k] nor a vector of length {n} for A of shape {Shape}");
        var x = matrixSolve(this, bm);
        return vector ? x.Squeeze(-1) : x;
    }

    // Broadcasts the batch dims of A [..., n, n] and B [..., n, k]; returns both as contiguous float64 tensors on their
    // device, and an empty float64 X [..., n, k] for the solution.
    static (int Batch, Tensor A, Tensor B, Tensor X) SolveOperands(string op, Tensor a, Tensor b, int n, int k)
    {
        var lead = Shape.Broadcast(new Shape(a.Shape.Dims[..^2]), new Shape(b.Shape.Dims[..^2]), op).ToArray();
        int batch = 1;
        foreach (int d in lead) batch *= d;
        var a64 = a.Detach().BroadcastTo(new Shape([.. lead, n, n])).To(DType.Float64).Contiguous();
        var b64 = b.Detach().BroadcastTo(new Shape([.. lead, n, k])).To(DType.Float64).Contiguous();
        return (batch, a64, b64, Empty(b64.Shape, DType.Float64, a.Device));
    }

    static Tensor SolveLu(Tensor a, Tensor b)
    {
        const string op = "solve";
        int n = a.Shape[-1], k = b.Shape[-1];
        var (batch, a64, b64, x64) = SolveOperands(op, a, b, n, k);
        var lu = Empty(a64.Shape, DType.Float64, a.Device);
        var perm = Empty(new Shape(batch, n), DType.Int32, a.Device);
        int i = a.Backend.LuFactor(a64, batch, n, lu, perm, out int col);
        if (i >= 0)
            throw new ArgumentException($"{op}: matrix {i} of the batch (A of shape {a.Shape}) is singular to working precision: " +
                $"no usable pivot in column {col}", "input");
        a.Backend.LuSolve(lu, perm, b64, batch, n, k, x64);
        var x = x64.To(a.DType);
        return Record(x, op, [a, b], g =>
        {
            var gb = a.T.Solve(g);
            return [(-gb.MatMul(x.T)).SumTo(a.Shape), gb.SumTo(b.Shape)];
        });
    }

    static Tensor SolveCholesky(Tensor l, Tensor b)
    {
        const string op = "cholesky_solve";
        int n = l.Shape[-1], k = b.Shape[-1];
        var (batch, l64, b64, x64) = SolveOperands(op, l, b, n, k);
        int i = l.Backend.CholeskySolve(l64, b64, batch, n, k, x64, out int j);
        if (i >= 0)
            throw new ArgumentException($"{op}: factor {i} of the batch (L of shape {l.Shape}) has a zero at diagonal position {j}, so L Lᵀ is singular", "input");
        var x = x64.To(l.DType);
        return Record(x, op, [l, b], g =>
        {
            var gb = l.CholeskySolve(g);
            var ga = -gb.MatMul(x.T);
            var gl = (ga + ga.T).MatMul(l) * TriangleMask(n, 0, l.DType, l.Device);
            return [gl.SumTo(l.Shape), gb.SumTo(b.Shape)];
        });
    }

    /// <summary>
    /// Reduced QR decomposition by Householder reflections: A [..., m, n] = Q R with Q [..., m, r] having orthonormal
    /// columns and R [..., r, n] upper triangular, r = min(m, n). Sign convention: R's diagonal is non-negative (unlike
    /// LAPACK's, which may be negative), so for A of full column rank the factors are unique and R is the transposed
    /// Cholesky factor of AᵀA.
    /// Not differentiable: a backward through it throws <see cref="NotSupportedException"/>.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The input has fewer than two dims.</exception>
    /// <exception cref="NotSupportedException">The dtype is not Float32 or Float64.</exception>
    public (Tensor Q, Tensor R) Qr()
    {
        const string op = "qr";
        var (lead, batch, m, n) = Matrices(op, square: false);
        int r = Math.Min(m, n);
        var a = Float64Matrices(op, requireFinite: false, requireSymmetric: false);
        var q = Empty(new Shape([.. lead, m, r]), DType.Float64, Device);
        var rr = Empty(new Shape([.. lead, r, n]), DType.Float64, Device);
        Backend.Qr(a, batch, m, n, q, rr);
        return (NotDifferentiable(q.To(DType), op), NotDifferentiable(rr.To(DType), op));
    }

    /// <summary>
    /// Reduced singular value decomposition by one-sided Jacobi: A [..., m, n] = U diag(S) Vh with U [..., m, r]
    /// (orthonormal columns), S [..., r] (non-negative, descending) and Vh [..., r, n] (orthonormal rows), r = min(m, n).
    /// Sign convention: each column of U has its largest-magnitude component (the first of equal ones) positive, and
    /// the matching row of Vh is signed so that A = U diag(S) Vh; this makes U and Vh unique where the singular values
    /// are distinct and nonzero (rotations within repeated singular values remain free).
    /// Not differentiable: a backward through it throws <see cref="NotSupportedException"/>.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The input has fewer than two dims.</exception>
    /// <exception cref="ArgumentException">A matrix holds NaN or infinity.</exception>
    /// <exception cref="NotSupportedException">The dtype is not Float32 or Float64.</exception>
    public (Tensor U, Tensor S, Tensor Vh) Svd()
    {
        const string op = "svd";
        var (lead, batch, m, n) = Matrices(op, square: false);
        int r = Math.Min(m, n);
        var a = Float64Matrices(op, requireFinite: true, requireSymmetric: false);
        var u = Empty(new Shape([.. lead, m, r]), DType.Float64, Device);
        var s = Empty(new Shape([.. lead, r]), DType.Float64, Device);
        var vt = Empty(new Shape([.. lead, r, n]), DType.Float64, Device);
        int failed = Backend.Svd(a, batch, m, n, u, s, vt);
        if (failed >= 0)
            throw new ArithmeticException($"{op}: the Jacobi sweeps did not converge for matrix {failed} of the batch (shape {Shape})");
        return (NotDifferentiable(u.To(DType), op), NotDifferentiable(s.To(DType), op), NotDifferentiable(vt.To(DType), op));
    }

    Tensor NotDifferentiable(Tensor y, string op) => Record(y, op, [this], _ =>
        throw new NotSupportedException($"{op}: backward is not implemented; compute the decomposition on a Detach()ed input or inside Autograd.NoGrad()"));

    // Checks for a floating tensor of rank >= 2 (square when asked); returns its leading dims, their product and m, n.
    (int[] Lead, int Batch, int M, int N) Matrices(string op, bool square)
    {
        Storage.ThrowIfDisposed(op);
        Check.FullFloat(this, op, "input");
        if (Rank < 2) throw new ShapeMismatchException(op, "input", $"input has shape {Shape}; it needs at least two dimensions [..., m, n]");
        int m = Shape[-2], n = Shape[-1];
        if (square && m != n) throw new ShapeMismatchException(op, "input", $"input has shape {Shape}; the last two dims must be equal (a square matrix)");
        var lead = Shape.Dims[..^2].ToArray();
        int batch = 1;
        foreach (int d in lead) batch *= d;
        return (lead, batch, m, n);
    }

    // The matrices as a contiguous float64 tensor on this device, validated as asked. The checks run as tensor ops on
    // the device; only when one fails are the matrices read back, to name the offending element as the host check does.
    Tensor Float64Matrices(string op, bool requireFinite, bool requireSymmetric)
    {
        var a = Detach().To(DType.Float64).Contiguous();
        if (a.Numel == 0 || !(requireFinite || requireSymmetric)) return a;
        var finite = (a - a).Eq(a.ScalarLike(0));              // x - x is NaN exactly for NaN and ±inf
        bool bad = requireFinite && finite.All().Item() == 0;
        if (!bad && requireSymmetric)
        {
            // The same test as the host check's, on whole matrices: |a_ij - a_ji| > tol · (largest finite |a| of the matrix).
            var scale = Where(finite, a.Abs(), a.ScalarLike(0)).Amax([-2, -1], keepDim: true);
            bad = ((a - a.T).Abs() > SymmetryTolerance * scale).Any().Item() != 0;
        }
        if (bad) CheckMatricesOnHost(op, a.ToArray<double>(), requireFinite, requireSymmetric);
        return a;
    }

    double SymmetryTolerance => DType == DType.Float64 ? 1e-10 : 1e-5;

    // The element-by-element check of non-empty matrices: throws naming the first offending element.
    void CheckMatricesOnHost(string op, double[] a, bool requireFinite, bool requireSymmetric)
    {
        if (requireFinite)
            for (int i = 0; i < a.Length; i++)
                if (!double.IsFinite(a[i]))
                    throw new ArgumentException($"{op}: input (shape {Shape}) holds {a[i]} at flat index {i}; the decomposition needs finite values", "input");
        if (requireSymmetric)
        {
            int n = Shape[-1];
            double tol = SymmetryTolerance;
            for (int b = 0; b < a.Length / (n * n); b++)
            {
                var x = a.AsSpan(b * n * n, n * n);
                double scale = 0;
                foreach (double v in x) if (double.IsFinite(v)) scale = Math.Max(scale, Math.Abs(v));
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < i; j++)
                        if (Math.Abs(x[i * n + j] - x[j * n + i]) > tol * scale)
                            throw new ArgumentException($"{op}: matrix {b} of the batch (shape {Shape}) is not symmetric: element [{i}, {j}] is {x[i * n + j]:G6} " +
                                $"but [{j}, {i}] is {x[j * n + i]:G6}", "input");
            }
        }
    }

    // 1 on and below diagonal `k` (0: main, -1: strictly lower), else 0.
    static Tensor TriangleMask(int n, int k, DType dtype, Device device)
    {
        var m = new double[n * n];
        for (int i = 0; i < n; i++) for (int j = 0; j <= Math.Min(i + k, n - 1); j++) m[i * n + j] = 1;
        return FromArray(m, new Shape(n, n)).To(dtype).To(device);
    }
}
