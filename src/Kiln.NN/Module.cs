namespace Kiln.NN;

/// <summary>
/// A trainable tensor owned by a module (PyTorch's nn.Parameter): a contiguous leaf tensor that requires gradients, so it
/// is usable wherever a <see cref="Tensor"/> is (<c>lin.Weight * 2.0</c>, <c>lin.Weight.Sum()</c>). Optimizers and
/// <see cref="Module.LoadStateDict"/> update its elements in place and <see cref="Module.To(Device)"/> moves it in
/// place, so the object never changes and references to it (in optimizers, in user code) stay valid.
/// </summary>
public sealed class Parameter : Tensor
{
    /// <summary>Wraps a contiguous copy of <paramref name="value"/>'s elements (or <paramref name="value"/>'s own, when it is a contiguous leaf) as a parameter.</summary>
    /// <exception cref="NotSupportedException">The tensor is not floating (Float32, Float64, BFloat16, Float16).</exception>
    public Parameter(Tensor value, bool requiresGrad = true) : base(Checked(value))
    {
        RequiresGrad = requiresGrad;
    }

    static Tensor Checked(Tensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (!value.DType.IsFloating())
            throw new NotSupportedException($"parameter: dtype {value.DType} cannot hold a trainable parameter; use a floating dtype");
        return value.Detach().Contiguous();
    }

    /// <summary>The parameter itself, as a plain <see cref="Tensor"/> (kept for code written when a parameter wrapped one).</summary>
    public Tensor Value => this;

    /// <summary>"Parameter containing:" and the values, as PyTorch prints a parameter.</summary>
    public override string ToString() => "Parameter containing:\n" + base.ToString();
}

/// <summary>
/// The base of every layer and model: holds named parameters, buffers and child modules, switches train/eval mode
/// for the whole tree, and reads and writes state dictionaries keyed by dotted names (<c>layers.0.weight</c>), the
/// same keys PyTorch uses for the same structure. Create modules outside any <see cref="Tensor.Scope"/> whose
/// tensors should not outlive it.
/// </summary>
public abstract class Module
{
    readonly List<(string Name, Parameter Param)> _params = [];
    readonly List<(string Name, Tensor Buffer, bool Persistent)> _buffers = [];
    readonly List<(string Name, Module Child)> _children = [];

    /// <summary>True in training mode (the default): dropout drops. Set for the whole tree by <see cref="Train"/> and <see cref="Eval"/>.</summary>
    public bool Training { get; private set; } = true;

    /// <summary>Registers a parameter under <paramref name="name"/> (a name unique among this module's entries); returns it.</summary>
    /// <exception cref="ArgumentException">The name is empty, contains '.', or is taken.</exception>
    protected Parameter RegisterParameter(string name, Parameter parameter)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        CheckName(name);
        _params.Add((name, parameter));
        return parameter;
    }

    /// <summary>
    /// Registers a tensor that is state but not trained (running statistics, caches); persistent buffers are part of
    /// the state dictionary, non-persistent ones (recomputable caches) are not. Returns it.
    /// </summary>
    protected Tensor RegisterBuffer(string name, Tensor buffer, bool persistent = true)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        CheckName(name);
        _buffers.Add((name, buffer, persistent));
        return buffer;
    }

    /// <summary>Registers a child module under <paramref name="name"/>; returns it.</summary>
    protected T RegisterModule<T>(string name, T module) where T : Module
    {
        ArgumentNullException.ThrowIfNull(module);
        if (ReferenceEquals(module, this)) throw new ArgumentException($"module '{name}': a module cannot contain itself", nameof(module));
        CheckName(name);
        _children.Add((name, module));
        return module;
    }

    void CheckName(string name)
    {
        if (string.IsNullOrEmpty(name) || name.Contains('.'))
            throw new ArgumentException($"module entry name '{name}' must be non-empty and contain no '.'", nameof(name));
        if (_params.Any(p => p.Name == name) || _buffers.Any(b => b.Name == name) || _children.Any(c => c.Name == name))
            throw new ArgumentException($"{GetType().Name} already has an entry named '{name}'", nameof(name));
    }

    /// <summary>The direct children with their names.</summary>
    public IEnumerable<(string Name, Module Module)> NamedChildren() => _children.Select(c => (c.Name, c.Child));

    /// <summary>This module (name "") and every descendant, depth first, with dotted names.</summary>
    public IEnumerable<(string Name, Module Module)> NamedModules()
    {
        yield return ("", this);
        foreach (var (name, child) in _children)
            foreach (var (sub, m) in child.NamedModules())
                yield return (Join(name, sub), m);
    }

    /// <summary>Every parameter of the tree with its dotted name, in registration order (a shared parameter once, under its first name).</summary>
    public IEnumerable<(string Name, Parameter Parameter)> NamedParameters()
    {
        var seen = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        foreach (var (prefix, m) in NamedModules())
            foreach (var (name, p) in m._params)
                if (seen.Add(p)) yield return (Join(prefix, name), p);
    }

    /// <summary>Every parameter of the tree (each once).</summary>
    public IEnumerable<Parameter> Parameters() => NamedParameters().Select(p => p.Parameter);

    /// <summary>Every buffer of the tree with its dotted name.</summary>
    public IEnumerable<(string Name, Tensor Buffer)> NamedBuffers()
    {
        foreach (var (prefix, m) in NamedModules())
            foreach (var (name, b, _) in m._buffers)
                yield return (Join(prefix, name), b);
    }

    /// <summary>Total number of parameter elements.</summary>
    public long ParameterCount => Parameters().Sum(p => (long)p.Numel);

    static string Join(string prefix, string name) => prefix.Length == 0 ? name : name.Length == 0 ? prefix : prefix + "." + name;

    /// <summary>Sets training mode (true) or evaluation mode (false) on this module and all descendants; returns this.</summary>
    public Module Train(bool mode = true)
    {
        foreach (var (_, m) in NamedModules()) m.Training = mode;
        return this;
    }

    /// <summary>Evaluation mode for the whole tree (dropout off); returns this.</summary>
    public Module Eval() => Train(false);

    /// <summary>Clears the gradient of every parameter (sets it to null, so the next backward writes a fresh one).</summary>
    public void ZeroGrad()
    {
        foreach (var p in Parameters()) p.Grad = null;
    }

    /// <summary>
    /// Parameters and persistent buffers by dotted name. The tensors are detached views of the live values (no copy):
    /// clone them to keep a snapshot that later training does not change.
    /// </summary>
    public IReadOnlyDictionary<string, Tensor> StateDict()
    {
        var d = new Dictionary<string, Tensor>();
        foreach (var (name, p) in NamedParameters()) d[name] = p.Value.Detach();
        foreach (var (prefix, m) in NamedModules())
            foreach (var (name, b, persistent) in m._buffers)
                if (persistent) d[Join(prefix, name)] = b.Detach();
        return d;
    }

    /// <summary>
    /// Copies values from <paramref name="state"/> into the parameters and persistent buffers, in place (converting
    /// dtype and device as needed). With <paramref name="strict"/> every key must match exactly; without it, missing
    /// and unexpected keys are skipped. Nothing is changed unless every check passes.
    /// </summary>
    /// <returns>The keys the module expected but <paramref name="state"/> lacked, and the keys it had that the module does not.</returns>
    /// <exception cref="ArgumentException">strict and some keys are missing or unexpected (all are listed).</exception>
    /// <exception cref="ShapeMismatchException">A tensor's shape differs from the module's (always checked).</exception>
    public (IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected) LoadStateDict(IReadOnlyDictionary<string, Tensor> state, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(state);
        var own = StateDict();
        var missing = own.Keys.Where(k => !state.ContainsKey(k)).ToList();
        var unexpected = state.Keys.Where(k => !own.ContainsKey(k)).ToList();
        if (strict && (missing.Count > 0 || unexpected.Count > 0))
            throw new ArgumentException(
                $"load_state_dict into {GetType().Name}: " +
                (missing.Count > 0 ? $"missing keys [{string.Join(", ", missing)}]" : "") +
                (missing.Count > 0 && unexpected.Count > 0 ? "; " : "") +
                (unexpected.Count > 0 ? $"unexpected keys [{string.Join(", ", unexpected)}]" : "") +
                "; pass strict: false to load the keys that match", nameof(state));
        foreach (var (key, dst) in own)
            if (state.TryGetValue(key, out var src) && src.Shape != dst.Shape)
                throw new ShapeMismatchException("load_state_dict", key, dst.Shape, src.Shape, "the saved tensor's shape differs from the module's");
        using (Autograd.NoGrad())
            foreach (var (key, dst) in own)
                if (state.TryGetValue(key, out var src))
                    dst.Copy_(src.To(dst.Device).To(dst.DType));
        return (missing, unexpected);
    }

    /// <summary>
    /// Moves every parameter and buffer of the tree to <paramref name="device"/> in place (PyTorch's module.to): the
    /// <see cref="Parameter"/> and buffer objects stay the same, so references to them stay valid; gradients are dropped.
    /// Move a model before building its optimizer, whose state lives on the parameters' device. Returns this.
    /// </summary>
    public Module To(Device device) => Convert(t => t.To(device));

    /// <summary>Converts every floating parameter and buffer of the tree to <paramref name="dtype"/> in place (integer buffers such as counters keep theirs); returns this.</summary>
    /// <exception cref="NotSupportedException"><paramref name="dtype"/> is not floating (Float32, Float64, BFloat16, Float16).</exception>
    public Module To(DType dtype)
    {
        if (!dtype.IsFloating()) throw new NotSupportedException($"module.to: parameters must be floating (Float32, Float64, BFloat16, Float16), not {dtype}");
        return Convert(t => t.DType.IsFloating() ? t.To(dtype) : t);
    }

    Module Convert(Func<Tensor, Tensor> f)
    {
        using (Autograd.NoGrad())
        {
            foreach (var p in Parameters())
            {
                p.Grad = null;
                var moved = f(p.Value);
                if (!ReferenceEquals(moved, p.Value)) p.Value.Set_(moved.Contiguous());
            }
            foreach (var (_, b) in NamedBuffers())
            {
                var moved = f(b);
                if (!ReferenceEquals(moved, b)) b.Set_(moved.Contiguous());
            }
        }
        return this;
    }

    /// <summary>
    /// A table of the module tree: each module's dotted name and type, its own parameters' shapes and element count, and
    /// the totals (parameters, trainable ones, buffers, bytes). <see cref="Module{TIn, TOut}.Summary(TIn)"/> adds each
    /// module's output shapes for a sample input.
    /// </summary>
    public string Summary() => Summary(null);

    private protected string Summary(IReadOnlyDictionary<Module, string>? outputs)
    {
        var rows = new List<(string Name, string Type, string Output, string Shapes, long Count)>();
        foreach (var (name, m) in NamedModules())
        {
            var own = m._params.Select(p => $"{p.Name} [{string.Join(", ", p.Param.Shape.ToArray())}]").ToArray();
            string output = outputs is null ? "" : outputs.GetValueOrDefault(m, "-");
            rows.Add((name.Length == 0 ? "(root)" : name, m.GetType().Name, output, string.Join(", ", own), m._params.Sum(p => (long)p.Param.Numel)));
        }
        int wn = Math.Max(6, rows.Max(r => r.Name.Length)), wt = Math.Max(4, rows.Max(r => r.Type.Length)), ws = Math.Max(10, rows.Max(r => r.Shapes.Length));
        int wo = outputs is null ? 0 : Math.Max(6, rows.Max(r => r.Output.Length));
        string Out(string o) => outputs is null ? "" : $"{o.PadRight(wo)}  ";
        int width = wn + wt + ws + 18 + (outputs is null ? 0 : wo + 2);
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"{"module".PadRight(wn)}  {"type".PadRight(wt)}  {Out("output")}{"parameters".PadRight(ws)}  {"count",12}");
        sb.AppendLine(new string('-', width));
        foreach (var r in rows) sb.AppendLine($"{r.Name.PadRight(wn)}  {r.Type.PadRight(wt)}  {Out(r.Output)}{r.Shapes.PadRight(ws)}  {r.Count,12:N0}");
        var ps = Parameters().ToArray();
        var buffers = NamedBuffers().ToArray();
        long bytes = ps.Sum(p => (long)p.Numel * p.Value.DType.Size()) + buffers.Sum(b => (long)b.Buffer.Numel * b.Buffer.DType.Size());
        sb.AppendLine(new string('-', width));
        sb.AppendLine($"parameters: {ps.Sum(p => (long)p.Numel):N0} ({ps.Where(p => p.RequiresGrad).Sum(p => (long)p.Numel):N0} trainable); buffers: {buffers.Sum(b => (long)b.Buffer.Numel):N0}; {bytes:N0} bytes");
        return sb.ToString();
    }

    // Observers of any module's output whatever its types, for Summary(sample): called by Module<TIn, TOut>.Call.
    private protected List<Action<Module, object?>>? OutputObservers;

    internal void AddOutputObserverTo(Action<Module, object?> observer) => (OutputObservers ??= []).Add(observer);

    internal void RemoveOutputObserverFrom(Action<Module, object?> observer) => OutputObservers?.Remove(observer);

    /// <summary>Removes a hook from its list when disposed (once).</summary>
    private protected sealed class HookHandle(Action remove) : IDisposable
    {
        Action? _remove = remove;
        public void Dispose() { _remove?.Invoke(); _remove = null; }
    }

    /// <summary>A one-line summary: the type and its parameter count.</summary>
    public override string ToString() => $"{GetType().Name}({ParameterCount:N0} parameters)";
}

/// <summary>
/// A module with one input and one output: <c>y = module.Call(x)</c>. Subclasses implement <see cref="Forward"/>;
/// <see cref="Call(TIn)"/> runs it with the hooks registered on the module (PyTorch's <c>module(x)</c> against
/// <c>module.forward(x)</c>). Calling <see cref="Forward"/> directly still works and skips the hooks. Kiln's composite
/// modules (Sequential, MLP, MultiHeadAttention, TransformerBlock) run their children through Call, so hooks fire on
/// every module of a model built from them.
/// </summary>
public abstract class Module<TIn, TOut> : Module
{
    List<Func<Module<TIn, TOut>, TIn, TIn>>? _preHooks;
    List<Func<Module<TIn, TOut>, TIn, TOut, TOut>>? _hooks;
    List<Func<Module<TIn, TOut>, Tensor?[], Tensor?[], Tensor?[]?>>? _backwardHooks;

    /// <summary>Computes the module's output (without hooks; callers that want hooks to run use <see cref="Call(TIn)"/>).</summary>
    public abstract TOut Forward(TIn input);

    // True when a hook or observer would see this module's calls: a parent may then not fuse it with a neighbour.
    internal bool Hooked => !(_preHooks is null && _hooks is null && _backwardHooks is null && OutputObservers is null);

    /// <summary>
    /// Runs <see cref="Forward"/> with this module's hooks: the forward pre-hooks (which may replace the input), then
    /// <see cref="Forward"/>, then the forward hooks (which may replace the output), and, when full backward hooks are
    /// registered and gradients are recorded, arranges for them to see this call's gradients. Without hooks it is
    /// <see cref="Forward"/>.
    /// </summary>
    public TOut Call(TIn input) => Call(input, Forward);

    /// <summary>
    /// <see cref="Call(TIn)"/> for a forward that takes more than the input (an attention mask, say): runs the hooks around
    /// <paramref name="forward"/>, which gets the input the pre-hooks returned. A module whose Forward has such an
    /// overload exposes a matching public Call through this, so hooks fire however its parent calls it.
    /// </summary>
    protected TOut Call(TIn input, Func<TIn, TOut> forward)
    {
        ArgumentNullException.ThrowIfNull(forward);
        if (_preHooks is null && _hooks is null && _backwardHooks is null && OutputObservers is null) return forward(input);
        if (_preHooks is not null) foreach (var h in _preHooks.ToArray()) input = h(this, input);
        BackwardHookCall? bw = _backwardHooks is { Count: > 0 } && Autograd.IsEnabled ? new BackwardHookCall(this) : null;
        if (bw is not null) input = (TIn)(object)bw.WrapInput((Tensor)(object)input!);
        var output = forward(input);
        if (_hooks is not null) foreach (var h in _hooks.ToArray()) output = h(this, input, output);
        if (OutputObservers is not null) foreach (var o in OutputObservers.ToArray()) o(this, output);
        if (bw is not null) output = (TOut)(object)bw.WrapOutput((Tensor)(object)output!);
        return output;
    }

    /// <summary>
    /// Calls <paramref name="hook"/>(module, input) before each <see cref="Call(TIn)"/>'s <see cref="Forward"/>; what it
    /// returns is the input <see cref="Forward"/> gets (return the input to leave it). Hooks run in registration order,
    /// each seeing the previous one's result (PyTorch's <c>register_forward_pre_hook</c>). Dispose the handle to remove it.
    /// </summary>
    public IDisposable RegisterForwardPreHook(Func<Module<TIn, TOut>, TIn, TIn> hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        (_preHooks ??= []).Add(hook);
        return new HookHandle(() => _preHooks.Remove(hook));
    }

    /// <summary>
    /// Calls <paramref name="hook"/>(module, input, output) after each <see cref="Call(TIn)"/>'s <see cref="Forward"/>; what
    /// it returns is the output <see cref="Call(TIn)"/> gives (return the output to leave it). Hooks run in registration
    /// order (PyTorch's <c>register_forward_hook</c>). Dispose the handle to remove it.
    /// </summary>
    public IDisposable RegisterForwardHook(Func<Module<TIn, TOut>, TIn, TOut, TOut> hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        (_hooks ??= []).Add(hook);
        return new HookHandle(() => _hooks.Remove(hook));
    }

    /// <summary>
    /// Calls <paramref name="hook"/>(module, gradInput, gradOutput) during a backward through a <see cref="Call(TIn)"/> of
    /// this module, once the gradient with respect to its input is known (PyTorch's
    /// <c>register_full_backward_hook</c>): gradOutput holds the gradient of the output, gradInput that of the input
    /// (null when the input does not require grad). A hook may return a replacement for gradInput (same length and
    /// shapes) or null to keep it. Only calls made while gradients are recorded are hooked. Dispose the handle to remove it.
    /// </summary>
    /// <exception cref="NotSupportedException">The module's input or output is not a single <see cref="Tensor"/>.</exception>
    public IDisposable RegisterFullBackwardHook(Func<Module<TIn, TOut>, Tensor?[], Tensor?[], Tensor?[]?> hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        if (typeof(TIn) != typeof(Tensor) || typeof(TOut) != typeof(Tensor))
            throw new NotSupportedException($"register_full_backward_hook: {GetType().Name} maps {typeof(TIn).Name} to {typeof(TOut).Name}; full backward hooks need a module from one Tensor to one Tensor");
        (_backwardHooks ??= []).Add(hook);
        return new HookHandle(() => _backwardHooks.Remove(hook));
    }

    /// <summary>
    /// <see cref="Module.Summary()"/> with an output column: runs <see cref="Call(TIn)"/> on <paramref name="sampleInput"/>
    /// without recording gradients and shows the shape of what each module returned (the first time it was called).
    /// A module its parent runs through <see cref="Forward"/> rather than <see cref="Call(TIn)"/> shows "-".
    /// </summary>
    public string Summary(TIn sampleInput)
    {
        var outputs = new Dictionary<Module, string>(ReferenceEqualityComparer.Instance);
        Action<Module, object?> observe = (m, output) => outputs.TryAdd(m, Describe(output));
        var modules = NamedModules().Select(x => x.Module).Distinct().ToArray();
        foreach (var m in modules) m.AddOutputObserverTo(observe);
        try { using (Autograd.NoGrad()) Call(sampleInput); }
        finally { foreach (var m in modules) m.RemoveOutputObserverFrom(observe); }
        return Summary(outputs);
    }

    static string Describe(object? output) => output switch
    {
        Tensor t => $"[{string.Join(", ", t.Shape.ToArray())}]",
        System.Runtime.CompilerServices.ITuple tuple => "(" + string.Join(", ", Enumerable.Range(0, tuple.Length).Select(i => Describe(tuple[i]))) + ")",
        IEnumerable<Tensor> ts => "[" + string.Join(", ", ts.Select(Describe)) + "]",
        null => "null",
        var o => o.GetType().Name,
    };

    // One hooked call: identity ops on the input and the output capture grad_output, then grad_input, and fire the
    // hooks once both are known (as PyTorch's BackwardHook does).
    sealed class BackwardHookCall(Module<TIn, TOut> module)
    {
        Tensor? _gradOutput;
        bool _inputHooked;

        public Tensor WrapInput(Tensor x)
        {
            if (!x.RequiresGrad) return x;
            _inputHooked = true;
            return Tensor.Custom("BackwardHookFunctionBackward", [x], xs => xs[0], g => [Fire(g)]);
        }

        public Tensor WrapOutput(Tensor y)
        {
            if (!y.RequiresGrad) return y;
            return Tensor.Custom("BackwardHookFunctionBackward", [y], ys => ys[0], g =>
            {
                _gradOutput = g;
                // Nothing upstream will reach the input's identity op: the hooks see a null gradInput now.
                if (!_inputHooked) Fire(null);
                return [g];
            });
        }

        Tensor? Fire(Tensor? gradInput)
        {
            Tensor?[] gin = [gradInput];
            foreach (var h in module._backwardHooks!.ToArray())
            {
                var replaced = h(module, gin, [_gradOutput]);
                if (replaced is null) continue;
                if (replaced.Length != 1 || gradInput is not null && replaced[0] is { } r && r.Shape != gradInput.Shape)
                    throw new InvalidOperationException($"full backward hook of {module.GetType().Name}: returned {replaced.Length} gradient(s) of shapes [{string.Join(", ", replaced.Select(t => t?.Shape.ToString() ?? "null"))}] for an input gradient of shape {gradInput?.Shape.ToString() ?? "null"}");
                gin = replaced;
            }
            return gin[0];
        }
    }
}
