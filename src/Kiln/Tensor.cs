using System.Text;
using Kiln.Backends;

namespace Kiln;

/// <summary>
/// An n-dimensional array on a device: a view (shape, strides, offset) into a <see cref="Storage"/>, with an optional
/// autodiff record. Ops return new tensors or views and never change their inputs, except methods ending in '_'.
/// Tensors are <see cref="IDisposable"/>: disposing one frees its storage and so invalidates every view of it;
/// use <see cref="Scope"/> to free all temporaries of a block at once.
/// </summary>
public partial class Tensor : IDisposable
{
    internal Tensor(Storage storage, Layout layout)
    {
        Storage = storage;
        Layout = layout;
    }

    /// <summary>A new leaf tensor that views <paramref name="source"/>'s elements (for types that are tensors with a role, such as a module's parameter).</summary>
    protected Tensor(Tensor source) : this((source ?? throw new ArgumentNullException(nameof(source))).Storage, source.Layout) { }

    /// <summary>The memory this tensor views.</summary>
    public Storage Storage { get; private set; }
    /// <summary>Shape, strides and offset into <see cref="Storage"/>.</summary>
    public Layout Layout { get; private set; }
    /// <summary>The extents.</summary>
    public Shape Shape => Layout.Shape;
    /// <summary>Element type.</summary>
    public DType DType => Storage.DType;
    /// <summary>The device the storage lives on.</summary>
    public Device Device => Storage.Device;
    /// <summary>Number of dimensions.</summary>
    public int Rank => Layout.Shape.Rank;
    /// <summary>Number of elements.</summary>
    public int Numel => Layout.Shape.Numel;
    /// <summary>True when the elements are dense and row-major.</summary>
    public bool IsContiguous => Layout.IsContiguous;
    internal IBackend Backend => Device.Backend;

    /// <summary>Frees the storage (and so every view that shares it).</summary>
    public void Dispose() => Storage.Dispose();

    /// <summary>
    /// Starts a scope that disposes every tensor created inside it (in this async flow: across awaits, and in the tasks
    /// it starts), except those passed to <see cref="TensorScope.Keep"/>.
    /// </summary>
    public static TensorScope Scope() => new();

    // ---------------------------------------------------------------- creation

    /// <summary>A contiguous tensor with unspecified contents (for outputs that are overwritten).</summary>
    public static Tensor Empty(Shape shape, DType dtype = DType.Float32, Device? device = null)
    {
        var dev = device ?? Device.Cpu;
        return new Tensor(dev.Backend.Allocate(dtype, shape.Numel), Layout.Contiguous(shape));
    }

    /// <summary>A tensor of zeros.</summary>
    public static Tensor Zeros(params int[] shape) => Full(shape, 0.0);
    /// <summary>A tensor of zeros of the given dtype and device.</summary>
    public static Tensor Zeros(Shape shape, DType dtype = DType.Float32, Device? device = null) => Full(shape, 0.0, dtype, device);
    /// <summary>A tensor of ones.</summary>
    public static Tensor Ones(params int[] shape) => Full(shape, 1.0);
    /// <summary>A tensor of ones of the given dtype and device.</summary>
    public static Tensor Ones(Shape shape, DType dtype = DType.Float32, Device? device = null) => Full(shape, 1.0, dtype, device);

    /// <summary>A tensor with every element equal to <paramref name="value"/>.</summary>
    public static Tensor Full(Shape shape, double value, DType dtype = DType.Float32, Device? device = null)
    {
        var t = Empty(shape, dtype, device);
        t.Backend.Fill(t, value);
        return t;
    }

    /// <summary>A rank-0 tensor holding <paramref name="value"/>.</summary>
    public static Tensor Scalar(double value, DType dtype = DType.Float32, Device? device = null) => Full(new Shape(), value, dtype, device);

    /// <summary>A zero tensor with this tensor's shape, dtype and device.</summary>
    public Tensor ZerosLike() => Zeros(Shape, DType, Device);
    /// <summary>A ones tensor with this tensor's shape, dtype and device.</summary>
    public Tensor OnesLike() => Ones(Shape, DType, Device);
    /// <summary>A constant tensor with this tensor's shape, dtype and device.</summary>
    public Tensor FullLike(double value) => Full(Shape, value, DType, Device);

    /// <summary>Values start, start+step, ... below end (above, for a negative step).</summary>
    /// <exception cref="ArgumentException">step is zero or not finite.</exception>
    public static Tensor Arange(double start, double end, double step = 1, DType dtype = DType.Float32, Device? device = null)
    {
        if (step == 0 || !double.IsFinite(step)) throw new ArgumentException($"arange: step must be finite and non-zero, got {step}", nameof(step));
        int n = Math.Max(0, (int)Math.Ceiling((end - start) / step));
        var v = new double[n];
        for (int i = 0; i < n; i++) v[i] = start + i * step;
        return FromArray(v, new Shape(n)).To(dtype).To(device ?? Device.Cpu);
    }

    /// <summary>0, 1, ..., n-1.</summary>
    public static Tensor Arange(int n, DType dtype = DType.Int64, Device? device = null) => Arange(0, n, 1, dtype, device);

    /// <summary><paramref name="steps"/> evenly spaced values from start to end inclusive.</summary>
    public static Tensor Linspace(double start, double end, int steps, DType dtype = DType.Float32, Device? device = null)
    {
        if (steps < 0) throw new ArgumentOutOfRangeException(nameof(steps), steps, "linspace: steps must be non-negative");
        var v = new double[steps];
        for (int i = 0; i < steps; i++) v[i] = steps == 1 ? start : start + (end - start) * i / (steps - 1);
        return FromArray(v, new Shape(steps)).To(dtype).To(device ?? Device.Cpu);
    }

    /// <summary>The n x m identity (m = n by default).</summary>
    public static Tensor Eye(int n, int? m = null, DType dtype = DType.Float32, Device? device = null)
    {
        int cols = m ?? n;
        if (n < 0 || cols < 0) throw new ArgumentOutOfRangeException(nameof(n), $"eye: sizes must be non-negative, got {n} x {cols}");
        var v = new double[n * cols];
        for (int i = 0; i < Math.Min(n, cols); i++) v[i * cols + i] = 1;
        return FromArray(v, new Shape(n, cols)).To(dtype).To(device ?? Device.Cpu);
    }

    /// <summary>A CPU tensor holding a copy of <paramref name="data"/> in row-major order with the given shape (a vector by default).</summary>
    /// <exception cref="ShapeMismatchException">The shape's element count differs from the data length.</exception>
    public static Tensor FromArray<T>(T[] data, Shape shape) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(data);
        var s = shape;
        if (s.Numel != data.Length)
            throw new ShapeMismatchException("from_array", nameof(shape), $"shape {s} holds {s.Numel} elements but the data has {data.Length}");
        var dtype = DTypeInfo.Of<T>();
        return new Tensor(CpuBackend.Instance.Upload(data, dtype), Layout.Contiguous(s));
    }

    /// <summary>A CPU vector holding a copy of <paramref name="data"/>.</summary>
    public static Tensor FromArray<T>(T[] data) where T : unmanaged => FromArray(data, new Shape(data.Length));

    /// <summary>A CPU tensor from a span (copied).</summary>
    public static Tensor FromSpan<T>(ReadOnlySpan<T> data, Shape shape) where T : unmanaged => FromArray(data.ToArray(), shape);

    /// <summary>A CPU tensor from a rectangular 2-D array.</summary>
    public static Tensor FromArray<T>(T[,] data) where T : unmanaged
    {
        int r = data.GetLength(0), c = data.GetLength(1);
        var flat = new T[r * c];
        for (int i = 0; i < r; i++) for (int j = 0; j < c; j++) flat[i * c + j] = data[i, j];
        return FromArray(flat, new Shape(r, c));
    }

    /// <summary>A bfloat16 tensor from raw bit patterns (as read from model files).</summary>
    public static Tensor FromBFloat16Bits(ushort[] bits, Shape shape)
    {
        if (shape.Numel != bits.Length) throw new ShapeMismatchException("from_bfloat16", nameof(shape), $"shape {shape} holds {shape.Numel} elements but the data has {bits.Length}");
        return new Tensor(CpuBackend.Instance.Upload(bits, DType.BFloat16), Layout.Contiguous(shape));
    }

    // ---------------------------------------------------------------- data access

    /// <summary>The elements in row-major order, copied to a host array of <typeparamref name="T"/> (the dtype's element type).</summary>
    /// <exception cref="InvalidCastException"><typeparamref name="T"/> is not this tensor's element type.</exception>
    public T[] ToArray<T>()
    {
        Storage.ThrowIfDisposed("to_array");
        if (typeof(T) != DType.ClrType())
            throw new InvalidCastException($"to_array: tensor has dtype {DType}; ask for {DType.ClrType().Name}[] or convert with .To(dtype) first");
        return (T[])Backend.Download(this);
    }

    /// <summary>The elements converted to float64, row-major.</summary>
    public double[] ToDoubleArray() => To(DType.Float64).ToArray<double>();

    /// <summary>The value of a one-element tensor, as float64 (<see cref="Item{T}"/> keeps an Int64's every digit).</summary>
    /// <exception cref="InvalidOperationException">The tensor has more than one element.</exception>
    public double Item()
    {
        if (Numel != 1) throw new InvalidOperationException($"item: tensor of shape {Shape} has {Numel} elements, not 1");
        return ToDoubleArray()[0];
    }

    /// <summary>The value of a one-element tensor in its own type (an Int64 keeps every digit); <typeparamref name="T"/> must be the dtype's element type.</summary>
    /// <exception cref="InvalidOperationException">The tensor has more than one element.</exception>
    /// <exception cref="InvalidCastException"><typeparamref name="T"/> is not this tensor's element type.</exception>
    public T Item<T>()
    {
        if (Numel != 1) throw new InvalidOperationException($"item: tensor of shape {Shape} has {Numel} elements, not 1");
        return ToArray<T>()[0];
    }

    /// <summary>The element at <paramref name="index"/> in its own type; <typeparamref name="T"/> must be the dtype's element type.</summary>
    /// <exception cref="ArgumentException">Wrong number of indices.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An index is out of range.</exception>
    public T Get<T>(params int[] index) => Element(index).Item<T>();

    Tensor Element(int[] index)
    {
        ArgumentNullException.ThrowIfNull(index);
        if (index.Length != Rank) throw new ArgumentException($"index: {index.Length} indices for a tensor of rank {Rank}", nameof(index));
        int off = Layout.Offset;
        for (int i = 0; i < Rank; i++)
        {
            int ix = index[i] < 0 ? index[i] + Shape[i] : index[i];
            if (ix < 0 || ix >= Shape[i]) throw new ArgumentOutOfRangeException(nameof(index), index[i], $"index: {index[i]} is out of range for dimension {i} of size {Shape[i]}");
            off += ix * Layout.Strides[i];
        }
        return new Tensor(Storage, new Layout(new Shape(), [], off));
    }

    /// <summary>The element at <paramref name="index"/>, as float64 (<see cref="Get{T}"/> keeps an Int64's every digit).</summary>
    [System.Runtime.CompilerServices.IndexerName("At")]
    public double this[params int[] index]
    {
        get => Element(index).Item();
    }

    /// <summary>A copy with dtype <paramref name="dtype"/> (this tensor itself when it already has it).</summary>
    public Tensor To(DType dtype)
    {
        if (dtype == DType) return this;
        Storage.ThrowIfDisposed("to");
        var y = Empty(Shape, dtype, Device);
        Backend.Copy(this, y);
        if (dtype.IsFloating() && DType.IsFloating() && Tracks(this))
            return Record(y, "to", [this], g => [g.To(DType)]);
        return y;
    }

    /// <summary>A copy on <paramref name="device"/> (this tensor itself when already there).</summary>
    public Tensor To(Device device)
    {
        if (device == Device) return this;
        Storage.ThrowIfDisposed("to");
        var src = Contiguous();
        var host = src.Backend.Download(src);
        var y = new Tensor(device.Backend.Upload(host, DType), Layout.Contiguous(Shape));
        return Record(y, "to_device", [this], g => [g.To(Device)]);
    }

    /// <summary>A contiguous copy, or this tensor when already contiguous.</summary>
    public Tensor Contiguous()
    {
        Storage.ThrowIfDisposed("contiguous");
        if (IsContiguous) return this;
        var y = Empty(Shape, DType, Device);
        Backend.Copy(this, y);
        return Tracks(this) ? Record(y, "contiguous", [this], static g => [g]) : y;
    }

    /// <summary>A contiguous copy that shares nothing with this tensor.</summary>
    public Tensor Clone()
    {
        Storage.ThrowIfDisposed("clone");
        var y = Empty(Shape, DType, Device);
        Backend.Copy(this, y);
        return Tracks(this) ? Record(y, "clone", [this], static g => [g]) : y;
    }

    /// <summary>Copies <paramref name="src"/> (broadcast to this shape, converted to this dtype) into this tensor's elements; src may overlap them (it is read in full first).</summary>
    public Tensor Copy_(Tensor src)
    {
        CheckInPlace("copy_");
        Check.SameDevice(this, src, "copy_", nameof(src));
        Backend.Copy(ReadableBeforeWrite(src).BroadcastTo(Shape), this);
        return this;
    }

    /// <summary>
    /// <paramref name="operand"/> of an in-place op on this tensor, or a copy of it when it shares storage with this
    /// tensor's elements without being the same view: kernels write rows and core-sized pieces in any order, so such an
    /// operand would be read after some of its elements were overwritten. The same view is safe (each element is read
    /// before its own write); otherwise the result is that of reading the operand in full first (PyTorch refuses such
    /// partial overlaps instead).
    /// </summary>
    internal Tensor ReadableBeforeWrite(Tensor operand)
    {
        if (!ReferenceEquals(operand.Storage, Storage) || operand.Numel == 0 || Numel == 0) return operand;
        var (a, b) = (Layout, operand.Layout);
        if (a.Offset == b.Offset && a.Shape == b.Shape && a.Strides.AsSpan().SequenceEqual(b.Strides)) return operand;
        if (b.Extent <= a.Offset || a.Extent <= b.Offset) return operand;
        var copy = Empty(operand.Shape, operand.DType, operand.Device);
        Backend.Copy(operand, copy);
        return copy;
    }

    /// <summary>
    /// Makes this tensor a view of <paramref name="source"/>'s storage with its shape and strides (PyTorch's set_): the
    /// object keeps its identity, so references to it (a module's parameters and buffers, an optimizer's list) now see
    /// the new data, device or dtype. Views of the old storage keep it. Not allowed on a tensor in the autodiff graph
    /// outside <see cref="Autograd.NoGrad"/>.
    /// </summary>
    public Tensor Set_(Tensor source)
    {
        ArgumentNullException.ThrowIfNull(source);
        CheckInPlace("set_");
        source.Storage.ThrowIfDisposed("set_");
        Storage = source.Storage;
        Layout = source.Layout;
        return this;
    }

    /// <summary>Sets every element to <paramref name="value"/>.</summary>
    public Tensor Fill_(double value)
    {
        CheckInPlace("fill_");
        Backend.Fill(this, value);
        return this;
    }
}

/// <summary>
/// Disposes the storage of every tensor created while it is the innermost open scope, except those kept with
/// <see cref="Keep"/> (which move to the enclosing scope, if any). TorchSharp's DisposeScope idea.
/// </summary>
/// <remarks>
/// A scope flows with the async execution context, as <see cref="AsyncLocal{T}"/> does: it covers the code that opened
/// it across <c>await</c>s and thread switches, and the tasks that code starts; tasks that open their own scopes
/// concurrently never see each other's. <see cref="Dispose"/> may run on any thread (a <c>using</c> after an
/// <c>await</c> does): once disposed, a scope tracks nothing more, and tensors made later where it was current go to its
/// nearest open enclosing scope, or to none. Await the tasks started inside a scope before it ends: it disposes what
/// they made.
/// </remarks>
public sealed class TensorScope : IDisposable
{
    static readonly AsyncLocal<TensorScope?> _current = new();
    readonly TensorScope? _parent;
    readonly List<Storage> _storages = [];
    readonly HashSet<Storage> _kept = [];
    readonly Lock _lock = new();
    bool _disposed;

    internal TensorScope() { _parent = Open(_current.Value); _current.Value = this; }

    /// <summary>The innermost scope that is still open, starting from <paramref name="s"/>.</summary>
    static TensorScope? Open(TensorScope? s)
    {
        while (s is { _disposed: true }) s = s._parent;
        return s;
    }

    internal static void Track(Storage s)
    {
        for (var scope = Open(_current.Value); scope is not null; scope = Open(scope._parent))
            lock (scope._lock)
                if (!scope._disposed) { scope._storages.Add(s); return; }
    }

    /// <summary>The number of storages the scope will dispose or hand on (for tests and diagnostics).</summary>
    internal int TrackedCount { get { lock (_lock) return _storages.Count; } }

    /// <summary>Keeps <paramref name="t"/> (and every view sharing its storage) alive past this scope; returns it.</summary>
    /// <exception cref="ObjectDisposedException">The scope has ended.</exception>
    public Tensor Keep(Tensor t)
    {
        ArgumentNullException.ThrowIfNull(t);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _kept.Add(t.Storage);
        }
        var parent = Open(_parent);
        if (parent is not null) lock (parent._lock) if (!parent._disposed) parent._storages.Add(t.Storage);
        return t;
    }

    /// <summary>Disposes the tensors created in this scope and not kept. Safe to call more than once, from any thread.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
        }
        // Only where this scope is the current one: elsewhere (another thread, a flowed context) Open skips it.
        if (ReferenceEquals(_current.Value, this)) _current.Value = Open(_parent);
        // Once disposed, nothing adds to the lists (Track and Keep check under the lock), so they are read without it.
        foreach (var s in _storages)
            if (_kept.Count == 0 || !_kept.Contains(s)) s.Dispose();
        _storages.Clear();
        _kept.Clear();
    }
}
