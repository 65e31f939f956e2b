namespace Kiln.NN;

/// <summary>
/// HiPPO operators ("How to Train Your HiPPO", Gu et al. 2022): the (A, B) whose linear ODE c'(t) = A c(t) + B f(t)
/// keeps c(t) the coefficients of the input's history projected onto orthonormal Legendre polynomials, their bilinear
/// discretisation, the Legendre basis that reconstructs the history from c, and the convolution kernel of a dense
/// discretised system.
/// </summary>
public static class Hippo
{
    /// <summary>
    /// HiPPO-LegS (scaled Legendre, measure uniform on [0, t]; the ODE is c' = (1/t)(A c + B f)):
    /// A[n, k] = -sqrt(2n + 1) sqrt(2k + 1) for n &gt; k, -(n + 1) for n = k, 0 above; B[n] = sqrt(2n + 1).
    /// </summary>
    /// <param name="n">State size, positive.</param>
    /// <param name="dtype">Result dtype.</param>
    /// <param name="device">Result device (CPU when null).</param>
    /// <returns>A [n, n] and B [n].</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="n"/> is not positive.</exception>
    public static (Tensor A, Tensor B) LegS(int n, DType dtype = DType.Float64, Device? device = null) =>
        Build(n, dtype, device, "legs", (i, k) => i > k ? -Math.Sqrt((2.0 * i + 1) * (2.0 * k + 1)) : i == k ? -(i + 1.0) : 0, i => Math.Sqrt(2.0 * i + 1));

    /// <summary>
    /// HiPPO-LegT (translated Legendre, measure uniform on the window [t - theta, t]; time-invariant):
    /// A[n, k] = -(1/theta) sqrt(2n + 1) sqrt(2k + 1) times 1 for n &gt;= k and (-1)^(n - k) for n &lt; k; B[n] = sqrt(2n + 1) / theta.
    /// </summary>
    /// <param name="n">State size, positive.</param>
    /// <param name="theta">Window length, positive and finite.</param>
    /// <param name="dtype">Result dtype.</param>
    /// <param name="device">Result device (CPU when null).</param>
    /// <returns>A [n, n] and B [n].</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="n"/> or <paramref name="theta"/> is not positive.</exception>
    public static (Tensor A, Tensor B) LegT(int n, double theta = 1, DType dtype = DType.Float64, Device? device = null)
    {
        if (!(theta > 0) || double.IsInfinity(theta)) throw new ArgumentOutOfRangeException(nameof(theta), theta, "hippo_legt: theta must be positive and finite");
        return Build(n, dtype, device, "legt", (i, k) => -Math.Sqrt((2.0 * i + 1) * (2.0 * k + 1)) * (i >= k || (k - i) % 2 == 0 ? 1 : -1) / theta,
            i => Math.Sqrt(2.0 * i + 1) / theta);
    }

    static (Tensor A, Tensor B) Build(int n, DType dtype, Device? device, string op, Func<int, int, double> a, Func<int, double> b)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), n, $"hippo_{op}: the state size must be positive");
        var am = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int k = 0; k < n; k++) am[i * n + k] = a(i, k);
        var dev = device ?? Device.Cpu;
        return (Tensor.FromArray(am, new Shape(n, n)).To(dtype).To(dev), Tensor.FromArray(Enumerable.Range(0, n).Select(b).ToArray()).To(dtype).To(dev));
    }

    /// <summary>
    /// Bilinear (Tustin) discretisation of c' = A c + B f with step <paramref name="dt"/>:
    /// Ā = (I - dt/2 A)^-1 (I + dt/2 A), B̄ = (I - dt/2 A)^-1 dt B, so c_k = Ā c_{k-1} + B̄ f_k.
    /// </summary>
    /// <param name="a">A [n, n].</param>
    /// <param name="b">B [n].</param>
    /// <param name="dt">Step, positive and finite.</param>
    /// <returns>Ā [n, n] and B̄ [n].</returns>
    /// <exception cref="ShapeMismatchException">A is not square or B is not [n].</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="dt"/> is not positive and finite.</exception>
    public static (Tensor A, Tensor B) Bilinear(Tensor a, Tensor b, double dt)
    {
        ArgumentNullException.ThrowIfNull(a); ArgumentNullException.ThrowIfNull(b);
        if (a.Rank != 2 || a.Shape[0] != a.Shape[1]) throw new ShapeMismatchException("hippo_bilinear", nameof(a), $"A must be square [n, n], got {a.Shape}");
        if (b.Rank != 1 || b.Shape[0] != a.Shape[0]) throw new ShapeMismatchException("hippo_bilinear", nameof(b), $"B must be [{a.Shape[0]}] for A {a.Shape}, got {b.Shape}");
        if (!(dt > 0) || double.IsInfinity(dt)) throw new ArgumentOutOfRangeException(nameof(dt), dt, "hippo_bilinear: dt must be positive and finite");
        var eye = Tensor.Eye(a.Shape[0], dtype: a.DType, device: a.Device);
        var inv = (eye - a * (dt / 2)).Inverse();
        return (inv.MatMul(eye + a * (dt / 2)), inv.MatMul(b.Unsqueeze(1)).Squeeze(1) * dt);
    }

    /// <summary>
    /// The orthonormal Legendre basis sqrt(2k + 1) P_k(x), k = 0..n-1, at each element of <paramref name="x"/> (in
    /// [-1, 1]): the history is f ≈ sum_k c_k sqrt(2k + 1) P_k(x) with x = 2s/t - 1 for LegS and 2(s - t)/theta + 1 for LegT.
    /// </summary>
    /// <param name="n">Basis size, positive.</param>
    /// <param name="x">Points, any shape, floating.</param>
    /// <returns>[..., n].</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="n"/> is not positive.</exception>
    public static Tensor LegendreBasis(int n, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), n, "legendre_basis: n must be positive");
        var p = new List<Tensor> { x.OnesLike(), x };
        for (int k = 1; k + 1 < n; k++) p.Add((x * p[k] * (2 * k + 1) - p[k - 1] * k) / (k + 1));
        return Tensor.Stack([.. p.Take(n).Select((t, k) => t * Math.Sqrt(2 * k + 1))], -1);
    }

    /// <summary>
    /// The convolution kernel of the discrete system c_k = Ā c_{k-1} + B̄ u_k, y_k = C c_k: K[l] = C Ā^l B̄ for
    /// l &lt; <paramref name="length"/>, so y = <see cref="Tensor.CausalConv1d"/>(u, K).
    /// </summary>
    /// <param name="a">Ā [n, n].</param>
    /// <param name="b">B̄ [n].</param>
    /// <param name="c">C [n].</param>
    /// <param name="length">Kernel length, at least 0.</param>
    /// <returns>[length].</returns>
    /// <exception cref="ShapeMismatchException">The shapes do not fit.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative.</exception>
    public static Tensor Kernel(Tensor a, Tensor b, Tensor c, int length)
    {
        ArgumentNullException.ThrowIfNull(a); ArgumentNullException.ThrowIfNull(b); ArgumentNullException.ThrowIfNull(c);
        if (a.Rank != 2 || a.Shape[0] != a.Shape[1]) throw new ShapeMismatchException("hippo_kernel", nameof(a), $"Ā must be square [n, n], got {a.Shape}");
        if (b.Rank != 1 || b.Shape[0] != a.Shape[0]) throw new ShapeMismatchException("hippo_kernel", nameof(b), $"B̄ must be [{a.Shape[0]}], got {b.Shape}");
        if (c.Rank != 1 || c.Shape[0] != a.Shape[0]) throw new ShapeMismatchException("hippo_kernel", nameof(c), $"C must be [{a.Shape[0]}], got {c.Shape}");
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length), length, "hippo_kernel: length must be at least 0");
        if (length == 0) return Tensor.Zeros(new Shape(0), a.DType, a.Device);
        // Krylov vectors Ā^l B̄ by doubling: [V, Ā^m V] covers 2m powers in log2(length) products.
        var v = b.Unsqueeze(0);
        var power = a;
        while (v.Shape[0] < length)
        {
            v = Tensor.Concat([v, v.MatMul(power.T)], 0);
            power = power.MatMul(power);
        }
        return v.Narrow(0, 0, length).MatMul(c);
    }
}

/// <summary>How a diagonal state-space layer turns its continuous (A, B, dt) into a discrete recurrence.</summary>
public enum SsmDiscretization
{
    /// <summary>Zero-order hold: Ā = exp(dt A), B̄ = (Ā - 1) A^-1 B.</summary>
    Zoh,
    /// <summary>Bilinear: Ā = (1 + dt A / 2) / (1 - dt A / 2), B̄ = dt B / (1 - dt A / 2).</summary>
    Bilinear,
}

/// <summary>The initial diagonal of a diagonal state-space layer (S4D, Gu et al. 2022).</summary>
public enum S4DInit
{
    /// <summary>S4D-Lin: A_n = -1/2 + i pi n, the approximation of the diagonalised HiPPO-LegS.</summary>
    Lin,
    /// <summary>S4D-Real: A_n = -(n + 1), the diagonal of HiPPO-LegS.</summary>
    Real,
}

/// <summary>
/// A diagonal state-space layer (S4D/DSS): per channel h, N complex modes x_n' = A_n x_n + B_n u with B = 1,
/// discretised with a learned step dt_h, output y = 2 Re(sum_n C_n x_n) + D u (the modes stand for conjugate pairs).
/// Two equal forms: <see cref="Forward"/> convolves with the kernel K[h, l] = 2 Re(sum_n C_n B̄_n Ā_n^l)
/// (<see cref="Tensor.CausalConv1d"/>), <see cref="Recurrent"/> steps the recurrence x_k = Ā x_{k-1} + B̄ u_k.
/// Parameters: log_dt [H], log_a_real [H, N] (Re A = -exp), a_imag [H, N], c_real and c_imag [H, N], d [H].
/// </summary>
public sealed class S4D : Module<Tensor, Tensor>
{
    /// <summary>Creates the layer, log dt uniform in [log dtMin, log dtMax] and C complex normal with unit variance.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive, or the dt range is not 0 &lt; dtMin &lt;= dtMax.</exception>
    public S4D(int channels, int stateSize = 32, S4DInit init = S4DInit.Lin, SsmDiscretization discretization = SsmDiscretization.Zoh,
        double dtMin = 1e-3, double dtMax = 1e-1, Generator? generator = null, DType dtype = DType.Float32, Device? device = null)
    {
        if (channels <= 0) throw new ArgumentOutOfRangeException(nameof(channels), channels, "s4d: channels must be positive");
        if (stateSize <= 0) throw new ArgumentOutOfRangeException(nameof(stateSize), stateSize, "s4d: stateSize must be positive");
        if (!(dtMin > 0) || !(dtMax >= dtMin) || double.IsInfinity(dtMax))
            throw new ArgumentOutOfRangeException(nameof(dtMin), $"s4d: need 0 < dtMin <= dtMax < inf, got dtMin {dtMin}, dtMax {dtMax}");
        Channels = channels; StateSize = stateSize; Discretization = discretization;
        var dev = device ?? Device.Cpu;
        Tensor Grid(Func<int, double> f) => Tensor.FromArray(Enumerable.Range(0, channels * stateSize).Select(i => f(i % stateSize)).ToArray(), new Shape(channels, stateSize)).To(dtype).To(dev);
        LogDt = RegisterParameter("log_dt", new Parameter(Init.Uniform_(Tensor.Empty([channels], dtype, dev), Math.Log(dtMin), Math.Log(dtMax), generator)));
        LogAReal = RegisterParameter("log_a_real", new Parameter(Grid(n => Math.Log(init == S4DInit.Lin ? 0.5 : n + 1))));
        AImag = RegisterParameter("a_imag", new Parameter(Grid(n => init == S4DInit.Lin ? Math.PI * n : 0)));
        CReal = RegisterParameter("c_real", new Parameter(Init.Normal_(Tensor.Empty([channels, stateSize], dtype, dev), 0, Math.Sqrt(0.5), generator)));
        CImag = RegisterParameter("c_imag", new Parameter(Init.Normal_(Tensor.Empty([channels, stateSize], dtype, dev), 0, Math.Sqrt(0.5), generator)));
        D = RegisterParameter("d", new Parameter(Init.Normal_(Tensor.Empty([channels], dtype, dev), 0, 1, generator)));
    }

    /// <summary>H, the channels (the input's last dimension).</summary>
    public int Channels { get; }
    /// <summary>N, complex modes per channel.</summary>
    public int StateSize { get; }
    /// <summary>How (A, B, dt) are discretised.</summary>
    public SsmDiscretization Discretization { get; }
    /// <summary>log dt [H].</summary>
    public Parameter LogDt { get; }
    /// <summary>log(-Re A) [H, N].</summary>
    public Parameter LogAReal { get; }
    /// <summary>Im A [H, N].</summary>
    public Parameter AImag { get; }
    /// <summary>Re C [H, N].</summary>
    public Parameter CReal { get; }
    /// <summary>Im C [H, N].</summary>
    public Parameter CImag { get; }
    /// <summary>The skip D [H].</summary>
    public Parameter D { get; }

    // The discrete system in log-polar form: Ā = exp(rho + i theta), and B̄ (re, im), each [H, N].
    (Tensor Rho, Tensor Theta, Tensor BRe, Tensor BIm) Discrete()
    {
        var dt = LogDt.Exp().Unsqueeze(1);
        var (ar, ai) = (-LogAReal.Exp(), AImag * 1.0);
        var (zr, zi) = (ar * dt, ai * dt);
        if (Discretization == SsmDiscretization.Zoh)
        {
            // B̄ = (exp(dt A) - 1) / A
            var (er, ei) = (zr.Exp() * zi.Cos() - 1, zr.Exp() * zi.Sin());
            var den = ar * ar + ai * ai;
            return (zr, zi, (er * ar + ei * ai) / den, (ei * ar - er * ai) / den);
        }
        // Ā = (1 + z/2) / (1 - z/2), B̄ = dt / (1 - z/2)
        var (pr, pi, qr, qi) = (zr * 0.5 + 1, zi * 0.5, 1 - zr * 0.5, -zi * 0.5);
        var q2 = qr * qr + qi * qi;
        var (abr, abi) = ((pr * qr + pi * qi) / q2, (pi * qr - pr * qi) / q2);
        return (0.5 * (abr * abr + abi * abi).Log(), Tensor.Atan2(abi, abr), dt * qr / q2, -dt * qi / q2);
    }

    /// <summary>The convolution kernel K [H, length], K[h, l] = 2 Re(sum_n C_n B̄_n Ā_n^l).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative.</exception>
    public Tensor Kernel(int length)
    {
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length), length, "s4d: the kernel length must be at least 0");
        var (rho, theta, br, bi) = Discrete();
        var (wr, wi) = (CReal * br - CImag * bi, CReal * bi + CImag * br);
        var l = Tensor.Arange(0, length, 1, LogDt.DType, LogDt.Device);
        var mag = (rho.Unsqueeze(2) * l).Exp();
        var angle = theta.Unsqueeze(2) * l;
        return 2 * (wr.Unsqueeze(2) * mag * angle.Cos() - wi.Unsqueeze(2) * mag * angle.Sin()).Sum(1);
    }

    /// <summary>The convolution form: y = K * u + D u over x [B, L, H] -> [B, L, H].</summary>
    /// <exception cref="ShapeMismatchException">x is not [B, L, H].</exception>
    public override Tensor Forward(Tensor input)
    {
        var u = Channelwise(input);
        var y = Tensor.CausalConv1d(u, Kernel(u.Shape[2])) + u * D.Unsqueeze(1);
        return y.Transpose(1, 2);
    }

    /// <summary>The recurrence form, one step at a time: x_k = Ā x_{k-1} + B̄ u_k, y_k = 2 Re(C x_k) + D u_k; equals <see cref="Forward"/>.</summary>
    /// <exception cref="ShapeMismatchException">x is not [B, L, H].</exception>
    public Tensor Recurrent(Tensor input)
    {
        var u = Channelwise(input);
        var (rho, theta, br, bi) = Discrete();
        var (ar, ai) = (rho.Exp() * theta.Cos(), rho.Exp() * theta.Sin());
        var sr = Tensor.Zeros(new Shape(u.Shape[0], Channels, StateSize), u.DType, u.Device);
        var si = sr;
        var ys = new List<Tensor>();
        for (int t = 0; t < u.Shape[2]; t++)
        {
            var ut = u.Narrow(2, t, 1);
            (sr, si) = (ar * sr - ai * si + br * ut, ar * si + ai * sr + bi * ut);
            ys.Add(2 * (CReal * sr - CImag * si).Sum(2) + D * ut.Squeeze(2));
        }
        return ys.Count == 0 ? input * 1.0 : Tensor.Stack([.. ys], 1);
    }

    Tensor Channelwise(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Rank != 3 || x.Shape[2] != Channels) throw new ShapeMismatchException("s4d", "input", $"input must be [B, L, {Channels}], got {x.Shape}");
        return x.Transpose(1, 2);
    }
}
