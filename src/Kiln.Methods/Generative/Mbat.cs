namespace Kiln.Methods.Generative;

/// <summary>
/// MBAT with orthogonal matrices (Gallant): a vector symbolic architecture whose binding multiplies a d-vector by a
/// random orthogonal d × d matrix M, bind(M, v) = M v, and unbinds exactly with the transpose, unbind(M, w) = Mᵀ w.
/// Orthogonal binding is an isometry (norms, dot products and cosines survive it), and vectors bound by two independent
/// random matrices are nearly orthogonal (their cosine concentrates at 0 with variance ≈ 1/d), so a bundle (sum) of
/// bound terms can be queried by unbinding and comparing cosines.
/// </summary>
public static class Mbat
{
    /// <summary>A Haar-random d × d orthogonal matrix: Q of the QR decomposition of a standard Gaussian matrix (R's diagonal non-negative).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="dim"/> is below 1.</exception>
    public static Tensor RandomOrthogonal(int dim, Generator generator, DType dtype = DType.Float64)
    {
        ArgumentNullException.ThrowIfNull(generator);
        if (dim < 1) throw new ArgumentOutOfRangeException(nameof(dim), dim, "mbat_random_orthogonal: dim must be at least 1");
        return Tensor.Randn(new Shape(dim, dim), generator, dtype: DType.Float64).Qr().Q.To(dtype);
    }

    /// <summary>Binds each row of <paramref name="vectors"/> [..., d] with the d × d <paramref name="matrix"/>: M v.</summary>
    /// <exception cref="ShapeMismatchException">The matrix is not square or its size differs from the vectors' last axis.</exception>
    public static Tensor Bind(Tensor matrix, Tensor vectors)
    {
        Check("mbat_bind", matrix, vectors, nameof(vectors));
        return vectors.MatMul(matrix.T);
    }

    /// <summary>Unbinds each row of <paramref name="bound"/> [..., d] with the transpose of an orthogonal <paramref name="matrix"/>: Mᵀ w, the exact inverse of <see cref="Bind"/>.</summary>
    /// <exception cref="ShapeMismatchException">The matrix is not square or its size differs from the vectors' last axis.</exception>
    public static Tensor Unbind(Tensor matrix, Tensor bound)
    {
        Check("mbat_unbind", matrix, bound, nameof(bound));
        return bound.MatMul(matrix);
    }

    /// <summary>Cosine similarity of <paramref name="a"/> and <paramref name="b"/> along their last axis (broadcast).</summary>
    public static Tensor Cosine(Tensor a, Tensor b) =>
        (a * b).Sum([-1]) / (a.Norm(2, [-1]) * b.Norm(2, [-1]));

    static void Check(string op, Tensor matrix, Tensor vectors, string name)
    {
        if (matrix.Rank != 2 || matrix.Shape[0] != matrix.Shape[1]) throw new ShapeMismatchException(op, nameof(matrix), $"matrix must be square [d, d], got {matrix.Shape}");
        if (vectors.Rank < 1 || vectors.Shape[^1] != matrix.Shape[0])
            throw new ShapeMismatchException(op, name, $"{name} must be [..., {matrix.Shape[0]}] for a {matrix.Shape} matrix, got {vectors.Shape}");
    }
}
