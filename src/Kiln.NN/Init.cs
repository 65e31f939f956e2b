namespace Kiln.NN;

/// <summary>How Kaiming initialization preserves variance: of activations (fan in) or of gradients (fan out).</summary>
public enum FanMode
{
    /// <summary>Preserve the forward pass's variance (the default).</summary>
    FanIn,
    /// <summary>Preserve the backward pass's variance.</summary>
    FanOut,
}

/// <summary>
/// Weight initializers (PyTorch's <c>torch.nn.init</c>): each fills a tensor in place from the given generator and
/// returns it. Fans of a weight [out, in, k...] are fan_in = in * prod(k) and fan_out = out * prod(k).
/// </summary>
public static class Init
{
    /// <summary>(fan_in, fan_out) of a weight of at least two dimensions.</summary>
    /// <exception cref="ArgumentException">The tensor has fewer than two dimensions.</exception>
    public static (int FanIn, int FanOut) Fans(Shape shape)
    {
        if (shape.Rank < 2) throw new ArgumentException($"init: fan in and fan out need a weight of at least 2 dimensions, got shape {shape}", nameof(shape));
        int receptive = 1;
        for (int i = 2; i < shape.Rank; i++) receptive *= shape[i];
        return (shape[1] * receptive, shape[0] * receptive);
    }

    /// <summary>The recommended gain for a nonlinearity: linear/sigmoid 1, tanh 5/3, relu sqrt 2, leaky_relu sqrt(2 / (1 + a^2)), selu 3/4.</summary>
    /// <exception cref="ArgumentException">Unknown nonlinearity name.</exception>
    public static double Gain(string nonlinearity, double negativeSlope = 0.01) => nonlinearity switch
    {
        "linear" or "sigmoid" or "identity" => 1.0,
        "tanh" => 5.0 / 3.0,
        "relu" => Math.Sqrt(2.0),
        "leaky_relu" => Math.Sqrt(2.0 / (1 + negativeSlope * negativeSlope)),
        "selu" => 0.75,
        _ => throw new ArgumentException($"init: unknown nonlinearity '{nonlinearity}' (known: linear, sigmoid, tanh, relu, leaky_relu, selu)", nameof(nonlinearity)),
    };

    /// <summary>Fills with U(low, high).</summary>
    public static Tensor Uniform_(Tensor t, double low, double high, Generator? generator = null) =>
        Fill(t, Tensor.Rand(t.Shape, generator, low, high, t.DType, t.Device));

    /// <summary>Fills with N(mean, std^2).</summary>
    public static Tensor Normal_(Tensor t, double mean = 0, double std = 1, Generator? generator = null) =>
        Fill(t, Tensor.Randn(t.Shape, generator, mean, std, t.DType, t.Device));

    /// <summary>Fills with a constant.</summary>
    public static Tensor Constant_(Tensor t, double value)
    {
        using (Autograd.NoGrad()) t.Fill_(value);
        return t;
    }

    /// <summary>Glorot/Xavier uniform: U(-a, a) with a = gain sqrt(6 / (fan_in + fan_out)).</summary>
    public static Tensor XavierUniform_(Tensor t, double gain = 1, Generator? generator = null)
    {
        var (fi, fo) = Fans(t.Shape);
        double a = gain * Math.Sqrt(6.0 / (fi + fo));
        return Uniform_(t, -a, a, generator);
    }

    /// <summary>Glorot/Xavier normal: N(0, std^2) with std = gain sqrt(2 / (fan_in + fan_out)).</summary>
    public static Tensor XavierNormal_(Tensor t, double gain = 1, Generator? generator = null)
    {
        var (fi, fo) = Fans(t.Shape);
        return Normal_(t, 0, gain * Math.Sqrt(2.0 / (fi + fo)), generator);
    }

    /// <summary>He/Kaiming uniform: U(-b, b) with b = gain sqrt(3 / fan), gain from <see cref="Gain"/>.</summary>
    public static Tensor KaimingUniform_(Tensor t, double a = 0, FanMode mode = FanMode.FanIn, string nonlinearity = "leaky_relu", Generator? generator = null)
    {
        double std = KaimingStd(t.Shape, a, mode, nonlinearity);
        return Uniform_(t, -Math.Sqrt(3.0) * std, Math.Sqrt(3.0) * std, generator);
    }

    /// <summary>He/Kaiming normal: N(0, std^2) with std = gain / sqrt(fan), gain from <see cref="Gain"/>.</summary>
    public static Tensor KaimingNormal_(Tensor t, double a = 0, FanMode mode = FanMode.FanIn, string nonlinearity = "leaky_relu", Generator? generator = null) =>
        Normal_(t, 0, KaimingStd(t.Shape, a, mode, nonlinearity), generator);

    static double KaimingStd(Shape shape, double a, FanMode mode, string nonlinearity)
    {
        var (fi, fo) = Fans(shape);
        int fan = mode == FanMode.FanIn ? fi : fo;
        if (fan == 0) throw new ArgumentException($"init: kaiming needs a non-empty fan, got shape {shape}", nameof(shape));
        return Gain(nonlinearity, a) / Math.Sqrt(fan);
    }

    /// <summary>
    /// A (semi-)orthogonal matrix times <paramref name="gain"/>: the weight viewed as [rows, cols] = [shape[0], rest]
    /// has orthonormal rows (rows &lt;= cols) or columns (rows &gt; cols). It is the Q of a QR factorization of a Gaussian
    /// matrix, with signs fixed by R's diagonal so the result is uniformly (Haar) distributed.
    /// </summary>
    /// <exception cref="ArgumentException">The tensor has fewer than two dimensions.</exception>
    public static Tensor Orthogonal_(Tensor t, double gain = 1, Generator? generator = null)
    {
        if (t.Rank < 2) throw new ArgumentException($"init: orthogonal needs at least 2 dimensions, got shape {t.Shape}", nameof(t));
        int rows = t.Shape[0], cols = t.Numel / Math.Max(rows, 1);
        if (t.Numel == 0) return t;
        // Factor the tall orientation: a [n, k] Gaussian with n >= k, orthonormalized column by column.
        bool flip = rows < cols;
        int n = flip ? cols : rows, k = flip ? rows : cols;
        var g = Tensor.Randn(new Shape(n, k), generator, dtype: DType.Float64).ToArray<double>();
        var q = HouseholderQ(g, n, k);
        var w = new double[rows * cols];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                w[i * cols + j] = gain * (flip ? q[j * k + i] : q[i * k + j]);
        return Fill(t, Tensor.FromArray(w, t.Shape).To(t.DType).To(t.Device));
    }

    // Thin Q [n, k] of A [n, k] (row-major, n >= k) by Householder reflections, with column j multiplied by sign(R_jj).
    static double[] HouseholderQ(double[] a, int n, int k)
    {
        var vs = new double[k][];
        var rdiag = new double[k];
        for (int j = 0; j < k; j++)
        {
            double norm = 0;
            for (int i = j; i < n; i++) norm += a[i * k + j] * a[i * k + j];
            norm = Math.Sqrt(norm);
            double alpha = a[j * k + j] > 0 ? -norm : norm;
            var v = new double[n];
            for (int i = j; i < n; i++) v[i] = a[i * k + j];
            v[j] -= alpha;
            double vn = 0;
            for (int i = j; i < n; i++) vn += v[i] * v[i];
            if (vn > 0)
                for (int c = j; c < k; c++)
                {
                    double dot = 0;
                    for (int i = j; i < n; i++) dot += v[i] * a[i * k + c];
                    double f = 2 * dot / vn;
                    for (int i = j; i < n; i++) a[i * k + c] -= f * v[i];
                }
            vs[j] = v;
            rdiag[j] = a[j * k + j];
        }
        // Q = H_0 H_1 ... H_{k-1} applied to the first k columns of the identity.
        var q = new double[n * k];
        for (int j = 0; j < k; j++) q[j * k + j] = 1;
        for (int j = k - 1; j >= 0; j--)
        {
            var v = vs[j];
            double vn = 0;
            for (int i = j; i < n; i++) vn += v[i] * v[i];
            if (vn == 0) continue;
            for (int c = 0; c < k; c++)
            {
                double dot = 0;
                for (int i = j; i < n; i++) dot += v[i] * q[i * k + c];
                double f = 2 * dot / vn;
                for (int i = j; i < n; i++) q[i * k + c] -= f * v[i];
            }
        }
        for (int c = 0; c < k; c++)
            if (rdiag[c] < 0)
                for (int i = 0; i < n; i++) q[i * k + c] = -q[i * k + c];
        return q;
    }

    static Tensor Fill(Tensor t, Tensor values)
    {
        using (Autograd.NoGrad()) t.Copy_(values);
        values.Dispose();
        return t;
    }
}
