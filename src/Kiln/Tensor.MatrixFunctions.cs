namespace Kiln;

/// <summary>
/// Matrix functions over the last two dims, batched over any leading dims, built on the float64 decompositions of
/// Tensor.Decompositions.cs (and so computed in float64 through the tensor's <see cref="Backends.ILinalgBackend"/>,
/// results returned in the input's dtype): LU, determinants, inverses, least squares, matrix norms and powers,
/// fractional powers of symmetric positive semi-definite matrices, and the matmul-only orthogonalisations
/// (Newton-Schulz, Björck) that run in the input's dtype on its device.
/// </summary>
public partial class Tensor
{
    /// <summary>
    /// LU decomposition with partial pivoting of a square A [..., n, n], in <c>torch.linalg.lu</c>'s convention
    /// A = P L U: P [..., n, n] a permutation matrix, L [..., n, n] unit lower triangular with |L_ij| ≤ 1 and U
    /// [..., n, n] upper triangular. Singular matrices factor too (U then has a zero on its diagonal). L and U are
    /// differentiable where A is invertible: with M = tril(Lᵀ g_L, -1) + triu(g_U Uᵀ), gA = P L⁻ᵀ M U⁻ᵀ; P is a constant.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The input is not a (batch of) square matrices.</exception>
    /// <exception cref="ArgumentException">A matrix holds NaN or infinity.</exception>
    /// <exception cref="NotSupportedException">The dtype is not floating.</exception>
    public (Tensor P, Tensor L, Tensor U) Lu() => LuNamed("lu");

    // Lu, with `op` naming the caller in error messages.
    (Tensor P, Tensor L, Tensor U) LuNamed(string op)
    {
        var (_, batch, n, _) = Matrices(op, square: true);
        var (lu, perm, _, _) = LuFactors(op, batch, n);
        var strict = TriangleMask(n, -1, DType.Float64, Device);
        var l64 = lu * strict + Eye(n, dtype: DType.Float64, device: Device);
        var u64 = lu * (1.0 - strict);
        // P[perm[i], i] = 1: row i of Pᵀ A is row perm[i] of A, and Pᵀ A = L U.
        var pv = perm.ToArray<int>();
        var pm = new double[batch * n * n];
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < n; i++) pm[b * n * n + pv[b * n + i] * n + i] = 1;
        var p = FromArray(pm, Shape).To(DType).To(Device);
        // One packed result [..., 2n, n] (L above U) keeps both outputs on one graph node.
        var packed = Concat([l64, u64], -2).To(DType);
        Tensor l = null!, u = null!;
        packed = Record(packed, "lu", [this], g => [LuBackward(p, l, u, g.Narrow(-2, 0, n), g.Narrow(-2, n, n))]);
        l = packed.Narrow(-2, 0, n);
        u = packed.Narrow(-2, n, n);
        return (p, l, u);
    }

    /// <summary>
    /// The LU factors of a square A [..., n, n] packed as <c>torch.linalg.lu_factor</c> packs them: LU [..., n, n] holds
    /// L's strict lower triangle (its unit diagonal implied) and U on and above the diagonal, and Int32 Pivots [..., n]
    /// are LAPACK's 1-based row interchanges: for k = 0, 1, ..., n - 1 in turn, row k of A was swapped with row
    /// Pivots[k] - 1, which turns A into L U. LU is differentiable as <see cref="Lu"/>'s L and U are; Pivots is a constant.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The input is not a (batch of) square matrices.</exception>
    /// <exception cref="ArgumentException">A matrix holds NaN or infinity.</exception>
    /// <exception cref="NotSupportedException">The dtype is not floating.</exception>
    public (Tensor LU, Tensor Pivots) LuFactor()
    {
        const string op = "lu_factor";
        var (lead, batch, n, _) = Matrices(op, square: true);
        var (p, l, u) = LuNamed(op);
        // The swaps that arrange A's rows in P's order, one row position at a time (as getrf records them).
        var order = p.To(DType.Float64).T.Contiguous().ToArray<double>();
        var pivots = new int[batch * n];
        var rows = new int[n];
        for (int b = 0; b < batch; b++)
        {
            for (int i = 0; i < n; i++) rows[i] = i;
            for (int k = 0; k < n; k++)
            {
                int target = 0;
                while (order[b * n * n + k * n + target] == 0) target++;     // row k of Pᵀ A is row `target` of A
                int j = Array.IndexOf(rows, target, k);
                (rows[k], rows[j]) = (rows[j], rows[k]);
                pivots[b * n + k] = j + 1;
            }
        }
        var lu = l + u - Eye(n, dtype: DType, device: Device);
        return (lu, FromArray(pivots, new Shape([.. lead, n])).To(Device));
    }

    /// <summary>
    /// Solves a linear system from the factors <see cref="LuFactor"/> returns (<c>torch.linalg.lu_solve</c>): with A = P L U
    /// the matrix that <paramref name="lu"/> [..., n, n] and Int32 <paramref name="pivots"/> [..., n] factor, X solves
    /// A X = B (<paramref name="left"/>), Aᵀ X = B (left, <paramref name="adjoint"/>), X A = B (not left) or X Aᵀ = B (not
    /// left, adjoint). B is [..., n, k] when left, [..., k, n] otherwise; its batch dims broadcast with LU's, and X has B's
    /// matrix shape with the broadcast batch. Two triangular solves per matrix (O(n² k)) in float64, X in B's dtype; a zero
    /// on U's diagonal gives infinities or NaN, as in PyTorch. Differentiable in LU and B: g_B is the solve of g with the
    /// opposite adjoint; g_A = -g_B Xᵀ, -X g_Bᵀ, -Xᵀ g_B or -g_Bᵀ X in the four cases; and
    /// g_LU = tril(Pᵀ g_A Uᵀ, -1) + triu(Lᵀ Pᵀ g_A). The pivots are constants.
    /// </summary>
    /// <param name="lu">L's strict lower triangle (unit diagonal implied) and U on and above the diagonal.</param>
    /// <param name="pivots">LAPACK's 1-based row interchanges: row k was swapped with row pivots[k] - 1, for k = 0, 1, ... in turn.</param>
    /// <param name="b">The right-hand sides.</param>
    /// <param name="left">Solve A X = B (true) or X A = B (false).</param>
    /// <param name="adjoint">Solve with Aᵀ in place of A.</param>
    /// <exception cref="ShapeMismatchException">LU is not a (batch of) square matrices, pivots is not LU's shape without its last dim, B's rows (left) or columns do not match n, or batch dims do not broadcast.</exception>
    /// <exception cref="ArgumentException">Pivots is not Int32, or dtypes or devices differ.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A pivot is outside [1, n].</exception>
    /// <exception cref="NotSupportedException">The dtype is not Float32 or Float64.</exception>
    public static Tensor LuSolve(Tensor lu, Tensor pivots, Tensor b, bool left = true, bool adjoint = false)
    {
        const string op = "lu_solve";
        ArgumentNullException.ThrowIfNull(lu);
        ArgumentNullException.ThrowIfNull(pivots);
        ArgumentNullException.ThrowIfNull(b);
        lu.Storage.ThrowIfDisposed(op); pivots.Storage.ThrowIfDisposed(op); b.Storage.ThrowIfDisposed(op);
        Check.FullFloat(lu, op, nameof(lu));
        if (lu.Rank < 2 || lu.Shape[-1] != lu.Shape[-2])
            throw new ShapeMismatchException(op, nameof(lu), $"lu has shape {lu.Shape}; it must be a (batch of) square matrices [..., n, n]");
        int n = lu.Shape[-1];
        var lead = lu.Shape.Dims[..^2].ToArray();
        Check.SameDType(lu, b, op, nameof(b));
        Check.SameDevice(lu, b, op, nameof(b));
        Check.SameDevice(lu, pivots, op, nameof(pivots));
        if (pivots.DType != DType.Int32)
            throw new ArgumentException($"{op}: pivots has dtype {pivots.DType}; it must be Int32, as LuFactor returns it", nameof(pivots));
        if (pivots.Shape != new Shape([.. lead, n]))
            throw new ShapeMismatchException(op, nameof(pivots), $"pivots has shape {pivots.Shape}; for lu of shape {lu.Shape} it must be {new Shape([.. lead, n])}");
        if (b.Rank < 2 || b.Shape[left ? -2 : -1] != n)
            throw new ShapeMismatchException(op, nameof(b), $"b has shape {b.Shape}; for lu of shape {lu.Shape} it must be {(left ? $"[..., {n}, k]" : $"[..., k, {n}]")}");

        // Replay the interchanges into the row order of Pᵀ A (row i is row perm[i] of A) and P itself.
        var pv = pivots.ToArray<int>();
        int batch = pv.Length / Math.Max(n, 1);
        var perm = new int[pv.Length];
        var pm = new double[batch * n * n];
        for (int m = 0; m < batch; m++)
        {
            var rows = perm.AsSpan(m * n, n);
            for (int i = 0; i < n; i++) rows[i] = i;
            for (int k = 0; k < n; k++)
            {
                int j = pv[m * n + k] - 1;
                if (j < 0 || j >= n)
                    throw new ArgumentOutOfRangeException(nameof(pivots), pv[m * n + k], $"{op}: pivot {k} of matrix {m} of the batch is {pv[m * n + k]}; pivots are 1-based rows in [1, {n}]");
                (rows[k], rows[j]) = (rows[j], rows[k]);
            }
            for (int i = 0; i < n; i++) pm[m * n * n + rows[i] * n + i] = 1;
        }
        var permT = FromArray(perm, pivots.Shape).To(lu.Device);
        var p = FromArray(pm, lu.Shape).To(lu.DType).To(lu.Device);
        return LuSolveFactored(lu, permT, p, b, left, adjoint);
    }

    // X from the factors with the permutation both as rows (perm) and as the matrix P (in LU's dtype); see LuSolve.
    static Tensor LuSolveFactored(Tensor lu, Tensor perm, Tensor p, Tensor b, bool left, bool adjoint)
    {
        const string op = "lu_solve";
        int n = lu.Shape[-1];
        // X A = B is Aᵀ Xᵀ = Bᵀ, so every case is a left solve with A or Aᵀ.
        var bl = left ? b : b.T;
        bool transposed = left == adjoint;
        int k = bl.Shape[-1];
        var lead = Shape.Broadcast(new Shape(lu.Shape.Dims[..^2]), new Shape(bl.Shape.Dims[..^2]), op).ToArray();
        int batch = 1;
        foreach (int d in lead) batch *= d;
        Tensor x64;
        using (Autograd.NoGrad())
        {
            var lu64 = lu.Detach().BroadcastTo(new Shape([.. lead, n, n])).To(DType.Float64).Contiguous();
            var b64 = bl.Detach().BroadcastTo(new Shape([.. lead, n, k])).To(DType.Float64).Contiguous();
            x64 = Empty(b64.Shape, DType.Float64, lu.Device);
            if (!transposed)
                lu.Backend.LuSolve(lu64, perm.BroadcastTo(new Shape([.. lead, n])).Contiguous(), b64, batch, n, k, x64);
            else if (batch * n * k > 0)
            {
                // Aᵀ = Uᵀ Lᵀ Pᵀ = L' U' Pᵀ with D = diag(U), L' = Uᵀ D⁻¹ unit lower and U' = D Lᵀ upper: packed the same way,
                // they go through the same solve (with no interchanges) for Y = Pᵀ X, and X = P Y.
                var strict = TriangleMask(n, -1, DType.Float64, lu.Device);
                var eye = Eye(n, dtype: DType.Float64, device: lu.Device);
                var d = (lu64 * eye).Sum([-1], keepDim: true);
                var luT = lu64.T;
                var packed = (luT * strict / d.T + d * (luT * strict.T + eye)).Contiguous();
                var identity = FromArray(Enumerable.Range(0, batch * n).Select(i => i % n).ToArray(), new Shape(batch, n)).To(lu.Device);
                var y = Empty(b64.Shape, DType.Float64, lu.Device);
                lu.Backend.LuSolve(packed, identity, b64, batch, n, k, y);
                x64 = p.To(DType.Float64).MatMul(y);
            }
        }
        var xl = x64.To(b.DType);
        // The backward reads the recorded X, so a second differentiation sees its dependence on LU and B.
        Tensor x = null!;
        x = Record(left ? xl : xl.T, op, [lu, b], g =>
        {
            var gb = LuSolveFactored(lu, perm, p, g, left, !adjoint);
            var ga = (left, adjoint) switch
            {
                (true, false) => -gb.MatMul(x.T),
                (true, true) => -x.MatMul(gb.T),
                (false, false) => -x.T.MatMul(gb),
                _ => -gb.T.MatMul(x),
            };
            var strict = TriangleMask(n, -1, lu.DType, lu.Device);
            var l = lu * strict + Eye(n, dtype: lu.DType, device: lu.Device);
            var u = lu * (1.0 - strict);
            var pg = p.T.MatMul(ga);
            return [(pg.MatMul(u.T) * strict + l.T.MatMul(pg) * (1.0 - strict)).SumTo(lu.Shape), gb.SumTo(b.Shape)];
        });
        return x;
    }

    static Tensor LuBackward(Tensor p, Tensor l, Tensor u, Tensor gl, Tensor gu)
    {
        int n = l.Shape[-1];
        var strict = TriangleMask(n, -1, l.DType, l.Device);
        // From Pᵀ dA = dL U + L dU: L⁻¹ dL is strictly lower and dU U⁻¹ upper, so both come from X = L⁻¹ Pᵀ dA U⁻¹.
        var m = l.T.MatMul(gl) * strict + gu.MatMul(u.T) * (1.0 - strict);
        var y = l.T.Solve(m);                                 // L⁻ᵀ M
        return p.MatMul(u.Solve(y.T).T);                      // P L⁻ᵀ M U⁻ᵀ
    }

    /// <summary>
    /// Determinant of each square matrix of A [..., n, n], giving [...] (1 for n = 0), from the LU factors: the product
    /// of U's diagonal times the sign of the permutation; a singular matrix gives 0 (or a value at rounding level).
    /// Differentiable where A is invertible: gA = g det(A) A⁻ᵀ (the backward throws, naming the matrix, where it is not).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The input is not a (batch of) square matrices.</exception>
    /// <exception cref="ArgumentException">A matrix holds NaN or infinity.</exception>
    /// <exception cref="NotSupportedException">The dtype is not floating.</exception>
    public Tensor Det()
    {
        const string op = "det";
        var (lead, batch, n, _) = Matrices(op, square: true);
        var (_, _, det) = Determinants(op, batch, n);
        var y = FromArray(det, new Shape(lead)).To(DType).To(Device);
        return Record(y, op, [this], g => [(g * y).Unsqueeze(-1).Unsqueeze(-1) * Inverse().T]);
    }

    /// <summary>
    /// Sign and natural log of the absolute value of the determinant of each square matrix of A [..., n, n], both
    /// [...]: det(A) = Sign · exp(LogAbsDet), without the overflow or underflow of the product itself. A singular matrix
    /// gives Sign 0 and LogAbsDet -∞. LogAbsDet is differentiable where A is invertible: gA = g A⁻ᵀ; Sign is a constant.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The input is not a (batch of) square matrices.</exception>
    /// <exception cref="ArgumentException">A matrix holds NaN or infinity.</exception>
    /// <exception cref="NotSupportedException">The dtype is not floating.</exception>
    public (Tensor Sign, Tensor LogAbsDet) Slogdet()
    {
        const string op = "slogdet";
        var (lead, batch, n, _) = Matrices(op, square: true);
        var (sign, logAbs, _) = Determinants(op, batch, n);
        var s = FromArray(sign, new Shape(lead)).To(DType).To(Device);
        var y = FromArray(logAbs, new Shape(lead)).To(DType).To(Device);
        return (s, Record(y, op, [this], g => [g.Unsqueeze(-1).Unsqueeze(-1) * Inverse().T]));
    }

    /// <summary>
    /// Inverse of each square matrix of A [..., n, n] (LU with partial pivoting, then n solves), same shape.
    /// Differentiable: gA = -A⁻ᵀ g A⁻ᵀ.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The input is not a (batch of) square matrices.</exception>
    /// <exception cref="ArgumentException">A matrix is singular to working precision (a pivot is at most n·ε times its column's largest magnitude; the message names the matrix's index in the batch and the column), or holds NaN or infinity.</exception>
    /// <exception cref="NotSupportedException">The dtype is not floating.</exception>
    public Tensor Inverse()
    {
        const string op = "inverse";
        var (_, batch, n, _) = Matrices(op, square: true);
        var (lu, perm, failed, col) = LuFactors(op, batch, n);
        if (failed >= 0)
            throw new ArgumentException($"{op}: matrix {failed} of the batch (A of shape {Shape}) is singular to working precision: " +
                $"no usable pivot in column {col}, so it has no inverse", "input");
        var eye = Eye(n, dtype: DType.Float64, device: Device).BroadcastTo(Shape).Contiguous();
        var x64 = Empty(Shape, DType.Float64, Device);
        Backend.LuSolve(lu, perm, eye, batch, n, n, x64);
        var y = x64.To(DType);
        return Record(y, op, [this], g => [-y.T.MatMul(g).MatMul(y.T)]);
    }

    // The LU factors of every matrix (finite, checked), through the backend: packed float64 LU [..., n, n] on this
    // device, the Int32 row permutations [batch, n], and the first matrix singular to working precision (-1 if none)
    // with its column.
    (Tensor Lu, Tensor Perm, int Singular, int Column) LuFactors(string op, int batch, int n)
    {
        var a = Float64Matrices(op, requireFinite: true, requireSymmetric: false);
        var lu = Empty(a.Shape, DType.Float64, Device);
        var perm = Empty(new Shape(batch, n), DType.Int32, Device);
        int failed = Backend.LuFactor(a, batch, n, lu, perm, out int col);
        return (lu, perm, failed, col);
    }

    // Per matrix: the sign (0 when singular), log|det| and det, read off U's diagonal and the permutation's parity.
    (double[] Sign, double[] LogAbs, double[] Det) Determinants(string op, int batch, int n)
    {
        var (lu, perm, _, _) = LuFactors(op, batch, n);
        var f = lu.ToArray<double>();
        var pv = perm.ToArray<int>();
        var sign = new double[batch];
        var logAbs = new double[batch];
        var det = new double[batch];
        var seen = new bool[n];
        for (int b = 0; b < batch; b++)
        {
            // A permutation with c cycles is n - c transpositions.
            Array.Clear(seen);
            int cycles = 0;
            for (int i = 0; i < n; i++)
            {
                if (seen[i]) continue;
                cycles++;
                for (int j = i; !seen[j]; j = pv[b * n + j]) seen[j] = true;
            }
            double s = (n - cycles) % 2 == 0 ? 1 : -1, d = s, la = 0;
            for (int i = 0; i < n; i++)
            {
                double u = f[b * n * n + i * n + i];
                d *= u;
                la += Math.Log(Math.Abs(u));
                s = u == 0 ? 0 : u < 0 ? -s : s;
                if (u == 0) break;
            }
            (sign[b], logAbs[b], det[b]) = (s, s == 0 ? double.NegativeInfinity : la, s == 0 ? 0 : d);
        }
        return (sign, logAbs, det);
    }

    /// <summary>
    /// Least-squares solution X of A X ≈ B, with this tensor as A [..., m, n]: X minimizes ‖A X - B‖ (Frobenius) and,
    /// among the minimizers, has the least norm (the pseudo-inverse solution A⁺ B, as LAPACK's gelsd gives). B is
    /// [..., m, k], or a vector [m] / [..., m] (when its shape is A's without the last dim), giving X [..., n, k] or a
    /// vector; batch dims broadcast. A tall A (m ≥ n) of full column rank is solved by Householder QR (X = R⁻¹ Qᵀ B);
    /// a wide or rank-deficient A by the SVD, with singular values at most <paramref name="rcond"/> times the largest
    /// taken as zero (the numerical rank; a tall A goes to the SVD when some |R_ii| is at most rcond · max |R_ii|).
    /// Differentiable where the rank is locally constant (Golub and Pereyra 1973): with r = B - A X,
    /// g_B = A⁺ᵀ g and g_A = -g_B Xᵀ + r (A⁺ g_B)ᵀ + (A⁺ᵀ X) ((I - A⁺ A) g)ᵀ, each A⁺ product itself a least-squares solve.
    /// </summary>
    /// <param name="b">The right-hand sides.</param>
    /// <param name="rcond">Relative cutoff for small singular values; null for ε · max(m, n) with ε the machine epsilon of the dtype (PyTorch's default).</param>
    /// <exception cref="ShapeMismatchException">A has fewer than two dims, or B's rows differ from A's, or batch dims do not broadcast.</exception>
    /// <exception cref="ArgumentException">A holds NaN or infinity, or dtypes/devices differ.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="rcond"/> is negative or not finite.</exception>
    /// <exception cref="NotSupportedException">The dtype is not floating.</exception>
    public Tensor Lstsq(Tensor b, double? rcond = null)
    {
        const string op = "lstsq";
        ArgumentNullException.ThrowIfNull(b);
        b.Storage.ThrowIfDisposed(op);
        var (_, _, m, n) = Matrices(op, square: false);
        Check.SameDType(this, b, op, nameof(b));
        Check.SameDevice(this, b, op, nameof(b));
        double rc = rcond ?? (DType == DType.Float64 ? Math.Pow(2, -52) : Math.Pow(2, -23)) * Math.Max(m, n);
        if (!(rc >= 0) || double.IsInfinity(rc))
            throw new ArgumentOutOfRangeException(nameof(rcond), rcond, $"{op}: rcond must be finite and non-negative, got {rc}");
        bool vector = b.Rank == 1 || (b.Rank == Rank - 1 && b.Shape == new Shape(Shape.Dims[..^1]));
        var bm = vector ? b.Unsqueeze(-1) : b;
        if (bm.Rank < 2 || bm.Shape[-2] != m)
            throw new ShapeMismatchException(op, nameof(b), $"b has shape {b.Shape}, which is neither [..., {m}, k] nor a vector of length {m} for A of shape {Shape}");
        var x = LstsqMatrices(this, bm, rc);
        return vector ? x.Squeeze(-1) : x;
    }

    static Tensor LstsqMatrices(Tensor a, Tensor b, double rcond)
    {
        const string op = "lstsq";
        int m = a.Shape[-2], n = a.Shape[-1], k = b.Shape[-1];
        var lead = Shape.Broadcast(new Shape(a.Shape.Dims[..^2]), new Shape(b.Shape.Dims[..^2]), op).ToArray();
        var a64 = a.Float64Matrices(op, requireFinite: true, requireSymmetric: false).BroadcastTo(new Shape([.. lead, m, n])).Contiguous();
        var b64 = b.Detach().BroadcastTo(new Shape([.. lead, m, k])).To(DType.Float64).Contiguous();
        Tensor x64;
        if (Math.Min(m, n) == 0) x64 = Zeros(new Shape([.. lead, n, k]), DType.Float64, a.Device);
        else if (m < n || !LstsqByQr(a64, b64, rcond, out x64))
        {
            var (u, s, vh) = a64.Svd();
            var keep = s > s.Narrow(-1, 0, 1) * rcond;
            var sinv = Where(keep, 1.0 / Where(keep, s, s.OnesLike()), s.ZerosLike());
            x64 = vh.T.MatMul(sinv.Unsqueeze(-1) * u.T.MatMul(b64));
        }
        var x = x64.To(a.DType);
        return Record(x, op, [a, b], g =>
        {
            var gb = a.T.Lstsq(g, rcond);
            var r = b - a.MatMul(x);
            var ga = -gb.MatMul(x.T) + r.MatMul(a.Lstsq(gb, rcond).T) + a.T.Lstsq(x, rcond).MatMul((g - a.Lstsq(a.MatMul(g), rcond)).T);
            return [ga.SumTo(a.Shape), gb.SumTo(b.Shape)];
        });
    }

    // X = R⁻¹ Qᵀ B for tall A [..., m, n] (float64, m ≥ n ≥ 1) when every R of the batch passes the rank test; false
    // (and no X) when one does not, so the caller falls back to the SVD.
    static bool LstsqByQr(Tensor a, Tensor b, double rcond, out Tensor x)
    {
        int n = a.Shape[-1], k = b.Shape[-1];
        var (q, r) = a.Qr();
        var rd = r.ToArray<double>();
        int batch = rd.Length / (n * n);
        for (int t = 0; t < batch; t++)
        {
            double max = 0, min = double.PositiveInfinity;
            for (int i = 0; i < n; i++)
            {
                double d = Math.Abs(rd[t * n * n + i * n + i]);
                max = Math.Max(max, d);
                min = Math.Min(min, d);
            }
            if (!(min > rcond * max)) { x = null!; return false; }
        }
        // Back substitution on the host: R is triangular with a usable diagonal, so no pivoting is needed.
        var c = q.T.MatMul(b).Contiguous().ToArray<double>();
        for (int t = 0; t < batch; t++)
            for (int i = n - 1; i >= 0; i--)
                for (int col = 0; col < k; col++)
                {
                    double s = c[(t * n + i) * k + col];
                    for (int p = i + 1; p < n; p++) s -= rd[t * n * n + i * n + p] * c[(t * n + p) * k + col];
                    c[(t * n + i) * k + col] = s / rd[t * n * n + i * n + i];
                }
        x = FromArray(c, new Shape([.. a.Shape.Dims[..^2], n, k])).To(a.Device);
        return true;
    }

    /// <summary>
    /// Matrix norm over the last two dims of A [..., m, n], giving [...] (or [..., 1, 1] with <paramref name="keepDim"/>):
    /// "fro" the Frobenius norm sqrt(Σ a_ij²), "nuc" the nuclear norm (sum of singular values). Differentiable; the
    /// nuclear norm's gradient is U Vh (first derivatives only: a second backward through it throws).
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="ord"/> is neither "fro" nor "nuc".</exception>
    /// <exception cref="ShapeMismatchException">The input has fewer than two dims.</exception>
    /// <exception cref="NotSupportedException">The dtype is not floating.</exception>
    public Tensor MatrixNorm(string ord = "fro", bool keepDim = false)
    {
        const string op = "matrix_norm";
        ArgumentNullException.ThrowIfNull(ord);
        Matrices(op, square: false);
        var y = ord switch
        {
            "fro" => Square().Sum([-2, -1]).Sqrt(),
            "nuc" => SingularValues(op).Sum([-1]),
            _ => throw new ArgumentException($"{op}: ord \"{ord}\" is not a matrix norm; use \"fro\", \"nuc\" or a number (1, -1, 2, -2, ±infinity)", nameof(ord)),
        };
        return keepDim ? y.Unsqueeze(-1).Unsqueeze(-1) : y;
    }

    /// <summary>
    /// Matrix norm over the last two dims of A [..., m, n] with PyTorch's numeric <paramref name="ord"/>: 1 (-1) the
    /// largest (smallest) column sum of |a_ij|, +∞ (-∞) the largest (smallest) row sum, 2 (-2) the largest (smallest)
    /// singular value. Gives [...] (or [..., 1, 1] with <paramref name="keepDim"/>). Differentiable (ties share the
    /// gradient evenly; ±2 give u vᵀ of the chosen singular pair, first derivatives only).
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="ord"/> is not one of 1, -1, 2, -2, ±∞, or the matrices are empty (these norms reduce with max or min).</exception>
    /// <exception cref="ShapeMismatchException">The input has fewer than two dims.</exception>
    /// <exception cref="NotSupportedException">The dtype is not floating.</exception>
    public Tensor MatrixNorm(double ord, bool keepDim = false)
    {
        const string op = "matrix_norm";
        var (_, _, m, n) = Matrices(op, square: false);
        if (ord is not (1 or -1 or 2 or -2 or double.PositiveInfinity or double.NegativeInfinity))
            throw new ArgumentException($"{op}: ord {ord} is not a matrix norm; use 1, -1, 2, -2, ±infinity, \"fro\" or \"nuc\"", nameof(ord));
        if (m == 0 || n == 0)
            throw new ArgumentException($"{op}: ord {ord} of empty matrices (shape {Shape}) is undefined: it takes a max or min over them", nameof(ord));
        var y = ord switch
        {
            1 => Abs().Sum([-2]).Amax([-1]),
            -1 => Abs().Sum([-2]).Amin([-1]),
            double.PositiveInfinity => Abs().Sum([-1]).Amax([-1]),
            double.NegativeInfinity => Abs().Sum([-1]).Amin([-1]),
            2 => SingularValues(op).Narrow(-1, 0, 1).Squeeze(-1),
            _ => SingularValues(op).Narrow(-1, Math.Min(m, n) - 1, 1).Squeeze(-1),
        };
        return keepDim ? y.Unsqueeze(-1).Unsqueeze(-1) : y;
    }

    // The singular values [..., min(m, n)], descending, differentiable once: ds_i = u_iᵀ dA v_i, so gA = U diag(g) Vh.
    // U and Vh stay on the graph through Svd's non-differentiable node, so a second backward through them throws
    // instead of silently dropping their terms.
    Tensor SingularValues(string op)
    {
        var (u, s, vh) = Svd();
        return Record(s.Detach(), op, [this], g => [u.MatMul(g.Unsqueeze(-1) * vh)]);
    }

    /// <summary>
    /// The integer power Aⁿ of each square matrix of A [..., n, n], by repeated squaring (about 2 log₂|n| products):
    /// the identity for n = 0 (a constant), A⁻¹ raised to -n for n &lt; 0. Differentiable through its products (and
    /// <see cref="Inverse"/>).
    /// </summary>
    /// <param name="n">The exponent.</param>
    /// <exception cref="ShapeMismatchException">The input is not a (batch of) square matrices.</exception>
    /// <exception cref="ArgumentException">n &lt; 0 and a matrix is singular (from <see cref="Inverse"/>).</exception>
    /// <exception cref="NotSupportedException">The dtype is not floating.</exception>
    public Tensor MatrixPower(int n)
    {
        const string op = "matrix_power";
        var (_, _, k, _) = Matrices(op, square: true);
        if (n == 0) return Eye(k, dtype: DType, device: Device).BroadcastTo(Shape).Contiguous();
        var p = n > 0 ? this : Inverse();
        Tensor? result = null;
        for (long e = Math.Abs((long)n); ; p = p.MatMul(p))
        {
            if ((e & 1) != 0) result = result is null ? p : result.MatMul(p);
            e >>= 1;
            if (e == 0) break;
        }
        // A¹ is a copy, as every op's result is a new tensor.
        return ReferenceEquals(result, this) ? Clone() : result!;
    }

    /// <summary>
    /// A real power (A + eps I)^p of each symmetric positive semi-definite matrix of A [..., n, n], through its
    /// eigendecomposition: V diag((w + eps)^p) Vᵀ. This is the inverse p-th root preconditioner of Shampoo
    /// ((GGᵀ + eps I)^(-1/4) is <c>SymmetricMatrixPower(-0.25, eps)</c>) and the square root of a covariance.
    /// Eigenvalues within rounding of zero (down to -n·tol·max|w|, tol 1e-10 in Float64 and 1e-5 in Float32) count as
    /// zero; without <paramref name="rcond"/> a zero shifted eigenvalue gives 0^p for p ≥ 0 (so A⁰ = I). With
    /// <paramref name="rcond"/>, shifted eigenvalues at or below rcond · max(w + eps) are treated as exact
    /// zeros and get the value 0 for every exponent (the Moore-Penrose convention: p = -1 is the pseudo-inverse,
    /// p = -1/4 the pseudo-inverse fourth root). Computed in float64 (via <see cref="Eigh"/>) and returned in A's dtype;
    /// differentiable where the eigenvalues are distinct (through <see cref="Eigh"/>). PyTorch has no such function; the
    /// name follows <see cref="MatrixPower"/>.
    /// </summary>
    /// <param name="p">The exponent (any finite real).</param>
    /// <param name="eps">A ridge added to every eigenvalue (finite, non-negative).</param>
    /// <param name="rcond">When set (in [0, 1)), the relative cutoff below which eigenvalues count as zero.</param>
    /// <exception cref="ShapeMismatchException">The input is not a (batch of) square matrices.</exception>
    /// <exception cref="ArgumentOutOfRangeException">p is not finite, eps is negative or not finite, or rcond is outside [0, 1).</exception>
    /// <exception cref="ArgumentException">A matrix is not symmetric, holds NaN or infinity, has a negative eigenvalue beyond rounding,
    /// or (p &lt; 0 without rcond) has a shifted eigenvalue of zero.</exception>
    /// <exception cref="NotSupportedException">The dtype is not Float32 or Float64.</exception>
    public Tensor SymmetricMatrixPower(double p, double eps = 0, double? rcond = null)
    {
        const string op = "symmetric_matrix_power";
        var (_, _, n, _) = Matrices(op, square: true);
        if (!double.IsFinite(p)) throw new ArgumentOutOfRangeException(nameof(p), p, $"{op}: the exponent must be finite");
        if (!(eps >= 0) || double.IsInfinity(eps)) throw new ArgumentOutOfRangeException(nameof(eps), eps, $"{op}: eps must be finite and non-negative");
        if (rcond is { } rc && !(rc >= 0 && rc < 1)) throw new ArgumentOutOfRangeException(nameof(rcond), rc, $"{op}: rcond must be in [0, 1)");
        var (w, v) = To(DType.Float64).Eigh();
        if (w.Numel == 0) return To(DType.Float64).Clone().To(DType);
        using (Autograd.NoGrad())
        {
            var wd = w.Detach();
            double big = wd.Abs().Amax().Item(), low = wd.Amin().Item();
            if (low < -SymmetryTolerance * n * big)
                throw new ArgumentException($"{op}: input (shape {Shape}) is not positive semi-definite: it has eigenvalue {low:G6} (largest magnitude {big:G6})", "input");
        }
        var shifted = w.Clamp(min: 0) + eps;
        Tensor keep;
        if (rcond is { } cut) keep = shifted > cut * shifted.Detach().Amax([-1], keepDim: true);
        else if (p >= 0) keep = shifted >= 0.0;   // all of them: 0^p is 0 (1 for p = 0, so A^0 = I)
        else
        {
            keep = shifted > 0.0;
            if (keep.All().Item() == 0)
                throw new ArgumentException($"{op}: input (shape {Shape}) is singular (a shifted eigenvalue is 0), so power {p} is infinite; pass eps > 0 or rcond", "input");
        }
        // The power of the zeroed eigenvalues is taken at 1 so no inf or NaN enters the forward or backward pass.
        var one = shifted.OnesLike();
        var wp = Where(keep, Where(keep, shifted, one).Pow(p), shifted.ZerosLike());
        return (v * wp.Unsqueeze(-2)).MatMul(v.T).To(DType);
    }

    /// <summary>
    /// The orthogonal polar factor U Vᵀ of each matrix of G [..., m, n] (G = U S Vᵀ its reduced SVD) approximated by
    /// Newton-Schulz iterations, matrix products only, in G's dtype on its device. X₀ = G / (‖G‖_F + eps), so every
    /// singular value starts in (0, 1]; then <paramref name="steps"/> iterations of
    /// <see cref="NewtonSchulzIteration.Cubic"/> X ← 1.5 X - 0.5 X Xᵀ X, which converges to U Vᵀ (quadratically once the
    /// singular values are near 1, slowly for tiny ones: σ grows by about 1.5 per step), or of
    /// <see cref="NewtonSchulzIteration.MuonQuintic"/> (Muon's tuned X ← aX + (bA + cA²)X, A = X Xᵀ,
    /// (a, b, c) = (3.4445, -4.7750, 2.0315)), which in 5 steps pushes every singular value into a band around 1
    /// (about [0.7, 1.2]) but does not converge to U Vᵀ. Wide or tall matrices iterate on the side with the smaller
    /// Gram matrix. A zero matrix gives zero (for eps &gt; 0). Differentiable through its products.
    /// </summary>
    /// <param name="steps">Iterations (at least 0).</param>
    /// <param name="iteration">The polynomial.</param>
    /// <param name="eps">Added to the Frobenius norm before dividing (finite, non-negative).</param>
    /// <exception cref="ShapeMismatchException">The input has fewer than two dims.</exception>
    /// <exception cref="ArgumentOutOfRangeException">steps is negative or eps is negative or not finite.</exception>
    /// <exception cref="NotSupportedException">The dtype is not floating.</exception>
    public Tensor NewtonSchulz(int steps, NewtonSchulzIteration iteration = NewtonSchulzIteration.Cubic, double eps = 1e-7)
    {
        const string op = "newton_schulz";
        Matrices(op, square: false);
        if (!(eps >= 0) || double.IsInfinity(eps)) throw new ArgumentOutOfRangeException(nameof(eps), eps, $"{op}: eps must be finite and non-negative");
        if (iteration is not (NewtonSchulzIteration.Cubic or NewtonSchulzIteration.MuonQuintic))
            throw new ArgumentOutOfRangeException(nameof(iteration), iteration, $"{op}: unknown iteration");
        return OrthogonalIteration(op, this / (MatrixNorm("fro", keepDim: true) + eps), steps, iteration);
    }

    /// <summary>
    /// Björck orthonormalisation of each matrix of A [..., m, n]: <paramref name="steps"/> iterations of
    /// X ← 1.5 X - 0.5 X Xᵀ X from X₀ = A itself (no rescaling), matrix products only, in A's dtype on its device. It
    /// converges to A's orthogonal polar factor U Vᵀ when every singular value of A lies in (0, √3), and is meant for
    /// nearly orthogonal A (a quantised eigenvector matrix, 4-bit Shampoo): then one or two steps restore orthogonality
    /// to rounding. Differentiable through its products.
    /// </summary>
    /// <param name="steps">Iterations (at least 0).</param>
    /// <exception cref="ShapeMismatchException">The input has fewer than two dims.</exception>
    /// <exception cref="ArgumentOutOfRangeException">steps is negative.</exception>
    /// <exception cref="NotSupportedException">The dtype is not floating.</exception>
    public Tensor Bjorck(int steps = 1)
    {
        const string op = "bjorck";
        Matrices(op, square: false);
        return OrthogonalIteration(op, this, steps, NewtonSchulzIteration.Cubic);
    }

    static Tensor OrthogonalIteration(string op, Tensor x, int steps, NewtonSchulzIteration iteration)
    {
        if (steps < 0) throw new ArgumentOutOfRangeException(nameof(steps), steps, $"{op}: steps must be non-negative");
        if (steps == 0) return x.Clone();
        // X Xᵀ is the smaller Gram matrix when X is wide; a tall X iterates on its transpose (the same polynomial in X).
        bool tall = x.Shape[-2] > x.Shape[-1];
        if (tall) x = x.T;
        for (int s = 0; s < steps; s++)
        {
            var a = x.MatMul(x.T);
            x = iteration == NewtonSchulzIteration.Cubic
                ? 1.5 * x - 0.5 * a.MatMul(x)
                : 3.4445 * x + (-4.7750 * a + 2.0315 * a.MatMul(a)).MatMul(x);
        }
        return tall ? x.T : x;
    }
}

/// <summary>The polynomial of <see cref="Tensor.NewtonSchulz"/>.</summary>
public enum NewtonSchulzIteration
{
    /// <summary>X ← 1.5 X - 0.5 X Xᵀ X: converges to the polar factor U Vᵀ.</summary>
    Cubic,
    /// <summary>Muon's quintic X ← 3.4445 X - 4.7750 A X + 2.0315 A² X (A = X Xᵀ): fast to a band around 1, not convergent to U Vᵀ.</summary>
    MuonQuintic,
}
