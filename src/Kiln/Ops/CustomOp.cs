using Kiln.Backends;

namespace Kiln.Ops;

/// <summary>The parameters of a custom op that takes none.</summary>
public readonly record struct NoParams;

/// <summary>
/// What a custom op's kernel gets: its inputs and its preallocated output, each contiguous and starting at element 0 of
/// its storage (the op copies inputs that are not), on one device, plus the op's parameters.
/// </summary>
/// <param name="Inputs">The inputs, in the op's order.</param>
/// <param name="Output">The output to overwrite.</param>
/// <param name="Params">The parameters the op was applied with.</param>
public sealed record KernelContext<TParams>(IReadOnlyList<Tensor> Inputs, Tensor Output, TParams Params)
{
    /// <summary>The device every tensor lives on.</summary>
    public Device Device => Output.Device;
    /// <summary>The backend of <see cref="Device"/>.</summary>
    public IBackend Backend => Output.Backend;
}

/// <summary>
/// A user-defined op on the public extension API: its float64 reference, one kernel per device kind (CPU kernels with
/// <see cref="Cpu{T}"/>; ILGPU kernels with Kiln.Gpu's <c>Ilgpu</c> extension, which covers CUDA, OpenCL and ILGPU's CPU
/// accelerator), its gradient in tensor ops, and its validation domain and error budget. Once <see cref="Register"/>ed it
/// runs on every device that has its kernel, records on the autodiff tape, and appears in <see cref="OpCatalog"/> (so in
/// the conformance tests and <c>kiln validate</c>) like a built-in op. <see cref="Conformance.Validate"/> checks it
/// against its reference in one call.
/// </summary>
/// <typeparam name="TParams">Non-tensor parameters (sizes, tables); <see cref="NoParams"/> for none.</typeparam>
public class CustomOp<TParams> : OpDefinition
{
    readonly Dictionary<DeviceKind, Action<KernelContext<TParams>>> _kernels = [];
    readonly Func<IReadOnlyList<double[]>, IReadOnlyList<Shape>, TParams, double[]> _reference;

    /// <summary>Defines op <paramref name="name"/> with <paramref name="inputs"/> tensor inputs.</summary>
    /// <param name="name">Unique name, family.op (e.g. "user.swiglu").</param>
    /// <param name="inputs">The number of tensor inputs.</param>
    /// <param name="reference">
    /// The float64 reference: the inputs' values (contiguous, row-major), their shapes and the parameters -&gt; the
    /// output's values (row-major, <see cref="OutputShape"/>).
    /// </param>
    /// <param name="dtypes">The dtypes of the first input the op runs in (default Float32 and Float64); the output has the first input's dtype.</param>
    /// <param name="domain">The values inputs are validated on (default [-3, 3)).</param>
    /// <param name="tolerance">The error budget (default <see cref="Tolerance.Tight"/>).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="inputs"/> is less than 1.</exception>
    public CustomOp(string name, int inputs, Func<IReadOnlyList<double[]>, IReadOnlyList<Shape>, TParams, double[]> reference,
        IReadOnlyList<DType>? dtypes = null, Domain? domain = null, Tolerance? tolerance = null)
        : base(name, name.Contains('.') ? name[..name.IndexOf('.')] : name, dtypes ?? [DType.Float32, DType.Float64], domain ?? Domain.Default, tolerance ?? Tolerance.Tight)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(inputs, 1);
        InputCount = inputs;
        _reference = reference ?? throw new ArgumentNullException(nameof(reference));
    }

    /// <summary>The number of tensor inputs.</summary>
    public int InputCount { get; }

    /// <summary>The output's shape from the inputs' shapes and the parameters; by default the inputs broadcast together (an elementwise op).</summary>
    public Func<IReadOnlyList<Shape>, TParams, Shape>? OutputShape { get; init; }

    /// <summary>Checks the inputs beyond count, device and first dtype, throwing <see cref="ArgumentException"/> or <see cref="ShapeMismatchException"/> naming the argument.</summary>
    public Action<IReadOnlyList<Tensor>, TParams>? Validate { get; init; }

    /// <summary>(inputs, output, upstream gradient, parameters) -&gt; one gradient per input (null where none), in tensor ops; null when the op is not differentiable.</summary>
    public Func<IReadOnlyList<Tensor>, Tensor, Tensor, TParams, Tensor?[]>? Gradient { get; init; }

    /// <summary>
    /// The inputs and parameters of a validation case, on the CPU; by default every input has the case's shape and
    /// layout with values from <see cref="OpDefinition.Domain"/> in the case's dtype (an elementwise op), and the
    /// parameters are <c>default</c>.
    /// </summary>
    public Func<OpCase, DType, (Tensor[] Inputs, TParams Params)>? CaseInputs { get; init; }

    /// <inheritdoc/>
    public override int MinRank => MinInputRank;
    /// <inheritdoc/>
    public override int MaxRank => MaxInputRank;
    /// <summary>The smallest rank of a validation case (default 0).</summary>
    public int MinInputRank { get; init; }
    /// <summary>The largest rank of a validation case (default 4).</summary>
    public int MaxInputRank { get; init; } = 4;

    /// <summary>The device kinds that have a kernel.</summary>
    public IReadOnlyCollection<DeviceKind> Kinds { get { lock (_kernels) return [.. _kernels.Keys]; } }

    /// <summary>Sets the kernel that runs the op on devices of <paramref name="kind"/> (replacing any earlier one).</summary>
    public CustomOp<TParams> Kernel(DeviceKind kind, Action<KernelContext<TParams>> kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        lock (_kernels) _kernels[kind] = kernel;
        return this;
    }

    /// <summary>
    /// Sets the CPU kernel for element type <typeparamref name="T"/> (float for Float32, double for Float64, int, long):
    /// it reads the inputs' elements and writes all of the output's, each as a span of exactly its element count.
    /// Kernels for other element types can be added with further calls.
    /// </summary>
    public CustomOp<TParams> Cpu<T>(CpuKernel<T, TParams> kernel) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(kernel);
        lock (_kernels)
        {
            var previous = _kernels.GetValueOrDefault(DeviceKind.Cpu);
            _kernels[DeviceKind.Cpu] = ctx =>
            {
                if (ctx.Output.Storage is CpuStorage { Data: T[] }) kernel(new CpuKernelArgs<T, TParams>(ctx));
                else if (previous is not null) previous(ctx);
                else throw new NotSupportedException($"{Name}: no CPU kernel for dtype {ctx.Output.DType}");
            };
        }
        return this;
    }

    /// <summary>Lists the op in <see cref="OpCatalog"/> (idempotent) and returns it.</summary>
    public CustomOp<TParams> Register()
    {
        OpCatalog.Register(this);
        return this;
    }

    /// <summary>Runs the op on the inputs' device, recording it on the autodiff tape when it has a gradient.</summary>
    /// <exception cref="ArgumentException">Wrong input count, inputs on different devices, or invalid inputs (see <see cref="Validate"/>).</exception>
    /// <exception cref="NotSupportedException">The first input's dtype is not one of <see cref="OpDefinition.DTypes"/>, or the device has no kernel.</exception>
    public Tensor Apply(TParams parameters, params Tensor[] inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        if (inputs.Length != InputCount) throw new ArgumentException($"{Name}: takes {InputCount} inputs, got {inputs.Length}", nameof(inputs));
        for (int i = 0; i < inputs.Length; i++)
        {
            ArgumentNullException.ThrowIfNull(inputs[i], $"inputs[{i}]");
            inputs[i].Storage.ThrowIfDisposed(Name);
            if (inputs[i].Device != inputs[0].Device)
                throw new ArgumentException($"{Name}: inputs[{i}] is on {inputs[i].Device}, inputs[0] on {inputs[0].Device}", nameof(inputs));
        }
        var dtype = inputs[0].DType;
        if (!DTypes.Contains(dtype))
            throw new NotSupportedException($"{Name}: inputs[0] has dtype {dtype}; the op runs in {string.Join(", ", DTypes)}");
        Validate?.Invoke(inputs, parameters);
        var device = inputs[0].Device;
        Action<KernelContext<TParams>>? kernel;
        lock (_kernels) kernel = _kernels.GetValueOrDefault(device.Kind);
        if (kernel is null)
            throw new NotSupportedException($"{Name}: no kernel for device {device}; it has kernels for {(Kinds.Count == 0 ? "no device" : string.Join(", ", Kinds))}");
        var shapes = inputs.Select(t => t.Shape).ToArray();
        var outShape = OutputShape?.Invoke(shapes, parameters) ?? shapes.Skip(1).Aggregate(shapes[0], (a, b) => Shape.Broadcast(a, b, Name));
        bool elementwise = OutputShape is null;

        Tensor Forward(Tensor[] xs)
        {
            // Kernels index from element 0 of dense storage: broadcast (elementwise ops) and copy what is not.
            var dense = xs.Select(x => Dense(elementwise ? x.BroadcastTo(outShape) : x)).ToArray();
            var y = Tensor.Empty(outShape, dtype, device);
            if (outShape.Numel > 0) kernel(new KernelContext<TParams>(dense, y, parameters));
            return y;
        }

        if (Gradient is not { } rule || !dtype.IsFloating()) { using (Autograd.NoGrad()) return Forward(inputs); }
        Tensor? output = null;
        return output = Tensor.Custom(Name, inputs, Forward, g => rule(inputs, output!, g, parameters));
    }

    static Tensor Dense(Tensor x) => x.IsContiguous && x.Layout.Offset == 0 ? x : x.Clone().Detach();

    /// <inheritdoc/>
    public override CheckResult Check(Device device, DType dtype, OpCase c)
    {
        var (inputs, parameters) = CaseInputs?.Invoke(c, dtype)
            ?? ([.. Enumerable.Range(0, InputCount).Select(i => Input(c, dtype, Device.Cpu, i))], default!);
        var values = inputs.Select(x => x.Contiguous().ToDoubleArray()).ToArray();
        var shapes = inputs.Select(x => x.Shape).ToArray();
        if (OutputShape is null)
        {
            // The reference of an elementwise op sees its inputs broadcast to the output's shape.
            var outShape = shapes.Skip(1).Aggregate(shapes[0], (a, b) => Shape.Broadcast(a, b, Name));
            values = inputs.Select(x => x.BroadcastTo(outShape).ToDoubleArray()).ToArray();
            shapes = [.. shapes.Select(_ => outShape)];
        }
        var expected = _reference(values, shapes, parameters);
        var actual = Apply(parameters, [.. inputs.Select(x => x.To(device))]).ToDoubleArray();
        return Tolerance.Check(expected, actual, dtype, c, Name);
    }

    /// <summary>
    /// For an elementwise op with default parameters (no <see cref="OutputShape"/>, no <see cref="CaseInputs"/>): each
    /// input in turn takes every special value while the others take the ends of the domain; classed by the special.
    /// </summary>
    public override IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false)
    {
        if (OutputShape is not null || CaseInputs is not null) return [];
        var specials = SpecialValues.Of(dtype, Domain);
        if (specials.Count == 0) return [];
        double[] ordinary = [Domain.Low, Domain.High];
        var columns = Enumerable.Range(0, InputCount).Select(_ => new List<double>()).ToArray();
        var classes = new List<string>();
        for (int special = 0; special < InputCount; special++)
            foreach (var (cls, v) in specials)
                foreach (double o in ordinary)
                {
                    for (int i = 0; i < InputCount; i++) columns[i].Add(i == special ? v : o);
                    classes.Add(cls);
                }
        var values = columns.Select(col => col.ToArray()).ToArray();
        var shapes = values.Select(v => new Shape(v.Length)).ToArray();
        var expected = _reference(values, shapes, default!);
        var actual = Apply(default!, [.. values.Select(v => Tensor.FromArray(v).To(dtype).To(device))]).ToDoubleArray();
        return SpecialValues.Judge(Tolerance, dtype, relaxed, classes, expected, actual, k => [.. values.Select(v => v[k])]);
    }
}

/// <summary>A custom op without parameters: its reference takes the inputs' values and shapes.</summary>
public sealed class CustomOp(string name, int inputs, Func<IReadOnlyList<double[]>, IReadOnlyList<Shape>, double[]> reference,
    IReadOnlyList<DType>? dtypes = null, Domain? domain = null, Tolerance? tolerance = null)
    : CustomOp<NoParams>(name, inputs, (xs, shapes, _) => reference(xs, shapes), dtypes, domain, tolerance);

/// <summary>Calls of custom ops without parameters.</summary>
public static class CustomOpExtensions
{
    /// <summary>Runs <paramref name="op"/> on <paramref name="inputs"/> (see <see cref="CustomOp{TParams}.Apply(TParams, Tensor[])"/>).</summary>
    public static Tensor Apply(this CustomOp<NoParams> op, params Tensor[] inputs)
    {
        ArgumentNullException.ThrowIfNull(op);
        return op.Apply(default, inputs);
    }
}

/// <summary>A CPU kernel of a custom op for element type <typeparamref name="T"/>.</summary>
public delegate void CpuKernel<T, TParams>(CpuKernelArgs<T, TParams> args) where T : unmanaged;

/// <summary>The host arrays of a CPU kernel call: each input's elements and the output's, as spans of their element counts.</summary>
public sealed class CpuKernelArgs<T, TParams> where T : unmanaged
{
    readonly KernelContext<TParams> _ctx;
    internal CpuKernelArgs(KernelContext<TParams> ctx) => _ctx = ctx;

    /// <summary>The elements of input <paramref name="i"/> (row-major, <see cref="InputShape"/>).</summary>
    /// <exception cref="InvalidCastException">That input's element type is not <typeparamref name="T"/>; use <see cref="Input{TOther}"/>.</exception>
    public ReadOnlySpan<T> Input(int i) => Input<T>(i);
    /// <summary>The elements of input <paramref name="i"/> as <typeparamref name="TOther"/> (for an input of another dtype, such as Int64 indices).</summary>
    public ReadOnlySpan<TOther> Input<TOther>(int i) where TOther : unmanaged => ((CpuStorage)_ctx.Inputs[i].Storage).As<TOther>().AsSpan(0, _ctx.Inputs[i].Numel);
    /// <summary>The shape of input <paramref name="i"/>.</summary>
    public Shape InputShape(int i) => _ctx.Inputs[i].Shape;
    /// <summary>
    /// The host array behind input <paramref name="i"/>: its elements start at index 0 and may be followed by spare
    /// capacity (for kernels written over arrays and offsets).
    /// </summary>
    public TOther[] InputArray<TOther>(int i) where TOther : unmanaged => ((CpuStorage)_ctx.Inputs[i].Storage).As<TOther>();
    /// <summary>The host array behind the output (elements from index 0, possibly followed by spare capacity).</summary>
    public T[] OutputArray => ((CpuStorage)_ctx.Output.Storage).As<T>();
    /// <summary>The output's elements, to overwrite.</summary>
    public Span<T> Output => ((CpuStorage)_ctx.Output.Storage).As<T>().AsSpan(0, _ctx.Output.Numel);
    /// <summary>The output's shape.</summary>
    public Shape OutputShape => _ctx.Output.Shape;
    /// <summary>The op's parameters.</summary>
    public TParams Params => _ctx.Params;
}
