namespace Kiln;

/// <summary>One recorded op: its inputs and the rule that maps the output's gradient to theirs (written in tensor ops,
/// so it runs on any device and can itself be differentiated).</summary>
internal sealed class GradNode(string op, Tensor[] inputs, Func<Tensor, Tensor?[]> backward, string? trace = null)
{
    public string Op { get; } = op;
    /// <summary>Where the forward op was called (recorded only under <see cref="Autograd.DetectAnomaly"/>).</summary>
    public string? Trace { get; } = trace;
    public Tensor[] Inputs { get; private set; } = inputs;
    public Func<Tensor, Tensor?[]>? Backward { get; private set; } = backward;

    /// <summary>Drops the saved inputs and rule so their memory can go (after a backward without retainGraph).</summary>
    public void Release() { Inputs = []; Backward = null; }
}

/// <summary>Reverse-mode automatic differentiation: gradient mode, backward passes, and vector products.</summary>
public static class Autograd
{
    // The innermost grad-mode scope, flowing with the async execution context as TensorScope's does.
    static readonly AsyncLocal<GradModeScope?> _gradMode = new();

    /// <summary>True when ops record their gradient rules (the default; off inside <see cref="NoGrad"/>).</summary>
    public static bool IsEnabled => GradModeScope.Open(_gradMode.Value)?.Enabled ?? true;

    /// <summary>
    /// Turns recording off until the returned scope is disposed: <c>using (Autograd.NoGrad()) { ... }</c>. The scope
    /// flows with the async execution context (as <see cref="TensorScope"/> does): it covers the code that opened it
    /// across <c>await</c>s and thread switches, and the tasks that code starts; concurrent tasks never see each
    /// other's. It may be disposed on any thread; once disposed it covers nothing.
    /// </summary>
    public static IDisposable NoGrad() => new GradModeScope(enabled: false);

    // AsyncLocal so a scope opened around an async training step covers its continuations on other threads.
    static readonly AsyncLocal<int> _anomalyDepth = new();

    /// <summary>True inside <see cref="DetectAnomaly"/>.</summary>
    public static bool IsAnomalyEnabled => _anomalyDepth.Value > 0;

    /// <summary>
    /// Anomaly detection until the returned scope is disposed (PyTorch's <c>torch.autograd.detect_anomaly</c>):
    /// <c>using (Autograd.DetectAnomaly()) { loss.Backward(); }</c>. Ops recorded inside it keep a short trace of
    /// where they were called, and every backward run inside it checks each gradient an op's rule produces, stopping
    /// at the first one holding a NaN or an infinity. Each check reads the gradient back to the host, so use it to
    /// debug, not to train. The scope flows into async continuations and tasks started inside it.
    /// </summary>
    /// <remarks>A backward rule that produces a non-finite gradient throws <see cref="AnomalyException"/>, naming
    /// the op, the input, and (for ops recorded inside the scope) the forward call site.</remarks>
    public static IDisposable DetectAnomaly() => new AnomalyScope();

    sealed class AnomalyScope : IDisposable
    {
        bool _done;
        public AnomalyScope() => _anomalyDepth.Value++;
        public void Dispose() { if (!_done) { _done = true; _anomalyDepth.Value--; } }
    }

    // The first few call sites outside the Kiln core assembly: the user's line that ran the op, not Kiln's internals.
    internal static string ForwardTrace()
    {
        var core = typeof(Tensor).Assembly;
        var lines = new System.Diagnostics.StackTrace(2, true).GetFrames()
            .Where(f => f.GetMethod() is { } m && m.DeclaringType?.Assembly != core)
            .Take(4)
            .Select(f =>
            {
                var m = f.GetMethod()!;
                var at = f.GetFileName() is { } file ? $" in {Path.GetFileName(file)}:line {f.GetFileLineNumber()}" : "";
                return $"   at {m.DeclaringType?.FullName}.{m.Name}{at}";
            });
        return string.Join(Environment.NewLine, lines);
    }

    // NoGrad (enabled: false) or the backward's own enable-grad scope under createGraph: a chain of scopes, so a scope
    // disposed from another flow (where it cannot be current) is skipped by everyone still pointing at it.
    sealed class GradModeScope : IDisposable
    {
        readonly GradModeScope? _parent;
        volatile bool _disposed;

        public GradModeScope(bool enabled) { Enabled = enabled; _parent = Open(_gradMode.Value); _gradMode.Value = this; }

        public bool Enabled { get; }

        public static GradModeScope? Open(GradModeScope? s)
        {
            while (s is { _disposed: true }) s = s._parent;
            return s;
        }

        public void Dispose()
        {
            _disposed = true;
            if (ReferenceEquals(_gradMode.Value, this)) _gradMode.Value = Open(_parent);
        }
    }

    /// <summary>
    /// Gradients of sum_i &lt;gradOutputs[i], outputs[i]&gt; with respect to each of <paramref name="inputs"/>
    /// (a tensor of zeros for an input the outputs do not depend on). With <paramref name="createGraph"/> the
    /// gradients are themselves recorded, so they can be differentiated again (Hessian-vector products, gradient
    /// penalties). Without <paramref name="retainGraph"/> (default: same as createGraph) the graph is freed.
    /// </summary>
    /// <exception cref="ArgumentException">An output is not scalar and has no seed, or a seed's shape differs.</exception>
    /// <exception cref="InvalidOperationException">The graph was already freed by an earlier backward.</exception>
    public static Tensor[] Grad(Tensor[] outputs, Tensor[] inputs, Tensor[]? gradOutputs = null, bool createGraph = false, bool? retainGraph = null)
    {
        var grads = Run(outputs, gradOutputs, createGraph, retainGraph ?? createGraph, inputs);
        return inputs.Select(x => grads.TryGetValue(x, out var g) ? g : x.ZerosLike()).ToArray();
    }

    /// <summary>Gradient of a scalar <paramref name="output"/> with respect to <paramref name="input"/>.</summary>
    public static Tensor Grad(Tensor output, Tensor input, bool createGraph = false) => Grad([output], [input], null, createGraph)[0];

    /// <summary>Vector-Jacobian product v^T J_f(x) of <paramref name="f"/> at <paramref name="x"/>.</summary>
    public static Tensor Vjp(Func<Tensor, Tensor> f, Tensor x, Tensor v, bool createGraph = false)
    {
        var xi = x.Detach().RequiresGrad_();
        var y = f(xi);
        return Grad([y], [xi], [v], createGraph)[0];
    }

    /// <summary>
    /// Jacobian-vector product J_f(x) v by the double-vjp trick: u -> v^T J^T u is linear in u, so its gradient in u is J v.
    /// </summary>
    public static Tensor Jvp(Func<Tensor, Tensor> f, Tensor x, Tensor v)
    {
        var xi = x.Detach().RequiresGrad_();
        var y = f(xi);
        var u = y.ZerosLike().RequiresGrad_();
        var g = Grad([y], [xi], [u], createGraph: true)[0];
        return Grad([g], [u], [v])[0];
    }

    /// <summary>Hessian-vector product H v of a scalar function at <paramref name="x"/> (gradient of &lt;grad f, v&gt;).</summary>
    public static Tensor Hvp(Func<Tensor, Tensor> f, Tensor x, Tensor v)
    {
        var xi = x.Detach().RequiresGrad_();
        var g = Grad([f(xi)], [xi], null, createGraph: true)[0];
        return Grad([(g * v).Sum()], [xi])[0];
    }

    internal static void Accumulate(Tensor output, Tensor? seed, bool retainGraph, bool createGraph)
    {
        // Each leaf's gradient is accumulated as soon as the reverse sweep has differentiated its last use, so that its
        // post-accumulate hooks (data-parallel gradient all-reduce) overlap with the rest of the backward.
        Run([output], seed is null ? null : [seed], createGraph, retainGraph, null, (t, g) =>
        {
            if (!t.RequiresGrad) return;
            using (createGraph ? null : NoGrad())
            {
                var gd = createGraph ? g : g.Detach();
                t.Grad = t.Grad is null ? gd : t.Grad + gd;
            }
            t.RunPostAccumulateGradHooks();
        });
    }

    static Dictionary<Tensor, Tensor> Run(Tensor[] outputs, Tensor[]? seeds, bool createGraph, bool retainGraph, Tensor[]? wanted,
        Action<Tensor, Tensor>? leafDone = null)
    {
        var grads = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < outputs.Length; i++)
        {
            var y = outputs[i];
            Tensor seed;
            if (seeds is not null && seeds[i] is not null)
            {
                if (seeds[i].Shape != y.Shape) throw new ShapeMismatchException("backward", "gradOutputs", y.Shape, seeds[i].Shape, "the seed must have the output's shape");
                seed = seeds[i];
            }
            else
            {
                if (y.Numel != 1) throw new ArgumentException($"backward: output has shape {y.Shape}; pass a seed gradient of that shape for a non-scalar output", nameof(outputs));
                seed = y.OnesLike();
            }
            if (!y.RequiresGrad) throw new ArgumentException("backward: the output does not depend on any tensor that requires grad", nameof(outputs));
            grads[y] = grads.TryGetValue(y, out var prev) ? prev + seed : seed;
        }

        // Topological order by iterative depth-first search (no recursion: deep graphs must not overflow the stack).
        var order = new List<Tensor>();
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<(Tensor T, bool Done)>();
        // With leafDone: how many recorded uses of each leaf, and of each op fed by leaves only, are still to be differentiated.
        var pending = leafDone is null ? null : new Dictionary<Tensor, int>(ReferenceEqualityComparer.Instance);
        foreach (var y in outputs) stack.Push((y, false));
        while (stack.Count > 0)
        {
            var (t, done) = stack.Pop();
            if (done) { order.Add(t); continue; }
            if (!seen.Add(t)) continue;
            stack.Push((t, true));
            if (t.Node is { } node)
            {
                if (node.Backward is null)
                    throw new InvalidOperationException($"backward: the graph through '{node.Op}' was freed by an earlier backward; pass retainGraph: true to backward through it twice");
                foreach (var x in node.Inputs)
                {
                    if (!x.RequiresGrad) continue;
                    if (pending is not null && (x.IsLeaf || LeafFed(x))) pending[x] = pending.GetValueOrDefault(x) + 1;
                    if (!seen.Contains(x)) stack.Push((x, false));
                }
            }
        }

        var keep = wanted is null ? null : new HashSet<Tensor>(wanted, ReferenceEqualityComparer.Instance);
        var early = pending is null ? null : new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        using (new GradModeScope(enabled: createGraph))
        {
            for (int k = order.Count - 1; k >= 0; k--)
                if (order[k].Node is { } node && early?.Contains(order[k]) != true) Process(order[k], node);
            // Leaves no op consumed (an output that is itself a leaf) are done now.
            if (leafDone is not null)
                foreach (var t in order)
                    if (t.IsLeaf && grads.Remove(t, out var g)) leafDone(t, g);
        }
        return grads;

        // One op's backward: its output's gradient, if any reached it, to its inputs' gradients.
        void Process(Tensor t, GradNode node)
        {
            var inputs = node.Inputs;
            if (grads.TryGetValue(t, out var g))
            {
                var inGrads = node.Backward!(g);
                bool anomaly = IsAnomalyEnabled;
                for (int i = 0; i < inputs.Length; i++)
                {
                    var x = inputs[i];
                    var gi = inGrads[i];
                    if (gi is null || !x.RequiresGrad) continue;
                    if (gi.Shape != x.Shape) throw new InvalidOperationException($"backward of '{node.Op}' produced a gradient of shape {gi.Shape} for an input of shape {x.Shape}");
                    if (anomaly) CheckFinite(node, i, gi);
                    grads[x] = grads.TryGetValue(x, out var acc) ? acc + gi : gi;
                }
                if (keep is null || !keep.Contains(t)) grads.Remove(t);
                if (!retainGraph) node.Release();
            }
            Consumed(inputs);
        }

        // With leafDone, a leaf's gradient is handed over once every recorded use of it has been differentiated, so its
        // hooks (data-parallel all-reduce) overlap with the rest of the backward. An op fed by leaves only (a weight's
        // transpose) runs as soon as its own uses are done instead of where the depth-first order puts it, which can be
        // after the whole network below; it only adds into leaves, so no other sum changes order.
        void Consumed(Tensor[] inputs)
        {
            if (pending is null) return;
            foreach (var x in inputs)
            {
                if (!x.RequiresGrad || !pending.ContainsKey(x) || --pending[x] > 0) continue;
                if (x.Node is { } fed) { early!.Add(x); Process(x, fed); }
                else if (grads.Remove(x, out var gx)) leafDone!(x, gx);
            }
        }

        static void CheckFinite(GradNode node, int input, Tensor gi)
        {
            long bad;
            using (NoGrad()) bad = (!gi.IsFinite()).To(DType.Int64).Sum().Item<long>();
            if (bad > 0) throw new AnomalyException(node.Op, input, bad, gi.Numel, node.Trace);
        }

        static bool LeafFed(Tensor x) => x.Node!.Inputs.All(i => !i.RequiresGrad || i.IsLeaf);
    }
}

/// <summary>
/// A backward pass under <see cref="Autograd.DetectAnomaly"/> met a gradient holding a NaN or an infinity: the first
/// op (in reverse order) whose backward rule produced one.
/// </summary>
public sealed class AnomalyException : InvalidOperationException
{
    internal AnomalyException(string op, int input, long nonFinite, long numel, string? trace)
        : base($"backward of '{op}' produced a gradient with {nonFinite} non-finite value(s) of {numel} for its input {input}" +
               (trace is null
                   ? " (the op was recorded outside Autograd.DetectAnomaly(), so its forward call site is unknown)"
                   : $"; the forward op was called{Environment.NewLine}{trace}"))
    {
        Op = op; Input = input; ForwardTrace = trace;
    }

    /// <summary>The op whose backward rule produced the non-finite gradient.</summary>
    public string Op { get; }

    /// <summary>The position, among the op's inputs, of the input whose gradient is non-finite.</summary>
    public int Input { get; }

    /// <summary>Where the forward op was called (the first frames outside Kiln), or null when it was recorded outside the anomaly scope.</summary>
    public string? ForwardTrace { get; }
}

public partial class Tensor
{
    internal GradNode? Node { get; private set; }
    bool _requiresGrad;

    /// <summary>True when gradients flow to this tensor: set on leaves by the user, inherited by op results.</summary>
    public bool RequiresGrad
    {
        get => _requiresGrad;
        set
        {
            if (!IsLeaf) throw new InvalidOperationException("requires_grad can only be set on leaf tensors; use Detach() for a new leaf");
            if (value && !DType.IsFloating() && !DType.IsHalf()) throw new InvalidOperationException($"requires_grad: only floating tensors can require gradients, not {DType}");
            _requiresGrad = value;
        }
    }

    /// <summary>Marks this leaf as requiring gradients; returns it.</summary>
    public Tensor RequiresGrad_(bool value = true) { RequiresGrad = value; return this; }

    List<Action<Tensor>>? _postAccumulateGradHooks;

    /// <summary>
    /// Calls <paramref name="hook"/> with this leaf each time a <see cref="Backward"/> has accumulated its gradient into
    /// <see cref="Grad"/>: at the point of the reverse sweep where the gradient is final, before the rest of the
    /// backward runs (PyTorch's <c>register_post_accumulate_grad_hook</c>). Hooks run in registration order on the
    /// thread of the backward. Dispose the returned handle to remove the hook.
    /// </summary>
    /// <exception cref="InvalidOperationException">This tensor is not a leaf.</exception>
    public IDisposable RegisterPostAccumulateGradHook(Action<Tensor> hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        if (!IsLeaf) throw new InvalidOperationException("register_post_accumulate_grad_hook: only leaf tensors accumulate gradients; this tensor is an op result");
        (_postAccumulateGradHooks ??= []).Add(hook);
        return new HookHandle(this, hook);
    }

    sealed class HookHandle(Tensor owner, Action<Tensor> hook) : IDisposable
    {
        public void Dispose() => owner._postAccumulateGradHooks?.Remove(hook);
    }

    internal void RunPostAccumulateGradHooks()
    {
        if (_postAccumulateGradHooks is not { } hooks) return;
        foreach (var h in hooks.ToArray()) h(this);
    }

    /// <summary>True for tensors not produced by a recorded op.</summary>
    public bool IsLeaf => Node is null;

    /// <summary>The accumulated gradient of a leaf after <see cref="Backward"/>.</summary>
    public Tensor? Grad { get; set; }

    /// <summary>A view of the same memory outside the graph (a new leaf that does not require grad).</summary>
    public Tensor Detach() => new(Storage, Layout);

    /// <summary>
    /// Backpropagates from this tensor (a scalar, or any shape with a <paramref name="seed"/> of that shape) and adds
    /// the gradients into <see cref="Grad"/> of every leaf that requires grad.
    /// </summary>
    public void Backward(Tensor? seed = null, bool retainGraph = false, bool createGraph = false) =>
        Autograd.Accumulate(this, seed, retainGraph || createGraph, createGraph);

    /// <summary>
    /// Whether an op on <paramref name="a"/> (and <paramref name="b"/>, <paramref name="c"/>) would be recorded. Hot ops
    /// test it before building their gradient closure and input array, which an inference call would otherwise allocate
    /// and drop every time.
    /// </summary>
    internal static bool Tracks(Tensor a, Tensor? b = null, Tensor? c = null) =>
        (a._requiresGrad || b is { _requiresGrad: true } || c is { _requiresGrad: true }) && Autograd.IsEnabled;

    /// <summary>Records <paramref name="result"/> as produced by <paramref name="op"/> from <paramref name="inputs"/> when any of them requires grad.</summary>
    internal static Tensor Record(Tensor result, string op, Tensor[] inputs, Func<Tensor, Tensor?[]> backward)
    {
        if (!Autograd.IsEnabled) return result;
        foreach (var x in inputs)
        {
            if (x.RequiresGrad)
            {
                result.Node = new GradNode(op, inputs, backward, Autograd.IsAnomalyEnabled ? Autograd.ForwardTrace() : null);
                result._requiresGrad = true;
                return result;
            }
        }
        return result;
    }

    /// <summary>
    /// A user-defined differentiable op: <paramref name="forward"/> runs without recording, and <paramref name="backward"/>
    /// maps the output gradient to one gradient per input (null where none), written in tensor ops.
    /// Use it for straight-through estimators, rotation tricks, or fused ops with a hand-written gradient.
    /// </summary>
    public static Tensor Custom(string name, Tensor[] inputs, Func<Tensor[], Tensor> forward, Func<Tensor, Tensor?[]> backward)
    {
        Tensor y;
        using (Autograd.NoGrad()) y = forward(inputs);
        if (ReferenceEquals(y, inputs.FirstOrDefault())) y = y.Detach();
        return Record(y, name, inputs, g =>
        {
            var gs = backward(g);
            if (gs.Length != inputs.Length) throw new InvalidOperationException($"custom op '{name}': backward returned {gs.Length} gradients for {inputs.Length} inputs");
            return gs;
        });
    }

    void CheckInPlace(string op)
    {
        Storage.ThrowIfDisposed(op);
        if (Autograd.IsEnabled && (RequiresGrad || !IsLeaf && Node is not null))
            throw new InvalidOperationException($"{op}: in-place change of a tensor that is part of the autodiff graph; do it inside Autograd.NoGrad() or on a Detach()ed copy");
    }
}
