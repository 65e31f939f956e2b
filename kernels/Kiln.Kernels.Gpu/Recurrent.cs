using ILGPU;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// The elementwise part of an LSTM or GRU step, fused: one thread per hidden unit of a row reads its gate
/// pre-activations and state and writes the new state, where composed ops would launch a dozen kernels and temporaries
/// per time step. References: <see cref="Reference.LstmGates"/>, <see cref="Reference.GruGates"/>.
/// </summary>
public static class Recurrent
{
    /// <summary>
    /// Unit i of contiguous a [rows, 4H] (gates i, f, g, o) and c [rows, H]: c' = sigmoid(a_f) c + sigmoid(a_i) tanh(a_g)
    /// and h' = sigmoid(a_o) tanh(c'), written to hc [2, rows, H] (h' then c') from <paramref name="hcOff"/>.
    /// </summary>
    public static void Lstm<T, TF>(Index1D i, ArrayView<T> a, int aOff, ArrayView<T> c, int cOff, ArrayView<T> hc, int hcOff, int rows, int hidden)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int r = i / hidden, at = aOff + r * 4 * hidden + (i - r * hidden);
        T ig = Elementwise.Sigmoid<T, TF>(a[at]), fg = Elementwise.Sigmoid<T, TF>(a[at + hidden]);
        T g = f.Tanh(a[at + 2 * hidden]), o = Elementwise.Sigmoid<T, TF>(a[at + 3 * hidden]);
        T c2 = f.Add(f.Mul(fg, c[cOff + i]), f.Mul(ig, g));
        hc[hcOff + i] = f.Mul(o, f.Tanh(c2));
        hc[hcOff + rows * hidden + i] = c2;
    }

    /// <summary>
    /// Unit i of contiguous input and hidden pre-activations x, m [rows, 3H] (gates r, z, n, biases included) and h
    /// [rows, H]: r = sigmoid(x_r + m_r), z = sigmoid(x_z + m_z), n = tanh(x_n + r m_n), y = n + z (h - n), written to
    /// y [rows, H] from <paramref name="yOff"/>.
    /// </summary>
    public static void Gru<T, TF>(Index1D i, ArrayView<T> x, int xOff, ArrayView<T> m, int mOff, ArrayView<T> h, int hOff, ArrayView<T> y, int yOff, int hidden)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int r = i / hidden, u = r * 3 * hidden + (i - r * hidden), xa = xOff + u, ma = mOff + u;
        T rg = Elementwise.Sigmoid<T, TF>(f.Add(x[xa], m[ma]));
        T z = Elementwise.Sigmoid<T, TF>(f.Add(x[xa + hidden], m[ma + hidden]));
        T n = f.Tanh(f.Add(x[xa + 2 * hidden], f.Mul(rg, m[ma + 2 * hidden])));
        y[yOff + i] = f.Add(n, f.Mul(z, f.Sub(h[hOff + i], n)));
    }
}

/// <summary>The typed kernels of <see cref="Recurrent"/> for one floating dtype, launched over rows * hidden units.</summary>
public static class RecurrentKernels<T, TF> where T : unmanaged where TF : struct, IFloat<T>
{
    /// <summary>recurrent.lstm: one LSTM step's gates and new (h, c).</summary>
    public static readonly Kernel<ArrayView<T>, int, ArrayView<T>, int, ArrayView<T>, int, int, int> Lstm =
        new($"recurrent.lstm.{Dt.Of<TF>()}", Recurrent.Lstm<T, TF>);
    /// <summary>recurrent.gru: one GRU step's gates and new h.</summary>
    public static readonly Kernel<ArrayView<T>, int, ArrayView<T>, int, ArrayView<T>, int, ArrayView<T>, int, int> Gru =
        new($"recurrent.gru.{Dt.Of<TF>()}", Recurrent.Gru<T, TF>);
}
