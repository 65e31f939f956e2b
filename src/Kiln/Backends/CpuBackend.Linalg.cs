namespace Kiln.Backends;

// The decompositions on the tensors' own arrays: the same kernels as ILinalgBackend's host path, without its copies.
public sealed partial class CpuBackend
{
    static Span<T> Elems<T>(Tensor t, int length) => A<T>(t).AsSpan(O(t), length);

    /// <inheritdoc/>
    public int Eigh(Tensor a, int batch, int n, Tensor w, Tensor v) =>
        LinalgBatches.Eigh(Elems<double>(a, batch * n * n), batch, n, Elems<double>(w, batch * n), Elems<double>(v, batch * n * n));

    /// <inheritdoc/>
    public int Cholesky(Tensor a, int batch, int n, Tensor l, out int pivot, out double pivotValue) =>
        LinalgBatches.Cholesky(Elems<double>(a, batch * n * n), batch, n, Elems<double>(l, batch * n * n), out pivot, out pivotValue);

    /// <inheritdoc/>
    public int LuFactor(Tensor a, int batch, int n, Tensor lu, Tensor perm, out int column)
    {
        Copy(a, lu);
        return LinalgBatches.LuFactor(Elems<double>(lu, batch * n * n), batch, n, Elems<int>(perm, batch * n), out column);
    }

    /// <inheritdoc/>
    public void LuSolve(Tensor lu, Tensor perm, Tensor b, int batch, int n, int k, Tensor x)
    {
        Copy(b, x);
        LinalgBatches.LuSolve(Elems<double>(lu, batch * n * n), Elems<int>(perm, batch * n), Elems<double>(x, batch * n * k), batch, n, k);
    }

    /// <inheritdoc/>
    public int CholeskySolve(Tensor l, Tensor b, int batch, int n, int k, Tensor x, out int position)
    {
        Copy(b, x);
        return LinalgBatches.CholeskySolve(Elems<double>(l, batch * n * n), Elems<double>(x, batch * n * k), batch, n, k, out position);
    }

    /// <inheritdoc/>
    public void Qr(Tensor a, int batch, int m, int n, Tensor q, Tensor r)
    {
        int k = Math.Min(m, n);
        LinalgBatches.Qr(Elems<double>(a, batch * m * n), batch, m, n, Elems<double>(q, batch * m * k), Elems<double>(r, batch * k * n));
    }

    /// <inheritdoc/>
    public int Svd(Tensor a, int batch, int m, int n, Tensor u, Tensor s, Tensor vt)
    {
        int k = Math.Min(m, n);
        return LinalgBatches.Svd(Elems<double>(a, batch * m * n), batch, m, n, Elems<double>(u, batch * m * k), Elems<double>(s, batch * k), Elems<double>(vt, batch * k * n));
    }
}
