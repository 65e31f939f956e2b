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
    /// <exception cref="NotSupportedException">The tensor is not Float32 or Float64.</exception>
    public Parameter(Tensor value, bool requiresGrad = true) : base(Checked(value))
    {
        RequiresGrad = requiresGrad;
    }

    static Tensor Checked(Tensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (!value.DType.IsFloating())
            throw new NotSupportedException($"parameter: dtype {value.DType} cannot hold a trainable parameter; use Float32 or Float64");
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
    /// <exception cref="NotSupportedException"><paramref name="dtype"/> is not Float32 or Float64.</exception>
    public Module To(DType dtype)
    {
        if (!dtype.IsFloating()) throw new NotSupportedException($"module.to: parameters must be Float32 or Float64, not {dtype}");
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
    /// the totals (parameters, trainable ones, buffers, bytes).
    /// </summary>
    public string Summary()
    {
        var rows = new List<(string Name, string Type, string Shapes, long Count)>();
        foreach (var (name, m) in NamedModules())
        {
            var own = m._params.Select(p => $"{p.Name} [{string.Join(", ", p.Param.Shape.ToArray())}]").ToArray();
            rows.Add((name.Length == 0 ? "(root)" : name, m.GetType().Name, string.Join(", ", own), m._params.Sum(p => (long)p.Param.Numel)));
        }
        int wn = Math.Max(6, rows.Max(r => r.Name.Length)), wt = Math.Max(4, rows.Max(r => r.Type.Length)), ws = Math.Max(10, rows.Max(r => r.Shapes.Length));
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"{"module".PadRight(wn)}  {"type".PadRight(wt)}  {"parameters".PadRight(ws)}  {"count",12}");
        sb.AppendLine(new string('-', wn + wt + ws + 18));
        foreach (var r in rows) sb.AppendLine($"{r.Name.PadRight(wn)}  {r.Type.PadRight(wt)}  {r.Shapes.PadRight(ws)}  {r.Count,12:N0}");
        var ps = Parameters().ToArray();
        var buffers = NamedBuffers().ToArray();
        long bytes = ps.Sum(p => (long)p.Numel * p.Value.DType.Size()) + buffers.Sum(b => (long)b.Buffer.Numel * b.Buffer.DType.Size());
        sb.AppendLine(new string('-', wn + wt + ws + 18));
        sb.AppendLine($"parameters: {ps.Sum(p => (long)p.Numel):N0} ({ps.Where(p => p.RequiresGrad).Sum(p => (long)p.Numel):N0} trainable); buffers: {buffers.Sum(b => (long)b.Buffer.Numel):N0}; {bytes:N0} bytes");
        return sb.ToString();
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
