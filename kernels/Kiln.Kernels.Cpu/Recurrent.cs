using System.Numerics;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// The elementwise part of an LSTM or GRU step, fused: one pass over each row reads the gate pre-activations and the
/// state and writes the new state, where composed tensor ops would make a dozen passes and temporaries. The matrix
/// products that produce the pre-activations are left to GEMM. References: <see cref="Reference.LstmGates"/>,
/// <see cref="Reference.GruGates"/>.
/// </summary>
public static class RecurrentGates
{
    /// <summary>
    /// LSTM over contiguous [rows, 4H] pre-activations a (gates i, f, g, o) and c [rows, H]: c' = sigmoid(a_f) c +
    /// sigmoid(a_i) tanh(a_g), h' = sigmoid(a_o) tanh(c'); writes <paramref name="hc"/> [2, rows, H], h' then c', so each
    /// is a contiguous block for the next step's matrix product, from <paramref name="hcOff"/>.
    /// </summary>
    public static void Lstm<T>(T[] a, int aOff, T[] c, int cOff, int rows, int hidden, T[] hc, int hcOff) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Strided.Parallel(rows, (long)rows * hidden * 40, (s, e) =>
        {
            for (int r = s; r < e; r++)
            {
                int ar = aOff + r * 4 * hidden, cr = cOff + r * hidden, yr = hcOff + r * hidden, cAt = rows * hidden;
                for (int u = 0; u < hidden; u++)
                {
                    T i = Sigmoid(a[ar + u]), f = Sigmoid(a[ar + hidden + u]), g = T.Tanh(a[ar + 2 * hidden + u]), o = Sigmoid(a[ar + 3 * hidden + u]);
                    T c2 = f * c[cr + u] + i * g;
                    hc[yr + u] = o * T.Tanh(c2);
                    hc[cAt + yr + u] = c2;
                }
            }
        });
    }

    /// <summary>
    /// GRU over contiguous [rows, 3H] input pre-activations x and hidden pre-activations m (gates r, z, n, biases
    /// included) and h [rows, H]: r = sigmoid(x_r + m_r), z = sigmoid(x_z + m_z), n = tanh(x_n + r m_n),
    /// h' = (1 - z) n + z h, written to <paramref name="y"/> [rows, H] from <paramref name="yOff"/>.
    /// </summary>
    public static void Gru<T>(T[] x, int xOff, T[] m, int mOff, T[] h, int hOff, int rows, int hidden, T[] y, int yOff) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Strided.Parallel(rows, (long)rows * hidden * 30, (s, e) =>
        {
            for (int r = s; r < e; r++)
            {
                int xr = xOff + r * 3 * hidden, mr = mOff + r * 3 * hidden, hr = hOff + r * hidden;
                for (int u = 0; u < hidden; u++)
                {
                    T rg = Sigmoid(x[xr + u] + m[mr + u]);
                    T z = Sigmoid(x[xr + hidden + u] + m[mr + hidden + u]);
                    T n = T.Tanh(x[xr + 2 * hidden + u] + rg * m[mr + 2 * hidden + u]);
                    y[yOff + r * hidden + u] = n + z * (h[hr + u] - n);
                }
            }
        });
    }

    // The form that cannot overflow: e^x / (1 + e^x) for negative x.
    static T Sigmoid<T>(T v) where T : IFloatingPointIeee754<T> =>
        v >= T.Zero ? T.One / (T.One + T.Exp(-v)) : T.Exp(v) / (T.One + T.Exp(v));
}
