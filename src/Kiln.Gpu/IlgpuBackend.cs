using System.Runtime.CompilerServices;
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
public sealed partial class IlgpuBackend : IBackend, IMemoryCache, IDisposable
{
    /// <inheritdoc/>
    public long CachedBytes => Pool.CachedBytes;
    /// <inheritdoc/>
    public long CacheLimitBytes { get => Pool.LimitBytes; set { ArgumentOutOfRangeException.ThrowIfNegative(value); Pool.LimitBytes = value; if (Pool.CachedBytes > value) Pool.Trim(); } }
    /// <inheritdoc/>
    public void Trim() => Pool.Trim();

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

    NotSupportedException Unsupported(string op, DType dtype) => new($"{op}: no {Device} kernel for dtype {dtype}");

    IlgpuStorage St(Tensor t)
    {
        if (t.Storage is not IlgpuStorage s || t.Device != Device)
            throw new ArgumentException($"tensor on {t.Device} given to the {Device} backend; move it with .To(device)");
        s.ThrowIfDisposed(Device.ToString());
        return s;
    }

    /// <summary>The device array behind <paramref name="t"/> as a kernel argument of element type <typeparamref name="T"/>.</summary>
    internal DeviceView<T> V<T>(Tensor t) where T : unmanaged
    {
        var s = St(t);
        if (Unsafe.SizeOf<T>() != t.DType.Size()) throw new InvalidOperationException($"a {t.DType} tensor viewed as {typeof(T).Name}");
        return new DeviceView<T>(s.Buffer, Math.Max(s.Length, 1));
    }
    static int Off(Tensor t) => t.Layout.Offset;

    T Locked<T>(Func<T> f) { lock (_lock) { ObjectDisposedException.ThrowIf(_disposed, this); return f(); } }
    internal void Locked(Action f) { lock (_lock) { ObjectDisposedException.ThrowIf(_disposed, this); f(); } }

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

    /// <inheritdoc/>
    public void Fill(Tensor dst, double value) => Locked(() =>
    {
        switch (dst.DType)
        {
            case DType.Float32: FillT(dst, (float)value); break;
            case DType.Float64: FillT(dst, value); break;
            case DType.Int32: FillT(dst, checked((int)value)); break;
            case DType.Int64: FillT(dst, checked((long)value)); break;
            case DType.Bool: FillT(dst, value != 0 ? (byte)1 : (byte)0); break;
            case DType.BFloat16: FillT(dst, BFloat16Bits.FromFloat((float)value)); break;
            default: FillT(dst, BitConverter.HalfToUInt16Bits((Half)value)); break;
        }
    });

    void FillT<T>(Tensor dst, T value) where T : unmanaged =>
        Chunks(dst.Shape, [dst], (d, s, n) => ElementwiseKernels<T>.Fill.Launch(Driver, n, V<T>(dst), s[0], d, value));

    /// <inheritdoc/>
    public void Copy(Tensor src, Tensor dst) => Locked(() =>
    {
        if (src.DType == dst.DType)
        {
            switch (src.DType)
            {
                case DType.Float32: CopyT<float>(src, dst); break;
                case DType.Float64: CopyT<double>(src, dst); break;
                case DType.Int32: CopyT<int>(src, dst); break;
                case DType.Int64: CopyT<long>(src, dst); break;
                case DType.Bool: CopyT<byte>(src, dst); break;
                default: CopyT<ushort>(src, dst); break;
            }
            return;
        }
        switch (src.DType)
        {
            case DType.Float32: ConvertFrom<float, F32>(src, dst); break;
            case DType.Float64: ConvertFrom<double, F64>(src, dst); break;
            case DType.Int32: ConvertFrom<int, I32>(src, dst); break;
            case DType.Int64: ConvertFrom<long, I64>(src, dst); break;
            case DType.Bool: ConvertFrom<byte, U8>(src, dst); break;
            case DType.BFloat16: ConvertFrom<ushort, BF16>(src, dst); break;
            default: ConvertFrom<ushort, F16>(src, dst); break;
        }
    });

    void CopyT<T>(Tensor src, Tensor dst) where T : unmanaged =>
        Chunks(dst.Shape, [src, dst], (d, s, n) => ElementwiseKernels<T>.Copy.Launch(Driver, n, V<T>(src), s[0], V<T>(dst), s[1], d));

    void ConvertFrom<TIn, TA>(Tensor src, Tensor dst) where TIn : unmanaged where TA : struct, IElement<TIn>
    {
        switch (dst.DType)
        {
            case DType.Float32: Convert<TIn, float, TA, F32>(src, dst); break;
            case DType.Float64: Convert<TIn, double, TA, F64>(src, dst); break;
            case DType.Int32: Convert<TIn, int, TA, I32>(src, dst); break;
            case DType.Int64: Convert<TIn, long, TA, I64>(src, dst); break;
            case DType.Bool: Convert<TIn, byte, TA, U8>(src, dst); break;
            case DType.BFloat16: Convert<TIn, ushort, TA, BF16>(src, dst); break;
            default: Convert<TIn, ushort, TA, F16>(src, dst); break;
        }
    }

    void Convert<TIn, TOut, TA, TB>(Tensor src, Tensor dst)
        where TIn : unmanaged where TOut : unmanaged where TA : struct, IElement<TIn> where TB : struct, IElement<TOut> =>
        Chunks(dst.Shape, [src, dst], (d, s, n) => ConvertKernels<TIn, TOut, TA, TB>.Convert.Launch(Driver, n, V<TIn>(src), s[0], V<TOut>(dst), s[1], d));

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
