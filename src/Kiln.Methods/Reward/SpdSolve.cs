namespace Kiln.Methods.Reward;

/// <summary>Solves A X = B for symmetric positive-definite A: the one place the readout needs a factorization, so moving
/// to the core's Cholesky is a one-line change of <see cref="SpdSolve.Default"/>.</summary>
internal interface ISpdSolver
{
    /// <summary>X = A⁻¹ B for A [n, n] symmetric positive-definite and B [n, m] or [n]; float64, on A's device.</summary>
    Tensor Solve(Tensor a, Tensor b);
}

internal static class SpdSolve
{
    public static ISpdSolver Default { get; } = new Cholesky64();
}

/// <summary>A plain row-oriented Cholesky factorization and two triangular solves in float64 on the host.</summary>
internal sealed class Cholesky64 : ISpdSolver
{
    public Tensor Solve(Tensor a, Tensor b)
    {
        if (a.Rank != 2 || a.Shape[0] != a.Shape[1]) throw new ShapeMismatchException("spd_solve", nameof(a), $"A must be square, got {a.Shape}");
        if (b.Rank is not (1 or 2) || b.Shape[0] != a.Shape[0])
            throw new ShapeMismatchException("spd_solve", nameof(b), $"B must be [{a.Shape[0]}] or [{a.Shape[0]}, m], got {b.Shape}");
        int n = a.Shape[0], m = b.Rank == 1 ? 1 : b.Shape[1];
        var l = Factor(a.ToDoubleArray(), n);
        var x = b.ToDoubleArray();
        for (int c = 0; c < m; c++)
        {
            // L y = b, then Lᵀ x = y, column by column.
            for (int i = 0; i < n; i++)
            {
                double s = x[i * m + c];
                for (int k = 0; k < i; k++) s -= l[i * n + k] * x[k * m + c];
                x[i * m + c] = s / l[i * n + i];
            }
            for (int i = n - 1; i >= 0; i--)
            {
                double s = x[i * m + c];
                for (int k = i + 1; k < n; k++) s -= l[k * n + i] * x[k * m + c];
                x[i * m + c] = s / l[i * n + i];
            }
        }
        return Tensor.FromArray(x, b.Shape).To(a.Device);
    }

    /// <summary>The lower factor L (row-major) with A = L Lᵀ.</summary>
    /// <exception cref="ArgumentException">A is not positive-definite (a pivot is not positive) or not finite.</exception>
    internal static double[] Factor(double[] a, int n)
    {
        var l = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j <= i; j++)
            {
                double s = a[i * n + j];
                for (int k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
                if (i == j)
                {
                    if (!(s > 0)) throw new ArgumentException($"spd_solve: A is not positive-definite (pivot {i} is {s:G4})", nameof(a));
                    l[i * n + i] = Math.Sqrt(s);
                }
                else l[i * n + j] = s / l[j * n + j];
            }
        }
        return l;
    }
}
