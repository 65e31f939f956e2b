namespace Kiln.Kernels;

public static partial class Reference
{
    /// <summary>
    /// Rotary position embedding in the rotate-half convention: rows of x [n, t, d] (row-major, d even) times the table
    /// row of their position, y = x cos + rotate_half(x) sin with rotate_half(x) = (-x[h..d), x[0..h)), h = d / 2.
    /// </summary>
    public static double[] Rope(ReadOnlySpan<double> x, int t, int d, ReadOnlySpan<double> cos, ReadOnlySpan<double> sin)
    {
        var y = new double[x.Length];
        int h = d / 2;
        for (int r = 0; d > 0 && r < x.Length / d; r++)
        {
            int row = r * d, tab = r % t * d;
            for (int i = 0; i < d; i++)
            {
                double rot = i < h ? -x[row + i + h] : x[row + i - h];
                y[row + i] = x[row + i] * cos[tab + i] + rot * sin[tab + i];
            }
        }
        return y;
    }
}
