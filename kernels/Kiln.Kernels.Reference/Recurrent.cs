namespace Kiln.Kernels;

public static partial class Reference
{
    static double Logistic(double v) => 1 / (1 + Math.Exp(-v));

    /// <summary>One LSTM row: pre-activations a [4H] (gates i, f, g, o) and c [H] give (h', c') with c' = f c + i g, h' = o tanh(c').</summary>
    public static (double[] H, double[] C) LstmGates(ReadOnlySpan<double> a, ReadOnlySpan<double> c)
    {
        int n = c.Length;
        var h2 = new double[n]; var c2 = new double[n];
        for (int u = 0; u < n; u++)
        {
            c2[u] = Logistic(a[n + u]) * c[u] + Logistic(a[u]) * Math.Tanh(a[2 * n + u]);
            h2[u] = Logistic(a[3 * n + u]) * Math.Tanh(c2[u]);
        }
        return (h2, c2);
    }

    /// <summary>One GRU row: input and hidden pre-activations x, m [3H] (gates r, z, n) and h [H] give h' = (1 - z) n + z h
    /// with r = sigmoid(x_r + m_r), z = sigmoid(x_z + m_z), n = tanh(x_n + r m_n).</summary>
    public static double[] GruGates(ReadOnlySpan<double> x, ReadOnlySpan<double> m, ReadOnlySpan<double> h)
    {
        int n = h.Length;
        var y = new double[n];
        for (int u = 0; u < n; u++)
        {
            double r = Logistic(x[u] + m[u]), z = Logistic(x[n + u] + m[n + u]);
            double nn = Math.Tanh(x[2 * n + u] + r * m[2 * n + u]);
            y[u] = (1 - z) * nn + z * h[u];
        }
        return y;
    }
}
