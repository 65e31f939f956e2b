using System.Numerics;

namespace Kiln.Methods.Generative;

/// <summary>A holomorphic activation f of <see cref="HolomorphicEp"/>'s recurrent network, with f′ and f″.</summary>
public enum EpActivation
{
    /// <summary>f(u) = tanh u, f′ = 1 − tanh² u, f″ = −2 tanh u (1 − tanh² u).</summary>
    Tanh,
    /// <summary>f(u) = u (a linear network: its Jacobian is W itself).</summary>
    Identity,
}

/// <summary>Gradients of a scalar with respect to <see cref="HolomorphicEp"/>'s weight W [n, n] and bias b [n] (Float64).</summary>
public sealed record EpGradients(Tensor Weight, Tensor Bias);

/// <summary>
/// Generalised holomorphic equilibrium propagation with Jacobian homeostasis (Laborieux &amp; Zenke, 2024). The network
/// is the recurrent fixed point u* = W f(u*) + b with holomorphic f, and the loss is L(u) = ½ Σ_j (u_{n−m+j} − y_j)² on
/// its last m units. The nudged fixed point u*(β) solves u = W f(u) + b − β ∇L(u) for complex β; its derivative at
/// β = 0 is read off the first Fourier coefficient of N points on the circle β_k = r e^{iθ_k}, θ_k = 2πk/N:
/// ν = (1/(N r)) Σ_k u*(β_k) e^{−iθ_k} (Cauchy's formula by the trapezoidal rule, exact up to O(r^N)). The EP update
/// is ΔW = −ν f(u*)ᵀ, Δb = −ν, which equals the gradient of L(u*) exactly when the Jacobian J = W diag f′(u*) is
/// symmetric; the homeostatic loss ‖J − Jᵀ‖²_F penalises its asymmetry. All math is float64 scalar code
/// (<see cref="Complex"/> on the contour); tensors are converted at the boundary.
/// </summary>
public static class HolomorphicEp
{
    /// <summary>
    /// Solves u = W f(u) + b − β ∇L(u) by the fixed-point iteration (the network's discrete dynamics), starting at 0,
    /// until the update is below <paramref name="tolerance"/>·(1 + ‖u‖∞), or below 1000 times that and no longer
    /// shrinking (the rounding floor of a contraction). β = 0 gives the free fixed point u*.
    /// </summary>
    /// <param name="weight">W [n, n].</param>
    /// <param name="bias">b [n].</param>
    /// <param name="target">y [m], 1 ≤ m ≤ n: the target of the last m units.</param>
    /// <param name="beta">The complex nudging strength β.</param>
    /// <param name="activation">The holomorphic activation f.</param>
    /// <param name="tolerance">The stopping threshold of the update's max-norm.</param>
    /// <param name="maxIterations">At most this many iterations.</param>
    /// <exception cref="ShapeMismatchException">W is not square, b is not [n], or y is not [m] with 1 ≤ m ≤ n.</exception>
    /// <exception cref="ArgumentOutOfRangeException">β is not finite, the tolerance is not positive, or maxIterations is below 1.</exception>
    /// <exception cref="InvalidOperationException">The iteration did not converge (the dynamics are not contracting at this β).</exception>
    public static Complex[] FixedPoint(Tensor weight, Tensor bias, Tensor target, Complex beta, EpActivation activation = EpActivation.Tanh,
        double tolerance = 1e-15, int maxIterations = 100_000)
    {
        const string op = "holomorphic_ep_fixed_point";
        var net = Net.From(op, weight, bias, target);
        if (!double.IsFinite(beta.Real) || !double.IsFinite(beta.Imaginary)) throw new ArgumentOutOfRangeException(nameof(beta), beta, $"{op}: beta must be finite");
        if (!(tolerance > 0)) throw new ArgumentOutOfRangeException(nameof(tolerance), tolerance, $"{op}: tolerance must be positive");
        ArgumentOutOfRangeException.ThrowIfLessThan(maxIterations, 1);
        return net.Solve(op, beta, activation, tolerance, maxIterations);
    }

    /// <summary>
    /// The contour estimate ν = (1/(N r)) Σ_k u*(r e^{iθ_k}) e^{−iθ_k} of du*/dβ at β = 0 from <paramref name="points"/>
    /// nudged fixed points on the circle of radius <paramref name="radius"/>: [n] complex (its imaginary part is the
    /// estimate's error, as the exact derivative is real).
    /// </summary>
    /// <exception cref="ShapeMismatchException">W, b, y do not fit (see <see cref="FixedPoint"/>).</exception>
    /// <exception cref="ArgumentOutOfRangeException">The radius is not positive and finite, or fewer than 2 points.</exception>
    /// <exception cref="InvalidOperationException">A nudged fixed point did not converge (the radius is too large).</exception>
    public static Complex[] ContourDerivative(Tensor weight, Tensor bias, Tensor target, double radius, int points, EpActivation activation = EpActivation.Tanh)
    {
        const string op = "holomorphic_ep_contour";
        var net = Net.From(op, weight, bias, target);
        CheckContour(op, radius, points);
        return net.Contour(op, radius, points, activation);
    }

    /// <summary>
    /// The generalised EP update from the contour: ΔW = −Re(ν) f(u*)ᵀ, Δb = −Re(ν), with ν from
    /// <see cref="ContourDerivative"/> and u* the free fixed point. It estimates the gradient of L(u*) and is exact
    /// (up to the contour's O(r^N)) when J = W diag f′(u*) is symmetric.
    /// </summary>
    /// <exception cref="ShapeMismatchException">W, b, y do not fit (see <see cref="FixedPoint"/>).</exception>
    /// <exception cref="ArgumentOutOfRangeException">The radius is not positive and finite, or fewer than 2 points.</exception>
    /// <exception cref="InvalidOperationException">A fixed point did not converge.</exception>
    public static EpGradients Update(Tensor weight, Tensor bias, Tensor target, double radius, int points, EpActivation activation = EpActivation.Tanh)
    {
        const string op = "holomorphic_ep_update";
        var net = Net.From(op, weight, bias, target);
        CheckContour(op, radius, points);
        var u = net.Free(op, activation);
        var nu = net.Contour(op, radius, points, activation);
        var delta = nu.Select(z => -z.Real).ToArray();
        return net.Gradients(delta, u, activation);
    }

    /// <summary>
    /// The true gradient of L(u*) by implicit differentiation: with J = W diag f′(u*), solve (I − J)ᵀ λ = ∇L(u*); then
    /// ∂L/∂W = λ f(u*)ᵀ and ∂L/∂b = λ.
    /// </summary>
    /// <exception cref="ShapeMismatchException">W, b, y do not fit (see <see cref="FixedPoint"/>).</exception>
    /// <exception cref="InvalidOperationException">The fixed point did not converge.</exception>
    public static EpGradients Backprop(Tensor weight, Tensor bias, Tensor target, EpActivation activation = EpActivation.Tanh)
    {
        const string op = "holomorphic_ep_backprop";
        var net = Net.From(op, weight, bias, target);
        var u = net.Free(op, activation);
        return net.Gradients(net.Adjoint(u, activation, net.LossGradient(u)), u, activation);
    }

    /// <summary>The Jacobian J = W diag f′(u*) of the map u ↦ W f(u) + b at the free fixed point: [n, n] Float64.</summary>
    /// <exception cref="ShapeMismatchException">W is not square or b is not [n].</exception>
    /// <exception cref="InvalidOperationException">The fixed point did not converge.</exception>
    public static Tensor Jacobian(Tensor weight, Tensor bias, EpActivation activation = EpActivation.Tanh)
    {
        const string op = "holomorphic_ep_jacobian";
        var net = Net.From(op, weight, bias, null);
        var u = net.Free(op, activation);
        return Tensor.FromArray(net.Jacobian(u, activation));
    }

    /// <summary>
    /// The homeostatic loss H = ‖J − Jᵀ‖²_F of the Jacobian J = W diag f′(u*) at the free fixed point: a scalar,
    /// differentiable in W and b through u* (implicit function theorem). With A = J − Jᵀ and d = f′(u*):
    /// ∂H/∂W = 4 A diag(d) + λ f(u*)ᵀ and ∂H/∂b = λ, where (I − J)ᵀ λ = −4 diag(A W) ⊙ f″(u*).
    /// </summary>
    /// <exception cref="ShapeMismatchException">W is not square or b is not [n].</exception>
    /// <exception cref="InvalidOperationException">The fixed point did not converge.</exception>
    public static Tensor HomeostaticLoss(Tensor weight, Tensor bias, EpActivation activation = EpActivation.Tanh)
    {
        const string op = "holomorphic_ep_homeostatic_loss";
        var net = Net.From(op, weight, bias, null);
        var u = net.Free(op, activation);
        int n = net.N;
        var jac = net.Jacobian(u, activation);
        var a = new double[n, n];
        double h = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) { a[i, j] = jac[i, j] - jac[j, i]; h += a[i, j] * a[i, j]; }
        return Tensor.Custom(op, [weight, bias], _ => Tensor.Scalar(h, weight.DType, weight.Device), g =>
        {
            var d = new double[n];
            var rhs = new double[n];
            for (int i = 0; i < n; i++)
            {
                var (_, d1, d2) = Activate(activation, u[i]);
                d[i] = d1;
                double aw = 0;
                for (int k = 0; k < n; k++) aw += a[i, k] * net.W[k, i];
                rhs[i] = -4 * aw * d2;
            }
            var lambda = net.Adjoint(u, activation, rhs);
            var grads = net.Gradients(lambda, u, activation);
            var direct = new double[n, n];
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) direct[i, j] = 4 * a[i, j] * d[j];
            var scale = g.To(DType.Float64).To(grads.Weight.Device);
            var gw = (grads.Weight + Tensor.FromArray(direct)) * scale;
            return [gw.To(weight.DType).To(weight.Device), (grads.Bias * scale).To(bias.DType).To(bias.Device)];
        });
    }

    static void CheckContour(string op, double radius, int points)
    {
        if (!(radius > 0) || !double.IsFinite(radius)) throw new ArgumentOutOfRangeException(nameof(radius), radius, $"{op}: radius must be positive and finite");
        if (points < 2) throw new ArgumentOutOfRangeException(nameof(points), points, $"{op}: the first Fourier coefficient needs at least 2 contour points");
    }

    static (double F, double D1, double D2) Activate(EpActivation activation, double u) => activation switch
    {
        EpActivation.Tanh => (Math.Tanh(u), 1 - Math.Tanh(u) * Math.Tanh(u), -2 * Math.Tanh(u) * (1 - Math.Tanh(u) * Math.Tanh(u))),
        EpActivation.Identity => (u, 1, 0),
        _ => throw new ArgumentOutOfRangeException(nameof(activation), activation, "unknown activation"),
    };

    static Complex Activate(EpActivation activation, Complex u) => activation switch
    {
        EpActivation.Tanh => Complex.Tanh(u),
        EpActivation.Identity => u,
        _ => throw new ArgumentOutOfRangeException(nameof(activation), activation, "unknown activation"),
    };

    /// <summary>The network's parameters as float64 arrays (y is null where no loss is involved).</summary>
    sealed class Net(double[,] w, double[] b, double[]? y)
    {
        public double[,] W { get; } = w;
        public int N => b.Length;

        public static Net From(string op, Tensor weight, Tensor bias, Tensor? target)
        {
            ArgumentNullException.ThrowIfNull(weight);
            ArgumentNullException.ThrowIfNull(bias);
            if (weight.Rank != 2 || weight.Shape[0] != weight.Shape[1] || weight.Shape[0] == 0)
                throw new ShapeMismatchException(op, nameof(weight), $"weight must be a non-empty square [n, n], got {weight.Shape}");
            int n = weight.Shape[0];
            if (bias.Shape != new Shape(n)) throw new ShapeMismatchException(op, nameof(bias), new Shape(n), bias.Shape);
            if (target is not null && (target.Rank != 1 || target.Shape[0] < 1 || target.Shape[0] > n))
                throw new ShapeMismatchException(op, nameof(target), $"target must be [m] with 1 <= m <= n = {n}, got {target.Shape}");
            var wf = weight.Detach().To(DType.Float64).ToArray<double>();
            var w = new double[n, n];
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) w[i, j] = wf[i * n + j];
            return new Net(w, bias.Detach().To(DType.Float64).ToArray<double>(), target?.Detach().To(DType.Float64).ToArray<double>());
        }

        public Complex[] Solve(string op, Complex beta, EpActivation activation, double tolerance, int maxIterations)
        {
            int n = N, off = y is null ? n : n - y.Length;
            var u = new Complex[n];
            var next = new Complex[n];
            double step = double.PositiveInfinity, previous = double.PositiveInfinity;
            for (int it = 0; it < maxIterations; it++)
            {
                var f = u.Select(z => Activate(activation, z)).ToArray();
                step = 0;
                double size = 0;
                for (int i = 0; i < n; i++)
                {
                    Complex s = b[i];
                    for (int j = 0; j < n; j++) s += W[i, j] * f[j];
                    if (i >= off) s -= beta * (u[i] - y![i - off]);
                    next[i] = s;
                    step = Math.Max(step, (s - u[i]).Magnitude);
                    size = Math.Max(size, s.Magnitude);
                }
                (u, next) = (next, u);
                if (!double.IsFinite(step)) break;
                double limit = tolerance * (1 + size);
                // A contraction shrinks every step, so a step that stops shrinking near the limit is rounding noise.
                if (step <= limit || step <= 1e3 * limit && step >= previous) return u;
                previous = step;
            }
            throw new InvalidOperationException($"{op}: the fixed-point iteration at beta = {beta} did not converge (last update {step:G3}); shrink W or the contour radius");
        }

        public double[] Free(string op, EpActivation activation) =>
            Solve(op, Complex.Zero, activation, 1e-15, 100_000).Select(z => z.Real).ToArray();

        public Complex[] Contour(string op, double radius, int points, EpActivation activation)
        {
            var nu = new Complex[N];
            for (int k = 0; k < points; k++)
            {
                double theta = 2 * Math.PI * k / points;
                var uk = Solve(op, Complex.FromPolarCoordinates(radius, theta), activation, 1e-15, 100_000);
                var phase = Complex.FromPolarCoordinates(1 / (points * radius), -theta);
                for (int i = 0; i < N; i++) nu[i] += uk[i] * phase;
            }
            return nu;
        }

        public double[] LossGradient(double[] u)
        {
            int off = N - y!.Length;
            return u.Select((v, i) => i >= off ? v - y[i - off] : 0).ToArray();
        }

        public double[,] Jacobian(double[] u, EpActivation activation)
        {
            var jac = new double[N, N];
            for (int j = 0; j < N; j++)
            {
                double d = Activate(activation, u[j]).D1;
                for (int i = 0; i < N; i++) jac[i, j] = W[i, j] * d;
            }
            return jac;
        }

        /// <summary>λ solving (I − J)ᵀ λ = rhs at the fixed point u.</summary>
        public double[] Adjoint(double[] u, EpActivation activation, double[] rhs)
        {
            var jac = Jacobian(u, activation);
            var m = new double[N, N];
            for (int i = 0; i < N; i++)
                for (int j = 0; j < N; j++) m[i, j] = (i == j ? 1 : 0) - jac[j, i];
            return Tensor.FromArray(m).Solve(Tensor.FromArray(rhs)).ToArray<double>();
        }

        /// <summary>(∂F/∂W)ᵀ v = v f(u)ᵀ and (∂F/∂b)ᵀ v = v for F(u) = W f(u) + b.</summary>
        public EpGradients Gradients(double[] v, double[] u, EpActivation activation)
        {
            var f = u.Select(x => Activate(activation, x).F).ToArray();
            var gw = new double[N, N];
            for (int i = 0; i < N; i++)
                for (int j = 0; j < N; j++) gw[i, j] = v[i] * f[j];
            return new EpGradients(Tensor.FromArray(gw), Tensor.FromArray(v));
        }
    }
}
