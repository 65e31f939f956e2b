using Kiln.Kernels.Cpu;

namespace Kiln;

/// <summary>
/// Matrix decompositions and solves over the last two dims, batched over any leading dims. They compute in float64 on
/// the CPU (kernels/Kiln.Kernels.Cpu/Decompositions.cs): a Float32 input is converted to float64 and the results back,
/// and a tensor on another device is copied to the host, decomposed there, and the results copied back to its device.
/// </summary>
public sealed partial class Tensor
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
        var a = HostMatrices(op, batch, n, n, requireFinite: true, requireSymmetric: true);
        // One packed result [..., n + 1, n] (row 0: eigenvalues, rows 1..n: V) keeps both outputs on one graph node.
        var packed = new double[batch * (n + 1) * n];
        for (int b = 0; b < batch; b++)
        {
            var dst = packed.AsSpan(b * (n + 1) * n, (n + 1) * n);
            if (!Decompositions.Eigh(a.AsSpan(b * n * n, n * n), n, dst[..n], dst[n..]))
                throw new ArithmeticException($"{op}: the QL iteration did not converge for matrix {b} of the batch (shape {Shape})");
        }
        var p = FromHost(packed, [.. lead, n + 1, n]);
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
        var (lead, batch, n, _) = Matrices(op, square: true);
        var a = HostMatrices(op, batch, n, n, requireFinite: false, requireSymmetric: true);
        var l = new double[batch * n * n];
        for (int b = 0; b < batch; b++)
        {
            int j = Decompositions.Cholesky(a.AsSpan(b * n * n, n * n), l.AsSpan(b * n * n, n * n), n, out double pivot);
            if (j >= 0)
                throw new ArgumentException($"{op}: matrix {b} of the batch (shape {Shape}) is not positive definite: pivot {j} is {pivot:G6} " +
                    $"(a_{j}{j} minus the squares of row {j} of L so far must be positive)", "input");
        }
        var y = FromHost(l, [.. lead, n, n]);
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

    // Broadcasts the batch dims of A [..., n, n] and B [..., n, k]; returns both as float64 host arrays.
    static (int[] Lead, int Batch, double[] A, double[] B) SolveOperands(string op, Tensor a, Tensor b, int n, int k)
    {
        var lead = Shape.Broadcast(new Shape(a.Shape.Dims[..^2]), new Shape(b.Shape.Dims[..^2]), op).ToArray();
        int batch = 1;
        foreach (int d in lead) batch *= d;
        var ah = a.Detach().BroadcastTo(new Shape([.. lead, n, n])).ToDoubleArray();
        var bh = b.Detach().BroadcastTo(new Shape([.. lead, n, k])).ToDoubleArray();
        return (lead, batch, ah, bh);
    }

    static Tensor SolveLu(Tensor a, Tensor b)
    {
        const string op = "solve";
        int n = a.Shape[-1], k = b.Shape[-1];
        var (lead, batch, ah, bh) = SolveOperands(op, a, b, n, k);
        var perm = new int[n];
        for (int i = 0; i < batch; i++)
        {
            var lu = ah.AsSpan(i * n * n, n * n);
            int col = Decompositions.Lu(lu, perm, n);
            if (col >= 0)
                throw new ArgumentException($"{op}: matrix {i} of the batch (A of shape {a.Shape}) is singular to working precision: " +
                    $"no usable pivot in column {col}", "input");
            Decompositions.LuSolve(lu, perm, bh.AsSpan(i * n * k, n * k), n, k);
        }
        var x = a.FromHost(bh, [.. lead, n, k]);
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
        var (lead, batch, lh, bh) = SolveOperands(op, l, b, n, k);
        for (int i = 0; i < batch; i++)
        {
            for (int j = 0; j < n; j++)
                if (lh[i * n * n + j * n + j] == 0)
                    throw new ArgumentException($"{op}: factor {i} of the batch (L of shape {l.Shape}) has a zero at diagonal position {j}, so L Lᵀ is singular", "input");
            Decompositions.CholeskySolve(lh.AsSpan(i * n * n, n * n), bh.AsSpan(i * n * k, n * k), n, k);
        }
        var x = l.FromHost(bh, [.. lead, n, k]);
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
    /// columns and R [..., r, n] upper triangular, r = min(m, n). R's diagonal may be negative (LAPACK's convention).
    /// Not differentiable: a backward through it throws <see cref="NotSupportedException"/>.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The input has fewer than two dims.</exception>
    /// <exception cref="NotSupportedException">The dtype is not Float32 or Float64.</exception>
    public (Tensor Q, Tensor R) Qr()
    {
        const string op = "qr";
        var (lead, batch, m, n) = Matrices(op, square: false);
        int r = Math.Min(m, n);
        var a = HostMatrices(op, batch, m, n, requireFinite: false, requireSymmetric: false);
        var q = new double[batch * m * r];
        var rr = new double[batch * r * n];
        for (int b = 0; b < batch; b++)
            Decompositions.Qr(a.AsSpan(b * m * n, m * n), m, n, q.AsSpan(b * m * r, m * r), rr.AsSpan(b * r * n, r * n));
        return (NotDifferentiable(FromHost(q, [.. lead, m, r]), op), NotDifferentiable(FromHost(rr, [.. lead, r, n]), op));
    }

    /// <summary>
    /// Reduced singular value decomposition by one-sided Jacobi: A [..., m, n] = U diag(S) Vh with U [..., m, r]
    /// (orthonormal columns), S [..., r] (non-negative, descending) and Vh [..., r, n] (orthonormal rows), r = min(m, n).
    /// Singular vectors are unique only up to sign (and rotation within repeated singular values).
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
        var a = HostMatrices(op, batch, m, n, requireFinite: true, requireSymmetric: false);
        var u = new double[batch * m * r];
        var s = new double[batch * r];
        var vt = new double[batch * r * n];
        for (int b = 0; b < batch; b++)
            if (!Decompositions.Svd(a.AsSpan(b * m * n, m * n), m, n, u.AsSpan(b * m * r, m * r), s.AsSpan(b * r, r), vt.AsSpan(b * r * n, r * n)))
                throw new ArithmeticException($"{op}: the Jacobi sweeps did not converge for matrix {b} of the batch (shape {Shape})");
        return (NotDifferentiable(FromHost(u, [.. lead, m, r]), op), NotDifferentiable(FromHost(s, [.. lead, r]), op),
            NotDifferentiable(FromHost(vt, [.. lead, r, n]), op));
    }

    Tensor NotDifferentiable(Tensor y, string op) => Record(y, op, [this], _ =>
        throw new NotSupportedException($"{op}: backward is not implemented; compute the decomposition on a Detach()ed input or inside Autograd.NoGrad()"));

    // Checks for a floating tensor of rank >= 2 (square when asked); returns its leading dims, their product and m, n.
    (int[] Lead, int Batch, int M, int N) Matrices(string op, bool square)
    {
        Storage.ThrowIfDisposed(op);
        Check.Floating(this, op, "input");
        if (Rank < 2) throw new ShapeMismatchException(op, "input", $"input has shape {Shape}; it needs at least two dimensions [..., m, n]");
        int m = Shape[-2], n = Shape[-1];
        if (square && m != n) throw new ShapeMismatchException(op, "input", $"input has shape {Shape}; the last two dims must be equal (a square matrix)");
        var lead = Shape.Dims[..^2].ToArray();
        int batch = 1;
        foreach (int d in lead) batch *= d;
        return (lead, batch, m, n);
    }

    // The matrices as one row-major float64 host array, validated as asked.
    double[] HostMatrices(string op, int batch, int m, int n, bool requireFinite, bool requireSymmetric)
    {
        var a = Detach().ToDoubleArray();
        if (requireFinite)
            for (int i = 0; i < a.Length; i++)
                if (!double.IsFinite(a[i]))
                    throw new ArgumentException($"{op}: input (shape {Shape}) holds {a[i]} at flat index {i}; the decomposition needs finite values", "input");
        if (requireSymmetric)
        {
            double tol = DType == DType.Float64 ? 1e-10 : 1e-5;
            for (int b = 0; b < batch; b++)
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
        return a;
    }

    // A result with this tensor's dtype and device from float64 host data.
    Tensor FromHost(double[] data, int[] shape) => FromArray(data, new Shape(shape)).To(DType).To(Device);

    // 1 on and below diagonal `k` (0: main, -1: strictly lower), else 0.
    static Tensor TriangleMask(int n, int k, DType dtype, Device device)
    {
        var m = new double[n * n];
        for (int i = 0; i < n; i++) for (int j = 0; j <= Math.Min(i + k, n - 1); j++) m[i * n + j] = 1;
        return FromArray(m, new Shape(n, n)).To(dtype).To(device);
    }
}
