namespace Kiln.NN;

/// <summary>
/// A trainable tensor owned by a module: a leaf tensor that requires gradients. Optimizers and
/// <see cref="Module.LoadStateDict"/> update its elements in place, so the tensor object never changes and references
/// to it (in optimizers, in user code) stay valid. Converts implicitly to <see cref="Tensor"/>.
/// </summary>
public sealed class Parameter
{
    /// <summary>Wraps <paramref name="value"/> (detached into a new leaf) as a parameter.</summary>
    /// <exception cref="NotSupportedException">The tensor is not Float32 or Float64.</exception>
    public Parameter(Tensor value, bool requiresGrad = true)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (!value.DType.IsFloating())
            throw new NotSupportedException($"parameter: dtype {value.DType} cannot hold a trainable parameter; use Float32 or Float64");
        Value = value.Detach().Contiguous().Detach();
        Value.RequiresGrad = requiresGrad;
    }

    /// <summary>The tensor (a contiguous leaf).</summary>
    public Tensor Value { get; }
    /// <summary>The gradient accumulated by backward passes, or null.</summary>
    public Tensor? Grad { get => Value.Grad; set => Value.Grad = value; }
    /// <summary>Whether backward passes compute a gradient for this parameter (frozen when false).</summary>
    public bool RequiresGrad { get => Value.RequiresGrad; set => Value.RequiresGrad = value; }
    /// <summary>The parameter's shape.</summary>
    public Shape Shape => Value.Shape;
    /// <summary>Number of elements.</summary>
    public int Numel => Value.Numel;

    /// <summary>The parameter's tensor.</summary>
    public static implicit operator Tensor(Parameter p) => p.Value;

    /// <inheritdoc/>
    public override string ToString() => $"Parameter(shape={Shape}, dtype={Value.DType})";
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

    /// <summary>A one-line summary: the type and its parameter count.</summary>
    public override string ToString() => $"{GetType().Name}({ParameterCount:N0} parameters)";
}

/// <summary>A module with one input and one output: <c>y = module.Forward(x)</c>.</summary>
public abstract class Module<TIn, TOut> : Module
{
    /// <summary>Computes the module's output.</summary>
    public abstract TOut Forward(TIn input);
}
