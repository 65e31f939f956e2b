using Kiln.Kernels.Cpu;

namespace Kiln.Backends;

/// <summary>
/// Dense matrix decompositions and solves, batched over independent row-major matrices. Every tensor argument is a
/// contiguous Float64 tensor on this backend's device (its shape may split the leading batch dim any way; only the
/// element count and order matter); outputs are preallocated by the caller and overwritten. A factorization that fails
/// on one matrix returns that matrix's index (and the failing pivot where there is one), so the caller can name it in
/// its message; the contents of the outputs are then unspecified. Numerical failures are returned, never thrown; the
/// members throw only when misused (a tensor of another device or dtype: <see cref="ArgumentException"/> or
/// <see cref="InvalidCastException"/>), which the tensor code rules out.
/// <para>
/// The default bodies are the host path: they download the inputs with the backend's <see cref="IMemoryBackend.Download"/>,
/// run the float64 CPU kernels of kernels/Kiln.Kernels.Cpu/Decompositions.cs one matrix at a time, and upload the
/// results with <see cref="IMemoryBackend.Upload"/> and <see cref="IMemoryBackend.Copy"/>. A backend without its own kernels thus
/// copies every operand through host memory (and gets bit-identical results to the CPU backend).
/// </para>
/// </summary>
public interface ILinalgBackend
{
    /// <summary>
    /// Eigendecomposition of the symmetric matrices <paramref name="a"/> [batch, n, n] (finite; both triangles agree):
    /// writes the eigenvalues in ascending order to <paramref name="w"/> [batch, n] and the orthonormal eigenvectors as
    /// the columns of <paramref name="v"/> [batch, n, n], each signed so that its largest-magnitude component (the
    /// first of equal ones) is positive.
    /// </summary>
    /// <returns>-1, or the index of the first matrix whose QL iteration did not converge.</returns>
    int Eigh(Tensor a, int batch, int n, Tensor w, Tensor v)
    {
        var ah = Host.Download(a);
        var wh = new double[batch * n];
        var vh = new double[batch * n * n];
        int failed = LinalgBatches.Eigh(ah, batch, n, wh, vh);
        if (failed < 0) { Host.Write(wh, w); Host.Write(vh, v); }
        return failed;
    }

    /// <summary>
    /// Lower Cholesky factors L of the symmetric matrices <paramref name="a"/> [batch, n, n] (only the lower triangles
    /// are read) into <paramref name="l"/> [batch, n, n], upper triangles zeroed, so that A = L Lᵀ.
    /// </summary>
    /// <param name="a">The matrices.</param>
    /// <param name="batch">Number of matrices.</param>
    /// <param name="n">Their order.</param>
    /// <param name="l">The factors (output).</param>
    /// <param name="pivot">On failure, the first column whose pivot a_jj - Σ_k l_jk² is not positive.</param>
    /// <param name="pivotValue">On failure, that pivot's value.</param>
    /// <returns>-1, or the index of the first matrix that is not positive definite.</returns>
    int Cholesky(Tensor a, int batch, int n, Tensor l, out int pivot, out double pivotValue)
    {
        var ah = Host.Download(a);
        var lh = new double[batch * n * n];
        int failed = LinalgBatches.Cholesky(ah, batch, n, lh, out pivot, out pivotValue);
        if (failed < 0) Host.Write(lh, l);
        return failed;
    }

    /// <summary>
    /// LU factorizations with partial pivoting of <paramref name="a"/> [batch, n, n]: <paramref name="lu"/> [batch, n, n]
    /// gets unit-lower L below each diagonal and U on and above it, and Int32 <paramref name="perm"/> [batch, n] the row
    /// permutation (row i of P A is row perm[i] of A), as consumed by <see cref="LuSolve"/>. Every matrix is factored,
    /// singular ones included (a column without a nonzero pivot leaves a zero on U's diagonal), and the outputs are
    /// written even when one is singular, so a caller may read determinants from them.
    /// </summary>
    /// <param name="a">The matrices (not modified).</param>
    /// <param name="batch">Number of matrices.</param>
    /// <param name="n">Their order.</param>
    /// <param name="lu">The packed factors (output).</param>
    /// <param name="perm">The row permutations (Int32 output).</param>
    /// <param name="column">On failure, the first column whose pivot is at most n·ε times that column's largest magnitude.</param>
    /// <returns>-1, or the index of the first matrix that is singular to working precision.</returns>
    int LuFactor(Tensor a, int batch, int n, Tensor lu, Tensor perm, out int column)
    {
        var luh = Host.Download(a);
        var ph = new int[batch * n];
        int failed = LinalgBatches.LuFactor(luh, batch, n, ph, out column);
        Host.Write(luh, lu);
        Host.Write(ph, perm);
        return failed;
    }

    /// <summary>
    /// Solves A X = B for each matrix of the batch from the factors of <see cref="LuFactor"/>: <paramref name="b"/> and
    /// <paramref name="x"/> are [batch, n, k]; <paramref name="x"/> may be <paramref name="b"/> (in place).
    /// </summary>
    void LuSolve(Tensor lu, Tensor perm, Tensor b, int batch, int n, int k, Tensor x)
    {
        var xh = Host.Download(b);
        LinalgBatches.LuSolve(Host.Download(lu), Host.DownloadInt(perm), xh, batch, n, k);
        Host.Write(xh, x);
    }

    /// <summary>
    /// Solves L Lᵀ X = B for each matrix of the batch given the lower factors <paramref name="l"/> [batch, n, n] (only
    /// their lower triangles are read): <paramref name="b"/> and <paramref name="x"/> are [batch, n, k];
    /// <paramref name="x"/> may be <paramref name="b"/> (in place).
    /// </summary>
    /// <param name="l">The lower factors.</param>
    /// <param name="b">The right-hand sides.</param>
    /// <param name="batch">Number of systems.</param>
    /// <param name="n">Order of the factors.</param>
    /// <param name="k">Columns of each right-hand side.</param>
    /// <param name="x">The solutions (output).</param>
    /// <param name="position">On failure, the first diagonal position where that factor is zero.</param>
    /// <returns>-1, or the index of the first factor with a zero on its diagonal (L Lᵀ singular).</returns>
    int CholeskySolve(Tensor l, Tensor b, int batch, int n, int k, Tensor x, out int position)
    {
        var xh = Host.Download(b);
        int failed = LinalgBatches.CholeskySolve(Host.Download(l), xh, batch, n, k, out position);
        if (failed < 0) Host.Write(xh, x);
        return failed;
    }

    /// <summary>
    /// Reduced Householder QR of <paramref name="a"/> [batch, m, n]: <paramref name="q"/> [batch, m, r] with orthonormal
    /// columns and upper-triangular <paramref name="r"/> [batch, r, n], r = min(m, n), A = Q R; R's diagonal is
    /// non-negative.
    /// </summary>
    void Qr(Tensor a, int batch, int m, int n, Tensor q, Tensor r)
    {
        int k = Math.Min(m, n);
        var qh = new double[batch * m * k];
        var rh = new double[batch * k * n];
        LinalgBatches.Qr(Host.Download(a), batch, m, n, qh, rh);
        Host.Write(qh, q);
        Host.Write(rh, r);
    }

    /// <summary>
    /// Reduced SVD by one-sided Jacobi of the finite matrices <paramref name="a"/> [batch, m, n]: <paramref name="u"/>
    /// [batch, m, r] (orthonormal columns), <paramref name="s"/> [batch, r] (non-negative, descending) and
    /// <paramref name="vt"/> [batch, r, n] (orthonormal rows), r = min(m, n), A = U diag(S) Vᵀ; each column of U has its
    /// largest-magnitude component (the first of equal ones) positive.
    /// </summary>
    /// <returns>-1, or the index of the first matrix whose Jacobi sweeps did not converge.</returns>
    int Svd(Tensor a, int batch, int m, int n, Tensor u, Tensor s, Tensor vt)
    {
        int k = Math.Min(m, n);
        var uh = new double[batch * m * k];
        var sh = new double[batch * k];
        var vth = new double[batch * k * n];
        int failed = LinalgBatches.Svd(Host.Download(a), batch, m, n, uh, sh, vth);
        if (failed < 0) { Host.Write(uh, u); Host.Write(sh, s); Host.Write(vth, vt); }
        return failed;
    }

    // The host path needs the storage members of the full backend; ILinalgBackend is only ever implemented through it.
    private HostTransfer Host => new(this as IBackend
        ?? throw new NotSupportedException($"{GetType().Name} implements {nameof(ILinalgBackend)} without {nameof(IBackend)}, so the host path cannot move its tensors"));

    private readonly struct HostTransfer(IBackend backend)
    {
        public double[] Download(Tensor t) => (double[])backend.Download(t);
        public int[] DownloadInt(Tensor t) => (int[])backend.Download(t);

        // Uploads into fresh storage, then copies into the caller's preallocated output.
        public void Write(Array data, Tensor dst)
        {
            using var staged = new Tensor(backend.Upload(data, dst.DType), Layout.Contiguous(dst.Shape));
            backend.Copy(staged, dst);
        }
    }
}

/// <summary>
/// The batch loops over the CPU kernels of kernels/Kiln.Kernels.Cpu/Decompositions.cs on row-major float64 spans,
/// shared by the CPU backend (on its arrays) and the host path of <see cref="ILinalgBackend"/> (on downloaded copies).
/// Each returns the index of the first failing matrix (-1 when all succeed); all but LuFactor stop there.
/// </summary>
internal static class LinalgBatches
{
    public static int Eigh(ReadOnlySpan<double> a, int batch, int n, Span<double> w, Span<double> v)
    {
        for (int b = 0; b < batch; b++)
            if (!Decompositions.Eigh(a.Slice(b * n * n, n * n), n, w.Slice(b * n, n), v.Slice(b * n * n, n * n)))
                return b;
        return -1;
    }

    public static int Cholesky(ReadOnlySpan<double> a, int batch, int n, Span<double> l, out int pivot, out double pivotValue)
    {
        pivot = -1;
        pivotValue = 0;
        for (int b = 0; b < batch; b++)
        {
            pivot = Decompositions.Cholesky(a.Slice(b * n * n, n * n), l.Slice(b * n * n, n * n), n, out pivotValue);
            if (pivot >= 0) return b;
        }
        return -1;
    }

    // Factors every matrix of lu in place; returns the first singular one and its column.
    public static int LuFactor(Span<double> lu, int batch, int n, Span<int> perm, out int column)
    {
        column = -1;
        int failed = -1;
        for (int b = 0; b < batch; b++)
        {
            int col = Decompositions.Lu(lu.Slice(b * n * n, n * n), perm.Slice(b * n, n), n);
            if (col >= 0 && failed < 0) { failed = b; column = col; }
        }
        return failed;
    }

    // Solves in place in x, which holds B on entry.
    public static void LuSolve(ReadOnlySpan<double> lu, ReadOnlySpan<int> perm, Span<double> x, int batch, int n, int k)
    {
        for (int b = 0; b < batch; b++)
            Decompositions.LuSolve(lu.Slice(b * n * n, n * n), perm.Slice(b * n, n), x.Slice(b * n * k, n * k), n, k);
    }

    // Solves in place in x, which holds B on entry; a zero diagonal would divide by zero, so it is reported instead.
    public static int CholeskySolve(ReadOnlySpan<double> l, Span<double> x, int batch, int n, int k, out int position)
    {
        position = -1;
        for (int b = 0; b < batch; b++)
        {
            var lb = l.Slice(b * n * n, n * n);
            for (int j = 0; j < n; j++)
                if (lb[j * n + j] == 0) { position = j; return b; }
            Decompositions.CholeskySolve(lb, x.Slice(b * n * k, n * k), n, k);
        }
        return -1;
    }

    public static void Qr(ReadOnlySpan<double> a, int batch, int m, int n, Span<double> q, Span<double> r)
    {
        int k = Math.Min(m, n);
        for (int b = 0; b < batch; b++)
            Decompositions.Qr(a.Slice(b * m * n, m * n), m, n, q.Slice(b * m * k, m * k), r.Slice(b * k * n, k * n));
    }

    public static int Svd(ReadOnlySpan<double> a, int batch, int m, int n, Span<double> u, Span<double> s, Span<double> vt)
    {
        int k = Math.Min(m, n);
        for (int b = 0; b < batch; b++)
            if (!Decompositions.Svd(a.Slice(b * m * n, m * n), m, n, u.Slice(b * m * k, m * k), s.Slice(b * k, k), vt.Slice(b * k * n, k * n)))
                return b;
        return -1;
    }
}
