using System.Runtime.InteropServices;
using ILGPU;
using Kiln.Backends;
using Kiln.Kernels;
using Kiln.Kernels.Cpu;
using Kiln.Kernels.Gpu;
using G = Kiln.Kernels.Gpu;
using Half = System.Half;

namespace Kiln.Gpu;

/// <summary>
/// Runs Kiln's primitives on an ILGPU device (CUDA, OpenCL, ILGPU's CPU accelerator) or an OpenCL driver fed with SPIR:
/// the host side of every <see cref="IBackend"/> method, launching the kernels of kernels/Kiln.Kernels.Gpu through a
/// <see cref="KernelDriver"/>. Owns the device: disposing it unregisters the device and frees its memory.
/// Ops on one backend are serialized (one stream per device).
/// </summary>
public sealed class IlgpuBackend : IBackend, IDisposable
{
    static readonly Dictionary<string, KernelEntry> Catalog = KernelCatalog.All.ToDictionary(k => k.Name);

    readonly object _lock = new();
    readonly DeviceBuffer _err;
    readonly long[] _errHost = new long[2];
    bool _disposed;

    internal IlgpuBackend(Device device, KernelDriver driver)
    {
        Device = device;
        Driver = driver;
        Pool = new BufferPool(driver, 1L << 30);
        _err = driver.Allocate(16);
        int g = 1;
        while (g * 2 <= Math.Min(256, driver.MaxGroupSize)) g *= 2;
        GroupSize = g;
        int t = 1;
        while (t * 2 <= 16 && t * 2 * t * 2 <= g) t *= 2;
        GemmGroup = t;
    }

    /// <inheritdoc/>
    public Device Device { get; }
    /// <summary>The driver that owns the device.</summary>
    public KernelDriver Driver { get; }
    /// <summary>The pool of device buffers behind this device's tensors.</summary>
    public BufferPool Pool { get; }
    /// <summary>Threads per group of the row kernels (a power of two).</summary>
    public int GroupSize { get; }
    /// <summary>Side of the square thread group of the GEMM (a tile is 4x this on each side).</summary>
    public int GemmGroup { get; }

    static KernelEntry K(string name) => Catalog[name];

    static string Sfx(DType d) => d switch
    {
        DType.Float32 => "f32", DType.Float64 => "f64", DType.Int32 => "i32", DType.Int64 => "i64",
        DType.Bool => "bool", DType.BFloat16 => "bf16", _ => "f16",
    };

    static string StoreSfx(DType d) => d.IsHalf() ? "u16" : Sfx(d);

    static Type Elem(DType d) => d switch
    {
        DType.Float32 => typeof(float), DType.Float64 => typeof(double), DType.Int32 => typeof(int), DType.Int64 => typeof(long),
        DType.Bool => typeof(byte), _ => typeof(ushort),
    };

    NotSupportedException Unsupported(string op, DType dtype) => new($"{op}: no {Device} kernel for dtype {dtype}");

    IlgpuStorage St(Tensor t)
    {
        if (t.Storage is not IlgpuStorage s || t.Device != Device)
            throw new ArgumentException($"tensor on {t.Device} given to the {Device} backend; move it with .To(device)");
        s.ThrowIfDisposed(Device.ToString());
        return s;
    }

    DeviceView V(Tensor t) { var s = St(t); return new DeviceView(s.Buffer, Elem(t.DType), Math.Max(s.Length, 1)); }
    static int Off(Tensor t) => t.Layout.Offset;

    T Locked<T>(Func<T> f) { lock (_lock) { ObjectDisposedException.ThrowIf(_disposed, this); return f(); } }
    void Locked(Action f) { lock (_lock) { ObjectDisposedException.ThrowIf(_disposed, this); f(); } }

    /// <inheritdoc/>
    public Storage Allocate(DType dtype, int length) => Locked<Storage>(() =>
    {
        long bytes = (long)Math.Max(length, 1) * dtype.Size();
        var buf = Pool.Rent(bytes);
        Driver.Zero(buf, bytes);   // pooled memory holds old values; zeroing keeps results deterministic
        return new IlgpuStorage(Device, dtype, length, Pool, buf);
    });

    /// <inheritdoc/>
    public Storage Upload(Array host, DType dtype)
    {
        ArgumentNullException.ThrowIfNull(host);
        if (host.GetType().GetElementType() != dtype.ClrType())
            throw new ArgumentException($"upload: array of {host.GetType().GetElementType()?.Name} cannot hold {dtype}", nameof(host));
        var s = (IlgpuStorage)Allocate(dtype, host.Length);
        Locked(() =>
        {
            switch (dtype)
            {
                case DType.Float32: Driver.Write(s.Buffer, (float[])host, host.Length); break;
                case DType.Float64: Driver.Write(s.Buffer, (double[])host, host.Length); break;
                case DType.Int32: Driver.Write(s.Buffer, (int[])host, host.Length); break;
                case DType.Int64: Driver.Write(s.Buffer, (long[])host, host.Length); break;
                case DType.Bool: Driver.Write(s.Buffer, MemoryMarshal.Cast<bool, byte>((bool[])host).ToArray(), host.Length); break;
                case DType.BFloat16: Driver.Write(s.Buffer, (ushort[])host, host.Length); break;
                default: Driver.Write(s.Buffer, MemoryMarshal.Cast<Half, ushort>((Half[])host).ToArray(), host.Length); break;
            }
        });
        return s;
    }

    /// <inheritdoc/>
    public Array Download(Tensor src) => Locked<Array>(() =>
    {
        var t = src;
        if (!src.IsContiguous || src.Layout.Offset != 0)
        {
            t = Tensor.Empty(src.Shape, src.DType, Device);
            Copy(src, t);
        }
        int n = src.Numel;
        var buf = St(t).Buffer;
        try
        {
            switch (src.DType)
            {
                case DType.Float32: { var a = new float[n]; Driver.Read(buf, a, n); return a; }
                case DType.Float64: { var a = new double[n]; Driver.Read(buf, a, n); return a; }
                case DType.Int32: { var a = new int[n]; Driver.Read(buf, a, n); return a; }
                case DType.Int64: { var a = new long[n]; Driver.Read(buf, a, n); return a; }
                case DType.Bool: { var a = new byte[n]; Driver.Read(buf, a, n); return a.Select(b => b != 0).ToArray(); }
                case DType.BFloat16: { var a = new ushort[n]; Driver.Read(buf, a, n); return a; }
                default: { var a = new ushort[n]; Driver.Read(buf, a, n); return MemoryMarshal.Cast<ushort, Half>(a).ToArray(); }
            }
        }
        finally { if (!ReferenceEquals(t, src)) t.Dispose(); }
    });

    // ------------------------------------------------------------------ elementwise

    /// <summary>Calls <paramref name="launch"/> once per block of at most six coalesced dimensions.</summary>
    static void Chunks(Shape shape, Tensor[] ops, Action<Dims6, Strides6[], int> launch)
    {
        if (shape.Numel == 0) return;
        var (dims, strides) = Strided.Coalesce(shape.Dims, ops.Select(t => t.Layout.Strides).ToArray());
        Split(dims, strides, ops.Select(t => t.Layout.Offset).ToArray(), launch);
    }

    static void Split(int[] dims, int[][] strides, int[] offsets, Action<Dims6, Strides6[], int> launch)
    {
        if (dims.Length <= Dims6.MaxRank)
        {
            long n = 1; foreach (int d in dims) n *= d;
            launch(Dims6.From(dims), strides.Select((s, k) => Strides6.From(s, offsets[k])).ToArray(), (int)n);
            return;
        }
        for (int i = 0; i < dims[0]; i++)
            Split(dims[1..], strides.Select(s => s[1..]).ToArray(), offsets.Select((o, k) => o + i * strides[k][0]).ToArray(), launch);
    }

    /// <inheritdoc/>
    public void Fill(Tensor dst, double value) => Locked(() =>
    {
        object v = dst.DType switch
        {
            DType.Float32 => (object)(float)value,
            DType.Float64 => (object)value,
            DType.Int32 => (object)checked((int)value),
            DType.Int64 => (object)checked((long)value),
            DType.Bool => (object)(value != 0 ? (byte)1 : (byte)0),
            DType.BFloat16 => (object)BFloat16Bits.FromFloat((float)value),
            _ => (object)BitConverter.HalfToUInt16Bits((Half)value),
        };
        var k = K($"elementwise.fill.{StoreSfx(dst.DType)}");
        Chunks(dst.Shape, [dst], (d, s, n) => Driver.Launch(k, n, V(dst), s[0], d, v));
    });

    /// <inheritdoc/>
    public void Copy(Tensor src, Tensor dst) => Locked(() =>
    {
        var k = src.DType == dst.DType ? K($"elementwise.copy.{StoreSfx(src.DType)}") : K($"elementwise.convert.{Sfx(src.DType)}_{Sfx(dst.DType)}");
        Chunks(dst.Shape, [src, dst], (d, s, n) => Driver.Launch(k, n, V(src), s[0], V(dst), s[1], d));
    });

    /// <inheritdoc/>
    public void Unary(UnaryOp op, Tensor x, Tensor y) => Locked(() =>
    {
        if (!x.DType.IsFloating()) throw Unsupported("unary " + op, x.DType);
        var k = K($"elementwise.unary.{Sfx(x.DType)}");
        Chunks(y.Shape, [x, y], (d, s, n) => Driver.Launch(k, n, (int)op, V(x), s[0], V(y), s[1], d));
    });

    /// <inheritdoc/>
    public void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y) => Locked(() =>
    {
        bool ok = a.DType.IsFloating() || (a.DType.IsInteger() && op is not (BinaryOp.Pow or BinaryOp.Atan2));
        if (!ok) throw Unsupported("binary " + op, a.DType);
        var k = K($"elementwise.binary.{Sfx(a.DType)}");
        bool guard = a.DType.IsInteger() && op == BinaryOp.Div;
        if (guard) Driver.Zero(_err, 16);
        Chunks(y.Shape, [a, b, y], (d, s, n) => Driver.Launch(k, n, (int)op, V(a), s[0], V(b), s[1], V(y), s[2], d, ErrView));
        if (guard && ReadErr(out long at)) throw new DivideByZeroException($"integer division by zero at element {at}");
    });

    DeviceView ErrView => new(_err, typeof(long), 2);

    bool ReadErr(out long value)
    {
        Driver.Read(_err, _errHost, 2);
        value = _errHost[1];
        return _errHost[0] != 0;
    }

    /// <inheritdoc/>
    public void Compare(CompareOp op, Tensor a, Tensor b, Tensor y) => Locked(() =>
    {
        if (a.DType == DType.Bool)
        {
            // Booleans compare as 0/1 integers.
            using var ai = Tensor.Empty(a.Shape, DType.Int32, Device);
            using var bi = Tensor.Empty(b.Shape, DType.Int32, Device);
            Copy(a, ai); Copy(b, bi);
            Compare(op, ai, bi, y);
            return;
        }
        if (!(a.DType.IsFloating() || a.DType.IsInteger())) throw Unsupported("compare " + op, a.DType);
        var k = K($"elementwise.compare.{Sfx(a.DType)}");
        Chunks(y.Shape, [a, b, y], (d, s, n) => Driver.Launch(k, n, (int)op, V(a), s[0], V(b), s[1], V(y), s[2], d));
    });

    /// <inheritdoc/>
    public void Where(Tensor cond, Tensor a, Tensor b, Tensor y) => Locked(() =>
    {
        if (a.DType.IsHalf()) throw Unsupported("where", a.DType);
        var k = K($"elementwise.where.{Sfx(a.DType)}");
        Chunks(y.Shape, [cond, a, b, y], (d, s, n) => Driver.Launch(k, n, V(cond), s[0], V(a), s[1], V(b), s[2], V(y), s[3], d));
    });

    /// <inheritdoc/>
    public void Clamp(Tensor x, double lo, double hi, Tensor y) => Locked(() =>
    {
        (object l, object h) = x.DType switch
        {
            DType.Float32 => ((object)(float)lo, (object)(float)hi),
            DType.Float64 => ((object)lo, (object)hi),
            DType.Int32 => ((object)(int)Math.Max(lo, int.MinValue), (object)(int)Math.Min(hi, int.MaxValue)),
            DType.Int64 => ((object)(long)Math.Max(lo, long.MinValue), (object)(long)Math.Min(hi, long.MaxValue)),
            _ => throw Unsupported("clamp", x.DType),
        };
        var k = K($"elementwise.clamp.{Sfx(x.DType)}");
        Chunks(y.Shape, [x, y], (d, s, n) => Driver.Launch(k, n, V(x), s[0], l, h, V(y), s[1], d));
    });

    // ------------------------------------------------------------------ reductions

    Index3D Rows(int rows) => new(rows, 1, 1);
    Index3D Group => new(GroupSize, 1, 1);

    void NumericOnly(string op, DType d) { if (!(d.IsFloating() || d.IsInteger())) throw Unsupported(op, d); }

    /// <inheritdoc/>
    public void ReduceRows(ReduceOp op, Tensor x, int rows, int len, Tensor y) => Locked(() =>
    {
        NumericOnly("reduce " + op, x.DType);
        var k = K($"reduce.{(Driver.SupportsWarp ? "rows_warp" : "rows")}.{Sfx(x.DType)}");
        Driver.Launch(k, Rows(rows), Group, V(x), Off(x), len, V(y), Off(y), (int)op);
    });

    /// <inheritdoc/>
    public void ReduceCols(ReduceOp op, Tensor x, int len, int cols, Tensor y) => Locked(() =>
    {
        NumericOnly("reduce " + op, x.DType);
        Driver.Launch(K($"reduce.cols.{Sfx(x.DType)}"), cols, V(x), Off(x), len, cols, V(y), Off(y), (int)op);
    });

    /// <inheritdoc/>
    public void ArgReduceRows(bool max, Tensor x, int rows, int len, Tensor values, Tensor indices) => Locked(() =>
    {
        NumericOnly(max ? "argmax" : "argmin", x.DType);
        Driver.Launch(K($"reduce.arg_rows.{Sfx(x.DType)}"), Rows(rows), Group, V(x), Off(x), len, max ? 1 : 0, V(values), V(indices));
    });

    /// <inheritdoc/>
    public void CumsumRows(Tensor x, int rows, int len, bool reverse, Tensor y) => Locked(() =>
    {
        NumericOnly("cumsum", x.DType);
        Driver.Launch(K($"reduce.cumsum_rows.{Sfx(x.DType)}"), Rows(rows), Group, V(x), Off(x), len, reverse ? 1 : 0, V(y));
    });

    /// <inheritdoc/>
    public void AnyAllRows(bool all, Tensor x, int rows, int len, Tensor y) => Locked(() =>
        Driver.Launch(K("reduce.any_all_rows.bool"), rows, V(x), Off(x), len, all ? 1 : 0, V(y)));

    // ------------------------------------------------------------------ linear algebra and fused rows

    /// <inheritdoc/>
    public void MatMul(Tensor a, Tensor b, Tensor c) => Locked(() =>
    {
        if (!a.DType.IsFloating()) throw Unsupported("matmul", a.DType);
        int batch = c.Shape[0], m = c.Shape[1], n = c.Shape[2];
        var (sa, sb) = (a.Layout.Strides, b.Layout.Strides);
        var args = new GemmArgs
        {
            M = m, N = n, K = a.Shape[2],
            AOff = Off(a), ABs = sa[0], ARs = sa[1], ACs = sa[2],
            BOff = Off(b), BBs = sb[0], BRs = sb[1], BCs = sb[2],
            COff = Off(c),
        };
        int tile = 4 * GemmGroup;
        var grid = new Index3D((n + tile - 1) / tile, (m + tile - 1) / tile, batch);
        Driver.Launch(K($"gemm.tiled.{Sfx(a.DType)}"), grid, new Index3D(GemmGroup, GemmGroup, 1), V(a), V(b), V(c), args);
    });

    /// <inheritdoc/>
    public void Attention(Tensor q, Tensor k, Tensor v, bool causal, double scale, Tensor y, Tensor lse) => Locked(() =>
    {
        if (!q.DType.IsFloating()) throw Unsupported("attention", q.DType);
        var dims = AttentionDims(q, k, v, causal) with { YOff = Off(y), LseOff = Off(lse) };
        Driver.Launch(K($"attention.forward.{Sfx(q.DType)}"), q.Shape[0] * dims.Tq, V(q), V(k), V(v), V(y), V(lse), dims, AsElement(q.DType, scale));
    });

    /// <inheritdoc/>
    public void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor y, Tensor gy, Tensor lse, bool causal, double scale, Tensor gq, Tensor gk, Tensor gv) => Locked(() =>
    {
        if (!q.DType.IsFloating()) throw Unsupported("attention_backward", q.DType);
        var dims = AttentionDims(q, k, v, causal) with
        {
            YOff = Off(y), LseOff = Off(lse), GyOff = Off(gy), GqOff = Off(gq), GkOff = Off(gk), GvOff = Off(gv),
        };
        int rows = q.Shape[0] * dims.Tq, keys = q.Shape[0] * dims.Tk;
        using var delta = Tensor.Empty(new Shape(Math.Max(rows, 1)), q.DType, Device);
        string t = Sfx(q.DType);
        object sc = AsElement(q.DType, scale);
        Driver.Launch(K($"attention.delta.{t}"), rows, V(y), V(gy), V(delta), dims);
        Driver.Launch(K($"attention.grad_q.{t}"), rows, V(q), V(k), V(v), V(gy), V(lse), V(delta), V(gq), dims, sc);
        Driver.Launch(K($"attention.grad_kv.{t}"), keys, V(q), V(k), V(v), V(gy), V(lse), V(delta), V(gk), V(gv), dims, sc);
    });

    // The core hands over contiguous tensors, which may still start past their buffer's first element.
    static G.Attention.Dims AttentionDims(Tensor q, Tensor k, Tensor v, bool causal) => new()
    {
        Tq = q.Shape[1], Tk = k.Shape[1], D = q.Shape[2], Dv = v.Shape[2], Causal = causal ? 1 : 0,
        QOff = Off(q), KOff = Off(k), VOff = Off(v),
    };

    /// <inheritdoc/>
    /// <remarks>The product, the bias and the activation run as three kernels (tiled GEMM, broadcast add, ReLU).</remarks>
    public void Linear(Tensor x, Tensor w, Tensor? bias, bool relu, Tensor y) => Locked(() =>
    {
        if (!x.DType.IsFloating()) throw Unsupported("linear", x.DType);
        MatMul(x.Unsqueeze(0), w.T.Unsqueeze(0), y.Unsqueeze(0));
        if (bias is not null) Binary(BinaryOp.Add, y, bias.BroadcastTo(y.Shape), y);
        if (relu) Unary(UnaryOp.Relu, y, y);
    });

    /// <inheritdoc/>
    public void SoftmaxRows(Tensor x, int rows, int len, bool log, Tensor y) => Locked(() =>
    {
        if (!x.DType.IsFloating()) throw Unsupported("softmax", x.DType);
        if (len == 0) return;
        Driver.Launch(K($"softmax.rows.{Sfx(x.DType)}"), Rows(rows), Group, V(x), Off(x), len, log ? 1 : 0, V(y));
    });

    static object AsElement(DType d, double value) => d == DType.Float32 ? (object)(float)value : (object)value;

    /// <inheritdoc/>
    public void LayerNormRows(Tensor x, Tensor? weight, Tensor? bias, double eps, int rows, int len, Tensor y) => Locked(() =>
    {
        if (!x.DType.IsFloating()) throw Unsupported("layer_norm", x.DType);
        if (len == 0) return;
        Driver.Launch(K($"layernorm.rows.{Sfx(x.DType)}"), Rows(rows), Group, V(x), Off(x), len,
            V(weight ?? x), weight is null ? 0 : Off(weight), weight is null ? 0 : 1,
            V(bias ?? x), bias is null ? 0 : Off(bias), bias is null ? 0 : 1, AsElement(x.DType, eps), V(y));
    });

    /// <inheritdoc/>
    public void RmsNormRows(Tensor x, Tensor? weight, double eps, int rows, int len, Tensor y) => Locked(() =>
    {
        if (!x.DType.IsFloating()) throw Unsupported("rms_norm", x.DType);
        if (len == 0) return;
        Driver.Launch(K($"layernorm.rms_rows.{Sfx(x.DType)}"), Rows(rows), Group, V(x), Off(x), len,
            V(weight ?? x), weight is null ? 0 : Off(weight), weight is null ? 0 : 1, AsElement(x.DType, eps), V(y));
    });

    /// <inheritdoc/>
    public void Random(RandomKind kind, ulong seed, ulong counter, double a, double b, Tensor dst) => Locked(() =>
    {
        if (dst.DType.IsHalf()) throw Unsupported("random", dst.DType);
        Driver.Launch(K($"philox.fill.{Sfx(dst.DType)}"), dst.Numel, V(dst), (int)kind, seed, counter, a, b, dst.DType == DType.Float64 ? 1 : 0);
    });

    // ------------------------------------------------------------------ indexing and sorting

    static (int Outer, int Axis, int Inner) Split3(Shape s, int axis)
    {
        int outer = 1, inner = 1;
        for (int i = 0; i < axis; i++) outer *= s[i];
        for (int i = axis + 1; i < s.Rank; i++) inner *= s[i];
        return (outer, s.Rank == 0 ? 1 : s[axis], inner);
    }

    /// <inheritdoc/>
    public void Gather(Tensor x, int axis, Tensor index, Tensor y) => Locked(() =>
    {
        if (x.DType.IsHalf()) throw Unsupported("gather", x.DType);
        var (outer, xAxis, inner) = Split3(x.Shape, axis);
        var d = new G.Indexing.Dims { Outer = outer, Axis = xAxis, Inner = inner, IndexAxis = index.Rank == 0 ? 1 : index.Shape[axis], XOff = Off(x), IOff = Off(index) };
        Driver.Zero(_err, 16);
        Driver.Launch(K($"indexing.gather.{Sfx(x.DType)}"), y.Numel, V(x), V(index), V(y), d, ErrView);
        if (ReadErr(out long j)) throw new ArgumentOutOfRangeException("index", j, $"gather: index {j} is out of range for an axis of size {xAxis}");
    });

    /// <inheritdoc/>
    public void ScatterAdd(Tensor y, int axis, Tensor index, Tensor src) => ScatterImpl(y, axis, index, src, add: true);
    /// <inheritdoc/>
    public void Scatter(Tensor y, int axis, Tensor index, Tensor src) => ScatterImpl(y, axis, index, src, add: false);

    void ScatterImpl(Tensor y, int axis, Tensor index, Tensor src, bool add) => Locked(() =>
    {
        if (y.DType.IsHalf() || (add && y.DType == DType.Bool)) throw Unsupported(add ? "scatter_add" : "scatter", y.DType);
        var (outer, yAxis, inner) = Split3(y.Shape, axis);
        var d = new G.Indexing.Dims { Outer = outer, Axis = yAxis, Inner = inner, IndexAxis = index.Rank == 0 ? 1 : index.Shape[axis], XOff = Off(y), IOff = Off(index), SOff = Off(src) };
        Driver.Zero(_err, 16);
        Driver.Launch(K($"indexing.scatter.{Sfx(y.DType)}"), outer * inner, V(y), V(index), V(src), d, add ? 1 : 0, ErrView);
        if (ReadErr(out long j)) throw new ArgumentOutOfRangeException("index", j, $"{(add ? "scatter_add" : "scatter")}: index {j} is out of range for an axis of size {yAxis}");
    });

    /// <summary>Rows up to this length are sorted by counting ranks; longer ones by a bitonic network.</summary>
    public const int RankSortMaxLen = 2048;

    /// <inheritdoc/>
    public void SortRows(Tensor x, int rows, int len, bool descending, Tensor values, Tensor indices) => Locked(() =>
    {
        NumericOnly("sort", x.DType);
        string s = Sfx(x.DType);
        int desc = descending ? 1 : 0;
        if (len <= RankSortMaxLen)
        {
            Driver.Launch(K($"sort.rank_rows.{s}"), rows * len, V(x), Off(x), len, desc, V(values), V(indices));
            return;
        }
        int pad = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)len);
        using var keys = Tensor.Empty(new Shape(rows * pad), x.DType, Device);
        using var idx = Tensor.Empty(new Shape(rows * pad), DType.Int64, Device);
        Driver.Launch(K($"sort.bitonic_init.{s}"), rows * pad, V(x), Off(x), len, pad, V(keys), V(idx));
        var step = K($"sort.bitonic_step.{s}");
        for (int k = 2; k <= pad; k <<= 1)
            for (int j = k >> 1; j > 0; j >>= 1)
                Driver.Launch(step, rows * pad, V(keys), V(idx), len, pad, k, j, desc);
        Driver.Launch(K($"sort.bitonic_finish.{s}"), rows * len, V(keys), V(idx), len, pad, V(values), V(indices));
    });

    /// <inheritdoc/>
    public void StumpSumPdf(Tensor upper, int[] groupStarts, int[] values, Tensor pdf) => Locked(() =>
    {
        using var cur = StumpPdf(upper, groupStarts, values, pdf.Shape[1]);
        Copy(cur, pdf);
    });

    /// <inheritdoc/>
    public void StumpSumTail(Tensor upper, int[] groupStarts, int[] values, Tensor cuts, Tensor tail) => Locked(() =>
    {
        int width = Kiln.Kernels.Reference.StumpSumWidth(groupStarts, values);
        using var pdf = StumpPdf(upper, groupStarts, values, width);
        Driver.Launch(K("stump.tail.f64"), upper.Shape[0], V(pdf), width, V(cuts), Off(cuts), V(tail), Off(tail));
    });

    /// <summary>The [batch, width] pdf of the stump sums: one launch per meta-stump, ping-ponging two device buffers.</summary>
    Tensor StumpPdf(Tensor upper, int[] groupStarts, int[] values, int width)
    {
        int batch = upper.Shape[0], groups = groupStarts.Length - 1, n = batch * width;
        var cur = Tensor.Empty([batch, width], DType.Float64, Device);
        using var next0 = Tensor.Empty([batch, width], DType.Float64, Device);
        using var vals = Tensor.FromArray(values).To(Device);
        Driver.Launch(K("stump.pdf_init.f64"), n, V(cur), width);
        var (a, b) = (cur, next0);
        int used = 1;
        for (int g = 0; g < groups; g++)
        {
            int first = groupStarts[g], count = groupStarts[g + 1] - first;
            var step = new G.StumpSmoothing.Step { Thresholds = upper.Shape[1], UpperOff = Off(upper), First = first, Count = count, Group = g, Width = width, Used = used };
            Driver.Launch(K("stump.pdf_step.f64"), n, V(upper), V(vals), V(a), V(b), step);
            int max = 0;
            for (int k = 0; k <= count; k++) max = Math.Max(max, values[first + g + k]);
            used += max;
            (a, b) = (b, a);
        }
        if (!ReferenceEquals(a, cur)) Copy(a, cur);
        return cur;
    }

    /// <summary>Unregisters the device, frees cached buffers and releases the accelerator and its context.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
        }
        if (BackendRegistry.Devices.Contains(Device) && ReferenceEquals(BackendRegistry.Get(Device), this)) BackendRegistry.Unregister(Device);
        Pool.Dispose();
        _err.Dispose();
        Driver.Dispose();
    }
}
