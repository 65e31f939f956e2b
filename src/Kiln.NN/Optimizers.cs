using System.Numerics;

namespace Kiln.NN;

/// <summary>
/// The base of the optimizers: holds the parameters and a learning rate (fixed, or from a <see cref="LrSchedule"/>),
/// and updates every parameter that has a gradient on <see cref="Step"/>. State (momentum, moments) is allocated in
/// the constructor, so build optimizers outside any per-step <see cref="Tensor.Scope"/>. On the CPU each parameter
/// is updated by one fused SIMD pass over its elements; on other devices by in-place tensor ops.
/// </summary>
public abstract class Optimizer
{
    readonly int[] _steps;

    /// <summary>Takes the parameters (each once) and the base learning rate.</summary>
    /// <exception cref="ArgumentException">No parameters, or a negative or non-finite learning rate.</exception>
    protected Optimizer(IEnumerable<Parameter> parameters, double learningRate)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        Parameters = parameters.Distinct(ReferenceEqualityComparer.Instance).Cast<Parameter>().ToArray();
        if (Parameters.Count == 0) throw new ArgumentException("optimizer: got an empty parameter list", nameof(parameters));
        CheckNonNegative(learningRate, nameof(learningRate));
        LearningRate = learningRate;
        _steps = new int[Parameters.Count];
    }

    /// <summary>Throws unless <paramref name="value"/> is finite and non-negative.</summary>
    protected static void CheckNonNegative(double value, string name)
    {
        if (!(value >= 0) || double.IsInfinity(value)) throw new ArgumentOutOfRangeException(name, value, $"optimizer: {name} must be finite and non-negative");
    }

    /// <summary>The parameters, in order.</summary>
    public IReadOnlyList<Parameter> Parameters { get; }
    /// <summary>The learning rate used when no <see cref="Schedule"/> is set.</summary>
    public double LearningRate { get; set; }
    /// <summary>When set, step s (0-based) uses Schedule.At(s) instead of <see cref="LearningRate"/>.</summary>
    public LrSchedule? Schedule { get; set; }
    /// <summary>Number of completed <see cref="Step"/> calls.</summary>
    public int StepCount { get; private set; }
    /// <summary>The learning rate the next step will use.</summary>
    public double CurrentLearningRate => Schedule?.At(StepCount) ?? LearningRate;

    /// <summary>Updates through in-place tensor ops even on the CPU (for testing that path against the fused one).</summary>
    internal bool UseTensorOps { get; set; }

    /// <summary>Applies one update to every parameter with a gradient (parameters without one are left alone).</summary>
    public void Step()
    {
        double lr = CurrentLearningRate;
        using (Autograd.NoGrad())
        {
            for (int i = 0; i < Parameters.Count; i++)
            {
                var p = Parameters[i];
                if (p.Grad is not { } g) continue;
                if (g.Shape != p.Shape) throw new ShapeMismatchException("optimizer step", "grad", p.Shape, g.Shape, "a parameter's gradient must have its shape");
                int t = ++_steps[i];
                var gc = g.To(p.Value.DType).Contiguous();
                if (!UseTensorOps && p.Value.Storage is CpuStorage)
                {
                    if (p.Value.DType == DType.Float32) UpdateCpu<float>(i, p.Value, gc, lr, t);
                    else UpdateCpu<double>(i, p.Value, gc, lr, t);
                }
                else UpdateTensors(i, p.Value, gc, lr, t);
            }
        }
        StepCount++;
    }

    /// <summary>Sets every parameter's gradient to null.</summary>
    public void ZeroGrad()
    {
        foreach (var p in Parameters) p.Grad = null;
    }

    /// <summary>The fused CPU update of parameter <paramref name="index"/> at its <paramref name="step"/>-th update (1-based).</summary>
    private protected abstract void UpdateCpu<T>(int index, Tensor param, Tensor grad, double lr, int step) where T : unmanaged, IFloatingPointIeee754<T>;

    /// <summary>The same update in tensor ops (any device).</summary>
    private protected abstract void UpdateTensors(int index, Tensor param, Tensor grad, double lr, int step);

    /// <summary>The elements of a contiguous CPU tensor as a span.</summary>
    private protected static Span<T> Elems<T>(Tensor t) => ((CpuStorage)t.Storage).As<T>().AsSpan(t.Layout.Offset, t.Numel);

    /// <summary>Zero state of <paramref name="p"/>'s shape, dtype and device.</summary>
    private protected static Tensor State(Parameter p) => Tensor.Zeros(p.Shape, p.Value.DType, p.Value.Device);
}

/// <summary>
/// Stochastic gradient descent with optional momentum (PyTorch's form: buf = mu buf + (1 - dampening) g, with buf = g
/// on the first step), Nesterov momentum (step along g + mu buf) and L2 weight decay (g += wd p).
/// </summary>
public sealed class SGD : Optimizer
{
    readonly Tensor[]? _buf;

    /// <summary>Creates the optimizer.</summary>
    /// <exception cref="ArgumentException">Nesterov without momentum or with dampening, or a negative hyperparameter.</exception>
    public SGD(IEnumerable<Parameter> parameters, double learningRate, double momentum = 0, double dampening = 0, bool nesterov = false, double weightDecay = 0)
        : base(parameters, learningRate)
    {
        CheckNonNegative(momentum, nameof(momentum)); CheckNonNegative(dampening, nameof(dampening)); CheckNonNegative(weightDecay, nameof(weightDecay));
        if (nesterov && (momentum == 0 || dampening != 0))
            throw new ArgumentException($"sgd: Nesterov momentum needs momentum > 0 and dampening 0, got momentum {momentum}, dampening {dampening}", nameof(nesterov));
        Momentum = momentum; Dampening = dampening; Nesterov = nesterov; WeightDecay = weightDecay;
        if (momentum != 0) _buf = Parameters.Select(State).ToArray();
    }

    /// <summary>Momentum factor mu.</summary>
    public double Momentum { get; }
    /// <summary>Dampening of the gradient's contribution to the momentum buffer.</summary>
    public double Dampening { get; }
    /// <summary>Whether to use Nesterov momentum.</summary>
    public bool Nesterov { get; }
    /// <summary>L2 penalty coefficient added to the gradient.</summary>
    public double WeightDecay { get; }

    private protected override void UpdateCpu<T>(int index, Tensor param, Tensor grad, double lr, int step)
    {
        var p = Elems<T>(param);
        var g = Elems<T>(grad);
        T wd = T.CreateTruncating(WeightDecay), mu = T.CreateTruncating(Momentum), damp = T.One - T.CreateTruncating(Dampening), a = T.CreateTruncating(lr);
        if (_buf is null)
        {
            for (int i = 0; i < p.Length; i++) p[i] -= a * (g[i] + wd * p[i]);
            return;
        }
        var b = Elems<T>(_buf[index]);
        bool first = step == 1;
        for (int i = 0; i < p.Length; i++)
        {
            T d = g[i] + wd * p[i];
            T bi = first ? d : mu * b[i] + damp * d;
            b[i] = bi;
            p[i] -= a * (Nesterov ? d + mu * bi : bi);
        }
    }

    private protected override void UpdateTensors(int index, Tensor param, Tensor grad, double lr, int step)
    {
        var d = WeightDecay != 0 ? grad + param * WeightDecay : grad;
        if (_buf is not null)
        {
            var b = _buf[index];
            if (step == 1) b.Copy_(d);
            else b.Mul_(Momentum).Add_(d * (1 - Dampening));
            d = Nesterov ? d + b * Momentum : b;
        }
        param.Sub_(d * lr);
    }
}

/// <summary>
/// Adam (Kingma and Ba 2015): m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, p -= lr m_hat / (sqrt(v_hat) + eps)
/// with bias-corrected m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t). Weight decay here is the L2 form (g += wd p);
/// <see cref="AdamW"/> decouples it. By default the bias corrections are folded into two constants, as PyTorch does:
/// p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps); <see cref="Textbook"/> evaluates the formula as written.
/// </summary>
public class Adam : Optimizer
{
    readonly Tensor[] _m, _v;

    /// <summary>Creates the optimizer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1) or a negative hyperparameter.</exception>
    public Adam(IEnumerable<Parameter> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0)
        : this(parameters, learningRate, beta1, beta2, eps, weightDecay, decoupled: false) { }

    private protected Adam(IEnumerable<Parameter> parameters, double learningRate, double beta1, double beta2, double eps, double weightDecay, bool decoupled)
        : base(parameters, learningRate)
    {
        if (!(beta1 >= 0 && beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, "adam: beta1 must be in [0, 1)");
        if (!(beta2 >= 0 && beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, "adam: beta2 must be in [0, 1)");
        CheckNonNegative(eps, nameof(eps)); CheckNonNegative(weightDecay, nameof(weightDecay));
        Beta1 = beta1; Beta2 = beta2; Eps = eps; WeightDecay = weightDecay; Decoupled = decoupled;
        _m = Parameters.Select(State).ToArray();
        _v = Parameters.Select(State).ToArray();
    }

    /// <summary>Decay of the first moment.</summary>
    public double Beta1 { get; }
    /// <summary>Decay of the second moment.</summary>
    public double Beta2 { get; }
    /// <summary>Added to sqrt(v_hat).</summary>
    public double Eps { get; }
    /// <summary>Weight decay coefficient (L2 for Adam, decoupled for AdamW).</summary>
    public double WeightDecay { get; }
    /// <summary>True for AdamW's decoupled decay p -= lr wd p, applied before the Adam step.</summary>
    public bool Decoupled { get; }
    /// <summary>
    /// Evaluates the step as Algorithm 1 of Kingma and Ba writes it, in this order of float operations:
    /// v = b2 v + g^2 (1 - b2), p -= m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) * lr. The same update as the default
    /// up to rounding; it is the form Kiln's decoder checkpoints were trained with (<see cref="Decoder.LmTrainer"/>), so they reproduce
    /// bit for bit.
    /// </summary>
    public bool Textbook { get; init; }

    private protected override void UpdateCpu<T>(int index, Tensor param, Tensor grad, double lr, int step)
    {
        var p = Elems<T>(param);
        var g = Elems<T>(grad);
        var m = Elems<T>(_m[index]);
        var v = Elems<T>(_v[index]);
        double bc1 = 1 - Math.Pow(Beta1, step), bc2 = 1 - Math.Pow(Beta2, step);
        bool textbook = Textbook;
        T b1 = T.CreateTruncating(Beta1), b2 = T.CreateTruncating(Beta2);
        // The textbook form rounds each constant to T from double, as the tensor ops round their scalars.
        T c1 = textbook ? T.CreateTruncating(1 - Beta1) : T.One - b1, c2 = textbook ? T.CreateTruncating(1 - Beta2) : T.One - b2;
        T stepSize = T.CreateTruncating(lr / bc1), rbc2 = T.CreateTruncating(1 / Math.Sqrt(bc2)), eps = T.CreateTruncating(Eps);
        T tbc1 = T.CreateTruncating(bc1), tbc2 = T.CreateTruncating(bc2), tlr = T.CreateTruncating(lr);
        T l2 = Decoupled ? T.Zero : T.CreateTruncating(WeightDecay);
        T shrink = T.CreateTruncating(Decoupled ? 1 - lr * WeightDecay : 1);
        int i = 0;
        if (Vector.IsHardwareAccelerated && Vector<T>.Count > 1)
        {
            var vb1 = new Vector<T>(b1); var vb2 = new Vector<T>(b2); var vc1 = new Vector<T>(c1); var vc2 = new Vector<T>(c2);
            var vstep = new Vector<T>(stepSize); var vr = new Vector<T>(rbc2); var veps = new Vector<T>(eps);
            var vbc1 = new Vector<T>(tbc1); var vbc2 = new Vector<T>(tbc2); var vlr = new Vector<T>(tlr);
            var vl2 = new Vector<T>(l2); var vshrink = new Vector<T>(shrink);
            for (; i <= p.Length - Vector<T>.Count; i += Vector<T>.Count)
            {
                var pi = new Vector<T>(p[i..]);
                var gi = new Vector<T>(g[i..]);
                if (l2 != T.Zero) gi += vl2 * pi;
                var mi = vb1 * new Vector<T>(m[i..]) + vc1 * gi;
                var vi = vb2 * new Vector<T>(v[i..]) + (textbook ? gi * gi * vc2 : vc2 * gi * gi);
                mi.CopyTo(m[i..]); vi.CopyTo(v[i..]);
                (textbook ? vshrink * pi - mi / vbc1 / (Vector.SquareRoot(vi / vbc2) + veps) * vlr
                          : vshrink * pi - vstep * mi / (Vector.SquareRoot(vi) * vr + veps)).CopyTo(p[i..]);
            }
        }
        for (; i < p.Length; i++)
        {
            T gi = l2 != T.Zero ? g[i] + l2 * p[i] : g[i];
            T mi = b1 * m[i] + c1 * gi, vi = b2 * v[i] + (textbook ? gi * gi * c2 : c2 * gi * gi);
            m[i] = mi; v[i] = vi;
            p[i] = textbook ? shrink * p[i] - mi / tbc1 / (T.Sqrt(vi / tbc2) + eps) * tlr
                            : shrink * p[i] - stepSize * mi / (T.Sqrt(vi) * rbc2 + eps);
        }
    }

    private protected override void UpdateTensors(int index, Tensor param, Tensor grad, double lr, int step)
    {
        double bc1 = 1 - Math.Pow(Beta1, step), bc2 = 1 - Math.Pow(Beta2, step);
        var g = !Decoupled && WeightDecay != 0 ? grad + param * WeightDecay : grad;
        var m = _m[index].Mul_(Beta1).Add_(g * (1 - Beta1));
        var v = _v[index].Mul_(Beta2).Add_(g.Square() * (1 - Beta2));
        if (Decoupled && WeightDecay != 0) param.Mul_(1 - lr * WeightDecay);
        param.Sub_(Textbook ? m / bc1 / ((v / bc2).Sqrt() + Eps) * lr : m * (lr / bc1) / (v.Sqrt() * (1 / Math.Sqrt(bc2)) + Eps));
    }
}

/// <summary>
/// AdamW (Loshchilov and Hutter 2019): Adam with decoupled weight decay, p -= lr wd p before the Adam step, so the
/// decay does not pass through the adaptive scaling. Default weight decay 0.01 as in PyTorch.
/// </summary>
public sealed class AdamW(IEnumerable<Parameter> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.01)
    : Adam(parameters, learningRate, beta1, beta2, eps, weightDecay, decoupled: true);

/// <summary>Gradient clipping over a set of parameters (applied between backward and the optimizer step).</summary>
public static class GradClip
{
    /// <summary>
    /// Scales all gradients by min(1, maxNorm / (total + 1e-6)) where total is the p-norm of all gradients together
    /// (p = 2 by default, <see cref="double.PositiveInfinity"/> for the max norm). Returns the total norm before clipping.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">maxNorm is negative, or p is not positive.</exception>
    public static double ClipGradNorm(IEnumerable<Parameter> parameters, double maxNorm, double p = 2)
    {
        if (!(maxNorm >= 0)) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "clip_grad_norm: maxNorm must be non-negative");
        if (!(p > 0)) throw new ArgumentOutOfRangeException(nameof(p), p, "clip_grad_norm: p must be positive");
        var grads = parameters.Select(q => q.Grad).OfType<Tensor>().ToArray();
        double total = 0;
        using (Autograd.NoGrad())
        {
            foreach (var g in grads)
            {
                double n = g.Norm(p).Item();
                total = double.IsPositiveInfinity(p) ? Math.Max(total, n) : total + Math.Pow(n, p);
            }
            if (!double.IsPositiveInfinity(p)) total = Math.Pow(total, 1 / p);
            double coef = maxNorm / (total + 1e-6);
            if (coef < 1) foreach (var g in grads) g.Mul_(coef);
        }
        return total;
    }

    /// <summary>Clamps every gradient element into [-clip, clip].</summary>
    /// <exception cref="ArgumentOutOfRangeException">clip is negative.</exception>
    public static void ClipGradValue(IEnumerable<Parameter> parameters, double clip)
    {
        if (!(clip >= 0)) throw new ArgumentOutOfRangeException(nameof(clip), clip, "clip_grad_value: clip must be non-negative");
        using (Autograd.NoGrad())
            foreach (var q in parameters)
                if (q.Grad is { } g) g.Copy_(g.Clamp(-clip, clip));
    }
}

/// <summary>
/// A learning-rate schedule: the rate for each 0-based step. With w warmup steps the rate rises linearly as
/// lr (s + 1) / w for s &lt; w (so the first step is not wasted at zero); the decays then run over the remaining steps
/// with progress q = min(1, (s - w) / max(1, total - w)).
/// </summary>
public sealed class LrSchedule
{
    readonly Func<int, double> _f;
    LrSchedule(Func<int, double> f) => _f = f;

    /// <summary>The learning rate at 0-based step <paramref name="step"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">step is negative.</exception>
    public double At(int step)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "lr schedule: step must be non-negative");
        return _f(step);
    }

    static void Check(double lr, int warmup, int total)
    {
        if (!(lr >= 0)) throw new ArgumentOutOfRangeException(nameof(lr), lr, "lr schedule: lr must be non-negative");
        if (warmup < 0) throw new ArgumentOutOfRangeException(nameof(warmup), warmup, "lr schedule: warmup must be non-negative");
        if (total < warmup) throw new ArgumentOutOfRangeException(nameof(total), total, $"lr schedule: total steps {total} must be at least the warmup {warmup}");
    }

    static double Progress(int s, int warmup, int total) => Math.Min(1.0, (s - warmup) / (double)Math.Max(1, total - warmup));

    /// <summary>A constant rate after an optional linear warmup.</summary>
    public static LrSchedule Constant(double lr, int warmup = 0)
    {
        Check(lr, warmup, warmup);
        return new(s => s < warmup ? lr * (s + 1) / warmup : lr);
    }

    /// <summary>Warmup, then cosine decay from lr to minLr over the remaining steps: minLr + (lr - minLr)(1 + cos(pi q)) / 2.</summary>
    public static LrSchedule Cosine(double lr, int total, double minLr = 0, int warmup = 0)
    {
        Check(lr, warmup, total);
        return new(s => s < warmup ? lr * (s + 1) / warmup : minLr + (lr - minLr) * 0.5 * (1 + Math.Cos(Math.PI * Progress(s, warmup, total))));
    }

    /// <summary>Warmup, then linear decay from lr to endLr over the remaining steps: lr + (endLr - lr) q.</summary>
    public static LrSchedule Linear(double lr, int total, double endLr = 0, int warmup = 0)
    {
        Check(lr, warmup, total);
        return new(s => s < warmup ? lr * (s + 1) / warmup : lr + (endLr - lr) * Progress(s, warmup, total));
    }
}
