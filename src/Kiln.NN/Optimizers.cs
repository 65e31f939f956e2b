using System.Numerics;
using Kiln.Kernels.Cpu;

namespace Kiln.NN;

/// <summary>
/// The base of the optimizers: holds the parameters and a learning rate (fixed, or from a <see cref="LrSchedule"/>),
/// and updates every parameter that has a gradient on <see cref="Step()"/>. State (momentum, moments) is allocated in
/// the constructor, so build optimizers outside any per-step <see cref="Tensor.Scope"/>. The built-in optimizers update
/// each CPU parameter by one fused SIMD pass over its elements, and elsewhere by in-place tensor ops. A BFloat16 or
/// Float16 parameter keeps a Float32 master copy (taken when the optimizer is built) and Float32 state: each step updates
/// the master from the gradient in Float32 and rounds it once into the parameter, so updates smaller than the half
/// dtype's spacing accumulate instead of vanishing (mixed-precision training's master weights; turn it off with
/// <see cref="MasterWeights"/>).
/// </summary>
/// <remarks>
/// A custom optimizer derives from this class, allocates its per-parameter buffers with <see cref="AddState(string)"/> in its
/// constructor (so <see cref="StateDict"/> saves them and <see cref="LoadStateDict"/> restores them) and implements
/// <see cref="Update"/> with in-place tensor ops; scalar state of its own goes in overrides of the two state methods.
/// </remarks>
public abstract class Optimizer
{
    readonly int[] _steps;
    readonly int[] _groupOf;
    readonly List<(string Name, Tensor?[] Buffers)> _state = [];
    readonly Tensor?[] _master;

    /// <summary>Takes the parameters (each once) and the base learning rate.</summary>
    /// <exception cref="ArgumentException">No parameters, or a negative or non-finite learning rate.</exception>
    protected Optimizer(IEnumerable<Parameter> parameters, double learningRate)
        : this([new ParamGroup(parameters)], learningRate) { }

    /// <summary>
    /// Takes parameter groups, each with its own optional learning rate and weight decay (PyTorch's param_groups); a
    /// group without them uses the optimizer's. The parameters are the groups' in order, each in one group only.
    /// </summary>
    /// <exception cref="ArgumentException">No parameters, a parameter in two groups, or a negative or non-finite learning rate.</exception>
    protected Optimizer(IEnumerable<ParamGroup> groups, double learningRate)
    {
        ArgumentNullException.ThrowIfNull(groups);
        ParamGroups = groups.ToArray();
        var all = ParamGroups.SelectMany(g => g.Parameters).ToArray();
        var seen = new Dictionary<Parameter, int>(ReferenceEqualityComparer.Instance);
        for (int k = 0; k < ParamGroups.Count; k++)
            foreach (var p in ParamGroups[k].Parameters)
                if (!seen.TryAdd(p, k))
                    throw new ArgumentException($"optimizer: a parameter of shape {p.Shape} is in parameter groups {seen[p]} and {k}; each parameter belongs to one group", nameof(groups));
        Parameters = all;
        if (Parameters.Count == 0) throw new ArgumentException("optimizer: got an empty parameter list", nameof(groups));
        CheckNonNegative(learningRate, nameof(learningRate));
        LearningRate = learningRate;
        _steps = new int[Parameters.Count];
        _groupOf = ParamGroups.SelectMany((g, k) => g.Parameters.Select(_ => k)).ToArray();
        using (Autograd.NoGrad())
            _master = [.. Parameters.Select(p => p.Value.DType.IsHalf() ? p.Value.Detach().To(DType.Float32) : null)];
    }

    /// <summary>
    /// Whether BFloat16 and Float16 parameters are updated through their Float32 master copies (default true); when
    /// false they are updated in their own dtype (their optimizer state stays Float32) and <see cref="StateDict"/> holds no masters.
    /// </summary>
    public bool MasterWeights { get; init; } = true;

    /// <summary>The Float32 master copy of parameter <paramref name="index"/>, or null when it has none (not a half parameter, or <see cref="MasterWeights"/> is off).</summary>
    public Tensor? MasterWeight(int index) => MasterWeights ? _master[index] : null;

    /// <summary>Throws unless <paramref name="value"/> is finite and non-negative.</summary>
    protected static void CheckNonNegative(double value, string name)
    {
        if (!(value >= 0) || double.IsInfinity(value)) throw new ArgumentOutOfRangeException(name, value, $"optimizer: {name} must be finite and non-negative");
    }

    /// <summary>The parameters, in order (group by group).</summary>
    public IReadOnlyList<Parameter> Parameters { get; }
    /// <summary>The parameter groups (one holding every parameter when the optimizer was given a plain list).</summary>
    public IReadOnlyList<ParamGroup> ParamGroups { get; }
    /// <summary>The learning rate used when no <see cref="Schedule"/> is set.</summary>
    public double LearningRate { get; set; }
    /// <summary>When set, step s (0-based) uses Schedule.At(s) instead of <see cref="LearningRate"/>.</summary>
    public LrSchedule? Schedule { get; set; }
    /// <summary>Number of completed <see cref="Step()"/> calls.</summary>
    public int StepCount { get; private set; }
    /// <summary>How many updates parameter <paramref name="index"/> has had (a parameter without a gradient skips a step).</summary>
    public int ParameterSteps(int index) => _steps[index];
    /// <summary>The learning rate the next step will use.</summary>
    public double CurrentLearningRate => Schedule?.At(StepCount) ?? LearningRate;

    /// <summary>Updates through in-place tensor ops even on the CPU (for testing that path against the fused one).</summary>
    internal bool UseTensorOps { get; set; }

    /// <summary>
    /// The learning rate of parameter <paramref name="index"/> at the next step: its group's rate (else
    /// <see cref="LearningRate"/>); with a <see cref="Schedule"/>, the schedule's rate scaled by group rate / base rate,
    /// as PyTorch's schedulers scale every group's initial rate by one factor.
    /// </summary>
    /// <exception cref="InvalidOperationException">A schedule is set, the base rate is 0 and the group has its own rate (no ratio exists).</exception>
    public double LearningRateOf(int index)
    {
        double? own = ParamGroups[_groupOf[index]].LearningRate;
        if (Schedule is null) return own ?? LearningRate;
        double rate = Schedule.At(StepCount);
        if (own is not { } g) return rate;
        if (LearningRate == 0) throw new InvalidOperationException("optimizer: a group has its own learning rate but the base rate is 0, so the schedule cannot scale it");
        return rate * g / LearningRate;
    }

    /// <summary>The weight decay of parameter <paramref name="index"/>: its group's, else <paramref name="fallback"/> (the optimizer's).</summary>
    protected double WeightDecayOf(int index, double fallback) => ParamGroups[_groupOf[index]].WeightDecay ?? fallback;

    /// <summary>
    /// PyTorch's step(closure): calls <paramref name="closure"/> (which zeroes the gradients, computes the loss, runs
    /// backward and returns the loss) with gradients enabled, then steps. Rules that need a second gradient evaluation
    /// (MARS) override it to call the closure again at other parameter values. Returns the closure's loss.
    /// </summary>
    public virtual double Step(Func<double> closure)
    {
        ArgumentNullException.ThrowIfNull(closure);
        double loss = closure();
        Step();
        return loss;
    }

    /// <summary>Applies one update to every parameter with a gradient (parameters without one are left alone).</summary>
    public void Step()
    {
        using (Autograd.NoGrad())
        {
            for (int i = 0; i < Parameters.Count; i++)
            {
                var p = Parameters[i];
                if (p.Grad is not { } g) continue;
                double lr = LearningRateOf(i);
                if (g.Shape != p.Shape) throw new ShapeMismatchException("optimizer step", "grad", p.Shape, g.Shape, "a parameter's gradient must have its shape");
                int t = ++_steps[i];
                var target = MasterWeight(i) ?? p.Value;
                var gc = g.To(target.DType).Contiguous();
                if (!UseTensorOps && target.Storage is CpuStorage && this is IFusedCpuUpdate fused && target.DType is DType.Float32 or DType.Float64)
                {
                    if (target.DType == DType.Float32) fused.UpdateCpu<float>(i, target, gc, lr, t);
                    else fused.UpdateCpu<double>(i, target, gc, lr, t);
                }
                else Update(i, target, gc, lr, t);
                if (!ReferenceEquals(target, p.Value)) p.Value.Copy_(target);   // the one rounding into the half parameter
            }
        }
        StepCount++;
    }

    /// <summary>Sets every parameter's gradient to null.</summary>
    public void ZeroGrad()
    {
        foreach (var p in Parameters) p.Grad = null;
    }

    /// <summary>
    /// Updates parameter <paramref name="index"/> in place at its <paramref name="step"/>-th update (1-based) with
    /// learning rate <paramref name="lr"/>, from <paramref name="grad"/> (contiguous, in the parameter's dtype). Runs
    /// under <see cref="Autograd.NoGrad"/>; use in-place tensor ops (<c>param.Sub_(...)</c>) so it works on any device.
    /// </summary>
    protected abstract void Update(int index, Tensor param, Tensor grad, double lr, int step);

    /// <summary>
    /// Allocates a zero buffer per parameter (its shape and device; its dtype, or Float32 for a half parameter) named <paramref name="name"/> in
    /// <see cref="StateDict"/> (PyTorch's names: "exp_avg", "momentum_buffer", ...); call it in the constructor.
    /// </summary>
    /// <exception cref="ArgumentException">The name is empty, has a '.', or is taken.</exception>
    protected Tensor[] AddState(string name) => AddState(name, p => p.Shape)!;

    /// <summary>
    /// Allocates a zero buffer of shape <paramref name="shapeOf"/>(parameter) per parameter (its dtype and device), or
    /// none where it returns null (a parameter the rule treats differently); such buffers, named as with
    /// <see cref="AddState(string)"/>, hold statistics whose shape is not the parameter's (Shampoo's preconditioners).
    /// </summary>
    /// <param name="name">The buffer's name in the state dict.</param>
    /// <param name="shapeOf">The buffer's shape for a parameter, or null for none.</param>
    /// <param name="dtype">The buffers' dtype (default: each parameter's, Float32 for a half one; Int32 holds packed quantisation codes).</param>
    /// <exception cref="ArgumentException">The name is empty, has a '.', or is taken.</exception>
    protected Tensor?[] AddState(string name, Func<Parameter, Shape?> shapeOf, DType? dtype = null)
    {
        ArgumentNullException.ThrowIfNull(shapeOf);
        if (string.IsNullOrEmpty(name) || name.Contains('.') || name == "step" || _state.Any(s => s.Name == name))
            throw new ArgumentException($"optimizer: state name '{name}' must be non-empty, without '.', not 'step', and not already used", nameof(name));
        var buffers = Parameters.Select(p => shapeOf(p) is { } shape ? Tensor.Zeros(shape, dtype ?? (p.Value.DType.IsHalf() ? DType.Float32 : p.Value.DType), p.Value.Device) : null).ToArray();
        _state.Add((name, buffers));
        return buffers;
    }

    /// <summary>
    /// The optimizer's state as named tensors, PyTorch's layout flattened: "step" (completed steps) and "lr" (the base
    /// learning rate), "state.{i}.step" and "state.{i}.{buffer}" for parameter i (by its index in
    /// <see cref="Parameters"/>), "state.{i}.master" for the Float32 master copy of a half parameter, and "schedule.{key}"
    /// for a stateful <see cref="Schedule"/>. The tensors are copies:
    /// save them with the model (<see cref="Checkpoint"/>) to resume training exactly.
    /// </summary>
    public virtual IReadOnlyDictionary<string, Tensor> StateDict()
    {
        var d = new Dictionary<string, Tensor>
        {
            ["step"] = Tensor.Scalar((long)StepCount, DType.Int64),
            ["lr"] = Tensor.Scalar(LearningRate, DType.Float64),
        };
        for (int i = 0; i < Parameters.Count; i++)
        {
            d[$"state.{i}.step"] = Tensor.Scalar((long)_steps[i], DType.Int64);
            foreach (var (name, buffers) in _state)
                if (buffers[i] is { } b) d[$"state.{i}.{name}"] = b.Detach().Clone();
            if (MasterWeight(i) is { } m) d[$"state.{i}.master"] = m.Clone();
        }
        if (Schedule is not null)
            foreach (var (k, v) in Schedule.StateDict()) d[$"schedule.{k}"] = Tensor.Scalar(v, DType.Float64);
        return d;
    }

    /// <summary>Restores a state saved by <see cref="StateDict"/> from an optimizer of the same kind over the same parameters, copying into this one's buffers.</summary>
    /// <exception cref="ArgumentException">A key is missing or unknown, or a tensor has the wrong shape.</exception>
    public virtual void LoadStateDict(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var expected = new HashSet<string> { "step", "lr" };
        for (int i = 0; i < Parameters.Count; i++)
        {
            expected.Add($"state.{i}.step");
            foreach (var (name, buffers) in _state)
                if (buffers[i] is not null) expected.Add($"state.{i}.{name}");
            if (MasterWeight(i) is not null) expected.Add($"state.{i}.master");
        }
        var schedule = state.Where(kv => kv.Key.StartsWith("schedule.", StringComparison.Ordinal)).ToDictionary(kv => kv.Key["schedule.".Length..], kv => Scalar(kv.Key, kv.Value));
        var missing = expected.Where(k => !state.ContainsKey(k)).Order().ToArray();
        var unknown = state.Keys.Where(k => !expected.Contains(k) && !k.StartsWith("schedule.", StringComparison.Ordinal)).Order().ToArray();
        if (missing.Length > 0 || unknown.Length > 0)
            throw new ArgumentException($"optimizer state: missing [{string.Join(", ", missing)}], unexpected [{string.Join(", ", unknown)}] " +
                $"(saved from a different optimizer or parameter list? this one has {Parameters.Count} parameters and buffers [{string.Join(", ", _state.Select(s => s.Name))}])", nameof(state));
        foreach (var (name, buffers) in _state)
            for (int i = 0; i < Parameters.Count; i++)
            {
                if (buffers[i] is not { } b) continue;
                var src = state[$"state.{i}.{name}"];
                if (src.Shape != b.Shape)
                    throw new ArgumentException($"optimizer state: 'state.{i}.{name}' has shape {src.Shape}, parameter {i} has {b.Shape}", nameof(state));
            }
        foreach (var (name, buffers) in _state)
            for (int i = 0; i < Parameters.Count; i++)
                if (buffers[i] is { } b)
                    using (Autograd.NoGrad()) b.Copy_(state[$"state.{i}.{name}"].To(b.DType).To(b.Device));
        for (int i = 0; i < Parameters.Count; i++)
        {
            if (MasterWeight(i) is not { } m) continue;
            var src = state[$"state.{i}.master"];
            if (src.Shape != m.Shape) throw new ArgumentException($"optimizer state: 'state.{i}.master' has shape {src.Shape}, parameter {i} has {m.Shape}", nameof(state));
            using (Autograd.NoGrad()) m.Copy_(src.To(DType.Float32).To(m.Device));
        }
        for (int i = 0; i < Parameters.Count; i++) _steps[i] = Count(state, $"state.{i}.step");
        StepCount = Count(state, "step");
        LearningRate = Scalar("lr", state["lr"]);
        if (schedule.Count > 0)
        {
            if (Schedule is null) throw new ArgumentException($"optimizer state: it holds schedule state [{string.Join(", ", schedule.Keys)}] but this optimizer has no Schedule", nameof(state));
            Schedule.LoadStateDict(schedule);
        }
    }

    static double Scalar(string key, Tensor t) =>
        t.Numel == 1 ? t.Item() : throw new ArgumentException($"optimizer state: '{key}' must hold one value, has shape {t.Shape}", "state");

    static int Count(IReadOnlyDictionary<string, Tensor> state, string key)
    {
        double v = Scalar(key, state[key]);
        return v >= 0 && v <= int.MaxValue && v == Math.Floor(v) ? (int)v : throw new ArgumentException($"optimizer state: '{key}' must be a step count, got {v}", nameof(state));
    }
}

/// <summary>
/// A group of parameters with its own learning rate and weight decay (PyTorch's param_groups entry); null means the
/// optimizer's own value.
/// </summary>
public sealed class ParamGroup
{
    /// <summary>Creates a group of <paramref name="parameters"/> (duplicates are kept once).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative or non-finite learning rate or weight decay.</exception>
    public ParamGroup(IEnumerable<Parameter> parameters, double? learningRate = null, double? weightDecay = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (learningRate is { } lr && (!(lr >= 0) || double.IsInfinity(lr))) throw new ArgumentOutOfRangeException(nameof(learningRate), lr, "param group: learningRate must be finite and non-negative");
        if (weightDecay is { } wd && (!(wd >= 0) || double.IsInfinity(wd))) throw new ArgumentOutOfRangeException(nameof(weightDecay), wd, "param group: weightDecay must be finite and non-negative");
        Parameters = parameters.Distinct(ReferenceEqualityComparer.Instance).Cast<Parameter>().ToArray();
        LearningRate = learningRate; WeightDecay = weightDecay;
    }

    /// <summary>The group's parameters.</summary>
    public IReadOnlyList<Parameter> Parameters { get; }
    /// <summary>The group's learning rate, or null for the optimizer's.</summary>
    public double? LearningRate { get; }
    /// <summary>The group's weight decay, or null for the optimizer's.</summary>
    public double? WeightDecay { get; }
}

/// <summary>A built-in optimizer's fused CPU update: one SIMD pass over a contiguous parameter's elements.</summary>
internal interface IFusedCpuUpdate
{
    /// <summary>The update of parameter <paramref name="index"/> at its <paramref name="step"/>-th update (1-based).</summary>
    void UpdateCpu<T>(int index, Tensor param, Tensor grad, double lr, int step) where T : unmanaged, IFloatingPointIeee754<T>;
}

/// <summary>Spans over a contiguous CPU tensor's elements, for the fused updates.</summary>
file static class Cpu
{
    public static Span<T> Elems<T>(Tensor t) where T : unmanaged => ((CpuStorage)t.Storage).As<T>().AsSpan(t.Layout.Offset, t.Numel);
}

/// <summary>
/// Stochastic gradient descent with optional momentum (PyTorch's form: buf = mu buf + (1 - dampening) g, with buf = g
/// on the first step), Nesterov momentum (step along g + mu buf) and L2 weight decay (g += wd p).
/// </summary>
public sealed class SGD : Optimizer, IFusedCpuUpdate
{
    readonly Tensor[]? _buf;

    /// <summary>Creates the optimizer.</summary>
    /// <exception cref="ArgumentException">Nesterov without momentum or with dampening, or a negative hyperparameter.</exception>
    public SGD(IEnumerable<Parameter> parameters, double learningRate, double momentum = 0, double dampening = 0, bool nesterov = false, double weightDecay = 0)
        : this([new ParamGroup(parameters)], learningRate, momentum, dampening, nesterov, weightDecay) { }

    /// <summary>Creates the optimizer over parameter groups (each may set its own learning rate and weight decay).</summary>
    /// <exception cref="ArgumentException">Nesterov without momentum or with dampening, or a negative hyperparameter.</exception>
    public SGD(IEnumerable<ParamGroup> groups, double learningRate, double momentum = 0, double dampening = 0, bool nesterov = false, double weightDecay = 0)
        : base(groups, learningRate)
    {
        CheckNonNegative(momentum, nameof(momentum)); CheckNonNegative(dampening, nameof(dampening)); CheckNonNegative(weightDecay, nameof(weightDecay));
        if (nesterov && (momentum == 0 || dampening != 0))
            throw new ArgumentException($"sgd: Nesterov momentum needs momentum > 0 and dampening 0, got momentum {momentum}, dampening {dampening}", nameof(nesterov));
        Momentum = momentum; Dampening = dampening; Nesterov = nesterov; WeightDecay = weightDecay;
        if (momentum != 0) _buf = AddState("momentum_buffer");
    }

    /// <summary>Momentum factor mu.</summary>
    public double Momentum { get; }
    /// <summary>Dampening of the gradient's contribution to the momentum buffer.</summary>
    public double Dampening { get; }
    /// <summary>Whether to use Nesterov momentum.</summary>
    public bool Nesterov { get; }
    /// <summary>L2 penalty coefficient added to the gradient.</summary>
    public double WeightDecay { get; }

    void IFusedCpuUpdate.UpdateCpu<T>(int index, Tensor param, Tensor grad, double lr, int step)
    {
        var p = Cpu.Elems<T>(param);
        var g = Cpu.Elems<T>(grad);
        T wd = T.CreateTruncating(WeightDecayOf(index, WeightDecay)), mu = T.CreateTruncating(Momentum), damp = T.One - T.CreateTruncating(Dampening), a = T.CreateTruncating(lr);
        if (_buf is null)
        {
            for (int i = 0; i < p.Length; i++) p[i] -= a * (g[i] + wd * p[i]);
            return;
        }
        var b = Cpu.Elems<T>(_buf[index]);
        bool first = step == 1;
        for (int i = 0; i < p.Length; i++)
        {
            T d = g[i] + wd * p[i];
            T bi = first ? d : mu * b[i] + damp * d;
            b[i] = bi;
            p[i] -= a * (Nesterov ? d + mu * bi : bi);
        }
    }

    /// <inheritdoc/>
    protected override void Update(int index, Tensor param, Tensor grad, double lr, int step)
    {
        double wd = WeightDecayOf(index, WeightDecay);
        var d = wd != 0 ? grad + param * wd : grad;
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
public class Adam : Optimizer, IFusedCpuUpdate
{
    readonly Tensor[] _m, _v;

    /// <summary>Creates the optimizer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1) or a negative hyperparameter.</exception>
    public Adam(IEnumerable<Parameter> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0)
        : this([new ParamGroup(parameters)], learningRate, beta1, beta2, eps, weightDecay, decoupled: false) { }

    /// <summary>Creates the optimizer over parameter groups (each may set its own learning rate and weight decay).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1) or a negative hyperparameter.</exception>
    public Adam(IEnumerable<ParamGroup> groups, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0)
        : this(groups, learningRate, beta1, beta2, eps, weightDecay, decoupled: false) { }

    private protected Adam(IEnumerable<ParamGroup> groups, double learningRate, double beta1, double beta2, double eps, double weightDecay, bool decoupled)
        : base(groups, learningRate)
    {
        if (!(beta1 >= 0 && beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, "adam: beta1 must be in [0, 1)");
        if (!(beta2 >= 0 && beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, "adam: beta2 must be in [0, 1)");
        CheckNonNegative(eps, nameof(eps)); CheckNonNegative(weightDecay, nameof(weightDecay));
        Beta1 = beta1; Beta2 = beta2; Eps = eps; WeightDecay = weightDecay; Decoupled = decoupled;
        _m = AddState("exp_avg");
        _v = AddState("exp_avg_sq");
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

    // Elements of a parameter below which its update stays on the calling thread.
    const int ParallelElements = 1 << 16;

    void IFusedCpuUpdate.UpdateCpu<T>(int index, Tensor param, Tensor grad, double lr, int step)
    {
        var (mState, vState) = (_m[index], _v[index]);
        double bc1 = 1 - Math.Pow(Beta1, step), bc2 = 1 - Math.Pow(Beta2, step);
        bool textbook = Textbook;
        T b1 = T.CreateTruncating(Beta1), b2 = T.CreateTruncating(Beta2);
        // The textbook form rounds each constant to T from double, as the tensor ops round their scalars.
        T c1 = textbook ? T.CreateTruncating(1 - Beta1) : T.One - b1, c2 = textbook ? T.CreateTruncating(1 - Beta2) : T.One - b2;
        T stepSize = T.CreateTruncating(lr / bc1), rbc2 = T.CreateTruncating(1 / Math.Sqrt(bc2)), eps = T.CreateTruncating(Eps);
        T tbc1 = T.CreateTruncating(bc1), tbc2 = T.CreateTruncating(bc2), tlr = T.CreateTruncating(lr);
        double wd = WeightDecayOf(index, WeightDecay);
        T l2 = Decoupled ? T.Zero : T.CreateTruncating(wd);
        T shrink = T.CreateTruncating(Decoupled ? 1 - lr * wd : 1);
        // The update streams four arrays (a large model's exceed the caches), so a large parameter is split over the
        // worker team in runs of whole vectors, each thread taking the same run every step (home blocks); each
        // element's arithmetic is the same whatever the split.
        int n = param.Numel, lanes = Vector<T>.Count, parts = Math.Min(WorkerTeam.Threads, n / ParallelElements);
        if (parts <= 1) Range(0, n);
        else WorkerTeam.For(parts, t => Range((int)((long)n * t / parts) / lanes * lanes, t + 1 == parts ? n : (int)((long)n * (t + 1) / parts) / lanes * lanes), homeBlocks: true);

        void Range(int start, int end)
        {
            var p = Cpu.Elems<T>(param)[start..end];
            var g = Cpu.Elems<T>(grad)[start..end];
            var m = Cpu.Elems<T>(mState)[start..end];
            var v = Cpu.Elems<T>(vState)[start..end];
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
    }

    /// <inheritdoc/>
    protected override void Update(int index, Tensor param, Tensor grad, double lr, int step)
    {
        double bc1 = 1 - Math.Pow(Beta1, step), bc2 = 1 - Math.Pow(Beta2, step);
        double wd = WeightDecayOf(index, WeightDecay);
        var g = !Decoupled && wd != 0 ? grad + param * wd : grad;
        var m = _m[index].Mul_(Beta1).Add_(g * (1 - Beta1));
        var v = _v[index].Mul_(Beta2).Add_(g.Square() * (1 - Beta2));
        if (Decoupled && wd != 0) param.Mul_(1 - lr * wd);
        param.Sub_(Textbook ? m / bc1 / ((v / bc2).Sqrt() + Eps) * lr : m * (lr / bc1) / (v.Sqrt() * (1 / Math.Sqrt(bc2)) + Eps));
    }
}

/// <summary>
/// AdamW (Loshchilov and Hutter 2019): Adam with decoupled weight decay, p -= lr wd p before the Adam step, so the
/// decay does not pass through the adaptive scaling. Default weight decay 0.01 as in PyTorch.
/// </summary>
public sealed class AdamW : Adam
{
    /// <summary>Creates the optimizer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1) or a negative hyperparameter.</exception>
    public AdamW(IEnumerable<Parameter> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.01)
        : base([new ParamGroup(parameters)], learningRate, beta1, beta2, eps, weightDecay, decoupled: true) { }

    /// <summary>Creates the optimizer over parameter groups (each may set its own learning rate and weight decay).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A beta outside [0, 1) or a negative hyperparameter.</exception>
    public AdamW(IEnumerable<ParamGroup> groups, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.01)
        : base(groups, learningRate, beta1, beta2, eps, weightDecay, decoupled: true) { }
}

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
/// A learning-rate schedule: the rate for each 0-based step. The built-ins are pure functions of the step (constant,
/// cosine, linear, step, multi-step, exponential, any function), optionally after a linear warmup: with w warmup steps
/// the rate rises as peak (s + 1) / w for s &lt; w (so the first step is not wasted at zero) and the schedule then runs
/// from its own step 0. <see cref="ReduceLrOnPlateau"/> follows a reported metric instead.
/// </summary>
/// <remarks>
/// A custom schedule derives from this class and implements <see cref="Rate"/>; one with state that is not a function
/// of the step overrides <see cref="StateDict"/> and <see cref="LoadStateDict"/>, which the optimizer's state carries.
/// </remarks>
public abstract class LrSchedule
{
    /// <summary>The learning rate at 0-based step <paramref name="step"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">step is negative.</exception>
    public double At(int step)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "lr schedule: step must be non-negative");
        return Rate(step);
    }

    /// <summary>The rate at a non-negative step.</summary>
    protected abstract double Rate(int step);

    /// <summary>State that is not a function of the step (none for the built-in step schedules).</summary>
    public virtual IReadOnlyDictionary<string, double> StateDict() => new Dictionary<string, double>();

    /// <summary>Restores what <see cref="StateDict"/> returned.</summary>
    /// <exception cref="ArgumentException">The state has keys this schedule does not know.</exception>
    public virtual void LoadStateDict(IReadOnlyDictionary<string, double> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Count > 0) throw new ArgumentException($"lr schedule: {GetType().Name} has no state, got [{string.Join(", ", state.Keys)}]", nameof(state));
    }

    /// <summary>This schedule after <paramref name="steps"/> warmup steps rising linearly to its step-0 rate.</summary>
    public LrSchedule WithWarmup(int steps) => Warmup(steps, this, () => At(0));

    static LrSchedule Warmup(int steps, LrSchedule then, Func<double> peak)
    {
        if (steps < 0) throw new ArgumentOutOfRangeException(nameof(steps), steps, "lr schedule: warmup must be non-negative");
        return steps == 0 ? then : new Function(s => s < steps ? peak() * (s + 1) / steps : then.At(s - steps));
    }

    static void Check(double lr, int warmup, int total)
    {
        if (!(lr >= 0) || double.IsInfinity(lr)) throw new ArgumentOutOfRangeException(nameof(lr), lr, "lr schedule: lr must be finite and non-negative");
        if (warmup < 0) throw new ArgumentOutOfRangeException(nameof(warmup), warmup, "lr schedule: warmup must be non-negative");
        if (total < warmup) throw new ArgumentOutOfRangeException(nameof(total), total, $"lr schedule: total steps {total} must be at least the warmup {warmup}");
    }

    static double Progress(int s, int total) => Math.Min(1.0, s / (double)Math.Max(1, total));

    static void CheckGamma(double gamma)
    {
        if (!(gamma > 0) || double.IsInfinity(gamma)) throw new ArgumentOutOfRangeException(nameof(gamma), gamma, "lr schedule: gamma must be positive and finite");
    }

    sealed class Function(Func<int, double> rate) : LrSchedule
    {
        protected override double Rate(int step) => rate(step);
    }

    /// <summary>A constant rate after an optional linear warmup.</summary>
    public static LrSchedule Constant(double lr, int warmup = 0)
    {
        Check(lr, warmup, warmup);
        return Warmup(warmup, new Function(_ => lr), () => lr);
    }

    /// <summary>Warmup, then cosine decay from lr to minLr over the remaining total - warmup steps: minLr + (lr - minLr)(1 + cos(pi q)) / 2, q the progress in [0, 1].</summary>
    public static LrSchedule Cosine(double lr, int total, double minLr = 0, int warmup = 0)
    {
        Check(lr, warmup, total);
        return Warmup(warmup, new Function(s => minLr + (lr - minLr) * 0.5 * (1 + Math.Cos(Math.PI * Progress(s, total - warmup)))), () => lr);
    }

    /// <summary>Warmup, then linear decay from lr to endLr over the remaining steps: lr + (endLr - lr) q.</summary>
    public static LrSchedule Linear(double lr, int total, double endLr = 0, int warmup = 0)
    {
        Check(lr, warmup, total);
        return Warmup(warmup, new Function(s => lr + (endLr - lr) * Progress(s, total - warmup)), () => lr);
    }

    /// <summary>lr gamma^floor(s / stepSize): decays by gamma every stepSize steps (PyTorch's StepLR).</summary>
    public static LrSchedule Step(double lr, int stepSize, double gamma = 0.1)
    {
        Check(lr, 0, 0); CheckGamma(gamma);
        if (stepSize < 1) throw new ArgumentOutOfRangeException(nameof(stepSize), stepSize, "lr schedule: stepSize must be at least 1");
        return new Function(s => lr * Math.Pow(gamma, s / stepSize));
    }

    /// <summary>lr gamma^k, k the number of milestones at or below s (PyTorch's MultiStepLR).</summary>
    public static LrSchedule MultiStep(double lr, IReadOnlyList<int> milestones, double gamma = 0.1)
    {
        Check(lr, 0, 0); CheckGamma(gamma);
        ArgumentNullException.ThrowIfNull(milestones);
        int[] m = [.. milestones];
        for (int i = 0; i < m.Length; i++)
            if (m[i] < 0 || (i > 0 && m[i] <= m[i - 1]))
                throw new ArgumentException($"lr schedule: milestones must be non-negative and increasing, got [{string.Join(", ", m)}]", nameof(milestones));
        return new Function(s => lr * Math.Pow(gamma, m.Count(x => x <= s)));
    }

    /// <summary>lr gamma^s (PyTorch's ExponentialLR).</summary>
    public static LrSchedule Exponential(double lr, double gamma)
    {
        Check(lr, 0, 0); CheckGamma(gamma);
        return new Function(s => lr * Math.Pow(gamma, s));
    }

    /// <summary>Any function of the step (PyTorch's LambdaLR with the base rate folded in).</summary>
    public static LrSchedule FromFunction(Func<int, double> rate)
    {
        ArgumentNullException.ThrowIfNull(rate);
        return new Function(rate);
    }
}

/// <summary>
/// PyTorch's ReduceLROnPlateau: after <see cref="Patience"/> reports without improvement on the best metric (by more than
/// <see cref="Threshold"/>, relative or absolute), the rate is multiplied by <see cref="Factor"/> (not below
/// <see cref="MinLr"/>), then <see cref="Cooldown"/> reports pass before counting again. Report the validation metric
/// with <see cref="Report"/> (once per epoch, say); <see cref="LrSchedule.At"/> returns the current rate at any step.
/// </summary>
public sealed class ReduceLrOnPlateau : LrSchedule
{
    double _lr, _best;
    int _bad, _cooldownLeft;

    /// <summary>Creates the schedule at rate <paramref name="lr"/>; <paramref name="maximize"/> when a larger metric is better.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A factor outside (0, 1), or a negative patience, threshold, cooldown or rate.</exception>
    public ReduceLrOnPlateau(double lr, double factor = 0.1, int patience = 10, double threshold = 1e-4, bool relativeThreshold = true,
        int cooldown = 0, double minLr = 0, double eps = 1e-8, bool maximize = false)
    {
        if (!(lr >= 0) || double.IsInfinity(lr)) throw new ArgumentOutOfRangeException(nameof(lr), lr, "reduce_lr_on_plateau: lr must be finite and non-negative");
        if (!(factor > 0 && factor < 1)) throw new ArgumentOutOfRangeException(nameof(factor), factor, "reduce_lr_on_plateau: factor must be in (0, 1)");
        if (patience < 0) throw new ArgumentOutOfRangeException(nameof(patience), patience, "reduce_lr_on_plateau: patience must be non-negative");
        if (!(threshold >= 0)) throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "reduce_lr_on_plateau: threshold must be non-negative");
        if (cooldown < 0) throw new ArgumentOutOfRangeException(nameof(cooldown), cooldown, "reduce_lr_on_plateau: cooldown must be non-negative");
        if (!(minLr >= 0)) throw new ArgumentOutOfRangeException(nameof(minLr), minLr, "reduce_lr_on_plateau: minLr must be non-negative");
        _lr = lr; Factor = factor; Patience = patience; Threshold = threshold; RelativeThreshold = relativeThreshold;
        Cooldown = cooldown; MinLr = minLr; Eps = eps; Maximize = maximize;
        _best = maximize ? double.NegativeInfinity : double.PositiveInfinity;
    }

    /// <summary>Multiplier of the rate on a plateau.</summary>
    public double Factor { get; }
    /// <summary>Reports without improvement tolerated before the rate drops.</summary>
    public int Patience { get; }
    /// <summary>The least improvement that counts.</summary>
    public double Threshold { get; }
    /// <summary>Whether <see cref="Threshold"/> is relative to the best metric (else absolute).</summary>
    public bool RelativeThreshold { get; }
    /// <summary>Reports ignored after a drop.</summary>
    public int Cooldown { get; }
    /// <summary>The rate never drops below this.</summary>
    public double MinLr { get; }
    /// <summary>A drop smaller than this is skipped.</summary>
    public double Eps { get; }
    /// <summary>True when a larger metric is better.</summary>
    public bool Maximize { get; }
    /// <summary>The current rate.</summary>
    public double CurrentRate => _lr;

    /// <inheritdoc/>
    protected override double Rate(int step) => _lr;

    /// <summary>Reports a metric (after an epoch); lowers the rate when it has not improved for more than <see cref="Patience"/> reports.</summary>
    /// <exception cref="ArgumentException">The metric is NaN.</exception>
    public void Report(double metric)
    {
        if (double.IsNaN(metric)) throw new ArgumentException("reduce_lr_on_plateau: the reported metric is NaN", nameof(metric));
        // PyTorch's comparisons, as written there (a relative threshold scales the best value, sign included).
        bool better = (Maximize, RelativeThreshold) switch
        {
            (false, true) => metric < _best * (1 - Threshold),
            (true, true) => metric > _best * (1 + Threshold),
            (false, false) => metric < _best - Threshold,
            (true, false) => metric > _best + Threshold,
        };
        if (better) { _best = metric; _bad = 0; }
        else _bad++;
        if (_cooldownLeft > 0) { _cooldownLeft--; _bad = 0; }
        if (_bad > Patience)
        {
            double next = Math.Max(_lr * Factor, MinLr);
            if (_lr - next > Eps) _lr = next;
            _cooldownLeft = Cooldown;
            _bad = 0;
        }
    }

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, double> StateDict() =>
        new Dictionary<string, double> { ["lr"] = _lr, ["best"] = _best, ["bad_epochs"] = _bad, ["cooldown_left"] = _cooldownLeft };

    /// <inheritdoc/>
    public override void LoadStateDict(IReadOnlyDictionary<string, double> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        string[] keys = ["lr", "best", "bad_epochs", "cooldown_left"];
        if (keys.Any(k => !state.ContainsKey(k)) || state.Count != keys.Length)
            throw new ArgumentException($"reduce_lr_on_plateau: state needs exactly [{string.Join(", ", keys)}], got [{string.Join(", ", state.Keys)}]", nameof(state));
        (_lr, _best, _bad, _cooldownLeft) = (state["lr"], state["best"], (int)state["bad_epochs"], (int)state["cooldown_left"]);
    }
}
